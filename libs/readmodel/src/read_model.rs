//! [`ReadModel`]: the `followups_view` table, its writes and the API's queries.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Duration, Utc};
use followup_domain::{access, FollowUp, FollowUpId, Principal, Status, Viewer};
use sqlx::postgres::PgRow;
use sqlx::types::Json;
use sqlx::{PgConnection, PgPool, Postgres, QueryBuilder, Row, ValueRef};
use uuid::Uuid;

use crate::error::ReadError;
use crate::query::{Cursor, Dashboard, ListQuery, OpenByKind, OwnerFilter, Page, MAX_LIMIT};
use crate::tables::Tables;

/// How far ahead the dashboard's "due this week" looks.
const WEEK: Duration = Duration::days(7);

/// Writes many follow-ups in one statement (one array per column) into `{table}`. A row is
/// changed only when the follow-up brings a newer version than the stored one (see
/// [`NEWER_ONLY`]; a bulk load into an empty table leaves that clause out). `principals` and
/// `scoped_principals` arrive as one space-separated string per row (principal ids and
/// institutions contain no whitespace), because an array of arrays cannot be unnested row by
/// row.
const UPSERT_SQL: &str = r#"
INSERT INTO {table} AS v
    (id, institution, kind, status, owner, principals, scoped_principals, regarding, subject,
     due, overdue_since, priority, created_at, updated_at, version, doc)
SELECT id, institution, kind, status, owner, string_to_array(principals, ' '),
       string_to_array(scoped_principals, ' '), regarding, subject, due, overdue_since,
       priority, created_at, updated_at, version, doc::jsonb
FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
            $7::text[], $8::text[], $9::text[], $10::timestamptz[], $11::timestamptz[],
            $12::text[], $13::timestamptz[], $14::timestamptz[], $15::int8[], $16::text[])
     AS r(id, institution, kind, status, owner, principals, scoped_principals, regarding,
          subject, due, overdue_since, priority, created_at, updated_at, version, doc)
"#;

/// How a stored follow-up row is changed by a row for the same follow-up: only to a newer
/// version, so writers may write in any order. The table is aliased `v`.
pub(crate) const NEWER_ONLY: &str = r#"
ON CONFLICT (id) DO UPDATE SET
    institution = EXCLUDED.institution,
    kind = EXCLUDED.kind,
    status = EXCLUDED.status,
    owner = EXCLUDED.owner,
    principals = EXCLUDED.principals,
    scoped_principals = EXCLUDED.scoped_principals,
    regarding = EXCLUDED.regarding,
    subject = EXCLUDED.subject,
    due = EXCLUDED.due,
    overdue_since = EXCLUDED.overdue_since,
    priority = EXCLUDED.priority,
    created_at = EXCLUDED.created_at,
    updated_at = EXCLUDED.updated_at,
    version = EXCLUDED.version,
    doc = EXCLUDED.doc
WHERE v.version < EXCLUDED.version
"#;

/// How rows are written into a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Write {
    /// Rows may exist: each moves forwards only (the live tables, a shadow catching up).
    Upsert,
    /// Every row is new, and the table has no indexes yet: a rebuild's bulk load.
    Insert,
}

/// The dashboard's counts. `status = 'open'` is written out (not a parameter) so that the
/// partial index `followups_view_dashboard` applies.
const DASHBOARD_SQL: &str = r#"
SELECT count(*) FILTER (WHERE kind = 'exception'),
       count(*) FILTER (WHERE kind = 'task'),
       count(*) FILTER (WHERE kind = 'notification'),
       count(*) FILTER (WHERE due < $3),
       count(*) FILTER (WHERE due >= $3 AND due < $4)
FROM followups_view
WHERE institution = $1 AND owner = ANY($2) AND status = 'open'
"#;

/// The events after a projector's checkpoint (from the start when it has none).
const LAG_SQL: &str = r#"
SELECT count(*)
FROM (SELECT coalesce(max(transaction_id), 0) AS transaction_id,
             coalesce(max(position), 0) AS position
      FROM projection_checkpoints WHERE name = $1) AS checkpoint
