//! `followupctl`: the operators' tool for the follow-up service (design section 9), as a
//! library that the binary (`main.rs`, the command line) and the tests call.
//!
//! Every command is a function that takes its settings and its connections and returns a
//! report; [`output`] prints a report for people or as JSON (`--json`).
//!
//! # Layout
//! - [`rebuild`]: rebuild the projection from the events while the service serves
//!   (`followupctl rebuild`), with [`progress`] on the terminal.
//! - [`replay`]: replay a range of an inbound stream through the rule worker or the notifier.
//! - [`inspect`]: a follow-up's stream and state; the event store's positions, the
//!   projections' checkpoints and lag.
//! - [`dlq`]: dead letters: list, show, redrive, purge.
//! - [`erase`]: erasure requests for a data subject, and legal holds.
//! - [`verify`]: the event store's invariants and the projection against a rebuild.
//! - [`connect`]: PostgreSQL and NATS, with errors that say which one is unreachable.
//! - [`output`]: human or JSON output.
//! - [`bench`] (and `bench_*`, [`ingest`]): benchmarks that print figures.
//! - [`simulate`]: publishes the contract examples or a simulated admission day on NATS.
//! - [`schedule`]: the scheduled jobs' schedules, and firing one now (exactly once).
//! - [`show`]: prints follow-ups from the event store.
//! - [`token`]: mints development tokens for the API.

pub mod bench;
pub mod bench_api;
pub mod bench_notify;
pub mod bench_overdue;
pub mod bench_rebuild;
pub mod connect;
pub mod dlq;
pub mod erase;
pub mod ingest;
pub mod inspect;
pub mod output;
pub mod progress;
pub mod rebuild;
pub mod replay;
pub mod schedule;
pub mod show;
pub mod simulate;
pub mod token;
pub mod verify;
