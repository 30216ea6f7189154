//! [`DomainError`]: why a command was refused.

use crate::values::{FollowUpId, Kind, Principal, Status, StatusReason, ValidationError};

/// Why [`super::decide`] refused a command. Each message says what was wrong and what to do;
/// [`DomainError::code`] gives a stable code for API problem types and metrics.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// The command needs an existing follow-up, and there is none.
    #[error("the follow-up does not exist: check its id, or create it first")]
    NotFound,
    /// A create command for a follow-up that already exists.
    #[error(
        "follow-up {id} already exists: create a new follow-up with another id, \
         or change this one"
    )]
    AlreadyExists {
        /// The id that is taken.
        id: FollowUpId,
    },
    /// The follow-up is completed or closed, and so read-only.
    #[error(
        "the follow-up is {status} and can no longer be changed: completed and closed \
         follow-ups are read-only; create a new follow-up if more work is needed"
    )]
    Terminal {
        /// Its status (completed or closed).
        status: Status,
    },
    /// A user (or anything but a rule) tried to create an exception.
    #[error(
        "exceptions are created only by rules, from failed system jobs: \
         create a task or a notification instead"
    )]
    UsersCannotCreateExceptions,
    /// Recur or resolve-by-job on a follow-up that is not an exception.
    #[error(
        "only exceptions recur or are resolved by a job, and this follow-up is a {kind}: \
         complete or close it instead"
    )]
    NotAnException {
        /// The follow-up's actual kind.
        kind: Kind,
    },
    /// Read or dismiss on a follow-up that is not a notification.
    #[error(
        "only notifications are read and dismissed, and this follow-up is a {kind}: \
         complete or close it instead"
    )]
    NotANotification {
        /// The follow-up's actual kind.
        kind: Kind,
    },
    /// An edit tried to set a status reason that finishes the follow-up.
    #[error(
        "the status reason {reason} cannot be set by editing: choose not_started, \
         in_progress, waiting or deferred, or complete or close the follow-up to finish it"
    )]
    InvalidStatusReason {
        /// The refused reason.
        reason: StatusReason,
    },
    /// A share with the follow-up's owner, who has full access already.
    #[error(
        "{principal} owns the follow-up and has full access already: \
         share it with someone else, or assign it to hand over ownership"
    )]
    ShareWithOwner {
        /// The owner.
        principal: Principal,
    },
    /// An unshare for someone who has no share.
    #[error("the follow-up is not shared with {principal}, so there is no share to remove")]
    NotShared {
        /// Who has no share.
        principal: Principal,
    },
    /// An edit of the subject or description of a follow-up whose personal data was erased.
    #[error(
        "the follow-up's personal data was erased, so its subject and description can no \
         longer be changed: create a new follow-up if more work is needed"
    )]
    Erased,
    /// Erasure of a follow-up under a legal hold.
    #[error("the follow-up is under a legal hold ({reason}) and is kept until the hold is lifted")]
    UnderLegalHold {
        /// Why it is held.
        reason: String,
    },
    /// A value in the command was invalid (including the GDPR guard).
    #[error(transparent)]
    Validation(#[from] ValidationError),
}

impl DomainError {
    /// A stable, snake_case code per kind of error. Validation errors are `validation`, except
    /// GDPR violations, which keep their own codes (`gdpr_cpr_number`, `gdpr_sensitive_data`)
    /// because callers show them differently.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotFound => "not_found",
            Self::AlreadyExists { .. } => "already_exists",
            Self::Terminal { .. } => "terminal_state",
            Self::UsersCannotCreateExceptions => "users_cannot_create_exceptions",
            Self::NotAnException { .. } => "not_an_exception",
            Self::NotANotification { .. } => "not_a_notification",
            Self::InvalidStatusReason { .. } => "invalid_status_reason",
            Self::ShareWithOwner { .. } => "share_with_owner",
            Self::NotShared { .. } => "not_shared",
            Self::Erased => "erased",
            Self::UnderLegalHold { .. } => "legal_hold",
            Self::Validation(ValidationError::Gdpr(violation)) => violation.code(),
            Self::Validation(_) => "validation",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gdpr::GdprViolation;

    #[test]
    fn validation_errors_have_the_validation_code_except_gdpr_violations() {
        let too_long = DomainError::from(ValidationError::Empty { field: "subject" });
        assert_eq!(too_long.code(), "validation");
        let cpr = DomainError::from(ValidationError::Gdpr(GdprViolation::CprNumber {
            field: "subject",
        }));
        assert_eq!(cpr.code(), "gdpr_cpr_number");
        assert!(cpr.to_string().contains("Sag og Dokument"));
    }

    #[test]
    fn the_terminal_message_names_the_status() {
        let error = DomainError::Terminal {
            status: Status::Closed,
        };
        assert_eq!(error.code(), "terminal_state");
        assert!(error.to_string().starts_with("the follow-up is closed"));
    }
}
