//! The rule worker: inbound job outcomes (`ESAS_JOBS`) and domain events (`ESAS_EVENTS`)
//! become exceptions and tasks, by the rules (design sections 4 and 5), exactly once.
//!
//! # How a batch of messages is handled
//! 1. **Parse**: each message must be a CloudEvent whose type a rule handles (or that another
//!    service handles, such as structure date changes for the notifier). Anything else is a
//!    poison message: it goes to the dead-letter stream with the reason and is terminated.
//! 2. **Evaluate** the rules: each message gives effects (raise or resolve a follow-up). The
//!    follow-up's id is derived from (rule, institution, key), so repeats meet the same one.
//! 3. **Skip what is done**: the events a message causes have ids derived from the message's
//!    id. If the first one is stored already, an earlier delivery did the work.
//! 4. **Order**: record each rule key's newest failure and success times (the CloudEvent
//!    `time`; done while the batch is parsed, beside the previous batch's appends), and
//!    leave out an outcome older than the newest known one of the other kind
//!    ([`order`]): a failure older than a known success opens nothing.
//! 5. **Decide** every remaining effect on the current state of its follow-up (loaded for the
//!    whole batch in one query), and **append** all resulting events in one statement, each
//!    follow-up at the version it was loaded at. Where another worker recorded a newer
//!    outcome meanwhile, bring that follow-up in line with the newest outcomes.
//! 6. **Acknowledge** the messages. A crash before this only means redelivery, and step 3
//!    makes the redelivery harmless. If the database is away, the messages are nak'ed with a
//!    growing delay and come back; nothing is lost.
//!
//! A conflict (another worker changed a follow-up of the batch meanwhile) makes the executor
//! decide the batch again, then message by message, each a few times; a message whose
//! follow-ups kept changing is nak'ed and comes back later.
//!
//! # Layout
//! - [`RuleWorker`]: consumers, `process_pending` (what tests call), `run` (the loop).
//! - [`Report`]: what a step did, also counted in metrics.
//! - [`order`]: outcomes in any order: the newest failure and success per rule key decide.

pub mod order;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::PullConsumer;
use async_nats::jetstream::message::Message;
use chrono::Utc;
use followup_domain::{
    Actor, Command, Context, DataSubject, Description, FollowUp, FollowUpId, InstitutionId, Kind,
    KnownInstitutions, NewFollowUp, Principal, Priority, Regarding, Source, State, Subject, TeamId,
};
use followup_messaging::consume::{self, Feed, FetchError, Handler};
use followup_messaging::consumer::{self, ack_all};
use followup_messaging::{
    parse_inbound, reject, settle_failure, CloudEvent, DeadLetter, Failure, JetStream, Rejected,
    Streams,
};
use followup_rules::{Effect, EventView, RaiseKind, RuleSet};
use followup_store::{Change, CommandMeta, FollowUps, Unit, UnitOutcome};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Inbound types of the contract that other roles handle: the rule worker leaves them alone.
const HANDLED_ELSEWHERE: &[&str] = &["dk.esas.event.education_structure.dates_changed"];

/// Namespace of follow-up ids derived from (rule, institution, key).
const FOLLOWUP_ID_NAMESPACE: Uuid = Uuid::from_u128(0x2b7c_91d4_5e3a_4f08_b6c1_0a9e_d47f_5c22);

/// A large batch is applied in this many parts at once (each its own append).
const PARTITIONS: usize = 2;

/// The smallest part worth applying on its own.
const MIN_PARTITION: usize = 50;

/// Settings of a rule worker.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// The streams to consume.
    pub streams: Streams,
    /// The durable consumer name; processes with the same name share the messages.
    pub durable_name: String,
    /// The most messages handled in one batch.
    pub batch_size: usize,
    /// How long JetStream waits for an ack before redelivering.
    pub ack_wait: Duration,
    /// The institutions served; a message for another is dead-lettered.
    pub institutions: KnownInstitutions,
    /// Deliveries a message that keeps failing gets before it is dead-lettered (a failure
    /// because the database is unreachable does not count against it).
    pub max_deliveries: i64,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            streams: Streams::default(),
            durable_name: "rule-worker".into(),
            batch_size: 500,
            ack_wait: consumer::ACK_WAIT,
            institutions: KnownInstitutions::default(),
            max_deliveries: 10,
        }
    }
}

