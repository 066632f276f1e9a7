//! Leases: acquire (abandoning a running run), renew, release.

use super::*;

impl<E: Exec> Store<'_, E> {
    pub(super) fn acquire(
        &mut self,
        id: &PipelineId,
        holder: &HolderId,
        ttl: Duration,
        forced_by: Option<(&Actor, &Reason)>,
    ) -> Result<Lease> {
        let hot = self.hot(id)?.ok_or_else(|| Error::pipeline_not_found(id))?;
        // Drawn before the rule runs; a refusal rolls the whole unit back, counter included.
        let next_epoch = Epoch(self.counter("epoch")?);
        let lease = plan_acquire(
            hot.lease.as_ref(),
            id,
            holder,
            ttl,
            self.now,
            next_epoch,
            forced_by.is_some(),
        )?;
        self.abandon_running(id, hot.running)?;
        self.exec.execute(
            "UPDATE pipelines SET lease_epoch = ?, lease_holder = ?, lease_expires_at = ? WHERE id = ?",
            params![lease.epoch.get(), holder.as_str(), lease.expires_at.as_millis(), id.as_str()],
        )?;
        let actor = forced_by.map_or_else(|| Actor::Holder(holder.clone()), |(by, _)| by.clone());
        let kind = EventKind::LeaseAcquired {
            holder: holder.clone(),
            epoch: lease.epoch,
            forced: forced_by.is_some(),
        };
        self.emit(&actor, id, &kind)?;
        Ok(lease)
    }

    /// Marks the pipeline's running run (of an epoch that just lost the lease) `Abandoned`.
    pub(super) fn abandon_running(
        &mut self,
        id: &PipelineId,
        running: Option<RunId>,
    ) -> Result<()> {
        let Some(run) = running else {
            return Ok(());
        };
        let run = self.get_run(run)?;
        let write = abandon(run, self.cursor_values(id)?, self.now);
        self.end_run(id, &write.run)?;
        self.emit(&write.event.0, id, &write.event.1)
    }

    pub(super) fn renew(&mut self, lease: &Lease, ttl: Duration) -> Result<Lease> {
        let hot = self.hot(&lease.pipeline)?;
        let renewed = plan_renew(
            hot.as_ref().and_then(|h| h.lease.as_ref()),
            lease,
            ttl,
            self.now,
        )?;
        self.exec.execute(
            "UPDATE pipelines SET lease_expires_at = ? WHERE id = ?",
            params![renewed.expires_at.as_millis(), lease.pipeline.as_str()],
        )?;
        Ok(renewed)
    }

    pub(super) fn release(&mut self, lease: &Lease) -> Result<()> {
        let hot = self.fenced(lease)?;
        self.abandon_running(&lease.pipeline, hot.running)?;
        self.exec.execute(
            "UPDATE pipelines SET lease_holder = NULL WHERE id = ?",
            params![lease.pipeline.as_str()],
        )?;
        let kind = EventKind::LeaseReleased { epoch: lease.epoch };
        self.emit(&Actor::Holder(lease.holder.clone()), &lease.pipeline, &kind)
    }
}
