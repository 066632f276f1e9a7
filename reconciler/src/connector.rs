//! In-process connectors: the [`Connector`] trait and the [`RunContext`] a run works through.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use hakiri_core::{
    Catalog, ConnectorConfig, CursorAdvance, CursorValue, Entity, Error, Lease, Limit, Pipeline,
    PipelineSpec, Run, RunQuery, RunStatus, Schema, StreamName, StreamStats, StreamStatus, Verdict,
};
use tokio_util::sync::CancellationToken;

/// How a connector run ends when it does not succeed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    /// The source or the destination failed.
    #[error("{message}")]
    Failed {
        /// What went wrong.
        message: String,
        /// Whether the retry policy should try again.
        retryable: bool,
    },
    /// The run stopped because it was asked to (shutdown, lease lost, schema held for review).
    #[error("stopped: {0}")]
    Stopped(String),
    /// The catalog refused a write.
    #[error("catalog: {0}")]
    Catalog(#[from] Error),
}

impl ConnectorError {
    /// A failure worth retrying (a timeout, a 503).
    pub fn transient(message: impl fmt::Display) -> Self {
        ConnectorError::Failed {
            message: message.to_string(),
            retryable: true,
        }
    }

    /// A failure retrying will not fix (bad config, bad data).
    pub fn permanent(message: impl fmt::Display) -> Self {
        ConnectorError::Failed {
            message: message.to_string(),
            retryable: false,
        }
    }
}

/// A connector that runs inside the reconciler's process.
///
/// A run reads its starting cursors from the context, reads from its source, reports each
/// stream's schema before writing records of it, checkpoints as it goes (each checkpoint is
/// durable: a crash loses nothing before it), and returns promptly once
/// [`RunContext::cancelled`] fires.
#[async_trait]
pub trait Connector: Send + Sync + 'static {
    /// Runs once for the context's pipeline.
    ///
    /// # Errors
    /// [`ConnectorError`]: the run is finished as failed, or cancelled when it was stopped.
    async fn run(&self, ctx: &RunContext) -> Result<(), ConnectorError>;

    /// Checks a pipeline's spec for this connector without running anything, so that declaring
    /// a pipeline (`hakiri apply`) refuses a config every run would fail on. The default accepts
    /// every spec; a run checks again in any case.
    ///
    /// # Errors
    /// [`SpecProblem`]: what is wrong, and in which part of the spec.
    fn check(&self, spec: &PipelineSpec) -> Result<(), SpecProblem> {
        let _ = spec;
        Ok(())
    }
}

/// What [`Connector::check`] found wrong with a pipeline's spec.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SpecProblem {
    /// The spec field at fault: `"config"` or `"cursor_kind"`.
    pub field: &'static str,
    /// What is wrong, naming the config field.
    pub message: String,
}

impl SpecProblem {
    /// The spec's `config` is wrong: `problem` says where.
    pub fn config(problem: impl fmt::Display) -> Self {
        Self {
            field: "config",
            message: problem.to_string(),
        }
    }

    /// The spec's `cursor_kind` does not suit the connector.
    pub fn cursor_kind(message: String) -> Self {
        Self {
            field: "cursor_kind",
            message,
        }
    }
}

/// The connectors a reconciler can run, by the name pipelines' specs refer to.
#[derive(Clone, Default)]
pub struct Connectors {
    by_name: HashMap<String, Arc<dyn Connector>>,
}

impl fmt::Debug for Connectors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&String> = self.by_name.keys().collect();
        names.sort();
        f.debug_struct("Connectors").field("names", &names).finish()
    }
}

impl Connectors {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `connector` under `name`.
    #[must_use]
    pub fn with(mut self, name: &str, connector: impl Connector) -> Self {
        self.by_name.insert(name.to_owned(), Arc::new(connector));
        self
    }

    /// The connector registered under `name`.
    pub fn get(&self, name: &str) -> Option<Arc<dyn Connector>> {
        self.by_name.get(name).cloned()
    }

    /// Registered names, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.by_name.keys().cloned().collect();
        names.sort();
        names
    }
}

