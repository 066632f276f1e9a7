//! The model sequences on the in-memory backend: random sequences of calls checked in lock step
//! against the contract crate's reference model, on a manual clock, and once more on the system
//! clock as a backend whose clock is the database's runs them (no clock moves, no times compared).

mod common;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use common::MemoryHarness;
use hakiri_catalog_memory::MemoryStore;
use hakiri_contract::Harness;
use hakiri_core::{Catalog, ProjectId, SystemClock};

// Sequences on this backend take milliseconds: afford many.
hakiri_contract::model_sequences!(MemoryHarness::new(), cases = 1000);

/// The store on the system clock: a harness that cannot move its clock but by waiting.
struct SystemClockHarness {
    store: MemoryStore,
}

#[async_trait]
impl Harness for SystemClockHarness {
    async fn open(&self, project: &ProjectId) -> Arc<dyn Catalog> {
        Arc::new(self.store.catalog(project.clone()))
    }

    async fn advance(&self, by: Duration) {
        tokio::time::sleep(by).await;
    }

    fn ttl(&self) -> Duration {
        Duration::from_secs(30)
    }
}

/// The sequences as a real-clock backend (Postgres, the Worker) will run them.
mod system_clock {
    use super::*;

    hakiri_contract::model_sequences!(
        SystemClockHarness {
            store: MemoryStore::new(Arc::new(SystemClock)),
        },
        cases = 200
    );
}