/// Why the worker cannot start or go on.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// A consumer could not be created.
    #[error(transparent)]
    Consumer(#[from] consumer::ConsumerError),
    /// Messages could not be fetched from NATS.
    #[error(transparent)]
    Fetch(#[from] FetchError),
}

/// What one step did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    /// Messages whose effects were stored now.
    pub applied: usize,
    /// Messages whose effects were stored by an earlier delivery.
    pub duplicates: usize,
    /// Messages that cause nothing (no effect, or handled by another role).
    pub ignored: usize,
    /// Poison messages moved to the dead-letter stream.
    pub dead_lettered: usize,
    /// Messages nak'ed for a transient failure; they come back later.
    pub retried: usize,
    /// Outcomes older than a known newer outcome of the other kind (a failure older than a
    /// success, or the reverse): nothing done.
    pub outdated: usize,
    /// Follow-ups brought in line with outcomes another worker recorded meanwhile.
    pub reconciled: usize,
}

impl Report {
    /// All messages this step settled or left for later.
    pub fn total(&self) -> usize {
        self.applied
            + self.duplicates
            + self.ignored
            + self.dead_lettered
            + self.retried
            + self.outdated
    }

    fn add(&mut self, other: Report) {
        self.applied += other.applied;
        self.duplicates += other.duplicates;
        self.ignored += other.ignored;
        self.dead_lettered += other.dead_lettered;
        self.retried += other.retried;
        self.outdated += other.outdated;
        self.reconciled += other.reconciled;
    }

    fn record_metrics(&self) {
        consumer::record_outcomes(
            "followup_rule_worker_messages_total",
            &[
                ("applied", self.applied),
                ("duplicate", self.duplicates),
                ("ignored", self.ignored),
                ("dead_lettered", self.dead_lettered),
                ("retried", self.retried),
                ("outdated", self.outdated),
            ],
        );
        if self.reconciled > 0 {
            metrics::counter!("followup_rule_worker_reconciled_total")
                .increment(self.reconciled as u64);
        }
    }
}

/// A fetched batch, parsed: what is left to apply, and what parsing settled already (opaque:
/// the consume loop hands it from parsing to handling).
#[derive(Debug)]
pub struct Parsed {
    /// The batch as delivered.
    messages: Vec<Message>,
    /// The messages with effects to apply.
    work: Vec<Work>,
    /// Counts of the messages parsing settled (ignored, dead-lettered).
    report: Report,
    /// The rule keys' newest outcome times before this batch, read as its outcomes were
    /// recorded (at parsing, so that it overlaps the previous batch's appends), or why they
    /// could not be.
    before: Before,
}

/// The rule keys' newest outcome times before a batch, or why they could not be read.
type Before = Result<HashMap<FollowUpId, order::Watermark>, Failure>;

/// One message that passed parsing, with what the rules make of it.
#[derive(Debug)]
struct Work {
    /// Index of the message in its batch.
    index: usize,
    /// The parsed event.
    event: CloudEvent,
    /// The planned changes, in rule order.
    effects: Vec<Planned>,
    /// The trace context of the message's span, kept with the events it causes.
    traceparent: Option<String>,
}

/// One effect, resolved to the follow-up it concerns.
#[derive(Debug)]
struct Planned {
    /// The follow-up raised or resolved.
    id: FollowUpId,
    /// The rule acting (the actor of the events).
    rule_id: String,
    /// What to do.
    action: Arc<Action>,
    /// What the message says of the rule key (a raise is a failure, a resolve a success).
    outcome: order::Outcome,
}

