//! Who created a follow-up ([`Source`]) and who made a change ([`Actor`]).

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{Principal, TeamId, UserId};

/// Where a follow-up came from; kept for its whole life, so a caseworker can see whether a
/// person, an automatic rule, a subscription or a schedule created it. JSON:
/// `{"type":"user","id":"u1"}`, `{"type":"rule","rule_id":"...","job":"..."}`,
/// `{"type":"subscription","topic":"..."}` or `{"type":"scheduler","job":"..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Source {
    /// A user created it by hand.
    User {
        /// The user who created it.
        id: UserId,
    },
    /// A rule created it from an upstream job outcome or ESAS event.
    Rule {
        /// The rule (from the rules file) that matched.
        rule_id: String,
        /// The upstream job (or event source) whose message the rule matched.
        job: String,
    },
    /// The notifier created it for the subscriptions of its owner to an ESAS event type.
    Subscription {
        /// The topic subscribed to (`education_structure.dates_changed`).
        topic: String,
    },
    /// A scheduled job created it (a reminder, an overdue notice, a digest).
    Scheduler {
        /// The scheduled job.
        job: String,
    },
}

/// Who made a change: recorded with every event, and shown in a follow-up's history.
/// JSON: `{"type":"user","id":"u1"}`, `{"type":"scheduler","job":"mark_overdue"}`,
/// `{"type":"system"}`, …; as text (`Display`): `user:u1`, `scheduler:mark_overdue`, `system`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Actor {
    /// A user, through the API.
    User {
        /// The acting user.
        id: UserId,
    },
    /// A team acting as a whole (for example when a subscription of a team creates something).
    Team {
        /// The acting team.
        id: TeamId,
    },
    /// A rule, acting on an inbound message.
    Rule {
        /// The rule (from the rules file) that acted.
        id: String,
    },
    /// A scheduled job (marking overdue, reminders, digests, escalation).
    Scheduler {
        /// The scheduled job that acted.
        job: String,
    },
    /// The service itself, when no rule or schedule is more specific.
    System,
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::User { id } => write!(f, "user:{id}"),
            Self::Team { id } => write!(f, "team:{id}"),
            Self::Rule { id } => write!(f, "rule:{id}"),
            Self::Scheduler { job } => write!(f, "scheduler:{job}"),
            Self::System => f.write_str("system"),
        }
    }
}

impl From<Principal> for Actor {
    fn from(principal: Principal) -> Self {
        match principal {
            Principal::User(id) => Self::User { id },
            Principal::Team(id) => Self::Team { id },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sources_serialize_with_a_type_tag() {
        let user = Source::User {
            id: UserId::parse("u1").unwrap(),
        };
        assert_eq!(
            serde_json::to_value(&user).unwrap(),
            json!({"type": "user", "id": "u1"})
        );
        let rule = Source::Rule {
            rule_id: "transfer_defects".into(),
            job: "applicant_transfer".into(),
        };
        let json =
            json!({"type": "rule", "rule_id": "transfer_defects", "job": "applicant_transfer"});
        assert_eq!(serde_json::to_value(&rule).unwrap(), json);
        assert_eq!(serde_json::from_value::<Source>(json).unwrap(), rule);
    }

    #[test]
    fn actors_serialize_with_a_type_tag_and_display_as_type_colon_id() {
        let actors = [
            (
                Actor::User {
                    id: UserId::parse("u1").unwrap(),
                },
                json!({"type": "user", "id": "u1"}),
                "user:u1",
            ),
            (
                Actor::Team {
                    id: TeamId::parse("admissions").unwrap(),
                },
                json!({"type": "team", "id": "admissions"}),
                "team:admissions",
            ),
            (
                Actor::Rule { id: "r1".into() },
                json!({"type": "rule", "id": "r1"}),
                "rule:r1",
            ),
            (
                Actor::Scheduler {
                    job: "mark_overdue".into(),
                },
                json!({"type": "scheduler", "job": "mark_overdue"}),
                "scheduler:mark_overdue",
            ),
            (Actor::System, json!({"type": "system"}), "system"),
        ];
        for (actor, json, text) in actors {
            assert_eq!(serde_json::to_value(&actor).unwrap(), json);
            assert_eq!(serde_json::from_value::<Actor>(json).unwrap(), actor);
            assert_eq!(actor.to_string(), text);
        }
    }
}
