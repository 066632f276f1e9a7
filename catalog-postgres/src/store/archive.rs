//! Archives: a pipeline's streams, the head of an export, and an import's batches (ADR 0033).
//!
//! A batch is one transaction that first locks the project's row in `projects` (as the event
//! numbering does), so imports of a project take turns with each other and with the numbering;
//! each kind of record goes in with one statement over arrays, then the columns derived from
//! runs and cursors (`running_run`, `last_run`, `cursor_count`) are set for the batch's
//! pipelines.

use std::collections::BTreeSet;

use hakiri_core::archive::{
    plan_import, version_without_event, ArchiveHead, Counters, ImportBatch, ImportMarker,
    ImportProgress, Record,
};
use hakiri_core::{DecisionId, Entity, Error, EventKind, PipelineId, Result, RunId, StreamName};
use sqlx::postgres::PgRow;
use sqlx::Row;
use uuid::Uuid;

use super::rows::{kind_text, to_i64, to_json, to_u64};
use crate::error::db;
use crate::PostgresCatalog;

/// A pipeline's streams with a cursor or a schema version (`$1` project, `$2` pipeline).
const STREAMS: &str = "SELECT stream FROM cursors WHERE project = $1 AND pipeline = $2 \
     UNION SELECT stream FROM schema_versions WHERE project = $1 AND pipeline = $2 ORDER BY 1";

/// The project's counters, last event, emptiness and unfinished import (`$1` project).
const HEAD: &str = "SELECT \
       coalesce((SELECT value FROM counters WHERE project = $1 AND name = 'epoch'), 0) AS epoch, \
       coalesce((SELECT value FROM counters WHERE project = $1 AND name = 'decision'), 0) \
         AS decision, \
       coalesce((SELECT last_seq FROM projects WHERE project = $1), 0) AS last_event, \
       NOT (EXISTS (SELECT 1 FROM pipelines WHERE project = $1) \
            OR EXISTS (SELECT 1 FROM events WHERE project = $1)) AS empty, \
       (SELECT archive FROM imports WHERE project = $1) AS archive, \
       (SELECT applied FROM imports WHERE project = $1) AS applied";

/// Registers the project and locks its row until the transaction ends (`$1` project).
const LOCK_PROJECT: &str = "INSERT INTO projects AS p (project) VALUES ($1) \
     ON CONFLICT (project) DO UPDATE SET last_seq = p.last_seq";

const INSERT_PIPELINES: &str = "INSERT INTO pipelines (project, id, body, generation, \
       cursor_kind, lease_epoch, lease_holder, lease_expires_at) \
     SELECT $1, t.id, t.body::json, t.generation, t.kind, t.epoch, t.holder, t.expires \
     FROM unnest($2::text[], $3::text[], $4::bigint[], $5::text[], $6::bigint[], $7::text[], \
                 $8::bigint[]) AS t(id, body, generation, kind, epoch, holder, expires)";

const INSERT_RUNS: &str = "INSERT INTO runs (project, id, pipeline, status, body) \
     SELECT $1, t.id, t.pipeline, t.status, t.body::json \
     FROM unnest($2::uuid[], $3::text[], $4::text[], $5::text[]) AS t(id, pipeline, status, body)";

/// The newest version of a stream in the batch becomes its cursor, unless an earlier batch
/// (which held newer versions) made it already.
const INSERT_CURSORS: &str = "INSERT INTO cursors (project, pipeline, stream, version, value, run, \
       epoch, updated_by, updated_at) \
     SELECT $1, t.pipeline, t.stream, t.version, t.value::json, t.run, t.epoch, t.by::json, t.at \
     FROM unnest($2::text[], $3::text[], $4::bigint[], $5::text[], $6::uuid[], $7::bigint[], \
                 $8::text[], $9::bigint[]) AS t(pipeline, stream, version, value, run, epoch, by, at) \
     ON CONFLICT (project, pipeline, stream) DO NOTHING";