#[derive(Debug, Clone)]
enum Action {
    /// Create it, or count a recurrence (exceptions) when it exists.
    Raise(Box<NewFollowUp>),
    /// Complete it, if it is an open exception.
    Resolve,
}

/// How a batch's appends ended.
enum Applied {
    /// Stored (or found stored): ack every message but the `contended` ones (indices into
    /// the work), whose follow-ups other writers kept changing.
    Done {
        applied: usize,
        duplicates: usize,
        outdated: usize,
        reconciled: usize,
        contended: Vec<usize>,
    },
    /// Nothing stored: settled by the failure's kind (see [`Failure`]).
    Failed(Failure),
}

/// The rule worker. Cheap to clone; clones share consumers.
#[derive(Debug, Clone)]
pub struct RuleWorker {
    /// For dead letters.
    js: JetStream,
    /// Where follow-ups are loaded and stored.
    followups: FollowUps,
    /// The rules, validated at start.
    rules: Arc<RuleSet>,
    /// One durable consumer per inbound stream.
    consumers: Vec<PullConsumer>,
    /// Settings.
    config: WorkerConfig,
}

impl Handler for RuleWorker {
    type Parsed = Parsed;
    type Report = Report;

    async fn parse(&self, messages: Vec<Message>) -> Parsed {
        self.parse_all(messages).await
    }

    async fn handle(&self, parsed: Parsed) -> Report {
        self.settle(parsed).await
    }

    fn retried(report: &Report) -> bool {
        report.retried > 0
    }

    fn record(report: &Report) {
        report.record_metrics();
    }
}

impl RuleWorker {
    /// Binds to (or creates) the durable consumers on both inbound streams.
    pub async fn new(
        js: JetStream,
        followups: FollowUps,
        rules: RuleSet,
        config: WorkerConfig,
    ) -> Result<Self, WorkerError> {
        let mut consumers = Vec::new();
        for stream in [&config.streams.jobs, &config.streams.events] {
            let max_ack_pending = (config.batch_size * 4) as i64;
            consumers.push(
                consumer::durable(
                    &js,
                    stream,
                    &config.durable_name,
                    max_ack_pending,
                    config.ack_wait,
                )
                .await?,
            );
        }
        Ok(Self {
            js,
            followups,
            rules: Arc::new(rules),
            consumers,
            config,
        })
    }

    /// Where each consumer reads from, for the consume loop: named `<durable>/<stream>`, so
    /// that each stream's loop has a health of its own.
    fn feeds(&self) -> Vec<Feed> {
        let streams = [&self.config.streams.jobs, &self.config.streams.events];
        self.consumers
            .iter()
            .zip(streams)
            .map(|(consumer, stream)| Feed {
                consumer: consumer.clone(),
                name: format!("{}/{stream}", self.config.durable_name),
                batch_size: self.config.batch_size,
            })
            .collect()
    }

    /// Handles the messages that are waiting now (up to a batch per stream) and returns:
    /// the "process what is pending" step that tests call directly.
    pub async fn process_pending(&self) -> Result<Report, WorkerError> {
        let mut report = Report::default();
        for source in self.feeds() {
            if let Some(part) = consume::process_pending(self, &source).await? {
                report.add(part);
            }
        }
        Ok(report)
    }

    /// Runs until `shutdown`: consumes both inbound streams with the consume loop, each in a
    /// task of its own. Batches of one stream are applied one after the other, in stream
    /// order (a success is never applied before the failure it resolves).
    pub async fn run(self, shutdown: CancellationToken) {
        tracing::info!(consumer = %self.config.durable_name, "rule worker started");
        let mut tasks = tokio::task::JoinSet::new();
        for source in self.feeds() {
            tasks.spawn(consume::run(self.clone(), source, shutdown.clone()));
        }
        while tasks.join_next().await.is_some() {}
        tracing::info!("rule worker stopped");
    }

    /// Handles a batch of delivered messages and settles each (ack, nak or dead letter).
    pub async fn handle(&self, messages: Vec<Message>) -> Report {
        let parsed = self.parse_all(messages).await;
        self.settle(parsed).await
    }

