//! Configuration from the environment.
//!
//! Every setting is an environment variable; `FOLLOWUP_CONFIG` may name a TOML file whose keys
//! are the same names in lower case (`database_url = "…"`), and the environment wins over the
//! file. A missing or invalid setting is an error that names it.
//!
//! A local run leaves its settings in an environment file ([`LOCAL_ENV_FILE`], written by
//! `deploy/run.sh`); [`load_env_file`] reads it into the process environment for the
//! variables that are unset, so that `followupctl` and `followupd` started in the
//! repository after the demo reach the same PostgreSQL, NATS and token secret.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use followup_domain::KnownInstitutions;

/// A setting that is missing or invalid.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A required setting has no value.
    #[error("{name} is not set: {hint}")]
    Missing {
        /// The environment variable.
        name: &'static str,
        /// What to set it to.
        hint: &'static str,
    },
    /// A setting has a value that cannot be used.
    #[error("{name} is invalid ({value:?}): {reason}")]
    Invalid {
        /// The environment variable.
        name: &'static str,
        /// The value given.
        value: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// The environment file (`FOLLOWUP_ENV_FILE`, or `.local/env`) cannot be read.
    #[error("the environment file {path} cannot be used: {reason}")]
    EnvFile {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The file named by `FOLLOWUP_CONFIG` cannot be read.
    #[error("FOLLOWUP_CONFIG names {path}, which cannot be used: {reason}")]
    File {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
}

/// The environment file a local run leaves, relative to the working directory.
pub const LOCAL_ENV_FILE: &str = ".local/env";

/// Reads the environment file that `FOLLOWUP_ENV_FILE` names, or else [`LOCAL_ENV_FILE`]
/// when it exists, into the process environment: `NAME=value` lines, `#` comments. A variable
/// that is already set keeps its value. Returns the file read, if any. Call it first thing in
/// `main`, before any thread reads the environment.
pub fn load_env_file() -> Result<Option<PathBuf>, ConfigError> {
    let named = std::env::var("FOLLOWUP_ENV_FILE")
        .ok()
        .filter(|p| !p.trim().is_empty());
    let path = match named {
        Some(path) => PathBuf::from(path),
        None if std::path::Path::new(LOCAL_ENV_FILE).is_file() => PathBuf::from(LOCAL_ENV_FILE),
        None => return Ok(None),
    };
    dotenvy::from_path(&path).map_err(|error| ConfigError::EnvFile {
        path: path.display().to_string(),
        reason: error.to_string(),
    })?;
    Ok(Some(path))
}

/// The service's settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// `DATABASE_URL`: the PostgreSQL database holding the event store and read models.
    pub database_url: String,
    /// `NATS_URL`: the NATS server (or a comma-separated list of cluster servers).
    pub nats_url: String,
    /// `FOLLOWUP_HTTP_ADDR`: where the HTTP API listens (default `127.0.0.1:8080`).
    pub http_addr: SocketAddr,
    /// `FOLLOWUP_JWT_SECRET`: the HS256 secret tokens are signed with; required by the API.
    pub jwt_secret: Option<String>,
    /// `FOLLOWUP_RULES`: the rules file; the built-in default rules when unset.
    pub rules_path: Option<PathBuf>,
    /// `FOLLOWUP_STREAM_REPLICAS`: how many copies JetStream keeps of each stream (1 on a
    /// single server, 3 on a three-node cluster); default 1.
    pub stream_replicas: usize,
    /// `FOLLOWUP_DEV_LOGIN`: `true` lets the web inbox's sign-in page mint a token for any
    /// user (development and demos only); default `false`.
    pub dev_login: bool,
    /// `FOLLOWUP_READY_MAX_LAG`: seconds the projector's oldest unprojected event may wait
    /// before `/readyz` says not ready (the read model is too stale to serve); default 30,
    /// `0` turns the check off. Events held back by another transaction do not count.
    pub ready_max_lag: Option<Duration>,
    /// `FOLLOWUP_HOLD_BACK_WARN`: seconds events may be held back by a running transaction
    /// before the projector logs a warning naming it; default 10.
    pub hold_back_warn: Duration,
    /// `FOLLOWUP_TOKEN_MAX_LIFETIME`: seconds a bearer token may live at most (`exp` − `iat`);
    /// longer-lived tokens are refused. Default 86400 (24 hours).
    pub token_max_lifetime: Duration,
    /// `FOLLOWUP_INSTITUTIONS`: the institutions served, comma-separated codes; inbound
    /// messages and tokens for any other are refused. Default: the ESAS institutions
    /// ([`KnownInstitutions::ESAS`]).
    pub institutions: KnownInstitutions,
    /// `FOLLOWUP_MAX_DELIVERIES`: how many deliveries a message that keeps failing (for a
    /// reason other than an unreachable database) gets before it is dead-lettered with its
    /// last error; default 10.
    pub max_deliveries: i64,
    /// `FOLLOWUP_DLQ_RETENTION_DAYS`: how long the dead-letter stream keeps a message (it
    /// holds the original, CPR numbers included, for redrive); default 30.
    pub dead_letter_retention: Duration,
    /// `FOLLOWUP_OUTBOUND_RETENTION_DAYS`: how long the outbound stream `FOLLOWUPS` keeps a
    /// follow-up event (it holds the event's personal data, as the live stream delivers it);
    /// default 30.
    pub outbound_retention: Duration,
    /// `FOLLOWUP_READY_MAX_FAILING`: seconds a worker may keep failing before `/readyz` says
    /// not ready; default `0`, off: a failing worker is shown in the body and the metrics,
    /// and the API it runs beside goes on serving.
    pub ready_max_failing: Option<Duration>,
    /// `FOLLOWUP_MIGRATE_DATABASE_URL`: the owner role's URL that migrations run with, when
    /// the service itself connects as the application role (`DATABASE_URL`), which may not
    /// change the schema; unset: migrations run with `DATABASE_URL`.
    pub migrate_database_url: Option<String>,
    /// `FOLLOWUP_HTTP_HEADER_TIMEOUT`: seconds an HTTP client may take to send a request's
    /// header, and an idle keep-alive connection is kept; default 20.
    pub http_header_timeout: Duration,
    /// `FOLLOWUP_OIDC_*`: the institution's OpenID Connect provider whose access tokens the
    /// API accepts; `None` when `FOLLOWUP_OIDC_ISSUER` is unset.
    pub oidc: Option<OidcSettings>,
    /// `FOLLOWUP_HS256_TOKENS`: `accept` (the default) takes tokens signed with
    /// `FOLLOWUP_JWT_SECRET` beside the provider's; `refuse` takes the provider's only.
    pub accept_hs256: bool,
    /// `FOLLOWUP_SCIM_TOKENS` (`KP=<token>,UCL=<token>`), or the file `FOLLOWUP_SCIM_TOKENS_FILE`
    /// names (the same, one pair per line): the bearer token of each institution's SCIM
    /// client; none: SCIM is off.
    pub scim_tokens: Vec<(followup_domain::InstitutionId, String)>,
    /// `FOLLOWUP_ESAS_LINKS` (`application=https://esas.example/…?id={id},student=…`): where
    /// the web inbox links a follow-up's regarding record in ESAS, per regarding type, `{id}`
    /// standing for the record's id; none: no links.
    pub esas_links: Vec<(String, String)>,
}

/// The ESAS links of `src` (`FOLLOWUP_ESAS_LINKS`): `type=template` pairs, comma-separated.
fn esas_links(src: &Sources) -> Result<Vec<(String, String)>, ConfigError> {
    let Some(text) = src.get("FOLLOWUP_ESAS_LINKS") else {
        return Ok(Vec::new());
    };
    let invalid = |reason: String| ConfigError::Invalid {
        name: "FOLLOWUP_ESAS_LINKS",
        value: text.clone(),
        reason,
    };
    text.split(',')
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (kind, template) = pair.split_once('=').ok_or_else(|| {
                invalid("expected type=URL pairs, such as application=https://…?id={id}".into())
            })?;
            let (kind, template) = (kind.trim(), template.trim());
            if followup_domain::RegardingType::parse(kind).is_err() {
                return Err(invalid(format!(
                    "{kind:?} is not a regarding type (a-z and _)"
                )));
            }
            if !template.starts_with("https://") || !template.contains("{id}") {
                return Err(invalid(format!(
                    "the link of {kind} must be an https:// URL with {{id}} in it"
                )));
            }
            Ok((kind.to_owned(), template.to_owned()))
        })
        .collect()
}

