//! The outbound relay (`followupd relay`): every event of the event store is published on
//! `followups.events.<institution>.<kind>.<event>` (stream `FOLLOWUPS`) as a CloudEvent whose
//! `type` is `dk.esas.followup.<event>`, with `Nats-Msg-Id` = the event id (design section 6).
//!
//! Each event also goes, for live delivery (design section 5), to every user and team who can
//! see the follow-up before or after it (a `read` or `dismissed` only to the user who read or
//! dismissed), on `followups.notify.<institution>.<user|team>.<id>`
//! (same stream, `Nats-Msg-Id` = event id and principal). Who can see it is the follow-up's
//! state at that event, folded from its stream.
//!
//! It reads the store in its gap-free order (so each follow-up's events go out in version
//! order), publishes a batch, waits for JetStream to acknowledge all of it, and only then moves
//! its durable checkpoint (`projection_checkpoints`, name `relay`). A crash between the two
//! republishes the batch, which JetStream's duplicate window (10 minutes) drops; a NATS outage
//! keeps the batch in hand and retries it until NATS is back: delayed, never lost.
//!
//! # Layout
//! - [`Relay`]: `process_pending` (one batch; what tests call) and `run` (the loop).
//! - [`to_cloudevent`]: the outbound message of one event.

use followup_platform::retry::{self, pause};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::Duration;

use async_nats::HeaderMap;
use bytes::Bytes;
use followup_domain::{decode, evolve, Event, Principal, State};
use followup_messaging::{notify, JetStream};
use followup_store::followups::STREAM_TYPE;
use followup_store::{Checkpoint, EventStore, RecordedEvent, StoreError, Tail};
use serde_json::{json, Value};
use sqlx::Row;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// The checkpoint's name in `projection_checkpoints`.
pub const CHECKPOINT: &str = "relay";

/// Why a batch could not be relayed (it is retried).
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The event store or the checkpoint could not be read or written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// JetStream did not acknowledge a publish.
    #[error("publishing to NATS failed: {0}")]
    Publish(String),
}

impl From<sqlx::Error> for RelayError {
    fn from(e: sqlx::Error) -> Self {
        Self::Store(StoreError::Database(e))
    }
}

/// The relay.
#[derive(Debug, Clone)]
pub struct Relay {
    /// Where events come from (with the follow-up upcaster).
    store: EventStore,
    /// Where they go.
    js: JetStream,
    /// The most events published before the checkpoint moves.
    batch_size: i64,
}

/// Where a follow-up's events go: its institution and kind (from its `created` event).
#[derive(Debug, Clone)]
struct Route {
    institution: String,
    kind: String,
}

impl Relay {
    /// A relay from `store` to `js`.
    pub fn new(store: EventStore, js: JetStream) -> Self {
        Self {
            store,
            js,
            batch_size: 1000,
        }
    }

    /// The durable checkpoint (the start before anything was relayed).
    pub async fn checkpoint(&self) -> Result<Checkpoint, RelayError> {
        let row = sqlx::query(
            "SELECT transaction_id, position FROM projection_checkpoints WHERE name = $1",
        )
        .bind(CHECKPOINT)
        .fetch_optional(self.store.pool())
        .await?;
        Ok(row.map_or(Checkpoint::START, |r| Checkpoint {
            transaction_id: r.get(0),
            position: r.get(1),
        }))
    }

    async fn save(&self, checkpoint: Checkpoint) -> Result<(), RelayError> {
        sqlx::query(
            "INSERT INTO projection_checkpoints (name, transaction_id, position, updated_at) VALUES ($1, $2, $3, now())
             ON CONFLICT (name) DO UPDATE SET transaction_id = EXCLUDED.transaction_id, position = EXCLUDED.position, updated_at = now()",
        )
        .bind(CHECKPOINT)
        .bind(checkpoint.transaction_id)
        .bind(checkpoint.position)
        .execute(self.store.pool())
        .await?;
        Ok(())
    }

    /// Relays the next batch after the durable checkpoint; returns how many events went out.
    pub async fn process_pending(&self) -> Result<usize, RelayError> {
        let events = self
            .store
            .read_all(self.checkpoint().await?, self.batch_size)
            .await?;
        self.relay(&events).await?;
        Ok(events.len())
    }

