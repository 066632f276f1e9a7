//! Process connectors under `hakiri reconcile`, with real processes on both sides: the source is
//! a small POSIX shell script speaking the Singer or the Airbyte protocol (so these tests need no
//! Python), the reconciler the `hakiri` binary on the embedded SQLite catalog.
//!
//! - Killed with SIGKILL mid-run, the reconciler leaves no source behind (it dies at its next
//!   write), and the next reconcile reaps the run and resumes from the last checkpoint: no record
//!   is lost.
//! - Stopped with SIGSTOP past its lease while another reconciler takes over, then continued:
//!   nothing of the first reconciler's source reaches the catalog, neither a checkpoint nor a
//!   record counted in its run.
//!
//! Each runs in three modes ([`Mode`]): a Singer tap with Hakiri as the loader, a Singer tap
//! piped into a target (another shell script, which keeps every line it is given and confirms
//! each state: killed, the reconciler leaves neither program behind), and an Airbyte source with
//! Hakiri as the loader.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const PROJECT: &str = "taps";

/// Which connector runs the source, and who loads its records.
#[derive(Clone, Copy)]
enum Mode {
    /// A Singer tap, Hakiri loading: `out/orders/<run id>.jsonl`.
    Singer,
    /// A Singer tap piped into `target.sh`, which appends every line it gets to
    /// `received-<its pid>.jsonl`.
    SingerTarget,
    /// An Airbyte source, Hakiri loading: `out/orders/<run id>.jsonl`.
    Airbyte,
}

/// The target: keeps each line, confirms each state by printing its value, and notes its pid.
const TARGET: &str = r#"#!/bin/sh
echo $$ >> "$(dirname "$0")/target-pids"
while IFS= read -r line; do
  echo "$line" >> "$(dirname "$0")/received-$$.jsonl"
  case "$line" in
    *'"type": "STATE"'*) echo "$line" | sed 's/^{"type": "STATE", "value": //; s/}$//';;
  esac
done
"#;

/// How a Singer tap answers `--discover`.
const SINGER_ANSWERS: &str = r#"case " $* " in *" --discover "*)
  echo '{"streams": [{"tap_stream_id": "orders", "key_properties": ["id"], "schema": {"properties": {"id": {"type": ["integer"]}}}}]}'
  exit 0;;
esac"#;
/// What a Singer tap prints before its records.
const SINGER_SCHEMA: &str = r#"echo '{"type": "SCHEMA", "stream": "orders", "key_properties": ["id"], "schema": {"properties": {"id": {"type": ["integer"]}}}}'"#;
/// A Singer record of id `$i`, and the state after it.
const SINGER_RECORD: &str =
    r#"echo "{\"type\": \"RECORD\", \"stream\": \"orders\", \"record\": {\"id\": $i}}""#;
const SINGER_STATE: &str =
    r#"echo "{\"type\": \"STATE\", \"value\": {\"bookmarks\": {\"orders\": {\"n\": $i}}}}""#;

/// How an Airbyte source answers `check` and `discover`: one stream, `orders`, incremental on
/// the source-defined cursor `id`, keyed by `id`.
const AIRBYTE_ANSWERS: &str = r#"case "$1" in
  check)
    echo '{"type": "CONNECTION_STATUS", "connectionStatus": {"status": "SUCCEEDED"}}'
    exit 0;;
  discover)
    echo '{"type": "CATALOG", "catalog": {"streams": [{"name": "orders", "json_schema": {"type": "object", "properties": {"id": {"type": "integer"}}}, "supported_sync_modes": ["full_refresh", "incremental"], "source_defined_cursor": true, "default_cursor_field": ["id"], "source_defined_primary_key": [["id"]]}]}}'
    exit 0;;
esac"#;
/// An Airbyte record of id `$i`, and the STREAM state after it: the connector checks its
/// `recordCount` against the records it read since the previous state.
const AIRBYTE_RECORD: &str = r#"echo "{\"type\": \"RECORD\", \"record\": {\"stream\": \"orders\", \"data\": {\"id\": $i}, \"emitted_at\": 1}}""#;
const AIRBYTE_STATE: &str = r#"echo "{\"type\": \"STATE\", \"state\": {\"type\": \"STREAM\", \"stream\": {\"stream_descriptor\": {\"name\": \"orders\"}, \"stream_state\": {\"n\": $i}}, \"sourceStats\": {\"recordCount\": 5.0}}}""#;

