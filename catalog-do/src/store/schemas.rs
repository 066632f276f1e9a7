//! Schemas and decisions: versions, observation, decisions.

use super::*;

impl<E: Exec> Store<'_, E> {
    pub(super) fn schema_versions(
        &mut self,
        pipeline: &PipelineId,
        stream: &StreamName,
    ) -> Result<Vec<SchemaVersion>> {
        self.exec
            .query(
                "SELECT body FROM schema_versions WHERE pipeline = ? AND stream = ? ORDER BY version",
                params![pipeline.as_str(), stream.as_str()],
            )?
            .iter()
            .map(|r| r.json(0))
            .collect()
    }

    pub(super) fn current_schema(
        &mut self,
        pipeline: &PipelineId,
        stream: &StreamName,
    ) -> Result<Option<SchemaVersion>> {
        self.exec
            .query_row(
                "SELECT body FROM schema_versions WHERE pipeline = ? AND stream = ? ORDER BY version DESC LIMIT 1",
                params![pipeline.as_str(), stream.as_str()],
            )?
            .map(|r| r.json(0))
            .transpose()
    }

    pub(super) fn get_schema(
        &mut self,
        pipeline: &PipelineId,
        stream: &StreamName,
        version: Option<u32>,
    ) -> Result<SchemaVersion> {
        self.ensure_pipeline(pipeline)?;
        let found = match version {
            None => self.current_schema(pipeline, stream)?,
            Some(v) => self
                .exec
                .query_row(
                    "SELECT body FROM schema_versions WHERE pipeline = ? AND stream = ? AND version = ?",
                    params![pipeline.as_str(), stream.as_str(), v],
                )?
                .map(|r| r.json(0))
                .transpose()?,
        };
        found.ok_or_else(|| {
            Error::NotFound(Entity::Schema {
                pipeline: pipeline.clone(),
                stream: stream.clone(),
                version,
            })
        })
    }

    pub(super) fn decision(&mut self, id: DecisionId) -> Result<Option<Decision>> {
        self.exec
            .query_row("SELECT body FROM decisions WHERE id = ?", params![id.get()])?
            .map(|r| r.json(0))
            .transpose()
    }

    pub(super) fn save_decision(&mut self, decision: &Decision, insert: bool) -> Result<()> {
        let body = to_json(decision)?;
        let held = decision.is_pending();
        if insert {
            self.exec.execute(
                "INSERT INTO decisions (id, pipeline, stream, held, body) VALUES (?, ?, ?, ?, ?)",
                params![
                    decision.id.get(),
                    decision.pipeline.as_str(),
                    decision.stream.as_str(),
                    held,
                    body
                ],
            )
        } else {
            self.exec.execute(
                "UPDATE decisions SET held = ?, body = ? WHERE id = ?",
                params![held, body, decision.id.get()],
            )
        }
    }

    /// Applies the observation rule to one schema and writes its outcome.
    pub(super) fn observe(
        &mut self,
        id: &PipelineId,
        run: Option<RunId>,
        observer: &Actor,
        stream: &StreamName,
        schema: Schema,
    ) -> Result<Observation> {
        // Read afresh for every schema: an earlier one of the same finish may have paused it.
        let (mut pipeline, _) = self.pipeline(id)?;
        let current = self.current_schema(id, stream)?;
        let held: Vec<Decision> = self
            .exec
            .query(
                "SELECT body FROM decisions WHERE pipeline = ? AND stream = ? AND held = 1",
                params![id.as_str(), stream.as_str()],
            )?
            .iter()
            .map(|r| r.json(0))
            .collect::<Result<_>>()?;
        let observed = Observed {
            pipeline: &pipeline,
            stream,
            run,
            observer,
            schema,
            now: self.now,
        };
        let write = observe(observed, current, held, || {
            self.counter("decision").map(DecisionId)
        })?;
        if let Some(version) = &write.version {
            self.insert_schema_version(version)?;
        }
        if let Some(pause) = write.pause {
            pipeline.paused = Some(pause);
            pipeline.updated_at = self.now;
            self.save_pipeline(&pipeline)?;
        }
        if let Some(decision) = &write.decision {
            self.save_decision(decision, true)?;
        }
        for (actor, kind) in &write.events {
            self.emit(actor, id, kind)?;
        }
        Ok(write.observation)
    }

    pub(super) fn insert_schema_version(&mut self, version: &SchemaVersion) -> Result<()> {
        self.exec.execute(
            "INSERT INTO schema_versions (pipeline, stream, version, body) VALUES (?, ?, ?, ?)",
            params![
                version.pipeline.as_str(),
                version.stream.as_str(),
                version.version,
                to_json(version)?
            ],
        )
    }

    pub(super) fn list_decisions(
        &mut self,
        query: &DecisionQuery,
    ) -> Result<Page<Decision, DecisionId>> {
        let (sql, args) = decisions_page(query);
        let rows = self.exec.query(&sql, &args)?;
        let items = rows
            .iter()
            .map(|r| r.json(0))
            .collect::<Result<Vec<Decision>>>()?;
        Ok(Page::from_overfetch(items, query.limit, |d| d.id))
    }

    pub(super) fn decide(&mut self, id: DecisionId, decide: &Decide) -> Result<Decision> {
        let current = self
            .decision(id)?
            .ok_or(Error::NotFound(Entity::Decision { decision: id }))?;
        let (mut pipeline, _) = self.pipeline(&current.pipeline)?;
        let current_version = self
            .current_schema(&current.pipeline, &current.stream)?
            .map_or(0, |v| v.version);
        let other_held = self
            .held_count(&current.pipeline)?
            .saturating_sub(usize::from(current.is_pending()));
        let write = resolve(
            &current,
            decide,
            &pipeline,
            current_version,
            other_held,
            self.now,
        )?;
        if let Some(version) = &write.version {
            self.insert_schema_version(version)?;
        }
        self.save_decision(&write.decision, false)?;
        if write.resume {
            pipeline.paused = None;
            pipeline.updated_at = self.now;
            self.save_pipeline(&pipeline)?;
        }
        for (actor, kind) in &write.events {
            self.emit(actor, &current.pipeline, kind)?;
        }
        Ok(write.decision)
    }
}