/// A batch's cursor versions wait in `importing_history` for the events they belong in, which
/// the archive lists later (ADR 0038).
const STAGE_HISTORY: &str = "INSERT INTO importing_history (project, pipeline, stream, version, \
       body) \
     SELECT $1, t.pipeline, t.stream, t.version, t.body::json \
     FROM unnest($2::text[], $3::text[], $4::bigint[], $5::text[]) \
       AS t(pipeline, stream, version, body)";

const INSERT_SCHEMAS: &str = "INSERT INTO schema_versions (project, pipeline, stream, version, \
       body) \
     SELECT $1, t.pipeline, t.stream, t.version, t.body::json \
     FROM unnest($2::text[], $3::text[], $4::integer[], $5::text[]) \
       AS t(pipeline, stream, version, body)";

const INSERT_DECISIONS: &str = "INSERT INTO decisions (project, id, pipeline, stream, held, body) \
     SELECT $1, t.id, t.pipeline, t.stream, t.held, t.body::json \
     FROM unnest($2::bigint[], $3::text[], $4::text[], $5::boolean[], $6::text[]) \
       AS t(id, pipeline, stream, held, body)";

/// Detaches the history of the pipelines `$2` from their events: each of them is deleted by one
/// of the batch's events, and the history belongs to the events after a pipeline's last deletion.
const FORGET_HISTORY: &str = "UPDATE events SET stream = NULL, version = NULL, history = NULL \
     WHERE project = $1 AND pipeline = ANY($2::text[]) AND stream IS NOT NULL";

/// The batch's events, each cursor event with the version it records, as `importing_history`
/// holds it — unless a later event of the batch deletes its pipeline (`$9`, `$10`: the batch's
/// deletions' pipelines and sequence numbers).
const INSERT_EVENTS: &str = "INSERT INTO events (project, seq, at, actor, pipeline, kind, stream, \
       version, history) \
     SELECT $1, t.seq, t.at, t.actor::json, t.pipeline, t.kind::json, h.stream, h.version, h.body \
     FROM unnest($2::bigint[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::text[], \
                 $8::bigint[]) AS t(seq, at, actor, pipeline, kind, stream, version) \
     LEFT JOIN importing_history h ON h.project = $1 AND h.pipeline = t.pipeline \
       AND h.stream = t.stream AND h.version = t.version \
       AND NOT EXISTS (SELECT 1 FROM unnest($9::text[], $10::bigint[]) AS d(pipeline, seq) \
                       WHERE d.pipeline = t.pipeline AND d.seq > t.seq) \
     ORDER BY t.seq";

/// The first cursor version staged in `importing_history` that found no event (`$1` project).
const STRAY_HISTORY: &str = "SELECT pipeline, stream, version FROM importing_history h \
     WHERE h.project = $1 AND NOT EXISTS (SELECT 1 FROM events e WHERE e.project = $1 \
       AND e.pipeline = h.pipeline AND e.stream = h.stream AND e.version = h.version) \
     ORDER BY pipeline, stream, version LIMIT 1";

/// The first of the pipelines `$2` that the project `$1` does not hold.
const MISSING_PIPELINE: &str = "SELECT t.id FROM unnest($2::text[]) AS t(id) \
     WHERE NOT EXISTS (SELECT 1 FROM pipelines p WHERE p.project = $1 AND p.id = t.id) LIMIT 1";

/// Sets the columns derived from runs and cursors for the pipelines `$2` of project `$1`.
const DERIVE: &str = concat!(
    "UPDATE pipelines p SET \
       running_run = (SELECT r.id FROM runs r WHERE r.project = $1 AND r.pipeline = p.id \
                      AND r.status = 'running' AND ",
    run_listing!("r"),
    " LIMIT 1), \
       last_run = (SELECT r.id FROM runs r WHERE r.project = $1 AND r.pipeline = p.id AND ",
    run_listing!("r"),
    " ORDER BY r.id DESC LIMIT 1), \
       cursor_count = (SELECT count(*) FROM cursors c WHERE c.project = $1 \
                       AND c.pipeline = p.id) \
     WHERE p.project = $1 AND p.id = ANY($2::text[])"
);

