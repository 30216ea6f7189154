//! The PostgreSQL connection pool.

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

/// Why the database could not be used.
#[derive(Debug, thiserror::Error)]
pub enum DatabaseError {
    /// `DATABASE_URL` does not parse.
    #[error("DATABASE_URL cannot be parsed: {0}")]
    Url(sqlx::Error),
    /// The database did not answer within the time allowed.
    #[error("PostgreSQL at DATABASE_URL did not answer within {seconds} s: {last}")]
    Unreachable {
        /// How long we tried.
        seconds: u64,
        /// The last error seen.
        last: sqlx::Error,
    },
    /// Shutdown was requested while waiting.
    #[error("shut down while waiting for PostgreSQL")]
    Cancelled,
}

/// Connects a pool of `max_connections`, retrying for up to `patience` while the database
/// starts (or is briefly away), with a log line per failed attempt.
pub async fn connect(
    url: &str,
    max_connections: u32,
    patience: Duration,
    shutdown: &CancellationToken,
) -> Result<PgPool, DatabaseError> {
    let options: PgConnectOptions = url.parse().map_err(DatabaseError::Url)?;
    let started = std::time::Instant::now();
    let mut failures = 0;
    loop {
        let attempt = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options.clone())
            .await;
        match attempt {
            Ok(pool) => return Ok(pool),
            Err(last) if started.elapsed() >= patience => {
                return Err(DatabaseError::Unreachable {
                    seconds: patience.as_secs(),
                    last,
                })
            }
            Err(error) => {
                failures += 1;
                let delay = crate::retry::CONNECT.delay(failures);
                tracing::warn!(error.message = %error, retry.in_ms = delay.as_millis() as u64, "PostgreSQL not reachable yet");
                if crate::retry::pause(shutdown, delay).await {
                    return Err(DatabaseError::Cancelled);
                }
            }
        }
    }
}

/// The role `pool` connects as, and whether it is a superuser: a superuser (like the owner
/// of `events`) can disable the event store's append-only triggers, so the service should
/// run as an application role that may only read and append.
pub async fn role(pool: &PgPool) -> Result<(String, bool), sqlx::Error> {
    sqlx::query_as("SELECT current_user::text, rolsuper FROM pg_roles WHERE rolname = current_user")
        .fetch_one(pool)
        .await
}
