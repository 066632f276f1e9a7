//! Schema inference for the `jsonl` connector: the columns a batch of JSON records implies,
//! merged with the stream's current schema version.

use std::collections::BTreeMap;

use hakiri_core::{Column, ColumnType, Schema, Timestamp};
use serde_json::{Map, Value};

/// What a batch of records says about each field.
#[derive(Debug, Default)]
pub(super) struct Inference {
    records: u64,
    fields: BTreeMap<String, Field>,
}

#[derive(Debug, Default)]
struct Field {
    /// The unified type of its non-null values; `None` while only nulls were seen.
    ty: Option<ColumnType>,
    /// Records in which it has a non-null value.
    non_null: u64,
}

impl Inference {
    /// Records added so far.
    pub(super) fn records(&self) -> u64 {
        self.records
    }

    /// Adds one record.
    pub(super) fn add(&mut self, record: &Map<String, Value>) {
        self.records += 1;
        for (name, value) in record {
            // Look up before inserting: cloning the name for every field of every record is the
            // cost that matters here.
            let field = match self.fields.get_mut(name) {
                Some(field) => field,
                None => self.fields.entry(name.clone()).or_default(),
            };
            if let Some(ty) = value_type(value) {
                field.non_null += 1;
                field.ty = Some(field.ty.map_or(ty, |seen| unify(seen, ty)));
            }
        }
    }

    /// The schema these records imply, judged against `current` (the stream's current version).
    ///
    /// - A current column keeps its type when the batch's values fit it (integers in a `number`
    ///   column, timestamps in a `string` one, anything in `json`); otherwise it takes the batch's
    ///   type, and the catalog classifies the change.
    /// - A column is nullable if it was, or if some record of the batch lacks a value for it.
    /// - A field new to the stream is nullable: rows already loaded have no value for it.
    /// - A field seen only as null is not a column until it has a value (its type is unknown).
    /// - The key is `key` if given, else the current key, else `["id"]` when every record of the
    ///   batch has a non-null `id`.
    ///
    /// # Errors
    /// When the columns or key do not make a valid [`Schema`] (a bad field name, a key column no
    /// record has).
    pub(super) fn schema(
        &self,
        current: Option<&Schema>,
        key: Option<&[String]>,
    ) -> Result<Schema, hakiri_core::Error> {
        let mut columns = Vec::with_capacity(self.fields.len());
        if let Some(current) = current {
            for column in current.columns() {
                let (ty, missing) = match self.fields.get(&column.name) {
                    Some(Field {
                        ty: Some(ty),
                        non_null,
                    }) => (
                        if fits(*ty, column.ty) { column.ty } else { *ty },
                        *non_null < self.records,
                    ),
                    _ => (column.ty, true),
                };
                columns.push(Column::new(
                    column.name.clone(),
                    ty,
                    column.nullable || missing,
                ));
            }
        }
        for (name, field) in &self.fields {
            let Some(ty) = field.ty else { continue };
            if current.is_some_and(|c| c.column(name).is_some()) {
                continue;
            }
            let nullable = current.is_some() || field.non_null < self.records;
            columns.push(Column::new(name.clone(), ty, nullable));
        }
        let key = match (key, current) {
            (Some(key), _) => key.to_vec(),
            (None, Some(current)) => current.key().to_vec(),
            (None, None) => {
                let every_record_has_id = self
                    .fields
                    .get("id")
                    .is_some_and(|f| f.ty.is_some() && f.non_null == self.records);
                if every_record_has_id {
                    vec!["id".to_owned()]
                } else {
                    Vec::new()
                }
            }
        };
        Schema::new(columns, key)
    }
}

/// The column type of one JSON value; `None` for null.
pub(super) fn value_type(value: &Value) -> Option<ColumnType> {
    Some(match value {
        Value::Null => return None,
        Value::Bool(_) => ColumnType::Boolean,
        Value::Number(n) if n.is_i64() || n.is_u64() => ColumnType::Integer,
        Value::Number(_) => ColumnType::Number,
        Value::String(s) if is_rfc3339(s) => ColumnType::Timestamp,
        Value::String(_) => ColumnType::String,
        Value::Array(_) | Value::Object(_) => ColumnType::Json,
    })
}

/// Whether `s` is an RFC 3339 date-time. The shape check first keeps the full parse (and its
/// error allocation) off ordinary strings.
fn is_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 20
        && b[4] == b'-'
        && b[7] == b'-'
        && matches!(b[10], b'T' | b't' | b' ')
        && b[13] == b':'
        && s.parse::<Timestamp>().is_ok()
}

/// The type of a field whose values within one batch have types `a` and `b`.
fn unify(a: ColumnType, b: ColumnType) -> ColumnType {
    use ColumnType::*;
    match (a, b) {
        (a, b) if a == b => a,
        (Integer, Number) | (Number, Integer) => Number,
        (Timestamp, String) | (String, Timestamp) => String,
        _ => Json,
    }
}

