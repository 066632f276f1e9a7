//! The `singer` config's tap source: `command`, or `pip_url` with an optional `executable`.

use hakiri_core::ConnectorConfig;
use serde_json::{json, Value};

use super::{Config, PipRequirement, SingerConnector};

fn parse(value: Value) -> Result<Config, String> {
    Config::parse(&ConnectorConfig::new(value).unwrap()).map_err(|e| e.to_string())
}

fn requirement(value: Value) -> Option<PipRequirement> {
    SingerConnector::pip_requirement(&ConnectorConfig::new(value).unwrap()).unwrap()
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
    assert!(config.args.is_empty());
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
