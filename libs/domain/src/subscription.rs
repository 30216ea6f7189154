//! Subscriptions (design section 5): a user or team asks to be notified when an ESAS event of
//! a topic happens in its institution, optionally only for some values of the event's data,
//! either at once or in a daily digest.
//!
//! A subscription is an aggregate of its own, with the same shape as the follow-up: a state
//! ([`Subscription`]), commands ([`SubscriptionCommand`]), events ([`SubscriptionEvent`]),
//! [`decide_subscription`] and [`evolve_subscription`]. Its events are stored in the event
//! store like a follow-up's, so a subscription has a history and the subscription list can be
//! rebuilt.
//!
//! # Layout
//! - [`TOPICS`]: the topics one can subscribe to, with the data fields each may filter on.
//! - [`Topic`], [`Filter`], [`Delivery`]: the validated parts of a subscription.
//! - [`Subscription`], [`SubscriptionCommand`], [`SubscriptionEvent`], and the two functions.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::gdpr::check_user_text;
use crate::values::{shown, InstitutionId, Principal, ValidationError};

/// A topic one can subscribe to: an ESAS event type, and what its subscriptions may filter on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicSpec {
    /// The topic: the event type without its `dk.esas.event.` prefix.
    pub name: &'static str,
    /// The fields of the event's `data` a subscription may filter on (exact match).
    pub filters: &'static [&'static str],
    /// What it is about, in Danish, for lists of subscriptions and digests.
    pub title: &'static str,
}

/// Every topic of the inbound contract (design section 4) that notifies subscribers.
pub const TOPICS: &[TopicSpec] = &[
    TopicSpec {
        name: "education_structure.dates_changed",
        filters: &["education", "structure_id"],
        title: "Ændrede datoer for uddannelsesstrukturer",
    },
    TopicSpec {
        name: "guest_student.data_share_requested",
        filters: &["requesting_institution", "home_institution"],
        title: "Anmodninger om deling af gæstestuderendes data",
    },
];

/// The CloudEvent `type` prefix of ESAS domain events; a topic is the rest of the type.
pub const EVENT_TYPE_PREFIX: &str = "dk.esas.event.";

/// A topic from [`TOPICS`]. Parsing checks that it exists; stored events are read back
/// without that check, so a topic that is retired later does not make history unreadable.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Topic(String);

impl Topic {
    /// A topic that can be subscribed to now.
    pub fn parse(name: &str) -> Result<Self, ValidationError> {
        TOPICS
            .iter()
            .find(|spec| spec.name == name)
            .map(|spec| Self(spec.name.to_owned()))
            .ok_or_else(|| ValidationError::UnknownValue {
                field: "topic",
                value: shown(name),
                expected: TOPICS.iter().map(|t| t.name).collect::<Vec<_>>().join(", "),
            })
    }

    /// The topic of a CloudEvent `type`, if it is one of [`TOPICS`].
    pub fn of_event_type(event_type: &str) -> Option<Self> {
        Self::parse(event_type.strip_prefix(EVENT_TYPE_PREFIX)?).ok()
    }

    /// The name (`education_structure.dates_changed`).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Its entry in [`TOPICS`], unless it was retired.
    pub fn spec(&self) -> Option<&'static TopicSpec> {
        TOPICS.iter().find(|spec| spec.name == self.0)
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Exact-match conditions on the event's `data` (`{"education": "Sygeplejerskeuddannelsen"}`):
/// a subscription matches an event whose data has every one of these fields with this value.
/// Empty: every event of the topic.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Filter(BTreeMap<String, String>);

/// The longest filter value accepted.
const MAX_FILTER_VALUE: usize = 200;

impl Filter {
    /// Checks each field against the topic's filter fields and each value as user text.
    pub fn parse(
        topic: &Topic,
        fields: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ValidationError> {
        let allowed = topic.spec().map_or(&[][..], |spec| spec.filters);
        let mut filter = BTreeMap::new();
        for (field, value) in fields {
            if !allowed.contains(&field.as_str()) {
                return Err(ValidationError::UnknownValue {
                    field: "filter",
                    value: shown(&field),
                    expected: allowed.join(", "),
                });
            }
            let value = value.trim().to_owned();
            if value.is_empty() {
                return Err(ValidationError::Empty { field: "filter" });
            }
            let length = value.chars().count();
            if length > MAX_FILTER_VALUE {
                return Err(ValidationError::TooLong {
                    field: "filter",
                    max: MAX_FILTER_VALUE,
                    actual: length,
                });
            }
            check_user_text("filter", &value)?;
            filter.insert(field, value);
        }
        Ok(Self(filter))
    }

    /// The conditions, by field.
    pub fn fields(&self) -> &BTreeMap<String, String> {
        &self.0
    }
}

/// When a subscriber hears about a matching event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Delivery {
    /// A notification at once.
    Immediate,
    /// One notification a day that sums up what happened.
    DailyDigest,
}

impl Delivery {
    /// The snake_case name, as in JSON and the database.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Immediate => "immediate",
            Self::DailyDigest => "daily_digest",
        }
    }

    /// Reads `immediate` or `daily_digest`.
    pub fn parse(text: &str) -> Result<Self, ValidationError> {
        match text {
            "immediate" => Ok(Self::Immediate),
            "daily_digest" => Ok(Self::DailyDigest),
            other => Err(ValidationError::UnknownValue {
                field: "delivery",
                value: shown(other),
                expected: "immediate, daily_digest".into(),
            }),
        }
    }
}

