//! Child processes for connectors that run a program (Singer taps and targets, Airbyte
//! sources): each runs in its own process group with a minimal environment, its stdout is read
//! line by line under a size limit, its stderr is logged with the run id and a bounded tail of
//! it kept for the run's error, and it is stopped as a whole group.
//!
//! # Lifecycle
//! ```text
//! ChildProcess::spawn(spec) ─┬─► next_line() … None ─► wait()             the program ends by itself
//!                            ├─► terminate(grace) ─► next_line() … None ─► wait()
//!                            │                         stop, keeping the lines it prints on the way out
//!                            └─► stop(grace)           stop, discarding them
//! ```
//! [`ChildProcess::terminate`] sends SIGTERM to the group; the caller keeps reading stdout
//! (a child blocked writing to a full pipe never finishes otherwise, and its last lines — a
//! Singer tap's final STATE — would be lost), and once `grace` has passed the group is sent
//! SIGKILL. The deadline is enforced inside [`ChildProcess::next_line`] and
//! [`ChildProcess::wait`], so keep calling one of them after `terminate`.
//!
//! # No process outlives its run
//! - Stopping signals the whole group, so the program's own children (a shell wrapper's tap, a
//!   tap's worker pool) are stopped with it, not re-parented to init and left running.
//! - When the direct child exits, whatever it left in its group is sent SIGKILL at once: a
//!   run's processes end with it, and a leftover that holds the stdout pipe cannot keep
//!   [`ChildProcess::wait`] from returning.
//! - Dropping a [`ChildProcess`] that has not been waited for (a cancelled future, an early
//!   `?`) sends SIGKILL to the group.
//! - When the reconciler itself is killed (SIGKILL, a crash), nothing runs to signal anyone,
//!   but the read ends of the pipes close with it: the child gets EPIPE (or SIGPIPE, which
//!   [`std::process::Command`] restores to its default in the child) at its next write and
//!   dies. A child idle in a long wait (an API back-off, a WAL loop) lingers until it next
//!   writes.
//! - A process that leaves the group on purpose (`setsid`, `setpgid`) escapes all of this.
//!
//! # Environment
//! The child never inherits the reconciler's environment (which may hold catalog credentials).
//! It gets [`BASE_ENV`] copied from the reconciler when set (`PATH` defaults to
//! `/usr/local/bin:/usr/bin:/bin`), the variables named with [`ProcessSpec::inherit_env`],
//! and those given with [`ProcessSpec::env`]. Its stdin is `/dev/null` unless
//! [`ProcessSpec::stdin_piped`] asks for a pipe (a Singer target's input).
//!
//! # Reading stdout
//! A tap prints (and flushes) a line at a time. A reader faster than the tap would be woken for
//! every line, and each of those wake-ups costs the tap too: on two cores the woken thread
//! preempts it. So stdout is read into a 256 KiB buffer, lines are returned borrowed from it
//! ([`ChildProcess::read_line`]) and without waiting on anything while it holds one, a read
//! that found less than 32 KiB makes the next wait 1 ms first, the pipe is enlarged to 1 MiB
//! (Linux) so the tap does not block meanwhile, and the pipe is registered with the reactor
//! only while a read waits for data (epoll would otherwise wake a thread at every write). A
//! line waits at most that 1 ms longer; a tap printing fast is read as fast as `cat` reads it
//! (`cargo bench -p hakiri-reconciler --bench airbyte` prints both, and the tap's speed into
//! `/dev/null`, which a pipe alone halves for a tap that flushes every line).
//!
//! See ADR 0018 for why these choices.

use std::collections::{BTreeMap, VecDeque};
use std::ffi::OsString;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustix::process::{kill_process_group, Pid, Signal};
use std::os::fd::OwnedFd;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};
use tokio::net::unix::pipe;
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::task::JoinHandle;
use tokio::time::{sleep_until, Instant};

use crate::connector::ConnectorError;

/// Default of [`ProcessSpec::max_line_bytes`]: 16 MiB, the limit the `jsonl` connector uses.
pub const DEFAULT_MAX_LINE_BYTES: usize = 16 << 20;

/// Default of [`ProcessSpec::stderr_tail_bytes`]: 64 KiB.
pub const DEFAULT_STDERR_TAIL_BYTES: usize = 64 << 10;

/// Variables a child gets from the reconciler's environment when they are set there: what a
/// program needs to find executables, its home and temp directory, and to decode text and
/// times the way the operator's shell would.
pub const BASE_ENV: &[&str] = &["PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TZ"];

/// `PATH` when the reconciler has none: a child without one cannot start `python3` or `sh`.
const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// A stderr line longer than this is logged and kept cut to it: stderr is for people, and one
/// runaway line must not push every other line out of the tail.
const MAX_STDERR_LINE_BYTES: usize = 8 << 10;

/// How long a read waits for more output once the child has exited and its group was killed:
/// only a process that left the group can still hold the pipes open, and it must not hang the
/// run. Output already in the pipe is read at once, so this only ends an idle pipe.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// What to run, and the limits to run it under. Build with [`ProcessSpec::new`] and the setters,
/// start with [`ChildProcess::spawn`].
#[derive(Clone)]
pub struct ProcessSpec {
    program: PathBuf,
    args: Vec<OsString>,
    env: BTreeMap<OsString, OsString>,
    cwd: Option<PathBuf>,
    stdin_piped: bool,
    max_line_bytes: usize,
    stderr_tail_bytes: usize,
    run: String,
}

