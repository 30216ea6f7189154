//! The whole pipeline in one process, against a private NATS server and a fresh database:
//! the contract examples go in on NATS; exceptions and tasks come out of the API, and every
//! follow-up event goes out on the `FOLLOWUPS` stream.

use std::sync::Arc;
use std::time::Duration;

use async_nats::HeaderMap;
use bytes::Bytes;
use followup_api::{AppState, Auth, Claims};
use followup_messaging::{ensure_streams, publish_event, CloudEvent, Streams};
use followup_readmodel::{Projector, ReadModel};
use followup_relay::Relay;
use followup_rule_worker::{RuleWorker, WorkerConfig};
use followup_rules::RuleSet;
use followup_store::followups::upcaster;
use followup_store::{EventStore, FollowUps, MIGRATOR};
use followup_testkit::NatsServer;
use serde_json::Value;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

const SECRET: &str = "an-end-to-end-secret-that-is-long-enough";
const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/contracts/examples");

#[sqlx::test(migrator = "MIGRATOR")]
async fn contract_examples_become_follow_ups_in_the_api_and_events_on_the_outbound_stream(
    pool: PgPool,
) {
    let nats = NatsServer::start();
    let client = nats.client().await;
    let js = async_nats::jetstream::new(client.clone());
    ensure_streams(&js, &Streams::default()).await.unwrap();
    let store = EventStore::new(pool.clone()).with_upcaster(upcaster());
    let followups = FollowUps::new(store.clone());
    let read_model = ReadModel::new(pool.clone());
    let shutdown = CancellationToken::new();

    let worker = RuleWorker::new(
        js.clone(),
        followups.clone(),
        RuleSet::builtin(),
        WorkerConfig::default(),
    )
    .await
    .unwrap();
    let roles = vec![
        tokio::spawn(worker.run(shutdown.clone())),
        tokio::spawn(Projector::new(store.clone(), read_model.clone()).run(shutdown.clone())),
        tokio::spawn(Relay::new(store.clone(), js.clone()).run(shutdown.clone())),
    ];
    let state = Arc::new(AppState {
        followups,
        read_model,
        auth: Auth::new(SECRET),
        pool: pool.clone(),
        nats: Some(client),
        metrics: followup_api::metrics_handle(),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let api = tokio::spawn(followup_api::serve(listener, state, shutdown.clone()));

    for name in [
        "applicant_transfer.completed_with_defects",
        "applicant_transfer.failed",
        "guest_student.data_share_requested",
        "education_structure.dates_changed",
        "education_structure.dates_changed.draft",
        "applicant_transfer.succeeded",
    ] {
        let payload = std::fs::read(format!("{EXAMPLES}/{name}.json")).unwrap();
        let event = CloudEvent::parse(&payload).unwrap();
        publish_event(
            &js,
            event.nats_subject().unwrap(),
            &event.id,
            HeaderMap::new(),
            Bytes::from(payload),
        )
        .await
        .unwrap();
    }

    let token = |inst: &str, team: &str| {
        Auth::new(SECRET).mint(&Claims {
            sub: "caseworker".into(),
            inst: inst.into(),
            teams: vec![team.into()],
            roles: vec!["caseworker".into()],
            exp: (chrono::Utc::now() + chrono::Duration::hours(1)).timestamp(),
        })
    };
    let http = reqwest::Client::new();
    let list = |inst: &'static str, team: &'static str| {
        let (http, base, token) = (http.clone(), base.clone(), token(inst, team));
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

    // Four events (two created, one completed, one created task) go out, once each.
    let stream = js.get_stream("FOLLOWUPS").await.unwrap();
    let mut relayed = 0;
    for _ in 0..200 {
        relayed = stream.clone().info().await.unwrap().state.messages;
        if relayed >= 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(relayed, 4);

    shutdown.cancel();
    for role in roles {
        role.await.unwrap();
    }
    api.await.unwrap().unwrap();
}
