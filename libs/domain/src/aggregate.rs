//! What every aggregate of the domain is, so that one executor in the store can run commands
//! on any of them: the follow-up and the subscription implement [`Aggregate`].
//!
//! An aggregate is a value folded from its stream's events. Deciding is pure: the state and a
//! command give events or a refusal; evolving folds one event into the state. The stream's
//! type and the aggregate's id name where its events are stored; the event names and schema
//! versions say how they are stored and read back.

use std::fmt;
use std::hash::Hash;

use serde_json::Value;

use crate::followup::Context;

/// A domain aggregate: the state of one stream, and the rules for changing it.
///
/// The state of an aggregate that does not exist yet is `None`; its first event creates it.
pub trait Aggregate: Clone + fmt::Debug + Send + Sync + Sized + 'static {
    /// The stream type its events are stored under (`followup`, `subscription`).
    const STREAM_TYPE: &'static str;
    /// Its id, which is also its stream's id (as text).
    type Id: Copy + Eq + Hash + fmt::Display + fmt::Debug + Send + Sync + 'static;
    /// What someone asks of it.
    type Command: Clone + fmt::Debug + Send + Sync;
    /// What happened to it.
    type Event: Clone + fmt::Debug + Send + Sync;
    /// Why a command is refused.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Its id.
    fn id(&self) -> Self::Id;
    /// How many events its stream has: the version the next append expects.
    fn version(&self) -> u64;
    /// The id of a stream of this type, from its text; `None` if it is not one.
    fn parse_id(stream_id: &str) -> Option<Self::Id>;

    /// The events `command` causes on `state` in `ctx`, or why it is refused. An empty list
    /// means "nothing to change".
    fn decide(
        state: &Option<Self>,
        command: Self::Command,
        ctx: &Context,
    ) -> Result<Vec<Self::Event>, Self::Error>;
    /// The state after `event`.
    fn evolve(state: Option<Self>, event: &Self::Event) -> Option<Self>;

    /// True for a command that needs no state (it creates the aggregate): it is decided on
    /// `None` and appended expecting no stream, in one round trip.
    fn is_creation(_command: &Self::Command) -> bool {
        false
    }
    /// The refusal of a command on an aggregate that does not exist.
    fn not_found() -> Self::Error;
    /// The refusal of a creation whose id is taken.
    fn already_exists(id: Self::Id) -> Self::Error;

    /// The stored name of `event` (`created`, `subscribed`, …).
    fn event_type(event: &Self::Event) -> &'static str;
    /// The schema version events of `event_type` are written with now.
    fn schema_version(_event_type: &str) -> i32 {
        1
    }
    /// `event` as the JSON payload it is stored as.
    fn encode(event: &Self::Event) -> Value;
    /// The event stored as `payload` under `event_type` and `schema_version` (brought to the
    /// current schema first), or why it cannot be read.
    fn decode(event_type: &str, schema_version: i32, payload: Value)
        -> Result<Self::Event, String>;
    /// A stored payload brought to the current schema (for readers of raw events); the
    /// default: payloads of this aggregate have only ever had one schema.
    fn upcast(
        event_type: &str,
        schema_version: i32,
        payload: Value,
    ) -> Result<(i32, Value), String> {
        let _ = event_type;
        Ok((schema_version, payload))
    }
}

/// The state after `events`, from `state`.
pub fn fold<A: Aggregate>(state: Option<A>, events: &[A::Event]) -> Option<A> {
    events.iter().fold(state, A::evolve)
}

mod impls {
    use serde_json::Value;

    use super::Aggregate;
    use crate::directory::{
        decide_team, decide_user, evolve_team, evolve_user, DirectoryError, DirectoryId,
        DirectoryTeam, DirectoryUser, TeamCommand, TeamEvent, UserCommand, UserEvent,
    };
    use crate::followup::{Command, Context, DomainError, Event, FollowUp};
    use crate::subscription::{
        decide_subscription, evolve_subscription, Subscription, SubscriptionCommand,
        SubscriptionError, SubscriptionEvent, SubscriptionId,
    };
    use crate::upcast::{current_schema_version, decode, upcast};
    use crate::values::FollowUpId;

    impl Aggregate for FollowUp {
        const STREAM_TYPE: &'static str = "followup";
        type Id = FollowUpId;
        type Command = Command;
        type Event = Event;
        type Error = DomainError;

