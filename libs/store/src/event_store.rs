//! The generic append-only event store.
//!
//! A stream is the history of one aggregate (one follow-up), identified by `stream_id`, with
//! versions 1, 2, 3, … without gaps. Every event also has a global `position` and the id of the
//! transaction that wrote it; readers of the whole store go by [`Checkpoint`]s of both (see the
//! migration `migrations/*_events.sql` for why).
//!
//! Appends are a single SQL statement, however many streams and events they carry: one round
//! trip, and the statement is its own transaction, so a batch is stored entirely or not at all.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex, OnceLock};

use tokio::sync::Notify;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::postgres::PgRow;
use sqlx::{PgExecutor, PgPool, Row};
use uuid::Uuid;

use crate::personal_data::{self, KeyTag, PersonalData, StreamKey};

/// How many times an append is retried when a concurrent writer changed a stream between our
/// look at it and the insert (only possible with [`ExpectedVersion::Any`]).
const RETRIES: usize = 10;

/// The version an append expects its stream to be at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExpectedVersion {
    /// Append whatever the stream's version is (the events are numbered after the last one).
    Any,
    /// The stream must not exist yet.
    NoStream,
    /// The stream's last version must be exactly this (0 means: must not exist).
    Exact(u64),
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("any version"),
            Self::NoStream => f.write_str("no stream"),
            Self::Exact(v) => write!(f, "version {v}"),
        }
    }
}

/// Who and what caused an event; stored beside its payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    /// Who did it (user, team, rule, scheduler), as JSON, shown in a follow-up's history.
    pub actor: Value,
    /// Ties together every event caused by one user request or inbound message chain.
    pub correlation_id: Option<String>,
    /// The inbound message or command that directly caused this event.
    pub causation_id: Option<String>,
    /// The W3C `traceparent` of the request or message that caused it, so that its trace
    /// continues where the event goes next (the outbound CloudEvent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

/// An event to append.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// Unique id; appending an id that is already stored is a no-op (idempotency).
    pub event_id: Uuid,
    /// What happened, e.g. `created`.
    pub event_type: String,
    /// The version of the payload's schema, so old payloads can be upcast when read.
    pub schema_version: i32,
    /// The event's data.
    pub payload: Value,
    /// Who and what caused it.
    pub metadata: Metadata,
}

/// Events to append to one stream, with the version the stream is expected to be at.
#[derive(Debug, Clone)]
pub struct StreamAppend {
    /// The stream (aggregate) id.
    pub stream_id: String,
    /// The aggregate type, e.g. `followup`; lets readers pick the streams they care about.
    pub stream_type: String,
    /// Optimistic concurrency check.
    pub expected: ExpectedVersion,
    /// The events, in order; at least one.
    pub events: Vec<NewEvent>,
}

/// Where one stored event landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct StoredRef {
    /// The event's id.
    pub event_id: Uuid,
    /// Its version within its stream.
    pub version: u64,
    /// Its global position.
    pub position: i64,
}

/// The result of appending to one stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Appended {
    /// The stream appended to.
    pub stream_id: String,
    /// Where each event is stored, in the order given.
    pub events: Vec<StoredRef>,
    /// True when every event id was stored already: nothing was written this time.
    pub already_stored: bool,
}

impl Appended {
    /// The stream's version after the append (the last event's version).
    pub fn last_version(&self) -> u64 {
        self.events.last().map_or(0, |e| e.version)
    }
}

/// A stored event, as readers see it (payload already upcast to the current schema).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecordedEvent {
    /// Global position (unique, increasing in insertion order, not in commit order).
    pub position: i64,
    /// The writing transaction's id; with `position` it forms the reading order.
    pub transaction_id: i64,
    /// The stream it belongs to.
    pub stream_id: String,
    /// The stream's aggregate type.
    pub stream_type: String,
    /// Its version within the stream.
    pub version: u64,
    /// Its unique id.
    pub event_id: Uuid,
    /// What happened.
    pub event_type: String,
    /// The schema version of `payload` (after upcasting: the current one).
    pub schema_version: i32,
    /// The event's data.
    pub payload: Value,
    /// Who and what caused it.
    pub metadata: Metadata,
    /// When it was stored.
    pub recorded_at: DateTime<Utc>,
}

impl RecordedEvent {
    /// The checkpoint just after this event.
    pub fn checkpoint(&self) -> Checkpoint {
        Checkpoint {
            transaction_id: self.transaction_id,
            position: self.position,
        }
    }
}

/// A place in the reading order of the whole store: everything up to and including the event
/// at (`transaction_id`, `position`) has been read.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Checkpoint {
    /// The transaction id of the last event read.
    pub transaction_id: i64,
    /// The position of the last event read.
    pub position: i64,
}

impl Checkpoint {
    /// Before the first event.
    pub const START: Checkpoint = Checkpoint {
        transaction_id: 0,
        position: 0,
    };
}

