//! The `singer` connector: a Singer tap run as a Hakiri pipeline, its records loaded by Hakiri
//! itself or by a Singer target that Hakiri pipes them into.
//!
//! Each run discovers the tap's catalog (`tap --config … --discover`), selects the configured
//! streams, observes each stream's discovered schema, then runs
//! `tap --config … --catalog … [--state …]` and reads its messages:
//! - `SCHEMA`: observed before any later record of its stream is loaded; a held or rejected
//!   change stops the tap (SIGTERM to its group, SIGKILL after the grace): nothing it prints
//!   after that point is loaded or checkpointed, and the run ends with the decision named.
//! - `RECORD`: checked against its stream's observed schema (a tap's SCHEMA can lag its data),
//!   then loaded.
//! - `STATE`: checkpointed once the records before it are durable, at most once every
//!   `checkpoint_interval_ms` and at the end.
//!
//! Two modes, chosen by the config:
//! - **Hakiri as the loader** (`output`, `loader.rs`): records are appended to
//!   `<output>/<stream>/<run id>.jsonl`; at a checkpoint every output is flushed and `fsync`ed
//!   first, so a checkpoint never covers a record that is not on disk.
//! - **tap | target** (`target`, `pipe.rs`): Hakiri sits between the two programs and writes the
//!   tap's lines — every SCHEMA gated as above — to the target's stdin. Only the target knows
//!   what it made durable: a state is checkpointed when the target prints it on its stdout *and*
//!   it is one Hakiri forwarded from the tap, never the tap's own STATE and never one the target
//!   made up (`{}`, a partial state). When the tap ends or is stopped by a schema, the target's
//!   stdin is closed, it loads what it has, prints its last state and exits.
//!
//! The tap's state maps onto the pipeline's cursors (`state.rs`): `bookmarks.<stream>` is that
//! stream's cursor, the other top-level keys one reserved cursor, `_singer_state`. The next run's
//! `--state` is rebuilt from the cursors, so `hakiri cursors reset` of one stream re-reads that
//! stream only and a rollback works per stream. Pipeline `cursor_kind = "opaque"`: a bookmark is
//! the tap's own object, not a value Hakiri can order.
//!
//! | field | required | meaning |
//! |---|---|---|
//! | `command` | one of `command`, `pip_url` | the tap: an executable (looked up on `PATH`) or an array of it and its first arguments |
//! | `pip_url` | one of `command`, `pip_url` | the tap as pip requirements (`"tap-jsonl==0.3.1"`; several, space-separated, as Meltano allows), installed into a virtual environment of its own (see below) |
//! | `executable` | no, with `pip_url` only | the program in that venv's `bin/` (default: the first requirement's package name, `tap-jsonl`) |
//! | `output` | one of `output`, `target` | directory; each run writes `<output>/<stream>/<run id>.jsonl` |
//! | `target` | one of `output`, `target` | the Singer target that loads the records: an object with the tap's own fields `command` or `pip_url` (and `executable`), `config`, `config_env` and `env`; it runs as `target --config <file>` |
//! | `config` | no | the tap's settings (an object), written to a file only the run can read |
//! | `config_env` | no | settings taken from the reconciler's environment when the run starts, `{"password": "PG_PASSWORD"}`: secrets stay out of the catalog |
//! | `env` | no | names of further environment variables the tap gets (it gets only `PATH`, `HOME`, `LANG`, `LC_ALL`, `TMPDIR`, `TZ` otherwise) |
//! | `streams` | no | the streams to sync, by `tap_stream_id` (default: every stream the tap offers) |
//! | `checkpoint_interval_ms` | no | at most one checkpoint per this many ms while the tap runs (default 1000) |
//! | `stop_grace_ms` | no | how long a stopped tap has to exit after SIGTERM before SIGKILL (default 10000) |
//!
//! # Taps and targets installed from `pip_url`
//! A tap (or target) named by `pip_url` runs from `<venvs>/<package>-<hash of pip_url>/bin/<executable>`
//! ([`crate::venvs`]): when a run starts and that venv is not built yet, the run builds it
//! first (`python3 -m venv`, `pip install`; `$HAKIRI_PYTHON` picks the interpreter), which takes
//! seconds to minutes; `hakiri connectors install` builds them ahead of time. A changed
//! `pip_url` gets a new venv. `<venvs>` is the root given to [`SingerConnector::with_venvs`]:
//! the `hakiri` CLI uses the catalog's local directory (`DIR/venvs` for `sqlite://DIR/`), and
//! [`SingerConnector::default`] (so [`crate::builtin`]) uses
//! [`crate::venvs::DEFAULT_ROOT`], `.hakiri/venvs` under the working directory. `command` and
//! `pip_url` are exclusive, so the program's name inside a venv is always `executable`, never
//! a `command` that might mean a program on `PATH`. A missing Python or a failing pip fails
//! the run permanently, with pip's last words and a hint.
//!
//! When the reconciler shuts down it asks runs to stop before it cancels them
//! ([`RunContext::stopping`]): the tap gets SIGTERM, everything it prints until it exits (an SDK
//! tap's final STATE included) is loaded and checkpointed (through the target, when there is
//! one), and the run ends cancelled, to resume from there. A cancel, a lost lease or a held
//! schema discard what it prints instead; a cancel or a lost lease stop the target too.
//!
//! The config, catalog and state files of the tap and the target live in a private temporary directory (mode 0700,
//! files 0600) removed when the run ends.
//!
//! ```json
//! { "command": ".venv/bin/tap-jsonl", "output": "data/out",
//!   "config": {"path": "data/in/*.jsonl", "stream_name": "orders"}, "streams": ["orders"] }
//! ```
//! or, installed by Hakiri:
//! ```json
//! { "pip_url": "tap-jsonl==0.3.1", "output": "data/out",
//!   "config": {"path": "data/in/*.jsonl", "stream_name": "orders"}, "streams": ["orders"] }
//! ```
//! or piped into a target:
//! ```json
//! { "pip_url": "tap-jsonl==0.3.1",
//!   "config": {"path": "data/in/*.jsonl", "stream_name": "orders"},
//!   "target": {"pip_url": "target-jsonl==0.1.4", "config": {"destination_path": "data/out"}} }
//! ```

