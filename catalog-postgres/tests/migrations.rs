//! A catalog written in the layout before migration 7 opens in this build with nothing lost: each
//! cursor history entry moves into the event recording its write (ADR 0038), exactly as this
//! build writes it, and a history entry without its event stops the migration, changing nothing.
//!
//! Each check turns a database of this build back into the previous layout, so it starts a server
//! of its own, even when `HAKIRI_TEST_POSTGRES_URL` is set.

use std::collections::BTreeMap;
use std::time::Duration;

use hakiri_catalog_postgres::{migrate, PgPool, PostgresCatalog, PostgresConfig};
use hakiri_contract::archive::{contents, fill};
use hakiri_core::{CatalogExt, CursorHistoryEntry, CursorKind, CursorValue, ProjectId, StreamName};
use hakiri_test_kit::{fixtures, postgres};
use serde_json::json;

const TTL: Duration = Duration::from_secs(3600);

fn project() -> ProjectId {
    ProjectId::new("migrations").unwrap()
}

async fn server() -> (postgres::Server, PgPool) {
    let server = postgres::start_owned_migrated().await;
    let pool = PostgresConfig::default()
        .max_connections(2)
        .connect(server.url())
        .await
        .expect("connect");
    (server, pool)
}

/// A project with a bit of everything, including a pipeline deleted and created again whose two
/// incarnations both wrote versions 1 and 2 of a cursor, and a cursor value holding `\u0000`
/// (which Postgres keeps in `json` but cannot take apart).
async fn filled(pool: &PgPool) -> PostgresCatalog {
    let catalog = PostgresCatalog::new(pool.clone(), project());
    fill(&catalog, TTL).await;
    let spec = fixtures::spec("nul", CursorKind::Opaque);
    let (lease, run) = fixtures::begun(&catalog, spec, "writer", TTL).await;
    let value = CursorValue::new(json!({"token": "a\u{0}b"})).unwrap();
    let stream = StreamName::new("s").unwrap();
    catalog
        .advance_to(&lease, run.id, &stream, value)
        .await
        .expect("advance nul");
    catalog
}

/// Each event that carries a history entry: event id → (pipeline, stream, version, entry).
async fn carried(pool: &PgPool) -> BTreeMap<i64, (String, String, i64, CursorHistoryEntry)> {
    let rows: Vec<(i64, String, String, i64, String)> = sqlx::query_as(
        "SELECT id, pipeline, stream, version, history::text FROM events \
         WHERE stream IS NOT NULL",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    rows.into_iter()
        .map(|(id, pipeline, stream, version, entry)| {
            let entry = serde_json::from_str(&entry).unwrap();
            (id, (pipeline, stream, version, entry))
        })
        .collect()
}

/// Turns a database of this build back into the layout migrations 1 to 6 made: a history table
/// of its own, written row by row from the entries (which SQL cannot take apart when they hold
/// `\u0000`), events without entries, and the runs' listing indexes whole (migration 8 made them
/// partial).
async fn to_previous_layout(pool: &PgPool) {
    let entries = carried(pool).await;
    sqlx::raw_sql(
        "CREATE TABLE cursor_history (
            project  text COLLATE \"C\"   NOT NULL,
            pipeline text COLLATE \"C\"   NOT NULL,
            stream   text COLLATE \"C\"   NOT NULL,
            version  bigint NOT NULL,
            value    json   NOT NULL,
            change   json   NOT NULL,
            run      uuid,
            epoch    bigint,
            by_actor json   NOT NULL,
            at       bigint NOT NULL,
            PRIMARY KEY (project, pipeline, stream, version)
        )",
    )
    .execute(pool)
    .await
    .unwrap();
    for (pipeline, stream, version, entry) in entries.into_values() {
        sqlx::query(
            "INSERT INTO cursor_history VALUES ($1, $2, $3, $4, $5::json, $6::json, $7, $8, \
             $9::json, $10)",
        )
        .bind(project().as_str())
        .bind(pipeline)
        .bind(stream)
        .bind(version)
        .bind(serde_json::to_string(&entry.value).unwrap())
        .bind(serde_json::to_string(&entry.change).unwrap())
        .bind(entry.run.map(|r| *r.as_uuid()))
        .bind(entry.epoch.map(|e| i64::try_from(e.get()).unwrap()))
        .bind(serde_json::to_string(&entry.by).unwrap())
        .bind(entry.at.as_millis())
        .execute(pool)
        .await
        .unwrap();
    }
    sqlx::raw_sql(
        "DROP INDEX events_history;
         ALTER TABLE events DROP COLUMN stream, DROP COLUMN version, DROP COLUMN history;
         DROP TABLE importing_history;
         ALTER TABLE runs DROP CONSTRAINT runs_status_named;
         DROP INDEX runs_by_pipeline, runs_by_status, runs_by_pipeline_status;
         CREATE INDEX runs_by_pipeline ON runs (project, pipeline, id);
         CREATE INDEX runs_by_status ON runs (project, status, id);
         CREATE INDEX runs_by_pipeline_status ON runs (project, pipeline, status, id);
         DELETE FROM _sqlx_migrations WHERE version IN (7, 8);",
    )
    .execute(pool)
    .await
    .unwrap();
}

