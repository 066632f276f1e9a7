//! Model-based sequences: random sequences of port calls run against a backend and a reference
//! [`Model`] in lock step, every answer and every observable state compared, shrunk by proptest to
//! a minimal failing sequence on the first divergence.
//!
//! A backend's test file adds it in one line, with the [`Harness`] its contract suite uses:
//!
//! ```text
//! hakiri_contract::model_sequences!(MemoryHarness::new(), cases = 1000);
//! ```
//!
//! # What the model covers
//! - pipelines: create, update with a generation compare-and-set (an identical spec is a no-op),
//!   pause and resume, delete (generation, never under a live lease; a re-created id starts empty);
//! - leases: acquire (same holder refused too), force, renew, release; one project-wide epoch
//!   counter; expiry by the catalog clock (`now >= expires_at`: exactly one ttl expires a
//!   lease); fencing reasons (superseded, expired, released, no lease);
//! - run requests: manual and backfill, refused on a disabled pipeline, a backfill covering a
//!   manual one, consumed when a requested run begins (not a scheduled one);
//! - runs: begin (not paused, at most one running), finish with final cursors (all or nothing),
//!   finishing twice, the abandon of a running run when a new epoch takes the pipeline or its
//!   holder releases, the runs a delete removes;
//! - cursors: checkpoints with and without an expected version, the monotonic rule (number or
//!   string, no type change, no regression, equal is a no-op), opaque cursors, operator resets
//!   to a value, to the start and to an earlier version (create and type change only when allowed),
//!   history length;
//! - schemas: observations mid-run and at a finish (the first version, the same schema, a change
//!   classed additive, widening or breaking and judged by the default or a strict policy, a change
//!   already held), held changes pausing the pipeline, decisions accepted or rejected once, the
//!   policy's pause lifted by the last one (an operator's pause stays), resuming refused while
//!   held;
//! - the event log: which events each call appends (kind and pipeline; not their fields, nor the
//!   order within one call, which the port leaves open).
//!
//! After every call the snapshot compares, read through the port: each pipeline's generation,
//! pause (and who made it), pending request, lease state, newest run, cursors (value, version,
//! history length), schema versions and held decisions; every run's status; every decision's
//! verdict.
//!
//! # What it leaves out
//! Listing and paging, the fields of runs and cursors beyond those above (stats,
//! errors, who wrote a cursor), invalid input (bad ttl, attempt 0; the contract suite's
//! `validation` checks cover it), concurrency, and more than one project. On a harness whose clock
//! is not manual ([`Harness::manual_clock`] false) clock ops are left out, a long ttl is used, and
//! times are not compared.
//!
//! # Layout
//! - [`state`]: the model and the answers and snapshots compared.
//! - [`call`]: the ops proptest generates and the port calls they become.
//! - this file: the lock-step runner and the [`model_sequences!`](crate::model_sequences) macro.

pub mod call;
pub mod state;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hakiri_core::{
    Actor, BeginRun, Catalog, Decide, DecisionId, DecisionQuery, Entity, Error, EventKind,
    FenceReason, Lease, Limit, Pipeline, PipelineId, Resolution, Run, RunId,
};
use proptest::test_runner::{Config, TestCaseError, TestRunner};

use crate::{unique_project, Harness};
use call::{actor, sequence, Call, Op, Shape, STREAMS};
pub use state::Model;
use state::{Answer, Failure, Fence, Missing, Pauser, PipelineView, RunView, Snapshot};

/// Sequences per backend unless `HAKIRI_MODEL_CASES` says otherwise.
pub const DEFAULT_CASES: u32 = 256;
/// The longest sequence generated.
pub const MAX_STEPS: usize = 40;
/// The lease ttl on a real clock: long enough that no lease expires within a sequence.
pub const REAL_CLOCK_TTL: Duration = Duration::from_secs(3600);

