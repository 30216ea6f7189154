//! [`Event`]: a change that happened to a follow-up. Events are facts: they are stored for
//! ever, published to other systems, and folded into the state by [`super::evolve`].
//!
//! JSON: an object with `"type"` (the snake_case event type, see [`EVENT_TYPES`]) next to the
//! event's fields. When a field is added or renamed, bump the event's schema version and add
//! an upcaster in [`crate::upcast`], so stored events stay readable.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::values::{
    Access, Actor, DataSubject, Description, ErasureCause, FollowUpId, InstitutionId, Kind,
    NoteText, Principal, Priority, Reason, Regarding, Source, StatusReason, Subject, UserId,
};

/// Every event type, as stored in the event store and used in NATS subjects
/// (`followups.events.<institution>.<kind>.<event type>`).
pub const EVENT_TYPES: &[&str] = &[
    "created",
    "edited",
    "assigned",
    "shared",
    "unshared",
    "completed",
    "closed",
    "recurred",
    "reopened",
    "marked_overdue",
    "read",
    "dismissed",
    "erased",
    "legal_hold_placed",
    "legal_hold_released",
    "note_added",
];

/// A change that happened to a follow-up. Every variant records when it happened (`at`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// The follow-up was created, open and not started.
    Created {
        /// Its id.
        id: FollowUpId,
        /// The institution it belongs to.
        institution: InstitutionId,
        /// Exception, task or notification.
        kind: Kind,
        /// Its one-line title.
        subject: Subject,
        /// Its longer text.
        description: Description,
        /// The ESAS record it is about, if any.
        regarding: Option<Regarding>,
        /// The person whose personal data it holds, if any (its key is tagged with them).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        person: Option<DataSubject>,
        /// Who is responsible for it.
        owner: Principal,
        /// Its deadline, if any.
        due: Option<DateTime<Utc>>,
        /// How urgent it is.
        priority: Priority,
        /// Who created it.
        source: Source,
        /// When.
        at: DateTime<Utc>,
    },
    /// Some fields were changed; only the changed fields are present. For `due`, an absent
    /// field means unchanged and `null` means the due date was removed.
    Edited {
        /// The new subject, if it changed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        subject: Option<Subject>,
        /// The new description, if it changed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        description: Option<Description>,
        /// The new due date, if it changed (`Some(None)`: removed).
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            with = "present_or_null"
        )]
        due: Option<Option<DateTime<Utc>>>,
        /// The new priority, if it changed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        priority: Option<Priority>,
        /// The new status reason (an open one), if it changed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        status_reason: Option<StatusReason>,
        /// When.
        at: DateTime<Utc>,
    },
    /// Ownership moved to someone else (Tildel). A share the new owner had is dropped.
    Assigned {
        /// The new owner.
        owner: Principal,
        /// The owner before, so the history and notifications can name both.
        previous_owner: Principal,
        /// When.
        at: DateTime<Utc>,
    },
    /// Someone got access, or their access changed (Del).
    Shared {
        /// Who got access.
        principal: Principal,
        /// What access they have now.
        access: Access,
        /// When.
        at: DateTime<Utc>,
    },
    /// Someone's share was removed.
    Unshared {
        /// Whose share was removed.
        principal: Principal,
        /// When.
        at: DateTime<Utc>,
    },
    /// The follow-up was completed: `handled` by a user or `resolved_by_job` by the system.
    Completed {
        /// `handled` or `resolved_by_job`.
        reason: StatusReason,
        /// When.
        at: DateTime<Utc>,
    },
    /// The follow-up was closed as not needed.
    Closed {
        /// `not_needed`.
        reason: StatusReason,
        /// When.
        at: DateTime<Utc>,
    },
    /// An open exception's failure happened again.
    Recurred {
        /// The occurrence count after this one.
        occurrences: u32,
        /// The details of this occurrence (they become the description).
        details: Description,
        /// When.
        at: DateTime<Utc>,
    },
    /// A completed or closed exception's failure happened again, so it is open again
    /// (`not_started`).
    Reopened {
        /// The occurrence count after this one.
        occurrences: u32,
        /// The details of this occurrence (they become the description).
        details: Description,
        /// When.
        at: DateTime<Utc>,
    },
    /// The scheduler found the follow-up past its due date.
    MarkedOverdue {
        /// The due date that passed.
        due: DateTime<Utc>,
        /// When it was noticed.
        at: DateTime<Utc>,
    },
    /// A user opened a notification (their inbox state only; nobody else's changes).
    Read {
        /// The user who read it.
        user: UserId,
        /// When.
        at: DateTime<Utc>,
    },
    /// A user put a notification away: it leaves their inbox, not anyone else's.
    Dismissed {
        /// The user who dismissed it.
        user: UserId,
        /// When.
        at: DateTime<Utc>,
    },
    /// A note was added.
    NoteAdded {
        /// The note's id.
        id: uuid::Uuid,
        /// What it says.
        text: NoteText,
        /// Who wrote it.
        author: Actor,
        /// When.
        at: DateTime<Utc>,
    },
    /// Its personal data was erased: the key of its personal fields was destroyed, so its
    /// subject, description, record id and person read as erased from now on, in every
    /// event. Holds no personal data itself; who erased it is the event's actor.
    Erased {
        /// On request (art. 17) or because its retention ended.
        cause: ErasureCause,
        /// Why, in the operator's words (a case number) or the retention rule's.
        reason: Reason,
        /// When.
        at: DateTime<Utc>,
    },
    /// A legal hold was placed: its retention does not end while the hold lasts.
    LegalHoldPlaced {
        /// Why it must be kept.
        reason: Reason,
        /// When.
        at: DateTime<Utc>,
    },
    /// The legal hold was lifted: its retention runs again.
    LegalHoldReleased {
        /// When.
        at: DateTime<Utc>,
    },
}

