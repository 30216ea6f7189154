//! What an event changed: the fields of a follow-up that differ between the state before and
//! the state after it (old → new for edits, from → to for an assignment, whom and which
//! access for a share), for a history that says what happened, not only who and when.

use serde::Serialize;
use serde_json::{json, Value};

use super::FollowUp;
use crate::values::Principal;

/// One field that an event changed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldChange {
    /// `subject`, `description`, `due`, `priority`, `status`, `status_reason`, `owner`,
    /// `share` or `legal_hold`.
    pub field: &'static str,
    /// Whose share it is (`share` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub principal: Option<Principal>,
    /// The value before (`null`: none).
    pub from: Value,
    /// The value after (`null`: none; for a share: it was removed).
    pub to: Value,
}

/// The fields that differ between `before` and `after` (the same follow-up, one event apart),
/// in a fixed order; nothing for the event that created it.
pub fn changes(before: Option<&FollowUp>, after: Option<&FollowUp>) -> Vec<FieldChange> {
    let (Some(before), Some(after)) = (before, after) else {
        return Vec::new();
    };
    let mut changes = Vec::new();
    let mut field = |field: &'static str, from: Value, to: Value| {
        if from != to {
            changes.push(FieldChange {
                field,
                principal: None,
                from,
                to,
            });
        }
    };
    field("subject", json!(before.subject), json!(after.subject));
    field(
        "description",
        json!(before.description),
        json!(after.description),
    );
    field("due", json!(before.due), json!(after.due));
    field("priority", json!(before.priority), json!(after.priority));
    field("status", json!(before.status), json!(after.status));
    field(
        "status_reason",
        json!(before.status_reason),
        json!(after.status_reason),
    );
    field("owner", json!(before.owner), json!(after.owner));
    field(
        "legal_hold",
        json!(before.legal_hold),
        json!(after.legal_hold),
    );
    let principals = before.shares.keys().chain(after.shares.keys());
    let mut seen = std::collections::BTreeSet::new();
    for principal in principals {
        if !seen.insert(principal) {
            continue;
        }
        let (from, to) = (before.shares.get(principal), after.shares.get(principal));
        if from != to {
            changes.push(FieldChange {
                field: "share",
                principal: Some(principal.clone()),
                from: json!(from),
                to: json!(to),
            });
        }
    }
    changes
}
