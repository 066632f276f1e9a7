//! The embedded catalog against the floor and raw SQLite on the same disk, measured in the same
//! run.
//!
//! `cargo bench -p hakiri-catalog-do --bench embedded` prints, per measure, the median rate over
//! interleaved rounds and the medians of per-round ratios. The goals are on hakiri/floor:
//! - cursor advance/s (one writer, each advance its own durable commit) — goal ≥ 0.95;
//! - run finish/s (two final cursors and stats, one commit) — goal ≥ 0.90;
//! - cursor advance/s with 64 pipelines advancing concurrently (group commit) — goal ≥ 0.90.
//!
//! The floor is raw rusqlite writing, with hand-prepared statements and nothing checked, the rows
//! the operation must write in the catalog's layout, with the index entries its paged reads need
//! (`store/pages_at_scale.rs`): an advance changes its cursor and appends an event that carries
//! the history entry (invariant 7 in `docs/guarantees.md`, ADR 0038); a finish also rewrites its
//! run, indexed by pipeline, status and both. `hakiri/floor` is Hakiri's own overhead (checks,
//! encoding, the writer thread). Beside them, both against a raw rusqlite single-row `UPDATE`
//! commit with the same pragmas (WAL, `synchronous=FULL`): `floor/raw` is the best any catalog
//! keeping that history could reach (ADR 0013).
//!
//! With `-- --normal`, every side commits with `synchronous=NORMAL` instead: no fsync per commit,
//! so hakiri/floor shows Hakiri's own work per operation without the disk's latency around it.
//!
//! The disk of these machines switches between a fast and a slow mode for tens of seconds at a
//! time, so the two sides run in small alternating batches and the fsync latency is printed
//! before and after.

// A benchmark binary, not an API.
#![allow(missing_docs)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hakiri_catalog_do::store::{self, CursorMemo};
use hakiri_catalog_do::{Durability, SqliteCatalog, SqliteConfig, SqliteConnection};
use hakiri_core::{
    Actor, BeginRun, Catalog, Clock, ConnectorRef, CursorAdvance, CursorKind, CursorValue,
    FinishRun, HolderId, Lease, PipelineId, PipelineSpec, ProjectId, PutMode, RunId, StreamName,
    StreamStats, SystemClock, Trigger,
};
use hakiri_protocol::{Request, Response};
use hakiri_test_kit::bench::{concurrently, median, Writer};
use hakiri_test_kit::disk;
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
/// Advances per pipeline in one round of the concurrent measure: enough that the first, partly
/// filled group of each round does not dominate it.
const CONCURRENT_ROUND: usize = 16;
/// About the size of the run document a finish rewrites (two streams' stats and cursors).
const RUN_BODY_BYTES: usize = 1000;

/// Raw rusqlite on its own file: the baseline of the goals, and the floor — the same rows an
/// advance or a finish must write (invariant 7 in `docs/guarantees.md` keeps history and events),
/// written by hand-prepared statements with nothing checked or encoded.
struct Raw {
    conn: rusqlite::Connection,
    version: i64,
    run: i64,
}

/// A cursor history entry and an event as the catalog stores them (same shape and size).
const HISTORY_BODY: &str = r#"{"version":1,"value":12345,"change":"checkpoint","run":"019aa7f2-3c1e-7000-8000-000000000001","epoch":1,"by":{"holder":"bench"},"at":1763800000000}"#;
const EVENT_KIND: &str = r#"{"cursor_advanced":{"stream":"s","version":1}}"#;
const ACTOR: &str = r#"{"holder":"bench"}"#;

/// `--normal`: every side commits with `synchronous=NORMAL`, without an fsync per commit. The
/// goals are for `FULL`; without the disk's latency, hakiri/floor shows what Hakiri's own work
/// (checks, encoding, the writer thread) costs per operation.
fn durability() -> Durability {
    if std::env::args().any(|a| a == "--normal") {
        Durability::Normal
    } else {
        Durability::Full
    }
}

