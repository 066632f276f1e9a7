//! The audit log: every mutation appends one sequence-numbered event, gapless and in order, and
//! nothing else does (invariant 7 in `docs/guarantees.md`).

use std::time::Duration;

use hakiri_core::{
    Actor, BeginRun, CatalogExt, Column, ColumnType, CursorAdvance, CursorKind, CursorReset, Error,
    Event, EventKind, FinishRun, Generation, Limit, PauseChange, PutMode, ResetPermissions,
    ResetTarget, RunStatus, Schedule, Schema, Trigger,
};
use serde_json::json;

use crate::{holder_id, operator, pid, reason, spec, stream, value, Ctx};

/// The events appended since `*seen`, advancing `*seen` past them.
async fn appended(cx: &Ctx, seen: &mut u64) -> Vec<Event> {
    let events = cx.events(*seen, Limit::MAX).await.unwrap();
    if let Some(last) = events.last() {
        *seen = last.seq;
    }
    events
}

/// Asserts that `got` holds exactly the `want`ed (actor, kind) pairs, in any order, all about
/// pipeline `p`.
fn assert_events(got: &[Event], want: &[(Actor, EventKind)], what: &str) {
    assert_eq!(
        got.len(),
        want.len(),
        "{what}: expected {want:?}, got {got:?}"
    );
    let mut unmatched: Vec<&Event> = got.iter().collect();
    for (actor, kind) in want {
        let at = unmatched
            .iter()
            .position(|e| e.actor == *actor && e.kind == *kind)
            .unwrap_or_else(|| panic!("{what}: no event {actor:?} {kind:?} in {got:?}"));
        let event = unmatched.remove(at);
        assert_eq!(event.pipeline, pid("p"), "{what}: {event:?}");
    }
}

fn schema() -> Schema {
    Schema::new(vec![Column::new("id", ColumnType::Integer, false)], vec![]).expect("valid schema")
}

/// Sequence numbers start at 1 and increase by one with no gaps.
pub async fn events_sequence_starts_at_one_and_is_gapless(cx: &Ctx) {
    assert!(
        cx.events(0, Limit::MAX).await.unwrap().is_empty(),
        "a new project has no events"
    );
    let (lease, run) = cx.running("p").await;
    cx.pipeline("q").await;
    cx.advance_to(&lease, run.id, &stream("s"), value(json!(1)))
        .await
        .unwrap();
    cx.advance_to(&lease, run.id, &stream("s"), value(json!(2)))
        .await
        .unwrap();
    cx.finish_run(&lease, run.id, FinishRun::succeeded())
        .await
        .unwrap();
    cx.release(&lease).await.unwrap();

    let events = cx.events(0, Limit::MAX).await.unwrap();
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    let expected: Vec<u64> = (1..=8).collect();
    // create p, acquire, begin, create q, advance ×2, finish, release.
    assert_eq!(seqs, expected);
}

