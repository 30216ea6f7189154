//! The follow-up's rules, one scenario each: given these events, when this command, then
//! these events (or this error).

mod support;

use followup_domain::{
    evolve, Access, Actor, Command, Description, Edit, Event, InboxState, Kind, Priority, Status,
    StatusReason, UserId,
};
use support::*;

fn completed(reason: StatusReason, hour: i64) -> Event {
    Event::Completed {
        reason,
        at: at(hour),
    }
}

fn closed(hour: i64) -> Event {
    Event::Closed {
        reason: StatusReason::NotNeeded,
        at: at(hour),
    }
}

fn shared(principal: followup_domain::Principal, access: Access, hour: i64) -> Event {
    Event::Shared {
        principal,
        access,
        at: at(hour),
    }
}

/// The `edited` event that records exactly the fields set in `changes`.
fn edited(changes: Edit, hour: i64) -> Event {
    Event::Edited {
        subject: changes.subject,
        description: changes.description,
        due: changes.due,
        priority: changes.priority,
        status_reason: changes.status_reason,
        at: at(hour),
    }
}

fn scheduler() -> Actor {
    Actor::Scheduler {
        job: "mark_overdue".to_owned(),
    }
}

/// One of every command that needs an existing follow-up.
fn every_command_but_create() -> Vec<Command> {
    vec![
        Command::Edit(Edit {
            priority: Some(Priority::High),
            ..Edit::default()
        }),
        Command::Assign { owner: user("u2") },
        Command::Share {
            principal: user("u2"),
            access: Access::Read,
        },
        Command::Unshare {
            principal: user("u2"),
        },
        Command::Complete,
        Command::Close,
        Command::Recur {
            details: Description::empty(),
        },
        Command::ResolveByJob,
        Command::MarkOverdue,
    ]
}

// ---- create ----

#[test]
fn creating_a_task_on_an_empty_stream_records_it() {
    let new = new_followup(Kind::Task, user_source());
    given([])
        .when(Command::Create(new.clone()))
        .then([created_from(new, at(10))]);
}

#[test]
fn a_new_follow_up_is_open_not_started_unshared_and_at_version_1() {
    let followup = given([])
        .when(Command::Create(new_followup(Kind::Task, user_source())))
        .then([created_from(
            new_followup(Kind::Task, user_source()),
            at(10),
        )]);
    assert_eq!(followup.status, Status::Open);
    assert_eq!(followup.status_reason, StatusReason::NotStarted);
    assert!(followup.shares.is_empty());
    assert_eq!(followup.version, 1);
    assert_eq!(followup.created_at, at(10));
    assert_eq!(followup.updated_at, at(10));
    assert_eq!(followup.overdue_since, None);
}

#[test]
fn an_exception_starts_with_one_occurrence_and_tasks_and_notifications_with_none() {
    assert_eq!(fold(&[created_exception()]).unwrap().occurrences, 1);
    assert_eq!(fold(&[created_task()]).unwrap().occurrences, 0);
    assert_eq!(fold(&[created_notification()]).unwrap().occurrences, 0);
}

#[test]
fn a_rule_creates_an_exception() {
    let new = new_followup(Kind::Exception, rule_source());
    given([])
        .by(Actor::Rule {
            id: "transfer_defects".to_owned(),
        })
        .when(Command::Create(new.clone()))
        .then([created_from(new, at(10))]);
}

#[test]
fn users_cannot_create_exceptions() {
    let error = given([])
        .when(Command::Create(new_followup(
            Kind::Exception,
            user_source(),
        )))
        .then_error("users_cannot_create_exceptions");
    assert!(error.to_string().contains("task or a notification"));
}

#[test]
fn a_due_date_in_the_past_is_accepted_at_creation() {
    let mut new = new_followup(Kind::Exception, rule_source());
    new.due = Some(at(-48));
    given([])
        .when(Command::Create(new.clone()))
        .then([created_from(new, at(10))]);
}

#[test]
fn creating_a_follow_up_that_exists_is_refused() {
    given([created_task()])
        .when(Command::Create(new_followup(Kind::Task, user_source())))
        .then_error("already_exists");
}

#[test]
fn creating_a_follow_up_that_is_finished_is_refused_as_existing() {
    given([created_task(), completed(StatusReason::Handled, 1)])
        .when(Command::Create(new_followup(Kind::Task, user_source())))
        .then_error("already_exists");
}

