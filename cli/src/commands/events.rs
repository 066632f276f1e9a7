//! `hakiri events`: the project's audit log.

use hakiri_core::{Event, EventKind, Limit, PipelineId};

use super::{limit, pipeline_id, Ctx};
use crate::cli::EventsArgs;
use crate::error::CliResult;
use crate::output;
use crate::progress::last_seq;
use crate::target::Access;

pub(super) async fn run(ctx: &Ctx, args: &EventsArgs) -> CliResult {
    let catalog = ctx.open(Access::Existing).await?.catalog;
    let catalog = catalog.as_ref();
    let page = limit(args.limit)?;
    let pipeline = args.pipeline.as_deref().map(pipeline_id).transpose()?;
    // No existence check for --pipeline: a deleted pipeline's events stay and may be asked for.
    let after = match args.after {
        Some(after) => after,
        // Like `tail`: the last --limit events.
        None => last_seq(catalog)
            .await?
            .saturating_sub(u64::from(page.get())),
    };
    let events = filtered(catalog.events(after, page).await?, pipeline.as_ref());

    if !args.follow {
        output::emit(ctx.format(), &events, || print(&events, true));
        return Ok(());
    }

    let mut after = after;
    let mut header = true;
    let mut batch = events;
    loop {
        if let Some(last) = batch.last() {
            after = after.max(last.seq);
        }
        if ctx.json() {
            for event in &batch {
                output::json_line(event);
            }
        } else if !batch.is_empty() {
            print(&batch, header);
            header = false;
        }
        if output::stdout_closed() {
            return Ok(());
        }
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            () = tokio::time::sleep(args.poll) => {}
        }
        let raw = catalog.events(after, Limit::MAX).await?;
        if let Some(last) = raw.last() {
            after = last.seq;
        }
        batch = filtered(raw, pipeline.as_ref());
    }
}

fn filtered(events: Vec<Event>, pipeline: Option<&PipelineId>) -> Vec<Event> {
    match pipeline {
        Some(p) => events.into_iter().filter(|e| e.pipeline == *p).collect(),
        None => events,
    }
}

fn print(events: &[Event], header: bool) {
    let mut table = output::table(["SEQ", "AT", "ACTOR", "PIPELINE", "EVENT"]);
    for e in events {
        table.add_row([
            e.seq.to_string(),
            output::time(e.at),
            e.actor.to_string(),
            e.pipeline.to_string(),
            describe(&e.kind),
        ]);
    }
    if header {
        output::print_table(&table, "no events");
    } else {
        // Following: the header was printed with the first batch.
        let text = table.to_string();
        for row in text.lines().skip(1) {
            output::line(row.trim_end());
        }
    }
}

/// An event in words.
pub(crate) fn describe(kind: &EventKind) -> String {
    match kind {
        EventKind::PipelineCreated { generation } => {
            format!("pipeline created (generation {generation})")
        }
        EventKind::PipelineUpdated { generation } => {
            format!("pipeline updated (generation {generation})")
        }
        EventKind::PipelineDeleted => "pipeline deleted".to_owned(),
        EventKind::PipelinePaused { reason } => {
            format!("paused: {}", output::truncate(reason.as_str(), 80))
        }
        EventKind::PipelineResumed => "resumed".to_owned(),
        EventKind::LeaseAcquired {
            holder,
            epoch,
            forced,
        } => format!(
            "lease {} by {holder} (epoch {epoch})",
            if *forced { "FORCED" } else { "acquired" }
        ),
        EventKind::LeaseReleased { epoch } => format!("lease released (epoch {epoch})"),
        EventKind::RunBegun { run, epoch } => format!("run {run} begun (epoch {epoch})"),
        EventKind::RunFinished { run, status } => format!("run {run} {status}"),
        EventKind::CursorAdvanced { stream, version } => format!("cursor {stream} → v{version}"),
        EventKind::CursorReset {
            stream,
            version,
            reason,
        } => format!(
            "cursor {stream} RESET → v{version}: {}",
            output::truncate(reason.as_str(), 60)
        ),
        EventKind::SchemaVersionAdded { stream, version } => {
            format!("schema {stream} → v{version}")
        }
        EventKind::DecisionRecorded {
            decision,
            stream,
            verdict,
        } => {
            format!("schema change on {stream}: decision {decision} {verdict}")
        }
        EventKind::DecisionResolved { decision, verdict } => {
            format!("decision {decision} {verdict}")
        }
        other => format!("{other:?}"),
    }
}
