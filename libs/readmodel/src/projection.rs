//! [`Projection`]: keeps `followups_view`, `notification_inbox` and `subscriptions` current
//! with the event store. The live loop that follows the store is the projector role
//! (`services/projector`); a rebuild projects into shadow tables with this same logic.
//!
//! # How a batch is projected
//! 1. **Read** up to `batch_size` events after the checkpoint, in the store's gap-free reading
//!    order ([`EventStore::read_all`]).
//! 2. **Lock** the projector's checkpoint row in a transaction. If another projector of the
//!    same name got further meanwhile, the events it projected are left out; if the
//!    checkpoint went back (a rebuild reset it), the batch is dropped and reading starts again
//!    from there.
//! 3. **Load** the current rows of the batch's follow-ups in one query (only their versions
//!    when they have every event of the batch already).
//! 4. **Apply** the events in order with the domain's `decode` and `evolve`. An event whose
//!    version the row has already is skipped (the API wrote the follow-up through first). An
//!    event more than one version ahead of the row means the row is older than the
//!    checkpoint (it was lost or restored): that follow-up is rebuilt from its whole stream.
//! 5. **Write** the changed rows and the new checkpoint, and commit. A crash before the commit
//!    writes neither, so the batch is projected again; a crash after it has nothing left to do.
//!
//! The same transaction writes the inbox states that `read` and `dismissed` events record
//! (`notification_inbox`) and the subscriptions whose streams changed (`subscriptions`, each
//! folded from its whole stream). Events of other stream types only move the checkpoint.
//!
//! The tables and the checkpoint's name are a [`Tables`]: the live ones by default, or the
//! shadow tables of a rebuild ([`crate::rebuild`]), which projects with this same logic.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::Duration;

use followup_domain::aggregate::Aggregate;
use followup_domain::directory::{DirectoryTeam, DirectoryUser};
use followup_domain::{
    decode, evolve, Event, FollowUp, FollowUpId, InboxState, State, Subscription,
};
use followup_store::followups::STREAM_TYPE;
use followup_store::subscriptions;
use followup_store::{Checkpoint, EventStore, RecordedEvent};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::directory::upsert_directory;
use crate::error::ProjectorError;
use crate::inbox::{upsert_inbox_with, upsert_subscriptions_with, InboxChange};
use crate::read_model::{load_with, upsert_with, ReadModel, Write};
use crate::tables::Tables;

/// The name the follow-up projector keeps its checkpoint under (and the name to pass to
/// [`ReadModel::lag`]).
pub const PROJECTION_NAME: &str = Tables::LIVE.checkpoint;

/// How many events one batch holds unless [`Projection::batch_size`] says otherwise.
pub const DEFAULT_BATCH_SIZE: usize = 1000;

/// How long [`Projection::process_batch`] waits for events held back by an older transaction
/// that is still running (anywhere on the server) before it returns without them.
pub const HELD_BACK_PATIENCE: Duration = Duration::from_secs(10);

/// How often [`Projection::process_batch`] looks again while events are held back.
const HELD_BACK_RETRY: Duration = Duration::from_millis(5);

/// Projects follow-up events into the read model (`followups_view`), with a durable
/// checkpoint. Several projectors may run at once: they never double or lose anything, they
/// only share the work.
#[derive(Debug, Clone)]
pub struct Projection {
    /// Where the events come from; it must upcast with the follow-up upcaster.
    store: EventStore,
    /// Where the rows and the checkpoint go.
    read_model: ReadModel,
    /// The most events read and written in one transaction.
    batch_size: usize,
    /// Where the rows and the checkpoint go: the live tables, or a rebuild's shadow tables.
    tables: Tables,
}

/// What projecting one batch came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The checkpoint moved past this many events of the batch (fewer than the batch when
    /// another projector had projected its start already).
    Projected(usize),
    /// The checkpoint is behind where the batch starts (a rebuild reset it): start reading
    /// again from the stored checkpoint.
    Reset,
}

impl Projection {
    /// A projector from `store` (built with the follow-up upcaster,
    /// `followup_store::followups::upcaster()`) into `read_model`, with batches of
    /// [`DEFAULT_BATCH_SIZE`] events.
    pub fn new(store: EventStore, read_model: ReadModel) -> Self {
        Self {
            store,
            read_model,
            batch_size: DEFAULT_BATCH_SIZE,
            tables: Tables::LIVE,
        }
    }

