//! Leases: acquire (or take over), renew, release — and the abandon of a running run that a
//! lost lease leaves behind.

use std::sync::LazyLock;
use std::time::Duration;

use hakiri_core::lease::{plan_acquire, plan_renew};
use hakiri_core::run::abandon;
use hakiri_core::{
    Actor, Epoch, Error, EventKind, HolderId, Lease, PipelineId, Reason, Result, Run, RunId,
    Timestamp,
};
use sqlx::FromRow;

use super::rows::{to_i64, values, CursorTriples, LeaseColumns};
use super::runs::CURSORS_OF_PIPELINE;
use super::{Tx, NOW_MS};
use crate::error::db;
use crate::PostgresCatalog;

/// A pipeline's lease and the database clock, without locking: most acquisitions in a race lose,
/// and are answered from this read.
///
/// | param | meaning |
/// |---|---|
/// | `$1` | project |
/// | `$2` | pipeline |
static READ_LEASE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {NOW_MS} AS now, lease_epoch, lease_holder, lease_expires_at \
         FROM pipelines WHERE project = $1 AND id = $2"
    )
});

/// [`READ_LEASE`]'s row.
#[derive(FromRow)]
struct LeaseRow {
    now: i64,
    #[sqlx(flatten)]
    lease: LeaseColumns,
}

/// Records a new lease, clearing the running run (abandoned by the same transaction).
///
/// | param | meaning |
/// |---|---|
/// | `$1` | project |
/// | `$2` | pipeline |
/// | `$3` | epoch |
/// | `$4` | holder |
/// | `$5` | expiry (ms) |
const TAKE_LEASE: &str = "UPDATE pipelines SET lease_epoch = $3, lease_holder = $4, \
     lease_expires_at = $5, running_run = NULL WHERE project = $1 AND id = $2";

/// A running run's record and its pipeline's cursors, for its abandon.
///
/// | param | meaning |
/// |---|---|
/// | `$1` | project |
/// | `$2` | pipeline |
/// | `$3` | run |
static READ_RUNNING: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT (SELECT body FROM runs WHERE project = $1 AND id = $3) AS body, \
           {CURSORS_OF_PIPELINE} AS cursors"
    )
});

/// [`READ_RUNNING`]'s row.
#[derive(FromRow)]
struct RunningRow {
    #[sqlx(json(nullable))]
    body: Option<Run>,
    #[sqlx(json(nullable))]
    cursors: Option<CursorTriples>,
}

impl PostgresCatalog {
    /// Acquires a lease, or takes it over when `forced_by` says who and why
    /// ([`Catalog::acquire`](hakiri_core::Catalog::acquire),
    /// [`Catalog::force_acquire`](hakiri_core::Catalog::force_acquire)).
    pub(crate) async fn op_acquire(
        &self,
        id: &PipelineId,
        holder: &HolderId,
        ttl: Duration,
        forced_by: Option<(&Actor, &Reason)>,
    ) -> Result<Lease> {
        if forced_by.is_none() {
            // Most acquisitions in a race lose. Answer them from a plain read, without taking the
            // row lock the holder's own writes need; the winner re-checks under the lock.
            let row: LeaseRow = sqlx::query_as(READ_LEASE.as_str())
                .bind(self.project_str())
                .bind(id.as_str())
                .fetch_optional(&self.pool)
                .await
                .map_err(db)?
                .ok_or_else(|| Error::pipeline_not_found(id))?;
            let now = Timestamp::from_millis(row.now);
            let lease = row.lease.state()?;
            plan_acquire(lease.as_ref(), id, holder, ttl, now, Epoch(u64::MAX), false)?;
        }
        let (mut tx, row) = self.begin_locked(id).await?;
        let row = row.ok_or_else(|| Error::pipeline_not_found(id))?;
        // Drawn only now, under the row lock: an epoch drawn before it could be lower than the
        // one a concurrent acquisition commits first.
        let next_epoch = Epoch(self.draw(&mut tx, "epoch").await?);
        let lease = plan_acquire(
            row.lease.as_ref(),
            id,
            holder,
            ttl,
            tx.now,
            next_epoch,
            forced_by.is_some(),
        )?;
        self.abandon_running(&mut tx, id, row.running).await?;
        sqlx::query(TAKE_LEASE)
            .bind(self.project_str())
            .bind(id.as_str())
            .bind(to_i64(lease.epoch.get())?)
            .bind(holder.as_str())
            .bind(lease.expires_at.as_millis())
            .execute(&mut *tx.inner)
            .await
            .map_err(db)?;
        let actor = forced_by.map_or_else(|| Actor::Holder(holder.clone()), |(by, _)| by.clone());
        let kind = EventKind::LeaseAcquired {
            holder: holder.clone(),
            epoch: lease.epoch,
            forced: forced_by.is_some(),
        };
        tx.emit(&actor, id, kind);
        tx.commit(self.project_str()).await?;
        self.forget(id);
        Ok(lease)
    }

