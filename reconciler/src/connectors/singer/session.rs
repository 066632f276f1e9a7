//! What a tap's messages mean for the catalog, whoever loads its records: each SCHEMA observed
//! before anything after it counts, each RECORD checked against its stream's observed schema,
//! and the states that cover loaded records checkpointed, at most one batch per interval.
//! Both modes build on it: `loader.rs` (Hakiri writes the records) and `pipe.rs`
//! (a Singer target does).

use std::path::Path;

use hakiri_core::{Schema, StreamName};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use tokio::time::Instant;

use super::super::stream_dir_name;
use super::config::Config;
use super::message::Message;
use super::records::RecordCheck;
use super::state;
use crate::connector::{ConnectorError, RunContext};

pub(super) use super::super::output::Halt;

/// One run's view of its tap: the schemas seen, the line being read, the state to checkpoint.
pub(super) struct Session<'a> {
    pub(super) ctx: &'a RunContext,
    pub(super) config: &'a Config,
    /// Each stream observed, with its schema as last observed: records are checked against it.
    /// A tap has few streams and prints one for a long while, so a list and `last` find them.
    streams: Vec<Stream>,
    /// The stream of the last record.
    last: usize,
    /// The newest state not yet checkpointed: it covers every record loaded before it.
    pending: Option<Value>,
    last_checkpoint: Instant,
    /// The tap's output line being applied, counted from 1.
    pub(super) line: u64,
}

/// A stream observed in this run.
struct Stream {
    name: StreamName,
    check: RecordCheck,
    /// Records and bytes loaded, not yet added to the run's statistics (a lock and a map
    /// entry per record otherwise).
    records: u64,
    bytes: u64,
}

/// A stream of this run, as [`Session::check`] names it to the loader of its records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct StreamId(pub(super) usize);

/// A tap's line, checked: what the loader of its records does with it.
pub(super) enum Checked<'l> {
    /// A record that fits its stream's schema: a JSON object, as the tap wrote it.
    Record {
        stream: StreamId,
        record: &'l RawValue,
    },
    /// A state; it covers the records before it once they are loaded.
    State(Value),
    /// A schema, observed and accepted, or a message Hakiri passes over.
    Other,
}

impl<'a> Session<'a> {
    pub(super) fn new(ctx: &'a RunContext, config: &'a Config) -> Self {
        Self {
            ctx,
            config,
            streams: Vec::new(),
            last: 0,
            pending: None,
            last_checkpoint: Instant::now(),
            line: 0,
        }
    }

    fn program(&self) -> &Path {
        &self.config.tap.program
    }

