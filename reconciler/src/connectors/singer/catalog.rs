//! A tap's discovered catalog (`tap --config … --discover`): which streams a run syncs, and the
//! schema each announces before any record is read.

use hakiri_core::{Schema, StreamName};
use serde_json::{json, Map, Value};

/// A stream a run syncs, with its discovered schema.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Selected {
    pub(crate) stream: StreamName,
    pub(crate) schema: Schema,
}

/// Why a catalog cannot be used; the caller adds which tap printed it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct BadCatalog(String);

fn bad(problem: impl Into<String>) -> BadCatalog {
    BadCatalog(problem.into())
}

/// Marks the streams named in `wanted` (every stream when `None`) selected in `catalog` and the
/// others unselected — the stream-level `selected` metadata every Singer tap reads — and returns
/// the selected ones with their schemas, in catalog order. A stream is named by its
/// `tap_stream_id` (else its `stream`), the name its RECORD, SCHEMA and bookmarks use.
///
/// # Errors
/// A catalog without a `streams` array, a stream without a usable name or schema, a name that
/// cannot be a stream's, or a wanted stream the catalog does not offer (naming those it does).
pub(crate) fn select(
    catalog: &mut Value,
    wanted: Option<&[String]>,
) -> Result<Vec<Selected>, BadCatalog> {
    let streams = catalog
        .get_mut("streams")
        .and_then(Value::as_array_mut)
        .ok_or_else(|| bad("the discovered catalog has no \"streams\" array"))?;
    let mut offered = Vec::new();
    let mut selected = Vec::new();
    for entry in streams.iter_mut() {
        let Value::Object(entry) = entry else {
            return Err(bad(
                "the discovered catalog lists a stream that is not an object",
            ));
        };
        let name = ["tap_stream_id", "stream"]
            .iter()
            .find_map(|field| entry.get(*field).and_then(Value::as_str))
            .ok_or_else(|| bad("a discovered stream has neither \"tap_stream_id\" nor \"stream\""))?
            .to_owned();
        let chosen = wanted.is_none_or(|wanted| wanted.contains(&name));
        set_selected(entry, chosen);
        if chosen {
            let stream = StreamName::new(name.as_str())
                .map_err(|e| bad(format!("discovered stream {name:?}: {e}")))?;
            let schema = entry
                .get("schema")
                .ok_or_else(|| bad(format!("discovered stream {name:?} has no \"schema\"")))?;
            let schema = Schema::from_json_schema(schema, &key_properties(entry))
                .map_err(|e| bad(format!("discovered stream {name:?}: {e}")))?;
            selected.push(Selected { stream, schema });
        }
        offered.push(name);
    }
    if let Some(missing) = wanted
        .into_iter()
        .flatten()
        .find(|name| !offered.contains(name))
    {
        return Err(bad(format!(
            "the tap offers no stream {missing:?}; it offers {}",
            if offered.is_empty() {
                "none".to_owned()
            } else {
                offered.join(", ")
            }
        )));
    }
    Ok(selected)
}

/// The stream's key: top-level `key_properties`, else its stream metadata's
/// `table-key-properties` (where SDK taps put it).
fn key_properties(entry: &Map<String, Value>) -> Vec<String> {
    let strings = |value: &Value| -> Vec<String> {
        value
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|key| key.as_str().map(str::to_owned))
            .collect()
    };
    if let Some(keys) = entry.get("key_properties") {
        return strings(keys);
    }
    stream_metadata(entry)
        .and_then(|metadata| metadata.get("table-key-properties"))
        .map(strings)
        .unwrap_or_default()
}

/// The metadata entry of the stream itself (breadcrumb `[]`).
fn stream_metadata(entry: &Map<String, Value>) -> Option<&Map<String, Value>> {
    entry
        .get("metadata")?
        .as_array()?
        .iter()
        .find(|m| m.get("breadcrumb").is_some_and(|b| b == &json!([])))?
        .get("metadata")?
        .as_object()
}

fn set_selected(entry: &mut Map<String, Value>, selected: bool) {
    let metadata = entry
        .entry("metadata")
        .or_insert_with(|| Value::Array(Vec::new()));
    if !metadata.is_array() {
        *metadata = Value::Array(Vec::new());
    }
    let Some(list) = metadata.as_array_mut() else {
        return;
    };
    let position = list
        .iter()
        .position(|m| m.get("breadcrumb").is_some_and(|b| b == &json!([])));
    let index = position.unwrap_or_else(|| {
        list.push(json!({"breadcrumb": [], "metadata": {}}));
        list.len() - 1
    });
    if let Some(Value::Object(stream)) = list[index].get_mut("metadata") {
        stream.insert("selected".to_owned(), Value::Bool(selected));
    } else {
        list[index]["metadata"] = json!({ "selected": selected });
    }
}

#[cfg(test)]
mod tests {
    use hakiri_core::ColumnType;

    use super::*;

    fn discovered() -> Value {
        json!({"streams": [
            {
                "tap_stream_id": "public-orders",
                "stream": "orders",
                "schema": {"properties": {"id": {"type": ["integer"]}, "amount": {"type": ["number", "null"]}}},
                "metadata": [
                    {"breadcrumb": [], "metadata": {"table-key-properties": ["id"], "selected-by-default": false}},
                    {"breadcrumb": ["properties", "id"], "metadata": {"inclusion": "automatic"}}
                ]
            },
            {
                "stream": "customers",
                "key_properties": [],
                "schema": {"properties": {"name": {"type": "string"}}}
            }
        ]})
    }

    #[test]
    fn every_stream_is_selected_by_default_with_its_schema_and_key() {
        let mut catalog = discovered();
        let selected = select(&mut catalog, None).unwrap();
        assert_eq!(selected.len(), 2);
        assert_eq!(selected[0].stream.as_str(), "public-orders");
        assert_eq!(selected[0].schema.key(), ["id"]);
        assert_eq!(
            selected[0].schema.column("amount").unwrap().ty,
            ColumnType::Number
        );
        assert_eq!(selected[1].stream.as_str(), "customers");
        assert_eq!(
            catalog["streams"][0]["metadata"][0]["metadata"]["selected"],
            true
        );
        assert_eq!(
            catalog["streams"][1]["metadata"],
            json!([{"breadcrumb": [], "metadata": {"selected": true}}])
        );
    }

    #[test]
    fn only_the_wanted_streams_are_selected() {
        let mut catalog = discovered();
        let selected = select(&mut catalog, Some(&["customers".to_owned()])).unwrap();
        assert_eq!(selected.len(), 1);
        assert_eq!(
            catalog["streams"][0]["metadata"][0]["metadata"]["selected"],
            false
        );
        assert_eq!(
            catalog["streams"][1]["metadata"][0]["metadata"]["selected"],
            true
        );
    }

    #[test]
    fn a_stream_the_tap_does_not_offer_is_named_with_those_it_does() {
        let error = select(&mut discovered(), Some(&["invoices".to_owned()]))
            .unwrap_err()
            .to_string();
        assert!(error.contains("no stream \"invoices\""), "{error}");
        assert!(error.contains("public-orders, customers"), "{error}");
        let error = select(&mut json!({"type": "x"}), None)
            .unwrap_err()
            .to_string();
        assert!(error.contains("no \"streams\" array"), "{error}");
    }
}
