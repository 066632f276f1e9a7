//! The `singer` config's programs: `command`, or `pip_url` with an optional `executable`, for
//! the tap and for a target; and where records go.

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
        both.contains("\"command\"") && both.contains("executable"),
        "{both}"
    );
    let neither = parse(json!({"output": "o"})).err().unwrap();
    assert!(neither.contains("pip_url"), "{neither}");
    let stray = parse(json!({"command": "tap-x", "executable": "tap-x", "output": "o"}))
        .err()
        .unwrap();
    assert!(stray.contains("\"executable\""), "{stray}");
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
        assert!(error.contains(&format!("\"{field}\"")), "{value}: {error}");
    }
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
        (json!({"command": "tap-x"}), "\"output\" is required"),
        (
            json!({"command": "tap-x", "output": "o", "target": {"command": "t"}}),
            "\"output\" goes with Hakiri as the loader",
        ),
        (
            json!({"command": "tap-x", "target": {}}),
            "\"target\".\"command\" or \"pip_url\"",
        ),
        (
            json!({"command": "tap-x", "target": "target-y"}),
            "\"target\" must be an object",
        ),
        (
            json!({"command": "tap-x", "target": {"command": "t", "output": "o"}}),
            "unknown field \"target\".\"output\"",
        ),
        (
            json!({"command": "tap-x", "target": {"command": "t", "config": []}}),
            "\"target\".\"config\" must be an object",
        ),
    ] {
        let error = parse(value.clone())
            .err()
            .unwrap_or_else(|| panic!("{value}"));
        assert!(error.contains(expected), "{value}: {error}");
    }
}
