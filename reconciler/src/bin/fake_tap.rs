//! `hakiri-fake-tap`: a scriptable stand-in for a Singer tap, so that tests of process
//! connectors can make happen what real taps do rarely, without Python.
//!
//! ```text
//! hakiri-fake-tap --script-json '<steps>' [other arguments, ignored]
//! hakiri-fake-tap --script <file of steps> [other arguments, ignored]
//! hakiri-fake-tap --sleep-ms <ms> [--ignore-sigterm]    (what a `grandchild` step runs)
//! hakiri-fake-tap --discover [--catalog-json '<catalog>'] [other arguments, ignored]
//! hakiri-fake-tap --airbyte [--catalog-json '<catalog>'] [--check-json '<message>']
//!                 [--calls <file>] [--script <file>] check|discover|read [other arguments, ignored]
//! ```
//! With `--discover` it prints the catalog given with `--catalog-json` (default
//! `{"streams": []}`) as a Singer tap's discovery mode does, pretty-printed over several lines
//! as SDK taps print it, and exits.
//!
//! With `--airbyte` it plays an Airbyte source, by the command among its arguments: `check`
//! prints the message given with `--check-json` (default
//! `{"type": "CONNECTION_STATUS", "connectionStatus": {"status": "SUCCEEDED"}}`), `discover`
//! prints `{"type": "CATALOG", "catalog": <catalog>}` on one line, and `read` runs the script, whose
//! `json` steps are then Airbyte messages (GLOBAL states, TRACE errors, CONTROL messages, states
//! whose `recordCount` is wrong: whatever a test needs). With `--calls <file>` it appends the
//! command it was run for to that file, one per line, so a test sees which commands ran.
//!
//! Other arguments (`--config c.json --state s.json`) are accepted so that a connector can pass
//! what it passes a real tap; the `argv` step shows them.
//!
//! The script is a JSON array of steps run in order, each an object with one of these keys:
//!
//! | step | does |
//! |---|---|
//! | `{"json": V}` | prints `V` as one line of JSON on stdout (SCHEMA, RECORD, STATE, anything) |
//! | `{"print": "text"}` | prints `text` verbatim as one stdout line (a malformed line) |
//! | `{"huge": N}` | prints one stdout line of `N` bytes `x` |
//! | `{"stderr": "text"}` | prints `text` as one line on stderr |
//! | `{"sleep_ms": N}` | sleeps `N` ms (a SIGTERM handled by `on_sigterm` interrupts it) |
//! | `{"on_sigterm": "ignore"}` | from here on, SIGTERM is ignored |
//! | `{"on_sigterm": {"json": [V…], "exit": C}}` | from here on, SIGTERM prints each `V` as a JSON line (a final STATE) and exits with `C` |
//! | `{"grandchild": {"pid_file": P, "ignore_sigterm": B}}` | starts a copy of itself that sleeps an hour (ignoring SIGTERM if `B`), sharing stdout and stderr, and writes its pid to the file `P` |
//! | `{"env": true}` | prints its environment as one JSON object line |
//! | `{"argv": true}` | prints its arguments as one JSON array line |
//! | `{"arg_file": {"arg": A, "to": P}}` | writes to the file `P` what it was given as the file after argument `A` (`--config`, `--state`): `{"path", "mode", "contents"}`, or `{"contents": null}` when `A` was not given |
//! | `{"exit": C}` | exits with code `C` (the end of the script exits 0) |
//!
//! A tap that emits a schema, a record and a state, then waits, and prints a final state
//! when it is asked to stop (RECORD before SCHEMA, a record of the wrong type, states after a
//! held schema are the same steps in another order or with other values):
//!
//! ```json
//! [{"on_sigterm": {"json": [{"type": "STATE", "value": {"bookmarks": {"orders": {"id": 2}}}}], "exit": 0}},
//!  {"json": {"type": "SCHEMA", "stream": "orders", "key_properties": ["id"],
//!            "schema": {"properties": {"id": {"type": "integer"}}}}},
//!  {"json": {"type": "RECORD", "stream": "orders", "record": {"id": 1}}},
//!  {"json": {"type": "STATE", "value": {"bookmarks": {"orders": {"id": 1}}}}},
//!  {"sleep_ms": 60000}]
//! ```
//!
//! `json`, `print` and `stderr` steps take an optional `"times": N` to repeat. Until an
//! `on_sigterm` step, SIGTERM kills the process (as it kills an Airbyte CDK source). A stdout
//! write that fails (the reader is gone) exits with code 1, like a Python tap.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use serde_json::{json, Map, Value};
use tokio::signal::unix::{signal, Signal, SignalKind};

