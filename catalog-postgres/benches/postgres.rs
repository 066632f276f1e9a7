//! The Postgres catalog against raw statements on the same server, measured in the same run.
//!
//! `cargo bench -p hakiri-catalog-postgres` starts a server the way the tests do
//! (`HAKIRI_TEST_POSTGRES_URL`, a container, or `initdb`), then prints, at 1 and 16 clients, the
//! median rate over interleaved rounds and the median of per-round ratios for
//! - cursor advance/s (`checkpoint`: lease, run, version and kind checked, cursor, history and
//!   event written — one statement) against a raw guarded single-row
//!   `UPDATE … WHERE id = $1 AND epoch = $2`, autocommitted — goal ≥ 0.9×;
//! - run finish/s (`finish_run` with two final cursors and stats — one transaction) against a raw
//!   `BEGIN; INSERT; guarded UPDATE; COMMIT` — goal ≥ 0.9×. A finish needs a running run, so each
//!   is preceded by an untimed `begin_run`, and each raw finish by an untimed raw insert.
//!
//! Both sides go through the same driver and pool against the same server; every client has its
//! own pipeline (its own row on the raw side). The disk switches between a fast and a slow mode,
//! so the sides alternate in small batches and the fsync latency is printed before and after.

// A benchmark binary, not an API.
#![allow(missing_docs)]

#[path = "../tests/support/postgres.rs"]
mod postgres;

use std::fs::OpenOptions;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hakiri_catalog_postgres::{PgPool, PostgresCatalog, PostgresConfig};
use hakiri_core::{
    Actor, BeginRun, Catalog, CatalogExt, ConnectorRef, CursorKind, CursorValue, FinishRun,
    HolderId, Lease, PipelineId, PipelineSpec, ProjectId, RunId, StreamName, StreamStats, Trigger,
};
use serde_json::json;

const ROUNDS: usize = 12;
/// Operations per client per batch.
const BATCH: [(usize, usize); 2] = [(1, 150), (16, 25)];

fn fsync_latency() -> Duration {
    let dir = tempfile::tempdir().expect("probe dir");
    let mut file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(dir.path().join("probe"))
        .expect("probe file");
    let block = [7u8; 8192];
    let start = Instant::now();
    for _ in 0..20 {
        file.write_all(&block).expect("write");
        file.sync_data().expect("fdatasync");
    }
    start.elapsed() / 20
}

fn mode(latency: Duration) -> &'static str {
    if latency < Duration::from_millis(1) {
        "fast"
    } else {
        "slow"
    }
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// One client of one measure: its pipeline (or raw row) and state.
struct Client {
    catalog: Arc<PostgresCatalog>,
    pool: PgPool,
    id: i32,
    lease: Lease,
    run: RunId,
    next: u64,
}

impl Client {
    async fn new(catalog: Arc<PostgresCatalog>, pool: PgPool, id: i32, name: &str) -> Self {
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
        sqlx::query("INSERT INTO bench_raw (id, epoch, v) VALUES ($1, 7, 0)")
            .bind(id)
            .execute(&pool)
            .await
            .unwrap();
        Self {
            catalog,
            pool,
            id,
            lease,
            run,
            next: 0,
        }
    }

