//! One active instance of a role: a second process stands by and takes over when the first
//! stops or dies (against the real PostgreSQL).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use followup_platform::leader::run_as_leader;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

/// A role that counts how many instances run it at this moment, and the most ever at once.
fn counting_role(
    running: Arc<AtomicUsize>,
    most: Arc<AtomicUsize>,
) -> impl Fn(CancellationToken) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
    move |active| {
        let (running, most) = (running.clone(), most.clone());
        Box::pin(async move {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now, Ordering::SeqCst);
            active.cancelled().await;
            running.fetch_sub(1, Ordering::SeqCst);
        })
    }
}

async fn eventually(what: &str, check: impl Fn() -> bool) {
    for _ in 0..100 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what} did not happen within 10 s");
}

#[sqlx::test]
async fn a_standby_takes_over_when_the_active_instance_stops_and_never_runs_beside_it(
    pool: PgPool,
) {
    let (running, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (first_stop, second_stop) = (CancellationToken::new(), CancellationToken::new());
    let first = tokio::spawn(run_as_leader(
        pool.clone(),
        "test-role",
        first_stop.clone(),
        counting_role(running.clone(), most.clone()),
    ));
    eventually("the first instance becoming active", || {
        running.load(Ordering::SeqCst) == 1
    })
    .await;
    let second = tokio::spawn(run_as_leader(
        pool.clone(),
        "test-role",
        second_stop.clone(),
        counting_role(running.clone(), most.clone()),
    ));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(running.load(Ordering::SeqCst), 1, "the second stands by");

    first_stop.cancel();
    first.await.unwrap();
    eventually("the standby taking over", || {
        running.load(Ordering::SeqCst) == 1
    })
    .await;
    assert_eq!(most.load(Ordering::SeqCst), 1, "never two at once");

    second_stop.cancel();
    second.await.unwrap();
    assert_eq!(running.load(Ordering::SeqCst), 0);
}
