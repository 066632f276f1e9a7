//! Cursors: monotonic and opaque rules, compare-and-set, history, reset and rollback (invariants
//! 3, 4 and 7 in `docs/guarantees.md`).

use hakiri_core::{
    Actor, BeginRun, CatalogExt, CursorAdvance, CursorChange, CursorHistoryEntry, CursorKind,
    CursorReset, Entity, Error, EventKind, FenceReason, FinishRun, Lease, Limit, ResetPermissions,
    ResetTarget, Run, Trigger,
};
use serde_json::json;

use crate::{operator, pid, reason, stream, value, Ctx};

/// The whole history of `p`'s cursor on `s`, newest first.
pub(crate) async fn history(cx: &Ctx, s: &str) -> Vec<CursorHistoryEntry> {
    let page = cx
        .cursor_history(&pid("p"), &stream(s), None, Limit::MAX)
        .await
        .expect("cursor history");
    assert_eq!(page.next, None, "the whole history fits in one page");
    page.items
}

/// The length of the project's event log.
async fn event_count(cx: &Ctx) -> usize {
    cx.events(0, Limit::MAX).await.expect("events").len()
}

/// An operator reset of `p`'s cursor to `target`, with the reason "replay".
fn reset_to(target: ResetTarget) -> CursorReset {
    CursorReset {
        target,
        expected_version: None,
        by: operator(),
        reason: reason("replay"),
        allow: ResetPermissions::default(),
    }
}

/// Finishes `run` successfully and begins the next one under the same lease.
async fn next_run(cx: &Ctx, lease: &Lease, run: &Run) -> Run {
    cx.finish_run(lease, run.id, FinishRun::succeeded())
        .await
        .expect("finish run");
    cx.begin_run(lease, BeginRun::new(Trigger::Manual))
        .await
        .expect("begin run")
}

/// The first checkpoint of a stream creates version 1, stamped with the run, epoch and holder.
pub async fn cursors_first_checkpoint_creates_version_one(cx: &Ctx) {
    let (lease, run) = cx.running("p").await;
    let cursor = cx
        .advance_to(&lease, run.id, &stream("s"), value(json!(10)))
        .await
        .unwrap();
    assert_eq!(cursor.pipeline, pid("p"));
    assert_eq!(cursor.stream, stream("s"));
    assert_eq!(cursor.value, value(json!(10)));
    assert_eq!(cursor.version, 1);
    assert_eq!(cursor.run, Some(run.id));
    assert_eq!(cursor.epoch, Some(lease.epoch));
    assert_eq!(cursor.updated_by, Actor::Holder(lease.holder.clone()));
    let stored = cx.get_cursor(&pid("p"), &stream("s")).await.unwrap();
    assert_eq!(stored.as_ref(), Some(&cursor));
    let history = history(cx, "s").await;
    assert_eq!(history.len(), 1);
    let entry = &history[0];
    assert_eq!(entry.version, 1);
    assert_eq!(entry.value, value(json!(10)));
    assert_eq!(entry.change, CursorChange::Checkpoint);
    assert_eq!(entry.run, Some(run.id));
    assert_eq!(entry.epoch, Some(lease.epoch));
    assert_eq!(entry.by, Actor::Holder(lease.holder.clone()));
    assert_eq!(entry.at, cursor.updated_at);
}

/// Each forward move of a monotonic cursor bumps its version by one.
pub async fn cursors_monotonic_advance_bumps_version(cx: &Ctx) {
    let (lease, run) = cx.running("p").await;
    let s = stream("s");
    for (i, v) in [json!(10), json!(11), json!(20), json!(20.5)]
        .into_iter()
        .enumerate()
    {
        let cursor = cx
            .advance_to(&lease, run.id, &s, value(v.clone()))
            .await
            .unwrap();
        assert_eq!(cursor.version, i as u64 + 1);
        assert_eq!(cursor.value, value(v));
    }
    let stored = cx.get_cursor(&pid("p"), &s).await.unwrap().unwrap();
    assert_eq!(stored.version, 4);
    assert_eq!(stored.value, value(json!(20.5)));
    let versions: Vec<u64> = history(cx, "s").await.iter().map(|e| e.version).collect();
    assert_eq!(versions, [4, 3, 2, 1]);
}

