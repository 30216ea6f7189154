//! GDPR in an append-only store: erasing a data subject (art. 17) and ending retention
//! (art. 5(1)(e)) by crypto-shredding, with legal holds that keep a follow-up.
//!
//! The events never change. Each follow-up's personal fields are sealed with a key of its
//! own, tagged with its data subject (`followup_store::personal_data`); erasing destroys the
//! key, so every event of the follow-up reads as "[slettet]" from then on, wherever it is read
//! (history, rebuilds, the relay). Around that, [`Privacy::erase_followups`]:
//!
//! 1. records an `erased` event on each follow-up (who, when, why; no personal data), through
//!    the one executor, exactly once per follow-up whoever runs it and however often: its
//!    state is then anonymised by the domain itself, so a projector or a rebuild that read
//!    the events before the key went still writes "[slettet]";
//! 2. destroys the keys;
//! 3. writes the anonymised follow-ups through to the read model.
//!
//! [`Privacy::erase_subject`] does that for every follow-up of one person (those tagged with
//! them, and those whose texts name their id): it records the
//! request in `erasures` (with the follow-ups' ids, never the person's), deletes the dead
//! letters that name the person (when it has NATS), erases the follow-ups, rewrites the digest
//! entries that name the person, and deletes the follow-ups' messages from the outbound stream
//! (also those an earlier erasure could not, without NATS). A follow-up under a legal hold is
//! left as it is and reported.
//!
//! # Layout
//! - [`Privacy`]: the two erasures; [`ErasureRequest`], [`ErasureReport`], [`Erased`].
//! - [`retention`]: the retention rules by kind and status, and the follow-ups whose
//!   retention has ended (the scheduler's `retention` job erases them).

pub mod retention;

use chrono::{DateTime, Utc};
use followup_domain::{
    Actor, Command, Context, DataSubject, DomainError, ErasureCause, FollowUp, FollowUpId,
    InstitutionId, Reason, ERASED,
};
use followup_messaging::{holds_token, names, purge_matching, JetStream, PurgeError, Streams};
use followup_readmodel::{ReadError, ReadModel};
use followup_store::personal_data::{destroy_keys, keys_of_subject};
use followup_store::{CommandMeta, ExecuteError, Expect, FollowUps, RepoError, StoreError};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

pub use retention::{RetentionRule, RetentionRules};

/// How long an erasure waits for the relay to publish its `erased` events before it purges
/// the outbound stream.
pub const RELAY_PATIENCE: std::time::Duration = std::time::Duration::from_secs(10);

/// The relay's checkpoint in `projection_checkpoints` (`followup_relay::CHECKPOINT`; a library
/// cannot use a role crate, so the name is repeated here).
const RELAY_CHECKPOINT: &str = "relay";

/// Why an erasure could not finish. Running it again finishes it: every step is idempotent.
#[derive(Debug, thiserror::Error)]
pub enum PrivacyError {
    /// Loading or changing a follow-up failed.
    #[error(transparent)]
    Repo(#[from] RepoError),
    /// The event store or the keys failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The read model could not be written.
    #[error(transparent)]
    ReadModel(#[from] ReadError),
    /// A query of the digest entries or the record of erasures failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// A stream could not be purged.
    #[error(transparent)]
    Purge(#[from] PurgeError),
}

/// An erasure request: one data subject, at one institution or at all.
#[derive(Debug, Clone)]
pub struct ErasureRequest {
    /// The institution whose data to erase; `None`: every institution's.
    pub institution: Option<InstitutionId>,
    /// Whose data.
    pub subject: DataSubject,
    /// Why (a case number): kept in the `erased` events and the record of erasures.
    pub reason: Reason,
    /// Who asks (the operator, or the admin user of the API).
    pub actor: Actor,
}

/// What [`Privacy::erase_followups`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Erased {
    /// The follow-ups whose personal data is erased now (or was already, by an earlier run).
    pub erased: Vec<FollowUpId>,
    /// The follow-ups kept under a legal hold.
    pub held: Vec<FollowUpId>,
    /// How many of `erased` were erased already, by an earlier run or another runner.
    pub already_erased: usize,
}

/// What an erasure request did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErasureReport {
    /// The request's id (in `erasures`, and the idempotency key of its events).
    pub id: Uuid,
    /// The follow-ups erased and held.
    #[serde(flatten)]
    pub followups: Erased,
    /// Digest entries whose text named the subject, rewritten.
    pub digest_entries: u64,
    /// Messages deleted from the outbound and dead-letter streams; `None` without NATS.
    pub purged_messages: Option<u64>,
}

/// Erasure and retention over the event store, the read model and (optionally) the streams.
#[derive(Debug, Clone)]
pub struct Privacy {
    /// Records the `erased` events (the one executor).
    followups: FollowUps,
    /// Gets the anonymised follow-ups written through.
    read_model: ReadModel,
    /// The keys, the digest entries and the record of erasures.
    pool: PgPool,
    /// The streams to purge, when the caller has NATS.
    nats: Option<(JetStream, Streams)>,
}

impl Privacy {
    /// Erasure over `followups` (whose store seals with the follow-up policy) and its pool.
    pub fn new(followups: FollowUps) -> Self {
        let pool = followups.store().pool().clone();
        Self {
            followups,
            read_model: ReadModel::new(pool.clone()),
            pool,
            nats: None,
        }
    }

