//! The canonical schema model: columns, keys, a content fingerprint, conversion from JSON Schema,
//! diffs and their classification.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::ids::check_name;

/// Most columns a schema may have.
pub const MAX_COLUMNS: usize = 4096;

/// A column's logical type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColumnType {
    /// true / false.
    Boolean,
    /// A whole number.
    Integer,
    /// An exact decimal number.
    Decimal,
    /// A floating-point number.
    Number,
    /// Text.
    String,
    /// A calendar date.
    Date,
    /// A time of day.
    Time,
    /// An instant (date and time).
    Timestamp,
    /// Bytes.
    Binary,
    /// Any JSON (objects, arrays, mixed types).
    Json,
}

impl ColumnType {
    /// Whether every value of `self` is also a value of `to` (a change that loses nothing).
    pub fn widens_to(self, to: ColumnType) -> bool {
        use ColumnType::*;
        match (self, to) {
            (a, b) if a == b => false,
            (_, Json) => true,
            (Json | Binary, _) => false,
            (_, String) => true,
            (Integer, Decimal | Number) => true,
            (Date, Timestamp) => true,
            _ => false,
        }
    }
}

impl fmt::Display for ColumnType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        f.write_str(&text)
    }
}

/// One column.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Column {
    /// Its name (printable text, ≤ 255 bytes).
    pub name: String,
    /// Its type.
    #[serde(rename = "type")]
    pub ty: ColumnType,
    /// Whether it may be null or missing.
    pub nullable: bool,
}

impl Column {
    /// A column.
    pub fn new(name: impl Into<String>, ty: ColumnType, nullable: bool) -> Self {
        Self {
            name: name.into(),
            ty,
            nullable,
        }
    }
}

/// A stream's schema: columns (in source order) and key columns.
///
/// Validated on construction and deserialisation: unique column names, key columns that exist,
/// at most [`MAX_COLUMNS`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "SchemaFields", into = "SchemaFields")]
pub struct Schema {
    columns: Vec<Column>,
    key: Vec<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SchemaFields {
    columns: Vec<Column>,
    #[serde(default)]
    key: Vec<String>,
}

impl Schema {
    /// Validates and builds a schema.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for duplicate or invalid column names, unknown or repeated key
    /// columns, or too many columns.
    pub fn new(columns: Vec<Column>, key: Vec<String>) -> Result<Self> {
        if columns.len() > MAX_COLUMNS {
            return Err(Error::invalid(format!(
                "schema has {} columns; the limit is {MAX_COLUMNS}",
                columns.len()
            )));
        }
        let mut names = BTreeSet::new();
        for column in &columns {
            check_name("column name", &column.name)?;
            if !names.insert(column.name.as_str()) {
                return Err(Error::invalid(format!(
                    "column {:?} appears twice",
                    column.name
                )));
            }
        }
        let mut keys = BTreeSet::new();
        for k in &key {
            if !names.contains(k.as_str()) {
                return Err(Error::invalid(format!("key column {k:?} is not a column")));
            }
            if !keys.insert(k.as_str()) {
                return Err(Error::invalid(format!("key column {k:?} appears twice")));
            }
        }
        Ok(Self { columns, key })
    }

    /// The columns, in source order.
    pub fn columns(&self) -> &[Column] {
        &self.columns
    }

    /// The key columns, in key order.
    pub fn key(&self) -> &[String] {
        &self.key
    }

