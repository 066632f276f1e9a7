//! Cursors: read one, list a pipeline's, page a cursor's history, reset one — and the
//! compare-and-set writes a reset and the transactional finish share.

use std::sync::LazyLock;

use hakiri_core::cursor::plan_reset;
use hakiri_core::{
    Actor, Cursor, CursorHistoryEntry, CursorReset, CursorValue, CursorWrite, Error, Lease, Limit,
    Page, PipelineId, ResetTarget, Result, RunId, StreamName, WriteStamp,
};

use super::rows::{to_i64, to_json, FoundCursorRow, HistoryRow, ResetRow, StreamCursorRow};
use super::Tx;
use crate::error::db;
use crate::PostgresCatalog;

/// The cursor columns [`CursorColumns`](super::rows::CursorColumns) decodes, from a table
/// aliased `c`.
pub(crate) const CURSOR_COLUMNS: &str =
    "c.version, c.value, c.run, c.epoch, c.updated_by, c.updated_at";

/// Whether a pipeline exists, and one of its cursors ([`FoundCursorRow`]).
///
/// | param | meaning |
/// |---|---|
/// | `$1` | project |
/// | `$2` | pipeline |
/// | `$3` | stream |
static READ_CURSOR: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT EXISTS (SELECT 1 FROM pipelines WHERE project = $1 AND id = $2) AS found, \
           {CURSOR_COLUMNS} \
         FROM (VALUES (1)) AS one(x) LEFT JOIN cursors c \
           ON c.project = $1 AND c.pipeline = $2 AND c.stream = $3"
    )
});

/// A pipeline's cursors by stream ([`StreamCursorRow`]): no row when there is no such pipeline,
/// one row of NULLs when it has no cursor.
///
/// | param | meaning |
/// |---|---|
/// | `$1` | project |
/// | `$2` | pipeline |
static LIST_CURSORS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT c.stream, {CURSOR_COLUMNS} \
         FROM pipelines p LEFT JOIN cursors c ON c.project = p.project AND c.pipeline = p.id \
         WHERE p.project = $1 AND p.id = $2 ORDER BY c.stream"
    )
});

/// A page of a cursor's history, newest first ([`HistoryRow`]): one row of NULLs when the page is
/// empty, no row when there is no such pipeline. A range of `events_history`: each cursor write's
/// history entry is kept in its event (ADR 0038).
///
/// | param | meaning |
/// |---|---|
/// | `$1` | project |
/// | `$2` | pipeline |
/// | `$3` | stream |
/// | `$4` | before this version (exclusive) |
/// | `$5` | limit |
pub(crate) const CURSOR_HISTORY_PAGE: &str = "SELECT h.history \
     FROM pipelines p LEFT JOIN LATERAL ( \
       SELECT e.version, e.history FROM events e WHERE e.project = $1 AND e.pipeline = $2 \
         AND e.stream = $3 AND e.version < $4 ORDER BY e.version DESC LIMIT $5) h ON true \
     WHERE p.project = $1 AND p.id = $2 ORDER BY h.version DESC";

/// What a reset needs ([`ResetRow`]): the stream's cursor, and the history entry of the version
/// it goes back to.
///
/// | param | meaning |
/// |---|---|
/// | `$1` | project |
/// | `$2` | pipeline |
/// | `$3` | stream |
/// | `$4` | the version reset to (0 when the reset names none) |
const READ_FOR_RESET: &str = "SELECT c.version, c.value, \
       (SELECT e.history FROM events e WHERE e.project = $1 AND e.pipeline = $2 \
          AND e.stream = $3 AND e.version = $4) AS old \
     FROM (VALUES (1)) AS one(x) LEFT JOIN cursors c \
       ON c.project = $1 AND c.pipeline = $2 AND c.stream = $3";

