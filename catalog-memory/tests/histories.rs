//! Concurrent histories on the in-memory backend: clients as tasks racing on one store, the
//! history checked for linearizable cursors and non-overlapping leases.

mod common;

use common::MemoryHarness;

// A history takes milliseconds here: afford many.
hakiri_contract::concurrent_histories!(MemoryHarness::new(), histories = 50);

/// The workload reaches what the checker is for: takeovers, zombies fenced at every kind of
/// write, compare-and-sets lost to a stale version, reads of every kind. A workload that stopped
/// reaching them would make the histories pass for nothing. (20 histories whatever
/// `HAKIRI_HISTORIES` says.)
#[test]
fn the_histories_exercise_takeovers_zombies_and_conflicts() {
    let report =
        hakiri_contract::history::run_histories(std::sync::Arc::new(MemoryHarness::new()), 20, 0);
    for (op, outcome) in [
        ("force-acquire", "ok"),
        ("acquire", "leased"),
        ("advance-cas", "conflict"),
        ("advance-cas", "ok"),
        ("advance", "ok"),
        ("advance", "fenced"),
        ("begin-run", "fenced"),
        ("finish", "fenced"),
        ("finish", "ok"),
        ("release", "ok"),
        ("renew", "ok"),
        ("get-cursor", "ok"),
        ("list-cursors", "ok"),
        ("get-pipeline", "ok"),
    ] {
        assert!(
            report.count(op, outcome) > 0,
            "no {op} answered {outcome}:\n{report}"
        );
    }
}