/// What a running connector works through: its pipeline, cursors, checkpoints, schema reports.
pub struct RunContext {
    catalog: Arc<dyn Catalog>,
    lease: Lease,
    run: Run,
    pipeline: Pipeline,
    cancel: CancellationToken,
    /// Fires before `cancel` when the reconciler shuts down: a connector that can end early
    /// with its progress recorded (stop its source, drain it, checkpoint) does so now.
    stopping: CancellationToken,
    cursors: Mutex<BTreeMap<StreamName, CursorValue>>,
    stats: Mutex<BTreeMap<StreamName, StreamStats>>,
}

impl fmt::Debug for RunContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunContext")
            .field("run", &self.run.id)
            .field("pipeline", self.pipeline.id())
            .finish()
    }
}

impl RunContext {
    /// A context for `run` under `lease`; `cancel` stops it.
    pub fn new(
        catalog: Arc<dyn Catalog>,
        lease: Lease,
        run: Run,
        pipeline: Pipeline,
        cancel: CancellationToken,
    ) -> Self {
        let cursors = run.cursors_at_start.clone();
        Self {
            catalog,
            lease,
            run,
            pipeline,
            cancel,
            stopping: CancellationToken::new(),
            cursors: Mutex::new(cursors),
            stats: Mutex::default(),
        }
    }

    /// Asks for a soft stop when `stopping` fires (the reconciler's shutdown), before the
    /// cancel: see [`RunContext::stopping`].
    #[must_use]
    pub fn with_stopping(mut self, stopping: CancellationToken) -> Self {
        self.stopping = stopping;
        self
    }

    /// Resolves when the run is asked to end early but may still write: the reconciler is
    /// shutting down and gives running runs a grace period before it cancels them. A connector
    /// that can (a process connector) stops its source, records what it already has —
    /// checkpoints still work until [`RunContext::cancelled`] — and returns
    /// [`ConnectorError::Stopped`]. Ignoring it is fine: the run then goes on until it ends or
    /// is cancelled.
    pub async fn stopping(&self) {
        self.stopping.cancelled().await;
    }

    /// The pipeline.
    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    /// The connector's configuration.
    pub fn config(&self) -> &ConnectorConfig {
        &self.pipeline.spec.config
    }

    /// The run.
    pub fn run(&self) -> &Run {
        &self.run
    }

    /// The lease the run writes under.
    pub fn lease(&self) -> &Lease {
        &self.lease
    }

    /// Whether a run of the pipeline succeeded since its spec (or its pause) last changed: a
    /// connector that proves its config before using it (`airbyte`'s `check`) does so when not.
    ///
    /// # Errors
    /// The catalog could not be read.
    pub async fn succeeded_since_changed(&self) -> Result<bool, ConnectorError> {
        let query = RunQuery {
            pipeline: Some(self.pipeline.id().clone()),
            status: Some(RunStatus::Succeeded),
            before: None,
            limit: Limit::ONE,
        };
        let newest = self.catalog.list_runs(&query).await?;
        // A run begun in the same instant as the change may have read the old spec: not proven.
        Ok(newest
            .items
            .first()
            .is_some_and(|run| run.started_at > self.pipeline.updated_at))
    }

    /// A stream's cursor: its value when the run began, or its last checkpoint in this run.
    pub fn cursor(&self, stream: &StreamName) -> Option<CursorValue> {
        lock(&self.cursors)
            .get(stream)
            .filter(|v| !v.is_initial())
            .cloned()
    }

    /// Durably records a stream's new position.
    ///
    /// # Errors
    /// [`ConnectorError::Stopped`] when the lease was lost (the run must stop at once); other
    /// catalog refusals as [`ConnectorError::Catalog`].
    pub async fn checkpoint(
        &self,
        stream: &StreamName,
        value: CursorValue,
    ) -> Result<(), ConnectorError> {
        self.check_cancelled()?;
        let advance = CursorAdvance::to(value.clone());
        match self
            .catalog
            .advance(&self.lease, self.run.id, stream, advance)
            .await
        {
            Ok(_) => {
                lock(&self.cursors).insert(stream.clone(), value);
                Ok(())
            }
            Err(e) => Err(self.stop_if_fenced(e)),
        }
    }

