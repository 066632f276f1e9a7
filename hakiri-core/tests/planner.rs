//! The planner: one unit test per action and reason, and properties over generated statuses.

use std::collections::BTreeMap;
use std::time::Duration;

use hakiri_core::plan::{plan, plan_one, Action, Plan, SkipReason, WaitReason};
use hakiri_core::{
    Actor, ConnectorRef, CronSchedule, CursorKind, DecisionId, Epoch, Generation, HolderId,
    LeaseState, Pause, Pipeline, PipelineId, PipelineSpec, PipelineStatus, Reason, RetryPolicy,
    Run, RunError, RunId, RunStatus, Schedule, Timestamp, Trigger,
};
use proptest::prelude::*;

const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);

fn t(text: &str) -> Timestamp {
    text.parse().expect("timestamp")
}

fn created() -> Timestamp {
    t("2026-01-01T00:00:00Z")
}

fn retry() -> RetryPolicy {
    RetryPolicy::new(3, Duration::from_secs(30), Duration::from_secs(600), 2.0).expect("policy")
}

fn status(id: &str, schedule: Schedule) -> PipelineStatus {
    let spec = PipelineSpec::new(
        PipelineId::new(id).expect("id"),
        ConnectorRef::new("jsonl").expect("connector"),
        CursorKind::Monotonic,
    )
    .with_schedule(schedule)
    .with_retry(retry());
    PipelineStatus {
        pipeline: Pipeline {
            spec,
            generation: Generation::FIRST,
            paused: None,
            created_at: created(),
            updated_at: created(),
            requested: None,
        },
        lease: None,
        last_run: None,
        held_decisions: Vec::new(),
    }
}

fn holder() -> HolderId {
    HolderId::new("r1").expect("holder")
}

fn run_at(status: RunStatus, started_at: Timestamp, attempt: u32) -> Run {
    Run {
        id: RunId::from_parts(started_at, [7; 10]),
        pipeline: PipelineId::new("p").expect("id"),
        epoch: Epoch(1),
        holder: holder(),
        trigger: Trigger::Schedule,
        attempt,
        status,
        started_at,
        finished_at: status.is_terminal().then(|| started_at.plus(MINUTE)),
        stats: BTreeMap::new(),
        error: (status == RunStatus::Failed).then(|| RunError::new("503 from the source", true)),
        cursors_at_start: BTreeMap::new(),
        cursors_at_end: BTreeMap::new(),
    }
}

fn with_run(mut s: PipelineStatus, run: Run) -> PipelineStatus {
    s.lease = Some(LeaseState {
        epoch: run.epoch,
        holder: (run.status == RunStatus::Running).then(holder),
        expires_at: run.started_at.plus(Duration::from_secs(30)),
    });
    s.last_run = Some(run);
    s
}

fn interval() -> Schedule {
    Schedule::Interval(HOUR)
}

fn hourly_cron() -> Schedule {
    Schedule::Cron(CronSchedule::parse("0 * * * *").expect("cron"))
}

fn skip(reason: SkipReason) -> Action {
    Action::Skip { reason }
}

fn dispatch(trigger: Trigger, attempt: u32) -> Action {
    Action::Dispatch { trigger, attempt }
}

/// A disabled pipeline is skipped.
#[test]
fn disabled_is_skipped() {
    let mut s = status("p", interval());
    s.pipeline.spec.enabled = false;
    assert_eq!(plan_one(&s, created()), skip(SkipReason::Disabled));
}

/// A paused pipeline is skipped.
#[test]
fn paused_is_skipped() {
    let mut s = status("p", interval());
    s.pipeline.paused = Some(Pause {
        by: Actor::System,
        reason: Reason::new("maintenance").expect("reason"),
        since: created(),
    });
    assert_eq!(plan_one(&s, created()), skip(SkipReason::Paused));
}

/// Held schema decisions skip the pipeline and name the decisions.
#[test]
fn held_decisions_are_skipped_and_named() {
    let mut s = status("p", interval());
    s.held_decisions = vec![DecisionId(4), DecisionId(9)];
    assert_eq!(
        plan_one(&s, created()),
        skip(SkipReason::HeldDecision {
            decisions: vec![DecisionId(4), DecisionId(9)]
        })
    );
}

