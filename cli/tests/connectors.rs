//! `hakiri connectors list` and `hakiri connectors install`, and `reconcile` installing a
//! missing tap, on the embedded SQLite catalog in a temporary directory of each test's own.
//!
//! The install tests install `cowsay==6.1` (a 25 kB wheel with one console script and no
//! dependencies) from PyPI: they need `python3` with venv (or `$HAKIRI_PYTHON`) and PyPI, or
//! `PIP_INDEX_URL`/`PIP_FIND_LINKS` offering it. Without them they fail, saying so.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

const PROJECT: &str = "taps";

const NEEDS: &str = "the install tests need python3 with venv (Debian: apt-get install \
                     python3-venv; or set HAKIRI_PYTHON) and PyPI, or PIP_FIND_LINKS/PIP_INDEX_URL \
                     offering cowsay==6.1";

/// A pipeline whose "tap" is cowsay: installable in seconds; not a Singer tap, so its runs fail
/// at discovery, after the install.
const MANIFEST: &str = r#"
[[pipeline]]
id = "cow"
connector = "singer"
cursor_kind = "opaque"
config = { pip_url = "cowsay==6.1", output = "out" }

[[pipeline]]
id = "on-path"
connector = "singer"
cursor_kind = "opaque"
config = { command = "tap-on-path", output = "out" }

[[pipeline]]
id = "files"
connector = "jsonl"
cursor_kind = "monotonic"
config = { input = "in", output = "out", cursor_field = "id" }
"#;

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    /// A directory with a catalog holding [`MANIFEST`]'s pipelines.
    fn new() -> Self {
        let env = Self {
            dir: tempfile::tempdir().expect("a temporary directory"),
        };
        std::fs::write(env.path().join("hakiri.toml"), MANIFEST).expect("write hakiri.toml");
        env.ok(&["apply", "-f", "hakiri.toml"]);
        env
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn venvs(&self) -> PathBuf {
        self.path().join(".hakiri").join("venvs")
    }

    fn run(&self, args: &[&str], python: Option<&str>) -> Output {
        let mut command = common::hakiri(&common::sqlite_catalog(self.path()), PROJECT);
        command.args(args).current_dir(self.path());
        match python {
            Some(python) => command.env("HAKIRI_PYTHON", python),
            None => command.env_remove("HAKIRI_PYTHON"),
        };
        command.output().expect("run hakiri")
    }

    fn ok(&self, args: &[&str]) -> String {
        common::stdout_of_success(self.run(args, None), args, NEEDS)
    }

    fn json(&self, args: &[&str]) -> Value {
        common::json_document(args, &self.ok(&common::with_json_output(args)))
    }
}

#[test]
fn list_shows_the_builtin_connectors_and_no_taps_before_an_install() {
    let env = Env::new();
    let listing = env.json(&["connectors", "list"]);
    assert_eq!(
        listing["builtin"],
        serde_json::json!(["airbyte", "jsonl", "singer", "tail"])
    );
    assert_eq!(listing["installed"], serde_json::json!([]));
    assert_eq!(
        listing["venvs"].as_str().map(PathBuf::from),
        Some(env.venvs())
    );
    let table = env.ok(&["connectors", "list"]);
    assert!(
        table.contains("singer") && table.contains("built-in"),
        "{table}"
    );
    // --venvs (or HAKIRI_VENVS) moves the root.
    let moved = env.json(&["connectors", "list", "--venvs", "/opt/taps"]);
    assert_eq!(moved["venvs"], "/opt/taps");
}

