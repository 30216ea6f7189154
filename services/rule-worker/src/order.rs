//! Order independence (design section 4 "Order", guarantee 8): job outcomes may arrive in any
//! order (a redelivery after a crash, several workers on one consumer, a replay), and the
//! CloudEvent `time` of the newest failure and the newest success per rule key decides.
//!
//! - A failure older than the newest known success neither opens nor reopens.
//! - A success older than the newest known failure does not complete.
//!
//! The newest times are kept per follow-up (the rule key's derived id) in `rule_outcomes`,
//! written for a whole batch in one statement *before* its effects are stored, and only ever
//! moved forward. Each message of the batch is judged against what was known before it: the
//! stored times, then the messages before it in the batch, so a batch holding a failure and
//! its later success behaves as the two messages one after the other would.
//!
//! Two workers can still race: one judges a failure before the other has recorded the newer
//! success that makes it stale. So after storing its effects a worker reads the times again;
//! where they moved meanwhile it [`reconcile`]s the follow-up with them. The last of the
//! racing workers to do that sees every recorded time and every stored effect, so the end
//! state is the one the newest outcomes say.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use followup_domain::{Command, FollowUp, FollowUpId, Kind, State, StatusReason};
use sqlx::PgPool;
use uuid::Uuid;

/// What an outcome says about its rule key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A failure (or a request): raises the follow-up.
    Failure,
    /// A success: resolves it.
    Success,
}

/// The newest outcome times known for one rule key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Watermark {
    /// The CloudEvent time of the newest failure.
    pub failure: Option<DateTime<Utc>>,
    /// The CloudEvent time of the newest success.
    pub success: Option<DateTime<Utc>>,
}

impl Watermark {
    /// This watermark moved forward by an outcome at `time`.
    fn with(mut self, outcome: Outcome, time: DateTime<Utc>) -> Self {
        let slot = match outcome {
            Outcome::Failure => &mut self.failure,
            Outcome::Success => &mut self.success,
        };
        *slot = (*slot).max(Some(time));
        self
    }

    /// Whether an outcome at `time` is older than the newest known one of the other kind.
    fn outdates(&self, outcome: Outcome, time: DateTime<Utc>) -> bool {
        let other = match outcome {
            Outcome::Failure => self.success,
            Outcome::Success => self.failure,
        };
        other.is_some_and(|newest| newest > time)
    }
}

/// A stored row of `rule_outcomes`: (follow-up id, newest failure, newest success).
type Row = (Uuid, Option<DateTime<Utc>>, Option<DateTime<Utc>>);

/// One outcome of a batch: (its place in the batch, the follow-up, what, when).
#[derive(Debug, Clone, Copy)]
pub struct Seen {
    /// Where it is in the batch, as the caller counts (message, effect).
    pub place: (usize, usize),
    /// The follow-up of its rule key.
    pub id: FollowUpId,
    /// Failure or success.
    pub outcome: Outcome,
    /// The CloudEvent time, to the microsecond (what PostgreSQL keeps: see [`stored_time`]).
    pub time: DateTime<Utc>,
}

/// `time` as `rule_outcomes` keeps it: to the microsecond, so that a time read back equals
/// the one recorded (a CloudEvent time may have nanoseconds).
pub fn stored_time(time: DateTime<Utc>) -> DateTime<Utc> {
    use chrono::SubsecRound as _;
    time.trunc_subsecs(6)
}

/// The outcomes of a batch that are older than what was known before them (they are to do
/// nothing), judged in batch order from the stored watermarks `before`. Returns their places
/// and the watermarks after the whole batch.
pub fn outdated(
    before: &HashMap<FollowUpId, Watermark>,
    seen: &[Seen],
) -> (HashSet<(usize, usize)>, HashMap<FollowUpId, Watermark>) {
    let mut known = before.clone();
    let mut stale = HashSet::new();
    for s in seen {
        let mark = known.entry(s.id).or_default();
        if mark.outdates(s.outcome, s.time) {
            stale.insert(s.place);
        }
        *mark = mark.with(s.outcome, s.time);
    }
    (stale, known)
}