/// A run under a live lease is left alone, even on a disabled pipeline.
#[test]
fn running_under_a_live_lease_is_skipped() {
    let started = t("2026-01-10T10:00:00Z");
    let r = run_at(RunStatus::Running, started, 1);
    let id = r.id;
    let mut s = with_run(status("p", interval()), r);
    assert_eq!(
        plan_one(&s, started.plus(Duration::from_secs(29))),
        skip(SkipReason::Running { run: id })
    );
    s.pipeline.spec.enabled = false;
    assert_eq!(plan_one(&s, started), skip(SkipReason::Running { run: id }));
}

/// A run whose lease expired (or was released) is reaped.
#[test]
fn running_under_an_expired_lease_is_reaped() {
    let started = t("2026-01-10T10:00:00Z");
    let r = run_at(RunStatus::Running, started, 1);
    let id = r.id;
    let mut s = with_run(status("p", interval()), r);
    assert_eq!(
        plan_one(&s, started.plus(Duration::from_secs(30))),
        Action::Reap { run: id }
    );
    if let Some(lease) = &mut s.lease {
        lease.holder = None;
    }
    assert_eq!(plan_one(&s, started), Action::Reap { run: id });
}

/// A retryable failure waits for its backoff (between half and all of the policy's delay), then
/// dispatches the next attempt; later attempts back off longer.
#[test]
fn failed_run_retries_after_its_backoff() {
    let started = t("2026-01-10T10:00:00Z");
    for (attempt, delay) in [(1, Duration::from_secs(30)), (2, Duration::from_secs(60))] {
        let s = with_run(
            status("p", interval()),
            run_at(RunStatus::Failed, started, attempt),
        );
        let failed_at = started.plus(MINUTE);
        let Action::Wait {
            until,
            reason: WaitReason::Backoff { attempt: next },
        } = plan_one(&s, failed_at)
        else {
            panic!("expected a backoff wait");
        };
        assert_eq!(next, attempt + 1);
        assert!(
            until >= failed_at.plus(delay / 2) && until < failed_at.plus(delay),
            "{until}"
        );
        assert_eq!(
            plan_one(&s, Timestamp::from_millis(until.as_millis() - 1)),
            Action::Wait {
                until,
                reason: WaitReason::Backoff { attempt: next }
            }
        );
        assert_eq!(plan_one(&s, until), dispatch(Trigger::Retry, attempt + 1));
    }
}

/// An abandoned run (its holder vanished) is retried like a failure.
#[test]
fn abandoned_run_is_retried() {
    let started = t("2026-01-10T10:00:00Z");
    let s = with_run(
        status("p", interval()),
        run_at(RunStatus::Abandoned, started, 1),
    );
    assert_eq!(
        plan_one(&s, started.plus(HOUR)),
        dispatch(Trigger::Retry, 2)
    );
}

/// Out of attempts: a manual pipeline is skipped as exhausted; a scheduled one waits for its
/// next slot.
#[test]
fn exhausted_attempts_stop_retrying() {
    let started = t("2026-01-10T10:00:00Z");
    let manual = with_run(
        status("p", Schedule::Manual),
        run_at(RunStatus::Failed, started, 3),
    );
    assert_eq!(
        plan_one(&manual, started.plus(HOUR)),
        skip(SkipReason::AttemptsExhausted { attempts: 3 })
    );
    let scheduled = with_run(
        status("p", interval()),
        run_at(RunStatus::Failed, started, 3),
    );
    assert_eq!(
        plan_one(&scheduled, started.plus(MINUTE)),
        Action::Wait {
            until: started.plus(HOUR),
            reason: WaitReason::Schedule
        }
    );
}

/// A failure marked not retryable is not retried.
#[test]
fn permanent_failure_is_not_retried() {
    let started = t("2026-01-10T10:00:00Z");
    let mut r = run_at(RunStatus::Failed, started, 1);
    r.error = Some(RunError::new("bad config", false));
    let s = with_run(status("p", Schedule::Manual), r);
    assert_eq!(plan_one(&s, started.plus(HOUR)), skip(SkipReason::Manual));
}

/// A manual pipeline runs only when asked.
#[test]
fn manual_pipeline_is_skipped() {
    let s = status("p", Schedule::Manual);
    assert_eq!(plan_one(&s, created().plus(HOUR)), skip(SkipReason::Manual));
}

/// An interval pipeline is due at once if it never ran, then one interval after its last start.
#[test]
fn interval_is_due_or_waits() {
    let s = status("p", interval());
    assert_eq!(plan_one(&s, created()), dispatch(Trigger::Schedule, 1));
    let started = t("2026-01-10T10:00:00Z");
    let s = with_run(s, run_at(RunStatus::Succeeded, started, 1));
    assert_eq!(
        plan_one(&s, started.plus(HOUR - Duration::from_millis(1))),
        Action::Wait {
            until: started.plus(HOUR),
            reason: WaitReason::Schedule
        }
    );
    assert_eq!(
        plan_one(&s, started.plus(HOUR)),
        dispatch(Trigger::Schedule, 1)
    );
}

