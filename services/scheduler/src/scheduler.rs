//! [`Scheduler`]: fires the jobs on their schedules, once per tick across any number of
//! scheduler processes, with retries.
//!
//! For each job, "what is due at `now`" is the latest tick of its schedule at or before
//! `now`. The scheduler claims that firing in `scheduler_firings` (exactly one scheduler
//! wins), runs the job, and records it done, or failed with the time of its retry. Older
//! ticks are never claimed: after downtime the missed firing runs once, as the latest tick,
//! and a failed firing that a newer tick overtakes is not retried (the newer one does its
//! work, as every job acts on the state at the time it runs).

use std::collections::BTreeMap;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use followup_platform::retry::{pause, Backoff};
use followup_store::FollowUps;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::config::{JobName, SchedulerConfig};
use crate::firings::{Claim, Firings};
use crate::jobs::{
    DailyDigest, Escalate, Firing, Job, JobContext, JobError, JobReport, MarkOverdue, Remind,
    Retention,
};
use crate::schedule::CronSchedule;

/// A job with its schedule.
#[derive(Debug, Clone)]
pub struct ScheduledJob {
    /// Its name: in the firings table, logs, metrics, and the actor of its events.
    pub name: String,
    /// When it fires.
    pub schedule: CronSchedule,
    /// What it does.
    pub job: Arc<dyn Job>,
}

/// How one firing ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FiringOutcome {
    /// The job ran; what it did.
    Done(JobReport),
    /// The job failed; it is retried from `retry_at` (unless a newer tick overtakes it).
    Failed {
        /// Why.
        error: String,
        /// When it may run again.
        retry_at: DateTime<Utc>,
    },
}

/// A firing this scheduler ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FiringResult {
    /// The job.
    pub job: String,
    /// The tick it ran for.
    pub scheduled_at: DateTime<Utc>,
    /// 1 for the first run, more for retries and take-overs.
    pub attempt: u32,
    /// How it ended.
    pub outcome: FiringOutcome,
}

/// What one [`Scheduler::run_due`] step did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DueReport {
    /// The firings this scheduler ran, by job name.
    pub firings: Vec<FiringResult>,
    /// Jobs whose firing could not even be claimed (the database away); they are tried
    /// again at the next step.
    pub unclaimed: Vec<String>,
}

impl DueReport {
    /// The firing of `job` this step ran, if any.
    pub fn firing(&self, job: &str) -> Option<&FiringResult> {
        self.firings.iter().find(|f| f.job == job)
    }

    /// What `job` did, if this step ran it and it succeeded.
    pub fn report(&self, job: &str) -> Option<&JobReport> {
        match &self.firing(job)?.outcome {
            FiringOutcome::Done(report) => Some(report),
            FiringOutcome::Failed { .. } => None,
        }
    }
}

/// What trying a job's due firing came to (for the run loop's next wake-up).
#[derive(Debug)]
enum Step {
    /// This scheduler ran it.
    Ran(FiringResult),
    /// Nothing to do until the next tick (done already, or the schedule never fired yet).
    Idle,
    /// Someone holds it, or it waits for its retry, until then.
    Busy(DateTime<Utc>),
}

/// The scheduler. Cheap to clone; clones share everything.
#[derive(Debug, Clone)]
pub struct Scheduler {
    /// The jobs and their schedules.
    jobs: Arc<Vec<ScheduledJob>>,
    /// What the jobs work with.
    ctx: JobContext,
    /// Claims and records firings.
    firings: Firings,
    /// Where "now" comes from in the run loop.
    clock: Arc<dyn Clock>,
}

