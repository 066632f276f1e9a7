//! `hakiri pipelines list|show|pause|resume|run|delete`.

use hakiri_core::{
    Catalog, CatalogExt, Cursor, Decision, Error, Limit, PauseChange, Pipeline, PipelineId,
    PipelineStatus, Reason, Schedule, Trigger,
};
use serde::Serialize;

use super::{pipeline_id, Ctx};
use crate::cli::PipelinesCommand;
use crate::error::{CliError, CliResult};
use crate::output;
use crate::target::Access;

pub(super) async fn run(ctx: &Ctx, command: PipelinesCommand) -> CliResult {
    let catalog = ctx.open(Access::Existing).await?.catalog;
    match command {
        PipelinesCommand::List => list(ctx, catalog.as_ref()).await,
        PipelinesCommand::Show { pipeline } => {
            show(ctx, catalog.as_ref(), &pipeline_id(&pipeline)?).await
        }
        PipelinesCommand::Pause { pipeline, reason } => {
            let id = pipeline_id(&pipeline)?;
            let reason = Reason::new(reason)?;
            let by = ctx.operator()?;
            let before = catalog.get_pipeline(&id).await?;
            let after = catalog
                .set_paused(&id, PauseChange::Pause(reason), &by)
                .await?;
            output::emit(ctx.format(), &after, || {
                match (&before.paused, &after.paused) {
                (Some(p), _) => output::line(format!(
                    "{id} was already paused by {} since {}: {}",
                    p.by,
                    output::time(p.since),
                    p.reason
                )),
                (None, _) => output::line(format!(
                    "paused {id}: the reconciler will not dispatch it (a running run finishes); resume with `hakiri pipelines resume {id}`"
                )),
            }
            });
            Ok(())
        }
        PipelinesCommand::Resume { pipeline } => {
            let id = pipeline_id(&pipeline)?;
            let by = ctx.operator()?;
            let before = catalog.get_pipeline(&id).await?;
            let after = catalog
                .set_paused(&id, PauseChange::Resume, &by)
                .await
                .map_err(|e| match e {
                    Error::FailedPrecondition(_) => CliError::from(e).replace_hint(format!(
                        "see them with `hakiri decisions list --pipeline {id} --held`, then `hakiri decisions accept|reject ID --reason …`"
                    )),
                    other => other.into(),
                })?;
            output::emit(ctx.format(), &after, || {
                if before.paused.is_none() {
                    output::line(format!("{id} is not paused; nothing to do"));
                } else {
                    output::line(format!(
                        "resumed {id}: the reconciler dispatches it when it is due"
                    ));
                }
            });
            Ok(())
        }
        PipelinesCommand::Run { pipeline, backfill } => {
            let id = pipeline_id(&pipeline)?;
            let trigger = if backfill {
                Trigger::Backfill
            } else {
                Trigger::Manual
            };
            let after = catalog.request_run(&id, trigger, &ctx.operator()?).await?;
            let kind = if backfill { "backfill" } else { "manual" };
            output::emit(ctx.format(), &after, || {
                output::line(format!(
                    "requested a {kind} run of {id}: the reconciler dispatches it on its next tick (`hakiri reconcile --once` runs it now)"
                ));
            });
            Ok(())
        }
        PipelinesCommand::Delete { pipeline, yes } => {
            let id = pipeline_id(&pipeline)?;
            let current = catalog.get_pipeline(&id).await?;
            if !yes {
                return Err(CliError::invalid(
                    "confirm",
                    format!(
                        "deleting {id} removes its runs, cursors, schema versions and decisions (its events stay)"
                    ),
                )
                .hint(format!("nothing was deleted; confirm with `hakiri pipelines delete {id} --yes`")));
            }
            let by = ctx.operator()?;
            catalog
                .delete_pipeline(&id, current.generation, &by)
                .await
                .map_err(|e| match e {
                    Error::Leased { ref holder, expires_at, .. } => {
                        let hint = format!(
                            "{holder} is running it (lease until {expires_at}); pause it with `hakiri pipelines pause {id} --reason …`, wait for the run to end, then delete"
                        );
                        CliError::from(e).replace_hint(hint)
                    }
                    other => other.into(),
                })?;
            output::emit(
                ctx.format(),
                &serde_json::json!({ "deleted": id, "generation": current.generation }),
                || output::line(format!("deleted {id} (generation {})", current.generation)),
            );
            Ok(())
        }
    }
}

async fn list(ctx: &Ctx, catalog: &dyn Catalog) -> CliResult {
    let pipelines = catalog.all_pipelines().await?;
    output::emit(ctx.format(), &pipelines, || {
        let mut table = output::table([
            "PIPELINE",
            "CONNECTOR",
            "CURSOR",
            "SCHEDULE",
            "STATE",
            "GEN",
            "UPDATED",
        ]);
        for p in &pipelines {
            table.add_row([
                p.id().to_string(),
                p.spec.connector.to_string(),
                format!("{:?}", p.spec.cursor_kind).to_lowercase(),
                schedule(&p.spec.schedule),
                state(p),
                p.generation.to_string(),
                output::time(p.updated_at),
            ]);
        }
        output::print_table(
            &table,
            "no pipelines in this project; declare them in hakiri.toml and run `hakiri apply`",
        );
    });
    Ok(())
}

