//! Racing writers: never two live holders, exact totals, no lost updates (invariants 1, 3 in
//! `docs/guarantees.md`
//! and 6; §7).
//!
//! The checks spawn tasks on the test's multi-threaded runtime, each with its own handle to the
//! catalog; they wait for each other only through the catalog, so they hold on a backend with a
//! real clock and real network latency too.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hakiri_core::{
    BeginRun, Catalog, CatalogExt, ConnectorConfig, CursorAdvance, CursorKind, Decide, Error,
    FinishRun, HolderId, Lease, Limit, PipelineId, PutMode, Resolution, RunQuery, RunStatus,
    Schema, StreamName, Trigger, Verdict,
};
use serde_json::json;
use tokio::sync::Barrier;
use tokio::task::JoinHandle;

use crate::{holder_id, operator, pid, reason, stream, value, Ctx};

/// Concurrent tasks per check.
const TASKS: usize = 8;
/// Rounds per task in the lease race.
const ROUNDS: usize = 25;

/// Waits for every task, propagating panics (a failed assertion in a task fails the check).
async fn join_all<T>(handles: Vec<JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::with_capacity(handles.len());
    for handle in handles {
        match handle.await {
            Ok(v) => out.push(v),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => panic!("task failed: {e}"),
        }
    }
    out
}

/// Takes `pipeline`'s lease, waiting while someone else holds it.
async fn acquire_when_free(
    catalog: &dyn Catalog,
    pipeline: &PipelineId,
    holder: &HolderId,
    ttl: Duration,
) -> Lease {
    loop {
        match catalog.acquire(pipeline, holder, ttl).await {
            Ok(lease) => return lease,
            Err(Error::Leased { .. }) => tokio::time::sleep(Duration::from_millis(1)).await,
            Err(e) if e.is_retryable() => tokio::task::yield_now().await,
            Err(e) => panic!("acquire failed: {e:?}"),
        }
    }
}

/// Increments `pipeline`'s numeric cursor on `s` by one: read, then checkpoint with the version
/// read, re-reading on `Conflict`. Returns how many conflicts it met.
async fn increment(
    catalog: &dyn Catalog,
    lease: &Lease,
    run: hakiri_core::RunId,
    s: &StreamName,
) -> usize {
    let mut conflicts = 0;
    loop {
        let current = catalog
            .get_cursor(&lease.pipeline, s)
            .await
            .expect("read cursor");
        let (n, version) = current.map_or((0, 0), |c| {
            (c.value.as_json().as_u64().expect("a count"), c.version)
        });
        // Let other writers run between the read and the write, as network latency would.
        tokio::task::yield_now().await;
        let advance = CursorAdvance::to(value(json!(n + 1))).expecting(version);
        match catalog.advance(lease, run, s, advance).await {
            Ok(cursor) => {
                assert_eq!(cursor.version, version + 1);
                return conflicts;
            }
            Err(e @ Error::Conflict { .. }) => {
                assert!(e.is_retryable());
                conflicts += 1;
            }
            Err(e) => panic!("checkpoint failed: {e:?}"),
        }
    }
}

/// N writers × M rounds on one pipeline — acquire, begin, read-increment-checkpoint, finish,
/// release — never have two live holders, and lose no increment and no run.
pub async fn concurrency_lease_race_exact_total(cx: &Ctx) {
    cx.pipeline("p").await;
    let live = Arc::new(AtomicUsize::new(0));
    let mut handles = Vec::new();
    for task in 0..TASKS {
        let catalog = cx.catalog.clone();
        let live = live.clone();
        let ttl = cx.ttl();
        handles.push(tokio::spawn(async move {
            let p = pid("p");
            let s = stream("count");
            let holder = holder_id(&format!("writer-{task}"));
            for _ in 0..ROUNDS {
                let lease = acquire_when_free(&*catalog, &p, &holder, ttl).await;
                let before = live.fetch_add(1, Ordering::SeqCst);
                assert_eq!(before, 0, "two live holders at once");
                tokio::task::yield_now().await;
                let run = catalog
                    .begin_run(&lease, BeginRun::new(Trigger::Manual))
                    .await
                    .expect("begin run");
                increment(&*catalog, &lease, run.id, &s).await;
                let finished = catalog
                    .finish_run(&lease, run.id, FinishRun::succeeded())
                    .await
                    .expect("finish run");
                assert_eq!(finished.status, RunStatus::Succeeded);
                tokio::task::yield_now().await;
                live.fetch_sub(1, Ordering::SeqCst);
                catalog.release(&lease).await.expect("release");
            }
        }));
    }
    join_all(handles).await;

    let total = TASKS * ROUNDS;
    let cursor = cx
        .get_cursor(&pid("p"), &stream("count"))
        .await
        .unwrap()
        .expect("the cursor exists");
    assert_eq!(cursor.value, value(json!(total)));
    assert_eq!(cursor.version, total as u64);
    let runs = cx
        .list_runs(&RunQuery::all().pipeline(pid("p")).limit(Limit::MAX))
        .await
        .unwrap();
    assert_eq!(runs.items.len(), total);
    assert!(runs.items.iter().all(|r| r.status == RunStatus::Succeeded));
    let mut epochs: Vec<_> = runs.items.iter().map(|r| r.epoch).collect();
    epochs.sort();
    epochs.dedup();
    assert_eq!(epochs.len(), total, "every round ran under its own epoch");
}

