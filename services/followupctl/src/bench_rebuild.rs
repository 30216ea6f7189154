//! `followupctl bench rebuild`: a full rebuild of the projection over 1,000,000 events in a
//! scratch database, with the figures of each part.
//!
//! The events are those of real follow-ups, decided by the domain and appended in passes the
//! way a working day makes them (all creations, then all edits, then shares, then
//! completions), so each follow-up's events lie far apart in the store, as they do in
//! production: 90 % exceptions and tasks (created, put in progress, shared with a team,
//! completed) and 10 % notifications (created, edited, read and dismissed by their user).

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use chrono::Utc;
use clap::Args;
use followup_domain::{
    decide, evolve, Access, Actor, Command, Context, Description, Edit, FollowUp, FollowUpId,
    InstitutionId, Kind, NewFollowUp, Principal, Priority, Regarding, Source, StatusReason,
    Subject, TeamId, UserId,
};
use followup_readmodel::{Rebuild, RebuildReport};
use followup_store::{Decided, EventStore, FollowUps};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::output::Report;

/// Settings of `bench rebuild`.
#[derive(Debug, Clone, Args)]
pub struct RebuildBenchArgs {
    /// Events to seed (four per follow-up).
    #[arg(long, default_value_t = 1_000_000)]
    pub events: usize,
    /// Events per chunk of the rebuild's load.
    #[arg(long, default_value_t = followup_readmodel::rebuild::DEFAULT_CHUNK)]
    pub chunk: usize,
    /// Stores (and reads) the personal fields unencrypted, to measure what encryption costs.
    #[arg(long)]
    pub plaintext: bool,
}

/// The figures.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RebuildBenchReport {
    /// Events seeded.
    pub events: i64,
    /// Seeding time, seconds.
    pub seed_seconds: f64,
    /// The rebuild's report.
    pub rebuild: RebuildReport,
    /// Events per second of the whole rebuild.
    pub events_per_second: f64,
    /// The target.
    pub target_events_per_second: f64,
}

/// The events per second the issue asks for.
const TARGET: f64 = 150_000.0;

impl Report for RebuildBenchReport {
    fn human(&self) -> String {
        let r = &self.rebuild;
        let t = &r.timings;
        format!(
            "bench rebuild: {} events ({} follow-ups), seeded in {:.1} s\n\
             full rebuild        {:>10.0} events/s  ({} events in {:.2} s; target at least {:.0}: {})\n\
             breakdown           prepare {:.2} s (shadow tables, counting)\n\
             \x20                   load    {:.2} s wall: read {:.2} s (own thread, overlapped), apply {:.2} s, write {:.2} s\n\
             \x20                   index   {:.2} s (every live index, then ANALYZE)\n\
             \x20                   catch-up {:.2} s, switch {:.2} s",
            self.events,
            r.followups,
            self.seed_seconds,
            self.events_per_second,
            r.events_loaded + r.events_caught_up as i64,
            t.total,
            self.target_events_per_second,
            if self.events_per_second >= self.target_events_per_second {
                "met"
            } else {
                "NOT met"
            },
            t.prepare,
            t.load,
            t.read,
            t.apply,
            t.write,
            t.index,
            t.catch_up,
            t.switch,
        )
    }
}

/// Seeds `args.events` events into the (scratch) database behind `pool`, then rebuilds.
pub async fn run(args: &RebuildBenchArgs, pool: PgPool) -> anyhow::Result<RebuildBenchReport> {
    let store = crate::bench::bench_store(&pool, args.plaintext);
    let seeding = Instant::now();
    seed(&store, args.events.div_ceil(4)).await?;
    let seed_seconds = seeding.elapsed().as_secs_f64();
    let (_, events) = store.head().await?;
    // What a production database looks like before a rebuild: vacuumed and analysed.
    sqlx::query("VACUUM ANALYZE events").execute(&pool).await?;
    eprintln!("bench rebuild: {events} events seeded in {seed_seconds:.1} s; rebuilding");
    let rebuild = Rebuild::new(store).chunk_size(args.chunk);
    let report = rebuild
        .run(&CancellationToken::new(), &mut |_| {})
        .await
        .context("the rebuild failed")?;
    Ok(RebuildBenchReport {
        events,
        seed_seconds,
        events_per_second: report.events_per_second(),
        rebuild: report,
        target_events_per_second: TARGET,
    })
}

/// Appends four events for each of `followups` follow-ups, pass by pass.
pub async fn seed(store: &EventStore, followups: usize) -> anyhow::Result<()> {
    const BATCH: usize = 1000;
    let mut states: Vec<FollowUp> = Vec::with_capacity(followups);
    for pass in 0..4 {
        let chunks: Vec<Vec<(usize, Option<FollowUp>)>> = if pass == 0 {
            (0..followups)
                .collect::<Vec<_>>()
                .chunks(BATCH)
                .map(|c| c.iter().map(|n| (*n, None)).collect())
                .collect()
        } else {
            let mut all: Vec<(usize, Option<FollowUp>)> = std::mem::take(&mut states)
                .into_iter()
                .map(Some)
                .enumerate()
                .collect();
            let mut chunks = Vec::new();
            while !all.is_empty() {
                let rest = all.split_off(all.len().min(BATCH));
                chunks.push(std::mem::replace(&mut all, rest));
            }
            chunks
        };
        let store = Arc::new(store.clone());
        let mut tasks = tokio::task::JoinSet::new();
        let mut results: Vec<Vec<(usize, FollowUp)>> = Vec::new();
        for chunk in chunks {
            if tasks.len() >= 4 {
                results.push(tasks.join_next().await.expect("a task")??);
            }
            let store = store.clone();
            tasks.spawn(async move { step(&store, pass, chunk).await });
        }
        while let Some(done) = tasks.join_next().await {
            results.push(done??);
        }
        let mut next: Vec<(usize, FollowUp)> = results.into_iter().flatten().collect();
        next.sort_unstable_by_key(|(n, _)| *n);
        states = next.into_iter().map(|(_, f)| f).collect();
    }
    Ok(())
}

