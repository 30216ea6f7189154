//! What every process of the service needs, set up once: configuration, telemetry, the
//! shutdown signal and the database connection.
//!
//! # Layout
//! - [`config`]: settings from the environment (and an optional TOML file), with errors that
//!   name the setting.
//! - [`telemetry`]: tracing, set up once per process, with OpenTelemetry export.
//! - [`trace`]: W3C trace context in and out of CloudEvents and HTTP.
//! - [`shutdown`]: a cancellation token that SIGINT and SIGTERM cancel.
//! - [`database`]: connect to PostgreSQL with retries.
//! - [`health`]: whether each consuming worker of the process keeps failing (`/readyz`).
//! - [`retry`]: the one doubling back-off and the pause that shutdown cuts short.
//! - [`leader`]: one active instance of a role among several processes, the others standing
//!   by (a PostgreSQL advisory lock).
//! - [`reachability`]: one warning when PostgreSQL or NATS becomes unreachable and one when
//!   it is back, and metrics for both.

pub mod config;
pub mod database;
pub mod health;
pub mod leader;
pub mod reachability;
pub mod retry;
pub mod shutdown;
pub mod telemetry;
pub mod trace;

pub use config::{Config, ConfigError, Sources};
