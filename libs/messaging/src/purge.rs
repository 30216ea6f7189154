//! Removing the messages that hold an erased person's data from a stream: the outbound
//! follow-up events of their follow-ups, and the dead letters that name them. Streams also
//! expire messages by age (`FOLLOWUP_OUTBOUND_RETENTION_DAYS`, `FOLLOWUP_DLQ_RETENTION_DAYS`);
//! an erasure does not wait for that.
//!
//! [`purge_matching`] reads the stream from its first message to its last (an ephemeral
//! consumer, no acknowledgements) and deletes each message a predicate picks, by sequence.
//! Its cost grows with the stream's size within its retention, which suits erasures: a few a
//! month, run by an operator.

use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use futures::StreamExt;

use crate::JetStream;

/// How many messages one fetch asks for.
const FETCH: usize = 1000;

/// A stream could not be read or a message not deleted.
#[derive(Debug, thiserror::Error)]
#[error("purging stream {stream}: {reason}")]
pub struct PurgeError {
    /// The stream concerned.
    pub stream: String,
    /// What failed.
    pub reason: String,
}

/// Deletes every message of `stream` on subjects matching `filter` whose payload `matches`
/// picks. Returns how many were deleted. A stream that does not exist has nothing to purge.
pub async fn purge_matching(
    js: &JetStream,
    stream: &str,
    filter: &str,
    matches: impl Fn(&[u8]) -> bool,
) -> Result<u64, PurgeError> {
    let doomed = scan_matching(js, stream, filter, matches).await?;
    let Ok(handle) = js.get_stream(stream).await else {
        return Ok(0);
    };
    let mut deleted = 0;
    for sequence in doomed {
        // A message that expired meanwhile is gone already.
        if handle.delete_message(sequence).await.is_ok() {
            deleted += 1;
        }
    }
    Ok(deleted)
}

/// The sequences of the messages of `stream` on subjects matching `filter` whose payload
/// `matches` picks, read from the first message to the last.
pub async fn scan_matching(
    js: &JetStream,
    stream: &str,
    filter: &str,
    matches: impl Fn(&[u8]) -> bool,
) -> Result<Vec<u64>, PurgeError> {
    let failed = |reason: String| PurgeError {
        stream: stream.to_owned(),
        reason,
    };
    let Ok(mut handle) = js.get_stream(stream).await else {
        return Ok(Vec::new());
    };
    let last = handle
        .info()
        .await
        .map_err(|e| failed(e.to_string()))?
        .state
        .last_sequence;
    if last == 0 {
        return Ok(Vec::new());
    }
    let consumer = handle
        .create_consumer(pull::Config {
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::None,
            filter_subject: filter.to_owned(),
            inactive_threshold: Duration::from_secs(60),
            ..Default::default()
        })
        .await
        .map_err(|e| failed(e.to_string()))?;
    let mut doomed = Vec::new();
    'reading: loop {
        let mut batch = consumer
            .fetch()
            .max_messages(FETCH)
            .expires(Duration::from_millis(500))
            .messages()
            .await
            .map_err(|e| failed(e.to_string()))?;
        let mut got = 0;
        while let Some(message) = batch.next().await {
            let message = message.map_err(|e| failed(e.to_string()))?;
            got += 1;
            let sequence = message
                .info()
                .map_err(|e| failed(e.to_string()))?
                .stream_sequence;
            if matches(&message.payload) {
                doomed.push(sequence);
            }
            if sequence >= last {
                break 'reading;
            }
        }
        if got == 0 {
            break;
        }
    }
    let name = consumer.cached_info().name.clone();
    // Ephemeral, and gone by itself a minute later; deleting it now keeps erasures tidy.
    let _ = handle.delete_consumer(&name).await;
    Ok(doomed)
}

/// True when a message names `token` in its text: in a JSON payload, as a whole in one of
/// its strings or keys (so that an id `1` is not found in `"version": 1`); in any other
/// payload (a dead letter may be broken JSON), as a whole anywhere.
pub fn names(payload: &[u8], token: &str) -> bool {
    fn walk(value: &serde_json::Value, token: &str) -> bool {
        match value {
            serde_json::Value::String(text) => holds_token(text.as_bytes(), token),
            serde_json::Value::Array(items) => items.iter().any(|v| walk(v, token)),
            serde_json::Value::Object(map) => map
                .iter()
                .any(|(k, v)| holds_token(k.as_bytes(), token) || walk(v, token)),
            _ => false,
        }
    }
    match serde_json::from_slice::<serde_json::Value>(payload) {
        Ok(value) => walk(&value, token),
        Err(_) => holds_token(payload, token),
    }
}

/// True when `text` holds `token` as a whole: not as part of a longer id (`A-1` is not found
/// in `A-10`), so a purge of one person's messages leaves another's alone.
pub fn holds_token(text: &[u8], token: &str) -> bool {
    let token = token.as_bytes();
    if token.is_empty() || text.len() < token.len() {
        return false;
    }
    let part_of_id = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
    (0..=text.len() - token.len()).any(|at| {
        text[at..].starts_with(token)
            && (at == 0 || !part_of_id(text[at - 1]))
            && text
                .get(at + token.len())
                .is_none_or(|&after| !part_of_id(after))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_json_message_names_an_id_only_in_its_texts() {
        assert!(names(br#"{"data":{"applicant_id":"A-1"}}"#, "A-1"));
        assert!(names(br#"{"errors":[{"message":"for 1 ansoger"}]}"#, "1"));
        assert!(!names(br#"{"version":1,"data":{}}"#, "1"));
        assert!(names(b"not json, about A-1", "A-1"));
    }

    #[test]
    fn a_token_is_found_only_as_a_whole_id() {
        assert!(holds_token(br#"{"applicant_id":"A-1"}"#, "A-1"));
        assert!(holds_token(b"Ansoger A-1, hold 3", "A-1"));
        assert!(!holds_token(br#"{"applicant_id":"A-10"}"#, "A-1"));
        assert!(!holds_token(br#"{"applicant_id":"XA-1"}"#, "A-1"));
        assert!(!holds_token(b"", "A-1"));
    }
}
