//! Live progress of a reconciler, read from the catalog's event log: each run this process
//! dispatches is printed when it begins and when it ends, with the schema changes it met.
//!
//! The log, not the reconciler's callbacks, is the source: it says what the catalog recorded
//! (a run's final status, a held decision), and it shows each run's end as it happens rather
//! than when a whole tick's runs are done.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use hakiri_core::{
    Actor, Catalog, CatalogExt, Decision, DecisionId, DecisionQuery, Event, EventKind, HolderId,
    Limit, PipelineId, Run, RunStatus, Verdict,
};
use serde::Serialize;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::commands::schema_summary as summary;
use crate::commands::{checkpointed, run_records};
use crate::output;

/// Where progress goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sink {
    /// Lines for people on stdout.
    Stdout,
    /// Lines for people on stderr (stdout carries a JSON document at the end).
    Stderr,
    /// One JSON object per line on stdout.
    JsonLines,
}

/// Follows the event log from where it was when started.
pub(crate) struct Follower {
    catalog: Arc<dyn Catalog>,
    holder: HolderId,
    sink: Sink,
    poll: Duration,
    after: u64,
    // Pipelines this process dispatched: their schema events and run ends are shown too, even
    // when recorded by the policy or the catalog itself (an abandoned run).
    ours: HashSet<PipelineId>,
}

/// One progress record, for `--output json`.
#[derive(Serialize)]
struct Record<'a> {
    #[serde(flatten)]
    event: &'a Event,
    #[serde(skip_serializing_if = "Option::is_none")]
    run: Option<&'a Run>,
    #[serde(skip_serializing_if = "Option::is_none")]
    decision: Option<&'a Decision>,
}

impl Follower {
    /// A follower starting after the log's current end, reading it every `poll`.
    ///
    /// # Errors
    /// The catalog's.
    pub(crate) async fn start(
        catalog: Arc<dyn Catalog>,
        holder: HolderId,
        sink: Sink,
        poll: Duration,
    ) -> hakiri_core::Result<Self> {
        // The log's end: the point followed by no event.
        let after = catalog.tail_after(None, 0).await?;
        Ok(Self {
            catalog,
            holder,
            sink,
            poll,
            after,
            ours: HashSet::new(),
        })
    }

    /// Follows the log until `stop` fires, then reads it to its end once more and returns.
    pub(crate) fn spawn(mut self, stop: CancellationToken) -> JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                self.poll().await;
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep(self.poll) => {}
                }
            }
            self.poll().await;
        })
    }

    /// Prints every new event that concerns this process's runs.
    async fn poll(&mut self) {
        loop {
            let events = match self.catalog.events(self.after, Limit::MAX).await {
                Ok(events) => events,
                Err(error) => {
                    warn!(%error, "cannot read the event log for progress; retrying");
                    return;
                }
            };
            let Some(last) = events.last().map(|e| e.seq) else {
                return;
            };
            for event in &events {
                self.show(event).await;
            }
            self.after = last;
        }
    }

    async fn show(&mut self, event: &Event) {
        let pipeline = &event.pipeline;
        let relevant = match &event.kind {
            EventKind::RunBegun { .. } => {
                let mine = event.actor == Actor::Holder(self.holder.clone());
                if mine {
                    self.ours.insert(pipeline.clone());
                }
                mine
            }
            EventKind::RunFinished { .. }
            | EventKind::DecisionRecorded { .. }
            | EventKind::SchemaVersionAdded { .. } => self.ours.contains(pipeline),
            _ => false,
        };
        if !relevant {
            return;
        }
        let run = match &event.kind {
            EventKind::RunBegun { run, .. } | EventKind::RunFinished { run, .. } => {
                self.catalog.get_run(*run).await.ok()
            }
            _ => None,
        };
        let decision = match &event.kind {
            EventKind::DecisionRecorded { decision, .. } => {
                self.decision(pipeline, *decision).await
            }
            _ => None,
        };
        match self.sink {
            Sink::JsonLines => output::json_line(&Record {
                event,
                run: run.as_ref(),
                decision: decision.as_ref(),
            }),
            Sink::Stdout => output::line(describe(event, run.as_ref(), decision.as_ref())),
            Sink::Stderr => output::note(describe(event, run.as_ref(), decision.as_ref())),
        }
    }

    /// One decision, read by its keyset position (ids increase within a project).
    async fn decision(&self, pipeline: &PipelineId, id: DecisionId) -> Option<Decision> {
        let query = DecisionQuery {
            pipeline: Some(pipeline.clone()),
            held_only: false,
            after: id.get().checked_sub(1).map(DecisionId),
            limit: Limit::new(1).ok()?,
        };
        let page = self.catalog.list_decisions(&query).await.ok()?;
        page.items.into_iter().find(|d| d.id == id)
    }
}

