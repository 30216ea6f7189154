//! The one command executor: every change to an aggregate (a follow-up, a subscription) is
//! run here, whoever asks for it (the API, the rule worker, the notifier, the scheduler, the
//! operators' tool). It is the `esrs` manager's `handle_command`, for one command or many:
//!
//! 1. **load** the state of the streams concerned (one query), or start from the state cache;
//! 2. **skip what is stored**: a command that carries an idempotency key (the inbound message
//!    id) gets event ids derived from (key, stream, index), so that a second run of the same
//!    message finds its first event stored and appends nothing;
//! 3. **decide** each command on the state its stream has at that point (a batch chains: the
//!    second change to a stream is decided on the state the first one left);
//! 4. **append** everything in one statement, each stream at the version it was loaded at;
//! 5. on a **conflict** (another writer got in between), decide again from fresh state: a
//!    batch once as a whole, then unit by unit, each a few times.
//!
//! # Layout
//! - [`Executor`]: `load*`, [`Executor::execute`] (one command, with [`Expect`]ed version and
//!   the cache), [`Executor::execute_units`] (a batch of [`Unit`]s planned on loaded state),
//!   [`Executor::import`] (events decided elsewhere, for bulk loading).
//! - [`CommandMeta`], [`Outcome`], [`UnitOutcome`], [`ExecuteError`]: what goes in and out.
//! - the private state cache and the event-id scheme.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex};

use followup_domain::aggregate::Aggregate;
use followup_domain::Context;
use uuid::Uuid;

use crate::event_store::{
    AppendError, EventStore, ExpectedVersion, Metadata, NewEvent, RecordedEvent, StoreError,
    StreamAppend,
};

/// How many times one command is decided again after a concurrent append took its version.
const CONFLICT_RETRIES: usize = 5;

/// How often a batch whose append conflicted is decided again as a whole before its units
/// are taken one by one.
const BATCH_CONFLICT_RETRIES: usize = 1;

/// How many times a batch loads more streams that its units turned out to change.
const MORE_LOADS: usize = 3;

/// How many states an executor keeps in memory (a few KiB each).
const CACHE_CAPACITY: usize = 4096;

/// Namespace for deterministic event ids (a fixed, random UUID).
const EVENT_ID_NAMESPACE: Uuid = Uuid::from_u128(0x6f1e_3c2a_9b47_4d0e_8a15_c7d2_40b9_e311);

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
    /// The W3C `traceparent` of the request or message that caused them, kept with the
    /// events so that the trace continues on the outbound CloudEvent.
    pub traceparent: Option<String>,
}

/// Which version a command expects the aggregate to be at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Whatever version is current when the command runs (retried on a concurrent change).
    Current,
    /// Exactly this version (an HTTP `If-Match`); anything else is a conflict, not retried.
    Version(u64),
}

/// The result of one command.
#[derive(Debug, Clone)]
pub struct Outcome<A: Aggregate> {
    /// The aggregate after the command.
    pub state: A,
    /// The events the command produced (empty when it changed nothing).
    pub events: Vec<A::Event>,
    /// True when these events were stored already by an earlier run of the same message.
    pub already_applied: bool,
}

/// Why a command did not run.
#[derive(Debug, thiserror::Error)]
pub enum ExecuteError<A: Aggregate> {
    /// The domain refused the command.
    #[error(transparent)]
    Domain(A::Error),
    /// The aggregate is not at the version the command expected.
    #[error("{} {id} is at version {actual}, not the expected {expected}", noun::<A>())]
    VersionMismatch {
        /// The aggregate.
        id: A::Id,
        /// What the command expected.
        expected: u64,
        /// Its current version.
        actual: u64,
    },
    /// Another writer kept changing the aggregate; the command gave up after retrying.
    #[error("{} {id} kept changing concurrently; try again", noun::<A>())]
    Contended {
        /// The aggregate.
        id: A::Id,
    },
    /// A stored event could not be read back, or an append was malformed.
    #[error("{} {id} has an unreadable event: {reason}", noun::<A>())]
    Corrupt {
        /// The aggregate.
        id: A::Id,
        /// Why.
        reason: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How error messages name an aggregate of type `A`.
fn noun<A: Aggregate>() -> &'static str {
    match A::STREAM_TYPE {
        "followup" => "follow-up",
        other => other,
    }
}

impl<A: Aggregate> ExecuteError<A> {
    /// True for failures worth retrying later (the database is unreachable).
    pub fn is_transient(&self) -> bool {
        matches!(self, ExecuteError::Store(e) if e.is_transient())
    }

    /// True for a failure of the database's surroundings, which no message causes (see
    /// [`crate::event_store::is_environment_database_error`]).
    pub fn is_environment_error(&self) -> bool {
        matches!(self, ExecuteError::Store(e) if e.is_environment_error())
    }

