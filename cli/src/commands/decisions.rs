//! `hakiri decisions list|accept|reject`.

use hakiri_core::{
    Catalog, Decide, Decision, DecisionId, DecisionQuery, Error, Reason, Resolution, Verdict,
};
use serde::Serialize;

use super::{decision_id, limit, pipeline_id, Ctx};
use crate::cli::DecisionsCommand;
use crate::commands::schemas::summary;
use crate::error::{CliError, CliResult};
use crate::output;
use crate::target::Access;

pub(super) async fn run(ctx: &Ctx, command: DecisionsCommand) -> CliResult {
    let catalog = ctx.open(Access::Existing).await?.catalog;
    match command {
        DecisionsCommand::List {
            pipeline,
            held,
            limit: n,
            after,
        } => {
            let pipeline = match pipeline {
                Some(p) => {
                    let id = pipeline_id(&p)?;
                    catalog.get_pipeline(&id).await?;
                    Some(id)
                }
                None => None,
            };
            let query = DecisionQuery {
                pipeline,
                held_only: held,
                after: after.as_deref().map(decision_id).transpose()?,
                limit: limit(n)?,
            };
            let page = catalog.list_decisions(&query).await?;
            output::emit(ctx.format(), &page, || {
                let mut table = output::table([
                    "DECISION",
                    "PIPELINE",
                    "STREAM",
                    "CLASS",
                    "VERDICT",
                    "CHANGE",
                    "VERSIONS",
                    "DECIDED BY",
                    "AT",
                ]);
                for d in &page.items {
                    table.add_row([
                        d.id.to_string(),
                        d.pipeline.to_string(),
                        d.stream.to_string(),
                        d.class.to_string(),
                        d.verdict.to_string(),
                        output::truncate(&summary(&d.diff), 50),
                        match d.to_version {
                            Some(to) => format!("{} → {to}", d.from_version),
                            None => format!("{} → -", d.from_version),
                        },
                        if d.is_pending() {
                            "-".to_owned()
                        } else {
                            d.decided_by.to_string()
                        },
                        output::time(d.decided_at.unwrap_or(d.created_at)),
                    ]);
                }
                output::print_table(
                    &table,
                    if held {
                        "no decisions are held"
                    } else {
                        "no decisions"
                    },
                );
                if let Some(next) = page.next {
                    output::line(format!("more: add --after {next}"));
                }
                for d in page.items.iter().filter(|d| d.is_pending()) {
                    output::line(format!(
                        "held {}: `hakiri decisions accept {} --reason …` or `hakiri decisions reject {} --reason …`",
                        d.id, d.id, d.id
                    ));
                }
            });
        }
        DecisionsCommand::Accept { decision, reason } => {
            decide(
                ctx,
                catalog.as_ref(),
                &decision,
                &reason,
                Resolution::Accept,
            )
            .await?;
        }
        DecisionsCommand::Reject { decision, reason } => {
            decide(
                ctx,
                catalog.as_ref(),
                &decision,
                &reason,
                Resolution::Reject,
            )
            .await?;
        }
    }
    Ok(())
}

/// What accept/reject prints.
#[derive(Serialize)]
struct Decided {
    decision: Decision,
    /// Whether the pipeline is still paused afterwards (other held decisions, or an operator's
    /// pause).
    pipeline_paused: bool,
}

async fn decide(
    ctx: &Ctx,
    catalog: &dyn Catalog,
    decision: &str,
    reason: &str,
    resolution: Resolution,
) -> CliResult {
    let id: DecisionId = decision_id(decision)?;
    let reason = Reason::new(reason).map_err(|e| {
        CliError::from(e)
            .replace_hint("say why with --reason \"…\" (it is recorded on the decision)")
    })?;
    let by = ctx.operator()?;
    let decided = catalog
        .decide(
            id,
            Decide {
                resolution,
                by,
                reason,
            },
        )
        .await
        .map_err(|e| match e {
            Error::Conflict { .. } => CliError::from(e).replace_hint(
                "it was decided already (by someone else?); see `hakiri decisions list`",
            ),
            other => other.into(),
        })?;
    let pipeline = catalog.get_pipeline(&decided.pipeline).await?;
    let result = Decided {
        pipeline_paused: pipeline.paused.is_some(),
        decision: decided,
    };
    output::emit(ctx.format(), &result, || {
        let d = &result.decision;
        let what = match (d.verdict, d.to_version) {
            (Verdict::Accepted, Some(v)) => format!(
                "accepted decision {}: {}/{} is now at schema version {v}",
                d.id, d.pipeline, d.stream
            ),
            (Verdict::Accepted, None) => format!("accepted decision {}", d.id),
            _ => format!(
                "rejected decision {}: {}/{} stays at schema version {}; if the source still sends the change, the next run meets it again and the policy judges it again — fix the source first",
                d.id, d.pipeline, d.stream, d.from_version
            ),
        };
        output::line(what);
        if result.pipeline_paused {
            output::line(format!(
                "{} is still paused (other held decisions or an operator's pause); see `hakiri pipelines show {}`",
                d.pipeline, d.pipeline
            ));
        } else {
            output::line(format!(
                "{} resumes: the reconciler dispatches it on its next tick",
                d.pipeline
            ));
        }
    });
    Ok(())
}
