//! `hakiri plan` and `hakiri reconcile`.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use hakiri_core::{Catalog, ConnectorRef, Error, HolderId, RunStatus};
use hakiri_reconciler::{
    AirbyteConnector, Connectors, Plan, Reconciler, ReconcilerConfig, RunEnd, SingerConnector,
    TickFailure, TickReport, Venvs,
};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::{hostname, Ctx};
use crate::cli::ReconcileArgs;
use crate::error::{CliError, CliResult};
use crate::metrics;
use crate::output;
use crate::progress::{Follower, Sink};
use crate::target::{Access, CatalogUrl};

/// The connectors built into this binary (taps named by a `pip_url` install under the
/// default root: enough to check specs, which installs nothing).
pub(crate) fn connectors() -> Connectors {
    hakiri_reconciler::connectors::builtin()
}

/// The connectors built into this binary, the `singer` and `airbyte` ones installing taps and
/// sources under `venvs`.
pub(crate) fn connectors_with(venvs: Venvs) -> Connectors {
    connectors()
        .with("singer", SingerConnector::with_venvs(venvs.clone()))
        .with("airbyte", AirbyteConnector::with_venvs(venvs))
}

/// The names of the connectors built into this binary, sorted.
pub(crate) fn known_connectors() -> Vec<String> {
    connectors().names()
}

/// `hakiri plan`: the reconciler's plan for now, from one snapshot. Writes nothing.
pub(super) async fn plan(ctx: &Ctx) -> CliResult {
    let opened = ctx.open(Access::Existing).await?;
    let plan = hakiri_core::plan::current(opened.catalog.as_ref()).await?;
    output::emit(ctx.format(), &plan, || {
        if plan.items.is_empty() {
            output::line(
                "no pipelines in this project; declare them in hakiri.toml and run `hakiri apply`",
            );
            return;
        }
        print_plan(&plan);
    });
    warn_unknown_connectors(&plan);
    Ok(())
}

/// The plan as a table — pipeline, connector, action — and a line that sums it up.
fn print_plan(plan: &Plan) {
    output::print_table(&plan_table(plan), "no pipelines");
    output::line(plan_summary(plan));
}

fn plan_table(plan: &Plan) -> comfy_table::Table {
    let mut table = output::table(["PIPELINE", "CONNECTOR", "ACTION"]);
    for item in &plan.items {
        table.add_row([
            item.pipeline.to_string(),
            item.connector.to_string(),
            item.action.to_string(),
        ]);
    }
    table
}

fn plan_summary(plan: &Plan) -> String {
    let dispatch = plan.dispatches().count();
    let reap = plan.reaps().count();
    format!(
        "plan at {}: {dispatch} to dispatch, {reap} to reap, {} idle",
        plan.as_of,
        plan.items.len() - dispatch - reap
    )
}

fn warn_unknown_connectors(plan: &Plan) {
    let known = known_connectors();
    for item in &plan.items {
        if !known.iter().any(|k| k == item.connector.as_str()) {
            output::note(format!(
                "warning: pipeline {}: connector {:?} is not built into this hakiri (it has: {}); its runs will fail",
                item.pipeline,
                item.connector.as_str(),
                known.join(", ")
            ));
        }
    }
}

/// How one run dispatched by `reconcile --once` ended.
#[derive(Serialize)]
struct RunSummary {
    #[serde(flatten)]
    end: RunEnd,
    records: Option<u64>,
}

/// What `reconcile --once --output json` prints.
#[derive(Serialize)]
struct OnceSummary {
    holder: HolderId,
    ticks: usize,
    interrupted: bool,
    runs: Vec<RunSummary>,
    /// Reaps and dispatches the catalog failed, the last failure of each pipeline and step.
    failures: Vec<TickFailure>,
    plan: Plan,
}

