//! [`decide`]: the business rules. Given the state and a command, it returns the events that
//! the command causes, or why it is refused. It changes nothing itself.

use chrono::{DateTime, Utc};

use super::{Command, Context, DomainError, Edit, Event, FollowUp, NewFollowUp, State};
use crate::values::{DataSubject, InboxState, Kind, Source, StatusReason};

/// Decides what `command` does to the follow-up in `state`, at `ctx.now`.
///
/// Returns the events to append (an empty list when the command changes nothing, such as an
/// edit to the current values: commands are idempotent where that makes sense), or a
/// [`DomainError`] saying why the command is refused. The rules:
///
/// - `Create` needs an empty stream; only rules create exceptions.
/// - Every other command needs an existing follow-up, and an open one: completed and closed
///   follow-ups refuse everything except `Recur`.
/// - `Recur` (exceptions only) counts an open exception up, and reopens a completed or closed
///   one. It reopens after a close as well as after a completion: a new failure of the job
///   needs attention whatever the caseworker decided about the old one.
/// - `ResolveByJob` (exceptions only) completes an open exception as `resolved_by_job`.
/// - `MarkOverdue` records the moment an open follow-up's due date passed, once.
/// - `MarkRead` and `Dismiss` (notifications only) change one user's inbox state, also on a
///   finished notification; a repeat changes nothing, and a dismissed one stays dismissed.
/// - `Erase` applies in any status, once; a follow-up under a legal hold refuses it.
///   `PlaceLegalHold` and `ReleaseLegalHold` apply in any status. An erased follow-up's
///   subject and description cannot be edited.
pub fn decide(state: &State, command: Command, ctx: &Context) -> Result<Vec<Event>, DomainError> {
    let Some(followup) = state else {
        return match command {
            Command::Create(new) => create(new, ctx.now),
            _ => Err(DomainError::NotFound),
        };
    };
    let now = ctx.now;
    match command {
        Command::Create(_) => Err(DomainError::AlreadyExists { id: followup.id }),
        Command::Edit(edit) => {
            ensure_open(followup)?;
            if followup.erased_at.is_some()
                && (edit.subject.is_some() || edit.description.is_some())
            {
                return Err(DomainError::Erased);
            }
            self::edit(followup, edit, now)
        }
        Command::AddNote { id, text } => {
            ensure_open(followup)?;
            if followup.erased_at.is_some() {
                return Err(DomainError::Erased);
            }
            // The same note again (a retried request) adds nothing.
            if followup.notes.iter().any(|note| note.id == id) {
                return Ok(vec![]);
            }
            Ok(vec![Event::NoteAdded {
                id,
                text,
                author: ctx.actor.clone(),
                at: now,
            }])
        }
        Command::Erase { cause, reason } => {
            if followup.erased_at.is_some() {
                return Ok(vec![]);
            }
            if let Some(hold) = &followup.legal_hold {
                return Err(DomainError::UnderLegalHold {
                    reason: hold.to_string(),
                });
            }
            Ok(vec![Event::Erased {
                cause,
                reason,
                at: now,
            }])
        }
        Command::PlaceLegalHold { reason } => {
            if followup.legal_hold.as_ref() == Some(&reason) {
                return Ok(vec![]);
            }
            Ok(vec![Event::LegalHoldPlaced { reason, at: now }])
        }
        Command::ReleaseLegalHold => {
            if followup.legal_hold.is_none() {
                return Ok(vec![]);
            }
            Ok(vec![Event::LegalHoldReleased { at: now }])
        }
        Command::Assign { owner } => {
            ensure_open(followup)?;
            if owner == followup.owner {
                return Ok(vec![]);
            }
            Ok(vec![Event::Assigned {
                owner,
                previous_owner: followup.owner.clone(),
                at: now,
            }])
        }
        Command::Share { principal, access } => {
            ensure_open(followup)?;
            if principal == followup.owner {
                return Err(DomainError::ShareWithOwner { principal });
            }
            if followup.shares.get(&principal) == Some(&access) {
                return Ok(vec![]);
            }
            Ok(vec![Event::Shared {
                principal,
                access,
                at: now,
            }])
        }
        Command::Unshare { principal } => {
            ensure_open(followup)?;
            if !followup.shares.contains_key(&principal) {
                return Err(DomainError::NotShared { principal });
            }
            Ok(vec![Event::Unshared { principal, at: now }])
        }
        Command::Complete => {
            ensure_open(followup)?;
            Ok(vec![Event::Completed {
                reason: StatusReason::Handled,
                at: now,
            }])
        }
        Command::Close => {
            ensure_open(followup)?;
            Ok(vec![Event::Closed {
                reason: StatusReason::NotNeeded,
                at: now,
            }])
        }
        Command::Recur { details } => {
            ensure_exception(followup)?;
            let occurrences = followup.occurrences.saturating_add(1);
            if followup.status.is_terminal() {
                Ok(vec![Event::Reopened {
                    occurrences,
                    details,
                    at: now,
                }])
            } else {
                Ok(vec![Event::Recurred {
                    occurrences,
                    details,
                    at: now,
                }])
            }
        }
        Command::ResolveByJob => {
            ensure_exception(followup)?;
            ensure_open(followup)?;
            Ok(vec![Event::Completed {
                reason: StatusReason::ResolvedByJob,
                at: now,
            }])
        }
        // Per-user inbox state: allowed on finished notifications too (a closed notification
        // can still be read), repeated commands change nothing, and dismissed stays dismissed.
        Command::MarkRead { user } => {
            ensure_notification(followup)?;
            match followup.inbox_state(&user) {
                InboxState::Unread => Ok(vec![Event::Read { user, at: now }]),
                InboxState::Read | InboxState::Dismissed => Ok(vec![]),
            }
        }
        Command::Dismiss { user } => {
            ensure_notification(followup)?;
            match followup.inbox_state(&user) {
                InboxState::Dismissed => Ok(vec![]),
                InboxState::Unread | InboxState::Read => {
                    Ok(vec![Event::Dismissed { user, at: now }])
                }
            }
        }
        Command::MarkOverdue => {
            ensure_open(followup)?;
            match followup.due {
                Some(due) if due < now && followup.overdue_since.is_none() => {
                    Ok(vec![Event::MarkedOverdue { due, at: now }])
                }
                // Not due yet, no due date, or marked already: nothing to do.
                _ => Ok(vec![]),
            }
        }
    }
}