    /// True when the database refused the data itself (text it cannot store, a value out of
    /// range): asking again cannot help.
    pub fn is_content_error(&self) -> bool {
        matches!(self, ExecuteError::Store(e) if e.is_content_error())
    }
}

/// Changes to one or more streams that belong together and are stored together, decided
/// with one context and metadata (one inbound message, one job's change to one follow-up).
#[derive(Debug)]
pub struct Unit<A: Aggregate> {
    /// The streams and, for each, how to choose its commands from its state at that point.
    pub changes: Vec<Change<A>>,
    /// Who acts, and now.
    pub ctx: Context,
    /// Correlation, causation, idempotency key and trace context of the events.
    pub meta: CommandMeta,
    /// True: a refused command drops the whole unit (a job's change and the notification
    /// about it go together). False: it drops only its change, and is logged.
    pub all_or_nothing: bool,
}

/// What a change chooses: the commands for a stream in the state the batch has brought it to.
type Choose<A> = Box<dyn Fn(&Option<A>) -> Vec<<A as Aggregate>::Command> + Send + Sync + 'static>;

/// The commands of a [`Unit`] for one stream.
pub struct Change<A: Aggregate> {
    /// The stream.
    pub id: A::Id,
    /// Chooses the commands from the stream's state (empty: nothing to do).
    choose: Choose<A>,
    /// Who acts in this change, when not the unit's actor (each effect of an inbound
    /// message is decided by its own rule).
    ctx: Option<Context>,
}

impl<A: Aggregate> fmt::Debug for Change<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Change").field("id", &self.id).finish()
    }
}

impl<A: Aggregate> Change<A> {
    /// These commands, whatever the state.
    pub fn commands(id: A::Id, commands: Vec<A::Command>) -> Self {
        Self {
            id,
            choose: Box::new(move |_| commands.clone()),
            ctx: None,
        }
    }

    /// The commands `choose` picks from the stream's state when the change is decided.
    pub fn choose(
        id: A::Id,
        choose: impl Fn(&Option<A>) -> Vec<A::Command> + Send + Sync + 'static,
    ) -> Self {
        Self {
            id,
            choose: Box::new(choose),
            ctx: None,
        }
    }

    /// Decided in `ctx` instead of the unit's.
    pub fn by(mut self, ctx: Context) -> Self {
        self.ctx = Some(ctx);
        self
    }
}

/// What happened to one unit of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnitOutcome {
    /// Its events were stored now.
    Applied,
    /// It changed nothing (no command, or every one refused or without events).
    Unchanged,
    /// Refused as a whole (an all-or-nothing unit with a refused command).
    Refused,
    /// An earlier run with the same idempotency key stored its events already.
    AlreadyStored,
    /// A unit with the same idempotency key and streams came earlier in the same batch:
    /// that one did the work.
    Duplicate,
    /// Other writers kept changing its streams; nothing was stored, try again later.
    Contended,
}

/// What a batch did: one outcome per unit, in order, and the streams written now.
#[derive(Debug)]
pub struct BatchOutcome<A: Aggregate> {
    /// Per unit, in the order given.
    pub units: Vec<UnitOutcome>,
    /// The state of every stream the batch appended to now (not those found stored), after
    /// it.
    pub written: Vec<A>,
    /// The first stream of each unit that ended [`UnitOutcome::Contended`].
    pub contended: Vec<A::Id>,
}

/// Events decided outside the executor, for [`Executor::import`].
#[derive(Debug, Clone)]
pub struct Decided<A: Aggregate> {
    /// The stream.
    pub id: A::Id,
    /// Its version before these events (0: it does not exist).
    pub version: u64,
    /// The events.
    pub events: Vec<A::Event>,
    /// Who acted, and when.
    pub ctx: Context,
}

/// Loads aggregates of type `A` and runs commands on them. Cheap to clone; clones share the
/// state cache.
pub struct Executor<A: Aggregate> {
    /// The event store the aggregates live in.
    store: EventStore,
    /// Recently used states, shared by the clones of this executor.
    cache: Arc<StateCache<A>>,
}

impl<A: Aggregate> Clone for Executor<A> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            cache: self.cache.clone(),
        }
    }
}

impl<A: Aggregate> fmt::Debug for Executor<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Executor")
            .field("stream_type", &A::STREAM_TYPE)
            .finish_non_exhaustive()
    }
}

/// The states of a batch's streams, as it decides them.
type States<A> = HashMap<<A as Aggregate>::Id, Option<A>>;

