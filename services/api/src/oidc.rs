//! Access tokens from the institution's OpenID Connect provider (`FOLLOWUP_OIDC_ISSUER`).
//!
//! The provider's discovery document names its JWKS; the keys are fetched on first use and
//! kept, and fetched again when a token names a key id (`kid`) the cache does not hold (the
//! provider rotated its keys), at most once per [`Oidc::with_min_refresh`] interval, so a
//! stream of tokens with made-up key ids cannot make the service hammer the provider. Keys
//! older than an hour are fetched again on the next token; while the provider cannot be
//! reached, the keys held go on serving.
//!
//! A token must be signed with RS256 or ES256 by one of those keys, be issued by the issuer
//! (`iss`) for the API (`aud` = `FOLLOWUP_OIDC_AUDIENCE`), and carry `exp`; [`Auth`] then
//! checks `nbf`, `iat` and the lifetime as for every token.
//!
//! [`Auth`]: crate::Auth

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use followup_platform::config::OidcSettings;
use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::sync::{Mutex, RwLock};

use crate::ApiError;

/// How old the keys held may get before a token makes them be fetched again.
const KEYS_MAX_AGE: Duration = Duration::from_secs(3600);

/// The shortest time between two fetches of the keys by default (an unknown `kid` within
/// it is refused without asking the provider).
pub const DEFAULT_MIN_REFRESH: Duration = Duration::from_secs(10);

/// What the provider's discovery document says that the service and the web inbox use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    /// Must equal `FOLLOWUP_OIDC_ISSUER` (OpenID Connect Discovery 1.0, section 4.3).
    pub issuer: String,
    /// Where the signing keys are.
    pub jwks_uri: String,
    /// Where the web inbox sends the browser to sign in.
    pub authorization_endpoint: String,
    /// Where the web inbox exchanges the code for tokens.
    pub token_endpoint: String,
    /// Where the web inbox signs out (RP-initiated logout), if the provider has it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_session_endpoint: Option<String>,
}

/// The provider's keys as last fetched.
struct Keys {
    /// The discovery document the keys came by.
    metadata: Metadata,
    /// By key id, with the algorithm each is for.
    by_kid: HashMap<String, Arc<(DecodingKey, Algorithm)>>,
    /// When they were fetched: older than [`KEYS_MAX_AGE`], they are fetched again.
    fetched: Instant,
}

/// Verifies the access tokens of one OpenID Connect provider.
pub struct Oidc {
    /// The issuer, audience and claim names.
    settings: OidcSettings,
    /// Fetches the discovery document and the keys (with timeouts).
    http: reqwest::Client,
    /// The keys, once fetched.
    keys: RwLock<Option<Keys>>,
    /// One fetch at a time; holds when the last one was tried.
    fetching: Mutex<Option<Instant>>,
    /// The shortest time between two fetches.
    min_refresh: Duration,
}

impl std::fmt::Debug for Oidc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Oidc")
            .field("issuer", &self.settings.issuer)
            .finish_non_exhaustive()
    }
}

/// The provider could not be asked for its keys.
#[derive(Debug, thiserror::Error)]
#[error("the OpenID provider {issuer} cannot be used: {reason}")]
pub struct ProviderError {
    /// `FOLLOWUP_OIDC_ISSUER`.
    pub issuer: String,
    /// What failed.
    pub reason: String,
}

