//! `followupctl verify` against the real PostgreSQL: clean on a healthy store, and every kind
//! of finding reported, with a non-zero exit code.

mod common;

use common::*;
use followupctl::verify::{self, VerifyArgs};
use serde_json::Value;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

async fn verify(pool: &PgPool) -> verify::VerifyReport {
    verify_with(pool, false, &[]).await
}

/// `followupctl verify` (`--skip-projection`, `--subject` each of `subjects`), without NATS.
async fn verify_with(
    pool: &PgPool,
    skip_projection: bool,
    subjects: &[&str],
) -> verify::VerifyReport {
    verify::run(
        &VerifyArgs {
            skip_projection,
            subjects: subjects.iter().map(|s| s.to_string()).collect(),
        },
        pool.clone(),
        None,
        &CancellationToken::new(),
        &mut |_| {},
    )
    .await
    .unwrap()
}

#[sqlx::test(migrator = "followup_store::MIGRATOR")]
async fn a_healthy_store_and_projection_verify_without_findings(pool: PgPool) {
    seed(&pool, 20).await;
    project(&pool).await;
    let report = verify(&pool).await;
    assert!(report.ok, "{report:?}");
    let names: Vec<_> = report.checks.iter().map(|c| c.name).collect();
    assert_eq!(
        names,
        [
            "versions",
            "event ids",
            "checkpoints",
            "erasure",
            "projection"
        ]
    );
    // Nothing of the verification is left behind.
    let leftovers: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_class WHERE relname LIKE '%\\_\\_verify'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(leftovers, 0);
}

#[sqlx::test(migrator = "followup_store::MIGRATOR")]
async fn a_damaged_read_model_row_is_reported_and_verify_exits_non_zero(pool: PgPool) {
    let ids = seed(&pool, 10).await;
    project(&pool).await;
    sqlx::query("UPDATE followups_view SET subject = 'changed by hand' WHERE id = $1")
        .bind(ids[4].as_uuid())
        .execute(&pool)
        .await
        .unwrap();

    let url = database_url(&pool);
    let output = followupctl(&["verify"], &[("DATABASE_URL", &url)]);
    assert_eq!(output.status.code(), Some(3), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert!(stdout.contains("FAIL projection"), "{stdout}");
    assert!(stdout.contains(&ids[4].to_string()), "{stdout}");
    assert!(stdout.contains("verification FAILED"), "{stdout}");

    let output = followupctl(&["verify", "--json"], &[("DATABASE_URL", &url)]);
    assert_eq!(output.status.code(), Some(3));
    let json: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["ok"], false);
}

#[sqlx::test(migrator = "followup_store::MIGRATOR")]
async fn a_gap_in_versions_and_a_checkpoint_ahead_of_the_store_are_reported(pool: PgPool) {
    let ids = seed(&pool, 5).await;
    project(&pool).await;
    // Version 9 of a stream at version 1 or 2: a gap (events cannot be changed, only added).
    sqlx::query(
        "INSERT INTO events (stream_id, stream_type, version, event_id, event_type,
                             schema_version, payload, actor)
         VALUES ($1, 'followup', 9, gen_random_uuid(), 'edited', 1, '{}', '{}')",
    )
    .bind(ids[1].to_string())
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(
        "UPDATE projection_checkpoints SET position = position + 1000 WHERE name = 'followups'",
    )
    .execute(&pool)
    .await
    .unwrap();
    let report = verify_with(&pool, true, &[]).await;
    assert!(!report.ok);
    let check = |name: &str| report.checks.iter().find(|c| c.name == name).unwrap();
    assert!(!check("versions").ok);
    assert!(check("versions").findings[0].contains(&ids[1].to_string()));
    assert!(check("event ids").ok);
    assert!(!check("checkpoints").ok);
    assert!(check("checkpoints").findings[0].starts_with("followups is at"));
}

#[sqlx::test(migrator = "followup_store::MIGRATOR")]
async fn verify_finds_an_erased_student_in_events_written_before_keys_existed(pool: PgPool) {
    use followup_domain::{
        Actor, Command, DataSubject, Description, InstitutionId, Kind, NewFollowUp, Principal,
        Priority, Reason, Regarding, Source, Subject, UserId,
    };
    use followup_privacy::{ErasureRequest, Privacy};
    use followup_store::{CommandMeta, EventStore, Expect, FollowUps};

    // Given two follow-ups about student S-77: one written as before keys existed (a store
    // that seals nothing), one sealed
    let new = |id| {
        Command::Create(NewFollowUp {
            id,
            institution: InstitutionId::parse("KP").unwrap(),
            kind: Kind::Task,
            subject: Subject::parse("Samtale med S-77 om orlov").unwrap(),
            description: Description::parse("").unwrap(),
            regarding: Some(Regarding::parse("student", "S-77").unwrap()),
            person: None,
            owner: "team:studieadministration".parse::<Principal>().unwrap(),
            due: None,
            priority: Priority::Normal,
            source: Source::User {
                id: UserId::parse("u1").unwrap(),
            },
        })
    };
    let plain = FollowUps::new(EventStore::new(pool.clone()));
    let legacy = followup_domain::FollowUpId::new_v4();
    plain
        .execute(
            legacy,
            new(legacy),
            &user("u1"),
            &CommandMeta::default(),
            Expect::Current,
        )
        .await
        .unwrap();
    let sealed = followup_domain::FollowUpId::new_v4();
    repo(&pool)
        .execute(
            sealed,
            new(sealed),
            &user("u1"),
            &CommandMeta::default(),
            Expect::Current,
        )
        .await
        .unwrap();
    project(&pool).await;

    // When the student is erased
    let request = ErasureRequest {
        institution: None,
        subject: "student:S-77".parse::<DataSubject>().unwrap(),
        reason: Reason::parse("Anmodning 2026-31").unwrap(),
        actor: Actor::User {
            id: UserId::parse("dpo").unwrap(),
        },
    };
    let report = Privacy::new(repo(&pool))
        .erase_subject(&request, chrono::Utc::now())
        .await
        .unwrap();
    let mut erased = report.followups.erased.clone();
    erased.sort();
    let mut both = vec![legacy, sealed];
    both.sort();
    assert_eq!(erased, both);

    // Then both read as erased, but verify finds the plaintext the older event still holds,
    // both by the erasure check and by the student's id, and fails
    let report = verify_with(&pool, false, &["student:S-77"]).await;
    assert!(!report.ok);
    let check = |name: &str| report.checks.iter().find(|c| c.name == name).unwrap();
    assert!(!check("erasure").ok);
    assert!(check("erasure").findings[0].contains(&legacy.to_string()));
    let found = check("erased");
    assert!(!found.ok);
    assert_eq!(
        found.findings,
        vec![format!("event {legacy} v1")],
        "{found:?}"
    );
    assert!(check("projection").ok, "{:?}", check("projection"));
}
