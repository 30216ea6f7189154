//! Rebuilding the projection from the events alone while the service keeps serving
//! (guarantee 5), and building a copy of it to verify the live one against.
//!
//! # How a rebuild goes
//! 1. **Prepare** (one transaction): shadow tables are created `LIKE` the live ones (columns,
//!    defaults, constraints, storage options) but without indexes; the store's readable head
//!    H and the number of events up to it are recorded in `projection_rebuilds`, and the
//!    shadow's checkpoint is set to H.
//! 2. **Load** every event up to H stream by stream ([`EventStore::read_by_stream`]): each
//!    stream is folded with the projector's own logic and written once, with plain INSERTs
//!    into tables without indexes. Each chunk is one transaction together with the last
//!    stream it loaded, so an interrupted rebuild resumes after it. The next chunk is read
//!    while this one is folded and written.
//! 3. **Index**: the live tables' indexes (read from the catalog, so that indexes added by
//!    later migrations come along) are built on the shadow tables, named like the live ones
//!    plus the shadow's suffix, two at a time; then the tables are analysed.
//! 4. **Catch up**: the [`Projection`], pointed at the shadow tables, projects what was
//!    appended after H.
//! 5. **Switch** (one transaction): lock the live projector's checkpoint row (the live
//!    projector pauses at a batch boundary), block writes to the live tables (reads go on),
//!    project what is left, carry over rows the API wrote through for events that are not
//!    readable yet, then drop the live tables, rename the shadow tables and their indexes to
//!    the live names, and move the live checkpoint to the shadow's. Readers wait only during
//!    the drop and rename, and see the old tables or the new ones, never a half-built state.
//!
//! A verification ([`Rebuild::for_verification`]) builds the same way into other shadow
//! tables (primary keys only), then [`Rebuild::compare`]s them with the live ones and
//! [`Rebuild::discard`]s them.
//!
//! # Layout
//! - [`Rebuild`]: [`run`](Rebuild::run) (all five steps), [`build`](Rebuild::build) (1 to 4),
//!   [`switch`](Rebuild::switch), [`compare`](Rebuild::compare), [`state`](Rebuild::state),
//!   [`discard`](Rebuild::discard).
//! - [`Progress`] and [`Phase`]: what an observer is told while it runs; [`RebuildReport`]
//!   with its [`Timings`]; [`Comparison`].
//! - The state table is `migrations/*_projection_rebuilds.sql`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use followup_domain::FollowUp;
use followup_store::followups::STREAM_TYPE;
use followup_store::{subscriptions, Checkpoint, EventStore, RecordedEvent};
use serde::Serialize;
use sqlx::{Connection, PgConnection, PgPool, Row};
use tokio_util::sync::CancellationToken;

use crate::directory::upsert_directory;
use crate::error::{ProjectorError, ReadError};
use crate::inbox::{
    upsert_inbox_with, upsert_subscriptions_with, InboxChange, INBOX_FURTHEST,
    SUBSCRIPTION_NEWER_ONLY,
};
use crate::projection::{
    fold_directory, fold_followup, fold_subscription, inbox_changes, is_directory, lock_checkpoint,
    save_checkpoint, Projection,
};
use crate::read_model::{upsert_with, ReadModel, Write, NEWER_ONLY};
use crate::tables::Tables;

/// How many events one chunk of the load holds unless [`Rebuild::chunk_size`] says otherwise.
pub const DEFAULT_CHUNK: usize = 20_000;

/// The batch size of the catch-up (larger than the live projector's: nobody waits on it).
const CATCH_UP_BATCH: usize = 5_000;

/// How many times the switch tries to take its locks before it gives up.
const SWITCH_ATTEMPTS: usize = 5;

/// How long the switch waits for one lock (readers and writers of the live tables hold them
/// for milliseconds; a longer wait means something holds them for long).
const SWITCH_LOCK_TIMEOUT: &str = "3s";

/// Memory for building one index (a session setting of the index builders only).
const INDEX_MEMORY: &str = "256MB";

/// Why a rebuild stopped.
#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    /// Reading the events or projecting them failed.
    #[error(transparent)]
    Projection(#[from] ProjectorError),
    /// Another rebuild (or verification) of the same tables is running.
    #[error("another {0} is running (its advisory lock is held); wait for it to finish")]
    Busy(&'static str),
    /// It was asked to stop; what is loaded is kept, and running it again resumes.
    #[error("interrupted during {phase:?} with {loaded} of {total} events loaded; run it again to resume")]
    Interrupted {
        /// Where it stopped.
        phase: Phase,
        /// Events loaded so far.
        loaded: i64,
        /// Events the load covers.
        total: i64,
    },
    /// The switch could not get its locks: something holds the live tables for long.
    #[error("the switch could not lock the live tables in {attempts} attempts ({timeout} each); the shadow tables are kept, run it again")]
    SwitchContended {
        /// How many attempts.
        attempts: usize,
        /// The lock timeout of each.
        timeout: &'static str,
    },
    /// A live index's definition is not one this code can copy.
    #[error("index {index} cannot be copied to the shadow table: {reason}")]
    Index {
        /// The live index.
        index: String,
        /// Why.
        reason: String,
    },
}

impl From<sqlx::Error> for RebuildError {
    fn from(error: sqlx::Error) -> Self {
        RebuildError::Projection(error.into())
    }
}

impl From<ReadError> for RebuildError {
    fn from(error: ReadError) -> Self {
        RebuildError::Projection(error.into())
    }
}

impl From<followup_store::StoreError> for RebuildError {
    fn from(error: followup_store::StoreError) -> Self {
        RebuildError::Projection(error.into())
    }
}

/// A step of a rebuild.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Shadow tables are created.
    Prepare,
    /// Events are loaded stream by stream.
    Load,
    /// Indexes are built.
    Index,
    /// Events appended since the load began are projected.
    CatchUp,
    /// The shadow tables take the live ones' place.
    Switch,
}

