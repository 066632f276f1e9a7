//! An Airbyte source's state ⇄ the pipeline's cursors (ADR 0029).
//!
//! - A `STREAM` state is its stream's cursor, stored as the state body without its statistics:
//!   `{"type": "STREAM", "stream": {"stream_descriptor": …, "stream_state": …}}`; a
//!   `stream_state` of `null` resets the stream's cursor to the initial value.
//! - A `GLOBAL` state is one cursor, [`GLOBAL`], stored whole (shared state and every stream's
//!   state together), so it moves in one compare-and-set.
//! - A `LEGACY` state (or one without a `type`) is refused.
//!
//! The next run's `--state` is the JSON array of the cursors' values that are not initial.

use std::collections::BTreeMap;

use hakiri_core::cursor::MAX_CURSOR_BYTES;
use hakiri_core::{CursorValue, StreamName};
use serde::Deserialize as _;
use serde_json::{Map, Value};

use super::message::Descriptor;

/// The cursor that holds a `GLOBAL` state; no stream may be named so.
pub(crate) const GLOBAL: &str = "_airbyte_global";

/// What one STATE message sets.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Checkpoint {
    /// The cursor it sets: the stream's, or [`GLOBAL`].
    pub(crate) stream: StreamName,
    /// Its value: the body without statistics, or the initial value for a reset stream.
    pub(crate) value: CursorValue,
    /// What it covers.
    pub(crate) scope: Scope,
    /// `sourceStats.recordCount`: the records the source sent since its previous state of the
    /// same scope, when it says.
    pub(crate) record_count: Option<f64>,
}

/// Which records a state covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    /// Its own stream's.
    Stream,
    /// Every stream's.
    Global,
}

/// Why a state cannot be a cursor; the caller adds which source printed it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct BadState(String);

fn bad(problem: impl Into<String>) -> BadState {
    BadState(problem.into())
}

/// The cursor a STATE message's `state` sets.
///
/// # Errors
/// A LEGACY state (or one without a `type`), a STREAM state without a stream descriptor, a
/// GLOBAL state without `global`, a stream named like no stream can be (or like [`GLOBAL`]), or
/// a body above the cursor size limit (named, with its size).
pub(crate) fn checkpoint(state: &Value) -> Result<Checkpoint, BadState> {
    let Value::Object(fields) = state else {
        return Err(bad(format!(
            "a STATE whose \"state\" is {}, not an object",
            hakiri_core::cursor::json_type(state)
        )));
    };
    let record_count = fields
        .get("sourceStats")
        .and_then(|stats| stats.get("recordCount"))
        .and_then(Value::as_f64);
    // The statistics describe one message, not the position: the cursor is the rest.
    let body: Map<String, Value> = fields
        .iter()
        .filter(|(key, _)| !matches!(key.as_str(), "sourceStats" | "destinationStats"))
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    match fields.get("type").and_then(Value::as_str) {
        Some("STREAM") => {
            let stream = fields.get("stream").unwrap_or(&Value::Null);
            let descriptor: Descriptor<'_> = stream
                .get("stream_descriptor")
                .and_then(|d| Descriptor::deserialize(d).ok())
                .ok_or_else(|| {
                    bad("a STREAM state without a \"stream_descriptor\" with a string \"name\"")
                })?;
            let name = descriptor.stream_name();
            let stream_name = StreamName::new(&*name)
                .ok()
                .filter(|stream| stream.as_str() != GLOBAL)
                .ok_or_else(|| {
                    bad(format!(
                        "a STREAM state of {name:?}, which cannot be a stream's name"
                    ))
                })?;
            // "If it is null, it means that the state for that stream should be reset."
            let value = if stream.get("stream_state").is_none_or(Value::is_null) {
                CursorValue::initial()
            } else {
                cursor(&name, Value::Object(body))?
            };
            Ok(Checkpoint {
                stream: stream_name,
                value,
                scope: Scope::Stream,
                record_count,
            })
        }
        Some("GLOBAL") => {
            if !fields.get("global").is_some_and(Value::is_object) {
                return Err(bad("a GLOBAL state without a \"global\" object"));
            }
            Ok(Checkpoint {
                stream: StreamName::new(GLOBAL).map_err(|e| bad(e.to_string()))?,
                value: cursor(GLOBAL, Value::Object(body))?,
                scope: Scope::Global,
                record_count,
            })
        }
        Some("LEGACY") | None => Err(bad(
            "a LEGACY state (a state without \"type\": \"STREAM\" or \"GLOBAL\"), which Hakiri \
             refuses: it cannot be kept per stream; use a version of the source that prints \
             per-stream state",
        )),
        Some(other) => Err(bad(format!("a state of unknown type {other:?}"))),
    }
}

/// The `--state` a run gives the source: the array of its cursors' values that are not
/// initial, in stream order, leaving out the streams `fresh` names (those read in full refresh:
/// each run reads them whole, as Airbyte starts a new sync's full-refresh streams without
/// state); `None` when there is none (a first run, or every stream reset).
pub(crate) fn rebuild(
    cursors: &BTreeMap<StreamName, CursorValue>,
    fresh: impl Fn(&StreamName) -> bool,
) -> Option<Value> {
    let states: Vec<Value> = cursors
        .iter()
        .filter(|(stream, value)| !value.is_initial() && !fresh(stream))
        .map(|(_, value)| value.as_json().clone())
        .collect();
    (!states.is_empty()).then_some(Value::Array(states))
}

