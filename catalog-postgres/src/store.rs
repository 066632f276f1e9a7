//! Every operation of the catalog except the checkpoint hot path (`advance`).
//!
//! A write is one transaction: it locks the pipeline's row (`SELECT … FOR UPDATE`, which also
//! reads the database clock *after* the lock is held), reads in later statements — each of which
//! sees everything committed before the lock — what the `hakiri-core` rule needs, asks the rule,
//! and writes the outcome; its events go in with one statement just before `COMMIT`. Lease checks
//! thus happen in the same transaction as the write, under the lock every other writer of the
//! pipeline must take. Reads are single statements.

use std::collections::BTreeMap;
use std::time::Duration;

use hakiri_core::cursor::plan_reset;
use hakiri_core::evolution::{observe, resolve, Observed};
use hakiri_core::lease::{check_fence, plan_acquire, plan_renew};
use hakiri_core::pipeline::{
    check_delete, pause_event, plan_pause, plan_put, plan_request, PutPlan,
};
use hakiri_core::run::{abandon, check_writable, plan_begin, plan_finish, Beginning};
pub(crate) use hakiri_core::CursorWrite;
use hakiri_core::{
    Actor, BeginRun, Cursor, CursorHistoryEntry, CursorKind, CursorReset, CursorValue, Decide,
    Decision, DecisionId, DecisionQuery, Entity, Epoch, Error, Event, EventKind, FinishRun,
    Generation, HolderId, Lease, LeaseState, Limit, Observation, Page, PauseChange, Pipeline,
    PipelineId, PipelineSpec, PipelineStatus, PutMode, Reason, ResetTarget, Result, Run, RunId,
    RunQuery, Schema, SchemaVersion, StatusPage, StreamName, Timestamp, Trigger, WriteStamp,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use sqlx::postgres::PgRow;
use sqlx::{Postgres, Row};
use uuid::Uuid;

use crate::error::{convert, corrupt, db};
use crate::PostgresCatalog;

/// The database clock in integer milliseconds (ADR 0007). `clock_timestamp()`, not `now()`:
/// evaluated when the statement gets there (after a lock wait), not when the transaction began.
macro_rules! now_ms {
    () => {
        "floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint"
    };
}
pub(crate) use now_ms;

/// The columns of `pipelines` that [`pipeline_from`] decodes, in order.
macro_rules! pipeline_columns {
    () => {
        "body::text AS body, cursor_kind, lease_epoch, lease_holder, lease_expires_at, running_run, \
         last_run, cursor_count"
    };
}

/// How many times a finish re-reads and retries after a concurrent writer of the same pipeline
/// (sharing its lease) changed a cursor between its read and its write.
const FINISH_ATTEMPTS: usize = 4;

// Conversions.

pub(crate) fn to_json<T: Serialize + ?Sized>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| Error::Backend(format!("cannot encode JSON: {e}")))
}

pub(crate) fn from_json<T: DeserializeOwned>(text: &str, what: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| corrupt(what, e))
}

/// Epochs, versions and sequence numbers are kept below 2^53, so they fit a `bigint`.
pub(crate) fn to_i64(n: u64) -> Result<i64> {
    i64::try_from(n).map_err(|_| Error::invalid(format!("{n} is out of range")))
}

pub(crate) fn to_u64(n: i64, what: &str) -> Result<u64> {
    u64::try_from(n).map_err(|_| corrupt(what, format!("negative value {n}")))
}

pub(crate) fn kind_text(kind: CursorKind) -> &'static str {
    match kind {
        CursorKind::Monotonic => "monotonic",
        CursorKind::Opaque => "opaque",
    }
}

pub(crate) fn kind_from(text: &str) -> Result<CursorKind> {
    match text {
        "monotonic" => Ok(CursorKind::Monotonic),
        "opaque" => Ok(CursorKind::Opaque),
        other => Err(corrupt("cursor kind", other)),
    }
}

pub(crate) fn get<'r, T>(row: &'r PgRow, column: &str) -> Result<T>
where
    T: sqlx::Decode<'r, Postgres> + sqlx::Type<Postgres>,
{
    row.try_get(column).map_err(|e| corrupt(column, e))
}

pub(crate) fn lease_from(
    epoch: Option<i64>,
    holder: Option<String>,
    expires_at: Option<i64>,
) -> Result<Option<LeaseState>> {
    let Some(epoch) = epoch else {
        return Ok(None);
    };
    Ok(Some(LeaseState {
        epoch: Epoch(to_u64(epoch, "lease epoch")?),
        holder: holder.map(HolderId::new).transpose()?,
        expires_at: Timestamp::from_millis(expires_at.unwrap_or(0)),
    }))
}

fn run_id(uuid: Option<Uuid>) -> Option<RunId> {
    uuid.map(RunId::from_uuid)
}

/// A pipeline's row: its document and hot columns.
pub(crate) struct PipelineRow {
    pub(crate) pipeline: Pipeline,
    pub(crate) kind: CursorKind,
    pub(crate) lease: Option<LeaseState>,
    pub(crate) running: Option<RunId>,
    pub(crate) last_run: Option<RunId>,
}

fn pipeline_from(row: &PgRow) -> Result<Option<PipelineRow>> {
    let Some(body) = get::<Option<String>>(row, "body")? else {
        return Ok(None);
    };
    Ok(Some(PipelineRow {
        pipeline: from_json(&body, "pipeline")?,
        kind: kind_from(&get::<String>(row, "cursor_kind")?)?,
        lease: lease_from(
            get(row, "lease_epoch")?,
            get(row, "lease_holder")?,
            get(row, "lease_expires_at")?,
        )?,
        running: run_id(get(row, "running_run")?),
        last_run: run_id(get(row, "last_run")?),
    }))
}

pub(crate) fn cursor_from(
    pipeline: &PipelineId,
    stream: &StreamName,
    row: &PgRow,
) -> Result<Option<Cursor>> {
    let Some(version) = get::<Option<i64>>(row, "c_version")? else {
        return Ok(None);
    };
    let value: String = get(row, "c_value")?;
    let by: String = get(row, "c_by")?;
    Ok(Some(Cursor {
        pipeline: pipeline.clone(),
        stream: stream.clone(),
        value: from_json(&value, "cursor value")?,
        version: to_u64(version, "cursor version")?,
        run: run_id(get(row, "c_run")?),
        epoch: get::<Option<i64>>(row, "c_epoch")?
            .map(|e| to_u64(e, "cursor epoch").map(Epoch))
            .transpose()?,
        updated_by: from_json(&by, "cursor writer")?,
        updated_at: Timestamp::from_millis(get(row, "c_at")?),
    }))
}

/// The cursor columns [`cursor_from`] decodes, from a table aliased `c`.
macro_rules! cursor_columns {
    () => {
        "c.version AS c_version, c.value::text AS c_value, c.run AS c_run, c.epoch AS c_epoch, \
         c.updated_by::text AS c_by, c.updated_at AS c_at"
    };
}
pub(crate) use cursor_columns;

