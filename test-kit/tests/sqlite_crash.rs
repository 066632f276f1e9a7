//! Crash recovery: a process looping begin → checkpoint → finish is killed with SIGKILL at random
//! moments, again and again. After each kill the file reopens; every acknowledged finish is whole
//! (status, stats, final cursors, schema decision), no finish is torn, and SQLite's integrity
//! check passes.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use hakiri_catalog_do::{SqliteCatalog, SqliteConfig};
use hakiri_core::{
    Catalog, Limit, PipelineId, ProjectId, Run, RunId, RunQuery, RunStatus, StreamName,
};
use hakiri_test_kit::faults::sqlite_integrity_check;
use serde_json::json;

const KILLS: usize = 50;

/// A random delay between 20 and 300 ms, without a random-number dependency.
fn random_delay() -> Duration {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u8(0);
    Duration::from_millis(20 + hasher.finish() % 280)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_never_tears_a_finish() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("crash.db");
    let mut acknowledged: Vec<(RunId, u64, u64)> = Vec::new();
    for kill in 0..KILLS {
        let mut child = Command::new(env!("CARGO_BIN_EXE_hakiri-drill"))
            .args(["crash-loop", &format!("sqlite://{}", db.display()), "crash"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the drill process");
        std::thread::sleep(random_delay());
        child.kill().expect("SIGKILL the drill process");
        let _ = child.wait();
        let stdout = child.stdout.take().unwrap();
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            let parts: Vec<&str> = line.split_whitespace().collect();
            if let ["finished", run, a, b] = parts.as_slice() {
                acknowledged.push((run.parse().unwrap(), a.parse().unwrap(), b.parse().unwrap()));
            }
        }
        sqlite_integrity_check(&db).unwrap_or_else(|e| panic!("after kill {kill}: {e}"));
        verify(&db, &acknowledged, kill).await;
    }
    eprintln!(
        "{} acknowledged finishes over {KILLS} SIGKILLs, all whole",
        acknowledged.len()
    );
    assert!(
        acknowledged.len() >= KILLS / 2,
        "the drill finished only {} runs in {KILLS} lives",
        acknowledged.len()
    );
}

async fn verify(db: &Path, acknowledged: &[(RunId, u64, u64)], kill: usize) {
    let catalog = SqliteCatalog::open(
        db,
        ProjectId::new("crash").unwrap(),
        SqliteConfig::default(),
    )
    .unwrap();
    let pipeline = PipelineId::new("p").unwrap();
    let (a, b) = (StreamName::new("a").unwrap(), StreamName::new("b").unwrap());
    for (run_id, end_a, end_b) in acknowledged {
        let run = catalog
            .get_run(*run_id)
            .await
            .unwrap_or_else(|e| panic!("after kill {kill}: acknowledged run {run_id} lost: {e}"));
        assert_eq!(
            run.status,
            RunStatus::Succeeded,
            "after kill {kill}: run {run_id}"
        );
        assert_eq!(run.cursors_at_end[&a].as_json(), &json!(end_a));
        assert_eq!(run.cursors_at_end[&b].as_json(), &json!(end_b));
    }
    let versions = catalog
        .list_schema_versions(&pipeline, &a)
        .await
        .unwrap_or_default();
    let mut before = None;
    loop {
        let mut query = RunQuery::all().pipeline(pipeline.clone()).limit(Limit::MAX);
        query.before = before;
        let page = catalog.list_runs(&query).await.unwrap();
        for run in &page.items {
            check_whole(run, &versions, kill);
        }
        match page.next {
            Some(next) => before = Some(next),
            None => break,
        }
    }
}

/// A finished run has everything its finish wrote; an unfinished one has none of it.
fn check_whole(run: &Run, versions: &[hakiri_core::SchemaVersion], kill: usize) {
    let a = StreamName::new("a").unwrap();
    let has_version = versions.iter().any(|v| v.run == Some(run.id));
    match run.status {
        RunStatus::Succeeded => {
            // Every finish reports one more column than the last: an accepted version per run.
            assert!(
                has_version || versions.len() > 500,
                "after kill {kill}: finished run {} has no schema version",
                run.id
            );
            assert!(run.finished_at.is_some());
            assert_eq!(
                run.stats.get(&a).map(|s| s.records),
                Some(4),
                "after kill {kill}: stats of {}",
                run.id
            );
            assert!(
                run.cursors_at_end
                    .contains_key(&StreamName::new("b").unwrap()),
                "after kill {kill}: final cursors of {}",
                run.id
            );
            let start_a = run
                .cursors_at_start
                .get(&a)
                .and_then(|v| v.as_json().as_u64())
                .unwrap_or(0);
            assert_eq!(
                run.cursors_at_end[&a].as_json(),
                &json!(start_a + 4),
                "after kill {kill}: {}",
                run.id
            );
        }
        RunStatus::Running | RunStatus::Abandoned => {
            assert!(
                !has_version,
                "after kill {kill}: unfinished run {} has a schema version from a finish",
                run.id
            );
            assert!(
                run.stats.is_empty(),
                "after kill {kill}: unfinished run {} has stats",
                run.id
            );
        }
        other => panic!(
            "after kill {kill}: unexpected status {other} for {}",
            run.id
        ),
    }
}
