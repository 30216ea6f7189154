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
//! - `main.rs`: command line, configuration, connecting, migrating, creating streams.
//! - `lib.rs`: the composition root ([`followupd::App`]), which the end-to-end tests use too.

use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, ValueEnum};
use followup_messaging::{ensure_streams, Streams};
use followup_platform::{database, reachability, shutdown, telemetry, Config};
use followup_rule_worker::load_rules;
use followup_scheduler::SchedulerConfig;
use followupd::{App, Role, Settings};

/// The ESAS follow-up server.
#[derive(Debug, Parser)]
#[command(name = "followupd", version, about, long_about = None)]
struct Cli {
    /// The roles to run (default: all).
    #[arg(value_enum)]
    roles: Vec<RoleArg>,
}

/// A role on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum RoleArg {
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

/// The roles named on the command line, in pipeline order; a role named twice is refused.
fn roles(args: &[RoleArg]) -> anyhow::Result<Vec<Role>> {
    if args.is_empty() || args == [RoleArg::All] {
        return Ok(Role::ALL.to_vec());
    }
    let mut roles = Vec::new();
    for arg in args {
        let role = match arg {
            RoleArg::All => anyhow::bail!("`all` cannot be combined with other roles"),
            RoleArg::Api => Role::Api,
            RoleArg::RuleWorker => Role::RuleWorker,
            RoleArg::Notifier => Role::Notifier,
            RoleArg::Projector => Role::Projector,
            RoleArg::Relay => Role::Relay,
            RoleArg::Scheduler => Role::Scheduler,
        };
        if roles.contains(&role) {
            anyhow::bail!("role {role} is named twice; name each role once");
        }
        roles.push(role);
    }
    roles.sort();
    Ok(roles)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Before anything reads the environment: the settings a local run left (`.local/env`).
    let env_file = followup_platform::config::load_env_file().context("configuration")?;
    let telemetry = telemetry::init();
    if let Some(path) = env_file {
        tracing::info!(config.env_file = %path.display(), "settings read from an environment file for the variables that were unset");
    }
    let cli = Cli::parse();
    let roles = roles(&cli.roles)?;
    // Installed before any role records a metric, so /metrics shows them all.
    let _ = followup_api::metrics_handle();
    let config = Config::from_env().context("configuration")?;
    // Checked before anything connects, so a bad setting is named at once.
    let scheduler = roles
        .contains(&Role::Scheduler)
        .then(SchedulerConfig::from_env)
        .transpose()
        .context("scheduler configuration")?;
    let rules = if roles.contains(&Role::RuleWorker) {
        load_rules(config.rules_path.as_deref()).context("loading the rules (FOLLOWUP_RULES)")?
    } else {
        followup_rules::RuleSet::builtin()
    };
    let jwt_secret = if roles.contains(&Role::Api) {
        Some(
            config
                .require_jwt_secret()
                .context("starting the API")?
                .to_owned(),
        )
    } else {
        None
    };

    let shutdown = shutdown::on_signal();
    let pool = database::connect(&config.database_url, 16, Duration::from_secs(30), &shutdown)
        .await
        .context("connecting to PostgreSQL")?;
    // Migrations change the schema: with FOLLOWUP_MIGRATE_DATABASE_URL they run as the owner
    // role, and the service itself connects as the application role, which may not.
    let migrating = match &config.migrate_database_url {
        Some(url) => Some(
            database::connect(url, 2, Duration::from_secs(30), &shutdown)
                .await
                .context("connecting to PostgreSQL to migrate (FOLLOWUP_MIGRATE_DATABASE_URL)")?,
        ),
        None => None,
    };
    followup_store::migrate(migrating.as_ref().unwrap_or(&pool))
        .await
        .context("running the database migrations")?;
    if let Some(migrating) = migrating {
        migrating.close().await;
    }
    if let Ok((user, true)) = database::role(&pool).await {
        tracing::warn!(
            db.user = %user,
            "followupd connects to PostgreSQL as a superuser, which could change or delete \
             events (it can disable the append-only triggers); run it as a role that may only \
             read and append"
        );
    }
    // One warning when PostgreSQL becomes unreachable and one when it is back.
    tokio::spawn(reachability::watch_postgres(
        pool.clone(),
        reachability::Reachability::new("postgres"),
        shutdown.clone(),
    ));
    let nats = followup_messaging::connect(&config.nats_url, Duration::from_secs(30), &shutdown)
        .await
        .context("connecting to NATS")?;
    let js = async_nats::jetstream::new(nats.clone());
    let streams = Streams {
        replicas: config.stream_replicas,
        dead_letter_retention: config.dead_letter_retention,
        outbound_retention: config.outbound_retention,
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
    let http = if roles.contains(&Role::Api) {
        Some(
            tokio::net::TcpListener::bind(config.http_addr)
                .await
                .with_context(|| format!("listening on FOLLOWUP_HTTP_ADDR {}", config.http_addr))?,
        )
    } else {
        None
    };
    let settings = Settings {
        streams,
        rules,
        scheduler,
        jwt_secret,
        dev_login: config.dev_login,
        http,
        ready_max_lag: config.ready_max_lag,
        hold_back_warn: config.hold_back_warn,
        token_max_lifetime: config.token_max_lifetime,
        institutions: config.institutions.clone(),
        max_deliveries: config.max_deliveries,
        ready_max_failing: config.ready_max_failing,
        http_header_timeout: config.http_header_timeout,
        oidc: config.oidc.clone(),
        accept_hs256: config.accept_hs256,
        scim_tokens: config.scim_tokens.clone(),
        esas_links: config.esas_links.clone(),
    };
    let app = App::start(&roles, pool.clone(), nats, js, settings, shutdown).await?;
    tracing::info!(roles = ?roles.iter().map(|r| r.name()).collect::<Vec<_>>(), "followupd running; Ctrl-C or SIGTERM stops it");
    let result = app.wait().await;
    pool.close().await;
    telemetry.shutdown();
    result.map_err(anyhow::Error::from)
}