#[test]
fn every_command_but_create_on_a_missing_follow_up_is_not_found() {
    for command in every_command_but_create() {
        given([]).when(command).then_error("not_found");
    }
}

// ---- terminal states ----

#[test]
fn a_completed_follow_up_refuses_every_command_but_recur() {
    for command in every_command_but_create() {
        let is_recur = matches!(command, Command::Recur { .. });
        let outcome =
            given([created_exception(), completed(StatusReason::Handled, 1)]).when(command);
        if is_recur {
            outcome.then([Event::Reopened {
                occurrences: 2,
                details: Description::empty(),
                at: at(10),
            }]);
        } else {
            let error = outcome.then_error("terminal_state");
            assert!(error.to_string().contains("completed"), "{error}");
        }
    }
}

#[test]
fn a_closed_follow_up_refuses_every_command_but_recur() {
    for command in every_command_but_create() {
        let is_recur = matches!(command, Command::Recur { .. });
        let outcome = given([created_exception(), closed(1)]).when(command);
        if is_recur {
            outcome.then([Event::Reopened {
                occurrences: 2,
                details: Description::empty(),
                at: at(10),
            }]);
        } else {
            outcome.then_error("terminal_state");
        }
    }
}

// ---- edit ----

#[test]
fn editing_records_only_the_fields_that_change() {
    let followup = given([created_task()])
        .when(Command::Edit(Edit {
            subject: Some(subject("Manglende GUE'er efter overførsel")),
            description: Some(description("Ny beskrivelse")),
            due: Some(Some(at(72))),
            priority: Some(Priority::Normal),
            status_reason: Some(StatusReason::InProgress),
        }))
        .then([Event::Edited {
            subject: None,
            description: Some(description("Ny beskrivelse")),
            due: Some(Some(at(72))),
            priority: None,
            status_reason: Some(StatusReason::InProgress),
            at: at(10),
        }]);
    assert_eq!(followup.description, description("Ny beskrivelse"));
    assert_eq!(followup.due, Some(at(72)));
    assert_eq!(followup.status_reason, StatusReason::InProgress);
    assert_eq!(followup.version, 2);
}

#[test]
fn editing_to_the_current_values_records_nothing() {
    given([created_task()])
        .when(Command::Edit(Edit {
            subject: Some(subject("Manglende GUE'er efter overførsel")),
            description: Some(description("SUE 12 og 14 blev ikke oprettet")),
            due: Some(None),
            priority: Some(Priority::Normal),
            status_reason: Some(StatusReason::NotStarted),
        }))
        .then_nothing();
}

#[test]
fn an_empty_edit_records_nothing() {
    given([created_task()])
        .when(Command::Edit(Edit::default()))
        .then_nothing();
}

#[test]
fn editing_the_subject_and_priority_changes_them() {
    let changes = Edit {
        subject: Some(subject("Ny titel")),
        priority: Some(Priority::High),
        ..Edit::default()
    };
    let followup = given([created_task()])
        .when(Command::Edit(changes.clone()))
        .then([edited(changes, 10)]);
    assert_eq!(followup.subject, subject("Ny titel"));
    assert_eq!(followup.priority, Priority::High);
}

#[test]
fn every_open_status_reason_can_be_set_by_editing() {
    for reason in [
        StatusReason::InProgress,
        StatusReason::Waiting,
        StatusReason::Deferred,
    ] {
        let changes = Edit {
            status_reason: Some(reason),
            ..Edit::default()
        };
        given([created_task()])
            .when(Command::Edit(changes.clone()))
            .then([edited(changes, 10)]);
    }
}

#[test]
fn a_finishing_status_reason_cannot_be_set_by_editing() {
    for reason in [
        StatusReason::Handled,
        StatusReason::ResolvedByJob,
        StatusReason::NotNeeded,
    ] {
        given([created_task()])
            .when(Command::Edit(Edit {
                status_reason: Some(reason),
                ..Edit::default()
            }))
            .then_error("invalid_status_reason");
    }
}

#[test]
fn removing_the_due_date_records_it_as_removed() {
    let changes = Edit {
        due: Some(None),
        ..Edit::default()
    };
    let followup = given([created_task_due(at(5))])
        .when(Command::Edit(changes.clone()))
        .then([edited(changes, 10)]);
    assert_eq!(followup.due, None);
}

