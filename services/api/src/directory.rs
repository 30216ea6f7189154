//! The directory as the API uses it: the pickers' search (`GET /v1/directory/users?q=`,
//! `GET /v1/directory/teams?q=`), the check that a follow-up is given only to a principal the
//! institution's directory knows (422 `unknown_principal`), a caller's teams from the
//! directory when its token names none, and the users learnt from their tokens in
//! institutions that do not provision by SCIM.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::Utc;
use followup_domain::directory::{
    DirectoryId, Origin, TeamAttributes, TeamCommand, UserAttributes, UserCommand,
};
use followup_domain::{Actor, Context, Principal, Viewer};
use followup_readmodel::directory::{TeamFilter, UserFilter};
use followup_store::{CommandMeta, Expect};
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use crate::auth::Caller;
use crate::{ApiError, AppState};

/// Namespace of the ids of users learnt from tokens: the same user gets the same id in every
/// process, so two API processes that see it at once provision it once.
const LEARNT_NAMESPACE: Uuid = Uuid::from_u128(0x3b0c_51d4_7e2a_4f18_9c6d_a1e5_0f27_84b3);

/// How many users one process remembers having learnt (then it starts over).
const SEEN_CAPACITY: usize = 100_000;

/// The users (with the display name and teams their token gave) this process has written to
/// the directory already.
#[derive(Debug, Default)]
pub struct SeenUsers(Mutex<HashSet<(String, String, String)>>);

/// The routes of the pickers.
pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/directory/users", get(users))
        .route("/v1/directory/teams", get(teams))
        .route("/v1/directory/names", get(names))
}

/// The query of `GET /v1/directory/names`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamesQuery {
    /// Comma-separated `user:<id>` and `team:<id>` (at most 200).
    principals: String,
}

/// The display names of the principals a page shows (owners, shares, actors), in one call:
/// `{"names": {"user:anna@kp.dk": "Anna Jensen", …}}`; those the directory has no name for
/// are left out.
async fn names(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    query: Result<Query<NamesQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| invalid_query(&e))?;
    let principals: Vec<Principal> = query
        .principals
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .take(200)
        .map(|p| {
            p.parse().map_err(|e: followup_domain::ValidationError| {
                ApiError::bad_request("invalid_query", format!("principals: {e}"))
            })
        })
        .collect::<Result<_, _>>()?;
    let names = state
        .read_model
        .display_names(&caller.0.institution, &principals)
        .await?;
    Ok(Json(json!({ "names": names })).into_response())
}

/// The query of a picker.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Search {
    /// Text in the name (empty: everyone, by name).
    q: Option<String>,
    /// At most this many (default 20, at most 100).
    limit: Option<u32>,
}

impl Search {
    fn q(&self) -> Option<String> {
        self.q
            .as_deref()
            .map(str::trim)
            .filter(|q| !q.is_empty())
            .map(str::to_owned)
    }

    fn limit(&self) -> i64 {
        i64::from(self.limit.unwrap_or(20).clamp(1, 100))
    }
}

async fn users(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    search: Result<Query<Search>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(search) = search.map_err(|e| invalid_query(&e))?;
    let filter = UserFilter {
        q: search.q(),
        active_only: true,
        scim_only: state
            .read_model
            .has_directory(&caller.0.institution)
            .await?,
        ..UserFilter::default()
    };
    let (rows, _) = state
        .read_model
        .directory_users(&caller.0.institution, &filter, 0, search.limit())
        .await?;
    let items: Vec<_> = rows
        .iter()
        .map(|u| {
            json!({
                "principal": { "type": "user", "id": u.user_name },
                "display_name": u.display_name.clone().unwrap_or_else(|| u.user_name.clone()),
                "email": u.email,
            })
        })
        .collect();
    Ok(Json(json!({ "items": items })).into_response())
}

