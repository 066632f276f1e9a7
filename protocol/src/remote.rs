//! The `Catalog` port over any transport that carries a [`Request`] and returns a [`Response`]:
//! written once for every client of the protocol (the embedded host's channel to its writer
//! thread, the HTTP client, a test's in-process loopback).

use std::fmt::Debug;
use std::time::Duration;

use async_trait::async_trait;
use hakiri_core::archive::{ArchiveHead, ImportBatch, ImportProgress};
use hakiri_core::{
    Actor, BeginRun, Catalog, Cursor, CursorAdvance, CursorHistoryEntry, CursorReset, Decide,
    Decision, DecisionId, DecisionQuery, Error, Event, FinishRun, Generation, HolderId, Lease,
    Limit, Observation, Page, PauseChange, Pipeline, PipelineId, PipelineSpec, ProjectId, PutMode,
    Reason, Result, Run, RunId, RunQuery, Schema, SchemaVersion, StatusPage, StreamName, Trigger,
};

use crate::wire::{ttl_ms, Request, Response};

/// Carries one request to a catalog store and brings back its result.
#[async_trait]
pub trait Transport: Debug + Send + Sync {
    /// Sends `request`; the store runs it atomically.
    ///
    /// # Errors
    /// The store's error, or `Unavailable` when the store cannot be reached.
    async fn call(&self, request: Request) -> Result<Response>;
}

/// A `Catalog` for one project, reached through a [`Transport`].
#[derive(Debug)]
pub struct RemoteCatalog<T> {
    project: ProjectId,
    transport: T,
}

impl<T: Transport> RemoteCatalog<T> {
    /// A catalog of `project` over `transport`.
    pub fn new(project: ProjectId, transport: T) -> Self {
        Self { project, transport }
    }

    /// The transport.
    pub fn transport(&self) -> &T {
        &self.transport
    }
}

fn unexpected(response: &Response) -> Error {
    Error::Backend(format!(
        "the catalog answered with an unexpected {response:?}"
    ))
}

/// Calls the transport and unpacks the one response variant the request can produce.
macro_rules! call {
    ($self:ident, $request:expr, $variant:ident) => {
        match $self.transport.call($request).await? {
            Response::$variant(value) => Ok(value),
            other => Err(unexpected(&other)),
        }
    };
    ($self:ident, $request:expr) => {
        match $self.transport.call($request).await? {
            Response::Unit => Ok(()),
            other => Err(unexpected(&other)),
        }
    };
}

#[async_trait]
impl<T: Transport> Catalog for RemoteCatalog<T> {
    fn project(&self) -> &ProjectId {
        &self.project
    }

    async fn put_pipeline(
        &self,
        spec: PipelineSpec,
        mode: PutMode,
        by: &Actor,
    ) -> Result<Pipeline> {
        call!(
            self,
            Request::PutPipeline {
                spec,
                mode,
                by: by.clone()
            },
            Pipeline
        )
    }

    async fn get_pipeline(&self, pipeline: &PipelineId) -> Result<Pipeline> {
        call!(
            self,
            Request::GetPipeline {
                pipeline: pipeline.clone()
            },
            Pipeline
        )
    }

    async fn list_pipelines(
        &self,
        after: Option<&PipelineId>,
        limit: Limit,
    ) -> Result<Page<Pipeline, PipelineId>> {
        call!(
            self,
            Request::ListPipelines {
                after: after.cloned(),
                limit
            },
            Pipelines
        )
    }

    async fn set_paused(
        &self,
        pipeline: &PipelineId,
        change: PauseChange,
        by: &Actor,
    ) -> Result<Pipeline> {
        call!(
            self,
            Request::SetPaused {
                pipeline: pipeline.clone(),
                change,
                by: by.clone()
            },
            Pipeline
        )
    }

    async fn request_run(
        &self,
        pipeline: &PipelineId,
        trigger: Trigger,
        by: &Actor,
    ) -> Result<Pipeline> {
        let request = Request::RequestRun {
            pipeline: pipeline.clone(),
            trigger,
            by: by.clone(),
        };
        call!(self, request, Pipeline)
    }

    async fn delete_pipeline(
        &self,
        pipeline: &PipelineId,
        expected: Generation,
        by: &Actor,
    ) -> Result<()> {
        call!(
            self,
            Request::DeletePipeline {
                pipeline: pipeline.clone(),
                expected,
                by: by.clone()
            }
        )
    }

    async fn acquire(
        &self,
        pipeline: &PipelineId,
        holder: &HolderId,
        ttl: Duration,
    ) -> Result<Lease> {
        let request = Request::Acquire {
            pipeline: pipeline.clone(),
            holder: holder.clone(),
            ttl_ms: ttl_ms(ttl),
        };
        call!(self, request, Lease)
    }

    async fn force_acquire(
        &self,
        pipeline: &PipelineId,
        holder: &HolderId,
        ttl: Duration,
        by: &Actor,
        reason: &Reason,
    ) -> Result<Lease> {
        let request = Request::ForceAcquire {
            pipeline: pipeline.clone(),
            holder: holder.clone(),
            ttl_ms: ttl_ms(ttl),
            by: by.clone(),
            reason: reason.clone(),
        };
        call!(self, request, Lease)
    }

    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<Lease> {
        call!(
            self,
            Request::Renew {
                lease: lease.clone(),
                ttl_ms: ttl_ms(ttl)
            },
            Lease
        )
    }

