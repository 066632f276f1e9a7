//! Runs: begin, finish (the transactional path; the one-statement path is `finish`), read, list.

use std::sync::LazyLock;

use hakiri_core::run::{check_writable, plan_begin, plan_finish, Beginning};
use hakiri_core::{
    BeginRun, Entity, Error, FinishRun, Lease, Page, PipelineId, Result, Run, RunId, RunQuery,
};
use sqlx::types::Json;
use sqlx::Row;
use uuid::Uuid;

use super::cursors::{CursorBatch, CURSOR_WRITES};
use super::rows::{to_i64, to_json, values, CursorTriples, FinishReadRow};
use super::{append_events, not_recorded_as_running, Tx, NOW_MS, PIPELINE_COLUMNS};
use crate::error::db;
use crate::PostgresCatalog;

/// How many times a finish re-reads and retries after a concurrent writer of the same pipeline
/// (sharing its lease) changed a cursor between its read and its write.
const FINISH_ATTEMPTS: usize = 4;

/// A SQL expression: the cursors of pipeline `$2` of project `$1` as a JSON array of
/// `[stream, version, value]` ([`CursorTriples`]), NULL when it has none.
pub(crate) const CURSORS_OF_PIPELINE: &str =
    "(SELECT json_agg(json_build_array(c.stream, c.version, c.value)) \
      FROM cursors c WHERE c.project = $1 AND c.pipeline = $2)";

/// The cursors of a pipeline ([`CURSORS_OF_PIPELINE`]), for a run's begin.
///
/// | param | meaning |
/// |---|---|
/// | `$1` | project |
/// | `$2` | pipeline |
static READ_CURSORS: LazyLock<String> = LazyLock::new(|| format!("SELECT {CURSORS_OF_PIPELINE}"));

/// Starts a run and records it as the pipeline's running and newest run.
///
/// | param | meaning |
/// |---|---|
/// | `$1` | project |
/// | `$2` | pipeline |
/// | `$3` | run |
/// | `$4` | its status |
/// | `$5` | its document, as JSON text |
const INSERT_RUN: &str = "WITH r AS (INSERT INTO runs (project, id, pipeline, status, body) \
                VALUES ($1, $3, $2, $4, $5::json)) \
     UPDATE pipelines SET running_run = $3, last_run = $3 WHERE project = $1 AND id = $2";

/// Rewrites a run's status and document.
///
/// | param | meaning |
/// |---|---|
/// | `$1` | project |
/// | `$2` | run |
/// | `$3` | its status |
/// | `$4` | its document, as JSON text |
const UPDATE_RUN: &str =
    "UPDATE runs SET status = $3, body = $4::json WHERE project = $1 AND id = $2";

/// The transactional finish's one read ([`FinishReadRow`]): it locks the pipeline's row, then reads
/// the clock, the run's record and the pipeline's cursors.
///
/// | param | meaning |
/// |---|---|
/// | `$1` | project |
/// | `$2` | pipeline |
/// | `$3` | run |
pub(crate) static READ_FOR_FINISH: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH p AS MATERIALIZED (SELECT {PIPELINE_COLUMNS} FROM pipelines \
           WHERE project = $1 AND id = $2 FOR UPDATE) \
         SELECT {NOW_MS} AS now, p.*, \
           (SELECT body FROM runs WHERE project = $1 AND id = $3) AS run_body, \
           {CURSORS_OF_PIPELINE} AS cursors \
         FROM (VALUES (1)) AS one(x) LEFT JOIN p ON true"
    )
});

/// The transactional finish's writes, under the pipeline's lock: the cursor writes
/// ([`CURSOR_WRITES`], compare-and-set on each version), the run's status and document, the
/// pipeline's running run and cursor count, and the events. Returns how many cursors were written
/// (`written`).
///
/// | param | meaning |
/// |---|---|
/// | `$1`–`$9` | as in [`CURSOR_WRITES`] (`$3` is the finished run) |
/// | `$10` | the run's status |
/// | `$11` | its document, as JSON text |
/// | `$12`–`$17` | the events ([`EventColumns`](super::EventColumns)) |
static FINISH_WRITES: LazyLock<String> = LazyLock::new(|| {
    format!(
        "{CURSOR_WRITES}, \
         r AS (UPDATE runs SET status = $10, body = $11::json WHERE project = $1 AND id = $3), \
         p AS (UPDATE pipelines SET running_run = NULL, \
           cursor_count = cursor_count + (SELECT count(*) FROM w WHERE version = 1) \
           WHERE project = $1 AND id = $2), \
         e AS ({}) \
         SELECT count(*) AS written FROM w",
        append_events("$9", 12)
    )
});

