//! The embedded catalog against raw SQLite on the same disk, measured in the same run.
//!
//! `cargo bench -p hakiri-catalog-do --bench embedded` prints, per measure, the median rate over
//! interleaved rounds and the median of per-round ratios to a raw rusqlite single-row `UPDATE`
//! commit with the same pragmas (WAL, `synchronous=FULL`):
//! - cursor advance/s (one writer, each advance its own durable commit) — goal ≥ 0.9×;
//! - run finish/s (two final cursors and stats, one commit) — goal ≥ 0.9×;
//! - cursor advance/s with 64 pipelines advancing concurrently (group commit) — goal ≥ 10×.
//!
//! The disk of these machines switches between a fast and a slow mode for tens of seconds at a
//! time, so the two sides run in small alternating batches and the fsync latency is printed
//! before and after.

// A benchmark binary, not an API.
#![allow(missing_docs)]

#[path = "support/disk.rs"]
mod disk;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hakiri_catalog_do::{SqliteCatalog, SqliteConfig};
use hakiri_core::{
    Actor, BeginRun, Catalog, CatalogExt, ConnectorRef, CursorKind, CursorValue, FinishRun,
    HolderId, Lease, PipelineId, PipelineSpec, ProjectId, RunId, StreamName, StreamStats, Trigger,
};
use serde_json::json;

/// Rounds and batch size: the full measurement under `cargo bench`, a quick smoke run of the
/// same code under `cargo test --all-targets` (which runs bench targets without `--bench`).
fn sizes() -> (usize, usize) {
    if std::env::args().any(|a| a == "--bench") {
        (FULL_ROUNDS, FULL_BATCH)
    } else {
        (1, 4)
    }
}

const FULL_ROUNDS: usize = 25;
const FULL_BATCH: usize = 60;
const CONCURRENT_PIPELINES: usize = 64;

struct Raw(rusqlite::Connection);

impl Raw {
    fn open(path: &Path) -> Self {
        let conn = rusqlite::Connection::open(path).expect("raw database");
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;
             CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v INTEGER NOT NULL);
             INSERT OR IGNORE INTO t (id, v) VALUES (1, 0);",
        )
        .expect("raw schema");
        Self(conn)
    }

    /// `n` single-row UPDATE commits; returns commits per second.
    fn updates(&self, n: usize) -> f64 {
        let mut statement = self
            .0
            .prepare_cached("UPDATE t SET v = v + 1 WHERE id = 1")
            .expect("prepare");
        let start = Instant::now();
        for _ in 0..n {
            statement.execute([]).expect("update");
        }
        n as f64 / start.elapsed().as_secs_f64()
    }
}

struct Writer {
    catalog: Arc<SqliteCatalog>,
    lease: Lease,
    run: RunId,
    stream: StreamName,
    next: u64,
}

impl Writer {
    async fn new(catalog: Arc<SqliteCatalog>, name: &str) -> Self {
        let pipeline = PipelineId::new(name).unwrap();
        let spec = PipelineSpec::new(
            pipeline.clone(),
            ConnectorRef::new("bench").unwrap(),
            CursorKind::Monotonic,
        );
        catalog.create_pipeline(spec, &Actor::System).await.unwrap();
        let lease = catalog
            .acquire(
                &pipeline,
                &HolderId::new("bench").unwrap(),
                Duration::from_secs(24 * 3600),
            )
            .await
            .unwrap();
        let run = catalog
            .begin_run(&lease, BeginRun::new(Trigger::Manual))
            .await
            .unwrap()
            .id;
        Self {
            catalog,
            lease,
            run,
            stream: StreamName::new("s").unwrap(),
            next: 1,
        }
    }

    async fn advance(&mut self) {
        let value = CursorValue::new(json!(self.next)).unwrap();
        self.next += 1;
        self.catalog
            .advance(&self.lease, self.run, &self.stream, value)
            .await
            .unwrap();
    }

    /// `n` advances; returns advances per second.
    async fn advances(&mut self, n: usize) -> f64 {
        let start = Instant::now();
        for _ in 0..n {
            self.advance().await;
        }
        n as f64 / start.elapsed().as_secs_f64()
    }

