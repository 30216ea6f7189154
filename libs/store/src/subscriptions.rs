//! The subscription repository: loads a subscription from its stream, runs a command on it
//! and appends what the domain decides, like [`crate::FollowUps`] does for follow-ups.
//! Subscriptions change rarely and one at a time, so there is no cache and no batching.

use chrono::{DateTime, Utc};
use followup_domain::{
    decide_subscription, evolve_subscription, Actor, Subscription, SubscriptionCommand,
    SubscriptionError, SubscriptionEvent, SubscriptionId,
};
use uuid::Uuid;

use crate::event_store::{
    AppendError, EventStore, ExpectedVersion, Metadata, NewEvent, RecordedEvent, StoreError,
    StreamAppend,
};

/// The stream type of subscription streams (their id is the subscription's id).
pub const STREAM_TYPE: &str = "subscription";

/// How often a command is tried again when another writer changed the subscription meanwhile.
const RETRIES: usize = 5;

/// Why a subscription command did not run.
#[derive(Debug, thiserror::Error)]
pub enum SubscriptionRepoError {
    /// The domain refused it.
    #[error(transparent)]
    Domain(#[from] SubscriptionError),
    /// Another writer kept changing it.
    #[error("subscription {id} kept changing concurrently; try again")]
    Contended {
        /// The subscription.
        id: SubscriptionId,
    },
    /// A stored event cannot be read back.
    #[error("subscription {id} has an unreadable event: {reason}")]
    Corrupt {
        /// The subscription.
        id: SubscriptionId,
        /// Why.
        reason: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Loads subscriptions and runs commands on them. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Subscriptions {
    /// The event store the subscriptions live in.
    store: EventStore,
}

impl Subscriptions {
    /// The repository over `store`.
    pub fn new(store: EventStore) -> Self {
        Self { store }
    }

    /// The subscription as its stream says; `None` when it does not exist.
    pub async fn load(
        &self,
        id: SubscriptionId,
    ) -> Result<Option<Subscription>, SubscriptionRepoError> {
        let events = self.store.read_stream(&id.to_string()).await?;
        fold(id, &events)
    }

    /// Runs `command` by `actor` at `now` and returns the subscription after it.
    pub async fn execute(
        &self,
        id: SubscriptionId,
        command: SubscriptionCommand,
        actor: &Actor,
        now: DateTime<Utc>,
    ) -> Result<Subscription, SubscriptionRepoError> {
        for _ in 0..RETRIES {
            let state = self.load(id).await?;
            let events = decide_subscription(&state, command.clone(), now)?;
            let version = state.as_ref().map_or(0, |s| s.version);
            if events.is_empty() {
                return state.ok_or(SubscriptionRepoError::Domain(SubscriptionError::NotFound));
            }
            let append = StreamAppend {
                stream_id: id.to_string(),
                stream_type: STREAM_TYPE.to_owned(),
                expected: if version == 0 {
                    ExpectedVersion::NoStream
                } else {
                    ExpectedVersion::Exact(version)
                },
                events: events.iter().map(|e| to_new_event(e, actor)).collect(),
            };
            match self.store.append(append).await {
                Ok(_) => {
                    let next = events.iter().fold(state, evolve_subscription);
                    return next.ok_or(SubscriptionRepoError::Domain(SubscriptionError::NotFound));
                }
                Err(AppendError::Conflict { .. }) => continue,
                Err(AppendError::Store(e)) => return Err(e.into()),
                Err(other) => {
                    return Err(SubscriptionRepoError::Corrupt {
                        id,
                        reason: other.to_string(),
                    })
                }
            }
        }
        Err(SubscriptionRepoError::Contended { id })
    }
}

/// A subscription folded from its stored events.
pub fn fold(
    id: SubscriptionId,
    events: &[RecordedEvent],
) -> Result<Option<Subscription>, SubscriptionRepoError> {
    events.iter().try_fold(None, |state, recorded| {
        let event: SubscriptionEvent =
            serde_json::from_value(recorded.payload.clone()).map_err(|e| {
                SubscriptionRepoError::Corrupt {
                    id,
                    reason: format!("event {}: {e}", recorded.event_id),
                }
            })?;
        Ok(evolve_subscription(state, &event))
    })
}

/// The subscription id of a `subscription` stream.
pub fn stream_subscription_id(stream_id: &str) -> Option<SubscriptionId> {
    Uuid::parse_str(stream_id)
        .ok()
        .map(SubscriptionId::from_uuid)
}

fn to_new_event(event: &SubscriptionEvent, actor: &Actor) -> NewEvent {
    NewEvent {
        event_id: Uuid::new_v4(),
        event_type: event.event_type().to_owned(),
        schema_version: 1,
        payload: serde_json::to_value(event).expect("a subscription event serialises"),
        metadata: Metadata {
            actor: serde_json::to_value(actor).expect("an actor serialises"),
            correlation_id: None,
            causation_id: None,
        },
    }
}
