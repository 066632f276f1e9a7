//! Runs: one execution of a pipeline, its status machine, the requests that begin and finish
//! it, and the rules that decide everything a begin, a finish and an abandon write
//! ([`plan_begin`], [`plan_finish`], [`abandon`]): a backend only applies what they return,
//! atomically (ADR 0001).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::audit::{Actor, EventKind, Reason};
use crate::cursor::{
    plan_advance, AdvancePlan, CursorAdvance, CursorChange, CursorKind, CursorValue, CursorWrite,
    WriteStamp,
};
use crate::error::{Error, Result};
use crate::ids::{Epoch, HolderId, PipelineId, RunId, StreamName};
use crate::lease::Lease;
use crate::page::Limit;
use crate::pipeline::Pipeline;
use crate::schema::Schema;
use crate::time::Timestamp;

/// Longest error message kept on a run, in bytes; longer ones are truncated, not refused.
pub const MAX_ERROR_LEN: usize = 16 * 1024;

/// Why a run started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// The pipeline's schedule came due.
    Schedule,
    /// A previous attempt failed and the retry policy allows another.
    Retry,
    /// An operator asked.
    Manual,
    /// An operator asked for a re-read of past data.
    Backfill,
}

impl Trigger {
    /// Whether runs of this kind start from an operator's request (`Manual`, `Backfill`); which
    /// pending request a begun run consumes is [`crate::RunRequest::satisfied_by`].
    pub fn is_requested(self) -> bool {
        matches!(self, Trigger::Manual | Trigger::Backfill)
    }
}

/// Where a run is in its life.
///
/// `Running` → `Succeeded` | `Failed` | `Cancelled` (by its holder's finish) or `Abandoned` (by the
/// catalog, when a newer epoch takes the pipeline or the holder releases while running). Terminal
/// states never change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// In progress.
    Running,
    /// Finished successfully.
    Succeeded,
    /// Finished with an error.
    Failed,
    /// Stopped on request (shutdown, operator).
    Cancelled,
    /// Its lease was lost while it was running.
    Abandoned,
}

impl RunStatus {
    /// Whether the run has ended.
    pub fn is_terminal(self) -> bool {
        self != RunStatus::Running
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
            RunStatus::Abandoned => "abandoned",
        })
    }
}

/// What a run did to one stream, and what its source said of it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamStats {
    /// Records read.
    pub records: u64,
    /// Bytes read.
    pub bytes: u64,
    /// The last status the source reported for the stream, for sources that report one (an
    /// Airbyte source's `TRACE STREAM_STATUS`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<StreamStatus>,
    /// How many records the source said it would send (an Airbyte source's `TRACE ESTIMATE`):
    /// with `records`, how far the stream got.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimated_records: Option<u64>,
    /// How many bytes the source said it would send.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimated_bytes: Option<u64>,
}

impl StreamStats {
    /// `records` records of `bytes` bytes, and nothing reported by the source.
    pub fn new(records: u64, bytes: u64) -> Self {
        Self {
            records,
            bytes,
            ..Self::default()
        }
    }
}

/// Where a source said a stream got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamStatus {
    /// The source began reading it.
    Started,
    /// The source is reading it.
    Running,
    /// The source read all of it.
    Complete,
    /// The source stopped reading it before the end (it failed, or was stopped).
    Incomplete,
}

impl fmt::Display for StreamStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StreamStatus::Started => "started",
            StreamStatus::Running => "running",
            StreamStatus::Complete => "complete",
            StreamStatus::Incomplete => "incomplete",
        })
    }
}

/// Why a run failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunError {
    /// What went wrong (truncated to [`MAX_ERROR_LEN`] bytes).
    pub message: String,
    /// Whether the retry policy should try again.
    pub retryable: bool,
}

impl RunError {
    /// An error, its message truncated at a character boundary to [`MAX_ERROR_LEN`] bytes.
    pub fn new(message: impl Into<String>, retryable: bool) -> Self {
        let mut message = message.into();
        if message.len() > MAX_ERROR_LEN {
            let mut cut = MAX_ERROR_LEN;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
        }
        Self { message, retryable }
    }
}