/// What an observer is told as a rebuild goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Progress {
    /// The current step.
    pub phase: Phase,
    /// How much of it is done (events for load and catch-up, indexes for index).
    pub done: u64,
    /// How much there is (for the catch-up: done plus what is left now).
    pub total: u64,
}

/// How long each part took, in seconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Timings {
    /// Creating the shadow tables and counting the events.
    pub prepare: f64,
    /// The whole load (wall time; reading overlaps folding and writing).
    pub load: f64,
    /// Of the load: reading events (in a task of its own, beside the next two).
    pub read: f64,
    /// Of the load: folding the events into rows (beside reading and writing).
    pub apply: f64,
    /// Of the load: writing the rows (in a task of its own, beside reading and folding).
    pub write: f64,
    /// Building the indexes and analysing.
    pub index: f64,
    /// Projecting what came after the load.
    pub catch_up: f64,
    /// The switch transaction.
    pub switch: f64,
    /// Everything.
    pub total: f64,
}

/// What a rebuild did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RebuildReport {
    /// True when it went on from an interrupted rebuild.
    pub resumed: bool,
    /// Events loaded by this run (fewer than the store holds when it resumed).
    pub events_loaded: i64,
    /// Events the load covered in all (this run and the interrupted ones).
    pub events_total: i64,
    /// Events projected after the load (catch-up and switch).
    pub events_caught_up: u64,
    /// Follow-up rows in the rebuilt table.
    pub followups: i64,
    /// Where the rebuilt projection stands in the reading order.
    pub checkpoint: Checkpoint,
    /// Where the time went.
    pub timings: Timings,
}

impl RebuildReport {
    /// Events per second of the whole run, counting every event it projected.
    pub fn events_per_second(&self) -> f64 {
        let events = self.events_loaded as f64 + self.events_caught_up as f64;
        if self.timings.total > 0.0 {
            events / self.timings.total
        } else {
            0.0
        }
    }
}

/// A rebuild under way, as `projection_rebuilds` records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RebuildState {
    /// The shadow's checkpoint name.
    pub name: String,
    /// `load`, `index` or `catch_up`.
    pub phase: String,
    /// The load covers the events up to here.
    pub until: Checkpoint,
    /// How many events that is.
    pub events_total: i64,
    /// How many are loaded.
    pub events_loaded: i64,
    /// The last stream loaded.
    pub loaded_through: Option<String>,
    /// When it began.
    pub started_at: DateTime<Utc>,
    /// When it last moved.
    pub updated_at: DateTime<Utc>,
}

/// Where the live tables differ from a rebuild of them (see [`Rebuild::compare`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Comparison {
    /// The point of the reading order both were compared at.
    pub at: Checkpoint,
    /// Rows compared per table (live rows; those of streams with later events excluded).
    pub compared: HashMap<String, i64>,
    /// Rows that differ, are missing or are extra, per table.
    pub differing: HashMap<String, i64>,
    /// A few of them: `table: key (live …, rebuilt …)`.
    pub examples: Vec<String>,
}

impl Comparison {
    /// True when nothing differs.
    pub fn is_equal(&self) -> bool {
        self.differing.values().all(|n| *n == 0)
    }
}

/// Builds shadow tables from the events and switches them in (or compares them). Cheap to
/// clone.
#[derive(Debug, Clone)]
pub struct Rebuild {
    /// Where the events come from; it must upcast with the follow-up upcaster.
    store: EventStore,
    /// The shadow tables built, and their checkpoint's name.
    tables: Tables,
    /// Events per chunk of the load (one transaction each).
    chunk: usize,
    /// Every index of the live tables, or only the primary keys (enough to compare).
    all_indexes: bool,
}

/// One chunk of the load: whole streams, in stream id order.
#[derive(Debug, Default)]
struct Chunk {
    /// Their events, each stream's together and oldest first.
    events: Vec<RecordedEvent>,
    /// The last stream of the chunk: where the next one starts.
    through: Option<String>,
    /// How long reading it took.
    read: Duration,
}

/// The rows one chunk makes.
#[derive(Debug, Default)]
struct Rows {
    /// One per follow-up stream.
    followups: Vec<FollowUp>,
    /// Inbox states of notifications.
    inbox: Vec<InboxChange>,
    /// One per subscription stream.
    subscriptions: Vec<followup_domain::Subscription>,
    /// Directory users (written to the live table: it has no shadow, rows only move forwards).
    users: Vec<followup_domain::directory::DirectoryUser>,
    /// Directory teams (the same).
    teams: Vec<followup_domain::directory::DirectoryTeam>,
}

impl Rebuild {
    /// A rebuild of the live projection into the `__rebuild` shadow tables; `store` is built
    /// with the follow-up upcaster (`followup_store::followups::upcaster()`).
    pub fn new(store: EventStore) -> Self {
        Self {
            store,
            tables: Tables::REBUILD,
            chunk: DEFAULT_CHUNK,
            all_indexes: true,
        }
    }

    /// A copy of the projection to compare the live one with, in the `__verify` shadow tables,
    /// with primary keys only.
    pub fn for_verification(store: EventStore) -> Self {
        Self {
            store,
            tables: Tables::VERIFY,
            chunk: DEFAULT_CHUNK,
            all_indexes: false,
        }
    }