/// Records the batch's outcomes (each key moved forward to its newest times) and returns the
/// watermarks as they were before, in one statement. Keys are written in id order, so two
/// workers recording overlapping batches do not deadlock.
pub async fn record(
    pool: &PgPool,
    seen: &[Seen],
) -> Result<HashMap<FollowUpId, Watermark>, sqlx::Error> {
    let mut newest: HashMap<FollowUpId, Watermark> = HashMap::new();
    for s in seen {
        let mark = newest.entry(s.id).or_default();
        *mark = mark.with(s.outcome, s.time);
    }
    let mut rows: Vec<(FollowUpId, Watermark)> = newest.into_iter().collect();
    rows.sort_by_key(|(id, _)| id.as_uuid());
    let ids: Vec<Uuid> = rows.iter().map(|(id, _)| id.as_uuid()).collect();
    let failures: Vec<Option<DateTime<Utc>>> = rows.iter().map(|(_, w)| w.failure).collect();
    let successes: Vec<Option<DateTime<Utc>>> = rows.iter().map(|(_, w)| w.success).collect();
    let before: Vec<Row> = sqlx::query_as(
        "WITH before AS ( \
             SELECT followup_id, newest_failure, newest_success FROM rule_outcomes \
             WHERE followup_id = ANY($1) \
         ), recorded AS ( \
             INSERT INTO rule_outcomes (followup_id, newest_failure, newest_success) \
             SELECT * FROM unnest($1::uuid[], $2::timestamptz[], $3::timestamptz[]) \
             ON CONFLICT (followup_id) DO UPDATE SET \
                 newest_failure = GREATEST(rule_outcomes.newest_failure, EXCLUDED.newest_failure), \
                 newest_success = GREATEST(rule_outcomes.newest_success, EXCLUDED.newest_success) \
         ) \
         SELECT followup_id, newest_failure, newest_success FROM before",
    )
    .bind(&ids)
    .bind(&failures)
    .bind(&successes)
    .fetch_all(pool)
    .await?;
    Ok(to_map(before))
}

/// The stored watermarks of `ids`.
pub async fn stored(
    pool: &PgPool,
    ids: &[FollowUpId],
) -> Result<HashMap<FollowUpId, Watermark>, sqlx::Error> {
    let ids: Vec<Uuid> = ids.iter().map(|id| id.as_uuid()).collect();
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT followup_id, newest_failure, newest_success FROM rule_outcomes \
         WHERE followup_id = ANY($1)",
    )
    .bind(&ids)
    .fetch_all(pool)
    .await?;
    Ok(to_map(rows))
}

fn to_map(rows: Vec<Row>) -> HashMap<FollowUpId, Watermark> {
    rows.into_iter()
        .map(|(id, failure, success)| (FollowUpId::from_uuid(id), Watermark { failure, success }))
        .collect()
}

/// The keys whose stored watermark moved past `expected` (what this worker knew after its
/// batch): another worker recorded a newer outcome meanwhile.
pub fn moved(
    expected: &HashMap<FollowUpId, Watermark>,
    now: &HashMap<FollowUpId, Watermark>,
) -> Vec<FollowUpId> {
    let mut ids: Vec<FollowUpId> = now
        .iter()
        .filter(|(id, mark)| expected.get(id) != Some(mark))
        .map(|(id, _)| *id)
        .collect();
    ids.sort_by_key(|id| id.as_uuid());
    ids
}

/// What brings a rule's exception in line with its newest outcomes: an open one whose newest
/// success is newer than its newest failure is resolved; one the job resolved whose newest
/// failure is newer is reopened (with the description it has). A follow-up a caseworker
/// finished, or one that does not exist, is left alone.
pub fn reconcile(state: &State, mark: Watermark) -> Option<Command> {
    let followup: &FollowUp = state.as_ref()?;
    if followup.kind != Kind::Exception {
        return None;
    }
    let (Some(failure), success) = (mark.failure, mark.success) else {
        return None;
    };
    let succeeded_last = success.is_some_and(|s| s > failure);
    if followup.is_open() && succeeded_last {
        return Some(Command::ResolveByJob);
    }
    let resolved_by_job = followup.status_reason == StatusReason::ResolvedByJob;
    if resolved_by_job && !succeeded_last {
        return Some(Command::Recur {
            details: followup.description.clone(),
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(minute: u32) -> DateTime<Utc> {
        format!("2026-12-01T09:{minute:02}:00Z").parse().unwrap()
    }

    fn seen(n: usize, outcome: Outcome, minute: u32) -> Seen {
        Seen {
            place: (n, 0),
            id: FollowUpId::from_uuid(Uuid::from_u128(1)),
            outcome,
            time: at(minute),
        }
    }

    #[test]
    fn a_failure_then_its_later_success_in_one_batch_are_both_applied() {
        let batch = [seen(0, Outcome::Failure, 1), seen(1, Outcome::Success, 2)];
        let (stale, _) = outdated(&HashMap::new(), &batch);
        assert!(stale.is_empty());
    }

    #[test]
    fn a_failure_older_than_a_known_success_is_outdated() {
        let id = FollowUpId::from_uuid(Uuid::from_u128(1));
        let before = HashMap::from([(
            id,
            Watermark {
                failure: None,
                success: Some(at(5)),
            },
        )]);
        let (stale, after) = outdated(&before, &[seen(0, Outcome::Failure, 1)]);
        assert!(stale.contains(&(0, 0)));
        assert_eq!(after[&id].failure, Some(at(1)));
    }

    #[test]
    fn a_success_older_than_the_newest_failure_is_outdated() {
        let batch = [seen(0, Outcome::Failure, 5), seen(1, Outcome::Success, 2)];
        let (stale, _) = outdated(&HashMap::new(), &batch);
        assert_eq!(stale, HashSet::from([(1, 0)]));
    }
}
