//! Benchmarks of the read model, against the PostgreSQL of `DATABASE_URL`, in a scratch
//! database of its own (`followups_readmodel_bench`, dropped and created again each run).
//!
//! ```sh
//! cargo run --release -p followup-readmodel --example bench -- catch-up [followups] [batch] [created-only]
//! cargo run --release -p followup-readmodel --example bench -- queries [rows]
//! cargo run --release -p followup-readmodel --example bench -- catch-up-again [batch]
//! cargo run --release -p followup-readmodel --example bench -- queries-again
//! ```
//!
//! - `catch-up` (default 100,000 follow-ups, about 2.7 events each, or only their `created`
//!   events with `created-only`; batches of 1000): stores
//!   a history through the event store, then times how fast the projector projects all of it,
//!   and, for comparison, how fast the events alone can be read. `catch-up-again` empties the
//!   read model of the last run and projects its events again (to try other indexes).
//! - `queries` (default 1,000,000 rows): fills `followups_view` through the write-through
//!   upsert, then times lists and dashboards of random caseworkers and admins (p50, p99) and
//!   prints the query plans. `queries-again` runs the queries on the rows of the last run.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use followup_domain::{
    Access, Actor, Context, Description, Event, FollowUp, FollowUpId, InstitutionId, Kind,
    Principal, Priority, Regarding, Source, Status, StatusReason, Subject, TeamId, UserId, Viewer,
};
use followup_readmodel::{ListQuery, OwnerFilter, Projector, ReadModel};
use followup_store::followups::{to_append, upcaster};
use followup_store::{Checkpoint, CommandMeta, EventStore, MIGRATOR};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgPool};

/// The scratch database the benchmark works in.
const DATABASE: &str = "followups_readmodel_bench";

/// Institutions of the generated data.
const INSTITUTIONS: &[&str] = &[
    "KP", "UCL", "VIA", "UCN", "UCSYD", "ABSALON", "EK", "EAAA", "ZBC", "MARTEC",
];

/// Teams per institution; the same names in every institution, as the default rules do.
const TEAMS: usize = 20;

/// Users per institution.
const USERS: usize = 500;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let number = |i: usize, default: usize| -> anyhow::Result<usize> {
        args.get(i)
            .map_or(Ok(default), |a| a.parse().context("a number"))
    };
    match args.first().map(String::as_str) {
        Some("catch-up") => {
            let pool = database(true).await?;
            let created_only = args.get(3).is_some_and(|a| a == "created-only");
            catch_up(&pool, number(1, 100_000)?, number(2, 1000)?, created_only).await
        }
        Some("catch-up-again") => project_again(&database(false).await?, number(1, 1000)?).await,
        Some("queries") => {
            let pool = database(true).await?;
            seed_rows(&pool, number(1, 1_000_000)?).await?;
            queries(&pool).await
        }
        Some("queries-again") => queries(&database(false).await?).await,
        _ => anyhow::bail!(
            "usage: bench catch-up [followups] [batch] | catch-up-again [batch] \
             | queries [rows] | queries-again"
        ),
    }
}

/// A pool on the scratch database; `fresh`: dropped, created and migrated first.
async fn database(fresh: bool) -> anyhow::Result<PgPool> {
    let url =
        std::env::var("DATABASE_URL").context("DATABASE_URL must name the PostgreSQL server")?;
    let options = PgConnectOptions::from_str(&url)?;
    if !fresh {
        return Ok(PgPoolOptions::new()
            .max_connections(8)
            .connect_with(options.database(DATABASE))
            .await?);
    }
    let mut admin = options.connect().await?;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)"))
        .execute(&mut admin)
        .await?;
    sqlx::query(&format!("CREATE DATABASE {DATABASE}"))
        .execute(&mut admin)
        .await?;
    admin.close().await?;
    let pool = PgPoolOptions::new()
        .max_connections(8)
        .connect_with(options.database(DATABASE))
        .await?;
    MIGRATOR.run(&pool).await?;
    Ok(pool)
}

