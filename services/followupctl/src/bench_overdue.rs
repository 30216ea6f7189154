//! `followupctl bench overdue`: the scheduler's overdue scan over 1,000,000 open follow-ups in
//! a scratch database. Most rows are written straight into `followups_view` (the scan reads
//! only the read model); the overdue share is created through the event store and projected,
//! so the marking pass runs the real job: load from the events, decide, append the
//! `marked_overdue` events and the owners' notifications.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};
use clap::Args;
use followup_domain::{
    decide, Actor, Command, Context, Description, FollowUpId, InstitutionId, Kind, NewFollowUp,
    Principal, Priority, Source, Subject, TeamId,
};
use followup_readmodel::{Projection, ReadModel};
use followup_scheduler::jobs::overdue_candidates;
use followup_scheduler::{JobName, ManualClock, Scheduler, SchedulerConfig};
use followup_store::followups::upcaster;
use followup_store::{Decided, EventStore, FollowUps};
use sqlx::PgPool;

/// Settings of `bench overdue`.
#[derive(Debug, Args)]
pub struct OverdueArgs {
    /// Open follow-ups in the read model.
    #[arg(long, default_value_t = 1_000_000)]
    followups: usize,
    /// How many of them are overdue and not yet marked (created through the event store).
    #[arg(long, default_value_t = 10_000)]
    overdue: usize,
    /// The job's batch size (follow-ups loaded, decided and appended at once).
    #[arg(long, default_value_t = 500)]
    batch: usize,
}

/// Seeds the follow-ups that are not overdue: open, due 1 to 30 days ahead, straight into the
/// read model, with a document of realistic size.
const SEED_SQL: &str = r#"
INSERT INTO followups_view
    (id, institution, kind, status, owner, principals, scoped_principals, regarding, subject,
     due, overdue_since, priority, created_at, updated_at, version, doc)
SELECT gen_random_uuid(),
       (ARRAY['KP','UCL','VIA','UCN','UCSYD'])[1 + i % 5],
       CASE WHEN i % 2 = 0 THEN 'exception' ELSE 'task' END,
       'open',
       'team:t-' || (i % 500),
       ARRAY['team:t-' || (i % 500)],
       ARRAY[(ARRAY['KP','UCL','VIA','UCN','UCSYD'])[1 + i % 5] || '/team:t-' || (i % 500)],
       'application:APP-' || i,
       'Fejl ved overførsel af ansøgning APP-' || i || ' til studieforløb',
       $1::timestamptz + (1 + i % 30) * interval '1 day' + (i % 86400) * interval '1 second',
       NULL,
       'normal',
       $1::timestamptz - interval '1 day',
       $1::timestamptz - interval '1 day',
       1,
       jsonb_build_object('subject', 'Fejl ved overførsel af ansøgning APP-' || i,
                          'description', repeat('Manglende obligatoriske SUE''er. ', 15))
FROM generate_series($2::bigint, $3::bigint) AS i
"#;

/// The overdue scan's query without its index: a full scan of the table.
const FULL_SCAN_SQL: &str = r#"
SELECT count(*) FROM followups_view
WHERE status = 'open' AND overdue_since IS NULL AND due IS NOT NULL AND due < $1
"#;

