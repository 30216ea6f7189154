//! What the real `followupd` logs about its dependencies: one warning when NATS or
//! PostgreSQL becomes unreachable and one when it is back, not one per retry; and a warning
//! at start when it connects to PostgreSQL as a superuser.

mod common;

use std::time::{Duration, Instant};

use followup_store::MIGRATOR;
use followup_testkit::NatsServer;
use sqlx::PgPool;

use common::{database_proxy, database_url, direct_database_url, environment, Followupd};

/// Waits until `process` has logged `line` `times` times, and says what it logged if not.
async fn wait_for_log(process: &Followupd, line: &str, times: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while process.log().matches(line).count() < times {
        assert!(
            Instant::now() < deadline,
            "no {line:?} (x{times}) in the log:\n{}",
            process.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn followupd_warns_once_when_nats_or_postgres_becomes_unreachable_and_once_when_it_is_back(
    pool: PgPool,
) {
    let mut nats = NatsServer::start();
    let database = database_proxy(&pool).await;
    let log = nats.store_dir().join("followupd.log");
    let env = environment(&[
        ("DATABASE_URL", database_url(&pool, database.port())),
        ("NATS_URL", nats.url()),
        ("RUST_LOG", "warn,followupd=info".to_owned()),
    ]);
    let process = Followupd::start_logging(&["relay"], &env, Some(log));
    wait_for_log(&process, "followupd running", 1).await;

    nats.kill();
    wait_for_log(&process, "nats is unreachable", 1).await;
    tokio::time::sleep(Duration::from_secs(3)).await; // the client retries meanwhile
    nats.restart();
    wait_for_log(&process, "nats is reachable again", 1).await;

    database.cut();
    wait_for_log(&process, "postgres is unreachable", 1).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    database.restore();
    wait_for_log(&process, "postgres is reachable again", 1).await;

    let log = process.log();
    for line in [
        "nats is unreachable",
        "nats is reachable again",
        "postgres is unreachable",
        "postgres is reachable again",
    ] {
        assert_eq!(log.matches(line).count(), 1, "{line:?} once:\n{log}");
    }
    assert!(log.contains("outage.seconds"), "{log}");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn followupd_warns_at_start_when_it_connects_to_postgres_as_a_superuser(pool: PgPool) {
    // The tests connect as the server's superuser `postgres`.
    let nats = NatsServer::start();
    let env = environment(&[
        ("DATABASE_URL", direct_database_url(&pool)),
        ("NATS_URL", nats.url()),
    ]);
    let log = nats.store_dir().join("followupd.log");
    let process = Followupd::start_logging(&["relay"], &env, Some(log));
    wait_for_log(&process, "as a superuser", 1).await;
    assert!(
        process.log().contains("db.user=postgres"),
        "{}",
        process.log()
    );
}
