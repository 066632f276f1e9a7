//! Every operation of the catalog, one file per area as the contract suite has them, and what they
//! share: the transaction that holds a pipeline's row lock, and the database clock.
//!
//! A write is one transaction: it locks the pipeline's row ([`LOCK_PIPELINE`], which also reads
//! the database clock *after* the lock is held), reads in later statements — each of which sees
//! everything committed before the lock — what the `hakiri-core` rule needs, asks the rule, and
//! writes the outcome; its events go in with one statement just before `COMMIT`. Lease checks thus
//! happen in the same transaction as the write, under the lock every other writer of the pipeline
//! must take. Reads are single statements. Two hot paths write in one statement instead, guarded
//! in SQL by what the rule judged from this catalog's memory: `advance` and `finish`.
//!
//! # Layout
//! - this file: [`Tx`], the pipeline lock, the project's counters and the lease check.
//! - `rows`: the row models every read decodes into, and the column conversions.
//! - `pipelines`, `leases`, `runs`, `cursors`, `schemas` (schemas and decisions), `events` (the
//!   event log and the reconciler's status page): the operations of each area.
//! - `archive`: the reads of an export and an import's batches.
//! - `advance`: a checkpoint in one statement (ADR 0009), and the cache of cursors it plans on.
//! - `finish`: a run's finish in one statement (ADR 0014).

use hakiri_core::lease::check_fence;
use hakiri_core::run::check_writable;
use hakiri_core::{
    Actor, CursorHistoryEntry, CursorWrite, Error, EventKind, Lease, PipelineId, Result, RunId,
    StreamName, Timestamp, WriteStamp,
};
use sqlx::Postgres;

use crate::error::db;
use crate::PostgresCatalog;
use rows::{to_i64, to_json, to_u64, LockedRow, PipelineRow};

/// The condition the runs' listing indexes are partial on (migration 8, ADR 0043). Every run
/// meets it; only a statement that names it can use those indexes, so a lookup by id has the
/// primary key alone whatever the planner's statistics say. Every statement that reads runs by
/// pipeline or status names it, with the table's alias if it has one.
macro_rules! run_listing {
    () => {
        "status <> ''"
    };
    ($alias:literal) => {
        concat!($alias, ".status <> ''")
    };
}

pub(crate) mod advance;
mod archive;
mod cursors;
mod events;
mod finish;
mod leases;
mod pipelines;
pub(crate) mod rows;
mod runs;
mod schemas;

#[cfg(test)]
pub(crate) use cursors::CURSOR_HISTORY_PAGE;
#[cfg(test)]
pub(crate) use events::{EVENTS_PAGE, PIPELINE_EVENTS_BEFORE, PIPELINE_EVENTS_PAGE, STATUS_PAGE};
#[cfg(test)]
pub(crate) use runs::runs_page;

/// The database clock in integer milliseconds (ADR 0007), for statements to include.
/// `clock_timestamp()`, not `now()`: evaluated when the statement gets there (after a lock wait),
/// not when the transaction began.
pub(crate) const NOW_MS: &str = "floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint";

/// The columns of `pipelines` that [`LockedRow`] decodes.
const PIPELINE_COLUMNS: &str = "body, cursor_kind, lease_epoch, lease_holder, lease_expires_at, \
     running_run, last_run, cursor_count";

/// Locks a pipeline's row for update and reads it, then the database clock: one row, the clock
/// beside NULLs when there is no such pipeline (and nothing is locked).
///
/// | param | meaning |
/// |---|---|
/// | `$1` | project |
/// | `$2` | pipeline |
static LOCK_PIPELINE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "WITH p AS MATERIALIZED (SELECT {PIPELINE_COLUMNS} FROM pipelines \
           WHERE project = $1 AND id = $2 FOR UPDATE) \
         SELECT {NOW_MS} AS now, p.* FROM (VALUES (1)) AS one(x) LEFT JOIN p ON true"
    )
});

