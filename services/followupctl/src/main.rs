//! `followupctl`: the operators' tool for the follow-up service. The commands live in the
//! library (`lib.rs`); this is the command line and its dispatch.
//!
//! Exit codes: 0 done; 1 the command failed (the message says why, e.g. PostgreSQL or NATS
//! unreachable); 2 the command line is wrong (clap); 3 `verify` found something.
//!
//! # Layout
//! - `main.rs`: the command line (clap), connections, output and exit codes.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use followup_messaging::Streams;
use followup_platform::{shutdown, telemetry};
use followup_readmodel::ReadModel;
use followup_store::followups::upcaster;
use followup_store::{EventStore, FollowUps};
use followupctl::connect::{self, require};
use followupctl::output::print;
use followupctl::progress::ProgressView;
use followupctl::{
    bench, dlq, erase, inspect, rebuild, replay, schedule, show, simulate, token, verify,
};
use tokio_util::sync::CancellationToken;

/// Operate the ESAS follow-up service: rebuild and verify projections, replay inbound
/// streams, inspect streams and checkpoints, handle dead letters, benchmarks, simulation.
#[derive(Debug, Parser)]
#[command(name = "followupctl", version, about, long_about = None)]
struct Cli {
    /// The PostgreSQL database of the service.
    #[arg(long, env = "DATABASE_URL", global = true, hide_env_values = true)]
    database_url: Option<String>,
    /// The NATS server of the service.
    #[arg(long, env = "NATS_URL", global = true)]
    nats_url: Option<String>,
    /// How long to keep trying to reach PostgreSQL and NATS, in seconds.
    #[arg(long, default_value_t = 10, global = true)]
    connect_timeout: u64,
    /// Print the result as JSON (for scripts) instead of text for people.
    #[arg(long, global = true)]
    json: bool,
    /// Show no progress on stderr.
    #[arg(long, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Rebuilds the projection (follow-ups, inboxes, subscriptions) from the events while the
    /// service keeps serving, and switches it in atomically. Resumes an interrupted rebuild.
    ///
    /// Example: followupctl rebuild
    Rebuild(rebuild::RebuildArgs),
    /// Replays a range of an inbound stream through the rule worker or the notifier; creates
    /// only what is missing.
    ///
    /// Example: followupctl replay --stream ESAS_JOBS --since 2026-11-20T00:00:00Z
    Replay(replay::ReplayArgs),
    /// Shows a follow-up's stream and state, or the event store's positions and the
    /// projections' checkpoints and lag.
    #[command(subcommand)]
    Inspect(inspect::InspectCmd),
    /// Lists, shows, redrives and purges dead letters.
    #[command(subcommand)]
    Dlq(dlq::DlqCmd),
    /// Verifies the event store (versions, event ids, checkpoints) and that the projection
    /// equals a rebuild; exits with 3 on any finding.
    ///
    /// Example: followupctl verify --json
    Verify(verify::VerifyArgs),
    /// Runs the database migrations (the server also does this on start).
    ///
    /// Example: followupctl migrate
    Migrate,
    /// Runs a benchmark against the real PostgreSQL (and NATS) and prints figures.
    #[command(subcommand)]
    Bench(bench::BenchCmd),
    /// Publishes inbound messages on NATS, as upstream ESAS jobs would.
    #[command(subcommand)]
    Simulate(simulate::SimulateCmd),
    /// Lists the scheduled jobs, or runs one now for its latest tick (exactly once).
    ///
    /// Example: followupctl schedule fire overdue
    #[command(subcommand)]
    Schedule(schedule::ScheduleCmd),
    /// Mints a development token for the API.
    ///
    /// Example: followupctl token --sub u1 --inst KP --team admissions --role caseworker
    Token(token::TokenArgs),
    /// Erases a data subject's personal data from everything the service keeps (GDPR art.
    /// 17): their follow-ups stay, anonymised. See docs/operations.md, "Erasure requests".
    ///
    /// Example: followupctl erase --subject student:S-1 --reason "Anmodning 2026-14"
    Erase(erase::EraseArgs),
    /// Places or lifts a legal hold on a follow-up (keeps it past retention and erasure).
    #[command(subcommand)]
    LegalHold(erase::LegalHoldCmd),
    /// Prints follow-ups as their events say they are now.
    ///
    /// Example: followupctl show --institution KP
    Show(show::ShowArgs),
}

