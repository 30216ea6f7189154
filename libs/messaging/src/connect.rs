//! Connecting to NATS.

use followup_platform::reachability::Reachability;
use followup_platform::retry;
use std::time::{Duration, Instant};

use async_nats::ServerAddr;
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
    /// The URL cannot be used.
    #[error("NATS_URL {url} is invalid: {reason}")]
    Invalid {
        /// The URL (password hidden).
        url: String,
        /// Why.
        reason: String,
    },
}

/// Connects to `url` (one server or a comma-separated list of a cluster's servers, each
/// optionally with `user:password@`), retrying for up to `patience`. Once connected, the
/// client reconnects by itself after an outage, to any server of the list, and the outage is
/// logged once when it begins and once when it ends (with `followup_dependency_up{dependency="nats"}`).
pub async fn connect(
    url: &str,
    patience: Duration,
    shutdown: &CancellationToken,
) -> Result<async_nats::Client, ConnectError> {
    let servers = url
        .split(',')
        .map(|one| one.trim().parse::<ServerAddr>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ConnectError::Invalid {
            url: redacted(url),
            reason: e.to_string(),
        })?;
    // The client does not read credentials out of server URLs: hand them over.
    let credentials = servers
        .iter()
        .find(|server| server.has_user_pass())
        .and_then(|server| Some((server.username()?.to_owned(), server.password()?.to_owned())));
    let started = Instant::now();
    let mut failures = 0;
    let reachability = Reachability::new("nats");
    loop {
        let events = reachability.clone();
        let mut options = async_nats::ConnectOptions::new()
            .name("followupd")
            .connection_timeout(Duration::from_secs(5))
            // The client reconnects by itself; these say when NATS went away and came back.
            .event_callback(move |event| {
                let events = events.clone();
                async move {
                    match event {
                        async_nats::Event::Disconnected => {
                            events.unreachable("the connection to NATS was lost")
                        }
                        async_nats::Event::Connected => events.reachable(),
                        _ => {}
                    }
                }
            });
        if let Some((user, password)) = credentials.clone() {
            options = options.user_and_password(user, password);
        }
        let attempt = options.connect(servers.as_slice()).await;
        match attempt {
            Ok(client) => return Ok(client),
            Err(error) if started.elapsed() >= patience => {
                return Err(ConnectError::Unreachable {
                    url: redacted(url),
                    seconds: patience.as_secs(),
                    last: error.to_string(),
                })
            }
            Err(error) => {
                failures += 1;
                let delay = retry::CONNECT.delay(failures);
                tracing::warn!(error.message = %error, nats.url = %redacted(url), retry.in_ms = delay.as_millis() as u64, "NATS not reachable yet");
                if retry::pause(shutdown, delay).await {
                    return Err(ConnectError::Cancelled);
                }
            }
        }
    }
}

/// `url` with the password of every `user:password@` hidden, for messages and logs.
pub fn redacted(url: &str) -> String {
    url.split(',')
        .map(|one| match (one.find("://"), one.rfind('@')) {
            (Some(scheme), Some(at)) if at > scheme => {
                let credentials = &one[scheme + 3..at];
                match credentials.split_once(':') {
                    Some((user, _)) => format!("{}{user}:***{}", &one[..scheme + 3], &one[at..]),
                    None => format!("{}***{}", &one[..scheme + 3], &one[at..]),
                }
            }
            _ => one.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_in_urls_are_hidden() {
        assert_eq!(
            redacted("nats://followupd:s3cret@a:4222,nats://b:4222,nats://tok@c:4222"),
            "nats://followupd:***@a:4222,nats://b:4222,nats://***@c:4222"
        );
    }
}
