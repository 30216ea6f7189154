//! Subscriptions and the notification inbox in the read model: the tables `subscriptions`
//! and `notification_inbox` (migration `*_subscriptions_and_inbox.sql`).
//!
//! Like `followups_view`, both are written by the projector and by the API's write-through,
//! and both only ever move forwards: a subscription row by version, an inbox row from `read`
//! to `dismissed` (never back).

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use followup_domain::{
    access, Delivery, Filter, FollowUp, FollowUpId, InboxState, InstitutionId, Principal,
    Subscription, SubscriptionId, Topic, UserId, Viewer,
};
use serde::{Serialize, Serializer};
use serde_json::Value;
use sqlx::postgres::PgRow;
use sqlx::types::Json;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use crate::error::ReadError;
use crate::query::{Cursor, DEFAULT_LIMIT, MAX_LIMIT};
use crate::read_model::{decode_doc, scoped_principals, ReadModel, Write};
use crate::tables::Tables;

/// Writes subscriptions into `{table}`; [`SUBSCRIPTION_NEWER_ONLY`] follows unless the rows
/// are all new (a rebuild's bulk load).
const UPSERT_SUBSCRIPTIONS_SQL: &str = r#"
INSERT INTO {table} AS s
    (id, institution, subscriber, topic, filter, delivery, created_at, cancelled_at, version)
SELECT id, institution, subscriber, topic, filter::jsonb, delivery, created_at, cancelled_at,
       version
FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
            $7::timestamptz[], $8::timestamptz[], $9::int8[])
     AS r(id, institution, subscriber, topic, filter, delivery, created_at, cancelled_at,
          version)
"#;

/// A stored subscription changes only to a newer version. The table is aliased `s`.
pub(crate) const SUBSCRIPTION_NEWER_ONLY: &str = r#"
ON CONFLICT (id) DO UPDATE SET
    cancelled_at = EXCLUDED.cancelled_at,
    version = EXCLUDED.version
WHERE s.version < EXCLUDED.version
"#;

/// Writes inbox states into `{table}`; [`INBOX_FURTHEST`] follows unless the rows are all
/// new (a rebuild's bulk load).
const UPSERT_INBOX_SQL: &str = r#"
INSERT INTO {table} AS i (followup_id, user_id, state, at)
SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::timestamptz[])
"#;

/// `dismissed` wins over `read`, whichever arrives last. The table is aliased `i`.
pub(crate) const INBOX_FURTHEST: &str = r#"
ON CONFLICT (user_id, followup_id) DO UPDATE SET state = EXCLUDED.state, at = EXCLUDED.at
WHERE i.state = 'read' AND EXCLUDED.state = 'dismissed'
"#;

/// The subscriptions of a topic in an institution that were active when an event entered the
/// system and whose filter the event's data satisfies.
const MATCHING_SQL: &str = r#"
SELECT id, institution, subscriber, topic, filter, delivery, created_at, cancelled_at, version
FROM subscriptions
WHERE institution = $1 AND topic = $2 AND created_at <= $4
  AND (cancelled_at IS NULL OR cancelled_at > $4)
  AND filter <@ $3::jsonb
ORDER BY id
"#;

/// The unread notifications among what a user can see.
const UNREAD_SQL: &str = r#"
SELECT count(*) FROM followups_view v
WHERE v.institution = $1 AND v.kind = 'notification' AND v.status = 'open'
  AND v.scoped_principals && $2
  AND NOT EXISTS (SELECT 1 FROM notification_inbox i
                  WHERE i.user_id = $3 AND i.followup_id = v.id)
"#;

/// One user's state of one notification, to write into the inbox table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxChange {
    /// The notification.
    pub followup: FollowUpId,
    /// The user.
    pub user: UserId,
    /// `Read` or `Dismissed` (`Unread` rows are never written: no row means unread).
    pub state: InboxState,
    /// When the user did it.
    pub at: DateTime<Utc>,
}