    /// Sets how many events one chunk of the load holds (at least 1).
    pub fn chunk_size(mut self, chunk: usize) -> Self {
        self.chunk = chunk.max(1);
        self
    }

    /// The shadow tables this builds.
    pub fn tables(&self) -> Tables {
        self.tables
    }

    fn pool(&self) -> &PgPool {
        self.store.pool()
    }

    /// The projector of the shadow tables.
    fn projector(&self) -> Projection {
        Projection::new(self.store.clone(), ReadModel::new(self.pool().clone()))
            .tables(self.tables)
            .batch_size(CATCH_UP_BATCH)
    }

    /// Builds the shadow tables (resuming an interrupted build) and switches them in for the
    /// live ones. `observer` hears of the progress; `cancel` stops it between two chunks,
    /// keeping what is loaded ([`RebuildError::Interrupted`]).
    pub async fn run(
        &self,
        cancel: &CancellationToken,
        observer: &mut (dyn FnMut(Progress) + Send),
    ) -> Result<RebuildReport, RebuildError> {
        let started = Instant::now();
        let mut lock = self.lock().await?;
        let mut report = self.build_locked(cancel, observer).await?;
        observer(Progress {
            phase: Phase::Switch,
            done: 0,
            total: 1,
        });
        let switching = Instant::now();
        let (checkpoint, events) = self.switch_locked().await?;
        report.timings.switch = switching.elapsed().as_secs_f64();
        report.events_caught_up += events as u64;
        report.checkpoint = checkpoint;
        report.followups = count(self.pool(), Tables::LIVE.followups).await?;
        report.timings.total = started.elapsed().as_secs_f64();
        observer(Progress {
            phase: Phase::Switch,
            done: 1,
            total: 1,
        });
        lock.close_quietly().await;
        Ok(report)
    }

    /// Steps 1 to 4: the shadow tables built and caught up, not switched in.
    pub async fn build(
        &self,
        cancel: &CancellationToken,
        observer: &mut (dyn FnMut(Progress) + Send),
    ) -> Result<RebuildReport, RebuildError> {
        let started = Instant::now();
        let mut lock = self.lock().await?;
        let mut report = self.build_locked(cancel, observer).await?;
        report.followups = count(self.pool(), self.tables.followups).await?;
        report.timings.total = started.elapsed().as_secs_f64();
        lock.close_quietly().await;
        Ok(report)
    }

    /// Step 5 alone, for shadow tables that [`Rebuild::build`] made.
    pub async fn switch(&self) -> Result<Checkpoint, RebuildError> {
        let mut lock = self.lock().await?;
        let (checkpoint, _) = self.switch_locked().await?;
        lock.close_quietly().await;
        Ok(checkpoint)
    }

    /// The rebuild under way, if any.
    pub async fn state(&self) -> Result<Option<RebuildState>, RebuildError> {
        state(self.pool(), self.tables).await
    }

    /// Drops the shadow tables and forgets the rebuild under way.
    pub async fn discard(&self) -> Result<(), RebuildError> {
        let mut lock = self.lock().await?;
        let mut tx = self.pool().begin().await?;
        sqlx::query("SET LOCAL client_min_messages = warning")
            .execute(&mut *tx)
            .await?;
        for (shadow, _) in self.tables.pairs() {
            sqlx::query(&format!("DROP TABLE IF EXISTS {shadow}"))
                .execute(&mut *tx)
                .await?;
        }
        forget(&mut tx, self.tables).await?;
        tx.commit().await?;
        lock.close_quietly().await;
        Ok(())
    }

