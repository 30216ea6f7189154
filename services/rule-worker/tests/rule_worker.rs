//! The rule worker against the real NATS (a private server per test) and the real PostgreSQL
//! (a fresh database per test).

use std::time::Duration;

use async_nats::HeaderMap;
use bytes::Bytes;
use followup_domain::{FollowUp, InstitutionId, Kind, Status, StatusReason};
use followup_messaging::{ensure_streams, publish_event, JetStream, Streams};
use followup_rule_worker::{followup_id, Report, RuleWorker, WorkerConfig};
use followup_rules::RuleSet;
use followup_store::followups::upcaster;
use followup_store::{EventStore, FollowUps, MIGRATOR};
use followup_testkit::NatsServer;
use futures::StreamExt;
use serde_json::{json, Value};
use sqlx::PgPool;

const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/contracts/examples");

/// A worker wired to a private NATS server and the test's database.
struct App {
    /// Keeps the NATS server alive for the test.
    nats: NatsServer,
    js: JetStream,
    worker: RuleWorker,
    pool: PgPool,
}

async fn spawn_app(pool: PgPool) -> App {
    spawn_app_with(pool, WorkerConfig::default()).await
}

async fn spawn_app_with(pool: PgPool, config: WorkerConfig) -> App {
    let nats = NatsServer::start();
    let js = async_nats::jetstream::new(nats.client().await);
    ensure_streams(&js, &Streams::default()).await.unwrap();
    let worker = new_worker(&js, &pool, config).await;
    App {
        nats,
        js,
        worker,
        pool,
    }
}

/// An app and a second worker on the same consumer, with these batch sizes.
async fn two_workers(pool: PgPool, batch: usize, other_batch: usize) -> (App, RuleWorker) {
    let sized = |batch_size| WorkerConfig {
        batch_size,
        ..WorkerConfig::default()
    };
    let app = spawn_app_with(pool.clone(), sized(batch)).await;
    let other = new_worker(&app.js, &pool, sized(other_batch)).await;
    (app, other)
}

async fn new_worker(js: &JetStream, pool: &PgPool, config: WorkerConfig) -> RuleWorker {
    let followups = FollowUps::new(EventStore::new(pool.clone()).with_upcaster(upcaster()));
    RuleWorker::new(js.clone(), followups, RuleSet::builtin(), config)
        .await
        .unwrap()
}

