//! The contract suite through `hakiri serve`: `HttpCatalog` over real HTTP on loopback to the
//! real binary, serving a directory of SQLite files (`sqlite::…`) and a Postgres server
//! (`postgres::…`, from `hakiri_test_kit::postgres`).
//!
//! One server per backend serves the whole test binary (started by the first check that needs
//! it, stopped when the test process ends: `common::serve`); every check uses a fresh project,
//! hence a fresh SQLite file or a fresh Postgres project. Concurrent histories
//! (`hakiri_contract::history`) run on both servers too, their clients as tasks with an HTTP
//! client each.
//!
//! The server's clock is real, so `advance` sleeps. The lease ttl must outlast the longest check
//! that holds one lease throughout: the cursor compare-and-set race (8 tasks sharing one lease),
//! measured at ≈ 1.8 s through serve on SQLite and ≈ 2.2 s on Postgres with the machine's 2 cores
//! at a load average of 6 (other builds running); 8 s leaves a margin of more than three. The
//! checks that wait leases out cost ≈ 9 ttl in all, spread over the test threads. (The lease
//! race, the longest check at 15–25 s under that load, holds each lease for one round only.)
//!
//! The launch token's grant is audited as the operator who started the server (`--as`), so the
//! server is started as the suite's operator and the checks that assert the actor they sent hold
//! here too.

mod common;

use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use common::serve::Served;
use hakiri_contract::Harness;
use hakiri_core::{Actor, Catalog, CatalogExt, CursorKind, OperatorName, ProjectId};
use hakiri_protocol::{HttpCatalog, HttpConfig};

/// The suite's operator (`hakiri_contract::operator()`), whom the server runs as.
const OPERATOR: &str = "contract-operator";

/// The lease ttl: see the module docs.
const TTL: Duration = Duration::from_secs(8);

/// `hakiri serve` on `catalog`, as [`OPERATOR`], on a free loopback port; `cleanup` goes when it
/// exits.
fn serve(catalog: &str, cleanup: &[&Path]) -> Served {
    let mut command = common::hakiri(catalog, "contract");
    command.args([
        "--as",
        OPERATOR,
        "--output",
        "json",
        "serve",
        "--listen",
        "127.0.0.1:0",
    ]);
    Served::start(&command, cleanup)
}

/// The server of a directory of SQLite files, one per project, in a temporary directory.
fn sqlite_server() -> &'static Served {
    static SERVER: OnceLock<Served> = OnceLock::new();
    SERVER.get_or_init(|| {
        // The static is never dropped: the watchdog removes the directory when the server exits.
        let dir = tempfile::tempdir().expect("a temporary directory").keep();
        serve(&common::sqlite_catalog(&dir), &[&dir])
    })
}

/// The server of the test kit's shared Postgres server (migrated).
fn postgres_server() -> &'static Served {
    static SERVER: OnceLock<Served> = OnceLock::new();
    SERVER.get_or_init(|| serve(hakiri_test_kit::postgres::shared().url(), &[]))
}

/// Catalogs through one `hakiri serve`, authenticated with its launch token.
struct ServeHarness {
    server: &'static Served,
}

#[async_trait]
impl Harness for ServeHarness {
    async fn open(&self, project: &ProjectId) -> Arc<dyn Catalog> {
        let catalog = HttpCatalog::connect(
            &self.server.url,
            project.clone(),
            &self.server.token,
            HttpConfig::default(),
        )
        .expect("a client for hakiri serve");
        Arc::new(catalog)
    }

    async fn advance(&self, by: Duration) {
        tokio::time::sleep(by).await;
    }

    fn ttl(&self) -> Duration {
        TTL
    }
}

/// The contract suite, the model sequences and the concurrent histories, through one server.
macro_rules! through {
    ($module:ident, $server:expr) => {
        mod $module {
            use super::*;

            hakiri_contract::contract_suite!(ServeHarness { server: $server });
            hakiri_contract::model_sequences!(ServeHarness { server: $server }, cases = 100);
            hakiri_contract::concurrent_histories!(ServeHarness { server: $server }, histories = 2);
        }
    };
}

through!(sqlite, sqlite_server());
through!(postgres, postgres_server());

#[test]
fn the_server_runs_as_the_suites_operator() {
    let name = OperatorName::new(OPERATOR).expect("a valid operator name");
    assert_eq!(hakiri_contract::operator(), Actor::Operator(name));
}

/// More projects than the test kit's Postgres accepts connections (300).
const MANY_PROJECTS: usize = 320;

/// Found by the model sequences through `hakiri serve` on Postgres: the server opened a pool per
/// project and kept every one, so after a few hundred projects Postgres refused new clients
/// ("too many clients already") and every request failed. The projects now share one pool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_on_postgres_serves_more_projects_than_the_server_takes_connections() {
    let harness = ServeHarness {
        server: postgres_server(),
    };
    for _ in 0..MANY_PROJECTS {
        let catalog = harness.open(&hakiri_contract::unique_project()).await;
        catalog
            .create_pipeline(
                hakiri_contract::spec("p", CursorKind::Monotonic),
                &hakiri_contract::operator(),
            )
            .await
            .unwrap_or_else(|e| panic!("creating a pipeline in a new project: {e}"));
    }
}
