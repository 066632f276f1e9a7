//! Hakiri as the tap's loader: records are appended to `<output>/<stream>/<run id>.jsonl`, and a
//! state is checkpointed only once every output is flushed and `fsync`ed, so a checkpoint never
//! covers a record that is not on disk.

use std::collections::BTreeMap;
use std::path::Path;

use hakiri_core::StreamName;
use serde_json::{Map, Value};

use super::super::Output;
use super::session::{Checked, Halt, Session};
use crate::connector::ConnectorError;
use crate::process::ChildProcess;

/// One run of the tap, its records written by Hakiri.
pub(super) struct Loader<'a> {
    session: Session<'a>,
    output: &'a Path,
    outputs: BTreeMap<StreamName, Output>,
}

impl<'a> Loader<'a> {
    pub(super) fn new(session: Session<'a>, output: &'a Path) -> Self {
        Self {
            session,
            output,
            outputs: BTreeMap::new(),
        }
    }

    /// Reads the tap to its end (or to a stop), then checkpoints its last state.
    pub(super) async fn run(mut self, mut tap: ChildProcess) -> Result<(), ConnectorError> {
        let ctx = self.session.ctx;
        let grace = self.session.config.stop_grace;
        // Set when the reconciler shuts down: the tap was asked to stop (SIGTERM) and what it
        // prints until it exits — records and the final state that covers them — still counts.
        let mut stopping = false;
        let halt = loop {
            let line = tokio::select! {
                line = tap.next_line() => line,
                () = ctx.cancelled() => break Some(Halt::Abort(ConnectorError::Stopped("cancelled".into()))),
                () = ctx.stopping(), if !stopping => {
                    tap.terminate(grace);
                    stopping = true;
                    continue;
                }
            };
            let line = match line {
                Ok(Some(line)) => line,
                Ok(None) => break None,
                Err(e) => break Some(Halt::Stop(e.into())),
            };
            if let Err(halt) = self.apply(&line).await {
                break Some(halt);
            }
        };
        let exit = match &halt {
            None => tap.wait().await?,
            Some(_) => tap.stop(grace).await?,
        };
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

    /// Applies one line of the tap's output.
    async fn apply(&mut self, line: &[u8]) -> Result<(), Halt> {
        match self.session.check(line).await? {
            Checked::Record { stream, record } => {
                self.write(&stream, &record).await.map_err(Halt::Stop)?;
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

    async fn write(
        &mut self,
        stream: &StreamName,
        record: &Map<String, Value>,
    ) -> Result<(), ConnectorError> {
        let mut bytes = serde_json::to_vec(record)
            .map_err(|e| ConnectorError::permanent(format!("cannot encode a record: {e}")))?;
        bytes.push(b'\n');
        let output = match self.outputs.get_mut(stream) {
            Some(output) => output,
            None => {
                let dir = self.output.join(stream.as_str());
                let output = Output::new(dir, format!("{}.jsonl", self.session.ctx.run().id));
                self.outputs.entry(stream.clone()).or_insert(output)
            }
        };
        output.write(&bytes).await?;
        self.session.ctx.record(stream, 1, bytes.len() as u64);
        Ok(())
    }

    /// Makes every output durable, then checkpoints the kept state. Records written after the
    /// last state are made durable too (a run's file holds every record the run read), but no
    /// checkpoint covers them: the next run reads them again.
    async fn checkpoint(&mut self) -> Result<(), ConnectorError> {
        for output in self.outputs.values_mut() {
            output.sync().await?;
        }
        self.session.checkpoint().await
    }
}
