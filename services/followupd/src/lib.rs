//! The composition root of the server: [`App::start`] builds the roles asked for on one
//! database and one NATS connection, and [`App::wait`] supervises them. `followupd` calls
//! it, and so do the end-to-end tests (`tests/`), so the tests run the service as it is
//! deployed.
//!
//! A role runs until shutdown. One that ends before (it panicked, or its loop gave up) ends
//! the whole process with an error that names it, so that a supervisor (systemd, Kubernetes)
//! restarts the process instead of leaving it running without that role.
//!
//! # Layout
//! - [`Role`]: the roles, in the order data flows.
//! - [`Settings`], [`App`]: what the roles are built from, and the running roles.
//! - [`RoleFailed`]: which role ended, and why.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use followup_api::oidc::Oidc;
use followup_api::{AppState, Auth};
use followup_domain::KnownInstitutions;
use followup_messaging::{JetStream, Streams};
use followup_notifier::{Notifier, NotifierConfig};
use followup_platform::config::OidcSettings;
use followup_platform::leader;
use followup_readmodel::{Projection, ReadModel};
use followup_relay::Relay;
use followup_rule_worker::{RuleWorker, WorkerConfig};
use followup_rules::RuleSet;
use followup_scheduler::{Scheduler, SchedulerConfig, SystemClock};
use followup_store::followups::upcaster;
use followup_store::{EventStore, FollowUps};
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// A role of the server, in the order data flows through the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// Inbound job outcomes and events become exceptions and tasks.
    RuleWorker,
    /// ESAS domain events become notifications for their subscribers.
    Notifier,
    /// The read models follow the event store.
    Projector,
    /// Every follow-up event is published on NATS.
    Relay,
    /// The scheduled jobs: overdue, reminders, the daily digest, escalation.
    Scheduler,
    /// The HTTP API and the web inbox.
    Api,
}

impl Role {
    /// Every role, in pipeline order.
    pub const ALL: [Role; 6] = [
        Role::RuleWorker,
        Role::Notifier,
        Role::Projector,
        Role::Relay,
        Role::Scheduler,
        Role::Api,
    ];

