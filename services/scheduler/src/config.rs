//! [`SchedulerConfig`]: the jobs' schedules and settings, from the environment and the
//! optional TOML file named by `FOLLOWUP_CONFIG` (the same keys in lower case; the environment
//! wins), like every other setting of the service. A missing or invalid setting stops
//! start-up with a [`ConfigError`] that names it and the value given.
//!
//! | variable | meaning | default |
//! |---|---|---|
//! | `FOLLOWUP_SCHEDULE_OVERDUE` | when to mark follow-ups overdue | `0 */5 * * * *` |
//! | `FOLLOWUP_SCHEDULE_REMIND` | when to send reminders | `0 0 * * * *` |
//! | `FOLLOWUP_SCHEDULE_DIGEST` | when to send the daily digest | `0 0 7 * * *` |
//! | `FOLLOWUP_SCHEDULE_ESCALATE` | when to escalate overdue exceptions | `0 */15 * * * *` |
//! | `FOLLOWUP_REMINDER_LEAD` | how long before the due date to remind | `24h` |
//! | `FOLLOWUP_ESCALATION_AFTER` | how long an exception is overdue before escalation | `72h` |
//! | `FOLLOWUP_ESCALATION_TEAM` | the team escalated exceptions are shared with | `ledelse` |
//! | `FOLLOWUP_ESCALATION_TEAMS` | per rule: `rule-id=team,rule-id=team` | none |
//! | `FOLLOWUP_SCHEDULE_RETENTION` | when to erase the follow-ups whose retention has ended | `0 30 2 * * *` |
//! | `FOLLOWUP_RETENTION` | how long finished follow-ups keep their personal data, by kind and status (`followup_privacy::retention`) | `exception=5y,task=5y,notification=1y` |
//!
//! A schedule of `off` turns its job off.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use chrono::TimeDelta;
use followup_domain::TeamId;
pub use followup_platform::ConfigError;
use followup_platform::Sources;
use followup_privacy::retention::RetentionRuleError;
use followup_privacy::RetentionRules;

use crate::schedule::CronSchedule;

/// The built-in jobs and the settings that name their schedules.
pub const JOB_SETTINGS: [(JobName, &str, &str); 5] = [
    (
        JobName::Overdue,
        "FOLLOWUP_SCHEDULE_OVERDUE",
        "0 */5 * * * *",
    ),
    (JobName::Remind, "FOLLOWUP_SCHEDULE_REMIND", "0 0 * * * *"),
    (JobName::Digest, "FOLLOWUP_SCHEDULE_DIGEST", "0 0 7 * * *"),
    (
        JobName::Escalate,
        "FOLLOWUP_SCHEDULE_ESCALATE",
        "0 */15 * * * *",
    ),
    (
        JobName::Retention,
        "FOLLOWUP_SCHEDULE_RETENTION",
        "0 30 2 * * *",
    ),
];

/// The built-in jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum JobName {
    /// Marks open follow-ups whose due date has passed as overdue, and notifies the owner.
    Overdue,
    /// Reminds owners a while before the due date.
    Remind,
    /// The daily digest.
    Digest,
    /// Escalates exceptions overdue for long.
    Escalate,
    /// Erases the personal data of finished follow-ups whose retention has ended.
    Retention,
}

impl JobName {
    /// The job's name: in logs, metrics, the firings table and as the actor of its events
    /// (`scheduler:overdue`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Overdue => "overdue",
            Self::Remind => "remind",
            Self::Digest => "digest",
            Self::Escalate => "escalate",
            Self::Retention => "retention",
        }
    }
}

/// The scheduler's settings.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// The schedule of each built-in job; a job that is absent is off.
    pub schedules: BTreeMap<JobName, CronSchedule>,
    /// How long before the due date an owner is reminded.
    pub reminder_lead: TimeDelta,
    /// How long an exception must have been overdue (past its due date) to be escalated.
    pub escalation_after: TimeDelta,
    /// The team escalated exceptions are shared with, unless their rule names another.
    pub escalation_team: TeamId,
    /// The team per rule id, for rules whose exceptions escalate elsewhere.
    pub escalation_teams: BTreeMap<String, TeamId>,
    /// How long finished follow-ups keep their personal data.
    pub retention: RetentionRules,
    /// How long a claimed firing is held before another scheduler may take it over; the
    /// scheduler running it renews the claim every third of this while the job runs.
    pub lease: Duration,
    /// How many follow-ups a job loads, decides and appends at once.
    pub batch_size: usize,
    /// The wait before the first retry of a failed firing; it doubles with every attempt.
    pub retry_initial: Duration,
    /// The longest wait between retries.
    pub retry_max: Duration,
    /// The longest the run loop sleeps before it looks again (also when nothing is due, so
    /// retries and take-overs by this process are not late).
    pub max_sleep: Duration,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            schedules: JOB_SETTINGS
                .iter()
                .map(|(job, _, default)| {
                    (
                        *job,
                        CronSchedule::parse(default).expect("default schedules are valid"),
                    )
                })
                .collect(),
            reminder_lead: TimeDelta::hours(24),
            escalation_after: TimeDelta::hours(72),
            escalation_team: TeamId::parse("ledelse").expect("a valid team id"),
            escalation_teams: BTreeMap::new(),
            retention: RetentionRules::default(),
            lease: Duration::from_secs(300),
            batch_size: 500,
            retry_initial: Duration::from_secs(10),
            retry_max: Duration::from_secs(900),
            max_sleep: Duration::from_secs(30),
        }
    }
}