impl Raw {
    fn open(path: &Path, durability: Durability) -> Self {
        let conn = rusqlite::Connection::open(path).expect("raw database");
        let synchronous = match durability {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
        };
        conn.execute_batch(&format!(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = {synchronous};"
        ))
        .expect("raw pragmas");
        conn.execute_batch(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER NOT NULL);
             INSERT INTO t (id, v) VALUES (1, 0);
             CREATE TABLE pipelines (id TEXT PRIMARY KEY, running_run TEXT) WITHOUT ROWID;
             CREATE TABLE runs (id INTEGER PRIMARY KEY, pipeline TEXT NOT NULL,
                 status TEXT NOT NULL, body TEXT NOT NULL);
             CREATE INDEX runs_by_pipeline ON runs (pipeline, id);
             CREATE INDEX runs_by_status ON runs (status, id);
             CREATE INDEX runs_by_pipeline_status ON runs (pipeline, status, id);
             CREATE TABLE cursors (pipeline TEXT, stream TEXT, version INTEGER NOT NULL,
                 value TEXT NOT NULL, updated_at INTEGER NOT NULL, PRIMARY KEY (pipeline, stream))
                 WITHOUT ROWID;
             CREATE TABLE events (seq INTEGER PRIMARY KEY, at INTEGER NOT NULL,
                 actor TEXT NOT NULL, pipeline TEXT NOT NULL, kind TEXT NOT NULL,
                 stream TEXT, version INTEGER, history TEXT);
             CREATE INDEX events_by_pipeline ON events (pipeline, seq);
             CREATE UNIQUE INDEX events_history ON events (pipeline, stream, version)
                 WHERE stream IS NOT NULL;",
        )
        .expect("raw schema");
        for i in 0..CONCURRENT_PIPELINES {
            for stream in ["s", "t"] {
                conn.execute(
                    "INSERT INTO cursors VALUES (?1, ?2, 0, '0', 0)",
                    rusqlite::params![format!("p{i}"), stream],
                )
                .expect("raw cursor");
            }
            conn.execute("INSERT INTO pipelines VALUES (?1, NULL)", [format!("p{i}")])
                .expect("raw pipeline");
        }
        Self {
            conn,
            version: 0,
            run: 0,
        }
    }

    /// `n` single-row UPDATE commits; returns commits per second.
    fn updates(&self, n: usize) -> f64 {
        let mut statement = self
            .conn
            .prepare_cached("UPDATE t SET v = v + 1 WHERE id = 1")
            .expect("prepare");
        let start = Instant::now();
        for _ in 0..n {
            statement.execute([]).expect("update");
        }
        n as f64 / start.elapsed().as_secs_f64()
    }

    /// The rows one cursor write adds or changes: the cursor, and its event carrying its history
    /// entry (ADR 0038), with the event log's two indexes.
    fn cursor_write(&self, pipeline: &str, stream: &str, version: i64) {
        let c = &self.conn;
        c.prepare_cached(
            "UPDATE cursors SET version = ?3, value = ?4, updated_at = ?5 \
             WHERE pipeline = ?1 AND stream = ?2",
        )
        .and_then(|mut s| {
            s.execute(rusqlite::params![
                pipeline,
                stream,
                version,
                version.to_string(),
                version
            ])
        })
        .expect("raw cursor");
        c.prepare_cached(
            "INSERT INTO events (at, actor, pipeline, kind, stream, version, history) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )
        .and_then(|mut s| {
            s.execute(rusqlite::params![
                version,
                ACTOR,
                pipeline,
                EVENT_KIND,
                stream,
                version,
                HISTORY_BODY
            ])
        })
        .expect("raw event");
    }

    fn transaction(&self, unit: impl FnOnce()) {
        self.conn.execute_batch("BEGIN IMMEDIATE").expect("begin");
        unit();
        self.conn.execute_batch("COMMIT").expect("commit");
    }

    /// `n` commits of the rows an advance writes; returns commits per second.
    fn advances(&mut self, n: usize) -> f64 {
        let start = Instant::now();
        for _ in 0..n {
            self.version += 1;
            let version = self.version;
            self.transaction(|| self.cursor_write("p0", "s", version));
        }
        n as f64 / start.elapsed().as_secs_f64()
    }

    /// `commits` commits of the rows `CONCURRENT_PIPELINES` advances write, one per pipeline;
    /// returns advances per second.
    fn grouped_advances(&mut self, commits: usize) -> f64 {
        let start = Instant::now();
        for _ in 0..commits {
            self.version += 1;
            let version = self.version;
            self.transaction(|| {
                for i in 0..CONCURRENT_PIPELINES {
                    self.cursor_write(&format!("p{i}"), "s", version);
                }
            });
        }
        (commits * CONCURRENT_PIPELINES) as f64 / start.elapsed().as_secs_f64()
    }

    /// `n` commits of the rows a finish writes (two cursor writes, the run's status and body,
    /// the pipeline's running run, the finish event), each after an untimed begin; per second.
    fn finishes(&mut self, n: usize) -> f64 {
        let body = "x".repeat(RUN_BODY_BYTES);
        let mut timed = Duration::ZERO;
        for _ in 0..n {
            self.run += 1;
            self.version += 1;
            let (run, version) = (self.run, self.version);
            self.transaction(|| {
                self.conn
                    .execute(
                        "INSERT INTO runs VALUES (?1, 'p1', 'running', ?2)",
                        rusqlite::params![run, body],
                    )
                    .expect("raw begin");
                self.conn
                    .execute(
                        "UPDATE pipelines SET running_run = ?1 WHERE id = 'p1'",
                        [run],
                    )
                    .expect("raw begin");
            });
            let start = Instant::now();
            self.transaction(|| {
                self.cursor_write("p1", "s", version);
                self.cursor_write("p1", "t", version);
                let c = &self.conn;
                c.prepare_cached("UPDATE runs SET status = 'succeeded', body = ?2 WHERE id = ?1")
                    .and_then(|mut s| s.execute(rusqlite::params![run, body]))
                    .expect("raw run");
                c.prepare_cached("UPDATE pipelines SET running_run = NULL WHERE id = 'p1'")
                    .and_then(|mut s| s.execute([]))
                    .expect("raw pipeline");
                c.prepare_cached(
                    "INSERT INTO events (at, actor, pipeline, kind) VALUES (?1, ?2, 'p1', ?3)",
                )
                .and_then(|mut s| s.execute(rusqlite::params![version, ACTOR, EVENT_KIND]))
                .expect("raw event");
            });
            timed += start.elapsed();
        }
        n as f64 / timed.as_secs_f64()
    }
}

