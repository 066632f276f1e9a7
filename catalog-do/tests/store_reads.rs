//! The store's reads for the hosts' event streams and plan (`store::events`, `store::tail_after`,
//! `store::plan`) answer what the core computes over the `Catalog` port on the same database.

use std::sync::Arc;

use hakiri_catalog_do::store;
use hakiri_catalog_do::{SqliteCatalog, SqliteConfig, SqliteConnection};
use hakiri_contract::{operator, pid, reason, spec};
use hakiri_core::{
    Catalog, CatalogExt, CursorKind, Limit, ManualClock, PauseChange, ProjectId, Timestamp,
};

/// Pipelines `a`, `b`, `c` and a log where `a`'s slice has gaps: a, b, a, c, a, b, a.
async fn logged(path: &std::path::Path, clock: &ManualClock) -> SqliteCatalog {
    let config = SqliteConfig::default().clock(Arc::new(clock.clone()));
    let project = ProjectId::new("reads").unwrap();
    let catalog = SqliteCatalog::open(path, project, config).unwrap();
    let paused = || PauseChange::Pause(reason("r"));
    catalog
        .create_pipeline(spec("a", CursorKind::Monotonic), &operator())
        .await
        .unwrap();
    catalog
        .create_pipeline(spec("b", CursorKind::Monotonic), &operator())
        .await
        .unwrap();
    catalog
        .set_paused(&pid("a"), paused(), &operator())
        .await
        .unwrap();
    catalog
        .create_pipeline(spec("c", CursorKind::Monotonic), &operator())
        .await
        .unwrap();
    catalog
        .set_paused(&pid("a"), PauseChange::Resume, &operator())
        .await
        .unwrap();
    catalog
        .set_paused(&pid("b"), paused(), &operator())
        .await
        .unwrap();
    catalog
        .set_paused(&pid("a"), paused(), &operator())
        .await
        .unwrap();
    catalog
}

#[tokio::test]
async fn the_stores_reads_answer_what_the_core_computes_over_the_port() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("reads.db");
    let clock = ManualClock::new(Timestamp::from_millis(1_800_000_000_000));
    let catalog = logged(&path, &clock).await;
    let mut conn = SqliteConnection::open(&path, &SqliteConfig::default()).unwrap();

    for filter in [None, Some(pid("a")), Some(pid("b")), Some(pid("nobody"))] {
        for n in 0..=9 {
            assert_eq!(
                store::tail_after(&mut conn, filter.as_ref(), n).unwrap(),
                catalog.tail_after(filter.as_ref(), n).await.unwrap(),
                "tail {n} of {filter:?}"
            );
        }
        for after in 0..=8 {
            let port = match &filter {
                Some(p) => catalog.pipeline_events(p, after, Limit::MAX).await,
                None => catalog.events(after, Limit::MAX).await,
            };
            assert_eq!(
                store::events(&mut conn, filter.as_ref(), after, Limit::MAX).unwrap(),
                port.unwrap(),
                "events after {after} of {filter:?}"
            );
        }
    }

    let planned = hakiri_core::plan::current(&catalog).await.unwrap();
    assert_eq!(store::plan(&mut conn, planned.as_of).unwrap(), planned);
}
