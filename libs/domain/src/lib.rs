//! The follow-up (opfølgning) domain of ESAS: what a follow-up is, which changes are allowed,
//! and the events that record them.
//!
//! This crate is pure: no IO, no clock, no async. Time and the acting user come in through a
//! [`Context`]; events go out as plain values that an adapter stores and publishes.
//!
//! # Layout
//!
//! - [`values`]: validated value types (ids, principals, subject, description, enums). A value
//!   that exists is valid: they can only be built by parsing.
//! - [`gdpr`]: the guard that keeps CPR numbers and sensitive personal data out of follow-up
//!   text (refuses user text, masks upstream text).
//! - [`screen`]: untrusted JSON screened before it is stored: unstorable text (NUL) and CPR
//!   numbers found by path, CPR numbers masked in place.
//! - [`followup`]: the aggregate. [`FollowUp`] is the state, [`Command`] what someone asks for,
//!   [`Event`] what happened; [`decide`] turns a command into events (or a [`DomainError`]),
//!   [`evolve`] folds an event into the state.
//! - [`aggregate`]: [`Aggregate`], what the follow-up and the subscription are to the store's
//!   one command executor (stream type, id, decide, evolve, how events are stored).
//! - [`access`]: who may see and change a follow-up ([`Viewer`], [`access()`]).
//! - [`subscription`]: subscriptions to ESAS event topics, an aggregate of their own.
//! - [`directory`]: the institution's users and teams (SCIM-provisioned or seen in tokens),
//!   an aggregate each.
//! - [`upcast`]: brings event payloads stored under an older schema to the current one, and
//!   decodes them into [`Event`]s.
//!
//! # How an adapter uses it
//!
//! 1. Load the follow-up's stored events, [`decode`] each, and fold them with [`evolve`],
//!    starting from `None`.
//! 2. Call [`decide`] with the state, the command and a [`Context`] (who acts, and now).
//! 3. Append the returned events, expecting the state's `version`; then fold them with
//!    [`evolve`] to get the new state. An empty list means "nothing to change".

pub mod access;
pub mod aggregate;
pub mod directory;
pub mod followup;
pub mod gdpr;
pub mod screen;
pub mod subscription;
pub mod upcast;
pub mod values;

pub use access::{access, Viewer};
pub use aggregate::Aggregate;
pub use followup::{
    decide, evolve, Command, Context, DomainError, Edit, Event, FollowUp, NewFollowUp, Note, State,
    EVENT_TYPES,
};
pub use gdpr::{check_user_text, find_all_cpr, find_cpr, mask, GdprViolation};
pub use subscription::{
    decide_subscription, evolve_subscription, Delivery, Filter, NewSubscription, Subscription,
    SubscriptionCommand, SubscriptionError, SubscriptionEvent, SubscriptionId, Topic, TOPICS,
};
pub use upcast::{current_schema_version, decode, upcast, UpcastError};
pub use values::{
    Access, Actor, DataSubject, Description, ErasureCause, FollowUpId, InboxState, InstitutionId,
    Kind, KnownInstitutions, NoteText, Principal, Priority, Reason, Regarding, RegardingType,
    Source, Status, StatusReason, Subject, SubjectType, TeamId, UserId, ValidationError, ERASED,
};
