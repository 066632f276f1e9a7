//! The catalog's wire protocol: one [`Request`] per `Catalog` method and one [`Response`] shape
//! per result, shared by every host and client.
//!
//! A server (the Worker) decodes requests from JSON; the embedded host receives them over a
//! channel; [`RemoteCatalog`](crate::RemoteCatalog) produces them. Errors travel as
//! [`hakiri_core::Error`], which serialises with its variant, so a `Fenced` raised by the store is
//! a `Fenced` for the caller.

use std::time::Duration;

use hakiri_core::archive::{ArchiveHead, ImportBatch, ImportProgress};
use hakiri_core::{
    Actor, BeginRun, Cursor, CursorAdvance, CursorHistoryEntry, CursorReset, Decide, Decision,
    DecisionId, DecisionQuery, Error, Event, FinishRun, Generation, HolderId, Lease, Limit,
    Observation, Page, PauseChange, Pipeline, PipelineId, PipelineSpec, PutMode, Reason, Result,
    Run, RunId, RunQuery, Schema, SchemaVersion, StatusPage, StreamName, Trigger,
};
use serde::{Deserialize, Serialize};

use crate::auth::Access;

/// The protocol version; requests and responses carry it in the URL (`/v1/…`).
pub const VERSION: u32 = 1;

/// One catalog operation with its arguments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
#[allow(missing_docs)] // Each variant is the `Catalog` method of the same name.
pub enum Request {
    PutPipeline {
        spec: PipelineSpec,
        mode: PutMode,
        by: Actor,
    },
    GetPipeline {
        pipeline: PipelineId,
    },
    ListPipelines {
        after: Option<PipelineId>,
        limit: Limit,
    },
    SetPaused {
        pipeline: PipelineId,
        change: PauseChange,
        by: Actor,
    },
    DeletePipeline {
        pipeline: PipelineId,
        expected: Generation,
        by: Actor,
    },
    RequestRun {
        pipeline: PipelineId,
        trigger: Trigger,
        by: Actor,
    },
    Acquire {
        pipeline: PipelineId,
        holder: HolderId,
        ttl_ms: u64,
    },
    ForceAcquire {
        pipeline: PipelineId,
        holder: HolderId,
        ttl_ms: u64,
        by: Actor,
        reason: Reason,
    },
    Renew {
        lease: Lease,
        ttl_ms: u64,
    },
    Release {
        lease: Lease,
    },
    BeginRun {
        lease: Lease,
        begin: BeginRun,
    },
    /// A cursor advance (`Catalog::advance`); requests of older clients name it `checkpoint`.
    #[serde(alias = "checkpoint")]
    Advance {
        lease: Lease,
        run: RunId,
        stream: StreamName,
        advance: CursorAdvance,
    },
    FinishRun {
        lease: Lease,
        run: RunId,
        finish: FinishRun,
    },
    GetRun {
        run: RunId,
    },
    ListRuns {
        query: RunQuery,
    },
    GetCursor {
        pipeline: PipelineId,
        stream: StreamName,
    },
    ListCursors {
        pipeline: PipelineId,
    },
    CursorHistory {
        pipeline: PipelineId,
        stream: StreamName,
        before: Option<u64>,
        limit: Limit,
    },
    ResetCursor {
        lease: Lease,
        stream: StreamName,
        reset: CursorReset,
    },
    ObserveSchema {
        lease: Lease,
        run: RunId,
        stream: StreamName,
        schema: Schema,
    },
    GetSchema {
        pipeline: PipelineId,
        stream: StreamName,
        version: Option<u32>,
    },
    ListSchemaVersions {
        pipeline: PipelineId,
        stream: StreamName,
    },
    ListDecisions {
        query: DecisionQuery,
    },
    Decide {
        decision: DecisionId,
        decide: Decide,
    },
    PipelineStatuses {
        after: Option<PipelineId>,
        limit: Limit,
    },
    Events {
        after: u64,
        limit: Limit,
    },
    PipelineEvents {
        pipeline: PipelineId,
        after: u64,
        limit: Limit,
    },
    PipelineEventsBefore {
        pipeline: PipelineId,
        before: u64,
        limit: Limit,
    },
    ListStreams {
        pipeline: PipelineId,
    },
    ArchiveHead,
    Import {
        batch: ImportBatch,
    },
}

impl Request {
    /// The access this request needs.
    pub fn access(&self) -> Access {
        use Request::*;
        match self {
            GetPipeline { .. }
            | ListPipelines { .. }
            | GetRun { .. }
            | ListRuns { .. }
            | GetCursor { .. }
            | ListCursors { .. }
            | CursorHistory { .. }
            | GetSchema { .. }
            | ListSchemaVersions { .. }
            | ListDecisions { .. }
            | PipelineStatuses { .. }
            | Events { .. }
            | PipelineEvents { .. }
            | PipelineEventsBefore { .. }
            | ListStreams { .. }
            | ArchiveHead => Access::Read,
            Acquire { .. }
            | Renew { .. }
            | Release { .. }
            | BeginRun { .. }
            | Advance { .. }
            | FinishRun { .. }
            | ObserveSchema { .. } => Access::Write,
            PutPipeline { .. }
            | SetPaused { .. }
            | DeletePipeline { .. }
            | RequestRun { .. }
            | ForceAcquire { .. }
            | ResetCursor { .. }
            | Decide { .. }
            | Import { .. } => Access::Admin,
        }
    }