    /// Applies what parsing left to apply, then acks (or naks) those messages. A large batch
    /// is applied in [`PARTITIONS`] parts at once, split by follow-up, so that each follow-up's
    /// messages stay in order within one part.
    async fn settle(&self, parsed: Parsed) -> Report {
        let Parsed {
            messages,
            work,
            mut report,
            before,
        } = parsed;
        let before = &before;
        if work.len() < 2 * MIN_PARTITION {
            report.add(self.settle_part(&messages, work, before).await);
            return report;
        }
        let mut parts: Vec<Vec<Work>> = (0..PARTITIONS).map(|_| Vec::new()).collect();
        for item in work {
            // By the first effect's follow-up; no default rule has a message with two.
            let part = item
                .effects
                .first()
                .map_or(0, |p| p.id.as_uuid().as_u128() as usize % PARTITIONS);
            parts[part].push(item);
        }
        let settled = futures::future::join_all(
            parts
                .into_iter()
                .map(|part| self.settle_part(&messages, part, before)),
        )
        .await;
        for part in settled {
            report.add(part);
        }
        report
    }

    /// Applies one part of a batch in one append and settles its messages. When the append
    /// fails for a reason other than an unreachable database, one message may be at fault:
    /// each is then applied on its own, so that the others go on at once and only that one
    /// is dead-lettered or retried.
    async fn settle_part(&self, messages: &[Message], work: Vec<Work>, before: &Before) -> Report {
        if work.is_empty() {
            return Report::default();
        }
        match self.apply(&work, before).await {
            Applied::Failed(failure)
                if work.len() > 1 && !matches!(failure, Failure::Unreachable(_)) =>
            {
                tracing::info!(error.message = %failure, messages = work.len(), "a batch failed; applying its messages one by one");
                let mut report = Report::default();
                for item in work {
                    let one = vec![item];
                    // The outcomes again for this one message, if recording them failed for
                    // the batch (the message at fault may be among them).
                    let own;
                    let before = match before {
                        Ok(_) => before,
                        Err(_) => {
                            own = self.record(&one).await;
                            &own
                        }
                    };
                    let applied = self.apply(&one, before).await;
                    report.add(self.settle_applied(messages, &one, applied).await);
                }
                report
            }
            applied => self.settle_applied(messages, &work, applied).await,
        }
    }

    /// Settles the messages of `work` by how applying them ended.
    async fn settle_applied(
        &self,
        messages: &[Message],
        work: &[Work],
        applied: Applied,
    ) -> Report {
        let mut report = Report::default();
        match applied {
            Applied::Done {
                applied,
                duplicates,
                outdated,
                reconciled,
                contended,
            } => {
                report.applied += applied;
                report.duplicates += duplicates;
                report.outdated += outdated;
                report.reconciled += reconciled;
                let message_of = |w: &(usize, &Work)| &messages[w.1.index];
                let (later, done): (Vec<_>, Vec<_>) = work
                    .iter()
                    .enumerate()
                    .partition(|(w, _)| contended.contains(w));
                ack_all(done.iter().map(message_of).collect()).await;
                if !later.is_empty() {
                    tracing::warn!(
                        messages = later.len(),
                        "follow-ups kept changing concurrently; messages will be redelivered"
                    );
                    let failure =
                        Failure::Failed("its follow-ups kept changing concurrently".into());
                    let later: Vec<&Message> = later.iter().map(message_of).collect();
                    report.add(self.settle_failed(later, &failure).await);
                }
            }
            Applied::Failed(failure) => {
                match &failure {
                    Failure::Unreachable(_) => {
                        tracing::warn!(error.message = %failure, messages = work.len(), "database unavailable; messages will be redelivered")
                    }
                    _ => {
                        tracing::warn!(error.message = %failure, messages = work.len(), "messages could not be stored")
                    }
                }
                let failed = work.iter().map(|w| &messages[w.index]).collect();
                report.add(self.settle_failed(failed, &failure).await);
            }
        }
        report
    }

