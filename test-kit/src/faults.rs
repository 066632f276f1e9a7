//! The faults the concurrent histories run under (Jepsen's nemesis), written once for every test
//! that injects them: a process killed (SIGKILL) or stalled (SIGSTOP, then SIGCONT), the count
//! of each kind injected, and the summary line a soak script greps.
//!
//! The faults of one server live beside the server: [`crate::postgres::Server::restart`],
//! [`crate::postgres::Server::stall`] and [`crate::postgres::terminate_busy_sessions`];
//! [`crate::workerd::Workerd::restart`]. The client processes are [`crate::history`]'s.

use std::fmt;
use std::time::Duration;

use hakiri_contract::history::Report;
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

/// The one line per backend a soak script greps, after a test's histories:
/// `sqlite: histories 2 operations 1380 faults 8 (kill 8, terminate 0, restart 0, stop 0)
/// violations 0 lost-writes 0 indeterminate 9 in 14.2s`.
pub fn summary(backend: &str, report: &Report, faults: &FaultCounts, took: Duration) -> String {
    format!(
        "{backend}: histories {} operations {} {faults} violations {} lost-writes {} \
         indeterminate {} in {took:.1?}",
        report.histories,
        report.operations,
        report.violations.len(),
        report.lost_writes,
        report.indeterminate
    )
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
