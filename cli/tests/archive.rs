//! Moving a project between backends with `hakiri export` and `hakiri import` (ADR 0033): a
//! project filled with a bit of everything goes memory → SQLite file → Postgres → the Worker →
//! `hakiri serve` → SQLite file and arrives whole at each hop (equal digests, equal contents);
//! the binary moves a project from SQLite to Postgres printing the same digest on both sides;
//! a gzip-compressed archive (a file named `*.gz`) moves a project as well, and a damaged one
//! changes nothing; bad archives are refused naming their line, and change nothing; an
//! interrupted import is finished by importing the same archive again.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

use hakiri_catalog_do::{SqliteCatalog, SqliteConfig};
use hakiri_catalog_memory::MemoryCatalog;
use hakiri_catalog_postgres::{PostgresCatalog, PostgresConfig};
use hakiri_contract::archive::{contents, export_bytes, fill, import_bytes, import_first};
use hakiri_contract::unique_project;
use hakiri_core::{Catalog, ProjectId};
use hakiri_protocol::{HttpCatalog, HttpConfig};
use hakiri_test_kit::{postgres, workerd};
use serde_json::Value;

const TTL: Duration = Duration::from_secs(600);

fn sqlite_file(dir: &Path, project: &ProjectId) -> Arc<dyn Catalog> {
    let file = dir.join(format!("{project}.db"));
    Arc::new(SqliteCatalog::open(file, project.clone(), SqliteConfig::default()).expect("open"))
}

async fn postgres_catalog(project: &ProjectId) -> Arc<dyn Catalog> {
    let url = postgres::shared().url();
    let pool = PostgresConfig::default()
        .max_connections(2)
        .connect(url)
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}. {}", postgres::HOW_TO_GET_ONE));
    Arc::new(PostgresCatalog::new(pool, project.clone()))
}

fn http(url: &str, token: &str, project: &ProjectId) -> Arc<dyn Catalog> {
    let catalog =
        HttpCatalog::connect(url, project.clone(), token, HttpConfig::default()).expect("a client");
    Arc::new(catalog)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_project_moves_through_every_backend_and_arrives_whole_at_each() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let source = MemoryCatalog::new(unique_project());
    fill(&source, TTL).await;
    let expected = contents(&source).await;
    let (mut bytes, exported) = export_bytes(&source).await;

    let worker = workerd::shared();
    let mut serve = common::hakiri(&common::sqlite_catalog(dir.path()), "unused");
    serve.args(["--output", "json", "serve", "--listen", "127.0.0.1:0"]);
    let served = common::serve::Served::start(&serve, &[]);

    let hops: Vec<(&str, Arc<dyn Catalog>)> = vec![
        ("SQLite file", sqlite_file(dir.path(), &unique_project())),
        ("Postgres", postgres_catalog(&unique_project()).await),
        (
            "the Worker",
            http(&worker.url(), workerd::ADMIN_TOKEN, &unique_project()),
        ),
        (
            "hakiri serve",
            http(&served.url, &served.token, &unique_project()),
        ),
        (
            "SQLite file again",
            sqlite_file(dir.path(), &unique_project()),
        ),
    ];
    for (backend, catalog) in hops {
        let imported = import_bytes(&*catalog, &bytes)
            .await
            .unwrap_or_else(|e| panic!("import into {backend}: {e}"));
        assert_eq!(imported, exported, "{backend}");
        assert_eq!(contents(&*catalog).await, expected, "{backend}");
        let (next, again) = export_bytes(&*catalog).await;
        assert_eq!(again, exported, "{backend}: the export of the import");
        bytes = next;
    }
    served.stop();
}

