//! The notifications the jobs create, and what they say: Danish text for caseworkers, dates in
//! Danish style in Europe/Copenhagen ("27. november 2026 kl. 12:00").
//!
//! A notification's id is derived (UUID v5) from what it is about, so two schedulers, a retry
//! or a re-run of a firing arrive at the same id, and the notification exists once.

use chrono::{DateTime, Timelike, Utc};
use followup_domain::{
    Description, FollowUp, FollowUpId, InstitutionId, Kind, NewFollowUp, Principal, Priority,
    Regarding, Source, Subject,
};
pub use followup_notifications::danish_date;
use uuid::Uuid;

use crate::schedule::TIME_ZONE;

/// Namespace of the ids of notifications made by the scheduler (a fixed, random UUID).
const NOTICE_NAMESPACE: Uuid = Uuid::from_u128(0x8d35_0c6e_71f2_4b9a_a4e0_5f13_c28b_97d6);

/// The id of the notification about `parts` (e.g. `["overdue", <follow-up id>, "v3"]`).
pub fn notice_id(parts: &[&str]) -> FollowUpId {
    FollowUpId::from_uuid(Uuid::new_v5(&NOTICE_NAMESPACE, parts.join("/").as_bytes()))
}

/// `t` in Copenhagen, the Danish way: "27. november 2026 kl. 12:00".
pub fn danish_datetime(t: DateTime<Utc>) -> String {
    let local = t.with_timezone(&TIME_ZONE);
    format!(
        "{} kl. {:02}:{:02}",
        danish_date(local.date_naive()),
        local.hour(),
        local.minute()
    )
}

/// `prefix` + `inner` + `suffix` as a subject; `inner` (a follow-up's subject) is shortened
/// with '…' when the whole would be longer than a subject may be, so the date stays.
pub fn subject(prefix: &str, inner: &str, suffix: &str) -> Subject {
    let room = Subject::MAX_CHARS
        .saturating_sub(prefix.chars().count() + suffix.chars().count())
        .max(1);
    let inner = if inner.chars().count() > room {
        let mut cut: String = inner.chars().take(room.saturating_sub(1)).collect();
        cut.push('…');
        cut
    } else {
        inner.to_owned()
    };
    Subject::from_upstream(&format!("{prefix}{inner}{suffix}"))
}

/// A notification for `owner` at `institution`, created by scheduled job `job`.
pub fn notification(
    id: FollowUpId,
    institution: InstitutionId,
    owner: Principal,
    subject: Subject,
    description: &str,
    regarding: Option<Regarding>,
    job: &str,
) -> NewFollowUp {
    NewFollowUp {
        id,
        institution,
        kind: Kind::Notification,
        subject,
        description: Description::from_upstream(description),
        regarding,
        person: None,
        owner,
        due: None,
        priority: Priority::Normal,
        source: Source::Scheduler {
            job: job.to_owned(),
        },
    }
}

/// What a notification about follow-up `followup` is regarding: the follow-up itself, so the
/// front end can link to it.
pub fn regarding(followup: &FollowUp) -> Option<Regarding> {
    Regarding::parse("followup", &followup.id.to_string()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_written_the_danish_way_in_copenhagen_time() {
        let winter: DateTime<Utc> = "2026-11-27T11:00:00Z".parse().unwrap();
        assert_eq!(danish_datetime(winter), "27. november 2026 kl. 12:00");
        let summer: DateTime<Utc> = "2027-03-28T22:05:00Z".parse().unwrap();
        assert_eq!(danish_datetime(summer), "29. marts 2027 kl. 00:05");
    }

    #[test]
    fn a_long_subject_is_shortened_so_the_date_stays() {
        let long = "x".repeat(300);
        let s = subject(
            "Påmindelse: ",
            &long,
            " har frist 27. november 2026 kl. 12:00",
        );
        assert_eq!(s.as_str().chars().count(), Subject::MAX_CHARS);
        assert!(
            s.as_str()
                .ends_with("x… har frist 27. november 2026 kl. 12:00"),
            "{s:?}"
        );
    }
}
