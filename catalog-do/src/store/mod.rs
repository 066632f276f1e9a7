//! The portable SQLite catalog: every statement of the catalog, written once over [`Exec`].
//!
//! Both hosts — the Durable Object and the embedded local file — call [`handle`] inside an atomic
//! unit ([`Atomic::atomic`]), so every operation commits completely or not at all, and reads
//! inside it see a state no other writer can change before the unit ends (the DO runs one request
//! at a time; the embedded host holds SQLite's write lock). Domain rules come from `hakiri-core`:
//! this module reads the state a rule needs, asks the rule, and writes its outcome.
//!
//! This file holds the entry points, [`handle`]'s dispatch, the reads every area shares and the
//! paged reads' statements; each area's operations are in a file of their own, in the order the
//! contract suite checks them: `pipelines.rs`, `leases.rs`, `runs.rs`, `cursors.rs`,
//! `schemas.rs` (versions and decisions), `reads.rs` (statuses and events), `archive.rs` (export
//! and import). `memo.rs` holds what a host remembers of the cursors it wrote, which a checkpoint
//! is planned from (ADR 0041).

mod archive;
mod cursors;
pub mod exec;
mod leases;
mod memo;
mod migrations;
#[cfg(all(test, not(target_arch = "wasm32")))]
mod pages_at_scale;
mod pipelines;
mod reads;
mod runs;
mod schemas;

use std::collections::BTreeMap;
use std::time::Duration;

use hakiri_core::cursor::{plan_advance, plan_reset, AdvancePlan};
use hakiri_core::evolution::{observe, resolve, Observed};
use hakiri_core::lease::{check_fence, plan_acquire, plan_renew};
use hakiri_core::pipeline::{
    check_delete, pause_event, plan_pause, plan_put, plan_request, PutPlan,
};
use hakiri_core::run::{abandon, check_writable, plan_begin, plan_finish, Beginning};
use hakiri_core::{
    Actor, BeginRun, Cursor, CursorAdvance, CursorChange, CursorHistoryEntry, CursorKind,
    CursorReset, CursorValue, CursorWrite, Decide, Decision, DecisionId, DecisionQuery, Entity,
    Epoch, Error, Event, EventKind, FinishRun, Generation, HolderId, Lease, LeaseState, Limit,
    Observation, Page, PauseChange, Pipeline, PipelineId, PipelineSpec, PipelineStatus, ProjectId,
    PutMode, Reason, ResetTarget, Result, Run, RunId, RunQuery, Schema, SchemaVersion, StatusPage,
    StreamName, Timestamp, Trigger, WriteStamp,
};

use exec::{from_json, params, to_json};
pub use exec::{Atomic, Exec, FailAt, Row, SqlValue};
use hakiri_protocol::{Request, Response};
pub use memo::CursorMemo;
use memo::Remembered;

/// Brings a database to the current schema in an atomic unit of its own; run it once when a host
/// opens its database.
///
/// # Errors
/// The host's error, or [`Error::Backend`] for a database newer than this build.
pub fn migrate(exec: &mut impl Atomic, now: Timestamp) -> Result<()> {
    exec.atomic(move |exec| migrations::migrate(exec, now))
}

/// Like [`migrate`], for a host that already holds a transaction.
///
/// # Errors
/// As [`migrate`].
pub fn migrate_in_place(exec: &mut impl Exec, now: Timestamp) -> Result<()> {
    migrations::migrate(exec, now)
}

/// Records `project` as the database's project on first use, and refuses any other afterwards:
/// a database holds exactly one project. Run it inside an atomic unit, after [`migrate`].
///
/// # Errors
/// [`Error::InvalidArgument`] if the database belongs to another project.
pub fn bind_project(exec: &mut impl Exec, project: &ProjectId) -> Result<()> {
    exec.execute(
        "INSERT INTO meta (key, value) VALUES ('project', ?) ON CONFLICT (key) DO NOTHING",
        params![project.as_str()],
    )?;
    let stored = bound_project(exec)?
        .ok_or_else(|| Error::Backend("the project record is missing".into()))?;
    check_project(&stored, project)
}

