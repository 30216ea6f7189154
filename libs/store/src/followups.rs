//! Follow-ups in the store: their stream type, the upcaster that reads old payloads, and the
//! names the rest of the service uses for the executor over follow-ups ([`FollowUps`]).

use std::sync::Arc;

use followup_domain::aggregate::Aggregate;
use followup_domain::FollowUp;
use serde_json::Value;

use crate::event_store::Upcaster;
use crate::executor::{ExecuteError, Executor};
use crate::personal_data::{KeyTag, PersonalData};

/// The stream type of follow-up streams.
pub const STREAM_TYPE: &str = <FollowUp as Aggregate>::STREAM_TYPE;

/// Loads follow-ups and runs commands on them: the executor over follow-ups.
pub type FollowUps = Executor<FollowUp>;

/// Why a follow-up command did not run.
pub type RepoError = ExecuteError<FollowUp>;

/// The result of a follow-up command.
pub type Outcome = crate::executor::Outcome<FollowUp>;

/// Upcasts stored follow-up events with the domain's upcasters.
#[derive(Debug, Clone, Copy, Default)]
pub struct FollowUpUpcaster;

impl Upcaster for FollowUpUpcaster {
    fn upcast(
        &self,
        stream_type: &str,
        event_type: &str,
        schema_version: i32,
        payload: Value,
    ) -> Result<(i32, Value), String> {
        if stream_type != STREAM_TYPE {
            return Ok((schema_version, payload));
        }
        FollowUp::upcast(event_type, schema_version, payload)
    }

    fn personal_data(&self) -> Option<&dyn PersonalData> {
        Some(&FollowUpPersonalData)
    }
}

/// The personal data in follow-up events: what a person's follow-up says about them (its
/// subject, description and occurrence details), the id of the record it is about, and the
/// person. Owners, shares and actors are caseworkers acting at work, and stay readable.
#[derive(Debug, Clone, Copy, Default)]
pub struct FollowUpPersonalData;

impl PersonalData for FollowUpPersonalData {
    fn fields(&self, stream_type: &str, event_type: &str) -> &'static [&'static str] {
        if stream_type != STREAM_TYPE {
            return &[];
        }
        match event_type {
            "created" => &["subject", "description", "regarding.id", "person"],
            "edited" => &["subject", "description"],
            "note_added" => &["text"],
            "recurred" | "reopened" => &["details"],
            _ => &[],
        }
    }

    fn tag(&self, _stream_type: &str, payload: &Value, _actor: &Value) -> KeyTag {
        let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
        KeyTag {
            institution: text(payload, "institution"),
            subject: payload
                .get("person")
                .and_then(|p| Some((text(p, "type")?, text(p, "id")?))),
        }
    }

    fn erased(&self, path: &str) -> Option<Value> {
        (path != "person").then(|| Value::String(followup_domain::ERASED.to_owned()))
    }
}

/// The upcaster for stores that hold follow-ups.
pub fn upcaster() -> Arc<dyn Upcaster> {
    Arc::new(FollowUpUpcaster)
}
