//! The store's schema: ordered, embedded migrations, applied once each and tracked in a table.
//!
//! Never edit a migration that has shipped; add a new one. Statements are listed one by one
//! because hosts differ in how they run several statements in one call.

use hakiri_core::{Error, Result, Timestamp};

use super::exec::{params, Exec};

/// A migration: its number, a name, and its statements.
pub(crate) struct Migration {
    pub(crate) version: i64,
    pub(crate) name: &'static str,
    pub(crate) statements: &'static [&'static str],
}

/// Every migration, in order. One database holds one project, so no table has a project column.
pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "catalog",
        statements: &[
            // Counters that must never repeat: lease epochs (project-wide, ADR 0007), decision ids,
            // and the run counter that makes run ids unique and ordered within a millisecond.
            "CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID",
            // Which project this database holds (one database, one project), set on first open.
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID",
            "INSERT INTO counters (name, value) VALUES ('epoch', 0), ('decision', 0), ('run', 0)",
            // The hot columns of a pipeline (lease, running run, cursor kind) live beside the JSON
            // document so that a checkpoint reads one row and parses no document.
            "CREATE TABLE pipelines (
            id TEXT PRIMARY KEY,
            body TEXT NOT NULL,
            cursor_kind TEXT NOT NULL,
            lease_epoch INTEGER,
            lease_holder TEXT,
            lease_expires_at INTEGER,
            running_run TEXT
        ) WITHOUT ROWID",
            // Run ids are UUIDv7 text: lexical order is time order, so listing is a keyset scan.
            "CREATE TABLE runs (
            id TEXT PRIMARY KEY,
            pipeline TEXT NOT NULL,
            status TEXT NOT NULL,
            body TEXT NOT NULL
        ) WITHOUT ROWID",
            "CREATE INDEX runs_by_pipeline ON runs (pipeline, id)",
            "CREATE INDEX runs_by_status ON runs (status, id)",
            "CREATE TABLE cursors (
            pipeline TEXT NOT NULL,
            stream TEXT NOT NULL,
            version INTEGER NOT NULL,
            value TEXT NOT NULL,
            run TEXT,
            epoch INTEGER,
            updated_by TEXT NOT NULL,
            updated_at INTEGER NOT NULL,
            PRIMARY KEY (pipeline, stream)
        ) WITHOUT ROWID",
            "CREATE TABLE cursor_history (
            pipeline TEXT NOT NULL,
            stream TEXT NOT NULL,
            version INTEGER NOT NULL,
            body TEXT NOT NULL,
            PRIMARY KEY (pipeline, stream, version)
        ) WITHOUT ROWID",
            "CREATE TABLE schema_versions (
            pipeline TEXT NOT NULL,
            stream TEXT NOT NULL,
            version INTEGER NOT NULL,
            body TEXT NOT NULL,
            PRIMARY KEY (pipeline, stream, version)
        ) WITHOUT ROWID",
            "CREATE TABLE decisions (
            id INTEGER PRIMARY KEY,
            pipeline TEXT NOT NULL,
            stream TEXT NOT NULL,
            held INTEGER NOT NULL,
            body TEXT NOT NULL
        )",
            "CREATE INDEX decisions_by_pipeline ON decisions (pipeline, id)",
            // The reconciler asks for held decisions of every pipeline on every tick.
            "CREATE INDEX decisions_held ON decisions (pipeline, id) WHERE held = 1",
            // `seq` is the rowid: SQLite assigns max + 1, and rows are never deleted, so the log has
            // no gaps (a rolled-back insert consumes nothing, unlike AUTOINCREMENT).
            "CREATE TABLE events (
            seq INTEGER PRIMARY KEY,
            at INTEGER NOT NULL,
            actor TEXT NOT NULL,
            pipeline TEXT NOT NULL,
            kind TEXT NOT NULL
        )",
        ],
    },
    Migration {
        version: 2,
        name: "runs_by_pipeline_status",
        // Listing one pipeline's runs with one status read every run of the pipeline to find a page
        // of them; this keeps it a keyset scan (`store/pages_at_scale.rs`).
        statements: &["CREATE INDEX runs_by_pipeline_status ON runs (pipeline, status, id)"],
    },
    Migration {
        version: 3,
        name: "events_by_pipeline",
        // One pipeline's slice of the event log (`Catalog::pipeline_events`, the live event
        // stream's filter) as a range scan (`store/pages_at_scale.rs`).
        statements: &["CREATE INDEX events_by_pipeline ON events (pipeline, seq)"],
    },
];

/// Creates the tracking table and applies every pending migration. Run it inside an atomic unit.
///
/// # Errors
/// The host's error; or [`Error::Backend`] if the database is newer than this code.
pub(crate) fn migrate(exec: &mut impl Exec, now: Timestamp) -> Result<()> {
    exec.execute(
        "CREATE TABLE IF NOT EXISTS migrations (
            version INTEGER PRIMARY KEY,
            name TEXT NOT NULL,
            applied_at INTEGER NOT NULL
        )",
        &[],
    )?;
    let applied = applied(exec)?;
    for migration in MIGRATIONS.iter().filter(|m| m.version > applied) {
        for statement in migration.statements {
            exec.execute(statement, &[])?;
        }
        exec.execute(
            "INSERT INTO migrations (version, name, applied_at) VALUES (?, ?, ?)",
            params![migration.version, migration.name, now.as_millis()],
        )?;
    }
    Ok(())
}

/// Whether the database is at this build's schema, found by reading only.
pub(crate) fn is_current(exec: &mut impl Exec) -> Result<bool> {
    let tracked = exec
        .query_row(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'migrations'",
            &[],
        )?
        .is_some();
    Ok(tracked && applied(exec)? == latest())
}

fn latest() -> i64 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

/// The newest migration applied; refuses a database migrated by a newer build.
fn applied(exec: &mut impl Exec) -> Result<i64> {
    let applied = exec
        .query_row("SELECT COALESCE(MAX(version), 0) FROM migrations", &[])?
        .map_or(Ok(0), |row| row.int(0))?;
    let latest = latest();
    if applied > latest {
        return Err(Error::Backend(format!(
            "the catalog database is at schema version {applied}, newer than this build's {latest}; upgrade Hakiri"
        )));
    }
    Ok(applied)
}
