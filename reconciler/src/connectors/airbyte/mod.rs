//! The `airbyte` connector: an Airbyte source (a `source-*` program speaking the Airbyte
//! protocol, such as the `airbyte-source-*` packages on PyPI) run as a Hakiri pipeline, with
//! Hakiri as the loader of its records.
//!
//! A run:
//! 1. `source check --config …`, unless a run succeeded since the pipeline's spec (or pause)
//!    last changed and it has a cursor (so: its first run, the first after a config change, a
//!    run after every cursor was reset): a `FAILED` connection status fails the run permanently
//!    with the source's message.
//! 2. `source discover --config …`: the streams to read are configured from its catalog and
//!    the config's `streams` (sync mode, cursor field, primary key), and each one's `json_schema`
//!    is observed with its key before anything is read: a held or rejected change ends the run
//!    before the source reads.
//! 3. `source read --config … --catalog … [--state …]`, its messages applied in order:
//!    - `RECORD`: checked against its stream's observed schema, appended to
//!      `<output>/<stream>/<run id>.jsonl`;
//!    - `STATE`: each stream's newest state is checkpointed once the records before it are
//!      durable (every output flushed and `fsync`ed), at most once every
//!      `checkpoint_interval_ms` and at the end; a STREAM state's `sourceStats.recordCount` must
//!      equal the records Hakiri wrote of its stream since its previous state, or the run fails
//!      permanently;
//!    - `TRACE ERROR`: the run fails with its message once the source ends, permanently for a
//!      `config_error`, transiently otherwise; a stream's `TRACE STREAM_STATUS` and STREAM
//!      `ESTIMATE` are kept in the run's statistics (and logged), `LOG` is logged;
//!    - `CONTROL` (the source changed its own config): the run fails permanently, since Hakiri
//!      cannot store the new config yet.
//!
//! The source's state maps onto the pipeline's cursors (`state.rs`, ADR 0029): a `STREAM` state
//! is its stream's cursor (a `stream_state` of `null` resets it), a `GLOBAL` state one reserved
//! cursor, `_airbyte_global`, kept whole; a `LEGACY` state is refused. The next run's `--state`
//! is rebuilt from the cursors (leaving out streams read in `full_refresh`, which start every
//! run without state), so `hakiri cursors reset` of one stream re-reads that stream only and a
//! rollback works per stream. Pipeline `cursor_kind = "opaque"`.
//!
//! | field | required | meaning |
//! |---|---|---|
//! | `command` | one of `command`, `pip_url` | the source: an executable (looked up on `PATH`) or an array of it and its first arguments |
//! | `pip_url` | one of `command`, `pip_url` | the source as pip requirements (`"airbyte-source-faker==7.2.1"`), installed into a virtual environment of its own, as for the `singer` connector |
//! | `executable` | no, with `pip_url` only | the program in that venv's `bin/` (default: `source-x` for a package `airbyte-source-x`, else the package's name) |
//! | `output` | yes | directory; each run writes `<output>/<stream>/<run id>.jsonl` |
//! | `config` | no | the source's settings (an object), written to a file only the run can read |
//! | `config_env` | no | settings taken from the reconciler's environment when the run starts, `{"api_key": "SOURCE_API_KEY"}` |
//! | `env` | no | names of further environment variables the source gets |
//! | `streams` | no | the streams to read (default: every stream the source offers), each a name (`namespace.name` in a namespace) or `{"name", "sync_mode", "cursor_field", "primary_key"}`: `sync_mode` `incremental` (the default where supported) or `full_refresh`; `cursor_field` a path, only where the source does not define it; `primary_key` a list of paths, each one top-level field |
//! | `checkpoint_interval_ms` | no | at most one checkpoint per this many ms while the source runs (default 1000) |
//! | `stop_grace_ms` | no | how long a stopped source has to exit after SIGTERM before SIGKILL (default 10000) |
//!
//! ```json
//! { "pip_url": "airbyte-source-faker==7.2.1", "output": "data/out",
//!   "config": {"count": 1000, "seed": 42}, "streams": ["users", "purchases"] }
//! ```