/// A pipeline's cursors as `(stream, version, value)`, decoded from `json_agg` text.
type CursorRows = Vec<(StreamName, u64, CursorValue)>;

fn cursor_rows(text: Option<String>) -> Result<CursorRows> {
    match text {
        None => Ok(Vec::new()),
        Some(text) => from_json::<Vec<(StreamName, u64, CursorValue)>>(&text, "cursors"),
    }
}

/// A SQL expression aggregating the cursors of pipeline `$2` of project `$1`.
macro_rules! cursors_agg {
    () => {
        "(SELECT json_agg(json_build_array(c.stream, c.version, c.value))::text \
          FROM cursors c WHERE c.project = $1 AND c.pipeline = $2)"
    };
}

fn values(rows: &CursorRows) -> BTreeMap<StreamName, CursorValue> {
    rows.iter()
        .map(|(s, _, v)| (s.clone(), v.clone()))
        .collect()
}

/// A transaction holding a pipeline's row lock, with the database clock read under that lock
/// and the events to append before it commits.
pub(crate) struct Tx {
    pub(crate) inner: sqlx::Transaction<'static, Postgres>,
    pub(crate) now: Timestamp,
    events: Vec<(Actor, PipelineId, EventKind)>,
}

impl Tx {
    fn emit(&mut self, actor: &Actor, pipeline: &PipelineId, kind: EventKind) {
        self.events.push((actor.clone(), pipeline.clone(), kind));
    }

    /// The pending events as the three text arrays `INSERT … FROM unnest(…)` takes.
    fn take_events(&mut self) -> Result<(Vec<String>, Vec<String>, Vec<String>)> {
        let mut actors = Vec::with_capacity(self.events.len());
        let mut pipelines = Vec::with_capacity(self.events.len());
        let mut kinds = Vec::with_capacity(self.events.len());
        for (actor, pipeline, kind) in self.events.drain(..) {
            actors.push(to_json(&actor)?);
            pipelines.push(pipeline.as_str().to_owned());
            kinds.push(to_json(&kind)?);
        }
        Ok((actors, pipelines, kinds))
    }

    async fn commit(mut self, project: &str) -> Result<()> {
        if !self.events.is_empty() {
            let (actors, pipelines, kinds) = self.take_events()?;
            sqlx::query(INSERT_EVENTS)
                .bind(project)
                .bind(self.now.as_millis())
                .bind(actors)
                .bind(pipelines)
                .bind(kinds)
                .execute(&mut *self.inner)
                .await
                .map_err(db)?;
        }
        self.inner.commit().await.map_err(db)
    }
}

/// Appends events `$3` (actors), `$4` (pipelines), `$5` (kinds) of project `$1` at `$2`, in order
/// (identities are drawn in the order rows are inserted).
const INSERT_EVENTS: &str = "INSERT INTO events (project, at, actor, pipeline, kind) \
     SELECT $1, $2, t.actor::json, t.pipeline, t.kind::json \
     FROM unnest($3::text[], $4::text[], $5::text[]) WITH ORDINALITY AS t(actor, pipeline, kind, n) \
     ORDER BY t.n";

/// The `list_runs` statement for a filter combination: `$1` project, `$2` before (exclusive),
/// `$3` limit, `$4` pipeline, `$5` status. Each combination has its own statement and an index
/// ending in `id`, so every listing is a backwards keyset scan (a statement with optional filters
/// would get one generic plan for all of them).
pub(crate) fn runs_page(by_pipeline: bool, by_status: bool) -> String {
    const BASE: &str = "SELECT body::text FROM runs WHERE project = $1 AND id < $2";
    const TAIL: &str = " ORDER BY id DESC LIMIT $3";
    let filter = match (by_pipeline, by_status) {
        (false, false) => "",
        (true, false) => " AND pipeline = $4",
        (false, true) => " AND status = $5",
        (true, true) => " AND pipeline = $4 AND status = $5",
    };
    format!("{BASE}{filter}{TAIL}")
}

/// A page of a cursor's history, newest first: `$1` project, `$2` pipeline, `$3` stream, `$4`
/// before (exclusive), `$5` limit. One row of NULLs when the pipeline has none; no row when the
/// pipeline does not exist.
pub(crate) const CURSOR_HISTORY_PAGE: &str =
    "SELECT h.version, h.value::text AS value, h.change::text AS change, h.run, h.epoch, \
            h.by_actor::text AS by_actor, h.at \
     FROM pipelines p LEFT JOIN LATERAL ( \
       SELECT * FROM cursor_history h WHERE h.project = $1 AND h.pipeline = $2 \
         AND h.stream = $3 AND h.version < $4 ORDER BY h.version DESC LIMIT $5) h ON true \
     WHERE p.project = $1 AND p.id = $2 ORDER BY h.version DESC";

/// A page of the reconciler snapshot: `$1` project, `$2` after (exclusive), `$3` limit — the page
/// of pipelines (primary key range), each one's newest run by primary key (`last_run`), and its
/// held decisions through the partial index.
pub(crate) const STATUS_PAGE: &str = concat!(
    "SELECT ",
    now_ms!(),
    " AS now, p.body::text AS body, p.lease_epoch, p.lease_holder, p.lease_expires_at, \
       r.body::text AS last_run, \
       ARRAY(SELECT d.id FROM decisions d WHERE d.project = $1 AND d.pipeline = p.id \
             AND d.held ORDER BY d.id) AS held \
     FROM (VALUES (1)) AS one(x) \
     LEFT JOIN (SELECT * FROM pipelines WHERE project = $1 AND id > $2 ORDER BY id LIMIT $3) p \
       ON true \
     LEFT JOIN runs r ON r.project = $1 AND r.id = p.last_run \
     ORDER BY p.id"
);

/// A page of the numbered event log: `$1` project, `$2` after (exclusive), `$3` limit.
pub(crate) const EVENTS_PAGE: &str =
    "SELECT seq, at, actor::text AS actor, pipeline, kind::text AS kind FROM events \
     WHERE project = $1 AND seq > $2 ORDER BY seq LIMIT $3";

/// The cursor writes of pipeline `$2` (project `$1`): cursors `$6` (streams), `$7` (versions),
/// `$8` (values), `$9` (changes), each only if the stored version is the one before
/// (compare-and-set), as written by run `$3` under epoch `$4`, actor `$5`, at `$10` — `w` returns
/// the written streams and versions — and the history of those written (`h`).
macro_rules! cursor_writes {
    () => {
        "WITH w AS ( \
           INSERT INTO cursors (project, pipeline, stream, version, value, run, epoch, updated_by, updated_at) \
           SELECT $1, $2, t.stream, t.version, t.value::json, $3, $4, $5::json, $10 \
           FROM unnest($6::text[], $7::bigint[], $8::text[]) AS t(stream, version, value) \
           ON CONFLICT (project, pipeline, stream) DO UPDATE SET version = EXCLUDED.version, \
             value = EXCLUDED.value, run = EXCLUDED.run, epoch = EXCLUDED.epoch, \
             updated_by = EXCLUDED.updated_by, updated_at = EXCLUDED.updated_at \
           WHERE cursors.version = EXCLUDED.version - 1 \
           RETURNING stream, version), \
         h AS ( \
           INSERT INTO cursor_history (project, pipeline, stream, version, value, change, run, epoch, by_actor, at) \
           SELECT $1, $2, t.stream, t.version, t.value::json, t.change::json, $3, $4, $5::json, $10 \
           FROM unnest($6::text[], $7::bigint[], $8::text[], $9::text[]) AS t(stream, version, value, change) \
           WHERE t.stream IN (SELECT stream FROM w)), "
    };
}