/// One line for people: `12:00:01  orders  run … succeeded: 6 records`.
fn describe(event: &Event, run: Option<&Run>, decision: Option<&Decision>) -> String {
    let when = event.at.to_datetime().format("%H:%M:%S");
    let what = match &event.kind {
        EventKind::RunBegun { run: id, .. } => match run {
            Some(run) if run.attempt > 1 => format!(
                "run {id} dispatched ({}, attempt {})",
                trigger(run),
                run.attempt
            ),
            Some(run) => format!("run {id} dispatched ({})", trigger(run)),
            None => format!("run {id} dispatched"),
        },
        EventKind::RunFinished { run: id, status } => {
            let error = run
                .and_then(|r| r.error.as_ref())
                .map(|e| output::truncate(&e.message, 160));
            let detail = match (status, run) {
                (RunStatus::Succeeded, Some(run)) => {
                    run_records(run).map_or_else(String::new, |n| format!(": {n} records"))
                }
                // Only a finish records stats: what it read is unknown, what it saved is not.
                (RunStatus::Abandoned, Some(run)) => format!(
                    ": records unknown (its holder did not finish it); checkpointed {}{}",
                    checkpointed(run).unwrap_or_else(|| "nothing".to_owned()),
                    error.map_or_else(String::new, |e| format!("; {e}")),
                ),
                _ => error.map_or_else(String::new, |e| format!(": {e}")),
            };
            format!("run {id} {status}{detail}")
        }
        EventKind::DecisionRecorded {
            decision: id,
            stream,
            verdict,
        } => {
            let change = decision.map_or_else(
                || "schema change".to_owned(),
                |d| format!("{} schema change ({})", d.class, summary(&d.diff)),
            );
            match verdict {
                Verdict::Held => format!(
                    "{change} on stream {stream} held for review (decision {id}); the pipeline is paused until `hakiri decisions accept {id} --reason …` (or reject)"
                ),
                other => format!("{change} on stream {stream} {other} by policy (decision {id})"),
            }
        }
        EventKind::SchemaVersionAdded { stream, version } => {
            format!("stream {stream}: schema version {version} recorded")
        }
        _ => format!("{:?}", event.kind),
    };
    format!("{when}  {:<16} {what}", event.pipeline.as_str())
}

fn trigger(run: &Run) -> &'static str {
    match run.trigger {
        hakiri_core::Trigger::Schedule => "scheduled",
        hakiri_core::Trigger::Retry => "retry",
        hakiri_core::Trigger::Manual => "manual",
        hakiri_core::Trigger::Backfill => "backfill",
    }
}

#[cfg(test)]
mod tests {
    use hakiri_catalog_memory::MemoryCatalog;
    use hakiri_core::{
        BeginRun, CatalogExt, ConnectorRef, CursorAdvance, CursorKind, CursorValue, PipelineSpec,
        ProjectId, StreamName, Trigger,
    };

    use super::*;

    #[tokio::test]
    async fn an_abandoned_run_ends_with_records_unknown_and_what_it_checkpointed() {
        let catalog = MemoryCatalog::new(ProjectId::new("p").unwrap());
        let pipeline = PipelineId::new("orders").unwrap();
        let spec = PipelineSpec::new(
            pipeline.clone(),
            ConnectorRef::new("jsonl").unwrap(),
            CursorKind::Monotonic,
        );
        catalog.create_pipeline(spec, &Actor::System).await.unwrap();
        let holder = HolderId::new("reconciler-1").unwrap();
        let lease = catalog
            .acquire(&pipeline, &holder, Duration::from_secs(60))
            .await
            .unwrap();
        let run = catalog
            .begin_run(&lease, BeginRun::new(Trigger::Schedule))
            .await
            .unwrap();
        let value = CursorValue::new(serde_json::json!(20)).unwrap();
        catalog
            .advance(
                &lease,
                run.id,
                &StreamName::new("orders").unwrap(),
                CursorAdvance::to(value),
            )
            .await
            .unwrap();
        // Its holder lets go while it runs: abandoned, never finished.
        catalog.release(&lease).await.unwrap();

        let events = catalog.events(0, Limit::new(100).unwrap()).await.unwrap();
        let end = events
            .iter()
            .find(|e| matches!(e.kind, EventKind::RunFinished { .. }))
            .expect("a run-finished event");
        let run = catalog.get_run(run.id).await.unwrap();
        let line = describe(end, Some(&run), None);
        assert!(
            line.contains(
                "abandoned: records unknown (its holder did not finish it); checkpointed orders (none) → 20"
            ),
            "{line}"
        );
    }
}
