//! Planning: which pipelines to run now, which to wait for, skip or reap — a pure function of the
//! catalog's snapshot and its clock, like `terraform plan`. It lives in core, with no runtime, so
//! that every host builds the same plan: the reconciler before it dispatches, and the servers
//! (the Worker on wasm32 among them) for `GET /v1/projects/{p}/plan`.

use std::collections::HashMap;
use std::fmt;

use crate::{
    ConnectorRef, CronSchedule, DecisionId, PipelineId, PipelineStatus, RunId, RunStatus, Schedule,
    Timestamp, Trigger,
};
use serde::{Deserialize, Serialize};

/// The plan the reconciler would follow now: every pipeline's status, planned at the catalog
/// clock's time. What `hakiri plan` prints and the servers answer at `/v1/projects/{p}/plan`.
///
/// # Errors
/// The catalog's, reading the statuses.
pub async fn current(catalog: &(impl crate::Catalog + ?Sized)) -> crate::Result<Plan> {
    use crate::CatalogExt as _;
    let statuses = catalog.all_statuses().await?;
    Ok(plan(&statuses.items, statuses.as_of))
}

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

/// Plans every pipeline of a snapshot taken at `now` (use the snapshot's `as_of`).
///
/// Gives exactly the actions of [`plan_one`] for each status. Cron schedules are the costly part
/// of planning, and a project usually has few distinct expressions shared by many pipelines, so
/// each expression's firings around `now` are worked out once per plan (see `CronBoundaries`).
pub fn plan(statuses: &[PipelineStatus], now: Timestamp) -> Plan {
    let mut crons = CronBoundaries::new(now);
    Plan {
        as_of: now,
        items: statuses
            .iter()
            .map(|s| PlanItem {
                pipeline: s.pipeline.id().clone(),
                connector: s.pipeline.spec.connector.clone(),
                action: decide(s, now, &mut |cron, anchor| crons.slot(cron, anchor)),
            })
            .collect(),
    }
}

/// The decision for one pipeline. Pure: the same status and time always give the same action.
pub fn plan_one(status: &PipelineStatus, now: Timestamp) -> Action {
    decide(status, now, &mut |cron, anchor| {
        cron_slot(cron.next_after(anchor), now)
    })
}

/// When a schedule is next due, relative to the plan's `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    /// It fired after the anchor and at or before `now`.
    Due,
    /// Its first firing after the anchor is this time, after `now`.
    At(Timestamp),
    /// It never fires again.
    Never,
}

fn cron_slot(next: Option<Timestamp>, now: Timestamp) -> Slot {
    match next {
        Some(t) if now >= t => Slot::Due,
        Some(t) => Slot::At(t),
        None => Slot::Never,
    }
}

