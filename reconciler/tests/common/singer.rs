//! Scripts for the fake tap (`hakiri-fake-tap`): its steps for Singer messages, and the catalog
//! its discovery prints.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

pub fn schema_message(stream: &str, id_type: &str) -> Value {
    json!({"json": {"type": "SCHEMA", "stream": stream, "key_properties": ["id"],
                    "schema": {"properties": {"id": {"type": [id_type]}, "note": {"type": ["string", "null"]}}}}})
}

pub fn record(stream: &str, id: Value) -> Value {
    json!({"json": {"type": "RECORD", "stream": stream, "record": {"id": id, "note": "n"}}})
}

pub fn state(bookmarks: Value) -> Value {
    json!({"json": {"type": "STATE", "value": {"bookmarks": bookmarks}}})
}

/// A discovered catalog offering `streams`, each keyed by an integer `id`.
pub fn discovered(streams: &[&str]) -> Value {
    let entries: Vec<Value> = streams
        .iter()
        .map(|stream| {
            json!({"tap_stream_id": stream, "stream": stream, "key_properties": ["id"],
                   "schema": {"properties": {"id": {"type": ["integer"]}, "note": {"type": ["string", "null"]}}},
                   "metadata": [{"breadcrumb": [], "metadata": {}}]})
        })
        .collect();
    json!({ "streams": entries })
}

pub fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("read")).expect("json")
}

/// A tap that prints a record and a state, then waits; asked to stop (SIGTERM), it prints one
/// more record and the state that covers it, and exits 0, as SDK taps do.
pub fn stopped_by_a_shutdown() -> Vec<Value> {
    vec![
        json!({"on_sigterm": {"json": [
            {"type": "RECORD", "stream": "orders", "record": {"id": 2, "note": "n"}},
            {"type": "STATE", "value": {"bookmarks": {"orders": {"v": 2}}}}
        ], "exit": 0}}),
        schema_message("orders", "integer"),
        record("orders", json!(1)),
        state(json!({"orders": {"v": 1}})),
        json!({"sleep_ms": 60000}),
    ]
}

/// The fake tap of one test: a private directory holding its script (rewritten with
/// [`FakeTap::script`] before each run) and whatever the test's pipeline writes.
pub struct FakeTap {
    dir: tempfile::TempDir,
}

impl FakeTap {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    /// `name` in the test's directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A singer config's `command`: the fake tap running the script, its discovery offering
    /// `streams`.
    pub fn command(&self, streams: &[&str]) -> Value {
        json!([
            env!("CARGO_BIN_EXE_hakiri-fake-tap"),
            "--script",
            self.path("script.json"),
            "--catalog-json",
            discovered(streams).to_string()
        ])
    }

    /// What the tap does on its next run.
    pub fn script(&self, steps: &[Value]) {
        std::fs::write(
            self.path("script.json"),
            Value::from(steps.to_vec()).to_string(),
        )
        .expect("write the script");
    }
}
