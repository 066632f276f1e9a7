//! The contract suite: behavioural checks that every Hakiri catalog backend must pass, so that
//! backends are interchangeable (`docs/guarantees.md`).
//!
//! Each check is a plain `pub async fn <area_behaviour>(cx: &Ctx)` with a one-line doc naming the
//! rule it proves. [`contract_suite!`] emits one named `#[tokio::test]` per check for a backend,
//! each on a fresh project:
//!
//! ```text
//! hakiri_contract::contract_suite!(MemoryHarness::new());
//! ```
//!
//! # Layout
//! - this file: the [`Harness`] a backend provides, the per-test [`Ctx`] with fixtures, and the
//!   macros.
//! - [`pipelines`]: lifecycle, generations, pause/resume, delete.
//! - [`leases`]: single writer, fencing, renew, release, force, zombies, abandonment.
//! - [`runs`]: begin/finish, at most one running run, atomic finish, listing.
//! - [`cursors`]: monotonic and opaque rules, compare-and-set, history, reset and rollback.
//! - [`schemas`]: versions, evolution decisions, held → paused → decide.
//! - [`events`]: the gapless, ordered audit log.
//! - [`isolation`]: projects see nothing of each other.
//! - [`validation`]: invalid input is refused and changes nothing.
//! - [`archive`]: export and import keep everything; imports land only in empty projects.
//! - [`concurrency`]: racing writers, exact totals, never two live holders.
//! - [`model`]: random sequences of calls checked in lock step against a reference model
//!   ([`model_sequences!`]).
//! - [`history`]: concurrent histories of several clients (tasks or processes) and the checker of
//!   linearizable cursors and non-overlapping leases ([`concurrent_histories!`]).

use std::collections::BTreeMap;
use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use hakiri_core::{
    Actor, BeginRun, Catalog, CatalogExt, ConnectorRef, CursorKind, CursorValue, HolderId, Lease,
    OperatorName, Pipeline, PipelineId, PipelineSpec, ProjectId, Reason, Run, StreamName, Trigger,
};

pub mod archive;
pub mod concurrency;
pub mod cursors;
pub mod events;
pub mod history;
pub mod isolation;
pub mod leases;
pub mod model;
pub mod pipelines;
pub mod runs;
pub mod schemas;
pub mod validation;

/// What a backend provides to run the suite.
#[async_trait]
pub trait Harness: Send + Sync + 'static {
    /// A catalog for `project` on this harness's store; catalogs of different projects opened
    /// from one harness share the store (to prove isolation).
    async fn open(&self, project: &ProjectId) -> Arc<dyn Catalog>;

    /// Moves the catalog's clock forward by at least `by` (an injected clock, or a real sleep for
    /// backends whose clock is the database's).
    async fn advance(&self, by: Duration);

    /// The lease time-to-live the checks use: long enough that no lease expires unless a check
    /// says so, short enough to wait out on a real clock.
    fn ttl(&self) -> Duration;

    /// Whether [`Harness::advance`] moves an injected clock by exactly `by`, so that a test may
    /// predict the catalog's times and expire leases at will. A real clock (the default) only
    /// moves by sleeping: the model sequences then leave clock moves out.
    fn manual_clock(&self) -> bool {
        false
    }
}

/// One check's context: a fresh project's catalog, the harness, and fixtures.
///
/// Derefs to the catalog, so `cx.acquire(…)` calls the backend.
pub struct Ctx {
    /// The catalog of this check's project.
    pub catalog: Arc<dyn Catalog>,
    /// The backend's harness.
    pub harness: Arc<dyn Harness>,
}

impl Deref for Ctx {
    type Target = dyn Catalog;
    fn deref(&self) -> &Self::Target {
        &*self.catalog
    }
}

/// A project id no other check (in this or another process) uses.
pub fn unique_project() -> ProjectId {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    ProjectId::new(format!("contract-{}-{nanos:x}-{n}", std::process::id()))
        .expect("generated project ids are valid")
}

impl Ctx {
    /// A context on a fresh project of `harness`.
    pub async fn new(harness: Arc<dyn Harness>) -> Self {
        let catalog = harness.open(&unique_project()).await;
        Self { catalog, harness }
    }

    /// A catalog on another fresh project of the same store.
    pub async fn other_project(&self) -> Arc<dyn Catalog> {
        self.harness.open(&unique_project()).await
    }

    /// The lease ttl to use.
    pub fn ttl(&self) -> Duration {
        self.harness.ttl()
    }

    /// Moves the catalog clock past the expiry of every lease taken with [`Ctx::ttl`] so far.
    pub async fn expire_leases(&self) {
        self.harness
            .advance(self.ttl() + Duration::from_millis(50))
            .await;
    }

    /// Creates a manual pipeline `id` with a cursor of `kind`.
    pub async fn pipeline_of(&self, id: &str, kind: CursorKind) -> Pipeline {
        self.create_pipeline(spec(id, kind), &operator())
            .await
            .expect("create pipeline")
    }

    /// Creates a manual pipeline `id` with monotonic cursors.
    pub async fn pipeline(&self, id: &str) -> Pipeline {
        self.pipeline_of(id, CursorKind::Monotonic).await
    }

    /// Takes `pipeline`'s lease as `holder`.
    pub async fn lease(&self, pipeline: &str, holder: &str) -> Lease {
        self.acquire(&pid(pipeline), &holder_id(holder), self.ttl())
            .await
            .expect("acquire")
    }

    /// Creates pipeline `id` (of `kind`), takes its lease and begins a manual run.
    pub async fn running_of(&self, id: &str, kind: CursorKind) -> (Lease, Run) {
        self.pipeline_of(id, kind).await;
        let lease = self.lease(id, "worker-1").await;
        let run = self
            .begin_run(&lease, BeginRun::new(Trigger::Manual))
            .await
            .expect("begin run");
        (lease, run)
    }

