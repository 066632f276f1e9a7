//! A Singer tap's state ⇄ the pipeline's cursors.
//!
//! A tap's state is one JSON document, by convention `{"bookmarks": {<stream>: <bookmark>}, …}`.
//! Each bookmark is its stream's cursor (opaque: its shape is the tap's own), and the other
//! top-level keys (`currently_syncing`, a tap's own globals) are one reserved cursor,
//! [`RESERVED`]. The next run's `--state` is rebuilt from the cursors, so an operator's reset of
//! one stream's cursor makes the tap re-read that stream only, a rollback works per stream, and a
//! state that leaves a stream (or a top-level key) out never erases its cursor.

use std::collections::BTreeMap;

use hakiri_core::cursor::MAX_CURSOR_BYTES;
use hakiri_core::{CursorValue, StreamName};
use serde_json::{Map, Value};

/// The cursor holding the state's top-level keys other than `bookmarks`. No stream may be named
/// so.
pub(crate) const RESERVED: &str = "_singer_state";

/// Why a state cannot be taken apart into cursors; the caller adds the run's context.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct BadState(String);

/// The `--state` document for a run starting from `cursors` (every cursor of the pipeline), or
/// `None` when no cursor holds anything yet (the tap then starts from its configured start).
pub(crate) fn rebuild(cursors: &BTreeMap<StreamName, CursorValue>) -> Option<Value> {
    let mut state = Map::new();
    let mut bookmarks = Map::new();
    for (stream, value) in cursors.iter().filter(|(_, v)| !v.is_initial()) {
        if stream.as_str() == RESERVED {
            if let Value::Object(top) = value.as_json() {
                state.extend(
                    top.iter()
                        .filter(|(key, _)| *key != "bookmarks")
                        .map(|(key, value)| (key.clone(), value.clone())),
                );
            }
        } else {
            bookmarks.insert(stream.to_string(), value.as_json().clone());
        }
    }
    if state.is_empty() && bookmarks.is_empty() {
        return None;
    }
    state.insert("bookmarks".to_owned(), Value::Object(bookmarks));
    Some(Value::Object(state))
}

/// The cursors one STATE value sets: a cursor per bookmark, in the state's order, then the
/// reserved cursor if the state has other top-level keys. Streams the state leaves out (or whose
/// bookmark is null) are not listed: their cursors stay. The caller writes only values that
/// differ from the cursor's.
///
/// # Errors
/// A state that is not an object, `bookmarks` that is not an object, a bookmark named like no
/// stream can be (or like [`RESERVED`]), or a bookmark above the cursor size limit (named, with
/// its size and the remedy).
pub(crate) fn split(state: &Value) -> Result<Vec<(StreamName, CursorValue)>, BadState> {
    let Value::Object(top) = state else {
        return Err(BadState(format!(
            "the tap's STATE value is {}, not an object",
            hakiri_core::cursor::json_type(state)
        )));
    };
    let mut cursors = Vec::new();
    let mut rest = Map::new();
    for (key, value) in top {
        if key != "bookmarks" {
            rest.insert(key.clone(), value.clone());
            continue;
        }
        let Value::Object(bookmarks) = value else {
            return Err(BadState(
                "the tap's STATE has \"bookmarks\" that is not an object".to_owned(),
            ));
        };
        for (stream, bookmark) in bookmarks {
            // A null bookmark says nothing about where the stream is: like a missing one, it
            // must not erase the stream's cursor (an operator's reset does that, on purpose).
            if bookmark.is_null() {
                continue;
            }
            let name = StreamName::new(stream.as_str())
                .ok()
                .filter(|name| name.as_str() != RESERVED)
                .ok_or_else(|| {
                    BadState(format!(
                        "the tap's STATE has a bookmark for {stream:?}, which cannot be a stream's name"
                    ))
                })?;
            cursors.push((name, cursor(stream, bookmark.clone())?));
        }
    }
    if !rest.is_empty() {
        let reserved = StreamName::new(RESERVED).map_err(|e| BadState(e.to_string()))?;
        cursors.push((reserved, cursor(RESERVED, Value::Object(rest))?));
    }
    Ok(cursors)
}

