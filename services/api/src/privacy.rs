//! GDPR routes for an institution's admins: erasure requests (`POST /v1/erasures`) and legal
//! holds (`PUT` and `DELETE /v1/followups/{id}/legal-hold`). Both need the `admin` role, and
//! act within the admin's institution only. What an erasure does is in
//! [`followup_privacy`]; the procedure is in `docs/operations.md` ("Erasure requests").

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{post, put};
use axum::{Json, Router};
use chrono::Utc;
use followup_domain::{Actor, Command, DataSubject, Reason};
use followup_privacy::{ErasureRequest, Privacy};
use serde::Deserialize;

use crate::auth::Caller;
use crate::routes::{command, gdpr_or_invalid, ApiJson, IdPath};
use crate::{ApiError, AppState};

/// The GDPR routes.
pub fn router() -> Router<Arc<AppState>> {
    Router::new().route("/v1/erasures", post(erase)).route(
        "/v1/followups/{id}/legal-hold",
        put(place_hold).delete(release_hold),
    )
}

/// The body of an erasure request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EraseBody {
    /// `student:<id>`, `applicant:<id>`, `guest_student:<id>` or `user:<id>`.
    subject: String,
    /// Why (a case number).
    reason: String,
}

/// The body of a legal hold.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HoldBody {
    /// Why the follow-up must be kept.
    reason: String,
}

/// 403 unless the caller is an admin of its institution.
fn admin_only(caller: &Caller) -> Result<(), ApiError> {
    if caller.0.admin {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        "admin_only",
        "only an admin of the institution may do this",
    ))
}

/// Erases a data subject's personal data at the caller's institution: 200 with what was
/// erased, held and purged.
async fn erase(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiJson(body): ApiJson<EraseBody>,
) -> Result<Response, ApiError> {
    admin_only(&caller)?;
    let subject: DataSubject = body
        .subject
        .parse()
        .map_err(|e| gdpr_or_invalid(&e).at("subject"))?;
    let reason = Reason::parse(&body.reason).map_err(|e| gdpr_or_invalid(&e))?;
    let mut privacy = Privacy::new(state.followups.clone());
    if let Some(client) = &state.nats {
        privacy = privacy.with_streams(
            async_nats::jetstream::new(client.clone()),
            state.streams.clone(),
        );
    }
    let request = ErasureRequest {
        institution: Some(caller.0.institution.clone()),
        subject,
        reason,
        actor: Actor::User {
            id: caller.0.user.clone(),
        },
    };
    let report = privacy
        .erase_subject(&request, Utc::now())
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "erasure failed");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the erasure could not finish; send the same request again to finish it",
            )
        })?;
    Ok((StatusCode::OK, Json(report)).into_response())
}

async fn place_hold(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    IdPath(id): IdPath,
    headers: HeaderMap,
    ApiJson(body): ApiJson<HoldBody>,
) -> Result<Response, ApiError> {
    admin_only(&caller)?;
    let reason = Reason::parse(&body.reason).map_err(|e| gdpr_or_invalid(&e))?;
    command(&state, &caller, id, &headers, |_| {
        Ok(Command::PlaceLegalHold { reason })
    })
    .await
}

async fn release_hold(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    IdPath(id): IdPath,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    admin_only(&caller)?;
    command(&state, &caller, id, &headers, |_| {
        Ok(Command::ReleaseLegalHold)
    })
    .await
}
