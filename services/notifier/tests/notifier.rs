//! The notifier against the real NATS (a private server per test) and the real PostgreSQL (a
//! fresh database per test).

use async_nats::HeaderMap;
use bytes::Bytes;
use chrono::{Duration, Utc};
use followup_domain::{
    Actor, Context, Delivery, Filter, FollowUp, InstitutionId, Kind, NewSubscription, Principal,
    Subscription, SubscriptionCommand, SubscriptionId, Topic, Viewer,
};
use followup_messaging::{ensure_streams, publish_event, JetStream, Streams};
use followup_notifier::{build_digests, DigestDay, Notifier, NotifierConfig, Report};
use followup_readmodel::{InboxQuery, ReadModel};
use followup_store::followups::upcaster;
use followup_store::{CommandMeta, EventStore, Expect, FollowUps, Subscriptions, MIGRATOR};
use followup_testkit::NatsServer;
use serde_json::{json, Value};
use sqlx::PgPool;

const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/contracts/examples");
const TOPIC: &str = "education_structure.dates_changed";

struct App {
    /// Keeps the NATS server alive for the test.
    _nats: NatsServer,
    js: JetStream,
    pool: PgPool,
    followups: FollowUps,
    read_model: ReadModel,
    notifier: Notifier,
}

async fn spawn_app(pool: PgPool) -> App {
    let nats = NatsServer::start();
    let js = async_nats::jetstream::new(nats.client().await);
    ensure_streams(&js, &Streams::default()).await.unwrap();
    let followups = FollowUps::new(EventStore::new(pool.clone()).with_upcaster(upcaster()));
    let read_model = ReadModel::new(pool.clone());
    let notifier = new_notifier(&js, &followups, &read_model, "notifier").await;
    App {
        _nats: nats,
        js,
        pool,
        followups,
        read_model,
        notifier,
    }
}

async fn new_notifier(
    js: &JetStream,
    followups: &FollowUps,
    read_model: &ReadModel,
    durable: &str,
) -> Notifier {
    let config = NotifierConfig {
        durable_name: durable.into(),
        ..NotifierConfig::default()
    };
    Notifier::new(js.clone(), followups.clone(), read_model.clone(), config)
        .await
        .unwrap()
}

