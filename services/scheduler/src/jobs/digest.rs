//! [`DailyDigest`]: once a day, every user who owns open exceptions or tasks gets one
//! notification listing them, overdue ones first ("Daglig oversigt 27. november 2026: 5 åbne
//! opfølgninger, heraf 2 overskredne"). Its id is derived from (institution, user, local date
//! of the firing), so a user gets one digest per day, whoever sends it and however often.
//!
//! The same firing sends the digests of `daily_digest` subscriptions: what arrived before
//! today (local time) and was in no digest yet, built by the notifier's
//! [`followup_notifications::build_digests`].

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use followup_domain::{InstitutionId, NewFollowUp, Principal, Subject, UserId};
use followup_notifications::DigestDay;
use followup_readmodel::ReadModel;
use futures::future::BoxFuture;

use super::{create_notifications, Firing, Job, JobContext, JobError, JobReport};
use crate::notice::{danish_date, danish_datetime, notice_id, notification};
use crate::schedule::TIME_ZONE;
use chrono::TimeZone;

/// How many follow-ups a digest lists by name at most; the rest are counted.
pub const DIGEST_ITEMS: usize = 25;

/// How long the list may get, in characters, so that the whole text (with its last line)
/// stays within the 2000 characters of a description.
const LIST_BUDGET: usize = 1850;

/// How many users' digests are built at once.
const OWNERS_PER_PAGE: i64 = 500;

/// The next page of users (`user:<id>`, institution) who own open exceptions or tasks, in
/// the order of the index `followups_view_dashboard` (owner, institution, …; open only), so
/// a page is read from the index and stops at its limit.
const OWNERS_SQL: &str = r#"
SELECT DISTINCT owner, institution FROM followups_view
WHERE status = 'open' AND kind <> 'notification' AND owner LIKE 'user:%'
  AND (owner, institution) > ($1, $2)
ORDER BY owner, institution
LIMIT $3
"#;

/// The open exceptions and tasks of a page of users, each user's most urgent first.
const ITEMS_SQL: &str = r#"
SELECT f.institution, f.owner, f.subject, f.due
FROM followups_view f
JOIN unnest($1::text[], $2::text[]) AS o(owner, institution)
  ON f.owner = o.owner AND f.institution = o.institution
WHERE f.status = 'open' AND f.kind <> 'notification'
ORDER BY f.owner, f.institution, f.due NULLS LAST, f.created_at, f.id
"#;

/// One open follow-up of a user, as the digest lists it.
#[derive(Debug, sqlx::FromRow)]
struct Row {
    /// The user's institution.
    institution: String,
    /// `user:<id>`.
    owner: String,
    /// The follow-up's subject.
    subject: String,
    /// Its due date, if any.
    due: Option<DateTime<Utc>>,
}

/// A listed follow-up: its subject and due date.
type Item = (String, Option<DateTime<Utc>>);

/// Sends each user a daily digest of their own open and overdue follow-ups.
#[derive(Debug, Clone, Copy, Default)]
pub struct DailyDigest;

impl Job for DailyDigest {
    fn run<'a>(
        &'a self,
        ctx: &'a JobContext,
        firing: &'a Firing,
    ) -> BoxFuture<'a, Result<JobReport, JobError>> {
        Box::pin(run(ctx, firing))
    }
}

/// Builds the day's digests and creates each once.
async fn run(ctx: &JobContext, firing: &Firing) -> Result<JobReport, JobError> {
    // The day the digest is for: the local date of the tick, not of the (possibly later) run.
    let date = crate::schedule::local(firing.scheduled_at).date();
    let mut report = JobReport::default();
    let mut after = (String::new(), String::new());
    loop {
        let owners: Vec<(String, String)> = sqlx::query_as(OWNERS_SQL)
            .bind(&after.0)
            .bind(&after.1)
            .bind(OWNERS_PER_PAGE)
            .fetch_all(&ctx.pool)
            .await?;
        let Some(last) = owners.last() else { break };
        after = last.clone();
        let (owner_ids, institutions): (Vec<String>, Vec<String>) = owners.into_iter().unzip();
        let rows: Vec<Row> = sqlx::query_as(ITEMS_SQL)
            .bind(&owner_ids)
            .bind(&institutions)
            .fetch_all(&ctx.pool)
            .await?;
        report.candidates += rows.len();
        let digests = own_followups_digests(rows, date, firing);
        report.add(create_notifications(ctx, firing, digests).await?);
    }
    // The digests of `daily_digest` subscriptions: what arrived before today (local time) and
    // was not in a digest yet.
    let read_model = ReadModel::new(ctx.pool.clone());
    let subscriptions = followup_notifications::build_digests(
        &ctx.followups,
        &read_model,
        &previous_day(date),
        &firing.context(),
    )
    .await
    .map_err(|e| JobError::Other(e.to_string()))?;
    report.notified += subscriptions.created;
    report.already_done += subscriptions.already_stored;
    Ok(report)
}