/// [`plan_one`], with the cron computation supplied by the caller: `cron_slot(cron, anchor)`
/// must say whether `cron` fired in `(anchor, now]`, or else when it first fires after `anchor`.
fn decide<'s>(
    status: &'s PipelineStatus,
    now: Timestamp,
    cron_slot: &mut impl FnMut(&'s CronSchedule, Timestamp) -> Slot,
) -> Action {
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
    // An operator's request comes before retries and the schedule: it is why someone is waiting.
    if let Some(request) = &pipeline.requested {
        return Action::Dispatch {
            trigger: request.trigger,
            attempt: 1,
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
    let slot = match &spec.schedule {
        Schedule::Manual => Slot::Never,
        // An interval pipeline that never ran is due at once.
        Schedule::Interval(every) => {
            let next = anchor.map_or(pipeline.created_at, |t| t.plus(*every));
            if now >= next {
                Slot::Due
            } else {
                Slot::At(next)
            }
        }
        Schedule::Cron(cron) => cron_slot(cron, anchor.unwrap_or(pipeline.created_at)),
    };
    match (slot, exhausted) {
        (Slot::Due, _) => Action::Dispatch {
            trigger: Trigger::Schedule,
            attempt: 1,
        },
        (Slot::At(until), _) => Action::Wait {
            until,
            reason: WaitReason::Schedule,
        },
        (Slot::Never, Some(attempts)) => Action::Skip {
            reason: SkipReason::AttemptsExhausted { attempts },
        },
        (Slot::Never, None) => Action::Skip {
            reason: SkipReason::Manual,
        },
    }
}

/// Uses of one cron expression in a plan before its boundary is worked out: below this, direct
/// computation is cheaper than the search (a few dozen firings computed once).
const CRON_SHARING_THRESHOLD: u32 = 64;

/// Furthest back the search for an expression's last firing looks: 2^36 s, about 2,200 years
/// (well inside the calendar's range); anchors older than the search reached are computed
/// directly.
const CRON_SEARCH_DOUBLINGS: u32 = 36;

/// Per-plan memo of each cron expression's firings around `now`.
///
/// Whether a pipeline anchored at `a ≤ now` is due is whether its expression fired in `(a, now]`,
/// that is whether `a` is earlier than the expression's last firing at or before `now` (`last`).
/// If it is not due, no firing lies in `(a, now]`, so its next firing after `a` is the first
/// after `now` (`next`). Both depend on the expression and `now` only, so they are computed once
/// per expression and plan, and each pipeline costs one comparison instead of a calendar walk.
/// The result is exactly [`CronSchedule::next_after`]'s, which a property test checks.
struct CronBoundaries<'a> {
    now: Timestamp,
    by_expression: HashMap<&'a str, CronEntry>,
}

enum CronEntry {
    /// Seen this many times; computed directly until it is shared enough.
    Seen(u32),
    Known(Boundary),
}

struct Boundary {
    /// The last firing at or before `now`, if one lies at or after `floor`.
    last: Option<Timestamp>,
    /// How far back the search for `last` looked.
    floor: Timestamp,
    /// The first firing after `now`.
    next: Option<Timestamp>,
}

impl<'a> CronBoundaries<'a> {
    fn new(now: Timestamp) -> Self {
        Self {
            now,
            by_expression: HashMap::new(),
        }
    }

    fn slot(&mut self, cron: &'a CronSchedule, anchor: Timestamp) -> Slot {
        let now = self.now;
        // A run stamped later than `now` (clock skew between planner snapshots) is rare: compute
        // it directly rather than complicate the memo.
        if anchor > now {
            return cron_slot(cron.next_after(anchor), now);
        }
        let entry = self
            .by_expression
            .entry(cron.as_str())
            .or_insert(CronEntry::Seen(0));
        if let CronEntry::Seen(uses) = entry {
            *uses += 1;
            if *uses < CRON_SHARING_THRESHOLD {
                return cron_slot(cron.next_after(anchor), now);
            }
            *entry = CronEntry::Known(Boundary::find(cron, now));
        }
        let CronEntry::Known(boundary) = entry else {
            return cron_slot(cron.next_after(anchor), now);
        };
        let not_due = || boundary.next.map_or(Slot::Never, Slot::At);
        match boundary.last {
            Some(last) if anchor < last => Slot::Due,
            Some(_) => not_due(),
            None if anchor >= boundary.floor => not_due(),
            None => cron_slot(cron.next_after(anchor), now),
        }
    }
}

impl Boundary {
    /// Finds the last firing at or before `now` by doubling the look-back until some firing lies
    /// in `(lo, now]`, then bisecting: "fires in `(t, now]`" holds exactly for `t < last`.
    fn find(cron: &CronSchedule, now: Timestamp) -> Self {
        let fires_by_now = |t: Timestamp| cron.next_after(t).is_some_and(|x| x <= now);
        let next = cron.next_after(now);
        let back = |ms: i64| Timestamp::from_millis(now.as_millis().saturating_sub(ms));
        let mut hi = now;
        let mut lo = now;
        let mut found = false;
        for doubling in 0..=CRON_SEARCH_DOUBLINGS {
            lo = back(1_000_i64 << doubling);
            if fires_by_now(lo) {
                found = true;
                break;
            }
            hi = lo;
        }
        if !found {
            return Self {
                last: None,
                floor: lo,
                next,
            };
        }
        // Invariant: fires_by_now(lo) and !fires_by_now(hi); the boundary is `last`.
        while hi.as_millis() - lo.as_millis() > 1 {
            let mid =
                Timestamp::from_millis(lo.as_millis() + (hi.as_millis() - lo.as_millis()) / 2);
            if fires_by_now(mid) {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        Self {
            last: Some(hi),
            floor: lo,
            next,
        }
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
