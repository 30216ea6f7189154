//! What holds gap-free readers back: committed events they may not hand out yet, because an
//! older transaction is still running somewhere on the PostgreSQL server, and which
//! transaction that is.
//!
//! Readers of the whole store ([`crate::EventStore::read_all`]) stop before the oldest running
//! transaction id (`pg_snapshot_xmin`), so that an event can never appear behind one they
//! already read. Transaction ids are the server's, not a database's: a transaction that wrote
//! anything and stays open, in *any* database of the server, holds every reader back until it
//! ends. Under load that is normal for milliseconds; for seconds it is worth a warning, and
//! the operator wants to know whose transaction it is (see docs/operations.md).

use serde::Serialize;
use sqlx::{PgPool, Row};

use crate::StoreError;

/// Committed events that readers cannot hand out yet, and what holds them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HoldBack {
    /// How many committed events wait behind the running transaction.
    pub events: i64,
    /// How long the oldest of them has been stored, in seconds.
    pub oldest_event_seconds: f64,
    /// The oldest running transaction that has a transaction id: the one that holds the
    /// readers. `None` when the service's role may not see it in `pg_stat_activity` (give it
    /// `pg_read_all_stats`) or it is a prepared transaction (`pg_prepared_xacts`).
    pub holder: Option<Holder>,
}

/// A running transaction as `pg_stat_activity` shows it. No query text: it may hold
/// personal data, and the pid is enough to find the session.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Holder {
    /// The server process: `SELECT pg_terminate_backend(pid)` ends the session.
    pub pid: i32,
    /// The database it is connected to (not necessarily the service's).
    pub database: Option<String>,
    /// The role it is connected as.
    pub user: Option<String>,
    /// The `application_name` it gave.
    pub application: Option<String>,
    /// The client's address, when it came over TCP.
    pub client: Option<String>,
    /// `active`, `idle in transaction`, …
    pub state: Option<String>,
    /// How long its transaction has been running, in seconds.
    pub transaction_seconds: Option<f64>,
}

/// One statement: the events at or after the horizon (the oldest running transaction id),
/// which the caller sees as committed, and the oldest transaction holding an id.
const HOLD_BACK_SQL: &str = r#"
WITH horizon AS (SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS xmin),
waiting AS (
    SELECT count(*) AS events,
           extract(epoch FROM now() - min(e.recorded_at))::float8 AS oldest
    FROM events e, horizon h
    WHERE e.transaction_id >= h.xmin
)
SELECT w.events, w.oldest, a.pid, a.datname::text AS database, a.usename::text AS usename,
       a.application_name, host(a.client_addr) AS client, a.state,
       extract(epoch FROM now() - a.xact_start)::float8 AS transaction_seconds
FROM waiting w
LEFT JOIN LATERAL (
    SELECT * FROM pg_stat_activity
    WHERE backend_xid IS NOT NULL AND pid <> pg_backend_pid()
    ORDER BY age(backend_xid) DESC
    LIMIT 1
) a ON true
WHERE w.events > 0
"#;

impl HoldBack {
    /// The events held back right now and their holder; `None` when nothing is held back.
    pub async fn find(pool: &PgPool) -> Result<Option<Self>, StoreError> {
        let Some(row) = sqlx::query(HOLD_BACK_SQL).fetch_optional(pool).await? else {
            return Ok(None);
        };
        let holder = row.get::<Option<i32>, _>("pid").map(|pid| Holder {
            pid,
            database: row.get("database"),
            user: row.get("usename"),
            application: row
                .get::<Option<String>, _>("application_name")
                .filter(|a| !a.is_empty()),
            client: row.get("client"),
            state: row.get("state"),
            transaction_seconds: row.get("transaction_seconds"),
        });
        Ok(Some(Self {
            events: row.get("events"),
            oldest_event_seconds: row.get::<Option<f64>, _>("oldest").unwrap_or(0.0),
            holder,
        }))
    }
}

impl std::fmt::Display for HoldBack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} events held back for {:.1} s",
            self.events, self.oldest_event_seconds
        )?;
        match &self.holder {
            Some(h) => write!(
                f,
                " by pid {} (database {}, user {}, {}, transaction open {:.1} s)",
                h.pid,
                h.database.as_deref().unwrap_or("?"),
                h.user.as_deref().unwrap_or("?"),
                h.state.as_deref().unwrap_or("state unknown"),
                h.transaction_seconds.unwrap_or(0.0)
            ),
            None => write!(f, " by a transaction this role cannot see"),
        }
    }
}

/// Records `held_back` (what [`HoldBack::find`] returned) in the process's metrics:
/// `followup_store_held_back_events` and `followup_store_held_back_seconds` (0 when nothing
/// is held back).
pub fn record_metrics(held_back: Option<&HoldBack>) {
    metrics::gauge!("followup_store_held_back_events")
        .set(held_back.map_or(0.0, |h| h.events as f64));
    metrics::gauge!("followup_store_held_back_seconds")
        .set(held_back.map_or(0.0, |h| h.oldest_event_seconds));
}
