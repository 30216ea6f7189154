//! Conditions on an event (`when = [...]`): a rule applies only when all of them hold.
//!
//! A condition never fails: a field that is absent simply makes `equals`, `one_of` and
//! `exists = true` false. That way a condition can keep a rule away from events it cannot
//! handle, instead of dead-lettering them.

use serde_json::Value;

use crate::event::EventView;
use crate::template::FieldPath;

/// One condition: a field and a test on its value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Condition {
    /// The event field the test reads.
    pub(crate) field: FieldPath,
    /// What must be true of it.
    pub(crate) test: Test,
}

/// The tests a condition can make.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Test {
    /// The field is present and equal to the value.
    Equals(Value),
    /// The field is absent, or present and different from the value.
    NotEquals(Value),
    /// The field is present and equal to one of the values.
    OneOf(Vec<Value>),
    /// `true`: the field is present and not null; `false`: the opposite.
    Exists(bool),
    /// `true`: the field has content (non-blank text, a non-empty list or object, a number or
    /// a boolean); `false`: the opposite (absent, null, blank or empty).
    NotEmpty(bool),
}

impl Condition {
    /// True when the condition holds for `event`.
    pub(crate) fn holds(&self, event: &EventView<'_>) -> bool {
        let value = event.field(&self.field);
        let value = value.as_deref();
        match &self.test {
            Test::Equals(expected) => value.is_some_and(|v| same(v, expected)),
            Test::NotEquals(expected) => !value.is_some_and(|v| same(v, expected)),
            Test::OneOf(options) => value.is_some_and(|v| options.iter().any(|o| same(v, o))),
            Test::Exists(wanted) => value.is_some_and(|v| !v.is_null()) == *wanted,
            Test::NotEmpty(wanted) => value.is_some_and(has_content) == *wanted,
        }
    }
}

/// Equality that treats `1` and `1.0` as the same number (TOML and JSON write numbers
/// differently); everything else compares exactly.
fn same(actual: &Value, expected: &Value) -> bool {
    match (actual, expected) {
        (Value::Number(a), Value::Number(b)) => match (a.as_i64(), b.as_i64()) {
            (Some(a), Some(b)) => a == b,
            _ => a.as_f64() == b.as_f64(),
        },
        _ => actual == expected,
    }
}

/// See [`Test::NotEmpty`].
fn has_content(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::String(s) => !s.trim().is_empty(),
        Value::Array(items) => !items.is_empty(),
        Value::Object(fields) => !fields.is_empty(),
        Value::Number(_) | Value::Bool(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::Scope;
    use chrono::{DateTime, Utc};
    use serde_json::json;

    fn holds(field: &str, test: Test, data: &Value) -> bool {
        let event = EventView {
            id: "e1",
            event_type: "dk.esas.job.x.failed",
            source: "esas/jobs/x",
            institution: "KP",
            subject: None,
            time: DateTime::<Utc>::UNIX_EPOCH,
            data,
        };
        let condition = Condition {
            field: FieldPath::parse(field, Scope::Event).unwrap(),
            test,
        };
        condition.holds(&event)
    }

    #[test]
    fn equals_needs_the_field_and_treats_integers_and_floats_alike() {
        let data = json!({ "status": "godkendt", "semester": 1.0 });
        assert!(holds("data.status", Test::Equals(json!("godkendt")), &data));
        assert!(!holds("data.status", Test::Equals(json!("kladde")), &data));
        assert!(holds("data.semester", Test::Equals(json!(1)), &data));
        assert!(!holds("data.missing", Test::Equals(json!("x")), &data));
    }

    #[test]
    fn not_equals_holds_for_absent_fields() {
        let data = json!({ "status": "kladde" });
        assert!(!holds(
            "data.status",
            Test::NotEquals(json!("kladde")),
            &data
        ));
        assert!(holds(
            "data.missing",
            Test::NotEquals(json!("kladde")),
            &data
        ));
    }

    #[test]
    fn one_of_matches_any_listed_value() {
        let data = json!({ "status": "godkendt" });
        let options = vec![json!("kladde"), json!("godkendt")];
        assert!(holds("data.status", Test::OneOf(options), &data));
        assert!(!holds("data.status", Test::OneOf(vec![json!("x")]), &data));
    }

    #[test]
    fn exists_treats_null_as_absent() {
        let data = json!({ "a": null, "b": "" });
        assert!(!holds("data.a", Test::Exists(true), &data));
        assert!(holds("data.a", Test::Exists(false), &data));
        assert!(holds("data.b", Test::Exists(true), &data));
        assert!(holds("institution", Test::Exists(true), &data));
    }

    #[test]
    fn not_empty_looks_at_content() {
        let data = json!({ "list": [], "full": [1], "blank": " ", "zero": 0 });
        assert!(!holds("data.list", Test::NotEmpty(true), &data));
        assert!(holds("data.list", Test::NotEmpty(false), &data));
        assert!(holds("data.full", Test::NotEmpty(true), &data));
        assert!(!holds("data.blank", Test::NotEmpty(true), &data));
        assert!(holds("data.zero", Test::NotEmpty(true), &data));
        assert!(holds("data.absent", Test::NotEmpty(false), &data));
    }
}
