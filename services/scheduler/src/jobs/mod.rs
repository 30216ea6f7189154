//! The jobs a schedule fires, and what they share.
//!
//! A job gets a [`JobContext`] (the repository, the database, the settings) and the
//! [`Firing`] it runs for, and returns a [`JobReport`] or a [`JobError`]. Every built-in job
//! is safe to run twice for the same firing, and by two schedulers at once: the events it
//! appends have ids derived from what they act on (the follow-up and the version it was
//! decided at, or the notification's own derived id), so a second run appends nothing new.
//!
//! # Layout
//! - `overdue`, `remind`, `digest`, `escalate`, `retention`: the built-in jobs.
//! - this module: [`Job`], [`JobContext`], [`Firing`], [`JobReport`], [`JobError`], and the
//!   two ways jobs store what they decide: `settle` (changes to existing follow-ups, decided
//!   on their event-sourced state, in batches, again on a conflict) and
//!   `create_notifications` (new notifications, each once).

mod digest;
mod escalate;
mod overdue;
mod remind;
mod retention;

use std::collections::HashMap;
use std::fmt;

use chrono::{DateTime, Utc};
use followup_domain::{Actor, Command, Context, FollowUp, FollowUpId, NewFollowUp, State};
use followup_readmodel::ReadModel;
use followup_store::{Change, CommandMeta, FollowUps, RepoError, StoreError, UnitOutcome};
use futures::future::BoxFuture;
use serde::Serialize;
use sqlx::postgres::PgArguments;
use sqlx::{PgPool, Postgres};
use uuid::Uuid;

pub use digest::{DailyDigest, DIGEST_ITEMS};
pub use escalate::Escalate;
pub use overdue::{candidates as overdue_candidates, MarkOverdue};
pub use remind::Remind;
pub use retention::Retention;

use crate::config::SchedulerConfig;

/// A candidate of a job's scan of the read model: a follow-up's id and due date.
pub type Candidate = (Uuid, DateTime<Utc>);

/// Where a scan ordered by (due, id) has got to: the last candidate seen, `None` at the start.
pub type After = Option<(DateTime<Utc>, Uuid)>;

/// A page query of candidates, for its job's own parameters to be bound.
pub(crate) type PageQuery<'q> = sqlx::query::QueryAs<'q, Postgres, Candidate, PgArguments>;

/// The page of candidates after `after` (keyset paging): `first` for the first page, `next`
/// for the others, which is `first` with `AND (due, id) > (…)` on its last two parameters.
/// `bind` binds the job's own parameters, which come first in both.
pub(crate) async fn candidate_page<'q>(
    pool: &PgPool,
    first: &'q str,
    next: &'q str,
    after: After,
    bind: impl FnOnce(PageQuery<'q>) -> PageQuery<'q>,
) -> Result<Vec<Candidate>, sqlx::Error> {
    let query = bind(sqlx::query_as(if after.is_some() { next } else { first }));
    let query = match after {
        Some((due, id)) => query.bind(due).bind(id),
        None => query,
    };
    query.fetch_all(pool).await
}

/// The follow-ups of `page`, moving `after` past it; `None` when the page is empty (the scan
/// is over).
pub(crate) fn advance(after: &mut After, page: &[Candidate]) -> Option<Vec<FollowUpId>> {
    let (id, due) = page.last()?;
    *after = Some((*due, *id));
    Some(
        page.iter()
            .map(|(id, _)| FollowUpId::from_uuid(*id))
            .collect(),
    )
}

/// The idempotency key of the notifications the jobs create: each one's event ids derive from
/// it and the notification's own (derived) id, so it is created once whoever creates it.
const CREATION_KEY: &str = "scheduler/create";

/// A scheduled job.
pub trait Job: Send + Sync + fmt::Debug {
    /// Runs the job for `firing`. Must be safe to run again for the same firing (after a
    /// crash, a failure or by a second scheduler): repeating it must append nothing new.
    fn run<'a>(
        &'a self,
        ctx: &'a JobContext,
        firing: &'a Firing,
    ) -> BoxFuture<'a, Result<JobReport, JobError>>;
}

/// What a job works with.
#[derive(Debug, Clone)]
pub struct JobContext {
    /// Loads follow-ups (from their events) and stores what the jobs decide.
    pub followups: FollowUps,
    /// For the read-model queries that find the candidates (`followups_view`).
    pub pool: PgPool,
    /// The settings (lead times, escalation teams, batch size).
    pub config: SchedulerConfig,
}

/// One firing of a job: the job, and the tick of its schedule it runs for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Firing {
    /// The job's name (the actor of its events: `scheduler:<job>`).
    pub job: String,
    /// The tick it runs for: its local time in Europe/Copenhagen, as an instant. Together
    /// with the job, the firing's identity.
    pub scheduled_at: DateTime<Utc>,
    /// When it runs (later than `scheduled_at` after downtime or on a retry): the time the
    /// job's decisions are made at.
    pub now: DateTime<Utc>,
    /// 1 for the first run, more for retries and take-overs.
    pub attempt: u32,
}

