//! The events of a history, Jepsen style: an [`Event::Invoke`] recorded before a call and an
//! [`Event::Complete`] after it, both stamped with CLOCK_MONOTONIC, so that the events of several
//! processes on one machine can be merged into one real-time order.
//!
//! Events are JSON-serialisable: a drill process prints one per line, and a test merges the lines
//! of every process into one history.

use hakiri_core::{Epoch, Error, HolderId, PipelineId, RunId, StreamName};
use serde::{Deserialize, Serialize};

/// A client of a history: an index in `0..clients`.
pub type ClientId = u32;

/// One entry of a history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A client is about to call the catalog; written before the call.
    Invoke {
        /// Who calls.
        client: ClientId,
        /// The call's number, unique within the client.
        op_id: u64,
        /// What it asks.
        op: Op,
        /// CLOCK_MONOTONIC, in nanoseconds, before the call.
        at_ns: u64,
    },
    /// The call returned; written after it. A call without one (its process was killed) is
    /// indeterminate.
    Complete {
        /// Who called.
        client: ClientId,
        /// The call's number.
        op_id: u64,
        /// What it answered.
        outcome: Outcome,
        /// CLOCK_MONOTONIC, in nanoseconds, after the call.
        at_ns: u64,
    },
}

impl Event {
    /// The client and op id the event belongs to.
    pub fn key(&self) -> (ClientId, u64) {
        match self {
            Event::Invoke { client, op_id, .. } | Event::Complete { client, op_id, .. } => {
                (*client, *op_id)
            }
        }
    }

    /// When it happened (CLOCK_MONOTONIC, ns).
    pub fn at_ns(&self) -> u64 {
        match self {
            Event::Invoke { at_ns, .. } | Event::Complete { at_ns, .. } => *at_ns,
        }
    }
}

/// A call a client makes. Cursor values are numbers, unique within a history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// `acquire`: take a free lease.
    Acquire {
        /// The pipeline.
        pipeline: PipelineId,
        /// As whom.
        holder: HolderId,
    },
    /// `force_acquire`: take the lease even from a live holder (a takeover).
    ForceAcquire {
        /// The pipeline.
        pipeline: PipelineId,
        /// As whom.
        holder: HolderId,
    },
    /// `release` of the lease of `epoch`.
    Release {
        /// The pipeline.
        pipeline: PipelineId,
        /// The lease's epoch.
        epoch: Epoch,
    },
    /// `renew` of the lease of `epoch`.
    Renew {
        /// The pipeline.
        pipeline: PipelineId,
        /// The lease's epoch.
        epoch: Epoch,
    },
    /// `begin_run` under the lease of `epoch`.
    BeginRun {
        /// The pipeline.
        pipeline: PipelineId,
        /// The lease's epoch.
        epoch: Epoch,
    },
    /// `advance` of one stream's cursor to `value`, with or without an expected version.
    Advance {
        /// The pipeline.
        pipeline: PipelineId,
        /// The stream.
        stream: StreamName,
        /// The lease's epoch.
        epoch: Epoch,
        /// The run.
        run: RunId,
        /// The value written.
        value: u64,
        /// The compare-and-set's expected version, if any.
        expected_version: Option<u64>,
    },
    /// `finish_run` with a final cursor for each listed stream (all the pipeline's streams).
    Finish {
        /// The pipeline.
        pipeline: PipelineId,
        /// The lease's epoch.
        epoch: Epoch,
        /// The run.
        run: RunId,
        /// The final value of each stream.
        cursors: Vec<(StreamName, u64)>,
    },
    /// `get_cursor` of one stream.
    GetCursor {
        /// The pipeline.
        pipeline: PipelineId,
        /// The stream.
        stream: StreamName,
    },
    /// `list_cursors` of a pipeline: every stream in one read.
    ListCursors {
        /// The pipeline.
        pipeline: PipelineId,
    },
    /// `get_pipeline`.
    GetPipeline {
        /// The pipeline.
        pipeline: PipelineId,
    },
}

impl Op {
    /// The pipeline the call is about.
    pub fn pipeline(&self) -> &PipelineId {
        match self {
            Op::Acquire { pipeline, .. }
            | Op::ForceAcquire { pipeline, .. }
            | Op::Release { pipeline, .. }
            | Op::Renew { pipeline, .. }
            | Op::BeginRun { pipeline, .. }
            | Op::Advance { pipeline, .. }
            | Op::Finish { pipeline, .. }
            | Op::GetCursor { pipeline, .. }
            | Op::ListCursors { pipeline }
            | Op::GetPipeline { pipeline } => pipeline,
        }
    }

    /// The epoch of the lease a lease-checked write carries.
    pub fn lease_epoch(&self) -> Option<Epoch> {
        match self {
            Op::Release { epoch, .. }
            | Op::Renew { epoch, .. }
            | Op::BeginRun { epoch, .. }
            | Op::Advance { epoch, .. }
            | Op::Finish { epoch, .. } => Some(*epoch),
            _ => None,
        }
    }

