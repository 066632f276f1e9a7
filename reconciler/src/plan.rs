//! Planning: which pipelines to run now, which to wait for, skip or reap — a pure function of the
//! catalog's snapshot and its clock, like `terraform plan`.

use std::fmt::{self, Write as _};

use hakiri_core::{
    ConnectorRef, DecisionId, PipelineId, PipelineStatus, RunId, RunStatus, Schedule, Timestamp,
    Trigger,
};
use serde::{Deserialize, Serialize};

/// What to do about every pipeline, decided at `as_of` (the catalog clock's time).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// The catalog clock's time the plan was made for.
    pub as_of: Timestamp,
    /// One item per pipeline, in pipeline order.
    pub items: Vec<PlanItem>,
}

/// The decision for one pipeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanItem {
    /// The pipeline.
    pub pipeline: PipelineId,
    /// Its connector (for per-connector concurrency limits).
    pub connector: ConnectorRef,
    /// What to do.
    pub action: Action,
}

/// Exactly one of these per pipeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Run it now.
    Dispatch {
        /// Why.
        trigger: Trigger,
        /// Which attempt (1 unless retrying).
        attempt: u32,
    },
    /// Nothing to do until `until`.
    Wait {
        /// When something is due.
        until: Timestamp,
        /// What is awaited.
        reason: WaitReason,
    },
    /// Nothing to do until something changes.
    Skip {
        /// Why.
        reason: SkipReason,
    },
    /// Its run's lease expired: take the lease (which marks the run abandoned) so it can retry.
    Reap {
        /// The run whose holder vanished.
        run: RunId,
    },
}

/// What a waiting pipeline waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum WaitReason {
    /// Its next scheduled time.
    Schedule,
    /// The backoff before retry `attempt`.
    Backoff {
        /// The attempt that will run.
        attempt: u32,
    },
}

/// Why a pipeline is skipped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum SkipReason {
    /// `enabled = false` in its spec.
    Disabled,
    /// Paused by an operator.
    Paused,
    /// Schema decisions wait for an operator.
    HeldDecision {
        /// Which.
        decisions: Vec<DecisionId>,
    },
    /// A run is in progress under a live lease.
    Running {
        /// The run.
        run: RunId,
    },
    /// The last run failed and the retry policy allows no more attempts.
    AttemptsExhausted {
        /// How many ran.
        attempts: u32,
    },
    /// A manual pipeline runs only when an operator asks.
    Manual,
}

impl Plan {
    /// The items to dispatch, in plan order.
    pub fn dispatches(&self) -> impl Iterator<Item = (&PlanItem, Trigger, u32)> {
        self.items.iter().filter_map(|item| match item.action {
            Action::Dispatch { trigger, attempt } => Some((item, trigger, attempt)),
            _ => None,
        })
    }

    /// The runs to reap.
    pub fn reaps(&self) -> impl Iterator<Item = (&PlanItem, RunId)> {
        self.items.iter().filter_map(|item| match item.action {
            Action::Reap { run } => Some((item, run)),
            _ => None,
        })
    }

    /// Whether the plan has nothing to do now (only waits and skips).
    pub fn is_idle(&self) -> bool {
        self.items
            .iter()
            .all(|i| matches!(i.action, Action::Wait { .. } | Action::Skip { .. }))
    }

    /// The earliest time a waiting pipeline becomes due.
    pub fn next_due(&self) -> Option<Timestamp> {
        self.items
            .iter()
            .filter_map(|i| match i.action {
                Action::Wait { until, .. } => Some(until),
                _ => None,
            })
            .min()
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Dispatch {
                trigger,
                attempt: 1,
            } => write!(f, "dispatch ({})", trigger_name(*trigger)),
            Action::Dispatch { trigger, attempt } => {
                write!(f, "dispatch ({} {attempt})", trigger_name(*trigger))
            }
            Action::Wait {
                until,
                reason: WaitReason::Schedule,
            } => write!(f, "wait until {until} (schedule)"),
            Action::Wait {
                until,
                reason: WaitReason::Backoff { attempt },
            } => {
                write!(f, "wait until {until} (backoff before attempt {attempt})")
            }
            Action::Skip { reason } => write!(f, "skip: {reason}"),
            Action::Reap { run } => write!(f, "reap run {run} (lease expired)"),
        }
    }
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::Disabled => f.write_str("disabled"),
            SkipReason::Paused => f.write_str("paused"),
            SkipReason::HeldDecision { decisions } => {
                let ids: Vec<String> = decisions.iter().map(ToString::to_string).collect();
                write!(f, "held schema decision {}", ids.join(", "))
            }
            SkipReason::Running { run } => write!(f, "running ({run})"),
            SkipReason::AttemptsExhausted { attempts } => {
                write!(f, "failed after {attempts} attempts")
            }
            SkipReason::Manual => f.write_str("manual (runs when asked)"),
        }
    }
}

fn trigger_name(trigger: Trigger) -> &'static str {
    match trigger {
        Trigger::Schedule => "scheduled",
        Trigger::Retry => "retry",
        Trigger::Manual => "manual",
        Trigger::Backfill => "backfill",
    }
}