    /// Marks the pipeline's running run (of an epoch that just lost the lease) `Abandoned`.
    async fn abandon_running(
        &self,
        tx: &mut Tx,
        id: &PipelineId,
        running: Option<RunId>,
    ) -> Result<()> {
        let Some(run_id) = running else {
            return Ok(());
        };
        let row: RunningRow = sqlx::query_as(READ_RUNNING.as_str())
            .bind(self.project_str())
            .bind(id.as_str())
            .bind(*run_id.as_uuid())
            .fetch_one(&mut *tx.inner)
            .await
            .map_err(db)?;
        let run = row
            .body
            .ok_or_else(|| Error::Backend(format!("running run {run_id} is missing")))?;
        let cursors = values(&row.cursors.unwrap_or_default());
        let write = abandon(run, cursors, tx.now);
        self.save_run(tx, &write.run).await?;
        tx.emit(&write.event.0, id, write.event.1);
        Ok(())
    }

    /// Extends a lease ([`Catalog::renew`](hakiri_core::Catalog::renew)).
    pub(crate) async fn op_renew(&self, lease: &Lease, ttl: Duration) -> Result<Lease> {
        let (mut tx, row) = self.begin_locked(&lease.pipeline).await?;
        let renewed = plan_renew(
            row.as_ref().and_then(|r| r.lease.as_ref()),
            lease,
            ttl,
            tx.now,
        )?;
        sqlx::query("UPDATE pipelines SET lease_expires_at = $3 WHERE project = $1 AND id = $2")
            .bind(self.project_str())
            .bind(lease.pipeline.as_str())
            .bind(renewed.expires_at.as_millis())
            .execute(&mut *tx.inner)
            .await
            .map_err(db)?;
        tx.commit(self.project_str()).await?;
        Ok(renewed)
    }

    /// Releases a lease, abandoning its running run
    /// ([`Catalog::release`](hakiri_core::Catalog::release)).
    pub(crate) async fn op_release(&self, lease: &Lease) -> Result<()> {
        let (mut tx, row) = self.begin_locked(&lease.pipeline).await?;
        let row = Self::fenced(row, lease, tx.now)?;
        self.abandon_running(&mut tx, &lease.pipeline, row.running)
            .await?;
        sqlx::query(
            "UPDATE pipelines SET lease_holder = NULL, running_run = NULL \
             WHERE project = $1 AND id = $2",
        )
        .bind(self.project_str())
        .bind(lease.pipeline.as_str())
        .execute(&mut *tx.inner)
        .await
        .map_err(db)?;
        let kind = EventKind::LeaseReleased { epoch: lease.epoch };
        tx.emit(&Actor::Holder(lease.holder.clone()), &lease.pipeline, kind);
        tx.commit(self.project_str()).await?;
        self.forget(&lease.pipeline);
        Ok(())
    }
}
