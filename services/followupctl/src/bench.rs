//! Benchmarks that print figures. Each runs in a database of its own, created for the run and
//! dropped after it (the event store is append-only, so a benchmark must not share one).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::Utc;
use clap::{Args, Subcommand};
use followup_domain::{
    decide, Actor, Command, Context, Description, FollowUp, FollowUpId, InstitutionId, Kind,
    NewFollowUp, Principal, Priority, Regarding, Source, Subject, TeamId, UserId,
};
use followup_store::followups::upcaster;
use followup_store::{
    CommandMeta, Decided, EventStore, Expect, FollowUpUpcaster, FollowUps, StreamAppend, Upcaster,
};
use serde_json::Value;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// The benchmarks.
#[derive(Debug, Subcommand)]
pub enum BenchCmd {
    /// Event store appends: follow-up commands (one per transaction) and batched appends,
    /// each beside the raw rate of plain INSERTs of the same rows.
    ///
    /// Example: followupctl bench append --followups 20000 --concurrency 8 --batch 500
    Append(AppendArgs),
    /// Ingest: job outcomes published on NATS until their exceptions are in the event store,
    /// through the real rule worker (run in this process against a private nats-server and a
    /// scratch database): sustained outcomes/s, then publish-to-appended latency at a steady
    /// offered load.
    ///
    /// Example: followupctl bench ingest --outcomes 100000 --rate 2000 --seconds 15
    Ingest(IngestArgs),
    /// The read side: 1,000,000 follow-ups appended, the projector's catch-up over them, then
    /// list and dashboard latency over HTTP for a caseworker with about 200 open follow-ups.
    ///
    /// Example: followupctl bench api --followups 1000000 --requests 2000
    Api(crate::bench_api::ApiArgs),
    /// Notification fan-out: one approved structure change with 10,000 matching
    /// subscriptions, through the real notifier (private nats-server, scratch database),
    /// until every notification is in its subscriber's inbox.
    ///
    /// Example: followupctl bench notify --subscriptions 10000 --events 3
    Notify(crate::bench_notify::NotifyArgs),
    /// The scheduler's overdue scan over 1,000,000 open follow-ups (1% overdue): the scan
    /// alone, the same condition without its index, and the full marking pass of the job.
    ///
    /// Example: followupctl bench overdue --followups 1000000 --overdue 10000
    Overdue(crate::bench_overdue::OverdueArgs),
    /// A full rebuild of the projection (followupctl rebuild) over 1,000,000 events of
    /// 250,000 follow-ups: events per second, with the time of each part.
    ///
    /// Example: followupctl bench rebuild --events 1000000
    Rebuild(crate::bench_rebuild::RebuildBenchArgs),
}

/// Settings of `bench ingest`.
#[derive(Debug, Args)]
pub struct IngestArgs {
    /// Job outcomes to publish for the throughput figure.
    #[arg(long, default_value_t = 100_000)]
    outcomes: usize,
    /// Share of them that complete with defects (and so raise an exception).
    #[arg(long, default_value_t = 0.3)]
    defects: f64,
    /// Offered load for the latency figure, in outcomes per second.
    #[arg(long, default_value_t = 2000)]
    rate: usize,
    /// How long the steady load lasts.
    #[arg(long, default_value_t = 15)]
    seconds: u64,
    /// The rule worker's batch size.
    #[arg(long, default_value_t = 500)]
    batch: usize,
}

/// Settings of `bench append`.
#[derive(Debug, Args)]
pub struct AppendArgs {
    /// Follow-ups to create and then complete (two commands each).
    #[arg(long, default_value_t = 20_000)]
    followups: usize,
    /// Concurrent writers.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Events per batched append.
    #[arg(long, default_value_t = 500)]
    batch: usize,
    /// Batched appends to make.
    #[arg(long, default_value_t = 400)]
    batches: usize,
    /// Stores the personal fields unencrypted, to measure what encryption costs.
    #[arg(long)]
    plaintext: bool,
}

/// The follow-up upcaster with the personal-data policy off: payloads are stored as they
/// are, unencrypted. Only for measuring what the encryption costs (`--plaintext`).
#[derive(Debug, Clone, Copy)]
struct Plaintext;

impl Upcaster for Plaintext {
    fn upcast(
        &self,
        stream_type: &str,
        event_type: &str,
        schema_version: i32,
        payload: Value,
    ) -> Result<(i32, Value), String> {
        FollowUpUpcaster.upcast(stream_type, event_type, schema_version, payload)
    }
}

