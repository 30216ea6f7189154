//! [`Retention`]: erases the personal data of finished follow-ups whose retention has ended
//! (`FOLLOWUP_RETENTION`: by kind and status, from the moment they finished), unless a legal
//! hold keeps them, through [`followup_privacy::Privacy::erase_followups`]; and deletes
//! delivered digest entries older than [`DIGEST_ENTRY_RETENTION_DAYS`] (the digest that
//! delivered them holds their text, under its own retention).
//!
//! Exactly once, like every job: each follow-up's `erased` event has an id derived from the
//! job and the follow-up, so a second run or a second scheduler finds it stored, and
//! destroying a key that is gone already changes nothing.

use followup_domain::ErasureCause;
use followup_privacy::{retention, Privacy};
use futures::future::BoxFuture;

use super::{Firing, Job, JobContext, JobError, JobReport};

/// How long a digest entry is kept after its digest was delivered, in days.
pub const DIGEST_ENTRY_RETENTION_DAYS: i64 = 30;

/// The idempotency key of the `erased` events this job records.
const KEY: &str = "scheduler/retention";

/// Ends the retention of follow-ups.
#[derive(Debug, Clone, Copy, Default)]
pub struct Retention;

impl Job for Retention {
    fn run<'a>(
        &'a self,
        ctx: &'a JobContext,
        firing: &'a Firing,
    ) -> BoxFuture<'a, Result<JobReport, JobError>> {
        Box::pin(run(ctx, firing))
    }
}

async fn run(ctx: &JobContext, firing: &Firing) -> Result<JobReport, JobError> {
    let mut report = JobReport::default();
    let privacy = Privacy::new(ctx.followups.clone());
    let rules = &ctx.config.retention;
    let limit = ctx.config.batch_size.max(1) as i64;
    let context = firing.context();
    for rule in rules.rules() {
        let reason = followup_domain::Reason::system(rule.reason());
        let mut after = None;
        loop {
            let page = retention::expired(&ctx.pool, rules, rule, firing.now, after, limit).await?;
            let Some(last) = page.last() else {
                break;
            };
            after = Some(*last);
            report.candidates += page.len();
            let erased = privacy
                .erase_followups(&page, ErasureCause::Retention, &reason, &context, KEY)
                .await
                .map_err(|e| JobError::Other(e.to_string()))?;
            report.changed += erased.erased.len() - erased.already_erased;
            report.already_done += erased.already_erased;
        }
    }
    sqlx::query(
        "DELETE FROM digest_entries
         WHERE digest_id IS NOT NULL AND occurred_at < $1",
    )
    .bind(firing.now - chrono::TimeDelta::days(DIGEST_ENTRY_RETENTION_DAYS))
    .execute(&ctx.pool)
    .await?;
    Ok(report)
}
