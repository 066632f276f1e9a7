//! The contract suite through the forwarding implementations of `Catalog` for `Arc` and `Box`
//! (in `hakiri-core`): each check's catalog is the memory backend behind an
//! `Arc<Box<dyn Catalog>>`, so a method either forwarding impl failed to pass on would show as
//! a broken check here.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use hakiri_catalog_memory::MemoryStore;
use hakiri_contract::Harness;
use hakiri_core::{Catalog, ManualClock, ProjectId, Timestamp};

struct ForwardedHarness {
    clock: ManualClock,
    store: MemoryStore,
}

impl ForwardedHarness {
    fn new() -> Self {
        let clock = ManualClock::new(Timestamp::from_millis(1_800_000_000_000));
        let store = MemoryStore::new(Arc::new(clock.clone()));
        Self { clock, store }
    }
}

#[async_trait]
impl Harness for ForwardedHarness {
    async fn open(&self, project: &ProjectId) -> Arc<dyn Catalog> {
        let boxed: Box<dyn Catalog> = Box::new(self.store.catalog(project.clone()));
        Arc::new(boxed)
    }

    async fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }

    fn ttl(&self) -> Duration {
        Duration::from_secs(30)
    }
}

hakiri_contract::contract_suite!(ForwardedHarness::new());
