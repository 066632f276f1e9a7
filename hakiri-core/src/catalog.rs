//! The port: [`Catalog`], the reconciler snapshot it serves, and the [`CatalogExt`] conveniences.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::archive::{ArchiveHead, ImportBatch, ImportProgress};
use crate::audit::{Actor, Event, Reason};
use crate::cursor::{Cursor, CursorAdvance, CursorHistoryEntry, CursorReset, CursorValue};
use crate::error::Result;
use crate::evolution::{Decide, Decision, Observation, SchemaVersion};
use crate::ids::{DecisionId, Generation, HolderId, PipelineId, ProjectId, RunId, StreamName};
use crate::lease::{Lease, LeaseState};
use crate::page::{Limit, Page};
use crate::pipeline::{PauseChange, Pipeline, PipelineSpec, PutMode};
use crate::run::{BeginRun, FinishRun, Run, RunQuery, Trigger};
use crate::schema::Schema;
use crate::time::Timestamp;

/// Everything the reconciler needs to plan one pipeline, read in one round trip per page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PipelineStatus {
    /// The pipeline.
    pub pipeline: Pipeline,
    /// Its lease state (possibly expired or released), if it was ever leased.
    pub lease: Option<LeaseState>,
    /// Its newest run (the running one, if any: a new run cannot begin while one runs).
    pub last_run: Option<Run>,
    /// Its held schema decisions.
    pub held_decisions: Vec<DecisionId>,
}

/// A page of [`PipelineStatus`], stamped with the catalog clock's time of reading.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusPage {
    /// Statuses in pipeline-id order.
    pub items: Vec<PipelineStatus>,
    /// Where the next page starts.
    pub next: Option<PipelineId>,
    /// The catalog's `now` when the page was read; plan against it, not the local clock.
    pub as_of: Timestamp,
}

/// Filters and keyset position for [`Catalog::list_decisions`]; oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DecisionQuery {
    /// Only this pipeline's decisions.
    pub pipeline: Option<PipelineId>,
    /// Only held (pending) decisions.
    pub held_only: bool,
    /// Only decisions after this one (the previous page's `next`).
    pub after: Option<DecisionId>,
    /// Page size.
    pub limit: Limit,
}

impl DecisionQuery {
    /// Whether `decision` passes the filters (not the keyset position).
    pub fn matches(&self, decision: &Decision) -> bool {
        self.pipeline
            .as_ref()
            .is_none_or(|p| *p == decision.pipeline)
            && (!self.held_only || decision.is_pending())
    }
}

/// A project's catalog: the only way pipelines, leases, runs, cursors and schemas are read and
/// written. Every backend passes the same contract suite (`hakiri-contract`).
///
/// # Contract
/// - A value is bound to one project ([`Catalog::project`]); nothing of another project is
///   visible or writable through it.
/// - Every method is atomic: it happens completely or not at all, and a failed call changes
///   nothing.
/// - Lease-checked writes (`begin_run`, `advance`, `finish_run`, `observe_schema`,
///   `reset_cursor`, `renew`, `release`) verify, in the same atomic step as the write, that the
///   lease's epoch is the pipeline's current one and has not expired by the catalog's clock.
/// - Every mutation appends to the project's event log (lease renewals excepted).
///
/// # Errors
/// Every method may return [`Error::Unavailable`](crate::Error::Unavailable) (retryable) or
/// [`Error::Backend`](crate::Error::Backend); the per-method sections list the rest.
#[async_trait]
pub trait Catalog: Debug + Send + Sync {
    /// The project this catalog is bound to.
    fn project(&self) -> &ProjectId;

    /// Creates or replaces a pipeline's spec.
    ///
    /// # Contract
    /// Creating starts at generation 1; an update that changes the spec bumps the generation by
    /// one; an update with an identical spec changes nothing and returns the stored pipeline.
    ///
    /// # Errors
    /// `AlreadyExists` (create on a taken id), `NotFound` (update of a missing pipeline),
    /// `Conflict` (generation mismatch), `InvalidArgument`.
    async fn put_pipeline(&self, spec: PipelineSpec, mode: PutMode, by: &Actor)
        -> Result<Pipeline>;