impl Scheduler {
    /// A scheduler running the built-in jobs that `config` schedules, over the follow-ups of
    /// `followups` (and the read model in the same database), on `clock`.
    pub fn new(config: SchedulerConfig, followups: FollowUps, clock: Arc<dyn Clock>) -> Self {
        let jobs = config
            .schedules
            .iter()
            .map(|(name, schedule)| ScheduledJob {
                name: name.as_str().to_owned(),
                schedule: schedule.clone(),
                job: builtin(*name),
            })
            .collect();
        let pool = followups.store().pool().clone();
        let instance = format!(
            "{}-{}-{}",
            std::env::var("HOSTNAME").unwrap_or_else(|_| "scheduler".into()),
            std::process::id(),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        Self {
            jobs: Arc::new(jobs),
            ctx: JobContext {
                followups,
                pool: pool.clone(),
                config,
            },
            firings: Firings::new(pool, instance),
            clock,
        }
    }

    /// The same scheduler with one more job (or a job replaced by name).
    pub fn with_job(mut self, name: &str, schedule: CronSchedule, job: Arc<dyn Job>) -> Self {
        let jobs = Arc::make_mut(&mut self.jobs);
        jobs.retain(|j| j.name != name);
        jobs.push(ScheduledJob {
            name: name.to_owned(),
            schedule,
            job,
        });
        self
    }

    /// The jobs and their schedules.
    pub fn jobs(&self) -> &[ScheduledJob] {
        &self.jobs
    }

    /// Who this scheduler is in `scheduler_firings.claimed_by`.
    pub fn instance(&self) -> &str {
        self.firings.instance()
    }

    /// The first tick of any job strictly after `after` (tests step through a schedule with
    /// it: `while let Some(t) = scheduler.next_due(t) { scheduler.run_due(t).await; }`).
    pub fn next_due(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.jobs
            .iter()
            .filter_map(|j| j.schedule.next_after(after))
            .min()
    }

    /// Runs every job whose latest tick at or before `now` has not run yet (or waits for a
    /// retry or a take-over that is due): the "process what is due" step. Jobs run side by
    /// side; one failing never stops the others.
    pub async fn run_due(&self, now: DateTime<Utc>) -> DueReport {
        let steps =
            futures::future::join_all(self.jobs.iter().map(|job| self.run_job_due(job, now))).await;
        let mut report = DueReport::default();
        for (job, step) in self.jobs.iter().zip(steps) {
            match step {
                Ok(Step::Ran(result)) => report.firings.push(result),
                Ok(Step::Idle | Step::Busy(_)) => {}
                Err(error) => {
                    tracing::warn!(job.name = %job.name, error.message = %error, "cannot claim the job's firing; trying again later");
                    report.unclaimed.push(job.name.clone());
                }
            }
        }
        report
    }

    /// [`Scheduler::run_due`] at the clock's now.
    pub async fn run_pending(&self) -> DueReport {
        self.run_due(self.clock.now()).await
    }

    /// Runs `job` for the tick `scheduled_at` at `now`, without claiming it (operators, and
    /// tests that prove a doubled firing doubles nothing).
    pub async fn fire(
        &self,
        job: &str,
        scheduled_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<JobReport, JobError> {
        let scheduled = self
            .jobs
            .iter()
            .find(|j| j.name == job)
            .ok_or_else(|| JobError::Other(format!("no job named {job}")))?;
        let firing = Firing {
            job: job.to_owned(),
            scheduled_at,
            now,
            attempt: 1,
        };
        run_isolated(scheduled.job.clone(), self.ctx.clone(), firing).await
    }

    /// Runs until `shutdown`: each job in a loop of its own, which sleeps until the job's next
    /// tick (or a retry, or a take-over), at most `max_sleep`, so that a slow job never delays
    /// another. A firing in hand is finished before it returns.
    pub async fn run(self, shutdown: CancellationToken) {
        let schedules: BTreeMap<&str, &str> = self
            .jobs
            .iter()
            .map(|j| (j.name.as_str(), j.schedule.expression()))
            .collect();
        tracing::info!(scheduler.instance = %self.instance(), scheduler.jobs = ?schedules, "scheduler started");
        let mut tasks = tokio::task::JoinSet::new();
        for index in 0..self.jobs.len() {
            let (scheduler, shutdown) = (self.clone(), shutdown.clone());
            tasks.spawn(async move { scheduler.job_loop(index, shutdown).await });
        }
        while tasks.join_next().await.is_some() {}
        tracing::info!("scheduler stopped");
    }

    /// The loop of one job.
    async fn job_loop(&self, index: usize, shutdown: CancellationToken) {
        let job = &self.jobs[index];
        let config = &self.ctx.config;
        while !shutdown.is_cancelled() {
            let now = self.clock.now();
            let wake = match self.run_job_due(job, now).await {
                Ok(Step::Ran(FiringResult {
                    outcome: FiringOutcome::Failed { retry_at, .. },
                    ..
                })) => Some(retry_at),
                Ok(Step::Ran(_) | Step::Idle) => None,
                // Not before a second from now, should the holder's time be up already.
                Ok(Step::Busy(until)) => Some(until.max(now + TimeDelta::seconds(1))),
                Err(error) => {
                    tracing::warn!(job.name = %job.name, error.message = %error, "cannot claim the job's firing; trying again later");
                    Some(now + delta(config.retry_initial))
                }
            };
            let now = self.clock.now();
            let wake = wake.into_iter().chain(job.schedule.next_after(now)).min();
            let sleep = wake
                .and_then(|w| (w - now).to_std().ok())
                .unwrap_or_default()
                .min(config.max_sleep)
                // Wake just after the tick, not a hair before it.
                + Duration::from_millis(5);
            if pause(&shutdown, sleep).await {
                break;
            }
        }
    }

    /// Claims and runs `job`'s latest tick at or before `now`, if it is not done or held.
    async fn run_job_due(
        &self,
        job: &ScheduledJob,
        now: DateTime<Utc>,
    ) -> Result<Step, sqlx::Error> {
        let Some(tick) = job.schedule.latest_at_or_before(now) else {
            return Ok(Step::Idle);
        };
        let attempt = match self
            .firings
            .claim(&job.name, tick, now, self.ctx.config.lease)
            .await?
        {
            Claim::Claimed(attempt) => attempt,
            Claim::Done => return Ok(Step::Idle),
            Claim::Busy { until } => return Ok(Step::Busy(until)),
        };
        let firing = Firing {
            job: job.name.clone(),
            scheduled_at: tick,
            now,
            attempt,
        };
        Ok(Step::Ran(self.execute(job, firing).await))
    }

    /// Runs a claimed firing, renewing the claim meanwhile, and records how it ended.
    async fn execute(&self, job: &ScheduledJob, firing: Firing) -> FiringResult {
        let started = std::time::Instant::now();
        let result = self
            .holding_lease(
                &firing,
                run_isolated(job.job.clone(), self.ctx.clone(), firing.clone()),
            )
            .await;
        let finished_at = self.clock.now();
        let outcome = match result {
            Ok(report) => {
                // A firing that changed something is worth a line at info; the many that
                // find nothing to do are at debug.
                let level_info = report.changed + report.notified > 0;
                macro_rules! done {
                    ($level:ident) => {
                        tracing::$level!(
                            job.name = %firing.job,
                            firing.scheduled_at = %firing.scheduled_at,
                            firing.attempt = firing.attempt,
                            job.candidates = report.candidates,
                            job.changed = report.changed,
                            job.notified = report.notified,
                            job.already_done = report.already_done,
                            elapsed_ms = started.elapsed().as_millis() as u64,
                            "scheduled job done"
                        )
                    };
                }
                if level_info {
                    done!(info);
                } else {
                    done!(debug);
                }
                metrics::counter!("followup_scheduler_firings_total", "job" => firing.job.clone(), "outcome" => "done").increment(1);
                metrics::counter!("followup_scheduler_changed_total", "job" => firing.job.clone())
                    .increment(report.changed as u64);
                metrics::counter!("followup_scheduler_notified_total", "job" => firing.job.clone())
                    .increment(report.notified as u64);
                if let Err(error) = self
                    .firings
                    .done(&firing.job, firing.scheduled_at, finished_at, &report)
                    .await
                {
                    // Its effects are stored; when the lease runs out another run finds
                    // them done and appends nothing.
                    tracing::debug!(job.name = %firing.job, error.message = %error, "cannot record the firing as done");
                }
                FiringOutcome::Done(report)
            }
            Err(error) => {
                let retry_at = firing.now + self.backoff(firing.attempt);
                tracing::warn!(
                    job.name = %firing.job,
                    firing.scheduled_at = %firing.scheduled_at,
                    firing.attempt = firing.attempt,
                    retry.at = %retry_at,
                    error.message = %error,
                    "scheduled job failed; it is retried"
                );
                metrics::counter!("followup_scheduler_firings_total", "job" => firing.job.clone(), "outcome" => "failed").increment(1);
                if let Err(record) = self
                    .firings
                    .failed(
                        &firing.job,
                        firing.scheduled_at,
                        finished_at,
                        retry_at,
                        &error.to_string(),
                    )
                    .await
                {
                    // The claim's lease runs out instead, and the firing is retried then.
                    tracing::debug!(job.name = %firing.job, error.message = %record, "cannot record the failed firing");
                }
                FiringOutcome::Failed {
                    error: error.to_string(),
                    retry_at,
                }
            }
        };
        FiringResult {
            job: firing.job,
            scheduled_at: firing.scheduled_at,
            attempt: firing.attempt,
            outcome,
        }
    }

    /// Waits for `work`, renewing the claim on `firing` every third of the lease meanwhile.
    async fn holding_lease<T>(
        &self,
        firing: &Firing,
        work: impl std::future::Future<Output = T>,
    ) -> T {
        let lease = self.ctx.config.lease;
        let every = (lease / 3).max(Duration::from_millis(100));
        let mut work = pin!(work);
        let mut renew = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        loop {
            tokio::select! {
                result = &mut work => return result,
                _ = renew.tick() => {
                    let until = self.clock.now() + delta(lease);
                    if let Err(error) = self.firings.renew(&firing.job, firing.scheduled_at, until).await {
                        tracing::debug!(job.name = %firing.job, error.message = %error, "cannot renew the claim on a firing");
                    }
                }
            }
        }
    }

    /// The wait before retrying after failed attempt `attempt`: doubling from the initial
    /// wait, at most the longest.
    fn backoff(&self, attempt: u32) -> TimeDelta {
        let config = &self.ctx.config;
        delta(Backoff::new(config.retry_initial, config.retry_max).delay(attempt))
    }
}

/// Runs a job in a task of its own, so that a panic fails this firing and nothing else.
async fn run_isolated(
    job: Arc<dyn Job>,
    ctx: JobContext,
    firing: Firing,
) -> Result<JobReport, JobError> {
    let task = tokio::spawn(async move { job.run(&ctx, &firing).await });
    match task.await {
        Ok(result) => result,
        Err(panic) => Err(JobError::Other(format!("the job panicked: {panic}"))),
    }
}

/// The built-in job called `name`.
fn builtin(name: JobName) -> Arc<dyn Job> {
    match name {
        JobName::Overdue => Arc::new(MarkOverdue),
        JobName::Remind => Arc::new(Remind),
        JobName::Digest => Arc::new(DailyDigest),
        JobName::Escalate => Arc::new(Escalate),
        JobName::Retention => Arc::new(Retention),
    }
}

fn delta(duration: Duration) -> TimeDelta {
    TimeDelta::from_std(duration).unwrap_or(TimeDelta::MAX)
}
