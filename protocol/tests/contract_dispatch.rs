//! The contract suite through the protocol, end to end in one process: each check's catalog is a
//! [`RemoteCatalog`] whose transport JSON-encodes the request, decodes it, answers it with
//! [`dispatch`] on the memory backend, and JSON-encodes and decodes the reply. A request or reply
//! that does not survive JSON exactly (a serialisation gap) fails the check that sent it, as does
//! a dispatcher answering with the wrong variant or error.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use hakiri_catalog_memory::{MemoryCatalog, MemoryStore};
use hakiri_contract::Harness;
use hakiri_core::{Catalog, ManualClock, ProjectId, Result, Timestamp};
use hakiri_protocol::{
    decode_reply, decode_request, dispatch, encode, RemoteCatalog, Reply, Request, Response,
    Transport,
};

/// A server in the same process: the request and the reply cross JSON both ways.
#[derive(Debug)]
struct JsonLoopback {
    catalog: MemoryCatalog,
}

#[async_trait]
impl Transport for JsonLoopback {
    async fn call(&self, request: Request) -> Result<Response> {
        let body = encode(&request);
        let decoded = decode_request(&body).unwrap_or_else(|e| {
            panic!(
                "a request does not decode from its own JSON: {e}\n{}",
                String::from_utf8_lossy(&body)
            )
        });
        assert_eq!(decoded, request, "the request changed through JSON");
        let result = dispatch(&self.catalog, decoded).await;
        let body = encode(&Reply::from(result.clone()));
        let answered = decode_reply(&body);
        assert_eq!(
            answered,
            result,
            "the reply changed through JSON: {}",
            String::from_utf8_lossy(&body)
        );
        answered
    }
}

struct DispatchHarness {
    clock: ManualClock,
    store: MemoryStore,
}

impl DispatchHarness {
    fn new() -> Self {
        let clock = ManualClock::new(Timestamp::from_millis(1_800_000_000_000));
        let store = MemoryStore::new(Arc::new(clock.clone()));
        Self { clock, store }
    }
}

#[async_trait]
impl Harness for DispatchHarness {
    async fn open(&self, project: &ProjectId) -> Arc<dyn Catalog> {
        let transport = JsonLoopback {
            catalog: self.store.catalog(project.clone()),
        };
        Arc::new(RemoteCatalog::new(project.clone(), transport))
    }

    async fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }

    fn ttl(&self) -> Duration {
        Duration::from_secs(30)
    }
}

hakiri_contract::contract_suite!(DispatchHarness::new());
