//! The command executor's batches against the real PostgreSQL: each unit stored once, a
//! second run of the same message finding its events, changes decided in order, refusals,
//! and two executors racing on the same follow-ups.

mod common;

use common::{by, new_task};
use followup_domain::{Command, Edit, FollowUp, FollowUpId, Priority, Status};
use followup_store::followups::upcaster;
use followup_store::{Change, CommandMeta, EventStore, FollowUps, Unit, UnitOutcome, MIGRATOR};
use sqlx::PgPool;

fn executor(pool: PgPool) -> FollowUps {
    FollowUps::new(EventStore::new(pool).with_upcaster(upcaster()))
}

fn meta(key: &str) -> CommandMeta {
    CommandMeta {
        idempotency_key: Some(key.to_owned()),
        ..CommandMeta::default()
    }
}

fn unit(changes: Vec<Change<FollowUp>>, key: &str, all_or_nothing: bool) -> Unit<FollowUp> {
    Unit {
        changes,
        ctx: by("u1"),
        meta: meta(key),
        all_or_nothing,
    }
}

/// A unit that creates `made` and completes `missing`, which does not exist (refused).
fn create_and_complete_missing(
    made: FollowUpId,
    missing: FollowUpId,
    all_or_nothing: bool,
) -> Unit<FollowUp> {
    unit(
        vec![
            Change::commands(made, vec![new_task(made)]),
            Change::commands(missing, vec![Command::Complete]),
        ],
        "refusing",
        all_or_nothing,
    )
}

async fn event_count(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(pool)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_batch_stores_each_unit_once_and_running_it_again_stores_nothing(pool: PgPool) {
    // Given three creations, each its own unit of one message
    let executor = executor(pool.clone());
    let ids: Vec<FollowUpId> = (0..3).map(|_| FollowUpId::new_v4()).collect();
    let plan = |_: &_| {
        ids.iter()
            .map(|id| {
                unit(
                    vec![Change::commands(*id, vec![new_task(*id)])],
                    "msg-1",
                    true,
                )
            })
            .collect()
    };

    // When the batch runs twice (a redelivery)
    let first = executor.execute_units(ids.clone(), plan).await.unwrap();
    let second = executor.execute_units(ids.clone(), plan).await.unwrap();

    // Then the first stored each once, and the second found them stored
    assert_eq!(first.units, vec![UnitOutcome::Applied; 3]);
    assert_eq!(first.written.len(), 3);
    assert_eq!(second.units, vec![UnitOutcome::AlreadyStored; 3]);
    assert!(second.written.is_empty());
    assert_eq!(event_count(&pool).await, 3);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn two_changes_of_one_unit_on_one_follow_up_are_decided_in_order_each_by_its_actor(
    pool: PgPool,
) {
    // Given one message that creates a task and then edits it, by two actors
    let executor = executor(pool.clone());
    let id = FollowUpId::new_v4();
    let edit = Command::Edit(Edit {
        priority: Some(Priority::High),
        ..Edit::default()
    });
    let plan = |_: &_| {
        vec![unit(
            vec![
                Change::commands(id, vec![new_task(id)]),
                Change::commands(id, vec![edit.clone()]).by(by("u2")),
            ],
            "msg-2",
            false,
        )]
    };

    // When it runs, and runs again
    let first = executor.execute_units(vec![id], plan).await.unwrap();
    let again = executor.execute_units(vec![id], plan).await.unwrap();

    // Then both events are stored once, the second decided on the first's state
    assert_eq!(first.units, vec![UnitOutcome::Applied]);
    assert_eq!(again.units, vec![UnitOutcome::AlreadyStored]);
    let (state, events) = executor.load_with_events(id).await.unwrap();
    let state = state.unwrap();
    assert_eq!(state.version, 2);
    assert_eq!(state.priority, Priority::High);
    let actors: Vec<String> = events
        .iter()
        .map(|e| {
            e.metadata.actor["id"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(actors, ["u1", "u2"]);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_refused_change_is_left_out_and_the_rest_of_its_unit_is_stored(pool: PgPool) {
    // Given a unit that creates one task and completes one that does not exist
    let executor = executor(pool.clone());
    let (made, missing) = (FollowUpId::new_v4(), FollowUpId::new_v4());
    let plan = |_: &_| vec![create_and_complete_missing(made, missing, false)];

    // When it runs
    let batch = executor
        .execute_units(vec![made, missing], plan)
        .await
        .unwrap();

    // Then the creation is stored, and nothing of the refused change
    assert_eq!(batch.units, vec![UnitOutcome::Applied]);
    assert!(executor.load(made).await.unwrap().is_some());
    assert!(executor.load(missing).await.unwrap().is_none());
    assert_eq!(event_count(&pool).await, 1);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn an_all_or_nothing_unit_with_a_refused_change_stores_nothing(pool: PgPool) {
    // Given a unit whose second change is refused, that must be stored whole or not at all
    let executor = executor(pool.clone());
    let (made, missing) = (FollowUpId::new_v4(), FollowUpId::new_v4());
    let plan = |_: &_| vec![create_and_complete_missing(made, missing, true)];

    // When it runs
    let batch = executor
        .execute_units(vec![made, missing], plan)
        .await
        .unwrap();

    // Then it is refused whole
    assert_eq!(batch.units, vec![UnitOutcome::Refused]);
    assert_eq!(event_count(&pool).await, 0);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn two_executors_racing_on_the_same_follow_ups_store_each_change_once(pool: PgPool) {
    // Given 40 open tasks
    let executor_a = executor(pool.clone());
    let executor_b = FollowUps::new(EventStore::new(pool.clone()).with_upcaster(upcaster()));
    let ids: Vec<FollowUpId> = (0..40).map(|_| FollowUpId::new_v4()).collect();
    let created = executor_a
        .execute_units(ids.clone(), |_| {
            ids.iter()
                .map(|id| {
                    unit(
                        vec![Change::commands(*id, vec![new_task(*id)])],
                        "setup",
                        true,
                    )
                })
                .collect()
        })
        .await
        .unwrap();
    assert_eq!(created.units, vec![UnitOutcome::Applied; 40]);

    // When two executors complete them at once, as two workers handling the same message
    let complete = |states: &std::collections::HashMap<FollowUpId, Option<FollowUp>>| {
        let mut ids: Vec<FollowUpId> = states.keys().copied().collect();
        ids.sort();
        ids.into_iter()
            .map(|id| {
                unit(
                    vec![Change::choose(id, |state: &Option<FollowUp>| match state {
                        Some(f) if f.is_open() => vec![Command::Complete],
                        _ => vec![],
                    })],
                    "complete-all",
                    true,
                )
            })
            .collect()
    };
    let (a, b) = tokio::join!(
        executor_a.execute_units(ids.clone(), complete),
        executor_b.execute_units(ids.clone(), complete)
    );
    let (a, b) = (a.unwrap(), b.unwrap());

    // Then each task was completed exactly once, and neither gave up
    assert!(a.contended.is_empty() && b.contended.is_empty());
    let applied = |o: &[UnitOutcome]| o.iter().filter(|o| **o == UnitOutcome::Applied).count();
    assert_eq!(a.written.len() + b.written.len(), 40);
    assert_eq!(applied(&a.units) + applied(&b.units), 40);
    for id in &ids {
        let state = executor_a.load(*id).await.unwrap().unwrap();
        assert_eq!(state.status, Status::Completed);
        assert_eq!(state.version, 2);
    }
    assert_eq!(event_count(&pool).await, 80);
}