/// Brings stored payloads of older schema versions to the current one, when events are read,
/// and names the personal data in them, which the store then keeps encrypted
/// ([`crate::personal_data`]).
pub trait Upcaster: Send + Sync + fmt::Debug {
    /// The personal fields of these stream types; `None`: nothing is personal.
    fn personal_data(&self) -> Option<&dyn PersonalData> {
        None
    }

    /// Returns the current schema version and the payload in that schema.
    fn upcast(
        &self,
        stream_type: &str,
        event_type: &str,
        schema_version: i32,
        payload: Value,
    ) -> Result<(i32, Value), String>;
}

/// Why an append was refused.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// The stream is not at the expected version: someone else appended first.
    #[error("stream {stream_id} was expected at {expected} but is at version {actual}")]
    Conflict {
        /// The stream that conflicted.
        stream_id: String,
        /// What the append expected.
        expected: ExpectedVersion,
        /// The stream's actual last version (0: it does not exist).
        actual: u64,
    },
    /// Some, but not all, of the events for a stream are already stored: the caller reused
    /// event ids for different events.
    #[error(
        "some but not all events for stream {stream_id} are already stored (event ids reused?)"
    )]
    PartialDuplicate {
        /// The stream concerned.
        stream_id: String,
    },
    /// The append itself is malformed (no events, a stream twice in one batch).
    #[error("invalid append: {0}")]
    Invalid(String),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A database failure, or a stored event that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// PostgreSQL refused or could not be reached.
    #[error("event store database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A stored event or data key is damaged (its sealed fields do not decrypt, say).
    #[error("corrupt event store data: {0}")]
    Corrupt(String),
    /// A stored payload could not be brought to the current schema.
    #[error("event {event_id} ({event_type} v{schema_version}) cannot be upcast: {reason}")]
    Upcast {
        /// The event concerned.
        event_id: Uuid,
        /// Its type.
        event_type: String,
        /// Its stored schema version.
        schema_version: i32,
        /// Why.
        reason: String,
    },
}

impl StoreError {
    /// True when the database could not be reached or the connection broke: worth retrying
    /// later, rather than a problem with the data.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Database(e) => is_transient_database_error(e),
            StoreError::Upcast { .. } | StoreError::Corrupt(_) => false,
        }
    }

    /// True for a failure of the database's surroundings ([`is_environment_database_error`]).
    pub fn is_environment_error(&self) -> bool {
        matches!(self, StoreError::Database(e) if is_environment_database_error(e))
    }

    /// True when the database refused the data itself ([`is_content_database_error`]).
    pub fn is_content_error(&self) -> bool {
        matches!(self, StoreError::Database(e) if is_content_database_error(e))
    }
}

/// True for failures of the database's surroundings rather than of a message's content: it
/// cannot be reached ([`is_transient_database_error`]), or it is read-only after a failover
/// (25006), out of resources (class 53: disk full, out of memory, too many connections), a
/// statement timed out (57014), a deadlock or serialization failure (40P01, 40001), or the
/// service's role lacks a privilege (42501, an operator's set-up). A worker retries these
/// however long they last and never dead-letters a message for them.
pub fn is_environment_database_error(e: &sqlx::Error) -> bool {
    is_transient_database_error(e)
        || e.as_database_error()
            .and_then(|d| d.code())
            .is_some_and(|c| {
                c.starts_with("53") || ["25006", "57014", "40001", "40P01", "42501"].contains(&&*c)
            })
}

/// True for failures caused by the data itself, which the database will refuse however often
/// it is asked: a data exception (SQLSTATE class 22: text it cannot store, a value out of
/// range), a value over a limit (class 54), a NOT NULL or CHECK violation (23502, 23514).
/// A message whose content fails so is dead-lettered, not retried.
pub fn is_content_database_error(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|c| c.starts_with("22") || c.starts_with("54") || c == "23502" || c == "23514")
}

/// True for failures of the connection rather than of the data: the server unreachable, the
/// connection broken, the server shutting down or refusing connections. Worth retrying later.
pub fn is_transient_database_error(e: &sqlx::Error) -> bool {
    matches!(
        e,
        sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
    ) || e
        .as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|c| c.starts_with("08") || c.starts_with("57P") || c == "53300")
}

/// The append-only event store. Cheap to clone (a pool handle).
#[derive(Debug, Clone)]
pub struct EventStore {
    /// The connection pool every operation uses.
    pool: PgPool,
    /// Upcasts older payloads on read; none means payloads are returned as stored.
    upcaster: Option<Arc<dyn Upcaster>>,
    /// Wakes live tails (in any process) after appends.
    signal: Arc<AppendSignal>,
    /// The keys that seal new events, by stream, so an append does not look them up each
    /// time. Used for writing only: readers always take the key from `data_keys`, so a
    /// destroyed key is never used to read, even by a process that still has it here.
    seal_keys: Arc<Mutex<HashMap<String, StreamKey>>>,
}