/// The SCIM tokens of `src`: `INST=token` pairs, comma- or line-separated, from
/// `FOLLOWUP_SCIM_TOKENS` or the file `FOLLOWUP_SCIM_TOKENS_FILE` names.
fn scim_tokens(
    src: &Sources,
    institutions: &KnownInstitutions,
) -> Result<Vec<(followup_domain::InstitutionId, String)>, ConfigError> {
    let (name, text) = match (
        src.get("FOLLOWUP_SCIM_TOKENS"),
        src.get("FOLLOWUP_SCIM_TOKENS_FILE"),
    ) {
        (Some(text), _) => ("FOLLOWUP_SCIM_TOKENS", text),
        (None, Some(path)) => (
            "FOLLOWUP_SCIM_TOKENS_FILE",
            std::fs::read_to_string(&path).map_err(|e| ConfigError::Invalid {
                name: "FOLLOWUP_SCIM_TOKENS_FILE",
                value: path.clone(),
                reason: e.to_string(),
            })?,
        ),
        (None, None) => return Ok(Vec::new()),
    };
    let invalid = |reason: String| ConfigError::Invalid {
        name,
        value: "(hidden)".into(),
        reason,
    };
    let mut tokens: Vec<(followup_domain::InstitutionId, String)> = Vec::new();
    for pair in text
        .split([',', '\n'])
        .map(str::trim)
        .filter(|p| !p.is_empty() && !p.starts_with('#'))
    {
        let (inst, token) = pair
            .split_once('=')
            .ok_or_else(|| invalid("expected INST=token pairs, such as KP=<token>".into()))?;
        let (inst, token) = (inst.trim(), token.trim());
        if !institutions.contains(inst) {
            return Err(invalid(format!(
                "{inst:?} is not an institution served (FOLLOWUP_INSTITUTIONS)"
            )));
        }
        if token.len() < 32 {
            return Err(invalid(format!(
                "the token of {inst} is {} bytes; use at least 32 random bytes",
                token.len()
            )));
        }
        if tokens.iter().any(|(_, t)| t == token) {
            return Err(invalid(format!(
                "the token of {inst} is another institution's too; each needs its own"
            )));
        }
        let inst =
            followup_domain::InstitutionId::parse(inst).map_err(|e| invalid(e.to_string()))?;
        tokens.push((inst, token.to_owned()));
    }
    Ok(tokens)
}

