//! `followupctl replay`: a range of an inbound stream (`ESAS_JOBS` or `ESAS_EVENTS`, by
//! sequence or time) handed again to the rule worker or the notifier, in stream order.
//!
//! Their effects are exactly once (guarantee 3: follow-up, notification and event ids are
//! derived from the CloudEvent's `source#id`), so a replay creates only what is missing: over
//! an intact event store it changes nothing, into an empty one it creates the same
//! follow-ups again.
//!
//! The messages are read with a pull consumer of the replay's own, created for it (deleted at
//! the end, and by the server after 5 minutes without use should the tool die), from the
//! first message of the range; the live consumers of the service are not touched. The worker
//! used is the service's own (`handle`), built with a consumer name of the replay's own,
//! whose (idle) durable consumers are deleted at the end as well.

use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::consumer::pull::Config;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy};
use async_nats::jetstream::message::Message;
use chrono::{DateTime, Utc};
use clap::{Args, ValueEnum};
use followup_messaging::{JetStream, Streams};
use followup_notifier::{Notifier, NotifierConfig};
use followup_readmodel::ReadModel;
use followup_rule_worker::{RuleWorker, WorkerConfig};
use followup_store::FollowUps;
use futures::StreamExt;
use serde::Serialize;
use uuid::Uuid;

use crate::output::Report;

/// How long the replay's consumer may sit unused before the server removes it.
const INACTIVE_THRESHOLD: Duration = Duration::from_secs(300);

/// How long one fetch waits for messages.
const FETCH_WAIT: Duration = Duration::from_secs(1);

/// The inbound streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
pub enum Inbound {
    /// `ESAS_JOBS`: job outcomes.
    #[value(name = "ESAS_JOBS", alias = "jobs")]
    #[serde(rename = "ESAS_JOBS")]
    Jobs,
    /// `ESAS_EVENTS`: ESAS domain events.
    #[value(name = "ESAS_EVENTS", alias = "events")]
    #[serde(rename = "ESAS_EVENTS")]
    Events,
}

impl Inbound {
    /// The stream's name in `streams`.
    pub fn name(self, streams: &Streams) -> &str {
        match self {
            Inbound::Jobs => &streams.jobs,
            Inbound::Events => &streams.events,
        }
    }
}

/// The role that handles the replayed messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Through {
    /// Exceptions and tasks by the rules.
    RuleWorker,
    /// Notifications for subscribers (ESAS_EVENTS only).
    Notifier,
}

/// Settings of `replay`.
#[derive(Debug, Clone, Args)]
pub struct ReplayArgs {
    /// The inbound stream.
    #[arg(long, value_enum)]
    pub stream: Inbound,
    /// The role the messages go through.
    #[arg(long, value_enum, default_value = "rule-worker")]
    pub through: Through,
    /// The first stream sequence of the range (default: the stream's first message).
    #[arg(long, conflicts_with = "since")]
    pub from_seq: Option<u64>,
    /// The last stream sequence of the range (default: the stream's last message now).
    #[arg(long)]
    pub to_seq: Option<u64>,
    /// The range starts with the first message stored at or after this time (RFC 3339).
    #[arg(long)]
    pub since: Option<DateTime<Utc>>,
    /// The range ends with the last message stored before this time (RFC 3339).
    #[arg(long)]
    pub until: Option<DateTime<Utc>>,
    /// Messages handed to the worker at once.
    #[arg(long, default_value_t = 500)]
    pub batch: usize,
    /// The rules file for the rule worker (as `FOLLOWUP_RULES`; the built-in rules when unset).
    #[arg(long, env = "FOLLOWUP_RULES")]
    pub rules: Option<std::path::PathBuf>,
}

