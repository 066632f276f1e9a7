//! The faults the concurrent histories run under (Jepsen's nemesis), written once for every test
//! that injects them: a client process killed (SIGKILL) or stalled (SIGSTOP, then SIGCONT), its
//! stdout kept up to the instant it died; Postgres sessions ended mid-transaction;
//! the count of each kind injected; and how many histories a run asks for (`HAKIRI_HISTORIES`).
//!
//! The faults of one server live beside the server: [`crate::postgres::Server::restart`] and
//! [`crate::postgres::Server::stall`], [`crate::workerd::Workerd::restart`].

use std::fmt;
use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hakiri_contract::history::Report;
use rustix::process::{kill_process, Pid, Signal};

/// How many histories to run: `HAKIRI_HISTORIES` when set (the soak sets it), else `default`
/// (the short run of the test command).
///
/// # Panics
/// When `HAKIRI_HISTORIES` is set but is not a positive number: a soak that silently ran the
/// default would report a count it never ran.
pub fn histories(default: usize) -> usize {
    match std::env::var("HAKIRI_HISTORIES") {
        Ok(text) => match text.trim().parse() {
            Ok(n) if n > 0 => n,
            _ => panic!("HAKIRI_HISTORIES={text:?}: expected a positive number of histories"),
        },
        Err(_) => default,
    }
}

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

/// A child process whose stdout a thread reads as it is written, so that everything the child
/// flushed is kept however it ends, a SIGKILL included.
#[derive(Debug)]
pub struct Collected {
    child: Child,
    reader: Option<JoinHandle<String>>,
}

impl Collected {
    /// Starts `command` with its stdout piped to the reading thread (stdin closed, stderr
    /// inherited so that a failing child explains itself in the test's output).
    ///
    /// # Errors
    /// When the process cannot be started.
    pub fn spawn(command: &mut Command) -> Result<Self, String> {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {command:?}: {e}"))?;
        let mut stdout = child.stdout.take().ok_or("the child has no stdout")?;
        let reader = std::thread::spawn(move || {
            // Kept as it came, a last line cut short by a kill included (it has no newline):
            // whoever parses the text decides what half a line means. Lossy, because a kill
            // can cut a character in two.
            let mut bytes = Vec::new();
            let _ = stdout.read_to_end(&mut bytes);
            String::from_utf8_lossy(&bytes).into_owned()
        });
        Ok(Self {
            child,
            reader: Some(reader),
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process has exited.
    pub fn exited(&mut self) -> bool {
        self.child.try_wait().ok().flatten().is_some()
    }

    /// Kills the process (SIGKILL) and returns what it wrote.
    ///
    /// # Errors
    /// When it cannot be killed or waited for.
    pub fn kill(mut self) -> Result<String, String> {
        // An exited child cannot be killed, which is not an error here.
        if !self.exited() {
            self.child
                .kill()
                .map_err(|e| format!("cannot kill process {}: {e}", self.pid()))?;
        }
        self.wait().map(|(_, text)| text)
    }

    /// Waits for the process to exit, at most `limit`; returns its status and what it wrote.
    ///
    /// # Errors
    /// When it is still running after `limit` (it is then killed), or cannot be waited for.
    pub fn wait_within(mut self, limit: Duration) -> Result<(ExitStatus, String), String> {
        let deadline = Instant::now() + limit;
        while !self.exited() {
            if Instant::now() > deadline {
                let pid = self.pid();
                let text = self.kill()?;
                let tail: Vec<&str> = text.lines().rev().take(3).collect();
                return Err(format!(
                    "process {pid} was still running after {limit:?} (killed); its last lines: \
                     {tail:?}"
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.wait()
    }

    fn wait(mut self) -> Result<(ExitStatus, String), String> {
        let status = self
            .child
            .wait()
            .map_err(|e| format!("cannot wait for process {}: {e}", self.pid()))?;
        let text = self
            .reader
            .take()
            .ok_or("the output was already taken")?
            .join()
            .map_err(|_| "the thread reading the child's output panicked".to_owned())?;
        Ok((status, text))
    }
}

impl Drop for Collected {
    fn drop(&mut self) {
        if self.reader.is_some() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
