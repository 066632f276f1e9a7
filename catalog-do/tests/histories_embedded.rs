//! Concurrent histories on the embedded host: clients as tasks, each with its own connection to
//! one SQLite file, the history checked for linearizable cursors and non-overlapping leases. The
//! same clients as separate OS processes run in `test-kit/tests/histories.rs`.

mod common;

use common::EmbeddedHarness;

hakiri_contract::concurrent_histories!(EmbeddedHarness::new(), histories = 5);