/// How many streams' keys [`EventStore`] keeps in memory before it starts afresh.
const SEAL_KEY_CACHE: usize = 65_536;

/// The keys an append creates: per append index, the new key its stream gets in the same
/// statement.
#[derive(Debug, Default)]
struct Sealing {
    /// The new keys, by append index.
    new_keys: HashMap<usize, (StreamKey, KeyTag)>,
}

/// One statement appends any number of events to any number of streams. Versions are
/// computed by the caller from the expected versions; the unique (stream_id, version) index
/// refuses a version someone else took, and the `NOT EXISTS` refuses the whole batch (no row
/// inserted) when a stream expected at version n > 0 does not have version n.
const APPEND_SQL: &str = r#"
WITH guard AS (
    SELECT NOT EXISTS (
        SELECT 1 FROM unnest($12::text[], $13::int8[]) AS expected(stream_id, version)
        WHERE NOT EXISTS (SELECT 1 FROM events e
                          WHERE e.stream_id = expected.stream_id AND e.version = expected.version)) AS ok
),
new_keys AS (
    INSERT INTO data_keys (stream_id, institution, subject_type, subject_id, key_material)
    SELECT k.* FROM unnest($14::text[], $15::text[], $16::text[], $17::text[], $18::bytea[])
        AS k(stream_id, institution, subject_type, subject_id, key_material), guard
    WHERE guard.ok
)
INSERT INTO events (stream_id, stream_type, version, event_id, event_type, schema_version,
                    payload, actor, correlation_id, causation_id, traceparent)
SELECT u.*
FROM unnest($1::text[], $2::text[], $3::int8[], $4::uuid[], $5::text[], $6::int4[],
            $7::jsonb[], $8::jsonb[], $9::text[], $10::text[], $11::text[]) AS u, guard
WHERE guard.ok
RETURNING event_id, version, position
"#;

const SELECT_COLUMNS: &str = "position, transaction_id, stream_id, stream_type, version, \
     event_id, event_type, schema_version, payload, actor, correlation_id, causation_id, traceparent, \
     recorded_at";

/// What readers of a few streams select: each event with its stream's key (none when it has
/// none, or when the key was destroyed). Readers of many events take the keys in a second
/// query instead, one per stream rather than one lookup per event ([`EventStore::decode_all`]).
const FROM_EVENTS: &str = "events LEFT JOIN data_keys USING (stream_id)";

