//! The projector against the real PostgreSQL (a fresh database per test): events become rows,
//! and a stop, a crash, a second projector or an earlier write-through loses or doubles nothing.

mod common;

use std::time::Duration;

use chrono::Utc;
use common::*;
use followup_domain::{Access, Actor, Command, Edit, FollowUpId, InstitutionId, Priority, Subject};
use followup_readmodel::{ProjectorError, ReadModel, PROJECTION_NAME};
use followup_store::{Checkpoint, ExpectedVersion, Metadata, NewEvent, StreamAppend, MIGRATOR};
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

/// Creates follow-ups and changes them, `n` of each, so streams have 1 to 4 events.
async fn some_history(pool: &PgPool, n: usize) -> Vec<FollowUpId> {
    let repo = repo(pool);
    let mut ids = Vec::new();
    for i in 0..n {
        let id = create_task(&repo, "KP", "team:admissions").await;
        if i % 2 == 0 {
            let share = Command::Share {
                principal: principal("user:u2"),
                access: Access::Read,
            };
            run(&repo, id, share).await;
        }
        if i % 3 == 0 {
            let edit = Command::Edit(Edit {
                priority: Some(Priority::High),
                ..Edit::default()
            });
            run(&repo, id, edit).await;
            run(&repo, id, Command::Complete).await;
        }
        ids.push(id);
    }
    ids
}

