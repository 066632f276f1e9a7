//! A catalog's statements stay keyed lookups when their plans were made while the tables were
//! small (ADR 0043).
//!
//! The catalog prepares each statement once per connection and keeps its generic plan
//! (`PostgresConfig`). A plan is made from the statistics of its moment, and autovacuum may take
//! them when a table holds a single run: the planner then judges a sequential scan, or an index on
//! other columns, as cheap as the primary key. A plan made then would read every run of the
//! project on each call once the project has thousands, until the next `ANALYZE` replaces it.
//!
//! This test makes that moment happen on purpose, on a server of its own with autovacuum off:
//! statistics taken with one run, every operation's plan made right after, then fifty thousand
//! runs more. Each round of operations must touch about as many pages of the runs table and its
//! indexes as it did while the project was small.

use std::time::Duration;

use hakiri_catalog_postgres::{PgPool, PostgresCatalog, PostgresConfig};
use hakiri_core::{
    Actor, BeginRun, Catalog, CatalogExt, CursorKind, CursorValue, FinishRun, HolderId, Lease,
    Limit, ProjectId, Reason, RunId, StreamName, Trigger,
};
use hakiri_test_kit::{fixtures, postgres};
use serde_json::json;

const TTL: Duration = Duration::from_secs(3600);

/// Runs added between the two measured rounds.
const GROWTH: i64 = 50_000;

/// The pages of the runs table and its indexes that the catalog's session has touched so far.
/// A session sends its statistics to the server when it idles, at most once a second; the
/// catalog's one connection is asked to send them at once first (`pg_stat_force_next_flush`,
/// PostgreSQL 15 and later: the test kit's servers are 15 or 16).
async fn pages_of_runs(catalog: &PgPool, admin: &PgPool) -> i64 {
    sqlx::query("SELECT pg_stat_force_next_flush()")
        .execute(catalog)
        .await
        .unwrap();
    sqlx::query_scalar(
        "SELECT coalesce(heap_blks_hit, 0) + coalesce(heap_blks_read, 0) \
           + coalesce(idx_blks_hit, 0) + coalesce(idx_blks_read, 0) \
         FROM pg_statio_user_tables WHERE relname = 'runs'",
    )
    .fetch_one(admin)
    .await
    .unwrap()
}

/// Finishes `run` and begins the next one.
async fn finish_then_begin(
    catalog: &PostgresCatalog,
    lease: &Lease,
    run: RunId,
    finish: FinishRun,
) -> RunId {
    catalog.finish_run(lease, run, finish).await.unwrap();
    catalog
        .begin_run(lease, BeginRun::new(Trigger::Manual))
        .await
        .unwrap()
        .id
}

/// Every operation that reads or writes a run by its id: a checkpoint, both finishes (the one
/// statement a remembered run takes, and the transactional one a stream's first cursor takes), a
/// begin, a read of the run, a take-over that abandons a running run, and the reconciler's
/// snapshot. Returns the lease to go on with.
async fn round(catalog: &PostgresCatalog, lease: Lease, mut run: RunId, n: u64) -> (Lease, RunId) {
    let s = StreamName::new("s").unwrap();
    let value = |v: u64| CursorValue::new(json!(v)).unwrap();
    catalog
        .advance_to(&lease, run, &s, value(3 * n))
        .await
        .unwrap();
    run = finish_then_begin(
        catalog,
        &lease,
        run,
        FinishRun::succeeded().with_cursor(s, value(3 * n + 1)),
    )
    .await;
    let first = StreamName::new(format!("first-{n}")).unwrap();
    run = finish_then_begin(
        catalog,
        &lease,
        run,
        FinishRun::succeeded().with_cursor(first, value(1)),
    )
    .await;
    catalog.get_run(run).await.unwrap();
    let lease = catalog
        .force_acquire(
            &lease.pipeline,
            &HolderId::new(format!("holder-{n}")).unwrap(),
            TTL,
            &Actor::System,
            &Reason::new("take over").unwrap(),
        )
        .await
        .unwrap();
    catalog
        .pipeline_statuses(None, Limit::DEFAULT)
        .await
        .unwrap();
    let run = catalog
        .begin_run(&lease, BeginRun::new(Trigger::Manual))
        .await
        .unwrap()
        .id;
    (lease, run)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plans_made_while_a_project_had_one_run_stay_keyed_as_it_grows() {
    let server = postgres::start_owned_migrated().await;
    let url = server.url();
    let admin = PgPool::connect(url)
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}. {}", postgres::HOW_TO_GET_ONE));
    for statement in [
        "ALTER SYSTEM SET autovacuum = off",
        "SELECT pg_reload_conf()",
    ] {
        sqlx::query(statement).execute(&admin).await.unwrap();
    }
    // One connection: every operation runs on the session whose plans were made below.
    let pool = PostgresConfig::default()
        .max_connections(1)
        .connect(url)
        .await
        .unwrap();
    let project = ProjectId::new("young").unwrap();
    let catalog = PostgresCatalog::new(pool.clone(), project);
    let spec = fixtures::spec("p", CursorKind::Monotonic);
    let (lease, run) = fixtures::begun(&catalog, spec, "h", TTL).await;

    // Statistics taken while the project has one run, and every plan made from them.
    sqlx::query("ANALYZE").execute(&admin).await.unwrap();
    let (lease, run) = round(&catalog, lease, run.id, 0).await;

    let before = pages_of_runs(&pool, &admin).await;
    let (lease, run) = round(&catalog, lease, run, 1).await;
    let small = pages_of_runs(&pool, &admin).await - before;

    sqlx::query(
        "INSERT INTO runs (project, id, pipeline, status, body) \
         SELECT 'young', ('01900000-0000-7000-8000-' || lpad(to_hex(g), 12, '0'))::uuid, 'p', \
           'succeeded', '{}' \
         FROM generate_series(1, $1) g",
    )
    .bind(GROWTH)
    .execute(&admin)
    .await
    .unwrap();
    let before = pages_of_runs(&pool, &admin).await;
    round(&catalog, lease, run, 2).await;
    let large = pages_of_runs(&pool, &admin).await - before;

    // Indexes a level or two deeper cost a page or two more for each of the round's lookups and
    // index entries; one scan of the project's runs costs some seven hundred pages.
    println!("pages of runs per round: {small} with a few runs, {large} with {GROWTH} more");
    assert!(
        large <= small * 3,
        "a round touched {large} pages of the runs table and its indexes with {GROWTH} runs, \
         against {small} with a few: a plan made while the project was small reads every run"
    );
}
