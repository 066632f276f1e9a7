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
    Migration {
        version: 4,
        name: "history_in_events",
        // A cursor write's history entry moves into the event that records the write, so an
        // advance dirties the append-only end of the log instead of a scattered history leaf
        // (ADR 0038). The cursor events after a pipeline's last deletion are its current
        // incarnation's; their stream and version are in the event's JSON. The check table makes
        // the migration fail, changing nothing, if any history row found no event.
        statements: &[
            "ALTER TABLE events ADD COLUMN stream TEXT",
            "ALTER TABLE events ADD COLUMN version INTEGER",
            "ALTER TABLE events ADD COLUMN history TEXT",
            "CREATE TABLE migrating_deletions (pipeline TEXT PRIMARY KEY, seq INTEGER NOT NULL) \
             WITHOUT ROWID",
            "INSERT INTO migrating_deletions (pipeline, seq) SELECT pipeline, max(seq) FROM events \
             WHERE json_extract(kind, '$.type') = 'pipeline_deleted' GROUP BY pipeline",
            "UPDATE events SET stream = json_extract(kind, '$.stream'), \
             version = json_extract(kind, '$.version') \
             WHERE json_extract(kind, '$.type') IN ('cursor_advanced', 'cursor_reset') \
             AND seq > coalesce((SELECT seq FROM migrating_deletions d \
             WHERE d.pipeline = events.pipeline), 0)",
            "DROP TABLE migrating_deletions",
            "CREATE UNIQUE INDEX events_history ON events (pipeline, stream, version) \
             WHERE stream IS NOT NULL",
            "UPDATE events SET history = (SELECT body FROM cursor_history h \
             WHERE h.pipeline = events.pipeline AND h.stream = events.stream \
             AND h.version = events.version) WHERE stream IS NOT NULL",
            "UPDATE events SET stream = NULL, version = NULL \
             WHERE stream IS NOT NULL AND history IS NULL",
            "CREATE TABLE migrating_check (history_rows_without_their_event INTEGER \
             CHECK (history_rows_without_their_event = 0))",
            "INSERT INTO migrating_check SELECT count(*) FROM cursor_history h WHERE NOT EXISTS \
             (SELECT 1 FROM events e WHERE e.pipeline = h.pipeline AND e.stream = h.stream \
             AND e.version = h.version)",
            "DROP TABLE migrating_check",
            "DROP TABLE cursor_history",
            // An import receives a pipeline's cursor versions before the events they belong in,
            // in batches that may be resumed: they wait here until their events arrive.
            "CREATE TABLE importing_history (
            pipeline TEXT NOT NULL,
            stream TEXT NOT NULL,
            version INTEGER NOT NULL,
            body TEXT NOT NULL,
            PRIMARY KEY (pipeline, stream, version)
        ) WITHOUT ROWID",
        ],
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
