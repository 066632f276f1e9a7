//! Archives: the streams of a pipeline, the head of an export, and an import's batches.

use hakiri_core::archive::{
    plan_import, version_without_event, ArchiveHead, Counters, ImportBatch, ImportMarker,
    ImportProgress, Record,
};

use hakiri_core::RunStatus;

use super::*;

impl<E: Exec> Store<'_, E> {
    pub(super) fn list_streams(&mut self, pipeline: &PipelineId) -> Result<Vec<StreamName>> {
        self.ensure_pipeline(pipeline)?;
        self.exec
            .query(
                "SELECT stream FROM cursors WHERE pipeline = ? \
                 UNION SELECT stream FROM schema_versions WHERE pipeline = ? ORDER BY stream",
                params![pipeline.as_str(), pipeline.as_str()],
            )?
            .iter()
            .map(|row| StreamName::new(row.text(0)?))
            .collect()
    }

    pub(super) fn archive_head(&mut self) -> Result<ArchiveHead> {
        let row = self
            .exec
            .query_row(
                "SELECT (SELECT value FROM counters WHERE name = 'epoch'),
                        (SELECT value FROM counters WHERE name = 'decision'),
                        (SELECT coalesce(max(seq), 0) FROM events),
                        EXISTS (SELECT 1 FROM pipelines),
                        (SELECT value FROM meta WHERE key = 'import')",
                params![],
            )?
            .ok_or_else(|| Error::Backend("the archive head read no row".into()))?;
        let last_event = row.uint(2)?;
        Ok(ArchiveHead {
            counters: Counters {
                epoch: row.uint(0)?,
                decision: row.uint(1)?,
            },
            last_event,
            empty: last_event == 0 && row.int(3)? == 0,
            importing: row.opt_text(4)?.map(from_json).transpose()?,
        })
    }

    pub(super) fn import(&mut self, batch: ImportBatch) -> Result<ImportProgress> {
        let head = self.archive_head()?;
        let marker = plan_import(&head, &batch)?;
        let applied = batch.position + batch.records.len() as u64;
        let mut known: Option<PipelineId> = None;
        for record in batch.records {
            self.import_record(record, &mut known)?;
        }
        if marker.is_none() {
            self.check_history_placed()?;
        }
        let counters = batch.counters;
        self.exec.execute(
            "UPDATE counters SET value = CASE name WHEN 'epoch' THEN ? ELSE ? END \
             WHERE name IN ('epoch', 'decision')",
            params![counters.epoch, counters.decision],
        )?;
        self.save_marker(marker.as_ref())?;
        Ok(ImportProgress {
            applied,
            done: marker.is_none(),
        })
    }

    /// Ends an import's history: every cursor version the archive listed must have found the
    /// event recording it, since that is where the version is kept.
    fn check_history_placed(&mut self) -> Result<()> {
        let stray = self.exec.query_row(
            "SELECT pipeline, stream, version FROM importing_history h WHERE NOT EXISTS \
             (SELECT 1 FROM events e WHERE e.pipeline = h.pipeline AND e.stream = h.stream \
             AND e.version = h.version) LIMIT 1",
            params![],
        )?;
        if let Some(row) = stray {
            return Err(version_without_event(
                row.text(0)?,
                row.text(1)?,
                row.uint(2)?,
            ));
        }
        self.exec
            .execute("DELETE FROM importing_history", params![])
    }

    fn save_marker(&mut self, marker: Option<&ImportMarker>) -> Result<()> {
        match marker {
            Some(marker) => self.exec.execute(
                "INSERT INTO meta (key, value) VALUES ('import', ?) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                params![to_json(marker)?],
            ),
            None => self
                .exec
                .execute("DELETE FROM meta WHERE key = 'import'", params![]),
        }
    }

    /// Fails unless `pipeline` exists; `known` remembers the last one found, since a pipeline's
    /// records follow it.
    fn imported_pipeline(
        &mut self,
        pipeline: &PipelineId,
        known: &mut Option<PipelineId>,
    ) -> Result<()> {
        if known.as_ref() != Some(pipeline) {
            self.ensure_pipeline(pipeline)?;
            *known = Some(pipeline.clone());
        }
        Ok(())
    }

    /// Stores one record as it is, with what the store derives from it.
    fn import_record(&mut self, record: Record, known: &mut Option<PipelineId>) -> Result<()> {
        match record {
            Record::Pipeline { pipeline, lease } => {
                let id = pipeline.id().clone();
                let inserted = self.exec.query_row(
                    "INSERT INTO pipelines (id, body, cursor_kind, lease_epoch, lease_holder, \
                     lease_expires_at) VALUES (?, ?, ?, ?, ?, ?) \
                     ON CONFLICT (id) DO NOTHING RETURNING 1",
                    params![
                        id.as_str(),
                        to_json(&pipeline)?,
                        kind_text(pipeline.spec.cursor_kind),
                        lease.as_ref().map(|l| l.epoch.get()),
                        lease
                            .as_ref()
                            .and_then(|l| l.holder.as_ref().map(|h| h.to_string())),
                        lease.as_ref().map(|l| l.expires_at.as_millis())
                    ],
                )?;
                if inserted.is_none() {
                    return Err(Error::AlreadyExists(Entity::Pipeline { pipeline: id }));
                }
                *known = Some(id);
            }
            Record::Run { run } => {
                self.imported_pipeline(&run.pipeline, known)?;
                let inserted = self.exec.query_row(
                    "INSERT INTO runs (id, pipeline, status, body) VALUES (?, ?, ?, ?) \
                     ON CONFLICT (id) DO NOTHING RETURNING 1",
                    params![
                        run.id.to_string(),
                        run.pipeline.as_str(),
                        run.status.to_string(),
                        to_json(&run)?
                    ],
                )?;
                if inserted.is_none() {
                    return Err(Error::AlreadyExists(Entity::Run { run: run.id }));
                }
                if run.status == RunStatus::Running {
                    self.exec.execute(
                        "UPDATE pipelines SET running_run = ? WHERE id = ?",
                        params![run.id.to_string(), run.pipeline.as_str()],
                    )?;
                }
            }
            Record::CursorVersion {
                pipeline,
                stream,
                entry,
            } => {
                self.imported_pipeline(&pipeline, known)?;
                // Versions come newest first: the first one of a stream is its cursor.
                self.store_cursor(&entry.cursor(&pipeline, &stream), false)?;
                // The entry belongs in its event, which the archive lists later (ADR 0038).
                self.exec.execute(
                    "INSERT INTO importing_history (pipeline, stream, version, body) \
                     VALUES (?, ?, ?, ?)",
                    params![
                        pipeline.as_str(),
                        stream.as_str(),
                        entry.version,
                        to_json(&entry)?
                    ],
                )?;
            }
            Record::SchemaVersion { version } => {
                self.imported_pipeline(&version.pipeline, known)?;
                self.insert_schema_version(&version)?;
            }
            Record::Decision { decision } => {
                self.imported_pipeline(&decision.pipeline, known)?;
                if self.decision(decision.id)?.is_some() {
                    return Err(Error::AlreadyExists(Entity::Decision {
                        decision: decision.id,
                    }));
                }
                self.save_decision(&decision, true)?;
            }
            Record::Event { event } => {
                // History belongs to the events after a pipeline's last deletion: what an
                // earlier incarnation's events took is given back.
                if event.kind == EventKind::PipelineDeleted {
                    self.exec
                        .execute(FORGET_HISTORY, params![event.pipeline.as_str()])?;
                }
                let (stream, version) = event
                    .kind
                    .cursor_version()
                    .map_or((None, None), |(s, v)| (Some(s.as_str()), Some(v)));
                self.exec.execute(
                    "INSERT INTO events (seq, at, actor, pipeline, kind, stream, version, history) \
                     SELECT ?, ?, ?, ?, ?, h.stream, h.version, h.body FROM (SELECT 1) \
                     LEFT JOIN importing_history h \
                     ON h.pipeline = ? AND h.stream = ? AND h.version = ?",
                    params![
                        event.seq,
                        event.at.as_millis(),
                        to_json(&event.actor)?,
                        event.pipeline.as_str(),
                        to_json(&event.kind)?,
                        event.pipeline.as_str(),
                        stream,
                        version
                    ],
                )?;
            }
        }
        Ok(())
    }
}
