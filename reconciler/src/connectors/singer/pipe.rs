//! `tap | target` with Hakiri in the pipe: there is no OS pipe between the two programs. Hakiri
//! reads the tap's stdout, observes each SCHEMA before forwarding it or anything after it,
//! checks each RECORD, and writes the tap's lines to the target's stdin. Only the target knows
//! what it has made durable, and it says so by printing a state on its stdout; Hakiri
//! checkpoints a state only when the target printed it *and* Hakiri forwarded it from the tap —
//! never the tap's own STATE, and never a state the target made up (`{}`, a partial one).
//!
//! Ending: when the tap's output ends, or a schema stops it, the target's stdin is closed; the
//! target then loads what it has, prints its last state and exits, and that state is
//! checkpointed. A cancel or a lost lease stops both programs and checkpoints nothing more.
//! The target's stdout is read by a task of its own, so a target blocked on a full stdout can
//! never stall the pipe.

use std::collections::VecDeque;
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::io::AsyncWriteExt;
use tokio::process::ChildStdin;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::session::{Checked, Halt, Session};
use crate::connector::{ConnectorError, RunContext};
use crate::process::{ChildProcess, Exit, ProcessError};

/// How many forwarded states are remembered for the target to confirm. A target confirms the
/// newest it has loaded and the older ones are forgotten then; a target that confirms nothing
/// for this many states loses only the chance to checkpoint the oldest of them.
const MAX_FORWARDED: usize = 4096;

/// Bytes of the tap's output gathered before they are written to the target (sooner when the
/// tap has nothing more ready).
const WRITE_BUFFER_BYTES: usize = 64 << 10;

/// One run of the tap piped through Hakiri to the target.
pub(super) struct Pipe<'a> {
    session: Session<'a>,
    /// The distinct states forwarded to the target and not yet confirmed, oldest first.
    forwarded: VecDeque<Value>,
    /// Whether the target printed a state Hakiri did not forward (warned once per run).
    warned: bool,
}

/// The target: its stdin, and the lines of its stdout as a task of its own reads them.
struct Target {
    program: String,
    stdin: Option<ChildStdin>,
    /// Lines for `stdin`, not written yet.
    unwritten: Vec<u8>,
    lines: mpsc::UnboundedReceiver<Vec<u8>>,
    /// Whether the target's stdout has ended (it exited, or is about to).
    closed: bool,
    terminate: Option<oneshot::Sender<Duration>>,
    task: AbortOnDrop,
}

impl<'a> Pipe<'a> {
    pub(super) fn new(session: Session<'a>) -> Self {
        Self {
            session,
            forwarded: VecDeque::new(),
            warned: false,
        }
    }

    /// Pipes the tap into the target until the tap ends (or a stop), lets the target finish,
    /// and checkpoints the last state it confirmed.
    pub(super) async fn run(
        mut self,
        mut tap: ChildProcess,
        target: ChildProcess,
    ) -> Result<(), ConnectorError> {
        let ctx = self.session.ctx;
        let grace = self.session.config.stop_grace;
        let mut target = Target::start(target);
        let mut stopping = false;
        let halt = loop {
            if tap.line_ready() {
                // A line already read is forwarded without waiting on anything; a cancel is
                // still seen before it. A shutdown and the target's confirmations are seen when
                // the tap's output read so far runs out.
                if ctx.is_cancelled() {
                    break Some(Halt::Abort(ConnectorError::Stopped("cancelled".into())));
                }
                let line = match tap.read_line().await {
                    Ok(Some(line)) => line,
                    Ok(None) => break None,
                    Err(e) => break Some(Halt::Stop(e.into())),
                };
                if let Err(halt) = self.forward(&mut target, line).await {
                    break Some(halt);
                }
                continue;
            }
            let line = tokio::select! {
                biased;
                () = ctx.cancelled() => break Some(Halt::Abort(ConnectorError::Stopped("cancelled".into()))),
                () = ctx.stopping(), if !stopping => {
                    tap.terminate(grace);
                    stopping = true;
                    continue;
                }
                line = tap.read_line() => line,
                line = target.lines.recv(), if !target.closed => {
                    match line {
                        Some(line) => match self.confirm(&line).await {
                            Ok(()) => continue,
                            Err(halt) => break Some(halt),
                        },
                        None => {
                            target.closed = true;
                            break Some(Halt::Stop(ConnectorError::transient(format!(
                                "{} ended its output before its input ended",
                                target.program
                            ))));
                        }
                    }
                }
                // Nothing else to do: hand the target what it has been given so far.
                () = std::future::ready(()), if !target.unwritten.is_empty() => {
                    if let Err(halt) = target.flush_unless_cancelled(ctx).await {
                        break Some(halt);
                    }
                    continue;
                }
            };
            let line = match line {
                Ok(Some(line)) => line,
                Ok(None) => break None,
                Err(e) => break Some(Halt::Stop(e.into())),
            };
            if let Err(halt) = self.forward(&mut target, line).await {
                break Some(halt);
            }
        };

        let tap_exit = match &halt {
            None => tap.wait().await?,
            Some(_) => tap.stop(grace).await?,
        };
        if let Some(Halt::Abort(error)) = halt {
            target.stop(grace).await;
            return Err(error);
        }
        // The tap is done: the target loads what it was given, confirms it, and exits.
        let target_exit = match self.finish(&mut target).await {
            Ok(exit) => exit,
            Err(Halt::Abort(error) | Halt::Stop(error)) => {
                target.stop(grace).await;
                return Err(error);
            }
        };
        self.session.checkpoint().await?;
        if let Some(Halt::Stop(error)) = halt {
            // A target that failed says why better than a write to its closed stdin.
            target_exit.check()?;
            return Err(error);
        }
        if stopping {
            return Err(ConnectorError::Stopped(
                "the reconciler is shutting down; the tap was stopped and the target's last state recorded".into(),
            ));
        }
        tap_exit.check()?;
        target_exit.check()
    }

