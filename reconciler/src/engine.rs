//! The reconcile loop: plan, then dispatch what is due under the writer lease, within
//! concurrency limits; runs renew their lease in the background and stop when fenced.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hakiri_core::{
    BeginRun, Catalog, CatalogExt, ConnectorRef, Error, FinishRun, HolderId, Lease, Limit, Outcome,
    PipelineId, Reason, Result, RunError, RunId, RunQuery, RunStatus,
};
use serde::Serialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, info_span, warn, Instrument};

use crate::connector::{ConnectorError, Connectors, RunContext};
use crate::metrics::Metrics;
use hakiri_core::plan::{plan, Plan, PlanItem};

/// Settings of a reconciler.
#[derive(Debug, Clone)]
pub struct ReconcilerConfig {
    holder: HolderId,
    lease_ttl: Duration,
    interval: Duration,
    max_concurrent: usize,
    per_connector: BTreeMap<ConnectorRef, usize>,
    grace: Duration,
}

impl ReconcilerConfig {
    /// Defaults: lease ttl 30 s, a tick every 10 s, 8 runs at once, 30 s grace on shutdown.
    ///
    /// `holder` names this reconciler in leases and runs; make it unique per process.
    pub fn new(holder: HolderId) -> Self {
        Self {
            holder,
            lease_ttl: Duration::from_secs(30),
            interval: Duration::from_secs(10),
            max_concurrent: 8,
            per_connector: BTreeMap::new(),
            grace: Duration::from_secs(30),
        }
    }

    /// The lease ttl; runs renew at a third of it.
    ///
    /// # Warning
    /// A short ttl fences a run whose process stalls (GC, swap, a paused VM) for longer than it.
    #[must_use]
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl;
        self
    }

    /// Time between ticks of [`Reconciler::run`].
    #[must_use]
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// Most runs at once in this process (at least 1).
    #[must_use]
    pub fn max_concurrent(mut self, n: usize) -> Self {
        self.max_concurrent = n.max(1);
        self
    }

    /// Most runs at once of one connector (at least 1).
    #[must_use]
    pub fn per_connector(mut self, connector: ConnectorRef, n: usize) -> Self {
        self.per_connector.insert(connector, n.max(1));
        self
    }

    /// How long a shutdown lets running runs finish before cancelling them.
    #[must_use]
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// The holder id.
    pub fn holder(&self) -> &HolderId {
        &self.holder
    }
}

/// What one tick did.
#[derive(Debug, Clone, Serialize)]
pub struct TickReport {
    /// The plan it followed.
    pub plan: Plan,
    /// Runs begun.
    pub dispatched: Vec<(PipelineId, RunId)>,
    /// Pipelines another reconciler took first (normal with several reconcilers).
    pub lost_races: Vec<PipelineId>,
    /// Pipelines due but over a concurrency limit; they stay due for the next tick.
    pub deferred: Vec<PipelineId>,
    /// Runs reaped.
    pub reaped: Vec<RunId>,
    /// Reaps and dispatches the catalog failed (not lost races): the pipeline stays as it was
    /// and is planned again on the next tick. The loop logs them and goes on; a one-shot caller
    /// should report them as a failure.
    pub failed: Vec<TickFailure>,
}

/// A reap or dispatch that the catalog failed.
#[derive(Debug, Clone, Serialize)]
pub struct TickFailure {
    /// The pipeline.
    pub pipeline: PipelineId,
    /// What the tick was doing.
    pub operation: TickOperation,
    /// The catalog's error.
    pub error: Error,
}

impl std::fmt::Display for TickFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "could not {} pipeline {}: {}",
            self.operation, self.pipeline, self.error
        )
    }
}

/// The per-pipeline steps of a tick that can fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TickOperation {
    /// Taking the lease of a pipeline whose run's holder vanished.
    Reap,
    /// Taking the lease and beginning a run.
    Dispatch,
}

impl std::fmt::Display for TickOperation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TickOperation::Reap => "reap",
            TickOperation::Dispatch => "dispatch",
        })
    }
}