/// Advancing a monotonic cursor to its current value is an idempotent no-op: same version, no
/// new history entry, no event.
pub async fn cursors_monotonic_equal_value_is_noop(cx: &Ctx) {
    let (lease, run) = cx.running("p").await;
    let s = stream("s");
    let first = cx
        .advance_to(&lease, run.id, &s, value(json!(10)))
        .await
        .unwrap();
    let events = event_count(cx).await;
    let again = cx
        .advance_to(&lease, run.id, &s, value(json!(10)))
        .await
        .unwrap();
    assert_eq!(again, first, "the stored cursor is returned unchanged");
    // 10.0 is the same number as 10.
    let float = cx
        .advance_to(&lease, run.id, &s, value(json!(10.0)))
        .await
        .unwrap();
    assert_eq!(float.version, 1);
    assert_eq!(cx.get_cursor(&pid("p"), &s).await.unwrap(), Some(first));
    assert_eq!(history(cx, "s").await.len(), 1);
    assert_eq!(event_count(cx).await, events, "a no-op appends no event");
}

/// A monotonic cursor refuses to move backwards with `CursorRegression`, and nothing changes —
/// neither by a checkpoint nor by a run's finish.
pub async fn cursors_monotonic_regression_is_refused(cx: &Ctx) {
    let (lease, run) = cx.running("p").await;
    let s = stream("s");
    let stored = cx
        .advance_to(&lease, run.id, &s, value(json!(10)))
        .await
        .unwrap();
    let events = event_count(cx).await;
    let err = cx
        .advance_to(&lease, run.id, &s, value(json!(9)))
        .await
        .unwrap_err();
    assert!(
        !err.is_retryable(),
        "a regression is not retryable: {err:?}"
    );
    match err {
        Error::CursorRegression {
            pipeline,
            stream: st,
            current,
            proposed,
        } => {
            assert_eq!(pipeline, pid("p"));
            assert_eq!(st, s);
            assert_eq!(current, json!(10));
            assert_eq!(proposed, json!(9));
        }
        other => panic!("expected CursorRegression, got {other:?}"),
    }
    let err = cx
        .finish_run(
            &lease,
            run.id,
            FinishRun::succeeded().with_cursor(s.clone(), value(json!(9.5))),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::CursorRegression { .. }), "{err:?}");
    assert_eq!(cx.get_cursor(&pid("p"), &s).await.unwrap(), Some(stored));
    assert_eq!(history(cx, "s").await.len(), 1);
    assert_eq!(event_count(cx).await, events);
    assert_eq!(
        cx.get_run(run.id).await.unwrap().status,
        hakiri_core::RunStatus::Running,
        "the refused finish changed nothing"
    );
}

/// Monotonic strings compare bytewise: fixed-width RFC 3339 timestamps advance in time order,
/// while "10" is below "9".
pub async fn cursors_monotonic_strings_compare_bytewise(cx: &Ctx) {
    let (lease, run) = cx.running("p").await;
    let ts = stream("ts");
    cx.advance_to(
        &lease,
        run.id,
        &ts,
        value(json!("2026-01-02T03:04:05.000Z")),
    )
    .await
    .unwrap();
    let later = cx
        .advance_to(
            &lease,
            run.id,
            &ts,
            value(json!("2026-01-10T00:00:00.000Z")),
        )
        .await
        .unwrap();
    assert_eq!(later.version, 2);
    let err = cx
        .advance_to(
            &lease,
            run.id,
            &ts,
            value(json!("2026-01-09T23:59:59.999Z")),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::CursorRegression { .. }), "{err:?}");

    let text = stream("text");
    cx.advance_to(&lease, run.id, &text, value(json!("9")))
        .await
        .unwrap();
    let err = cx
        .advance_to(&lease, run.id, &text, value(json!("10")))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::CursorRegression { .. }),
        "\"10\" sorts below \"9\" bytewise: {err:?}"
    );
    let up = cx
        .advance_to(&lease, run.id, &text, value(json!("90")))
        .await
        .unwrap();
    assert_eq!((up.value, up.version), (value(json!("90")), 2));
}

