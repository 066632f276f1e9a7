//! The read loop every loader of a program's output shares (the Singer loader, the Airbyte
//! reader): the child's stdout applied line by line, the run's cancel and the reconciler's
//! shutdown watched between lines.

use std::time::Duration;

use crate::connector::{ConnectorError, RunContext};
use crate::process::{ChildProcess, Exit};

/// Why a loader stopped reading its program's output before the end.
pub(super) enum Halt {
    /// The output is wrong, or a schema or a request Hakiri cannot serve stopped the run: stop
    /// the program, keep the checkpoints that cover what was written before this point, and end
    /// with this error.
    Stop(ConnectorError),
    /// The run was cancelled or its lease lost: stop the program; nothing more may be written.
    Abort(ConnectorError),
}

/// What a loader does with each line its program prints.
pub(super) trait Lines {
    /// Applies one line; an error stops the reading.
    async fn apply(&mut self, line: &[u8]) -> Result<(), Halt>;
}

/// How a program's output ended.
pub(super) struct Ended {
    /// Why the reading stopped early; `None` at the end of the output.
    pub(super) halt: Option<Halt>,
    /// How the program exited (stopped, after a halt).
    pub(super) exit: Exit,
    /// The reconciler is shutting down: the program was sent SIGTERM, and what it printed until
    /// it exited still counted.
    pub(super) stopping: bool,
}

/// Applies `child`'s output to `lines` until it ends or `lines` halts, then waits for the child
/// (or stops it, after a halt, within `grace`).
pub(super) async fn read_all(
    child: &mut ChildProcess,
    ctx: &RunContext,
    grace: Duration,
    lines: &mut impl Lines,
) -> Result<Ended, ConnectorError> {
    let mut stopping = false;
    let halt = loop {
        let line = if child.line_ready() {
            // A line already read is applied without waiting on anything; a cancel is still seen
            // before it. A shutdown is seen when the output read so far runs out.
            if ctx.is_cancelled() {
                break Some(Halt::Abort(ConnectorError::Stopped("cancelled".into())));
            }
            child.read_line().await
        } else {
            tokio::select! {
                line = child.read_line() => line,
                () = ctx.cancelled() => break Some(Halt::Abort(ConnectorError::Stopped("cancelled".into()))),
                () = ctx.stopping(), if !stopping => {
                    child.terminate(grace);
                    stopping = true;
                    continue;
                }
            }
        };
        let line = match line {
            Ok(Some(line)) => line,
            Ok(None) => break None,
            Err(e) => break Some(Halt::Stop(e.into())),
        };
        if let Err(halt) = lines.apply(line).await {
            break Some(halt);
        }
    };
    let exit = match &halt {
        None => child.wait().await?,
        Some(_) => child.stop(grace).await?,
    };
    Ok(Ended {
        halt,
        exit,
        stopping,
    })
}