    /// Its name on the command line and in logs.
    pub fn name(self) -> &'static str {
        match self {
            Role::RuleWorker => "rule-worker",
            Role::Notifier => "notifier",
            Role::Projector => "projector",
            Role::Relay => "relay",
            Role::Scheduler => "scheduler",
            Role::Api => "api",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What the roles are built from, besides the database and NATS.
#[derive(Debug)]
pub struct Settings {
    /// Stream names and replicas.
    pub streams: Streams,
    /// The rules of the rule worker.
    pub rules: RuleSet,
    /// The scheduler's schedules and settings (required by [`Role::Scheduler`]).
    pub scheduler: Option<SchedulerConfig>,
    /// The API's token secret (required by [`Role::Api`]).
    pub jwt_secret: Option<String>,
    /// The web inbox's development sign-in.
    pub dev_login: bool,
    /// Where the API listens (required by [`Role::Api`]).
    pub http: Option<TcpListener>,
    /// How stale the read model may be before the API's `/readyz` says not ready.
    pub ready_max_lag: Option<Duration>,
    /// How long a running transaction may hold the projector back before it is named in a
    /// warning.
    pub hold_back_warn: Duration,
    /// The longest lifetime of a bearer token the API accepts.
    pub token_max_lifetime: Duration,
    /// The institutions served: inbound messages and tokens for others are refused.
    pub institutions: KnownInstitutions,
    /// Deliveries a message that keeps failing gets before it is dead-lettered.
    pub max_deliveries: i64,
    /// How long a worker may keep failing before the API's `/readyz` says not ready.
    pub ready_max_failing: Option<Duration>,
    /// How long an HTTP client may take to send its header, and an idle connection is kept.
    pub http_header_timeout: Duration,
    /// The institution's OpenID Connect provider whose tokens the API takes, if any.
    pub oidc: Option<OidcSettings>,
    /// Whether the API takes tokens signed with the secret beside the provider's.
    pub accept_hs256: bool,
    /// The SCIM clients' tokens, each bound to one institution.
    pub scim_tokens: Vec<(followup_domain::InstitutionId, String)>,
    /// Where the web inbox links regarding records in ESAS, by type.
    pub esas_links: Vec<(String, String)>,
}

/// Which role ended before shutdown, and why.
#[derive(Debug, thiserror::Error)]
#[error("role {role} stopped: {reason}")]
pub struct RoleFailed {
    /// The role.
    pub role: Role,
    /// Why (a panic's message, an error, or that its loop returned).
    pub reason: String,
}

/// The running roles.
#[derive(Debug)]
pub struct App {
    /// One task per role, each ending with its role and how it ended.
    tasks: JoinSet<(Role, Result<(), String>)>,
    /// Which task is which role (for a task that panicked).
    ids: std::collections::HashMap<tokio::task::Id, Role>,
    /// Where the API listens, when it runs.
    pub http_addr: Option<SocketAddr>,
    /// Stops every role.
    shutdown: CancellationToken,
}

impl App {
    /// Builds and starts `roles` on `pool` and NATS (`nats`, `js`), until `shutdown`. The
    /// database must be migrated and the streams created.
    pub async fn start(
        roles: &[Role],
        pool: PgPool,
        nats: async_nats::Client,
        js: JetStream,
        mut settings: Settings,
        shutdown: CancellationToken,
    ) -> anyhow::Result<App> {
        let store = EventStore::new(pool.clone()).with_upcaster(upcaster());
        let followups = FollowUps::new(store.clone());
        let read_model = ReadModel::new(pool.clone());
        let mut app = App {
            tasks: JoinSet::new(),
            ids: std::collections::HashMap::new(),
            http_addr: None,
            shutdown: shutdown.clone(),
        };
        for &role in roles {
            match role {
                Role::RuleWorker => {
                    let config = WorkerConfig {
                        streams: settings.streams.clone(),
                        institutions: settings.institutions.clone(),
                        max_deliveries: settings.max_deliveries,
                        ..WorkerConfig::default()
                    };
                    let rules = settings.rules.clone();
                    let worker = RuleWorker::new(js.clone(), followups.clone(), rules, config)
                        .await
                        .context("starting the rule worker")?;
                    app.spawn(role, ended(worker.run(shutdown.clone())));
                }
                Role::Notifier => {
                    let config = NotifierConfig {
                        streams: settings.streams.clone(),
                        institutions: settings.institutions.clone(),
                        max_deliveries: settings.max_deliveries,
                        ..NotifierConfig::default()
                    };
                    let notifier =
                        Notifier::new(js.clone(), followups.clone(), read_model.clone(), config)
                            .await
                            .context("starting the notifier")?;
                    app.spawn(role, ended(notifier.run(shutdown.clone())));
                }
                // One active projector and relay among all processes; the others stand by
                // and take over when it dies (design section 9: several processes per role).
                Role::Projector => {
                    let (store, read_model) = (store.clone(), read_model.clone());
                    let (watched, warn_after) = (pool.clone(), settings.hold_back_warn);
                    app.spawn(
                        role,
                        ended(leader::run_as_leader(
                            pool.clone(),
                            "projector",
                            shutdown.clone(),
                            move |active| {
                                let projection = Projection::new(store.clone(), read_model.clone());
                                let watch = followup_projector::watch_hold_back(
                                    watched.clone(),
                                    warn_after,
                                    active.clone(),
                                );
                                async move {
                                    tokio::join!(
                                        followup_projector::run(projection, active),
                                        watch
                                    );
                                }
                            },
                        )),
                    );
                }
                Role::Relay => {
                    let (store, js) = (store.clone(), js.clone());
                    app.spawn(
                        role,
                        ended(leader::run_as_leader(
                            pool.clone(),
                            "relay",
                            shutdown.clone(),
                            move |active| Relay::new(store.clone(), js.clone()).run(active),
                        )),
                    );
                }
                Role::Scheduler => {
                    let config = settings
                        .scheduler
                        .clone()
                        .context("the scheduler needs its configuration")?;
                    let scheduler =
                        Scheduler::new(config, followups.clone(), Arc::new(SystemClock));
                    app.spawn(role, ended(scheduler.run(shutdown.clone())));
                }
                Role::Api => {
                    let secret = settings
                        .jwt_secret
                        .clone()
                        .context("the API needs FOLLOWUP_JWT_SECRET")?;
                    let listener = settings
                        .http
                        .take()
                        .context("the API needs an address to listen on")?;
                    app.http_addr = Some(listener.local_addr()?);
                    if settings.dev_login {
                        tracing::warn!("FOLLOWUP_DEV_LOGIN is on: anyone can sign in to the web inbox as anyone; never in production");
                    }
                    let mut auth = Auth::new(&secret)
                        .with_max_lifetime(settings.token_max_lifetime)
                        .with_institutions(settings.institutions.clone());
                    if let Some(oidc) = settings.oidc.clone() {
                        tracing::info!(oidc.issuer = %oidc.issuer, hs256 = settings.accept_hs256, "the API takes the OpenID provider's access tokens");
                        auth = auth.with_oidc(Oidc::new(oidc));
                    }
                    if !settings.accept_hs256 {
                        auth = auth.refusing_hs256();
                    }
                    let state = Arc::new(AppState {
                        streams: settings.streams.clone(),
                        dev_login: settings.dev_login,
                        ready_max_lag: settings.ready_max_lag,
                        ready_max_failing: settings.ready_max_failing,
                        header_read_timeout: settings.http_header_timeout,
                        scim_tokens: followup_api::scim::ScimTokens::new(&settings.scim_tokens),
                        esas_links: settings.esas_links.clone(),
                        ..AppState::new(
                            followups.clone(),
                            read_model.clone(),
                            auth,
                            Some(nats.clone()),
                        )
                    });
                    let shutdown = shutdown.clone();
                    app.spawn(role, async move {
                        followup_api::serve(listener, state, shutdown)
                            .await
                            .map_err(|e| format!("serving HTTP failed: {e}"))
                    });
                }
            }
        }
        Ok(app)
    }

    fn spawn(
        &mut self,
        role: Role,
        task: impl std::future::Future<Output = Result<(), String>> + Send + 'static,
    ) {
        let handle = self.tasks.spawn(async move { (role, task.await) });
        self.ids.insert(handle.id(), role);
    }

    /// Waits until every role has stopped after shutdown. A role that ends before, or fails,
    /// stops the others and is returned as the error.
    pub async fn wait(mut self) -> Result<(), RoleFailed> {
        let mut failed = None;
        while let Some(joined) = self.tasks.join_next_with_id().await {
            let (role, result) = match joined {
                Ok((_, (role, result))) => (role, result),
                Err(error) => {
                    let role = self.ids.get(&error.id()).copied().unwrap_or(Role::Api);
                    let reason = if error.is_panic() {
                        panic_message(&*error.into_panic())
                    } else {
                        "cancelled".to_owned()
                    };
                    (role, Err(format!("it panicked: {reason}")))
                }
            };
            let result = match result {
                Ok(()) if !self.shutdown.is_cancelled() => {
                    Err("it returned before shutdown".to_owned())
                }
                other => other,
            };
            if let Err(reason) = result {
                if failed.is_none() {
                    tracing::error!(role = %role, error.message = %reason, "a role stopped; stopping the others");
                    failed = Some(RoleFailed { role, reason });
                    self.shutdown.cancel();
                }
            }
        }
        failed.map_or(Ok(()), Err)
    }

    /// Stops every role and waits until each has drained.
    pub async fn stop(self) -> Result<(), RoleFailed> {
        self.shutdown.cancel();
        self.wait().await
    }
}

/// A role's loop, which only ends on shutdown, as a task that reports how it ended.
async fn ended(role: impl std::future::Future<Output = ()>) -> Result<(), String> {
    role.await;
    Ok(())
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = panic.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = panic.downcast_ref::<String>() {
        text.clone()
    } else {
        "(no message)".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app() -> App {
        App {
            tasks: JoinSet::new(),
            ids: std::collections::HashMap::new(),
            http_addr: None,
            shutdown: CancellationToken::new(),
        }
    }

    #[tokio::test]
    async fn a_role_that_returns_before_shutdown_stops_the_others_and_is_named() {
        let mut app = app();
        let shutdown = app.shutdown.clone();
        app.spawn(Role::Relay, async { Ok(()) });
        app.spawn(Role::Api, async move {
            shutdown.cancelled().await;
            Ok(())
        });
        let failed = app.wait().await.unwrap_err();
        assert_eq!(failed.role, Role::Relay);
        assert!(
            failed.to_string().contains("role relay stopped"),
            "{failed}"
        );
    }

    #[tokio::test]
    async fn a_role_that_panics_is_named_with_the_panic() {
        let mut app = app();
        app.spawn(Role::Notifier, async {
            let broken = true;
            assert!(!broken, "the notifier broke");
            Ok(())
        });
        let failed = app.wait().await.unwrap_err();
        assert_eq!(failed.role, Role::Notifier);
        assert!(failed.reason.contains("the notifier broke"), "{failed}");
    }

    #[tokio::test]
    async fn roles_that_stop_on_shutdown_end_the_app_cleanly() {
        let mut app = app();
        let shutdown = app.shutdown.clone();
        app.spawn(Role::Projector, async move {
            shutdown.cancelled().await;
            Ok(())
        });
        assert!(app.stop().await.is_ok());
    }
}
