//! `followupctl inspect`: a follow-up's stream (events, actors, times) and its current state;
//! the event store's positions and the projections' checkpoints and lag.

use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use followup_domain::{FollowUp, FollowUpId};
use followup_readmodel::{RebuildState, Tables};
use followup_store::followups::upcaster;
use followup_store::{Checkpoint, EventStore, FollowUps, HoldBack};
use serde::Serialize;
use serde_json::Value;
use sqlx::PgPool;

use crate::output::Report;

/// What to inspect.
#[derive(Debug, Clone, Subcommand)]
pub enum InspectCmd {
    /// A follow-up's events (version, type, actor, time, place in the store), its state as
    /// the events say, and the row the API serves.
    ///
    /// Example: followupctl inspect followup 0b7c2f1e-5d1a-4a3e-9f57-2a9c3c1d4e10
    Followup(FollowupArgs),
    /// The event store's head and what is held back (and by which transaction: pid,
    /// database, user, state, age), every projection's checkpoint and lag (events it has not
    /// processed yet, and for how long), and a rebuild under way.
    ///
    /// Example: followupctl inspect store --json
    Store,
}

/// Settings of `inspect followup`.
#[derive(Debug, Clone, Args)]
pub struct FollowupArgs {
    /// The follow-up's id.
    pub id: FollowUpId,
}

/// One event of a stream, as shown.
#[derive(Debug, Clone, Serialize)]
pub struct EventLine {
    /// Its version in the stream.
    pub version: u64,
    /// Its type.
    pub event_type: String,
    /// Who or what caused it.
    pub actor: Value,
    /// When it was stored.
    pub recorded_at: DateTime<Utc>,
    /// Its position in the store.
    pub position: i64,
    /// The transaction that wrote it.
    pub transaction_id: i64,
    /// Its id.
    pub event_id: uuid::Uuid,
    /// The message or request it came from, if any.
    pub correlation_id: Option<String>,
    /// What it carries.
    pub payload: Value,
}

/// `inspect followup`.
#[derive(Debug, Clone, Serialize)]
pub struct FollowupReport {
    /// The follow-up.
    pub id: FollowUpId,
    /// Its events, oldest first.
    pub events: Vec<EventLine>,
    /// Its state as the events say (`None`: no such follow-up).
    pub state: Option<FollowUp>,
    /// The version of the row the API serves (`None`: no row).
    pub read_model_version: Option<i64>,
}

impl Report for FollowupReport {
    fn human(&self) -> String {
        let Some(state) = &self.state else {
            return format!("follow-up {} has no events: it does not exist", self.id);
        };
        let mut out = format!(
            "follow-up {} ({} in {}), {} {} (v{}), owner {}\n  subject: {}\n",
            self.id,
            state.kind.as_str(),
            state.institution.as_str(),
            state.status.as_str(),
            state.status_reason.as_str(),
            state.version,
            state.owner,
            state.subject.as_str(),
        );
        if let Some(due) = state.due {
            out.push_str(&format!("  due: {due}\n"));
        }
        out.push_str(&match self.read_model_version {
            Some(v) if v == state.version as i64 => format!("  read model: v{v} (up to date)\n"),
            Some(v) => format!(
                "  read model: v{v} (behind the events' v{}; the projector will catch up)\n",
                state.version
            ),
            None => "  read model: no row yet (the projector will catch up)\n".into(),
        });
        out.push_str("events:\n");
        for e in &self.events {
            out.push_str(&format!(
                "  v{:<3} {:<16} {}  by {:<32} position {} (tx {})\n",
                e.version,
                e.event_type,
                e.recorded_at.format("%Y-%m-%d %H:%M:%S%.3f UTC"),
                actor_text(&e.actor),
                e.position,
                e.transaction_id
            ));
        }
        out
    }
}

/// An actor as `type:id` (`rule:applicant-transfer-defects`, `user:u1`).
fn actor_text(actor: &Value) -> String {
    let kind = actor.get("type").and_then(Value::as_str).unwrap_or("?");
    match actor.get("id").and_then(Value::as_str) {
        Some(id) => format!("{kind}:{id}"),
        None => kind.to_owned(),
    }
}

/// One projection's place in the store.
#[derive(Debug, Clone, Serialize)]
pub struct CheckpointLine {
    /// Its name in `projection_checkpoints`.
    pub name: String,
    /// The last event it processed.
    pub checkpoint: Checkpoint,
    /// Events in the store after it.
    pub lag: i64,
    /// How long the oldest event it could process now and has not has been stored, in
    /// seconds (0 when it is up to date with what is readable).
    pub lag_seconds: f64,
    /// When it last moved.
    pub updated_at: DateTime<Utc>,
}