impl Oidc {
    /// The verifier of `settings`' provider; nothing is fetched until the first token.
    pub fn new(settings: OidcSettings) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
            .build()
            .expect("an HTTP client with timeouts");
        Self {
            settings,
            http,
            keys: RwLock::new(None),
            fetching: Mutex::new(None),
            min_refresh: DEFAULT_MIN_REFRESH,
        }
    }

    /// The same, fetching the keys at most once per `interval`.
    pub fn with_min_refresh(mut self, interval: Duration) -> Self {
        self.min_refresh = interval;
        self
    }

    /// The settings.
    pub fn settings(&self) -> &OidcSettings {
        &self.settings
    }

    /// The provider's discovery document (fetched when not yet held).
    pub async fn metadata(&self) -> Result<Metadata, ProviderError> {
        if let Some(keys) = self.keys.read().await.as_ref() {
            return Ok(keys.metadata.clone());
        }
        self.refresh().await?;
        let keys = self.keys.read().await;
        keys.as_ref()
            .map(|keys| keys.metadata.clone())
            .ok_or_else(|| ProviderError {
                issuer: self.settings.issuer.clone(),
                reason: "its discovery document could not be fetched a moment ago".into(),
            })
    }

    /// The claims of `token` (whose header is `header`), if this provider signed it for the
    /// API; a 401 otherwise, or a 503 when its keys cannot be fetched.
    pub async fn claims(
        &self,
        token: &str,
        header: &Header,
    ) -> Result<Map<String, Value>, ApiError> {
        if !matches!(header.alg, Algorithm::RS256 | Algorithm::ES256) {
            return Err(ApiError::unauthorized(&format!(
                "the token is signed with {:?}; the provider's tokens must be RS256 or ES256",
                header.alg
            )));
        }
        let key = self.key(header).await?;
        if key.1 != header.alg {
            return Err(ApiError::unauthorized(
                "the token's algorithm is not the one of the provider's key it names",
            ));
        }
        let mut validation = Validation::new(header.alg);
        validation.leeway = 0;
        validation.validate_nbf = false;
        validation.set_issuer(&[&self.settings.issuer]);
        validation.set_audience(&[&self.settings.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        jsonwebtoken::decode::<Map<String, Value>>(token, &key.0, &validation)
            .map(|data| data.claims)
            .map_err(|e| ApiError::unauthorized(&format!("the token is not valid: {e}")))
    }

    /// The key `header` names: held, or fetched again when it is not (or the keys are old).
    async fn key(&self, header: &Header) -> Result<Arc<(DecodingKey, Algorithm)>, ApiError> {
        let found = |keys: &Option<Keys>| -> (Option<Arc<(DecodingKey, Algorithm)>>, bool) {
            match keys {
                None => (None, true),
                Some(keys) => (
                    pick(&keys.by_kid, header),
                    keys.fetched.elapsed() > KEYS_MAX_AGE,
                ),
            }
        };
        let (key, stale) = found(&*self.keys.read().await);
        if let (Some(key), false) = (&key, stale) {
            return Ok(key.clone());
        }
        match self.refresh().await {
            Ok(()) => {}
            // Old keys go on serving while the provider is away.
            Err(e) if key.is_some() => {
                tracing::warn!(oidc.issuer = %self.settings.issuer, error = %e, "the OpenID provider's keys could not be fetched again; the ones held go on serving");
            }
            Err(e) => return Err(ApiError::unavailable(e)),
        }
        match &*self.keys.read().await {
            None => Err(ApiError::unavailable(
                "the identity provider's signing keys cannot be fetched; try again shortly",
            )),
            Some(keys) => pick(&keys.by_kid, header).ok_or_else(|| {
                ApiError::unauthorized(
                    "the token is signed with a key the identity provider does not publish",
                )
            }),
        }
    }

    /// Fetches the discovery document and the keys, unless another request just did (within
    /// the minimum interval).
    async fn refresh(&self) -> Result<(), ProviderError> {
        let mut last = self.fetching.lock().await;
        if last.is_some_and(|at| at.elapsed() < self.min_refresh) {
            // Fetched (or tried) a moment ago, maybe by the request this one waited for.
            return Ok(());
        }
        *last = Some(Instant::now());
        let keys = self.fetch().await?;
        *self.keys.write().await = Some(keys);
        Ok(())
    }

    async fn fetch(&self) -> Result<Keys, ProviderError> {
        let error = |reason: String| ProviderError {
            issuer: self.settings.issuer.clone(),
            reason,
        };
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.settings.issuer.trim_end_matches('/')
        );
        let metadata: Metadata = self.get_json(&url).await.map_err(&error)?;
        if metadata.issuer != self.settings.issuer {
            return Err(error(format!(
                "its discovery document names the issuer {:?}, not FOLLOWUP_OIDC_ISSUER",
                metadata.issuer
            )));
        }
        let set: JwkSet = self.get_json(&metadata.jwks_uri).await.map_err(&error)?;
        let by_kid: HashMap<_, _> = set
            .keys
            .iter()
            .filter(|jwk| {
                // Signing keys only: a key for encryption is not one a token is signed with.
                !matches!(
                    jwk.common.public_key_use,
                    Some(jsonwebtoken::jwk::PublicKeyUse::Encryption)
                )
            })
            .filter_map(|jwk| {
                let alg = match &jwk.algorithm {
                    AlgorithmParameters::RSA(_) => Algorithm::RS256,
                    AlgorithmParameters::EllipticCurve(ec)
                        if ec.curve == jsonwebtoken::jwk::EllipticCurve::P256 =>
                    {
                        Algorithm::ES256
                    }
                    _ => return None,
                };
                let key = DecodingKey::from_jwk(jwk).ok()?;
                Some((
                    jwk.common.key_id.clone().unwrap_or_default(),
                    Arc::new((key, alg)),
                ))
            })
            .collect();
        if by_kid.is_empty() {
            return Err(error("its JWKS has no RS256 or ES256 signing key".into()));
        }
        tracing::info!(oidc.issuer = %self.settings.issuer, oidc.keys = by_kid.len(), "fetched the OpenID provider's signing keys");
        Ok(Keys {
            metadata,
            by_kid,
            fetched: Instant::now(),
        })
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T, String> {
        let response = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("GET {url} answered {}", response.status()));
        }
        response
            .json()
            .await
            .map_err(|e| format!("GET {url}: not the JSON expected: {e}"))
    }
}

/// The key a token's header names; without a `kid`, the one key for its algorithm when the
/// provider publishes only one.
fn pick(
    keys: &HashMap<String, Arc<(DecodingKey, Algorithm)>>,
    header: &Header,
) -> Option<Arc<(DecodingKey, Algorithm)>> {
    match &header.kid {
        Some(kid) => keys.get(kid).cloned(),
        None => {
            let mut same = keys.values().filter(|k| k.1 == header.alg);
            match (same.next(), same.next()) {
                (Some(only), None) => Some(only.clone()),
                _ => None,
            }
        }
    }
}