    /// Creates monotonic pipeline `id`, takes its lease and begins a manual run.
    pub async fn running(&self, id: &str) -> (Lease, Run) {
        self.running_of(id, CursorKind::Monotonic).await
    }
}

/// A manual pipeline spec on the `test` connector.
pub fn spec(id: &str, kind: CursorKind) -> PipelineSpec {
    PipelineSpec::new(pid(id), ConnectorRef::new("test").expect("valid"), kind)
}

/// A pipeline id.
pub fn pid(id: &str) -> PipelineId {
    PipelineId::new(id).expect("valid pipeline id")
}

/// A stream name.
pub fn stream(name: &str) -> StreamName {
    StreamName::new(name).expect("valid stream name")
}

/// A holder id.
pub fn holder_id(name: &str) -> HolderId {
    HolderId::new(name).expect("valid holder id")
}

/// A cursor value.
pub fn value(json: serde_json::Value) -> CursorValue {
    CursorValue::new(json).expect("valid cursor value")
}

/// The operator the checks act as.
pub fn operator() -> Actor {
    Actor::Operator(OperatorName::new("contract-operator").expect("valid"))
}

/// A reason.
pub fn reason(text: &str) -> Reason {
    Reason::new(text).expect("valid reason")
}

/// Asserts that `runs` (one pipeline's, any order) ran one after another: ordered by start, each
/// finished before the next began and each ran under a higher epoch. Returns how many runs each
/// holder made. For the multi-process tests of every backend.
pub fn assert_serial_runs(pipeline: &PipelineId, runs: &[Run]) -> BTreeMap<String, usize> {
    let mut by_start: Vec<&Run> = runs.iter().collect();
    by_start.sort_by_key(|r| (r.started_at, r.epoch));
    for pair in by_start.windows(2) {
        assert!(
            pair[0].epoch < pair[1].epoch,
            "epochs increase run after run"
        );
        let finished = pair[0]
            .finished_at
            .unwrap_or_else(|| panic!("run {} never finished", pair[0].id));
        assert!(
            finished <= pair[1].started_at,
            "runs {} and {} of {pipeline} overlap",
            pair[0].id,
            pair[1].id
        );
    }
    runs.iter().fold(BTreeMap::new(), |mut holders, r| {
        *holders.entry(r.holder.to_string()).or_default() += 1;
        holders
    })
}

/// For the stall tests of every backend: what an operator looks at on the project the test kit's
/// `fixtures::running_with_a_checkpoint` made — the pipeline, its one run, its one cursor, the reconciler
/// snapshot — each answered, all within `bound`.
pub async fn assert_operator_reads(catalog: &dyn Catalog, pipeline: &PipelineId, bound: Duration) {
    let started = std::time::Instant::now();
    catalog.get_pipeline(pipeline).await.expect("get pipeline");
    let runs = catalog
        .list_runs(&hakiri_core::RunQuery::all())
        .await
        .expect("list runs");
    assert_eq!(runs.items.len(), 1);
    assert_eq!(
        catalog.list_cursors(pipeline).await.expect("cursors").len(),
        1
    );
    let statuses = catalog
        .pipeline_statuses(None, hakiri_core::Limit::new(50).expect("limit"))
        .await
        .expect("pipeline statuses");
    assert_eq!(statuses.items.len(), 1);
    assert!(
        started.elapsed() < bound,
        "operator reads took {:?} beside a stalled process",
        started.elapsed()
    );
}

/// A number from the environment variable `name`, or `default`: how the model sequences and
/// the histories let a soak scale them.
///
/// # Panics
/// When the variable is set but not a number: a soak must not run the default by mistake.
pub fn env_number(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(text) => text
            .parse()
            .unwrap_or_else(|_| panic!("{name}={text:?} is not a number")),
        Err(_) => default,
    }
}

/// How long one check may take before it counts as hung.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs one check on a fresh project, failing it if it hangs.
pub async fn run_check<F>(harness: Arc<dyn Harness>, check: F)
where
    F: for<'a> FnOnce(
        &'a Ctx,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>>,
{
    let cx = Ctx::new(harness).await;
    if tokio::time::timeout(CHECK_TIMEOUT, check(&cx))
        .await
        .is_err()
    {
        panic!("check did not finish within {CHECK_TIMEOUT:?}");
    }
}

/// Emits one `#[tokio::test]` per contract check for the backend whose [`Harness`] the
/// expression builds (evaluated once per test).
#[macro_export]
macro_rules! contract_suite {
    ($harness:expr) => {
        $crate::__contract_pipelines!($harness);
        $crate::__contract_leases!($harness);
        $crate::__contract_runs!($harness);
        $crate::__contract_cursors!($harness);
        $crate::__contract_schemas!($harness);
        $crate::__contract_events!($harness);
        $crate::__contract_isolation!($harness);
        $crate::__contract_validation!($harness);
        $crate::__contract_concurrency!($harness);
        $crate::__contract_archive!($harness);
    };
}

/// Emits a module `$area` with one test per listed check.
#[doc(hidden)]
#[macro_export]
macro_rules! __contract_checks {
    ($harness:expr; $area:ident: $($check:ident),* $(,)?) => {
        mod $area {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    let harness: ::std::sync::Arc<dyn $crate::Harness> = ::std::sync::Arc::new($harness);
                    $crate::run_check(harness, |cx| ::std::boxed::Box::pin($crate::$area::$check(cx))).await;
                }
            )*
        }
    };
}