/// Runs `HAKIRI_MODEL_CASES` (default `cases`) random sequences against `harness`, each on a
/// fresh project, and panics with the shrunk sequence on the first divergence.
///
/// `HAKIRI_MODEL_JOBS` (default 1) splits the cases over that many threads, each with its own
/// runtime and random seed, on a harness without a manual clock: a backend behind a network round
/// trip spends most of a sequence waiting, so the soak runs several at once.
pub fn check(harness: Arc<dyn Harness>, cases: u32) {
    let cases = env_count("HAKIRI_MODEL_CASES", cases);
    // A manual clock belongs to the harness, so one sequence's clock moves would reach another's:
    // those run one at a time.
    let jobs = match harness.manual_clock() {
        true => 1,
        false => env_count("HAKIRI_MODEL_JOBS", 1).clamp(1, cases.max(1)),
    };
    let started = Instant::now();
    let outcomes: Vec<(Tally, Result<(), String>)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..jobs)
            .map(|job| {
                // The first jobs take the remainder, so the counts add up to `cases`.
                let share = cases / jobs + u32::from(job < cases % jobs);
                let harness = Arc::clone(&harness);
                scope.spawn(move || run_cases(&*harness, share))
            })
            .collect();
        workers
            .into_iter()
            .map(|worker| {
                worker
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    });
    let mut tally = Tally::new();
    let mut failures = Vec::new();
    for (job_tally, result) in outcomes {
        for (op, kinds) in job_tally {
            for (kind, n) in kinds {
                *tally.entry(op).or_default().entry(kind).or_default() += n;
            }
        }
        failures.extend(result.err());
    }
    let operations: u64 = tally.values().flat_map(BTreeMap::values).sum();
    // One line in the form `scripts/soak` adds up (shrinking's reruns count as operations).
    eprintln!(
        "soak: sequences {cases} operations {operations} divergences {} in {:.1?}",
        failures.len(),
        started.elapsed()
    );
    eprintln!("answers compared, by op:");
    for (op, kinds) in tally {
        let kinds: Vec<String> = kinds.iter().map(|(k, n)| format!("{k} {n}")).collect();
        eprintln!("  {op}: {}", kinds.join(", "));
    }
    if !failures.is_empty() {
        panic!("{}", failures.join("\n\n"));
    }
}

/// [`crate::env_number`] as a `u32` count.
fn env_count(name: &str, default: u32) -> u32 {
    u32::try_from(crate::env_number(name, u64::from(default))).unwrap_or(u32::MAX)
}

/// Runs `cases` sequences on a runtime of its own; the first divergence, shrunk, is the error.
fn run_cases(harness: &dyn Harness, cases: u32) -> (Tally, Result<(), String>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime for the sequences");
    let manual = harness.manual_clock();
    let mut runner = TestRunner::new(Config {
        cases,
        // A failing sequence is printed, shrunk; nothing is written into the source tree.
        failure_persistence: None,
        ..Config::default()
    });
    let tally = RefCell::new(Tally::new());
    let result = runner.run(&sequence(manual, MAX_STEPS), |ops| {
        runtime
            .block_on(run_sequence(harness, &ops, &mut tally.borrow_mut()))
            .map_err(TestCaseError::fail)
    });
    (
        tally.into_inner(),
        result.map_err(|failure| failure.to_string()),
    )
}

/// How many answers of each kind each op got, over all sequences run (shrinking included): what
/// the sequences exercised.
pub type Tally = BTreeMap<&'static str, BTreeMap<String, u64>>;

/// Runs one sequence on a fresh project, counting its answers in `tally`; `Err` describes the
/// first divergence.
pub async fn run_sequence(
    harness: &dyn Harness,
    ops: &[Op],
    tally: &mut Tally,
) -> Result<(), String> {
    let catalog = harness.open(&unique_project()).await;
    let manual = harness.manual_clock();
    let now = catalog
        .pipeline_statuses(None, Limit::ONE)
        .await
        .map_err(|e| format!("reading the catalog's clock: {e}"))?
        .as_of;
    let ttl = if manual {
        harness.ttl()
    } else {
        REAL_CLOCK_TTL
    };
    let mut model = Model::new(now, ttl, manual);
    let mut backend = Backend {
        catalog,
        harness,
        manual,
        ttl,
        leases: Vec::new(),
        runs: Vec::new(),
        decisions: Vec::new(),
        last_event: 0,
    };
    for (step, op) in ops.iter().enumerate() {
        let Some(call) = op.call(&model, &backend.leases) else {
            continue;
        };
        let expected = model.apply(&call);
        let actual = backend.apply(&call).await;
        *tally
            .entry(op.name())
            .or_default()
            .entry(actual.kind())
            .or_default() += 1;
        if expected != actual {
            return Err(format!(
                "step {step}: {op:?}\n  call: {call:?}\n  \
                 model:   {expected:?}\n  backend: {actual:?}"
            ));
        }
        let expected = model.take_events();
        let actual = backend.new_events().await?;
        if expected != actual {
            return Err(format!(
                "step {step}: {op:?} appended other events\n  \
                 model:   {expected:?}\n  backend: {actual:?}"
            ));
        }
        let expected = model.snapshot();
        let actual = backend.snapshot().await?;
        if expected != actual {
            return Err(format!(
                "after step {step}: {op:?}, the state differs\n  \
                 model:   {expected:?}\n  backend: {actual:?}"
            ));
        }
    }
    Ok(())
}

