//! Whether each consuming worker of this process keeps failing: a worker whose batches keep
//! giving messages back (the database refuses or is away, contention that does not end) is
//! shown in `/readyz` and in metrics, instead of looking healthy while nothing moves.
//!
//! Workers are named by their durable consumer (`rule-worker`, `notifier`). The consume loop
//! marks a batch that settled every message as healthy; the failure sites mark a failure
//! with its reason. Only the workers of this process are known here: each process exposes
//! its own.

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// What is known of one worker.
#[derive(Debug, Clone, Default)]
struct State {
    /// Since when every batch has had a failure; `None` while the worker succeeds.
    failing_since: Option<Instant>,
    /// The last failure's reason (CPR numbers are the caller's to mask).
    last_error: Option<String>,
    /// Batches with a failure since the worker last succeeded.
    failed_batches: u64,
}

/// A worker's health, as `/readyz` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerHealth {
    /// The worker (its durable consumer's name).
    pub worker: String,
    /// How long it has been failing; `None` when its last batch succeeded.
    pub failing_for: Option<Duration>,
    /// Batches with a failure in a row.
    pub failed_batches: u64,
    /// The last failure's reason.
    pub last_error: Option<String>,
}

fn workers() -> &'static Mutex<BTreeMap<String, State>> {
    static WORKERS: OnceLock<Mutex<BTreeMap<String, State>>> = OnceLock::new();
    WORKERS.get_or_init(Default::default)
}

fn update(worker: &str, change: impl FnOnce(&mut State)) {
    let mut workers = workers().lock().unwrap_or_else(|e| e.into_inner());
    let state = workers.entry(worker.to_owned()).or_default();
    change(state);
    let failing = state
        .failing_since
        .map_or(0.0, |t| t.elapsed().as_secs_f64());
    metrics::gauge!("followup_worker_failing_seconds", "worker" => worker.to_owned()).set(failing);
}

/// A batch of `worker` gave messages back for `reason`.
pub fn failed(worker: &str, reason: &str) {
    update(worker, |state| {
        state.failing_since.get_or_insert_with(Instant::now);
        state.failed_batches += 1;
        state.last_error = Some(reason.chars().take(500).collect());
    });
    metrics::counter!("followup_worker_failed_batches_total", "worker" => worker.to_owned())
        .increment(1);
}

/// A batch of `worker` settled every message (stored, ignored or dead-lettered).
pub fn succeeded(worker: &str) {
    update(worker, |state| *state = State::default());
}

/// Every worker of this process that has handled a batch, by name.
pub fn all() -> Vec<WorkerHealth> {
    let workers = workers().lock().unwrap_or_else(|e| e.into_inner());
    workers
        .iter()
        .map(|(worker, state)| WorkerHealth {
            worker: worker.clone(),
            failing_for: state.failing_since.map(|t| t.elapsed()),
            failed_batches: state.failed_batches,
            last_error: state.last_error.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_is_failing_from_its_first_failed_batch_until_one_succeeds() {
        failed("health-test", "database refused");
        failed("health-test", "database refused again");
        let health = all()
            .into_iter()
            .find(|w| w.worker == "health-test")
            .unwrap();
        assert!(health.failing_for.is_some());
        assert_eq!(health.failed_batches, 2);
        assert_eq!(health.last_error.as_deref(), Some("database refused again"));
        succeeded("health-test");
        let health = all()
            .into_iter()
            .find(|w| w.worker == "health-test")
            .unwrap();
        assert_eq!(health.failing_for, None);
        assert_eq!(health.failed_batches, 0);
    }
}
