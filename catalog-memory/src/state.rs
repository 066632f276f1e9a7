//! One project's state and every operation on it.
//!
//! Each operation first asks the `hakiri-core` rules what to do — every check that can fail runs
//! before the first mutation — and then applies the result. Under the project's lock this makes
//! each operation all-or-nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::log::Log;
use hakiri_core::archive::{
    plan_import, recorded_versions, version_without_event, ArchiveHead, Counters, ImportBatch,
    ImportMarker, ImportProgress, Record,
};
use hakiri_core::cursor::{plan_advance, plan_reset, AdvancePlan};
use hakiri_core::evolution::{observe, resolve, Observed};
use hakiri_core::lease::{check_fence, plan_acquire, plan_renew};
use hakiri_core::pipeline::{
    check_delete, pause_event, plan_pause, plan_put, plan_request, PutPlan,
};
use hakiri_core::run::{abandon, check_writable, plan_begin, plan_finish, Beginning};
use hakiri_core::{
    Actor, BeginRun, Cursor, CursorAdvance, CursorChange, CursorHistoryEntry, CursorReset,
    CursorValue, CursorWrite, Decide, Decision, DecisionId, DecisionQuery, Entity, Epoch, Error,
    Event, EventKind, FinishRun, Generation, HolderId, Lease, LeaseState, Limit, Observation, Page,
    PauseChange, Pipeline, PipelineId, PipelineSpec, PipelineStatus, PutMode, Reason, Result, Run,
    RunId, RunQuery, RunStatus, Schema, SchemaVersion, StatusPage, StreamName, Timestamp, Trigger,
    WriteStamp,
};

/// Everything of one project.
#[derive(Debug, Default)]
pub(crate) struct ProjectState {
    pipelines: BTreeMap<PipelineId, PipelineState>,
    /// Every run of the project, in id (= time) order.
    runs: BTreeMap<RunId, Run>,
    decisions: BTreeMap<DecisionId, Decision>,
    /// The event log; an event's `seq` is its index + 1. An append-only vector of buckets: a
    /// growing log never moves what it holds (ADR 0036).
    events: Log<Event>,
    /// Each pipeline's slice of the log: the sequence numbers of its events, ascending.
    events_by_pipeline: BTreeMap<PipelineId, Vec<u64>>,
    /// The last epoch handed out in this project: a project-wide counter, so epochs never repeat,
    /// not even for a deleted and re-created pipeline.
    last_epoch: u64,
    last_decision: u64,
    /// An import into the project that has not finished.
    importing: Option<ImportMarker>,
    /// Feeds run ids' entropy ([`RunId::next`] keeps them in begin order).
    run_counter: u64,
}

#[derive(Debug)]
struct PipelineState {
    pipeline: Pipeline,
    lease: Option<LeaseState>,
    running: Option<RunId>,
    runs: BTreeSet<RunId>,
    held: BTreeSet<DecisionId>,
    streams: BTreeMap<StreamName, StreamState>,
}

#[derive(Debug, Default)]
struct StreamState {
    /// Version n is at index n − 1; appended without moving, as the event log (ADR 0036). The
    /// newest version is the cursor, which is not kept twice.
    history: Log<CursorHistoryEntry>,
    /// An import's versions, newest first, until version 1 completes them into `history`.
    importing: Vec<CursorHistoryEntry>,
    /// Version n is at index n − 1.
    schemas: Vec<SchemaVersion>,
}

impl StreamState {
    /// The version that is the stream's cursor, if it has one.
    fn current(&self) -> Option<&CursorHistoryEntry> {
        self.history.last().or_else(|| self.importing.first())
    }
}

impl PipelineState {
    fn cursor_values(&self) -> BTreeMap<StreamName, CursorValue> {
        self.streams
            .iter()
            .filter_map(|(name, s)| s.current().map(|c| (name.clone(), c.value.clone())))
            .collect()
    }

    /// Every cursor's value and version.
    fn cursors(&self) -> BTreeMap<StreamName, (CursorValue, u64)> {
        self.streams
            .iter()
            .filter_map(|(name, s)| {
                s.current()
                    .map(|c| (name.clone(), (c.value.clone(), c.version)))
            })
            .collect()
    }

    fn stream(&self, stream: &StreamName) -> Option<&StreamState> {
        self.streams.get(stream)
    }

