//! Bearer tokens: HS256 JWTs with the claims of design section 7 (`sub`, `inst`, `teams`,
//! `roles`, `exp`). A valid token becomes a [`Viewer`]; anything else is a 401.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use followup_domain::{InstitutionId, TeamId, UserId, Viewer};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

use crate::{ApiError, AppState};

/// The claims of a token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    /// The user's institution (the tenant).
    pub inst: String,
    /// The user's teams.
    #[serde(default)]
    pub teams: Vec<String>,
    /// `caseworker`, `admin` and/or `ops`.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Expiry, seconds since the epoch; an expired token is refused.
    pub exp: i64,
}

/// Verifies (and, for development, mints) tokens with one HS256 secret.
pub struct Auth {
    /// Checks signatures.
    decoding: DecodingKey,
    /// Signs tokens (development tokens, tests).
    encoding: EncodingKey,
    /// HS256 only, `exp` required, no leeway.
    validation: Validation,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Auth { .. }")
    }
}

impl Auth {
    /// Tokens signed with `secret`.
    pub fn new(secret: &str) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Self {
            decoding: DecodingKey::from_secret(secret.as_bytes()),
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            validation,
        }
    }

    /// A signed token with these claims.
    pub fn mint(&self, claims: &Claims) -> String {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
            .expect("HS256 signing cannot fail")
    }

    /// The viewer an `Authorization` header value stands for.
    pub fn viewer(&self, authorization: Option<&str>) -> Result<Viewer, ApiError> {
        self.verify(authorization).map(|(viewer, _)| viewer)
    }

    /// The viewer, and when its token expires (seconds since the epoch): for a live stream,
    /// which must end then.
    pub fn verify(&self, authorization: Option<&str>) -> Result<(Viewer, i64), ApiError> {
        let token = authorization
            .and_then(|h| h.strip_prefix("Bearer "))
            .ok_or_else(|| ApiError::unauthorized("send Authorization: Bearer <token>"))?;
        let claims = jsonwebtoken::decode::<Claims>(token.trim(), &self.decoding, &self.validation)
            .map_err(|e| ApiError::unauthorized(&format!("the token is not valid: {e}")))?
            .claims;
        let bad = |what: &str, e: &dyn std::fmt::Display| {
            ApiError::unauthorized(&format!("the token's `{what}` claim is not valid: {e}"))
        };
        let viewer = Viewer {
            user: UserId::parse(&claims.sub).map_err(|e| bad("sub", &e))?,
            institution: InstitutionId::parse(&claims.inst).map_err(|e| bad("inst", &e))?,
            teams: claims
                .teams
                .iter()
                .map(|t| TeamId::parse(t).map_err(|e| bad("teams", &e)))
                .collect::<Result<_, _>>()?,
            admin: claims.roles.iter().any(|r| r == "admin"),
        };
        Ok((viewer, claims.exp))
    }
}

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Caller(pub Viewer);

impl FromRequestParts<Arc<AppState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        state.auth.viewer(header).map(Caller)
    }
}