const SET_COUNTERS: &str = "INSERT INTO counters (project, name, value) \
     VALUES ($1, 'epoch', $2), ($1, 'decision', $3) \
     ON CONFLICT (project, name) DO UPDATE SET value = excluded.value";

/// A batch's pipelines, as the arrays [`INSERT_PIPELINES`] binds.
#[derive(Default)]
struct PipelineColumns {
    id: Vec<String>,
    body: Vec<String>,
    generation: Vec<i64>,
    kind: Vec<&'static str>,
    lease_epoch: Vec<Option<i64>>,
    lease_holder: Vec<Option<String>>,
    lease_expires_at: Vec<Option<i64>>,
}

/// A batch's runs ([`INSERT_RUNS`]).
#[derive(Default)]
struct RunColumns {
    id: Vec<Uuid>,
    pipeline: Vec<String>,
    status: Vec<String>,
    body: Vec<String>,
}

/// The cursors a batch's newest versions make ([`INSERT_CURSORS`]).
#[derive(Default)]
struct CursorColumns {
    pipeline: Vec<String>,
    stream: Vec<String>,
    version: Vec<i64>,
    value: Vec<String>,
    run: Vec<Option<Uuid>>,
    epoch: Vec<Option<i64>>,
    by: Vec<String>,
    at: Vec<i64>,
}

/// A batch's cursor versions ([`STAGE_HISTORY`]).
#[derive(Default)]
struct HistoryColumns {
    pipeline: Vec<String>,
    stream: Vec<String>,
    version: Vec<i64>,
    body: Vec<String>,
}

/// A batch's schema versions ([`INSERT_SCHEMAS`]).
#[derive(Default)]
struct SchemaColumns {
    pipeline: Vec<String>,
    stream: Vec<String>,
    version: Vec<i32>,
    body: Vec<String>,
}

/// A batch's decisions ([`INSERT_DECISIONS`]).
#[derive(Default)]
struct DecisionColumns {
    id: Vec<i64>,
    pipeline: Vec<String>,
    stream: Vec<String>,
    held: Vec<bool>,
    body: Vec<String>,
}

/// A batch's events ([`INSERT_EVENTS`]).
#[derive(Default)]
struct EventColumns {
    seq: Vec<i64>,
    at: Vec<i64>,
    actor: Vec<String>,
    pipeline: Vec<String>,
    kind: Vec<String>,
    /// The cursor version a cursor event records.
    stream: Vec<Option<String>>,
    version: Vec<Option<i64>>,
    /// The pipelines the batch deletes, and their deletions' sequence numbers.
    deleted: Vec<String>,
    deleted_at: Vec<i64>,
}

/// One batch's records, as the arrays of each statement.
#[derive(Default)]
struct Columns {
    pipelines: PipelineColumns,
    runs: RunColumns,
    cursors: CursorColumns,
    history: HistoryColumns,
    schemas: SchemaColumns,
    decisions: DecisionColumns,
    events: EventColumns,
    /// Pipelines the batch's other records belong to.
    owners: BTreeSet<String>,
    /// Streams whose cursor the batch holds already.
    streams: BTreeSet<(String, String)>,
}

