//! Pipeline lifecycle: creation, generations (compare-and-set), listing, pause/resume, delete
//! (invariant 3 in `docs/guarantees.md`).

use std::time::Duration;

use hakiri_core::{
    BeginRun, CatalogExt, ConnectorConfig, CursorKind, Entity, Error, EventKind, FinishRun,
    Generation, Limit, PauseChange, PipelineSpec, PutMode, RunQuery, Schedule, Trigger,
};
use serde_json::json;

use crate::{holder_id, operator, pid, reason, spec, stream, value, Ctx};

/// A spec that differs from [`spec`]`(id, Monotonic)` in schedule and config.
fn changed_spec(id: &str, table: &str) -> PipelineSpec {
    spec(id, CursorKind::Monotonic)
        .with_schedule(Schedule::Interval(Duration::from_secs(60)))
        .with_config(ConnectorConfig::new(json!({ "table": table })).expect("valid config"))
}

fn assert_pipeline_not_found(err: &Error, id: &str) {
    match err {
        Error::NotFound(Entity::Pipeline { pipeline }) => assert_eq!(*pipeline, pid(id)),
        other => panic!("expected NotFound(pipeline {id}), got {other:?}"),
    }
}

/// Creating a pipeline stores its spec at generation 1, unpaused, and `get` returns it.
pub async fn pipelines_create_starts_at_generation_one(cx: &Ctx) {
    let wanted = changed_spec("p", "orders");
    let created = cx
        .create_pipeline(wanted.clone(), &operator())
        .await
        .unwrap();
    assert_eq!(created.generation, Generation(1));
    assert_eq!(created.spec, wanted);
    assert_eq!(created.paused, None);
    assert!(created.updated_at >= created.created_at);
    assert_eq!(cx.get_pipeline(&pid("p")).await.unwrap(), created);
}

/// Creating an id that is taken fails with `AlreadyExists` and leaves the stored pipeline alone.
pub async fn pipelines_create_twice_is_already_exists(cx: &Ctx) {
    let first = cx.pipeline("p").await;
    let err = cx
        .create_pipeline(changed_spec("p", "other"), &operator())
        .await
        .unwrap_err();
    match &err {
        Error::AlreadyExists(Entity::Pipeline { pipeline }) => assert_eq!(*pipeline, pid("p")),
        other => panic!("expected AlreadyExists(pipeline p), got {other:?}"),
    }
    assert_eq!(cx.get_pipeline(&pid("p")).await.unwrap(), first);
}

/// Reading a pipeline that does not exist is `NotFound`.
pub async fn pipelines_get_missing_is_not_found(cx: &Ctx) {
    cx.pipeline("p").await;
    let err = cx.get_pipeline(&pid("ghost")).await.unwrap_err();
    assert_pipeline_not_found(&err, "ghost");
}

/// An update carrying the stored generation stores the new spec and bumps the generation by one.
pub async fn pipelines_update_with_matching_generation_bumps_it(cx: &Ctx) {
    let created = cx.pipeline("p").await;
    let v2 = changed_spec("p", "orders");
    let updated = cx
        .put_pipeline(
            v2.clone(),
            PutMode::Update {
                expected: Generation(1),
            },
            &operator(),
        )
        .await
        .unwrap();
    assert_eq!(updated.generation, Generation(2));
    assert_eq!(updated.spec, v2);
    assert_eq!(
        updated.created_at, created.created_at,
        "creation time is kept"
    );
    assert!(updated.updated_at >= created.updated_at);
    assert_eq!(cx.get_pipeline(&pid("p")).await.unwrap(), updated);

    let v3 = changed_spec("p", "customers");
    let again = cx
        .put_pipeline(
            v3.clone(),
            PutMode::Update {
                expected: Generation(2),
            },
            &operator(),
        )
        .await
        .unwrap();
    assert_eq!(again.generation, Generation(3));
    assert_eq!(cx.get_pipeline(&pid("p")).await.unwrap().spec, v3);
}

