//! The one consume loop of the roles that read inbound streams (the rule worker, the
//! notifier): fetch, parse, handle, settle, with back-off when NATS is away and a pause when
//! the database is.
//!
//! A role plugs in a [`Handler`]: `parse` turns a fetched batch into work and settles what
//! parsing can (poison messages dead-lettered with [`crate::reject`], messages that are not
//! its business acked); `handle` does the work and settles the rest (ack when stored, nak for
//! redelivery when the database is away). The loop runs two stages, so that the next batch
//! is fetched and parsed while this one waits for the database, and batches are still
//! handled one after the other, in stream order.

use std::future::Future;
use std::time::Duration;

use async_nats::jetstream::consumer::PullConsumer;
use async_nats::jetstream::message::Message;
use followup_platform::retry::{self, pause};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::consumer;

/// How long a "process what is pending" step waits when nothing is deliverable at once: a
/// message published or nak'ed an instant ago takes a moment to become deliverable.
pub const PENDING_GRACE: Duration = Duration::from_millis(200);

/// How long the loop waits for the first message of a batch when the stream is quiet.
const QUIET_WAIT: Duration = Duration::from_secs(1);

/// How long the loop pauses after a batch whose messages were given back (the database is
/// away), before it fetches the next.
const AFTER_RETRIES: Duration = Duration::from_secs(1);

/// Messages could not be fetched from a consumer.
#[derive(Debug, thiserror::Error)]
#[error("fetching messages from {consumer} failed: {reason}")]
pub struct FetchError {
    /// The consumer's durable name.
    pub consumer: String,
    /// Why.
    pub reason: String,
}

/// What a consuming role does with the messages the loop fetches.
pub trait Handler: Clone + Send + Sync + 'static {
    /// A fetched batch, parsed.
    type Parsed: Send + 'static;
    /// What handling a batch came to (the role's counts).
    type Report: Send;

    /// Parses `messages` and settles those parsing decides (dead letters, messages that are
    /// not this role's business).
    fn parse(&self, messages: Vec<Message>) -> impl Future<Output = Self::Parsed> + Send;
    /// Handles a parsed batch and settles every message parsing left.
    fn handle(&self, parsed: Self::Parsed) -> impl Future<Output = Self::Report> + Send;
    /// True when `report` gave messages back for a transient failure.
    fn retried(report: &Self::Report) -> bool;
    /// Counts `report` in the role's metrics.
    fn record(report: &Self::Report);
}

/// Where a loop reads from, and how much at once.
#[derive(Debug, Clone)]
pub struct Feed {
    /// The durable consumer.
    pub consumer: PullConsumer,
    /// Its name, for logs and errors.
    pub name: String,
    /// The most messages in one batch.
    pub batch_size: usize,
}

impl Feed {
    /// Fetches what is deliverable now (up to a batch), or waits up to `wait` for up to
    /// `then_up_to` messages (see [`consumer::fetch`]).
    pub async fn fetch(
        &self,
        then_up_to: usize,
        wait: Duration,
    ) -> Result<Vec<Message>, FetchError> {
        consumer::fetch(&self.consumer, self.batch_size, then_up_to, wait)
            .await
            .map_err(|reason| FetchError {
                consumer: self.name.clone(),
                reason,
            })
    }
}

/// Handles the messages waiting now, up to a batch: the "process what is pending" step that
/// tests call directly. `None` when nothing was waiting.
pub async fn process_pending<H: Handler>(
    handler: &H,
    source: &Feed,
) -> Result<Option<H::Report>, FetchError> {
    let messages = source.fetch(source.batch_size, PENDING_GRACE).await?;
    if messages.is_empty() {
        return Ok(None);
    }
    let parsed = handler.parse(messages).await;
    let report = handler.handle(parsed).await;
    record::<H>(&report, source);
    Ok(Some(report))
}

/// Runs until `shutdown`: a backlog is handled in full batches; when the stream is quiet, the
/// loop waits for the next message and handles it at once, for low latency. The batch in
/// hand is finished before it returns.
pub async fn run<H: Handler>(handler: H, source: Feed, shutdown: CancellationToken) {
    let (parsed_tx, mut parsed_rx) = mpsc::channel::<H::Parsed>(1);
    let fetcher = {
        let (handler, source, shutdown) = (handler.clone(), source.clone(), shutdown.clone());
        tokio::spawn(async move { fetch_and_parse(&handler, &source, parsed_tx, &shutdown).await })
    };
    while let Some(parsed) = parsed_rx.recv().await {
        let report = handler.handle(parsed).await;
        record::<H>(&report, &source);
        if H::retried(&report) {
            // The database is away: give it a moment before the next batch.
            pause(&shutdown, AFTER_RETRIES).await;
        }
    }
    let _ = fetcher.await;
}

/// Counts a handled batch in the role's metrics, and marks the worker healthy when the batch
/// settled every message (the failure sites mark it failing, with the reason).
fn record<H: Handler>(report: &H::Report, source: &Feed) {
    H::record(report);
    if !H::retried(report) {
        followup_platform::health::succeeded(&source.name);
    }
}

/// The first stage of [`run`]: fetches and parses batches, with back-off while NATS fails.
async fn fetch_and_parse<H: Handler>(
    handler: &H,
    source: &Feed,
    parsed: mpsc::Sender<H::Parsed>,
    shutdown: &CancellationToken,
) {
    let mut failures = 0u32;
    while !shutdown.is_cancelled() {
        let fetched = tokio::select! {
            () = shutdown.cancelled() => return,
            fetched = source.fetch(1, QUIET_WAIT) => fetched,
        };
        match fetched {
            Ok(messages) if messages.is_empty() => failures = 0,
            Ok(messages) => {
                failures = 0;
                if parsed.send(handler.parse(messages).await).await.is_err() {
                    return;
                }
            }
            Err(error) => {
                failures += 1;
                let delay = retry::FETCH.delay(failures);
                tracing::warn!(error.message = %error, consumer = %source.name, retry.in_ms = delay.as_millis() as u64, "cannot fetch messages; retrying");
                pause(shutdown, delay).await;
            }
        }
    }
}
