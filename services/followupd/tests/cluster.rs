//! Scale-out on a NATS cluster, with the deployment's own accounts and permissions
//! (`deploy/nats/accounts.conf`): two `followupd` processes run every worker role against a
//! three-node JetStream cluster (streams with three replicas) while an admission day is
//! published; one NATS node and one `followupd` are killed (SIGKILL) and restarted, and the
//! database connection is cut for a while. Afterwards every expected follow-up exists exactly
//! once.

mod common;

use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::pull::Config as ConsumerConfig;
use async_nats::HeaderMap;
use bytes::Bytes;
use followup_messaging::{ensure_streams, publish_event, Streams};
use followup_store::MIGRATOR;
use followup_testkit::{NatsCluster, NatsOptions, NatsServer};
use sqlx::PgPool;

use common::{database_proxy, database_url, environment, job_outcome, Followupd};

const ACCOUNTS: &str = include_str!("../../../deploy/nats/accounts.conf");
const SERVICE_PASSWORD: &str = "service-secret";
const PUBLISHER_PASSWORD: &str = "publisher-secret";

/// The deployment's accounts, with test passwords in the servers' environment.
fn deployment_accounts() -> NatsOptions {
    NatsOptions {
        config: "include accounts.conf\n".into(),
        files: vec![("accounts.conf".into(), ACCOUNTS.into())],
        env: [
            ("NATS_SYS_PASSWORD", "sys-secret"),
            ("NATS_PUBLISHER_PASSWORD", PUBLISHER_PASSWORD),
            ("NATS_SERVICE_PASSWORD", SERVICE_PASSWORD),
            ("NATS_OPS_PASSWORD", "ops-secret"),
            ("NATS_READER_PASSWORD", "reader-secret"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect(),
    }
}

/// Connects as the service does (credentials from the URL).
async fn connect(url: &str) -> Result<async_nats::Client, followup_messaging::ConnectError> {
    followup_messaging::connect(url, Duration::from_secs(10), &Default::default()).await
}

/// One applicant transfer that completed with defects: one exception each.
fn transfer(i: usize) -> (String, Bytes) {
    let id = format!("cluster-test-{i}");
    let payload = job_outcome(
        "applicant_transfer.completed_with_defects",
        &format!("APP-C-{i}"),
        &id,
        "2026-07-28T09:14:03Z",
    );
    (id, payload)
}

/// (exceptions created, distinct follow-ups created) in the event store.
async fn created(pool: &PgPool) -> (i64, i64) {
    sqlx::query_as(
        "SELECT count(*), count(DISTINCT stream_id) FROM events \
         WHERE stream_type = 'followup' AND event_type = 'created'",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_cluster_loses_nothing_and_doubles_nothing_when_a_node_a_worker_and_the_database_fail(
    pool: PgPool,
) {
    const MESSAGES: usize = 3000;
    let mut cluster = NatsCluster::start(3, &deployment_accounts()).await;
    let service_urls = cluster.urls_as("followupd", SERVICE_PASSWORD);
    let streams = Streams {
        replicas: 3,
        ..Streams::default()
    };
    let service = connect(&service_urls).await.unwrap();
    let js = async_nats::jetstream::new(service);
    let deadline = Instant::now() + Duration::from_secs(60);
    while let Err(error) = ensure_streams(&js, &streams).await {
        assert!(
            Instant::now() < deadline,
            "streams not created in 60 s: {error}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let database = database_proxy(&pool).await;
    let env = environment(&[
        ("DATABASE_URL", database_url(&pool, database.port())),
        ("NATS_URL", service_urls.clone()),
        ("FOLLOWUP_STREAM_REPLICAS", "3".to_owned()),
    ]);
    let roles = ["rule-worker", "notifier", "projector", "relay"];
    let mut first = Followupd::start(&roles, &env);
    let _second = Followupd::start(&roles, &env);

    let publisher = connect(&cluster.urls_as("esas-publisher", PUBLISHER_PASSWORD))
        .await
        .unwrap();
    let publisher = async_nats::jetstream::new(publisher);
    // Published over about ten seconds. A NATS node and one followupd die (SIGKILL) after
    // 600 messages and come back five seconds later; then the database is unreachable for
    // three seconds.
    let started = Instant::now();
    let mut retries = 0;
    let mut restart_at = None;
    let mut restore_at = None;
    for i in 0..MESSAGES {
        if i == 600 {
            cluster.node(0).kill();
            first.kill();
            restart_at = Some(Instant::now() + Duration::from_secs(5));
        }
        if restart_at.is_some_and(|at| Instant::now() >= at) {
            cluster.node(0).restart();
            first.restart();
            restart_at = None;
            database.cut();
            restore_at = Some(Instant::now() + Duration::from_secs(3));
        }
        if restore_at.is_some_and(|at| Instant::now() >= at) {
            database.restore();
            restore_at = None;
        }
        let (id, payload) = transfer(i);
        // Upstream publishes at least once: a publish that is not acknowledged (a node
        // is down, a leader is being elected) is sent again with the same id.
        while let Err(error) = publish_event(
            &publisher,
            "esas.jobs.applicant_transfer.completed_with_defects".into(),
            &id,
            HeaderMap::new(),
            payload.clone(),
        )
        .await
        {
            retries += 1;
            assert!(retries < 2000, "publishing keeps failing: {error}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if i % 10 == 0 {
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    }
    let published = started.elapsed();
    assert!(
        restart_at.is_none(),
        "the node and the worker came back during publishing"
    );
    if let Some(at) = restore_at {
        tokio::time::sleep(at.saturating_duration_since(Instant::now())).await;
        database.restore();
    }

    let faults_over = Instant::now();
    let deadline = faults_over + Duration::from_secs(120);
    let (mut events, mut followups) = created(&pool).await;
    while followups < MESSAGES as i64 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        (events, followups) = created(&pool).await;
    }
    let recovered = faults_over.elapsed();

    // Every exception went out on the outbound stream too, once.
    let outbound = js.get_stream("FOLLOWUPS").await.unwrap();
    let mut relayed = 0;
    while Instant::now() < deadline {
        let counter = outbound
            .create_consumer(ConsumerConfig {
                filter_subject: "followups.events.KP.exception.created".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        relayed = counter.cached_info().num_pending;
        if relayed >= MESSAGES as u64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    println!(
        "cluster fault test: {MESSAGES} messages published in {:.1}s ({retries} publish retries); \
         {followups} follow-ups, {} duplicates, {} lost; {relayed} relayed; all done {:.1}s after \
         the last fault",
        published.as_secs_f64(),
        events - followups,
        MESSAGES as i64 - followups,
        recovered.as_secs_f64()
    );
    assert_eq!(
        followups, MESSAGES as i64,
        "every expected follow-up exists"
    );
    assert_eq!(events, followups, "none was created twice");
    assert_eq!(relayed, MESSAGES as u64, "each went out once");
}

#[tokio::test]
async fn publishers_may_publish_only_what_the_deployment_allows_them() {
    let server = NatsServer::start_with(deployment_accounts());
    let port = server.url().rsplit(':').next().unwrap().to_owned();
    let as_user = |user: &str, password: &str| format!("nats://{user}:{password}@127.0.0.1:{port}");
    let service = connect(&as_user("followupd", SERVICE_PASSWORD))
        .await
        .unwrap();
    ensure_streams(&async_nats::jetstream::new(service), &Streams::default())
        .await
        .unwrap();
    let upstream = async_nats::jetstream::new(
        connect(&as_user("esas-publisher", PUBLISHER_PASSWORD))
            .await
            .unwrap(),
    );

    let inbound = upstream
        .publish("esas.jobs.applicant_transfer.failed", Bytes::from("{}"))
        .await
        .unwrap()
        .await;
    assert!(inbound.is_ok(), "upstream publishes its job outcomes");
    let forged = upstream
        .publish("followups.events.KP.exception.created", Bytes::from("{}"))
        .await
        .unwrap()
        .await;
    assert!(forged.is_err(), "upstream may not publish on followups.>");

    let wrong_password = async_nats::ConnectOptions::new()
        .user_and_password("followupd".into(), "guess".into())
        .connect(format!("127.0.0.1:{port}"))
        .await;
    assert!(wrong_password.is_err(), "a wrong password is refused");
}
