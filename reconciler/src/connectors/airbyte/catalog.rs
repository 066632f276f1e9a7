//! A source's discovered catalog (`source discover --config …`) and the configured catalog a
//! run reads with: which streams, in which sync mode, following which cursor field, keyed by
//! which fields, and the schema each stream is observed with before `read` starts.

use hakiri_core::{Schema, StreamName};
use serde::Deserialize;
use serde_json::{json, Value};

use super::super::stream_dir_name;
use super::config::{StreamChoice, SyncMode};
use super::message::Descriptor;
use super::state::GLOBAL;

/// A stream a run reads, with the schema it is observed with.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Selected {
    pub(crate) stream: StreamName,
    pub(crate) schema: Schema,
    pub(crate) sync_mode: SyncMode,
}

/// Why a catalog cannot be used; the caller adds which source printed it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct BadCatalog(String);

fn bad(problem: impl Into<String>) -> BadCatalog {
    BadCatalog(problem.into())
}

/// An `AirbyteStream`, the fields Hakiri reads.
#[derive(Deserialize)]
struct Discovered {
    #[serde(flatten)]
    descriptor: Descriptor<'static>,
    json_schema: Value,
    #[serde(default)]
    supported_sync_modes: Vec<SyncMode>,
    #[serde(default)]
    source_defined_cursor: bool,
    #[serde(default)]
    default_cursor_field: Vec<String>,
    #[serde(default)]
    source_defined_primary_key: Vec<Vec<String>>,
}

/// The configured catalog for the streams `wanted` names (every stream when `None`), in the
/// discovered catalog's order, and those streams with their schemas. For each stream:
/// - `sync_mode`: as chosen, else `incremental` when the source supports it, else
///   `full_refresh`;
/// - `cursor_field`: the source's own when it defines it, else as chosen, else its default;
/// - `primary_key`: as chosen, else the source's; a key is top-level fields only;
/// - `destination_sync_mode`: `append` (Hakiri writes each run's records to a file of its own).
///
/// # Errors
/// A catalog without a `streams` array, a stream without a name or schema, a name that cannot
/// be a stream's, a wanted stream the source does not offer (naming those it does), a sync mode
/// it does not support, an incremental stream without a cursor field, or a nested key.
pub(crate) fn configure(
    catalog: &Value,
    wanted: Option<&[StreamChoice]>,
) -> Result<(Value, Vec<Selected>), BadCatalog> {
    let streams = catalog
        .get("streams")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("the discovered catalog has no \"streams\" array"))?;
    let mut offered = Vec::new();
    let mut configured = Vec::new();
    let mut selected = Vec::new();
    for entry in streams {
        let stream: Discovered = serde_json::from_value(entry.clone())
            .map_err(|e| bad(format!("a discovered stream cannot be read: {e}")))?;
        let name = stream.descriptor.stream_name().into_owned();
        let choice = match wanted {
            None => Some(StreamChoice::named(&name)),
            Some(wanted) => wanted.iter().find(|choice| choice.name == name).cloned(),
        };
        offered.push(name.clone());
        let Some(choice) = choice else { continue };
        let in_stream = |problem: String| bad(format!("discovered stream {name:?}: {problem}"));
        let stream_name = stream_dir_name(&name).map_err(in_stream)?;
        if stream_name.as_str() == GLOBAL {
            return Err(in_stream(format!(
                "{GLOBAL:?} is the name of the cursor that keeps a GLOBAL state"
            )));
        }
        let sync_mode = match choice.sync_mode {
            Some(mode) if !stream.supported_sync_modes.contains(&mode) => {
                return Err(in_stream(format!(
                    "the source does not support sync_mode {:?} for it",
                    mode.as_str()
                )))
            }
            Some(mode) => mode,
            None if stream.supported_sync_modes.contains(&SyncMode::Incremental) => {
                SyncMode::Incremental
            }
            None => SyncMode::FullRefresh,
        };
        let cursor_field = match sync_mode {
            SyncMode::FullRefresh => Vec::new(),
            SyncMode::Incremental if stream.source_defined_cursor => {
                if choice
                    .cursor_field
                    .as_ref()
                    .is_some_and(|field| *field != stream.default_cursor_field)
                {
                    return Err(in_stream(format!(
                        "the source defines its cursor field ({}); leave cursor_field out",
                        stream.default_cursor_field.join(".")
                    )));
                }
                stream.default_cursor_field.clone()
            }
            SyncMode::Incremental => choice
                .cursor_field
                .clone()
                .unwrap_or_else(|| stream.default_cursor_field.clone()),
        };
        if sync_mode == SyncMode::Incremental && cursor_field.is_empty() {
            return Err(in_stream(
                "an incremental stream needs a cursor_field (the source has no default)".into(),
            ));
        }
        let primary_key = choice
            .primary_key
            .clone()
            .unwrap_or_else(|| stream.source_defined_primary_key.clone());
        let key: Vec<String> = primary_key
            .iter()
            .map(|path| match path.as_slice() {
                [field] => Ok(field.clone()),
                _ => Err(in_stream(format!(
                    "its primary key {} is not made of top-level fields, which Hakiri's schemas \
                     need",
                    json!(primary_key)
                ))),
            })
            .collect::<Result<_, _>>()?;
        let schema = Schema::from_json_schema(&stream.json_schema, &key)
            .map_err(|e| in_stream(e.to_string()))?;
        configured.push(json!({
            "stream": entry,
            "sync_mode": sync_mode.as_str(),
            "cursor_field": cursor_field,
            "destination_sync_mode": "append",
            "primary_key": primary_key,
        }));
        selected.push(Selected {
            stream: stream_name,
            schema,
            sync_mode,
        });
    }
    if let Some(missing) = wanted
        .into_iter()
        .flatten()
        .find(|choice| !offered.contains(&choice.name))
    {
        return Err(bad(format!(
            "the source offers no stream {:?}; it offers {}",
            missing.name,
            if offered.is_empty() {
                "none".to_owned()
            } else {
                offered.join(", ")
            }
        )));
    }
    Ok((json!({ "streams": configured }), selected))
}

