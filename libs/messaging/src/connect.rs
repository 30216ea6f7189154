//! Connecting to NATS.

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

/// NATS could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The server did not answer within the time allowed.
    #[error("NATS at {url} (NATS_URL) did not answer within {seconds} s: {last}")]
    Unreachable {
        /// The URL tried.
        url: String,
        /// How long we tried.
        seconds: u64,
        /// The last error seen.
        last: String,
    },
    /// Shutdown was requested while waiting.
    #[error("shut down while waiting for NATS")]
    Cancelled,
}

/// Connects to `url` (one server or a comma-separated list), retrying for up to `patience`.
/// Once connected, the client reconnects by itself after an outage.
pub async fn connect(
    url: &str,
    patience: Duration,
    shutdown: &CancellationToken,
) -> Result<async_nats::Client, ConnectError> {
    let started = Instant::now();
    let mut delay = Duration::from_millis(100);
    loop {
        let attempt = async_nats::ConnectOptions::new()
            .name("followupd")
            .connection_timeout(Duration::from_secs(5))
            .connect(url)
            .await;
        match attempt {
            Ok(client) => return Ok(client),
            Err(error) if started.elapsed() >= patience => {
                return Err(ConnectError::Unreachable {
                    url: url.to_owned(),
                    seconds: patience.as_secs(),
                    last: error.to_string(),
                })
            }
            Err(error) => {
                tracing::warn!(error.message = %error, nats.url = url, retry.in_ms = delay.as_millis() as u64, "NATS not reachable yet");
                tokio::select! {
                    () = shutdown.cancelled() => return Err(ConnectError::Cancelled),
                    () = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(Duration::from_secs(2));
            }
        }
    }
}
