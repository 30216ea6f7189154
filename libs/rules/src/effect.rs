//! What evaluating an event yields: raise a follow-up, or resolve one raised earlier.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One thing the rule worker must do because of an inbound event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "effect", rename_all = "snake_case")]
// A few effects per inbound message, short-lived: boxing the large variant would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum Effect {
    /// Create the follow-up, or count a recurrence if it already exists.
    Raise(Raise),
    /// Complete the open follow-up a rule raised earlier (a later job run succeeded).
    Resolve(Resolve),
}

/// A follow-up to create (or, if it exists, to count as a recurrence).
///
/// Its identity is (`rule_id`, the event's institution, `key`): the worker derives the
/// follow-up id from those three, so the same failure reported twice is one follow-up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Raise {
    /// The rule that raised it: part of the identity, and recorded as the follow-up's source.
    pub rule_id: String,
    /// The rendered key template (e.g. `APP-2026-104711`): makes repeats one follow-up.
    pub key: String,
    /// Exception or task; rules never raise notifications (subscriptions do).
    pub kind: RaiseKind,
    /// The rendered subject. Raw upstream text: the worker masks CPR numbers and trims it to
    /// the follow-up's limits.
    pub subject: String,
    /// The rendered description with its list sections; may be several lines. Raw upstream
    /// text like `subject`.
    pub description: String,
    /// What the follow-up is about, as (type, id), e.g. (`application`, `APP-2026-104711`).
    pub regarding: Option<(String, String)>,
    /// Whose personal data it holds, as (type, id), e.g. (`applicant`, `A-1`); `None`: the
    /// regarding's person, if it names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub person: Option<(String, String)>,
    /// The team that owns the follow-up at the event's institution.
    pub owner_team: String,
    /// The event's time plus the rule's due offset; `None` when the rule sets no offset.
    pub due: Option<DateTime<Utc>>,
    /// How urgent it is (`normal` unless the rule says otherwise).
    pub priority: Priority,
    /// The rendered `job` template (by default the event's `source`), kept as the
    /// follow-up's source job so a caseworker can find the run that failed.
    pub job: String,
}

/// Complete the follow-up that the rule `rule_id` raised under `key` (at the event's
/// institution). Nothing happens if no such follow-up is open.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolve {
    /// The rule that raised the follow-up (the same id as in its [`Raise`]).
    pub rule_id: String,
    /// The key it was raised under (the same as in its [`Raise`]).
    pub key: String,
}

/// The kinds of follow-up a rule may raise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RaiseKind {
    /// A system job failed or finished with defects (Exception).
    Exception,
    /// Someone must act (Opgave).
    Task,
}

impl RaiseKind {
    /// The snake_case name, as written in rules files and JSON.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Exception => "exception",
            Self::Task => "task",
        }
    }
}

/// How urgent a raised follow-up is, for sorting work lists.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    /// Can wait.
    Low,
    /// The usual case, and the default.
    #[default]
    Normal,
    /// Handle first.
    High,
}

impl Priority {
    /// The snake_case name, as written in rules files and JSON.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Normal => "normal",
            Self::High => "high",
        }
    }
}
