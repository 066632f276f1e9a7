//! `hakiri cursors list|show|history|reset|rollback`.
//!
//! Reset and rollback are guarded: they take the pipeline's writer lease like any writer, so
//! they can never race a running run. While a run holds the lease they refuse, naming it;
//! `--force` takes the lease anyway (audited), which fences the run.

use std::time::Duration;

use hakiri_core::{
    Catalog, Cursor, CursorChange, CursorHistoryEntry, CursorReset, CursorValue, Error, PipelineId,
    Reason, ResetTarget, StreamName,
};
use serde::Serialize;

use super::{limit, pipeline_id, stream_name, Ctx};
use crate::cli::{CursorsCommand, GuardArgs};
use crate::error::{CliError, CliResult};
use crate::output;
use crate::target::Access;

/// How long an operator's lease lasts: the reset is one write; this only bounds how long a
/// crashed CLI could block the pipeline.
const OPERATOR_LEASE: Duration = Duration::from_secs(60);

pub(super) async fn run(ctx: &Ctx, command: CursorsCommand) -> CliResult {
    let catalog = ctx.open(Access::Existing).await?.catalog;
    let catalog = catalog.as_ref();
    match command {
        CursorsCommand::List { pipeline } => {
            let id = pipeline_id(&pipeline)?;
            let cursors = catalog.list_cursors(&id).await?;
            output::emit(ctx.format(), &cursors, || {
                let mut table =
                    output::table(["STREAM", "VALUE", "VERSION", "RUN", "BY", "UPDATED"]);
                for c in &cursors {
                    table.add_row(cursor_row(c));
                }
                output::print_table(
                    &table,
                    &format!("{id} has no cursors yet (it has not checkpointed)"),
                );
            });
        }
        CursorsCommand::Show { pipeline, stream } => {
            let id = pipeline_id(&pipeline)?;
            let stream = stream_name(&stream)?;
            let cursor = catalog.get_cursor(&id, &stream).await?.ok_or_else(|| {
                Error::NotFound(hakiri_core::Entity::Cursor {
                    pipeline: id.clone(),
                    stream: stream.clone(),
                })
            })?;
            output::emit(ctx.format(), &cursor, || {
                let mut table =
                    output::table(["STREAM", "VALUE", "VERSION", "RUN", "BY", "UPDATED"]);
                let mut row = cursor_row(&cursor);
                row[1] = cursor.value.to_string();
                table.add_row(row);
                output::print_table(&table, "");
            });
        }
        CursorsCommand::History {
            pipeline,
            stream,
            limit: n,
            before,
        } => {
            let id = pipeline_id(&pipeline)?;
            let stream = stream_name(&stream)?;
            let page = catalog
                .cursor_history(&id, &stream, before, limit(n)?)
                .await?;
            output::emit(ctx.format(), &page, || {
                let mut table = output::table(["VERSION", "VALUE", "CHANGE", "RUN", "BY", "AT"]);
                for e in &page.items {
                    table.add_row(history_row(e));
                }
                output::print_table(&table, &format!("cursor {id}/{stream} has no history"));
                if let Some(next) = page.next {
                    output::line(format!("more: add --before {next}"));
                }
            });
        }
        CursorsCommand::Reset(args) => {
            let target = match (&args.value, args.initial) {
                (Some(text), _) => ResetTarget::Value(parse_value(text)?),
                (None, _) => ResetTarget::Initial,
            };
            guarded(
                ctx,
                catalog,
                &args.pipeline,
                &args.stream,
                target,
                &args.guard,
                "reset",
            )
            .await?;
        }
        CursorsCommand::Rollback(args) => {
            guarded(
                ctx,
                catalog,
                &args.pipeline,
                &args.stream,
                ResetTarget::Version(args.to_version),
                &args.guard,
                "rolled back",
            )
            .await?;
        }
    }
    Ok(())
}

fn parse_value(text: &str) -> CliResult<CursorValue> {
    let json: serde_json::Value = serde_json::from_str(text).map_err(|e| {
        CliError::invalid("invalid_argument", format!("--value {text:?} is not JSON: {e}"))
            .hint("write numbers as is (--value 42) and quote strings as JSON (--value '\"2026-01-01T00:00:00.000Z\"')")
    })?;
    Ok(CursorValue::new(json)?)
}

fn cursor_row(c: &Cursor) -> [String; 6] {
    [
        c.stream.to_string(),
        output::truncate(&c.value.to_string(), 60),
        c.version.to_string(),
        c.run.map_or_else(|| "-".to_owned(), |r| r.to_string()),
        c.updated_by.to_string(),
        output::time(c.updated_at),
    ]
}