/// One execution of a pipeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    /// Its id (time-ordered).
    pub id: RunId,
    /// The pipeline.
    pub pipeline: PipelineId,
    /// The lease epoch it runs under.
    pub epoch: Epoch,
    /// Who ran it.
    pub holder: HolderId,
    /// Why it started.
    pub trigger: Trigger,
    /// 1 for a first attempt, n for the (n−1)th retry.
    pub attempt: u32,
    /// Where it is.
    pub status: RunStatus,
    /// When it began (catalog clock).
    pub started_at: Timestamp,
    /// When it ended.
    pub finished_at: Option<Timestamp>,
    /// Per-stream statistics, written by the finish.
    pub stats: BTreeMap<StreamName, StreamStats>,
    /// Why it failed or was cancelled.
    pub error: Option<RunError>,
    /// Every cursor of the pipeline when it began.
    pub cursors_at_start: BTreeMap<StreamName, CursorValue>,
    /// Every cursor of the pipeline when it ended (or was abandoned).
    pub cursors_at_end: BTreeMap<StreamName, CursorValue>,
}

/// The request to begin a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BeginRun {
    /// Why.
    pub trigger: Trigger,
    /// Which attempt (≥ 1).
    pub attempt: u32,
}

impl BeginRun {
    /// A first attempt.
    pub fn new(trigger: Trigger) -> Self {
        Self {
            trigger,
            attempt: 1,
        }
    }

    /// Validates the attempt number.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for attempt 0.
    pub fn validate(&self) -> Result<()> {
        if self.attempt == 0 {
            return Err(Error::invalid("a run's attempt number starts at 1"));
        }
        Ok(())
    }
}

/// How a run ended, as its holder reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome {
    /// It did everything.
    Succeeded,
    /// It failed.
    Failed {
        /// Why.
        error: RunError,
    },
    /// It was stopped.
    Cancelled {
        /// Why.
        reason: Reason,
    },
}

impl Outcome {
    /// The status the run ends in.
    pub fn status(&self) -> RunStatus {
        match self {
            Outcome::Succeeded => RunStatus::Succeeded,
            Outcome::Failed { .. } => RunStatus::Failed,
            Outcome::Cancelled { .. } => RunStatus::Cancelled,
        }
    }

    /// The error recorded on the run, if any.
    pub fn error(&self) -> Option<RunError> {
        match self {
            Outcome::Succeeded => None,
            Outcome::Failed { error } => Some(error.clone()),
            Outcome::Cancelled { reason } => Some(RunError::new(reason.as_str(), false)),
        }
    }
}

/// Everything a finish writes, all or nothing: status, stats, final cursors and schema
/// observations (whose decisions are recorded in the same step).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FinishRun {
    /// How it ended.
    pub outcome: Outcome,
    /// Per-stream statistics.
    #[serde(default)]
    pub stats: BTreeMap<StreamName, StreamStats>,
    /// Final cursor per stream (checked like checkpoints: ordering, kind).
    #[serde(default)]
    pub cursors: BTreeMap<StreamName, CursorValue>,
    /// Schemas observed at the end of the run, judged by the schema policy.
    #[serde(default)]
    pub schemas: BTreeMap<StreamName, Schema>,
}

impl FinishRun {
    /// A finish with this outcome and nothing else.
    pub fn new(outcome: Outcome) -> Self {
        Self {
            outcome,
            stats: BTreeMap::new(),
            cursors: BTreeMap::new(),
            schemas: BTreeMap::new(),
        }
    }

    /// A successful finish.
    pub fn succeeded() -> Self {
        Self::new(Outcome::Succeeded)
    }

    /// Adds a final cursor.
    #[must_use]
    pub fn with_cursor(mut self, stream: StreamName, value: CursorValue) -> Self {
        self.cursors.insert(stream, value);
        self
    }

    /// Adds stream statistics.
    #[must_use]
    pub fn with_stats(mut self, stream: StreamName, stats: StreamStats) -> Self {
        self.stats.insert(stream, stats);
        self
    }

