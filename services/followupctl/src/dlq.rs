//! `followupctl dlq`: the dead letters on `FOLLOWUPS_DLQ` (messages the workers could never
//! process, kept unchanged with the reason in headers): list them with their reasons, show
//! one, redrive one or all after a rules fix, purge them.
//!
//! A redrive republishes the original payload, with its original headers, on its original
//! subject, under a new `Nats-Msg-Id` (the original one may still be within JetStream's
//! duplicate window, which would drop it), and deletes the dead letter once the publish is
//! acknowledged. The new id is derived from the dead letter's sequence, so redriving it again
//! after a failure in between is dropped as a duplicate; the worker's own exactly-once makes
//! even a later repeat harmless.

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::consumer::pull::Config;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy};
use async_nats::jetstream::stream::Stream;
use async_nats::HeaderMap;
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use followup_messaging::dead_letter::{
    REASON, REASON_CODE, SOURCE_SEQUENCE, SOURCE_STREAM, SOURCE_SUBJECT,
};
use followup_messaging::{publish_event, JetStream, Streams};
use futures::StreamExt;
use serde::Serialize;

use crate::output::Report;

/// The header that keeps a dead letter's original `Nats-Msg-Id`.
const ORIGINAL_MSG_ID: &str = "Followup-Dlq-Original-Msg-Id";

/// What to do with dead letters.
#[derive(Debug, Clone, Subcommand)]
pub enum DlqCmd {
    /// Lists dead letters, oldest first, with where they came from and why.
    ///
    /// Example: followupctl dlq list --stream ESAS_JOBS --limit 20
    List(ListArgs),
    /// Shows one dead letter: its headers and its payload.
    ///
    /// Example: followupctl dlq show 42
    Show(ShowArgs),
    /// Republishes dead letters on their original subjects (after a rules fix) and removes
    /// them from the dead-letter stream.
    ///
    /// Example: followupctl dlq redrive 42   or   followupctl dlq redrive --all --code unknown_type
    Redrive(RedriveArgs),
    /// Deletes dead letters for good, after a confirmation (or `--yes`).
    ///
    /// Example: followupctl dlq purge --stream ESAS_JOBS --yes
    Purge(PurgeArgs),
}

/// Which dead letters.
#[derive(Debug, Clone, Default, Args)]
pub struct Filter {
    /// Only those from this source stream (`ESAS_JOBS`, `ESAS_EVENTS`).
    #[arg(long)]
    pub stream: Option<String>,
    /// Only those with this reason code (`invalid_json`, `unknown_type`, …).
    #[arg(long)]
    pub code: Option<String>,
}

/// Settings of `dlq list`.
#[derive(Debug, Clone, Args)]
pub struct ListArgs {
    /// Which ones.
    #[command(flatten)]
    pub filter: Filter,
    /// At most this many.
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
}

/// Settings of `dlq show`.
#[derive(Debug, Clone, Args)]
pub struct ShowArgs {
    /// The dead letter's sequence in the dead-letter stream (as `dlq list` shows it).
    pub sequence: u64,
}

/// Settings of `dlq redrive`.
#[derive(Debug, Clone, Args)]
#[command(group = clap::ArgGroup::new("which").required(true).args(["sequence", "all"]))]
pub struct RedriveArgs {
    /// The dead letter's sequence.
    pub sequence: Option<u64>,
    /// Every dead letter (that the filter lets through).
    #[arg(long)]
    pub all: bool,
    /// Which ones, with `--all`.
    #[command(flatten)]
    pub filter: Filter,
}

/// Settings of `dlq purge`.
#[derive(Debug, Clone, Args)]
pub struct PurgeArgs {
    /// Only those from this source stream (`ESAS_JOBS`, `ESAS_EVENTS`); all when absent.
    #[arg(long)]
    pub stream: Option<String>,
    /// Purge without asking.
    #[arg(long)]
    pub yes: bool,
}