        fn id(&self) -> FollowUpId {
            self.id
        }
        fn version(&self) -> u64 {
            self.version
        }
        fn parse_id(stream_id: &str) -> Option<FollowUpId> {
            stream_id.parse().ok()
        }
        fn decide(
            state: &Option<Self>,
            command: Command,
            ctx: &Context,
        ) -> Result<Vec<Event>, DomainError> {
            crate::followup::decide(state, command, ctx)
        }
        fn evolve(state: Option<Self>, event: &Event) -> Option<Self> {
            crate::followup::evolve(state, event)
        }
        fn is_creation(command: &Command) -> bool {
            matches!(command, Command::Create(_))
        }
        fn not_found() -> DomainError {
            DomainError::NotFound
        }
        fn already_exists(id: FollowUpId) -> DomainError {
            DomainError::AlreadyExists { id }
        }
        fn event_type(event: &Event) -> &'static str {
            event.event_type()
        }
        fn schema_version(event_type: &str) -> i32 {
            current_schema_version(event_type)
        }
        fn encode(event: &Event) -> Value {
            serde_json::to_value(event).expect("a follow-up event serialises")
        }
        fn decode(event_type: &str, schema_version: i32, payload: Value) -> Result<Event, String> {
            decode(event_type, schema_version, payload).map_err(|e| e.to_string())
        }
        fn upcast(
            event_type: &str,
            schema_version: i32,
            payload: Value,
        ) -> Result<(i32, Value), String> {
            let payload = upcast(event_type, schema_version, payload).map_err(|e| e.to_string())?;
            Ok((current_schema_version(event_type), payload))
        }
    }

    macro_rules! directory_aggregate {
        ($state:ty, $stream:literal, $command:ty, $event:ty, $decide:path, $evolve:path, $creation:pat) => {
            impl Aggregate for $state {
                const STREAM_TYPE: &'static str = $stream;
                type Id = DirectoryId;
                type Command = $command;
                type Event = $event;
                type Error = DirectoryError;

                fn id(&self) -> DirectoryId {
                    self.id
                }
                fn version(&self) -> u64 {
                    self.version
                }
                fn parse_id(stream_id: &str) -> Option<DirectoryId> {
                    DirectoryId::parse(stream_id).ok()
                }
                fn decide(
                    state: &Option<Self>,
                    command: $command,
                    ctx: &Context,
                ) -> Result<Vec<$event>, DirectoryError> {
                    $decide(state, command, ctx.now)
                }
                fn evolve(state: Option<Self>, event: &$event) -> Option<Self> {
                    $evolve(state, event)
                }
                fn is_creation(command: &$command) -> bool {
                    matches!(command, $creation)
                }
                fn not_found() -> DirectoryError {
                    DirectoryError::NotFound
                }
                fn already_exists(id: DirectoryId) -> DirectoryError {
                    DirectoryError::AlreadyExists { id }
                }
                fn event_type(event: &$event) -> &'static str {
                    event.event_type()
                }
                fn encode(event: &$event) -> Value {
                    serde_json::to_value(event).expect("a directory event serialises")
                }
                fn decode(
                    event_type: &str,
                    _schema_version: i32,
                    payload: Value,
                ) -> Result<$event, String> {
                    serde_json::from_value(payload).map_err(|e| format!("{event_type} event: {e}"))
                }
            }
        };
    }

    directory_aggregate!(
        DirectoryUser,
        "directory_user",
        UserCommand,
        UserEvent,
        decide_user,
        evolve_user,
        UserCommand::Provision { .. }
    );
    directory_aggregate!(
        DirectoryTeam,
        "directory_team",
        TeamCommand,
        TeamEvent,
        decide_team,
        evolve_team,
        TeamCommand::Provision { .. }
    );

    impl Aggregate for Subscription {
        const STREAM_TYPE: &'static str = "subscription";
        type Id = SubscriptionId;
        type Command = SubscriptionCommand;
        type Event = SubscriptionEvent;
        type Error = SubscriptionError;

        fn id(&self) -> SubscriptionId {
            self.id
        }
        fn version(&self) -> u64 {
            self.version
        }
        fn parse_id(stream_id: &str) -> Option<SubscriptionId> {
            SubscriptionId::parse(stream_id).ok()
        }
        fn decide(
            state: &Option<Self>,
            command: SubscriptionCommand,
            ctx: &Context,
        ) -> Result<Vec<SubscriptionEvent>, SubscriptionError> {
            decide_subscription(state, command, ctx.now)
        }
        fn evolve(state: Option<Self>, event: &SubscriptionEvent) -> Option<Self> {
            evolve_subscription(state, event)
        }
        fn is_creation(command: &SubscriptionCommand) -> bool {
            matches!(command, SubscriptionCommand::Subscribe(_))
        }
        fn not_found() -> SubscriptionError {
            SubscriptionError::NotFound
        }
        fn already_exists(id: SubscriptionId) -> SubscriptionError {
            SubscriptionError::AlreadyExists { id }
        }
        fn event_type(event: &SubscriptionEvent) -> &'static str {
            event.event_type()
        }
        fn encode(event: &SubscriptionEvent) -> Value {
            serde_json::to_value(event).expect("a subscription event serialises")
        }
        fn decode(
            event_type: &str,
            _schema_version: i32,
            payload: Value,
        ) -> Result<SubscriptionEvent, String> {
            serde_json::from_value(payload).map_err(|e| format!("{event_type} event: {e}"))
        }
    }
}
