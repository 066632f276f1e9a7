//! Records checked against their stream's observed schema: a tap's SCHEMA can lag its data (a
//! pinned catalog keeps announcing `integer` for a column the source now fills with text), and a
//! record written under a schema it does not fit would be a silent retype.
//!
//! A record is checked as the raw JSON text the tap wrote: only its top-level fields are read,
//! each value's type told from its first character (a number's digits read only where the
//! column is an integer or a number), so that nothing is built for the fields, nested objects
//! and strings a check never looks into.

use std::collections::HashMap;
use std::fmt;

use hakiri_core::{ColumnType, Schema};
use serde::de::{DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use super::message::Key;

/// A stream's schema, its columns found by name, to check records against.
#[derive(Debug)]
pub(crate) struct RecordCheck {
    schema: Schema,
    /// Each column's position in `schema`.
    columns: HashMap<String, usize>,
}

impl RecordCheck {
    pub(crate) fn new(schema: Schema) -> Self {
        let columns = schema
            .columns()
            .iter()
            .enumerate()
            .map(|(at, column)| (column.name.clone(), at))
            .collect();
        Self { schema, columns }
    }

    pub(crate) fn schema(&self) -> &Schema {
        &self.schema
    }

    /// The first field of `record` (a JSON object), in the schema's column order, whose value
    /// its column cannot hold, described; `None` when the record fits. Fields the schema does
    /// not list, and columns the record leaves out, are not checked (JSON Schema lets a
    /// property be absent). A field given twice is checked both times.
    pub(crate) fn mismatch(&self, record: &RawValue) -> Option<String> {
        let mut reader = serde_json::Deserializer::from_str(record.get());
        let (at, value) = match (&mut reader).deserialize_map(FirstMisfit(self)) {
            Ok(misfit) => misfit?,
            Err(e) => return Some(format!("it is not a JSON object: {e}")),
        };
        let column = &self.schema.columns()[at];
        Some(format!(
            "field {:?} is {} ({}), but its column is {}{}",
            column.name,
            json_type(value.get()),
            truncate(value.get()),
            column.ty,
            if column.nullable { "" } else { ", not null" },
        ))
    }
}

/// Reads a record's fields, and finds the misfit with the first column.
struct FirstMisfit<'c>(&'c RecordCheck);

impl<'de> Visitor<'de> for FirstMisfit<'_> {
    type Value = Option<(usize, &'de RawValue)>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut first: Self::Value = None;
        while let Some(key) = map.next_key::<Key<'de>>()? {
            let value: &'de RawValue = map.next_value()?;
            let Some(&at) = self.0.columns.get(&*key.0) else {
                continue;
            };
            if first.is_some_and(|(first, _)| first < at) {
                continue;
            }
            let column = &self.0.schema.columns()[at];
            if !fits(column.ty, column.nullable, value.get()) {
                first = Some((at, value));
            }
        }
        Ok(first)
    }
}

