//! Cursor advances per second on the in-memory backend against a raw baseline measured in the
//! same run (`docs/guarantees.md`, “Fast”: ≥ 2,000,000/s on one core).
//!
//! `cargo bench -p hakiri-catalog-memory --bench advance` prints the median rate of each side
//! over interleaved rounds and the median of the per-round ratios:
//! - hakiri: `advance_to` on a monotonic cursor, one writer, through the `Catalog` port (the lease
//!   fenced, the run checked, the value compared with the stored one, the history entry and the
//!   event appended), on a current-thread runtime;
//! - raw: a bare `Mutex<HashMap>` compare-and-set of a cursor's value and version, keeping no
//!   history and no events.
//!
//! Each round starts a new catalog, so the history and event log grow from empty in every round
//! as they would in a fresh project, and earlier rounds do not skew later ones.

// A benchmark binary, not an API.
#![allow(missing_docs)]

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hakiri_catalog_memory::MemoryCatalog;
use hakiri_core::{CatalogExt, CursorKind, CursorValue, ProjectId, StreamName};
use hakiri_test_kit::bench::median;
use hakiri_test_kit::fixtures;

/// Rounds and advances per round: the full measurement under `cargo bench`, a smoke run of the
/// same code under `cargo test --all-targets` (which runs bench targets without `--bench`).
fn sizes() -> (usize, u64) {
    if std::env::args().any(|a| a == "--bench") {
        (15, 200_000)
    } else {
        (1, 100)
    }
}

const GOAL: f64 = 2_000_000.0;

/// `n` advances of one stream on a new catalog; advances per second.
async fn hakiri(n: u64) -> f64 {
    let catalog = MemoryCatalog::new(ProjectId::new("bench").expect("id"));
    let spec = fixtures::spec("p", CursorKind::Monotonic);
    let (lease, run) = fixtures::begun(&catalog, spec, "bench", Duration::from_secs(3600)).await;
    let stream = StreamName::new("s").expect("id");
    let values: Vec<CursorValue> = (1..=n)
        .map(|i| CursorValue::new(serde_json::json!(i)).expect("value"))
        .collect();
    let start = Instant::now();
    for value in values {
        catalog
            .advance_to(&lease, run.id, &stream, value)
            .await
            .expect("advance");
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// `n` compare-and-sets of one cursor's value and version in a `Mutex<HashMap>`; per second.
fn raw(n: u64) -> f64 {
    let cursors: Mutex<HashMap<(String, String), (u64, serde_json::Value)>> =
        Mutex::new(HashMap::from([(("p".into(), "s".into()), (0, 0.into()))]));
    let key = ("p".to_owned(), "s".to_owned());
    let values: Vec<serde_json::Value> = (1..=n).map(serde_json::Value::from).collect();
    let start = Instant::now();
    for (expected, value) in (0..).zip(values) {
        let mut cursors = cursors.lock().expect("lock");
        let cursor = cursors.get_mut(&key).expect("the cursor");
        assert_eq!(cursor.0, expected, "compare");
        *cursor = (expected + 1, value);
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let (rounds, n) = sizes();
    // Warm up both sides (allocator, caches).
    runtime.block_on(hakiri(n.min(10_000)));
    raw(n.min(10_000));
    let (mut ours, mut theirs, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let before = raw(n);
        let rate = runtime.block_on(hakiri(n));
        let after = raw(n);
        ours.push(rate);
        theirs.push((before + after) / 2.0);
        ratios.push(rate / ((before + after) / 2.0));
    }
    let (ours, theirs, ratio) = (median(ours), median(theirs), median(ratios));
    println!("memory backend, one writer, {rounds} rounds of {n} advances (medians)");
    println!(
        "  hakiri advance      {ours:>12.0}/s   goal ≥ {GOAL:.0}/s: {}",
        verdict(ours >= GOAL)
    );
    println!("  raw Mutex<HashMap>  {theirs:>12.0}/s   compare-and-set, no history, no events");
    println!("  hakiri/raw          {ratio:>12.2}");
}

fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "NOT met"
    }
}
