//! Invalid input is a typed `InvalidArgument` and changes nothing (invariant 8 in
//! `docs/guarantees.md`).
//!
//! Most input is validated when its type is built (ids, values, limits, reasons, schemas, specs),
//! so a backend never sees it; `hakiri-core`'s own tests (`hakiri-core/tests/construction.rs`)
//! check those. The rest is refused by the catalog, which must then leave every piece of state —
//! and the event log — exactly as it was: these checks.

use std::time::Duration;

use hakiri_core::{
    BeginRun, CatalogExt, Cursor, CursorReset, Error, FinishRun, Limit, PipelineStatus, PutMode,
    ResetPermissions, ResetTarget, Run, RunQuery, Schedule, Trigger,
};
use serde_json::json;

use crate::{holder_id, operator, pid, reason, spec, stream, value, Ctx};

/// Everything a check can observe of its project.
#[derive(Debug, PartialEq)]
struct Snapshot {
    statuses: Vec<PipelineStatus>,
    cursors: Vec<Vec<Cursor>>,
    runs: Vec<Run>,
    events: usize,
}

async fn snapshot(cx: &Ctx) -> Snapshot {
    let statuses = cx.all_statuses().await.expect("statuses").items;
    let mut cursors = Vec::new();
    for status in &statuses {
        cursors.push(
            cx.list_cursors(status.pipeline.id())
                .await
                .expect("cursors"),
        );
    }
    let runs = cx
        .list_runs(&RunQuery::all().limit(Limit::MAX))
        .await
        .expect("runs")
        .items;
    let events = cx.events(0, Limit::MAX).await.expect("events").len();
    Snapshot {
        statuses,
        cursors,
        runs,
        events,
    }
}

fn assert_invalid<T: std::fmt::Debug>(result: Result<T, Error>, what: &str) {
    match result {
        Err(Error::InvalidArgument(_)) => {}
        other => panic!("{what}: expected InvalidArgument, got {other:?}"),
    }
}

/// A lease ttl outside 100 ms..=24 h is refused on acquire, force-acquire and renew, and changes
/// nothing.
pub async fn validation_lease_ttl_out_of_range(cx: &Ctx) {
    cx.pipeline("p").await;
    let before = snapshot(cx).await;
    let bad = [
        Duration::ZERO,
        Duration::from_millis(1),
        Duration::from_millis(99),
        Duration::from_secs(24 * 3600 + 1),
        Duration::from_secs(2 * 24 * 3600),
    ];
    for ttl in bad {
        assert_invalid(
            cx.acquire(&pid("p"), &holder_id("a"), ttl).await,
            &format!("acquire {ttl:?}"),
        );
        assert_invalid(
            cx.force_acquire(&pid("p"), &holder_id("op"), ttl, &operator(), &reason("x"))
                .await,
            &format!("force_acquire {ttl:?}"),
        );
    }
    assert_eq!(snapshot(cx).await, before);
    assert!(before.statuses[0].lease.is_none(), "never leased");

    let lease = cx.lease("p", "a").await;
    let before = snapshot(cx).await;
    for ttl in bad {
        assert_invalid(cx.renew(&lease, ttl).await, &format!("renew {ttl:?}"));
    }
    assert_eq!(snapshot(cx).await, before, "the lease is unchanged");
    // Still held by "a": the refused renewals neither extended nor dropped it.
    let err = cx
        .acquire(&pid("p"), &holder_id("b"), cx.ttl())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Leased { .. }), "{err:?}");
    cx.renew(&lease, cx.ttl())
        .await
        .expect("a valid ttl renews");
}

/// A run's attempt number starts at 1: attempt 0 is refused and no run begins.
pub async fn validation_begin_run_attempt_zero(cx: &Ctx) {
    cx.pipeline("p").await;
    let lease = cx.lease("p", "a").await;
    let before = snapshot(cx).await;
    let zero = BeginRun {
        trigger: Trigger::Manual,
        attempt: 0,
    };
    assert_invalid(cx.begin_run(&lease, zero).await, "attempt 0");
    assert_eq!(snapshot(cx).await, before);
    assert!(before.runs.is_empty());
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
    assert_eq!(run.attempt, 2);
}

