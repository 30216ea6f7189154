//! Subscriptions in the store: their stream type and the names the rest of the service uses
//! for the executor over subscriptions ([`Subscriptions`]).

use followup_domain::aggregate::Aggregate;
use followup_domain::{Subscription, SubscriptionId};

use crate::event_store::RecordedEvent;
use crate::executor::{ExecuteError, Executor};

/// The stream type of subscription streams (their id is the subscription's id).
pub const STREAM_TYPE: &str = <Subscription as Aggregate>::STREAM_TYPE;

/// Loads subscriptions and runs commands on them: the executor over subscriptions.
pub type Subscriptions = Executor<Subscription>;

/// Why a subscription command did not run.
pub type SubscriptionRepoError = ExecuteError<Subscription>;

/// A subscription folded from its stored events.
pub fn fold(
    id: SubscriptionId,
    events: &[RecordedEvent],
) -> Result<Option<Subscription>, SubscriptionRepoError> {
    crate::executor::fold(id, None, events)
}

/// The subscription id of a `subscription` stream.
pub fn stream_subscription_id(stream_id: &str) -> Option<SubscriptionId> {
    Subscription::parse_id(stream_id)
}
