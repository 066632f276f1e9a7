//! Runs: begin and finish, at most one running run, atomic finish, reading and listing
//! (invariants 5 and 6 in `docs/guarantees.md`).

use std::collections::BTreeMap;
use std::time::Duration;

use hakiri_core::{
    BeginRun, CatalogExt, Column, ColumnType, Entity, Error, FinishRun, Lease, Limit, Outcome, Run,
    RunError, RunId, RunQuery, RunStatus, Schema, StreamStats, StreamStatus, Timestamp, Trigger,
};
use serde_json::json;

use crate::{holder_id, pid, reason, stream, value, Ctx};

/// Moves the catalog clock on by a few milliseconds, so that the next run begins in a later
/// millisecond than the previous one (run ids are ordered by their millisecond).
async fn tick(cx: &Ctx) {
    cx.harness.advance(Duration::from_millis(2)).await;
}

/// Begins a run under `lease` (in a later millisecond) and finishes it with `outcome`.
async fn completed_run(cx: &Ctx, lease: &Lease, outcome: Outcome) -> Run {
    tick(cx).await;
    let run = cx
        .begin_run(lease, BeginRun::new(Trigger::Manual))
        .await
        .expect("begin run");
    cx.finish_run(lease, run.id, FinishRun::new(outcome))
        .await
        .expect("finish run")
}

fn ids(runs: &[Run]) -> Vec<RunId> {
    runs.iter().map(|r| r.id).collect()
}

/// A simple one-column schema.
fn schema() -> Schema {
    Schema::new(
        vec![Column::new("id", ColumnType::Integer, false)],
        vec!["id".into()],
    )
    .expect("valid schema")
}

/// `begin_run` records trigger, attempt, `Running`, the lease's epoch and holder, and a snapshot
/// of every cursor as it stood when the run began.
pub async fn runs_begin_records_run_and_cursors_at_start(cx: &Ctx) {
    let (first_lease, first) = cx.running("p").await;
    assert!(
        first.cursors_at_start.is_empty(),
        "no cursor was written yet"
    );
    cx.advance_to(&first_lease, first.id, &stream("s"), value(json!(5)))
        .await
        .unwrap();
    let finish =
        FinishRun::succeeded().with_cursor(stream("t"), value(json!("2024-01-01T00:00:00.000Z")));
    cx.finish_run(&first_lease, first.id, finish).await.unwrap();
    cx.release(&first_lease).await.unwrap();

    let lease = cx.lease("p", "worker-2").await;
    let before = cx
        .pipeline_statuses(None, Limit::DEFAULT)
        .await
        .unwrap()
        .as_of;
    let run = cx
        .begin_run(
            &lease,
            BeginRun {
                trigger: Trigger::Retry,
                attempt: 2,
            },
        )
        .await
        .unwrap();
    let after = cx
        .pipeline_statuses(None, Limit::DEFAULT)
        .await
        .unwrap()
        .as_of;

    assert_eq!(run.pipeline, pid("p"));
    assert_eq!(run.trigger, Trigger::Retry);
    assert_eq!(run.attempt, 2);
    assert_eq!(run.status, RunStatus::Running);
    assert_eq!(run.epoch, lease.epoch);
    assert_eq!(run.holder, holder_id("worker-2"));
    assert_eq!(run.finished_at, None);
    assert_eq!(run.error, None);
    assert!(run.stats.is_empty());
    assert!(
        run.cursors_at_end.is_empty(),
        "a running run has no end cursors"
    );
    assert!(
        before <= run.started_at && run.started_at <= after,
        "started_at is the catalog's now"
    );
    let expected: BTreeMap<_, _> = [
        (stream("s"), value(json!(5))),
        (stream("t"), value(json!("2024-01-01T00:00:00.000Z"))),
    ]
    .into_iter()
    .collect();
    assert_eq!(run.cursors_at_start, expected);
    assert_eq!(cx.get_run(run.id).await.unwrap(), run);
}

