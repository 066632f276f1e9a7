//! `hakiri connectors list` and `hakiri connectors install`: the built-in connectors, and the
//! Singer taps installed from pipelines' `pip_url` (one venv per requirement, see
//! `hakiri_reconciler::venvs` and ADR 0020).

use std::path::{Path, PathBuf};
use std::time::Instant;

use hakiri_core::{CatalogExt, Pipeline};
use hakiri_reconciler::venvs::DEFAULT_ROOT;
use hakiri_reconciler::{AirbyteConnector, ConnectorError, Installed, SingerConnector, Venvs};
use serde::Serialize;

use super::Ctx;
use crate::cli::{ConnectorsCommand, InstallArgs, VenvsArgs};
use crate::error::{CliError, CliResult};
use crate::output;
use crate::target::{Access, CatalogUrl};

/// The venvs root: `--venvs`/`HAKIRI_VENVS`, else the catalog's local directory.
pub(crate) fn venvs(ctx: &Ctx, args: &VenvsArgs) -> Venvs {
    Venvs::new(root(&ctx.url, args.dir.as_deref()))
}

/// `DIR/venvs` for `sqlite://DIR/`, the file's directory for `sqlite://FILE.db`: the taps live
/// with the catalog they were declared in. Other catalogs have no local directory, so the
/// CLI's default catalog directory is used, relative to the working directory.
fn root(url: &CatalogUrl, flag: Option<&Path>) -> PathBuf {
    if let Some(dir) = flag {
        return dir.to_path_buf();
    }
    match url {
        CatalogUrl::SqliteDir(dir) => dir.join("venvs"),
        CatalogUrl::SqliteFile(file) => file
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .join("venvs"),
        CatalogUrl::Postgres(_) | CatalogUrl::Http(_) | CatalogUrl::Memory => {
            PathBuf::from(DEFAULT_ROOT)
        }
    }
}

pub(super) async fn run(ctx: &Ctx, command: ConnectorsCommand) -> CliResult {
    match command {
        ConnectorsCommand::List(args) => list(ctx, &venvs(ctx, &args)),
        ConnectorsCommand::Install(args) => install(ctx, &args).await,
    }
}

/// What `connectors list --output json` prints.
#[derive(Serialize)]
struct Listing {
    builtin: Vec<String>,
    venvs: PathBuf,
    installed: Vec<Installed>,
}

fn list(ctx: &Ctx, venvs: &Venvs) -> CliResult {
    let installed = venvs.list().map_err(|e| {
        CliError::failed(
            "io",
            format!(
                "cannot read the venvs directory {}: {e}",
                venvs.root().display()
            ),
        )
        .hint("point --venvs (or HAKIRI_VENVS) at a readable directory")
    })?;
    let listing = Listing {
        builtin: super::reconcile::known_connectors(),
        venvs: venvs.root().to_path_buf(),
        installed,
    };
    output::emit(ctx.format(), &listing, || {
        let mut table = output::table(["CONNECTOR", "KIND", "PIP_URL", "EXECUTABLES", "DIR"]);
        for name in &listing.builtin {
            table.add_row([name.as_str(), "built-in", "", "", ""]);
        }
        for venv in &listing.installed {
            table.add_row([
                "singer".to_owned(),
                "installed".to_owned(),
                venv.pip_url.clone(),
                venv.executables.join(","),
                venv.dir.display().to_string(),
            ]);
        }
        output::print_table(&table, "");
        if listing.installed.is_empty() {
            output::note(format!(
                "no taps installed in {}; `hakiri connectors install` installs those pipelines name by pip_url",
                listing.venvs.display()
            ));
        }
    });
    Ok(())
}

/// One requirement `connectors install` handled.
#[derive(Serialize)]
struct Outcome {
    pip_url: String,
    executable: String,
    /// The pipelines whose tap it is.
    pipelines: Vec<String>,
    /// `built`, `present` (installed before) or `failed`.
    status: &'static str,
    /// The executable's path, when installed.
    path: Option<PathBuf>,
    seconds: f64,
    error: Option<String>,
}

/// What `connectors install --output json` prints.
#[derive(Serialize)]
struct InstallReport {
    venvs: PathBuf,
    requirements: Vec<Outcome>,
}