/// The cursor writes ([`cursor_writes!`]), counting the cursors they created (version 1) on the
/// pipeline's row. Returns how many were written.
const WRITE_CURSORS: &str = concat!(
    cursor_writes!(),
    "n AS (UPDATE pipelines SET cursor_count = cursor_count + (SELECT count(*) FROM w WHERE version = 1) \
       WHERE project = $1 AND id = $2 AND EXISTS (SELECT 1 FROM w WHERE version = 1)) \
     SELECT count(*) AS written FROM w"
);

/// A finish's writes: the cursor writes ([`cursor_writes!`]), the run's status `$11` and document
/// `$12`, the pipeline's running run and cursor count, and the events — actors `$13`, pipelines
/// `$14`, kinds `$15`, in order. Returns how many cursors were written.
const FINISH_WRITES: &str = concat!(
    cursor_writes!(),
    "r AS (UPDATE runs SET status = $11, body = $12::json WHERE project = $1 AND id = $3), \
     p AS (UPDATE pipelines SET running_run = NULL, \
       cursor_count = cursor_count + (SELECT count(*) FROM w WHERE version = 1) \
       WHERE project = $1 AND id = $2), \
     e AS (INSERT INTO events (project, at, actor, pipeline, kind) \
       SELECT $1, $10, t.actor::json, t.pipeline, t.kind::json \
       FROM unnest($13::text[], $14::text[], $15::text[]) WITH ORDINALITY AS t(actor, pipeline, kind, n) \
       ORDER BY t.n) \
     SELECT count(*) AS written FROM w"
);

pub(crate) struct CursorBatch {
    pub(crate) streams: Vec<String>,
    pub(crate) versions: Vec<i64>,
    pub(crate) values: Vec<String>,
    pub(crate) changes: Vec<String>,
}

impl CursorBatch {
    pub(crate) fn of(writes: &[CursorWrite]) -> Result<Self> {
        let mut batch = Self {
            streams: Vec::new(),
            versions: Vec::new(),
            values: Vec::new(),
            changes: Vec::new(),
        };
        for w in writes {
            batch.streams.push(w.stream.as_str().to_owned());
            batch.versions.push(to_i64(w.version)?);
            batch.values.push(to_json(&w.value)?);
            batch.changes.push(to_json(&w.change)?);
        }
        Ok(batch)
    }
}

impl PostgresCatalog {
    fn project_str(&self) -> &str {
        self.project.as_str()
    }

    /// Begins a transaction and locks `id`'s row; `None` if there is no such pipeline (nothing is
    /// locked then, so a create races on the primary key instead).
    /// Draws the project's next `counter` (`epoch` or `decision`) in `tx`: its row stays locked
    /// until `tx` ends, so draws are ordered as their transactions commit, and a rolled-back draw
    /// leaves no gap.
    async fn draw(&self, tx: &mut Tx, counter: &str) -> Result<u64> {
        let next: i64 = sqlx::query_scalar(
            "INSERT INTO counters AS c (project, name, value) VALUES ($1, $2, 1) \
             ON CONFLICT (project, name) DO UPDATE SET value = c.value + 1 RETURNING value",
        )
        .bind(self.project_str())
        .bind(counter)
        .fetch_one(&mut *tx.inner)
        .await
        .map_err(db)?;
        to_u64(next, counter)
    }

    async fn begin_locked(&self, id: &PipelineId) -> Result<(Tx, Option<PipelineRow>)> {
        let mut inner = self.pool.begin().await.map_err(db)?;
        let sql = concat!(
            "WITH p AS MATERIALIZED (SELECT ",
            pipeline_columns!(),
            " FROM pipelines WHERE project = $1 AND id = $2 FOR UPDATE) SELECT ",
            now_ms!(),
            " AS now, p.* FROM (VALUES (1)) AS one(x) LEFT JOIN p ON true"
        );
        let row = sqlx::query(sql)
            .bind(self.project_str())
            .bind(id.as_str())
            .fetch_one(&mut *inner)
            .await
            .map_err(db)?;
        let now = Timestamp::from_millis(get(&row, "now")?);
        let pipeline = pipeline_from(&row)?;
        Ok((
            Tx {
                inner,
                now,
                events: Vec::new(),
            },
            pipeline,
        ))
    }

    async fn save_pipeline(&self, tx: &mut Tx, pipeline: &Pipeline) -> Result<()> {
        sqlx::query(
            "UPDATE pipelines SET body = $3::json, generation = $4, cursor_kind = $5 \
             WHERE project = $1 AND id = $2",
        )
        .bind(self.project_str())
        .bind(pipeline.id().as_str())
        .bind(to_json(pipeline)?)
        .bind(to_i64(pipeline.generation.get())?)
        .bind(kind_text(pipeline.spec.cursor_kind))
        .execute(&mut *tx.inner)
        .await
        .map_err(db)?;
        Ok(())
    }

    /// The pipeline row, if `lease` is valid by the database clock read under the lock.
    fn fenced(row: Option<PipelineRow>, lease: &Lease, now: Timestamp) -> Result<PipelineRow> {
        check_fence(row.as_ref().and_then(|r| r.lease.as_ref()), lease, now)?;
        row.ok_or_else(|| Error::pipeline_not_found(&lease.pipeline))
    }

