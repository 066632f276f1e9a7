//! How long `plan()` takes for 1k, 10k and 100k pipelines (`docs/guarantees.md`, “Fast”: 100,000
//! in ≤ 50 ms, cost
//! linear in pipelines).
//!
//! Run with `cargo bench -p hakiri-reconciler --bench plan`. The statuses are synthetic but
//! cover every branch of the planner: interval, cron and manual schedules; disabled, paused and
//! held pipelines; runs in progress under live and expired leases; failed runs waiting for or due
//! a retry; exhausted retries; cancelled runs. Each size is planned several times and the median
//! is reported, so one slow sample (a page fault, a context switch) does not decide the verdict.
//! The "plan_one loop" column computes the same actions one by one with `plan_one` (no per-plan
//! cron memo, no plan items built), to show what the memo saves.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use hakiri_core::{
    ConnectorConfig, ConnectorRef, CronSchedule, CursorKind, DecisionId, Epoch, Generation,
    HolderId, LeaseState, Pause, Pipeline, PipelineId, PipelineSpec, PipelineStatus, Reason,
    RetryPolicy, Run, RunError, RunId, RunStatus, Schedule, Timestamp, Trigger,
};
use hakiri_reconciler::{plan, plan_one, Action};

/// Samples per size; the median is reported.
const SAMPLES: usize = 11;
/// `docs/guarantees.md`, “Fast”.
const TARGET_100K: Duration = Duration::from_millis(50);
/// How much the per-pipeline cost may grow from 1k to 100k and still count as flat.
const FLAT_RATIO: f64 = 1.5;

const CRONS: [&str; 6] = [
    "*/5 * * * *",
    "0 * * * *",
    "0 3 * * *",
    "15 */2 * * 1-5",
    "0 0 1 * *",
    "30 0 9-17 * * MON-FRI",
];

/// Which statuses to plan.
#[derive(Clone, Copy)]
enum Mix {
    /// A third each of interval, cron and manual pipelines, in every state.
    Mixed,
    /// Only cron pipelines whose last run succeeded: every pipeline needs its schedule worked
    /// out, the planner's most expensive path.
    AllCron,
}

fn main() {
    let now: Timestamp = "2026-01-15T12:00:00Z".parse().expect("timestamp");
    let crons: Vec<CronSchedule> = CRONS
        .iter()
        .map(|c| CronSchedule::parse(c).expect("cron"))
        .collect();
    println!("plan() benchmark: median of {SAMPLES} runs per size");
    let mut all_pass = true;
    for (name, mix) in [("mixed", Mix::Mixed), ("all cron", Mix::AllCron)] {
        all_pass &= scenario(name, mix, now, &crons);
    }
    println!(
        "overall: {}",
        if all_pass {
            "PASS"
        } else {
            "FAIL (optimise the planner)"
        }
    );
}

/// Benchmarks one mix at every size; whether it met both targets.
fn scenario(name: &str, mix: Mix, now: Timestamp, crons: &[CronSchedule]) -> bool {
    println!("\n{name}:");
    println!(
        "{:>8}  {:>10}  {:>12}  {:>18}  {:>9}  {:>7}  {:>9}",
        "PIPES", "MEDIAN ms", "ns/pipeline", "plan_one loop ms", "dispatch", "wait", "skip/reap"
    );
    let mut per_pipeline = Vec::new();
    let mut last_median = Duration::ZERO;
    for n in [1_000usize, 10_000, 100_000] {
        let statuses = synthetic(n, now, crons, mix);
        let mut samples = Vec::with_capacity(SAMPLES);
        let mut counts = (0, 0, 0);
        // One unmeasured warm-up so the first sample does not pay for cold caches.
        black_box(plan(black_box(&statuses), now));
        for _ in 0..SAMPLES {
            let started = Instant::now();
            let p = plan(black_box(&statuses), black_box(now));
            samples.push(started.elapsed());
            counts = p
                .items
                .iter()
                .fold((0, 0, 0), |(d, w, s), i| match i.action {
                    Action::Dispatch { .. } => (d + 1, w, s),
                    Action::Wait { .. } => (d, w + 1, s),
                    Action::Skip { .. } | Action::Reap { .. } => (d, w, s + 1),
                });
            drop(black_box(p));
        }
        samples.sort();
        let median = samples[SAMPLES / 2];
        let direct = median_of(|| {
            let actions: Vec<Action> = statuses.iter().map(|s| plan_one(s, now)).collect();
            drop(black_box(actions));
        });
        #[allow(clippy::cast_precision_loss)]
        let ns = median.as_nanos() as f64 / n as f64;
        per_pipeline.push(ns);
        last_median = median;
        println!(
            "{n:>8}  {:>10.3}  {ns:>12.1}  {:>18.3}  {:>9}  {:>7}  {:>9}",
            median.as_secs_f64() * 1e3,
            direct.as_secs_f64() * 1e3,
            counts.0,
            counts.1,
            counts.2
        );
    }
    let ratio = per_pipeline[2] / per_pipeline[0];
    let fast = last_median <= TARGET_100K;
    let flat = ratio <= FLAT_RATIO;
    println!(
        "100k plan {:.3} ms: {} (target ≤ {} ms)",
        last_median.as_secs_f64() * 1e3,
        if fast { "PASS" } else { "FAIL" },
        TARGET_100K.as_millis()
    );
    println!(
        "per-pipeline cost 100k / 1k = {ratio:.2}: {} (flat means ≤ {FLAT_RATIO})",
        if flat { "PASS" } else { "FAIL" }
    );
    fast && flat
}