/// The catalog's store on the caller's thread: the same statements and checks as the catalog's
/// advance, each in a transaction of its own, without the writer thread. Against it, the
/// catalog's figure shows what the hop to the writer thread and back costs.
struct Direct {
    conn: SqliteConnection,
    /// What the writer thread keeps beside its connection.
    memo: CursorMemo,
    lease: Lease,
    run: RunId,
    next: u64,
}

impl Direct {
    fn open(path: &Path, durability: Durability) -> Self {
        let config = SqliteConfig::default().durability(durability);
        let mut conn = SqliteConnection::open(path, &config).expect("direct database");
        conn.prepare(&ProjectId::new("direct").unwrap(), SystemClock.now())
            .expect("prepare");
        let pipeline = PipelineId::new("direct").unwrap();
        let spec = PipelineSpec::new(
            pipeline.clone(),
            ConnectorRef::new("bench").unwrap(),
            CursorKind::Monotonic,
        );
        let mut handle = |request| {
            conn.with_immediate(|c| {
                store::handle(c, &mut CursorMemo::new(), request, SystemClock.now())
            })
            .expect("direct setup")
        };
        handle(Request::PutPipeline {
            spec,
            mode: PutMode::Create,
            by: Actor::System,
        });
        let Response::Lease(lease) = handle(Request::Acquire {
            pipeline,
            holder: HolderId::new("bench").unwrap(),
            ttl_ms: 24 * 3600 * 1000,
        }) else {
            panic!("acquire answers a lease")
        };
        let Response::Run(run) = handle(Request::BeginRun {
            lease: lease.clone(),
            begin: BeginRun::new(Trigger::Manual),
        }) else {
            panic!("begin answers a run")
        };
        Self {
            conn,
            lease,
            run: run.id,
            next: 0,
            memo: CursorMemo::new(),
        }
    }

