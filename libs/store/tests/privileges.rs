//! Least privilege: the application role `followup_app` may read and append events and do
//! nothing else to them, against the real PostgreSQL (a fresh database per test).

use followup_store::{EventStore, ExpectedVersion, Metadata, NewEvent, StreamAppend, MIGRATOR};
use serde_json::json;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;
use uuid::Uuid;

/// Creates the two roles as `deploy/ensure-services.sh` does, unless they exist (roles belong
/// to the whole server: other tests may be creating them at the same moment).
async fn ensure_roles(admin: &PgPool) {
    for role in ["followup_owner", "followup_app"] {
        let created = sqlx::query(&format!(
            "DO $$ BEGIN CREATE ROLE {role} LOGIN PASSWORD '{role}'; \
             EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$"
        ))
        .execute(admin)
        .await;
        if let Err(error) = created {
            // Two tests creating the role at once: the other one won.
            assert!(error.to_string().contains("already exists"), "{error}");
        }
    }
}

/// A pool connected to the test's database as the application role.
async fn as_app(admin: &PgPool, options: PgConnectOptions) -> PgPool {
    ensure_roles(admin).await;
    let granted: bool = sqlx::query_scalar("SELECT followup_grant_app_role()")
        .fetch_one(admin)
        .await
        .unwrap();
    assert!(granted);
    PgPoolOptions::new()
        .max_connections(2)
        .connect_with(options.username("followup_app").password("followup_app"))
        .await
        .unwrap()
}

/// Pools on the test's database as the superuser and as the application role.
async fn admin_and_app(options: PgConnectOptions) -> (PgPool, PgPool) {
    let admin = PgPoolOptions::new()
        .max_connections(2)
        .connect_with(options.clone())
        .await
        .unwrap();
    let app = as_app(&admin, options).await;
    (admin, app)
}

/// `statement` run as the application role fails for lack of privilege (42501), not by a
/// trigger or for any other reason.
async fn assert_refused_for_lack_of_privilege(app: &PgPool, statement: &str) {
    let error = sqlx::query(statement)
        .execute(app)
        .await
        .expect_err(statement);
    let code = error
        .as_database_error()
        .and_then(|e| e.code())
        .map(|c| c.into_owned());
    assert_eq!(
        code.as_deref(),
        Some("42501"),
        "{statement}: refused for lack of privilege, not by the triggers: {error}"
    );
}

fn one_event(stream: &str) -> StreamAppend {
    StreamAppend {
        stream_id: stream.into(),
        stream_type: "followup".into(),
        expected: ExpectedVersion::NoStream,
        events: vec![NewEvent {
            event_id: Uuid::new_v4(),
            event_type: "noted".into(),
            schema_version: 1,
            payload: json!({ "n": 1 }),
            metadata: Metadata {
                actor: json!({ "type": "system" }),
                correlation_id: None,
                causation_id: None,
                traceparent: None,
            },
        }],
    }
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn the_application_role_appends_and_reads_events_but_cannot_change_delete_truncate_or_unprotect_them(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let (admin, app) = admin_and_app(options).await;
    let store = EventStore::new(app.clone());
    store.append(one_event("s-1")).await.unwrap();
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&app)
        .await
        .unwrap();
    assert_eq!(count, 1, "it reads what it appended");

    for statement in [
        "UPDATE events SET event_type = 'changed'",
        "DELETE FROM events",
        "TRUNCATE events",
        "ALTER TABLE events DISABLE TRIGGER ALL",
        "ALTER TABLE events DISABLE TRIGGER events_refuse_update_delete",
        "DROP TRIGGER events_refuse_update_delete ON events",
        "DROP TABLE events",
        "ALTER TABLE events ADD COLUMN note text",
        "CREATE OR REPLACE FUNCTION events_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$",
    ] {
        assert_refused_for_lack_of_privilege(&app, statement).await;
    }
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&admin)
        .await
        .unwrap();
    assert_eq!(count, 1, "the event is still there");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn the_application_role_writes_the_read_models_and_the_working_tables_but_creates_and_alters_nothing(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let (_admin, app) = admin_and_app(options).await;
    for statement in [
        "INSERT INTO projection_checkpoints (name, transaction_id, position) VALUES ('p', 1, 1)",
        "UPDATE projection_checkpoints SET position = 2 WHERE name = 'p'",
        "DELETE FROM followups_view",
        "DELETE FROM notification_inbox",
        "DELETE FROM digest_entries",
        "DELETE FROM scheduler_firings",
        "DELETE FROM rule_outcomes",
    ] {
        sqlx::query(statement)
            .execute(&app)
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
    }
    // No tables of its own, no changes to the read models' structure: a rebuild runs as the
    // owner. Nothing it could plant would be found by a migration either.
    for statement in [
        "CREATE TABLE planted (id int)",
        "CREATE FUNCTION public.format(text, text) RETURNS text LANGUAGE sql AS 'SELECT $1'",
        "DROP TABLE followups_view",
        "ALTER TABLE followups_view ADD COLUMN note text",
    ] {
        assert_refused_for_lack_of_privilege(&app, statement).await;
    }
}
