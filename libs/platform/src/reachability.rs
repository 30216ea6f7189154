//! Whether a dependency (PostgreSQL, NATS) can be reached, as the process last saw it: one
//! warning when it becomes unreachable and one when it is back (with how long it was away),
//! never one per failed attempt, and the metrics `followup_dependency_up{dependency}` (1 or
//! 0) and `followup_dependency_outages_total{dependency}`.
//!
//! NATS reports its own connection changes (the client's events, see
//! `followup_messaging::connect`); PostgreSQL is asked every few seconds by
//! [`watch_postgres`], because its pool hands out no such events.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

/// One dependency's reachability. Cheap to clone; the clones share the state.
#[derive(Debug, Clone)]
pub struct Reachability {
    /// Its name in logs and metrics: `postgres`, `nats`.
    dependency: &'static str,
    /// Since when it is unreachable (`None` while it is reachable).
    down_since: Arc<Mutex<Option<Instant>>>,
}

impl Reachability {
    /// A dependency taken to be reachable (the process has just connected to it).
    pub fn new(dependency: &'static str) -> Self {
        metrics::gauge!("followup_dependency_up", "dependency" => dependency).set(1.0);
        Self {
            dependency,
            down_since: Arc::new(Mutex::new(None)),
        }
    }

    /// It could not be reached, for `reason`: a warning the first time.
    pub fn unreachable(&self, reason: &str) {
        let mut down_since = self.down_since.lock().expect("not poisoned");
        if down_since.is_none() {
            *down_since = Some(Instant::now());
            metrics::gauge!("followup_dependency_up", "dependency" => self.dependency).set(0.0);
            metrics::counter!("followup_dependency_outages_total", "dependency" => self.dependency)
                .increment(1);
            tracing::warn!(
                dependency = self.dependency,
                error.message = reason,
                "{} is unreachable; the process keeps retrying",
                self.dependency
            );
        }
    }

    /// It answered: a warning that it is back, when it was away.
    pub fn reachable(&self) {
        let mut down_since = self.down_since.lock().expect("not poisoned");
        if let Some(since) = down_since.take() {
            metrics::gauge!("followup_dependency_up", "dependency" => self.dependency).set(1.0);
            tracing::warn!(
                dependency = self.dependency,
                outage.seconds = since.elapsed().as_secs_f64(),
                "{} is reachable again",
                self.dependency
            );
        }
    }

    /// Whether it is reachable as last seen.
    pub fn is_reachable(&self) -> bool {
        self.down_since.lock().expect("not poisoned").is_none()
    }
}

/// How often [`watch_postgres`] asks, and how long it waits for the answer.
const POSTGRES_CHECK: Duration = Duration::from_secs(2);

/// Asks PostgreSQL (`SELECT 1` through `pool`) every two seconds until `shutdown`, and
/// reports each answer or failure to `reachability`.
pub async fn watch_postgres(pool: PgPool, reachability: Reachability, shutdown: CancellationToken) {
    loop {
        let answer =
            tokio::time::timeout(POSTGRES_CHECK, sqlx::query("SELECT 1").execute(&pool)).await;
        match answer {
            Ok(Ok(_)) => reachability.reachable(),
            Ok(Err(error)) => reachability.unreachable(&error.to_string()),
            Err(_) => reachability.unreachable("no answer within 2 s"),
        }
        if crate::retry::pause(&shutdown, POSTGRES_CHECK).await {
            return;
        }
    }
}