/// What `GET /v1/notifications` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxQuery {
    /// The states to list (by default unread and read: dismissed ones have left the inbox).
    pub states: Vec<InboxState>,
    /// Where the page starts.
    pub cursor: Option<InboxCursor>,
    /// At most this many (1 to [`MAX_LIMIT`]).
    pub limit: u32,
}

impl Default for InboxQuery {
    fn default() -> Self {
        Self {
            states: vec![InboxState::Unread, InboxState::Read],
            cursor: None,
            limit: DEFAULT_LIMIT,
        }
    }
}

/// Where an inbox page starts: unread notifications come first, each group newest first.
/// Opaque to clients: `u` or `r` and a list cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InboxCursor {
    /// Whether the previous page ended among the unread ones.
    unread: bool,
    /// The last notification of the previous page.
    at: Cursor,
}

impl fmt::Display for InboxCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", if self.unread { 'u' } else { 'r' }, self.at)
    }
}

impl FromStr for InboxCursor {
    type Err = ReadError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let unread = match s.get(..1) {
            Some("u") => true,
            Some("r") => false,
            _ => {
                return Err(ReadError::BadCursor(
                    "pass the next_cursor of the previous page unchanged".into(),
                ))
            }
        };
        Ok(Self {
            unread,
            at: s[1..].parse()?,
        })
    }
}

impl Serialize for InboxCursor {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// One notification in a user's inbox.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InboxItem {
    /// The notification.
    #[serde(flatten)]
    pub followup: FollowUp,
    /// Where this user stands with it.
    pub state: InboxState,
}

/// A page of a user's inbox: `{"items": [...], "next_cursor": ...}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InboxPage {
    /// Unread first, then newest first.
    pub items: Vec<InboxItem>,
    /// Where the next page starts; `None` on the last page.
    pub next_cursor: Option<InboxCursor>,
}

impl ReadModel {
    /// Writes these subscriptions, each only when newer than its row.
    pub async fn upsert_subscriptions(
        &self,
        subscriptions: &[Subscription],
    ) -> Result<(), ReadError> {
        let mut conn = self.pool().acquire().await?;
        upsert_subscriptions_with(
            &mut conn,
            Tables::LIVE.subscriptions,
            Write::Upsert,
            subscriptions,
        )
        .await
    }

    /// Records inbox states (idempotent; `dismissed` is never undone).
    pub async fn upsert_inbox(&self, changes: &[InboxChange]) -> Result<(), ReadError> {
        let mut conn = self.pool().acquire().await?;
        upsert_inbox_with(&mut conn, Tables::LIVE.inbox, Write::Upsert, changes).await
    }

    /// The active subscriptions of `viewer` and its teams, oldest first; an admin (who may
    /// subscribe any team of its institution) gets every team's too.
    pub async fn subscriptions_of(&self, viewer: &Viewer) -> Result<Vec<Subscription>, ReadError> {
        let subscribers: Vec<String> = viewer.principals().iter().map(|p| p.to_string()).collect();
        let rows = sqlx::query(
            "SELECT id, institution, subscriber, topic, filter, delivery, created_at, \
             cancelled_at, version FROM subscriptions \
             WHERE institution = $1 AND cancelled_at IS NULL \
               AND (subscriber = ANY($2) OR ($3 AND subscriber LIKE 'team:%')) \
             ORDER BY created_at, id",
        )
        .bind(viewer.institution.as_str())
        .bind(&subscribers)
        .bind(viewer.admin)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(decode_subscription).collect()
    }

    /// One subscription, if `viewer` may see it (its own or one of its teams'; an admin also
    /// any team's of its institution).
    pub async fn subscription(
        &self,
        viewer: &Viewer,
        id: SubscriptionId,
    ) -> Result<Option<Subscription>, ReadError> {
        let row = sqlx::query(
            "SELECT id, institution, subscriber, topic, filter, delivery, created_at, \
             cancelled_at, version FROM subscriptions WHERE id = $1",
        )
        .bind(id.as_uuid())
        .fetch_optional(self.pool())
        .await?;
        let Some(row) = row else { return Ok(None) };
        let subscription = decode_subscription(&row)?;
        let visible = subscription.institution == viewer.institution
            && (viewer.is(&subscription.subscriber)
                || (viewer.admin && matches!(subscription.subscriber, Principal::Team(_))));
        Ok(visible.then_some(subscription))
    }