fn cursor(stream: &str, value: Value) -> Result<CursorValue, BadState> {
    let size = serde_json::to_vec(&value).map_or(0, |bytes| bytes.len());
    CursorValue::new(value).map_err(|_| {
        BadState(format!(
            "the tap's bookmark for stream {stream:?} is {size} bytes of JSON, above the {} KiB a \
             cursor holds; make the tap keep less state for it (fewer partitions, e.g. its \
             state_partitioning_keys setting, or split the stream)",
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

    fn value(json: Value) -> CursorValue {
        CursorValue::new(json).unwrap()
    }

    #[test]
    fn bookmarks_become_cursors_and_the_rest_one_reserved_cursor() {
        let state = json!({
            "bookmarks": {
                "public-orders": {"replication_key": "updated_at", "replication_key_value": "2026-02-01T06:56:40+00:00"},
                "public-customers": {}
            },
            "currently_syncing": "public-orders"
        });
        let cursors = split(&state).unwrap();
        assert_eq!(
            cursors,
            vec![
                (stream("public-customers"), value(json!({}))),
                (
                    stream("public-orders"),
                    value(
                        json!({"replication_key": "updated_at", "replication_key_value": "2026-02-01T06:56:40+00:00"})
                    )
                ),
                (
                    stream(RESERVED),
                    value(json!({"currently_syncing": "public-orders"}))
                ),
            ]
        );
        // And back: the next run's state is the same document.
        let rebuilt = rebuild(&cursors.into_iter().collect()).unwrap();
        assert_eq!(rebuilt, state);
    }

    #[test]
    fn a_stream_left_out_or_null_keeps_its_cursor() {
        let cursors =
            split(&json!({"bookmarks": {"orders": null, "customers": {"v": 1}}})).unwrap();
        assert_eq!(cursors, vec![(stream("customers"), value(json!({"v": 1})))]);
    }

    #[test]
    fn a_reset_stream_is_left_out_of_the_next_state() {
        let cursors = BTreeMap::from([
            (stream("orders"), value(json!({"replication_key_value": 5}))),
            (stream("customers"), CursorValue::initial()),
        ]);
        assert_eq!(
            rebuild(&cursors).unwrap(),
            json!({"bookmarks": {"orders": {"replication_key_value": 5}}})
        );
        let nothing = BTreeMap::from([(stream("orders"), CursorValue::initial())]);
        assert_eq!(rebuild(&nothing), None);
    }

    #[test]
    fn a_state_without_bookmarks_is_kept_whole_in_the_reserved_cursor() {
        let state = json!({"users": 2, "locations": 1});
        let cursors = split(&state).unwrap();
        assert_eq!(cursors, vec![(stream(RESERVED), value(state.clone()))]);
        assert_eq!(
            rebuild(&cursors.into_iter().collect()).unwrap(),
            json!({"users": 2, "locations": 1, "bookmarks": {}})
        );
    }

    #[test]
    fn states_that_cannot_be_cursors_are_refused_with_the_reason() {
        let cases = [
            (json!([1]), "not an object"),
            (
                json!({"bookmarks": 3}),
                "\"bookmarks\" that is not an object",
            ),
            (json!({"bookmarks": {"": {}}}), "cannot be a stream's name"),
            (
                json!({"bookmarks": {RESERVED: {}}}),
                "cannot be a stream's name",
            ),
            (
                json!({"bookmarks": {"files": {"partitions": "x".repeat(MAX_CURSOR_BYTES)}}}),
                "stream \"files\" is 65",
            ),
        ];
        for (state, expected) in cases {
            let error = split(&state).unwrap_err().to_string();
            assert!(error.contains(expected), "{state}: {error}");
        }
        let huge =
            split(&json!({"bookmarks": {"files": {"partitions": "x".repeat(MAX_CURSOR_BYTES)}}}))
                .unwrap_err()
                .to_string();
        assert!(
            huge.contains("64 KiB") && huge.contains("state_partitioning_keys"),
            "{huge}"
        );
    }
}