/// An update carrying a stale generation is a retryable `Conflict` and changes nothing.
pub async fn pipelines_update_with_stale_generation_conflicts(cx: &Ctx) {
    cx.pipeline("p").await;
    let current = cx
        .put_pipeline(
            changed_spec("p", "orders"),
            PutMode::Update {
                expected: Generation(1),
            },
            &operator(),
        )
        .await
        .unwrap();
    let events_before = cx.events(0, Limit::MAX).await.unwrap();
    let err = cx
        .put_pipeline(
            changed_spec("p", "lost-update"),
            PutMode::Update {
                expected: Generation(1),
            },
            &operator(),
        )
        .await
        .unwrap_err();
    match &err {
        Error::Conflict {
            entity: Entity::Pipeline { pipeline },
            ..
        } => {
            assert_eq!(*pipeline, pid("p"));
        }
        other => panic!("expected Conflict on pipeline p, got {other:?}"),
    }
    assert!(err.is_retryable(), "a generation conflict is retryable");
    assert_eq!(cx.get_pipeline(&pid("p")).await.unwrap(), current);
    assert_eq!(cx.events(0, Limit::MAX).await.unwrap(), events_before);
}

/// An update with an identical spec changes nothing: same generation, no event.
pub async fn pipelines_update_with_identical_spec_changes_nothing(cx: &Ctx) {
    let created = cx
        .create_pipeline(changed_spec("p", "orders"), &operator())
        .await
        .unwrap();
    let events_before = cx.events(0, Limit::MAX).await.unwrap();
    let same = cx
        .put_pipeline(
            changed_spec("p", "orders"),
            PutMode::Update {
                expected: Generation(1),
            },
            &operator(),
        )
        .await
        .unwrap();
    assert_eq!(same, created, "the stored pipeline is returned unchanged");
    assert_eq!(cx.get_pipeline(&pid("p")).await.unwrap(), created);
    assert_eq!(cx.events(0, Limit::MAX).await.unwrap(), events_before);
}

/// Updating a pipeline that does not exist is `NotFound` and creates nothing.
pub async fn pipelines_update_missing_is_not_found(cx: &Ctx) {
    let err = cx
        .put_pipeline(
            changed_spec("ghost", "orders"),
            PutMode::Update {
                expected: Generation(1),
            },
            &operator(),
        )
        .await
        .unwrap_err();
    assert_pipeline_not_found(&err, "ghost");
    let err = cx.get_pipeline(&pid("ghost")).await.unwrap_err();
    assert_pipeline_not_found(&err, "ghost");
    assert!(cx
        .list_pipelines(None, Limit::MAX)
        .await
        .unwrap()
        .items
        .is_empty());
}

/// `list_pipelines` pages in id order; following `next` visits every pipeline exactly once.
pub async fn pipelines_list_pages_in_id_order(cx: &Ctx) {
    for id in ["c", "a", "e", "b", "d"] {
        cx.pipeline(id).await;
    }
    let two = Limit::new(2).unwrap();
    let ids = |page: &hakiri_core::Page<hakiri_core::Pipeline, hakiri_core::PipelineId>| {
        page.items
            .iter()
            .map(|p| p.id().clone())
            .collect::<Vec<_>>()
    };

    let first = cx.list_pipelines(None, two).await.unwrap();
    assert_eq!(ids(&first), vec![pid("a"), pid("b")]);
    assert_eq!(first.next, Some(pid("b")));
    let second = cx.list_pipelines(first.next.as_ref(), two).await.unwrap();
    assert_eq!(ids(&second), vec![pid("c"), pid("d")]);
    assert_eq!(second.next, Some(pid("d")));
    let third = cx.list_pipelines(second.next.as_ref(), two).await.unwrap();
    assert_eq!(ids(&third), vec![pid("e")]);
    assert_eq!(third.next, None, "the last page has no next");

    let all = cx.list_pipelines(None, Limit::MAX).await.unwrap();
    assert_eq!(ids(&all), ["a", "b", "c", "d", "e"].map(pid).to_vec());
    assert_eq!(all.next, None);
    // `after` need not be a stored id: listing resumes at the next id in order.
    let from_bb = cx.list_pipelines(Some(&pid("bb")), two).await.unwrap();
    assert_eq!(ids(&from_bb), vec![pid("c"), pid("d")]);
    let past_end = cx.list_pipelines(Some(&pid("e")), two).await.unwrap();
    assert!(past_end.items.is_empty() && past_end.next.is_none());
}