    /// The subscriptions that an event of `topic` in `institution` with `data` reaches: those
    /// active at `entered` (when the event entered the system) whose filter `data` satisfies.
    pub async fn matching_subscriptions(
        &self,
        institution: &InstitutionId,
        topic: &Topic,
        data: &Value,
        entered: DateTime<Utc>,
    ) -> Result<Vec<Subscription>, ReadError> {
        let rows = sqlx::query(MATCHING_SQL)
            .bind(institution.as_str())
            .bind(topic.as_str())
            .bind(Json(data))
            .bind(entered)
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(decode_subscription).collect()
    }

    /// A page of `viewer`'s notifications (what it or its teams own, or what is shared with
    /// them) with its own state of each: unread first, then newest first. An admin's inbox
    /// is its own too, not the institution's.
    pub async fn notifications(
        &self,
        viewer: &Viewer,
        query: &InboxQuery,
    ) -> Result<InboxPage, ReadError> {
        let limit = query.limit.clamp(1, MAX_LIMIT) as usize;
        let states: Vec<&str> = query.states.iter().map(|s| s.as_str()).collect();
        let (after_rank, after_at, after_id) = match query.cursor {
            Some(c) => (i32::from(c.unread), Some(c.at.created_at), Some(c.at.id)),
            None => (2, None, None),
        };
        let rows = sqlx::query(
            "SELECT v.id, v.created_at, v.doc, coalesce(i.state, 'unread') AS state \
             FROM followups_view v \
             LEFT JOIN notification_inbox i ON i.user_id = $3 AND i.followup_id = v.id \
             WHERE v.institution = $1 AND v.kind = 'notification' \
               AND v.scoped_principals && $2 \
               AND coalesce(i.state, 'unread') = ANY($4) \
               AND ($6::timestamptz IS NULL \
                    OR ((i.state IS NULL)::int, v.created_at, v.id) < ($5, $6, $7)) \
             ORDER BY (i.state IS NULL) DESC, v.created_at DESC, v.id DESC \
             LIMIT $8",
        )
        .bind(viewer.institution.as_str())
        .bind(scoped_principals(viewer))
        .bind(viewer.user.as_str())
        .bind(&states)
        .bind(after_rank)
        .bind(after_at)
        .bind(after_id)
        .bind((limit + 1) as i64)
        .persistent(false)
        .fetch_all(self.pool())
        .await?;
        let more = rows.len() > limit;
        let mut items = Vec::with_capacity(rows.len().min(limit));
        let mut next_cursor = None;
        for row in rows.iter().take(limit) {
            let id: Uuid = row.try_get("id")?;
            let followup = decode_doc(row, id)?;
            let state: String = row.try_get("state")?;
            let state: InboxState = state
                .parse()
                .map_err(|e| ReadError::Corrupt(format!("inbox of notification {id}: {e}")))?;
            next_cursor = Some(InboxCursor {
                unread: state == InboxState::Unread,
                at: Cursor {
                    created_at: row.try_get("created_at")?,
                    id,
                },
            });
            if access(&followup, viewer).is_some() {
                items.push(InboxItem { followup, state });
            }
        }
        Ok(InboxPage {
            items,
            next_cursor: if more { next_cursor } else { None },
        })
    }

    /// How many open notifications `viewer` can see and has not read or dismissed.
    pub async fn unread_notifications(&self, viewer: &Viewer) -> Result<i64, ReadError> {
        Ok(sqlx::query_scalar(UNREAD_SQL)
            .bind(viewer.institution.as_str())
            .bind(scoped_principals(viewer))
            .bind(viewer.user.as_str())
            .fetch_one(self.pool())
            .await?)
    }
}