    /// Why `run` cannot be written under `lease` when it is not the pipeline's running run.
    pub(crate) async fn run_error(&self, lease: &Lease, run: RunId) -> Error {
        match self.op_get_run(run).await {
            Ok(record) => match check_writable(&record, lease) {
                Err(e) => e,
                Ok(()) => Error::Backend(format!(
                    "run {run} is running but not recorded as the pipeline's running run"
                )),
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

    // Pipelines.

    pub(crate) async fn op_put_pipeline(
        &self,
        spec: PipelineSpec,
        mode: PutMode,
        by: &Actor,
    ) -> Result<Pipeline> {
        let id = spec.id.clone();
        let (mut tx, row) = self.begin_locked(&id).await?;
        let existing = row.map(|r| r.pipeline);
        match plan_put(existing.as_ref(), spec, mode, tx.now)? {
            PutPlan::Unchanged(pipeline) => Ok(pipeline),
            PutPlan::Create(pipeline) => {
                // A pipeline's creation registers its project (`projects`), in the same statement.
                sqlx::query(
                    "WITH registered AS (INSERT INTO projects (project) VALUES ($1) \
                                         ON CONFLICT (project) DO NOTHING) \
                     INSERT INTO pipelines (project, id, body, generation, cursor_kind) \
                     VALUES ($1, $2, $3::json, $4, $5)",
                )
                .bind(self.project_str())
                .bind(id.as_str())
                .bind(to_json(&pipeline)?)
                .bind(to_i64(pipeline.generation.get())?)
                .bind(kind_text(pipeline.spec.cursor_kind))
                .execute(&mut *tx.inner)
                .await
                .map_err(|e| {
                    convert(
                        e,
                        Some(Entity::Pipeline {
                            pipeline: id.clone(),
                        }),
                    )
                })?;
                let kind = EventKind::PipelineCreated {
                    generation: pipeline.generation,
                };
                tx.emit(by, &id, kind);
                tx.commit(self.project_str()).await?;
                Ok(pipeline)
            }
            PutPlan::Update(pipeline) => {
                self.save_pipeline(&mut tx, &pipeline).await?;
                let kind = EventKind::PipelineUpdated {
                    generation: pipeline.generation,
                };
                tx.emit(by, &id, kind);
                tx.commit(self.project_str()).await?;
                self.forget(&id);
                Ok(pipeline)
            }
        }
    }

    pub(crate) async fn op_get_pipeline(&self, id: &PipelineId) -> Result<Pipeline> {
        let body: Option<String> =
            sqlx::query_scalar("SELECT body::text FROM pipelines WHERE project = $1 AND id = $2")
                .bind(self.project_str())
                .bind(id.as_str())
                .fetch_optional(&self.pool)
                .await
                .map_err(db)?;
        let body = body.ok_or_else(|| Error::pipeline_not_found(id))?;
        from_json(&body, "pipeline")
    }

    pub(crate) async fn op_list_pipelines(
        &self,
        after: Option<&PipelineId>,
        limit: Limit,
    ) -> Result<Page<Pipeline, PipelineId>> {
        // Ids are never empty, so "" sorts before every id.
        let bodies: Vec<String> = sqlx::query_scalar(
            "SELECT body::text FROM pipelines WHERE project = $1 AND id > $2 ORDER BY id LIMIT $3",
        )
        .bind(self.project_str())
        .bind(after.map_or("", PipelineId::as_str))
        .bind(i64::from(limit.get()) + 1)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        let items = bodies
            .iter()
            .map(|b| from_json(b, "pipeline"))
            .collect::<Result<Vec<Pipeline>>>()?;
        Ok(Page::from_overfetch(items, limit, |p| p.id().clone()))
    }

    async fn held_count(&self, tx: &mut Tx, pipeline: &PipelineId) -> Result<usize> {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM decisions WHERE project = $1 AND pipeline = $2 AND held",
        )
        .bind(self.project_str())
        .bind(pipeline.as_str())
        .fetch_one(&mut *tx.inner)
        .await
        .map_err(db)?;
        Ok(usize::try_from(n).unwrap_or(0))
    }

    pub(crate) async fn op_set_paused(
        &self,
        id: &PipelineId,
        change: &PauseChange,
        by: &Actor,
    ) -> Result<Pipeline> {
        let (mut tx, row) = self.begin_locked(id).await?;
        let mut pipeline = row.ok_or_else(|| Error::pipeline_not_found(id))?.pipeline;
        let held = self.held_count(&mut tx, id).await?;
        let Some(paused) = plan_pause(&pipeline, change, by, held, tx.now)? else {
            return Ok(pipeline);
        };
        let kind = pause_event(paused.as_ref());
        pipeline.paused = paused;
        pipeline.updated_at = tx.now;
        self.save_pipeline(&mut tx, &pipeline).await?;
        tx.emit(by, id, kind);
        tx.commit(self.project_str()).await?;
        Ok(pipeline)
    }

    pub(crate) async fn op_request_run(
        &self,
        id: &PipelineId,
        trigger: Trigger,
        by: &Actor,
    ) -> Result<Pipeline> {
        let (mut tx, row) = self.begin_locked(id).await?;
        let mut pipeline = row.ok_or_else(|| Error::pipeline_not_found(id))?.pipeline;
        let Some(request) = plan_request(&pipeline, trigger, by, tx.now)? else {
            return Ok(pipeline);
        };
        pipeline.requested = Some(request);
        self.save_pipeline(&mut tx, &pipeline).await?;
        tx.emit(by, id, EventKind::RunRequested { trigger });
        tx.commit(self.project_str()).await?;
        Ok(pipeline)
    }

    pub(crate) async fn op_delete_pipeline(
        &self,
        id: &PipelineId,
        expected: Generation,
        by: &Actor,
    ) -> Result<()> {
        let (mut tx, row) = self.begin_locked(id).await?;
        let row = row.ok_or_else(|| Error::pipeline_not_found(id))?;
        check_delete(&row.pipeline, expected, row.lease.as_ref(), tx.now)?;
        sqlx::query(
            "WITH r AS (DELETE FROM runs WHERE project = $1 AND pipeline = $2), \
                  c AS (DELETE FROM cursors WHERE project = $1 AND pipeline = $2), \
                  h AS (DELETE FROM cursor_history WHERE project = $1 AND pipeline = $2), \
                  s AS (DELETE FROM schema_versions WHERE project = $1 AND pipeline = $2), \
                  d AS (DELETE FROM decisions WHERE project = $1 AND pipeline = $2) \
             DELETE FROM pipelines WHERE project = $1 AND id = $2",
        )
        .bind(self.project_str())
        .bind(id.as_str())
        .execute(&mut *tx.inner)
        .await
        .map_err(db)?;
        tx.emit(by, id, EventKind::PipelineDeleted);
        tx.commit(self.project_str()).await?;
        self.forget(id);
        Ok(())
    }

    // Leases.

    pub(crate) async fn op_acquire(
        &self,
        id: &PipelineId,
        holder: &HolderId,
        ttl: Duration,
        forced_by: Option<(&Actor, &Reason)>,
    ) -> Result<Lease> {
        if forced_by.is_none() {
            // Most acquisitions in a race lose. Answer them from a plain read, without taking the
            // row lock the holder's own writes need; the winner re-checks under the lock.
            let sql = concat!(
                "SELECT ",
                now_ms!(),
                " AS now, lease_epoch, lease_holder, lease_expires_at \
                 FROM pipelines WHERE project = $1 AND id = $2"
            );
            let row = sqlx::query(sql)
                .bind(self.project_str())
                .bind(id.as_str())
                .fetch_optional(&self.pool)
                .await
                .map_err(db)?
                .ok_or_else(|| Error::pipeline_not_found(id))?;
            let lease = lease_from(
                get(&row, "lease_epoch")?,
                get(&row, "lease_holder")?,
                get(&row, "lease_expires_at")?,
            )?;
            let now = Timestamp::from_millis(get(&row, "now")?);
            plan_acquire(lease.as_ref(), id, holder, ttl, now, Epoch(u64::MAX), false)?;
        }
        let (mut tx, row) = self.begin_locked(id).await?;
        let row = row.ok_or_else(|| Error::pipeline_not_found(id))?;
        // Drawn only now, under the row lock: an epoch drawn before it could be lower than the
        // one a concurrent acquisition commits first.
        let next_epoch = Epoch(self.draw(&mut tx, "epoch").await?);
        let lease = plan_acquire(
            row.lease.as_ref(),
            id,
            holder,
            ttl,
            tx.now,
            next_epoch,
            forced_by.is_some(),
        )?;
        self.abandon_running(&mut tx, id, row.running).await?;
        sqlx::query(
            "UPDATE pipelines SET lease_epoch = $3, lease_holder = $4, lease_expires_at = $5, \
             running_run = NULL WHERE project = $1 AND id = $2",
        )
        .bind(self.project_str())
        .bind(id.as_str())
        .bind(to_i64(lease.epoch.get())?)
        .bind(holder.as_str())
        .bind(lease.expires_at.as_millis())
        .execute(&mut *tx.inner)
        .await
        .map_err(db)?;
        let actor = forced_by.map_or_else(|| Actor::Holder(holder.clone()), |(by, _)| by.clone());
        let kind = EventKind::LeaseAcquired {
            holder: holder.clone(),
            epoch: lease.epoch,
            forced: forced_by.is_some(),
        };
        tx.emit(&actor, id, kind);
        tx.commit(self.project_str()).await?;
        self.forget(id);
        Ok(lease)
    }

    /// Marks the pipeline's running run (of an epoch that just lost the lease) `Abandoned`.
    async fn abandon_running(
        &self,
        tx: &mut Tx,
        id: &PipelineId,
        running: Option<RunId>,
    ) -> Result<()> {
        let Some(run_id) = running else {
            return Ok(());
        };
        let sql = concat!(
            "SELECT (SELECT body::text FROM runs WHERE project = $1 AND id = $3) AS body, ",
            cursors_agg!(),
            " AS cursors"
        );
        let row = sqlx::query(sql)
            .bind(self.project_str())
            .bind(id.as_str())
            .bind(*run_id.as_uuid())
            .fetch_one(&mut *tx.inner)
            .await
            .map_err(db)?;
        let body: Option<String> = get(&row, "body")?;
        let body =
            body.ok_or_else(|| Error::Backend(format!("running run {run_id} is missing")))?;
        let run: Run = from_json(&body, "run")?;
        let cursors = values(&cursor_rows(get(&row, "cursors")?)?);
        let write = abandon(run, cursors, tx.now);
        self.save_run(tx, &write.run).await?;
        tx.emit(&write.event.0, id, write.event.1);
        Ok(())
    }

    pub(crate) async fn op_renew(&self, lease: &Lease, ttl: Duration) -> Result<Lease> {
        let (mut tx, row) = self.begin_locked(&lease.pipeline).await?;
        let renewed = plan_renew(
            row.as_ref().and_then(|r| r.lease.as_ref()),
            lease,
            ttl,
            tx.now,
        )?;
        sqlx::query("UPDATE pipelines SET lease_expires_at = $3 WHERE project = $1 AND id = $2")
            .bind(self.project_str())
            .bind(lease.pipeline.as_str())
            .bind(renewed.expires_at.as_millis())
            .execute(&mut *tx.inner)
            .await
            .map_err(db)?;
        tx.commit(self.project_str()).await?;
        Ok(renewed)
    }

    pub(crate) async fn op_release(&self, lease: &Lease) -> Result<()> {
        let (mut tx, row) = self.begin_locked(&lease.pipeline).await?;
        let row = Self::fenced(row, lease, tx.now)?;
        self.abandon_running(&mut tx, &lease.pipeline, row.running)
            .await?;
        sqlx::query(
            "UPDATE pipelines SET lease_holder = NULL, running_run = NULL \
             WHERE project = $1 AND id = $2",
        )
        .bind(self.project_str())
        .bind(lease.pipeline.as_str())
        .execute(&mut *tx.inner)
        .await
        .map_err(db)?;
        let kind = EventKind::LeaseReleased { epoch: lease.epoch };
        tx.emit(&Actor::Holder(lease.holder.clone()), &lease.pipeline, kind);
        tx.commit(self.project_str()).await?;
        self.forget(&lease.pipeline);
        Ok(())
    }

    // Runs.

    async fn save_run(&self, tx: &mut Tx, run: &Run) -> Result<()> {
        sqlx::query("UPDATE runs SET status = $3, body = $4::json WHERE project = $1 AND id = $2")
            .bind(self.project_str())
            .bind(*run.id.as_uuid())
            .bind(run.status.to_string())
            .bind(to_json(run)?)
            .execute(&mut *tx.inner)
            .await
            .map_err(db)?;
        Ok(())
    }

    pub(crate) async fn op_begin_run(&self, lease: &Lease, begin: BeginRun) -> Result<Run> {
        let (mut tx, row) = self.begin_locked(&lease.pipeline).await?;
        let row = Self::fenced(row, lease, tx.now)?;
        let cursors: Option<String> = sqlx::query_scalar(concat!("SELECT ", cursors_agg!()))
            .bind(self.project_str())
            .bind(lease.pipeline.as_str())
            .fetch_one(&mut *tx.inner)
            .await
            .map_err(db)?;
        let cursors = cursor_rows(cursors)?;
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
        let (id, run) = (write.run.id, write.run);
        sqlx::query(
            "WITH r AS (INSERT INTO runs (project, id, pipeline, status, body) \
                        VALUES ($1, $3, $2, $4, $5::json)) \
             UPDATE pipelines SET running_run = $3, last_run = $3 WHERE project = $1 AND id = $2",
        )
        .bind(self.project_str())
        .bind(lease.pipeline.as_str())
        .bind(*id.as_uuid())
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
        let sql = concat!(
            "WITH p AS MATERIALIZED (SELECT ",
            pipeline_columns!(),
            " FROM pipelines WHERE project = $1 AND id = $2 FOR UPDATE) SELECT ",
            now_ms!(),
            " AS now, p.*, (SELECT body::text FROM runs WHERE project = $1 AND id = $3) AS run_body, ",
            cursors_agg!(),
            " AS cursors FROM (VALUES (1)) AS one(x) LEFT JOIN p ON true"
        );
        let row = sqlx::query(sql)
            .bind(self.project_str())
            .bind(lease.pipeline.as_str())
            .bind(*run.as_uuid())
            .fetch_one(&mut *inner)
            .await
            .map_err(db)?;
        let mut tx = Tx {
            inner,
            now: Timestamp::from_millis(get(&row, "now")?),
            events: Vec::new(),
        };
        let prow = Self::fenced(pipeline_from(&row)?, lease, tx.now)?;
        let run_body: Option<String> = get(&row, "run_body")?;
        if prow.running != Some(run) {
            let record: Run = match run_body {
                Some(body) => from_json(&body, "run")?,
                None => return Err(Error::run_not_found(run)),
            };
            check_writable(&record, lease)?;
            return Err(Error::Backend(format!(
                "run {run} is running but not recorded as the pipeline's running run"
            )));
        }
        let record: Run = from_json(
            &run_body.ok_or_else(|| Error::Backend(format!("running run {run} is missing")))?,
            "run",
        )?;
        let mut cursors = cursor_rows(get(&row, "cursors")?)?;
        if usize::try_from(get::<i32>(&row, "cursor_count")?).ok() != Some(cursors.len()) {
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
            tx.emit(&holder, &lease.pipeline, w.event());
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
        let (actors, pipelines, kinds) = tx.take_events()?;
        let written: i64 = sqlx::query_scalar(FINISH_WRITES)
            .bind(self.project_str())
            .bind(lease.pipeline.as_str())
            .bind(*run.as_uuid())
            .bind(to_i64(lease.epoch.get())?)
            .bind(to_json(&holder)?)
            .bind(batch.streams)
            .bind(batch.versions)
            .bind(batch.values)
            .bind(batch.changes)
            .bind(tx.now.as_millis())
            .bind(record.status.to_string())
            .bind(to_json(&record)?)
            .bind(actors)
            .bind(pipelines)
            .bind(kinds)
            .fetch_one(&mut *tx.inner)
            .await
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

    pub(crate) async fn op_get_run(&self, run: RunId) -> Result<Run> {
        let body: Option<String> =
            sqlx::query_scalar("SELECT body::text FROM runs WHERE project = $1 AND id = $2")
                .bind(self.project_str())
                .bind(*run.as_uuid())
                .fetch_optional(&self.pool)
                .await
                .map_err(db)?;
        from_json(&body.ok_or_else(|| Error::run_not_found(run))?, "run")
    }

    pub(crate) async fn op_list_runs(&self, query: &RunQuery) -> Result<Page<Run, RunId>> {
        let sql = runs_page(query.pipeline.is_some(), query.status.is_some());
        let before = query.before.map_or(Uuid::max(), |b| *b.as_uuid());
        let bodies: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(self.project_str())
            .bind(before)
            .bind(i64::from(query.limit.get()) + 1)
            .bind(query.pipeline.as_ref().map_or("", PipelineId::as_str))
            .bind(query.status.map(|s| s.to_string()).unwrap_or_default())
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        let items = bodies
            .iter()
            .map(|b| from_json(b, "run"))
            .collect::<Result<Vec<Run>>>()?;
        Ok(Page::from_overfetch(items, query.limit, |r| r.id))
    }

    // Cursors.

    pub(crate) async fn op_get_cursor(
        &self,
        pipeline: &PipelineId,
        stream: &StreamName,
    ) -> Result<Option<Cursor>> {
        let sql = concat!(
            "SELECT EXISTS (SELECT 1 FROM pipelines WHERE project = $1 AND id = $2) AS found, ",
            cursor_columns!(),
            " FROM (VALUES (1)) AS one(x) LEFT JOIN cursors c \
              ON c.project = $1 AND c.pipeline = $2 AND c.stream = $3"
        );
        let row = sqlx::query(sql)
            .bind(self.project_str())
            .bind(pipeline.as_str())
            .bind(stream.as_str())
            .fetch_one(&self.pool)
            .await
            .map_err(db)?;
        if !get::<bool>(&row, "found")? {
            return Err(Error::pipeline_not_found(pipeline));
        }
        cursor_from(pipeline, stream, &row)
    }

    pub(crate) async fn op_list_cursors(&self, pipeline: &PipelineId) -> Result<Vec<Cursor>> {
        let sql = concat!(
            "SELECT c.stream AS c_stream, ",
            cursor_columns!(),
            " FROM pipelines p LEFT JOIN cursors c ON c.project = p.project AND c.pipeline = p.id \
              WHERE p.project = $1 AND p.id = $2 ORDER BY c.stream"
        );
        let rows = sqlx::query(sql)
            .bind(self.project_str())
            .bind(pipeline.as_str())
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        if rows.is_empty() {
            return Err(Error::pipeline_not_found(pipeline));
        }
        let mut out = Vec::new();
        for row in &rows {
            if let Some(stream) = get::<Option<String>>(row, "c_stream")? {
                let stream = StreamName::new(stream)?;
                out.extend(cursor_from(pipeline, &stream, row)?);
            }
        }
        Ok(out)
    }

    pub(crate) async fn op_cursor_history(
        &self,
        pipeline: &PipelineId,
        stream: &StreamName,
        before: Option<u64>,
        limit: Limit,
    ) -> Result<Page<CursorHistoryEntry, u64>> {
        let before = before.map_or(i64::MAX, |b| i64::try_from(b).unwrap_or(i64::MAX));
        let rows = sqlx::query(CURSOR_HISTORY_PAGE)
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
        let mut items = Vec::new();
        for row in &rows {
            let Some(version) = get::<Option<i64>>(row, "version")? else {
                continue;
            };
            let value: String = get(row, "value")?;
            let change: String = get(row, "change")?;
            let by: String = get(row, "by_actor")?;
            items.push(CursorHistoryEntry {
                version: to_u64(version, "cursor version")?,
                value: from_json(&value, "cursor value")?,
                change: from_json(&change, "cursor change")?,
                run: run_id(get(row, "run")?),
                epoch: get::<Option<i64>>(row, "epoch")?
                    .map(|e| to_u64(e, "epoch").map(Epoch))
                    .transpose()?,
                by: from_json(&by, "cursor writer")?,
                at: Timestamp::from_millis(get(row, "at")?),
            });
        }
        Ok(Page::from_overfetch(items, limit, |e| e.version))
    }

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
        let row = sqlx::query(
            "SELECT c.version, c.value::text AS value, \
               (SELECT h.value::text FROM cursor_history h WHERE h.project = $1 AND h.pipeline = $2 \
                  AND h.stream = $3 AND h.version = $4) AS old_value \
             FROM (VALUES (1)) AS one(x) LEFT JOIN cursors c \
               ON c.project = $1 AND c.pipeline = $2 AND c.stream = $3",
        )
        .bind(self.project_str())
        .bind(lease.pipeline.as_str())
        .bind(stream.as_str())
        .bind(target)
        .fetch_one(&mut *tx.inner)
        .await
        .map_err(db)?;
        let current: Option<(CursorValue, u64)> = match get::<Option<i64>>(&row, "version")? {
            Some(version) => Some((
                from_json(&get::<String>(&row, "value")?, "cursor value")?,
                to_u64(version, "cursor version")?,
            )),
            None => None,
        };
        let old_value: Option<CursorValue> = get::<Option<String>>(&row, "old_value")?
            .map(|v| from_json(&v, "cursor value"))
            .transpose()?;
        let write = plan_reset(
            prow.kind,
            &lease.pipeline,
            stream,
            current.as_ref().map(|(v, n)| (v, *n)),
            old_value.as_ref(),
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

    /// Writes cursors under the transaction's lock, with history and events.
    async fn write_cursors(
        &self,
        tx: &mut Tx,
        lease: &Lease,
        run: Option<RunId>,
        by: &Actor,
        writes: Vec<CursorWrite>,
    ) -> Result<Vec<Cursor>> {
        let batch = CursorBatch::of(&writes)?;
        let written: i64 = sqlx::query_scalar(WRITE_CURSORS)
            .bind(self.project_str())
            .bind(lease.pipeline.as_str())
            .bind(run.map(|r| *r.as_uuid()))
            .bind(to_i64(lease.epoch.get())?)
            .bind(to_json(by)?)
            .bind(batch.streams)
            .bind(batch.versions)
            .bind(batch.values)
            .bind(batch.changes)
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
            tx.emit(by, &lease.pipeline, w.event());
            out.push(w.cursor(&lease.pipeline, &stamp));
        }
        Ok(out)
    }

    // Schemas.

    pub(crate) async fn op_observe_schema(
        &self,
        lease: &Lease,
        run: RunId,
        stream: &StreamName,
        schema: Schema,
    ) -> Result<Observation> {
        let (mut tx, row) = self.begin_locked(&lease.pipeline).await?;
        let prow = Self::fenced(row, lease, tx.now)?;
        if prow.running != Some(run) {
            return Err(self.run_error(lease, run).await);
        }
        let holder = Actor::Holder(lease.holder.clone());
        let mut pipeline = prow.pipeline;
        let observation = self
            .observe(&mut tx, &mut pipeline, Some(run), &holder, stream, schema)
            .await?;
        tx.commit(self.project_str()).await?;
        Ok(observation)
    }

    async fn schema_versions(
        &self,
        executor: impl sqlx::PgExecutor<'_>,
        pipeline: &PipelineId,
        stream: &StreamName,
        newest_only: bool,
    ) -> Result<Vec<SchemaVersion>> {
        let sql = if newest_only {
            "SELECT body::text FROM schema_versions WHERE project = $1 AND pipeline = $2 \
             AND stream = $3 ORDER BY version DESC LIMIT 1"
        } else {
            "SELECT body::text FROM schema_versions WHERE project = $1 AND pipeline = $2 \
             AND stream = $3 ORDER BY version"
        };
        let bodies: Vec<String> = sqlx::query_scalar(sql)
            .bind(self.project_str())
            .bind(pipeline.as_str())
            .bind(stream.as_str())
            .fetch_all(executor)
            .await
            .map_err(db)?;
        bodies
            .iter()
            .map(|b| from_json(b, "schema version"))
            .collect()
    }

    /// Applies the observation rule to one schema and writes its outcome, under the pipeline's
    /// lock. `pipeline` is kept current (an earlier schema of the same finish may pause it).
    async fn observe(
        &self,
        tx: &mut Tx,
        pipeline: &mut Pipeline,
        run: Option<RunId>,
        observer: &Actor,
        stream: &StreamName,
        schema: Schema,
    ) -> Result<Observation> {
        let id = pipeline.id().clone();
        let current = self
            .schema_versions(&mut *tx.inner, &id, stream, true)
            .await?
            .pop();
        let held_bodies: Vec<String> = sqlx::query_scalar(
            "SELECT body::text FROM decisions WHERE project = $1 AND pipeline = $2 AND stream = $3 \
             AND held ORDER BY id",
        )
        .bind(self.project_str())
        .bind(id.as_str())
        .bind(stream.as_str())
        .fetch_all(&mut *tx.inner)
        .await
        .map_err(db)?;
        let held = held_bodies
            .iter()
            .map(|b| from_json(b, "decision"))
            .collect::<Result<Vec<Decision>>>()?;
        let now = tx.now;
        let observed = |pipeline| Observed {
            pipeline,
            stream,
            run,
            observer,
            schema: schema.clone(),
            now,
        };
        // The counter is only reachable asynchronously and the rule asks for an id only when it
        // records a decision: ask it once without one, and again with an id drawn only then, so
        // ids have no gaps, as on every backend.
        let mut needs_id = false;
        let probe = observe(observed(&*pipeline), current.clone(), held.clone(), || {
            needs_id = true;
            Ok(DecisionId(0))
        })?;
        let write = if needs_id {
            let id = DecisionId(self.draw(tx, "decision").await?);
            observe(observed(&*pipeline), current, held, || Ok(id))?
        } else {
            probe
        };
        if let Some(version) = &write.version {
            self.insert_schema_version(tx, version).await?;
        }
        if let Some(pause) = write.pause {
            pipeline.paused = Some(pause);
            pipeline.updated_at = tx.now;
            self.save_pipeline(tx, pipeline).await?;
        }
        if let Some(decision) = &write.decision {
            self.save_decision(tx, decision, true).await?;
        }
        for (actor, kind) in write.events {
            tx.emit(&actor, &id, kind);
        }
        Ok(write.observation)
    }

    async fn insert_schema_version(&self, tx: &mut Tx, version: &SchemaVersion) -> Result<()> {
        sqlx::query(
            "INSERT INTO schema_versions (project, pipeline, stream, version, body) \
             VALUES ($1, $2, $3, $4, $5::json)",
        )
        .bind(self.project_str())
        .bind(version.pipeline.as_str())
        .bind(version.stream.as_str())
        .bind(i64::from(version.version))
        .bind(to_json(version)?)
        .execute(&mut *tx.inner)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn save_decision(&self, tx: &mut Tx, decision: &Decision, insert: bool) -> Result<()> {
        let sql = if insert {
            "INSERT INTO decisions (project, id, pipeline, stream, held, body) \
             VALUES ($1, $2, $3, $4, $5, $6::json)"
        } else {
            "UPDATE decisions SET held = $5, body = $6::json \
             WHERE project = $1 AND id = $2 AND pipeline = $3 AND stream = $4"
        };
        sqlx::query(sql)
            .bind(self.project_str())
            .bind(to_i64(decision.id.get())?)
            .bind(decision.pipeline.as_str())
            .bind(decision.stream.as_str())
            .bind(decision.is_pending())
            .bind(to_json(decision)?)
            .execute(&mut *tx.inner)
            .await
            .map_err(db)?;
        Ok(())
    }

    pub(crate) async fn op_get_schema(
        &self,
        pipeline: &PipelineId,
        stream: &StreamName,
        version: Option<u32>,
    ) -> Result<SchemaVersion> {
        let row = sqlx::query(
            "SELECT EXISTS (SELECT 1 FROM pipelines WHERE project = $1 AND id = $2) AS found, \
               (SELECT body::text FROM schema_versions WHERE project = $1 AND pipeline = $2 \
                  AND stream = $3 AND ($4::int IS NULL OR version = $4) \
                ORDER BY version DESC LIMIT 1) AS body",
        )
        .bind(self.project_str())
        .bind(pipeline.as_str())
        .bind(stream.as_str())
        .bind(
            version
                .map(i64::from)
                .map(|v| i32::try_from(v).unwrap_or(i32::MAX)),
        )
        .fetch_one(&self.pool)
        .await
        .map_err(db)?;
        if !get::<bool>(&row, "found")? {
            return Err(Error::pipeline_not_found(pipeline));
        }
        match get::<Option<String>>(&row, "body")? {
            Some(body) => from_json(&body, "schema version"),
            None => Err(Error::NotFound(Entity::Schema {
                pipeline: pipeline.clone(),
                stream: stream.clone(),
                version,
            })),
        }
    }

    pub(crate) async fn op_list_schema_versions(
        &self,
        pipeline: &PipelineId,
        stream: &StreamName,
    ) -> Result<Vec<SchemaVersion>> {
        let versions = self
            .schema_versions(&self.pool, pipeline, stream, false)
            .await?;
        if versions.is_empty() {
            self.op_get_pipeline(pipeline).await?;
        }
        Ok(versions)
    }

    pub(crate) async fn op_list_decisions(
        &self,
        query: &DecisionQuery,
    ) -> Result<Page<Decision, DecisionId>> {
        let bodies: Vec<String> = sqlx::query_scalar(
            "SELECT body::text FROM decisions WHERE project = $1 AND id > $2 \
               AND ($3::text IS NULL OR pipeline = $3) AND (NOT $4 OR held) \
             ORDER BY id LIMIT $5",
        )
        .bind(self.project_str())
        .bind(to_i64(query.after.map_or(0, DecisionId::get))?)
        .bind(query.pipeline.as_ref().map(PipelineId::as_str))
        .bind(query.held_only)
        .bind(i64::from(query.limit.get()) + 1)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        let items = bodies
            .iter()
            .map(|b| from_json(b, "decision"))
            .collect::<Result<Vec<Decision>>>()?;
        Ok(Page::from_overfetch(items, query.limit, |d| d.id))
    }

    pub(crate) async fn op_decide(&self, id: DecisionId, decide: &Decide) -> Result<Decision> {
        let not_found = || Error::NotFound(Entity::Decision { decision: id });
        let pipeline: Option<String> =
            sqlx::query_scalar("SELECT pipeline FROM decisions WHERE project = $1 AND id = $2")
                .bind(self.project_str())
                .bind(to_i64(id.get())?)
                .fetch_optional(&self.pool)
                .await
                .map_err(db)?;
        let pipeline = PipelineId::new(pipeline.ok_or_else(not_found)?)?;
        // The pipeline's lock serialises deciders: the second one reads the decided record.
        let (mut tx, row) = self.begin_locked(&pipeline).await?;
        let mut record = row.ok_or_else(not_found)?.pipeline;
        let body: Option<String> =
            sqlx::query_scalar("SELECT body::text FROM decisions WHERE project = $1 AND id = $2")
                .bind(self.project_str())
                .bind(to_i64(id.get())?)
                .fetch_optional(&mut *tx.inner)
                .await
                .map_err(db)?;
        let current: Decision = from_json(&body.ok_or_else(not_found)?, "decision")?;
        let current_version = self
            .schema_versions(&mut *tx.inner, &pipeline, &current.stream, true)
            .await?
            .pop()
            .map_or(0, |v| v.version);
        let other_held = self
            .held_count(&mut tx, &pipeline)
            .await?
            .saturating_sub(usize::from(current.is_pending()));
        let write = resolve(
            &current,
            decide,
            &record,
            current_version,
            other_held,
            tx.now,
        )?;
        if let Some(version) = &write.version {
            self.insert_schema_version(&mut tx, version).await?;
        }
        self.save_decision(&mut tx, &write.decision, false).await?;
        if write.resume {
            record.paused = None;
            record.updated_at = tx.now;
            self.save_pipeline(&mut tx, &record).await?;
        }
        for (actor, kind) in write.events {
            tx.emit(&actor, &pipeline, kind);
        }
        let decided = write.decision;
        tx.commit(self.project_str()).await?;
        Ok(decided)
    }

    // Reads for the reconciler and the audit log.

    pub(crate) async fn op_pipeline_statuses(
        &self,
        after: Option<&PipelineId>,
        limit: Limit,
    ) -> Result<StatusPage> {
        let rows = sqlx::query(STATUS_PAGE)
            .bind(self.project_str())
            .bind(after.map_or("", PipelineId::as_str))
            .bind(i64::from(limit.get()) + 1)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        let mut now = Timestamp::EPOCH;
        let mut items = Vec::with_capacity(rows.len());
        for row in &rows {
            now = Timestamp::from_millis(get(row, "now")?);
            let Some(body) = get::<Option<String>>(row, "body")? else {
                continue;
            };
            let held: Vec<i64> = get(row, "held")?;
            items.push(PipelineStatus {
                pipeline: from_json(&body, "pipeline")?,
                lease: lease_from(
                    get(row, "lease_epoch")?,
                    get(row, "lease_holder")?,
                    get(row, "lease_expires_at")?,
                )?,
                last_run: get::<Option<String>>(row, "last_run")?
                    .map(|b| from_json(&b, "run"))
                    .transpose()?,
                held_decisions: held
                    .into_iter()
                    .map(|d| to_u64(d, "decision id").map(DecisionId))
                    .collect::<Result<_>>()?,
            });
        }
        let page = Page::from_overfetch(items, limit, |s| s.pipeline.id().clone());
        Ok(StatusPage {
            items: page.items,
            next: page.next,
            as_of: now,
        })
    }

    /// Numbers the project's committed, unnumbered events, continuing its gapless sequence: one
    /// autocommitted call of the `number_events` function, so no client can stall while holding
    /// the project's numbering lock (ADR 0015).
    async fn number_events(&self) -> Result<()> {
        let pending: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM events WHERE project = $1 AND seq IS NULL)",
        )
        .bind(self.project_str())
        .fetch_one(&self.pool)
        .await
        .map_err(db)?;
        if !pending {
            return Ok(());
        }
        sqlx::query("SELECT number_events($1)")
            .bind(self.project_str())
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }

    pub(crate) async fn op_events(&self, after: u64, limit: Limit) -> Result<Vec<Event>> {
        self.number_events().await?;
        let rows = sqlx::query(EVENTS_PAGE)
            .bind(self.project_str())
            .bind(i64::try_from(after).unwrap_or(i64::MAX))
            .bind(i64::from(limit.get()))
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.iter()
            .map(|r| {
                Ok(Event {
                    seq: to_u64(get(r, "seq")?, "event sequence number")?,
                    at: Timestamp::from_millis(get(r, "at")?),
                    actor: from_json(&get::<String>(r, "actor")?, "event actor")?,
                    pipeline: PipelineId::new(get::<String>(r, "pipeline")?)?,
                    kind: from_json(&get::<String>(r, "kind")?, "event")?,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_kinds_round_trip() {
        for kind in [CursorKind::Monotonic, CursorKind::Opaque] {
            assert_eq!(kind_from(kind_text(kind)).unwrap(), kind);
        }
        assert!(kind_from("sideways").is_err());
    }
}
