//! Shared test support: a database with follow-ups of every kind, projected; dumps of the
//! read model's tables to compare; the binary, run as an operator would.

#![allow(dead_code)]

use std::process::{Command as Process, Output, Stdio};

use chrono::Utc;
use followup_domain::{
    Access, Actor, Command, Context, Delivery, Description, Edit, Filter, FollowUpId,
    InstitutionId, Kind, NewFollowUp, NewSubscription, Principal, Priority, Source, StatusReason,
    Subject, SubscriptionCommand, SubscriptionId, Topic, UserId,
};
use followup_readmodel::{Projection, ReadModel};
use followup_store::followups::upcaster;
use followup_store::{CommandMeta, EventStore, Expect, FollowUps, Subscriptions};
use serde_json::Value;
use sqlx::PgPool;

/// The event store, upcasting as the projector needs.
pub fn store(pool: &PgPool) -> EventStore {
    EventStore::new(pool.clone()).with_upcaster(upcaster())
}

/// The follow-up repository.
pub fn repo(pool: &PgPool) -> FollowUps {
    FollowUps::new(store(pool))
}

/// The live projector.
pub fn projector(pool: &PgPool) -> Projection {
    Projection::new(store(pool), ReadModel::new(pool.clone()))
}

/// Projects everything committed so far into the live tables.
pub async fn project(pool: &PgPool) {
    store(pool)
        .wait_until_readable(std::time::Duration::from_secs(10))
        .await
        .unwrap();
    projector(pool).process_pending().await.unwrap();
}

pub fn user(id: &str) -> Context {
    Context {
        actor: Actor::User {
            id: UserId::parse(id).unwrap(),
        },
        now: Utc::now(),
    }
}

/// Runs `command` on `id` as `actor`.
pub async fn run(repo: &FollowUps, id: FollowUpId, command: Command, actor: &str) {
    repo.execute(
        id,
        command,
        &user(actor),
        &CommandMeta::default(),
        Expect::Current,
    )
    .await
    .unwrap();
}

/// Creates a follow-up of `kind` owned by `owner` (an exception as a rule would).
pub async fn create(repo: &FollowUps, kind: Kind, n: usize, owner: &str) -> FollowUpId {
    let id = FollowUpId::new_v4();
    let by_rule = kind == Kind::Exception;
    let ctx = if by_rule {
        Context {
            actor: Actor::Rule {
                id: "applicant-transfer-defects".into(),
            },
            now: Utc::now(),
        }
    } else {
        user("u1")
    };
    let command = Command::Create(NewFollowUp {
        id,
        institution: InstitutionId::parse(["KP", "UCL"][n % 2]).unwrap(),
        kind,
        subject: Subject::parse(&format!("Fejl ved overførsel af ansøgning A-{n}")).unwrap(),
        description: Description::parse("Manglende obligatoriske SUE'er").unwrap(),
        regarding: None,
        person: None,
        owner: owner.parse::<Principal>().unwrap(),
        due: Some(Utc::now() + chrono::Duration::days(3)),
        priority: Priority::Normal,
        source: if by_rule {
            Source::Rule {
                rule_id: "applicant-transfer-defects".into(),
                job: "J-1".into(),
            }
        } else {
            Source::User {
                id: UserId::parse("u1").unwrap(),
            }
        },
    });
    repo.execute(id, command, &ctx, &CommandMeta::default(), Expect::Current)
        .await
        .unwrap();
    id
}