/// The OpenID Connect provider whose access tokens the API accepts (docs/operations.md,
/// "Signing in with the institution's identity provider").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcSettings {
    /// `FOLLOWUP_OIDC_ISSUER`: the provider's issuer URL; its discovery document is at
    /// `<issuer>/.well-known/openid-configuration` and must name the same issuer.
    pub issuer: String,
    /// `FOLLOWUP_OIDC_AUDIENCE`: the `aud` a token must carry (the API's application id).
    pub audience: String,
    /// Which claims carry the user, institution, teams and roles.
    pub claims: ClaimNames,
    /// `FOLLOWUP_OIDC_INSTITUTION`: every token of this provider is of this institution (a
    /// tenant per institution, as Entra ID has it); unset: the institution claim says.
    pub institution: Option<String>,
    /// `FOLLOWUP_OIDC_CLIENT_ID`: the web inbox's client id at the provider (a public client
    /// with PKCE); unset: the web inbox does not sign in with the provider.
    pub client_id: Option<String>,
    /// `FOLLOWUP_OIDC_SCOPES`: the scopes the web inbox asks for (default `openid profile`;
    /// Entra ID wants the API's scope too, `api://<app id>/Followups.Access`).
    pub scopes: String,
}

/// The claims of an access token that carry what the service needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimNames {
    /// `FOLLOWUP_OIDC_USER_CLAIM`: the user's id (default `sub`; Entra ID: `oid`).
    pub user: String,
    /// `FOLLOWUP_OIDC_INSTITUTION_CLAIM`: the institution's code (default `inst`).
    pub institution: String,
    /// `FOLLOWUP_OIDC_TEAMS_CLAIM`: the user's teams (default `teams`; Entra ID: `groups`).
    pub teams: String,
    /// `FOLLOWUP_OIDC_ROLES_CLAIM`: the user's roles (default `roles`).
    pub roles: String,
}

