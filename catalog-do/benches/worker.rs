//! The catalog through a real Worker in a local `workerd`: cursor advances per second against two
//! round trips to the same project's Durable Object, measured in the same run:
//! - the floor (`/floor`, ADR 0037): one guarded `UPDATE` of a scratch row through the object's
//!   SQL API, the least an advance could write (goal: advances ≥ 0.8× the floor);
//! - the layout floor (`/floor` with `layout`): the rows an advance must write in the catalog's
//!   layout, the cursor and the event carrying its history entry, in one `transactionSync`. It
//!   splits the gap: floor → layout floor is what the layout and the atomic unit cost, layout
//!   floor → advance is the catalog's own work (the request's decoding, the lease, run and cursor
//!   read and checked, the answer) and its larger request and answer;
//! - a trivial round trip (`/ping`), which touches no storage.
//!
//! `cargo bench -p hakiri-catalog-do --bench worker` builds the Worker (like the tests), starts
//! `workerd` on a loopback port with the test hooks on (they open `/floor`), and prints medians
//! over interleaved batches. All three pay the same HTTP hop, authentication and object routing.
//! Needs `scripts/setup` to have installed the Worker tools.

// A benchmark binary, not an API.
#![allow(missing_docs)]

use std::time::{Duration, Instant};

use hakiri_core::{CatalogExt, CursorKind, CursorValue, ProjectId, StreamName};
use hakiri_protocol::{HttpCatalog, HttpConfig};
use hakiri_test_kit::bench::median;
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

fn per_second(batch: usize, start: Instant) -> f64 {
    batch as f64 / start.elapsed().as_secs_f64()
}

/// One POST as the admin; panics unless it succeeds.
async fn post(http: &reqwest::Client, url: &str, body: Option<serde_json::Value>) {
    let mut request = http.post(url).bearer_auth(workerd::ADMIN_TOKEN);
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_string());
    }
    let answer = request.send().await.unwrap();
    let status = answer.status();
    let text = answer.text().await.unwrap();
    assert!(status.is_success(), "{url}: {status} {text}");
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
        let catalog = HttpCatalog::connect(
            &server.url(),
            project,
            workerd::ADMIN_TOKEN,
            HttpConfig::default(),
        )
        .unwrap();
        let spec = fixtures::spec("p", CursorKind::Monotonic);
        let hour = Duration::from_secs(3600);
        let (lease, run) = fixtures::begun(&catalog, spec, "bench", hour).await;
        let stream = StreamName::new("s").unwrap();
        let http = reqwest::Client::new();
        let ping_url = format!("{}/v1/projects/bench/ping", server.url());
        let floor_url = format!("{}/v1/projects/bench/floor", server.url());
        let (mut next, mut floor_version, mut layout_version) = (1u64, 0u64, 0u64);

        let (mut advances, mut floors, mut layouts, mut pings) = (vec![], vec![], vec![], vec![]);
        let (mut of_floor, mut of_layout, mut of_ping) = (vec![], vec![], vec![]);
        for round in 0..=rounds {
            let start = Instant::now();
            for _ in 0..batch {
                post(&http, &ping_url, None).await;
            }
            let ping = per_second(batch, start);
            let start = Instant::now();
            for _ in 0..batch {
                let write = json!({"value": floor_version + 1, "version": floor_version});
                post(&http, &floor_url, Some(write)).await;
                floor_version += 1;
            }
            let floor = per_second(batch, start);
            let start = Instant::now();
            for _ in 0..batch {
                let write = json!({
                    "value": layout_version + 1,
                    "version": layout_version,
                    "layout": true
                });
                post(&http, &floor_url, Some(write)).await;
                layout_version += 1;
            }
            let layout = per_second(batch, start);
            let start = Instant::now();
            for _ in 0..batch {
                let value = CursorValue::new(json!(next)).unwrap();
                let advanced = catalog.advance_to(&lease, run.id, &stream, value).await;
                advanced.unwrap();
                next += 1;
            }
            let advance = per_second(batch, start);
            if round == 0 {
                continue; // warm-up: connections, the object's first load, prepared statements
            }
            pings.push(ping);
            floors.push(floor);
            layouts.push(layout);
            advances.push(advance);
            of_floor.push(advance / floor);
            of_layout.push(advance / layout);
            of_ping.push(advance / ping);
        }
        let after = disk::fdatasync_time(persist.path());
        println!(
            "disk: fdatasync {before:?} before ({}), {after:?} after ({})",
            disk::mode(before),
            disk::mode(after)
        );
        println!(
            "Worker in a local workerd, sequential requests, \
             {rounds} interleaved rounds of {batch}, medians"
        );
        let (ping, floor) = (median(pings), median(floors));
        let (advance, ratio) = (median(advances), median(of_floor));
        let met = if ratio >= 0.8 { "met" } else { "NOT met" };
        println!("  round trip to the project's object (/ping)    {ping:>7.0}/s");
        println!("  floor: one guarded UPDATE (/floor)            {floor:>7.0}/s");
        println!(
            "  layout floor: cursor and event, atomic        {:>7.0}/s",
            median(layouts)
        );
        println!("  cursor advance through the catalog            {advance:>7.0}/s");
        println!(
            "  advance/floor {ratio:.2} (goal ≥ 0.80: {met}), advance/layout floor {:.2}, \
             advance/ping {:.2}",
            median(of_layout),
            median(of_ping)
        );
    });
    server.stop();
}
