//! `followupctl verify`: checks the event store's invariants and that the projection equals a
//! rebuild of it, and reports every finding (the command exits non-zero on any).
//!
//! Checks:
//! - **versions**: every stream's versions run 1, 2, 3, … without a gap;
//! - **event ids**: no event id is stored twice;
//! - **checkpoints**: every checkpoint names an event that is stored (none is ahead of the
//!   store);
//! - **projection**: the live tables equal a rebuild from the events, made beside them in
//!   shadow tables (`__verify`, dropped afterwards) and compared at the live checkpoint.

use clap::Args;
use followup_readmodel::{Progress, Rebuild};
use followup_store::followups::upcaster;
use followup_store::EventStore;
use serde::Serialize;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::output::Report;

/// How many examples a finding lists.
const EXAMPLES: usize = 10;

/// Settings of `verify`.
#[derive(Debug, Clone, Args)]
pub struct VerifyArgs {
    /// Skips the comparison of the projection with a rebuild (the slow check).
    #[arg(long)]
    pub skip_projection: bool,
}

/// One check.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// Its name.
    pub name: &'static str,
    /// True when nothing was found.
    pub ok: bool,
    /// One line on what was checked and found.
    pub summary: String,
    /// Examples of what was found.
    pub findings: Vec<String>,
}

/// What `verify` found.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    /// True when every check passed.
    pub ok: bool,
    /// The checks, in order.
    pub checks: Vec<Check>,
}

impl Report for VerifyReport {
    fn human(&self) -> String {
        let mut out = String::new();
        for check in &self.checks {
            out.push_str(&format!(
                "{} {:<11} {}\n",
                if check.ok { "ok  " } else { "FAIL" },
                check.name,
                check.summary
            ));
            for finding in &check.findings {
                out.push_str(&format!("       - {finding}\n"));
            }
        }
        out.push_str(if self.ok {
            "verified: no findings"
        } else {
            "verification FAILED: see the findings above"
        });
        out
    }
}

/// Runs the checks on the database behind `pool`.
pub async fn run(
    args: &VerifyArgs,
    pool: PgPool,
    cancel: &CancellationToken,
    observer: &mut (dyn FnMut(Progress) + Send),
) -> anyhow::Result<VerifyReport> {
    let mut checks = vec![
        versions(&pool).await?,
        event_ids(&pool).await?,
        checkpoints(&pool).await?,
    ];
    if !args.skip_projection {
        checks.push(projection(&pool, cancel, observer).await?);
    }
    Ok(VerifyReport {
        ok: checks.iter().all(|c| c.ok),
        checks,
    })
}

async fn versions(pool: &PgPool) -> anyhow::Result<Check> {
    let bad: Vec<(String, i64, i64, i64)> = sqlx::query_as(
        "SELECT stream_id, count(*), min(version), max(version) FROM events GROUP BY stream_id
         HAVING min(version) <> 1 OR max(version) <> count(*) ORDER BY stream_id",
    )
    .fetch_all(pool)
    .await?;
    let streams: i64 = sqlx::query_scalar("SELECT count(DISTINCT stream_id) FROM events")
        .fetch_one(pool)
        .await?;
    Ok(Check {
        name: "versions",
        ok: bad.is_empty(),
        summary: if bad.is_empty() {
            format!("versions run 1, 2, 3, … without gaps in all {streams} streams")
        } else {
            format!(
                "{} of {streams} streams have gaps in their versions",
                bad.len()
            )
        },
        findings: bad
            .iter()
            .take(EXAMPLES)
            .map(|(stream, count, min, max)| {
                format!("stream {stream}: {count} events, versions {min} to {max}")
            })
            .collect(),
    })
}

async fn event_ids(pool: &PgPool) -> anyhow::Result<Check> {
    let duplicated: Vec<(uuid::Uuid, i64)> = sqlx::query_as(
        "SELECT event_id, count(*) FROM events GROUP BY event_id HAVING count(*) > 1",
    )
    .fetch_all(pool)
    .await?;
    Ok(Check {
        name: "event ids",
        ok: duplicated.is_empty(),
        summary: if duplicated.is_empty() {
            "no event id is stored twice".into()
        } else {
            format!("{} event ids are stored more than once", duplicated.len())
        },
        findings: duplicated
            .iter()
            .take(EXAMPLES)
            .map(|(id, n)| format!("event {id} is stored {n} times"))
            .collect(),
    })
}

async fn checkpoints(pool: &PgPool) -> anyhow::Result<Check> {
    let ahead: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT c.name, c.transaction_id, c.position FROM projection_checkpoints c
         WHERE (c.transaction_id, c.position) <> (0, 0)
           AND NOT EXISTS (SELECT 1 FROM events e
                           WHERE (e.transaction_id, e.position) = (c.transaction_id, c.position))
         ORDER BY c.name",
    )
    .fetch_all(pool)
    .await?;
    let all: i64 = sqlx::query_scalar("SELECT count(*) FROM projection_checkpoints")
        .fetch_one(pool)
        .await?;
    Ok(Check {
        name: "checkpoints",
        ok: ahead.is_empty(),
        summary: if ahead.is_empty() {
            format!("all {all} checkpoints name a stored event")
        } else {
            format!("{} of {all} checkpoints name no stored event (ahead of the store, or the store lost events)", ahead.len())
        },
        findings: ahead
            .iter()
            .map(|(name, tx, pos)| format!("{name} is at {tx}:{pos}, which is no stored event"))
            .collect(),
    })
}

async fn projection(
    pool: &PgPool,
    cancel: &CancellationToken,
    observer: &mut (dyn FnMut(Progress) + Send),
) -> anyhow::Result<Check> {
    let rebuild =
        Rebuild::for_verification(EventStore::new(pool.clone()).with_upcaster(upcaster()));
    // A verification never resumes: it compares with a copy made now.
    rebuild.discard().await?;
    let compared = async {
        rebuild.build(cancel, observer).await?;
        rebuild.compare(EXAMPLES).await
    }
    .await;
    rebuild.discard().await?;
    let comparison = compared?;
    let compared: i64 = comparison.compared.values().sum();
    let differing: i64 = comparison.differing.values().sum();
    let mut per_table: Vec<String> = comparison
        .compared
        .iter()
        .map(|(table, n)| {
            format!(
                "{table} {n} rows, {} differ",
                comparison.differing.get(table).copied().unwrap_or(0)
            )
        })
        .collect();
    per_table.sort();
    Ok(Check {
        name: "projection",
        ok: comparison.is_equal(),
        summary: format!(
            "{} the live read model with a rebuild from the events at {}:{} ({compared} rows; {})",
            if differing == 0 {
                "equals"
            } else {
                "DIFFERS from"
            },
            comparison.at.transaction_id,
            comparison.at.position,
            per_table.join(", ")
        ),
        findings: comparison.examples,
    })
}
