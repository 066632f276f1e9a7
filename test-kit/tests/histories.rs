//! Concurrent histories whose clients are separate OS processes (`hakiri-drill history`), each
//! with its own connections: K processes on one SQLite file, K on one Postgres project. Their
//! JSON lines are merged into one history and checked for linearizable cursors and leases that
//! never overlap (`hakiri_contract::history`).
//!
//! `HAKIRI_HISTORIES` sets how many histories each test runs (default 2), `HAKIRI_HISTORY_SEED`
//! the first seed, `HAKIRI_HISTORY_{CLIENTS,OPS,PIPELINES}` the workload's shape.

use std::path::Path;

use hakiri_catalog_do::{SqliteCatalog, SqliteConfig};
use hakiri_catalog_postgres::{PostgresCatalog, PostgresConfig};
use hakiri_contract::history::{env_number, Report, Workload};
use hakiri_contract::unique_project;
use hakiri_core::Catalog;
use hakiri_test_kit::{history, postgres};

const DRILL: &str = env!("CARGO_BIN_EXE_hakiri-drill");

/// Processes per history.
const CLIENTS: u32 = 4;
/// Calls per process: more than in process, so that the processes overlap for longer.
const OPS: u32 = 100;

/// Runs one history of `CLIENTS` drill processes on `url`, the pipelines set up and the final
/// state read through `catalog`.
async fn one_history(catalog: &dyn Catalog, url: &str, workload: &Workload) -> Report {
    workload.setup(catalog).await.expect("set the workload up");
    let clients = history::spawn_clients(Path::new(DRILL), url, workload).expect("start drills");
    let outputs = tokio::task::spawn_blocking(move || history::collect(clients))
        .await
        .expect("collect the drills")
        .expect("every drill's lines");
    for output in &outputs {
        output.assert_success();
    }
    history::check_catalog(catalog, workload, &history::merged(&outputs)).await
}

/// Runs `HAKIRI_HISTORIES` histories, each on the catalog URL and catalog `open` gives for its
/// workload, and fails on any broken rule.
async fn histories<F, Fut>(backend: &str, open: F)
where
    F: Fn(Workload) -> Fut,
    Fut: std::future::Future<Output = (String, Box<dyn Catalog>)>,
{
    let n = env_number("HAKIRI_HISTORIES", 2);
    let first = env_number("HAKIRI_HISTORY_SEED", 0);
    let started = std::time::Instant::now();
    let mut total = Report::default();
    for seed in first..first + n {
        let workload = Workload::new(unique_project(), seed)
            .clients(CLIENTS)
            .ops(OPS)
            .from_env();
        let (url, catalog) = open(workload.clone()).await;
        total.merge(one_history(catalog.as_ref(), &url, &workload).await);
    }
    eprintln!("{}", total.soak_line(started.elapsed()));
    eprintln!("{backend} processes: {total}");
    assert!(
        total.is_ok(),
        "{backend}, seeds {first}..{}:\n{total}",
        first + n
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_processes_make_a_linearizable_history() {
    // A SQLite catalog file holds one project: one file per history.
    let dir = tempfile::tempdir().expect("a temporary directory");
    histories("sqlite", |workload| {
        let file = dir.path().join(format!("{}.db", workload.project));
        async move {
            let catalog = SqliteCatalog::open(&file, workload.project, SqliteConfig::default())
                .expect("open the catalog file");
            let url = format!("sqlite://{}", file.display());
            (url, Box::new(catalog) as Box<dyn Catalog>)
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_processes_make_a_linearizable_history() {
    let url = postgres::shared().url();
    histories("postgres", |workload| async move {
        let pool = PostgresConfig::default()
            .max_connections(2)
            .connect(url)
            .await
            .unwrap_or_else(|e| panic!("connect to {url}: {e}. {}", postgres::HOW_TO_GET_ONE));
        let catalog = PostgresCatalog::new(pool, workload.project);
        (url.to_owned(), Box::new(catalog) as Box<dyn Catalog>)
    })
    .await;
}

/// `workload` set up on a new SQLite file, and its drill processes started on it; the directory
/// holding the file lives as long as the returned guard.
async fn drills_on_a_file(
    workload: &Workload,
) -> (
    tempfile::TempDir,
    SqliteCatalog,
    Vec<history::ClientProcess>,
) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let file = dir.path().join("catalog.db");
    let catalog = SqliteCatalog::open(&file, workload.project.clone(), SqliteConfig::default())
        .expect("open the catalog file");
    workload.setup(&catalog).await.expect("set the workload up");
    let url = format!("sqlite://{}", file.display());
    let clients = history::spawn_clients(Path::new(DRILL), &url, workload).expect("start drills");
    (dir, catalog, clients)
}

/// The pieces a fault test uses: a client killed mid-history (SIGKILL) leaves the lines it
/// printed, a torn last one dropped; its last call may stay unanswered (indeterminate), and the
/// merged history still checks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_client_leaves_a_history_that_checks() {
    let workload = Workload::new(unique_project(), 7).clients(3).ops(100_000);
    let (_dir, catalog, mut clients) = drills_on_a_file(&workload).await;
    // Until every client has made calls for a while.
    tokio::time::sleep(history::START_DELAY + std::time::Duration::from_millis(500)).await;
    for client in &mut clients {
        client.kill().expect("kill a drill");
    }
    let outputs = tokio::task::spawn_blocking(move || history::collect(clients))
        .await
        .expect("collect the drills")
        .expect("every drill's lines");
    for output in &outputs {
        assert_eq!(output.status.code(), None, "killed by a signal");
        assert!(
            !output.events.is_empty(),
            "client {} recorded calls",
            output.client
        );
    }
    let report = history::check_catalog(&catalog, &workload, &history::merged(&outputs)).await;
    eprintln!("killed clients: {report}");
    assert!(report.is_ok(), "{report}");
    assert!(report.acknowledged > 0);
}

/// A drill whose handle is dropped before it finishes (a test that panicked, say) does not
/// outlive it: the process is killed and reaped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_client_is_killed_and_reaped() {
    let workload = Workload::new(unique_project(), 11)
        .clients(1)
        .ops(1_000_000);
    let (_dir, _catalog, mut clients) = drills_on_a_file(&workload).await;
    let mut client = clients.pop().expect("one client");
    let proc_dir = Path::new("/proc").join(client.pid().to_string());
    assert!(
        !client.exited().expect("its status"),
        "a million calls take a while"
    );
    assert!(proc_dir.exists());

    drop(client);

    // Reaped, not a zombie: the process is gone from /proc.
    assert!(!proc_dir.exists(), "{} is still there", proc_dir.display());
}