/// A small, fast, reproducible random number generator (splitmix64).
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n`.
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// True with probability `percent` / 100.
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

fn team(i: usize) -> String {
    if i == 0 {
        "admissions".to_owned()
    } else {
        format!("team{i}")
    }
}

fn user(i: usize) -> String {
    format!("u{i}")
}

/// A random owner: 60 % one of the teams, 40 % one of the users.
fn owner(random: &mut Random) -> anyhow::Result<Principal> {
    Ok(if random.chance(60) {
        Principal::Team(TeamId::parse(&team(random.below(TEAMS)))?)
    } else {
        Principal::User(UserId::parse(&user(random.below(USERS)))?)
    })
}

// ---------------------------------------------------------------------------------------------
// catch-up

async fn catch_up(
    pool: &PgPool,
    followups: usize,
    batch: usize,
    created_only: bool,
) -> anyhow::Result<()> {
    let store = EventStore::new(pool.clone()).with_upcaster(upcaster());
    let started = Instant::now();
    let events = seed_events(&store, followups, created_only).await?;
    let seeded = started.elapsed();
    println!(
        "stored {events} events of {followups} follow-ups in {:.1} s ({:.0} events/s)",
        seeded.as_secs_f64(),
        events as f64 / seeded.as_secs_f64()
    );
    sqlx::query("VACUUM ANALYZE events").execute(pool).await?;

    // The ceiling: reading and upcasting the events, without projecting them.
    let started = Instant::now();
    let mut checkpoint = Checkpoint::START;
    let mut read = 0;
    loop {
        let events = store.read_all(checkpoint, batch as i64).await?;
        let Some(last) = events.last() else { break };
        checkpoint = last.checkpoint();
        read += events.len();
    }
    report("read only", read, started.elapsed());

    let projector = Projector::new(store.clone(), ReadModel::new(pool.clone())).batch_size(batch);
    let started = Instant::now();
    let projected = projector.process_pending().await?;
    report(
        &format!("projected into an empty table (batch {batch})"),
        projected,
        started.elapsed(),
    );

    // Again from the start over the full table: every event is already there (the case of a
    // rebuild that runs while the service keeps writing through).
    sqlx::query("DELETE FROM projection_checkpoints")
        .execute(pool)
        .await?;
    let started = Instant::now();
    let projected = projector.process_pending().await?;
    report(
        "projected again over the full table",
        projected,
        started.elapsed(),
    );
    Ok(())
}

/// Empties the read model and projects all stored events again.
async fn project_again(pool: &PgPool, batch: usize) -> anyhow::Result<()> {
    sqlx::query("TRUNCATE followups_view, projection_checkpoints")
        .execute(pool)
        .await?;
    let store = EventStore::new(pool.clone()).with_upcaster(upcaster());
    let projector = Projector::new(store, ReadModel::new(pool.clone())).batch_size(batch);
    let started = Instant::now();
    let projected = projector.process_pending().await?;
    report(
        &format!("projected into an empty table (batch {batch})"),
        projected,
        started.elapsed(),
    );
    Ok(())
}

fn report(what: &str, events: usize, took: Duration) {
    println!(
        "{what}: {events} events in {:.2} s = {:.0} events/s",
        took.as_secs_f64(),
        events as f64 / took.as_secs_f64()
    );
}

/// Stores the history of `followups` follow-ups in the order a busy service would: first their
/// creation, then shares, edits and completions, 1000 streams per append. Returns the number
/// of events stored.
async fn seed_events(
    store: &EventStore,
    followups: usize,
    created_only: bool,
) -> anyhow::Result<usize> {
    let mut random = Random(7);
    let now = Utc::now();
    let ctx = Context {
        actor: Actor::System,
        now,
    };
    let meta = CommandMeta::default();
    let ids: Vec<FollowUpId> = (0..followups).map(|_| FollowUpId::new_v4()).collect();
    let mut versions = vec![0u64; followups];
    let mut owners = Vec::with_capacity(followups);
    let mut stored = 0;
    // Phase 0 creates; phases 1 to 3 share (50 %), edit (40 %) and complete (80 %).
    let phases = if created_only { 1 } else { 4 };
    for phase in 0..phases {
        for chunk in (0..followups).collect::<Vec<_>>().chunks(1000) {
            let mut appends = Vec::with_capacity(chunk.len());
            for &i in chunk {
                let at = now - chrono::Duration::minutes((followups - i) as i64);
                let event = match phase {
                    0 => {
                        let owner = owner(&mut random)?;
                        owners.push(owner.clone());
                        Event::Created {
                            id: ids[i],
                            institution: InstitutionId::parse(
                                INSTITUTIONS[i % INSTITUTIONS.len()],
                            )?,
                            kind: Kind::ALL[random.below(3)],
                            subject: Subject::from_upstream(&format!(
                                "Overførsel af ansøger {i} til studieforløb gav mangler"
                            )),
                            description: Description::from_upstream(
                                "Obligatoriske SUE'er blev ikke oprettet som GUE'er: SUE-1, SUE-2",
                            ),
                            regarding: Some(Regarding::parse("application", &format!("A-{i}"))?),
                            owner,
                            due: Some(at + chrono::Duration::days(14)),
                            priority: Priority::Normal,
                            source: Source::Rule {
                                rule_id: "applicant_transfer_defects".into(),
                                job: "applicant_transfer".into(),
                            },
                            at,
                        }
                    }
                    1 if random.chance(50) => {
                        let principal = Principal::User(UserId::parse(&user(random.below(USERS)))?);
                        if principal == owners[i] {
                            continue;
                        }
                        Event::Shared {
                            principal,
                            access: Access::Read,
                            at,
                        }
                    }
                    2 if random.chance(40) => Event::Edited {
                        subject: None,
                        description: None,
                        due: None,
                        priority: Some(Priority::High),
                        status_reason: Some(StatusReason::InProgress),
                        at,
                    },
                    3 if random.chance(80) => Event::Completed {
                        reason: StatusReason::Handled,
                        at,
                    },
                    _ => continue,
                };
                let append = to_append(ids[i], versions[i], &[event], &ctx, &meta)
                    .context("one event to append")?;
                versions[i] += 1;
                appends.push(append);
            }
            if appends.is_empty() {
                continue;
            }
            stored += appends.len();
            store.append_batch(appends).await?;
        }
    }
    Ok(stored)
}

// ---------------------------------------------------------------------------------------------
// queries

async fn queries(pool: &PgPool) -> anyhow::Result<()> {
    let read_model = ReadModel::new(pool.clone());
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM followups_view")
        .fetch_one(pool)
        .await?;
    let rows = rows as usize;
    print_sizes(pool).await?;

    let now = Utc::now();
    let mut random = Random(11);
    let caseworker = |random: &mut Random| -> anyhow::Result<Viewer> {
        Ok(Viewer {
            user: UserId::parse(&user(random.below(USERS)))?,
            institution: InstitutionId::parse(INSTITUTIONS[random.below(INSTITUTIONS.len())])?,
            teams: vec![TeamId::parse(&team(random.below(TEAMS)))?],
            admin: false,
        })
    };
    let admin = |random: &mut Random| -> anyhow::Result<Viewer> {
        Ok(Viewer {
            admin: true,
            teams: vec![],
            ..caseworker(random)?
        })
    };
    // How many open follow-ups a typical caseworker sees.
    let sample = caseworker(&mut random)?;
    let mut open = ListQuery::new(now);
    open.status = Some(Status::Open);
    open.limit = 200;
    let mut seen = 0;
    loop {
        let page = read_model.list(&sample, &open).await?;
        seen += page.items.len();
        match page.next_cursor {
            Some(cursor) => open.cursor = Some(cursor),
            None => break,
        }
    }
    println!("a caseworker in one team sees {seen} open follow-ups");

    type Case<'a> = (&'a str, bool, Box<dyn Fn(&mut Random) -> ListQuery>);
    let cases: Vec<Case<'_>> = vec![
        (
            "caseworker, no filter",
            false,
            Box::new(move |_| ListQuery::new(now)),
        ),
        (
            "caseworker, status=open",
            false,
            Box::new(move |_| ListQuery {
                status: Some(Status::Open),
                ..ListQuery::new(now)
            }),
        ),
        (
            "caseworker, overdue=true",
            false,
            Box::new(move |_| ListQuery {
                overdue: Some(true),
                ..ListQuery::new(now)
            }),
        ),
        (
            "caseworker, owner=me",
            false,
            Box::new(move |_| ListQuery {
                owner: Some(OwnerFilter::Me),
                ..ListQuery::new(now)
            }),
        ),
        (
            "caseworker, kind=task status=open",
            false,
            Box::new(move |_| ListQuery {
                kind: Some(Kind::Task),
                status: Some(Status::Open),
                ..ListQuery::new(now)
            }),
        ),
        (
            "caseworker, q=ansøger 12",
            false,
            Box::new(move |_| ListQuery {
                q: Some("ansøger 12".into()),
                ..ListQuery::new(now)
            }),
        ),
        (
            "caseworker, regarding",
            false,
            Box::new(move |r: &mut Random| ListQuery {
                regarding: Regarding::parse("application", &format!("A-{}", r.below(rows))).ok(),
                ..ListQuery::new(now)
            }),
        ),
        (
            "admin, no filter",
            true,
            Box::new(move |_| ListQuery::new(now)),
        ),
        (
            "admin, status=open",
            true,
            Box::new(move |_| ListQuery {
                status: Some(Status::Open),
                ..ListQuery::new(now)
            }),
        ),
        (
            "admin, overdue=true",
            true,
            Box::new(move |_| ListQuery {
                overdue: Some(true),
                ..ListQuery::new(now)
            }),
        ),
    ];
    println!(
        "\n{:<40} {:>9} {:>9} {:>9}",
        "list (limit 50, first and second page)", "p50 ms", "p99 ms", "max ms"
    );
    for (name, as_admin, query) in &cases {
        let mut times = Vec::new();
        for _ in 0..500 {
            let viewer = if *as_admin {
                admin(&mut random)?
            } else {
                caseworker(&mut random)?
            };
            let mut query = query(&mut random);
            let started = Instant::now();
            let page = read_model.list(&viewer, &query).await?;
            times.push(started.elapsed());
            if let Some(cursor) = page.next_cursor {
                query.cursor = Some(cursor);
                let started = Instant::now();
                read_model.list(&viewer, &query).await?;
                times.push(started.elapsed());
            }
        }
        print_times(name, &mut times);
    }
    let mut times = Vec::new();
    for _ in 0..1000 {
        let viewer = caseworker(&mut random)?;
        let started = Instant::now();
        read_model.dashboard(&viewer, now).await?;
        times.push(started.elapsed());
    }
    print_times("dashboard, caseworker", &mut times);

    // The shapes `ReadModel::list` and `ReadModel::dashboard` send, with literals in place of
    // the parameters.
    println!("\nplans (EXPLAIN ANALYZE) for a caseworker of KP in team admissions, u7:");
    let page = |filter: &str| {
        format!(
            "SELECT id, created_at, doc FROM followups_view WHERE id = ANY(ARRAY(\
             SELECT id FROM followups_view WHERE institution = 'KP' {filter} \
             ORDER BY created_at DESC, id DESC LIMIT 51)) ORDER BY created_at DESC, id DESC"
        )
    };
    let visible = "AND scoped_principals && '{KP/user:u7,KP/team:admissions}'";
    let a_month_ago = now - chrono::Duration::days(30);
    for (name, sql) in [
        ("no filter", page(visible)),
        ("status=open", page(&format!("{visible} AND status = 'open'"))),
        ("owner=me", page(&format!("{visible} AND owner = 'user:u7'"))),
        (
            "second page",
            page(&format!(
                "{visible} AND (created_at, id) < ('{a_month_ago}', '00000000-0000-0000-0000-000000000000')"
            )),
        ),
        ("admin, status=open", page("AND status = 'open'")),
        (
            "dashboard",
            "SELECT count(*) FILTER (WHERE kind = 'exception'), count(*) FILTER (WHERE due < now()) \
             FROM followups_view WHERE institution = 'KP' \
             AND owner = ANY('{user:u7,team:admissions}') AND status = 'open'"
                .to_owned(),
        ),
    ] {
        println!("\n-- {name}");
        let plan: Vec<String> = sqlx::query_scalar(&format!("EXPLAIN (ANALYZE, BUFFERS) {sql}"))
            .fetch_all(pool)
            .await?;
        for line in plan {
            println!("   {line}");
        }
    }
    Ok(())
}

fn print_times(name: &str, times: &mut [Duration]) {
    times.sort();
    let at = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{name:<40} {:>9.2} {:>9.2} {:>9.2}",
        ms(at(0.5)),
        ms(at(0.99)),
        ms(times[times.len() - 1])
    );
}

async fn print_sizes(pool: &PgPool) -> anyhow::Result<()> {
    let sizes: Vec<(String, i64)> = sqlx::query_as(
        "SELECT c.relname::text, pg_relation_size(c.oid) FROM pg_class c
         WHERE c.relname LIKE 'followups_view%' ORDER BY 1",
    )
    .fetch_all(pool)
    .await?;
    for (name, bytes) in sizes {
        println!("  {name:<32} {:>8.1} MB", bytes as f64 / 1e6);
    }
    Ok(())
}

/// Writes `rows` follow-ups spread over ten institutions, 20 teams and 500 users each, created
/// over two years: 60 % owned by a team, 10 % shared, 8 % open.
async fn seed_rows(pool: &PgPool, rows: usize) -> anyhow::Result<()> {
    let read_model = ReadModel::new(pool.clone());
    let started = Instant::now();
    let mut random = Random(3);
    let now = Utc::now();
    let two_years = 2 * 365 * 24 * 60;
    let mut batch = Vec::with_capacity(5000);
    for i in 0..rows {
        let created_at: DateTime<Utc> =
            now - chrono::Duration::minutes(random.below(two_years) as i64);
        let status = match random.below(100) {
            0..=7 => Status::Open,
            8..=17 => Status::Closed,
            _ => Status::Completed,
        };
        let mut shares = BTreeMap::new();
        if random.chance(10) {
            shares.insert(
                Principal::User(UserId::parse(&user(random.below(USERS)))?),
                Access::Read,
            );
        }
        let owner = owner(&mut random)?;
        shares.remove(&owner);
        batch.push(FollowUp {
            id: FollowUpId::new_v4(),
            institution: InstitutionId::parse(INSTITUTIONS[random.below(INSTITUTIONS.len())])?,
            kind: Kind::ALL[random.below(3)],
            subject: Subject::from_upstream(&format!("Overførsel af ansøger {i} gav mangler")),
            description: Description::from_upstream("Obligatoriske SUE'er blev ikke oprettet"),
            regarding: if random.chance(60) {
                Some(Regarding::parse("application", &format!("A-{i}"))?)
            } else {
                None
            },
            owner,
            shares,
            due: random
                .chance(70)
                .then(|| now + chrono::Duration::days(random.below(120) as i64 - 60)),
            priority: Priority::Normal,
            status,
            status_reason: match status {
                Status::Open => StatusReason::NotStarted,
                Status::Completed => StatusReason::Handled,
                Status::Closed => StatusReason::NotNeeded,
            },
            source: Source::User {
                id: UserId::parse("u1")?,
            },
            occurrences: 0,
            created_at,
            updated_at: created_at,
            version: 1,
            overdue_since: None,
            inbox: BTreeMap::new(),
        });
        if batch.len() == 5000 {
            read_model.upsert(&batch).await?;
            batch.clear();
        }
    }
    read_model.upsert(&batch).await?;
    let took = started.elapsed();
    println!(
        "wrote {rows} rows through upsert in {:.1} s ({:.0} rows/s)",
        took.as_secs_f64(),
        rows as f64 / took.as_secs_f64()
    );
    sqlx::query("VACUUM ANALYZE followups_view")
        .execute(pool)
        .await?;
    Ok(())
}
