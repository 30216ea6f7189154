//! Durable pull consumers with explicit acknowledgement.

use std::time::Duration;

use async_nats::jetstream::consumer::pull::Config;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer};

use crate::JetStream;

/// A consumer could not be created.
#[derive(Debug, thiserror::Error)]
#[error("durable consumer {consumer} on stream {stream} cannot be created: {reason}")]
pub struct ConsumerError {
    /// The stream.
    pub stream: String,
    /// The consumer's durable name.
    pub consumer: String,
    /// Why.
    pub reason: String,
}

/// How long a delivered message may stay unacknowledged before JetStream redelivers it
/// (the default).
pub const ACK_WAIT: Duration = Duration::from_secs(30);

/// Creates (or binds to) the durable pull consumer `name` on `stream`, delivering everything
/// from the start of the stream, with explicit acks and `ack_wait` before a redelivery. Several processes binding the same name
/// share its messages: each message goes to one of them at a time.
pub async fn durable(
    js: &JetStream,
    stream: &str,
    name: &str,
    max_ack_pending: i64,
    ack_wait: Duration,
) -> Result<PullConsumer, ConsumerError> {
    let err = |reason: String| ConsumerError {
        stream: stream.to_owned(),
        consumer: name.to_owned(),
        reason,
    };
    let stream_handle = js
        .get_stream(stream)
        .await
        .map_err(|e| err(e.to_string()))?;
    stream_handle
        .get_or_create_consumer(
            name,
            Config {
                durable_name: Some(name.to_owned()),
                description: Some(format!("followupd {name}")),
                ack_policy: AckPolicy::Explicit,
                deliver_policy: DeliverPolicy::All,
                ack_wait,
                max_deliver: -1,
                max_ack_pending,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| err(e.to_string()))
}

/// The delay before a message that failed for a transient reason (the database is away) is
/// delivered again: doubling with each delivery, from 1 s up to 60 s.
pub fn redelivery_delay(delivered: i64) -> Duration {
    let exp = delivered.clamp(1, 7) as u32 - 1;
    Duration::from_secs((1u64 << exp).min(60))
}
