//! The relay against the real PostgreSQL and a private NATS server.

use chrono::Utc;
use followup_domain::{
    Actor, Command, Context, Description, FollowUpId, InstitutionId, Kind, NewFollowUp, Principal,
    Priority, Source, Subject, TeamId, UserId,
};
use followup_messaging::{ensure_streams, JetStream, Streams};
use followup_relay::Relay;
use followup_store::followups::upcaster;
use followup_store::{CommandMeta, EventStore, Expect, FollowUps, MIGRATOR};
use followup_testkit::NatsServer;
use futures::StreamExt;
use serde_json::Value;
use sqlx::PgPool;

fn ctx() -> Context {
    Context {
        actor: Actor::User {
            id: UserId::parse("u1").unwrap(),
        },
        now: Utc::now(),
    }
}

/// A new open task at `institution`, owned by `owner`.
fn new_task(institution: &str, owner: Principal) -> NewFollowUp {
    NewFollowUp {
        id: FollowUpId::new_v4(),
        institution: InstitutionId::parse(institution).unwrap(),
        kind: Kind::Task,
        subject: Subject::parse("Del data om gæstestuderende").unwrap(),
        description: Description::parse("").unwrap(),
        regarding: None,
        person: None,
        owner,
        due: None,
        priority: Priority::Normal,
        source: Source::User {
            id: UserId::parse("u1").unwrap(),
        },
    }
}

async fn create_and_complete(repo: &FollowUps, institution: &str) -> FollowUpId {
    let new = new_task(
        institution,
        Principal::Team(TeamId::parse("studieadministration").unwrap()),
    );
    let id = new.id;
    let meta = CommandMeta::default();
    repo.execute(id, Command::Create(new), &ctx(), &meta, Expect::Current)
        .await
        .unwrap();
    repo.execute(id, Command::Complete, &ctx(), &meta, Expect::Current)
        .await
        .unwrap();
    id
}

/// The outbound contract's messages (`followups.events.>`).
async fn outbound(js: &JetStream) -> Vec<async_nats::jetstream::Message> {
    on(js, "followups.events.>").await
}