    /// Settles `messages` after `failure`: nak'ed, or dead-lettered where retrying cannot
    /// help (see [`Failure`]). A worker whose messages go back is marked failing.
    async fn settle_failed(&self, messages: Vec<&Message>, failure: &Failure) -> Report {
        let mut report = Report::default();
        let stream = messages_stream(&messages);
        for message in messages {
            match settle_failure(&self.js, message, failure, self.config.max_deliveries).await {
                Rejected::DeadLettered => report.dead_lettered += 1,
                Rejected::Retried => report.retried += 1,
            }
        }
        if report.retried > 0 {
            followup_platform::health::failed(
                &format!("{}/{stream}", self.config.durable_name),
                failure.reason(),
            );
        }
        report
    }

    /// Stores the effects of `messages` without acknowledging (or dead-lettering) any of
    /// them, as a worker that stops right after its append would. Tests use it to show that
    /// the redelivery that follows changes nothing.
    pub async fn apply_without_settling(&self, messages: Vec<Message>) {
        let work: Vec<Work> = messages
            .iter()
            .enumerate()
            .filter_map(|(index, m)| self.plan(index, m).ok().flatten())
            .collect();
        let before = self.record(&work).await;
        self.apply(&work, &before).await;
    }

    /// Parses and evaluates every message; poison ones are dead-lettered, ignored ones acked.
    async fn parse_all(&self, messages: Vec<Message>) -> Parsed {
        let mut work = Vec::with_capacity(messages.len());
        let mut report = Report::default();
        for (index, message) in messages.iter().enumerate() {
            match self.plan(index, message) {
                Ok(Some(item)) => work.push(item),
                Ok(None) => {
                    report.ignored += 1;
                    ack_all(vec![message]).await;
                }
                Err(why) => match reject(&self.js, message, &why).await {
                    Rejected::DeadLettered => report.dead_lettered += 1,
                    Rejected::Retried => report.retried += 1,
                },
            }
        }
        let before = self.record(&work).await;
        Parsed {
            messages,
            work,
            report,
            before,
        }
    }

    /// Records the outcomes of `work` (step 4 of the module docs) and returns the rule keys'
    /// newest times as they were before.
    async fn record(&self, work: &[Work]) -> Before {
        if work.is_empty() {
            return Ok(HashMap::new());
        }
        order::record(self.followups.store().pool(), &seen_in(work))
            .await
            .map_err(|e| {
                let reason = format!("recording the outcomes: {e}");
                if followup_store::event_store::is_environment_database_error(&e) {
                    Failure::Unreachable(reason)
                } else if followup_store::event_store::is_content_database_error(&e) {
                    Failure::Refused(reason)
                } else {
                    Failure::Failed(reason)
                }
            })
    }