    /// A column by name.
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// A content hash (SHA-256, hex) that ignores column order but not key order.
    pub fn fingerprint(&self) -> Fingerprint {
        let mut columns: Vec<&Column> = self.columns.iter().collect();
        columns.sort_by(|a, b| a.name.cmp(&b.name));
        let mut hasher = Sha256::new();
        // Names cannot contain control characters, so NUL and LF separate fields unambiguously.
        for c in columns {
            hasher.update(c.name.as_bytes());
            hasher.update([0]);
            hasher.update(c.ty.to_string().as_bytes());
            hasher.update([0, u8::from(c.nullable), b'\n']);
        }
        hasher.update(b"key\n");
        for k in &self.key {
            hasher.update(k.as_bytes());
            hasher.update([0]);
        }
        let digest = hasher.finalize();
        Fingerprint(digest.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// Converts the JSON Schema that Singer and Airbyte SCHEMA messages carry.
    ///
    /// Top-level `properties` become columns: `"type"` (a string or a list that may include
    /// `"null"`) and `"format"` (`date-time`, `date`, `time`) pick the [`ColumnType`]; objects,
    /// arrays, unions of several types and untyped properties become [`ColumnType::Json`];
    /// `anyOf`/`oneOf` are merged the same way. A column is nullable unless its type excludes
    /// `null`. `key_properties` become the key.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if the document is not an object schema with `properties`, or
    /// the result is not a valid [`Schema`].
    pub fn from_json_schema(json_schema: &Value, key_properties: &[String]) -> Result<Self> {
        let properties = json_schema
            .get("properties")
            .and_then(Value::as_object)
            .ok_or_else(|| Error::invalid("JSON Schema has no \"properties\" object"))?;
        let columns = properties
            .iter()
            .map(|(name, property)| {
                let (ty, nullable) = json_property_type(property);
                Column::new(name.clone(), ty, nullable)
            })
            .collect();
        Self::new(columns, key_properties.to_vec())
    }
}

impl TryFrom<SchemaFields> for Schema {
    type Error = Error;
    fn try_from(f: SchemaFields) -> Result<Self> {
        Self::new(f.columns, f.key)
    }
}

impl From<Schema> for SchemaFields {
    fn from(s: Schema) -> Self {
        Self {
            columns: s.columns,
            key: s.key,
        }
    }
}

/// The type and nullability of one JSON Schema property.
fn json_property_type(property: &Value) -> (ColumnType, bool) {
    let mut types = BTreeSet::new();
    let mut nullable = false;
    collect_json_types(property, &mut types, &mut nullable, 0);
    let ty = match types.len() {
        0 => {
            // No type information at all: anything goes.
            nullable = true;
            ColumnType::Json
        }
        1 => types.into_iter().next().unwrap_or(ColumnType::Json),
        _ if types
            .iter()
            .all(|t| matches!(t, ColumnType::Integer | ColumnType::Number)) =>
        {
            ColumnType::Number
        }
        _ => ColumnType::Json,
    };
    (ty, nullable)
}

/// Deepest `anyOf`/`oneOf` nesting followed; deeper alternatives count as JSON.
const MAX_UNION_DEPTH: usize = 8;

fn collect_json_types(
    property: &Value,
    types: &mut BTreeSet<ColumnType>,
    nullable: &mut bool,
    depth: usize,
) {
    let Some(object) = property.as_object() else {
        // `true` / `{}`-like schemas accept anything.
        types.insert(ColumnType::Json);
        *nullable = true;
        return;
    };
    for union in ["anyOf", "oneOf"] {
        if let Some(alternatives) = object.get(union).and_then(Value::as_array) {
            for alternative in alternatives {
                if depth < MAX_UNION_DEPTH {
                    collect_json_types(alternative, types, nullable, depth + 1);
                } else {
                    types.insert(ColumnType::Json);
                }
            }
        }
    }
    let format = object.get("format").and_then(Value::as_str);
    let names: Vec<&str> = match object.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    for name in names {
        let ty = match (name, format) {
            ("null", _) => {
                *nullable = true;
                continue;
            }
            ("string", Some("date-time")) => ColumnType::Timestamp,
            ("string", Some("date")) => ColumnType::Date,
            ("string", Some("time")) => ColumnType::Time,
            ("string", Some("binary" | "byte")) => ColumnType::Binary,
            ("string", _) => ColumnType::String,
            ("integer", _) => ColumnType::Integer,
            ("number", _) => ColumnType::Number,
            ("boolean", _) => ColumnType::Boolean,
            _ => ColumnType::Json,
        };
        types.insert(ty);
    }
}

/// A schema's content hash.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Fingerprint(String);

impl Fingerprint {
    /// The hex text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A column whose type changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retyped {
    /// The column.
    pub column: String,
    /// Its old type.
    pub from: ColumnType,
    /// Its new type.
    pub to: ColumnType,
}

/// A column whose nullability changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NullabilityChange {
    /// The column.
    pub column: String,
    /// Nullable before.
    pub from: bool,
    /// Nullable after.
    pub to: bool,
}

/// A change of key columns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyChange {
    /// The old key.
    pub from: Vec<String>,
    /// The new key.
    pub to: Vec<String>,
}

/// What changed between two schemas. Lists are sorted by column name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaDiff {
    /// New columns.
    pub added: Vec<Column>,
    /// Columns that disappeared.
    pub removed: Vec<Column>,
    /// Columns whose type changed.
    pub retyped: Vec<Retyped>,
    /// Columns whose nullability changed.
    pub nullability: Vec<NullabilityChange>,
    /// The key, if it changed.
    pub key: Option<KeyChange>,
}

