//! The reference model: what the catalog port answers, written from the rules as documented (the
//! `Catalog` trait's `# Contract` and `# Errors` sections, `docs/guarantees.md`, ADR 0004), in
//! plain maps.
//!
//! It deliberately calls none of `hakiri-core`'s rule functions (`plan_*`, `check_fence`,
//! `check_writable`, …): every backend applies those, so a model built on them would agree with a
//! wrong rule. Core's ids and request types are only its inputs.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::time::Duration;

use hakiri_core::{
    CursorKind, Epoch, HolderId, Lease, Outcome, PauseChange, PipelineId, PipelineSpec,
    PolicyAction, PutMode, ResetTarget, RunStatus, StreamName, Timestamp, Trigger, Verdict,
};
use serde_json::Value;

use super::call::{Call, Shape};

/// How an error is compared: its variant, and the fields a caller acts on; never message text.
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    /// `NotFound`, with what was missing.
    NotFound(Missing),
    /// `AlreadyExists`.
    AlreadyExists,
    /// `Conflict`.
    Conflict,
    /// `Fenced`, with why.
    Fenced(Fence),
    /// `Leased`, with the holder and epoch it names.
    Leased {
        /// The live holder.
        holder: HolderId,
        /// Its epoch.
        epoch: Epoch,
    },
    /// `CursorRegression`.
    CursorRegression,
    /// `InvalidArgument`.
    InvalidArgument,
    /// `FailedPrecondition`.
    FailedPrecondition,
    /// Any other error (the model never answers it), with its debug text.
    Other(String),
}

/// What a `NotFound` was about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    /// A pipeline.
    Pipeline,
    /// A run.
    Run,
    /// A stream's cursor.
    Cursor,
    /// A version of a cursor's history.
    CursorVersion,
    /// A schema decision.
    Decision,
    /// Something else.
    Other,
}

/// Why a lease was fenced.
#[derive(Debug, Clone, PartialEq)]
pub enum Fence {
    /// Another acquisition came after it; the pipeline's current epoch.
    Superseded(Epoch),
    /// It expired (at this time, on a manual clock; `None` on a real one).
    Expired(Option<Timestamp>),
    /// Its holder released it.
    Released,
    /// The pipeline holds no lease (never leased, or deleted and re-created).
    NoLease,
}

/// Who paused a pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pauser {
    /// An operator: only an operator resumes it.
    Operator,
    /// The schema policy, holding a change: resolving the last held decision resumes it.
    Policy,
}

/// One answer of the port, reduced to what the model predicts.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// `Ok(())`, or a clock move.
    Done,
    /// A pipeline.
    Pipeline {
        /// Its generation.
        generation: u64,
        /// Who paused it, if it is paused.
        paused: Option<Pauser>,
        /// Whether its spec is enabled.
        enabled: bool,
        /// The run an operator asked for, until a run of that kind begins.
        requested: Option<Trigger>,
    },
    /// A lease.
    Lease {
        /// Its pipeline.
        pipeline: PipelineId,
        /// Its holder.
        holder: HolderId,
        /// Its epoch.
        epoch: Epoch,
        /// Its expiry, on a manual clock.
        expires_at: Option<Timestamp>,
    },
    /// A run.
    Run(RunView),
    /// A cursor.
    Cursor {
        /// Its value.
        value: Value,
        /// Its version.
        version: u64,
    },
    /// The verdict on an observed schema.
    Observation {
        /// The verdict.
        verdict: Verdict,
        /// The stream's current version number after it.
        version: u32,
        /// The current version's shape.
        shape: Option<Shape>,
        /// The decision recorded or already held, by handle.
        decision: Option<usize>,
    },
    /// A decision, once resolved.
    Decision {
        /// Its handle: its index among the decisions recorded.
        handle: usize,
        /// Its verdict.
        verdict: Verdict,
        /// The version an acceptance created.
        to_version: Option<u32>,
    },
    /// An error.
    Failed(Failure),
}

impl Answer {
    /// The answer's kind, for the tally of outcomes: `ok`, or the error (with the fence reason).
    pub fn kind(&self) -> String {
        match self {
            Answer::Failed(Failure::Fenced(fence)) => {
                let reason = match fence {
                    Fence::Superseded(_) => "superseded",
                    Fence::Expired(_) => "expired",
                    Fence::Released => "released",
                    Fence::NoLease => "no lease",
                };
                format!("fenced ({reason})")
            }
            Answer::Failed(Failure::NotFound(missing)) => format!("not found ({missing:?})"),
            Answer::Failed(Failure::Leased { .. }) => "leased".into(),
            Answer::Failed(Failure::Other(_)) => "other".into(),
            Answer::Failed(failure) => format!("{failure:?}"),
            Answer::Observation { verdict, .. } => format!("ok ({verdict})"),
            _ => "ok".into(),
        }
    }
}

