//! Group commit keeps every request all-or-nothing on its own: in a batch where some requests
//! fail half-way, the others commit and the failed ones leave nothing behind.

use std::sync::Arc;
use std::time::Duration;

use hakiri_catalog_do::{SqliteCatalog, SqliteConfig};
use hakiri_core::{
    Catalog, CatalogExt, CursorKind, CursorValue, Error, FinishRun, ProjectId, RunStatus,
    StreamName,
};
use hakiri_test_kit::fixtures;
use serde_json::json;

const PIPELINES: usize = 48;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failures_inside_a_batch_do_not_leak_into_it() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = Arc::new(
        SqliteCatalog::open(
            dir.path().join("g.db"),
            ProjectId::new("group").unwrap(),
            SqliteConfig::default(),
        )
        .unwrap(),
    );
    let (a, z) = (StreamName::new("a").unwrap(), StreamName::new("z").unwrap());
    let mut prepared = Vec::new();
    for i in 0..PIPELINES {
        let spec = fixtures::spec(&format!("p{i}"), CursorKind::Monotonic);
        let (lease, run) =
            fixtures::begun(catalog.as_ref(), spec, "w", Duration::from_secs(600)).await;
        let pipeline = lease.pipeline.clone();
        catalog
            .advance_to(&lease, run.id, &z, CursorValue::new(json!(10)).unwrap())
            .await
            .unwrap();
        prepared.push((pipeline, lease, run));
    }
    // Every third finish writes cursor "a" and then finds "z" regressing: it must fail whole.
    let tasks: Vec<_> = prepared
        .into_iter()
        .enumerate()
        .map(|(i, (pipeline, lease, run))| {
            let catalog = catalog.clone();
            let (a, z) = (a.clone(), z.clone());
            tokio::spawn(async move {
                let z_end = if i % 3 == 0 { 1 } else { 11 };
                let finish = FinishRun::succeeded()
                    .with_cursor(a, CursorValue::new(json!(5)).unwrap())
                    .with_cursor(z, CursorValue::new(json!(z_end)).unwrap());
                (
                    i,
                    pipeline,
                    run.id,
                    catalog.finish_run(&lease, run.id, finish).await,
                )
            })
        })
        .collect();
    for task in tasks {
        let (i, pipeline, run, outcome) = task.await.unwrap();
        let stored = catalog.get_run(run).await.unwrap();
        let cursor_a = catalog.get_cursor(&pipeline, &a).await.unwrap();
        if i % 3 == 0 {
            assert!(
                matches!(outcome, Err(Error::CursorRegression { .. })),
                "{i}: {outcome:?}"
            );
            assert_eq!(
                stored.status,
                RunStatus::Running,
                "{i}: the failed finish changed the run"
            );
            assert_eq!(
                cursor_a, None,
                "{i}: the failed finish left cursor a behind"
            );
        } else {
            assert_eq!(outcome.unwrap().status, RunStatus::Succeeded, "{i}");
            assert_eq!(cursor_a.unwrap().value.as_json(), &json!(5), "{i}");
        }
    }
}

/// The writer never checkpoints (ADR 0039): the checkpointer thread keeps the write-ahead log
/// small however many commits come. Without it, 5,000 advances of ~5 pages each leave a log of
/// about 100 MB.
#[tokio::test]
async fn the_write_ahead_log_stays_small_while_the_writer_commits() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wal.db");
    let config = SqliteConfig::default().durability(hakiri_catalog_do::Durability::Normal);
    let catalog = SqliteCatalog::open(&path, ProjectId::new("wal").unwrap(), config).unwrap();
    let spec = fixtures::spec("p", CursorKind::Monotonic);
    let (lease, run) = fixtures::begun(&catalog, spec, "w", Duration::from_secs(600)).await;
    let stream = StreamName::new("s").unwrap();
    let wal = dir.path().join("wal.db-wal");
    let mut largest = 0;
    for i in 1..=5_000 {
        let value = CursorValue::new(json!(i)).unwrap();
        catalog
            .advance_to(&lease, run.id, &stream, value)
            .await
            .unwrap();
        if i % 500 == 0 {
            largest = largest.max(std::fs::metadata(&wal).unwrap().len());
        }
    }
    assert!(
        largest < 64 << 20,
        "the write-ahead log reached {largest} bytes: nothing checkpoints it"
    );
}