mod catalog;
mod config;
pub(crate) mod message;
mod read;
pub(crate) mod state;

use std::path::Path;

use async_trait::async_trait;
use hakiri_core::{ConnectorConfig, PipelineSpec, StreamName};
use serde_json::Value;

use self::config::{check_kind, Config, SyncMode};
use self::message::{Message, TraceError};
use self::read::Read;
use super::singer::records::RecordCheck;
use super::{PipRequirement, RunFiles};
use crate::connector::{Connector, ConnectorError, RunContext, SpecProblem};
use crate::process::ChildProcess;
use crate::venvs::Venvs;

/// The `airbyte` connector (see the module docs).
#[derive(Debug, Clone, Default)]
pub struct AirbyteConnector {
    /// Where sources named by `pip_url` are installed.
    venvs: Venvs,
}

impl AirbyteConnector {
    /// The connector, installing sources named by `pip_url` under `venvs`' root.
    pub fn with_venvs(venvs: Venvs) -> Self {
        Self { venvs }
    }

    /// The pip requirement an airbyte pipeline's config installs its source from: none for a
    /// source given by `command`.
    ///
    /// # Errors
    /// The config is not a valid airbyte config (the error names the field).
    pub fn pip_requirements(
        config: &ConnectorConfig,
    ) -> Result<Vec<PipRequirement>, ConnectorError> {
        let source = Config::parse(config)?.source;
        Ok(source
            .pip_url
            .map(|pip_url| PipRequirement {
                pip_url,
                executable: source.program.display().to_string(),
            })
            .into_iter()
            .collect())
    }
}

#[async_trait]
impl Connector for AirbyteConnector {
    fn check(&self, spec: &PipelineSpec) -> Result<(), SpecProblem> {
        check_kind(spec.cursor_kind).map_err(SpecProblem::cursor_kind)?;
        Config::parse(&spec.config)
            .map(drop)
            .map_err(SpecProblem::config)
    }

    async fn run(&self, ctx: &RunContext) -> Result<(), ConnectorError> {
        check_kind(ctx.pipeline().spec.cursor_kind).map_err(ConnectorError::permanent)?;
        let mut config = Config::parse(ctx.config())?;
        super::singer::install(&self.venvs, ctx, &mut config.source).await?;
        let files = RunFiles::new("hakiri-airbyte-")?;
        let settings = files.write("config.json", &config.source.settings()?)?;
        let program = config.source.program.display().to_string();

        // A config not yet proven: the pipeline's first run, its first since its spec changed,
        // or one after every cursor was reset (a new start, as after a credential change).
        let fresh = ctx.run().cursors_at_start.values().all(|v| v.is_initial());
        if fresh || !ctx.succeeded_since_changed().await? {
            let answer = command(
                ctx,
                &config,
                &[Path::new("check"), Path::new("--config"), &settings],
            )
            .await?;
            match answer.status {
                Some((true, _)) => {}
                Some((false, message)) => {
                    return Err(ConnectorError::permanent(format!(
                        "{program} check: the source cannot connect with this config: {}",
                        message.as_deref().unwrap_or("no reason given")
                    )))
                }
                None => {
                    return Err(ConnectorError::permanent(format!(
                        "{program} check printed no CONNECTION_STATUS"
                    )))
                }
            }
        }

        let answer = command(
            ctx,
            &config,
            &[Path::new("discover"), Path::new("--config"), &settings],
        )
        .await?;
        let discovered = answer.catalog.ok_or_else(|| {
            ConnectorError::permanent(format!("{program} discover printed no CATALOG"))
        })?;
        let (configured, selected) = catalog::configure(&discovered, config.streams.as_deref())
            .map_err(|e| ConnectorError::permanent(format!("{program}: {e}")))?;
        let fresh: Vec<StreamName> = selected
            .iter()
            .filter(|stream| stream.sync_mode == SyncMode::FullRefresh)
            .map(|stream| stream.stream.clone())
            .collect();
        let mut streams = Vec::with_capacity(selected.len());
        for stream in selected {
            ctx.observe_schema(&stream.stream, stream.schema.clone())
                .await?;
            streams.push((stream.stream, RecordCheck::new(stream.schema)));
        }

        let catalog = files.write("catalog.json", &configured)?;
        let state = state::rebuild(&ctx.run().cursors_at_start, |stream| fresh.contains(stream))
            .map(|state| files.write("state.json", &state))
            .transpose()?;
        let mut args: Vec<&Path> = vec![
            Path::new("read"),
            Path::new("--config"),
            &settings,
            Path::new("--catalog"),
            &catalog,
        ];
        if let Some(state) = &state {
            args.extend([Path::new("--state"), state.as_path()]);
        }
        let source = ChildProcess::spawn(config.source.spec(ctx, &args))?;
        Read::new(ctx, &config, streams).run(source).await
    }
}