    /// Checks one line of the tap's output and forwards it to the target.
    async fn forward(&mut self, target: &mut Target, line: &[u8]) -> Result<(), Halt> {
        match self.session.check(line).await? {
            Checked::Record { stream, .. } => {
                self.session.loaded(stream, line.len() as u64 + 1);
            }
            Checked::State(state) => {
                if self.forwarded.back() != Some(&state) {
                    if self.forwarded.len() == MAX_FORWARDED {
                        self.forwarded.pop_front();
                    }
                    self.forwarded.push_back(state);
                }
            }
            Checked::Other => {}
        }
        target.push(line)?;
        if target.unwritten.len() >= WRITE_BUFFER_BYTES {
            target.flush_unless_cancelled(self.session.ctx).await?;
        }
        Ok(())
    }

    /// A line the target printed: a state it loaded everything before. Kept for the next
    /// checkpoint if Hakiri forwarded that state from the tap.
    async fn confirm(&mut self, line: &[u8]) -> Result<(), Halt> {
        let run = &self.session.ctx.run().id;
        let Ok(state) = serde_json::from_slice::<Value>(line) else {
            tracing::warn!(%run, line = %String::from_utf8_lossy(line), "the target printed a line that is not a JSON state; passed over");
            return Ok(());
        };
        if state.as_object().is_some_and(Map::is_empty) {
            return Ok(());
        }
        match self
            .forwarded
            .iter()
            .rposition(|forwarded| *forwarded == state)
        {
            Some(at) => {
                // Older states are covered by this one.
                self.forwarded.drain(..at);
                self.session.keep(state);
                if self.session.due() {
                    self.session
                        .checkpoint()
                        .await
                        .map_err(|e| self.session.halt(e))?;
                }
            }
            None if !self.warned => {
                self.warned = true;
                tracing::warn!(%run, %state, "the target printed a state that is not one Hakiri forwarded from the tap; it is not checkpointed");
            }
            None => {}
        }
        Ok(())
    }

    /// Closes the target's input and reads what it prints until it exits.
    async fn finish(&mut self, target: &mut Target) -> Result<Exit, Halt> {
        let ctx = self.session.ctx;
        if let Err(e) = target.close().await {
            tracing::warn!(run = %ctx.run().id, error = %e, "cannot close the target's input");
        }
        while !target.closed {
            tokio::select! {
                line = target.lines.recv() => match line {
                    Some(line) => self.confirm(&line).await?,
                    None => target.closed = true,
                },
                () = ctx.cancelled() => return Err(Halt::Abort(ConnectorError::Stopped("cancelled while the target loaded its input".into()))),
            }
        }
        target.exit().await.map_err(|e| Halt::Stop(e.into()))
    }
}