/// A cron pipeline waits for the first firing after its last start, then is due.
#[test]
fn cron_is_due_or_waits() {
    let started = t("2026-01-10T10:00:05Z");
    let s = with_run(
        status("p", hourly_cron()),
        run_at(RunStatus::Succeeded, started, 1),
    );
    assert_eq!(
        plan_one(&s, t("2026-01-10T10:59:59Z")),
        Action::Wait {
            until: t("2026-01-10T11:00:00Z"),
            reason: WaitReason::Schedule
        }
    );
    assert_eq!(
        plan_one(&s, t("2026-01-10T11:00:00Z")),
        dispatch(Trigger::Schedule, 1)
    );
    // Never ran: anchored at creation.
    let fresh = status("q", hourly_cron());
    assert_eq!(
        plan_one(&fresh, created()),
        Action::Wait {
            until: created().plus(HOUR),
            reason: WaitReason::Schedule
        }
    );
}

/// A cancelled run (shutdown, a schema held then resolved) resumes at once on a scheduled
/// pipeline; a manual one waits to be asked.
#[test]
fn cancelled_run_resumes_at_once() {
    let started = t("2026-01-10T10:00:00Z");
    let s = with_run(
        status("p", interval()),
        run_at(RunStatus::Cancelled, started, 1),
    );
    assert_eq!(
        plan_one(&s, started.plus(MINUTE)),
        dispatch(Trigger::Schedule, 1)
    );
    let manual = with_run(
        status("q", Schedule::Manual),
        run_at(RunStatus::Cancelled, started, 1),
    );
    assert_eq!(
        plan_one(&manual, started.plus(MINUTE)),
        skip(SkipReason::Manual)
    );
}

/// A plan keeps pipeline order, round-trips through JSON and counts what it does.
#[test]
fn plan_serialises_and_prints() {
    let now = created();
    let statuses = vec![status("a", interval()), status("b", Schedule::Manual)];
    let p = plan(&statuses, now);
    let ids: Vec<&str> = p.items.iter().map(|i| i.pipeline.as_str()).collect();
    assert_eq!(ids, ["a", "b"]);
    let json = serde_json::to_string(&p).expect("json");
    assert_eq!(serde_json::from_str::<Plan>(&json).expect("parse"), p);
    assert_eq!(p.items[0].action.to_string(), "dispatch (scheduled)");
    assert_eq!((p.dispatches().count(), p.reaps().count()), (1, 0));
    assert_eq!(p.next_due(), None);
    assert!(!p.is_idle());
}

/// `plan()` works out each shared cron expression once; its actions are exactly `plan_one`'s,
/// for anchors long before, just before, at and after `now`.
#[test]
fn plan_memo_agrees_with_plan_one_for_shared_crons() {
    let now = t("2026-03-01T00:30:00Z");
    let exprs = [
        "0 * * * *",
        "0 0 1 * *",
        "*/7 * * * *",
        "0 0 0 1 1 * 2020",
        "0 0 0 1 1 * 2090",
    ];
    let statuses: Vec<PipelineStatus> = (0..600)
        .map(|i| {
            let cron = Schedule::Cron(CronSchedule::parse(exprs[i % exprs.len()]).expect("cron"));
            let offset_ms = (i as i64 - 300) * 7_919_000;
            let started = Timestamp::from_millis(now.as_millis() + offset_ms);
            with_run(
                status(&format!("p{i:04}"), cron),
                run_at(RunStatus::Succeeded, started, 1),
            )
        })
        .collect();
    // Anchors on firings, including the last one at or before `now` (not due: it fired *at* the
    // anchor, not after it) and `now` itself.
    let on_firings = (0..300).map(|k: i64| {
        let cron = Schedule::Cron(CronSchedule::parse(exprs[k as usize % 3]).expect("cron"));
        let started = Timestamp::from_millis(now.as_millis() - (k / 3) * 15 * 60_000);
        with_run(
            status(&format!("q{k:04}"), cron),
            run_at(RunStatus::Succeeded, started, 1),
        )
    });
    let statuses: Vec<PipelineStatus> = statuses.into_iter().chain(on_firings).collect();
    let planned = plan(&statuses, now);
    for (s, item) in statuses.iter().zip(&planned.items) {
        assert_eq!(item.action, plan_one(s, now), "{}", item.pipeline);
    }
    assert!(planned.dispatches().count() > 0 && planned.next_due().is_some());
}

