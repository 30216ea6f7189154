//! What the read model's tests share: follow-ups, viewers, and a check that the read model
//! says what the events say.

#![allow(dead_code)] // each test file uses its own part of this module

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use followup_domain::{
    Actor, Command, Context, Description, FollowUp, FollowUpId, InstitutionId, Kind, NewFollowUp,
    Principal, Priority, Source, Status, StatusReason, Subject, TeamId, UserId, Viewer,
};
use followup_readmodel::{Projection, ReadModel};
use followup_store::followups::upcaster;
use followup_store::{CommandMeta, EventStore, Expect, FollowUps};
use sqlx::PgPool;
use uuid::Uuid;

/// A principal from its text form (`user:u1`, `team:admissions`).
pub fn principal(text: &str) -> Principal {
    text.parse().unwrap()
}

/// A caseworker of `institution` with `teams`.
pub fn caseworker(institution: &str, user: &str, teams: &[&str]) -> Viewer {
    Viewer {
        user: UserId::parse(user).unwrap(),
        institution: InstitutionId::parse(institution).unwrap(),
        teams: teams.iter().map(|t| TeamId::parse(t).unwrap()).collect(),
        admin: false,
    }
}

/// An admin of `institution`, in no team.
pub fn admin(institution: &str, user: &str) -> Viewer {
    Viewer {
        admin: true,
        ..caseworker(institution, user, &[])
    }
}

/// The repository the tests append events through.
pub fn repo(pool: &PgPool) -> FollowUps {
    FollowUps::new(store(pool))
}

/// The event store, upcasting as the projector needs.
pub fn store(pool: &PgPool) -> EventStore {
    EventStore::new(pool.clone()).with_upcaster(upcaster())
}

/// A projector over the test database.
pub fn projector(pool: &PgPool) -> Projection {
    Projection::new(store(pool), ReadModel::new(pool.clone()))
}

/// A command context: user `u1` acting now.
pub fn ctx() -> Context {
    Context {
        actor: Actor::User {
            id: UserId::parse("u1").unwrap(),
        },
        now: Utc::now(),
    }
}

/// Creates an open task through the repository (an event in the store) and returns its id.
pub async fn create_task(repo: &FollowUps, institution: &str, owner: &str) -> FollowUpId {
    create(repo, Kind::Task, institution, owner).await
}

/// Creates a notification through the repository and returns its id.
pub async fn create_notification(repo: &FollowUps, institution: &str, owner: &str) -> FollowUpId {
    create(repo, Kind::Notification, institution, owner).await
}

async fn create(repo: &FollowUps, kind: Kind, institution: &str, owner: &str) -> FollowUpId {
    let id = FollowUpId::new_v4();
    let command = Command::Create(NewFollowUp {
        id,
        institution: InstitutionId::parse(institution).unwrap(),
        kind,
        subject: Subject::parse("Del data om gæstestuderende").unwrap(),
        description: Description::parse("").unwrap(),
        regarding: None,
        person: None,
        owner: principal(owner),
        due: None,
        priority: Priority::Normal,
        source: Source::User {
            id: UserId::parse("u1").unwrap(),
        },
    });
    run(repo, id, command).await;
    id
}

/// Runs `command` on follow-up `id` through the repository.
pub async fn run(repo: &FollowUps, id: FollowUpId, command: Command) {
    repo.execute(
        id,
        command,
        &ctx(),
        &CommandMeta::default(),
        Expect::Current,
    )
    .await
    .unwrap();
}

/// An open task as a state of version 1, for tests that write states directly.
pub fn state(institution: &str, owner: &str, created_at: DateTime<Utc>) -> FollowUp {
    FollowUp {
        id: FollowUpId::from_uuid(Uuid::new_v4()),
        institution: InstitutionId::parse(institution).unwrap(),
        kind: Kind::Task,
        subject: Subject::parse("Ring til ansøger om optagelse").unwrap(),
        description: Description::parse("").unwrap(),
        regarding: None,
        person: None,
        owner: principal(owner),
        shares: BTreeMap::new(),
        due: None,
        priority: Priority::Normal,
        status: Status::Open,
        status_reason: StatusReason::NotStarted,
        source: Source::User {
            id: UserId::parse("u1").unwrap(),
        },
        occurrences: 0,
        created_at,
        updated_at: created_at,
        version: 1,
        overdue_since: None,
        finished_at: None,
        legal_hold: None,
        erased_at: None,
        inbox: BTreeMap::new(),
        notes: Vec::new(),
    }
}

/// Checks that the read model holds exactly the follow-ups of the event store, each exactly
/// as its events fold.
pub async fn assert_read_model_matches_the_events(pool: &PgPool) {
    let streams: Vec<String> =
        sqlx::query_scalar("SELECT DISTINCT stream_id FROM events WHERE stream_type = 'followup'")
            .fetch_all(pool)
            .await
            .unwrap();
    let rows: Vec<ViewRow> =
        sqlx::query_as("SELECT id, status, owner, principals, version, doc FROM followups_view")
            .fetch_all(pool)
            .await
            .unwrap();
    let stream_ids: BTreeSet<String> = streams.into_iter().collect();
    let row_ids: BTreeSet<String> = rows.iter().map(|row| row.0.to_string()).collect();
    assert_eq!(row_ids, stream_ids, "one row per follow-up stream");
    let repo = repo(pool);
    for (id, status, owner, principals, version, sqlx::types::Json(doc)) in rows {
        let loaded = repo.load(FollowUpId::from_uuid(id)).await.unwrap().unwrap();
        assert_eq!(doc, loaded, "row {id} differs from its events");
        assert_eq!(status, loaded.status.as_str());
        assert_eq!(owner, loaded.owner.to_string());
        assert_eq!(version, loaded.version as i64);
        let expected: BTreeSet<String> = std::iter::once(&loaded.owner)
            .chain(loaded.shares.keys())
            .map(ToString::to_string)
            .collect();
        assert_eq!(principals.into_iter().collect::<BTreeSet<_>>(), expected);
    }
}

/// A row of `followups_view` as [`assert_read_model_matches_the_events`] reads it.
type ViewRow = (
    Uuid,
    String,
    String,
    Vec<String>,
    i64,
    sqlx::types::Json<FollowUp>,
);

/// How many events the store holds.
pub async fn event_count(pool: &PgPool) -> usize {
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(pool)
        .await
        .unwrap();
    count as usize
}