/// The median time of `SAMPLES` calls of `f`, after one warm-up call.
fn median_of(mut f: impl FnMut()) -> Duration {
    f();
    let mut samples: Vec<Duration> = (0..SAMPLES)
        .map(|_| {
            let started = Instant::now();
            f();
            started.elapsed()
        })
        .collect();
    samples.sort();
    samples[SAMPLES / 2]
}

/// `n` statuses in pipeline-id order with a fixed, varied mix of states.
fn synthetic(n: usize, now: Timestamp, crons: &[CronSchedule], mix: Mix) -> Vec<PipelineStatus> {
    let holder = HolderId::new("bench-reconciler").expect("holder");
    let connectors = [
        ConnectorRef::new("jsonl").expect("connector"),
        ConnectorRef::new("tail").expect("connector"),
        ConnectorRef::new("singer:tap-github").expect("connector"),
    ];
    let retry =
        RetryPolicy::new(3, Duration::from_secs(30), Duration::from_secs(600), 2.0).expect("retry");
    let created_at = Timestamp::from_millis(now.as_millis() - 30 * 24 * 3_600_000);
    (0..n)
        .map(|i| {
            // A cheap deterministic scramble so neighbouring pipelines differ.
            let h = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 16;
            let kind = match mix {
                Mix::Mixed => i % 3,
                Mix::AllCron => 1,
            };
            let schedule = match kind {
                0 => Schedule::Interval(Duration::from_secs(60 * (1 + h % 120))),
                1 => Schedule::Cron(crons[(h as usize) % crons.len()].clone()),
                _ => Schedule::Manual,
            };
            let id = PipelineId::new(format!("p{i:07}")).expect("pipeline id");
            let spec = PipelineSpec {
                id: id.clone(),
                connector: connectors[i % connectors.len()].clone(),
                config: ConnectorConfig::default(),
                cursor_kind: CursorKind::Monotonic,
                schedule,
                enabled: matches!(mix, Mix::AllCron) || i % 17 != 0,
                retry: retry.clone(),
                schema_policy: Default::default(),
            };
            let paused = (matches!(mix, Mix::Mixed) && i % 19 == 0).then(|| Pause {
                by: hakiri_core::Actor::System,
                reason: Reason::new("maintenance").expect("reason"),
                since: created_at,
            });
            let started_at = Timestamp::from_millis(
                now.as_millis() - i64::try_from(h % (6 * 3_600_000)).expect("fits"),
            );
            let state = match mix {
                Mix::Mixed => h % 10,
                Mix::AllCron => 9,
            };
            let run_status = match state {
                0 => RunStatus::Running,
                1 | 2 => RunStatus::Failed,
                3 => RunStatus::Cancelled,
                4 => RunStatus::Abandoned,
                _ => RunStatus::Succeeded,
            };
            let last_run = (i % 13 != 0).then(|| Run {
                id: RunId::from_parts(
                    started_at,
                    (i as u128).to_be_bytes()[6..].try_into().expect("10 bytes"),
                ),
                pipeline: id.clone(),
                epoch: Epoch(1 + h % 50),
                holder: holder.clone(),
                trigger: Trigger::Schedule,
                attempt: 1 + u32::try_from(h % 4).expect("small"),
                status: run_status,
                started_at,
                finished_at: run_status
                    .is_terminal()
                    .then(|| started_at.plus(Duration::from_secs(h % 900))),
                stats: BTreeMap::new(),
                error: (run_status == RunStatus::Failed)
                    .then(|| RunError::new("source returned 503", !h.is_multiple_of(3))),
                cursors_at_start: BTreeMap::new(),
                cursors_at_end: BTreeMap::new(),
            });
            let lease = last_run.as_ref().map(|r| LeaseState {
                epoch: r.epoch,
                holder: (r.status == RunStatus::Running).then(|| holder.clone()),
                // Half of the running runs' leases have expired: those are reaped.
                expires_at: if h.is_multiple_of(20) {
                    now.plus(Duration::from_secs(20))
                } else {
                    started_at
                },
            });
            let held_decisions = if matches!(mix, Mix::Mixed) && i % 23 == 0 {
                vec![DecisionId(i as u64)]
            } else {
                Vec::new()
            };
            PipelineStatus {
                pipeline: Pipeline {
                    spec,
                    generation: Generation::FIRST,
                    paused,
                    created_at,
                    updated_at: created_at,
                    requested: None,
                },
                lease,
                last_run,
                held_decisions,
            }
        })
        .collect()
}
