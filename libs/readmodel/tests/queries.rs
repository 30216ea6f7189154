//! The API's queries against the real PostgreSQL: who sees what, every list filter, cursor
//! pagination while data changes, the dashboard, and the write-through.

mod common;

use std::collections::{BTreeSet, HashSet};

use chrono::{DateTime, Duration, Utc};
use common::*;
use followup_domain::{
    Access, Command, Description, FollowUp, FollowUpId, Kind, Regarding, Status, StatusReason,
    Subject, Viewer,
};
use followup_readmodel::{ListQuery, OwnerFilter, Page, ReadModel};
use followup_store::MIGRATOR;
use sqlx::PgPool;

/// The ids on a page, in order.
fn ids(page: &Page) -> Vec<FollowUpId> {
    page.items.iter().map(|f| f.id).collect()
}

/// The ids of everything `viewer` lists (one page is enough for these tests).
async fn listed(read_model: &ReadModel, viewer: &Viewer, query: ListQuery) -> BTreeSet<FollowUpId> {
    let page = read_model.list(viewer, &query).await.unwrap();
    assert!(page.next_cursor.is_none(), "the test expects one page");
    ids(&page).into_iter().collect()
}

/// A set of ids, for comparing with [`listed`].
fn set<const N: usize>(ids: [FollowUpId; N]) -> BTreeSet<FollowUpId> {
    ids.into_iter().collect()
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn each_viewer_sees_exactly_what_its_institution_ownership_shares_and_role_allow(
    pool: PgPool,
) {
    let repo = repo(&pool);
    let mine = create_task(&repo, "KP", "user:u1").await;
    let admissions = create_task(&repo, "KP", "team:admissions").await;
    let shared = create_task(&repo, "KP", "user:u9").await;
    let share = Command::Share {
        principal: principal("user:u2"),
        access: Access::Read,
    };
    run(&repo, shared, share).await;
    let exams = create_task(&repo, "KP", "team:exams").await;
    // The same user and team names in another institution are other people.
    let elsewhere = create_task(&repo, "UCL", "user:u1").await;
    let elsewhere_team = create_task(&repo, "UCL", "team:admissions").await;
    projector(&pool).process_pending().await.unwrap();
    let read_model = ReadModel::new(pool.clone());
    let all = [mine, admissions, shared, exams, elsewhere, elsewhere_team];

    let cases = [
        (caseworker("KP", "u1", &[]), set([mine])),
        (caseworker("KP", "u3", &["admissions"]), set([admissions])),
        (caseworker("KP", "u2", &[]), set([shared])),
        (
            caseworker("KP", "u1", &["admissions"]),
            set([mine, admissions]),
        ),
        (admin("KP", "boss"), set([mine, admissions, shared, exams])),
        (caseworker("KP", "u4", &["guidance"]), set([])),
        (caseworker("UCL", "u1", &[]), set([elsewhere])),
        (admin("UCL", "u2"), set([elsewhere, elsewhere_team])),
        (caseworker("VIA", "u1", &["admissions"]), set([])),
    ];
    for (viewer, expected) in cases {
        let listed = listed(&read_model, &viewer, ListQuery::new(Utc::now())).await;
        assert_eq!(listed, expected, "list of {viewer:?}");
        for id in all {
            let got = read_model.get(&viewer, id).await.unwrap();
            assert_eq!(
                got.is_some(),
                expected.contains(&id),
                "get {id} by {viewer:?}"
            );
            if let Some(followup) = got {
                assert!(followup_domain::access(&followup, &viewer).is_some());
            }
        }
    }
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_follow_up_that_does_not_exist_is_none(pool: PgPool) {
    let read_model = ReadModel::new(pool);
    let got = read_model
        .get(&admin("KP", "boss"), FollowUpId::new_v4())
        .await
        .unwrap();
    assert!(got.is_none());
}

/// Five follow-ups that u1 (team admissions) sees, different in every filtered field.
struct Fixture {
    read_model: ReadModel,
    viewer: Viewer,
    now: DateTime<Utc>,
    /// A task of u1's, due yesterday: overdue.
    overdue_task: FollowUpId,
    /// An exception of the team about application A-1, due in two days.
    exception: FollowUpId,
    /// A completed notification of u1's, due three days ago: not overdue, being finished.
    completed: FollowUpId,
    /// A task of the team without a due date, with wildcard characters and Danish letters.
    wildcards: FollowUpId,
    /// A closed task of u2's, shared with u1.
    shared: FollowUpId,
}

async fn fixture(pool: PgPool) -> Fixture {
    let now = Utc::now();
    let at = |minutes: i64| now - Duration::minutes(minutes);
    let mut overdue_task = state("KP", "user:u1", at(50));
    overdue_task.due = Some(now - Duration::days(1));
    let mut exception = state("KP", "team:admissions", at(40));
    exception.kind = Kind::Exception;
    exception.due = Some(now + Duration::days(2));
    exception.regarding = Some(Regarding::parse("application", "A-1").unwrap());
    exception.subject = Subject::from_upstream("Overførsel af ansøger fejlede");
    let mut completed = state("KP", "user:u1", at(30));
    completed.kind = Kind::Notification;
    completed.due = Some(now - Duration::days(3));
    completed.status = Status::Completed;
    completed.status_reason = StatusReason::Handled;
    let mut wildcards = state("KP", "team:admissions", at(20));
    wildcards.subject = Subject::parse("Rabat på 50% for holdet").unwrap();
    wildcards.description = Description::parse("Ring til ÆBLEHAVEN_skolen").unwrap();
    let mut shared = state("KP", "user:u2", at(10));
    shared.shares.insert(principal("user:u1"), Access::Read);
    shared.status = Status::Closed;
    shared.status_reason = StatusReason::NotNeeded;
    shared.regarding = Some(Regarding::parse("application", "A-10").unwrap());
    let fixture = Fixture {
        read_model: ReadModel::new(pool),
        viewer: caseworker("KP", "u1", &["admissions"]),
        now,
        overdue_task: overdue_task.id,
        exception: exception.id,
        completed: completed.id,
        wildcards: wildcards.id,
        shared: shared.id,
    };
    fixture
        .read_model
        .upsert(&[overdue_task, exception, completed, wildcards, shared])
        .await
        .unwrap();
    fixture
}

impl Fixture {
    async fn list(&self, change: impl FnOnce(&mut ListQuery)) -> BTreeSet<FollowUpId> {
        let mut query = ListQuery::new(self.now);
        change(&mut query);
        listed(&self.read_model, &self.viewer, query).await
    }
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn the_kind_and_status_filters_keep_only_matching_follow_ups(pool: PgPool) {
    let f = fixture(pool).await;
    assert_eq!(
        f.list(|q| q.kind = Some(Kind::Exception)).await,
        set([f.exception])
    );
    assert_eq!(
        f.list(|q| q.kind = Some(Kind::Task)).await,
        set([f.overdue_task, f.wildcards, f.shared])
    );
    assert_eq!(
        f.list(|q| q.status = Some(Status::Open)).await,
        set([f.overdue_task, f.exception, f.wildcards])
    );
    assert_eq!(
        f.list(|q| q.status = Some(Status::Closed)).await,
        set([f.shared])
    );
    assert_eq!(
        f.list(|q| {
            q.kind = Some(Kind::Task);
            q.status = Some(Status::Open);
        })
        .await,
        set([f.overdue_task, f.wildcards])
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn the_owner_filter_means_the_viewer_itself_or_the_principal_named(pool: PgPool) {
    let f = fixture(pool).await;
    assert_eq!(
        f.list(|q| q.owner = Some(OwnerFilter::Me)).await,
        set([f.overdue_task, f.completed])
    );
    assert_eq!(
        f.list(|q| q.owner = Some(OwnerFilter::Principal(principal("team:admissions"))))
            .await,
        set([f.exception, f.wildcards])
    );
    assert_eq!(
        f.list(|q| q.owner = Some(OwnerFilter::Principal(principal("user:u2"))))
            .await,
        set([f.shared])
    );
    assert_eq!(
        f.list(|q| q.owner = Some(OwnerFilter::Principal(principal("team:exams"))))
            .await,
        set([])
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn the_regarding_filter_matches_type_and_id_exactly(pool: PgPool) {
    let f = fixture(pool).await;
    let regarding = |text: &str| text.parse::<Regarding>().unwrap();
    assert_eq!(
        f.list(|q| q.regarding = Some(regarding("application:A-1")))
            .await,
        set([f.exception])
    );
    assert_eq!(
        f.list(|q| q.regarding = Some(regarding("application:A-10")))
            .await,
        set([f.shared])
    );
    assert_eq!(
        f.list(|q| q.regarding = Some(regarding("student:A-1")))
            .await,
        set([])
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn overdue_means_open_and_due_before_now_and_false_means_everything_else(pool: PgPool) {
    let f = fixture(pool).await;
    assert_eq!(
        f.list(|q| q.overdue = Some(true)).await,
        set([f.overdue_task])
    );
    assert_eq!(
        f.list(|q| q.overdue = Some(false)).await,
        set([f.exception, f.completed, f.wildcards, f.shared])
    );
    assert_eq!(
        f.list(|q| {
            q.overdue = Some(true);
            q.status = Some(Status::Completed);
        })
        .await,
        set([])
    );
    // Judged at the query's `now`: three days from now the exception is overdue too.
    let later = f.now + Duration::days(3);
    assert_eq!(
        f.list(|q| {
            q.now = later;
            q.overdue = Some(true);
        })
        .await,
        set([f.overdue_task, f.exception])
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn due_before_keeps_follow_ups_due_earlier_and_never_those_without_a_due_date(pool: PgPool) {
    let f = fixture(pool).await;
    assert_eq!(
        f.list(|q| q.due_before = Some(f.now)).await,
        set([f.overdue_task, f.completed])
    );
    assert_eq!(
        f.list(|q| q.due_before = Some(f.now + Duration::days(30)))
            .await,
        set([f.overdue_task, f.completed, f.exception])
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn q_finds_text_in_subject_or_description_ignoring_case_and_wildcards(pool: PgPool) {
    let f = fixture(pool).await;
    let q = |text: &str| {
        let text = text.to_owned();
        move |query: &mut ListQuery| query.q = Some(text)
    };
    assert_eq!(f.list(q("overførsel")).await, set([f.exception]));
    assert_eq!(f.list(q("æblehaven")).await, set([f.wildcards]));
    assert_eq!(f.list(q("50%")).await, set([f.wildcards]));
    assert_eq!(f.list(q("n_s")).await, set([f.wildcards]));
    // `%` and `_` are not wildcards: "5%" is not in "50%", "a_n" is nowhere.
    assert_eq!(f.list(q("5%")).await, set([]));
    assert_eq!(f.list(q("a_n")).await, set([]));
    assert_eq!(
        f.list(q("   ")).await.len(),
        5,
        "blank text filters nothing"
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_list_is_newest_first(pool: PgPool) {
    let f = fixture(pool).await;
    let page = f
        .read_model
        .list(&f.viewer, &ListQuery::new(f.now))
        .await
        .unwrap();
    assert_eq!(
        ids(&page),
        [
            f.shared,
            f.wildcards,
            f.completed,
            f.exception,
            f.overdue_task
        ]
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn paging_gives_every_row_exactly_once_while_rows_are_created_and_changed(pool: PgPool) {
    let read_model = ReadModel::new(pool);
    let viewer = caseworker("KP", "u1", &["admissions"]);
    let start = Utc::now() - Duration::hours(1);
    // 25 follow-ups; every third one shares its creation time with the one before, so the
    // id has to break ties.
    let mut rows: Vec<FollowUp> = Vec::new();
    for i in 0..25 {
        let minutes = i - i64::from(i % 3 == 2);
        let owner = if i % 2 == 0 {
            "user:u1"
        } else {
            "team:admissions"
        };
        rows.push(state("KP", owner, start + Duration::minutes(minutes)));
    }
    read_model.upsert(&rows).await.unwrap();
    let mut seen: Vec<FollowUpId> = Vec::new();
    let mut query = ListQuery::new(Utc::now());
    query.limit = 10;

    let first = read_model.list(&viewer, &query).await.unwrap();
    seen.extend(ids(&first));
    // Between the pages: new follow-ups arrive, and old ones on both sides of the cursor
    // change (a new subject, a completion, a new owner the viewer still sees).
    let new: Vec<FollowUp> = (0..3).map(|_| state("KP", "user:u1", Utc::now())).collect();
    read_model.upsert(&new).await.unwrap();
    let changed: Vec<FollowUp> = [0usize, 5, 12, 24]
        .iter()
        .map(|&i| {
            let mut row = rows[i].clone();
            row.version += 1;
            row.status = Status::Completed;
            row.status_reason = StatusReason::Handled;
            row.owner = principal("team:admissions");
            row
        })
        .collect();
    read_model.upsert(&changed).await.unwrap();
    query.cursor = first.next_cursor;
    let second = read_model.list(&viewer, &query).await.unwrap();
    seen.extend(ids(&second));
    query.cursor = second.next_cursor;
    let third = read_model.list(&viewer, &query).await.unwrap();
    seen.extend(ids(&third));

    assert_eq!(
        (first.items.len(), second.items.len(), third.items.len()),
        (10, 10, 5)
    );
    assert!(third.next_cursor.is_none());
    let unique: HashSet<FollowUpId> = seen.iter().copied().collect();
    assert_eq!(unique.len(), 25, "no row twice");
    let expected: HashSet<FollowUpId> = rows.iter().map(|f| f.id).collect();
    assert_eq!(
        unique, expected,
        "every row of the first list, none created later"
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_last_page_that_is_exactly_full_has_no_next_cursor(pool: PgPool) {
    let read_model = ReadModel::new(pool);
    let now = Utc::now();
    let rows: Vec<FollowUp> = (0..4)
        .map(|i| state("KP", "user:u1", now - Duration::minutes(i)))
        .collect();
    read_model.upsert(&rows).await.unwrap();
    let mut query = ListQuery::new(now);
    query.limit = 2;
    let viewer = caseworker("KP", "u1", &[]);

    let first = read_model.list(&viewer, &query).await.unwrap();
    query.cursor = first.next_cursor;
    let second = read_model.list(&viewer, &query).await.unwrap();

    assert!(first.next_cursor.is_some());
    assert_eq!(second.items.len(), 2);
    assert!(second.next_cursor.is_none());
    // The cursor survives the trip through its text form.
    let text = first.next_cursor.unwrap().to_string();
    query.cursor = Some(text.parse().unwrap());
    assert_eq!(
        ids(&read_model.list(&viewer, &query).await.unwrap()),
        ids(&second)
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_limit_out_of_range_is_clamped(pool: PgPool) {
    let read_model = ReadModel::new(pool);
    let now = Utc::now();
    let rows: Vec<FollowUp> = (0..3).map(|_| state("KP", "user:u1", now)).collect();
    read_model.upsert(&rows).await.unwrap();
    let mut query = ListQuery::new(now);
    query.limit = 0;
    let page = read_model
        .list(&caseworker("KP", "u1", &[]), &query)
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn the_dashboard_counts_open_follow_ups_owned_by_the_viewer_and_its_teams(pool: PgPool) {
    let read_model = ReadModel::new(pool);
    let now = Utc::now();
    let mut rows = Vec::new();
    let mut add = |owner: &str, kind: Kind, due: Option<Duration>, status: Status| {
        let mut row = state("KP", owner, now);
        row.kind = kind;
        row.due = due.map(|d| now + d);
        row.status = status;
        rows.push(row);
    };
    add(
        "user:u1",
        Kind::Task,
        Some(Duration::days(-1)),
        Status::Open,
    ); // overdue
    add("user:u1", Kind::Task, Some(Duration::days(2)), Status::Open); // this week
    add(
        "team:admissions",
        Kind::Exception,
        Some(Duration::days(6)),
        Status::Open,
    ); // this week
    add(
        "team:admissions",
        Kind::Exception,
        Some(Duration::days(8)),
        Status::Open,
    ); // later
    add("user:u1", Kind::Notification, None, Status::Open);
    add(
        "user:u1",
        Kind::Task,
        Some(Duration::days(-1)),
        Status::Completed,
    ); // finished
    add(
        "team:exams",
        Kind::Task,
        Some(Duration::days(-1)),
        Status::Open,
    ); // not ours
    let mut shared = state("KP", "user:u2", now);
    shared.shares.insert(principal("user:u1"), Access::Write);
    rows.push(shared); // shared with u1, but not owned
    let mut elsewhere = state("UCL", "user:u1", now);
    elsewhere.due = Some(now - Duration::days(1));
    rows.push(elsewhere);
    read_model.upsert(&rows).await.unwrap();

    let dashboard = read_model
        .dashboard(&caseworker("KP", "u1", &["admissions"]), now)
        .await
        .unwrap();
    assert_eq!(
        serde_json::to_value(dashboard).unwrap(),
        serde_json::json!({
            "open_by_kind": {"exception": 2, "task": 2, "notification": 1},
            "overdue": 1,
            "due_this_week": 2,
            // The open notification u1 owns has not been read.
            "unread_notifications": 1,
        })
    );

    // An admin's dashboard is its own work too, not its whole institution's.
    let admin = read_model
        .dashboard(&admin("KP", "boss"), now)
        .await
        .unwrap();
    assert_eq!(admin, Default::default());
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn an_older_version_written_later_never_replaces_a_newer_row(pool: PgPool) {
    let read_model = ReadModel::new(pool);
    let viewer = caseworker("KP", "u1", &[]);
    let v1 = state("KP", "user:u1", Utc::now());
    let mut v2 = v1.clone();
    v2.version = 2;
    v2.subject = Subject::parse("Anden udgave").unwrap();
    let mut v3 = v2.clone();
    v3.version = 3;
    v3.subject = Subject::parse("Tredje udgave").unwrap();

    read_model.upsert(std::slice::from_ref(&v3)).await.unwrap();
    read_model.upsert(&[v2]).await.unwrap();
    read_model.upsert(std::slice::from_ref(&v1)).await.unwrap();
    assert_eq!(
        read_model.get(&viewer, v1.id).await.unwrap(),
        Some(v3.clone())
    );

    // One call with several versions of the same follow-up keeps the newest.
    let other = state("KP", "user:u1", Utc::now());
    let mut newer = other.clone();
    newer.version = 2;
    read_model
        .upsert(&[newer.clone(), other.clone()])
        .await
        .unwrap();
    assert_eq!(
        read_model.get(&viewer, other.id).await.unwrap(),
        Some(newer)
    );
}
