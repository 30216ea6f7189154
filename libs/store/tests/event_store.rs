//! The event store's guarantees, against the real PostgreSQL (a fresh database per test).

use std::time::Duration;

use followup_store::{
    AppendError, Checkpoint, EventStore, ExpectedVersion, Metadata, NewEvent, StreamAppend, Tail,
    MIGRATOR,
};
use serde_json::json;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

fn event(n: u32) -> NewEvent {
    NewEvent {
        event_id: Uuid::new_v4(),
        event_type: "noted".into(),
        schema_version: 1,
        payload: json!({ "n": n }),
        metadata: Metadata {
            actor: json!({ "type": "user", "id": "u1" }),
            correlation_id: Some("corr-1".into()),
            causation_id: None,
            traceparent: None,
        },
    }
}

fn to(stream: &str, expected: ExpectedVersion, events: Vec<NewEvent>) -> StreamAppend {
    StreamAppend {
        stream_id: stream.into(),
        stream_type: "test".into(),
        expected,
        events,
    }
}

async fn count(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(pool)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn events_appended_to_a_new_stream_are_read_back_in_order_with_versions(pool: PgPool) {
    let store = EventStore::new(pool);
    let appended = store
        .append(to(
            "s1",
            ExpectedVersion::NoStream,
            vec![event(1), event(2), event(3)],
        ))
        .await
        .unwrap();
    assert_eq!(appended.last_version(), 3);
    assert!(!appended.already_stored);

    let read = store.read_stream("s1").await.unwrap();
    let versions: Vec<u64> = read.iter().map(|e| e.version).collect();
    let ns: Vec<i64> = read
        .iter()
        .map(|e| e.payload["n"].as_i64().unwrap())
        .collect();
    assert_eq!(versions, [1, 2, 3]);
    assert_eq!(ns, [1, 2, 3]);
    assert_eq!(read[0].metadata.correlation_id.as_deref(), Some("corr-1"));
    assert_eq!(read[0].metadata.actor["id"], "u1");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn an_append_that_expects_a_stale_version_is_a_conflict_and_stores_nothing(pool: PgPool) {
    let store = EventStore::new(pool.clone());
    store
        .append(to(
            "s1",
            ExpectedVersion::NoStream,
            vec![event(1), event(2)],
        ))
        .await
        .unwrap();

    for expected in [
        ExpectedVersion::Exact(1),
        ExpectedVersion::NoStream,
        ExpectedVersion::Exact(5),
    ] {
        let err = store
            .append(to("s1", expected, vec![event(9)]))
            .await
            .unwrap_err();
        match err {
            AppendError::Conflict {
                stream_id, actual, ..
            } => {
                assert_eq!(stream_id, "s1");
                assert_eq!(actual, 2, "expected {expected}");
            }
            other => panic!("expected a conflict for {expected}, got {other}"),
        }
    }
    assert_eq!(count(&pool).await, 2);

    let ok = store
        .append(to("s1", ExpectedVersion::Exact(2), vec![event(3)]))
        .await
        .unwrap();
    assert_eq!(ok.last_version(), 3);
    let any = store
        .append(to("s1", ExpectedVersion::Any, vec![event(4)]))
        .await
        .unwrap();
    assert_eq!(any.last_version(), 4);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn appending_already_stored_event_ids_is_a_no_op_that_reports_where_they_are(pool: PgPool) {
    let store = EventStore::new(pool.clone());
    let events = vec![event(1), event(2)];
    let first = store
        .append(to("s1", ExpectedVersion::NoStream, events.clone()))
        .await
        .unwrap();
    store
        .append(to("s1", ExpectedVersion::Exact(2), vec![event(3)]))
        .await
        .unwrap();

    // The same events again, as a redelivered message would produce them, with any expectation.
    for expected in [
        ExpectedVersion::NoStream,
        ExpectedVersion::Exact(3),
        ExpectedVersion::Any,
    ] {
        let again = store
            .append(to("s1", expected, events.clone()))
            .await
            .unwrap();
        assert!(again.already_stored);
        assert_eq!(again.events, first.events);
    }
    assert_eq!(count(&pool).await, 3);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn reusing_some_event_ids_for_new_events_is_refused(pool: PgPool) {
    let store = EventStore::new(pool.clone());
    let stored = event(1);
    store
        .append(to("s1", ExpectedVersion::NoStream, vec![stored.clone()]))
        .await
        .unwrap();
    let err = store
        .append(to("s1", ExpectedVersion::Exact(1), vec![stored, event(2)]))
        .await
        .unwrap_err();
    assert!(matches!(err, AppendError::PartialDuplicate { .. }), "{err}");
    assert_eq!(count(&pool).await, 1);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_batch_to_many_streams_is_stored_entirely_or_not_at_all(pool: PgPool) {
    let store = EventStore::new(pool.clone());
    store
        .append(to("taken", ExpectedVersion::NoStream, vec![event(0)]))
        .await
        .unwrap();

    let err = store
        .append_batch(vec![
            to("a", ExpectedVersion::NoStream, vec![event(1)]),
            to("taken", ExpectedVersion::NoStream, vec![event(2)]),
            to("b", ExpectedVersion::NoStream, vec![event(3)]),
        ])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, AppendError::Conflict { stream_id, .. } if stream_id == "taken"),
        "{err}"
    );
    assert_eq!(
        count(&pool).await,
        1,
        "nothing of the refused batch is stored"
    );

    let done = store
        .append_batch(vec![
            to("a", ExpectedVersion::NoStream, vec![event(1), event(2)]),
            to("taken", ExpectedVersion::Exact(1), vec![event(3)]),
        ])
        .await
        .unwrap();
    assert_eq!(
        done.iter().map(|a| a.last_version()).collect::<Vec<_>>(),
        [2, 2]
    );
    assert_eq!(count(&pool).await, 4);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_batch_with_one_redelivered_stream_stores_the_rest_and_reports_the_duplicate(
    pool: PgPool,
) {
    let store = EventStore::new(pool.clone());
    let old = event(1);
    store
        .append(to("old", ExpectedVersion::NoStream, vec![old.clone()]))
        .await
        .unwrap();
    let result = store
        .append_batch(vec![
            to("new", ExpectedVersion::NoStream, vec![event(2)]),
            to("old", ExpectedVersion::NoStream, vec![old]),
        ])
        .await
        .unwrap();
    assert!(!result[0].already_stored);
    assert!(result[1].already_stored);
    assert_eq!(count(&pool).await, 2);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn concurrent_appends_at_the_same_version_let_exactly_one_win(pool: PgPool) {
    let store = EventStore::new(pool.clone());
    store
        .append(to("s1", ExpectedVersion::NoStream, vec![event(0)]))
        .await
        .unwrap();
    let attempts: Vec<_> = (0..8)
        .map(|n| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .append(to("s1", ExpectedVersion::Exact(1), vec![event(n)]))
                    .await
            })
        })
        .collect();
    let mut wins = 0;
    for attempt in attempts {
        match attempt.await.unwrap() {
            Ok(_) => wins += 1,
            Err(AppendError::Conflict { .. }) => {}
            Err(other) => panic!("unexpected error: {other}"),
        }
    }
    assert_eq!(wins, 1);
    assert_eq!(store.read_stream("s1").await.unwrap().len(), 2);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn the_database_refuses_to_update_delete_or_truncate_events(pool: PgPool) {
    let store = EventStore::new(pool.clone());
    store
        .append(to("s1", ExpectedVersion::NoStream, vec![event(1)]))
        .await
        .unwrap();

    for sql in [
        "UPDATE events SET payload = '{}'",
        "DELETE FROM events",
        "DELETE FROM events WHERE false",
        "TRUNCATE events",
    ] {
        let err = sqlx::query(sql).execute(&pool).await.unwrap_err();
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
    assert_eq!(count(&pool).await, 1);
    assert_eq!(store.read_stream("s1").await.unwrap()[0].payload["n"], 1);
}

/// Inserts one event inside an open transaction, as a slow writer would.
async fn insert_in(tx: &mut sqlx::PgConnection, stream: &str) -> i64 {
    sqlx::query_scalar(
        "INSERT INTO events (stream_id, stream_type, version, event_id, event_type, schema_version, payload, actor)
         VALUES ($1, 'test', 1, $2, 'noted', 1, '{}', '{}') RETURNING position",
    )
    .bind(stream)
    .bind(Uuid::new_v4())
    .fetch_one(tx)
    .await
    .unwrap()
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_reader_never_skips_an_event_whose_transaction_commits_after_a_later_one(pool: PgPool) {
    let store = EventStore::new(pool.clone());

    // A takes the lower position but commits last; B takes the higher one and commits first.
    let mut slow = pool.begin().await.unwrap();
    let low = insert_in(&mut slow, "slow").await;
    let mut fast = pool.begin().await.unwrap();
    let high = insert_in(&mut fast, "fast").await;
    assert!(low < high);
    fast.commit().await.unwrap();

    // A naive reader (`position > last`) would hand out B now and never see A.
    let naive: Vec<i64> =
        sqlx::query_scalar("SELECT position FROM events WHERE position > 0 ORDER BY position")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(naive, [high]);

    // The store's reader waits for A instead of skipping it.
    let seen_early = store.read_all(Checkpoint::START, 100).await.unwrap();
    assert!(
        seen_early.is_empty(),
        "nothing may be read while a lower position is in flight"
    );

    slow.commit().await.unwrap();
    // (Another test's transaction elsewhere on the server may hold readers back a moment.)
    assert!(store
        .wait_until_readable(Duration::from_secs(10))
        .await
        .unwrap());
    let seen = store.read_all(Checkpoint::START, 100).await.unwrap();
    let positions: Vec<i64> = seen.iter().map(|e| e.position).collect();
    assert_eq!(positions, [low, high], "both, in a deterministic order");

    // Reading on from the last checkpoint finds nothing more, and reading in small steps
    // gives the same order.
    assert!(store
        .read_all(seen[1].checkpoint(), 100)
        .await
        .unwrap()
        .is_empty());
    let first = store.read_all(Checkpoint::START, 1).await.unwrap();
    let second = store.read_all(first[0].checkpoint(), 1).await.unwrap();
    assert_eq!([first[0].position, second[0].position], [low, high]);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_live_tail_wakes_on_new_events_and_resumes_from_its_checkpoint(pool: PgPool) {
    let store = EventStore::new(pool.clone());
    store
        .append(to("s1", ExpectedVersion::NoStream, vec![event(1)]))
        .await
        .unwrap();
    let shutdown = CancellationToken::new();

    // A long poll interval: only the notification can wake the tail in time.
    let mut tail =
        Tail::new(store.clone(), Checkpoint::START).poll_interval(Duration::from_secs(60));
    let first = tail.next_batch(&shutdown).await.unwrap().unwrap();
    assert_eq!(first.len(), 1);

    let waiting = tokio::spawn(async move {
        let batch = tail
            .next_batch(&CancellationToken::new())
            .await
            .unwrap()
            .unwrap();
        (batch, tail.checkpoint())
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    store
        .append(to("s1", ExpectedVersion::Exact(1), vec![event(2)]))
        .await
        .unwrap();
    let (second, checkpoint) = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("the tail wakes on the notification")
        .unwrap();
    assert_eq!(second[0].payload["n"], 2);

    // A new tail from the saved checkpoint sees only what came after it.
    store
        .append(to("s1", ExpectedVersion::Exact(2), vec![event(3)]))
        .await
        .unwrap();
    let mut resumed = Tail::new(store, checkpoint);
    let third = resumed.next_batch(&shutdown).await.unwrap().unwrap();
    assert_eq!(third.iter().map(|e| e.version).collect::<Vec<_>>(), [3]);

    shutdown.cancel();
    assert!(resumed.next_batch(&shutdown).await.unwrap().is_none());
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn text_the_database_cannot_store_is_a_content_error_and_not_worth_retrying(pool: PgPool) {
    use followup_store::event_store::{is_content_database_error, is_transient_database_error};
    let nul = sqlx::query("SELECT $1::text")
        .bind("a\0b")
        .execute(&pool)
        .await
        .unwrap_err();
    assert!(is_content_database_error(&nul), "{nul}");
    assert!(!is_transient_database_error(&nul));
    let out_of_range = sqlx::query("SELECT 2147483648::int8::int4")
        .execute(&pool)
        .await
        .unwrap_err();
    assert!(is_content_database_error(&out_of_range), "{out_of_range}");
    let missing_table = sqlx::query("SELECT * FROM no_such_table")
        .execute(&pool)
        .await
        .unwrap_err();
    assert!(
        !is_content_database_error(&missing_table),
        "not the data's fault"
    );
}
