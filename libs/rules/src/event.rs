//! The inbound event as rules see it, and how field paths find values in it.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::template::FieldPath;

/// A borrowed view of one inbound CloudEvent: the attributes rules read, and its `data`.
///
/// The rule worker has already parsed and checked the envelope; this crate only reads it.
#[derive(Debug, Clone, Copy)]
pub struct EventView<'a> {
    /// The CloudEvent `id`; usable as `{id}` in templates.
    pub id: &'a str,
    /// The CloudEvent `type`, e.g. `dk.esas.job.applicant_transfer.failed`: what rules match on.
    pub event_type: &'a str,
    /// The CloudEvent `source`, e.g. `esas/jobs/applicant-transfer`: the default `job`.
    pub source: &'a str,
    /// The `institution` extension: where the follow-up lives, and which owner team applies.
    pub institution: &'a str,
    /// The CloudEvent `subject`, when sent; usable as `{subject}` in templates.
    pub subject: Option<&'a str>,
    /// The CloudEvent `time`: due dates count from it, so replays give the same due date.
    pub time: DateTime<Utc>,
    /// The CloudEvent `data`: what `data.…` paths read.
    pub data: &'a Value,
}

impl<'a> EventView<'a> {
    /// The value at an event path (`data.…` or an envelope attribute); `None` when absent.
    pub(crate) fn field(&self, path: &FieldPath) -> Option<Cow<'a, Value>> {
        let text = |s: &str| Some(Cow::Owned(Value::String(s.to_owned())));
        match path.root() {
            "data" => walk(self.data, path.rest()).map(Cow::Borrowed),
            "institution" => text(self.institution),
            "source" => text(self.source),
            "subject" => self.subject.and_then(text),
            "id" => text(self.id),
            "type" => text(self.event_type),
            // Paths are validated at load; an unknown root cannot get here.
            _ => None,
        }
    }
}

/// Follows `parts` down from `value`: names index objects, numbers index lists.
pub(crate) fn walk<'v>(value: &'v Value, parts: &[String]) -> Option<&'v Value> {
    parts.iter().try_fold(value, |current, part| match current {
        Value::Object(fields) => fields.get(part),
        Value::Array(items) => part.parse::<usize>().ok().and_then(|i| items.get(i)),
        _ => None,
    })
}

/// The text a value renders as: `Ok(None)` when it counts as missing (null or blank text),
/// `Err(expected)` when it is a list or an object, which have no single text.
pub(crate) fn text_of(value: &Value) -> Result<Option<String>, &'static str> {
    match value {
        Value::Null => Ok(None),
        Value::String(s) if s.trim().is_empty() => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        Value::Number(n) => Ok(Some(n.to_string())),
        Value::Bool(b) => Ok(Some(b.to_string())),
        Value::Array(_) | Value::Object(_) => Err("text, a number or a boolean"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::Scope;
    use serde_json::json;

    fn path(text: &str) -> FieldPath {
        FieldPath::parse(text, Scope::Event).unwrap()
    }

    #[test]
    fn data_paths_walk_objects_and_lists() {
        let data = json!({ "a": { "b": 1 }, "errors": [ { "code": "X" } ] });
        let event = EventView {
            id: "e1",
            event_type: "dk.esas.job.x.failed",
            source: "esas/jobs/x",
            institution: "KP",
            subject: None,
            time: DateTime::<Utc>::UNIX_EPOCH,
            data: &data,
        };
        assert_eq!(event.field(&path("data.a.b")).as_deref(), Some(&json!(1)));
        assert_eq!(
            event.field(&path("data.errors.0.code")).as_deref(),
            Some(&json!("X"))
        );
        assert_eq!(event.field(&path("data.errors.1.code")), None);
        assert_eq!(event.field(&path("data.a.b.c")), None);
        assert_eq!(
            event.field(&path("institution")).as_deref(),
            Some(&json!("KP"))
        );
        assert_eq!(event.field(&path("subject")), None);
    }

    #[test]
    fn numbers_render_as_text_and_blank_text_counts_as_missing() {
        assert_eq!(text_of(&json!(1)), Ok(Some("1".to_owned())));
        assert_eq!(text_of(&json!(2.5)), Ok(Some("2.5".to_owned())));
        assert_eq!(text_of(&json!("  ")), Ok(None));
        assert_eq!(text_of(&Value::Null), Ok(None));
        assert!(text_of(&json!([1])).is_err());
    }
}