/// What to do on SIGTERM once a handler is installed.
enum OnTerm {
    Ignore,
    Finish { lines: Vec<Value>, code: u8 },
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    match runtime.block_on(run(&args)) {
        Ok(code) => ExitCode::from(code),
        Err(message) => {
            eprintln!("hakiri-fake-tap: {message}");
            ExitCode::from(2)
        }
    }
}

async fn run(args: &[String]) -> Result<u8, String> {
    if let Some(ms) = flag(args, "--sleep-ms") {
        let ms: u64 = ms.parse().map_err(|e| format!("--sleep-ms: {e}"))?;
        // Holding the registration is what ignores SIGTERM.
        let _term = if args.iter().any(|a| a == "--ignore-sigterm") {
            Some(terminate_signal()?)
        } else {
            None
        };
        tokio::time::sleep(Duration::from_millis(ms)).await;
        return Ok(0);
    }
    if args.iter().any(|a| a == "--airbyte") {
        if let Some(path) = flag(args, "--calls") {
            let command = ["check", "discover", "read"]
                .into_iter()
                .find(|c| args.iter().any(|a| a == c))
                .unwrap_or("?");
            let mut calls = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| format!("{path}: {e}"))?;
            writeln!(calls, "{command}").map_err(|e| format!("{path}: {e}"))?;
        }
        let catalog = flag(args, "--catalog-json").unwrap_or(r#"{"streams": []}"#);
        if args.iter().any(|a| a == "check") {
            let status =
                r#"{"type": "CONNECTION_STATUS", "connectionStatus": {"status": "SUCCEEDED"}}"#;
            let message: Value = serde_json::from_str(flag(args, "--check-json").unwrap_or(status))
                .map_err(|e| format!("--check-json: {e}"))?;
            stdout_line(message.to_string().as_bytes());
            return Ok(0);
        }
        if args.iter().any(|a| a == "discover") {
            let catalog: Value =
                serde_json::from_str(catalog).map_err(|e| format!("--catalog-json: {e}"))?;
            let message = json!({"type": "CATALOG", "catalog": catalog});
            stdout_line(message.to_string().as_bytes());
            return Ok(0);
        }
    }
    if args.iter().any(|a| a == "--discover") {
        let catalog = flag(args, "--catalog-json").unwrap_or(r#"{"streams": []}"#);
        let catalog: Value =
            serde_json::from_str(catalog).map_err(|e| format!("--catalog-json: {e}"))?;
        let pretty = serde_json::to_string_pretty(&catalog).map_err(|e| e.to_string())?;
        for line in pretty.lines() {
            stdout_line(line.as_bytes());
        }
        return Ok(0);
    }
    let script = match (flag(args, "--script-json"), flag(args, "--script")) {
        (Some(inline), _) => inline.to_owned(),
        (None, Some(path)) => std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?,
        (None, None) => return Err("expected --script <file> or --script-json <steps>".into()),
    };
    let steps: Vec<Map<String, Value>> =
        serde_json::from_str(&script).map_err(|e| format!("script: {e}"))?;

    let mut term: Option<(Signal, OnTerm)> = None;
    for step in &steps {
        if let Some(code) = pending_term(&mut term).await {
            return Ok(code);
        }
        let times = step.get("times").and_then(Value::as_u64).unwrap_or(1);
        if let Some(value) = step.get("json") {
            for _ in 0..times {
                stdout_line(value.to_string().as_bytes());
            }
        } else if let Some(text) = step.get("print").and_then(Value::as_str) {
            for _ in 0..times {
                stdout_line(text.as_bytes());
            }
        } else if let Some(n) = step.get("huge").and_then(Value::as_u64) {
            stdout_line(&vec![b'x'; usize::try_from(n).map_err(|e| e.to_string())?]);
        } else if let Some(text) = step.get("stderr").and_then(Value::as_str) {
            for _ in 0..times {
                eprintln!("{text}");
            }
        } else if let Some(ms) = step.get("sleep_ms").and_then(Value::as_u64) {
            let sleep = tokio::time::sleep(Duration::from_millis(ms));
            tokio::pin!(sleep);
            match &mut term {
                // An ignored SIGTERM goes on sleeping.
                Some((signal, on_term)) => loop {
                    tokio::select! {
                        () = &mut sleep => break,
                        _ = signal.recv() => if let Some(code) = finish(on_term) {
                            return Ok(code);
                        },
                    }
                },
                None => sleep.await,
            }
        } else if let Some(on_term) = step.get("on_sigterm") {
            let on_term = match on_term {
                Value::String(s) if s == "ignore" => OnTerm::Ignore,
                Value::Object(o) => OnTerm::Finish {
                    lines: o
                        .get("json")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default(),
                    code: exit_code(o.get("exit"))?,
                },
                other => return Err(format!("on_sigterm: unexpected {other}")),
            };
            term = Some((terminate_signal()?, on_term));
        } else if let Some(spec) = step.get("grandchild") {
            grandchild(spec)?;
        } else if step.contains_key("env") {
            let env: Map<String, Value> = std::env::vars().map(|(k, v)| (k, json!(v))).collect();
            stdout_line(Value::Object(env).to_string().as_bytes());
        } else if step.contains_key("argv") {
            stdout_line(json!(args).to_string().as_bytes());
        } else if let Some(spec) = step.get("arg_file") {
            arg_file(args, spec)?;
        } else if step.contains_key("exit") {
            return exit_code(step.get("exit"));
        } else {
            return Err(format!("unknown step {}", Value::Object(step.clone())));
        }
    }
    Ok(0)
}

/// Handles a SIGTERM that arrived during a step that does not wait.
async fn pending_term(term: &mut Option<(Signal, OnTerm)>) -> Option<u8> {
    let (signal, on_term) = term.as_mut()?;
    tokio::select! {
        biased;
        _ = signal.recv() => finish(on_term),
        () = std::future::ready(()) => None,
    }
}

/// Runs the SIGTERM behaviour; the exit code when it ends the process.
fn finish(on_term: &OnTerm) -> Option<u8> {
    match on_term {
        OnTerm::Ignore => None,
        OnTerm::Finish { lines, code } => {
            for line in lines {
                stdout_line(line.to_string().as_bytes());
            }
            Some(*code)
        }
    }
}

/// Describes the file passed after an argument (its path, mode and JSON contents) in a file the
/// test reads.
fn arg_file(args: &[String], spec: &Value) -> Result<(), String> {
    let (Some(arg), Some(to)) = (
        spec.get("arg").and_then(Value::as_str),
        spec.get("to").and_then(Value::as_str),
    ) else {
        return Err("arg_file: arg and to are required".into());
    };
    let described = match flag(args, arg) {
        None => json!({ "contents": null }),
        Some(path) => {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path)
                .map_err(|e| format!("{path}: {e}"))?
                .permissions()
                .mode()
                & 0o777;
            let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
            let contents: Value =
                serde_json::from_str(&text).map_err(|e| format!("{path}: {e}"))?;
            json!({ "path": path, "mode": mode, "contents": contents })
        }
    };
    std::fs::write(to, described.to_string()).map_err(|e| format!("{to}: {e}"))
}

