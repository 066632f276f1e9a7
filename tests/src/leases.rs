//! Single writer and fencing (invariants 1, 2, 6, 9 in `docs/guarantees.md`).

use hakiri_core::{
    BeginRun, CatalogExt, CursorAdvance, Epoch, Error, EventKind, FenceReason, FinishRun, Limit,
    RunStatus, Trigger,
};
use serde_json::json;

use crate::{holder_id, operator, pid, reason, stream, value, Ctx};

/// The first acquisition of a pipeline gets a lease for the holder, expiring at now + ttl.
pub async fn leases_acquire_free_pipeline(cx: &Ctx) {
    cx.pipeline("p").await;
    let lease = cx.lease("p", "a").await;
    assert_eq!(lease.pipeline, pid("p"));
    assert_eq!(lease.holder, holder_id("a"));
    let status = cx.pipeline_statuses(None, Limit::DEFAULT).await.unwrap();
    let now = status.as_of;
    assert!(lease.expires_at > now, "a fresh lease is live");
    assert!(
        lease.expires_at.since(now) <= cx.ttl(),
        "expiry is at most now + ttl"
    );
}

/// A live lease blocks every other acquisition with `Leased` naming the holder.
pub async fn leases_live_lease_blocks_others(cx: &Ctx) {
    cx.pipeline("p").await;
    let lease = cx.lease("p", "a").await;
    let err = cx
        .acquire(&pid("p"), &holder_id("b"), cx.ttl())
        .await
        .unwrap_err();
    match err {
        Error::Leased { holder, epoch, .. } => {
            assert_eq!(holder, holder_id("a"));
            assert_eq!(epoch, lease.epoch);
        }
        other => panic!("expected Leased, got {other:?}"),
    }
}

/// Even the same holder cannot take a live lease twice: identity grants nothing, the epoch does.
pub async fn leases_same_holder_cannot_reacquire_live_lease(cx: &Ctx) {
    cx.pipeline("p").await;
    cx.lease("p", "a").await;
    let err = cx
        .acquire(&pid("p"), &holder_id("a"), cx.ttl())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Leased { .. }), "{err:?}");
}

/// Acquiring a pipeline that does not exist is `NotFound`.
pub async fn leases_acquire_missing_pipeline_is_not_found(cx: &Ctx) {
    let err = cx
        .acquire(&pid("ghost"), &holder_id("a"), cx.ttl())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "{err:?}");
}

/// After expiry another holder acquires with a strictly higher epoch.
pub async fn leases_expired_lease_can_be_taken_with_higher_epoch(cx: &Ctx) {
    cx.pipeline("p").await;
    let first = cx.lease("p", "a").await;
    cx.expire_leases().await;
    let second = cx.lease("p", "b").await;
    assert!(
        second.epoch > first.epoch,
        "{:?} > {:?}",
        second.epoch,
        first.epoch
    );
}

/// Epochs strictly increase over every acquisition of a pipeline.
pub async fn leases_epochs_strictly_increase(cx: &Ctx) {
    cx.pipeline("p").await;
    let mut last = Epoch(0);
    for i in 0..5 {
        let lease = cx.lease("p", &format!("h{i}")).await;
        assert!(lease.epoch > last);
        last = lease.epoch;
        cx.release(&lease).await.unwrap();
    }
}

/// Renewing a valid lease extends it and keeps the epoch.
pub async fn leases_renew_extends_expiry(cx: &Ctx) {
    cx.pipeline("p").await;
    let lease = cx.lease("p", "a").await;
    cx.harness.advance(cx.ttl() / 2).await;
    let renewed = cx.renew(&lease, cx.ttl()).await.unwrap();
    assert_eq!(renewed.epoch, lease.epoch);
    assert!(renewed.expires_at > lease.expires_at);
    // Past the original expiry, the renewed lease still writes.
    cx.harness
        .advance(cx.ttl() / 2 + std::time::Duration::from_millis(100))
        .await;
    cx.begin_run(&renewed, BeginRun::new(Trigger::Manual))
        .await
        .unwrap();
}

