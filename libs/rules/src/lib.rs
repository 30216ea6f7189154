//! Rules as data: which inbound ESAS events raise or resolve which follow-ups (opfølgninger).
//!
//! Upstream ESAS jobs and systems publish CloudEvents: job outcomes
//! (`dk.esas.job.applicant_transfer.failed`) and domain events
//! (`dk.esas.event.guest_student.data_share_requested`). The rule worker shows each one to
//! [`RuleSet::evaluate`] as an [`EventView`] and gets back [`Effect`]s: [`Raise`] an exception
//! or a task, or [`Resolve`] one raised earlier. The worker turns effects into domain commands;
//! this crate only decides.
//!
//! Rules live in a TOML file the operator edits ([`RuleSet::load`]), checked at start-up with
//! errors that name the rule and the field. Without one, [`RuleSet::builtin`] gives the default
//! rules shipped in `default-rules.toml`. The file format is described in [`format`] and, with
//! an example, in the crate's README.
//!
//! The crate is pure: apart from [`RuleSet::load`] reading one file it does no IO, reads no
//! clock (due dates count from the event's own time) and keeps no state, so replaying an event
//! gives the same effects.
//!
//! # Identity
//!
//! A raised follow-up is identified by (rule id, institution, key). The worker derives the
//! follow-up id from these, so a repeated failure becomes one follow-up (a recurrence), and a
//! [`Resolve`] finds its follow-up by carrying the same rule id and key as the [`Raise`].
//!
//! # Layout
//!
//! - `ruleset`: [`RuleSet`], the entry point: load, validate, [`RuleSet::evaluate`].
//! - [`format`]: the rules file format (reference) and its parsing and validation.
//! - `rule`: a validated [`Rule`], and what it makes of one event.
//! - `effect`: the output: [`Effect`], [`Raise`], [`Resolve`], [`RaiseKind`], [`Priority`].
//! - `event`: the input, [`EventView`], and how field paths find values in it.
//! - `template`, `condition`, `pattern`, `duration`: the small languages used in rules
//!   (`{data.x}` templates, `when` conditions, `dk.esas.job.x.*` patterns, `3d` offsets).
//! - `error`: [`RuleError`] (bad rules file) and [`EvaluateError`] (event lacks data).

mod condition;
mod duration;
mod effect;
mod error;
mod event;
pub mod format;
mod pattern;
mod rule;
mod ruleset;
mod template;

pub use effect::{Effect, Priority, Raise, RaiseKind, Resolve};
pub use error::{EvaluateError, RuleError};
pub use event::EventView;
pub use rule::Rule;
pub use ruleset::{RuleSet, DEFAULT_RULES_TOML};
