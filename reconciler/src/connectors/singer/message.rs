//! Singer messages: one JSON object per line on a tap's stdout (the Singer specification's
//! `SCHEMA`, `RECORD` and `STATE`; message types are case-insensitive and any other type is
//! permitted, so unknown types are passed over).

use serde_json::{Map, Value};

/// One line of a tap's output.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Message {
    /// The JSON Schema of the records of `stream` that follow.
    Schema {
        stream: String,
        schema: Value,
        key_properties: Vec<String>,
    },
    /// One record of `stream`.
    Record {
        stream: String,
        record: Map<String, Value>,
    },
    /// The tap's state after everything before it; its shape is the tap's own.
    State { value: Value },
    /// A type Hakiri passes over (`ACTIVATE_VERSION`, or any other the specification permits).
    Other { kind: String },
}

/// Why a line is not a message Hakiri can act on; the caller adds where it was.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct BadMessage(String);

fn bad(problem: impl Into<String>) -> BadMessage {
    BadMessage(problem.into())
}

impl Message {
    /// Parses one line.
    ///
    /// # Errors
    /// A line that is not a JSON object with a string `type`, a `SCHEMA`, `RECORD` or `STATE`
    /// missing what the specification requires, or a `BATCH` message (its records live in files
    /// Hakiri would have to copy and sync before checkpointing; turn the tap's `batch_config`
    /// off).
    pub(crate) fn parse(line: &[u8]) -> Result<Self, BadMessage> {
        let value: Value =
            serde_json::from_slice(line).map_err(|e| bad(format!("not a JSON message: {e}")))?;
        let Value::Object(mut object) = value else {
            return Err(bad("not a JSON object"));
        };
        let kind = match object.get("type") {
            Some(Value::String(kind)) => kind.to_ascii_uppercase(),
            _ => return Err(bad("a message without a string \"type\"")),
        };
        let stream = |object: &mut Map<String, Value>| match object.remove("stream") {
            Some(Value::String(stream)) => Ok(stream),
            _ => Err(bad(format!("a {kind} message without a string \"stream\""))),
        };
        match kind.as_str() {
            "SCHEMA" => {
                let stream = stream(&mut object)?;
                let schema = match object.remove("schema") {
                    Some(schema @ Value::Object(_)) => schema,
                    _ => return Err(bad(format!("SCHEMA of {stream:?} without a \"schema\" object"))),
                };
                let key_properties = match object.remove("key_properties") {
                    None | Some(Value::Null) => Vec::new(),
                    Some(Value::Array(keys)) => keys
                        .into_iter()
                        .map(|key| match key {
                            Value::String(key) => Ok(key),
                            _ => Err(bad(format!(
                                "SCHEMA of {stream:?}: \"key_properties\" must list strings"
                            ))),
                        })
                        .collect::<Result<_, _>>()?,
                    Some(_) => {
                        return Err(bad(format!(
                            "SCHEMA of {stream:?}: \"key_properties\" must be an array"
                        )))
                    }
                };
                Ok(Message::Schema {
                    stream,
                    schema,
                    key_properties,
                })
            }
            "RECORD" => {
                let stream = stream(&mut object)?;
                match object.remove("record") {
                    Some(Value::Object(record)) => Ok(Message::Record { stream, record }),
                    _ => Err(bad(format!("RECORD of {stream:?} without a \"record\" object"))),
                }
            }
            "STATE" => match object.remove("value") {
                Some(value) => Ok(Message::State { value }),
                None => Err(bad("STATE without a \"value\"")),
            },
            "BATCH" => Err(bad(
                "BATCH messages are not supported: turn the tap's batch_config off so that it sends RECORD messages",
            )),
            _ => Ok(Message::Other { kind }),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse(value: Value) -> Result<Message, BadMessage> {
        Message::parse(value.to_string().as_bytes())
    }

    #[test]
    fn the_three_messages_parse_whatever_the_case_of_their_type() {
        let schema = json!({"properties": {"id": {"type": "integer"}}});
        assert_eq!(
            parse(json!({"type": "schema", "stream": "orders", "schema": schema, "key_properties": ["id"]})).unwrap(),
            Message::Schema {
                stream: "orders".into(),
                schema,
                key_properties: vec!["id".into()]
            }
        );
        let record = parse(json!({"type": "RECORD", "stream": "orders", "record": {"id": 1}, "time_extracted": "2026-01-01T00:00:00Z"})).unwrap();
        assert!(
            matches!(record, Message::Record { stream, record } if stream == "orders" && record["id"] == 1)
        );
        assert_eq!(
            parse(json!({"type": "State", "value": {"bookmarks": {}}})).unwrap(),
            Message::State {
                value: json!({"bookmarks": {}})
            }
        );
        assert_eq!(
            parse(json!({"type": "ACTIVATE_VERSION", "stream": "orders", "version": 1})).unwrap(),
            Message::Other {
                kind: "ACTIVATE_VERSION".into()
            }
        );
    }

    #[test]
    fn malformed_messages_say_what_is_missing() {
        let cases = [
            (&b"not json"[..], "not a JSON message"),
            (b"[1]", "not a JSON object"),
            (b"{\"stream\": \"s\"}", "without a string \"type\""),
            (b"{\"type\": \"RECORD\", \"record\": {}}", "without a string \"stream\""),
            (b"{\"type\": \"RECORD\", \"stream\": \"s\", \"record\": 1}", "without a \"record\" object"),
            (b"{\"type\": \"SCHEMA\", \"stream\": \"s\"}", "without a \"schema\" object"),
            (b"{\"type\": \"SCHEMA\", \"stream\": \"s\", \"schema\": {}, \"key_properties\": [1]}", "must list strings"),
            (b"{\"type\": \"STATE\"}", "without a \"value\""),
            (b"{\"type\": \"BATCH\", \"stream\": \"s\"}", "batch_config"),
        ];
        for (line, expected) in cases {
            let error = Message::parse(line).unwrap_err().to_string();
            assert!(error.contains(expected), "{line:?}: {error}");
        }
    }
}
