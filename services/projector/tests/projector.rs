//! The projector role's live loop, against a real PostgreSQL (a fresh database per test).

// The read model's test helpers (repository, projection, follow-ups to create), shared.
#[path = "../../../libs/readmodel/tests/common/mod.rs"]
mod common;

use std::time::Duration;

use common::*;
use followup_domain::Command;
use followup_readmodel::{ReadModel, PROJECTION_NAME};
use followup_store::MIGRATOR;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

#[sqlx::test(migrator = "MIGRATOR")]
async fn the_running_projector_follows_new_events_and_stops_on_shutdown(pool: PgPool) {
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(followup_projector::run(projector(&pool), shutdown.clone()));
    let repo = repo(&pool);
    let id = create_task(&repo, "KP", "user:u1").await;
    run(&repo, id, Command::Complete).await;

    let read_model = ReadModel::new(pool.clone());
    let viewer = caseworker("KP", "u1", &[]);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let row = read_model.get(&viewer, id).await.unwrap();
        if row.is_some_and(|f| f.version == 2) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not projected in time"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), running)
        .await
        .expect("the projector stops on shutdown")
        .unwrap();
    assert_read_model_matches_the_events(&pool).await;
    assert_eq!(read_model.lag(PROJECTION_NAME).await.unwrap(), 0);
}

/// The lines a test's code logs, captured (as the log shows them, without colours).
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    async fn wait_for(&self, wanted: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        while !self.text().contains(wanted) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no log line with {wanted:?}:\n{}",
                self.text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_transaction_that_holds_the_projector_back_is_named_in_one_warning_and_its_end_is_logged(
    pool: PgPool,
) {
    use tracing_subscriber::util::SubscriberInitExt;
    let captured = Captured::default();
    let writer = captured.clone();
    let _logging = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish()
        .set_default();

    // A session of another database that wrote and stays idle in its transaction.
    let holder = followup_testkit::HeldTransaction::open(&pool).await;
    let pid = holder.pid;
    create_task(&repo(&pool), "KP", "user:u1").await;

    let shutdown = CancellationToken::new();
    let watching = tokio::spawn(followup_projector::watch_hold_back(
        pool.clone(),
        Duration::ZERO,
        shutdown.clone(),
    ));
    captured.wait_for(&format!("holder.pid={pid}")).await;
    let warning = captured
        .text()
        .lines()
        .find(|l| l.contains(&format!("holder.pid={pid}")))
        .unwrap()
        .to_owned();
    assert!(warning.contains("WARN"), "{warning}");
    assert!(
        warning.contains("holder.database=\"postgres\""),
        "{warning}"
    );
    assert!(warning.contains("idle in transaction"), "{warning}");

    holder.release().await;
    captured.wait_for("no longer held back").await;
    shutdown.cancel();
    watching.await.unwrap();
    let warnings = captured
        .text()
        .lines()
        .filter(|l| l.contains(&format!("holder.pid={pid}")) && l.contains("WARN"))
        .count();
    assert_eq!(warnings, 1, "one warning per holder:\n{}", captured.text());
}
