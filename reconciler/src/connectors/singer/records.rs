//! Records checked against their stream's observed schema: a tap's SCHEMA can lag its data (a
//! pinned catalog keeps announcing `integer` for a column the source now fills with text), and a
//! record written under a schema it does not fit would be a silent retype.

use hakiri_core::{ColumnType, Schema};
use serde_json::{Map, Value};

/// The first field of `record` whose value its column cannot hold, described; `None` when the
/// record fits. Fields the schema does not list, and columns the record leaves out, are not
/// checked (JSON Schema lets a property be absent).
pub(crate) fn mismatch(schema: &Schema, record: &Map<String, Value>) -> Option<String> {
    schema.columns().iter().find_map(|column| {
        let value = record.get(&column.name)?;
        let fits = match value {
            Value::Null => column.nullable,
            value => holds(column.ty, value),
        };
        (!fits).then(|| {
            format!(
                "field {:?} is {} ({}), but its column is {}{}",
                column.name,
                hakiri_core::cursor::json_type(value),
                truncate(&value.to_string()),
                column.ty,
                if column.nullable { "" } else { ", not null" },
            )
        })
    })
}

/// Whether a column of type `ty` holds the non-null JSON `value`.
fn holds(ty: ColumnType, value: &Value) -> bool {
    use ColumnType::*;
    match ty {
        Json => true,
        Boolean => value.is_boolean(),
        Integer => {
            value.is_i64() || value.is_u64() || value.as_f64().is_some_and(|f| f.fract() == 0.0)
        }
        Number => value.is_number(),
        // Exact decimals travel as JSON numbers or, to keep their digits, as strings.
        Decimal => value.is_number() || value.is_string(),
        String | Date | Time | Timestamp | Binary => value.is_string(),
    }
}

fn truncate(text: &str) -> String {
    const SHOWN: usize = 40;
    match text.char_indices().nth(SHOWN) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use hakiri_core::Column;
    use serde_json::json;

    use super::*;

    fn schema() -> Schema {
        Schema::new(
            vec![
                Column::new("id", ColumnType::Integer, false),
                Column::new("amount", ColumnType::Number, true),
                Column::new("updated_at", ColumnType::Timestamp, true),
                Column::new("paid", ColumnType::Boolean, true),
                Column::new("extra", ColumnType::Json, true),
            ],
            vec!["id".into()],
        )
        .unwrap()
    }

    fn record(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn records_that_fit_pass() {
        for fits in [
            json!({"id": 1, "amount": 2.5, "updated_at": "2026-01-01T00:00:00Z", "paid": true, "extra": [1]}),
            json!({"id": 2.0, "amount": 3, "updated_at": null}),
            json!({"id": 3, "unknown": "not in the schema"}),
            json!({}),
        ] {
            assert_eq!(mismatch(&schema(), &record(fits.clone())), None, "{fits}");
        }
    }

    #[test]
    fn a_retyped_value_is_named() {
        let error = mismatch(&schema(), &record(json!({"id": "C-1"}))).unwrap();
        assert!(error.contains("\"id\" is a string (\"C-1\")"), "{error}");
        assert!(error.contains("integer, not null"), "{error}");
        for misfit in [
            json!({"id": null}),
            json!({"id": 1.5}),
            json!({"amount": "2.5"}),
            json!({"updated_at": 1}),
            json!({"paid": "yes"}),
        ] {
            assert!(
                mismatch(&schema(), &record(misfit.clone())).is_some(),
                "{misfit}"
            );
        }
    }
}