    /// Where the events come from.
    pub fn store(&self) -> &EventStore {
        &self.store
    }

    /// The name the checkpoint is kept under.
    pub fn name(&self) -> &'static str {
        self.tables.checkpoint
    }

    /// Projects into `tables` instead of the live read model (a rebuild's shadow tables).
    pub fn tables(mut self, tables: Tables) -> Self {
        self.tables = tables;
        self
    }

    /// Sets how many events one batch (one transaction) holds, at least 1.
    pub fn batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size.max(1);
        self
    }

    /// Projects what is pending now, batch by batch, and returns how many events the
    /// checkpoint moved past (0: it was up to date). What tests and rebuild tools call.
    ///
    /// While one batch is written, the next one is read, so that a long catch-up keeps both
    /// the reading and the writing busy.
    pub async fn process_pending(&self) -> Result<usize, ProjectorError> {
        let mut total = 0;
        loop {
            let mut start = self.checkpoint().await?;
            let mut events = self.store.read_all(start, self.batch_limit()).await?;
            while let Some(end) = events.last().map(RecordedEvent::checkpoint) {
                let (step, next) = tokio::join!(
                    self.project(start, events),
                    self.store.read_all(end, self.batch_limit())
                );
                match step? {
                    Step::Projected(projected) => {
                        total += projected;
                        start = end;
                        events = next?;
                    }
                    Step::Reset => {
                        start = self.checkpoint().await?;
                        events = self.store.read_all(start, self.batch_limit()).await?;
                    }
                }
            }
            // Nothing more can be read right now; events held back by a running transaction
            // are still pending, and `process_batch` waits for them.
            match self.process_batch().await? {
                0 => return Ok(total),
                projected => total += projected,
            }
        }
    }

    /// Projects the next batch from the durable checkpoint and returns how many events the
    /// checkpoint moved past; 0 only when nothing is pending. Lets a tool show progress.
    ///
    /// Events that are stored but held back by an older transaction still running (see
    /// [`EventStore::read_all`]) are pending too: it waits for them, up to
    /// [`HELD_BACK_PATIENCE`], so that everything committed before the call is projected.
    pub async fn process_batch(&self) -> Result<usize, ProjectorError> {
        let started = tokio::time::Instant::now();
        loop {
            let start = self.checkpoint().await?;
            let events = self.store.read_all(start, self.batch_limit()).await?;
            if events.is_empty() {
                if !self.store.has_unreadable_after(start).await? {
                    return Ok(0);
                }
                if started.elapsed() > HELD_BACK_PATIENCE {
                    tracing::warn!(
                        "events are held back by a long-running transaction; projecting them later"
                    );
                    return Ok(0);
                }
                tokio::time::sleep(HELD_BACK_RETRY).await;
                continue;
            }
            match self.project(start, events).await? {
                Step::Projected(0) | Step::Reset => continue,
                Step::Projected(projected) => return Ok(projected),
            }
        }
    }

    /// Where the projector has got to: the last event projected (the start of the store
    /// when it never ran).
    pub async fn checkpoint(&self) -> Result<Checkpoint, ProjectorError> {
        let row: Option<(i64, i64)> = sqlx::query_as(
            "SELECT transaction_id, position FROM projection_checkpoints WHERE name = $1",
        )
        .bind(self.tables.checkpoint)
        .fetch_optional(self.read_model.pool())
        .await?;
        Ok(
            row.map_or(Checkpoint::START, |(transaction_id, position)| Checkpoint {
                transaction_id,
                position,
            }),
        )
    }

    /// Projects `events`, which follow `start` in reading order, in one transaction with the
    /// checkpoint (steps 2 to 5 of the module documentation). The live projector role
    /// calls it for each batch its tail reads.
    #[tracing::instrument(name = "projector.batch", skip_all, fields(projection = self.tables.checkpoint, events = events.len()))]
    pub async fn project(
        &self,
        start: Checkpoint,
        events: Vec<RecordedEvent>,
    ) -> Result<Step, ProjectorError> {
        let mut tx = self.read_model.pool().begin().await?;
        // The commit need not wait for the disk: should the server crash before this
        // transaction is on disk, rows and checkpoint are lost together and the batch is
        // simply projected again.
        sqlx::query("SET LOCAL synchronous_commit = off")
            .execute(&mut *tx)
            .await?;
        let step = self.project_on(&mut tx, start, events).await?;
        match step {
            Step::Projected(n) if n > 0 => tx.commit().await?,
            // Ended at once (not left to the drop), so that the lock is released at once.
            _ => tx.rollback().await?,
        }
        Ok(step)
    }

    /// Projects everything readable now that is not projected yet (and not after `until`,
    /// when given) on `conn`, inside the caller's transaction, and returns how many events
    /// that was. A rebuild's switch and a verification call it while they hold locks that
    /// must not be let go in between.
    pub(crate) async fn catch_up_on(
        &self,
        conn: &mut PgConnection,
        until: Option<Checkpoint>,
    ) -> Result<usize, ProjectorError> {
        let mut total = 0;
        loop {
            let start = lock_checkpoint(conn, self.tables.checkpoint).await?;
            if until.is_some_and(|until| start >= until) {
                return Ok(total);
            }
            let events: Vec<RecordedEvent> = self
                .store
                .read_all(start, self.batch_limit())
                .await?
                .into_iter()
                .filter(|e| until.is_none_or(|until| e.checkpoint() <= until))
                .collect();
            match self.project_on(conn, start, events).await? {
                Step::Projected(0) | Step::Reset => return Ok(total),
                Step::Projected(n) => total += n,
            }
        }
    }

    /// Steps 2 to 5 of the module documentation on `conn`, whose transaction the caller
    /// commits (only when events were projected).
    async fn project_on(
        &self,
        conn: &mut PgConnection,
        start: Checkpoint,
        events: Vec<RecordedEvent>,
    ) -> Result<Step, ProjectorError> {
        let tables = self.tables;
        let stored = lock_checkpoint(conn, tables.checkpoint).await?;
        if stored < start {
            return Ok(Step::Reset);
        }
        // Another projector may have projected the start of this batch already.
        let events: Vec<RecordedEvent> = events
            .into_iter()
            .filter(|e| e.checkpoint() > stored)
            .collect();
        let Some(end) = events.last().map(RecordedEvent::checkpoint) else {
            return Ok(Step::Projected(0));
        };
        let projected = events.len();

        let inbox = inbox_changes(&events)?;
        let subscriptions = self.subscriptions_changed(&events).await?;
        let (users, teams) = self.directory_changed(&events).await?;
        let rows_now = load_with(conn, tables.followups, &newest_versions(&events)?).await?;
        let mut states = rows_now.behind;
        let mut changed = HashSet::new();
        for event in events {
            if event.stream_type != STREAM_TYPE {
                continue;
            }
            let id = stream_followup_id(&event.stream_id)?;
            if rows_now.current.contains(&id) {
                // Its row has every event of this batch already.
                continue;
            }
            let version = states.get(&id).map_or(0, |f| f.version);
            if event.version <= version {
                // Written through by the API already, or rebuilt from the stream below.
                continue;
            }
            let next = if event.version == version + 1 {
                apply(states.remove(&id), event)?
            } else {
                self.rebuild(id, event.version).await?
            };
            states.insert(id, next);
            changed.insert(id);
        }

        let mut rows: Vec<&FollowUp> = changed.iter().filter_map(|id| states.get(id)).collect();
        upsert_with(conn, tables.followups, Write::Upsert, &mut rows).await?;
        upsert_inbox_with(conn, tables.inbox, Write::Upsert, &inbox).await?;
        upsert_subscriptions_with(conn, tables.subscriptions, Write::Upsert, &subscriptions)
            .await?;
        // The directory has no shadow: its rows only ever move forwards, so a rebuild's
        // projector writes the live ones too.
        upsert_directory(conn, &users, &teams).await?;
        save_checkpoint(conn, tables.checkpoint, end).await?;
        Ok(Step::Projected(projected))
    }

    /// The directory users and teams that `events` change, each folded from its whole stream.
    async fn directory_changed(
        &self,
        events: &[RecordedEvent],
    ) -> Result<(Vec<DirectoryUser>, Vec<DirectoryTeam>), ProjectorError> {
        let (mut users, mut teams) = (Vec::new(), Vec::new());
        let streams: BTreeSet<(&str, &str)> = events
            .iter()
            .filter(|e| is_directory(&e.stream_type))
            .map(|e| (e.stream_type.as_str(), e.stream_id.as_str()))
            .collect();
        for (stream_type, stream_id) in streams {
            let stream = self.store.read_stream(stream_id).await?;
            fold_directory(stream_type, &stream, &mut users, &mut teams)?;
        }
        Ok((users, teams))
    }

    /// The subscriptions that `events` change, each folded from its whole stream (they are
    /// few and short, and this needs no state in the read model to build on).
    async fn subscriptions_changed(
        &self,
        events: &[RecordedEvent],
    ) -> Result<Vec<Subscription>, ProjectorError> {
        let ids: BTreeSet<&str> = events
            .iter()
            .filter(|e| e.stream_type == subscriptions::STREAM_TYPE)
            .map(|e| e.stream_id.as_str())
            .collect();
        let mut changed = Vec::with_capacity(ids.len());
        for stream_id in ids {
            let stream = self.store.read_stream(stream_id).await?;
            if let Some(subscription) = fold_subscription(stream_id, &stream)? {
                changed.push(subscription);
            }
        }
        Ok(changed)
    }

    /// Follow-up `id` folded from its whole stream, which must reach at least `version`.
    async fn rebuild(&self, id: FollowUpId, version: u64) -> Result<FollowUp, ProjectorError> {
        let stream_id = id.to_string();
        tracing::info!(followup.id = %id, "read model row is behind its stream; rebuilding it from the stream");
        match fold_followup(self.store.read_stream(&stream_id).await?)? {
            Some(followup) if followup.version >= version => Ok(followup),
            _ => Err(ProjectorError::Corrupt {
                stream_id,
                reason: format!("the stream ends before version {version}, which was read"),
            }),
        }
    }

    /// The batch size as the store's reading functions take it.
    /// The most events one batch holds, as the tail reads them.
    pub fn batch_limit(&self) -> i64 {
        i64::try_from(self.batch_size).unwrap_or(i64::MAX)
    }
}

