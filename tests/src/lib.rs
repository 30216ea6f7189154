//! The whole service in one process, for the end-to-end tests in `tests/tests/`: every role
//! of the server on a private NATS server and a test's database, with the API on a free port.
//!
//! # Layout
//! - [`Pipeline`], [`start_pipeline`]: the running service, and publishing contract examples.
//! - [`token`]: a caseworker's bearer token for the API.

use std::sync::Arc;

use async_nats::HeaderMap;
use bytes::Bytes;
use followup_api::{AppState, Auth, Claims};
use followup_messaging::{ensure_streams, publish_event, CloudEvent, JetStream, Streams};
use followup_notifier::{Notifier, NotifierConfig};
use followup_readmodel::{Projector, ReadModel};
use followup_relay::Relay;
use followup_rule_worker::{RuleWorker, WorkerConfig};
use followup_rules::RuleSet;
use followup_store::followups::upcaster;
use followup_store::{EventStore, FollowUps};
use followup_testkit::NatsServer;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

/// The API's JWT secret in these tests.
pub const SECRET: &str = "an-end-to-end-secret-that-is-long-enough";
/// The contract examples.
pub const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/contracts/examples");

/// Every role of the server in this process, on a private NATS server and the test's
/// database, with the API on a free port.
#[derive(Debug)]
pub struct Pipeline {
    /// Keeps the NATS server alive for the test.
    _nats: NatsServer,
    /// For publishing inbound messages and reading the outbound stream.
    pub js: JetStream,
    /// The API's base URL (`http://127.0.0.1:<port>`).
    pub base: String,
    /// An HTTP client for the API.
    pub http: reqwest::Client,
    /// Stops every role.
    shutdown: CancellationToken,
    /// The roles' tasks, awaited on stop.
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Starts every role (rule worker, notifier, projector, relay, API) on `pool`'s database;
/// `dev_login` turns on the web inbox's development sign-in.
pub async fn start_pipeline(pool: PgPool, dev_login: bool) -> Pipeline {
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
    let notifier = Notifier::new(
        js.clone(),
        followups.clone(),
        read_model.clone(),
        NotifierConfig::default(),
    )
    .await
    .unwrap();
    let mut tasks = vec![
        tokio::spawn(worker.run(shutdown.clone())),
        tokio::spawn(notifier.run(shutdown.clone())),
        tokio::spawn(Projector::new(store.clone(), read_model.clone()).run(shutdown.clone())),
        tokio::spawn(Relay::new(store.clone(), js.clone()).run(shutdown.clone())),
    ];
    let state = Arc::new(AppState {
        dev_login,
        ..AppState::new(followups, read_model, Auth::new(SECRET), Some(client))
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let api_shutdown = shutdown.clone();
    tasks.push(tokio::spawn(async move {
        followup_api::serve(listener, state, api_shutdown)
            .await
            .unwrap();
    }));
    Pipeline {
        _nats: nats,
        js,
        base,
        http: reqwest::Client::new(),
        shutdown,
        tasks,
    }
}

impl Pipeline {
    /// Publishes a contract example on its subject, as upstream does.
    pub async fn publish_example(&self, name: &str) {
        let payload = std::fs::read(format!("{EXAMPLES}/{name}.json")).unwrap();
        let event = CloudEvent::parse(&payload).unwrap();
        publish_event(
            &self.js,
            event.nats_subject().unwrap(),
            &event.id,
            HeaderMap::new(),
            Bytes::from(payload),
        )
        .await
        .unwrap();
    }

    /// Stops every role and waits until each has drained.
    pub async fn stop(self) {
        self.shutdown.cancel();
        for task in self.tasks {
            task.await.unwrap();
        }
    }
}

/// A caseworker's token: user `sub` at `inst`, member of `team`.
pub fn token(sub: &str, inst: &str, team: &str) -> String {
    Auth::new(SECRET).mint(&Claims {
        sub: sub.into(),
        inst: inst.into(),
        teams: vec![team.into()],
        roles: vec!["caseworker".into()],
        exp: (chrono::Utc::now() + chrono::Duration::hours(1)).timestamp(),
    })
}
