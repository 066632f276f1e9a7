//! `hakiri cursors list|show|history|reset|rollback`.
//!
//! Reset and rollback are guarded: they take the pipeline's writer lease like any writer, so
//! they can never race a running run. While a run holds the lease they refuse, naming it;
//! `--force` takes the lease anyway (audited), which fences the run.
//!
//! A refused request changes nothing. Taking the lease is itself a change — it writes lease
//! events, uses up an epoch and, with `--force`, fences and abandons a running run — so before
//! taking it the command reads the pipeline, the cursor and (for a rollback) the target version,
//! and runs the same rule the catalog will ([`hakiri_core::cursor::plan_reset`]): bad input, a
//! stale `--expect-version`, a type change without `--allow-type-change`, a stream without a
//! cursor (unless `--create`) and a missing version are refused there, with nothing taken.
//!
//! That check is advisory; the catalog runs the rule again in the same atomic step as the write,
//! and its verdict is the one that counts. Between the two the state can change: a run holding
//! the lease may checkpoint (so a `--force` whose `--expect-version` was right when read can
//! still fence the run and then be refused as a `Conflict`), or another operator may reset the
//! cursor. That window is acceptable because it is only open to a request that was valid when
//! checked: the operator asked for exactly that lease (and, with `--force`, for fencing the run),
//! the write itself is still compare-and-set, and the refusal names what moved so the command can
//! be run again. Closing it would take a port method that forces and resets in one step, for a
//! race that needs a run checkpointing in the milliseconds between a read and a write.

use std::time::Duration;

use hakiri_core::cursor::{self, plan_reset};
use hakiri_core::{
    Catalog, Cursor, CursorChange, CursorHistoryEntry, CursorReset, CursorValue, Entity, Error,
    Limit, PipelineId, Reason, ResetPermissions, ResetTarget, StreamName,
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
                Error::NotFound(Entity::Cursor {
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
            let request = Request {
                pipeline: &args.pipeline,
                stream: &args.stream,
                target,
                guard: &args.guard,
                create: args.create,
                verb: Verb::Reset,
            };
            guarded(ctx, catalog, request).await?;
        }
        CursorsCommand::Rollback(args) => {
            let request = Request {
                pipeline: &args.pipeline,
                stream: &args.stream,
                target: ResetTarget::Version(args.to_version),
                guard: &args.guard,
                create: false,
                verb: Verb::Rollback,
            };
            guarded(ctx, catalog, request).await?;
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

/// Which guarded command.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Verb {
    Reset,
    Rollback,
}

impl Verb {
    /// "refusing to {verb} cursor …".
    fn infinitive(self) -> &'static str {
        match self {
            Verb::Reset => "reset",
            Verb::Rollback => "roll back",
        }
    }

    /// "{done} cursor …: 20 (v2) → 5 (v3)".
    fn done(self) -> &'static str {
        match self {
            Verb::Reset => "reset",
            Verb::Rollback => "rolled back",
        }
    }
}

/// A reset or rollback as the command line asked for it.
struct Request<'a> {
    pipeline: &'a str,
    stream: &'a str,
    target: ResetTarget,
    guard: &'a GuardArgs,
    /// `--create` (reset only).
    create: bool,
    verb: Verb,
}

