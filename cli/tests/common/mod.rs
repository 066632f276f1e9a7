//! What the CLI's end-to-end test files share: the `hakiri` binary with a clean environment.

// Each test binary uses a subset of these.
#![allow(dead_code, unreachable_pub)]

use std::path::Path;
use std::process::Command;

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
