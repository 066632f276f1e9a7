//! `hakiri-fake-target`: a stand-in for a Singer target, so that tests of the `singer`
//! connector's `tap | target` mode can make a target confirm states, make states up, or crash,
//! without Python.
//!
//! ```text
//! hakiri-fake-target --config <file> [other arguments, ignored]
//! ```
//! It reads Singer messages on stdin and appends each line, as it came, to the file `out`. What
//! else it does comes from its config file (the `target.config` of a singer pipeline):
//!
//! | setting | does |
//! |---|---|
//! | `out` | the file every input line is appended to (required) |
//! | `confirm` | when it prints the latest STATE's value on stdout, as targets confirm what they loaded: `"each"` (after every STATE), `"end"` (once, at the end of its input, as `target-jsonl` does; the default) or `"never"` |
//! | `print_last` | values printed as JSON lines on stdout at the end, after any confirmation (states a target makes up: `{}`, a partial one) |
//! | `fail_after_lines` | after this many input lines, prints a complaint on stderr and exits with code 3 |
//! | `flush` | when `out` is written: `"each"` line before the next is read (the default), so a test sees what was forwarded up to the moment the target stopped; or `"end"`: buffered, as a real target writes its files, and flushed before each confirmation and at the end (the benchmark's setting: a write per line would make it slower than a target needs to be) |

use std::io::{BufRead, Write};
use std::process::ExitCode;

use serde_json::Value;

fn main() -> ExitCode {
    match run() {
        Ok(code) => ExitCode::from(code),
        Err(message) => {
            eprintln!("hakiri-fake-target: {message}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<u8, String> {
    let args: Vec<String> = std::env::args().collect();
    let config = args
        .iter()
        .position(|a| a == "--config")
        .and_then(|i| args.get(i + 1))
        .ok_or("--config <file> is required")?;
    let config: Value = std::fs::read(config)
        .map_err(|e| format!("{config}: {e}"))
        .and_then(|bytes| serde_json::from_slice(&bytes).map_err(|e| format!("{config}: {e}")))?;
    let out = config["out"]
        .as_str()
        .ok_or("config: \"out\" is required")?;
    let confirm = config["confirm"].as_str().unwrap_or("end");
    if !["each", "end", "never"].contains(&confirm) {
        return Err(format!("config: unknown \"confirm\" {confirm:?}"));
    }
    let fail_after = config["fail_after_lines"].as_u64();
    let flush_each = match config["flush"].as_str().unwrap_or("each") {
        "each" => true,
        "end" => false,
        other => return Err(format!("config: unknown \"flush\" {other:?}")),
    };

    let mut stdout = std::io::stdout().lock();
    let mut say = |value: &Value| -> Result<(), String> {
        writeln!(stdout, "{value}")
            .and_then(|()| stdout.flush())
            .map_err(|e| format!("stdout: {e}"))
    };
    let mut out = std::io::BufWriter::new(
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(out)
            .map_err(|e| format!("{out}: {e}"))?,
    );
    let mut latest = None;
    let mut lines = 0;
    for line in std::io::stdin().lock().lines() {
        let line = line.map_err(|e| format!("stdin: {e}"))?;
        writeln!(out, "{line}")
            .and_then(|()| if flush_each { out.flush() } else { Ok(()) })
            .map_err(|e| format!("out: {e}"))?;
        lines += 1;
        if fail_after == Some(lines) {
            eprintln!("hakiri-fake-target: failing on purpose after {lines} lines");
            return Ok(3);
        }
        let message: Value =
            serde_json::from_str(&line).map_err(|e| format!("input line {lines}: {e}"))?;
        let is_state = message["type"]
            .as_str()
            .is_some_and(|t| t.eq_ignore_ascii_case("STATE"));
        if is_state {
            latest = Some(message["value"].clone());
            if confirm == "each" {
                // What it confirms is in `out`, whatever `flush` says.
                out.flush().map_err(|e| format!("out: {e}"))?;
                say(&message["value"])?;
            }
        }
    }
    out.flush().map_err(|e| format!("out: {e}"))?;
    if let (Some(state), "end") = (&latest, confirm) {
        say(state)?;
    }
    for value in config["print_last"].as_array().into_iter().flatten() {
        say(value)?;
    }
    Ok(0)
}