/// A follow-up folded from its stream's `events`, oldest first (`None` for no events).
pub(crate) fn fold_followup(
    events: impl IntoIterator<Item = RecordedEvent>,
) -> Result<State, ProjectorError> {
    let mut state: State = None;
    for event in events {
        state = Some(apply(state, event)?);
    }
    Ok(state)
}

/// True for the stream types of the directory.
pub(crate) fn is_directory(stream_type: &str) -> bool {
    stream_type == <DirectoryUser as Aggregate>::STREAM_TYPE
        || stream_type == <DirectoryTeam as Aggregate>::STREAM_TYPE
}

/// Folds the whole stream of a directory user or team into `users` or `teams`.
pub(crate) fn fold_directory(
    stream_type: &str,
    stream: &[RecordedEvent],
    users: &mut Vec<DirectoryUser>,
    teams: &mut Vec<DirectoryTeam>,
) -> Result<(), ProjectorError> {
    let Some(first) = stream.first() else {
        return Ok(());
    };
    let corrupt = |reason: String| ProjectorError::Corrupt {
        stream_id: first.stream_id.clone(),
        reason,
    };
    fn fold<A: Aggregate>(stream: &[RecordedEvent]) -> Result<Option<A>, String> {
        let id = A::parse_id(&stream[0].stream_id).ok_or("the stream's id is not a UUID")?;
        followup_store::executor::fold::<A>(id, None, stream).map_err(|e| e.to_string())
    }
    if stream_type == <DirectoryUser as Aggregate>::STREAM_TYPE {
        users.extend(fold::<DirectoryUser>(stream).map_err(corrupt)?);
    } else {
        teams.extend(fold::<DirectoryTeam>(stream).map_err(corrupt)?);
    }
    Ok(())
}

