//! The `/v1` routes of design section 7 for follow-ups and the dashboard (subscriptions,
//! notifications and the live stream are in [`crate::inbox`]).

use std::str::FromStr;
use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::header::{ETAG, IF_MATCH, LOCATION};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use followup_domain::{
    access, screen, Access, Actor, Command, Context, Description, Edit, FollowUp, FollowUpId, Kind,
    NewFollowUp, NoteText, Principal, Priority, Regarding, Source, Status, StatusReason, Subject,
};
use followup_readmodel::{Cursor, ListQuery, OwnerFilter};
use followup_store::{CommandMeta, Expect};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::auth::Caller;
use crate::{ApiError, AppState};

/// Every `/v1` route.
pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/followups", get(list).post(create))
        .route("/v1/followups/{id}", get(show).patch(edit))
        .route("/v1/followups/{id}/assign", post(assign))
        .route("/v1/followups/{id}/shares", post(share))
        .route(
            "/v1/followups/{id}/shares/{principal}",
            axum::routing::delete(unshare),
        )
        .route("/v1/followups/{id}/complete", post(complete))
        .route("/v1/followups/{id}/close", post(close))
        .route("/v1/followups/{id}/history", get(history))
        .route("/v1/followups/{id}/notes", get(notes).post(add_note))
        .route("/v1/dashboard", get(dashboard))
        .route("/v1/me", get(me))
}

/// A JSON body whose every rejection (malformed JSON, unknown fields, wrong content type,
/// too large) is a problem document, screened before it is used: a NUL character (`\u0000`,
/// which the database cannot store) anywhere is refused with 422 `invalid_text`, and a CPR
/// number in any field (every field of a body is something a user typed) with 422
/// `gdpr_cpr_number`, each naming the field.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let Json(value) = Json::<Value>::from_request(req, state)
            .await
            .map_err(|rejection| json_problem(&rejection))?;
        if let Some(field) = screen::first_unstorable(&value) {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_text",
                "text may not contain the NUL character (\\u0000)",
            )
            .at(field));
        }
        if let Some(field) = screen::first_cpr(&value) {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "gdpr_cpr_number",
                format!("{field} contains a CPR number; CPR numbers must not be written in follow-ups: refer to the person by their ESAS id"),
            )
            .at(field));
        }
        serde_json::from_value(value).map(Self).map_err(|e| {
            // Unknown fields and wrong types are as malformed as broken JSON: 400.
            ApiError::bad_request(
                "invalid_body",
                format!("Failed to deserialize the JSON body into the target type: {e}"),
            )
        })
    }
}

/// The earliest and the latest year of a time the API takes from a client.
pub const YEARS: std::ops::RangeInclusive<i32> = 1900..=9999;

/// A time the API takes from a client (`due`, `due_before`): RFC 3339, in the years
/// [`YEARS`], without a leap second (second 60), which PostgreSQL and every client can hold.
#[derive(Debug, Clone, Copy)]
pub struct ApiTime(pub DateTime<Utc>);

impl<'de> Deserialize<'de> for ApiTime {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use chrono::{Datelike, Timelike};
        use serde::de::Error;
        let text = String::deserialize(d)?;
        let time = DateTime::parse_from_rfc3339(&text)
            .map_err(|e| D::Error::custom(format!("{text:?} is not an RFC 3339 time ({e})")))?
            .with_timezone(&Utc);
        if time.nanosecond() >= 1_000_000_000 {
            return Err(D::Error::custom(format!(
                "{text:?} has a leap second (second 60), which is not accepted"
            )));
        }
        if !YEARS.contains(&time.year()) {
            return Err(D::Error::custom(format!(
                "{text:?} is outside the years {} to {}",
                YEARS.start(),
                YEARS.end()
            )));
        }
        Ok(Self(time))
    }
}

fn json_problem(rejection: &JsonRejection) -> ApiError {
    let status = rejection.status();
    let code = match status {
        StatusCode::PAYLOAD_TOO_LARGE => "body_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNPROCESSABLE_ENTITY => "invalid_body",
        _ => "malformed_body",
    };
    // Unknown fields and wrong types are as malformed as broken JSON: 400.
    let status = if status == StatusCode::UNPROCESSABLE_ENTITY {
        StatusCode::BAD_REQUEST
    } else {
        status
    };
    ApiError::new(status, code, rejection.body_text())
}