/// Lists variable names but not values: explicit variables are where secrets go.
impl fmt::Debug for ProcessSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessSpec")
            .field("program", &self.program)
            .field("args", &self.args)
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .field("cwd", &self.cwd)
            .field("stdin_piped", &self.stdin_piped)
            .field("max_line_bytes", &self.max_line_bytes)
            .field("stderr_tail_bytes", &self.stderr_tail_bytes)
            .field("run", &self.run)
            .finish()
    }
}

impl ProcessSpec {
    /// Runs `program` (a path, or a name looked up in the child's `PATH`) for `run` (the run
    /// id, a field of every log line), with [`BASE_ENV`] only, stdin closed and the default
    /// limits.
    pub fn new(program: impl Into<PathBuf>, run: impl fmt::Display) -> Self {
        let mut spec = Self {
            program: program.into(),
            args: Vec::new(),
            env: BTreeMap::new(),
            cwd: None,
            stdin_piped: false,
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
            stderr_tail_bytes: DEFAULT_STDERR_TAIL_BYTES,
            run: run.to_string(),
        };
        for name in BASE_ENV {
            spec = spec.inherit_env(name);
        }
        spec.env
            .entry("PATH".into())
            .or_insert_with(|| DEFAULT_PATH.into());
        spec
    }

    /// Appends one argument.
    #[must_use]
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Appends arguments.
    #[must_use]
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets a variable in the child's environment (replacing an inherited one).
    #[must_use]
    pub fn env(mut self, name: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.insert(name.into(), value.into());
        self
    }

    /// Copies `name` from the reconciler's environment into the child's, if it is set there.
    ///
    /// # Warning
    /// The reconciler's environment may hold credentials for the catalog; pass a program only
    /// what it needs.
    #[must_use]
    pub fn inherit_env(mut self, name: &str) -> Self {
        if let Some(value) = std::env::var_os(name) {
            self.env.insert(name.into(), value);
        }
        self
    }

    /// The child's working directory (default: the reconciler's).
    #[must_use]
    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cwd = Some(dir.into());
        self
    }

    /// Gives the child a stdin pipe, taken with [`ChildProcess::take_stdin`] (a Singer target
    /// reads its input there). Default: stdin is `/dev/null`.
    #[must_use]
    pub fn stdin_piped(mut self) -> Self {
        self.stdin_piped = true;
        self
    }

    /// The longest stdout line [`ChildProcess::next_line`] accepts, without its newline
    /// (default [`DEFAULT_MAX_LINE_BYTES`]; at least 1).
    ///
    /// # Warning
    /// A line is held in memory whole, up to this size, for every running child.
    #[must_use]
    pub fn max_line_bytes(mut self, bytes: usize) -> Self {
        self.max_line_bytes = bytes.max(1);
        self
    }

    /// How much of the end of stderr to keep for [`Exit::stderr_tail`] (default
    /// [`DEFAULT_STDERR_TAIL_BYTES`]).
    #[must_use]
    pub fn stderr_tail_bytes(mut self, bytes: usize) -> Self {
        self.stderr_tail_bytes = bytes;
        self
    }

    /// The program to run.
    pub fn program(&self) -> &Path {
        &self.program
    }
}

/// Why a child could not be started or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProcessError {
    /// The program could not be started (missing, not executable, a bad working directory).
    #[error("cannot start {program}: {source}")]
    Spawn {
        /// The program, as given.
        program: String,
        /// The operating system's reason.
        #[source]
        source: io::Error,
    },
    /// A stdout line is longer than [`ProcessSpec::max_line_bytes`]. The rest of the line is
    /// skipped: the next [`ChildProcess::next_line`] returns the line after it.
    #[error(
        "line {line} on the stdout of {program} is longer than the limit of {limit} bytes \
         ({read} bytes read of it)"
    )]
    LineTooLong {
        /// The program.
        program: String,
        /// The line's number, from 1.
        line: u64,
        /// The limit, in bytes.
        limit: usize,
        /// How much of the line had been read when the limit was passed (at least `limit + 1`;
        /// the whole line when it arrived in one piece).
        read: usize,
    },
    /// Reading the child's output or waiting for it failed.
    #[error("{program}: cannot {action}: {source}")]
    Io {
        /// The program.
        program: String,
        /// What failed ("read stdout", "wait").
        action: &'static str,
        /// The operating system's reason.
        #[source]
        source: io::Error,
    },
}

/// A program that cannot start or prints lines too long to read fails permanently; anything
/// else may be a passing condition of the host.
impl From<ProcessError> for ConnectorError {
    fn from(error: ProcessError) -> Self {
        let permanent = match &error {
            ProcessError::Spawn { source, .. } => matches!(
                source.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied
            ),
            ProcessError::LineTooLong { .. } => true,
            ProcessError::Io { .. } => false,
        };
        if permanent {
            ConnectorError::permanent(error)
        } else {
            ConnectorError::transient(error)
        }
    }
}

/// How a child ended, from [`ChildProcess::wait`] or [`ChildProcess::stop`].
#[derive(Debug, Clone)]
pub struct Exit {
    /// The program.
    pub program: String,
    /// Its exit status.
    pub status: ExitStatus,
    /// Whether it was asked to stop ([`ChildProcess::terminate`]). The status then says little:
    /// Singer SDK taps exit 0 on SIGTERM, Airbyte CDK sources die of it.
    pub terminated: bool,
    /// Whether its group was sent SIGKILL because it outlived the grace period (or
    /// [`ChildProcess::kill`] was called).
    pub killed: bool,
    /// The last lines of its stderr, at most [`ProcessSpec::stderr_tail_bytes`].
    pub stderr_tail: String,
}