    /// Reads a pipeline.
    ///
    /// # Errors
    /// `NotFound`.
    async fn get_pipeline(&self, pipeline: &PipelineId) -> Result<Pipeline>;

    /// Lists pipelines in id order, starting after `after`.
    async fn list_pipelines(
        &self,
        after: Option<&PipelineId>,
        limit: Limit,
    ) -> Result<Page<Pipeline, PipelineId>>;

    /// Pauses or resumes a pipeline. Pausing a paused pipeline, or resuming a running one, changes
    /// nothing.
    ///
    /// # Errors
    /// `NotFound`; `FailedPrecondition` when resuming while schema decisions are held.
    async fn set_paused(
        &self,
        pipeline: &PipelineId,
        change: PauseChange,
        by: &Actor,
    ) -> Result<Pipeline>;

    /// Asks for a `Manual` or `Backfill` run of the pipeline now, outside its schedule; the
    /// reconciler dispatches it on its next tick. The request stays until a run that does what
    /// it asks begins and consumes it ([`crate::RunRequest::satisfied_by`]: a backfill run any
    /// request, a manual run a manual one). Asking again changes nothing.
    ///
    /// # Errors
    /// `NotFound`; `InvalidArgument` for another trigger; `FailedPrecondition` for a disabled
    /// pipeline.
    async fn request_run(
        &self,
        pipeline: &PipelineId,
        trigger: Trigger,
        by: &Actor,
    ) -> Result<Pipeline>;

    /// Deletes a pipeline with its runs, cursors, schemas and decisions. Its events stay.
    ///
    /// # Warning
    /// Re-creating the id starts from empty state; epochs keep increasing, so leases of the old
    /// pipeline stay fenced.
    ///
    /// # Errors
    /// `NotFound`, `Conflict` (generation mismatch), `Leased` (someone holds a live lease).
    async fn delete_pipeline(
        &self,
        pipeline: &PipelineId,
        expected: Generation,
        by: &Actor,
    ) -> Result<()>;

    /// Takes a pipeline's writer lease for `ttl`, with a new, higher epoch.
    ///
    /// # Contract
    /// A `Running` run of an older epoch becomes `Abandoned` in the same step.
    ///
    /// # Errors
    /// `Leased` while a live lease exists (whoever holds it), `NotFound`, `InvalidArgument` (ttl
    /// outside 100 ms..=24 h).
    async fn acquire(
        &self,
        pipeline: &PipelineId,
        holder: &HolderId,
        ttl: Duration,
    ) -> Result<Lease>;

    /// Takes a pipeline's lease even while someone holds it, fencing them. For operators; audited.
    ///
    /// # Errors
    /// `NotFound`, `InvalidArgument`.
    async fn force_acquire(
        &self,
        pipeline: &PipelineId,
        holder: &HolderId,
        ttl: Duration,
        by: &Actor,
        reason: &Reason,
    ) -> Result<Lease>;

    /// Extends a valid lease to `now + ttl`.
    ///
    /// # Errors
    /// `Fenced` (superseded, expired or released), `InvalidArgument`.
    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<Lease>;

    /// Gives a lease up. A run still `Running` under it becomes `Abandoned`.
    ///
    /// # Errors
    /// `Fenced`.
    async fn release(&self, lease: &Lease) -> Result<()>;

    /// Begins a run under `lease`, recording every cursor's value at the start.
    ///
    /// # Errors
    /// `Fenced`, `FailedPrecondition` (a run is already running, or the pipeline is paused),
    /// `InvalidArgument`.
    async fn begin_run(&self, lease: &Lease, begin: BeginRun) -> Result<Run>;

    /// Durably advances one stream's cursor mid-run.
    ///
    /// # Contract
    /// Monotonic cursors only move forwards; an equal value is a no-op that returns the stored
    /// cursor unchanged; opaque cursors accept any new value. Every change appends to the
    /// cursor's history.
    ///
    /// # Errors
    /// `Fenced`, `NotFound` (run), `FailedPrecondition` (run ended), `Conflict` (expected
    /// version), `CursorRegression`, `InvalidArgument`.
    async fn advance(
        &self,
        lease: &Lease,
        run: RunId,
        stream: &StreamName,
        advance: CursorAdvance,
    ) -> Result<Cursor>;

