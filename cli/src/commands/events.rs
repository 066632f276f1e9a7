//! `hakiri events`: the project's audit log.

use std::time::Duration;

use hakiri_core::{Catalog, CatalogExt, Error, Event, EventKind, Limit, PipelineId};
use hakiri_protocol::EventFeed;

use super::{limit, pipeline_id, Ctx};
use crate::cli::EventsArgs;
use crate::error::CliResult;
use crate::output;
use crate::target::Access;

pub(super) async fn run(ctx: &Ctx, args: &EventsArgs) -> CliResult {
    let opened = ctx.open(Access::Existing).await?;
    let catalog = opened.catalog.as_ref();
    let page = limit(args.limit)?;
    let pipeline = args.pipeline.as_deref().map(pipeline_id).transpose()?;
    // No existence check for --pipeline: a deleted pipeline's events stay and may be asked for.
    if let Some(before) = args.before {
        let events = catalog
            .events_before(pipeline.as_ref(), before, page)
            .await?;
        output::emit(ctx.format(), &events, || print(&events, true));
        return Ok(());
    }
    let after = match args.after {
        Some(after) => after,
        // Like `tail`: the last --limit events (of the pipeline, with --pipeline).
        None => {
            catalog
                .tail_after(pipeline.as_ref(), u64::from(page.get()))
                .await?
        }
    };
    let events = read(catalog, pipeline.as_ref(), after, page).await?;

    if !args.follow {
        output::emit(ctx.format(), &events, || print(&events, true));
        return Ok(());
    }

    let mut shown = Shown::new(ctx.json());
    shown.show(&events);
    let after = events.last().map_or(after, |e| e.seq);
    match &opened.server {
        // A catalog server pushes its events as they happen.
        Some(server) => follow(server.transport().follow(after, pipeline), shown).await,
        None => poll(catalog, pipeline.as_ref(), after, args.poll, shown).await,
    }
}

/// A page of the log after `after`, of `pipeline` only if given (read through its index).
async fn read(
    catalog: &dyn Catalog,
    pipeline: Option<&PipelineId>,
    after: u64,
    page: Limit,
) -> hakiri_core::Result<Vec<Event>> {
    match pipeline {
        Some(pipeline) => catalog.pipeline_events(pipeline, after, page).await,
        None => catalog.events(after, page).await,
    }
}

/// Events printed as they come: one JSON object per line, or table rows under one header.
struct Shown {
    json: bool,
    header: bool,
}

impl Shown {
    fn new(json: bool) -> Self {
        Self { json, header: true }
    }

    fn show(&mut self, events: &[Event]) {
        if self.json {
            for event in events {
                output::json_line(event);
            }
        } else if !events.is_empty() {
            print(events, self.header);
            self.header = false;
        }
    }
}

/// Reads the log every `poll` until interrupted or stdout closes.
async fn poll(
    catalog: &dyn Catalog,
    pipeline: Option<&PipelineId>,
    mut after: u64,
    poll: Duration,
    mut shown: Shown,
) -> CliResult {
    loop {
        if output::stdout_closed() {
            return Ok(());
        }
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            () = tokio::time::sleep(poll) => {}
        }
        let events = read(catalog, pipeline, after, Limit::MAX).await?;
        after = events.last().map_or(after, |e| e.seq);
        shown.show(&events);
    }
}

/// Prints the server's events as it pushes them, until interrupted or stdout closes. While the
/// server cannot be reached, says so once and retries; the feed resumes after the last event
/// shown, so nothing is missed or repeated.
async fn follow(mut feed: EventFeed, mut shown: Shown) -> CliResult {
    /// The wait between attempts to reach a server that is away.
    const RETRY: Duration = Duration::from_secs(1);
    let mut away = false;
    loop {
        if output::stdout_closed() {
            return Ok(());
        }
        let next = tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            next = feed.next() => next,
        };
        match next {
            Ok(event) => {
                if away {
                    output::note("reconnected");
                    away = false;
                }
                shown.show(std::slice::from_ref(&event));
            }
            Err(error @ Error::Unavailable(_)) => {
                if !away {
                    output::note(format!("{error}; retrying every {RETRY:?}"));
                    away = true;
                }
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => return Ok(()),
                    () = tokio::time::sleep(RETRY) => {}
                }
            }
            Err(error) => return Err(error.into()),
        }
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