impl Exit {
    /// Whether it exited with status 0.
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// Fails unless it exited with status 0; the error carries the end of the stderr tail,
    /// as much as fits in a run's error ([`hakiri_core::run::MAX_ERROR_LEN`], which keeps a
    /// message's start and would otherwise cut off its most telling last lines).
    ///
    /// # Errors
    /// A transient [`ConnectorError::Failed`]: a program's exit code does not say whether
    /// retrying helps, so the caller decides when it knows better (a config error).
    pub fn check(&self) -> Result<(), ConnectorError> {
        if self.success() {
            return Ok(());
        }
        let mut message = format!("{} ended with {}", self.program, self.status);
        if !self.stderr_tail.is_empty() {
            message.push_str("; its stderr ended with:\n");
            let room = hakiri_core::run::MAX_ERROR_LEN.saturating_sub(message.len());
            message.push_str(last_lines(&self.stderr_tail, room));
        }
        Err(ConnectorError::transient(message))
    }
}

/// A running program: its stdout lines, its stdin (when piped), and control over its process
/// group. See the [module docs](self) for the lifecycle.
///
/// Dropping it before [`ChildProcess::wait`] has returned sends SIGKILL to the group.
pub struct ChildProcess {
    child: Child,
    /// The process group, the same number as the child's pid (`process_group(0)`).
    group: Pid,
    /// False once the group has been sent SIGKILL after the child exited: from then on its id
    /// may be reused, so nothing more is sent to it.
    group_live: bool,
    program: String,
    run: String,
    stdout: Option<LineReader<PipeReader>>,
    stdout_limit: usize,
    lines: u64,
    stdin: Option<ChildStdin>,
    stderr_tail: Arc<Mutex<Tail>>,
    stderr_task: Option<JoinHandle<()>>,
    status: Option<ExitStatus>,
    /// Set by [`ChildProcess::terminate`]: when the group gets SIGKILL.
    kill_at: Option<Instant>,
    killed: bool,
}

impl fmt::Debug for ChildProcess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChildProcess")
            .field("program", &self.program)
            .field("run", &self.run)
            .field("pid", &self.group.as_raw_nonzero())
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

