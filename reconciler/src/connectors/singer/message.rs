//! Singer messages: one JSON object per line on a tap's stdout (the Singer specification's
//! `SCHEMA`, `RECORD` and `STATE`; message types are case-insensitive and any other type is
//! permitted, so unknown types are passed over).
//!
//! A RECORD is most of what a tap prints, so it is not built into a [`Value`]: its `record` is
//! kept as the raw JSON text the tap wrote ([`RawValue`], borrowed from the line), checked field
//! by field where its stream's schema says (`records.rs`) and written as it is. Parsing the line
//! still validates all of its JSON syntax; numbers are range-checked only where a schema column
//! checks them (a number too large for a double elsewhere in a record is passed on as written).

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

/// One line of a tap's output, borrowed from it where that saves copying.
#[derive(Debug)]
pub(crate) enum Message<'a> {
    /// The JSON Schema of the records of `stream` that follow.
    Schema {
        stream: Cow<'a, str>,
        schema: Value,
        key_properties: Vec<String>,
    },
    /// One record of `stream`: a JSON object, as the tap wrote it.
    Record {
        stream: Cow<'a, str>,
        record: &'a RawValue,
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

impl<'a> Message<'a> {
    /// Parses one line.
    ///
    /// # Errors
    /// A line that is not a JSON object with a string `type`, a `SCHEMA`, `RECORD` or `STATE`
    /// missing what the specification requires, or a `BATCH` message (its records live in files
    /// Hakiri would have to copy and sync before checkpointing; turn the tap's `batch_config`
    /// off).
    pub(crate) fn parse(line: &'a [u8]) -> Result<Self, BadMessage> {
        let fields: Fields<'a> =
            serde_json::from_slice(line).map_err(|e| not_an_object(line, e))?;
        let Some(kind) = fields.kind.and_then(string) else {
            return Err(bad("a message without a string \"type\""));
        };
        let stream = || match fields.stream.and_then(string) {
            Some(stream) => Ok(stream),
            None => Err(bad(format!(
                "a {} message without a string \"stream\"",
                kind.to_ascii_uppercase()
            ))),
        };
        if kind.eq_ignore_ascii_case("RECORD") {
            let stream = stream()?;
            return match fields.record {
                Some(record) if record.get().starts_with('{') => {
                    Ok(Message::Record { stream, record })
                }
                _ => Err(bad(format!(
                    "RECORD of {stream:?} without a \"record\" object"
                ))),
            };
        }
        if kind.eq_ignore_ascii_case("SCHEMA") {
            let stream = stream()?;
            let schema = match fields.schema.map(value).transpose()? {
                Some(schema @ Value::Object(_)) => schema,
                _ => {
                    return Err(bad(format!(
                        "SCHEMA of {stream:?} without a \"schema\" object"
                    )))
                }
            };
            let key_properties = match fields.key_properties.map(value).transpose()? {
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
            return Ok(Message::Schema {
                stream,
                schema,
                key_properties,
            });
        }
        if kind.eq_ignore_ascii_case("STATE") {
            return match fields.value {
                Some(state) => Ok(Message::State {
                    value: value(state)?,
                }),
                None => Err(bad("STATE without a \"value\"")),
            };
        }
        if kind.eq_ignore_ascii_case("BATCH") {
            return Err(bad(
                "BATCH messages are not supported: turn the tap's batch_config off so that it sends RECORD messages",
            ));
        }
        Ok(Message::Other {
            kind: kind.to_ascii_uppercase(),
        })
    }
}

/// The error for a line [`Fields`] could not read, worded as for any JSON reader: the line is
/// read again as a [`Value`] to tell bad JSON from JSON that is not an object.
fn not_an_object(line: &[u8], error: serde_json::Error) -> BadMessage {
    match serde_json::from_slice::<Value>(line) {
        Err(e) => bad(format!("not a JSON message: {e}")),
        Ok(Value::Object(_)) => bad(format!("not a JSON message: {error}")),
        Ok(_) => bad("not a JSON object"),
    }
}

/// The JSON string in `raw`, borrowed when it has no escapes; `None` when `raw` is not a
/// string.
pub(crate) fn string(raw: &RawValue) -> Option<Cow<'_, str>> {
    let text = raw.get();
    let inner = text.strip_prefix('"')?.strip_suffix('"')?;
    if inner.contains('\\') {
        serde_json::from_str::<String>(text).ok().map(Cow::Owned)
    } else {
        Some(Cow::Borrowed(inner))
    }
}

/// `raw` as a [`Value`]. Its syntax was checked when the line was read; what can still fail is
/// a number out of a double's range.
fn value(raw: &RawValue) -> Result<Value, BadMessage> {
    serde_json::from_str(raw.get()).map_err(|e| bad(format!("not a JSON message: {e}")))
}

/// The top-level fields of a message that Hakiri reads, as raw JSON; the others are skipped
/// (their syntax checked). A field given twice counts as the last one, as in a [`Value`].
#[derive(Default)]
struct Fields<'a> {
    kind: Option<&'a RawValue>,
    stream: Option<&'a RawValue>,
    record: Option<&'a RawValue>,
    schema: Option<&'a RawValue>,
    key_properties: Option<&'a RawValue>,
    value: Option<&'a RawValue>,
}