impl EventStore {
    /// A store over `pool`, returning payloads as stored.
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            upcaster: None,
            signal: Arc::default(),
            seal_keys: Arc::default(),
        }
    }

    /// The same store, upcasting older payloads on read.
    pub fn with_upcaster(mut self, upcaster: Arc<dyn Upcaster>) -> Self {
        self.upcaster = Some(upcaster);
        self
    }

    /// The pool, for callers that need their own queries (projections, tests).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Appends events to one stream.
    pub async fn append(&self, append: StreamAppend) -> Result<Appended, AppendError> {
        let mut result = self.append_batch(vec![append]).await?;
        Ok(result.remove(0))
    }

    /// Appends to many streams at once, all or nothing (one statement, one transaction).
    /// Returns one [`Appended`] per stream, in the order given. A stream whose events are all
    /// stored already is reported with `already_stored` and the rest is appended.
    pub async fn append_batch(
        &self,
        appends: Vec<StreamAppend>,
    ) -> Result<Vec<Appended>, AppendError> {
        validate_batch(&appends)?;
        let mut appends = appends;
        let sealing = self.seal(&mut appends).await?;
        let mut results: Vec<Option<Appended>> = vec![None; appends.len()];
        let mut pending: Vec<usize> = (0..appends.len()).collect();
        let mut retries = 0;
        loop {
            let batch: Vec<&StreamAppend> = pending.iter().map(|&i| &appends[i]).collect();
            let bases = self.bases(&batch).await?;
            match insert(&self.pool, &batch, &pending, &bases, &sealing).await {
                Ok(Some(stored)) => {
                    self.remember_keys(&appends, &sealing);
                    self.signal.raise(&self.pool);
                    let by_id: HashMap<Uuid, StoredRef> =
                        stored.into_iter().map(|r| (r.event_id, r)).collect();
                    for &i in &pending {
                        results[i] = Some(appended(&appends[i], &by_id, false));
                    }
                    break;
                }
                Ok(None) => {
                    // A stream does not have the version expected (yet: if another writer
                    // brought it there meanwhile, try again).
                    if let Some(conflict) = self.find_conflict(&batch).await? {
                        return Err(conflict);
                    }
                    retries += 1;
                    if retries > RETRIES {
                        return Err(AppendError::Invalid(
                            "the expected versions kept changing".into(),
                        ));
                    }
                }
                Err(e) if is_unique_violation(&e) => {
                    let duplicates = self
                        .take_duplicates(&appends, &mut pending, &mut results)
                        .await?;
                    if pending.is_empty() {
                        break;
                    }
                    if duplicates {
                        continue;
                    }
                    let batch: Vec<&StreamAppend> = pending.iter().map(|&i| &appends[i]).collect();
                    if let Some(conflict) = self.find_conflict(&batch).await? {
                        return Err(conflict);
                    }
                    if is_data_key_violation(&e) {
                        // Another writer gave a stream its key first: decide and seal again.
                        let first = batch[0];
                        self.forget_keys(&batch);
                        return Err(AppendError::Conflict {
                            stream_id: first.stream_id.clone(),
                            expected: first.expected,
                            actual: bases[0],
                        });
                    }
                    // The version we computed for an `Any` append was taken meanwhile.
                    retries += 1;
                    if retries > RETRIES {
                        return Err(StoreError::Database(e).into());
                    }
                }
                Err(e) => return Err(StoreError::Database(e).into()),
            }
        }
        Ok(results
            .into_iter()
            .map(|r| r.expect("every append has a result"))
            .collect())
    }

    /// Seals the personal fields of `appends` in place (see [`crate::personal_data`]): with
    /// the stream's key, from memory or `data_keys`, or with a new key for a stream that has
    /// none, which the append statement then stores.
    async fn seal(&self, appends: &mut [StreamAppend]) -> Result<Sealing, StoreError> {
        let mut sealing = Sealing::default();
        let Some(policy) = self.upcaster.as_ref().and_then(|u| u.personal_data()) else {
            return Ok(sealing);
        };
        let personal = |a: &StreamAppend, e: &NewEvent| {
            let fields = policy.fields(&a.stream_type, &e.event_type);
            !fields.is_empty()
                && e.payload.as_object().is_some_and(|o| {
                    fields
                        .iter()
                        .any(|f| o.contains_key(f.split('.').next().unwrap_or(f)))
                })
        };
        let needy: Vec<usize> = (0..appends.len())
            .filter(|&i| appends[i].events.iter().any(|e| personal(&appends[i], e)))
            .collect();
        if needy.is_empty() {
            return Ok(sealing);
        }
        let mut keys: HashMap<String, StreamKey> = HashMap::new();
        let mut unknown: Vec<&str> = Vec::new();
        {
            let cache = self.seal_keys.lock().expect("seal key cache");
            for &i in &needy {
                let a = &appends[i];
                match cache.get(&a.stream_id) {
                    Some(key) => {
                        keys.insert(a.stream_id.clone(), key.clone());
                    }
                    // A new stream has no key yet: no need to look.
                    None if a.expected == ExpectedVersion::NoStream
                        || a.expected == ExpectedVersion::Exact(0) => {}
                    None => unknown.push(a.stream_id.as_str()),
                }
            }
        }
        if !unknown.is_empty() {
            // Stored keys are kept for the next appends as well (a destroyed one too: its
            // stream's events are written erased until this process forgets it).
            let stored = personal_data::stream_keys(&self.pool, &unknown).await?;
            self.cache_keys(stored.iter().map(|(stream, key)| (stream.as_str(), key)));
            keys.extend(stored);
        }
        for i in needy {
            let append = &mut appends[i];
            let key = match keys.get(&append.stream_id) {
                Some(key) => key.clone(),
                None => {
                    let first = &append.events[0];
                    let tag =
                        policy.tag(&append.stream_type, &first.payload, &first.metadata.actor);
                    let key = StreamKey::generate();
                    sealing.new_keys.insert(i, (key.clone(), tag));
                    key
                }
            };
            for event in &mut append.events {
                let fields = policy.fields(&append.stream_type, &event.event_type);
                personal_data::seal(&mut event.payload, fields, &key, event.event_id, |p| {
                    policy.erased(p)
                })?;
            }
        }
        Ok(sealing)
    }

    /// Keeps the keys an append used for the next appends to their streams.
    fn remember_keys(&self, appends: &[StreamAppend], sealing: &Sealing) {
        self.cache_keys(
            sealing
                .new_keys
                .iter()
                .map(|(&i, (key, _))| (appends[i].stream_id.as_str(), key)),
        );
    }

    /// Keeps `keys` in the seal key cache, starting it afresh when it is full.
    fn cache_keys<'k>(&self, keys: impl ExactSizeIterator<Item = (&'k str, &'k StreamKey)>) {
        if keys.len() == 0 {
            return;
        }
        let mut cache = self.seal_keys.lock().expect("seal key cache");
        if cache.len() + keys.len() > SEAL_KEY_CACHE {
            cache.clear();
        }
        for (stream, key) in keys {
            cache.insert(stream.to_owned(), key.clone());
        }
    }

    /// Forgets the keys of `batch`'s streams (another writer's key won).
    fn forget_keys(&self, batch: &[&StreamAppend]) {
        let mut cache = self.seal_keys.lock().expect("seal key cache");
        for a in batch {
            cache.remove(&a.stream_id);
        }
    }

    /// Forgets every key held in memory for sealing (after keys were destroyed, so that this
    /// process writes its next events of those streams already erased).
    pub fn forget_seal_keys(&self) {
        self.seal_keys.lock().expect("seal key cache").clear();
    }

    /// The version each append goes after: its expected version, or for `Any` the stream's
    /// current one (read now; if another writer appends meanwhile, the insert conflicts and
    /// is retried).
    async fn bases(&self, batch: &[&StreamAppend]) -> Result<Vec<u64>, StoreError> {
        let any: Vec<&str> = batch
            .iter()
            .filter(|a| a.expected == ExpectedVersion::Any)
            .map(|a| a.stream_id.as_str())
            .collect();
        let current = if any.is_empty() {
            HashMap::new()
        } else {
            self.versions(&any).await?
        };
        Ok(batch
            .iter()
            .map(|a| match a.expected {
                ExpectedVersion::Any => current.get(&a.stream_id).copied().unwrap_or(0),
                ExpectedVersion::NoStream => 0,
                ExpectedVersion::Exact(v) => v,
            })
            .collect())
    }

    /// The current version of each of `stream_ids` that exists.
    async fn versions(&self, stream_ids: &[&str]) -> Result<HashMap<String, u64>, StoreError> {
        let rows = sqlx::query(
            "SELECT stream_id, max(version) FROM events WHERE stream_id = ANY($1) GROUP BY stream_id",
        )
        .bind(stream_ids)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get::<i64, _>(1) as u64))
            .collect())
    }

    /// After a unique violation: the pending streams whose events are all stored already are
    /// answered from the store and taken out of `pending`. Returns whether there were any.
    async fn take_duplicates(
        &self,
        appends: &[StreamAppend],
        pending: &mut Vec<usize>,
        results: &mut [Option<Appended>],
    ) -> Result<bool, AppendError> {
        let ids: Vec<Uuid> = pending
            .iter()
            .flat_map(|&i| appends[i].events.iter().map(|e| e.event_id))
            .collect();
        let rows =
            sqlx::query("SELECT event_id, version, position FROM events WHERE event_id = ANY($1)")
                .bind(&ids)
                .fetch_all(&self.pool)
                .await
                .map_err(StoreError::from)?;
        let stored: HashMap<Uuid, StoredRef> = rows
            .iter()
            .map(|r| {
                let event_id: Uuid = r.get(0);
                let version: i64 = r.get(1);
                (
                    event_id,
                    StoredRef {
                        event_id,
                        version: version as u64,
                        position: r.get(2),
                    },
                )
            })
            .collect();
        let mut found = false;
        let mut still_pending = Vec::with_capacity(pending.len());
        for &i in pending.iter() {
            let append = &appends[i];
            let known = append
                .events
                .iter()
                .filter(|e| stored.contains_key(&e.event_id))
                .count();
            if known == append.events.len() {
                results[i] = Some(appended(append, &stored, true));
                found = true;
            } else if known > 0 {
                return Err(AppendError::PartialDuplicate {
                    stream_id: append.stream_id.clone(),
                });
            } else {
                still_pending.push(i);
            }
        }
        *pending = still_pending;
        Ok(found)
    }

    /// The first stream of `batch` that is not at its expected version, if any.
    async fn find_conflict(
        &self,
        batch: &[&StreamAppend],
    ) -> Result<Option<AppendError>, StoreError> {
        let ids: Vec<&str> = batch.iter().map(|a| a.stream_id.as_str()).collect();
        let versions = self.versions(&ids).await?;
        Ok(batch.iter().find_map(|a| {
            let actual = versions.get(&a.stream_id).copied().unwrap_or(0);
            let ok = match a.expected {
                ExpectedVersion::Any => true,
                ExpectedVersion::NoStream => actual == 0,
                ExpectedVersion::Exact(v) => actual == v,
            };
            (!ok).then(|| AppendError::Conflict {
                stream_id: a.stream_id.clone(),
                expected: a.expected,
                actual,
            })
        }))
    }

    /// Which of `event_ids` are stored.
    pub async fn stored_event_ids(&self, event_ids: &[Uuid]) -> Result<HashSet<Uuid>, StoreError> {
        let ids: Vec<Uuid> =
            sqlx::query_scalar("SELECT event_id FROM events WHERE event_id = ANY($1)")
                .bind(event_ids)
                .fetch_all(&self.pool)
                .await?;
        Ok(ids.into_iter().collect())
    }

    /// Every event of a stream, oldest first.
    pub async fn read_stream(&self, stream_id: &str) -> Result<Vec<RecordedEvent>, StoreError> {
        let sql = format!(
            "SELECT {SELECT_COLUMNS}, key_material FROM {FROM_EVENTS} WHERE stream_id = $1 ORDER BY version"
        );
        let rows = sqlx::query(&sql)
            .bind(stream_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| self.decode(r)).collect()
    }

    /// Every event of many streams, each stream oldest first (streams in no particular order).
    pub async fn read_streams(
        &self,
        stream_ids: &[String],
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let sql = format!(
            "SELECT {SELECT_COLUMNS}, key_material FROM {FROM_EVENTS} WHERE stream_id = ANY($1) ORDER BY stream_id, version"
        );
        let rows = sqlx::query(&sql)
            .bind(stream_ids)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| self.decode(r)).collect()
    }

    /// Up to `limit` events of the streams whose ids sort after `after_stream` (all streams
    /// when `None`), in stream order (stream id, then version), leaving out every event after
    /// `until` in reading order. A full answer may end in the middle of a stream.
    ///
    /// What a rebuild reads: each stream's events come together, so a projection can be
    /// folded stream by stream and written once per stream, with the last stream id as a
    /// resumable cursor. Everything up to `until` must be readable (see
    /// [`EventStore::read_all`]) when the caller wants every event up to it.
    pub async fn read_by_stream(
        &self,
        after_stream: Option<&str>,
        until: Checkpoint,
        limit: i64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let sql = format!(
            "SELECT {SELECT_COLUMNS} FROM events
             WHERE stream_id > $1 AND (transaction_id, position) <= ($2, $3)
             ORDER BY stream_id, version
             LIMIT $4"
        );
        let rows = sqlx::query(&sql)
            .bind(after_stream.unwrap_or(""))
            .bind(until.transaction_id)
            .bind(until.position)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        self.decode_all(&rows).await
    }

    /// The checkpoint of the last event [`EventStore::read_all`] can hand out now (the start
    /// when there is none): everything up to it is committed and readable.
    pub async fn readable_head(&self) -> Result<Checkpoint, StoreError> {
        let row: Option<(i64, i64)> = sqlx::query_as(
            "SELECT transaction_id, position FROM events
             WHERE transaction_id < pg_snapshot_xmin(pg_current_snapshot())::text::bigint
             ORDER BY transaction_id DESC, position DESC LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await?;
        Ok(
            row.map_or(Checkpoint::START, |(transaction_id, position)| Checkpoint {
                transaction_id,
                position,
            }),
        )
    }

    /// Up to `limit` events after `after`, in reading order: (transaction id, position).
    ///
    /// Only events of transactions older than the oldest transaction still running are
    /// returned, so an event can never appear later *before* one already returned: a reader
    /// that goes on from the last event's checkpoint never skips one (guarantee 4). The price
    /// is that a long-running transaction holds readers back until it ends.
    pub async fn read_all(
        &self,
        after: Checkpoint,
        limit: i64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let rows = read_all_with(&self.pool, after, limit).await?;
        self.decode_all(&rows).await
    }

    /// True when events after `after` are stored but [`EventStore::read_all`] cannot hand them
    /// out yet, because an older transaction is still running.
    pub async fn has_unreadable_after(&self, after: Checkpoint) -> Result<bool, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM events WHERE (transaction_id, position) > ($1, $2))",
        )
        .bind(after.transaction_id)
        .bind(after.position)
        .fetch_one(&self.pool)
        .await?)
    }

    /// Waits (polling, up to `timeout`) until every event committed so far can be read by
    /// [`EventStore::read_all`], i.e. no older transaction is still running anywhere on the
    /// server. Tests call it before a "process what is pending" step, so that a concurrent
    /// test's transaction does not make that step see nothing. Returns false on timeout.
    pub async fn wait_until_readable(
        &self,
        timeout: std::time::Duration,
    ) -> Result<bool, StoreError> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let held_back: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM events
                 WHERE transaction_id >= pg_snapshot_xmin(pg_current_snapshot())::text::bigint)",
            )
            .fetch_one(&self.pool)
            .await?;
            if !held_back {
                return Ok(true);
            }
            if std::time::Instant::now() >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    /// The position of the newest stored event (0 when empty) and how many events there are.
    pub async fn head(&self) -> Result<(i64, i64), StoreError> {
        let row = sqlx::query("SELECT coalesce(max(position), 0), count(*) FROM events")
            .fetch_one(&self.pool)
            .await?;
        Ok((row.get(0), row.get(1)))
    }

    /// Decodes rows selected with their key (`key_material`, from [`FROM_EVENTS`]).
    fn decode(&self, row: &PgRow) -> Result<RecordedEvent, StoreError> {
        self.decode_with(row, row.get("payload"), row.get("key_material"))
    }

    /// Decodes rows selected without their keys: the keys of the streams with sealed events
    /// are read in one query.
    async fn decode_all(&self, rows: &[PgRow]) -> Result<Vec<RecordedEvent>, StoreError> {
        let payloads: Vec<Value> = rows.iter().map(|r| r.get("payload")).collect();
        let mut sealed: Vec<&str> = rows
            .iter()
            .zip(&payloads)
            .filter(|(_, p)| p.get(personal_data::SEALED).is_some())
            .map(|(r, _)| r.get::<&str, _>("stream_id"))
            .collect();
        sealed.sort_unstable();
        sealed.dedup();
        let keys = if sealed.is_empty() {
            HashMap::new()
        } else {
            personal_data::stream_keys(&self.pool, &sealed).await?
        };
        rows.iter()
            .zip(payloads)
            .map(|(row, payload)| {
                let key = match keys.get(row.get::<&str, _>("stream_id")) {
                    Some(StreamKey::Live { key }) => Some(key.as_slice()),
                    _ => None,
                };
                self.decode_with(row, payload, key)
            })
            .collect()
    }

    fn decode_with(
        &self,
        row: &PgRow,
        mut stored_payload: Value,
        key: Option<&[u8]>,
    ) -> Result<RecordedEvent, StoreError> {
        let event_id: Uuid = row.get("event_id");
        let stream_type: String = row.get("stream_type");
        let event_type: String = row.get("event_type");
        let stored_version: i32 = row.get("schema_version");
        if let Some(policy) = self.upcaster.as_ref().and_then(|u| u.personal_data()) {
            personal_data::open(&mut stored_payload, key, event_id, |p| policy.erased(p))?;
        }
        let (schema_version, payload) = match &self.upcaster {
            Some(up) => up
                .upcast(&stream_type, &event_type, stored_version, stored_payload)
                .map_err(|reason| StoreError::Upcast {
                    event_id,
                    event_type: event_type.clone(),
                    schema_version: stored_version,
                    reason,
                })?,
            None => (stored_version, stored_payload),
        };
        let version: i64 = row.get("version");
        Ok(RecordedEvent {
            position: row.get("position"),
            transaction_id: row.get("transaction_id"),
            stream_id: row.get("stream_id"),
            stream_type,
            version: version as u64,
            event_id,
            event_type,
            schema_version,
            payload,
            metadata: Metadata {
                actor: row.get("actor"),
                correlation_id: row.get("correlation_id"),
                causation_id: row.get("causation_id"),
                traceparent: row.get("traceparent"),
            },
            recorded_at: row.get("recorded_at"),
        })
    }
}