fn grandchild(spec: &Value) -> Result<(), String> {
    let pid_file = spec
        .get("pid_file")
        .and_then(Value::as_str)
        .ok_or("grandchild: pid_file is required")?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut command = std::process::Command::new(exe);
    command.args(["--sleep-ms", "3600000"]);
    if spec.get("ignore_sigterm").and_then(Value::as_bool) == Some(true) {
        command.arg("--ignore-sigterm");
    }
    // stdout and stderr are inherited: like a real worker process, it holds the pipes open.
    let child = command
        .stdin(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("grandchild: {e}"))?;
    // Written whole, then renamed, so a reader never sees a partial pid.
    let partial = format!("{pid_file}.partial");
    std::fs::write(&partial, child.id().to_string()).map_err(|e| e.to_string())?;
    std::fs::rename(&partial, pid_file).map_err(|e| e.to_string())?;
    Ok(())
}

fn terminate_signal() -> Result<Signal, String> {
    signal(SignalKind::terminate()).map_err(|e| format!("SIGTERM handler: {e}"))
}

fn exit_code(value: Option<&Value>) -> Result<u8, String> {
    match value.and_then(Value::as_u64).map(u8::try_from) {
        None => Ok(0),
        Some(Ok(code)) => Ok(code),
        Some(Err(e)) => Err(format!("exit code: {e}")),
    }
}

fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

/// Writes one stdout line and flushes it, so that the reader sees each line as it is printed.
fn stdout_line(line: &[u8]) {
    let mut out = std::io::stdout().lock();
    let written = out
        .write_all(line)
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush());
    if let Err(e) = written {
        eprintln!("hakiri-fake-tap: cannot write stdout: {e}");
        std::process::exit(1);
    }
}