/// The backend side of the lock step: the catalog, and the leases and runs it handed out.
struct Backend<'a> {
    catalog: Arc<dyn Catalog>,
    harness: &'a dyn Harness,
    manual: bool,
    ttl: Duration,
    /// Every lease handed out (acquired, forced, renewed), oldest first.
    leases: Vec<Lease>,
    /// Every run begun, oldest first: a run's handle is its index.
    runs: Vec<RunId>,
    /// Every decision recorded, oldest first: a decision's handle is its index. Learnt from
    /// observations and from the snapshot's listing (a finish records decisions it does not
    /// return).
    decisions: Vec<DecisionId>,
    /// The sequence number of the last event read.
    last_event: u64,
}

fn event_name(kind: &EventKind) -> &'static str {
    match kind {
        EventKind::PipelineCreated { .. } => "pipeline_created",
        EventKind::PipelineUpdated { .. } => "pipeline_updated",
        EventKind::PipelineDeleted => "pipeline_deleted",
        EventKind::PipelinePaused { .. } => "pipeline_paused",
        EventKind::PipelineResumed => "pipeline_resumed",
        EventKind::RunRequested { .. } => "run_requested",
        EventKind::LeaseAcquired { .. } => "lease_acquired",
        EventKind::LeaseReleased { .. } => "lease_released",
        EventKind::RunBegun { .. } => "run_begun",
        EventKind::RunFinished { .. } => "run_finished",
        EventKind::CursorAdvanced { .. } => "cursor_advanced",
        EventKind::CursorReset { .. } => "cursor_reset",
        EventKind::SchemaVersionAdded { .. } => "schema_version_added",
        EventKind::DecisionRecorded { .. } => "decision_recorded",
        EventKind::DecisionResolved { .. } => "decision_resolved",
        _ => "other",
    }
}

fn pipeline_answer(p: Pipeline) -> Answer {
    Answer::Pipeline {
        generation: p.generation.0,
        paused: pauser(&p),
        enabled: p.spec.enabled,
        requested: p.requested.as_ref().map(|r| r.trigger),
    }
}

fn pauser(p: &Pipeline) -> Option<Pauser> {
    p.paused.as_ref().map(|pause| match pause.by {
        Actor::Policy => Pauser::Policy,
        _ => Pauser::Operator,
    })
}