impl<A: Aggregate> Executor<A> {
    /// An executor over `store` (which should upcast with [`crate::FollowUpUpcaster`] when it
    /// holds follow-ups).
    pub fn new(store: EventStore) -> Self {
        Self {
            store,
            cache: Arc::default(),
        }
    }

    /// The underlying store (for reading; every write goes through the executor).
    pub fn store(&self) -> &EventStore {
        &self.store
    }

    /// The aggregate as its events say it is now; `None` when it does not exist.
    pub async fn load(&self, id: A::Id) -> Result<Option<A>, ExecuteError<A>> {
        Ok(self.load_with_events(id).await?.0)
    }

    /// The aggregate and the stored events it was folded from (one read), for its history.
    pub async fn load_with_events(
        &self,
        id: A::Id,
    ) -> Result<(Option<A>, Vec<RecordedEvent>), ExecuteError<A>> {
        let events = self.store.read_stream(&id.to_string()).await?;
        let state = fold::<A>(id, None, &events)?;
        if let Some(state) = &state {
            self.cache.put(state);
        }
        Ok((state, events))
    }

    /// Many aggregates at once (one query).
    pub async fn load_many(&self, ids: &[A::Id]) -> Result<States<A>, ExecuteError<A>> {
        Ok(self.load_many_with_event_ids(ids).await?.0)
    }

    /// Like [`Executor::load_many`], also returning the ids of all their events.
    async fn load_many_with_event_ids(
        &self,
        ids: &[A::Id],
    ) -> Result<(States<A>, HashSet<Uuid>), ExecuteError<A>> {
        let stream_ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
        let events = self.store.read_streams(&stream_ids).await?;
        let mut states: States<A> = ids.iter().map(|id| (*id, None)).collect();
        let mut event_ids = HashSet::with_capacity(events.len());
        for event in &events {
            let id = A::parse_id(&event.stream_id).ok_or_else(|| ExecuteError::Corrupt {
                id: ids[0],
                reason: format!("stream id {} is not a {} id", event.stream_id, noun::<A>()),
            })?;
            event_ids.insert(event.event_id);
            let state = states.remove(&id).flatten();
            states.insert(id, fold::<A>(id, state, std::slice::from_ref(event))?);
        }
        Ok((states, event_ids))
    }

    /// Which of `ids` the command with idempotency key `key` has written to already.
    pub async fn already_done(
        &self,
        key: &str,
        ids: &[A::Id],
    ) -> Result<HashSet<A::Id>, StoreError> {
        let firsts: Vec<Uuid> = ids.iter().map(|id| derived_event_id(key, id, 0)).collect();
        let stored = self.store.stored_event_ids(&firsts).await?;
        Ok(ids
            .iter()
            .zip(&firsts)
            .filter(|(_, first)| stored.contains(first))
            .map(|(id, _)| *id)
            .collect())
    }

    /// Runs `command` on aggregate `id` and stores what it decides.
    pub async fn execute(
        &self,
        id: A::Id,
        command: A::Command,
        ctx: &Context,
        meta: &CommandMeta,
        expect: Expect,
    ) -> Result<Outcome<A>, ExecuteError<A>> {
        if A::is_creation(&command) && expect == Expect::Current {
            return self.create(id, command, ctx, meta).await;
        }
        self.execute_with(id, |_| Some(command.clone()), ctx, meta, expect)
            .await?
            .ok_or(ExecuteError::Domain(A::not_found()))
    }