/// A run as compared: its handle (the order runs began in the sequence) and its observable state.
#[derive(Debug, Clone, PartialEq)]
pub struct RunView {
    /// Index of the run among the runs begun in this sequence.
    pub handle: usize,
    /// Its pipeline.
    pub pipeline: PipelineId,
    /// Its epoch.
    pub epoch: Epoch,
    /// Its holder.
    pub holder: HolderId,
    /// Its status.
    pub status: RunStatus,
    /// The pipeline's cursors when it began.
    pub cursors_at_start: BTreeMap<StreamName, Value>,
    /// The pipeline's cursors when it ended (empty while running).
    pub cursors_at_end: BTreeMap<StreamName, Value>,
}

/// Everything observable through the port after a step, as compared.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Snapshot {
    /// Each existing pipeline.
    pub pipelines: BTreeMap<PipelineId, PipelineView>,
    /// Each run begun, by handle: its status, or `None` once its pipeline was deleted.
    pub runs: Vec<Option<RunStatus>>,
    /// Each decision recorded, by handle: its verdict, or `None` once its pipeline was deleted.
    pub decisions: Vec<Option<Verdict>>,
}

/// One pipeline as the snapshot sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct PipelineView {
    /// Its generation.
    pub generation: u64,
    /// Who paused it, if it is paused.
    pub paused: Option<Pauser>,
    /// Whether its spec is enabled.
    pub enabled: bool,
    /// The run an operator asked for, until a run of that kind begins.
    pub requested: Option<Trigger>,
    /// Its held decisions, by handle, ascending.
    pub held: Vec<usize>,
    /// Each stream's schema versions, oldest first (`None`: a schema of no known shape).
    pub schemas: BTreeMap<StreamName, Vec<Option<Shape>>>,
    /// Its lease state: epoch, holder (`None` once released), expiry (on a manual clock).
    pub lease: Option<(Epoch, Option<HolderId>, Option<Timestamp>)>,
    /// Its newest run: handle and status.
    pub last_run: Option<(Option<usize>, RunStatus)>,
    /// Each stream's cursor: value, version, and how many history entries it has.
    pub cursors: BTreeMap<StreamName, (Value, u64, usize)>,
}

#[derive(Debug, Clone)]
struct LeaseRecord {
    epoch: Epoch,
    holder: Option<HolderId>,
    expires_at: Timestamp,
}

#[derive(Debug, Clone)]
struct PipelineRecord {
    spec: PipelineSpec,
    generation: u64,
    paused: Option<Pauser>,
    requested: Option<Trigger>,
    lease: Option<LeaseRecord>,
    running: Option<usize>,
    /// Each stream's history of values: version n is at index n − 1, the cursor is the last.
    streams: BTreeMap<StreamName, Vec<Value>>,
    /// Each stream's schema versions: version n is at index n − 1, the current is the last.
    schemas: BTreeMap<StreamName, Vec<Shape>>,
}

impl PipelineRecord {
    fn cursor(&self, stream: &StreamName) -> Option<(&Value, u64)> {
        self.streams
            .get(stream)
            .and_then(|h| h.last().map(|v| (v, h.len() as u64)))
    }

    fn cursor_values(&self) -> BTreeMap<StreamName, Value> {
        self.streams
            .iter()
            .filter_map(|(s, h)| h.last().map(|v| (s.clone(), v.clone())))
            .collect()
    }
}

#[derive(Debug, Clone)]
struct DecisionRecord {
    pipeline: PipelineId,
    stream: StreamName,
    proposed: Shape,
    verdict: Verdict,
    to_version: Option<u32>,
}

#[derive(Debug, Clone)]
struct RunRecord {
    pipeline: PipelineId,
    epoch: Epoch,
    holder: HolderId,
    status: RunStatus,
    cursors_at_start: BTreeMap<StreamName, Value>,
    cursors_at_end: BTreeMap<StreamName, Value>,
}

/// The model of one project's catalog.
#[derive(Debug, Clone)]
pub struct Model {
    now: Timestamp,
    ttl: Duration,
    /// Whether the backend's clock is the model's (manual): only then are times compared.
    manual_clock: bool,
    /// Epochs come from one project-wide counter, so they never repeat across a delete.
    last_epoch: u64,
    pipelines: BTreeMap<PipelineId, PipelineRecord>,
    /// Runs by handle; `None` once their pipeline was deleted (a delete removes its runs).
    runs: Vec<Option<RunRecord>>,
    /// The pipeline of each run, by handle, kept after a delete (for picking runs per pipeline).
    run_pipelines: Vec<PipelineId>,
    /// Decisions by handle; `None` once their pipeline was deleted.
    decisions: Vec<Option<DecisionRecord>>,
    /// The events the current call appended: pipeline and kind (see [`Model::take_events`]).
    events: Vec<(PipelineId, &'static str)>,
}

type Judged<T> = Result<T, Failure>;

impl Model {
    /// An empty project whose clock reads `now`; leases are taken for `ttl`.
    pub fn new(now: Timestamp, ttl: Duration, manual_clock: bool) -> Self {
        Self {
            now,
            ttl,
            manual_clock,
            last_epoch: 0,
            pipelines: BTreeMap::new(),
            runs: Vec::new(),
            run_pipelines: Vec::new(),
            decisions: Vec::new(),
            events: Vec::new(),
        }
    }