/// One pass over a chunk of follow-ups: decides each one's next command and appends all the
/// resulting events in one statement.
async fn step(
    store: &EventStore,
    pass: usize,
    chunk: Vec<(usize, Option<FollowUp>)>,
) -> anyhow::Result<Vec<(usize, FollowUp)>> {
    let user_ctx = Context {
        actor: Actor::User {
            id: UserId::parse("bench").expect("valid"),
        },
        now: Utc::now(),
    };
    // Only rules create exceptions.
    let rule_ctx = Context {
        actor: Actor::Rule { id: RULE.into() },
        now: user_ctx.now,
    };
    let mut appends: Vec<Decided<FollowUp>> = Vec::with_capacity(chunk.len());
    let mut next = Vec::with_capacity(chunk.len());
    for (n, state) in chunk {
        let notification = n.is_multiple_of(10);
        let user = UserId::parse(&format!("u{}", n % 5000)).expect("valid");
        let command = match (pass, notification) {
            (0, _) => Command::Create(new_followup(n, notification, &user)),
            (1, _) => Command::Edit(Edit {
                status_reason: (!notification).then_some(StatusReason::InProgress),
                priority: notification.then_some(Priority::High),
                ..Edit::default()
            }),
            (2, false) => Command::Share {
                principal: Principal::Team(TeamId::parse("studieadministration").expect("valid")),
                access: Access::Read,
            },
            (2, true) => Command::MarkRead { user: user.clone() },
            (_, false) => Command::Complete,
            (_, true) => Command::Dismiss { user: user.clone() },
        };
        let id = state
            .as_ref()
            .map_or_else(FollowUpId::new_v4, |f: &FollowUp| f.id);
        let id = if let Command::Create(new) = &command {
            new.id
        } else {
            id
        };
        let version = state.as_ref().map_or(0, |f| f.version);
        let ctx = if pass == 0 && is_exception(n) {
            &rule_ctx
        } else {
            &user_ctx
        };
        let events = decide(&state, command, ctx).map_err(|e| anyhow::anyhow!("{e}"))?;
        let after = events.iter().fold(state, evolve).context("a follow-up")?;
        anyhow::ensure!(!events.is_empty(), "every step makes an event");
        appends.push(Decided {
            id,
            version,
            events,
            ctx: ctx.clone(),
        });
        next.push((n, after));
    }
    FollowUps::new(store.clone()).import(appends).await?;
    Ok(next)
}

/// The rule that raises the benchmark's exceptions.
const RULE: &str = "applicant-transfer-defects";

/// Two thirds of the follow-ups that are not notifications are exceptions.
fn is_exception(n: usize) -> bool {
    !n.is_multiple_of(10) && !n.is_multiple_of(3)
}

fn new_followup(n: usize, notification: bool, user: &UserId) -> NewFollowUp {
    let institution = ["KP", "UCL", "VIA", "UCN", "UCSYD"][n % 5];
    NewFollowUp {
        id: FollowUpId::new_v4(),
        institution: InstitutionId::parse(institution).expect("valid"),
        kind: if notification {
            Kind::Notification
        } else if is_exception(n) {
            Kind::Exception
        } else {
            Kind::Task
        },
        subject: Subject::parse(&format!(
            "Fejl ved overførsel af ansøgning APP-2026-{n:07} til studieforløb (Sygeplejerskeuddannelsen)"
        ))
        .expect("valid"),
        description: Description::parse(
            "Overførslen af ansøger til studerende og studieforløb blev ikke gennemført fejlfrit.\n\nManglende obligatoriske SUE'er (ikke oprettet som GUE):\n- Anatomi og fysiologi (SUE-SYG-1001), 1. semester\n- Klinisk undervisning 1 (SUE-SYG-1004), 1. semester",
        )
        .expect("valid"),
        regarding: Some(
            Regarding::parse("application", &format!("APP-2026-{n:07}")).expect("valid"),
        ),
        person: None,
        owner: if notification {
            Principal::User(user.clone())
        } else {
            Principal::Team(TeamId::parse(["admissions", "optag", "eksamen"][n % 3]).expect("valid"))
        },
        due: Some(Utc::now() + chrono::Duration::days(3)),
        priority: Priority::Normal,
        source: if is_exception(n) {
            Source::Rule {
                rule_id: RULE.into(),
                job: format!("job-{}", n / 1000),
            }
        } else {
            Source::User {
                id: UserId::parse("bench").expect("valid"),
            }
        },
    }
}
