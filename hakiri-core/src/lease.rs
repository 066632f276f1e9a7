//! Writer leases and fencing: the single-writer-per-pipeline invariant (ADR 0004).
//!
//! Every backend stores one [`LeaseState`] per pipeline and runs these rules inside the same
//! atomic step as the write they guard.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, FenceReason, Result};
use crate::ids::{Epoch, HolderId, PipelineId};
use crate::time::Timestamp;

/// Shortest lease a holder may ask for.
pub const MIN_TTL: Duration = Duration::from_millis(100);
/// Longest lease a holder may ask for: a crashed holder blocks its pipeline this long at most.
pub const MAX_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// Proof of holding a pipeline's writer lease; every lease-checked write carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The pipeline.
    pub pipeline: PipelineId,
    /// Who holds it.
    pub holder: HolderId,
    /// The fencing token.
    pub epoch: Epoch,
    /// When it expires unless renewed (catalog clock).
    pub expires_at: Timestamp,
}

/// A pipeline's stored lease: the last epoch handed out and whether it is still held.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseState {
    /// The last epoch handed out for this pipeline.
    pub epoch: Epoch,
    /// Who holds it; `None` once released.
    pub holder: Option<HolderId>,
    /// When it expires.
    pub expires_at: Timestamp,
}

impl LeaseState {
    /// Whether someone holds this lease at `now`.
    pub fn is_live(&self, now: Timestamp) -> bool {
        self.holder.is_some() && now < self.expires_at
    }

    /// The lease as its holder sees it, while held.
    pub fn to_lease(&self, pipeline: &PipelineId) -> Option<Lease> {
        self.holder.as_ref().map(|holder| Lease {
            pipeline: pipeline.clone(),
            holder: holder.clone(),
            epoch: self.epoch,
            expires_at: self.expires_at,
        })
    }

    /// Fails with `Leased` while somebody holds this lease.
    ///
    /// # Errors
    /// [`Error::Leased`] naming the holder.
    pub fn ensure_free(&self, pipeline: &PipelineId, now: Timestamp) -> Result<()> {
        match &self.holder {
            Some(holder) if now < self.expires_at => Err(Error::Leased {
                pipeline: pipeline.clone(),
                holder: holder.clone(),
                epoch: self.epoch,
                expires_at: self.expires_at,
            }),
            _ => Ok(()),
        }
    }
}

/// Validates a requested time-to-live.
///
/// # Errors
/// [`Error::InvalidArgument`] outside [`MIN_TTL`]..=[`MAX_TTL`].
pub fn check_ttl(ttl: Duration) -> Result<()> {
    if (MIN_TTL..=MAX_TTL).contains(&ttl) {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "lease ttl {} is outside 100ms..=24h",
            humantime::format_duration(ttl)
        )))
    }
}

/// The acquisition rule: succeed on a free or expired lease, with `next_epoch` (which the backend
/// draws from a counter that never repeats within the project, so epochs keep increasing even
/// across deleting and re-creating a pipeline). `force` takes over a live lease (operators only).
///
/// # Errors
/// `Leased` while another holder — or the same one — holds a live lease and `force` is false;
/// `InvalidArgument` for a bad ttl.
pub fn plan_acquire(
    current: Option<&LeaseState>,
    pipeline: &PipelineId,
    holder: &HolderId,
    ttl: Duration,
    now: Timestamp,
    next_epoch: Epoch,
    force: bool,
) -> Result<Lease> {
    check_ttl(ttl)?;
    if let Some(current) = current {
        if !force {
            current.ensure_free(pipeline, now)?;
        }
        debug_assert!(next_epoch > current.epoch, "epochs must strictly increase");
    }
    Ok(Lease {
        pipeline: pipeline.clone(),
        holder: holder.clone(),
        epoch: next_epoch,
        expires_at: now.plus(ttl),
    })
}