/// The last event's place in the reading order.
async fn last_checkpoint(pool: &PgPool) -> Checkpoint {
    let (transaction_id, position): (i64, i64) = sqlx::query_as(
        "SELECT transaction_id, position FROM events ORDER BY transaction_id DESC, position DESC LIMIT 1",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    Checkpoint {
        transaction_id,
        position,
    }
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn events_appended_through_the_repository_become_rows_equal_to_the_loaded_follow_ups(
    pool: PgPool,
) {
    some_history(&pool, 7).await;
    let events = event_count(&pool).await;

    let projected = projector(&pool).process_pending().await.unwrap();

    assert_eq!(projected, events);
    assert_read_model_matches_the_events(&pool).await;
    assert_eq!(
        projector(&pool).checkpoint().await.unwrap(),
        last_checkpoint(&pool).await
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn projecting_again_with_nothing_new_projects_nothing(pool: PgPool) {
    some_history(&pool, 3).await;
    let projector = projector(&pool);
    projector.process_pending().await.unwrap();
    let checkpoint = projector.checkpoint().await.unwrap();

    assert_eq!(projector.process_pending().await.unwrap(), 0);
    assert_eq!(projector.checkpoint().await.unwrap(), checkpoint);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_projector_stopped_after_one_batch_is_resumed_by_a_new_one_without_loss_or_doubling(
    pool: PgPool,
) {
    some_history(&pool, 6).await;
    let events = event_count(&pool).await;

    let first = projector(&pool).batch_size(4);
    let projected = first.process_batch().await.unwrap();
    drop(first);
    let rest = projector(&pool)
        .batch_size(3)
        .process_pending()
        .await
        .unwrap();

    assert!((1..=4).contains(&projected), "{projected}");
    assert_eq!(projected + rest, events);
    assert_read_model_matches_the_events(&pool).await;
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_batch_with_an_unreadable_event_writes_neither_rows_nor_checkpoint(pool: PgPool) {
    let repo = repo(&pool);
    create_task(&repo, "KP", "user:u1").await;
    // A `created` event whose payload is not a follow-up, in a stream of its own.
    store(&pool)
        .append(StreamAppend {
            stream_id: Uuid::new_v4().to_string(),
            stream_type: "followup".into(),
            expected: ExpectedVersion::NoStream,
            events: vec![NewEvent {
                event_id: Uuid::new_v4(),
                event_type: "created".into(),
                schema_version: 2,
                payload: json!({ "subject": "no institution, no owner" }),
                metadata: Metadata {
                    actor: json!({ "type": "system" }),
                    correlation_id: None,
                    causation_id: None,
                    traceparent: None,
                },
            }],
        })
        .await
        .unwrap();
    let projector = projector(&pool);
    assert!(store(&pool)
        .wait_until_readable(Duration::from_secs(30))
        .await
        .unwrap());

    let error = projector.process_pending().await.unwrap_err();

    assert!(matches!(error, ProjectorError::Corrupt { .. }), "{error}");
    assert!(!error.is_transient());
    assert_eq!(projector.checkpoint().await.unwrap(), Checkpoint::START);
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM followups_view")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        rows, 0,
        "the valid follow-up of the same batch is not written either"
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn events_the_api_wrote_through_already_are_skipped_and_later_ones_applied(pool: PgPool) {
    let repo = repo(&pool);
    let id = create_task(&repo, "KP", "user:u1").await;
    run(
        &repo,
        id,
        Command::Assign {
            owner: principal("team:admissions"),
        },
    )
    .await;
    // The API writes version 2 through, before the projector has seen any event.
    let written_through = repo.load(id).await.unwrap().unwrap();
    ReadModel::new(pool.clone())
        .upsert(&[written_through])
        .await
        .unwrap();
    run(&repo, id, Command::Close).await;

    assert_eq!(projector(&pool).process_pending().await.unwrap(), 3);

    assert_read_model_matches_the_events(&pool).await;
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_row_the_api_brought_up_to_date_is_left_as_it_is(pool: PgPool) {
    let repo = repo(&pool);
    let id = create_task(&repo, "KP", "user:u1").await;
    run(&repo, id, Command::Complete).await;
    let read_model = ReadModel::new(pool.clone());
    let written_through = repo.load(id).await.unwrap().unwrap();
    read_model.upsert(&[written_through]).await.unwrap();
    // Make the row recognisable: had the projector written it again, this would be gone.
    sqlx::query("UPDATE followups_view SET subject = 'untouched' WHERE id = $1")
        .bind(id.as_uuid())
        .execute(&pool)
        .await
        .unwrap();

    assert_eq!(projector(&pool).process_pending().await.unwrap(), 2);

    let subject: String = sqlx::query_scalar("SELECT subject FROM followups_view WHERE id = $1")
        .bind(id.as_uuid())
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(subject, "untouched");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn events_held_back_by_an_older_running_transaction_are_waited_for(pool: PgPool) {
    // A transaction that started before the append holds every reader of the store back
    // until it ends (see `EventStore::read_all`).
    let mut older = pool.begin().await.unwrap();
    sqlx::query("SELECT pg_current_xact_id()")
        .execute(&mut *older)
        .await
        .unwrap();
    let repo = repo(&pool);
    create_task(&repo, "KP", "user:u1").await;
    let ends_soon = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        older.commit().await.unwrap();
    });

    assert_eq!(projector(&pool).process_pending().await.unwrap(), 1);

    ends_soon.await.unwrap();
    assert_read_model_matches_the_events(&pool).await;
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_row_older_than_the_checkpoint_is_rebuilt_from_its_whole_stream(pool: PgPool) {
    let repo = repo(&pool);
    let id = create_task(&repo, "KP", "user:u1").await;
    let projector = projector(&pool);
    projector.process_pending().await.unwrap();
    let rename = |subject: &str| {
        Command::Edit(Edit {
            subject: Some(Subject::parse(subject).unwrap()),
            ..Edit::default()
        })
    };
    run(&repo, id, rename("Anden udgave")).await;
    // The checkpoint passes version 2 without the row getting it (as after restoring an old
    // backup of the table): version 3 arrives at a row of version 1.
    let past_version_2 = last_checkpoint(&pool).await;
    sqlx::query("UPDATE projection_checkpoints SET transaction_id = $1, position = $2")
        .bind(past_version_2.transaction_id)
        .bind(past_version_2.position)
        .execute(&pool)
        .await
        .unwrap();
    run(&repo, id, rename("Tredje udgave")).await;

    assert_eq!(projector.process_pending().await.unwrap(), 1);

    assert_read_model_matches_the_events(&pool).await;
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn events_of_stream_types_it_does_not_know_only_move_the_checkpoint(pool: PgPool) {
    let repo = repo(&pool);
    create_task(&repo, "KP", "user:u1").await;
    store(&pool)
        .append(StreamAppend {
            stream_id: "audit-1".into(),
            stream_type: "audit".into(),
            expected: ExpectedVersion::NoStream,
            events: vec![NewEvent {
                event_id: Uuid::new_v4(),
                event_type: "exported".into(),
                schema_version: 1,
                payload: json!({ "report": "overdue exceptions" }),
                metadata: Metadata {
                    actor: json!({ "type": "user", "id": "u1" }),
                    correlation_id: None,
                    causation_id: None,
                    traceparent: None,
                },
            }],
        })
        .await
        .unwrap();
    let projector = projector(&pool);

    assert_eq!(projector.process_pending().await.unwrap(), 2);

    assert_eq!(
        projector.checkpoint().await.unwrap(),
        last_checkpoint(&pool).await
    );
    assert_read_model_matches_the_events(&pool).await;
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn two_projectors_at_once_share_the_events_and_project_each_exactly_once(pool: PgPool) {
    some_history(&pool, 20).await;
    let events = event_count(&pool).await;
    let first = projector(&pool).batch_size(5);
    let second = projector(&pool).batch_size(7);

    let (a, b) = tokio::join!(first.process_pending(), second.process_pending());

    assert_eq!(a.unwrap() + b.unwrap(), events);
    assert_read_model_matches_the_events(&pool).await;
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn the_lag_counts_the_events_not_yet_projected(pool: PgPool) {
    let read_model = ReadModel::new(pool.clone());
    assert_eq!(read_model.lag(PROJECTION_NAME).await.unwrap(), 0);
    some_history(&pool, 3).await;
    let events = event_count(&pool).await as i64;
    assert_eq!(read_model.lag(PROJECTION_NAME).await.unwrap(), events);

    let projected = projector(&pool)
        .batch_size(2)
        .process_batch()
        .await
        .unwrap();
    assert_eq!(
        read_model.lag(PROJECTION_NAME).await.unwrap(),
        events - projected as i64
    );

    projector(&pool).process_pending().await.unwrap();
    assert_eq!(read_model.lag(PROJECTION_NAME).await.unwrap(), 0);
    assert_eq!(
        read_model.lag("a projector that never ran").await.unwrap(),
        events
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn subscriptions_and_inbox_states_are_projected_from_their_events(pool: PgPool) {
    use followup_domain::{
        Delivery, Filter, NewSubscription, SubscriptionCommand, SubscriptionId, Topic, Viewer,
    };
    let repo = repo(&pool);
    let topic = Topic::parse("education_structure.dates_changed").unwrap();
    let subscriptions = followup_store::Subscriptions::new(store(&pool));
    let (kept, cancelled) = (SubscriptionId::new_v4(), SubscriptionId::new_v4());
    for id in [kept, cancelled] {
        let new = NewSubscription {
            id,
            institution: InstitutionId::parse("KP").unwrap(),
            subscriber: "user:u1".parse().unwrap(),
            topic: topic.clone(),
            filter: Filter::default(),
            delivery: Delivery::Immediate,
        };
        subscriptions
            .execute(
                id,
                SubscriptionCommand::Subscribe(new),
                &followup_domain::Context {
                    actor: Actor::System,
                    now: Utc::now(),
                },
                &followup_store::CommandMeta::default(),
                followup_store::Expect::Current,
            )
            .await
            .unwrap();
    }
    subscriptions
        .execute(
            cancelled,
            SubscriptionCommand::Cancel,
            &followup_domain::Context {
                actor: Actor::System,
                now: Utc::now(),
            },
            &followup_store::CommandMeta::default(),
            followup_store::Expect::Current,
        )
        .await
        .unwrap();
    let notification = create_notification(&repo, "KP", "user:u1").await;
    run(
        &repo,
        notification,
        Command::MarkRead {
            user: "u1".parse().unwrap(),
        },
    )
    .await;

    projector(&pool).process_pending().await.unwrap();

    let read_model = ReadModel::new(pool.clone());
    let u1 = Viewer {
        user: "u1".parse().unwrap(),
        institution: InstitutionId::parse("KP").unwrap(),
        teams: vec![],
        admin: false,
    };
    let active = read_model.subscriptions_of(&u1).await.unwrap();
    assert_eq!(active.iter().map(|s| s.id).collect::<Vec<_>>(), [kept]);
    let inbox = read_model
        .notifications(&u1, &followup_readmodel::InboxQuery::default())
        .await
        .unwrap();
    assert_eq!(inbox.items.len(), 1);
    assert_eq!(inbox.items[0].state.as_str(), "read");
    assert_eq!(read_model.unread_notifications(&u1).await.unwrap(), 0);
}
