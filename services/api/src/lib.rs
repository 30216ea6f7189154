//! The HTTP API role (`followupd api`): follow-ups over JSON under `/v1` (design section 7),
//! with JWT bearer auth, tenancy and access rules, `ETag`/`If-Match`, and errors as problem
//! documents with stable codes.
//!
//! Commands go to the event store through the follow-up repository (so they are checked
//! against the latest events, never a lagging projection); reads come from the read model.
//! After a command the new state is written through to the read model, so the caller's next
//! read shows it (read-your-writes) without waiting for the projector.
//!
//! # Layout
//! - [`auth`]: bearer tokens become a [`followup_domain::Viewer`]; minting development tokens.
//! - [`oidc`]: the institution's OpenID Connect provider: discovery, keys, its tokens.
//! - [`problem`]: [`ApiError`], rendered as `application/problem+json`.
//! - [`routes`]: the `/v1` routes of follow-ups and the dashboard.
//! - [`privacy`]: erasure requests and legal holds (admins only).
//! - [`scim`]: SCIM 2.0 provisioning of the directory's users and groups (`/scim/v2`).
//! - [`directory`]: the directory for pickers (`/v1/directory/…`), principal checks, display
//!   names, teams from the directory, and users learnt from tokens.
//! - [`inbox`]: subscriptions, the notification inbox and the live stream (`/v1/stream`).
//! - [`ops`]: `/healthz`, `/readyz`, `/metrics` and `/openapi.json`.
//! - [`openapi`]: the OpenAPI document of every route.
//! - [`web`]: the caseworkers' web inbox under `/app/` (static files compiled in), and the
//!   development sign-in.

pub mod auth;
pub mod directory;
pub mod inbox;
pub mod oidc;
pub mod openapi;
pub mod ops;
pub mod privacy;
pub mod problem;
pub mod routes;
pub mod scim;
pub mod web;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use followup_messaging::Streams;
use followup_platform::trace;
use followup_readmodel::ReadModel;
use followup_store::directory::{DirectoryTeams, DirectoryUsers};
use followup_store::{FollowUps, Subscriptions};
use metrics_exporter_prometheus::PrometheusHandle;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::trace::TraceLayer;

pub use auth::{Auth, Claims};
pub use problem::ApiError;

/// The largest request body accepted (a follow-up's text is at most a few KiB).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// What every handler needs.
#[derive(Debug)]
pub struct AppState {
    /// Commands: load, decide, append.
    pub followups: FollowUps,
    /// Queries: lists, single follow-ups, dashboards.
    pub read_model: ReadModel,
    /// Verifies bearer tokens.
    pub auth: Auth,
    /// For readiness checks.
    pub pool: PgPool,
    /// For readiness checks; `None` where the process has no NATS connection.
    pub nats: Option<async_nats::Client>,
    /// Renders the Prometheus metrics of this process.
    pub metrics: PrometheusHandle,
    /// Subscription commands.
    pub subscriptions: Subscriptions,
    /// Directory user commands (SCIM, users learnt from tokens).
    pub directory_users: DirectoryUsers,
    /// Directory team commands (SCIM).
    pub directory_teams: DirectoryTeams,
    /// The SCIM tokens, each bound to one institution (`FOLLOWUP_SCIM_TOKENS`); none: SCIM
    /// answers 401 to everyone.
    pub scim_tokens: scim::ScimTokens,
    /// Where the web inbox links a regarding record in ESAS, by regarding type (`{id}` in the
    /// URL stands for the record's id).
    pub esas_links: Vec<(String, String)>,
    /// The users already learnt from their tokens by this process, so that only a change is
    /// written.
    pub seen_users: directory::SeenUsers,
    /// Stream names: the live stream reads `FOLLOWUPS`.
    pub streams: Streams,
    /// How often the live stream sends a heartbeat while nothing happens.
    pub keep_alive: Duration,
    /// Whether `/app/dev-token` mints tokens for anyone (`FOLLOWUP_DEV_LOGIN`): development
    /// and demos only.
    pub dev_login: bool,
    /// Cancelled when the server shuts down, so that live streams (which never end on their
    /// own) end and the graceful shutdown does not wait for them forever.
    pub live_streams: CancellationToken,
    /// How long the projector's oldest unprojected event may wait before `/readyz` says not
    /// ready (`FOLLOWUP_READY_MAX_LAG`); `None`: never.
    pub ready_max_lag: Option<Duration>,
    /// How long a worker of this process may keep failing before `/readyz` says not ready
    /// (`FOLLOWUP_READY_MAX_FAILING`); `None` (the default): never, the body only shows it.
    pub ready_max_failing: Option<Duration>,
    /// How long an HTTP/1 client may take to send a request's header, and how long an idle
    /// keep-alive connection is kept (a slow or silent client cannot hold connections).
    pub header_read_timeout: Duration,
}