    async fn release(&self, lease: &Lease) -> Result<()> {
        call!(
            self,
            Request::Release {
                lease: lease.clone()
            }
        )
    }

    async fn begin_run(&self, lease: &Lease, begin: BeginRun) -> Result<Run> {
        call!(
            self,
            Request::BeginRun {
                lease: lease.clone(),
                begin
            },
            Run
        )
    }

    async fn advance(
        &self,
        lease: &Lease,
        run: RunId,
        stream: &StreamName,
        advance: CursorAdvance,
    ) -> Result<Cursor> {
        let request = Request::Advance {
            lease: lease.clone(),
            run,
            stream: stream.clone(),
            advance,
        };
        call!(self, request, Cursor)
    }

    async fn finish_run(&self, lease: &Lease, run: RunId, finish: FinishRun) -> Result<Run> {
        call!(
            self,
            Request::FinishRun {
                lease: lease.clone(),
                run,
                finish
            },
            Run
        )
    }

    async fn get_run(&self, run: RunId) -> Result<Run> {
        call!(self, Request::GetRun { run }, Run)
    }

    async fn list_runs(&self, query: &RunQuery) -> Result<Page<Run, RunId>> {
        call!(
            self,
            Request::ListRuns {
                query: query.clone()
            },
            Runs
        )
    }

    async fn get_cursor(
        &self,
        pipeline: &PipelineId,
        stream: &StreamName,
    ) -> Result<Option<Cursor>> {
        call!(
            self,
            Request::GetCursor {
                pipeline: pipeline.clone(),
                stream: stream.clone()
            },
            MaybeCursor
        )
    }

    async fn list_cursors(&self, pipeline: &PipelineId) -> Result<Vec<Cursor>> {
        call!(
            self,
            Request::ListCursors {
                pipeline: pipeline.clone()
            },
            Cursors
        )
    }

    async fn cursor_history(
        &self,
        pipeline: &PipelineId,
        stream: &StreamName,
        before: Option<u64>,
        limit: Limit,
    ) -> Result<Page<CursorHistoryEntry, u64>> {
        let request = Request::CursorHistory {
            pipeline: pipeline.clone(),
            stream: stream.clone(),
            before,
            limit,
        };
        call!(self, request, CursorHistory)
    }

    async fn reset_cursor(
        &self,
        lease: &Lease,
        stream: &StreamName,
        reset: CursorReset,
    ) -> Result<Cursor> {
        call!(
            self,
            Request::ResetCursor {
                lease: lease.clone(),
                stream: stream.clone(),
                reset
            },
            Cursor
        )
    }

    async fn observe_schema(
        &self,
        lease: &Lease,
        run: RunId,
        stream: &StreamName,
        schema: Schema,
    ) -> Result<Observation> {
        let request = Request::ObserveSchema {
            lease: lease.clone(),
            run,
            stream: stream.clone(),
            schema,
        };
        call!(self, request, Observation)
    }

    async fn get_schema(
        &self,
        pipeline: &PipelineId,
        stream: &StreamName,
        version: Option<u32>,
    ) -> Result<SchemaVersion> {
        let request = Request::GetSchema {
            pipeline: pipeline.clone(),
            stream: stream.clone(),
            version,
        };
        call!(self, request, SchemaVersion)
    }

    async fn list_schema_versions(
        &self,
        pipeline: &PipelineId,
        stream: &StreamName,
    ) -> Result<Vec<SchemaVersion>> {
        let request = Request::ListSchemaVersions {
            pipeline: pipeline.clone(),
            stream: stream.clone(),
        };
        call!(self, request, SchemaVersions)
    }

    async fn list_decisions(&self, query: &DecisionQuery) -> Result<Page<Decision, DecisionId>> {
        call!(
            self,
            Request::ListDecisions {
                query: query.clone()
            },
            Decisions
        )
    }

    async fn decide(&self, decision: DecisionId, decide: Decide) -> Result<Decision> {
        call!(self, Request::Decide { decision, decide }, Decision)
    }

    async fn pipeline_statuses(
        &self,
        after: Option<&PipelineId>,
        limit: Limit,
    ) -> Result<StatusPage> {
        call!(
            self,
            Request::PipelineStatuses {
                after: after.cloned(),
                limit
            },
            Statuses
        )
    }

    async fn events(&self, after: u64, limit: Limit) -> Result<Vec<Event>> {
        call!(self, Request::Events { after, limit }, Events)
    }

    async fn pipeline_events(
        &self,
        pipeline: &PipelineId,
        after: u64,
        limit: Limit,
    ) -> Result<Vec<Event>> {
        let request = Request::PipelineEvents {
            pipeline: pipeline.clone(),
            after,
            limit,
        };
        call!(self, request, Events)
    }

    async fn pipeline_events_before(
        &self,
        pipeline: &PipelineId,
        before: u64,
        limit: Limit,
    ) -> Result<Vec<Event>> {
        let request = Request::PipelineEventsBefore {
            pipeline: pipeline.clone(),
            before,
            limit,
        };
        call!(self, request, Events)
    }

    async fn list_streams(&self, pipeline: &PipelineId) -> Result<Vec<StreamName>> {
        let request = Request::ListStreams {
            pipeline: pipeline.clone(),
        };
        call!(self, request, Streams)
    }

    async fn archive_head(&self) -> Result<ArchiveHead> {
        call!(self, Request::ArchiveHead, ArchiveHead)
    }

    async fn import(&self, batch: ImportBatch) -> Result<ImportProgress> {
        call!(self, Request::Import { batch }, ImportProgress)
    }
}