    fn current_cursor(&self, stream: &StreamName) -> Option<(&CursorValue, u64)> {
        self.stream(stream)
            .and_then(StreamState::current)
            .map(|c| (&c.value, c.version))
    }
}

impl ProjectState {
    fn pipeline(&self, id: &PipelineId) -> Result<&PipelineState> {
        self.pipelines
            .get(id)
            .ok_or_else(|| Error::pipeline_not_found(id))
    }

    fn pipeline_mut(&mut self, id: &PipelineId) -> Result<&mut PipelineState> {
        self.pipelines
            .get_mut(id)
            .ok_or_else(|| Error::pipeline_not_found(id))
    }

    /// The pipeline a lease is for, if the lease is valid now.
    fn fenced_pipeline(&self, lease: &Lease, now: Timestamp) -> Result<&PipelineState> {
        let state = self.pipelines.get(&lease.pipeline);
        check_fence(state.and_then(|s| s.lease.as_ref()), lease, now)?;
        state.ok_or_else(|| Error::pipeline_not_found(&lease.pipeline))
    }

    /// The run a lease-carrying write targets, if the lease is valid and the run writable.
    fn writable_run(&self, lease: &Lease, run: RunId, now: Timestamp) -> Result<&PipelineState> {
        let state = self.fenced_pipeline(lease, now)?;
        let run = self
            .runs
            .get(&run)
            .ok_or_else(|| Error::run_not_found(run))?;
        check_writable(run, lease)?;
        Ok(state)
    }

    fn emit(&mut self, at: Timestamp, actor: Actor, pipeline: &PipelineId, kind: EventKind) {
        let seq = self.events.len() as u64 + 1;
        // `get_mut` first: `entry` would take (clone) the key for every event.
        match self.events_by_pipeline.get_mut(pipeline) {
            Some(seqs) => seqs.push(seq),
            None => {
                self.events_by_pipeline.insert(pipeline.clone(), vec![seq]);
            }
        }
        self.events.push(Event {
            seq,
            at,
            actor,
            pipeline: pipeline.clone(),
            kind,
        });
    }

    // Pipelines.

    pub(crate) fn put_pipeline(
        &mut self,
        spec: PipelineSpec,
        mode: PutMode,
        by: &Actor,
        now: Timestamp,
    ) -> Result<Pipeline> {
        let existing = self.pipelines.get(&spec.id).map(|s| &s.pipeline);
        let plan = plan_put(existing, spec, mode, now)?;
        match plan {
            PutPlan::Unchanged(pipeline) => Ok(pipeline),
            PutPlan::Create(pipeline) => {
                let id = pipeline.id().clone();
                self.pipelines.insert(
                    id.clone(),
                    PipelineState {
                        pipeline: pipeline.clone(),
                        lease: None,
                        running: None,
                        runs: BTreeSet::new(),
                        held: BTreeSet::new(),
                        streams: BTreeMap::new(),
                    },
                );
                let generation = pipeline.generation;
                self.emit(
                    now,
                    by.clone(),
                    &id,
                    EventKind::PipelineCreated { generation },
                );
                Ok(pipeline)
            }
            PutPlan::Update(pipeline) => {
                let id = pipeline.id().clone();
                self.pipeline_mut(&id)?.pipeline = pipeline.clone();
                let generation = pipeline.generation;
                self.emit(
                    now,
                    by.clone(),
                    &id,
                    EventKind::PipelineUpdated { generation },
                );
                Ok(pipeline)
            }
        }
    }

    pub(crate) fn get_pipeline(&self, id: &PipelineId) -> Result<Pipeline> {
        Ok(self.pipeline(id)?.pipeline.clone())
    }

    pub(crate) fn list_pipelines(
        &self,
        after: Option<&PipelineId>,
        limit: Limit,
    ) -> Page<Pipeline, PipelineId> {
        let items = self
            .pipelines_after(after)
            .take(limit.as_usize() + 1)
            .map(|s| s.pipeline.clone())
            .collect();
        Page::from_overfetch(items, limit, |p: &Pipeline| p.id().clone())
    }

