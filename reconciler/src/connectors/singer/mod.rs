//! The `singer` connector: a Singer tap run as a Hakiri pipeline, with Hakiri as its loader.
//!
//! Each run discovers the tap's catalog (`tap --config … --discover`), selects the configured
//! streams, observes each stream's discovered schema, then runs
//! `tap --config … --catalog … [--state …]` and reads its messages:
//! - `SCHEMA`: observed before any later record of its stream is written; a held or rejected
//!   change stops the tap (SIGTERM to its group, SIGKILL after the grace): nothing it prints
//!   after that point is written or checkpointed, and the run ends with the decision named.
//! - `RECORD`: checked against its stream's observed schema (a tap's SCHEMA can lag its data),
//!   then appended to `<output>/<stream>/<run id>.jsonl`.
//! - `STATE`: kept; at most every `checkpoint_interval_ms` and at the end, every output is made
//!   durable (flush, `fsync`) and only then is the state checkpointed — so a checkpoint never
//!   covers a record that is not on disk.
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
//! | `output` | yes | directory; each run writes `<output>/<stream>/<run id>.jsonl` |
//! | `config` | no | the tap's settings (an object), written to a file only the run can read |
//! | `config_env` | no | settings taken from the reconciler's environment when the run starts, `{"password": "PG_PASSWORD"}`: secrets stay out of the catalog |
//! | `env` | no | names of further environment variables the tap gets (it gets only `PATH`, `HOME`, `LANG`, `LC_ALL`, `TMPDIR`, `TZ` otherwise) |
//! | `streams` | no | the streams to sync, by `tap_stream_id` (default: every stream the tap offers) |
//! | `checkpoint_interval_ms` | no | at most one checkpoint per this many ms while the tap runs (default 1000) |
//! | `stop_grace_ms` | no | how long a stopped tap has to exit after SIGTERM before SIGKILL (default 10000) |
//!
//! # Taps installed from `pip_url`
//! A tap named by `pip_url` runs from `<venvs>/<package>-<hash of pip_url>/bin/<executable>`
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
//! tap's final STATE included) is written and checkpointed, and the run ends cancelled, to resume
//! from there. A cancel, a lost lease or a held schema discard what it prints instead.
//!
//! The tap's config, catalog and state files live in a private temporary directory (mode 0700,
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

mod catalog;
#[cfg(test)]
mod config_tests;
mod message;
mod records;
mod state;

use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use hakiri_core::cursor::json_type;
use hakiri_core::{ConnectorConfig, CursorKind, PipelineSpec, Schema, StreamName};
use serde_json::{Map, Value};
use tokio::time::Instant;

use self::message::Message;
use super::{stream_dir_name, Fields, Output};
use crate::connector::{Connector, ConnectorError, RunContext, SpecProblem};
use crate::process::{ChildProcess, ProcessSpec};
use crate::venvs::Venvs;

/// The `singer` connector (see the module docs).
#[derive(Debug, Clone, Default)]
pub struct SingerConnector {
    /// Where taps named by `pip_url` are installed.
    venvs: Venvs,
}

impl SingerConnector {
    /// The connector, installing taps named by `pip_url` under `venvs`' root.
    pub fn with_venvs(venvs: Venvs) -> Self {
        Self { venvs }
    }

    /// Where taps named by `pip_url` are installed.
    pub fn venvs(&self) -> &Venvs {
        &self.venvs
    }

    /// The pip requirement a singer pipeline's config installs its tap from, if it names one
    /// (`None` for a tap given by `command`).
    ///
    /// # Errors
    /// The config is not a valid singer config (the error names the field).
    pub fn pip_requirement(
        config: &ConnectorConfig,
    ) -> Result<Option<PipRequirement>, ConnectorError> {
        let config = Config::parse(config)?;
        Ok(config.pip_url.map(|pip_url| PipRequirement {
            pip_url,
            executable: config.program.display().to_string(),
        }))
    }

    /// Builds the venv of `pip_url` unless it is built, logging progress; gives up when the
    /// run is cancelled (the unfinished venv is rebuilt next time).
    async fn install(
        &self,
        ctx: &RunContext,
        pip_url: &str,
        executable: &str,
    ) -> Result<PathBuf, ConnectorError> {
        let install = self.venvs.install(pip_url, executable);
        let installed = tokio::select! {
            installed = install => installed?,
            () = ctx.cancelled() => {
                return Err(ConnectorError::Stopped("cancelled while installing the tap".into()))
            }
        };
        if installed.built {
            tracing::info!(run = %ctx.run().id, pip_url, "tap installed");
        }
        Ok(installed.executable)
    }
}

