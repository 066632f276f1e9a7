//! The one error type of the `Catalog` port.
//!
//! Variants are semantic (what went wrong for the caller), not per-entity or per-backend: the
//! entity rides along in [`Entity`]. Adapters convert their own errors into these exactly once;
//! no `sqlx::Error`, `worker::Error` or `JsValue` crosses the port. The enum is serialisable so
//! that a remote catalog can return the same variant the server produced.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ids::{DecisionId, Epoch, HolderId, PipelineId, RunId, StreamName};
use crate::time::Timestamp;

/// `Result` with the catalog's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What a [`Error::NotFound`], [`Error::AlreadyExists`] or [`Error::Conflict`] is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "entity", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Entity {
    /// A pipeline.
    Pipeline {
        /// Its id.
        pipeline: PipelineId,
    },
    /// A run.
    Run {
        /// Its id.
        run: RunId,
    },
    /// The cursor of one stream.
    Cursor {
        /// Its pipeline.
        pipeline: PipelineId,
        /// Its stream.
        stream: StreamName,
    },
    /// One version in a cursor's history.
    CursorVersion {
        /// Its pipeline.
        pipeline: PipelineId,
        /// Its stream.
        stream: StreamName,
        /// The version.
        version: u64,
    },
    /// A stream's schema (a given version, or the current one when `version` is `None`).
    Schema {
        /// Its pipeline.
        pipeline: PipelineId,
        /// Its stream.
        stream: StreamName,
        /// The version asked for.
        version: Option<u32>,
    },
    /// An evolution decision.
    Decision {
        /// Its id.
        decision: DecisionId,
    },
}

impl fmt::Display for Entity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Entity::Pipeline { pipeline } => write!(f, "pipeline {pipeline}"),
            Entity::Run { run } => write!(f, "run {run}"),
            Entity::Cursor { pipeline, stream } => write!(f, "cursor {pipeline}/{stream}"),
            Entity::CursorVersion {
                pipeline,
                stream,
                version,
            } => write!(f, "version {version} of cursor {pipeline}/{stream}"),
            Entity::Schema {
                pipeline,
                stream,
                version: Some(v),
            } => write!(f, "schema version {v} of {pipeline}/{stream}"),
            Entity::Schema {
                pipeline,
                stream,
                version: None,
            } => write!(f, "schema of {pipeline}/{stream}"),
            Entity::Decision { decision } => write!(f, "decision {decision}"),
        }
    }
}

/// Why a lease-carrying write was fenced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
#[non_exhaustive]
pub enum FenceReason {
    /// Someone acquired the pipeline after this lease; `current` is their epoch.
    Superseded {
        /// The pipeline's current epoch.
        current: Epoch,
    },
    /// The lease expired at `at` (by the catalog's clock) and was not renewed in time.
    Expired {
        /// When it expired.
        at: Timestamp,
    },
    /// The holder released the lease.
    Released,
    /// The pipeline has never been leased, or was deleted.
    NoLease,
}

impl fmt::Display for FenceReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FenceReason::Superseded { current } => write!(f, "superseded by epoch {current}"),
            FenceReason::Expired { at } => write!(f, "expired at {at}"),
            FenceReason::Released => f.write_str("released"),
            FenceReason::NoLease => f.write_str("the pipeline holds no lease"),
        }
    }
}