/// The statement that appends events in order (identities are drawn in the order rows are
/// inserted), at `at` (an SQL expression), from the arrays [`EventColumns`] binds as `$first` to
/// `$first + 5`: actors, pipelines and kinds as JSON texts, then each cursor write's stream,
/// version and history entry (NULL for other events; ADR 0038).
pub(crate) fn append_events(at: &str, first: usize) -> String {
    let [a, p, k, s, v, h] = std::array::from_fn(|i| first + i);
    format!(
        "INSERT INTO events (project, at, actor, pipeline, kind, stream, version, history) \
         SELECT $1, {at}, t.actor::json, t.pipeline, t.kind::json, t.stream, t.version, \
           t.history::json \
         FROM unnest(${a}::text[], ${p}::text[], ${k}::text[], ${s}::text[], ${v}::bigint[], \
           ${h}::text[]) WITH ORDINALITY AS t(actor, pipeline, kind, stream, version, history, n) \
         ORDER BY t.n"
    )
}

/// Appends events ([`append_events`]): `$1` project, `$2` when (the transaction's clock), `$3`
/// to `$8` the [`EventColumns`].
static INSERT_EVENTS: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| append_events("$2", 3));

/// `Timestamp`'s text (RFC 3339, UTC, milliseconds, `Z`) of `ms`, an SQL expression in epoch
/// milliseconds, as `to_char` writes it.
pub(crate) fn timestamp_text(ms: &str) -> String {
    format!(
        "to_char((timestamptz 'epoch' + {ms} * interval '1 ms') AT TIME ZONE 'UTC', \
         'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"
    )
}

/// A document stamped with the database clock: `doc` (an SQL expression) is its JSON text
/// without `field` ([`rows::without_field`]; [`rows::unstamped`] for a history entry's `at`), and
/// `field` is put first, the `Timestamp` of `ms`.
/// Text is spliced, not JSON taken apart: Postgres's JSON functions refuse a `\u0000` in any
/// string of a document, which cursor values and run errors may hold.
pub(crate) fn stamped(field: &str, doc: &str, ms: &str) -> String {
    format!(
        "('{{\"{field}\":' || to_json({})::text || ',' || substr({doc}, 2))::json",
        timestamp_text(ms)
    )
}

/// Draws the project's next value of a counter, locking its row until the transaction ends.
///
/// | param | meaning |
/// |---|---|
/// | `$1` | project |
/// | `$2` | counter: `epoch` or `decision` |
const DRAW: &str = "INSERT INTO counters AS c (project, name, value) VALUES ($1, $2, 1) \
     ON CONFLICT (project, name) DO UPDATE SET value = c.value + 1 RETURNING value";

/// Events as the arrays [`append_events`] binds, in order.
#[derive(Default)]
pub(crate) struct EventColumns {
    actors: Vec<String>,
    pipelines: Vec<String>,
    kinds: Vec<String>,
    streams: Vec<Option<String>>,
    versions: Vec<Option<i64>>,
    histories: Vec<Option<String>>,
}

impl EventColumns {
    /// Binds the arrays, in [`append_events`]' order.
    pub(crate) fn bind<'q>(
        self,
        query: sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments> {
        query
            .bind(self.actors)
            .bind(self.pipelines)
            .bind(self.kinds)
            .bind(self.streams)
            .bind(self.versions)
            .bind(self.histories)
    }
}

/// An event a transaction appends when it commits, with the history entry of the cursor write it
/// records, if it records one.
struct Pending {
    actor: Actor,
    pipeline: PipelineId,
    kind: EventKind,
    history: Option<(StreamName, CursorHistoryEntry)>,
}

/// A transaction holding a pipeline's row lock, with the database clock read under that lock
/// and the events to append before it commits.
pub(crate) struct Tx {
    pub(crate) inner: sqlx::Transaction<'static, Postgres>,
    pub(crate) now: Timestamp,
    events: Vec<Pending>,
}

impl Tx {
    /// The transaction `inner`, holding a pipeline's row lock, under which the clock read `now`.
    pub(crate) fn new(inner: sqlx::Transaction<'static, Postgres>, now: Timestamp) -> Self {
        Self {
            inner,
            now,
            events: Vec::new(),
        }
    }

    /// Queues an event, appended when the transaction commits.
    pub(crate) fn emit(&mut self, actor: &Actor, pipeline: &PipelineId, kind: EventKind) {
        self.events.push(Pending {
            actor: actor.clone(),
            pipeline: pipeline.clone(),
            kind,
            history: None,
        });
    }

