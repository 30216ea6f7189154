//! The caseworkers' web inbox (in Danish): a small static application under `/app/` that
//! uses the JSON API with the caller's token, and the live stream for updates. The files are
//! in `services/api/web/` and compiled into the binary, so nothing is downloaded or built at
//! run time.
//!
//! Sign-in: the pages send the same bearer token as any API client. With an identity provider
//! and the web inbox's client id (`FOLLOWUP_OIDC_ISSUER`, `FOLLOWUP_OIDC_CLIENT_ID`), they
//! sign in with it: authorization code flow with PKCE in the browser (a public client, no
//! secret), the refresh token or a new sign-in before the access token expires, sign-out at
//! the provider; `/app/config.json` tells them the provider's endpoints. For development and
//! the demo, `FOLLOWUP_DEV_LOGIN=true` adds a sign-in form that mints a token for any user,
//! institution and team (`POST /app/dev-token`); the page says so on screen. Without that
//! setting the route does not exist, and without a provider the sign-in page asks for a
//! token.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{Duration, Utc};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::routes::ApiJson;
use crate::{ApiError, AppState, Claims};

const INDEX: &str = include_str!("../web/index.html");
const SCRIPT: &str = include_str!("../web/app.js");
const STYLE: &str = include_str!("../web/app.css");

/// How long a development token lasts.
const DEV_TOKEN_HOURS: i64 = 12;

/// The routes of the web application.
pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/app/") }))
        .route("/app", get(|| async { Redirect::to("/app/") }))
        .route(
            "/app/",
            get(|| async { file("text/html; charset=utf-8", INDEX) }),
        )
        .route(
            "/app/app.js",
            get(|| async { file("text/javascript; charset=utf-8", SCRIPT) }),
        )
        .route(
            "/app/app.css",
            get(|| async { file("text/css; charset=utf-8", STYLE) }),
        )
        .route("/app/config.json", get(config))
        .route("/app/dev-token", post(dev_token))
}

fn file(content_type: &'static str, body: &'static str) -> Response {
    (
        [(CONTENT_TYPE, content_type), (CACHE_CONTROL, "no-cache")],
        body,
    )
        .into_response()
}

/// What the web inbox needs to know before it signs in: whether the development sign-in is
/// on, and the identity provider's endpoints and the inbox's client there (`oidc`, `null`
/// without one; `{"error": …}` while the provider cannot be reached).
async fn config(State(state): State<Arc<AppState>>) -> Response {
    let oidc = match state.auth.oidc() {
        Some(oidc) => match &oidc.settings().client_id {
            None => Value::Null,
            Some(client_id) => match oidc.metadata().await {
                Ok(metadata) => json!({
                    "client_id": client_id,
                    "scopes": oidc.settings().scopes,
                    "authorization_endpoint": metadata.authorization_endpoint,
                    "token_endpoint": metadata.token_endpoint,
                    "end_session_endpoint": metadata.end_session_endpoint,
                }),
                Err(error) => {
                    tracing::warn!(error = %error, "the web inbox cannot be told the identity provider's endpoints");
                    json!({ "error": "unreachable" })
                }
            },
        },
        None => Value::Null,
    };
    let links: serde_json::Map<String, Value> = state
        .esas_links
        .iter()
        .map(|(kind, template)| (kind.clone(), Value::String(template.clone())))
        .collect();
    Json(json!({ "dev_login": state.dev_login, "oidc": oidc, "esas_links": links })).into_response()
}

/// The body of `POST /app/dev-token`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevTokenBody {
    sub: String,
    inst: String,
    #[serde(default)]
    teams: Vec<String>,
    #[serde(default)]
    roles: Vec<String>,
}

/// A token for whoever asks: only with `FOLLOWUP_DEV_LOGIN=true`, otherwise 404.
async fn dev_token(
    State(state): State<Arc<AppState>>,
    ApiJson(body): ApiJson<DevTokenBody>,
) -> Result<Response, ApiError> {
    if !state.dev_login {
        return Err(ApiError::not_found("no such route"));
    }
    let claims = Claims {
        sub: body.sub.trim().to_owned(),
        inst: body.inst.trim().to_owned(),
        teams: body
            .teams
            .iter()
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty())
            .collect(),
        roles: if body.roles.is_empty() {
            vec!["caseworker".into()]
        } else {
            body.roles
        },
        exp: (Utc::now() + Duration::hours(DEV_TOKEN_HOURS)).timestamp(),
        iat: Some(Utc::now().timestamp()),
        nbf: None,
    };
    let token = state.auth.mint(&claims);
    // The same checks as every request: a token for an invalid user or institution is refused.
    state.auth.viewer(Some(&format!("Bearer {token}"))).await?;
    Ok(Json(json!({ "token": token })).into_response())
}