/// A tap to install: what [`SingerConnector::pip_requirement`] finds in a config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipRequirement {
    /// The requirement(s), as pip takes them.
    pub pip_url: String,
    /// The program's name in the venv's `bin/`.
    pub executable: String,
}

const FIELDS: &[&str] = &[
    "command",
    "pip_url",
    "executable",
    "output",
    "config",
    "config_env",
    "env",
    "streams",
    "checkpoint_interval_ms",
    "stop_grace_ms",
];

/// Largest discovered catalog read: a catalog is metadata, not data.
const MAX_CATALOG_BYTES: usize = 64 << 20;

/// The connector's config, checked.
struct Config {
    /// With `pip_url`: the executable's name, until the run has installed it and puts its path
    /// in the venv here.
    program: PathBuf,
    /// The tap's pip requirements, when it is installed by Hakiri.
    pip_url: Option<String>,
    args: Vec<String>,
    output: PathBuf,
    settings: Map<String, Value>,
    /// Settings whose values come from the reconciler's environment when a run starts.
    settings_env: Vec<(String, String)>,
    env: Vec<String>,
    streams: Option<Vec<String>>,
    checkpoint_interval: Duration,
    stop_grace: Duration,
}

/// Refused before anything runs: a singer pipeline's cursors are its tap's bookmarks.
fn check_kind(kind: CursorKind) -> Result<(), String> {
    if kind == CursorKind::Opaque {
        Ok(())
    } else {
        Err(
            "singer pipelines need cursor_kind = \"opaque\": a tap's bookmark is an object of \
             its own making, not a number or a string Hakiri can order"
                .to_owned(),
        )
    }
}

impl Config {
    fn parse(config: &ConnectorConfig) -> Result<Self, ConnectorError> {
        let fields = Fields::new("singer", config, FIELDS)?;
        let pip_url = match fields.map.get("pip_url") {
            None | Some(Value::Null) => None,
            Some(Value::String(pip_url)) if !pip_url.trim().is_empty() => Some(pip_url.clone()),
            Some(other) => {
                return Err(fields.error(
                    "pip_url",
                    format!(
                        "must be pip requirements as one string (\"tap-x==1.2.3\"), not {}",
                        json_type(other)
                    ),
                ))
            }
        };
        let executable = match fields.map.get("executable") {
            None | Some(Value::Null) => None,
            Some(Value::String(name))
                if !name.trim().is_empty()
                    && !name.contains('/')
                    && name != "."
                    && name != ".." =>
            {
                Some(name.clone())
            }
            Some(_) => {
                return Err(fields.error(
                    "executable",
                    "must be a program's name in the venv's bin/ directory (no '/')",
                ))
            }
        };
        let (program, args) = match (&pip_url, fields.map.get("command")) {
            (Some(_), Some(command)) if !command.is_null() => {
                return Err(fields.error(
                    "command",
                    "cannot be given with \"pip_url\": name the program in the venv with \"executable\"",
                ))
            }
            (Some(pip_url), _) => {
                let name = executable.or_else(|| {
                    pip_url
                        .split_whitespace()
                        .find(|word| !word.starts_with('-'))
                        .and_then(crate::venvs::package_name)
                        .map(str::to_owned)
                });
                let name = name.ok_or_else(|| {
                    fields.error(
                        "executable",
                        "is needed: the program's name cannot be told from this \"pip_url\"",
                    )
                })?;
                (PathBuf::from(name), Vec::new())
            }
            (None, _) if executable.is_some() => {
                return Err(fields.error(
                    "executable",
                    "goes with \"pip_url\" (for a program on PATH, use \"command\")",
                ))
            }
            (None, command) => match command {
            Some(Value::String(program)) if !program.trim().is_empty() => {
                (PathBuf::from(program), Vec::new())
            }
            Some(Value::Array(items)) if !items.is_empty() => {
                let words = items
                    .iter()
                    .map(|item| item.as_str().map(str::to_owned))
                    .collect::<Option<Vec<_>>>()
                    .filter(|words| !words[0].trim().is_empty())
                    .ok_or_else(|| {
                        fields.error("command", "must list the tap and its arguments as strings")
                    })?;
                (PathBuf::from(&words[0]), words[1..].to_vec())
            }
            None | Some(Value::Null) => {
                return Err(fields.error(
                    "command",
                    "or \"pip_url\" is required (the tap's executable, or the pip requirement that installs it)",
                ))
            }
            Some(other) => {
                return Err(fields.error(
                    "command",
                    format!(
                        "must be a string or an array of strings, not {}",
                        json_type(other)
                    ),
                ))
            }
            },
        };
        let settings = match fields.map.get("config") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(settings)) => settings.clone(),
            Some(other) => {
                return Err(fields.error(
                    "config",
                    format!("must be an object, not {}", json_type(other)),
                ))
            }
        };
        let settings_env = match fields.map.get("config_env") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Object(refs)) => refs
                .iter()
                .map(|(setting, variable)| match variable {
                    Value::String(variable) if !variable.is_empty() => {
                        Ok((setting.clone(), variable.clone()))
                    }
                    _ => Err(fields.error(
                        "config_env",
                        format!("{setting:?} must name an environment variable"),
                    )),
                })
                .collect::<Result<_, _>>()?,
            Some(other) => {
                return Err(fields.error(
                    "config_env",
                    format!(
                        "must map settings to environment variable names, not {}",
                        json_type(other)
                    ),
                ))
            }
        };
        let millis = |field, default| {
            fields
                .positive_int(field, default)
                .map(Duration::from_millis)
        };
        Ok(Self {
            program,
            pip_url,
            args,
            output: fields.required_path("output", "the directory records are written to")?,
            settings,
            settings_env,
            env: fields.optional_strings("env")?.unwrap_or_default(),
            streams: fields.optional_strings("streams")?,
            checkpoint_interval: millis("checkpoint_interval_ms", 1000)?,
            stop_grace: millis("stop_grace_ms", 10_000)?,
        })
    }

    /// The tap's settings, with those taken from the environment filled in.
    fn settings(&self) -> Result<Value, ConnectorError> {
        let mut settings = self.settings.clone();
        for (setting, variable) in &self.settings_env {
            let value = std::env::var(variable).map_err(|_| {
                ConnectorError::permanent(format!(
                    "singer config: \"config_env\" {setting:?} comes from ${variable}, which is \
                     not set in the reconciler's environment"
                ))
            })?;
            settings.insert(setting.clone(), Value::String(value));
        }
        Ok(Value::Object(settings))
    }

    /// The tap's process, with `args` after the configured ones.
    fn spec(&self, ctx: &RunContext, args: &[&Path]) -> ProcessSpec {
        let spec = self.env.iter().fold(
            ProcessSpec::new(&self.program, ctx.run().id),
            |spec, name| spec.inherit_env(name),
        );
        spec.args(&self.args).args(args.iter().copied())
    }
}

