//! [`MarkOverdue`]: open follow-ups whose due date has passed are marked overdue (the
//! `marked_overdue` event records the moment), and their owner gets a notification
//! ("Overskredet frist: …"). Notifications themselves are marked but not notified about.

use chrono::{DateTime, Utc};
use followup_domain::{Command, FollowUpId, Kind};
use futures::future::BoxFuture;

use super::{
    advance, candidate_page, settle, unit, After, Candidate, Firing, Job, JobContext, JobError,
    JobReport, Unit,
};
use crate::notice::{danish_datetime, notice_id, notification, regarding, subject};

/// The candidates: open, due before now, not marked yet, in due order; read from the partial
/// index `followups_view_due_unmarked` alone. The first page.
const FIRST_PAGE_SQL: &str = r#"
SELECT id, due FROM followups_view
WHERE status = 'open' AND overdue_since IS NULL AND due IS NOT NULL AND due < $1
ORDER BY due, id
LIMIT $2
"#;

/// The pages after the first: after the last (due, id) seen.
const NEXT_PAGE_SQL: &str = r#"
SELECT id, due FROM followups_view
WHERE status = 'open' AND overdue_since IS NULL AND due IS NOT NULL AND due < $1
  AND (due, id) > ($3, $4)
ORDER BY due, id
LIMIT $2
"#;

/// Marks open follow-ups overdue once their due date has passed, and notifies the owner.
#[derive(Debug, Clone, Copy, Default)]
pub struct MarkOverdue;

impl Job for MarkOverdue {
    fn run<'a>(
        &'a self,
        ctx: &'a JobContext,
        firing: &'a Firing,
    ) -> BoxFuture<'a, Result<JobReport, JobError>> {
        Box::pin(run(ctx, firing))
    }
}

/// One page of candidates (`id`, `due`) after `after`, for the overdue scan at `now`.
pub async fn candidates(
    pool: &sqlx::PgPool,
    now: DateTime<Utc>,
    after: After,
    limit: usize,
) -> Result<Vec<Candidate>, sqlx::Error> {
    candidate_page(pool, FIRST_PAGE_SQL, NEXT_PAGE_SQL, after, |q| {
        q.bind(now).bind(limit as i64)
    })
    .await
}

async fn run(ctx: &JobContext, firing: &Firing) -> Result<JobReport, JobError> {
    let mut report = JobReport::default();
    let mut after = None;
    loop {
        let page = candidates(&ctx.pool, firing.now, after, ctx.config.batch_size).await?;
        let Some(ids) = advance(&mut after, &page) else {
            break;
        };
        report.candidates += ids.len();
        let settled = settle(ctx, ids, |states| {
            states
                .iter()
                .filter_map(|(id, state)| plan(*id, state, firing))
                .collect()
        })
        .await?;
        report.add(settled);
    }
    Ok(report)
}

/// Marks follow-up `id` overdue (decided on its state from the events, which may be ahead of
/// the read model), with a notification for its owner unless it is a notification itself.
fn plan(id: FollowUpId, state: &followup_domain::State, firing: &Firing) -> Option<Unit> {
    let followup = state.as_ref()?;
    // Keyed by the version decided on: a second scheduler deciding on the same version makes
    // the same event ids; a follow-up overdue again later (after a reopen or a new due date)
    // is decided on a later version.
    let key = format!("scheduler/overdue/{id}/v{}", followup.version);
    let mut changes = vec![(id, vec![Command::MarkOverdue])];
    if followup.kind != Kind::Notification {
        let due = followup.due?;
        let notice = notice_id(&[
            "overdue",
            &id.to_string(),
            &format!("v{}", followup.version),
        ]);
        let new = notification(
            notice,
            followup.institution.clone(),
            followup.owner.clone(),
            subject("Overskredet frist: ", followup.subject.as_str(), ""),
            &format!(
                "Fristen for «{}» var {}, og opfølgningen er ikke afsluttet.",
                followup.subject,
                danish_datetime(due)
            ),
            regarding(followup),
            &firing.job,
        );
        changes.push((notice, vec![Command::Create(new)]));
    }
    Some(unit(changes, firing, key))
}