/// A new follow-up. Exceptions come from failed jobs, so only a rule may create one.
fn create(new: NewFollowUp, now: DateTime<Utc>) -> Result<Vec<Event>, DomainError> {
    if new.kind == Kind::Exception && !matches!(new.source, Source::Rule { .. }) {
        return Err(DomainError::UsersCannotCreateExceptions);
    }
    let NewFollowUp {
        id,
        institution,
        kind,
        subject,
        description,
        regarding,
        person,
        owner,
        due,
        priority,
        source,
    } = new;
    // Whose personal data it holds: as given, else the person it is about, else its writer.
    let person = person
        .or_else(|| regarding.as_ref().and_then(DataSubject::of_regarding))
        .or_else(|| match &source {
            Source::User { id } => Some(DataSubject::user(id)),
            _ => None,
        });
    Ok(vec![Event::Created {
        id,
        institution,
        kind,
        subject,
        description,
        regarding,
        person,
        owner,
        due,
        priority,
        source,
        at: now,
    }])
}

/// An edit records only the fields whose new value differs from the current one; when none
/// does, there is nothing to record (a repeated PATCH changes nothing).
fn edit(followup: &FollowUp, edit: Edit, now: DateTime<Utc>) -> Result<Vec<Event>, DomainError> {
    if let Some(reason) = edit.status_reason {
        if !reason.is_open_reason() {
            return Err(DomainError::InvalidStatusReason { reason });
        }
    }
    let subject = edit.subject.filter(|new| *new != followup.subject);
    let description = edit.description.filter(|new| *new != followup.description);
    let due = edit.due.filter(|new| *new != followup.due);
    let priority = edit.priority.filter(|new| *new != followup.priority);
    let status_reason = edit
        .status_reason
        .filter(|new| *new != followup.status_reason);
    let changes_nothing = subject.is_none()
        && description.is_none()
        && due.is_none()
        && priority.is_none()
        && status_reason.is_none();
    if changes_nothing {
        return Ok(vec![]);
    }
    Ok(vec![Event::Edited {
        subject,
        description,
        due,
        priority,
        status_reason,
        at: now,
    }])
}

/// Refuses commands on completed and closed follow-ups.
fn ensure_open(followup: &FollowUp) -> Result<(), DomainError> {
    if followup.status.is_terminal() {
        return Err(DomainError::Terminal {
            status: followup.status,
        });
    }
    Ok(())
}

/// Refuses inbox commands on exceptions and tasks.
fn ensure_notification(followup: &FollowUp) -> Result<(), DomainError> {
    if followup.kind != Kind::Notification {
        return Err(DomainError::NotANotification {
            kind: followup.kind,
        });
    }
    Ok(())
}

/// Refuses exception-only commands on tasks and notifications.
fn ensure_exception(followup: &FollowUp) -> Result<(), DomainError> {
    if followup.kind != Kind::Exception {
        return Err(DomainError::NotAnException {
            kind: followup.kind,
        });
    }
    Ok(())
}
