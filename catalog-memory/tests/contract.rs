//! The contract suite on the in-memory backend, with a manual clock.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use hakiri_catalog_memory::MemoryStore;
use hakiri_contract::Harness;
use hakiri_core::{Catalog, ManualClock, ProjectId, Timestamp};

/// A store on a manual clock: expiry is instant, nothing sleeps.
struct MemoryHarness {
    clock: ManualClock,
    store: MemoryStore,
}

impl MemoryHarness {
    fn new() -> Self {
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
}

hakiri_contract::contract_suite!(MemoryHarness::new());