/// `n` follow-ups of every kind with a varied history (edits, shares, completions, read and
/// dismissed notifications) and two subscriptions (one cancelled). Returns the follow-ups.
pub async fn seed(pool: &PgPool, n: usize) -> Vec<FollowUpId> {
    let repo = repo(pool);
    let mut ids = Vec::new();
    for i in 0..n {
        let kind = [Kind::Exception, Kind::Task, Kind::Notification][i % 3];
        let owner = if kind == Kind::Notification {
            "user:u2"
        } else {
            "team:admissions"
        };
        let id = create(&repo, kind, i, owner).await;
        match (kind, i % 4) {
            (Kind::Notification, 0) => {
                run(
                    &repo,
                    id,
                    Command::MarkRead {
                        user: "u2".parse().unwrap(),
                    },
                    "u2",
                )
                .await;
            }
            (Kind::Notification, 1) => {
                run(
                    &repo,
                    id,
                    Command::MarkRead {
                        user: "u2".parse().unwrap(),
                    },
                    "u2",
                )
                .await;
                run(
                    &repo,
                    id,
                    Command::Dismiss {
                        user: "u2".parse().unwrap(),
                    },
                    "u2",
                )
                .await;
            }
            (Kind::Notification, _) => {}
            (_, 0) => {
                let edit = Edit {
                    status_reason: Some(StatusReason::InProgress),
                    ..Edit::default()
                };
                run(&repo, id, Command::Edit(edit), "u1").await;
                run(&repo, id, Command::Complete, "u1").await;
            }
            (_, 1) => {
                let share = Command::Share {
                    principal: "team:eksamen".parse().unwrap(),
                    access: Access::Write,
                };
                run(&repo, id, share, "u1").await;
            }
            _ => {}
        }
        ids.push(id);
    }
    let subscriptions = Subscriptions::new(store(pool));
    for cancel in [false, true] {
        let id = SubscriptionId::new_v4();
        let topic = Topic::parse("education_structure.dates_changed").unwrap();
        let new = NewSubscription {
            id,
            institution: InstitutionId::parse("KP").unwrap(),
            subscriber: "user:u2".parse().unwrap(),
            filter: Filter::parse(&topic, std::iter::empty()).unwrap(),
            topic,
            delivery: Delivery::Immediate,
        };
        subscriptions
            .execute(
                id,
                SubscriptionCommand::Subscribe(new),
                &Context {
                    actor: Actor::System,
                    now: Utc::now(),
                },
                &CommandMeta::default(),
                Expect::Current,
            )
            .await
            .unwrap();
        if cancel {
            subscriptions
                .execute(
                    id,
                    SubscriptionCommand::Cancel,
                    &Context {
                        actor: Actor::System,
                        now: Utc::now(),
                    },
                    &CommandMeta::default(),
                    Expect::Current,
                )
                .await
                .unwrap();
        }
    }
    ids
}

/// The read model's three tables, row by row, in key order.
#[derive(Debug, PartialEq)]
pub struct Dump {
    pub followups: Vec<Value>,
    pub inbox: Vec<Value>,
    pub subscriptions: Vec<Value>,
}

pub async fn dump(pool: &PgPool) -> Dump {
    let rows = |sql: &'static str| async move {
        sqlx::query_scalar::<_, Value>(sql)
            .fetch_all(pool)
            .await
            .unwrap()
    };
    Dump {
        followups: rows("SELECT to_jsonb(t) FROM followups_view t ORDER BY id").await,
        inbox: rows("SELECT to_jsonb(t) FROM notification_inbox t ORDER BY user_id, followup_id")
            .await,
        subscriptions: rows("SELECT to_jsonb(t) FROM subscriptions t ORDER BY id").await,
    }
}

/// The names of the indexes of the live tables, sorted.
pub async fn index_names(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT indexname::text FROM pg_indexes
         WHERE tablename IN ('followups_view', 'notification_inbox', 'subscriptions')
         ORDER BY indexname",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

/// A URL of the test's database, for the binary.
pub fn database_url(pool: &PgPool) -> String {
    let options = pool.connect_options();
    format!(
        "postgres://{}@{}:{}/{}",
        options.get_username(),
        options.get_host(),
        options.get_port(),
        options.get_database().unwrap()
    )
}

/// Runs `followupctl` with `args` and `env`, without a terminal, and returns what it did.
pub fn followupctl(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Process::new(env!("CARGO_BIN_EXE_followupctl"));
    command
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("FOLLOWUP_MIGRATE_DATABASE_URL")
        .env_remove("FOLLOWUP_ADMIN_DATABASE_URL")
        .env_remove("NATS_URL")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null());
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().unwrap()
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