/// `inspect store`.
#[derive(Debug, Clone, Serialize)]
pub struct StoreReport {
    /// Events stored.
    pub events: i64,
    /// The highest position handed out.
    pub head_position: i64,
    /// The last event readers can read now (everything before it is committed and readable).
    pub readable_head: Checkpoint,
    /// Events stored but held back by an older transaction that is still running, and that
    /// transaction (`None` when nothing is held back).
    pub held_back: Option<HoldBack>,
    /// Streams per stream type.
    pub streams: Vec<(String, i64)>,
    /// Every projection's (and the relay's) checkpoint.
    pub checkpoints: Vec<CheckpointLine>,
    /// Rebuilds under way.
    pub rebuilds: Vec<RebuildState>,
}

impl Report for StoreReport {
    fn human(&self) -> String {
        let mut out = format!(
            "event store: {} events, head position {}, readable up to {}:{}{}\n",
            self.events,
            self.head_position,
            self.readable_head.transaction_id,
            self.readable_head.position,
            match &self.held_back {
                Some(h) => format!(
                    "\n  {h}\n  (every reader waits for it to end: docs/operations.md \"Held back\")"
                ),
                None => String::new(),
            }
        );
        for (stream_type, n) in &self.streams {
            out.push_str(&format!("  {n} {stream_type} streams\n"));
        }
        out.push_str("checkpoints:\n");
        if self.checkpoints.is_empty() {
            out.push_str("  none (no projection has run)\n");
        }
        for c in &self.checkpoints {
            out.push_str(&format!(
                "  {:<20} at {}:{}  lag {:>8} events, {:.1} s  (moved {})\n",
                c.name,
                c.checkpoint.transaction_id,
                c.checkpoint.position,
                c.lag,
                c.lag_seconds,
                c.updated_at.format("%Y-%m-%d %H:%M:%S UTC")
            ));
        }
        for r in &self.rebuilds {
            out.push_str(&format!(
                "rebuild under way: {} in phase {}, {} of {} events loaded (started {}); \
                 `followupctl rebuild` resumes it\n",
                r.name,
                r.phase,
                r.events_loaded,
                r.events_total,
                r.started_at.format("%Y-%m-%d %H:%M:%S UTC")
            ));
        }
        out
    }
}

/// `inspect followup`.
pub async fn followup(pool: PgPool, id: FollowUpId) -> anyhow::Result<FollowupReport> {
    let repo = FollowUps::new(EventStore::new(pool.clone()).with_upcaster(upcaster()));
    let (state, events) = repo.load_with_events(id).await?;
    let read_model_version: Option<i64> = sqlx::query_scalar(&format!(
        "SELECT version FROM {} WHERE id = $1",
        Tables::LIVE.followups
    ))
    .bind(id.as_uuid())
    .fetch_optional(&pool)
    .await?;
    Ok(FollowupReport {
        id,
        events: events
            .into_iter()
            .map(|e| EventLine {
                version: e.version,
                event_type: e.event_type,
                actor: e.metadata.actor,
                recorded_at: e.recorded_at,
                position: e.position,
                transaction_id: e.transaction_id,
                event_id: e.event_id,
                correlation_id: e.metadata.correlation_id,
                payload: e.payload,
            })
            .collect(),
        state,
        read_model_version,
    })
}

/// `inspect store`.
pub async fn store(pool: PgPool) -> anyhow::Result<StoreReport> {
    let store = EventStore::new(pool.clone());
    let (head_position, events) = store.head().await?;
    let readable_head = store.readable_head().await?;
    let held_back = HoldBack::find(&pool).await?;
    let streams: Vec<(String, i64)> = sqlx::query_as(
        "SELECT stream_type, count(*) FROM events WHERE version = 1
         GROUP BY stream_type ORDER BY stream_type",
    )
    .fetch_all(&pool)
    .await?;
    let rows: Vec<(String, i64, i64, DateTime<Utc>)> = sqlx::query_as(
        "SELECT name, transaction_id, position, updated_at FROM projection_checkpoints ORDER BY name",
    )
    .fetch_all(&pool)
    .await?;
    let read_model = followup_readmodel::ReadModel::new(pool.clone());
    let mut checkpoints = Vec::with_capacity(rows.len());
    for (name, transaction_id, position, updated_at) in rows {
        checkpoints.push(CheckpointLine {
            lag: read_model.lag(&name).await?,
            lag_seconds: read_model.backlog(&name).await?.seconds,
            name,
            checkpoint: Checkpoint {
                transaction_id,
                position,
            },
            updated_at,
        });
    }
    let mut rebuilds = Vec::new();
    for tables in [Tables::REBUILD, Tables::VERIFY] {
        if let Some(state) = followup_readmodel::rebuild::state(&pool, tables).await? {
            rebuilds.push(state);
        }
    }
    Ok(StoreReport {
        events,
        head_position,
        readable_head,
        held_back,
        streams,
        checkpoints,
        rebuilds,
    })
}
