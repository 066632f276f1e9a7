//! Concurrent histories on the in-memory backend: clients as tasks racing on one store, the
//! history checked for linearizable cursors and non-overlapping leases.

mod common;

use common::MemoryHarness;

// A history takes milliseconds here: afford many.
hakiri_contract::concurrent_histories!(MemoryHarness::new(), histories = 50);
