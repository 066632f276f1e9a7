//! Several OS processes, each with its own connections, on one catalog: never two live holders,
//! no lost update, exact totals — on an embedded SQLite file (an operator CLI beside a running
//! reconciler) and on Postgres (reconcilers on several machines). And a zombie process paused past
//! its lease's expiry is fenced when it wakes up.
//!
//! `HAKIRI_RACE_SECONDS` sets how long the Postgres race runs (default 30).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use hakiri_catalog_do::{SqliteCatalog, SqliteConfig};
use hakiri_catalog_postgres::PostgresCatalog;
use hakiri_core::{
    Catalog, CatalogExt, EventKind, Limit, PipelineId, ProjectId, RunQuery, RunStatus, StreamName,
};
use hakiri_test_kit::postgres;
use serde_json::json;

const DRILL: &str = env!("CARGO_BIN_EXE_hakiri-drill");

fn unique_project(name: &str) -> ProjectId {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    ProjectId::new(format!("{name}-{}-{nanos:x}", std::process::id())).unwrap()
}

async fn postgres_catalog(project: &ProjectId) -> PostgresCatalog {
    PostgresCatalog::new(postgres::shared_pool().await, project.clone())
}

/// How long each racing process goes on.
#[derive(Clone, Copy)]
enum Length {
    Rounds(u64),
    Seconds(u64),
}

/// Starts `processes` drills racing on `pipelines` pipelines of `project` at `url` and returns
/// the rounds they report in total.
async fn race(
    url: &str,
    project: &ProjectId,
    processes: usize,
    pipelines: usize,
    length: Length,
) -> u64 {
    let length = match length {
        Length::Rounds(n) => ["--rounds".to_owned(), n.to_string()],
        Length::Seconds(n) => ["--seconds".to_owned(), n.to_string()],
    };
    let children: Vec<_> = (0..processes)
        .map(|i| {
            Command::new(DRILL)
                .args(["race", url, project.as_str(), &format!("process-{i}")])
                .args(["--pipelines", &pipelines.to_string()])
                .args(&length)
                .stdout(Stdio::piped())
                .spawn()
                .expect("start a drill process")
        })
        .collect();
    let mut reported = 0u64;
    for child in children {
        let output = tokio::task::spawn_blocking(move || child.wait_with_output())
            .await
            .unwrap()
            .unwrap();
        assert!(
            output.status.success(),
            "a racing process failed: {}",
            output.status
        );
        let text = String::from_utf8_lossy(&output.stdout);
        let rounds: u64 = text
            .trim()
            .strip_prefix("rounds ")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("unexpected drill output {text:?}"));
        assert!(rounds > 0, "every process got turns");
        reported += rounds;
    }
    reported
}

