//! Bearer tokens: access tokens of the institution's OpenID Connect provider (RS256 or
//! ES256, [`crate::oidc`]) and, for development and tests, HS256 JWTs signed with
//! `FOLLOWUP_JWT_SECRET`, both with the claims of design section 7 (`sub`, `inst`, `teams`,
//! `roles`, `exp`; a provider's claims may have other names). A valid token becomes a
//! [`Viewer`]; anything else is a 401. The token's `alg` says which of the two checks it:
//! HS256 the secret (unless `FOLLOWUP_HS256_TOKENS=refuse`), RS256 and ES256 the provider.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use followup_domain::{InstitutionId, KnownInstitutions, TeamId, UserId, Viewer};
use followup_platform::config::ClaimNames;
use hmac::{Hmac, Mac};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::Sha256;
use std::sync::Arc;

use crate::oidc::Oidc;
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
    /// When it was issued, seconds since the epoch; a token issued in the future (beyond
    /// [`LEEWAY_SECONDS`]) is refused, and it dates the lifetime [`Auth`] allows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    /// Not valid before, seconds since the epoch (beyond [`LEEWAY_SECONDS`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
}

/// How far the issuer's clock may run ahead of ours for `iat` and `nbf`.
pub const LEEWAY_SECONDS: i64 = 30;