/// The follow-up id of a path, or a 400.
#[derive(Debug)]
pub struct IdPath(pub FollowUpId);

impl<S: Send + Sync> FromRequestParts<S> for IdPath {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        let Path(params): Path<Vec<(String, String)>> = Path::from_request_parts(parts, state)
            .await
            .map_err(|e: PathRejection| ApiError::bad_request("invalid_path", e.body_text()))?;
        let raw = params
            .iter()
            .find(|(k, _)| k == "id")
            .map(|(_, v)| v.as_str())
            .unwrap_or_default();
        FollowUpId::from_str(raw).map(IdPath).map_err(|_| {
            ApiError::bad_request(
                "invalid_id",
                format!("{raw:?} is not a follow-up id (a UUID)"),
            )
        })
    }
}

fn etag(version: u64) -> String {
    format!("\"{version}\"")
}

/// `If-Match`: `"<version>"` (or `W/"<version>"`) expects that version; `*` or none, any.
fn expectation(headers: &HeaderMap) -> Result<Expect, ApiError> {
    let Some(value) = headers.get(IF_MATCH) else {
        return Ok(Expect::Current);
    };
    let text = value.to_str().unwrap_or_default().trim();
    if text == "*" {
        return Ok(Expect::Current);
    }
    text.trim_start_matches("W/")
        .trim_matches('"')
        .parse::<u64>()
        .map(Expect::Version)
        .map_err(|_| {
            ApiError::bad_request(
                "invalid_if_match",
                format!("If-Match {text:?} is not an ETag this API gave out (\"<version>\")"),
            )
        })
}

fn one(followup: FollowUp, status: StatusCode) -> Response {
    let tag = etag(followup.version);
    (status, [(ETAG, tag)], Json(followup)).into_response()
}

pub(crate) fn context(caller: &Caller) -> Context {
    Context {
        actor: Actor::User {
            id: caller.0.user.clone(),
        },
        now: Utc::now(),
    }
}

pub(crate) fn meta(headers: &HeaderMap) -> CommandMeta {
    let request = headers
        .get("x-correlation-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 100)
        .map_or_else(|| Uuid::new_v4().to_string(), str::to_owned);
    CommandMeta {
        correlation_id: Some(request.clone()),
        causation_id: Some(request),
        idempotency_key: None,
        traceparent: followup_platform::trace::current_traceparent(),
    }
}

/// Runs a command on a follow-up the caller may change, writes the result through to the
/// read model, and answers with the new state.
pub(crate) async fn command(
    state: &AppState,
    caller: &Caller,
    id: FollowUpId,
    headers: &HeaderMap,
    make: impl FnOnce(&FollowUp) -> Result<Command, ApiError>,
) -> Result<Response, ApiError> {
    run_command(state, caller, id, headers, make)
        .await
        .map(|followup| one(followup, StatusCode::OK))
}

/// The same, answering with the follow-up's new state.
pub(crate) async fn run_command(
    state: &AppState,
    caller: &Caller,
    id: FollowUpId,
    headers: &HeaderMap,
    make: impl FnOnce(&FollowUp) -> Result<Command, ApiError>,
) -> Result<FollowUp, ApiError> {
    let expect = expectation(headers)?;
    let current = state
        .followups
        .load(id)
        .await?
        .ok_or_else(|| ApiError::not_found("no such follow-up"))?;
    match access(&current, &caller.0) {
        None => return Err(ApiError::not_found("no such follow-up")),
        Some(Access::Read) => return Err(ApiError::read_only()),
        Some(Access::Write) => {}
    }
    let command = make(&current)?;
    let outcome = state
        .followups
        .execute(id, command, &context(caller), &meta(headers), expect)
        .await?;
    state
        .read_model
        .upsert(std::slice::from_ref(&outcome.state))
        .await?;
    Ok(outcome.state)
}

/// The cursor inside a page cursor the API handed out (see [`crate::auth::Auth::seal_cursor`]),
/// or 400 `bad_cursor` for one it did not (edited, made up, or from another installation).
pub(crate) fn open_cursor<'a>(state: &AppState, sealed: &'a str) -> Result<&'a str, ApiError> {
    state.auth.open_cursor(sealed).ok_or_else(|| {
        ApiError::bad_request(
            "bad_cursor",
            "malformed cursor: pass the next_cursor of the previous page unchanged",
        )
        .at("cursor")
    })
}

