//! The follow-up repository: loads a follow-up from its stream and runs domain commands,
//! the way an `esrs` manager does: load, `decide`, append with the loaded version, `evolve`.
//!
//! Exactly-once effects of inbound messages come from deterministic event ids: when a command
//! carries an idempotency key (the inbound message id), the i-th event it produces on a stream
//! gets an id derived from (key, stream, i). Processing the same message again produces the
//! same ids, which the store recognises as already stored.

use followup_domain::{
    current_schema_version, decide, decode, evolve, upcast, Command, Context, DomainError, Event,
    FollowUp, FollowUpId, State,
};
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use uuid::Uuid;

use crate::event_store::{
    AppendError, EventStore, ExpectedVersion, Metadata, NewEvent, RecordedEvent, StoreError,
    StreamAppend, Upcaster,
};

/// The stream type of follow-up streams.
pub const STREAM_TYPE: &str = "followup";

/// How many times a command is decided again after a concurrent append took its version.
const CONFLICT_RETRIES: usize = 5;

/// Namespace for deterministic event ids (a fixed, random UUID).
const EVENT_ID_NAMESPACE: Uuid = Uuid::from_u128(0x6f1e_3c2a_9b47_4d0e_8a15_c7d2_40b9_e311);

/// Upcasts stored follow-up events with the domain's upcasters.
#[derive(Debug, Clone, Copy, Default)]
pub struct FollowUpUpcaster;

impl Upcaster for FollowUpUpcaster {
    fn upcast(
        &self,
        stream_type: &str,
        event_type: &str,
        schema_version: i32,
        payload: Value,
    ) -> Result<(i32, Value), String> {
        if stream_type != STREAM_TYPE {
            return Ok((schema_version, payload));
        }
        let payload = upcast(event_type, schema_version, payload).map_err(|e| e.to_string())?;
        Ok((current_schema_version(event_type), payload))
    }
}

/// Where a command comes from, for the events' metadata and their ids.
#[derive(Debug, Clone, Default)]
pub struct CommandMeta {
    /// Ties the events to the request or message chain that caused them.
    pub correlation_id: Option<String>,
    /// The request or inbound message that caused them.
    pub causation_id: Option<String>,
    /// When set (an inbound message id), event ids are derived from it, so that running the
    /// same message again appends nothing. When unset, event ids are random.
    pub idempotency_key: Option<String>,
}

/// Which version a command expects the follow-up to be at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Whatever version is current when the command runs (retried on a concurrent change).
    Current,
    /// Exactly this version (an HTTP `If-Match`); anything else is a conflict, not retried.
    Version(u64),
}

/// The result of a command.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The follow-up after the command.
    pub followup: FollowUp,
    /// The events the command produced (empty when it changed nothing).
    pub events: Vec<Event>,
    /// True when these events were stored already by an earlier run of the same message.
    pub already_applied: bool,
}

