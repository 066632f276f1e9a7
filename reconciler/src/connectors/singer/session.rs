//! What a tap's messages mean for the catalog, whoever loads its records: each SCHEMA observed
//! before anything after it counts, each RECORD checked against its stream's observed schema,
//! and the states that cover loaded records checkpointed, at most one batch per interval.
//! Both modes build on it: `loader.rs` (Hakiri writes the records) and `pipe.rs`
//! (a Singer target does).

use std::collections::HashMap;
use std::path::Path;

use hakiri_core::{Schema, StreamName};
use serde_json::{Map, Value};
use tokio::time::Instant;

use super::super::stream_dir_name;
use super::config::Config;
use super::message::Message;
use super::{records, state};
use crate::connector::{ConnectorError, RunContext};

/// How reading the tap ended early.
pub(super) enum Halt {
    /// The tap's output is wrong, or a schema stopped the run: stop the tap, keep the
    /// checkpoints that cover what was loaded before this point, and end with this error.
    Stop(ConnectorError),
    /// The run was cancelled or its lease lost: stop the tap; nothing more may be written.
    Abort(ConnectorError),
}

/// One run's view of its tap: the schemas seen, the line being read, the state to checkpoint.
pub(super) struct Session<'a> {
    pub(super) ctx: &'a RunContext,
    pub(super) config: &'a Config,
    /// Each stream's schema as last observed: records are checked against it.
    schemas: HashMap<StreamName, Schema>,
    /// The newest state not yet checkpointed: it covers every record loaded before it.
    pending: Option<Value>,
    last_checkpoint: Instant,
    /// The tap's output line being applied, counted from 1.
    pub(super) line: u64,
}

/// A tap's line, checked: what the loader of its records does with it.
pub(super) enum Checked {
    /// A record that fits its stream's schema.
    Record {
        stream: StreamName,
        record: Map<String, Value>,
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
            schemas: HashMap::new(),
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
    pub(super) async fn check(&mut self, line: &[u8]) -> Result<Checked, Halt> {
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
                if self.schemas.get(&stream) != Some(&schema) {
                    self.observe(stream, schema)
                        .await
                        .map_err(|e| self.halt(e))?;
                }
                Ok(Checked::Other)
            }
            Message::Record { stream, record } => {
                let stream = self.stream(&stream)?;
                let Some(schema) = self.schemas.get(&stream) else {
                    return Err(Halt::Stop(ConnectorError::permanent(format!(
                        "RECORD of stream {stream} (line {}) before any SCHEMA of it",
                        self.line
                    ))));
                };
                if let Some(problem) = records::mismatch(schema, &record) {
                    return Err(Halt::Stop(ConnectorError::permanent(format!(
                        "RECORD of stream {stream} (line {}) does not fit its schema: {problem}",
                        self.line
                    ))));
                }
                Ok(Checked::Record { stream, record })
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
        self.schemas.insert(stream, schema);
        Ok(())
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