impl Backend<'_> {
    async fn apply(&mut self, call: &Call) -> Answer {
        let c = &*self.catalog;
        let by = actor();
        let answer = match call {
            Call::Put { spec, mode } => c
                .put_pipeline(spec.clone(), *mode, &by)
                .await
                .map(pipeline_answer),
            Call::SetPaused { pipeline, change } => c
                .set_paused(pipeline, change.clone(), &by)
                .await
                .map(pipeline_answer),
            Call::Delete { pipeline, expected } => c
                .delete_pipeline(pipeline, *expected, &by)
                .await
                .map(|()| Answer::Done),
            Call::Acquire {
                pipeline,
                holder,
                force,
            } => {
                let lease = if *force {
                    let why = crate::reason("model");
                    c.force_acquire(pipeline, holder, self.ttl, &by, &why).await
                } else {
                    c.acquire(pipeline, holder, self.ttl).await
                };
                lease.map(|l| self.handed_out(l))
            }
            Call::Renew { lease } => c.renew(lease, self.ttl).await.map(|l| self.handed_out(l)),
            Call::Release { lease } => c.release(lease).await.map(|()| Answer::Done),
            Call::Request { pipeline, trigger } => c
                .request_run(pipeline, *trigger, &by)
                .await
                .map(pipeline_answer),
            Call::Begin { lease, trigger } => {
                match c.begin_run(lease, BeginRun::new(*trigger)).await {
                    Ok(run) => {
                        self.runs.push(run.id);
                        Ok(self.run_answer(run))
                    }
                    Err(e) => Err(e),
                }
            }
            Call::Advance {
                lease,
                run,
                stream,
                advance,
            } => c
                .advance(lease, self.runs[*run], stream, advance.clone())
                .await
                .map(|cursor| Answer::Cursor {
                    value: cursor.value.into_json(),
                    version: cursor.version,
                }),
            Call::Finish {
                lease, run, finish, ..
            } => c
                .finish_run(lease, self.runs[*run], finish.clone())
                .await
                .map(|r| self.run_answer(r)),
            Call::Reset {
                lease,
                stream,
                reset,
            } => c
                .reset_cursor(lease, stream, reset.clone())
                .await
                .map(|cursor| Answer::Cursor {
                    value: cursor.value.into_json(),
                    version: cursor.version,
                }),
            Call::Observe {
                lease,
                run,
                stream,
                shape,
            } => match c
                .observe_schema(lease, self.runs[*run], stream, shape.schema())
                .await
            {
                Ok(o) => {
                    let decision = o.decision.map(|d| self.decision_handle(d.id));
                    Ok(Answer::Observation {
                        verdict: o.verdict,
                        version: o.current.version,
                        shape: Shape::of(&o.current.schema),
                        decision,
                    })
                }
                Err(e) => Err(e),
            },
            Call::Decide { decision, accept } => {
                let decide = Decide {
                    resolution: if *accept {
                        Resolution::Accept
                    } else {
                        Resolution::Reject
                    },
                    by,
                    reason: crate::reason("model"),
                };
                match c.decide(self.decisions[*decision], decide).await {
                    Ok(d) => Ok(Answer::Decision {
                        handle: self.decision_handle(d.id),
                        verdict: d.verdict,
                        to_version: d.to_version,
                    }),
                    Err(e) => Err(e),
                }
            }
            Call::Wait(by) => {
                self.harness.advance(*by).await;
                Ok(Answer::Done)
            }
        };
        answer.unwrap_or_else(|e| Answer::Failed(self.failure(e)))
    }

    fn handed_out(&mut self, lease: Lease) -> Answer {
        self.leases.push(lease.clone());
        Answer::Lease {
            pipeline: lease.pipeline,
            holder: lease.holder,
            epoch: lease.epoch,
            expires_at: self.manual.then_some(lease.expires_at),
        }
    }

    /// A decision's handle; a decision not seen before gets the next one.
    fn decision_handle(&mut self, id: DecisionId) -> usize {
        self.decisions
            .iter()
            .position(|d| *d == id)
            .unwrap_or_else(|| {
                self.decisions.push(id);
                self.decisions.len() - 1
            })
    }

    fn handle(&self, run: RunId) -> Option<usize> {
        self.runs.iter().position(|r| *r == run)
    }

    fn run_answer(&self, run: Run) -> Answer {
        let values = |m: BTreeMap<_, hakiri_core::CursorValue>| {
            m.into_iter().map(|(s, v)| (s, v.into_json())).collect()
        };
        Answer::Run(RunView {
            // A run id the sequence never began shows as a handle past the end.
            handle: self.handle(run.id).unwrap_or(usize::MAX),
            pipeline: run.pipeline,
            epoch: run.epoch,
            holder: run.holder,
            status: run.status,
            cursors_at_start: values(run.cursors_at_start),
            cursors_at_end: values(run.cursors_at_end),
        })
    }

    fn failure(&self, error: Error) -> Failure {
        match error {
            Error::NotFound(entity) => Failure::NotFound(match entity {
                Entity::Pipeline { .. } => Missing::Pipeline,
                Entity::Run { .. } => Missing::Run,
                Entity::Cursor { .. } => Missing::Cursor,
                Entity::CursorVersion { .. } => Missing::CursorVersion,
                Entity::Decision { .. } => Missing::Decision,
                _ => Missing::Other,
            }),
            Error::AlreadyExists(_) => Failure::AlreadyExists,
            Error::Conflict { .. } => Failure::Conflict,
            Error::Fenced { reason, .. } => Failure::Fenced(match reason {
                FenceReason::Superseded { current } => Fence::Superseded(current),
                FenceReason::Expired { at } => Fence::Expired(self.manual.then_some(at)),
                FenceReason::Released => Fence::Released,
                FenceReason::NoLease => Fence::NoLease,
                other => return Failure::Other(format!("{other:?}")),
            }),
            Error::Leased { holder, epoch, .. } => Failure::Leased { holder, epoch },
            Error::CursorRegression { .. } => Failure::CursorRegression,
            Error::InvalidArgument(_) => Failure::InvalidArgument,
            Error::FailedPrecondition(_) => Failure::FailedPrecondition,
            other => Failure::Other(format!("{other:?}")),
        }
    }

    /// The events appended since the last read, as the model names them, sorted.
    async fn new_events(&mut self) -> Result<Vec<(PipelineId, &'static str)>, String> {
        let events = self
            .catalog
            .events(self.last_event, Limit::MAX)
            .await
            .map_err(|e| format!("reading events: {e:?}"))?;
        if let Some(last) = events.last() {
            self.last_event = last.seq;
        }
        let mut named: Vec<_> = events
            .into_iter()
            .map(|e| (e.pipeline, event_name(&e.kind)))
            .collect();
        named.sort_unstable();
        Ok(named)
    }

    /// Reads everything the snapshot compares through the port.
    async fn snapshot(&mut self) -> Result<Snapshot, String> {
        let catalog = Arc::clone(&self.catalog);
        let c = &*catalog;
        let read = |what: &str, e: Error| format!("reading {what}: {e:?}");
        let all = DecisionQuery {
            limit: Limit::MAX,
            ..DecisionQuery::default()
        };
        let listed = c
            .list_decisions(&all)
            .await
            .map_err(|e| read("decisions", e))?
            .items;
        let mut verdicts = BTreeMap::new();
        for decision in listed {
            let handle = self.decision_handle(decision.id);
            verdicts.insert(handle, decision.verdict);
        }
        let decisions = (0..self.decisions.len())
            .map(|h| verdicts.get(&h).copied())
            .collect();
        let statuses = c
            .pipeline_statuses(None, Limit::MAX)
            .await
            .map_err(|e| read("pipeline statuses", e))?;
        let mut pipelines = BTreeMap::new();
        for status in statuses.items {
            let id = status.pipeline.spec.id.clone();
            let mut cursors = BTreeMap::new();
            for cursor in c.list_cursors(&id).await.map_err(|e| read("cursors", e))? {
                let history = c
                    .cursor_history(&id, &cursor.stream, None, Limit::MAX)
                    .await
                    .map_err(|e| read("cursor history", e))?;
                cursors.insert(
                    cursor.stream,
                    (
                        cursor.value.into_json(),
                        cursor.version,
                        history.items.len(),
                    ),
                );
            }
            let mut schemas = BTreeMap::new();
            for name in STREAMS {
                let stream = crate::stream(name);
                let versions = c
                    .list_schema_versions(&id, &stream)
                    .await
                    .map_err(|e| read("schema versions", e))?;
                if !versions.is_empty() {
                    let shapes = versions.iter().map(|v| Shape::of(&v.schema)).collect();
                    schemas.insert(stream, shapes);
                }
            }
            let mut held: Vec<usize> = status
                .held_decisions
                .iter()
                .map(|d| self.decision_handle(*d))
                .collect();
            held.sort_unstable();
            let view = PipelineView {
                generation: status.pipeline.generation.0,
                paused: pauser(&status.pipeline),
                enabled: status.pipeline.spec.enabled,
                requested: status.pipeline.requested.as_ref().map(|r| r.trigger),
                held,
                schemas,
                lease: status
                    .lease
                    .map(|l| (l.epoch, l.holder, self.manual.then_some(l.expires_at))),
                last_run: status.last_run.map(|r| (self.handle(r.id), r.status)),
                cursors,
            };
            pipelines.insert(id, view);
        }
        let mut runs = Vec::with_capacity(self.runs.len());
        for run in &self.runs {
            runs.push(match c.get_run(*run).await {
                Ok(run) => Some(run.status),
                Err(Error::NotFound(_)) => None,
                Err(e) => return Err(read("a run", e)),
            });
        }
        Ok(Snapshot {
            pipelines,
            runs,
            decisions,
        })
    }
}

/// Emits a `#[test]` running the model sequences against the backend whose [`Harness`] the
/// expression builds: [`DEFAULT_CASES`] of them, or `cases = N` (a fast backend affords more);
/// `HAKIRI_MODEL_CASES` overrides either.
#[macro_export]
macro_rules! model_sequences {
    ($harness:expr) => {
        $crate::model_sequences!($harness, cases = $crate::model::DEFAULT_CASES);
    };
    ($harness:expr, cases = $cases:expr) => {
        #[test]
        fn model_sequences() {
            $crate::model::check(::std::sync::Arc::new($harness), $cases);
        }
    };
}
