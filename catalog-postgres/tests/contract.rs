//! The contract suite on Postgres: every check on a fresh project of one real server shared by
//! the whole test binary (see `hakiri_test_kit::postgres` for where it comes from).
//!
//! Lease expiry is judged by the database's clock, which the harness cannot move: `advance`
//! sleeps, so the lease ttl is short and the checks run in parallel. The concurrent histories
//! (`hakiri_contract::history`) run here too, on the same harness.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use hakiri_catalog_postgres::{PostgresCatalog, PostgresConfig};
use hakiri_contract::Harness;
use hakiri_core::{Catalog, ProjectId};
use hakiri_test_kit::postgres;

/// Catalogs on the shared server, each with a small pool of its own (a pool belongs to the
/// runtime of the test that opened it).
struct PostgresHarness {
    url: &'static str,
}

impl PostgresHarness {
    fn new() -> Self {
        Self {
            url: postgres::shared().url(),
        }
    }
}

#[async_trait]
impl Harness for PostgresHarness {
    async fn open(&self, project: &ProjectId) -> Arc<dyn Catalog> {
        let pool = PostgresConfig::default()
            .max_connections(8)
            .connect(self.url)
            .await
            .unwrap_or_else(|e| {
                panic!("connect to {}: {e}. {}", self.url, postgres::HOW_TO_GET_ONE)
            });
        Arc::new(PostgresCatalog::new(pool, project.clone()))
    }

    async fn advance(&self, by: Duration) {
        tokio::time::sleep(by).await;
    }

    fn ttl(&self) -> Duration {
        // Long enough that no lease expires unless a check waits for it, on a loaded CI machine.
        Duration::from_secs(2)
    }
}

hakiri_contract::contract_suite!(PostgresHarness::new());

// The database's clock is real: no clock moves in these sequences, and a long ttl.
hakiri_contract::model_sequences!(PostgresHarness::new(), cases = 100);

// Concurrent histories of clients as tasks, each on its own pool; the same clients as separate OS
// processes run in `test-kit/tests/histories.rs`.
hakiri_contract::concurrent_histories!(PostgresHarness::new(), histories = 3);