#[test]
fn changing_the_due_date_clears_the_overdue_mark() {
    let changes = Edit {
        due: Some(Some(at(50))),
        ..Edit::default()
    };
    let followup = given([
        created_task_due(at(5)),
        Event::MarkedOverdue {
            due: at(5),
            at: at(6),
        },
    ])
    .when(Command::Edit(changes.clone()))
    .then([edited(changes, 10)]);
    assert_eq!(followup.overdue_since, None);
}

// ---- assign ----

#[test]
fn assigning_to_someone_else_records_the_new_and_the_previous_owner() {
    let followup = given([created_task()])
        .when(Command::Assign { owner: user("u2") })
        .then([Event::Assigned {
            owner: user("u2"),
            previous_owner: team("admissions"),
            at: at(10),
        }]);
    assert_eq!(followup.owner, user("u2"));
}

#[test]
fn assigning_to_the_current_owner_records_nothing() {
    given([created_task()])
        .when(Command::Assign {
            owner: team("admissions"),
        })
        .then_nothing();
}

#[test]
fn assigning_to_someone_it_is_shared_with_drops_their_share() {
    let followup = given([created_task(), shared(user("u2"), Access::Write, 1)])
        .when(Command::Assign { owner: user("u2") })
        .then([Event::Assigned {
            owner: user("u2"),
            previous_owner: team("admissions"),
            at: at(10),
        }]);
    assert!(followup.shares.is_empty());
}

// ---- share and unshare ----

#[test]
fn sharing_gives_the_principal_access() {
    let followup = given([created_task()])
        .when(Command::Share {
            principal: team("finance"),
            access: Access::Read,
        })
        .then([shared(team("finance"), Access::Read, 10)]);
    assert_eq!(followup.shares.get(&team("finance")), Some(&Access::Read));
}

#[test]
fn sharing_with_the_owner_is_refused() {
    given([created_task()])
        .when(Command::Share {
            principal: team("admissions"),
            access: Access::Write,
        })
        .then_error("share_with_owner");
}

#[test]
fn sharing_again_with_the_same_access_records_nothing() {
    given([created_task(), shared(user("u2"), Access::Read, 1)])
        .when(Command::Share {
            principal: user("u2"),
            access: Access::Read,
        })
        .then_nothing();
}

#[test]
fn sharing_again_with_other_access_changes_it() {
    let followup = given([created_task(), shared(user("u2"), Access::Read, 1)])
        .when(Command::Share {
            principal: user("u2"),
            access: Access::Write,
        })
        .then([shared(user("u2"), Access::Write, 10)]);
    assert_eq!(followup.shares.get(&user("u2")), Some(&Access::Write));
    assert_eq!(followup.shares.len(), 1);
}

#[test]
fn unsharing_removes_the_share() {
    let followup = given([created_task(), shared(user("u2"), Access::Read, 1)])
        .when(Command::Unshare {
            principal: user("u2"),
        })
        .then([Event::Unshared {
            principal: user("u2"),
            at: at(10),
        }]);
    assert!(followup.shares.is_empty());
}

#[test]
fn unsharing_someone_without_a_share_is_refused() {
    given([created_task()])
        .when(Command::Unshare {
            principal: user("u2"),
        })
        .then_error("not_shared");
}

// ---- complete and close ----

#[test]
fn completing_marks_it_handled() {
    let followup = given([created_task()])
        .when(Command::Complete)
        .then([completed(StatusReason::Handled, 10)]);
    assert_eq!(followup.status, Status::Completed);
    assert_eq!(followup.status_reason, StatusReason::Handled);
}

#[test]
fn closing_marks_it_not_needed() {
    let followup = given([created_notification()])
        .when(Command::Close)
        .then([closed(10)]);
    assert_eq!(followup.status, Status::Closed);
    assert_eq!(followup.status_reason, StatusReason::NotNeeded);
}

#[test]
fn finishing_an_overdue_follow_up_clears_the_overdue_mark() {
    let overdue = [
        created_task_due(at(5)),
        Event::MarkedOverdue {
            due: at(5),
            at: at(6),
        },
    ];
    let followup = given(overdue.clone())
        .when(Command::Complete)
        .then([completed(StatusReason::Handled, 10)]);
    assert_eq!(followup.overdue_since, None);
    let followup = given(overdue).when(Command::Close).then([closed(10)]);
    assert_eq!(followup.overdue_since, None);
}

// ---- recur ----