/// Whether the database is at this build's schema and bound to `project`, found by reading only:
/// when it is, a host has nothing to write on open ([`migrate`] and [`bind_project`] would change
/// nothing).
///
/// # Errors
/// [`Error::InvalidArgument`] if the database belongs to another project; [`Error::Backend`] for
/// a database migrated by a newer build.
pub fn is_prepared(exec: &mut impl Exec, project: &ProjectId) -> Result<bool> {
    if !migrations::is_current(exec)? {
        return Ok(false);
    }
    match bound_project(exec)? {
        Some(stored) => check_project(&stored, project).map(|()| true),
        None => Ok(false),
    }
}

fn bound_project(exec: &mut impl Exec) -> Result<Option<String>> {
    exec.query_row("SELECT value FROM meta WHERE key = 'project'", &[])?
        .map(|row| row.text(0).map(str::to_owned))
        .transpose()
}

fn check_project(stored: &str, project: &ProjectId) -> Result<()> {
    if stored == project.as_str() {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "this catalog database holds project {stored:?}, not {:?}",
            project.as_str()
        )))
    }
}

/// Runs one request against the store, planning checkpoints from `memo` and remembering the
/// cursors it writes there. Call it inside an atomic unit.
///
/// # Errors
/// Whatever the operation returns; the caller's atomic unit rolls back on any error.
pub fn handle(
    exec: &mut impl Exec,
    memo: &mut CursorMemo,
    request: Request,
    now: Timestamp,
) -> Result<Response> {
    let mut store = Store {
        exec,
        now,
        memo: Some(memo),
    };
    store.handle(request)
}

/// The events after `after`, oldest first, at most `limit` of them — of `pipeline`'s slice of
/// the log (through `events_by_pipeline`), or of the whole log: what an event stream reads. One
/// statement, so it needs no atomic unit.
///
/// # Errors
/// The host's error reading the log.
pub fn events(
    exec: &mut impl Exec,
    pipeline: Option<&PipelineId>,
    after: u64,
    limit: Limit,
) -> Result<Vec<Event>> {
    let mut store = Store {
        exec,
        now: Timestamp::from_millis(0),
        memo: None,
    };
    match pipeline {
        Some(pipeline) => store.pipeline_events(pipeline, after, limit),
        None => store.events(after, limit),
    }
}

/// The sequence number after which the last `n` events begin, of `pipeline`'s slice or of the
/// whole log: the same number `CatalogExt::tail_after` finds by searching with page reads, here
/// read in one step (the `n + 1`-th newest event's, or 0 when there are no more than `n`).
///
/// # Errors
/// The host's error reading the log.
pub fn tail_after(exec: &mut impl Exec, pipeline: Option<&PipelineId>, n: u64) -> Result<u64> {
    let offset = i64::try_from(n).unwrap_or(i64::MAX);
    let row = match pipeline {
        Some(pipeline) => exec.query_row(
            "SELECT seq FROM events WHERE pipeline = ? ORDER BY seq DESC LIMIT 1 OFFSET ?",
            params![pipeline.as_str(), offset],
        )?,
        None => exec.query_row(
            "SELECT seq FROM events ORDER BY seq DESC LIMIT 1 OFFSET ?",
            params![offset],
        )?,
    };
    row.map_or(Ok(0), |row| row.uint(0))
}

/// The reconciler's plan at `now` (the host's clock): every pipeline's status, read page by page
/// and planned by `hakiri_core::plan`. Call it inside an atomic unit, so that the pages are one
/// snapshot.
///
/// # Errors
/// The host's error reading the statuses.
pub fn plan(exec: &mut impl Exec, now: Timestamp) -> Result<hakiri_core::plan::Plan> {
    let mut store = Store {
        exec,
        now,
        memo: None,
    };
    let mut statuses = Vec::new();
    let mut after = None;
    loop {
        let page = store.pipeline_statuses(after.as_ref(), Limit::MAX)?;
        statuses.extend(page.items);
        match page.next {
            Some(next) => after = Some(next),
            None => return Ok(hakiri_core::plan::plan(&statuses, now)),
        }
    }
}

