//! Publishing to JetStream with a de-duplication id.

use async_nats::HeaderMap;
use bytes::Bytes;

use crate::JetStream;

/// A publish was not acknowledged by JetStream.
#[derive(Debug, thiserror::Error)]
#[error("publishing to {subject} failed: {reason}")]
pub struct PublishError {
    /// The subject published to.
    pub subject: String,
    /// The server's or client's answer.
    pub reason: String,
}

/// Publishes `payload` on `subject` with `Nats-Msg-Id: msg_id` (plus `headers`) and waits for
/// the stream's acknowledgement. Returns the stream sequence and whether JetStream recognised
/// it as a duplicate of a message already stored within the duplicate window.
pub async fn publish_event(
    js: &JetStream,
    subject: String,
    msg_id: &str,
    mut headers: HeaderMap,
    payload: Bytes,
) -> Result<(u64, bool), PublishError> {
    headers.insert(async_nats::header::NATS_MESSAGE_ID, msg_id);
    let err = |reason: String| PublishError {
        subject: subject.clone(),
        reason,
    };
    let ack = js
        .publish_with_headers(subject.clone(), headers, payload)
        .await
        .map_err(|e| err(e.to_string()))?
        .await
        .map_err(|e| err(e.to_string()))?;
    Ok((ack.sequence, ack.duplicate))
}
