//! Airbyte protocol messages: one JSON object per line on a source's stdout, an envelope whose
//! `type` says which of its fields holds the message (`RECORD` → `record`, `STATE` → `state`,
//! `TRACE` → `trace`, …). "Messages not wrapped in the AirbyteMessage must be dropped", so a line
//! that is JSON but names no type Hakiri knows is passed over; a line that is not a JSON object
//! is an error.
//!
//! A RECORD's `data` is kept as the raw JSON text the source wrote ([`RawValue`], borrowed from
//! the line): it is checked against its stream's schema and written as it is, never built into a
//! [`Value`].

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

/// One line of a source's output, borrowed from it where that saves copying.
#[derive(Debug)]
pub(crate) enum Message<'a> {
    /// One record: `data` is a JSON object, as the source wrote it.
    Record {
        stream: Descriptor<'a>,
        data: &'a RawValue,
    },
    /// The source's state after everything before it (an `AirbyteStateMessage`, see `state.rs`).
    State(Value),
    /// A log line.
    Log { level: String, message: String },
    /// An error, a stream's status or an estimate (boxed: it is the largest, and rare).
    Trace(Box<Trace>),
    /// A control message: the source asks its orchestrator to change something (its config).
    Control { kind: String },
    /// `check`'s answer.
    ConnectionStatus {
        succeeded: bool,
        message: Option<String>,
    },
    /// `discover`'s answer: `{"streams": [AirbyteStream, …]}`.
    Catalog(Value),
    /// A type Hakiri passes over (`SPEC`, or one a later protocol adds).
    Other { kind: String },
}

/// A stream as the protocol names it: a name, and a namespace when the source has them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct Descriptor<'a> {
    // Not borrowed when deserialized, so that it can be read from a `Value` too; a RECORD's
    // descriptor is built from fields borrowed from the line.
    pub(crate) name: Cow<'a, str>,
    #[serde(default)]
    pub(crate) namespace: Option<Cow<'a, str>>,
}

impl Descriptor<'_> {
    /// The name Hakiri gives the stream: `name`, or `namespace.name` in a namespace.
    pub(crate) fn stream_name(&self) -> Cow<'_, str> {
        match &self.namespace {
            Some(namespace) => Cow::Owned(format!("{namespace}.{}", self.name)),
            None => Cow::Borrowed(&self.name),
        }
    }
}

/// A `TRACE` message's body.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub(crate) struct Trace {
    #[serde(rename = "type")]
    pub(crate) kind: String,
    pub(crate) error: Option<TraceError>,
    pub(crate) estimate: Option<Estimate>,
    pub(crate) stream_status: Option<StreamStatus>,
}

/// `TRACE ERROR`: what failed, and whether retrying can help.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub(crate) struct TraceError {
    pub(crate) message: Option<String>,
    pub(crate) internal_message: Option<String>,
    pub(crate) failure_type: Option<FailureType>,
    pub(crate) stream_descriptor: Option<Descriptor<'static>>,
}

/// `failure_type` of a `TRACE ERROR`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum FailureType {
    /// The config is wrong: retrying with it cannot succeed.
    ConfigError,
    /// Something in the source or the service it reads failed.
    SystemError,
    /// A passing condition (a timeout, a rate limit).
    TransientError,
    /// A type a later protocol adds: treated as a system error.
    #[serde(other)]
    Other,
}

/// `TRACE ESTIMATE`: how much a stream (`"type": "STREAM"`) or the whole read (`"SYNC"`) will
/// send.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub(crate) struct Estimate {
    #[serde(rename = "type")]
    pub(crate) kind: Option<String>,
    #[serde(flatten)]
    pub(crate) stream: Descriptor<'static>,
    pub(crate) row_estimate: Option<f64>,
    pub(crate) byte_estimate: Option<f64>,
}