/// The cursor writes of one pipeline, as the first common table expression of a statement that
/// goes on with `, name AS (…) SELECT …`: `w` writes each cursor only if its stored version is the
/// one before (compare-and-set; a new stream's version 1 inserts) and returns the streams and
/// versions written. Their history goes with their events ([`Tx::emit_write`]).
///
/// | param | meaning |
/// |---|---|
/// | `$1` | project |
/// | `$2` | pipeline |
/// | `$3` | the run writing (NULL for a reset) |
/// | `$4` | the lease's epoch |
/// | `$5` | the writer, as JSON text |
/// | `$6` | streams |
/// | `$7` | their new versions |
/// | `$8` | their values, as JSON texts |
/// | `$9` | when (the transaction's clock) |
pub(crate) const CURSOR_WRITES: &str = "WITH w AS ( \
       INSERT INTO cursors (project, pipeline, stream, version, value, run, epoch, updated_by, \
         updated_at) \
       SELECT $1, $2, t.stream, t.version, t.value::json, $3, $4, $5::json, $9 \
       FROM unnest($6::text[], $7::bigint[], $8::text[]) AS t(stream, version, value) \
       ON CONFLICT (project, pipeline, stream) DO UPDATE SET version = EXCLUDED.version, \
         value = EXCLUDED.value, run = EXCLUDED.run, epoch = EXCLUDED.epoch, \
         updated_by = EXCLUDED.updated_by, updated_at = EXCLUDED.updated_at \
       WHERE cursors.version = EXCLUDED.version - 1 \
       RETURNING stream, version)";

/// The cursor writes ([`CURSOR_WRITES`], same parameters), counting the cursors they created
/// (version 1) on the pipeline's row. Returns how many were written (`written`).
static WRITE_CURSORS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "{CURSOR_WRITES}, \
         n AS (UPDATE pipelines \
           SET cursor_count = cursor_count + (SELECT count(*) FROM w WHERE version = 1) \
           WHERE project = $1 AND id = $2 AND EXISTS (SELECT 1 FROM w WHERE version = 1)) \
         SELECT count(*) AS written FROM w"
    )
});

/// Cursor writes as the arrays [`CURSOR_WRITES`] binds (`$6`–`$8`).
pub(crate) struct CursorBatch {
    pub(crate) streams: Vec<String>,
    pub(crate) versions: Vec<i64>,
    pub(crate) values: Vec<String>,
}

impl CursorBatch {
    /// The arrays of `writes`, in order.
    pub(crate) fn of(writes: &[CursorWrite]) -> Result<Self> {
        let mut batch = Self {
            streams: Vec::with_capacity(writes.len()),
            versions: Vec::with_capacity(writes.len()),
            values: Vec::with_capacity(writes.len()),
        };
        for w in writes {
            batch.streams.push(w.stream.as_str().to_owned());
            batch.versions.push(to_i64(w.version)?);
            batch.values.push(to_json(&w.value)?);
        }
        Ok(batch)
    }
}

impl PostgresCatalog {
    /// Reads a stream's cursor ([`Catalog::get_cursor`](hakiri_core::Catalog::get_cursor)).
    pub(crate) async fn op_get_cursor(
        &self,
        pipeline: &PipelineId,
        stream: &StreamName,
    ) -> Result<Option<Cursor>> {
        let row: FoundCursorRow = sqlx::query_as(READ_CURSOR.as_str())
            .bind(self.project_str())
            .bind(pipeline.as_str())
            .bind(stream.as_str())
            .fetch_one(&self.pool)
            .await
            .map_err(db)?;
        if !row.found {
            return Err(Error::pipeline_not_found(pipeline));
        }
        row.cursor.cursor(pipeline, stream)
    }