    /// A short name for tallies: `advance-cas`, `finish`, `get-cursor`…
    pub fn name(&self) -> &'static str {
        match self {
            Op::Acquire { .. } => "acquire",
            Op::ForceAcquire { .. } => "force-acquire",
            Op::Release { .. } => "release",
            Op::Renew { .. } => "renew",
            Op::BeginRun { .. } => "begin-run",
            Op::Advance {
                expected_version: Some(_),
                ..
            } => "advance-cas",
            Op::Advance { .. } => "advance",
            Op::Finish { .. } => "finish",
            Op::GetCursor { .. } => "get-cursor",
            Op::ListCursors { .. } => "list-cursors",
            Op::GetPipeline { .. } => "get-pipeline",
        }
    }
}

/// A cursor as a read or a write saw it: its stream, version and numeric value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seen {
    /// The stream.
    pub stream: StreamName,
    /// The cursor's version (0: never written).
    pub version: u64,
    /// Its value; `None` when it is not a number (which no workload writes).
    pub value: Option<u64>,
}

/// What a call answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// A lease was granted (`acquire`, `force_acquire`).
    Granted {
        /// Its epoch.
        epoch: Epoch,
        /// Its holder.
        holder: HolderId,
    },
    /// A lease was renewed (it keeps its epoch).
    Renewed {
        /// The renewed lease's epoch.
        epoch: Epoch,
    },
    /// A run began.
    Began {
        /// Its id.
        run: RunId,
    },
    /// An advance was acknowledged with the cursor it stored.
    Advanced {
        /// The stored cursor.
        cursor: Seen,
    },
    /// A call that answers nothing but success (`release`, `finish_run`).
    Done,
    /// Cursors read (`get_cursor`: none or one; `list_cursors`: every written stream).
    Read {
        /// The cursors.
        cursors: Vec<Seen>,
    },
    /// A pipeline read.
    Pipeline {
        /// Its generation.
        generation: u64,
    },
    /// The call failed.
    Failed {
        /// The error.
        error: Error,
    },
}

impl Outcome {
    /// Whether the call is known not to have changed anything: an error that says the write was
    /// refused (`Fenced`, `Conflict`, `Leased`, `NotFound`, a validation error…). `Unavailable`
    /// and `Backend` may come after a commit: they say nothing, as a missing completion does.
    pub fn failed_definitely(&self) -> bool {
        match self {
            Outcome::Failed { error } => definite(error),
            _ => false,
        }
    }

    /// Whether the call succeeded.
    pub fn succeeded(&self) -> bool {
        !matches!(self, Outcome::Failed { .. })
    }

    /// A short name for tallies: `ok`, `fenced`, `conflict`, `unavailable`…
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Failed { error } => match error {
                Error::NotFound(_) => "not-found",
                Error::AlreadyExists(_) => "already-exists",
                Error::Conflict { .. } => "conflict",
                Error::Fenced { .. } => "fenced",
                Error::Leased { .. } => "leased",
                Error::CursorRegression { .. } => "regression",
                Error::InvalidArgument(_) => "invalid",
                Error::FailedPrecondition(_) => "precondition",
                Error::Unavailable(_) => "unavailable",
                Error::Backend(_) => "backend",
                _ => "other-error",
            },
            _ => "ok",
        }
    }
}

/// Whether `error` says the call changed nothing.
pub fn definite(error: &Error) -> bool {
    !matches!(error, Error::Unavailable(_) | Error::Backend(_))
}

/// CLOCK_MONOTONIC now, in nanoseconds: comparable across the processes of one machine.
pub fn now_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    // The monotonic clock counts from boot: both fields are non-negative.
    u64::try_from(t.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(t.tv_nsec).unwrap_or(0)
}

/// Where a client records its events, in order: a vector in process, stdout in a drill.
pub trait Sink {
    /// Records `event` durably enough that a kill right after loses nothing (a drill flushes
    /// the line). An error stops the client: a history with holes cannot be checked.
    fn record(&mut self, event: Event) -> std::io::Result<()>;
}

impl Sink for Vec<Event> {
    fn record(&mut self, event: Event) -> std::io::Result<()> {
        self.push(event);
        Ok(())
    }
}

/// Parses a history's JSON lines (one event per line), as a drill prints them. A last line
/// without its newline is dropped: a process killed while printing it tore it, and its call is
/// then indeterminate (an invoke without complete) or one more unrecorded read.
///
/// # Errors
/// A complete line that is not an event, with its number.
pub fn parse_lines(text: &str) -> Result<Vec<Event>, String> {
    let complete = match text.rfind('\n') {
        Some(end) => &text[..end],
        None => "",
    };
    complete
        .lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(n, line)| {
            serde_json::from_str(line).map_err(|e| format!("line {}: {e}: {line:?}", n + 1))
        })
        .collect()
}
