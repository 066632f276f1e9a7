//! The contract suite on the embedded host: the SQLite store on local files, with a manual clock.

mod common;

use common::EmbeddedHarness;

hakiri_contract::contract_suite!(EmbeddedHarness::new());
