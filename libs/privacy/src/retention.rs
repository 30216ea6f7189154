//! How long finished follow-ups keep their personal data ([`RetentionRules`], from
//! `FOLLOWUP_RETENTION`), and which follow-ups' retention has ended ([`expired`]).
//!
//! A rule is `<kind>=<period>` or `<kind>.<status>=<period>`, comma-separated, with the
//! period in days or years (`30d`, `5y`; a year is 365 days):
//! `exception=5y,task=5y,notification=1y,task.closed=1y`. A rule with a status wins over the
//! kind's rule. Retention runs from the moment a follow-up finished (completed or closed);
//! open follow-ups are never erased by retention, nor are those under a legal hold. A kind
//! without a rule is kept.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, TimeDelta, Utc};
use followup_domain::{FollowUpId, Kind, Status};
use sqlx::PgPool;
use uuid::Uuid;

/// The default rules: finished follow-ups keep their personal data five years, notifications
/// one.
pub const DEFAULT_RULES: &str = "exception=5y,task=5y,notification=1y";

/// One rule: how long finished follow-ups of a kind (and status) are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionRule {
    /// The kind it applies to.
    pub kind: Kind,
    /// The finished status it applies to; `None`: both.
    pub status: Option<Status>,
    /// How long after finishing the personal data is kept.
    pub period: TimeDelta,
}

impl RetentionRule {
    /// The reason recorded in the `erased` events of this rule, in Danish.
    pub fn reason(&self) -> String {
        let days = self.period.num_days();
        let period = if days % 365 == 0 {
            format!("{} år", days / 365)
        } else {
            format!("{days} dage")
        };
        match self.status {
            Some(status) => format!(
                "Opbevaringsperioden er udløbet: {period} for {} med status {}",
                self.kind, status
            ),
            None => format!("Opbevaringsperioden er udløbet: {period} for {}", self.kind),
        }
    }
}

/// The retention rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionRules(Vec<RetentionRule>);

/// A rule that cannot be read: says which and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("retention rule {rule:?}: {reason}")]
pub struct RetentionRuleError {
    /// The rule as written.
    pub rule: String,
    /// What is wrong with it.
    pub reason: String,
}

impl Default for RetentionRules {
    fn default() -> Self {
        DEFAULT_RULES.parse().expect("the default rules are valid")
    }
}

impl FromStr for RetentionRules {
    type Err = RetentionRuleError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut rules: Vec<RetentionRule> = Vec::new();
        for written in s.split(',').map(str::trim).filter(|r| !r.is_empty()) {
            let error = |reason: &str| RetentionRuleError {
                rule: written.to_owned(),
                reason: reason.to_owned(),
            };
            let (target, period) = written
                .split_once('=')
                .ok_or_else(|| error("expected <kind>=<period> or <kind>.<status>=<period>"))?;
            let (kind, status) = match target.trim().split_once('.') {
                Some((kind, status)) => (kind, Some(status)),
                None => (target.trim(), None),
            };
            let kind = Kind::from_str(kind)
                .map_err(|_| error("the kind must be exception, task or notification"))?;
            let status = match status {
                None => None,
                Some(status) => match Status::from_str(status) {
                    Ok(s @ (Status::Completed | Status::Closed)) => Some(s),
                    _ => return Err(error("the status must be completed or closed")),
                },
            };
            let period = parse_period(period.trim())
                .ok_or_else(|| error("the period must be days or years, such as 30d or 5y"))?;
            if rules.iter().any(|r| r.kind == kind && r.status == status) {
                return Err(error("this kind and status has a rule already"));
            }
            rules.push(RetentionRule {
                kind,
                status,
                period,
            });
        }
        Ok(Self(rules))
    }
}

impl fmt::Display for RetentionRules {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let written: Vec<String> = self
            .0
            .iter()
            .map(|r| match r.status {
                Some(status) => format!("{}.{}={}d", r.kind, status, r.period.num_days()),
                None => format!("{}={}d", r.kind, r.period.num_days()),
            })
            .collect();
        f.write_str(&written.join(","))
    }
}