    /// What message `index` of a batch asks for; `Ok(None)` when nothing; `Err` for a poison
    /// message.
    fn plan(&self, index: usize, message: &Message) -> Result<Option<Work>, DeadLetter> {
        let event = parse_inbound(message, &self.config.institutions)?;
        let span = event.span("rule_worker.message");
        let _entered = span.enter();
        if !self.rules.handles(&event.event_type) {
            if HANDLED_ELSEWHERE.contains(&event.event_type.as_str()) {
                return Ok(None);
            }
            return Err(DeadLetter {
                code: "unknown_type",
                reason: format!("unknown type {}: no rule handles it", event.event_type),
            });
        }
        let view = EventView {
            id: &event.id,
            event_type: &event.event_type,
            source: &event.source,
            institution: &event.institution,
            subject: event.subject.as_deref(),
            time: event.time,
            data: &event.data,
        };
        let effects = self.rules.evaluate(&view).map_err(|e| DeadLetter {
            code: "missing_data",
            reason: e.to_string(),
        })?;
        if effects.is_empty() {
            return Ok(None);
        }
        let institution = InstitutionId::parse(&event.institution).map_err(|e| DeadLetter {
            code: "not_a_cloudevent",
            reason: format!("attribute `institution`: {e}"),
        })?;
        let planned = effects
            .into_iter()
            .map(|effect| plan_effect(&institution, effect))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(Work {
            index,
            event,
            effects: planned,
            traceparent: followup_platform::trace::traceparent_of(&span),
        }))
    }

    /// Stores the effects of `work` through the executor, in one append (steps 4 and 5 of
    /// the module docs): the outcomes are recorded first and the outdated ones left out; one
    /// unit per message, each effect a change decided on its follow-up's state as the
    /// messages before it in the batch left it; then the follow-ups whose outcomes another
    /// worker recorded meanwhile are reconciled.
    async fn apply(&self, work: &[Work], before: &Before) -> Applied {
        let before = match before {
            Ok(before) => before,
            Err(e) => return Applied::Failed(e.clone()),
        };
        let (stale, expected) = order::outdated(before, &seen_in(work));
        let outdated: HashSet<usize> = (0..work.len())
            .filter(|w| (0..work[*w].effects.len()).all(|e| stale.contains(&(*w, e))))
            .collect();
        for w in &outdated {
            let item = &work[*w];
            tracing::info!(
                event.id = %item.event.id,
                event.r#type = %item.event.event_type,
                event.time = %item.event.time,
                followup.id = %item.effects.first().map(|p| p.id.to_string()).unwrap_or_default(),
                "outcome older than the newest known outcome of its rule key; nothing done"
            );
        }
        let ids: Vec<FollowUpId> = {
            let mut seen = HashSet::new();
            work.iter()
                .flat_map(|w| w.effects.iter().map(|p| p.id))
                .filter(|id| seen.insert(*id))
                .collect()
        };
        let units = || -> Vec<Unit<FollowUp>> {
            work.iter()
                .enumerate()
                .map(|(w, item)| unit_of(item, |e| !stale.contains(&(w, e))))
                .collect()
        };
        let batch = match self.followups.execute_units(ids.clone(), |_| units()).await {
            Ok(batch) => batch,
            Err(e) if e.is_environment_error() => {
                return Applied::Failed(Failure::Unreachable(e.to_string()))
            }
            Err(e) if e.is_content_error() => {
                return Applied::Failed(Failure::Refused(e.to_string()))
            }
            Err(e) => return Applied::Failed(Failure::Failed(e.to_string())),
        };
        let mut applied = 0;
        let mut duplicates = 0;
        let mut contended = Vec::new();
        // Keys of messages seen before (outdated or already stored): the worker that handled
        // them first may have died after its append and before its reconciliation, so it is
        // done here (a no-op where nothing is out of line).
        let mut seen_before = Vec::new();
        for (w, outcome) in batch.units.iter().enumerate() {
            match outcome {
                _ if outdated.contains(&w) => seen_before.push(w),
                UnitOutcome::AlreadyStored | UnitOutcome::Duplicate => {
                    duplicates += 1;
                    seen_before.push(w);
                }
                UnitOutcome::Contended => contended.push(w),
                _ => applied += 1,
            }
        }
        let again: Vec<FollowUpId> = seen_before
            .iter()
            .flat_map(|w| work[*w].effects.iter().map(|p| p.id))
            .collect();
        let reconciled = match self.reconcile(&ids, &expected, &again, work).await {
            Ok(n) => n,
            // The messages' own effects are stored: they are acked. The worker that recorded
            // the newer outcome reconciles too, after its own effects.
            Err(e) => {
                tracing::warn!(error.message = %e, "cannot reconcile follow-ups with outcomes recorded meanwhile; the other worker will");
                0
            }
        };
        Applied::Done {
            applied,
            duplicates,
            outdated: outdated.len(),
            reconciled,
            contended,
        }
    }

    /// Reads the outcomes of `ids` again and brings each follow-up whose newest outcomes
    /// moved past `expected` (another worker recorded them meanwhile), and each of `again`,
    /// in line with them. Returns how many follow-ups changed.
    async fn reconcile(
        &self,
        ids: &[FollowUpId],
        expected: &HashMap<FollowUpId, order::Watermark>,
        again: &[FollowUpId],
        work: &[Work],
    ) -> Result<usize, String> {
        let pool = self.followups.store().pool();
        let now = order::stored(pool, ids).await.map_err(|e| e.to_string())?;
        let mut moved = order::moved(expected, &now);
        moved.extend(again.iter().filter(|id| now.contains_key(id)));
        moved.sort_by_key(|id| id.as_uuid());
        moved.dedup();
        if moved.is_empty() {
            return Ok(0);
        }
        let rule_of: HashMap<FollowUpId, &str> = work
            .iter()
            .flat_map(|w| w.effects.iter().map(|p| (p.id, p.rule_id.as_str())))
            .collect();
        let plan = |states: &HashMap<FollowUpId, State>| -> Vec<Unit<FollowUp>> {
            moved
                .iter()
                .filter_map(|id| {
                    let state = states.get(id)?;
                    let mark = *now.get(id)?;
                    order::reconcile(state, mark)?;
                    let version = state.as_ref().map_or(0, |f| f.version);
                    let ctx = Context {
                        actor: Actor::Rule {
                            id: rule_of.get(id).copied().unwrap_or_default().to_owned(),
                        },
                        now: Utc::now(),
                    };
                    Some(Unit {
                        changes: vec![Change::choose(*id, move |state| {
                            order::reconcile(state, mark).into_iter().collect()
                        })],
                        ctx,
                        // Two workers reconciling the same version store it once.
                        meta: CommandMeta {
                            idempotency_key: Some(format!("reconcile/{id}/{version}")),
                            ..CommandMeta::default()
                        },
                        all_or_nothing: false,
                    })
                })
                .collect()
        };
        let batch = self
            .followups
            .execute_units(moved.clone(), plan)
            .await
            .map_err(|e| e.to_string())?;
        let changed = batch
            .units
            .iter()
            .filter(|u| matches!(u, UnitOutcome::Applied))
            .count();
        if changed > 0 {
            tracing::info!(
                followups = changed,
                "follow-ups brought in line with outcomes another worker recorded meanwhile"
            );
        }
        Ok(changed)
    }

    /// The repository the worker writes to (for tests and the ops tool).
    pub fn followups(&self) -> &FollowUps {
        &self.followups
    }
}

