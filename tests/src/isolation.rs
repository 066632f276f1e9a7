//! Project isolation: nothing in one project is visible or writable from another (invariant
//! 10 in `docs/guarantees.md`).

use std::sync::Arc;

use hakiri_core::{
    BeginRun, Catalog, CatalogExt, Column, ColumnType, CursorAdvance, Decide, DecisionQuery, Error,
    FinishRun, Generation, Lease, Limit, PauseChange, PutMode, Resolution, RunQuery, RunStatus,
    Schema, Trigger, Verdict,
};
use serde_json::json;

use crate::{holder_id, operator, pid, reason, spec, stream, value, Ctx};

fn id_schema(ty: ColumnType) -> Schema {
    Schema::new(vec![Column::new("id", ty, false)], vec![]).expect("valid schema")
}

fn is_not_found(err: &Error) -> bool {
    matches!(err, Error::NotFound(_))
}

fn is_fenced_or_not_found(err: &Error) -> bool {
    matches!(err, Error::NotFound(_) | Error::Fenced { .. })
}

/// Takes `pipeline`'s lease in `catalog` as `holder`.
async fn lease_in(cx: &Ctx, catalog: &Arc<dyn Catalog>, pipeline: &str, holder: &str) -> Lease {
    catalog
        .acquire(&pid(pipeline), &holder_id(holder), cx.ttl())
        .await
        .expect("acquire")
}

/// A pipeline of one project is invisible from another: reads are `NotFound`, lists are empty,
/// and writes by id are `NotFound`.
pub async fn isolation_pipelines_invisible_across_projects(cx: &Ctx) {
    cx.pipeline("p").await;
    let b = cx.other_project().await;
    assert_ne!(b.project(), cx.project());

    assert!(is_not_found(&b.get_pipeline(&pid("p")).await.unwrap_err()));
    assert!(b
        .list_pipelines(None, Limit::MAX)
        .await
        .unwrap()
        .items
        .is_empty());
    assert!(b
        .pipeline_statuses(None, Limit::MAX)
        .await
        .unwrap()
        .items
        .is_empty());
    assert!(is_not_found(&b.list_cursors(&pid("p")).await.unwrap_err()));
    assert!(is_not_found(
        &b.get_cursor(&pid("p"), &stream("s")).await.unwrap_err()
    ));
    let err = b
        .acquire(&pid("p"), &holder_id("b"), cx.ttl())
        .await
        .unwrap_err();
    assert!(is_not_found(&err), "{err:?}");
    let err = b
        .set_paused(&pid("p"), PauseChange::Pause(reason("x")), &operator())
        .await
        .unwrap_err();
    assert!(is_not_found(&err), "{err:?}");
    let err = b
        .delete_pipeline(&pid("p"), Generation(1), &operator())
        .await
        .unwrap_err();
    assert!(is_not_found(&err), "{err:?}");
    let update = PutMode::Update {
        expected: Generation(1),
    };
    let err = b
        .put_pipeline(
            spec("p", hakiri_core::CursorKind::Opaque),
            update,
            &operator(),
        )
        .await
        .unwrap_err();
    assert!(is_not_found(&err), "{err:?}");

    let a = cx.get_pipeline(&pid("p")).await.unwrap();
    assert_eq!(
        (a.generation, a.paused),
        (Generation(1), None),
        "A is untouched"
    );
    assert!(b.events(0, Limit::MAX).await.unwrap().is_empty());
}