/// The `list_runs` statement for a filter combination. Each combination has its own statement and
/// an index ending in `id`, so every listing is a backwards keyset scan (a statement with optional
/// filters would get one generic plan for all of them). The listing indexes are partial: each
/// statement names their condition (`run_listing!`).
///
/// | param | meaning |
/// |---|---|
/// | `$1` | project |
/// | `$2` | before this run (exclusive) |
/// | `$3` | limit |
/// | `$4` | pipeline (compared only `by_pipeline`) |
/// | `$5` | status (compared only `by_status`) |
pub(crate) fn runs_page(by_pipeline: bool, by_status: bool) -> String {
    let filter = match (by_pipeline, by_status) {
        (false, false) => "",
        (true, false) => " AND pipeline = $4",
        (false, true) => " AND status = $5",
        (true, true) => " AND pipeline = $4 AND status = $5",
    };
    format!(
        "SELECT body FROM runs WHERE project = $1 AND id < $2{filter} AND {} \
         ORDER BY id DESC LIMIT $3",
        run_listing!()
    )
}

impl PostgresCatalog {
    /// Rewrites `run`'s record under the transaction's lock.
    pub(crate) async fn save_run(&self, tx: &mut Tx, run: &Run) -> Result<()> {
        sqlx::query(UPDATE_RUN)
            .bind(self.project_str())
            .bind(*run.id.as_uuid())
            .bind(run.status.to_string())
            .bind(to_json(run)?)
            .execute(&mut *tx.inner)
            .await
            .map_err(db)?;
        Ok(())
    }

    /// Begins a run ([`Catalog::begin_run`](hakiri_core::Catalog::begin_run)).
    pub(crate) async fn op_begin_run(&self, lease: &Lease, begin: BeginRun) -> Result<Run> {
        let (mut tx, row) = self.begin_locked(&lease.pipeline).await?;
        let row = Self::fenced(row, lease, tx.now)?;
        let cursors: Option<Json<CursorTriples>> = sqlx::query_scalar(READ_CURSORS.as_str())
            .bind(self.project_str())
            .bind(lease.pipeline.as_str())
            .fetch_one(&mut *tx.inner)
            .await
            .map_err(db)?;
        let cursors = cursors.map(|c| c.0).unwrap_or_default();
        // Random bytes: several processes begin runs.
        let mut entropy = [0u8; 10];
        entropy.copy_from_slice(&Uuid::new_v4().into_bytes()[6..16]);
        let write = plan_begin(
            begin,
            Beginning {
                lease,
                pipeline: &row.pipeline,
                running: row.running,
                cursors: values(&cursors),
                id: RunId::next(tx.now, row.last_run, entropy),
                now: tx.now,
            },
        )?;
        let run = write.run;
        sqlx::query(INSERT_RUN)
            .bind(self.project_str())
            .bind(lease.pipeline.as_str())
            .bind(*run.id.as_uuid())
            .bind(run.status.to_string())
            .bind(to_json(&run)?)
            .execute(&mut *tx.inner)
            .await
            .map_err(db)?;
        if write.clears_request {
            let mut pipeline = row.pipeline.clone();
            pipeline.requested = None;
            self.save_pipeline(&mut tx, &pipeline).await?;
        }
        tx.emit(&write.event.0, &lease.pipeline, write.event.1);
        tx.commit(self.project_str()).await?;
        self.remember_all(
            &lease.pipeline,
            row.kind,
            cursors.into_iter().map(|(s, n, v)| (s, (v, n))),
            Some(run.clone()),
        );
        Ok(run)
    }

    /// Finishes a run: in one statement when this catalog's memory allows (`finish`), else in a
    /// transaction, retried while writers sharing the lease move cursors
    /// ([`Catalog::finish_run`](hakiri_core::Catalog::finish_run)).
    pub(crate) async fn op_finish_run(
        &self,
        lease: &Lease,
        run: RunId,
        finish: FinishRun,
    ) -> Result<Run> {
        if let Some(done) = self.finish_from_cache(lease, run, &finish).await? {
            return Ok(done);
        }
        for _ in 0..FINISH_ATTEMPTS {
            if let Some(done) = self.try_finish(lease, run, &finish).await? {
                return Ok(done);
            }
        }
        Err(Error::conflict(
            Entity::Run { run },
            "stable cursors",
            "cursors changed by concurrent writers under the same lease",
        ))
    }

