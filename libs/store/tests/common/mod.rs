//! What the store's tests share: who acts, and a task to create.

use chrono::Utc;
use followup_domain::{
    Actor, Command, Context, Description, FollowUpId, InstitutionId, Kind, NewFollowUp, Principal,
    Priority, Source, Subject, UserId,
};

/// User `user` acting now.
pub fn by(user: &str) -> Context {
    Context {
        actor: Actor::User {
            id: UserId::parse(user).unwrap(),
        },
        now: Utc::now(),
    }
}

/// The creation of task `id` at KP, owned by user u1.
pub fn new_task(id: FollowUpId) -> Command {
    Command::Create(NewFollowUp {
        id,
        institution: InstitutionId::parse("KP").unwrap(),
        kind: Kind::Task,
        subject: Subject::parse("Ring til ansøger om optagelse").unwrap(),
        description: Description::parse("").unwrap(),
        regarding: None,
        person: None,
        owner: Principal::User(UserId::parse("u1").unwrap()),
        due: None,
        priority: Priority::Normal,
        source: Source::User {
            id: UserId::parse("u1").unwrap(),
        },
    })
}
