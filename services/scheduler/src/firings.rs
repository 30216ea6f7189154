//! The table `scheduler_firings`: which firings have been claimed, are done, or failed and
//! wait for a retry. It is how several schedulers share one schedule: a firing is claimed by
//! one statement, which exactly one of them wins (see the migration `*_scheduler.sql`).

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use sqlx::PgPool;

use crate::jobs::JobReport;

/// Done firings older than this are deleted (the latest of each job is always younger).
const KEEP: TimeDelta = TimeDelta::days(30);

/// Claims a firing: inserts it as running, or takes over one whose lease (running) or
/// back-off (failed) has run out. Returns the attempt number when this scheduler got it.
const CLAIM_SQL: &str = r#"
INSERT INTO scheduler_firings AS f
    (job, scheduled_at, status, attempts, claimed_by, lease_until, started_at)
VALUES ($1, $2, 'running', 1, $3, $5, $4)
ON CONFLICT (job, scheduled_at) DO UPDATE
    SET status = 'running', attempts = f.attempts + 1, claimed_by = EXCLUDED.claimed_by,
        lease_until = EXCLUDED.lease_until, started_at = EXCLUDED.started_at,
        finished_at = NULL
    WHERE f.status <> 'done' AND f.lease_until <= $4
RETURNING attempts
"#;

/// The outcome of trying to claim a firing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// This scheduler runs it; the attempt number (1 for the first run).
    Claimed(u32),
    /// It is done already.
    Done,
    /// Another scheduler runs it, or it failed and waits for its retry: look again at
    /// `until` (when the lease or the back-off runs out).
    Busy {
        /// When the firing may be claimed again.
        until: DateTime<Utc>,
    },
}

/// Access to `scheduler_firings`. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Firings {
    /// The database.
    pool: PgPool,
    /// Who this scheduler is (`claimed_by`): host, process and a random part.
    instance: String,
}

impl Firings {
    /// The firings as scheduler `instance` sees them.
    pub fn new(pool: PgPool, instance: String) -> Self {
        Self { pool, instance }
    }

    /// Who this scheduler is.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// Tries to claim the firing of `job` at `scheduled_at`, at `now`, for `lease`.
    pub async fn claim(
        &self,
        job: &str,
        scheduled_at: DateTime<Utc>,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<Claim, sqlx::Error> {
        let lease_until = now + TimeDelta::from_std(lease).unwrap_or(TimeDelta::minutes(5));
        let attempts: Option<i32> = sqlx::query_scalar(CLAIM_SQL)
            .bind(job)
            .bind(scheduled_at)
            .bind(&self.instance)
            .bind(now)
            .bind(lease_until)
            .fetch_optional(&self.pool)
            .await?;
        if let Some(attempts) = attempts {
            return Ok(Claim::Claimed(attempts.max(1) as u32));
        }
        let row: Option<(String, DateTime<Utc>)> = sqlx::query_as(
            "SELECT status, lease_until FROM scheduler_firings WHERE job = $1 AND scheduled_at = $2",
        )
        .bind(job)
        .bind(scheduled_at)
        .fetch_optional(&self.pool)
        .await?;
        Ok(match row {
            Some((status, _)) if status == "done" => Claim::Done,
            Some((_, until)) => Claim::Busy { until },
            // Gone meanwhile (never, short of an operator deleting it): look again soon.
            None => Claim::Busy { until: now },
        })
    }

    /// Extends this scheduler's claim on a running firing to `until`.
    pub async fn renew(
        &self,
        job: &str,
        scheduled_at: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE scheduler_firings SET lease_until = $4
             WHERE job = $1 AND scheduled_at = $2 AND claimed_by = $3 AND status = 'running'",
        )
        .bind(job)
        .bind(scheduled_at)
        .bind(&self.instance)
        .bind(until)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records that this scheduler finished the firing, and forgets firings of the job older
    /// than a month.
    pub async fn done(
        &self,
        job: &str,
        scheduled_at: DateTime<Utc>,
        finished_at: DateTime<Utc>,
        report: &JobReport,
    ) -> Result<(), sqlx::Error> {
        let report = serde_json::to_value(report).unwrap_or_default();
        sqlx::query(
            "UPDATE scheduler_firings
             SET status = 'done', finished_at = $4, report = $5, last_error = NULL
             WHERE job = $1 AND scheduled_at = $2 AND claimed_by = $3",
        )
        .bind(job)
        .bind(scheduled_at)
        .bind(&self.instance)
        .bind(finished_at)
        .bind(report)
        .execute(&self.pool)
        .await?;
        sqlx::query("DELETE FROM scheduler_firings WHERE job = $1 AND scheduled_at < $2")
            .bind(job)
            .bind(scheduled_at - KEEP)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Records that the firing failed; it may be claimed again from `retry_at`.
    pub async fn failed(
        &self,
        job: &str,
        scheduled_at: DateTime<Utc>,
        finished_at: DateTime<Utc>,
        retry_at: DateTime<Utc>,
        error: &str,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE scheduler_firings
             SET status = 'failed', finished_at = $4, lease_until = $5, last_error = $6
             WHERE job = $1 AND scheduled_at = $2 AND claimed_by = $3",
        )
        .bind(job)
        .bind(scheduled_at)
        .bind(&self.instance)
        .bind(finished_at)
        .bind(retry_at)
        .bind(error)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