/// Every message of `FOLLOWUPS` on `subject` (wildcards allowed).
async fn on(js: &JetStream, subject: &str) -> Vec<async_nats::jetstream::Message> {
    let stream = js.get_stream("FOLLOWUPS").await.unwrap();
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::Config {
            filter_subject: subject.to_owned(),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut batch = consumer
        .fetch()
        .max_messages(1000)
        .messages()
        .await
        .unwrap();
    let mut out = Vec::new();
    while let Some(m) = batch.next().await {
        out.push(m.unwrap());
    }
    out
}

/// Relays everything committed so far.
async fn relay_all(relay: &Relay, store: &EventStore) -> usize {
    assert!(store
        .wait_until_readable(std::time::Duration::from_secs(10))
        .await
        .unwrap());
    let mut total = 0;
    loop {
        let n = relay.process_pending().await.unwrap();
        if n == 0 {
            return total;
        }
        total += n;
    }
}

async fn setup(pool: &PgPool) -> (NatsServer, JetStream, FollowUps, Relay) {
    let nats = NatsServer::start();
    let js = async_nats::jetstream::new(nats.client().await);
    ensure_streams(&js, &Streams::default()).await.unwrap();
    let store = EventStore::new(pool.clone()).with_upcaster(upcaster());
    (
        nats,
        js.clone(),
        FollowUps::new(store.clone()),
        Relay::new(store, js),
    )
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn every_event_goes_out_once_in_order_as_a_cloudevent_on_its_subject(pool: PgPool) {
    let (_nats, js, repo, relay) = setup(&pool).await;
    let id = create_and_complete(&repo, "UCL").await;

    let store = EventStore::new(pool.clone());
    assert_eq!(relay_all(&relay, &store).await, 2);
    assert_eq!(
        relay.process_pending().await.unwrap(),
        0,
        "the checkpoint moved"
    );

    let messages = outbound(&js).await;
    let subjects: Vec<&str> = messages.iter().map(|m| m.subject.as_str()).collect();
    assert_eq!(
        subjects,
        [
            "followups.events.UCL.task.created",
            "followups.events.UCL.task.completed"
        ]
    );
    let first: Value = serde_json::from_slice(&messages[0].payload).unwrap();
    assert_eq!(first["type"], "dk.esas.followup.created");
    assert_eq!(first["institution"], "UCL");
    assert_eq!(first["data"]["followup_id"], id.to_string());
    let msg_id = messages[0]
        .headers
        .as_ref()
        .unwrap()
        .get(async_nats::header::NATS_MESSAGE_ID)
        .unwrap()
        .to_string();
    assert_eq!(
        msg_id,
        first["id"].as_str().unwrap(),
        "Nats-Msg-Id is the event id"
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_relay_that_crashed_before_saving_its_checkpoint_publishes_nothing_twice(pool: PgPool) {
    let (_nats, js, repo, relay) = setup(&pool).await;
    create_and_complete(&repo, "KP").await;
    let store = EventStore::new(pool.clone());
    assert_eq!(relay_all(&relay, &store).await, 2);
    // As if the checkpoint had not been saved: the same batch goes out again.
    sqlx::query("DELETE FROM projection_checkpoints WHERE name = 'relay'")
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(relay_all(&relay, &store).await, 2);
    assert_eq!(
        outbound(&js).await.len(),
        2,
        "JetStream dropped the republished events"
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_nats_outage_delays_the_relay_and_loses_nothing(pool: PgPool) {
    let (mut nats, js, repo, relay) = setup(&pool).await;
    create_and_complete(&repo, "VIA").await;
    let store = EventStore::new(pool.clone());
    assert!(store
        .wait_until_readable(std::time::Duration::from_secs(10))
        .await
        .unwrap());
    nats.kill();
    assert!(relay.process_pending().await.is_err());
    assert_eq!(
        relay.checkpoint().await.unwrap(),
        followup_store::Checkpoint::START,
        "nothing counted as sent"
    );

    nats.restart();
    let mut sent = 0;
    for _ in 0..100 {
        match relay.process_pending().await {
            Ok(n) => {
                sent = n;
                break;
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
        }
    }
    assert_eq!(sent, 2);
    assert_eq!(outbound(&js).await.len(), 2);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn each_change_goes_live_to_everyone_who_can_see_the_follow_up(pool: PgPool) {
    let (_nats, js, repo, relay) = setup(&pool).await;
    let new = new_task(
        "KP",
        Principal::User(UserId::parse("anne.hansen@kp.dk").unwrap()),
    );
    let id = new.id;
    let meta = CommandMeta::default();
    repo.execute(id, Command::Create(new), &ctx(), &meta, Expect::Current)
        .await
        .unwrap();
    let share = Command::Share {
        principal: Principal::Team(TeamId::parse("optag").unwrap()),
        access: followup_domain::Access::Read,
    };
    repo.execute(id, share, &ctx(), &meta, Expect::Current)
        .await
        .unwrap();

    relay_all(&relay, &EventStore::new(pool.clone())).await;

    let anne = on(&js, "followups.notify.KP.user.anne%2Ehansen@kp%2Edk").await;
    let team = on(&js, "followups.notify.KP.team.optag").await;
    let types = |messages: &[async_nats::jetstream::Message]| -> Vec<String> {
        messages
            .iter()
            .map(|m| {
                serde_json::from_slice::<Value>(&m.payload).unwrap()["type"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect()
    };
    assert_eq!(
        types(&anne),
        ["dk.esas.followup.created", "dk.esas.followup.shared"]
    );
    assert_eq!(
        types(&team),
        ["dk.esas.followup.shared"],
        "the team hears from when it can see it"
    );
    assert!(
        on(&js, "followups.notify.UCL.>").await.is_empty(),
        "never another institution"
    );
}
