//! The scheduler against the real PostgreSQL (a fresh database per test). Time is a
//! [`ManualClock`] and the moments handed to `run_due`: days of schedule run in milliseconds.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use followup_domain::{
    Access, Actor, Command, Context, Description, Edit, FollowUp, FollowUpId, InstitutionId, Kind,
    NewFollowUp, Principal, Priority, Source, Subject, UserId,
};
use followup_readmodel::{Projection, ReadModel};
use followup_scheduler::jobs::{Firing, Job, JobContext, JobError, JobReport};
use followup_scheduler::{
    CronSchedule, FiringOutcome, JobName, ManualClock, Scheduler, SchedulerConfig,
};
use followup_store::followups::upcaster;
use followup_store::{CommandMeta, EventStore, Expect, FollowUps, MIGRATOR};
use futures::future::BoxFuture;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

// ---------------------------------------------------------------------------------------
// Helpers

fn utc(text: &str) -> DateTime<Utc> {
    text.parse().unwrap()
}

fn principal(text: &str) -> Principal {
    text.parse().unwrap()
}

fn repo(pool: &PgPool) -> FollowUps {
    FollowUps::new(EventStore::new(pool.clone()).with_upcaster(upcaster()))
}

/// Settings with only `jobs` scheduled (at their default schedules).
fn only(jobs: &[JobName]) -> SchedulerConfig {
    let mut config = SchedulerConfig::default();
    config.schedules.retain(|job, _| jobs.contains(job));
    config
}

fn scheduler(pool: &PgPool, config: SchedulerConfig, now: DateTime<Utc>) -> Scheduler {
    Scheduler::new(config, repo(pool), Arc::new(ManualClock::new(now)))
}

/// Brings `followups_view` up to date with the events, as the projector role would.
async fn project(pool: &PgPool) {
    let store = EventStore::new(pool.clone()).with_upcaster(upcaster());
    store
        .wait_until_readable(Duration::from_secs(10))
        .await
        .unwrap();
    Projection::new(store, ReadModel::new(pool.clone()))
        .process_pending()
        .await
        .unwrap();
}

/// Creates a follow-up at `created` (an exception comes from a rule, a task from user u1).
async fn create(
    pool: &PgPool,
    kind: Kind,
    owner: &str,
    subject: &str,
    due: Option<DateTime<Utc>>,
    created: DateTime<Utc>,
) -> FollowUpId {
    let id = FollowUpId::new_v4();
    let (source, actor) = match kind {
        Kind::Exception => (
            Source::Rule {
                rule_id: "applicant-transfer-defects".into(),
                job: "run-1".into(),
            },
            Actor::Rule {
                id: "applicant-transfer-defects".into(),
            },
        ),
        _ => (
            Source::User {
                id: UserId::parse("u1").unwrap(),
            },
            Actor::User {
                id: UserId::parse("u1").unwrap(),
            },
        ),
    };
    let new = NewFollowUp {
        id,
        institution: InstitutionId::parse("KP").unwrap(),
        kind,
        subject: Subject::parse(subject).unwrap(),
        description: Description::parse("").unwrap(),
        regarding: None,
        person: None,
        owner: principal(owner),
        due,
        priority: Priority::Normal,
        source,
    };
    let ctx = Context {
        actor,
        now: created,
    };
    repo(pool)
        .execute(
            id,
            Command::Create(new),
            &ctx,
            &CommandMeta::default(),
            Expect::Current,
        )
        .await
        .unwrap();
    id
}

/// Runs `command` on `id` as user u1 at `now`.
async fn user_does(pool: &PgPool, id: FollowUpId, command: Command, now: DateTime<Utc>) {
    let ctx = Context {
        actor: Actor::User {
            id: UserId::parse("u1").unwrap(),
        },
        now,
    };
    repo(pool)
        .execute(id, command, &ctx, &CommandMeta::default(), Expect::Current)
        .await
        .unwrap();
}

async fn load(pool: &PgPool, id: FollowUpId) -> FollowUp {
    repo(pool).load(id).await.unwrap().unwrap()
}

