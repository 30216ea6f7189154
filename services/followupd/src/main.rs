//! `followupd`: the follow-up server. One binary runs any set of roles, so each role can be
//! scaled on its own (design section 9):
//!
//! ```text
//! followupd all                 # every role in one process (development, small sites)
//! followupd rule-worker         # just the rule worker
//! followupd notifier            # just the notifier
//! followupd api projector       # the API and the projector
//! followupd scheduler           # the scheduled jobs (overdue, reminders, digest, escalation)
//! ```
//!
//! On start it runs the database migrations and creates the JetStream streams (both
//! idempotent), then runs the roles until SIGINT or SIGTERM, and drains them.
//!
//! # Layout
//! - `main.rs`: command line, start-up, the roles' tasks.

use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, ValueEnum};
use followup_api::{AppState, Auth};
use followup_messaging::{ensure_streams, Streams};
use followup_notifier::{Notifier, NotifierConfig};
use followup_platform::{database, leader, shutdown, telemetry, Config};
use followup_readmodel::{Projector, ReadModel};
use followup_relay::Relay;
use followup_rule_worker::{load_rules, RuleWorker, WorkerConfig};
use followup_scheduler::{Scheduler, SchedulerConfig, SystemClock};
use followup_store::followups::upcaster;
use followup_store::{EventStore, FollowUps};
use std::sync::Arc;

/// The ESAS follow-up server.
#[derive(Debug, Parser)]
#[command(name = "followupd", version, about, long_about = None)]
struct Cli {
    /// The roles to run (default: all).
    #[arg(value_enum)]
    roles: Vec<Role>,
}

/// A role of the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Role {
    /// Every role this version has.
    All,
    /// The HTTP API.
    Api,
    /// Turns inbound job outcomes and events into exceptions and tasks.
    RuleWorker,
    /// Turns ESAS domain events into notifications for their subscribers.
    Notifier,
    /// Keeps the read models up to date with the event store.
    Projector,
    /// Publishes every follow-up event on NATS.
    Relay,
    /// Runs the scheduled jobs: overdue, reminders, the daily digest, escalation.
    Scheduler,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    telemetry::init();
    let cli = Cli::parse();
    // Installed before any role records a metric, so /metrics shows them all.
    let _ = followup_api::metrics_handle();
    let config = Config::from_env().context("configuration")?;
    let mut roles = cli.roles;
    if roles.is_empty() || roles.contains(&Role::All) {
        roles = vec![
            Role::RuleWorker,
            Role::Notifier,
            Role::Projector,
            Role::Relay,
            Role::Scheduler,
            Role::Api,
        ];
    }
    roles.dedup();
    // Checked before anything connects, so a bad schedule is named at once.
    let scheduler_config = roles
        .contains(&Role::Scheduler)
        .then(SchedulerConfig::from_env)
        .transpose()
        .context("scheduler configuration")?;

    let shutdown = shutdown::on_signal();
    let pool = database::connect(&config.database_url, 16, Duration::from_secs(30), &shutdown)
        .await
        .context("connecting to PostgreSQL")?;
    followup_store::MIGRATOR
        .run(&pool)
        .await
        .context("running the database migrations")?;
    let nats = followup_messaging::connect(&config.nats_url, Duration::from_secs(30), &shutdown)
        .await
        .context("connecting to NATS")?;
    let js = async_nats::jetstream::new(nats.clone());
    let streams = Streams {
        replicas: config.stream_replicas,
        ..Streams::default()
    };
    // A cluster that has just started (or lost a node) takes a moment to elect its
    // JetStream leaders: retry for a while before giving up.
    let started = std::time::Instant::now();
    while let Err(error) = ensure_streams(&js, &streams).await {
        if started.elapsed() > Duration::from_secs(60) || shutdown.is_cancelled() {
            return Err(error).context("creating the JetStream streams");
        }
        tracing::warn!(error.message = %error, "JetStream streams not ready yet; retrying");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let store = EventStore::new(pool.clone()).with_upcaster(upcaster());
    let followups = FollowUps::new(store.clone());
    let read_model = ReadModel::new(pool.clone());

    let mut tasks = tokio::task::JoinSet::new();
    for role in roles {
        match role {
            Role::RuleWorker => {
                let rules = load_rules(config.rules_path.as_deref())
                    .context("loading the rules (FOLLOWUP_RULES)")?;
                let config = WorkerConfig {
                    streams: streams.clone(),
                    ..WorkerConfig::default()
                };
                let worker = RuleWorker::new(js.clone(), followups.clone(), rules, config)
                    .await
                    .context("starting the rule worker")?;
                tasks.spawn(worker.run(shutdown.clone()));
            }
            Role::Notifier => {
                let config = NotifierConfig {
                    streams: streams.clone(),
                    ..NotifierConfig::default()
                };
                let notifier =
                    Notifier::new(js.clone(), followups.clone(), read_model.clone(), config)
                        .await
                        .context("starting the notifier")?;
                tasks.spawn(notifier.run(shutdown.clone()));
            }
            // One active projector and relay among all processes; the others stand by and
            // take over when it dies (design section 9: several processes per role).
            Role::Projector => {
                let (store, read_model) = (store.clone(), read_model.clone());
                tasks.spawn(leader::run_as_leader(
                    pool.clone(),
                    "projector",
                    shutdown.clone(),
                    move |active| Projector::new(store.clone(), read_model.clone()).run(active),
                ));
            }
            Role::Relay => {
                let (store, js) = (store.clone(), js.clone());
                tasks.spawn(leader::run_as_leader(
                    pool.clone(),
                    "relay",
                    shutdown.clone(),
                    move |active| Relay::new(store.clone(), js.clone()).run(active),
                ));
            }
            Role::Scheduler => {
                let config = scheduler_config.clone().expect("read above");
                let scheduler = Scheduler::new(config, followups.clone(), Arc::new(SystemClock));
                tasks.spawn(scheduler.run(shutdown.clone()));
            }
            Role::Api => {
                let secret = config.require_jwt_secret().context("starting the API")?;
                if config.dev_login {
                    tracing::warn!("FOLLOWUP_DEV_LOGIN is on: anyone can sign in to the web inbox as anyone; never in production");
                }
                let state = Arc::new(AppState {
                    streams: streams.clone(),
                    dev_login: config.dev_login,
                    ..AppState::new(
                        followups.clone(),
                        read_model.clone(),
                        Auth::new(secret),
                        Some(nats.clone()),
                    )
                });
                let listener = tokio::net::TcpListener::bind(config.http_addr)
                    .await
                    .with_context(|| {
                        format!("listening on FOLLOWUP_HTTP_ADDR {}", config.http_addr)
                    })?;
                let shutdown = shutdown.clone();
                tasks.spawn(async move {
                    if let Err(error) = followup_api::serve(listener, state, shutdown).await {
                        tracing::error!(error.message = %error, "the API stopped");
                    }
                });
            }
            Role::All => unreachable!("expanded above"),
        }
    }
    tracing::info!("followupd running; Ctrl-C or SIGTERM stops it");
    while tasks.join_next().await.is_some() {}
    pool.close().await;
    Ok(())
}