    /// The same, also purging the outbound and dead-letter streams of an erased subject.
    pub fn with_streams(mut self, js: JetStream, streams: Streams) -> Self {
        self.nats = Some((js, streams));
        self
    }

    /// Erases the personal data of `ids`: an `erased` event on each (event ids derived from
    /// `key`, so a repeat or a second runner records nothing new), then their keys, then the
    /// read model. A follow-up under a legal hold is kept and reported; one that does not
    /// exist is skipped.
    pub async fn erase_followups(
        &self,
        ids: &[FollowUpId],
        cause: ErasureCause,
        reason: &Reason,
        ctx: &Context,
        key: &str,
    ) -> Result<Erased, PrivacyError> {
        let meta = CommandMeta {
            correlation_id: Some(key.to_owned()),
            causation_id: Some(key.to_owned()),
            idempotency_key: Some(key.to_owned()),
            traceparent: None,
        };
        let mut done = Erased::default();
        let mut states: Vec<FollowUp> = Vec::new();
        for &id in ids {
            let command = Command::Erase {
                cause,
                reason: reason.clone(),
            };
            match self
                .followups
                .execute(id, command, ctx, &meta, Expect::Current)
                .await
            {
                Ok(outcome) => {
                    if outcome.already_applied || outcome.events.is_empty() {
                        done.already_erased += 1;
                    }
                    done.erased.push(id);
                    states.push(outcome.state);
                }
                Err(ExecuteError::Domain(DomainError::UnderLegalHold { .. })) => done.held.push(id),
                Err(ExecuteError::Domain(DomainError::NotFound)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let streams: Vec<String> = done.erased.iter().map(ToString::to_string).collect();
        destroy_keys(&self.pool, &streams).await?;
        self.followups.store().forget_seal_keys();
        self.read_model.upsert(&states).await?;
        Ok(done)
    }

    /// Erases every follow-up of the request's data subject (see the module docs). With
    /// NATS, first finishes the stream purges of earlier erasures that NATS missed.
    #[tracing::instrument(name = "privacy.erase_subject", skip_all, fields(subject.type = %request.subject.subject_type()))]
    pub async fn erase_subject(
        &self,
        request: &ErasureRequest,
        now: DateTime<Utc>,
    ) -> Result<ErasureReport, PrivacyError> {
        let id = Uuid::new_v4();
        let institution = request.institution.as_ref().map(InstitutionId::as_str);
        let subject = &request.subject;
        let streams = keys_of_subject(
            &self.pool,
            institution,
            subject.subject_type().as_str(),
            subject.id(),
        )
        .await?;
        let mut ids: Vec<FollowUpId> = streams
            .iter()
            .filter_map(|s| s.parse::<Uuid>().ok())
            .map(FollowUpId::from_uuid)
            .collect();
        ids.extend(self.written_before_keys(institution, subject).await?);
        ids.extend(self.mentioning(institution, subject.id()).await?);
        ids.sort_unstable();
        ids.dedup();
        // The record first, with the follow-ups' ids, so that a purge NATS misses now is
        // finished by the next erasure.
        sqlx::query(
            "INSERT INTO erasures (id, institution, subject_type, requested_by, reason, followup_ids, followups, held, at)
             VALUES ($1, $2, $3, $4, $5, $6, 0, 0, $7)",
        )
        .bind(id)
        .bind(institution)
        .bind(subject.subject_type().as_str())
        .bind(request.actor.to_string())
        .bind(request.reason.as_str())
        .bind(ids.iter().map(|f| f.as_uuid()).collect::<Vec<_>>())
        .bind(now)
        .execute(&self.pool)
        .await?;
        // Dead letters name the person, not the follow-up: purged by the person's id, which
        // is not kept, so before anything else.
        let mut purged_messages = match &self.nats {
            Some((js, streams)) => Some(
                purge_matching(js, &streams.dead_letters, "followups.dlq.>", |payload| {
                    names(payload, subject.id())
                })
                .await?,
            ),
            None => None,
        };
        let ctx = Context {
            actor: request.actor.clone(),
            now,
        };
        let followups = self
            .erase_followups(
                &ids,
                ErasureCause::Request,
                &request.reason,
                &ctx,
                &format!("erasure/{id}"),
            )
            .await?;
        sqlx::query("UPDATE erasures SET followups = $2, held = $3 WHERE id = $1")
            .bind(id)
            .bind(followups.erased.len() as i32)
            .bind(followups.held.len() as i32)
            .execute(&self.pool)
            .await?;
        let digest_entries = self.rewrite_digests(institution, subject.id()).await?;
        if let Some(purged) = purged_messages.as_mut() {
            // What the relay read before the keys went must be out before the purge, or it
            // would be published after it: wait until it has relayed the `erased` events.
            let relayed = self.relay_caught_up(&followups.erased).await?;
            *purged += self.finish_purges(relayed).await?;
        }
        tracing::info!(
            erasure.id = %id,
            erasure.followups = followups.erased.len(),
            erasure.held = followups.held.len(),
            erasure.digest_entries = digest_entries,
            erasure.purged_messages = purged_messages,
            "data subject erased"
        );
        Ok(ErasureReport {
            id,
            followups,
            digest_entries,
            purged_messages,
        })
    }

    /// Waits (at most [`RELAY_PATIENCE`]) until the relay has published the `erased` events of
    /// `erased`, and so everything it read of them before. True when it has, or when no relay
    /// has ever run here (then nothing was published to race with).
    async fn relay_caught_up(&self, erased: &[FollowUpId]) -> Result<bool, PrivacyError> {
        let streams: Vec<String> = erased.iter().map(ToString::to_string).collect();
        let target: Option<(i64, i64)> = sqlx::query_as(
            "SELECT transaction_id, position FROM events
             WHERE stream_id = ANY($1) AND event_type = 'erased'
             ORDER BY transaction_id DESC, position DESC LIMIT 1",
        )
        .bind(&streams)
        .fetch_optional(&self.pool)
        .await?;
        let Some(target) = target else {
            return Ok(true);
        };
        let deadline = std::time::Instant::now() + RELAY_PATIENCE;
        loop {
            let relay: Option<(i64, i64)> = sqlx::query_as(
                "SELECT transaction_id, position FROM projection_checkpoints WHERE name = $1",
            )
            .bind(RELAY_CHECKPOINT)
            .fetch_optional(&self.pool)
            .await?;
            match relay {
                None => return Ok(true),
                Some(at) if at >= target => return Ok(true),
                Some(_) if std::time::Instant::now() >= deadline => {
                    tracing::warn!(
                        "the relay did not catch up with the erasure in time: the outbound stream is purged now and again by the next erasure"
                    );
                    return Ok(false);
                }
                Some(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
            }
        }
    }

    /// Deletes the outbound events of every erasure not purged yet (this one and any that
    /// NATS missed) and, when `done`, marks them purged (else the next erasure purges them
    /// again). Returns how many messages went.
    pub async fn finish_purges(&self, done: bool) -> Result<u64, PrivacyError> {
        let Some((js, streams)) = &self.nats else {
            return Ok(0);
        };
        let pending: Vec<(Uuid, Vec<Uuid>)> =
            sqlx::query_as("SELECT id, followup_ids FROM erasures WHERE NOT purged")
                .fetch_all(&self.pool)
                .await?;
        let wanted: Vec<String> = pending
            .iter()
            .flat_map(|(_, ids)| ids.iter().map(|id| format!("followup/{id}")))
            .collect();
        let purged = if wanted.is_empty() {
            0
        } else {
            // The `erased` events stay: they carry no personal data, and tell consumers that
            // read the stream later to erase their copies too.
            purge_matching(js, &streams.followups, "followups.>", |payload| {
                wanted.iter().any(|w| holds_token(payload, w))
                    && !holds_token(payload, "dk.esas.followup.erased")
            })
            .await?
        };
        let ids: Vec<Uuid> = pending.iter().map(|(id, _)| *id).collect();
        sqlx::query(
            "UPDATE erasures SET purged = $3, purged_messages = purged_messages + $2
             WHERE id = ANY($1)",
        )
        .bind(&ids)
        .bind(if ids.len() == 1 { purged as i32 } else { 0 })
        .bind(done)
        .execute(&self.pool)
        .await?;
        Ok(purged)
    }

    /// The follow-ups about `subject` written before keys existed (no key; the person as
    /// their regarding): erased like the others, although their first events stay in
    /// plaintext, which `followupctl verify` reports.
    async fn written_before_keys(
        &self,
        institution: Option<&str>,
        subject: &DataSubject,
    ) -> Result<Vec<FollowUpId>, PrivacyError> {
        let ids: Vec<Uuid> = sqlx::query_scalar(
            "SELECT stream_id::uuid FROM events e
             WHERE e.stream_type = 'followup' AND e.version = 1 AND NOT e.payload ? 'sealed'
               AND e.payload->'regarding'->>'type' = $1 AND e.payload->'regarding'->>'id' = $2
               AND ($3::text IS NULL OR e.payload->>'institution' = $3)
               AND NOT EXISTS (SELECT 1 FROM data_keys k WHERE k.stream_id = e.stream_id)",
        )
        .bind(subject.subject_type().as_str())
        .bind(subject.id())
        .bind(institution)
        .fetch_all(&self.pool)
        .await?;
        Ok(ids.into_iter().map(FollowUpId::from_uuid).collect())
    }

    /// The follow-ups about someone else, or no one, whose texts name `subject_id` (a
    /// caseworker's note of the student's id in a task about an application, a daily digest
    /// that lists them): their texts are that person's data too, and go with the rest. Found in
    /// the read model, where the texts are readable.
    async fn mentioning(
        &self,
        institution: Option<&str>,
        subject_id: &str,
    ) -> Result<Vec<FollowUpId>, PrivacyError> {
        let rows: Vec<(Uuid, String)> = sqlx::query_as(
            "SELECT id, concat_ws(' ', subject, regarding, doc->>'description') FROM followups_view
             WHERE strpos(doc::text, $1) > 0 AND ($2::text IS NULL OR institution = $2)
               AND jsonb_typeof(doc->'erased_at') IS DISTINCT FROM 'string'",
        )
        .bind(subject_id)
        .bind(institution)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .filter(|(_, text)| holds_token(text.as_bytes(), subject_id))
            .map(|(id, _)| FollowUpId::from_uuid(id))
            .collect())
    }

    /// Rewrites the digest entries that name `subject_id` with the id erased.
    async fn rewrite_digests(
        &self,
        institution: Option<&str>,
        subject_id: &str,
    ) -> Result<u64, PrivacyError> {
        let rows: Vec<(Uuid, String, String)> = sqlx::query_as(
            "SELECT subscription_id, event_key, summary FROM digest_entries
             WHERE strpos(summary, $1) > 0 AND ($2::text IS NULL OR institution = $2)",
        )
        .bind(subject_id)
        .bind(institution)
        .fetch_all(&self.pool)
        .await?;
        let mut rewritten = 0;
        for (subscription, event_key, summary) in rows {
            let erased = erase_token(&summary, subject_id);
            if erased == summary {
                continue;
            }
            sqlx::query(
                "UPDATE digest_entries SET summary = $3 WHERE subscription_id = $1 AND event_key = $2",
            )
            .bind(subscription)
            .bind(&event_key)
            .bind(&erased)
            .execute(&self.pool)
            .await?;
            rewritten += 1;
        }
        Ok(rewritten)
    }
}

/// `text` with every whole occurrence of `token` replaced by [`ERASED`].
pub fn erase_token(text: &str, token: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(token) {
        let (before, after) = rest.split_at(at);
        let whole = !before.chars().last().is_some_and(is_id_char)
            && !after[token.len()..].chars().next().is_some_and(is_id_char);
        out.push_str(before);
        out.push_str(if whole { ERASED } else { token });
        rest = &after[token.len()..];
    }
    out.push_str(rest);
    out
}

fn is_id_char(c: char) -> bool {
    c.is_alphanumeric() || c == '-' || c == '_'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_whole_ids_are_erased_from_a_text() {
        assert_eq!(
            erase_token("Gæstestuderende G-1 (G-10) og G-1.", "G-1"),
            "Gæstestuderende [slettet] (G-10) og [slettet]."
        );
        assert_eq!(erase_token("ingen her", "G-1"), "ingen her");
    }
}