mod catalog;
pub(super) mod config;
#[cfg(test)]
mod config_tests;
mod loader;
pub(crate) mod message;
mod pipe;
pub(crate) mod records;
mod session;
pub(crate) mod state;

use std::path::Path;

use async_trait::async_trait;
use hakiri_core::{ConnectorConfig, PipelineSpec};
use serde_json::Value;

use self::config::{check_kind, Config, Program, Sink};
use self::loader::Loader;
use self::pipe::Pipe;
use self::session::Session;
use super::RunFiles;
use crate::connector::{Connector, ConnectorError, RunContext, SpecProblem};
use crate::process::ChildProcess;
use crate::venvs::Venvs;

/// The `singer` connector (see the module docs).
#[derive(Debug, Clone, Default)]
pub struct SingerConnector {
    /// Where taps and targets named by `pip_url` are installed.
    venvs: Venvs,
}

impl SingerConnector {
    /// The connector, installing taps and targets named by `pip_url` under `venvs`' root.
    pub fn with_venvs(venvs: Venvs) -> Self {
        Self { venvs }
    }

    /// Where taps and targets named by `pip_url` are installed.
    pub fn venvs(&self) -> &Venvs {
        &self.venvs
    }

    /// The pip requirements a singer pipeline's config installs its tap and target from: none
    /// for programs given by `command`.
    ///
    /// # Errors
    /// The config is not a valid singer config (the error names the field).
    pub fn pip_requirements(
        config: &ConnectorConfig,
    ) -> Result<Vec<PipRequirement>, ConnectorError> {
        let mut config = Config::parse(config)?;
        Ok(config
            .programs_mut()
            .filter_map(|program| {
                Some(PipRequirement {
                    pip_url: program.pip_url.clone()?,
                    executable: program.program.display().to_string(),
                })
            })
            .collect())
    }
}

/// A tap or target to install: what [`SingerConnector::pip_requirements`] finds in a config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipRequirement {
    /// The requirement(s), as pip takes them.
    pub pip_url: String,
    /// The program's name in the venv's `bin/`.
    pub executable: String,
}

/// Largest discovered catalog read: a catalog is metadata, not data.
const MAX_CATALOG_BYTES: usize = 64 << 20;

#[async_trait]
impl Connector for SingerConnector {
    fn check(&self, spec: &PipelineSpec) -> Result<(), SpecProblem> {
        check_kind(spec.cursor_kind).map_err(SpecProblem::cursor_kind)?;
        Config::parse(&spec.config)
            .map(drop)
            .map_err(SpecProblem::config)
    }