impl Estimate {
    /// The stream it is about: none for an estimate of the whole read.
    pub(crate) fn stream(&self) -> Option<&Descriptor<'static>> {
        (self.kind.as_deref() != Some("SYNC")).then_some(&self.stream)
    }

    /// The estimated records, where the source gave a count (a negative or fractional one is
    /// not a count).
    pub(crate) fn records(&self) -> Option<u64> {
        count(self.row_estimate)
    }

    /// The estimated bytes, where the source gave a count.
    pub(crate) fn bytes(&self) -> Option<u64> {
        count(self.byte_estimate)
    }
}

/// A whole, non-negative number the protocol types as a JSON number.
fn count(n: Option<f64>) -> Option<u64> {
    // `as` saturates at `u64::MAX`.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    n.filter(|n| *n >= 0.0 && n.fract() == 0.0)
        .map(|n| n as u64)
}

/// `TRACE STREAM_STATUS`: where the source got with a stream.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub(crate) struct StreamStatus {
    pub(crate) stream_descriptor: Descriptor<'static>,
    pub(crate) status: Status,
}

/// A `STREAM_STATUS`'s `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub(crate) enum Status {
    Started,
    Running,
    Complete,
    Incomplete,
    /// A status a later protocol adds: logged, not kept.
    #[serde(other)]
    Other,
}

impl Status {
    /// The status as the run's statistics keep it.
    pub(crate) fn kept(self) -> Option<hakiri_core::StreamStatus> {
        use hakiri_core::StreamStatus as Kept;
        match self {
            Status::Started => Some(Kept::Started),
            Status::Running => Some(Kept::Running),
            Status::Complete => Some(Kept::Complete),
            Status::Incomplete => Some(Kept::Incomplete),
            Status::Other => None,
        }
    }
}

/// Why a line is not a message Hakiri can act on; the caller adds where it was.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct BadMessage(String);

fn bad(problem: impl Into<String>) -> BadMessage {
    BadMessage(problem.into())
}

/// The envelope's fields Hakiri reads; the others are skipped (their syntax checked).
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    record: Option<RecordBody<'a>>,
    state: Option<Value>,
    log: Option<LogBody>,
    trace: Option<Trace>,
    control: Option<ControlBody>,
    #[serde(rename = "connectionStatus")]
    connection_status: Option<StatusBody>,
    catalog: Option<Value>,
}

#[derive(Deserialize)]
struct RecordBody<'a> {
    #[serde(borrow)]
    stream: Cow<'a, str>,
    #[serde(default, borrow)]
    namespace: Option<Cow<'a, str>>,
    #[serde(borrow)]
    data: &'a RawValue,
}

#[derive(Deserialize)]
struct LogBody {
    level: String,
    message: String,
}

