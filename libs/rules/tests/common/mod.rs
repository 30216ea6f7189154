//! Helpers shared by the integration tests: contract example messages as [`EventView`]s.

#![allow(dead_code)] // each test file uses a different part

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use followup_rules::EventView;
use serde::Deserialize;
use serde_json::Value;

/// An inbound CloudEvent, owned, as the worker would have parsed it.
#[derive(Debug, Clone, Deserialize)]
pub struct Message {
    /// CloudEvent `id`.
    pub id: String,
    /// CloudEvent `type`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// CloudEvent `source`.
    pub source: String,
    /// The `institution` extension.
    pub institution: String,
    /// CloudEvent `subject`.
    pub subject: Option<String>,
    /// CloudEvent `time`.
    pub time: DateTime<Utc>,
    /// CloudEvent `data`.
    pub data: Value,
}

impl Message {
    /// A borrowed view for [`followup_rules::RuleSet::evaluate`].
    pub fn view(&self) -> EventView<'_> {
        EventView {
            id: &self.id,
            event_type: &self.event_type,
            source: &self.source,
            institution: &self.institution,
            subject: self.subject.as_deref(),
            time: self.time,
            data: &self.data,
        }
    }

    /// The same message with another type.
    pub fn with_type(mut self, event_type: &str) -> Self {
        self.event_type = event_type.to_owned();
        self
    }

    /// The same message with `data.<field>` set to `value`.
    pub fn with_data(mut self, field: &str, value: Value) -> Self {
        self.data[field] = value;
        self
    }

    /// The same message without `data.<field>`.
    pub fn without_data(mut self, field: &str) -> Self {
        if let Some(fields) = self.data.as_object_mut() {
            fields.remove(field);
        }
        self
    }
}

/// The directory of this crate's test fixtures.
pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// A contract example message (`docs/contracts/examples/`), by file name without `.json`.
pub fn example(name: &str) -> Message {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../docs/contracts/examples")
        .join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not a CloudEvent: {e}", path.display()))
}

/// A time written as RFC 3339.
pub fn at(text: &str) -> DateTime<Utc> {
    text.parse().expect("an RFC 3339 time")
}