#[test]
fn reconcile_installs_a_missing_tap_and_install_then_finds_it_present() {
    let env = Env::new();
    // The run installs cowsay into the catalog's directory, then fails: cowsay is no tap.
    env.ok(&["pipelines", "run", "cow"]);
    let out = env.run(&["reconcile", "--once", "--output", "json"], None);
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    let cow = report["runs"]
        .as_array()
        .and_then(|runs| runs.iter().find(|r| r["pipeline"] == "cow"))
        .unwrap_or_else(|| panic!("no run of cow: {report}"));
    let message = cow["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(".hakiri/venvs/cowsay-") && message.contains("/bin/cowsay ended with"),
        "the run installed the tap and ran it (to discover its catalog): {message}\n{NEEDS}"
    );

    let listing = env.json(&["connectors", "list"]);
    let installed = listing["installed"].as_array().unwrap();
    assert_eq!(installed.len(), 1, "{listing}");
    assert_eq!(installed[0]["pip_url"], "cowsay==6.1");
    assert_eq!(installed[0]["executables"], serde_json::json!(["cowsay"]));
    let dir = PathBuf::from(installed[0]["dir"].as_str().unwrap());
    assert!(dir.starts_with(env.venvs()), "{}", dir.display());

    // Installing again is a no-op, and only the pipeline with a pip_url is considered.
    let report = env.json(&["connectors", "install"]);
    let requirements = report["requirements"].as_array().unwrap();
    assert_eq!(requirements.len(), 1, "{report}");
    assert_eq!(requirements[0]["status"], "present");
    assert_eq!(requirements[0]["pipelines"], serde_json::json!(["cow"]));
    assert_eq!(
        requirements[0]["path"].as_str().map(PathBuf::from),
        Some(dir.join("bin/cowsay"))
    );
    let text = env.run(&["connectors", "install", "cow"], None);
    let stderr = String::from_utf8_lossy(&text.stderr);
    assert!(stderr.contains("already installed"), "{stderr}");
    assert!(
        String::from_utf8_lossy(&text.stdout)
            .contains("0 installed, 1 already installed, 0 failed"),
        "{text:?}"
    );
}

#[test]
fn install_builds_into_the_venvs_dir_given() {
    let env = Env::new();
    let root = env.path().join("elsewhere");
    let report = env.json(&["connectors", "install", "--venvs", root.to_str().unwrap()]);
    assert_eq!(report["requirements"][0]["status"], "built", "{report}");
    let path = PathBuf::from(report["requirements"][0]["path"].as_str().unwrap());
    assert!(path.starts_with(&root), "{}", path.display());
    let out = Command::new(&path).args(["-t", "moo"]).output().unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("moo"),
        "{out:?}"
    );
    assert!(!env.venvs().exists(), "nothing in the default root");
}

#[test]
fn a_missing_python_fails_the_install_with_a_hint_and_installs_nothing() {
    let env = Env::new();
    let out = env.run(&["connectors", "install"], Some("/nonexistent/python3"));
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/nonexistent/python3"), "{stderr}");
    assert!(stderr.contains("HAKIRI_PYTHON"), "{stderr}");
    assert!(stderr.contains("could not be installed"), "{stderr}");
    let listing = env.json(&["connectors", "list"]);
    assert_eq!(listing["installed"], serde_json::json!([]));
}

#[test]
fn naming_a_pipeline_without_a_pip_url_or_an_unknown_one_is_refused() {
    let env = Env::new();
    for (name, words) in [("on-path", "names no pip_url"), ("nope", "does not exist")] {
        let out = env.run(&["connectors", "install", name], None);
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(words), "{name}: {stderr}");
    }
}

#[test]
fn two_processes_installing_the_same_tap_take_turns() {
    let env = Env::new();
    let root = env.path().join("shared");
    let spawn = || {
        let mut command = Command::new(env!("CARGO_BIN_EXE_hakiri"));
        command
            .args(["--output", "json", "connectors", "install", "--venvs"])
            .arg(&root)
            .current_dir(env.path())
            .env(
                "HAKIRI_CATALOG",
                format!("sqlite://{}/.hakiri/", env.path().display()),
            )
            .env("HAKIRI_PROJECT", PROJECT)
            .env_remove("HAKIRI_PYTHON")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start hakiri")
    };
    let (a, b) = (spawn(), spawn());
    let mut statuses: Vec<String> = [a, b]
        .into_iter()
        .map(|child| {
            let out = child.wait_with_output().unwrap();
            assert!(out.status.success(), "{out:?}\n{NEEDS}");
            let report: Value = serde_json::from_slice(&out.stdout).unwrap();
            report["requirements"][0]["status"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    statuses.sort();
    assert_eq!(
        statuses,
        ["built", "present"],
        "one built it, the other waited and reused it"
    );
    let listing = env.json(&["connectors", "list", "--venvs", root.to_str().unwrap()]);
    assert_eq!(
        listing["installed"].as_array().unwrap().len(),
        1,
        "{listing}"
    );
}
