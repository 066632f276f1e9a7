//! Runs: one execution of a pipeline, its status machine, and the requests that begin and
//! finish it.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::audit::Reason;
use crate::cursor::CursorValue;
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
    /// Whether runs of this kind start from an operator's request (`Manual`, `Backfill`); a run
    /// of this kind that begins consumes the pipeline's pending request.
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

/// What a run did to one stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamStats {
    /// Records read.
    pub records: u64,
    /// Bytes read.
    pub bytes: u64,
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
    use super::*;

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