    fn pipelines_after<'a>(
        &'a self,
        after: Option<&PipelineId>,
    ) -> impl Iterator<Item = &'a PipelineState> + 'a {
        use std::ops::Bound::{Excluded, Unbounded};
        let lower = after.map_or(Unbounded, |a| Excluded(a.clone()));
        self.pipelines.range((lower, Unbounded)).map(|(_, s)| s)
    }

    pub(crate) fn set_paused(
        &mut self,
        id: &PipelineId,
        change: &PauseChange,
        by: &Actor,
        now: Timestamp,
    ) -> Result<Pipeline> {
        let state = self.pipeline_mut(id)?;
        let Some(paused) = plan_pause(&state.pipeline, change, by, state.held.len(), now)? else {
            return Ok(state.pipeline.clone());
        };
        let kind = pause_event(paused.as_ref());
        state.pipeline.paused = paused;
        state.pipeline.updated_at = now;
        let pipeline = state.pipeline.clone();
        self.emit(now, by.clone(), id, kind);
        Ok(pipeline)
    }

    pub(crate) fn request_run(
        &mut self,
        id: &PipelineId,
        trigger: Trigger,
        by: &Actor,
        now: Timestamp,
    ) -> Result<Pipeline> {
        let state = self.pipeline_mut(id)?;
        let Some(request) = plan_request(&state.pipeline, trigger, by, now)? else {
            return Ok(state.pipeline.clone());
        };
        state.pipeline.requested = Some(request);
        let pipeline = state.pipeline.clone();
        self.emit(now, by.clone(), id, EventKind::RunRequested { trigger });
        Ok(pipeline)
    }

    pub(crate) fn delete_pipeline(
        &mut self,
        id: &PipelineId,
        expected: Generation,
        by: &Actor,
        now: Timestamp,
    ) -> Result<()> {
        let state = self.pipeline(id)?;
        check_delete(&state.pipeline, expected, state.lease.as_ref(), now)?;
        let Some(state) = self.pipelines.remove(id) else {
            return Err(Error::pipeline_not_found(id));
        };
        for run in &state.runs {
            self.runs.remove(run);
        }
        self.decisions.retain(|_, d| d.pipeline != *id);
        self.emit(now, by.clone(), id, EventKind::PipelineDeleted);
        Ok(())
    }

    // Leases.

    pub(crate) fn acquire(
        &mut self,
        id: &PipelineId,
        holder: &HolderId,
        ttl: Duration,
        forced_by: Option<(&Actor, &Reason)>,
        now: Timestamp,
    ) -> Result<Lease> {
        let next_epoch = Epoch(self.last_epoch + 1);
        let state = self.pipeline(id)?;
        let lease = plan_acquire(
            state.lease.as_ref(),
            id,
            holder,
            ttl,
            now,
            next_epoch,
            forced_by.is_some(),
        )?;
        self.last_epoch = next_epoch.0;
        self.abandon_running(id, now)?;
        self.pipeline_mut(id)?.lease = Some(LeaseState {
            epoch: lease.epoch,
            holder: Some(holder.clone()),
            expires_at: lease.expires_at,
        });
        let actor = forced_by.map_or_else(|| Actor::Holder(holder.clone()), |(by, _)| by.clone());
        let kind = EventKind::LeaseAcquired {
            holder: holder.clone(),
            epoch: lease.epoch,
            forced: forced_by.is_some(),
        };
        self.emit(now, actor, id, kind);
        Ok(lease)
    }

    /// Marks the pipeline's running run (of an epoch that just lost the lease) `Abandoned`.
    fn abandon_running(&mut self, id: &PipelineId, now: Timestamp) -> Result<()> {
        let state = self.pipeline_mut(id)?;
        let Some(run_id) = state.running.take() else {
            return Ok(());
        };
        let cursors = state.cursor_values();
        let run = self.get_run(run_id)?;
        let write = abandon(run, cursors, now);
        self.runs.insert(run_id, write.run);
        self.emit(now, write.event.0, id, write.event.1);
        Ok(())
    }

    pub(crate) fn renew(&mut self, lease: &Lease, ttl: Duration, now: Timestamp) -> Result<Lease> {
        let state = self.pipelines.get_mut(&lease.pipeline);
        let stored = state.and_then(|s| s.lease.as_mut());
        let renewed = plan_renew(stored.as_deref(), lease, ttl, now)?;
        if let Some(stored) = stored {
            stored.expires_at = renewed.expires_at;
        }
        Ok(renewed)
    }

    pub(crate) fn release(&mut self, lease: &Lease, now: Timestamp) -> Result<()> {
        self.fenced_pipeline(lease, now)?;
        self.abandon_running(&lease.pipeline, now)?;
        if let Some(stored) = self.pipeline_mut(&lease.pipeline)?.lease.as_mut() {
            stored.holder = None;
        }
        let kind = EventKind::LeaseReleased { epoch: lease.epoch };
        self.emit(
            now,
            Actor::Holder(lease.holder.clone()),
            &lease.pipeline,
            kind,
        );
        Ok(())
    }

    // Runs.

    pub(crate) fn begin_run(
        &mut self,
        lease: &Lease,
        begin: BeginRun,
        now: Timestamp,
    ) -> Result<Run> {
        let state = self.fenced_pipeline(lease, now)?;
        let mut entropy = [0u8; 10];
        entropy[2..].copy_from_slice(&(self.run_counter + 1).to_be_bytes());
        let last = self.runs.keys().next_back().copied();
        let write = plan_begin(
            begin,
            Beginning {
                lease,
                pipeline: &state.pipeline,
                running: state.running,
                cursors: state.cursor_values(),
                id: RunId::next(now, last, entropy),
                now,
            },
        )?;
        self.run_counter += 1;
        let id = write.run.id;
        let state = self.pipeline_mut(&lease.pipeline)?;
        state.running = Some(id);
        if write.clears_request {
            state.pipeline.requested = None;
        }
        state.runs.insert(id);
        self.runs.insert(id, write.run.clone());
        self.emit(now, write.event.0, &lease.pipeline, write.event.1);
        Ok(write.run)
    }

    pub(crate) fn advance(
        &mut self,
        lease: &Lease,
        run: RunId,
        stream: &StreamName,
        advance: &CursorAdvance,
        now: Timestamp,
    ) -> Result<Cursor> {
        let state = self.writable_run(lease, run, now)?;
        let kind = state.pipeline.spec.cursor_kind;
        match plan_advance(
            kind,
            &lease.pipeline,
            stream,
            state.current_cursor(stream),
            advance,
            CursorChange::Checkpoint,
        )? {
            AdvancePlan::Unchanged => state
                .stream(stream)
                .and_then(StreamState::current)
                .map(|c| c.cursor(&lease.pipeline, stream))
                .ok_or_else(|| Error::Backend("an unchanged cursor must exist".into())),
            AdvancePlan::Write(write) => {
                let stamp = WriteStamp::holder(lease, run, now);
                self.write_cursor(&lease.pipeline, write, &stamp)
            }
        }
    }

    /// Applies a cursor write: its history entry, which is the stream's cursor, and its event.
    fn write_cursor(
        &mut self,
        pipeline: &PipelineId,
        write: CursorWrite,
        stamp: &WriteStamp,
    ) -> Result<Cursor> {
        let cursor = write.cursor(pipeline, stamp);
        let entry = write.history_entry(stamp);
        let streams = &mut self.pipeline_mut(pipeline)?.streams;
        if !streams.contains_key(&write.stream) {
            streams.insert(write.stream.clone(), StreamState::default());
        }
        let stream = streams.get_mut(&write.stream).expect("inserted above");
        stream.history.push(entry);
        self.emit(stamp.at, stamp.by.clone(), pipeline, write.event());
        Ok(cursor)
    }

    pub(crate) fn finish_run(
        &mut self,
        lease: &Lease,
        run: RunId,
        finish: FinishRun,
        now: Timestamp,
    ) -> Result<Run> {
        let state = self.fenced_pipeline(lease, now)?;
        let kind = state.pipeline.spec.cursor_kind;
        let current = state.cursors();
        let record = self.get_run(run)?;
        // Every check that can fail happens here, before anything is written.
        let write = plan_finish(record, lease, kind, &current, finish, now)?;
        for cursor in write.cursors {
            self.write_cursor(&lease.pipeline, cursor, &write.stamp)?;
        }
        for (stream, schema) in write.schemas {
            self.observe(
                &lease.pipeline,
                Some(run),
                &write.stamp.by,
                &stream,
                schema,
                now,
            )?;
        }
        self.pipeline_mut(&lease.pipeline)?.running = None;
        self.runs.insert(run, write.run.clone());
        self.emit(now, write.event.0, &lease.pipeline, write.event.1);
        Ok(write.run)
    }

    pub(crate) fn get_run(&self, run: RunId) -> Result<Run> {
        self.runs
            .get(&run)
            .cloned()
            .ok_or_else(|| Error::run_not_found(run))
    }

    pub(crate) fn list_runs(&self, query: &RunQuery) -> Page<Run, RunId> {
        use std::ops::Bound::{Excluded, Unbounded};
        let upper = query.before.map_or(Unbounded, Excluded);
        let take = query.limit.as_usize() + 1;
        let items: Vec<Run> = match query.pipeline.as_ref().map(|p| self.pipelines.get(p)) {
            Some(None) => Vec::new(),
            Some(Some(state)) => state
                .runs
                .range((Unbounded, upper))
                .rev()
                .filter_map(|id| self.runs.get(id))
                .filter(|r| query.matches(r))
                .take(take)
                .cloned()
                .collect(),
            None => self
                .runs
                .range((Unbounded, upper))
                .rev()
                .map(|(_, r)| r)
                .filter(|r| query.matches(r))
                .take(take)
                .cloned()
                .collect(),
        };
        Page::from_overfetch(items, query.limit, |r: &Run| r.id)
    }

    // Cursors.

    pub(crate) fn get_cursor(
        &self,
        pipeline: &PipelineId,
        stream: &StreamName,
    ) -> Result<Option<Cursor>> {
        Ok(self
            .pipeline(pipeline)?
            .stream(stream)
            .and_then(StreamState::current)
            .map(|c| c.cursor(pipeline, stream)))
    }

    pub(crate) fn list_cursors(&self, pipeline: &PipelineId) -> Result<Vec<Cursor>> {
        Ok(self
            .pipeline(pipeline)?
            .streams
            .iter()
            .filter_map(|(name, s)| s.current().map(|c| c.cursor(pipeline, name)))
            .collect())
    }

    pub(crate) fn cursor_history(
        &self,
        pipeline: &PipelineId,
        stream: &StreamName,
        before: Option<u64>,
        limit: Limit,
    ) -> Result<Page<CursorHistoryEntry, u64>> {
        let Some(history) = self.pipeline(pipeline)?.stream(stream).map(|s| &s.history) else {
            return Ok(Page::from_overfetch(Vec::new(), limit, |e| e.version));
        };
        // Version n is at index n − 1, so the versions below `before` are the first `before − 1`.
        let end = before.map_or(history.len(), |b| {
            usize::try_from(b.saturating_sub(1))
                .unwrap_or(usize::MAX)
                .min(history.len())
        });
        let items = (0..end)
            .rev()
            .take(limit.as_usize() + 1)
            .filter_map(|i| history.get(i).cloned())
            .collect();
        Ok(Page::from_overfetch(
            items,
            limit,
            |e: &CursorHistoryEntry| e.version,
        ))
    }

    pub(crate) fn reset_cursor(
        &mut self,
        lease: &Lease,
        stream: &StreamName,
        reset: &CursorReset,
        now: Timestamp,
    ) -> Result<Cursor> {
        let state = self.fenced_pipeline(lease, now)?;
        let kind = state.pipeline.spec.cursor_kind;
        let current = state.current_cursor(stream);
        let old_value = match reset.target {
            hakiri_core::ResetTarget::Version(v) => state
                .stream(stream)
                .and_then(|s| {
                    usize::try_from(v)
                        .ok()
                        .and_then(|v| v.checked_sub(1))
                        .and_then(|i| s.history.get(i))
                })
                .map(|e| &e.value),
            _ => None,
        };
        let write = plan_reset(kind, &lease.pipeline, stream, current, old_value, reset)?;
        let stamp = WriteStamp::operator(lease, &reset.by, now);
        self.write_cursor(&lease.pipeline, write, &stamp)
    }

    // Schemas.

    pub(crate) fn observe_schema(
        &mut self,
        lease: &Lease,
        run: RunId,
        stream: &StreamName,
        schema: Schema,
        now: Timestamp,
    ) -> Result<Observation> {
        self.writable_run(lease, run, now)?;
        let holder = Actor::Holder(lease.holder.clone());
        self.observe(&lease.pipeline, Some(run), &holder, stream, schema, now)
    }

    /// Applies the observation rule to one schema and writes its outcome.
    fn observe(
        &mut self,
        pipeline: &PipelineId,
        run: Option<RunId>,
        observer: &Actor,
        stream: &StreamName,
        schema: Schema,
        now: Timestamp,
    ) -> Result<Observation> {
        let state = self.pipeline(pipeline)?;
        let current = state.stream(stream).and_then(|s| s.schemas.last()).cloned();
        let held: Vec<Decision> = state
            .held
            .iter()
            .filter_map(|id| self.decisions.get(id))
            .filter(|d| d.stream == *stream)
            .cloned()
            .collect();
        let observed = Observed {
            pipeline: &state.pipeline,
            stream,
            run,
            observer,
            schema,
            now,
        };
        let next_decision = DecisionId(self.last_decision + 1);
        let write = observe(observed, current, held, || Ok(next_decision))?;
        let state = self.pipeline_mut(pipeline)?;
        if let Some(version) = write.version {
            state
                .streams
                .entry(stream.clone())
                .or_default()
                .schemas
                .push(version);
        }
        if let Some(pause) = write.pause {
            state.pipeline.paused = Some(pause);
            state.pipeline.updated_at = now;
        }
        if let Some(decision) = write.decision {
            if decision.is_pending() {
                state.held.insert(decision.id);
            }
            self.last_decision = decision.id.get();
            self.decisions.insert(decision.id, decision);
        }
        for (actor, kind) in write.events {
            self.emit(now, actor, pipeline, kind);
        }
        Ok(write.observation)
    }

    pub(crate) fn get_schema(
        &self,
        pipeline: &PipelineId,
        stream: &StreamName,
        version: Option<u32>,
    ) -> Result<SchemaVersion> {
        let versions = self
            .pipeline(pipeline)?
            .stream(stream)
            .map_or(&[][..], |s| &s.schemas[..]);
        let found = match version {
            None => versions.last(),
            Some(v) => v.checked_sub(1).and_then(|i| versions.get(i as usize)),
        };
        found.cloned().ok_or_else(|| {
            Error::NotFound(Entity::Schema {
                pipeline: pipeline.clone(),
                stream: stream.clone(),
                version,
            })
        })
    }

    pub(crate) fn list_schema_versions(
        &self,
        pipeline: &PipelineId,
        stream: &StreamName,
    ) -> Result<Vec<SchemaVersion>> {
        Ok(self
            .pipeline(pipeline)?
            .stream(stream)
            .map_or_else(Vec::new, |s| s.schemas.clone()))
    }

    pub(crate) fn list_decisions(&self, query: &DecisionQuery) -> Page<Decision, DecisionId> {
        use std::ops::Bound::{Excluded, Unbounded};
        let lower = query.after.map_or(Unbounded, Excluded);
        let items = self
            .decisions
            .range((lower, Unbounded))
            .map(|(_, d)| d)
            .filter(|d| query.matches(d))
            .take(query.limit.as_usize() + 1)
            .cloned()
            .collect();
        Page::from_overfetch(items, query.limit, |d: &Decision| d.id)
    }

    pub(crate) fn decide(
        &mut self,
        id: DecisionId,
        decide: &Decide,
        now: Timestamp,
    ) -> Result<Decision> {
        let current = self
            .decisions
            .get(&id)
            .ok_or(Error::NotFound(Entity::Decision { decision: id }))?;
        let state = self.pipeline(&current.pipeline)?;
        let versions = state.stream(&current.stream).map_or(0, |s| s.schemas.len());
        let current_version = u32::try_from(versions)
            .map_err(|_| Error::Backend("too many schema versions".into()))?;
        let other_held = state.held.iter().filter(|h| **h != id).count();
        let write = resolve(
            current,
            decide,
            &state.pipeline,
            current_version,
            other_held,
            now,
        )?;
        let pipeline = write.decision.pipeline.clone();
        let state = self.pipeline_mut(&pipeline)?;
        if let Some(version) = write.version {
            state
                .streams
                .entry(version.stream.clone())
                .or_default()
                .schemas
                .push(version);
        }
        state.held.remove(&id);
        if write.resume {
            state.pipeline.paused = None;
            state.pipeline.updated_at = now;
        }
        self.decisions.insert(id, write.decision.clone());
        for (actor, kind) in write.events {
            self.emit(now, actor, &pipeline, kind);
        }
        Ok(write.decision)
    }

    // Reads for the reconciler and the audit log.

    pub(crate) fn pipeline_statuses(
        &self,
        after: Option<&PipelineId>,
        limit: Limit,
        now: Timestamp,
    ) -> StatusPage {
        let items = self
            .pipelines_after(after)
            .take(limit.as_usize() + 1)
            .map(|s| PipelineStatus {
                pipeline: s.pipeline.clone(),
                lease: s.lease.clone(),
                last_run: s.runs.last().and_then(|id| self.runs.get(id)).cloned(),
                held_decisions: s.held.iter().copied().collect(),
            })
            .collect();
        let page = Page::from_overfetch(items, limit, |s: &PipelineStatus| s.pipeline.id().clone());
        StatusPage {
            items: page.items,
            next: page.next,
            as_of: now,
        }
    }

    pub(crate) fn events(&self, after: u64, limit: Limit) -> Vec<Event> {
        let start = usize::try_from(after)
            .unwrap_or(usize::MAX)
            .min(self.events.len());
        (start..self.events.len())
            .take(limit.as_usize())
            .filter_map(|i| self.events.get(i).cloned())
            .collect()
    }

    pub(crate) fn pipeline_events(
        &self,
        pipeline: &PipelineId,
        after: u64,
        limit: Limit,
    ) -> Vec<Event> {
        let Some(seqs) = self.events_by_pipeline.get(pipeline) else {
            return Vec::new();
        };
        let start = seqs.partition_point(|&seq| seq <= after);
        self.events_numbered(&seqs[start..seqs.len().min(start + limit.as_usize())])
    }

    pub(crate) fn pipeline_events_before(
        &self,
        pipeline: &PipelineId,
        before: u64,
        limit: Limit,
    ) -> Vec<Event> {
        let Some(seqs) = self.events_by_pipeline.get(pipeline) else {
            return Vec::new();
        };
        let end = seqs.partition_point(|&seq| seq < before);
        self.events_numbered(&seqs[end.saturating_sub(limit.as_usize())..end])
    }

    /// The events numbered `seqs`, in that order.
    fn events_numbered(&self, seqs: &[u64]) -> Vec<Event> {
        seqs.iter()
            .filter_map(|&seq| self.events.get(usize::try_from(seq - 1).ok()?))
            .cloned()
            .collect()
    }

    // Archives.

    pub(crate) fn list_streams(&self, pipeline: &PipelineId) -> Result<Vec<StreamName>> {
        Ok(self
            .pipeline(pipeline)?
            .streams
            .iter()
            .filter(|(_, s)| s.current().is_some() || !s.schemas.is_empty())
            .map(|(name, _)| name.clone())
            .collect())
    }

    pub(crate) fn archive_head(&self) -> ArchiveHead {
        ArchiveHead {
            counters: Counters {
                epoch: self.last_epoch,
                decision: self.last_decision,
            },
            last_event: self.events.len() as u64,
            empty: self.pipelines.is_empty() && self.events.is_empty(),
            importing: self.importing.clone(),
        }
    }

    pub(crate) fn import(&mut self, batch: ImportBatch) -> Result<ImportProgress> {
        let marker = plan_import(&self.archive_head(), &batch)?;
        // Every check first, so that a refused batch changes nothing.
        self.check_import(&batch.records)?;
        if marker.is_none() {
            self.check_history_placed(&batch.records)?;
        }
        let applied = batch.position + batch.records.len() as u64;
        for record in batch.records {
            self.apply(record)?;
        }
        self.last_epoch = batch.counters.epoch;
        self.last_decision = batch.counters.decision;
        self.importing = marker;
        Ok(ImportProgress {
            applied,
            done: self.importing.is_none(),
        })
    }

    /// Whether every record of a batch can be stored beside what the project holds (the batch
    /// itself, and its events against the log, `plan_import` checked): its pipeline exists or
    /// comes earlier in the batch, and its key is free.
    fn check_import(&self, records: &[Record]) -> Result<()> {
        let mut added = BTreeSet::new();
        let known = |id: &PipelineId, added: &BTreeSet<PipelineId>| {
            if self.pipelines.contains_key(id) || added.contains(id) {
                Ok(())
            } else {
                Err(Error::pipeline_not_found(id))
            }
        };
        let taken = |entity| Err(Error::AlreadyExists(entity));
        for record in records {
            match record {
                Record::Pipeline { pipeline, .. } => {
                    let pipeline = pipeline.id().clone();
                    if self.pipelines.contains_key(&pipeline) {
                        return taken(Entity::Pipeline { pipeline });
                    }
                    added.insert(pipeline);
                }
                Record::Run { run } => {
                    known(&run.pipeline, &added)?;
                    if self.runs.contains_key(&run.id) {
                        return taken(Entity::Run { run: run.id });
                    }
                }
                Record::CursorVersion { pipeline, .. } => known(pipeline, &added)?,
                Record::SchemaVersion { version } => known(&version.pipeline, &added)?,
                Record::Decision { decision } => {
                    known(&decision.pipeline, &added)?;
                    if self.decisions.contains_key(&decision.id) {
                        return taken(Entity::Decision {
                            decision: decision.id,
                        });
                    }
                }
                Record::Event { .. } => {}
            }
        }
        Ok(())
    }

    /// Whether every cursor version, stored or in the import's last batch, has the event that
    /// records it, as the backends that keep each version in its event require (ADR 0038): the
    /// same archives are refused everywhere.
    fn check_history_placed(&self, records: &[Record]) -> Result<()> {
        let batch_events = records.iter().filter_map(|r| match r {
            Record::Event { event } => Some(event),
            _ => None,
        });
        let recorded = recorded_versions(self.events.iter().chain(batch_events));
        let stored = self.pipelines.iter().flat_map(|(id, state)| {
            state.streams.iter().flat_map(move |(stream, s)| {
                s.history
                    .iter()
                    .chain(&s.importing)
                    .map(move |entry| (id, stream, entry.version))
            })
        });
        let batch_versions = records.iter().filter_map(|r| match r {
            Record::CursorVersion {
                pipeline,
                stream,
                entry,
            } => Some((pipeline, stream, entry.version)),
            _ => None,
        });
        for (pipeline, stream, version) in stored.chain(batch_versions) {
            let placed = recorded
                .get(pipeline)
                .is_some_and(|versions| versions.contains(&(stream, version)));
            if !placed {
                return Err(version_without_event(
                    pipeline.as_str(),
                    stream.as_str(),
                    version,
                ));
            }
        }
        Ok(())
    }

    /// Stores a checked record, with what is derived from it (found by `check_import`, its
    /// pipeline is there).
    fn apply(&mut self, record: Record) -> Result<()> {
        match record {
            Record::Pipeline { pipeline, lease } => {
                self.pipelines.insert(
                    pipeline.id().clone(),
                    PipelineState {
                        pipeline,
                        lease,
                        running: None,
                        runs: BTreeSet::new(),
                        held: BTreeSet::new(),
                        streams: BTreeMap::new(),
                    },
                );
            }
            Record::Run { run } => {
                let state = self.pipeline_mut(&run.pipeline)?;
                state.runs.insert(run.id);
                if run.status == RunStatus::Running {
                    state.running = Some(run.id);
                }
                self.runs.insert(run.id, run);
            }
            Record::CursorVersion {
                pipeline,
                stream,
                entry,
            } => {
                // Versions come newest first: the first is the cursor; they wait, reversed,
                // until version 1 completes the history.
                let stream_state = self
                    .pipeline_mut(&pipeline)?
                    .streams
                    .entry(stream)
                    .or_default();
                let complete = entry.version == 1;
                stream_state.importing.push(entry);
                if complete {
                    let newest_first = std::mem::take(&mut stream_state.importing);
                    stream_state.history = newest_first.into_iter().rev().collect();
                }
            }
            Record::SchemaVersion { version } => {
                self.pipeline_mut(&version.pipeline)?
                    .streams
                    .entry(version.stream.clone())
                    .or_default()
                    .schemas
                    .push(version);
            }
            Record::Decision { decision } => {
                if decision.is_pending() {
                    self.pipeline_mut(&decision.pipeline)?
                        .held
                        .insert(decision.id);
                }
                self.decisions.insert(decision.id, decision);
            }
            Record::Event { event } => {
                self.events_by_pipeline
                    .entry(event.pipeline.clone())
                    .or_default()
                    .push(event.seq);
                self.events.push(event);
            }
        }
        Ok(())
    }
}
