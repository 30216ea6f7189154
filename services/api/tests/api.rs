//! The HTTP API through real HTTP, against a spawned app with the real PostgreSQL (a fresh
//! database per test) and a private NATS server.

use std::sync::Arc;

use chrono::{Duration, Utc};
use followup_api::{AppState, Auth, Claims};
use followup_domain::{
    Actor, Command, Context, Description, FollowUpId, InstitutionId, Kind, NewFollowUp, Principal,
    Priority, Source, Subject, TeamId,
};
use followup_readmodel::{Projection, ReadModel};
use followup_store::followups::upcaster;
use followup_store::{CommandMeta, EventStore, Expect, FollowUps, MIGRATOR};
use followup_testkit::NatsServer;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sqlx::PgPool;

const SECRET: &str = "a-test-secret-that-is-long-enough-for-hs256";

/// A running API on a free port.
struct TestApp {
    address: String,
    client: reqwest::Client,
    auth: Auth,
    followups: FollowUps,
    projector: Projection,
    _nats: NatsServer,
}

async fn spawn_app(pool: PgPool) -> TestApp {
    spawn_app_with(pool, Some(std::time::Duration::from_secs(30))).await
}

/// The same, with `/readyz` failing once the read model trails by more than `ready_max_lag`.
async fn spawn_app_with(pool: PgPool, ready_max_lag: Option<std::time::Duration>) -> TestApp {
    spawn_app_configured(pool, |state| AppState {
        ready_max_lag,
        ..state
    })
    .await
}

/// The same, with the state `configure` makes of the default one.
async fn spawn_app_configured(
    pool: PgPool,
    configure: impl FnOnce(AppState) -> AppState,
) -> TestApp {
    let nats = NatsServer::start();
    let store = EventStore::new(pool.clone()).with_upcaster(upcaster());
    let followups = FollowUps::new(store.clone());
    let read_model = ReadModel::new(pool.clone());
    let state = Arc::new(configure(AppState::new(
        followups.clone(),
        read_model.clone(),
        Auth::new(SECRET),
        Some(nats.client().await),
    )));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(followup_api::serve(
        listener,
        state,
        tokio_util::sync::CancellationToken::new(),
    ));
    TestApp {
        address,
        client: reqwest::Client::new(),
        auth: Auth::new(SECRET),
        followups,
        projector: Projection::new(store, read_model),
        _nats: nats,
    }
}

/// A caller: user, institution, teams, roles.
fn claims(sub: &str, inst: &str, teams: &[&str], roles: &[&str]) -> Claims {
    Claims {
        sub: sub.into(),
        inst: inst.into(),
        teams: teams.iter().map(|t| t.to_string()).collect(),
        roles: roles.iter().map(|r| r.to_string()).collect(),
        exp: (Utc::now() + Duration::hours(1)).timestamp(),
        iat: Some(Utc::now().timestamp()),
        nbf: None,
    }
}

impl TestApp {
    fn token(&self, c: &Claims) -> String {
        self.auth.mint(c)
    }

    async fn call(
        &self,
        who: &Claims,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.call_with(Some(self.token(who)), method, path, body, &[])
            .await
    }

    async fn call_with(
        &self,
        token: Option<String>,
        method: Method,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> (StatusCode, Value) {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.address));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned());
        let text = response.text().await.unwrap();
        if !status.is_success() {
            assert_eq!(
                content_type.as_deref(),
                Some("application/problem+json"),
                "{status}: {text}"
            );
        }
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// Projects everything committed so far (what the projector role does continuously).
    async fn project_all(&self) {
        let store = self.followups.store();
        assert!(store
            .wait_until_readable(std::time::Duration::from_secs(10))
            .await
            .unwrap());
        while self.projector.process_pending().await.unwrap() > 0 {}
    }

    /// `GET /readyz`: its status and body (JSON, also when not ready).
    async fn ready(&self) -> (StatusCode, Value) {
        let response = reqwest::get(format!("{}/readyz", self.address))
            .await
            .unwrap();
        (response.status(), response.json().await.unwrap())
    }

    async fn create_task(&self, who: &Claims, body: Value) -> Value {
        let (status, created) = self
            .call(who, Method::POST, "/v1/followups", Some(body))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        created
    }
}