/// One dead letter.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetterView {
    /// Its sequence in the dead-letter stream.
    pub sequence: u64,
    /// When it was dead-lettered.
    pub dead_lettered_at: DateTime<Utc>,
    /// Why (`Followup-Dlq-Code`).
    pub code: Option<String>,
    /// Why, for people (`Followup-Dlq-Reason`).
    pub reason: Option<String>,
    /// The stream it came from.
    pub source_stream: Option<String>,
    /// Its sequence there.
    pub source_sequence: Option<u64>,
    /// The subject it arrived on (and is redriven to).
    pub source_subject: Option<String>,
    /// Its original `Nats-Msg-Id`.
    pub original_msg_id: Option<String>,
    /// Its size in bytes.
    pub size: usize,
    /// The payload, when asked for (`show`): JSON when it parses, else text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<serde_json::Value>,
    /// Every header, when asked for (`show`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub headers: Option<Vec<(String, String)>>,
}

impl DeadLetterView {
    fn line(&self) -> String {
        format!(
            "#{:<6} {}  {:<16} from {}#{} ({})\n        {}",
            self.sequence,
            self.dead_lettered_at.format("%Y-%m-%d %H:%M:%S UTC"),
            self.code.as_deref().unwrap_or("?"),
            self.source_stream.as_deref().unwrap_or("?"),
            self.source_sequence
                .map_or_else(|| "?".to_owned(), |s| s.to_string()),
            self.source_subject.as_deref().unwrap_or("?"),
            self.reason.as_deref().unwrap_or("(no reason recorded)")
        )
    }
}

/// `dlq list`.
#[derive(Debug, Clone, Serialize)]
pub struct ListReport {
    /// The dead letters shown.
    pub dead_letters: Vec<DeadLetterView>,
    /// How many match in all (more than shown when the limit cut the list).
    pub matching: usize,
}

impl Report for ListReport {
    fn human(&self) -> String {
        if self.matching == 0 {
            return "no dead letters".into();
        }
        let mut out = String::new();
        for d in &self.dead_letters {
            out.push_str(&d.line());
            out.push('\n');
        }
        out.push_str(&format!(
            "{} dead letter(s){}",
            self.matching,
            if self.matching > self.dead_letters.len() {
                format!(", {} shown", self.dead_letters.len())
            } else {
                String::new()
            }
        ));
        out
    }
}

impl Report for DeadLetterView {
    fn human(&self) -> String {
        let mut out = self.line();
        out.push_str("\nheaders:\n");
        for (name, value) in self.headers.iter().flatten() {
            out.push_str(&format!("  {name}: {value}\n"));
        }
        out.push_str("payload:\n");
        if let Some(payload) = &self.payload {
            match payload {
                serde_json::Value::String(text) => out.push_str(text),
                other => out.push_str(
                    &serde_json::to_string_pretty(other).unwrap_or_else(|_| other.to_string()),
                ),
            }
        }
        out
    }
}

/// `dlq redrive`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RedriveReport {
    /// Republished and removed: (dead letter's sequence, subject, new stream sequence).
    pub redriven: Vec<(u64, String, u64)>,
    /// Not redriven, with why.
    pub failed: Vec<(u64, String)>,
}

impl Report for RedriveReport {
    fn human(&self) -> String {
        let mut out = String::new();
        for (sequence, subject, new) in &self.redriven {
            out.push_str(&format!(
                "#{sequence} republished on {subject} (stream sequence {new}) and removed\n"
            ));
        }
        for (sequence, why) in &self.failed {
            out.push_str(&format!("#{sequence} NOT redriven: {why}\n"));
        }
        out.push_str(&format!(
            "{} redriven, {} failed",
            self.redriven.len(),
            self.failed.len()
        ));
        out
    }
}

/// `dlq purge`.
#[derive(Debug, Clone, Serialize)]
pub struct PurgeReport {
    /// Dead letters deleted.
    pub purged: u64,
    /// The subject purged (`followups.dlq.>` for all).
    pub subject: String,
}

impl Report for PurgeReport {
    fn human(&self) -> String {
        format!("purged {} dead letter(s) ({})", self.purged, self.subject)
    }
}