/// The default [`AppState::header_read_timeout`].
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(20);

impl AppState {
    /// The state of an API over `followups` (and its event store) and `read_model`, with the
    /// default stream names and a heartbeat every 15 seconds.
    pub fn new(
        followups: FollowUps,
        read_model: ReadModel,
        auth: Auth,
        nats: Option<async_nats::Client>,
    ) -> Self {
        Self {
            subscriptions: Subscriptions::new(followups.store().clone()),
            directory_users: DirectoryUsers::new(followups.store().clone()),
            directory_teams: DirectoryTeams::new(followups.store().clone()),
            scim_tokens: scim::ScimTokens::default(),
            seen_users: directory::SeenUsers::default(),
            esas_links: Vec::new(),
            pool: followups.store().pool().clone(),
            followups,
            read_model,
            auth,
            nats,
            metrics: metrics_handle(),
            streams: Streams::default(),
            keep_alive: Duration::from_secs(15),
            live_streams: CancellationToken::new(),
            dev_login: false,
            ready_max_lag: Some(Duration::from_secs(30)),
            ready_max_failing: None,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
        }
    }
}

/// The whole HTTP surface.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .merge(routes::router())
        .merge(privacy::router())
        .merge(scim::router())
        .merge(directory::router())
        .merge(inbox::router())
        .merge(web::router())
        .merge(ops::router())
        .fallback(|| async { ApiError::not_found("no such route") })
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed() })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(refuse_nul_in_uri))
        .layer(axum::middleware::from_fn_with_state(
            content_security_policy(&state),
            security_headers,
        ))
        .layer(axum::middleware::from_fn(record_request))
        .layer(axum::middleware::from_fn(answer_traceparent))
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
        .with_state(state)
}

