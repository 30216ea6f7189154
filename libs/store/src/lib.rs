//! Persistence of follow-ups: an append-only event store on PostgreSQL and the follow-up
//! repository that runs domain commands against it.
//!
//! The store keeps the guarantees of the design (section 8):
//! 1. append-only: the database refuses UPDATE, DELETE and TRUNCATE on `events` (a trigger);
//! 2. optimistic concurrency: every append names the version it expects;
//! 3. idempotent appends: an event id that is already stored is reported, never stored twice,
//!    which is what makes redelivered inbound messages harmless;
//! 4. gap-free reading: [`EventStore::read_all`] never skips an event whose transaction
//!    commits after a later position was already read.
//!
//! # Layout
//! - [`event_store`]: the generic store: [`EventStore`], appends, reads, [`Checkpoint`].
//! - [`tail`]: a live reader that wakes on LISTEN/NOTIFY and polls as a safety net.
//! - [`followups`]: the follow-up repository: load a follow-up, run a command, append the
//!   resulting events (with retries on conflict and deterministic event ids for exactly-once).
//! - [`subscriptions`]: the same for subscriptions, which are aggregates of their own.
//! - [`MIGRATOR`]: the migrations in `migrations/`, embedded once, for every binary and test.

pub mod event_store;
pub mod followups;
pub mod subscriptions;
pub mod tail;

pub use event_store::{
    AppendError, Appended, Checkpoint, EventStore, ExpectedVersion, Metadata, NewEvent,
    RecordedEvent, StoreError, StoredRef, StreamAppend, Upcaster,
};
pub use followups::{CommandMeta, Expect, FollowUpUpcaster, FollowUps, Outcome, RepoError};
pub use subscriptions::{SubscriptionRepoError, Subscriptions};
pub use tail::Tail;

/// The schema migrations of the whole service, embedded from the workspace's `migrations/`.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");
