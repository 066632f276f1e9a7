//! The `singer` config's programs: `command`, or `pip_url` with an optional `executable`, for
//! the tap and for a target; and where records go.

use std::time::Duration;

use hakiri_core::ConnectorConfig;
use serde_json::{json, Value};

use super::{Config, PipRequirement, SingerConnector, Sink};

fn parse(value: Value) -> Result<Config, String> {
    Config::parse(&ConnectorConfig::new(value).unwrap()).map_err(|e| e.to_string())
}

fn requirements(value: Value) -> Vec<PipRequirement> {
    SingerConnector::pip_requirements(&ConnectorConfig::new(value).unwrap()).unwrap()
}

fn requirement(value: Value) -> Option<PipRequirement> {
    let mut requirements = requirements(value);
    assert!(requirements.len() <= 1, "{requirements:?}");
    requirements.pop()
}

#[test]
fn pip_url_names_the_executable_after_its_first_package_unless_told() {
    assert_eq!(
        requirement(json!({"pip_url": "tap-jsonl==0.3.1", "output": "o"})),
        Some(PipRequirement {
            pip_url: "tap-jsonl==0.3.1".into(),
            executable: "tap-jsonl".into()
        })
    );
    assert_eq!(
        requirement(json!({"pip_url": "tap-x[s3]>=1 requests==2", "output": "o"}))
            .unwrap()
            .executable,
        "tap-x"
    );
    assert_eq!(
        requirement(json!({"pip_url": "meltano-tap-x==1", "executable": "tap-x", "output": "o"}))
            .unwrap()
            .executable,
        "tap-x"
    );
    // A tap on PATH needs no install.
    assert_eq!(
        requirement(json!({"command": "tap-x", "output": "o"})),
        None
    );
    let config = parse(json!({"pip_url": "tap-x==1", "output": "o"})).unwrap();
    assert!(config.tap.args.is_empty());
}

#[test]
fn the_tap_comes_from_exactly_one_of_command_and_pip_url() {
    let both = parse(json!({"command": "tap-x", "pip_url": "tap-x==1", "output": "o"}))
        .err()
        .unwrap();
    assert!(
        both.starts_with("singer config: command: cannot be given with `pip_url`")
            && both.contains("`executable`"),
        "{both}"
    );
    let neither = parse(json!({"output": "o"})).err().unwrap();
    assert!(
        neither.starts_with("singer config: `command` or `pip_url` is required"),
        "{neither}"
    );
    let stray = parse(json!({"command": "tap-x", "executable": "tap-x", "output": "o"}))
        .err()
        .unwrap();
    assert!(
        stray.starts_with("singer config: executable: goes with `pip_url`"),
        "{stray}"
    );
}

#[test]
fn bad_pip_urls_and_executables_are_refused_by_name() {
    for (value, field) in [
        (json!({"pip_url": "", "output": "o"}), "pip_url"),
        (json!({"pip_url": ["tap-x"], "output": "o"}), "pip_url"),
        (
            json!({"pip_url": "tap-x", "executable": "../x", "output": "o"}),
            "executable",
        ),
        (
            json!({"pip_url": "tap-x", "executable": 3, "output": "o"}),
            "executable",
        ),
        // A URL without #egg= does not say which program it installs.
        (
            json!({"pip_url": "https://example.com/t.whl", "output": "o"}),
            "executable",
        ),
    ] {
        let error = parse(value.clone())
            .err()
            .unwrap_or_else(|| panic!("{value}"));
        assert!(
            error.starts_with(&format!("singer config: {field}: ")),
            "{value}: {error}"
        );
    }
}