pub(crate) fn invalid(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation",
        e.to_string(),
    )
}

pub(crate) fn gdpr_or_invalid(e: &followup_domain::ValidationError) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.code(), e.to_string()).at(e.field())
}

/// `{type, id}` of a user or team.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PrincipalBody {
    /// `user` or `team`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Its id.
    pub id: String,
}

impl PrincipalBody {
    pub(crate) fn parse(&self) -> Result<Principal, ApiError> {
        Principal::from_str(&format!("{}:{}", self.kind, self.id)).map_err(invalid)
    }
}

/// `{type, id}` of what a follow-up is about.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegardingBody {
    /// `student`, `application`, …
    #[serde(rename = "type")]
    pub kind: String,
    /// Its id.
    pub id: String,
}

/// The body of `POST /v1/followups`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    kind: String,
    subject: String,
    description: Option<String>,
    due: Option<ApiTime>,
    priority: Option<String>,
    regarding: Option<RegardingBody>,
    owner: Option<PrincipalBody>,
}

async fn create(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    headers: HeaderMap,
    ApiJson(body): ApiJson<CreateBody>,
) -> Result<Response, ApiError> {
    let kind = Kind::from_str(&body.kind).map_err(invalid)?;
    let new = NewFollowUp {
        id: FollowUpId::new_v4(),
        institution: caller.0.institution.clone(),
        kind,
        subject: Subject::parse(&body.subject).map_err(|e| gdpr_or_invalid(&e))?,
        description: Description::parse(body.description.as_deref().unwrap_or_default())
            .map_err(|e| gdpr_or_invalid(&e))?,
        regarding: match &body.regarding {
            Some(r) => Some(Regarding::parse(&r.kind, &r.id).map_err(invalid)?),
            None => None,
        },
        person: None,
        owner: match &body.owner {
            Some(owner) => owner.parse()?,
            None => Principal::User(caller.0.user.clone()),
        },
        due: body.due.map(|t| t.0),
        priority: match &body.priority {
            Some(p) => Priority::from_str(p).map_err(invalid)?,
            None => Priority::default(),
        },
        source: Source::User {
            id: caller.0.user.clone(),
        },
    };
    crate::directory::check_principal(&state, &caller.0, &new.owner, "owner").await?;
    let id = new.id;
    let outcome = state
        .followups
        .execute(
            id,
            Command::Create(new),
            &context(&caller),
            &meta(&headers),
            Expect::Current,
        )
        .await?;
    state
        .read_model
        .upsert(std::slice::from_ref(&outcome.state))
        .await?;
    let mut response = one(outcome.state, StatusCode::CREATED);
    let location = format!("/v1/followups/{id}")
        .parse()
        .expect("a valid header value");
    response.headers_mut().insert(LOCATION, location);
    Ok(response)
}

/// The query string of `GET /v1/followups`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    kind: Option<String>,
    status: Option<String>,
    owner: Option<String>,
    regarding: Option<String>,
    overdue: Option<bool>,
    due_before: Option<ApiTime>,
    q: Option<String>,
    cursor: Option<String>,
    limit: Option<u32>,
}

/// The largest page.
const MAX_LIMIT: u32 = 200;