    /// Ends a run: status, stats, final cursors and schema decisions, all or nothing.
    ///
    /// # Errors
    /// As [`Catalog::advance`]; any failing cursor or schema fails the whole finish.
    async fn finish_run(&self, lease: &Lease, run: RunId, finish: FinishRun) -> Result<Run>;

    /// Reads a run.
    ///
    /// # Errors
    /// `NotFound`.
    async fn get_run(&self, run: RunId) -> Result<Run>;

    /// Lists runs newest first, filtered; stable under concurrent inserts (keyset on the id).
    async fn list_runs(&self, query: &RunQuery) -> Result<Page<Run, RunId>>;

    /// Reads a stream's cursor; `None` if it was never written.
    ///
    /// # Errors
    /// `NotFound` (pipeline).
    async fn get_cursor(
        &self,
        pipeline: &PipelineId,
        stream: &StreamName,
    ) -> Result<Option<Cursor>>;

    /// Reads every cursor of a pipeline, in stream order.
    ///
    /// # Errors
    /// `NotFound` (pipeline).
    async fn list_cursors(&self, pipeline: &PipelineId) -> Result<Vec<Cursor>>;

    /// Every stream of a pipeline that has a cursor or a schema version, in name order.
    ///
    /// # Errors
    /// `NotFound` (pipeline).
    async fn list_streams(&self, pipeline: &PipelineId) -> Result<Vec<StreamName>>;

    /// Reads a cursor's history, newest version first, starting below `before`.
    ///
    /// # Errors
    /// `NotFound` (pipeline).
    async fn cursor_history(
        &self,
        pipeline: &PipelineId,
        stream: &StreamName,
        before: Option<u64>,
        limit: Limit,
    ) -> Result<Page<CursorHistoryEntry, u64>>;

    /// An operator's reset or rollback of one cursor, under a lease they hold. May move a
    /// monotonic cursor backwards; appends a new, audited version.
    ///
    /// # Contract
    /// Judged by [`plan_reset`](crate::cursor::plan_reset) in the same atomic step as the write:
    /// switching a monotonic cursor between number and string, and creating the cursor of a
    /// stream that has none, happen only when `reset.allow` says so.
    ///
    /// # Errors
    /// `Fenced`, `NotFound` (cursor or version; a missing cursor without `allow.create`),
    /// `Conflict`, `InvalidArgument` (including a type change without `allow.type_change`).
    async fn reset_cursor(
        &self,
        lease: &Lease,
        stream: &StreamName,
        reset: CursorReset,
    ) -> Result<Cursor>;

    /// Reports the schema a run sees on a stream and returns the verdict.
    ///
    /// # Contract
    /// The first schema becomes version 1. A different schema is diffed, classified and judged by
    /// the pipeline's policy; the decision is recorded. Accepted: a new version. Held: the
    /// pipeline is paused until an operator decides. Re-observing a held schema records nothing.
    ///
    /// # Errors
    /// `Fenced`, `NotFound` (run), `FailedPrecondition` (run ended).
    async fn observe_schema(
        &self,
        lease: &Lease,
        run: RunId,
        stream: &StreamName,
        schema: Schema,
    ) -> Result<Observation>;

    /// Reads a schema version (the current one if `version` is `None`).
    ///
    /// # Errors
    /// `NotFound`.
    async fn get_schema(
        &self,
        pipeline: &PipelineId,
        stream: &StreamName,
        version: Option<u32>,
    ) -> Result<SchemaVersion>;

    /// Every schema version of a stream, oldest first.
    ///
    /// # Errors
    /// `NotFound` (pipeline).
    async fn list_schema_versions(
        &self,
        pipeline: &PipelineId,
        stream: &StreamName,
    ) -> Result<Vec<SchemaVersion>>;