pub async fn run(args: &OverdueArgs, pool: PgPool) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.overdue <= args.followups,
        "--overdue is more than --followups"
    );
    let now = Utc::now();
    let store = EventStore::new(pool.clone()).with_upcaster(upcaster());
    println!(
        "bench overdue: {} open follow-ups, {} of them overdue and not yet marked",
        args.followups, args.overdue
    );

    // The overdue ones, through the event store and the projector.
    let started = Instant::now();
    let ctx = Context {
        actor: Actor::Rule { id: "bench".into() },
        now: now - TimeDelta::days(5),
    };
    for chunk in (0..args.overdue).collect::<Vec<_>>().chunks(2000) {
        let appends = chunk
            .iter()
            .map(|&n| {
                let new = overdue(n, now);
                let id = new.id;
                let events = decide(&None, Command::Create(new), &ctx).expect("a valid creation");
                Decided {
                    id,
                    version: 0,
                    events,
                    ctx: ctx.clone(),
                }
            })
            .collect();
        FollowUps::new(store.clone()).import(appends).await?;
    }
    store.wait_until_readable(Duration::from_secs(30)).await?;
    let read_model = ReadModel::new(pool.clone());
    let projector = Projection::new(store.clone(), read_model);
    while projector.process_pending().await? > 0 {}
    // The rest, straight into the read model.
    let rest = (args.followups - args.overdue) as i64;
    let mut from = 0i64;
    while from < rest {
        let to = (from + 100_000).min(rest) - 1;
        sqlx::query(SEED_SQL)
            .bind(now)
            .bind(from)
            .bind(to)
            .execute(&pool)
            .await?;
        from = to + 1;
    }
    sqlx::query("VACUUM ANALYZE followups_view")
        .execute(&pool)
        .await?;
    println!("seeded in {:.1?}", started.elapsed());

    // 1. The scan alone: every page of candidates, as the job reads them.
    let mut best = Duration::MAX;
    let mut found = 0;
    for _ in 0..5 {
        let started = Instant::now();
        found = 0;
        let mut after = None;
        loop {
            let page = overdue_candidates(&pool, now, after, args.batch).await?;
            let Some(last) = page.last() else { break };
            after = Some((last.1, last.0));
            found += page.len();
        }
        best = best.min(started.elapsed());
    }
    println!(
        "overdue scan (index followups_view_due_unmarked, pages of {}): {found} candidates among {} open follow-ups in {:.1} ms: {:.0} open follow-ups/s, {:.0} candidates/s (best of 5; target: well under 1 s)",
        args.batch,
        args.followups,
        best.as_secs_f64() * 1000.0,
        args.followups as f64 / best.as_secs_f64(),
        found as f64 / best.as_secs_f64(),
    );

    // 2. The same condition read by a full scan of the table (no index), for comparison.
    let mut tx = pool.begin().await?;
    for off in [
        "SET LOCAL enable_indexscan = off",
        "SET LOCAL enable_bitmapscan = off",
        "SET LOCAL enable_indexonlyscan = off",
    ] {
        sqlx::query(off).execute(&mut *tx).await?;
    }
    let mut best = Duration::MAX;
    for _ in 0..3 {
        let started = Instant::now();
        let _: i64 = sqlx::query_scalar(FULL_SCAN_SQL)
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
        best = best.min(started.elapsed());
    }
    tx.rollback().await?;
    println!(
        "the same condition by a full table scan (no index): {} rows in {:.1} ms: {:.0} follow-ups/s (best of 3)",
        args.followups,
        best.as_secs_f64() * 1000.0,
        args.followups as f64 / best.as_secs_f64()
    );

    // 3. The marking pass: the real job, marking every candidate and notifying its owner.
    let mut config = SchedulerConfig::default();
    config.schedules.retain(|job, _| *job == JobName::Overdue);
    config.batch_size = args.batch;
    let scheduler = Scheduler::new(
        config,
        FollowUps::new(store.clone()),
        Arc::new(ManualClock::new(now)),
    );
    let (events_before, _) = count_events(&pool).await?;
    let started = Instant::now();
    let report = scheduler.fire("overdue", now, now).await?;
    let elapsed = started.elapsed();
    let (events_after, _) = count_events(&pool).await?;
    println!(
        "marking pass: {} follow-ups marked overdue and {} owners notified ({} events) in {:.2} s: {:.0} follow-ups/s",
        report.changed,
        report.notified,
        events_after - events_before,
        elapsed.as_secs_f64(),
        report.changed as f64 / elapsed.as_secs_f64()
    );

    // 4. The same firing again before the read model has caught up (a second scheduler, a
    // retry): every candidate is checked against its events, nothing is appended.
    let started = Instant::now();
    let again = scheduler.fire("overdue", now, now).await?;
    let elapsed = started.elapsed();
    let (events_again, _) = count_events(&pool).await?;
    println!(
        "the same firing again (read model not caught up): {} candidates re-checked on their events, {} events appended, in {:.2} s: {:.0} follow-ups/s",
        again.candidates,
        events_again - events_after,
        elapsed.as_secs_f64(),
        again.candidates as f64 / elapsed.as_secs_f64()
    );

    // 5. The next tick, once the projector has caught up: the steady state.
    store.wait_until_readable(Duration::from_secs(30)).await?;
    while projector.process_pending().await? > 0 {}
    let started = Instant::now();
    let next = scheduler
        .fire(
            "overdue",
            now + TimeDelta::minutes(5),
            now + TimeDelta::seconds(1),
        )
        .await?;
    println!(
        "the next tick after the projector caught up: {} candidates, {:.1} ms",
        next.candidates,
        started.elapsed().as_secs_f64() * 1000.0
    );
    Ok(())
}

/// An open exception due a while ago, owned by a team.
fn overdue(n: usize, now: chrono::DateTime<Utc>) -> NewFollowUp {
    NewFollowUp {
        id: FollowUpId::new_v4(),
        institution: InstitutionId::parse(["KP", "UCL", "VIA", "UCN", "UCSYD"][n % 5])
            .expect("valid"),
        kind: Kind::Exception,
        subject: Subject::from_upstream(&format!(
            "Fejl ved overførsel af ansøgning APP-{n:07} til studieforløb"
        )),
        description: Description::from_upstream(
            "Manglende obligatoriske SUE'er: Anatomi og fysiologi (SUE-SYG-1001), 1. semester",
        ),
        regarding: None,
        person: None,
        owner: Principal::Team(TeamId::parse(&format!("t-{}", n % 500)).expect("valid")),
        due: Some(now - TimeDelta::minutes(1 + (n % 3000) as i64)),
        priority: Priority::Normal,
        source: Source::Rule {
            rule_id: "applicant-transfer-defects".into(),
            job: "bench".into(),
        },
    }
}

/// How many events the store holds, and its newest position.
async fn count_events(pool: &PgPool) -> anyhow::Result<(i64, i64)> {
    Ok(
        sqlx::query_as("SELECT count(*), coalesce(max(position), 0) FROM events")
            .fetch_one(pool)
            .await?,
    )
}
