//! What the CLI's end-to-end test files share: the `hakiri` binary with a clean environment.

// Each test binary uses a subset of these.
#![allow(dead_code, unreachable_pub)]

pub mod serve;

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

/// `hakiri` on catalog `url` and `project`, acting as operator `tester`, with none of the
/// caller's token, venv root or log settings: what a test runs is what it says.
pub fn hakiri(url: &str, project: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_hakiri"));
    command
        .env("HAKIRI_CATALOG", url)
        .env("HAKIRI_PROJECT", project)
        .env("USER", "tester")
        .env_remove("HAKIRI_TOKEN")
        .env_remove("HAKIRI_VENVS")
        .env_remove("RUST_LOG");
    command
}

/// The URL of a directory of SQLite catalogs under `dir` (`sqlite://<dir>/.hakiri/`).
pub fn sqlite_catalog(dir: &Path) -> String {
    format!("sqlite://{}/.hakiri/", dir.display())
}

/// The stdout of `hakiri args`, which must have succeeded: a failure panics with both outputs
/// and `hint` (what the test needs, when that may be why).
pub fn stdout_of_success(out: Output, args: &[&str], hint: &str) -> String {
    assert!(
        out.status.success(),
        "hakiri {args:?} failed ({}):\nstdout:\n{}\nstderr:\n{}\n{hint}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// `args` with `--output json` first, for a command whose output a test parses.
pub fn with_json_output<'a>(args: &[&'a str]) -> Vec<&'a str> {
    let mut all = vec!["--output", "json"];
    all.extend_from_slice(args);
    all
}

/// The JSON document `hakiri args` printed.
pub fn json_document(args: &[&str], text: &str) -> Value {
    serde_json::from_str(text)
        .unwrap_or_else(|e| panic!("hakiri {args:?} printed invalid JSON ({e}):\n{text}"))
}

/// A temporary working directory with a catalog of its own (`sqlite://<dir>/.hakiri/`), where
/// `hakiri` runs on one project.
pub struct Workdir {
    dir: tempfile::TempDir,
    project: &'static str,
}

impl Workdir {
    /// A new empty directory; `hakiri` will act on `project` there.
    pub fn new(project: &'static str) -> Self {
        Self {
            dir: tempfile::tempdir().expect("a temporary directory"),
            project,
        }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `hakiri args`, run in the directory on its catalog.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = hakiri(&sqlite_catalog(self.path()), self.project);
        command.args(args).current_dir(self.path());
        command
    }

    /// Runs `hakiri args` to its end.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run hakiri")
    }

    /// Runs a command that must succeed; returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        stdout_of_success(self.run(args), args, "")
    }

    /// Runs a command with `--output json` that must succeed; returns the parsed document.
    pub fn json(&self, args: &[&str]) -> Value {
        json_document(args, &self.ok(&with_json_output(args)))
    }
}