    /// A creation needs no state: decide on an absent aggregate and append expecting no
    /// stream, in one round trip; an existing stream makes it `already_exists`.
    #[tracing::instrument(
        name = "executor.create",
        skip_all,
        fields(stream.type = A::STREAM_TYPE, stream.id = %id, correlation_id = meta.correlation_id.as_deref())
    )]
    async fn create(
        &self,
        id: A::Id,
        command: A::Command,
        ctx: &Context,
        meta: &CommandMeta,
    ) -> Result<Outcome<A>, ExecuteError<A>> {
        let events = A::decide(&None, command, ctx).map_err(ExecuteError::Domain)?;
        if events.is_empty() {
            return Err(ExecuteError::Domain(A::not_found()));
        }
        let append = to_append::<A>(id, 0, &events, ctx, meta, &mut 0);
        let already_applied = match self.store.append(append).await {
            Ok(appended) => appended.already_stored,
            Err(AppendError::Conflict { .. }) => {
                return Err(ExecuteError::Domain(A::already_exists(id)))
            }
            Err(e) => return Err(append_failed(id, e)),
        };
        let state = if already_applied {
            self.load(id).await?
        } else {
            events.iter().fold(None, A::evolve)
        };
        let state = state.ok_or(ExecuteError::Domain(A::not_found()))?;
        self.cache.put(&state);
        Ok(Outcome {
            state,
            events,
            already_applied,
        })
    }

    /// Like [`Executor::execute`], but the command is chosen from the current state (for
    /// example: create when absent, recur when present), and chosen again if a concurrent
    /// change makes the append conflict. `None` from `choose` means nothing to do.
    #[tracing::instrument(
        name = "executor.command",
        skip_all,
        fields(stream.type = A::STREAM_TYPE, stream.id = %id, correlation_id = meta.correlation_id.as_deref())
    )]
    pub async fn execute_with(
        &self,
        id: A::Id,
        choose: impl Fn(&Option<A>) -> Option<A::Command>,
        ctx: &Context,
        meta: &CommandMeta,
        expect: Expect,
    ) -> Result<Option<Outcome<A>>, ExecuteError<A>> {
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
                Some(state) => Some(state),
                None => self.load(id).await?,
            };
            let version = state.as_ref().map_or(0, A::version);
            if let Expect::Version(expected) = expect {
                if expected != version {
                    if from_cache {
                        continue;
                    }
                    return Err(ExecuteError::VersionMismatch {
                        id,
                        expected,
                        actual: version,
                    });
                }
            }
            let decided = match choose(&state) {
                None => Ok(None),
                Some(command) => A::decide(&state, command, ctx).map(Some),
            };
            let events = match decided {
                Ok(Some(events)) if !events.is_empty() => events,
                _ if from_cache => continue,
                Ok(None) => return Ok(None),
                Ok(Some(events)) => {
                    let state = state.ok_or(ExecuteError::Domain(A::not_found()))?;
                    return Ok(Some(Outcome {
                        state,
                        events,
                        already_applied: false,
                    }));
                }
                Err(refused) => return Err(ExecuteError::Domain(refused)),
            };
            let append = to_append::<A>(id, version, &events, ctx, meta, &mut 0);
            match self.store.append(append).await {
                Ok(appended) if appended.already_stored => {
                    // An earlier run of the same message stored these events already.
                    let state = self
                        .load(id)
                        .await?
                        .ok_or(ExecuteError::Domain(A::not_found()))?;
                    return Ok(Some(Outcome {
                        state,
                        events,
                        already_applied: true,
                    }));
                }
                Ok(_) => {
                    let state = events
                        .iter()
                        .fold(state, A::evolve)
                        .ok_or(ExecuteError::Domain(A::not_found()))?;
                    self.cache.put(&state);
                    return Ok(Some(Outcome {
                        state,
                        events,
                        already_applied: false,
                    }));
                }
                Err(AppendError::Conflict { actual, .. }) => {
                    if let (Expect::Version(expected), false) = (expect, from_cache) {
                        return Err(ExecuteError::VersionMismatch {
                            id,
                            expected,
                            actual,
                        });
                    }
                }
                Err(e) => return Err(append_failed(id, e)),
            }
        }
        Err(ExecuteError::Contended { id })
    }

    /// Runs a batch: `plan` turns the states of `ids` (loaded in one query) into units, which
    /// are decided in order, each change on its stream's state as the units before it left
    /// it, and stored in one statement. A stream a unit writes that is not among `ids` is
    /// loaded too, and the batch planned again with it. See the module docs for what is
    /// skipped and how conflicts are handled. `plan` may be called more than once, on
    /// fresher states, and on a subset of `ids` after a conflict.
    #[tracing::instrument(
        name = "executor.batch",
        skip_all,
        fields(stream.type = A::STREAM_TYPE, streams = ids.len())
    )]
    pub async fn execute_units<P>(
        &self,
        ids: Vec<A::Id>,
        plan: P,
    ) -> Result<BatchOutcome<A>, ExecuteError<A>>
    where
        P: Fn(&States<A>) -> Vec<Unit<A>>,
    {
        let requested: HashSet<A::Id> = ids.iter().copied().collect();
        let mut written: HashMap<A::Id, A> = HashMap::new();
        // The first plan names the units; a later plan (on fresher states, or for one unit
        // after a split) is matched to them by each unit's key.
        let mut slot_of: Option<HashMap<UnitKey<A>, usize>> = None;
        let mut outcomes: Vec<Option<UnitOutcome>> = Vec::new();
        let mut contended = Vec::new();
        // Groups still to store, front first: the ids to plan on, the units (slots) the group
        // stands for (`None`: all), and how many conflicts it has had.
        let mut groups: VecDeque<Group<A>> = VecDeque::from([(ids, None, 0)]);
        while let Some((group, wanted, conflicts)) = groups.pop_front() {
            let (picked, states, stored) = self
                .plan_group(&group, &plan, &mut slot_of, wanted.as_deref())
                .await?;
            if outcomes.is_empty() {
                outcomes = vec![None; slot_of.as_ref().map_or(0, HashMap::len)];
            }
            let (slots, chosen): (Vec<usize>, Vec<Unit<A>>) = picked.into_iter().unzip();
            let unit_streams: Vec<Vec<A::Id>> = chosen
                .iter()
                .map(|u| u.changes.iter().map(|c| c.id).collect())
                .collect();
            let loaded_versions: HashMap<A::Id, u64> = states
                .iter()
                .map(|(id, s)| (*id, s.as_ref().map_or(0, A::version)))
                .collect();
            let decided = decide_units(&chosen, states, &stored, &loaded_versions);
            if decided.appends.is_empty() {
                for (slot, unit_outcome) in slots.iter().zip(decided.outcomes) {
                    outcomes[*slot] = Some(unit_outcome);
                }
                continue;
            }
            match self.store.append_batch(decided.appends).await {
                Ok(results) => {
                    let already: HashSet<String> = results
                        .iter()
                        .filter(|a| a.already_stored)
                        .map(|a| a.stream_id.clone())
                        .collect();
                    for (i, unit_outcome) in decided.outcomes.into_iter().enumerate() {
                        let streams = &decided.streams_of[i];
                        let found_stored = unit_outcome == UnitOutcome::Applied
                            && streams.iter().all(|s| already.contains(&s.to_string()));
                        outcomes[slots[i]] = Some(if found_stored {
                            UnitOutcome::AlreadyStored
                        } else {
                            unit_outcome
                        });
                    }
                    for (id, state) in decided.states {
                        let now =
                            decided.touched.contains(&id) && !already.contains(&id.to_string());
                        if let (true, Some(state)) = (now, state) {
                            written.insert(id, state);
                        }
                    }
                }
                Err(AppendError::Conflict { .. } | AppendError::PartialDuplicate { .. }) => {
                    if slots.len() > 1 && conflicts >= BATCH_CONFLICT_RETRIES {
                        // One unit at a time, in order, each planned on the fresh state of
                        // its own streams.
                        for (slot, streams) in slots.iter().zip(&unit_streams).rev() {
                            let own: Vec<A::Id> = streams
                                .iter()
                                .copied()
                                .filter(|id| requested.contains(id))
                                .collect();
                            groups.push_front((own, Some(vec![*slot]), 0));
                        }
                    } else if conflicts >= CONFLICT_RETRIES {
                        for (slot, streams) in slots.iter().zip(&unit_streams) {
                            outcomes[*slot] = Some(UnitOutcome::Contended);
                            contended.extend(streams.first().copied());
                        }
                    } else {
                        groups.push_front((group, wanted, conflicts + 1));
                    }
                }
                Err(e) => return Err(append_failed(group[0], e)),
            }
        }
        Ok(BatchOutcome {
            units: outcomes
                .into_iter()
                .map(|o| o.unwrap_or(UnitOutcome::Unchanged))
                .collect(),
            written: written.into_values().collect(),
            contended,
        })
    }

    /// Loads `group`, plans on its states, picks the units the group stands for, and loads
    /// the other streams those change (then plans again, since a unit may look different
    /// once they are known), so that every change is decided on its stream's stored state.
    /// The first plan of a batch names its units (`slot_of`); later plans are matched to
    /// them, and `wanted` picks some of them (after a split).
    async fn plan_group<P>(
        &self,
        group: &[A::Id],
        plan: &P,
        slot_of: &mut Option<HashMap<UnitKey<A>, usize>>,
        wanted: Option<&[usize]>,
    ) -> Result<(Vec<(usize, Unit<A>)>, States<A>, HashSet<Uuid>), ExecuteError<A>>
    where
        P: Fn(&States<A>) -> Vec<Unit<A>>,
    {
        let (asked, mut stored) = self.load_many_with_event_ids(group).await?;
        // The plan sees the streams it was asked about; the others are for deciding.
        let mut picked = pick(plan(&asked), slot_of, wanted);
        let mut extra: States<A> = HashMap::new();
        for _ in 0..MORE_LOADS {
            let missing: Vec<A::Id> = unit_ids(picked.iter().map(|(_, u)| u))
                .into_iter()
                .filter(|id| !asked.contains_key(id) && !extra.contains_key(id))
                .collect();
            if missing.is_empty() {
                break;
            }
            let (more, more_stored) = self.load_many_with_event_ids(&missing).await?;
            extra.extend(more);
            stored.extend(more_stored);
            picked = pick(plan(&asked), slot_of, wanted);
        }
        let mut states = asked;
        states.extend(extra);
        Ok((picked, states, stored))
    }

    /// The rows [`Executor::import`] stores for `decided` (with fresh random event ids), for
    /// benchmarks that store the same rows by other means to compare.
    pub fn rows(decided: &[Decided<A>]) -> Vec<StreamAppend> {
        let meta = CommandMeta::default();
        decided
            .iter()
            .filter(|d| !d.events.is_empty())
            .map(|d| to_append::<A>(d.id, d.version, &d.events, &d.ctx, &meta, &mut 0))
            .collect()
    }

    /// Stores events decided elsewhere, without reading first, each stream at the version
    /// given, all in one statement: bulk loading for benchmarks and seeding, where the
    /// caller made the aggregates itself.
    pub async fn import(&self, decided: Vec<Decided<A>>) -> Result<usize, ExecuteError<A>> {
        let Some(first) = decided.first().map(|d| d.id) else {
            return Ok(0);
        };
        let appends = Self::rows(&decided);
        let events = appends.iter().map(|a| a.events.len()).sum();
        self.store
            .append_batch(appends)
            .await
            .map_err(|e| append_failed(first, e))?;
        Ok(events)
    }
}

