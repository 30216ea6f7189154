//! `followupctl`: the operators' tool for the follow-up service.
//!
//! # Layout
//! - `main.rs`: the command line (clap) and dispatch.
//! - [`bench`]: benchmarks that print figures (`followupctl bench …`).
//! - [`simulate`]: publishes the contract examples or a simulated admission day on NATS.
//! - [`show`]: prints follow-ups from the event store.
//! - [`token`]: mints development tokens for the API.

mod bench;
mod bench_api;
mod bench_notify;
mod bench_overdue;
mod ingest;
mod show;
mod simulate;
mod token;

use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use followup_platform::{database, shutdown, telemetry};
use sqlx::PgPool;

/// Operate the ESAS follow-up service: benchmarks, simulation, inspection.
#[derive(Debug, Parser)]
#[command(name = "followupctl", version, about, long_about = None)]
struct Cli {
    /// The PostgreSQL database of the service.
    #[arg(long, env = "DATABASE_URL", global = true, hide_env_values = true)]
    database_url: Option<String>,
    /// The NATS server of the service.
    #[arg(long, env = "NATS_URL", global = true)]
    nats_url: Option<String>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
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
    /// Mints a development token for the API.
    ///
    /// Example: followupctl token --sub u1 --inst KP --team admissions --role caseworker
    Token(token::TokenArgs),
    /// Prints follow-ups as their events say they are now.
    ///
    /// Example: followupctl show --institution KP
    Show(show::ShowArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    telemetry::init();
    let cli = Cli::parse();
    let shutdown = shutdown::on_signal();
    match cli.command {
        Cmd::Migrate => {
            let pool = pool(cli.database_url.as_deref(), &shutdown).await?;
            followup_store::MIGRATOR
                .run(&pool)
                .await
                .context("running the migrations")?;
            println!("migrations are up to date");
            Ok(())
        }
        Cmd::Bench(cmd) => {
            bench::run(
                cmd,
                require(cli.database_url.as_deref(), "DATABASE_URL")?,
                cli.nats_url.as_deref(),
                &shutdown,
            )
            .await
        }
        Cmd::Simulate(cmd) => {
            let url = require(cli.nats_url.as_deref(), "NATS_URL")?;
            simulate::run(cmd, url, &shutdown).await
        }
        Cmd::Token(args) => token::run(args),
        Cmd::Show(args) => {
            let pool = pool(cli.database_url.as_deref(), &shutdown).await?;
            show::run(args, pool).await
        }
    }
}

fn require<'a>(value: Option<&'a str>, name: &str) -> anyhow::Result<&'a str> {
    value.with_context(|| {
        format!(
            "{name} is not set: pass --{} or set {name}",
            name.to_lowercase().replace('_', "-")
        )
    })
}

/// Connects to the service's database.
async fn pool(
    url: Option<&str>,
    shutdown: &tokio_util::sync::CancellationToken,
) -> anyhow::Result<PgPool> {
    let url = require(url, "DATABASE_URL")?;
    Ok(database::connect(url, 4, Duration::from_secs(10), shutdown).await?)
}
