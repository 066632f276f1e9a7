//! The model sequences on the in-memory backend, with a manual clock: random sequences of calls
//! checked in lock step against the contract crate's reference model.

mod common;

use common::MemoryHarness;

// Sequences on this backend take milliseconds: afford many.
hakiri_contract::model_sequences!(MemoryHarness::new(), cases = 1000);
