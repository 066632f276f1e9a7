//! What the benchmarks share: a writer driving one pipeline through the port, many writers at
//! once, and the median they report.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hakiri_core::{
    BeginRun, Catalog, CatalogExt, CursorKind, CursorValue, FinishRun, HolderId, Lease, PipelineId,
    RunId, StreamName, StreamStats, Trigger,
};
use serde_json::json;

use crate::fixtures;

/// How long a benchmark's lease lasts: longer than any run of it.
const LEASE: Duration = Duration::from_secs(24 * 3600);

/// One pipeline driven through the port: its lease, its running run and the next value of its
/// monotonic cursor on stream `s`.
pub struct Writer {
    catalog: Arc<dyn Catalog>,
    lease: Lease,
    run: RunId,
    stream: StreamName,
    next: u64,
}

impl Writer {
    /// Creates pipeline `name` (monotonic cursors), takes its lease and begins a run.
    ///
    /// # Panics
    /// When the catalog refuses any of them.
    pub async fn begun(catalog: Arc<dyn Catalog>, name: &str) -> Self {
        let spec = fixtures::spec(name, CursorKind::Monotonic);
        let (lease, run) = fixtures::begun(catalog.as_ref(), spec, "bench", LEASE).await;
        Self::new(catalog, lease, run.id, 0)
    }

    /// Takes the lease of the existing `pipeline` and begins a run; its cursor on `s` is at most
    /// `at`.
    ///
    /// # Panics
    /// When the catalog refuses either.
    pub async fn resumed(catalog: Arc<dyn Catalog>, pipeline: &PipelineId, at: u64) -> Self {
        let holder = HolderId::new("bench").expect("a valid holder");
        let lease = catalog.acquire(pipeline, &holder, LEASE).await;
        let lease = lease.unwrap_or_else(|e| panic!("acquire {pipeline}: {e}"));
        let run = catalog
            .begin_run(&lease, BeginRun::new(Trigger::Manual))
            .await;
        let run = run.unwrap_or_else(|e| panic!("begin a run of {pipeline}: {e}"));
        Self::new(catalog, lease, run.id, at)
    }

    fn new(catalog: Arc<dyn Catalog>, lease: Lease, run: RunId, at: u64) -> Self {
        Self {
            catalog,
            lease,
            run,
            stream: StreamName::new("s").expect("a valid stream"),
            next: at + 1,
        }
    }

    /// The catalog it writes to.
    pub fn catalog(&self) -> &dyn Catalog {
        self.catalog.as_ref()
    }

    fn value(&mut self) -> CursorValue {
        let value = CursorValue::new(json!(self.next)).expect("a cursor value");
        self.next += 1;
        value
    }

    /// One advance of the cursor.
    ///
    /// # Panics
    /// When the catalog refuses it.
    pub async fn advance(&mut self) {
        let value = self.value();
        let advanced = self
            .catalog
            .advance_to(&self.lease, self.run, &self.stream, value)
            .await;
        advanced.unwrap_or_else(|e| panic!("advance: {e}"));
    }

    /// `n` advances, one after another; advances per second.
    pub async fn advances(&mut self, n: usize) -> f64 {
        let start = Instant::now();
        for _ in 0..n {
            self.advance().await;
        }
        n as f64 / start.elapsed().as_secs_f64()
    }

    /// `n` finishes, each with the final cursors of two streams and stats, each followed by the
    /// begin of the next run (not timed); finishes per second.
    ///
    /// # Panics
    /// When the catalog refuses a finish or a begin.
    pub async fn finishes(&mut self, n: usize) -> f64 {
        let mut timed = Duration::ZERO;
        let other = StreamName::new("t").expect("a valid stream");
        for _ in 0..n {
            let (value, other_value) = (self.value(), self.value());
            let finish = FinishRun::succeeded()
                .with_cursor(self.stream.clone(), value)
                .with_cursor(other.clone(), other_value)
                .with_stats(self.stream.clone(), StreamStats::new(100, 10_000));
            let start = Instant::now();
            let finished = self.catalog.finish_run(&self.lease, self.run, finish).await;
            timed += start.elapsed();
            finished.unwrap_or_else(|e| panic!("finish: {e}"));
            let begun = self
                .catalog
                .begin_run(&self.lease, BeginRun::new(Trigger::Manual))
                .await;
            self.run = begun.unwrap_or_else(|e| panic!("begin: {e}")).id;
        }
        n as f64 / timed.as_secs_f64()
    }
}

/// `per_writer` advances by every writer at once, each on a task of its own; total advances per
/// second.
///
/// # Panics
/// When a writer's advance is refused.
pub async fn concurrently(writers: &mut Vec<Writer>, per_writer: usize) -> f64 {
    let start = Instant::now();
    let tasks: Vec<_> = writers
        .drain(..)
        .map(|mut writer| {
            tokio::spawn(async move {
                for _ in 0..per_writer {
                    writer.advance().await;
                }
                writer
            })
        })
        .collect();
    for task in tasks {
        writers.push(task.await.expect("a writer panicked"));
    }
    (per_writer * writers.len()) as f64 / start.elapsed().as_secs_f64()
}

/// The median of `values` (the upper one of an even count).
///
/// # Panics
/// When `values` is empty.
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}
