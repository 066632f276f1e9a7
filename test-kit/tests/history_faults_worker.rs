//! Concurrent histories on the Worker while its host restarts: clients over HTTP (`HttpCatalog`)
//! on an owned `workerd` whose Durable Objects keep their SQLite files in a persist directory;
//! mid-history — at a random share of the clients' calls, counted as they are made — a nemesis
//! stops workerd — with SIGKILL, requests in flight dying with it, or its graceful stop — and
//! starts it again on the same directory and port. Calls may fail meanwhile
//! (`Unavailable`, indeterminate), but the checker must find every acknowledged write in the
//! cursors' histories and nothing half-applied.
//!
//! Two histories by default; `HAKIRI_HISTORIES` runs more (the soak), `HAKIRI_HISTORY_SEED` sets
//! the first seed, `HAKIRI_HISTORY_{CLIENTS,OPS,PIPELINES}` the workload's shape.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use hakiri_contract::history::{run_in_process, Workload};
use hakiri_contract::{unique_project, Harness};
use hakiri_core::{Catalog, ProjectId};
use hakiri_protocol::{HttpCatalog, HttpConfig};
use hakiri_test_kit::faults::{Fault, FaultCounts, Histories};
use hakiri_test_kit::workerd::{self, Shutdown, Workerd, WorkerdOptions};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Restarts per history, each at a random point of it.
const RESTARTS: usize = 2;

/// Clients on the owned workerd's fixed URL (a restart keeps the port), counting their calls.
struct RestartedWorker {
    url: String,
    calls: Arc<AtomicU64>,
}

/// A client's catalog that counts the calls made through it: the nemesis strikes at points of
/// the history, however fast it runs, not at times.
#[derive(Debug)]
struct Counted {
    inner: HttpCatalog,
    calls: Arc<AtomicU64>,
}

impl Counted {
    fn counted(&self) -> &HttpCatalog {
        self.calls.fetch_add(1, Ordering::SeqCst);
        &self.inner
    }
}

hakiri_core::forward_catalog!([] Counted, |self| self.counted());

#[async_trait]
impl Harness for RestartedWorker {
    async fn open(&self, project: &ProjectId) -> Arc<dyn Catalog> {
        // Reads (and writes whose connection was refused, so never sent) are retried until
        // workerd is back: a restart takes about a second. Writes whose request left are not,
        // and fail `Unavailable`: the checker treats them as indeterminate.
        let config = HttpConfig::default()
            .retries(40)
            .backoff(Duration::from_millis(50), Duration::from_millis(500));
        let inner = HttpCatalog::connect(&self.url, project.clone(), workerd::ADMIN_TOKEN, config)
            .expect("a client for the local worker");
        Arc::new(Counted {
            inner,
            calls: self.calls.clone(),
        })
    }

    async fn advance(&self, by: Duration) {
        tokio::time::sleep(by).await;
    }

    fn ttl(&self) -> Duration {
        hakiri_contract::history::HISTORY_TTL
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn histories_survive_workerd_restarts() {
    let persist = tempfile::tempdir().expect("a persist directory");
    let options = WorkerdOptions::new(workerd::admin_grants(), persist.path());
    let mut workerd = tokio::task::spawn_blocking(move || Workerd::start(&options))
        .await
        .expect("start workerd");
    let calls = Arc::new(AtomicU64::new(0));
    let harness = Arc::new(RestartedWorker {
        url: workerd.url(),
        calls: calls.clone(),
    });
    let mut histories = Histories::new("worker");
    for seed in Histories::seeds(2) {
        // Long enough that the restarts land mid-history.
        let workload = Workload::new(unique_project(), seed).ops(150).from_env();
        let done = Arc::new(AtomicBool::new(false));
        calls.store(0, Ordering::SeqCst);
        let nemesis = {
            let (done, calls) = (done.clone(), calls.clone());
            let ops = u64::from(workload.clients) * u64::from(workload.ops);
            tokio::task::spawn_blocking(move || restart_randomly(workerd, seed, ops, &calls, &done))
        };
        let report = run_in_process(harness.clone(), &workload).await;
        done.store(true, Ordering::SeqCst);
        let (instance, faults) = nemesis.await.expect("the nemesis");
        workerd = instance;
        histories.add(seed, report, faults);
    }
    let injected = histories.finish();
    assert!(
        injected.restart > 0,
        "no restart landed inside a history: the histories ran faster than the nemesis"
    );
}

/// Restarts `workerd` [`RESTARTS`] times, each once the clients have made a random share (10% to
/// 80%) of their `ops` calls, SIGKILLed or stopped gracefully at random, until `done`; returns it
/// running and what it did.
fn restart_randomly(
    mut workerd: Workerd,
    seed: u64,
    ops: u64,
    calls: &AtomicU64,
    done: &AtomicBool,
) -> (Workerd, FaultCounts) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut faults = FaultCounts::default();
    let mut points: Vec<u64> = (0..RESTARTS)
        .map(|_| ops * rng.random_range(10..80) / 100)
        .collect();
    points.sort_unstable();
    for point in points {
        while calls.load(Ordering::SeqCst) < point && !done.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(2));
        }
        if done.load(Ordering::SeqCst) {
            break;
        }
        let how = if rng.random_bool(0.5) {
            Shutdown::Kill
        } else {
            Shutdown::Graceful
        };
        workerd = workerd.restart(how);
        faults.record(Fault::Restart);
    }
    (workerd, faults)
}