async fn dlq_stream(js: &JetStream, streams: &Streams) -> anyhow::Result<Stream> {
    js.get_stream(&streams.dead_letters).await.with_context(|| {
        format!(
            "the dead-letter stream {} cannot be read (has followupd started once?)",
            streams.dead_letters
        )
    })
}

fn subject_of(stream: Option<&str>) -> String {
    match stream {
        Some(stream) => format!("followups.dlq.{stream}"),
        None => "followups.dlq.>".into(),
    }
}

/// Every dead letter the filter lets through, oldest first, up to `limit`, and how many match.
pub async fn list(
    js: &JetStream,
    streams: &Streams,
    filter: &Filter,
    limit: usize,
) -> anyhow::Result<ListReport> {
    let all = read_all(js, streams, filter).await?;
    let matching = all.len();
    Ok(ListReport {
        dead_letters: all.into_iter().take(limit).collect(),
        matching,
    })
}

/// One dead letter with headers and payload.
pub async fn show(
    js: &JetStream,
    streams: &Streams,
    sequence: u64,
) -> anyhow::Result<DeadLetterView> {
    let stream = dlq_stream(js, streams).await?;
    let message = stream
        .get_raw_message(sequence)
        .await
        .with_context(|| format!("no dead letter #{sequence} in {}", streams.dead_letters))?;
    Ok(view(
        message.sequence,
        message.time,
        &message.headers,
        &message.payload,
        true,
    ))
}

/// Redrives dead letter `sequence`, or every one the filter lets through.
pub async fn redrive(
    js: &JetStream,
    streams: &Streams,
    args: &RedriveArgs,
) -> anyhow::Result<RedriveReport> {
    let stream = dlq_stream(js, streams).await?;
    let sequences: Vec<u64> = match args.sequence {
        Some(sequence) => vec![sequence],
        None => read_all(js, streams, &args.filter)
            .await?
            .into_iter()
            .map(|view| view.sequence)
            .collect(),
    };
    let mut report = RedriveReport::default();
    for sequence in sequences {
        match redrive_one(js, &stream, sequence).await {
            Ok((subject, new)) => report.redriven.push((sequence, subject, new)),
            Err(error) => {
                tracing::warn!(dead_letter.sequence = sequence, error.message = %format!("{error:#}"), "dead letter not redriven");
                report.failed.push((sequence, format!("{error:#}")));
            }
        }
    }
    Ok(report)
}

async fn redrive_one(
    js: &JetStream,
    stream: &Stream,
    sequence: u64,
) -> anyhow::Result<(String, u64)> {
    let message = stream
        .get_raw_message(sequence)
        .await
        .with_context(|| format!("no dead letter #{sequence}"))?;
    let subject = header(&message.headers, SOURCE_SUBJECT)
        .context("the dead letter does not say which subject it came from")?;
    let mut headers = HeaderMap::new();
    for (name, values) in message.headers.iter() {
        let name_text: &str = name.as_ref();
        if name_text.starts_with("Followup-Dlq-")
            || name_text == AsRef::<str>::as_ref(&async_nats::header::NATS_MESSAGE_ID)
        {
            continue;
        }
        for value in values {
            headers.append(name.clone(), value.clone());
        }
    }
    let (new_sequence, _) = publish_event(
        js,
        subject.clone(),
        &format!("followupctl-redrive-{sequence}"),
        headers,
        message.payload.clone(),
    )
    .await?;
    stream.delete_message(sequence).await.with_context(|| {
        format!("republished, but dead letter #{sequence} could not be removed")
    })?;
    Ok((subject, new_sequence))
}