#[test]
fn a_recurrence_of_an_open_exception_counts_up_and_shows_the_latest_details() {
    let followup = given([created_exception()])
        .by(Actor::Rule {
            id: "transfer_defects".to_owned(),
        })
        .when(Command::Recur {
            details: description("SUE 12 mangler stadig"),
        })
        .then([Event::Recurred {
            occurrences: 2,
            details: description("SUE 12 mangler stadig"),
            at: at(10),
        }]);
    assert_eq!(followup.occurrences, 2);
    assert_eq!(followup.description, description("SUE 12 mangler stadig"));
    assert_eq!(followup.status, Status::Open);
}

#[test]
fn a_recurrence_after_completion_reopens_the_exception() {
    let followup = given([created_exception(), completed(StatusReason::Handled, 1)])
        .when(Command::Recur {
            details: description("Fejlede igen"),
        })
        .then([Event::Reopened {
            occurrences: 2,
            details: description("Fejlede igen"),
            at: at(10),
        }]);
    assert_eq!(followup.status, Status::Open);
    assert_eq!(followup.status_reason, StatusReason::NotStarted);
    assert_eq!(followup.occurrences, 2);
}

#[test]
fn a_recurrence_after_a_job_resolved_it_reopens_the_exception() {
    given([
        created_exception(),
        completed(StatusReason::ResolvedByJob, 1),
    ])
    .when(Command::Recur {
        details: Description::empty(),
    })
    .then([Event::Reopened {
        occurrences: 2,
        details: Description::empty(),
        at: at(10),
    }]);
}

#[test]
fn a_recurrence_after_close_reopens_the_exception_too() {
    let followup = given([created_exception(), closed(1)])
        .when(Command::Recur {
            details: Description::empty(),
        })
        .then([Event::Reopened {
            occurrences: 2,
            details: Description::empty(),
            at: at(10),
        }]);
    assert_eq!(followup.status, Status::Open);
}

#[test]
fn tasks_and_notifications_do_not_recur_open_or_finished() {
    for created in [created_task(), created_notification()] {
        given([created.clone()])
            .when(Command::Recur {
                details: Description::empty(),
            })
            .then_error("not_an_exception");
        given([created, closed(1)])
            .when(Command::Recur {
                details: Description::empty(),
            })
            .then_error("not_an_exception");
    }
}

// ---- resolve by job ----

#[test]
fn a_later_successful_job_run_completes_an_open_exception_as_resolved_by_job() {
    let followup = given([created_exception()])
        .by(Actor::System)
        .when(Command::ResolveByJob)
        .then([completed(StatusReason::ResolvedByJob, 10)]);
    assert_eq!(followup.status, Status::Completed);
    assert_eq!(followup.status_reason, StatusReason::ResolvedByJob);
}

#[test]
fn resolving_a_finished_exception_is_refused_as_terminal() {
    given([created_exception(), completed(StatusReason::Handled, 1)])
        .when(Command::ResolveByJob)
        .then_error("terminal_state");
    given([created_exception(), closed(1)])
        .when(Command::ResolveByJob)
        .then_error("terminal_state");
}

#[test]
fn resolving_a_task_by_job_is_refused() {
    given([created_task()])
        .when(Command::ResolveByJob)
        .then_error("not_an_exception");
}

// ---- mark overdue ----

#[test]
fn a_follow_up_past_its_due_date_is_marked_overdue() {
    let followup = given([created_task_due(at(5))])
        .by(scheduler())
        .when(Command::MarkOverdue)
        .then([Event::MarkedOverdue {
            due: at(5),
            at: at(10),
        }]);
    assert_eq!(followup.overdue_since, Some(at(10)));
}

#[test]
fn a_follow_up_due_now_or_later_is_not_marked_overdue() {
    given([created_task_due(at(10))])
        .at(at(10))
        .when(Command::MarkOverdue)
        .then_nothing();
    given([created_task_due(at(20))])
        .when(Command::MarkOverdue)
        .then_nothing();
}

#[test]
fn a_follow_up_without_a_due_date_is_never_marked_overdue() {
    given([created_task()])
        .when(Command::MarkOverdue)
        .then_nothing();
}

#[test]
fn a_follow_up_marked_overdue_already_is_not_marked_again() {
    given([
        created_task_due(at(5)),
        Event::MarkedOverdue {
            due: at(5),
            at: at(6),
        },
    ])
    .when(Command::MarkOverdue)
    .then_nothing();
}