/// Pause records who and why, pausing again changes nothing, resume clears it; no generation bump.
pub async fn pipelines_pause_resume_round_trip(cx: &Ctx) {
    cx.pipeline("p").await;
    let paused = cx
        .set_paused(
            &pid("p"),
            PauseChange::Pause(reason("maintenance")),
            &operator(),
        )
        .await
        .unwrap();
    let pause = paused.paused.clone().expect("paused");
    assert_eq!(pause.by, operator());
    assert_eq!(pause.reason, reason("maintenance"));
    assert_eq!(
        paused.generation,
        Generation(1),
        "pausing is not a spec change"
    );
    assert_eq!(cx.get_pipeline(&pid("p")).await.unwrap(), paused);

    let events_before = cx.events(0, Limit::MAX).await.unwrap();
    let again = cx
        .set_paused(
            &pid("p"),
            PauseChange::Pause(reason("another reason")),
            &operator(),
        )
        .await
        .unwrap();
    assert_eq!(again, paused, "pausing a paused pipeline changes nothing");
    assert_eq!(cx.get_pipeline(&pid("p")).await.unwrap(), paused);
    assert_eq!(cx.events(0, Limit::MAX).await.unwrap(), events_before);

    let resumed = cx
        .set_paused(&pid("p"), PauseChange::Resume, &operator())
        .await
        .unwrap();
    assert_eq!(resumed.paused, None);
    assert_eq!(resumed.generation, Generation(1));
    assert_eq!(cx.get_pipeline(&pid("p")).await.unwrap(), resumed);
    let idle = cx
        .set_paused(&pid("p"), PauseChange::Resume, &operator())
        .await
        .unwrap();
    assert_eq!(idle, resumed, "resuming a running pipeline changes nothing");
}

/// Pausing or resuming a pipeline that does not exist is `NotFound`.
pub async fn pipelines_set_paused_missing_is_not_found(cx: &Ctx) {
    let err = cx
        .set_paused(&pid("ghost"), PauseChange::Pause(reason("x")), &operator())
        .await
        .unwrap_err();
    assert_pipeline_not_found(&err, "ghost");
    let err = cx
        .set_paused(&pid("ghost"), PauseChange::Resume, &operator())
        .await
        .unwrap_err();
    assert_pipeline_not_found(&err, "ghost");
}

/// Delete removes the pipeline and its state; re-creating starts at generation 1 with empty
/// state, epochs keep increasing and the old lease stays fenced; the old events stay.
pub async fn pipelines_delete_then_recreate_starts_fresh(cx: &Ctx) {
    let (old, run) = cx.running("p").await;
    cx.advance_to(&old, run.id, &stream("s"), value(json!(5)))
        .await
        .unwrap();
    cx.finish_run(&old, run.id, FinishRun::succeeded())
        .await
        .unwrap();
    cx.release(&old).await.unwrap();

    cx.delete_pipeline(&pid("p"), Generation(1), &operator())
        .await
        .unwrap();
    assert_pipeline_not_found(&cx.get_pipeline(&pid("p")).await.unwrap_err(), "p");
    assert_pipeline_not_found(
        &cx.get_cursor(&pid("p"), &stream("s")).await.unwrap_err(),
        "p",
    );
    assert!(
        matches!(cx.get_run(run.id).await, Err(Error::NotFound(_))),
        "the pipeline's runs are deleted with it"
    );
    let runs = cx
        .list_runs(&RunQuery::all().pipeline(pid("p")))
        .await
        .unwrap();
    assert!(runs.items.is_empty());
    assert!(cx
        .list_pipelines(None, Limit::MAX)
        .await
        .unwrap()
        .items
        .is_empty());

    let recreated = cx.pipeline("p").await;
    assert_eq!(recreated.generation, Generation(1));
    assert_eq!(recreated.paused, None);
    assert_eq!(cx.get_cursor(&pid("p"), &stream("s")).await.unwrap(), None);
    assert!(cx.list_cursors(&pid("p")).await.unwrap().is_empty());
    let runs = cx
        .list_runs(&RunQuery::all().pipeline(pid("p")))
        .await
        .unwrap();
    assert!(runs.items.is_empty());

    let err = cx
        .begin_run(&old, BeginRun::new(Trigger::Manual))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Fenced { .. }), "{err:?}");
    let new = cx.lease("p", "b").await;
    assert!(
        new.epoch > old.epoch,
        "epochs keep increasing across re-creation"
    );
    let err = cx
        .begin_run(&old, BeginRun::new(Trigger::Manual))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Fenced { .. }),
        "the old lease stays fenced: {err:?}"
    );
    let run = cx
        .begin_run(&new, BeginRun::new(Trigger::Manual))
        .await
        .unwrap();
    // The new incarnation's cursor starts again at version 1, its history its own.
    let cursor = cx
        .advance_to(&new, run.id, &stream("s"), value(json!(1)))
        .await
        .unwrap();
    assert_eq!(cursor.version, 1);
    let history = crate::cursors::history(cx, "s").await;
    let values: Vec<_> = history.iter().map(|e| (e.version, &e.value)).collect();
    assert_eq!(values, [(1, &value(json!(1)))]);

    let events = cx.events(0, Limit::MAX).await.unwrap();
    let created = events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::PipelineCreated { .. }))
        .count();
    assert_eq!(created, 2, "the deleted pipeline's events stay");
    assert!(events
        .iter()
        .any(|e| e.kind == EventKind::PipelineDeleted && e.actor == operator()));
}