    /// Whether sending the request twice has the effect of sending it once, so a client may
    /// retry it after a transport failure without knowing whether the first attempt landed.
    pub fn is_idempotent(&self) -> bool {
        self.access() == Access::Read
    }

    /// The actor a request that acts as an operator claims (its `by`), or `None` for a request
    /// that does not: only [`Access::Admin`] requests carry one. A server replaces the claim with
    /// the token's grant ([`Request::stamped_by`]).
    pub fn actor(&self) -> Option<&Actor> {
        use Request::*;
        match self {
            PutPipeline { by, .. }
            | SetPaused { by, .. }
            | DeletePipeline { by, .. }
            | RequestRun { by, .. }
            | ForceAcquire { by, .. } => Some(by),
            ResetCursor { reset, .. } => Some(&reset.by),
            Decide { decide, .. } => Some(&decide.by),
            _ => None,
        }
    }

    /// As [`Request::actor`], to replace it.
    pub(crate) fn actor_mut(&mut self) -> Option<&mut Actor> {
        use Request::*;
        match self {
            PutPipeline { by, .. }
            | SetPaused { by, .. }
            | DeletePipeline { by, .. }
            | RequestRun { by, .. }
            | ForceAcquire { by, .. } => Some(by),
            ResetCursor { reset, .. } => Some(&mut reset.by),
            Decide { decide, .. } => Some(&mut decide.by),
            _ => None,
        }
    }
}

/// A lease ttl in whole milliseconds, as the protocol carries it.
pub fn ttl_ms(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX)
}

/// The result of a [`Request`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "snake_case")]
#[allow(missing_docs)] // Each variant is named after the type it carries.
pub enum Response {
    Unit,
    Pipeline(Pipeline),
    Pipelines(Page<Pipeline, PipelineId>),
    Lease(Lease),
    Run(Run),
    Runs(Page<Run, RunId>),
    Cursor(Cursor),
    MaybeCursor(Option<Cursor>),
    Cursors(Vec<Cursor>),
    CursorHistory(Page<CursorHistoryEntry, u64>),
    Observation(Observation),
    SchemaVersion(SchemaVersion),
    SchemaVersions(Vec<SchemaVersion>),
    Decisions(Page<Decision, DecisionId>),
    Decision(Decision),
    Statuses(StatusPage),
    Events(Vec<Event>),
    Streams(Vec<StreamName>),
    ArchiveHead(ArchiveHead),
    ImportProgress(ImportProgress),
}

/// The JSON body of every answer: the result or the catalog error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
// A reply lives only between decoding and use; boxing would only add an allocation.
#[allow(clippy::large_enum_variant)]
pub enum Reply {
    /// The operation succeeded.
    Ok(Response),
    /// The operation failed; nothing changed.
    Err(Error),
}

impl From<Result<Response>> for Reply {
    fn from(r: Result<Response>) -> Self {
        match r {
            Ok(response) => Reply::Ok(response),
            Err(error) => Reply::Err(error),
        }
    }
}

impl From<Reply> for Result<Response> {
    fn from(r: Reply) -> Self {
        match r {
            Reply::Ok(response) => Ok(response),
            Reply::Err(error) => Err(error),
        }
    }
}

/// The HTTP status that goes with an error, on every server of the protocol: the body is the
/// contract, the status a summary of it for proxies, logs and clients that read only the status.
pub fn status_of(error: &Error) -> u16 {
    match error {
        Error::InvalidArgument(_) => 400,
        Error::Unauthenticated(_) => 401,
        Error::PermissionDenied(_) => 403,
        Error::NotFound(_) => 404,
        // The entity's state refused the operation: a conflict with the current state.
        Error::AlreadyExists(_)
        | Error::Conflict { .. }
        | Error::Fenced { .. }
        | Error::Leased { .. }
        | Error::CursorRegression { .. }
        | Error::FailedPrecondition(_) => 409,
        Error::Unavailable(_) => 503,
        _ => 500,
    }
}

/// Decodes a request body.
///
/// # Errors
/// [`Error::InvalidArgument`] describing what is wrong; never panics, whatever the bytes.
pub fn decode_request(body: &[u8]) -> Result<Request> {
    serde_json::from_slice(body).map_err(|e| Error::invalid(format!("malformed request: {e}")))
}

/// Decodes a reply body.
///
/// # Errors
/// [`Error::Backend`] if the bytes are not a reply; never panics, whatever the bytes.
pub fn decode_reply(body: &[u8]) -> Result<Response> {
    serde_json::from_slice::<Reply>(body)
        .map_err(|e| Error::Backend(format!("malformed reply from the catalog: {e}")))?
        .into()
}

/// Encodes a value as JSON bytes.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Protocol types serialise infallibly: string keys only, no non-finite floats.
    serde_json::to_vec(value).unwrap_or_else(|e| {
        serde_json::to_vec(&Reply::Err(Error::Backend(format!("cannot encode: {e}"))))
            .unwrap_or_default()
    })
}