/// The store a benchmark appends with: as the service's, or (`plaintext`) without encryption.
pub fn bench_store(pool: &PgPool, plaintext: bool) -> EventStore {
    let store = EventStore::new(pool.clone());
    if plaintext {
        store.with_upcaster(Arc::new(Plaintext))
    } else {
        store.with_upcaster(upcaster())
    }
}

pub async fn run(
    cmd: BenchCmd,
    database_url: &str,
    _nats_url: Option<&str>,
    json: bool,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    match cmd {
        BenchCmd::Append(args) => {
            let db = ScratchDatabase::create(database_url, args.concurrency as u32 + 2, shutdown)
                .await?;
            let result = append(&args, &db.pool).await;
            db.drop().await?;
            result
        }
        BenchCmd::Api(args) => {
            let db = ScratchDatabase::create(database_url, 10, shutdown).await?;
            let result = crate::bench_api::run(&args, db.pool.clone()).await;
            db.drop().await?;
            result
        }
        BenchCmd::Notify(args) => {
            let db = ScratchDatabase::create(database_url, 10, shutdown).await?;
            let result = crate::bench_notify::run(&args, db.pool.clone()).await;
            db.drop().await?;
            result
        }
        BenchCmd::Overdue(args) => {
            let db = ScratchDatabase::create(database_url, 10, shutdown).await?;
            let result = crate::bench_overdue::run(&args, db.pool.clone()).await;
            db.drop().await?;
            result
        }
        BenchCmd::Rebuild(args) => {
            let db = ScratchDatabase::create(database_url, 10, shutdown).await?;
            let result = crate::bench_rebuild::run(&args, db.pool.clone()).await;
            db.drop().await?;
            crate::output::print(&result?, json)
        }
        BenchCmd::Ingest(args) => {
            let db = ScratchDatabase::create(database_url, 10, shutdown).await?;
            let result = crate::ingest::run(&args.as_plan(), db.pool.clone()).await;
            db.drop().await?;
            result
        }
    }
}

impl IngestArgs {
    fn as_plan(&self) -> crate::ingest::Plan {
        crate::ingest::Plan {
            outcomes: self.outcomes,
            defects: self.defects,
            rate: self.rate,
            seconds: self.seconds,
            batch: self.batch,
        }
    }
}

/// A database of its own for one benchmark run (or a test that needs a second one).
#[derive(Debug)]
pub struct ScratchDatabase {
    /// Connected to the server's `postgres` database, to drop the scratch one after.
    admin: PgPool,
    /// The scratch database's name.
    name: String,
    /// Connected to the scratch database.
    pub pool: PgPool,
}

impl ScratchDatabase {
    /// Creates a database named after this process on the server of `url`, migrated.
    pub async fn create(
        url: &str,
        connections: u32,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<Self> {
        let base = url.rsplit_once('/').map_or(url, |(base, _)| base);
        let admin = followup_platform::database::connect(
            &format!("{base}/postgres"),
            2,
            Duration::from_secs(10),
            shutdown,
        )
        .await?;
        let name = format!(
            "followup_bench_{}_{}",
            std::process::id(),
            Uuid::new_v4().simple()
        );
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&admin)
            .await
            .context("creating the benchmark database")?;
        let pool = PgPoolOptions::new()
            .max_connections(connections)
            .connect(&format!("{base}/{name}"))
            .await?;
        followup_store::MIGRATOR.run(&pool).await?;
        sqlx::query("CREATE TABLE bench_raw_events (LIKE events INCLUDING ALL)")
            .execute(&pool)
            .await?;
        Ok(Self { admin, name, pool })
    }

    /// Drops the database.
    pub async fn drop(self) -> anyhow::Result<()> {
        self.pool.close().await;
        sqlx::query(&format!("DROP DATABASE {} WITH (FORCE)", self.name))
            .execute(&self.admin)
            .await?;
        Ok(())
    }
}

