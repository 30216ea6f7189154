//! `followupctl bench notify`: one approved structure change with N matching subscriptions,
//! through the real notifier (in this process, against a private nats-server and a scratch
//! database): the time from publishing the event until every notification is in its
//! subscriber's inbox (the read model the inbox is served from).

use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::HeaderMap;
use bytes::Bytes;
use chrono::Utc;
use clap::Args;
use followup_domain::{
    Actor, Context, Delivery, Filter, InstitutionId, NewSubscription, SubscriptionCommand,
    SubscriptionId, Topic,
};
use followup_messaging::{ensure_streams, publish_event, Streams};
use followup_notifier::{Notifier, NotifierConfig};
use followup_readmodel::ReadModel;
use followup_store::followups::upcaster;
use followup_store::{CommandMeta, EventStore, Expect, FollowUps, Subscriptions};
use followup_testkit::NatsServer;
use futures::StreamExt;
use serde_json::json;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

/// Settings of `bench notify`.
#[derive(Debug, Args)]
pub struct NotifyArgs {
    /// Matching subscriptions (each of another user).
    #[arg(long, default_value_t = 10_000)]
    subscriptions: usize,
    /// Structure changes to publish, one after the other, each measured on its own.
    #[arg(long, default_value_t = 3)]
    events: usize,
}

pub async fn run(args: &NotifyArgs, pool: PgPool) -> anyhow::Result<()> {
    let nats = NatsServer::start();
    let js = async_nats::jetstream::new(nats.client().await);
    ensure_streams(&js, &Streams::default()).await?;
    let store = EventStore::new(pool.clone()).with_upcaster(upcaster());
    let followups = FollowUps::new(store.clone());
    let read_model = ReadModel::new(pool.clone());
    println!(
        "bench notify: notifier in this process, private nats-server, PostgreSQL beside it; \
         {} subscriptions at KP to education_structure.dates_changed",
        args.subscriptions
    );

    let seeding = Instant::now();
    let subscriptions = Subscriptions::new(store.clone());
    let topic = Topic::parse("education_structure.dates_changed")?;
    let made: Vec<_> = futures::stream::iter(0..args.subscriptions)
        .map(|i| {
            let (subscriptions, topic) = (subscriptions.clone(), topic.clone());
            async move {
                let id = SubscriptionId::new_v4();
                let filter = Filter::parse(
                    &topic,
                    [(
                        "education".to_owned(),
                        "Sygeplejerskeuddannelsen".to_owned(),
                    )],
                )?;
                let new = NewSubscription {
                    id,
                    institution: InstitutionId::parse("KP")?,
                    subscriber: format!("user:bench{i}").parse()?,
                    topic,
                    filter,
                    delivery: Delivery::Immediate,
                };
                let made = subscriptions
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
                    .await?;
                anyhow::Ok(made.state)
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    let made = made.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
    for chunk in made.chunks(1000) {
        read_model.upsert_subscriptions(chunk).await?;
    }
    println!(
        "  seeded {} subscriptions in {:.1}s",
        made.len(),
        seeding.elapsed().as_secs_f64()
    );

    let notifier =
        Notifier::new(js.clone(), followups, read_model, NotifierConfig::default()).await?;
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(notifier.run(shutdown.clone()));
    let mut rates = Vec::new();
    for run in 0..args.events {
        let new_start = format!("2027-02-{:02}", 8 + run);
        let event = json!({
            "specversion": "1.0",
            "id": format!("bench-structure-change-{run}-{}", uuid::Uuid::new_v4()),
            "source": "esas/education-structures",
            "type": "dk.esas.event.education_structure.dates_changed",
            "time": Utc::now(),
            "subject": "education_structure/GUS-SYG-2027F",
            "datacontenttype": "application/json",
            "institution": "KP",
            "data": {
                "structure_id": "GUS-SYG-2027F",
                "name": "Sygeplejerskeuddannelsen, grundstruktur forår 2027",
                "education": "Sygeplejerskeuddannelsen",
                "status": "godkendt",
                "old_start": "2027-02-01",
                "new_start": new_start,
                "old_end": "2030-06-30",
                "new_end": "2030-06-30"
            }
        });
        let before = inbox_count(&pool).await?;
        let started = Instant::now();
        publish_event(
            &js,
            "esas.events.education_structure.dates_changed".into(),
            event["id"].as_str().unwrap_or_default(),
            HeaderMap::new(),
            Bytes::from(event.to_string()),
        )
        .await?;
        let expected = before + args.subscriptions as i64;
        loop {
            if inbox_count(&pool).await? >= expected {
                break;
            }
            if started.elapsed() > Duration::from_secs(300) {
                anyhow::bail!("notifications did not arrive within 5 minutes");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let elapsed = started.elapsed();
        let rate = args.subscriptions as f64 / elapsed.as_secs_f64();
        rates.push(rate);
        println!(
            "  change {}: {} notifications in the inboxes {:.3}s after publishing: {:.0} notifications/s",
            run + 1,
            args.subscriptions,
            elapsed.as_secs_f64(),
            rate
        );
    }
    shutdown.cancel();
    running.await.context("the notifier stopped abnormally")?;
    rates.sort_by(f64::total_cmp);
    if let Some(median) = rates.get(rates.len() / 2) {
        println!("  median {median:.0} notifications/s (target: at least 20,000/s)");
    }
    Ok(())
}

/// Notifications in the read model (what `GET /v1/notifications` lists from).
async fn inbox_count(pool: &PgPool) -> anyhow::Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM followups_view WHERE kind = 'notification'")
            .fetch_one(pool)
            .await?,
    )
}