impl fmt::Display for Plan {
    /// A table: pipeline, connector, action.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rows: Vec<[String; 3]> = self
            .items
            .iter()
            .map(|i| {
                [
                    i.pipeline.to_string(),
                    i.connector.to_string(),
                    i.action.to_string(),
                ]
            })
            .collect();
        let header = ["PIPELINE", "CONNECTOR", "ACTION"];
        let widths: Vec<usize> = (0..2)
            .map(|c| {
                rows.iter()
                    .map(|r| r[c].len())
                    .chain([header[c].len()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for row in std::iter::once(header.map(str::to_owned)).chain(rows) {
            let _ = writeln!(
                out,
                "{:<w0$}  {:<w1$}  {}",
                row[0],
                row[1],
                row[2],
                w0 = widths[0],
                w1 = widths[1]
            );
        }
        let dispatch = self.dispatches().count();
        let reap = self.reaps().count();
        let _ = write!(
            out,
            "plan at {}: {dispatch} to dispatch, {reap} to reap, {} idle",
            self.as_of,
            self.items.len() - dispatch - reap
        );
        f.write_str(&out)
    }
}

/// Plans every pipeline of a snapshot taken at `now` (use the snapshot's `as_of`).
pub fn plan(statuses: &[PipelineStatus], now: Timestamp) -> Plan {
    Plan {
        as_of: now,
        items: statuses
            .iter()
            .map(|s| PlanItem {
                pipeline: s.pipeline.id().clone(),
                connector: s.pipeline.spec.connector.clone(),
                action: plan_one(s, now),
            })
            .collect(),
    }
}

/// The decision for one pipeline. Pure: the same status and time always give the same action.
pub fn plan_one(status: &PipelineStatus, now: Timestamp) -> Action {
    let pipeline = &status.pipeline;
    let spec = &pipeline.spec;
    if let Some(run) = status
        .last_run
        .as_ref()
        .filter(|r| r.status == RunStatus::Running)
    {
        // A running run is judged first: even a disabled or paused pipeline must not be
        // dispatched over it, and a dead holder's run must be reaped whatever the spec says.
        let live = status.lease.as_ref().is_some_and(|l| l.is_live(now));
        return if live {
            Action::Skip {
                reason: SkipReason::Running { run: run.id },
            }
        } else {
            Action::Reap { run: run.id }
        };
    }
    if !spec.enabled {
        return Action::Skip {
            reason: SkipReason::Disabled,
        };
    }
    if !status.held_decisions.is_empty() {
        return Action::Skip {
            reason: SkipReason::HeldDecision {
                decisions: status.held_decisions.clone(),
            },
        };
    }
    if pipeline.paused.is_some() {
        return Action::Skip {
            reason: SkipReason::Paused,
        };
    }
    let mut exhausted = None;
    if let Some(run) = &status.last_run {
        let retryable = match run.status {
            RunStatus::Failed => run.error.as_ref().is_none_or(|e| e.retryable),
            RunStatus::Abandoned => true,
            _ => false,
        };
        if retryable {
            if run.attempt < spec.retry.max_attempts() {
                let failed_at = run.finished_at.unwrap_or(run.started_at);
                let due = failed_at.plus(
                    spec.retry
                        .backoff(run.attempt, jitter(pipeline.id(), &run.id)),
                );
                let attempt = run.attempt + 1;
                return if now >= due {
                    Action::Dispatch {
                        trigger: Trigger::Retry,
                        attempt,
                    }
                } else {
                    Action::Wait {
                        until: due,
                        reason: WaitReason::Backoff { attempt },
                    }
                };
            }
            exhausted = Some(run.attempt);
        }
    }
    // A cancelled run (shutdown, a schema held for review) did not do its work: a scheduled
    // pipeline resumes at once rather than waiting for its next slot.
    if status
        .last_run
        .as_ref()
        .is_some_and(|r| r.status == RunStatus::Cancelled)
        && !matches!(spec.schedule, Schedule::Manual)
    {
        return Action::Dispatch {
            trigger: Trigger::Schedule,
            attempt: 1,
        };
    }
    let anchor = status.last_run.as_ref().map(|r| r.started_at);
    let next = match &spec.schedule {
        Schedule::Manual => None,
        // An interval pipeline that never ran is due at once.
        Schedule::Interval(every) => Some(anchor.map_or(pipeline.created_at, |t| t.plus(*every))),
        Schedule::Cron(cron) => cron.next_after(anchor.unwrap_or(pipeline.created_at)),
    };
    match (next, exhausted) {
        (Some(next), _) if now >= next => Action::Dispatch {
            trigger: Trigger::Schedule,
            attempt: 1,
        },
        (Some(until), _) => Action::Wait {
            until,
            reason: WaitReason::Schedule,
        },
        (None, Some(attempts)) => Action::Skip {
            reason: SkipReason::AttemptsExhausted { attempts },
        },
        (None, None) => Action::Skip {
            reason: SkipReason::Manual,
        },
    }
}

/// A stable value in `[0, 1)` from the pipeline and its last run, so a retry's jitter is the
/// same on every tick and every reconciler (FNV-1a).
fn jitter(pipeline: &PipelineId, run: &RunId) -> f64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in pipeline
        .as_str()
        .bytes()
        .chain(run.as_uuid().as_bytes().iter().copied())
    {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // The top 53 bits make an exact f64 in [0, 1).
    #[allow(clippy::cast_precision_loss)]
    let unit = (hash >> 11) as f64 / (1u64 << 53) as f64;
    unit
}