    /// Publishes `events` in order, waits for every acknowledgement, then saves the checkpoint.
    #[tracing::instrument(name = "relay.batch", skip_all, fields(events = events.len()))]
    async fn relay(&self, events: &[RecordedEvent]) -> Result<(), RelayError> {
        let Some(last) = events.last() else {
            return Ok(());
        };
        let routes = self.routes(events).await?;
        let audiences = self.audiences(events).await?;
        // Sent in order on one connection, so JetStream stores them in order; the
        // acknowledgements are awaited afterwards, all together.
        let mut acks = Vec::with_capacity(events.len());
        for event in events.iter().filter(|e| e.stream_type == STREAM_TYPE) {
            let Some(route) = routes.get(&event.stream_id) else {
                tracing::error!(event.id = %event.event_id, stream.id = %event.stream_id, "follow-up without a created event; not relayed");
                continue;
            };
            let mut headers = HeaderMap::new();
            headers.insert(
                async_nats::header::NATS_MESSAGE_ID,
                event.event_id.to_string().as_str(),
            );
            let subject = format!(
                "followups.events.{}.{}.{}",
                route.institution, route.kind, event.event_type
            );
            let payload =
                Bytes::from(to_cloudevent(event, &route.institution, &route.kind).to_string());
            let ack = self
                .js
                .publish_with_headers(subject, headers, payload.clone())
                .await
                .map_err(|e| RelayError::Publish(e.to_string()))?;
            acks.push(ack);
            for principal in audiences.get(&event.event_id).into_iter().flatten() {
                let (kind, id) = match principal {
                    Principal::User(user) => ("user", user.as_str()),
                    Principal::Team(team) => ("team", team.as_str()),
                };
                let mut headers = HeaderMap::new();
                headers.insert(
                    async_nats::header::NATS_MESSAGE_ID,
                    format!("{}/{principal}", event.event_id).as_str(),
                );
                let ack = self
                    .js
                    .publish_with_headers(
                        notify::subject(&route.institution, kind, id),
                        headers,
                        payload.clone(),
                    )
                    .await
                    .map_err(|e| RelayError::Publish(e.to_string()))?;
                acks.push(ack);
            }
        }
        for ack in acks {
            ack.await.map_err(|e| RelayError::Publish(e.to_string()))?;
        }
        self.save(last.checkpoint()).await
    }

    /// Who hears of each follow-up event in `events` live: the owner and everyone it is
    /// shared with, before or after the event (so someone who loses access hears of that).
    async fn audiences(
        &self,
        events: &[RecordedEvent],
    ) -> Result<HashMap<Uuid, BTreeSet<Principal>>, RelayError> {
        let mut wanted: HashMap<&str, u64> = HashMap::new();
        for event in events.iter().filter(|e| e.stream_type == STREAM_TYPE) {
            let newest = wanted.entry(event.stream_id.as_str()).or_insert(0);
            *newest = (*newest).max(event.version);
        }
        let in_batch: HashSet<Uuid> = events.iter().map(|e| e.event_id).collect();
        let streams: Vec<String> = wanted.keys().map(|s| (*s).to_owned()).collect();
        let mut audiences = HashMap::new();
        let mut state: State = None;
        let mut current_stream = String::new();
        for recorded in self.store.read_streams(&streams).await? {
            if recorded.stream_id != current_stream {
                current_stream.clone_from(&recorded.stream_id);
                state = None;
            }
            if recorded.version > wanted[recorded.stream_id.as_str()] {
                continue;
            }
            let before = principals(&state);
            let event = match decode(
                &recorded.event_type,
                recorded.schema_version,
                recorded.payload.clone(),
            ) {
                Ok(event) => event,
                Err(error) => {
                    tracing::error!(error.message = %error, event.id = %recorded.event_id, "event cannot be decoded; no live delivery for it");
                    continue;
                }
            };
            state = evolve(state, &event);
            if in_batch.contains(&recorded.event_id) {
                let audience = match &event {
                    // One user's inbox state is that user's business alone.
                    Event::Read { user, .. } | Event::Dismissed { user, .. } => {
                        BTreeSet::from([Principal::User(user.clone())])
                    }
                    _ => {
                        let mut audience = before;
                        audience.extend(principals(&state));
                        audience
                    }
                };
                audiences.insert(recorded.event_id, audience);
            }
        }
        Ok(audiences)
    }