    /// Adds an observed schema.
    #[must_use]
    pub fn with_schema(mut self, stream: StreamName, schema: Schema) -> Self {
        self.schemas.insert(stream, schema);
        self
    }
}

/// The rule for lease-checked writes to a run: it must be this pipeline's, running, and of the
/// lease's epoch.
///
/// # Errors
/// `NotFound` for another pipeline's run; `FailedPrecondition` for an ended run or one of another
/// epoch.
pub fn check_writable(run: &Run, lease: &Lease) -> Result<()> {
    if run.pipeline != lease.pipeline {
        return Err(Error::run_not_found(run.id));
    }
    if run.status != RunStatus::Running {
        return Err(Error::precondition(format!(
            "run {} has ended ({}); begin a new run",
            run.id, run.status
        )));
    }
    if run.epoch != lease.epoch {
        return Err(Error::precondition(format!(
            "run {} belongs to epoch {}, not the lease's epoch {}",
            run.id, run.epoch, lease.epoch
        )));
    }
    Ok(())
}

/// The rule for beginning a run on a pipeline under a valid lease: the pipeline must not be
/// paused, and must have no run in progress (`running`).
///
/// # Errors
/// `FailedPrecondition` for a paused pipeline, or one with a running run.
pub fn check_begin(pipeline: &Pipeline, running: Option<RunId>) -> Result<()> {
    if let Some(pause) = &pipeline.paused {
        return Err(Error::precondition(format!(
            "pipeline {} is paused ({}); resume it first",
            pipeline.id(),
            pause.reason
        )));
    }
    if let Some(running) = running {
        return Err(Error::precondition(format!(
            "pipeline {} already has a running run {running}; finish it first",
            pipeline.id()
        )));
    }
    Ok(())
}

/// The pipeline a run begins on, as its backend holds it under a valid lease.
#[derive(Debug, Clone)]
pub struct Beginning<'a> {
    /// The lease the run begins under (already checked against the fence).
    pub lease: &'a Lease,
    /// The pipeline (its pause and pending request).
    pub pipeline: &'a Pipeline,
    /// Its running run, if any.
    pub running: Option<RunId>,
    /// Its cursors now: the run's `cursors_at_start`.
    pub cursors: BTreeMap<StreamName, CursorValue>,
    /// The new run's id ([`RunId::next`]).
    pub id: RunId,
    /// The catalog clock's time.
    pub now: Timestamp,
}

/// Everything a backend writes to begin a run, decided by [`plan_begin`], in one atomic step.
#[derive(Debug, Clone, PartialEq)]
pub struct BeginWrite {
    /// The run to insert; the pipeline's running run becomes its id.
    pub run: Run,
    /// Whether the pipeline's pending request is cleared: the run an operator asked for has
    /// begun.
    pub clears_request: bool,
    /// The event to append.
    pub event: (Actor, EventKind),
}

/// The rule for beginning a run, whole: the attempt number, [`check_begin`], the run record and
/// what else the begin writes.
///
/// # Errors
/// `InvalidArgument` for attempt 0; `FailedPrecondition` as [`check_begin`].
pub fn plan_begin(begin: BeginRun, at: Beginning<'_>) -> Result<BeginWrite> {
    begin.validate()?;
    check_begin(at.pipeline, at.running)?;
    let lease = at.lease;
    let run = Run {
        id: at.id,
        pipeline: lease.pipeline.clone(),
        epoch: lease.epoch,
        holder: lease.holder.clone(),
        trigger: begin.trigger,
        attempt: begin.attempt,
        status: RunStatus::Running,
        started_at: at.now,
        finished_at: None,
        stats: BTreeMap::new(),
        error: None,
        cursors_at_start: at.cursors,
        cursors_at_end: BTreeMap::new(),
    };
    let event = EventKind::RunBegun {
        run: run.id,
        epoch: lease.epoch,
    };
    Ok(BeginWrite {
        clears_request: at
            .pipeline
            .requested
            .as_ref()
            .is_some_and(|request| request.satisfied_by(begin.trigger)),
        event: (Actor::Holder(lease.holder.clone()), event),
        run,
    })
}

