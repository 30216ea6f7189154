//! Access tokens of a real OpenID Connect provider (the `oidc-provider` package, started per
//! test): accepted when the institution's provider signed them for the API, refused when
//! another issuer did or they are for another audience, and still accepted after the
//! provider rotates its keys.

use std::sync::Arc;
use std::time::Duration;

use followup_api::oidc::Oidc;
use followup_api::{AppState, Auth, Claims};
use followup_platform::config::{ClaimNames, OidcSettings};
use followup_readmodel::ReadModel;
use followup_store::followups::upcaster;
use followup_store::{EventStore, FollowUps, MIGRATOR};
use followup_testkit::{OidcOptions, OidcProvider};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::PgPool;

const SECRET: &str = "a-test-secret-that-is-long-enough-for-hs256";
const AUDIENCE: &str = "api://followups";

/// A provider whose tokens say the caller is of KP, in team `admissions`, a caseworker, with
/// the teams in `groups` (as Entra ID names them).
fn provider() -> OidcProvider {
    OidcProvider::start(OidcOptions {
        claims: json!({"*": {"inst": "KP", "groups": ["admissions"], "roles": ["caseworker"]}}),
        ..OidcOptions::default()
    })
}

fn settings(provider: &OidcProvider) -> OidcSettings {
    OidcSettings {
        issuer: provider.issuer(),
        audience: AUDIENCE.into(),
        claims: ClaimNames {
            teams: "groups".into(),
            ..ClaimNames::default()
        },
        institution: None,
        client_id: None,
        scopes: "openid profile".into(),
    }
}

/// Verifies `provider`'s tokens (fetching its keys again at once when a token names a new one).
fn auth(provider: &OidcProvider) -> Auth {
    Auth::new(SECRET).with_oidc(Oidc::new(settings(provider)).with_min_refresh(Duration::ZERO))
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// The API on a free port with `auth`; its base URL.
async fn spawn_api(pool: PgPool, auth: Auth) -> String {
    let store = EventStore::new(pool.clone()).with_upcaster(upcaster());
    let state = Arc::new(AppState::new(
        FollowUps::new(store),
        ReadModel::new(pool),
        auth,
        None,
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(followup_api::serve(
        listener,
        state,
        tokio_util::sync::CancellationToken::new(),
    ));
    base
}

async fn get(base: &str, path: &str, token: &str) -> (StatusCode, Value) {
    let response = reqwest::Client::new()
        .get(format!("{base}{path}"))
        .header("Authorization", bearer(token))
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn the_providers_rs256_and_es256_access_tokens_open_the_api_with_their_claims(pool: PgPool) {
    let provider = provider();
    let base = spawn_api(pool, auth(&provider)).await;
    for client in ["tests-rs256", "tests-es256"] {
        let token = provider.client_token(client, AUDIENCE).await;
        let (status, body) = get(&base, "/v1/dashboard", &token).await;
        assert_eq!(status, StatusCode::OK, "{client}: {body}");
        let (status, body) = get(&base, "/v1/followups?owner=team:admissions", &token).await;
        assert_eq!(status, StatusCode::OK, "{client}: {body}");
        let (_, me) = get(&base, "/v1/me", &token).await;
        assert_eq!(
            me,
            json!({"user": client, "institution": "KP", "teams": ["admissions"], "admin": false})
        );
    }
    let viewer = auth(&provider)
        .viewer(Some(&bearer(
            &provider.client_token("tests-es256", AUDIENCE).await,
        )))
        .await
        .unwrap();
    assert_eq!(viewer.user.as_str(), "tests-es256");
    assert_eq!(viewer.institution.as_str(), "KP");
    assert_eq!(
        viewer.teams.iter().map(|t| t.as_str()).collect::<Vec<_>>(),
        ["admissions"]
    );
    assert!(!viewer.admin);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn tokens_of_another_issuer_or_for_another_audience_are_refused(pool: PgPool) {
    let provider = provider();
    let stranger = OidcProvider::start(OidcOptions {
        claims: json!({"*": {"inst": "KP", "roles": ["admin"]}}),
        ..OidcOptions::default()
    });
    let base = spawn_api(pool, auth(&provider)).await;

    let foreign = stranger.client_token("tests-rs256", AUDIENCE).await;
    let (status, body) = get(&base, "/v1/dashboard", &foreign).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["code"], "unauthorized");

    let other_audience = provider
        .client_token("tests-rs256", "api://another-api")
        .await;
    let (status, body) = get(&base, "/v1/dashboard", &other_audience).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("not valid"),
        "{body}"
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn development_tokens_work_beside_the_provider_until_the_operator_refuses_them(pool: PgPool) {
    let provider = provider();
    let now = chrono::Utc::now().timestamp();
    let development = Auth::new(SECRET).mint(&Claims {
        sub: "dev-user".into(),
        inst: "KP".into(),
        teams: vec![],
        roles: vec!["caseworker".into()],
        exp: now + 600,
        iat: Some(now),
        nbf: None,
    });
    assert!(auth(&provider)
        .viewer(Some(&bearer(&development)))
        .await
        .is_ok());

    let base = spawn_api(pool, auth(&provider).refusing_hs256()).await;
    let (status, body) = get(&base, "/v1/dashboard", &development).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("FOLLOWUP_HS256_TOKENS"),
        "{body}"
    );
    let token = provider.client_token("tests-rs256", AUDIENCE).await;
    assert_eq!(get(&base, "/v1/dashboard", &token).await.0, StatusCode::OK);
}

#[tokio::test]
async fn after_the_provider_rotates_its_keys_its_new_tokens_are_accepted_and_the_old_keys_refused()
{
    let mut provider = provider();
    let auth = auth(&provider);
    let before = provider.client_token("tests-rs256", AUDIENCE).await;
    assert!(auth.viewer(Some(&bearer(&before))).await.is_ok());

    provider.restart(); // new signing keys, with new key ids
    let after = provider.client_token("tests-es256", AUDIENCE).await;
    let viewer = auth.viewer(Some(&bearer(&after))).await.unwrap();
    assert_eq!(viewer.user.as_str(), "tests-es256");
    // The keys fetched again no longer hold the old one: a token it signed is refused.
    let refused = auth.viewer(Some(&bearer(&before))).await.unwrap_err();
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn while_the_provider_cannot_be_reached_its_tokens_get_503_not_401() {
    let provider = provider();
    let auth = auth(&provider);
    let token = provider.client_token("tests-rs256", AUDIENCE).await;
    drop(provider);
    let error = auth.viewer(Some(&bearer(&token))).await.unwrap_err();
    assert_eq!(error.status, StatusCode::SERVICE_UNAVAILABLE);
}
