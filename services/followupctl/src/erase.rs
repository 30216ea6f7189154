//! `followupctl erase` and `followupctl legal-hold`: an erasure request (GDPR art. 17) for
//! one data subject, and the legal holds that keep a follow-up from erasure and retention.
//! The procedure is in `docs/operations.md` ("Erasure requests").

use anyhow::Context as _;
use chrono::Utc;
use clap::{Args, Subcommand};
use followup_domain::{
    Actor, Command, Context, DataSubject, FollowUpId, InstitutionId, Reason, UserId,
};
use followup_messaging::{JetStream, Streams};
use followup_privacy::{ErasureReport, ErasureRequest, Privacy};
use followup_readmodel::ReadModel;
use followup_store::{CommandMeta, Expect, FollowUps};
use serde::Serialize;

use crate::output::Report;

/// Settings of `erase`.
#[derive(Debug, Args)]
pub struct EraseArgs {
    /// The data subject: `student:<id>`, `applicant:<id>`, `guest_student:<id>` or
    /// `user:<id>`.
    #[arg(long)]
    pub subject: String,
    /// Why, for the record (a case number; no CPR number).
    #[arg(long)]
    pub reason: String,
    /// Only this institution's data (default: every institution's).
    #[arg(long)]
    pub institution: Option<String>,
    /// Who carries it out, recorded as the actor of the `erased` events.
    #[arg(long, env = "USER", default_value = "operator")]
    pub by: String,
}

/// `legal-hold place` and `legal-hold release`.
#[derive(Debug, Subcommand)]
pub enum LegalHoldCmd {
    /// Keeps a follow-up past its retention and from erasure until released.
    ///
    /// Example: followupctl legal-hold place --followup <id> --reason "Klagesag 2026-7"
    Place(HoldArgs),
    /// Lifts the legal hold.
    Release(HoldArgs),
}

/// Settings of `legal-hold`.
#[derive(Debug, Args)]
pub struct HoldArgs {
    /// The follow-up's id.
    #[arg(long)]
    pub followup: String,
    /// Why it must be kept (for `place`).
    #[arg(long, default_value = "")]
    pub reason: String,
    /// Who places or lifts it.
    #[arg(long, env = "USER", default_value = "operator")]
    pub by: String,
}

impl Report for ErasureReport {
    fn human(&self) -> String {
        let mut text = format!(
            "erasure {}: {} follow-up(s) erased, {} kept under a legal hold, {} digest entr(y/ies) rewritten",
            self.id,
            self.followups.erased.len(),
            self.followups.held.len(),
            self.digest_entries
        );
        if let Some(purged) = self.purged_messages {
            text.push_str(&format!(
                ", {purged} message(s) deleted from the outbound and dead-letter streams"
            ));
        }
        for id in &self.followups.held {
            text.push_str(&format!("\n  kept (legal hold): {id}"));
        }
        text
    }
}

fn operator(by: &str) -> anyhow::Result<Actor> {
    let id = UserId::parse(by).with_context(|| format!("--by {by:?}"))?;
    Ok(Actor::User { id })
}

/// Runs the erasure request.
pub async fn erase(
    args: &EraseArgs,
    followups: FollowUps,
    nats: Option<(JetStream, Streams)>,
) -> anyhow::Result<ErasureReport> {
    let subject: DataSubject = args.subject.parse().context("--subject")?;
    let reason = Reason::parse(&args.reason).context("--reason")?;
    let institution = match &args.institution {
        Some(code) => Some(InstitutionId::parse(code).context("--institution")?),
        None => None,
    };
    let mut privacy = Privacy::new(followups);
    if let Some((js, streams)) = nats {
        privacy = privacy.with_streams(js, streams);
    }
    let request = ErasureRequest {
        institution,
        subject,
        reason,
        actor: operator(&args.by)?,
    };
    Ok(privacy.erase_subject(&request, Utc::now()).await?)
}

/// What `legal-hold` did.
#[derive(Debug, Serialize)]
pub struct HoldReport {
    /// The follow-up.
    pub followup: FollowUpId,
    /// Whether it is held now.
    pub held: bool,
    /// False when it was so already.
    pub changed: bool,
}

impl Report for HoldReport {
    fn human(&self) -> String {
        let state = if self.held {
            "under a legal hold"
        } else {
            "not held"
        };
        let change = if self.changed { "now" } else { "already" };
        format!("follow-up {} is {change} {state}", self.followup)
    }
}

/// Places or lifts a legal hold.
pub async fn legal_hold(cmd: &LegalHoldCmd, followups: FollowUps) -> anyhow::Result<HoldReport> {
    let (args, place) = match cmd {
        LegalHoldCmd::Place(args) => (args, true),
        LegalHoldCmd::Release(args) => (args, false),
    };
    let id: FollowUpId = args.followup.parse().context("--followup")?;
    let command = if place {
        Command::PlaceLegalHold {
            reason: Reason::parse(&args.reason).context("--reason")?,
        }
    } else {
        Command::ReleaseLegalHold
    };
    let ctx = Context {
        actor: operator(&args.by)?,
        now: Utc::now(),
    };
    let read_model = ReadModel::new(followups.store().pool().clone());
    let outcome = followups
        .execute(id, command, &ctx, &CommandMeta::default(), Expect::Current)
        .await?;
    read_model
        .upsert(std::slice::from_ref(&outcome.state))
        .await?;
    Ok(HoldReport {
        followup: id,
        held: outcome.state.legal_hold.is_some(),
        changed: !outcome.events.is_empty(),
    })
}
