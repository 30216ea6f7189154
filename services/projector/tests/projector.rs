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