    /// Takes this rebuild's advisory lock on a connection of its own, which holds it until
    /// it is closed (also when the process dies).
    async fn lock(&self) -> Result<PgConnection, RebuildError> {
        let mut conn = PgConnection::connect_with(&self.pool().connect_options()).await?;
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtext($1))")
            .bind(self.tables.checkpoint)
            .fetch_one(&mut conn)
            .await?;
        if !locked {
            return Err(RebuildError::Busy(self.tables.checkpoint));
        }
        Ok(conn)
    }

    async fn build_locked(
        &self,
        cancel: &CancellationToken,
        observer: &mut (dyn FnMut(Progress) + Send),
    ) -> Result<RebuildReport, RebuildError> {
        let mut report = RebuildReport::default();
        let preparing = Instant::now();
        let state = match self.state().await? {
            Some(state) => {
                report.resumed = true;
                tracing::info!(
                    rebuild.name = self.tables.checkpoint,
                    rebuild.phase = %state.phase,
                    rebuild.events_loaded = state.events_loaded,
                    "resuming an interrupted rebuild"
                );
                state
            }
            None => {
                observer(Progress {
                    phase: Phase::Prepare,
                    done: 0,
                    total: 1,
                });
                self.prepare().await?
            }
        };
        report.timings.prepare = preparing.elapsed().as_secs_f64();
        report.events_total = state.events_total;
        if state.phase == "load" {
            let loading = Instant::now();
            report.events_loaded = self
                .load(&state, cancel, observer, &mut report.timings)
                .await?;
            report.timings.load = loading.elapsed().as_secs_f64();
        }
        if state.phase == "load" || state.phase == "index" {
            let indexing = Instant::now();
            self.index(observer).await?;
            report.timings.index = indexing.elapsed().as_secs_f64();
        }
        let catching_up = Instant::now();
        report.events_caught_up = self.catch_up(cancel, observer).await?;
        report.timings.catch_up = catching_up.elapsed().as_secs_f64();
        report.checkpoint = self.projector().checkpoint().await?;
        Ok(report)
    }

    /// Step 1.
    async fn prepare(&self) -> Result<RebuildState, RebuildError> {
        let until = self.store.readable_head().await?;
        let mut tx = self.pool().begin().await?;
        // No notice for each shadow table that is not there to drop.
        sqlx::query("SET LOCAL client_min_messages = warning")
            .execute(&mut *tx)
            .await?;
        for (shadow, live) in self.tables.pairs() {
            sqlx::query(&format!("DROP TABLE IF EXISTS {shadow}"))
                .execute(&mut *tx)
                .await?;
            sqlx::query(&format!(
                "CREATE TABLE {shadow} (LIKE {live} INCLUDING ALL EXCLUDING INDEXES)"
            ))
            .execute(&mut *tx)
            .await?;
            // Storage parameters (the fill factor) are not part of LIKE.
            let options: Option<Vec<String>> =
                sqlx::query_scalar("SELECT reloptions FROM pg_class WHERE oid = $1::regclass")
                    .bind(live)
                    .fetch_one(&mut *tx)
                    .await?;
            if let Some(options) = options.filter(|o| !o.is_empty()) {
                sqlx::query(&format!(
                    "ALTER TABLE {shadow} SET ({})",
                    options.join(", ")
                ))
                .execute(&mut *tx)
                .await?;
            }
        }
        let total: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM events WHERE (transaction_id, position) <= ($1, $2)",
        )
        .bind(until.transaction_id)
        .bind(until.position)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO projection_rebuilds
                 (name, phase, until_transaction_id, until_position, events_total)
             VALUES ($1, 'load', $2, $3, $4)
             ON CONFLICT (name) DO UPDATE SET phase = 'load',
                 until_transaction_id = $2, until_position = $3, events_total = $4,
                 loaded_through = NULL, events_loaded = 0, started_at = now(), updated_at = now()",
        )
        .bind(self.tables.checkpoint)
        .bind(until.transaction_id)
        .bind(until.position)
        .bind(total)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO projection_checkpoints (name, transaction_id, position) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO UPDATE SET transaction_id = $2, position = $3, updated_at = now()",
        )
        .bind(self.tables.checkpoint)
        .bind(until.transaction_id)
        .bind(until.position)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(state(self.pool(), self.tables)
            .await?
            .expect("written by this transaction"))
    }

    /// Step 2; returns how many events this run loaded.
    async fn load(
        &self,
        state: &RebuildState,
        cancel: &CancellationToken,
        observer: &mut (dyn FnMut(Progress) + Send),
        timings: &mut Timings,
    ) -> Result<i64, RebuildError> {
        let until = state.until;
        let total = state.events_total;
        let mut loaded = state.events_loaded;
        let before = loaded;
        observer(Progress {
            phase: Phase::Load,
            done: loaded as u64,
            total: total as u64,
        });
        let mut chunk = read_chunk(
            self.store.clone(),
            state.loaded_through.clone(),
            until,
            self.chunk,
        )
        .await?;
        // Three stages at once: the next chunk is read (a task of its own) while this one is
        // folded, while the one before is written (a task of its own). Writes go one after
        // the other, in stream order, so the resumable cursor only ever moves forwards.
        let mut writing: Option<tokio::task::JoinHandle<Result<Duration, RebuildError>>> = None;
        while !chunk.events.is_empty() {
            timings.read += chunk.read.as_secs_f64();
            let next = tokio::spawn(read_chunk(
                self.store.clone(),
                chunk.through.clone(),
                until,
                self.chunk,
            ));
            let events = chunk.events.len() as i64;
            let applying = Instant::now();
            let rows = fold_chunk(chunk.events)?;
            timings.apply += applying.elapsed().as_secs_f64();
            if let Some(previous) = writing.take() {
                timings.write += join(previous).await??.as_secs_f64();
            }
            let (this, through) = (self.clone(), chunk.through);
            writing = Some(tokio::spawn(async move {
                let started = Instant::now();
                this.write_chunk(rows, through.as_deref(), events).await?;
                Ok(started.elapsed())
            }));
            loaded += events;
            observer(Progress {
                phase: Phase::Load,
                done: loaded as u64,
                total: total.max(loaded) as u64,
            });
            chunk = join(next).await??;
            if cancel.is_cancelled() && !chunk.events.is_empty() {
                if let Some(last) = writing.take() {
                    join(last).await??;
                }
                return Err(RebuildError::Interrupted {
                    phase: Phase::Load,
                    loaded,
                    total,
                });
            }
        }
        if let Some(last) = writing.take() {
            timings.write += join(last).await??.as_secs_f64();
        }
        sqlx::query(
            "UPDATE projection_rebuilds SET phase = 'index', updated_at = now() WHERE name = $1",
        )
        .bind(self.tables.checkpoint)
        .execute(self.pool())
        .await?;
        Ok(loaded - before)
    }

    /// Writes one chunk's rows and moves the load's cursor past it, in one transaction.
    async fn write_chunk(
        &self,
        rows: Rows,
        through: Option<&str>,
        events: i64,
    ) -> Result<(), RebuildError> {
        let mut tx = self.pool().begin().await?;
        sqlx::query("SET LOCAL synchronous_commit = off")
            .execute(&mut *tx)
            .await?;
        let mut followups: Vec<&FollowUp> = rows.followups.iter().collect();
        upsert_with(
            &mut tx,
            self.tables.followups,
            Write::Insert,
            &mut followups,
        )
        .await?;
        upsert_inbox_with(&mut tx, self.tables.inbox, Write::Insert, &rows.inbox).await?;
        upsert_subscriptions_with(
            &mut tx,
            self.tables.subscriptions,
            Write::Insert,
            &rows.subscriptions,
        )
        .await?;
        upsert_directory(&mut tx, &rows.users, &rows.teams).await?;
        sqlx::query(
            "UPDATE projection_rebuilds
             SET loaded_through = $2, events_loaded = events_loaded + $3, updated_at = now()
             WHERE name = $1",
        )
        .bind(self.tables.checkpoint)
        .bind(through)
        .bind(events)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Step 3: the live tables' indexes (or only their primary keys) on the shadow tables,
    /// built on two connections at once, then ANALYZE.
    async fn index(&self, observer: &mut (dyn FnMut(Progress) + Send)) -> Result<(), RebuildError> {
        let mut builds = Vec::new();
        let mut constraints = Vec::new();
        for (shadow, live) in self.tables.pairs() {
            for index in live_indexes(self.pool(), live).await? {
                if !self.all_indexes && index.constraint.is_none() {
                    continue;
                }
                let name = format!("{}{}", index.name, self.tables.suffix);
                if name.len() > 63 {
                    return Err(RebuildError::Index {
                        index: index.name,
                        reason: format!("{name} is longer than PostgreSQL's 63 characters"),
                    });
                }
                let sql = shadow_index_sql(&index.definition, &index.name, &name, live, shadow)
                    .ok_or_else(|| RebuildError::Index {
                        index: index.name.clone(),
                        reason: format!("unexpected definition: {}", index.definition),
                    })?;
                builds.push((index.gin, sql));
                if let Some(kind) = index.constraint {
                    constraints.push((shadow, name, kind));
                }
            }
        }
        // The slowest (GIN) first, so that the two builders finish at about the same time.
        builds.sort_by_key(|(gin, _)| !gin);
        let total = builds.len() as u64;
        let queue = std::sync::Arc::new(std::sync::Mutex::new(
            builds
                .into_iter()
                .map(|(_, sql)| sql)
                .rev()
                .collect::<Vec<_>>(),
        ));
        let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        let mut builders = tokio::task::JoinSet::new();
        for _ in 0..2 {
            let (queue, pool, done_tx) = (queue.clone(), self.pool().clone(), done_tx.clone());
            builders.spawn(async move {
                let mut conn = pool.acquire().await?;
                sqlx::query(&format!("SET maintenance_work_mem = '{INDEX_MEMORY}'"))
                    .execute(&mut *conn)
                    .await?;
                loop {
                    let Some(sql) = queue.lock().expect("not poisoned").pop() else {
                        break;
                    };
                    sqlx::query(&sql).execute(&mut *conn).await?;
                    let _ = done_tx.send(());
                }
                sqlx::query("RESET maintenance_work_mem")
                    .execute(&mut *conn)
                    .await?;
                Ok::<(), sqlx::Error>(())
            });
        }
        drop(done_tx);
        let mut done = 0;
        observer(Progress {
            phase: Phase::Index,
            done,
            total,
        });
        while done_rx.recv().await.is_some() {
            done += 1;
            observer(Progress {
                phase: Phase::Index,
                done,
                total,
            });
        }
        while let Some(built) = builders.join_next().await {
            built.map_err(|e| ProjectorError::Corrupt {
                stream_id: String::new(),
                reason: format!("an index builder failed: {e}"),
            })??;
        }
        let mut tx = self.pool().begin().await?;
        for (shadow, name, kind) in constraints {
            let exists: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM pg_constraint
                 WHERE conrelid = $1::regclass AND conname = $2)",
            )
            .bind(shadow)
            .bind(&name)
            .fetch_one(&mut *tx)
            .await?;
            if !exists {
                sqlx::query(&format!(
                    "ALTER TABLE {shadow} ADD CONSTRAINT {name} {kind} USING INDEX {name}"
                ))
                .execute(&mut *tx)
                .await?;
            }
        }
        for (shadow, _) in self.tables.pairs() {
            sqlx::query(&format!("ANALYZE {shadow}"))
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(
            "UPDATE projection_rebuilds SET phase = 'catch_up', updated_at = now() WHERE name = $1",
        )
        .bind(self.tables.checkpoint)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Step 4; returns how many events it projected.
    async fn catch_up(
        &self,
        cancel: &CancellationToken,
        observer: &mut (dyn FnMut(Progress) + Send),
    ) -> Result<u64, RebuildError> {
        let projector = self.projector();
        let read_model = ReadModel::new(self.pool().clone());
        let mut done = 0u64;
        loop {
            let lag = read_model.lag(self.tables.checkpoint).await?.max(0) as u64;
            observer(Progress {
                phase: Phase::CatchUp,
                done,
                total: done + lag,
            });
            if lag == 0 {
                return Ok(done);
            }
            if cancel.is_cancelled() {
                return Err(RebuildError::Interrupted {
                    phase: Phase::CatchUp,
                    loaded: done as i64,
                    total: (done + lag) as i64,
                });
            }
            match projector.process_batch().await? {
                0 => return Ok(done),
                n => done += n as u64,
            }
        }
    }

    /// Step 5, retried when it cannot get its locks in time; returns the new live checkpoint
    /// and how many events the switch itself projected.
    async fn switch_locked(&self) -> Result<(Checkpoint, usize), RebuildError> {
        for attempt in 1..=SWITCH_ATTEMPTS {
            match self.try_switch().await {
                Ok(switched) => return Ok(switched),
                Err(RebuildError::Projection(error)) if is_lock_timeout(&error) => {
                    tracing::warn!(
                        switch.attempt = attempt,
                        error.message = %error,
                        "the switch could not lock the live tables in time; catching up and trying again"
                    );
                    self.projector().process_pending().await?;
                }
                Err(other) => return Err(other),
            }
        }
        Err(RebuildError::SwitchContended {
            attempts: SWITCH_ATTEMPTS,
            timeout: SWITCH_LOCK_TIMEOUT,
        })
    }

    async fn try_switch(&self) -> Result<(Checkpoint, usize), RebuildError> {
        let live = Tables::LIVE;
        let shadow = self.tables;
        let live_tables = format!("{}, {}, {}", live.followups, live.inbox, live.subscriptions);
        let mut tx = self.pool().begin().await?;
        sqlx::query(&format!("SET LOCAL lock_timeout = '{SWITCH_LOCK_TIMEOUT}'"))
            .execute(&mut *tx)
            .await?;
        // The live projector locks this row in each batch's transaction: holding it pauses the
        // live projector at a batch boundary until the switch commits.
        lock_checkpoint(&mut tx, live.checkpoint).await?;
        // Writers (the API's write-through) wait from here on; readers go on.
        sqlx::query(&format!(
            "LOCK TABLE {live_tables} IN SHARE ROW EXCLUSIVE MODE"
        ))
        .execute(&mut *tx)
        .await?;
        let projected = self.projector().catch_up_on(&mut tx, None).await?;
        let at = lock_checkpoint(&mut tx, shadow.checkpoint).await?;
        // Rows written through for events that are stored but not readable yet (an older
        // transaction still runs) are ahead of the shadow: carry them over, newer only. The
        // live projector projects those events again later, which changes nothing.
        let pending = "SELECT stream_id::uuid FROM events
                       WHERE (transaction_id, position) > ($1, $2) AND stream_type = $3";
        for sql in [
            format!(
                "INSERT INTO {} AS v SELECT l.* FROM {} l WHERE l.id IN ({pending}) {NEWER_ONLY}",
                shadow.followups, live.followups
            ),
            format!(
                "INSERT INTO {} AS i SELECT l.* FROM {} l WHERE l.followup_id IN ({pending}) {INBOX_FURTHEST}",
                shadow.inbox, live.inbox
            ),
        ] {
            sqlx::query(&sql)
                .bind(at.transaction_id)
                .bind(at.position)
                .bind(STREAM_TYPE)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(&format!(
            "INSERT INTO {} AS s SELECT l.* FROM {} l WHERE l.id IN ({pending}) {SUBSCRIPTION_NEWER_ONLY}",
            shadow.subscriptions, live.subscriptions
        ))
        .bind(at.transaction_id)
        .bind(at.position)
        .bind(subscriptions::STREAM_TYPE)
        .execute(&mut *tx)
        .await?;
        // Readers wait from here to the commit: a drop and a few renames.
        sqlx::query(&format!(
            "LOCK TABLE {live_tables} IN ACCESS EXCLUSIVE MODE"
        ))
        .execute(&mut *tx)
        .await?;
        sqlx::query(&format!("DROP TABLE {live_tables}"))
            .execute(&mut *tx)
            .await?;
        for (shadow_table, live_table) in shadow.pairs() {
            let indexes: Vec<String> = sqlx::query_scalar(
                "SELECT i.relname::text FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
                 WHERE x.indrelid = $1::regclass",
            )
            .bind(shadow_table)
            .fetch_all(&mut *tx)
            .await?;
            sqlx::query(&format!(
                "ALTER TABLE {shadow_table} RENAME TO {live_table}"
            ))
            .execute(&mut *tx)
            .await?;
            for index in indexes {
                if let Some(live_index) = index.strip_suffix(shadow.suffix) {
                    // A constraint's index renames its constraint too.
                    sqlx::query(&format!("ALTER INDEX {index} RENAME TO {live_index}"))
                        .execute(&mut *tx)
                        .await?;
                }
            }
        }
        save_checkpoint(&mut tx, live.checkpoint, at).await?;
        forget(&mut tx, shadow).await?;
        // The swapped-in tables are new: the application role gets its grants on them in the
        // same transaction (`migrations/20261203000002_application_role_tightened.sql`).
        sqlx::query("SELECT followup_grant_app_role()")
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        tracing::info!(
            rebuild.name = shadow.checkpoint,
            checkpoint.transaction_id = at.transaction_id,
            checkpoint.position = at.position,
            "rebuilt projection switched in"
        );
        Ok((at, projected))
    }

    /// Compares the live tables with the shadow tables that [`Rebuild::build`] made, at the
    /// live projector's checkpoint: the shadow is brought to exactly that point first, in a
    /// repeatable-read transaction that sees the live tables as of that moment. Streams with
    /// events after it are left out (the live tables may already show them, written through).
    pub async fn compare(&self, examples: usize) -> Result<Comparison, RebuildError> {
        let mut tx = self.pool().begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            .execute(&mut *tx)
            .await?;
        let live_at: Option<(i64, i64)> = sqlx::query_as(
            "SELECT transaction_id, position FROM projection_checkpoints WHERE name = $1",
        )
        .bind(Tables::LIVE.checkpoint)
        .fetch_optional(&mut *tx)
        .await?;
        let live_at = live_at.map_or(Checkpoint::START, |(transaction_id, position)| Checkpoint {
            transaction_id,
            position,
        });
        self.projector().catch_up_on(&mut tx, Some(live_at)).await?;
        let shadow_at = lock_checkpoint(&mut tx, self.tables.checkpoint).await?;
        let at = live_at.min(shadow_at);
        let mut comparison = Comparison {
            at,
            ..Comparison::default()
        };
        let later = "SELECT stream_id FROM events WHERE (transaction_id, position) > ($1, $2)";
        for (shadow, live) in self.tables.pairs() {
            let key: &[&str] = if live == Tables::LIVE.inbox {
                &["user_id", "followup_id"]
            } else {
                &["id"]
            };
            let stream_key = if live == Tables::LIVE.inbox {
                "followup_id"
            } else {
                "id"
            };
            let columns: Vec<String> = sqlx::query_scalar(
                "SELECT attname::text FROM pg_attribute
                 WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
            )
            .bind(live)
            .fetch_all(&mut *tx)
            .await?;
            let differs = columns
                .iter()
                .map(|c| format!("l.{c} IS DISTINCT FROM s.{c}"))
                .collect::<Vec<_>>()
                .join(" OR ");
            let join = key
                .iter()
                .map(|k| format!("s.{k} = l.{k}"))
                .collect::<Vec<_>>()
                .join(" AND ");
            let key_text = key
                .iter()
                .map(|k| format!("coalesce(l.{k}, s.{k})::text"))
                .collect::<Vec<_>>()
                .join(" || ' ' || ");
            let sql = format!(
                "SELECT {key_text} AS key, l.{stream_key} IS NOT NULL AS in_live,
                        s.{stream_key} IS NOT NULL AS in_rebuilt
                 FROM {live} l FULL JOIN {shadow} s ON {join}
                 WHERE ({differs})
                   AND coalesce(l.{stream_key}, s.{stream_key})::text NOT IN ({later})"
            );
            let rows = sqlx::query(&sql)
                .bind(at.transaction_id)
                .bind(at.position)
                .fetch_all(&mut *tx)
                .await?;
            comparison
                .differing
                .insert(live.to_owned(), rows.len() as i64);
            for row in rows
                .iter()
                .take(examples.saturating_sub(comparison.examples.len()))
            {
                let key: String = row.try_get("key")?;
                let what = match (row.try_get("in_live")?, row.try_get("in_rebuilt")?) {
                    (true, false) => "only in the live table",
                    (false, true) => "missing from the live table",
                    _ => "differs",
                };
                comparison.examples.push(format!("{live} {key}: {what}"));
            }
            let compared: i64 = sqlx::query_scalar(&format!(
                "SELECT count(*) FROM {live} l WHERE l.{stream_key}::text NOT IN ({later})"
            ))
            .bind(at.transaction_id)
            .bind(at.position)
            .fetch_one(&mut *tx)
            .await?;
            comparison.compared.insert(live.to_owned(), compared);
        }
        // Nothing to keep: the shadow's catch-up in this transaction is thrown away with it.
        tx.rollback().await?;
        Ok(comparison)
    }
}

/// The rebuild under way in `tables`, if any.
pub async fn state(pool: &PgPool, tables: Tables) -> Result<Option<RebuildState>, RebuildError> {
    let row = sqlx::query(
        "SELECT name, phase, until_transaction_id, until_position, events_total, events_loaded,
                loaded_through, started_at, updated_at
         FROM projection_rebuilds WHERE name = $1",
    )
    .bind(tables.checkpoint)
    .fetch_optional(pool)
    .await?;
    let Some(row) = row else { return Ok(None) };
    Ok(Some(RebuildState {
        name: row.try_get("name")?,
        phase: row.try_get("phase")?,
        until: Checkpoint {
            transaction_id: row.try_get("until_transaction_id")?,
            position: row.try_get("until_position")?,
        },
        events_total: row.try_get("events_total")?,
        events_loaded: row.try_get("events_loaded")?,
        loaded_through: row.try_get("loaded_through")?,
        started_at: row.try_get("started_at")?,
        updated_at: row.try_get("updated_at")?,
    }))
}

/// Waits for a task of the load, turning its panic into an error.
async fn join<T>(task: tokio::task::JoinHandle<T>) -> Result<T, RebuildError> {
    task.await.map_err(|e| {
        RebuildError::Projection(ProjectorError::Corrupt {
            stream_id: String::new(),
            reason: format!("a task of the rebuild failed: {e}"),
        })
    })
}

/// Reads the next chunk of whole streams after `after`: a full read may end in the middle of
/// a stream, whose events are then left to the next chunk (or, when the chunk holds nothing
/// else, the whole stream is read on its own).
async fn read_chunk(
    store: EventStore,
    after: Option<String>,
    until: Checkpoint,
    limit: usize,
) -> Result<Chunk, RebuildError> {
    let started = Instant::now();
    let mut events = store
        .read_by_stream(after.as_deref(), until, limit as i64)
        .await?;
    if events.len() == limit {
        let last = events.last().expect("a full chunk").stream_id.clone();
        if events.first().is_some_and(|e| e.stream_id == last) {
            events = store
                .read_stream(&last)
                .await?
                .into_iter()
                .filter(|e| e.checkpoint() <= until)
                .collect();
        } else {
            events.retain(|e| e.stream_id != last);
        }
    }
    Ok(Chunk {
        through: events.last().map(|e| e.stream_id.clone()).or(after),
        events,
        read: started.elapsed(),
    })
}

/// Folds a chunk of whole streams into rows, with the projector's logic.
fn fold_chunk(events: Vec<RecordedEvent>) -> Result<Rows, RebuildError> {
    let mut rows = Rows::default();
    let mut events = events.into_iter().peekable();
    while let Some(first) = events.next() {
        let mut stream = vec![first];
        while let Some(next) = events.next_if(|e| e.stream_id == stream[0].stream_id) {
            stream.push(next);
        }
        let stream_type = stream[0].stream_type.clone();
        if stream_type == STREAM_TYPE {
            rows.inbox.extend(inbox_changes(&stream)?);
            if let Some(followup) = fold_followup(stream)? {
                rows.followups.push(followup);
            }
        } else if stream_type == subscriptions::STREAM_TYPE {
            let stream_id = stream[0].stream_id.clone();
            if let Some(subscription) = fold_subscription(&stream_id, &stream)? {
                rows.subscriptions.push(subscription);
            }
        } else if is_directory(&stream_type) {
            fold_directory(&stream_type, &stream, &mut rows.users, &mut rows.teams)?;
        }
    }
    Ok(rows)
}

/// Removes the record of the rebuild in `tables` (its state and its checkpoint).
async fn forget(conn: &mut PgConnection, tables: Tables) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM projection_rebuilds WHERE name = $1")
        .bind(tables.checkpoint)
        .execute(&mut *conn)
        .await?;
    sqlx::query("DELETE FROM projection_checkpoints WHERE name = $1")
        .bind(tables.checkpoint)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

async fn count(pool: &PgPool, table: &str) -> Result<i64, RebuildError> {
    Ok(sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
        .fetch_one(pool)
        .await?)
}

/// One index of a live table, as the catalog has it.
#[derive(Debug)]
struct LiveIndex {
    /// Its name.
    name: String,
    /// `CREATE … INDEX …`, as `pg_get_indexdef` writes it.
    definition: String,
    /// `PRIMARY KEY` or `UNIQUE` when it backs such a constraint.
    constraint: Option<&'static str>,
    /// GIN indexes take longest to build.
    gin: bool,
}

async fn live_indexes(pool: &PgPool, table: &str) -> Result<Vec<LiveIndex>, RebuildError> {
    let rows = sqlx::query(
        "SELECT i.relname::text AS name, pg_get_indexdef(x.indexrelid) AS definition,
                c.contype::text AS contype, am.amname::text AS method
         FROM pg_index x
         JOIN pg_class i ON i.oid = x.indexrelid
         JOIN pg_am am ON am.oid = i.relam
         LEFT JOIN pg_constraint c ON c.conindid = x.indexrelid AND c.conrelid = x.indrelid
         WHERE x.indrelid = $1::regclass
         ORDER BY i.relname",
    )
    .bind(table)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            let contype: Option<String> = row.try_get("contype")?;
            let method: String = row.try_get("method")?;
            Ok(LiveIndex {
                name: row.try_get("name")?,
                definition: row.try_get("definition")?,
                constraint: match contype.as_deref() {
                    Some("p") => Some("PRIMARY KEY"),
                    Some("u") => Some("UNIQUE"),
                    _ => None,
                },
                gin: method == "gin",
            })
        })
        .collect()
}