/// An opaque cursor accepts any new value, "lower" or of another type; only an equal value is a
/// no-op.
pub async fn cursors_opaque_accepts_any_value(cx: &Ctx) {
    let (lease, run) = cx.running_of("p", CursorKind::Opaque).await;
    let s = stream("s");
    let values = [
        json!({"token": 9}),
        json!({"token": 1}),
        json!(3),
        json!(1),
        json!("a"),
        json!([1, 2]),
    ];
    for (i, v) in values.iter().enumerate() {
        let cursor = cx
            .advance_to(&lease, run.id, &s, value(v.clone()))
            .await
            .unwrap();
        assert_eq!(cursor.version, i as u64 + 1, "{v}");
        assert_eq!(cursor.value, value(v.clone()));
    }
    let same = cx
        .advance_to(&lease, run.id, &s, value(json!([1, 2])))
        .await
        .unwrap();
    assert_eq!(same.version, 6, "an equal opaque value is a no-op");
    assert_eq!(history(cx, "s").await.len(), 6);
}

/// A checkpoint with `expected_version` succeeds only on a match; a stale one is a retryable
/// `Conflict` and changes nothing.
pub async fn cursors_expected_version_is_compare_and_set(cx: &Ctx) {
    let (lease, run) = cx.running("p").await;
    let s = stream("s");
    let first = cx
        .advance(
            &lease,
            run.id,
            &s,
            CursorAdvance::to(value(json!(10))).expecting(0),
        )
        .await
        .unwrap();
    assert_eq!(first.version, 1);
    let second = cx
        .advance(
            &lease,
            run.id,
            &s,
            CursorAdvance::to(value(json!(20))).expecting(1),
        )
        .await
        .unwrap();
    assert_eq!(second.version, 2);
    let events = event_count(cx).await;
    for stale in [0, 1, 3] {
        let err = cx
            .advance(
                &lease,
                run.id,
                &s,
                CursorAdvance::to(value(json!(30))).expecting(stale),
            )
            .await
            .unwrap_err();
        assert!(err.is_retryable(), "{err:?}");
        match err {
            Error::Conflict { entity, .. } => assert_eq!(
                entity,
                Entity::Cursor {
                    pipeline: pid("p"),
                    stream: s.clone()
                }
            ),
            other => panic!("expected Conflict, got {other:?}"),
        }
    }
    assert_eq!(cx.get_cursor(&pid("p"), &s).await.unwrap(), Some(second));
    assert_eq!(history(cx, "s").await.len(), 2);
    assert_eq!(event_count(cx).await, events);
    let third = cx
        .advance(
            &lease,
            run.id,
            &s,
            CursorAdvance::to(value(json!(30))).expecting(2),
        )
        .await
        .unwrap();
    assert_eq!(third.version, 3);
}

/// Reading a never-written cursor is `Ok(None)` (empty list, empty history); reading any cursor
/// of a missing pipeline is `NotFound`.
pub async fn cursors_unwritten_and_missing_pipeline_reads(cx: &Ctx) {
    cx.pipeline("p").await;
    assert_eq!(cx.get_cursor(&pid("p"), &stream("s")).await.unwrap(), None);
    assert!(cx.list_cursors(&pid("p")).await.unwrap().is_empty());
    let page = cx
        .cursor_history(&pid("p"), &stream("s"), None, Limit::MAX)
        .await
        .unwrap();
    assert!(page.items.is_empty() && page.next.is_none());

    let ghost = pid("ghost");
    let is_missing_pipeline = |e: &Error| matches!(e, Error::NotFound(Entity::Pipeline { pipeline }) if *pipeline == ghost);
    let err = cx.get_cursor(&ghost, &stream("s")).await.unwrap_err();
    assert!(is_missing_pipeline(&err), "{err:?}");
    let err = cx.list_cursors(&ghost).await.unwrap_err();
    assert!(is_missing_pipeline(&err), "{err:?}");
    let err = cx
        .cursor_history(&ghost, &stream("s"), None, Limit::MAX)
        .await
        .unwrap_err();
    assert!(is_missing_pipeline(&err), "{err:?}");
}

