//! Pipelines: put, list, pause, request a run, delete.

use super::*;

impl<E: Exec> Store<'_, E> {
    pub(super) fn put_pipeline(
        &mut self,
        spec: PipelineSpec,
        mode: PutMode,
        by: &Actor,
    ) -> Result<Pipeline> {
        let existing = match self.pipeline(&spec.id) {
            Ok((pipeline, _)) => Some(pipeline),
            Err(Error::NotFound(_)) => None,
            Err(e) => return Err(e),
        };
        match plan_put(existing.as_ref(), spec, mode, self.now)? {
            PutPlan::Unchanged(pipeline) => Ok(pipeline),
            PutPlan::Create(pipeline) => {
                self.exec.execute(
                    "INSERT INTO pipelines (id, body, cursor_kind) VALUES (?, ?, ?)",
                    params![
                        pipeline.id().as_str(),
                        to_json(&pipeline)?,
                        kind_text(pipeline.spec.cursor_kind)
                    ],
                )?;
                let kind = EventKind::PipelineCreated {
                    generation: pipeline.generation,
                };
                self.emit(by, pipeline.id(), &kind)?;
                Ok(pipeline)
            }
            PutPlan::Update(pipeline) => {
                self.save_pipeline(&pipeline)?;
                let kind = EventKind::PipelineUpdated {
                    generation: pipeline.generation,
                };
                self.emit(by, pipeline.id(), &kind)?;
                Ok(pipeline)
            }
        }
    }

    pub(super) fn list_pipelines(
        &mut self,
        after: Option<&PipelineId>,
        limit: Limit,
    ) -> Result<Page<Pipeline, PipelineId>> {
        // Ids are never empty, so "" sorts before every id.
        let after = after.map_or("", PipelineId::as_str);
        let rows = self.exec.query(
            "SELECT body FROM pipelines WHERE id > ? ORDER BY id LIMIT ?",
            params![after, limit.get() + 1],
        )?;
        let items = rows
            .iter()
            .map(|r| r.json(0))
            .collect::<Result<Vec<Pipeline>>>()?;
        Ok(Page::from_overfetch(items, limit, |p| p.id().clone()))
    }

    pub(super) fn held_count(&mut self, pipeline: &PipelineId) -> Result<usize> {
        let count = self
            .exec
            .query_row(
                "SELECT COUNT(*) FROM decisions WHERE pipeline = ? AND held = 1",
                params![pipeline.as_str()],
            )?
            .map_or(Ok(0), |r| r.uint(0))?;
        Ok(usize::try_from(count).unwrap_or(usize::MAX))
    }

    pub(super) fn set_paused(
        &mut self,
        id: &PipelineId,
        change: &PauseChange,
        by: &Actor,
    ) -> Result<Pipeline> {
        let (mut pipeline, _) = self.pipeline(id)?;
        let held = self.held_count(id)?;
        let Some(paused) = plan_pause(&pipeline, change, by, held, self.now)? else {
            return Ok(pipeline);
        };
        let kind = pause_event(paused.as_ref());
        pipeline.paused = paused;
        pipeline.updated_at = self.now;
        self.save_pipeline(&pipeline)?;
        self.emit(by, id, &kind)?;
        Ok(pipeline)
    }

    pub(super) fn request_run(
        &mut self,
        id: &PipelineId,
        trigger: Trigger,
        by: &Actor,
    ) -> Result<Pipeline> {
        let (mut pipeline, _) = self.pipeline(id)?;
        let Some(request) = plan_request(&pipeline, trigger, by, self.now)? else {
            return Ok(pipeline);
        };
        pipeline.requested = Some(request);
        self.save_pipeline(&pipeline)?;
        self.emit(by, id, &EventKind::RunRequested { trigger })?;
        Ok(pipeline)
    }

    pub(super) fn delete_pipeline(
        &mut self,
        id: &PipelineId,
        expected: Generation,
        by: &Actor,
    ) -> Result<()> {
        let (pipeline, hot) = self.pipeline(id)?;
        check_delete(&pipeline, expected, hot.lease.as_ref(), self.now)?;
        for table in [
            "pipelines",
            "runs",
            "cursors",
            "schema_versions",
            "decisions",
        ] {
            let column = if table == "pipelines" {
                "id"
            } else {
                "pipeline"
            };
            self.exec.execute(
                &format!("DELETE FROM {table} WHERE {column} = ?"),
                params![id.as_str()],
            )?;
        }
        self.exec.execute(FORGET_HISTORY, params![id.as_str()])?;
        self.emit(by, id, &EventKind::PipelineDeleted)
    }
}
