//! The whole service in one process, for the end-to-end tests in `tests/tests/`: every role
//! of the server on a private NATS server and a test's database, with the API on a free port.
//!
//! # Layout
//! - [`Pipeline`], [`start_pipeline`], [`start_pipeline_with`]: the running service, and
//!   publishing contract examples.
//! - [`token`], [`token_with_role`]: bearer tokens for the API.

use async_nats::HeaderMap;
use bytes::Bytes;
use followup_api::{Auth, Claims};
use followup_messaging::{ensure_streams, publish_event, CloudEvent, JetStream, Streams};
use followup_rules::RuleSet;
use followup_testkit::NatsServer;
use followupd::{App, Role, Settings};
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
    /// The running roles, built by the server's own composition root.
    app: App,
}

/// Starts the roles of `followupd` (rule worker, notifier, projector, relay, API) on
/// `pool`'s database, as the server does; `dev_login` turns on the web inbox's development
/// sign-in.
pub async fn start_pipeline(pool: PgPool, dev_login: bool) -> Pipeline {
    start_pipeline_with(pool, |settings| settings.dev_login = dev_login).await
}

/// The same, with the settings `configure` changes (an identity provider, say).
pub async fn start_pipeline_with(pool: PgPool, configure: impl FnOnce(&mut Settings)) -> Pipeline {
    let nats = NatsServer::start();
    let client = nats.client().await;
    let js = async_nats::jetstream::new(client.clone());
    ensure_streams(&js, &Streams::default()).await.unwrap();
    let mut settings = Settings {
        streams: Streams::default(),
        rules: RuleSet::builtin(),
        scheduler: None,
        jwt_secret: Some(SECRET.to_owned()),
        dev_login: false,
        http: Some(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap()),
        ready_max_lag: Some(std::time::Duration::from_secs(30)),
        hold_back_warn: std::time::Duration::from_secs(10),
        token_max_lifetime: followup_api::auth::DEFAULT_MAX_LIFETIME,
        institutions: followup_domain::KnownInstitutions::default(),
        max_deliveries: 10,
        ready_max_failing: None,
        http_header_timeout: followup_api::DEFAULT_HEADER_READ_TIMEOUT,
        oidc: None,
        accept_hs256: true,
        scim_tokens: Vec::new(),
        esas_links: Vec::new(),
    };
    configure(&mut settings);
    let roles = [
        Role::RuleWorker,
        Role::Notifier,
        Role::Projector,
        Role::Relay,
        Role::Api,
    ];
    let app = App::start(
        &roles,
        pool,
        client,
        js.clone(),
        settings,
        CancellationToken::new(),
    )
    .await
    .unwrap();
    let base = format!("http://{}", app.http_addr.unwrap());
    Pipeline {
        _nats: nats,
        js,
        base,
        http: reqwest::Client::new(),
        app,
    }
}

impl Pipeline {
    /// Publishes a contract example on its subject, as upstream does.
    pub async fn publish_example(&self, name: &str) {
        self.publish(std::fs::read(format!("{EXAMPLES}/{name}.json")).unwrap())
            .await;
    }

    /// Publishes a CloudEvent (as JSON) on its subject, as upstream does.
    pub async fn publish_cloudevent(&self, cloudevent: &serde_json::Value) {
        self.publish(serde_json::to_vec(cloudevent).unwrap()).await;
    }

    async fn publish(&self, payload: Vec<u8>) {
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
        self.app.stop().await.unwrap();
    }
}

/// A caseworker's token: user `sub` at `inst`, member of `team`.
pub fn token(sub: &str, inst: &str, team: &str) -> String {
    token_with_role(sub, inst, team, "caseworker")
}

/// A token of user `sub` at `inst`, member of `team`, with `role` (`caseworker`, `admin`).
pub fn token_with_role(sub: &str, inst: &str, team: &str, role: &str) -> String {
    Auth::new(SECRET).mint(&Claims {
        sub: sub.into(),
        inst: inst.into(),
        teams: vec![team.into()],
        roles: vec![role.into()],
        exp: (chrono::Utc::now() + chrono::Duration::hours(1)).timestamp(),
        iat: Some(chrono::Utc::now().timestamp()),
        nbf: None,
    })
}
