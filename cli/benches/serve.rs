//! `hakiri serve` against the same catalog in-process, measured in the same run.
//!
//! `cargo bench -p hakiri-cli --bench serve` prints, per backend and at 1 and 16 concurrent
//! clients, the median cursor advances per second over interleaved rounds of
//! - in-process: the catalog opened as the CLI opens it (`SqliteCatalog::open` on a file with the
//!   default config; a `PostgresCatalog` on the CLI's pool of 4), every client a task advancing
//!   its own pipeline's cursor on the one shared catalog, as the server's requests do;
//! - serve: the real `hakiri serve` binary on a catalog of the same kind (its own file on the
//!   same disk; its own project on the same Postgres server), every client its own `HttpCatalog`
//!   (its own connection) advancing its own pipeline's cursor over loopback;
//!
//! and the median of per-round ratios serve/in-process. The goal stated for the server: HTTP adds
//! under 25% at 16 clients on the SQLite file (serve/in-process ≥ 0.80); it is printed as met or
//! missed, never asserted. The disk switches between a fast and a slow mode, so the sides
//! alternate within each round (the first side alternating too) and the fsync latency is printed
//! before and after.

// A benchmark binary, not an API.
#![allow(missing_docs)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;

use common::serve::Served;
use hakiri_catalog_do::{SqliteCatalog, SqliteConfig};
use hakiri_catalog_postgres::{PostgresCatalog, PostgresConfig};
use hakiri_core::{Catalog, ProjectId};
use hakiri_protocol::{HttpCatalog, HttpConfig};
use hakiri_test_kit::bench::{concurrently, median, Writer};
use hakiri_test_kit::{disk, postgres};

/// Client counts, each with the advances every client makes per batch.
const CLIENTS: [(usize, usize); 2] = [(1, 200), (16, 40)];
/// The goal: serve's rate at least this share of in-process at 16 clients on SQLite.
const GOAL: f64 = 0.80;

/// Rounds, and a divisor of the batches: the full measurement under `cargo bench`; under
/// `cargo test --all-targets` (which runs bench targets without `--bench`) a smoke run of the
/// same code.
fn sizes() -> (usize, usize) {
    if std::env::args().any(|a| a == "--bench") {
        (10, 1)
    } else {
        (1, 20)
    }
}

/// `n` writers on pipelines `{prefix}-{i}`, each opened by `open`.
async fn writers(n: usize, prefix: &str, open: impl Fn() -> Arc<dyn Catalog>) -> Vec<Writer> {
    let mut all = Vec::new();
    for i in 0..n {
        all.push(Writer::begun(open(), &format!("{prefix}-{i}")).await);
    }
    all
}

/// The in-process catalog and the server of one backend.
struct Backend {
    label: &'static str,
    local: Arc<dyn Catalog>,
    server: Served,
    project: ProjectId,
}

impl Backend {
    /// A client of the server, with a connection of its own.
    fn remote(&self) -> Arc<dyn Catalog> {
        Arc::new(
            HttpCatalog::connect(
                &self.server.url,
                self.project.clone(),
                &self.server.token,
                HttpConfig::default(),
            )
            .expect("a client for hakiri serve"),
        )
    }

    /// Measures and prints both sides at each client count; returns the 16-client ratio.
    async fn measure(&self, rounds: usize, divisor: usize) -> f64 {
        let mut last_ratio = 0.0;
        for (clients, per_client) in CLIENTS {
            let per_client = (per_client / divisor).max(1);
            let local = self.local.clone();
            let prefix = format!("c{clients}");
            let mut sides = [
                writers(clients, &prefix, || local.clone()).await,
                writers(clients, &prefix, || self.remote()).await,
            ];
            // Warm up both sides (page cache, statements, connections).
            for side in &mut sides {
                concurrently(side, per_client.div_ceil(4)).await;
            }
            let (mut rates, mut ratios) = ([Vec::new(), Vec::new()], Vec::new());
            for round in 0..rounds {
                let mut rate = [0.0; 2];
                for side in [round % 2, 1 - round % 2] {
                    rate[side] = concurrently(&mut sides[side], per_client).await;
                }
                eprintln!(
                    "{} {clients} clients, round {round}: in-process {:.0}/s, serve {:.0}/s",
                    self.label, rate[0], rate[1]
                );
                rates[0].push(rate[0]);
                rates[1].push(rate[1]);
                ratios.push(rate[1] / rate[0]);
            }
            let [local, served] = rates;
            last_ratio = median(ratios);
            println!(
                "{:<7} {clients:>2} clients: in-process {:>7.0}/s  serve {:>7.0}/s  serve/in-process {last_ratio:.2}x",
                self.label,
                median(local),
                median(served),
            );
        }
        last_ratio
    }
}

/// `hakiri serve` on `catalog`, on a free loopback port.
fn serve(catalog: &str) -> Served {
    let mut command = common::hakiri(catalog, "bench");
    command.args(["--output", "json", "serve", "--listen", "127.0.0.1:0"]);
    Served::start(&command, &[])
}

fn main() {
    let (rounds, divisor) = sizes();
    let dir =
        tempfile::tempdir_in(std::env::var("HAKIRI_BENCH_DIR").unwrap_or_else(|_| ".".into()))
            .expect("a directory for the catalogs");
    let before = disk::fdatasync_time(dir.path());
    let pg = postgres::Server::start();
    postgres::migrate(pg.url()).expect("migrate");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    println!(
        "cursor advance/s, hakiri serve (HTTP on loopback) vs the same catalog in-process, \
         {rounds} interleaved rounds, medians"
    );
    runtime.block_on(async {
        let local_dir = dir.path().join("local");
        std::fs::create_dir_all(&local_dir).expect("a directory for the local catalog");
        let project = ProjectId::new("bench").expect("a valid project");
        let sqlite = Backend {
            label: "sqlite",
            local: Arc::new(
                SqliteCatalog::open(
                    local_dir.join("bench.db"),
                    project.clone(),
                    SqliteConfig::default(),
                )
                .expect("open the local SQLite catalog"),
            ),
            server: serve(&common::sqlite_catalog(&dir.path().join("served"))),
            project: project.clone(),
        };
        let ratio = sqlite.measure(rounds, divisor).await;
        println!(
            "goal: serve/in-process >= {GOAL:.2}x at 16 clients on SQLite (HTTP adds < 25%): {}",
            if ratio >= GOAL { "met" } else { "missed" }
        );
        sqlite.server.stop();

        // As the CLI connects (`cli/src/postgres.rs`): a pool of 4.
        let pool = PostgresConfig::default()
            .max_connections(4)
            .application_name("hakiri-cli")
            .connect(pg.url())
            .await
            .expect("connect to Postgres");
        let postgres = Backend {
            label: "postgres",
            local: Arc::new(PostgresCatalog::new(
                pool.clone(),
                ProjectId::new("bench-local").expect("a valid project"),
            )),
            server: serve(pg.url()),
            project: ProjectId::new("bench-served").expect("a valid project"),
        };
        postgres.measure(rounds, divisor).await;
        postgres.server.stop();
        pool.close().await;
    });
    let after = disk::fdatasync_time(dir.path());
    println!(
        "fsync (8 KiB write + fdatasync): {before:.2?} ({}) before, {after:.2?} ({}) after",
        disk::mode(before),
        disk::mode(after)
    );
    drop(pg);
}
