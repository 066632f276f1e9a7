//! The faults the concurrent histories run under (Jepsen's nemesis), written once for every test
//! that injects them: a process killed (SIGKILL) or stalled (SIGSTOP, then SIGCONT), the count
//! of each kind injected, and the summary line a soak script greps.
//!
//! The faults of one server live beside the server: [`crate::postgres::Server::restart`],
//! [`crate::postgres::Server::stall`] and [`crate::postgres::terminate_busy_sessions`];
//! [`crate::workerd::Workerd::restart`]. The client processes are [`crate::history`]'s.

use std::fmt;
use std::ops::Range;
use std::path::Path;
use std::time::{Duration, Instant};

use hakiri_catalog_do::store::Exec;
use hakiri_catalog_do::{SqliteConfig, SqliteConnection};
use hakiri_contract::history::{env_number, Report};
use rustix::process::{kill_process, Pid, Signal};

/// A kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// A client's process killed with SIGKILL (and a new client started in its place).
    Kill,
    /// A client's database session ended by the server (`pg_terminate_backend`).
    Terminate,
    /// The server (Postgres, workerd) stopped and started again on the same data.
    Restart,
    /// The server's processes stopped (SIGSTOP) for a while, then continued.
    Stop,
}

/// How many faults of each kind were injected.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FaultCounts {
    /// SIGKILLs of client processes.
    pub kill: u64,
    /// Sessions terminated.
    pub terminate: u64,
    /// Server restarts.
    pub restart: u64,
    /// Server stalls.
    pub stop: u64,
}

impl FaultCounts {
    /// Counts one more `fault`.
    pub fn record(&mut self, fault: Fault) {
        self.add(fault, 1);
    }

    /// Counts `n` more of `fault`.
    pub fn add(&mut self, fault: Fault, n: u64) {
        match fault {
            Fault::Kill => self.kill += n,
            Fault::Terminate => self.terminate += n,
            Fault::Restart => self.restart += n,
            Fault::Stop => self.stop += n,
        }
    }

    /// All faults injected.
    pub fn total(&self) -> u64 {
        self.kill + self.terminate + self.restart + self.stop
    }
}

impl std::ops::AddAssign for FaultCounts {
    fn add_assign(&mut self, other: Self) {
        self.kill += other.kill;
        self.terminate += other.terminate;
        self.restart += other.restart;
        self.stop += other.stop;
    }
}

/// `faults 7 (kill 3, terminate 2, restart 1, stop 1)`: the part of a history summary line a
/// soak script greps for faults.
impl fmt::Display for FaultCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "faults {} (kill {}, terminate {}, restart {}, stop {})",
            self.total(),
            self.kill,
            self.terminate,
            self.restart,
            self.stop
        )
    }
}

/// The histories one backend ran under faults, summed as they come: what the checker reported
/// and the faults injected, and the one summary line a soak script greps.
#[derive(Debug)]
pub struct Histories {
    backend: &'static str,
    report: Report,
    faults: FaultCounts,
    started: Instant,
}

impl Histories {
    /// The seeds to run: `HAKIRI_HISTORIES` of them (default `default`, the short run of the
    /// test command; the soak sets more) from `HAKIRI_HISTORY_SEED` (default 0).
    pub fn seeds(default: u64) -> Range<u64> {
        let first = env_number("HAKIRI_HISTORY_SEED", 0);
        first..first + env_number("HAKIRI_HISTORIES", default)
    }

    /// None yet, on `backend`; the clock of the summary starts now.
    pub fn new(backend: &'static str) -> Self {
        Self {
            backend,
            report: Report::default(),
            faults: FaultCounts::default(),
            started: Instant::now(),
        }
    }

    /// Adds the history of `seed`: what the checker reported and the faults it ran under.
    ///
    /// # Panics
    /// When the history broke a rule: the message names the seed (to rerun it alone with
    /// `HAKIRI_HISTORIES=1 HAKIRI_HISTORY_SEED=<seed>`), the faults and the report.
    pub fn add(&mut self, seed: u64, report: Report, faults: FaultCounts) {
        assert!(
            report.is_ok(),
            "{}: the history of seed {seed} under {faults} broke a rule:\n{report}",
            self.backend
        );
        self.report.merge(report);
        self.faults += faults;
    }

    /// Prints the summary line (on stderr, as the other tests print their figures) and returns
    /// the faults injected in all, for the caller to check that they landed.
    ///
    /// # Panics
    /// When no call was acknowledged at all: histories that did nothing prove nothing.
    pub fn finish(self) -> FaultCounts {
        eprintln!("{self}");
        assert!(
            self.report.acknowledged > 0,
            "{}: no call of the histories was acknowledged:\n{}",
            self.backend,
            self.report
        );
        self.faults
    }
}

/// `sqlite: histories 2 operations 1380 faults 8 (kill 8, terminate 0, restart 0, stop 0)
/// violations 0 lost-writes 0 indeterminate 9 in 14.2s`.
impl fmt::Display for Histories {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: histories {} operations {} {} violations {} lost-writes {} indeterminate {} \
             in {:.1?}",
            self.backend,
            self.report.histories,
            self.report.operations,
            self.faults,
            self.report.violations.len(),
            self.report.lost_writes,
            self.report.indeterminate,
            self.started.elapsed()
        )
    }
}

/// SQLite's `PRAGMA integrity_check` of the catalog file `file`, which no fault may break: a
/// process killed in the middle of a write leaves its transaction to be rolled back, never a
/// damaged file.
///
/// # Errors
/// When the file cannot be opened or read, or the check finds anything: its findings.
pub fn sqlite_integrity_check(file: &Path) -> Result<(), String> {
    let mut conn = SqliteConnection::open(file, &SqliteConfig::default())
        .map_err(|e| format!("cannot open {}: {e}", file.display()))?;
    let rows = conn
        .query("PRAGMA integrity_check", &[])
        .map_err(|e| format!("integrity_check of {}: {e}", file.display()))?;
    let verdict: Vec<String> = rows
        .iter()
        .map(|row| row.text(0).map(str::to_owned).unwrap_or_default())
        .collect();
    if verdict == ["ok"] {
        Ok(())
    } else {
        Err(format!(
            "integrity_check of {}: {verdict:?}",
            file.display()
        ))
    }
}

/// Sends `signal` to process `pid`.
///
/// # Errors
/// When `pid` is not a process id, or the signal cannot be sent (the process is gone, or not
/// this user's).
pub fn signal(pid: u32, signal: Signal) -> Result<(), String> {
    let target = i32::try_from(pid)
        .ok()
        .and_then(Pid::from_raw)
        .ok_or_else(|| format!("{pid} is not a process id"))?;
    kill_process(target, signal).map_err(|e| format!("cannot signal process {pid}: {e}"))
}

/// Stops every process of `pids` (SIGSTOP) for `pause`, then continues them (SIGCONT), as a
/// frozen machine would stall them. Every process that was stopped is continued, even when
/// stopping another failed.
///
/// # Errors
/// The first signal that could not be sent.
pub fn stall(pids: &[u32], pause: Duration) -> Result<(), String> {
    let mut first_error = None;
    let mut stopped = Vec::with_capacity(pids.len());
    for &pid in pids {
        match signal(pid, Signal::STOP) {
            Ok(()) => stopped.push(pid),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    std::thread::sleep(pause);
    // In the reverse order: a parent continued last finds its children already running.
    for &pid in stopped.iter().rev() {
        if let Err(e) = signal(pid, Signal::CONT) {
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}
