//! The `airbyte` connector's config, checked: the source (as a Singer tap is given), where its
//! records go, which streams it reads and how, and the run's limits. See the module docs for the
//! fields.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use hakiri_core::{ConnectorConfig, CursorKind};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::super::fields::{decode, FieldError, NonEmpty, Positive};
use super::super::singer::config::{Command, Executable, Program, ProgramFields, VariableName};
use crate::connector::ConnectorError;

/// The config as written. The source's fields are listed here rather than flattened from
/// [`ProgramFields`]: serde's `flatten` does not work with `deny_unknown_fields`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Fields {
    command: Option<Command>,
    pip_url: Option<NonEmpty>,
    executable: Option<Executable>,
    config: Option<Map<String, Value>>,
    config_env: Option<BTreeMap<String, VariableName>>,
    env: Option<Vec<String>>,
    output: NonEmpty,
    streams: Option<Vec<StreamChoice>>,
    checkpoint_interval_ms: Option<Positive>,
    stop_grace_ms: Option<Positive>,
}

/// A stream to read: its name (`namespace.name` in a namespace), and optionally how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StreamChoice {
    pub(crate) name: String,
    pub(crate) sync_mode: Option<SyncMode>,
    pub(crate) cursor_field: Option<Vec<String>>,
    pub(crate) primary_key: Option<Vec<Vec<String>>>,
}

impl StreamChoice {
    /// The stream `name`, read as the source offers it.
    pub(crate) fn named(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            sync_mode: None,
            cursor_field: None,
            primary_key: None,
        }
    }
}

/// A stream of `streams` as written: a name, or an object.
#[derive(Deserialize)]
#[serde(
    untagged,
    expecting = "must be a stream's name, or an object with `name` and optionally `sync_mode`, \
                 `cursor_field`, `primary_key`"
)]
enum ChoiceFields {
    Name(String),
    Object(ChoiceObject),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChoiceObject {
    name: String,
    sync_mode: Option<SyncMode>,
    cursor_field: Option<Vec<String>>,
    primary_key: Option<Vec<Vec<String>>>,
}

impl<'de> Deserialize<'de> for StreamChoice {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(match ChoiceFields::deserialize(deserializer)? {
            ChoiceFields::Name(name) => Self::named(&name),
            ChoiceFields::Object(o) => Self {
                name: o.name,
                sync_mode: o.sync_mode,
                cursor_field: o.cursor_field,
                primary_key: o.primary_key,
            },
        })
    }
}

/// How a stream is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum SyncMode {
    /// Everything, every run.
    FullRefresh,
    /// What is new since the stream's state.
    Incremental,
}

impl SyncMode {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            SyncMode::FullRefresh => "full_refresh",
            SyncMode::Incremental => "incremental",
        }
    }
}

/// The connector's config, checked.
pub(crate) struct Config {
    pub(crate) source: Program,
    pub(crate) output: PathBuf,
    pub(crate) streams: Option<Vec<StreamChoice>>,
    pub(crate) checkpoint_interval: Duration,
    pub(crate) stop_grace: Duration,
}

/// Refused before anything runs: an airbyte pipeline's cursors are its source's states.
pub(crate) fn check_kind(kind: CursorKind) -> Result<(), String> {
    super::super::opaque_only(
        kind,
        "airbyte",
        "a source's state is an object of its own making",
    )
}

impl Config {
    pub(crate) fn parse(config: &ConnectorConfig) -> Result<Self, ConnectorError> {
        Self::decode(config).map_err(|e| e.in_config("airbyte"))
    }

    fn decode(config: &ConnectorConfig) -> Result<Self, FieldError> {
        let fields: Fields = decode(config.as_map())?;
        // Airbyte's packages are `airbyte-source-x` and install a program `source-x`.
        let executable = match (fields.executable, &fields.pip_url) {
            (None, Some(pip_url)) => pip_url
                .0
                .split_whitespace()
                .find(|word| !word.starts_with('-'))
                .and_then(crate::venvs::package_name)
                .and_then(|package| package.strip_prefix("airbyte-"))
                .filter(|program| program.starts_with("source-"))
                .and_then(|program| Executable::try_from(program.to_owned()).ok()),
            (executable, _) => executable,
        };
        let source = Program::check(
            "",
            ProgramFields {
                command: fields.command,
                pip_url: fields.pip_url,
                executable,
                config: fields.config,
                config_env: fields.config_env,
                env: fields.env,
            },
        )?;
        let millis = |field: Option<Positive>, default| {
            Duration::from_millis(field.map_or(default, Positive::get))
        };
        Ok(Self {
            source,
            output: fields.output.into(),
            streams: fields.streams,
            checkpoint_interval: millis(fields.checkpoint_interval_ms, 1000),
            stop_grace: millis(fields.stop_grace_ms, 10_000),
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse(config: Value) -> Result<Config, String> {
        let config: ConnectorConfig = serde_json::from_value(config).unwrap();
        Config::parse(&config).map_err(|e| e.to_string())
    }

    #[test]
    fn a_pip_installed_source_with_stream_choices() {
        let config = parse(json!({
            "pip_url": "airbyte-source-faker==7.2.1", "executable": "source-faker",
            "output": "data/out", "config": {"count": 10},
            "streams": ["users", {"name": "purchases", "sync_mode": "full_refresh"}],
            "checkpoint_interval_ms": 5, "stop_grace_ms": 7
        }))
        .unwrap();
        assert_eq!(config.source.program, PathBuf::from("source-faker"));
        assert_eq!(
            config.source.pip_url.as_deref(),
            Some("airbyte-source-faker==7.2.1")
        );
        assert_eq!(config.output, PathBuf::from("data/out"));
        let streams = config.streams.unwrap();
        assert_eq!(streams[0], StreamChoice::named("users"));
        assert_eq!(streams[1].sync_mode, Some(SyncMode::FullRefresh));
        assert_eq!(config.checkpoint_interval, Duration::from_millis(5));
        assert_eq!(config.stop_grace, Duration::from_millis(7));
    }

    #[test]
    fn an_airbyte_package_runs_its_source_program_by_default() {
        let config =
            parse(json!({"pip_url": "airbyte-source-faker==7.2.1", "output": "o"})).unwrap();
        assert_eq!(config.source.program, PathBuf::from("source-faker"));
        let config = parse(json!({"pip_url": "my-source==1", "output": "o"})).unwrap();
        assert_eq!(config.source.program, PathBuf::from("my-source"));
    }

    #[test]
    fn bad_configs_name_the_field() {
        let cases = [
            (json!({"command": "source-x"}), "missing field `output`"),
            (json!({"output": "o"}), "`command` or `pip_url` is required"),
            (
                json!({"command": "source-x", "output": "o", "target": {}}),
                "unknown field `target`",
            ),
            (
                json!({"command": "source-x", "output": "o", "streams": [{"name": "s", "sync_mode": "cdc"}]}),
                "streams[0]",
            ),
            (
                json!({"command": "source-x", "output": "o", "streams": [{"name": "s", "cursor": ["a"]}]}),
                "streams[0]",
            ),
        ];
        for (config, expected) in cases {
            let error = parse(config.clone()).err().unwrap_or_default();
            assert!(error.starts_with("airbyte config"), "{config}: {error}");
            assert!(error.contains(expected), "{config}: {error}");
        }
    }
}