JOIN events e ON (e.transaction_id, e.position) > (checkpoint.transaction_id, checkpoint.position)
"#;

/// The events after a projector's checkpoint that it could read now (older than the oldest
/// running transaction), and how long the oldest of them has been stored.
const BACKLOG_SQL: &str = r#"
SELECT count(*) AS events,
       extract(epoch FROM now() - min(e.recorded_at))::float8 AS seconds
FROM (SELECT coalesce(max(transaction_id), 0) AS transaction_id,
             coalesce(max(position), 0) AS position
      FROM projection_checkpoints WHERE name = $1) AS checkpoint
JOIN events e ON (e.transaction_id, e.position) > (checkpoint.transaction_id, checkpoint.position)
WHERE e.transaction_id < pg_snapshot_xmin(pg_current_snapshot())::text::bigint
"#;

/// How far a projector is behind the events it could project now ([`ReadModel::backlog`]).
/// Events held back by a running transaction are not in it: see
/// [`followup_store::HoldBack`].
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Backlog {
    /// Events it has not projected yet.
    pub events: i64,
    /// How long the oldest of them has been stored, in seconds (0 when there is none): how
    /// stale the read model is.
    pub seconds: f64,
}

/// The follow-up read model: the table `followups_view`. Cheap to clone (a pool handle).
#[derive(Debug, Clone)]
pub struct ReadModel {
    /// The connection pool every query uses.
    pool: PgPool,
}

impl ReadModel {
    /// The read model in the database behind `pool` (migrated with `followup_store::MIGRATOR`).
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// The pool, for the projector's transactions.
    pub(crate) fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Writes these states, each only if its version is newer than the stored row's, so the
    /// API's write-through after a command and the projector can both write, in any order,
    /// idempotently. The same follow-up given twice is written at its newest version.
    pub async fn upsert(&self, followups: &[FollowUp]) -> Result<(), ReadError> {
        let mut newest: HashMap<FollowUpId, &FollowUp> = HashMap::with_capacity(followups.len());
        for followup in followups {
            let kept = newest.entry(followup.id).or_insert(followup);
            if followup.version > kept.version {
                *kept = followup;
            }
        }
        let mut rows: Vec<&FollowUp> = newest.into_values().collect();
        let mut tx = self.pool.begin().await?;
        // A copy of the event store: should the server crash before this commit reaches the
        // disk, the projector writes the rows again, so the commit need not wait for it.
        sqlx::query("SET LOCAL synchronous_commit = off")
            .execute(&mut *tx)
            .await?;
        upsert_with(&mut tx, Tables::LIVE.followups, Write::Upsert, &mut rows).await?;
        tx.commit().await?;
        Ok(())
    }

    /// One follow-up if `viewer` may see it (by [`followup_domain::access()`]); `None` when it
    /// does not exist or the viewer may not know that it does.
    pub async fn get(
        &self,
        viewer: &Viewer,
        id: FollowUpId,
    ) -> Result<Option<FollowUp>, ReadError> {
        let row = sqlx::query("SELECT doc FROM followups_view WHERE id = $1")
            .bind(id.as_uuid())
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let followup = decode_doc(&row, id.as_uuid())?;
        Ok(access(&followup, viewer).is_some().then_some(followup))
    }

    /// A page of the follow-ups `viewer` may see that match `query`, newest first.
    pub async fn list(&self, viewer: &Viewer, query: &ListQuery) -> Result<Page, ReadError> {
        let limit = query.limit.clamp(1, MAX_LIMIT) as usize;
        let mut sql = list_sql(viewer, query, limit);
        // Not a prepared statement that is kept: PostgreSQL then plans every list with its
        // actual parameters. Which index is best depends on how much the viewer can see, and
        // a generic plan made once for all viewers would be slow for some of them.
        let rows = sql.build().persistent(false).fetch_all(&self.pool).await?;
        let more = rows.len() > limit;
        let mut items = Vec::with_capacity(rows.len().min(limit));
        let mut next_cursor = None;
        for row in rows.iter().take(limit) {
            let id: Uuid = row.try_get("id")?;
            let followup = decode_doc(row, id)?;
            next_cursor = Some(Cursor {
                created_at: row.try_get("created_at")?,
                id,
            });
            // The SQL filter says the same; this keeps the domain's rule the last word.
            if access(&followup, viewer).is_some() {
                items.push(followup);
            } else {
                tracing::warn!(followup.id = %id, "read model row visible by SQL but not by the domain's access rule");
            }
        }
        Ok(Page {
            items,
            next_cursor: if more { next_cursor } else { None },
        })
    }