    /// One attempt at a finish, in one transaction: lock and read (one statement), judge, write
    /// (one statement), commit. `None` when a cursor changed between the read and the write — only
    /// a writer holding the same lease can do that — and the attempt was rolled back.
    async fn try_finish(
        &self,
        lease: &Lease,
        run: RunId,
        finish: &FinishRun,
    ) -> Result<Option<Run>> {
        let mut inner = self.pool.begin().await.map_err(db)?;
        // The lock and the reads in one statement: the run and cursors may be read from a snapshot
        // older than the lock. Only the holder writes them; the cursor writes below compare
        // versions, and a cursor created since the snapshot shows in the locked row's
        // `cursor_count` (checked below), so a stale read makes this attempt roll back, never
        // write wrongly.
        let read: FinishReadRow = sqlx::query_as(READ_FOR_FINISH.as_str())
            .bind(self.project_str())
            .bind(lease.pipeline.as_str())
            .bind(*run.as_uuid())
            .fetch_one(&mut *inner)
            .await
            .map_err(db)?;
        let mut tx = Tx::new(inner, read.locked.now());
        let prow = Self::fenced(read.locked.pipeline()?, lease, tx.now)?;
        if prow.running != Some(run) {
            let record = read.run_body.ok_or_else(|| Error::run_not_found(run))?;
            check_writable(&record, lease)?;
            return Err(not_recorded_as_running(run));
        }
        let record = read
            .run_body
            .ok_or_else(|| Error::Backend(format!("running run {run} is missing")))?;
        let mut cursors = read.cursors.unwrap_or_default();
        if usize::try_from(prow.cursor_count).ok() != Some(cursors.len()) {
            // A cursor was created after this statement's snapshot: read again.
            return Ok(None);
        }
        let current = cursors
            .iter()
            .map(|(stream, version, value)| (stream.clone(), (value.clone(), *version)))
            .collect();
        // Every rule that can refuse runs before anything is written.
        let write = plan_finish(record, lease, prow.kind, &current, finish.clone(), tx.now)?;
        let holder = write.stamp.by.clone();
        for w in &write.cursors {
            tx.emit_write(&lease.pipeline, w, &write.stamp);
        }
        if !write.schemas.is_empty() {
            let mut pipeline = prow.pipeline.clone();
            for (stream, schema) in &write.schemas {
                self.observe(
                    &mut tx,
                    &mut pipeline,
                    Some(run),
                    &holder,
                    stream,
                    schema.clone(),
                )
                .await?;
            }
        }
        for w in &write.cursors {
            match cursors.iter_mut().find(|(s, _, _)| *s == w.stream) {
                Some(entry) => *entry = (w.stream.clone(), w.version, w.value.clone()),
                None => cursors.push((w.stream.clone(), w.version, w.value.clone())),
            }
        }
        tx.emit(&write.event.0, &lease.pipeline, write.event.1.clone());
        let (writes, record) = (write.cursors, write.run);

        let batch = CursorBatch::of(&writes)?;
        let events = tx.take_events()?;
        let query = sqlx::query(FINISH_WRITES.as_str())
            .bind(self.project_str())
            .bind(lease.pipeline.as_str())
            .bind(*run.as_uuid())
            .bind(to_i64(lease.epoch.get())?)
            .bind(to_json(&holder)?)
            .bind(batch.streams)
            .bind(batch.versions)
            .bind(batch.values)
            .bind(tx.now.as_millis())
            .bind(record.status.to_string())
            .bind(to_json(&record)?);
        let written: i64 = events
            .bind(query)
            .fetch_one(&mut *tx.inner)
            .await
            .map_err(db)?
            .try_get("written")
            .map_err(db)?;
        if usize::try_from(written).ok() != Some(writes.len()) {
            // Dropping the transaction rolls every write of this attempt back.
            self.forget(&lease.pipeline);
            return Ok(None);
        }
        tx.inner.commit().await.map_err(db)?;
        self.remember_all(
            &lease.pipeline,
            prow.kind,
            cursors.into_iter().map(|(s, n, v)| (s, (v, n))),
            None,
        );
        Ok(Some(record))
    }

    /// Reads a run ([`Catalog::get_run`](hakiri_core::Catalog::get_run)).
    pub(crate) async fn op_get_run(&self, run: RunId) -> Result<Run> {
        let body: Option<Json<Run>> =
            sqlx::query_scalar("SELECT body FROM runs WHERE project = $1 AND id = $2")
                .bind(self.project_str())
                .bind(*run.as_uuid())
                .fetch_optional(&self.pool)
                .await
                .map_err(db)?;
        body.map(|b| b.0).ok_or_else(|| Error::run_not_found(run))
    }

    /// A page of runs, newest first ([`Catalog::list_runs`](hakiri_core::Catalog::list_runs)).
    pub(crate) async fn op_list_runs(&self, query: &RunQuery) -> Result<Page<Run, RunId>> {
        let sql = runs_page(query.pipeline.is_some(), query.status.is_some());
        let before = query.before.map_or(Uuid::max(), |b| *b.as_uuid());
        let bodies: Vec<Json<Run>> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(self.project_str())
            .bind(before)
            .bind(i64::from(query.limit.get()) + 1)
            .bind(query.pipeline.as_ref().map_or("", PipelineId::as_str))
            .bind(query.status.map(|s| s.to_string()).unwrap_or_default())
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        let items = bodies.into_iter().map(|b| b.0).collect();
        Ok(Page::from_overfetch(items, query.limit, |r| r.id))
    }
}
