//! What a list or the dashboard asks for, and what it returns.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use followup_domain::{FollowUp, Kind, Principal, Regarding, Status, ValidationError};
use serde::{Serialize, Serializer};
use uuid::Uuid;

use crate::error::ReadError;

/// How many follow-ups a page holds when the caller does not say.
pub const DEFAULT_LIMIT: u32 = 50;

/// The most follow-ups one page may hold.
pub const MAX_LIMIT: u32 = 200;

/// The filters of `GET /v1/followups`, and where the page starts. Every filter that is set
/// must hold (they are combined with AND); unset filters do not restrict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    /// Only this kind (`kind=task`).
    pub kind: Option<Kind>,
    /// Only this status (`status=open`).
    pub status: Option<Status>,
    /// Only follow-ups owned by the viewer itself (`owner=me`) or by this principal
    /// (`owner=team:admissions`).
    pub owner: Option<OwnerFilter>,
    /// Only follow-ups about this ESAS record (`regarding=application:A-1`, exact match).
    pub regarding: Option<Regarding>,
    /// `true`: only overdue ones (open and due before `now`); `false`: only those that are
    /// not overdue.
    pub overdue: Option<bool>,
    /// Only follow-ups due before this moment (those without a due date never match).
    pub due_before: Option<DateTime<Utc>>,
    /// Only follow-ups whose subject or description contains this text, ignoring case.
    /// `%` and `_` match themselves, not as wildcards.
    pub q: Option<String>,
    /// Where the page starts: the `next_cursor` of the previous page; `None` for the first.
    pub cursor: Option<Cursor>,
    /// The most follow-ups on the page, 1 to [`MAX_LIMIT`] (values outside are clamped).
    pub limit: u32,
    /// The moment `overdue` is judged at (passed in, so tests can choose it).
    pub now: DateTime<Utc>,
}

impl ListQuery {
    /// No filters, the first page of [`DEFAULT_LIMIT`] follow-ups, overdue judged at `now`.
    pub fn new(now: DateTime<Utc>) -> Self {
        Self {
            kind: None,
            status: None,
            owner: None,
            regarding: None,
            overdue: None,
            due_before: None,
            q: None,
            cursor: None,
            limit: DEFAULT_LIMIT,
            now,
        }
    }
}

impl Default for ListQuery {
    /// Like [`ListQuery::new`] at the current time.
    fn default() -> Self {
        Self::new(Utc::now())
    }
}

/// The `owner` filter of a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnerFilter {
    /// Owned by the viewing user itself (`owner=me`); not by its teams.
    Me,
    /// Owned by the viewing user or one of its teams (`owner=mine`): what the dashboard
    /// counts.
    Mine,
    /// Owned by this user or team (`owner=user:u1`, `owner=team:admissions`).
    Principal(Principal),
}

impl FromStr for OwnerFilter {
    type Err = ValidationError;

    /// Reads `me`, `mine`, `user:<id>` or `team:<id>`, as the API's `owner` parameter is
    /// written.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "me" {
            Ok(Self::Me)
        } else if s == "mine" {
            Ok(Self::Mine)
        } else {
            s.parse().map(Self::Principal)
        }
    }
}

/// Where a page of a list starts: just after the last follow-up of the previous page, in the
/// list's order (newest `created_at` first, then `id`). The order's key never changes for a
/// follow-up, so paging neither repeats nor skips one while follow-ups are created or changed.
///
/// Clients see it as an opaque string (48 hex digits) and hand it back unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    /// `created_at` of the last follow-up on the previous page, as stored (microseconds).
    pub(crate) created_at: DateTime<Utc>,
    /// Its id, which breaks ties between follow-ups created in the same microsecond.
    pub(crate) id: Uuid,
}

impl Cursor {
    /// The number of hex digits of the timestamp part.
    const TIME_DIGITS: usize = 16;
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The bits of the signed microsecond count, so times before 1970 work too.
        let micros = self.created_at.timestamp_micros() as u64;
        write!(f, "{micros:016x}{}", self.id.simple())
    }
}