async fn list(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(p) = params.map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))?;
    let bad = |name: &str, e: &dyn std::fmt::Display| {
        ApiError::bad_request("invalid_query", format!("`{name}`: {e}"))
    };
    let mut query = ListQuery::new(Utc::now());
    query.kind = p
        .kind
        .as_deref()
        .map(Kind::from_str)
        .transpose()
        .map_err(|e| bad("kind", &e))?;
    query.status = p
        .status
        .as_deref()
        .map(Status::from_str)
        .transpose()
        .map_err(|e| bad("status", &e))?;
    query.owner = match p.owner.as_deref() {
        None => None,
        Some("me") => Some(OwnerFilter::Me),
        Some("mine") => Some(OwnerFilter::Mine),
        Some(other) => Some(OwnerFilter::Principal(
            Principal::from_str(other).map_err(|e| bad("owner", &e))?,
        )),
    };
    query.regarding = p
        .regarding
        .as_deref()
        .map(Regarding::from_str)
        .transpose()
        .map_err(|e| bad("regarding", &e))?;
    query.overdue = p.overdue;
    query.due_before = p.due_before.map(|t| t.0);
    query.q = p.q.filter(|q| !q.trim().is_empty());
    query.cursor = p
        .cursor
        .as_deref()
        .map(|sealed| Cursor::from_str(open_cursor(&state, sealed)?).map_err(ApiError::from))
        .transpose()?;
    query.limit = p.limit.unwrap_or(50).clamp(1, MAX_LIMIT);
    let page = state.read_model.list(&caller.0, &query).await?;
    Ok(
        Json(
            json!({ "items": page.items, "next_cursor": page.next_cursor.map(|c| state.auth.seal_cursor(&c.to_string())) }),
        )
        .into_response(),
    )
}

async fn show(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    IdPath(id): IdPath,
) -> Result<Response, ApiError> {
    let followup = state
        .read_model
        .get(&caller.0, id)
        .await?
        .ok_or_else(|| ApiError::not_found("no such follow-up"))?;
    Ok(one(followup, StatusCode::OK))
}

/// Tells an absent field (`None`) from an explicit `null` (`Some(None)`).
fn double_option<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// The body of `PATCH /v1/followups/{id}`: the fields to change.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EditBody {
    subject: Option<String>,
    description: Option<String>,
    #[serde(default, deserialize_with = "double_option")]
    due: Option<Option<ApiTime>>,
    priority: Option<String>,
    status_reason: Option<String>,
}

async fn edit(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    IdPath(id): IdPath,
    headers: HeaderMap,
    ApiJson(body): ApiJson<EditBody>,
) -> Result<Response, ApiError> {
    let edit = Edit {
        subject: body
            .subject
            .as_deref()
            .map(Subject::parse)
            .transpose()
            .map_err(|e| gdpr_or_invalid(&e))?,
        description: body
            .description
            .as_deref()
            .map(Description::parse)
            .transpose()
            .map_err(|e| gdpr_or_invalid(&e))?,
        due: body.due.map(|d| d.map(|t| t.0)),
        priority: body
            .priority
            .as_deref()
            .map(Priority::from_str)
            .transpose()
            .map_err(invalid)?,
        status_reason: body
            .status_reason
            .as_deref()
            .map(StatusReason::from_str)
            .transpose()
            .map_err(invalid)?,
    };
    command(&state, &caller, id, &headers, |_| Ok(Command::Edit(edit))).await
}

/// The body of `POST …/notes`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoteBody {
    text: String,
}

/// A follow-up's notes, oldest first.
async fn notes(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    IdPath(id): IdPath,
) -> Result<Response, ApiError> {
    let followup = state
        .read_model
        .get(&caller.0, id)
        .await?
        .ok_or_else(|| ApiError::not_found("no such follow-up"))?;
    Ok(Json(json!({ "items": followup.notes })).into_response())
}

/// Adds a note, written by the caller (who may change the follow-up); 201 with the note.
async fn add_note(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    IdPath(id): IdPath,
    headers: HeaderMap,
    ApiJson(body): ApiJson<NoteBody>,
) -> Result<Response, ApiError> {
    let text = NoteText::parse(&body.text).map_err(|e| gdpr_or_invalid(&e))?;
    let note_id = Uuid::new_v4();
    let followup = run_command(&state, &caller, id, &headers, |_| {
        Ok(Command::AddNote { id: note_id, text })
    })
    .await?;
    let note = followup
        .notes
        .iter()
        .find(|note| note.id == note_id)
        .ok_or_else(|| ApiError::internal("the note added is not in the follow-up"))?;
    Ok((StatusCode::CREATED, Json(note)).into_response())
}

