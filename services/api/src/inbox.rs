//! Subscriptions, the notification inbox and the live event stream (design sections 5 and 7):
//! `GET/POST /v1/subscriptions`, `DELETE /v1/subscriptions/{id}`, `GET /v1/notifications`,
//! `POST /v1/notifications/{id}/read` and `…/dismiss`, and `GET /v1/stream`.

use std::collections::{HashSet, VecDeque};
use std::convert::Infallible;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{pull::OrderedConfig, DeliverPolicy};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use chrono::Utc;
use followup_domain::{
    access, Actor, Command, Context, Delivery, Filter, FollowUpId, InboxState, NewSubscription,
    Principal, Subscription, SubscriptionCommand, SubscriptionId, Topic, Viewer,
};
use followup_messaging::notify;
use followup_platform::retry::pause;
use followup_readmodel::{InboxCursor, InboxQuery};
use followup_store::{CommandMeta, Expect, SubscriptionRepoError};
use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::auth::Caller;
use crate::routes::{context, gdpr_or_invalid, meta, open_cursor, ApiJson, IdPath, PrincipalBody};
use crate::{ApiError, AppState};

/// How many event ids a live stream remembers to drop the second copy of an event that
/// reaches the user twice (as itself and as a member of a team).
const RECENT_EVENTS: usize = 1024;

/// The routes of this module.
pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/subscriptions", get(list_subscriptions).post(subscribe))
        .route("/v1/subscriptions/{id}", delete(unsubscribe))
        .route("/v1/notifications", get(notifications))
        .route("/v1/notifications/{id}/read", post(read))
        .route("/v1/notifications/{id}/dismiss", post(dismiss))
        .route("/v1/stream", get(stream))
}

/// A subscription as the API shows it.
#[derive(Debug, Serialize)]
struct SubscriptionJson {
    id: SubscriptionId,
    topic: Topic,
    filter: Filter,
    delivery: Delivery,
    subscriber: Principal,
    created_at: chrono::DateTime<Utc>,
}

impl From<Subscription> for SubscriptionJson {
    fn from(s: Subscription) -> Self {
        Self {
            id: s.id,
            topic: s.topic,
            filter: s.filter,
            delivery: s.delivery,
            subscriber: s.subscriber,
            created_at: s.created_at,
        }
    }
}

impl From<SubscriptionRepoError> for ApiError {
    fn from(e: SubscriptionRepoError) -> Self {
        match e {
            SubscriptionRepoError::Domain(followup_domain::SubscriptionError::NotFound) => {
                ApiError::not_found("no such subscription")
            }
            // Two requests changing one subscription at the same moment: as for follow-ups.
            SubscriptionRepoError::Contended { .. }
            | SubscriptionRepoError::VersionMismatch { .. }
            | SubscriptionRepoError::Domain(followup_domain::SubscriptionError::AlreadyExists {
                ..
            }) => ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                "the subscription was changed by someone else at the same moment; try again",
            ),
            SubscriptionRepoError::Store(e) if e.is_transient() => ApiError::unavailable(e),
            e => ApiError::internal(e),
        }
    }
}

async fn list_subscriptions(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> Result<Response, ApiError> {
    let items: Vec<SubscriptionJson> = state
        .read_model
        .subscriptions_of(&caller.0)
        .await?
        .into_iter()
        .map(Into::into)
        .collect();
    Ok(Json(json!({ "items": items })).into_response())
}

/// The body of `POST /v1/subscriptions`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscribeBody {
    topic: String,
    #[serde(default)]
    filter: Option<serde_json::Map<String, Value>>,
    delivery: String,
    subscriber: Option<PrincipalBody>,
}

/// Subscribes the caller, or one of its teams. Subscribing again to the same topic with the
/// same filter and delivery gives the existing subscription (200), not a second one.
async fn subscribe(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiJson(body): ApiJson<SubscribeBody>,
) -> Result<Response, ApiError> {
    let viewer = &caller.0;
    let topic = Topic::parse(&body.topic).map_err(|e| gdpr_or_invalid(&e))?;
    let mut fields = Vec::new();
    for (field, value) in body.filter.unwrap_or_default() {
        let Value::String(value) = value else {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation",
                format!("filter.{field} must be a string"),
            )
            .at("filter"));
        };
        fields.push((field, value));
    }
    let filter = Filter::parse(&topic, fields).map_err(|e| gdpr_or_invalid(&e))?;
    let delivery = Delivery::parse(&body.delivery).map_err(|e| gdpr_or_invalid(&e))?;
    let subscriber = match &body.subscriber {
        None => Principal::User(viewer.user.clone()),
        Some(body) => {
            let principal = body.parse()?;
            // A user subscribes itself, or a team it is a member of (an admin: any team of its
            // institution); never another user.
            let allowed = match &principal {
                Principal::User(user) => *user == viewer.user,
                Principal::Team(_) => viewer.admin || viewer.is(&principal),
            };
            if !allowed {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "not_your_subscriber",
                    "you can subscribe yourself or a team you are a member of",
                )
                .at("subscriber"));
            }
            principal
        }
    };
    let existing = state.read_model.subscriptions_of(viewer).await?;
    if let Some(same) = existing.into_iter().find(|s| {
        s.subscriber == subscriber
            && s.topic == topic
            && s.filter == filter
            && s.delivery == delivery
    }) {
        return Ok((StatusCode::OK, Json(SubscriptionJson::from(same))).into_response());
    }
    let id = SubscriptionId::new_v4();
    let new = NewSubscription {
        id,
        institution: viewer.institution.clone(),
        subscriber,
        topic,
        filter,
        delivery,
    };
    let actor = Actor::User {
        id: viewer.user.clone(),
    };
    let subscription = state
        .subscriptions
        .execute(
            id,
            SubscriptionCommand::Subscribe(new),
            &Context {
                actor,
                now: Utc::now(),
            },
            &CommandMeta::default(),
            Expect::Current,
        )
        .await?;
    state
        .read_model
        .upsert_subscriptions(std::slice::from_ref(&subscription.state))
        .await?;
    let location = format!("/v1/subscriptions/{id}");
    Ok((
        StatusCode::CREATED,
        [(axum::http::header::LOCATION, location)],
        Json(SubscriptionJson::from(subscription.state)),
    )
        .into_response())
}

