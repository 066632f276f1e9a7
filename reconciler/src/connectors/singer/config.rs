//! The `singer` connector's config, checked: the tap, where its records go (Hakiri's output
//! directory or a Singer target), and the run's limits. See the module docs for the fields.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hakiri_core::cursor::json_type;
use hakiri_core::{ConnectorConfig, CursorKind};
use serde_json::{Map, Value};

use super::super::Fields;
use crate::connector::{ConnectorError, RunContext};
use crate::process::ProcessSpec;

const FIELDS: &[&str] = &[
    "command",
    "pip_url",
    "executable",
    "output",
    "target",
    "config",
    "config_env",
    "env",
    "streams",
    "checkpoint_interval_ms",
    "stop_grace_ms",
];

/// The fields of `target`: the same as the tap's own.
const TARGET_FIELDS: &[&str] = &[
    "command",
    "pip_url",
    "executable",
    "config",
    "config_env",
    "env",
];

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

/// A program the run starts, a tap or a target, with its settings.
pub(super) struct Program {
    /// With `pip_url`: the executable's name, until the run has installed it and puts its path
    /// in the venv here.
    pub(super) program: PathBuf,
    /// Its pip requirements, when it is installed by Hakiri.
    pub(super) pip_url: Option<String>,
    pub(super) args: Vec<String>,
    settings: Map<String, Value>,
    /// Settings whose values come from the reconciler's environment when a run starts.
    settings_env: Vec<(String, String)>,
    env: Vec<String>,
}

/// Refused before anything runs: a singer pipeline's cursors are its tap's bookmarks.
pub(super) fn check_kind(kind: CursorKind) -> Result<(), String> {
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
    pub(super) fn parse(config: &ConnectorConfig) -> Result<Self, ConnectorError> {
        let fields = Fields::new("singer", config, FIELDS)?;
        let tap = Program::parse(&fields)?;
        let sink = match (fields.nested("target", TARGET_FIELDS)?, fields.map.get("output")) {
            (Some(_), Some(output)) if !output.is_null() => {
                return Err(fields.error(
                    "output",
                    "goes with Hakiri as the loader; with a \"target\", the target decides where records go",
                ))
            }
            (Some(target), _) => Sink::Target(Program::parse(&target)?),
            (None, _) => Sink::Output(fields.required_path(
                "output",
                "the directory records are written to, unless a \"target\" loads them",
            )?),
        };
        let millis = |field, default| {
            fields
                .positive_int(field, default)
                .map(Duration::from_millis)
        };
        Ok(Self {
            tap,
            sink,
            streams: fields.optional_strings("streams")?,
            checkpoint_interval: millis("checkpoint_interval_ms", 1000)?,
            stop_grace: millis("stop_grace_ms", 10_000)?,
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
    /// Reads `command` or `pip_url` (with `executable`), `config`, `config_env` and `env`.
    fn parse(fields: &Fields<'_>) -> Result<Self, ConnectorError> {
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
            (None, command) => command_words(fields, command)?,
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
        Ok(Self {
            program,
            pip_url,
            args,
            settings,
            settings_env,
            env: fields.optional_strings("env")?.unwrap_or_default(),
        })
    }

    /// The program's settings, with those taken from the environment filled in.
    pub(super) fn settings(&self) -> Result<Value, ConnectorError> {
        let mut settings = self.settings.clone();
        for (setting, variable) in &self.settings_env {
            let value = std::env::var(variable).map_err(|_| {
                ConnectorError::permanent(format!(
                    "singer config: \"config_env\" {setting:?} of {} comes from ${variable}, \
                     which is not set in the reconciler's environment",
                    self.program.display()
                ))
            })?;
            settings.insert(setting.clone(), Value::String(value));
        }
        Ok(Value::Object(settings))
    }

    /// The program's process, with `args` after the configured ones.
    pub(super) fn spec(&self, ctx: &RunContext, args: &[&Path]) -> ProcessSpec {
        let spec = self.env.iter().fold(
            ProcessSpec::new(&self.program, ctx.run().id),
            |spec, name| spec.inherit_env(name),
        );
        spec.args(&self.args).args(args.iter().copied())
    }
}

/// `command`: a program, or an array of it and its first arguments.
fn command_words(
    fields: &Fields<'_>,
    command: Option<&Value>,
) -> Result<(PathBuf, Vec<String>), ConnectorError> {
    match command {
        Some(Value::String(program)) if !program.trim().is_empty() => {
            Ok((PathBuf::from(program), Vec::new()))
        }
        Some(Value::Array(items)) if !items.is_empty() => {
            let words = items
                .iter()
                .map(|item| item.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .filter(|words| !words[0].trim().is_empty())
                .ok_or_else(|| {
                    fields.error("command", "must list the program and its arguments as strings")
                })?;
            Ok((PathBuf::from(&words[0]), words[1..].to_vec()))
        }
        None | Some(Value::Null) => Err(fields.error(
            "command",
            "or \"pip_url\" is required (the program's executable, or the pip requirement that installs it)",
        )),
        Some(other) => Err(fields.error(
            "command",
            format!(
                "must be a string or an array of strings, not {}",
                json_type(other)
            ),
        )),
    }
}
