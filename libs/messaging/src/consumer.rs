//! Durable pull consumers with explicit acknowledgement, and the fetch, ack and nak steps
//! every worker role shares.

use std::time::Duration;

use async_nats::jetstream::consumer::pull::Config;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer};
use async_nats::jetstream::message::{AckKind, Message};
use futures::StreamExt;

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

/// Fetches everything deliverable now, up to `batch_size`; if nothing is, waits up to `wait`
/// for up to `then_up_to` messages. A worker's loop waits long for one message (and handles
/// it at once, for low latency); a "process what is pending" step waits briefly for a whole
/// batch, because a message published or nak'ed an instant ago takes a moment to become
/// deliverable.
pub async fn fetch(
    consumer: &PullConsumer,
    batch_size: usize,
    then_up_to: usize,
    wait: Duration,
) -> Result<Vec<Message>, String> {
    let now = consumer
        .fetch()
        .max_messages(batch_size)
        .messages()
        .await
        .map_err(|e| e.to_string())?;
    let messages = collect(now).await?;
    if !messages.is_empty() {
        return Ok(messages);
    }
    let soon = consumer
        .batch()
        .max_messages(then_up_to)
        .expires(wait)
        .messages()
        .await
        .map_err(|e| e.to_string())?;
    collect(soon).await
}

/// Every message of a fetched batch.
async fn collect<E: std::fmt::Display>(
    mut batch: impl futures::Stream<Item = Result<Message, E>> + Unpin,
) -> Result<Vec<Message>, String> {
    let mut messages = Vec::new();
    while let Some(message) = batch.next().await {
        messages.push(message.map_err(|e| e.to_string())?);
    }
    Ok(messages)
}

/// Acknowledges `messages`. A failed ack is only logged: the message's effects are stored,
/// and its redelivery finds them and is acknowledged then.
pub async fn ack_all(messages: Vec<&Message>) {
    for message in messages {
        crate::dead_letter::failures::forget(message);
        if let Err(error) = message.ack().await {
            tracing::debug!(error.message = %error, "ack failed");
        }
    }
}

/// Gives `messages` back for redelivery after [`redelivery_delay`] (a transient failure).
pub async fn nak_all(messages: Vec<&Message>) {
    for message in messages {
        let delivered = message.info().map_or(1, |i| i.delivered);
        if let Err(error) = message
            .ack_with(AckKind::Nak(Some(redelivery_delay(delivered))))
            .await
        {
            tracing::debug!(error.message = %error, "nak failed; the ack wait will redeliver it");
        }
    }
}

/// Counts a worker's settled messages by outcome (`applied`, `ignored`, `dead_lettered`, …) in
/// the counter `metric`, labelled `outcome`. Outcomes with no messages are left out.
pub fn record_outcomes(metric: &'static str, outcomes: &[(&'static str, usize)]) {
    for &(outcome, n) in outcomes {
        if n > 0 {
            metrics::counter!(metric, "outcome" => outcome).increment(n as u64);
        }
    }
}