impl<'de> DeserializeSeed<'de> for FirstMisfit<'_> {
    type Value = Option<(usize, &'de RawValue)>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

/// Whether a column of type `ty` holds the JSON value written as `raw` (valid JSON).
fn fits(ty: ColumnType, nullable: bool, raw: &str) -> bool {
    use ColumnType::*;
    match raw.as_bytes().first() {
        Some(b'n') => nullable,
        Some(b't' | b'f') => matches!(ty, Json | Boolean),
        // Exact decimals travel as JSON numbers or, to keep their digits, as strings.
        Some(b'"') => matches!(
            ty,
            Json | Decimal | String | Date | Time | Timestamp | Binary
        ),
        Some(b'{' | b'[') => ty == Json,
        // A number: as a double it must be finite (what a JSON reader accepts), and for an
        // integer column whole (`2.0` and `1e3` are; so is an integer past 64 bits).
        _ => match ty {
            Json | Decimal => true,
            Number => raw.parse::<f64>().is_ok_and(f64::is_finite),
            Integer => {
                (!raw.contains(['.', 'e', 'E'])
                    && (raw.parse::<i64>().is_ok() || raw.parse::<u64>().is_ok()))
                    || raw
                        .parse::<f64>()
                        .is_ok_and(|f| f.is_finite() && f.fract() == 0.0)
            }
            Boolean | String | Date | Time | Timestamp | Binary => false,
        },
    }
}

/// The JSON type of the value written as `raw`, as [`hakiri_core::cursor::json_type`] names it.
fn json_type(raw: &str) -> &'static str {
    match raw.as_bytes().first() {
        Some(b'n') => "null",
        Some(b't' | b'f') => "a boolean",
        Some(b'"') => "a string",
        Some(b'[') => "an array",
        Some(b'{') => "an object",
        _ => "a number",
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
    use serde_json::{json, Value};

    use super::*;

    fn check() -> RecordCheck {
        RecordCheck::new(
            Schema::new(
                vec![
                    Column::new("id", ColumnType::Integer, false),
                    Column::new("amount", ColumnType::Number, true),
                    Column::new("updated_at", ColumnType::Timestamp, true),
                    Column::new("paid", ColumnType::Boolean, true),
                    Column::new("extra", ColumnType::Json, true),
                    Column::new("price", ColumnType::Decimal, true),
                    Column::new("name", ColumnType::String, true),
                ],
                vec!["id".into()],
            )
            .unwrap(),
        )
    }

    fn mismatch(record: &str) -> Option<String> {
        check().mismatch(&RawValue::from_string(record.to_owned()).unwrap())
    }

    fn json(value: &Value) -> String {
        value.to_string()
    }

    #[test]
    fn records_that_fit_pass() {
        for fits in [
            json(
                &json!({"id": 1, "amount": 2.5, "updated_at": "2026-01-01T00:00:00Z", "paid": true, "extra": [1]}),
            ),
            json(&json!({"id": 2.0, "amount": 3, "updated_at": null})),
            json(&json!({"id": 3, "unknown": "not in the schema"})),
            json(&json!({})),
            // Integers however written: `2.0`, an exponent, past 64 bits, negative zero.
            r#"{"id": 2.0}"#.into(),
            r#"{"id": 1e3}"#.into(),
            r#"{"id": -5E+2}"#.into(),
            r#"{"id": 18446744073709551615}"#.into(),
            r#"{"id": -9223372036854775808}"#.into(),
            r#"{"id": 123456789012345678901234567890}"#.into(),
            r#"{"id": -0}"#.into(),
            // Big and small numbers; decimals as numbers or strings, of any size.
            r#"{"id": 1, "amount": 1.7976931348623157e308, "price": 1e400}"#.into(),
            r#"{"id": 1, "amount": -4.9e-324, "price": "12345678901234567890.123456789"}"#.into(),
            // Nested values are not looked into; a JSON column takes anything but a null in a
            // column that is not nullable.
            r#"{"id": 1, "extra": {"id": "not the top-level id", "deep": [[{}], null]}}"#.into(),
            r#"{"id": 1, "extra": "text"}"#.into(),
            r#"{"id": 1, "extra": false}"#.into(),
            r#"{"id": 1, "extra": 1e400}"#.into(),
            // Escaped and non-ASCII strings and keys, whitespace anywhere.
            r#"{"i\u0064": 7, "name": "a \"quoted\" \\ name\n", "名前": "値"}"#.into(),
            "{ \"id\" : 1 , \"name\" : \"é ✓ 😀\" }".into(),
        ] {
            assert_eq!(mismatch(&fits), None, "{fits}");
        }
    }

    #[test]
    fn a_retyped_value_is_named() {
        let error = mismatch(r#"{"id": "C-1"}"#).unwrap();
        assert!(error.contains("\"id\" is a string (\"C-1\")"), "{error}");
        assert!(error.contains("integer, not null"), "{error}");
        for misfit in [
            r#"{"id": null}"#,
            r#"{"id": 1.5}"#,
            r#"{"id": 1e-1}"#,
            r#"{"id": 1e400}"#,
            r#"{"id": true}"#,
            r#"{"id": [1]}"#,
            r#"{"id": {"value": 1}}"#,
            r#"{"amount": "2.5"}"#,
            r#"{"amount": 1e400}"#,
            r#"{"amount": [2.5]}"#,
            r#"{"updated_at": 1}"#,
            r#"{"updated_at": {}}"#,
            r#"{"paid": "yes"}"#,
            r#"{"paid": 1}"#,
            r#"{"price": true}"#,
            r#"{"name": 1}"#,
            r#"{"i\u0064": "escaped key"}"#,
        ] {
            assert!(mismatch(misfit).is_some(), "{misfit}");
        }
    }

    #[test]
    fn the_first_misfit_in_column_order_is_named_and_long_values_cut() {
        let error = mismatch(r#"{"paid": "yes", "amount": "no", "id": 1}"#).unwrap();
        assert!(error.starts_with("field \"amount\" is a string"), "{error}");
        let long = format!(r#"{{"name": {{"text": "{}"}}}}"#, "x".repeat(100));
        let error = mismatch(&long).unwrap();
        assert!(error.contains("is an object ({\"text\": \"xxx"), "{error}");
        assert!(error.contains("…), but its column is string"), "{error}");
        let error = mismatch(r#"{"id": null}"#).unwrap();
        assert!(error.contains("\"id\" is null (null)"), "{error}");
    }

    #[test]
    fn a_field_given_twice_is_checked_both_times() {
        assert!(mismatch(r#"{"id": "x", "id": 1}"#).is_some());
        assert!(mismatch(r#"{"id": 1, "id": 2}"#).is_none());
    }
}