impl Columns {
    fn add(&mut self, record: &Record) -> Result<()> {
        match record {
            Record::Pipeline { pipeline, lease } => {
                let p = &mut self.pipelines;
                p.id.push(pipeline.id().as_str().to_owned());
                p.body.push(to_json(pipeline)?);
                p.generation.push(to_i64(pipeline.generation.get())?);
                p.kind.push(kind_text(pipeline.spec.cursor_kind));
                p.lease_epoch
                    .push(lease.as_ref().map(|l| to_i64(l.epoch.get())).transpose()?);
                p.lease_holder.push(
                    lease
                        .as_ref()
                        .and_then(|l| l.holder.as_ref().map(ToString::to_string)),
                );
                p.lease_expires_at
                    .push(lease.as_ref().map(|l| l.expires_at.as_millis()));
            }
            Record::Run { run } => {
                let r = &mut self.runs;
                r.id.push(*run.id.as_uuid());
                r.pipeline.push(run.pipeline.as_str().to_owned());
                r.status.push(run.status.to_string());
                r.body.push(to_json(run)?);
                self.owners.insert(run.pipeline.as_str().to_owned());
            }
            Record::CursorVersion {
                pipeline,
                stream,
                entry,
            } => {
                let key = (pipeline.as_str().to_owned(), stream.as_str().to_owned());
                // Versions come newest first: a stream's first one in the batch is its cursor
                // (unless an earlier batch, holding newer ones, made it already).
                if self.streams.insert(key) {
                    let c = &mut self.cursors;
                    c.pipeline.push(pipeline.as_str().to_owned());
                    c.stream.push(stream.as_str().to_owned());
                    c.version.push(to_i64(entry.version)?);
                    c.value.push(to_json(&entry.value)?);
                    c.run.push(entry.run.map(|r| *r.as_uuid()));
                    c.epoch
                        .push(entry.epoch.map(|e| to_i64(e.get())).transpose()?);
                    c.by.push(to_json(&entry.by)?);
                    c.at.push(entry.at.as_millis());
                }
                let h = &mut self.history;
                h.pipeline.push(pipeline.as_str().to_owned());
                h.stream.push(stream.as_str().to_owned());
                h.version.push(to_i64(entry.version)?);
                h.body.push(to_json(entry)?);
                self.owners.insert(pipeline.as_str().to_owned());
            }
            Record::SchemaVersion { version } => {
                let s = &mut self.schemas;
                s.pipeline.push(version.pipeline.as_str().to_owned());
                s.stream.push(version.stream.as_str().to_owned());
                s.version.push(i32::try_from(version.version).map_err(|_| {
                    Error::invalid(format!(
                        "schema version {} is out of range",
                        version.version
                    ))
                })?);
                s.body.push(to_json(version)?);
                self.owners.insert(version.pipeline.as_str().to_owned());
            }
            Record::Decision { decision } => {
                let d = &mut self.decisions;
                d.id.push(to_i64(decision.id.get())?);
                d.pipeline.push(decision.pipeline.as_str().to_owned());
                d.stream.push(decision.stream.as_str().to_owned());
                d.held.push(decision.is_pending());
                d.body.push(to_json(decision)?);
                self.owners.insert(decision.pipeline.as_str().to_owned());
            }
            Record::Event { event } => {
                let e = &mut self.events;
                e.seq.push(to_i64(event.seq)?);
                e.at.push(event.at.as_millis());
                e.actor.push(to_json(&event.actor)?);
                e.pipeline.push(event.pipeline.as_str().to_owned());
                e.kind.push(to_json(&event.kind)?);
                let recorded = event.kind.cursor_version();
                e.stream
                    .push(recorded.map(|(stream, _)| stream.as_str().to_owned()));
                e.version
                    .push(recorded.map(|(_, version)| to_i64(version)).transpose()?);
                if event.kind == EventKind::PipelineDeleted {
                    e.deleted.push(event.pipeline.as_str().to_owned());
                    e.deleted_at.push(to_i64(event.seq)?);
                }
            }
        }
        Ok(())
    }
}

fn head_from(row: &PgRow) -> Result<ArchiveHead> {
    let get = |name: &str| -> Result<i64> { row.try_get(name).map_err(db) };
    let archive: Option<String> = row.try_get("archive").map_err(db)?;
    let applied: Option<i64> = row.try_get("applied").map_err(db)?;
    Ok(ArchiveHead {
        counters: Counters {
            epoch: to_u64(get("epoch")?, "epoch counter")?,
            decision: to_u64(get("decision")?, "decision counter")?,
        },
        last_event: to_u64(get("last_event")?, "event sequence number")?,
        empty: row.try_get("empty").map_err(db)?,
        importing: match (archive, applied) {
            (Some(archive), Some(applied)) => Some(ImportMarker {
                archive,
                applied: to_u64(applied, "import progress")?,
            }),
            _ => None,
        },
    })
}