impl ChildProcess {
    /// Starts `spec`'s program in a new process group. Call from within a Tokio runtime.
    ///
    /// # Errors
    /// [`ProcessError::Spawn`] when the program cannot be started.
    pub fn spawn(spec: ProcessSpec) -> Result<Self, ProcessError> {
        let program = spec.program.display().to_string();
        let mut command = Command::new(&spec.program);
        command
            .args(&spec.args)
            .env_clear()
            .envs(&spec.env)
            .stdin(if spec.stdin_piped {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own group, so that signals reach its children too and a Ctrl-C meant for
            // the reconciler does not reach it before the reconciler decides to stop it.
            .process_group(0)
            // Reaches only the direct child; the group is killed by our own `Drop`.
            .kill_on_drop(true);
        if let Some(dir) = &spec.cwd {
            command.current_dir(dir);
        }
        let spawn_error = |source| ProcessError::Spawn {
            program: program.clone(),
            source,
        };
        let mut child = command.spawn().map_err(spawn_error)?;
        let group = child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .and_then(Pid::from_raw)
            .ok_or_else(|| spawn_error(io::Error::other("the child has no process id")))?;
        let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            return Err(spawn_error(io::Error::other(
                "the child has no output pipes",
            )));
        };
        #[cfg(target_os = "linux")]
        if let Err(e) = rustix::pipe::fcntl_setpipe_size(&stdout, STDOUT_PIPE_BYTES) {
            // A reader that waits to read many lines at once still works; the child may block
            // on the full pipe for part of the wait.
            tracing::debug!(run = %spec.run, program = %program, error = %e, "cannot enlarge the stdout pipe");
        }
        let stdout = PipeReader::new(stdout).map_err(spawn_error)?;
        let stdin = child.stdin.take();
        let stderr_tail = Arc::new(Mutex::new(Tail::new(spec.stderr_tail_bytes)));
        let stderr_task = tokio::spawn(log_stderr(
            LineReader::new(stderr, MAX_STDERR_LINE_BYTES, STDERR_BUFFER_BYTES, None),
            Arc::clone(&stderr_tail),
            spec.run.clone(),
            program.clone(),
        ));
        tracing::debug!(run = %spec.run, program = %program, pid = group.as_raw_nonzero(), "started");
        Ok(Self {
            child,
            group,
            group_live: true,
            program,
            run: spec.run,
            stdout: Some(LineReader::new(
                stdout,
                spec.max_line_bytes,
                STDOUT_BUFFER_BYTES,
                Some(COALESCE),
            )),
            stdout_limit: spec.max_line_bytes,
            lines: 0,
            stdin,
            stderr_tail,
            stderr_task: Some(stderr_task),
            status: None,
            kill_at: None,
            killed: false,
        })
    }

    /// The child's process id, which is also its process group id.
    pub fn id(&self) -> u32 {
        self.group.as_raw_nonzero().get().unsigned_abs()
    }

    /// The program, as given to [`ProcessSpec::new`].
    pub fn program(&self) -> &str {
        &self.program
    }

    /// The stdin pipe, once, when the spec asked for [`ProcessSpec::stdin_piped`]. Drop it to
    /// close the child's input (a Singer target then drains and exits).
    pub fn take_stdin(&mut self) -> Option<ChildStdin> {
        self.stdin.take()
    }

    /// The end of stderr so far (complete lines, at most [`ProcessSpec::stderr_tail_bytes`]).
    pub fn stderr_tail(&self) -> String {
        lock(&self.stderr_tail).text()
    }

    /// The next stdout line without its line ending (`\n` or `\r\n`), or `None` at the end of
    /// stdout. A last line without a newline is returned as it is; after a SIGKILL it may be
    /// cut short. Once the child has exited, stdout that stays idle for 5 s (held open by a
    /// process that left the group) counts as ended.
    ///
    /// Cancel-safe: a partly read line is kept for the next call, so it can sit in a
    /// `tokio::select!` beside a cancellation.
    ///
    /// # Errors
    /// [`ProcessError::LineTooLong`], after which reading can go on with the next line;
    /// [`ProcessError::Io`] when stdout cannot be read.
    pub async fn next_line(&mut self) -> Result<Option<Vec<u8>>, ProcessError> {
        Ok(self.read_line().await?.map(<[u8]>::to_vec))
    }

    /// Whether [`ChildProcess::read_line`] returns at once, waiting on nothing: a line (or the
    /// end of stdout) has been read already. A caller can then skip what it waits on beside
    /// the read.
    pub fn line_ready(&mut self) -> bool {
        self.stdout.as_mut().is_none_or(LineReader::scan)
    }

    /// [`ChildProcess::next_line`], the line borrowed from the reader's buffer: what a caller
    /// that handles each line before it reads the next uses, with no copy. A line already read
    /// is returned without waiting on anything.
    ///
    /// Stdout is read many lines at a time: a read that finds little waits 1 ms before the
    /// next, so that a child printing fast is not woken for every line (see the module docs).
    ///
    /// # Errors
    /// As [`ChildProcess::next_line`].
    pub async fn read_line(&mut self) -> Result<Option<&[u8]>, ProcessError> {
        loop {
            let kill_due = self.kill_due();
            let kill_at = self.kill_at.unwrap_or_else(Instant::now);
            let exited = self.status.is_some();
            let Some(stdout) = self.stdout.as_mut() else {
                return Ok(None);
            };
            if stdout.scan() {
                break;
            }
            tokio::select! {
                read = stdout.fill() => if let Err(source) = read {
                    return Err(self.io_error("read stdout", source));
                },
                status = self.child.wait(), if !exited => self.exited(status)?,
                () = sleep_until(kill_at), if kill_due => self.kill(),
                () = tokio::time::sleep(CLOSE_TIMEOUT), if exited => self.abandon_stdout(),
            }
        }
        if self.stdout.as_ref().is_none_or(LineReader::at_end) {
            self.stdout = None;
            return Ok(None);
        }
        let Some(stdout) = self.stdout.as_mut() else {
            return Ok(None);
        };
        match stdout.take() {
            Read::Line(line) => {
                self.lines += 1;
                Ok(Some(line))
            }
            Read::TooLong { read, .. } => {
                self.lines += 1;
                Err(ProcessError::LineTooLong {
                    program: self.program.clone(),
                    line: self.lines,
                    limit: self.stdout_limit,
                    read,
                })
            }
            Read::Eof => Ok(None),
        }
    }

    /// Asks the child to stop: sends SIGTERM to its process group now and SIGKILL once `grace`
    /// has passed while [`ChildProcess::next_line`] or [`ChildProcess::wait`] runs. Keep
    /// reading until `None` to collect what it prints on the way out. A second call changes
    /// nothing.
    pub fn terminate(&mut self, grace: Duration) {
        if self.kill_at.is_some() {
            return;
        }
        self.kill_at = Some(Instant::now() + grace);
        tracing::debug!(run = %self.run, program = %self.program, ?grace, "sending SIGTERM to the process group");
        self.signal_group(Signal::TERM);
    }

    /// Sends SIGKILL to the child's process group now.
    pub fn kill(&mut self) {
        if self.status.is_none() {
            self.killed = true;
            tracing::debug!(run = %self.run, program = %self.program, "sending SIGKILL to the process group");
            self.signal_group(Signal::KILL);
            // In case the child moved itself to another group.
            let _ = self.child.start_kill();
        }
    }

    /// [`ChildProcess::terminate`], then [`ChildProcess::wait`]: stops the child, discarding
    /// whatever it still prints.
    ///
    /// # Errors
    /// As [`ChildProcess::wait`].
    pub async fn stop(&mut self, grace: Duration) -> Result<Exit, ProcessError> {
        self.terminate(grace);
        self.wait().await
    }

    /// Waits for the child to exit, reading and discarding stdout it has not read (so a child
    /// blocked on a full pipe can finish), kills what it left in its group, and reports how it
    /// ended. Without [`ChildProcess::terminate`] it waits as long as the child runs.
    ///
    /// # Errors
    /// [`ProcessError::Io`] when waiting fails.
    pub async fn wait(&mut self) -> Result<Exit, ProcessError> {
        loop {
            let status = match self.status {
                Some(status) if self.stdout.is_none() => status,
                _ => {
                    self.wait_step().await?;
                    continue;
                }
            };
            if let Some(mut task) = self.stderr_task.take() {
                if tokio::time::timeout(CLOSE_TIMEOUT, &mut task)
                    .await
                    .is_err()
                {
                    task.abort();
                }
            }
            return Ok(Exit {
                program: self.program.clone(),
                status,
                terminated: self.kill_at.is_some(),
                killed: self.killed,
                stderr_tail: self.stderr_tail(),
            });
        }
    }

    /// One event on the way to the end: a discarded stdout line, the exit, a due SIGKILL, or
    /// giving up on a pipe held open by a process outside the group.
    async fn wait_step(&mut self) -> Result<(), ProcessError> {
        let kill_due = self.kill_due();
        let kill_at = self.kill_at.unwrap_or_else(Instant::now);
        let exited = self.status.is_some();
        tokio::select! {
            ended = discard_or_pending(&mut self.stdout) => {
                if !matches!(ended, Ok(false)) {
                    self.stdout = None;
                }
            }
            status = self.child.wait(), if !exited => self.exited(status)?,
            () = sleep_until(kill_at), if kill_due => self.kill(),
            () = tokio::time::sleep(CLOSE_TIMEOUT), if exited => self.abandon_stdout(),
        }
        Ok(())
    }

    /// Gives up on a stdout that stays open, idle, after the group was killed.
    fn abandon_stdout(&mut self) {
        tracing::warn!(run = %self.run, program = %self.program,
            "stdout still open after the process group was killed; a process that left the group may still run");
        self.stdout = None;
    }

    fn kill_due(&self) -> bool {
        self.kill_at.is_some() && !self.killed && self.status.is_none()
    }

    /// Records the child's exit and kills what it left in its group.
    fn exited(&mut self, status: io::Result<ExitStatus>) -> Result<(), ProcessError> {
        let status = status.map_err(|e| self.io_error("wait", e))?;
        tracing::debug!(run = %self.run, program = %self.program, %status, "exited");
        self.status = Some(status);
        self.signal_group(Signal::KILL);
        // The group id is now free for reuse once its last member is gone: signal it no more.
        self.group_live = false;
        Ok(())
    }

    fn signal_group(&self, signal: Signal) {
        if !self.group_live {
            return;
        }
        match kill_process_group(self.group, signal) {
            // ESRCH: the group is already empty.
            Ok(()) | Err(rustix::io::Errno::SRCH) => {}
            Err(e) => {
                tracing::warn!(run = %self.run, program = %self.program, error = %e, ?signal, "cannot signal the process group");
            }
        }
    }

    fn io_error(&self, action: &'static str, source: io::Error) -> ProcessError {
        ProcessError::Io {
            program: self.program.clone(),
            action,
            source,
        }
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        if self.group_live {
            tracing::debug!(run = %self.run, program = %self.program, "dropped while running: sending SIGKILL to the process group");
            self.signal_group(Signal::KILL);
        }
    }
}

/// The next read from `reader`, or never when there is none (for `select!`).
/// Reads and drops what `reader` reads next (whether it ended), or never when there is none
/// (for `select!`).
async fn discard_or_pending<R: Source>(reader: &mut Option<LineReader<R>>) -> io::Result<bool> {
    match reader {
        Some(reader) => reader.discard().await,
        None => std::future::pending().await,
    }
}

/// Logs each stderr line and keeps the tail, until stderr closes.
async fn log_stderr<R: Source>(
    mut reader: LineReader<R>,
    tail: Arc<Mutex<Tail>>,
    run: String,
    program: String,
) {
    loop {
        let (line, cut) = match reader.next().await {
            Ok(Read::Line(line)) => (line, false),
            Ok(Read::TooLong { prefix, .. }) => (prefix, true),
            Ok(Read::Eof) => return,
            Err(e) => {
                tracing::warn!(run = %run, program = %program, error = %e, "cannot read stderr");
                return;
            }
        };
        let mut text = String::from_utf8_lossy(line).into_owned();
        if cut {
            text.push('…');
        }
        tracing::info!(target: "hakiri::process::stderr", run = %run, program = %program, "{text}");
        lock(&tail).push(text);
    }
}

/// The last lines of a stream, at most `max_bytes` of them (newlines included).
#[derive(Debug)]
struct Tail {
    lines: VecDeque<String>,
    bytes: usize,
    max_bytes: usize,
}

impl Tail {
    fn new(max_bytes: usize) -> Self {
        Self {
            lines: VecDeque::new(),
            bytes: 0,
            max_bytes,
        }
    }