    /// `n` advances, each its own commit; per second.
    fn advances(&mut self, n: usize) -> f64 {
        let stream = StreamName::new("s").unwrap();
        let start = Instant::now();
        for _ in 0..n {
            self.next += 1;
            let request = Request::Advance {
                lease: self.lease.clone(),
                run: self.run,
                stream: stream.clone(),
                advance: CursorAdvance::to(CursorValue::new(json!(self.next)).unwrap()),
            };
            self.conn
                .with_immediate(|c| store::handle(c, &mut self.memo, request, SystemClock.now()))
                .expect("direct advance");
        }
        n as f64 / start.elapsed().as_secs_f64()
    }

    /// `n` finishes as the catalog's are measured (two final cursors and stats), each its own
    /// commit after an untimed begin; per second.
    fn finishes(&mut self, n: usize) -> f64 {
        let (s, t) = (StreamName::new("s").unwrap(), StreamName::new("t").unwrap());
        let mut timed = Duration::ZERO;
        for _ in 0..n {
            self.next += 1;
            let value = CursorValue::new(json!(self.next)).unwrap();
            let finish = FinishRun::succeeded()
                .with_cursor(s.clone(), value.clone())
                .with_cursor(t.clone(), value)
                .with_stats(s.clone(), StreamStats::new(self.next, self.next * 64));
            let request = Request::FinishRun {
                lease: self.lease.clone(),
                run: self.run,
                finish,
            };
            let start = Instant::now();
            self.conn
                .with_immediate(|c| store::handle(c, &mut self.memo, request, SystemClock.now()))
                .expect("direct finish");
            timed += start.elapsed();
            let begin = Request::BeginRun {
                lease: self.lease.clone(),
                begin: BeginRun::new(Trigger::Manual),
            };
            let Response::Run(run) = self
                .conn
                .with_immediate(|c| store::handle(c, &mut self.memo, begin, SystemClock.now()))
                .expect("direct begin")
            else {
                panic!("begin answers a run")
            };
            self.run = run.id;
        }
        n as f64 / timed.as_secs_f64()
    }
}

/// One operation's rates per round: Hakiri's, the floor's, and the raw baseline's beside them.
#[derive(Default)]
struct Measure {
    hakiri: Vec<f64>,
    floor: Vec<f64>,
    hakiri_ratio: Vec<f64>,
    floor_ratio: Vec<f64>,
    of_floor: Vec<f64>,
}

impl Measure {
    fn push(&mut self, hakiri: f64, floor: f64, raw: f64) {
        self.hakiri.push(hakiri);
        self.floor.push(floor);
        self.hakiri_ratio.push(hakiri / raw);
        self.floor_ratio.push(floor / raw);
        self.of_floor.push(hakiri / floor);
    }

    /// One row of the table; `goal` is for hakiri/floor.
    fn print(self, label: &str, goal: f64) {
        let of_floor = median(self.of_floor);
        let met = if of_floor >= goal { "met" } else { "NOT met" };
        println!(
            "{label:<38} {:>9.0} {:>9.0} {of_floor:>8.2}  ≥ {goal:.2} {met:<7} {:>9.2}x {:>9.2}x",
            median(self.hakiri),
            median(self.floor),
            median(self.hakiri_ratio),
            median(self.floor_ratio)
        );
    }
}