// ---- properties ----

/// Anchors relative to `now`: anywhere within ±3 days, or exactly on a whole minute away from it
/// (so that anchors fall on firings, where off-by-one mistakes live).
fn arb_anchor() -> impl Strategy<Value = i64> {
    prop_oneof![arb_offset(), (-4_320i64..4_320).prop_map(|m| m * 60_000)]
}

const CRONS: [&str; 4] = ["*/5 * * * *", "0 * * * *", "0 3 * * 1-5", "0 0 1 * *"];

fn arb_schedule() -> impl Strategy<Value = Schedule> {
    prop_oneof![
        Just(Schedule::Manual),
        (1u64..=7_200).prop_map(|s| Schedule::Interval(Duration::from_secs(s))),
        (0..CRONS.len()).prop_map(|i| Schedule::Cron(CronSchedule::parse(CRONS[i]).expect("cron"))),
    ]
}

fn arb_run_status() -> impl Strategy<Value = RunStatus> {
    prop_oneof![
        Just(RunStatus::Running),
        Just(RunStatus::Succeeded),
        Just(RunStatus::Failed),
        Just(RunStatus::Cancelled),
        Just(RunStatus::Abandoned),
    ]
}

/// Times within ±3 days of the plan's `now`.
fn arb_offset() -> impl Strategy<Value = i64> {
    -3 * 86_400_000i64..3 * 86_400_000
}

prop_compose! {
    fn arb_status(now: Timestamp)(
        id in 0u32..1_000_000,
        schedule in arb_schedule(),
        enabled in any::<bool>(),
        paused in any::<bool>(),
        held in proptest::collection::vec(0u64..100, 0..3),
        run in proptest::option::of((arb_run_status(), arb_offset(), 0u64..7_200_000, 1u32..=4, any::<bool>())),
        lease in proptest::option::of((any::<bool>(), arb_offset())),
        created_offset in arb_offset(),
    ) -> PipelineStatus {
        let mut s = status(&format!("p{id}"), schedule);
        s.pipeline.spec.enabled = enabled;
        s.pipeline.created_at = Timestamp::from_millis(now.as_millis() + created_offset);
        s.pipeline.paused = paused.then(|| Pause {
            by: Actor::System,
            reason: Reason::new("generated").expect("reason"),
            since: now,
        });
        s.held_decisions = held.into_iter().map(DecisionId).collect();
        if let Some((status, start, duration, attempt, retryable)) = run {
            let started = Timestamp::from_millis(now.as_millis() + start);
            let mut r = run_at(status, started, attempt);
            r.finished_at = status.is_terminal().then(|| started.plus(Duration::from_millis(duration)));
            r.error = (status == RunStatus::Failed).then(|| RunError::new("boom", retryable));
            s.last_run = Some(r);
        }
        s.lease = lease.map(|(held, expiry)| LeaseState {
            epoch: Epoch(1),
            holder: held.then(holder),
            expires_at: Timestamp::from_millis(now.as_millis() + expiry),
        });
        s
    }
}