impl<'de> Deserialize<'de> for Fields<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FieldsVisitor;

        impl<'de> Visitor<'de> for FieldsVisitor {
            type Value = Fields<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields<'de>, A::Error> {
                let mut fields = Fields::default();
                while let Some(key) = map.next_key::<Key<'de>>()? {
                    let slot: &mut Option<&'de RawValue> = match &*key.0 {
                        "type" => &mut fields.kind,
                        "stream" => &mut fields.stream,
                        "record" => &mut fields.record,
                        "schema" => &mut fields.schema,
                        "key_properties" => &mut fields.key_properties,
                        "value" => &mut fields.value,
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                            continue;
                        }
                    };
                    *slot = Some(map.next_value::<&'de RawValue>()?);
                }
                Ok(fields)
            }
        }

        deserializer.deserialize_map(FieldsVisitor)
    }
}

/// An object's key, borrowed from the line unless it has escapes.
pub(crate) struct Key<'a>(pub(crate) Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;

        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }

            fn visit_borrowed_str<E: de::Error>(self, key: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(key)))
            }

            fn visit_str<E: de::Error>(self, key: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(key.to_owned())))
            }

            fn visit_string<E: de::Error>(self, key: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(key)))
            }
        }

        deserializer.deserialize_str(KeyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_three_messages_parse_whatever_the_case_of_their_type() {
        let schema = json!({"properties": {"id": {"type": "integer"}}});
        let line = json!({"type": "schema", "stream": "orders", "schema": schema, "key_properties": ["id"]}).to_string();
        match Message::parse(line.as_bytes()).unwrap() {
            Message::Schema {
                stream,
                schema: parsed,
                key_properties,
            } => {
                assert_eq!(stream, "orders");
                assert_eq!(parsed, schema);
                assert_eq!(key_properties, ["id"]);
            }
            other => panic!("{other:?}"),
        }
        let line = json!({"type": "RECORD", "stream": "orders", "record": {"id": 1}, "time_extracted": "2026-01-01T00:00:00Z"}).to_string();
        match Message::parse(line.as_bytes()).unwrap() {
            Message::Record { stream, record } => {
                assert_eq!(stream, "orders");
                assert_eq!(record.get(), r#"{"id":1}"#);
            }
            other => panic!("{other:?}"),
        }
        let line = json!({"type": "State", "value": {"bookmarks": {}}}).to_string();
        match Message::parse(line.as_bytes()).unwrap() {
            Message::State { value } => assert_eq!(value, json!({"bookmarks": {}})),
            other => panic!("{other:?}"),
        }
        let line =
            json!({"type": "ACTIVATE_VERSION", "stream": "orders", "version": 1}).to_string();
        match Message::parse(line.as_bytes()).unwrap() {
            Message::Other { kind } => assert_eq!(kind, "ACTIVATE_VERSION"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_record_is_its_raw_text_whatever_the_line_around_it() {
        let line = br#" { "record" : {"id": 2.0, "n": {"deep": [1, "x"]}, "s": "\"\u00e9\n"} , "ty\u0070e": "record", "stream": "ord\u0065rs", "type": "RECORD" } "#;
        match Message::parse(line).unwrap() {
            Message::Record { stream, record } => {
                assert_eq!(stream, "orders", "an escaped stream name is unescaped");
                assert_eq!(
                    record.get(),
                    r#"{"id": 2.0, "n": {"deep": [1, "x"]}, "s": "\"\u00e9\n"}"#,
                    "kept as written, escapes and spaces included"
                );
            }
            other => panic!("{other:?}"),
        }
        let unicode = "{\"type\": \"RECORD\", \"stream\": \"s\", \"record\": {\"名前\": \"値 ✓\"}}";
        match Message::parse(unicode.as_bytes()).unwrap() {
            Message::Record { record, .. } => assert_eq!(record.get(), "{\"名前\": \"値 ✓\"}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn malformed_messages_say_what_is_missing() {
        let cases = [
            (&b"not json"[..], "not a JSON message"),
            (b"", "not a JSON message"),
            (b"{\"type\": \"RECORD\", \"stream\": \"s\", \"record\": {}} trailing", "not a JSON message"),
            (b"{\"type\": \"RECORD\", \"stream\": \"s\", \"record\": {\"a\": [1,}}", "not a JSON message"),
            (b"[1]", "not a JSON object"),
            (b"\"RECORD\"", "not a JSON object"),
            (b"{\"stream\": \"s\"}", "without a string \"type\""),
            (b"{\"type\": 1}", "without a string \"type\""),
            (b"{\"type\": \"RECORD\", \"record\": {}}", "without a string \"stream\""),
            (b"{\"type\": \"RECORD\", \"stream\": null, \"record\": {}}", "without a string \"stream\""),
            (b"{\"type\": \"RECORD\", \"stream\": \"s\", \"record\": 1}", "without a \"record\" object"),
            (b"{\"type\": \"RECORD\", \"stream\": \"s\", \"record\": [{}]}", "without a \"record\" object"),
            (b"{\"type\": \"RECORD\", \"stream\": \"s\"}", "without a \"record\" object"),
            (b"{\"type\": \"SCHEMA\", \"stream\": \"s\"}", "without a \"schema\" object"),
            (b"{\"type\": \"SCHEMA\", \"stream\": \"s\", \"schema\": {}, \"key_properties\": [1]}", "must list strings"),
            (b"{\"type\": \"SCHEMA\", \"stream\": \"s\", \"schema\": {}, \"key_properties\": \"id\"}", "must be an array"),
            (b"{\"type\": \"STATE\"}", "without a \"value\""),
            (b"{\"type\": \"STATE\", \"value\": {\"n\": 1e400}}", "out of range"),
            (b"{\"type\": \"BATCH\", \"stream\": \"s\"}", "batch_config"),
        ];
        for (line, expected) in cases {
            let error = Message::parse(line).unwrap_err().to_string();
            assert!(error.contains(expected), "{line:?}: {error}");
        }
    }

    #[test]
    fn a_field_given_twice_counts_as_the_last() {
        let line = br#"{"type": "STATE", "type": "RECORD", "stream": "s", "record": 1, "record": {"id": 1}}"#;
        assert!(matches!(
            Message::parse(line).unwrap(),
            Message::Record { record, .. } if record.get() == r#"{"id": 1}"#
        ));
    }

    #[test]
    fn strings_are_borrowed_unless_escaped() {
        let raw = |text: &str| RawValue::from_string(text.to_owned()).unwrap();
        assert!(matches!(
            string(&raw(r#""orders""#)),
            Some(Cow::Borrowed("orders"))
        ));
        assert_eq!(string(&raw(r#""a\"b\u00e9""#)).unwrap(), "a\"bé");
        assert_eq!(string(&raw("1")), None);
        assert_eq!(string(&raw("null")), None);
    }
}
