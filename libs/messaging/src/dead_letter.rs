//! Dead letters (design section 6): a message that can never be processed is kept, unchanged,
//! on `followups.dlq.<source stream>` with headers saying why and where it came from, and is
//! then terminated on its consumer so the worker goes on with the next message.

use async_nats::jetstream::message::{AckKind, Message};
use async_nats::HeaderMap;

use followup_domain::{mask, KnownInstitutions};

use crate::publish::{publish_event, PublishError};
use crate::{CloudEvent, JetStream};

/// Header: why the message was dead-lettered.
pub const REASON: &str = "Followup-Dlq-Reason";
/// Header: a short stable code for the reason.
pub const REASON_CODE: &str = "Followup-Dlq-Code";
/// Header: the subject it arrived on.
pub const SOURCE_SUBJECT: &str = "Followup-Dlq-Subject";
/// Header: the stream it came from.
pub const SOURCE_STREAM: &str = "Followup-Dlq-Stream";
/// Header: its sequence in that stream.
pub const SOURCE_SEQUENCE: &str = "Followup-Dlq-Sequence";

/// Why a message is dead-lettered.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// A short stable code (`invalid_json`, `not_a_cloudevent`, `unknown_type`, …).
    pub code: &'static str,
    /// The reason, for the operator.
    pub reason: String,
}

/// Copies `message` to the dead-letter stream with the reason, then terminates it (no more
/// redeliveries). The dead letter's `Nats-Msg-Id` is derived from the source stream and
/// sequence, so a redelivered poison message is kept once.
pub async fn dead_letter(
    js: &JetStream,
    message: &Message,
    why: &DeadLetter,
) -> Result<(), PublishError> {
    let (stream, sequence) = match message.info() {
        Ok(info) => (info.stream.to_owned(), info.stream_sequence),
        Err(_) => ("UNKNOWN".to_owned(), 0),
    };
    let mut headers = message.headers.clone().unwrap_or_default();
    // Keep the original's own id under another name: the dead letter needs an id of its own.
    if let Some(original) = headers.get(async_nats::header::NATS_MESSAGE_ID).cloned() {
        headers.insert("Followup-Dlq-Original-Msg-Id", original);
    }
    let mut dlq_headers = HeaderMap::new();
    for (name, values) in headers.iter() {
        // JetStream's own headers (`Nats-Msg-Id`, `Nats-Expected-*`, `Nats-TTL`, …) would
        // make the dead letter's publish mean something else, or be refused.
        let name_text: &str = name.as_ref();
        if name_text.len() >= 5 && name_text[..5].eq_ignore_ascii_case("nats-") {
            continue;
        }
        for value in values {
            dlq_headers.append(name.clone(), value.clone());
        }
    }
    // Header values are one line, and a reason may quote what a sender wrote.
    let reason: String = mask(&why.reason)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(2000)
        .collect();
    dlq_headers.insert(REASON, reason.as_str());
    dlq_headers.insert(REASON_CODE, why.code);
    dlq_headers.insert(SOURCE_SUBJECT, message.subject.as_str());
    dlq_headers.insert(SOURCE_STREAM, stream.as_str());
    dlq_headers.insert(SOURCE_SEQUENCE, sequence.to_string().as_str());
    publish_event(
        js,
        format!("followups.dlq.{stream}"),
        &format!("dlq-{stream}-{sequence}"),
        dlq_headers,
        message.payload.clone(),
    )
    .await?;
    message
        .ack_with(AckKind::Term)
        .await
        .map_err(|e| PublishError {
            subject: message.subject.to_string(),
            reason: format!("term after dead-lettering: {e}"),
        })
}

/// The inbound boundary: the CloudEvent in an inbound message, screened before any database
/// work, or why the message is poison. In this order:
/// 1. it must be a CloudEvent whose texts can all be stored (a NUL anywhere: `invalid_text`);
/// 2. every CPR number in every attribute and in the data is masked (the dead letter keeps
///    the original message, for redrive);
/// 3. its institution must be one of `institutions` (`unknown_institution`);
/// 4. it must have been published on the subject its type belongs on (`wrong_subject`).
pub fn parse_inbound(
    message: &Message,
    institutions: &KnownInstitutions,
) -> Result<CloudEvent, DeadLetter> {
    let mut event = CloudEvent::parse(&message.payload).map_err(|e| DeadLetter {
        code: e.code(),
        reason: e.to_string(),
    })?;
    event.mask_cpr();
    if !institutions.contains(&event.institution) {
        return Err(DeadLetter {
            code: "unknown_institution",
            reason: format!(
                "institution {:?} is not one this service serves (FOLLOWUP_INSTITUTIONS: {institutions})",
                event.institution
            ),
        });
    }
    if event.nats_subject().as_deref() != Some(message.subject.as_str()) {
        return Err(DeadLetter {
            code: "wrong_subject",
            reason: format!(
                "type {} does not belong on subject {}",
                event.event_type, message.subject
            ),
        });
    }
    Ok(event)
}

