//! The `singer` connector's `tap | target` mode end to end through the `Reconciler` on the
//! memory backend: the fake tap (`hakiri-fake-tap`) piped through Hakiri into the fake target
//! (`hakiri-fake-target`), which records every line it is given and confirms states as a real
//! target does — or makes them up, or crashes.

mod common;

use std::time::Duration;

use common::singer::*;
use common::*;
use hakiri_core::{CursorKind, PipelineId, RunStatus, StreamName};
use serde_json::{json, Value};

/// A pipeline `taps` piping the fake tap into the fake target with `target` settings (its
/// `out` is set here).
struct Pipe {
    fake: FakeTap,
}

impl std::ops::Deref for Pipe {
    type Target = FakeTap;
    fn deref(&self) -> &FakeTap {
        &self.fake
    }
}

impl Pipe {
    async fn new(catalog: &dyn hakiri_core::Catalog, target: Value, extra: Value) -> Self {
        let fake = FakeTap::new();
        let mut settings = json!({"out": fake.path("forwarded.jsonl")});
        settings
            .as_object_mut()
            .unwrap()
            .extend(target.as_object().unwrap().clone());
        let mut config = json!({
            "command": fake.command(&["orders"]),
            "target": {"command": env!("CARGO_BIN_EXE_hakiri-fake-target"), "config": settings},
        });
        config
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        pipeline(catalog, "taps", "singer", CursorKind::Opaque, config).await;
        Self { fake }
    }

    /// The messages the target was given, in order.
    fn forwarded(&self) -> Vec<Value> {
        let path = self.path("forwarded.jsonl");
        std::fs::read_to_string(&path)
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str(line).expect("the target got JSON"))
            .collect()
    }

    /// The `type` of each forwarded message, with the record's `id` or the state's bookmark.
    fn forwarded_summary(&self) -> Vec<String> {
        self.forwarded()
            .iter()
            .map(|m| match m["type"].as_str().unwrap_or_default() {
                "SCHEMA" => format!("SCHEMA {}", m["schema"]["properties"]["id"]["type"]),
                "RECORD" => format!("RECORD {}", m["record"]["id"]),
                "STATE" => format!("STATE {}", m["value"]["bookmarks"]["orders"]),
                other => other.to_owned(),
            })
            .collect()
    }
}

fn step(message: Value) -> Value {
    json!({ "json": message })
}

/// Every line reaches the target in order; the cursor is the last state the target printed
/// that Hakiri had forwarded. The states the target makes up (`{}`, one the tap never sent)
/// are not checkpointed.
#[tokio::test]
async fn only_states_the_target_confirms_and_hakiri_forwarded_are_checkpointed() {
    let (catalog, _clock) = catalog();
    let made_up = json!({"bookmarks": {"orders": {"v": 42}}});
    let pipe = Pipe::new(
        &*catalog,
        json!({"confirm": "each", "print_last": [made_up, {}]}),
        json!({}),
    )
    .await;
    pipe.script(&[
        schema_message("orders", "integer"),
        record("orders", json!(1)),
        state(json!({"orders": {"v": 1}})),
        record("orders", json!(2)),
        step(json!({"type": "ACTIVATE_VERSION", "stream": "orders", "version": 1})),
        state(json!({"orders": {"v": 2}})),
    ]);
    let end = only(reconcile(&reconciler(catalog.clone())).await);
    assert_eq!(end.status, Some(RunStatus::Succeeded), "{end:?}");
    assert_eq!(
        pipe.forwarded_summary(),
        [
            "SCHEMA [\"integer\"]",
            "RECORD 1",
            "STATE {\"v\":1}",
            "RECORD 2",
            "ACTIVATE_VERSION",
            "STATE {\"v\":2}"
        ]
    );
    assert_eq!(
        cursor(&*catalog, "taps", "orders").await,
        Some(json!({"v": 2}))
    );
    let stats = run(&*catalog, &end).await.stats;
    assert_eq!(stats[&StreamName::new("orders").unwrap()].records, 2);
}

/// A target that prints no state confirms nothing: the run succeeds, the records reached the
/// target, and no cursor moves (the next run reads them again: at least once).
#[tokio::test]
async fn a_target_that_confirms_nothing_moves_no_cursor() {
    let (catalog, _clock) = catalog();
    let pipe = Pipe::new(&*catalog, json!({"confirm": "never"}), json!({})).await;
    pipe.script(&[
        schema_message("orders", "integer"),
        record("orders", json!(1)),
        state(json!({"orders": {"v": 1}})),
    ]);
    let end = only(reconcile(&reconciler(catalog.clone())).await);
    assert_eq!(end.status, Some(RunStatus::Succeeded), "{end:?}");
    assert_eq!(pipe.forwarded().len(), 3);
    assert_eq!(cursor(&*catalog, "taps", "orders").await, None);
}