/// What a replay did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReplayReport {
    /// The stream replayed.
    pub stream: String,
    /// The role that handled it.
    pub through: String,
    /// The first and last sequence handed over (`None` when the range was empty).
    pub first_sequence: Option<u64>,
    /// The last sequence handed over.
    pub last_sequence: Option<u64>,
    /// Messages handed over.
    pub messages: usize,
    /// Events the event store gained while the replay ran: what was missing and is created
    /// now (plus whatever the service appended meanwhile).
    pub events_appended: i64,
    /// Messages the worker handled as not done before (their effects were created now, or
    /// turned out to be nothing, such as a success with no exception to resolve).
    pub applied: usize,
    /// Messages whose effects were all stored already.
    pub already_done: usize,
    /// Messages that cause nothing (another role's, no effect).
    pub ignored: usize,
    /// Messages that went to the dead-letter stream.
    pub dead_lettered: usize,
    /// Messages that failed for a transient reason (the database is away): replay again.
    pub retried: usize,
    /// Notifications created (notifier).
    pub notifications: usize,
}

impl Report for ReplayReport {
    fn human(&self) -> String {
        let range = match (self.first_sequence, self.last_sequence) {
            (Some(first), Some(last)) => format!("sequences {first} to {last}"),
            _ => "an empty range".into(),
        };
        let mut out = format!(
            "replayed {} messages of {} ({range}) through the {}: {} events appended \
             (what was missing); {} messages handled anew, {} found done already, {} ignored, \
             {} dead-lettered",
            self.messages,
            self.stream,
            self.through,
            self.events_appended,
            self.applied,
            self.already_done,
            self.ignored,
            self.dead_lettered
        );
        if self.through == "notifier" {
            out.push_str(&format!(", {} notifications created", self.notifications));
        }
        if self.retried > 0 {
            out.push_str(&format!(
                "\n{} messages could not be handled now (database unavailable): replay the range again",
                self.retried
            ));
        }
        out
    }
}

/// The worker the messages go through.
enum Worker {
    Rules(Box<RuleWorker>),
    Notifier(Box<Notifier>),
}

/// Replays the range `args` names through its role; `followups` and `read_model` are the
/// service's database.
pub async fn run(
    args: &ReplayArgs,
    js: &JetStream,
    streams: &Streams,
    followups: FollowUps,
    read_model: ReadModel,
) -> anyhow::Result<ReplayReport> {
    anyhow::ensure!(
        !(args.through == Through::Notifier && args.stream == Inbound::Jobs),
        "the notifier consumes {} only; replay {} through the rule worker",
        streams.events,
        streams.jobs
    );
    let stream_name = args.stream.name(streams).to_owned();
    let stream = js
        .get_stream(&stream_name)
        .await
        .with_context(|| format!("JetStream stream {stream_name} cannot be read"))?;
    let info = stream.get_info().await?;
    let mut report = ReplayReport {
        stream: stream_name.clone(),
        through: match args.through {
            Through::RuleWorker => "rule worker".into(),
            Through::Notifier => "notifier".into(),
        },
        ..ReplayReport::default()
    };
    let last = args
        .to_seq
        .unwrap_or(info.state.last_sequence)
        .min(info.state.last_sequence);
    if info.state.messages == 0 || args.from_seq.is_some_and(|from| from > last) {
        return Ok(report);
    }
    let deliver_policy = match (args.from_seq, args.since) {
        (Some(start_sequence), _) => DeliverPolicy::ByStartSequence { start_sequence },
        (None, Some(since)) => DeliverPolicy::ByStartTime {
            start_time: time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(
                since
                    .timestamp_nanos_opt()
                    .context("--since is out of range")?,
            ))?,
        },
        (None, None) => DeliverPolicy::All,
    };
    let name = format!("followupctl-replay-{}", Uuid::new_v4().simple());
    let followups_store = followups.store().clone();
    let worker = match args.through {
        Through::RuleWorker => {
            let rules = followup_rule_worker::load_rules(args.rules.as_deref())
                .context("loading the rules (FOLLOWUP_RULES)")?;
            Worker::Rules(Box::new(
                RuleWorker::new(
                    js.clone(),
                    followups,
                    rules,
                    WorkerConfig {
                        streams: streams.clone(),
                        durable_name: name.clone(),
                        batch_size: args.batch,
                        ..WorkerConfig::default()
                    },
                )
                .await?,
            ))
        }
        Through::Notifier => Worker::Notifier(Box::new(
            Notifier::new(
                js.clone(),
                followups,
                read_model,
                NotifierConfig {
                    streams: streams.clone(),
                    durable_name: name.clone(),
                    batch_size: args.batch,
                    ..NotifierConfig::default()
                },
            )
            .await?,
        )),
    };
    let consumer = stream
        .create_consumer(Config {
            name: Some(format!("{name}-reader")),
            description: Some("followupctl replay".into()),
            deliver_policy,
            ack_policy: AckPolicy::Explicit,
            ack_wait: Duration::from_secs(300),
            max_ack_pending: (args.batch * 2) as i64,
            inactive_threshold: INACTIVE_THRESHOLD,
            ..Default::default()
        })
        .await
        .context("creating the replay's consumer")?;
    let (_, events_before) = followups_store.head().await?;
    let replayed = replay(&consumer, &worker, args, last, &mut report).await;
    let (_, events_after) = followups_store.head().await?;
    report.events_appended = events_after - events_before;
    // The worker's own (idle) durable consumers, and the reader.
    let mut names = vec![format!("{name}-reader")];
    names.push(name.clone());
    for (stream_name, consumer_name) in [streams.jobs.as_str(), streams.events.as_str()]
        .into_iter()
        .flat_map(|s| names.iter().map(move |n| (s, n.as_str())))
    {
        if let Ok(stream) = js.get_stream(stream_name).await {
            let _ = stream.delete_consumer(consumer_name).await;
        }
    }
    replayed?;
    Ok(report)
}