fn cursor(stream: &str, value: Value) -> Result<CursorValue, BadState> {
    let size = serde_json::to_vec(&value).map_or(0, |bytes| bytes.len());
    CursorValue::new(value).map_err(|_| {
        bad(format!(
            "the state of {stream:?} is {size} bytes of JSON, above the {} KiB a cursor holds; \
             make the source keep less state (fewer partitions or slices), or split the stream",
            MAX_CURSOR_BYTES / 1024
        ))
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn stream(name: &str) -> StreamName {
        StreamName::new(name).unwrap()
    }

    #[test]
    fn a_stream_state_is_its_cursor_without_the_statistics_and_comes_back_as_the_next_state() {
        // As airbyte-source-faker 7.2.1 prints it.
        let users = json!({"type": "STREAM", "stream": {"stream_descriptor": {"name": "users"},
                           "stream_state": {"seed": 42, "updated_at": "2026-12-02T02:38:34+00:00", "loop_offset": 50}},
                           "sourceStats": {"recordCount": 100.0}});
        let set = checkpoint(&users).unwrap();
        let body = json!({"type": "STREAM", "stream": {"stream_descriptor": {"name": "users"},
                          "stream_state": {"seed": 42, "updated_at": "2026-12-02T02:38:34+00:00", "loop_offset": 50}}});
        assert_eq!(set.stream, stream("users"));
        assert_eq!(set.value.as_json(), &body);
        assert_eq!(set.scope, Scope::Stream);
        assert_eq!(set.record_count, Some(100.0));

        let products = json!({"type": "STREAM", "stream": {"stream_descriptor": {"name": "products"},
                              "stream_state": {"seed": 42}}});
        let cursors = BTreeMap::from([
            (set.stream, set.value),
            (stream("products"), checkpoint(&products).unwrap().value),
        ]);
        assert_eq!(
            rebuild(&cursors, |_| false),
            Some(json!([products, body.clone()]))
        );
        assert_eq!(
            rebuild(&cursors, |stream| stream.as_str() == "products"),
            Some(json!([body])),
            "a full-refresh stream starts without its state"
        );
    }

    #[test]
    fn a_null_stream_state_resets_the_stream_and_a_reset_stream_is_left_out() {
        let reset = checkpoint(&json!({"type": "STREAM", "stream": {
            "stream_descriptor": {"name": "orders", "namespace": "public"}, "stream_state": null}}))
        .unwrap();
        assert_eq!(reset.stream, stream("public.orders"));
        assert!(reset.value.is_initial());
        assert_eq!(reset.record_count, None);

        let kept = json!({"type": "STREAM", "stream": {"stream_descriptor": {"name": "users"}, "stream_state": {"v": 1}}});
        let cursors = BTreeMap::from([
            (stream("public.orders"), CursorValue::initial()),
            (stream("users"), CursorValue::new(kept.clone()).unwrap()),
        ]);
        assert_eq!(rebuild(&cursors, |_| false), Some(json!([kept])));
        let nothing = BTreeMap::from([(stream("users"), CursorValue::initial())]);
        assert_eq!(rebuild(&nothing, |_| false), None);
    }

    #[test]
    fn a_global_state_is_kept_whole_as_one_cursor() {
        let global = json!({"type": "GLOBAL", "global": {
            "shared_state": {"lsn": 30596592},
            "stream_states": [
                {"stream_descriptor": {"name": "orders"}, "stream_state": {"id": 7}},
                {"stream_descriptor": {"name": "customers"}, "stream_state": {"id": 3}}
            ]}, "sourceStats": {"recordCount": 9.0}});
        let set = checkpoint(&global).unwrap();
        assert_eq!(set.stream, stream(GLOBAL));
        assert_eq!(set.scope, Scope::Global);
        assert_eq!(set.record_count, Some(9.0));
        let mut body = global.clone();
        body.as_object_mut().unwrap().remove("sourceStats");
        assert_eq!(set.value.as_json(), &body);
        assert_eq!(
            rebuild(&BTreeMap::from([(set.stream, set.value)]), |_| false),
            Some(json!([body]))
        );
    }

    #[test]
    fn legacy_and_malformed_states_are_refused_with_the_reason() {
        let cases = [
            (
                json!({"type": "LEGACY", "data": {"users": 1}}),
                "LEGACY state",
            ),
            (json!({"data": {"users": 1}}), "LEGACY state"),
            (json!([1]), "not an object"),
            (
                json!({"type": "STREAM", "stream": {"stream_state": {}}}),
                "without a \"stream_descriptor\"",
            ),
            (
                json!({"type": "STREAM", "stream": {"stream_descriptor": {"name": ""}, "stream_state": {}}}),
                "cannot be a stream's name",
            ),
            (
                json!({"type": "STREAM", "stream": {"stream_descriptor": {"name": GLOBAL}, "stream_state": {}}}),
                "cannot be a stream's name",
            ),
            (json!({"type": "GLOBAL"}), "without a \"global\" object"),
            (json!({"type": "PER_STREAM"}), "unknown type \"PER_STREAM\""),
            (
                json!({"type": "STREAM", "stream": {"stream_descriptor": {"name": "files"},
                       "stream_state": {"partitions": "x".repeat(MAX_CURSOR_BYTES)}}}),
                "above the 64 KiB",
            ),
        ];
        for (state, expected) in cases {
            let error = checkpoint(&state).unwrap_err().to_string();
            assert!(error.contains(expected), "{state}: {error}");
        }
    }
}