fn now() -> Timestamp {
    t("2026-02-10T09:17:31.250Z")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Deterministic: the same statuses at the same time give the same plan, and `plan()` gives
    /// exactly `plan_one`'s action for each (with or without its cron memo).
    #[test]
    fn planning_is_deterministic(statuses in proptest::collection::vec(arb_status(now()), 0..200)) {
        let first = plan(&statuses, now());
        prop_assert_eq!(&first, &plan(&statuses.clone(), now()));
        for (s, item) in statuses.iter().zip(&first.items) {
            prop_assert_eq!(&item.action, &plan_one(s, now()));
            prop_assert_eq!(&item.pipeline, s.pipeline.id());
        }
    }

    /// Never dispatches a disabled, paused or held pipeline, or one with a run in progress.
    #[test]
    fn never_dispatches_what_must_not_run(s in arb_status(now())) {
        if let Action::Dispatch { .. } = plan_one(&s, now()) {
            prop_assert!(s.pipeline.spec.enabled);
            prop_assert!(s.pipeline.paused.is_none());
            prop_assert!(s.held_decisions.is_empty());
            prop_assert!(s.last_run.as_ref().is_none_or(|r| r.status != RunStatus::Running));
        }
    }

    /// A retry is never dispatched, nor awaited, before the failed attempt's end plus the
    /// policy's smallest backoff for it.
    #[test]
    fn backoff_is_respected(s in arb_status(now())) {
        let action = plan_one(&s, now());
        let due = |attempt: u32| {
            let r = s.last_run.as_ref().expect("a retry follows a run");
            let min = s.pipeline.spec.retry.backoff(attempt - 1, 0.0);
            r.finished_at.unwrap_or(r.started_at).plus(min)
        };
        match action {
            Action::Dispatch { trigger: Trigger::Retry, attempt } => prop_assert!(now() >= due(attempt)),
            Action::Wait { until, reason: WaitReason::Backoff { attempt } } => {
                prop_assert!(until >= due(attempt));
                prop_assert!(until > now());
            }
            _ => {}
        }
    }

    /// Reaps only a running run whose lease is not live.
    #[test]
    fn reaps_only_expired_running_runs(s in arb_status(now())) {
        let action = plan_one(&s, now());
        let running = s.last_run.as_ref().filter(|r| r.status == RunStatus::Running);
        let live = s.lease.as_ref().is_some_and(|l| l.is_live(now()));
        if let Action::Reap { run } = action {
            prop_assert_eq!(Some(run), running.map(|r| r.id));
            prop_assert!(!live);
        }
        if running.is_some() {
            let reaped_or_left = matches!(
                action,
                Action::Reap { .. } | Action::Skip { reason: SkipReason::Running { .. } }
            );
            prop_assert!(reaped_or_left, "{:?}", action);
        }
    }

    /// A wait is always for a time after `now`.
    #[test]
    fn waits_are_in_the_future(s in arb_status(now())) {
        if let Action::Wait { until, .. } = plan_one(&s, now()) {
            prop_assert!(until > now());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// `plan()`'s per-expression cron memo (used once an expression is shared by enough
    /// pipelines) gives exactly `plan_one`'s actions, whatever the anchors and `now`.
    #[test]
    fn cron_memo_agrees_with_plan_one(
        now_offset in -400 * 86_400_000i64..400 * 86_400_000,
        aligned_now in any::<bool>(),
        pipelines in proptest::collection::vec((0..CRONS.len(), arb_anchor(), any::<bool>()), 150..300),
    ) {
        let mut now = Timestamp::from_millis(now().as_millis() + now_offset);
        if aligned_now {
            // On a whole hour, where firings of every expression in CRONS can fall.
            now = Timestamp::from_millis(now.as_millis() - now.as_millis().rem_euclid(3_600_000));
        }
        let statuses: Vec<PipelineStatus> = pipelines
            .iter()
            .enumerate()
            .map(|(i, (cron, offset, ran))| {
                let schedule = Schedule::Cron(CronSchedule::parse(CRONS[*cron % 2]).expect("cron"));
                let mut s = status(&format!("p{i:04}"), schedule);
                let at = Timestamp::from_millis(now.as_millis() + offset);
                if *ran {
                    s = with_run(s, run_at(RunStatus::Succeeded, at, 1));
                } else {
                    s.pipeline.created_at = at;
                }
                s
            })
            .collect();
        let planned = plan(&statuses, now);
        for (s, item) in statuses.iter().zip(&planned.items) {
            prop_assert_eq!(&item.action, &plan_one(s, now));
        }
    }
}

/// An operator's request dispatches a manual or backfill run at once, even for a manual pipeline
/// or one waiting out a retry backoff; a paused or running pipeline still waits.
#[test]
fn requested_runs_are_dispatched_with_their_trigger() {
    for trigger in [Trigger::Manual, Trigger::Backfill] {
        let mut s = status("p", Schedule::Manual);
        assert_eq!(plan_one(&s, created()), skip(SkipReason::Manual));
        s.pipeline.requested = Some(hakiri_core::RunRequest {
            trigger,
            by: Actor::System,
            at: created(),
        });
        assert_eq!(plan_one(&s, created()), dispatch(trigger, 1));
        let failed = run_at(RunStatus::Failed, created(), 1);
        let retrying = with_run(s.clone(), failed);
        assert_eq!(plan_one(&retrying, created()), dispatch(trigger, 1));
        let mut paused = s.clone();
        paused.pipeline.paused = Some(Pause {
            by: Actor::System,
            reason: Reason::new("x").expect("reason"),
            since: created(),
        });
        assert_eq!(plan_one(&paused, created()), skip(SkipReason::Paused));
    }
}