/// `hakiri reconcile`.
pub(super) async fn run(ctx: &Ctx, args: &ReconcileArgs) -> CliResult<ExitCode> {
    hakiri_core::lease::check_ttl(args.lease_ttl)
        .map_err(|e| CliError::from(e).replace_hint("pass --lease-ttl between 100ms and 24h"))?;
    if args.interval.is_zero() {
        return Err(CliError::invalid(
            "invalid_argument",
            "--interval must be longer than 0s",
        ));
    }
    let opened = ctx.open(Access::Existing).await?;
    let catalog = opened.catalog.clone();
    let holder = match &args.holder {
        Some(name) => HolderId::new(name.clone())?,
        None => HolderId::new(format!("hakiri@{}:{}", hostname(), std::process::id()))?,
    };
    let mut config = ReconcilerConfig::new(holder.clone())
        .lease_ttl(args.lease_ttl)
        .interval(args.interval)
        .max_concurrent(usize::from(args.max_concurrent))
        .grace(args.grace);
    for (name, limit) in &args.connector_limits {
        config = config.per_connector(ConnectorRef::new(name.clone())?, *limit);
    }
    let venvs = super::connectors::venvs(ctx, &args.venvs);
    let reconciler = Arc::new(Reconciler::new(
        catalog.clone(),
        connectors_with(venvs),
        config,
    ));

    // Bind before any work so that a taken port fails at once.
    let stop_metrics = CancellationToken::new();
    let metrics_server = match args.metrics_addr {
        Some(addr) => {
            let listener = metrics::bind(addr).await?;
            output::note(format!(
                "serving metrics at http://{}/metrics",
                listener.local_addr().unwrap_or(addr)
            ));
            Some(metrics::serve(
                listener,
                reconciler.metrics(),
                stop_metrics.clone(),
            ))
        }
        None => None,
    };

    let sink = match (ctx.json(), args.once) {
        (true, true) => Sink::Stderr,
        (true, false) => Sink::JsonLines,
        (false, _) => Sink::Stdout,
    };
    // A local file answers a read in microseconds; a server is not polled as often.
    let poll = match opened.url {
        CatalogUrl::SqliteDir(_) | CatalogUrl::SqliteFile(_) | CatalogUrl::Memory => {
            Duration::from_millis(250)
        }
        CatalogUrl::Postgres(_) | CatalogUrl::Http(_) => Duration::from_secs(1),
    };
    let follower = Follower::start(catalog.clone(), holder.clone(), sink, poll).await?;
    let stop_progress = CancellationToken::new();
    let progress = follower.spawn(stop_progress.clone());

    let shutdown = CancellationToken::new();
    let signals = tokio::spawn(watch_signals(
        shutdown.clone(),
        reconciler.clone(),
        args.once,
        humantime::format_duration(args.grace).to_string(),
    ));

    let result = if args.once {
        let session = Session {
            reconciler: &reconciler,
            catalog: &catalog,
            holder: &holder,
            shutdown: &shutdown,
            stop_progress: &stop_progress,
        };
        once(ctx, args, session, progress).await
    } else {
        output::note(format!(
            "reconciling project {} on {} as {holder}: a tick every {}, at most {} runs at once; Ctrl-C to stop",
            ctx.project,
            opened.url,
            humantime::format_duration(args.interval),
            args.max_concurrent,
        ));
        let looped = reconciler
            .run(shutdown.clone(), |report| tick_notes(report, ctx.json()))
            .await;
        stop_progress.cancel();
        let _ = progress.await;
        looped.map_err(CliError::from).map(|()| {
            output::note(
                "stopped: every run this process started has ended and released its lease",
            );
            ExitCode::SUCCESS
        })
    };
    signals.abort();
    stop_metrics.cancel();
    if let Some(server) = metrics_server {
        let _ = server.await;
    }
    result
}

/// What `reconcile --once` works with.
struct Session<'a> {
    reconciler: &'a Reconciler,
    catalog: &'a Arc<dyn Catalog>,
    holder: &'a HolderId,
    /// Fired by SIGINT/SIGTERM.
    shutdown: &'a CancellationToken,
    stop_progress: &'a CancellationToken,
}