    /// Reads every cursor of a pipeline
    /// ([`Catalog::list_cursors`](hakiri_core::Catalog::list_cursors)).
    pub(crate) async fn op_list_cursors(&self, pipeline: &PipelineId) -> Result<Vec<Cursor>> {
        let rows: Vec<StreamCursorRow> = sqlx::query_as(LIST_CURSORS.as_str())
            .bind(self.project_str())
            .bind(pipeline.as_str())
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        if rows.is_empty() {
            return Err(Error::pipeline_not_found(pipeline));
        }
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            if let Some(stream) = row.stream {
                let stream = StreamName::new(stream)?;
                out.extend(row.cursor.cursor(pipeline, &stream)?);
            }
        }
        Ok(out)
    }

    /// A page of a cursor's history, newest first
    /// ([`Catalog::cursor_history`](hakiri_core::Catalog::cursor_history)).
    pub(crate) async fn op_cursor_history(
        &self,
        pipeline: &PipelineId,
        stream: &StreamName,
        before: Option<u64>,
        limit: Limit,
    ) -> Result<Page<CursorHistoryEntry, u64>> {
        let before = before.map_or(i64::MAX, |b| i64::try_from(b).unwrap_or(i64::MAX));
        let rows: Vec<HistoryRow> = sqlx::query_as(CURSOR_HISTORY_PAGE)
            .bind(self.project_str())
            .bind(pipeline.as_str())
            .bind(stream.as_str())
            .bind(before)
            .bind(i64::from(limit.get()) + 1)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        if rows.is_empty() {
            return Err(Error::pipeline_not_found(pipeline));
        }
        let mut items = Vec::with_capacity(rows.len());
        for row in rows {
            items.extend(row.entry());
        }
        Ok(Page::from_overfetch(items, limit, |e| e.version))
    }

    /// An operator's reset of a cursor
    /// ([`Catalog::reset_cursor`](hakiri_core::Catalog::reset_cursor)).
    pub(crate) async fn op_reset_cursor(
        &self,
        lease: &Lease,
        stream: &StreamName,
        reset: &CursorReset,
    ) -> Result<Cursor> {
        let (mut tx, row) = self.begin_locked(&lease.pipeline).await?;
        let prow = Self::fenced(row, lease, tx.now)?;
        let target = match reset.target {
            ResetTarget::Version(v) => i64::try_from(v).unwrap_or(i64::MAX),
            _ => 0,
        };
        let read: ResetRow = sqlx::query_as(READ_FOR_RESET)
            .bind(self.project_str())
            .bind(lease.pipeline.as_str())
            .bind(stream.as_str())
            .bind(target)
            .fetch_one(&mut *tx.inner)
            .await
            .map_err(db)?;
        let current: Option<(CursorValue, u64)> = read.current()?;
        let write = plan_reset(
            prow.kind,
            &lease.pipeline,
            stream,
            current.as_ref().map(|(v, n)| (v, *n)),
            read.old_value(),
            reset,
        )?;
        let cursor = self
            .write_cursors(&mut tx, lease, None, &reset.by, vec![write])
            .await?
            .pop()
            .ok_or_else(|| Error::Backend("a reset writes one cursor".into()))?;
        tx.commit(self.project_str()).await?;
        self.forget(&lease.pipeline);
        Ok(cursor)
    }

    /// Writes cursors under the transaction's lock ([`WRITE_CURSORS`]), and queues their events
    /// with their history.
    async fn write_cursors(
        &self,
        tx: &mut Tx,
        lease: &Lease,
        run: Option<RunId>,
        by: &Actor,
        writes: Vec<CursorWrite>,
    ) -> Result<Vec<Cursor>> {
        let batch = CursorBatch::of(&writes)?;
        let written: i64 = sqlx::query_scalar(WRITE_CURSORS.as_str())
            .bind(self.project_str())
            .bind(lease.pipeline.as_str())
            .bind(run.map(|r| *r.as_uuid()))
            .bind(to_i64(lease.epoch.get())?)
            .bind(to_json(by)?)
            .bind(batch.streams)
            .bind(batch.versions)
            .bind(batch.values)
            .bind(tx.now.as_millis())
            .fetch_one(&mut *tx.inner)
            .await
            .map_err(db)?;
        if usize::try_from(written).ok() != Some(writes.len()) {
            // Read under the pipeline's lock, so only a bug gets here.
            return Err(Error::Backend(
                "a cursor changed under the pipeline's lock".into(),
            ));
        }
        let stamp = WriteStamp {
            run,
            epoch: Some(lease.epoch),
            by: by.clone(),
            at: tx.now,
        };
        let mut out = Vec::with_capacity(writes.len());
        for w in writes {
            tx.emit_write(&lease.pipeline, &w, &stamp);
            out.push(w.cursor(&lease.pipeline, &stamp));
        }
        Ok(out)
    }
}
