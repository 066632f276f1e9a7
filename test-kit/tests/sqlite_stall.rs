//! A process stopped inside a transaction on the catalog file (SIGSTOP, as a debugger or a frozen
//! VM would stop it) never blocks another process's reads, and blocks its writes only for their
//! busy timeout, after which they fail `Unavailable` and name the cause (ADR 0015). Once the
//! stopped process is gone, a takeover works at once.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hakiri_catalog_do::{SqliteCatalog, SqliteConfig};
use hakiri_contract::assert_operator_reads;
use hakiri_core::{
    Actor, BeginRun, Catalog, Error, HolderId, Limit, OperatorName, PipelineId, ProjectId, Reason,
    RunQuery, RunStatus, Trigger,
};
use hakiri_test_kit::fixtures::running_with_a_checkpoint;

/// Far longer than any read or open takes, far shorter than a stalled process's stall.
const BOUND: Duration = Duration::from_secs(5);
const BUSY: Duration = Duration::from_secs(1);

fn project() -> ProjectId {
    ProjectId::new("stall").unwrap()
}

fn open(db: &std::path::Path) -> SqliteCatalog {
    SqliteCatalog::open(db, project(), SqliteConfig::default().busy_timeout(BUSY))
        .expect("opening a catalog must not wait for a stalled process")
}

/// A process that opened a transaction of `kind` on `db` and was then stopped.
struct Stopped(Child);

impl Stopped {
    fn start(kind: &str, db: &std::path::Path) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_hakiri-drill"))
            .args(["hold", kind, db.to_str().unwrap()])
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the drill");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(
            line.trim(),
            "holding",
            "the drill did not open its transaction"
        );
        signal(&child, "-STOP");
        Stopped(child)
    }

    fn kill(mut self) {
        signal(&self.0, "-KILL");
        self.0.wait().unwrap();
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = self.0.kill();
    }
}

fn signal(child: &Child, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill {signal} failed");
}

/// What an operator looks at: each must answer, within the bound.
async fn operator_reads(catalog: &SqliteCatalog, pipeline: &PipelineId) {
    assert_operator_reads(catalog, pipeline, BOUND).await;
    let events = catalog.events(0, Limit::new(50).unwrap()).await.unwrap();
    assert!(!events.is_empty());
}

/// A project with a run in progress under a live lease, and some history.
async fn running_project(db: &std::path::Path) -> PipelineId {
    running_with_a_checkpoint(&open(db), Duration::from_secs(600)).await
}

#[tokio::test]
async fn a_process_stopped_inside_a_write_transaction_blocks_no_read() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("stall.db");
    let pipeline = running_project(&db).await;
    let stopped = Stopped::start("write", &db);

    let started = Instant::now();
    let operator = open(&db);
    operator_reads(&operator, &pipeline).await;
    assert!(started.elapsed() < BOUND);

    // A write must wait for the lock the stopped process holds: it gives up after the busy
    // timeout and says why, changing nothing.
    let by = Actor::Operator(OperatorName::new("oncall").unwrap());
    let reason = Reason::new("the worker is stuck").unwrap();
    let holder = HolderId::new("operator").unwrap();
    let takeover =
        || operator.force_acquire(&pipeline, &holder, Duration::from_secs(60), &by, &reason);
    let started = Instant::now();
    match takeover().await {
        Err(Error::Unavailable(message)) => {
            assert!(message.contains("lock"), "{message}")
        }
        other => panic!("a write under a stopped writer's lock answered {other:?}"),
    }
    assert!(started.elapsed() < BOUND, "took {:?}", started.elapsed());
    operator_reads(&operator, &pipeline).await;

    // Once the stopped process is gone (its uncommitted transaction with it), the takeover works.
    stopped.kill();
    let lease = takeover()
        .await
        .expect("takeover after the stalled process died");
    assert_eq!(lease.holder.as_str(), "operator");
    let runs = operator.list_runs(&RunQuery::all()).await.unwrap();
    assert_eq!(runs.items[0].status, RunStatus::Abandoned);
}

#[tokio::test]
async fn a_process_stopped_inside_a_read_transaction_blocks_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("stall.db");
    let pipeline = running_project(&db).await;
    let stopped = Stopped::start("read", &db);

    let started = Instant::now();
    let operator = open(&db);
    operator_reads(&operator, &pipeline).await;
    let lease = operator
        .force_acquire(
            &pipeline,
            &HolderId::new("operator").unwrap(),
            Duration::from_secs(60),
            &Actor::Operator(OperatorName::new("oncall").unwrap()),
            &Reason::new("the worker is stuck").unwrap(),
        )
        .await
        .expect("a stopped reader blocks no writer");
    let run = operator
        .begin_run(&lease, BeginRun::new(Trigger::Manual))
        .await
        .unwrap();
    operator
        .finish_run(&lease, run.id, hakiri_core::FinishRun::succeeded())
        .await
        .unwrap();
    assert!(started.elapsed() < BOUND, "took {:?}", started.elapsed());
    stopped.kill();
}
