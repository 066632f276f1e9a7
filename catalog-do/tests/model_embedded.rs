//! The model sequences on the embedded host (the SQLite store on local files, with a manual
//! clock): random sequences of calls checked in lock step against the contract crate's reference
//! model.

mod common;

use common::EmbeddedHarness;

// About a tenth of a second per sequence in a debug build: 200 stay well under 30 s.
hakiri_contract::model_sequences!(EmbeddedHarness::new(), cases = 200);
