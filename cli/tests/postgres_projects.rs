//! A mistyped `--project` on a Postgres catalog is refused, naming the projects there, as it is on
//! a directory of SQLite files — never an empty catalog with exit 0.
//!
//! The server comes from catalog-postgres's test support (`HAKIRI_TEST_POSTGRES_URL`, else a
//! Docker container, else a throwaway `initdb`/`pg_ctl` server on loopback).

mod common;

use hakiri_test_kit::postgres;
use std::process::Output;

fn hakiri(url: &str, project: &str, args: &[&str]) -> Output {
    common::hakiri(url, project)
        .args(args)
        .output()
        .expect("run hakiri")
}

#[test]
fn a_mistyped_project_is_refused_and_the_existing_ones_are_named() {
    let url = postgres::shared().url();
    let project = format!("acme-{}", std::process::id());
    let migrated = hakiri(url, &project, &["migrate"]);
    assert!(
        migrated.status.success(),
        "{}\n(no server? {})",
        String::from_utf8_lossy(&migrated.stderr),
        postgres::HOW_TO_GET_ONE
    );
    // The migrated project exists, pipelines or not.
    let listed = hakiri(url, &project, &["pipelines", "list"]);
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );

    let typo = format!("acme-{}x", std::process::id());
    let refused = hakiri(url, &typo, &["runs", "list"]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("project {typo} has no catalog")),
        "{stderr}"
    );
    assert!(stderr.contains("projects in this catalog:"), "{stderr}");
    // (A shared server may hold more projects than the hint names.)
    assert!(
        stderr.contains(&project) || stderr.contains(" more;"),
        "{stderr}"
    );
    // The refusal created nothing: the typo is still unknown.
    let again = hakiri(url, &typo, &["events"]);
    assert_eq!(again.status.code(), Some(2));
}

/// A database without the catalog's tables is reported as `not_migrated` — from the catalog's
/// typed error, not from the server's message — with the command that fixes it.
#[test]
fn an_unmigrated_database_says_so_and_names_the_migrate_command() {
    let url = postgres::shared().url();
    // A search path naming no schema: the catalog's tables are nowhere to be found (42P01).
    let separator = if url.contains('?') { '&' } else { '?' };
    let unmigrated = format!("{url}{separator}options=-c%20search_path%3Dno_hakiri_here");
    let project = format!("acme-{}", std::process::id());

    let refused = hakiri(&unmigrated, &project, &["--output", "json", "events"]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("\"code\":\"not_migrated\""), "{stderr}");
    assert!(stderr.contains("migrate` once"), "{stderr}");
}
