//! `source read`, with Hakiri as the loader: records are appended to
//! `<output>/<stream>/<run id>.jsonl` after being checked against their stream's observed schema;
//! each stream's newest state is kept, and at most once per interval (and at the end) every
//! output is flushed and `fsync`ed, then the changed cursors are checkpointed.

use std::collections::BTreeMap;

use hakiri_core::{CursorValue, StreamName};
use serde_json::value::RawValue;
use tokio::time::Instant;

use super::super::output::{read_all, Ended, Halt, Lines};
use super::super::singer::records::RecordCheck;
use super::super::Output;
use super::config::Config;
use super::message::{FailureType, Message, Trace, TraceError};
use super::state::{self, Scope};
use crate::connector::{ConnectorError, RunContext};
use crate::process::ChildProcess;

/// A stream the run reads.
struct Stream {
    name: StreamName,
    check: RecordCheck,
    output: Output,
    /// Records written since the stream's previous state: its `recordCount` must say the same.
    since_state: u64,
    /// Records and bytes written, added to the run's statistics at the end.
    records: u64,
    bytes: u64,
}

/// One `read` of the source.
pub(super) struct Read<'a> {
    ctx: &'a RunContext,
    config: &'a Config,
    streams: Vec<Stream>,
    /// The stream of the last record.
    last: usize,
    /// Each cursor's newest value not yet checkpointed: it covers the records written before it.
    pending: BTreeMap<StreamName, CursorValue>,
    last_checkpoint: Instant,
    /// The last `TRACE ERROR`: the run's error when the source fails.
    error: Option<TraceError>,
    /// The source's output line being applied, counted from 1.
    line: u64,
}

impl<'a> Read<'a> {
    /// A read of `streams` (observed, with their schemas), writing under the config's output.
    pub(super) fn new(
        ctx: &'a RunContext,
        config: &'a Config,
        streams: Vec<(StreamName, RecordCheck)>,
    ) -> Self {
        let file_name = format!("{}.jsonl", ctx.run().id);
        let streams = streams
            .into_iter()
            .map(|(name, check)| Stream {
                output: Output::new(config.output.join(name.as_str()), file_name.clone()),
                name,
                check,
                since_state: 0,
                records: 0,
                bytes: 0,
            })
            .collect();
        Self {
            ctx,
            config,
            streams,
            last: 0,
            pending: BTreeMap::new(),
            last_checkpoint: Instant::now(),
            error: None,
            line: 0,
        }
    }

    /// Reads the source to its end (or to a stop), then checkpoints its last states.
    pub(super) async fn run(mut self, mut source: ChildProcess) -> Result<(), ConnectorError> {
        let (ctx, grace) = (self.ctx, self.config.stop_grace);
        // After a shutdown's SIGTERM (a CDK source dies of it), the states it printed before
        // still count.
        let Ended {
            halt,
            exit,
            stopping,
        } = read_all(&mut source, ctx, grace, &mut self).await?;
        self.count();
        match halt {
            Some(Halt::Stop(error)) => {
                self.checkpoint().await?;
                Err(error)
            }
            Some(Halt::Abort(error)) => Err(error),
            None => {
                // A state printed before a failure still covers the records before it.
                self.checkpoint().await?;
                if stopping {
                    return Err(ConnectorError::Stopped(
                        "the reconciler is shutting down; the source was stopped after its last state was recorded".into(),
                    ));
                }
                match self.error.take() {
                    Some(error) => Err(failure(&exit.program, &error)),
                    None => exit.check(),
                }
            }
        }
    }

    fn trace(&mut self, trace: Trace) {
        let run = &self.ctx.run().id;
        if let Some(error) = trace.error {
            tracing::warn!(%run, message = ?error.message, internal = ?error.internal_message,
                failure_type = ?error.failure_type, "the source reports an error");
            self.error = Some(error);
        } else if let Some(status) = trace.stream_status {
            let name = status.stream_descriptor.stream_name();
            tracing::info!(%run, stream = %name, status = ?status.status, "stream status");
            if let (Some(stream), Some(kept)) = (self.named(&name), status.status.kept()) {
                self.ctx.stream_status(stream, kept);
            }
        } else if let Some(estimate) = trace.estimate {
            let name = estimate.stream().map(|s| s.stream_name().into_owned());
            tracing::info!(%run, stream = ?name, rows = ?estimate.row_estimate,
                bytes = ?estimate.byte_estimate, "estimate");
            if let Some(stream) = name.and_then(|name| self.named(&name)) {
                self.ctx
                    .estimate(stream, estimate.records(), estimate.bytes());
            }
        } else {
            tracing::debug!(%run, kind = trace.kind, "trace passed over");
        }
    }

