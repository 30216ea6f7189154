//! Test support: fixtures and a given/when/then helper for the follow-up aggregate.
//!
//! ```text
//! given([created_task()]).when(Command::Complete).then([completed(at(10))]);
//! given([]).when(Command::Close).then_error("not_found");
//! ```

// Each test file uses a different part of this module.
#![allow(dead_code)]

use chrono::{DateTime, Duration, Utc};
use followup_domain::{
    decide, evolve, Actor, Command, Context, Description, DomainError, Event, FollowUp, FollowUpId,
    InstitutionId, Kind, NewFollowUp, Principal, Priority, Source, State, Subject, TeamId, UserId,
};
use uuid::Uuid;

/// A fixed moment plus `hours`; every test event happens at one of these.
pub fn at(hours: i64) -> DateTime<Utc> {
    let start: DateTime<Utc> = "2025-03-03T08:00:00Z".parse().expect("a valid timestamp");
    start + Duration::hours(hours)
}

/// The id of the follow-up under test.
pub fn followup_id() -> FollowUpId {
    FollowUpId::from_uuid(Uuid::from_u128(0x1234))
}

/// A user principal.
pub fn user(id: &str) -> Principal {
    Principal::User(UserId::parse(id).expect("a valid user id"))
}

/// A team principal.
pub fn team(id: &str) -> Principal {
    Principal::Team(TeamId::parse(id).expect("a valid team id"))
}

/// The caseworker who gives commands through the API.
pub fn caseworker() -> Actor {
    Actor::User {
        id: UserId::parse("u1").expect("a valid user id"),
    }
}

/// The rule that turns failed transfers into exceptions.
pub fn rule_source() -> Source {
    Source::Rule {
        rule_id: "transfer_defects".to_owned(),
        job: "applicant_transfer".to_owned(),
    }
}

/// A user as the source of a follow-up.
pub fn user_source() -> Source {
    Source::User {
        id: UserId::parse("u1").expect("a valid user id"),
    }
}

/// A valid subject.
pub fn subject(text: &str) -> Subject {
    Subject::parse(text).expect("a valid subject")
}

/// A valid description.
pub fn description(text: &str) -> Description {
    Description::parse(text).expect("a valid description")
}

/// What a create command for `kind` carries: owned by the admissions team, no due date.
pub fn new_followup(kind: Kind, source: Source) -> NewFollowUp {
    NewFollowUp {
        id: followup_id(),
        institution: InstitutionId::parse("KP").expect("a valid institution"),
        kind,
        subject: subject("Manglende GUE'er efter overførsel"),
        description: description("SUE 12 og 14 blev ikke oprettet"),
        regarding: None,
        person: None,
        owner: team("admissions"),
        due: None,
        priority: Priority::Normal,
        source,
    }
}

/// The `created` event `new` leads to at `time`.
pub fn created_from(new: NewFollowUp, time: DateTime<Utc>) -> Event {
    let person = new
        .person
        .clone()
        .or_else(|| {
            new.regarding
                .as_ref()
                .and_then(followup_domain::DataSubject::of_regarding)
        })
        .or_else(|| match &new.source {
            Source::User { id } => Some(followup_domain::DataSubject::user(id)),
            _ => None,
        });
    Event::Created {
        id: new.id,
        institution: new.institution,
        kind: new.kind,
        subject: new.subject,
        description: new.description,
        regarding: new.regarding,
        person,
        owner: new.owner,
        due: new.due,
        priority: new.priority,
        source: new.source,
        at: time,
    }
}

/// An exception created by a rule at hour 0.
pub fn created_exception() -> Event {
    created_from(new_followup(Kind::Exception, rule_source()), at(0))
}

/// A task created by a user at hour 0.
pub fn created_task() -> Event {
    created_from(new_followup(Kind::Task, user_source()), at(0))
}

/// A task created by a user at hour 0, due at `due`.
pub fn created_task_due(due: DateTime<Utc>) -> Event {
    let mut new = new_followup(Kind::Task, user_source());
    new.due = Some(due);
    created_from(new, at(0))
}

/// A notification created by a user at hour 0.
pub fn created_notification() -> Event {
    created_from(new_followup(Kind::Notification, user_source()), at(0))
}

/// Folds events into a state, as an adapter does when it loads a stream.
pub fn fold<'a>(events: impl IntoIterator<Item = &'a Event>) -> State {
    events.into_iter().fold(None, evolve)
}

/// Starts a scenario from the follow-up these events describe (none: an empty stream).
/// Commands are given by the caseworker at hour 10 unless `by` or `at` say otherwise.
pub fn given(events: impl IntoIterator<Item = Event>) -> Scenario {
    let events: Vec<Event> = events.into_iter().collect();
    Scenario {
        state: fold(&events),
        ctx: Context {
            actor: caseworker(),
            now: at(10),
        },
    }
}

/// A state and the context the next command runs in.
#[derive(Debug)]
pub struct Scenario {
    /// The follow-up before the command.
    state: State,
    /// Who gives the command, and when.
    ctx: Context,
}

impl Scenario {
    /// Gives the command as `actor`.
    pub fn by(mut self, actor: Actor) -> Self {
        self.ctx.actor = actor;
        self
    }

    /// Gives the command at `now`.
    pub fn at(mut self, now: DateTime<Utc>) -> Self {
        self.ctx.now = now;
        self
    }

    /// Decides `command`.
    pub fn when(self, command: Command) -> Outcome {
        let result = decide(&self.state, command, &self.ctx);
        Outcome {
            state: self.state,
            result,
        }
    }
}

/// What a command decided, ready to be checked.
#[derive(Debug)]
pub struct Outcome {
    /// The follow-up before the command.
    state: State,
    /// What `decide` returned.
    result: Result<Vec<Event>, DomainError>,
}

impl Outcome {
    /// Asserts the command produced exactly `expected`; returns the follow-up after them.
    #[track_caller]
    pub fn then(self, expected: impl IntoIterator<Item = Event>) -> FollowUp {
        let expected: Vec<Event> = expected.into_iter().collect();
        match self.result {
            Ok(events) => {
                assert_eq!(events, expected, "the command produced other events");
                events
                    .iter()
                    .fold(self.state, evolve)
                    .expect("the follow-up exists after the command")
            }
            Err(error) => panic!("expected {expected:?}, but the command was refused: {error}"),
        }
    }

    /// Asserts the command was accepted and changed nothing.
    #[track_caller]
    pub fn then_nothing(self) -> FollowUp {
        self.then([])
    }

    /// Asserts the command was refused with `code`; returns the error for further checks.
    #[track_caller]
    pub fn then_error(self, code: &str) -> DomainError {
        match self.result {
            Ok(events) => panic!("expected error {code}, but the command produced {events:?}"),
            Err(error) => {
                assert_eq!(error.code(), code, "refused for another reason: {error}");
                error
            }
        }
    }
}
