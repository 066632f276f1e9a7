//! Concurrent histories whose clients are OS processes: each client of a [`Workload`] runs as
//! `hakiri-drill history`, printing its events as JSON lines; the lines of every process are
//! merged into one history and checked with `hakiri_contract::history::check`.
//!
//! The pieces are separate so a test can act between them — kill a process (its last call stays
//! indeterminate), restart the database — and still check what was recorded:
//!
//! ```text
//! workload.setup(&catalog).await?;                                  // its pipelines
//! let clients = history::spawn_clients(DRILL, &url, &workload)?;     // start K drills
//! // … SIGKILL some (`ClientProcess::kill`, or signal `ClientProcess::pid`), stop the server, …
//! let outputs = history::collect(clients)?;                          // lines of live and dead
//! let events = history::merged(&outputs);
//! let report = history::check_catalog(&catalog, &workload, &events).await;
//! ```
//!
//! `collect` blocks until every process ends: call it from `spawn_blocking` in async tests.

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use hakiri_contract::history::{
    check, check_client, now_ns, parse_lines, read_final_state, Event, Report, Workload,
};
use hakiri_core::Catalog;

/// How long after [`spawn_clients`] the clients begin.
pub const START_DELAY: Duration = Duration::from_millis(300);

/// One client of a history running as a drill process, its stdout read as it goes.
pub struct ClientProcess {
    /// The client's number in the workload.
    pub client: u32,
    child: Child,
    /// Reads the whole stdout, so a full pipe never blocks the drill.
    stdout: Option<JoinHandle<std::io::Result<String>>>,
    /// Lines read so far: how far the client has gone (two per call).
    lines: Arc<AtomicU64>,
}

/// What a client process left: its events, how it ended, what it said on stderr.
#[derive(Debug)]
pub struct ClientOutput {
    /// The client's number.
    pub client: u32,
    /// Its recorded events (a line torn by a kill is dropped).
    pub events: Vec<Event>,
    /// How it exited (killed, or the exit code).
    pub status: ExitStatus,
}

impl ClientOutput {
    /// Panics naming the client unless its process exited with success: a client records
    /// every catalog error and goes on, so anything else is a bug in it or a kill.
    pub fn assert_success(&self) {
        assert!(
            self.status.success(),
            "client {} ended with {}",
            self.client,
            self.status
        );
    }
}

impl ClientProcess {
    /// The process id, to signal it (SIGKILL, SIGSTOP…).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// How many lines the client has printed so far (an invoke and a complete per call).
    pub fn lines(&self) -> u64 {
        self.lines.load(Ordering::Relaxed)
    }

    /// Whether the process has ended.
    ///
    /// # Errors
    /// When its status cannot be read.
    pub fn exited(&mut self) -> std::io::Result<bool> {
        Ok(self.child.try_wait()?.is_some())
    }

    /// Kills the process (SIGKILL) if it still runs.
    ///
    /// # Errors
    /// When the signal cannot be sent to a process still running.
    pub fn kill(&mut self) -> std::io::Result<()> {
        match self.child.try_wait()? {
            Some(_) => Ok(()),
            None => self.child.kill(),
        }
    }

    /// Waits for the process to end (kill it first to stop it early) and parses its lines.
    ///
    /// # Errors
    /// When waiting fails, stdout cannot be read, or a complete line is not an event.
    pub fn finish(mut self) -> Result<ClientOutput, String> {
        let client = self.client;
        let status = self
            .child
            .wait()
            .map_err(|e| format!("waiting for client {client}: {e}"))?;
        let text = match self.stdout.take().map(JoinHandle::join) {
            Some(Ok(Ok(text))) => text,
            Some(Ok(Err(e))) => return Err(format!("reading client {client}'s stdout: {e}")),
            Some(Err(_)) => return Err(format!("the reader of client {client} panicked")),
            None => String::new(),
        };
        let events = parse_lines(&text).map_err(|e| format!("client {client}: {e}"))?;
        Ok(ClientOutput {
            client,
            events,
            status,
        })
    }
}

/// A client still running when its handle goes — dropped unfinished, as when a test panics
/// mid-history — is killed and reaped, so that no drill outlives its test and keeps writing to a
/// catalog the test is tearing down.
impl Drop for ClientProcess {
    fn drop(&mut self) {
        if self.kill().is_ok() {
            let _ = self.child.wait();
        }
    }
}

/// Starts one `hakiri-drill history` process (the binary at `drill`) per client of `workload`,
/// on the catalog at `url` (`sqlite://FILE` or `postgres://…`). The clients make their first
/// call together, [`START_DELAY`] from now (or as soon as they are up, if later), so that their
/// calls overlap however long each process takes to start.
///
/// # Errors
/// When a process cannot be started (those already started are killed).
pub fn spawn_clients(
    drill: &Path,
    url: &str,
    workload: &Workload,
) -> std::io::Result<Vec<ClientProcess>> {
    let start_at = now_ns() + u64::try_from(START_DELAY.as_nanos()).unwrap_or(u64::MAX);
    let mut started: Vec<ClientProcess> = Vec::new();
    for client in 0..workload.clients {
        match spawn_client(drill, url, workload, client, start_at) {
            Ok(process) => started.push(process),
            Err(e) => {
                for mut process in started {
                    let _ = process.kill();
                    let _ = process.finish();
                }
                return Err(e);
            }
        }
    }
    Ok(started)
}

