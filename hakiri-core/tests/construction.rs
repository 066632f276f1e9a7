//! Input is validated when its type is built — ids, names, cursor values, limits, reasons,
//! configs, retry policies, schemas, pipeline specs — directly or through serde: a bad one is
//! `InvalidArgument` before any catalog sees it, so no backend needs to check it again.

use std::time::Duration;

use hakiri_core::{
    Column, ColumnType, ConnectorConfig, CronSchedule, CursorValue, Error, HolderId, Limit,
    OperatorName, PipelineId, PipelineSpec, ProjectId, Reason, RetryPolicy, RunId, Schedule,
    Schema, StreamName,
};
use serde_json::json;

fn assert_invalid<T: std::fmt::Debug>(result: Result<T, Error>, what: &str) {
    match result {
        Err(Error::InvalidArgument(_)) => {}
        other => panic!("{what}: expected InvalidArgument, got {other:?}"),
    }
}

/// Ids and names are validated when built: bad ones are `InvalidArgument` before any catalog
/// sees them.
#[test]
fn validation_ids_are_checked_at_construction() {
    let long_slug = "a".repeat(129);
    for bad in ["", "bad id", "-lead", ".hidden", "slash/y", "ü", &long_slug] {
        assert_invalid(PipelineId::new(bad), &format!("pipeline id {bad:?}"));
        assert_invalid(ProjectId::new(bad), &format!("project id {bad:?}"));
    }
    assert!(PipelineId::new("orders-2024_v1.2").is_ok());
    let long_name = "n".repeat(256);
    for bad in ["", " users", "users ", "a\nb", "tab\there", &long_name] {
        assert_invalid(StreamName::new(bad), &format!("stream {bad:?}"));
        assert_invalid(HolderId::new(bad), &format!("holder {bad:?}"));
        assert_invalid(OperatorName::new(bad), &format!("operator {bad:?}"));
    }
    assert!(StreamName::new("public.Käufe 2024").is_ok());
    assert_invalid("not-a-uuid".parse::<RunId>(), "run id");
    assert!(serde_json::from_value::<PipelineId>(json!("bad id")).is_err());
    assert!(serde_json::from_value::<StreamName>(json!(" padded")).is_err());
}

/// Cursor values, page sizes and reasons are validated when built.
#[test]
fn validation_values_are_checked_at_construction() {
    const LIMIT: usize = 64 * 1024;
    // A JSON string of n characters serialises to n + 2 bytes.
    assert!(CursorValue::new(json!("x".repeat(LIMIT - 2))).is_ok());
    assert_invalid(CursorValue::new(json!("x".repeat(LIMIT))), "64 KiB cursor");
    assert_invalid(
        CursorValue::new(json!({ "token": "y".repeat(LIMIT) })),
        "64 KiB object cursor",
    );
    assert!(serde_json::from_value::<CursorValue>(json!("z".repeat(LIMIT + 1))).is_err());

    assert_invalid(Limit::new(0), "limit 0");
    assert_invalid(Limit::new(1001), "limit 1001");
    assert_eq!(Limit::new(1000).unwrap(), Limit::MAX);
    assert!(serde_json::from_value::<Limit>(json!(0)).is_err());

    assert_invalid(Reason::new(""), "empty reason");
    assert_invalid(Reason::new("   "), "blank reason");
    assert_invalid(Reason::new("r".repeat(4097)), "long reason");
    assert!(Reason::new("replaying last week").is_ok());

    assert_invalid(ConnectorConfig::new(json!([1, 2])), "array config");
    assert_invalid(ConnectorConfig::new(json!("path")), "string config");
    assert_invalid(
        RetryPolicy::new(0, Duration::ZERO, Duration::ZERO, 2.0),
        "zero attempts",
    );
    assert_invalid(
        RetryPolicy::new(3, Duration::from_secs(9), Duration::from_secs(1), 2.0),
        "initial backoff above max",
    );
}

/// Schemas are validated when built: duplicate columns, unknown or repeated key columns and bad
/// column names are refused.
#[test]
fn validation_schemas_are_checked_at_construction() {
    let col = |name: &str| Column::new(name, ColumnType::Integer, false);
    assert_invalid(
        Schema::new(
            vec![col("a"), Column::new("a", ColumnType::String, true)],
            vec![],
        ),
        "duplicate column",
    );
    assert_invalid(
        Schema::new(vec![col("a")], vec!["b".to_owned()]),
        "unknown key column",
    );
    assert_invalid(
        Schema::new(vec![col("a")], vec!["a".to_owned(), "a".to_owned()]),
        "repeated key column",
    );
    assert_invalid(Schema::new(vec![col("")], vec![]), "empty column name");
    assert_invalid(Schema::new(vec![col("a\nb")], vec![]), "control character");
    assert!(Schema::new(vec![col("a"), col("b")], vec!["a".to_owned()]).is_ok());
    let duplicate = json!({"columns": [
        {"name": "a", "type": "integer", "nullable": false},
        {"name": "a", "type": "string", "nullable": true}
    ]});
    assert!(serde_json::from_value::<Schema>(duplicate).is_err());
    assert_invalid(
        Schema::from_json_schema(&json!({"type": "object"}), &[]),
        "JSON Schema without properties",
    );
}

/// Pipeline specs are validated when parsed: unknown fields, bad ids and bad cron expressions are
/// refused.
#[test]
fn validation_specs_are_checked_when_parsed() {
    let good = json!({"id": "orders", "connector": "test", "cursor_kind": "monotonic"});
    assert!(serde_json::from_value::<PipelineSpec>(good.clone()).is_ok());
    let with = |key: &str, v: serde_json::Value| {
        let mut doc = good.clone();
        doc[key] = v;
        serde_json::from_value::<PipelineSpec>(doc)
    };
    assert!(with("shedule", json!("manual")).is_err(), "unknown field");
    assert!(with("id", json!("bad id")).is_err(), "bad id");
    assert!(
        with("cursor_kind", json!("sorted")).is_err(),
        "bad cursor kind"
    );
    assert!(with("config", json!([1])).is_err(), "config not an object");
    assert!(
        with("schedule", json!({"cron": "61 * * * *"})).is_err(),
        "bad cron"
    );
    assert!(
        with("schedule", json!({"cron": "every tuesday"})).is_err(),
        "bad cron"
    );
    assert!(
        with("schedule", json!({"every": "soon"})).is_err(),
        "bad interval"
    );
    assert!(
        with("retry", json!({"max_attempts": 0})).is_err(),
        "bad retry"
    );
    assert!(with("schedule", json!({"cron": "*/5 * * * *"})).is_ok());
    assert_invalid(CronSchedule::parse("61 * * * *"), "cron minute 61");
    assert_invalid(
        Schedule::Interval(Duration::from_millis(10)).validate(),
        "10ms interval",
    );
}
