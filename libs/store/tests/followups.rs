//! The follow-up repository against the real PostgreSQL: commands, concurrency, idempotency
//! and upcasting of stored events.

mod common;

use common::{by, new_task};
use followup_domain::{
    Command, Context, DomainError, FollowUpId, Principal, Priority, Status, TeamId,
};
use followup_store::followups::upcaster;
use followup_store::{CommandMeta, EventStore, Expect, FollowUps, RepoError, MIGRATOR};
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

fn repo(pool: PgPool) -> FollowUps {
    FollowUps::new(EventStore::new(pool).with_upcaster(upcaster()))
}

fn caseworker() -> Context {
    by("u1")
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_created_and_completed_follow_up_is_completed_when_loaded_again(pool: PgPool) {
    let repo = repo(pool.clone());
    let id = FollowUpId::new_v4();
    let meta = CommandMeta::default();
    repo.execute(id, new_task(id), &caseworker(), &meta, Expect::Current)
        .await
        .unwrap();
    let done = repo
        .execute(id, Command::Complete, &caseworker(), &meta, Expect::Current)
        .await
        .unwrap();
    assert_eq!(done.state.status, Status::Completed);

    // A fresh repository (no cache) reads the same from the events.
    let loaded = self::repo(pool).load(id).await.unwrap().unwrap();
    assert_eq!((loaded.status, loaded.version), (Status::Completed, 2));
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_command_that_expects_an_old_version_is_refused_and_changes_nothing(pool: PgPool) {
    let repo = repo(pool.clone());
    let id = FollowUpId::new_v4();
    let meta = CommandMeta::default();
    repo.execute(id, new_task(id), &caseworker(), &meta, Expect::Current)
        .await
        .unwrap();
    repo.execute(id, Command::Close, &caseworker(), &meta, Expect::Version(1))
        .await
        .unwrap();

    let stale = repo
        .execute(
            id,
            Command::Complete,
            &caseworker(),
            &meta,
            Expect::Version(1),
        )
        .await;
    assert!(
        matches!(
            stale,
            Err(RepoError::VersionMismatch {
                expected: 1,
                actual: 2,
                ..
            })
        ),
        "{stale:?}"
    );
    let terminal = repo
        .execute(id, Command::Complete, &caseworker(), &meta, Expect::Current)
        .await;
    assert!(
        matches!(
            terminal,
            Err(RepoError::Domain(DomainError::Terminal { .. }))
        ),
        "{terminal:?}"
    );
    assert_eq!(repo.load(id).await.unwrap().unwrap().status, Status::Closed);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_stale_cached_state_never_gives_a_wrong_answer(pool: PgPool) {
    // Two processes: `a` caches the follow-up, `b` closes it behind `a`'s back.
    let (a, b) = (repo(pool.clone()), repo(pool.clone()));
    let id = FollowUpId::new_v4();
    let meta = CommandMeta::default();
    a.execute(id, new_task(id), &caseworker(), &meta, Expect::Current)
        .await
        .unwrap();
    b.execute(id, Command::Close, &caseworker(), &meta, Expect::Current)
        .await
        .unwrap();

    let refused = a
        .execute(id, Command::Complete, &caseworker(), &meta, Expect::Current)
        .await;
    assert!(
        matches!(
            refused,
            Err(RepoError::Domain(DomainError::Terminal { .. }))
        ),
        "{refused:?}"
    );
    // And an If-Match on the version `b` made is honoured although `a` cached version 1.
    let id2 = FollowUpId::new_v4();
    a.execute(id2, new_task(id2), &caseworker(), &meta, Expect::Current)
        .await
        .unwrap();
    b.execute(
        id2,
        Command::Assign {
            owner: Principal::Team(TeamId::parse("admissions").unwrap()),
        },
        &caseworker(),
        &meta,
        Expect::Current,
    )
    .await
    .unwrap();
    let done = a
        .execute(
            id2,
            Command::Complete,
            &caseworker(),
            &meta,
            Expect::Version(2),
        )
        .await
        .unwrap();
    assert_eq!(done.state.version, 3);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn the_same_inbound_message_run_twice_stores_its_events_once(pool: PgPool) {
    let repo = repo(pool.clone());
    let id = FollowUpId::new_v4();
    let meta = CommandMeta {
        idempotency_key: Some("esas/jobs#msg-1".into()),
        ..CommandMeta::default()
    };
    let first = repo
        .execute(id, new_task(id), &caseworker(), &meta, Expect::Current)
        .await
        .unwrap();
    let again = repo
        .execute(id, new_task(id), &caseworker(), &meta, Expect::Current)
        .await
        .unwrap();
    assert!(!first.already_applied && again.already_applied);
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(count, 1);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn events_stored_in_an_old_schema_are_read_in_the_current_one(pool: PgPool) {
    // A `created` event as schema version 1 stored it: no priority, the owner as a team id.
    let id = FollowUpId::new_v4();
    sqlx::query(
        "INSERT INTO events (stream_id, stream_type, version, event_id, event_type, schema_version, payload, actor)
         VALUES ($1, 'followup', 1, $2, 'created', 1, $3, '{\"type\":\"system\"}')",
    )
    .bind(id.to_string())
    .bind(Uuid::new_v4())
    .bind(json!({
        "type": "created", "id": id.to_string(), "institution": "KP", "kind": "exception",
        "subject": "Manglende GUE'er efter overførsel", "description": "",
        "regarding": null, "owner_team": "admissions", "due": null,
        "source": {"type": "rule", "rule_id": "applicant-transfer-defects", "job": "run-1"},
        "at": "2025-03-03T08:00:00Z"
    }))
    .execute(&pool)
    .await
    .unwrap();

    let store = EventStore::new(pool.clone()).with_upcaster(upcaster());
    let read = store.read_stream(&id.to_string()).await.unwrap();
    assert_eq!(read[0].schema_version, 2);
    assert_eq!(
        read[0].payload["owner"],
        json!({"type": "team", "id": "admissions"})
    );

    let followup = repo(pool).load(id).await.unwrap().unwrap();
    assert_eq!(followup.owner.to_string(), "team:admissions");
    assert_eq!(followup.priority, Priority::Normal);
}
