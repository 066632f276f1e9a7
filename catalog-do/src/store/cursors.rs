//! Cursors: reads, checkpoints, the cursor write, history, resets.

use super::*;

impl<E: Exec> Store<'_, E> {
    pub(super) fn cursor_values(
        &mut self,
        pipeline: &PipelineId,
    ) -> Result<BTreeMap<StreamName, CursorValue>> {
        let rows = self.exec.query(
            "SELECT stream, value FROM cursors WHERE pipeline = ?",
            params![pipeline.as_str()],
        )?;
        rows.iter()
            .map(|r| Ok((StreamName::new(r.text(0)?)?, r.json(1)?)))
            .collect()
    }

    /// Every cursor of `pipeline`, value and version.
    pub(super) fn cursors(
        &mut self,
        pipeline: &PipelineId,
    ) -> Result<BTreeMap<StreamName, (CursorValue, u64)>> {
        let rows = self.exec.query(
            "SELECT stream, value, version FROM cursors WHERE pipeline = ?",
            params![pipeline.as_str()],
        )?;
        rows.iter()
            .map(|r| Ok((StreamName::new(r.text(0)?)?, (r.json(1)?, r.uint(2)?))))
            .collect()
    }

    pub(super) fn current_cursor(
        &mut self,
        pipeline: &PipelineId,
        stream: &StreamName,
    ) -> Result<Option<(CursorValue, u64)>> {
        self.exec
            .query_row(
                "SELECT value, version FROM cursors WHERE pipeline = ? AND stream = ?",
                params![pipeline.as_str(), stream.as_str()],
            )?
            .map(|r| Ok((r.json(0)?, r.uint(1)?)))
            .transpose()
    }

    pub(super) const CURSOR_COLUMNS: &'static str =
        "pipeline, stream, value, version, run, epoch, updated_by, updated_at";

    pub(super) fn cursor_from(row: &Row) -> Result<Cursor> {
        Ok(Cursor {
            pipeline: PipelineId::new(row.text(0)?)?,
            stream: StreamName::new(row.text(1)?)?,
            value: row.json(2)?,
            version: row.uint(3)?,
            run: row.opt_text(4)?.map(str::parse).transpose()?,
            epoch: row
                .opt_int(5)?
                .map(|e| Epoch(u64::try_from(e).unwrap_or(0))),
            updated_by: row.json(6)?,
            updated_at: Timestamp::from_millis(row.int(7)?),
        })
    }

    pub(super) fn cursor(
        &mut self,
        pipeline: &PipelineId,
        stream: &StreamName,
    ) -> Result<Option<Cursor>> {
        let sql = format!(
            "SELECT {} FROM cursors WHERE pipeline = ? AND stream = ?",
            Self::CURSOR_COLUMNS
        );
        self.exec
            .query_row(&sql, params![pipeline.as_str(), stream.as_str()])?
            .map(|r| Self::cursor_from(&r))
            .transpose()
    }

    pub(super) fn list_cursors(&mut self, pipeline: &PipelineId) -> Result<Vec<Cursor>> {
        self.ensure_pipeline(pipeline)?;
        let sql = format!(
            "SELECT {} FROM cursors WHERE pipeline = ? ORDER BY stream",
            Self::CURSOR_COLUMNS
        );
        self.exec
            .query(&sql, params![pipeline.as_str()])?
            .iter()
            .map(Self::cursor_from)
            .collect()
    }

    pub(super) fn advance(
        &mut self,
        lease: &Lease,
        run: RunId,
        stream: &StreamName,
        advance: &CursorAdvance,
    ) -> Result<Cursor> {
        let (hot, current) = self.writable_cursor(lease, run, stream)?;
        match plan_advance(
            hot.cursor_kind,
            &lease.pipeline,
            stream,
            current.as_ref().map(|(v, n)| (v, *n)),
            advance,
            CursorChange::Checkpoint,
        )? {
            AdvancePlan::Unchanged => self
                .cursor(&lease.pipeline, stream)?
                .ok_or_else(|| Error::Backend("an unchanged cursor must exist".into())),
            AdvancePlan::Write(write) => {
                let stamp = WriteStamp::holder(lease, run, self.now);
                self.write_cursor(&lease.pipeline, write, &stamp)
            }
        }
    }

    /// Applies a cursor write: the stream's cursor, and its event with its history entry.
    pub(super) fn write_cursor(
        &mut self,
        pipeline: &PipelineId,
        write: CursorWrite,
        stamp: &WriteStamp,
    ) -> Result<Cursor> {
        let cursor = write.cursor(pipeline, stamp);
        self.store_cursor(&cursor, true)?;
        self.emit_write(pipeline, &write, stamp)?;
        Ok(cursor)
    }

    /// Stores `cursor` as its stream's current one; an existing one is replaced or, without
    /// `replace`, kept.
    pub(super) fn store_cursor(&mut self, cursor: &Cursor, replace: bool) -> Result<()> {
        macro_rules! insert_cursor {
            ($on_conflict:literal) => {
                concat!(
                    "INSERT INTO cursors (pipeline, stream, value, version, run, epoch, updated_by, \
                     updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (pipeline, stream) ",
                    $on_conflict
                )
            };
        }
        let sql = if replace {
            insert_cursor!(
                "DO UPDATE SET value = excluded.value, version = excluded.version, \
                 run = excluded.run, epoch = excluded.epoch, updated_by = excluded.updated_by, \
                 updated_at = excluded.updated_at"
            )
        } else {
            insert_cursor!("DO NOTHING")
        };
        self.exec.execute(
            sql,
            params![
                cursor.pipeline.as_str(),
                cursor.stream.as_str(),
                to_json(&cursor.value)?,
                cursor.version,
                cursor.run.map(|r| r.to_string()),
                cursor.epoch.map(|e| e.get()),
                to_json(&cursor.updated_by)?,
                cursor.updated_at.as_millis()
            ],
        )
    }

    pub(super) fn cursor_history(
        &mut self,
        pipeline: &PipelineId,
        stream: &StreamName,
        before: Option<u64>,
        limit: Limit,
    ) -> Result<Page<CursorHistoryEntry, u64>> {
        self.ensure_pipeline(pipeline)?;
        // Versions stay below 2^53 (they cross JavaScript numbers in the Durable Object).
        const NO_BOUND: i64 = (1 << 53) - 1;
        let before = before.map_or(NO_BOUND, |b| {
            i64::try_from(b).unwrap_or(NO_BOUND).min(NO_BOUND)
        });
        let rows = self.exec.query(
            CURSOR_HISTORY_PAGE,
            params![pipeline.as_str(), stream.as_str(), before, limit.get() + 1],
        )?;
        let items = rows
            .iter()
            .map(|r| r.json(0))
            .collect::<Result<Vec<CursorHistoryEntry>>>()?;
        Ok(Page::from_overfetch(items, limit, |e| e.version))
    }

    pub(super) fn reset_cursor(
        &mut self,
        lease: &Lease,
        stream: &StreamName,
        reset: &CursorReset,
    ) -> Result<Cursor> {
        let hot = self.fenced(lease)?;
        let current = self.current_cursor(&lease.pipeline, stream)?;
        let old_value: Option<CursorValue> = match reset.target {
            ResetTarget::Version(version) => self
                .exec
                .query_row(
                    "SELECT history FROM events WHERE pipeline = ? AND stream = ? AND version = ?",
                    params![lease.pipeline.as_str(), stream.as_str(), version],
                )?
                .map(|r| r.json::<CursorHistoryEntry>(0).map(|e| e.value))
                .transpose()?,
            _ => None,
        };
        let current_ref = current.as_ref().map(|(v, n)| (v, *n));
        let write = plan_reset(
            hot.cursor_kind,
            &lease.pipeline,
            stream,
            current_ref,
            old_value.as_ref(),
            reset,
        )?;
        let stamp = WriteStamp::operator(lease, &reset.by, self.now);
        self.write_cursor(&lease.pipeline, write, &stamp)
    }
}