#[test]
fn a_reopened_exception_can_be_marked_overdue_again() {
    let mut new = new_followup(Kind::Exception, rule_source());
    new.due = Some(at(2));
    let followup = given([
        created_from(new, at(0)),
        Event::MarkedOverdue {
            due: at(2),
            at: at(3),
        },
        completed(StatusReason::Handled, 4),
        Event::Reopened {
            occurrences: 2,
            details: Description::empty(),
            at: at(5),
        },
    ])
    .when(Command::MarkOverdue)
    .then([Event::MarkedOverdue {
        due: at(2),
        at: at(10),
    }]);
    assert_eq!(followup.overdue_since, Some(at(10)));
}

#[test]
fn overdue_means_open_and_past_the_due_date() {
    let open = fold(&[created_task_due(at(5))]).unwrap();
    assert!(!open.is_overdue(at(4)));
    assert!(!open.is_overdue(at(5)));
    assert!(open.is_overdue(at(6)));
    let done = fold(&[created_task_due(at(5)), completed(StatusReason::Handled, 6)]).unwrap();
    assert!(!done.is_overdue(at(7)));
    let undated = fold(&[created_task()]).unwrap();
    assert!(!undated.is_overdue(at(100)));
}

// ---- evolve ----

#[test]
fn every_event_sets_updated_at_and_counts_the_version() {
    let events = [
        created_task(),
        shared(user("u2"), Access::Read, 1),
        edited(
            Edit {
                priority: Some(Priority::Low),
                ..Edit::default()
            },
            2,
        ),
        completed(StatusReason::Handled, 3),
    ];
    let followup = fold(&events).unwrap();
    assert_eq!(followup.version, 4);
    assert_eq!(followup.created_at, at(0));
    assert_eq!(followup.updated_at, at(3));
}

#[test]
fn events_that_do_not_fit_the_stream_leave_the_state_as_it_was() {
    assert_eq!(evolve(None, &closed(1)), None);
    let once = fold(&[created_task()]);
    assert_eq!(evolve(once.clone(), &created_exception()), once);
}

#[test]
fn a_follow_up_serializes_its_shares_as_a_list() {
    let followup = fold(&[created_task(), shared(user("u2"), Access::Write, 1)]).unwrap();
    let json = serde_json::to_value(&followup).unwrap();
    assert_eq!(
        json["shares"],
        serde_json::json!([{"principal": {"type": "user", "id": "u2"}, "access": "write"}])
    );
    assert_eq!(
        json["owner"],
        serde_json::json!({"type": "team", "id": "admissions"})
    );
    assert_eq!(json["status"], serde_json::json!("open"));
    let back: followup_domain::FollowUp = serde_json::from_value(json).unwrap();
    assert_eq!(back, followup);
}

// ---- the inbox: read and dismiss ----

fn u(id: &str) -> UserId {
    UserId::parse(id).unwrap()
}

#[test]
fn a_user_reads_a_notification_once_and_only_for_themselves() {
    let followup = given([created_notification()])
        .when(Command::MarkRead { user: u("u1") })
        .then([Event::Read {
            user: u("u1"),
            at: at(10),
        }]);
    assert_eq!(followup.inbox_state(&u("u1")), InboxState::Read);
    assert_eq!(followup.inbox_state(&u("u2")), InboxState::Unread);
    assert_eq!(
        followup.updated_at,
        at(0),
        "reading changes the inbox, not the follow-up"
    );
    given([
        created_notification(),
        Event::Read {
            user: u("u1"),
            at: at(1),
        },
    ])
    .when(Command::MarkRead { user: u("u1") })
    .then_nothing();
}

#[test]
fn a_dismissed_notification_stays_dismissed() {
    let dismissed = [
        created_notification(),
        Event::Dismissed {
            user: u("u1"),
            at: at(1),
        },
    ];
    given(dismissed.clone())
        .when(Command::MarkRead { user: u("u1") })
        .then_nothing();
    given(dismissed)
        .when(Command::Dismiss { user: u("u1") })
        .then_nothing();
}

#[test]
fn a_finished_notification_can_still_be_read_and_dismissed() {
    given([created_notification(), closed(1)])
        .when(Command::Dismiss { user: u("u2") })
        .then([Event::Dismissed {
            user: u("u2"),
            at: at(10),
        }]);
}

#[test]
fn tasks_and_exceptions_are_not_read_or_dismissed() {
    given([created_task()])
        .when(Command::MarkRead { user: u("u1") })
        .then_error("not_a_notification");
    given([created_exception()])
        .when(Command::Dismiss { user: u("u1") })
        .then_error("not_a_notification");
}