fn history_row(e: &CursorHistoryEntry) -> [String; 6] {
    let change = match &e.change {
        CursorChange::Checkpoint => "checkpoint".to_owned(),
        CursorChange::Finish => "finish".to_owned(),
        CursorChange::Reset { reason } => {
            format!("reset: {}", output::truncate(reason.as_str(), 50))
        }
        CursorChange::Rollback { to_version, reason } => format!(
            "rollback to v{to_version}: {}",
            output::truncate(reason.as_str(), 40)
        ),
    };
    [
        e.version.to_string(),
        output::truncate(&e.value.to_string(), 50),
        change,
        e.run.map_or_else(|| "-".to_owned(), |r| r.to_string()),
        e.by.to_string(),
        output::time(e.at),
    ]
}

/// What a reset or rollback prints.
#[derive(Serialize)]
struct Outcome {
    pipeline: PipelineId,
    stream: StreamName,
    before: Option<Cursor>,
    after: Cursor,
    /// Whether the lease was taken over a live one (fencing its holder).
    forced: bool,
    reason: Reason,
}

/// Takes the lease (refusing while a run holds it, unless forced), resets, releases.
async fn guarded(
    ctx: &Ctx,
    catalog: &dyn Catalog,
    pipeline: &str,
    stream: &str,
    target: ResetTarget,
    guard: &GuardArgs,
    done: &str,
) -> CliResult {
    let id = pipeline_id(pipeline)?;
    let stream = stream_name(stream)?;
    let reason = Reason::new(guard.reason.clone()).map_err(|e| {
        CliError::from(e).replace_hint("say why with --reason \"…\" (it is audited)")
    })?;
    let by = ctx.operator()?;
    let holder = ctx.holder("operator")?;
    catalog.get_pipeline(&id).await?;
    let before = catalog.get_cursor(&id, &stream).await?;

    let lease = if guard.force {
        catalog
            .force_acquire(&id, &holder, OPERATOR_LEASE, &by, &reason)
            .await?
    } else {
        match catalog.acquire(&id, &holder, OPERATOR_LEASE).await {
            Ok(lease) => lease,
            Err(Error::Leased {
                holder: owner,
                epoch,
                expires_at,
                ..
            }) => {
                return Err(CliError::failed(
                    "leased",
                    format!(
                        "refusing to {} cursor {id}/{stream}: {owner} holds the pipeline's writer lease (epoch {epoch}) until {expires_at}, so a run may be writing it",
                        if done == "reset" { "reset" } else { "roll back" }
                    ),
                )
                .hint(format!(
                    "wait for the run to end (`hakiri runs list --pipeline {id} --status running`), or pause the pipeline first (`hakiri pipelines pause {id} --reason …`)"
                ))
                .hint(format!(
                    "--force takes the lease anyway and fences {owner}: its next write fails and the run stops"
                )));
            }
            Err(e) => return Err(e.into()),
        }
    };

    let reset = CursorReset {
        target,
        expected_version: guard.expect_version,
        by,
        reason: reason.clone(),
    };
    let result = catalog.reset_cursor(&lease, &stream, reset).await;
    // Release whatever happened: the lease exists only for this write.
    if let Err(error) = catalog.release(&lease).await {
        output::note(format!(
            "warning: could not release the operator lease on {id} ({error}); it expires by itself at {}",
            lease.expires_at
        ));
    }
    let after = result.map_err(|e| match e {
        Error::Conflict { .. } => CliError::from(e).replace_hint(format!(
            "the cursor is not at --expect-version; see `hakiri cursors show {id} {stream}` and run the command again"
        )),
        other => other.into(),
    })?;

    let outcome = Outcome {
        pipeline: id,
        stream,
        before,
        after,
        forced: guard.force,
        reason,
    };
    output::emit(ctx.format(), &outcome, || {
        let from = outcome.before.as_ref().map_or_else(
            || "(none)".to_owned(),
            |c| format!("{} (v{})", c.value, c.version),
        );
        output::line(format!(
            "{done} cursor {}/{}: {from} → {} (v{}){}",
            outcome.pipeline,
            outcome.stream,
            outcome.after.value,
            outcome.after.version,
            if outcome.forced {
                "; the previous lease holder was fenced"
            } else {
                ""
            }
        ));
        output::line(format!(
            "recorded in the audit log (`hakiri events --pipeline {}`): {}",
            outcome.pipeline, outcome.reason
        ));
    });
    Ok(())
}