#[cfg(test)]
mod tests {
    use hakiri_core::ColumnType;

    use super::*;

    /// Two streams of airbyte-source-faker 7.2.1's catalog (schemas shortened), and one that
    /// supports full refresh only and has no key.
    fn discovered() -> Value {
        json!({"streams": [
            {"name": "users", "json_schema": {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object",
              "properties": {"id": {"type": "integer"}, "updated_at": {"type": "string", "format": "date-time"},
                             "address": {"type": "object", "properties": {"city": {"type": "string"}}}}},
             "supported_sync_modes": ["full_refresh", "incremental"], "source_defined_cursor": true,
             "default_cursor_field": ["updated_at"], "source_defined_primary_key": [["id"]], "is_resumable": true},
            {"name": "purchases", "json_schema": {"type": "object", "properties": {"id": {"type": "integer"},
              "returned_at": {"type": ["null", "string"], "format": "date-time"}}},
             "supported_sync_modes": ["full_refresh", "incremental"], "source_defined_cursor": true,
             "default_cursor_field": ["updated_at"], "source_defined_primary_key": [["id"]]},
            {"name": "events", "namespace": "app", "json_schema": {"type": "object", "properties": {"n": {"type": "number"}}},
             "supported_sync_modes": ["full_refresh"]}
        ]})
    }

    fn choice(value: Value) -> StreamChoice {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn every_stream_is_configured_by_default_incremental_where_it_can_be() {
        let (configured, selected) = configure(&discovered(), None).unwrap();
        let streams = configured["streams"].as_array().unwrap();
        assert_eq!(streams.len(), 3);
        assert_eq!(streams[0]["stream"], discovered()["streams"][0]);
        assert_eq!(streams[0]["sync_mode"], "incremental");
        assert_eq!(streams[0]["cursor_field"], json!(["updated_at"]));
        assert_eq!(streams[0]["destination_sync_mode"], "append");
        assert_eq!(streams[0]["primary_key"], json!([["id"]]));
        assert_eq!(streams[2]["sync_mode"], "full_refresh");
        assert_eq!(streams[2]["cursor_field"], json!([]));
        assert_eq!(streams[2]["primary_key"], json!([]));

        let names: Vec<&str> = selected.iter().map(|s| s.stream.as_str()).collect();
        assert_eq!(names, ["users", "purchases", "app.events"]);
        assert_eq!(selected[0].schema.key(), ["id"]);
        assert_eq!(
            selected[0].schema.column("updated_at").unwrap().ty,
            ColumnType::Timestamp
        );
        assert_eq!(
            selected[0].schema.column("address").unwrap().ty,
            ColumnType::Json
        );
        assert!(selected[1].schema.column("returned_at").unwrap().nullable);
    }

    #[test]
    fn the_pipeline_chooses_streams_modes_and_keys() {
        let wanted = [
            choice(json!("app.events")),
            choice(
                json!({"name": "users", "sync_mode": "full_refresh", "primary_key": [["id"], ["updated_at"]]}),
            ),
        ];
        let (configured, selected) = configure(&discovered(), Some(&wanted)).unwrap();
        let streams = configured["streams"].as_array().unwrap();
        assert_eq!(streams.len(), 2, "in the catalog's order");
        assert_eq!(streams[0]["stream"]["name"], "users");
        assert_eq!(streams[0]["sync_mode"], "full_refresh");
        assert_eq!(streams[0]["primary_key"], json!([["id"], ["updated_at"]]));
        assert_eq!(selected[0].schema.key(), ["id", "updated_at"]);
        assert_eq!(selected[0].sync_mode, SyncMode::FullRefresh);
        assert_eq!(selected[1].stream.as_str(), "app.events");
    }

    #[test]
    fn choices_the_source_cannot_honour_are_refused_with_the_reason() {
        let cases = [
            (
                vec![choice(json!("orders"))],
                "offers no stream \"orders\"; it offers users, purchases, app.events",
            ),
            (
                vec![choice(
                    json!({"name": "app.events", "sync_mode": "incremental"}),
                )],
                "does not support sync_mode \"incremental\"",
            ),
            (
                vec![choice(json!({"name": "users", "cursor_field": ["id"]}))],
                "defines its cursor field (updated_at)",
            ),
            (
                vec![choice(
                    json!({"name": "users", "primary_key": [["address", "city"]]}),
                )],
                "not made of top-level fields",
            ),
        ];
        for (wanted, expected) in cases {
            let error = configure(&discovered(), Some(&wanted))
                .unwrap_err()
                .to_string();
            assert!(error.contains(expected), "{error}");
        }
        let no_cursor = json!({"streams": [{"name": "s", "json_schema": {"properties": {}},
                                            "supported_sync_modes": ["incremental"]}]});
        let error = configure(&no_cursor, None).unwrap_err().to_string();
        assert!(error.contains("needs a cursor_field"), "{error}");
        let error = configure(&json!({"type": "x"}), None)
            .unwrap_err()
            .to_string();
        assert!(error.contains("no \"streams\" array"), "{error}");
        let reserved = json!({"streams": [{"name": GLOBAL, "json_schema": {"properties": {}}}]});
        let error = configure(&reserved, None).unwrap_err().to_string();
        assert!(error.contains("GLOBAL state"), "{error}");
    }
}
