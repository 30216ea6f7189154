//! [`evolve`]: applies one event to the state. Events are facts, so nothing is checked here:
//! every rule lives in [`super::decide`].

use std::collections::BTreeMap;

use super::{Event, FollowUp, Note, State};
use crate::values::{
    Description, InboxState, Kind, NoteText, Regarding, Status, StatusReason, Subject,
};

/// The state after `event`.
///
/// Every applied event counts `version` up by one, and sets `updated_at` to the event's time
/// (except `read` and `dismissed`, which change one user's inbox, not the follow-up).
/// A stream always starts with `created`; an event that cannot apply (anything before
/// `created`, or a second `created`) leaves the state as it was, which only a corrupt stream
/// can cause.
pub fn evolve(state: State, event: &Event) -> State {
    let Some(mut followup) = state else {
        return created(event);
    };
    match event {
        Event::Created { .. } => return Some(followup),
        Event::NoteAdded {
            id,
            text,
            author,
            at,
        } => followup.notes.push(Note {
            id: *id,
            text: text.clone(),
            author: author.clone(),
            at: *at,
        }),
        Event::Edited {
            subject,
            description,
            due,
            priority,
            status_reason,
            at: _,
        } => {
            if let Some(subject) = subject {
                followup.subject = subject.clone();
            }
            if let Some(description) = description {
                followup.description = description.clone();
            }
            if let Some(due) = due {
                followup.due = *due;
                // A new due date has not passed yet as far as the scheduler knows.
                followup.overdue_since = None;
            }
            if let Some(priority) = priority {
                followup.priority = *priority;
            }
            if let Some(status_reason) = status_reason {
                followup.status_reason = *status_reason;
            }
        }
        Event::Assigned { owner, .. } => {
            // The new owner has full access; a share it had would be meaningless.
            followup.shares.remove(owner);
            followup.owner = owner.clone();
        }
        Event::Shared {
            principal, access, ..
        } => {
            followup.shares.insert(principal.clone(), *access);
        }
        Event::Unshared { principal, .. } => {
            followup.shares.remove(principal);
        }
        Event::Completed { reason, at } => {
            followup.status = Status::Completed;
            followup.status_reason = *reason;
            followup.overdue_since = None;
            followup.finished_at = Some(*at);
        }
        Event::Closed { reason, at } => {
            followup.status = Status::Closed;
            followup.status_reason = *reason;
            followup.overdue_since = None;
            followup.finished_at = Some(*at);
        }
        Event::Erased { at, .. } => {
            followup.subject = Subject::erased();
            followup.description = Description::erased();
            followup.regarding = followup.regarding.as_ref().map(Regarding::erased);
            followup.person = None;
            for note in &mut followup.notes {
                note.text = NoteText::erased();
            }
            followup.erased_at = Some(*at);
        }
        Event::LegalHoldPlaced { reason, .. } => {
            followup.legal_hold = Some(reason.clone());
        }
        Event::LegalHoldReleased { .. } => {
            followup.legal_hold = None;
        }
        Event::Recurred {
            occurrences,
            details,
            ..
        } => {
            followup.occurrences = *occurrences;
            followup.description = details.clone();
        }
        Event::Reopened {
            occurrences,
            details,
            ..
        } => {
            followup.status = Status::Open;
            followup.status_reason = StatusReason::NotStarted;
            followup.occurrences = *occurrences;
            followup.description = details.clone();
            followup.overdue_since = None;
            followup.finished_at = None;
        }
        Event::MarkedOverdue { at, .. } => {
            followup.overdue_since = Some(*at);
        }
        // One user's inbox state: the follow-up itself does not change, so neither does
        // `updated_at`.
        Event::Read { user, .. } => {
            followup.inbox.insert(user.clone(), InboxState::Read);
            followup.version += 1;
            return Some(followup);
        }
        Event::Dismissed { user, .. } => {
            followup.inbox.insert(user.clone(), InboxState::Dismissed);
            followup.version += 1;
            return Some(followup);
        }
    }
    followup.updated_at = event.at();
    followup.version += 1;
    Some(followup)
}

/// The first state of a stream, from its `created` event.
fn created(event: &Event) -> State {
    let Event::Created {
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
        at,
    } = event
    else {
        return None;
    };
    Some(FollowUp {
        id: *id,
        institution: institution.clone(),
        kind: *kind,
        subject: subject.clone(),
        description: description.clone(),
        regarding: regarding.clone(),
        person: person.clone(),
        owner: owner.clone(),
        shares: BTreeMap::new(),
        due: *due,
        priority: *priority,
        status: Status::Open,
        status_reason: StatusReason::NotStarted,
        source: source.clone(),
        occurrences: if *kind == Kind::Exception { 1 } else { 0 },
        created_at: *at,
        updated_at: *at,
        version: 1,
        overdue_since: None,
        finished_at: None,
        legal_hold: None,
        erased_at: None,
        inbox: BTreeMap::new(),
        notes: Vec::new(),
    })
}
