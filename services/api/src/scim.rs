//! SCIM 2.0 (RFC 7643, RFC 7644) at `/scim/v2`: the institution's identity provider
//! provisions the directory's users and groups (teams) here. Each bearer token
//! (`FOLLOWUP_SCIM_TOKENS`) is bound to one institution, and sees and changes only its
//! directory.
//!
//! Supported: `Users` and `Groups` with create (POST), read, replace (PUT), PATCH (`add`,
//! `replace`, `remove`; group members added and removed by value), DELETE; `filter` with
//! `eq` on `userName`, `externalId`, `displayName` and `id`; `startIndex`/`count`
//! pagination; `excludedAttributes=members`; `ServiceProviderConfig`, `Schemas`,
//! `ResourceTypes`; errors as SCIM error documents with `scimType`. Not supported (the
//! service provider configuration says so): bulk, sorting, ETags, password changes.
//!
//! Every change is a command on a directory user or team (an aggregate with its own events),
//! written through to the directory's tables.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, LOCATION};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use chrono::Utc;
use followup_domain::directory::{
    optional_text, DirectoryError, DirectoryId, DirectoryTeam, DirectoryUser, Origin,
    TeamAttributes, TeamCommand, UserAttributes, UserCommand,
};
use followup_domain::{Actor, Context, InstitutionId, UserId};
use followup_readmodel::directory::{TeamFilter, TeamRow, UserFilter, UserRow};
use followup_store::{CommandMeta, ExecuteError, Expect};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::AppState;

const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
const LIST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
const PATCH_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// The most resources one page lists.
const MAX_COUNT: i64 = 200;

/// The SCIM bearer tokens, each bound to one institution (only their SHA-256 is kept).
#[derive(Clone, Default)]
pub struct ScimTokens {
    /// Institution by the token's digest.
    by_digest: HashMap<[u8; 32], InstitutionId>,
}

impl std::fmt::Debug for ScimTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ScimTokens({} tokens)", self.by_digest.len())
    }
}

impl ScimTokens {
    /// The tokens of `pairs` (institution, token).
    pub fn new(pairs: &[(InstitutionId, String)]) -> Self {
        Self {
            by_digest: pairs
                .iter()
                .map(|(inst, token)| (digest(token), inst.clone()))
                .collect(),
        }
    }

    /// True when no token is configured: SCIM is off.
    pub fn is_empty(&self) -> bool {
        self.by_digest.is_empty()
    }

    fn institution(&self, token: &str) -> Option<&InstitutionId> {
        self.by_digest.get(&digest(token))
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The routes under `/scim/v2`.
pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/scim/v2/Users", get(list_users).post(create_user))
        .route(
            "/scim/v2/Users/{id}",
            get(show_user)
                .put(replace_user)
                .patch(patch_user)
                .delete(delete_user),
        )
        .route("/scim/v2/Groups", get(list_groups).post(create_group))
        .route(
            "/scim/v2/Groups/{id}",
            get(show_group)
                .put(replace_group)
                .patch(patch_group)
                .delete(delete_group),
        )
        .route(
            "/scim/v2/ServiceProviderConfig",
            get(service_provider_config),
        )
        .route("/scim/v2/ResourceTypes", get(resource_types))
        .route("/scim/v2/Schemas", get(schemas))
}

/// A SCIM error document (RFC 7644 section 3.12).
#[derive(Debug)]
pub struct ScimError {
    status: StatusCode,
    scim_type: Option<&'static str>,
    detail: String,
}

impl ScimError {
    fn new(status: StatusCode, scim_type: Option<&'static str>, detail: impl Into<String>) -> Self {
        Self {
            status,
            scim_type,
            detail: detail.into(),
        }
    }

    fn bad(scim_type: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, Some(scim_type), detail)
    }

    fn not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            None,
            "no such resource in this directory",
        )
    }
}

impl IntoResponse for ScimError {
    fn into_response(self) -> Response {
        let mut body = json!({
            "schemas": [ERROR_SCHEMA],
            "status": self.status.as_u16().to_string(),
            "detail": self.detail,
        });
        if let Some(scim_type) = self.scim_type {
            body["scimType"] = json!(scim_type);
        }
        scim(self.status, body)
    }
}

impl From<followup_readmodel::ReadError> for ScimError {
    fn from(error: followup_readmodel::ReadError) -> Self {
        crate::ApiError::from(error).into()
    }
}

impl From<crate::ApiError> for ScimError {
    fn from(error: crate::ApiError) -> Self {
        Self::new(error.status, None, error.detail)
    }
}

fn from_execute<A: followup_domain::Aggregate<Error = DirectoryError>>(
    error: ExecuteError<A>,
) -> ScimError {
    match error {
        ExecuteError::Domain(DirectoryError::NotFound) => ScimError::not_found(),
        ExecuteError::Domain(DirectoryError::AlreadyExists { .. }) => ScimError::new(
            StatusCode::CONFLICT,
            Some("uniqueness"),
            "a resource with this id exists already",
        ),
        ExecuteError::VersionMismatch { .. } | ExecuteError::Contended { .. } => ScimError::new(
            StatusCode::CONFLICT,
            None,
            "changed concurrently; try again",
        ),
        other if other.is_transient() => ScimError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            None,
            "the directory is unavailable; try again shortly",
        ),
        other => crate::ApiError::internal(other).into(),
    }
}