/// Starts client `client` of `workload` as a `hakiri-drill history` process, making its first
/// call once CLOCK_MONOTONIC reaches `start_at_ns` (0: at once). A client number past
/// `workload.clients` is a client that joins late — one started in place of a killed one.
///
/// # Errors
/// `InvalidInput` for a client number [`check_client`] refuses, before any process starts; when
/// the process cannot be started.
pub fn spawn_client(
    drill: &Path,
    url: &str,
    workload: &Workload,
    client: u32,
    start_at_ns: u64,
) -> std::io::Result<ClientProcess> {
    check_client(client)?;
    let mut child = Command::new(drill)
        .args(["history", url, workload.project.as_str()])
        .args(["--client", &client.to_string()])
        .args(["--clients", &workload.clients.to_string()])
        .args(["--ops", &workload.ops.to_string()])
        .args(["--seed", &workload.seed.to_string()])
        .args(["--pipelines", &workload.pipelines.len().to_string()])
        .args(["--start-at-ns", &start_at_ns.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()?;
    let lines = Arc::new(AtomicU64::new(0));
    let stdout = child.stdout.take().map(|mut out| {
        let lines = lines.clone();
        std::thread::spawn(move || {
            // Lossy: a kill can cut a line inside a character, and that torn last line is
            // dropped by `parse_lines` anyway; strict UTF-8 would lose the whole output.
            let mut bytes = Vec::new();
            let mut chunk = [0u8; 8192];
            loop {
                let read = out.read(&mut chunk)?;
                if read == 0 {
                    break;
                }
                let new = chunk[..read].iter().filter(|&&b| b == b'\n').count();
                lines.fetch_add(new as u64, Ordering::Relaxed);
                bytes.extend_from_slice(&chunk[..read]);
            }
            Ok(String::from_utf8_lossy(&bytes).into_owned())
        })
    });
    Ok(ClientProcess {
        client,
        child,
        stdout,
        lines,
    })
}

/// The lines a history's clients print if none is killed: an invoke and a complete per call.
pub fn expected_lines(workload: &Workload) -> u64 {
    u64::from(workload.clients) * u64::from(workload.ops) * 2
}

/// Moments inside a history for `faults` faults, drawn by `rng`: line counts, in order, between
/// 5% and 90% of [`expected_lines`]. A nemesis that waits for each ([`wait_for_lines`]) strikes
/// while calls are under way however fast the machine runs them.
pub fn fault_points(workload: &Workload, faults: usize, rng: &mut impl rand::Rng) -> Vec<u64> {
    let total = expected_lines(workload).max(20);
    let mut points: Vec<u64> = (0..faults)
        .map(|_| rng.random_range(total / 20..total * 9 / 10))
        .collect();
    points.sort_unstable();
    points
}

/// Waits until `done` (lines of clients no longer in `clients`) plus the lines of `clients`
/// reach `lines`: `true` then, `false` if every client ended first.
///
/// # Errors
/// When a client's status cannot be read.
pub fn wait_for_lines(
    clients: &mut [ClientProcess],
    done: u64,
    lines: u64,
) -> std::io::Result<bool> {
    loop {
        if done + clients.iter().map(ClientProcess::lines).sum::<u64>() >= lines {
            return Ok(true);
        }
        let mut ended = true;
        for client in clients.iter_mut() {
            ended &= client.exited()?;
        }
        if ended {
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Waits for every client process and merges their events into one history. A process that
/// was killed or failed still gives the lines it printed.
///
/// # Errors
/// As [`ClientProcess::finish`].
pub fn collect(clients: Vec<ClientProcess>) -> Result<Vec<ClientOutput>, String> {
    clients.into_iter().map(ClientProcess::finish).collect()
}

/// The events of every output, as one history.
pub fn merged(outputs: &[ClientOutput]) -> Vec<Event> {
    outputs.iter().flat_map(|o| o.events.clone()).collect()
}

/// Reads `workload`'s final state from `catalog` and checks `events` against it. A final state
/// that cannot be read is reported as a malformed history.
pub async fn check_catalog(catalog: &dyn Catalog, workload: &Workload, events: &[Event]) -> Report {
    match read_final_state(catalog, workload).await {
        Ok(state) => check(events, &state),
        Err(e) => Report {
            histories: 1,
            broken_histories: 1,
            violations: vec![hakiri_contract::history::Violation {
                rule: hakiri_contract::history::Rule::Malformed,
                message: format!("reading the final state: {e}"),
            }],
            ..Report::default()
        },
    }
}