/// The fencing rule: `presented` must carry the current epoch, be held, and be unexpired.
///
/// # Errors
/// [`Error::Fenced`] with the reason.
pub fn check_fence(current: Option<&LeaseState>, presented: &Lease, now: Timestamp) -> Result<()> {
    let fenced = |reason| Error::Fenced {
        pipeline: presented.pipeline.clone(),
        epoch: presented.epoch,
        reason,
    };
    let Some(current) = current else {
        return Err(fenced(FenceReason::NoLease));
    };
    if current.epoch != presented.epoch {
        return Err(fenced(FenceReason::Superseded {
            current: current.epoch,
        }));
    }
    match &current.holder {
        None => return Err(fenced(FenceReason::Released)),
        // Within a project an epoch names one acquisition, so this only fails for a lease forged
        // or carried over from elsewhere (another project's catalog): refuse it all the same.
        Some(holder) if *holder != presented.holder => {
            return Err(fenced(FenceReason::Superseded {
                current: current.epoch,
            }))
        }
        Some(_) => {}
    }
    if now >= current.expires_at {
        return Err(fenced(FenceReason::Expired {
            at: current.expires_at,
        }));
    }
    Ok(())
}

/// The renewal rule: a fenced lease cannot be renewed; a valid one gets `now + ttl`.
///
/// # Errors
/// `Fenced` as in [`check_fence`]; `InvalidArgument` for a bad ttl.
pub fn plan_renew(
    current: Option<&LeaseState>,
    presented: &Lease,
    ttl: Duration,
    now: Timestamp,
) -> Result<Lease> {
    check_ttl(ttl)?;
    check_fence(current, presented, now)?;
    Ok(Lease {
        expires_at: now.plus(ttl),
        ..presented.clone()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pipeline() -> PipelineId {
        PipelineId::new("p").unwrap()
    }

    fn holder(name: &str) -> HolderId {
        HolderId::new(name).unwrap()
    }

    fn state(lease: &Lease) -> LeaseState {
        LeaseState {
            epoch: lease.epoch,
            holder: Some(lease.holder.clone()),
            expires_at: lease.expires_at,
        }
    }

    const TTL: Duration = Duration::from_secs(10);

    #[test]
    fn a_live_lease_blocks_everyone_until_it_expires() {
        let t0 = Timestamp::from_millis(0);
        let a = plan_acquire(None, &pipeline(), &holder("a"), TTL, t0, Epoch(1), false).unwrap();
        let s = state(&a);
        for who in ["a", "b"] {
            let err = plan_acquire(
                Some(&s),
                &pipeline(),
                &holder(who),
                TTL,
                t0,
                Epoch(2),
                false,
            )
            .unwrap_err();
            assert!(
                matches!(err, Error::Leased { ref holder, .. } if holder.as_str() == "a"),
                "{err}"
            );
        }
        let later = t0.plus(TTL);
        let b = plan_acquire(
            Some(&s),
            &pipeline(),
            &holder("b"),
            TTL,
            later,
            Epoch(2),
            false,
        )
        .unwrap();
        assert_eq!(b.epoch, Epoch(2));
        let forced = plan_acquire(
            Some(&s),
            &pipeline(),
            &holder("op"),
            TTL,
            t0,
            Epoch(3),
            true,
        );
        assert!(forced.is_ok());
    }

    #[test]
    fn fencing_names_the_reason() {
        let t0 = Timestamp::from_millis(0);
        let a = plan_acquire(None, &pipeline(), &holder("a"), TTL, t0, Epoch(4), false).unwrap();
        let mut s = state(&a);
        assert!(check_fence(Some(&s), &a, t0).is_ok());
        let reason = |r: Result<()>| match r {
            Err(Error::Fenced { reason, .. }) => reason,
            other => panic!("expected Fenced, got {other:?}"),
        };
        assert_eq!(reason(check_fence(None, &a, t0)), FenceReason::NoLease);
        assert_eq!(
            reason(check_fence(Some(&s), &a, t0.plus(TTL))),
            FenceReason::Expired { at: a.expires_at }
        );
        s.epoch = Epoch(5);
        assert_eq!(
            reason(check_fence(Some(&s), &a, t0)),
            FenceReason::Superseded { current: Epoch(5) }
        );
        s.epoch = Epoch(4);
        s.holder = None;
        assert_eq!(reason(check_fence(Some(&s), &a, t0)), FenceReason::Released);
        assert!(plan_renew(Some(&s), &a, TTL, t0).is_err());
    }

    #[test]
    fn ttl_is_bounded() {
        assert!(check_ttl(Duration::from_millis(10)).is_err());
        assert!(check_ttl(Duration::from_secs(2 * 24 * 3600)).is_err());
        assert!(check_ttl(Duration::from_secs(30)).is_ok());
    }
}