/// The stream the messages of a batch came from (one stream per batch).
fn messages_stream(messages: &[&Message]) -> String {
    messages
        .first()
        .and_then(|m| m.info().ok())
        .map_or_else(|| "unknown".to_owned(), |info| info.stream.to_owned())
}

/// The outcomes of `work`, each at its place (message, effect), in batch order.
fn seen_in(work: &[Work]) -> Vec<order::Seen> {
    work.iter()
        .enumerate()
        .flat_map(|(w, item)| {
            item.effects
                .iter()
                .enumerate()
                .map(move |(e, planned)| order::Seen {
                    place: (w, e),
                    id: planned.id,
                    outcome: planned.outcome,
                    time: order::stored_time(item.event.time),
                })
        })
        .collect()
}

/// The follow-up an effect concerns, and what to do with it.
fn plan_effect(institution: &InstitutionId, effect: Effect) -> Result<Planned, DeadLetter> {
    let bad = |what: &str, e: &dyn std::fmt::Display| DeadLetter {
        code: "invalid_data",
        reason: format!("{what}: {e}"),
    };
    match effect {
        Effect::Raise(raise) => {
            let id = followup_id(&raise.rule_id, institution, &raise.key);
            let regarding = match &raise.regarding {
                Some((kind, rid)) => {
                    Some(Regarding::parse(kind, rid).map_err(|e| bad("regarding", &e))?)
                }
                None => None,
            };
            let owner = TeamId::parse(&raise.owner_team).map_err(|e| bad("owner team", &e))?;
            let new = NewFollowUp {
                id,
                institution: institution.clone(),
                kind: match raise.kind {
                    RaiseKind::Exception => Kind::Exception,
                    RaiseKind::Task => Kind::Task,
                },
                subject: Subject::from_upstream(&raise.subject),
                description: Description::from_upstream(&raise.description),
                regarding,
                // A person id that is no valid id (too long, say) leaves the follow-up
                // with the regarding's person, or no one: never lost for it.
                person: raise
                    .person
                    .as_ref()
                    .and_then(|(kind, id)| DataSubject::parse(kind, id).ok()),
                owner: Principal::Team(owner),
                due: raise.due,
                priority: match raise.priority {
                    followup_rules::Priority::Low => Priority::Low,
                    followup_rules::Priority::Normal => Priority::Normal,
                    followup_rules::Priority::High => Priority::High,
                },
                source: Source::Rule {
                    rule_id: raise.rule_id.clone(),
                    job: raise.job.clone(),
                },
            };
            Ok(Planned {
                id,
                rule_id: raise.rule_id,
                action: Arc::new(Action::Raise(Box::new(new))),
                outcome: order::Outcome::Failure,
            })
        }
        Effect::Resolve(resolve) => Ok(Planned {
            id: followup_id(&resolve.rule_id, institution, &resolve.key),
            rule_id: resolve.rule_id,
            action: Arc::new(Action::Resolve),
            outcome: order::Outcome::Success,
        }),
    }
}