impl SchedulerConfig {
    /// Reads the settings from the process environment (and `FOLLOWUP_CONFIG`).
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(&std::env::vars().collect())
    }

    /// Reads the settings from the given variables (tests pass their own).
    pub fn from_lookup(env: &HashMap<String, String>) -> Result<Self, ConfigError> {
        let sources = Sources::from_lookup(env.clone())?;
        let get = |name: &str| sources.get(name);
        let mut config = Self::default();
        for (job, name, _) in JOB_SETTINGS {
            let Some(value) = get(name) else { continue };
            if value.eq_ignore_ascii_case("off") {
                config.schedules.remove(&job);
                continue;
            }
            let schedule = CronSchedule::parse(&value).map_err(|e| ConfigError::Invalid {
                name,
                value: value.clone(),
                reason: format!(
                    "{}; expected six fields, second minute hour day-of-month month \
                     day-of-week (or the classic five, without seconds), such as \
                     \"0 */5 * * * *\" or \"0 0 7 * * Mon-Fri\", or \"off\"",
                    cron_problem(&value, &e)
                ),
            })?;
            config.schedules.insert(job, schedule);
        }
        if let Some(value) = get("FOLLOWUP_REMINDER_LEAD") {
            config.reminder_lead = duration("FOLLOWUP_REMINDER_LEAD", &value)?;
        }
        if let Some(value) = get("FOLLOWUP_ESCALATION_AFTER") {
            config.escalation_after = duration("FOLLOWUP_ESCALATION_AFTER", &value)?;
        }
        if let Some(value) = get("FOLLOWUP_ESCALATION_TEAM") {
            config.escalation_team = team("FOLLOWUP_ESCALATION_TEAM", &value, &value)?;
        }
        if let Some(value) = get("FOLLOWUP_RETENTION") {
            config.retention =
                value
                    .parse()
                    .map_err(|e: RetentionRuleError| ConfigError::Invalid {
                        name: "FOLLOWUP_RETENTION",
                        value: value.clone(),
                        reason: format!(
                            "{e}; expected <kind>=<period> or <kind>.<status>=<period>, \
                     comma-separated, such as exception=5y,task.closed=1y"
                        ),
                    })?;
        }
        if let Some(value) = get("FOLLOWUP_ESCALATION_TEAMS") {
            for pair in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                let Some((rule, team_id)) = pair.split_once('=') else {
                    return Err(ConfigError::Invalid {
                        name: "FOLLOWUP_ESCALATION_TEAMS",
                        value: value.clone(),
                        reason: format!(
                            "{pair:?} is not rule-id=team (e.g. applicant-transfer-defects=ledelse)"
                        ),
                    });
                };
                let team_id = team("FOLLOWUP_ESCALATION_TEAMS", &value, team_id.trim())?;
                config
                    .escalation_teams
                    .insert(rule.trim().to_owned(), team_id);
            }
        }
        Ok(config)
    }

    /// The team an exception raised by `rule_id` (if any) is escalated to.
    pub fn escalation_team_for(&self, rule_id: Option<&str>) -> &TeamId {
        rule_id
            .and_then(|rule| self.escalation_teams.get(rule))
            .unwrap_or(&self.escalation_team)
    }
}

/// What is wrong with a cron expression, in one line: the number of fields, or the `cron`
/// crate's explanation (its message also repeats the expression and points at the fault).
fn cron_problem(expression: &str, error: &cron::error::Error) -> String {
    let fields = expression.split_whitespace().count();
    if !(5..=7).contains(&fields) {
        return format!("it has {fields} fields");
    }
    let message = error.to_string();
    message
        .lines()
        .map(str::trim)
        .rfind(|line| !line.is_empty() && *line != "^" && *line != expression.trim())
        .map_or_else(|| "not a cron expression".to_owned(), ToOwned::to_owned)
}