    /// The lease ttl the sequence uses.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The stored generation of `pipeline` (0 if it does not exist).
    pub fn generation(&self, pipeline: &PipelineId) -> u64 {
        self.pipelines.get(pipeline).map_or(0, |p| p.generation)
    }

    /// The stored spec of `pipeline`.
    pub fn spec(&self, pipeline: &PipelineId) -> Option<&PipelineSpec> {
        self.pipelines.get(pipeline).map(|p| &p.spec)
    }

    /// The version of a stream's cursor (0 if it has none, or the pipeline does not exist).
    pub fn cursor_version(&self, pipeline: &PipelineId, stream: &StreamName) -> u64 {
        self.pipelines
            .get(pipeline)
            .and_then(|p| p.cursor(stream))
            .map_or(0, |(_, v)| v)
    }

    /// The handles of the runs begun on `pipeline` (deleted ones too), oldest first.
    pub fn runs_of(&self, pipeline: &PipelineId) -> Vec<usize> {
        (0..self.run_pipelines.len())
            .filter(|h| self.run_pipelines[*h] == *pipeline)
            .collect()
    }

    /// The events appended since the last call of this, sorted: every mutation appends events
    /// (lease renewals and calls that change nothing append none). The order of one call's
    /// events is left out: the port documents it only for a finish.
    pub fn take_events(&mut self) -> Vec<(PipelineId, &'static str)> {
        let mut events = std::mem::take(&mut self.events);
        events.sort_unstable();
        events
    }

    fn emit(&mut self, pipeline: &PipelineId, kind: &'static str) {
        self.events.push((pipeline.clone(), kind));
    }

    /// How many decisions were recorded.
    pub fn decision_count(&self) -> usize {
        self.decisions.len()
    }

    fn time(&self, at: Timestamp) -> Option<Timestamp> {
        self.manual_clock.then_some(at)
    }

    /// Applies one call and answers as the port should.
    pub fn apply(&mut self, call: &Call) -> Answer {
        let answer = match call {
            Call::Put { spec, mode } => self.put(spec, *mode),
            Call::SetPaused { pipeline, change } => self.set_paused(pipeline, change),
            Call::Delete { pipeline, expected } => self.delete(pipeline, *expected),
            Call::Acquire {
                pipeline,
                holder,
                force,
            } => self.acquire(pipeline, holder, *force),
            Call::Renew { lease } => self.renew(lease),
            Call::Release { lease } => self.release(lease),
            Call::Begin { lease, trigger } => self.begin(lease, *trigger),
            Call::Request { pipeline, trigger } => self.request(pipeline, *trigger),
            Call::Advance {
                lease,
                run,
                stream,
                advance,
            } => self.advance(
                lease,
                *run,
                stream,
                advance.value.as_json(),
                advance.expected_version,
            ),
            Call::Finish {
                lease,
                run,
                finish,
                shapes,
            } => self.finish(
                lease,
                *run,
                &finish.outcome,
                finish
                    .cursors
                    .iter()
                    .map(|(s, v)| (s.clone(), v.as_json().clone())),
                shapes,
            ),
            Call::Observe {
                lease,
                run,
                stream,
                shape,
            } => self
                .writable(lease, *run)
                .map(|()| self.observe(&lease.pipeline, stream, *shape)),
            Call::Decide { decision, accept } => self.decide(*decision, *accept),
            Call::Reset {
                lease,
                stream,
                reset,
            } => self.reset(
                lease,
                stream,
                &reset.target,
                reset.expected_version,
                reset.allow.create,
                reset.allow.type_change,
            ),
            Call::Wait(by) => {
                self.now = self.now.plus(*by);
                Ok(Answer::Done)
            }
        };
        answer.unwrap_or_else(Answer::Failed)
    }

    fn pipeline(&self, id: &PipelineId) -> Judged<&PipelineRecord> {
        self.pipelines
            .get(id)
            .ok_or(Failure::NotFound(Missing::Pipeline))
    }

    fn pipeline_mut(&mut self, id: &PipelineId) -> Judged<&mut PipelineRecord> {
        self.pipelines
            .get_mut(id)
            .ok_or(Failure::NotFound(Missing::Pipeline))
    }