#[derive(Deserialize)]
struct ControlBody {
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
struct StatusBody {
    status: String,
    message: Option<String>,
}

impl<'a> Message<'a> {
    /// Parses one line.
    ///
    /// # Errors
    /// A line that is not a JSON object, or a message of a known type without the body the
    /// protocol gives it (a `RECORD` without `record.stream` or an object `data`).
    pub(crate) fn parse(line: &'a [u8]) -> Result<Self, BadMessage> {
        let envelope: Envelope<'a> = serde_json::from_slice(line).map_err(|e| {
            match serde_json::from_slice::<Value>(line) {
                Ok(Value::Object(_)) => bad(format!("not an Airbyte message: {e}")),
                Ok(_) => bad("not a JSON object"),
                Err(e) => bad(format!("not a JSON message: {e}")),
            }
        })?;
        let Some(kind) = envelope.kind else {
            return Err(bad("a message without a string \"type\""));
        };
        let missing = |field: &str| bad(format!("a {kind} message without its {field:?}"));
        Ok(match &*kind {
            "RECORD" => {
                let record = envelope.record.ok_or_else(|| missing("record"))?;
                if !record.data.get().starts_with('{') {
                    return Err(bad(format!(
                        "RECORD of {:?} whose \"data\" is not an object",
                        record.stream
                    )));
                }
                Message::Record {
                    stream: Descriptor {
                        name: record.stream,
                        namespace: record.namespace,
                    },
                    data: record.data,
                }
            }
            "STATE" => Message::State(envelope.state.ok_or_else(|| missing("state"))?),
            "LOG" => {
                let log = envelope.log.ok_or_else(|| missing("log"))?;
                Message::Log {
                    level: log.level,
                    message: log.message,
                }
            }
            "TRACE" => Message::Trace(Box::new(envelope.trace.ok_or_else(|| missing("trace"))?)),
            "CONTROL" => Message::Control {
                kind: envelope.control.ok_or_else(|| missing("control"))?.kind,
            },
            "CONNECTION_STATUS" => {
                let status = envelope
                    .connection_status
                    .ok_or_else(|| missing("connectionStatus"))?;
                Message::ConnectionStatus {
                    succeeded: status.status == "SUCCEEDED",
                    message: status.message,
                }
            }
            "CATALOG" => Message::Catalog(envelope.catalog.ok_or_else(|| missing("catalog"))?),
            other => Message::Other {
                kind: other.to_owned(),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse(line: &Value) -> Message<'static> {
        let text: &'static str = Box::leak(line.to_string().into_boxed_str());
        Message::parse(text.as_bytes()).unwrap()
    }

    /// Lines as airbyte-source-faker 7.2.1 prints them.
    #[test]
    fn the_messages_a_real_source_prints_parse() {
        let line = br#"{"type":"RECORD","record":{"stream":"products","data":{"id":1,"make":"Mazda","price":15001},"emitted_at":1796179114727}}"#;
        match Message::parse(line).unwrap() {
            Message::Record { stream, data } => {
                assert_eq!(stream.stream_name(), "products");
                assert_eq!(data.get(), r#"{"id":1,"make":"Mazda","price":15001}"#);
            }
            other => panic!("{other:?}"),
        }
        let state = json!({"type": "STREAM", "stream": {"stream_descriptor": {"name": "users"},
                           "stream_state": {"seed": 42, "loop_offset": 50}},
                           "sourceStats": {"recordCount": 100.0}});
        match parse(&json!({"type": "STATE", "state": state})) {
            Message::State(value) => assert_eq!(value, state),
            other => panic!("{other:?}"),
        }
        match parse(
            &json!({"type": "TRACE", "trace": {"type": "STREAM_STATUS", "emitted_at": 1.5,
                "stream_status": {"stream_descriptor": {"name": "users"}, "status": "STARTED"}}}),
        ) {
            Message::Trace(trace) if trace.stream_status.is_some() => {
                let Trace {
                    kind,
                    stream_status: Some(status),
                    ..
                } = *trace
                else {
                    unreachable!()
                };
                assert_eq!(kind, "STREAM_STATUS");
                assert_eq!(status.stream_descriptor.name, "users");
                assert_eq!(status.status, Status::Started);
                assert_eq!(
                    status.status.kept(),
                    Some(hakiri_core::StreamStatus::Started)
                );
            }
            other => panic!("{other:?}"),
        }
        match parse(
            &json!({"type": "TRACE", "trace": {"type": "ESTIMATE", "emitted_at": 1,
                "estimate": {"name": "users", "type": "STREAM", "row_estimate": 100, "byte_estimate": 45000}}}),
        ) {
            Message::Trace(trace) if trace.estimate.is_some() => {
                let estimate = trace.estimate.unwrap();
                assert_eq!(estimate.stream().unwrap().stream_name(), "users");
                assert_eq!(estimate.records(), Some(100));
                assert_eq!(estimate.bytes(), Some(45000));
            }
            other => panic!("{other:?}"),
        }
        match parse(
            &json!({"type": "TRACE", "trace": {"type": "ERROR", "emitted_at": 1,
                "error": {"message": "Config validation error: 'x' is not of type 'integer'",
                          "internal_message": "'x' is not of type 'integer'",
                          "stack_trace": "Traceback …", "failure_type": "config_error"}}}),
        ) {
            Message::Trace(trace) if trace.error.is_some() => {
                let error = trace.error.unwrap();
                assert_eq!(error.failure_type, Some(FailureType::ConfigError));
                assert!(error.message.unwrap().starts_with("Config validation"));
            }
            other => panic!("{other:?}"),
        }
        match parse(&json!({"type": "LOG", "log": {"level": "INFO", "message": "Check succeeded"}}))
        {
            Message::Log { level, message } => {
                assert_eq!(
                    (level.as_str(), message.as_str()),
                    ("INFO", "Check succeeded")
                );
            }
            other => panic!("{other:?}"),
        }
        match parse(
            &json!({"type": "CONNECTION_STATUS", "connectionStatus": {"status": "FAILED",
                "message": "Config validation error"}}),
        ) {
            Message::ConnectionStatus { succeeded, message } => {
                assert!(!succeeded);
                assert_eq!(message.as_deref(), Some("Config validation error"));
            }
            other => panic!("{other:?}"),
        }
        match parse(
            &json!({"type": "CONTROL", "control": {"type": "CONNECTOR_CONFIG",
                "emitted_at": 1, "connectorConfig": {"config": {"token": "new"}}}}),
        ) {
            Message::Control { kind } => assert_eq!(kind, "CONNECTOR_CONFIG"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse(&json!({"type": "CATALOG", "catalog": {"streams": []}})),
            Message::Catalog(catalog) if catalog == json!({"streams": []})
        ));
        assert!(matches!(
            parse(&json!({"type": "SPEC", "spec": {}})),
            Message::Other { kind } if kind == "SPEC"
        ));
    }

    #[test]
    fn a_namespaced_stream_is_named_namespace_dot_name_and_unknown_failures_are_other() {
        let line =
            br#"{"type":"RECORD","record":{"namespace":"public","stream":"orders","data":{}}}"#;
        match Message::parse(line).unwrap() {
            Message::Record { stream, .. } => assert_eq!(stream.stream_name(), "public.orders"),
            other => panic!("{other:?}"),
        }
        let error: TraceError =
            serde_json::from_value(json!({"message": "m", "failure_type": "quota_error"})).unwrap();
        assert_eq!(error.failure_type, Some(FailureType::Other));
    }

    #[test]
    fn malformed_messages_say_what_is_wrong() {
        let cases = [
            (&b"not json"[..], "not a JSON message"),
            (b"[1]", "not a JSON object"),
            (
                b"{\"log\": {\"level\": \"INFO\", \"message\": \"m\"}}",
                "without a string \"type\"",
            ),
            (b"{\"type\": \"RECORD\"}", "without its \"record\""),
            (
                b"{\"type\": \"RECORD\", \"record\": {\"data\": {}}}",
                "not an Airbyte message",
            ),
            (
                b"{\"type\": \"RECORD\", \"record\": {\"stream\": \"s\", \"data\": [1]}}",
                "\"data\" is not an object",
            ),
            (b"{\"type\": \"STATE\"}", "without its \"state\""),
            (
                b"{\"type\": \"TRACE\", \"trace\": {\"emitted_at\": 1}}",
                "not an Airbyte message",
            ),
        ];
        for (line, expected) in cases {
            let error = Message::parse(line).unwrap_err().to_string();
            assert!(
                error.contains(expected),
                "{}: {error}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn estimates_keep_only_counts_and_a_sync_estimate_names_no_stream() {
        let estimate = |body: Value| -> Estimate { serde_json::from_value(body).unwrap() };
        let odd = estimate(
            json!({"name": "users", "namespace": "shop", "type": "STREAM",
                                  "row_estimate": -1, "byte_estimate": 2.5}),
        );
        assert_eq!(odd.stream().unwrap().stream_name(), "shop.users");
        assert_eq!((odd.records(), odd.bytes()), (None, None));
        let huge = estimate(json!({"name": "users", "row_estimate": 1e30}));
        assert_eq!(huge.records(), Some(u64::MAX));
        let sync = estimate(json!({"name": "", "type": "SYNC", "row_estimate": 10}));
        assert!(sync.stream().is_none());
        let later: StreamStatus = serde_json::from_value(
            json!({"stream_descriptor": {"name": "users"}, "status": "PAUSED"}),
        )
        .unwrap();
        assert_eq!(later.status.kept(), None);
    }
}
