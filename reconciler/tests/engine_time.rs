//! The reconciler's timing, on paused tokio time (a minute passes in no time at all) with a
//! catalog whose clock is tokio's: lease renewal keeps a long run alive, and a run whose
//! renewals fail is fenced once its lease expires and another holder takes the pipeline; the
//! per-connector concurrency limit; the shutdown's soft stop, its grace period and the hard
//! cancel after it.

mod common;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use common::Faulty;
use hakiri_catalog_memory::MemoryStore;
use hakiri_core::{
    Actor, Catalog, CatalogExt, Clock, ConnectorConfig, ConnectorRef, CursorKind, CursorValue,
    Error, HolderId, PipelineId, PipelineSpec, ProjectId, RunQuery, RunStatus, Schedule,
    StreamName, Timestamp,
};
use hakiri_reconciler::{
    Connector, ConnectorError, Connectors, Reconciler, ReconcilerConfig, RunContext,
};
use serde_json::json;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The catalog's clock follows tokio's, paused or not.
#[derive(Debug)]
struct TokioClock {
    start: Instant,
}

impl Clock for TokioClock {
    fn now(&self) -> Timestamp {
        let elapsed = i64::try_from(self.start.elapsed().as_millis()).unwrap_or(i64::MAX);
        Timestamp::from_millis(1_800_000_000_000 + elapsed)
    }
}

fn catalog() -> Arc<dyn Catalog> {
    let clock = TokioClock {
        start: Instant::now(),
    };
    let store = MemoryStore::new(Arc::new(clock));
    Arc::new(store.catalog(ProjectId::new("timing").unwrap()))
}

/// Works for `for_secs` (checkpointing every second), honouring a cancel; a soft stop ends it
/// early only if `honours_stop`.
#[derive(Debug, Clone, Copy)]
struct Sleeper {
    for_secs: u64,
    honours_stop: bool,
}

#[async_trait]
impl Connector for Sleeper {
    async fn run(&self, ctx: &RunContext) -> Result<(), ConnectorError> {
        let stream = StreamName::new("ticks").unwrap();
        for second in 1..=self.for_secs {
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
                () = ctx.cancelled() => return Err(ConnectorError::Stopped("cancelled".into())),
                () = ctx.stopping(), if self.honours_stop => {
                    return Err(ConnectorError::Stopped("asked to stop".into()))
                }
            }
            ctx.checkpoint(&stream, CursorValue::new(json!(second)).unwrap())
                .await?;
        }
        Ok(())
    }
}

/// The connectors of a reconciler whose `sleeper` works for `for_secs` and ignores a soft stop.
fn sleeper(for_secs: u64) -> Connectors {
    Connectors::new().with(
        "sleeper",
        Sleeper {
            for_secs,
            honours_stop: false,
        },
    )
}

async fn pipeline(catalog: &dyn Catalog, id: &str, connector: &str) {
    let spec = PipelineSpec::new(
        PipelineId::new(id).unwrap(),
        ConnectorRef::new(connector).unwrap(),
        CursorKind::Monotonic,
    )
    .with_schedule(Schedule::Interval(Duration::from_secs(3600)))
    .with_config(ConnectorConfig::new(json!({})).unwrap());
    catalog.create_pipeline(spec, &Actor::System).await.unwrap();
}

fn config(holder: &str) -> ReconcilerConfig {
    ReconcilerConfig::new(HolderId::new(holder).unwrap()).lease_ttl(Duration::from_secs(30))
}

async fn statuses(catalog: &dyn Catalog) -> Vec<RunStatus> {
    let runs = catalog.list_runs(&RunQuery::all()).await.unwrap();
    runs.items.iter().map(|run| run.status).collect()
}

/// A run ten lease lifetimes long succeeds: its lease is renewed all along.
#[tokio::test(start_paused = true)]
async fn renewal_keeps_a_run_longer_than_its_lease_alive() {
    let catalog = catalog();
    pipeline(&*catalog, "long", "sleeper").await;
    let reconciler = Reconciler::new(catalog.clone(), sleeper(300), config("r1"));
    let started = Instant::now();
    let mut ends = Vec::new();
    reconciler
        .run_until_idle(2, |_, e| ends.extend_from_slice(e))
        .await
        .unwrap();
    assert!(started.elapsed() >= Duration::from_secs(300));
    assert_eq!(ends.len(), 1);
    assert_eq!(ends[0].status, Some(RunStatus::Succeeded), "{:?}", ends[0]);
    assert_eq!(statuses(&*catalog).await, [RunStatus::Succeeded]);
}

