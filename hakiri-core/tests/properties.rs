//! Property tests for the pure domain rules.

use std::cmp::Ordering;

use hakiri_core::cursor::{plan_advance, AdvancePlan, CursorChange, CursorWrite, Position};
use hakiri_core::schema::diff;
use hakiri_core::{
    ChangeClass, Column, ColumnType, CursorAdvance, CursorKind, CursorValue, Error, PipelineId,
    Schema, StreamName,
};
use proptest::prelude::*;
use serde_json::{json, Value};

const SAFE: i64 = (1 << 53) - 1;

fn position_json() -> impl Strategy<Value = Value> {
    prop_oneof![
        (-SAFE..=SAFE).prop_map(|i| json!(i)),
        (-1e12f64..1e12).prop_map(|f| json!(f)),
        // Integral floats must compare equal to the matching integers.
        (-1000i64..1000).prop_map(|i| json!(i as f64)),
        "[a-c]{0,4}".prop_map(|s| json!(s)),
    ]
}

fn column_type() -> impl Strategy<Value = ColumnType> {
    use ColumnType::*;
    prop::sample::select(vec![
        Boolean, Integer, Decimal, Number, String, Date, Time, Timestamp, Binary, Json,
    ])
}

/// Schemas over a small name space so that random pairs share columns.
fn schema() -> impl Strategy<Value = Schema> {
    prop::collection::btree_map("[a-f]", (column_type(), any::<bool>()), 0..6)
        .prop_flat_map(|columns| {
            let names: Vec<String> = columns.keys().cloned().collect();
            let key = prop::sample::subsequence(names.clone(), 0..=names.len().min(2));
            (Just(columns), key)
        })
        .prop_map(|(columns, key)| {
            let columns = columns
                .into_iter()
                .map(|(name, (ty, nullable))| Column::new(name, ty, nullable))
                .collect();
            Schema::new(columns, key).expect("generated schemas are valid")
        })
}

fn arbitrary_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|i| json!(i)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        ".{0,8}".prop_map(Value::String),
        prop::sample::select(vec![
            "null",
            "string",
            "integer",
            "number",
            "boolean",
            "object",
            "array",
            "date-time"
        ])
        .prop_map(|s| json!(s)),
    ];
    leaf.prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                prop::sample::select(vec![
                    "type",
                    "properties",
                    "format",
                    "anyOf",
                    "oneOf",
                    "items",
                    "x"
                ])
                .prop_map(str::to_owned),
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// An independent statement of the classification rules, change by change.
fn reference_class(old: &Schema, new: &Schema) -> Option<ChangeClass> {
    use ColumnType::*;
    let widening = |from: ColumnType, to: ColumnType| {
        matches!(
            (from, to),
            (
                Boolean | Integer | Decimal | Number | String | Date | Time | Timestamp,
                Json
            ) | (Binary, Json)
                | (
                    Boolean | Integer | Decimal | Number | Date | Time | Timestamp,
                    String
                )
                | (Integer, Decimal | Number)
                | (Date, Timestamp)
        )
    };
    let mut classes = Vec::new();
    for n in new.columns() {
        match old.column(&n.name) {
            None if n.nullable => classes.push(ChangeClass::Additive),
            None => classes.push(ChangeClass::Breaking),
            Some(o) => {
                if o.ty != n.ty {
                    classes.push(if widening(o.ty, n.ty) {
                        ChangeClass::Widening
                    } else {
                        ChangeClass::Breaking
                    });
                }
                if o.nullable && !n.nullable {
                    classes.push(ChangeClass::Breaking);
                }
                if !o.nullable && n.nullable {
                    classes.push(ChangeClass::Widening);
                }
            }
        }
    }
    for o in old.columns() {
        if new.column(&o.name).is_none() {
            classes.push(ChangeClass::Breaking);
        }
    }
    if old.key() != new.key() {
        classes.push(ChangeClass::Breaking);
    }
    classes.into_iter().max()
}