fn parse_period(text: &str) -> Option<TimeDelta> {
    let (number, unit) = text.split_at(text.len().checked_sub(1)?);
    let number: i64 = number.parse().ok().filter(|n| *n >= 1 && *n <= 100 * 365)?;
    match unit {
        "d" => TimeDelta::try_days(number),
        "y" => TimeDelta::try_days(number.checked_mul(365)?),
        _ => None,
    }
}

impl RetentionRules {
    /// The rules.
    pub fn rules(&self) -> &[RetentionRule] {
        &self.0
    }

    /// The rule for a finished follow-up of `kind` with `status`, if any.
    pub fn rule_for(&self, kind: Kind, status: Status) -> Option<&RetentionRule> {
        self.0
            .iter()
            .find(|r| r.kind == kind && r.status == Some(status))
            .or_else(|| self.0.iter().find(|r| r.kind == kind && r.status.is_none()))
    }
}

/// Up to `limit` follow-ups after `after` (by id) whose retention under `rule` has ended at
/// `now`: of its kind, finished with a status the rule applies to (for a rule without a
/// status, a status no more specific rule covers), more than its period ago, not erased and
/// not under a legal hold. From the read model.
pub async fn expired(
    pool: &PgPool,
    rules: &RetentionRules,
    rule: &RetentionRule,
    now: DateTime<Utc>,
    after: Option<FollowUpId>,
    limit: i64,
) -> Result<Vec<FollowUpId>, sqlx::Error> {
    let statuses: Vec<&str> = [Status::Completed, Status::Closed]
        .into_iter()
        .filter(|s| match rule.status {
            Some(status) => status == *s,
            None => rules.rule_for(rule.kind, *s) == Some(rule),
        })
        .map(Status::as_str)
        .collect();
    let ids: Vec<Uuid> = sqlx::query_scalar(
        "SELECT id FROM followups_view
         WHERE kind = $1 AND status = ANY($2)
           AND (doc->>'finished_at')::timestamptz < $3
           AND jsonb_typeof(doc->'erased_at') IS DISTINCT FROM 'string'
           AND jsonb_typeof(doc->'legal_hold') IS DISTINCT FROM 'string'
           AND id > $4
         ORDER BY id LIMIT $5",
    )
    .bind(rule.kind.as_str())
    .bind(&statuses)
    .bind(now - rule.period)
    .bind(after.map_or(Uuid::nil(), |id| id.as_uuid()))
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(ids.into_iter().map(FollowUpId::from_uuid).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_are_read_per_kind_and_status_and_the_specific_one_wins() {
        let rules: RetentionRules = "exception=5y, task=30d, task.closed=1y".parse().unwrap();
        let task_closed = rules.rule_for(Kind::Task, Status::Closed).unwrap();
        assert_eq!(task_closed.period, TimeDelta::days(365));
        let task_completed = rules.rule_for(Kind::Task, Status::Completed).unwrap();
        assert_eq!(task_completed.period, TimeDelta::days(30));
        assert_eq!(
            rules
                .rule_for(Kind::Exception, Status::Closed)
                .unwrap()
                .period,
            TimeDelta::days(5 * 365)
        );
        assert_eq!(rules.rule_for(Kind::Notification, Status::Closed), None);
        assert_eq!(
            task_closed.reason(),
            "Opbevaringsperioden er udløbet: 1 år for task med status closed"
        );
    }

    #[test]
    fn a_rule_that_cannot_be_read_is_refused_with_a_reason() {
        for bad in [
            "exception",
            "case=5y",
            "exception.open=5y",
            "exception=5w",
            "exception=0d",
            "task=1y,task=2y",
        ] {
            assert!(bad.parse::<RetentionRules>().is_err(), "{bad}");
        }
        assert!("".parse::<RetentionRules>().unwrap().rules().is_empty());
        assert_eq!(RetentionRules::default().rules().len(), 3);
    }
}
