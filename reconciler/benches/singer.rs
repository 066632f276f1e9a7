//! Records per second through the `singer` connector (Hakiri as the loader) against the same tap
//! piped straight to `/dev/null`, interleaved in one run (`docs/guarantees.md`, “Fast”: Hakiri in
//! the middle costs
//! ≤ 10% of a tap's records/s, a ratio ≥ 0.9).
//!
//! Run with `cargo bench -p hakiri-reconciler --bench singer` (release build). The tap is
//! `hakiri-fake-tap` printing one SCHEMA, then `RECORDS` records with a STATE every 10,000 (as
//! SDK taps do), each line flushed as a Python tap's would be. The Hakiri side is a whole run
//! through the `Reconciler` on the memory catalog: discovery, schema observation, every record
//! parsed, checked against its schema and written, and the states checkpointed after an
//! `fsync` (at most one per `checkpoint_interval_ms`, default 1 s). Each round runs both sides
//! back to back, alternating which goes first; the medians are compared. It also prints the
//! checkpoint commits per second the runs made. Under `cargo test --all-targets` it runs one
//! small round, to prove it still works.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hakiri_catalog_memory::MemoryCatalog;
use hakiri_core::{
    Actor, Catalog, CatalogExt, ConnectorConfig, ConnectorRef, CursorKind, HolderId, Limit,
    PipelineId, PipelineSpec, ProjectId, RunStatus, Schedule,
};
use hakiri_reconciler::{builtin, Reconciler, ReconcilerConfig};
use serde_json::{json, Value};

const TAP: &str = env!("CARGO_BIN_EXE_hakiri-fake-tap");

fn script(records: u64) -> Value {
    let schema = json!({"json": {"type": "SCHEMA", "stream": "orders", "key_properties": ["id"],
        "schema": {"properties": {"id": {"type": ["integer"]}, "amount": {"type": ["number", "null"]},
                                  "updated_at": {"type": ["string", "null"], "format": "date-time"},
                                  "note": {"type": ["string", "null"]}}}}});
    let record = json!({"type": "RECORD", "stream": "orders",
        "record": {"id": 12345, "amount": 10.5, "updated_at": "2026-01-01T00:00:00Z", "note": "a typical short note"},
        "time_extracted": "2026-12-01T12:00:00.000000+00:00"});
    let mut steps = vec![schema];
    let batches = records / 10_000;
    for batch in 1..=batches {
        steps.push(json!({"json": record, "times": 10_000}));
        steps.push(json!({"json": {"type": "STATE", "value": {"bookmarks": {"orders": {"replication_key_value": batch}}}}}));
    }
    Value::from(steps)
}

fn discovered() -> String {
    json!({"streams": [{"tap_stream_id": "orders", "key_properties": ["id"],
        "schema": {"properties": {"id": {"type": ["integer"]}, "amount": {"type": ["number", "null"]},
                                  "updated_at": {"type": ["string", "null"], "format": "date-time"},
                                  "note": {"type": ["string", "null"]}}}}]})
    .to_string()
}

/// The tap straight to /dev/null.
fn raw(script: &Path) -> Duration {
    let started = Instant::now();
    let status = Command::new(TAP)
        .args(["--script", script.to_str().unwrap()])
        .stdout(Stdio::null())
        .status()
        .expect("run the tap");
    assert!(status.success());
    started.elapsed()
}

/// One whole run through Hakiri; returns its time and the checkpoints it made.
async fn through_hakiri(script: &Path, out: &Path, round: usize) -> (Duration, u64) {
    let catalog: Arc<dyn Catalog> = Arc::new(MemoryCatalog::new(
        ProjectId::new(format!("bench-{round}")).unwrap(),
    ));
    let config = json!({
        "command": [TAP, "--script", script, "--catalog-json", discovered()],
        "output": out.join(round.to_string()),
    });
    let spec = PipelineSpec::new(
        PipelineId::new("taps").unwrap(),
        ConnectorRef::new("singer").unwrap(),
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
    let history = catalog
        .cursor_history(
            &PipelineId::new("taps").unwrap(),
            &hakiri_core::StreamName::new("orders").unwrap(),
            None,
            Limit::MAX,
        )
        .await
        .unwrap();
    (took, history.items.len() as u64)
}

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

#[tokio::main]
async fn main() {
    let measuring = std::env::args().any(|a| a == "--bench");
    let (records, rounds) = if measuring { (200_000, 7) } else { (10_000, 1) };
    let dir = tempfile::tempdir().unwrap();
    let script_path = dir.path().join("script.json");
    std::fs::write(&script_path, script(records).to_string()).unwrap();

    let (mut raws, mut hakiris, mut checkpoints) = (Vec::new(), Vec::new(), 0);
    for round in 0..rounds {
        let hakiri_first = round % 2 == 1;
        if hakiri_first {
            let (took, made) = through_hakiri(&script_path, dir.path(), round).await;
            hakiris.push(took);
            checkpoints += made;
        }
        raws.push(raw(&script_path));
        if !hakiri_first {
            let (took, made) = through_hakiri(&script_path, dir.path(), round).await;
            hakiris.push(took);
            checkpoints += made;
        }
        // Each round's output goes; the disk should not fill up.
        let _ = std::fs::remove_dir_all(dir.path().join(round.to_string()));
    }
    let total: Duration = hakiris.iter().sum();
    let (raw, hakiri) = (median(raws), median(hakiris));
    let rate = |d: Duration| records as f64 / d.as_secs_f64();
    println!("singer loader, {records} records per run, {rounds} interleaved rounds (medians):");
    println!("  tap > /dev/null        {:>12.0} records/s", rate(raw));
    println!("  tap → hakiri (loader)  {:>12.0} records/s", rate(hakiri));
    println!(
        "  hakiri/raw             {:>12.2}   (goal ≥ 0.90)",
        rate(hakiri) / rate(raw)
    );
    println!(
        "  checkpoint commits     {:>12.1} /s   ({checkpoints} in {:.1} s of runs)",
        checkpoints as f64 / total.as_secs_f64(),
        total.as_secs_f64()
    );
}
