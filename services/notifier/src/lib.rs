//! The notifier: ESAS domain events (`ESAS_EVENTS`) become notifications for the users and
//! teams subscribed to their topic (design section 5), exactly once per (event, subscriber).
//!
//! # How a message is handled
//! 1. **Parse** it as a CloudEvent. A type that is not a subscribable topic is not the
//!    notifier's business (the rule worker handles or dead-letters it): acked. Poison
//!    messages and events of a topic with missing data go to the dead-letter stream.
//! 2. **Render** the text (`text`); an event that notifies nobody (a draft structure) is
//!    acked.
//! 3. **Match** the subscriptions of the event's institution and topic that were active when
//!    the message entered JetStream and whose filter the data satisfies. Using the time the
//!    message entered (not the time of processing) keeps a replay of old events from
//!    notifying subscriptions made since.
//! 4. **Deliver**: one notification per subscriber with an `immediate` subscription. Two
//!    subscriptions of the same subscriber that both match give one notification that names
//!    both. Its id is derived from the message's `source#id` and the subscriber, and so are
//!    its event ids: a redelivery, a republish, a replay or a second notifier finds them
//!    stored and appends nothing. Notifications are appended in chunks, written through to
//!    the read model (they are in the inbox at once), and `daily_digest` subscriptions get a
//!    digest entry instead ([`digest`]).
//! 5. **Acknowledge**. A crash before this only means redelivery, which step 4 makes harmless;
//!    a database failure naks the message for a later retry.
//!
//! # Layout
//! - [`Notifier`]: the consumer, `process_pending` (what tests call) and `run` (the loop).
//! - texts, digests and creating notifications exactly once are in `followup-notifications`,
//!   which the scheduler uses too.

use std::collections::BTreeMap;
use std::time::Duration;

use async_nats::jetstream::consumer::PullConsumer;
use async_nats::jetstream::message::Message;
use chrono::{DateTime, Utc};
use followup_domain::{
    Actor, Context, Delivery, Description, FollowUpId, InstitutionId, Kind, KnownInstitutions,
    NewFollowUp, Principal, Priority, Regarding, Source, Subject, Subscription, Topic,
};
use followup_messaging::consume::{self, Feed, FetchError, Handler};
use followup_messaging::consumer::{self, ack_all};
use followup_messaging::{
    parse_inbound, reject, settle_failure, DeadLetter, Failure, JetStream, Rejected, Streams,
};
use followup_notifications::{create_notifications, digest, text};
use followup_readmodel::ReadModel;
use followup_store::{CommandMeta, FollowUps};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

pub use followup_notifications::{build_digests, digest_id, DigestDay};

/// Namespace of notification ids derived from (inbound event, subscriber).
const NOTIFICATION_ID_NAMESPACE: Uuid = Uuid::from_u128(0x9d3e_51a7_c2b8_4e6f_a1d0_7b5c_e8f2_4a13);

/// Settings of a notifier.
#[derive(Debug, Clone)]
pub struct NotifierConfig {
    /// The streams (the notifier consumes `events`).
    pub streams: Streams,
    /// The durable consumer name; notifiers with the same name share the messages.
    pub durable_name: String,
    /// The most messages fetched at once (one message may fan out to thousands).
    pub batch_size: usize,
    /// How long JetStream waits for an ack before redelivering; long, since one message may
    /// mean thousands of notifications.
    pub ack_wait: Duration,
    /// The institutions served; a message for another is dead-lettered.
    pub institutions: KnownInstitutions,
    /// Deliveries a message that keeps failing gets before it is dead-lettered (a failure
    /// because the database is unreachable does not count against it).
    pub max_deliveries: i64,
}

impl Default for NotifierConfig {
    fn default() -> Self {
        Self {
            streams: Streams::default(),
            durable_name: "notifier".into(),
            batch_size: 100,
            ack_wait: Duration::from_secs(120),
            institutions: KnownInstitutions::default(),
            max_deliveries: 10,
        }
    }
}