fn example(name: &str) -> Value {
    let text = std::fs::read_to_string(format!("{EXAMPLES}/{name}.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn viewer(institution: &str, user: &str, teams: &[&str]) -> Viewer {
    Viewer {
        user: user.parse().unwrap(),
        institution: InstitutionId::parse(institution).unwrap(),
        teams: teams.iter().map(|t| t.parse().unwrap()).collect(),
        admin: false,
    }
}

impl App {
    /// Subscribes `subscriber` (`user:u1`, `team:t`) at `institution` as the API does.
    async fn subscribe(
        &self,
        institution: &str,
        subscriber: &str,
        filter: &[(&str, &str)],
        delivery: Delivery,
    ) -> Subscription {
        let topic = Topic::parse(TOPIC).unwrap();
        let fields = filter
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()));
        let id = SubscriptionId::new_v4();
        let new = NewSubscription {
            id,
            institution: InstitutionId::parse(institution).unwrap(),
            subscriber: subscriber.parse().unwrap(),
            filter: Filter::parse(&topic, fields).unwrap(),
            topic,
            delivery,
        };
        let subscription = Subscriptions::new(self.followups.store().clone())
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
            .unwrap()
            .state;
        self.read_model
            .upsert_subscriptions(std::slice::from_ref(&subscription))
            .await
            .unwrap();
        subscription
    }

    async fn publish_with_id(&self, event: &Value, msg_id: &str) {
        let subject = event["type"]
            .as_str()
            .unwrap()
            .replace("dk.esas.event.", "esas.events.");
        publish_event(
            &self.js,
            subject,
            msg_id,
            HeaderMap::new(),
            Bytes::from(serde_json::to_vec(event).unwrap()),
        )
        .await
        .unwrap();
    }

    async fn publish(&self, event: &Value) {
        self.publish_with_id(event, event["id"].as_str().unwrap())
            .await;
    }

    /// Every notification in the event store, folded.
    async fn notifications(&self) -> Vec<FollowUp> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT stream_id FROM events WHERE event_type = 'created' \
             AND payload->>'kind' = 'notification' ORDER BY position",
        )
        .fetch_all(&self.pool)
        .await
        .unwrap();
        let mut out = Vec::new();
        for id in ids {
            out.push(
                self.followups
                    .load(id.parse().unwrap())
                    .await
                    .unwrap()
                    .unwrap(),
            );
        }
        out
    }

    async fn owners(&self) -> Vec<String> {
        let mut owners: Vec<String> = self
            .notifications()
            .await
            .iter()
            .map(|n| n.owner.to_string())
            .collect();
        owners.sort();
        owners
    }
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn an_approved_structure_change_notifies_each_matching_subscriber_in_its_institution(
    pool: PgPool,
) {
    let app = spawn_app(pool).await;
    let education = [("education", "Sygeplejerskeuddannelsen")];
    app.subscribe("KP", "user:u1", &education, Delivery::Immediate)
        .await;
    app.subscribe("KP", "team:uddannelse", &[], Delivery::Immediate)
        .await;
    app.subscribe(
        "KP",
        "user:u2",
        &[("education", "Pædagoguddannelsen")],
        Delivery::Immediate,
    )
    .await;
    app.subscribe("UCL", "user:u1", &education, Delivery::Immediate)
        .await;

    app.publish(&example("education_structure.dates_changed"))
        .await;
    let report = app.notifier.process_pending().await.unwrap();

    assert_eq!(report.notifications, 2);
    assert_eq!(app.owners().await, ["team:uddannelse", "user:u1"]);
    let notification = &app.notifications().await[0];
    assert_eq!(notification.kind, Kind::Notification);
    assert_eq!(notification.institution.as_str(), "KP");
    assert_eq!(
        notification.subject.as_str(),
        "Startdato for Sygeplejerskeuddannelsen, grundstruktur forår 2027 flyttet fra \
         1. februar 2027 til 8. februar 2027"
    );
    assert_eq!(
        notification.regarding.as_ref().unwrap().to_string(),
        "education_structure:GUS-SYG-2027F"
    );
    // Written through: in the subscriber's inbox at once, unread.
    let inbox = app
        .read_model
        .notifications(&viewer("KP", "u1", &[]), &InboxQuery::default())
        .await
        .unwrap();
    assert_eq!(inbox.items.len(), 1);
    assert_eq!(inbox.items[0].state.as_str(), "unread");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_draft_structure_notifies_nobody(pool: PgPool) {
    let app = spawn_app(pool).await;
    app.subscribe("KP", "user:u1", &[], Delivery::Immediate)
        .await;

    app.publish(&example("education_structure.dates_changed.draft"))
        .await;
    let report = app.notifier.process_pending().await.unwrap();

    assert_eq!(report.ignored, 1);
    assert!(app.notifications().await.is_empty());
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn two_matching_subscriptions_of_one_user_give_one_notification_naming_both(pool: PgPool) {
    let app = spawn_app(pool).await;
    app.subscribe(
        "KP",
        "user:u1",
        &[("education", "Sygeplejerskeuddannelsen")],
        Delivery::Immediate,
    )
    .await;
    app.subscribe(
        "KP",
        "user:u1",
        &[("structure_id", "GUS-SYG-2027F")],
        Delivery::Immediate,
    )
    .await;

    app.publish(&example("education_structure.dates_changed"))
        .await;
    app.notifier.process_pending().await.unwrap();

    let notifications = app.notifications().await;
    assert_eq!(notifications.len(), 1);
    let description = notifications[0].description.as_str();
    assert!(description.contains("education = Sygeplejerskeuddannelsen"));
    assert!(description.contains("structure_id = GUS-SYG-2027F"));
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_republished_redelivered_or_replayed_event_notifies_each_subscriber_once(pool: PgPool) {
    let app = spawn_app(pool).await;
    app.subscribe("KP", "user:u1", &[], Delivery::Immediate)
        .await;
    app.subscribe("KP", "team:uddannelse", &[], Delivery::Immediate)
        .await;
    let event = example("education_structure.dates_changed");

    app.publish(&event).await;
    // The same CloudEvent again under another Nats-Msg-Id: JetStream keeps both.
    app.publish_with_id(&event, "republished-by-upstream").await;
    let first = app.notifier.process_pending().await.unwrap();
    // A new consumer replays the stream from its start.
    let replay = new_notifier(&app.js, &app.followups, &app.read_model, "replay").await;
    let second = replay.process_pending().await.unwrap();

    assert_eq!(first.notifications, 2);
    assert_eq!(second.notifications, 0);
    assert_eq!(app.owners().await, ["team:uddannelse", "user:u1"]);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn two_notifiers_at_once_create_each_notification_once(pool: PgPool) {
    let app = spawn_app(pool).await;
    for i in 0..300 {
        app.subscribe("KP", &format!("user:u{i}"), &[], Delivery::Immediate)
            .await;
    }
    app.publish(&example("education_structure.dates_changed"))
        .await;
    let other = new_notifier(&app.js, &app.followups, &app.read_model, "other").await;

    let (a, b) = tokio::join!(app.notifier.process_pending(), other.process_pending());

    let (a, b): (Report, Report) = (a.unwrap(), b.unwrap());
    assert_eq!(a.notifications + b.notifications, 300);
    assert_eq!(app.notifications().await.len(), 300);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_subscription_made_after_an_event_entered_is_not_notified_when_it_is_replayed(
    pool: PgPool,
) {
    let app = spawn_app(pool).await;
    app.publish(&example("education_structure.dates_changed"))
        .await;
    app.notifier.process_pending().await.unwrap();

    app.subscribe("KP", "user:late", &[], Delivery::Immediate)
        .await;
    let replay = new_notifier(&app.js, &app.followups, &app.read_model, "replay").await;
    replay.process_pending().await.unwrap();

    assert!(app.notifications().await.is_empty());
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_daily_digest_subscription_gets_one_summary_a_day_built_once(pool: PgPool) {
    let app = spawn_app(pool).await;
    app.subscribe("KP", "user:u1", &[], Delivery::DailyDigest)
        .await;
    let mut second = example("education_structure.dates_changed");
    second["id"] = json!("second-change");
    second["data"]["new_end"] = json!("2030-08-31");

    app.publish(&example("education_structure.dates_changed"))
        .await;
    app.publish(&second).await;
    app.publish(&second).await;
    let report = app.notifier.process_pending().await.unwrap();
    assert_eq!(
        report.notifications, 0,
        "a digest subscriber is not notified at once"
    );
    assert_eq!(report.digest_entries, 2);

    let now = Utc::now();
    let day = DigestDay {
        date: now.date_naive(),
        until: now + Duration::hours(1),
    };
    let ctx = Context {
        actor: Actor::Scheduler {
            job: "digest".into(),
        },
        now,
    };
    let built = build_digests(&app.followups, &app.read_model, &day, &ctx)
        .await
        .unwrap();
    let again = build_digests(&app.followups, &app.read_model, &day, &ctx)
        .await
        .unwrap();

    assert_eq!((built.created, again.created), (1, 0));
    let digests = app.notifications().await;
    assert_eq!(digests.len(), 1);
    assert_eq!(digests[0].owner, "user:u1".parse::<Principal>().unwrap());
    assert!(digests[0].subject.as_str().contains("2 hændelser"));
    assert!(digests[0]
        .description
        .as_str()
        .contains("Start- og slutdato"));
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn an_event_of_a_subscribed_topic_with_missing_data_is_dead_lettered(pool: PgPool) {
    let app = spawn_app(pool).await;
    app.subscribe("KP", "user:u1", &[], Delivery::Immediate)
        .await;
    let mut broken = example("education_structure.dates_changed");
    broken["data"].as_object_mut().unwrap().remove("new_start");

    app.publish(&broken).await;
    let report = app.notifier.process_pending().await.unwrap();

    assert_eq!(report.dead_lettered, 1);
    assert!(app.notifications().await.is_empty());
    let dlq = app.js.get_stream("FOLLOWUPS_DLQ").await.unwrap();
    let message = dlq
        .get_last_raw_message_by_subject("followups.dlq.ESAS_EVENTS")
        .await
        .unwrap();
    let reason = message
        .headers
        .get("Followup-Dlq-Reason")
        .unwrap()
        .to_string();
    assert_eq!(reason, "data.new_start: is missing");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn an_entry_that_arrives_after_its_days_digest_goes_into_the_next_one(pool: PgPool) {
    let app = spawn_app(pool).await;
    app.subscribe("KP", "user:u1", &[], Delivery::DailyDigest)
        .await;
    let ctx = Context {
        actor: Actor::Scheduler {
            job: "digest".into(),
        },
        now: Utc::now(),
    };
    let today = DigestDay {
        date: Utc::now().date_naive(),
        until: Utc::now() + Duration::hours(1),
    };
    let tomorrow = DigestDay {
        date: today.date.succ_opt().unwrap(),
        until: Utc::now() + Duration::days(1),
    };
    let build = |day: DigestDay| {
        let (followups, read_model, ctx) = (&app.followups, &app.read_model, &ctx);
        async move {
            build_digests(followups, read_model, &day, ctx)
                .await
                .unwrap()
                .created
        }
    };
    app.publish(&example("education_structure.dates_changed"))
        .await;
    app.notifier.process_pending().await.unwrap();
    assert_eq!(build(today).await, 1, "today's digest");

    // A late event (the notifier was behind) arrives after today's digest was built.
    let mut late = example("education_structure.dates_changed");
    late["id"] = json!("late-change");
    late["data"]["name"] = json!("Pædagoguddannelsen, grundstruktur efterår 2027");
    app.publish(&late).await;
    app.notifier.process_pending().await.unwrap();

    assert_eq!(
        build(today).await,
        0,
        "today's digest exists; it cannot list it any more"
    );
    assert_eq!(build(tomorrow).await, 1, "so tomorrow's lists it");
    assert_eq!(build(tomorrow).await, 0);
    let digests = app.notifications().await;
    assert_eq!(digests.len(), 2);
    assert!(digests[1]
        .description
        .as_str()
        .contains("Pædagoguddannelsen"));
    assert!(!digests[1]
        .description
        .as_str()
        .contains("Sygeplejerskeuddannelsen, grundstruktur"));
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_nul_in_a_structure_name_is_dead_lettered_and_the_next_event_notifies(pool: PgPool) {
    let app = spawn_app(pool).await;
    app.subscribe("KP", "user:u1", &[], Delivery::Immediate)
        .await;
    let mut broken = example("education_structure.dates_changed");
    broken["data"]["name"] = json!("Sygepleje\u{0}");
    app.publish_with_id(&broken, "nul-name").await;
    app.publish(&example("education_structure.dates_changed"))
        .await;

    let report = app.notifier.process_pending().await.unwrap();
    assert_eq!(
        (report.dead_lettered, report.applied, report.retried),
        (1, 1, 0),
        "{report:?}"
    );
    assert_eq!(app.notifications().await.len(), 1);
    let dlq = app.js.get_stream("FOLLOWUPS_DLQ").await.unwrap();
    let message = dlq
        .get_last_raw_message_by_subject("followups.dlq.ESAS_EVENTS")
        .await
        .unwrap();
    assert_eq!(
        message.headers.get("Followup-Dlq-Code").unwrap().as_str(),
        "invalid_text"
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn cpr_numbers_in_an_event_are_masked_in_the_notification_it_gives(pool: PgPool) {
    let app = spawn_app(pool).await;
    app.subscribe("KP", "user:u1", &[], Delivery::Immediate)
        .await;
    let mut event = example("education_structure.dates_changed");
    event["id"] = json!("evt-0102031234");
    event["data"]["name"] = json!("Struktur for 010203-1234");
    app.publish_with_id(&event, "cpr-name").await;
    assert_eq!(app.notifier.process_pending().await.unwrap().applied, 1);
    let raw: String = sqlx::query_scalar(
        "SELECT string_agg(concat_ws(' ', payload::text, correlation_id, causation_id), ' ') FROM events",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    // The texts are sealed as stored: read them decrypted too.
    let store = EventStore::new(app.pool.clone()).with_upcaster(upcaster());
    store
        .wait_until_readable(std::time::Duration::from_secs(10))
        .await
        .unwrap();
    let opened: Vec<String> = store
        .read_all(followup_store::Checkpoint::START, 10_000)
        .await
        .unwrap()
        .iter()
        .map(|e| e.payload.to_string())
        .collect();
    let stored = format!("{raw} {}", opened.join(" "));
    assert!(stored.contains("010203-xxxx"), "{stored}");
    assert!(followup_domain::find_cpr(&stored).is_none(), "{stored}");
}
