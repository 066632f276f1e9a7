//! Pipelines: create or update, read, list, pause, request a run, delete.

use hakiri_core::pipeline::{
    check_delete, pause_event, plan_pause, plan_put, plan_request, PutPlan,
};
use hakiri_core::{
    Actor, Entity, Error, EventKind, Generation, Limit, Page, PauseChange, Pipeline, PipelineId,
    PipelineSpec, PutMode, Result, Trigger,
};
use sqlx::types::Json;

use super::rows::{kind_text, to_i64, to_json};
use super::Tx;
use crate::error::{convert, db};
use crate::PostgresCatalog;

/// Creates a pipeline, registering its project (`projects`) in the same statement.
///
/// | param | meaning |
/// |---|---|
/// | `$1` | project |
/// | `$2` | pipeline |
/// | `$3` | its document, as JSON text |
/// | `$4` | its generation |
/// | `$5` | its cursor kind |
const INSERT_PIPELINE: &str = "WITH registered AS (INSERT INTO projects (project) VALUES ($1) \
                         ON CONFLICT (project) DO NOTHING) \
     INSERT INTO pipelines (project, id, body, generation, cursor_kind) \
     VALUES ($1, $2, $3::json, $4, $5)";

/// Rewrites a pipeline's document; the parameters are [`INSERT_PIPELINE`]'s.
const UPDATE_PIPELINE: &str =
    "UPDATE pipelines SET body = $3::json, generation = $4, cursor_kind = $5 \
     WHERE project = $1 AND id = $2";

/// Deletes a pipeline and everything it owns but its events, from which it detaches its cursors'
/// history (ADR 0038).
///
/// | param | meaning |
/// |---|---|
/// | `$1` | project |
/// | `$2` | pipeline |
const DELETE_PIPELINE: &str = concat!(
    "WITH r AS (DELETE FROM runs WHERE project = $1 AND pipeline = $2 AND ",
    run_listing!(),
    "), \
          c AS (DELETE FROM cursors WHERE project = $1 AND pipeline = $2), \
          h AS (UPDATE events SET stream = NULL, version = NULL, history = NULL \
                WHERE project = $1 AND pipeline = $2 AND stream IS NOT NULL), \
          s AS (DELETE FROM schema_versions WHERE project = $1 AND pipeline = $2), \
          d AS (DELETE FROM decisions WHERE project = $1 AND pipeline = $2) \
     DELETE FROM pipelines WHERE project = $1 AND id = $2"
);

impl PostgresCatalog {
    /// Binds `pipeline` to [`INSERT_PIPELINE`] or [`UPDATE_PIPELINE`] and runs it in `tx`.
    async fn write_pipeline(
        &self,
        tx: &mut Tx,
        sql: &'static str,
        pipeline: &Pipeline,
    ) -> Result<()> {
        sqlx::query(sql)
            .bind(self.project_str())
            .bind(pipeline.id().as_str())
            .bind(to_json(pipeline)?)
            .bind(to_i64(pipeline.generation.get())?)
            .bind(kind_text(pipeline.spec.cursor_kind))
            .execute(&mut *tx.inner)
            .await
            .map_err(|e| {
                convert(
                    e,
                    Some(Entity::Pipeline {
                        pipeline: pipeline.id().clone(),
                    }),
                )
            })?;
        Ok(())
    }

    /// Rewrites `pipeline`'s document under the transaction's lock.
    pub(crate) async fn save_pipeline(&self, tx: &mut Tx, pipeline: &Pipeline) -> Result<()> {
        self.write_pipeline(tx, UPDATE_PIPELINE, pipeline).await
    }

    /// Creates or updates a pipeline ([`Catalog::put_pipeline`](hakiri_core::Catalog::put_pipeline)).
    pub(crate) async fn op_put_pipeline(
        &self,
        spec: PipelineSpec,
        mode: PutMode,
        by: &Actor,
    ) -> Result<Pipeline> {
        let id = spec.id.clone();
        let (mut tx, row) = self.begin_locked(&id).await?;
        let existing = row.map(|r| r.pipeline);
        let (pipeline, kind) = match plan_put(existing.as_ref(), spec, mode, tx.now)? {
            PutPlan::Unchanged(pipeline) => return Ok(pipeline),
            PutPlan::Create(pipeline) => {
                self.write_pipeline(&mut tx, INSERT_PIPELINE, &pipeline)
                    .await?;
                let generation = pipeline.generation;
                (pipeline, EventKind::PipelineCreated { generation })
            }
            PutPlan::Update(pipeline) => {
                self.save_pipeline(&mut tx, &pipeline).await?;
                let generation = pipeline.generation;
                (pipeline, EventKind::PipelineUpdated { generation })
            }
        };
        tx.emit(by, &id, kind);
        tx.commit(self.project_str()).await?;
        self.forget(&id);
        Ok(pipeline)
    }

    /// Reads a pipeline ([`Catalog::get_pipeline`](hakiri_core::Catalog::get_pipeline)).
    pub(crate) async fn op_get_pipeline(&self, id: &PipelineId) -> Result<Pipeline> {
        let body: Option<Json<Pipeline>> =
            sqlx::query_scalar("SELECT body FROM pipelines WHERE project = $1 AND id = $2")
                .bind(self.project_str())
                .bind(id.as_str())
                .fetch_optional(&self.pool)
                .await
                .map_err(db)?;
        body.map(|b| b.0)
            .ok_or_else(|| Error::pipeline_not_found(id))
    }

    /// A page of pipelines by id ([`Catalog::list_pipelines`](hakiri_core::Catalog::list_pipelines)).
    pub(crate) async fn op_list_pipelines(
        &self,
        after: Option<&PipelineId>,
        limit: Limit,
    ) -> Result<Page<Pipeline, PipelineId>> {
        // Ids are never empty, so "" sorts before every id.
        let bodies: Vec<Json<Pipeline>> = sqlx::query_scalar(
            "SELECT body FROM pipelines WHERE project = $1 AND id > $2 ORDER BY id LIMIT $3",
        )
        .bind(self.project_str())
        .bind(after.map_or("", PipelineId::as_str))
        .bind(i64::from(limit.get()) + 1)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        let items = bodies.into_iter().map(|b| b.0).collect();
        Ok(Page::from_overfetch(items, limit, |p| p.id().clone()))
    }

    /// Pauses or resumes a pipeline ([`Catalog::set_paused`](hakiri_core::Catalog::set_paused)).
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

    /// Asks for a run ([`Catalog::request_run`](hakiri_core::Catalog::request_run)).
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

    /// Deletes a pipeline and what it owns
    /// ([`Catalog::delete_pipeline`](hakiri_core::Catalog::delete_pipeline)).
    pub(crate) async fn op_delete_pipeline(
        &self,
        id: &PipelineId,
        expected: Generation,
        by: &Actor,
    ) -> Result<()> {
        let (mut tx, row) = self.begin_locked(id).await?;
        let row = row.ok_or_else(|| Error::pipeline_not_found(id))?;
        check_delete(&row.pipeline, expected, row.lease.as_ref(), tx.now)?;
        sqlx::query(DELETE_PIPELINE)
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
}
