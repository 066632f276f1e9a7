//! One module per verb, and what they share: the [`Ctx`] and argument parsing into core ids.

mod apply;
mod archive;
mod connectors;
mod cursors;
mod decisions;
mod events;
mod pipelines;
mod reconcile;
mod runs;
mod schemas;

pub(crate) use runs::{checkpointed, records as run_records};
pub(crate) use schemas::summary as schema_summary;

use std::process::ExitCode;

use hakiri_core::{
    Actor, DecisionId, HolderId, Limit, OperatorName, PipelineId, ProjectId, RunId, StreamName,
};

use crate::cli::{Command, Global, OutputFormat};
use crate::error::{CliError, CliResult};
use crate::output;
use crate::target::{self, Access, CatalogUrl, Opened};

/// What every command needs: the parsed global options.
pub(crate) struct Ctx {
    global: Global,
    project: ProjectId,
    url: CatalogUrl,
}

impl Ctx {
    pub(crate) fn new(global: Global, project: ProjectId, url: CatalogUrl) -> Self {
        Self {
            global,
            project,
            url,
        }
    }

    /// The project of `--project`.
    pub(crate) fn project(&self) -> &ProjectId {
        &self.project
    }

    /// Where the catalog is.
    pub(crate) fn url(&self) -> &CatalogUrl {
        &self.url
    }

    /// The output format.
    pub(crate) fn format(&self) -> OutputFormat {
        self.global.output
    }

    /// Whether output is JSON.
    pub(crate) fn json(&self) -> bool {
        self.global.output == OutputFormat::Json
    }

    /// Opens the catalog.
    pub(crate) async fn open(&self, access: Access) -> CliResult<Opened> {
        target::open(
            &self.url,
            &self.project,
            self.global.token.as_deref(),
            access,
        )
        .await
    }

    /// The operator acting by hand: `--as`, else `$USER`, else `$LOGNAME`, else the OS account
    /// (as git does: containers and CI often set neither variable).
    pub(crate) fn operator(&self) -> CliResult<Actor> {
        let name = self
            .global
            .operator
            .clone()
            .or_else(|| std::env::var("USER").ok().filter(|u| !u.is_empty()))
            .or_else(|| std::env::var("LOGNAME").ok().filter(|u| !u.is_empty()))
            .or_else(|| whoami::username().ok().filter(|u| !u.is_empty()))
            .ok_or_else(|| {
                CliError::invalid(
                    "no_operator",
                    "no operator name for the audit log: $USER and $LOGNAME are unset and this process's account has no name",
                )
                .hint("pass --as NAME (recorded with every change you make)")
            })?;
        let name = OperatorName::new(name)
            .map_err(|e| CliError::from(e).replace_hint("pass --as NAME with a printable name"))?;
        Ok(Actor::Operator(name))
    }

    /// A holder id unique to this process, for leases this command takes.
    pub(crate) fn holder(&self, role: &str) -> CliResult<HolderId> {
        let who = match self.operator() {
            Ok(Actor::Operator(name)) => format!("{role}:{name}"),
            _ => role.to_owned(),
        };
        HolderId::new(format!("{who}@{}:{}", hostname(), std::process::id())).map_err(Into::into)
    }
}

/// This machine's name, for holder ids (`localhost` if it cannot be read).
pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_graphic()))
        .unwrap_or_else(|| "localhost".to_owned())
}

/// Runs one command; `Ok` carries the exit code (a command may succeed and still report
/// failures it saw, such as failed runs).
pub(crate) async fn run(ctx: &Ctx, command: Command) -> CliResult<ExitCode> {
    let unmigrated_hint = matches!(ctx.url, CatalogUrl::Postgres(_)).then(|| {
        format!(
            "the database has no (or outdated) Hakiri tables: run `hakiri --catalog {} migrate` once",
            ctx.url
        )
    });
    dispatch(ctx, command)
        .await
        .map_err(|e| match unmigrated_hint {
            Some(hint) if matches!(e.catalog_error(), Some(hakiri_core::Error::NotMigrated(_))) => {
                e.replace_hint(hint)
            }
            _ => e,
        })
}

async fn dispatch(ctx: &Ctx, command: Command) -> CliResult<ExitCode> {
    match command {
        Command::Apply(args) => apply::run(ctx, &args).await?,
        Command::Plan => reconcile::plan(ctx).await?,
        Command::Reconcile(args) => return reconcile::run(ctx, &args).await,
        Command::Connectors(command) => connectors::run(ctx, command).await?,
        Command::Pipelines(command) => pipelines::run(ctx, command).await?,
        Command::Runs(command) => runs::run(ctx, command).await?,
        Command::Cursors(command) => cursors::run(ctx, command).await?,
        Command::Schemas(command) => schemas::run(ctx, command).await?,
        Command::Decisions(command) => decisions::run(ctx, command).await?,
        Command::Events(args) => events::run(ctx, &args).await?,
        Command::Serve(args) => crate::serve::run(ctx, &args).await?,
        Command::Export(args) => archive::export(ctx, &args).await?,
        Command::Import(args) => archive::import(ctx, &args).await?,
        Command::Migrate => migrate(ctx).await?,
    }
    Ok(ExitCode::SUCCESS)
}

async fn migrate(ctx: &Ctx) -> CliResult {
    let opened = match &ctx.url {
        CatalogUrl::Postgres(raw) => crate::postgres::migrate(raw, &ctx.url, &ctx.project).await?,
        CatalogUrl::Http(url) => {
            return Err(CliError::invalid(
                "not_applicable",
                format!("the Worker at {url} migrates its Durable Objects itself"),
            )
            .hint("each project's object runs its migrations when it starts; deploy a new Worker to change the schema"));
        }
        _ => ctx.open(Access::CreateIfMissing).await?,
    };
    let place = opened
        .file
        .as_ref()
        .map_or_else(|| opened.url.to_string(), |f| f.display().to_string());
    output::emit(
        ctx.format(),
        &serde_json::json!({
            "catalog": opened.url.to_string(),
            "file": opened.file,
            "project": ctx.project,
            "migrated": true,
        }),
        || {
            output::line(format!(
                "catalog {place} (project {}) is at the current schema",
                ctx.project
            ))
        },
    );
    Ok(())
}

/// Parses a pipeline id argument.
pub(crate) fn pipeline_id(text: &str) -> CliResult<PipelineId> {
    PipelineId::new(text).map_err(|e| {
        CliError::from(e)
            .replace_hint("pipeline ids are slugs; list them with `hakiri pipelines list`")
    })
}

/// Parses a stream name argument.
pub(crate) fn stream_name(text: &str) -> CliResult<StreamName> {
    StreamName::new(text).map_err(Into::into)
}

/// Parses a run id argument.
pub(crate) fn run_id(text: &str) -> CliResult<RunId> {
    text.trim()
        .parse::<RunId>()
        .map_err(|e| CliError::from(e).replace_hint("copy the full id from `hakiri runs list`"))
}

/// Parses a decision id argument.
pub(crate) fn decision_id(text: &str) -> CliResult<DecisionId> {
    text.trim().parse::<u64>().map(DecisionId).map_err(|_| {
        CliError::invalid(
            "invalid_argument",
            format!("decision id {text:?} is not a number"),
        )
        .hint("list decisions with `hakiri decisions list`")
    })
}

/// Parses a page size argument.
pub(crate) fn limit(n: u32) -> CliResult<Limit> {
    Limit::new(n).map_err(|e| CliError::from(e).replace_hint("pass --limit between 1 and 1000"))
}
