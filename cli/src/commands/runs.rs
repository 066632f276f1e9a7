//! `hakiri runs list|show`.

use hakiri_core::{Run, RunQuery, RunStatus, StreamStats};

use super::{limit, pipeline_id, run_id, Ctx};
use crate::cli::{RunStatusArg, RunsCommand};
use crate::error::CliResult;
use crate::output;
use crate::target::Access;

pub(super) async fn run(ctx: &Ctx, command: RunsCommand) -> CliResult {
    let catalog = ctx.open(Access::Existing).await?.catalog;
    match command {
        RunsCommand::List(args) => {
            let mut query = RunQuery::all().limit(limit(args.limit)?);
            if let Some(p) = &args.pipeline {
                let id = pipeline_id(p)?;
                // A clean NotFound for a mistyped id, rather than an empty list.
                catalog.get_pipeline(&id).await?;
                query = query.pipeline(id);
            }
            if let Some(status) = args.status {
                query = query.status(status_of(status));
            }
            if let Some(before) = &args.before {
                query = query.before(run_id(before)?);
            }
            let page = catalog.list_runs(&query).await?;
            output::emit(ctx.format(), &page, || {
                let mut table = output::table([
                    "RUN", "PIPELINE", "TRIGGER", "ATTEMPT", "STATUS", "STARTED", "TOOK",
                    "RECORDS", "ERROR",
                ]);
                for r in &page.items {
                    table.add_row([
                        r.id.to_string(),
                        r.pipeline.to_string(),
                        format!("{:?}", r.trigger).to_lowercase(),
                        r.attempt.to_string(),
                        r.status.to_string(),
                        output::time(r.started_at),
                        took(r),
                        records_cell(r),
                        r.error
                            .as_ref()
                            .map_or_else(String::new, |e| output::truncate(&e.message, 60)),
                    ]);
                }
                output::print_table(&table, "no runs match");
                if let Some(next) = &page.next {
                    output::line(format!("more: add --before {next}"));
                }
            });
        }
        RunsCommand::Show { run } => {
            let run = catalog.get_run(run_id(&run)?).await?;
            output::emit(ctx.format(), &run, || print_run(&run));
        }
    }
    Ok(())
}

fn status_of(status: RunStatusArg) -> RunStatus {
    match status {
        RunStatusArg::Running => RunStatus::Running,
        RunStatusArg::Succeeded => RunStatus::Succeeded,
        RunStatusArg::Failed => RunStatus::Failed,
        RunStatusArg::Cancelled => RunStatus::Cancelled,
        RunStatusArg::Abandoned => RunStatus::Abandoned,
    }
}

/// The records a run read, over all its streams, or `None` when unknown: its stats are written
/// only by its holder's finish, so a run still running, or abandoned (its lease lost before its
/// holder finished it), has none — though it may have checkpointed.
pub(crate) fn records(run: &Run) -> Option<u64> {
    match run.status {
        RunStatus::Running | RunStatus::Abandoned => None,
        _ => Some(run.stats.values().map(|s| s.records).sum()),
    }
}

/// [`records`] for a table: the count, `-` while running, `unknown` for an abandoned run.
fn records_cell(run: &Run) -> String {
    match (records(run), run.status) {
        (Some(n), _) => n.to_string(),
        (None, RunStatus::Running) => "-".to_owned(),
        (None, _) => "unknown".to_owned(),
    }
}

/// What a run checkpointed: `stream a → b` for each cursor that moved during it, or `None` if
/// none did.
pub(crate) fn checkpointed(run: &Run) -> Option<String> {
    let moved: Vec<String> = run
        .cursors_at_end
        .iter()
        .filter(|(stream, end)| run.cursors_at_start.get(*stream) != Some(*end))
        .map(|(stream, end)| {
            let start = run.cursors_at_start.get(stream).map_or_else(
                || "(none)".to_owned(),
                |v| output::truncate(&v.to_string(), 40),
            );
            format!(
                "{stream} {start} → {}",
                output::truncate(&end.to_string(), 40)
            )
        })
        .collect();
    (!moved.is_empty()).then(|| moved.join(", "))
}

