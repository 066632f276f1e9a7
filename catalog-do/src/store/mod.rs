//! The portable SQLite catalog: every statement of the catalog, written once over [`Exec`].
//!
//! Both hosts — the Durable Object and the embedded local file — call [`handle`] inside an atomic
//! unit ([`Atomic::atomic`]), so every operation commits completely or not at all, and reads
//! inside it see a state no other writer can change before the unit ends (the DO runs one request
//! at a time; the embedded host holds SQLite's write lock). Domain rules come from `hakiri-core`:
//! this module reads the state a rule needs, asks the rule, and writes its outcome.

pub mod exec;
mod migrations;
#[cfg(all(test, not(target_arch = "wasm32")))]
mod pages_at_scale;

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

use crate::protocol::{Request, Response};
use exec::{from_json, params, to_json};
pub use exec::{Atomic, Exec, FailAt, Row, SqlValue};

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

/// Runs one request against the store. Call it inside an atomic unit.
///
/// # Errors
/// Whatever the operation returns; the caller's atomic unit rolls back on any error.
pub fn handle(exec: &mut impl Exec, request: Request, now: Timestamp) -> Result<Response> {
    let mut store = Store { exec, now };
    store.handle(request)
}

struct Store<'a, E: Exec> {
    exec: &'a mut E,
    now: Timestamp,
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
// `pages_at_scale.rs` holds
// them to it).

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

/// A page of a cursor's history, newest first: pipeline, stream, before (exclusive), limit.
pub(crate) const CURSOR_HISTORY_PAGE: &str =
    "SELECT body FROM cursor_history WHERE pipeline = ? AND stream = ? AND version < ? \
     ORDER BY version DESC LIMIT ?";

