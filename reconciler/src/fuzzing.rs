//! What a connector does with one line its program printed, callable with any bytes: the entry
//! points of the fuzz targets in `fuzz/` (and of their corpus replay in its tests). Each parses
//! the line as the connector does and goes on as far as the line takes it (a SCHEMA's JSON
//! Schema converted, a RECORD checked against a schema, a STATE split into cursors); it returns
//! nothing and must never panic, since a bad line is a typed error in the connector. Not an API:
//! hidden from the docs and free to change with the connectors.

use hakiri_core::{Schema, StreamName};
use serde_json::value::RawValue;
use serde_json::Value;

use crate::connectors::airbyte::{message as airbyte, state as airbyte_state};
use crate::connectors::singer::records::RecordCheck;
use crate::connectors::singer::{message as singer, state as singer_state};

/// A line of a Singer tap's output, as the `singer` connector applies it.
pub fn singer_line(line: &[u8]) {
    match singer::Message::parse(line) {
        Ok(singer::Message::Schema {
            schema,
            key_properties,
            ..
        }) => {
            let _ = Schema::from_json_schema(&schema, &key_properties);
        }
        Ok(singer::Message::Record { record, .. }) => check_against_a_schema(record),
        Ok(singer::Message::State { value }) => {
            if let Ok(cursors) = singer_state::split(&value) {
                let _ = singer_state::rebuild(&cursors.into_iter().collect());
            }
        }
        Ok(singer::Message::Other { .. }) | Err(_) => {}
    }
}

/// A line of an Airbyte source's output, as the `airbyte` connector applies it.
pub fn airbyte_line(line: &[u8]) {
    match airbyte::Message::parse(line) {
        Ok(airbyte::Message::Record { stream, data }) => {
            let _ = StreamName::new(stream.stream_name().as_ref());
            check_against_a_schema(data);
        }
        Ok(airbyte::Message::State(state)) => {
            if let Ok(checkpoint) = airbyte_state::checkpoint(&state) {
                let cursors = [(checkpoint.stream, checkpoint.value)]
                    .into_iter()
                    .collect();
                let _ = airbyte_state::rebuild(&cursors, |_| false);
            }
        }
        Ok(airbyte::Message::Trace(trace)) => {
            if let Some(estimate) = trace.estimate {
                let _ = (estimate.stream(), estimate.records(), estimate.bytes());
            }
            if let Some(status) = trace.stream_status {
                let _ = status.status.kept();
            }
        }
        Ok(_) | Err(_) => {}
    }
}

/// A JSON Schema and a record on the lines after it: the schema converted as a SCHEMA message's
/// is, then the record checked against it as the loaders check records.
pub fn schema_and_record(input: &[u8]) {
    let (schema, record) = match input.iter().position(|b| *b == b'\n') {
        Some(at) => (&input[..at], &input[at + 1..]),
        None => (input, &b"{}"[..]),
    };
    let Ok(schema) = serde_json::from_slice::<Value>(schema) else {
        return;
    };
    let Ok(schema) = Schema::from_json_schema(&schema, &[]) else {
        return;
    };
    let Ok(record) = serde_json::from_slice::<&RawValue>(record) else {
        return;
    };
    let _ = RecordCheck::new(schema).mismatch(record);
}

/// Checks a record against a schema of every column type, nullable or not.
fn check_against_a_schema(record: &RawValue) {
    let schema = serde_json::json!({"properties": {
        "id": {"type": ["integer"]}, "amount": {"type": ["number", "null"]},
        "name": {"type": "string"}, "at": {"type": ["string", "null"], "format": "date-time"},
        "on": {"type": "string", "format": "date"}, "ok": {"type": ["boolean", "null"]},
        "tags": {"type": ["array", "null"]}, "meta": {"type": "object"}}});
    if let Ok(schema) = Schema::from_json_schema(&schema, &["id".to_owned()]) {
        let _ = RecordCheck::new(schema).mismatch(record);
    }
}
