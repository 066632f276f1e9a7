//! An in-memory Hakiri catalog: a complete backend (not a mock) for tests, examples and embedding
//! in a single process. It passes the whole contract suite.
//!
//! One `std::sync::Mutex` per project serialises every operation, which is what makes writes
//! single-writer here; the domain rules come from `hakiri-core`, this crate only stores state and
//! applies the rules' decisions atomically under the lock.
//!
//! ```
//! use hakiri_catalog_memory::MemoryCatalog;
//! use hakiri_core::{Catalog, ProjectId};
//!
//! let catalog = MemoryCatalog::new(ProjectId::new("acme").unwrap());
//! assert_eq!(catalog.project().as_str(), "acme");
//! ```
//!
//! # Layout
//! - this file: [`MemoryStore`] (many projects, one clock) and [`MemoryCatalog`] (the port).
//! - `state`: one project's state and every operation on it, each all-or-nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use hakiri_core::archive::{ArchiveHead, ImportBatch, ImportProgress};
use hakiri_core::{
    Actor, BeginRun, Catalog, Clock, Cursor, CursorAdvance, CursorHistoryEntry, CursorReset,
    Decide, Decision, DecisionId, DecisionQuery, Error, Event, FinishRun, Generation, HolderId,
    Lease, Limit, Observation, Page, PauseChange, Pipeline, PipelineId, PipelineSpec, ProjectId,
    PutMode, Reason, Result, Run, RunId, RunQuery, Schema, SchemaVersion, StatusPage, StreamName,
    SystemClock, Trigger,
};

mod log;
mod state;

use state::ProjectState;

/// Many projects' catalogs in memory, sharing one clock. Clones share the same store.
#[derive(Debug, Clone)]
pub struct MemoryStore {
    clock: Arc<dyn Clock>,
    // The outer lock is held only to find or create a project's state; operations lock the
    // project's own mutex, so projects never wait for each other.
    projects: Arc<Mutex<HashMap<ProjectId, Arc<Mutex<ProjectState>>>>>,
}

impl MemoryStore {
    /// An empty store on `clock` (use a `ManualClock` to test expiry without sleeping).
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            clock,
            projects: Arc::default(),
        }
    }

    /// The catalog of `project`, created empty on first use.
    pub fn catalog(&self, project: ProjectId) -> MemoryCatalog {
        let mut projects = self
            .projects
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let state = projects.entry(project.clone()).or_default().clone();
        MemoryCatalog {
            project,
            state,
            clock: self.clock.clone(),
        }
    }
}

/// The catalog of one project, in memory.
#[derive(Debug, Clone)]
pub struct MemoryCatalog {
    project: ProjectId,
    // A std mutex, not an async one: no operation awaits while holding it, and it is cheaper.
    state: Arc<Mutex<ProjectState>>,
    clock: Arc<dyn Clock>,
}

impl MemoryCatalog {
    /// A catalog of its own for `project` on the system clock.
    pub fn new(project: ProjectId) -> Self {
        MemoryStore::new(Arc::new(SystemClock)).catalog(project)
    }

    /// A catalog of its own for `project` on `clock`.
    pub fn with_clock(project: ProjectId, clock: Arc<dyn Clock>) -> Self {
        MemoryStore::new(clock).catalog(project)
    }

    /// Locks the project's state; the guard is never held across an `.await`.
    fn state(&self) -> Result<MutexGuard<'_, ProjectState>> {
        // A panic while holding the lock would mean a half-applied operation: refuse to go on.
        self.state
            .lock()
            .map_err(|_| Error::Backend("in-memory state is poisoned by an earlier panic".into()))
    }
}

#[async_trait]
impl Catalog for MemoryCatalog {
    fn project(&self) -> &ProjectId {
        &self.project
    }

    async fn put_pipeline(
        &self,
        spec: PipelineSpec,
        mode: PutMode,
        by: &Actor,
    ) -> Result<Pipeline> {
        let now = self.clock.now();
        self.state()?.put_pipeline(spec, mode, by, now)
    }

    async fn get_pipeline(&self, pipeline: &PipelineId) -> Result<Pipeline> {
        self.state()?.get_pipeline(pipeline)
    }

    async fn list_pipelines(
        &self,
        after: Option<&PipelineId>,
        limit: Limit,
    ) -> Result<Page<Pipeline, PipelineId>> {
        Ok(self.state()?.list_pipelines(after, limit))
    }

    async fn set_paused(
        &self,
        pipeline: &PipelineId,
        change: PauseChange,
        by: &Actor,
    ) -> Result<Pipeline> {
        let now = self.clock.now();
        self.state()?.set_paused(pipeline, &change, by, now)
    }

    async fn request_run(
        &self,
        pipeline: &PipelineId,
        trigger: Trigger,
        by: &Actor,
    ) -> Result<Pipeline> {
        let now = self.clock.now();
        self.state()?.request_run(pipeline, trigger, by, now)
    }

    async fn delete_pipeline(
        &self,
        pipeline: &PipelineId,
        expected: Generation,
        by: &Actor,
    ) -> Result<()> {
        let now = self.clock.now();
        self.state()?.delete_pipeline(pipeline, expected, by, now)
    }