/// The run's private directory for the tap's files; removed when dropped.
struct RunFiles {
    dir: tempfile::TempDir,
}

impl RunFiles {
    fn new() -> Result<Self, ConnectorError> {
        let dir = tempfile::Builder::new()
            .prefix("hakiri-singer-")
            .tempdir()
            .map_err(|e| {
                ConnectorError::transient(format!(
                    "cannot create the run's temporary directory: {e}"
                ))
            })?;
        Ok(Self { dir })
    }

    /// Writes `value` as `name`, readable by this user only (it may hold secrets).
    fn write(&self, name: &str, value: &Value) -> Result<PathBuf, ConnectorError> {
        let path = self.dir.path().join(name);
        let written = (|| {
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(&path)?;
            serde_json::to_writer(&mut file, value)?;
            file.flush()
        })();
        written.map_err(|e| {
            ConnectorError::transient(format!("cannot write {}: {e}", path.display()))
        })?;
        Ok(path)
    }
}

#[async_trait]
impl Connector for SingerConnector {
    fn check(&self, spec: &PipelineSpec) -> Result<(), SpecProblem> {
        check_kind(spec.cursor_kind).map_err(|message| SpecProblem {
            field: "cursor_kind",
            message,
        })?;
        Config::parse(&spec.config)
            .map(drop)
            .map_err(|e| SpecProblem {
                field: "config",
                message: e.to_string(),
            })
    }

