//! `followupctl inspect` against the real PostgreSQL.

mod common;

use common::*;
use followup_domain::{Command, Edit, Kind, StatusReason};
use followupctl::output::Report;
use sqlx::PgPool;

#[sqlx::test(migrator = "followup_store::MIGRATOR")]
async fn a_follow_ups_stream_shows_its_events_actors_times_and_state(pool: PgPool) {
    let repo = repo(&pool);
    let id = create(&repo, Kind::Task, 1, "team:admissions").await;
    let edit = Edit {
        status_reason: Some(StatusReason::InProgress),
        ..Edit::default()
    };
    run(&repo, id, Command::Edit(edit), "u2").await;
    run(&repo, id, Command::Complete, "u3").await;

    let report = followupctl::inspect::followup(pool.clone(), id)
        .await
        .unwrap();
    let types: Vec<_> = report
        .events
        .iter()
        .map(|e| e.event_type.as_str())
        .collect();
    assert_eq!(types, ["created", "edited", "completed"]);
    assert_eq!(report.state.as_ref().unwrap().status.as_str(), "completed");
    assert_eq!(report.read_model_version, None);
    let text = report.human();
    assert!(
        text.contains("by user:u2") && text.contains("by user:u3"),
        "{text}"
    );
    assert!(text.contains("no row yet"), "{text}");

    project(&pool).await;
    let report = followupctl::inspect::followup(pool.clone(), id)
        .await
        .unwrap();
    assert_eq!(report.read_model_version, Some(3));
    assert!(report.human().contains("read model: v3 (up to date)"));
}

#[sqlx::test(migrator = "followup_store::MIGRATOR")]
async fn the_store_shows_its_positions_and_each_projections_checkpoint_and_lag(pool: PgPool) {
    let repo = repo(&pool);
    for n in 0..3 {
        create(&repo, Kind::Task, n, "team:admissions").await;
    }
    project(&pool).await;
    for n in 3..5 {
        create(&repo, Kind::Task, n, "team:admissions").await;
    }
    let url = database_url(&pool);
    let output = followupctl(&["inspect", "store", "--json"], &[("DATABASE_URL", &url)]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["events"], 5);
    assert_eq!(json["checkpoints"][0]["name"], "followups");
    assert_eq!(json["checkpoints"][0]["lag"], 2);

    let output = followupctl(&["inspect", "store"], &[("DATABASE_URL", &url)]);
    let stdout = text(&output.stdout);
    assert!(stdout.contains("event store: 5 events"), "{stdout}");
    assert!(stdout.contains("lag        2 events, "), "{stdout}");
}

#[sqlx::test(migrator = "followup_store::MIGRATOR")]
async fn the_store_names_the_transaction_that_holds_its_readers_back(pool: PgPool) {
    // A forgotten session in another database of the server, idle in a transaction that wrote.
    let holder = followup_testkit::HeldTransaction::open(&pool).await;
    let pid = holder.pid;
    create(&repo(&pool), Kind::Task, 1, "team:admissions").await;

    // Other tests' transactions come and go; the forgotten one stays the oldest.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let report = loop {
        let report = followupctl::inspect::store(pool.clone()).await.unwrap();
        let by = report.held_back.as_ref().and_then(|h| h.holder.as_ref());
        if by.is_some_and(|h| h.pid == pid) {
            break report;
        }
        assert!(std::time::Instant::now() < deadline, "{}", report.human());
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let text = report.human();
    assert!(
        text.contains(&format!("by pid {pid} (database postgres")),
        "{text}"
    );
    assert!(text.contains("idle in transaction"), "{text}");
    holder.release().await;
}
