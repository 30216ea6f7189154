//! Routes for operators and platforms: liveness, readiness, metrics, the API description.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use followup_readmodel::Backlog;
use followup_store::HoldBack;

use crate::AppState;

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

/// 200 when this instance can serve: the database answers, NATS is connected (where the
/// process uses it) and the read model is not too stale (the projector's oldest unprojected
/// event has waited at most [`AppState::ready_max_lag`]) and no worker of this process has
/// kept failing for longer than [`AppState::ready_max_failing`]; 503 with the failing checks
/// otherwise. Events held back by a running transaction elsewhere on the PostgreSQL server
/// are named in the body (`projection.held_back`) but do not fail readiness: every instance
/// would fail at once, and serving a read model that trails by those events is better than
/// serving nothing (docs/operations.md says what to do about it).
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
    let (backlog, held_back) = if database {
        projection_state(&state).await
    } else {
        (None, None)
    };
    let max_lag = state.ready_max_lag.map(|d| d.as_secs_f64());
    let projection = backlog.is_some_and(|b| max_lag.is_none_or(|max| b.seconds <= max));
    let max_failing = state.ready_max_failing;
    let workers: serde_json::Map<String, serde_json::Value> = followup_platform::health::all()
        .into_iter()
        .map(|w| {
            let ok = match (w.failing_for, max_failing) {
                (Some(failing), Some(max)) => failing <= max,
                _ => true,
            };
            let body = json!({
                "ok": ok,
                "failing_seconds": w.failing_for.map(|d| d.as_secs_f64()),
                "failed_batches": w.failed_batches,
            });
            (w.worker, body)
        })
        .collect();
    let workers_ok = workers.values().all(|w| w["ok"] == true);
    let ok = database && nats && projection && workers_ok;
    let body = json!({
        "status": if ok { "ready" } else { "not_ready" },
        "checks": {
            "database": database,
            "nats": nats,
            "projection": {
                "ok": projection,
                "lag_seconds": backlog.map(|b| b.seconds),
                "lag_events": backlog.map(|b| b.events),
                "max_lag_seconds": max_lag,
                "held_back": held_back,
            },
            "workers": workers,
        },
    });
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// The projection's backlog and what a running transaction holds back (each `None` when it
/// cannot be read), recorded in the metrics as well.
async fn projection_state(state: &AppState) -> (Option<Backlog>, Option<HoldBack>) {
    let backlog = state.read_model.backlog(PROJECTION).await.ok();
    if let Some(b) = backlog {
        metrics::gauge!("followup_projection_lag_seconds", "projection" => PROJECTION)
            .set(b.seconds);
        metrics::gauge!("followup_projection_lag_events", "projection" => PROJECTION)
            .set(b.events as f64);
    }
    let held_back = match HoldBack::find(&state.pool).await {
        Ok(held_back) => {
            followup_store::hold_back::record_metrics(held_back.as_ref());
            held_back
        }
        Err(_) => None,
    };
    (backlog, held_back)
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    projection_state(&state).await;
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}