/// The `--output json` document of a successful `hakiri` run.
fn json_of(out: Output, what: &str) -> Value {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// A failed run: its exit code and stderr.
fn failure(out: Output) -> (i32, String) {
    assert!(!out.status.success(), "expected a failure");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A project filled with a bit of everything, in SQLite files under `dir`: the catalog URL, its
/// directory of files, and the project.
async fn filled_sqlite_project(dir: &Path) -> (String, PathBuf, ProjectId) {
    let sqlite = common::sqlite_catalog(dir);
    let files = dir.join(".hakiri");
    std::fs::create_dir_all(&files).expect("catalog directory");
    let source = unique_project();
    fill(&*sqlite_file(&files, &source), TTL).await;
    (sqlite, files, source)
}

/// `hakiri export --file archive --verify` of `project`: its JSON report and the digest it
/// printed, checked as verified.
fn export_verified(catalog: &str, project: &ProjectId, archive: &str) -> (Value, String) {
    let exported = json_of(
        common::hakiri(catalog, project.as_str())
            .args(["-o", "json", "export", "--file", archive, "--verify"])
            .output()
            .expect("run hakiri"),
        "export",
    );
    let digest = exported["digest"].as_str().expect("a digest").to_owned();
    assert_eq!(exported["verified"], Value::from(digest.clone()));
    (exported, digest)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_moves_a_project_from_sqlite_to_postgres_and_both_sides_print_one_digest() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (sqlite, files, source) = filled_sqlite_project(dir.path()).await;
    let archive = dir.path().join("project.jsonl");
    let archive_arg = archive.to_str().expect("utf-8 path");

    let (exported, digest) = export_verified(&sqlite, &source, archive_arg);
    assert!(!dir.path().join("project.jsonl.partial").exists());

    // To stdout, the archive is all that stdout carries; the report goes to stderr.
    let out = common::hakiri(&sqlite, source.as_str())
        .args(["-o", "json", "export"])
        .output()
        .expect("run hakiri");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let streamed = String::from_utf8(out.stdout).expect("utf-8");
    let end = streamed.lines().last().expect("an end line");
    assert!(end.contains(&digest), "{end}");
    let report: Value = serde_json::from_slice(&out.stderr).expect("a JSON report on stderr");
    assert_eq!(report["digest"], Value::from(digest.clone()));

    let pg = postgres::shared().url();
    let target = unique_project();
    let imported = json_of(
        common::hakiri(pg, target.as_str())
            .args(["-o", "json", "import", archive_arg, "--verify"])
            .output()
            .expect("run hakiri"),
        "import",
    );
    assert_eq!(imported["digest"], Value::from(digest.clone()));
    assert_eq!(imported["verified"], Value::from(digest.clone()));
    assert_eq!(imported["records"], exported["records"]);
    assert_eq!(
        contents(&*postgres_catalog(&target).await).await,
        contents(&*sqlite_file(&files, &source)).await
    );

    // Into the same project again: refused, and it keeps what it has.
    let (code, stderr) = failure(
        common::hakiri(pg, target.as_str())
            .args(["import", archive_arg])
            .output()
            .expect("run hakiri"),
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("empty project"), "{stderr}");
    let again = archive_digest(&*postgres_catalog(&target).await).await;
    assert_eq!(again, digest);
}

async fn archive_digest(catalog: &dyn Catalog) -> String {
    hakiri_core::archive::digest(catalog)
        .await
        .expect("digest")
        .digest
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gzip_archive_moves_a_project_and_a_damaged_one_changes_nothing() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (sqlite, files, source) = filled_sqlite_project(dir.path()).await;
    let archive = dir.path().join("project.jsonl.gz");
    let archive_arg = archive.to_str().expect("utf-8 path");

    let (_, digest) = export_verified(&sqlite, &source, archive_arg);
    let compressed = std::fs::read(&archive).expect("the archive");
    assert!(compressed.starts_with(&[0x1f, 0x8b]), "not gzip");
    let plain = common::hakiri(&sqlite, source.as_str())
        .args(["export"])
        .output()
        .expect("run hakiri");
    assert!(
        compressed.len() * 3 < plain.stdout.len(),
        "{} compressed bytes for {} plain ones",
        compressed.len(),
        plain.stdout.len()
    );

    let target = unique_project();
    let imported = json_of(
        common::hakiri(&sqlite, target.as_str())
            .args(["-o", "json", "import", archive_arg, "--verify"])
            .output()
            .expect("run hakiri"),
        "import",
    );
    assert_eq!(imported["verified"], Value::from(digest));
    assert_eq!(
        contents(&*sqlite_file(&files, &target)).await,
        contents(&*sqlite_file(&files, &source)).await
    );

    // Cut short, or with a flipped byte: refused, and no project is created.
    let mut flipped = compressed.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x55;
    for (name, bytes) in [
        ("cut", compressed[..compressed.len() / 2].to_vec()),
        ("flipped", flipped),
    ] {
        let stderr = refused_import(&sqlite, dir.path(), &format!("{name}.jsonl.gz"), &bytes);
        assert!(stderr.contains("nothing was imported"), "{name}: {stderr}");
    }
}

/// Imports `bytes`, written to `file` under `dir`, into a new project of `catalog` (SQLite files
/// under `dir`); asserts the import is refused as bad input and creates no project, and returns
/// what it said.
fn refused_import(catalog: &str, dir: &Path, file: &str, bytes: &[u8]) -> String {
    let path = dir.join(file);
    std::fs::write(&path, bytes).expect("write");
    let project = unique_project();
    let (code, stderr) = failure(
        common::hakiri(catalog, project.as_str())
            .args(["import", path.to_str().expect("utf-8")])
            .output()
            .expect("run hakiri"),
    );
    assert_eq!(code, 2, "{file}: {stderr}");
    assert!(
        !dir.join(format!(".hakiri/{project}.db")).exists(),
        "{file}: a refused archive creates no project"
    );
    stderr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_archives_are_refused_naming_their_line_and_change_nothing() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let source = MemoryCatalog::new(unique_project());
    fill(&source, TTL).await;
    let (bytes, _) = export_bytes(&source).await;
    let text = String::from_utf8(bytes).expect("utf-8");
    let lines: Vec<&str> = text.lines().collect();
    let n = lines.len();

    let truncated = format!("{}\n", lines[..n - 6].join("\n"));
    let damaged = text.replacen("\"records\":42", "\"records\":43", 1);
    assert_ne!(damaged, text, "the sample holds a run with 42 records");
    let newer = text.replacen("\"format\":1", "\"format\":9", 1);
    let garbled = text.replacen("{\"type\":\"run\"", "{\"type\":\"rnu\"", 1);
    let cases = [
        ("truncated", truncated, n - 5, "truncated"),
        ("damaged", damaged, n, "damaged"),
        ("newer", newer, 1, "newer than this hakiri reads"),
        ("garbled", garbled, 3, "not a valid record"),
    ];
    let sqlite = common::sqlite_catalog(dir.path());
    for (name, archive, line, says) in cases {
        let stderr = refused_import(
            &sqlite,
            dir.path(),
            &format!("{name}.jsonl"),
            archive.as_bytes(),
        );
        assert!(stderr.contains(says), "{name}: {stderr}");
        assert!(
            stderr.contains(&format!("archive line {line}:")),
            "{name}: {stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_import_is_finished_by_importing_the_same_archive_again() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let source = MemoryCatalog::new(unique_project());
    fill(&source, TTL).await;
    let (bytes, exported) = export_bytes(&source).await;
    let archive = dir.path().join("project.jsonl");
    std::fs::write(&archive, &bytes).expect("write");

    // The first batch lands, then the importer "dies".
    let files = dir.path().join(".hakiri");
    std::fs::create_dir_all(&files).expect("catalog directory");
    let target = unique_project();
    let catalog = sqlite_file(&files, &target);
    import_first(&*catalog, &bytes, &exported, 10).await;
    drop(catalog);

    let out = common::hakiri(&common::sqlite_catalog(dir.path()), target.as_str())
        .args(["import", archive.to_str().expect("utf-8"), "--verify"])
        .output()
        .expect("run hakiri");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("resuming the import of this archive after record 10"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "verified: the other side's digest is {}",
            exported.digest
        )),
        "{stderr}"
    );
    assert_eq!(
        contents(&*sqlite_file(&files, &target)).await,
        contents(&source).await
    );
}