/// A part of a batch still to store: the ids to plan on, the units (by their place in the
/// first plan) it stands for (`None`: all), and how many conflicts it has had.
type Group<A> = (Vec<<A as Aggregate>::Id>, Option<Vec<usize>>, usize);

/// A change's events, decided in its context, waiting for the rest of its unit.
type Staged<'c, A> = (
    <A as Aggregate>::Id,
    Vec<<A as Aggregate>::Event>,
    &'c Context,
);

/// What names a unit across plans: its first stream, and how many units before it in the
/// plan start with the same stream.
type UnitKey<A> = (Option<<A as Aggregate>::Id>, usize);

/// The key of each of `units`.
fn unit_keys<A: Aggregate>(units: &[Unit<A>]) -> Vec<UnitKey<A>> {
    let mut seen: HashMap<Option<A::Id>, usize> = HashMap::new();
    units
        .iter()
        .map(|u| {
            let first = u.changes.first().map(|c| c.id);
            let n = seen.entry(first).or_default();
            *n += 1;
            (first, *n - 1)
        })
        .collect()
}

/// Every stream the units change.
fn unit_ids<'u, A: Aggregate>(units: impl Iterator<Item = &'u Unit<A>>) -> Vec<A::Id> {
    let mut seen = HashSet::new();
    units
        .flat_map(|u| u.changes.iter().map(|c| c.id))
        .filter(|id| seen.insert(*id))
        .collect()
}