/// The same pipeline id in two projects names two independent pipelines: own generations,
/// leases, runs, cursors and pause state.
pub async fn isolation_same_pipeline_id_is_independent(cx: &Ctx) {
    cx.pipeline("p").await;
    let v2 = spec("p", hakiri_core::CursorKind::Opaque);
    cx.put_pipeline(
        v2,
        PutMode::Update {
            expected: Generation(1),
        },
        &operator(),
    )
    .await
    .unwrap();
    let b = cx.other_project().await;
    let in_b = b
        .create_pipeline(spec("p", hakiri_core::CursorKind::Monotonic), &operator())
        .await
        .expect("the id is free in another project");
    assert_eq!(in_b.generation, Generation(1));
    assert_eq!(
        cx.get_pipeline(&pid("p")).await.unwrap().generation,
        Generation(2)
    );

    // Both take a live lease on "p" at once.
    let lease_a = cx.lease("p", "a").await;
    let lease_b = lease_in(cx, &b, "p", "b").await;
    let run_a = cx
        .begin_run(&lease_a, BeginRun::new(Trigger::Manual))
        .await
        .unwrap();
    let run_b = b
        .begin_run(&lease_b, BeginRun::new(Trigger::Manual))
        .await
        .unwrap();
    cx.advance_to(
        &lease_a,
        run_a.id,
        &stream("s"),
        value(json!({"token": "a"})),
    )
    .await
    .unwrap();
    b.advance_to(&lease_b, run_b.id, &stream("s"), value(json!(3)))
        .await
        .unwrap();

    let ca = cx
        .get_cursor(&pid("p"), &stream("s"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (ca.value, ca.version, ca.run),
        (value(json!({"token": "a"})), 1, Some(run_a.id))
    );
    let cb = b
        .get_cursor(&pid("p"), &stream("s"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (cb.value, cb.version, cb.run),
        (value(json!(3)), 1, Some(run_b.id))
    );

    let runs_a = cx.list_runs(&RunQuery::all()).await.unwrap();
    assert_eq!(
        runs_a.items.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![run_a.id]
    );
    let runs_b = b.list_runs(&RunQuery::all()).await.unwrap();
    assert_eq!(
        runs_b.items.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![run_b.id]
    );

    cx.set_paused(&pid("p"), PauseChange::Pause(reason("only A")), &operator())
        .await
        .unwrap();
    assert_eq!(b.get_pipeline(&pid("p")).await.unwrap().paused, None);

    // Releasing in A abandons A's run only.
    cx.release(&lease_a).await.unwrap();
    assert_eq!(
        cx.get_run(run_a.id).await.unwrap().status,
        RunStatus::Abandoned
    );
    assert_eq!(
        b.get_run(run_b.id).await.unwrap().status,
        RunStatus::Running
    );
    b.finish_run(&lease_b, run_b.id, FinishRun::succeeded())
        .await
        .unwrap();
}

/// A lease of one project writes nothing in another (`Fenced` or `NotFound`), and the failed
/// attempts change nothing in either project.
pub async fn isolation_lease_cannot_write_in_another_project(cx: &Ctx) {
    // A's lease on "p" has been taken twice, so its epoch is not the first one.
    cx.pipeline("p").await;
    let first = cx.lease("p", "a").await;
    cx.release(&first).await.unwrap();
    let lease_a = cx.lease("p", "a").await;
    let run_a = cx
        .begin_run(&lease_a, BeginRun::new(Trigger::Manual))
        .await
        .unwrap();
    cx.advance_to(&lease_a, run_a.id, &stream("s"), value(json!(10)))
        .await
        .unwrap();
    let events_a = cx.events(0, Limit::MAX).await.unwrap();

    let b = cx.other_project().await;
    // B has no pipeline "p": A's lease names nothing there.
    let err = b
        .begin_run(&lease_a, BeginRun::new(Trigger::Manual))
        .await
        .unwrap_err();
    assert!(is_fenced_or_not_found(&err), "{err:?}");
    let err = b
        .advance_to(&lease_a, run_a.id, &stream("s"), value(json!(11)))
        .await
        .unwrap_err();
    assert!(is_fenced_or_not_found(&err), "{err:?}");
    let err = b.renew(&lease_a, cx.ttl()).await.unwrap_err();
    assert!(is_fenced_or_not_found(&err), "{err:?}");
    let err = b.release(&lease_a).await.unwrap_err();
    assert!(is_fenced_or_not_found(&err), "{err:?}");

    // B has its own "p", never leased.
    b.create_pipeline(spec("p", hakiri_core::CursorKind::Monotonic), &operator())
        .await
        .unwrap();
    let events_b = b.events(0, Limit::MAX).await.unwrap();
    let err = b
        .begin_run(&lease_a, BeginRun::new(Trigger::Manual))
        .await
        .unwrap_err();
    assert!(is_fenced_or_not_found(&err), "{err:?}");
    let cas = CursorAdvance::to(value(json!(11)));
    let err = b
        .advance(&lease_a, run_a.id, &stream("s"), cas)
        .await
        .unwrap_err();
    assert!(is_fenced_or_not_found(&err), "{err:?}");
    let err = b
        .finish_run(&lease_a, run_a.id, FinishRun::succeeded())
        .await
        .unwrap_err();
    assert!(is_fenced_or_not_found(&err), "{err:?}");

    assert!(b
        .list_runs(&RunQuery::all())
        .await
        .unwrap()
        .items
        .is_empty());
    assert_eq!(b.events(0, Limit::MAX).await.unwrap(), events_b);

    // B's "p" leased by B under a different epoch than A's lease carries.
    let mut lease_b = lease_in(cx, &b, "p", "b").await;
    for _ in 0..3 {
        if lease_b.epoch != lease_a.epoch {
            break;
        }
        b.release(&lease_b).await.unwrap();
        lease_b = lease_in(cx, &b, "p", "b").await;
    }
    assert_ne!(lease_b.epoch, lease_a.epoch);
    let events_b = b.events(0, Limit::MAX).await.unwrap();
    let err = b
        .begin_run(&lease_a, BeginRun::new(Trigger::Manual))
        .await
        .unwrap_err();
    assert!(is_fenced_or_not_found(&err), "{err:?}");
    let err = b.renew(&lease_a, cx.ttl()).await.unwrap_err();
    assert!(is_fenced_or_not_found(&err), "{err:?}");
    let err = b.release(&lease_a).await.unwrap_err();
    assert!(is_fenced_or_not_found(&err), "{err:?}");

    // Nothing changed in B…
    assert!(b
        .list_runs(&RunQuery::all())
        .await
        .unwrap()
        .items
        .is_empty());
    assert!(b.list_cursors(&pid("p")).await.unwrap().is_empty());
    assert_eq!(b.events(0, Limit::MAX).await.unwrap(), events_b);
    b.begin_run(&lease_b, BeginRun::new(Trigger::Manual))
        .await
        .expect("B's own lease still works");
    // …nor in A, whose lease still works.
    assert_eq!(cx.events(0, Limit::MAX).await.unwrap(), events_a);
    assert_eq!(
        cx.get_run(run_a.id).await.unwrap().status,
        RunStatus::Running
    );
    let cursor = cx
        .get_cursor(&pid("p"), &stream("s"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((cursor.value, cursor.version), (value(json!(10)), 1));
    cx.advance_to(&lease_a, run_a.id, &stream("s"), value(json!(12)))
        .await
        .unwrap();
}

/// Runs, schema versions, decisions and events of one project are not listed or readable in
/// another.
pub async fn isolation_runs_decisions_events_stay_in_their_project(cx: &Ctx) {
    let (lease, run) = cx.running("p").await;
    cx.observe_schema(&lease, run.id, &stream("s"), id_schema(ColumnType::Integer))
        .await
        .unwrap();
    let held = cx
        .observe_schema(&lease, run.id, &stream("s"), id_schema(ColumnType::Boolean))
        .await
        .unwrap();
    assert_eq!(
        held.verdict,
        Verdict::Held,
        "a breaking change is held by default"
    );
    let decision = held.decision.expect("a decision is recorded");
    let events_a = cx.events(0, Limit::MAX).await.unwrap();
    assert!(!events_a.is_empty());

    let b = cx.other_project().await;
    assert!(b
        .list_runs(&RunQuery::all())
        .await
        .unwrap()
        .items
        .is_empty());
    assert!(is_not_found(&b.get_run(run.id).await.unwrap_err()));
    assert!(b
        .list_decisions(&DecisionQuery::default())
        .await
        .unwrap()
        .items
        .is_empty());
    assert!(b.events(0, Limit::MAX).await.unwrap().is_empty());
    assert!(is_not_found(
        &b.get_schema(&pid("p"), &stream("s"), None)
            .await
            .unwrap_err()
    ));
    assert!(is_not_found(
        &b.list_schema_versions(&pid("p"), &stream("s"))
            .await
            .unwrap_err()
    ));
    let decide = Decide {
        resolution: Resolution::Accept,
        by: operator(),
        reason: reason("from the wrong project"),
    };
    assert!(is_not_found(
        &b.decide(decision.id, decide).await.unwrap_err()
    ));

    // B's own activity starts its own log at 1 and shows only B's pipeline.
    b.create_pipeline(spec("q", hakiri_core::CursorKind::Monotonic), &operator())
        .await
        .unwrap();
    let events_b = b.events(0, Limit::MAX).await.unwrap();
    assert_eq!(events_b.len(), 1);
    assert_eq!(events_b[0].seq, 1);
    assert_eq!(events_b[0].pipeline, pid("q"));

    // A is untouched: its decision is still held, its log unchanged.
    assert_eq!(cx.held_decisions(&pid("p")).await.unwrap().len(), 1);
    assert_eq!(cx.events(0, Limit::MAX).await.unwrap(), events_a);
    assert!(cx.get_pipeline(&pid("p")).await.unwrap().paused.is_some());
    assert_eq!(cx.list_runs(&RunQuery::all()).await.unwrap().items.len(), 1);
}

/// Lease epochs and decision ids are counted per project: a project's first are 1 whatever
/// other projects did, so they reveal nothing of another project's activity.
pub async fn isolation_epochs_and_decision_ids_count_per_project(cx: &Ctx) {
    let held = |catalog: Arc<dyn Catalog>, lease: Lease, run: hakiri_core::RunId| async move {
        catalog
            .observe_schema(&lease, run, &stream("s"), id_schema(ColumnType::Integer))
            .await
            .unwrap();
        catalog
            .observe_schema(&lease, run, &stream("s"), id_schema(ColumnType::Boolean))
            .await
            .unwrap()
            .decision
            .expect("a breaking change records a decision")
    };
    let (lease, run) = cx.running("p").await;
    assert_eq!(lease.epoch.get(), 1, "a project's first epoch");
    let decision = held(cx.catalog.clone(), lease, run.id).await;
    assert_eq!(decision.id.get(), 1, "a project's first decision id");

    let b = cx.other_project().await;
    b.create_pipeline(spec("q", hakiri_core::CursorKind::Monotonic), &operator())
        .await
        .unwrap();
    let lease_b = lease_in(cx, &b, "q", "b").await;
    assert_eq!(lease_b.epoch.get(), 1, "epochs count per project");
    let run_b = b
        .begin_run(&lease_b, BeginRun::new(Trigger::Manual))
        .await
        .unwrap();
    let decision_b = held(b.clone(), lease_b, run_b.id).await;
    assert_eq!(decision_b.id.get(), 1, "decision ids count per project");

    // And the first project goes on from its own counters.
    cx.expire_leases().await;
    let again = cx
        .acquire(&pid("p"), &holder_id("w2"), cx.ttl())
        .await
        .unwrap();
    assert_eq!(again.epoch.get(), 2);
}

#[doc(hidden)]
#[macro_export]
macro_rules! __contract_isolation {
    ($harness:expr) => {
        $crate::__contract_checks!($harness; isolation:
            isolation_pipelines_invisible_across_projects,
            isolation_same_pipeline_id_is_independent,
            isolation_lease_cannot_write_in_another_project,
            isolation_runs_decisions_events_stay_in_their_project,
            isolation_epochs_and_decision_ids_count_per_project,
        );
    };
}