/// How a dispatched run ended, as seen by this reconciler.
#[derive(Debug, Clone, Serialize)]
pub struct RunEnd {
    /// The pipeline.
    pub pipeline: PipelineId,
    /// The run.
    pub run: RunId,
    /// Its final status, or `None` if the lease was lost before it could be recorded.
    pub status: Option<RunStatus>,
    /// The error or stop reason.
    pub message: Option<String>,
}

/// Plans and dispatches pipelines of one catalog.
pub struct Reconciler {
    catalog: Arc<dyn Catalog>,
    connectors: Connectors,
    config: ReconcilerConfig,
    global: Arc<Semaphore>,
    per_connector: HashMap<ConnectorRef, Arc<Semaphore>>,
    runs: Mutex<JoinSet<RunEnd>>,
    active: Arc<Mutex<HashMap<PipelineId, CancellationToken>>>,
    stop_runs: CancellationToken,
    /// Fired when a shutdown begins, before the grace period: runs that can end early with
    /// their progress recorded do (`RunContext::stopping`).
    stopping: CancellationToken,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Reconciler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reconciler")
            .field("config", &self.config)
            .field("connectors", &self.connectors)
            .finish()
    }
}

impl Reconciler {
    /// A reconciler of `catalog` running `connectors`.
    pub fn new(
        catalog: Arc<dyn Catalog>,
        connectors: Connectors,
        config: ReconcilerConfig,
    ) -> Self {
        let per_connector = config
            .per_connector
            .iter()
            .map(|(name, n)| (name.clone(), Arc::new(Semaphore::new(*n))))
            .collect();
        Self {
            catalog,
            connectors,
            global: Arc::new(Semaphore::new(config.max_concurrent)),
            per_connector,
            config,
            runs: Mutex::new(JoinSet::new()),
            active: Arc::default(),
            stop_runs: CancellationToken::new(),
            stopping: CancellationToken::new(),
            metrics: Arc::default(),
        }
    }

    /// The metrics.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// The current plan, from one snapshot of the catalog (a dry run: nothing is changed).
    ///
    /// # Errors
    /// The catalog's.
    pub async fn plan(&self) -> Result<Plan> {
        Ok(self.plan_with_last_runs().await?.0)
    }

    /// The current plan, and each pipeline's newest run in the snapshot it was made from.
    async fn plan_with_last_runs(&self) -> Result<(Plan, HashMap<PipelineId, RunId>)> {
        let snapshot = self.catalog.all_statuses().await?;
        let last_runs = snapshot
            .items
            .iter()
            .filter_map(|s| Some((s.pipeline.id().clone(), s.last_run.as_ref()?.id)))
            .collect();
        Ok((plan(&snapshot.items, snapshot.as_of), last_runs))
    }

    /// One level-triggered step: plan, reap, dispatch what is due within the limits.
    ///
    /// # Errors
    /// The catalog's, for the snapshot; per-pipeline failures are logged and reported in
    /// [`TickReport::failed`].
    pub async fn tick(&self) -> Result<TickReport> {
        let started = Instant::now();
        let span = info_span!("tick", holder = %self.config.holder);
        let report = async {
            let (plan, last_runs) = self.plan_with_last_runs().await?;
            let mut report = TickReport {
                plan: plan.clone(),
                dispatched: Vec::new(),
                lost_races: Vec::new(),
                deferred: Vec::new(),
                reaped: Vec::new(),
                failed: Vec::new(),
            };
            for (item, run) in plan.reaps() {
                match self.reap(item, run).await {
                    Ok(true) => report.reaped.push(run),
                    Ok(false) => report.lost_races.push(item.pipeline.clone()),
                    Err(error) => {
                        warn!(pipeline = %item.pipeline, %error, "could not reap");
                        report.failed.push(TickFailure {
                            pipeline: item.pipeline.clone(),
                            operation: TickOperation::Reap,
                            error,
                        });
                    }
                }
            }
            for (item, trigger, attempt) in plan.dispatches() {
                // Once runs are being cancelled (shutdown, `cancel_runs`), a new run would be born
                // cancelled, end at once and be planned again on the next tick: dispatch nothing.
                if self.stop_runs.is_cancelled() {
                    break;
                }
                if self.is_active(&item.pipeline) {
                    continue;
                }
                let Some(permits) = self.permits(&item.connector) else {
                    report.deferred.push(item.pipeline.clone());
                    continue;
                };
                let begin = BeginRun { trigger, attempt };
                let planned_after = last_runs.get(&item.pipeline).copied();
                match self.dispatch(item, begin, planned_after, permits).await {
                    Ok(Some(run)) => report.dispatched.push((item.pipeline.clone(), run)),
                    Ok(None) => report.lost_races.push(item.pipeline.clone()),
                    Err(error) => {
                        warn!(pipeline = %item.pipeline, %error, "could not dispatch");
                        report.failed.push(TickFailure {
                            pipeline: item.pipeline.clone(),
                            operation: TickOperation::Dispatch,
                            error,
                        });
                    }
                }
            }
            Ok::<_, Error>(report)
        }
        .instrument(span)
        .await;
        self.metrics.tick_took(started.elapsed().as_secs_f64());
        report
    }

