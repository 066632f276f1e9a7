//! The embedded host's harness for the contract suite and the model sequences: the SQLite store
//! on local files, with a manual clock.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use hakiri_catalog_do::{SqliteCatalog, SqliteConfig};
use hakiri_contract::Harness;
use hakiri_core::{Catalog, ManualClock, ProjectId, Timestamp};

/// One temporary directory per check; each project is a database file in it.
pub(crate) struct EmbeddedHarness {
    clock: ManualClock,
    dir: tempfile::TempDir,
}

impl EmbeddedHarness {
    pub(crate) fn new() -> Self {
        Self {
            clock: ManualClock::new(Timestamp::from_millis(1_800_000_000_000)),
            dir: tempfile::tempdir().expect("a temporary directory for the catalog files"),
        }
    }
}

#[async_trait]
impl Harness for EmbeddedHarness {
    async fn open(&self, project: &ProjectId) -> Arc<dyn Catalog> {
        let path = self.dir.path().join(format!("{project}.db"));
        let config = SqliteConfig::default().clock(Arc::new(self.clock.clone()));
        Arc::new(SqliteCatalog::open(path, project.clone(), config).expect("open the catalog file"))
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