/// The reading query of [`EventStore::read_all`], usable inside a caller's transaction.
pub async fn read_all_with<'e>(
    executor: impl PgExecutor<'e>,
    after: Checkpoint,
    limit: i64,
) -> Result<Vec<PgRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {SELECT_COLUMNS} FROM events
         WHERE (transaction_id, position) > ($1, $2)
           AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())::text::bigint
         ORDER BY transaction_id, position
         LIMIT $3"
    );
    sqlx::query(&sql)
        .bind(after.transaction_id)
        .bind(after.position)
        .bind(limit)
        .fetch_all(executor)
        .await
}

fn validate_batch(appends: &[StreamAppend]) -> Result<(), AppendError> {
    if appends.is_empty() {
        return Err(AppendError::Invalid("nothing to append".into()));
    }
    let mut seen = HashSet::new();
    let mut event_ids = HashSet::new();
    for a in appends {
        if let Some(e) = a.events.iter().find(|e| !event_ids.insert(e.event_id)) {
            return Err(AppendError::Invalid(format!(
                "event id {} appears twice in one append",
                e.event_id
            )));
        }
        if a.events.is_empty() {
            return Err(AppendError::Invalid(format!(
                "no events for stream {}",
                a.stream_id
            )));
        }
        if !seen.insert(a.stream_id.as_str()) {
            return Err(AppendError::Invalid(format!(
                "stream {} appears twice in one batch",
                a.stream_id
            )));
        }
    }
    Ok(())
}