async fn count(pool: &PgPool, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_catalog_of_the_previous_layout_migrates_with_its_history() {
    let (_server, pool) = server().await;
    let catalog = filled(&pool).await;
    let before = contents(&catalog).await;
    drop(catalog);
    let written = carried(&pool).await;
    assert!(written.len() >= 10, "{written:?}");

    to_previous_layout(&pool).await;
    let history = count(&pool, "SELECT count(*) FROM cursor_history").await;
    assert_eq!(history, written.len() as i64);

    migrate(&pool).await.expect("migration 7");
    let catalog = PostgresCatalog::new(pool.clone(), project());
    assert_eq!(contents(&catalog).await, before);
    assert_eq!(
        carried(&pool).await,
        written,
        "each entry sits in the event this build writes it in"
    );
    let tables = count(
        &pool,
        "SELECT count(*) FROM pg_tables WHERE tablename LIKE '%history%'",
    )
    .await;
    assert_eq!(tables, 1, "only the import's staging table is left");

    // Every run meets the condition the listing indexes are partial on (migration 8), so a
    // listing that names it leaves none out.
    let empty = sqlx::query(
        "INSERT INTO runs (project, id, pipeline, status, body) \
         VALUES ($1, gen_random_uuid(), 'a', '', '{}')",
    )
    .bind(project().as_str())
    .execute(&pool)
    .await
    .unwrap_err();
    assert!(empty.to_string().contains("runs_status_named"), "{empty}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_history_entry_without_its_event_stops_the_migration_and_changes_nothing() {
    let (_server, pool) = server().await;
    drop(filled(&pool).await);
    to_previous_layout(&pool).await;
    sqlx::query(
        "INSERT INTO cursor_history VALUES ($1, 'a', 'orders', 99, '1', '\"checkpoint\"', NULL, \
         1, '{\"holder\":\"worker-a\"}', 0)",
    )
    .bind(project().as_str())
    .execute(&pool)
    .await
    .unwrap();
    let rows = count(&pool, "SELECT count(*) FROM cursor_history").await;

    let error = migrate(&pool).await.unwrap_err();
    assert!(
        error
            .to_string()
            .contains("history_rows_without_their_event"),
        "{error}"
    );
    assert_eq!(
        count(&pool, "SELECT count(*) FROM cursor_history").await,
        rows,
        "the migration rolled back whole"
    );
    let schema = count(&pool, "SELECT max(version) FROM _sqlx_migrations").await;
    assert_eq!(schema, 6);
    let columns = count(
        &pool,
        "SELECT count(*) FROM information_schema.columns \
         WHERE table_name = 'events' AND column_name = 'history'",
    )
    .await;
    assert_eq!(columns, 0, "events are as they were");

    sqlx::query("DELETE FROM cursor_history WHERE version = 99")
        .execute(&pool)
        .await
        .unwrap();
    migrate(&pool)
        .await
        .expect("without the stray entry, the migration runs");
}
