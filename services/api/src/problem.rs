//! Errors as RFC 9457 problem documents (`application/problem+json`) with a stable `code`.
//!
//! | status | when |
//! |---|---|
//! | 400 | malformed JSON, unknown fields, a bad id, query parameter or cursor, a time outside the years 1900–9999 or with second 60, a NUL (`%00`) in the path or query (`invalid_text`) |
//! | 401 | no token, or a bad, expired or badly signed one |
//! | 403 | the caller may see the follow-up but not change it (a read share) |
//! | 404 | not found, or not visible to the caller (the same answer, on purpose) |
//! | 409 | a concurrent change, a finished (completed or closed) follow-up, an existing id |
//! | 412 | `If-Match` names another version |
//! | 413 | the body is larger than 64 KiB |
//! | 415 | the body is not `application/json` |
//! | 422 | a valid request the rules refuse: validation, GDPR guard, users creating exceptions, a NUL character in any text of the body (`invalid_text`, with `field`) |
//! | 503 | a dependency (the database, the identity provider's keys) is down |

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use followup_domain::DomainError;
use followup_readmodel::ReadError;
use followup_store::RepoError;
use serde_json::json;

/// An error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// A stable code clients can branch on (also the last part of `type`).
    pub code: &'static str,
    /// What happened and what to do, for people.
    pub detail: String,
    /// The request field at fault (validation and GDPR refusals), for showing the error next
    /// to it.
    pub field: Option<String>,
}

impl ApiError {
    /// An error with this status, code and detail.
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            code,
            detail: detail.into(),
            field: None,
        }
    }

    /// The same error, pointing at `field`.
    pub fn at(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// 400: the request itself is malformed.
    pub fn bad_request(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, detail)
    }

    /// 401.
    pub fn unauthorized(detail: &str) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", detail)
    }

    /// 404: also the answer for what the caller may not see.
    pub fn not_found(detail: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", detail)
    }

    /// 403: visible, but read-only for the caller.
    pub fn read_only() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "read_only",
            "the follow-up is shared with you for reading only; ask its owner for write access",
        )
    }

    /// 405.
    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "this route does not take this method",
        )
    }

    /// 500: a failure of ours; logged where it happens.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error.message = %detail, "request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the request failed on the server; it has been logged",
        )
    }

    /// 503.
    pub fn unavailable(detail: impl std::fmt::Display) -> Self {
        tracing::warn!(error.message = %detail, "dependency unavailable");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "a dependency of the service is unavailable; try again shortly",
        )
    }
}

fn title(status: StatusCode) -> &'static str {
    status.canonical_reason().unwrap_or("Error")
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({
            "type": format!("urn:esas:followups:problem:{}", self.code),
            "title": title(self.status),
            "status": self.status.as_u16(),
            "detail": self.detail,
            "code": self.code,
        });
        if let Some(field) = self.field {
            body["field"] = json!(field);
        }
        (
            self.status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            body.to_string(),
        )
            .into_response()
    }
}

impl From<DomainError> for ApiError {
    fn from(e: DomainError) -> Self {
        let status = match &e {
            DomainError::NotFound => StatusCode::NOT_FOUND,
            DomainError::AlreadyExists { .. }
            | DomainError::Terminal { .. }
            | DomainError::Erased
            | DomainError::UnderLegalHold { .. } => StatusCode::CONFLICT,
            _ => StatusCode::UNPROCESSABLE_ENTITY,
        };
        let field = match &e {
            DomainError::Validation(v) => Some(v.field().to_owned()),
            _ => None,
        };
        let mut error = Self::new(status, e.code(), e.to_string());
        error.field = field;
        error
    }
}

impl From<RepoError> for ApiError {
    fn from(e: RepoError) -> Self {
        match e {
            RepoError::Domain(d) => d.into(),
            RepoError::VersionMismatch { expected, actual, .. } => Self::new(
                StatusCode::PRECONDITION_FAILED,
                "precondition_failed",
                format!("If-Match names version {expected}, but the follow-up is at version {actual}; reload it and try again"),
            ),
            RepoError::Contended { .. } => Self::new(
                StatusCode::CONFLICT,
                "conflict",
                "the follow-up was changed by someone else at the same moment; reload it and try again",
            ),
            e if e.is_transient() => Self::unavailable(e),
            e => Self::internal(e),
        }
    }
}

impl From<ReadError> for ApiError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::BadCursor(detail) => Self::bad_request(
                "bad_cursor",
                format!("the cursor is not one this API gave out: {detail}"),
            ),
            e if e.is_transient() => Self::unavailable(e),
            e => Self::internal(e),
        }
    }
}
