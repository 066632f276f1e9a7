//! Flat at scale: a cursor advance, a run's finish and the reconciler's snapshot cost the same
//! with a million history rows, a million runs and ten million events in the catalog as with a
//! thousand of each, on an SQLite file and on Postgres.
//!
//! `cargo bench -p hakiri-cli --bench scale` fills two projects per backend through the port's
//! import (`Catalog::import`, in batches, as `hakiri import` does): a *small* one with 10^3 history
//! rows, 10^3 runs and 10^3 events, and a *large* one with 10^6, 10^6 and 10^7. All of it belongs
//! to the pipeline the benchmark then drives, so every index it touches holds that many rows. Then,
//! over rounds that alternate between the two, it measures
//! - advances per second (one writer, each advance its own commit);
//! - finishes per second (each of a freshly begun run, with two cursors and stats; begins untimed);
//! - snapshots per second (`all_statuses`, what the reconciler plans from);
//!
//! and prints the medians side by side with large/small (goal: ≥ 0.90, within 10%). Filling takes
//! minutes and a few GB of disk per backend; progress goes to stderr.

// A benchmark binary, not an API.
#![allow(missing_docs)]

use std::io::BufReader;
use std::time::{Duration, Instant};

use hakiri_catalog_do::{SqliteCatalog, SqliteConfig};
use hakiri_catalog_memory::MemoryCatalog;
use hakiri_catalog_postgres::PostgresCatalog;
use hakiri_contract::unique_project;
use hakiri_core::archive::{self, ArchiveReader, Counters, ImportBatch, Record};
use hakiri_core::{
    Catalog, CatalogExt, CursorKind, CursorValue, EventKind, FinishRun, PipelineId, RunId,
    StreamName, Timestamp,
};
use hakiri_test_kit::bench::{median, Writer};
use hakiri_test_kit::{disk, fixtures, postgres};
use serde_json::json;

/// What a project holds before the measurements: history rows, runs and events.
#[derive(Clone, Copy)]
struct Size {
    history: u64,
    runs: u64,
    events: u64,
}

const SMALL: Size = Size {
    history: 1_000,
    runs: 1_000,
    events: 1_000,
};
const LARGE: Size = Size {
    history: 1_000_000,
    runs: 1_000_000,
    events: 10_000_000,
};
/// The same code on sizes a smoke run under `cargo test --all-targets` fills in a moment.
const SMOKE_LARGE: Size = Size {
    history: 100,
    runs: 100,
    events: 1_000,
};

/// Records per import batch.
const BATCH: usize = 20_000;

fn full() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// One record of each kind the filler copies, taken from a real project: pipeline `p` (its
/// lease released), one finished run, version 1 of stream `s`'s cursor, and an event.
struct Template {
    counters: Counters,
    pipeline: Record,
    run: hakiri_core::Run,
    version: hakiri_core::CursorHistoryEntry,
    event: hakiri_core::Event,
}

impl Template {
    async fn new() -> Self {
        let catalog = MemoryCatalog::new(unique_project());
        let spec = fixtures::spec("p", CursorKind::Monotonic);
        let (lease, run) = fixtures::begun(&catalog, spec, "bench", Duration::from_secs(60)).await;
        let stream = StreamName::new("s").unwrap();
        let value = CursorValue::new(json!(1)).unwrap();
        catalog
            .advance_to(&lease, run.id, &stream, value)
            .await
            .unwrap();
        catalog
            .finish_run(&lease, run.id, FinishRun::succeeded())
            .await
            .unwrap();
        catalog.release(&lease).await.unwrap();
        let mut bytes = Vec::new();
        archive::export(&catalog, &mut bytes, Timestamp::from_millis(0), |_| {})
            .await
            .unwrap();
        let mut reader = ArchiveReader::new(BufReader::new(&bytes[..])).unwrap();
        let counters = reader.header().counters;
        let (mut pipeline, mut run, mut version, mut event) = (None, None, None, None);
        while let Some(record) = reader.next_record().unwrap() {
            match record {
                Record::Pipeline { .. } => pipeline = Some(record),
                Record::Run { run: r } => run = Some(r),
                Record::CursorVersion { entry, .. } => version = Some(entry),
                Record::Event { event: e } => event = event.or(Some(e)),
                _ => {}
            }
        }
        Self {
            counters,
            pipeline: pipeline.expect("a pipeline record"),
            run: run.expect("a run record"),
            version: version.expect("a cursor version record"),
            event: event.expect("an event record"),
        }
    }