    /// Parses the tap's next line: observes a SCHEMA (a held or rejected one halts), checks a
    /// RECORD against its stream's schema.
    pub(super) async fn check<'l>(&mut self, line: &'l [u8]) -> Result<Checked<'l>, Halt> {
        self.line += 1;
        let message = Message::parse(line).map_err(|e| {
            Halt::Stop(ConnectorError::permanent(format!(
                "{} output line {}: {e}",
                self.program().display(),
                self.line
            )))
        })?;
        match message {
            Message::Schema {
                stream,
                schema,
                key_properties,
            } => {
                let stream = self.stream(&stream)?;
                let schema = Schema::from_json_schema(&schema, &key_properties).map_err(|e| {
                    Halt::Stop(ConnectorError::permanent(format!(
                        "SCHEMA of stream {stream} (line {}): {e}",
                        self.line
                    )))
                })?;
                let known = self.streams.iter().find(|known| known.name == stream);
                if known.map(|known| known.check.schema()) != Some(&schema) {
                    self.observe(stream, schema)
                        .await
                        .map_err(|e| self.halt(e))?;
                }
                Ok(Checked::Other)
            }
            Message::Record {
                stream: name,
                record,
            } => {
                let at = self.find(&name)?;
                let stream = &self.streams[at];
                if let Some(problem) = stream.check.mismatch(record) {
                    return Err(Halt::Stop(ConnectorError::permanent(format!(
                        "RECORD of stream {} (line {}) does not fit its schema: {problem}",
                        stream.name, self.line
                    ))));
                }
                Ok(Checked::Record {
                    stream: StreamId(at),
                    record,
                })
            }
            Message::State { value } => Ok(Checked::State(value)),
            Message::Other { kind } => {
                tracing::debug!(run = %self.ctx.run().id, kind, "singer message passed over");
                Ok(Checked::Other)
            }
        }
    }

    /// Observes `schema` on `stream`; carries on only if it is accepted.
    pub(super) async fn observe(
        &mut self,
        stream: StreamName,
        schema: Schema,
    ) -> Result<(), ConnectorError> {
        if stream.as_str() == state::RESERVED {
            return Err(ConnectorError::permanent(format!(
                "the tap offers a stream named {:?}, the name of the cursor that keeps the rest of its state",
                state::RESERVED
            )));
        }
        self.ctx.observe_schema(&stream, schema.clone()).await?;
        let check = RecordCheck::new(schema);
        match self.streams.iter_mut().find(|known| known.name == stream) {
            Some(known) => known.check = check,
            None => self.streams.push(Stream {
                name: stream,
                check,
                records: 0,
                bytes: 0,
            }),
        }
        Ok(())
    }

    /// The observed stream a RECORD names.
    fn find(&mut self, name: &str) -> Result<usize, Halt> {
        if self
            .streams
            .get(self.last)
            .is_some_and(|last| last.name.as_str() == name)
        {
            return Ok(self.last);
        }
        match self
            .streams
            .iter()
            .position(|known| known.name.as_str() == name)
        {
            Some(at) => {
                self.last = at;
                Ok(at)
            }
            None => {
                let stream = self.stream(name)?;
                Err(Halt::Stop(ConnectorError::permanent(format!(
                    "RECORD of stream {stream} (line {}) before any SCHEMA of it",
                    self.line
                ))))
            }
        }
    }

    /// The name of a stream [`Session::check`] returned.
    pub(super) fn stream_name(&self, stream: StreamId) -> &StreamName {
        &self.streams[stream.0].name
    }

    /// Counts a record of `stream` loaded, `bytes` long, in the run's statistics.
    pub(super) fn loaded(&mut self, stream: StreamId, bytes: u64) {
        let stream = &mut self.streams[stream.0];
        stream.records += 1;
        stream.bytes += bytes;
    }

    /// Keeps `state` as the one to checkpoint next; `{}` says nothing (taps and targets print
    /// it before they know anything) and is passed over.
    pub(super) fn keep(&mut self, state: Value) {
        if !state.as_object().is_some_and(Map::is_empty) {
            self.pending = Some(state);
        }
    }

    /// Whether a kept state waits and the checkpoint interval has passed.
    pub(super) fn due(&self) -> bool {
        self.pending.is_some() && self.last_checkpoint.elapsed() >= self.config.checkpoint_interval
    }

    /// Checkpoints the kept state's cursors that changed. The caller has made everything the
    /// state covers durable.
    pub(super) async fn checkpoint(&mut self) -> Result<(), ConnectorError> {
        let Some(value) = self.pending.take() else {
            return Ok(());
        };
        let cursors = state::split(&value)
            .map_err(|e| ConnectorError::permanent(format!("{}: {e}", self.program().display())))?;
        for (stream, cursor) in cursors {
            if self.ctx.cursor(&stream).as_ref() != Some(&cursor) {
                self.ctx.checkpoint(&stream, cursor).await?;
            }
        }
        self.last_checkpoint = Instant::now();
        Ok(())
    }

    /// A stream name from the tap, safe as one directory name.
    fn stream(&self, name: &str) -> Result<StreamName, Halt> {
        stream_dir_name(name).map_err(|problem| {
            Halt::Stop(ConnectorError::permanent(format!(
                "{} output line {}: stream {problem}",
                self.program().display(),
                self.line
            )))
        })
    }

    /// How an error from the catalog or the outputs ends the read: a lost lease or a cancel
    /// writes nothing more; anything else keeps what came before.
    pub(super) fn halt(&self, error: ConnectorError) -> Halt {
        if self.ctx.is_cancelled() {
            Halt::Abort(error)
        } else {
            Halt::Stop(error)
        }
    }
}

/// The records counted are added to the run's statistics, however the run ends.
impl Drop for Session<'_> {
    fn drop(&mut self) {
        for stream in &mut self.streams {
            if stream.records > 0 {
                self.ctx.record(&stream.name, stream.records, stream.bytes);
            }
        }
    }
}