/// The longest lifetime of a token (`exp` − `iat`, or what is left of it when it has no
/// `iat`) by default: 24 hours (`FOLLOWUP_TOKEN_MAX_LIFETIME`).
pub const DEFAULT_MAX_LIFETIME: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// Verifies tokens: the provider's, and (for development, which it also mints) those signed
/// with one HS256 secret.
pub struct Auth {
    /// The institution's OpenID Connect provider, when one is configured.
    oidc: Option<Arc<Oidc>>,
    /// Whether tokens signed with the secret are taken (`FOLLOWUP_HS256_TOKENS`).
    accept_hs256: bool,
    /// Checks signatures.
    decoding: DecodingKey,
    /// Signs tokens (development tokens, tests).
    encoding: EncodingKey,
    /// HS256 only, `exp` required, no leeway.
    validation: Validation,
    /// The longest lifetime a token may have.
    max_lifetime: std::time::Duration,
    /// The institutions served: a token for another is refused.
    institutions: KnownInstitutions,
    /// Seals the page cursors the API hands out (derived from the secret): an edited cursor
    /// is refused with 400 rather than read.
    cursor_key: Hmac<Sha256>,
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
            oidc: None,
            accept_hs256: true,
            decoding: DecodingKey::from_secret(secret.as_bytes()),
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            validation,
            max_lifetime: DEFAULT_MAX_LIFETIME,
            institutions: KnownInstitutions::default(),
            cursor_key: {
                let mut derive = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
                    .expect("HMAC takes a key of any length");
                derive.update(b"followup page cursors");
                Hmac::new_from_slice(&derive.finalize().into_bytes())
                    .expect("HMAC takes a key of any length")
            },
        }
    }

    /// `cursor` as handed out: followed by `-` and the first 16 hex digits of its HMAC.
    pub fn seal_cursor(&self, cursor: &str) -> String {
        format!("{cursor}-{}", self.cursor_mac(cursor))
    }

    /// The cursor inside `sealed`, if this service sealed it; `None` for anything else (an
    /// edited or made-up cursor).
    pub fn open_cursor<'a>(&self, sealed: &'a str) -> Option<&'a str> {
        let (cursor, mac) = sealed.rsplit_once('-')?;
        let expected = self.cursor_mac(cursor);
        // Compared in constant time: the MAC is a secret's product.
        let same = mac.len() == expected.len()
            && mac
                .bytes()
                .zip(expected.bytes())
                .fold(0u8, |diff, (a, b)| diff | (a ^ b))
                == 0;
        same.then_some(cursor)
    }

    fn cursor_mac(&self, cursor: &str) -> String {
        let mut mac = self.cursor_key.clone();
        mac.update(cursor.as_bytes());
        mac.finalize().into_bytes()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// The same, accepting tokens only for `institutions` (`FOLLOWUP_INSTITUTIONS`).
    pub fn with_institutions(mut self, institutions: KnownInstitutions) -> Self {
        self.institutions = institutions;
        self
    }

    /// The same, refusing tokens that live longer than `max_lifetime`.
    pub fn with_max_lifetime(mut self, max_lifetime: std::time::Duration) -> Self {
        self.max_lifetime = max_lifetime;
        self
    }

    /// The same, also taking the access tokens of `oidc`'s provider.
    pub fn with_oidc(mut self, oidc: Oidc) -> Self {
        self.oidc = Some(Arc::new(oidc));
        self
    }

    /// The same, refusing tokens signed with the secret (`FOLLOWUP_HS256_TOKENS=refuse`):
    /// with a provider, only its tokens are taken.
    pub fn refusing_hs256(mut self) -> Self {
        self.accept_hs256 = false;
        self
    }

    /// The provider, when one is configured.
    pub fn oidc(&self) -> Option<&Oidc> {
        self.oidc.as_deref()
    }

    /// A signed token with these claims.
    pub fn mint(&self, claims: &Claims) -> String {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
            .expect("HS256 signing cannot fail")
    }

    /// The viewer an `Authorization` header value stands for.
    pub async fn viewer(&self, authorization: Option<&str>) -> Result<Viewer, ApiError> {
        self.verify(authorization).await.map(|(viewer, _)| viewer)
    }

    /// The viewer, and when its token expires (seconds since the epoch): for a live stream,
    /// which must end then.
    pub async fn verify(&self, authorization: Option<&str>) -> Result<(Viewer, i64), ApiError> {
        self.identify(authorization)
            .await
            .map(|identity| (identity.viewer, identity.expires))
    }

    /// Who an `Authorization` header value says the caller is.
    pub async fn identify(&self, authorization: Option<&str>) -> Result<Identity, ApiError> {
        // The scheme is case-insensitive (RFC 9110 section 11.1).
        let token = authorization
            .and_then(|h| h.trim_start().split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .ok_or_else(|| ApiError::unauthorized("send Authorization: Bearer <token>"))?;
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| ApiError::unauthorized(&format!("the token is not valid: {e}")))?;
        let claims = match (header.alg, &self.oidc) {
            (Algorithm::HS256, _) if !self.accept_hs256 => {
                return Err(ApiError::unauthorized(
                    "tokens signed with the development secret are refused here \
                     (FOLLOWUP_HS256_TOKENS=refuse): sign in with the identity provider",
                ))
            }
            (Algorithm::HS256, _) => {
                let map = jsonwebtoken::decode::<Map<String, Value>>(
                    token,
                    &self.decoding,
                    &self.validation,
                )
                .map_err(|e| ApiError::unauthorized(&format!("the token is not valid: {e}")))?
                .claims;
                TokenClaims::read(&map, &ClaimNames::default(), None)?
            }
            (_, Some(oidc)) => {
                let map = oidc.claims(token, &header).await?;
                let settings = oidc.settings();
                TokenClaims::read(&map, &settings.claims, settings.institution.as_deref())?
            }
            (alg, None) => {
                return Err(ApiError::unauthorized(&format!(
                    "the token is signed with {alg:?}; without an identity provider \
                     (FOLLOWUP_OIDC_ISSUER) only HS256 tokens are taken"
                )))
            }
        };
        self.check(&claims)
    }

    /// The checks every token passes, whoever signed it.
    fn check(&self, claims: &TokenClaims) -> Result<Identity, ApiError> {
        let now = chrono::Utc::now().timestamp();
        if claims.nbf.is_some_and(|nbf| nbf > now + LEEWAY_SECONDS) {
            return Err(ApiError::unauthorized(
                "the token is not valid yet (its `nbf` is in the future)",
            ));
        }
        if claims.iat.is_some_and(|iat| iat > now + LEEWAY_SECONDS) {
            return Err(ApiError::unauthorized(
                "the token was issued in the future (its `iat`): check the issuer's clock",
            ));
        }
        let lifetime = claims.exp - claims.iat.unwrap_or(now).min(now);
        if lifetime > self.max_lifetime.as_secs() as i64 {
            return Err(ApiError::unauthorized(&format!(
                "the token lives {lifetime} s, longer than the {} s allowed (FOLLOWUP_TOKEN_MAX_LIFETIME)",
                self.max_lifetime.as_secs()
            )));
        }
        let bad = |what: &str, e: &dyn std::fmt::Display| {
            ApiError::unauthorized(&format!("the token's `{what}` claim is not valid: {e}"))
        };
        // An id is no place for a CPR number: it would be stored in clear with every change.
        if std::iter::once(&claims.user)
            .chain(&claims.teams)
            .any(|id| followup_domain::screen::holds_cpr(id))
        {
            return Err(ApiError::unauthorized(
                "the token's `sub` or `teams` holds a CPR number; an id must not be one",
            ));
        }
        if !self.institutions.contains(&claims.institution) {
            return Err(ApiError::unauthorized(&format!(
                "the token's institution {:?} is not one this service serves",
                followup_domain::mask(&claims.institution)
            )));
        }
        let viewer = Viewer {
            user: UserId::parse(&claims.user).map_err(|e| bad("sub", &e))?,
            institution: InstitutionId::parse(&claims.institution).map_err(|e| bad("inst", &e))?,
            teams: claims
                .teams
                .iter()
                .map(|t| TeamId::parse(t).map_err(|e| bad("teams", &e)))
                .collect::<Result<_, _>>()?,
            admin: claims.roles.iter().any(|r| r == "admin"),
        };
        Ok(Identity {
            viewer,
            expires: claims.exp,
            name: claims.name.clone(),
        })
    }
}