    /// The counts of `viewer`'s own work at `now`: open follow-ups owned by the viewer or one
    /// of its teams (an admin's dashboard too counts only its own and its teams').
    pub async fn dashboard(
        &self,
        viewer: &Viewer,
        now: DateTime<Utc>,
    ) -> Result<Dashboard, ReadError> {
        let owners: Vec<String> = viewer
            .principals()
            .iter()
            .map(ToString::to_string)
            .collect();
        let row = sqlx::query(DASHBOARD_SQL)
            .bind(viewer.institution.as_str())
            .bind(&owners)
            .bind(now)
            .bind(now + WEEK)
            .fetch_one(&self.pool)
            .await?;
        Ok(Dashboard {
            open_by_kind: OpenByKind {
                exception: row.try_get(0)?,
                task: row.try_get(1)?,
                notification: row.try_get(2)?,
            },
            overdue: row.try_get(3)?,
            due_this_week: row.try_get(4)?,
            unread_notifications: self.unread_notifications(viewer).await?,
        })
    }

    /// How many events in the store the projector named `name` has not projected yet
    /// (all of them when it never ran), for `/readyz` and `/metrics`.
    pub async fn lag(&self, name: &str) -> Result<i64, ReadError> {
        Ok(sqlx::query_scalar(LAG_SQL)
            .bind(name)
            .fetch_one(&self.pool)
            .await?)
    }

    /// The projector named `name`'s own backlog: what it could project now and has not, with
    /// the age of the oldest such event, for `/readyz`, `/metrics` and `followupctl inspect`.
    pub async fn backlog(&self, name: &str) -> Result<Backlog, ReadError> {
        let (events, seconds): (i64, Option<f64>) = sqlx::query_as(BACKLOG_SQL)
            .bind(name)
            .fetch_one(&self.pool)
            .await?;
        Ok(Backlog {
            events,
            seconds: seconds.unwrap_or(0.0).max(0.0),
        })
    }
}

/// The list query for `viewer` and `query`: one row more than `limit`, to know whether there
/// is a next page.
///
/// The inner query picks the ids of the page and the outer one fetches their documents: the
/// inner one can then often be answered from an index alone (see the migration), and only the
/// rows of the page are read from the table.
fn list_sql<'q>(
    viewer: &'q Viewer,
    query: &'q ListQuery,
    limit: usize,
) -> QueryBuilder<'q, Postgres> {
    let mut sql = QueryBuilder::new(
        "SELECT id, created_at, doc FROM followups_view WHERE id = ANY(ARRAY(\
         SELECT id FROM followups_view WHERE institution = ",
    );
    sql.push_bind(viewer.institution.as_str());
    if !viewer.admin {
        // Through the index on the principals prefixed with the institution (see the
        // migration); the institution is in every element, so no other institution matches.
        sql.push(" AND scoped_principals && ");
        sql.push_bind(scoped_principals(viewer));
    }
    // The status is written out rather than bound (it is one of three fixed names, never
    // caller text), so that the partial indexes on open follow-ups apply.
    let status = if query.overdue == Some(true) {
        // Overdue follow-ups are open: asking for overdue ones of another status finds none.
        match query.status {
            None | Some(Status::Open) => Some(Status::Open),
            Some(_) => {
                sql.push(" AND false");
                None
            }
        }
    } else {
        query.status
    };
    if let Some(status) = status {
        sql.push(format_args!(" AND status = '{}'", status.as_str()));
    }
    if let Some(kind) = query.kind {
        sql.push(" AND kind = ").push_bind(kind.as_str());
    }
    match &query.owner {
        Some(OwnerFilter::Me) => {
            sql.push(" AND owner = ")
                .push_bind(format!("user:{}", viewer.user));
        }
        Some(OwnerFilter::Principal(principal)) => {
            sql.push(" AND owner = ").push_bind(principal.to_string());
        }
        Some(OwnerFilter::Mine) => {
            let owners: Vec<String> = viewer
                .principals()
                .iter()
                .map(ToString::to_string)
                .collect();
            sql.push(" AND owner = ANY(").push_bind(owners).push(")");
        }
        None => {}
    }
    if let Some(regarding) = &query.regarding {
        sql.push(" AND regarding = ")
            .push_bind(regarding.to_string());
    }
    match query.overdue {
        Some(true) => {
            sql.push(" AND due < ").push_bind(query.now);
        }
        Some(false) => {
            sql.push(" AND (status <> 'open' OR due IS NULL OR due >= ")
                .push_bind(query.now)
                .push(")");
        }
        None => {}
    }
    if let Some(due_before) = query.due_before {
        sql.push(" AND due < ").push_bind(due_before);
    }
    if let Some(q) = query.q.as_deref().map(str::trim).filter(|q| !q.is_empty()) {
        let pattern = format!("%{}%", escape_like(q));
        sql.push(" AND (subject ILIKE ")
            .push_bind(pattern.clone())
            .push(" OR doc->>'description' ILIKE ")
            .push_bind(pattern)
            .push(")");
    }
    if let Some(cursor) = query.cursor {
        sql.push(" AND (created_at, id) < (")
            .push_bind(cursor.created_at)
            .push(", ")
            .push_bind(cursor.id)
            .push(")");
    }
    sql.push(" ORDER BY created_at DESC, id DESC LIMIT ")
        .push_bind((limit + 1) as i64)
        .push(")) ORDER BY created_at DESC, id DESC");
    sql
}

