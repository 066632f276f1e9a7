//! Numbering a long unread stretch of the event log costs work linear in its length, whatever the
//! planner's statistics say (migration 0005).
//!
//! Events are appended unnumbered and numbered on the first read (ADR 0009, ADR 0015). A project
//! whose log nobody reads for a while — a worker checkpointing thousands of times before anyone
//! runs `hakiri events` — reaches that read with statistics taken before its burst, which
//! estimate one unnumbered event. With such an estimate `number_events` once picked a nested loop
//! that rescanned the whole unnumbered stretch for each event: O(n²), 75–90 s for 8,000 events.
//!
//! Work, not time, is measured: the rows the server read from `events` during the read (its
//! `pg_stat_user_tables` counters, flushed by the session that did the work), which is about n
//! for a linear plan and about n² for the quadratic one.

use std::time::Duration;

use hakiri_catalog_postgres::{PgPool, PostgresCatalog, PostgresConfig};
use hakiri_core::{Catalog, CatalogExt, CursorKind, CursorValue, Limit, ProjectId, StreamName};
use hakiri_test_kit::{fixtures, postgres};

/// Events appended before the first read: enough that n² (millions of rows) and a linear bound
/// are a thousand times apart, few enough that appending them takes seconds.
const N: u64 = 3_000;

/// Rows of `events` a linear numbering may read per event (it reads each about twice: to rank
/// it and to update it), with room for any plan that is not quadratic.
const ROWS_PER_EVENT: u64 = 20;

/// Rows read from `events` so far, as far as the server's cumulative statistics know. The
/// pool's only session asks its own pending counters to be flushed first, then reads them in a
/// new transaction (so not from a cached statistics snapshot).
async fn rows_read(pool: &PgPool) -> u64 {
    sqlx::query("SELECT pg_stat_force_next_flush()")
        .execute(pool)
        .await
        .unwrap();
    let rows: i64 = sqlx::query_scalar(
        "SELECT coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0) FROM pg_stat_user_tables \
         WHERE relid = 'events'::regclass",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    u64::try_from(rows).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn numbering_a_long_unread_log_reads_each_event_a_bounded_number_of_times() {
    let url = postgres::shared().url();
    // One session: the catalog's statements and the flush of their statistics run in it.
    let pool = PostgresConfig::default()
        .max_connections(1)
        .connect(url)
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}. {}", postgres::HOW_TO_GET_ONE));
    let version: i32 = sqlx::query_scalar("SELECT current_setting('server_version_num')::int")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(
        version >= 150_000,
        "this check needs PostgreSQL 15 or newer (pg_stat_force_next_flush), the server is \
         {version}"
    );

    let project = ProjectId::new(format!("numbering-{}", uuid::Uuid::new_v4())).unwrap();
    let catalog = PostgresCatalog::new(pool.clone(), project);
    // The statistics are taken before the burst, as autovacuum's last analyze would have been:
    // they know of no unnumbered event of this project.
    sqlx::query("ANALYZE events").execute(&pool).await.unwrap();

    let (lease, run) = fixtures::begun(
        &catalog,
        fixtures::spec("busy", CursorKind::Monotonic),
        "worker-1",
        Duration::from_secs(600),
    )
    .await;
    let stream = StreamName::new("s").unwrap();
    for value in 1..=N {
        catalog
            .advance_to(
                &lease,
                run.id,
                &stream,
                CursorValue::new(serde_json::json!(value)).unwrap(),
            )
            .await
            .unwrap();
    }

    let before = rows_read(&pool).await;
    let first = catalog.events(0, Limit::MAX).await.unwrap();
    let read = rows_read(&pool).await - before;

    // Every event is numbered, gaplessly from 1, however the numbering went about it.
    let mut seqs: Vec<u64> = first.iter().map(|e| e.seq).collect();
    while let Some(&last) = seqs.last() {
        let page = catalog.events(last, Limit::MAX).await.unwrap();
        if page.is_empty() {
            break;
        }
        seqs.extend(page.iter().map(|e| e.seq));
    }
    let appended = u64::try_from(seqs.len()).unwrap();
    assert!(appended > N, "{appended} events for {N} checkpoints");
    assert!(
        seqs.iter().copied().eq(1..=appended),
        "the numbering has gaps"
    );

    println!("numbering {appended} unread events read {read} rows of `events`");
    assert!(
        read <= ROWS_PER_EVENT * appended,
        "numbering {appended} unread events read {read} rows of `events`: more than \
         {ROWS_PER_EVENT} per event, so the numbering is not linear in the events it numbers"
    );
}
