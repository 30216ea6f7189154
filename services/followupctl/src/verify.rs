//! `followupctl verify`: checks the event store's invariants and that the projection equals a
//! rebuild of it, and reports every finding (the command exits non-zero on any).
//!
//! Checks:
//! - **versions**: every stream's versions run 1, 2, 3, … without a gap;
//! - **event ids**: no event id is stored twice;
//! - **checkpoints**: every checkpoint names an event that is stored (none is ahead of the
//!   store);
//! - **projection**: the live tables equal a rebuild from the events, made beside them in
//!   shadow tables (`__verify`, dropped afterwards) and compared at the live checkpoint;
//! - **erasure**: every erased follow-up has its key destroyed, no event of it holds its
//!   personal fields in plaintext, and its read-model row reads as erased;
//! - **erased subject** (with `--subject`, once per subject): the subject's id appears
//!   nowhere the service keeps data: the stored events (as stored, not decrypted), the read
//!   model, the digest entries, the keys, and (with NATS) the outbound and dead-letter
//!   streams.

use clap::Args;
use followup_domain::{DataSubject, ERASED};
use followup_messaging::{holds_token, names, scan_matching, JetStream, Streams};
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
    /// A data subject that was erased (`student:S-1`): finds its id anywhere the service
    /// keeps data. May be given more than once.
    #[arg(long = "subject")]
    pub subjects: Vec<String>,
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
    nats: Option<(JetStream, Streams)>,
    cancel: &CancellationToken,
    observer: &mut (dyn FnMut(Progress) + Send),
) -> anyhow::Result<VerifyReport> {
    let mut checks = vec![
        versions(&pool).await?,
        event_ids(&pool).await?,
        checkpoints(&pool).await?,
        erasure(&pool).await?,
    ];
    for subject in &args.subjects {
        let subject: DataSubject = subject
            .parse()
            .map_err(|e| anyhow::anyhow!("--subject {subject:?}: {e}"))?;
        checks.push(erased_subject(&pool, nats.as_ref(), &subject).await?);
    }
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

/// Erased follow-ups whose key lives, whose events hold plaintext, or whose row does not
/// read as erased.
async fn erasure(pool: &PgPool) -> anyhow::Result<Check> {
    let erased: i64 = sqlx::query_scalar(
        "SELECT count(DISTINCT stream_id) FROM events WHERE event_type = 'erased'",
    )
    .fetch_one(pool)
    .await?;
    let live_keys: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT e.stream_id FROM events e
         JOIN data_keys k ON k.stream_id = e.stream_id
         WHERE e.event_type = 'erased' AND k.key_material IS NOT NULL
         ORDER BY 1 LIMIT $1",
    )
    .bind(EXAMPLES as i64)
    .fetch_all(pool)
    .await?;
    let plaintext: Vec<(String, i64)> = sqlx::query_as(
        "SELECT e.stream_id, e.version FROM events e
         WHERE e.stream_id IN (SELECT stream_id FROM events WHERE event_type = 'erased')
           AND NOT e.payload ? 'sealed'
           AND e.event_type IN ('created', 'edited', 'recurred', 'reopened')
           AND (coalesce(e.payload->>'subject', $1) <> $1
                OR coalesce(e.payload->>'description', '') NOT IN ('', $1)
                OR coalesce(e.payload->>'details', '') NOT IN ('', $1)
                OR coalesce(e.payload->'regarding'->>'id', $1) <> $1
                OR e.payload ? 'person')
         ORDER BY 1, 2 LIMIT $2",
    )
    .bind(ERASED)
    .bind(EXAMPLES as i64)
    .fetch_all(pool)
    .await?;
    let rows: Vec<String> = sqlx::query_scalar(
        "SELECT id::text FROM followups_view
         WHERE jsonb_typeof(doc->'erased_at') = 'string' AND subject <> $1
         ORDER BY 1 LIMIT $2",
    )
    .bind(ERASED)
    .bind(EXAMPLES as i64)
    .fetch_all(pool)
    .await?;
    let mut findings: Vec<String> = live_keys
        .iter()
        .map(|id| {
            format!("follow-up {id} is erased, but its key still lives: run the erasure again")
        })
        .collect();
    findings.extend(plaintext.iter().map(|(id, v)| {
        format!("follow-up {id} is erased, but its event v{v} holds personal data in plaintext (written before keys existed)")
    }));
    findings.extend(
        rows.iter()
            .map(|id| format!("follow-up {id} is erased, but its read-model row is not: rebuild")),
    );
    Ok(Check {
        name: "erasure",
        ok: findings.is_empty(),
        summary: if findings.is_empty() {
            format!(
                "all {erased} erased follow-ups have no key, no plaintext event and an erased row"
            )
        } else {
            format!(
                "{} finding(s) among {erased} erased follow-ups",
                findings.len()
            )
        },
        findings,
    })
}

/// Where the erased `subject`'s id is still found.
async fn erased_subject(
    pool: &PgPool,
    nats: Option<&(JetStream, Streams)>,
    subject: &DataSubject,
) -> anyhow::Result<Check> {
    let id = subject.id();
    let mut findings = Vec::new();
    let places: [(&str, &str); 4] = [
        ("event", "SELECT stream_id || ' v' || version, payload::text FROM events WHERE strpos(payload::text, $1) > 0"),
        ("read-model row", "SELECT id::text, doc::text FROM followups_view WHERE strpos(doc::text, $1) > 0"),
        ("digest entry", "SELECT event_key, summary FROM digest_entries WHERE strpos(summary, $1) > 0"),
        ("live key", "SELECT stream_id, subject_id FROM data_keys WHERE subject_id = $1"),
    ];
    for (place, sql) in places {
        let rows: Vec<(String, String)> = sqlx::query_as(sql).bind(id).fetch_all(pool).await?;
        findings.extend(
            rows.iter()
                .filter(|(_, text)| holds_token(text.as_bytes(), id))
                .map(|(at, _)| format!("{place} {at}")),
        );
    }
    let mut scanned = "the database";
    if let Some((js, streams)) = nats {
        scanned = "the database and the streams";
        for (stream, filter) in [
            (&streams.followups, "followups.>"),
            (&streams.dead_letters, "followups.dlq.>"),
        ] {
            let found = scan_matching(js, stream, filter, |p| names(p, id)).await?;
            findings.extend(
                found
                    .iter()
                    .map(|seq| format!("stream {stream} message {seq}")),
            );
        }
    }
    let total = findings.len();
    findings.truncate(EXAMPLES);
    Ok(Check {
        name: "erased",
        ok: total == 0,
        summary: if total == 0 {
            format!("{subject}: not found in {scanned}")
        } else {
            format!("{subject}: found {total} time(s) in {scanned}")
        },
        findings,
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