    /// The institution and kind of every follow-up in `events`.
    async fn routes(&self, events: &[RecordedEvent]) -> Result<HashMap<String, Route>, RelayError> {
        let mut streams: Vec<&str> = events
            .iter()
            .filter(|e| e.stream_type == STREAM_TYPE)
            .map(|e| e.stream_id.as_str())
            .collect();
        streams.sort_unstable();
        streams.dedup();
        let rows = sqlx::query(
            "SELECT stream_id, payload->>'institution', payload->>'kind' FROM events
             WHERE stream_id = ANY($1) AND version = 1",
        )
        .bind(&streams)
        .fetch_all(self.store.pool())
        .await?;
        Ok(rows
            .iter()
            .map(|r| {
                (
                    r.get::<String, _>(0),
                    Route {
                        institution: r.get(1),
                        kind: r.get(2),
                    },
                )
            })
            .collect())
    }

    /// Runs until `shutdown`: waits for new events, relays them; a failed batch is retried
    /// (with a growing pause) until it goes out.
    pub async fn run(self, shutdown: CancellationToken) {
        let start = loop {
            match self.checkpoint().await {
                Ok(checkpoint) => break checkpoint,
                Err(error) => {
                    tracing::warn!(error.message = %error, "relay cannot read its checkpoint; retrying");
                    if pause(&shutdown, Duration::from_secs(1)).await {
                        return;
                    }
                }
            }
        };
        tracing::info!(checkpoint.position = start.position, "relay started");
        let mut tail = Tail::new(self.store.clone(), start).batch_size(self.batch_size);
        loop {
            let batch = match tail.next_batch(&shutdown).await {
                Ok(Some(batch)) => batch,
                Ok(None) => break,
                Err(error) => {
                    tracing::warn!(error.message = %error, "relay cannot read the event store; retrying");
                    if pause(&shutdown, Duration::from_secs(1)).await {
                        break;
                    }
                    continue;
                }
            };
            let mut failures = 0;
            while let Err(error) = self.relay(&batch).await {
                failures += 1;
                let delay = retry::BATCH.delay(failures);
                tracing::warn!(error.message = %error, events = batch.len(), retry.in_ms = delay.as_millis() as u64, "relay batch failed; retrying");
                if pause(&shutdown, delay).await {
                    return;
                }
            }
        }
        tracing::info!("relay stopped");
    }
}

/// The owner and everyone the follow-up is shared with.
fn principals(state: &State) -> BTreeSet<Principal> {
    state
        .iter()
        .flat_map(|f| std::iter::once(f.owner.clone()).chain(f.shares.keys().cloned()))
        .collect()
}

/// The outbound CloudEvent of one follow-up event.
pub fn to_cloudevent(event: &RecordedEvent, institution: &str, kind: &str) -> Value {
    let mut data = event.payload.clone();
    if let Some(fields) = data.as_object_mut() {
        fields.remove("type");
    }
    let mut cloudevent = json!({
        "specversion": "1.0",
        "id": event.event_id,
        "source": "esas/followups",
        "type": format!("dk.esas.followup.{}", event.event_type),
        "time": event.recorded_at,
        "subject": format!("followup/{}", event.stream_id),
        "datacontenttype": "application/json",
        "institution": institution,
        "data": {
            "followup_id": event.stream_id,
            "kind": kind,
            "version": event.version,
            "actor": event.metadata.actor,
            "correlation_id": event.metadata.correlation_id,
            "causation_id": event.metadata.causation_id,
            "event": data,
        },
    });
    // The trace of the request or inbound message that caused the event goes on (the W3C
    // trace context extension of CloudEvents).
    if let Some(traceparent) = &event.metadata.traceparent {
        cloudevent["traceparent"] = json!(traceparent);
    }
    cloudevent
}
