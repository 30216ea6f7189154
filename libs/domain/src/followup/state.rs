//! [`FollowUp`]: the current state of one follow-up, as folded from its events.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::values::{
    Access, Actor, DataSubject, Description, FollowUpId, InboxState, InstitutionId, Kind, NoteText,
    Principal, Priority, Reason, Regarding, Source, Status, StatusReason, Subject, UserId,
};

/// The state of a follow-up stream: `None` before its `created` event.
pub type State = Option<FollowUp>;

/// One follow-up as it is now, built by [`super::evolve`] from its events.
///
/// Serializes to the JSON the API returns. `shares` is written as a list of
/// `{"principal": {...}, "access": "read"}` objects, because JSON object keys must be strings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FollowUp {
    /// Identifies the follow-up and its event stream.
    pub id: FollowUpId,
    /// The institution (tenant) it belongs to; nobody outside it sees it.
    pub institution: InstitutionId,
    /// Exception, task or notification; decides which commands apply.
    pub kind: Kind,
    /// One-line title, shown in work lists.
    pub subject: Subject,
    /// Longer text; for an exception, the details of its latest failure.
    pub description: Description,
    /// The ESAS record it is about, so all follow-ups of a student or application can be found.
    pub regarding: Option<Regarding>,
    /// The person whose personal data it holds (a student, applicant, guest student, or the
    /// user who wrote it); `None` when it is about no one, or once erased.
    #[serde(default)]
    pub person: Option<DataSubject>,
    /// Who is responsible for it (Tildel changes this).
    pub owner: Principal,
    /// Who else may see (read) or change (write) it (Del). Never contains the owner.
    #[serde(with = "shares_as_list")]
    pub shares: BTreeMap<Principal, Access>,
    /// When it must be handled, if there is a deadline.
    pub due: Option<DateTime<Utc>>,
    /// How urgent it is, for sorting.
    pub priority: Priority,
    /// Open, completed or closed.
    pub status: Status,
    /// Why it has its status; always one that belongs to `status`.
    pub status_reason: StatusReason,
    /// Who created it: a user, or a rule acting on an upstream job.
    pub source: Source,
    /// How many times an exception's failure has happened (1 at creation, +1 per recurrence);
    /// always 0 for tasks and notifications.
    pub occurrences: u32,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When its latest event happened.
    pub updated_at: DateTime<Utc>,
    /// How many events it has: the stream version an append must expect (and the HTTP ETag).
    pub version: u64,
    /// When the scheduler recorded that it became overdue; cleared when the due date changes
    /// or the follow-up is finished or reopened, so it can be marked again.
    pub overdue_since: Option<DateTime<Utc>>,
    /// When it was last completed or closed (its retention runs from then); `None` while
    /// open.
    #[serde(default)]
    pub finished_at: Option<DateTime<Utc>>,
    /// Why it is kept past its retention, while a legal hold lasts.
    #[serde(default)]
    pub legal_hold: Option<Reason>,
    /// When its personal data was erased (it reads as "[slettet]" since).
    #[serde(default)]
    pub erased_at: Option<DateTime<Utc>>,
    /// Notifications only: where each user who has touched it stands (read or dismissed);
    /// absent users have it unread. Not part of the follow-up's JSON: each user sees only
    /// their own state, through the inbox (and only their own `read` and `dismissed` events
    /// in the history and on the live stream).
    #[serde(skip)]
    pub inbox: BTreeMap<UserId, InboxState>,
    /// Its notes, oldest first (absent from rows written before notes existed).
    #[serde(default)]
    pub notes: Vec<Note>,
}

/// A note (note) on a follow-up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Note {
    /// Its id.
    pub id: uuid::Uuid,
    /// What it says (`[slettet]` once the follow-up's personal data is erased).
    pub text: NoteText,
    /// Who wrote it.
    pub author: Actor,
    /// When.
    pub at: DateTime<Utc>,
}

impl FollowUp {
    /// True while it can still be changed.
    pub fn is_open(&self) -> bool {
        self.status == Status::Open
    }

    /// Where `user` stands with this notification (unread unless they read or dismissed it).
    pub fn inbox_state(&self, user: &UserId) -> InboxState {
        self.inbox.get(user).copied().unwrap_or(InboxState::Unread)
    }

    /// True when it is open and its due date has passed at `now` (derived; not stored).
    pub fn is_overdue(&self, now: DateTime<Utc>) -> bool {
        self.is_open() && self.due.is_some_and(|due| due < now)
    }
}

/// Writes the shares map as a list of `{principal, access}` objects, and reads it back.
mod shares_as_list {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use crate::values::{Access, Principal};

    /// One share as written in JSON (borrowed, for writing).
    #[derive(Serialize)]
    struct ShareRef<'a> {
        /// Who the follow-up is shared with.
        principal: &'a Principal,
        /// What they may do.
        access: Access,
    }

    /// One share as written in JSON (owned, for reading).
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Share {
        /// Who the follow-up is shared with.
        principal: Principal,
        /// What they may do.
        access: Access,
    }

    pub(super) fn serialize<S: Serializer>(
        shares: &BTreeMap<Principal, Access>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(shares.iter().map(|(principal, access)| ShareRef {
            principal,
            access: *access,
        }))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<BTreeMap<Principal, Access>, D::Error> {
        let shares = Vec::<Share>::deserialize(deserializer)?;
        Ok(shares
            .into_iter()
            .map(|share| (share.principal, share.access))
            .collect())
    }
}