    fn pipeline_answer(p: &PipelineRecord) -> Answer {
        Answer::Pipeline {
            generation: p.generation,
            paused: p.paused,
            enabled: p.spec.enabled,
            requested: p.requested,
        }
    }

    fn put(&mut self, spec: &PipelineSpec, mode: PutMode) -> Judged<Answer> {
        let existing = self.pipelines.get_mut(&spec.id);
        match (mode, existing) {
            (PutMode::Create, Some(_)) => Err(Failure::AlreadyExists),
            (PutMode::Create, None) => {
                let record = PipelineRecord {
                    spec: spec.clone(),
                    generation: 1,
                    paused: None,
                    requested: None,
                    lease: None,
                    running: None,
                    streams: BTreeMap::new(),
                    schemas: BTreeMap::new(),
                };
                let answer = Self::pipeline_answer(&record);
                self.pipelines.insert(spec.id.clone(), record);
                self.emit(&spec.id, "pipeline_created");
                Ok(answer)
            }
            (PutMode::Update { .. }, None) => Err(Failure::NotFound(Missing::Pipeline)),
            (PutMode::Update { expected }, Some(p)) => {
                if p.generation != expected.0 {
                    return Err(Failure::Conflict);
                }
                // An identical spec changes nothing, not even the generation.
                if p.spec != *spec {
                    p.spec = spec.clone();
                    p.generation += 1;
                    self.events.push((spec.id.clone(), "pipeline_updated"));
                }
                Ok(Self::pipeline_answer(p))
            }
        }
    }

    fn held(&self, pipeline: &PipelineId) -> Vec<usize> {
        self.decisions
            .iter()
            .enumerate()
            .filter_map(|(handle, d)| {
                d.as_ref()
                    .filter(|d| d.pipeline == *pipeline && d.verdict == Verdict::Held)
                    .map(|_| handle)
            })
            .collect()
    }

    fn set_paused(&mut self, id: &PipelineId, change: &PauseChange) -> Judged<Answer> {
        let held = self.held(id).len();
        let p = self
            .pipelines
            .get_mut(id)
            .ok_or(Failure::NotFound(Missing::Pipeline))?;
        match (change, p.paused) {
            // Pausing a paused pipeline keeps the pause it has, and who made it.
            (PauseChange::Pause(_), Some(_)) | (PauseChange::Resume, None) => {}
            (PauseChange::Pause(_), None) => {
                p.paused = Some(Pauser::Operator);
                self.events.push((id.clone(), "pipeline_paused"));
            }
            (PauseChange::Resume, Some(_)) if held > 0 => return Err(Failure::FailedPrecondition),
            (PauseChange::Resume, Some(_)) => {
                p.paused = None;
                self.events.push((id.clone(), "pipeline_resumed"));
            }
        }
        Ok(Self::pipeline_answer(p))
    }

    /// The live holder of `p`'s lease, if any.
    fn live(&self, p: &PipelineRecord) -> Option<(HolderId, Epoch)> {
        let lease = p.lease.as_ref()?;
        let holder = lease.holder.clone()?;
        (self.now < lease.expires_at).then_some((holder, lease.epoch))
    }

    fn delete(&mut self, id: &PipelineId, expected: hakiri_core::Generation) -> Judged<Answer> {
        let p = self.pipeline(id)?;
        if p.generation != expected.0 {
            return Err(Failure::Conflict);
        }
        if let Some((holder, epoch)) = self.live(p) {
            return Err(Failure::Leased { holder, epoch });
        }
        self.pipelines.remove(id);
        for run in &mut self.runs {
            if run.as_ref().is_some_and(|r| r.pipeline == *id) {
                *run = None;
            }
        }
        for decision in &mut self.decisions {
            if decision.as_ref().is_some_and(|d| d.pipeline == *id) {
                *decision = None;
            }
        }
        self.emit(id, "pipeline_deleted");
        Ok(Answer::Done)
    }

    /// A new epoch's acquisition ends the pipeline's running run, `Abandoned`, with the
    /// pipeline's cursors as its final ones; so does a release.
    fn abandon_running(&mut self, id: &PipelineId) {
        let Some(p) = self.pipelines.get_mut(id) else {
            return;
        };
        let Some(handle) = p.running.take() else {
            return;
        };
        let cursors = p.cursor_values();
        if let Some(Some(run)) = self.runs.get_mut(handle) {
            run.status = RunStatus::Abandoned;
            run.cursors_at_end = cursors;
        }
        self.emit(id, "run_finished");
    }

