//! The command line as operators meet it: help with examples, clear errors when PostgreSQL
//! or NATS cannot be reached, JSON for scripts, progress lines when not on a terminal.

mod common;

use common::*;
use sqlx::PgPool;

#[test]
fn every_operations_command_has_help_with_an_example() {
    for command in [
        &["rebuild"][..],
        &["replay"],
        &["inspect", "followup"],
        &["inspect", "store"],
        &["dlq", "list"],
        &["dlq", "show"],
        &["dlq", "redrive"],
        &["dlq", "purge"],
        &["verify"],
        &["bench", "rebuild"],
        &["schedule", "list"],
        &["schedule", "fire"],
    ] {
        let mut args = command.to_vec();
        args.push("--help");
        let output = followupctl(&args, &[]);
        assert!(output.status.success(), "{command:?}");
        let help = text(&output.stdout);
        assert!(help.contains("Example: followupctl"), "{command:?}: {help}");
        assert!(help.contains("--json"), "{command:?}: {help}");
    }
}

#[test]
fn an_unreachable_database_is_named_in_the_error() {
    let output = followupctl(
        &["--connect-timeout", "1", "inspect", "store"],
        &[("DATABASE_URL", "postgres://postgres@127.0.0.1:9/followups")],
    );
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("cannot reach PostgreSQL: is it running, and is DATABASE_URL right?"),
        "{stderr}"
    );
}

#[test]
fn an_unreachable_nats_is_named_in_the_error() {
    let output = followupctl(
        &["--connect-timeout", "1", "dlq", "list"],
        &[("NATS_URL", "nats://127.0.0.1:9")],
    );
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("cannot reach NATS"), "{stderr}");
}

#[test]
fn a_missing_setting_is_named() {
    let output = followupctl(&["verify"], &[]);
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output.stderr).contains("DATABASE_URL is not set"));
}

#[sqlx::test(migrator = "followup_store::MIGRATOR")]
async fn a_rebuild_off_a_terminal_writes_plain_progress_lines_and_a_report(pool: PgPool) {
    seed(&pool, 30).await;
    project(&pool).await;
    let url = database_url(&pool);
    let output = followupctl(&["rebuild", "--chunk", "10"], &[("DATABASE_URL", &url)]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("rebuild: load 0/"), "{stderr}");
    assert!(stderr.contains("rebuild: switch 1/1 (100 %)"), "{stderr}");
    let stdout = text(&output.stdout);
    assert!(stdout.starts_with("rebuilt the projection: "), "{stdout}");
    assert!(stdout.contains("30 follow-ups"), "{stdout}");

    let output = followupctl(&["rebuild", "--json"], &[("DATABASE_URL", &url)]);
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["outcome"], "rebuilt");
    assert_eq!(json["followups"], 30);
    assert!(text(&output.stderr).is_empty(), "--json shows no progress");
}

#[sqlx::test(migrator = "followup_store::MIGRATOR")]
async fn firing_a_scheduled_job_by_hand_does_its_tick_once(pool: PgPool) {
    // A user's own open task: the daily digest lists it.
    create(&repo(&pool), followup_domain::Kind::Task, 0, "user:u1").await;
    project(&pool).await;
    let url = database_url(&pool);
    let fire = || {
        let output = followupctl(
            &["schedule", "fire", "digest", "--json"],
            &[("DATABASE_URL", &url)],
        );
        assert!(output.status.success(), "{}", text(&output.stderr));
        serde_json::from_slice::<serde_json::Value>(&output.stdout).unwrap()
    };
    let first = fire();
    assert_eq!(first["job"], "digest");
    assert_eq!(first["notified"], 1, "{first}");
    let again = fire();
    assert_eq!(again["tick"], first["tick"]);
    assert_eq!(again["notified"], 0, "{again}");
    assert_eq!(again["already_done"], 1, "{again}");

    let output = followupctl(&["schedule", "fire", "nightly"], &[("DATABASE_URL", &url)]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("no job named \"nightly\""), "{stderr}");
}
