//! What the process connectors' benchmarks (`singer.rs`, `airbyte.rs`) share: one whole run of a
//! pipeline through the `Reconciler` on a fresh memory catalog, and the medians of a side's runs.

// Each benchmark uses a different subset of these helpers.
#![allow(dead_code, unreachable_pub)]

use std::ffi::OsStr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hakiri_catalog_memory::MemoryCatalog;
use hakiri_core::{
    Actor, Catalog, CatalogExt, ConnectorConfig, ConnectorRef, CursorKind, HolderId, Limit,
    PipelineId, PipelineSpec, ProjectId, RunStatus, Schedule, StreamName,
};
use hakiri_reconciler::{builtin, Reconciler, ReconcilerConfig};
use hakiri_test_kit::disk;
use serde_json::Value;

/// One whole run of a pipeline of `connector` with `config`, on a fresh catalog (project
/// `bench-<round>`), which must succeed; returns its time and the checkpoints it made of
/// `streams`' cursors.
pub async fn through_hakiri(
    connector: &str,
    config: Value,
    round: usize,
    streams: &[&str],
) -> (Duration, u64) {
    let catalog: Arc<dyn Catalog> = Arc::new(MemoryCatalog::new(
        ProjectId::new(format!("bench-{round}")).unwrap(),
    ));
    let pipeline = PipelineId::new("bench").unwrap();
    let spec = PipelineSpec::new(
        pipeline.clone(),
        ConnectorRef::new(connector).unwrap(),
        CursorKind::Opaque,
    )
    .with_schedule(Schedule::Interval(Duration::from_secs(3600)))
    .with_config(ConnectorConfig::new(config).unwrap());
    catalog.create_pipeline(spec, &Actor::System).await.unwrap();
    let reconciler = Reconciler::new(
        catalog.clone(),
        builtin(),
        ReconcilerConfig::new(HolderId::new("bench").unwrap()),
    );
    let started = Instant::now();
    let mut ends = Vec::new();
    reconciler
        .run_until_idle(10, |_, e| ends.extend_from_slice(e))
        .await
        .unwrap();
    let took = started.elapsed();
    assert_eq!(ends.len(), 1);
    assert_eq!(ends[0].status, Some(RunStatus::Succeeded), "{:?}", ends[0]);
    let mut checkpoints = 0;
    for stream in streams {
        let history = catalog
            .cursor_history(
                &pipeline,
                &StreamName::new(*stream).unwrap(),
                None,
                Limit::MAX,
            )
            .await
            .unwrap();
        checkpoints += history.items.len() as u64;
    }
    (took, checkpoints)
}

/// How long `program` with `args` takes with its stdout to `/dev/null`; it must succeed.
pub fn to_dev_null<S: AsRef<OsStr>>(program: impl AsRef<OsStr>, args: &[S]) -> Duration {
    let program = program.as_ref();
    let started = Instant::now();
    let status = Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("run {}: {e}", program.to_string_lossy()));
    assert!(status.success(), "{}: {status}", program.to_string_lossy());
    started.elapsed()
}

/// How long `source | sink` takes, as in a shell, with the sink's stdout to `/dev/null`; both
/// must succeed.
pub fn piped(mut source: Command, mut sink: Command) -> Duration {
    let started = Instant::now();
    let mut source = source
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the source");
    let sink = sink
        .stdin(source.stdout.take().unwrap())
        .stdout(Stdio::null())
        .status()
        .expect("run the sink");
    assert!(source.wait().unwrap().success());
    assert!(sink.success(), "{sink}");
    started.elapsed()
}

/// Prints how long an 8 KiB write and `fdatasync` took before and after the rounds, and the
/// disk's mode each time (the checkpoints wait for it).
pub fn print_disk(before: Duration, after: Duration) {
    println!(
        "  disk: 8 KiB write + fdatasync {:.2} ms before ({}), {:.2} ms after ({})",
        before.as_secs_f64() * 1e3,
        disk::mode(before),
        after.as_secs_f64() * 1e3,
        disk::mode(after)
    );
}

pub fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

/// The times of one side, and the checkpoints its runs made.
#[derive(Default)]
pub struct Side {
    pub times: Vec<Duration>,
    pub checkpoints: u64,
}

impl Side {
    pub fn push(&mut self, (took, checkpoints): (Duration, u64)) {
        self.times.push(took);
        self.checkpoints += checkpoints;
    }

    /// Records per second of the median run.
    pub fn rate(&self, records: u64) -> f64 {
        records as f64 / median(self.times.clone()).as_secs_f64()
    }

    pub fn commits_per_second(&self) -> String {
        let total: Duration = self.times.iter().sum();
        format!(
            "{:>12.1} /s   ({} in {:.1} s of runs)",
            self.checkpoints as f64 / total.as_secs_f64(),
            self.checkpoints,
            total.as_secs_f64()
        )
    }
}