    fn acquire(&mut self, id: &PipelineId, holder: &HolderId, force: bool) -> Judged<Answer> {
        let p = self.pipeline(id)?;
        if !force {
            // Identity grants nothing: the same holder is refused a live lease too.
            if let Some((holder, epoch)) = self.live(p) {
                return Err(Failure::Leased { holder, epoch });
            }
        }
        self.last_epoch += 1;
        let epoch = Epoch(self.last_epoch);
        let expires_at = self.now.plus(self.ttl);
        self.abandon_running(id);
        self.pipeline_mut(id)?.lease = Some(LeaseRecord {
            epoch,
            holder: Some(holder.clone()),
            expires_at,
        });
        self.emit(id, "lease_acquired");
        Ok(Answer::Lease {
            pipeline: id.clone(),
            holder: holder.clone(),
            epoch,
            expires_at: self.time(expires_at),
        })
    }

    /// The fencing rule: the lease must carry the pipeline's current epoch, be held by the one
    /// presenting it, and be unexpired by the catalog's clock (expiry is `now >= expires_at`).
    fn fence(&self, lease: &Lease) -> Judged<()> {
        let fenced = |f| Err(Failure::Fenced(f));
        let Some(stored) = self
            .pipelines
            .get(&lease.pipeline)
            .and_then(|p| p.lease.as_ref())
        else {
            return fenced(Fence::NoLease);
        };
        if stored.epoch != lease.epoch {
            return fenced(Fence::Superseded(stored.epoch));
        }
        match &stored.holder {
            None => return fenced(Fence::Released),
            Some(h) if *h != lease.holder => return fenced(Fence::Superseded(stored.epoch)),
            Some(_) => {}
        }
        if self.now >= stored.expires_at {
            return fenced(Fence::Expired(self.time(stored.expires_at)));
        }
        Ok(())
    }

    fn renew(&mut self, lease: &Lease) -> Judged<Answer> {
        self.fence(lease)?;
        let expires_at = self.now.plus(self.ttl);
        if let Some(stored) = self.pipeline_mut(&lease.pipeline)?.lease.as_mut() {
            stored.expires_at = expires_at;
        }
        Ok(Answer::Lease {
            pipeline: lease.pipeline.clone(),
            holder: lease.holder.clone(),
            epoch: lease.epoch,
            expires_at: self.time(expires_at),
        })
    }

    fn release(&mut self, lease: &Lease) -> Judged<Answer> {
        self.fence(lease)?;
        self.abandon_running(&lease.pipeline);
        if let Some(stored) = self.pipeline_mut(&lease.pipeline)?.lease.as_mut() {
            stored.holder = None;
        }
        self.emit(&lease.pipeline, "lease_released");
        Ok(Answer::Done)
    }

    fn run_view(&self, handle: usize) -> Judged<Answer> {
        let run = self
            .runs
            .get(handle)
            .and_then(Option::as_ref)
            .ok_or(Failure::NotFound(Missing::Run))?;
        Ok(Answer::Run(RunView {
            handle,
            pipeline: run.pipeline.clone(),
            epoch: run.epoch,
            holder: run.holder.clone(),
            status: run.status,
            cursors_at_start: run.cursors_at_start.clone(),
            cursors_at_end: run.cursors_at_end.clone(),
        }))
    }

    /// The request rule: only an enabled pipeline takes one; asking again for what is pending
    /// changes nothing, and a pending backfill covers a manual run too (a backfill replaces a
    /// manual request, not the other way round).
    fn request(&mut self, id: &PipelineId, trigger: Trigger) -> Judged<Answer> {
        let p = self
            .pipelines
            .get_mut(id)
            .ok_or(Failure::NotFound(Missing::Pipeline))?;
        if !p.spec.enabled {
            return Err(Failure::FailedPrecondition);
        }
        if p.requested != Some(trigger) && p.requested != Some(Trigger::Backfill) {
            p.requested = Some(trigger);
            self.events.push((id.clone(), "run_requested"));
        }
        Ok(Self::pipeline_answer(p))
    }

    fn begin(&mut self, lease: &Lease, trigger: Trigger) -> Judged<Answer> {
        self.fence(lease)?;
        let p = self.pipeline(&lease.pipeline)?;
        if p.paused.is_some() || p.running.is_some() {
            return Err(Failure::FailedPrecondition);
        }
        let run = RunRecord {
            pipeline: lease.pipeline.clone(),
            epoch: lease.epoch,
            holder: lease.holder.clone(),
            status: RunStatus::Running,
            cursors_at_start: p.cursor_values(),
            cursors_at_end: BTreeMap::new(),
        };
        let handle = self.runs.len();
        self.runs.push(Some(run));
        self.run_pipelines.push(lease.pipeline.clone());
        let p = self.pipeline_mut(&lease.pipeline)?;
        p.running = Some(handle);
        // A run consumes the pending request it does what it asks: a backfill run any, a manual
        // run a manual one (ADR 0012). These sequences found core letting a manual run consume a
        // pending backfill request too; core was fixed, the model kept the documented rule.
        let answers = match (trigger, p.requested) {
            (Trigger::Backfill, Some(_)) => true,
            (Trigger::Manual, Some(requested)) => requested == Trigger::Manual,
            _ => false,
        };
        if answers {
            p.requested = None;
        }
        self.emit(&lease.pipeline, "run_begun");
        self.run_view(handle)
    }

