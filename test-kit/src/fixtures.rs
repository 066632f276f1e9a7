//! Fixtures on any backend, through the port only.

use std::time::Duration;

use hakiri_core::{
    Actor, BeginRun, Catalog, CatalogExt, ConnectorRef, CursorKind, CursorValue, HolderId, Lease,
    PipelineId, PipelineSpec, Run, StreamName, Trigger,
};

/// A manual pipeline `id` on the `test` connector with cursors of `kind`.
///
/// # Panics
/// When `id` is not a valid pipeline id.
pub fn spec(id: &str, kind: CursorKind) -> PipelineSpec {
    PipelineSpec::new(
        PipelineId::new(id).expect("a valid pipeline id"),
        ConnectorRef::new("test").expect("a valid connector"),
        kind,
    )
}

/// Creates `spec`'s pipeline (as the system), takes its lease as `holder` for `ttl` and begins a
/// manual run: where most tests and benchmarks of a single writer start.
///
/// # Panics
/// When any of the three is refused.
pub async fn begun(
    catalog: &(impl Catalog + ?Sized),
    spec: PipelineSpec,
    holder: &str,
    ttl: Duration,
) -> (Lease, Run) {
    let pipeline = spec.id.clone();
    catalog
        .create_pipeline(spec, &Actor::System)
        .await
        .unwrap_or_else(|e| panic!("create pipeline {pipeline}: {e}"));
    let holder = HolderId::new(holder).expect("a valid holder id");
    let lease = catalog
        .acquire(&pipeline, &holder, ttl)
        .await
        .unwrap_or_else(|e| panic!("acquire {pipeline}: {e}"));
    let run = catalog
        .begin_run(&lease, BeginRun::new(Trigger::Manual))
        .await
        .unwrap_or_else(|e| panic!("begin a run of {pipeline}: {e}"));
    (lease, run)
}

/// For the stall tests of every backend: pipeline `orders` with a run in progress under a lease
/// of `ttl` held by `worker-1`, and one checkpoint (7) of stream `orders`.
///
/// # Panics
/// When the catalog refuses any step.
pub async fn running_with_a_checkpoint(
    catalog: &(impl Catalog + ?Sized),
    ttl: Duration,
) -> PipelineId {
    let (lease, run) = begun(
        catalog,
        spec("orders", CursorKind::Monotonic),
        "worker-1",
        ttl,
    )
    .await;
    let stream = StreamName::new("orders").expect("a valid stream name");
    let value = CursorValue::new(serde_json::json!(7)).expect("a valid cursor value");
    catalog
        .advance_to(&lease, run.id, &stream, value)
        .await
        .expect("checkpoint");
    lease.pipeline
}