/// Why the notifier cannot start or go on.
#[derive(Debug, thiserror::Error)]
pub enum NotifierError {
    /// The consumer could not be created.
    #[error(transparent)]
    Consumer(#[from] consumer::ConsumerError),
    /// Messages could not be fetched.
    #[error(transparent)]
    Fetch(#[from] FetchError),
}

/// What one step did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    /// Messages whose notifications (or digest entries) were stored now.
    pub applied: usize,
    /// Messages that notify nobody (another role's type, a draft, no matching subscription,
    /// or everything stored by an earlier delivery).
    pub ignored: usize,
    /// Poison messages moved to the dead-letter stream.
    pub dead_lettered: usize,
    /// Messages nak'ed for a transient failure.
    pub retried: usize,
    /// Notifications created.
    pub notifications: usize,
    /// Digest entries collected.
    pub digest_entries: usize,
}

impl Report {
    fn add(&mut self, other: Report) {
        self.applied += other.applied;
        self.ignored += other.ignored;
        self.dead_lettered += other.dead_lettered;
        self.retried += other.retried;
        self.notifications += other.notifications;
        self.digest_entries += other.digest_entries;
    }

    fn record_metrics(&self) {
        consumer::record_outcomes(
            "followup_notifier_messages_total",
            &[
                ("applied", self.applied),
                ("ignored", self.ignored),
                ("dead_lettered", self.dead_lettered),
                ("retried", self.retried),
            ],
        );
        metrics::counter!("followup_notifier_notifications_total")
            .increment(self.notifications as u64);
    }
}

/// How one message ended.
enum Handled {
    /// Stored: `notifications` created, `digest_entries` collected.
    Applied {
        notifications: usize,
        digest_entries: usize,
    },
    /// Nothing to do.
    Ignored,
    /// Poison.
    Poison(DeadLetter),
}

impl Handler for Notifier {
    /// Messages are parsed one at a time as they are handled, in stream order.
    type Parsed = Vec<Message>;
    type Report = Report;

    async fn parse(&self, messages: Vec<Message>) -> Vec<Message> {
        messages
    }

    async fn handle(&self, messages: Vec<Message>) -> Report {
        Notifier::handle(self, messages).await
    }

    fn retried(report: &Report) -> bool {
        report.retried > 0
    }

    fn record(report: &Report) {
        report.record_metrics();
    }
}

/// The notifier. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Notifier {
    /// For dead letters.
    js: JetStream,
    /// Where notifications are stored.
    followups: FollowUps,
    /// Subscriptions are looked up here, and notifications written through.
    read_model: ReadModel,
    /// The durable consumer on `ESAS_EVENTS`.
    consumer: PullConsumer,
    /// Settings.
    config: NotifierConfig,
}

impl Notifier {
    /// Binds to (or creates) the durable consumer.
    pub async fn new(
        js: JetStream,
        followups: FollowUps,
        read_model: ReadModel,
        config: NotifierConfig,
    ) -> Result<Self, NotifierError> {
        let consumer = consumer::durable(
            &js,
            &config.streams.events,
            &config.durable_name,
            (config.batch_size * 4) as i64,
            config.ack_wait,
        )
        .await?;
        Ok(Self {
            js,
            followups,
            read_model,
            consumer,
            config,
        })
    }

    /// Where the notifier reads from, for the consume loop.
    fn feed(&self) -> Feed {
        Feed {
            consumer: self.consumer.clone(),
            name: format!(
                "{}/{}",
                self.config.durable_name, self.config.streams.events
            ),
            batch_size: self.config.batch_size,
        }
    }

    /// Handles the messages waiting now (up to a batch): the "process what is pending" step.
    pub async fn process_pending(&self) -> Result<Report, NotifierError> {
        Ok(consume::process_pending(self, &self.feed())
            .await?
            .unwrap_or_default())
    }

    /// Runs until `shutdown` with the consume loop, handling messages as they arrive; the
    /// batch in hand is finished first.
    pub async fn run(self, shutdown: CancellationToken) {
        tracing::info!(consumer = %self.config.durable_name, "notifier started");
        let feed = self.feed();
        consume::run(self, feed, shutdown).await;
        tracing::info!("notifier stopped");
    }