struct Store<'a, E: Exec> {
    exec: &'a mut E,
    now: Timestamp,
    /// The host's memo of cursors, for the operations that write them.
    memo: Option<&'a mut CursorMemo>,
}

/// The columns of a pipeline that lease-checked writes need, without its JSON document.
struct Hot {
    cursor_kind: CursorKind,
    lease: Option<LeaseState>,
    running: Option<RunId>,
}

/// The hot columns of `pipelines`, as a literal so that statements are `concat!`-ed at compile time.
macro_rules! hot_columns {
    () => {
        "cursor_kind, lease_epoch, lease_holder, lease_expires_at, running_run"
    };
}

fn hot_from(row: &Row, first: usize) -> Result<Hot> {
    let cursor_kind = match row.text(first)? {
        "opaque" => CursorKind::Opaque,
        _ => CursorKind::Monotonic,
    };
    let lease = match row.opt_int(first + 1)? {
        None => None,
        Some(epoch) => Some(LeaseState {
            epoch: Epoch(u64::try_from(epoch).unwrap_or(0)),
            holder: row.opt_text(first + 2)?.map(HolderId::new).transpose()?,
            expires_at: Timestamp::from_millis(row.opt_int(first + 3)?.unwrap_or(0)),
        }),
    };
    let running = row.opt_text(first + 4)?.map(str::parse).transpose()?;
    Ok(Hot {
        cursor_kind,
        lease,
        running,
    })
}

fn kind_text(kind: CursorKind) -> &'static str {
    match kind {
        CursorKind::Monotonic => "monotonic",
        CursorKind::Opaque => "opaque",
    }
}

// The paged reads (`docs/guarantees.md`, “Fast”: O(page) however long the history grows;
// `pages_at_scale.rs` holds them to it).

/// The `list_runs` statement and its arguments: every filter combination is a backwards scan of
/// an index ending in `id` (`runs`' primary key, `runs_by_pipeline`, `runs_by_status`,
/// `runs_by_pipeline_status`).
pub(crate) fn runs_page(query: &RunQuery) -> (String, Vec<SqlValue>) {
    let mut sql = String::from("SELECT body FROM runs WHERE 1 = 1");
    let mut args = Vec::new();
    if let Some(before) = query.before {
        sql.push_str(" AND id < ?");
        args.push(SqlValue::from(before.to_string()));
    }
    if let Some(pipeline) = &query.pipeline {
        sql.push_str(" AND pipeline = ?");
        args.push(SqlValue::from(pipeline.as_str()));
    }
    if let Some(status) = query.status {
        sql.push_str(" AND status = ?");
        args.push(SqlValue::from(status.to_string()));
    }
    sql.push_str(" ORDER BY id DESC LIMIT ?");
    args.push(SqlValue::from(query.limit.get() + 1));
    (sql, args)
}

/// The `list_decisions` statement and its arguments (`decisions_by_pipeline`, `decisions_held`).
pub(crate) fn decisions_page(query: &DecisionQuery) -> (String, Vec<SqlValue>) {
    let mut sql = String::from("SELECT body FROM decisions WHERE id > ?");
    let mut args = vec![SqlValue::from(query.after.map_or(0, DecisionId::get))];
    if let Some(pipeline) = &query.pipeline {
        sql.push_str(" AND pipeline = ?");
        args.push(SqlValue::from(pipeline.as_str()));
    }
    if query.held_only {
        sql.push_str(" AND held = 1");
    }
    sql.push_str(" ORDER BY id LIMIT ?");
    args.push(SqlValue::from(query.limit.get() + 1));
    (sql, args)
}

/// A page of a cursor's history, newest first: pipeline, stream, before (exclusive), limit. A
/// range of `events_history`: each cursor write's history entry is kept in its event (ADR 0038).
pub(crate) const CURSOR_HISTORY_PAGE: &str =
    "SELECT history FROM events WHERE pipeline = ? AND stream = ? AND version < ? \
     ORDER BY version DESC LIMIT ?";

