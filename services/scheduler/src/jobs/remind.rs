//! [`Remind`]: the owner of an open exception or task whose due date is less than the
//! reminder lead away (`FOLLOWUP_REMINDER_LEAD`, 24 hours by default) gets one notification
//! ("Påmindelse: … har frist 27. november 2026 kl. 12:00"). One per follow-up and due date:
//! a follow-up whose due date is moved is reminded again of the new one.

use chrono::{DateTime, Utc};
use followup_domain::{Kind, NewFollowUp};
use futures::future::BoxFuture;

use super::{
    advance, candidate_page, create_notifications, Firing, Job, JobContext, JobError, JobReport,
};
use crate::notice::{danish_datetime, notice_id, notification, regarding, subject};

/// The candidates: open, not notifications, due within (now, now + lead], in due order; the
/// partial index `followups_view_due_unmarked` finds them. The first page.
const FIRST_PAGE_SQL: &str = r#"
SELECT id, due FROM followups_view
WHERE status = 'open' AND overdue_since IS NULL AND due IS NOT NULL
  AND due > $1 AND due <= $2 AND kind <> 'notification'
ORDER BY due, id
LIMIT $3
"#;

/// The pages after the first.
const NEXT_PAGE_SQL: &str = r#"
SELECT id, due FROM followups_view
WHERE status = 'open' AND overdue_since IS NULL AND due IS NOT NULL
  AND due > $1 AND due <= $2 AND kind <> 'notification'
  AND (due, id) > ($4, $5)
ORDER BY due, id
LIMIT $3
"#;

/// Reminds owners a while before the due date.
#[derive(Debug, Clone, Copy, Default)]
pub struct Remind;

impl Job for Remind {
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
    let until = firing.now + ctx.config.reminder_lead;
    let limit = ctx.config.batch_size.max(1) as i64;
    let mut after = None;
    loop {
        let page = candidate_page(&ctx.pool, FIRST_PAGE_SQL, NEXT_PAGE_SQL, after, |q| {
            q.bind(firing.now).bind(until).bind(limit)
        })
        .await?;
        let Some(ids) = advance(&mut after, &page) else {
            break;
        };
        report.candidates += ids.len();
        // Decided on the state from the events: the read model may lag behind a completion
        // or a new due date.
        let states = ctx.followups.load_many(&ids).await?;
        let mut reminders: Vec<NewFollowUp> = states
            .values()
            .filter_map(|state| reminder(state.as_ref()?, firing, until))
            .collect();
        reminders.sort_by_key(|n| n.id);
        let settled = create_notifications(ctx, firing, reminders).await?;
        report.add(settled);
    }
    Ok(report)
}

/// The reminder for `followup`, if it is open and due within (now, `until`].
fn reminder(
    followup: &followup_domain::FollowUp,
    firing: &Firing,
    until: DateTime<Utc>,
) -> Option<NewFollowUp> {
    let due = followup.due?;
    if !followup.is_open()
        || followup.kind == Kind::Notification
        || due <= firing.now
        || due > until
    {
        return None;
    }
    let id = notice_id(&["remind", &followup.id.to_string(), &due.to_rfc3339()]);
    let when = danish_datetime(due);
    Some(notification(
        id,
        followup.institution.clone(),
        followup.owner.clone(),
        subject(
            "Påmindelse: ",
            followup.subject.as_str(),
            &format!(" har frist {when}"),
        ),
        &format!("«{}» skal være afsluttet senest {when}.", followup.subject),
        regarding(followup),
        &firing.job,
    ))
}
