//! A catalog written in the layout before migration 4 opens in this build with nothing lost: each
//! cursor history entry moves into the event recording its write (ADR 0038), exactly as this
//! build writes it, and a history entry without its event stops the migration, changing nothing.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use hakiri_catalog_do::store::Exec;
use hakiri_catalog_do::{SqliteCatalog, SqliteConfig, SqliteConnection};
use hakiri_contract::archive::{contents, fill};
use hakiri_core::ProjectId;

const TTL: Duration = Duration::from_secs(3600);

fn project() -> ProjectId {
    ProjectId::new("migrations").unwrap()
}

fn raw(path: &Path) -> SqliteConnection {
    SqliteConnection::open(path, &SqliteConfig::default()).unwrap()
}

fn count(conn: &mut SqliteConnection, sql: &str) -> i64 {
    conn.query_row(sql, &[]).unwrap().unwrap().int(0).unwrap()
}

/// Each event that carries a history entry: seq → (stream, version, entry).
fn carried(path: &Path) -> BTreeMap<i64, (String, i64, String)> {
    raw(path)
        .query(
            "SELECT seq, stream, version, history FROM events WHERE stream IS NOT NULL",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| {
            let entry = (r.text(1)?.to_owned(), r.int(2)?, r.text(3)?.to_owned());
            Ok((r.int(0)?, entry))
        })
        .collect::<hakiri_core::Result<_>>()
        .unwrap()
}

/// Turns a database of this build back into the layout migrations 1 to 3 made: a history table
/// of its own, events without entries.
fn to_previous_layout(path: &Path) {
    let mut conn = raw(path);
    for sql in [
        "CREATE TABLE cursor_history (
            pipeline TEXT NOT NULL,
            stream TEXT NOT NULL,
            version INTEGER NOT NULL,
            body TEXT NOT NULL,
            PRIMARY KEY (pipeline, stream, version)
        ) WITHOUT ROWID",
        "INSERT INTO cursor_history SELECT pipeline, stream, version, history FROM events \
         WHERE stream IS NOT NULL",
        "DROP INDEX events_history",
        "ALTER TABLE events DROP COLUMN stream",
        "ALTER TABLE events DROP COLUMN version",
        "ALTER TABLE events DROP COLUMN history",
        "DROP TABLE importing_history",
        "DELETE FROM migrations WHERE version = 4",
    ] {
        conn.execute(sql, &[]).unwrap();
    }
}

/// A project with a bit of everything, including a pipeline deleted and created again whose two
/// incarnations both wrote versions 1 and 2 of a cursor.
async fn filled(path: &Path) -> SqliteCatalog {
    let catalog = SqliteCatalog::open(path, project(), SqliteConfig::default()).unwrap();
    fill(&catalog, TTL).await;
    catalog
}

#[tokio::test]
async fn a_catalog_of_the_previous_layout_migrates_with_its_history() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    let catalog = filled(&path).await;
    let before = contents(&catalog).await;
    drop(catalog);
    let written = carried(&path);
    assert!(written.len() >= 10, "{written:?}");

    to_previous_layout(&path);
    let history = count(&mut raw(&path), "SELECT count(*) FROM cursor_history");
    assert_eq!(history, written.len() as i64);

    let catalog = SqliteCatalog::open(&path, project(), SqliteConfig::default()).unwrap();
    assert_eq!(contents(&catalog).await, before);
    drop(catalog);
    assert_eq!(
        carried(&path),
        written,
        "each entry sits in the event this build writes it in"
    );
    let tables = count(
        &mut raw(&path),
        "SELECT count(*) FROM sqlite_master WHERE name LIKE '%history%' AND type = 'table'",
    );
    assert_eq!(tables, 1, "only the import's staging table is left");
}

#[tokio::test]
async fn a_history_entry_without_its_event_stops_the_migration_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    drop(filled(&path).await);
    to_previous_layout(&path);
    raw(&path)
        .execute(
            "INSERT INTO cursor_history VALUES ('a', 'orders', 99, '{}')",
            &[],
        )
        .unwrap();
    let history = |path: &Path| count(&mut raw(path), "SELECT count(*) FROM cursor_history");
    let rows = history(&path);

    let error = SqliteCatalog::open(&path, project(), SqliteConfig::default()).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("history_rows_without_their_event"),
        "{error}"
    );
    assert_eq!(history(&path), rows, "the migration rolled back whole");
    let schema = count(&mut raw(&path), "SELECT max(version) FROM migrations");
    assert_eq!(schema, 3);

    raw(&path)
        .execute("DELETE FROM cursor_history WHERE version = 99", &[])
        .unwrap();
    SqliteCatalog::open(&path, project(), SqliteConfig::default())
        .expect("without the stray entry, the migration runs");
}