/// A page of the event log: after (exclusive), limit.
pub(crate) const EVENTS_PAGE: &str =
    "SELECT seq, at, actor, pipeline, kind FROM events WHERE seq > ? ORDER BY seq LIMIT ?";

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
            R::Checkpoint {
                lease,
                run,
                stream,
                advance,
            } => Response::Cursor(self.checkpoint(&lease, run, &stream, &advance)?),
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
        self.exec.execute(
            "INSERT INTO events (at, actor, pipeline, kind) VALUES (?, ?, ?, ?)",
            params![
                self.now.as_millis(),
                to_json(actor)?,
                pipeline.as_str(),
                to_json(kind)?
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

    // Pipelines.

    fn put_pipeline(&mut self, spec: PipelineSpec, mode: PutMode, by: &Actor) -> Result<Pipeline> {
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

    fn list_pipelines(
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

    fn held_count(&mut self, pipeline: &PipelineId) -> Result<usize> {
        let count = self
            .exec
            .query_row(
                "SELECT COUNT(*) FROM decisions WHERE pipeline = ? AND held = 1",
                params![pipeline.as_str()],
            )?
            .map_or(Ok(0), |r| r.uint(0))?;
        Ok(usize::try_from(count).unwrap_or(usize::MAX))
    }

    fn set_paused(
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

    fn request_run(&mut self, id: &PipelineId, trigger: Trigger, by: &Actor) -> Result<Pipeline> {
        let (mut pipeline, _) = self.pipeline(id)?;
        let Some(request) = plan_request(&pipeline, trigger, by, self.now)? else {
            return Ok(pipeline);
        };
        pipeline.requested = Some(request);
        self.save_pipeline(&pipeline)?;
        self.emit(by, id, &EventKind::RunRequested { trigger })?;
        Ok(pipeline)
    }

    fn delete_pipeline(&mut self, id: &PipelineId, expected: Generation, by: &Actor) -> Result<()> {
        let (pipeline, hot) = self.pipeline(id)?;
        check_delete(&pipeline, expected, hot.lease.as_ref(), self.now)?;
        for table in [
            "pipelines",
            "runs",
            "cursors",
            "cursor_history",
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
        self.emit(by, id, &EventKind::PipelineDeleted)
    }

    // Leases.

    fn acquire(
        &mut self,
        id: &PipelineId,
        holder: &HolderId,
        ttl: Duration,
        forced_by: Option<(&Actor, &Reason)>,
    ) -> Result<Lease> {
        let hot = self.hot(id)?.ok_or_else(|| Error::pipeline_not_found(id))?;
        // Drawn before the rule runs; a refusal rolls the whole unit back, counter included.
        let next_epoch = Epoch(self.counter("epoch")?);
        let lease = plan_acquire(
            hot.lease.as_ref(),
            id,
            holder,
            ttl,
            self.now,
            next_epoch,
            forced_by.is_some(),
        )?;
        self.abandon_running(id, hot.running)?;
        self.exec.execute(
            "UPDATE pipelines SET lease_epoch = ?, lease_holder = ?, lease_expires_at = ? WHERE id = ?",
            params![lease.epoch.get(), holder.as_str(), lease.expires_at.as_millis(), id.as_str()],
        )?;
        let actor = forced_by.map_or_else(|| Actor::Holder(holder.clone()), |(by, _)| by.clone());
        let kind = EventKind::LeaseAcquired {
            holder: holder.clone(),
            epoch: lease.epoch,
            forced: forced_by.is_some(),
        };
        self.emit(&actor, id, &kind)?;
        Ok(lease)
    }

    /// Marks the pipeline's running run (of an epoch that just lost the lease) `Abandoned`.
    fn abandon_running(&mut self, id: &PipelineId, running: Option<RunId>) -> Result<()> {
        let Some(run) = running else {
            return Ok(());
        };
        let run = self.get_run(run)?;
        let write = abandon(run, self.cursor_values(id)?, self.now);
        self.end_run(id, &write.run)?;
        self.emit(&write.event.0, id, &write.event.1)
    }

    fn renew(&mut self, lease: &Lease, ttl: Duration) -> Result<Lease> {
        let hot = self.hot(&lease.pipeline)?;
        let renewed = plan_renew(
            hot.as_ref().and_then(|h| h.lease.as_ref()),
            lease,
            ttl,
            self.now,
        )?;
        self.exec.execute(
            "UPDATE pipelines SET lease_expires_at = ? WHERE id = ?",
            params![renewed.expires_at.as_millis(), lease.pipeline.as_str()],
        )?;
        Ok(renewed)
    }

    fn release(&mut self, lease: &Lease) -> Result<()> {
        let hot = self.fenced(lease)?;
        self.abandon_running(&lease.pipeline, hot.running)?;
        self.exec.execute(
            "UPDATE pipelines SET lease_holder = NULL WHERE id = ?",
            params![lease.pipeline.as_str()],
        )?;
        let kind = EventKind::LeaseReleased { epoch: lease.epoch };
        self.emit(&Actor::Holder(lease.holder.clone()), &lease.pipeline, &kind)
    }

    // Runs.

    /// Writes `run`'s ended record and clears the pipeline's running run.
    fn end_run(&mut self, pipeline: &PipelineId, run: &Run) -> Result<()> {
        self.exec.execute(
            "UPDATE runs SET status = ?, body = ? WHERE id = ?",
            params![run.status.to_string(), to_json(run)?, run.id.to_string()],
        )?;
        self.exec.execute(
            "UPDATE pipelines SET running_run = NULL WHERE id = ?",
            params![pipeline.as_str()],
        )
    }

    fn begin_run(&mut self, lease: &Lease, begin: BeginRun) -> Result<Run> {
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

    fn finish_run(&mut self, lease: &Lease, run: RunId, finish: FinishRun) -> Result<Run> {
        let hot = self.writable_run(lease, run)?;
        let record = self.get_run(run)?;
        let current = self.cursors(&lease.pipeline)?;
        let write = plan_finish(record, lease, hot.cursor_kind, &current, finish, self.now)?;
        for cursor in write.cursors {
            self.write_cursor(&lease.pipeline, cursor, &write.stamp)?;
        }
        for (stream, schema) in write.schemas {
            self.observe(&lease.pipeline, Some(run), &write.stamp.by, &stream, schema)?;
        }
        self.end_run(&lease.pipeline, &write.run)?;
        self.emit(&write.event.0, &lease.pipeline, &write.event.1)?;
        Ok(write.run)
    }

    fn get_run(&mut self, run: RunId) -> Result<Run> {
        self.exec
            .query_row(
                "SELECT body FROM runs WHERE id = ?",
                params![run.to_string()],
            )?
            .ok_or_else(|| Error::run_not_found(run))?
            .json(0)
    }

    fn list_runs(&mut self, query: &RunQuery) -> Result<Page<Run, RunId>> {
        let (sql, args) = runs_page(query);
        let rows = self.exec.query(&sql, &args)?;
        let items = rows
            .iter()
            .map(|r| r.json(0))
            .collect::<Result<Vec<Run>>>()?;
        Ok(Page::from_overfetch(items, query.limit, |r| r.id))
    }

    // Cursors.

    fn cursor_values(
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
    fn cursors(
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

    fn current_cursor(
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

    const CURSOR_COLUMNS: &'static str =
        "pipeline, stream, value, version, run, epoch, updated_by, updated_at";

    fn cursor_from(row: &Row) -> Result<Cursor> {
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

    fn cursor(&mut self, pipeline: &PipelineId, stream: &StreamName) -> Result<Option<Cursor>> {
        let sql = format!(
            "SELECT {} FROM cursors WHERE pipeline = ? AND stream = ?",
            Self::CURSOR_COLUMNS
        );
        self.exec
            .query_row(&sql, params![pipeline.as_str(), stream.as_str()])?
            .map(|r| Self::cursor_from(&r))
            .transpose()
    }

    fn list_cursors(&mut self, pipeline: &PipelineId) -> Result<Vec<Cursor>> {
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

    fn checkpoint(
        &mut self,
        lease: &Lease,
        run: RunId,
        stream: &StreamName,
        advance: &CursorAdvance,
    ) -> Result<Cursor> {
        let hot = self.writable_run(lease, run)?;
        let current = self.current_cursor(&lease.pipeline, stream)?;
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

    /// Applies a cursor write: the stream's cursor, its history entry, its event.
    fn write_cursor(
        &mut self,
        pipeline: &PipelineId,
        write: CursorWrite,
        stamp: &WriteStamp,
    ) -> Result<Cursor> {
        let cursor = write.cursor(pipeline, stamp);
        self.exec.execute(
            "INSERT INTO cursors (pipeline, stream, value, version, run, epoch, updated_by, updated_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (pipeline, stream) DO UPDATE SET value = excluded.value, version = excluded.version,
                 run = excluded.run, epoch = excluded.epoch, updated_by = excluded.updated_by,
                 updated_at = excluded.updated_at",
            params![
                pipeline.as_str(),
                write.stream.as_str(),
                to_json(&write.value)?,
                write.version,
                stamp.run.map(|r| r.to_string()),
                stamp.epoch.map(|e| e.get()),
                to_json(&stamp.by)?,
                stamp.at.as_millis()
            ],
        )?;
        self.exec.execute(
            "INSERT INTO cursor_history (pipeline, stream, version, body) VALUES (?, ?, ?, ?)",
            params![
                pipeline.as_str(),
                write.stream.as_str(),
                write.version,
                to_json(&write.history_entry(stamp))?
            ],
        )?;
        self.emit(&stamp.by, pipeline, &write.event())?;
        Ok(cursor)
    }

    fn cursor_history(
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

    fn reset_cursor(
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
                    "SELECT body FROM cursor_history WHERE pipeline = ? AND stream = ? AND version = ?",
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

    // Schemas.

    fn schema_versions(
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

    fn current_schema(
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

    fn get_schema(
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

    fn decision(&mut self, id: DecisionId) -> Result<Option<Decision>> {
        self.exec
            .query_row("SELECT body FROM decisions WHERE id = ?", params![id.get()])?
            .map(|r| r.json(0))
            .transpose()
    }

    fn save_decision(&mut self, decision: &Decision, insert: bool) -> Result<()> {
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
    fn observe(
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

    fn insert_schema_version(&mut self, version: &SchemaVersion) -> Result<()> {
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

    fn list_decisions(&mut self, query: &DecisionQuery) -> Result<Page<Decision, DecisionId>> {
        let (sql, args) = decisions_page(query);
        let rows = self.exec.query(&sql, &args)?;
        let items = rows
            .iter()
            .map(|r| r.json(0))
            .collect::<Result<Vec<Decision>>>()?;
        Ok(Page::from_overfetch(items, query.limit, |d| d.id))
    }

    fn decide(&mut self, id: DecisionId, decide: &Decide) -> Result<Decision> {
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

    // Reads for the reconciler and the audit log.

    fn pipeline_statuses(
        &mut self,
        after: Option<&PipelineId>,
        limit: Limit,
    ) -> Result<StatusPage> {
        let after = after.map_or("", PipelineId::as_str);
        let rows = self
            .exec
            .query(STATUS_PAGE, params![after, limit.get() + 1])?;
        let mut items = Vec::with_capacity(rows.len());
        for row in &rows {
            let pipeline: Pipeline = row.json(0)?;
            let hot = hot_from(row, 1)?;
            let id = pipeline.id().as_str().to_owned();
            let last_run = self
                .exec
                .query_row(LAST_RUN, params![id.as_str()])?
                .map(|r| r.json(0))
                .transpose()?;
            let held_decisions = self
                .exec
                .query(HELD_DECISIONS, params![id])?
                .iter()
                .map(|r| r.uint(0).map(DecisionId))
                .collect::<Result<_>>()?;
            items.push(PipelineStatus {
                pipeline,
                lease: hot.lease,
                last_run,
                held_decisions,
            });
        }
        let page = Page::from_overfetch(items, limit, |s| s.pipeline.id().clone());
        Ok(StatusPage {
            items: page.items,
            next: page.next,
            as_of: self.now,
        })
    }

    fn events(&mut self, after: u64, limit: Limit) -> Result<Vec<Event>> {
        let rows = self.exec.query(EVENTS_PAGE, params![after, limit.get()])?;
        rows.iter()
            .map(|r| {
                Ok(Event {
                    seq: r.uint(0)?,
                    at: Timestamp::from_millis(r.int(1)?),
                    actor: r.json(2)?,
                    pipeline: PipelineId::new(r.text(3)?)?,
                    kind: from_json(r.text(4)?)?,
                })
            })
            .collect()
    }
}