/// The subscription that the events of its stream `stream_id` make (oldest first, the whole
/// stream), or `None` when they make none.
pub(crate) fn fold_subscription(
    stream_id: &str,
    stream: &[RecordedEvent],
) -> Result<Option<Subscription>, ProjectorError> {
    let corrupt = |reason: String| ProjectorError::Corrupt {
        stream_id: stream_id.to_owned(),
        reason,
    };
    let id = subscriptions::stream_subscription_id(stream_id)
        .ok_or_else(|| corrupt("a subscription stream's id must be a UUID".into()))?;
    subscriptions::fold(id, stream).map_err(|e| corrupt(e.to_string()))
}

/// `state` after the stored `event`, which must be the next version of the stream.
fn apply(state: State, mut event: RecordedEvent) -> Result<FollowUp, ProjectorError> {
    let payload = std::mem::take(&mut event.payload);
    let corrupt = |reason: String| ProjectorError::Corrupt {
        stream_id: event.stream_id.clone(),
        reason,
    };
    let decoded = decode(&event.event_type, event.schema_version, payload).map_err(|e| {
        corrupt(format!(
            "event {} (version {}): {e}",
            event.event_id, event.version
        ))
    })?;
    match evolve(state, &decoded) {
        Some(followup) if followup.version == event.version => Ok(followup),
        _ => Err(corrupt(format!(
            "event {} ({}) does not apply as version {} of the follow-up",
            event.event_id, event.event_type, event.version
        ))),
    }
}

