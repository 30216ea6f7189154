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
//! - [`hold_back`]: committed events readers cannot hand out yet, and the transaction that
//!   holds them ([`HoldBack`]), for readiness, `followupctl inspect store` and warnings.
//! - [`personal_data`]: the personal fields of events, sealed with a key per stream on
//!   append and opened on read, or read as erased once the key is destroyed.
//! - [`tail`]: a live reader that wakes on LISTEN/NOTIFY and polls as a safety net.
//! - [`executor`]: the one command executor, for any [`followup_domain::Aggregate`]: load,
//!   skip what is stored, decide, append at the loaded version, decide again on a conflict;
//!   for one command or a batch. Every writer of the service goes through it.
//! - [`followups`], [`subscriptions`], [`directory`]: the executor's names for the
//!   aggregates ([`FollowUps`], [`Subscriptions`], directory users and teams) and how their
//!   streams are read.
//! - [`MIGRATOR`]: the migrations in `migrations/`, embedded once, for every binary and test;
//!   [`migrate`] runs them and gives the application role its grants.

pub mod directory;
pub mod event_store;
pub mod executor;
pub mod followups;
pub mod hold_back;
pub mod personal_data;
pub mod subscriptions;
pub mod tail;

pub use event_store::{
    AppendError, Appended, Checkpoint, EventStore, ExpectedVersion, Metadata, NewEvent,
    RecordedEvent, StoreError, StoredRef, StreamAppend, Upcaster,
};
pub use executor::{
    BatchOutcome, Change, CommandMeta, Decided, ExecuteError, Executor, Expect, Unit, UnitOutcome,
};
pub use followups::{FollowUpUpcaster, FollowUps, Outcome, RepoError};
pub use hold_back::{HoldBack, Holder};
pub use subscriptions::{SubscriptionRepoError, Subscriptions};
pub use tail::Tail;

/// The schema migrations of the whole service, embedded from the workspace's `migrations/`.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");

/// Runs the migrations on `pool` (connected as the owner role, or a superuser), then gives
/// the application role `followup_app` its grants, if that role exists: read and append on
/// `events` only (see `migrations/20261203000001_application_role.sql`). Returns whether
/// the application role exists.
pub async fn migrate(pool: &sqlx::PgPool) -> Result<bool, sqlx::migrate::MigrateError> {
    MIGRATOR.run(pool).await?;
    let granted: bool = sqlx::query_scalar("SELECT followup_grant_app_role()")
        .fetch_one(pool)
        .await?;
    Ok(granted)
}
