//! Reconciler behaviours the connectors depend on: how a rejected schema and a cancellation end,
//! and what the next tick does about them.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use hakiri_core::{
    Actor, Catalog, CursorKind, DecisionQuery, Error, PipelineId, PolicyAction, PutMode, RunStatus,
    SchemaPolicy, Verdict,
};
use hakiri_reconciler::{Action, TickFailure, TickOperation, WaitReason};
use serde_json::json;

/// A schema change the policy rejects fails the run permanently; it is not a cancellation the
/// planner would resume at once (re-reading the same change and recording a rejection on every
/// tick), so the pipeline waits for its next slot.
#[tokio::test]
async fn rejected_schema_fails_the_run_and_is_not_resumed_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (catalog, clock) = catalog();
    let config = json!({
        "input": dir.path().join("in"), "output": dir.path().join("out"), "cursor_field": "seq",
    });
    let created = pipeline(&*catalog, "strict", "jsonl", CursorKind::Monotonic, config).await;
    let strict = created.spec.clone().with_schema_policy(SchemaPolicy {
        breaking: PolicyAction::Reject,
        ..SchemaPolicy::default()
    });
    catalog
        .put_pipeline(
            strict,
            PutMode::Update {
                expected: created.generation,
            },
            &Actor::System,
        )
        .await
        .expect("update policy");
    write_jsonl(
        &dir.path().join("in/s/001.jsonl"),
        &[json!({"seq": 1, "v": "a"})],
    );
    let reconciler = reconciler(catalog.clone());
    reconcile(&reconciler).await;
    write_jsonl(
        &dir.path().join("in/s/002.jsonl"),
        &[json!({"seq": 2, "v": true})],
    );
    clock.advance(Duration::from_secs(3600));

    let end = only(reconcile(&reconciler).await);
    let stored = run(&*catalog, &end).await;
    let error = stored.error.expect("error");
    assert_eq!((stored.status, error.retryable), (RunStatus::Failed, false));
    assert!(error.message.contains("rejected"), "{}", error.message);
    let plan = reconciler.plan().await.expect("plan");
    assert!(
        matches!(
            plan.items[0].action,
            Action::Wait {
                reason: WaitReason::Schedule,
                ..
            }
        ),
        "{plan:?}"
    );
    let decisions = catalog
        .list_decisions(&DecisionQuery::default())
        .await
        .expect("decisions")
        .items;
    assert_eq!(decisions.len(), 1);
    assert_eq!(decisions[0].verdict, Verdict::Rejected);
}

/// After `cancel_runs` a reconciler dispatches nothing: a run would be born cancelled, end at
/// once, and be planned again on the next tick.
#[tokio::test]
async fn cancel_runs_stops_dispatching() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (catalog, _clock) = catalog();
    let config = json!({
        "input": dir.path().join("in"), "output": dir.path().join("out"), "cursor_field": "seq",
    });
    pipeline(&*catalog, "p", "jsonl", CursorKind::Monotonic, config).await;
    let reconciler = Arc::new(reconciler(catalog.clone()));
    reconciler.cancel_runs();
    let report = reconciler.tick().await.expect("tick");
    assert!(report.dispatched.is_empty(), "{report:?}");
    assert!(
        matches!(report.plan.items[0].action, Action::Dispatch { .. }),
        "the pipeline is due; only the reconciler is stopping"
    );
    let runs = catalog
        .list_runs(&hakiri_core::RunQuery::all().pipeline(PipelineId::new("p").unwrap()))
        .await
        .expect("runs");
    assert!(runs.items.is_empty());
}

/// A dispatch the catalog fails is reported in the tick's `failed` (pipeline, step, error), not
/// only logged, so that a one-shot caller cannot mistake it for "nothing was due"; the lease is
/// given back and the next tick dispatches the pipeline once the catalog works again.
#[tokio::test]
async fn a_dispatch_the_catalog_fails_is_reported_and_retried_next_tick() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (inner, _clock) = catalog();
    let faulty = Faulty::new(inner);
    let catalog: Arc<dyn Catalog> = Arc::new(faulty.clone());
    let config = json!({
        "input": dir.path().join("in"), "output": dir.path().join("out"), "cursor_field": "seq",
    });
    pipeline(&*catalog, "p", "jsonl", CursorKind::Monotonic, config).await;
    write_jsonl(&dir.path().join("in/s/001.jsonl"), &[json!({"seq": 1})]);
    let reconciler = reconciler(catalog.clone());

    faulty.fail_begin_runs(Some(Error::Unavailable(
        "injected: connection reset".into(),
    )));
    let mut failed: Vec<TickFailure> = Vec::new();
    let mut ends = Vec::new();
    let plan = reconciler
        .run_until_idle(5, |report, e| {
            failed.extend(report.failed.iter().cloned());
            ends.extend_from_slice(e);
        })
        .await
        .expect("the snapshot is readable");
    assert!(ends.is_empty(), "{ends:?}");
    assert_eq!(failed.len(), 1, "{failed:?}");
    let failure = &failed[0];
    assert_eq!(failure.pipeline, PipelineId::new("p").expect("id"));
    assert_eq!(failure.operation, TickOperation::Dispatch);
    assert!(
        matches!(&failure.error, Error::Unavailable(m) if m.contains("injected")),
        "{failure:?}"
    );
    assert_eq!(
        failure.to_string(),
        "could not dispatch pipeline p: catalog unavailable: injected: connection reset"
    );
    assert!(
        matches!(plan.items[0].action, Action::Dispatch { .. }),
        "still due: {plan:?}"
    );

    faulty.fail_begin_runs(None);
    let end = only(reconcile(&reconciler).await);
    assert_eq!(end.status, Some(RunStatus::Succeeded), "{end:?}");
}
