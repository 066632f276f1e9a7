//! The contract suite on the Cloudflare host: `HttpCatalog` over HTTP to the real Worker and its
//! Durable Objects in a local workerd (built and started by the test itself).
//!
//! One workerd serves the whole test binary; every check uses a fresh project, hence a fresh
//! Durable Object. The object's clock is real, so `advance` sleeps. The lease ttl must outlast the
//! longest check that holds one lease throughout: the cursor compare-and-set race takes ≈ 2 s on
//! an idle 2-core machine and more under load (2 s and 5 s both expired mid-check under load), so
//! 10 s; the checks that wait leases out cost ≈ 9 ttl in all, spread over the test threads.
//!
//! The Worker audits operator requests under the token's grant name (ADR 0023); the shared
//! instance's admin grant is named as the suite's operator, so the checks that assert the actor
//! they sent hold here too.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use hakiri_contract::Harness;
use hakiri_core::{Actor, Catalog, OperatorName, ProjectId};
use hakiri_protocol::{HttpCatalog, HttpConfig};
use hakiri_test_kit::workerd;

/// Catalogs on the shared workerd, authenticated with the admin token.
struct WorkerHarness {
    url: String,
}

impl WorkerHarness {
    fn new() -> Self {
        Self {
            url: workerd::shared().url(),
        }
    }
}

#[async_trait]
impl Harness for WorkerHarness {
    async fn open(&self, project: &ProjectId) -> Arc<dyn Catalog> {
        let catalog = HttpCatalog::connect(
            &self.url,
            project.clone(),
            workerd::ADMIN_TOKEN,
            HttpConfig::default(),
        )
        .expect("a client for the local worker");
        Arc::new(catalog)
    }

    async fn advance(&self, by: Duration) {
        tokio::time::sleep(by).await;
    }

    fn ttl(&self) -> Duration {
        Duration::from_secs(10)
    }
}

hakiri_contract::contract_suite!(WorkerHarness::new());

// The object's clock is real: no clock moves in these sequences, and a long ttl.
hakiri_contract::model_sequences!(WorkerHarness::new(), cases = 100);

// Concurrent histories of clients as tasks, each with its own HTTP client, on one Durable Object.
hakiri_contract::concurrent_histories!(WorkerHarness::new(), histories = 2);

#[test]
fn the_admin_grant_is_named_as_the_suites_operator() {
    let name = OperatorName::new(workerd::ADMIN_NAME).expect("a valid operator name");
    assert_eq!(hakiri_contract::operator(), Actor::Operator(name));
}