/// An expired lease cannot be renewed: `Fenced` with reason `Expired`.
pub async fn leases_renew_after_expiry_is_fenced(cx: &Ctx) {
    cx.pipeline("p").await;
    let lease = cx.lease("p", "a").await;
    cx.expire_leases().await;
    let err = cx.renew(&lease, cx.ttl()).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Fenced {
                reason: FenceReason::Expired { .. },
                ..
            }
        ),
        "{err:?}"
    );
}

/// `err` is `Fenced` for `lease`, because of `reason`.
fn assert_fenced(err: &Error, lease: &hakiri_core::Lease, reason: &FenceReason) {
    match err {
        Error::Fenced {
            pipeline,
            epoch,
            reason: actual,
        } => {
            assert_eq!(
                (pipeline, *epoch),
                (&lease.pipeline, lease.epoch),
                "{err:?}"
            );
            assert_eq!(actual, reason, "{err:?}");
        }
        other => panic!("expected Fenced ({reason:?}), got {other:?}"),
    }
}

/// Releasing frees the pipeline at once, and the released lease is fenced.
pub async fn leases_release_frees_pipeline_and_fences_holder(cx: &Ctx) {
    cx.pipeline("p").await;
    let lease = cx.lease("p", "a").await;
    cx.release(&lease).await.unwrap();
    let err = cx
        .begin_run(&lease, BeginRun::new(Trigger::Manual))
        .await
        .unwrap_err();
    assert_fenced(&err, &lease, &FenceReason::Released);
    let err = cx.release(&lease).await.unwrap_err();
    assert_fenced(&err, &lease, &FenceReason::Released);
    let next = cx.lease("p", "b").await;
    assert!(next.epoch > lease.epoch);
    let err = cx.release(&lease).await.unwrap_err();
    let current = next.epoch;
    assert_fenced(&err, &lease, &FenceReason::Superseded { current });
}

/// Releasing while a run is running abandons that run.
pub async fn leases_release_abandons_running_run(cx: &Ctx) {
    let (lease, run) = cx.running("p").await;
    cx.release(&lease).await.unwrap();
    assert_eq!(
        cx.get_run(run.id).await.unwrap().status,
        RunStatus::Abandoned
    );
}

/// A zombie (expired, not yet superseded) writes nothing: checkpoint, finish, schema all fenced.
pub async fn leases_zombie_after_expiry_is_fenced(cx: &Ctx) {
    let (lease, run) = cx.running("p").await;
    cx.advance_to(&lease, run.id, &stream("s"), value(json!(1)))
        .await
        .unwrap();
    cx.expire_leases().await;
    let err = cx
        .advance_to(&lease, run.id, &stream("s"), value(json!(2)))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Fenced {
                reason: FenceReason::Expired { .. },
                ..
            }
        ),
        "{err:?}"
    );
    let err = cx
        .finish_run(&lease, run.id, FinishRun::succeeded())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Fenced {
                reason: FenceReason::Expired { .. },
                ..
            }
        ),
        "{err:?}"
    );
    let cursor = cx
        .get_cursor(&pid("p"), &stream("s"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cursor.value, value(json!(1)), "the zombie changed nothing");
    assert_eq!(cx.get_run(run.id).await.unwrap().status, RunStatus::Running);
}

