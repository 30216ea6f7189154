//! `followupd`: the follow-up server. One binary runs any set of roles, so each role can be
//! scaled on its own (design section 9):
//!
//! ```text
//! followupd all                 # every role in one process (development, small sites)
//! followupd rule-worker         # just the rule worker
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
use followup_messaging::{ensure_streams, Streams};
use followup_platform::{database, shutdown, telemetry, Config};
use followup_rule_worker::{load_rules, RuleWorker, WorkerConfig};
use followup_store::followups::upcaster;
use followup_store::{EventStore, FollowUps};

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
    /// Turns inbound job outcomes and events into exceptions and tasks.
    RuleWorker,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    telemetry::init();
    let cli = Cli::parse();
    let config = Config::from_env().context("configuration")?;
    let mut roles = cli.roles;
    if roles.is_empty() || roles.contains(&Role::All) {
        roles = vec![Role::RuleWorker];
    }
    roles.dedup();

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
    let js = async_nats::jetstream::new(nats);
    let streams = Streams::default();
    ensure_streams(&js, &streams)
        .await
        .context("creating the JetStream streams")?;
    let followups = FollowUps::new(EventStore::new(pool.clone()).with_upcaster(upcaster()));

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
            Role::All => unreachable!("expanded above"),
        }
    }
    tracing::info!("followupd running; Ctrl-C or SIGTERM stops it");
    while tasks.join_next().await.is_some() {}
    pool.close().await;
    Ok(())
}
