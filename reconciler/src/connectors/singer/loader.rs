//! Hakiri as the tap's loader: records are appended to `<output>/<stream>/<run id>.jsonl`, and a
//! state is checkpointed only once every output is flushed and `fsync`ed, so a checkpoint never
//! covers a record that is not on disk.

use std::path::Path;

use serde_json::value::RawValue;

use super::super::output::{read_all, Ended, Halt, Lines};
use super::super::Output;
use super::session::{Checked, Session, StreamId};
use crate::connector::ConnectorError;
use crate::process::ChildProcess;

/// One run of the tap, its records written by Hakiri.
pub(super) struct Loader<'a> {
    session: Session<'a>,
    output: &'a Path,
    /// Each stream's output, by its [`StreamId`].
    outputs: Vec<Option<Output>>,
}

impl<'a> Loader<'a> {
    pub(super) fn new(session: Session<'a>, output: &'a Path) -> Self {
        Self {
            session,
            output,
            outputs: Vec::new(),
        }
    }

    /// Reads the tap to its end (or to a stop), then checkpoints its last state.
    pub(super) async fn run(mut self, mut tap: ChildProcess) -> Result<(), ConnectorError> {
        let (ctx, grace) = (self.session.ctx, self.session.config.stop_grace);
        // After a shutdown's SIGTERM, what the tap prints until it exits — records and the final
        // state that covers them — still counts.
        let Ended {
            halt,
            exit,
            stopping,
        } = read_all(&mut tap, ctx, grace, &mut self).await?;
        match halt {
            // Nothing the tap printed after the stop point counts, but the state before it covers
            // records written before it.
            Some(Halt::Stop(error)) => {
                self.checkpoint().await?;
                Err(error)
            }
            Some(Halt::Abort(error)) => Err(error),
            None => {
                // A state printed before a failure still covers the records before it.
                self.checkpoint().await?;
                if stopping {
                    // The tap exits 0 after a SIGTERM, but it did not finish: the run is
                    // cancelled, to be resumed from this checkpoint.
                    return Err(ConnectorError::Stopped(
                        "the reconciler is shutting down; the tap was stopped after its last state was recorded".into(),
                    ));
                }
                exit.check()
            }
        }
    }

    /// Appends a record to its stream's output as the tap wrote it: one JSON object, one line.
    async fn write(&mut self, stream: StreamId, record: &RawValue) -> Result<(), ConnectorError> {
        if self.outputs.len() <= stream.0 {
            self.outputs.resize_with(stream.0 + 1, || None);
        }
        let output = match &mut self.outputs[stream.0] {
            Some(output) => output,
            empty => {
                let dir = self.output.join(self.session.stream_name(stream).as_str());
                let file_name = format!("{}.jsonl", self.session.ctx.run().id);
                empty.insert(Output::new(dir, file_name))
            }
        };
        let record = record.get().as_bytes();
        output.write_line(record).await?;
        self.session.loaded(stream, record.len() as u64 + 1);
        Ok(())
    }

    /// Makes every output durable, then checkpoints the kept state. Records written after the
    /// last state are made durable too (a run's file holds every record the run read), but no
    /// checkpoint covers them: the next run reads them again.
    async fn checkpoint(&mut self) -> Result<(), ConnectorError> {
        for output in self.outputs.iter_mut().flatten() {
            output.sync().await?;
        }
        self.session.checkpoint().await
    }
}

impl Lines for Loader<'_> {
    /// Applies one line of the tap's output.
    async fn apply(&mut self, line: &[u8]) -> Result<(), Halt> {
        match self.session.check(line).await? {
            Checked::Record { stream, record } => {
                self.write(stream, record).await.map_err(Halt::Stop)?;
            }
            Checked::State(state) => {
                self.session.keep(state);
                if self.session.due() {
                    self.checkpoint().await.map_err(|e| self.session.halt(e))?;
                }
            }
            Checked::Other => {}
        }
        Ok(())
    }
}