/// `list_cursors` returns every cursor of the pipeline in stream order.
pub async fn cursors_list_in_stream_order(cx: &Ctx) {
    let (lease, run) = cx.running("p").await;
    for (name, v) in [("orders", 3), ("customers", 1), ("line_items", 2)] {
        cx.advance_to(&lease, run.id, &stream(name), value(json!(v)))
            .await
            .unwrap();
    }
    cx.advance_to(&lease, run.id, &stream("orders"), value(json!(4)))
        .await
        .unwrap();
    // Another pipeline's cursors are not listed.
    cx.pipeline("q").await;
    let q = cx.lease("q", "worker-2").await;
    let q_run = cx
        .begin_run(&q, BeginRun::new(Trigger::Manual))
        .await
        .unwrap();
    cx.advance_to(&q, q_run.id, &stream("aaa"), value(json!(1)))
        .await
        .unwrap();

    let cursors = cx.list_cursors(&pid("p")).await.unwrap();
    let listed: Vec<(String, serde_json::Value, u64)> = cursors
        .iter()
        .map(|c| (c.stream.to_string(), c.value.as_json().clone(), c.version))
        .collect();
    assert_eq!(
        listed,
        [
            ("customers".to_owned(), json!(1), 1),
            ("line_items".to_owned(), json!(2), 1),
            ("orders".to_owned(), json!(4), 2),
        ]
    );
    assert!(cursors.iter().all(|c| c.pipeline == pid("p")));
}

/// History lists versions newest first and pages with `before` and a small `Limit`.
pub async fn cursors_history_newest_first_paginated(cx: &Ctx) {
    let (lease, run) = cx.running("p").await;
    let s = stream("s");
    for v in 1..=5 {
        cx.advance_to(&lease, run.id, &s, value(json!(v * 10)))
            .await
            .unwrap();
    }
    let two = Limit::new(2).unwrap();
    let p = pid("p");
    let page = |before| cx.cursor_history(&p, &s, before, two);
    let first = page(None).await.unwrap();
    let versions =
        |items: &[CursorHistoryEntry]| items.iter().map(|e| e.version).collect::<Vec<_>>();
    assert_eq!(versions(&first.items), [5, 4]);
    assert_eq!(first.items[0].value, value(json!(50)));
    assert_eq!(first.next, Some(4));
    let second = page(first.next).await.unwrap();
    assert_eq!(versions(&second.items), [3, 2]);
    assert_eq!(second.next, Some(2));
    let third = page(second.next).await.unwrap();
    assert_eq!(versions(&third.items), [1]);
    assert_eq!(third.items[0].value, value(json!(10)));
    assert_eq!(third.next, None);
    let below_four = cx
        .cursor_history(&pid("p"), &s, Some(4), Limit::MAX)
        .await
        .unwrap();
    assert_eq!(versions(&below_four.items), [3, 2, 1]);
    let all = history(cx, "s").await;
    let paged: Vec<_> = [first.items, second.items, third.items].concat();
    assert_eq!(paged, all);
}

/// Cursor history is append-only: later advances, resets and rollbacks leave earlier entries
/// exactly as they were.
pub async fn cursors_history_is_append_only(cx: &Ctx) {
    let (lease, run) = cx.running("p").await;
    let s = stream("s");
    for v in [1, 2, 3] {
        cx.advance_to(&lease, run.id, &s, value(json!(v)))
            .await
            .unwrap();
    }
    let before = history(cx, "s").await;
    assert_eq!(before.len(), 3);
    cx.advance_to(&lease, run.id, &s, value(json!(4)))
        .await
        .unwrap();
    let run = next_run(cx, &lease, &run).await;
    cx.reset_cursor(&lease, &s, reset_to(ResetTarget::Value(value(json!(0)))))
        .await
        .unwrap();
    cx.reset_cursor(&lease, &s, reset_to(ResetTarget::Version(2)))
        .await
        .unwrap();
    cx.advance_to(&lease, run.id, &s, value(json!(7)))
        .await
        .unwrap();
    let after = history(cx, "s").await;
    assert_eq!(after.len(), 7);
    assert_eq!(
        after[after.len() - 3..],
        before[..],
        "old entries are unchanged"
    );
    let versions: Vec<u64> = after.iter().map(|e| e.version).collect();
    assert_eq!(versions, [7, 6, 5, 4, 3, 2, 1]);
}