/// The local day before `date` (Europe/Copenhagen), ending at `date`'s midnight (the day is
/// 23, 24 or 25 hours long).
fn previous_day(date: NaiveDate) -> DigestDay {
    let midnight = |d: NaiveDate| {
        let local = d.and_time(chrono::NaiveTime::MIN);
        // Midnight exists on every day in Copenhagen (the clocks change at 02:00 and 03:00).
        TIME_ZONE
            .from_local_datetime(&local)
            .earliest()
            .map_or_else(|| local.and_utc(), |t| t.with_timezone(&Utc))
    };
    let day = date.pred_opt().unwrap_or(date);
    DigestDay {
        date: day,
        until: midnight(date),
    }
}

/// The id of `user`'s own digest at `institution` for `date`.
pub fn digest_id(
    institution: &InstitutionId,
    user: &UserId,
    date: NaiveDate,
) -> followup_domain::FollowUpId {
    notice_id(&[
        "digest",
        institution.as_str(),
        user.as_str(),
        &date.to_string(),
    ])
}

/// One digest per (institution, user) of `rows` (ordered by institution and owner).
fn own_followups_digests(rows: Vec<Row>, date: NaiveDate, firing: &Firing) -> Vec<NewFollowUp> {
    let mut by_owner: BTreeMap<(String, String), Vec<Item>> = BTreeMap::new();
    for row in rows {
        by_owner
            .entry((row.institution, row.owner))
            .or_default()
            .push((row.subject, row.due));
    }
    by_owner
        .into_iter()
        .filter_map(|((institution, owner), items)| {
            let institution = InstitutionId::parse(&institution).ok()?;
            let Ok(Principal::User(user)) = owner.parse::<Principal>() else {
                return None;
            };
            Some(digest(institution, user, date, &items, firing))
        })
        .collect()
}

/// The digest of one user's open follow-ups (`items`, most urgent first).
fn digest(
    institution: InstitutionId,
    user: UserId,
    date: NaiveDate,
    items: &[Item],
    firing: &Firing,
) -> NewFollowUp {
    let (overdue, other): (Vec<_>, Vec<_>) = items
        .iter()
        .partition(|(_, due)| due.is_some_and(|d| d < firing.now));
    let open = items.len();
    let heading = format!(
        "Daglig oversigt {}: {open} {}",
        danish_date(date),
        if open == 1 {
            "åben opfølgning"
        } else {
            "åbne opfølgninger"
        }
    );
    let subject_text = if overdue.is_empty() {
        heading
    } else {
        format!(
            "{heading}, heraf {} {}",
            overdue.len(),
            if overdue.len() == 1 {
                "overskreden"
            } else {
                "overskredne"
            }
        )
    };
    let mut text = format!(
        "Dine åbne opfølgninger pr. {}:\n",
        danish_datetime(firing.scheduled_at)
    );
    let mut listed = 0;
    for (title, group) in [("Overskredne", &overdue), ("Øvrige åbne", &other)] {
        if group.is_empty() {
            continue;
        }
        text.push_str(&format!("\n{title} ({}):\n", group.len()));
        for (subject, due) in group.iter() {
            let when = due.map_or("ingen frist".to_owned(), |d| {
                format!("frist {}", danish_datetime(d))
            });
            let line = format!("- {subject} ({when})\n");
            if listed == DIGEST_ITEMS || text.chars().count() + line.chars().count() > LIST_BUDGET {
                break;
            }
            text.push_str(&line);
            listed += 1;
        }
    }
    if listed < open {
        text.push_str(&format!("\n… og {} flere.\n", open - listed));
    }
    let id = digest_id(&institution, &user, date);
    notification(
        id,
        institution,
        Principal::User(user),
        Subject::from_upstream(&subject_text),
        &text,
        None,
        &firing.job,
    )
}
