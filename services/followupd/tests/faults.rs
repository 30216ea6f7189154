//! Rule workers killed while they hold messages, with the real `followupd` binary: two
//! processes share the rule worker's consumer while an admission day of failures, each
//! followed a minute later (in CloudEvent `time`) by the success that resolves it, is
//! published; one of them is killed (SIGKILL) again and again and started again at once. What
//! it held comes back 30 s later (the consumer's ack wait), after the successes were handled
//! by the other. The exact end state is known: one open exception per failure that no success
//! followed, nothing else open, nothing created twice, no message lost or dead-lettered.

mod common;

use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::pull::Config as ConsumerConfig;
use async_nats::HeaderMap;
use followup_messaging::{ensure_streams, publish_event, Streams};
use followup_readmodel::{Projection, ReadModel};
use followup_store::followups::upcaster;
use followup_store::{EventStore, MIGRATOR};
use followup_testkit::NatsServer;
use sqlx::PgPool;

use common::{direct_database_url, environment, job_outcome, Followupd};

/// Applications in the day; every fifth gets no success and stays open.
const APPLICATIONS: usize = 1000;
/// How often the worker is killed during publishing.
const KILLS: usize = 10;

/// Whether application `i` gets a success after its failure.
fn succeeds(i: usize) -> bool {
    !i.is_multiple_of(5)
}

/// Messages the rule worker's consumer on `ESAS_JOBS` has delivered but not had acknowledged,
/// has not delivered yet, and how many deliveries were redeliveries.
async fn consumer_state(js: &async_nats::jetstream::Context) -> (usize, u64, u64) {
    let mut consumer = js
        .get_stream("ESAS_JOBS")
        .await
        .unwrap()
        .get_consumer::<ConsumerConfig>("rule-worker")
        .await
        .unwrap();
    let info = consumer.info().await.unwrap();
    // Every message was delivered at least once: deliveries beyond the stream's messages are
    // redeliveries.
    let redelivered = info
        .delivered
        .consumer_sequence
        .saturating_sub(info.delivered.stream_sequence);
    (info.num_ack_pending, info.num_pending, redelivered)
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn rule_workers_killed_while_they_hold_messages_leave_exactly_the_unresolved_failures_open(
    pool: PgPool,
) {
    let nats = NatsServer::start();
    let js = async_nats::jetstream::new(nats.client().await);
    ensure_streams(&js, &Streams::default()).await.unwrap();
    let env = environment(&[
        ("DATABASE_URL", direct_database_url(&pool)),
        ("NATS_URL", nats.url()),
    ]);
    let mut victim = Followupd::start(&["rule-worker"], &env);
    let _survivor = Followupd::start(&["rule-worker"], &env);

    // Failure i at 09:00 + i s, its success a minute later, published right after it.
    let started = Instant::now();
    let mut published = 0;
    let kill_every = APPLICATIONS / (KILLS + 1);
    let mut kills = 0;
    for i in 0..APPLICATIONS {
        if i > 0 && i % kill_every == 0 && kills < KILLS {
            victim.restart(); // SIGKILL, then at once a new process
            kills += 1;
        }
        let application = format!("APP-F-{i}");
        let at = |offset: usize| {
            let t = i + offset; // seconds after 09:00
            format!(
                "2026-07-28T{:02}:{:02}:{:02}Z",
                9 + t / 3600,
                t / 60 % 60,
                t % 60
            )
        };
        let mut outcomes = vec![(
            "applicant_transfer.completed_with_defects",
            format!("failure-{i}"),
            at(0),
        )];
        if succeeds(i) {
            outcomes.push((
                "applicant_transfer.succeeded",
                format!("success-{i}"),
                at(60),
            ));
        }
        for (name, id, time) in outcomes {
            publish_event(
                &js,
                format!("esas.jobs.{name}"),
                &id,
                HeaderMap::new(),
                job_outcome(name, &application, &id, &time),
            )
            .await
            .unwrap();
            published += 1;
        }
        if i % 20 == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let publishing = started.elapsed();

    // Done when every message is acknowledged: what the killed processes held comes back
    // after the ack wait (30 s).
    let deadline = Instant::now() + Duration::from_secs(150);
    let (mut ack_pending, mut pending, mut redelivered) = consumer_state(&js).await;
    while ack_pending + pending as usize > 0 {
        assert!(
            Instant::now() < deadline,
            "{ack_pending} unacknowledged and {pending} undelivered messages after 150 s"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
        (ack_pending, pending, redelivered) = consumer_state(&js).await;
    }
    let drained = started.elapsed();

    let store = EventStore::new(pool.clone()).with_upcaster(upcaster());
    assert!(store
        .wait_until_readable(Duration::from_secs(10))
        .await
        .unwrap());
    let projection = Projection::new(store, ReadModel::new(pool.clone()));
    while projection.process_pending().await.unwrap() > 0 {}

    let (created, followups): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(DISTINCT stream_id) FROM events \
         WHERE stream_type = 'followup' AND event_type = 'created'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let open: Vec<String> = sqlx::query_scalar(
        "SELECT regarding FROM followups_view WHERE status = 'open' ORDER BY regarding",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let mut expected_open: Vec<String> = (0..APPLICATIONS)
        .filter(|&i| !succeeds(i))
        .map(|i| format!("application:APP-F-{i}"))
        .collect();
    expected_open.sort();
    let dead_letters = js
        .get_stream("FOLLOWUPS_DLQ")
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .state
        .messages;
    println!(
        "rule worker fault test: {published} messages ({APPLICATIONS} failures, {} successes) \
         published in {:.1} s, {kills} SIGKILLs of one of two rule workers; {redelivered} \
         messages redelivered; drained {:.1} s after the start; {followups} exceptions created \
         ({} twice), {} open (expected {}), {dead_letters} dead letters",
        published - APPLICATIONS,
        publishing.as_secs_f64(),
        drained.as_secs_f64(),
        created - followups,
        open.len(),
        expected_open.len(),
    );
    assert_eq!(kills, KILLS);
    assert!(redelivered > 0, "the killed workers held messages");
    assert_eq!(created, followups, "no exception was created twice");
    let unexpected: Vec<&String> = open.iter().filter(|o| !expected_open.contains(o)).collect();
    let missing: Vec<&String> = expected_open.iter().filter(|o| !open.contains(o)).collect();
    assert!(
        unexpected.is_empty() && missing.is_empty(),
        "exactly the failures no success followed are open: also open {unexpected:?}, not open {missing:?}"
    );
    assert_eq!(dead_letters, 0, "nothing was dead-lettered");
}