/// Everything a backend writes to finish a run, decided by [`plan_finish`], in one atomic step,
/// in this order: the cursor writes (each stamped with `stamp`), an observation of each schema in
/// `schemas` ([`crate::evolution::observe`], by the run's holder), the run record (and the
/// pipeline's running run cleared), then `event`.
#[derive(Debug, Clone, PartialEq)]
pub struct FinishWrite {
    /// The final cursors that change, planned like checkpoints.
    pub cursors: Vec<CursorWrite>,
    /// Who writes them, and when.
    pub stamp: WriteStamp,
    /// The schemas to observe.
    pub schemas: BTreeMap<StreamName, Schema>,
    /// The run's record as it ends.
    pub run: Run,
    /// The event to append last.
    pub event: (Actor, EventKind),
}

/// The rule for finishing `run`, whole: [`check_writable`] under `lease`, each final cursor
/// planned like a checkpoint against `current` (every cursor of the pipeline, value and version),
/// and the run's end: status, error, stats, end time and final cursors (the current ones with the
/// writes applied).
///
/// # Errors
/// As [`check_writable`] and [`plan_advance`]; nothing is to be written then.
pub fn plan_finish(
    run: Run,
    lease: &Lease,
    kind: CursorKind,
    current: &BTreeMap<StreamName, (CursorValue, u64)>,
    finish: FinishRun,
    now: Timestamp,
) -> Result<FinishWrite> {
    check_writable(&run, lease)?;
    let mut cursors = Vec::new();
    for (stream, value) in finish.cursors {
        let stored = current
            .get(&stream)
            .map(|(value, version)| (value, *version));
        let advance = CursorAdvance::to(value);
        let plan = plan_advance(
            kind,
            &lease.pipeline,
            &stream,
            stored,
            &advance,
            CursorChange::Finish,
        )?;
        if let AdvancePlan::Write(write) = plan {
            cursors.push(write);
        }
    }
    let mut at_end: BTreeMap<StreamName, CursorValue> = current
        .iter()
        .map(|(stream, (value, _))| (stream.clone(), value.clone()))
        .collect();
    for write in &cursors {
        at_end.insert(write.stream.clone(), write.value.clone());
    }
    let holder = Actor::Holder(lease.holder.clone());
    let run = Run {
        status: finish.outcome.status(),
        error: finish.outcome.error(),
        stats: finish.stats,
        finished_at: Some(now),
        cursors_at_end: at_end,
        ..run
    };
    let event = EventKind::RunFinished {
        run: run.id,
        status: run.status,
    };
    Ok(FinishWrite {
        cursors,
        stamp: WriteStamp::holder(lease, run.id, now),
        schemas: finish.schemas,
        run,
        event: (holder, event),
    })
}

/// Everything a backend writes when a running run's lease is taken over or released: the run's
/// record as it ends (and the pipeline's running run cleared), then `event`.
#[derive(Debug, Clone, PartialEq)]
pub struct AbandonWrite {
    /// The run, `Abandoned`.
    pub run: Run,
    /// The event to append.
    pub event: (Actor, EventKind),
}

/// The rule for abandoning `run`: it ends `Abandoned` now, with the pipeline's `cursors` as its
/// final ones, by the catalog itself.
pub fn abandon(
    run: Run,
    cursors: BTreeMap<StreamName, CursorValue>,
    now: Timestamp,
) -> AbandonWrite {
    let run = Run {
        status: RunStatus::Abandoned,
        finished_at: Some(now),
        cursors_at_end: cursors,
        ..run
    };
    let event = EventKind::RunFinished {
        run: run.id,
        status: RunStatus::Abandoned,
    };
    AbandonWrite {
        run,
        event: (Actor::System, event),
    }
}

/// Filters and keyset position for [`list_runs`](crate::Catalog::list_runs); newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunQuery {
    /// Only this pipeline's runs.
    pub pipeline: Option<PipelineId>,
    /// Only runs in this status.
    pub status: Option<RunStatus>,
    /// Only runs older than this one (the previous page's `next`).
    pub before: Option<RunId>,
    /// Page size.
    pub limit: Limit,
}