/// Detaches a pipeline's cursor history from its events (they stay in the log): pipeline.
pub(crate) const FORGET_HISTORY: &str =
    "UPDATE events SET stream = NULL, version = NULL, history = NULL \
     WHERE pipeline = ? AND stream IS NOT NULL";

/// A page of the event log: after (exclusive), limit.
pub(crate) const EVENTS_PAGE: &str =
    "SELECT seq, at, actor, pipeline, kind FROM events WHERE seq > ? ORDER BY seq LIMIT ?";

/// A page of one pipeline's events: pipeline, after (exclusive), limit. A range of
/// `events_by_pipeline`.
pub(crate) const PIPELINE_EVENTS_PAGE: &str = "SELECT seq, at, actor, pipeline, kind FROM events \
     WHERE pipeline = ? AND seq > ? ORDER BY seq LIMIT ?";

/// A page of one pipeline's events read backwards: pipeline, before (exclusive), limit; the
/// newest of them, oldest first. The same range of `events_by_pipeline`, walked down.
pub(crate) const PIPELINE_EVENTS_BEFORE: &str = "SELECT * FROM (SELECT seq, at, actor, pipeline, \
     kind FROM events WHERE pipeline = ? AND seq < ? ORDER BY seq DESC LIMIT ?) ORDER BY seq";

/// A page of the reconciler snapshot's pipelines: after (exclusive), limit; then, for each,
/// [`LAST_RUN`] and [`HELD_DECISIONS`].
pub(crate) const STATUS_PAGE: &str = concat!(
    "SELECT body, ",
    hot_columns!(),
    " FROM pipelines WHERE id > ? ORDER BY id LIMIT ?"
);

/// A pipeline's newest run.
pub(crate) const LAST_RUN: &str =
    "SELECT body FROM runs WHERE pipeline = ? ORDER BY id DESC LIMIT 1";

/// A pipeline's held decisions.
pub(crate) const HELD_DECISIONS: &str =
    "SELECT id FROM decisions WHERE pipeline = ? AND held = 1 ORDER BY id";