    /// Queues the event recording a cursor write, which carries the write's history entry
    /// (ADR 0038).
    pub(crate) fn emit_write(
        &mut self,
        pipeline: &PipelineId,
        write: &CursorWrite,
        stamp: &WriteStamp,
    ) {
        self.events.push(Pending {
            actor: stamp.by.clone(),
            pipeline: pipeline.clone(),
            kind: write.event(),
            history: Some((write.stream.clone(), write.history_entry(stamp))),
        });
    }

    /// Takes the pending events, as the arrays [`append_events`] binds.
    pub(crate) fn take_events(&mut self) -> Result<EventColumns> {
        let mut c = EventColumns::default();
        for e in self.events.drain(..) {
            c.actors.push(to_json(&e.actor)?);
            c.pipelines.push(e.pipeline.as_str().to_owned());
            c.kinds.push(to_json(&e.kind)?);
            let (stream, version, history) = match e.history {
                Some((stream, entry)) => (
                    Some(stream.as_str().to_owned()),
                    Some(to_i64(entry.version)?),
                    Some(to_json(&entry)?),
                ),
                None => (None, None, None),
            };
            c.streams.push(stream);
            c.versions.push(version);
            c.histories.push(history);
        }
        Ok(c)
    }

    /// Appends the pending events of `project` and commits.
    pub(crate) async fn commit(mut self, project: &str) -> Result<()> {
        if !self.events.is_empty() {
            let query = sqlx::query(INSERT_EVENTS.as_str())
                .bind(project)
                .bind(self.now.as_millis());
            self.take_events()?
                .bind(query)
                .execute(&mut *self.inner)
                .await
                .map_err(db)?;
        }
        self.inner.commit().await.map_err(db)
    }
}

impl PostgresCatalog {
    /// The project, as the statements bind it.
    pub(crate) fn project_str(&self) -> &str {
        self.project.as_str()
    }

    /// Draws the project's next `counter` (`epoch` or `decision`) in `tx`: its row stays locked
    /// until `tx` ends, so draws are ordered as their transactions commit, and a rolled-back draw
    /// leaves no gap.
    pub(crate) async fn draw(&self, tx: &mut Tx, counter: &str) -> Result<u64> {
        let next: i64 = sqlx::query_scalar(DRAW)
            .bind(self.project_str())
            .bind(counter)
            .fetch_one(&mut *tx.inner)
            .await
            .map_err(db)?;
        to_u64(next, counter)
    }

    /// Begins a transaction and locks `id`'s row; `None` if there is no such pipeline (nothing is
    /// locked then, so a create races on the primary key instead).
    pub(crate) async fn begin_locked(&self, id: &PipelineId) -> Result<(Tx, Option<PipelineRow>)> {
        let mut inner = self.pool.begin().await.map_err(db)?;
        let row: LockedRow = sqlx::query_as(LOCK_PIPELINE.as_str())
            .bind(self.project_str())
            .bind(id.as_str())
            .fetch_one(&mut *inner)
            .await
            .map_err(db)?;
        let tx = Tx::new(inner, row.now());
        Ok((tx, row.pipeline()?))
    }

    /// The pipeline row, if `lease` is valid by the database clock read under the lock.
    pub(crate) fn fenced(
        row: Option<PipelineRow>,
        lease: &Lease,
        now: Timestamp,
    ) -> Result<PipelineRow> {
        check_fence(row.as_ref().and_then(|r| r.lease.as_ref()), lease, now)?;
        row.ok_or_else(|| Error::pipeline_not_found(&lease.pipeline))
    }

    /// Why `run` cannot be written under `lease` when it is not the pipeline's running run.
    pub(crate) async fn run_error(&self, lease: &Lease, run: RunId) -> Error {
        match self.op_get_run(run).await {
            Ok(record) => match check_writable(&record, lease) {
                Err(e) => e,
                Ok(()) => not_recorded_as_running(run),
            },
            Err(e) => e,
        }
    }

    /// Forgets the cached cursors of `pipeline` (its lease or cursors changed elsewhere).
    pub(crate) fn forget(&self, pipeline: &PipelineId) {
        if let Ok(mut cache) = self.cursors.lock() {
            cache.remove(pipeline);
        }
    }
}

/// The error for a run that the rules let write but the pipeline does not record as running:
/// only a bug in the catalog gets there.
pub(crate) fn not_recorded_as_running(run: RunId) -> Error {
    Error::Backend(format!(
        "run {run} is running but not recorded as the pipeline's running run"
    ))
}