    /// The stream read under `name`, if it is one (a trace may name any stream).
    fn named(&self, name: &str) -> Option<&StreamName> {
        self.streams
            .iter()
            .map(|s| &s.name)
            .find(|s| s.as_str() == name)
    }

    /// The stream a RECORD names.
    fn find(&mut self, name: &str) -> Result<usize, Halt> {
        if self
            .streams
            .get(self.last)
            .is_some_and(|last| last.name.as_str() == name)
        {
            return Ok(self.last);
        }
        match self.streams.iter().position(|s| s.name.as_str() == name) {
            Some(at) => {
                self.last = at;
                Ok(at)
            }
            None => Err(self.stop(format!(
                "a RECORD of stream {name:?}, which is not in the configured catalog"
            ))),
        }
    }

    /// Checks a record against its stream's schema and appends it, as the source wrote it.
    async fn write(&mut self, at: usize, data: &RawValue) -> Result<(), ConnectorError> {
        let line = self.line;
        let stream = &mut self.streams[at];
        if let Some(problem) = stream.check.mismatch(data) {
            return Err(ConnectorError::permanent(format!(
                "RECORD of stream {} (line {line}) does not fit its schema: {problem}",
                stream.name
            )));
        }
        let record = data.get().as_bytes();
        stream.output.write_line(record).await?;
        stream.since_state += 1;
        stream.records += 1;
        stream.bytes += record.len() as u64 + 1;
        Ok(())
    }

    /// Makes every output durable, then checkpoints the kept states whose cursors changed.
    async fn checkpoint(&mut self) -> Result<(), ConnectorError> {
        for stream in &mut self.streams {
            stream.output.sync().await?;
        }
        for (stream, value) in std::mem::take(&mut self.pending) {
            if self.ctx.cursor(&stream).as_ref() != Some(&value)
                && !(value.is_initial() && self.ctx.cursor(&stream).is_none())
            {
                self.ctx.checkpoint(&stream, value).await?;
            }
        }
        self.last_checkpoint = Instant::now();
        Ok(())
    }

    /// Adds the records written to the run's statistics.
    fn count(&mut self) {
        for stream in &mut self.streams {
            if stream.records > 0 {
                self.ctx.record(&stream.name, stream.records, stream.bytes);
                (stream.records, stream.bytes) = (0, 0);
            }
        }
    }

    fn program(&self) -> String {
        self.config.source.program.display().to_string()
    }

    /// A permanent stop naming the line.
    fn stop(&self, problem: impl std::fmt::Display) -> Halt {
        Halt::Stop(ConnectorError::permanent(format!(
            "{} output line {}: {problem}",
            self.program(),
            self.line
        )))
    }

    /// How an error from the catalog ends the read: a lost lease or a cancel writes nothing
    /// more; anything else keeps what came before.
    fn halt(&self, error: ConnectorError) -> Halt {
        if self.ctx.is_cancelled() {
            Halt::Abort(error)
        } else {
            Halt::Stop(error)
        }
    }
}

/// The run's error for a source that reported `error`: its message (and the internal one),
/// permanent for a config error, transient otherwise.
pub(super) fn failure(program: &str, error: &TraceError) -> ConnectorError {
    let mut message = format!(
        "{program}: {}",
        error
            .message
            .as_deref()
            .unwrap_or("failed without a message")
    );
    if let Some(internal) = error
        .internal_message
        .as_deref()
        .filter(|internal| Some(*internal) != error.message.as_deref())
    {
        message.push_str(" (");
        message.push_str(internal.trim_end());
        message.push(')');
    }
    if let Some(stream) = &error.stream_descriptor {
        message.push_str(&format!(" [stream {}]", stream.stream_name()));
    }
    match error.failure_type {
        Some(FailureType::ConfigError) => ConnectorError::permanent(message),
        _ => ConnectorError::transient(message),
    }
}