impl Event {
    /// The snake_case event type: the JSON `type` tag, one of [`EVENT_TYPES`].
    pub fn event_type(&self) -> &'static str {
        match self {
            Self::Created { .. } => "created",
            Self::Edited { .. } => "edited",
            Self::Assigned { .. } => "assigned",
            Self::Shared { .. } => "shared",
            Self::Unshared { .. } => "unshared",
            Self::Completed { .. } => "completed",
            Self::Closed { .. } => "closed",
            Self::Recurred { .. } => "recurred",
            Self::Reopened { .. } => "reopened",
            Self::MarkedOverdue { .. } => "marked_overdue",
            Self::Read { .. } => "read",
            Self::Dismissed { .. } => "dismissed",
            Self::Erased { .. } => "erased",
            Self::LegalHoldPlaced { .. } => "legal_hold_placed",
            Self::LegalHoldReleased { .. } => "legal_hold_released",
            Self::NoteAdded { .. } => "note_added",
        }
    }

    /// When the event happened.
    pub fn at(&self) -> DateTime<Utc> {
        match self {
            Self::Created { at, .. }
            | Self::Edited { at, .. }
            | Self::Assigned { at, .. }
            | Self::Shared { at, .. }
            | Self::Unshared { at, .. }
            | Self::Completed { at, .. }
            | Self::Closed { at, .. }
            | Self::Recurred { at, .. }
            | Self::Reopened { at, .. }
            | Self::MarkedOverdue { at, .. }
            | Self::Read { at, .. }
            | Self::Dismissed { at, .. }
            | Self::NoteAdded { at, .. }
            | Self::Erased { at, .. }
            | Self::LegalHoldPlaced { at, .. }
            | Self::LegalHoldReleased { at } => *at,
        }
    }
}

/// Serde for a field that can be absent (unchanged), `null` (removed) or a value (set).
///
/// Used with `#[serde(default, skip_serializing_if = "Option::is_none")]`: `default` makes an
/// absent field `None`, `skip_serializing_if` leaves `None` out, and this module maps `null`
/// to `Some(None)` and a value to `Some(Some(value))`.
mod present_or_null {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(super) fn serialize<T: Serialize, S: Serializer>(
        value: &Option<Option<T>>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(inner) => inner.serialize(serializer),
            None => serializer.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Option<T>>, D::Error> {
        Option::<T>::deserialize(deserializer).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at() -> DateTime<Utc> {
        "2025-03-01T09:00:00Z".parse().unwrap()
    }

    #[test]
    fn edited_leaves_unchanged_fields_out_and_writes_a_removed_due_date_as_null() {
        let cleared = Event::Edited {
            subject: None,
            description: None,
            due: Some(None),
            priority: None,
            status_reason: None,
            at: at(),
        };
        let json = serde_json::to_value(&cleared).unwrap();
        assert_eq!(
            json,
            json!({"type": "edited", "due": null, "at": "2025-03-01T09:00:00Z"})
        );
        assert_eq!(serde_json::from_value::<Event>(json).unwrap(), cleared);
    }

    #[test]
    fn edited_without_a_due_field_leaves_the_due_date_unchanged() {
        let json = json!({"type": "edited", "priority": "high", "at": "2025-03-01T09:00:00Z"});
        let event: Event = serde_json::from_value(json).unwrap();
        assert_eq!(
            event,
            Event::Edited {
                subject: None,
                description: None,
                due: None,
                priority: Some(Priority::High),
                status_reason: None,
                at: at(),
            }
        );
    }

    #[test]
    fn edited_with_a_due_date_writes_and_reads_it() {
        let set = Event::Edited {
            subject: None,
            description: None,
            due: Some(Some(at())),
            priority: None,
            status_reason: None,
            at: at(),
        };
        let json = serde_json::to_value(&set).unwrap();
        assert_eq!(json["due"], json!("2025-03-01T09:00:00Z"));
        assert_eq!(serde_json::from_value::<Event>(json).unwrap(), set);
    }

    #[test]
    fn the_type_tag_is_the_event_type() {
        let event = Event::MarkedOverdue {
            due: at(),
            at: at(),
        };
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["type"], json!(event.event_type()));
        assert_eq!(event.event_type(), "marked_overdue");
        assert!(EVENT_TYPES.contains(&event.event_type()));
        assert_eq!(event.at(), at());
    }
}
