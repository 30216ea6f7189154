//! The CloudEvents 1.0 envelope of inbound messages (JSON structured mode), design section 4.
//!
//! Parsing checks each attribute and says which one is wrong, because the error ends up in a
//! dead letter that an operator reads.

use chrono::{DateTime, Utc};
use followup_domain::screen;
use serde_json::{Map, Value};

/// The largest inbound message processed; a larger one is dead-lettered.
pub const MAX_MESSAGE_BYTES: usize = 1024 * 1024;

/// A parsed inbound event.
#[derive(Debug, Clone, PartialEq)]
pub struct CloudEvent {
    /// Unique per `source`; also the `Nats-Msg-Id`.
    pub id: String,
    /// Which system produced it, e.g. `esas/jobs/applicant-transfer`.
    pub source: String,
    /// What happened, e.g. `dk.esas.job.applicant_transfer.failed`.
    pub event_type: String,
    /// When it happened.
    pub time: DateTime<Utc>,
    /// What it is about, e.g. `application/APP-2026-104711`.
    pub subject: Option<String>,
    /// The tenant (extension attribute `institution`), e.g. `KP`.
    pub institution: String,
    /// W3C trace context, when the publisher traces.
    pub traceparent: Option<String>,
    /// The event's data (always a JSON object).
    pub data: Value,
}

/// Why a message is not a usable CloudEvent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// The message is larger than [`MAX_MESSAGE_BYTES`].
    #[error("message is {0} bytes, over the limit of 1 MiB")]
    TooLarge(usize),
    /// The bytes are not JSON.
    #[error("not valid JSON: {0}")]
    InvalidJson(String),
    /// The JSON is not an object.
    #[error("not a CloudEvent: the message is JSON but not an object")]
    NotAnObject,
    /// A required attribute is absent or empty.
    #[error("not a CloudEvent: required attribute `{0}` is missing")]
    Missing(&'static str),
    /// A text (an attribute, a data field or a key) holds a character PostgreSQL cannot store
    /// (NUL).
    #[error("text at `{0}` holds the NUL character (\\u0000), which cannot be stored")]
    InvalidText(String),
    /// An attribute has a value that is not allowed.
    #[error("not a CloudEvent: attribute `{attribute}` {reason}")]
    Invalid {
        /// The attribute.
        attribute: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

impl EnvelopeError {
    /// A short stable code for metrics and dead-letter headers.
    pub fn code(&self) -> &'static str {
        match self {
            Self::TooLarge(_) => "too_large",
            Self::InvalidJson(_) => "invalid_json",
            Self::InvalidText(_) => "invalid_text",
            Self::NotAnObject | Self::Missing(_) | Self::Invalid { .. } => "not_a_cloudevent",
        }
    }
}

impl CloudEvent {
    /// The span of handling this event by `role` (`rule_worker.message`, …), with the ids
    /// people search by, continuing the publisher's trace when it sent a `traceparent`.
    pub fn span(&self, name: &'static str) -> tracing::Span {
        let job_run = self.data.get("job_run_id").and_then(|v| v.as_str());
        let span = tracing::info_span!(
            "message",
            otel.name = name,
            otel.kind = "consumer",
            cloudevent.id = %self.id,
            cloudevent.type = %self.event_type,
            cloudevent.source = %self.source,
            institution = %self.institution,
            job.run_id = job_run,
        );
        followup_platform::trace::continue_trace(&span, self.traceparent.as_deref());
        span
    }

    /// Parses a message payload.
    pub fn parse(payload: &[u8]) -> Result<Self, EnvelopeError> {
        if payload.len() > MAX_MESSAGE_BYTES {
            return Err(EnvelopeError::TooLarge(payload.len()));
        }
        let value: Value = serde_json::from_slice(payload)
            .map_err(|e| EnvelopeError::InvalidJson(e.to_string()))?;
        if let Some(path) = screen::first_unstorable(&value) {
            return Err(EnvelopeError::InvalidText(path));
        }
        let Value::Object(obj) = value else {
            return Err(EnvelopeError::NotAnObject);
        };
        let specversion = required(&obj, "specversion")?;
        if specversion != "1.0" {
            return Err(invalid(
                "specversion",
                format!("is {specversion:?}; only \"1.0\" is supported"),
            ));
        }
        let id = required(&obj, "id")?;
        let source = required(&obj, "source")?;
        let event_type = required(&obj, "type")?;
        if !event_type.starts_with("dk.esas.") || event_type.split('.').count() < 5 {
            return Err(invalid(
                "type",
                format!("is {event_type:?}; expected dk.esas.job.<job>.<outcome> or dk.esas.event.<entity>.<event>"),
            ));
        }
        let time = required(&obj, "time")?;
        let time = DateTime::parse_from_rfc3339(time)
            .map_err(|e| {
                invalid(
                    "time",
                    format!("is {time:?}, not an RFC 3339 timestamp ({e})"),
                )
            })?
            .with_timezone(&Utc);
        if let Some(ct) = optional(&obj, "datacontenttype")? {
            if !ct.starts_with("application/json") {
                return Err(invalid(
                    "datacontenttype",
                    format!("is {ct:?}; only application/json is supported"),
                ));
            }
        }
        let institution = required(&obj, "institution")?;
        if institution.len() > 32
            || !institution
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(invalid(
                "institution",
                format!("is {institution:?}; expected a short code such as KP"),
            ));
        }
        let subject = optional(&obj, "subject")?.map(str::to_owned);
        let traceparent = optional(&obj, "traceparent")?.map(str::to_owned);
        let data = match obj.get("data") {
            Some(Value::Object(_)) => obj["data"].clone(),
            Some(_) => return Err(invalid("data", "is not a JSON object".into())),
            None => return Err(EnvelopeError::Missing("data")),
        };
        Ok(Self {
            id: id.to_owned(),
            source: source.to_owned(),
            event_type: event_type.to_owned(),
            time,
            subject,
            institution: institution.to_owned(),
            traceparent,
            data,
        })
    }

    /// Masks every CPR number in every attribute and in the data (keys included), before
    /// anything of the event is stored, published or logged (design section 3). The ids stay
    /// deterministic: a redelivery masks to the same id. True when something was masked.
    pub fn mask_cpr(&mut self) -> bool {
        let mut masked = false;
        for text in [
            &mut self.id,
            &mut self.source,
            &mut self.event_type,
            &mut self.institution,
        ] {
            masked |= screen::mask_in_place(text);
        }
        for text in [&mut self.subject, &mut self.traceparent]
            .into_iter()
            .flatten()
        {
            masked |= screen::mask_in_place(text);
        }
        masked | screen::mask_cpr(&mut self.data)
    }

    /// The NATS subject this event belongs on: `dk.esas.job.a.b` → `esas.jobs.a.b`,
    /// `dk.esas.event.a.b` → `esas.events.a.b`.
    pub fn nats_subject(&self) -> Option<String> {
        let rest = self.event_type.strip_prefix("dk.esas.")?;
        if let Some(job) = rest.strip_prefix("job.") {
            Some(format!("esas.jobs.{job}"))
        } else {
            rest.strip_prefix("event.")
                .map(|e| format!("esas.events.{e}"))
        }
    }

    /// The key that makes this message's effects happen once: `source` and `id` together
    /// identify a CloudEvent.
    pub fn idempotency_key(&self) -> String {
        format!("{}#{}", self.source, self.id)
    }
}

