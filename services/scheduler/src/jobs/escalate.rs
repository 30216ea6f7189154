//! [`Escalate`]: an open exception overdue for longer than `FOLLOWUP_ESCALATION_AFTER` (its
//! due date that long ago; 72 hours by default) gets priority `high` and is shared, with
//! write access, with the escalation team: the team configured for its rule
//! (`FOLLOWUP_ESCALATION_TEAMS`), else `FOLLOWUP_ESCALATION_TEAM`. An exception that has both
//! already is left alone; the owner keeps it.

use chrono::{DateTime, Utc};
use followup_domain::{Access, Command, Edit, FollowUpId, Kind, Principal, Priority, Source};
use futures::future::BoxFuture;

use super::{
    advance, candidate_page, settle, unit, Firing, Job, JobContext, JobError, JobReport, Unit,
};

/// The candidates: open exceptions due before the cut-off that are not yet escalated to the
/// default team (others are checked on their state), from the partial index
/// `followups_view_open_exceptions_due`. The first page.
const FIRST_PAGE_SQL: &str = r#"
SELECT id, due FROM followups_view
WHERE status = 'open' AND kind = 'exception' AND due IS NOT NULL AND due < $1
  AND NOT (priority = 'high' AND $3 = ANY (principals))
ORDER BY due, id
LIMIT $2
"#;

/// The pages after the first.
const NEXT_PAGE_SQL: &str = r#"
SELECT id, due FROM followups_view
WHERE status = 'open' AND kind = 'exception' AND due IS NOT NULL AND due < $1
  AND NOT (priority = 'high' AND $3 = ANY (principals))
  AND (due, id) > ($4, $5)
ORDER BY due, id
LIMIT $2
"#;

/// Escalates exceptions that have been overdue for long.
#[derive(Debug, Clone, Copy, Default)]
pub struct Escalate;

impl Job for Escalate {
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
    let cutoff = firing.now - ctx.config.escalation_after;
    let limit = ctx.config.batch_size.max(1) as i64;
    // Exceptions already escalated to the default team are skipped by the query; those of
    // rules with a team of their own are looked at and found done on their state.
    let default_team = Principal::Team(ctx.config.escalation_team.clone()).to_string();
    let mut after = None;
    loop {
        let page = candidate_page(&ctx.pool, FIRST_PAGE_SQL, NEXT_PAGE_SQL, after, |q| {
            q.bind(cutoff).bind(limit).bind(&default_team)
        })
        .await?;
        let Some(ids) = advance(&mut after, &page) else {
            break;
        };
        report.candidates += ids.len();
        let settled = settle(ctx, ids, |states| {
            states
                .iter()
                .filter_map(|(id, state)| plan(ctx, *id, state, firing, cutoff))
                .collect()
        })
        .await?;
        report.add(settled);
    }
    Ok(report)
}

/// Escalates exception `id` if its state (from the events) is still open and overdue since
/// before `cutoff`: priority high, shared with write access with its escalation team.
fn plan(
    ctx: &JobContext,
    id: FollowUpId,
    state: &followup_domain::State,
    firing: &Firing,
    cutoff: DateTime<Utc>,
) -> Option<Unit> {
    let followup = state.as_ref()?;
    if followup.kind != Kind::Exception || !followup.is_open() || followup.due? >= cutoff {
        return None;
    }
    let rule_id = match &followup.source {
        Source::Rule { rule_id, .. } => Some(rule_id.as_str()),
        _ => None,
    };
    let team = Principal::Team(ctx.config.escalation_team_for(rule_id).clone());
    let mut commands = Vec::new();
    if followup.priority != Priority::High {
        commands.push(Command::Edit(Edit {
            priority: Some(Priority::High),
            ..Edit::default()
        }));
    }
    if followup.owner != team && followup.shares.get(&team) != Some(&Access::Write) {
        commands.push(Command::Share {
            principal: team,
            access: Access::Write,
        });
    }
    if commands.is_empty() {
        return None;
    }
    let key = format!("scheduler/escalate/{id}/v{}", followup.version);
    Some(unit(vec![(id, commands)], firing, key))
}