/// The units of a plan with their place in the batch's first plan: the first plan names
/// them (`slot_of`); a unit a later plan adds is left to the next run. `wanted`: only these.
fn pick<A: Aggregate>(
    units: Vec<Unit<A>>,
    slot_of: &mut Option<HashMap<UnitKey<A>, usize>>,
    wanted: Option<&[usize]>,
) -> Vec<(usize, Unit<A>)> {
    let keys = unit_keys(&units);
    let slot_of =
        slot_of.get_or_insert_with(|| keys.iter().enumerate().map(|(i, k)| (*k, i)).collect());
    units
        .into_iter()
        .zip(keys)
        .filter_map(|(unit, key)| slot_of.get(&key).map(|slot| (*slot, unit)))
        .filter(|(slot, _)| wanted.is_none_or(|w| w.contains(slot)))
        .collect()
}

/// A batch decided: the appends to make and what each unit amounts to.
struct DecidedBatch<A: Aggregate> {
    /// One append per stream, in the order the streams were first changed.
    appends: Vec<StreamAppend>,
    /// Per unit, what it amounts to if the appends succeed.
    outcomes: Vec<UnitOutcome>,
    /// Per unit, the streams it appends to.
    streams_of: Vec<Vec<A::Id>>,
    /// Every stream's state after the batch.
    states: States<A>,
    /// The streams appended to.
    touched: HashSet<A::Id>,
}