    /// `n` finishes, each of a freshly begun run (the begins are not timed); finishes per second.
    async fn finishes(&mut self, n: usize) -> f64 {
        let mut timed = Duration::ZERO;
        let other = StreamName::new("t").unwrap();
        for _ in 0..n {
            let finish = FinishRun::succeeded()
                .with_cursor(
                    self.stream.clone(),
                    CursorValue::new(json!(self.next)).unwrap(),
                )
                .with_cursor(other.clone(), CursorValue::new(json!(self.next)).unwrap())
                .with_stats(
                    self.stream.clone(),
                    StreamStats {
                        records: 100,
                        bytes: 10_000,
                    },
                );
            self.next += 1;
            let start = Instant::now();
            self.catalog
                .finish_run(&self.lease, self.run, finish)
                .await
                .unwrap();
            timed += start.elapsed();
            self.run = self
                .catalog
                .begin_run(&self.lease, BeginRun::new(Trigger::Manual))
                .await
                .unwrap()
                .id;
        }
        n as f64 / timed.as_secs_f64()
    }
}

/// `per_writer` advances on each of `writers` pipelines at once; total advances per second.
async fn concurrent(writers: &mut Vec<Writer>, per_writer: usize) -> f64 {
    let start = Instant::now();
    let tasks: Vec<_> = writers
        .drain(..)
        .map(|mut w| {
            tokio::spawn(async move {
                for _ in 0..per_writer {
                    w.advance().await;
                }
                w
            })
        })
        .collect();
    for task in tasks {
        writers.push(task.await.unwrap());
    }
    (per_writer * writers.len()) as f64 / start.elapsed().as_secs_f64()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir =
        tempfile::tempdir_in(std::env::var("HAKIRI_BENCH_DIR").unwrap_or_else(|_| ".".into()))
            .unwrap();
    let (rounds, batch) = sizes();
    runtime.block_on(async {
        let before = disk::fsync_latency(dir.path());
        let raw = Raw::open(&dir.path().join("raw.db"));
        let project = ProjectId::new("bench").unwrap();
        let catalog = Arc::new(SqliteCatalog::open(dir.path().join("hakiri.db"), project.clone(), SqliteConfig::default()).unwrap());
        let mut single = Writer::new(catalog.clone(), "single").await;
        let mut finisher = Writer::new(catalog.clone(), "finisher").await;
        let group_catalog = Arc::new(SqliteCatalog::open(dir.path().join("group.db"), project, SqliteConfig::default()).unwrap());
        let mut group = Vec::new();
        for i in 0..CONCURRENT_PIPELINES {
            group.push(Writer::new(group_catalog.clone(), &format!("p{i}")).await);
        }
        // Warm up both sides (page cache, prepared statements).
        raw.updates(50);
        single.advances(50).await;

        let (mut raw_rates, mut advance_rates, mut finish_rates, mut group_rates) = (vec![], vec![], vec![], vec![]);
        let (mut advance_ratios, mut finish_ratios, mut group_ratios) = (vec![], vec![], vec![]);
        for round in 0..rounds {
            let r1 = raw.updates(batch);
            let a = single.advances(batch).await;
            let r2 = raw.updates(batch);
            let f = finisher.finishes(batch / 2).await;
            let r3 = raw.updates(batch);
            let g = concurrent(&mut group, 4).await;
            let r4 = raw.updates(batch);
            // Each Hakiri figure is compared with the raw batches on either side of it.
            advance_ratios.push(a / ((r1 + r2) / 2.0));
            finish_ratios.push(f / ((r2 + r3) / 2.0));
            group_ratios.push(g / ((r3 + r4) / 2.0));
            raw_rates.extend([r1, r2, r3, r4]);
            advance_rates.push(a);
            finish_rates.push(f);
            group_rates.push(g);
            eprintln!("round {round}: raw {r1:.0}/{r2:.0}/{r3:.0}/{r4:.0}  advance {a:.0}  finish {f:.0}  64-way {g:.0} per s");
        }
        let after = disk::fsync_latency(dir.path());
        println!("embedded SQLite catalog (WAL, synchronous=FULL), {rounds} interleaved rounds, medians");
        println!("disk: fdatasync {before:?} before ({}), {after:?} after ({})", disk::mode(before), disk::mode(after));
        println!("raw rusqlite single-row UPDATE commit: {:>9.0} /s", median(raw_rates));
        println!("cursor advance (1 writer):            {:>9.0} /s  ratio {:.2}x  (goal >= 0.90x)", median(advance_rates), median(advance_ratios));
        println!("run finish (2 cursors + stats):       {:>9.0} /s  ratio {:.2}x  (goal >= 0.90x)", median(finish_rates), median(finish_ratios));
        println!("cursor advance, {CONCURRENT_PIPELINES} pipelines at once:   {:>9.0} /s  ratio {:.2}x  (goal >= 10x, group commit)", median(group_rates), median(group_ratios));
    });
}