    fn push(&mut self, mut line: String) {
        if line.len() + 1 > self.max_bytes {
            // Keep the line's end, where a traceback puts the exception.
            let mut start = line.len() + 1 - self.max_bytes.max(1);
            while !line.is_char_boundary(start) {
                start += 1;
            }
            line.drain(..start);
        }
        self.bytes += line.len() + 1;
        self.lines.push_back(line);
        while self.bytes > self.max_bytes {
            match self.lines.pop_front() {
                Some(old) => self.bytes -= old.len() + 1,
                None => break,
            }
        }
    }

    fn text(&self) -> String {
        let mut text = String::with_capacity(self.bytes);
        for (i, line) in self.lines.iter().enumerate() {
            if i > 0 {
                text.push('\n');
            }
            text.push_str(line);
        }
        text
    }
}

/// One result of [`LineReader::next`], borrowed from the reader's buffer.
#[derive(Debug)]
enum Read<'a> {
    Line(&'a [u8]),
    /// A line longer than the limit: its first `limit` bytes, and how much of it was read.
    TooLong {
        prefix: &'a [u8],
        read: usize,
    },
    Eof,
}

/// What the buffer holds next, found by [`LineReader::scan`]: positions, so that finding it
/// borrows nothing.
#[derive(Debug, Clone, Copy)]
enum Found {
    /// A line at `start..end` of the buffer; the next one starts at `next`.
    Line {
        end: usize,
        next: usize,
    },
    /// A line longer than the limit starting at `start`; its prefix ends at `start + max`.
    TooLong {
        read: usize,
        next: usize,
    },
    Eof,
}

/// Bytes a stdout reader asks for at once. A tap writes a line at a time; reading many per
/// call is most of what keeps Hakiri cheaper than the tap.
const STDOUT_BUFFER_BYTES: usize = 256 << 10;

/// Bytes a stderr reader asks for at once: stderr is for people.
const STDERR_BUFFER_BYTES: usize = 8 << 10;

/// How long a stdout reader that keeps up with its child waits before reading again, so that
/// each read takes many lines (see [`LineReader::fill`]).
const COALESCE: Duration = Duration::from_millis(1);

/// A read shorter than this caught up with the child: the next one waits for [`COALESCE`].
const COALESCE_BELOW: usize = 32 << 10;

/// The stdout pipe's capacity asked for (Linux; the unprivileged maximum by default), so that a
/// child writing while its reader waits for [`COALESCE`] is not blocked on a full pipe.
const STDOUT_PIPE_BYTES: usize = 1 << 20;

/// Splits a byte stream into lines of at most `max` bytes, holding at most `max` bytes of a
/// line (plus one read) however long the line is. Lines are returned borrowed from its buffer.
#[derive(Debug)]
struct LineReader<R> {
    inner: R,
    /// `buf[start..end]` is read and not yet returned; its length is the most one read takes
    /// (grown, up to `max + 1`, while a long line is read, and shrunk back after it).
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// `buf[start..start + scanned]` holds no newline.
    scanned: usize,
    capacity: usize,
    max: usize,
    /// Inside a line that was too long: skip to its end before the next line.
    skipping: bool,
    eof: bool,
    found: Option<Found>,
    /// See [`LineReader::fill`]; `None` reads as soon as data is there.
    coalesce: Option<Duration>,
    /// When the next read may start, after a short one.
    pause_until: Option<Instant>,
}

impl<R: Source> LineReader<R> {
    fn new(inner: R, max: usize, capacity: usize, coalesce: Option<Duration>) -> Self {
        let capacity = capacity.max(1);
        Self {
            inner,
            buf: vec![0; capacity],
            start: 0,
            end: 0,
            scanned: 0,
            capacity,
            max,
            skipping: false,
            eof: false,
            found: None,
            coalesce,
            pause_until: None,
        }
    }