/// The viewer's principals as `scoped_principals` holds them.
pub(crate) fn scoped_principals(viewer: &Viewer) -> Vec<String> {
    viewer
        .principals()
        .iter()
        .map(|p| scoped(viewer.institution.as_str(), p))
        .collect()
}

/// A principal prefixed with its institution, `KP/team:admissions`: team and user ids are
/// only unique within an institution.
fn scoped(institution: &str, principal: &Principal) -> String {
    format!("{institution}/{principal}")
}

/// `text` for use inside a LIKE pattern: `\`, `%` and `_` stand for themselves.
fn escape_like(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '\\' | '%' | '_') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// The follow-up in a row's `doc` column.
pub(crate) fn decode_doc(row: &PgRow, id: Uuid) -> Result<FollowUp, ReadError> {
    match row.try_get::<Json<FollowUp>, _>("doc") {
        Ok(Json(followup)) => Ok(followup),
        Err(sqlx::Error::ColumnDecode { source, .. }) => Err(ReadError::Corrupt(format!(
            "follow-up {id}: its stored document is not a follow-up: {source}"
        ))),
        Err(other) => Err(other.into()),
    }
}

/// Writes `rows` (at most one per follow-up) into `table` on `conn`: the write-through, the
/// projector's transaction and a rebuild's bulk load share it. Rows are written in id order,
/// so that two writers that change the same follow-ups lock them in the same order and never
/// deadlock.
pub(crate) async fn upsert_with(
    conn: &mut PgConnection,
    table: &str,
    write: Write,
    rows: &mut [&FollowUp],
) -> Result<(), ReadError> {
    if rows.is_empty() {
        return Ok(());
    }
    rows.sort_unstable_by_key(|f| f.id);
    let n = rows.len();
    let mut id = Vec::with_capacity(n);
    let mut institution = Vec::with_capacity(n);
    let mut kind = Vec::with_capacity(n);
    let mut status = Vec::with_capacity(n);
    let mut owner = Vec::with_capacity(n);
    let mut principals = Vec::with_capacity(n);
    let mut scoped_principals = Vec::with_capacity(n);
    let mut regarding = Vec::with_capacity(n);
    let mut subject = Vec::with_capacity(n);
    let mut due = Vec::with_capacity(n);
    let mut overdue_since = Vec::with_capacity(n);
    let mut priority = Vec::with_capacity(n);
    let mut created_at = Vec::with_capacity(n);
    let mut updated_at = Vec::with_capacity(n);
    let mut version = Vec::with_capacity(n);
    let mut doc = Vec::with_capacity(n);
    for f in rows.iter() {
        id.push(f.id.as_uuid());
        institution.push(f.institution.as_str());
        kind.push(f.kind.as_str());
        status.push(f.status.as_str());
        owner.push(f.owner.to_string());
        let who = || std::iter::once(&f.owner).chain(f.shares.keys());
        principals.push(who().map(ToString::to_string).collect::<Vec<_>>().join(" "));
        scoped_principals.push(
            who()
                .map(|p| scoped(f.institution.as_str(), p))
                .collect::<Vec<_>>()
                .join(" "),
        );
        regarding.push(f.regarding.as_ref().map(ToString::to_string));
        subject.push(f.subject.as_str());
        due.push(f.due);
        overdue_since.push(f.overdue_since);
        priority.push(f.priority.as_str());
        created_at.push(f.created_at);
        updated_at.push(f.updated_at);
        version.push(i64::try_from(f.version).map_err(|_| {
            ReadError::Corrupt(format!(
                "follow-up {} has version {} beyond i64",
                f.id, f.version
            ))
        })?);
        doc.push(serde_json::to_string(f).map_err(|e| {
            ReadError::Corrupt(format!("follow-up {} cannot be written as JSON: {e}", f.id))
        })?);
    }
    let mut sql = UPSERT_SQL.replace("{table}", table);
    if write == Write::Upsert {
        sql.push_str(NEWER_ONLY);
    }
    sqlx::query(&sql)
        .bind(id)
        .bind(institution)
        .bind(kind)
        .bind(status)
        .bind(owner)
        .bind(principals)
        .bind(scoped_principals)
        .bind(regarding)
        .bind(subject)
        .bind(due)
        .bind(overdue_since)
        .bind(priority)
        .bind(created_at)
        .bind(updated_at)
        .bind(version)
        .bind(doc)
        .execute(conn)
        .await?;
    Ok(())
}