struct Env {
    work: common::Workdir,
    mode: Mode,
}

impl std::ops::Deref for Env {
    type Target = common::Workdir;

    fn deref(&self) -> &common::Workdir {
        &self.work
    }
}

impl Env {
    fn new(mode: Mode) -> Self {
        let env = Self {
            work: common::Workdir::new(PROJECT),
            mode,
        };
        let output = format!("output = \"{}\"", env.path().join("out").display());
        let (connector, sink) = match mode {
            Mode::Singer => ("singer", output),
            Mode::SingerTarget => {
                let target = env.path().join("target.sh");
                std::fs::write(&target, TARGET).unwrap();
                (
                    "singer",
                    format!(
                        "target = {{ command = [\"sh\", \"{}\"] }}",
                        target.display()
                    ),
                )
            }
            Mode::Airbyte => ("airbyte", output),
        };
        let manifest = format!(
            "[[pipeline]]\nid = \"orders\"\nconnector = \"{connector}\"\ncursor_kind = \"opaque\"\n\
             schedule = {{ every = \"1h\" }}\n\
             config = {{ command = [\"sh\", \"{}\"], {sink}, checkpoint_interval_ms = 1 }}\n",
            env.path().join("source.sh").display(),
        );
        std::fs::write(env.path().join("hakiri.toml"), manifest).unwrap();
        env
    }

