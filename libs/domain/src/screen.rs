//! Screening of untrusted JSON (an inbound CloudEvent, an HTTP request body) before anything
//! is stored: the first text PostgreSQL cannot store, the first CPR number, and masking every
//! CPR number in place. Keys are texts too: a hostile sender may put either in a key.
//!
//! A finding is named by its path (`data.job_run_id`, `owner.id`, `errors.0.message`), so
//! that the refusal or the dead letter says where it is without repeating the value.

use serde_json::{Map, Value};

use crate::gdpr;

/// True for text PostgreSQL cannot store, neither in `text` nor in `jsonb`: it holds a NUL
/// (`\u0000`). Every other Unicode scalar value is storable, and JSON parsing already refuses
/// lone surrogates.
pub fn is_unstorable(text: &str) -> bool {
    text.contains('\0')
}

/// The path of the first text (key or string) in `value` that [`is_unstorable`].
pub fn first_unstorable(value: &Value) -> Option<String> {
    first_text(value, &mut String::new(), is_unstorable)
}

/// True when `text` holds a CPR number. A UUID never does (an Entra object id such as
/// `ab010190-1234-…` only looks like one in part), so it is left alone.
pub fn holds_cpr(text: &str) -> bool {
    gdpr::find_cpr(text).is_some() && uuid::Uuid::try_parse(text).is_err()
}

/// The path of the first text (key or string) in `value` that [`holds_cpr`].
pub fn first_cpr(value: &Value) -> Option<String> {
    first_text(value, &mut String::new(), holds_cpr)
}

/// Masks every CPR number in every key and string of `value` ([`gdpr::mask`]). Returns true
/// when something was masked. Allocates only where a CPR number is found.
pub fn mask_cpr(value: &mut Value) -> bool {
    match value {
        Value::String(text) => mask_in_place(text),
        Value::Array(items) => items
            .iter_mut()
            .fold(false, |masked, v| mask_cpr(v) | masked),
        Value::Object(map) => {
            let mut masked = false;
            if map.keys().any(|k| holds_cpr(k)) {
                let entries = std::mem::take(map);
                *map = entries
                    .into_iter()
                    .map(|(mut k, v)| {
                        mask_in_place(&mut k);
                        (k, v)
                    })
                    .collect::<Map<String, Value>>();
                masked = true;
            }
            map.values_mut()
                .fold(masked, |masked, v| mask_cpr(v) | masked)
        }
        _ => false,
    }
}

/// Masks every CPR number in `text`; true when there was one.
pub fn mask_in_place(text: &mut String) -> bool {
    if !holds_cpr(text) {
        return false;
    }
    *text = gdpr::mask(text);
    true
}

/// Depth-first: the path of the first key or string for which `found` holds. `at` is the
/// path so far (appended to and truncated again on the way).
fn first_text(value: &Value, at: &mut String, found: fn(&str) -> bool) -> Option<String> {
    let descend = |at: &mut String, key: &str, v: &Value| {
        let len = at.len();
        if !at.is_empty() {
            at.push('.');
        }
        at.push_str(key);
        let hit = if found(key) {
            Some(at.clone())
        } else {
            first_text(v, at, found)
        };
        at.truncate(len);
        hit
    };
    match value {
        Value::String(text) if found(text) => Some(at.clone()),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, v)| descend(at, &i.to_string(), v)),
        Value::Object(map) => map.iter().find_map(|(k, v)| descend(at, k, v)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_nul_is_found_in_a_nested_string_and_named_by_its_path() {
        let value = json!({"data": {"errors": [{"code": "X"}, {"code": "a\u{0}b"}]}});
        assert_eq!(
            first_unstorable(&value).as_deref(),
            Some("data.errors.1.code")
        );
    }

    #[test]
    fn a_nul_in_a_key_is_found_too() {
        let value = json!({"data": {"bad\u{0}key": 1}});
        assert_eq!(
            first_unstorable(&value).as_deref(),
            Some("data.bad\u{0}key")
        );
        assert_eq!(first_unstorable(&json!({"ok": "text"})), None);
    }

    #[test]
    fn a_cpr_number_is_found_anywhere_and_named_by_its_path() {
        let value = json!({"regarding": {"type": "student", "id": "010190-1234"}});
        assert_eq!(first_cpr(&value).as_deref(), Some("regarding.id"));
        assert_eq!(first_cpr(&json!({"id": "APP-2026-104711"})), None);
    }

    #[test]
    fn a_uuid_that_looks_like_a_cpr_number_in_part_is_left_alone() {
        let id = "ab010190-1234-4def-8abc-0123456789ab";
        assert!(gdpr::find_cpr(id).is_some(), "the part looks like one");
        assert!(!holds_cpr(id));
        assert_eq!(first_cpr(&json!({ "owner": { "id": id } })), None);
        let mut text = id.to_owned();
        assert!(!mask_in_place(&mut text));
    }

    #[test]
    fn masking_reaches_every_string_and_key_and_keeps_the_rest() {
        let mut value = json!({
            "job_run_id": "run 0101901234",
            "errors": [{"message": "CPR 010190-1234 findes ikke"}],
            "by_cpr": {"010190 1234": true},
            "count": 3
        });
        assert!(mask_cpr(&mut value));
        assert_eq!(
            value,
            json!({
                "job_run_id": "run 010190-xxxx",
                "errors": [{"message": "CPR 010190-xxxx findes ikke"}],
                "by_cpr": {"010190-xxxx": true},
                "count": 3
            })
        );
        assert!(!mask_cpr(&mut value), "nothing left to mask");
    }
}