    /// A lease-checked write to a run: the lease passes the fence, the run exists and is the
    /// lease's pipeline's (another pipeline's run is `NotFound`), it is running, and it is of the
    /// lease's epoch.
    fn writable(&self, lease: &Lease, handle: usize) -> Judged<()> {
        self.fence(lease)?;
        let run = self
            .runs
            .get(handle)
            .and_then(Option::as_ref)
            .filter(|r| r.pipeline == lease.pipeline)
            .ok_or(Failure::NotFound(Missing::Run))?;
        if run.status != RunStatus::Running || run.epoch != lease.epoch {
            return Err(Failure::FailedPrecondition);
        }
        Ok(())
    }

    fn advance(
        &mut self,
        lease: &Lease,
        handle: usize,
        stream: &StreamName,
        value: &Value,
        expected: Option<u64>,
    ) -> Judged<Answer> {
        self.writable(lease, handle)?;
        let p = self.pipeline(&lease.pipeline)?;
        let stored = p.cursor(stream);
        let version = stored.map_or(0, |(_, v)| v);
        if expected.is_some_and(|e| e != version) {
            return Err(Failure::Conflict);
        }
        match next_value(p.spec.cursor_kind, stored.map(|(v, _)| v), value)? {
            Some(value) => self.append(&lease.pipeline, stream, value, "cursor_advanced"),
            None => self.cursor_answer(&lease.pipeline, stream),
        }
    }

    /// Appends `value` as the stream's next cursor version, with its event; answers the cursor.
    fn append(
        &mut self,
        pipeline: &PipelineId,
        stream: &StreamName,
        value: Value,
        event: &'static str,
    ) -> Judged<Answer> {
        self.pipeline_mut(pipeline)?
            .streams
            .entry(stream.clone())
            .or_default()
            .push(value);
        self.emit(pipeline, event);
        self.cursor_answer(pipeline, stream)
    }

    fn cursor_answer(&self, pipeline: &PipelineId, stream: &StreamName) -> Judged<Answer> {
        let (value, version) = self
            .pipeline(pipeline)?
            .cursor(stream)
            .ok_or(Failure::NotFound(Missing::Cursor))?;
        Ok(Answer::Cursor {
            value: value.clone(),
            version,
        })
    }

    fn finish(
        &mut self,
        lease: &Lease,
        handle: usize,
        outcome: &Outcome,
        cursors: impl Iterator<Item = (StreamName, Value)>,
        shapes: &BTreeMap<StreamName, Shape>,
    ) -> Judged<Answer> {
        self.writable(lease, handle)?;
        let p = self.pipeline(&lease.pipeline)?;
        let kind = p.spec.cursor_kind;
        // Every final cursor is judged like a checkpoint (without a version check) before
        // anything is written: one refused cursor fails the whole finish.
        let mut writes = Vec::new();
        for (stream, value) in cursors {
            if let Some(next) = next_value(kind, p.cursor(&stream).map(|(v, _)| v), &value)? {
                writes.push((stream, next));
            }
        }
        let p = self
            .pipelines
            .get_mut(&lease.pipeline)
            .ok_or(Failure::NotFound(Missing::Pipeline))?;
        for (stream, value) in writes {
            p.streams.entry(stream).or_default().push(value);
            self.events
                .push((lease.pipeline.clone(), "cursor_advanced"));
        }
        // The final schemas are observed after the cursors, as the run's holder would.
        for (stream, shape) in shapes {
            self.observe(&lease.pipeline, stream, *shape);
        }
        let p = self.pipeline_mut(&lease.pipeline)?;
        p.running = None;
        let at_end = p.cursor_values();
        if let Some(Some(run)) = self.runs.get_mut(handle) {
            run.status = match outcome {
                Outcome::Succeeded => RunStatus::Succeeded,
                Outcome::Failed { .. } => RunStatus::Failed,
                Outcome::Cancelled { .. } => RunStatus::Cancelled,
            };
            run.cursors_at_end = at_end;
        }
        self.emit(&lease.pipeline, "run_finished");
        self.run_view(handle)
    }