/// Every kind of mutation is logged once, as what happened and by whom; renewals and no-ops are
/// not logged.
pub async fn events_record_each_mutation_with_its_actor(cx: &Ctx) {
    let op = operator();
    let worker = Actor::Holder(holder_id("worker-1"));
    let mut seen = 0;

    cx.pipeline("p").await;
    let got = appended(cx, &mut seen).await;
    assert_events(
        &got,
        &[(
            op.clone(),
            EventKind::PipelineCreated {
                generation: Generation(1),
            },
        )],
        "create",
    );
    assert_eq!(got[0].seq, 1);

    let v2 =
        spec("p", CursorKind::Monotonic).with_schedule(Schedule::Interval(Duration::from_secs(60)));
    cx.put_pipeline(
        v2,
        PutMode::Update {
            expected: Generation(1),
        },
        &op,
    )
    .await
    .unwrap();
    let got = appended(cx, &mut seen).await;
    assert_events(
        &got,
        &[(
            op.clone(),
            EventKind::PipelineUpdated {
                generation: Generation(2),
            },
        )],
        "update",
    );

    cx.set_paused(&pid("p"), PauseChange::Pause(reason("maintenance")), &op)
        .await
        .unwrap();
    let got = appended(cx, &mut seen).await;
    assert_events(
        &got,
        &[(
            op.clone(),
            EventKind::PipelinePaused {
                reason: reason("maintenance"),
            },
        )],
        "pause",
    );

    cx.set_paused(&pid("p"), PauseChange::Resume, &op)
        .await
        .unwrap();
    let got = appended(cx, &mut seen).await;
    assert_events(&got, &[(op.clone(), EventKind::PipelineResumed)], "resume");

    let lease = cx.lease("p", "worker-1").await;
    let got = appended(cx, &mut seen).await;
    let acquired = EventKind::LeaseAcquired {
        holder: holder_id("worker-1"),
        epoch: lease.epoch,
        forced: false,
    };
    assert_events(&got, &[(worker.clone(), acquired)], "acquire");

    let lease = cx.renew(&lease, cx.ttl()).await.unwrap();
    assert!(
        appended(cx, &mut seen).await.is_empty(),
        "renewals are not logged"
    );

    let run = cx
        .begin_run(&lease, BeginRun::new(Trigger::Manual))
        .await
        .unwrap();
    let got = appended(cx, &mut seen).await;
    assert_events(
        &got,
        &[(
            worker.clone(),
            EventKind::RunBegun {
                run: run.id,
                epoch: lease.epoch,
            },
        )],
        "begin",
    );

    cx.advance_to(&lease, run.id, &stream("s"), value(json!(1)))
        .await
        .unwrap();
    let got = appended(cx, &mut seen).await;
    assert_events(
        &got,
        &[(
            worker.clone(),
            EventKind::CursorAdvanced {
                stream: stream("s"),
                version: 1,
            },
        )],
        "checkpoint",
    );

    cx.advance_to(&lease, run.id, &stream("s"), value(json!(1)))
        .await
        .unwrap();
    assert!(
        appended(cx, &mut seen).await.is_empty(),
        "an equal checkpoint is a no-op"
    );

    cx.observe_schema(&lease, run.id, &stream("s"), schema())
        .await
        .unwrap();
    let got = appended(cx, &mut seen).await;
    // Who adds a first schema version (the observing holder or the policy) is not fixed.
    assert_eq!(got.len(), 1, "observe: {got:?}");
    assert_eq!(
        got[0].kind,
        EventKind::SchemaVersionAdded {
            stream: stream("s"),
            version: 1
        }
    );
    assert!(
        matches!(&got[0].actor, Actor::Policy) || got[0].actor == worker,
        "{got:?}"
    );
    assert_eq!(got[0].pipeline, pid("p"));

    let finish = FinishRun::succeeded().with_cursor(stream("s"), value(json!(2)));
    cx.finish_run(&lease, run.id, finish).await.unwrap();
    let got = appended(cx, &mut seen).await;
    assert_events(
        &got,
        &[
            (
                worker.clone(),
                EventKind::CursorAdvanced {
                    stream: stream("s"),
                    version: 2,
                },
            ),
            (
                worker.clone(),
                EventKind::RunFinished {
                    run: run.id,
                    status: RunStatus::Succeeded,
                },
            ),
        ],
        "finish",
    );

    let reset = CursorReset {
        target: ResetTarget::Value(value(json!(0))),
        expected_version: Some(2),
        by: op.clone(),
        reason: reason("replay"),
        allow: ResetPermissions::default(),
    };
    cx.reset_cursor(&lease, &stream("s"), reset).await.unwrap();
    let got = appended(cx, &mut seen).await;
    let reset_kind = EventKind::CursorReset {
        stream: stream("s"),
        version: 3,
        reason: reason("replay"),
    };
    assert_events(&got, &[(op.clone(), reset_kind)], "reset");

    cx.release(&lease).await.unwrap();
    let got = appended(cx, &mut seen).await;
    assert_events(
        &got,
        &[(
            worker.clone(),
            EventKind::LeaseReleased { epoch: lease.epoch },
        )],
        "release",
    );

    let lease2 = cx.lease("p", "worker-2").await;
    let run2 = cx
        .begin_run(&lease2, BeginRun::new(Trigger::Manual))
        .await
        .unwrap();
    appended(cx, &mut seen).await;
    let forced = cx
        .force_acquire(
            &pid("p"),
            &holder_id("op-session"),
            cx.ttl(),
            &op,
            &reason("stuck"),
        )
        .await
        .unwrap();
    let got = appended(cx, &mut seen).await;
    assert_events(
        &got,
        &[
            (
                op.clone(),
                EventKind::LeaseAcquired {
                    holder: holder_id("op-session"),
                    epoch: forced.epoch,
                    forced: true,
                },
            ),
            (
                Actor::System,
                EventKind::RunFinished {
                    run: run2.id,
                    status: RunStatus::Abandoned,
                },
            ),
        ],
        "force acquire",
    );

    cx.release(&forced).await.unwrap();
    appended(cx, &mut seen).await;
    cx.delete_pipeline(&pid("p"), Generation(2), &op)
        .await
        .unwrap();
    let got = appended(cx, &mut seen).await;
    assert_events(&got, &[(op.clone(), EventKind::PipelineDeleted)], "delete");
}