fn scim(status: StatusCode, body: Value) -> Response {
    // The header wins over the one `Json` sets.
    (
        status,
        [(CONTENT_TYPE, "application/scim+json")],
        axum::Json(body),
    )
        .into_response()
}

/// The institution whose SCIM token the request carries.
#[derive(Debug)]
pub struct ScimCaller(InstitutionId);

impl FromRequestParts<Arc<AppState>> for ScimCaller {
    type Rejection = ScimError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let token = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|h| h.trim_start().split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim());
        match token.and_then(|t| state.scim_tokens.institution(t)) {
            Some(institution) => Ok(Self(institution.clone())),
            None => Err(ScimError::new(
                StatusCode::UNAUTHORIZED,
                None,
                "send Authorization: Bearer <the institution's SCIM token> (FOLLOWUP_SCIM_TOKENS)",
            )),
        }
    }
}

fn context() -> Context {
    Context {
        actor: Actor::System,
        now: Utc::now(),
    }
}

fn meta() -> CommandMeta {
    let id = uuid::Uuid::new_v4().to_string();
    CommandMeta {
        correlation_id: Some(id.clone()),
        causation_id: Some(id),
        idempotency_key: None,
        traceparent: followup_platform::trace::current_traceparent(),
    }
}

/// The JSON object of a request body.
fn object(body: &Bytes) -> Result<Map<String, Value>, ScimError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ScimError::bad("invalidSyntax", format!("the body is not JSON: {e}")))?;
    if let Some(field) = followup_domain::screen::first_unstorable(&value) {
        return Err(ScimError::bad(
            "invalidValue",
            format!("{field} holds the NUL character"),
        ));
    }
    match value {
        Value::Object(map) => Ok(map),
        _ => Err(ScimError::bad(
            "invalidSyntax",
            "the body must be a JSON object",
        )),
    }
}

/// The value of attribute `name` of `map`, matched case-insensitively (attribute names are,
/// RFC 7643 section 2.1).
fn attribute<'a>(map: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    map.iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| value)
}

fn text_of<'a>(map: &'a Map<String, Value>, name: &str) -> Result<Option<&'a str>, ScimError> {
    match attribute(map, name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ScimError::bad(
            "invalidValue",
            format!("{name} must be a string"),
        )),
    }
}

fn checked(field: &'static str, text: Option<&str>) -> Result<Option<String>, ScimError> {
    optional_text(field, text).map_err(|e| ScimError::bad("invalidValue", e.to_string()))
}

/// A boolean, also as the strings "True" and "False" that some providers send.
fn boolean(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
}

