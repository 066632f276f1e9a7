//! What Hakiri's tests and benchmarks share, so that no test spells it out again. Never published;
//! only dev-dependencies name it.
//!
//! - [`postgres`]: a real PostgreSQL server (an outside one, a container, or a throwaway local
//!   one), shared by a test binary or owned by one test.
//! - [`workerd`]: the catalog Worker in a real, local `workerd`.
//! - [`fixtures`]: a pipeline with a run in progress, on any backend.
//! - [`disk`]: the disk's fast or slow mode, printed beside every durable benchmark figure.
//! - [`bench`]: a writer driving one pipeline, many at once, and the median benchmarks report.
//! - [`history`]: concurrent histories whose clients are drill processes: start, collect, check.
//! - [`faults`]: what a nemesis does to a concurrent history — processes killed or stalled —
//!   the count of each kind it did, and the summary line of a backend's histories.
//!
//! A component that cannot be had makes the caller panic with how to get it, never skip.
//!
//! The crate's binary, `hakiri-drill`, drives any catalog URL from a separate OS process. The
//! tests that need it — several processes racing, a zombie paused past its lease, kill -9 at
//! random moments, a process stopped inside a transaction — live in this crate's `tests/`, where
//! Cargo builds the drill for them.

pub mod bench;
pub mod disk;
pub mod faults;
pub mod fixtures;
pub mod history;
pub mod postgres;
pub mod workerd;