/// The statement that builds live index `index` (defined by `definition`) of `live` on
/// `shadow` as `shadow_index`, or `None` when the definition is not of the expected form.
fn shadow_index_sql(
    definition: &str,
    index: &str,
    shadow_index: &str,
    live: &str,
    shadow: &str,
) -> Option<String> {
    let (unique, rest) = match definition.strip_prefix(&format!("CREATE UNIQUE INDEX {index} ON "))
    {
        Some(rest) => (true, rest),
        None => (
            false,
            definition.strip_prefix(&format!("CREATE INDEX {index} ON "))?,
        ),
    };
    let (table, tail) = rest.split_once(' ')?;
    let schema = table.strip_suffix(live)?;
    if !(schema.is_empty() || schema.ends_with('.')) {
        return None;
    }
    Some(format!(
        "CREATE {}INDEX IF NOT EXISTS {shadow_index} ON {schema}{shadow} {tail}",
        if unique { "UNIQUE " } else { "" }
    ))
}

/// True when `error` is PostgreSQL's `lock_not_available` (the lock timeout ran out).
fn is_lock_timeout(error: &ProjectorError) -> bool {
    let ProjectorError::Read(ReadError::Database(error)) = error else {
        return false;
    };
    error
        .as_database_error()
        .and_then(|e| e.code())
        .is_some_and(|code| code == "55P03")
}

