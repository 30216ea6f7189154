//! A live reader of the whole event store.
//!
//! It reads in the gap-free order of [`EventStore::read_all`], and when it has caught up it
//! waits for the `followup_events` notification that every append sends. Notifications are
//! lost while the listening connection reconnects, so it also polls every `poll_interval`.

use std::time::Duration;

use sqlx::postgres::PgListener;
use tokio_util::sync::CancellationToken;

use crate::event_store::{Checkpoint, EventStore, RecordedEvent, StoreError, CHANNEL};

/// How soon to read again while stored events are held back by an older running transaction.
const HELD_BACK_RETRY: Duration = Duration::from_millis(20);

/// A live, gap-free reader that resumes from a checkpoint.
#[derive(Debug)]
pub struct Tail {
    /// Where events are read from.
    store: EventStore,
    /// The LISTEN connection; `None` until connected, or after it failed (polling goes on).
    listener: Option<PgListener>,
    /// The last event handed out.
    checkpoint: Checkpoint,
    /// The most events one batch holds.
    batch_size: i64,
    /// The safety net: how long to wait without a notification before reading anyway.
    poll_interval: Duration,
}

impl Tail {
    /// A tail that hands out the events after `from`.
    pub fn new(store: EventStore, from: Checkpoint) -> Self {
        Self {
            store,
            listener: None,
            checkpoint: from,
            batch_size: 1000,
            poll_interval: Duration::from_millis(500),
        }
    }

    /// Sets the largest batch [`Tail::next_batch`] returns.
    pub fn batch_size(mut self, batch_size: i64) -> Self {
        self.batch_size = batch_size.max(1);
        self
    }

    /// Sets how often to read when no notification arrives.
    pub fn poll_interval(mut self, poll_interval: Duration) -> Self {
        self.poll_interval = poll_interval;
        self
    }

    /// The checkpoint after the last event handed out.
    pub fn checkpoint(&self) -> Checkpoint {
        self.checkpoint
    }

    /// The next events, waiting until there are some; `None` once `shutdown` is cancelled.
    pub async fn next_batch(
        &mut self,
        shutdown: &CancellationToken,
    ) -> Result<Option<Vec<RecordedEvent>>, StoreError> {
        loop {
            if shutdown.is_cancelled() {
                return Ok(None);
            }
            // Listen before reading, so that an append between the read and the wait still
            // wakes us.
            self.ensure_listening().await;
            let batch = self
                .store
                .read_all(self.checkpoint, self.batch_size)
                .await?;
            if let Some(last) = batch.last() {
                self.checkpoint = last.checkpoint();
                return Ok(Some(batch));
            }
            // Events that are stored but not yet readable (a transaction that started
            // earlier is still running, maybe an unrelated one) send no second notification:
            // look again soon instead of waiting for one.
            let wait_at_most = if self.store.has_unreadable_after(self.checkpoint).await? {
                HELD_BACK_RETRY.min(self.poll_interval)
            } else {
                self.poll_interval
            };
            tokio::select! {
                () = shutdown.cancelled() => return Ok(None),
                () = tokio::time::sleep(wait_at_most) => {}
                woke = wait(self.listener.as_mut()) => {
                    if !woke {
                        self.listener = None;
                    }
                }
            }
        }
    }

    /// Connects the listener if it is not; a failure is logged and polling carries on.
    async fn ensure_listening(&mut self) {
        if self.listener.is_some() {
            return;
        }
        match PgListener::connect_with(self.store.pool()).await {
            Ok(mut listener) => match listener.listen(CHANNEL).await {
                Ok(()) => self.listener = Some(listener),
                Err(error) => {
                    tracing::warn!(error.message = %error, "event tail could not LISTEN; polling")
                }
            },
            Err(error) => {
                tracing::warn!(error.message = %error, "event tail could not connect its listener; polling")
            }
        }
    }
}

/// Waits for a notification; false when the listener broke. Without a listener, never returns.
async fn wait(listener: Option<&mut PgListener>) -> bool {
    match listener {
        Some(l) => {
            let woke = l.try_recv().await;
            matches!(woke, Ok(Some(_)))
        }
        None => std::future::pending().await,
    }
}