/// Identifies a subscription and its event stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SubscriptionId(Uuid);

impl SubscriptionId {
    /// A new random id.
    pub fn new_v4() -> Self {
        Self(Uuid::new_v4())
    }

    /// Wraps a stored UUID.
    pub const fn from_uuid(uuid: Uuid) -> Self {
        Self(uuid)
    }

    /// The UUID inside.
    pub const fn as_uuid(&self) -> Uuid {
        self.0
    }

    /// Reads a UUID.
    pub fn parse(text: &str) -> Result<Self, ValidationError> {
        Uuid::parse_str(text)
            .map(Self)
            .map_err(|_| ValidationError::Malformed {
                field: "id",
                value: shown(text),
                expected: "a UUID such as 67e55044-10b1-426f-9247-bb680e5fe0c8",
            })
    }
}

impl fmt::Display for SubscriptionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A subscription as it is now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscription {
    /// Its id (and its stream's).
    pub id: SubscriptionId,
    /// The institution whose events it hears about; never another's.
    pub institution: InstitutionId,
    /// Who is notified: the user itself, or one of its teams.
    pub subscriber: Principal,
    /// The event type subscribed to.
    pub topic: Topic,
    /// Conditions on the event's data.
    pub filter: Filter,
    /// At once or in the daily digest.
    pub delivery: Delivery,
    /// When it was made; events that entered the system before this notify nobody through it.
    pub created_at: DateTime<Utc>,
    /// When it was cancelled, if it was; events after this notify nobody through it.
    pub cancelled_at: Option<DateTime<Utc>>,
    /// How many events its stream has (the version an append expects).
    pub version: u64,
}

impl Subscription {
    /// True until it is cancelled.
    pub fn is_active(&self) -> bool {
        self.cancelled_at.is_none()
    }
}

/// Everything a new subscription starts with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSubscription {
    /// Its id.
    pub id: SubscriptionId,
    /// The subscriber's institution.
    pub institution: InstitutionId,
    /// Who is notified.
    pub subscriber: Principal,
    /// The topic.
    pub topic: Topic,
    /// Conditions on the data.
    pub filter: Filter,
    /// When to notify.
    pub delivery: Delivery,
}

/// What someone asks of a subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscriptionCommand {
    /// Start it (the stream must be empty).
    Subscribe(NewSubscription),
    /// Stop it (a repeat changes nothing).
    Cancel,
}

/// What happened to a subscription.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SubscriptionEvent {
    /// It was made.
    Subscribed {
        /// Its id.
        id: SubscriptionId,
        /// The subscriber's institution.
        institution: InstitutionId,
        /// Who is notified.
        subscriber: Principal,
        /// The topic.
        topic: Topic,
        /// Conditions on the data.
        filter: Filter,
        /// When to notify.
        delivery: Delivery,
        /// When.
        at: DateTime<Utc>,
    },
    /// It was cancelled.
    Cancelled {
        /// When.
        at: DateTime<Utc>,
    },
}

impl SubscriptionEvent {
    /// The snake_case event type, as stored.
    pub fn event_type(&self) -> &'static str {
        match self {
            Self::Subscribed { .. } => "subscribed",
            Self::Cancelled { .. } => "cancelled",
        }
    }
}

/// Why a subscription command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubscriptionError {
    /// Cancel of a subscription that does not exist.
    #[error("the subscription does not exist")]
    NotFound,
    /// Subscribe with an id that is taken.
    #[error("subscription {id} already exists")]
    AlreadyExists {
        /// The id.
        id: SubscriptionId,
    },
}