/// The user attributes of a SCIM User resource.
fn user_attributes(map: &Map<String, Value>) -> Result<UserAttributes, ScimError> {
    let user_name = text_of(map, "userName")?
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .ok_or_else(|| ScimError::bad("invalidValue", "userName is required"))?;
    let user_name = UserId::parse(user_name)
        .map_err(|e| ScimError::bad("invalidValue", format!("userName: {e}")))?;
    if followup_domain::screen::holds_cpr(user_name.as_str()) {
        return Err(ScimError::bad(
            "invalidValue",
            "userName holds a CPR number",
        ));
    }
    let name = attribute(map, "name").and_then(Value::as_object);
    let formatted = name
        .and_then(|n| attribute(n, "formatted"))
        .and_then(Value::as_str);
    let given_family = name.map(|n| {
        ["givenName", "familyName"]
            .iter()
            .filter_map(|k| attribute(n, k).and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(" ")
    });
    let display_name = text_of(map, "displayName")?
        .or(formatted)
        .or(given_family.as_deref().filter(|n| !n.trim().is_empty()));
    let email = match attribute(map, "emails") {
        Some(Value::Array(emails)) => emails
            .iter()
            .find(|e| e.get("primary").and_then(boolean) == Some(true))
            .or_else(|| emails.first())
            .and_then(|e| e.get("value"))
            .and_then(Value::as_str),
        _ => None,
    };
    let active = match attribute(map, "active") {
        None | Some(Value::Null) => true,
        Some(value) => boolean(value)
            .ok_or_else(|| ScimError::bad("invalidValue", "active must be true or false"))?,
    };
    Ok(UserAttributes {
        user_name,
        display_name: checked("displayName", display_name)?,
        email: checked("emails", email)?,
        external_id: checked("externalId", text_of(map, "externalId")?)?,
        active,
    })
}

/// The location of a resource.
fn location(kind: &str, id: DirectoryId) -> String {
    format!("/scim/v2/{kind}/{id}")
}

/// A user as a SCIM User resource.
fn user_resource(row: &UserRow) -> Value {
    let mut resource = json!({
        "schemas": [USER_SCHEMA],
        "id": row.id.to_string(),
        "userName": row.user_name,
        "active": row.active,
        "meta": {
            "resourceType": "User",
            "created": row.created_at,
            "lastModified": row.updated_at,
            "location": location("Users", DirectoryId(row.id)),
            "version": format!("W/\"{}\"", row.version),
        },
    });
    if let Some(name) = &row.display_name {
        resource["displayName"] = json!(name);
        resource["name"] = json!({ "formatted": name });
    }
    if let Some(email) = &row.email {
        resource["emails"] = json!([{ "value": email, "type": "work", "primary": true }]);
    }
    if let Some(external) = &row.external_id {
        resource["externalId"] = json!(external);
    }
    resource
}

/// A team as a SCIM Group resource, with its members unless `with_members` is false.
fn group_resource(row: &TeamRow, with_members: bool) -> Value {
    let mut resource = json!({
        "schemas": [GROUP_SCHEMA],
        "id": row.id.to_string(),
        "displayName": row.display_name,
        "meta": {
            "resourceType": "Group",
            "created": row.created_at,
            "lastModified": row.updated_at,
            "location": location("Groups", DirectoryId(row.id)),
            "version": format!("W/\"{}\"", row.version),
        },
    });
    if let Some(external) = &row.external_id {
        resource["externalId"] = json!(external);
    }
    if with_members {
        resource["members"] = row
            .members
            .iter()
            .map(|m| {
                json!({ "value": m.id.to_string(), "type": "User",
                        "$ref": location("Users", DirectoryId(m.id)),
                        "display": m.display_name.clone().unwrap_or_else(|| m.user_name.clone()) })
            })
            .collect();
    }
    resource
}

/// Query parameters of a list.
#[derive(Debug, Deserialize)]
pub struct ListParams {
    filter: Option<String>,
    #[serde(rename = "startIndex")]
    start_index: Option<String>,
    count: Option<String>,
    #[serde(rename = "excludedAttributes")]
    excluded_attributes: Option<String>,
}

impl ListParams {
    /// False when `excludedAttributes` names `members`.
    fn with_members(&self) -> bool {
        !self.excluded_attributes.as_deref().is_some_and(|e| {
            e.split(',')
                .any(|a| a.trim().eq_ignore_ascii_case("members"))
        })
    }

    /// `(offset, limit, start index)` from `startIndex` (1-based) and `count`.
    fn page(&self) -> Result<(i64, i64, i64), ScimError> {
        let number = |name: &str, value: &Option<String>, default: i64| match value {
            None => Ok(default),
            Some(v) => v.trim().parse::<i64>().map_err(|_| {
                ScimError::bad("invalidValue", format!("{name} must be a whole number"))
            }),
        };
        let start = number("startIndex", &self.start_index, 1)?.max(1);
        let count = number("count", &self.count, 100)?.clamp(0, MAX_COUNT);
        Ok((start - 1, count, start))
    }

    /// The one `attribute eq "value"` of the filter, if any.
    fn equality(&self, allowed: &[&str]) -> Result<Option<(String, String)>, ScimError> {
        let Some(filter) = self
            .filter
            .as_deref()
            .map(str::trim)
            .filter(|f| !f.is_empty())
        else {
            return Ok(None);
        };
        let unsupported = || {
            ScimError::bad(
                "invalidFilter",
                format!(
                    "only `<attribute> eq \"<value>\"` is supported, on {}",
                    allowed.join(", ")
                ),
            )
        };
        let (attribute, rest) = filter
            .split_once(char::is_whitespace)
            .ok_or_else(unsupported)?;
        let (operator, value) = rest
            .trim_start()
            .split_once(char::is_whitespace)
            .ok_or_else(unsupported)?;
        let value = value.trim();
        if !operator.eq_ignore_ascii_case("eq")
            || !value.starts_with('"')
            || !value.ends_with('"')
            || value.len() < 2
        {
            return Err(unsupported());
        }
        let value: String = serde_json::from_str(value).map_err(|_| unsupported())?;
        let attribute = allowed
            .iter()
            .find(|a| a.eq_ignore_ascii_case(attribute))
            .ok_or_else(unsupported)?;
        Ok(Some(((*attribute).to_owned(), value)))
    }
}

fn list_response(resources: Vec<Value>, total: i64, start: i64) -> Response {
    scim(
        StatusCode::OK,
        json!({
            "schemas": [LIST_SCHEMA],
            "totalResults": total,
            "startIndex": start,
            "itemsPerPage": resources.len(),
            "Resources": Value::Array(resources),
        }),
    )
}

async fn load_user(
    state: &AppState,
    institution: &InstitutionId,
    id: &str,
) -> Result<DirectoryUser, ScimError> {
    let id = DirectoryId::parse(id).map_err(|_| ScimError::not_found())?;
    match state.directory_users.load(id).await.map_err(from_execute)? {
        Some(user)
            if user.institution == *institution && !user.deleted && user.origin == Origin::Scim =>
        {
            Ok(user)
        }
        _ => Err(ScimError::not_found()),
    }
}

async fn list_users(
    State(state): State<Arc<AppState>>,
    ScimCaller(institution): ScimCaller,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Response, ScimError> {
    let Query(params) = params.map_err(|e| ScimError::bad("invalidValue", e.body_text()))?;
    let (offset, limit, start) = params.page()?;
    let mut filter = UserFilter {
        scim_only: true,
        ..UserFilter::default()
    };
    match params.equality(&["userName", "externalId", "id"])? {
        Some((attribute, value)) if attribute == "id" => {
            let found = load_user(&state, &institution, &value).await.ok();
            let resources: Vec<Value> = found
                .iter()
                .map(|u| user_resource(&UserRow::from(u)))
                .collect();
            let total = resources.len() as i64;
            return Ok(list_response(resources, total, start));
        }
        Some((attribute, value)) if attribute == "userName" => filter.user_name = Some(value),
        Some((_, value)) => filter.external_id = Some(value),
        None => {}
    }
    let (rows, total) = state
        .read_model
        .directory_users(&institution, &filter, offset, limit)
        .await?;
    let resources = rows.iter().map(user_resource).collect();
    Ok(list_response(resources, total, start))
}

/// Refuses `attributes` when another user of the institution has its user name.
async fn unique_user_name(
    state: &AppState,
    institution: &InstitutionId,
    attributes: &UserAttributes,
    except: Option<DirectoryId>,
) -> Result<(), ScimError> {
    let filter = UserFilter {
        user_name: Some(attributes.user_name.as_str().to_owned()),
        scim_only: true,
        ..UserFilter::default()
    };
    let (rows, _) = state
        .read_model
        .directory_users(institution, &filter, 0, 2)
        .await?;
    if rows.iter().any(|row| Some(DirectoryId(row.id)) != except) {
        return Err(ScimError::new(
            StatusCode::CONFLICT,
            Some("uniqueness"),
            "another user of this directory has this userName",
        ));
    }
    Ok(())
}

async fn create_user(
    State(state): State<Arc<AppState>>,
    ScimCaller(institution): ScimCaller,
    body: Bytes,
) -> Result<Response, ScimError> {
    let attributes = user_attributes(&object(&body)?)?;
    unique_user_name(&state, &institution, &attributes, None).await?;
    let id = DirectoryId::new_v4();
    let command = UserCommand::Provision {
        id,
        institution,
        origin: Origin::Scim,
        attributes,
    };
    let user = run_user(&state, id, command).await?;
    let mut response = scim(StatusCode::CREATED, user_resource(&UserRow::from(&user)));
    if let Ok(value) = location("Users", id).parse() {
        response.headers_mut().insert(LOCATION, value);
    }
    Ok(response)
}

async fn run_user(
    state: &AppState,
    id: DirectoryId,
    command: UserCommand,
) -> Result<DirectoryUser, ScimError> {
    let outcome = state
        .directory_users
        .execute(id, command, &context(), &meta(), Expect::Current)
        .await
        .map_err(from_execute)?;
    state
        .read_model
        .write_directory(std::slice::from_ref(&outcome.state), &[])
        .await?;
    Ok(outcome.state)
}

async fn show_user(
    State(state): State<Arc<AppState>>,
    ScimCaller(institution): ScimCaller,
    Path(id): Path<String>,
) -> Result<Response, ScimError> {
    let user = load_user(&state, &institution, &id).await?;
    Ok(scim(StatusCode::OK, user_resource(&UserRow::from(&user))))
}

async fn replace_user(
    State(state): State<Arc<AppState>>,
    ScimCaller(institution): ScimCaller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ScimError> {
    let user = load_user(&state, &institution, &id).await?;
    let attributes = user_attributes(&object(&body)?)?;
    unique_user_name(&state, &institution, &attributes, Some(user.id)).await?;
    let user = run_user(&state, user.id, UserCommand::Replace(attributes)).await?;
    Ok(scim(StatusCode::OK, user_resource(&UserRow::from(&user))))
}

/// One operation of a PATCH request.
#[derive(Debug)]
struct Operation {
    op: String,
    path: Option<String>,
    value: Option<Value>,
}

fn operations(body: &Bytes) -> Result<Vec<Operation>, ScimError> {
    let map = object(body)?;
    let schemas = attribute(&map, "schemas").and_then(Value::as_array);
    if !schemas.is_some_and(|s| s.iter().any(|v| v == PATCH_SCHEMA)) {
        return Err(ScimError::bad(
            "invalidSyntax",
            format!("a PATCH body names the schema {PATCH_SCHEMA}"),
        ));
    }
    let Some(Value::Array(items)) = attribute(&map, "Operations") else {
        return Err(ScimError::bad("invalidSyntax", "Operations must be a list"));
    };
    items
        .iter()
        .map(|item| {
            let item = item
                .as_object()
                .ok_or_else(|| ScimError::bad("invalidSyntax", "each operation is an object"))?;
            let op = text_of(item, "op")?
                .map(str::to_ascii_lowercase)
                .filter(|op| ["add", "replace", "remove"].contains(&op.as_str()))
                .ok_or_else(|| {
                    ScimError::bad("invalidSyntax", "op must be add, replace or remove")
                })?;
            Ok(Operation {
                op,
                path: text_of(item, "path")?.map(str::to_owned),
                value: attribute(item, "value").cloned(),
            })
        })
        .collect()
}

/// Applies `operations` to the user resource `resource` (its attributes, as JSON).
fn patch_user_resource(
    resource: &mut Map<String, Value>,
    operations: Vec<Operation>,
) -> Result<(), ScimError> {
    for operation in operations {
        match (operation.op.as_str(), operation.path) {
            ("remove", None) => {
                return Err(ScimError::bad("noTarget", "remove needs a path"));
            }
            ("remove", Some(path)) => {
                remove_attribute(resource, &path);
            }
            (_, None) => {
                let Some(Value::Object(values)) = operation.value else {
                    return Err(ScimError::bad(
                        "invalidValue",
                        "without a path, value is an object of attributes",
                    ));
                };
                for (key, value) in values {
                    set_attribute(resource, &key, value);
                }
            }
            (_, Some(path)) => {
                let value = operation.value.ok_or_else(|| {
                    ScimError::bad("invalidValue", format!("{path} needs a value"))
                })?;
                set_attribute(resource, &path, value);
            }
        }
    }
    Ok(())
}

/// Sets attribute `path` (`active`, `name.givenName`, `emails[type eq "work"].value`).
fn set_attribute(resource: &mut Map<String, Value>, path: &str, value: Value) {
    let path = path
        .strip_prefix(USER_SCHEMA)
        .map_or(path, |p| p.trim_start_matches(':'));
    if let Some(rest) = path.strip_prefix("emails") {
        // Any e-mail filter or sub-attribute: the one e-mail the directory keeps.
        let email = match (&value, rest.ends_with(".value")) {
            (Value::String(s), _) => json!([{ "value": s, "primary": true }]),
            (Value::Array(_), false) => value,
            _ => return,
        };
        resource.insert("emails".into(), email);
        return;
    }
    match path.split_once('.') {
        Some((parent, child)) => {
            let entry = resource
                .entry(parent.to_owned())
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(inner) = entry {
                inner.insert(child.to_owned(), value);
            }
        }
        None => {
            let key = resource
                .keys()
                .find(|k| k.eq_ignore_ascii_case(path))
                .cloned()
                .unwrap_or_else(|| path.to_owned());
            resource.insert(key, value);
        }
    }
}

fn remove_attribute(resource: &mut Map<String, Value>, path: &str) {
    let path = path
        .strip_prefix(USER_SCHEMA)
        .map_or(path, |p| p.trim_start_matches(':'));
    let top = path.split(['.', '[']).next().unwrap_or(path);
    resource.retain(|key, _| !key.eq_ignore_ascii_case(top));
}

async fn patch_user(
    State(state): State<Arc<AppState>>,
    ScimCaller(institution): ScimCaller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ScimError> {
    let user = load_user(&state, &institution, &id).await?;
    let operations = operations(&body)?;
    let Value::Object(mut resource) = user_resource(&UserRow::from(&user)) else {
        unreachable!("a resource is an object");
    };
    // `displayName` is the one name kept: drop the derived `name` so a change to either wins.
    if operations.iter().any(|o| {
        o.path
            .as_deref()
            .is_some_and(|p| p.eq_ignore_ascii_case("displayName"))
    }) {
        resource.remove("name");
    }
    if operations
        .iter()
        .any(|o| o.path.as_deref().is_some_and(|p| p.starts_with("name")))
    {
        resource.remove("displayName");
    }
    patch_user_resource(&mut resource, operations)?;
    let attributes = user_attributes(&resource)?;
    unique_user_name(&state, &institution, &attributes, Some(user.id)).await?;
    let user = run_user(&state, user.id, UserCommand::Replace(attributes)).await?;
    Ok(scim(StatusCode::OK, user_resource(&UserRow::from(&user))))
}

async fn delete_user(
    State(state): State<Arc<AppState>>,
    ScimCaller(institution): ScimCaller,
    Path(id): Path<String>,
) -> Result<Response, ScimError> {
    let user = load_user(&state, &institution, &id).await?;
    run_user(&state, user.id, UserCommand::Delete).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---- groups ----------------------------------------------------------------------------

async fn load_team(
    state: &AppState,
    institution: &InstitutionId,
    id: &str,
) -> Result<DirectoryTeam, ScimError> {
    let id = DirectoryId::parse(id).map_err(|_| ScimError::not_found())?;
    match state.directory_teams.load(id).await.map_err(from_execute)? {
        Some(team)
            if team.institution == *institution && !team.deleted && team.origin == Origin::Scim =>
        {
            Ok(team)
        }
        _ => Err(ScimError::not_found()),
    }
}

/// The members named by `value` (a list of `{"value": "<user id>"}`), each a user of
/// `institution`'s directory.
async fn members_of(
    state: &AppState,
    institution: &InstitutionId,
    value: Option<&Value>,
) -> Result<BTreeSet<DirectoryId>, ScimError> {
    let items = match value {
        None | Some(Value::Null) => return Ok(BTreeSet::new()),
        Some(Value::Array(items)) => items.clone(),
        Some(one @ Value::Object(_)) => vec![one.clone()],
        Some(_) => return Err(ScimError::bad("invalidValue", "members must be a list")),
    };
    let mut members = BTreeSet::new();
    for item in items {
        let id = item.get("value").and_then(Value::as_str).ok_or_else(|| {
            ScimError::bad("invalidValue", "each member has a value (a user's id)")
        })?;
        let user = load_user(state, institution, id).await.map_err(|_| {
            ScimError::bad(
                "invalidValue",
                format!("member {id} is not a user of this directory"),
            )
        })?;
        members.insert(user.id);
    }
    Ok(members)
}

fn team_attributes(map: &Map<String, Value>) -> Result<TeamAttributes, ScimError> {
    let display_name = checked("displayName", text_of(map, "displayName")?)?
        .ok_or_else(|| ScimError::bad("invalidValue", "displayName is required"))?;
    let external_id = checked("externalId", text_of(map, "externalId")?)?;
    if let Some(external) = &external_id {
        followup_domain::TeamId::parse(external).map_err(|e| {
            ScimError::bad(
                "invalidValue",
                format!("externalId is the team's id in the service: {e}"),
            )
        })?;
    }
    Ok(TeamAttributes {
        display_name,
        external_id,
    })
}

/// The Group resource of `team` as the directory's tables now have it (its members with
/// their names, in one query).
async fn team_resource(
    state: &AppState,
    team: &DirectoryTeam,
    with_members: bool,
) -> Result<Value, ScimError> {
    let filter = TeamFilter {
        id: Some(team.id.0),
        ..TeamFilter::default()
    };
    let (rows, _) = state
        .read_model
        .directory_teams(&team.institution, &filter, 0, 1)
        .await?;
    let row = rows.first().ok_or_else(ScimError::not_found)?;
    Ok(group_resource(row, with_members))
}

async fn run_team(
    state: &AppState,
    id: DirectoryId,
    command: TeamCommand,
) -> Result<DirectoryTeam, ScimError> {
    let outcome = state
        .directory_teams
        .execute(id, command, &context(), &meta(), Expect::Current)
        .await
        .map_err(from_execute)?;
    state
        .read_model
        .write_directory(&[], std::slice::from_ref(&outcome.state))
        .await?;
    Ok(outcome.state)
}

async fn list_groups(
    State(state): State<Arc<AppState>>,
    ScimCaller(institution): ScimCaller,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Response, ScimError> {
    let Query(params) = params.map_err(|e| ScimError::bad("invalidValue", e.body_text()))?;
    let (offset, limit, start) = params.page()?;
    let with_members = params.with_members();
    let mut filter = TeamFilter {
        scim_only: true,
        ..TeamFilter::default()
    };
    match params.equality(&["displayName", "externalId", "id"])? {
        Some((attribute, value)) if attribute == "id" => {
            let mut resources = Vec::new();
            if let Ok(team) = load_team(&state, &institution, &value).await {
                resources.push(team_resource(&state, &team, with_members).await?);
            }
            let total = resources.len() as i64;
            return Ok(list_response(resources, total, start));
        }
        Some((attribute, value)) if attribute == "displayName" => filter.display_name = Some(value),
        Some((_, value)) => filter.external_id = Some(value),
        None => {}
    }
    let (rows, total) = state
        .read_model
        .directory_teams(&institution, &filter, offset, limit)
        .await?;
    let resources = rows
        .iter()
        .map(|row| group_resource(row, with_members))
        .collect();
    Ok(list_response(resources, total, start))
}

async fn create_group(
    State(state): State<Arc<AppState>>,
    ScimCaller(institution): ScimCaller,
    body: Bytes,
) -> Result<Response, ScimError> {
    let map = object(&body)?;
    let attributes = team_attributes(&map)?;
    let members = members_of(&state, &institution, attribute(&map, "members")).await?;
    let id = DirectoryId::new_v4();
    let command = TeamCommand::Provision {
        id,
        institution,
        origin: Origin::Scim,
        attributes,
        members,
    };
    let team = run_team(&state, id, command).await?;
    let mut response = scim(
        StatusCode::CREATED,
        team_resource(&state, &team, true).await?,
    );
    if let Ok(value) = location("Groups", id).parse() {
        response.headers_mut().insert(LOCATION, value);
    }
    Ok(response)
}

async fn show_group(
    State(state): State<Arc<AppState>>,
    ScimCaller(institution): ScimCaller,
    Path(id): Path<String>,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Response, ScimError> {
    let Query(params) = params.map_err(|e| ScimError::bad("invalidValue", e.body_text()))?;
    let team = load_team(&state, &institution, &id).await?;
    let with_members = params.with_members();
    Ok(scim(
        StatusCode::OK,
        team_resource(&state, &team, with_members).await?,
    ))
}

async fn replace_group(
    State(state): State<Arc<AppState>>,
    ScimCaller(institution): ScimCaller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ScimError> {
    let team = load_team(&state, &institution, &id).await?;
    let map = object(&body)?;
    let attributes = team_attributes(&map)?;
    let members = members_of(&state, &institution, attribute(&map, "members")).await?;
    let command = TeamCommand::Replace {
        attributes: Some(attributes),
        members: Some(members),
    };
    let team = run_team(&state, team.id, command).await?;
    Ok(scim(
        StatusCode::OK,
        team_resource(&state, &team, true).await?,
    ))
}

/// The member id in a path such as `members[value eq "2819c223-…"]`.
fn member_in_path(path: &str) -> Option<String> {
    let inner = path.strip_prefix("members[")?.strip_suffix(']')?;
    let (attribute, rest) = inner.trim().split_once(char::is_whitespace)?;
    let (operator, value) = rest.trim().split_once(char::is_whitespace)?;
    if !attribute.eq_ignore_ascii_case("value") || !operator.eq_ignore_ascii_case("eq") {
        return None;
    }
    serde_json::from_str(value.trim()).ok()
}

async fn patch_group(
    State(state): State<Arc<AppState>>,
    ScimCaller(institution): ScimCaller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ScimError> {
    let mut team = load_team(&state, &institution, &id).await?;
    for operation in operations(&body)? {
        let path = operation.path.as_deref().map(str::trim);
        let is_members = path.is_some_and(|p| p.eq_ignore_ascii_case("members"));
        let command = match (operation.op.as_str(), path) {
            ("add", Some(_)) if is_members => TeamCommand::AddMembers(
                members_of(&state, &institution, operation.value.as_ref()).await?,
            ),
            ("replace", Some(_)) if is_members => TeamCommand::Replace {
                attributes: None,
                members: Some(members_of(&state, &institution, operation.value.as_ref()).await?),
            },
            ("remove", Some(_)) if is_members => match &operation.value {
                // Without a value, remove drops every member (RFC 7644 section 3.5.2.2).
                None => TeamCommand::Replace {
                    attributes: None,
                    members: Some(BTreeSet::new()),
                },
                Some(value) => TeamCommand::RemoveMembers(ids_in(value).ok_or_else(|| {
                    ScimError::bad("invalidValue", "members to remove are `{\"value\": id}`")
                })?),
            },
            ("remove", Some(p)) if p.starts_with("members[") => {
                let id = member_in_path(p).ok_or_else(|| {
                    ScimError::bad("invalidPath", format!("unsupported path {p}"))
                })?;
                TeamCommand::RemoveMembers(
                    DirectoryId::parse(&id)
                        .map(|id| [id].into())
                        .unwrap_or_default(),
                )
            }
            ("remove", _) => {
                return Err(ScimError::bad(
                    "noTarget",
                    "only members can be removed from a group",
                ));
            }
            (_, path) => {
                // displayName / externalId, by path or as an object of attributes.
                let mut resource = Map::new();
                resource.insert("displayName".into(), json!(team.attributes.display_name));
                if let Some(external) = &team.attributes.external_id {
                    resource.insert("externalId".into(), json!(external));
                }
                let mut members = None;
                match (path, operation.value) {
                    (Some(p), Some(value))
                        if p.eq_ignore_ascii_case("displayName")
                            || p.eq_ignore_ascii_case("externalId") =>
                    {
                        resource.insert(p.to_owned(), value);
                    }
                    (None, Some(Value::Object(values))) => {
                        for (key, value) in values {
                            if key.eq_ignore_ascii_case("members") {
                                members = Some(value);
                            } else {
                                resource.retain(|k, _| !k.eq_ignore_ascii_case(&key));
                                resource.insert(key, value);
                            }
                        }
                    }
                    (p, _) => {
                        return Err(ScimError::bad(
                            "invalidPath",
                            format!("unsupported path {}", p.unwrap_or("(none)")),
                        ))
                    }
                }
                let attributes = team_attributes(&resource)?;
                let members = match members {
                    Some(value) => Some(members_of(&state, &institution, Some(&value)).await?),
                    None => None,
                };
                match (operation.op.as_str(), members) {
                    ("add", Some(members)) => {
                        team = run_team(
                            &state,
                            team.id,
                            TeamCommand::Replace {
                                attributes: Some(attributes),
                                members: None,
                            },
                        )
                        .await?;
                        TeamCommand::AddMembers(members)
                    }
                    (_, members) => TeamCommand::Replace {
                        attributes: Some(attributes),
                        members,
                    },
                }
            }
        };
        team = run_team(&state, team.id, command).await?;
    }
    Ok(scim(
        StatusCode::OK,
        team_resource(&state, &team, true).await?,
    ))
}

/// The ids of `[{"value": id}, …]`.
fn ids_in(value: &Value) -> Option<BTreeSet<DirectoryId>> {
    let items = match value {
        Value::Array(items) => items.clone(),
        one @ Value::Object(_) => vec![one.clone()],
        _ => return None,
    };
    items
        .iter()
        .map(|item| {
            item.get("value")
                .and_then(Value::as_str)
                .and_then(|id| DirectoryId::parse(id).ok())
        })
        .collect()
}

async fn delete_group(
    State(state): State<Arc<AppState>>,
    ScimCaller(institution): ScimCaller,
    Path(id): Path<String>,
) -> Result<Response, ScimError> {
    let team = load_team(&state, &institution, &id).await?;
    run_team(&state, team.id, TeamCommand::Delete).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---- discovery -------------------------------------------------------------------------

async fn service_provider_config(_caller: ScimCaller) -> Response {
    scim(
        StatusCode::OK,
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
            "patch": { "supported": true },
            "bulk": { "supported": false, "maxOperations": 0, "maxPayloadSize": 0 },
            "filter": { "supported": true, "maxResults": MAX_COUNT },
            "changePassword": { "supported": false },
            "sort": { "supported": false },
            "etag": { "supported": false },
            "authenticationSchemes": [{
                "type": "oauthbearertoken",
                "name": "Bearer token",
                "description": "A token bound to one institution (FOLLOWUP_SCIM_TOKENS)",
                "primary": true,
            }],
            "meta": { "resourceType": "ServiceProviderConfig", "location": "/scim/v2/ServiceProviderConfig" },
        }),
    )
}

fn resource_type(name: &str, endpoint: &str, schema: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
        "id": name, "name": name, "endpoint": endpoint, "schema": schema,
        "meta": { "resourceType": "ResourceType", "location": format!("/scim/v2/ResourceTypes/{name}") },
    })
}

async fn resource_types(_caller: ScimCaller) -> Response {
    let types = vec![
        resource_type("User", "/Users", USER_SCHEMA),
        resource_type("Group", "/Groups", GROUP_SCHEMA),
    ];
    list_response(types, 2, 1)
}

fn attribute_schema(
    name: &str,
    kind: &str,
    required: bool,
    multi: bool,
    uniqueness: &str,
) -> Value {
    json!({ "name": name, "type": kind, "multiValued": multi, "required": required,
            "caseExact": false, "mutability": "readWrite", "returned": "default",
            "uniqueness": uniqueness })
}

async fn schemas(_caller: ScimCaller) -> Response {
    let user = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
        "id": USER_SCHEMA, "name": "User", "description": "A user of the follow-ups",
        "attributes": [
            attribute_schema("userName", "string", true, false, "server"),
            attribute_schema("displayName", "string", false, false, "none"),
            attribute_schema("externalId", "string", false, false, "none"),
            attribute_schema("active", "boolean", false, false, "none"),
            { "name": "name", "type": "complex", "multiValued": false, "required": false,
              "mutability": "readWrite", "returned": "default",
              "subAttributes": [attribute_schema("formatted", "string", false, false, "none"),
                                attribute_schema("givenName", "string", false, false, "none"),
                                attribute_schema("familyName", "string", false, false, "none")] },
            { "name": "emails", "type": "complex", "multiValued": true, "required": false,
              "mutability": "readWrite", "returned": "default",
              "subAttributes": [attribute_schema("value", "string", false, false, "none"),
                                attribute_schema("type", "string", false, false, "none"),
                                attribute_schema("primary", "boolean", false, false, "none")] },
        ],
        "meta": { "resourceType": "Schema", "location": format!("/scim/v2/Schemas/{USER_SCHEMA}") },
    });
    let group = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
        "id": GROUP_SCHEMA, "name": "Group", "description": "A team of the follow-ups",
        "attributes": [
            attribute_schema("displayName", "string", true, false, "none"),
            attribute_schema("externalId", "string", false, false, "none"),
            { "name": "members", "type": "complex", "multiValued": true, "required": false,
              "mutability": "readWrite", "returned": "default",
              "subAttributes": [attribute_schema("value", "string", false, false, "none"),
                                { "name": "$ref", "type": "reference", "referenceTypes": ["User", "Group"],
                                  "multiValued": false, "required": false, "caseExact": false,
                                  "mutability": "immutable", "returned": "default", "uniqueness": "none" },
                                attribute_schema("display", "string", false, false, "none"),
                                attribute_schema("type", "string", false, false, "none")] },
        ],
        "meta": { "resourceType": "Schema", "location": format!("/scim/v2/Schemas/{GROUP_SCHEMA}") },
    });
    list_response(vec![user, group], 2, 1)
}