/// A monotonic cursor holds only a number within ±(2^53 − 1) or a string: objects, arrays,
/// booleans, null and larger integers are refused — by checkpoint, finish and reset — and change
/// nothing.
pub async fn validation_monotonic_cursor_value_kind(cx: &Ctx) {
    let (lease, run) = cx.running("p").await;
    let s = stream("s");
    cx.advance_to(&lease, run.id, &s, value(json!(5)))
        .await
        .unwrap();
    let before = snapshot(cx).await;
    let bad = [
        json!({"offset": 6}),
        json!([6]),
        json!(true),
        json!(null),
        json!(9_007_199_254_740_992_u64),
        json!(9_007_199_254_740_993_u64),
        json!(1_u64 << 60),
        json!(u64::MAX),
        json!(-9_007_199_254_740_993_i64),
        json!(1e300),
    ];
    for v in bad {
        for stream_name in ["s", "fresh"] {
            let target = stream(stream_name);
            assert_invalid(
                cx.advance_to(&lease, run.id, &target, value(v.clone()))
                    .await,
                &format!("checkpoint {v} on {stream_name}"),
            );
            let finish = FinishRun::succeeded().with_cursor(target.clone(), value(v.clone()));
            assert_invalid(
                cx.finish_run(&lease, run.id, finish).await,
                &format!("finish {v} on {stream_name}"),
            );
        }
        let reset = CursorReset {
            target: ResetTarget::Value(value(v.clone())),
            expected_version: None,
            by: operator(),
            reason: reason("bad reset"),
            allow: ResetPermissions::default(),
        };
        assert_invalid(
            cx.reset_cursor(&lease, &s, reset).await,
            &format!("reset to {v}"),
        );
    }
    assert_eq!(snapshot(cx).await, before);
    // The largest safe integer itself is fine.
    let max = cx
        .advance_to(&lease, run.id, &s, value(json!(9_007_199_254_740_991_i64)))
        .await
        .unwrap();
    assert_eq!(max.version, 2);
}

/// A monotonic cursor cannot switch between number and string (only a reset that allows it may
/// change its type).
pub async fn validation_monotonic_cursor_keeps_its_type(cx: &Ctx) {
    let (lease, run) = cx.running("p").await;
    let (n, t) = (stream("n"), stream("t"));
    cx.advance_to(&lease, run.id, &n, value(json!(5)))
        .await
        .unwrap();
    cx.advance_to(&lease, run.id, &t, value(json!("2026-01-01T00:00:00.000Z")))
        .await
        .unwrap();
    let before = snapshot(cx).await;
    assert_invalid(
        cx.advance_to(&lease, run.id, &n, value(json!("6"))).await,
        "number to string",
    );
    assert_invalid(
        cx.advance_to(&lease, run.id, &t, value(json!(1_800_000_000)))
            .await,
        "string to number",
    );
    let finish = FinishRun::succeeded().with_cursor(n.clone(), value(json!("7")));
    assert_invalid(
        cx.finish_run(&lease, run.id, finish).await,
        "finish number to string",
    );
    assert_eq!(snapshot(cx).await, before);
    // An operator reset that explicitly allows it may change the type; later advances follow
    // the new type.
    let reset = CursorReset {
        target: ResetTarget::Value(value(json!("a"))),
        expected_version: None,
        by: operator(),
        reason: reason("switch to string offsets"),
        allow: ResetPermissions {
            type_change: true,
            ..ResetPermissions::default()
        },
    };
    cx.reset_cursor(&lease, &n, reset).await.unwrap();
    cx.advance_to(&lease, run.id, &n, value(json!("b")))
        .await
        .unwrap();
}

/// A spec with an interval schedule under 1 s is refused on create and update, and changes
/// nothing.
pub async fn validation_put_pipeline_short_interval(cx: &Ctx) {
    let before = snapshot(cx).await;
    for every in [Duration::ZERO, Duration::from_millis(999)] {
        let fast =
            spec("p", hakiri_core::CursorKind::Monotonic).with_schedule(Schedule::Interval(every));
        assert_invalid(
            cx.put_pipeline(fast, PutMode::Create, &operator()).await,
            &format!("create every {every:?}"),
        );
    }
    let err = cx.get_pipeline(&pid("p")).await.unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "{err:?}");
    assert_eq!(snapshot(cx).await, before);

    let created = cx.pipeline("p").await;
    let before = snapshot(cx).await;
    let fast = created
        .spec
        .clone()
        .with_schedule(Schedule::Interval(Duration::from_millis(500)));
    assert_invalid(
        cx.put_pipeline(
            fast,
            PutMode::Update {
                expected: created.generation,
            },
            &operator(),
        )
        .await,
        "update to 500ms",
    );
    assert_eq!(snapshot(cx).await, before);
    assert_eq!(cx.get_pipeline(&pid("p")).await.unwrap(), created);
    let ok = created
        .spec
        .clone()
        .with_schedule(Schedule::Interval(Duration::from_secs(1)));
    let updated = cx
        .put_pipeline(
            ok,
            PutMode::Update {
                expected: created.generation,
            },
            &operator(),
        )
        .await
        .unwrap();
    assert_eq!(updated.generation, created.generation.next());
}

#[doc(hidden)]
#[macro_export]
macro_rules! __contract_validation {
    ($harness:expr) => {
        $crate::__contract_checks!($harness; validation:
            validation_lease_ttl_out_of_range,
            validation_begin_run_attempt_zero,
            validation_monotonic_cursor_value_kind,
            validation_monotonic_cursor_keeps_its_type,
            validation_put_pipeline_short_interval,
        );
    };
}