/// Writes subscription rows into `table` on `conn` (the projector's transaction or a pool
/// connection).
pub(crate) async fn upsert_subscriptions_with(
    conn: &mut PgConnection,
    table: &str,
    write: Write,
    subscriptions: &[Subscription],
) -> Result<(), ReadError> {
    if subscriptions.is_empty() {
        return Ok(());
    }
    let n = subscriptions.len();
    let (mut ids, mut institutions, mut subscribers, mut topics) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut filters, mut deliveries, mut created, mut cancelled, mut versions) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for s in subscriptions {
        ids.push(s.id.as_uuid());
        institutions.push(s.institution.as_str().to_owned());
        subscribers.push(s.subscriber.to_string());
        topics.push(s.topic.as_str().to_owned());
        filters.push(serde_json::to_string(&s.filter).expect("a filter serialises"));
        deliveries.push(s.delivery.as_str());
        created.push(s.created_at);
        cancelled.push(s.cancelled_at);
        versions.push(i64::try_from(s.version).unwrap_or(i64::MAX));
    }
    let mut sql = UPSERT_SUBSCRIPTIONS_SQL.replace("{table}", table);
    if write == Write::Upsert {
        sql.push_str(SUBSCRIPTION_NEWER_ONLY);
    }
    sqlx::query(&sql)
        .bind(ids)
        .bind(institutions)
        .bind(subscribers)
        .bind(topics)
        .bind(filters)
        .bind(deliveries)
        .bind(created)
        .bind(cancelled)
        .bind(versions)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Writes inbox rows into `table` on `conn`.
pub(crate) async fn upsert_inbox_with(
    conn: &mut PgConnection,
    table: &str,
    write: Write,
    changes: &[InboxChange],
) -> Result<(), ReadError> {
    // Within one statement a row may be touched once: keep each (user, follow-up)'s furthest
    // state.
    let mut furthest: std::collections::BTreeMap<(&str, Uuid), &InboxChange> = Default::default();
    for change in changes.iter().filter(|c| c.state != InboxState::Unread) {
        let key = (change.user.as_str(), change.followup.as_uuid());
        let keep = furthest.get(&key).is_none_or(|kept| {
            kept.state != InboxState::Dismissed || change.state == InboxState::Dismissed
        });
        if keep {
            furthest.insert(key, change);
        }
    }
    if furthest.is_empty() {
        return Ok(());
    }
    let mut ids = Vec::new();
    let mut users = Vec::new();
    let mut states = Vec::new();
    let mut ats = Vec::new();
    for change in furthest.values() {
        ids.push(change.followup.as_uuid());
        users.push(change.user.as_str().to_owned());
        states.push(change.state.as_str());
        ats.push(change.at);
    }
    let mut sql = UPSERT_INBOX_SQL.replace("{table}", table);
    if write == Write::Upsert {
        sql.push_str(INBOX_FURTHEST);
    }
    sqlx::query(&sql)
        .bind(ids)
        .bind(users)
        .bind(states)
        .bind(ats)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

fn decode_subscription(row: &PgRow) -> Result<Subscription, ReadError> {
    let id: Uuid = row.try_get("id")?;
    let corrupt = |what: &str, e: &dyn fmt::Display| {
        ReadError::Corrupt(format!("subscription {id}: {what}: {e}"))
    };
    let institution: String = row.try_get("institution")?;
    let subscriber: String = row.try_get("subscriber")?;
    let topic: String = row.try_get("topic")?;
    let Json(filter): Json<Filter> = row.try_get("filter")?;
    let delivery: String = row.try_get("delivery")?;
    Ok(Subscription {
        id: SubscriptionId::from_uuid(id),
        institution: InstitutionId::parse(&institution).map_err(|e| corrupt("institution", &e))?,
        subscriber: subscriber
            .parse::<Principal>()
            .map_err(|e| corrupt("subscriber", &e))?,
        topic: serde_json::from_value(Value::String(topic)).map_err(|e| corrupt("topic", &e))?,
        filter,
        delivery: Delivery::parse(&delivery).map_err(|e| corrupt("delivery", &e))?,
        created_at: row.try_get("created_at")?,
        cancelled_at: row.try_get("cancelled_at")?,
        version: u64::try_from(row.try_get::<i64, _>("version")?).unwrap_or(0),
    })
}