/// A duration such as `24h`, `30m`, `3d` or `1d12h` (a day is 24 hours).
fn duration(name: &'static str, value: &str) -> Result<TimeDelta, ConfigError> {
    parse_duration(value).ok_or_else(|| ConfigError::Invalid {
        name,
        value: value.to_owned(),
        reason: "not a duration; use e.g. 24h, 30m, 3d or 1d12h".into(),
    })
}

/// Parses `<n><unit>…` with units d, h, m, s; `None` when it is not one, or not positive.
fn parse_duration(text: &str) -> Option<TimeDelta> {
    let mut total = TimeDelta::zero();
    let mut number = String::new();
    for c in text.trim().chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let n: i64 = number.parse().ok()?;
        number.clear();
        total += match c {
            'd' => TimeDelta::try_days(n)?,
            'h' => TimeDelta::try_hours(n)?,
            'm' => TimeDelta::try_minutes(n)?,
            's' => TimeDelta::try_seconds(n)?,
            _ => return None,
        };
    }
    (number.is_empty() && total > TimeDelta::zero()).then_some(total)
}

fn team(name: &'static str, value: &str, team_id: &str) -> Result<TeamId, ConfigError> {
    TeamId::parse(team_id).map_err(|e| ConfigError::Invalid {
        name,
        value: value.to_owned(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_defaults_schedule_every_job() {
        let config = SchedulerConfig::from_lookup(&env(&[])).unwrap();
        let schedules: Vec<_> = config
            .schedules
            .iter()
            .map(|(job, s)| (job.as_str(), s.expression()))
            .collect();
        assert_eq!(
            schedules,
            [
                ("overdue", "0 */5 * * * *"),
                ("remind", "0 0 * * * *"),
                ("digest", "0 0 7 * * *"),
                ("escalate", "0 */15 * * * *"),
                ("retention", "0 30 2 * * *"),
            ]
        );
        assert_eq!(config.reminder_lead, TimeDelta::hours(24));
        assert_eq!(config.escalation_team.as_str(), "ledelse");
    }

    #[test]
    fn an_invalid_cron_expression_is_named_with_its_setting() {
        let err =
            SchedulerConfig::from_lookup(&env(&[("FOLLOWUP_SCHEDULE_DIGEST", "0 0 25 * * *")]))
                .unwrap_err()
                .to_string();
        assert!(
            err.starts_with(
                "FOLLOWUP_SCHEDULE_DIGEST is invalid (\"0 0 25 * * *\"): Hours must be less than"
            ),
            "{err}"
        );
        assert!(!err.contains('\n'), "one line: {err}");
    }

    #[test]
    fn a_schedule_can_be_turned_off_and_settings_come_from_the_file_too() {
        let dir = std::env::temp_dir().join(format!("scheduler-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("followup.toml");
        std::fs::write(
            &file,
            "followup_schedule_remind = \"off\"\nfollowup_reminder_lead = \"2d\"\n\
             followup_escalation_teams = \"applicant-transfer-defects=studieledelse\"\n",
        )
        .unwrap();
        let config = SchedulerConfig::from_lookup(&env(&[
            ("FOLLOWUP_CONFIG", file.to_str().unwrap()),
            ("FOLLOWUP_REMINDER_LEAD", "36h"),
        ]))
        .unwrap();
        std::fs::remove_dir_all(dir).unwrap();
        assert!(!config.schedules.contains_key(&JobName::Remind));
        assert_eq!(
            config.reminder_lead,
            TimeDelta::hours(36),
            "the environment wins"
        );
        assert_eq!(
            config
                .escalation_team_for(Some("applicant-transfer-defects"))
                .as_str(),
            "studieledelse"
        );
        assert_eq!(
            config.escalation_team_for(Some("other")).as_str(),
            "ledelse"
        );
    }

    #[test]
    fn durations_are_days_hours_minutes_and_seconds() {
        assert_eq!(parse_duration("1d12h"), Some(TimeDelta::hours(36)));
        assert_eq!(parse_duration("90m"), Some(TimeDelta::minutes(90)));
        for bad in ["", "12", "h", "5x", "0h", "-1h"] {
            assert_eq!(parse_duration(bad), None, "{bad:?}");
        }
        let err = SchedulerConfig::from_lookup(&env(&[("FOLLOWUP_ESCALATION_AFTER", "3 days")]))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("FOLLOWUP_ESCALATION_AFTER is invalid"),
            "{err}"
        );
    }
}
