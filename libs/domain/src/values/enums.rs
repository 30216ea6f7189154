//! The closed sets of names: [`Kind`], [`Priority`], [`Status`], [`StatusReason`], [`Access`].
//!
//! They are written the same way everywhere (JSON, URLs, query filters, database columns): the
//! snake_case name that `as_str` returns and `FromStr` reads.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::{shown, ValidationError};

/// Declares an enum whose variants are written as fixed snake_case names, with `ALL`,
/// `as_str`, `Display`, `FromStr` and serde all using the same name for each variant.
///
/// `pub enum Kind as "kind" { Task = "task", ... }` declares `Kind`; `"kind"` is the field
/// name that a `FromStr` error reports.
macro_rules! named_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident as $field:literal {
            $( $(#[$variant_meta:meta])* $variant:ident = $text:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub enum $name {
            $( $(#[$variant_meta])* #[serde(rename = $text)] $variant, )+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The snake_case name, as written in JSON, URLs and the database.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = ValidationError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(ValidationError::UnknownValue {
                        field: $field,
                        value: shown(s),
                        expected: Self::ALL
                            .iter()
                            .map(|value| value.as_str())
                            .collect::<Vec<_>>()
                            .join(", "),
                    }),
                }
            }
        }
    };
}

named_enum! {
    /// What kind of follow-up this is. It decides who may create it (users never create
    /// exceptions) and which commands apply (only exceptions recur or are resolved by a job).
    pub enum Kind as "kind" {
        /// A system job failed or finished with defects (Exception); created by rules only.
        Exception = "exception",
        /// Someone must act (Opgave); created by a rule or a user.
        Task = "task",
        /// Something to be aware of (Notifikation); created by a subscription or a user.
        Notification = "notification",
    }
}

named_enum! {
    /// How urgent a follow-up is, for sorting work lists. `normal` unless someone says otherwise.
    #[derive(Default)]
    pub enum Priority as "priority" {
        /// Can wait.
        Low = "low",
        /// The usual case.
        #[default]
        Normal = "normal",
        /// Handle first.
        High = "high",
    }
}

named_enum! {
    /// Where a follow-up is in its lifecycle: open, or finished in one of two ways.
    pub enum Status as "status" {
        /// Needs attention; the only status in which a follow-up can be changed.
        Open = "open",
        /// Handled (Behandlet): by a user, or resolved by a later successful job run.
        Completed = "completed",
        /// Needs no action (Lukket), cancelled by a user.
        Closed = "closed",
    }
}

impl Status {
    /// True for completed and closed: such a follow-up is read-only (only a recurrence of an
    /// exception reopens it).
    pub const fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Closed)
    }
}

named_enum! {
    /// Why a follow-up has its status.
    ///
    /// Each reason belongs to one status: an open follow-up has one of the four open reasons
    /// (`not_started` by default; users change it by editing); a completed one has `handled`
    /// (completed by a user) or `resolved_by_job` (completed by the system when the failed job
    /// later succeeded); a closed one has `not_needed`.
    #[derive(Default)]
    pub enum StatusReason as "status_reason" {
        /// Open, nobody has started on it yet.
        #[default]
        NotStarted = "not_started",
        /// Open, someone is working on it.
        InProgress = "in_progress",
        /// Open, waiting for someone else (the student, another institution, …).
        Waiting = "waiting",
        /// Open, put off until later on purpose.
        Deferred = "deferred",
        /// Completed by a user (Behandlet).
        Handled = "handled",
        /// Completed by the system: a later run of the failed job succeeded.
        ResolvedByJob = "resolved_by_job",
        /// Closed by a user: no action was needed (Lukket).
        NotNeeded = "not_needed",
    }
}

impl StatusReason {
    /// True for the reasons an open follow-up can have (and a user can set by editing).
    pub const fn is_open_reason(self) -> bool {
        matches!(
            self,
            Self::NotStarted | Self::InProgress | Self::Waiting | Self::Deferred
        )
    }

    /// The status this reason belongs to.
    pub const fn status(self) -> Status {
        match self {
            Self::NotStarted | Self::InProgress | Self::Waiting | Self::Deferred => Status::Open,
            Self::Handled | Self::ResolvedByJob => Status::Completed,
            Self::NotNeeded => Status::Closed,
        }
    }
}

named_enum! {
    /// What a share gives its principal. Owners always have full access and need no share.
    pub enum Access as "access" {
        /// May see the follow-up.
        Read = "read",
        /// May see and change the follow-up.
        Write = "write",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks that serde, `as_str` and `FromStr` agree on every value of an enum.
    fn names_agree<T>(all: &[T], as_str: fn(T) -> &'static str)
    where
        T: Copy + fmt::Debug + PartialEq + Serialize + FromStr,
        <T as FromStr>::Err: fmt::Debug,
    {
        for value in all {
            let name = as_str(*value);
            assert_eq!(
                serde_json::to_value(value).unwrap(),
                serde_json::json!(name)
            );
            assert_eq!(name.parse::<T>().unwrap(), *value);
            assert!(name.chars().all(|c| c.is_ascii_lowercase() || c == '_'));
        }
    }

    #[test]
    fn every_enum_writes_and_reads_its_snake_case_name() {
        names_agree(Kind::ALL, Kind::as_str);
        names_agree(Priority::ALL, Priority::as_str);
        names_agree(Status::ALL, Status::as_str);
        names_agree(StatusReason::ALL, StatusReason::as_str);
        names_agree(Access::ALL, Access::as_str);
        assert_eq!(StatusReason::ResolvedByJob.as_str(), "resolved_by_job");
    }

    #[test]
    fn unknown_names_are_refused_with_the_accepted_ones_listed() {
        let error = "urgent".parse::<Priority>().unwrap_err();
        assert_eq!(error.code(), "unknown_value");
        assert_eq!(error.field(), "priority");
        assert!(error.to_string().contains("low, normal, high"), "{error}");
        assert!(serde_json::from_value::<Kind>(serde_json::json!("Task")).is_err());
    }

    #[test]
    fn defaults_are_normal_priority_and_not_started() {
        assert_eq!(Priority::default(), Priority::Normal);
        assert_eq!(StatusReason::default(), StatusReason::NotStarted);
    }

    #[test]
    fn only_completed_and_closed_are_terminal() {
        assert!(!Status::Open.is_terminal());
        assert!(Status::Completed.is_terminal());
        assert!(Status::Closed.is_terminal());
    }

    #[test]
    fn open_reasons_are_exactly_those_that_belong_to_open() {
        for reason in StatusReason::ALL {
            assert_eq!(reason.is_open_reason(), reason.status() == Status::Open);
        }
        assert_eq!(StatusReason::Handled.status(), Status::Completed);
        assert_eq!(StatusReason::ResolvedByJob.status(), Status::Completed);
        assert_eq!(StatusReason::NotNeeded.status(), Status::Closed);
    }
}

named_enum! {
    /// Where a notification stands for one user (per user: a notification owned by a team is
    /// read by each member on their own).
    pub enum InboxState as "state" {
        /// Not opened yet (the state of every notification a user has not touched).
        Unread = "unread",
        /// Opened.
        Read = "read",
        /// Put away: no longer in the user's inbox.
        Dismissed = "dismissed",
    }
}