#[derive(Default)]
struct Measures {
    raw: Vec<f64>,
    advance: Measure,
    direct: Vec<f64>,
    finish: Measure,
    direct_finish: Vec<f64>,
    group: Measure,
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
        let before = disk::fdatasync_time(dir.path());
        let durability = durability();
        let raw = Raw::open(&dir.path().join("raw.db"), durability);
        let mut floor = Raw::open(&dir.path().join("floor.db"), durability);
        let mut direct = Direct::open(&dir.path().join("direct.db"), durability);
        let project = ProjectId::new("bench").unwrap();
        let open = |file: &str| -> Arc<dyn Catalog> {
            let config = SqliteConfig::default().durability(durability);
            let catalog = SqliteCatalog::open(dir.path().join(file), project.clone(), config);
            Arc::new(catalog.unwrap())
        };
        let catalog = open("hakiri.db");
        let mut single = Writer::begun(catalog.clone(), "single").await;
        let mut finisher = Writer::begun(catalog, "finisher").await;
        let group_catalog = open("group.db");
        let mut group = Vec::new();
        for i in 0..CONCURRENT_PIPELINES {
            group.push(Writer::begun(group_catalog.clone(), &format!("p{i}")).await);
        }
        // Warm up every side (page cache, prepared statements).
        raw.updates(50);
        floor.advances(50);
        single.advances(50).await;

        let mut m = Measures::default();
        for round in 0..rounds {
            let r1 = raw.updates(batch);
            let a = single.advances(batch).await;
            let fa = floor.advances(batch);
            let da = direct.advances(batch);
            let r2 = raw.updates(batch);
            let f = finisher.finishes(batch / 2).await;
            let ff = floor.finishes(batch / 2);
            let df = direct.finishes(batch / 2);
            let r3 = raw.updates(batch);
            let g = concurrently(&mut group, CONCURRENT_ROUND).await;
            let fg = floor.grouped_advances(CONCURRENT_ROUND);
            let r4 = raw.updates(batch);
            // Each figure is compared with the raw batches on either side of it.
            m.raw.extend([r1, r2, r3, r4]);
            m.advance.push(a, fa, (r1 + r2) / 2.0);
            m.direct.push(a / da);
            m.finish.push(f, ff, (r2 + r3) / 2.0);
            m.direct_finish.push(f / df);
            m.group.push(g, fg, (r3 + r4) / 2.0);
            eprintln!("round {round}: raw {r1:.0}/{r2:.0}/{r3:.0}/{r4:.0}  advance {a:.0} (floor {fa:.0})  finish {f:.0} (floor {ff:.0})  64-way {g:.0} (floor {fg:.0}) per s");
        }
        let after = disk::fdatasync_time(dir.path());
        let synchronous = match durability {
            Durability::Full => "synchronous=FULL",
            Durability::Normal => "synchronous=NORMAL, no fsync per commit: the goals are for FULL",
        };
        println!("embedded SQLite catalog (WAL, {synchronous}), {rounds} interleaved rounds, medians");
        println!("disk: fdatasync {before:?} before ({}), {after:?} after ({})", disk::mode(before), disk::mode(after));
        println!("raw rusqlite single-row UPDATE commit: {:>9.0} /s", median(m.raw));
        println!("floor: raw rusqlite writing the rows the operation must write (cursor, history, event, run ...)");
        println!(
            "{:<38} {:>9} {:>9} {:>12} {:>12} {:>10} {:>10}",
            "", "hakiri/s", "floor/s", "hakiri/floor", "goal", "hakiri/raw", "floor/raw"
        );
        m.advance.print("cursor advance (1 writer)", 0.95);
        println!(
            "{:<38} hakiri / its store on the caller's thread: {:.2}",
            "",
            median(m.direct)
        );
        m.finish.print("run finish (2 cursors + stats)", 0.90);
        println!(
            "{:<38} hakiri / its store on the caller's thread: {:.2}",
            "",
            median(m.direct_finish)
        );
        let group = format!("cursor advance, {CONCURRENT_PIPELINES} pipelines at once");
        m.group.print(&group, 0.90);
    });
}