async fn install(ctx: &Ctx, args: &InstallArgs) -> CliResult {
    let venvs = venvs(ctx, &args.venvs);
    let opened = ctx.open(Access::Existing).await?;
    let pipelines = opened.catalog.all_pipelines().await?;
    let wanted = wanted(&pipelines, &args.pipelines)?;
    if wanted.is_empty() {
        output::emit(
            ctx.format(),
            &InstallReport {
                venvs: venvs.root().to_path_buf(),
                requirements: Vec::new(),
            },
            || output::line("no singer pipeline names a pip_url: nothing to install"),
        );
        return Ok(());
    }
    let total = wanted.len();
    let mut outcomes = Vec::new();
    for (index, ((pip_url, executable), pipelines)) in wanted.into_iter().enumerate() {
        if !ctx.json() {
            output::note(format!(
                "[{}/{total}] {pip_url} ({}) …",
                index + 1,
                pipelines.join(", ")
            ));
        }
        let started = Instant::now();
        let result = venvs.install(&pip_url, &executable).await;
        let seconds = started.elapsed().as_secs_f64();
        let outcome = match result {
            Ok(done) => {
                if !ctx.json() {
                    let how = if done.built {
                        format!("installed in {seconds:.1}s")
                    } else {
                        "already installed".to_owned()
                    };
                    output::note(format!("      {how}: {}", done.executable.display()));
                }
                Outcome {
                    status: if done.built { "built" } else { "present" },
                    path: Some(done.executable),
                    error: None,
                    pip_url,
                    executable,
                    pipelines,
                    seconds,
                }
            }
            Err(e) => {
                if !ctx.json() {
                    output::note(format!("      failed: {e}"));
                }
                Outcome {
                    status: "failed",
                    path: None,
                    error: Some(e.to_string()),
                    pip_url,
                    executable,
                    pipelines,
                    seconds,
                }
            }
        };
        outcomes.push(outcome);
    }
    let count = |status| outcomes.iter().filter(|o| o.status == status).count();
    let (built, present, failed) = (count("built"), count("present"), count("failed"));
    let report = InstallReport {
        venvs: venvs.root().to_path_buf(),
        requirements: outcomes,
    };
    output::emit(ctx.format(), &report, || {
        output::line(format!(
            "{built} installed, {present} already installed, {failed} failed (in {})",
            report.venvs.display()
        ));
    });
    if failed > 0 {
        return Err(CliError::failed(
            "install_failed",
            format!("{failed} of {total} taps could not be installed"),
        )
        .hint("the messages above say why; fix the pip_url or the Python setup and run it again (installed taps are kept)"));
    }
    Ok(())
}

/// The requirements to install, each with the pipelines that need it, in pip_url order; one
/// entry per requirement and executable (the same requirement is installed once either way).
type Wanted = std::collections::BTreeMap<(String, String), Vec<String>>;

/// The singer pipelines with a pip_url: those `named`, or all of them.
fn wanted(pipelines: &[Pipeline], named: &[String]) -> CliResult<Wanted> {
    let mut wanted = Wanted::new();
    for name in named {
        if !pipelines.iter().any(|p| p.id().as_str() == name) {
            return Err(
                CliError::invalid("not_found", format!("pipeline {name} does not exist"))
                    .hint("`hakiri pipelines list` shows the project's pipelines"),
            );
        }
    }
    for pipeline in pipelines {
        let id = pipeline.id().to_string();
        let is_named = named.contains(&id);
        if !named.is_empty() && !is_named {
            continue;
        }
        let requirements = match pipeline.spec.connector.as_str() {
            "singer" => SingerConnector::pip_requirements(&pipeline.spec.config),
            "airbyte" => AirbyteConnector::pip_requirements(&pipeline.spec.config),
            _ => Ok(Vec::new()),
        }
        .map_err(|e| config_error(&id, &e))?;
        if requirements.is_empty() && is_named {
            return Err(CliError::invalid(
                "no_pip_url",
                format!("pipeline {id} names no pip_url: there is nothing to install"),
            )
            .hint("only singer pipelines with \"pip_url\" in their config (the tap's or the target's) install anything"));
        }
        for requirement in requirements {
            wanted
                .entry((requirement.pip_url, requirement.executable))
                .or_default()
                .push(id.clone());
        }
    }
    Ok(wanted)
}

fn config_error(pipeline: &str, error: &ConnectorError) -> CliError {
    CliError::invalid("bad_config", format!("pipeline {pipeline}: {error}"))
        .hint("fix its config in hakiri.toml and run `hakiri apply`")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_venvs_live_with_the_catalog_unless_told() {
        let dir = CatalogUrl::parse("sqlite://state/").unwrap();
        assert_eq!(root(&dir, None), Path::new("state/venvs"));
        let file = CatalogUrl::parse("sqlite:///var/lib/hakiri/acme.db").unwrap();
        assert_eq!(root(&file, None), Path::new("/var/lib/hakiri/venvs"));
        let bare = CatalogUrl::parse("sqlite://acme.db").unwrap();
        assert_eq!(root(&bare, None), Path::new("./venvs"));
        let remote = CatalogUrl::parse("postgres://u@db/hakiri").unwrap();
        assert_eq!(root(&remote, None), Path::new(".hakiri/venvs"));
        assert_eq!(
            root(&dir, Some(Path::new("/opt/taps"))),
            Path::new("/opt/taps")
        );
    }
}
