//! The domain of Hakiri, a catalog for data pipelines: cursors, leases, runs, schema versions and
//! evolution decisions, and the [`Catalog`] port every backend implements.
//!
//! Rules live here once, as pure functions (`plan_*`, `check_*`): a backend reads the current
//! state, asks the rule what to write, and writes it atomically with compare-and-set. No backend,
//! database driver or async runtime is a dependency, and the crate builds for
//! `wasm32-unknown-unknown` (it never reads the system clock there).
//!
//! # Layout
//! - [`ids`]: validated identifiers (`ProjectId`, `PipelineId`, `StreamName`, `RunId`, `Epoch`…).
//! - [`time`]: [`Timestamp`] and the [`Clock`] port ([`ManualClock`] for tests).
//! - [`error`]: the one [`Error`] enum and [`Entity`].
//! - [`pipeline`]: [`PipelineSpec`], schedules, retry policy, the stored [`Pipeline`]; put/delete/pause rules.
//! - [`lease`]: [`Lease`], fencing and acquisition rules.
//! - [`run`]: [`Run`], its status machine, begin/finish requests.
//! - [`cursor`]: cursor values, monotonic ordering, advance and reset rules, history.
//! - [`schema`]: the column model, fingerprints, JSON Schema conversion, diff and classification.
//! - [`evolution`]: schema policy, versions, decisions and the observation rule.
//! - [`audit`]: [`Actor`], [`Reason`] and the [`Event`] log.
//! - [`page`]: keyset pagination.
//! - [`catalog`]: the [`Catalog`] port and [`CatalogExt`].
//! - [`archive`]: a project's whole content as JSON Lines, to export and import it.

pub mod archive;
pub mod audit;
pub mod catalog;
pub mod cursor;
pub mod error;
pub mod evolution;
pub mod ids;
pub mod lease;
pub mod page;
pub mod pipeline;
pub mod plan;
pub mod run;
pub mod schema;
pub mod time;

pub use audit::{Actor, Event, EventKind, Reason};
pub use catalog::{Catalog, CatalogExt, DecisionQuery, PipelineStatus, StatusPage};
pub use cursor::{
    Cursor, CursorAdvance, CursorChange, CursorHistoryEntry, CursorKind, CursorReset, CursorValue,
    CursorWrite, ResetPermissions, ResetTarget, WriteStamp,
};
pub use error::{Entity, Error, FenceReason, Result};
pub use evolution::{
    Decide, Decision, Observation, PolicyAction, Resolution, SchemaPolicy, SchemaVersion, Verdict,
};
pub use ids::{
    ConnectorRef, DecisionId, Epoch, Generation, HolderId, OperatorName, PipelineId, ProjectId,
    RunId, StreamName,
};
pub use lease::{Lease, LeaseState};
pub use page::{Limit, Page};
pub use pipeline::{
    ConnectorConfig, CronSchedule, Pause, PauseChange, Pipeline, PipelineSpec, PutMode,
    RetryPolicy, RunRequest, Schedule,
};
pub use run::{
    AbandonWrite, BeginRun, BeginWrite, Beginning, FinishRun, FinishWrite, Outcome, Run, RunError,
    RunQuery, RunStatus, StreamStats, StreamStatus, Trigger,
};
pub use schema::{ChangeClass, Column, ColumnType, Fingerprint, Schema, SchemaDiff};
#[cfg(not(target_arch = "wasm32"))]
pub use time::SystemClock;
pub use time::{Clock, ManualClock, Timestamp};

/// What this crate's macros use, not part of its API.
#[doc(hidden)]
pub mod __private {
    pub use async_trait::async_trait;
}
