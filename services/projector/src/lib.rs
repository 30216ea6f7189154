//! The projector role (`followupd projector`): follows the event store with a live tail
//! from the durable checkpoint and hands each batch to the read model's [`Projection`],
//! which writes the rows and the checkpoint in one transaction. Several projectors may run;
//! `followupd` keeps one active (a leader lock) and the others standing by.
//!
//! # Layout
//! - [`run`]: the live loop, until shutdown; a failure is logged and the loop resumes from
//!   the durable checkpoint after a growing pause.
//! - [`watch_hold_back`]: beside it, names the transaction that holds the projector back
//!   (a warning once it lasts, and metrics), and says when it has ended.

use std::time::Duration;

use followup_platform::retry::{pause, Backoff};
use followup_readmodel::{Projection, ProjectorError, Step};
use followup_store::{HoldBack, Tail};
use tokio_util::sync::CancellationToken;

/// The wait after failures in a row: from half a second, doubling, up to 30 s.
const BACKOFF: Backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));

/// Runs until `shutdown`: follows the store from the durable checkpoint and projects each
/// batch as it comes. A failure is logged and retried from the durable checkpoint after a
/// growing pause. A batch being written when `shutdown` comes is finished first.
pub async fn run(projection: Projection, shutdown: CancellationToken) {
    tracing::info!(projection = projection.name(), "projector started");
    let mut failures: u32 = 0;
    loop {
        let error = match follow(&projection, &shutdown, &mut failures).await {
            Ok(()) => break,
            Err(error) => error,
        };
        failures = failures.saturating_add(1);
        let delay = BACKOFF.delay(failures);
        tracing::warn!(
            error.message = %error,
            error.transient = error.is_transient(),
            retry.in_ms = delay.as_millis() as u64,
            projection = projection.name(),
            "projector failed; it resumes from its checkpoint"
        );
        if pause(&shutdown, delay).await {
            break;
        }
    }
    tracing::info!(projection = projection.name(), "projector stopped");
}

/// The live loop of [`run`]: returns `Ok` on shutdown, `Err` on a failure.
async fn follow(
    projection: &Projection,
    shutdown: &CancellationToken,
    failures: &mut u32,
) -> Result<(), ProjectorError> {
    loop {
        let mut start = projection.checkpoint().await?;
        let mut tail =
            Tail::new(projection.store().clone(), start).batch_size(projection.batch_limit());
        loop {
            let Some(events) = tail.next_batch(shutdown).await? else {
                return Ok(());
            };
            match projection.project(start, events).await? {
                Step::Projected(projected) => {
                    *failures = 0;
                    start = tail.checkpoint();
                    tracing::debug!(events = projected, "projected follow-up events");
                }
                // Start a new tail from where the checkpoint now is.
                Step::Reset => break,
            }
        }
    }
}

/// How often [`watch_hold_back`] looks.
const HOLD_BACK_CHECK: Duration = Duration::from_secs(2);

/// Runs until `shutdown`: every two seconds, records in the metrics how many committed
/// events a running transaction holds back from every reader of the store, and logs a
/// warning naming that transaction (pid, database, user, state, age) once the events have
/// waited `warn_after`; then one line when it is over. Once per holder, not per check.
pub async fn watch_hold_back(
    pool: sqlx::PgPool,
    warn_after: Duration,
    shutdown: CancellationToken,
) {
    // The holder warned about, while it still holds (`None` for a holder nobody may see).
    let mut warned: Option<Option<i32>> = None;
    loop {
        match HoldBack::find(&pool).await {
            Ok(held_back) => {
                followup_store::hold_back::record_metrics(held_back.as_ref());
                let pid = held_back.as_ref().map(|h| h.holder.as_ref().map(|h| h.pid));
                match &held_back {
                    Some(h) if h.oldest_event_seconds >= warn_after.as_secs_f64() => {
                        if warned != pid {
                            let holder = h.holder.as_ref();
                            tracing::warn!(
                                held_back.events = h.events,
                                held_back.seconds = h.oldest_event_seconds,
                                holder.pid = holder.map(|h| h.pid),
                                holder.database = holder.and_then(|h| h.database.as_deref()),
                                holder.user = holder.and_then(|h| h.user.as_deref()),
                                holder.application = holder.and_then(|h| h.application.as_deref()),
                                holder.state = holder.and_then(|h| h.state.as_deref()),
                                holder.transaction_seconds = holder.and_then(|h| h.transaction_seconds),
                                "a running transaction holds back every reader of the event store: \
                                 the read model, the relay and the live stream trail until it ends \
                                 (docs/operations.md \"Held back\")"
                            );
                            warned = pid;
                        }
                    }
                    Some(_) => {}
                    None => {
                        if let Some(pid) = warned.take() {
                            tracing::info!(
                                holder.pid = pid,
                                "the event store's readers are no longer held back"
                            );
                        }
                    }
                }
            }
            // The database is away: the projector's own loop says so.
            Err(error) => tracing::debug!(error.message = %error, "cannot check for a hold-back"),
        }
        if pause(&shutdown, HOLD_BACK_CHECK).await {
            return;
        }
    }
}
