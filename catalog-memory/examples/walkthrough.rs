//! A tour of the catalog on the in-memory backend: a pipeline, its writer lease, a run with
//! checkpoints, schema evolution (accepted, then held for review), a fenced zombie, and the audit
//! log.
//!
//! Run it with `cargo run -p hakiri-catalog-memory --example walkthrough`.

use std::sync::Arc;
use std::time::Duration;

use hakiri_catalog_memory::MemoryCatalog;
use hakiri_core::{
    Actor, BeginRun, Catalog, CatalogExt, Column, ColumnType, ConnectorRef, CursorKind,
    CursorValue, Decide, FinishRun, HolderId, Limit, ManualClock, OperatorName, PipelineId,
    PipelineSpec, ProjectId, Reason, Resolution, Result, Schema, StreamName, StreamStats,
    Timestamp, Trigger,
};
use serde_json::json;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let clock = ManualClock::new(Timestamp::from_millis(1_800_000_000_000));
    let catalog = MemoryCatalog::with_clock(ProjectId::new("demo")?, Arc::new(clock.clone()));
    let alice = Actor::Operator(OperatorName::new("alice")?);
    let orders = PipelineId::new("orders")?;
    let stream = StreamName::new("public.orders")?;

    let spec = PipelineSpec::new(
        orders.clone(),
        ConnectorRef::new("jsonl")?,
        CursorKind::Monotonic,
    );
    let pipeline = catalog.create_pipeline(spec, &alice).await?;
    println!(
        "created pipeline {} (generation {})",
        pipeline.id(),
        pipeline.generation
    );

    let worker = HolderId::new("worker-1")?;
    let lease = catalog
        .acquire(&orders, &worker, Duration::from_secs(30))
        .await?;
    println!("{worker} holds the writer lease, epoch {}", lease.epoch);

    let run = catalog
        .begin_run(&lease, BeginRun::new(Trigger::Manual))
        .await?;
    println!("run {} began", run.id);
    let v1 = Schema::new(
        vec![
            Column::new("id", ColumnType::Integer, false),
            Column::new("updated_at", ColumnType::Timestamp, false),
        ],
        vec!["id".into()],
    )?;
    let seen = catalog
        .observe_schema(&lease, run.id, &stream, v1.clone())
        .await?;
    println!(
        "first schema: version {} ({})",
        seen.current.version, seen.verdict
    );
    for watermark in ["2026-11-01T00:00:00.000Z", "2026-11-02T00:00:00.000Z"] {
        let cursor = catalog
            .advance_to(&lease, run.id, &stream, CursorValue::new(json!(watermark))?)
            .await?;
        println!(
            "checkpoint: cursor {} at version {}",
            cursor.value, cursor.version
        );
    }
    match catalog
        .advance_to(
            &lease,
            run.id,
            &stream,
            CursorValue::new(json!("2026-10-01T00:00:00.000Z"))?,
        )
        .await
    {
        Err(e) => println!("a backwards checkpoint is refused: {e}"),
        Ok(_) => println!("unexpected: a backwards checkpoint was accepted"),
    }

    let mut columns = v1.columns().to_vec();
    columns.push(Column::new("note", ColumnType::String, true));
    let v2 = Schema::new(columns, vec!["id".into()])?;
    let finish = FinishRun::succeeded()
        .with_cursor(
            stream.clone(),
            CursorValue::new(json!("2026-11-03T00:00:00.000Z"))?,
        )
        .with_stats(stream.clone(), StreamStats::new(1200, 96_000))
        .with_schema(stream.clone(), v2.clone());
    let done = catalog.finish_run(&lease, run.id, finish).await?;
    println!(
        "run finished {} with cursor {}",
        done.status, done.cursors_at_end[&stream]
    );
    let current = catalog.get_schema(&orders, &stream, None).await?;
    println!(
        "an added nullable column was accepted: schema version {}",
        current.version
    );

    // The worker stalls past its lease; someone else takes over; the zombie is fenced.
    clock.advance(Duration::from_secs(31));
    let other = catalog
        .acquire(
            &orders,
            &HolderId::new("worker-2")?,
            Duration::from_secs(30),
        )
        .await?;
    println!("worker-2 took over with epoch {}", other.epoch);
    match catalog
        .begin_run(&lease, BeginRun::new(Trigger::Manual))
        .await
    {
        Err(e) => println!("the zombie is fenced: {e}"),
        Ok(_) => println!("unexpected: the zombie wrote"),
    }

    // A breaking change is held for review and pauses the pipeline.
    let run = catalog
        .begin_run(&other, BeginRun::new(Trigger::Schedule))
        .await?;
    let mut columns = v2.columns().to_vec();
    columns[1] = Column::new("updated_at", ColumnType::Date, false);
    let v3 = Schema::new(columns, vec!["id".into()])?;
    let seen = catalog.observe_schema(&other, run.id, &stream, v3).await?;
    let decision = seen.decision.expect("a change records a decision");
    println!(
        "updated_at became a date: {} change, {} (decision {})",
        decision.class, seen.verdict, decision.id
    );
    let paused = catalog.get_pipeline(&orders).await?;
    println!(
        "pipeline paused: {}",
        paused.paused.map_or("no".into(), |p| p.reason.to_string())
    );
    catalog
        .finish_run(
            &other,
            run.id,
            FinishRun::new(hakiri_core::Outcome::Cancelled {
                reason: Reason::new("schema held")?,
            }),
        )
        .await?;
    let decided = catalog
        .decide(
            decision.id,
            Decide {
                resolution: Resolution::Accept,
                by: alice.clone(),
                reason: Reason::new("the source truncates to days now")?,
            },
        )
        .await?;
    println!(
        "alice accepted decision {}: schema version {:?}",
        decided.id, decided.to_version
    );
    println!(
        "pipeline paused: {}",
        catalog.get_pipeline(&orders).await?.paused.is_some()
    );

    println!("\naudit log:");
    for event in catalog.events(0, Limit::MAX).await? {
        println!(
            "  #{:<3} {} {:<24} {:?}",
            event.seq,
            event.at,
            event.actor.to_string(),
            event.kind
        );
    }
    Ok(())
}
