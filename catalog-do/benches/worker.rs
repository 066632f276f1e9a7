//! The catalog through a real Worker in a local `workerd`: cursor advances per second against a
//! trivial round trip to the same project's Durable Object (`/ping`), measured in the same run.
//!
//! `cargo bench -p hakiri-catalog-do --bench worker` builds the Worker (like the tests), starts
//! `workerd` on a loopback port, and prints medians over interleaved batches. Both sides pay the
//! same HTTP hop, authentication and object routing; the ratio is what the catalog adds (one
//! atomic unit of SQL in the object). Needs `scripts/setup` to have installed the Worker tools.

// A benchmark binary, not an API.
#![allow(missing_docs)]

use std::time::{Duration, Instant};

use hakiri_core::{CatalogExt, CursorKind, CursorValue, ProjectId, StreamName};
use hakiri_protocol::{HttpCatalog, HttpConfig};
use hakiri_test_kit::{disk, fixtures, workerd};
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

const FULL_ROUNDS: usize = 15;
const FULL_BATCH: usize = 50;

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
    let persist = tempfile::tempdir().unwrap();
    let server = workerd::Workerd::start(&workerd::WorkerdOptions::new(
        workerd::admin_grants(),
        persist.path(),
    ));
    let (rounds, batch) = sizes();
    let before = disk::fdatasync_time(persist.path());
    runtime.block_on(async {
        let project = ProjectId::new("bench").unwrap();
        let catalog = HttpCatalog::connect(&server.url(), project, workerd::ADMIN_TOKEN, HttpConfig::default()).unwrap();
        let spec = fixtures::spec("p", CursorKind::Monotonic);
        let (lease, run) = fixtures::begun(&catalog, spec, "bench", Duration::from_secs(3600)).await;
        let stream = StreamName::new("s").unwrap();
        let http = reqwest::Client::new();
        let ping_url = format!("{}/v1/projects/bench/ping", server.url());
        let mut next = 1u64;

        let (mut advance_rates, mut ping_rates, mut ratios) = (vec![], vec![], vec![]);
        for round in 0..=rounds {
            let start = Instant::now();
            for _ in 0..batch {
                let answer = http.post(&ping_url).bearer_auth(workerd::ADMIN_TOKEN).send().await.unwrap();
                assert!(answer.status().is_success());
                answer.bytes().await.unwrap();
            }
            let ping = batch as f64 / start.elapsed().as_secs_f64();
            let start = Instant::now();
            for _ in 0..batch {
                catalog.advance_to(&lease, run.id, &stream, CursorValue::new(json!(next)).unwrap()).await.unwrap();
                next += 1;
            }
            let advance = batch as f64 / start.elapsed().as_secs_f64();
            if round == 0 {
                continue; // warm-up: connections, the object's first load, prepared statements
            }
            ping_rates.push(ping);
            advance_rates.push(advance);
            ratios.push(advance / ping);
        }
        let after = disk::fdatasync_time(persist.path());
        println!("disk: fdatasync {before:?} before ({}), {after:?} after ({})", disk::mode(before), disk::mode(after));
        println!("Worker in a local workerd, sequential requests, {rounds} interleaved rounds of {batch}, medians");
        println!("trivial round trip to the project's Durable Object (/ping): {:>7.0} /s", median(ping_rates));
        println!("cursor advance through the catalog:                         {:>7.0} /s  ratio {:.2}x", median(advance_rates), median(ratios));
    });
    server.stop();
}
