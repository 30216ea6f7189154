//! `followupctl rebuild`: the projection rebuilt from the events alone, while the service
//! keeps serving, and switched in atomically (libs/readmodel's [`Rebuild`] does the work).
//! An interrupted rebuild (Ctrl-C, a crash) resumes where it stopped when run again.

use clap::Args;
use followup_readmodel::{Progress, Rebuild, RebuildReport};
use followup_store::followups::upcaster;
use followup_store::EventStore;
use serde::Serialize;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::output::Report;

/// Settings of `rebuild`.
#[derive(Debug, Clone, Args)]
pub struct RebuildArgs {
    /// Events per chunk of the load (one transaction each; an interruption loses at most one).
    #[arg(long, default_value_t = followup_readmodel::rebuild::DEFAULT_CHUNK)]
    pub chunk: usize,
    /// Drops the shadow tables of an interrupted rebuild instead of resuming it.
    #[arg(long)]
    pub discard: bool,
}

/// What `rebuild` did.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum RebuildOutcome {
    /// Rebuilt and switched in.
    Rebuilt {
        /// The figures.
        #[serde(flatten)]
        report: RebuildReport,
        /// Events per second of the whole run.
        events_per_second: f64,
    },
    /// An interrupted rebuild was thrown away.
    Discarded,
}

impl Report for RebuildOutcome {
    fn human(&self) -> String {
        match self {
            RebuildOutcome::Discarded => {
                "the interrupted rebuild is discarded (shadow tables dropped)".into()
            }
            RebuildOutcome::Rebuilt {
                report,
                events_per_second,
            } => {
                let t = &report.timings;
                format!(
                    "rebuilt the projection{}: {} events in {:.2} s ({events_per_second:.0} events/s), \
                     {} follow-ups, now at checkpoint {}:{}\n\
                     prepare {:.2} s, load {:.2} s (read {:.2} s beside apply {:.2} s + write {:.2} s), \
                     index {:.2} s, catch-up {:.2} s ({} events), switch {:.2} s",
                    if report.resumed { " (resumed)" } else { "" },
                    report.events_loaded + report.events_caught_up as i64,
                    t.total,
                    report.followups,
                    report.checkpoint.transaction_id,
                    report.checkpoint.position,
                    t.prepare,
                    t.load,
                    t.read,
                    t.apply,
                    t.write,
                    t.index,
                    t.catch_up,
                    report.events_caught_up,
                    t.switch,
                )
            }
        }
    }
}

/// Rebuilds (or, with `discard`, drops an interrupted rebuild) in the database behind `pool`.
pub async fn run(
    args: &RebuildArgs,
    pool: PgPool,
    cancel: &CancellationToken,
    observer: &mut (dyn FnMut(Progress) + Send),
) -> anyhow::Result<RebuildOutcome> {
    let rebuild =
        Rebuild::new(EventStore::new(pool).with_upcaster(upcaster())).chunk_size(args.chunk);
    if args.discard {
        rebuild.discard().await?;
        return Ok(RebuildOutcome::Discarded);
    }
    let report = rebuild.run(cancel, observer).await?;
    Ok(RebuildOutcome::Rebuilt {
        events_per_second: report.events_per_second(),
        report,
    })
}