impl Default for ClaimNames {
    /// The claims of design section 7: `sub`, `inst`, `teams`, `roles`.
    fn default() -> Self {
        Self {
            user: "sub".into(),
            institution: "inst".into(),
            teams: "teams".into(),
            roles: "roles".into(),
        }
    }
}

impl OidcSettings {
    /// The settings from `src`; `None` when `FOLLOWUP_OIDC_ISSUER` is unset.
    fn read(src: &Sources) -> Result<Option<Self>, ConfigError> {
        let Some(issuer) = src.get("FOLLOWUP_OIDC_ISSUER") else {
            return Ok(None);
        };
        let local =
            issuer.starts_with("http://127.0.0.1") || issuer.starts_with("http://localhost");
        if !(issuer.starts_with("https://") || local) {
            return Err(ConfigError::Invalid {
                name: "FOLLOWUP_OIDC_ISSUER",
                value: issuer,
                reason: "must be an https:// URL (http:// only on this machine, for tests)".into(),
            });
        }
        let audience = src
            .get("FOLLOWUP_OIDC_AUDIENCE")
            .ok_or(ConfigError::Missing {
                name: "FOLLOWUP_OIDC_AUDIENCE",
                hint: "the audience (`aud`) the provider puts in the API's access tokens",
            })?;
        let defaults = ClaimNames::default();
        let claim = |name, default: String| src.get(name).unwrap_or(default);
        Ok(Some(Self {
            issuer,
            audience,
            claims: ClaimNames {
                user: claim("FOLLOWUP_OIDC_USER_CLAIM", defaults.user),
                institution: claim("FOLLOWUP_OIDC_INSTITUTION_CLAIM", defaults.institution),
                teams: claim("FOLLOWUP_OIDC_TEAMS_CLAIM", defaults.teams),
                roles: claim("FOLLOWUP_OIDC_ROLES_CLAIM", defaults.roles),
            },
            institution: src.get("FOLLOWUP_OIDC_INSTITUTION"),
            client_id: src.get("FOLLOWUP_OIDC_CLIENT_ID"),
            scopes: src
                .get("FOLLOWUP_OIDC_SCOPES")
                .unwrap_or_else(|| "openid profile".into()),
        }))
    }
}

/// Where settings are looked up: the environment first, then the optional file that
/// `FOLLOWUP_CONFIG` names. The one reader of settings: [`Config`] and the scheduler's
/// settings both read through it.
#[derive(Debug, Clone)]
pub struct Sources {
    /// The environment, as given to [`Sources::from_lookup`].
    env: HashMap<String, String>,
    /// The TOML file's keys, upper-cased.
    file: HashMap<String, String>,
}

impl Sources {
    /// The process environment, and the file it names.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(std::env::vars().collect())
    }

    /// The given variables (tests pass their own), and the file they name.
    pub fn from_lookup(env: HashMap<String, String>) -> Result<Self, ConfigError> {
        let file = match env.get("FOLLOWUP_CONFIG").filter(|p| !p.trim().is_empty()) {
            Some(path) => read_file(path)?,
            None => HashMap::new(),
        };
        Ok(Self { env, file })
    }

    /// The value of setting `name` (trimmed), from the environment or else the file; `None`
    /// when it is unset or empty.
    pub fn get(&self, name: &str) -> Option<String> {
        self.env
            .get(name)
            .or_else(|| self.file.get(name))
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }
}