    fn reset(
        &mut self,
        lease: &Lease,
        stream: &StreamName,
        target: &ResetTarget,
        expected: Option<u64>,
        allow_create: bool,
        allow_type_change: bool,
    ) -> Judged<Answer> {
        self.fence(lease)?;
        let p = self.pipeline(&lease.pipeline)?;
        let kind = p.spec.cursor_kind;
        let history = p.streams.get(stream).map_or(&[][..], |h| &h[..]);
        let current = history.last();
        let version = history.len() as u64;
        if expected.is_some_and(|e| e != version) {
            return Err(Failure::Conflict);
        }
        let value = match target {
            ResetTarget::Value(v) => {
                let v = v.as_json();
                if kind == CursorKind::Monotonic && !(v.is_number() || v.is_string()) {
                    return Err(Failure::InvalidArgument);
                }
                // A reset must not invent the cursor of a stream nobody wrote, unless asked to.
                if current.is_none() && !allow_create {
                    return Err(Failure::NotFound(Missing::Cursor));
                }
                v.clone()
            }
            ResetTarget::Initial => {
                if current.is_none() {
                    return Err(Failure::NotFound(Missing::Cursor));
                }
                Value::Null
            }
            ResetTarget::Version(n) => usize::try_from(*n)
                .ok()
                .and_then(|n| n.checked_sub(1))
                .and_then(|i| history.get(i))
                .cloned()
                .ok_or(Failure::NotFound(Missing::CursorVersion))?,
        };
        // A monotonic cursor switches between number and string only when explicitly allowed;
        // `null` (from the start) is no type.
        if let Some(current) = current {
            let switches = kind == CursorKind::Monotonic
                && !current.is_null()
                && !value.is_null()
                && current.is_number() != value.is_number();
            if switches && !allow_type_change {
                return Err(Failure::InvalidArgument);
            }
        }
        // A reset always appends a version, even to the value the cursor holds.
        self.append(&lease.pipeline, stream, value, "cursor_reset")
    }

    /// The observation rule for a pipeline that exists: the first schema is version 1; the
    /// current one changes nothing; a change already held answers `Held` with its decision and
    /// records nothing; any other change is classed and judged by the pipeline's policy, and the
    /// decision recorded: accepted, it becomes the next version; held, it pauses the pipeline
    /// (unless already paused, whose pause stands).
    fn observe(&mut self, pipeline: &PipelineId, stream: &StreamName, shape: Shape) -> Answer {
        let Some(p) = self.pipelines.get(pipeline) else {
            return Answer::Failed(Failure::NotFound(Missing::Pipeline));
        };
        let answer = |verdict, versions: &[Shape], decision| Answer::Observation {
            verdict,
            version: versions.len() as u32,
            shape: versions.last().copied(),
            decision,
        };
        let versions = p.schemas.get(stream).cloned().unwrap_or_default();
        let Some(&current) = versions.last() else {
            let versions = vec![shape];
            let a = answer(Verdict::Accepted, &versions, None);
            self.pipeline_mut(pipeline)
                .map(|p| p.schemas.insert(stream.clone(), versions))
                .ok();
            self.emit(pipeline, "schema_version_added");
            return a;
        };
        if current == shape {
            return answer(Verdict::Accepted, &versions, None);
        }
        let already = self.decisions.iter().position(|d| {
            d.as_ref().is_some_and(|d| {
                d.pipeline == *pipeline
                    && d.stream == *stream
                    && d.proposed == shape
                    && d.verdict == Verdict::Held
            })
        });
        if let Some(handle) = already {
            return answer(Verdict::Held, &versions, Some(handle));
        }
        let policy = p.spec.schema_policy;
        let action = match class(current, shape) {
            Class::Additive => policy.additive,
            Class::Widening => policy.widening,
            Class::Breaking => policy.breaking,
        };
        let verdict = match action {
            PolicyAction::Accept => Verdict::Accepted,
            PolicyAction::Reject => Verdict::Rejected,
            PolicyAction::Hold => Verdict::Held,
        };
        let handle = self.decisions.len();
        let mut to_version = None;
        let Some(p) = self.pipelines.get_mut(pipeline) else {
            return Answer::Failed(Failure::NotFound(Missing::Pipeline));
        };
        let versions = p.schemas.entry(stream.clone()).or_default();
        self.events.push((pipeline.clone(), "decision_recorded"));
        match verdict {
            Verdict::Accepted => {
                versions.push(shape);
                to_version = Some(versions.len() as u32);
                self.events.push((pipeline.clone(), "schema_version_added"));
            }
            Verdict::Held if p.paused.is_none() => {
                p.paused = Some(Pauser::Policy);
                self.events.push((pipeline.clone(), "pipeline_paused"));
            }
            Verdict::Held | Verdict::Rejected => {}
        }
        let a = answer(verdict, &p.schemas[stream], Some(handle));
        self.decisions.push(Some(DecisionRecord {
            pipeline: pipeline.clone(),
            stream: stream.clone(),
            proposed: shape,
            verdict,
            to_version,
        }));
        a
    }

