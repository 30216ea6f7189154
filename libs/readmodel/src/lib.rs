//! Read models of follow-ups: the current state of every follow-up, projected from the event
//! store into PostgreSQL, and the queries the HTTP API answers from it (design section 7).
//!
//! The event store is the truth; the table `followups_view` is a copy that is cheap to query
//! and can be rebuilt from the events at any time (guarantee 5). Two writers keep it current:
//!
//! - the projector role follows the event store in its gap-free reading order and writes each
//!   batch of changed follow-ups together with its checkpoint, in one transaction, so a crash
//!   at any point resumes with nothing lost and nothing doubled;
//! - the API writes a follow-up through ([`ReadModel::upsert`]) right after a command, so the
//!   caller sees its own change at once, without waiting for the projector.
//!
//! Both may write the same follow-up in any order: a row only ever moves to a newer version.
//!
//! Visibility is the domain's rule ([`followup_domain::access()`]): the viewer's institution,
//! and there only what the viewer or one of its teams owns or is shared with, unless the
//! viewer is an admin. [`ReadModel::get`] decides with the domain's function itself;
//! [`ReadModel::list`] filters in SQL (through an index) and checks each row with the
//! domain's function as well.
//!
//! # Layout
//! - [`read_model`]: [`ReadModel`]: write-through [`upsert`](ReadModel::upsert), `get`,
//!   `list`, `dashboard`, and the projection `lag` for readiness and metrics.
//! - [`query`]: what a list asks for and returns: [`ListQuery`], [`OwnerFilter`], [`Cursor`],
//!   [`Page`], [`Dashboard`].
//! - [`inbox`]: subscriptions and the per-user notification inbox ([`InboxQuery`],
//!   [`InboxPage`]), and the notifier's lookup of matching subscriptions.
//! - [`projection`]: [`Projection`]: projects a batch of events with its checkpoint in one
//!   transaction; `process_pending` (what tests and rebuild tools call). The live loop is the
//!   projector role, `services/projector`.
//! - [`rebuild`]: [`Rebuild`]: the projection rebuilt into shadow tables from the events
//!   alone and switched in while the service serves, or compared with the live one.
//! - [`tables`]: [`Tables`]: the tables a projection writes (live, or a shadow).
//! - [`directory`]: the institution's users and teams: lists, pickers, principal checks,
//!   display names and team members.
//! - [`error`]: [`ReadError`] and [`ProjectorError`].
//! - The schema is `migrations/*_read_models.sql`; its comments say which query each index
//!   serves.

pub mod directory;
pub mod error;
pub mod inbox;
pub mod projection;
pub mod query;
pub mod read_model;
pub mod rebuild;
pub mod tables;

pub use error::{ProjectorError, ReadError};
pub use followup_store::Checkpoint;
pub use inbox::{InboxChange, InboxCursor, InboxItem, InboxPage, InboxQuery};
pub use projection::{Projection, Step, DEFAULT_BATCH_SIZE, PROJECTION_NAME};
pub use query::{Cursor, Dashboard, ListQuery, OpenByKind, OwnerFilter, Page};
pub use read_model::{Backlog, ReadModel};
pub use rebuild::{
    Comparison, Phase, Progress, Rebuild, RebuildError, RebuildReport, RebuildState, Timings,
};
pub use tables::Tables;
