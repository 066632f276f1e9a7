//! The `singer` connector's config, checked: the tap, where its records go (Hakiri's output
//! directory or a Singer target), and the run's limits. See the module docs for the fields.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hakiri_core::{ConnectorConfig, CursorKind};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::super::fields::{decode, field, FieldError, NonEmpty, Positive};
use crate::connector::{ConnectorError, RunContext};
use crate::process::ProcessSpec;

/// The config as written: the tap's own fields, then the rest (see the module docs).
///
/// The tap's fields are listed here rather than flattened from [`ProgramFields`]: serde's
/// `flatten` does not work with `deny_unknown_fields`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Fields {
    command: Option<Command>,
    pip_url: Option<NonEmpty>,
    executable: Option<Executable>,
    config: Option<Map<String, Value>>,
    config_env: Option<BTreeMap<String, VariableName>>,
    env: Option<Vec<String>>,
    output: Option<NonEmpty>,
    target: Option<ProgramFields>,
    streams: Option<Vec<String>>,
    checkpoint_interval_ms: Option<Positive>,
    stop_grace_ms: Option<Positive>,
}

/// A program's fields as written: the tap's (at the top level) or the target's (`target`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "an object")]
pub(in crate::connectors) struct ProgramFields {
    pub(in crate::connectors) command: Option<Command>,
    pub(in crate::connectors) pip_url: Option<NonEmpty>,
    pub(in crate::connectors) executable: Option<Executable>,
    pub(in crate::connectors) config: Option<Map<String, Value>>,
    pub(in crate::connectors) config_env: Option<BTreeMap<String, VariableName>>,
    pub(in crate::connectors) env: Option<Vec<String>>,
}

/// `command`: a program, or an array of it and its first arguments.
#[derive(Deserialize)]
#[serde(
    untagged,
    expecting = "must be a program, or an array of it and its arguments, as strings"
)]
pub(in crate::connectors) enum Command {
    Program(String),
    Words(Vec<String>),
}

/// `executable`: a program's name in the venv's `bin/`, so never a path.
#[derive(Deserialize)]
#[serde(try_from = "String")]
pub(in crate::connectors) struct Executable(String);

impl TryFrom<String> for Executable {
    type Error = &'static str;
    fn try_from(name: String) -> Result<Self, Self::Error> {
        if name.trim().is_empty() || name.contains('/') || name == "." || name == ".." {
            Err("must be a program's name in the venv's bin/ directory (no '/')")
        } else {
            Ok(Self(name))
        }
    }
}

/// A value of `config_env`: the environment variable a setting is taken from.
#[derive(Deserialize)]
#[serde(try_from = "String")]
pub(in crate::connectors) struct VariableName(String);

impl TryFrom<String> for VariableName {
    type Error = &'static str;
    fn try_from(name: String) -> Result<Self, Self::Error> {
        if name.is_empty() {
            Err("must name an environment variable")
        } else {
            Ok(Self(name))
        }
    }
}

const OUTPUT_WITH_TARGET: &str =
    "goes with Hakiri as the loader; with a `target`, the target decides where records go";

const NO_OUTPUT: &str = "missing field `output` (the directory records are written to, unless a \
                         `target` loads them)";

/// The connector's config, checked.
pub(super) struct Config {
    pub(super) tap: Program,
    pub(super) sink: Sink,
    pub(super) streams: Option<Vec<String>>,
    pub(super) checkpoint_interval: Duration,
    pub(super) stop_grace: Duration,
}

/// Where the tap's records go.
pub(super) enum Sink {
    /// Hakiri writes them: `<output>/<stream>/<run id>.jsonl`.
    Output(PathBuf),
    /// A Singer target reads them from Hakiri.
    Target(Program),
}

/// A program the run starts (a tap, a target, an Airbyte source), with its settings.
pub(in crate::connectors) struct Program {
    /// With `pip_url`: the executable's name, until the run has installed it and puts its path
    /// in the venv here.
    pub(in crate::connectors) program: PathBuf,
    /// Its pip requirements, when it is installed by Hakiri.
    pub(in crate::connectors) pip_url: Option<String>,
    pub(super) args: Vec<String>,
    settings: Map<String, Value>,
    /// Settings whose values come from the reconciler's environment when a run starts.
    settings_env: Vec<(String, String)>,
    env: Vec<String>,
}

/// Refused before anything runs: a singer pipeline's cursors are its tap's bookmarks.
pub(super) fn check_kind(kind: CursorKind) -> Result<(), String> {
    super::super::opaque_only(
        kind,
        "singer",
        "a tap's bookmark is an object of its own making",
    )
}

impl Config {
    pub(super) fn parse(config: &ConnectorConfig) -> Result<Self, ConnectorError> {
        Self::decode(config).map_err(|e| e.in_config("singer"))
    }