/// Decides `units` in order on `states` (see [`Executor::execute_units`]). States are moved,
/// not copied, from change to change; an all-or-nothing unit keeps a copy of what it
/// changes, to put back if it is refused.
fn decide_units<A: Aggregate>(
    units: &[Unit<A>],
    mut states: States<A>,
    stored: &HashSet<Uuid>,
    loaded_versions: &HashMap<A::Id, u64>,
) -> DecidedBatch<A> {
    let mut appends: Vec<StreamAppend> = Vec::new();
    let mut append_of: HashMap<A::Id, usize> = HashMap::new();
    let mut outcomes = Vec::with_capacity(units.len());
    let mut streams_of = Vec::with_capacity(units.len());
    // (idempotency key, stream) pairs decided earlier in the batch.
    let mut seen: HashSet<(&str, A::Id)> = HashSet::new();
    for unit in units {
        let key = unit.meta.idempotency_key.as_deref();
        if let Some(key) = key {
            let mut fresh = false;
            for change in &unit.changes {
                fresh |= seen.insert((key, change.id));
            }
            if !unit.changes.is_empty() && !fresh {
                // The same message twice in one batch (republished under another message
                // id): the first one does the work.
                outcomes.push(UnitOutcome::Duplicate);
                streams_of.push(Vec::new());
                continue;
            }
        }
        let (outcome, staged, taken, originals) = decide_unit(unit, &mut states, stored, key);
        // What the unit took out of `states` goes back: changed when it is stored, as it was
        // when it is refused.
        if outcome == UnitOutcome::Refused {
            states.extend(originals);
        } else {
            states.extend(taken);
        }
        if outcome != UnitOutcome::Applied {
            outcomes.push(outcome);
            streams_of.push(Vec::new());
            continue;
        }
        let mut streams: Vec<A::Id> = Vec::with_capacity(staged.len());
        // The n-th event of this unit's key on a stream, across its changes.
        let mut index_of: HashMap<A::Id, usize> = HashMap::new();
        for (id, events, ctx) in staged {
            let slot = *append_of.entry(id).or_insert_with(|| {
                let version = loaded_versions.get(&id).copied().unwrap_or(0);
                appends.push(StreamAppend {
                    stream_id: id.to_string(),
                    stream_type: A::STREAM_TYPE.to_owned(),
                    expected: expected(version),
                    events: Vec::new(),
                });
                appends.len() - 1
            });
            let index = index_of.entry(id).or_default();
            let new = to_new_events::<A>(id, &events, ctx, &unit.meta, index);
            appends[slot].events.extend(new);
            if !streams.contains(&id) {
                streams.push(id);
            }
        }
        outcomes.push(UnitOutcome::Applied);
        streams_of.push(streams);
    }
    DecidedBatch {
        appends,
        outcomes,
        touched: append_of.into_keys().collect(),
        streams_of,
        states,
    }
}

/// What deciding one unit came to: its outcome, its events per change, the states it took
/// (as it left them), and for an all-or-nothing unit the states as they were before it.
type DecidedUnit<'u, A> = (
    UnitOutcome,
    Vec<Staged<'u, A>>,
    States<A>,
    Vec<(<A as Aggregate>::Id, Option<A>)>,
);

/// Decides the changes of `unit`, taking the states it changes out of `states`.
fn decide_unit<'u, A: Aggregate>(
    unit: &'u Unit<A>,
    states: &mut States<A>,
    stored: &HashSet<Uuid>,
    key: Option<&str>,
) -> DecidedUnit<'u, A> {
    let mut staged: Vec<Staged<'u, A>> = Vec::new();
    let mut taken: States<A> = HashMap::new();
    let mut originals = Vec::new();
    let mut done = 0;
    for change in &unit.changes {
        if key.is_some_and(|k| stored.contains(&derived_event_id(k, &change.id, 0))) {
            done += 1;
            continue;
        }
        let ctx = change.ctx.as_ref().unwrap_or(&unit.ctx);
        let state = match taken.remove(&change.id) {
            Some(state) => state,
            None => {
                let state = states.remove(&change.id).flatten();
                if unit.all_or_nothing {
                    originals.push((change.id, state.clone()));
                }
                state
            }
        };
        let commands = (change.choose)(&state);
        let last = commands.len().saturating_sub(1);
        let mut events = Vec::new();
        // Later commands of a change are decided on the state the earlier ones left.
        let mut scratch: Option<Option<A>> = None;
        let mut refused = false;
        for (i, command) in commands.into_iter().enumerate() {
            let base = scratch.as_ref().unwrap_or(&state);
            match A::decide(base, command, ctx) {
                Ok(new) => {
                    if i < last {
                        scratch = Some(new.iter().fold(base.clone(), A::evolve));
                    }
                    events.extend(new);
                }
                Err(why) => {
                    if unit.all_or_nothing {
                        tracing::debug!(stream.id = %change.id, reason = %why, "unit not applicable");
                    } else {
                        tracing::info!(stream.id = %change.id, reason = %why, "change not applicable");
                    }
                    refused = true;
                    break;
                }
            }
        }
        // An all-or-nothing unit needs every one of its changes to change something.
        if unit.all_or_nothing && (refused || events.is_empty()) {
            taken.insert(change.id, state);
            return (UnitOutcome::Refused, Vec::new(), taken, originals);
        }
        if refused {
            // The change is dropped whole: none of its events, its state as it was.
            taken.insert(change.id, state);
            continue;
        }
        taken.insert(change.id, events.iter().fold(state, A::evolve));
        if !events.is_empty() {
            staged.push((change.id, events, ctx));
        }
    }
    let outcome = if !unit.changes.is_empty() && done == unit.changes.len() {
        UnitOutcome::AlreadyStored
    } else if staged.is_empty() {
        UnitOutcome::Unchanged
    } else {
        UnitOutcome::Applied
    };
    (outcome, staged, taken, originals)
}