    async fn run(&self, ctx: &RunContext) -> Result<(), ConnectorError> {
        check_kind(ctx.pipeline().spec.cursor_kind).map_err(ConnectorError::permanent)?;
        let mut config = Config::parse(ctx.config())?;
        if let Some(pip_url) = &config.pip_url {
            let executable = config.program.display().to_string();
            config.program = self.install(ctx, pip_url, &executable).await?;
        }
        let files = RunFiles::new()?;
        let settings = files.write("config.json", &config.settings()?)?;

        let mut catalog = discover(ctx, &config, &settings).await?;
        let selected = catalog::select(&mut catalog, config.streams.as_deref())
            .map_err(|e| ConnectorError::permanent(format!("{}: {e}", config.program.display())))?;
        let mut sync = Loader::new(ctx, &config);
        for stream in selected {
            if stream.stream.as_str() == state::RESERVED {
                return Err(ConnectorError::permanent(format!(
                    "the tap offers a stream named {:?}, the name of the cursor that keeps the rest of its state",
                    state::RESERVED
                )));
            }
            sync.observe(stream.stream, stream.schema).await?;
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
        let tap = ChildProcess::spawn(config.spec(ctx, &args))?;
        sync.run(tap).await
    }
}

/// Runs the tap in discovery mode and returns its catalog.
async fn discover(
    ctx: &RunContext,
    config: &Config,
    settings: &Path,
) -> Result<Value, ConnectorError> {
    let args = [Path::new("--config"), settings, Path::new("--discover")];
    let mut tap = ChildProcess::spawn(config.spec(ctx, &args))?;
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
                config.program.display(),
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
            config.program.display()
        ))
    })
}

/// One run of the tap: its messages applied to outputs and the catalog.
struct Loader<'a> {
    ctx: &'a RunContext,
    config: &'a Config,
    /// Each stream's schema as last observed: records are checked against it.
    schemas: HashMap<StreamName, Schema>,
    outputs: BTreeMap<StreamName, Output>,
    /// The newest STATE not yet checkpointed: it covers every record written before it.
    pending: Option<Value>,
    last_checkpoint: Instant,
    line: u64,
}

/// How reading the tap ended early.
enum Halt {
    /// The tap's output is wrong, or a schema stopped the run: stop the tap, keep the
    /// checkpoints that cover what was written before this point, and end with this error.
    Stop(ConnectorError),
    /// The run was cancelled or its lease lost: stop the tap; nothing more may be written.
    Abort(ConnectorError),
}

impl<'a> Loader<'a> {
    fn new(ctx: &'a RunContext, config: &'a Config) -> Self {
        Self {
            ctx,
            config,
            schemas: HashMap::new(),
            outputs: BTreeMap::new(),
            pending: None,
            last_checkpoint: Instant::now(),
            line: 0,
        }
    }

    /// Reads the tap to its end (or to a stop), then checkpoints its last state.
    async fn run(mut self, mut tap: ChildProcess) -> Result<(), ConnectorError> {
        // Set when the reconciler shuts down: the tap was asked to stop (SIGTERM) and what it
        // prints until it exits — records and the final state that covers them — still counts.
        let mut stopping = false;
        let halt = loop {
            let line = tokio::select! {
                line = tap.next_line() => line,
                () = self.ctx.cancelled() => break Some(Halt::Abort(ConnectorError::Stopped("cancelled".into()))),
                () = self.ctx.stopping(), if !stopping => {
                    tap.terminate(self.config.stop_grace);
                    stopping = true;
                    continue;
                }
            };
            let line = match line {
                Ok(Some(line)) => line,
                Ok(None) => break None,
                Err(e) => break Some(Halt::Stop(e.into())),
            };
            self.line += 1;
            if let Err(halt) = self.apply(&line).await {
                break Some(halt);
            }
        };
        let exit = match &halt {
            None => tap.wait().await?,
            Some(_) => tap.stop(self.config.stop_grace).await?,
        };
        match halt {
            // Nothing the tap printed after the stop point counts, but the state before it covers
            // records written before it.
            Some(Halt::Stop(error)) => {
                self.checkpoint().await?;
                Err(error)
            }
            Some(Halt::Abort(error)) => Err(error),
            None => {
                // A state printed before a failure still covers the records before it.
                self.checkpoint().await?;
                if stopping {
                    // The tap exits 0 after a SIGTERM, but it did not finish: the run is
                    // cancelled, to be resumed from this checkpoint.
                    return Err(ConnectorError::Stopped(
                        "the reconciler is shutting down; the tap was stopped after its last state was recorded".into(),
                    ));
                }
                exit.check()
            }
        }
    }