impl<E: Exec> Store<'_, E> {
    fn handle(&mut self, request: Request) -> Result<Response> {
        use Request as R;
        Ok(match request {
            R::PutPipeline { spec, mode, by } => {
                Response::Pipeline(self.put_pipeline(spec, mode, &by)?)
            }
            R::GetPipeline { pipeline } => Response::Pipeline(self.pipeline(&pipeline)?.0),
            R::ListPipelines { after, limit } => {
                Response::Pipelines(self.list_pipelines(after.as_ref(), limit)?)
            }
            R::SetPaused {
                pipeline,
                change,
                by,
            } => Response::Pipeline(self.set_paused(&pipeline, &change, &by)?),
            R::RequestRun {
                pipeline,
                trigger,
                by,
            } => Response::Pipeline(self.request_run(&pipeline, trigger, &by)?),
            R::DeletePipeline {
                pipeline,
                expected,
                by,
            } => {
                self.delete_pipeline(&pipeline, expected, &by)?;
                Response::Unit
            }
            R::Acquire {
                pipeline,
                holder,
                ttl_ms,
            } => Response::Lease(self.acquire(
                &pipeline,
                &holder,
                Duration::from_millis(ttl_ms),
                None,
            )?),
            R::ForceAcquire {
                pipeline,
                holder,
                ttl_ms,
                by,
                reason,
            } => Response::Lease(self.acquire(
                &pipeline,
                &holder,
                Duration::from_millis(ttl_ms),
                Some((&by, &reason)),
            )?),
            R::Renew { lease, ttl_ms } => {
                Response::Lease(self.renew(&lease, Duration::from_millis(ttl_ms))?)
            }
            R::Release { lease } => {
                self.release(&lease)?;
                Response::Unit
            }
            R::BeginRun { lease, begin } => Response::Run(self.begin_run(&lease, begin)?),
            R::Advance {
                lease,
                run,
                stream,
                advance,
            } => Response::Cursor(self.advance(&lease, run, &stream, &advance)?),
            R::FinishRun { lease, run, finish } => {
                Response::Run(self.finish_run(&lease, run, finish)?)
            }
            R::GetRun { run } => Response::Run(self.get_run(run)?),
            R::ListRuns { query } => Response::Runs(self.list_runs(&query)?),
            R::GetCursor { pipeline, stream } => {
                self.ensure_pipeline(&pipeline)?;
                Response::MaybeCursor(self.cursor(&pipeline, &stream)?)
            }
            R::ListCursors { pipeline } => Response::Cursors(self.list_cursors(&pipeline)?),
            R::CursorHistory {
                pipeline,
                stream,
                before,
                limit,
            } => Response::CursorHistory(self.cursor_history(&pipeline, &stream, before, limit)?),
            R::ResetCursor {
                lease,
                stream,
                reset,
            } => Response::Cursor(self.reset_cursor(&lease, &stream, &reset)?),
            R::ObserveSchema {
                lease,
                run,
                stream,
                schema,
            } => {
                self.writable_run(&lease, run)?;
                let holder = Actor::Holder(lease.holder.clone());
                Response::Observation(self.observe(
                    &lease.pipeline,
                    Some(run),
                    &holder,
                    &stream,
                    schema,
                )?)
            }
            R::GetSchema {
                pipeline,
                stream,
                version,
            } => Response::SchemaVersion(self.get_schema(&pipeline, &stream, version)?),
            R::ListSchemaVersions { pipeline, stream } => {
                self.ensure_pipeline(&pipeline)?;
                Response::SchemaVersions(self.schema_versions(&pipeline, &stream)?)
            }
            R::ListDecisions { query } => Response::Decisions(self.list_decisions(&query)?),
            R::Decide { decision, decide } => Response::Decision(self.decide(decision, &decide)?),
            R::PipelineStatuses { after, limit } => {
                Response::Statuses(self.pipeline_statuses(after.as_ref(), limit)?)
            }
            R::Events { after, limit } => Response::Events(self.events(after, limit)?),
            R::PipelineEvents {
                pipeline,
                after,
                limit,
            } => Response::Events(self.pipeline_events(&pipeline, after, limit)?),
            R::PipelineEventsBefore {
                pipeline,
                before,
                limit,
            } => Response::Events(self.pipeline_events_before(&pipeline, before, limit)?),
            R::ListStreams { pipeline } => Response::Streams(self.list_streams(&pipeline)?),
            R::ArchiveHead => Response::ArchiveHead(self.archive_head()?),
            R::Import { batch } => Response::ImportProgress(self.import(batch)?),
        })
    }

    // Shared reads.

    fn pipeline(&mut self, id: &PipelineId) -> Result<(Pipeline, Hot)> {
        let sql = concat!(
            "SELECT body, ",
            hot_columns!(),
            " FROM pipelines WHERE id = ?"
        );
        let row = self
            .exec
            .query_row(sql, params![id.as_str()])?
            .ok_or_else(|| Error::pipeline_not_found(id))?;
        Ok((row.json(0)?, hot_from(&row, 1)?))
    }

    fn hot(&mut self, id: &PipelineId) -> Result<Option<Hot>> {
        let sql = concat!("SELECT ", hot_columns!(), " FROM pipelines WHERE id = ?");
        self.exec
            .query_row(sql, params![id.as_str()])?
            .map(|row| hot_from(&row, 0))
            .transpose()
    }

    fn ensure_pipeline(&mut self, id: &PipelineId) -> Result<()> {
        self.exec
            .query_row("SELECT 1 FROM pipelines WHERE id = ?", params![id.as_str()])?
            .map(drop)
            .ok_or_else(|| Error::pipeline_not_found(id))
    }

    /// The pipeline's hot columns, if `lease` is valid now.
    fn fenced(&mut self, lease: &Lease) -> Result<Hot> {
        let hot = self.hot(&lease.pipeline)?;
        check_fence(hot.as_ref().and_then(|h| h.lease.as_ref()), lease, self.now)?;
        hot.ok_or_else(|| Error::pipeline_not_found(&lease.pipeline))
    }

    /// The pipeline's hot columns, if `lease` is valid and `run` is its running run.
    fn writable_run(&mut self, lease: &Lease, run: RunId) -> Result<Hot> {
        let hot = self.fenced(lease)?;
        self.check_running(hot, lease, run)
    }

    /// [`Self::writable_run`] and `stream`'s current cursor with its value's stored text, read
    /// by one statement: all an advance reads.
    fn writable_cursor(
        &mut self,
        lease: &Lease,
        run: RunId,
        stream: &StreamName,
    ) -> Result<(Hot, Option<(Cursor, String)>)> {
        // No column name is in both tables; the cursor's are `CURSOR_COLUMNS`.
        let sql = concat!(
            "SELECT ",
            hot_columns!(),
            ", pipeline, stream, value, version, run, epoch, updated_by, updated_at \
             FROM pipelines LEFT JOIN cursors ON pipeline = id AND stream = ? WHERE id = ?"
        );
        let row = self
            .exec
            .query_row(sql, params![stream.as_str(), lease.pipeline.as_str()])?;
        let hot = row.as_ref().map(|row| hot_from(row, 0)).transpose()?;
        check_fence(hot.as_ref().and_then(|h| h.lease.as_ref()), lease, self.now)?;
        let (Some(hot), Some(row)) = (hot, row) else {
            return Err(Error::pipeline_not_found(&lease.pipeline));
        };
        let cursor = match row.opt_int(8)? {
            None => None,
            Some(_) => Some((Self::cursor_at(&row, 5)?, row.text(7)?.to_owned())),
        };
        Ok((self.check_running(hot, lease, run)?, cursor))
    }

    /// `hot`, if `run` is its running run (the lease already checked).
    fn check_running(&mut self, hot: Hot, lease: &Lease, run: RunId) -> Result<Hot> {
        // The running run always belongs to the current epoch (a new acquisition abandons it),
        // so a match is the whole of `check_writable`; otherwise let the rule say what is wrong.
        if hot.running == Some(run) {
            return Ok(hot);
        }
        let record = self.get_run(run)?;
        check_writable(&record, lease)?;
        Err(Error::Backend(format!(
            "run {run} is running but not recorded as the pipeline's running run"
        )))
    }

    fn counter(&mut self, name: &str) -> Result<u64> {
        self.exec
            .query_row(
                "UPDATE counters SET value = value + 1 WHERE name = ? RETURNING value",
                params![name],
            )?
            .ok_or_else(|| Error::Backend(format!("counter {name} is missing")))?
            .uint(0)
    }

    fn emit(&mut self, actor: &Actor, pipeline: &PipelineId, kind: &EventKind) -> Result<()> {
        self.append_event(actor, pipeline, kind, None)
    }

    /// Appends the event recording a cursor write, which carries the write's history entry
    /// (ADR 0038).
    fn emit_write(
        &mut self,
        pipeline: &PipelineId,
        write: &CursorWrite,
        stamp: &WriteStamp,
    ) -> Result<()> {
        let entry = write.history_entry(stamp);
        self.append_event(
            &stamp.by,
            pipeline,
            &write.event(),
            Some((&write.stream, &entry)),
        )
    }

    fn append_event(
        &mut self,
        actor: &Actor,
        pipeline: &PipelineId,
        kind: &EventKind,
        history: Option<(&StreamName, &CursorHistoryEntry)>,
    ) -> Result<()> {
        let (stream, version, body) = match history {
            Some((stream, entry)) => (
                Some(stream.as_str()),
                Some(entry.version),
                Some(to_json(entry)?),
            ),
            None => (None, None, None),
        };
        self.exec.execute(
            "INSERT INTO events (at, actor, pipeline, kind, stream, version, history) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
            params![
                self.now.as_millis(),
                to_json(actor)?,
                pipeline.as_str(),
                to_json(kind)?,
                stream,
                version,
                body
            ],
        )
    }

    fn save_pipeline(&mut self, pipeline: &Pipeline) -> Result<()> {
        self.exec.execute(
            "UPDATE pipelines SET body = ?, cursor_kind = ? WHERE id = ?",
            params![
                to_json(pipeline)?,
                kind_text(pipeline.spec.cursor_kind),
                pipeline.id().as_str()
            ],
        )
    }
}