    /// Cancel-safe: what a read returned is kept in `self` before the next await.
    async fn next(&mut self) -> io::Result<Read<'_>> {
        loop {
            if self.scan() {
                return Ok(self.take());
            }
            self.fill().await?;
        }
    }

    /// Whether the buffer holds the next result (a line, a line too long, or the end), without
    /// reading; [`LineReader::take`] returns it.
    fn scan(&mut self) -> bool {
        if self.found.is_some() {
            return true;
        }
        if self.skipping {
            match memchr(&self.buf[self.start..self.end]) {
                Some(at) => {
                    self.start += at + 1;
                    self.skipping = false;
                }
                None if self.eof => {
                    self.skipping = false;
                    self.start = self.end;
                }
                None => {
                    self.start = self.end;
                    return false;
                }
            }
        }
        let pending = &self.buf[self.start..self.end];
        let found = match memchr(&pending[self.scanned..]) {
            Some(at) => {
                let len = self.scanned + at;
                let next = self.start + len + 1;
                if len > self.max {
                    Found::TooLong { read: len, next }
                } else {
                    let end = if pending[..len].last() == Some(&b'\r') {
                        self.start + len - 1
                    } else {
                        self.start + len
                    };
                    Found::Line { end, next }
                }
            }
            None if pending.len() > self.max => {
                // The rest of the line is skipped as it comes.
                self.skipping = !self.eof;
                Found::TooLong {
                    read: pending.len(),
                    next: self.end,
                }
            }
            None if self.eof && pending.is_empty() => Found::Eof,
            None if self.eof => Found::Line {
                end: self.end,
                next: self.end,
            },
            None => {
                self.scanned = pending.len();
                return false;
            }
        };
        self.found = Some(found);
        true
    }

    /// Whether [`LineReader::scan`] found the end of the stream.
    fn at_end(&self) -> bool {
        matches!(self.found, Some(Found::Eof))
    }