    async fn run(&self, ctx: &RunContext) -> Result<(), ConnectorError> {
        check_kind(ctx.pipeline().spec.cursor_kind).map_err(ConnectorError::permanent)?;
        let mut config = Config::parse(ctx.config())?;
        for program in config.programs_mut() {
            install(&self.venvs, ctx, program).await?;
        }
        let files = RunFiles::new("hakiri-singer-")?;
        let settings = files.write("config.json", &config.tap.settings()?)?;

        let mut catalog = discover(ctx, &config, &settings).await?;
        let selected = catalog::select(&mut catalog, config.streams.as_deref()).map_err(|e| {
            ConnectorError::permanent(format!("{}: {e}", config.tap.program.display()))
        })?;
        let mut session = Session::new(ctx, &config);
        for stream in selected {
            session.observe(stream.stream, stream.schema).await?;
        }

        let catalog = files.write("catalog.json", &catalog)?;
        let state = state::rebuild(&ctx.run().cursors_at_start)
            .map(|state| files.write("state.json", &state))
            .transpose()?;
        let mut args: Vec<&Path> = vec![
            Path::new("--config"),
            &settings,
            Path::new("--catalog"),
            &catalog,
        ];
        if let Some(state) = &state {
            args.extend([Path::new("--state"), state.as_path()]);
        }
        match &config.sink {
            Sink::Output(output) => {
                let tap = ChildProcess::spawn(config.tap.spec(ctx, &args))?;
                Loader::new(session, output).run(tap).await
            }
            Sink::Target(target) => {
                let target_settings = files.write("target-config.json", &target.settings()?)?;
                let target = ChildProcess::spawn(
                    target
                        .spec(ctx, &[Path::new("--config"), &target_settings])
                        .stdin_piped(),
                )?;
                let tap = ChildProcess::spawn(config.tap.spec(ctx, &args))?;
                Pipe::new(session).run(tap, target).await
            }
        }
    }
}

/// Runs the tap in discovery mode and returns its catalog.
async fn discover(
    ctx: &RunContext,
    config: &Config,
    settings: &Path,
) -> Result<Value, ConnectorError> {
    let args = [Path::new("--config"), settings, Path::new("--discover")];
    let mut tap = ChildProcess::spawn(config.tap.spec(ctx, &args))?;
    let mut text = Vec::new();
    loop {
        let line = tokio::select! {
            line = tap.next_line() => line?,
            () = ctx.cancelled() => {
                tap.stop(config.stop_grace).await?;
                return Err(ConnectorError::Stopped("cancelled during discovery".into()));
            }
        };
        let Some(line) = line else { break };
        if text.len() + line.len() > MAX_CATALOG_BYTES {
            tap.stop(config.stop_grace).await?;
            return Err(ConnectorError::permanent(format!(
                "{} --discover printed more than {} MiB",
                config.tap.program.display(),
                MAX_CATALOG_BYTES >> 20
            )));
        }
        text.extend_from_slice(&line);
        text.push(b'\n');
    }
    tap.wait().await?.check()?;
    serde_json::from_slice(&text).map_err(|e| {
        ConnectorError::permanent(format!(
            "{} --discover did not print a JSON catalog: {e}",
            config.tap.program.display()
        ))
    })
}

/// Builds the venv of `program`'s `pip_url` in `venvs` unless it is built, logging progress, and
/// points `program` at its executable there; gives up when the run is cancelled (the unfinished
/// venv is rebuilt next time). A program given by `command` is left as it is.
pub(super) async fn install(
    venvs: &Venvs,
    ctx: &RunContext,
    program: &mut Program,
) -> Result<(), ConnectorError> {
    let Some(pip_url) = &program.pip_url else {
        return Ok(());
    };
    let executable = program.program.display().to_string();
    let install = venvs.install(pip_url, &executable);
    let installed = tokio::select! {
        installed = install => installed?,
        () = ctx.cancelled() => {
            return Err(ConnectorError::Stopped(format!("cancelled while installing {pip_url}")))
        }
    };
    if installed.built {
        tracing::info!(run = %ctx.run().id, pip_url, "installed");
    }
    program.program = installed.executable;
    Ok(())
}