/// Deleting with a stale generation is a `Conflict` and deletes nothing.
pub async fn pipelines_delete_with_stale_generation_conflicts(cx: &Ctx) {
    cx.pipeline("p").await;
    let current = cx
        .put_pipeline(
            changed_spec("p", "orders"),
            PutMode::Update {
                expected: Generation(1),
            },
            &operator(),
        )
        .await
        .unwrap();
    let err = cx
        .delete_pipeline(&pid("p"), Generation(1), &operator())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Conflict { .. }), "{err:?}");
    assert!(err.is_retryable());
    assert_eq!(cx.get_pipeline(&pid("p")).await.unwrap(), current);
}

/// Deleting a pipeline under a live lease is `Leased` naming the holder; after expiry it succeeds.
pub async fn pipelines_delete_under_live_lease_is_leased(cx: &Ctx) {
    let created = cx.pipeline("p").await;
    let lease = cx.lease("p", "a").await;
    let err = cx
        .delete_pipeline(&pid("p"), Generation(1), &operator())
        .await
        .unwrap_err();
    match err {
        Error::Leased { holder, epoch, .. } => {
            assert_eq!(holder, holder_id("a"));
            assert_eq!(epoch, lease.epoch);
        }
        other => panic!("expected Leased, got {other:?}"),
    }
    assert_eq!(cx.get_pipeline(&pid("p")).await.unwrap(), created);
    cx.begin_run(&lease, BeginRun::new(Trigger::Manual))
        .await
        .expect("the lease still works");

    cx.expire_leases().await;
    cx.delete_pipeline(&pid("p"), Generation(1), &operator())
        .await
        .expect("an expired lease does not block a delete");
    assert_pipeline_not_found(&cx.get_pipeline(&pid("p")).await.unwrap_err(), "p");
}

/// Deleting a pipeline that does not exist is `NotFound`.
pub async fn pipelines_delete_missing_is_not_found(cx: &Ctx) {
    let err = cx
        .delete_pipeline(&pid("ghost"), Generation(1), &operator())
        .await
        .unwrap_err();
    assert_pipeline_not_found(&err, "ghost");
}

/// A paused pipeline cannot begin a run (`FailedPrecondition`); once resumed it can.
pub async fn pipelines_begin_run_on_paused_pipeline_fails(cx: &Ctx) {
    cx.pipeline("p").await;
    cx.set_paused(
        &pid("p"),
        PauseChange::Pause(reason("maintenance")),
        &operator(),
    )
    .await
    .unwrap();
    let lease = cx.lease("p", "a").await;
    let err = cx
        .begin_run(&lease, BeginRun::new(Trigger::Manual))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::FailedPrecondition(_)), "{err:?}");
    let runs = cx
        .list_runs(&RunQuery::all().pipeline(pid("p")))
        .await
        .unwrap();
    assert!(runs.items.is_empty(), "no run was recorded");

    cx.set_paused(&pid("p"), PauseChange::Resume, &operator())
        .await
        .unwrap();
    cx.begin_run(&lease, BeginRun::new(Trigger::Manual))
        .await
        .unwrap();
}