/// Checks the request against the catalog's current state, then takes the lease (refusing while
/// a run holds it, unless forced), resets, releases.
async fn guarded(ctx: &Ctx, catalog: &dyn Catalog, request: Request<'_>) -> CliResult {
    let Request {
        pipeline,
        stream,
        target,
        guard,
        create,
        verb,
    } = request;
    let id = pipeline_id(pipeline)?;
    let stream = stream_name(stream)?;
    let reason = Reason::new(guard.reason.clone()).map_err(|e| {
        CliError::from(e).replace_hint("say why with --reason \"…\" (it is audited)")
    })?;
    let by = ctx.operator()?;
    let holder = ctx.holder("operator")?;
    let reset = CursorReset {
        target,
        expected_version: guard.expect_version,
        by: by.clone(),
        reason: reason.clone(),
        allow: ResetPermissions {
            type_change: guard.allow_type_change,
            create,
        },
    };

    // Everything that can be refused is refused here, before the lease is taken (see the module
    // docs for what can still change before the write).
    let kind = catalog.get_pipeline(&id).await?.spec.cursor_kind;
    let before = catalog.get_cursor(&id, &stream).await?;
    let old_value = match reset.target {
        ResetTarget::Version(version) => version_value(catalog, &id, &stream, version).await?,
        _ => None,
    };
    let current = before.as_ref().map(|c| (&c.value, c.version));
    let next = match &reset.target {
        ResetTarget::Value(value) => Some(value),
        ResetTarget::Version(_) => old_value.as_ref(),
        ResetTarget::Initial => None,
    };
    let changes_type =
        next.is_some_and(|next| cursor::changes_type(kind, current.map(|(v, _)| v), next));
    plan_reset(kind, &id, &stream, current, old_value.as_ref(), &reset)
        .map_err(|e| refusal(e, &id, &stream, &reset, changes_type, Stage::Checked))?;

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
                        verb.infinitive()
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

    let result = catalog.reset_cursor(&lease, &stream, reset.clone()).await;
    // Release whatever happened: the lease exists only for this write.
    if let Err(error) = catalog.release(&lease).await {
        output::note(format!(
            "warning: could not release the operator lease on {id} ({error}); it expires by itself at {}",
            lease.expires_at
        ));
    }
    // The catalog's own check, atomic with the write, is the one that counts; it can only
    // disagree with the one above if the cursor changed in between.
    let written = Stage::Written {
        forced: guard.force,
    };
    let after = result.map_err(|e| refusal(e, &id, &stream, &reset, changes_type, written))?;

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
            "{} cursor {}/{}: {from} → {} (v{}){}",
            verb.done(),
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

/// The value version `version` of the cursor had, if that version exists.
async fn version_value(
    catalog: &dyn Catalog,
    pipeline: &PipelineId,
    stream: &StreamName,
    version: u64,
) -> CliResult<Option<CursorValue>> {
    // History pages run newest first, below `before`: a page of one below `version + 1` holds
    // `version` if it exists (and an older one if it does not).
    let Some(before) = version.checked_add(1) else {
        return Ok(None);
    };
    let page = catalog
        .cursor_history(pipeline, stream, Some(before), Limit::new(1)?)
        .await?;
    Ok(page
        .items
        .into_iter()
        .find(|e| e.version == version)
        .map(|e| e.value))
}

/// When a reset was refused.
#[derive(Clone, Copy)]
enum Stage {
    /// By the check before the lease: nothing was taken.
    Checked,
    /// By the catalog, under the lease taken for it (`forced`: with --force).
    Written { forced: bool },
}

/// A refused reset, with a hint naming the flag or command that gets past it.
///
/// `changes_type`: whether the request switches a monotonic cursor between number and string.
fn refusal(
    error: Error,
    id: &PipelineId,
    stream: &StreamName,
    reset: &CursorReset,
    changes_type: bool,
    stage: Stage,
) -> CliError {
    // What the check before the lease would have refused, had the cursor been so then.
    let checkable = matches!(
        error,
        Error::Conflict { .. } | Error::NotFound(_) | Error::InvalidArgument(_)
    );
    let unchanged = match stage {
        Stage::Checked => "nothing was changed",
        Stage::Written { .. } => "the cursor was not changed",
    };
    let error = match error {
        Error::Conflict { .. } => CliError::from(error).replace_hint(format!(
            "{unchanged}: the cursor is not at --expect-version; see `hakiri cursors show {id} {stream}` and run the command again"
        )),
        Error::NotFound(Entity::Cursor { .. }) if matches!(reset.target, ResetTarget::Value(_)) => {
            CliError::from(error)
                .replace_hint(format!(
                    "{unchanged}: {id} has no cursor for stream {stream}; its streams are in `hakiri cursors list {id}`"
                ))
                .hint("if the stream is new and its cursor should start there, add --create")
        }
        Error::InvalidArgument(_) if changes_type => CliError::from(error)
            .hint(format!("{unchanged}; pass a value of the cursor's current type"))
            .hint(
                "if the source's cursor really changed type (and the connector now checkpoints the new one), add --allow-type-change",
            ),
        other => other.into(),
    };
    match stage {
        // The check passed and the catalog refused: the cursor moved in between (see the
        // module docs), after --force had already fenced the holder.
        Stage::Written { forced: true } if checkable => error.hint(
            "the cursor changed after it was checked, and --force had already taken the lease: its previous holder was fenced",
        ),
        _ => error,
    }
}