fn invalid(attribute: &'static str, reason: String) -> EnvelopeError {
    EnvelopeError::Invalid { attribute, reason }
}

fn required<'a>(obj: &'a Map<String, Value>, name: &'static str) -> Result<&'a str, EnvelopeError> {
    optional(obj, name)?.ok_or(EnvelopeError::Missing(name))
}

fn optional<'a>(
    obj: &'a Map<String, Value>,
    name: &'static str,
) -> Result<Option<&'a str>, EnvelopeError> {
    match obj.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(invalid(name, "is not a string".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn valid() -> Value {
        json!({
            "specversion": "1.0", "id": "e1", "source": "esas/jobs/x",
            "type": "dk.esas.job.applicant_transfer.failed", "time": "2026-07-28T09:14:05Z",
            "datacontenttype": "application/json", "institution": "KP", "data": {"a": 1}
        })
    }

    fn parse(v: &Value) -> Result<CloudEvent, EnvelopeError> {
        CloudEvent::parse(&serde_json::to_vec(v).unwrap())
    }

    #[test]
    fn a_valid_envelope_parses_and_maps_to_its_nats_subject() {
        let event = parse(&valid()).unwrap();
        assert_eq!(event.institution, "KP");
        assert_eq!(
            event.nats_subject().as_deref(),
            Some("esas.jobs.applicant_transfer.failed")
        );
        assert_eq!(event.idempotency_key(), "esas/jobs/x#e1");
    }

    #[test]
    fn each_broken_attribute_is_named_in_the_error() {
        let cases: &[(&str, Value, &str)] = &[
            ("id", Value::Null, "`id` is missing"),
            ("institution", Value::Null, "`institution` is missing"),
            ("specversion", json!("0.3"), "`specversion`"),
            ("time", json!("yesterday"), "`time`"),
            ("type", json!("order.created"), "`type`"),
            ("data", json!([1]), "`data`"),
            ("datacontenttype", json!("text/xml"), "`datacontenttype`"),
            ("source", json!(7), "`source` is not a string"),
        ];
        for (attribute, value, expected) in cases {
            let mut v = valid();
            v[*attribute] = value.clone();
            let err = parse(&v).unwrap_err().to_string();
            assert!(err.contains(expected), "{attribute}: {err}");
        }
    }

    #[test]
    fn a_nul_anywhere_is_invalid_text_named_by_its_path() {
        let mut v = valid();
        v["data"] = json!({"job_run_id": "run\u{0}1"});
        let err = parse(&v).unwrap_err();
        assert_eq!(err.code(), "invalid_text");
        assert!(err.to_string().contains("`data.job_run_id`"), "{err}");
        let mut v = valid();
        v["id"] = json!("e\u{0}");
        assert_eq!(parse(&v).unwrap_err().code(), "invalid_text");
    }

    #[test]
    fn masking_hides_cpr_numbers_in_every_attribute_and_the_data() {
        let mut v = valid();
        v["id"] = json!("run-010190-1234");
        v["subject"] = json!("student/0101901234");
        v["data"] = json!({"regarding": {"id": "010190 1234"}});
        let mut event = parse(&v).unwrap();
        assert!(event.mask_cpr());
        assert_eq!(event.id, "run-010190-xxxx");
        assert_eq!(event.subject.as_deref(), Some("student/010190-xxxx"));
        assert_eq!(event.data, json!({"regarding": {"id": "010190-xxxx"}}));
        assert!(!event.mask_cpr());
    }

    #[test]
    fn invalid_json_a_non_object_and_an_oversized_message_are_refused() {
        assert_eq!(
            CloudEvent::parse(b"{nope").unwrap_err().code(),
            "invalid_json"
        );
        assert_eq!(
            CloudEvent::parse(b"[1,2]").unwrap_err(),
            EnvelopeError::NotAnObject
        );
        let big = vec![b' '; MAX_MESSAGE_BYTES + 1];
        assert_eq!(CloudEvent::parse(&big).unwrap_err().code(), "too_large");
    }
}