/// An operator reset under a lease moves a monotonic cursor backwards as a new, audited version
/// (`Reset` with the reason and the operator), and later advances are checked against it.
pub async fn cursors_reset_moves_monotonic_cursor_back(cx: &Ctx) {
    let (lease, run) = cx.running("p").await;
    let s = stream("s");
    cx.advance_to(&lease, run.id, &s, value(json!(10)))
        .await
        .unwrap();
    cx.advance_to(&lease, run.id, &s, value(json!(20)))
        .await
        .unwrap();
    cx.finish_run(&lease, run.id, FinishRun::succeeded())
        .await
        .unwrap();

    let reset = cx
        .reset_cursor(&lease, &s, reset_to(ResetTarget::Value(value(json!(3)))))
        .await
        .unwrap();
    assert_eq!(reset.value, value(json!(3)));
    assert_eq!(reset.version, 3);
    assert_eq!(reset.run, None, "an operator reset belongs to no run");
    assert_eq!(reset.epoch, Some(lease.epoch));
    assert_eq!(reset.updated_by, operator());
    assert_eq!(
        cx.get_cursor(&pid("p"), &s).await.unwrap().as_ref(),
        Some(&reset)
    );
    let entry = history(cx, "s").await.remove(0);
    assert_eq!(entry.version, 3);
    assert_eq!(entry.value, value(json!(3)));
    assert_eq!(
        entry.change,
        CursorChange::Reset {
            reason: reason("replay")
        }
    );
    assert_eq!(entry.by, operator());
    assert_eq!(entry.run, None);
    let events = cx.events(0, Limit::MAX).await.unwrap();
    assert!(
        events.iter().any(|e| e.actor == operator()
            && e.pipeline == pid("p")
            && e.kind
                == EventKind::CursorReset {
                    stream: s.clone(),
                    version: 3,
                    reason: reason("replay"),
                }),
        "the reset is in the event log with the operator and reason"
    );

    let run = cx
        .begin_run(&lease, BeginRun::new(Trigger::Backfill))
        .await
        .unwrap();
    let err = cx
        .advance_to(&lease, run.id, &s, value(json!(2)))
        .await
        .unwrap_err();
    match err {
        Error::CursorRegression { current, .. } => assert_eq!(current, json!(3)),
        other => panic!("expected CursorRegression from the reset value, got {other:?}"),
    }
    let moved = cx
        .advance_to(&lease, run.id, &s, value(json!(4)))
        .await
        .unwrap();
    assert_eq!((moved.value, moved.version), (value(json!(4)), 4));
}

/// A reset is compare-and-set on the cursor version: a stale `expected_version` is a `Conflict`
/// and changes nothing.
pub async fn cursors_reset_is_compare_and_set(cx: &Ctx) {
    let (lease, run) = cx.running("p").await;
    let s = stream("s");
    cx.advance_to(&lease, run.id, &s, value(json!(10)))
        .await
        .unwrap();
    let current = cx
        .advance_to(&lease, run.id, &s, value(json!(20)))
        .await
        .unwrap();
    let stale = CursorReset {
        expected_version: Some(1),
        ..reset_to(ResetTarget::Value(value(json!(5))))
    };
    let err = cx.reset_cursor(&lease, &s, stale).await.unwrap_err();
    assert!(
        matches!(err, Error::Conflict { .. }) && err.is_retryable(),
        "{err:?}"
    );
    assert_eq!(cx.get_cursor(&pid("p"), &s).await.unwrap(), Some(current));
    assert_eq!(history(cx, "s").await.len(), 2);
    let fresh = CursorReset {
        expected_version: Some(2),
        ..reset_to(ResetTarget::Value(value(json!(5))))
    };
    let reset = cx.reset_cursor(&lease, &s, fresh).await.unwrap();
    assert_eq!((reset.value, reset.version), (value(json!(5)), 3));
}

/// A rollback writes a new version whose value is the old version's, recorded as `Rollback`;
/// history keeps every earlier version.
pub async fn cursors_rollback_appends_new_version(cx: &Ctx) {
    let (lease, run) = cx.running("p").await;
    let s = stream("s");
    for v in [10, 20, 30] {
        cx.advance_to(&lease, run.id, &s, value(json!(v)))
            .await
            .unwrap();
    }
    let before = history(cx, "s").await;
    let run = next_run(cx, &lease, &run).await;
    let rolled = cx
        .reset_cursor(&lease, &s, reset_to(ResetTarget::Version(1)))
        .await
        .unwrap();
    assert_eq!(rolled.value, value(json!(10)));
    assert_eq!(
        rolled.version, 4,
        "a rollback is a new version, not a rewind"
    );
    assert_eq!(rolled.updated_by, operator());
    let after = history(cx, "s").await;
    assert_eq!(after.len(), 4);
    assert_eq!(after[0].version, 4);
    assert_eq!(after[0].value, value(json!(10)));
    assert_eq!(
        after[0].change,
        CursorChange::Rollback {
            to_version: 1,
            reason: reason("replay")
        }
    );
    assert_eq!(after[0].by, operator());
    assert_eq!(after[1..], before[..]);
    // Later advances are checked against the restored value.
    let err = cx
        .advance_to(&lease, run.id, &s, value(json!(5)))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::CursorRegression { .. }), "{err:?}");
    let moved = cx
        .advance_to(&lease, run.id, &s, value(json!(15)))
        .await
        .unwrap();
    assert_eq!(moved.version, 5);
}