    /// Writes the source (the Singer tap or the Airbyte source, by mode): it prints `count`
    /// records after the `n` of the state it is given, a state every 5, one record every `pause`
    /// seconds, and appends its pid to `source-pids` (answering `check` or `discover` it notes
    /// nothing).
    fn source(&self, count: u32, pause: &str) {
        let (answers, schema, record, state) = match self.mode {
            Mode::Singer | Mode::SingerTarget => {
                (SINGER_ANSWERS, SINGER_SCHEMA, SINGER_RECORD, SINGER_STATE)
            }
            Mode::Airbyte => (AIRBYTE_ANSWERS, "", AIRBYTE_RECORD, AIRBYTE_STATE),
        };
        // A Singer state file is `{"bookmarks": {"orders": {"n": 5}}}`, an Airbyte one the
        // array of STREAM states Hakiri rebuilds from the cursors: the same `"n"` in both.
        let script = format!(
            r#"#!/bin/sh
set -u
{answers}
state=""
while [ $# -gt 0 ]; do
  if [ "$1" = "--state" ]; then state="$2"; fi
  shift
done
start=0
if [ -n "$state" ]; then start=$(sed -n 's/.*"n": *\([0-9]*\).*/\1/p' "$state"); fi
echo $$ >> "{pids}"
{schema}
i=$start
end=$((start + {count}))
while [ $i -lt $end ]; do
  i=$((i + 1))
  {record}
  if [ $((i % 5)) -eq 0 ]; then
    {state}
  fi
  sleep {pause}
done
"#,
            pids = self.path().join("source-pids").display(),
        );
        std::fs::write(self.path().join("source.sh"), script).unwrap();
    }

    /// A `hakiri reconcile` loop in the background.
    fn reconciler(&self, lease_ttl: &str) -> Child {
        self.command(&["reconcile", "--interval", "1s", "--lease-ttl", lease_ttl])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start hakiri reconcile")
    }

    /// Stops `child` (SIGSTOP) at a moment it holds no write transaction on the catalog file. A
    /// process stopped inside one keeps SQLite's write lock until it resumes (ADR 0015): no
    /// takeover is possible on one file then, which is not what these tests are about.
    fn freeze_outside_a_write(&self, child: &Child) {
        let db = self.path().join(format!(".hakiri/{PROJECT}.db"));
        let probe = "import sqlite3, sys\n\
                     c = sqlite3.connect(sys.argv[1], timeout=0.2, isolation_level=None)\n\
                     c.execute('BEGIN IMMEDIATE')\n\
                     c.execute('ROLLBACK')\n";
        for _ in 0..100 {
            signal(child, "-STOP");
            let free = Command::new("python3")
                .args(["-c", probe, db.to_str().unwrap()])
                .stderr(Stdio::null())
                .status()
                .expect("python3 probes the catalog's write lock (apt install python3)");
            if free.success() {
                return;
            }
            signal(child, "-CONT");
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("the reconciler was inside a write transaction every time it was stopped");
    }

    /// The stream's checkpointed `n`, 0 before any.
    fn checkpoint(&self) -> u64 {
        let out = self.run(&["cursors", "show", "orders", "orders", "--output", "json"]);
        if !out.status.success() {
            return 0;
        }
        let cursor: Value = serde_json::from_slice(&out.stdout).unwrap();
        let state = match self.mode {
            Mode::Singer | Mode::SingerTarget => &cursor["value"],
            // The STREAM state without its statistics (the connector's `state.rs`).
            Mode::Airbyte => &cursor["value"]["stream"]["stream_state"],
        };
        state["n"].as_u64().unwrap_or(0)
    }

    fn wait_for_checkpoint(&self, at_least: u64) -> u64 {
        let started = Instant::now();
        loop {
            let n = self.checkpoint();
            if n >= at_least {
                return n;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the source never checkpointed {at_least} (at {n})"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The pids of the sources, and of the targets, that ran.
    fn pids(&self) -> Vec<u32> {
        ["source-pids", "target-pids"]
            .iter()
            .flat_map(|file| {
                std::fs::read_to_string(self.path().join(file))
                    .unwrap_or_default()
                    .lines()
                    .filter_map(|l| l.trim().parse().ok())
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// The files the runs loaded into, the newest run's first: Hakiri's
    /// `out/orders/<run id>.jsonl`, or each run's target's `received-<pid>.jsonl`.
    fn outputs(&self) -> Vec<PathBuf> {
        match self.mode {
            Mode::Singer | Mode::Airbyte => runs(self)
                .iter()
                .map(|run| {
                    let id = run["id"].as_str().unwrap();
                    self.path().join(format!("out/orders/{id}.jsonl"))
                })
                .collect(),
            Mode::SingerTarget => std::fs::read_to_string(self.path().join("target-pids"))
                .unwrap()
                .lines()
                .rev()
                .map(|pid| self.path().join(format!("received-{pid}.jsonl")))
                .collect(),
        }
    }

    /// The record ids loaded into `file`, sorted: Hakiri writes each record's data as a line,
    /// the target keeps each Singer message.
    fn ids(&self, file: &Path) -> Vec<u64> {
        let text = std::fs::read_to_string(file)
            .unwrap_or_else(|e| panic!("{} holds no records: {e}", file.display()));
        let mut ids = Vec::new();
        for line in text.lines() {
            let message: Value = serde_json::from_str(line).unwrap();
            let record = match self.mode {
                Mode::Singer | Mode::Airbyte => &message,
                Mode::SingerTarget if message["type"] == "RECORD" => &message["record"],
                Mode::SingerTarget => continue,
            };
            ids.push(record["id"].as_u64().unwrap());
        }
        ids.sort_unstable();
        ids
    }
}

/// Whether `pid` is gone: no process, or a zombie nobody reaped yet.
fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/status")) {
        Err(_) => true,
        Ok(status) => status
            .lines()
            .any(|l| l.starts_with("State:") && l.contains('Z')),
    }
}

fn signal(child: &Child, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

fn runs(env: &Env) -> Vec<Value> {
    env.json(&["runs", "list"])["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn a_killed_reconciler_leaves_no_tap_and_the_next_run_loses_no_record() {
    killed_reconciler(Mode::Singer);
}

#[test]
fn a_killed_reconciler_leaves_no_tap_nor_target_and_the_next_run_loses_no_record() {
    killed_reconciler(Mode::SingerTarget);
}

#[test]
fn a_killed_reconciler_leaves_no_airbyte_source_and_the_next_run_loses_no_record() {
    killed_reconciler(Mode::Airbyte);
}

#[test]
fn a_reconciler_stopped_past_its_lease_writes_nothing_after_a_takeover() {
    stopped_reconciler(Mode::Singer);
}

#[test]
fn a_reconciler_stopped_past_its_lease_checkpoints_nothing_its_target_confirms_after_a_takeover() {
    stopped_reconciler(Mode::SingerTarget);
}

#[test]
fn a_reconciler_stopped_past_its_lease_writes_nothing_of_its_airbyte_source_after_a_takeover() {
    stopped_reconciler(Mode::Airbyte);
}

fn killed_reconciler(mode: Mode) {
    let env = Env::new(mode);
    env.source(100_000, "0.01");
    env.ok(&["apply", "-f", "hakiri.toml"]);
    let mut reconciler = env.reconciler("2s");
    let checkpoint = env.wait_for_checkpoint(10);
    reconciler.kill().unwrap();
    reconciler.wait().unwrap();

    // The source dies at its next write, with its reconciler gone; a target at the end of its
    // input.
    let pids = env.pids();
    assert_eq!(
        pids.len(),
        match mode {
            Mode::Singer | Mode::Airbyte => 1,
            Mode::SingerTarget => 2,
        }
    );
    let started = Instant::now();
    while !pids.iter().all(|&pid| gone(pid)) {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "a source or target outlived its reconciler"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let checkpointed = env.checkpoint();
    assert!(checkpointed >= checkpoint);

    // Once the dead reconciler's lease has expired, the next one reaps the run and resumes
    // from the last checkpoint.
    env.source(7, "0");
    std::thread::sleep(Duration::from_millis(2500));
    env.ok(&["pipelines", "run", "orders"]);
    env.ok(&["reconcile", "--once", "--lease-ttl", "2s"]);
    let statuses: Vec<String> = runs(&env)
        .iter()
        .map(|r| r["status"].as_str().unwrap().to_owned())
        .collect();
    assert!(statuses.contains(&"abandoned".to_owned()), "{statuses:?}");
    assert_eq!(statuses[0], "succeeded", "{statuses:?}");
    // The killed run may have loaded records past its last checkpoint: the resumed run's own
    // output says where it started.
    let outputs = env.outputs();
    assert_eq!(
        env.ids(&outputs[0]),
        (checkpointed + 1..=checkpointed + 7).collect::<Vec<_>>(),
        "the resumed run starts after the checkpoint"
    );
    let written: Vec<u64> = outputs.iter().flat_map(|file| env.ids(file)).collect();
    for id in 1..=checkpointed + 7 {
        assert!(written.contains(&id), "record {id} was lost");
    }
}

fn stopped_reconciler(mode: Mode) {
    let env = Env::new(mode);
    env.source(100_000, "0.01");
    env.ok(&["apply", "-f", "hakiri.toml"]);
    let mut first = env.reconciler("2s");
    env.wait_for_checkpoint(10);
    env.freeze_outside_a_write(&first);
    let frozen_at = env.checkpoint();

    // Past the frozen reconciler's lease, another one takes the pipeline over.
    std::thread::sleep(Duration::from_millis(2500));
    env.source(7, "0");
    env.ok(&["pipelines", "run", "orders"]);
    env.ok(&["reconcile", "--once", "--lease-ttl", "2s"]);
    let after_takeover = env.json(&["cursors", "history", "orders", "orders"]);
    // The oldest run: the frozen reconciler's, reaped by the takeover.
    let first_run = runs(&env).last().cloned().unwrap();
    assert_eq!(first_run["status"], "abandoned");

    // The first one wakes up: its source's output must not reach the catalog.
    signal(&first, "-CONT");
    std::thread::sleep(Duration::from_secs(2));
    first.kill().unwrap();
    first.wait().unwrap();
    assert_eq!(
        env.json(&["cursors", "history", "orders", "orders"]),
        after_takeover,
        "the fenced reconciler changed the cursor"
    );
    assert_eq!(env.checkpoint(), frozen_at + 5);
    // Only a run's finish writes its statistics: the fenced reconciler's must not go through.
    assert_eq!(
        runs(&env).last(),
        Some(&first_run),
        "the fenced reconciler changed its run"
    );
    assert_eq!(
        first_run["stats"],
        serde_json::json!({}),
        "records of the fenced reconciler were counted"
    );
}