/// Whether every value inferred as `value` is a valid value of a column of type `column`.
fn fits(value: ColumnType, column: ColumnType) -> bool {
    use ColumnType::*;
    value == column
        || column == Json
        || matches!(
            (value, column),
            (Integer, Number | Decimal) | (Timestamp, String)
        )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use ColumnType::*;

    fn infer(records: &[Value]) -> Inference {
        let mut inference = Inference::default();
        for r in records {
            inference.add(r.as_object().unwrap());
        }
        inference
    }

    fn column(schema: &Schema, name: &str) -> (ColumnType, bool) {
        let c = schema
            .column(name)
            .unwrap_or_else(|| panic!("no column {name}"));
        (c.ty, c.nullable)
    }

    #[test]
    fn json_types_map_to_column_types() {
        let batch = infer(&[json!({
            "id": 1, "price": 2.5, "name": "a", "at": "2026-01-15T12:00:00.000Z",
            "ok": true, "tags": ["x"], "meta": {"k": 1}
        })]);
        let s = batch.schema(None, None).unwrap();
        assert_eq!(column(&s, "id"), (Integer, false));
        assert_eq!(column(&s, "price"), (Number, false));
        assert_eq!(column(&s, "name"), (String, false));
        assert_eq!(column(&s, "at"), (Timestamp, false));
        assert_eq!(column(&s, "ok"), (Boolean, false));
        assert_eq!(column(&s, "tags"), (Json, false));
        assert_eq!(column(&s, "meta"), (Json, false));
        assert_eq!(s.key(), ["id".to_owned()]);
    }

    #[test]
    fn missing_or_null_values_make_a_column_nullable() {
        let batch = infer(&[
            json!({"id": 1, "a": 1, "b": "x"}),
            json!({"id": 2, "a": null}),
            json!({"id": 3, "a": 5, "b": "y", "c": null}),
        ]);
        let s = batch.schema(None, None).unwrap();
        assert_eq!(column(&s, "a"), (Integer, true));
        assert_eq!(column(&s, "b"), (String, true));
        assert!(
            s.column("c").is_none(),
            "a field only ever null has no type yet"
        );
    }

    #[test]
    fn mixed_values_unify() {
        let batch = infer(&[
            json!({"n": 1, "t": "2026-01-15T12:00:00Z", "m": 1}),
            json!({"n": 1.5, "t": "later", "m": "one"}),
        ]);
        let s = batch.schema(None, None).unwrap();
        assert_eq!(column(&s, "n").0, Number);
        assert_eq!(column(&s, "t").0, String);
        assert_eq!(column(&s, "m").0, Json);
        assert!(s.key().is_empty(), "no record has an id");
    }

    #[test]
    fn merging_keeps_compatible_types_and_adds_nullable_columns() {
        let first = infer(&[json!({"id": 1, "amount": 1.5, "label": "x"})])
            .schema(None, None)
            .unwrap();
        // Integers fit a number column; a new field is an added nullable column; a field absent
        // from the batch stays, nullable.
        let next = infer(&[json!({"id": 2, "amount": 3, "note": "n"})])
            .schema(Some(&first), None)
            .unwrap();
        assert_eq!(column(&next, "amount"), (Number, false));
        assert_eq!(column(&next, "note"), (String, true));
        assert_eq!(column(&next, "label"), (String, true));
        assert_eq!(next.key(), ["id".to_owned()]);
        let diff = hakiri_core::schema::diff(&first, &next);
        assert_eq!(
            diff.classify(),
            Some(hakiri_core::ChangeClass::Widening),
            "{diff:?}"
        );
        // The same batch again changes nothing.
        let again = infer(&[json!({"id": 3, "amount": 4, "note": "m"})])
            .schema(Some(&next), None)
            .unwrap();
        assert_eq!(again, next);
    }

    #[test]
    fn an_incompatible_type_is_a_retyped_column() {
        let first = infer(&[json!({"id": 1, "active": true})])
            .schema(None, None)
            .unwrap();
        let next = infer(&[json!({"id": 2, "active": 1})])
            .schema(Some(&first), None)
            .unwrap();
        assert_eq!(column(&next, "active"), (Integer, false));
        assert_eq!(
            hakiri_core::schema::diff(&first, &next).classify(),
            Some(hakiri_core::ChangeClass::Breaking)
        );
    }

    #[test]
    fn a_configured_key_must_be_a_column() {
        let batch = infer(&[json!({"order_id": 1})]);
        let s = batch.schema(None, Some(&["order_id".to_owned()])).unwrap();
        assert_eq!(s.key(), ["order_id".to_owned()]);
        assert!(batch.schema(None, Some(&["nope".to_owned()])).is_err());
    }

    #[test]
    fn timestamp_detection_needs_the_full_shape() {
        assert_eq!(value_type(&json!("2026-01-15T12:00:00Z")), Some(Timestamp));
        assert_eq!(
            value_type(&json!("2026-01-15T12:00:00.123+02:00")),
            Some(Timestamp)
        );
        assert_eq!(value_type(&json!("2026-01-15")), Some(String));
        assert_eq!(value_type(&json!("2026-13-45T99:00:00Z")), Some(String));
        assert_eq!(value_type(&json!(u64::MAX)), Some(Integer));
        assert_eq!(value_type(&Value::Null), None);
    }
}