/// The exit code of `verify` when it found something.
const FINDINGS: u8 = 3;

#[tokio::main]
async fn main() -> ExitCode {
    // Before anything reads the environment: the settings a local run left (`.local/env`).
    if let Err(error) = followup_platform::config::load_env_file() {
        eprintln!("followupctl: {error}");
        return ExitCode::FAILURE;
    }
    // Only warnings and errors are logged unless RUST_LOG says otherwise: the results are
    // what the command prints, not the clients' connection lines.
    telemetry::init_with_default("warn");
    let cli = Cli::parse();
    let shutdown = shutdown::on_signal();
    match run(cli, &shutdown).await {
        Ok(code) => code,
        Err(error) => {
            let text = readable(&error);
            eprintln!("followupctl: {text}");
            if text.contains("relation \"") && text.contains("does not exist") {
                eprintln!(
                    "followupctl: the database's schema is older than this tool: run \
                     `followupctl migrate` (followupd also migrates on start)"
                );
            }
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, each cause only when the message before does not already say
/// it (library errors include their source in their own message).
fn readable(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let message = cause.to_string();
        if !text.contains(&message) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&message);
        }
    }
    text
}

async fn run(cli: Cli, shutdown: &CancellationToken) -> anyhow::Result<ExitCode> {
    let patience = Duration::from_secs(cli.connect_timeout);
    let db = |connections: u32| {
        connect::database(cli.database_url.as_deref(), connections, patience, shutdown)
    };
    // Schema changes (migrations, a rebuild's table swap) as the owner role when
    // FOLLOWUP_MIGRATE_DATABASE_URL names it; the application role may not make them.
    let owner_url = std::env::var("FOLLOWUP_MIGRATE_DATABASE_URL")
        .ok()
        .filter(|url| !url.trim().is_empty());
    if let (Some(owner), Some(served)) = (owner_url.as_deref(), cli.database_url.as_deref()) {
        followup_platform::config::check_same_database(owner, served).context("configuration")?;
    }
    let owner_db = |connections: u32| {
        let url = owner_url.as_deref().or(cli.database_url.as_deref());
        connect::database(url, connections, patience, shutdown)
    };
    let nats = || connect::nats(cli.nats_url.as_deref(), patience, shutdown);
    let streams = Streams::default();
    match cli.command {
        Cmd::Rebuild(args) => {
            let pool = owner_db(8).await?;
            let mut view = ProgressView::new("rebuild", cli.quiet || cli.json);
            let outcome = rebuild::run(&args, pool, shutdown, &mut |p| view.update(p)).await;
            view.finish();
            print(&outcome?, cli.json)?;
        }
        Cmd::Replay(args) => {
            let pool = db(8).await?;
            let js = nats().await?;
            let followups = FollowUps::new(EventStore::new(pool.clone()).with_upcaster(upcaster()));
            let report = replay::run(&args, &js, &streams, followups, ReadModel::new(pool)).await?;
            let failed = report.retried > 0;
            print(&report, cli.json)?;
            if failed {
                return Ok(ExitCode::FAILURE);
            }
        }
        Cmd::Inspect(inspect::InspectCmd::Followup(args)) => {
            print(&inspect::followup(db(2).await?, args.id).await?, cli.json)?;
        }
        Cmd::Inspect(inspect::InspectCmd::Store) => {
            print(&inspect::store(db(2).await?).await?, cli.json)?;
        }
        Cmd::Dlq(cmd) => {
            let js = nats().await?;
            match cmd {
                dlq::DlqCmd::List(args) => print(
                    &dlq::list(&js, &streams, &args.filter, args.limit).await?,
                    cli.json,
                )?,
                dlq::DlqCmd::Show(args) => {
                    print(&dlq::show(&js, &streams, args.sequence).await?, cli.json)?;
                }
                dlq::DlqCmd::Redrive(args) => {
                    let report = dlq::redrive(&js, &streams, &args).await?;
                    let failed = !report.failed.is_empty();
                    print(&report, cli.json)?;
                    if failed {
                        return Ok(ExitCode::FAILURE);
                    }
                }
                dlq::DlqCmd::Purge(args) => {
                    print(&dlq::purge(&js, &streams, &args).await?, cli.json)?;
                }
            }
        }
        Cmd::Verify(args) => {
            // It projects into scratch tables to compare: as the owner role, like a rebuild.
            let pool = owner_db(8).await?;
            // With NATS, an erased subject is also looked for in the streams.
            let nats = match (&cli.nats_url, args.subjects.is_empty()) {
                (Some(_), false) => Some((nats().await?, streams.clone())),
                _ => None,
            };
            let mut view = ProgressView::new("verify", cli.quiet || cli.json);
            let report = verify::run(&args, pool, nats, shutdown, &mut |p| view.update(p)).await;
            view.finish();
            let report = report?;
            print(&report, cli.json)?;
            if !report.ok {
                return Ok(ExitCode::from(FINDINGS));
            }
        }
        Cmd::Migrate => {
            let pool = owner_db(2).await?;
            let app_role = followup_store::migrate(&pool)
                .await
                .context("running the migrations")?;
            println!("migrations are up to date");
            if app_role {
                println!("followup_app may read and append events, and nothing more");
            }
        }
        Cmd::Bench(cmd) => {
            // A benchmark creates a database of its own: as the local superuser when the
            // scripts name one (FOLLOWUP_ADMIN_DATABASE_URL).
            let admin = std::env::var("FOLLOWUP_ADMIN_DATABASE_URL")
                .ok()
                .filter(|url| !url.trim().is_empty());
            bench::run(
                cmd,
                require(
                    admin.as_deref().or(cli.database_url.as_deref()),
                    "DATABASE_URL",
                )?,
                cli.nats_url.as_deref(),
                cli.json,
                shutdown,
            )
            .await?;
        }
        Cmd::Simulate(cmd) => {
            let url = require(cli.nats_url.as_deref(), "NATS_URL")?;
            simulate::run(cmd, url, shutdown).await?;
        }
        Cmd::Schedule(cmd) => {
            let followups = FollowUps::new(EventStore::new(db(4).await?).with_upcaster(upcaster()));
            match cmd {
                schedule::ScheduleCmd::List => print(&schedule::list(followups)?, cli.json)?,
                schedule::ScheduleCmd::Fire(args) => {
                    print(&schedule::fire(&args, followups).await?, cli.json)?;
                }
            }
        }
        Cmd::Erase(args) => {
            let followups = FollowUps::new(EventStore::new(db(4).await?).with_upcaster(upcaster()));
            // Without NATS the streams are not purged; the next erasure with NATS does it.
            let nats = match cli.nats_url.as_deref() {
                Some(_) => Some((nats().await?, streams.clone())),
                None => None,
            };
            print(&erase::erase(&args, followups, nats).await?, cli.json)?;
        }
        Cmd::LegalHold(cmd) => {
            let followups = FollowUps::new(EventStore::new(db(2).await?).with_upcaster(upcaster()));
            print(&erase::legal_hold(&cmd, followups).await?, cli.json)?;
        }
        Cmd::Token(args) => token::run(args)?,
        Cmd::Show(args) => show::run(args, db(4).await?, cli.json).await?,
    }
    Ok(ExitCode::SUCCESS)
}