    /// What [`LineReader::scan`] found; call only after it returned `true`.
    fn take(&mut self) -> Read<'_> {
        let start = self.start;
        self.scanned = 0;
        match self.found.take() {
            Some(Found::Line { end, next }) => {
                self.start = next;
                Read::Line(&self.buf[start..end])
            }
            Some(Found::TooLong { read, next }) => {
                self.start = next;
                Read::TooLong {
                    prefix: &self.buf[start..start + self.max],
                    read,
                }
            }
            Some(Found::Eof) | None => Read::Eof,
        }
    }

    /// Reads more of the stream into the buffer (nothing at its end).
    ///
    /// A reader faster than its child would wake for every line it writes, and each wake-up
    /// costs the child too (a write to a pipe with a waiting reader wakes it): a read shorter
    /// than [`COALESCE_BELOW`] makes the next one wait for the reader's `coalesce` first, so
    /// that a child writing fast is read many lines at a time. A line is delayed by at most
    /// that long.
    ///
    /// Cancel-safe: the wait's deadline is kept, and a read that returns is recorded before
    /// the next await.
    async fn fill(&mut self) -> io::Result<()> {
        if self.eof {
            return Ok(());
        }
        if let Some(until) = self.pause_until {
            // Pipe writes during the wait must not wake anyone: that is the point of it.
            self.inner.unwatch();
            sleep_until(until).await;
            self.pause_until = None;
        }
        self.make_room();
        let read = self.inner.read(&mut self.buf[self.end..]).await?;
        self.end += read;
        if read == 0 {
            self.eof = true;
        } else if read < COALESCE_BELOW {
            self.pause_until = self.coalesce.map(|wait| Instant::now() + wait);
        }
        Ok(())
    }

    /// Moves what is left to the front of the buffer, or grows the buffer for a long line.
    fn make_room(&mut self) {
        if self.start == self.end {
            (self.start, self.end) = (0, 0);
            if self.buf.len() > self.capacity {
                self.buf.truncate(self.capacity);
                self.buf.shrink_to_fit();
            }
        } else if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            (self.start, self.end) = (0, self.end - self.start);
        }
        if self.end == self.buf.len() {
            // A line without its end fills the buffer; `scan` stops it past `max`.
            let len = (self.buf.len() * 2)
                .min(self.max + 1)
                .max(self.buf.len() + 1);
            self.buf.resize(len, 0);
        }
    }

    /// Reads and drops what comes next; whether the stream has ended.
    async fn discard(&mut self) -> io::Result<bool> {
        (self.start, self.end, self.scanned, self.found) = (0, 0, 0, None);
        self.skipping = false;
        self.pause_until = None;
        self.fill().await?;
        self.start = self.end;
        Ok(self.eof)
    }
}

/// What a [`LineReader`] reads.
trait Source: AsyncRead + Unpin {
    /// Stops asking the reactor about the stream until the next read (see [`PipeReader`]).
    fn unwatch(&mut self) {}
}

impl Source for tokio::process::ChildStderr {}

/// A child's stdout, read directly with non-blocking reads, and registered with the reactor
/// only while a read waits for data. A pipe registered with epoll wakes the reactor's thread at
/// every write into it, even when no task waits for it; a child printing a line at a time while
/// its reader waits for [`COALESCE`] would be interrupted by each of those wake-ups (on two
/// cores, the woken thread preempts it).
#[derive(Debug)]
struct PipeReader {
    unwatched: Option<OwnedFd>,
    watched: Option<pipe::Receiver>,
}

impl PipeReader {
    fn new(stdout: ChildStdout) -> io::Result<Self> {
        // `into_owned_fd` makes the pipe blocking; the receiver makes it non-blocking again.
        let stdout = pipe::Receiver::from_owned_fd(stdout.into_owned_fd()?)?;
        Ok(Self {
            unwatched: None,
            watched: Some(stdout),
        })
    }
}

impl Source for PipeReader {
    fn unwatch(&mut self) {
        if let Some(watched) = self.watched.take() {
            // Deregistering fails only when the reactor is gone; the read after it says so.
            self.unwatched = watched.into_nonblocking_fd().ok();
        }
    }
}

impl AsyncRead for PipeReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if let Some(fd) = &this.unwatched {
                match rustix::io::read(fd, buf.initialize_unfilled()) {
                    Ok(read) => {
                        buf.advance(read);
                        return Poll::Ready(Ok(()));
                    }
                    Err(rustix::io::Errno::INTR) => continue,
                    Err(rustix::io::Errno::AGAIN) => {
                        let Some(fd) = this.unwatched.take() else {
                            continue;
                        };
                        this.watched = Some(pipe::Receiver::from_owned_fd_unchecked(fd)?);
                    }
                    Err(e) => return Poll::Ready(Err(e.into())),
                }
            }
            return match &mut this.watched {
                Some(watched) => Pin::new(watched).poll_read(cx, buf),
                None => Poll::Ready(Err(io::Error::other("the pipe is gone"))),
            };
        }
    }
}

/// The position of the first newline in `bytes`.
fn memchr(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|&b| b == b'\n')
}

/// The longest end of `text` within `max` bytes that starts at a line (or, when its last line
/// alone is longer, at a character).
fn last_lines(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    let end = &text[start..];
    match end.find('\n') {
        Some(newline) if newline + 1 < end.len() => &end[newline + 1..],
        _ => end,
    }
}

