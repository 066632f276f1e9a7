//! Concurrent histories on Postgres under a nemesis: K drill processes run the clients of a
//! history (`hakiri-drill history`) while the server's side fails under them, in a random order
//! at random moments —
//! - **terminate**: `pg_terminate_backend` on the clients' sessions caught running a statement
//!   or inside a transaction (the server rolls back what was not committed);
//! - **restart**: `pg_ctl restart -m fast` (or `docker restart`);
//! - **stop**: the postmaster and all its processes stopped (SIGSTOP, or `docker pause`) for a
//!   second or two, then continued.
//!
//! Clients see errors (`Unavailable`: indeterminate), record them and carry on. The checker must
//! find every acknowledged write and nothing half-applied.
//!
//! The nemesis restarts and stops the server, so the test starts one of its own (a container or
//! `initdb`), never the shared one nor `HAKIRI_TEST_POSTGRES_URL`'s. Two histories by default;
//! `HAKIRI_HISTORIES` runs more (the soak), `HAKIRI_HISTORY_SEED` sets the first seed,
//! `HAKIRI_HISTORY_{CLIENTS,OPS,PIPELINES}` the workload's shape.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hakiri_catalog_postgres::{PostgresCatalog, PostgresConfig};
use hakiri_contract::history::Workload;
use hakiri_contract::unique_project;
use hakiri_test_kit::faults::{Fault, FaultCounts, Histories};
use hakiri_test_kit::history::{self, ClientOutput};
use hakiri_test_kit::postgres::{self, Server};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

const DRILL: &str = env!("CARGO_BIN_EXE_hakiri-drill");

/// Processes per history.
const CLIENTS: u32 = 4;
/// Calls per process.
const OPS: u32 = 400;
/// How long the nemesis looks for a busy session to end.
const BUSY_WITHIN: Duration = Duration::from_secs(2);
/// The `application_name` of the drills' sessions (the catalog's default).
const CLIENTS_APPLICATION: &str = "hakiri";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn histories_on_postgres_survive_terminated_sessions_restarts_and_stalls() {
    let server = postgres::start_owned_migrated().await;
    let server = Arc::new(server);
    let url = server.url().to_owned();
    let pool = PostgresConfig::default()
        .max_connections(2)
        .application_name("history-checker")
        // Its connections outlive the restarts: the final read must not fail on a broken one.
        .test_before_acquire(true)
        .connect(&url)
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"));
    let mut histories = Histories::new("postgres");
    for seed in Histories::seeds(2) {
        let workload = Workload::new(unique_project(), seed)
            .clients(CLIENTS)
            .ops(OPS)
            .from_env();
        let catalog = PostgresCatalog::new(pool.clone(), workload.project.clone());
        workload.setup(&catalog).await.expect("set the workload up");
        let (outputs, faults) = {
            let (server, url, workload) = (server.clone(), url.clone(), workload.clone());
            let runtime = tokio::runtime::Handle::current();
            tokio::task::spawn_blocking(move || nemesis(&server, &url, &workload, seed, &runtime))
                .await
                .expect("the nemesis")
        };
        let report = history::check_catalog(&catalog, &workload, &history::merged(&outputs)).await;
        histories.add(seed, report, faults);
    }
    let injected = histories.finish();
    assert!(
        injected.terminate > 0 && injected.restart > 0 && injected.stop > 0,
        "every kind of fault landed inside a history: {injected}"
    );
}

/// What the nemesis does to the server.
#[derive(Debug, Clone, Copy)]
enum Blow {
    Terminate,
    Restart,
    Stop,
}

/// Runs `workload`'s clients as drills on `url` while injecting one fault of each kind, in a
/// random order, each once the clients have gone a random way into the history, as long as a
/// client still runs; returns every client's output and the faults injected.
fn nemesis(
    server: &Server,
    url: &str,
    workload: &Workload,
    seed: u64,
    runtime: &tokio::runtime::Handle,
) -> (Vec<ClientOutput>, FaultCounts) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut blows = [Blow::Terminate, Blow::Restart, Blow::Stop];
    blows.shuffle(&mut rng);
    let mut faults = FaultCounts::default();
    let mut clients =
        history::spawn_clients(Path::new(DRILL), url, workload).expect("start drills");
    let points = history::fault_points(workload, blows.len(), &mut rng);
    for (blow, point) in blows.into_iter().zip(points) {
        if !history::wait_for_lines(&mut clients, 0, point).expect("a drill's status") {
            break;
        }
        match blow {
            Blow::Terminate => {
                let ended = runtime
                    .block_on(postgres::terminate_busy_sessions(
                        url,
                        CLIENTS_APPLICATION,
                        BUSY_WITHIN,
                    ))
                    .expect("terminate the clients' sessions");
                faults.add(Fault::Terminate, ended);
            }
            Blow::Restart => {
                server.restart().expect("restart the server");
                faults.record(Fault::Restart);
            }
            Blow::Stop => {
                let pause = Duration::from_millis(rng.random_range(1000..2000));
                server.stall(pause).expect("stall the server");
                faults.record(Fault::Stop);
            }
        }
    }
    let outputs = history::collect(clients).expect("every drill's lines");
    for output in &outputs {
        output.assert_success();
    }
    (outputs, faults)
}