/// Who a valid token says the caller is.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The caller, as its token says (before the directory completes it).
    pub viewer: Viewer,
    /// When the token expires, seconds since the epoch.
    pub expires: i64,
    /// The user's name (the `name` claim), for the directory.
    pub name: Option<String>,
}

/// What a token says that the service uses, read by the claim names of its issuer.
#[derive(Debug)]
struct TokenClaims {
    name: Option<String>,
    user: String,
    institution: String,
    teams: Vec<String>,
    roles: Vec<String>,
    exp: i64,
    iat: Option<i64>,
    nbf: Option<i64>,
}

impl TokenClaims {
    /// The claims of `map` named by `names`; `institution`, when given, instead of the
    /// institution claim (a provider that serves one institution).
    fn read(
        map: &Map<String, Value>,
        names: &ClaimNames,
        institution: Option<&str>,
    ) -> Result<Self, ApiError> {
        let missing = |name: &str| {
            ApiError::unauthorized(&format!("the token has no `{name}` claim (a string)"))
        };
        let text = |name: &str| map.get(name).and_then(Value::as_str).map(str::to_owned);
        let time = |name: &str| map.get(name).and_then(Value::as_f64).map(|t| t as i64);
        // A list claim may be an array of strings or one space-separated string (as `scp`).
        let list = |name: &str| -> Result<Vec<String>, ApiError> {
            match map.get(name) {
                None | Some(Value::Null) => Ok(Vec::new()),
                Some(Value::String(s)) => Ok(s.split_whitespace().map(str::to_owned).collect()),
                Some(Value::Array(items)) => items
                    .iter()
                    .map(|item| item.as_str().map(str::to_owned))
                    .collect::<Option<_>>()
                    .ok_or_else(|| {
                        ApiError::unauthorized(&format!(
                            "the token's `{name}` claim must be a list of strings"
                        ))
                    }),
                Some(_) => Err(ApiError::unauthorized(&format!(
                    "the token's `{name}` claim must be a list of strings"
                ))),
            }
        };
        Ok(Self {
            name: text("name"),
            user: text(&names.user).ok_or_else(|| missing(&names.user))?,
            institution: match institution {
                Some(fixed) => fixed.to_owned(),
                None => text(&names.institution).ok_or_else(|| missing(&names.institution))?,
            },
            teams: list(&names.teams)?,
            roles: list(&names.roles)?,
            exp: time("exp").ok_or_else(|| missing("exp"))?,
            iat: time("iat"),
            nbf: time("nbf"),
        })
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
        let identity = state.auth.identify(header).await?;
        let viewer =
            crate::directory::complete(state, identity.viewer, identity.name.as_deref()).await;
        Ok(Caller(viewer))
    }
}