/// What a race must leave: on each pipeline one version and one succeeded run per increment,
/// the whole history, runs one after another taken by at least `holders` processes, a total equal
/// to the rounds the processes reported, and every lease released.
async fn assert_raced(catalog: &dyn Catalog, pipelines: usize, holders: usize, reported: u64) {
    let stream = StreamName::new("count").unwrap();
    let mut total = 0;
    for i in 0..pipelines {
        let pipeline = PipelineId::new(format!("p{i}")).unwrap();
        let cursor = catalog
            .get_cursor(&pipeline, &stream)
            .await
            .unwrap()
            .expect("every pipeline ran");
        let count = cursor.value.as_json().as_u64().unwrap();
        assert_eq!(
            cursor.version, count,
            "every increment is its own version: no lost update"
        );
        let history = catalog
            .cursor_history(&pipeline, &stream, None, Limit::MAX)
            .await
            .unwrap();
        if count <= u64::from(Limit::MAX.get()) {
            let values: Vec<u64> = history
                .items
                .iter()
                .map(|e| e.value.as_json().as_u64().unwrap())
                .collect();
            assert_eq!(values, (1..=count).rev().collect::<Vec<_>>());
        }
        total += count;

        let runs = catalog
            .all_runs(&RunQuery::all().pipeline(pipeline.clone()).limit(Limit::MAX))
            .await
            .unwrap();
        assert_eq!(runs.len() as u64, count, "one run per increment");
        assert!(runs.iter().all(|r| r.status == RunStatus::Succeeded));
        // Runs of one pipeline never overlap, and each ran under its own, higher epoch.
        let took_turns = hakiri_contract::assert_serial_runs(&pipeline, &runs);
        assert!(
            took_turns.len() >= holders,
            "processes took turns on {pipeline}: {took_turns:?}"
        );
    }
    assert_eq!(total, reported, "exact total across processes");
    let statuses = catalog.all_statuses().await.unwrap();
    assert!(
        statuses
            .items
            .iter()
            .all(|s| s.lease.as_ref().is_some_and(|l| l.holder.is_none())),
        "every lease was released"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_racing_on_one_sqlite_file_never_share_a_pipeline() {
    const PROCESSES: usize = 3;
    const PIPELINES: usize = 4;
    const ROUNDS: u64 = 60;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("race.db");
    let project = ProjectId::new("race").unwrap();
    let url = format!("sqlite://{}", db.display());
    let reported = race(&url, &project, PROCESSES, PIPELINES, Length::Rounds(ROUNDS)).await;
    assert_eq!(reported, PROCESSES as u64 * ROUNDS);
    let catalog = SqliteCatalog::open(&db, project, SqliteConfig::default()).unwrap();
    // Each process cycles through every pipeline, so each one ran on each pipeline.
    assert_raced(&catalog, PIPELINES, PROCESSES, reported).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_racing_on_postgres_never_share_a_pipeline() {
    const PROCESSES: usize = 4;
    const PIPELINES: usize = 3;
    let seconds: u64 = std::env::var("HAKIRI_RACE_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let url = postgres::shared().url().to_owned();
    let project = unique_project("race");
    let reported = race(
        &url,
        &project,
        PROCESSES,
        PIPELINES,
        Length::Seconds(seconds),
    )
    .await;
    assert_raced(&postgres_catalog(&project).await, PIPELINES, 2, reported).await;
    eprintln!(
        "race: {reported} rounds by {PROCESSES} processes on {PIPELINES} pipelines in {seconds} s"
    );
}

fn read_line(reader: &mut impl BufRead) -> String {
    let mut line = String::new();
    reader.read_line(&mut line).expect("read from the drill");
    line.trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zombie_process_paused_past_expiry_is_fenced_when_it_wakes() {
    let url = postgres::shared().url().to_owned();
    let project = unique_project("zombie");
    let ttl = Duration::from_millis(800);
    let mut zombie = Command::new(DRILL)
        .args(["zombie", &url, project.as_str(), "p", "--ttl-ms"])
        .arg(ttl.as_millis().to_string())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the zombie");
    let mut out = BufReader::new(zombie.stdout.take().unwrap());
    let holding = read_line(&mut out);
    assert!(holding.starts_with("holding "), "{holding}");
    // Let it write a few checkpoints, then freeze it mid-loop.
    let mut acked = 0u64;
    while acked < 3 {
        let line = read_line(&mut out);
        acked = line
            .strip_prefix("ack ")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("unexpected zombie output {line:?}"));
    }
    let pid = zombie.id().to_string();
    assert!(Command::new("kill")
        .args(["-STOP", &pid])
        .status()
        .unwrap()
        .success());
    tokio::time::sleep(ttl + Duration::from_millis(300)).await;

    let successor = Command::new(DRILL)
        .args(["take-over", &url, project.as_str(), "p"])
        .output()
        .expect("run the successor");
    assert!(
        successor.status.success(),
        "the successor failed: {}",
        String::from_utf8_lossy(&successor.stderr)
    );
    let took = String::from_utf8_lossy(&successor.stdout).trim().to_owned();
    let new_epoch: u64 = took
        .strip_prefix("took ")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected successor output {took:?}"));

    assert!(Command::new("kill")
        .args(["-CONT", &pid])
        .status()
        .unwrap()
        .success());
    // The zombie goes on with its loop; every line it prints from here must be its fencing.
    let mut rest = Vec::new();
    loop {
        let line = read_line(&mut out);
        if line.is_empty() {
            break;
        }
        rest.push(line);
    }
    let status = tokio::task::spawn_blocking(move || zombie.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "the zombie failed: {status}");
    let last = rest.last().cloned().unwrap_or_default();
    assert!(
        last.starts_with("fenced "),
        "the zombie's next write is fenced: {rest:?}"
    );
    // Writes acknowledged after the freeze would be the zombie writing under a stale lease: its
    // only acknowledged writes are those in flight when it froze (at most one).
    assert!(
        rest.len() <= 2,
        "the zombie kept writing after expiry: {rest:?}"
    );

    let catalog = postgres_catalog(&project).await;
    let pipeline = PipelineId::new("p").unwrap();
    let stream = StreamName::new("s").unwrap();
    let cursor = catalog
        .get_cursor(&pipeline, &stream)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cursor.value.as_json(), &json!({"writer": "successor"}));
    assert_eq!(cursor.epoch.map(|e| e.get()), Some(new_epoch));
    let history = catalog
        .cursor_history(&pipeline, &stream, None, Limit::MAX)
        .await
        .unwrap();
    assert_eq!(
        history.items[0].value.as_json(),
        &json!({"writer": "successor"}),
        "nothing was written after the successor"
    );
    let runs = catalog
        .all_runs(&RunQuery::all().pipeline(pipeline.clone()).limit(Limit::MAX))
        .await
        .unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(
        runs[1].status,
        RunStatus::Abandoned,
        "the zombie's run was abandoned"
    );
    assert_eq!(runs[0].status, RunStatus::Succeeded);
    let events = catalog.events(0, Limit::MAX).await.unwrap();
    assert!(events.iter().any(|e| matches!(
        e.kind,
        EventKind::RunFinished {
            status: RunStatus::Abandoned,
            ..
        }
    )));
}