    /// `n` operations of `what`; returns the time spent in the timed part.
    async fn work(&mut self, what: Measure, n: usize) -> Duration {
        let stream = StreamName::new("s").unwrap();
        let mut timed = Duration::ZERO;
        for _ in 0..n {
            self.next += 1;
            let v = self.next;
            match what {
                Measure::Advance => {
                    let t = Instant::now();
                    self.catalog
                        .advance(
                            &self.lease,
                            self.run,
                            &stream,
                            CursorValue::new(json!(v)).unwrap(),
                        )
                        .await
                        .unwrap();
                    timed += t.elapsed();
                }
                Measure::RawAdvance => {
                    let t = Instant::now();
                    let done =
                        sqlx::query("UPDATE bench_raw SET v = $3 WHERE id = $1 AND epoch = $2")
                            .bind(self.id)
                            .bind(7i64)
                            .bind(i64::try_from(v).unwrap())
                            .execute(&self.pool)
                            .await
                            .unwrap();
                    assert_eq!(done.rows_affected(), 1);
                    timed += t.elapsed();
                }
                Measure::Finish => {
                    let finish = FinishRun::succeeded()
                        .with_cursor(stream.clone(), CursorValue::new(json!(v)).unwrap())
                        .with_cursor(
                            StreamName::new("t").unwrap(),
                            CursorValue::new(json!(v)).unwrap(),
                        )
                        .with_stats(
                            stream.clone(),
                            StreamStats {
                                records: v,
                                bytes: v * 64,
                            },
                        );
                    let t = Instant::now();
                    self.catalog
                        .finish_run(&self.lease, self.run, finish)
                        .await
                        .unwrap();
                    timed += t.elapsed();
                    self.run = self
                        .catalog
                        .begin_run(&self.lease, BeginRun::new(Trigger::Manual))
                        .await
                        .unwrap()
                        .id;
                }
                Measure::RawFinish => {
                    let t = Instant::now();
                    let mut tx = self.pool.begin().await.unwrap();
                    sqlx::query(
                        "INSERT INTO bench_raw_log (client, v, body) VALUES ($1, $2, $3::json)",
                    )
                    .bind(self.id)
                    .bind(i64::try_from(v).unwrap())
                    .bind("{\"status\":\"succeeded\"}")
                    .execute(&mut *tx)
                    .await
                    .unwrap();
                    let done =
                        sqlx::query("UPDATE bench_raw SET v = $3 WHERE id = $1 AND epoch = $2")
                            .bind(self.id)
                            .bind(7i64)
                            .bind(i64::try_from(v).unwrap())
                            .execute(&mut *tx)
                            .await
                            .unwrap();
                    assert_eq!(done.rows_affected(), 1);
                    tx.commit().await.unwrap();
                    timed += t.elapsed();
                    // The counterpart of the untimed begin_run: one autocommitted insert.
                    sqlx::query(
                        "INSERT INTO bench_raw_log (client, v, body) VALUES ($1, $2, $3::json)",
                    )
                    .bind(self.id)
                    .bind(0i64)
                    .bind("{\"status\":\"running\"}")
                    .execute(&self.pool)
                    .await
                    .unwrap();
                }
            }
        }
        timed
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Measure {
    Advance,
    RawAdvance,
    Finish,
    RawFinish,
}

/// Runs `n` operations on every client at once; returns operations per second (the sum over
/// clients of each one's rate over its timed part).
async fn batch(clients: &mut Vec<Client>, what: Measure, n: usize) -> f64 {
    let handles: Vec<_> = clients
        .drain(..)
        .map(|mut c| {
            tokio::spawn(async move {
                let timed = c.work(what, n).await;
                (c, timed)
            })
        })
        .collect();
    let mut rate = 0.0;
    for handle in handles {
        let (client, timed) = handle.await.unwrap();
        rate += n as f64 / timed.as_secs_f64();
        clients.push(client);
    }
    rate
}

async fn measure(
    pool: &PgPool,
    clients_n: usize,
    per_client: usize,
    ours: Measure,
    raw: Measure,
    label: &str,
) {
    let project = ProjectId::new(format!(
        "bench-{}-{clients_n}-{}",
        label.replace(' ', "-"),
        std::process::id()
    ))
    .unwrap();
    let catalog = Arc::new(PostgresCatalog::new(pool.clone(), project));
    sqlx::query("TRUNCATE bench_raw")
        .execute(pool)
        .await
        .unwrap();
    let mut clients = Vec::new();
    for i in 0..clients_n {
        let id = i32::try_from(i).unwrap();
        clients.push(Client::new(catalog.clone(), pool.clone(), id, &format!("p{i}")).await);
    }
    // Warm up both sides (connections, prepared statements, caches).
    batch(&mut clients, ours, per_client / 2 + 1).await;
    batch(&mut clients, raw, per_client / 2 + 1).await;
    let (mut hakiri, mut base, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let (h, r) = if round % 2 == 0 {
            let h = batch(&mut clients, ours, per_client).await;
            (h, batch(&mut clients, raw, per_client).await)
        } else {
            let r = batch(&mut clients, raw, per_client).await;
            (batch(&mut clients, ours, per_client).await, r)
        };
        hakiri.push(h);
        base.push(r);
        ratios.push(h / r);
    }
    println!(
        "{label:<16} {clients_n:>2} clients: hakiri {:>8.0}/s   raw {:>8.0}/s   ratio {:.2}x (median of {ROUNDS} interleaved rounds)",
        median(hakiri),
        median(base),
        median(ratios)
    );
}

fn main() {
    let before = fsync_latency();
    let server = postgres::Server::start();
    postgres::migrate(server.url()).expect("migrate");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let pool = PostgresConfig::default()
            .max_connections(20)
            .connect(server.url())
            .await
            .expect("connect");
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS bench_raw (id int PRIMARY KEY, epoch bigint NOT NULL, \
             v bigint NOT NULL) WITH (fillfactor = 70)",
        )
        .execute(&pool)
        .await
        .unwrap();
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS bench_raw_log (id bigint GENERATED ALWAYS AS IDENTITY \
             PRIMARY KEY, client int NOT NULL, v bigint NOT NULL, body json NOT NULL)",
        )
        .execute(&pool)
        .await
        .unwrap();
        println!(
            "Postgres catalog vs raw statements, same server, same driver (goal: ratio >= 0.90)"
        );
        for (clients, per_client) in BATCH {
            measure(
                &pool,
                clients,
                per_client,
                Measure::Advance,
                Measure::RawAdvance,
                "cursor advance",
            )
            .await;
        }
        for (clients, per_client) in BATCH {
            measure(
                &pool,
                clients,
                per_client,
                Measure::Finish,
                Measure::RawFinish,
                "run finish",
            )
            .await;
        }
        pool.close().await;
    });
    let after = fsync_latency();
    println!(
        "fsync (8 KiB write + fdatasync): {before:.2?} ({}) before, {after:.2?} ({}) after",
        mode(before),
        mode(after)
    );
    drop(server);
}