    /// The archive's records for a project of `size`, in archive order: the pipeline, its runs
    /// newest first, its cursor's versions newest first, then the log, whose last events record
    /// the cursor's versions, as every cursor write has its event. Times lie in the hour
    /// before the template's run, so the benchmark's own runs come after them.
    fn records(&self, size: Size) -> impl Iterator<Item = Record> + '_ {
        let start = self.run.started_at.as_millis() - 3_600_000;
        let runs = (1..=size.runs).rev().map(move |i| {
            let mut run = self.run.clone();
            let at = Timestamp::from_millis(start + i as i64 / 1000);
            let mut entropy = [0u8; 10];
            entropy[2..].copy_from_slice(&i.to_be_bytes());
            run.id = RunId::from_parts(at, entropy);
            (run.started_at, run.finished_at) = (at, Some(at));
            Record::Run { run }
        });
        let pipeline = PipelineId::new("p").unwrap();
        let stream = StreamName::new("s").unwrap();
        let versions = (1..=size.history).rev().map(move |v| {
            let mut entry = self.version.clone();
            entry.version = v;
            entry.value = CursorValue::new(json!(v)).unwrap();
            Record::CursorVersion {
                pipeline: pipeline.clone(),
                stream: stream.clone(),
                entry,
            }
        });
        let recorded = StreamName::new("s").unwrap();
        let first_advance = size.events - size.history + 1;
        let events = (1..=size.events).map(move |seq| {
            let mut event = self.event.clone();
            event.seq = seq;
            event.at = Timestamp::from_millis(start + (seq / 10_000) as i64);
            if seq >= first_advance {
                event.kind = EventKind::CursorAdvanced {
                    stream: recorded.clone(),
                    version: seq - first_advance + 1,
                };
            }
            Record::Event { event }
        });
        std::iter::once(self.pipeline.clone())
            .chain(runs)
            .chain(versions)
            .chain(events)
    }

    /// Imports a project of `size` into `catalog` in batches, printing progress.
    async fn fill(&self, catalog: &dyn Catalog, size: Size, label: &str) {
        let total = 1 + size.runs + size.history + size.events;
        let started = Instant::now();
        let mut records = self.records(size).peekable();
        let mut position = 0;
        let mut reported = Instant::now();
        while records.peek().is_some() {
            let batch: Vec<Record> = records.by_ref().take(BATCH).collect();
            let len = batch.len() as u64;
            catalog
                .import(ImportBatch {
                    archive: format!("scale-{}-{}-{}", size.history, size.runs, size.events),
                    counters: self.counters,
                    position,
                    records: batch,
                    last: records.peek().is_none(),
                })
                .await
                .unwrap_or_else(|e| panic!("import at record {position}: {e}"));
            position += len;
            if reported.elapsed() >= Duration::from_secs(10) {
                eprintln!("  {label}: {position} of {total} records");
                reported = Instant::now();
            }
        }
        eprintln!("  {label}: {total} records in {:.0?}", started.elapsed());
    }
}

/// `n` snapshots of `catalog` (`all_statuses`, what the reconciler plans from); per second.
async fn snapshots(catalog: &dyn Catalog, n: usize) -> f64 {
    let start = Instant::now();
    for _ in 0..n {
        let snapshot = catalog.all_statuses().await.unwrap();
        assert_eq!(snapshot.items.len(), 1, "one pipeline");
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// Rates per round of one operation on the small and the large project.
#[derive(Default)]
struct Side {
    small: Vec<f64>,
    large: Vec<f64>,
    ratios: Vec<f64>,
}

impl Side {
    fn push(&mut self, small: f64, large: f64) {
        self.small.push(small);
        self.large.push(large);
        self.ratios.push(large / small);
    }

    fn print(self, label: &str) {
        let ratio = median(self.ratios);
        let met = if ratio >= 0.9 { "met" } else { "NOT met" };
        println!(
            "  {label:<10} {:>9.0}/s {:>9.0}/s   {ratio:>5.2}  (goal ≥ 0.90: {met})",
            median(self.small),
            median(self.large)
        );
    }
}

/// Fills a small and a large project with `open`'s catalogs, then measures both in alternation.
async fn measure(
    label: &str,
    template: &Template,
    large: Size,
    rounds: usize,
    batch: usize,
    open: impl Fn() -> Box<dyn Catalog>,
) {
    let mut writers = Vec::new();
    for (name, size) in [("small", SMALL), ("large", large)] {
        let catalog = open();
        template
            .fill(&*catalog, size, &format!("{label} {name}"))
            .await;
        let pipeline = PipelineId::new("p").unwrap();
        writers.push(Writer::resumed(catalog.into(), &pipeline, size.history).await);
    }
    let (mut advance, mut finish, mut snapshot) =
        (Side::default(), Side::default(), Side::default());
    for round in 0..=rounds {
        let mut rates = Vec::new();
        for writer in &mut writers {
            rates.push((
                writer.advances(batch).await,
                writer.finishes(batch / 4).await,
                snapshots(writer.catalog(), batch).await,
            ));
        }
        if round == 0 {
            continue; // warm-up: caches, prepared statements, connections
        }
        advance.push(rates[0].0, rates[1].0);
        finish.push(rates[0].1, rates[1].1);
        snapshot.push(rates[0].2, rates[1].2);
    }
    println!(
        "{label}: small = 10^3 history, runs, events; large = {} history, {} runs, {} events",
        large.history, large.runs, large.events
    );
    println!("  {:<10} {:>11} {:>11}   large/small", "", "small", "large");
    advance.print("advance");
    finish.print("finish");
    snapshot.print("snapshot");
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let (large, rounds, batch) = if full() {
        (LARGE, 10, 40)
    } else {
        (SMOKE_LARGE, 1, 4)
    };
    let template = Template::new().await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let before = disk::fdatasync_time(dir.path());

    let files = dir.path().to_owned();
    let counter = std::sync::atomic::AtomicU32::new(0);
    measure("SQLite file", &template, large, rounds, batch, || {
        let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = files.join(format!("scale-{n}.db"));
        let catalog = SqliteCatalog::open(path, unique_project(), SqliteConfig::default());
        Box::new(catalog.expect("open"))
    })
    .await;

    let pool = postgres::shared_pool().await;
    measure("Postgres", &template, large, rounds, batch, || {
        Box::new(PostgresCatalog::new(pool.clone(), unique_project()))
    })
    .await;

    let after = disk::fdatasync_time(dir.path());
    println!(
        "disk: fdatasync {before:?} before ({}), {after:?} after ({})",
        disk::mode(before),
        disk::mode(after)
    );
}
