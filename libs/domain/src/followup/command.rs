//! [`Command`]: what someone asks to happen to a follow-up, and [`Context`]: who asks, when.

use chrono::{DateTime, Utc};

use crate::values::{
    Access, Actor, DataSubject, Description, ErasureCause, FollowUpId, InstitutionId, Kind,
    NoteText, Principal, Priority, Reason, Regarding, Source, StatusReason, Subject, UserId,
};

/// Who acts and when. Passed to [`super::decide`] so the domain needs no clock of its own and
/// tests can pick any moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    /// Who gives the command (also recorded with the events by the adapter).
    pub actor: Actor,
    /// The current time; events produced by the command happen at this moment.
    pub now: DateTime<Utc>,
}

/// A request to change a follow-up. Its values are already validated (they are newtypes);
/// [`super::decide`] checks only whether the change is allowed now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Create the follow-up (the stream must be empty).
    Create(NewFollowUp),
    /// Change some of subject, description, due, priority and status reason (PATCH).
    Edit(Edit),
    /// Hand ownership to someone else (Tildel).
    Assign {
        /// The new owner.
        owner: Principal,
    },
    /// Give someone access while keeping ownership (Del), or change their access.
    Share {
        /// Who gets access.
        principal: Principal,
        /// What access they get.
        access: Access,
    },
    /// Add a note (note) to it, written by the command's actor.
    AddNote {
        /// The note's id (chosen by the caller, so a retried request adds it once).
        id: uuid::Uuid,
        /// What it says.
        text: NoteText,
    },
    /// Take someone's share away.
    Unshare {
        /// Whose share to remove.
        principal: Principal,
    },
    /// Mark as handled (Markér som fuldført).
    Complete,
    /// Close as not needed (Luk opgave).
    Close,
    /// The failure behind an exception happened again (sent by the rule worker).
    Recur {
        /// The details of this occurrence; they become the description.
        details: Description,
    },
    /// A later run of the failed job succeeded (sent by the rule worker).
    ResolveByJob,
    /// Record that the due date has passed (sent by the scheduler).
    MarkOverdue,
    /// A user opened a notification (notifications only; per user).
    MarkRead {
        /// Who read it.
        user: UserId,
    },
    /// A user put a notification away (notifications only; per user).
    Dismiss {
        /// Who dismissed it.
        user: UserId,
    },
    /// Record that its personal data was erased (sent by the erasure, after it destroyed the
    /// key, and by the retention job). Any status; a repeat changes nothing.
    Erase {
        /// On request or at the end of retention.
        cause: ErasureCause,
        /// Why.
        reason: Reason,
    },
    /// Keep it past its retention (a legal hold); also keeps it from erasure on request.
    PlaceLegalHold {
        /// Why it must be kept.
        reason: Reason,
    },
    /// Lift the legal hold.
    ReleaseLegalHold,
}

/// Everything a new follow-up starts with. Status (`open`, `not_started`), shares (none) and
/// occurrences (1 for exceptions) are not given: every follow-up starts the same way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewFollowUp {
    /// The id of the new follow-up (and its stream).
    pub id: FollowUpId,
    /// The institution it belongs to.
    pub institution: InstitutionId,
    /// Exception, task or notification. Only rules create exceptions.
    pub kind: Kind,
    /// Its one-line title.
    pub subject: Subject,
    /// Its longer text (may be empty).
    pub description: Description,
    /// The ESAS record it is about, if any.
    pub regarding: Option<Regarding>,
    /// The person whose personal data it holds. When `None`, the regarding's person (a
    /// student, applicant or guest student), or else the user who creates it.
    pub person: Option<DataSubject>,
    /// Who is responsible for it.
    pub owner: Principal,
    /// Its deadline, if any; may already have passed (upstream data can be late).
    pub due: Option<DateTime<Utc>>,
    /// How urgent it is.
    pub priority: Priority,
    /// Who creates it: a user, or a rule.
    pub source: Source,
}

/// The fields an edit may change. `None` leaves a field as it is; for `due`, `Some(None)`
/// removes the due date and `Some(Some(t))` sets it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Edit {
    /// A new subject.
    pub subject: Option<Subject>,
    /// A new description.
    pub description: Option<Description>,
    /// A new due date (`Some(None)` clears it).
    pub due: Option<Option<DateTime<Utc>>>,
    /// A new priority.
    pub priority: Option<Priority>,
    /// A new status reason; must be an open reason (finish with complete or close instead).
    pub status_reason: Option<StatusReason>,
}