/// Why a command did not run.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    /// The domain refused the command.
    #[error(transparent)]
    Domain(#[from] DomainError),
    /// The follow-up is not at the version the command expected.
    #[error("follow-up {id} is at version {actual}, not the expected {expected}")]
    VersionMismatch {
        /// The follow-up.
        id: FollowUpId,
        /// What the command expected.
        expected: u64,
        /// Its current version.
        actual: u64,
    },
    /// Another writer kept changing the follow-up; the command gave up after retrying.
    #[error("follow-up {id} kept changing concurrently; try again")]
    Contended {
        /// The follow-up.
        id: FollowUpId,
    },
    /// A stored event could not be read back as a domain event.
    #[error("follow-up {id} has an unreadable event: {reason}")]
    Corrupt {
        /// The follow-up.
        id: FollowUpId,
        /// Why.
        reason: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl RepoError {
    /// True for failures worth retrying later (the database is unreachable).
    pub fn is_transient(&self) -> bool {
        matches!(self, RepoError::Store(e) if e.is_transient())
    }
}

/// Loads follow-ups and runs commands on them. Cheap to clone.
#[derive(Debug, Clone)]
pub struct FollowUps {
    /// The event store the follow-ups live in.
    store: EventStore,
    /// Recently used states, shared by the clones of this repository.
    cache: Arc<StateCache>,
}

impl FollowUps {
    /// A repository over `store` (which should upcast with [`FollowUpUpcaster`]).
    pub fn new(store: EventStore) -> Self {
        Self {
            store,
            cache: Arc::default(),
        }
    }

    /// The underlying store.
    pub fn store(&self) -> &EventStore {
        &self.store
    }

    /// The follow-up as its events say it is now; `None` when it does not exist.
    pub async fn load(&self, id: FollowUpId) -> Result<State, RepoError> {
        Ok(self.load_with_events(id).await?.0)
    }

    /// The follow-up and the stored events it was folded from (one read), for its history.
    pub async fn load_with_events(
        &self,
        id: FollowUpId,
    ) -> Result<(State, Vec<RecordedEvent>), RepoError> {
        let events = self.store.read_stream(&id.to_string()).await?;
        let state = fold(id, None, &events)?;
        if let Some(followup) = &state {
            self.cache.put(followup);
        }
        Ok((state, events))
    }

    /// Many follow-ups at once (one query).
    pub async fn load_many(
        &self,
        ids: &[FollowUpId],
    ) -> Result<HashMap<FollowUpId, State>, RepoError> {
        Ok(self.load_many_with_event_ids(ids).await?.0)
    }

    /// Like [`FollowUps::load_many`], also returning the ids of all their events (so a caller
    /// can see which of its derived event ids are stored already, without another query).
    pub async fn load_many_with_event_ids(
        &self,
        ids: &[FollowUpId],
    ) -> Result<(HashMap<FollowUpId, State>, HashSet<Uuid>), RepoError> {
        let stream_ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
        let events = self.store.read_streams(&stream_ids).await?;
        let mut states: HashMap<FollowUpId, State> = ids.iter().map(|id| (*id, None)).collect();
        let mut event_ids = HashSet::with_capacity(events.len());
        for event in &events {
            let id: FollowUpId = event.stream_id.parse().map_err(|_| RepoError::Corrupt {
                id: ids[0],
                reason: format!("stream id {} is not a follow-up id", event.stream_id),
            })?;
            event_ids.insert(event.event_id);
            let state = states.remove(&id).flatten();
            states.insert(id, fold(id, state, std::slice::from_ref(event))?);
        }
        Ok((states, event_ids))
    }

    /// Runs `command` on follow-up `id` and stores what it decides.
    pub async fn execute(
        &self,
        id: FollowUpId,
        command: Command,
        ctx: &Context,
        meta: &CommandMeta,
        expect: Expect,
    ) -> Result<Outcome, RepoError> {
        if let (Command::Create(_), Expect::Current) = (&command, expect) {
            return self.create(id, command, ctx, meta).await;
        }
        self.execute_with(id, |_| Some(command.clone()), ctx, meta, expect)
            .await?
            .ok_or(RepoError::Domain(DomainError::NotFound))
    }

    /// A creation needs no state: decide on an absent follow-up and append expecting no
    /// stream, in one round trip; an existing stream makes it `AlreadyExists`.
    async fn create(
        &self,
        id: FollowUpId,
        command: Command,
        ctx: &Context,
        meta: &CommandMeta,
    ) -> Result<Outcome, RepoError> {
        let events = decide(&None, command, ctx)?;
        let append =
            to_append(id, 0, &events, ctx, meta).ok_or(RepoError::Domain(DomainError::NotFound))?;
        let already_applied = match self.store.append(append).await {
            Ok(appended) => appended.already_stored,
            Err(AppendError::Conflict { .. }) => {
                return Err(DomainError::AlreadyExists { id }.into())
            }
            Err(AppendError::Store(e)) => return Err(e.into()),
            Err(e) => {
                return Err(RepoError::Corrupt {
                    id,
                    reason: e.to_string(),
                })
            }
        };
        let followup = if already_applied {
            self.load(id).await?
        } else {
            events.iter().fold(None, evolve)
        };
        let followup = followup.ok_or(RepoError::Domain(DomainError::NotFound))?;
        self.cache.put(&followup);
        Ok(Outcome {
            followup,
            events,
            already_applied,
        })
    }

    /// Like [`FollowUps::execute`], but the command is chosen from the current state (for
    /// example: create when absent, recur when present), and chosen again if a concurrent
    /// change makes the append conflict. `None` from `choose` means nothing to do.
    pub async fn execute_with(
        &self,
        id: FollowUpId,
        choose: impl Fn(&State) -> Option<Command>,
        ctx: &Context,
        meta: &CommandMeta,
        expect: Expect,
    ) -> Result<Option<Outcome>, RepoError> {
        // The first attempt may start from the cached state. Whatever it leads to other than
        // a successful append (a refusal, nothing to do, a conflict) is decided again from the
        // stored events, so a stale cache entry costs a retry and never a wrong answer.
        let mut trust_cache = true;
        for _ in 0..=CONFLICT_RETRIES {
            let cached = if trust_cache {
                self.cache.get(id)
            } else {
                None
            };
            let from_cache = cached.is_some();
            trust_cache = false;
            let state = match cached {
                Some(followup) => Some(followup),
                None => self.load(id).await?,
            };
            let version = state.as_ref().map_or(0, |f| f.version);
            if let Expect::Version(expected) = expect {
                if expected != version {
                    if from_cache {
                        continue;
                    }
                    return Err(RepoError::VersionMismatch {
                        id,
                        expected,
                        actual: version,
                    });
                }
            }
            let decided = match choose(&state) {
                None => Ok(None),
                Some(command) => decide(&state, command, ctx).map(Some),
            };
            let events = match decided {
                Ok(Some(events)) if !events.is_empty() => events,
                _ if from_cache => continue,
                Ok(None) => return Ok(None),
                Ok(Some(events)) => {
                    let followup = state.ok_or(RepoError::Domain(DomainError::NotFound))?;
                    return Ok(Some(Outcome {
                        followup,
                        events,
                        already_applied: false,
                    }));
                }
                Err(refused) => return Err(refused.into()),
            };
            let append = to_append(id, version, &events, ctx, meta).expect("events to append");
            match self.store.append(append).await {
                Ok(appended) if appended.already_stored => {
                    // An earlier run of the same message stored these events already.
                    let followup = self
                        .load(id)
                        .await?
                        .ok_or(RepoError::Domain(DomainError::NotFound))?;
                    return Ok(Some(Outcome {
                        followup,
                        events,
                        already_applied: true,
                    }));
                }
                Ok(_) => {
                    let followup = events
                        .iter()
                        .fold(state, evolve)
                        .ok_or(RepoError::Domain(DomainError::NotFound))?;
                    self.cache.put(&followup);
                    return Ok(Some(Outcome {
                        followup,
                        events,
                        already_applied: false,
                    }));
                }
                Err(AppendError::Conflict { actual, .. }) => {
                    if let (Expect::Version(expected), false) = (expect, from_cache) {
                        return Err(RepoError::VersionMismatch {
                            id,
                            expected,
                            actual,
                        });
                    }
                }
                Err(AppendError::Store(e)) => return Err(e.into()),
                Err(e) => {
                    return Err(RepoError::Corrupt {
                        id,
                        reason: e.to_string(),
                    });
                }
            }
        }
        Err(RepoError::Contended { id })
    }
}

/// Recently used follow-ups, so that a command on one need not read its stream first. Only
/// ever a starting point: the append's expected version proves it current, and anything but a
/// successful append is decided again from the stored events.
#[derive(Debug, Default)]
struct StateCache {
    /// The cached states; bounded by [`CACHE_CAPACITY`].
    entries: Mutex<HashMap<FollowUpId, FollowUp>>,
}

/// How many follow-ups a repository keeps in memory (a few KiB each).
const CACHE_CAPACITY: usize = 4096;

impl StateCache {
    fn get(&self, id: FollowUpId) -> Option<FollowUp> {
        self.entries.lock().ok()?.get(&id).cloned()
    }

    fn put(&self, followup: &FollowUp) {
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        if entries.len() >= CACHE_CAPACITY && !entries.contains_key(&followup.id) {
            // Evict an arbitrary entry (hash order): cheap, and good enough for a hint.
            if let Some(victim) = entries.keys().next().copied() {
                entries.remove(&victim);
            }
        }
        entries.insert(followup.id, followup.clone());
    }
}

/// Applies stored events to `state`.
fn fold(id: FollowUpId, state: State, events: &[RecordedEvent]) -> Result<State, RepoError> {
    events.iter().try_fold(state, |state, recorded| {
        let event = decode(
            &recorded.event_type,
            recorded.schema_version,
            recorded.payload.clone(),
        )
        .map_err(|e| RepoError::Corrupt {
            id,
            reason: e.to_string(),
        })?;
        Ok(evolve(state, &event))
    })
}

/// The id of the `index`-th event that the inbound message with idempotency key `key` causes
/// on follow-up `id`: the same every time the message is processed.
pub fn derived_event_id(key: &str, id: FollowUpId, index: usize) -> Uuid {
    Uuid::new_v5(
        &EVENT_ID_NAMESPACE,
        format!("{key}/{id}/{index}").as_bytes(),
    )
}

/// The events to store for `events` decided on follow-up `id`, with their metadata and ids
/// (derived from the idempotency key when there is one, random otherwise).
pub fn to_new_events(
    id: FollowUpId,
    events: &[Event],
    ctx: &Context,
    meta: &CommandMeta,
) -> Vec<NewEvent> {
    let actor = serde_json::to_value(&ctx.actor).expect("an actor serialises");
    events
        .iter()
        .enumerate()
        .map(|(i, event)| NewEvent {
            event_id: match &meta.idempotency_key {
                Some(key) => derived_event_id(key, id, i),
                None => Uuid::new_v4(),
            },
            event_type: event.event_type().to_owned(),
            schema_version: current_schema_version(event.event_type()),
            payload: serde_json::to_value(event).expect("an event serialises"),
            metadata: Metadata {
                actor: actor.clone(),
                correlation_id: meta.correlation_id.clone(),
                causation_id: meta.causation_id.clone(),
            },
        })
        .collect()
}

/// The expected version of a follow-up stream at `version` (0: it does not exist).
pub fn expected(version: u64) -> ExpectedVersion {
    if version == 0 {
        ExpectedVersion::NoStream
    } else {
        ExpectedVersion::Exact(version)
    }
}

/// The append for `events` decided on a follow-up at `version`; `None` when there are none.
pub fn to_append(
    id: FollowUpId,
    version: u64,
    events: &[Event],
    ctx: &Context,
    meta: &CommandMeta,
) -> Option<StreamAppend> {
    if events.is_empty() {
        return None;
    }
    Some(StreamAppend {
        stream_id: id.to_string(),
        stream_type: STREAM_TYPE.to_owned(),
        expected: expected(version),
        events: to_new_events(id, events, ctx, meta),
    })
}

/// The upcaster for stores that hold follow-ups.
pub fn upcaster() -> Arc<dyn Upcaster> {
    Arc::new(FollowUpUpcaster)
}
