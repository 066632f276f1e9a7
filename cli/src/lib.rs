//! `hakiri`, the operator CLI of a Hakiri catalog: apply declarative pipelines (`hakiri.toml`),
//! plan and run the reconciler, and inspect or repair pipelines, runs, cursors, schemas,
//! decisions and the audit log — on any backend (embedded SQLite, Postgres, a deployed Worker,
//! memory).
//!
//! It is the one crate that depends on every backend; the reconciler stays backend-free
//! (ADR 0010).
//!
//! # Layout
//! - `cli`: the command line (clap derive): global options and every verb.
//! - `target`: catalog URLs and opening the backend they name.
//! - `postgres`: the Postgres catalog URL.
//! - `manifest`: `hakiri.toml`, parsed and validated as a whole with line/column errors.
//! - `commands`: one module per verb.
//! - `progress`: live run progress from the catalog's event log.
//! - `metrics`: the tiny HTTP endpoint serving Prometheus metrics.
//! - `output`: tables, JSON, times; stdout that survives a closed pipe.
//! - `error`: the CLI error with hints and exit codes.

mod cli;
mod commands;
mod error;
mod manifest;
mod metrics;
mod output;
mod postgres;
mod progress;
mod serve;
mod target;

#[doc(hidden)]
pub mod fuzzing;

use std::ffi::OsString;
use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use hakiri_core::ProjectId;
use tracing_subscriber::EnvFilter;

use crate::cli::{Cli, OutputFormat};
use crate::commands::Ctx;
use crate::error::CliError;
use crate::target::CatalogUrl;

/// The `hakiri` command: parses the command line, runs the command, reports an error on
/// stderr (as text or JSON) and answers the process's exit code. `src/main.rs` is only this.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.global.verbose);
    let format = cli.global.output;
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            return report(
                format,
                &CliError::failed("runtime", format!("cannot start the async runtime: {e}")),
            )
        }
    };
    let result = runtime.block_on(async {
        let ctx = context(cli.global)?;
        commands::run(&ctx, cli.command).await
    });
    // Background tasks (a metrics server, lease renewals of cancelled runs) must not keep the
    // process alive once the command is done.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(code) => code,
        Err(error) => report(format, &error),
    }
}

fn context(global: cli::Global) -> Result<Ctx, CliError> {
    let project = ProjectId::new(global.project.clone()).map_err(|e| {
        CliError::from(e).replace_hint("set --project (or HAKIRI_PROJECT) to a slug such as acme")
    })?;
    let url = CatalogUrl::parse(&global.catalog)?;
    Ok(Ctx::new(global, project, url))
}

fn report(format: OutputFormat, error: &CliError) -> ExitCode {
    let text = match format {
        OutputFormat::Table => error.render_text(),
        OutputFormat::Json => error.render_json(),
    };
    output::note(text);
    error.exit_code()
}

/// Logs to stderr: warnings by default, more with each -v; `RUST_LOG` overrides. Coloured only
/// on a terminal and without `NO_COLOR`.
fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "warn,hakiri=info,hakiri_reconciler=info,hakiri_catalog_do=info,hakiri_catalog_postgres=info",
        2 => "info,hakiri=debug,hakiri_reconciler=debug,hakiri_catalog_do=debug,hakiri_catalog_postgres=debug",
        _ => "debug,hakiri=trace,hakiri_reconciler=trace,hakiri_catalog_do=trace,hakiri_catalog_postgres=trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour(
            std::io::stderr().is_terminal(),
            std::env::var_os("NO_COLOR"),
        ))
        .with_target(verbose >= 2)
        .try_init();
}

/// Whether logs may use colour escapes: only for a person at a terminal, and not when `NO_COLOR`
/// is set to anything but the empty string (<https://no-color.org>).
fn colour(terminal: bool, no_color: Option<OsString>) -> bool {
    terminal && no_color.is_none_or(|v| v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_are_coloured_only_on_a_terminal_without_no_color() {
        assert!(colour(true, None));
        assert!(colour(true, Some(OsString::new())));
        assert!(!colour(true, Some(OsString::from("1"))));
        assert!(!colour(false, None));
    }
}
