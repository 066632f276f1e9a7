//! Runs: begin, finish, read.

use super::*;

impl<E: Exec> Store<'_, E> {
    /// Writes `run`'s ended record and clears the pipeline's running run.
    pub(super) fn end_run(&mut self, pipeline: &PipelineId, run: &Run) -> Result<()> {
        self.exec.execute(
            "UPDATE runs SET status = ?, body = ? WHERE id = ?",
            params![run.status.to_string(), to_json(run)?, run.id.to_string()],
        )?;
        self.exec.execute(
            "UPDATE pipelines SET running_run = NULL WHERE id = ?",
            params![pipeline.as_str()],
        )
    }

    pub(super) fn begin_run(&mut self, lease: &Lease, begin: BeginRun) -> Result<Run> {
        self.fenced(lease)?;
        let (mut pipeline, hot) = self.pipeline(&lease.pipeline)?;
        // A persistent counter, not randomness: unique across processes sharing the file (they
        // serialise on the write lock).
        let mut entropy = [0u8; 10];
        entropy[2..].copy_from_slice(&self.counter("run")?.to_be_bytes());
        let last: Option<RunId> =
            match self.exec.query_row("SELECT max(id) FROM runs", params![])? {
                Some(row) => row.opt_text(0)?.map(str::parse).transpose()?,
                None => None,
            };
        let write = plan_begin(
            begin,
            Beginning {
                lease,
                pipeline: &pipeline,
                running: hot.running,
                cursors: self.cursor_values(&lease.pipeline)?,
                id: RunId::next(self.now, last, entropy),
                now: self.now,
            },
        )?;
        let run = write.run;
        self.exec.execute(
            "INSERT INTO runs (id, pipeline, status, body) VALUES (?, ?, ?, ?)",
            params![
                run.id.to_string(),
                lease.pipeline.as_str(),
                run.status.to_string(),
                to_json(&run)?
            ],
        )?;
        self.exec.execute(
            "UPDATE pipelines SET running_run = ? WHERE id = ?",
            params![run.id.to_string(), lease.pipeline.as_str()],
        )?;
        if write.clears_request {
            pipeline.requested = None;
            self.save_pipeline(&pipeline)?;
        }
        self.emit(&write.event.0, &lease.pipeline, &write.event.1)?;
        Ok(run)
    }

    pub(super) fn finish_run(
        &mut self,
        lease: &Lease,
        run: RunId,
        finish: FinishRun,
    ) -> Result<Run> {
        let hot = self.writable_run(lease, run)?;
        let record = self.get_run(run)?;
        let current = self.cursors(&lease.pipeline)?;
        let write = plan_finish(record, lease, hot.cursor_kind, &current, finish, self.now)?;
        for cursor in write.cursors {
            self.write_cursor(&lease.pipeline, hot.cursor_kind, cursor, &write.stamp)?;
        }
        for (stream, schema) in write.schemas {
            self.observe(&lease.pipeline, Some(run), &write.stamp.by, &stream, schema)?;
        }
        self.end_run(&lease.pipeline, &write.run)?;
        self.emit(&write.event.0, &lease.pipeline, &write.event.1)?;
        Ok(write.run)
    }

    pub(super) fn get_run(&mut self, run: RunId) -> Result<Run> {
        self.exec
            .query_row(
                "SELECT body FROM runs WHERE id = ?",
                params![run.to_string()],
            )?
            .ok_or_else(|| Error::run_not_found(run))?
            .json(0)
    }

    pub(super) fn list_runs(&mut self, query: &RunQuery) -> Result<Page<Run, RunId>> {
        let (sql, args) = runs_page(query);
        let rows = self.exec.query(&sql, &args)?;
        let items = rows
            .iter()
            .map(|r| r.json(0))
            .collect::<Result<Vec<Run>>>()?;
        Ok(Page::from_overfetch(items, query.limit, |r| r.id))
    }
}