/// Every notification in the event store, oldest first.
async fn notifications(pool: &PgPool) -> Vec<FollowUp> {
    let ids: Vec<String> = sqlx::query_scalar(
        "SELECT stream_id FROM events
         WHERE event_type = 'created' AND payload->>'kind' = 'notification' ORDER BY position",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let mut found = Vec::new();
    for id in ids {
        found.push(load(pool, id.parse().unwrap()).await);
    }
    found
}

async fn event_count(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(pool)
        .await
        .unwrap()
}

/// The (job, scheduled_at, status, attempts) of every firing, in order.
async fn firings(pool: &PgPool) -> Vec<(String, DateTime<Utc>, String, i32)> {
    sqlx::query_as(
        "SELECT job, scheduled_at, status, attempts FROM scheduler_firings ORDER BY job, scheduled_at",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

/// 10:00 local time on a Tuesday in winter (09:00 UTC): every job has a tick at or before.
const NOW: &str = "2026-12-01T09:00:00Z";

// ---------------------------------------------------------------------------------------
// The built-in jobs

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_follow_up_past_its_due_date_is_marked_overdue_and_its_owner_is_notified(pool: PgPool) {
    // Given a task due an hour ago, one due tomorrow, and one completed past its due date
    let now = utc(NOW);
    let yesterday = now - TimeDelta::days(1);
    let late = create(
        &pool,
        Kind::Task,
        "user:u1",
        "Ring til ansøger",
        Some(now - TimeDelta::hours(1)),
        yesterday,
    )
    .await;
    let later = create(
        &pool,
        Kind::Task,
        "user:u1",
        "Send brev",
        Some(now + TimeDelta::days(1)),
        yesterday,
    )
    .await;
    let done = create(
        &pool,
        Kind::Task,
        "team:admissions",
        "Tjek papirer",
        Some(now - TimeDelta::hours(2)),
        yesterday,
    )
    .await;
    user_does(&pool, done, Command::Complete, yesterday).await;
    project(&pool).await;

    // When the overdue job runs
    let report = scheduler(&pool, only(&[JobName::Overdue]), now)
        .run_due(now)
        .await;

    // Then only the late task is marked overdue, by the scheduler, now
    let job = report.report("overdue").expect("the overdue job ran");
    assert_eq!((job.changed, job.notified), (1, 1));
    assert_eq!(load(&pool, late).await.overdue_since, Some(now));
    assert_eq!(load(&pool, later).await.overdue_since, None);
    assert_eq!(load(&pool, done).await.overdue_since, None);
    let (_, events) = repo(&pool).load_with_events(late).await.unwrap();
    let marked = events.last().unwrap();
    assert_eq!(marked.event_type, "marked_overdue");
    assert_eq!(
        marked.metadata.actor,
        serde_json::json!({"type": "scheduler", "job": "overdue"})
    );

    // And its owner has a notification about it, in Danish, with the date in local time
    let notices = notifications(&pool).await;
    assert_eq!(notices.len(), 1);
    let notice = &notices[0];
    assert_eq!(notice.kind, Kind::Notification);
    assert_eq!(notice.owner, principal("user:u1"));
    assert_eq!(
        notice.subject.as_str(),
        "Overskredet frist: Ring til ansøger"
    );
    assert!(
        notice
            .description
            .as_str()
            .contains("1. december 2026 kl. 09:00"),
        "{}",
        notice.description.as_str()
    );
    assert_eq!(
        notice.regarding.as_ref().unwrap().to_string(),
        format!("followup:{late}")
    );
    assert_eq!(
        notice.source,
        Source::Scheduler {
            job: "overdue".into()
        }
    );

    // And when the read model lags and the job runs again five minutes later, nothing doubles
    let before = event_count(&pool).await;
    let again = scheduler(&pool, only(&[JobName::Overdue]), now)
        .run_due(now + TimeDelta::minutes(5))
        .await;
    assert_eq!(again.report("overdue").unwrap().changed, 0);
    assert_eq!(event_count(&pool).await, before);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn an_owner_is_reminded_once_before_the_due_date_and_again_when_it_moves(pool: PgPool) {
    // Given a task due in 20 hours and one due in 30 hours (the lead is 24 hours)
    let now = utc(NOW);
    let soon_due = utc("2026-12-02T05:00:00Z");
    let soon = create(
        &pool,
        Kind::Task,
        "user:u1",
        "Godkend merit",
        Some(soon_due),
        now - TimeDelta::days(3),
    )
    .await;
    let later = create(
        &pool,
        Kind::Exception,
        "team:admissions",
        "Fejl ved overførsel",
        Some(now + TimeDelta::hours(30)),
        now - TimeDelta::days(3),
    )
    .await;
    project(&pool).await;
    let scheduler = scheduler(&pool, only(&[JobName::Remind]), now);

    // When the hourly reminder job runs
    let first = scheduler.run_due(now).await;

    // Then the owner of the first one is reminded, with its due date in Danish local time
    assert_eq!(first.report("remind").unwrap().notified, 1);
    let notices = notifications(&pool).await;
    assert_eq!(notices.len(), 1);
    assert_eq!(notices[0].owner, principal("user:u1"));
    assert_eq!(
        notices[0].subject.as_str(),
        "Påmindelse: Godkend merit har frist 2. december 2026 kl. 06:00"
    );

    // And an hour later nobody is reminded of it again, while the second one is not yet due
    let second = scheduler.run_due(now + TimeDelta::hours(1)).await;
    assert_eq!(second.report("remind").unwrap().notified, 0);
    assert_eq!(notifications(&pool).await.len(), 1);

    // When the second comes within 24 hours, its owning team is reminded
    let third = scheduler.run_due(now + TimeDelta::hours(7)).await;
    assert_eq!(third.report("remind").unwrap().notified, 1);
    let notices = notifications(&pool).await;
    assert_eq!(notices[1].owner, principal("team:admissions"));
    assert!(notices[1]
        .regarding
        .as_ref()
        .unwrap()
        .to_string()
        .ends_with(&later.to_string()));

    // And when the first one's due date is moved, its owner is reminded of the new one
    let moved = soon_due + TimeDelta::hours(2);
    user_does(
        &pool,
        soon,
        Command::Edit(Edit {
            due: Some(Some(moved)),
            ..Edit::default()
        }),
        now + TimeDelta::hours(7),
    )
    .await;
    project(&pool).await;
    let fourth = scheduler.run_due(now + TimeDelta::hours(8)).await;
    assert_eq!(fourth.report("remind").unwrap().notified, 1);
    assert_eq!(
        notifications(&pool).await[2].subject.as_str(),
        "Påmindelse: Godkend merit har frist 2. december 2026 kl. 08:00"
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn every_user_gets_one_daily_digest_of_their_open_and_overdue_follow_ups(pool: PgPool) {
    // Given user u1 with an overdue task and an open exception, user u2 with one task, and a
    // follow-up owned by a team
    let seven = utc("2026-12-01T06:00:00Z"); // 07:00 in Copenhagen
    let created = seven - TimeDelta::days(5);
    create(
        &pool,
        Kind::Task,
        "user:u1",
        "Ring til ansøger",
        Some(seven - TimeDelta::days(1)),
        created,
    )
    .await;
    create(
        &pool,
        Kind::Exception,
        "user:u1",
        "Fejl ved overførsel",
        Some(seven + TimeDelta::days(2)),
        created,
    )
    .await;
    create(&pool, Kind::Task, "user:u2", "Send brev", None, created).await;
    create(
        &pool,
        Kind::Task,
        "team:admissions",
        "Tjek papirer",
        None,
        created,
    )
    .await;
    project(&pool).await;
    let scheduler = scheduler(&pool, only(&[JobName::Digest]), seven);

    // When the digest runs at 07:00
    let report = scheduler.run_due(seven).await;

    // Then each user has one digest, owned by them, for today
    assert_eq!(report.report("digest").unwrap().notified, 2);
    let digests: BTreeMap<String, FollowUp> = notifications(&pool)
        .await
        .into_iter()
        .map(|n| (n.owner.to_string(), n))
        .collect();
    assert_eq!(digests.keys().collect::<Vec<_>>(), ["user:u1", "user:u2"]);
    let u1 = &digests["user:u1"];
    assert_eq!(
        u1.subject.as_str(),
        "Daglig oversigt 1. december 2026: 2 åbne opfølgninger, heraf 1 overskreden"
    );
    let text = u1.description.as_str();
    assert!(
        text.contains("Overskredne (1):\n- Ring til ansøger (frist 30. november 2026 kl. 07:00)"),
        "{text}"
    );
    assert!(
        text.contains("Øvrige åbne (1):\n- Fejl ved overførsel (frist 3. december 2026 kl. 07:00)"),
        "{text}"
    );
    assert_eq!(
        digests["user:u2"].subject.as_str(),
        "Daglig oversigt 1. december 2026: 1 åben opfølgning"
    );

    // And running the firing again (another scheduler, an operator) sends nothing more
    let again = scheduler
        .fire("digest", seven, seven + TimeDelta::minutes(3))
        .await
        .unwrap();
    assert_eq!((again.notified, again.already_done), (0, 2));
    assert_eq!(notifications(&pool).await.len(), 2);

    // And the next morning brings the next day's digests
    project(&pool).await;
    let next_day = scheduler.run_due(seven + TimeDelta::days(1)).await;
    assert_eq!(next_day.report("digest").unwrap().notified, 2);
    assert_eq!(notifications(&pool).await.len(), 4);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn an_exception_overdue_for_longer_than_the_limit_is_escalated_to_the_team(pool: PgPool) {
    // Given an exception 73 hours overdue, one 10 hours overdue, and a task 100 hours overdue
    let now = utc(NOW);
    let created = now - TimeDelta::days(10);
    let old = create(
        &pool,
        Kind::Exception,
        "team:admissions",
        "Fejl ved overførsel A",
        Some(now - TimeDelta::hours(73)),
        created,
    )
    .await;
    let recent = create(
        &pool,
        Kind::Exception,
        "team:admissions",
        "Fejl ved overførsel B",
        Some(now - TimeDelta::hours(10)),
        created,
    )
    .await;
    let task = create(
        &pool,
        Kind::Task,
        "team:admissions",
        "Send brev",
        Some(now - TimeDelta::hours(100)),
        created,
    )
    .await;
    project(&pool).await;
    let scheduler = scheduler(&pool, only(&[JobName::Escalate]), now);

    // When the escalation job runs
    let report = scheduler.run_due(now).await;

    // Then the old exception has priority high and is shared, writable, with team ledelse;
    // its owner keeps it
    assert_eq!(report.report("escalate").unwrap().changed, 1);
    let escalated = load(&pool, old).await;
    assert_eq!(escalated.priority, Priority::High);
    assert_eq!(
        escalated.shares.get(&principal("team:ledelse")),
        Some(&Access::Write)
    );
    assert_eq!(escalated.owner, principal("team:admissions"));
    for untouched in [recent, task] {
        let followup = load(&pool, untouched).await;
        assert_eq!(
            (followup.priority, followup.shares.len()),
            (Priority::Normal, 0)
        );
    }

    // And fifteen minutes later it is not escalated again
    project(&pool).await;
    let before = event_count(&pool).await;
    let again = scheduler.run_due(now + TimeDelta::minutes(15)).await;
    assert_eq!(again.report("escalate").unwrap().changed, 0);
    assert_eq!(event_count(&pool).await, before);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn an_exception_escalates_to_the_team_configured_for_its_rule(pool: PgPool) {
    // Given the rule's exceptions escalate to team studieledelse
    let now = utc(NOW);
    let old = create(
        &pool,
        Kind::Exception,
        "team:admissions",
        "Fejl ved overførsel",
        Some(now - TimeDelta::days(4)),
        now - TimeDelta::days(10),
    )
    .await;
    project(&pool).await;
    let mut config = only(&[JobName::Escalate]);
    config.escalation_teams.insert(
        "applicant-transfer-defects".into(),
        followup_domain::TeamId::parse("studieledelse").unwrap(),
    );

    // When the escalation job runs
    scheduler(&pool, config, now).run_due(now).await;

    // Then it is shared with that team, not the default one
    let escalated = load(&pool, old).await;
    assert_eq!(
        escalated
            .shares
            .keys()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        ["team:studieledelse"]
    );
}

// ---------------------------------------------------------------------------------------
// Several schedulers, downtime, failures

#[sqlx::test(migrator = "MIGRATOR")]
async fn two_schedulers_on_the_same_tick_run_it_once_and_double_nothing(pool: PgPool) {
    // Given 40 overdue tasks of two users, and two schedulers with every job
    let now = utc(NOW);
    for i in 0..40 {
        let owner = if i % 2 == 0 { "user:u1" } else { "user:u2" };
        let due = now - TimeDelta::hours(80) + TimeDelta::minutes(i);
        let kind = if i % 4 == 0 {
            Kind::Exception
        } else {
            Kind::Task
        };
        create(
            &pool,
            kind,
            owner,
            &format!("Opfølgning {i}"),
            Some(due),
            now - TimeDelta::days(9),
        )
        .await;
    }
    project(&pool).await;
    // Several batches, so the two interleave.
    let config = SchedulerConfig {
        batch_size: 7,
        ..SchedulerConfig::default()
    };
    let first = scheduler(&pool, config.clone(), now);
    let second = scheduler(&pool, config, now);

    // When both reach the same tick at once
    let (a, b) = tokio::join!(first.run_due(now), second.run_due(now));

    // Then each job's firing ran in exactly one of them
    for job in ["overdue", "remind", "digest", "escalate"] {
        let ran = [&a, &b].iter().filter(|r| r.firing(job).is_some()).count();
        assert_eq!(ran, 1, "{job} ran {ran} times");
    }
    // And every overdue task is marked once, with one notification each, and each user has
    // one digest
    let notices = notifications(&pool).await;
    let overdue = notices
        .iter()
        .filter(|n| n.subject.as_str().starts_with("Overskredet frist"))
        .count();
    let digests = notices
        .iter()
        .filter(|n| n.subject.as_str().starts_with("Daglig oversigt"))
        .count();
    assert_eq!((overdue, digests, notices.len()), (40, 2, 42));
    let marked: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = 'marked_overdue'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(marked, 40);

    // And when both run every job of that tick again, forced and at the same time (as after
    // a claim taken over from a scheduler that had done the work), nothing is appended
    let before = event_count(&pool).await;
    for job in ["overdue", "remind", "digest", "escalate"] {
        let (x, y) = tokio::join!(first.fire(job, now, now), second.fire(job, now, now));
        let (x, y) = (x.unwrap(), y.unwrap());
        assert_eq!(
            (x.changed + y.changed, x.notified + y.notified),
            (0, 0),
            "{job}"
        );
    }
    assert_eq!(event_count(&pool).await, before);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn two_schedulers_forced_to_run_the_same_firing_at_once_store_it_once(pool: PgPool) {
    // Given 30 overdue tasks nobody has marked yet
    let now = utc(NOW);
    for i in 0..30 {
        create(
            &pool,
            Kind::Task,
            "user:u1",
            &format!("Opgave {i}"),
            Some(now - TimeDelta::hours(1)),
            now - TimeDelta::days(1),
        )
        .await;
    }
    project(&pool).await;
    let mut config = only(&[JobName::Overdue]);
    config.batch_size = 4;
    let first = scheduler(&pool, config.clone(), now);
    let second = scheduler(&pool, config, now);

    // When both run the overdue job of the same tick concurrently, without claiming it
    let tick = utc("2026-12-01T09:00:00Z");
    let (a, b) = tokio::join!(
        first.fire("overdue", tick, now),
        second.fire("overdue", tick, now)
    );
    let (a, b) = (a.unwrap(), b.unwrap());

    // Then between them they marked each task once and notified once per task
    assert_eq!(a.changed + b.changed, 30);
    assert_eq!(a.notified + b.notified, 30);
    assert_eq!(notifications(&pool).await.len(), 30);
    let marked: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = 'marked_overdue'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(marked, 30);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_missed_firing_runs_once_after_downtime(pool: PgPool) {
    // Given the overdue job (every five minutes) ran at 10:00 local time
    let now = utc(NOW);
    let scheduler = scheduler(&pool, only(&[JobName::Overdue]), now);
    scheduler.run_due(now).await;
    // and tasks fell due while the scheduler was down for three hours
    for hours in 1..=3 {
        create(
            &pool,
            Kind::Task,
            "user:u1",
            &format!("Opgave {hours}"),
            Some(now + TimeDelta::hours(hours) - TimeDelta::minutes(30)),
            now - TimeDelta::days(1),
        )
        .await;
    }
    project(&pool).await;

    // When it is back at 13:07
    let back = now + TimeDelta::hours(3) + TimeDelta::minutes(7);
    let report = scheduler.run_due(back).await;

    // Then the missed firing runs once, for the latest tick (13:05), and marks all three
    let firing = report.firing("overdue").unwrap();
    assert_eq!(
        firing.scheduled_at,
        now + TimeDelta::hours(3) + TimeDelta::minutes(5)
    );
    assert_eq!(report.report("overdue").unwrap().changed, 3);
    let rows: Vec<DateTime<Utc>> = firings(&pool).await.into_iter().map(|f| f.1).collect();
    assert_eq!(
        rows,
        [now, firing.scheduled_at],
        "no firing for the 35 ticks missed"
    );

    // And nothing runs again until the next tick
    assert!(scheduler
        .run_due(back + TimeDelta::minutes(2))
        .await
        .firings
        .is_empty());
    assert_eq!(
        scheduler.next_due(back),
        Some(now + TimeDelta::hours(3) + TimeDelta::minutes(10))
    );
}

/// A job that fails its first `failures` runs, and counts its runs.
#[derive(Debug)]
struct Flaky {
    failures: u32,
    runs: AtomicU32,
}

impl Job for Flaky {
    fn run<'a>(
        &'a self,
        _: &'a JobContext,
        _: &'a Firing,
    ) -> BoxFuture<'a, Result<JobReport, JobError>> {
        Box::pin(async move {
            let run = self.runs.fetch_add(1, Ordering::SeqCst) + 1;
            if run <= self.failures {
                Err(JobError::Other(format!(
                    "the upstream system is away (run {run})"
                )))
            } else {
                Ok(JobReport::default())
            }
        })
    }
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_failing_job_is_retried_with_back_off_and_does_not_stop_the_others(pool: PgPool) {
    // Given a job that fails twice, next to the overdue job, and an overdue task
    let now = utc(NOW);
    let task = create(
        &pool,
        Kind::Task,
        "user:u1",
        "Ring til ansøger",
        Some(now - TimeDelta::hours(1)),
        now - TimeDelta::days(1),
    )
    .await;
    project(&pool).await;
    let flaky = Arc::new(Flaky {
        failures: 2,
        runs: AtomicU32::new(0),
    });
    let scheduler = scheduler(&pool, only(&[JobName::Overdue]), now).with_job(
        "flaky",
        CronSchedule::parse("0 0 * * * *").unwrap(),
        flaky.clone(),
    );

    // When both are due
    let first = scheduler.run_due(now).await;

    // Then the flaky one failed and waits 10 seconds, and the overdue job did its work
    let failed = first.firing("flaky").unwrap();
    assert_eq!(
        failed.outcome,
        FiringOutcome::Failed {
            error: "the upstream system is away (run 1)".into(),
            retry_at: now + TimeDelta::seconds(10),
        }
    );
    assert!(load(&pool, task).await.overdue_since.is_some());

    // And it is not retried before its back-off has passed, then after 10 s and 20 s more
    assert!(scheduler
        .run_due(now + TimeDelta::seconds(9))
        .await
        .firing("flaky")
        .is_none());
    let second = scheduler.run_due(now + TimeDelta::seconds(10)).await;
    let retried = second.firing("flaky").unwrap();
    assert_eq!(retried.attempt, 2);
    assert!(
        matches!(&retried.outcome, FiringOutcome::Failed { retry_at, .. } if *retry_at == now + TimeDelta::seconds(30))
    );
    assert!(scheduler
        .run_due(now + TimeDelta::seconds(29))
        .await
        .firing("flaky")
        .is_none());
    let third = scheduler.run_due(now + TimeDelta::seconds(30)).await;
    assert_eq!(third.firing("flaky").unwrap().attempt, 3);
    assert!(
        third.report("flaky").is_some(),
        "the third attempt succeeds"
    );
    assert_eq!(flaky.runs.load(Ordering::SeqCst), 3);
    let rows = firings(&pool).await;
    assert!(
        rows.contains(&("flaky".into(), now, "done".into(), 3)),
        "{rows:?}"
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_firing_whose_scheduler_crashed_is_taken_over_when_its_lease_runs_out(pool: PgPool) {
    // Given another scheduler claimed today's 07:00 digest and then crashed (its lease of
    // five minutes runs to 07:05)
    let seven = utc("2026-12-01T06:00:00Z");
    create(
        &pool,
        Kind::Task,
        "user:u1",
        "Ring til ansøger",
        None,
        seven - TimeDelta::days(1),
    )
    .await;
    project(&pool).await;
    sqlx::query(
        "INSERT INTO scheduler_firings (job, scheduled_at, status, claimed_by, lease_until, started_at)
         VALUES ('digest', $1, 'running', 'crashed', $2, $1)",
    )
    .bind(seven)
    .bind(seven + TimeDelta::minutes(5))
    .execute(&pool)
    .await
    .unwrap();
    let scheduler = scheduler(&pool, only(&[JobName::Digest]), seven);

    // When this scheduler looks while the lease holds, it leaves the firing alone
    assert!(scheduler
        .run_due(seven + TimeDelta::minutes(2))
        .await
        .firings
        .is_empty());

    // Then when the lease has run out it takes the firing over, and the digest is sent
    let report = scheduler.run_due(seven + TimeDelta::minutes(6)).await;
    let firing = report.firing("digest").unwrap();
    assert_eq!((firing.scheduled_at, firing.attempt), (seven, 2));
    assert_eq!(report.report("digest").unwrap().notified, 1);
    assert_eq!(
        firings(&pool).await,
        [("digest".into(), seven, "done".into(), 2)]
    );
}

// ---------------------------------------------------------------------------------------
// Daylight saving time

/// Steps `scheduler` through every tick in (`from`, `until`], checking that nothing is due a
/// second before each tick, and returns the firings it ran. What was due at `from` (missed
/// while the test was elsewhere) runs first and is not returned.
async fn step_through(
    scheduler: &Scheduler,
    from: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Vec<(String, DateTime<Utc>)> {
    scheduler.run_due(from).await;
    let mut ran = Vec::new();
    let mut t = from;
    while let Some(tick) = scheduler.next_due(t).filter(|tick| *tick <= until) {
        let early = scheduler.run_due(tick - TimeDelta::seconds(1)).await;
        assert!(
            early.firings.is_empty(),
            "something ran before {tick}: {early:?}"
        );
        let report = scheduler.run_due(tick).await;
        ran.extend(report.firings.into_iter().map(|f| (f.job, f.scheduled_at)));
        t = tick;
    }
    ran
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn the_daily_digest_runs_at_seven_local_time_on_the_weekends_the_clocks_change(pool: PgPool) {
    // Given a user with an open task, and the digest at 07:00 (it ran on Friday morning)
    let friday = utc("2027-03-26T06:00:00Z");
    create(
        &pool,
        Kind::Task,
        "user:u1",
        "Ring til ansøger",
        None,
        friday - TimeDelta::days(1),
    )
    .await;
    project(&pool).await;
    let scheduler = scheduler(&pool, only(&[JobName::Digest]), friday);
    scheduler.run_due(friday).await;
    project(&pool).await;

    // When the schedule runs from Friday noon to Monday noon around the last Sunday of March
    // (clocks go forward on the 28th), and around the last Sunday of October (back on the 31st)
    let spring = step_through(
        &scheduler,
        utc("2027-03-26T12:00:00Z"),
        utc("2027-03-29T12:00:00Z"),
    )
    .await;
    let autumn = step_through(
        &scheduler,
        utc("2027-10-29T12:00:00Z"),
        utc("2027-11-01T12:00:00Z"),
    )
    .await;

    // Then it fires at 07:00 local time every day: 06:00 UTC in winter, 05:00 UTC in summer
    let digest = |t: &str| ("digest".to_owned(), utc(t));
    assert_eq!(
        spring,
        [
            digest("2027-03-27T06:00:00Z"),
            digest("2027-03-28T05:00:00Z"),
            digest("2027-03-29T05:00:00Z")
        ]
    );
    assert_eq!(
        autumn,
        [
            digest("2027-10-30T05:00:00Z"),
            digest("2027-10-31T06:00:00Z"),
            digest("2027-11-01T06:00:00Z")
        ]
    );
    // And the user got one digest per day, each for its local date
    let subjects: Vec<String> = notifications(&pool)
        .await
        .into_iter()
        .map(|n| n.subject.as_str().split(':').next().unwrap().to_owned())
        .collect();
    assert_eq!(
        subjects,
        [
            "Daglig oversigt 26. marts 2027",
            "Daglig oversigt 27. marts 2027",
            "Daglig oversigt 28. marts 2027",
            "Daglig oversigt 29. marts 2027",
            // the Friday of the autumn weekend, caught up when the test jumped to its noon
            "Daglig oversigt 29. oktober 2027",
            "Daglig oversigt 30. oktober 2027",
            "Daglig oversigt 31. oktober 2027",
            "Daglig oversigt 1. november 2027",
        ]
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_job_at_half_past_two_runs_at_half_past_three_on_the_day_that_time_does_not_exist(
    pool: PgPool,
) {
    // Given a job at 02:30 local time
    let counter = Arc::new(Flaky {
        failures: 0,
        runs: AtomicU32::new(0),
    });
    let scheduler = scheduler(&pool, only(&[]), utc("2027-03-26T12:00:00Z")).with_job(
        "night",
        CronSchedule::parse("0 30 2 * * *").unwrap(),
        counter.clone(),
    );

    // When the schedule runs through the weekend the clocks go forward (02:00 becomes 03:00
    // on Sunday 28 March 2027) and the one they go back (03:00 becomes 02:00 on 31 October)
    let spring = step_through(
        &scheduler,
        utc("2027-03-26T12:00:00Z"),
        utc("2027-03-29T12:00:00Z"),
    )
    .await;
    let autumn = step_through(
        &scheduler,
        utc("2027-10-29T12:00:00Z"),
        utc("2027-11-01T12:00:00Z"),
    )
    .await;

    // Then on the Sunday in March it runs once, an hour later: 03:30 summer time (01:30 UTC);
    // and on the Sunday in October once, at the first 02:30 (summer time, 00:30 UTC)
    let night = |t: &str| ("night".to_owned(), utc(t));
    assert_eq!(
        spring,
        [
            night("2027-03-27T01:30:00Z"),
            night("2027-03-28T01:30:00Z"),
            night("2027-03-29T00:30:00Z")
        ]
    );
    assert_eq!(
        autumn,
        [
            night("2027-10-30T00:30:00Z"),
            night("2027-10-31T00:30:00Z"),
            night("2027-11-01T01:30:00Z")
        ]
    );
}

// ---------------------------------------------------------------------------------------
// Start-up and the run loop

#[test]
fn an_invalid_cron_expression_stops_start_up_with_a_message_that_names_it() {
    let env = [(
        "FOLLOWUP_SCHEDULE_OVERDUE".to_owned(),
        "*/5 * * *".to_owned(),
    )]
    .into();
    let error = SchedulerConfig::from_lookup(&env).unwrap_err().to_string();
    assert!(
        error.starts_with(
            "FOLLOWUP_SCHEDULE_OVERDUE is invalid (\"*/5 * * *\"): it has 4 fields; expected six fields"
        ),
        "{error}"
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn the_run_loop_fires_what_is_due_and_stops_on_shutdown(pool: PgPool) {
    // Given an overdue task and a scheduler whose clock stands just after a tick
    let now = utc(NOW) + TimeDelta::seconds(1);
    let task = create(
        &pool,
        Kind::Task,
        "user:u1",
        "Ring til ansøger",
        Some(now - TimeDelta::hours(1)),
        now - TimeDelta::days(1),
    )
    .await;
    project(&pool).await;
    let scheduler = scheduler(&pool, only(&[JobName::Overdue]), now);

    // When it runs
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(scheduler.run(shutdown.clone()));

    // Then it marks the task without being asked
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while load(&pool, task).await.overdue_since.is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "the run loop did not fire"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // And it stops when asked
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("the scheduler stops on shutdown")
        .unwrap();
    // A connection the last step used may still be on its way back to the pool: let it
    // arrive, so the test database can be dropped at once.
    tokio::task::yield_now().await;
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn the_morning_digest_sums_up_what_daily_digest_subscriptions_collected_the_day_before(
    pool: PgPool,
) {
    // Given a team's daily-digest subscription that collected two events yesterday (30
    // November, Copenhagen time) and one today
    let seven = utc("2026-12-01T06:00:00Z"); // 07:00 in Copenhagen
    for (key, summary, at) in [
        (
            "esas#1",
            "Startdato for Sygeplejerskeuddannelsen flyttet",
            "2026-11-30T08:00:00Z",
        ),
        (
            "esas#2",
            "Slutdato for Pædagoguddannelsen flyttet",
            "2026-11-30T22:59:00Z",
        ),
        (
            "esas#3",
            "Startdato for Læreruddannelsen flyttet",
            "2026-11-30T23:01:00Z",
        ),
    ] {
        sqlx::query(
            "INSERT INTO digest_entries \
             (subscription_id, event_key, institution, subscriber, topic, summary, occurred_at) \
             VALUES ('7f0e3a52-0b7c-4c57-9a53-5d0e8f1c2b11', $1, 'KP', 'team:uddannelse', \
                     'education_structure.dates_changed', $2, $3)",
        )
        .bind(key)
        .bind(summary)
        .bind(utc(at))
        .execute(&pool)
        .await
        .unwrap();
    }
    let scheduler = scheduler(&pool, only(&[JobName::Digest]), seven);

    // When the digest runs at 07:00, twice (two schedulers)
    scheduler.run_due(seven).await;
    scheduler
        .fire("digest", seven, seven + TimeDelta::minutes(1))
        .await
        .unwrap();

    // Then the team has one digest of yesterday's two events
    let digests = notifications(&pool).await;
    assert_eq!(digests.len(), 1);
    assert_eq!(digests[0].owner, principal("team:uddannelse"));
    assert!(digests[0]
        .subject
        .as_str()
        .contains("30. november 2026: 2 hændelser"));
    let text = digests[0].description.as_str();
    assert!(text.contains("Pædagoguddannelsen"), "{text}");
    assert!(
        !text.contains("Læreruddannelsen"),
        "today's event waits for tomorrow: {text}"
    );
}

// ---------------------------------------------------------------------------------------
// Retention

#[sqlx::test(migrator = "MIGRATOR")]
async fn retention_erases_finished_follow_ups_once_with_two_schedulers_and_keeps_open_and_held_ones(
    pool: PgPool,
) {
    // Given tasks finished 40 days ago, tasks finished 10 days ago, open tasks, and a task
    // finished 40 days ago under a legal hold, and a retention of 30 days for tasks
    let now = utc(NOW);
    let long_ago = now - TimeDelta::days(40);
    let mut expired = Vec::new();
    for i in 0..12 {
        let id = create(
            &pool,
            Kind::Task,
            "user:u1",
            &format!("Ring til ansøger {i}"),
            None,
            long_ago,
        )
        .await;
        user_does(&pool, id, Command::Complete, long_ago).await;
        expired.push(id);
    }
    let mut kept = Vec::new();
    for i in 0..3 {
        let id = create(
            &pool,
            Kind::Task,
            "user:u1",
            &format!("Nylig {i}"),
            None,
            long_ago,
        )
        .await;
        user_does(&pool, id, Command::Close, now - TimeDelta::days(10)).await;
        kept.push(id);
    }
    for i in 0..2 {
        kept.push(
            create(
                &pool,
                Kind::Task,
                "user:u1",
                &format!("Åben {i}"),
                None,
                long_ago,
            )
            .await,
        );
    }
    let held = create(&pool, Kind::Task, "user:u1", "Klagesag", None, long_ago).await;
    user_does(&pool, held, Command::Complete, long_ago).await;
    let reason = followup_domain::Reason::parse("Klagesag 2026-7").unwrap();
    user_does(&pool, held, Command::PlaceLegalHold { reason }, now).await;
    kept.push(held);
    project(&pool).await;
    let mut config = only(&[JobName::Retention]);
    config.retention = "task=30d".parse().unwrap();
    config.batch_size = 5;
    let first = scheduler(&pool, config.clone(), now);
    let second = scheduler(&pool, config, now);

    // When two schedulers run the retention job for the same tick at once
    let (a, b) = tokio::join!(
        first.fire("retention", now, now),
        second.fire("retention", now, now)
    );
    let (a, b) = (a.unwrap(), b.unwrap());

    // Then each expired task is erased exactly once, its key destroyed
    let erased: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = 'erased'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(erased, 12);
    assert_eq!(a.changed + b.changed, 12, "{a:?} {b:?}");
    for id in &expired {
        let task = load(&pool, *id).await;
        assert_eq!(task.subject.as_str(), "[slettet]");
        assert!(task.erased_at.is_some() && task.person.is_none());
        let live: bool = sqlx::query_scalar(
            "SELECT key_material IS NOT NULL FROM data_keys WHERE stream_id = $1",
        )
        .bind(id.to_string())
        .fetch_one(&pool)
        .await
        .unwrap();
        assert!(!live, "the key of {id} still lives");
    }
    // And recent, open and held tasks keep their texts
    for id in &kept {
        let task = load(&pool, *id).await;
        assert_ne!(task.subject.as_str(), "[slettet]", "{id}");
        assert!(task.erased_at.is_none());
    }

    // And running it again erases nothing more
    let before = event_count(&pool).await;
    project(&pool).await;
    let again = first.fire("retention", now, now).await.unwrap();
    assert_eq!(again.changed, 0);
    assert_eq!(event_count(&pool).await, before);
}