fn example(name: &str) -> Value {
    let text = std::fs::read_to_string(format!("{EXAMPLES}/{name}.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn subject_of(event: &Value) -> String {
    let t = event["type"].as_str().unwrap();
    t.replace("dk.esas.job.", "esas.jobs.")
        .replace("dk.esas.event.", "esas.events.")
}

impl App {
    /// Publishes a CloudEvent on its subject with `Nats-Msg-Id` = `msg_id`.
    async fn publish_with_id(&self, event: &Value, msg_id: &str) {
        let payload = Bytes::from(serde_json::to_vec(event).unwrap());
        publish_event(
            &self.js,
            subject_of(event),
            msg_id,
            HeaderMap::new(),
            payload,
        )
        .await
        .unwrap();
    }

    async fn publish(&self, event: &Value) {
        self.publish_with_id(event, event["id"].as_str().unwrap())
            .await;
    }

    async fn publish_raw(&self, subject: &str, payload: Vec<u8>) {
        let id = uuid::Uuid::new_v4().to_string();
        publish_event(
            &self.js,
            subject.into(),
            &id,
            HeaderMap::new(),
            Bytes::from(payload),
        )
        .await
        .unwrap();
    }

    async fn followup(&self, rule: &str, institution: &str, key: &str) -> Option<FollowUp> {
        let id = followup_id(rule, &InstitutionId::parse(institution).unwrap(), key);
        self.worker.followups().load(id).await.unwrap()
    }

    async fn event_count(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM events")
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    async fn dead_letters(&self) -> Vec<async_nats::jetstream::Message> {
        let stream = self.js.get_stream("FOLLOWUPS_DLQ").await.unwrap();
        let consumer = stream
            .create_consumer(async_nats::jetstream::consumer::pull::Config::default())
            .await
            .unwrap();
        let mut batch = consumer.fetch().max_messages(100).messages().await.unwrap();
        let mut out = Vec::new();
        while let Some(m) = batch.next().await {
            out.push(m.unwrap());
        }
        out
    }
}

const DEFECTS: &str = "applicant-transfer-defects";

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_transfer_with_defects_raises_one_exception_naming_the_missing_sues(pool: PgPool) {
    let app = spawn_app(pool).await;
    app.publish(&example("applicant_transfer.completed_with_defects"))
        .await;

    let report = app.worker.process_pending().await.unwrap();
    assert_eq!(report.applied, 1);

    let f = app
        .followup(DEFECTS, "KP", "APP-2026-104711")
        .await
        .expect("an exception");
    assert_eq!(f.kind, Kind::Exception);
    assert_eq!(f.status, Status::Open);
    assert_eq!(f.owner.to_string(), "team:admissions");
    assert_eq!(
        f.regarding.as_ref().unwrap().to_string(),
        "application:APP-2026-104711"
    );
    let description = f.description.as_str();
    assert!(
        description.contains("Anatomi og fysiologi")
            && description.contains("Klinisk undervisning 1"),
        "{description}"
    );
    let published: chrono::DateTime<chrono::Utc> = "2026-07-28T09:14:03Z".parse().unwrap();
    assert_eq!(
        f.due.unwrap(),
        published + chrono::Duration::days(3),
        "due by the rule: three days"
    );
    assert_eq!(f.occurrences, 1);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_failed_transfer_raises_an_exception_with_the_cpr_number_masked(pool: PgPool) {
    let app = spawn_app(pool).await;
    app.publish(&example("applicant_transfer.failed")).await;
    app.worker.process_pending().await.unwrap();

    let f = app
        .followup(DEFECTS, "KP", "APP-2026-104712")
        .await
        .expect("an exception");
    assert!(
        f.description.as_str().contains("010203-xxxx"),
        "{}",
        f.description.as_str()
    );
    let stored = stored_text(&app.pool).await;
    assert!(
        !stored.contains("010203-1234"),
        "the CPR number is never stored in clear"
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_later_successful_transfer_completes_the_open_exception(pool: PgPool) {
    let app = spawn_app(pool).await;
    app.publish(&example("applicant_transfer.completed_with_defects"))
        .await;
    app.worker.process_pending().await.unwrap();
    app.publish(&example("applicant_transfer.succeeded")).await;
    app.worker.process_pending().await.unwrap();

    let f = app
        .followup(DEFECTS, "KP", "APP-2026-104711")
        .await
        .unwrap();
    assert_eq!(f.status, Status::Completed);
    assert_eq!(f.status_reason, StatusReason::ResolvedByJob);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_guest_data_share_request_raises_one_task_at_the_sharing_institution(pool: PgPool) {
    let app = spawn_app(pool).await;
    app.publish(&example("guest_student.data_share_requested"))
        .await;
    app.worker.process_pending().await.unwrap();

    let f = app
        .followup("guest-student-data-share", "UCL", "DSR-2026-0042")
        .await
        .expect("a task");
    assert_eq!(f.kind, Kind::Task);
    assert_eq!(f.institution.as_str(), "UCL");
    assert!(f.subject.as_str().contains("GST-2026-0042") && f.subject.as_str().contains("KP"));
    assert_eq!(app.event_count().await, 1);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn structure_date_changes_are_left_to_the_notifier(pool: PgPool) {
    let app = spawn_app(pool).await;
    app.publish(&example("education_structure.dates_changed"))
        .await;
    app.publish(&example("education_structure.dates_changed.draft"))
        .await;
    let report = app.worker.process_pending().await.unwrap();
    assert_eq!(
        report,
        Report {
            ignored: 2,
            ..Report::default()
        }
    );
    assert_eq!(app.event_count().await, 0);
    assert!(app.dead_letters().await.is_empty());
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_repeat_while_open_counts_an_occurrence_and_a_repeat_after_completion_reopens(
    pool: PgPool,
) {
    let app = spawn_app(pool).await;
    let mut failure = example("applicant_transfer.completed_with_defects");
    app.publish(&failure).await;
    app.worker.process_pending().await.unwrap();

    failure["id"] = json!("second-run-of-the-job");
    app.publish(&failure).await;
    app.worker.process_pending().await.unwrap();
    let f = app
        .followup(DEFECTS, "KP", "APP-2026-104711")
        .await
        .unwrap();
    assert_eq!((f.occurrences, f.status), (2, Status::Open));

    app.publish(&example("applicant_transfer.succeeded")).await;
    app.worker.process_pending().await.unwrap();
    // A later run of the job (after the success) fails again.
    failure["id"] = json!("third-run-of-the-job");
    failure["time"] = json!("2026-07-30T09:00:00Z");
    app.publish(&failure).await;
    app.worker.process_pending().await.unwrap();
    let f = app
        .followup(DEFECTS, "KP", "APP-2026-104711")
        .await
        .unwrap();
    assert_eq!((f.occurrences, f.status), (3, Status::Open));
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn the_same_message_published_twice_changes_the_event_store_once(pool: PgPool) {
    let app = spawn_app(pool).await;
    let event = example("applicant_transfer.completed_with_defects");
    // Once within JetStream's duplicate window (same Nats-Msg-Id), once past it (another
    // Nats-Msg-Id, the same CloudEvent): only the worker's own idempotency can catch that one.
    app.publish(&event).await;
    app.publish(&event).await;
    app.publish_with_id(&event, "republished-after-the-window")
        .await;

    let report = app.worker.process_pending().await.unwrap();
    assert_eq!((report.applied, report.duplicates), (1, 1), "{report:?}");
    assert_eq!(app.event_count().await, 1);
    let f = app
        .followup(DEFECTS, "KP", "APP-2026-104711")
        .await
        .unwrap();
    assert_eq!(f.occurrences, 1);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_worker_that_stops_between_its_append_and_its_ack_changes_nothing_on_redelivery(
    pool: PgPool,
) {
    let config = WorkerConfig {
        ack_wait: Duration::from_secs(1),
        ..WorkerConfig::default()
    };
    let app = spawn_app_with(pool, config.clone()).await;
    app.publish(&example("applicant_transfer.completed_with_defects"))
        .await;

    // A worker fetches the message and appends its effects, then dies before the ack.
    let stream = app.js.get_stream("ESAS_JOBS").await.unwrap();
    let consumer: async_nats::jetstream::consumer::PullConsumer =
        stream.get_consumer("rule-worker").await.unwrap();
    let mut batch = consumer.fetch().max_messages(10).messages().await.unwrap();
    let message = batch.next().await.unwrap().unwrap();
    app.worker.apply_without_settling(vec![message]).await;
    assert_eq!(app.event_count().await, 1);

    // After the ack wait, JetStream delivers it again; the worker finds its work done.
    let mut redelivered = Report::default();
    for _ in 0..50 {
        redelivered = app.worker.process_pending().await.unwrap();
        if redelivered.total() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(redelivered.duplicates, 1, "{redelivered:?}");
    assert_eq!(app.event_count().await, 1);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_message_redelivered_after_a_nak_is_applied_once(pool: PgPool) {
    let app = spawn_app(pool).await;
    app.publish(&example("applicant_transfer.failed")).await;
    let stream = app.js.get_stream("ESAS_JOBS").await.unwrap();
    let consumer: async_nats::jetstream::consumer::PullConsumer =
        stream.get_consumer("rule-worker").await.unwrap();
    let mut batch = consumer.fetch().max_messages(10).messages().await.unwrap();
    let message = batch.next().await.unwrap().unwrap();
    app.worker
        .apply_without_settling(vec![message.clone()])
        .await;
    message
        .ack_with(async_nats::jetstream::AckKind::Nak(None))
        .await
        .unwrap();

    let report = app.worker.process_pending().await.unwrap();
    assert_eq!(report.duplicates, 1);
    assert_eq!(app.event_count().await, 1);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_replay_of_the_whole_stream_creates_nothing_new(pool: PgPool) {
    let app = spawn_app(pool.clone()).await;
    for name in [
        "applicant_transfer.completed_with_defects",
        "applicant_transfer.failed",
        "guest_student.data_share_requested",
        "applicant_transfer.succeeded",
    ] {
        app.publish(&example(name)).await;
    }
    app.worker.process_pending().await.unwrap();
    let before = app.event_count().await;
    assert_eq!(before, 4);

    // A new consumer delivers the whole stream again from the start, as a replay does.
    let replay = WorkerConfig {
        durable_name: "replay".into(),
        ..WorkerConfig::default()
    };
    let replayer = new_worker(&app.js, &pool, replay).await;
    let report = replayer.process_pending().await.unwrap();
    // The failure the success resolved is older than it: outdated, not even looked up.
    assert_eq!((report.duplicates, report.outdated), (3, 1), "{report:?}");
    assert_eq!(app.event_count().await, before);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn two_workers_sharing_the_consumer_create_each_follow_up_exactly_once(pool: PgPool) {
    let (app, second) = two_workers(pool.clone(), 7, 7).await;
    // 60 applications with defects, each failing three times (three runs), then published
    // again wholesale: 60 exceptions with 3 occurrences each, whatever the interleaving.
    let base = example("applicant_transfer.completed_with_defects");
    let mut events = Vec::new();
    for run in 0..3 {
        for n in 0..60 {
            let mut e = base.clone();
            e["id"] = json!(format!("run{run}-app{n}"));
            e["data"]["application_id"] = json!(format!("APP-{n}"));
            events.push(e);
        }
    }
    for e in events.iter().chain(events.iter()) {
        app.publish_with_id(e, &uuid::Uuid::new_v4().to_string())
            .await;
    }
    let (a, b) = (app.worker.clone(), second.clone());
    let drain = |w: RuleWorker| async move {
        let mut total = Report::default();
        loop {
            let r = w.process_pending().await.unwrap();
            if r.total() == 0 {
                return total;
            }
            total.applied += r.applied;
            total.duplicates += r.duplicates;
        }
    };
    let (ra, rb) = tokio::join!(drain(a), drain(b));
    assert_eq!(ra.applied + rb.applied, 180, "{ra:?} {rb:?}");
    assert_eq!(ra.duplicates + rb.duplicates, 180);

    let rows: Vec<(i64,)> = sqlx::query_as("SELECT count(*) FROM events GROUP BY stream_id")
        .fetch_all(&app.pool)
        .await
        .unwrap();
    assert_eq!(rows.len(), 60);
    assert!(
        rows.iter().all(|(n,)| *n == 3),
        "each exception: created + 2 recurrences"
    );
    for n in [0, 59] {
        let f = app
            .followup(DEFECTS, "KP", &format!("APP-{n}"))
            .await
            .unwrap();
        assert_eq!(f.occurrences, 3);
    }
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn bad_input_goes_to_the_dead_letter_stream_with_its_reason_and_the_worker_goes_on(
    pool: PgPool,
) {
    let app = spawn_app(pool).await;
    let good = example("applicant_transfer.completed_with_defects");
    let mut unknown = good.clone();
    unknown["type"] = json!("dk.esas.job.grade_transfer.failed");
    let mut missing = good.clone();
    missing["data"]
        .as_object_mut()
        .unwrap()
        .remove("application_id");
    let mut huge = good.clone();
    huge["data"]["padding"] = json!("x".repeat(1024 * 1024));

    app.publish_raw("esas.jobs.applicant_transfer.failed", b"{not json".to_vec())
        .await;
    app.publish_raw(
        "esas.jobs.applicant_transfer.failed",
        br#"{"hello":"world"}"#.to_vec(),
    )
    .await;
    app.publish_raw(
        "esas.jobs.grade_transfer.failed",
        serde_json::to_vec(&unknown).unwrap(),
    )
    .await;
    app.publish_raw(
        "esas.jobs.applicant_transfer.completed_with_defects",
        serde_json::to_vec(&missing).unwrap(),
    )
    .await;
    app.publish_raw(
        "esas.jobs.applicant_transfer.completed_with_defects",
        serde_json::to_vec(&huge).unwrap(),
    )
    .await;
    app.publish(&good).await;

    let report = app.worker.process_pending().await.unwrap();
    assert_eq!((report.dead_lettered, report.applied), (5, 1), "{report:?}");
    assert!(app
        .followup(DEFECTS, "KP", "APP-2026-104711")
        .await
        .is_some());

    let letters = app.dead_letters().await;
    let codes: Vec<String> = letters
        .iter()
        .map(|m| {
            m.headers
                .as_ref()
                .unwrap()
                .get("Followup-Dlq-Code")
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        codes,
        [
            "invalid_json",
            "not_a_cloudevent",
            "unknown_type",
            "missing_data",
            "too_large"
        ]
    );
    let first = letters[0].headers.as_ref().unwrap();
    assert_eq!(
        first.get("Followup-Dlq-Stream").unwrap().as_str(),
        "ESAS_JOBS"
    );
    assert_eq!(first.get("Followup-Dlq-Sequence").unwrap().as_str(), "1");
    assert_eq!(
        first.get("Followup-Dlq-Subject").unwrap().as_str(),
        "esas.jobs.applicant_transfer.failed"
    );
    assert_eq!(letters[0].payload.as_ref(), b"{not json", "kept unchanged");
    let reason = letters[3]
        .headers
        .as_ref()
        .unwrap()
        .get("Followup-Dlq-Reason")
        .unwrap()
        .to_string();
    assert!(reason.contains("application_id"), "{reason}");

    // Nothing is left behind for redelivery.
    assert_eq!(app.worker.process_pending().await.unwrap().total(), 0);
    drop(app.nats);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn while_the_database_is_unreachable_messages_wait_and_are_applied_when_it_is_back(
    pool_options: sqlx::postgres::PgPoolOptions,
    connect_options: sqlx::postgres::PgConnectOptions,
) {
    let target = format!(
        "{}:{}",
        connect_options.get_host(),
        connect_options.get_port()
    );
    let target = tokio::net::lookup_host(target)
        .await
        .unwrap()
        .next()
        .unwrap();
    let proxy = followup_testkit::TcpProxy::start(target).await;
    let pool = pool_options
        .acquire_timeout(Duration::from_secs(2))
        .connect_with(connect_options.host("127.0.0.1").port(proxy.port()))
        .await
        .unwrap();
    let app = spawn_app(pool).await;

    proxy.cut();
    app.publish(&example("applicant_transfer.completed_with_defects"))
        .await;
    let during = app.worker.process_pending().await.unwrap();
    assert_eq!(during.retried, 1, "{during:?}");

    proxy.restore();
    let mut after = Report::default();
    for _ in 0..100 {
        after = app.worker.process_pending().await.unwrap();
        if after.applied > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        after.applied, 1,
        "the nak'ed message comes back and is applied"
    );
    assert!(app
        .followup(DEFECTS, "KP", "APP-2026-104711")
        .await
        .is_some());
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn the_running_worker_applies_a_success_published_right_after_the_failure_in_order(
    pool: PgPool,
) {
    let app = spawn_app(pool).await;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn(app.worker.clone().run(shutdown.clone()));
    app.publish(&example("applicant_transfer.completed_with_defects"))
        .await;
    app.publish(&example("applicant_transfer.succeeded")).await;

    let mut status = None;
    for _ in 0..100 {
        status = app
            .followup(DEFECTS, "KP", "APP-2026-104711")
            .await
            .map(|f| f.status);
        if status == Some(Status::Completed) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, Some(Status::Completed));
    shutdown.cancel();
    running.await.unwrap();
}

/// The defects example, as published by another run at `time` with CloudEvent id `id`.
fn defects_at(id: &str, time: &str) -> Value {
    let mut event = example("applicant_transfer.completed_with_defects");
    event["id"] = json!(id);
    event["time"] = json!(time);
    event
}

/// The success example, as published by another run at `time` with CloudEvent id `id`.
fn success_at(id: &str, time: &str) -> Value {
    let mut event = example("applicant_transfer.succeeded");
    event["id"] = json!(id);
    event["time"] = json!(time);
    event
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_failure_that_arrives_after_its_newer_success_opens_nothing(pool: PgPool) {
    // A worker died holding the failure: JetStream redelivers it after the success was handled.
    let app = spawn_app(pool).await;
    app.publish(&example("applicant_transfer.succeeded")).await;
    app.worker.process_pending().await.unwrap();
    app.publish(&example("applicant_transfer.completed_with_defects"))
        .await;
    let report = app.worker.process_pending().await.unwrap();

    assert_eq!((report.outdated, report.applied), (1, 0), "{report:?}");
    assert!(app
        .followup(DEFECTS, "KP", "APP-2026-104711")
        .await
        .is_none());
    assert_eq!(app.event_count().await, 0);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_replayed_old_failure_does_not_reopen_what_a_later_run_resolved(pool: PgPool) {
    let app = spawn_app(pool).await;
    app.publish(&defects_at("run-1", "2026-07-28T09:00:00Z"))
        .await;
    app.worker.process_pending().await.unwrap();
    app.publish(&success_at("run-2", "2026-07-29T09:00:00Z"))
        .await;
    app.worker.process_pending().await.unwrap();
    // An old range replayed (its messages under new ids, so nothing de-duplicates them).
    app.publish(&defects_at("run-1-replayed", "2026-07-28T09:00:00Z"))
        .await;
    let report = app.worker.process_pending().await.unwrap();

    assert_eq!(report.outdated, 1, "{report:?}");
    let f = app
        .followup(DEFECTS, "KP", "APP-2026-104711")
        .await
        .unwrap();
    assert_eq!((f.status, f.occurrences), (Status::Completed, 1));
    assert_eq!(f.status_reason, StatusReason::ResolvedByJob);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn an_exception_left_open_by_a_worker_that_died_before_reconciling_is_resolved_when_its_key_comes_again(
    pool: PgPool,
) {
    let app = spawn_app(pool.clone()).await;
    app.publish(&defects_at("run-1", "2026-07-28T09:00:00Z"))
        .await;
    app.worker.process_pending().await.unwrap();
    // Another worker recorded the newer success while this one appended the exception, and
    // this one was killed before it could reconcile: the exception is open against the
    // outcomes.
    sqlx::query("UPDATE rule_outcomes SET newest_success = '2026-07-29T09:00:00Z'")
        .execute(&pool)
        .await
        .unwrap();
    let f = app
        .followup(DEFECTS, "KP", "APP-2026-104711")
        .await
        .unwrap();
    assert_eq!(f.status, Status::Open);
    // The failure comes again (as JetStream redelivers what the killed worker held).
    app.publish(&defects_at("run-1-again", "2026-07-28T09:00:00Z"))
        .await;
    let report = app.worker.process_pending().await.unwrap();

    assert_eq!((report.outdated, report.reconciled), (1, 1), "{report:?}");
    let f = app
        .followup(DEFECTS, "KP", "APP-2026-104711")
        .await
        .unwrap();
    assert_eq!(
        (f.status, f.status_reason),
        (Status::Completed, StatusReason::ResolvedByJob)
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_success_older_than_the_newest_failure_does_not_complete(pool: PgPool) {
    let app = spawn_app(pool).await;
    app.publish(&defects_at("run-1", "2026-07-28T09:00:00Z"))
        .await;
    app.publish(&defects_at("run-3", "2026-07-30T09:00:00Z"))
        .await;
    app.worker.process_pending().await.unwrap();
    // The success of run 2 arrives last.
    app.publish(&success_at("run-2", "2026-07-29T09:00:00Z"))
        .await;
    let report = app.worker.process_pending().await.unwrap();

    assert_eq!(report.outdated, 1, "{report:?}");
    let f = app
        .followup(DEFECTS, "KP", "APP-2026-104711")
        .await
        .unwrap();
    assert_eq!((f.status, f.occurrences), (Status::Open, 2));
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_failure_and_its_later_success_in_one_batch_leave_the_exception_resolved(pool: PgPool) {
    let app = spawn_app(pool).await;
    app.publish(&defects_at("run-1", "2026-07-28T09:00:00Z"))
        .await;
    app.publish(&success_at("run-2", "2026-07-29T09:00:00Z"))
        .await;
    let report = app.worker.process_pending().await.unwrap();

    assert_eq!((report.applied, report.outdated), (2, 0), "{report:?}");
    let f = app
        .followup(DEFECTS, "KP", "APP-2026-104711")
        .await
        .unwrap();
    assert_eq!(f.status_reason, StatusReason::ResolvedByJob);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn two_workers_sharing_the_consumer_end_every_fixed_failure_resolved_whatever_the_order(
    pool: PgPool,
) {
    // Each application fails and is fixed by a later run; the two messages are published in
    // the wrong order for half of them, and two workers share them.
    let (app, other) = two_workers(pool.clone(), 7, 5).await;
    let applications = 120;
    for n in 0..applications {
        let mut failure = defects_at(&format!("f-{n}"), "2026-07-28T09:00:00Z");
        let mut success = success_at(&format!("s-{n}"), "2026-07-29T09:00:00Z");
        for event in [&mut failure, &mut success] {
            event["data"]["application_id"] = json!(format!("APP-{n}"));
        }
        if n % 2 == 0 {
            app.publish(&failure).await;
            app.publish(&success).await;
        } else {
            app.publish(&success).await;
            app.publish(&failure).await;
        }
    }
    let mut handled = 0;
    while handled < 2 * applications {
        let (a, b) = tokio::join!(app.worker.process_pending(), other.process_pending());
        let (a, b) = (a.unwrap(), b.unwrap());
        handled += a.total() - a.retried + b.total() - b.retried;
    }

    let followups: i64 =
        sqlx::query_scalar("SELECT count(*) FROM (SELECT DISTINCT stream_id FROM events) s")
            .fetch_one(&pool)
            .await
            .unwrap();
    for n in 0..applications {
        if let Some(f) = app.followup(DEFECTS, "KP", &format!("APP-{n}")).await {
            assert_ne!(f.status, Status::Open, "APP-{n} stayed open: {f:?}");
        }
    }
    assert!(followups <= applications as i64, "{followups} follow-ups");
}

/// The header `name` of a dead letter.
fn header(letter: &async_nats::jetstream::Message, name: &str) -> String {
    letter
        .headers
        .as_ref()
        .and_then(|h| h.get(name))
        .map(|v| v.to_string())
        .unwrap_or_default()
}

/// Every text the event store keeps of its events, in one string: as stored, and with the
/// sealed personal fields decrypted.
async fn stored_text(pool: &PgPool) -> String {
    let raw: String = sqlx::query_scalar(
        "SELECT coalesce(string_agg(concat_ws(' ', stream_id, payload::text, actor::text, \
         correlation_id, causation_id, traceparent), ' '), '') FROM events",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    let store = EventStore::new(pool.clone()).with_upcaster(upcaster());
    let opened = store
        .read_all(followup_store::Checkpoint::START, 100_000)
        .await
        .unwrap()
        .iter()
        .map(|e| e.payload.to_string())
        .collect::<Vec<_>>()
        .join(" ");
    format!("{raw} {opened}")
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_nul_in_any_text_is_dead_lettered_as_invalid_text_and_nothing_else_waits(pool: PgPool) {
    let app = spawn_app(pool).await;
    let good = example("applicant_transfer.failed");
    let mut in_data = example("applicant_transfer.completed_with_defects");
    in_data["data"]["job_run_id"] = json!("run\u{0}1");
    let mut in_id = example("applicant_transfer.completed_with_defects");
    in_id["id"] = json!("evt\u{0}");
    app.publish_with_id(&in_data, "nul-1").await;
    app.publish_with_id(&in_id, "nul-2").await;
    app.publish(&good).await;

    let report = app.worker.process_pending().await.unwrap();
    assert_eq!(
        (report.dead_lettered, report.applied, report.retried),
        (2, 1, 0),
        "{report:?}"
    );
    let letters = app.dead_letters().await;
    assert_eq!(header(&letters[0], "Followup-Dlq-Code"), "invalid_text");
    assert!(
        header(&letters[0], "Followup-Dlq-Reason").contains("`data.job_run_id`"),
        "the field is named"
    );
    assert_eq!(header(&letters[1], "Followup-Dlq-Code"), "invalid_text");
    assert_eq!(
        app.worker.process_pending().await.unwrap().total(),
        0,
        "nothing comes back"
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn cpr_numbers_in_every_inbound_field_are_masked_before_anything_is_stored(pool: PgPool) {
    let app = spawn_app(pool).await;
    let mut event = example("applicant_transfer.failed");
    event["id"] = json!("evt-010203-1234");
    event["source"] = json!("esas/jobs/0102031234");
    event["subject"] = json!("application/APP-010203 1234");
    event["data"]["job_run_id"] = json!("run-0102031234");
    event["data"]["application_id"] = json!("APP-010203-1234");
    event["data"]["applicant_id"] = json!("010203-1234");
    event["data"]["errors"][0]["code"] = json!("CPR_010203-1234");
    app.publish_with_id(&event, "cpr-everywhere").await;
    let report = app.worker.process_pending().await.unwrap();
    assert_eq!(report.applied, 1, "{report:?}");

    let stored = stored_text(&app.pool).await;
    assert!(
        stored.contains("010203-xxxx"),
        "masked, with the date kept: {stored}"
    );
    assert!(
        followup_domain::find_cpr(&stored).is_none(),
        "no CPR number stored in clear: {stored}"
    );
    let outcomes: String =
        sqlx::query_scalar("SELECT coalesce(string_agg(t::text, ' '), '') FROM rule_outcomes t")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert!(followup_domain::find_cpr(&outcomes).is_none(), "{outcomes}");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_message_for_an_institution_not_served_is_dead_lettered_and_becomes_no_tenant(
    pool: PgPool,
) {
    let app = spawn_app(pool).await;
    for (n, institution) in ["via", "0102031234", "NOPE"].iter().enumerate() {
        let mut event = example("applicant_transfer.failed");
        event["institution"] = json!(institution);
        app.publish_with_id(&event, &format!("elsewhere-{n}")).await;
    }
    let report = app.worker.process_pending().await.unwrap();
    assert_eq!((report.dead_lettered, report.applied), (3, 0), "{report:?}");
    assert_eq!(app.event_count().await, 0);
    let letters = app.dead_letters().await;
    for letter in &letters {
        assert_eq!(header(letter, "Followup-Dlq-Code"), "unknown_institution");
        let reason = header(letter, "Followup-Dlq-Reason");
        assert!(followup_domain::find_cpr(&reason).is_none(), "{reason}");
    }
    assert!(header(&letters[1], "Followup-Dlq-Reason").contains("010203-xxxx"));
}

/// Makes the database refuse every event whose inbound message id (its causation, which is
/// stored readable, unlike the sealed texts) holds `marker`, with SQLSTATE `code`.
async fn refuse_events_holding(pool: &PgPool, marker: &str, code: &str) {
    sqlx::query(&format!(
        "CREATE FUNCTION refuse_marked() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN IF coalesce(NEW.causation_id, '') LIKE '%{marker}%' THEN \
         RAISE EXCEPTION 'refused for the test' USING ERRCODE = '{code}'; END IF; \
         RETURN NEW; END $$"
    ))
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(
        "CREATE TRIGGER refuse_marked BEFORE INSERT ON events FOR EACH ROW \
         EXECUTE FUNCTION refuse_marked()",
    )
    .execute(pool)
    .await
    .unwrap();
}

/// `count` failed transfers of distinct applications, the `marked`-th with `marker` in its id.
async fn publish_failures(app: &App, count: usize, marked: usize, marker: &str) {
    for n in 0..count {
        let mut event = example("applicant_transfer.failed");
        let application = if n == marked {
            format!("APP-{marker}")
        } else {
            format!("APP-{n}")
        };
        let id = if n == marked {
            format!("failure-{marker}")
        } else {
            format!("failure-{n}")
        };
        event["id"] = json!(id);
        event["data"]["application_id"] = json!(application);
        event["subject"] = json!(format!("application/{application}"));
        app.publish(&event).await;
    }
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_message_the_database_refuses_is_dead_lettered_at_once_and_the_rest_of_its_batch_is_stored(
    pool: PgPool,
) {
    let app = spawn_app(pool).await;
    refuse_events_holding(&app.pool, "POISON", "22023").await;
    publish_failures(&app, 20, 7, "POISON").await;

    let report = app.worker.process_pending().await.unwrap();
    assert_eq!(
        (report.applied, report.dead_lettered, report.retried),
        (19, 1, 0),
        "{report:?}"
    );
    let letters = app.dead_letters().await;
    assert_eq!(
        header(&letters[0], "Followup-Dlq-Code"),
        "refused_by_database"
    );
    assert!(header(&letters[0], "Followup-Dlq-Reason").contains("refused for the test"));
    assert_eq!(app.worker.process_pending().await.unwrap().total(), 0);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_message_that_keeps_failing_is_dead_lettered_after_the_allowed_deliveries_and_the_worker_shows_it(
    pool: PgPool,
) {
    let config = WorkerConfig {
        durable_name: "stuck-test".into(),
        max_deliveries: 3,
        ..WorkerConfig::default()
    };
    let app = spawn_app_with(pool, config).await;
    refuse_events_holding(&app.pool, "STUCK", "P0001").await;
    publish_failures(&app, 5, 2, "STUCK").await;

    let first = app.worker.process_pending().await.unwrap();
    assert_eq!(
        (first.applied, first.retried),
        (4, 1),
        "the others go on at once: {first:?}"
    );
    let failing = followup_platform::health::all()
        .into_iter()
        .find(|w| w.worker == "stuck-test/ESAS_JOBS")
        .expect("the worker's health is known");
    assert!(failing.failing_for.is_some(), "{failing:?}");
    assert!(failing.last_error.unwrap().contains("refused for the test"));

    let mut dead_lettered = 0;
    for _ in 0..100 {
        let step = app.worker.process_pending().await.unwrap();
        dead_lettered += step.dead_lettered;
        if dead_lettered > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(dead_lettered, 1);
    let letters = app.dead_letters().await;
    assert_eq!(
        header(&letters[0], "Followup-Dlq-Code"),
        "too_many_deliveries"
    );
    let reason = header(&letters[0], "Followup-Dlq-Reason");
    assert!(reason.contains("failed 3 times"), "{reason}");
    assert!(
        reason.contains("refused for the test"),
        "the last error: {reason}"
    );
}