    /// The resolution rule: only a held decision is resolved, once; accepting appends the proposed
    /// schema as the stream's next version; the last held decision resolved lifts a pause the
    /// policy made (never an operator's).
    fn decide(&mut self, handle: usize, accept: bool) -> Judged<Answer> {
        let decision = self
            .decisions
            .get(handle)
            .and_then(Option::as_ref)
            .ok_or(Failure::NotFound(Missing::Decision))?
            .clone();
        if decision.verdict != Verdict::Held {
            return Err(Failure::Conflict);
        }
        let (verdict, mut to_version) = if accept {
            (Verdict::Accepted, None)
        } else {
            (Verdict::Rejected, None)
        };
        let still_held = self.held(&decision.pipeline).len() - 1;
        let id = &decision.pipeline;
        let p = self
            .pipelines
            .get_mut(id)
            .ok_or(Failure::NotFound(Missing::Pipeline))?;
        if accept {
            let versions = p.schemas.entry(decision.stream.clone()).or_default();
            versions.push(decision.proposed);
            to_version = Some(versions.len() as u32);
            self.events.push((id.clone(), "schema_version_added"));
        }
        self.events.push((id.clone(), "decision_resolved"));
        if still_held == 0 && p.paused == Some(Pauser::Policy) {
            p.paused = None;
            self.events.push((id.clone(), "pipeline_resumed"));
        }
        if let Some(Some(d)) = self.decisions.get_mut(handle) {
            d.verdict = verdict;
            d.to_version = to_version;
        }
        Ok(Answer::Decision {
            handle,
            verdict,
            to_version,
        })
    }

    /// What the port should show after the calls so far.
    pub fn snapshot(&self) -> Snapshot {
        let pipelines = self
            .pipelines
            .iter()
            .map(|(id, p)| {
                let last_run = self.runs.iter().enumerate().rev().find_map(|(handle, r)| {
                    r.as_ref()
                        .filter(|r| r.pipeline == *id)
                        .map(|r| (Some(handle), r.status))
                });
                let view = PipelineView {
                    generation: p.generation,
                    paused: p.paused,
                    enabled: p.spec.enabled,
                    requested: p.requested,
                    held: self.held(id),
                    schemas: p
                        .schemas
                        .iter()
                        .map(|(s, v)| (s.clone(), v.iter().copied().map(Some).collect()))
                        .collect(),
                    lease: p
                        .lease
                        .as_ref()
                        .map(|l| (l.epoch, l.holder.clone(), self.time(l.expires_at))),
                    last_run,
                    cursors: p
                        .streams
                        .iter()
                        .filter_map(|(s, h)| {
                            h.last()
                                .map(|v| (s.clone(), (v.clone(), h.len() as u64, h.len())))
                        })
                        .collect(),
                };
                (id.clone(), view)
            })
            .collect();
        Snapshot {
            pipelines,
            runs: self
                .runs
                .iter()
                .map(|r| r.as_ref().map(|r| r.status))
                .collect(),
            decisions: self
                .decisions
                .iter()
                .map(|d| d.as_ref().map(|d| d.verdict))
                .collect(),
        }
    }
}

/// How disruptive a change between two shapes is, by the documented classes: a new optional
/// column is additive, a relaxed type or nullability is widening, anything else (a column removed,
/// a nullability tightened, or a mix) is breaking.
enum Class {
    Additive,
    Widening,
    Breaking,
}

fn class(from: Shape, to: Shape) -> Class {
    match (from, to) {
        (Shape::A, Shape::B) => Class::Additive,
        (Shape::A, Shape::C) => Class::Widening,
        _ => Class::Breaking,
    }
}

/// The checkpoint rule for one cursor: the value to append, or `None` when it equals the stored
/// one (an idempotent no-op). Monotonic cursors take numbers or strings, never change between
/// them (unless the stored value is `null`, "from the start"), and never move backwards.
fn next_value(kind: CursorKind, stored: Option<&Value>, value: &Value) -> Judged<Option<Value>> {
    match kind {
        CursorKind::Opaque => Ok((stored != Some(value)).then(|| value.clone())),
        CursorKind::Monotonic => {
            if !(value.is_number() || value.is_string()) {
                return Err(Failure::InvalidArgument);
            }
            let Some(stored) = stored.filter(|v| !v.is_null()) else {
                return Ok(Some(value.clone()));
            };
            let order = match (stored, value) {
                (Value::String(a), Value::String(b)) => b.as_bytes().cmp(a.as_bytes()),
                (Value::Number(a), Value::Number(b)) => {
                    // The sequences only use integers.
                    let (a, b) = (a.as_i64(), b.as_i64());
                    b.cmp(&a)
                }
                _ => return Err(Failure::InvalidArgument),
            };
            match order {
                Ordering::Less => Err(Failure::CursorRegression),
                Ordering::Equal => Ok(None),
                Ordering::Greater => Ok(Some(value.clone())),
            }
        }
    }
}
