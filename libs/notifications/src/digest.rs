//! The daily digest: a `daily_digest` subscription collects one entry per matching event
//! (table `digest_entries`), and once a day [`build_digests`] turns each subscriber's entries
//! not delivered yet into one notification and marks them delivered. The scheduler decides
//! when; this module decides what.
//!
//! Exactly once: an entry is keyed by (subscription, inbound event), so a redelivered or
//! replayed event is collected once; a digest's id is derived from (institution, subscriber,
//! day), so building the same day twice (two schedulers, a retry) creates it once; an entry
//! that arrives after its subscriber's digest of the day was built goes into the next one.
//! (Should the process die between creating a digest and marking its entries, they are
//! listed once more in the next digest: at least once, never lost.)

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use followup_domain::{
    Context, Description, FollowUpId, InstitutionId, Kind, NewFollowUp, Principal, Priority,
    Source, Subject, Subscription,
};
use followup_readmodel::ReadModel;
use followup_store::{CommandMeta, FollowUps, RepoError};
use sqlx::PgPool;
use uuid::Uuid;

use crate::text::danish_date;
use crate::{create_notifications, Created, NotificationError};

/// Namespace of digest ids derived from (institution, subscriber, day).
const DIGEST_ID_NAMESPACE: Uuid = Uuid::from_u128(0x4c8a_02e9_7f15_4b3d_9e6a_d1c7_38b0_f524);

/// The most entries a digest lists one by one; the rest are counted.
const LISTED: usize = 50;

/// One day's digests: every entry not delivered yet that arrived before `until` (the end of
/// the local day, which the scheduler computes: a day is 23 or 25 hours long around
/// daylight-saving changes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DigestDay {
    /// The local date the digest is about (named in its subject and its id).
    pub date: NaiveDate,
    /// The first instant after it: entries that arrived later wait for the next digest.
    pub until: DateTime<Utc>,
}

/// Collects one digest entry per subscription for the inbound event `key`; returns how many
/// were new.
pub async fn collect(
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
) -> Result<Created, NotificationError> {
    let pool = followups.store().pool();
    let rows: Vec<(Uuid, String, String, String, String)> = sqlx::query_as(
        "SELECT subscription_id, event_key, institution, subscriber, summary \
         FROM digest_entries WHERE digest_id IS NULL AND occurred_at < $1 \
         ORDER BY institution, subscriber, occurred_at, event_key",
    )
    .bind(day.until)
    .fetch_all(pool)
    .await?;
    let mut by_subscriber: BTreeMap<(String, String), Pending> = BTreeMap::new();
    for (subscription, event_key, institution, subscriber, summary) in rows {
        let pending = by_subscriber.entry((institution, subscriber)).or_default();
        // An event that reached a subscriber through two of its subscriptions is listed once.
        if !pending.keys.contains(&event_key) {
            pending.summaries.push(summary);
        }
        pending.keys.push(event_key);
        pending.subscriptions.push(subscription);
    }
    let mut new = Vec::with_capacity(by_subscriber.len());
    let mut deliveries = Vec::with_capacity(by_subscriber.len());
    for ((institution, subscriber), pending) in by_subscriber {
        let (Ok(institution), Ok(owner)) = (
            InstitutionId::parse(&institution),
            subscriber.parse::<Principal>(),
        ) else {
            tracing::warn!(digest.subscriber = %subscriber, "digest entries with an unreadable subscriber skipped");
            continue;
        };
        let digest = digest(day, institution, owner, &pending.summaries);
        deliveries.push((digest.id, pending));
        new.push(digest);
    }
    let key = format!("digest/{}", day.date);
    // A subscriber whose digest of this day exists already (built earlier today) keeps its
    // new entries for the next digest: the existing one cannot list them any more.
    let ids: Vec<FollowUpId> = new.iter().map(|d| d.id).collect();
    let built = followups
        .already_done(&key, &ids)
        .await
        .map_err(RepoError::from)?;
    new.retain(|d| !built.contains(&d.id));
    deliveries.retain(|(id, _)| !built.contains(id));
    let meta = CommandMeta {
        correlation_id: Some(key.clone()),
        causation_id: None,
        idempotency_key: Some(key),
        traceparent: None,
    };
    let created = create_notifications(followups, read_model, new, ctx, &meta).await?;
    for (digest_id, pending) in deliveries {
        sqlx::query(
            "UPDATE digest_entries SET digest_id = $1 \
             FROM unnest($2::uuid[], $3::text[]) AS d(subscription_id, event_key) \
             WHERE digest_entries.subscription_id = d.subscription_id \
               AND digest_entries.event_key = d.event_key AND digest_entries.digest_id IS NULL",
        )
        .bind(digest_id.as_uuid())
        .bind(&pending.subscriptions)
        .bind(&pending.keys)
        .execute(pool)
        .await?;
    }
    Ok(created)
}

/// One subscriber's entries not delivered yet.
#[derive(Debug, Default)]
struct Pending {
    /// The lines of the digest, one per inbound event.
    summaries: Vec<String>,
    /// The entries' keys, to mark them delivered: (subscription, event) pairs, in two lists.
    subscriptions: Vec<Uuid>,
    /// See `subscriptions`.
    keys: Vec<String>,
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
        person: None,
        owner,
        due: None,
        priority: Priority::Low,
        source: Source::Scheduler {
            job: "digest".into(),
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