/// A realistic creation: an exception about a failed transfer.
fn new_followup(n: usize) -> NewFollowUp {
    NewFollowUp {
        id: FollowUpId::new_v4(),
        institution: InstitutionId::parse(["KP", "UCL", "VIA", "UCN", "UCSYD"][n % 5]).expect("valid"),
        kind: Kind::Task,
        subject: Subject::parse(&format!("Overførsel af ansøgning APP-2026-{n:06} til studieforløb mangler obligatoriske SUE'er"))
            .expect("valid"),
        description: Description::parse(
            "Manglende obligatoriske SUE'er (ikke oprettet som GUE):\n- Anatomi og fysiologi (SUE-SYG-1001), 1. semester\n- Klinisk undervisning 1 (SUE-SYG-1004), 1. semester\n\nFejl:\n- MANDATORY_SUE_NOT_CREATED_AS_GUE: 2 obligatoriske SUE'er blev ikke oprettet som GUE'er",
        )
        .expect("valid"),
        regarding: Some(Regarding::parse("application", &format!("APP-2026-{n:06}")).expect("valid")),
        person: None,
        owner: Principal::Team(TeamId::parse("admissions").expect("valid")),
        due: Some(Utc::now() + chrono::Duration::days(3)),
        priority: Priority::High,
        source: Source::User { id: UserId::parse("bench").expect("valid") },
    }
}

fn ctx() -> Context {
    Context {
        actor: Actor::User {
            id: UserId::parse("bench").expect("valid"),
        },
        now: Utc::now(),
    }
}

/// The creations of a batch of `size` new follow-ups, decided.
fn batch_decided(size: usize) -> Vec<Decided<FollowUp>> {
    let ctx = ctx();
    (0..size)
        .map(|n| {
            let new = new_followup(n);
            let id = new.id;
            let events = decide(&None, Command::Create(new), &ctx).expect("a valid creation");
            Decided {
                id,
                version: 0,
                events,
                ctx: ctx.clone(),
            }
        })
        .collect()
}

/// The rows a batch of `size` new follow-ups makes.
fn batch_appends(size: usize) -> Vec<StreamAppend> {
    FollowUps::rows(&batch_decided(size))
}

const RAW_INSERT: &str = "INSERT INTO bench_raw_events
    (stream_id, stream_type, version, event_id, event_type, schema_version, payload, actor, correlation_id, causation_id)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";

const RAW_BATCH_INSERT: &str = "INSERT INTO bench_raw_events
    (stream_id, stream_type, version, event_id, event_type, schema_version, payload, actor, correlation_id, causation_id)
    SELECT * FROM unnest($1::text[], $2::text[], $3::int8[], $4::uuid[], $5::text[], $6::int4[], $7::jsonb[], $8::jsonb[], $9::text[], $10::text[])";

/// Runs `total` jobs on `concurrency` tasks; returns the elapsed time.
async fn spread<F, Fut>(total: usize, concurrency: usize, job: F) -> anyhow::Result<Duration>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let job = Arc::new(job);
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let next = next.clone();
            let job = job.clone();
            tokio::spawn(async move {
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= total {
                        return Ok::<(), anyhow::Error>(());
                    }
                    job(n).await?;
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await??;
    }
    Ok(started.elapsed())
}

fn rate(count: usize, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64()
}

