//! `followupctl bench ingest`: the rule worker's ingest rate and latency, end to end through
//! a private nats-server and a scratch database (nothing of a running system is touched).

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use chrono::{DateTime, Utc};
use followup_messaging::{ensure_streams, JetStream, Streams};
use followup_rule_worker::{RuleWorker, WorkerConfig};
use followup_rules::RuleSet;
use followup_store::followups::upcaster;
use followup_store::{EventStore, FollowUps};
use followup_testkit::NatsServer;
use hdrhistogram::Histogram;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::simulate::{admission_day, publish_all, DayArgs, Outbound};

/// What to measure.
#[derive(Debug)]
pub struct Plan {
    /// Outcomes published at once for the throughput figure.
    pub outcomes: usize,
    /// Share raising an exception.
    pub defects: f64,
    /// Offered load for the latency figure (outcomes/s).
    pub rate: usize,
    /// Duration of the steady load.
    pub seconds: u64,
    /// The worker's batch size.
    pub batch: usize,
}

pub async fn run(plan: &Plan, pool: PgPool) -> anyhow::Result<()> {
    let nats = NatsServer::start();
    let js = async_nats::jetstream::new(nats.client().await);
    ensure_streams(&js, &Streams::default()).await?;
    let followups = FollowUps::new(EventStore::new(pool.clone()).with_upcaster(upcaster()));
    let worker = RuleWorker::new(
        js.clone(),
        followups,
        RuleSet::builtin(),
        WorkerConfig {
            batch_size: plan.batch,
            ..WorkerConfig::default()
        },
    )
    .await?;
    println!(
        "bench ingest: rule worker in this process, private nats-server, PostgreSQL beside it"
    );

    // Throughput, twice: a backlog drained by the worker alone (the worker's own rate), then
    // publishing and processing at the same time (both compete for this machine's cores).
    let backlog = simulated(plan.outcomes, plan.defects, 1);
    let mut expected = backlog.iter().filter(|m| m.raises).count() as i64;
    publish_all(&js, &backlog).await?;
    let shutdown = CancellationToken::new();
    let started = Instant::now();
    let running = tokio::spawn(worker.run(shutdown.clone()));
    wait_until_handled(&js, &pool, expected).await?;
    report_rate(
        "backlog drained",
        plan.outcomes,
        expected,
        started.elapsed(),
        None,
    );

    let burst = simulated(plan.outcomes, plan.defects, 2);
    let raised = burst.iter().filter(|m| m.raises).count() as i64;
    expected += raised;
    let started = Instant::now();
    publish_all(&js, &burst).await?;
    let published = started.elapsed();
    wait_until_handled(&js, &pool, expected).await?;
    report_rate(
        "published and processed at once",
        plan.outcomes,
        raised,
        started.elapsed(),
        Some(published),
    );

    // Latency at a steady offered load.
    let total = plan.rate * plan.seconds as usize;
    let steady = simulated(total, plan.defects, 3);
    let expected = expected + steady.iter().filter(|m| m.raises).count() as i64;
    let mut sent_at: HashMap<String, SystemTime> = HashMap::with_capacity(total);
    let tick = Duration::from_millis(10);
    let per_tick = (plan.rate / 100).max(1);
    let mut next = tokio::time::Instant::now();
    for chunk in steady.chunks(per_tick) {
        tokio::time::sleep_until(next).await;
        next += tick;
        let now = SystemTime::now();
        for m in chunk {
            sent_at.insert(m.id.clone(), now);
        }
        publish_all(&js, chunk).await?;
    }
    wait_until_handled(&js, &pool, expected).await?;
    let rows: Vec<(String, DateTime<Utc>)> =
        sqlx::query_as("SELECT causation_id, recorded_at FROM events WHERE causation_id = ANY($1)")
            .bind(
                steady
                    .iter()
                    .filter(|m| m.raises)
                    .map(|m| m.id.clone())
                    .collect::<Vec<_>>(),
            )
            .fetch_all(&pool)
            .await?;
    let mut histogram = Histogram::<u64>::new(3)?;
    for (id, at) in &rows {
        let sent: DateTime<Utc> = sent_at[id].into();
        histogram.record((*at - sent).num_microseconds().unwrap_or(0).max(0) as u64)?;
    }
    let ms = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "latency at {} outcomes/s for {} s ({} exceptions measured, publish to appended): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (target: p99 at most 50 ms)",
        plan.rate,
        plan.seconds,
        rows.len(),
        ms(0.5),
        ms(0.99),
        histogram.max() as f64 / 1000.0
    );

    shutdown.cancel();
    running.await?;
    drop(js);
    drop(nats);
    Ok(())
}

fn report_rate(
    what: &str,
    outcomes: usize,
    exceptions: i64,
    elapsed: Duration,
    published: Option<Duration>,
) {
    let publishing = published.map_or(String::new(), |p| format!(", publishing took {p:.2?}"));
    println!(
        "throughput, {what}: {outcomes} outcomes ({exceptions} exceptions) in {elapsed:.2?}{publishing}: {:.0} outcomes/s (target: at least 20,000)",
        outcomes as f64 / elapsed.as_secs_f64()
    );
}

fn simulated(transfers: usize, defects: f64, seed: u64) -> Vec<Outbound> {
    let args = DayArgs {
        transfers,
        defects,
        failures: 0.0,
        fixed_later: 0.0,
        institutions: "KP,UCL,VIA,UCN,UCSYD,PHA".into(),
        seed,
        spread_days: 0,
        guest_requests: 0,
        date_changes: 0,
    };
    admission_day(&args, Utc::now()).messages
}

/// Waits until `expected` events are stored and the worker has nothing pending.
async fn wait_until_handled(js: &JetStream, pool: &PgPool, expected: i64) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
            .fetch_one(pool)
            .await?;
        if stored >= expected {
            let mut consumer: async_nats::jetstream::consumer::PullConsumer = js
                .get_stream("ESAS_JOBS")
                .await?
                .get_consumer("rule-worker")
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let info = consumer.info().await?;
            if info.num_pending == 0 && info.num_ack_pending == 0 {
                return Ok(());
            }
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the worker did not finish within 10 minutes ({stored} of {expected} events)"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