impl Target {
    fn start(mut process: ChildProcess) -> Self {
        let program = process.program().to_owned();
        let stdin = process.take_stdin();
        // A larger pipe takes a whole buffer of lines without waiting for the target to read
        // each part of it (every read it makes would wake Hakiri otherwise).
        #[cfg(target_os = "linux")]
        if let Some(stdin) = &stdin {
            let _ = rustix::pipe::fcntl_setpipe_size(stdin, 1 << 20);
        }
        let (lines_tx, lines) = mpsc::unbounded_channel();
        let (terminate, terminated) = oneshot::channel();
        let task = tokio::spawn(read_stdout(process, lines_tx, terminated));
        Self {
            program,
            stdin,
            unwritten: Vec::with_capacity(WRITE_BUFFER_BYTES),
            lines,
            closed: false,
            terminate: Some(terminate),
            task: AbortOnDrop(Some(task)),
        }
    }

    /// Adds a line to what is written to the target's stdin next.
    fn push(&mut self, line: &[u8]) -> Result<(), Halt> {
        if self.stdin.is_none() {
            return Err(Halt::Stop(ConnectorError::transient(format!(
                "{}'s input is closed",
                self.program
            ))));
        }
        self.unwritten.extend_from_slice(line);
        self.unwritten.push(b'\n');
        Ok(())
    }

    /// Writes what was pushed to the target's stdin.
    async fn flush(&mut self) -> Result<(), ConnectorError> {
        if let Some(stdin) = &mut self.stdin {
            stdin
                .write_all(&self.unwritten)
                .await
                .map_err(|e| self.write_error(&e))?;
        }
        self.unwritten.clear();
        Ok(())
    }

    /// [`Target::flush`]; a target that stops reading must not keep a cancel waiting.
    async fn flush_unless_cancelled(&mut self, ctx: &RunContext) -> Result<(), Halt> {
        tokio::select! {
            flushed = self.flush() => flushed.map_err(Halt::Stop),
            () = ctx.cancelled() => Err(Halt::Abort(ConnectorError::Stopped("cancelled".into()))),
        }
    }

    /// Flushes and closes the target's stdin: the end of its input.
    async fn close(&mut self) -> Result<(), ConnectorError> {
        let flushed = self.flush().await;
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.shutdown().await;
        }
        flushed
    }

    fn write_error(&self, error: &std::io::Error) -> ConnectorError {
        ConnectorError::transient(format!("cannot write to {}'s input: {error}", self.program))
    }

    /// Stops the target (SIGTERM, SIGKILL after `grace`) and waits for it, discarding what it
    /// prints.
    async fn stop(&mut self, grace: Duration) {
        self.stdin = None;
        if let Some(terminate) = self.terminate.take() {
            let _ = terminate.send(grace);
        }
        if let Err(e) = self.exit().await {
            tracing::warn!(program = %self.program, error = %e, "cannot wait for the target");
        }
    }

    /// How the target ended; call once its stdout has ended.
    async fn exit(&mut self) -> Result<Exit, ProcessError> {
        match self.task.0.take() {
            Some(task) => task.await.unwrap_or_else(|e| {
                Err(ProcessError::Io {
                    program: self.program.clone(),
                    action: "wait",
                    source: std::io::Error::other(e),
                })
            }),
            None => Err(ProcessError::Io {
                program: self.program.clone(),
                action: "wait",
                source: std::io::Error::other("waited for twice"),
            }),
        }
    }
}

/// Sends each line of the target's stdout to `lines` until it ends, then waits for the target.
/// A message on `terminate` stops it (SIGTERM to its group, SIGKILL after the grace).
async fn read_stdout(
    mut target: ChildProcess,
    lines: mpsc::UnboundedSender<Vec<u8>>,
    mut terminate: oneshot::Receiver<Duration>,
) -> Result<Exit, ProcessError> {
    let mut terminating = false;
    loop {
        tokio::select! {
            line = target.next_line() => match line {
                Ok(Some(line)) => {
                    let _ = lines.send(line);
                }
                Ok(None) => break,
                Err(e @ ProcessError::LineTooLong { .. }) => {
                    tracing::warn!(error = %e, "passed over a line of the target's output");
                }
                Err(e) => return Err(e),
            },
            grace = &mut terminate, if !terminating => {
                terminating = true;
                if let Ok(grace) = grace {
                    target.terminate(grace);
                }
            }
        }
    }
    drop(lines);
    target.wait().await
}

/// The target's task, aborted if the run is dropped: the [`ChildProcess`] it owns is dropped
/// with it, which kills the target's process group.
struct AbortOnDrop(Option<JoinHandle<Result<Exit, ProcessError>>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(task) = &self.0 {
            task.abort();
        }
    }
}