async fn unsubscribe(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = SubscriptionId::parse(&id).map_err(|_| {
        ApiError::bad_request(
            "invalid_id",
            format!("{id:?} is not a subscription id (a UUID)"),
        )
    })?;
    // Only the caller's own subscriptions and its teams' exist for it.
    if state
        .read_model
        .subscription(&caller.0, id)
        .await?
        .is_none()
    {
        return Err(ApiError::not_found("no such subscription"));
    }
    let actor = Actor::User {
        id: caller.0.user.clone(),
    };
    let subscription = state
        .subscriptions
        .execute(
            id,
            SubscriptionCommand::Cancel,
            &Context {
                actor,
                now: Utc::now(),
            },
            &CommandMeta::default(),
            Expect::Current,
        )
        .await?;
    state
        .read_model
        .upsert_subscriptions(std::slice::from_ref(&subscription.state))
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The query string of `GET /v1/notifications`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InboxParams {
    /// `unread`, `read`, `dismissed`, or a comma-separated list; default `unread,read`.
    state: Option<String>,
    cursor: Option<String>,
    limit: Option<u32>,
}

async fn notifications(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    params: Result<Query<InboxParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) =
        params.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let mut query = InboxQuery::default();
    if let Some(states) = params.state.as_deref().filter(|s| !s.is_empty()) {
        query.states = states
            .split(',')
            .map(|s| {
                InboxState::from_str(s.trim()).map_err(|e| {
                    ApiError::bad_request("invalid_query", format!("`state`: {e}")).at("state")
                })
            })
            .collect::<Result<_, _>>()?;
    }
    if let Some(sealed) = params.cursor.as_deref() {
        query.cursor = Some(InboxCursor::from_str(open_cursor(&state, sealed)?)?);
    }
    if let Some(limit) = params.limit {
        query.limit = limit;
    }
    let page = state.read_model.notifications(&caller.0, &query).await?;
    let mut page = serde_json::to_value(page).map_err(ApiError::internal)?;
    if let Some(cursor) = page["next_cursor"]
        .as_str()
        .map(|c| state.auth.seal_cursor(c))
    {
        page["next_cursor"] = cursor.into();
    }
    Ok(Json(page).into_response())
}

async fn read(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    IdPath(id): IdPath,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let user = caller.0.user.clone();
    inbox_command(&state, &caller, id, &headers, Command::MarkRead { user }).await
}

async fn dismiss(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    IdPath(id): IdPath,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let user = caller.0.user.clone();
    inbox_command(&state, &caller, id, &headers, Command::Dismiss { user }).await
}

/// Read and dismiss need only read access: they change the caller's own inbox, not the
/// notification.
async fn inbox_command(
    state: &AppState,
    caller: &Caller,
    id: FollowUpId,
    headers: &HeaderMap,
    command: Command,
) -> Result<Response, ApiError> {
    let current = state
        .followups
        .load(id)
        .await?
        .ok_or_else(|| ApiError::not_found("no such notification"))?;
    if access(&current, &caller.0).is_none() {
        return Err(ApiError::not_found("no such notification"));
    }
    let outcome = state
        .followups
        .execute(
            id,
            command,
            &context(caller),
            &meta(headers),
            Expect::Current,
        )
        .await?;
    let inbox: Vec<followup_readmodel::InboxChange> = outcome
        .events
        .iter()
        .filter_map(|event| match event {
            followup_domain::Event::Read { user, at } => Some((user, InboxState::Read, at)),
            followup_domain::Event::Dismissed { user, at } => {
                Some((user, InboxState::Dismissed, at))
            }
            _ => None,
        })
        .map(|(user, state, at)| followup_readmodel::InboxChange {
            followup: id,
            user: user.clone(),
            state,
            at: *at,
        })
        .collect();
    state.read_model.upsert_inbox(&inbox).await?;
    state
        .read_model
        .upsert(std::slice::from_ref(&outcome.state))
        .await?;
    let inbox_state = outcome.state.inbox_state(&caller.0.user);
    let mut body = serde_json::to_value(&outcome.state).map_err(ApiError::internal)?;
    body["state"] = json!(inbox_state);
    Ok(Json(body).into_response())
}

