//! The fuzz targets' bodies: each takes any bytes as one input Hakiri reads from outside and
//! holds what must be true of it, panicking (a finding) otherwise. `fuzz_targets/` wraps each
//! for libFuzzer (`scripts/fuzz` runs them, coverage-guided); `tests/corpus.rs` replays the
//! committed seed corpus (`corpus/<target>/`) and every finding saved there through them in the
//! test suite, on stable Rust, without libFuzzer.
//!
//! | target | input | holds |
//! |---|---|---|
//! | `protocol` | a request or reply body of the wire protocol | decoding fails only with its documented error kind; what decodes re-encodes to itself |
//! | `manifest` | a `hakiri.toml` | reading and validating it, and rendering its error, never panic |
//! | `cursor` | a cursor value (JSON) | a position compares equal to itself and survives its JSON round trip; no panic |
//! | `json_schema` | a JSON Schema, then a record on the next line | conversion and the record check never panic |
//! | `singer` | one line of a Singer tap | the `singer` connector's parse and what follows (schema, record check, state split) never panic |
//! | `airbyte` | one line of an Airbyte source | the `airbyte` connector's parse and what follows (record check, state to cursor, traces) never panic |
//! | `archive` | an archive (`hakiri import`) | every input is read whole or refused naming a line it has; what reads whole writes back with the same digest |

use std::cmp::Ordering;

use hakiri_core::archive::{ArchiveError, ArchiveReader, ArchiveWriter};
use hakiri_core::cursor::Position;
use hakiri_core::{CursorValue, Error};
use hakiri_protocol::{decode_reply, decode_request, encode, Reply};
use serde_json::Value;

/// A target's body: one input, a panic if it finds something.
pub type Body = fn(&[u8]);

/// Every target: its name (its corpus directory, its binary) and its body.
pub const TARGETS: &[(&str, Body)] = &[
    ("protocol", protocol),
    ("manifest", manifest),
    ("cursor", cursor),
    ("json_schema", json_schema),
    ("singer", singer),
    ("airbyte", airbyte),
    ("archive", archive),
];

/// A wire protocol body, read as a request and as a reply.
pub fn protocol(data: &[u8]) {
    match decode_request(data) {
        Ok(request) => {
            let again = decode_request(&encode(&request)).expect("a decoded request re-encodes");
            assert_eq!(again, request, "a request changed in its round trip");
        }
        Err(Error::InvalidArgument(_)) => {}
        Err(other) => panic!("decode_request failed with {other:?}, not InvalidArgument"),
    }
    // A decoded `Err` is the server's error, and may be of any kind.
    if let Ok(response) = decode_reply(data) {
        let again = decode_reply(&encode(&Reply::Ok(response.clone())))
            .expect("a decoded reply re-encodes");
        assert_eq!(again, response, "a reply changed in its round trip");
    }
}

/// A `hakiri.toml`, as `hakiri apply` reads it.
pub fn manifest(data: &[u8]) {
    hakiri_cli::fuzzing::manifest(data);
}

/// A cursor value: kept as an opaque value, and ordered as a monotonic position.
pub fn cursor(data: &[u8]) {
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    if let Ok(position) = Position::from_json(&value) {
        assert_eq!(
            position.compare(&position).ok(),
            Some(Ordering::Equal),
            "{value} is not equal to itself"
        );
        let again = Position::from_json(&position.to_json()).expect("a position's JSON reads");
        assert_eq!(
            again.compare(&position).ok(),
            Some(Ordering::Equal),
            "{value} changed in its JSON round trip"
        );
    }
    let _ = CursorValue::new(value);
}

/// A JSON Schema, then a record on the next line.
pub fn json_schema(data: &[u8]) {
    hakiri_reconciler::fuzzing::schema_and_record(data);
}

/// One line a Singer tap printed.
pub fn singer(data: &[u8]) {
    hakiri_reconciler::fuzzing::singer_line(data);
}

/// One line an Airbyte source printed.
pub fn airbyte(data: &[u8]) {
    hakiri_reconciler::fuzzing::airbyte_line(data);
}

/// An archive, as `hakiri import` reads it: read whole, or refused at a line it has; what is
/// read whole is written back with the same digest.
pub fn archive(data: &[u8]) {
    let lines = data.iter().filter(|b| **b == b'\n').count() as u64;
    let within = |error: &ArchiveError| {
        assert!(
            (1..=lines + 2).contains(&error.line),
            "{error} names a line the input does not have ({lines} newlines)"
        );
    };
    let mut reader = match ArchiveReader::new(data) {
        Ok(reader) => reader,
        Err(error) => return within(&error),
    };
    let mut writer =
        ArchiveWriter::new(Vec::new(), reader.header().clone()).expect("writes to memory");
    loop {
        match reader.next_record() {
            Ok(Some(record)) => writer.record(&record).expect("writes to memory"),
            Ok(None) => break,
            Err(error) => return within(&error),
        }
    }
    let (_, written) = writer.finish().expect("writes to memory");
    assert_eq!(
        written.digest,
        reader.summary().digest,
        "an archive read whole writes back with its digest"
    );
}