/// An operator's run request is recorded and audited, asking again changes nothing, and the
/// first run that does what it asks consumes it (a backfill run any request, a manual run a
/// manual one); other triggers cannot be requested.
pub async fn pipelines_request_run_until_a_requested_run_begins(cx: &Ctx) {
    cx.pipeline("p").await;
    let requested = cx
        .request_run(&pid("p"), Trigger::Manual, &operator())
        .await
        .unwrap();
    let request = requested
        .requested
        .clone()
        .expect("the request is recorded");
    assert_eq!((request.trigger, request.by), (Trigger::Manual, operator()));
    let events = cx.events(0, Limit::MAX).await.unwrap().len();
    let again = cx
        .request_run(&pid("p"), Trigger::Manual, &operator())
        .await
        .unwrap();
    assert_eq!(again, requested, "asking again changes nothing");
    assert_eq!(
        cx.events(0, Limit::MAX).await.unwrap().len(),
        events,
        "and appends no event"
    );
    assert!(matches!(
        cx.request_run(&pid("p"), Trigger::Schedule, &operator())
            .await,
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        cx.request_run(&pid("ghost"), Trigger::Manual, &operator())
            .await,
        Err(Error::NotFound(_))
    ));
    // The pending request (requested now, if any), the trigger of a run that then begins and
    // finishes, and the request left after it.
    let lease = cx.lease("p", "w").await;
    for (ask, trigger, left, why) in [
        (
            None,
            Trigger::Schedule,
            Some(Trigger::Manual),
            "a scheduled run leaves the request",
        ),
        (None, Trigger::Manual, None, "the manual run consumed it"),
        (
            Some(Trigger::Backfill),
            Trigger::Manual,
            Some(Trigger::Backfill),
            "a manual run leaves a backfill request: it does not read from the start",
        ),
        (
            None,
            Trigger::Backfill,
            None,
            "the backfill run consumed it",
        ),
        (
            Some(Trigger::Manual),
            Trigger::Backfill,
            None,
            "a backfill run answers a manual request too: it runs now",
        ),
    ] {
        if let Some(ask) = ask {
            cx.request_run(&pid("p"), ask, &operator()).await.unwrap();
        }
        let run = cx.begin_run(&lease, BeginRun::new(trigger)).await.unwrap();
        let pending = cx.get_pipeline(&pid("p")).await.unwrap().requested;
        assert_eq!(pending.map(|r| r.trigger), left, "{why}");
        cx.finish_run(&lease, run.id, FinishRun::succeeded())
            .await
            .unwrap();
    }
    let disabled = spec("d", CursorKind::Monotonic).with_enabled(false);
    cx.put_pipeline(disabled, PutMode::Create, &operator())
        .await
        .unwrap();
    assert!(matches!(
        cx.request_run(&pid("d"), Trigger::Backfill, &operator())
            .await,
        Err(Error::FailedPrecondition(_))
    ));
}

#[doc(hidden)]
#[macro_export]
macro_rules! __contract_pipelines {
    ($harness:expr) => {
        $crate::__contract_checks!($harness; pipelines:
            pipelines_create_starts_at_generation_one,
            pipelines_create_twice_is_already_exists,
            pipelines_get_missing_is_not_found,
            pipelines_update_with_matching_generation_bumps_it,
            pipelines_update_with_stale_generation_conflicts,
            pipelines_update_with_identical_spec_changes_nothing,
            pipelines_update_missing_is_not_found,
            pipelines_list_pages_in_id_order,
            pipelines_pause_resume_round_trip,
            pipelines_set_paused_missing_is_not_found,
            pipelines_delete_then_recreate_starts_fresh,
            pipelines_delete_with_stale_generation_conflicts,
            pipelines_delete_under_live_lease_is_leased,
            pipelines_delete_missing_is_not_found,
            pipelines_begin_run_on_paused_pipeline_fails,
            pipelines_request_run_until_a_requested_run_begins,
        );
    };
}