/// The policy of [`security_headers`]: connections to this origin, and to the identity
/// provider's when the web inbox signs in with it (its token endpoint).
fn content_security_policy(state: &AppState) -> axum::http::HeaderValue {
    let provider = state
        .auth
        .oidc()
        .filter(|oidc| oidc.settings().client_id.is_some())
        .and_then(|oidc| origin(&oidc.settings().issuer))
        .map(|origin| format!(" {origin}"))
        .unwrap_or_default();
    let policy = format!(
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self'{provider}; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    );
    axum::http::HeaderValue::from_str(&policy).expect("a policy of URL characters")
}

/// `scheme://host[:port]` of a URL.
fn origin(url: &str) -> Option<&str> {
    let (scheme, rest) = url.split_once("://")?;
    let end = rest.find('/').map_or(url.len(), |i| scheme.len() + 3 + i);
    Some(&url[..end])
}

/// The web inbox's and the API's protections in the browser: scripts, styles and connections
/// only from this origin (and the identity provider's; the inbox has no inline script or
/// style), never in a frame, no content-type sniffing, no referrer sent elsewhere.
async fn security_headers(
    axum::extract::State(policy): axum::extract::State<axum::http::HeaderValue>,
    request: Request,
    next: Next,
) -> Response {
    use axum::http::{header, HeaderValue};
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, policy);
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

/// Refuses a path or query string with an encoded NUL (`%00`): no id, filter or search text
/// can hold one (PostgreSQL cannot store it), so it is a 400 `invalid_text` before any handler
/// or database sees it. (A raw NUL never gets this far: it is not allowed in a URI.)
async fn refuse_nul_in_uri(request: Request, next: Next) -> Response {
    let uri = request.uri();
    let has_nul = |part: &str| part.contains("%00");
    if has_nul(uri.path()) || uri.query().is_some_and(has_nul) {
        return ApiError::bad_request(
            "invalid_text",
            "the path or query string holds a NUL character (%00), which no value may contain",
        )
        .into_response();
    }
    next.run(request).await
}

/// Serves `router` on `listener` until `shutdown`, then finishes the requests in flight.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::service::TowerToHyperService;

    tracing::info!(http.addr = %listener.local_addr()?, "API listening");
    let live_streams = state.live_streams.clone();
    let stop_live = shutdown.clone();
    tokio::spawn(async move {
        stop_live.cancelled().await;
        live_streams.cancel();
    });
    let mut connections = hyper::server::conn::http1::Builder::new();
    // A client must send a request's whole header within the timeout, and an idle
    // keep-alive connection is closed once it has waited that long for the next request
    // (the timer starts whenever the server waits for a request head). HTTP/1 only, as
    // before: the service sits behind a TLS-terminating proxy that speaks HTTP/2 to browsers.
    connections
        .timer(TokioTimer::new())
        .header_read_timeout(state.header_read_timeout);
    let service = TowerToHyperService::new(router(state));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let stream = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    // Small answers go out at once rather than waiting for more to send.
                    let _ = stream.set_nodelay(true);
                    stream
                }
                // Out of file descriptors and the like: the listener is still good.
                Err(error) => {
                    tracing::warn!(error.message = %error, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let connection = connections.serve_connection(TokioIo::new(stream), service.clone());
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(error.message = %error, "connection ended with an error");
            }
        });
    }
    // Stop accepting; let the requests in hand finish (live streams end with `live_streams`).
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// The span of one request: a child of the caller's trace when it sends a `traceparent`.
fn request_span(request: &Request) -> tracing::Span {
    let route = request.extensions().get::<MatchedPath>().map_or_else(
        || request.uri().path().to_owned(),
        |p| p.as_str().to_owned(),
    );
    let span = tracing::info_span!(
        "http.request",
        http.method = %request.method(),
        http.route = %route,
        otel.kind = "server",
    );
    let traceparent = request
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok());
    trace::continue_trace(&span, traceparent);
    span
}

/// Answers every request with the `traceparent` of its span, so that a caller can find the
/// trace of what it asked for.
async fn answer_traceparent(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    if let Some(value) =
        trace::current_traceparent().and_then(|t| axum::http::HeaderValue::from_str(&t).ok())
    {
        response.headers_mut().insert("traceparent", value);
    }
    response
}

/// Counts every request and its latency, by route template and status.
async fn record_request(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    let labels = [("method", method), ("route", route), ("status", status)];
    metrics::counter!("followup_http_requests_total", &labels).increment(1);
    metrics::histogram!("followup_http_request_duration_seconds", &labels)
        .record(started.elapsed().as_secs_f64());
    response
}

/// The process's Prometheus recorder, installed on first use (one per process).
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: std::sync::OnceLock<PrometheusHandle> = std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = metrics_exporter_prometheus::PrometheusBuilder::new()
                .set_buckets(&[
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                ])
                .expect("valid buckets")
                .build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!(
                    "a metrics recorder was installed already; /metrics shows this recorder only"
                );
            }
            handle
        })
        .clone()
}