    fn is_active(&self, pipeline: &PipelineId) -> bool {
        lock(&self.active).contains_key(pipeline)
    }

    fn permits(&self, connector: &ConnectorRef) -> Option<Vec<OwnedSemaphorePermit>> {
        let mut permits = vec![self.global.clone().try_acquire_owned().ok()?];
        if let Some(limit) = self.per_connector.get(connector) {
            permits.push(limit.clone().try_acquire_owned().ok()?);
        }
        Some(permits)
    }

    /// Takes the lease of a pipeline whose run's holder vanished (which abandons the run), then
    /// gives it back so the next tick can plan a retry. `false`: someone else got there first.
    async fn reap(&self, item: &PlanItem, run: RunId) -> Result<bool> {
        match self
            .catalog
            .acquire(&item.pipeline, &self.config.holder, self.config.lease_ttl)
            .await
        {
            Ok(lease) => {
                self.catalog.release(&lease).await?;
                self.metrics.reaped.inc();
                info!(pipeline = %item.pipeline, %run, "reaped abandoned run");
                Ok(true)
            }
            Err(Error::Leased { .. } | Error::NotFound(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Takes the lease, begins the run and starts the connector. `planned_after` is the
    /// pipeline's newest run in the plan's snapshot. `None`: the pipeline was taken by another
    /// reconciler (or changed) in the meantime — normal, not an error.
    async fn dispatch(
        &self,
        item: &PlanItem,
        begin: BeginRun,
        planned_after: Option<RunId>,
        permits: Vec<OwnedSemaphorePermit>,
    ) -> Result<Option<RunId>> {
        let newest_only = RunQuery::all()
            .pipeline(item.pipeline.clone())
            .limit(Limit::new(1)?);
        let lease = match self
            .catalog
            .acquire(&item.pipeline, &self.config.holder, self.config.lease_ttl)
            .await
        {
            Ok(lease) => lease,
            Err(Error::Leased { .. } | Error::NotFound(_)) => {
                self.metrics.lease_losses.inc();
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        // The plan is as old as its snapshot: another reconciler may have run the pipeline and
        // released it since, and a free lease does not show that. Nobody else can begin a run
        // while this lease is held, so a newest run other than the plan's means the plan is
        // stale for this pipeline: give the lease back, the next tick plans from fresh state.
        let newest = self
            .catalog
            .list_runs(&newest_only)
            .await
            .map(|page| page.items.first().map(|r| r.id));
        match newest {
            Ok(newest) if newest == planned_after => {}
            Ok(_) => {
                info!(pipeline = %item.pipeline, "ran since the plan was made; not dispatched");
                let _ = self.catalog.release(&lease).await;
                self.metrics.lease_losses.inc();
                return Ok(None);
            }
            Err(e) => {
                let _ = self.catalog.release(&lease).await;
                return Err(e);
            }
        }
        let pipeline = match self.catalog.get_pipeline(&item.pipeline).await {
            Ok(p) => p,
            Err(e) => {
                let _ = self.catalog.release(&lease).await;
                return Err(e);
            }
        };
        let run = match self.catalog.begin_run(&lease, begin).await {
            Ok(run) => run,
            Err(Error::FailedPrecondition(reason)) => {
                // Paused or already running since the plan was made: give the lease back.
                info!(pipeline = %item.pipeline, %reason, "not dispatched");
                let _ = self.catalog.release(&lease).await;
                return Ok(None);
            }
            Err(e) => {
                let _ = self.catalog.release(&lease).await;
                return Err(e);
            }
        };
        self.metrics.dispatched.inc();
        let run_id = run.id;
        let cancel = self.stop_runs.child_token();
        lock(&self.active).insert(item.pipeline.clone(), cancel.clone());
        let connector = self.connectors.get(pipeline.spec.connector.as_str());
        let ctx = RunContext::new(
            self.catalog.clone(),
            lease.clone(),
            run,
            pipeline,
            cancel.clone(),
        )
        .with_stopping(self.stopping.clone());
        let task = RunTask {
            catalog: self.catalog.clone(),
            lease,
            ttl: self.config.lease_ttl,
            metrics: self.metrics.clone(),
            active: self.active.clone(),
        };
        let span = info_span!("run", pipeline = %item.pipeline, run = %run_id, trigger = ?begin.trigger, attempt = begin.attempt);
        lock(&self.runs).spawn(
            async move {
                let end = task.execute(connector, ctx, cancel).await;
                drop(permits);
                end
            }
            .instrument(span),
        );
        Ok(Some(run_id))
    }

    /// Waits for every dispatched run to end and returns how each ended.
    ///
    /// Not cancel-safe: dropping the future before it completes aborts the runs it waits for
    /// (they end neither finished nor released, and are reaped once their leases expire). To
    /// bound the wait, take the runs out first, as [`Reconciler::run`] does at shutdown.
    pub async fn wait_runs(&self) -> Vec<RunEnd> {
        let mut ends = Vec::new();
        loop {
            let mut runs = std::mem::take(&mut *lock(&self.runs));
            if runs.is_empty() {
                return ends;
            }
            join_all(&mut runs, &mut ends).await;
        }
    }

    /// Ticks until nothing is due now (waits and skips only), letting each tick's runs finish
    /// before the next; stops after `max_ticks`, or after a tick that dispatched and reaped
    /// nothing (a pipeline the catalog failed to dispatch is then still due). For
    /// `hakiri reconcile --once` and tests.
    ///
    /// # Errors
    /// The catalog's, for a snapshot. Per-pipeline failures are in each [`TickReport::failed`]
    /// passed to `progress`: a caller that must not report success over them checks those.
    pub async fn run_until_idle(
        &self,
        max_ticks: usize,
        mut progress: impl FnMut(&TickReport, &[RunEnd]),
    ) -> Result<Plan> {
        for _ in 0..max_ticks {
            let report = self.tick().await?;
            let ends = self.wait_runs().await;
            progress(&report, &ends);
            if report.dispatched.is_empty() && report.reaped.is_empty() {
                return Ok(report.plan);
            }
        }
        self.plan().await
    }

    /// Ticks every interval until `shutdown` fires; then stops dispatching, lets runs finish
    /// within the grace period, cancels the rest (they finish `Cancelled` and release their
    /// leases) and returns.
    ///
    /// # Errors
    /// Never for a failed tick (logged and retried next interval); only if the loop cannot go on.
    pub async fn run(
        &self,
        shutdown: CancellationToken,
        mut progress: impl FnMut(&TickReport),
    ) -> Result<()> {
        loop {
            match self.tick().await {
                Ok(report) => progress(&report),
                Err(error) => warn!(%error, "tick failed; retrying at the next interval"),
            }
            self.reap_finished();
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(self.config.interval) => {}
            }
        }
        info!(grace = ?self.config.grace, "shutting down: no new runs; asking running ones to stop");
        self.stopping.cancel();
        // Out of `self` and outside the timeout: a timed-out wait leaves the runs in this set,
        // still running, for the cancel below to end properly.
        let mut runs = std::mem::take(&mut *lock(&self.runs));
        let mut ends = Vec::new();
        let within_grace = join_all(&mut runs, &mut ends);
        if tokio::time::timeout(self.config.grace, within_grace)
            .await
            .is_err()
        {
            warn!("grace period over: cancelling the remaining runs");
            self.stop_runs.cancel();
            join_all(&mut runs, &mut ends).await;
        }
        Ok(())
    }

    /// Collects ended run tasks so the set does not grow in a long loop.
    fn reap_finished(&self) {
        let mut runs = lock(&self.runs);
        while let Some(joined) = runs.try_join_next() {
            if let Err(error) = joined {
                warn!(%error, "a run task panicked");
            }
        }
    }

    /// Cancels every running run (they finish `Cancelled` and release their leases); this
    /// reconciler dispatches nothing afterwards.
    pub fn cancel_runs(&self) {
        self.stop_runs.cancel();
    }
}

/// One dispatched run's background work.
struct RunTask {
    catalog: Arc<dyn Catalog>,
    lease: Lease,
    ttl: Duration,
    metrics: Arc<Metrics>,
    active: Arc<Mutex<HashMap<PipelineId, CancellationToken>>>,
}

impl RunTask {
    async fn execute(
        self,
        connector: Option<Arc<dyn crate::connector::Connector>>,
        ctx: RunContext,
        cancel: CancellationToken,
    ) -> RunEnd {
        let renewal = tokio::spawn(renew(
            self.catalog.clone(),
            self.lease.clone(),
            self.ttl,
            cancel.clone(),
        ));
        let result = match &connector {
            Some(connector) => connector.run(&ctx).await,
            None => Err(ConnectorError::permanent(format!(
                "no connector named {:?} is registered in this reconciler",
                ctx.pipeline().spec.connector.as_str()
            ))),
        };
        renewal.abort();
        let run = ctx.run().id;
        let pipeline = ctx.pipeline().id().clone();
        let (outcome, message) = match result {
            Ok(()) => (Outcome::Succeeded, None),
            Err(ConnectorError::Failed { message, retryable }) => (
                Outcome::Failed {
                    error: RunError::new(message.clone(), retryable),
                },
                Some(message),
            ),
            Err(ConnectorError::Catalog(error)) => {
                let message = error.to_string();
                (
                    Outcome::Failed {
                        error: RunError::new(message.clone(), error.is_retryable()),
                    },
                    Some(message),
                )
            }
            Err(ConnectorError::Stopped(reason)) => {
                let reason = Reason::lossy(&reason);
                (
                    Outcome::Cancelled {
                        reason: reason.clone(),
                    },
                    Some(reason.to_string()),
                )
            }
        };
        let mut finish = FinishRun::new(outcome);
        finish.stats = ctx.take_stats();
        let status = match self.catalog.finish_run(&self.lease, run, finish).await {
            Ok(done) => {
                let counter = match done.status {
                    RunStatus::Succeeded => &self.metrics.succeeded,
                    RunStatus::Failed => &self.metrics.failed,
                    _ => &self.metrics.cancelled,
                };
                counter.inc();
                let _ = self.catalog.release(&self.lease).await;
                Some(done.status)
            }
            Err(Error::Fenced { .. }) => {
                self.metrics.lease_losses.inc();
                warn!(%run, "the lease was lost: another holder owns the pipeline; this run's outcome is not recorded");
                None
            }
            Err(error) => {
                warn!(%run, %error, "could not record the run's end; its lease will expire and it will be reaped");
                None
            }
        };
        lock(&self.active).remove(&pipeline);
        info!(%run, ?status, message = message.as_deref().unwrap_or(""), "run ended");
        RunEnd {
            pipeline,
            run,
            status,
            message,
        }
    }
}

/// Joins every task in `runs`, adding how each run ended to `ends`. Cancel-safe: a task not
/// joined yet stays in `runs`.
async fn join_all(runs: &mut JoinSet<RunEnd>, ends: &mut Vec<RunEnd>) {
    while let Some(joined) = runs.join_next().await {
        match joined {
            Ok(end) => ends.push(end),
            Err(error) => warn!(%error, "a run task panicked"),
        }
    }
}

/// Renews the lease at a third of its ttl until the run ends; on fencing, cancels the run.
async fn renew(catalog: Arc<dyn Catalog>, lease: Lease, ttl: Duration, cancel: CancellationToken) {
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(ttl / 3) => {}
        }
        match catalog.renew(&lease, ttl).await {
            Ok(_) => {}
            Err(error @ Error::Fenced { .. }) => {
                warn!(%error, "lease lost while running: stopping the run");
                cancel.cancel();
                return;
            }
            Err(error) => warn!(%error, "lease renewal failed; retrying"),
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
