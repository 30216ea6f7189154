//! `followupctl replay` against the real NATS (a private server per test) and PostgreSQL:
//! over an intact event store a replay changes nothing; into an empty one it creates the same
//! follow-ups, range by range.

mod common;

use std::collections::BTreeSet;

use common::*;
use followup_messaging::{ensure_streams, JetStream, Streams};
use followup_readmodel::ReadModel;
use followup_rule_worker::{RuleWorker, WorkerConfig};
use followup_rules::RuleSet;
use followup_testkit::NatsServer;
use followupctl::bench::ScratchDatabase;
use followupctl::replay::{self, Inbound, ReplayArgs, ReplayReport, Through};
use followupctl::simulate::{admission_day, publish_all, DayArgs};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

async fn nats() -> (NatsServer, JetStream) {
    let server = NatsServer::start();
    let js = async_nats::jetstream::new(server.client().await);
    ensure_streams(&js, &Streams::default()).await.unwrap();
    (server, js)
}

/// Publishes a simulated admission day (failures, defects, later fixes) on ESAS_JOBS.
async fn publish_day(js: &JetStream) -> usize {
    let day = admission_day(
        &DayArgs {
            transfers: 60,
            defects: 0.4,
            failures: 0.1,
            fixed_later: 0.5,
            institutions: "KP,UCL".into(),
            seed: 7,
            spread_days: 0,
            guest_requests: 0,
            date_changes: 0,
        },
        chrono::Utc::now(),
    );
    publish_all(js, &day.messages).await.unwrap();
    day.messages.len()
}

/// What the live rule worker makes of everything published.
async fn work_off(js: &JetStream, pool: &PgPool) {
    let worker = RuleWorker::new(
        js.clone(),
        repo(pool),
        RuleSet::builtin(),
        WorkerConfig::default(),
    )
    .await
    .unwrap();
    while worker.process_pending().await.unwrap().total() > 0 {}
}

/// Every event's identity and place: derived ids make these equal across replays.
async fn events(pool: &PgPool) -> BTreeSet<(String, i64, String, uuid::Uuid)> {
    sqlx::query_as::<_, (String, i64, String, uuid::Uuid)>(
        "SELECT stream_id, version, event_type, event_id FROM events",
    )
    .fetch_all(pool)
    .await
    .unwrap()
    .into_iter()
    .collect()
}

fn everything(stream: Inbound) -> ReplayArgs {
    ReplayArgs {
        stream,
        through: Through::RuleWorker,
        from_seq: None,
        to_seq: None,
        since: None,
        until: None,
        batch: 25,
        rules: None,
    }
}

async fn replay(js: &JetStream, pool: &PgPool, args: &ReplayArgs) -> ReplayReport {
    replay::run(
        args,
        js,
        &Streams::default(),
        repo(pool),
        ReadModel::new(pool.clone()),
    )
    .await
    .unwrap()
}

#[sqlx::test(migrator = "followup_store::MIGRATOR")]
async fn replaying_everything_over_an_intact_store_changes_nothing(pool: PgPool) {
    let (_server, js) = nats().await;
    let published = publish_day(&js).await;
    work_off(&js, &pool).await;
    let before = events(&pool).await;
    assert!(!before.is_empty());

    let report = replay(&js, &pool, &everything(Inbound::Jobs)).await;
    assert_eq!(report.messages, published);
    assert_eq!(report.events_appended, 0, "{report:?}");
    assert_eq!(report.dead_lettered + report.retried, 0, "{report:?}");
    assert_eq!(events(&pool).await, before);

    // The replay leaves no consumer of its own behind; the service's are untouched.
    let stream = js.get_stream("ESAS_JOBS").await.unwrap();
    let names: Vec<String> = futures::StreamExt::collect::<Vec<_>>(stream.consumer_names())
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(names, ["rule-worker"]);
}

#[sqlx::test(migrator = "followup_store::MIGRATOR")]
async fn replaying_into_an_empty_event_store_gives_the_same_follow_ups_range_by_range(
    pool: PgPool,
) {
    let (_server, js) = nats().await;
    let published = publish_day(&js).await as u64;
    work_off(&js, &pool).await;
    let original = events(&pool).await;

    let empty = ScratchDatabase::create(&database_url(&pool), 4, &CancellationToken::new())
        .await
        .unwrap();
    let half = published / 2;
    let first = replay(
        &js,
        &empty.pool,
        &ReplayArgs {
            to_seq: Some(half),
            ..everything(Inbound::Jobs)
        },
    )
    .await;
    assert_eq!(first.messages as u64, half);
    assert_eq!(
        (first.first_sequence, first.last_sequence),
        (Some(1), Some(half))
    );
    assert!(first.events_appended > 0);
    let partial = events(&empty.pool).await;
    assert!(partial.len() < original.len() && partial.is_subset(&original));

    let rest = replay(
        &js,
        &empty.pool,
        &ReplayArgs {
            from_seq: Some(half + 1),
            ..everything(Inbound::Jobs)
        },
    )
    .await;
    assert_eq!(rest.messages as u64, published - half);
    assert_eq!(events(&empty.pool).await, original);
    assert_eq!(
        (first.events_appended + rest.events_appended) as usize,
        original.len()
    );

    // The same follow-ups, folded from those events.
    project(&pool).await;
    project(&empty.pool).await;
    let subjects = |pool: PgPool| async move {
        sqlx::query_as::<_, (uuid::Uuid, String, String, i64)>(
            "SELECT id, subject, status, version FROM followups_view ORDER BY id",
        )
        .fetch_all(&pool)
        .await
        .unwrap()
    };
    assert_eq!(
        subjects(empty.pool.clone()).await,
        subjects(pool.clone()).await
    );
    empty.drop().await.unwrap();
}

#[sqlx::test(migrator = "followup_store::MIGRATOR")]
async fn the_notifier_is_refused_for_job_outcomes(pool: PgPool) {
    let (_server, js) = nats().await;
    let error = replay::run(
        &ReplayArgs {
            through: Through::Notifier,
            ..everything(Inbound::Jobs)
        },
        &js,
        &Streams::default(),
        repo(&pool),
        ReadModel::new(pool.clone()),
    )
    .await
    .unwrap_err();
    assert!(error
        .to_string()
        .contains("the notifier consumes ESAS_EVENTS only"));
}