/// The query string of `GET /v1/stream`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamParams {
    /// The token, for clients that cannot send headers (a browser's `EventSource`).
    access_token: Option<String>,
}

/// Server-sent events: every change to a follow-up that the caller or one of its teams owns
/// or is shared with, and every notification it gets, as they happen (an admin gets its own,
/// not its whole institution's). Each event's `id` is its JetStream
/// sequence; a client that reconnects with `Last-Event-ID` gets everything after it. The
/// event name is the follow-up event type (`created`, `completed`, …); the data is the
/// outbound CloudEvent. Comments are sent as heartbeats while nothing happens. The stream
/// ends when the caller's token expires.
async fn stream(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    params: Result<Query<StreamParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let Query(params) =
        params.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let authorization = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| params.access_token.map(|t| format!("Bearer {t}")));
    let identity = state.auth.identify(authorization.as_deref()).await?;
    let expires = identity.expires;
    let viewer =
        crate::directory::complete(&state, identity.viewer, identity.name.as_deref()).await;
    let Some(client) = state.nats.clone() else {
        return Err(ApiError::unavailable("live delivery needs NATS"));
    };
    let resume = match headers.get("last-event-id") {
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "invalid_last_event_id",
                        "Last-Event-ID must be the id of an event this stream sent",
                    )
                })?,
        ),
    };
    let js = async_nats::jetstream::new(client);
    let stream = js
        .get_stream(&state.streams.followups)
        .await
        .map_err(ApiError::unavailable)?;
    // One consumer on exactly the caller's own and its teams' subjects (several filter
    // subjects per consumer: nats-server 2.10 and later), so the server sends nothing else.
    let consumer = stream
        .create_consumer(OrderedConfig {
            filter_subjects: wanted_subjects(&viewer),
            deliver_policy: match resume {
                Some(sequence) => DeliverPolicy::ByStartSequence {
                    start_sequence: sequence.checked_add(1).ok_or_else(|| {
                        ApiError::bad_request(
                            "invalid_last_event_id",
                            "Last-Event-ID must be the id of an event this stream sent",
                        )
                    })?,
                },
                None => DeliverPolicy::New,
            },
            ..Default::default()
        })
        .await
        .map_err(ApiError::unavailable)?;
    let messages = consumer.messages().await.map_err(ApiError::unavailable)?;
    let mut recent: VecDeque<String> = VecDeque::with_capacity(RECENT_EVENTS);
    let mut seen: HashSet<String> = HashSet::with_capacity(RECENT_EVENTS);
    let events = messages.filter_map(move |message| {
        let event = match message {
            Ok(message) => {
                let sequence = message
                    .info()
                    .map(|i| i.stream_sequence)
                    .unwrap_or_default();
                let payload: Value =
                    serde_json::from_slice(&message.payload).unwrap_or(Value::Null);
                let event_id = payload["id"].as_str().unwrap_or_default().to_owned();
                if seen.contains(&event_id) {
                    None
                } else {
                    if recent.len() == RECENT_EVENTS {
                        if let Some(old) = recent.pop_front() {
                            seen.remove(&old);
                        }
                    }
                    recent.push_back(event_id.clone());
                    seen.insert(event_id);
                    let name = payload["type"]
                        .as_str()
                        .and_then(|t| t.strip_prefix("dk.esas.followup."))
                        .unwrap_or("change")
                        .to_owned();
                    Some(Ok(SseEvent::default()
                        .id(sequence.to_string())
                        .event(name)
                        .data(payload.to_string())))
                }
            }
            Err(error) => {
                tracing::warn!(error.message = %error, "live stream interrupted");
                None
            }
        };
        std::future::ready(event)
    });
    // The stream ends when the server shuts down, or when the token expires (the client
    // then reconnects with a fresh token and `Last-Event-ID`, and misses nothing).
    let left = u64::try_from(expires - Utc::now().timestamp()).unwrap_or(0);
    let shutdown = state.live_streams.clone();
    let end = async move {
        pause(&shutdown, Duration::from_secs(left)).await;
    };
    let events = events.take_until(end);
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(state.keep_alive)))
}

/// The live delivery subjects of the viewer and its teams.
fn wanted_subjects(viewer: &Viewer) -> Vec<String> {
    let institution = viewer.institution.as_str();
    std::iter::once(notify::subject(institution, "user", viewer.user.as_str()))
        .chain(
            viewer
                .teams
                .iter()
                .map(|team| notify::subject(institution, "team", team.as_str())),
        )
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect()
}