/// N tasks acquiring the same free pipeline at once: exactly one wins, every other gets `Leased`
/// naming the winner.
pub async fn concurrency_acquire_race_has_one_winner(cx: &Ctx) {
    cx.pipeline("p").await;
    let barrier = Arc::new(Barrier::new(TASKS));
    let mut handles = Vec::new();
    for task in 0..TASKS {
        let catalog = cx.catalog.clone();
        let barrier = barrier.clone();
        let ttl = cx.ttl();
        handles.push(tokio::spawn(async move {
            barrier.wait().await;
            catalog
                .acquire(&pid("p"), &holder_id(&format!("racer-{task}")), ttl)
                .await
        }));
    }
    let results = join_all(handles).await;
    let winners: Vec<&Lease> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(winners.len(), 1, "exactly one winner: {results:?}");
    let winner = winners[0];
    for result in &results {
        match result {
            Ok(_) => {}
            Err(Error::Leased { holder, epoch, .. }) => {
                assert_eq!(*holder, winner.holder);
                assert_eq!(*epoch, winner.epoch);
            }
            Err(other) => panic!("expected Leased, got {other:?}"),
        }
    }
    let status = cx.all_statuses().await.unwrap();
    let lease = status.items[0].lease.as_ref().expect("leased");
    assert_eq!(lease.holder.as_ref(), Some(&winner.holder));
    assert_eq!(lease.epoch, winner.epoch);
}

/// N tasks updating one pipeline spec by compare-and-set on its generation, retrying on
/// `Conflict`: no update is lost and the generation counts every change.
pub async fn concurrency_spec_generation_compare_and_set(cx: &Ctx) {
    const CHANGES: usize = 4;
    cx.pipeline("p").await;
    let barrier = Arc::new(Barrier::new(TASKS));
    let mut handles = Vec::new();
    for task in 0..TASKS {
        let catalog = cx.catalog.clone();
        let barrier = barrier.clone();
        handles.push(tokio::spawn(async move {
            barrier.wait().await;
            let (mut successes, mut conflicts) = (0usize, 0usize);
            for change in 0..CHANGES {
                loop {
                    let current = catalog.get_pipeline(&pid("p")).await.expect("read");
                    let mut config = current.spec.config.as_map().clone();
                    config.insert(format!("task-{task}-change-{change}"), json!(true));
                    let config = ConnectorConfig::new(config.into()).expect("valid config");
                    let spec = current.spec.clone().with_config(config);
                    tokio::task::yield_now().await;
                    let mode = PutMode::Update {
                        expected: current.generation,
                    };
                    match catalog.put_pipeline(spec, mode, &operator()).await {
                        Ok(updated) => {
                            assert_eq!(updated.generation, current.generation.next());
                            successes += 1;
                            break;
                        }
                        Err(e @ Error::Conflict { .. }) => {
                            assert!(e.is_retryable());
                            conflicts += 1;
                        }
                        Err(e) => panic!("put failed: {e:?}"),
                    }
                }
            }
            (successes, conflicts)
        }));
    }
    let results = join_all(handles).await;
    let successes: usize = results.iter().map(|(s, _)| s).sum();
    assert_eq!(successes, TASKS * CHANGES);
    let pipeline = cx.get_pipeline(&pid("p")).await.unwrap();
    assert_eq!(pipeline.generation.get(), 1 + successes as u64);
    let config = pipeline.spec.config.as_map();
    assert_eq!(config.len(), TASKS * CHANGES);
    for task in 0..TASKS {
        for change in 0..CHANGES {
            let key = format!("task-{task}-change-{change}");
            assert_eq!(config.get(&key), Some(&json!(true)), "lost update {key}");
        }
    }
}