/// `events(after, limit)` pages through the log without gaps or repeats.
pub async fn events_page_without_gaps_or_repeats(cx: &Ctx) {
    let (lease, run) = cx.running("p").await;
    for i in 1..=4 {
        cx.advance_to(&lease, run.id, &stream("s"), value(json!(i)))
            .await
            .unwrap();
    }
    let all = cx.events(0, Limit::MAX).await.unwrap();
    assert_eq!(
        all.len(),
        7,
        "create, acquire, begin, 4 checkpoints: {all:?}"
    );

    let three = Limit::new(3).unwrap();
    let mut paged = Vec::new();
    let mut after = 0;
    loop {
        let page = cx.events(after, three).await.unwrap();
        assert!(page.len() <= 3);
        let Some(last) = page.last() else { break };
        assert_eq!(
            page[0].seq,
            after + 1,
            "the page starts right after {after}"
        );
        after = last.seq;
        paged.extend(page);
    }
    assert_eq!(paged, all);
    assert_eq!(cx.events(2, three).await.unwrap(), all[2..5].to_vec());
    assert!(cx.events(7, Limit::MAX).await.unwrap().is_empty());
    assert!(cx.events(100, Limit::MAX).await.unwrap().is_empty());
}

/// `pipeline_events(pipeline, after, limit)` is that pipeline's slice of the log: its events only,
/// in order, the same events as the whole log holds, paged without gaps or repeats; a pipeline
/// that never existed has none, a deleted one keeps its slice. `pipeline_events_before` pages the
/// same slice backwards: the newest events below a number, in order.
pub async fn events_of_one_pipeline_are_its_slice_of_the_log(cx: &Ctx) {
    let (a, run_a) = cx.running("a").await;
    let (b, run_b) = cx.running("b").await;
    for i in 1..=3 {
        cx.advance_to(&a, run_a.id, &stream("s"), value(json!(i)))
            .await
            .unwrap();
        cx.advance_to(&b, run_b.id, &stream("s"), value(json!(i)))
            .await
            .unwrap();
    }
    let all = cx.events(0, Limit::MAX).await.unwrap();
    for name in ["a", "b"] {
        let slice: Vec<Event> = all
            .iter()
            .filter(|e| e.pipeline == pid(name))
            .cloned()
            .collect();
        assert_eq!(slice.len(), 6, "create, acquire, begin, 3 checkpoints");
        assert_eq!(
            cx.pipeline_events(&pid(name), 0, Limit::MAX).await.unwrap(),
            slice,
            "{name}'s events"
        );
        let two = Limit::new(2).unwrap();
        let (mut paged, mut after) = (Vec::new(), 0);
        loop {
            let page = cx.pipeline_events(&pid(name), after, two).await.unwrap();
            assert!(page.len() <= 2);
            let Some(last) = page.last() else { break };
            after = last.seq;
            paged.extend(page);
        }
        assert_eq!(paged, slice, "{name}'s events paged by two");
        // Backwards by two, from past the end down to the start.
        let (mut back, mut before) = (Vec::new(), u64::MAX);
        loop {
            let page = cx
                .pipeline_events_before(&pid(name), before, two)
                .await
                .unwrap();
            assert!(page.len() <= 2);
            assert!(page.windows(2).all(|w| w[0].seq < w[1].seq), "in order");
            let Some(first) = page.first() else { break };
            before = first.seq;
            back.splice(0..0, page);
        }
        assert_eq!(back, slice, "{name}'s events paged backwards by two");
        assert_eq!(
            cx.pipeline_events_before(&pid(name), slice[3].seq, Limit::MAX)
                .await
                .unwrap(),
            slice[..3],
            "below a number: everything older"
        );
        // After a number that is another pipeline's: the slice goes on from there.
        let other = all.iter().find(|e| e.pipeline != pid(name)).unwrap().seq;
        assert_eq!(
            cx.pipeline_events(&pid(name), other, Limit::MAX)
                .await
                .unwrap(),
            slice
                .iter()
                .filter(|e| e.seq > other)
                .cloned()
                .collect::<Vec<_>>()
        );
        assert_eq!(
            cx.pipeline_events_before(&pid(name), other, Limit::MAX)
                .await
                .unwrap(),
            slice
                .iter()
                .filter(|e| e.seq < other)
                .cloned()
                .collect::<Vec<_>>()
        );
    }
    assert!(cx
        .pipeline_events(&pid("never"), 0, Limit::MAX)
        .await
        .unwrap()
        .is_empty());
    assert!(cx
        .pipeline_events_before(&pid("never"), u64::MAX, Limit::MAX)
        .await
        .unwrap()
        .is_empty());

    cx.finish_run(&a, run_a.id, FinishRun::succeeded())
        .await
        .unwrap();
    cx.release(&a).await.unwrap();
    let generation = cx.get_pipeline(&pid("a")).await.unwrap().generation;
    cx.delete_pipeline(&pid("a"), generation, &operator())
        .await
        .unwrap();
    let kept = cx.pipeline_events(&pid("a"), 0, Limit::MAX).await.unwrap();
    assert_eq!(
        cx.pipeline_events_before(&pid("a"), u64::MAX, Limit::MAX)
            .await
            .unwrap(),
        kept,
        "a deleted pipeline's slice, backwards too"
    );
    assert_eq!(
        kept.len(),
        9,
        "the slice, the finish, the release and the delete: {kept:?}"
    );
    assert!(matches!(
        kept.last().map(|e| &e.kind),
        Some(EventKind::PipelineDeleted)
    ));
}

