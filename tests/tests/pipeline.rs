//! The whole pipeline in one process, against a private NATS server and a fresh database:
//! the contract examples go in on NATS; exceptions and tasks come out of the API, and every
//! follow-up event goes out on the `FOLLOWUPS` stream.

use std::time::Duration;

use followup_store::MIGRATOR;
use followup_tests::{start_pipeline, token, Pipeline};
use serde_json::Value;
use sqlx::PgPool;

#[sqlx::test(migrator = "MIGRATOR")]
async fn contract_examples_become_follow_ups_in_the_api_and_events_on_the_outbound_stream(
    pool: PgPool,
) {
    let pipeline = start_pipeline(pool, false).await;
    let (js, base) = (pipeline.js.clone(), pipeline.base.clone());

    for name in [
        "applicant_transfer.completed_with_defects",
        "applicant_transfer.failed",
        "guest_student.data_share_requested",
        "education_structure.dates_changed",
        "education_structure.dates_changed.draft",
        "applicant_transfer.succeeded",
    ] {
        pipeline.publish_example(name).await;
    }

    let http = pipeline.http.clone();
    let list = |inst: &'static str, team: &'static str| {
        let (http, base, token) = (http.clone(), base.clone(), token("caseworker", inst, team));
        async move {
            let page: Value = http
                .get(format!("{base}/v1/followups"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            page["items"].as_array().unwrap().clone()
        }
    };

    // The pipeline is asynchronous: wait (bounded) until what the examples promise is there.
    let mut kp = Vec::new();
    for _ in 0..200 {
        kp = list("KP", "admissions").await;
        let done = kp.len() == 2 && kp.iter().any(|f| f["status"] == "completed");
        if done {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let by_application = |app: &str| {
        kp.iter()
            .find(|f| f["regarding"]["id"] == app)
            .cloned()
            .unwrap_or_default()
    };
    assert_eq!(
        by_application("APP-2026-104711")["status"],
        "completed",
        "{kp:?}"
    );
    assert_eq!(
        by_application("APP-2026-104711")["status_reason"],
        "resolved_by_job"
    );
    assert_eq!(by_application("APP-2026-104712")["status"], "open");
    assert!(by_application("APP-2026-104712")["description"]
        .as_str()
        .unwrap()
        .contains("010203-xxxx"));
    let ucl = list("UCL", "studieadministration").await;
    assert_eq!(ucl.len(), 1);
    assert_eq!(ucl[0]["kind"], "task");

    // Four events (two created, one completed, one created task) go out, once each, and each
    // once more for live delivery to the team that owns its follow-up.
    let stream = js.get_stream("FOLLOWUPS").await.unwrap();
    let mut relayed = 0;
    for _ in 0..200 {
        relayed = stream.clone().info().await.unwrap().state.messages;
        if relayed >= 8 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(relayed, 8);

    pipeline.stop().await;
}

/// A client of `GET /v1/stream`: reads server-sent events off a streaming response.
struct SseClient {
    response: reqwest::Response,
    buffer: String,
}

/// One server-sent event.
#[derive(Debug)]
struct Sse {
    id: String,
    event: String,
    data: Value,
}

impl SseClient {
    async fn connect(pipeline: &Pipeline, token: &str, last_event_id: Option<&str>) -> Self {
        let mut request = pipeline
            .http
            .get(format!("{}/v1/stream", pipeline.base))
            .bearer_auth(token);
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        Self {
            response,
            buffer: String::new(),
        }
    }

    /// The next event (heartbeat comments skipped), waiting at most 20 seconds.
    async fn next(&mut self) -> Sse {
        tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                if let Some(end) = self.buffer.find("\n\n") {
                    let block: String = self.buffer.drain(..end + 2).collect();
                    let (mut id, mut event, mut data) =
                        (String::new(), String::new(), String::new());
                    for line in block.lines() {
                        if let Some(v) = line.strip_prefix("id:") {
                            id = v.trim().to_owned();
                        } else if let Some(v) = line.strip_prefix("event:") {
                            event = v.trim().to_owned();
                        } else if let Some(v) = line.strip_prefix("data:") {
                            data.push_str(v.trim());
                        }
                    }
                    if !data.is_empty() {
                        return Sse {
                            id,
                            event,
                            data: serde_json::from_str(&data).unwrap(),
                        };
                    }
                    continue;
                }
                let chunk = self.response.chunk().await.unwrap().expect("stream open");
                self.buffer.push_str(&String::from_utf8_lossy(&chunk));
            }
        })
        .await
        .expect("an event within 20 seconds")
    }

    /// The next event that creates a notification.
    async fn next_notification(&mut self) -> Sse {
        loop {
            let event = self.next().await;
            if event.event == "created" && event.data["data"]["kind"] == "notification" {
                return event;
            }
        }
    }
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_subscriber_sees_its_notification_arrive_live_and_catches_up_after_a_reconnect(
    pool: PgPool,
) {
    let pipeline = start_pipeline(pool, false).await;
    let anne = token("anne", "KP", "uddannelse");
    let bo = token("bo", "KP", "uddannelse");
    let subscribed = pipeline
        .http
        .post(format!("{}/v1/subscriptions", pipeline.base))
        .bearer_auth(&anne)
        .json(&serde_json::json!({
            "topic": "education_structure.dates_changed",
            "filter": {"education": "Sygeplejerskeuddannelsen"},
            "delivery": "immediate",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(subscribed.status(), 201);

    let mut live = SseClient::connect(&pipeline, &anne, None).await;
    pipeline
        .publish_example("education_structure.dates_changed")
        .await;
    let first = live.next_notification().await;
    assert_eq!(first.data["institution"], "KP");
    assert!(first.data["data"]["event"]["subject"]
        .as_str()
        .unwrap()
        .starts_with("Startdato for Sygeplejerskeuddannelsen"));

    // Anne goes offline; meanwhile Bo sends her a notification by hand.
    drop(live);
    let sent = pipeline
        .http
        .post(format!("{}/v1/followups", pipeline.base))
        .bearer_auth(&bo)
        .json(&serde_json::json!({
            "kind": "notification",
            "subject": "Husk mødet om studiestart",
            "owner": {"type": "user", "id": "anne"},
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 201);

    let mut resumed = SseClient::connect(&pipeline, &anne, Some(&first.id)).await;
    let missed = resumed.next_notification().await;
    assert_eq!(
        missed.data["data"]["event"]["subject"],
        "Husk mødet om studiestart"
    );
    assert!(missed.id.parse::<u64>().unwrap() > first.id.parse::<u64>().unwrap());

    let inbox: Value = pipeline
        .http
        .get(format!("{}/v1/dashboard", pipeline.base))
        .bearer_auth(&anne)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(inbox["unread_notifications"], 2);
    drop(resumed);
    pipeline.stop().await;
}