async fn teams(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    search: Result<Query<Search>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(search) = search.map_err(|e| invalid_query(&e))?;
    let filter = TeamFilter {
        q: search.q(),
        scim_only: state
            .read_model
            .has_directory(&caller.0.institution)
            .await?,
        ..TeamFilter::default()
    };
    let (rows, _) = state
        .read_model
        .directory_teams(&caller.0.institution, &filter, 0, search.limit())
        .await?;
    let items: Vec<_> = rows
        .iter()
        .map(|t| {
            json!({
                "principal": { "type": "team", "id": t.team_id },
                "display_name": t.display_name,
                "members": t.members.iter().map(|m| json!({
                    "principal": { "type": "user", "id": m.user_name },
                    "display_name": m.display_name.clone().unwrap_or_else(|| m.user_name.clone()),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    Ok(Json(json!({ "items": items })).into_response())
}

fn invalid_query(rejection: &QueryRejection) -> ApiError {
    ApiError::bad_request("invalid_query", rejection.body_text())
}

/// Refuses `principal` (in request field `field`) with 422 `unknown_principal` when the
/// caller's institution has a directory and it does not know the principal: a follow-up
/// given to a mistyped id would be visible to nobody.
pub(crate) async fn check_principal(
    state: &AppState,
    viewer: &Viewer,
    principal: &Principal,
    field: &str,
) -> Result<(), ApiError> {
    let institution = &viewer.institution;
    if !state.read_model.has_directory(institution).await? {
        return Ok(());
    }
    // The caller and its own teams are known: they are who it is.
    let itself = match principal {
        Principal::User(user) => *user == viewer.user,
        Principal::Team(team) => viewer.teams.contains(team),
    };
    if itself || state.read_model.knows(institution, principal).await? {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "unknown_principal",
        format!(
            "{} {} is not in the institution's directory; choose one from /v1/directory/{}s",
            principal.type_name(),
            principal.id(),
            principal.type_name()
        ),
    )
    .at(field))
}

/// The caller as the directory completes it: its teams from the directory when its token
/// names none, and (once per process) its user learnt into the directory when the
/// institution does not provision by SCIM. A directory that cannot be read leaves the caller
/// as its token says (logged), never failing the request.
pub(crate) async fn complete(state: &AppState, mut viewer: Viewer, name: Option<&str>) -> Viewer {
    if let Err(error) = learn(state, &viewer, name).await {
        tracing::warn!(error = %error, "the user could not be learnt into the directory");
    }
    if viewer.teams.is_empty() {
        match state
            .read_model
            .teams_of(&viewer.institution, &viewer.user)
            .await
        {
            Ok(teams) => viewer.teams = teams,
            Err(error) => {
                tracing::warn!(error = %error, "the caller's teams could not be read from the directory");
            }
        }
    }
    viewer
}

/// Writes the caller into the directory as a user learnt from its token, and its token's
/// teams with it as a member, unless this process did already or the directory has them
/// from SCIM (whose word stands).
async fn learn(state: &AppState, viewer: &Viewer, name: Option<&str>) -> Result<(), String> {
    let name = name
        .and_then(|n| followup_domain::directory::optional_text("name", Some(n)).ok())
        .flatten();
    let institution = viewer.institution.as_str();
    let mut teams: Vec<&str> = viewer.teams.iter().map(|t| t.as_str()).collect();
    teams.sort_unstable();
    let key = (
        institution.to_owned(),
        viewer.user.as_str().to_owned(),
        format!("{name:?}/{}", teams.join(",")),
    );
    if state
        .seen_users
        .0
        .lock()
        .expect("not poisoned")
        .contains(&key)
    {
        return Ok(());
    }
    if state
        .read_model
        .has_directory(&viewer.institution)
        .await
        .map_err(|e| e.to_string())?
    {
        remember(state, key);
        return Ok(());
    }
    let ctx = Context {
        actor: Actor::User {
            id: viewer.user.clone(),
        },
        now: Utc::now(),
    };
    let user_id = learnt_id(institution, "user", viewer.user.as_str());
    let attributes = UserAttributes {
        user_name: viewer.user.clone(),
        display_name: name,
        email: None,
        external_id: None,
        active: true,
    };
    let user = state
        .directory_users
        .execute_with(
            user_id,
            |user| match user {
                None => Some(UserCommand::Provision {
                    id: user_id,
                    institution: viewer.institution.clone(),
                    origin: Origin::Token,
                    attributes: attributes.clone(),
                }),
                // A name the token no longer gives is kept.
                Some(user) if attributes.display_name.is_none() || user.deleted => None,
                Some(_) => Some(UserCommand::Replace(attributes.clone())),
            },
            &ctx,
            &CommandMeta::default(),
            Expect::Current,
        )
        .await
        .map_err(|e| e.to_string())?;
    let mut learnt_teams = Vec::new();
    for team in &viewer.teams {
        let team_id = learnt_id(institution, "team", team.as_str());
        let learnt = state
            .directory_teams
            .execute_with(
                team_id,
                |known| match known {
                    None => Some(TeamCommand::Provision {
                        id: team_id,
                        institution: viewer.institution.clone(),
                        origin: Origin::Token,
                        attributes: TeamAttributes {
                            display_name: team.as_str().to_owned(),
                            external_id: Some(team.as_str().to_owned()),
                        },
                        members: [user_id].into(),
                    }),
                    Some(known) if known.deleted || known.members.contains(&user_id) => None,
                    Some(_) => Some(TeamCommand::AddMembers([user_id].into())),
                },
                &ctx,
                &CommandMeta::default(),
                Expect::Current,
            )
            .await
            .map_err(|e| e.to_string())?;
        learnt_teams.extend(learnt.map(|outcome| outcome.state));
    }
    let users: Vec<_> = user.into_iter().map(|outcome| outcome.state).collect();
    state
        .read_model
        .write_directory(&users, &learnt_teams)
        .await
        .map_err(|e| e.to_string())?;
    remember(state, key);
    Ok(())
}

/// The id of a user or team learnt from tokens: the same in every process, so two API
/// processes that see it at once provision it once.
fn learnt_id(institution: &str, kind: &str, id: &str) -> DirectoryId {
    let name = format!("{institution}/{kind}:{}", id.to_lowercase());
    DirectoryId(Uuid::new_v5(&LEARNT_NAMESPACE, name.as_bytes()))
}

fn remember(state: &AppState, key: (String, String, String)) {
    let mut seen = state.seen_users.0.lock().expect("not poisoned");
    if seen.len() >= SEEN_CAPACITY {
        seen.clear();
    }
    seen.insert(key);
}