/// Everything that can go wrong behind the `Catalog` port.
#[derive(Debug, Clone, PartialEq, thiserror::Error, Serialize, Deserialize)]
#[serde(tag = "code", content = "detail", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Error {
    /// The entity does not exist in this project.
    #[error("{0} not found")]
    NotFound(Entity),

    /// The entity exists already.
    #[error("{0} already exists")]
    AlreadyExists(Entity),

    /// A compare-and-set lost: the entity changed since the caller read it.
    ///
    /// Retryable: re-read, re-apply, try again.
    #[error("conflict on {entity}: expected {expected}, found {actual}; re-read it and retry")]
    Conflict {
        /// What changed underneath.
        entity: Entity,
        /// The version (or state) the caller expected.
        expected: String,
        /// The version (or state) found.
        actual: String,
    },

    /// The write carried a lease that is no longer valid; nothing was changed.
    ///
    /// Not retryable: the caller is a zombie writer and must stop working on this pipeline.
    #[error("fenced: lease epoch {epoch} on pipeline {pipeline} is no longer valid ({reason}); stop writing to this pipeline")]
    Fenced {
        /// The pipeline written to.
        pipeline: PipelineId,
        /// The epoch the write carried.
        epoch: Epoch,
        /// Why it is no longer valid.
        reason: FenceReason,
    },

    /// Someone else holds a live lease on the pipeline.
    #[error("pipeline {pipeline} is leased by {holder} (epoch {epoch}) until {expires_at}")]
    Leased {
        /// The pipeline.
        pipeline: PipelineId,
        /// Who holds it.
        holder: HolderId,
        /// Their epoch.
        epoch: Epoch,
        /// When their lease expires unless renewed.
        expires_at: Timestamp,
    },

    /// A monotonic cursor would move backwards; nothing was changed.
    #[error("cursor {pipeline}/{stream} is monotonic and would regress from {current} to {proposed}; an operator reset is the only way back")]
    CursorRegression {
        /// The pipeline.
        pipeline: PipelineId,
        /// The stream.
        stream: StreamName,
        /// The stored value.
        current: serde_json::Value,
        /// The rejected value.
        proposed: serde_json::Value,
    },

    /// The input is malformed or out of range; nothing was changed.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// The input is well-formed but the entity's state does not allow the operation
    /// (finishing a finished run, resuming a pipeline with a held decision…); nothing was changed.
    #[error("failed precondition: {0}")]
    FailedPrecondition(String),

    /// The caller did not prove who it is (no credentials, or unknown ones). Remote catalogs only.
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),

    /// The caller is known but may not do this (another project, a role too low). Remote
    /// catalogs only.
    #[error("permission denied: {0}")]
    PermissionDenied(String),

    /// The backend could not be reached or gave up transiently. Retryable.
    #[error("catalog unavailable: {0}")]
    Unavailable(String),

    /// The backend's storage lacks this build's schema (tables or columns are missing): it was
    /// never migrated, or only by an older build. An operator must run the catalog's migrations;
    /// retrying cannot help.
    #[error("catalog not migrated: {0}")]
    NotMigrated(String),

    /// The backend failed in a way the caller cannot fix by retrying.
    #[error("catalog backend error: {0}")]
    Backend(String),
}

impl Error {
    /// Whether retrying the same call (after re-reading, for [`Error::Conflict`]) can succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Conflict { .. } | Error::Unavailable(_))
    }

    /// Shorthand for [`Error::InvalidArgument`].
    pub fn invalid(message: impl Into<String>) -> Self {
        Error::InvalidArgument(message.into())
    }

    /// Shorthand for [`Error::FailedPrecondition`].
    pub fn precondition(message: impl Into<String>) -> Self {
        Error::FailedPrecondition(message.into())
    }

    /// Shorthand for [`Error::NotFound`] of a pipeline.
    pub fn pipeline_not_found(pipeline: &PipelineId) -> Self {
        Error::NotFound(Entity::Pipeline {
            pipeline: pipeline.clone(),
        })
    }

    /// Shorthand for [`Error::NotFound`] of a run.
    pub fn run_not_found(run: RunId) -> Self {
        Error::NotFound(Entity::Run { run })
    }

    /// Shorthand for a version-number [`Error::Conflict`].
    pub fn conflict(
        entity: Entity,
        expected: impl fmt::Display,
        actual: impl fmt::Display,
    ) -> Self {
        Error::Conflict {
            entity,
            expected: expected.to_string(),
            actual: actual.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_conflict_and_unavailable_are_retryable() {
        let pipeline = PipelineId::new("p").unwrap();
        let entity = Entity::Pipeline {
            pipeline: pipeline.clone(),
        };
        assert!(Error::conflict(entity.clone(), 1, 2).is_retryable());
        assert!(Error::Unavailable("down".into()).is_retryable());
        let fenced = Error::Fenced {
            pipeline,
            epoch: Epoch(1),
            reason: FenceReason::Released,
        };
        for e in [
            fenced,
            Error::NotFound(entity),
            Error::invalid("x"),
            Error::precondition("x"),
            Error::Unauthenticated("x".into()),
            Error::PermissionDenied("x".into()),
            Error::NotMigrated("x".into()),
            Error::Backend("x".into()),
        ] {
            assert!(!e.is_retryable(), "{e}");
        }
    }

    #[test]
    fn errors_round_trip_through_json() {
        let e = Error::Fenced {
            pipeline: PipelineId::new("orders").unwrap(),
            epoch: Epoch(7),
            reason: FenceReason::Superseded { current: Epoch(9) },
        };
        let json = serde_json::to_string(&e).unwrap();
        assert_eq!(serde_json::from_str::<Error>(&json).unwrap(), e);
        let nf = Error::NotFound(Entity::Schema {
            pipeline: PipelineId::new("orders").unwrap(),
            stream: StreamName::new("users").unwrap(),
            version: None,
        });
        let json = serde_json::to_string(&nf).unwrap();
        assert_eq!(serde_json::from_str::<Error>(&json).unwrap(), nf);
    }
}