impl FromStr for Cursor {
    type Err = ReadError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad =
            || ReadError::BadCursor("pass the next_cursor of the previous page unchanged".into());
        if s.len() != Self::TIME_DIGITS + 32 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        let (time, id) = s.split_at(Self::TIME_DIGITS);
        let micros = u64::from_str_radix(time, 16).map_err(|_| bad())? as i64;
        // Only times a follow-up can have been created at: anything else was edited, and
        // PostgreSQL could not even compare it (years beyond its range).
        let created_at = DateTime::from_timestamp_micros(micros)
            .filter(|t| (1900..=9999).contains(&chrono::Datelike::year(t)))
            .ok_or_else(bad)?;
        let id = Uuid::try_parse(id).map_err(|_| bad())?;
        Ok(Self { created_at, id })
    }
}

impl Serialize for Cursor {
    /// As its string form, which is what the API's `next_cursor` carries.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// One page of a list: `{"items": [...], "next_cursor": "..." | null}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Page {
    /// The follow-ups, newest first.
    pub items: Vec<FollowUp>,
    /// Where the next page starts; `None` when this is the last page.
    pub next_cursor: Option<Cursor>,
}

/// The counts of `GET /v1/dashboard`: the caller's own work, that is, open follow-ups owned
/// by the caller or one of its teams (also for admins, who see more in lists).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Dashboard {
    /// Open follow-ups per kind.
    pub open_by_kind: OpenByKind,
    /// Open follow-ups whose due date has passed.
    pub overdue: i64,
    /// Open follow-ups due within the next 7 days (from now, not yet overdue).
    pub due_this_week: i64,
    /// Open notifications the caller can see (its own, its teams', shared with them) that it
    /// has neither read nor dismissed.
    pub unread_notifications: i64,
}

/// Open follow-ups counted per kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct OpenByKind {
    /// Open exceptions (failed system jobs).
    pub exception: i64,
    /// Open tasks.
    pub task: i64,
    /// Open notifications.
    pub notification: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_reads_back_what_it_writes() {
        let cursor = Cursor {
            created_at: DateTime::from_timestamp_micros(1_764_000_000_123_456).unwrap(),
            id: Uuid::new_v4(),
        };
        let text = cursor.to_string();
        assert_eq!(text.len(), 48);
        assert_eq!(text.parse::<Cursor>().unwrap(), cursor);
        assert_eq!(
            serde_json::to_value(cursor).unwrap(),
            serde_json::json!(text)
        );
    }

    #[test]
    fn a_cursor_before_1970_reads_back_too() {
        let cursor = Cursor {
            created_at: DateTime::from_timestamp_micros(-5).unwrap(),
            id: Uuid::nil(),
        };
        assert_eq!(cursor.to_string().parse::<Cursor>().unwrap(), cursor);
    }

    #[test]
    fn a_malformed_cursor_is_a_bad_cursor() {
        let valid = Cursor {
            created_at: Utc::now(),
            id: Uuid::new_v4(),
        }
        .to_string();
        let wrong_length = &valid[1..];
        let not_hex = format!("x{}", &valid[1..]);
        let not_ascii = format!("æ{}", &valid[2..]);
        for bad in ["", "abc", wrong_length, &not_hex, &not_ascii] {
            assert!(
                matches!(bad.parse::<Cursor>(), Err(ReadError::BadCursor(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_owner_filter_reads_me_users_and_teams() {
        assert_eq!("me".parse::<OwnerFilter>().unwrap(), OwnerFilter::Me);
        assert_eq!(
            "team:admissions".parse::<OwnerFilter>().unwrap(),
            OwnerFilter::Principal("team:admissions".parse().unwrap())
        );
        assert!("somebody".parse::<OwnerFilter>().is_err());
    }

    #[test]
    fn a_new_list_query_has_no_filters_and_the_default_limit() {
        let now = Utc::now();
        let query = ListQuery::new(now);
        assert_eq!(query.limit, DEFAULT_LIMIT);
        assert_eq!(query.now, now);
        assert!(query.kind.is_none() && query.cursor.is_none() && query.q.is_none());
    }
}
