//! Stored events of older schema versions still decode to the current events.

mod support;

use followup_domain::{current_schema_version, decode, Event, Kind, Priority, Regarding};
use serde_json::json;
use support::*;

#[test]
fn a_version_1_created_payload_decodes_to_the_current_created_event() {
    let stored = json!({
        "type": "created",
        "id": followup_id().to_string(),
        "institution": "KP",
        "kind": "exception",
        "subject": "Manglende GUE'er efter overførsel",
        "description": "SUE 12 og 14 blev ikke oprettet",
        "regarding": {"type": "application", "id": "A-1"},
        "owner_team": "admissions",
        "due": "2025-03-10T08:00:00Z",
        "source": {"type": "rule", "rule_id": "transfer_defects", "job": "applicant_transfer"},
        "at": "2025-03-03T08:00:00Z"
    });

    let event = decode("created", 1, stored).expect("a version 1 payload decodes");

    let mut expected = new_followup(Kind::Exception, rule_source());
    expected.regarding = Some(Regarding::parse("application", "A-1").unwrap());
    expected.due = Some(at(24 * 7));
    assert_eq!(expected.owner, team("admissions"));
    assert_eq!(expected.priority, Priority::Normal);
    assert_eq!(event, created_from(expected, at(0)));
}

#[test]
fn a_current_created_event_survives_storage_unchanged() {
    let event = created_exception();
    let payload = serde_json::to_value(&event).unwrap();
    assert!(payload.get("owner_team").is_none());
    assert_eq!(
        decode("created", current_schema_version("created"), payload).unwrap(),
        event
    );
}

#[test]
fn a_decoded_event_names_its_type_when_the_payload_is_broken() {
    let error = decode("created", 2, json!({"type": "created", "id": "nope"})).unwrap_err();
    assert!(error.to_string().contains("created"), "{error}");
    assert_eq!(Event::schema_version(&created_task()), 2);
}
