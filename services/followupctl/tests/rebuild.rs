//! `followupctl rebuild` against the real PostgreSQL: the rebuilt projection equals the live
//! one, an interrupted rebuild resumes, and readers never see a half-built state.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use common::*;
use followup_domain::{Command, Kind};
use followup_readmodel::{Phase, ReadModel, Rebuild, RebuildError, Tables};
use followupctl::rebuild::{self, RebuildArgs, RebuildOutcome};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

fn args(chunk: usize) -> RebuildArgs {
    RebuildArgs {
        chunk,
        discard: false,
    }
}

#[sqlx::test(migrator = "followup_store::MIGRATOR")]
async fn a_rebuild_gives_exactly_the_read_model_the_live_projector_made(pool: PgPool) {
    seed(&pool, 40).await;
    project(&pool).await;
    let live = dump(&pool).await;
    let indexes = index_names(&pool).await;
    assert_eq!(live.followups.len(), 40);
    assert!(!live.inbox.is_empty() && live.subscriptions.len() == 2);

    // Small chunks, so that chunks end inside streams and resume on the next.
    let outcome = rebuild::run(
        &args(7),
        pool.clone(),
        &CancellationToken::new(),
        &mut |_| {},
    )
    .await
    .unwrap();
    let RebuildOutcome::Rebuilt { report, .. } = outcome else {
        panic!("not rebuilt")
    };
    assert!(!report.resumed);
    assert_eq!(report.followups, 40);
    assert_eq!(dump(&pool).await, live);
    assert_eq!(
        index_names(&pool).await,
        indexes,
        "the indexes keep their names"
    );

    // A second rebuild works as well (its shadow indexes do not collide with the first's).
    rebuild::run(
        &args(1000),
        pool.clone(),
        &CancellationToken::new(),
        &mut |_| {},
    )
    .await
    .unwrap();
    assert_eq!(dump(&pool).await, live);
    assert_eq!(index_names(&pool).await, indexes);
    // Nothing of the rebuild is left behind.
    let leftovers: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_class WHERE relname LIKE '%\\_\\_rebuild'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(leftovers, 0);
}

#[sqlx::test(migrator = "followup_store::MIGRATOR")]
async fn an_interrupted_rebuild_resumes_where_it_stopped_and_loads_only_the_rest(pool: PgPool) {
    seed(&pool, 60).await;
    project(&pool).await;
    let live = dump(&pool).await;

    // Stopped (as by Ctrl-C) as soon as the first chunk is loaded.
    let cancel = CancellationToken::new();
    let stop = cancel.clone();
    let interrupted = rebuild::run(&args(10), pool.clone(), &cancel, &mut |p| {
        if p.phase == Phase::Load && p.done > 0 {
            stop.cancel();
        }
    })
    .await
    .unwrap_err();
    let Some(RebuildError::Interrupted { loaded, total, .. }) = interrupted.downcast_ref() else {
        panic!("not interrupted: {interrupted:#}")
    };
    let (loaded, total) = (*loaded, *total);
    assert!(loaded > 0 && loaded < total, "{loaded} of {total}");
    assert!(interrupted.to_string().contains("run it again to resume"));
    // Meanwhile the service serves the live tables, untouched.
    assert_eq!(dump(&pool).await, live);
    let store = followupctl::inspect::store(pool.clone()).await.unwrap();
    assert_eq!(store.rebuilds.len(), 1);
    assert_eq!(store.rebuilds[0].events_loaded, loaded);

    // Run again: it resumes and loads only what was left.
    let outcome = rebuild::run(
        &args(10),
        pool.clone(),
        &CancellationToken::new(),
        &mut |_| {},
    )
    .await
    .unwrap();
    let RebuildOutcome::Rebuilt { report, .. } = outcome else {
        panic!("not rebuilt")
    };
    assert!(report.resumed);
    assert_eq!(report.events_loaded, total - loaded);
    assert_eq!(dump(&pool).await, live);
    assert!(followupctl::inspect::store(pool.clone())
        .await
        .unwrap()
        .rebuilds
        .is_empty());
}