    /// Lists evolution decisions, oldest first.
    async fn list_decisions(&self, query: &DecisionQuery) -> Result<Page<Decision, DecisionId>>;

    /// Resolves a held decision. Accepting appends the proposed schema as a new version; when no
    /// decision of the pipeline stays held, a pause caused by the policy is lifted.
    ///
    /// # Errors
    /// `NotFound`, `Conflict` (no longer held).
    async fn decide(&self, decision: DecisionId, decide: Decide) -> Result<Decision>;

    /// The reconciler's snapshot: one page of pipelines with lease, last run and held decisions.
    async fn pipeline_statuses(
        &self,
        after: Option<&PipelineId>,
        limit: Limit,
    ) -> Result<StatusPage>;

    /// Events with a sequence number greater than `after`, in order, without gaps.
    async fn events(&self, after: u64, limit: Limit) -> Result<Vec<Event>>;

    /// The events of `pipeline` with a sequence number greater than `after`, in order: its slice
    /// of the log, read through an index, so a page costs the same however long the log of the
    /// other pipelines is. Numbers skip the other pipelines' events. A pipeline that never
    /// existed has no events (an empty list, not an error); a deleted one keeps its slice.
    async fn pipeline_events(
        &self,
        pipeline: &PipelineId,
        after: u64,
        limit: Limit,
    ) -> Result<Vec<Event>>;

    /// The `limit` newest events of `pipeline` with a sequence number below `before`, in order
    /// (oldest first): its slice of the log read backwards through the same index, so a page
    /// costs the same however far back it lies. To page back, pass the first event's number as
    /// the next `before`. A pipeline that never existed has no events.
    async fn pipeline_events_before(
        &self,
        pipeline: &PipelineId,
        before: u64,
        limit: Limit,
    ) -> Result<Vec<Event>>;

    /// What an export or an import of the project starts from: its counters, its newest event,
    /// whether it is empty, and an import into it that has not finished.
    async fn archive_head(&self) -> Result<ArchiveHead>;

    /// Applies one batch of an archive ([`crate::archive`]) to the project. For operators moving a
    /// project; the protocol allows it to admins only.
    ///
    /// # Contract
    /// Judged by [`plan_import`](crate::archive::plan_import) in the same atomic step as the
    /// writes: the project must be empty, or hold an unfinished import of the same archive that
    /// stopped where the batch starts. Records are stored as they are — ids, versions,
    /// generations, epochs, sequence numbers and times kept — with what backends derive from
    /// them (a pipeline's running run, held decisions, current cursors); the project's counters
    /// become the archive's; no event is appended. Records are trusted to be in archive order
    /// (the [`ArchiveReader`](crate::archive::ArchiveReader) checks that before an import).
    ///
    /// # Errors
    /// `FailedPrecondition` (see above), `AlreadyExists` (a record's key is taken),
    /// `InvalidArgument`.
    async fn import(&self, batch: ImportBatch) -> Result<ImportProgress>;
}