impl Config {
    /// Reads the settings from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(std::env::vars().collect())
    }

    /// Reads the settings from the given variables (tests pass their own).
    pub fn from_lookup(env: HashMap<String, String>) -> Result<Self, ConfigError> {
        let src = Sources::from_lookup(env)?;

        let database_url = src.get("DATABASE_URL").ok_or(ConfigError::Missing {
            name: "DATABASE_URL",
            hint: "a PostgreSQL URL such as postgres://postgres@127.0.0.1:5432/followups",
        })?;
        if !(database_url.starts_with("postgres://") || database_url.starts_with("postgresql://")) {
            return Err(ConfigError::Invalid {
                name: "DATABASE_URL",
                value: database_url,
                reason: "must start with postgres:// or postgresql://".into(),
            });
        }
        let nats_url = src.get("NATS_URL").ok_or(ConfigError::Missing {
            name: "NATS_URL",
            hint: "a NATS server such as nats://127.0.0.1:4222",
        })?;
        let http_addr = match src.get("FOLLOWUP_HTTP_ADDR") {
            None => SocketAddr::from(([127, 0, 0, 1], 8080)),
            Some(v) => v
                .parse()
                .map_err(|e: std::net::AddrParseError| ConfigError::Invalid {
                    name: "FOLLOWUP_HTTP_ADDR",
                    value: v.clone(),
                    reason: format!("{e}; expected host:port such as 127.0.0.1:8080"),
                })?,
        };
        let jwt_secret = src.get("FOLLOWUP_JWT_SECRET");
        if let Some(secret) = &jwt_secret {
            if secret.len() < 32 {
                return Err(ConfigError::Invalid {
                    name: "FOLLOWUP_JWT_SECRET",
                    value: "(hidden)".into(),
                    reason: format!("is {} bytes; use at least 32 random bytes", secret.len()),
                });
            }
        }
        let rules_path = src.get("FOLLOWUP_RULES").map(PathBuf::from);
        if let Some(path) = &rules_path {
            if !path.is_file() {
                return Err(ConfigError::Invalid {
                    name: "FOLLOWUP_RULES",
                    value: path.display().to_string(),
                    reason: "no such file".into(),
                });
            }
        }
        let stream_replicas = match src.get("FOLLOWUP_STREAM_REPLICAS") {
            None => 1,
            Some(v) => match v.parse::<usize>() {
                Ok(n @ 1..=5) => n,
                _ => {
                    return Err(ConfigError::Invalid {
                        name: "FOLLOWUP_STREAM_REPLICAS",
                        value: v,
                        reason: "must be a number from 1 to 5 (JetStream's limit), and at most \
                                 the number of servers in the cluster"
                            .into(),
                    })
                }
            },
        };
        let dev_login = match src.get("FOLLOWUP_DEV_LOGIN").as_deref() {
            None | Some("false" | "0" | "no") => false,
            Some("true" | "1" | "yes") => true,
            Some(other) => {
                return Err(ConfigError::Invalid {
                    name: "FOLLOWUP_DEV_LOGIN",
                    value: other.to_owned(),
                    reason: "must be true or false".into(),
                })
            }
        };
        let ready_max_lag = seconds(&src, "FOLLOWUP_READY_MAX_LAG", 30)?;
        let ready_max_lag = (!ready_max_lag.is_zero()).then_some(ready_max_lag);
        let hold_back_warn = seconds(&src, "FOLLOWUP_HOLD_BACK_WARN", 10)?;
        let token_max_lifetime = seconds(&src, "FOLLOWUP_TOKEN_MAX_LIFETIME", 86_400)?;
        let institutions = match src.get("FOLLOWUP_INSTITUTIONS") {
            None => KnownInstitutions::esas(),
            Some(list) => {
                KnownInstitutions::parse_list(&list).map_err(|e| ConfigError::Invalid {
                    name: "FOLLOWUP_INSTITUTIONS",
                    value: list.clone(),
                    reason: format!("{e}; expected comma-separated codes such as KP,UCL,VIA"),
                })?
            }
        };
        let max_deliveries = number(&src, "FOLLOWUP_MAX_DELIVERIES", 10, 1..=1000, "a number")?;
        let retention_days = number(
            &src,
            "FOLLOWUP_DLQ_RETENTION_DAYS",
            30,
            1..=3650,
            "a whole number of days",
        )?;
        let dead_letter_retention = Duration::from_secs(retention_days as u64 * 24 * 60 * 60);
        let outbound_days = number(
            &src,
            "FOLLOWUP_OUTBOUND_RETENTION_DAYS",
            30,
            1..=3650,
            "a whole number of days",
        )?;
        let outbound_retention = Duration::from_secs(outbound_days as u64 * 24 * 60 * 60);
        let ready_max_failing = seconds(&src, "FOLLOWUP_READY_MAX_FAILING", 0)?;
        let ready_max_failing = (!ready_max_failing.is_zero()).then_some(ready_max_failing);
        let http_header_timeout = seconds(&src, "FOLLOWUP_HTTP_HEADER_TIMEOUT", 20)?;
        if http_header_timeout.is_zero() {
            return Err(ConfigError::Invalid {
                name: "FOLLOWUP_HTTP_HEADER_TIMEOUT",
                value: "0".into(),
                reason: "must be at least 1 second".into(),
            });
        }
        let oidc = OidcSettings::read(&src)?;
        let scim_tokens = scim_tokens(&src, &institutions)?;
        let esas_links = esas_links(&src)?;
        let accept_hs256 = match src.get("FOLLOWUP_HS256_TOKENS").as_deref() {
            None | Some("accept") => true,
            Some("refuse") => false,
            Some(other) => {
                return Err(ConfigError::Invalid {
                    name: "FOLLOWUP_HS256_TOKENS",
                    value: other.to_owned(),
                    reason: "must be accept or refuse".into(),
                })
            }
        };
        if !accept_hs256 && oidc.is_none() {
            return Err(ConfigError::Invalid {
                name: "FOLLOWUP_HS256_TOKENS",
                value: "refuse".into(),
                reason: "refuses every token unless FOLLOWUP_OIDC_ISSUER names a provider".into(),
            });
        }
        let migrate_database_url = src.get("FOLLOWUP_MIGRATE_DATABASE_URL");
        if let Some(url) = &migrate_database_url {
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                return Err(ConfigError::Invalid {
                    name: "FOLLOWUP_MIGRATE_DATABASE_URL",
                    value: url.clone(),
                    reason: "must start with postgres:// or postgresql://".into(),
                });
            }
            check_same_database(url, &database_url)?;
        }
        Ok(Self {
            database_url,
            nats_url,
            http_addr,
            jwt_secret,
            rules_path,
            stream_replicas,
            dev_login,
            ready_max_lag,
            hold_back_warn,
            token_max_lifetime,
            institutions,
            max_deliveries,
            dead_letter_retention,
            outbound_retention,
            ready_max_failing,
            migrate_database_url,
            http_header_timeout,
            oidc,
            accept_hs256,
            scim_tokens,
            esas_links,
        })
    }

    /// The JWT secret, or the error that says the API needs one.
    pub fn require_jwt_secret(&self) -> Result<&str, ConfigError> {
        self.jwt_secret.as_deref().ok_or(ConfigError::Missing {
            name: "FOLLOWUP_JWT_SECRET",
            hint: "the API needs the secret that development tokens are signed with and page \
                   cursors sealed with (32 random bytes or more), also beside an OpenID provider",
        })
    }
}

