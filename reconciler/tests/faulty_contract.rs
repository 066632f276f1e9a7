//! The contract suite through `Faulty` (`common/mod.rs`), the catalog wrapper the reconciler's
//! tests inject crashes and failures with: with no fault armed it must behave exactly like the
//! catalog it wraps, or the tests built on it would test the wrapper, not the reconciler.

mod common;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use common::Faulty;
use hakiri_catalog_memory::MemoryStore;
use hakiri_contract::Harness;
use hakiri_core::{Catalog, ManualClock, ProjectId, Timestamp};

struct FaultyHarness {
    clock: ManualClock,
    store: MemoryStore,
}

#[async_trait]
impl Harness for FaultyHarness {
    async fn open(&self, project: &ProjectId) -> Arc<dyn Catalog> {
        Arc::new(Faulty::new(Arc::new(self.store.catalog(project.clone()))))
    }

    async fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }

    fn ttl(&self) -> Duration {
        Duration::from_secs(30)
    }
}

fn harness() -> FaultyHarness {
    let clock = ManualClock::new(Timestamp::from_millis(1_800_000_000_000));
    let store = MemoryStore::new(Arc::new(clock.clone()));
    FaultyHarness { clock, store }
}

hakiri_contract::contract_suite!(harness());