/// N tasks sharing one lease and run, each doing M compare-and-set increments of one cursor with
/// retry on `Conflict`: the final value and version are exactly N × M.
pub async fn concurrency_cursor_compare_and_set_exact_total(cx: &Ctx) {
    const INCREMENTS: usize = 10;
    cx.pipeline("p").await;
    // Hundreds of round trips under one lease: a lease of the harness's short ttl would expire
    // on a loaded machine (fencing the writers), which is not what this check is about.
    let lease = cx
        .acquire(&pid("p"), &holder_id("worker-1"), Duration::from_secs(600))
        .await
        .expect("acquire");
    let run = cx
        .begin_run(&lease, BeginRun::new(Trigger::Manual))
        .await
        .expect("begin run");
    let barrier = Arc::new(Barrier::new(TASKS));
    let mut handles = Vec::new();
    for _ in 0..TASKS {
        let catalog = cx.catalog.clone();
        let barrier = barrier.clone();
        let lease = lease.clone();
        handles.push(tokio::spawn(async move {
            barrier.wait().await;
            let s = stream("count");
            let mut conflicts = 0;
            for _ in 0..INCREMENTS {
                conflicts += increment(&*catalog, &lease, run.id, &s).await;
            }
            conflicts
        }));
    }
    join_all(handles).await;
    let total = TASKS * INCREMENTS;
    let cursor = cx
        .get_cursor(&pid("p"), &stream("count"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cursor.value, value(json!(total)));
    assert_eq!(cursor.version, total as u64);
    let history = cx
        .cursor_history(&pid("p"), &stream("count"), None, Limit::MAX)
        .await
        .unwrap();
    let values: Vec<u64> = history
        .items
        .iter()
        .map(|e| e.value.as_json().as_u64().unwrap())
        .collect();
    let expected: Vec<u64> = (1..=total as u64).rev().collect();
    assert_eq!(values, expected, "every version is one increment");
}

/// N operators deciding the same held decision at once: exactly one wins, the others get
/// `Conflict`, and the schema gets exactly one new version.
pub async fn concurrency_decide_race_has_one_winner(cx: &Ctx) {
    use hakiri_core::{Column, ColumnType};
    let (lease, run) = cx.running_of("p", CursorKind::Opaque).await;
    let id = Column::new("id", ColumnType::Integer, false);
    let v1 = Schema::new(vec![id.clone()], vec![]).unwrap();
    let v2 = Schema::new(vec![Column::new("id", ColumnType::Boolean, false)], vec![]).unwrap();
    cx.observe_schema(&lease, run.id, &stream("s"), v1)
        .await
        .unwrap();
    let held = cx
        .observe_schema(&lease, run.id, &stream("s"), v2)
        .await
        .unwrap()
        .decision
        .expect("a held decision");
    assert_eq!(held.verdict, Verdict::Held);
    let barrier = Arc::new(Barrier::new(TASKS));
    let mut handles = Vec::new();
    for task in 0..TASKS {
        let catalog = cx.catalog.clone();
        let barrier = barrier.clone();
        handles.push(tokio::spawn(async move {
            barrier.wait().await;
            let resolution = if task % 2 == 0 {
                Resolution::Accept
            } else {
                Resolution::Reject
            };
            let decide = Decide {
                resolution,
                by: operator(),
                reason: reason(&format!("operator {task}")),
            };
            catalog.decide(held.id, decide).await
        }));
    }
    let results = join_all(handles).await;
    let winners: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(winners.len(), 1, "exactly one resolution: {results:?}");
    for result in &results {
        assert!(
            matches!(result, Ok(_) | Err(Error::Conflict { .. })),
            "{result:?}"
        );
    }
    let winner = winners[0];
    let stored = cx.held_decisions(&pid("p")).await.unwrap();
    assert!(stored.is_empty());
    let versions = cx
        .list_schema_versions(&pid("p"), &stream("s"))
        .await
        .unwrap();
    let expected_versions = if winner.verdict == Verdict::Accepted {
        2
    } else {
        1
    };
    assert_eq!(versions.len(), expected_versions);
    assert!(cx.get_pipeline(&pid("p")).await.unwrap().paused.is_none());
}

/// N tasks beginning a run under the same lease at once: exactly one run begins, the others get
/// `FailedPrecondition`.
pub async fn concurrency_begin_run_race_has_one_running_run(cx: &Ctx) {
    cx.pipeline("p").await;
    let lease = cx.lease("p", "worker-1").await;
    let barrier = Arc::new(Barrier::new(TASKS));
    let mut handles = Vec::new();
    for _ in 0..TASKS {
        let catalog = cx.catalog.clone();
        let barrier = barrier.clone();
        let lease = lease.clone();
        handles.push(tokio::spawn(async move {
            barrier.wait().await;
            catalog
                .begin_run(&lease, BeginRun::new(Trigger::Manual))
                .await
        }));
    }
    let results = join_all(handles).await;
    let begun: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(begun.len(), 1, "exactly one run begins: {results:?}");
    for result in &results {
        assert!(
            matches!(result, Ok(_) | Err(Error::FailedPrecondition(_))),
            "{result:?}"
        );
    }
    let running = cx
        .list_runs(
            &RunQuery::all()
                .pipeline(pid("p"))
                .status(RunStatus::Running),
        )
        .await
        .unwrap();
    assert_eq!(running.items.len(), 1);
    assert_eq!(running.items[0].id, begun[0].id);
    let all = cx
        .list_runs(&RunQuery::all().pipeline(pid("p")))
        .await
        .unwrap();
    assert_eq!(all.items.len(), 1);
}

#[doc(hidden)]
#[macro_export]
macro_rules! __contract_concurrency {
    ($harness:expr) => {
        $crate::__contract_checks!($harness; concurrency:
            concurrency_lease_race_exact_total,
            concurrency_acquire_race_has_one_winner,
            concurrency_spec_generation_compare_and_set,
            concurrency_cursor_compare_and_set_exact_total,
            concurrency_decide_race_has_one_winner,
            concurrency_begin_run_race_has_one_running_run,
        );
    };
}