impl SchemaDiff {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty()
            && self.removed.is_empty()
            && self.retyped.is_empty()
            && self.nullability.is_empty()
            && self.key.is_none()
    }

    /// The class of the whole diff: the most severe class of its changes; `None` if empty.
    ///
    /// - an added nullable column is additive; an added required column is breaking (rows already
    ///   loaded have no value for it);
    /// - a removed column is breaking;
    /// - a type change is widening if every old value is a new value (integer → number, date →
    ///   timestamp, anything → string or JSON), breaking otherwise;
    /// - required → nullable is widening; nullable → required is breaking;
    /// - any key change is breaking.
    pub fn classify(&self) -> Option<ChangeClass> {
        let added = self.added.iter().map(|c| {
            if c.nullable {
                ChangeClass::Additive
            } else {
                ChangeClass::Breaking
            }
        });
        let removed = self.removed.iter().map(|_| ChangeClass::Breaking);
        let retyped = self.retyped.iter().map(|r| {
            if r.from.widens_to(r.to) {
                ChangeClass::Widening
            } else {
                ChangeClass::Breaking
            }
        });
        let nullability = self.nullability.iter().map(|n| {
            if n.to {
                ChangeClass::Widening
            } else {
                ChangeClass::Breaking
            }
        });
        let key = self.key.iter().map(|_| ChangeClass::Breaking);
        added
            .chain(removed)
            .chain(retyped)
            .chain(nullability)
            .chain(key)
            .max()
    }
}

/// How disruptive a schema change is, in increasing order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeClass {
    /// Only new optional columns.
    Additive,
    /// Types or nullability relaxed; every old value is still valid.
    Widening,
    /// Something consumers rely on changed or disappeared.
    Breaking,
}

impl fmt::Display for ChangeClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ChangeClass::Additive => "additive",
            ChangeClass::Widening => "widening",
            ChangeClass::Breaking => "breaking",
        })
    }
}

