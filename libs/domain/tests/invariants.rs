//! Property tests: whatever commands arrive, in whatever order, from whoever, the follow-up
//! keeps its invariants, and every event it emits survives storage (serialize, then decode).

mod support;

use chrono::{DateTime, Utc};
use followup_domain::{
    current_schema_version, decide, decode, evolve, find_cpr, mask, Access, Actor, Command,
    Context, Description, Edit, Event, FollowUp, Kind, NewFollowUp, Principal, Priority, Source,
    State, Status, StatusReason, Subject, UserId,
};
use proptest::prelude::*;
use support::*;

fn principal() -> impl Strategy<Value = Principal> {
    prop_oneof![
        Just(user("u1")),
        Just(user("u2")),
        Just(team("admissions")),
        Just(team("finance")),
    ]
}

fn time() -> impl Strategy<Value = DateTime<Utc>> {
    (-24i64..72).prop_map(at)
}

fn subject_text() -> impl Strategy<Value = Subject> {
    prop_oneof![
        Just(subject("Manglende GUE'er efter overførsel")),
        Just(subject("Ny titel")),
        any::<String>().prop_map(|text| Subject::from_upstream(&text)),
    ]
}

fn description_text() -> impl Strategy<Value = Description> {
    prop_oneof![
        Just(Description::empty()),
        Just(description("SUE 12 og 14 blev ikke oprettet")),
        "[0-9a-zæøå \n-]{0,40}".prop_map(|text| Description::from_upstream(&text)),
    ]
}

fn source() -> impl Strategy<Value = Source> {
    prop_oneof![Just(user_source()), Just(rule_source())]
}

fn new_followup_strategy() -> impl Strategy<Value = NewFollowUp> {
    (
        prop::sample::select(Kind::ALL),
        subject_text(),
        description_text(),
        principal(),
        prop::option::of(time()),
        prop::sample::select(Priority::ALL),
        source(),
    )
        .prop_map(
            |(kind, subject, description, owner, due, priority, source)| {
                let mut new = new_followup(kind, source);
                new.subject = subject;
                new.description = description;
                new.owner = owner;
                new.due = due;
                new.priority = priority;
                new
            },
        )
}

fn edit() -> impl Strategy<Value = Edit> {
    (
        prop::option::of(subject_text()),
        prop::option::of(description_text()),
        prop::option::of(prop::option::of(time())),
        prop::option::of(prop::sample::select(Priority::ALL)),
        prop::option::of(prop::sample::select(StatusReason::ALL)),
    )
        .prop_map(
            |(subject, description, due, priority, status_reason)| Edit {
                subject,
                description,
                due,
                priority,
                status_reason,
            },
        )
}

fn command() -> impl Strategy<Value = Command> {
    prop_oneof![
        1 => new_followup_strategy().prop_map(Command::Create),
        3 => edit().prop_map(Command::Edit),
        2 => principal().prop_map(|owner| Command::Assign { owner }),
        3 => (principal(), prop::sample::select(Access::ALL))
            .prop_map(|(principal, access)| Command::Share { principal, access }),
        2 => principal().prop_map(|principal| Command::Unshare { principal }),
        1 => Just(Command::Complete),
        1 => Just(Command::Close),
        2 => description_text().prop_map(|details| Command::Recur { details }),
        1 => Just(Command::ResolveByJob),
        2 => Just(Command::MarkOverdue),
        2 => reader().prop_map(|user| Command::MarkRead { user }),
        1 => reader().prop_map(|user| Command::Dismiss { user }),
    ]
}

fn reader() -> impl Strategy<Value = UserId> {
    prop::sample::select(vec!["u1", "u2", "u3"]).prop_map(|id| UserId::parse(id).unwrap())
}

fn context() -> impl Strategy<Value = Context> {
    let actor = prop_oneof![
        Just(caseworker()),
        Just(Actor::Rule {
            id: "transfer_defects".to_owned()
        }),
        Just(Actor::Scheduler {
            job: "mark_overdue".to_owned()
        }),
        Just(Actor::System),
    ];
    (actor, time()).prop_map(|(actor, now)| Context { actor, now })
}

/// Mostly starts with a valid create (so the other commands have something to act on), then
/// any commands at all.
fn history() -> impl Strategy<Value = Vec<(Command, Context)>> {
    let first = prop::option::weighted(
        0.9,
        (new_followup_strategy(), context()).prop_map(|(mut new, ctx)| {
            if new.kind == Kind::Exception {
                new.source = rule_source();
            }
            (Command::Create(new), ctx)
        }),
    );
    (first, prop::collection::vec((command(), context()), 0..40))
        .prop_map(|(first, rest)| first.into_iter().chain(rest).collect())
}