/// Purges the dead letters of `args.stream` (all when `None`). Without `args.yes` it asks on
/// the terminal, and refuses when there is none to ask on.
pub async fn purge(
    js: &JetStream,
    streams: &Streams,
    args: &PurgeArgs,
) -> anyhow::Result<PurgeReport> {
    let stream = dlq_stream(js, streams).await?;
    let subject = subject_of(args.stream.as_deref());
    if !args.yes {
        let count = read_all(
            js,
            streams,
            &Filter {
                stream: args.stream.clone(),
                code: None,
            },
        )
        .await?
        .len();
        anyhow::ensure!(
            std::io::stdin().is_terminal(),
            "refusing to purge {count} dead letter(s) without confirmation: pass --yes"
        );
        eprint!(
            "Delete {count} dead letter(s) on {subject} from {} for good? Type yes to confirm: ",
            streams.dead_letters
        );
        std::io::stderr().flush()?;
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        anyhow::ensure!(answer.trim() == "yes", "not purged");
    }
    let response = match &args.stream {
        Some(_) => stream.purge().filter(subject.clone()).await,
        None => stream.purge().await,
    }
    .map_err(|e| anyhow::anyhow!("purging {subject} failed: {e}"))?;
    Ok(PurgeReport {
        purged: response.purged,
        subject,
    })
}

/// Every dead letter on the filter's subject, oldest first (through a consumer of its own,
/// without acks, removed by the server shortly after).
async fn read_all(
    js: &JetStream,
    streams: &Streams,
    filter: &Filter,
) -> anyhow::Result<Vec<DeadLetterView>> {
    let stream = dlq_stream(js, streams).await?;
    let info = stream.get_info().await?;
    let mut found = Vec::new();
    if info.state.messages == 0 {
        return Ok(found);
    }
    let last = info.state.last_sequence;
    let consumer = stream
        .create_consumer(Config {
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::None,
            filter_subject: subject_of(filter.stream.as_deref()),
            inactive_threshold: Duration::from_secs(30),
            ..Default::default()
        })
        .await
        .context("reading the dead-letter stream")?;
    'fetching: loop {
        let mut batch = consumer
            .fetch()
            .max_messages(500)
            .expires(Duration::from_millis(500))
            .messages()
            .await
            .context("reading the dead-letter stream")?;
        let mut got = 0;
        while let Some(message) = batch.next().await {
            let message =
                message.map_err(|e| anyhow::anyhow!("reading the dead-letter stream: {e}"))?;
            got += 1;
            let info = message.info().map_err(|e| anyhow::anyhow!("{e}"))?;
            let (sequence, published, pending) =
                (info.stream_sequence, info.published, info.pending);
            let headers = message.headers.clone().unwrap_or_default();
            let view = view(sequence, published, &headers, &message.payload, false);
            if filter
                .code
                .as_deref()
                .is_none_or(|code| view.code.as_deref() == Some(code))
            {
                found.push(view);
            }
            if pending == 0 || sequence >= last {
                break 'fetching;
            }
        }
        if got == 0 {
            break;
        }
    }
    Ok(found)
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name).map(|v| v.as_str().to_owned())
}

fn view(
    sequence: u64,
    time: time::OffsetDateTime,
    headers: &HeaderMap,
    payload: &[u8],
    full: bool,
) -> DeadLetterView {
    let at = DateTime::<Utc>::from_timestamp_nanos(
        i64::try_from(time.unix_timestamp_nanos()).unwrap_or(i64::MAX),
    );
    DeadLetterView {
        sequence,
        dead_lettered_at: at,
        code: header(headers, REASON_CODE),
        reason: header(headers, REASON),
        source_stream: header(headers, SOURCE_STREAM),
        source_sequence: header(headers, SOURCE_SEQUENCE).and_then(|s| s.parse().ok()),
        source_subject: header(headers, SOURCE_SUBJECT),
        original_msg_id: header(headers, ORIGINAL_MSG_ID),
        size: payload.len(),
        payload: full.then(|| {
            serde_json::from_slice(payload).unwrap_or_else(|_| {
                serde_json::Value::String(String::from_utf8_lossy(payload).into_owned())
            })
        }),
        headers: full.then(|| {
            headers
                .iter()
                .flat_map(|(name, values)| {
                    values
                        .iter()
                        .map(move |v| (name.to_string(), v.as_str().to_owned()))
                })
                .collect()
        }),
    }
}