async fn replay(
    consumer: &async_nats::jetstream::consumer::PullConsumer,
    worker: &Worker,
    args: &ReplayArgs,
    last: u64,
    report: &mut ReplayReport,
) -> anyhow::Result<()> {
    let until = args
        .until
        .map(|t| t.timestamp_nanos_opt().map(i128::from))
        .map(|t| t.context("--until is out of range"))
        .transpose()?;
    loop {
        let mut batch = consumer
            .fetch()
            .max_messages(args.batch)
            .expires(FETCH_WAIT)
            .messages()
            .await
            .context("fetching messages to replay")?;
        let mut in_range: Vec<Message> = Vec::new();
        let mut past_the_end = false;
        let mut drained = true;
        while let Some(message) = batch.next().await {
            let message =
                message.map_err(|e| anyhow::anyhow!("fetching messages to replay: {e}"))?;
            let info = message.info().map_err(|e| anyhow::anyhow!("{e}"))?;
            let (sequence, published, pending) = (
                info.stream_sequence,
                info.published.unix_timestamp_nanos(),
                info.pending,
            );
            if sequence > last || until.is_some_and(|until| published >= until) {
                past_the_end = true;
                continue;
            }
            drained = pending == 0;
            report.first_sequence.get_or_insert(sequence);
            report.last_sequence = Some(sequence);
            in_range.push(message);
        }
        if !in_range.is_empty() {
            report.messages += in_range.len();
            match worker {
                Worker::Rules(worker) => {
                    let r = worker.handle(in_range).await;
                    report.applied += r.applied;
                    report.already_done += r.duplicates;
                    report.ignored += r.ignored;
                    report.dead_lettered += r.dead_lettered;
                    report.retried += r.retried;
                }
                Worker::Notifier(notifier) => {
                    let r = notifier.handle(in_range).await;
                    report.applied += r.applied;
                    report.ignored += r.ignored;
                    report.dead_lettered += r.dead_lettered;
                    report.retried += r.retried;
                    report.notifications += r.notifications;
                }
            }
        } else if drained {
            // Nothing more was delivered within the wait, and the last message said none
            // were pending.
            return Ok(());
        }
        if past_the_end || report.last_sequence.is_some_and(|seq| seq >= last) {
            return Ok(());
        }
    }
}