/// Logs a source's LOG message at its level.
pub(super) fn log(ctx: &RunContext, level: &str, message: &str) {
    let run = &ctx.run().id;
    match level {
        "FATAL" | "ERROR" => tracing::error!(%run, "{message}"),
        "WARN" => tracing::warn!(%run, "{message}"),
        "INFO" => tracing::info!(%run, "{message}"),
        "DEBUG" => tracing::debug!(%run, "{message}"),
        _ => tracing::trace!(%run, "{message}"),
    }
}

impl Lines for Read<'_> {
    /// Applies one line of the source's output.
    async fn apply(&mut self, line: &[u8]) -> Result<(), Halt> {
        self.line += 1;
        let message = Message::parse(line).map_err(|e| self.stop(e))?;
        match message {
            Message::Record { stream, data } => {
                let at = self.find(&stream.stream_name())?;
                self.write(at, data).await.map_err(Halt::Stop)
            }
            Message::State(value) => {
                let set = state::checkpoint(&value).map_err(|e| self.stop(e))?;
                // The CDK counts records per stream and cannot count them for a GLOBAL state
                // (it raises on one), so only a STREAM state's count has a known meaning.
                if set.scope == Scope::Stream {
                    let sent = self
                        .streams
                        .iter_mut()
                        .find(|stream| stream.name == set.stream)
                        .map_or(0, |stream| std::mem::take(&mut stream.since_state));
                    if let Some(count) = set.record_count {
                        #[allow(clippy::cast_precision_loss)] // exact below 2^53 records
                        if count != sent as f64 {
                            return Err(self.stop(format!(
                                "the source's state of {} says it sent {count} records since \
                                 its previous state, but Hakiri read {sent}; the state is not \
                                 recorded",
                                set.stream
                            )));
                        }
                    }
                }
                self.pending.insert(set.stream, set.value);
                if self.last_checkpoint.elapsed() >= self.config.checkpoint_interval {
                    self.checkpoint().await.map_err(|e| self.halt(e))?;
                }
                Ok(())
            }
            Message::Log { level, message } => {
                log(self.ctx, &level, &message);
                Ok(())
            }
            Message::Trace(trace) => {
                self.trace(*trace);
                Ok(())
            }
            Message::Control { kind } => Err(Halt::Stop(ConnectorError::permanent(format!(
                "{} sent a CONTROL {kind} message (line {}): it changed its own config (a rotated \
                 credential, say), which Hakiri cannot store yet; the run stops rather than lose \
                 it. Update the pipeline's config by hand, or use a source that does not rotate \
                 its config",
                self.program(),
                self.line
            )))),
            Message::ConnectionStatus { .. } | Message::Catalog(_) => Ok(()),
            Message::Other { kind } => {
                tracing::debug!(run = %self.ctx.run().id, kind, "airbyte message passed over");
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(failure_type: Option<FailureType>) -> TraceError {
        TraceError {
            message: Some("Config validation error: 'x' is not of type 'integer'".into()),
            internal_message: Some("'x' is not of type 'integer'".into()),
            failure_type,
            stream_descriptor: None,
        }
    }

    #[test]
    fn a_config_error_is_permanent_and_every_other_failure_transient() {
        let permanent = failure("source-faker", &error(Some(FailureType::ConfigError)));
        assert!(matches!(
            permanent,
            ConnectorError::Failed {
                retryable: false,
                ..
            }
        ));
        assert_eq!(
            permanent.to_string(),
            "source-faker: Config validation error: 'x' is not of type 'integer' ('x' is not of type 'integer')"
        );
        for kind in [
            Some(FailureType::SystemError),
            Some(FailureType::TransientError),
            Some(FailureType::Other),
            None,
        ] {
            assert!(
                matches!(
                    failure("s", &error(kind)),
                    ConnectorError::Failed {
                        retryable: true,
                        ..
                    }
                ),
                "{kind:?}"
            );
        }
    }
}