/// A connection that holds an advisory lock; closing it lets the lock go.
trait CloseQuietly {
    async fn close_quietly(&mut self);
}

impl CloseQuietly for PgConnection {
    async fn close_quietly(&mut self) {
        if let Err(error) = sqlx::query("SELECT pg_advisory_unlock_all()")
            .execute(&mut *self)
            .await
        {
            tracing::debug!(error.message = %error, "letting the rebuild lock go failed; it goes when the connection closes");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_index_definition_is_rewritten_for_the_shadow_table() {
        assert_eq!(
            shadow_index_sql(
                "CREATE INDEX followups_view_dashboard ON public.followups_view USING btree (owner, institution, kind, due) WHERE (status = 'open'::text)",
                "followups_view_dashboard",
                "followups_view_dashboard__rebuild",
                "followups_view",
                "followups_view__rebuild",
            )
            .unwrap(),
            "CREATE INDEX IF NOT EXISTS followups_view_dashboard__rebuild ON public.followups_view__rebuild USING btree (owner, institution, kind, due) WHERE (status = 'open'::text)"
        );
        assert_eq!(
            shadow_index_sql(
                "CREATE UNIQUE INDEX subscriptions_pkey ON public.subscriptions USING btree (id)",
                "subscriptions_pkey",
                "subscriptions_pkey__verify",
                "subscriptions",
                "subscriptions__verify",
            )
            .unwrap(),
            "CREATE UNIQUE INDEX IF NOT EXISTS subscriptions_pkey__verify ON public.subscriptions__verify USING btree (id)"
        );
    }

    #[test]
    fn an_index_of_another_table_is_not_rewritten() {
        assert!(shadow_index_sql(
            "CREATE INDEX x ON public.other_subscriptions USING btree (id)",
            "x",
            "x__rebuild",
            "subscriptions",
            "subscriptions__rebuild",
        )
        .is_none());
    }
}