/// Runs the append statement with `bases[i]` as the version `batch[i]` appends after.
/// `Ok(None)`: a stream is not at the version expected.
async fn insert(
    pool: &PgPool,
    batch: &[&StreamAppend],
    indexes: &[usize],
    bases: &[u64],
    sealing: &Sealing,
) -> Result<Option<Vec<StoredRef>>, sqlx::Error> {
    let n: usize = batch.iter().map(|a| a.events.len()).sum();
    let mut stream_id = Vec::with_capacity(n);
    let mut stream_type = Vec::with_capacity(n);
    let mut version = Vec::with_capacity(n);
    let mut event_id = Vec::with_capacity(n);
    let mut event_type = Vec::with_capacity(n);
    let mut schema_version = Vec::with_capacity(n);
    let mut payload = Vec::with_capacity(n);
    let mut actor = Vec::with_capacity(n);
    let mut correlation_id = Vec::with_capacity(n);
    let mut causation_id = Vec::with_capacity(n);
    let mut traceparent = Vec::with_capacity(n);
    let mut expected_stream = Vec::new();
    let mut expected_version = Vec::new();
    let mut new_key_stream = Vec::new();
    let mut new_key_institution = Vec::new();
    let mut new_key_subject_type = Vec::new();
    let mut new_key_subject_id = Vec::new();
    let mut new_key_material: Vec<&[u8]> = Vec::new();
    for ((a, &base), &index) in batch.iter().zip(bases).zip(indexes) {
        if base > 0 {
            expected_stream.push(a.stream_id.as_str());
            expected_version.push(base as i64);
        }
        if let Some((StreamKey::Live { key }, tag)) = sealing.new_keys.get(&index) {
            new_key_stream.push(a.stream_id.as_str());
            new_key_institution.push(tag.institution.as_deref());
            new_key_subject_type.push(tag.subject.as_ref().map(|(t, _)| t.as_str()));
            new_key_subject_id.push(tag.subject.as_ref().map(|(_, id)| id.as_str()));
            new_key_material.push(key.as_slice());
        }
        for (i, e) in a.events.iter().enumerate() {
            stream_id.push(a.stream_id.as_str());
            stream_type.push(a.stream_type.as_str());
            version.push((base + i as u64 + 1) as i64);
            event_id.push(e.event_id);
            event_type.push(e.event_type.as_str());
            schema_version.push(e.schema_version);
            payload.push(&e.payload);
            actor.push(&e.metadata.actor);
            correlation_id.push(e.metadata.correlation_id.as_deref());
            causation_id.push(e.metadata.causation_id.as_deref());
            traceparent.push(e.metadata.traceparent.as_deref());
        }
    }
    let rows = sqlx::query(APPEND_SQL)
        .bind(stream_id)
        .bind(stream_type)
        .bind(version)
        .bind(event_id)
        .bind(event_type)
        .bind(schema_version)
        .bind(payload)
        .bind(actor)
        .bind(correlation_id)
        .bind(causation_id)
        .bind(traceparent)
        .bind(expected_stream)
        .bind(expected_version)
        .bind(new_key_stream)
        .bind(new_key_institution)
        .bind(new_key_subject_type)
        .bind(new_key_subject_id)
        .bind(new_key_material)
        .fetch_all(pool)
        .await?;
    if rows.is_empty() {
        return Ok(None);
    }
    Ok(Some(
        rows.iter()
            .map(|r| {
                let version: i64 = r.get(1);
                StoredRef {
                    event_id: r.get(0),
                    version: version as u64,
                    position: r.get(2),
                }
            })
            .collect(),
    ))
}

