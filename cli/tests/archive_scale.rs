//! An archive of a project with 100,000 events and a cursor history as long moves with memory
//! that does not grow with it: `hakiri import` and `hakiri export` of it peak within a few MiB
//! of what they peak at for an archive a tenth of its size (peak resident memory of each
//! process, read by `python3`'s `resource.getrusage` of its child).

mod common;

use std::path::Path;
use std::process::Command;

use hakiri_catalog_memory::MemoryCatalog;
use hakiri_contract::archive::{export_bytes, long_history};
use hakiri_contract::unique_project;

/// How much more a process may peak at for the large archive than for the small one. An
/// archive held in memory would add its size (about 30 MiB for the large one).
const SLACK_KIB: u64 = 12 * 1024;

/// An archive of a project whose log holds `events` events and whose cursor history is nearly
/// as long.
async fn archive_of(events: u64) -> Vec<u8> {
    let catalog = MemoryCatalog::new(unique_project());
    long_history(&catalog, events).await;
    let (bytes, summary) = export_bytes(&catalog).await;
    assert_eq!(summary.events, events);
    bytes
}

/// Runs `hakiri args` under `python3`, which reports the child's peak resident memory in KiB.
fn peak_kib(catalog: &str, args: &[&str]) -> u64 {
    let script = "import resource, subprocess, sys\n\
                  code = subprocess.run(sys.argv[1:]).returncode\n\
                  print('peak', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)\n\
                  sys.exit(code)";
    let mut command = Command::new("python3");
    command.arg("-c").arg(script);
    let hakiri = common::hakiri(catalog, "scale");
    command.arg(hakiri.get_program()).args(args);
    for (key, value) in hakiri.get_envs() {
        match value {
            Some(value) => command.env(key, value),
            None => command.env_remove(key),
        };
    }
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("python3 runs the measurement ({e}); install python3"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "hakiri {args:?}: {stderr}");
    stderr
        .lines()
        .find_map(|l| l.strip_prefix("peak ")?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no peak reported: {stderr}"))
}

/// Imports `archive` into a fresh SQLite catalog under `dir`, exports it again, and returns
/// both peaks.
fn peaks(dir: &Path, archive: &[u8]) -> (u64, u64) {
    let file = dir.join("in.jsonl");
    std::fs::write(&file, archive).expect("write");
    let catalog = common::sqlite_catalog(dir);
    let import = peak_kib(&catalog, &["import", file.to_str().expect("utf-8")]);
    let out = dir.join("out.jsonl");
    let export = peak_kib(
        &catalog,
        &["export", "--file", out.to_str().expect("utf-8")],
    );
    let last_line = |text: &[u8]| {
        let text = String::from_utf8_lossy(text).into_owned();
        text.lines().last().map(str::to_owned)
    };
    assert_eq!(
        last_line(&std::fs::read(&out).expect("read")),
        last_line(archive),
        "the export of the import ends as the archive does: the same count and digest"
    );
    (import, export)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_project_of_100k_events_moves_with_memory_that_does_not_grow_with_it() {
    let (small, large) = (archive_of(10_000).await, archive_of(100_000).await);
    let (small_dir, large_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (small_import, small_export) = peaks(small_dir.path(), &small);
    let (large_import, large_export) = peaks(large_dir.path(), &large);
    println!(
        "archive {} KiB / {} KiB: import peaks {small_import} / {large_import} KiB, export \
         peaks {small_export} / {large_export} KiB",
        small.len() / 1024,
        large.len() / 1024
    );
    assert!(
        large_import < small_import + SLACK_KIB,
        "import: {large_import} KiB for 100k events, {small_import} KiB for 10k"
    );
    assert!(
        large_export < small_export + SLACK_KIB,
        "export: {large_export} KiB for 100k events, {small_export} KiB for 10k"
    );
}