#[sqlx::test(migrator = "followup_store::MIGRATOR")]
async fn what_happens_while_the_shadow_is_built_is_in_the_projection_switched_in(pool: PgPool) {
    let ids = seed(&pool, 20).await;
    project(&pool).await;
    let rebuild = Rebuild::new(store(&pool)).chunk_size(5);
    rebuild
        .build(&CancellationToken::new(), &mut |_| {})
        .await
        .unwrap();

    // The service goes on: new follow-ups, changes to old ones, projected live.
    let repo = repo(&pool);
    for n in 0..5 {
        create(&repo, Kind::Task, 100 + n, "team:admissions").await;
    }
    run(&repo, ids[2], Command::Close, "u1").await;
    project(&pool).await;
    // And some not projected yet when the switch comes.
    create(&repo, Kind::Task, 200, "team:admissions").await;
    run(&repo, ids[5], Command::Complete, "u1").await;

    rebuild.switch().await.unwrap();
    project(&pool).await;
    let after = dump(&pool).await;
    assert_eq!(after.followups.len(), 26);

    // The same as a projection from scratch by the live projector.
    let verification = Rebuild::for_verification(store(&pool));
    verification
        .build(&CancellationToken::new(), &mut |_| {})
        .await
        .unwrap();
    let comparison = verification.compare(10).await.unwrap();
    assert!(comparison.is_equal(), "{comparison:?}");
    verification.discard().await.unwrap();
}

#[sqlx::test(migrator = "followup_store::MIGRATOR")]
async fn readers_never_see_a_half_built_projection_while_rebuilds_switch(pool: PgPool) {
    seed(&pool, 30).await;
    project(&pool).await;
    let shutdown = CancellationToken::new();
    // The live projector runs, and a caseworker keeps creating tasks (written through).
    let live_projector = tokio::spawn(followup_projector::run(projector(&pool), shutdown.clone()));
    let created = Arc::new(AtomicUsize::new(0));
    let writer = {
        let (pool, shutdown, created) = (pool.clone(), shutdown.clone(), created.clone());
        tokio::spawn(async move {
            let repo = repo(&pool);
            let read_model = ReadModel::new(pool.clone());
            let mut n = 1000;
            while !shutdown.is_cancelled() {
                let id = create(&repo, Kind::Task, n, "team:admissions").await;
                let state = repo.load(id).await.unwrap().unwrap();
                read_model.upsert(&[state]).await.unwrap();
                created.fetch_add(1, Ordering::SeqCst);
                n += 1;
            }
        })
    };
    // Readers: the table never has fewer rows than were there (or written through) before.
    let failed = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicUsize::new(0));
    let reader = {
        let (pool, shutdown, failed, reads, created) = (
            pool.clone(),
            shutdown.clone(),
            failed.clone(),
            reads.clone(),
            created.clone(),
        );
        tokio::spawn(async move {
            let read_model = ReadModel::new(pool.clone());
            let admin = followup_domain::Viewer {
                user: "a".parse().unwrap(),
                institution: "KP".parse().unwrap(),
                teams: Default::default(),
                admin: true,
            };
            while !shutdown.is_cancelled() {
                let at_least = 30 + created.load(Ordering::SeqCst) as i64;
                let count: Result<i64, _> =
                    sqlx::query_scalar(&format!("SELECT count(*) FROM {}", Tables::LIVE.followups))
                        .fetch_one(&pool)
                        .await;
                let listed = read_model
                    .list(&admin, &followup_readmodel::ListQuery::default())
                    .await;
                match (count, listed) {
                    (Ok(count), Ok(page)) if count >= at_least && !page.items.is_empty() => {
                        reads.fetch_add(1, Ordering::SeqCst);
                    }
                    other => {
                        eprintln!("a reader saw {other:?}, expected at least {at_least} rows");
                        failed.store(true, Ordering::SeqCst);
                    }
                }
            }
        })
    };
    for _ in 0..3 {
        rebuild::run(
            &args(8),
            pool.clone(),
            &CancellationToken::new(),
            &mut |_| {},
        )
        .await
        .unwrap();
    }
    shutdown.cancel();
    writer.await.unwrap();
    reader.await.unwrap();
    live_projector.await.unwrap();
    assert!(
        !failed.load(Ordering::SeqCst),
        "a reader saw a half-built state"
    );
    assert!(reads.load(Ordering::SeqCst) > 0);
    assert!(created.load(Ordering::SeqCst) > 0);

    project(&pool).await;
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM followups_view")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(rows, 30 + created.load(Ordering::SeqCst) as i64);
}