impl Firing {
    /// The domain context of the job's commands: the scheduler job acting, now.
    pub fn context(&self) -> Context {
        Context {
            actor: Actor::Scheduler {
                job: self.job.clone(),
            },
            now: self.now,
        }
    }

    /// The metadata of the events appended for `key`: correlated with the firing, and with
    /// event ids derived from `key`.
    pub fn meta(&self, key: String) -> CommandMeta {
        let firing = format!("scheduler:{}@{}", self.job, self.scheduled_at.to_rfc3339());
        CommandMeta {
            correlation_id: Some(firing.clone()),
            causation_id: Some(firing),
            idempotency_key: Some(key),
            traceparent: None,
        }
    }
}

/// What a firing did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct JobReport {
    /// Follow-ups the job looked at (from the read model).
    pub candidates: usize,
    /// Existing follow-ups it changed (marked overdue, escalated).
    pub changed: usize,
    /// Notifications it created.
    pub notified: usize,
    /// Changes or notifications that were stored already (by another scheduler, or an
    /// earlier run of the same firing): found, not doubled.
    pub already_done: usize,
}

impl JobReport {
    fn add(&mut self, settled: Settled) {
        self.changed += settled.changed;
        self.notified += settled.notified;
        self.already_done += settled.already_done;
    }
}

/// Why a job failed. The firing is retried with back-off.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// A read-model query failed.
    #[error("querying the read model failed: {0}")]
    Query(#[from] sqlx::Error),
    /// Loading follow-ups failed.
    #[error(transparent)]
    Repo(#[from] RepoError),
    /// The event store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An append was refused for a reason other than a conflict.
    #[error("appending failed: {0}")]
    Append(String),
    /// A follow-up kept changing while the job decided on it.
    #[error("follow-up {id} kept changing while the job ran")]
    Contended {
        /// The follow-up.
        id: FollowUpId,
    },
    /// A job outside this crate failed.
    #[error("{0}")]
    Other(String),
}

/// Changes that belong together and are stored together, or not at all (a follow-up
/// marked overdue, and the notification about it): the executor's unit, all or nothing.
pub(crate) type Unit = followup_store::Unit<FollowUp>;

/// What storing some units did.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Settled {
    /// Existing follow-ups changed now.
    pub changed: usize,
    /// Notifications created now.
    pub notified: usize,
    /// Units found stored already.
    pub already_done: usize,
}

/// The unit of `commands` on follow-up `id`, with more changes (a notification about it) to
/// go with it: decided by the firing's job, with event ids derived from `key`. Every change
/// must change something, or the unit is dropped (the read model suggested something the
/// events no longer bear out).
pub(crate) fn unit(changes: Vec<(FollowUpId, Vec<Command>)>, firing: &Firing, key: String) -> Unit {
    Unit {
        changes: changes
            .into_iter()
            .map(|(id, commands)| Change::commands(id, commands))
            .collect(),
        ctx: firing.context(),
        meta: firing.meta(key),
        all_or_nothing: true,
    }
}

/// Decides and stores the changes `plan` makes to the follow-ups `ids`, through the
/// executor: their states are loaded from the event store (one query), `plan` makes the
/// units, and everything is appended in one statement; a conflict makes the executor decide
/// again from fresh states.
pub(crate) async fn settle<P>(
    ctx: &JobContext,
    ids: Vec<FollowUpId>,
    plan: P,
) -> Result<Settled, JobError>
where
    P: Fn(&HashMap<FollowUpId, State>) -> Vec<Unit>,
{
    let batch = ctx.followups.execute_units(ids, plan).await?;
    if let Some(id) = batch.contended.first() {
        return Err(JobError::Contended { id: *id });
    }
    let mut settled = Settled::default();
    settled.already_done += batch
        .units
        .iter()
        .filter(|o| matches!(o, UnitOutcome::AlreadyStored | UnitOutcome::Duplicate))
        .count();
    // A job's units change existing follow-ups and create notifications (their first event).
    for state in &batch.written {
        if state.version == 1 {
            settled.notified += 1;
        } else {
            settled.changed += 1;
        }
    }
    Ok(settled)
}

/// Creates each of `notifications` exactly once and writes them through to the inbox
/// ([`followup_notifications::create_notifications`], decided as this firing's job).
pub(crate) async fn create_notifications(
    ctx: &JobContext,
    firing: &Firing,
    notifications: Vec<NewFollowUp>,
) -> Result<Settled, JobError> {
    let read_model = ReadModel::new(ctx.pool.clone());
    let mut settled = Settled::default();
    for chunk in notifications.chunks(ctx.config.batch_size.max(1)) {
        let done = followup_notifications::create_notifications(
            &ctx.followups,
            &read_model,
            chunk.to_vec(),
            &firing.context(),
            &firing.meta(CREATION_KEY.to_owned()),
        )
        .await
        .map_err(|e| JobError::Other(e.to_string()))?;
        settled.notified += done.created;
        settled.already_done += done.already_stored;
    }
    Ok(settled)
}