/// Rolling back to a version that does not exist (or resetting a never-written cursor to its
/// start) is `NotFound` and changes nothing.
pub async fn cursors_rollback_to_missing_version_is_not_found(cx: &Ctx) {
    let (lease, run) = cx.running("p").await;
    let s = stream("s");
    cx.advance_to(&lease, run.id, &s, value(json!(10)))
        .await
        .unwrap();
    let current = cx
        .advance_to(&lease, run.id, &s, value(json!(20)))
        .await
        .unwrap();
    cx.finish_run(&lease, run.id, FinishRun::succeeded())
        .await
        .unwrap();
    let events = event_count(cx).await;
    for missing in [0, 3, 7] {
        let err = cx
            .reset_cursor(&lease, &s, reset_to(ResetTarget::Version(missing)))
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::NotFound(Entity::CursorVersion { version, .. }) if version == missing),
            "version {missing}: {err:?}"
        );
    }
    assert_eq!(cx.get_cursor(&pid("p"), &s).await.unwrap(), Some(current));
    assert_eq!(history(cx, "s").await.len(), 2);

    let never = stream("never");
    for target in [ResetTarget::Version(1), ResetTarget::Initial] {
        let err = cx
            .reset_cursor(&lease, &never, reset_to(target))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::NotFound(_)), "{err:?}");
    }
    assert_eq!(cx.get_cursor(&pid("p"), &never).await.unwrap(), None);
    assert_eq!(event_count(cx).await, events);
}

/// A reset carrying a superseded or released lease is `Fenced` and changes nothing.
pub async fn cursors_reset_with_stale_lease_is_fenced(cx: &Ctx) {
    let (old, run) = cx.running("p").await;
    let s = stream("s");
    let current = cx
        .advance_to(&old, run.id, &s, value(json!(10)))
        .await
        .unwrap();
    cx.expire_leases().await;
    let new = cx.lease("p", "worker-2").await;
    let err = cx
        .reset_cursor(&old, &s, reset_to(ResetTarget::Initial))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Fenced { reason: FenceReason::Superseded { current }, .. } if current == new.epoch),
        "{err:?}"
    );
    cx.release(&new).await.unwrap();
    let err = cx
        .reset_cursor(&new, &s, reset_to(ResetTarget::Value(value(json!(1)))))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Fenced { .. }), "{err:?}");
    assert_eq!(cx.get_cursor(&pid("p"), &s).await.unwrap(), Some(current));
    assert_eq!(history(cx, "s").await.len(), 1);
}

/// A reset to `Initial` stores `null`; the next advance of a monotonic cursor accepts any value.
pub async fn cursors_reset_to_initial_accepts_any_next_value(cx: &Ctx) {
    let (lease, run) = cx.running("p").await;
    let s = stream("s");
    cx.advance_to(&lease, run.id, &s, value(json!(100)))
        .await
        .unwrap();
    let run = next_run(cx, &lease, &run).await;
    let initial = cx
        .reset_cursor(&lease, &s, reset_to(ResetTarget::Initial))
        .await
        .unwrap();
    assert!(initial.value.is_initial(), "{:?}", initial.value);
    assert_eq!(initial.version, 2);
    let entry = history(cx, "s").await.remove(0);
    assert_eq!(entry.value, value(json!(null)));
    assert!(matches!(entry.change, CursorChange::Reset { .. }));
    let next = cx
        .advance_to(&lease, run.id, &s, value(json!(1)))
        .await
        .unwrap();
    assert_eq!((next.value, next.version), (value(json!(1)), 3));
    // From there on, the ordering rule applies again.
    let err = cx
        .advance_to(&lease, run.id, &s, value(json!(0)))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::CursorRegression { .. }), "{err:?}");
}