    /// Reports the schema the run sees on `stream`; carry on only if it is `Accepted`.
    ///
    /// # Errors
    /// [`ConnectorError::Stopped`] when the change is held for review (the pipeline is paused
    /// until an operator decides) or the lease was lost; a permanent [`ConnectorError::Failed`]
    /// when the policy rejects it.
    pub async fn observe_schema(
        &self,
        stream: &StreamName,
        schema: Schema,
    ) -> Result<(), ConnectorError> {
        self.check_cancelled()?;
        let observation = self
            .catalog
            .observe_schema(&self.lease, self.run.id, stream, schema)
            .await
            .map_err(|e| self.stop_if_fenced(e))?;
        match (observation.verdict, observation.decision) {
            (Verdict::Accepted, _) => Ok(()),
            (Verdict::Held, Some(decision)) => Err(ConnectorError::Stopped(format!(
                "{} schema change on stream {stream} held (decision {}); accept or reject it to resume",
                decision.class, decision.id,
            ))),
            // A rejection fails the run rather than stopping it: a stopped (cancelled) run is
            // resumed at once by the planner, which would meet the same schema, record another
            // rejection and loop on every tick.
            (Verdict::Rejected, Some(decision)) => Err(ConnectorError::permanent(format!(
                "{} schema change on stream {stream} rejected (decision {}); the source must change back",
                decision.class, decision.id,
            ))),
            (Verdict::Rejected, None) => Err(ConnectorError::permanent(format!(
                "schema on stream {stream} rejected"
            ))),
            (verdict, None) => Err(ConnectorError::Stopped(format!(
                "schema on stream {stream} {verdict}"
            ))),
        }
    }

    /// The stream's current schema version, if it has one.
    ///
    /// For connectors that infer schemas from the records they read: a batch is judged against
    /// what the catalog already holds, so a column the batch happens not to contain is not
    /// mistaken for a removed one.
    ///
    /// # Errors
    /// The catalog's, as [`ConnectorError::Catalog`].
    pub async fn current_schema(
        &self,
        stream: &StreamName,
    ) -> Result<Option<Schema>, ConnectorError> {
        match self
            .catalog
            .get_schema(self.pipeline.id(), stream, None)
            .await
        {
            Ok(version) => Ok(Some(version.schema)),
            Err(Error::NotFound(Entity::Schema { .. })) => Ok(None),
            Err(e) => Err(ConnectorError::Catalog(e)),
        }
    }

    /// Adds to a stream's statistics (reported when the run finishes).
    pub fn record(&self, stream: &StreamName, records: u64, bytes: u64) {
        let mut stats = lock(&self.stats);
        let entry = stats.entry(stream.clone()).or_default();
        entry.records += records;
        entry.bytes += bytes;
    }

    /// Notes the status a source reported for a stream (reported when the run finishes).
    pub fn stream_status(&self, stream: &StreamName, status: StreamStatus) {
        lock(&self.stats).entry(stream.clone()).or_default().status = Some(status);
    }

    /// Notes how many records and bytes a source said it will send of a stream (reported when
    /// the run finishes); an estimate left out keeps the one given before.
    pub fn estimate(&self, stream: &StreamName, records: Option<u64>, bytes: Option<u64>) {
        let mut stats = lock(&self.stats);
        let entry = stats.entry(stream.clone()).or_default();
        entry.estimated_records = records.or(entry.estimated_records);
        entry.estimated_bytes = bytes.or(entry.estimated_bytes);
    }

    /// Whether the run has been asked to stop.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Completes when the run is asked to stop (shutdown, or the lease was lost).
    pub async fn cancelled(&self) {
        self.cancel.cancelled().await;
    }

    /// Fails with `Stopped` once the run has been asked to stop; call it between units of work.
    ///
    /// # Errors
    /// [`ConnectorError::Stopped`].
    pub fn check_cancelled(&self) -> Result<(), ConnectorError> {
        if self.cancel.is_cancelled() {
            Err(ConnectorError::Stopped("the run was asked to stop".into()))
        } else {
            Ok(())
        }
    }

    pub(crate) fn take_stats(&self) -> BTreeMap<StreamName, StreamStats> {
        std::mem::take(&mut *lock(&self.stats))
    }

    fn stop_if_fenced(&self, error: Error) -> ConnectorError {
        if matches!(error, Error::Fenced { .. }) {
            self.cancel.cancel();
            ConnectorError::Stopped(format!("lease lost: {error}"))
        } else {
            ConnectorError::Catalog(error)
        }
    }
}

/// Locks a mutex that is never held across an await and never poisoned by a panic inside.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
