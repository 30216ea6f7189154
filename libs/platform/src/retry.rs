//! Retrying with back-off, and pauses that end early on shutdown: the one place every loop
//! of the service (connecting, fetching, projecting, relaying, scheduling) takes them from.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Connecting to PostgreSQL or NATS at start-up.
pub const CONNECT: Backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));

/// Fetching from a consumer that failed.
pub const FETCH: Backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));

/// A batch (relay, projector) that failed, tried again until it succeeds.
pub const BATCH: Backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));

/// A doubling back-off: `first`, then twice that, and so on, never more than `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The pause after the first failure.
    pub first: Duration,
    /// The longest pause.
    pub max: Duration,
}

impl Backoff {
    /// A back-off from `first` doubling up to `max`.
    pub const fn new(first: Duration, max: Duration) -> Self {
        Self { first, max }
    }

    /// The pause after `failures` failures in a row (0 and 1 both give `first`).
    pub fn delay(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(30);
        self.first.saturating_mul(1u32 << doublings).min(self.max)
    }
}

/// Sleeps `delay`, or less when `shutdown` comes first; true when it did.
pub async fn pause(shutdown: &CancellationToken, delay: Duration) -> bool {
    tokio::select! {
        () = shutdown.cancelled() => true,
        () = tokio::time::sleep(delay) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pause_doubles_after_each_failure_up_to_the_longest() {
        let backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        assert_eq!(backoff.delay(0), Duration::from_millis(100));
        assert_eq!(backoff.delay(1), Duration::from_millis(100));
        assert_eq!(backoff.delay(2), Duration::from_millis(200));
        assert_eq!(backoff.delay(3), Duration::from_millis(400));
        assert_eq!(backoff.delay(6), Duration::from_secs(2));
        assert_eq!(backoff.delay(u32::MAX), Duration::from_secs(2));
    }

    #[tokio::test]
    async fn a_pause_ends_at_once_on_shutdown() {
        let shutdown = CancellationToken::new();
        shutdown.cancel();
        let started = std::time::Instant::now();
        assert!(pause(&shutdown, Duration::from_secs(60)).await);
        assert!(started.elapsed() < Duration::from_secs(1));
    }
}
