//! The projector role (`followupd projector`): follows the event store with a live tail
//! from the durable checkpoint and hands each batch to the read model's [`Projection`],
//! which writes the rows and the checkpoint in one transaction. Several projectors may run;
//! `followupd` keeps one active (a leader lock) and the others standing by.
//!
//! # Layout
//! - [`run`]: the live loop, until shutdown; a failure is logged and the loop resumes from
//!   the durable checkpoint after a growing pause.

use std::time::Duration;

use followup_platform::retry::{pause, Backoff};
use followup_readmodel::{Projection, ProjectorError, Step};
use followup_store::Tail;
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