impl RunQuery {
    /// The newest runs of every pipeline, one default-sized page.
    pub fn all() -> Self {
        Self {
            pipeline: None,
            status: None,
            before: None,
            limit: Limit::default(),
        }
    }

    /// Only `pipeline`'s runs.
    #[must_use]
    pub fn pipeline(mut self, pipeline: PipelineId) -> Self {
        self.pipeline = Some(pipeline);
        self
    }

    /// Only runs in `status`.
    #[must_use]
    pub fn status(mut self, status: RunStatus) -> Self {
        self.status = Some(status);
        self
    }

    /// Runs older than `run`.
    #[must_use]
    pub fn before(mut self, run: RunId) -> Self {
        self.before = Some(run);
        self
    }

    /// Page size.
    #[must_use]
    pub fn limit(mut self, limit: Limit) -> Self {
        self.limit = limit;
        self
    }

    /// Whether `run` passes the filters (not the keyset position).
    pub fn matches(&self, run: &Run) -> bool {
        self.pipeline.as_ref().is_none_or(|p| *p == run.pipeline)
            && self.status.is_none_or(|s| s == run.status)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::ids::ConnectorRef;
    use crate::pipeline::{plan_put, PipelineSpec, PutMode, PutPlan, RunRequest};

    fn t(millis: i64) -> Timestamp {
        Timestamp::from_millis(millis)
    }

    fn pipeline() -> Pipeline {
        let spec = PipelineSpec::new(
            PipelineId::new("orders").unwrap(),
            ConnectorRef::new("jsonl").unwrap(),
            CursorKind::Monotonic,
        );
        match plan_put(None, spec, PutMode::Create, t(0)).unwrap() {
            PutPlan::Create(pipeline) => pipeline,
            other => panic!("a new pipeline is created: {other:?}"),
        }
    }

    fn lease() -> Lease {
        Lease {
            pipeline: PipelineId::new("orders").unwrap(),
            holder: HolderId::new("h").unwrap(),
            epoch: Epoch(3),
            expires_at: t(60_000),
        }
    }

    fn stream(name: &str) -> StreamName {
        StreamName::new(name).unwrap()
    }

    fn value(v: serde_json::Value) -> CursorValue {
        CursorValue::new(v).unwrap()
    }

    fn begun(pipeline: &Pipeline, trigger: Trigger) -> Result<BeginWrite> {
        let lease = lease();
        let cursors = BTreeMap::from([(stream("a"), value(json!(1)))]);
        plan_begin(
            BeginRun::new(trigger),
            Beginning {
                lease: &lease,
                pipeline,
                running: None,
                cursors,
                id: RunId::from_parts(t(10), [1; 10]),
                now: t(10),
            },
        )
    }

    #[test]
    fn a_begin_records_the_run_and_consumes_only_the_request_it_answers() {
        let mut pipeline = pipeline();
        let write = begun(&pipeline, Trigger::Manual).unwrap();
        assert_eq!(write.run.status, RunStatus::Running);
        assert_eq!(write.run.epoch, Epoch(3));
        assert_eq!(write.run.cursors_at_start[&stream("a")], value(json!(1)));
        assert!(!write.clears_request, "no request was pending");
        assert!(matches!(
            write.event.1,
            EventKind::RunBegun {
                epoch: Epoch(3),
                ..
            }
        ));

        pipeline.requested = Some(RunRequest {
            trigger: Trigger::Manual,
            by: Actor::System,
            at: t(5),
        });
        assert!(begun(&pipeline, Trigger::Backfill).unwrap().clears_request);
        assert!(
            !begun(&pipeline, Trigger::Schedule).unwrap().clears_request,
            "a scheduled run leaves the operator's request pending"
        );
        let refused = plan_begin(
            BeginRun {
                trigger: Trigger::Retry,
                attempt: 0,
            },
            Beginning {
                lease: &lease(),
                pipeline: &pipeline,
                running: None,
                cursors: BTreeMap::new(),
                id: RunId::from_parts(t(10), [1; 10]),
                now: t(10),
            },
        );
        assert!(matches!(refused, Err(Error::InvalidArgument(_))));
    }

    #[test]
    fn a_finish_plans_its_cursors_like_checkpoints_and_ends_with_every_cursor() {
        let run = begun(&pipeline(), Trigger::Schedule).unwrap().run;
        let current = BTreeMap::from([
            (stream("a"), (value(json!(1)), 1)),
            (stream("b"), (value(json!(7)), 4)),
        ]);
        let finish = FinishRun::succeeded()
            .with_cursor(stream("a"), value(json!(5)))
            .with_cursor(stream("b"), value(json!(7)))
            .with_cursor(stream("c"), value(json!(2)));
        let write = plan_finish(
            run.clone(),
            &lease(),
            CursorKind::Monotonic,
            &current,
            finish,
            t(20),
        )
        .unwrap();
        let written: Vec<_> = write
            .cursors
            .iter()
            .map(|w| (w.stream.as_str(), w.version, w.change.clone()))
            .collect();
        // b is unchanged: no new version.
        assert_eq!(
            written,
            [
                ("a", 2, CursorChange::Finish),
                ("c", 1, CursorChange::Finish)
            ]
        );
        assert_eq!(write.stamp.run, Some(run.id));
        assert_eq!(write.run.status, RunStatus::Succeeded);
        assert_eq!(write.run.finished_at, Some(t(20)));
        assert_eq!(
            write.run.cursors_at_end,
            BTreeMap::from([
                (stream("a"), value(json!(5))),
                (stream("b"), value(json!(7))),
                (stream("c"), value(json!(2))),
            ])
        );
        assert!(matches!(
            write.event.1,
            EventKind::RunFinished {
                status: RunStatus::Succeeded,
                ..
            }
        ));

        let backwards = FinishRun::succeeded().with_cursor(stream("a"), value(json!(0)));
        assert!(matches!(
            plan_finish(
                run.clone(),
                &lease(),
                CursorKind::Monotonic,
                &current,
                backwards,
                t(20)
            ),
            Err(Error::CursorRegression { .. })
        ));
        let other_epoch = Lease {
            epoch: Epoch(4),
            ..lease()
        };
        assert!(matches!(
            plan_finish(
                run,
                &other_epoch,
                CursorKind::Monotonic,
                &current,
                FinishRun::succeeded(),
                t(20)
            ),
            Err(Error::FailedPrecondition(_))
        ));
    }

    #[test]
    fn an_abandoned_run_ends_by_the_system_with_the_cursors_as_they_are() {
        let run = begun(&pipeline(), Trigger::Schedule).unwrap().run;
        let cursors = BTreeMap::from([(stream("a"), value(json!(3)))]);
        let write = abandon(run, cursors.clone(), t(30));
        assert_eq!(write.run.status, RunStatus::Abandoned);
        assert_eq!(write.run.finished_at, Some(t(30)));
        assert_eq!(write.run.cursors_at_end, cursors);
        assert_eq!(write.event.0, Actor::System);
    }

    #[test]
    fn long_errors_are_truncated_on_a_char_boundary() {
        let e = RunError::new("é".repeat(MAX_ERROR_LEN), true);
        assert!(e.message.len() <= MAX_ERROR_LEN);
        assert!(e.message.chars().all(|c| c == 'é'));
    }

    #[test]
    fn outcomes_map_to_terminal_statuses() {
        assert_eq!(Outcome::Succeeded.status(), RunStatus::Succeeded);
        let failed = Outcome::Failed {
            error: RunError::new("boom", true),
        };
        assert_eq!(failed.status(), RunStatus::Failed);
        assert_eq!(failed.error().unwrap().message, "boom");
        assert!(RunStatus::Abandoned.is_terminal() && !RunStatus::Running.is_terminal());
        assert!(BeginRun {
            trigger: Trigger::Manual,
            attempt: 0
        }
        .validate()
        .is_err());
    }
}