    /// Handles delivered messages one after the other, in stream order, and settles each.
    pub async fn handle(&self, messages: Vec<Message>) -> Report {
        let mut report = Report::default();
        for message in &messages {
            report.add(self.settle(message).await);
        }
        report
    }

    async fn settle(&self, message: &Message) -> Report {
        let mut report = Report::default();
        match self.handle_one(message).await {
            Ok(Handled::Applied {
                notifications,
                digest_entries,
            }) => {
                report.applied += 1;
                report.notifications += notifications;
                report.digest_entries += digest_entries;
                ack_all(vec![message]).await;
            }
            Ok(Handled::Ignored) => {
                report.ignored += 1;
                ack_all(vec![message]).await;
            }
            Ok(Handled::Poison(why)) => match reject(&self.js, message, &why).await {
                Rejected::DeadLettered => report.dead_lettered += 1,
                Rejected::Retried => report.retried += 1,
            },
            Err(failure) => {
                tracing::warn!(error.message = %failure, cloudevent.subject = %followup_domain::mask(&message.subject), "notifier cannot deliver this message now");
                match settle_failure(&self.js, message, &failure, self.config.max_deliveries).await
                {
                    Rejected::DeadLettered => report.dead_lettered += 1,
                    Rejected::Retried => {
                        report.retried += 1;
                        followup_platform::health::failed(&self.feed().name, failure.reason());
                    }
                }
            }
        }
        report
    }

    /// Steps 1 to 4 of the module documentation for one message.
    async fn handle_one(&self, message: &Message) -> Result<Handled, Failure> {
        let event = match parse_inbound(message, &self.config.institutions) {
            Ok(event) => event,
            Err(why) => return Ok(Handled::Poison(why)),
        };
        let Some(topic) = Topic::of_event_type(&event.event_type) else {
            return Ok(Handled::Ignored);
        };
        let span = event.span("notifier.message");
        async {
            let rendered = match text::render(topic.as_str(), &event.data) {
                Ok(Some(rendered)) => rendered,
                Ok(None) => return Ok(Handled::Ignored),
                Err(missing) => {
                    return Ok(Handled::Poison(DeadLetter {
                        code: "missing_data",
                        reason: missing.to_string(),
                    }))
                }
            };
            let institution = match InstitutionId::parse(&event.institution) {
                Ok(institution) => institution,
                Err(e) => {
                    return Ok(Handled::Poison(DeadLetter {
                        code: "not_a_cloudevent",
                        reason: format!("attribute `institution`: {e}"),
                    }))
                }
            };
            let entered = entered_at(message);
            let subscriptions = self
                .read_model
                .matching_subscriptions(&institution, &topic, &event.data, entered)
                .await
                .map_err(|e| match &e {
                    followup_readmodel::ReadError::Database(db) => failure_of(db, &e),
                    other => Failure::Failed(other.to_string()),
                })?;
            if subscriptions.is_empty() {
                return Ok(Handled::Ignored);
            }
            let key = event.idempotency_key();
            let mut immediate: BTreeMap<&Principal, Vec<&Subscription>> = BTreeMap::new();
            let mut digested = Vec::new();
            for subscription in &subscriptions {
                match subscription.delivery {
                    Delivery::Immediate => immediate
                        .entry(&subscription.subscriber)
                        .or_default()
                        .push(subscription),
                    Delivery::DailyDigest => digested.push(subscription),
                }
            }
            let new: Vec<NewFollowUp> = immediate
                .into_iter()
                .map(|(subscriber, subscriptions)| {
                    notification(
                        &key,
                        &institution,
                        &topic,
                        &rendered,
                        subscriber,
                        &subscriptions,
                    )
                })
                .collect();
            let meta = CommandMeta {
                correlation_id: Some(event.id.clone()),
                causation_id: Some(event.id.clone()),
                idempotency_key: Some(key.clone()),
                traceparent: followup_platform::trace::traceparent_of(&span),
            };
            let ctx = Context {
                actor: Actor::System,
                now: Utc::now(),
            };
            let notifications =
                create_notifications(&self.followups, &self.read_model, new, &ctx, &meta)
                    .await
                    .map_err(|e| match &e {
                        followup_notifications::NotificationError::Query(db) => failure_of(db, &e),
                        followup_notifications::NotificationError::Store(store)
                            if store.is_environment_error() =>
                        {
                            Failure::Unreachable(e.to_string())
                        }
                        followup_notifications::NotificationError::Store(store)
                            if store.is_content_error() =>
                        {
                            Failure::Refused(e.to_string())
                        }
                        _ => Failure::Failed(e.to_string()),
                    })?
                    .created;
            let digest_entries = digest::collect(
                self.followups.store().pool(),
                &key,
                &digested,
                &rendered.subject,
                entered,
            )
            .await
            .map_err(|e| failure_of(&e, &e))?;
            if notifications == 0 && digest_entries == 0 {
                return Ok(Handled::Ignored);
            }
            Ok(Handled::Applied {
                notifications,
                digest_entries,
            })
        }
        .instrument(span.clone())
        .await
    }
}