fn took(run: &Run) -> String {
    run.finished_at.map_or_else(
        || "-".to_owned(),
        |end| output::duration(end.since(run.started_at)),
    )
}

fn print_run(run: &Run) {
    let mut t = output::table(["FIELD", "VALUE"]);
    t.add_row(["run".to_owned(), run.id.to_string()]);
    t.add_row(["pipeline".to_owned(), run.pipeline.to_string()]);
    t.add_row(["status".to_owned(), run.status.to_string()]);
    t.add_row([
        "trigger".to_owned(),
        format!("{:?} (attempt {})", run.trigger, run.attempt).to_lowercase(),
    ]);
    t.add_row([
        "holder".to_owned(),
        format!("{} (epoch {})", run.holder, run.epoch),
    ]);
    t.add_row(["started".to_owned(), output::time(run.started_at)]);
    t.add_row(["finished".to_owned(), output::time_opt(run.finished_at)]);
    t.add_row(["took".to_owned(), took(run)]);
    if run.status == RunStatus::Abandoned {
        t.add_row([
            "records".to_owned(),
            "unknown: its holder lost the lease before finishing it, and only a finish records them"
                .to_owned(),
        ]);
        t.add_row([
            "checkpointed".to_owned(),
            checkpointed(run).unwrap_or_else(|| "nothing (no cursor moved)".to_owned()),
        ]);
    }
    if let Some(error) = &run.error {
        t.add_row([
            "error".to_owned(),
            format!(
                "{}{}",
                error.message,
                if error.retryable { " (retryable)" } else { "" }
            ),
        ]);
    }
    output::print_table(&t, "");

    output::line("");
    let streams: std::collections::BTreeSet<_> = run
        .stats
        .keys()
        .chain(run.cursors_at_start.keys())
        .chain(run.cursors_at_end.keys())
        .collect();
    // What the source said of its streams (an Airbyte source's statuses and estimates) gets
    // its own column, for the runs of sources that say anything.
    let reported = run.stats.values().any(|s| {
        s.status.is_some() || s.estimated_records.is_some() || s.estimated_bytes.is_some()
    });
    let mut header = vec!["STREAM", "RECORDS", "BYTES"];
    if reported {
        header.push("SOURCE SAID");
    }
    header.extend(["CURSOR AT START", "CURSOR AT END"]);
    let mut s = output::table(header);
    let known = records(run).is_some();
    for stream in streams {
        let stats = run.stats.get(stream).copied().unwrap_or_default();
        let count = |n: u64| {
            if known {
                n.to_string()
            } else {
                records_cell(run)
            }
        };
        let cursor = |m: &std::collections::BTreeMap<_, hakiri_core::CursorValue>| {
            m.get(stream)
                .map_or_else(|| "-".to_owned(), |v| output::truncate(&v.to_string(), 40))
        };
        let mut row = vec![stream.to_string(), count(stats.records), count(stats.bytes)];
        if reported {
            row.push(source_said(&stats));
        }
        row.extend([cursor(&run.cursors_at_start), cursor(&run.cursors_at_end)]);
        s.add_row(row);
    }
    output::print_table(&s, "no streams");
}

/// A stream's status and estimates as its source reported them: `complete, ~150 records`.
fn source_said(stats: &StreamStats) -> String {
    let said: Vec<String> = [
        stats.status.map(|s| s.to_string()),
        stats.estimated_records.map(|n| format!("~{n} records")),
        stats.estimated_bytes.map(|n| format!("~{n} bytes")),
    ]
    .into_iter()
    .flatten()
    .collect();
    if said.is_empty() {
        "-".to_owned()
    } else {
        said.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use hakiri_core::StreamStatus;

    use super::*;

    #[test]
    fn what_a_source_said_lists_only_what_it_said() {
        let said = |stats| source_said(&stats);
        assert_eq!(said(StreamStats::new(5, 50)), "-");
        assert_eq!(
            said(StreamStats {
                status: Some(StreamStatus::Complete),
                estimated_records: Some(150),
                ..StreamStats::new(120, 4096)
            }),
            "complete, ~150 records"
        );
        assert_eq!(
            said(StreamStats {
                estimated_bytes: Some(9),
                ..StreamStats::default()
            }),
            "~9 bytes"
        );
    }
}