/// What `check` or `discover` answered.
#[derive(Default)]
struct Answer {
    /// `CONNECTION_STATUS`: whether it succeeded, and why not.
    status: Option<(bool, Option<String>)>,
    /// `CATALOG`.
    catalog: Option<Value>,
}

/// Runs the source with `args` (`check` or `discover`) and collects its answer; its logs are
/// logged, and a `TRACE ERROR` or a failed exit fails the run.
async fn command(
    ctx: &RunContext,
    config: &Config,
    args: &[&Path],
) -> Result<Answer, ConnectorError> {
    let mut source = ChildProcess::spawn(config.source.spec(ctx, args))?;
    let program = config.source.program.display().to_string();
    let what = args
        .first()
        .map(|a| a.display().to_string())
        .unwrap_or_default();
    let mut answer = Answer::default();
    let mut error: Option<TraceError> = None;
    loop {
        let line = tokio::select! {
            line = source.read_line() => line?,
            () = ctx.cancelled() => {
                source.stop(config.stop_grace).await?;
                return Err(ConnectorError::Stopped(format!("cancelled during {what}")));
            }
        };
        let Some(line) = line else { break };
        let message = match Message::parse(line) {
            Ok(message) => message,
            Err(e) => {
                let e = format!("{program} {what} printed a line that is not a message: {e}");
                source.stop(config.stop_grace).await?;
                return Err(ConnectorError::permanent(e));
            }
        };
        match message {
            Message::ConnectionStatus { succeeded, message } => {
                answer.status = Some((succeeded, message));
            }
            Message::Catalog(catalog) => answer.catalog = Some(catalog),
            Message::Log { level, message } => read::log(ctx, &level, &message),
            Message::Trace(trace) => error = trace.error.or(error),
            _ => {}
        }
    }
    let exit = source.wait().await?;
    if let Some(error) = error {
        return Err(read::failure(&format!("{program} {what}"), &error));
    }
    exit.check()?;
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_pip_url_is_the_one_requirement_to_install_and_a_command_none() {
        let config = |value| ConnectorConfig::new(value).unwrap();
        let requirements = AirbyteConnector::pip_requirements(&config(
            json!({"pip_url": "airbyte-source-faker==7.2.1", "output": "o"}),
        ))
        .unwrap();
        assert_eq!(
            requirements,
            [PipRequirement {
                pip_url: "airbyte-source-faker==7.2.1".into(),
                executable: "source-faker".into(),
            }]
        );
        let none = AirbyteConnector::pip_requirements(&config(
            json!({"command": "source-x", "output": "o"}),
        ))
        .unwrap();
        assert_eq!(none, []);
        let bad = AirbyteConnector::pip_requirements(&config(json!({"output": "o"})))
            .unwrap_err()
            .to_string();
        assert!(bad.starts_with("airbyte config"), "{bad}");
    }
}
