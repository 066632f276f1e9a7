//! Installing a real package from PyPI into a venv (`Venvs`): built once even when two installs
//! race, reused after, listed, and its executable runs; a singer run that cannot install its tap
//! fails for good.
//!
//! Needs `python3` (or `$HAKIRI_PYTHON`) able to make venvs, and PyPI (or `PIP_INDEX_URL` /
//! `PIP_FIND_LINKS` holding `cowsay==6.1`, a 25 kB wheel with no dependencies). Without them
//! the test fails, saying so: it never passes by skipping.

mod common;

use std::time::Instant;

use common::*;
use hakiri_core::{CursorKind, HolderId, RunStatus};
use hakiri_reconciler::{builtin, Reconciler, ReconcilerConfig, SingerConnector, Venvs};
use serde_json::json;

const PIP_URL: &str = "cowsay==6.1";

const NEEDS: &str = "this test needs python3 with venv (Debian: apt-get install python3-venv; \
                     or set HAKIRI_PYTHON) and PyPI, or PIP_FIND_LINKS/PIP_INDEX_URL offering cowsay==6.1";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_requirement_is_installed_once_reused_listed_and_runs() {
    let root = tempfile::tempdir().unwrap();
    let venvs = Venvs::new(root.path().join("venvs"));

    // Two installs of the same venv at once: they take turns, one builds, the other reuses.
    let started = Instant::now();
    let (a, b) = tokio::join!(
        venvs.install(PIP_URL, "cowsay"),
        venvs.install(PIP_URL, "cowsay")
    );
    let (a, b) = (
        a.unwrap_or_else(|e| panic!("{e}\n{NEEDS}")),
        b.unwrap_or_else(|e| panic!("{e}\n{NEEDS}")),
    );
    eprintln!("cold install: {:.1}s", started.elapsed().as_secs_f64());
    assert_eq!(a.executable, b.executable);
    assert!(a.built != b.built, "exactly one built it: {a:?} {b:?}");
    let dir = venvs.dir(PIP_URL).unwrap();
    assert_eq!(a.executable, dir.join("bin/cowsay"));
    assert!(
        !dir.with_file_name(format!(
            "{}.lock",
            dir.file_name().unwrap().to_str().unwrap()
        ))
        .exists(),
        "the lock was released"
    );

    // Again: the marker matches, nothing runs.
    let started = Instant::now();
    let again = venvs.install(PIP_URL, "cowsay").await.unwrap();
    let warm = started.elapsed();
    eprintln!("warm install: {:.3}s", warm.as_secs_f64());
    assert!(!again.built);
    assert!(
        warm.as_millis() < 500,
        "a reused venv runs nothing: {warm:?}"
    );

    let listed = venvs.list().unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].pip_url, PIP_URL);
    assert_eq!(listed[0].dir, dir);
    assert_eq!(listed[0].executables, ["cowsay"]);

    let out = std::process::Command::new(&again.executable)
        .args(["-t", "hakiri"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("hakiri"));

    // A name the package does not install: a permanent error naming what it does install.
    let error = venvs
        .install(PIP_URL, "tap-cowsay")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("\"tap-cowsay\"") && error.contains("cowsay"),
        "{error}"
    );
}

#[tokio::test]
async fn a_package_pip_cannot_find_fails_with_pips_reason_and_leaves_no_venv() {
    let root = tempfile::tempdir().unwrap();
    let venvs = Venvs::new(root.path());
    let pip_url = "hakiri-no-such-package-7f3a==0.0.1";
    let error = venvs.install(pip_url, "x").await.unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("pip install hakiri-no-such-package-7f3a==0.0.1 failed"),
        "{message}\n{NEEDS}"
    );
    // pip's own words (stderr), not only its exit status.
    assert!(
        message.contains("No matching distribution") || message.contains("Could not find"),
        "{message}"
    );
    assert!(venvs.list().unwrap().is_empty());
    assert!(!venvs.dir(pip_url).unwrap().join(".hakiri-pip-url").exists());
}

/// A run of a pipeline whose tap must be installed first fails for good (not retried) when
/// there is no Python, saying how to get one; nothing is left in the venvs root.
#[tokio::test]
async fn a_run_that_cannot_install_its_tap_fails_permanently_with_the_hint() {
    let root = tempfile::tempdir().unwrap();
    let venvs = Venvs::new(root.path()).with_python("/nonexistent/python3");
    let (catalog, _clock) = catalog();
    let reconciler = Reconciler::new(
        catalog.clone(),
        builtin().with("singer", SingerConnector::with_venvs(venvs.clone())),
        ReconcilerConfig::new(HolderId::new("test-reconciler").unwrap()),
    );
    pipeline(
        &*catalog,
        "taps",
        "singer",
        CursorKind::Opaque,
        json!({"pip_url": "tap-jsonl==0.3.1", "output": root.path().join("out")}),
    )
    .await;
    let end = only(reconcile(&reconciler).await);
    assert_eq!(end.status, Some(RunStatus::Failed), "{end:?}");
    let message = end.message.clone().unwrap_or_default();
    assert!(
        message.contains("/nonexistent/python3") && message.contains("HAKIRI_PYTHON"),
        "{message}"
    );
    let run = run(&*catalog, &end).await;
    let error = run.error.expect("the run's error");
    assert!(
        !error.retryable,
        "retrying will not bring Python: {error:?}"
    );
    assert!(venvs.list().unwrap().is_empty());
}