/// How a database error `e` (reported as `error`) is settled: see [`Failure`].
fn failure_of(e: &sqlx::Error, error: &dyn std::fmt::Display) -> Failure {
    use followup_store::event_store::{is_content_database_error, is_environment_database_error};
    let reason = error.to_string();
    if is_environment_database_error(e) {
        Failure::Unreachable(reason)
    } else if is_content_database_error(e) {
        Failure::Refused(reason)
    } else {
        Failure::Failed(reason)
    }
}

/// The notification for `subscriber` about the event with idempotency key `key`.
fn notification(
    key: &str,
    institution: &InstitutionId,
    topic: &Topic,
    rendered: &text::Rendered,
    subscriber: &Principal,
    subscriptions: &[&Subscription],
) -> NewFollowUp {
    let who = match subscriber {
        Principal::User(_) => "du abonnerer".to_owned(),
        Principal::Team(team) => format!("teamet {team} abonnerer"),
    };
    let title = topic.spec().map_or(topic.as_str(), |spec| spec.title);
    let mut why = format!("\n\nDu får denne notifikation, fordi {who} på: {title}");
    for subscription in subscriptions {
        let filter = subscription.filter.fields();
        if filter.is_empty() {
            why.push_str("\n• alle");
        } else {
            let conditions: Vec<String> =
                filter.iter().map(|(k, v)| format!("{k} = {v}")).collect();
            why.push_str(&format!("\n• {}", conditions.join(", ")));
        }
    }
    NewFollowUp {
        id: notification_id(key, subscriber),
        institution: institution.clone(),
        kind: Kind::Notification,
        subject: Subject::from_upstream(&rendered.subject),
        description: Description::from_upstream(&format!("{}{why}", rendered.description)),
        regarding: rendered
            .regarding
            .as_ref()
            .and_then(|(kind, id)| Regarding::parse(kind, id).ok()),
        person: None,
        owner: subscriber.clone(),
        due: None,
        priority: Priority::Normal,
        source: Source::Subscription {
            topic: topic.as_str().to_owned(),
        },
    }
}

/// The id of the notification `subscriber` gets for the inbound event with key `key`.
pub fn notification_id(key: &str, subscriber: &Principal) -> FollowUpId {
    FollowUpId::from_uuid(Uuid::new_v5(
        &NOTIFICATION_ID_NAMESPACE,
        format!("{key}/{subscriber}").as_bytes(),
    ))
}

/// When the message entered JetStream (now, if the message carries no stream info).
fn entered_at(message: &Message) -> DateTime<Utc> {
    message
        .info()
        .ok()
        .and_then(|info| {
            DateTime::from_timestamp(info.published.unix_timestamp(), info.published.nanosecond())
        })
        .unwrap_or_else(Utc::now)
}