    fn decode(config: &ConnectorConfig) -> Result<Self, FieldError> {
        let fields: Fields = decode(config.as_map())?;
        let tap = Program::check(
            "",
            ProgramFields {
                command: fields.command,
                pip_url: fields.pip_url,
                executable: fields.executable,
                config: fields.config,
                config_env: fields.config_env,
                env: fields.env,
            },
        )?;
        let sink = match (fields.target, fields.output) {
            (Some(target), None) => Sink::Target(Program::check("target", target)?),
            (None, Some(output)) => Sink::Output(output.into()),
            (Some(_), Some(_)) => return Err(FieldError::new("output", OUTPUT_WITH_TARGET)),
            (None, None) => return Err(FieldError::new("", NO_OUTPUT)),
        };
        let millis = |field: Option<Positive>, default| {
            Duration::from_millis(field.map_or(default, Positive::get))
        };
        Ok(Self {
            tap,
            sink,
            streams: fields.streams,
            checkpoint_interval: millis(fields.checkpoint_interval_ms, 1000),
            stop_grace: millis(fields.stop_grace_ms, 10_000),
        })
    }

    /// The programs the run starts: the tap, then the target if there is one.
    pub(super) fn programs_mut(&mut self) -> impl Iterator<Item = &mut Program> {
        let target = match &mut self.sink {
            Sink::Target(target) => Some(target),
            Sink::Output(_) => None,
        };
        std::iter::once(&mut self.tap).chain(target)
    }
}

impl Program {
    /// Checks the rules between a program's fields (`command` or `pip_url`, `executable` only
    /// with `pip_url`); `within` is where the fields sit (`"target"`, or `""` for the tap).
    pub(in crate::connectors) fn check(
        within: &str,
        fields: ProgramFields,
    ) -> Result<Self, FieldError> {
        let pip_url = fields.pip_url.map(|pip_url| pip_url.0);
        let executable = fields.executable.map(|name| name.0);
        let (program, args) = match (&pip_url, fields.command) {
            (Some(_), Some(_)) => {
                return Err(FieldError::new(
                    field(within, "command"),
                    "cannot be given with `pip_url`: name the program in the venv with \
                     `executable`",
                ))
            }
            (Some(pip_url), None) => {
                let name = executable.or_else(|| {
                    pip_url
                        .split_whitespace()
                        .find(|word| !word.starts_with('-'))
                        .and_then(crate::venvs::package_name)
                        .map(str::to_owned)
                });
                let name = name.ok_or_else(|| {
                    FieldError::new(
                        field(within, "executable"),
                        "is needed: the program's name cannot be told from this `pip_url`",
                    )
                })?;
                (PathBuf::from(name), Vec::new())
            }
            (None, _) if executable.is_some() => {
                return Err(FieldError::new(
                    field(within, "executable"),
                    "goes with `pip_url` (for a program on PATH, use `command`)",
                ))
            }
            (None, Some(command)) => command.words().ok_or_else(|| {
                FieldError::new(
                    field(within, "command"),
                    "must name the program, then its arguments",
                )
            })?,
            (None, None) => {
                return Err(FieldError::new(
                    within,
                    "`command` or `pip_url` is required (the program's executable, or the pip \
                     requirement that installs it)",
                ))
            }
        };
        Ok(Self {
            program,
            pip_url,
            args,
            settings: fields.config.unwrap_or_default(),
            settings_env: fields
                .config_env
                .unwrap_or_default()
                .into_iter()
                .map(|(setting, variable)| (setting, variable.0))
                .collect(),
            env: fields.env.unwrap_or_default(),
        })
    }

    /// The program's settings, with those taken from the environment filled in.
    pub(in crate::connectors) fn settings(&self) -> Result<Value, ConnectorError> {
        let mut settings = self.settings.clone();
        for (setting, variable) in &self.settings_env {
            let value = std::env::var(variable).map_err(|_| {
                ConnectorError::permanent(format!(
                    "config_env.{setting} of {} comes from ${variable}, \
                     which is not set in the reconciler's environment",
                    self.program.display()
                ))
            })?;
            settings.insert(setting.clone(), Value::String(value));
        }
        Ok(Value::Object(settings))
    }

    /// The program's process, with `args` after the configured ones.
    pub(in crate::connectors) fn spec(&self, ctx: &RunContext, args: &[&Path]) -> ProcessSpec {
        let spec = self.env.iter().fold(
            ProcessSpec::new(&self.program, ctx.run().id),
            |spec, name| spec.inherit_env(name),
        );
        spec.args(&self.args).args(args.iter().copied())
    }
}

impl Command {
    /// The program and its first arguments; `None` without a program.
    fn words(self) -> Option<(PathBuf, Vec<String>)> {
        let mut words = match self {
            Command::Program(program) => vec![program],
            Command::Words(words) => words,
        };
        if words.first()?.trim().is_empty() {
            return None;
        }
        let program = PathBuf::from(words.remove(0));
        Some((program, words))
    }
}
