//! Publishing simulated upstream messages (filled in with the rule worker).

use clap::Subcommand;
use tokio_util::sync::CancellationToken;

/// What to publish.
#[derive(Debug, Subcommand)]
pub enum SimulateCmd {
    /// Publishes the contract examples.
    Examples,
}

pub async fn run(
    _cmd: SimulateCmd,
    _url: &str,
    _shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    anyhow::bail!("not yet")
}