/// While a run is running, another `begin_run` fails with `FailedPrecondition` and adds no run.
pub async fn runs_second_begin_while_running_fails(cx: &Ctx) {
    let (lease, run) = cx.running("p").await;
    let err = cx
        .begin_run(&lease, BeginRun::new(Trigger::Manual))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::FailedPrecondition(_)), "{err:?}");
    let runs = cx
        .list_runs(&RunQuery::all().pipeline(pid("p")))
        .await
        .unwrap();
    assert_eq!(ids(&runs.items), vec![run.id], "still exactly one run");
    assert_eq!(cx.get_run(run.id).await.unwrap(), run);
}

/// A successful finish writes status, end time, stats and final cursors together; the run's
/// end cursors hold every cursor of the pipeline.
pub async fn runs_finish_succeeded_writes_everything(cx: &Ctx) {
    let (lease, run) = cx.running("p").await;
    cx.advance_to(&lease, run.id, &stream("s"), value(json!(3)))
        .await
        .unwrap();
    cx.advance_to(&lease, run.id, &stream("u"), value(json!(1)))
        .await
        .unwrap();
    let stats = StreamStats::new(10, 1000);
    // What a source said of a stream is kept as it was said.
    let reported = StreamStats {
        status: Some(StreamStatus::Incomplete),
        estimated_records: Some(u64::MAX),
        estimated_bytes: Some(0),
        ..StreamStats::new(4, 40)
    };
    let finish = FinishRun::succeeded()
        .with_cursor(stream("s"), value(json!(7)))
        .with_cursor(stream("t"), value(json!("b")))
        .with_stats(stream("s"), stats)
        .with_stats(stream("u"), reported);
    let done = cx.finish_run(&lease, run.id, finish).await.unwrap();

    assert_eq!(done.id, run.id);
    assert_eq!(done.status, RunStatus::Succeeded);
    let finished_at = done.finished_at.expect("finished_at is set");
    assert!(finished_at >= done.started_at);
    assert_eq!(done.started_at, run.started_at);
    assert_eq!(done.error, None);
    assert_eq!(
        done.stats,
        [(stream("s"), stats), (stream("u"), reported)]
            .into_iter()
            .collect()
    );
    let at_end: BTreeMap<_, _> = [
        (stream("s"), value(json!(7))),
        (stream("t"), value(json!("b"))),
        (stream("u"), value(json!(1))),
    ]
    .into_iter()
    .collect();
    assert_eq!(done.cursors_at_end, at_end);
    assert_eq!(cx.get_run(run.id).await.unwrap(), done);

    let s = cx
        .get_cursor(&pid("p"), &stream("s"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(s.value, value(json!(7)));
    assert_eq!(s.version, 2, "checkpoint then finish");
    assert_eq!(s.run, Some(run.id));
    assert_eq!(s.epoch, Some(lease.epoch));
    let t = cx
        .get_cursor(&pid("p"), &stream("t"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((t.value, t.version), (value(json!("b")), 1));
    let u = cx
        .get_cursor(&pid("p"), &stream("u"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (u.value, u.version),
        (value(json!(1)), 1),
        "untouched by the finish"
    );
}

/// A failed finish records `Failed` with the run's error.
pub async fn runs_finish_failed_keeps_error(cx: &Ctx) {
    let (lease, run) = cx.running("p").await;
    let error = RunError::new("source returned 503", true);
    let done = cx
        .finish_run(
            &lease,
            run.id,
            FinishRun::new(Outcome::Failed {
                error: error.clone(),
            }),
        )
        .await
        .unwrap();
    assert_eq!(done.status, RunStatus::Failed);
    assert_eq!(done.error, Some(error));
    assert!(done.finished_at.is_some());
    assert_eq!(cx.get_run(run.id).await.unwrap(), done);
}

/// A cancelled finish records `Cancelled` with the reason as a non-retryable error.
pub async fn runs_finish_cancelled_records_reason(cx: &Ctx) {
    let (lease, run) = cx.running("p").await;
    let outcome = Outcome::Cancelled {
        reason: reason("shutting down"),
    };
    let done = cx
        .finish_run(&lease, run.id, FinishRun::new(outcome))
        .await
        .unwrap();
    assert_eq!(done.status, RunStatus::Cancelled);
    assert_eq!(done.error, Some(RunError::new("shutting down", false)));
    assert!(done.finished_at.is_some());
    assert_eq!(cx.get_run(run.id).await.unwrap(), done);
}

/// Finishing (or checkpointing) an ended run is `FailedPrecondition` and changes nothing.
pub async fn runs_finish_twice_fails_and_changes_nothing(cx: &Ctx) {
    let (lease, run) = cx.running("p").await;
    let done = cx
        .finish_run(
            &lease,
            run.id,
            FinishRun::succeeded().with_cursor(stream("s"), value(json!(5))),
        )
        .await
        .unwrap();
    let again = FinishRun::new(Outcome::Failed {
        error: RunError::new("late", true),
    })
    .with_cursor(stream("s"), value(json!(9)))
    .with_stats(stream("s"), StreamStats::new(1, 1));
    let err = cx.finish_run(&lease, run.id, again).await.unwrap_err();
    assert!(matches!(err, Error::FailedPrecondition(_)), "{err:?}");
    let err = cx
        .advance_to(&lease, run.id, &stream("s"), value(json!(10)))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::FailedPrecondition(_)), "{err:?}");

    assert_eq!(cx.get_run(run.id).await.unwrap(), done);
    let cursor = cx
        .get_cursor(&pid("p"), &stream("s"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((cursor.value, cursor.version), (value(json!(5)), 1));
}

/// Atomic finish: one regressing cursor fails the whole finish with `CursorRegression`; the run
/// stays `Running`, no other cursor moves, no schema or decision is recorded, no event appended.
pub async fn runs_finish_is_all_or_nothing(cx: &Ctx) {
    let (lease, run) = cx.running("p").await;
    cx.advance_to(&lease, run.id, &stream("a"), value(json!(10)))
        .await
        .unwrap();
    cx.advance_to(&lease, run.id, &stream("b"), value(json!(5)))
        .await
        .unwrap();
    let run_before = cx.get_run(run.id).await.unwrap();
    let cursors_before = cx.list_cursors(&pid("p")).await.unwrap();
    let events_before = cx.events(0, Limit::MAX).await.unwrap();

    // Streams apply in name order in a naive backend: "a" (valid) before "b" (regressing).
    let finish = FinishRun::succeeded()
        .with_cursor(stream("a"), value(json!(20)))
        .with_cursor(stream("b"), value(json!(4)))
        .with_stats(stream("a"), StreamStats::new(3, 30))
        .with_schema(stream("a"), schema());
    let err = cx.finish_run(&lease, run.id, finish).await.unwrap_err();
    match err {
        Error::CursorRegression {
            pipeline,
            stream: s,
            current,
            proposed,
        } => {
            assert_eq!(pipeline, pid("p"));
            assert_eq!(s, stream("b"));
            assert_eq!(current, json!(5));
            assert_eq!(proposed, json!(4));
        }
        other => panic!("expected CursorRegression, got {other:?}"),
    }

    let after = cx.get_run(run.id).await.unwrap();
    assert_eq!(after.status, RunStatus::Running);
    assert_eq!(after, run_before, "the run is untouched");
    assert_eq!(cx.list_cursors(&pid("p")).await.unwrap(), cursors_before);
    let a = cx
        .get_cursor(&pid("p"), &stream("a"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (a.value, a.version),
        (value(json!(10)), 1),
        "the valid stream did not move"
    );
    let versions = cx
        .list_schema_versions(&pid("p"), &stream("a"))
        .await
        .unwrap();
    assert!(
        versions.is_empty(),
        "no schema version recorded: {versions:?}"
    );
    let decisions = cx.list_decisions(&Default::default()).await.unwrap();
    assert!(decisions.items.is_empty());
    assert_eq!(cx.events(0, Limit::MAX).await.unwrap(), events_before);

    // The run is still finishable with valid cursors.
    let done = cx
        .finish_run(
            &lease,
            run.id,
            FinishRun::succeeded().with_cursor(stream("a"), value(json!(20))),
        )
        .await
        .unwrap();
    assert_eq!(done.status, RunStatus::Succeeded);
}

/// Reading a run that does not exist is `NotFound`.
pub async fn runs_get_missing_is_not_found(cx: &Ctx) {
    cx.running("p").await;
    let ghost = RunId::from_parts(Timestamp::from_millis(1_700_000_000_000), [7; 10]);
    match cx.get_run(ghost).await.unwrap_err() {
        Error::NotFound(Entity::Run { run }) => assert_eq!(run, ghost),
        other => panic!("expected NotFound(run), got {other:?}"),
    }
}

/// Another pipeline's run used with this pipeline's lease is `NotFound`, and nothing changes.
pub async fn runs_other_pipelines_run_is_not_found(cx: &Ctx) {
    let (_lease_p, run_p) = cx.running("p").await;
    cx.pipeline("q").await;
    let lease_q = cx.lease("q", "worker-2").await;
    let run_q = cx
        .begin_run(&lease_q, BeginRun::new(Trigger::Manual))
        .await
        .unwrap();

    let err = cx
        .advance_to(&lease_q, run_p.id, &stream("s"), value(json!(1)))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::NotFound(Entity::Run { run }) if run == run_p.id),
        "{err:?}"
    );
    let finish = FinishRun::succeeded().with_cursor(stream("s"), value(json!(1)));
    let err = cx.finish_run(&lease_q, run_p.id, finish).await.unwrap_err();
    assert!(
        matches!(err, Error::NotFound(Entity::Run { run }) if run == run_p.id),
        "{err:?}"
    );

    assert_eq!(cx.get_run(run_p.id).await.unwrap(), run_p);
    assert_eq!(cx.get_run(run_q.id).await.unwrap(), run_q);
    assert_eq!(cx.get_cursor(&pid("p"), &stream("s")).await.unwrap(), None);
    assert_eq!(cx.get_cursor(&pid("q"), &stream("s")).await.unwrap(), None);
}

/// `list_runs` returns runs newest first and filters by pipeline and status.
pub async fn runs_list_newest_first_with_filters(cx: &Ctx) {
    cx.pipeline("p").await;
    cx.pipeline("q").await;
    let lease_p = cx.lease("p", "worker-1").await;
    let lease_q = cx.lease("q", "worker-2").await;
    let r1 = completed_run(cx, &lease_p, Outcome::Succeeded).await;
    let failed = Outcome::Failed {
        error: RunError::new("boom", true),
    };
    let r2 = completed_run(cx, &lease_p, failed).await;
    let r3 = completed_run(cx, &lease_q, Outcome::Succeeded).await;
    tick(cx).await;
    let r4 = cx
        .begin_run(&lease_p, BeginRun::new(Trigger::Manual))
        .await
        .unwrap();

    let list = |q: RunQuery| async move { cx.list_runs(&q).await.unwrap() };
    let all = list(RunQuery::all()).await;
    assert_eq!(ids(&all.items), vec![r4.id, r3.id, r2.id, r1.id]);
    assert_eq!(all.next, None);
    assert_eq!(all.items[1], r3, "listed runs are the stored runs");
    let of_p = list(RunQuery::all().pipeline(pid("p"))).await;
    assert_eq!(ids(&of_p.items), vec![r4.id, r2.id, r1.id]);
    let succeeded = list(RunQuery::all().status(RunStatus::Succeeded)).await;
    assert_eq!(ids(&succeeded.items), vec![r3.id, r1.id]);
    let running = list(RunQuery::all().status(RunStatus::Running)).await;
    assert_eq!(ids(&running.items), vec![r4.id]);
    let p_failed = list(RunQuery::all().pipeline(pid("p")).status(RunStatus::Failed)).await;
    assert_eq!(ids(&p_failed.items), vec![r2.id]);
    let q_failed = list(RunQuery::all().pipeline(pid("q")).status(RunStatus::Failed)).await;
    assert!(q_failed.items.is_empty());
    let ghost = list(RunQuery::all().pipeline(pid("ghost"))).await;
    assert!(ghost.items.is_empty() && ghost.next.is_none());
}

/// Keyset pagination (`before`) is stable under concurrent inserts: page 2 continues exactly
/// where page 1 stopped, with no duplicate and no skipped run.
pub async fn runs_keyset_pagination_stable_under_inserts(cx: &Ctx) {
    cx.pipeline("p").await;
    let lease = cx.lease("p", "worker-1").await;
    let mut older = Vec::new();
    for _ in 0..5 {
        older.push(completed_run(cx, &lease, Outcome::Succeeded).await.id);
    }
    older.reverse(); // newest first
    let two = Limit::new(2).unwrap();
    let query = RunQuery::all().pipeline(pid("p")).limit(two);

    let page1 = cx.list_runs(&query).await.unwrap();
    assert_eq!(ids(&page1.items), older[..2].to_vec());
    assert_eq!(page1.next, Some(older[1]));

    // Newer runs arrive between the reads.
    let newer_a = completed_run(cx, &lease, Outcome::Succeeded).await.id;
    let newer_b = completed_run(cx, &lease, Outcome::Succeeded).await.id;

    let page2 = cx
        .list_runs(&query.clone().before(page1.next.unwrap()))
        .await
        .unwrap();
    assert_eq!(ids(&page2.items), older[2..4].to_vec());
    assert_eq!(page2.next, Some(older[3]));
    let page3 = cx
        .list_runs(&query.clone().before(page2.next.unwrap()))
        .await
        .unwrap();
    assert_eq!(ids(&page3.items), older[4..].to_vec());
    assert_eq!(page3.next, None, "the oldest run ends the listing");

    let fresh = cx.list_runs(&query).await.unwrap();
    assert_eq!(ids(&fresh.items), vec![newer_b, newer_a]);
}

/// Run ids are time-ordered: a run begun later has a greater id and a later start.
pub async fn runs_ids_are_time_ordered(cx: &Ctx) {
    let (lease, first) = cx.running("p").await;
    let first = cx
        .finish_run(&lease, first.id, FinishRun::succeeded())
        .await
        .unwrap();
    let mut previous = first;
    for _ in 0..3 {
        let next = completed_run(cx, &lease, Outcome::Succeeded).await;
        assert!(next.id > previous.id, "{:?} > {:?}", next.id, previous.id);
        assert!(next.started_at > previous.started_at);
        assert!(next.started_at >= previous.finished_at.unwrap());
        previous = next;
    }
}

#[doc(hidden)]
#[macro_export]
macro_rules! __contract_runs {
    ($harness:expr) => {
        $crate::__contract_checks!($harness; runs:
            runs_begin_records_run_and_cursors_at_start,
            runs_second_begin_while_running_fails,
            runs_finish_succeeded_writes_everything,
            runs_finish_failed_keeps_error,
            runs_finish_cancelled_records_reason,
            runs_finish_twice_fails_and_changes_nothing,
            runs_finish_is_all_or_nothing,
            runs_get_missing_is_not_found,
            runs_other_pipelines_run_is_not_found,
            runs_list_newest_first_with_filters,
            runs_keyset_pagination_stable_under_inserts,
            runs_ids_are_time_ordered,
        );
    };
}