/// Commands that, once applied, change nothing when given again.
fn is_idempotent(command: &Command) -> bool {
    matches!(
        command,
        Command::Edit(_)
            | Command::Assign { .. }
            | Command::Share { .. }
            | Command::MarkOverdue
            | Command::MarkRead { .. }
            | Command::Dismiss { .. }
    )
}

fn check_invariants(followup: &FollowUp, applied: u64) -> Result<(), TestCaseError> {
    prop_assert_eq!(
        followup.version,
        applied,
        "version counts the events applied"
    );
    if followup.kind == Kind::Exception {
        prop_assert!(
            followup.occurrences >= 1,
            "an exception has occurred at least once"
        );
    } else {
        prop_assert_eq!(followup.occurrences, 0, "only exceptions count occurrences");
    }
    prop_assert!(
        !followup.shares.contains_key(&followup.owner),
        "the owner is never in the shares"
    );
    prop_assert_eq!(
        followup.status_reason.is_open_reason(),
        followup.status == Status::Open,
        "open reasons exactly when open"
    );
    prop_assert_eq!(followup.status_reason.status(), followup.status);
    if followup.kind != Kind::Notification {
        prop_assert!(
            followup.inbox.is_empty(),
            "only notifications have inbox states"
        );
    }
    if followup.overdue_since.is_some() {
        prop_assert!(followup.due.is_some(), "overdue needs a due date");
        prop_assert_eq!(
            followup.status,
            Status::Open,
            "only open follow-ups are overdue"
        );
    }
    Ok(())
}

fn check_round_trip(event: &Event) -> Result<(), TestCaseError> {
    let event_type = event.event_type();
    let payload = serde_json::to_value(event).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let decoded = decode(event_type, current_schema_version(event_type), payload)
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(&decoded, event);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_sequence_of_commands_keeps_every_invariant(history in history()) {
        let mut state: State = None;
        let mut applied = 0u64;
        for (command, ctx) in history {
            let was_terminal = state.as_ref().is_some_and(|f| f.status.is_terminal());
            // A recurrence reopens; a user's inbox state changes on finished notifications too.
            let allowed_when_finished = matches!(
                command,
                Command::Recur { .. } | Command::MarkRead { .. } | Command::Dismiss { .. }
            );
            let result = decide(&state, command.clone(), &ctx);
            if was_terminal && !allowed_when_finished {
                prop_assert!(result.is_err(), "a finished follow-up accepted {:?}", command);
            }
            let Ok(events) = result else { continue };
            for event in &events {
                prop_assert_eq!(event.at(), ctx.now, "events happen when the command is given");
                check_round_trip(event)?;
                state = evolve(state, event);
                applied += 1;
            }
            let followup = state.as_ref().expect("an accepted command leaves a follow-up");
            check_invariants(followup, applied)?;
            let inbox_only = events
                .iter()
                .all(|e| matches!(e, Event::Read { .. } | Event::Dismissed { .. }));
            if !events.is_empty() && !inbox_only {
                prop_assert_eq!(followup.updated_at, ctx.now);
            }
            if is_idempotent(&command) {
                let again = decide(&state, command, &ctx);
                prop_assert_eq!(again, Ok(vec![]), "repeating the command changes nothing");
            }
        }
    }

    #[test]
    fn masked_text_contains_no_cpr_number(text in "[0-9 a-z-]{0,40}") {
        prop_assert_eq!(find_cpr(&mask(&text)), None);
    }

    #[test]
    fn a_cpr_number_inside_text_is_found_and_masked(
        day in 1u32..=28,
        month in 1u32..=12,
        year in 0u32..=99,
        serial in 0u32..=9999,
        separator in prop::sample::select(vec!["", "-", " "]),
        before in "[a-zæø .,:]{0,10}",
        after in "[a-zæø .,:]{0,10}",
    ) {
        let date = format!("{day:02}{month:02}{year:02}");
        let text = format!("{before}{date}{separator}{serial:04}{after}");
        let found = find_cpr(&text).expect("a CPR number is found");
        prop_assert_eq!(found.start, before.len());
        prop_assert_eq!(mask(&text), format!("{before}{date}-xxxx{after}"));
    }

    #[test]
    fn upstream_text_always_makes_a_valid_subject_and_description(text in any::<String>()) {
        let subject = Subject::from_upstream(&text);
        prop_assert!(find_cpr(subject.as_str()).is_none());
        let stored: Subject = serde_json::from_value(serde_json::json!(subject.as_str()))
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(stored, subject);
        let description = Description::from_upstream(&text);
        prop_assert!(find_cpr(description.as_str()).is_none());
        let stored: Description = serde_json::from_value(serde_json::json!(description.as_str()))
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(stored, description);
    }
}
