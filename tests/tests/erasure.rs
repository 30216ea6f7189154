//! GDPR erasure end to end, on the whole pipeline: an applicant's data goes in on NATS, an
//! admin asks for the applicant's erasure over the API, and the data is gone from every store
//! the service keeps (the events as stored, the read model, the API's answers, the outbound
//! stream and the live stream that replays it, the dead letters), while their exception stays,
//! anonymised and counted; a replay of the inbound message does not bring it back, a rebuild
//! gives the same anonymised state, and `followupctl verify` finds nothing left.

use std::time::Duration;

use async_nats::HeaderMap;
use bytes::Bytes;
use followup_messaging::{holds_token, scan_matching};
use followup_store::MIGRATOR;
use followup_tests::{start_pipeline, token, token_with_role, Pipeline, EXAMPLES};
use followupctl::verify::{self, VerifyArgs};
use serde_json::{json, Value};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

/// The applicant of the `applicant_transfer.failed` example, and their application.
const APPLICANT: &str = "ANS-88124";
const APPLICATION: &str = "APP-2026-104712";
/// The applicant of the `completed_with_defects` example, who stays.
const OTHER_APPLICANT: &str = "ANS-88123";

async fn get(pipeline: &Pipeline, token: &str, path: &str) -> Value {
    pipeline
        .http
        .get(format!("{}{path}", pipeline.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Waits (bounded) until `done` holds.
async fn eventually<F: std::future::Future<Output = bool>>(
    what: &str,
    mut done: impl FnMut() -> F,
) {
    for _ in 0..300 {
        if done().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting until {what}");
}

async fn stream_messages(pipeline: &Pipeline, stream: &str) -> u64 {
    let mut stream = pipeline.js.get_stream(stream).await.unwrap();
    stream.info().await.unwrap().state.messages
}

/// Every message of the live stream `token` gets, replayed from the start, as text: read
/// until one holds `until`.
async fn live_stream_replayed(pipeline: &Pipeline, token: &str, until: &str) -> String {
    let mut response = pipeline
        .http
        .get(format!("{}/v1/stream", pipeline.base))
        .bearer_auth(token)
        .header("Last-Event-ID", "0")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut text = String::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), async {
        while !text.contains(until) {
            let chunk = response.chunk().await.unwrap().expect("stream open");
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await;
    assert!(
        text.contains(until),
        "the live stream replays up to {until}: {text}"
    );
    text
}

/// `followupctl verify --subject <subject>` finds nothing, the read model equals a rebuild.
async fn assert_nothing_left(pool: &PgPool, subject: &str) {
    let args = VerifyArgs {
        skip_projection: false,
        subjects: vec![subject.to_owned()],
    };
    let report = verify::run(
        &args,
        pool.clone(),
        None,
        &CancellationToken::new(),
        &mut |_| {},
    )
    .await
    .unwrap();
    assert!(report.ok, "{report:#?}");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn an_erased_applicant_is_gone_from_every_store_while_their_exception_stays_counted(
    pool: PgPool,
) {
    // Given the applicant's failed transfer, another applicant's, and a dead letter that
    // names the applicant (a malformed copy of their message)
    let pipeline = start_pipeline(pool.clone(), false).await;
    pipeline.publish_example("applicant_transfer.failed").await;
    pipeline
        .publish_example("applicant_transfer.completed_with_defects")
        .await;
    let failed: Value = serde_json::from_slice(
        &std::fs::read(format!("{EXAMPLES}/applicant_transfer.failed.json")).unwrap(),
    )
    .unwrap();
    let mut malformed = failed.clone();
    malformed["id"] = json!("a-malformed-copy");
    malformed["data"]
        .as_object_mut()
        .unwrap()
        .remove("job_run_id");
    pipeline.publish_cloudevent(&malformed).await;
    let caseworker = token("caseworker", "KP", "admissions");
    let admin = token_with_role("dpo", "KP", "admissions", "admin");
    eventually(
        "both exceptions are listed and their events relayed",
        || async {
            let page = get(&pipeline, &caseworker, "/v1/followups").await;
            page["items"].as_array().map_or(0, Vec::len) == 2
                && stream_messages(&pipeline, "FOLLOWUPS").await >= 4
                && stream_messages(&pipeline, "FOLLOWUPS_DLQ").await == 1
        },
    )
    .await;
    let before: Value = get(&pipeline, &caseworker, "/v1/followups").await;
    let exception = before["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["regarding"]["id"] == APPLICATION)
        .unwrap()
        .clone();
    let id = exception["id"].as_str().unwrap().to_owned();
    assert_eq!(
        exception["person"],
        json!({"type": "applicant", "id": APPLICANT})
    );
    // Its personal data is stored sealed, never in plaintext, from the start.
    let plaintext = |token: &'static str| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM events WHERE strpos(payload::text, $1) > 0",
            )
            .bind(token)
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    assert_eq!(plaintext(APPLICANT).await, 0);
    assert_eq!(plaintext(APPLICATION).await, 0);
    // A caseworker's note about the applicant is sealed the same way.
    let noted = pipeline
        .http
        .post(format!("{}/v1/followups/{id}/notes", pipeline.base))
        .bearer_auth(&caseworker)
        .json(&json!({"text": "Talt med ansøgeren om den manglende karakter"}))
        .send()
        .await
        .unwrap();
    assert_eq!(noted.status(), 201);
    assert_eq!(plaintext("manglende karakter").await, 0);

    // When a caseworker asks for the erasure, it is refused; an admin's is carried out
    let request = json!({"subject": format!("applicant:{APPLICANT}"), "reason": "Anmodning om sletning, sag 2026-14"});
    let refused = pipeline
        .http
        .post(format!("{}/v1/erasures", pipeline.base))
        .bearer_auth(&caseworker)
        .json(&request)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    let response = pipeline
        .http
        .post(format!("{}/v1/erasures", pipeline.base))
        .bearer_auth(&admin)
        .json(&request)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let report: Value = response.json().await.unwrap();
    assert_eq!(report["erased"], json!([id]), "{report}");
    assert_eq!(report["held"], json!([]));
    assert!(report["purged_messages"].as_u64().unwrap() >= 3, "{report}");

    // Then the API shows the exception anonymised, still listed and counted
    let shown = get(&pipeline, &caseworker, &format!("/v1/followups/{id}")).await;
    assert_eq!(shown["subject"], "[slettet]");
    assert_eq!(shown["description"], "[slettet]");
    assert_eq!(
        shown["regarding"],
        json!({"type": "application", "id": "[slettet]"})
    );
    assert_eq!(shown["person"], Value::Null);
    assert!(shown["erased_at"].is_string());
    assert_eq!(shown["notes"][0]["text"], "[slettet]");
    let after = get(&pipeline, &caseworker, "/v1/followups").await;
    assert_eq!(after["items"].as_array().unwrap().len(), 2);
    let dashboard = get(&pipeline, &caseworker, "/v1/dashboard").await;
    assert_eq!(dashboard["open_by_kind"]["exception"], 2, "{dashboard}");
    let history = get(
        &pipeline,
        &caseworker,
        &format!("/v1/followups/{id}/history"),
    )
    .await;
    let history_text = history.to_string();
    assert!(!history_text.contains(APPLICANT) && !history_text.contains(APPLICATION));
    let erased = history["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "erased")
        .expect("the history records the erasure");
    assert_eq!(erased["actor"], json!({"type": "user", "id": "dpo"}));
    assert_eq!(
        erased["data"]["reason"],
        "Anmodning om sletning, sag 2026-14"
    );
    // And the other applicant's exception is untouched
    assert!(after.to_string().contains(OTHER_APPLICANT));

    // And no store holds the applicant any more: events, read model, streams
    assert_eq!(plaintext(APPLICANT).await, 0);
    let in_read_model: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM followups_view WHERE strpos(doc::text, $1) > 0 OR strpos(doc::text, $2) > 0",
    )
    .bind(APPLICANT)
    .bind(APPLICATION)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(in_read_model, 0);
    for (stream, filter) in [
        ("FOLLOWUPS", "followups.>"),
        ("FOLLOWUPS_DLQ", "followups.dlq.>"),
    ] {
        let found = scan_matching(&pipeline.js, stream, filter, |p| {
            holds_token(p, APPLICANT) || holds_token(p, APPLICATION)
        })
        .await
        .unwrap();
        assert!(
            found.is_empty(),
            "{stream} still holds the applicant: {found:?}"
        );
    }
    // And the live stream, replayed from its start, delivers the erasure and not the data
    let live = live_stream_replayed(&pipeline, &caseworker, "dk.esas.followup.erased").await;
    assert!(
        !live.contains(APPLICANT) && !live.contains(APPLICATION),
        "{live}"
    );
    assert!(live.contains(OTHER_APPLICANT));

    // When the inbound message is replayed (past JetStream's duplicate window: another
    // message id), then a later message, the replay changes nothing
    let events_before: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&pool)
        .await
        .unwrap();
    let mut headers = HeaderMap::new();
    headers.insert("Nats-Msg-Id", "replayed-after-the-duplicate-window");
    pipeline
        .js
        .publish_with_headers(
            "esas.jobs.applicant_transfer.failed",
            headers,
            Bytes::from(serde_json::to_vec(&failed).unwrap()),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    pipeline
        .publish_example("applicant_transfer.succeeded")
        .await;
    eventually("the later message is processed", || async {
        let page = get(&pipeline, &caseworker, "/v1/followups").await;
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["status"] == "completed")
    })
    .await;
    let events_after: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(events_after, events_before + 1, "only the success is new");
    let shown = get(&pipeline, &caseworker, &format!("/v1/followups/{id}")).await;
    assert_eq!(shown["subject"], "[slettet]");
    assert_eq!(plaintext(APPLICANT).await, 0);

    // And a rebuild gives the same anonymised state, and verify finds nothing left
    pipeline.stop().await;
    assert_nothing_left(&pool, &format!("applicant:{APPLICANT}")).await;
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn an_erased_guest_student_is_gone_from_their_task_notifications_and_digest_entries(
    pool: PgPool,
) {
    // Given a caseworker at UCL subscribed to data share requests, once at once and once in
    // the daily digest, and a request about guest student GST-2026-0042
    const STUDENT: &str = "GST-2026-0042";
    let pipeline = start_pipeline(pool.clone(), false).await;
    let anne = token("anne", "UCL", "studieadministration");
    for delivery in ["immediate", "daily_digest"] {
        let subscribed = pipeline
            .http
            .post(format!("{}/v1/subscriptions", pipeline.base))
            .bearer_auth(&anne)
            .json(&json!({"topic": "guest_student.data_share_requested", "filter": {}, "delivery": delivery}))
            .send()
            .await
            .unwrap();
        assert_eq!(subscribed.status(), 201);
    }
    pipeline
        .publish_example("guest_student.data_share_requested")
        .await;
    let digest_entries = || {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, String>("SELECT summary FROM digest_entries")
                .fetch_all(&pool)
                .await
                .unwrap()
        }
    };
    eventually(
        "the task, the notification and the digest entry are there",
        || async {
            let page = get(&pipeline, &anne, "/v1/followups").await;
            page["items"].as_array().map_or(0, Vec::len) == 2 && digest_entries().await.len() == 1
        },
    )
    .await;
    assert!(digest_entries().await[0].contains(STUDENT));

    // When UCL's admin erases the guest student
    let admin = token_with_role("dpo", "UCL", "studieadministration", "admin");
    let response = pipeline
        .http
        .post(format!("{}/v1/erasures", pipeline.base))
        .bearer_auth(&admin)
        .json(&json!({"subject": format!("guest_student:{STUDENT}"), "reason": "Anmodning 2026-9"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let report: Value = response.json().await.unwrap();

    // Then the task and the notification are erased, and the digest entry no longer names them
    assert_eq!(report["erased"].as_array().unwrap().len(), 2, "{report}");
    assert_eq!(report["digest_entries"], 1);
    let entries = digest_entries().await;
    assert!(
        !entries[0].contains(STUDENT) && entries[0].contains("[slettet]"),
        "{entries:?}"
    );
    let page = get(&pipeline, &anne, "/v1/followups").await;
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert!(items.iter().all(|f| f["subject"] == "[slettet]"), "{page}");
    let inbox = get(&pipeline, &anne, "/v1/notifications").await;
    assert!(!inbox.to_string().contains(STUDENT), "{inbox}");
    pipeline.stop().await;
    assert_nothing_left(&pool, &format!("guest_student:{STUDENT}")).await;
}