fn task(subject: &str) -> Value {
    json!({ "kind": "task", "subject": subject })
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_created_task_is_answered_with_location_and_etag_and_read_back_at_once(pool: PgPool) {
    let app = spawn_app(pool).await;
    let anna = claims("anna", "KP", &["admissions"], &["caseworker"]);
    let response = app
        .client
        .post(format!("{}/v1/followups", app.address))
        .bearer_auth(app.token(&anna))
        .json(
            &json!({ "kind": "task", "subject": "Ring til ansøger", "due": "2026-12-01T09:00:00Z",
                       "regarding": { "type": "application", "id": "APP-1" } }),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(response.headers()["etag"], "\"1\"");
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let created: Value = response.json().await.unwrap();
    assert_eq!(
        location,
        format!("/v1/followups/{}", created["id"].as_str().unwrap())
    );
    assert_eq!(created["owner"], json!({ "type": "user", "id": "anna" }));

    // Read-your-writes: the GET and the list show it without waiting for the projector.
    let (status, got) = app.call(&anna, Method::GET, &location, None).await;
    assert_eq!(
        (status, got["subject"].clone()),
        (StatusCode::OK, json!("Ring til ansøger"))
    );
    let (_, list) = app
        .call(&anna, Method::GET, "/v1/followups?owner=me", None)
        .await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn who_sees_and_changes_what_follows_owner_team_share_admin_and_institution(pool: PgPool) {
    let app = spawn_app(pool).await;
    let owner = claims("anna", "KP", &[], &["caseworker"]);
    let teammate = claims("bo", "KP", &["admissions"], &["caseworker"]);
    let stranger = claims("carl", "KP", &["exams"], &["caseworker"]);
    let admin = claims("dora", "KP", &[], &["admin"]);
    let other_institution_admin = claims("eva", "UCL", &["admissions"], &["admin"]);
    let reader = claims("finn", "KP", &[], &["caseworker"]);
    let writer = claims("gry", "KP", &["exams-write"], &["caseworker"]);

    let team_task = app.create_task(&owner, json!({ "kind": "task", "subject": "Holdets opgave", "owner": { "type": "team", "id": "admissions" } })).await;
    let path = format!("/v1/followups/{}", team_task["id"].as_str().unwrap());
    for (principal, access) in [
        (json!({ "type": "user", "id": "finn" }), "read"),
        (json!({ "type": "team", "id": "exams-write" }), "write"),
    ] {
        let body = Some(json!({ "principal": principal, "access": access }));
        let (status, _) = app
            .call(&teammate, Method::POST, &format!("{path}/shares"), body)
            .await;
        assert_eq!(
            status,
            StatusCode::OK,
            "a team member shares the team's follow-up"
        );
    }

    let sees = |who: &Claims| {
        let (app, path, who) = (&app, path.clone(), who.clone());
        async move { app.call(&who, Method::GET, &path, None).await.0 }
    };
    assert_eq!(
        sees(&teammate).await,
        StatusCode::OK,
        "a team member sees the team's follow-up"
    );
    assert_eq!(
        sees(&admin).await,
        StatusCode::OK,
        "an admin sees the whole institution"
    );
    assert_eq!(sees(&reader).await, StatusCode::OK, "a read share can view");
    assert_eq!(
        sees(&writer).await,
        StatusCode::OK,
        "a write share can view"
    );
    assert_eq!(
        sees(&stranger).await,
        StatusCode::NOT_FOUND,
        "neither owner nor shared"
    );
    assert_eq!(
        sees(&other_institution_admin).await,
        StatusCode::NOT_FOUND,
        "another institution"
    );
    assert_eq!(
        sees(&owner).await,
        StatusCode::NOT_FOUND,
        "the creator gave it to the team and is not in it"
    );

    let edit = Some(json!({ "priority": "high" }));
    assert_eq!(
        app.call(&reader, Method::PATCH, &path, edit.clone())
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.call(&stranger, Method::PATCH, &path, edit.clone())
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    let (status, changed) = app.call(&writer, Method::PATCH, &path, edit).await;
    assert_eq!(
        (status, changed["priority"].clone()),
        (StatusCode::OK, json!("high"))
    );

    // Lists follow the same rule.
    let count = |who: &Claims| {
        let (app, who) = (&app, who.clone());
        async move {
            app.call(&who, Method::GET, "/v1/followups", None).await.1["items"]
                .as_array()
                .unwrap()
                .len()
        }
    };
    assert_eq!(
        (
            count(&teammate).await,
            count(&admin).await,
            count(&stranger).await,
            count(&other_institution_admin).await
        ),
        (1, 1, 0, 0)
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_missing_expired_or_badly_signed_token_is_refused(pool: PgPool) {
    let app = spawn_app(pool).await;
    let mut expired = claims("anna", "KP", &[], &[]);
    expired.exp = (Utc::now() - Duration::minutes(1)).timestamp();
    let forged = Auth::new("another-secret-that-is-long-enough-for-hs256").mint(&claims(
        "anna",
        "KP",
        &[],
        &[],
    ));
    for token in [
        None,
        Some(app.token(&expired)),
        Some(forged),
        Some("not-a-jwt".into()),
    ] {
        let (status, problem) = app
            .call_with(token, Method::GET, "/v1/followups", None, &[])
            .await;
        assert_eq!(
            (status, problem["code"].clone()),
            (StatusCode::UNAUTHORIZED, json!("unauthorized"))
        );
    }
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn if_match_stale_changes_terminal_states_and_the_gdpr_guard_answer_with_their_codes(
    pool: PgPool,
) {
    let app = spawn_app(pool).await;
    let anna = claims("anna", "KP", &[], &[]);
    let created = app.create_task(&anna, task("Indhent eksamensbevis")).await;
    let path = format!("/v1/followups/{}", created["id"].as_str().unwrap());

    let (status, _) = app
        .call_with(
            Some(app.token(&anna)),
            Method::PATCH,
            &path,
            Some(json!({ "status_reason": "in_progress" })),
            &[("if-match", "\"1\"")],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, problem) = app
        .call_with(
            Some(app.token(&anna)),
            Method::PATCH,
            &path,
            Some(json!({ "priority": "low" })),
            &[("if-match", "\"1\"")],
        )
        .await;
    assert_eq!(
        (status, problem["code"].clone()),
        (
            StatusCode::PRECONDITION_FAILED,
            json!("precondition_failed")
        )
    );

    let (status, problem) = app
        .call(
            &anna,
            Method::PATCH,
            &path,
            Some(json!({ "description": "Lægeerklæring modtaget" })),
        )
        .await;
    assert_eq!(
        (status, problem["code"].clone(), problem["field"].clone()),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            json!("gdpr_sensitive_data"),
            json!("description")
        )
    );
    assert!(problem["detail"]
        .as_str()
        .unwrap()
        .contains("Sag og Dokument"));
    let (status, problem) = app
        .call(
            &anna,
            Method::POST,
            "/v1/followups",
            Some(task("Ansøger 010203-1234 mangler papirer")),
        )
        .await;
    assert_eq!(
        (status, problem["code"].clone()),
        (StatusCode::UNPROCESSABLE_ENTITY, json!("gdpr_cpr_number"))
    );
    assert!(
        !problem.to_string().contains("1234"),
        "the CPR number is not echoed"
    );
    let (status, problem) = app
        .call(
            &anna,
            Method::POST,
            "/v1/followups",
            Some(json!({ "kind": "exception", "subject": "x" })),
        )
        .await;
    assert_eq!(
        (status, problem["code"].clone()),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            json!("users_cannot_create_exceptions")
        )
    );

    assert_eq!(
        app.call(&anna, Method::POST, &format!("{path}/complete"), None)
            .await
            .0,
        StatusCode::OK
    );
    let (status, problem) = app
        .call(&anna, Method::POST, &format!("{path}/close"), None)
        .await;
    assert_eq!(
        (status, problem["code"].clone()),
        (StatusCode::CONFLICT, json!("terminal_state"))
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn malformed_requests_get_4xx_problem_documents_never_500(pool: PgPool) {
    let app = spawn_app(pool).await;
    let anna = claims("anna", "KP", &[], &[]);
    let token = app.token(&anna);
    let url = |p: &str| format!("{}{p}", app.address);
    let cases: Vec<(reqwest::RequestBuilder, StatusCode, &str)> = vec![
        (
            app.client
                .post(url("/v1/followups"))
                .header("content-type", "application/json")
                .body("{\"kind\": "),
            StatusCode::BAD_REQUEST,
            "malformed_body",
        ),
        (
            app.client
                .post(url("/v1/followups"))
                .json(&json!({ "kind": "task", "subject": "x", "colour": "red" })),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            app.client
                .post(url("/v1/followups"))
                .json(&json!({ "kind": "task", "subject": "x".repeat(70_000) })),
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
        ),
        (
            app.client
                .post(url("/v1/followups"))
                .header("content-type", "text/plain")
                .body("hi"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            app.client.get(url("/v1/followups/not-a-uuid")),
            StatusCode::BAD_REQUEST,
            "invalid_id",
        ),
        (
            app.client.get(url("/v1/followups?kind=ticket")),
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
        (
            app.client.get(url("/v1/followups?colour=red")),
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
        (
            app.client.get(url("/v1/followups?cursor=zzz")),
            StatusCode::BAD_REQUEST,
            "bad_cursor",
        ),
        (
            app.client
                .get(url(&format!("/v1/followups/{}", FollowUpId::new_v4()))),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            app.client
                .post(url("/v1/followups"))
                .json(&json!({ "kind": "task", "subject": "" })),
            StatusCode::UNPROCESSABLE_ENTITY,
            "empty",
        ),
        (
            app.client.get(url("/v1/nowhere")),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            app.client.put(url("/v1/followups")),
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
    ];
    for (request, expected, code) in cases {
        let response = request.bearer_auth(&token).send().await.unwrap();
        let status = response.status();
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
        let problem: Value = response.json().await.unwrap();
        assert_eq!(
            (status, problem["code"].as_str().unwrap()),
            (expected, code),
            "{problem}"
        );
    }
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn assign_share_unshare_and_history_record_who_did_what(pool: PgPool) {
    let app = spawn_app(pool).await;
    let anna = claims("anna", "KP", &["admissions"], &[]);
    let created = app.create_task(&anna, task("Vurdér merit")).await;
    let path = format!("/v1/followups/{}", created["id"].as_str().unwrap());
    let (status, shared) = app
        .call(
            &anna,
            Method::POST,
            &format!("{path}/shares"),
            Some(json!({ "principal": { "type": "user", "id": "bo" }, "access": "read" })),
        )
        .await;
    assert_eq!(
        (status, shared["shares"].as_array().unwrap().len()),
        (StatusCode::OK, 1)
    );
    let (status, unshared) = app
        .call(
            &anna,
            Method::DELETE,
            &format!("{path}/shares/user:bo"),
            None,
        )
        .await;
    assert_eq!(
        (status, unshared["shares"].as_array().unwrap().len()),
        (StatusCode::OK, 0)
    );
    let (status, assigned) = app
        .call(
            &anna,
            Method::POST,
            &format!("{path}/assign"),
            Some(json!({ "owner": { "type": "team", "id": "admissions" } })),
        )
        .await;
    assert_eq!(
        (status, assigned["owner"]["id"].clone()),
        (StatusCode::OK, json!("admissions"))
    );

    let (_, history) = app
        .call(&anna, Method::GET, &format!("{path}/history"), None)
        .await;
    let items = history["items"].as_array().unwrap();
    let types: Vec<&str> = items.iter().map(|i| i["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["created", "shared", "unshared", "assigned"]);
    assert!(items
        .iter()
        .all(|i| i["actor"] == json!({ "type": "user", "id": "anna" }) && i["at"].is_string()));
    // Each says what it changed: whom and which access, from whom to whom.
    let bo = json!({ "type": "user", "id": "bo" });
    assert_eq!(items[0]["changes"], json!([]));
    assert_eq!(
        items[1]["changes"],
        json!([{ "field": "share", "principal": bo, "from": null, "to": "read" }])
    );
    assert_eq!(
        items[2]["changes"],
        json!([{ "field": "share", "principal": bo, "from": "read", "to": null }])
    );
    assert_eq!(
        items[3]["changes"],
        json!([{ "field": "owner", "from": { "type": "user", "id": "anna" },
                 "to": { "type": "team", "id": "admissions" } }])
    );

    // An edit says old → new.
    let (status, _) = app
        .call(
            &anna,
            Method::PATCH,
            &path,
            Some(json!({ "subject": "Vurdér merit igen", "priority": "high" })),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, history) = app
        .call(&anna, Method::GET, &format!("{path}/history"), None)
        .await;
    assert_eq!(
        history["items"][4]["changes"],
        json!([
            { "field": "subject", "from": "Vurdér merit", "to": "Vurdér merit igen" },
            { "field": "priority", "from": "normal", "to": "high" },
        ])
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn pages_follow_the_cursor_and_give_every_follow_up_once_while_others_are_added(
    pool: PgPool,
) {
    let app = spawn_app(pool).await;
    let anna = claims("anna", "KP", &[], &[]);
    for n in 0..25 {
        app.create_task(&anna, task(&format!("Opgave {n}"))).await;
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/followups?limit=10&cursor={c}"),
            None => "/v1/followups?limit=10".into(),
        };
        let (status, page) = app.call(&anna, Method::GET, &path, None).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        seen.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["subject"].as_str().unwrap().to_owned()),
        );
        // New follow-ups arrive between pages; they belong on the first page, not in later ones.
        app.create_task(&anna, task("Ny undervejs")).await;
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(seen.len(), 25, "{seen:?}");
    assert_eq!(unique.len(), 25);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_rule_raised_exception_reaches_the_team_list_and_dashboard_through_the_projector(
    pool: PgPool,
) {
    let app = spawn_app(pool).await;
    let id = FollowUpId::new_v4();
    let new = NewFollowUp {
        id,
        institution: InstitutionId::parse("KP").unwrap(),
        kind: Kind::Exception,
        subject: Subject::from_upstream("Fejl ved overførsel af ansøgning APP-1"),
        description: Description::from_upstream(""),
        regarding: None,
        person: None,
        owner: Principal::Team(TeamId::parse("admissions").unwrap()),
        due: Some(Utc::now() - Duration::hours(1)),
        priority: Priority::High,
        source: Source::Rule {
            rule_id: "applicant-transfer-defects".into(),
            job: "run-1".into(),
        },
    };
    let ctx = Context {
        actor: Actor::Rule {
            id: "applicant-transfer-defects".into(),
        },
        now: Utc::now(),
    };
    app.followups
        .execute(
            id,
            Command::Create(new),
            &ctx,
            &CommandMeta::default(),
            Expect::Current,
        )
        .await
        .unwrap();
    app.project_all().await;

    let bo = claims("bo", "KP", &["admissions"], &[]);
    let (_, list) = app
        .call(
            &bo,
            Method::GET,
            "/v1/followups?kind=exception&overdue=true&owner=team:admissions",
            None,
        )
        .await;
    assert_eq!(list["items"][0]["id"], id.to_string());
    let (_, dashboard) = app.call(&bo, Method::GET, "/v1/dashboard", None).await;
    assert_eq!(
        (
            dashboard["open_by_kind"]["exception"].clone(),
            dashboard["overdue"].clone()
        ),
        (json!(1), json!(1))
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn every_documented_operation_exists_and_health_readiness_and_metrics_answer(pool: PgPool) {
    let app = spawn_app(pool).await;
    app.project_all().await;
    let (status, doc) = app
        .call_with(None, Method::GET, "/openapi.json", None, &[])
        .await;
    assert_eq!(status, StatusCode::OK);
    for (method, path, _) in followup_api::openapi::OPERATIONS {
        assert!(
            doc["paths"][path][method].is_object(),
            "{method} {path} documented"
        );
        let concrete = path
            .replace("{id}", &FollowUpId::new_v4().to_string())
            .replace("{principal}", "user:x");
        let (status, _) = app
            .call_with(
                None,
                method.to_uppercase().parse().unwrap(),
                &concrete,
                None,
                &[],
            )
            .await;
        let expected = if path.starts_with("/v1") {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::OK
        };
        assert_eq!(status, expected, "{method} {path} is routed");
    }
    let metrics = app
        .client
        .get(format!("{}/metrics", app.address))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("followup_http_requests_total"),
        "{metrics}"
    );
    let (_, ready) = app.call_with(None, Method::GET, "/readyz", None, &[]).await;
    assert_eq!(ready["checks"]["nats"], true);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn readiness_tells_how_long_the_read_model_trails_and_a_burst_within_the_limit_keeps_it_ready(
    pool: PgPool,
) {
    let app = spawn_app(pool.clone()).await;
    let anna = claims("anna", "KP", &["admissions"], &["caseworker"]);
    for n in 0..3 {
        app.create_task(&anna, task(&format!("Opgave {n}"))).await;
    }
    let (status, ready) = app.ready().await;
    assert_eq!(status, StatusCode::OK, "{ready}");
    let projection = &ready["checks"]["projection"];
    // The three tasks, and anna's first request learnt her and her team into the directory.
    assert_eq!(projection["lag_events"], 5, "{ready}");
    assert!(projection["lag_seconds"].as_f64().unwrap() > 0.0, "{ready}");
    assert_eq!(projection["max_lag_seconds"], 30.0);

    // The same backlog past a limit of zero seconds: not ready, and it says why.
    let strict = spawn_app_with(pool, Some(std::time::Duration::ZERO)).await;
    let (status, ready) = strict.ready().await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{ready}");
    assert_eq!(ready["checks"]["projection"]["ok"], false);
    strict.project_all().await;
    let (status, ready) = strict.ready().await;
    assert_eq!(status, StatusCode::OK, "{ready}");
    assert_eq!(ready["checks"]["projection"]["lag_events"], 0);
    assert_eq!(ready["checks"]["projection"]["lag_seconds"], 0.0);
    let metrics = reqwest::get(format!("{}/metrics", strict.address))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("followup_projection_lag_seconds"),
        "{metrics}"
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_transaction_left_open_in_another_database_is_named_by_readiness_without_failing_it(
    pool: PgPool,
) {
    let app = spawn_app_with(pool.clone(), Some(std::time::Duration::ZERO)).await;
    // Another database of the same server: a session that wrote (so it has a transaction id)
    // and stays idle in its transaction, as a forgotten psql session would.
    let holder = followup_testkit::HeldTransaction::open(&pool).await;
    let pid = holder.pid;
    let anna = claims("anna", "KP", &["admissions"], &["caseworker"]);
    app.create_task(&anna, task("Ring til ansøger")).await;

    // Other tests' transactions come and go; the forgotten one stays and becomes the oldest.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let ready = loop {
        let (status, ready) = app.ready().await;
        assert_eq!(status, StatusCode::OK, "held back is not unready: {ready}");
        if ready["checks"]["projection"]["held_back"]["holder"]["pid"] == pid {
            break ready;
        }
        assert!(std::time::Instant::now() < deadline, "{ready}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let held_back = &ready["checks"]["projection"]["held_back"];
    assert!(held_back["events"].as_i64().unwrap() >= 1, "{ready}");
    assert_eq!(held_back["holder"]["database"], "postgres", "{ready}");
    assert_eq!(
        held_back["holder"]["state"], "idle in transaction",
        "{ready}"
    );
    assert!(held_back["holder"]["transaction_seconds"].as_f64().unwrap() > 0.0);
    // The held-back event is not the projector's backlog: it cannot read it yet.
    assert_eq!(ready["checks"]["projection"]["lag_events"], 0, "{ready}");

    holder.release().await;
    app.project_all().await;
    let (status, ready) = app.ready().await;
    assert_eq!(status, StatusCode::OK, "{ready}");
    assert_eq!(ready["checks"]["projection"]["lag_events"], 0, "{ready}");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn unstorable_text_edited_cursors_and_impossible_times_get_a_clear_4xx_never_a_5xx(
    pool: PgPool,
) {
    let app = spawn_app(pool).await;
    let anna = claims("anna", "KP", &["admissions"], &["caseworker"]);
    let (status, problem) = app
        .call(
            &anna,
            Method::POST,
            "/v1/followups",
            Some(task("Ring\u{0}til")),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(
        (problem["code"].as_str(), problem["field"].as_str()),
        (Some("invalid_text"), Some("subject"))
    );
    let body =
        json!({ "kind": "task", "subject": "Ring", "owner": { "type": "team", "id": "adm\u{0}" } });
    let (status, problem) = app
        .call(&anna, Method::POST, "/v1/followups", Some(body))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(problem["field"], "owner.id");
    let subscription = subscription_body(&json!({ "education": "Syg\u{0}" }), "immediate");
    let (status, problem) = app
        .call(&anna, Method::POST, "/v1/subscriptions", Some(subscription))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(problem["field"], "filter.education");

    for path in [
        "/v1/followups?q=ring%00",
        // A cursor edited by hand: a time far beyond what PostgreSQL can hold.
        "/v1/followups?cursor=7fffffffffffffff0b7c2f1e5d1a4a3e9f572a9c3c1d4e10",
        "/v1/followups?cursor=not-a-cursor",
        "/v1/followups?due_before=10000-01-01T00:00:00Z",
        "/v1/followups?due_before=2026-12-31T23:59:60Z",
    ] {
        let (status, problem) = app.call(&anna, Method::GET, path, None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {problem}");
    }
    let unshare = "/v1/followups/0b7c2f1e-5d1a-4a3e-9f57-2a9c3c1d4e10/shares/user:a%00b";
    let (status, problem) = app.call(&anna, Method::DELETE, unshare, None).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_text"))
    );
    for due in [
        "10000-01-01T00:00:00Z",
        "-0001-01-01T00:00:00Z",
        "0000-01-01T00:00:00Z",
        "2026-12-31T23:59:60Z",
        "2026-12-31",
    ] {
        let body = json!({ "kind": "task", "subject": "Ring", "due": due });
        let (status, problem) = app
            .call(&anna, Method::POST, "/v1/followups", Some(body))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{due}: {problem}");
        assert_eq!(problem["code"], "invalid_body", "{due}: {problem}");
    }
    let body = json!({ "kind": "task", "subject": "Ring", "due": "9999-12-31T23:59:59Z" });
    let (status, created) = app
        .call(&anna, Method::POST, "/v1/followups", Some(body))
        .await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "the last accepted year: {created}"
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn tokens_not_yet_valid_issued_in_the_future_or_living_too_long_are_refused(pool: PgPool) {
    let app = spawn_app(pool).await;
    let now = Utc::now().timestamp();
    let anna = claims("anna", "KP", &["admissions"], &["caseworker"]);
    let cases = [
        (
            "nbf in the future",
            Claims {
                nbf: Some(now + 3600),
                ..anna.clone()
            },
        ),
        (
            "iat in the future",
            Claims {
                iat: Some(now + 3600),
                ..anna.clone()
            },
        ),
        (
            "a lifetime of two days",
            Claims {
                exp: now + 2 * 86_400,
                iat: Some(now),
                ..anna.clone()
            },
        ),
        (
            "two days left without iat",
            Claims {
                exp: now + 2 * 86_400,
                iat: None,
                ..anna.clone()
            },
        ),
    ];
    for (what, claims) in cases {
        let (status, problem) = app.call(&claims, Method::GET, "/v1/followups", None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {problem}");
    }
    // A clock a few seconds ahead at the issuer is fine, and the scheme's case does not matter.
    let skewed = Claims {
        iat: Some(now + 5),
        nbf: Some(now + 5),
        ..anna.clone()
    };
    let (status, _) = app.call(&skewed, Method::GET, "/v1/followups", None).await;
    assert_eq!(status, StatusCode::OK);
    let lower = format!("bearer {}", app.token(&anna));
    let (status, _) = app
        .call_with(
            None,
            Method::GET,
            "/v1/followups",
            None,
            &[("authorization", &lower)],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn the_web_inbox_is_sent_with_a_content_security_policy_and_no_sniffing(pool: PgPool) {
    let app = spawn_app(pool).await;
    let response = reqwest::get(format!("{}/app/", app.address)).await.unwrap();
    let header = |name: &str| response.headers()[name].to_str().unwrap().to_owned();
    let csp = header("content-security-policy");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert_eq!(header("x-content-type-options"), "nosniff");
    assert_eq!(header("referrer-policy"), "no-referrer");
}

// Subscriptions and the notification inbox.

fn subscription_body(filter: &Value, delivery: &str) -> Value {
    json!({
        "topic": "education_structure.dates_changed",
        "filter": filter,
        "delivery": delivery,
    })
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_user_subscribes_lists_and_cancels_its_subscriptions(pool: PgPool) {
    let app = spawn_app(pool).await;
    let anne = claims("anne", "KP", &["uddannelse"], &["caseworker"]);
    let body = subscription_body(
        &json!({"education": "Sygeplejerskeuddannelsen"}),
        "immediate",
    );

    let (status, made) = app
        .call(&anne, Method::POST, "/v1/subscriptions", Some(body.clone()))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    assert_eq!(made["subscriber"], json!({"type": "user", "id": "anne"}));
    let (again_status, again) = app
        .call(&anne, Method::POST, "/v1/subscriptions", Some(body))
        .await;
    assert_eq!(
        again_status,
        StatusCode::OK,
        "the same subscription is not made twice"
    );
    assert_eq!(again["id"], made["id"]);
    let team_body = json!({
        "topic": "education_structure.dates_changed",
        "delivery": "daily_digest",
        "subscriber": {"type": "team", "id": "uddannelse"},
    });
    let (team_status, _) = app
        .call(&anne, Method::POST, "/v1/subscriptions", Some(team_body))
        .await;
    assert_eq!(team_status, StatusCode::CREATED);

    let (_, listed) = app
        .call(&anne, Method::GET, "/v1/subscriptions", None)
        .await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 2);

    let path = format!("/v1/subscriptions/{}", made["id"].as_str().unwrap());
    let bo = claims("bo", "KP", &[], &["caseworker"]);
    let (not_found, _) = app.call(&bo, Method::DELETE, &path, None).await;
    assert_eq!(
        not_found,
        StatusCode::NOT_FOUND,
        "someone else's subscription does not exist for bo"
    );
    let (deleted, _) = app.call(&anne, Method::DELETE, &path, None).await;
    assert_eq!(deleted, StatusCode::NO_CONTENT);
    let (_, listed) = app
        .call(&anne, Method::GET, "/v1/subscriptions", None)
        .await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_subscription_with_an_unknown_topic_filter_or_subscriber_is_refused_naming_the_field(
    pool: PgPool,
) {
    let app = spawn_app(pool).await;
    let anne = claims("anne", "KP", &["uddannelse"], &["caseworker"]);
    let cases = [
        (
            json!({"topic": "education_structure.renamed", "delivery": "immediate"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "topic",
        ),
        (
            subscription_body(&json!({"campus": "Nørrebro"}), "immediate"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "filter",
        ),
        (
            subscription_body(&json!({"education": 7}), "immediate"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "filter",
        ),
        (
            subscription_body(&json!({}), "weekly"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "delivery",
        ),
        (
            json!({"topic": "education_structure.dates_changed", "delivery": "immediate",
                   "subscriber": {"type": "team", "id": "ledelse"}}),
            StatusCode::FORBIDDEN,
            "subscriber",
        ),
        (
            json!({"topic": "education_structure.dates_changed", "delivery": "immediate",
                   "subscriber": {"type": "user", "id": "bo"}}),
            StatusCode::FORBIDDEN,
            "subscriber",
        ),
    ];
    for (body, expected, field) in cases {
        let (status, problem) = app
            .call(&anne, Method::POST, "/v1/subscriptions", Some(body.clone()))
            .await;
        assert_eq!(status, expected, "{body}: {problem}");
        assert_eq!(problem["field"], json!(field), "{body}: {problem}");
    }
    let (_, listed) = app
        .call(&anne, Method::GET, "/v1/subscriptions", None)
        .await;
    assert!(listed["items"].as_array().unwrap().is_empty());
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_team_notification_is_read_and_dismissed_by_each_member_on_their_own(pool: PgPool) {
    let app = spawn_app(pool.clone()).await;
    let anne = claims("anne", "KP", &["uddannelse"], &["caseworker"]);
    let bo = claims("bo", "KP", &["uddannelse"], &["caseworker"]);
    let outsider = claims("cai", "KP", &["optag"], &["caseworker"]);
    let sent = app
        .create_task(
            &anne,
            json!({"kind": "notification", "subject": "Ny studieordning fra 1. februar",
                   "owner": {"type": "team", "id": "uddannelse"}}),
        )
        .await;
    let id = sent["id"].as_str().unwrap().to_owned();
    let unread = |v: &Value| v["unread_notifications"].as_i64().unwrap();

    let (status, read) = app
        .call(
            &anne,
            Method::POST,
            &format!("/v1/notifications/{id}/read"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{read}");
    assert_eq!(read["state"], "read");

    let (_, anne_inbox) = app
        .call(&anne, Method::GET, "/v1/notifications", None)
        .await;
    let (_, bo_inbox) = app.call(&bo, Method::GET, "/v1/notifications", None).await;
    assert_eq!(anne_inbox["items"][0]["state"], "read");
    assert_eq!(bo_inbox["items"][0]["state"], "unread");
    let (_, anne_dashboard) = app.call(&anne, Method::GET, "/v1/dashboard", None).await;
    let (_, bo_dashboard) = app.call(&bo, Method::GET, "/v1/dashboard", None).await;
    assert_eq!((unread(&anne_dashboard), unread(&bo_dashboard)), (0, 1));

    let (status, _) = app
        .call(
            &bo,
            Method::POST,
            &format!("/v1/notifications/{id}/dismiss"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, bo_inbox) = app.call(&bo, Method::GET, "/v1/notifications", None).await;
    assert!(
        bo_inbox["items"].as_array().unwrap().is_empty(),
        "dismissed ones leave the inbox"
    );
    let (_, bo_dismissed) = app
        .call(&bo, Method::GET, "/v1/notifications?state=dismissed", None)
        .await;
    assert_eq!(bo_dismissed["items"][0]["id"], json!(id));
    let (_, anne_inbox) = app
        .call(&anne, Method::GET, "/v1/notifications", None)
        .await;
    assert_eq!(
        anne_inbox["items"].as_array().unwrap().len(),
        1,
        "anne's inbox keeps it"
    );

    let (status, _) = app
        .call(
            &outsider,
            Method::POST,
            &format!("/v1/notifications/{id}/read"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let task = app
        .create_task(
            &anne,
            json!({"kind": "task", "subject": "Ring til ansøger"}),
        )
        .await;
    let (status, problem) = app
        .call(
            &anne,
            Method::POST,
            &format!("/v1/notifications/{}/read", task["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(problem["code"], "not_a_notification");

    // The inbox is a projection like the rest: rebuilt from the events alone, it is the same.
    sqlx::query("DELETE FROM notification_inbox")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("DELETE FROM projection_checkpoints")
        .execute(&pool)
        .await
        .unwrap();
    app.project_all().await;
    let (_, bo_dismissed) = app
        .call(&bo, Method::GET, "/v1/notifications?state=dismissed", None)
        .await;
    assert_eq!(bo_dismissed["items"][0]["id"], json!(id));
    let (_, anne_inbox) = app
        .call(&anne, Method::GET, "/v1/notifications", None)
        .await;
    assert_eq!(anne_inbox["items"][0]["state"], "read");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn the_inbox_lists_unread_notifications_first_and_pages_without_repeats(pool: PgPool) {
    let app = spawn_app(pool).await;
    let anne = claims("anne", "KP", &[], &["caseworker"]);
    let mut ids = Vec::new();
    for i in 0..5 {
        let sent = app
            .create_task(
                &anne,
                json!({"kind": "notification", "subject": format!("Besked {i}")}),
            )
            .await;
        ids.push(sent["id"].as_str().unwrap().to_owned());
    }
    // The newest is read: it goes after the four unread ones.
    app.call(
        &anne,
        Method::POST,
        &format!("/v1/notifications/{}/read", ids[4]),
        None,
    )
    .await;

    let mut seen = Vec::new();
    let mut path = "/v1/notifications?limit=2".to_owned();
    loop {
        let (status, page) = app.call(&anne, Method::GET, &path, None).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        for item in page["items"].as_array().unwrap() {
            seen.push((
                item["id"].as_str().unwrap().to_owned(),
                item["state"].clone(),
            ));
        }
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/v1/notifications?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    let order: Vec<&str> = seen.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(order, [&ids[3], &ids[2], &ids[1], &ids[0], &ids[4]]);
    assert_eq!(seen[4].1, "read");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn an_admin_manages_the_subscriptions_of_any_team_of_its_institution(pool: PgPool) {
    let app = spawn_app(pool).await;
    let boss = claims("boss", "KP", &[], &["admin"]);
    let body = json!({
        "topic": "education_structure.dates_changed",
        "delivery": "immediate",
        "subscriber": {"type": "team", "id": "ledelse"},
    });

    let (status, made) = app
        .call(&boss, Method::POST, "/v1/subscriptions", Some(body.clone()))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    let (again, same) = app
        .call(&boss, Method::POST, "/v1/subscriptions", Some(body))
        .await;
    assert_eq!((again, &same["id"]), (StatusCode::OK, &made["id"]));
    let (_, listed) = app
        .call(&boss, Method::GET, "/v1/subscriptions", None)
        .await;
    assert_eq!(listed["items"][0]["id"], made["id"]);
    let path = format!("/v1/subscriptions/{}", made["id"].as_str().unwrap());
    let (deleted, _) = app.call(&boss, Method::DELETE, &path, None).await;
    assert_eq!(deleted, StatusCode::NO_CONTENT);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_live_stream_ends_when_its_token_expires(pool: PgPool) {
    let app = spawn_app(pool).await;
    let js = async_nats::jetstream::new(app._nats.client().await);
    followup_messaging::ensure_streams(&js, &followup_messaging::Streams::default())
        .await
        .unwrap();
    let mut short = claims("anne", "KP", &[], &["caseworker"]);
    short.exp = (Utc::now() + Duration::seconds(2)).timestamp();

    let mut response = app
        .client
        .get(format!("{}/v1/stream", app.address))
        .bearer_auth(app.token(&short))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let ended = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while response.chunk().await.unwrap().is_some() {}
    })
    .await;

    assert!(ended.is_ok(), "the stream ended once the token expired");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_cpr_number_in_any_field_a_user_sends_is_refused_with_422_naming_the_field(pool: PgPool) {
    let app = spawn_app(pool).await;
    let anna = claims("anna", "KP", &["admissions"], &["caseworker"]);
    let created = app.create_task(&anna, task("Ring til ansøgeren")).await;
    let id = created["id"].as_str().unwrap();
    let cases = [
        (
            "/v1/followups",
            Method::POST,
            json!({ "kind": "task", "subject": "Ring", "regarding": { "type": "student", "id": "010203-1234" } }),
            "regarding.id",
        ),
        (
            "/v1/followups",
            Method::POST,
            json!({ "kind": "task", "subject": "Ring", "owner": { "type": "user", "id": "0102031234" } }),
            "owner.id",
        ),
        (
            &format!("/v1/followups/{id}/assign") as &str,
            Method::POST,
            json!({ "owner": { "type": "user", "id": "010203 1234" } }),
            "owner.id",
        ),
        (
            &format!("/v1/followups/{id}/shares"),
            Method::POST,
            json!({ "principal": { "type": "team", "id": "t-010203-1234" }, "access": "view" }),
            "principal.id",
        ),
        (
            &format!("/v1/followups/{id}"),
            Method::PATCH,
            json!({ "description": "Ansøger 010203-1234 ringer" }),
            "description",
        ),
        (
            "/v1/subscriptions",
            Method::POST,
            subscription_body(&json!({ "home_institution": "0102031234" }), "immediate"),
            "filter.home_institution",
        ),
    ];
    for (path, method, body, field) in cases {
        let (status, problem) = app.call(&anna, method, path, Some(body)).await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{path}: {problem}"
        );
        assert_eq!(problem["code"], "gdpr_cpr_number", "{path}: {problem}");
        assert_eq!(problem["field"], field, "{path}: {problem}");
        assert!(
            followup_domain::find_cpr(&problem.to_string()).is_none(),
            "the refusal does not repeat the number: {problem}"
        );
    }
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_token_for_an_institution_the_service_does_not_serve_is_refused(pool: PgPool) {
    let app = spawn_app(pool).await;
    for institution in ["NOPE", "kp", "0102031234"] {
        let stranger = claims("anna", institution, &[], &["caseworker"]);
        let (status, problem) = app
            .call(&stranger, Method::GET, "/v1/followups", None)
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{institution}: {problem}");
        assert!(
            problem["detail"]
                .as_str()
                .unwrap()
                .contains("not one this service serves"),
            "{problem}"
        );
        assert!(!problem.to_string().contains("0102031234"), "{problem}");
    }
    for (sub, teams) in [("0102031234", vec![]), ("anna", vec!["010203-1234"])] {
        let cpr = claims(sub, "KP", &teams, &["caseworker"]);
        let (status, problem) = app.call(&cpr, Method::GET, "/v1/followups", None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{sub}: {problem}");
        assert!(
            followup_domain::find_cpr(&problem.to_string()).is_none(),
            "{problem}"
        );
    }
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn readiness_names_a_worker_that_keeps_failing_and_fails_past_the_limit(pool: PgPool) {
    let app = spawn_app_configured(pool, |state| AppState {
        ready_max_failing: Some(std::time::Duration::from_millis(200)),
        ..state
    })
    .await;
    followup_platform::health::failed("readiness-test-worker", "events: permission denied");
    let (status, ready) = app.ready().await;
    let worker = &ready["checks"]["workers"]["readiness-test-worker"];
    assert!(
        worker.get("last_error").is_none(),
        "error texts stay in the logs, not on an open endpoint: {ready}"
    );
    assert_eq!(worker["failed_batches"], 1, "{ready}");
    assert!(worker["failing_seconds"].as_f64().is_some(), "{ready}");
    assert_eq!(status, StatusCode::OK, "within the limit: {ready}");

    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let (status, ready) = app.ready().await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{ready}");
    assert_eq!(
        ready["checks"]["workers"]["readiness-test-worker"]["ok"],
        false
    );

    followup_platform::health::succeeded("readiness-test-worker");
    let (status, ready) = app.ready().await;
    assert_eq!(status, StatusCode::OK, "{ready}");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_client_that_sends_its_headers_slowly_or_idles_is_disconnected(pool: PgPool) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = spawn_app_configured(pool, |state| AppState {
        header_read_timeout: std::time::Duration::from_millis(300),
        ..state
    })
    .await;
    let address = app.address.trim_start_matches("http://").to_owned();
    let closed_within = |mut stream: tokio::net::TcpStream| async move {
        let mut answer = Vec::new();
        tokio::time::timeout(
            std::time::Duration::from_secs(3),
            stream.read_to_end(&mut answer),
        )
        .await
        .expect("the server closes the connection")
        .ok();
        String::from_utf8_lossy(&answer).into_owned()
    };

    // Half a header, then nothing: the connection is closed without an answer.
    let mut slow = tokio::net::TcpStream::connect(&address).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let answer = closed_within(slow).await;
    assert!(!answer.contains("200 OK"), "{answer}");

    // A whole request is answered; then the idle keep-alive connection is closed.
    let mut idle = tokio::net::TcpStream::connect(&address).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let answer = closed_within(idle).await;
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_page_cursor_works_as_handed_out_and_is_refused_when_edited(pool: PgPool) {
    let app = spawn_app(pool).await;
    let anna = claims("anna", "KP", &["admissions"], &["caseworker"]);
    for n in 0..3 {
        app.create_task(&anna, task(&format!("Opgave {n}"))).await;
    }
    app.project_all().await;
    let (status, first) = app
        .call(&anna, Method::GET, "/v1/followups?limit=2", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let cursor = first["next_cursor"].as_str().unwrap().to_owned();
    let (status, second) = app
        .call(
            &anna,
            Method::GET,
            &format!("/v1/followups?limit=2&cursor={cursor}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{second}");
    assert_eq!(second["items"].as_array().unwrap().len(), 1);

    // One digit of the time changed: a cursor this service never handed out.
    let mut edited = cursor.into_bytes();
    edited[3] = if edited[3] == b'0' { b'1' } else { b'0' };
    let edited = String::from_utf8(edited).unwrap();
    let (status, problem) = app
        .call(
            &anna,
            Method::GET,
            &format!("/v1/followups?cursor={edited}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
    assert_eq!(problem["code"], "bad_cursor", "{problem}");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn an_admin_erases_a_student_except_what_a_legal_hold_keeps_and_caseworkers_may_do_neither(
    pool: PgPool,
) {
    // Given two tasks about student S-1 and one about S-2, created by a caseworker
    let app = spawn_app(pool).await;
    let anna = claims("anna", "KP", &["studieadministration"], &["caseworker"]);
    let admin = claims("dpo", "KP", &[], &["admin"]);
    let about = |student: &str, subject: &str| json!({ "kind": "task", "subject": subject, "regarding": {"type": "student", "id": student} });
    let first = app
        .create_task(&anna, about("S-1", "Samtale om orlov"))
        .await;
    let second = app.create_task(&anna, about("S-1", "Merit for S-1")).await;
    let other = app
        .create_task(&anna, about("S-2", "Samtale om merit"))
        .await;
    assert_eq!(first["person"], json!({"type": "student", "id": "S-1"}));
    let hold_path = format!(
        "/v1/followups/{}/legal-hold",
        second["id"].as_str().unwrap()
    );

    // When a caseworker tries to hold or erase, it is refused
    let hold = json!({"reason": "Klagesag 2026-7"});
    let (status, problem) = app
        .call(&anna, Method::PUT, &hold_path, Some(hold.clone()))
        .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("admin_only"))
    );
    let erase = json!({"subject": "student:S-1", "reason": "Anmodning 2026-14"});
    let (status, _) = app
        .call(&anna, Method::POST, "/v1/erasures", Some(erase.clone()))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // When the admin holds the second task and erases the student
    let (status, held) = app.call(&admin, Method::PUT, &hold_path, Some(hold)).await;
    assert_eq!(status, StatusCode::OK, "{held}");
    assert_eq!(held["legal_hold"], "Klagesag 2026-7");
    let (status, report) = app
        .call(&admin, Method::POST, "/v1/erasures", Some(erase.clone()))
        .await;
    assert_eq!(status, StatusCode::OK, "{report}");

    // Then the first is erased, the held one is kept and reported, the other student's stays
    assert_eq!(report["erased"], json!([first["id"]]));
    assert_eq!(report["held"], json!([second["id"]]));
    let read = |f: &Value| format!("/v1/followups/{}", f["id"].as_str().unwrap());
    let (_, erased) = app.call(&anna, Method::GET, &read(&first), None).await;
    assert_eq!(erased["subject"], "[slettet]");
    assert_eq!(
        erased["regarding"],
        json!({"type": "student", "id": "[slettet]"})
    );
    let (_, kept) = app.call(&anna, Method::GET, &read(&second), None).await;
    assert_eq!(kept["subject"], "Merit for S-1");
    let (_, untouched) = app.call(&anna, Method::GET, &read(&other), None).await;
    assert_eq!(untouched["subject"], "Samtale om merit");
    // And an erased follow-up's texts cannot be written again
    let (status, problem) = app
        .call(
            &anna,
            Method::PATCH,
            &read(&first),
            Some(json!({"subject": "Ny tekst om S-1"})),
        )
        .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (StatusCode::CONFLICT, Some("erased"))
    );

    // When the hold is lifted and the request repeated, the held one goes too
    let (status, _) = app.call(&admin, Method::DELETE, &hold_path, None).await;
    assert_eq!(status, StatusCode::OK);
    let (_, again) = app
        .call(&admin, Method::POST, "/v1/erasures", Some(erase))
        .await;
    assert_eq!(again["erased"], json!([second["id"]]), "{again}");
    let (_, gone) = app.call(&anna, Method::GET, &read(&second), None).await;
    assert_eq!(gone["subject"], "[slettet]");
    // And a request with a CPR number in its reason is refused, naming the field
    let (status, problem) = app
        .call(
            &admin,
            Method::POST,
            "/v1/erasures",
            Some(json!({"subject": "student:S-2", "reason": "cpr 010190-1234"})),
        )
        .await;
    assert_eq!(
        (status, problem["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("reason"))
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn notes_are_added_by_those_who_may_change_a_follow_up_guarded_and_kept_in_its_history(
    pool: PgPool,
) {
    let app = spawn_app(pool).await;
    let anna = claims("anna", "KP", &["admissions"], &["caseworker"]);
    let bo = claims("bo", "KP", &[], &["caseworker"]);
    let created = app.create_task(&anna, task("Vurdér merit")).await;
    let path = format!("/v1/followups/{}", created["id"].as_str().unwrap());

    let (status, note) = app
        .call(
            &anna,
            Method::POST,
            &format!("{path}/notes"),
            Some(json!({ "text": "  Ringede til ansøger.\r\nVender tilbage fredag.  " })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{note}");
    assert_eq!(note["text"], "Ringede til ansøger.\nVender tilbage fredag.");
    assert_eq!(note["author"], json!({ "type": "user", "id": "anna" }));

    // The GDPR guard, as for every user text, naming the field.
    let (status, refused) = app
        .call(
            &anna,
            Method::POST,
            &format!("{path}/notes"),
            Some(json!({ "text": "Se lægeerklæring for 010203-1234" })),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    assert_eq!(refused["field"], "text");
    let (status, _) = app
        .call(
            &anna,
            Method::POST,
            &format!("{path}/notes"),
            Some(json!({ "text": "   " })),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    // Someone who cannot see it cannot read or add notes either.
    let (status, _) = app
        .call(&bo, Method::GET, &format!("{path}/notes"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app
        .call(
            &bo,
            Method::POST,
            &format!("{path}/notes"),
            Some(json!({ "text": "Hej" })),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (_, notes) = app
        .call(&anna, Method::GET, &format!("{path}/notes"), None)
        .await;
    assert_eq!(notes["items"].as_array().unwrap().len(), 1);
    let (_, history) = app
        .call(&anna, Method::GET, &format!("{path}/history"), None)
        .await;
    let last = history["items"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["type"], "note_added");
    assert_eq!(
        last["data"]["text"],
        "Ringede til ansøger.\nVender tilbage fredag."
    );

    // A finished follow-up takes no more notes.
    let (status, _) = app
        .call(&anna, Method::POST, &format!("{path}/complete"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = app
        .call(
            &anna,
            Method::POST,
            &format!("{path}/notes"),
            Some(json!({ "text": "For sent" })),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
}