/// The events `command` causes on the subscription in `state`, at `now`.
pub fn decide_subscription(
    state: &Option<Subscription>,
    command: SubscriptionCommand,
    now: DateTime<Utc>,
) -> Result<Vec<SubscriptionEvent>, SubscriptionError> {
    match (state, command) {
        (None, SubscriptionCommand::Subscribe(new)) => Ok(vec![SubscriptionEvent::Subscribed {
            id: new.id,
            institution: new.institution,
            subscriber: new.subscriber,
            topic: new.topic,
            filter: new.filter,
            delivery: new.delivery,
            at: now,
        }]),
        (Some(existing), SubscriptionCommand::Subscribe(_)) => {
            Err(SubscriptionError::AlreadyExists { id: existing.id })
        }
        (None, SubscriptionCommand::Cancel) => Err(SubscriptionError::NotFound),
        (Some(existing), SubscriptionCommand::Cancel) if !existing.is_active() => Ok(vec![]),
        (Some(_), SubscriptionCommand::Cancel) => {
            Ok(vec![SubscriptionEvent::Cancelled { at: now }])
        }
    }
}

/// The subscription after `event`.
pub fn evolve_subscription(
    state: Option<Subscription>,
    event: &SubscriptionEvent,
) -> Option<Subscription> {
    match (state, event) {
        (
            None,
            SubscriptionEvent::Subscribed {
                id,
                institution,
                subscriber,
                topic,
                filter,
                delivery,
                at,
            },
        ) => Some(Subscription {
            id: *id,
            institution: institution.clone(),
            subscriber: subscriber.clone(),
            topic: topic.clone(),
            filter: filter.clone(),
            delivery: *delivery,
            created_at: *at,
            cancelled_at: None,
            version: 1,
        }),
        (Some(mut subscription), SubscriptionEvent::Cancelled { at }) => {
            subscription.cancelled_at = Some(*at);
            subscription.version += 1;
            Some(subscription)
        }
        // Only a corrupt stream gets here: the state stays as it was.
        (state, _) => state,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic() -> Topic {
        Topic::parse("education_structure.dates_changed").unwrap()
    }

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn an_unknown_topic_is_refused_with_the_known_ones_listed() {
        let error = Topic::parse("education_structure.renamed").unwrap_err();
        assert_eq!(error.field(), "topic");
        assert!(error
            .to_string()
            .contains("education_structure.dates_changed"));
    }

    #[test]
    fn the_topic_of_an_event_type_is_found_by_its_prefix() {
        assert_eq!(
            Topic::of_event_type("dk.esas.event.education_structure.dates_changed"),
            Some(topic())
        );
        assert_eq!(
            Topic::of_event_type("dk.esas.job.applicant_transfer.failed"),
            None
        );
    }

    #[test]
    fn a_filter_on_a_field_the_topic_does_not_have_is_refused_naming_the_allowed_ones() {
        let error = Filter::parse(&topic(), pairs(&[("campus", "Nørrebro")])).unwrap_err();
        assert_eq!(error.field(), "filter");
        assert!(error.to_string().contains("education, structure_id"));
    }

    #[test]
    fn a_filter_value_with_a_cpr_number_or_nothing_in_it_is_refused() {
        let cpr = Filter::parse(&topic(), pairs(&[("education", "0102031234")]));
        assert_eq!(cpr.unwrap_err().code(), "gdpr_cpr_number");
        let empty = Filter::parse(&topic(), pairs(&[("education", "  ")]));
        assert_eq!(empty.unwrap_err().code(), "empty");
    }

    #[test]
    fn a_subscription_is_made_once_and_cancelled_once() {
        let now: DateTime<Utc> = "2026-11-26T09:00:00Z".parse().unwrap();
        let new = NewSubscription {
            id: SubscriptionId::new_v4(),
            institution: InstitutionId::parse("KP").unwrap(),
            subscriber: "user:u1".parse().unwrap(),
            topic: topic(),
            filter: Filter::parse(&topic(), pairs(&[("education", "Sygepleje")])).unwrap(),
            delivery: Delivery::Immediate,
        };
        let made =
            decide_subscription(&None, SubscriptionCommand::Subscribe(new.clone()), now).unwrap();
        let state = made.iter().fold(None, evolve_subscription);
        assert!(state.as_ref().unwrap().is_active());
        assert!(matches!(
            decide_subscription(&state, SubscriptionCommand::Subscribe(new), now),
            Err(SubscriptionError::AlreadyExists { .. })
        ));
        let cancelled = decide_subscription(&state, SubscriptionCommand::Cancel, now).unwrap();
        let state = cancelled.iter().fold(state, evolve_subscription);
        assert_eq!(state.as_ref().unwrap().cancelled_at, Some(now));
        assert_eq!(state.as_ref().unwrap().version, 2);
        assert!(
            decide_subscription(&state, SubscriptionCommand::Cancel, now)
                .unwrap()
                .is_empty()
        );
    }
}