/// The error of a failed append that is not a plain version conflict.
fn append_failed<A: Aggregate>(id: A::Id, e: AppendError) -> ExecuteError<A> {
    match e {
        AppendError::Store(e) => ExecuteError::Store(e),
        other => ExecuteError::Corrupt {
            id,
            reason: other.to_string(),
        },
    }
}

/// Recently used aggregates, so that a command on one need not read its stream first. Only
/// ever a starting point: the append's expected version proves it current, and anything but a
/// successful append is decided again from the stored events.
struct StateCache<A: Aggregate> {
    /// The cached states; bounded by [`CACHE_CAPACITY`].
    entries: Mutex<HashMap<A::Id, A>>,
}

impl<A: Aggregate> Default for StateCache<A> {
    fn default() -> Self {
        Self {
            entries: Mutex::default(),
        }
    }
}

impl<A: Aggregate> StateCache<A> {
    fn get(&self, id: A::Id) -> Option<A> {
        self.entries.lock().ok()?.get(&id).cloned()
    }

    fn put(&self, state: &A) {
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        let id = state.id();
        if entries.len() >= CACHE_CAPACITY && !entries.contains_key(&id) {
            // Evict an arbitrary entry (hash order): cheap, and good enough for a hint.
            if let Some(victim) = entries.keys().next().copied() {
                entries.remove(&victim);
            }
        }
        entries.insert(id, state.clone());
    }
}

/// Applies stored events of aggregate `id` to `state` (decoded, upcast), as the executor
/// does when it loads; for readers that hold a stream's events already.
pub fn fold<A: Aggregate>(
    id: A::Id,
    state: Option<A>,
    events: &[RecordedEvent],
) -> Result<Option<A>, ExecuteError<A>> {
    events.iter().try_fold(state, |state, recorded| {
        let event = A::decode(
            &recorded.event_type,
            recorded.schema_version,
            recorded.payload.clone(),
        )
        .map_err(|reason| ExecuteError::Corrupt { id, reason })?;
        Ok(A::evolve(state, &event))
    })
}

/// The id of the `index`-th event that the command with idempotency key `key` causes on
/// stream `id`: the same every time the command is run.
fn derived_event_id(key: &str, id: &impl fmt::Display, index: usize) -> Uuid {
    Uuid::new_v5(
        &EVENT_ID_NAMESPACE,
        format!("{key}/{id}/{index}").as_bytes(),
    )
}

/// The expected version of a stream at `version` (0: it does not exist).
fn expected(version: u64) -> ExpectedVersion {
    if version == 0 {
        ExpectedVersion::NoStream
    } else {
        ExpectedVersion::Exact(version)
    }
}

/// The events to store for `events` decided on stream `id`, with their metadata and ids
/// (derived from the idempotency key when there is one, numbered from `*index`; random
/// otherwise).
fn to_new_events<A: Aggregate>(
    id: A::Id,
    events: &[A::Event],
    ctx: &Context,
    meta: &CommandMeta,
    index: &mut usize,
) -> Vec<NewEvent> {
    let actor = serde_json::to_value(&ctx.actor).expect("an actor serialises");
    events
        .iter()
        .map(|event| {
            let event_id = match &meta.idempotency_key {
                Some(key) => derived_event_id(key, &id, *index),
                None => Uuid::new_v4(),
            };
            *index += 1;
            let event_type = A::event_type(event);
            NewEvent {
                event_id,
                event_type: event_type.to_owned(),
                schema_version: A::schema_version(event_type),
                payload: A::encode(event),
                metadata: Metadata {
                    actor: actor.clone(),
                    correlation_id: meta.correlation_id.clone(),
                    causation_id: meta.causation_id.clone(),
                    traceparent: meta.traceparent.clone(),
                },
            }
        })
        .collect()
}

/// The append of `events` decided on stream `id` at `version`.
fn to_append<A: Aggregate>(
    id: A::Id,
    version: u64,
    events: &[A::Event],
    ctx: &Context,
    meta: &CommandMeta,
    index: &mut usize,
) -> StreamAppend {
    StreamAppend {
        stream_id: id.to_string(),
        stream_type: A::STREAM_TYPE.to_owned(),
        expected: expected(version),
        events: to_new_events::<A>(id, events, ctx, meta, index),
    }
}
