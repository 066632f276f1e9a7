//! Concurrent histories: several clients issue random lease, run, cursor and read calls on one
//! project at once, every call recorded with its invoke and completion times; a checker then
//! verifies that the history is linearizable for cursor compare-and-set and that leases never
//! overlapped (no two holders wrote in overlapping epochs).
//!
//! A backend's test file adds it in one line, with the [`Harness`] its contract suite uses:
//!
//! ```text
//! hakiri_contract::concurrent_histories!(MemoryHarness::new(), histories = 20);
//! ```
//!
//! In process the clients are tasks on a multi-threaded runtime, each with its own catalog handle
//! from [`Harness::open`]. For SQLite and Postgres the clients are also separate OS processes:
//! `hakiri-drill history` runs one client and prints its events as JSON lines, which the test
//! kit's `history` module collects and checks with [`check`].
//!
//! `HAKIRI_HISTORIES` overrides the number of histories a test runs (the soak sets it);
//! `HAKIRI_HISTORY_SEED` the first history's seed (each next one adds one);
//! `HAKIRI_HISTORY_CLIENTS`, `HAKIRI_HISTORY_OPS` and `HAKIRI_HISTORY_PIPELINES` the workload's
//! shape ([`Workload::from_env`]).
//!
//! # Layout
//! - [`event`]: the events (invoke, complete) and what they carry; the clock; the sink.
//! - [`workload`]: the workload and the client loop ([`run_client`]).
//! - [`checker`]: the final state read back, the checker ([`check`]) and its [`Report`].
//! - this file: [`run_in_process`], [`check_histories`] and the
//!   [`concurrent_histories!`](crate::concurrent_histories) macro.

pub mod checker;
pub mod event;
pub mod workload;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Instant;

pub use crate::env_number;
use crate::{unique_project, Harness};
pub use checker::{check, read_final_state, FinalState, Report, Rule, Violation};
pub use event::{now_ns, parse_lines, ClientId, Event, Op, Outcome, Seen, Sink};
pub use workload::{check_client, run_client, Workload, HISTORY_TTL, MAX_CLIENTS};

/// Histories per test unless `HAKIRI_HISTORIES` says otherwise.
pub const DEFAULT_HISTORIES: u32 = 3;

/// Runs `workload` with its clients as tasks, each on its own catalog handle of `harness`, reads
/// the final state and checks the history. A workload or final state the catalog refuses is
/// reported as a [`Rule::Malformed`] violation.
pub async fn run_in_process(harness: Arc<dyn Harness>, workload: &Workload) -> Report {
    let catalog = harness.open(&workload.project).await;
    if let Err(e) = workload.setup(&*catalog).await {
        return broken(format!("setting the workload up: {e}"));
    }
    let mut tasks = Vec::new();
    for client in 0..workload.clients {
        let harness = harness.clone();
        let workload = workload.clone();
        tasks.push(tokio::spawn(async move {
            let catalog = harness.open(&workload.project).await;
            let mut events: Vec<Event> = Vec::new();
            // A vector never refuses an event.
            let _ = run_client(&*catalog, &workload, client, &mut events).await;
            events
        }));
    }
    let mut events = Vec::new();
    for task in tasks {
        match task.await {
            Ok(mine) => events.extend(mine),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => return broken(format!("a client task failed: {e}")),
        }
    }
    match read_final_state(&*catalog, workload).await {
        Ok(state) => check(&events, &state),
        Err(e) => broken(format!("reading the final state: {e}")),
    }
}

/// A report of a history that could not be checked.
fn broken(message: String) -> Report {
    Report {
        histories: 1,
        broken_histories: 1,
        violations: vec![Violation {
            rule: Rule::Malformed,
            message,
        }],
        ..Report::default()
    }
}

/// Runs `HAKIRI_HISTORIES` (default `histories`) histories of the default [`Workload`] on
/// `harness`, each on a fresh project, prints the summed report and panics if any rule broke.
pub fn check_histories(harness: Arc<dyn Harness>, histories: u32) -> Report {
    let histories = env_number("HAKIRI_HISTORIES", u64::from(histories));
    let first_seed = env_number("HAKIRI_HISTORY_SEED", 0);
    run_histories(harness, histories, first_seed)
}

/// Runs `histories` histories of seeds `first_seed`, `first_seed + 1`, … on `harness`, whatever
/// the environment says, prints the summed report and panics if any rule broke.
pub fn run_histories(harness: Arc<dyn Harness>, histories: u64, first_seed: u64) -> Report {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime for the histories");
    let started = Instant::now();
    let mut total = Report::default();
    let mut failed_seeds = Vec::new();
    for seed in first_seed..first_seed + histories {
        let workload = Workload::new(unique_project(), seed).from_env();
        let report = runtime.block_on(run_in_process(harness.clone(), &workload));
        if !report.is_ok() {
            failed_seeds.push(seed);
        }
        total.merge(report);
    }
    eprintln!("{}", total.soak_line(started.elapsed()));
    eprintln!("concurrent histories: {total}");
    assert!(
        total.is_ok(),
        "histories of seeds {failed_seeds:?} broke a rule (rerun one with HAKIRI_HISTORIES=1 \
         HAKIRI_HISTORY_SEED=<seed>):\n{total}"
    );
    total
}

/// Emits a `#[test]` named `concurrent_histories` that runs `histories` (or `HAKIRI_HISTORIES`)
/// concurrent histories on the backend whose [`Harness`] the expression builds, failing on any
/// broken rule and printing the summed [`Report`].
#[macro_export]
macro_rules! concurrent_histories {
    ($harness:expr) => {
        $crate::concurrent_histories!($harness, histories = $crate::history::DEFAULT_HISTORIES);
    };
    ($harness:expr, histories = $histories:expr) => {
        #[test]
        fn concurrent_histories() {
            $crate::history::check_histories(::std::sync::Arc::new($harness), $histories);
        }
    };
}
