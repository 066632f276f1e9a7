//! The conveniences core builds on the port (`CatalogExt::tail_after`, `plan::current`), checked
//! on the memory catalog against what reading the whole log or the whole snapshot gives.

use std::time::Duration;

use hakiri_catalog_memory::MemoryCatalog;
use hakiri_core::plan::{current, plan, Action, SkipReason};
use hakiri_core::{
    Catalog, CatalogExt, CursorKind, CursorValue, Limit, PipelineId, ProjectId, StreamName,
};
use hakiri_test_kit::fixtures;

/// Pipelines `a` and `b` with runs in progress and `checkpoints` checkpoints each, interleaved.
async fn interleaved(checkpoints: u64) -> MemoryCatalog {
    let catalog = MemoryCatalog::new(ProjectId::new("ext").unwrap());
    let ttl = Duration::from_secs(60);
    let (a, run_a) = fixtures::begun(
        &catalog,
        fixtures::spec("a", CursorKind::Monotonic),
        "w",
        ttl,
    )
    .await;
    let (b, run_b) = fixtures::begun(
        &catalog,
        fixtures::spec("b", CursorKind::Monotonic),
        "w",
        ttl,
    )
    .await;
    let stream = StreamName::new("s").unwrap();
    for i in 1..=checkpoints {
        let value = CursorValue::new(serde_json::json!(i)).unwrap();
        catalog
            .advance_to(&a, run_a.id, &stream, value.clone())
            .await
            .unwrap();
        if i % 3 == 0 {
            catalog
                .advance_to(&b, run_b.id, &stream, value)
                .await
                .unwrap();
        }
    }
    catalog
}

#[tokio::test]
async fn tail_after_starts_the_last_n_events_of_the_log_or_of_a_pipeline() {
    let catalog = interleaved(40).await;
    let all = catalog.events(0, Limit::MAX).await.unwrap();
    let b = PipelineId::new("b").unwrap();
    let slice: Vec<u64> = all
        .iter()
        .filter(|e| e.pipeline == b)
        .map(|e| e.seq)
        .collect();
    for n in [0, 1, 2, 5, 16, 53, 1_000, u64::MAX] {
        let after = catalog.tail_after(None, n).await.unwrap();
        let tail = catalog.events(after, Limit::MAX).await.unwrap();
        let expected = all.len().min(usize::try_from(n).unwrap_or(usize::MAX));
        assert_eq!(tail.len(), expected, "the last {n} of the log");
        assert_eq!(tail, all[all.len() - expected..], "the last {n} of the log");

        let after = catalog.tail_after(Some(&b), n).await.unwrap();
        let tail: Vec<u64> = catalog
            .pipeline_events(&b, after, Limit::MAX)
            .await
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect();
        let expected = slice.len().min(usize::try_from(n).unwrap_or(usize::MAX));
        assert_eq!(tail, slice[slice.len() - expected..], "b's last {n}");
    }
    // The last 0: the log's end, its last event's number.
    let last = all.last().unwrap().seq;
    assert_eq!(catalog.tail_after(None, 0).await.unwrap(), last);
    let empty = MemoryCatalog::new(ProjectId::new("empty").unwrap());
    assert_eq!(empty.tail_after(None, 10).await.unwrap(), 0);
    assert_eq!(empty.tail_after(None, 0).await.unwrap(), 0);
}

#[tokio::test]
async fn current_is_the_plan_of_the_whole_snapshot_at_the_catalogs_clock() {
    let catalog = interleaved(3).await;
    catalog
        .create_pipeline(
            fixtures::spec("c", CursorKind::Monotonic),
            &hakiri_core::Actor::System,
        )
        .await
        .unwrap();
    let planned = current(&catalog).await.unwrap();
    let snapshot = catalog.all_statuses().await.unwrap();
    // The catalog's clock moves between the two reads (a system clock): the plan is the one of
    // the same statuses at its own time, which is not after the second read's.
    assert!(planned.as_of <= snapshot.as_of, "{planned:?} {snapshot:?}");
    assert_eq!(planned, plan(&snapshot.items, planned.as_of));
    let actions: Vec<(&str, &Action)> = planned
        .items
        .iter()
        .map(|item| (item.pipeline.as_str(), &item.action))
        .collect();
    let running = |name: &str| {
        let run = snapshot
            .items
            .iter()
            .find(|s| s.pipeline.id().as_str() == name)
            .and_then(|s| s.last_run.as_ref())
            .map(|r| r.id)
            .unwrap();
        Action::Skip {
            reason: SkipReason::Running { run },
        }
    };
    assert_eq!(actions[0], ("a", &running("a")));
    assert_eq!(actions[1], ("b", &running("b")));
    assert_eq!(
        actions[2],
        (
            "c",
            &Action::Skip {
                reason: SkipReason::Manual
            }
        ),
        "a manual pipeline never runs by itself"
    );
}
