//! `followupctl dlq` against the real NATS and PostgreSQL: dead letters listed with their
//! reasons, shown, redriven after a rules fix, purged with confirmation.

mod common;

use async_nats::HeaderMap;
use bytes::Bytes;
use common::*;
use followup_messaging::{ensure_streams, publish_event, JetStream, Streams};
use followup_rule_worker::{RuleWorker, WorkerConfig};
use followup_rules::RuleSet;
use followup_testkit::NatsServer;
use followupctl::dlq::{self, Filter, RedriveArgs};
use serde_json::json;
use sqlx::PgPool;

/// A job type no built-in rule handles.
const GRADE_EXPORT: &str = "dk.esas.job.grade_export.failed";

/// The fix: the built-in rules plus one for grade exports.
fn fixed_rules() -> RuleSet {
    let builtin = include_str!("../../../libs/rules/default-rules.toml");
    RuleSet::from_toml(&format!(
        r#"{builtin}
[[rule]]
id = "grade-export-failed"
on = "{GRADE_EXPORT}"
require = ["data.job_run_id"]
kind = "exception"
key = "{{data.job_run_id}}"
subject = "Karaktereksport fejlede ({{data.job_run_id}})"
description = "Jobkørsel {{data.job_run_id}} fejlede."
owner_team = {{ default = "eksamen" }}
priority = "high"
"#
    ))
    .unwrap()
}

async fn worker(js: &JetStream, pool: &PgPool, rules: RuleSet) -> RuleWorker {
    RuleWorker::new(js.clone(), repo(pool), rules, WorkerConfig::default())
        .await
        .unwrap()
}

/// Two poison messages on ESAS_JOBS, dead-lettered by the rule worker with the built-in rules.
async fn dead_letters(js: &JetStream, pool: &PgPool) {
    publish_event(
        js,
        "esas.jobs.applicant_transfer.failed".into(),
        "not-json",
        HeaderMap::new(),
        Bytes::from_static(b"{ this is not json"),
    )
    .await
    .unwrap();
    let event = json!({
        "specversion": "1.0", "id": "ge-1", "source": "esas/jobs/grade-export",
        "type": GRADE_EXPORT, "time": "2026-11-26T09:00:00Z", "institution": "KP",
        "datacontenttype": "application/json", "data": {"job_run_id": "run-77"}
    });
    publish_event(
        js,
        "esas.jobs.grade_export.failed".into(),
        "ge-1",
        HeaderMap::new(),
        Bytes::from(serde_json::to_vec(&event).unwrap()),
    )
    .await
    .unwrap();
    let report = worker(js, pool, RuleSet::builtin())
        .await
        .process_pending()
        .await
        .unwrap();
    assert_eq!(report.dead_lettered, 2);
}

async fn nats() -> (NatsServer, JetStream) {
    let server = NatsServer::start();
    let js = async_nats::jetstream::new(server.client().await);
    ensure_streams(&js, &Streams::default()).await.unwrap();
    (server, js)
}

#[sqlx::test(migrator = "followup_store::MIGRATOR")]
async fn dead_letters_are_listed_with_their_reasons_and_shown_one_by_one(pool: PgPool) {
    let (_server, js) = nats().await;
    dead_letters(&js, &pool).await;
    let streams = Streams::default();

    let list = dlq::list(&js, &streams, &Filter::default(), 100)
        .await
        .unwrap();
    assert_eq!(list.matching, 2);
    let codes: Vec<_> = list
        .dead_letters
        .iter()
        .map(|d| d.code.clone().unwrap())
        .collect();
    assert_eq!(codes, ["invalid_json", "unknown_type"]);
    assert!(list
        .dead_letters
        .iter()
        .all(|d| d.source_stream.as_deref() == Some("ESAS_JOBS")));
    assert!(followupctl::output::Report::human(&list).contains("2 dead letter(s)"));

    let only = Filter {
        stream: None,
        code: Some("unknown_type".into()),
    };
    let unknown = dlq::list(&js, &streams, &only, 100).await.unwrap();
    assert_eq!(unknown.matching, 1);
    let shown = dlq::show(&js, &streams, unknown.dead_letters[0].sequence)
        .await
        .unwrap();
    assert_eq!(shown.payload.as_ref().unwrap()["id"], "ge-1");
    assert_eq!(shown.original_msg_id.as_deref(), Some("ge-1"));
    assert!(shown.reason.unwrap().contains(GRADE_EXPORT));
}

#[sqlx::test(migrator = "followup_store::MIGRATOR")]
async fn a_dead_letter_redriven_after_a_rules_fix_becomes_an_exception_and_leaves_the_dlq(
    pool: PgPool,
) {
    let (_server, js) = nats().await;
    dead_letters(&js, &pool).await;
    let streams = Streams::default();
    let unknown = dlq::list(
        &js,
        &streams,
        &Filter {
            stream: Some("ESAS_JOBS".into()),
            code: Some("unknown_type".into()),
        },
        100,
    )
    .await
    .unwrap();

    let report = dlq::redrive(
        &js,
        &streams,
        &RedriveArgs {
            sequence: Some(unknown.dead_letters[0].sequence),
            all: false,
            filter: Filter::default(),
        },
    )
    .await
    .unwrap();
    assert_eq!(report.redriven.len(), 1);
    assert_eq!(report.redriven[0].1, "esas.jobs.grade_export.failed");

    // The rule worker, with the fixed rules, now turns it into an exception.
    let worked = worker(&js, &pool, fixed_rules())
        .await
        .process_pending()
        .await
        .unwrap();
    assert_eq!(worked.applied, 1, "{worked:?}");
    // The subject is sealed in the stored event: read it through the store.
    let ids: Vec<String> =
        sqlx::query_scalar("SELECT stream_id FROM events WHERE event_type = 'created'")
            .fetch_all(&pool)
            .await
            .unwrap();
    let mut subjects = Vec::new();
    for id in ids {
        let followup = repo(&pool)
            .load(id.parse().unwrap())
            .await
            .unwrap()
            .unwrap();
        subjects.push(followup.subject.to_string());
    }
    assert_eq!(subjects, ["Karaktereksport fejlede (run-77)"]);
    let left = dlq::list(&js, &streams, &Filter::default(), 100)
        .await
        .unwrap();
    assert_eq!(left.matching, 1);
    assert_eq!(left.dead_letters[0].code.as_deref(), Some("invalid_json"));
}

#[sqlx::test(migrator = "followup_store::MIGRATOR")]
async fn purging_asks_for_confirmation_and_deletes_with_yes(pool: PgPool) {
    let (server, js) = nats().await;
    dead_letters(&js, &pool).await;
    let url = server.url();

    // Without a terminal to ask on and without --yes, nothing is purged.
    let refused = followupctl(&["dlq", "purge"], &[("NATS_URL", &url)]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(text(&refused.stderr)
        .contains("refusing to purge 2 dead letter(s) without confirmation: pass --yes"));

    let listed = followupctl(&["dlq", "list", "--json"], &[("NATS_URL", &url)]);
    let json: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(json["matching"], 2);

    let purged = followupctl(&["dlq", "purge", "--yes"], &[("NATS_URL", &url)]);
    assert!(purged.status.success(), "{}", text(&purged.stderr));
    assert!(text(&purged.stdout).contains("purged 2 dead letter(s)"));
    let listed = followupctl(&["dlq", "list"], &[("NATS_URL", &url)]);
    assert_eq!(text(&listed.stdout).trim(), "no dead letters");
}
