//! A process stalled inside a catalog transaction (stopped, paused by a debugger, its VM frozen)
//! holds its locks only until the server ends its session — the catalog's sessions set
//! `idle_in_transaction_session_timeout` — so a takeover, a pause and every operator read succeed
//! well within a lease's lifetime (ADR 0015).
//!
//! To the server, a stalled client is a session that sent its last statement and says nothing
//! more: each check opens a session with the catalog's own settings, takes the locks a catalog
//! transaction takes first, and never speaks again.

use std::time::{Duration, Instant};

use hakiri_catalog_postgres::{PgPool, PostgresCatalog};
use hakiri_contract::assert_operator_reads;
use hakiri_core::{
    Actor, Catalog, HolderId, Limit, OperatorName, PauseChange, PipelineId, ProjectId, Reason,
    RunQuery, RunStatus,
};
use hakiri_test_kit::{fixtures::running_with_a_checkpoint, postgres};

/// Operator reads never wait on a lock: far under this.
const READS: Duration = Duration::from_secs(3);
/// A takeover waits at most for the server to end the stalled session (the default
/// idle-in-transaction timeout, 5 s), on a loaded machine: well below a minute, and below the
/// statement timeout (30 s) a wait would otherwise run into.
const TAKEOVER: Duration = Duration::from_secs(20);

async fn pool() -> PgPool {
    postgres::shared_pool().await
}

fn project(name: &str) -> ProjectId {
    ProjectId::new(format!("stall-{name}-{}", std::process::id())).unwrap()
}

fn operator() -> Actor {
    Actor::Operator(OperatorName::new("oncall").unwrap())
}

/// What an operator looks at, each within [`READS`].
async fn operator_reads(catalog: &PostgresCatalog, pipeline: &PipelineId) {
    assert_operator_reads(catalog, pipeline, READS).await;
}

/// The session was ended by the server: its next statement fails.
async fn assert_ended(mut stalled: sqlx::Transaction<'static, sqlx::Postgres>) {
    let next = sqlx::query("SELECT 1").execute(&mut *stalled).await;
    assert!(
        next.is_err(),
        "the server should have ended the stalled session"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_stalled_with_its_pipeline_locked_cannot_stop_a_takeover() {
    let project = project("row");
    let worker = PostgresCatalog::new(pool().await, project.clone());
    let pipeline = running_with_a_checkpoint(&worker, Duration::from_secs(1)).await;

    // The worker's process stalls right after locking its pipeline's row, as its renewal, its
    // finish or any other write does first.
    let mut stalled = pool().await.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM pipelines WHERE project = $1 AND id = $2 FOR UPDATE")
        .bind(project.as_str())
        .bind(pipeline.as_str())
        .execute(&mut *stalled)
        .await
        .unwrap();

    let operator_catalog = PostgresCatalog::new(pool().await, project.clone());
    operator_reads(&operator_catalog, &pipeline).await;
    let events = operator_catalog
        .events(0, Limit::new(50).unwrap())
        .await
        .unwrap();
    assert!(events.len() >= 3, "{events:?}");

    // The lease expires (1 s); the takeover waits only until the server ends the stalled session.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let started = Instant::now();
    let lease = operator_catalog
        .force_acquire(
            &pipeline,
            &HolderId::new("operator").unwrap(),
            Duration::from_secs(60),
            &operator(),
            &Reason::new("the worker is stuck").unwrap(),
        )
        .await
        .expect("a takeover behind a stalled holder");
    assert!(
        started.elapsed() < TAKEOVER,
        "the takeover waited {:?}",
        started.elapsed()
    );
    assert_eq!(lease.holder.as_str(), "operator");
    let runs = operator_catalog.list_runs(&RunQuery::all()).await.unwrap();
    assert_eq!(runs.items[0].status, RunStatus::Abandoned);
    operator_catalog
        .set_paused(
            &pipeline,
            PauseChange::Pause(Reason::new("investigating").unwrap()),
            &operator(),
        )
        .await
        .unwrap();
    assert_ended(stalled).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_stalled_while_numbering_events_blocks_no_reader() {
    let project = project("events");
    let worker = PostgresCatalog::new(pool().await, project.clone());
    let pipeline = running_with_a_checkpoint(&worker, Duration::from_secs(60)).await;
    worker.events(0, Limit::new(50).unwrap()).await.unwrap();
    worker
        .set_paused(
            &pipeline,
            PauseChange::Pause(Reason::new("before the stall").unwrap()),
            &operator(),
        )
        .await
        .unwrap();

    // A reader stalls holding the project's numbering lock.
    let mut stalled = pool().await.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM projects WHERE project = $1 FOR UPDATE")
        .bind(project.as_str())
        .execute(&mut *stalled)
        .await
        .unwrap();

    let reader = PostgresCatalog::new(pool().await, project.clone());
    operator_reads(&reader, &pipeline).await;
    let started = Instant::now();
    let events = reader.events(0, Limit::new(50).unwrap()).await.unwrap();
    assert!(
        started.elapsed() < TAKEOVER,
        "the event log waited {:?}",
        started.elapsed()
    );
    assert!(
        events
            .last()
            .is_some_and(|e| matches!(e.kind, hakiri_core::EventKind::PipelinePaused { .. })),
        "the newest event is numbered and read: {events:?}"
    );
    assert_ended(stalled).await;
}
