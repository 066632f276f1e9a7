//! The memory backend's harness for the contract suite and the model sequences: a store on a
//! manual clock.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use hakiri_catalog_memory::MemoryStore;
use hakiri_contract::Harness;
use hakiri_core::{Catalog, ManualClock, ProjectId, Timestamp};

/// A store on a manual clock: expiry is instant, nothing sleeps.
pub(crate) struct MemoryHarness {
    clock: ManualClock,
    store: MemoryStore,
}

impl MemoryHarness {
    pub(crate) fn new() -> Self {
        let clock = ManualClock::new(Timestamp::from_millis(1_800_000_000_000));
        let store = MemoryStore::new(Arc::new(clock.clone()));
        Self { clock, store }
    }
}

#[async_trait]
impl Harness for MemoryHarness {
    async fn open(&self, project: &ProjectId) -> Arc<dyn Catalog> {
        Arc::new(self.store.catalog(project.clone()))
    }

    async fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }

    fn ttl(&self) -> Duration {
        Duration::from_secs(30)
    }

    fn manual_clock(&self) -> bool {
        true
    }
}