/// Locks a mutex that is never held across an await and never poisoned by a panic inside.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Source for &[u8] {}
    impl Source for tokio::io::DuplexStream {}

    async fn read_all(input: &[u8], max: usize, capacity: usize) -> Vec<String> {
        let mut reader = LineReader::new(input, max, capacity, None);
        let mut out = Vec::new();
        loop {
            match reader.next().await.unwrap() {
                Read::Line(l) => out.push(String::from_utf8(l.to_vec()).unwrap()),
                Read::TooLong { prefix, read } => out.push(format!(
                    "too long: {} ({read} read)",
                    String::from_utf8(prefix.to_vec()).unwrap()
                )),
                Read::Eof => return out,
            }
        }
    }

    #[tokio::test]
    async fn lines_are_split_bounded_and_skipped_past_when_too_long() {
        let input = b"ab\r\nabcdefgh\nabcd\n\nlast";
        // A one-byte buffer forces every line across many reads (the buffer grows for it).
        assert_eq!(
            read_all(input, 4, 1).await,
            ["ab", "too long: abcd (5 read)", "abcd", "", "last"],
            "a too-long line is reported once, cut, and reading resumes after it"
        );
        // One read takes everything: the too-long line is seen whole.
        assert_eq!(
            read_all(input, 4, 64).await,
            ["ab", "too long: abcd (8 read)", "abcd", "", "last"]
        );
        assert_eq!(
            read_all(input, 4, 3).await,
            ["ab", "too long: abcd (5 read)", "abcd", "", "last"]
        );
    }

    #[tokio::test]
    async fn line_ends_and_the_end_of_the_stream() {
        assert_eq!(read_all(b"", 4, 8).await, Vec::<String>::new());
        assert_eq!(read_all(b"\n", 4, 8).await, [""]);
        assert_eq!(
            read_all(b"a\rb\r\r\n\r", 8, 2).await,
            ["a\rb\r", "\r"],
            "only the \\r before a newline is a line ending; a last line is kept as it is"
        );
        assert_eq!(
            read_all(b"ok\nabcdefgh", 4, 2).await,
            ["ok", "too long: abcd (5 read)"],
            "a too-long last line without a newline ends the stream"
        );
    }

    #[tokio::test]
    async fn a_long_line_grows_the_buffer_and_it_shrinks_back() {
        let long = "x".repeat(1000);
        let input = format!("{long}\nshort\n");
        let mut reader = LineReader::new(input.as_bytes(), 2000, 16, None);
        match reader.next().await.unwrap() {
            Read::Line(line) => assert_eq!(line, long.as_bytes()),
            other => panic!("expected the long line, got {other:?}"),
        }
        assert!(reader.buf.len() > 1000);
        match reader.next().await.unwrap() {
            Read::Line(line) => assert_eq!(line, b"short"),
            other => panic!("expected a line, got {other:?}"),
        }
        assert!(matches!(reader.next().await.unwrap(), Read::Eof));
        assert_eq!(
            reader.buf.len(),
            16,
            "back to its capacity once the line is gone"
        );
    }

    #[tokio::test]
    async fn a_cancelled_read_keeps_the_partial_line() {
        use tokio::io::AsyncWriteExt as _;
        let (mut writer, reader) = tokio::io::duplex(64);
        let mut lines = LineReader::new(reader, 100, 8, Some(COALESCE));
        writer.write_all(b"par").await.unwrap();
        let cancelled = tokio::time::timeout(Duration::from_millis(20), lines.next()).await;
        assert!(cancelled.is_err(), "no line yet");
        writer.write_all(b"tial\n").await.unwrap();
        match lines.next().await.unwrap() {
            Read::Line(line) => assert_eq!(line, b"partial"),
            other => panic!("expected a line, got {other:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_reader_that_caught_up_waits_and_then_reads_many_lines_at_once() {
        use tokio::io::AsyncWriteExt as _;
        let (mut writer, reader) = tokio::io::duplex(1024);
        let mut lines = LineReader::new(reader, 100, 1024, Some(COALESCE));
        writer.write_all(b"one\n").await.unwrap();
        assert!(matches!(lines.next().await.unwrap(), Read::Line(b"one")));
        let caught_up = Instant::now();
        writer.write_all(b"two\n").await.unwrap();
        writer.write_all(b"three\n").await.unwrap();
        assert!(matches!(lines.next().await.unwrap(), Read::Line(b"two")));
        assert!(caught_up.elapsed() >= COALESCE, "it waited before reading");
        assert!(lines.scan(), "both lines came in one read");
        assert!(matches!(lines.take(), Read::Line(b"three")));

        // Without a wait set, a reader reads at once.
        let (mut writer, reader) = tokio::io::duplex(1024);
        let mut lines = LineReader::new(reader, 100, 1024, None);
        writer.write_all(b"one\n").await.unwrap();
        assert!(matches!(lines.next().await.unwrap(), Read::Line(b"one")));
        let started = Instant::now();
        writer.write_all(b"two\n").await.unwrap();
        assert!(matches!(lines.next().await.unwrap(), Read::Line(b"two")));
        assert_eq!(started.elapsed(), Duration::ZERO);
    }

    #[test]
    fn an_exit_error_keeps_the_end_of_a_long_stderr_tail() {
        use std::os::unix::process::ExitStatusExt as _;
        let noise = "INFO noise\n".repeat(10_000);
        let exit = Exit {
            program: "tap-x".into(),
            status: ExitStatus::from_raw(3 << 8),
            terminated: false,
            killed: false,
            stderr_tail: format!("{noise}CRITICAL the last line"),
        };
        let message = exit.check().expect_err("exit 3").to_string();
        assert!(
            message.starts_with("tap-x ended with exit status: 3"),
            "{message}"
        );
        assert!(message.ends_with("\nINFO noise\nCRITICAL the last line"));
        assert!(message.len() <= hakiri_core::run::MAX_ERROR_LEN);
        assert_eq!(last_lines("ab\ncd\nef", 4), "ef", "starts at a line");
        assert_eq!(last_lines("abcdef", 4), "cdef", "or inside one too long");
    }

    #[test]
    fn the_tail_keeps_the_last_lines_within_its_bytes() {
        let mut tail = Tail::new(11);
        for line in ["one", "two", "three", "four"] {
            tail.push(line.into());
        }
        assert_eq!(tail.text(), "three\nfour");
        tail.push("a-very-long-line".into());
        assert_eq!(
            tail.text(),
            "-long-line",
            "a line longer than the tail keeps its end"
        );
    }
}