/// Without renewals the lease expires: another holder takes the pipeline (which abandons the
/// run), and the run is fenced — its next renewal sees it and cancels it, and nothing it does
/// afterwards is recorded.
#[tokio::test(start_paused = true)]
async fn a_run_whose_renewals_fail_is_fenced_once_another_holder_takes_over() {
    let inner = catalog();
    let faulty = Faulty::new(inner.clone());
    faulty.fail_renewals(Some(Error::Unavailable(
        "renewals fail in this test".into(),
    )));
    let catalog: Arc<dyn Catalog> = Arc::new(faulty.clone());
    pipeline(&*catalog, "long", "sleeper").await;
    let reconciler = Reconciler::new(catalog.clone(), sleeper(300), config("r1"));
    let takeover = async {
        // Past the 30 s lease, another holder takes the pipeline.
        tokio::time::sleep(Duration::from_secs(45)).await;
        faulty.fail_renewals(None);
        let pipeline = PipelineId::new("long").unwrap();
        inner
            .acquire(
                &pipeline,
                &HolderId::new("r2").unwrap(),
                Duration::from_secs(600),
            )
            .await
            .expect("the expired lease is free")
    };
    let mut ends = Vec::new();
    let started = Instant::now();
    let (ran, lease) = tokio::join!(
        reconciler.run_until_idle(1, |_, e| ends.extend_from_slice(e)),
        takeover
    );
    ran.unwrap();
    // Stopped at the first renewal after the takeover (every 10 s), not after 300 s of work.
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(ends.len(), 1);
    assert_eq!(
        ends[0].status, None,
        "the fenced run's end is not recorded: {:?}",
        ends[0]
    );
    assert_eq!(statuses(&*inner).await, [RunStatus::Abandoned]);
    let cursor = inner
        .get_cursor(&lease.pipeline, &StreamName::new("ticks").unwrap())
        .await
        .unwrap()
        .expect("checkpoints before the takeover");
    assert!(
        cursor.value.as_json().as_u64().unwrap() < 45,
        "nothing written after the takeover: {cursor:?}"
    );
    assert_eq!(reconciler.metrics().lease_losses.get(), 1);
}

/// With one slot for the connector, a tick dispatches one of its two due pipelines and defers
/// the other; once the first ends, the next tick dispatches it.
#[tokio::test(start_paused = true)]
async fn a_connector_limit_defers_what_is_over_it() {
    let catalog = catalog();
    pipeline(&*catalog, "a", "sleeper").await;
    pipeline(&*catalog, "b", "sleeper").await;
    let connectors = sleeper(5);
    let config = config("r1")
        .max_concurrent(4)
        .per_connector(ConnectorRef::new("sleeper").unwrap(), 1);
    let reconciler = Reconciler::new(catalog.clone(), connectors, config);
    let first = reconciler.tick().await.unwrap();
    assert_eq!(first.dispatched.len(), 1, "{first:?}");
    assert_eq!(first.deferred.len(), 1, "{first:?}");
    let second = reconciler.tick().await.unwrap();
    assert!(
        second.dispatched.is_empty(),
        "still over the limit: {second:?}"
    );
    let ends = reconciler.wait_runs().await;
    assert_eq!(ends.len(), 1);
    let third = reconciler.tick().await.unwrap();
    assert_eq!(third.dispatched.len(), 1, "{third:?}");
    assert_ne!(third.dispatched[0].0, first.dispatched[0].0);
    reconciler.wait_runs().await;
    assert_eq!(
        statuses(&*catalog).await,
        [RunStatus::Succeeded, RunStatus::Succeeded]
    );
}

/// A shutdown asks runs to stop: one that honours it ends at once; one that does not is
/// cancelled when the grace period is over, not before and not later. Both end cancelled.
#[tokio::test(start_paused = true)]
async fn a_shutdown_stops_softly_then_cancels_at_the_end_of_the_grace() {
    let catalog = catalog();
    pipeline(&*catalog, "polite", "polite").await;
    pipeline(&*catalog, "stubborn", "stubborn").await;
    let connectors = Connectors::new()
        .with(
            "polite",
            Sleeper {
                for_secs: 3600,
                honours_stop: true,
            },
        )
        .with(
            "stubborn",
            Sleeper {
                for_secs: 3600,
                honours_stop: false,
            },
        );
    let grace = Duration::from_secs(20);
    let reconciler = Reconciler::new(catalog.clone(), connectors, config("r1").grace(grace));
    let shutdown = CancellationToken::new();
    let stop = async {
        tokio::time::sleep(Duration::from_secs(5)).await;
        shutdown.cancel();
        Instant::now()
    };
    let (ran, asked) = tokio::join!(reconciler.run(shutdown.clone(), |_| {}), stop);
    ran.unwrap();
    let took = asked.elapsed();
    assert_eq!(
        took, grace,
        "the stubborn run was cancelled at the end of the grace"
    );
    let runs = catalog.list_runs(&RunQuery::all()).await.unwrap().items;
    assert_eq!(runs.len(), 2);
    for run in &runs {
        assert_eq!(run.status, RunStatus::Cancelled, "{run:?}");
    }
    let polite = runs
        .iter()
        .find(|r| r.pipeline.as_str() == "polite")
        .unwrap();
    let stubborn = runs
        .iter()
        .find(|r| r.pipeline.as_str() == "stubborn")
        .unwrap();
    let ended =
        |run: &hakiri_core::Run| run.finished_at.unwrap().as_millis() - run.started_at.as_millis();
    assert!(
        ended(polite) < 6_000,
        "the polite run stopped when asked: {polite:?}"
    );
    assert!(
        ended(stubborn) >= 25_000,
        "the stubborn run ran through the grace: {stubborn:?}"
    );
    assert!(polite
        .error
        .as_ref()
        .unwrap()
        .message
        .contains("asked to stop"));
}
