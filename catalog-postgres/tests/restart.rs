//! Postgres restarted (`pg_ctl restart -m fast`) in the middle of a write loop: the writer sees
//! `Unavailable`, recovers through its pool without being rebuilt, and every checkpoint
//! acknowledged before the restart is there afterwards.
//!
//! This check restarts the server, so it starts one of its own (a container or `initdb`), even
//! when `HAKIRI_TEST_POSTGRES_URL` is set — a server someone else runs is never restarted.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hakiri_catalog_postgres::{PostgresCatalog, PostgresConfig};
use hakiri_core::{
    Catalog, CatalogExt, CursorKind, CursorValue, Error, Limit, ProjectId, StreamName,
};
use hakiri_test_kit::{fixtures, postgres};
use serde_json::json;

/// Acknowledged checkpoints before the restart, and again after it.
const BEFORE: u64 = 200;
const AFTER: u64 = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_see_unavailable_then_recover_and_lose_no_acknowledged_write() {
    let server = postgres::start_owned_migrated().await;
    // No ping before a connection is handed out: the restart then reaches the writer as the error
    // on its connection, whenever the restart falls. A ping can quietly replace a connection the
    // restart closed while it sat in the pool, and the pool then waits the restart out (about
    // 0.2 s here): in one run of about thirty, the writer saw no error at all.
    let pool = PostgresConfig::default()
        .max_connections(4)
        .test_before_acquire(false)
        .acquire_timeout(Duration::from_secs(2))
        .connect(server.url())
        .await
        .expect("connect");
    let catalog = Arc::new(PostgresCatalog::new(
        pool,
        ProjectId::new("restart").unwrap(),
    ));
    let spec = fixtures::spec("p", CursorKind::Monotonic);
    let (lease, run) =
        fixtures::begun(catalog.as_ref(), spec, "writer", Duration::from_secs(120)).await;
    let pipeline = lease.pipeline.clone();

    let acked = Arc::new(AtomicU64::new(0));
    let unavailable = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (catalog, acked, unavailable, stop) = (
            catalog.clone(),
            acked.clone(),
            unavailable.clone(),
            stop.clone(),
        );
        let (lease, stream) = (lease.clone(), StreamName::new("s").unwrap());
        tokio::spawn(async move {
            let mut next = 1u64;
            while !stop.load(Ordering::SeqCst) {
                let value = CursorValue::new(json!(next)).unwrap();
                match catalog.advance_to(&lease, run.id, &stream, value).await {
                    Ok(cursor) => {
                        assert_eq!(cursor.value.as_json(), &json!(next));
                        acked.store(next, Ordering::SeqCst);
                        next += 1;
                    }
                    // Retry the same value: if it was committed before the connection broke,
                    // the retry is an idempotent no-op.
                    Err(Error::Unavailable(_)) => {
                        unavailable.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    Err(e) => panic!("checkpoint {next} failed: {e:?}"),
                }
            }
        })
    };
    let wait_for = |n: u64| {
        let acked = acked.clone();
        async move {
            while acked.load(Ordering::SeqCst) < n {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(120), wait_for(BEFORE))
        .await
        .expect("the writer makes progress");
    let (server, downtime) = tokio::task::spawn_blocking(move || {
        let started = std::time::Instant::now();
        server.restart().expect("restart the server");
        (server, started.elapsed())
    })
    .await
    .unwrap();
    let at_restart = acked.load(Ordering::SeqCst);
    tokio::time::timeout(Duration::from_secs(120), wait_for(at_restart + AFTER))
        .await
        .expect("the writer recovers through its pool after the restart");
    stop.store(true, Ordering::SeqCst);
    writer.await.unwrap();

    assert!(
        unavailable.load(Ordering::SeqCst) > 0,
        "the restart surfaced as Unavailable"
    );
    let last = acked.load(Ordering::SeqCst);
    eprintln!(
        "restart: {last} checkpoints acknowledged, {} Unavailable answers around the restart, \
         which took {downtime:?}",
        unavailable.load(Ordering::SeqCst)
    );
    let stream = StreamName::new("s").unwrap();
    let cursor = catalog
        .get_cursor(&pipeline, &stream)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        cursor.value.as_json(),
        &json!(last),
        "the last acknowledged value stands"
    );
    assert_eq!(
        cursor.version, last,
        "one version per acknowledged value, none lost or doubled"
    );
    // Every acknowledged value is in the history, in order.
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let page = catalog
            .cursor_history(&pipeline, &stream, before, Limit::MAX)
            .await
            .unwrap();
        seen.extend(
            page.items
                .iter()
                .map(|e| e.value.as_json().as_u64().unwrap()),
        );
        match page.next {
            Some(next) => before = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, (1..=last).rev().collect::<Vec<_>>());
    drop(server);
}