async fn once(
    ctx: &Ctx,
    args: &ReconcileArgs,
    session: Session<'_>,
    progress: tokio::task::JoinHandle<()>,
) -> CliResult<ExitCode> {
    let Session {
        reconciler,
        catalog,
        holder,
        shutdown,
        stop_progress,
    } = session;
    let mut ticks = 0usize;
    let mut ends: Vec<RunEnd> = Vec::new();
    let mut failures: Vec<TickFailure> = Vec::new();
    let idle = reconciler
        .run_until_idle(args.max_ticks, |report, finished| {
            ticks += 1;
            tick_notes(report, ctx.json());
            ends.extend(finished.iter().cloned());
            for failure in &report.failed {
                // A pipeline the catalog keeps failing is tried on every tick: report it once.
                failures.retain(|f| {
                    (&f.pipeline, f.operation) != (&failure.pipeline, failure.operation)
                });
                failures.push(failure.clone());
            }
        })
        .await;
    stop_progress.cancel();
    let _ = progress.await;
    let plan = idle?;
    let interrupted = shutdown.is_cancelled();

    let mut runs = Vec::with_capacity(ends.len());
    for end in ends {
        let records = match catalog.get_run(end.run).await {
            Ok(run) => Some(run.stats.values().map(|s| s.records).sum()),
            Err(_) => None,
        };
        runs.push(RunSummary { end, records });
    }
    let count = |status: Option<RunStatus>| {
        move |runs: &[RunSummary]| runs.iter().filter(|r| r.end.status == status).count()
    };
    let failed = count(Some(RunStatus::Failed))(&runs);
    let summary = OnceSummary {
        holder: holder.clone(),
        ticks,
        interrupted,
        runs,
        failures,
        plan,
    };
    let still_due = !summary.plan.is_idle();
    output::emit(ctx.format(), &summary, || {
        output::line(format!(
            "{} after {} tick(s): {} run(s) — {} succeeded, {} failed, {} cancelled, {} lost to another holder",
            if interrupted {
                "interrupted"
            } else if !summary.failures.is_empty() {
                "stopped (the catalog failed a dispatch or reap)"
            } else if still_due {
                "stopped (--max-ticks)"
            } else {
                "idle"
            },
            summary.ticks,
            summary.runs.len(),
            count(Some(RunStatus::Succeeded))(&summary.runs),
            failed,
            count(Some(RunStatus::Cancelled))(&summary.runs),
            count(None)(&summary.runs),
        ));
        output::line("");
        print_plan(&summary.plan);
    });
    if interrupted {
        return Ok(ExitCode::from(130));
    }
    if !summary.failures.is_empty() {
        return Err(catalog_failures(&summary.failures, failed));
    }
    if failed > 0 {
        output::note(format!(
            "{failed} run(s) failed; see `hakiri runs list --status failed` and `hakiri runs show RUN`"
        ));
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// What `reconcile --once` fails with when the catalog failed some reaps or dispatches: exit 3
/// if each failure was the catalog being unreachable (a retry may succeed), else exit 1.
fn catalog_failures(failures: &[TickFailure], failed_runs: usize) -> CliError {
    let what = failures
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    let message = format!(
        "the catalog failed {} step(s) of reconcile --once, so not everything due ran: {what}",
        failures.len()
    );
    let unreachable = failures
        .iter()
        .all(|f| matches!(f.error, Error::Unavailable(_)));
    let error = if unreachable {
        CliError::unavailable("unavailable", message).hint(
            "check that the catalog (--catalog / HAKIRI_CATALOG) is reachable, then run it again",
        )
    } else {
        CliError::failed("reconcile_failed", message).hint(
            "run it again with -v for the catalog's logs; `hakiri plan` shows what is still due",
        )
    };
    if failed_runs > 0 {
        return error.hint(format!(
            "{failed_runs} run(s) also failed; see `hakiri runs list --status failed`"
        ));
    }
    error
}

/// Notes about a tick that the event log does not show: races lost, runs deferred, reaps,
/// catalog failures.
fn tick_notes(report: &TickReport, json: bool) {
    if json {
        return;
    }
    for failure in &report.failed {
        output::note(format!("warning: {failure}; trying again on the next tick"));
    }
    for pipeline in &report.lost_races {
        output::note(format!("{pipeline}: another reconciler holds it; skipped"));
    }
    for pipeline in &report.deferred {
        output::note(format!(
            "{pipeline}: due, but a concurrency limit is reached; next tick"
        ));
    }
    for run in &report.reaped {
        output::note(format!(
            "reaped run {run}: its holder's lease expired; it is marked abandoned"
        ));
    }
}

/// First SIGINT/SIGTERM: stop dispatching and let runs finish within the grace period
/// (`--once`: cancel the runs, which end `Cancelled`). A second SIGINT cancels the runs at once.
async fn watch_signals(
    shutdown: CancellationToken,
    reconciler: Arc<Reconciler>,
    once: bool,
    grace: String,
) {
    wait_for_signal().await;
    if once {
        output::note("interrupted: cancelling the running runs (they end cancelled and release their leases)");
        shutdown.cancel();
        reconciler.cancel_runs();
        return;
    }
    output::note(format!(
        "shutting down: no new runs; waiting up to {grace} for running ones (Ctrl-C again cancels them now)"
    ));
    shutdown.cancel();
    wait_for_signal().await;
    output::note("cancelling the running runs now");
    reconciler.cancel_runs();
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use hakiri_core::{PipelineId, Timestamp, Trigger};
    use hakiri_reconciler::{Action, PlanItem, SkipReason};

    use super::*;

    #[test]
    fn a_plan_prints_as_a_table_and_a_summary() {
        let item = |id: &str, connector: &str, action| PlanItem {
            pipeline: PipelineId::new(id).unwrap(),
            connector: ConnectorRef::new(connector).unwrap(),
            action,
        };
        let plan = Plan {
            as_of: Timestamp::from_millis(0),
            items: vec![
                item(
                    "orders",
                    "jsonl",
                    Action::Dispatch {
                        trigger: Trigger::Schedule,
                        attempt: 1,
                    },
                ),
                item(
                    "customers-backfill",
                    "singer",
                    Action::Skip {
                        reason: SkipReason::Paused,
                    },
                ),
            ],
        };
        let table = plan_table(&plan).to_string();
        let rows: Vec<Vec<&str>> = table
            .lines()
            .map(|row| row.split_whitespace().collect())
            .collect();
        assert_eq!(
            rows,
            [
                vec!["PIPELINE", "CONNECTOR", "ACTION"],
                vec!["orders", "jsonl", "dispatch", "(scheduled)"],
                vec!["customers-backfill", "singer", "skip:", "paused"],
            ]
        );
        // Columns line up: every row's connector starts where the header's does.
        let column = table.lines().next().unwrap().find("CONNECTOR").unwrap();
        assert!(table
            .lines()
            .all(|row| row[column..].starts_with(|c: char| c.is_alphabetic())));
        assert_eq!(
            plan_summary(&plan),
            "plan at 1970-01-01T00:00:00.000Z: 1 to dispatch, 0 to reap, 1 idle"
        );
    }
}