proptest! {
    #[test]
    fn cursor_ordering_is_a_total_order_consistent_with_equality(
        a in position_json(), b in position_json(), c in position_json()
    ) {
        let (pa, pb, pc) = (Position::from_json(&a).unwrap(), Position::from_json(&b).unwrap(), Position::from_json(&c).unwrap());
        match (pa.compare(&pb), pb.compare(&pa)) {
            (Ok(ab), Ok(ba)) => {
                prop_assert_eq!(ab, ba.reverse(), "antisymmetry");
                // Equal positions have equal normalised JSON, and vice versa.
                prop_assert_eq!(ab == Ordering::Equal, pa.to_json() == pb.to_json());
                if let (Ok(bc), Ok(ac)) = (pb.compare(&pc), pa.compare(&pc)) {
                    if ab != Ordering::Greater && bc != Ordering::Greater {
                        prop_assert_ne!(ac, Ordering::Greater, "transitivity");
                    }
                }
            }
            (Err(_), Err(_)) => prop_assert!(a.is_string() != b.is_string()),
            _ => prop_assert!(false, "comparability must be symmetric"),
        }
        prop_assert_eq!(pa.compare(&pa).unwrap(), Ordering::Equal);
    }

    #[test]
    fn monotonic_advance_agrees_with_the_ordering(a in position_json(), b in position_json()) {
        let (p, s) = (PipelineId::new("p").unwrap(), StreamName::new("s").unwrap());
        let stored = CursorValue::new(Position::from_json(&a).unwrap().to_json()).unwrap();
        let advance = CursorAdvance::to(CursorValue::new(b.clone()).unwrap());
        let plan = plan_advance(CursorKind::Monotonic, &p, &s, Some((&stored, 1)), &advance, CursorChange::Checkpoint);
        match Position::from_json(&b).unwrap().compare(&Position::from_json(&a).unwrap()) {
            Ok(Ordering::Less) => prop_assert!(matches!(plan, Err(Error::CursorRegression { .. })), "regression expected"),
            Ok(Ordering::Equal) => prop_assert_eq!(plan.unwrap(), AdvancePlan::Unchanged),
            Ok(Ordering::Greater) => prop_assert!(matches!(plan, Ok(AdvancePlan::Write(CursorWrite { version: 2, .. }))), "write expected"),
            Err(_) => prop_assert!(matches!(plan, Err(Error::InvalidArgument(_))), "invalid expected"),
        }
    }

    #[test]
    fn diff_of_a_schema_with_itself_is_empty(s in schema()) {
        let d = diff(&s, &s);
        prop_assert!(d.is_empty());
        prop_assert_eq!(d.classify(), None);
    }

    #[test]
    fn fingerprints_ignore_column_order(s in schema(), seed in any::<u64>()) {
        let mut columns = s.columns().to_vec();
        // A seeded rotation and reversal: a different order, same content.
        if !columns.is_empty() {
            let k = (seed as usize) % columns.len();
            columns.rotate_left(k);
            if seed % 2 == 0 { columns.reverse(); }
        }
        let shuffled = Schema::new(columns, s.key().to_vec()).unwrap();
        prop_assert_eq!(s.fingerprint(), shuffled.fingerprint());
    }

    #[test]
    fn classification_matches_the_reference(old in schema(), new in schema()) {
        prop_assert_eq!(diff(&old, &new).classify(), reference_class(&old, &new));
        // A non-empty diff always has a class; equal fingerprints mean an empty diff.
        prop_assert_eq!(diff(&old, &new).is_empty(), old.fingerprint() == new.fingerprint());
    }

    #[test]
    fn json_schema_conversion_never_panics(doc in arbitrary_json(), keys in prop::collection::vec("[a-z]{1,3}", 0..3)) {
        // As a whole document, and as the schema of one property.
        let nested = json!({"type": "object", "properties": {"a": doc.clone(), "b": {"anyOf": [doc.clone()]}}});
        for candidate in [&doc, &nested] {
            if let Ok(schema) = Schema::from_json_schema(candidate, &keys) {
                // Whatever converts is a valid schema that survives a serde round trip.
                let back: Schema = serde_json::from_value(serde_json::to_value(&schema).unwrap()).unwrap();
                prop_assert_eq!(back, schema);
            }
        }
        let converted = Schema::from_json_schema(&nested, &[]);
        prop_assert!(converted.is_ok(), "an object schema with properties always converts: {converted:?}");
    }
}
