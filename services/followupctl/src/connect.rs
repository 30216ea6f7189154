//! Connections to PostgreSQL and NATS for one command, with errors that name what is
//! unreachable and the setting that points at it.

use std::time::Duration;

use anyhow::Context as _;
use followup_messaging::JetStream;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

/// `value`, or an error that names the setting to pass.
pub fn require<'a>(value: Option<&'a str>, name: &str) -> anyhow::Result<&'a str> {
    value.with_context(|| {
        format!(
            "{name} is not set: pass --{} or set {name} (after deploy/run.sh, followupctl \
             started in the repository reads it from {})",
            name.to_lowercase().replace('_', "-"),
            followup_platform::config::LOCAL_ENV_FILE
        )
    })
}

/// A pool on the service's database (`DATABASE_URL`), trying for up to `patience`.
pub async fn database(
    url: Option<&str>,
    connections: u32,
    patience: Duration,
    shutdown: &CancellationToken,
) -> anyhow::Result<PgPool> {
    let url = require(url, "DATABASE_URL")?;
    followup_platform::database::connect(url, connections, patience, shutdown)
        .await
        .context("cannot reach PostgreSQL: is it running, and is DATABASE_URL right?")
}

/// JetStream on the service's NATS (`NATS_URL`), trying for up to `patience`.
pub async fn nats(
    url: Option<&str>,
    patience: Duration,
    shutdown: &CancellationToken,
) -> anyhow::Result<JetStream> {
    let url = require(url, "NATS_URL")?;
    let client = followup_messaging::connect(url, patience, shutdown)
        .await
        .context("cannot reach NATS: is it running with JetStream, and is NATS_URL right?")?;
    Ok(async_nats::jetstream::new(client))
}