/// How [`reject`] settled a poison message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejected {
    /// Kept in the dead-letter stream and terminated.
    DeadLettered,
    /// The dead-letter stream could not take it: nak'ed, so it comes back rather than being
    /// lost.
    Retried,
}

/// Logs a poison message once and moves it to the dead-letter stream (see [`dead_letter`]).
///
/// The reason and the subject are logged and kept with CPR numbers masked: they may quote
/// what a hostile sender wrote.
pub async fn reject(js: &JetStream, message: &Message, why: &DeadLetter) -> Rejected {
    tracing::warn!(
        message.subject = %mask(&message.subject),
        dead_letter.code = why.code,
        dead_letter.reason = %mask(&why.reason),
        "inbound message dead-lettered"
    );
    match dead_letter(js, message, why).await {
        Ok(()) => Rejected::DeadLettered,
        Err(error) => {
            tracing::warn!(error.message = %error, "dead-lettering failed; message will be redelivered");
            crate::consumer::nak_all(vec![message]).await;
            Rejected::Retried
        }
    }
}

/// Why handling an admitted message failed, which decides how it is settled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// A dependency (PostgreSQL) cannot be reached or cannot work now (read-only, out of
    /// resources, a lost privilege): not the message's fault. Nak'ed for a later delivery,
    /// however many that takes; nothing is lost while the database is away.
    Unreachable(String),
    /// The database refused the message's content (a data exception, a value over a limit):
    /// it never will take it. Dead-lettered at once as `refused_by_database`.
    Refused(String),
    /// Anything else (contention that did not end, an unexpected error): nak'ed, and
    /// dead-lettered as `too_many_deliveries` with this error once it has failed so the most
    /// times allowed. Only these failures count, not deliveries nak'ed while the database was
    /// unreachable; they are counted by this process (a restart starts again from zero).
    Failed(String),
}

impl Failure {
    /// The reason, for logs and the dead letter.
    pub fn reason(&self) -> &str {
        match self {
            Self::Unreachable(r) | Self::Refused(r) | Self::Failed(r) => r,
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.reason())
    }
}

/// Settles `message` after `failure` (see [`Failure`]): nak'ed for a later delivery, or
/// dead-lettered once retrying cannot help or it has been delivered `max_deliveries` times.
pub async fn settle_failure(
    js: &JetStream,
    message: &Message,
    failure: &Failure,
    max_deliveries: i64,
) -> Rejected {
    let why = match failure {
        Failure::Unreachable(_) => None,
        Failure::Refused(reason) => Some(DeadLetter {
            code: "refused_by_database",
            reason: reason.clone(),
        }),
        Failure::Failed(reason) => {
            let failed = failures::count(message);
            (i64::from(failed) >= max_deliveries).then(|| DeadLetter {
                code: "too_many_deliveries",
                reason: format!("failed {failed} times; the last: {reason}"),
            })
        }
    };
    match why {
        Some(why) => {
            failures::forget(message);
            reject(js, message, &why).await
        }
        None => {
            crate::consumer::nak_all(vec![message]).await;
            Rejected::Retried
        }
    }
}

/// How often each message has failed for a reason that counts ([`Failure::Failed`]), by
/// stream, sequence and the time it was stored (which tells apart the same sequence on
/// another server, as in tests), in this process.
pub(crate) mod failures {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};

    use async_nats::jetstream::message::Message;

    /// More messages failing at once than this means something else is wrong: the counts
    /// start again rather than grow without bound.
    const MOST: usize = 100_000;

    type Key = (String, u64, i128);

    fn counts() -> &'static Mutex<HashMap<Key, u32>> {
        static COUNTS: OnceLock<Mutex<HashMap<Key, u32>>> = OnceLock::new();
        COUNTS.get_or_init(Default::default)
    }

    fn key(message: &Message) -> Option<Key> {
        let info = message.info().ok()?;
        Some((
            info.stream.to_owned(),
            info.stream_sequence,
            info.published.unix_timestamp_nanos(),
        ))
    }

    /// Counts one more failure of `message`; returns how many it has had.
    pub(crate) fn count(message: &Message) -> u32 {
        let Some(key) = key(message) else { return 1 };
        let mut counts = counts().lock().unwrap_or_else(|e| e.into_inner());
        if counts.len() >= MOST {
            counts.clear();
        }
        let n = counts.entry(key).or_default();
        *n += 1;
        *n
    }

    /// `message` is settled: its count goes.
    pub(crate) fn forget(message: &Message) {
        let Some(key) = key(message) else { return };
        let mut counts = counts().lock().unwrap_or_else(|e| e.into_inner());
        if !counts.is_empty() {
            counts.remove(&key);
        }
    }
}