/// A schedule for people.
pub(crate) fn schedule(s: &Schedule) -> String {
    match s {
        Schedule::Manual => "manual".to_owned(),
        Schedule::Interval(every) => format!("every {}", humantime::format_duration(*every)),
        Schedule::Cron(cron) => format!("cron {}", cron.as_str()),
    }
}

fn state(p: &Pipeline) -> String {
    match (&p.paused, p.spec.enabled) {
        (Some(pause), _) => format!("paused ({})", output::truncate(pause.reason.as_str(), 40)),
        (None, false) => "disabled".to_owned(),
        (None, true) => "active".to_owned(),
    }
}

/// What `pipelines show` prints.
#[derive(Serialize)]
struct Details {
    #[serde(flatten)]
    status: PipelineStatus,
    cursors: Vec<Cursor>,
    held: Vec<Decision>,
    as_of: hakiri_core::Timestamp,
}

async fn show(ctx: &Ctx, catalog: &dyn Catalog, id: &PipelineId) -> CliResult {
    let (status, as_of) = find_status(catalog, id).await?;
    let cursors = catalog.list_cursors(id).await?;
    let held = catalog.held_decisions(id).await?;
    let details = Details {
        status,
        cursors,
        held,
        as_of,
    };
    output::emit(ctx.format(), &details, || print_details(&details));
    Ok(())
}

/// The reconciler's view of one pipeline, by reading status pages up to it.
async fn find_status(
    catalog: &dyn Catalog,
    id: &PipelineId,
) -> CliResult<(PipelineStatus, hakiri_core::Timestamp)> {
    // Fails with a clean NotFound before scanning.
    catalog.get_pipeline(id).await?;
    let mut after: Option<PipelineId> = None;
    loop {
        let page = catalog
            .pipeline_statuses(after.as_ref(), Limit::MAX)
            .await?;
        if let Some(found) = page.items.iter().find(|s| s.pipeline.id() == id) {
            return Ok((found.clone(), page.as_of));
        }
        match page.next {
            Some(next) => after = Some(next),
            None => return Err(Error::pipeline_not_found(id).into()),
        }
    }
}

fn print_details(d: &Details) {
    let p = &d.status.pipeline;
    let spec = &p.spec;
    let mut t = output::table(["FIELD", "VALUE"]);
    t.add_row(["pipeline".to_owned(), p.id().to_string()]);
    t.add_row(["connector".to_owned(), spec.connector.to_string()]);
    t.add_row([
        "cursor kind".to_owned(),
        format!("{:?}", spec.cursor_kind).to_lowercase(),
    ]);
    t.add_row(["schedule".to_owned(), schedule(&spec.schedule)]);
    t.add_row(["enabled".to_owned(), spec.enabled.to_string()]);
    t.add_row(["state".to_owned(), state(p)]);
    if let Some(pause) = &p.paused {
        t.add_row([
            "paused".to_owned(),
            format!(
                "by {} since {}: {}",
                pause.by,
                output::time(pause.since),
                pause.reason
            ),
        ]);
    }
    t.add_row(["generation".to_owned(), p.generation.to_string()]);
    t.add_row([
        "retry".to_owned(),
        format!("up to {} attempts", spec.retry.max_attempts()),
    ]);
    t.add_row([
        "schema policy".to_owned(),
        format!(
            "additive: {:?}, widening: {:?}, breaking: {:?}",
            spec.schema_policy.additive, spec.schema_policy.widening, spec.schema_policy.breaking
        )
        .to_lowercase(),
    ]);
    t.add_row([
        "config".to_owned(),
        serde_json::Value::from(spec.config.clone()).to_string(),
    ]);
    let lease = match &d.status.lease {
        Some(l) if l.is_live(d.as_of) => format!(
            "held by {} (epoch {}) until {}",
            l.holder
                .as_ref()
                .map_or("-".to_owned(), ToString::to_string),
            l.epoch,
            output::time(l.expires_at)
        ),
        Some(l) => format!("free (last epoch {})", l.epoch),
        None => "never leased".to_owned(),
    };
    t.add_row(["lease".to_owned(), lease]);
    let last_run = match &d.status.last_run {
        Some(r) => format!(
            "{} {} (started {})",
            r.id,
            r.status,
            output::time(r.started_at)
        ),
        None => "none".to_owned(),
    };
    t.add_row(["last run".to_owned(), last_run]);
    t.add_row(["created".to_owned(), output::time(p.created_at)]);
    t.add_row(["updated".to_owned(), output::time(p.updated_at)]);
    output::print_table(&t, "");

    output::line("");
    let mut cursors = output::table(["STREAM", "VALUE", "VERSION", "UPDATED"]);
    for c in &d.cursors {
        cursors.add_row([
            c.stream.to_string(),
            output::truncate(&c.value.to_string(), 60),
            c.version.to_string(),
            output::time(c.updated_at),
        ]);
    }
    output::print_table(
        &cursors,
        "no cursors yet (the pipeline has not checkpointed)",
    );
    if !d.held.is_empty() {
        output::line("");
        for decision in &d.held {
            output::line(format!(
                "held: decision {} on stream {} ({} change) — `hakiri decisions accept {} --reason …` or `reject`",
                decision.id, decision.stream, decision.class, decision.id
            ));
        }
    }
}