/// The database a PostgreSQL URL names (the path after the host, before any `?`).
pub fn database_name(url: &str) -> &str {
    let path = url.rsplit_once('/').map_or("", |(_, path)| path);
    path.split_once('?').map_or(path, |(name, _)| name)
}

/// Refuses an owner URL (`FOLLOWUP_MIGRATE_DATABASE_URL`) that names another database than
/// `database_url`: migrating one database and serving another is a left-over setting.
pub fn check_same_database(owner_url: &str, database_url: &str) -> Result<(), ConfigError> {
    let (owner, served) = (database_name(owner_url), database_name(database_url));
    if owner == served {
        return Ok(());
    }
    Err(ConfigError::Invalid {
        name: "FOLLOWUP_MIGRATE_DATABASE_URL",
        value: format!("…/{owner}"),
        reason: format!("names database {owner:?}, but DATABASE_URL names {served:?}"),
    })
}

/// Setting `name` as a whole number in `range` (`default` when unset); `what` names it in the
/// error ("a number", "a whole number of days").
fn number(
    src: &Sources,
    name: &'static str,
    default: i64,
    range: std::ops::RangeInclusive<i64>,
    what: &str,
) -> Result<i64, ConfigError> {
    match src.get(name) {
        None => Ok(default),
        Some(v) => match v.parse::<i64>() {
            Ok(n) if range.contains(&n) => Ok(n),
            _ => Err(ConfigError::Invalid {
                name,
                value: v,
                reason: format!("must be {what} from {} to {}", range.start(), range.end()),
            }),
        },
    }
}

