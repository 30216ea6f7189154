//! The JetStream streams of the contracts, created or updated on start (idempotent).

use std::time::Duration;

use async_nats::jetstream::stream::{Config, DiscardPolicy, StorageType};

use crate::JetStream;

/// Stream names and settings (the defaults are the contract's names).
#[derive(Debug, Clone)]
pub struct Streams {
    /// Inbound job outcomes, `esas.jobs.<job>.<outcome>`.
    pub jobs: String,
    /// Inbound ESAS domain events, `esas.events.<entity>.<event>`.
    pub events: String,
    /// Outbound follow-up events and live notifications, `followups.events.>` and `followups.notify.>`.
    pub followups: String,
    /// Dead letters, `followups.dlq.<source stream>`.
    pub dead_letters: String,
    /// Replicas per stream: 1 on a single server, 3 on a three-node cluster.
    pub replicas: usize,
    /// How long a dead letter is kept (`FOLLOWUP_DLQ_RETENTION_DAYS`): it holds the
    /// original message, CPR numbers included, for redrive.
    pub dead_letter_retention: Duration,
    /// How long an outbound follow-up event is kept (`FOLLOWUP_OUTBOUND_RETENTION_DAYS`): it
    /// holds personal data, which an erasure purges from the stream at once as well.
    pub outbound_retention: Duration,
}

impl Default for Streams {
    fn default() -> Self {
        Self {
            jobs: "ESAS_JOBS".into(),
            events: "ESAS_EVENTS".into(),
            followups: "FOLLOWUPS".into(),
            dead_letters: "FOLLOWUPS_DLQ".into(),
            replicas: 1,
            dead_letter_retention: 30 * DAY,
            outbound_retention: 30 * DAY,
        }
    }
}

/// A stream could not be created or updated.
#[derive(Debug, thiserror::Error)]
#[error("JetStream stream {stream} cannot be created or updated (is JetStream enabled, with room for it?): {reason}")]
pub struct StreamError {
    /// The stream concerned.
    pub stream: String,
    /// The server's answer.
    pub reason: String,
}

/// How long JetStream remembers a `Nats-Msg-Id`: a message republished within this window is
/// stored once. Beyond it, the rule worker's own idempotency takes over.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(10 * 60);

/// The largest message a stream accepts. Inbound messages over 1 MiB are dead-lettered by the
/// workers; the dead-letter stream must still be able to keep them unchanged.
const MAX_STORED_MESSAGE: i32 = 8 * 1024 * 1024;

const DAY: Duration = Duration::from_secs(24 * 60 * 60);

impl Streams {
    /// Every stream's configuration.
    pub fn configs(&self) -> Vec<Config> {
        let stream = |name: &str, subjects: &[&str], max_age: Duration, description: &str| Config {
            name: name.to_owned(),
            description: Some(description.to_owned()),
            subjects: subjects.iter().map(|s| (*s).to_owned()).collect(),
            storage: StorageType::File,
            num_replicas: self.replicas,
            duplicate_window: DUPLICATE_WINDOW,
            max_age,
            max_bytes: 10 * 1024 * 1024 * 1024,
            max_message_size: MAX_STORED_MESSAGE,
            discard: DiscardPolicy::Old,
            ..Default::default()
        };
        vec![
            stream(
                &self.jobs,
                &["esas.jobs.>"],
                30 * DAY,
                "ESAS job outcomes (inbound)",
            ),
            stream(
                &self.events,
                &["esas.events.>"],
                30 * DAY,
                "ESAS domain events (inbound)",
            ),
            stream(
                &self.followups,
                &["followups.events.>", "followups.notify.>"],
                self.outbound_retention,
                "Follow-up events and live notifications (outbound)",
            ),
            stream(
                &self.dead_letters,
                &["followups.dlq.>"],
                self.dead_letter_retention,
                "Dead letters: inbound messages that could not be processed",
            ),
        ]
    }
}

/// Creates the streams, or updates them to these settings. Safe to run on every start and
/// from several processes at once.
pub async fn ensure_streams(js: &JetStream, streams: &Streams) -> Result<(), StreamError> {
    for config in streams.configs() {
        let name = config.name.clone();
        js.create_or_update_stream(config)
            .await
            .map_err(|e| StreamError {
                stream: name,
                reason: e.to_string(),
            })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_letters_are_kept_30_days_unless_configured_otherwise() {
        let retention = |streams: &Streams| {
            streams
                .configs()
                .into_iter()
                .find(|c| c.name == streams.dead_letters)
                .map(|c| c.max_age)
        };
        assert_eq!(retention(&Streams::default()), Some(30 * DAY));
        let week = Streams {
            dead_letter_retention: 7 * DAY,
            ..Streams::default()
        };
        assert_eq!(retention(&week), Some(7 * DAY));
    }
}