/// A rejected operation appends no event.
pub async fn events_rejected_operations_append_nothing(cx: &Ctx) {
    let (lease, run) = cx.running("p").await;
    cx.advance_to(&lease, run.id, &stream("s"), value(json!(5)))
        .await
        .unwrap();
    let before = cx.events(0, Limit::MAX).await.unwrap();
    let unchanged = |what: &'static str| {
        let before = before.clone();
        async move {
            assert_eq!(
                cx.events(0, Limit::MAX).await.unwrap(),
                before,
                "{what} appended an event"
            );
        }
    };

    let err = cx
        .create_pipeline(spec("p", CursorKind::Monotonic), &operator())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::AlreadyExists(_)), "{err:?}");
    unchanged("duplicate create").await;

    let stale = PutMode::Update {
        expected: Generation(7),
    };
    let err = cx
        .put_pipeline(spec("p", CursorKind::Opaque), stale, &operator())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Conflict { .. }), "{err:?}");
    unchanged("stale update").await;

    let err = cx
        .acquire(&pid("p"), &holder_id("other"), cx.ttl())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Leased { .. }), "{err:?}");
    unchanged("acquire under a live lease").await;

    let err = cx
        .begin_run(&lease, BeginRun::new(Trigger::Manual))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::FailedPrecondition(_)), "{err:?}");
    unchanged("second begin").await;

    let err = cx
        .advance_to(&lease, run.id, &stream("s"), value(json!(4)))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::CursorRegression { .. }), "{err:?}");
    unchanged("regressing checkpoint").await;

    let cas = CursorAdvance::to(value(json!(6))).expecting(9);
    let err = cx
        .advance(&lease, run.id, &stream("s"), cas)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Conflict { .. }), "{err:?}");
    unchanged("checkpoint with a stale version").await;

    let finish = FinishRun::succeeded()
        .with_cursor(stream("a"), value(json!(1)))
        .with_cursor(stream("s"), value(json!(1)));
    let err = cx.finish_run(&lease, run.id, finish).await.unwrap_err();
    assert!(matches!(err, Error::CursorRegression { .. }), "{err:?}");
    unchanged("regressing finish").await;

    let err = cx
        .delete_pipeline(&pid("p"), Generation(1), &operator())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Leased { .. }), "{err:?}");
    unchanged("delete under a live lease").await;

    let err = cx
        .acquire(&pid("ghost"), &holder_id("other"), cx.ttl())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "{err:?}");
    unchanged("acquire of a missing pipeline").await;

    cx.expire_leases().await;
    let err = cx
        .advance_to(&lease, run.id, &stream("s"), value(json!(6)))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Fenced { .. }), "{err:?}");
    let err = cx.release(&lease).await.unwrap_err();
    assert!(matches!(err, Error::Fenced { .. }), "{err:?}");
    unchanged("zombie writes").await;
}

#[doc(hidden)]
#[macro_export]
macro_rules! __contract_events {
    ($harness:expr) => {
        $crate::__contract_checks!($harness; events:
            events_sequence_starts_at_one_and_is_gapless,
            events_record_each_mutation_with_its_actor,
            events_page_without_gaps_or_repeats,
            events_of_one_pipeline_are_its_slice_of_the_log,
            events_rejected_operations_append_nothing,
        );
    };
}