/// Implements [`Catalog`] for a type that holds a catalog, passing every method on to it: the
/// implementations for `Arc` and `Box` below, and newtypes over a catalog elsewhere (the
/// embedded `SqliteCatalog`). Written once here, so that a method added to the port cannot be
/// forgotten by one of them.
///
/// `forward_catalog!([generics] Type, |self| the inner catalog, borrowed);`, e.g.
/// `forward_catalog!([] Newtype, |self| &self.0);`
#[macro_export]
macro_rules! forward_catalog {
    ([$($generics:tt)*] $ty:ty, |$this:ident| $inner:expr) => {
        #[$crate::__private::async_trait]
        impl<$($generics)*> $crate::Catalog for $ty {
            fn project(&$this) -> &$crate::ProjectId {
                $crate::Catalog::project($inner)
            }
            async fn put_pipeline(&$this, spec: $crate::PipelineSpec, mode: $crate::PutMode, by: &$crate::Actor) -> $crate::Result<$crate::Pipeline> {
                $crate::Catalog::put_pipeline($inner, spec, mode, by).await
            }
            async fn get_pipeline(&$this, pipeline: &$crate::PipelineId) -> $crate::Result<$crate::Pipeline> {
                $crate::Catalog::get_pipeline($inner, pipeline).await
            }
            async fn list_pipelines(&$this, after: Option<&$crate::PipelineId>, limit: $crate::Limit) -> $crate::Result<$crate::Page<$crate::Pipeline, $crate::PipelineId>> {
                $crate::Catalog::list_pipelines($inner, after, limit).await
            }
            async fn set_paused(&$this, pipeline: &$crate::PipelineId, change: $crate::PauseChange, by: &$crate::Actor) -> $crate::Result<$crate::Pipeline> {
                $crate::Catalog::set_paused($inner, pipeline, change, by).await
            }
            async fn delete_pipeline(&$this, pipeline: &$crate::PipelineId, expected: $crate::Generation, by: &$crate::Actor) -> $crate::Result<()> {
                $crate::Catalog::delete_pipeline($inner, pipeline, expected, by).await
            }
            async fn request_run(&$this, pipeline: &$crate::PipelineId, trigger: $crate::Trigger, by: &$crate::Actor) -> $crate::Result<$crate::Pipeline> {
                $crate::Catalog::request_run($inner, pipeline, trigger, by).await
            }
            async fn acquire(&$this, pipeline: &$crate::PipelineId, holder: &$crate::HolderId, ttl: ::std::time::Duration) -> $crate::Result<$crate::Lease> {
                $crate::Catalog::acquire($inner, pipeline, holder, ttl).await
            }
            async fn force_acquire(&$this, pipeline: &$crate::PipelineId, holder: &$crate::HolderId, ttl: ::std::time::Duration, by: &$crate::Actor, reason: &$crate::Reason) -> $crate::Result<$crate::Lease> {
                $crate::Catalog::force_acquire($inner, pipeline, holder, ttl, by, reason).await
            }
            async fn renew(&$this, lease: &$crate::Lease, ttl: ::std::time::Duration) -> $crate::Result<$crate::Lease> {
                $crate::Catalog::renew($inner, lease, ttl).await
            }
            async fn release(&$this, lease: &$crate::Lease) -> $crate::Result<()> {
                $crate::Catalog::release($inner, lease).await
            }
            async fn begin_run(&$this, lease: &$crate::Lease, begin: $crate::BeginRun) -> $crate::Result<$crate::Run> {
                $crate::Catalog::begin_run($inner, lease, begin).await
            }
            async fn advance(&$this, lease: &$crate::Lease, run: $crate::RunId, stream: &$crate::StreamName, advance: $crate::CursorAdvance) -> $crate::Result<$crate::Cursor> {
                $crate::Catalog::advance($inner, lease, run, stream, advance).await
            }
            async fn finish_run(&$this, lease: &$crate::Lease, run: $crate::RunId, finish: $crate::FinishRun) -> $crate::Result<$crate::Run> {
                $crate::Catalog::finish_run($inner, lease, run, finish).await
            }
            async fn get_run(&$this, run: $crate::RunId) -> $crate::Result<$crate::Run> {
                $crate::Catalog::get_run($inner, run).await
            }
            async fn list_runs(&$this, query: &$crate::RunQuery) -> $crate::Result<$crate::Page<$crate::Run, $crate::RunId>> {
                $crate::Catalog::list_runs($inner, query).await
            }
            async fn get_cursor(&$this, pipeline: &$crate::PipelineId, stream: &$crate::StreamName) -> $crate::Result<Option<$crate::Cursor>> {
                $crate::Catalog::get_cursor($inner, pipeline, stream).await
            }
            async fn list_cursors(&$this, pipeline: &$crate::PipelineId) -> $crate::Result<Vec<$crate::Cursor>> {
                $crate::Catalog::list_cursors($inner, pipeline).await
            }
            async fn cursor_history(&$this, pipeline: &$crate::PipelineId, stream: &$crate::StreamName, before: Option<u64>, limit: $crate::Limit) -> $crate::Result<$crate::Page<$crate::CursorHistoryEntry, u64>> {
                $crate::Catalog::cursor_history($inner, pipeline, stream, before, limit).await
            }
            async fn reset_cursor(&$this, lease: &$crate::Lease, stream: &$crate::StreamName, reset: $crate::CursorReset) -> $crate::Result<$crate::Cursor> {
                $crate::Catalog::reset_cursor($inner, lease, stream, reset).await
            }
            async fn observe_schema(&$this, lease: &$crate::Lease, run: $crate::RunId, stream: &$crate::StreamName, schema: $crate::Schema) -> $crate::Result<$crate::Observation> {
                $crate::Catalog::observe_schema($inner, lease, run, stream, schema).await
            }
            async fn get_schema(&$this, pipeline: &$crate::PipelineId, stream: &$crate::StreamName, version: Option<u32>) -> $crate::Result<$crate::SchemaVersion> {
                $crate::Catalog::get_schema($inner, pipeline, stream, version).await
            }
            async fn list_schema_versions(&$this, pipeline: &$crate::PipelineId, stream: &$crate::StreamName) -> $crate::Result<Vec<$crate::SchemaVersion>> {
                $crate::Catalog::list_schema_versions($inner, pipeline, stream).await
            }
            async fn list_decisions(&$this, query: &$crate::DecisionQuery) -> $crate::Result<$crate::Page<$crate::Decision, $crate::DecisionId>> {
                $crate::Catalog::list_decisions($inner, query).await
            }
            async fn decide(&$this, decision: $crate::DecisionId, decide: $crate::Decide) -> $crate::Result<$crate::Decision> {
                $crate::Catalog::decide($inner, decision, decide).await
            }
            async fn pipeline_statuses(&$this, after: Option<&$crate::PipelineId>, limit: $crate::Limit) -> $crate::Result<$crate::StatusPage> {
                $crate::Catalog::pipeline_statuses($inner, after, limit).await
            }
            async fn events(&$this, after: u64, limit: $crate::Limit) -> $crate::Result<Vec<$crate::Event>> {
                $crate::Catalog::events($inner, after, limit).await
            }
            async fn pipeline_events(&$this, pipeline: &$crate::PipelineId, after: u64, limit: $crate::Limit) -> $crate::Result<Vec<$crate::Event>> {
                $crate::Catalog::pipeline_events($inner, pipeline, after, limit).await
            }
            async fn pipeline_events_before(&$this, pipeline: &$crate::PipelineId, before: u64, limit: $crate::Limit) -> $crate::Result<Vec<$crate::Event>> {
                $crate::Catalog::pipeline_events_before($inner, pipeline, before, limit).await
            }
            async fn list_streams(&$this, pipeline: &$crate::PipelineId) -> $crate::Result<Vec<$crate::StreamName>> {
                $crate::Catalog::list_streams($inner, pipeline).await
            }
            async fn archive_head(&$this) -> $crate::Result<$crate::archive::ArchiveHead> {
                $crate::Catalog::archive_head($inner).await
            }
            async fn import(&$this, batch: $crate::archive::ImportBatch) -> $crate::Result<$crate::archive::ImportProgress> {
                $crate::Catalog::import($inner, batch).await
            }
        }
    };
}

