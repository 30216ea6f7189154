//! `followupctl show`: follow-ups as their events say they are now.

use clap::Args;
use followup_domain::FollowUp;
use followup_store::followups::{upcaster, STREAM_TYPE};
use followup_store::{EventStore, FollowUps};
use sqlx::PgPool;

/// Settings of `show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// Only this institution's follow-ups.
    #[arg(long)]
    institution: Option<String>,
    /// Only this kind: exception, task or notification.
    #[arg(long)]
    kind: Option<String>,
    /// Only this status: open, completed or closed.
    #[arg(long)]
    status: Option<String>,
}

/// Prints the follow-ups (with `json`: one JSON object per line).
pub async fn run(args: ShowArgs, pool: PgPool, json: bool) -> anyhow::Result<()> {
    let ids: Vec<String> = sqlx::query_scalar(
        "SELECT stream_id FROM events WHERE stream_type = $1 AND version = 1 ORDER BY position",
    )
    .bind(STREAM_TYPE)
    .fetch_all(&pool)
    .await?;
    let repo = FollowUps::new(EventStore::new(pool).with_upcaster(upcaster()));
    let ids: Vec<_> = ids.iter().filter_map(|id| id.parse().ok()).collect();
    let states = repo.load_many(&ids).await?;
    let mut shown: Vec<&FollowUp> = ids
        .iter()
        .filter_map(|id| states.get(id).and_then(Option::as_ref))
        .filter(|f| {
            args.institution
                .as_deref()
                .is_none_or(|i| f.institution.as_str() == i)
                && args.kind.as_deref().is_none_or(|k| f.kind.as_str() == k)
                && args
                    .status
                    .as_deref()
                    .is_none_or(|s| f.status.as_str() == s)
        })
        .collect();
    shown.sort_by_key(|f| f.created_at);
    for f in &shown {
        if json {
            println!("{}", serde_json::to_string(f)?);
        } else {
            println!(
                "{} {:<5} {:<12} {:<9} {:<9} occ={:<2} v{:<2} owner={:<26} {}",
                f.id,
                f.institution.as_str(),
                f.kind.as_str(),
                f.status.as_str(),
                f.status_reason.as_str(),
                f.occurrences,
                f.version,
                f.owner.to_string(),
                f.subject.as_str()
            );
        }
    }
    if !json {
        println!("{} follow-up(s)", shown.len());
    }
    Ok(())
}