/// A zombie superseded by a newer acquisition is fenced and changes nothing; the new holder's
/// writes stand.
pub async fn leases_zombie_after_new_acquisition_is_fenced(cx: &Ctx) {
    let (old, old_run) = cx.running_of("p", hakiri_core::CursorKind::Opaque).await;
    cx.advance_to(&old, old_run.id, &stream("s"), value(json!({"token": "a"})))
        .await
        .unwrap();
    cx.expire_leases().await;
    let new = cx.lease("p", "b").await;
    let new_run = cx
        .begin_run(&new, BeginRun::new(Trigger::Manual))
        .await
        .unwrap();
    cx.advance_to(&new, new_run.id, &stream("s"), value(json!({"token": "b"})))
        .await
        .unwrap();
    let err = cx
        .advance(
            &old,
            old_run.id,
            &stream("s"),
            CursorAdvance::to(value(json!({"token": "zombie"}))),
        )
        .await
        .unwrap_err();
    match err {
        Error::Fenced {
            reason: FenceReason::Superseded { current },
            epoch,
            ..
        } => {
            assert_eq!(current, new.epoch);
            assert_eq!(epoch, old.epoch);
        }
        other => panic!("expected Fenced/Superseded, got {other:?}"),
    }
    let err = cx.renew(&old, cx.ttl()).await.unwrap_err();
    let current = new.epoch;
    assert_fenced(&err, &old, &FenceReason::Superseded { current });
    let cursor = cx
        .get_cursor(&pid("p"), &stream("s"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cursor.value, value(json!({"token": "b"})));
    assert_eq!(cursor.epoch, Some(new.epoch));
}

/// A new acquisition after expiry marks the older epoch's running run `Abandoned`.
pub async fn leases_new_epoch_abandons_old_running_run(cx: &Ctx) {
    let (_old, run) = cx.running("p").await;
    cx.expire_leases().await;
    let new = cx.lease("p", "b").await;
    let abandoned = cx.get_run(run.id).await.unwrap();
    assert_eq!(abandoned.status, RunStatus::Abandoned);
    assert!(abandoned.finished_at.is_some());
    // And the new holder may begin at once: the old run no longer counts as running.
    cx.begin_run(&new, BeginRun::new(Trigger::Retry))
        .await
        .unwrap();
}

/// An operator can force a live lease: the old holder is fenced and its run abandoned, audited.
pub async fn leases_force_acquire_fences_live_holder(cx: &Ctx) {
    let (old, run) = cx.running("p").await;
    let forced = cx
        .force_acquire(
            &pid("p"),
            &holder_id("operator-session"),
            cx.ttl(),
            &operator(),
            &reason("stuck run"),
        )
        .await
        .unwrap();
    assert!(forced.epoch > old.epoch);
    let err = cx
        .advance_to(&old, run.id, &stream("s"), value(json!(1)))
        .await
        .unwrap_err();
    let current = forced.epoch;
    assert_fenced(&err, &old, &FenceReason::Superseded { current });
    assert_eq!(
        cx.get_run(run.id).await.unwrap().status,
        RunStatus::Abandoned
    );
    let events = cx.events(0, Limit::MAX).await.unwrap();
    assert!(
        events.iter().any(
            |e| matches!(e.kind, EventKind::LeaseAcquired { forced: true, .. })
                && e.actor == operator()
        ),
        "the forced acquisition is audited with the operator"
    );
}

/// Lease expiry is judged by the catalog's clock: the lease is live until the clock passes it.
pub async fn leases_expiry_follows_catalog_clock(cx: &Ctx) {
    cx.pipeline("p").await;
    let lease = cx.lease("p", "a").await;
    cx.harness.advance(cx.ttl() / 4).await;
    assert!(matches!(
        cx.acquire(&pid("p"), &holder_id("b"), cx.ttl()).await,
        Err(Error::Leased { .. })
    ));
    cx.renew(&lease, cx.ttl()).await.unwrap();
}

#[doc(hidden)]
#[macro_export]
macro_rules! __contract_leases {
    ($harness:expr) => {
        $crate::__contract_checks!($harness; leases:
            leases_acquire_free_pipeline,
            leases_live_lease_blocks_others,
            leases_same_holder_cannot_reacquire_live_lease,
            leases_acquire_missing_pipeline_is_not_found,
            leases_expired_lease_can_be_taken_with_higher_epoch,
            leases_epochs_strictly_increase,
            leases_renew_extends_expiry,
            leases_renew_after_expiry_is_fenced,
            leases_release_frees_pipeline_and_fences_holder,
            leases_release_abandons_running_run,
            leases_zombie_after_expiry_is_fenced,
            leases_zombie_after_new_acquisition_is_fenced,
            leases_new_epoch_abandons_old_running_run,
            leases_force_acquire_fences_live_holder,
            leases_expiry_follows_catalog_clock,
        );
    };
}