/// What the projector needs of the stored rows of a batch's follow-ups.
#[derive(Debug, Default)]
pub(crate) struct StoredRows {
    /// The rows that are older than some event of the batch, as follow-ups: the events are
    /// applied to them.
    pub(crate) behind: HashMap<FollowUpId, FollowUp>,
    /// The follow-ups whose rows have every event of the batch already (the API wrote them
    /// through): nothing to apply, so their documents are not even read.
    pub(crate) current: HashSet<FollowUpId>,
}

/// The stored rows of `wanted` (follow-up, newest version in the batch) in `table`, read on
/// `conn` (the projector's transaction). Follow-ups without a row are in neither part of the
/// result.
pub(crate) async fn load_with(
    conn: &mut PgConnection,
    table: &str,
    wanted: &[(Uuid, i64)],
) -> Result<StoredRows, ReadError> {
    let mut stored = StoredRows::default();
    if wanted.is_empty() {
        return Ok(stored);
    }
    let (ids, versions): (Vec<Uuid>, Vec<i64>) = wanted.iter().copied().unzip();
    let sql = format!(
        "SELECT v.id, CASE WHEN v.version < wanted.version THEN v.doc END AS doc
         FROM unnest($1::uuid[], $2::int8[]) AS wanted(id, version)
         JOIN {table} v ON v.id = wanted.id"
    );
    let rows = sqlx::query(&sql)
        .bind(ids)
        .bind(versions)
        .fetch_all(conn)
        .await?;
    for row in &rows {
        let id: Uuid = row.try_get("id")?;
        if row.try_get_raw("doc")?.is_null() {
            stored.current.insert(FollowUpId::from_uuid(id));
        } else {
            stored
                .behind
                .insert(FollowUpId::from_uuid(id), decode_doc(row, id)?);
        }
    }
    Ok(stored)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_wildcards_and_the_escape_character_are_escaped() {
        assert_eq!(escape_like("50%_a\\b"), "50\\%\\_a\\\\b");
        assert_eq!(escape_like("æblegrød"), "æblegrød");
    }
}
