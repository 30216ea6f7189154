//! The directory provisioned over SCIM by a real SCIM client library (scim2-client, from
//! PyPI: `tests/scim-client/provision.py`), then used by the API: pickers, principals checked
//! on assign and share, teams from the directory, other institutions kept apart, and the
//! directory's tables rebuilt from its events alone.

use std::sync::Arc;

use chrono::Utc;
use followup_api::scim::ScimTokens;
use followup_api::{AppState, Auth, Claims};
use followup_domain::InstitutionId;
use followup_readmodel::{Projection, ReadModel};
use followup_store::followups::upcaster;
use followup_store::{EventStore, FollowUps, MIGRATOR};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sqlx::PgPool;

const SECRET: &str = "a-test-secret-that-is-long-enough-for-hs256";
const KP_TOKEN: &str = "kp-scim-token-0123456789abcdef0123456789";
const UCL_TOKEN: &str = "ucl-scim-token-0123456789abcdef012345678";

struct Api {
    base: String,
    http: reqwest::Client,
}

async fn spawn_api(pool: PgPool) -> Api {
    let store = EventStore::new(pool.clone()).with_upcaster(upcaster());
    let state = AppState {
        scim_tokens: ScimTokens::new(&[
            (InstitutionId::parse("KP").unwrap(), KP_TOKEN.into()),
            (InstitutionId::parse("UCL").unwrap(), UCL_TOKEN.into()),
        ]),
        ..AppState::new(
            FollowUps::new(store),
            ReadModel::new(pool),
            Auth::new(SECRET),
            None,
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(followup_api::serve(
        listener,
        Arc::new(state),
        tokio_util::sync::CancellationToken::new(),
    ));
    Api {
        base,
        http: reqwest::Client::new(),
    }
}

/// A caseworker's token at KP, with these teams.
fn token(sub: &str, teams: &[&str]) -> String {
    let now = Utc::now().timestamp();
    Auth::new(SECRET).mint(&Claims {
        sub: sub.into(),
        inst: "KP".into(),
        teams: teams.iter().map(|t| (*t).to_owned()).collect(),
        roles: vec!["caseworker".into()],
        exp: now + 600,
        iat: Some(now),
        nbf: None,
    })
}

impl Api {
    async fn call(
        &self,
        token: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

/// Runs the SCIM client's scenario against `api`; the ids it provisioned.
async fn provision(api: &Api) -> Value {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let library = format!("{root}/.local/scim-client");
    assert!(
        std::path::Path::new(&library).join("scim2_client").is_dir(),
        "the SCIM client library is missing: deploy/test.sh installs it into .local/scim-client"
    );
    // Awaited, not blocking: the API runs on this test's one thread.
    let output = tokio::process::Command::new("python3")
        .arg(format!("{root}/tests/scim-client/provision.py"))
        .env("PYTHONPATH", &library)
        .env("SCIM_URL", format!("{}/scim/v2", api.base))
        .env("SCIM_TOKEN", KP_TOKEN)
        .output()
        .await
        .expect("python3");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the SCIM client failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(stdout.lines().last().unwrap()).unwrap()
}

async fn directory_rows(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT row_to_json(u)::text FROM (SELECT * FROM directory_users ORDER BY id) u
         UNION ALL SELECT row_to_json(t)::text FROM (SELECT * FROM directory_teams ORDER BY id) t
         UNION ALL SELECT row_to_json(m)::text FROM (SELECT * FROM directory_members ORDER BY team_id, user_id) m",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_directory_provisioned_by_a_scim_client_guards_assignments_and_gives_teams(pool: PgPool) {
    let api = spawn_api(pool.clone()).await;
    let ids = provision(&api).await;

    // The pickers offer the active users, with their names, and the teams with members.
    let birgit = token("birgit", &["admissions"]);
    let (_, users) = api
        .call(&birgit, Method::GET, "/v1/directory/users?q=kp.dk", None)
        .await;
    let names: Vec<&str> = users["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["display_name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["Anna Jensen", "Carl Emil Nielsen"],
        "bo is deactivated: {users}"
    );
    let (_, teams) = api
        .call(&birgit, Method::GET, "/v1/directory/teams?q=optag", None)
        .await;
    assert_eq!(
        teams["items"][0]["principal"],
        json!({"type": "team", "id": "admissions"})
    );
    assert_eq!(teams["items"][0]["display_name"], "Optagelsen");
    assert_eq!(teams["items"][0]["members"].as_array().unwrap().len(), 2);

    // A task can be given to anna, not to a mistyped name nor to the deactivated bo.
    let (status, task) = api.call(&birgit, Method::POST, "/v1/followups",
        Some(json!({"kind": "task", "subject": "Ring til ansøger", "owner": {"type": "team", "id": "admissions"}}))).await;
    assert_eq!(status, StatusCode::CREATED, "{task}");
    let id = task["id"].as_str().unwrap();
    for (owner, expected) in [
        ("anne@kp.dk", StatusCode::UNPROCESSABLE_ENTITY),
        ("bo@kp.dk", StatusCode::UNPROCESSABLE_ENTITY),
        ("anna@kp.dk", StatusCode::OK),
    ] {
        let (status, body) = api
            .call(
                &birgit,
                Method::POST,
                &format!("/v1/followups/{id}/assign"),
                Some(json!({"owner": {"type": "user", "id": owner}})),
            )
            .await;
        assert_eq!(status, expected, "{owner}: {body}");
        if status != StatusCode::OK {
            assert_eq!(body["code"], "unknown_principal");
            assert_eq!(body["field"], "owner");
        }
    }
    let (status, body) = api
        .call(
            &birgit,
            Method::POST,
            &format!("/v1/followups/{id}/shares"),
            Some(json!({"principal": {"type": "team", "id": "admision"}, "access": "read"})),
        )
        .await;
    assert_eq!(
        (status, body["code"].clone()),
        (StatusCode::UNPROCESSABLE_ENTITY, json!("unknown_principal"))
    );

    // Carl's token names no team: the directory says he is in admissions, so he sees its task.
    let (status, shared) = api.call(&birgit, Method::POST, "/v1/followups",
        Some(json!({"kind": "task", "subject": "Tjek dokumenter", "owner": {"type": "team", "id": "admissions"}}))).await;
    assert_eq!(status, StatusCode::CREATED);
    let carl = token("carl@kp.dk", &[]);
    let (_, me) = api.call(&carl, Method::GET, "/v1/me", None).await;
    assert_eq!(me["teams"], json!(["admissions"]));
    let (status, _) = api
        .call(
            &carl,
            Method::GET,
            &format!("/v1/followups/{}", shared["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    // A notification to the team reaches both members the directory names, each with a read
    // state of its own.
    let (status, note) = api.call(&birgit, Method::POST, "/v1/followups",
        Some(json!({"kind": "notification", "subject": "Nye optagelsesregler", "owner": {"type": "team", "id": "admissions"}}))).await;
    assert_eq!(status, StatusCode::CREATED, "{note}");
    let note_id = note["id"].as_str().unwrap();
    let anna = token("anna@kp.dk", &[]);
    let state_of = |inbox: &Value| {
        inbox["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["followup"]["id"] == note_id || i["id"] == note_id)
            .map(|i| i["state"].clone())
    };
    let (_, inbox) = api
        .call(&carl, Method::GET, "/v1/notifications", None)
        .await;
    assert_eq!(state_of(&inbox), Some(json!("unread")), "{inbox}");
    let (status, _) = api
        .call(
            &carl,
            Method::POST,
            &format!("/v1/notifications/{note_id}/read"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, inbox) = api
        .call(&carl, Method::GET, "/v1/notifications?state=read", None)
        .await;
    assert_eq!(state_of(&inbox), Some(json!("read")), "{inbox}");
    let (_, inbox) = api
        .call(&anna, Method::GET, "/v1/notifications", None)
        .await;
    assert_eq!(
        state_of(&inbox),
        Some(json!("unread")),
        "anna's own state: {inbox}"
    );

    // Another institution's SCIM token sees none of KP's directory; no token gets 401.
    let ucl = api
        .http
        .get(format!("{}/scim/v2/Users", api.base))
        .bearer_auth(UCL_TOKEN)
        .send()
        .await
        .unwrap();
    let ucl: Value = ucl.json().await.unwrap();
    assert_eq!(ucl["totalResults"], 0);
    let user = format!(
        "{}/scim/v2/Users/{}",
        api.base,
        ids["anna"].as_str().unwrap()
    );
    assert_eq!(
        api.http
            .get(&user)
            .bearer_auth(UCL_TOKEN)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );
    let anonymous = api.http.get(&user).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(anonymous.headers()["content-type"], "application/scim+json");

    // The directory's tables come back the same from its events alone.
    let before = directory_rows(&pool).await;
    sqlx::query("TRUNCATE directory_users, directory_teams, directory_members")
        .execute(&pool)
        .await
        .unwrap();
    let store = EventStore::new(pool.clone()).with_upcaster(upcaster());
    Projection::new(store, ReadModel::new(pool.clone()))
        .process_pending()
        .await
        .unwrap();
    assert_eq!(directory_rows(&pool).await, before);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn without_scim_users_are_learnt_from_their_tokens_and_assignments_stay_open(pool: PgPool) {
    let api = spawn_api(pool).await;
    let dorte = token("dorte", &["studieadministration"]);
    let (status, _) = api.call(&dorte, Method::GET, "/v1/dashboard", None).await;
    assert_eq!(status, StatusCode::OK);
    let (_, users) = api
        .call(&dorte, Method::GET, "/v1/directory/users?q=dor", None)
        .await;
    assert_eq!(
        users["items"][0]["principal"],
        json!({"type": "user", "id": "dorte"})
    );
    // No SCIM directory at KP: a user nobody has seen yet may still be given a task.
    let (status, body) = api.call(&dorte, Method::POST, "/v1/followups",
        Some(json!({"kind": "task", "subject": "Til en ny kollega", "owner": {"type": "user", "id": "ny-kollega"}}))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}