/// The inbox states that the `read` and `dismissed` events among `events` record.
pub(crate) fn inbox_changes(events: &[RecordedEvent]) -> Result<Vec<InboxChange>, ProjectorError> {
    let mut changes = Vec::new();
    for event in events.iter().filter(|e| {
        e.stream_type == STREAM_TYPE && matches!(e.event_type.as_str(), "read" | "dismissed")
    }) {
        let decoded = decode(
            &event.event_type,
            event.schema_version,
            event.payload.clone(),
        )
        .map_err(|e| ProjectorError::Corrupt {
            stream_id: event.stream_id.clone(),
            reason: format!("event {}: {e}", event.event_id),
        })?;
        let (user, state, at) = match decoded {
            Event::Read { user, at } => (user, InboxState::Read, at),
            Event::Dismissed { user, at } => (user, InboxState::Dismissed, at),
            _ => continue,
        };
        changes.push(InboxChange {
            followup: stream_followup_id(&event.stream_id)?,
            user,
            state,
            at,
        });
    }
    Ok(changes)
}

/// The follow-ups that `events` change, each with the newest version the batch has of it: what
/// to look up in the read model.
fn newest_versions(events: &[RecordedEvent]) -> Result<Vec<(Uuid, i64)>, ProjectorError> {
    let mut newest: HashMap<Uuid, i64> = HashMap::new();
    for event in events.iter().filter(|e| e.stream_type == STREAM_TYPE) {
        let id = stream_followup_id(&event.stream_id)?.as_uuid();
        let version = i64::try_from(event.version).unwrap_or(i64::MAX);
        let entry = newest.entry(id).or_insert(version);
        *entry = (*entry).max(version);
    }
    Ok(newest.into_iter().collect())
}

/// The follow-up a `followup` stream belongs to (its stream id is the follow-up's id).
pub(crate) fn stream_followup_id(stream_id: &str) -> Result<FollowUpId, ProjectorError> {
    stream_id.parse().map_err(|_| ProjectorError::Corrupt {
        stream_id: stream_id.to_owned(),
        reason: "a follow-up stream's id must be the follow-up's UUID".into(),
    })
}

/// Locks this projector's checkpoint row until the transaction ends (creating it at the start
/// of the store the first time) and returns it. A second projector waits here until the first
/// commits, and then sees how far it got.
pub(crate) async fn lock_checkpoint(
    conn: &mut PgConnection,
    name: &str,
) -> Result<Checkpoint, ProjectorError> {
    const SELECT: &str =
        "SELECT transaction_id, position FROM projection_checkpoints WHERE name = $1 FOR UPDATE";
    let row: Option<(i64, i64)> = sqlx::query_as(SELECT)
        .bind(name)
        .fetch_optional(&mut *conn)
        .await?;
    let (transaction_id, position) = match row {
        Some(row) => row,
        None => {
            sqlx::query(
                "INSERT INTO projection_checkpoints (name, transaction_id, position)
                 VALUES ($1, 0, 0) ON CONFLICT (name) DO NOTHING",
            )
            .bind(name)
            .execute(&mut *conn)
            .await?;
            sqlx::query_as(SELECT)
                .bind(name)
                .fetch_one(&mut *conn)
                .await?
        }
    };
    Ok(Checkpoint {
        transaction_id,
        position,
    })
}

/// Moves the checkpoint `name` (locked by [`lock_checkpoint`] in the same transaction) to
/// `end`.
pub(crate) async fn save_checkpoint(
    conn: &mut PgConnection,
    name: &str,
    end: Checkpoint,
) -> Result<(), ProjectorError> {
    sqlx::query(
        "UPDATE projection_checkpoints SET transaction_id = $2, position = $3, updated_at = now()
         WHERE name = $1",
    )
    .bind(name)
    .bind(end.transaction_id)
    .bind(end.position)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
