//! `followupctl schedule`: the scheduled jobs' schedules, and firing one now.
//!
//! `schedule fire <job>` runs a job for its latest tick at or before now, as the scheduler
//! would have (after an outage, or to see its effect at once in a demo). It is safe beside
//! running schedulers: every change and notification a job makes has an id derived from the
//! job, the tick and the follow-up, so firing a tick that already ran (or runs at the same
//! time elsewhere) doubles nothing; the report counts what was found done already.

use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use followup_scheduler::{Scheduler, SchedulerConfig, SystemClock, TIME_ZONE};
use followup_store::FollowUps;
use serde::Serialize;
use std::sync::Arc;

use crate::output::Report;

/// What to do with the schedules.
#[derive(Debug, Subcommand)]
pub enum ScheduleCmd {
    /// Lists the jobs, their schedules (from the same settings as `followupd scheduler`) and
    /// their next tick.
    ///
    /// Example: followupctl schedule list
    List,
    /// Runs one job now for its latest tick (exactly once: what that tick did already is
    /// not done again).
    ///
    /// Example: followupctl schedule fire digest
    Fire(FireArgs),
}

/// Settings of `schedule fire`.
#[derive(Debug, Args)]
pub struct FireArgs {
    /// The job: overdue, remind, digest or escalate.
    job: String,
}

/// One job and its schedule.
#[derive(Debug, Serialize)]
pub struct JobLine {
    /// The job's name.
    job: String,
    /// Its cron expression (Europe/Copenhagen).
    schedule: String,
    /// Its next tick.
    next: Option<DateTime<Utc>>,
}

/// The jobs' schedules.
#[derive(Debug, Serialize)]
pub struct Schedules {
    /// One per job that is on.
    jobs: Vec<JobLine>,
}

impl Report for Schedules {
    fn human(&self) -> String {
        let mut text = String::new();
        for line in &self.jobs {
            let next = line.next.map_or_else(
                || "never".to_owned(),
                |t| {
                    t.with_timezone(&TIME_ZONE)
                        .format("%Y-%m-%d %H:%M:%S %Z")
                        .to_string()
                },
            );
            text.push_str(&format!(
                "{:<9} {:<18} next {next}\n",
                line.job, line.schedule
            ));
        }
        text
    }
}

/// What a fired job did.
#[derive(Debug, Serialize)]
pub struct Fired {
    /// The job.
    job: String,
    /// The tick it ran for.
    tick: DateTime<Utc>,
    /// Follow-ups it looked at.
    candidates: usize,
    /// Follow-ups it changed.
    changed: usize,
    /// Notifications it created.
    notified: usize,
    /// Changes and notifications that were stored already.
    already_done: usize,
}

impl Report for Fired {
    fn human(&self) -> String {
        format!(
            "{} for the tick of {}: {} looked at, {} changed, {} notification(s) created, {} done before",
            self.job,
            self.tick.with_timezone(&TIME_ZONE).format("%Y-%m-%d %H:%M %Z"),
            self.candidates,
            self.changed,
            self.notified,
            self.already_done
        )
    }
}

/// The scheduler as `followupd scheduler` would run it, from the same settings.
fn scheduler(followups: FollowUps) -> anyhow::Result<Scheduler> {
    let config = SchedulerConfig::from_env()?;
    Ok(Scheduler::new(config, followups, Arc::new(SystemClock)))
}

/// The jobs that are on, with their schedules.
pub fn list(followups: FollowUps) -> anyhow::Result<Schedules> {
    let scheduler = scheduler(followups)?;
    let now = Utc::now();
    let jobs = scheduler
        .jobs()
        .iter()
        .map(|j| JobLine {
            job: j.name.clone(),
            schedule: j.schedule.expression().to_owned(),
            next: j.schedule.next_after(now),
        })
        .collect();
    Ok(Schedules { jobs })
}

/// Runs `args.job` for its latest tick at or before now.
pub async fn fire(args: &FireArgs, followups: FollowUps) -> anyhow::Result<Fired> {
    let scheduler = scheduler(followups)?;
    let job = scheduler
        .jobs()
        .iter()
        .find(|j| j.name == args.job)
        .ok_or_else(|| {
            let names: Vec<&str> = scheduler.jobs().iter().map(|j| j.name.as_str()).collect();
            anyhow::anyhow!(
                "no job named {:?} is scheduled (jobs: {}; a job set to `off` cannot be fired)",
                args.job,
                names.join(", ")
            )
        })?;
    let now = Utc::now();
    let tick = job
        .schedule
        .latest_at_or_before(now)
        .ok_or_else(|| anyhow::anyhow!("{} has no tick before now", job.name))?;
    let report = scheduler.fire(&job.name, tick, now).await?;
    Ok(Fired {
        job: job.name.clone(),
        tick,
        candidates: report.candidates,
        changed: report.changed,
        notified: report.notified,
        already_done: report.already_done,
    })
}
