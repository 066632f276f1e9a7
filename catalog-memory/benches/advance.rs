//! Cursor advances per second on the in-memory backend (`docs/guarantees.md`, “Fast”: ≥
//! 1,000,000/s on one core).
//!
//! Run with `cargo bench -p hakiri-catalog-memory`. Each sample gets a fresh catalog, so history
//! growth from earlier samples does not skew later ones.

// criterion's macros generate undocumented public items.
#![allow(missing_docs)]

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use hakiri_catalog_memory::MemoryCatalog;
use hakiri_core::{CatalogExt, CursorKind, CursorValue, ProjectId, StreamName};
use hakiri_test_kit::fixtures;

fn advance(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("memory");
    group.throughput(Throughput::Elements(1));
    group.bench_function("cursor_advance", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let catalog = MemoryCatalog::new(ProjectId::new("bench").expect("id"));
                let spec = fixtures::spec("p", CursorKind::Monotonic);
                let (lease, run) =
                    fixtures::begun(&catalog, spec, "bench", Duration::from_secs(3600)).await;
                let stream = StreamName::new("s").expect("id");
                let values: Vec<CursorValue> = (1..=iters)
                    .map(|i| CursorValue::new(serde_json::json!(i)).expect("value"))
                    .collect();
                let start = Instant::now();
                for value in values {
                    catalog
                        .advance_to(&lease, run.id, &stream, value)
                        .await
                        .expect("advance");
                }
                start.elapsed()
            })
        });
    });
    group.finish();
}

criterion_group!(benches, advance);
criterion_main!(benches);
