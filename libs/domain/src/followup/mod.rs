//! The follow-up aggregate: its state, the commands that ask for a change, the events that
//! record one, and the two functions that connect them.
//!
//! ```text
//!   State ──decide(state, command, context)──► Result<Vec<Event>, DomainError>
//!   State ──evolve(state, event)─────────────► State
//! ```
//!
//! [`decide`] holds every business rule and never changes anything; [`evolve`] applies an
//! event without questioning it (the event already happened). The state is rebuilt by folding
//! a follow-up's events with [`evolve`], starting from `None`.
//!
//! # Lifecycle
//!
//! A follow-up is created open (`not_started`). While open it can be edited, assigned, shared
//! and unshared; it ends completed (`handled`, or `resolved_by_job` for exceptions) or closed
//! (`not_needed`). Completed and closed follow-ups refuse every command, with one exception:
//! a recurrence of an exception's failure reopens it.
//!
//! # Layout
//!
//! - `state`: [`FollowUp`] and [`State`].
//! - `command`: [`Command`], its payloads [`NewFollowUp`] and [`Edit`], and [`Context`].
//! - `event`: [`Event`] and [`EVENT_TYPES`].
//! - `decide`, `evolve`: the two functions.
//! - `diff`: [`changes`], what an event changed (for the history).
//! - `error`: [`DomainError`].

mod command;
mod decide;
mod diff;
mod error;
mod event;
mod evolve;
mod state;

pub use command::{Command, Context, Edit, NewFollowUp};
pub use decide::decide;
pub use diff::{changes, FieldChange};
pub use error::DomainError;
pub use event::{Event, EVENT_TYPES};
pub use evolve::evolve;
pub use state::{FollowUp, Note, State};