fn appended(
    append: &StreamAppend,
    stored: &HashMap<Uuid, StoredRef>,
    already_stored: bool,
) -> Appended {
    Appended {
        stream_id: append.stream_id.clone(),
        events: append.events.iter().map(|e| stored[&e.event_id]).collect(),
        already_stored,
    }
}

/// True for a unique violation on `data_keys`: another writer gave a stream its key first.
fn is_data_key_violation(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.constraint())
        .is_some_and(|c| c.starts_with("data_keys"))
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .is_some_and(|d| d.kind() == sqlx::error::ErrorKind::UniqueViolation)
}

/// Sends `NOTIFY followup_events` after appends, coalesced: one notification in flight at a
/// time, and one more after it if anything was appended meanwhile. Sent outside the appending
/// transaction, so commits do not queue on PostgreSQL's notification lock. A notification that
/// is never sent (the process died right after its commit) only delays tails until they poll.
#[derive(Debug, Default)]
struct AppendSignal {
    /// Something was appended since the last notification was sent.
    pending: AtomicBool,
    /// Wakes the sending task.
    wake: Notify,
    /// Whether the sending task runs (started on the first append).
    started: OnceLock<()>,
}

/// The shortest time between two notifications from one process.
const NOTIFY_INTERVAL: std::time::Duration = std::time::Duration::from_millis(5);

/// The channel live tails listen on.
pub const CHANNEL: &str = "followup_events";

impl AppendSignal {
    fn raise(self: &Arc<Self>, pool: &PgPool) {
        self.pending.store(true, AtomicOrdering::Release);
        self.started.get_or_init(|| {
            let signal = Arc::clone(self);
            let pool = pool.clone();
            tokio::spawn(async move { signal.send_forever(pool).await });
        });
        self.wake.notify_one();
    }

    async fn send_forever(&self, pool: PgPool) {
        loop {
            self.wake.notified().await;
            while self.pending.swap(false, AtomicOrdering::AcqRel) {
                if pool.is_closed() {
                    return;
                }
                if let Err(error) = sqlx::query("SELECT pg_notify($1, '')")
                    .bind(CHANNEL)
                    .execute(&pool)
                    .await
                {
                    tracing::debug!(error.message = %error, "could not notify live tails; they will poll");
                }
                // Each notification is a commit of its own: under load, send at most one per
                // interval (tails read everything new when woken, so one wake-up is enough).
                tokio::time::sleep(NOTIFY_INTERVAL).await;
            }
        }
    }
}
