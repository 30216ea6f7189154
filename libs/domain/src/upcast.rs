//! Reading stored events written under an older schema.
//!
//! The event store keeps each event as (event type, schema version, JSON payload), where the
//! payload is the `serde_json` form of [`Event`]. When an event's shape changes, its schema
//! version goes up and a step is added here that turns a payload of the previous version into
//! the next one. [`upcast`] runs the steps in order (v1→v2→…), so a payload of any version
//! reaches the current one; [`decode`] then turns it into an [`Event`].
//!
//! # Versions
//!
//! | event type | current | history |
//! |---|---|---|
//! | `created` | 2 | v1 had no `priority` (now `normal`) and stored the owner as `owner_team: "<team id>"` (exceptions were always team-owned then); the optional `person` was added within v2 (absent: none) |
//! | every other type | 1 | `erased`, `legal_hold_placed` and `legal_hold_released` are new at 1 |
//!
//! The personal fields of a stored payload may be sealed (encrypted): the store opens them
//! before upcasting (`followup_store::personal_data`), so an upcaster sees plain payloads.
//!
//! To change an event: bump its number in [`current_schema_version`], add the step to
//! `upcast_step`, add a test that decodes an old payload, and update the table above.

use serde_json::{json, Value};

use crate::followup::{Event, EVENT_TYPES};

/// Why a stored payload could not be brought to the current schema or decoded.
#[derive(Debug, thiserror::Error)]
pub enum UpcastError {
    /// The event type is not one this version of the domain knows.
    #[error("unknown event type \"{event_type}\": expected one of {}", EVENT_TYPES.join(", "))]
    UnknownEventType {
        /// The stored event type.
        event_type: String,
    },
    /// The schema version is below 1, which was never written.
    #[error("{event_type} event has schema version {version}, but versions start at 1")]
    InvalidVersion {
        /// The stored event type.
        event_type: String,
        /// The stored schema version.
        version: i32,
    },
    /// The payload was written by a newer version of the service; this one cannot read it.
    #[error(
        "{event_type} event has schema version {version}, newer than the {current} this \
         version understands: upgrade before reading it"
    )]
    VersionTooNew {
        /// The stored event type.
        event_type: String,
        /// The stored schema version.
        version: i32,
        /// The newest version this code reads.
        current: i32,
    },
    /// The payload does not have the shape its schema version promises.
    #[error("{event_type} event of schema version {version} is malformed: {reason}")]
    Malformed {
        /// The stored event type.
        event_type: String,
        /// The schema version whose shape it lacks.
        version: i32,
        /// What is wrong with it.
        reason: String,
    },
    /// The payload's own `type` field disagrees with the stored event type.
    #[error("event stored as \"{event_type}\" has a payload of type \"{payload_type}\"")]
    TypeMismatch {
        /// The stored event type.
        event_type: String,
        /// The `type` inside the payload.
        payload_type: String,
    },
    /// The upcast payload is not a valid event of its type.
    #[error("cannot decode {event_type} event: {source}")]
    Decode {
        /// The stored event type.
        event_type: String,
        /// What serde found wrong.
        source: serde_json::Error,
    },
}

impl UpcastError {
    /// A stable, machine-readable code for this error (for logs and metrics).
    pub fn code(&self) -> &'static str {
        match self {
            Self::UnknownEventType { .. } => "unknown_event_type",
            Self::InvalidVersion { .. } => "invalid_schema_version",
            Self::VersionTooNew { .. } => "schema_version_too_new",
            Self::Malformed { .. } => "malformed_payload",
            Self::TypeMismatch { .. } => "event_type_mismatch",
            Self::Decode { .. } => "undecodable_event",
        }
    }
}

/// The schema version new events of `event_type` are written with (see the module table).
/// Unknown event types get 0, a version no payload has; [`upcast`] refuses them.
pub fn current_schema_version(event_type: &str) -> i32 {
    match event_type {
        "created" => 2,
        known if EVENT_TYPES.contains(&known) => 1,
        _ => 0,
    }
}

impl Event {
    /// The schema version this event is written with.
    pub fn schema_version(&self) -> i32 {
        current_schema_version(self.event_type())
    }
}

/// Brings a stored payload of `event_type` at `schema_version` to the current schema, one
/// version at a time. A payload at the current version is returned unchanged.
pub fn upcast(event_type: &str, schema_version: i32, payload: Value) -> Result<Value, UpcastError> {
    let current = current_schema_version(event_type);
    if current == 0 {
        return Err(UpcastError::UnknownEventType {
            event_type: event_type.to_owned(),
        });
    }
    if schema_version < 1 {
        return Err(UpcastError::InvalidVersion {
            event_type: event_type.to_owned(),
            version: schema_version,
        });
    }
    if schema_version > current {
        return Err(UpcastError::VersionTooNew {
            event_type: event_type.to_owned(),
            version: schema_version,
            current,
        });
    }
    (schema_version..current).try_fold(payload, |payload, version| {
        upcast_step(event_type, version, payload)
    })
}

/// Turns a stored event into an [`Event`]: upcasts it, then deserializes it. A payload without
/// a `type` field gets the stored event type; one with a different `type` is refused.
pub fn decode(event_type: &str, schema_version: i32, payload: Value) -> Result<Event, UpcastError> {
    let mut payload = upcast(event_type, schema_version, payload)?;
    if let Value::Object(fields) = &mut payload {
        match fields.get("type") {
            None => {
                fields.insert("type".to_owned(), json!(event_type));
            }
            Some(Value::String(payload_type)) if payload_type == event_type => {}
            Some(other) => {
                return Err(UpcastError::TypeMismatch {
                    event_type: event_type.to_owned(),
                    payload_type: other.as_str().unwrap_or_default().to_owned(),
                });
            }
        }
    }
    serde_json::from_value(payload).map_err(|source| UpcastError::Decode {
        event_type: event_type.to_owned(),
        source,
    })
}