/// A held schema change stops the tap before the SCHEMA is forwarded: the target gets nothing
/// from that point on — not the retyped records, not the final state the tap prints on
/// SIGTERM — loads what it had, confirms the state before the change, and that is checkpointed.
#[tokio::test]
async fn a_held_schema_reaches_the_target_with_nothing_after_it() {
    let (catalog, _clock) = catalog();
    let pipe = Pipe::new(&*catalog, json!({"confirm": "end"}), json!({})).await;
    pipe.script(&[
        json!({"on_sigterm": {"json": [{"type": "STATE", "value": {"bookmarks": {"orders": {"v": 99}}}}], "exit": 0}}),
        schema_message("orders", "integer"),
        record("orders", json!(1)),
        state(json!({"orders": {"v": 1}})),
        // integer → boolean: breaking, held by the default policy.
        schema_message("orders", "boolean"),
        record("orders", json!(true)),
        state(json!({"orders": {"v": 2}})),
        json!({"sleep_ms": 60000}),
    ]);
    let end = only(reconcile(&reconciler(catalog.clone())).await);
    assert_eq!(end.status, Some(RunStatus::Cancelled), "{end:?}");
    let message = end.message.unwrap_or_default();
    assert!(message.contains("held (decision"), "{message}");
    assert_eq!(
        pipe.forwarded_summary(),
        ["SCHEMA [\"integer\"]", "RECORD 1", "STATE {\"v\":1}"]
    );
    assert_eq!(
        cursor(&*catalog, "taps", "orders").await,
        Some(json!({"v": 1}))
    );
    assert!(catalog
        .get_pipeline(&PipelineId::new("taps").unwrap())
        .await
        .unwrap()
        .paused
        .is_some());
}

/// A record that does not fit its schema is not forwarded, nor anything after it; the run
/// fails naming the field, and the state the target confirmed before it stands.
#[tokio::test]
async fn a_misfit_record_is_not_forwarded() {
    let (catalog, _clock) = catalog();
    let pipe = Pipe::new(&*catalog, json!({"confirm": "each"}), json!({})).await;
    pipe.script(&[
        schema_message("orders", "integer"),
        record("orders", json!(1)),
        state(json!({"orders": {"v": 1}})),
        record("orders", json!("C-2")),
        state(json!({"orders": {"v": 2}})),
    ]);
    let end = only(reconcile(&reconciler(catalog.clone())).await);
    assert_eq!(end.status, Some(RunStatus::Failed), "{end:?}");
    let message = end.message.unwrap_or_default();
    assert!(message.contains("\"id\" is a string"), "{message}");
    assert_eq!(
        pipe.forwarded_summary(),
        ["SCHEMA [\"integer\"]", "RECORD 1", "STATE {\"v\":1}"]
    );
    assert_eq!(
        cursor(&*catalog, "taps", "orders").await,
        Some(json!({"v": 1}))
    );
}

/// A target that crashes fails the run with the end of its stderr, and the tap — which would
/// otherwise sleep for ten minutes — is stopped with it. What the target confirmed before it
/// crashed stands.
#[tokio::test]
async fn a_crashing_target_fails_the_run_and_stops_the_tap() {
    let (catalog, _clock) = catalog();
    let pipe = Pipe::new(
        &*catalog,
        json!({"confirm": "each", "fail_after_lines": 4}),
        json!({"checkpoint_interval_ms": 1, "stop_grace_ms": 200}),
    )
    .await;
    pipe.script(&[
        schema_message("orders", "integer"),
        record("orders", json!(1)),
        state(json!({"orders": {"v": 1}})),
        record("orders", json!(2)),
        json!({"sleep_ms": 600_000}),
    ]);
    let started = std::time::Instant::now();
    let end = only(reconcile(&reconciler(catalog.clone())).await);
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "the tap was left running"
    );
    assert_eq!(end.status, Some(RunStatus::Failed), "{end:?}");
    let message = end.message.unwrap_or_default();
    assert!(
        message.contains("failing on purpose after 4 lines"),
        "{message}"
    );
    assert_eq!(
        cursor(&*catalog, "taps", "orders").await,
        Some(json!({"v": 1}))
    );
}

/// A shutdown stops the tap softly: what it prints on its way out reaches the target, the
/// target confirms the tap's final state, it is checkpointed, and the run ends cancelled.
#[tokio::test]
async fn a_shutdown_forwards_the_taps_last_words_and_checkpoints_what_the_target_confirms() {
    let (catalog, _clock) = catalog();
    let pipe = Pipe::new(
        &*catalog,
        json!({"confirm": "each"}),
        json!({"checkpoint_interval_ms": 1}),
    )
    .await;
    pipe.script(&stopped_by_a_shutdown());
    let reconciler = reconciler(catalog.clone());
    let runs = shut_down_after_a_checkpoint(&*catalog, &reconciler, "taps", "orders").await;
    assert_eq!(runs[0].status, RunStatus::Cancelled, "{:?}", runs[0]);
    assert_eq!(
        pipe.forwarded_summary(),
        [
            "SCHEMA [\"integer\"]",
            "RECORD 1",
            "STATE {\"v\":1}",
            "RECORD 2",
            "STATE {\"v\":2}"
        ]
    );
    assert_eq!(
        cursor(&*catalog, "taps", "orders").await,
        Some(json!({"v": 2}))
    );
}
