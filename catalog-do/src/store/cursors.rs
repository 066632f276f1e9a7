//! Cursors: reads, checkpoints, the cursor write, history, resets.

use super::*;

/// A checkpoint planned from the memo ([`CursorMemo`]): the cursor is written only if it is still
/// the remembered one (the same version and stored text) and the pipeline's row says what
/// `check_fence` and `check_running` would accept at the write's time — the lease's epoch and
/// holder current and unexpired, the run its running run — with the cursor kind the plan used.
///
/// | param | meaning |
/// |---|---|
/// | `?1` | the new value, as stored text |
/// | `?2` | the new version |
/// | `?3` | the run (guarded: the pipeline's running run) |
/// | `?4` | the lease's epoch (guarded) |
/// | `?5` | the holder as actor, as JSON text |
/// | `?6` | the time (the lease must expire after it) |
/// | `?7` | pipeline |
/// | `?8` | stream |
/// | `?9` | the remembered version (guarded) |
/// | `?10` | the remembered value's stored text (guarded) |
/// | `?11` | the cursor kind planned with (guarded) |
/// | `?12` | the lease's holder (guarded) |
pub(super) const REMEMBERED_CHECKPOINT: &str = "UPDATE cursors SET value = ?1, version = ?2, \
     run = ?3, epoch = ?4, updated_by = ?5, updated_at = ?6 \
     WHERE pipeline = ?7 AND stream = ?8 AND version = ?9 AND value = ?10 \
     AND EXISTS (SELECT 1 FROM pipelines WHERE id = ?7 AND cursor_kind = ?11 \
       AND lease_epoch = ?4 AND lease_holder = ?12 AND lease_expires_at > ?6 \
       AND running_run = ?3)";

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
        Self::cursor_at(row, 0)
    }

    /// The cursor in `row`'s [`Self::CURSOR_COLUMNS`] from column `first` on.
    pub(super) fn cursor_at(row: &Row, first: usize) -> Result<Cursor> {
        Ok(Cursor {
            pipeline: PipelineId::new(row.text(first)?)?,
            stream: StreamName::new(row.text(first + 1)?)?,
            value: row.json(first + 2)?,
            version: row.uint(first + 3)?,
            run: row.opt_text(first + 4)?.map(str::parse).transpose()?,
            epoch: row
                .opt_int(first + 5)?
                .map(|e| Epoch(u64::try_from(e).unwrap_or(0))),
            updated_by: row.json(first + 6)?,
            updated_at: Timestamp::from_millis(row.int(first + 7)?),
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
        if let Some(cursor) = self.advance_remembered(lease, run, stream, advance)? {
            return Ok(cursor);
        }
        let (hot, current) = self.writable_cursor(lease, run, stream)?;
        let kind = hot.cursor_kind;
        let plan = plan_advance(
            kind,
            &lease.pipeline,
            stream,
            current.as_ref().map(|(c, _)| (&c.value, c.version)),
            advance,
            CursorChange::Checkpoint,
        );
        match plan {
            Ok(AdvancePlan::Write(write)) => {
                let stamp = WriteStamp::holder(lease, run, self.now);
                self.write_cursor(&lease.pipeline, kind, write, &stamp)
            }
            unchanged_or_refused => {
                // Nothing to write: remember what was read, so the next checkpoint need not.
                if let Some((cursor, stored)) = &current {
                    self.remember(kind, cursor, stored);
                }
                unchanged_or_refused?;
                current
                    .map(|(cursor, _)| cursor)
                    .ok_or_else(|| Error::Backend("an unchanged cursor must exist".into()))
            }
        }
    }

    /// The checkpoint planned from the memo and written by one guarded statement, if the memo
    /// knows the stream, plans a write, and the stored cursor, lease and run are as it assumed;
    /// `None` when the caller must read and plan afresh (a refusal or a no-op planned from the
    /// memo is only believed once confirmed against the database).
    fn advance_remembered(
        &mut self,
        lease: &Lease,
        run: RunId,
        stream: &StreamName,
        advance: &CursorAdvance,
    ) -> Result<Option<Cursor>> {
        // Borrowed, not copied: the memo is a field of its own, untouched until the write is done.
        let Some(known) = self
            .memo
            .as_deref()
            .and_then(|memo| memo.recall(&lease.pipeline, stream))
        else {
            return Ok(None);
        };
        let current = Some((&known.value, known.version));
        let Ok(AdvancePlan::Write(write)) = plan_advance(
            known.kind,
            &lease.pipeline,
            stream,
            current,
            advance,
            CursorChange::Checkpoint,
        ) else {
            return Ok(None);
        };
        let stamp = WriteStamp::holder(lease, run, self.now);
        let cursor = write.cursor(&lease.pipeline, &stamp);
        let stored = to_json(&cursor.value)?;
        let written = self.exec.write(
            REMEMBERED_CHECKPOINT,
            params![
                stored.as_str(),
                cursor.version,
                run.to_string(),
                lease.epoch.get(),
                to_json(&cursor.updated_by)?,
                self.now.as_millis(),
                lease.pipeline.as_str(),
                stream.as_str(),
                known.version,
                known.stored.as_str(),
                kind_text(known.kind),
                lease.holder.as_str()
            ],
        )?;
        let kind = known.kind;
        if written == 0 {
            return Ok(None);
        }
        self.emit_write(&lease.pipeline, &write, &stamp)?;
        self.remember(kind, &cursor, &stored);
        Ok(Some(cursor))
    }

    /// Applies a cursor write: the stream's cursor, and its event with its history entry.
    pub(super) fn write_cursor(
        &mut self,
        pipeline: &PipelineId,
        kind: CursorKind,
        write: CursorWrite,
        stamp: &WriteStamp,
    ) -> Result<Cursor> {
        let cursor = write.cursor(pipeline, stamp);
        let stored = self.store_cursor(&cursor, true)?;
        self.emit_write(pipeline, &write, stamp)?;
        self.remember(kind, &cursor, &stored);
        Ok(cursor)
    }

    /// Remembers `cursor`, its value stored as `stored`, if this store keeps a memo.
    fn remember(&mut self, kind: CursorKind, cursor: &Cursor, stored: &str) {
        if let Some(memo) = self.memo.as_deref_mut() {
            let remembered = Remembered {
                kind,
                value: cursor.value.clone(),
                stored: stored.to_owned(),
                version: cursor.version,
            };
            memo.remember(&cursor.pipeline, &cursor.stream, remembered);
        }
    }

    /// Stores `cursor` as its stream's current one; an existing one is replaced or, without
    /// `replace`, kept. Returns the value's text as written.
    pub(super) fn store_cursor(&mut self, cursor: &Cursor, replace: bool) -> Result<String> {
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
        let stored = to_json(&cursor.value)?;
        self.exec.execute(
            sql,
            params![
                cursor.pipeline.as_str(),
                cursor.stream.as_str(),
                stored.as_str(),
                cursor.version,
                cursor.run.map(|r| r.to_string()),
                cursor.epoch.map(|e| e.get()),
                to_json(&cursor.updated_by)?,
                cursor.updated_at.as_millis()
            ],
        )?;
        Ok(stored)
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
        self.write_cursor(&lease.pipeline, hot.cursor_kind, write, &stamp)
    }
}