/// Setting `name` as whole seconds (`default` when unset).
fn seconds(src: &Sources, name: &'static str, default: u64) -> Result<Duration, ConfigError> {
    match src.get(name) {
        None => Ok(Duration::from_secs(default)),
        Some(v) => v
            .parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|_| ConfigError::Invalid {
                name,
                value: v,
                reason: "must be a whole number of seconds".into(),
            }),
    }
}

fn read_file(path: &str) -> Result<HashMap<String, String>, ConfigError> {
    let err = |reason: String| ConfigError::File {
        path: path.to_owned(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| err(e.to_string()))?;
    table
        .into_iter()
        .map(|(k, v)| match v {
            toml::Value::String(s) => Ok((k.to_uppercase(), s)),
            toml::Value::Integer(i) => Ok((k.to_uppercase(), i.to_string())),
            other => Err(err(format!(
                "{k} must be a string, not {}",
                other.type_str()
            ))),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const BASE: &[(&str, &str)] = &[
        ("DATABASE_URL", "postgres://postgres@127.0.0.1/followups"),
        ("NATS_URL", "nats://127.0.0.1:4222"),
    ];

    #[test]
    fn institutions_deliveries_and_dead_letter_retention_have_defaults_and_are_checked() {
        let base = [("DATABASE_URL", "postgres://x/y"), ("NATS_URL", "nats://x")];
        let config = Config::from_lookup(env(&base)).unwrap();
        assert!(config.institutions.contains("KP"));
        assert_eq!(config.max_deliveries, 10);
        assert_eq!(
            config.dead_letter_retention,
            Duration::from_secs(30 * 86_400)
        );
        let with = |name: &str, value: &str| {
            let mut vars = env(&base);
            vars.insert(name.to_owned(), value.to_owned());
            Config::from_lookup(vars)
        };
        let config = with("FOLLOWUP_INSTITUTIONS", "KP,VIA").unwrap();
        assert_eq!(config.institutions.to_string(), "KP,VIA");
        for (name, bad) in [
            ("FOLLOWUP_INSTITUTIONS", "K P"),
            ("FOLLOWUP_MAX_DELIVERIES", "0"),
            ("FOLLOWUP_DLQ_RETENTION_DAYS", "0"),
            ("FOLLOWUP_MIGRATE_DATABASE_URL", "mysql://x"),
            ("FOLLOWUP_MIGRATE_DATABASE_URL", "postgres://owner@x/other"),
        ] {
            let error = with(name, bad).unwrap_err().to_string();
            assert!(error.contains(name), "{error}");
        }
    }

    #[test]
    fn a_missing_database_url_is_named_in_the_error() {
        let err = Config::from_lookup(env(&[("NATS_URL", "nats://x")])).unwrap_err();
        assert!(
            err.to_string().starts_with("DATABASE_URL is not set"),
            "{err}"
        );
    }

    #[test]
    fn an_invalid_http_address_is_named_in_the_error() {
        let mut e = env(BASE);
        e.insert("FOLLOWUP_HTTP_ADDR".into(), "localhost".into());
        let err = Config::from_lookup(e).unwrap_err();
        assert!(
            err.to_string().starts_with("FOLLOWUP_HTTP_ADDR is invalid"),
            "{err}"
        );
    }

    #[test]
    fn an_identity_provider_is_read_with_entra_claim_names_and_needs_an_audience() {
        let mut e = env(BASE);
        e.insert(
            "FOLLOWUP_OIDC_ISSUER".into(),
            "https://login.microsoftonline.com/tenant/v2.0".into(),
        );
        let err = Config::from_lookup(e.clone()).unwrap_err().to_string();
        assert!(err.contains("FOLLOWUP_OIDC_AUDIENCE"), "{err}");
        e.insert("FOLLOWUP_OIDC_AUDIENCE".into(), "api://followups".into());
        e.insert("FOLLOWUP_OIDC_USER_CLAIM".into(), "oid".into());
        e.insert("FOLLOWUP_OIDC_TEAMS_CLAIM".into(), "groups".into());
        e.insert("FOLLOWUP_OIDC_INSTITUTION".into(), "KP".into());
        e.insert("FOLLOWUP_HS256_TOKENS".into(), "refuse".into());
        let config = Config::from_lookup(e).unwrap();
        let oidc = config.oidc.unwrap();
        assert_eq!(oidc.claims.user, "oid");
        assert_eq!(oidc.claims.teams, "groups");
        assert_eq!(oidc.claims.roles, "roles");
        assert_eq!(oidc.institution.as_deref(), Some("KP"));
        assert!(!config.accept_hs256);
    }

    #[test]
    fn scim_tokens_are_bound_to_served_institutions_and_must_be_long_and_distinct() {
        let token = "a-scim-token-of-at-least-32-bytes-0001";
        let mut e = env(BASE);
        e.insert(
            "FOLLOWUP_SCIM_TOKENS".into(),
            format!("KP={token}, UCL={token}x"),
        );
        let tokens = Config::from_lookup(e.clone()).unwrap().scim_tokens;
        assert_eq!(tokens.len(), 2);
        assert_eq!(tokens[0].0.as_str(), "KP");
        for bad in [
            format!("XX={token}"),
            "KP=short".into(),
            format!("KP={token},UCL={token}"),
        ] {
            e.insert("FOLLOWUP_SCIM_TOKENS".into(), bad);
            let err = Config::from_lookup(e.clone()).unwrap_err().to_string();
            assert!(
                err.contains("FOLLOWUP_SCIM_TOKENS") && !err.contains(token),
                "{err}"
            );
        }
    }

    #[test]
    fn esas_links_are_https_templates_with_the_records_id_per_regarding_type() {
        let mut e = env(BASE);
        e.insert(
            "FOLLOWUP_ESAS_LINKS".into(),
            "application=https://esas.kp.dk/a?id={id}, student=https://esas.kp.dk/s/{id}".into(),
        );
        let links = Config::from_lookup(e.clone()).unwrap().esas_links;
        assert_eq!(
            links[1],
            ("student".into(), "https://esas.kp.dk/s/{id}".into())
        );
        for bad in [
            "application=http://esas/{id}",
            "application=https://esas/a",
            "Bad Type=https://x/{id}",
        ] {
            e.insert("FOLLOWUP_ESAS_LINKS".into(), bad.into());
            assert!(Config::from_lookup(e.clone()).is_err(), "{bad}");
        }
    }

    #[test]
    fn refusing_development_tokens_without_a_provider_or_a_plain_http_issuer_is_an_error() {
        let mut e = env(BASE);
        e.insert("FOLLOWUP_HS256_TOKENS".into(), "refuse".into());
        let err = Config::from_lookup(e).unwrap_err().to_string();
        assert!(err.contains("FOLLOWUP_OIDC_ISSUER"), "{err}");
        let mut e = env(BASE);
        e.insert("FOLLOWUP_OIDC_ISSUER".into(), "http://idp.example".into());
        e.insert("FOLLOWUP_OIDC_AUDIENCE".into(), "api://followups".into());
        let err = Config::from_lookup(e).unwrap_err().to_string();
        assert!(err.contains("https://"), "{err}");
    }

    #[test]
    fn a_short_jwt_secret_is_refused_without_echoing_it() {
        let mut e = env(BASE);
        e.insert("FOLLOWUP_JWT_SECRET".into(), "short-secret".into());
        let err = Config::from_lookup(e).unwrap_err().to_string();
        assert!(
            err.contains("FOLLOWUP_JWT_SECRET") && !err.contains("short-secret"),
            "{err}"
        );
    }

    #[test]
    fn defaults_apply_and_the_environment_wins_over_the_file() {
        let dir = std::env::temp_dir().join(format!("followup-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("followup.toml");
        std::fs::write(
            &file,
            "nats_url = \"nats://from-file:4222\"\nfollowup_http_addr = \"0.0.0.0:9000\"\n",
        )
        .unwrap();
        let mut e = env(BASE);
        e.insert("FOLLOWUP_CONFIG".into(), file.display().to_string());
        let config = Config::from_lookup(e).unwrap();
        assert_eq!(config.nats_url, "nats://127.0.0.1:4222");
        assert_eq!(config.http_addr.to_string(), "0.0.0.0:9000");
        assert!(config.rules_path.is_none());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
