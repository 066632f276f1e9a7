//! The contract suite on the in-memory backend, with a manual clock.

mod common;

use common::MemoryHarness;

hakiri_contract::contract_suite!(MemoryHarness::new());