/// A reset that would switch a monotonic cursor between number and string is `InvalidArgument`
/// and changes nothing, unless it allows the type change; then later advances follow the new type.
pub async fn cursors_reset_type_change_needs_permission(cx: &Ctx) {
    let (lease, run) = cx.running("p").await;
    let s = stream("s");
    let current = cx
        .advance_to(&lease, run.id, &s, value(json!(10)))
        .await
        .unwrap();
    let run = next_run(cx, &lease, &run).await;
    let events = event_count(cx).await;
    for target in [
        ResetTarget::Value(value(json!("10"))),
        ResetTarget::Value(value(json!("2026-01-01T00:00:00.000Z"))),
    ] {
        let err = cx
            .reset_cursor(&lease, &s, reset_to(target))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
    }
    assert_eq!(cx.get_cursor(&pid("p"), &s).await.unwrap(), Some(current));
    assert_eq!(history(cx, "s").await.len(), 1);
    assert_eq!(
        event_count(cx).await,
        events,
        "a refused reset appends no event"
    );

    let allowed = CursorReset {
        allow: ResetPermissions {
            type_change: true,
            ..ResetPermissions::default()
        },
        ..reset_to(ResetTarget::Value(value(json!("a"))))
    };
    let reset = cx.reset_cursor(&lease, &s, allowed).await.unwrap();
    assert_eq!((reset.value, reset.version), (value(json!("a")), 2));
    let moved = cx
        .advance_to(&lease, run.id, &s, value(json!("b")))
        .await
        .unwrap();
    assert_eq!(moved.version, 3);
    // Back to a number is a type change again, rollback included.
    let err = cx
        .reset_cursor(&lease, &s, reset_to(ResetTarget::Version(1)))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
    assert_eq!(history(cx, "s").await.len(), 3);
}

/// A reset to a value of a stream that has no cursor is `NotFound` and creates nothing, unless it
/// allows creating the cursor.
pub async fn cursors_reset_of_unknown_stream_needs_permission(cx: &Ctx) {
    cx.pipeline("p").await;
    let lease = cx.lease("p", "worker-1").await;
    let fresh = stream("fresh");
    let events = event_count(cx).await;
    let err = cx
        .reset_cursor(
            &lease,
            &fresh,
            reset_to(ResetTarget::Value(value(json!(5)))),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::NotFound(Entity::Cursor { pipeline, stream }) if *pipeline == pid("p") && *stream == fresh),
        "{err:?}"
    );
    assert_eq!(cx.get_cursor(&pid("p"), &fresh).await.unwrap(), None);
    assert!(cx.list_cursors(&pid("p")).await.unwrap().is_empty());
    assert_eq!(
        event_count(cx).await,
        events,
        "a refused reset appends no event"
    );

    let create = CursorReset {
        allow: ResetPermissions {
            create: true,
            ..ResetPermissions::default()
        },
        ..reset_to(ResetTarget::Value(value(json!(5))))
    };
    let created = cx.reset_cursor(&lease, &fresh, create).await.unwrap();
    assert_eq!((created.value, created.version), (value(json!(5)), 1));
    assert_eq!(created.updated_by, operator());
    let entry = history(cx, "fresh").await.remove(0);
    assert_eq!(
        entry.change,
        CursorChange::Reset {
            reason: reason("replay")
        }
    );
}

#[doc(hidden)]
#[macro_export]
macro_rules! __contract_cursors {
    ($harness:expr) => {
        $crate::__contract_checks!($harness; cursors:
            cursors_first_checkpoint_creates_version_one,
            cursors_monotonic_advance_bumps_version,
            cursors_monotonic_equal_value_is_noop,
            cursors_monotonic_regression_is_refused,
            cursors_monotonic_strings_compare_bytewise,
            cursors_opaque_accepts_any_value,
            cursors_expected_version_is_compare_and_set,
            cursors_unwritten_and_missing_pipeline_reads,
            cursors_list_in_stream_order,
            cursors_history_newest_first_paginated,
            cursors_history_is_append_only,
            cursors_reset_moves_monotonic_cursor_back,
            cursors_reset_is_compare_and_set,
            cursors_rollback_appends_new_version,
            cursors_rollback_to_missing_version_is_not_found,
            cursors_reset_with_stale_lease_is_fenced,
            cursors_reset_to_initial_accepts_any_next_value,
            cursors_reset_type_change_needs_permission,
            cursors_reset_of_unknown_stream_needs_permission,
        );
    };
}
