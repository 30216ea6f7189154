//! `followupctl bench api`: 1,000,000 follow-ups appended to a scratch event store, the
//! projector's catch-up over them, then list and dashboard latency over HTTP for a caseworker
//! who can see about 200 open follow-ups.

use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use clap::Args;
use followup_api::{AppState, Auth, Claims};
use followup_domain::{
    decide, Actor, Command, Context, Description, FollowUpId, InstitutionId, Kind, NewFollowUp,
    Principal, Priority, Regarding, Source, Subject, TeamId, UserId,
};
use followup_readmodel::{Projection, ReadModel};
use followup_store::followups::upcaster;
use followup_store::{Decided, EventStore, FollowUps};
use hdrhistogram::Histogram;
use sqlx::PgPool;

/// Settings of `bench api`.
#[derive(Debug, Args)]
pub struct ApiArgs {
    /// Follow-ups in the read model.
    #[arg(long, default_value_t = 1_000_000)]
    followups: usize,
    /// Requests per measured route.
    #[arg(long, default_value_t = 2000)]
    requests: usize,
}

const INSTITUTIONS: &[&str] = &[
    "KP", "UCL", "VIA", "UCN", "UCSYD", "PHA", "EAAA", "EASJ", "DMJX", "SIMAC",
];
const TEAMS_PER_INSTITUTION: usize = 500;
const USERS_PER_INSTITUTION: usize = 2000;

/// The n-th seeded follow-up: alternately team- and user-owned, spread over institutions.
fn seeded(n: usize) -> NewFollowUp {
    let institution = INSTITUTIONS[n % INSTITUTIONS.len()];
    let k = n / INSTITUTIONS.len();
    let (kind, owner) = if n.is_multiple_of(2) {
        (
            Kind::Exception,
            Principal::Team(
                TeamId::parse(&format!("t-{}", (k / 2) % TEAMS_PER_INSTITUTION)).expect("valid"),
            ),
        )
    } else {
        (
            Kind::Task,
            Principal::User(
                UserId::parse(&format!("u-{}", (k / 2) % USERS_PER_INSTITUTION)).expect("valid"),
            ),
        )
    };
    NewFollowUp {
        id: FollowUpId::new_v4(),
        institution: InstitutionId::parse(institution).expect("valid"),
        kind,
        subject: Subject::from_upstream(&format!(
            "Fejl ved overførsel af ansøgning APP-{n:07} til studieforløb"
        )),
        description: Description::from_upstream(
            "Manglende obligatoriske SUE'er: Anatomi og fysiologi (SUE-SYG-1001), 1. semester",
        ),
        regarding: Some(Regarding::parse("application", &format!("APP-{n:07}")).expect("valid")),
        person: None,
        owner,
        due: Some(Utc::now() + chrono::Duration::days((n % 30) as i64 - 10)),
        priority: Priority::Normal,
        source: Source::Rule {
            rule_id: "applicant-transfer-defects".into(),
            job: "bench".into(),
        },
    }
}

pub async fn run(args: &ApiArgs, pool: PgPool) -> anyhow::Result<()> {
    let store = EventStore::new(pool.clone()).with_upcaster(upcaster());
    println!(
        "bench api: {} follow-ups, PostgreSQL beside it",
        args.followups
    );

    let started = Instant::now();
    let ctx = Context {
        actor: Actor::Rule { id: "bench".into() },
        now: Utc::now(),
    };
    let batch = 2000;
    let mut n = 0;
    while n < args.followups {
        let appends = (n..(n + batch).min(args.followups))
            .map(|i| {
                let new = seeded(i);
                let id = new.id;
                let events = decide(&None, Command::Create(new), &ctx).expect("a valid creation");
                Decided {
                    id,
                    version: 0,
                    events,
                    ctx: ctx.clone(),
                }
            })
            .collect();
        FollowUps::new(store.clone()).import(appends).await?;
        n += batch;
    }
    println!(
        "seeded {} created events in {:.1?}",
        args.followups,
        started.elapsed()
    );

    let read_model = ReadModel::new(pool.clone());
    let projector = Projection::new(store.clone(), read_model.clone());
    let started = Instant::now();
    let mut projected = 0;
    loop {
        let n = projector.process_pending().await?;
        if n == 0 {
            break;
        }
        projected += n;
    }
    let elapsed = started.elapsed();
    println!(
        "projector catch-up: {projected} events in {elapsed:.1?}: {:.0} events/s (target: at least 100,000)",
        projected as f64 / elapsed.as_secs_f64()
    );
    sqlx::query("ANALYZE followups_view").execute(&pool).await?;

    let secret = "a-benchmark-secret-that-is-long-enough-for-hs256";
    let state = Arc::new(AppState::new(
        FollowUps::new(store),
        read_model,
        Auth::new(secret),
        None,
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let shutdown = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(followup_api::serve(listener, state, shutdown.clone()));
    // A caseworker at KP in two teams: about 200 open follow-ups visible.
    let token = Auth::new(secret).mint(&Claims {
        sub: "u-7".into(),
        inst: "KP".into(),
        teams: vec!["t-3".into(), "t-4".into()],
        roles: vec!["caseworker".into()],
        exp: (Utc::now() + chrono::Duration::hours(1)).timestamp(),
        iat: Some(Utc::now().timestamp()),
        nbf: None,
    });
    let http = reqwest::Client::new();
    let visible: serde_json::Value = http
        .get(format!("{base}/v1/dashboard"))
        .bearer_auth(&token)
        .send()
        .await?
        .json()
        .await?;
    println!("the caseworker's dashboard: {visible}");
    for (name, path) in [
        (
            "list (open, first page of 50)",
            "/v1/followups?status=open&limit=50",
        ),
        (
            "list (overdue exceptions)",
            "/v1/followups?kind=exception&overdue=true",
        ),
        ("dashboard", "/v1/dashboard"),
    ] {
        let mut histogram = Histogram::<u64>::new(3)?;
        for _ in 0..args.requests / 10 {
            http.get(format!("{base}{path}"))
                .bearer_auth(&token)
                .send()
                .await?
                .bytes()
                .await?;
        }
        for _ in 0..args.requests {
            let t = Instant::now();
            let response = http
                .get(format!("{base}{path}"))
                .bearer_auth(&token)
                .send()
                .await?;
            anyhow::ensure!(
                response.status().is_success(),
                "{path}: {}",
                response.status()
            );
            response.bytes().await?;
            histogram.record(t.elapsed().as_micros() as u64)?;
        }
        let ms = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
        println!(
            "{name:<32} over HTTP, {} requests: p50 {:.2} ms, p99 {:.2} ms (target: p99 at most 10 ms)",
            args.requests,
            ms(0.5),
            ms(0.99)
        );
    }
    shutdown.cancel();
    server.await??;
    Ok(())
}