    async fn acquire(
        &self,
        pipeline: &PipelineId,
        holder: &HolderId,
        ttl: Duration,
    ) -> Result<Lease> {
        let now = self.clock.now();
        self.state()?.acquire(pipeline, holder, ttl, None, now)
    }

    async fn force_acquire(
        &self,
        pipeline: &PipelineId,
        holder: &HolderId,
        ttl: Duration,
        by: &Actor,
        reason: &Reason,
    ) -> Result<Lease> {
        let now = self.clock.now();
        self.state()?
            .acquire(pipeline, holder, ttl, Some((by, reason)), now)
    }

    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<Lease> {
        let now = self.clock.now();
        self.state()?.renew(lease, ttl, now)
    }

    async fn release(&self, lease: &Lease) -> Result<()> {
        let now = self.clock.now();
        self.state()?.release(lease, now)
    }

    async fn begin_run(&self, lease: &Lease, begin: BeginRun) -> Result<Run> {
        let now = self.clock.now();
        self.state()?.begin_run(lease, begin, now)
    }

    async fn advance(
        &self,
        lease: &Lease,
        run: RunId,
        stream: &StreamName,
        advance: CursorAdvance,
    ) -> Result<Cursor> {
        let now = self.clock.now();
        self.state()?.advance(lease, run, stream, &advance, now)
    }

    async fn finish_run(&self, lease: &Lease, run: RunId, finish: FinishRun) -> Result<Run> {
        let now = self.clock.now();
        self.state()?.finish_run(lease, run, finish, now)
    }

    async fn get_run(&self, run: RunId) -> Result<Run> {
        self.state()?.get_run(run)
    }

    async fn list_runs(&self, query: &RunQuery) -> Result<Page<Run, RunId>> {
        Ok(self.state()?.list_runs(query))
    }

    async fn get_cursor(
        &self,
        pipeline: &PipelineId,
        stream: &StreamName,
    ) -> Result<Option<Cursor>> {
        self.state()?.get_cursor(pipeline, stream)
    }

    async fn list_cursors(&self, pipeline: &PipelineId) -> Result<Vec<Cursor>> {
        self.state()?.list_cursors(pipeline)
    }

    async fn cursor_history(
        &self,
        pipeline: &PipelineId,
        stream: &StreamName,
        before: Option<u64>,
        limit: Limit,
    ) -> Result<Page<CursorHistoryEntry, u64>> {
        self.state()?
            .cursor_history(pipeline, stream, before, limit)
    }

    async fn reset_cursor(
        &self,
        lease: &Lease,
        stream: &StreamName,
        reset: CursorReset,
    ) -> Result<Cursor> {
        let now = self.clock.now();
        self.state()?.reset_cursor(lease, stream, &reset, now)
    }

    async fn observe_schema(
        &self,
        lease: &Lease,
        run: RunId,
        stream: &StreamName,
        schema: Schema,
    ) -> Result<Observation> {
        let now = self.clock.now();
        self.state()?
            .observe_schema(lease, run, stream, schema, now)
    }

    async fn get_schema(
        &self,
        pipeline: &PipelineId,
        stream: &StreamName,
        version: Option<u32>,
    ) -> Result<SchemaVersion> {
        self.state()?.get_schema(pipeline, stream, version)
    }

    async fn list_schema_versions(
        &self,
        pipeline: &PipelineId,
        stream: &StreamName,
    ) -> Result<Vec<SchemaVersion>> {
        self.state()?.list_schema_versions(pipeline, stream)
    }

    async fn list_decisions(&self, query: &DecisionQuery) -> Result<Page<Decision, DecisionId>> {
        Ok(self.state()?.list_decisions(query))
    }

    async fn decide(&self, decision: DecisionId, decide: Decide) -> Result<Decision> {
        let now = self.clock.now();
        self.state()?.decide(decision, &decide, now)
    }

    async fn pipeline_statuses(
        &self,
        after: Option<&PipelineId>,
        limit: Limit,
    ) -> Result<StatusPage> {
        let now = self.clock.now();
        Ok(self.state()?.pipeline_statuses(after, limit, now))
    }

    async fn events(&self, after: u64, limit: Limit) -> Result<Vec<Event>> {
        Ok(self.state()?.events(after, limit))
    }

    async fn pipeline_events(
        &self,
        pipeline: &PipelineId,
        after: u64,
        limit: Limit,
    ) -> Result<Vec<Event>> {
        Ok(self.state()?.pipeline_events(pipeline, after, limit))
    }

    async fn pipeline_events_before(
        &self,
        pipeline: &PipelineId,
        before: u64,
        limit: Limit,
    ) -> Result<Vec<Event>> {
        Ok(self
            .state()?
            .pipeline_events_before(pipeline, before, limit))
    }

    async fn list_streams(&self, pipeline: &PipelineId) -> Result<Vec<StreamName>> {
        self.state()?.list_streams(pipeline)
    }

    async fn archive_head(&self) -> Result<ArchiveHead> {
        Ok(self.state()?.archive_head())
    }

    async fn import(&self, batch: ImportBatch) -> Result<ImportProgress> {
        self.state()?.import(batch)
    }
}