/// One step: a payload of `event_type` at `version` becomes one at `version + 1`.
fn upcast_step(event_type: &str, version: i32, payload: Value) -> Result<Value, UpcastError> {
    match (event_type, version) {
        ("created", 1) => created_v1_to_v2(payload),
        // Only reachable when a version is bumped without its step: a bug worth a clear error.
        _ => Err(UpcastError::Malformed {
            event_type: event_type.to_owned(),
            version,
            reason: format!("no upcaster from version {version} to {}", version + 1),
        }),
    }
}

/// `created` v1 → v2: adds `priority: "normal"` and turns `owner_team: "<id>"` into
/// `owner: {"type": "team", "id": "<id>"}`.
fn created_v1_to_v2(payload: Value) -> Result<Value, UpcastError> {
    let malformed = |reason: &str| UpcastError::Malformed {
        event_type: "created".to_owned(),
        version: 1,
        reason: reason.to_owned(),
    };
    let Value::Object(mut fields) = payload else {
        return Err(malformed("the payload is not a JSON object"));
    };
    let owner_team = match fields.remove("owner_team") {
        Some(Value::String(team)) => team,
        Some(_) => return Err(malformed("owner_team is not a string")),
        None => return Err(malformed("owner_team is missing")),
    };
    fields.insert(
        "owner".to_owned(),
        json!({"type": "team", "id": owner_team}),
    );
    fields.entry("priority").or_insert_with(|| json!("normal"));
    Ok(Value::Object(fields))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn created_v1() -> Value {
        json!({
            "type": "created",
            "id": "67e55044-10b1-426f-9247-bb680e5fe0c8",
            "institution": "KP",
            "kind": "exception",
            "subject": "Overførsel af ansøger fejlede",
            "description": "",
            "regarding": {"type": "application", "id": "A-1"},
            "owner_team": "admissions",
            "due": null,
            "source": {"type": "rule", "rule_id": "transfer_failed", "job": "applicant_transfer"},
            "at": "2024-08-01T06:00:00Z"
        })
    }

    #[test]
    fn created_is_at_version_2_and_every_other_event_at_1() {
        assert_eq!(current_schema_version("created"), 2);
        for event_type in EVENT_TYPES.iter().filter(|t| **t != "created") {
            assert_eq!(current_schema_version(event_type), 1, "{event_type}");
        }
        assert_eq!(current_schema_version("deleted"), 0);
    }

    #[test]
    fn created_v1_gets_a_normal_priority_and_a_team_owner() {
        let upcast = upcast("created", 1, created_v1()).unwrap();
        assert_eq!(upcast["priority"], json!("normal"));
        assert_eq!(upcast["owner"], json!({"type": "team", "id": "admissions"}));
        assert!(upcast.get("owner_team").is_none());
    }

    #[test]
    fn a_current_payload_is_left_unchanged() {
        let payload =
            json!({"type": "closed", "reason": "not_needed", "at": "2024-08-01T06:00:00Z"});
        assert_eq!(upcast("closed", 1, payload.clone()).unwrap(), payload);
    }

    #[test]
    fn created_v1_without_owner_team_is_malformed() {
        let mut payload = created_v1();
        payload.as_object_mut().unwrap().remove("owner_team");
        let error = upcast("created", 1, payload).unwrap_err();
        assert_eq!(error.code(), "malformed_payload");
        assert!(
            error.to_string().contains("owner_team is missing"),
            "{error}"
        );
    }

    #[test]
    fn unknown_types_and_versions_are_refused() {
        assert_eq!(
            upcast("deleted", 1, json!({})).unwrap_err().code(),
            "unknown_event_type"
        );
        assert_eq!(
            upcast("created", 3, json!({})).unwrap_err().code(),
            "schema_version_too_new"
        );
        assert_eq!(
            upcast("closed", 2, json!({})).unwrap_err().code(),
            "schema_version_too_new"
        );
        assert_eq!(
            upcast("closed", 0, json!({})).unwrap_err().code(),
            "invalid_schema_version"
        );
    }

    #[test]
    fn decode_refuses_a_payload_of_another_type() {
        let payload =
            json!({"type": "closed", "reason": "not_needed", "at": "2024-08-01T06:00:00Z"});
        assert_eq!(
            decode("completed", 1, payload).unwrap_err().code(),
            "event_type_mismatch"
        );
    }

    #[test]
    fn decode_fills_in_a_missing_type_from_the_stored_event_type() {
        let payload = json!({"reason": "not_needed", "at": "2024-08-01T06:00:00Z"});
        let event = decode("closed", 1, payload).unwrap();
        assert_eq!(event.event_type(), "closed");
    }

    #[test]
    fn decode_names_the_event_type_when_the_payload_is_invalid() {
        let payload = json!({"type": "shared", "principal": {"type": "user", "id": ""}, "access": "read", "at": "2024-08-01T06:00:00Z"});
        let error = decode("shared", 1, payload).unwrap_err();
        assert_eq!(error.code(), "undecodable_event");
        assert!(
            error.to_string().starts_with("cannot decode shared event"),
            "{error}"
        );
    }
}