    /// Applies one line of the tap's output.
    async fn apply(&mut self, line: &[u8]) -> Result<(), Halt> {
        let message = Message::parse(line).map_err(|e| {
            Halt::Stop(ConnectorError::permanent(format!(
                "{} output line {}: {e}",
                self.config.program.display(),
                self.line
            )))
        })?;
        match message {
            Message::Schema {
                stream,
                schema,
                key_properties,
            } => {
                let stream = self.stream(&stream)?;
                let schema = Schema::from_json_schema(&schema, &key_properties).map_err(|e| {
                    Halt::Stop(ConnectorError::permanent(format!(
                        "SCHEMA of stream {stream} (line {}): {e}",
                        self.line
                    )))
                })?;
                if self.schemas.get(&stream) != Some(&schema) {
                    self.observe(stream, schema)
                        .await
                        .map_err(|e| self.halt(e))?;
                }
            }
            Message::Record { stream, record } => {
                let stream = self.stream(&stream)?;
                let Some(schema) = self.schemas.get(&stream) else {
                    return Err(Halt::Stop(ConnectorError::permanent(format!(
                        "RECORD of stream {stream} (line {}) before any SCHEMA of it",
                        self.line
                    ))));
                };
                if let Some(problem) = records::mismatch(schema, &record) {
                    return Err(Halt::Stop(ConnectorError::permanent(format!(
                        "RECORD of stream {stream} (line {}) does not fit its schema: {problem}",
                        self.line
                    ))));
                }
                self.write(&stream, &record).await.map_err(Halt::Stop)?;
            }
            Message::State { value } => {
                // `{}` says nothing (targets and taps print it before they know anything).
                if value.as_object().is_some_and(Map::is_empty) {
                    return Ok(());
                }
                self.pending = Some(value);
                if self.last_checkpoint.elapsed() >= self.config.checkpoint_interval {
                    self.checkpoint().await.map_err(|e| self.halt(e))?;
                }
            }
            Message::Other { kind } => {
                tracing::debug!(run = %self.ctx.run().id, kind, "singer message passed over");
            }
        }
        Ok(())
    }

    /// Observes `schema` on `stream`; carries on only if it is accepted.
    async fn observe(&mut self, stream: StreamName, schema: Schema) -> Result<(), ConnectorError> {
        self.ctx.observe_schema(&stream, schema.clone()).await?;
        self.schemas.insert(stream, schema);
        Ok(())
    }

    async fn write(
        &mut self,
        stream: &StreamName,
        record: &Map<String, Value>,
    ) -> Result<(), ConnectorError> {
        let mut bytes = serde_json::to_vec(record)
            .map_err(|e| ConnectorError::permanent(format!("cannot encode a record: {e}")))?;
        bytes.push(b'\n');
        let output = match self.outputs.get_mut(stream) {
            Some(output) => output,
            None => {
                let dir = self.config.output.join(stream.as_str());
                let output = Output::new(dir, format!("{}.jsonl", self.ctx.run().id));
                self.outputs.entry(stream.clone()).or_insert(output)
            }
        };
        output.write(&bytes).await?;
        self.ctx.record(stream, 1, bytes.len() as u64);
        Ok(())
    }

    /// Makes every output durable, then checkpoints the pending state's cursors that changed.
    /// Records written after the last state are made durable too (a run's file holds every
    /// record the run read), but no checkpoint covers them: the next run reads them again.
    async fn checkpoint(&mut self) -> Result<(), ConnectorError> {
        for output in self.outputs.values_mut() {
            output.sync().await?;
        }
        let Some(value) = self.pending.take() else {
            return Ok(());
        };
        let cursors = state::split(&value).map_err(|e| {
            ConnectorError::permanent(format!("{}: {e}", self.config.program.display()))
        })?;
        for (stream, cursor) in cursors {
            if self.ctx.cursor(&stream).as_ref() != Some(&cursor) {
                self.ctx.checkpoint(&stream, cursor).await?;
            }
        }
        self.last_checkpoint = Instant::now();
        Ok(())
    }

    /// A stream name from the tap, safe as one directory name.
    fn stream(&self, name: &str) -> Result<StreamName, Halt> {
        stream_dir_name(name).map_err(|problem| {
            Halt::Stop(ConnectorError::permanent(format!(
                "{} output line {}: stream {problem}",
                self.config.program.display(),
                self.line
            )))
        })
    }

    /// How an error from the catalog or the outputs ends the read: a lost lease or a cancel
    /// writes nothing more; anything else keeps what came before.
    fn halt(&self, error: ConnectorError) -> Halt {
        if self.ctx.is_cancelled() {
            Halt::Abort(error)
        } else {
            Halt::Stop(error)
        }
    }
}
