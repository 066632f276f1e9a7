//! Hakiri's reconciler: a level-triggered plan-and-dispatch loop, like a Kubernetes controller.
//!
//! Each tick reads one snapshot of the catalog, [`plan`]s every pipeline (dispatch, wait, skip or
//! reap — pure and deterministic, judged by the catalog's clock), takes the writer lease of what
//! is due (losing a race to another reconciler is normal), begins the run and hands it to its
//! in-process [`Connector`] with a [`RunContext`]. Runs renew their lease in the background and
//! stop as soon as they are fenced or cancelled. It depends on `hakiri-core` only and works on
//! every backend.
//!
//! # Layout
//! - [`plan`]: the pure planner and the [`Plan`] it produces (JSON and a table).
//! - [`connector`]: the [`Connector`] trait, the registry and the [`RunContext`].
//! - [`engine`]: the [`Reconciler`]: ticks, dispatch with concurrency limits, lease renewal,
//!   graceful shutdown, metrics.

pub mod connector;
pub mod engine;
pub mod plan;

pub use connector::{Connector, ConnectorError, Connectors, RunContext};
pub use engine::{Metrics, Reconciler, ReconcilerConfig, RunEnd, TickReport};
pub use plan::{plan, plan_one, Action, Plan, PlanItem, SkipReason, WaitReason};
