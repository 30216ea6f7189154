//! Routes for operators and platforms: liveness, readiness, metrics, the API description.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::AppState;

/// Readiness fails when the projection is more than this many events behind.
pub const MAX_READY_LAG: i64 = 10_000;

/// The projection whose lag readiness watches.
pub const PROJECTION: &str = "followups";

/// `/healthz`, `/readyz`, `/metrics`, `/openapi.json`.
pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route(
            "/healthz",
            get(|| async { Json(json!({ "status": "ok" })) }),
        )
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .route(
            "/openapi.json",
            get(|| async { Json(crate::openapi::document()) }),
        )
}

/// 200 when the database answers, NATS is connected (where the process uses it) and the
/// projection is less than [`MAX_READY_LAG`] events behind; 503 with the failing checks
/// otherwise.
async fn ready(State(state): State<Arc<AppState>>) -> Response {
    let database = tokio::time::timeout(
        Duration::from_secs(2),
        sqlx::query("SELECT 1").execute(&state.pool),
    )
    .await
    .is_ok_and(|r| r.is_ok());
    let nats = state
        .nats
        .as_ref()
        .is_none_or(|c| c.connection_state() == async_nats::connection::State::Connected);
    let lag = if database {
        state.read_model.lag(PROJECTION).await.ok()
    } else {
        None
    };
    if let Some(lag) = lag {
        metrics::gauge!("followup_projection_lag_events", "projection" => PROJECTION)
            .set(lag as f64);
    }
    let projection = lag.is_some_and(|l| l <= MAX_READY_LAG);
    let ok = database && nats && projection;
    let body = json!({
        "status": if ok { "ready" } else { "not_ready" },
        "checks": { "database": database, "nats": nats, "projection": { "ok": projection, "lag_events": lag } },
    });
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    if let Ok(lag) = state.read_model.lag(PROJECTION).await {
        metrics::gauge!("followup_projection_lag_events", "projection" => PROJECTION)
            .set(lag as f64);
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}