impl PostgresCatalog {
    /// Fails with `AlreadyExists` naming the first pipeline, run or decision of the batch that the
    /// project holds already.
    async fn check_free(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Postgres>,
        c: &Columns,
    ) -> Result<()> {
        let project = self.project_str();
        let pipeline: Option<String> = sqlx::query_scalar(
            "SELECT id FROM pipelines WHERE project = $1 AND id = ANY($2::text[]) LIMIT 1",
        )
        .bind(project)
        .bind(&c.pipelines.id)
        .fetch_optional(&mut **tx)
        .await
        .map_err(db)?;
        if let Some(pipeline) = pipeline {
            let pipeline = PipelineId::new(pipeline)?;
            return Err(Error::AlreadyExists(Entity::Pipeline { pipeline }));
        }
        let run: Option<Uuid> = sqlx::query_scalar(
            "SELECT id FROM runs WHERE project = $1 AND id = ANY($2::uuid[]) LIMIT 1",
        )
        .bind(project)
        .bind(&c.runs.id)
        .fetch_optional(&mut **tx)
        .await
        .map_err(db)?;
        if let Some(run) = run {
            let run = RunId::try_from(run.to_string())?;
            return Err(Error::AlreadyExists(Entity::Run { run }));
        }
        let decision: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM decisions WHERE project = $1 AND id = ANY($2::bigint[]) LIMIT 1",
        )
        .bind(project)
        .bind(&c.decisions.id)
        .fetch_optional(&mut **tx)
        .await
        .map_err(db)?;
        if let Some(decision) = decision {
            let decision = DecisionId(to_u64(decision, "decision id")?);
            return Err(Error::AlreadyExists(Entity::Decision { decision }));
        }
        Ok(())
    }

    /// Ends an import's history: every cursor version the archive listed must have found the
    /// event recording it, since that is where the version is kept.
    async fn check_history_placed(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Postgres>,
    ) -> Result<()> {
        let project = self.project_str();
        let stray: Option<(String, String, i64)> = sqlx::query_as(STRAY_HISTORY)
            .bind(project)
            .fetch_optional(&mut **tx)
            .await
            .map_err(db)?;
        if let Some((pipeline, stream, version)) = stray {
            let version = to_u64(version, "cursor version")?;
            return Err(version_without_event(&pipeline, &stream, version));
        }
        sqlx::query("DELETE FROM importing_history WHERE project = $1")
            .bind(project)
            .execute(&mut **tx)
            .await
            .map_err(db)?;
        Ok(())
    }

    /// [`Catalog::list_streams`](hakiri_core::Catalog::list_streams).
    pub(crate) async fn op_list_streams(&self, pipeline: &PipelineId) -> Result<Vec<StreamName>> {
        self.op_get_pipeline(pipeline).await?;
        let names: Vec<String> = sqlx::query_scalar(STREAMS)
            .bind(self.project_str())
            .bind(pipeline.as_str())
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        names.into_iter().map(StreamName::new).collect()
    }

    /// [`Catalog::archive_head`](hakiri_core::Catalog::archive_head), numbering committed events
    /// first so that the last event is the log's.
    pub(crate) async fn op_archive_head(&self) -> Result<ArchiveHead> {
        self.number_events().await?;
        let row = sqlx::query(HEAD)
            .bind(self.project_str())
            .fetch_one(&self.pool)
            .await
            .map_err(db)?;
        head_from(&row)
    }

    /// [`Catalog::import`](hakiri_core::Catalog::import): one batch, one transaction.
    pub(crate) async fn op_import(&self, batch: ImportBatch) -> Result<ImportProgress> {
        self.number_events().await?;
        let project = self.project_str();
        let mut tx = self.pool.begin().await.map_err(db)?;
        sqlx::query(LOCK_PROJECT)
            .bind(project)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        let head = head_from(
            &sqlx::query(HEAD)
                .bind(project)
                .fetch_one(&mut *tx)
                .await
                .map_err(db)?,
        )?;
        let marker = plan_import(&head, &batch)?;
        let mut columns = Columns::default();
        for record in &batch.records {
            columns.add(record)?;
        }
        self.check_free(&mut tx, &columns).await?;
        let c = &columns;
        let p = &c.pipelines;
        sqlx::query(INSERT_PIPELINES)
            .bind(project)
            .bind(&p.id)
            .bind(&p.body)
            .bind(&p.generation)
            .bind(&p.kind)
            .bind(&p.lease_epoch)
            .bind(&p.lease_holder)
            .bind(&p.lease_expires_at)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        let owners: Vec<String> = c.owners.iter().cloned().collect();
        let missing: Option<String> = sqlx::query_scalar(MISSING_PIPELINE)
            .bind(project)
            .bind(&owners)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?;
        if let Some(missing) = missing {
            return Err(Error::pipeline_not_found(&PipelineId::new(missing)?));
        }
        let r = &c.runs;
        sqlx::query(INSERT_RUNS)
            .bind(project)
            .bind(&r.id)
            .bind(&r.pipeline)
            .bind(&r.status)
            .bind(&r.body)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        let k = &c.cursors;
        sqlx::query(INSERT_CURSORS)
            .bind(project)
            .bind(&k.pipeline)
            .bind(&k.stream)
            .bind(&k.version)
            .bind(&k.value)
            .bind(&k.run)
            .bind(&k.epoch)
            .bind(&k.by)
            .bind(&k.at)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        let h = &c.history;
        sqlx::query(STAGE_HISTORY)
            .bind(project)
            .bind(&h.pipeline)
            .bind(&h.stream)
            .bind(&h.version)
            .bind(&h.body)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        let s = &c.schemas;
        sqlx::query(INSERT_SCHEMAS)
            .bind(project)
            .bind(&s.pipeline)
            .bind(&s.stream)
            .bind(&s.version)
            .bind(&s.body)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        let d = &c.decisions;
        sqlx::query(INSERT_DECISIONS)
            .bind(project)
            .bind(&d.id)
            .bind(&d.pipeline)
            .bind(&d.stream)
            .bind(&d.held)
            .bind(&d.body)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        let e = &c.events;
        if let Some(last) = e.seq.last() {
            sqlx::query(FORGET_HISTORY)
                .bind(project)
                .bind(&e.deleted)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            sqlx::query(INSERT_EVENTS)
                .bind(project)
                .bind(&e.seq)
                .bind(&e.at)
                .bind(&e.actor)
                .bind(&e.pipeline)
                .bind(&e.kind)
                .bind(&e.stream)
                .bind(&e.version)
                .bind(&e.deleted)
                .bind(&e.deleted_at)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            sqlx::query("UPDATE projects SET last_seq = $2 WHERE project = $1")
                .bind(project)
                .bind(last)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        if marker.is_none() {
            self.check_history_placed(&mut tx).await?;
        }
        let derived: Vec<String> = p.id.iter().cloned().chain(owners).collect();
        sqlx::query(DERIVE)
            .bind(project)
            .bind(&derived)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        sqlx::query(SET_COUNTERS)
            .bind(project)
            .bind(to_i64(batch.counters.epoch)?)
            .bind(to_i64(batch.counters.decision)?)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        match &marker {
            Some(marker) => sqlx::query(
                "INSERT INTO imports (project, archive, applied) VALUES ($1, $2, $3) \
                 ON CONFLICT (project) DO UPDATE SET archive = excluded.archive, \
                 applied = excluded.applied",
            )
            .bind(project)
            .bind(&marker.archive)
            .bind(to_i64(marker.applied)?),
            None => sqlx::query("DELETE FROM imports WHERE project = $1").bind(project),
        }
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(ImportProgress {
            applied: batch.position + batch.records.len() as u64,
            done: marker.is_none(),
        })
    }
}