/// Each field's type and value rules, with the message naming the field by its path.
#[test]
fn each_field_is_refused_by_its_path() {
    for (value, expected) in [
        (
            json!({"command": "tap-x", "output": "o", "stream": ["x"]}),
            "stream: unknown field `stream`, expected one of `command`, `pip_url`",
        ),
        (
            json!({"command": 3, "output": "o"}),
            "command: must be a program, or an array of it and its arguments, as strings",
        ),
        (
            json!({"command": ["tap-x", 3], "output": "o"}),
            "command: must be a program, or an array",
        ),
        (
            json!({"command": "  ", "output": "o"}),
            "command: must name the program, then its arguments",
        ),
        (
            json!({"command": [], "output": "o"}),
            "command: must name the program, then its arguments",
        ),
        (
            json!({"command": "tap-x", "output": ""}),
            "output: must not be empty",
        ),
        (
            json!({"pip_url": ["tap-x"], "output": "o"}),
            "pip_url: invalid type: sequence, expected a string",
        ),
        (
            json!({"pip_url": "tap-x", "executable": "bin/tap-x", "output": "o"}),
            "executable: must be a program's name in the venv's bin/ directory (no '/')",
        ),
        (
            json!({"pip_url": "tap-x", "executable": "..", "output": "o"}),
            "executable: must be a program's name",
        ),
        (
            json!({"command": "tap-x", "output": "o", "config": "a=b"}),
            "config: invalid type: string \"a=b\", expected a map",
        ),
        (
            json!({"command": "tap-x", "output": "o", "config_env": ["PW"]}),
            "config_env: invalid type: sequence, expected a map",
        ),
        (
            json!({"command": "tap-x", "output": "o", "config_env": {"password": ""}}),
            "config_env.password: must name an environment variable",
        ),
        (
            json!({"command": "tap-x", "output": "o", "config_env": {"password": 1}}),
            "config_env.password: invalid type: integer `1`, expected a string",
        ),
        (
            json!({"command": "tap-x", "output": "o", "env": "HOME"}),
            "env: invalid type: string \"HOME\", expected a sequence",
        ),
        (
            json!({"command": "tap-x", "output": "o", "streams": [1]}),
            "streams[0]: invalid type: integer `1`, expected a string",
        ),
        (
            json!({"command": "tap-x", "output": "o", "checkpoint_interval_ms": 0}),
            "checkpoint_interval_ms: invalid value: integer `0`, expected a positive integer",
        ),
        (
            json!({"command": "tap-x", "output": "o", "stop_grace_ms": "10s"}),
            "stop_grace_ms: invalid type: string \"10s\", expected a positive integer",
        ),
        (
            json!({"command": "t", "target": {"command": "u", "env": [true]}}),
            "target.env[0]: invalid type: boolean `true`, expected a string",
        ),
        (
            json!({"command": "t", "target": {"pip_url": "u", "executable": "a/b"}}),
            "target.executable: must be a program's name",
        ),
        (
            json!({"command": "t", "target": {"command": "u", "pip_url": "u"}}),
            "target.command: cannot be given with `pip_url`",
        ),
        (
            json!({"command": "t", "target": {"command": "u", "executable": "u"}}),
            "target.executable: goes with `pip_url`",
        ),
    ] {
        let error = parse(value.clone())
            .err()
            .unwrap_or_else(|| panic!("{value}"));
        let expected = format!("singer config: {expected}");
        assert!(error.starts_with(&expected), "{value}: {error}");
    }
}

#[test]
fn a_good_config_keeps_every_field() {
    let config = parse(json!({
        "command": ["tap-x", "--verbose"],
        "output": "out",
        "config": {"path": "in"},
        "config_env": {"password": "PG_PASSWORD"},
        "env": ["AWS_PROFILE"],
        "streams": ["orders"],
        "checkpoint_interval_ms": 250,
        "stop_grace_ms": 3000,
        "target": null,
        "pip_url": null,
    }))
    .unwrap();
    assert_eq!(config.tap.program.to_str(), Some("tap-x"));
    assert_eq!(config.tap.args, ["--verbose"]);
    assert_eq!(config.tap.pip_url, None);
    assert!(matches!(&config.sink, Sink::Output(out) if out.to_str() == Some("out")));
    assert_eq!(config.streams.as_deref(), Some(&["orders".to_owned()][..]));
    assert_eq!(config.checkpoint_interval, Duration::from_millis(250));
    assert_eq!(config.stop_grace, Duration::from_secs(3));
    // Settings from the environment are read when the run starts, not when it is parsed.
    let missing = config.tap.settings().unwrap_err().to_string();
    assert!(
        missing.starts_with("config_env.password of tap-x comes from $PG_PASSWORD"),
        "{missing}"
    );

    let defaults = parse(json!({"command": "tap-x", "output": "out"})).unwrap();
    assert_eq!(defaults.checkpoint_interval, Duration::from_secs(1));
    assert_eq!(defaults.stop_grace, Duration::from_secs(10));
    assert_eq!(defaults.tap.settings().unwrap(), json!({}));
}

#[test]
fn a_target_is_configured_like_the_tap_and_replaces_the_output() {
    let config = parse(json!({
        "command": ["tap-x", "--verbose"],
        "target": {"pip_url": "target-jsonl==0.1.4", "config": {"destination_path": "out"}}
    }))
    .unwrap();
    let Sink::Target(target) = &config.sink else {
        panic!("a target")
    };
    assert_eq!(target.program.to_str(), Some("target-jsonl"));
    assert_eq!(config.tap.args, ["--verbose"]);
    assert_eq!(
        requirements(json!({"pip_url": "tap-x==1", "target": {"pip_url": "target-y==2"}})),
        [
            PipRequirement {
                pip_url: "tap-x==1".into(),
                executable: "tap-x".into()
            },
            PipRequirement {
                pip_url: "target-y==2".into(),
                executable: "target-y".into()
            }
        ]
    );

    for (value, expected) in [
        (
            json!({"command": "tap-x"}),
            "singer config: missing field `output`",
        ),
        (
            json!({"command": "tap-x", "output": "o", "target": {"command": "t"}}),
            "singer config: output: goes with Hakiri as the loader",
        ),
        (
            json!({"command": "tap-x", "target": {}}),
            "singer config: target: `command` or `pip_url` is required",
        ),
        (
            json!({"command": "tap-x", "target": "target-y"}),
            "singer config: target: invalid type: string \"target-y\", expected an object",
        ),
        (
            json!({"command": "tap-x", "target": {"command": "t", "output": "o"}}),
            "singer config: target.output: unknown field `output`, expected one of `command`",
        ),
        (
            json!({"command": "tap-x", "target": {"command": "t", "config": []}}),
            "singer config: target.config: invalid type: sequence, expected a map",
        ),
    ] {
        let error = parse(value.clone())
            .err()
            .unwrap_or_else(|| panic!("{value}"));
        assert!(error.starts_with(expected), "{value}: {error}");
    }
}
