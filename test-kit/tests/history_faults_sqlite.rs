//! Concurrent histories on one embedded SQLite file while its host processes die: K drill
//! processes run the clients of a history (`hakiri-drill history`), and a nemesis SIGKILLs one
//! at a random moment — inside a transaction or between two; the moments are drawn as points of
//! the clients' progress, so they fall inside the history however fast it runs — and starts a
//! new client (a new client id) in its place, again and again. A killed client's call in flight
//! is indeterminate. Afterwards the file opens, SQLite's integrity check passes, and the checker
//! finds every acknowledged write and nothing half-applied.
//!
//! Two histories by default; `HAKIRI_HISTORIES` runs more (the soak), `HAKIRI_HISTORY_SEED` sets
//! the first seed, `HAKIRI_HISTORY_{CLIENTS,OPS,PIPELINES}` the workload's shape.

use std::path::Path;

use hakiri_catalog_do::{SqliteCatalog, SqliteConfig};
use hakiri_contract::history::{Workload, MAX_CLIENTS};
use hakiri_contract::unique_project;
use hakiri_test_kit::faults::{sqlite_integrity_check, Fault, FaultCounts, Histories};
use hakiri_test_kit::history::{self, ClientOutput, ClientProcess};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const DRILL: &str = env!("CARGO_BIN_EXE_hakiri-drill");

/// Processes alive at any time.
const CLIENTS: u32 = 4;
/// Calls per process.
const OPS: u32 = 150;
/// Kills per history, each at a random point of the clients' progress.
const KILLS: u32 = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn histories_on_one_file_survive_processes_killed_at_random() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut histories = Histories::new("sqlite");
    for seed in Histories::seeds(2) {
        let workload = Workload::new(unique_project(), seed)
            .clients(CLIENTS)
            .ops(OPS)
            .from_env();
        // Values carry the client's number: a replacement's must be new, and below the limit.
        assert!(
            workload.clients + KILLS <= MAX_CLIENTS,
            "{} clients leave no numbers for {KILLS} replacements (at most {MAX_CLIENTS})",
            workload.clients
        );
        // A catalog file holds one project: one file per history.
        let file = dir.path().join(format!("{}.db", workload.project));
        let catalog = open(&file, &workload);
        workload.setup(&catalog).await.expect("set the workload up");
        // The processes are the file's only writers while the nemesis runs.
        drop(catalog);
        let url = format!("sqlite://{}", file.display());
        let (outputs, faults) = {
            let workload = workload.clone();
            tokio::task::spawn_blocking(move || kill_at_random(&url, &workload, seed))
                .await
                .expect("the nemesis")
        };
        sqlite_integrity_check(&file).expect("the file is whole after the kills");
        let catalog = open(&file, &workload);
        let report = history::check_catalog(&catalog, &workload, &history::merged(&outputs)).await;
        histories.add(seed, report, faults);
    }
    let injected = histories.finish();
    assert!(injected.kill > 0, "no process was killed inside a history");
}

fn open(file: &Path, workload: &Workload) -> SqliteCatalog {
    SqliteCatalog::open(file, workload.project.clone(), SqliteConfig::default())
        .unwrap_or_else(|e| panic!("open {}: {e}", file.display()))
}

/// Runs `workload`'s clients as drills on `url`, SIGKILLing a random live one [`KILLS`] times,
/// each once the clients have gone a random way into the history, and starting a client with a
/// new id in its place; returns every client's output once all have ended, and the faults.
fn kill_at_random(url: &str, workload: &Workload, seed: u64) -> (Vec<ClientOutput>, FaultCounts) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut faults = FaultCounts::default();
    let mut running =
        history::spawn_clients(Path::new(DRILL), url, workload).expect("start drills");
    let mut outputs: Vec<ClientOutput> = Vec::new();
    // Lines printed by clients that are no longer running.
    let mut done = 0;
    let points = history::fault_points(workload, KILLS as usize, &mut rng);
    // Each kill starts a client with the next new number.
    for (replacement, point) in (workload.clients..).zip(points) {
        let reached = history::wait_for_lines(&mut running, done, point).expect("a drill's status");
        let mut alive = Vec::new();
        for mut client in running {
            if client.exited().expect("a drill's status") {
                done += client.lines();
                outputs.push(finished(client, false));
            } else {
                alive.push(client);
            }
        }
        running = alive;
        if !reached || running.is_empty() {
            break;
        }
        let mut victim = running.swap_remove(rng.random_range(0..running.len()));
        victim.kill().expect("SIGKILL a drill");
        done += victim.lines();
        outputs.push(finished(victim, true));
        faults.record(Fault::Kill);
        running.push(
            history::spawn_client(Path::new(DRILL), url, workload, replacement, 0)
                .expect("start a replacement drill"),
        );
    }
    outputs.extend(running.into_iter().map(|client| finished(client, false)));
    (outputs, faults)
}

/// The output of `client`, which must have ended by itself unless it was `killed`.
fn finished(client: ClientProcess, killed: bool) -> ClientOutput {
    let output = client.finish().expect("a client's lines");
    if !killed {
        output.assert_success();
    }
    output
}

/// A replacement numbered past the limit would write another client's values: refused before
/// any process starts.
#[test]
fn a_client_numbered_past_the_limit_is_refused() {
    let workload = Workload::new(unique_project(), 0);
    let refused = history::spawn_client(
        Path::new(DRILL),
        "sqlite:///nonexistent/never-opened.db",
        &workload,
        MAX_CLIENTS,
        0,
    );
    match refused {
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{e}"),
        Ok(_) => panic!("client {MAX_CLIENTS} was started"),
    }
}

/// The drill itself refuses such a client, before it opens the catalog.
#[test]
fn the_drill_refuses_a_client_numbered_past_the_limit() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let db = dir.path().join("never.db");
    let output = std::process::Command::new(DRILL)
        .args(["history", &format!("sqlite://{}", db.display()), "refused"])
        .args(["--client", &MAX_CLIENTS.to_string(), "--clients", "2"])
        .args(["--ops", "3", "--seed", "1", "--pipelines", "1"])
        .output()
        .expect("run the drill");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "the drill ran: {stderr}");
    assert!(
        stderr.contains(&format!("client {MAX_CLIENTS}")),
        "{stderr}"
    );
    assert!(!db.exists(), "the catalog was opened");
}