async fn append(args: &AppendArgs, pool: &PgPool) -> anyhow::Result<()> {
    let store = bench_store(pool, args.plaintext);
    let followups = FollowUps::new(store.clone());
    let c = args.concurrency;
    let commands = args.followups * 2;
    let sealed = if args.plaintext {
        "personal fields unencrypted (--plaintext)"
    } else {
        "personal fields encrypted, a key per follow-up"
    };
    println!("bench append: PostgreSQL beside it, {c} concurrent writers, {sealed}");

    // (a) raw: one plain INSERT of the same row shape per transaction.
    let sample = batch_appends(1).remove(0);
    let row = Arc::new(sample.events[0].clone());
    let raw_pool = pool.clone();
    let raw_single = spread(commands, c, move |n| {
        let pool = raw_pool.clone();
        let row = row.clone();
        async move {
            sqlx::query(RAW_INSERT)
                .bind(Uuid::new_v4().to_string())
                .bind("followup")
                .bind(1 + (n % 2) as i64)
                .bind(Uuid::new_v4())
                .bind(&row.event_type)
                .bind(row.schema_version)
                .bind(&row.payload)
                .bind(&row.metadata.actor)
                .bind(&row.metadata.correlation_id)
                .bind(&row.metadata.causation_id)
                .execute(&pool)
                .await?;
            Ok(())
        }
    })
    .await?;

    // (a) commands: create, then complete, each its own transaction.
    let repo = followups.clone();
    let command_time = spread(args.followups, c, move |n| {
        let repo = repo.clone();
        async move {
            let new = new_followup(n);
            let id = new.id;
            let meta = CommandMeta::default();
            repo.execute(id, Command::Create(new), &ctx(), &meta, Expect::Current)
                .await?;
            repo.execute(id, Command::Complete, &ctx(), &meta, Expect::Current)
                .await?;
            Ok(())
        }
    })
    .await?;

    // (b) raw batched: one multi-row INSERT per batch.
    let batch = args.batch;
    let events = batch * args.batches;
    // The batches are made before the clock starts: only the database work is measured.
    let raw_batches = prepared(args.batches, || batch_appends(batch));
    let raw_pool = pool.clone();
    let raw_batched = spread(args.batches, c, move |n| {
        let pool = raw_pool.clone();
        let appends = take(&raw_batches, n);
        async move {
            let col = |f: fn(&StreamAppend) -> Value| appends.iter().map(f).collect::<Vec<_>>();
            sqlx::query(RAW_BATCH_INSERT)
                .bind(
                    appends
                        .iter()
                        .map(|a| a.stream_id.clone())
                        .collect::<Vec<_>>(),
                )
                .bind(
                    appends
                        .iter()
                        .map(|a| a.stream_type.clone())
                        .collect::<Vec<_>>(),
                )
                .bind(vec![1i64; appends.len()])
                .bind(
                    appends
                        .iter()
                        .map(|a| a.events[0].event_id)
                        .collect::<Vec<_>>(),
                )
                .bind(
                    appends
                        .iter()
                        .map(|a| a.events[0].event_type.clone())
                        .collect::<Vec<_>>(),
                )
                .bind(
                    appends
                        .iter()
                        .map(|a| a.events[0].schema_version)
                        .collect::<Vec<_>>(),
                )
                .bind(col(|a| a.events[0].payload.clone()))
                .bind(col(|a| a.events[0].metadata.actor.clone()))
                .bind(
                    appends
                        .iter()
                        .map(|a| a.events[0].metadata.correlation_id.clone())
                        .collect::<Vec<_>>(),
                )
                .bind(
                    appends
                        .iter()
                        .map(|a| a.events[0].metadata.causation_id.clone())
                        .collect::<Vec<_>>(),
                )
                .execute(&pool)
                .await?;
            Ok(())
        }
    })
    .await?;

    // (b) the executor's import of batches decided beforehand.
    let store_batches = prepared(args.batches, || batch_decided(batch));
    let batch_store = followups.clone();
    let batched = spread(args.batches, c, move |n| {
        let store = batch_store.clone();
        let decided = take(&store_batches, n);
        async move {
            store.import(decided).await?;
            Ok(())
        }
    })
    .await?;

    let raw_single_rate = rate(commands, raw_single);
    let command_rate = rate(commands, command_time);
    let raw_batched_rate = rate(events, raw_batched);
    let batched_rate = rate(events, batched);
    println!();
    println!(
        "(a) one follow-up command per transaction ({} follow-ups: create, then complete)",
        args.followups
    );
    println!("    raw single-row INSERT     {raw_single_rate:>10.0} rows/s      ({commands} rows in {raw_single:.2?})");
    println!("    follow-up commands        {command_rate:>10.0} commands/s  ({commands} commands in {command_time:.2?})");
    println!(
        "    ratio                     {:>10.1} %          (target: at least 60 %)",
        100.0 * command_rate / raw_single_rate
    );
    println!(
        "(b) batched appends ({} batches of {batch} events)",
        args.batches
    );
    println!("    raw multi-row INSERT      {raw_batched_rate:>10.0} rows/s      ({events} rows in {raw_batched:.2?})");
    println!("    executor import           {batched_rate:>10.0} events/s    ({events} events in {batched:.2?})");
    println!(
        "    ratio                     {:>10.1} %          (target: at least 100,000 events/s)",
        100.0 * batched_rate / raw_batched_rate
    );
    Ok(())
}

/// A batch per slot, made before the clock starts (only the database work is measured).
type Prepared<T> = Arc<Vec<std::sync::Mutex<Option<T>>>>;

/// `count` batches made by `make`.
fn prepared<T>(count: usize, make: impl Fn() -> T) -> Prepared<T> {
    Arc::new(
        (0..count)
            .map(|_| std::sync::Mutex::new(Some(make())))
            .collect(),
    )
}

/// Batch `n`, taken out (each is used once).
fn take<T>(batches: &[std::sync::Mutex<Option<T>>], n: usize) -> T {
    batches[n]
        .lock()
        .expect("not poisoned")
        .take()
        .expect("each batch is used once")
}
