//! Notifications made by the system, shared by the roles that make them: the notifier (an
//! ESAS event for its subscribers) and the scheduler (reminders, overdue notices, digests).
//!
//! # Layout
//! - [`text`]: what a notification about an ESAS event says, in Danish; Danish dates.
//! - [`digest`]: the daily digest's entries and [`build_digests`].
//! - [`create_notifications`]: stores new notifications exactly once through the store's
//!   executor and writes them through to the inbox.

pub mod digest;
pub mod text;

use std::collections::HashSet;

use followup_domain::{Command, Context, FollowUp, NewFollowUp};
use followup_readmodel::ReadModel;
use followup_store::{Change, CommandMeta, FollowUps, RepoError, Unit, UnitOutcome};
use futures::StreamExt;

pub use digest::{build_digests, digest_id, DigestDay};
pub use text::danish_date;

/// How many notifications one append holds.
const CHUNK: usize = 500;

/// How many chunks are stored at once (each on its own connection).
const CHUNKS_AT_ONCE: usize = 3;

/// Why notifications could not be stored (worth retrying later).
#[derive(Debug, thiserror::Error)]
pub enum NotificationError {
    /// The executor failed (the database is away, or another creator kept getting in).
    #[error(transparent)]
    Store(#[from] RepoError),
    /// A query of the digest entries failed.
    #[error("digest entries: {0}")]
    Query(#[from] sqlx::Error),
    /// Other creators kept creating the same notifications at the same time.
    #[error("notifications kept conflicting with another creator")]
    Contended,
}

/// What [`create_notifications`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Created {
    /// Notifications created now.
    pub created: usize,
    /// Notifications that were stored already (an earlier delivery, another notifier or
    /// scheduler): found, not doubled.
    pub already_stored: usize,
}

/// Creates each of `new` that is not stored yet, exactly once, decided in `ctx`: their event
/// ids derive from `meta`'s idempotency key, so the executor skips stored ones, and a
/// concurrent creator makes it decide again. Each chunk is written through to the read model
/// once stored (into the inbox at once; the projector writes the same rows again,
/// harmlessly), with a few chunks in flight so that the two kinds of writes overlap.
pub async fn create_notifications(
    followups: &FollowUps,
    read_model: &ReadModel,
    mut new: Vec<NewFollowUp>,
    ctx: &Context,
    meta: &CommandMeta,
) -> Result<Created, NotificationError> {
    assert!(
        meta.idempotency_key.is_some(),
        "system-created follow-ups carry an idempotency key"
    );
    let mut seen = HashSet::new();
    new.retain(|n| seen.insert(n.id));
    let started = std::time::Instant::now();
    let chunks: Vec<Vec<NewFollowUp>> = new.chunks(CHUNK).map(<[_]>::to_vec).collect();
    let results: Vec<Result<Created, NotificationError>> = futures::stream::iter(chunks)
        .map(|chunk| create_chunk(followups, read_model, chunk, ctx, meta))
        .buffer_unordered(CHUNKS_AT_ONCE)
        .collect()
        .await;
    let mut total = Created::default();
    for result in results {
        let done = result?;
        total.created += done.created;
        total.already_stored += done.already_stored;
    }
    tracing::debug!(
        notifications = total.created,
        elapsed.ms = started.elapsed().as_millis() as u64,
        "notifications stored and written through"
    );
    Ok(total)
}

async fn create_chunk(
    followups: &FollowUps,
    read_model: &ReadModel,
    chunk: Vec<NewFollowUp>,
    ctx: &Context,
    meta: &CommandMeta,
) -> Result<Created, NotificationError> {
    let ids = chunk.iter().map(|n| n.id).collect();
    let batch = followups
        .execute_units(ids, |_| {
            chunk
                .iter()
                .map(|n| Unit {
                    changes: vec![Change::commands(n.id, vec![Command::Create(n.clone())])],
                    ctx: ctx.clone(),
                    meta: meta.clone(),
                    all_or_nothing: true,
                })
                .collect()
        })
        .await?;
    let mut created = Created::default();
    for (n, outcome) in chunk.iter().zip(&batch.units) {
        match outcome {
            UnitOutcome::Applied => created.created += 1,
            UnitOutcome::Contended => return Err(NotificationError::Contended),
            UnitOutcome::Refused | UnitOutcome::Unchanged => {
                // Its id is taken by something else: nothing to create, and nothing to retry.
                tracing::error!(followup.id = %n.id, "system-created follow-up refused");
                created.already_stored += 1;
            }
            UnitOutcome::AlreadyStored | UnitOutcome::Duplicate => created.already_stored += 1,
        }
    }
    let written: Vec<FollowUp> = batch.written;
    if let Err(error) = read_model.upsert(&written).await {
        // Not the caller's failure: the projector catches up.
        tracing::warn!(error.message = %error, "notification write-through failed; the projector will catch up");
    }
    Ok(created)
}