forward_catalog!([T: Catalog + ?Sized] Arc<T>, |self| &**self);
forward_catalog!([T: Catalog + ?Sized] Box<T>, |self| &**self);

/// Conveniences over any [`Catalog`]; implemented for every catalog, never by hand.
#[async_trait]
pub trait CatalogExt: Catalog {
    /// Creates a pipeline (fails with `AlreadyExists` if the id is taken).
    async fn create_pipeline(&self, spec: PipelineSpec, by: &Actor) -> Result<Pipeline> {
        self.put_pipeline(spec, PutMode::Create, by).await
    }

    /// Advances a cursor to `value`, guarded by the lease only.
    async fn advance_to(
        &self,
        lease: &Lease,
        run: RunId,
        stream: &StreamName,
        value: CursorValue,
    ) -> Result<Cursor> {
        self.advance(lease, run, stream, CursorAdvance::to(value))
            .await
    }

    /// Every pipeline, following pages to the end.
    async fn all_pipelines(&self) -> Result<Vec<Pipeline>> {
        let mut all = Vec::new();
        let mut after: Option<PipelineId> = None;
        loop {
            let page = self.list_pipelines(after.as_ref(), Limit::MAX).await?;
            all.extend(page.items);
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(all),
            }
        }
    }

    /// Every run matching `query`'s filters, newest first, following pages to the end (from
    /// `query.before`, in pages of `query.limit`).
    async fn all_runs(&self, query: &RunQuery) -> Result<Vec<Run>> {
        let mut runs = Vec::new();
        let mut query = query.clone();
        loop {
            let page = self.list_runs(&query).await?;
            runs.extend(page.items);
            match page.next {
                Some(next) => query = query.before(next),
                None => return Ok(runs),
            }
        }
    }

    /// Every pipeline status, following pages to the end; `as_of` is the first page's.
    async fn all_statuses(&self) -> Result<StatusPage> {
        let mut first = self.pipeline_statuses(None, Limit::MAX).await?;
        while let Some(after) = first.next.take() {
            let page = self.pipeline_statuses(Some(&after), Limit::MAX).await?;
            first.items.extend(page.items);
            first.next = page.next;
        }
        Ok(first)
    }

    /// The `limit` events just before `before`, oldest first: of `pipeline`'s slice (one backward
    /// read), or of the whole log, which is numbered without gaps, so its page is the one after
    /// `before - limit - 1`, with `before` taken no further than just past its last event.
    async fn events_before(
        &self,
        pipeline: Option<&PipelineId>,
        before: u64,
        limit: Limit,
    ) -> Result<Vec<Event>> {
        if let Some(pipeline) = pipeline {
            return self.pipeline_events_before(pipeline, before, limit).await;
        }
        let last = self.tail_after(None, 0).await?;
        let before = before.min(last.saturating_add(1));
        let after = before.saturating_sub(u64::from(limit.get()) + 1);
        let events = self.events(after, limit).await?;
        Ok(events.into_iter().filter(|e| e.seq < before).collect())
    }

    /// The sequence number after which the last `n` events begin — of `pipeline`'s slice, or of
    /// the whole log — so that reading from it gives the tail (`n` is capped at
    /// `Limit::MAX - 1`). A pipeline's is one backward read: the number of its `n + 1`-th newest
    /// event. The whole log's is found by searching with one-page reads, O(log of the log's
    /// length) of them.
    async fn tail_after(&self, pipeline: Option<&PipelineId>, n: u64) -> Result<u64> {
        let n = n.min(u64::from(Limit::MAX.get()) - 1);
        let probe = Limit::new(u32::try_from(n + 1).unwrap_or(Limit::MAX.get()))?;
        if let Some(pipeline) = pipeline {
            let newest = self
                .pipeline_events_before(pipeline, u64::MAX, probe)
                .await?;
            return Ok(match newest.first() {
                Some(first) if newest.len() as u64 > n => first.seq,
                _ => 0,
            });
        }
        // How many events (at most n + 1) follow `after`.
        let following = |after: u64| async move {
            Ok::<_, crate::Error>(self.events(after, probe).await?.len() as u64)
        };
        // The smallest `after` followed by at most n events: past the end, then halved back.
        let mut high = 1u64;
        while following(high).await? > n {
            high = high.saturating_mul(2);
        }
        let mut low = 0u64;
        while low < high {
            let middle = low + (high - low) / 2;
            if following(middle).await? > n {
                low = middle + 1;
            } else {
                high = middle;
            }
        }
        Ok(low)
    }

    /// A pipeline's held decisions.
    async fn held_decisions(&self, pipeline: &PipelineId) -> Result<Vec<Decision>> {
        let query = DecisionQuery {
            pipeline: Some(pipeline.clone()),
            held_only: true,
            after: None,
            limit: Limit::MAX,
        };
        Ok(self.list_decisions(&query).await?.items)
    }
}

impl<C: Catalog + ?Sized> CatalogExt for C {}