/// The executor's unit for one message: each effect that `keep` (by its place in the
/// message) keeps a change on its follow-up, decided by its own rule, with event ids derived
/// from the message.
fn unit_of(item: &Work, keep: impl Fn(usize) -> bool) -> Unit<FollowUp> {
    let now = Utc::now();
    let rule_ctx = |rule_id: &str| Context {
        actor: Actor::Rule {
            id: rule_id.to_owned(),
        },
        now,
    };
    let changes = item
        .effects
        .iter()
        .enumerate()
        .filter(|(e, _)| keep(*e))
        .map(|(_, planned)| {
            let action = planned.action.clone();
            Change::choose(planned.id, move |state| {
                command_for(state, &action).into_iter().collect()
            })
            .by(rule_ctx(&planned.rule_id))
        })
        .collect();
    Unit {
        changes,
        ctx: rule_ctx(item.effects.first().map_or("", |p| p.rule_id.as_str())),
        meta: CommandMeta {
            correlation_id: Some(item.event.id.clone()),
            causation_id: Some(item.event.id.clone()),
            idempotency_key: Some(item.event.idempotency_key()),
            traceparent: item.traceparent.clone(),
        },
        all_or_nothing: false,
    }
}

/// The command an effect means for the follow-up's current state; `None`: nothing to do.
fn command_for(state: &State, action: &Action) -> Option<Command> {
    match (state, action) {
        (None, Action::Raise(new)) => Some(Command::Create((**new).clone())),
        (Some(existing), Action::Raise(new)) if existing.kind == Kind::Exception => {
            Some(Command::Recur {
                details: new.description.clone(),
            })
        }
        // A task or notification raised again (the same request repeated): it exists.
        (Some(_), Action::Raise(_)) => None,
        (Some(existing), Action::Resolve)
            if existing.is_open() && existing.kind == Kind::Exception =>
        {
            Some(Command::ResolveByJob)
        }
        (_, Action::Resolve) => None,
    }
}

/// The id of the follow-up a rule raises for `key` at `institution`.
pub fn followup_id(rule_id: &str, institution: &InstitutionId, key: &str) -> FollowUpId {
    FollowUpId::from_uuid(Uuid::new_v5(
        &FOLLOWUP_ID_NAMESPACE,
        format!("{rule_id}/{}/{key}", institution.as_str()).as_bytes(),
    ))
}

/// Loads the rules: from `path` when given, else the built-in default.
pub fn load_rules(path: Option<&std::path::Path>) -> Result<RuleSet, followup_rules::RuleError> {
    match path {
        Some(path) => RuleSet::load(path),
        None => Ok(RuleSet::builtin()),
    }
}
