//! Hakiri's reconciler: a level-triggered plan-and-dispatch loop, like a Kubernetes controller.
//!
//! Each tick reads one snapshot of the catalog, [`plan()`]s every pipeline (dispatch, wait, skip or
//! reap — pure and deterministic, judged by the catalog's clock), takes the writer lease of what
//! is due (losing a race to another reconciler is normal), begins the run and hands it to its
//! in-process [`Connector`] with a [`RunContext`]. Runs renew their lease in the background and
//! stop as soon as they are fenced or cancelled. It depends on `hakiri-core` only and works on
//! every backend.
//!
//! # Built-in connectors
//! [`builtin()`] returns a registry with four connectors (config reference in [`connectors`]):
//! - `jsonl` ([`JsonlConnector`]): newline-delimited JSON files, a directory per stream, read
//!   incrementally by a record field (a monotonic cursor); each file's schema is inferred and
//!   reported before its records are written, so an added field is an additive change and a
//!   retyped one is held for review.
//! - `tail` ([`TailConnector`]): complete lines appended to one file, resumed from a byte offset
//!   (an opaque resume token that also detects truncated or replaced files).
//! - `singer` ([`SingerConnector`]): a Singer tap (a program on `PATH`, or one installed from a
//!   `pip_url` into a venv of its own, see [`venvs`]) with Hakiri as its loader; each stream's
//!   bookmark is its own (opaque) cursor, schemas are observed before records, and the tap's
//!   state is checkpointed only once the records before it are on disk.
//! - `airbyte` ([`AirbyteConnector`]): an Airbyte source (`source-*`, installed like a tap) with
//!   Hakiri as its loader; schemas come from `discover`, each STREAM state is its stream's
//!   (opaque) cursor and a GLOBAL state one cursor, checkpointed once the records before it are
//!   on disk.
//!
//! All four write each run's output to its own file, make it durable before every checkpoint and
//! stop at the next record once a run is cancelled: delivery is at least once, and duplicates
//! can only follow the last checkpoint.
//!
//! ```
//! use hakiri_reconciler::builtin;
//! assert_eq!(builtin().names(), ["airbyte", "jsonl", "singer", "tail"]);
//! ```
//!
//! # Layout
//! - [`mod@plan`]: the pure planner and the [`Plan`] it produces (JSON and a table).
//! - [`connector`]: the [`Connector`] trait, the registry and the [`RunContext`].
//! - [`connectors`]: the built-in `jsonl`, `tail`, `singer` and `airbyte` connectors and their
//!   config reference.
//! - [`process`]: child processes for connectors that run a program (Singer taps and targets,
//!   Airbyte sources): a process group per child, a minimal environment, bounded stdout lines,
//!   stderr logged with its tail kept, SIGTERM → drain → SIGKILL stops.
//! - [`venvs`]: Python virtual environments for taps named by a pip requirement (`pip_url`):
//!   one per requirement, built once under a root directory, with a lock between processes.
//! - `src/bin/fake_tap.rs`: `hakiri-fake-tap`, a scriptable stand-in for a Singer tap used by
//!   the process tests.
//! - [`engine`]: the [`Reconciler`]: ticks, dispatch with concurrency limits, lease renewal,
//!   graceful shutdown, metrics.

pub mod connector;
pub mod connectors;
pub mod engine;
#[doc(hidden)]
pub mod fuzzing;
pub mod metrics;
pub mod process;
pub mod venvs;

pub use connector::{Connector, ConnectorError, Connectors, RunContext, SpecProblem};
pub use connectors::{builtin, AirbyteConnector, JsonlConnector, SingerConnector, TailConnector};
pub use engine::{Reconciler, ReconcilerConfig, RunEnd, TickFailure, TickOperation, TickReport};
pub use metrics::Metrics;
// The planner is core's (the servers build the same plan); re-exported where it is used.
pub use hakiri_core::plan::{plan, plan_one, Action, Plan, PlanItem, SkipReason, WaitReason};
pub use venvs::{Installed, Venvs};
