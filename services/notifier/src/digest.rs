//! The daily digest: a `daily_digest` subscription collects one entry per matching event
//! (table `digest_entries`), and once a day [`build_digests`] turns each subscriber's entries
//! of the day into one notification. The scheduler decides when; this module decides what.
//!
//! Exactly once: an entry is keyed by (subscription, inbound event), so a redelivered or
//! replayed event is collected once; a digest's id is derived from (institution, subscriber,
//! day), so building the same day twice (two schedulers, a retry) creates it once.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use followup_domain::{
    Context, Description, FollowUpId, InstitutionId, Kind, NewFollowUp, Principal, Priority,
    Source, Subject, Subscription,
};
use followup_readmodel::ReadModel;
use followup_store::{CommandMeta, FollowUps};
use sqlx::PgPool;
use uuid::Uuid;

use crate::text::danish_date;
use crate::{create_notifications, Created, NotifierError};

/// Namespace of digest ids derived from (institution, subscriber, day).
const DIGEST_ID_NAMESPACE: Uuid = Uuid::from_u128(0x4c8a_02e9_7f15_4b3d_9e6a_d1c7_38b0_f524);

/// The most entries a digest lists one by one; the rest are counted.
const LISTED: usize = 50;

/// One day of digests: the entries that arrived in `[from, to)`, which the scheduler computes
/// from the local day (so a day is 23 or 25 hours long around daylight-saving changes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DigestDay {
    /// The local date the digest is about (named in its subject and its id).
    pub date: NaiveDate,
    /// Its first instant.
    pub from: DateTime<Utc>,
    /// The first instant after it.
    pub to: DateTime<Utc>,
}

/// Collects one digest entry per subscription for the inbound event `key`; returns how many
/// were new.
pub(crate) async fn collect(
    pool: &PgPool,
    key: &str,
    subscriptions: &[&Subscription],
    summary: &str,
    entered: DateTime<Utc>,
) -> Result<usize, sqlx::Error> {
    if subscriptions.is_empty() {
        return Ok(0);
    }
    let ids: Vec<Uuid> = subscriptions.iter().map(|s| s.id.as_uuid()).collect();
    let institutions: Vec<&str> = subscriptions
        .iter()
        .map(|s| s.institution.as_str())
        .collect();
    let subscribers: Vec<String> = subscriptions
        .iter()
        .map(|s| s.subscriber.to_string())
        .collect();
    let topics: Vec<&str> = subscriptions.iter().map(|s| s.topic.as_str()).collect();
    let inserted = sqlx::query(
        "INSERT INTO digest_entries \
             (subscription_id, event_key, institution, subscriber, topic, summary, occurred_at) \
         SELECT id, $2, institution, subscriber, topic, $6, $7 \
         FROM unnest($1::uuid[], $3::text[], $4::text[], $5::text[]) \
              AS r(id, institution, subscriber, topic) \
         ON CONFLICT (subscription_id, event_key) DO NOTHING",
    )
    .bind(&ids)
    .bind(key)
    .bind(&institutions)
    .bind(&subscribers)
    .bind(&topics)
    .bind(summary)
    .bind(entered)
    .execute(pool)
    .await?;
    Ok(inserted.rows_affected() as usize)
}

/// Creates the digest notifications of `day`, decided in `ctx` (the scheduler's job acting):
/// one per (institution, subscriber) with entries that day, listing them. Building the same
/// day again creates nothing new.
pub async fn build_digests(
    followups: &FollowUps,
    read_model: &ReadModel,
    day: &DigestDay,
    ctx: &Context,
) -> Result<Created, NotifierError> {
    let rows: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT DISTINCT ON (institution, subscriber, event_key) institution, subscriber, summary \
         FROM digest_entries WHERE occurred_at >= $1 AND occurred_at < $2 \
         ORDER BY institution, subscriber, event_key, occurred_at",
    )
    .bind(day.from)
    .bind(day.to)
    .fetch_all(followups.store().pool())
    .await
    .map_err(|e| NotifierError::Database(e.to_string()))?;
    // An event that reached a subscriber through two of its subscriptions is listed once.
    let mut by_subscriber: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for (institution, subscriber, summary) in rows {
        by_subscriber
            .entry((institution, subscriber))
            .or_default()
            .push(summary);
    }
    let mut new = Vec::with_capacity(by_subscriber.len());
    for ((institution, subscriber), summaries) in by_subscriber {
        let (Ok(institution), Ok(owner)) = (
            InstitutionId::parse(&institution),
            subscriber.parse::<Principal>(),
        ) else {
            tracing::warn!(digest.subscriber = %subscriber, "digest entries with an unreadable subscriber skipped");
            continue;
        };
        new.push(digest(day, institution, owner, &summaries));
    }
    let meta = CommandMeta {
        correlation_id: Some(format!("digest/{}", day.date)),
        causation_id: None,
        idempotency_key: Some(format!("digest/{}", day.date)),
    };
    create_notifications(followups, read_model, new, ctx, &meta).await
}

fn digest(
    day: &DigestDay,
    institution: InstitutionId,
    owner: Principal,
    summaries: &[String],
) -> NewFollowUp {
    let count = summaries.len();
    let noun = if count == 1 {
        "hændelse"
    } else {
        "hændelser"
    };
    let mut description: Vec<String> = summaries
        .iter()
        .take(LISTED)
        .map(|s| format!("• {s}"))
        .collect();
    if count > LISTED {
        description.push(format!("… og {} flere", count - LISTED));
    }
    NewFollowUp {
        id: digest_id(&institution, &owner, day.date),
        subject: Subject::from_upstream(&format!(
            "Dagligt overblik for {}: {count} {noun} fra dine abonnementer",
            danish_date(day.date)
        )),
        description: Description::from_upstream(&description.join("\n")),
        institution,
        kind: Kind::Notification,
        regarding: None,
        owner,
        due: None,
        priority: Priority::Low,
        source: Source::Scheduler {
            job: "daily_digest".into(),
        },
    }
}

/// The id of `owner`'s digest of `date` at `institution`.
pub fn digest_id(institution: &InstitutionId, owner: &Principal, date: NaiveDate) -> FollowUpId {
    FollowUpId::from_uuid(Uuid::new_v5(
        &DIGEST_ID_NAMESPACE,
        format!("{}/{owner}/{date}", institution.as_str()).as_bytes(),
    ))
}