/// The body of `POST …/assign`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssignBody {
    owner: PrincipalBody,
}

async fn assign(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    IdPath(id): IdPath,
    headers: HeaderMap,
    ApiJson(body): ApiJson<AssignBody>,
) -> Result<Response, ApiError> {
    let owner = body.owner.parse()?;
    crate::directory::check_principal(&state, &caller.0, &owner, "owner").await?;
    command(&state, &caller, id, &headers, |_| {
        Ok(Command::Assign { owner })
    })
    .await
}

/// The body of `POST …/shares`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShareBody {
    principal: PrincipalBody,
    access: String,
}

async fn share(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    IdPath(id): IdPath,
    headers: HeaderMap,
    ApiJson(body): ApiJson<ShareBody>,
) -> Result<Response, ApiError> {
    let principal = body.principal.parse()?;
    let access = Access::from_str(&body.access).map_err(invalid)?;
    crate::directory::check_principal(&state, &caller.0, &principal, "principal").await?;
    command(&state, &caller, id, &headers, |_| {
        Ok(Command::Share { principal, access })
    })
    .await
}

async fn unshare(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    IdPath(id): IdPath,
    Path((_, principal)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let principal = Principal::from_str(&principal).map_err(|e| {
        ApiError::bad_request(
            "invalid_path",
            format!("{principal:?} is not user:<id> or team:<id>: {e}"),
        )
    })?;
    command(&state, &caller, id, &headers, |_| {
        Ok(Command::Unshare { principal })
    })
    .await
}

async fn complete(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    IdPath(id): IdPath,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    command(&state, &caller, id, &headers, |_| Ok(Command::Complete)).await
}

async fn close(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    IdPath(id): IdPath,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    command(&state, &caller, id, &headers, |_| Ok(Command::Close)).await
}

async fn history(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    IdPath(id): IdPath,
) -> Result<Response, ApiError> {
    let (current, events) = state.followups.load_with_events(id).await?;
    let current = current.ok_or_else(|| ApiError::not_found("no such follow-up"))?;
    if access(&current, &caller.0).is_none() {
        return Err(ApiError::not_found("no such follow-up"));
    }
    // Who read or dismissed a notification is each user's own business: the caller sees only
    // its own `read` and `dismissed` events.
    let own_inbox_event = |e: &followup_store::RecordedEvent| {
        !matches!(e.event_type.as_str(), "read" | "dismissed")
            || e.payload["user"].as_str() == Some(caller.0.user.as_str())
    };
    // Each event with what it changed: the state before and after it, folded as the store does.
    let mut before: Option<FollowUp> = None;
    let mut items: Vec<Value> = Vec::with_capacity(events.len());
    for e in events {
        let after = followup_store::executor::fold::<FollowUp>(
            id,
            before.clone(),
            std::slice::from_ref(&e),
        )
        .map_err(ApiError::internal)?;
        let changes = followup_domain::followup::changes(before.as_ref(), after.as_ref());
        before = after;
        if !own_inbox_event(&e) {
            continue;
        }
        let mut data = e.payload;
        if let Some(fields) = data.as_object_mut() {
            fields.remove("type");
        }
        items.push(json!({
            "type": e.event_type,
            "version": e.version,
            "actor": e.metadata.actor,
            "at": e.recorded_at,
            "correlation_id": e.metadata.correlation_id,
            "data": data,
            "changes": changes,
        }));
    }
    Ok(Json(json!({ "items": items })).into_response())
}

/// Who the caller is: what the web inbox needs to know of its user, whichever claims its
/// identity provider uses.
async fn me(caller: Caller) -> Response {
    let viewer = caller.0;
    Json(json!({
        "user": viewer.user.as_str(),
        "institution": viewer.institution.as_str(),
        "teams": viewer.teams.iter().map(|t| t.as_str()).collect::<Vec<_>>(),
        "admin": viewer.admin,
    }))
    .into_response()
}

async fn dashboard(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> Result<Response, ApiError> {
    let dashboard = state.read_model.dashboard(&caller.0, Utc::now()).await?;
    Ok(Json(dashboard).into_response())
}