/// What changed from `old` to `new`.
pub fn diff(old: &Schema, new: &Schema) -> SchemaDiff {
    let old_columns: BTreeMap<&str, &Column> =
        old.columns.iter().map(|c| (c.name.as_str(), c)).collect();
    let new_columns: BTreeMap<&str, &Column> =
        new.columns.iter().map(|c| (c.name.as_str(), c)).collect();
    let mut d = SchemaDiff::default();
    for (name, new_column) in &new_columns {
        match old_columns.get(name) {
            None => d.added.push((*new_column).clone()),
            Some(old_column) => {
                if old_column.ty != new_column.ty {
                    d.retyped.push(Retyped {
                        column: (*name).to_owned(),
                        from: old_column.ty,
                        to: new_column.ty,
                    });
                }
                if old_column.nullable != new_column.nullable {
                    d.nullability.push(NullabilityChange {
                        column: (*name).to_owned(),
                        from: old_column.nullable,
                        to: new_column.nullable,
                    });
                }
            }
        }
    }
    d.removed = old_columns
        .iter()
        .filter(|(name, _)| !new_columns.contains_key(*name))
        .map(|(_, c)| (*c).clone())
        .collect();
    if old.key != new.key {
        d.key = Some(KeyChange {
            from: old.key.clone(),
            to: new.key.clone(),
        });
    }
    d
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use ColumnType::*;

    fn schema(columns: &[(&str, ColumnType, bool)], key: &[&str]) -> Schema {
        Schema::new(
            columns
                .iter()
                .map(|(n, t, null)| Column::new(*n, *t, *null))
                .collect(),
            key.iter().map(|k| (*k).to_owned()).collect(),
        )
        .unwrap()
    }

    #[test]
    fn schemas_reject_duplicates_and_unknown_keys() {
        let dup = Schema::new(
            vec![
                Column::new("a", Integer, false),
                Column::new("a", String, true),
            ],
            vec![],
        );
        assert!(matches!(dup, Err(Error::InvalidArgument(_))));
        let bad_key = Schema::new(vec![Column::new("a", Integer, false)], vec!["b".into()]);
        assert!(bad_key.is_err());
        assert!(Schema::new(vec![Column::new("", Integer, false)], vec![]).is_err());
    }

    #[test]
    fn fingerprint_ignores_column_order_but_sees_everything_else() {
        let a = schema(&[("id", Integer, false), ("name", String, true)], &["id"]);
        let b = schema(&[("name", String, true), ("id", Integer, false)], &["id"]);
        assert_eq!(a.fingerprint(), b.fingerprint());
        let c = schema(&[("id", Integer, false), ("name", String, false)], &["id"]);
        assert_ne!(a.fingerprint(), c.fingerprint());
        let d = schema(&[("id", Integer, false), ("name", String, true)], &[]);
        assert_ne!(a.fingerprint(), d.fingerprint());
        assert_eq!(a.fingerprint().as_str().len(), 64);
    }

    #[test]
    fn classification_follows_the_documented_rules() {
        let base = schema(
            &[("id", Integer, false), ("amount", Integer, true)],
            &["id"],
        );
        let additive = schema(
            &[
                ("id", Integer, false),
                ("amount", Integer, true),
                ("note", String, true),
            ],
            &["id"],
        );
        assert_eq!(
            diff(&base, &additive).classify(),
            Some(ChangeClass::Additive)
        );
        let widening = schema(&[("id", Integer, false), ("amount", Number, true)], &["id"]);
        assert_eq!(
            diff(&base, &widening).classify(),
            Some(ChangeClass::Widening)
        );
        let breaking = schema(
            &[("id", Integer, false), ("amount", Boolean, true)],
            &["id"],
        );
        assert_eq!(
            diff(&base, &breaking).classify(),
            Some(ChangeClass::Breaking)
        );
        let removed = schema(&[("id", Integer, false)], &["id"]);
        assert_eq!(
            diff(&base, &removed).classify(),
            Some(ChangeClass::Breaking)
        );
        let required = schema(
            &[("id", Integer, false), ("amount", Integer, false)],
            &["id"],
        );
        assert_eq!(
            diff(&base, &required).classify(),
            Some(ChangeClass::Breaking)
        );
        assert_eq!(
            diff(&required, &base).classify(),
            Some(ChangeClass::Widening)
        );
        assert_eq!(diff(&base, &base).classify(), None);
    }

    #[test]
    fn json_schema_converts_singer_shapes() {
        let js = json!({
            "type": "object",
            "properties": {
                "id": {"type": "integer"},
                "name": {"type": ["null", "string"]},
                "updated_at": {"type": ["null", "string"], "format": "date-time"},
                "price": {"anyOf": [{"type": "integer"}, {"type": "number"}, {"type": "null"}]},
                "tags": {"type": "array", "items": {"type": "string"}},
                "anything": {}
            }
        });
        let s = Schema::from_json_schema(&js, &["id".into()]).unwrap();
        assert_eq!(s.column("id"), Some(&Column::new("id", Integer, false)));
        assert_eq!(s.column("name"), Some(&Column::new("name", String, true)));
        assert_eq!(s.column("updated_at").unwrap().ty, Timestamp);
        assert_eq!(s.column("price"), Some(&Column::new("price", Number, true)));
        assert_eq!(s.column("tags").unwrap().ty, Json);
        assert_eq!(
            s.column("anything"),
            Some(&Column::new("anything", Json, true))
        );
        assert_eq!(s.key(), ["id".to_owned()]);
        assert!(Schema::from_json_schema(&json!({"type": "object"}), &[]).is_err());
        assert!(Schema::from_json_schema(&js, &["nope".into()]).is_err());
    }
}
