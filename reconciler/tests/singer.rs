//! The `singer` connector, Hakiri as the loader, end to end through the `Reconciler` on the
//! memory backend, with the scriptable fake tap (`hakiri-fake-tap`) playing the tap: what real
//! taps do rarely (retypes, held schemas, crashes) made to happen on purpose.

mod common;

use std::path::Path;
use std::time::Duration;

use common::singer::*;
use common::*;
use hakiri_core::{
    Actor, Catalog, CursorKind, CursorReset, DecisionQuery, PipelineId, Reason, ResetPermissions,
    ResetTarget, RunStatus,
};
use serde_json::{json, Value};

const HOUR: Duration = Duration::from_secs(3600);

/// A pipeline `taps` running the fake tap, Hakiri as the loader writing into `out/`.
struct Tap {
    fake: FakeTap,
}

impl std::ops::Deref for Tap {
    type Target = FakeTap;
    fn deref(&self) -> &FakeTap {
        &self.fake
    }
}

impl Tap {
    async fn new(catalog: &dyn Catalog, streams: &[&str], extra: Value) -> Self {
        let fake = FakeTap::new();
        let mut config = json!({
            "command": fake.command(streams),
            "output": fake.path("out"),
            "config": {"start_date": "2026-01-01"},
        });
        if let (Some(base), Some(extra)) = (config.as_object_mut(), extra.as_object()) {
            base.extend(extra.clone());
        }
        pipeline(catalog, "taps", "singer", CursorKind::Opaque, config).await;
        Self { fake }
    }

    fn records(&self, stream: &str) -> Vec<Value> {
        output_records(&self.path("out").join(stream))
    }
}

/// Records land in per-stream files, each bookmark becomes its stream's cursor only after the
/// records before it are durable, and the next run's `--state` is rebuilt from the cursors: a
/// reset of one stream leaves that stream out, so the tap re-reads it alone.
#[tokio::test]
async fn bookmarks_become_cursors_and_come_back_as_the_next_state() {
    let (catalog, clock) = catalog();
    let tap = Tap::new(&*catalog, &["orders", "customers"], json!({})).await;
    tap.script(&[
        json!({"arg_file": {"arg": "--state", "to": tap.path("state-1.json")}}),
        json!({"arg_file": {"arg": "--config", "to": tap.path("config-1.json")}}),
        schema_message("orders", "integer"),
        record("orders", json!(1)),
        record("orders", json!(2)),
        state(json!({"orders": {"replication_key_value": 2}})),
        schema_message("customers", "integer"),
        record("customers", json!(7)),
        json!({"json": {"type": "STATE", "value": {"currently_syncing": "customers",
               "bookmarks": {"orders": {"replication_key_value": 2}, "customers": {"replication_key_value": 7}}}}}),
    ]);
    let reconciler = reconciler(catalog.clone());
    let first = only(reconcile(&reconciler).await);
    assert_eq!(first.status, Some(RunStatus::Succeeded), "{first:?}");
    assert_eq!(tap.records("orders").len(), 2);
    assert_eq!(tap.records("customers"), [json!({"id": 7, "note": "n"})]);
    assert_eq!(
        cursor(&*catalog, "taps", "orders").await,
        Some(json!({"replication_key_value": 2}))
    );
    assert_eq!(
        cursor(&*catalog, "taps", "customers").await,
        Some(json!({"replication_key_value": 7}))
    );
    assert_eq!(
        cursor(&*catalog, "taps", "_singer_state").await,
        Some(json!({"currently_syncing": "customers"}))
    );
    let stats = run(&*catalog, &first).await.stats;
    assert_eq!(stats[&stream("orders")].records, 2);
    // No state the first time; the tap's files were private to the run and are gone.
    assert_eq!(
        read_json(&tap.path("state-1.json")),
        json!({"contents": null})
    );
    let config = read_json(&tap.path("config-1.json"));
    assert_eq!(config["mode"], 0o600);
    assert_eq!(config["contents"], json!({"start_date": "2026-01-01"}));
    assert!(!Path::new(config["path"].as_str().unwrap()).exists());

    // An operator resets the customers stream: the next run's state leaves it out.
    let pipeline = PipelineId::new("taps").unwrap();
    let lease = catalog
        .acquire(&pipeline, &hakiri_core::HolderId::new("op").unwrap(), HOUR)
        .await
        .unwrap();
    let reset = CursorReset {
        target: ResetTarget::Initial,
        expected_version: None,
        by: Actor::System,
        reason: Reason::new("re-read customers").unwrap(),
        allow: ResetPermissions::default(),
    };
    catalog
        .reset_cursor(&lease, &stream("customers"), reset)
        .await
        .unwrap();
    catalog.release(&lease).await.unwrap();
    tap.script(&[json!({"arg_file": {"arg": "--state", "to": tap.path("state-2.json")}})]);
    clock.advance(HOUR);
    let second = only(reconcile(&reconciler).await);
    assert_eq!(second.status, Some(RunStatus::Succeeded), "{second:?}");
    assert_eq!(
        read_json(&tap.path("state-2.json"))["contents"],
        json!({"currently_syncing": "customers",
               "bookmarks": {"orders": {"replication_key_value": 2}}})
    );
}

/// A held schema change stops the tap: nothing it prints afterwards is written or
/// checkpointed — not even the final state its SIGTERM handler prints, which covers records
/// Hakiri never wrote — while the state before the change stands.
#[tokio::test]
async fn a_held_schema_stops_the_tap_and_nothing_after_it_counts() {
    let (catalog, _clock) = catalog();
    // Every state checkpointed at once, so the test sees when the run is under way.
    let tap = Tap::new(&*catalog, &["orders"], json!({"checkpoint_interval_ms": 1})).await;
    tap.script(&[
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
    let reconciler = reconciler(catalog.clone());
    let end = only(reconcile(&reconciler).await);
    assert_eq!(end.status, Some(RunStatus::Cancelled), "{end:?}");
    let message = end.message.unwrap_or_default();
    assert!(message.contains("held (decision"), "{message}");
    assert_eq!(tap.records("orders"), [json!({"id": 1, "note": "n"})]);
    assert_eq!(
        cursor(&*catalog, "taps", "orders").await,
        Some(json!({"v": 1}))
    );
    let held = catalog
        .list_decisions(&DecisionQuery::default())
        .await
        .unwrap();
    assert_eq!(held.items.len(), 1);
    assert!(catalog
        .get_pipeline(&PipelineId::new("taps").unwrap())
        .await
        .unwrap()
        .paused
        .is_some());
}

/// A record whose value its column cannot hold (a pinned catalog hiding a retype) fails the run
/// permanently, naming the field; the state before it stands.
#[tokio::test]
async fn a_record_that_does_not_fit_its_schema_fails_the_run() {
    let (catalog, _clock) = catalog();
    let tap = Tap::new(&*catalog, &["orders"], json!({})).await;
    tap.script(&[
        schema_message("orders", "integer"),
        record("orders", json!(1)),
        state(json!({"orders": {"v": 1}})),
        record("orders", json!("C-2")),
        state(json!({"orders": {"v": 2}})),
    ]);
    let end = only(reconcile(&reconciler(catalog.clone())).await);
    assert_eq!(end.status, Some(RunStatus::Failed), "{end:?}");
    let message = end.message.unwrap_or_default();
    assert!(
        message.contains("\"id\" is a string (\"C-2\")"),
        "{message}"
    );
    assert_eq!(tap.records("orders").len(), 1);
    assert_eq!(
        cursor(&*catalog, "taps", "orders").await,
        Some(json!({"v": 1}))
    );
}

/// What a tap must not print fails the run permanently, saying what and where.
#[tokio::test]
async fn bad_tap_output_fails_the_run_naming_the_line() {
    for (steps, expected) in [
        (
            vec![record("ghost", json!(1))],
            "RECORD of stream ghost (line 1) before any SCHEMA",
        ),
        (
            vec![json!({"print": "not json"})],
            "output line 1: not a JSON message",
        ),
        (
            vec![json!({"json": {"type": "BATCH", "stream": "orders"}})],
            "batch_config",
        ),
        (
            vec![
                state(json!({"orders": {"partitions": "x".repeat(70_000)}})),
                json!({"exit": 0}),
            ],
            "above the 64 KiB a cursor holds",
        ),
    ] {
        let (catalog, _clock) = catalog();
        let tap = Tap::new(&*catalog, &["orders"], json!({})).await;
        tap.script(&steps);
        let end = only(reconcile(&reconciler(catalog.clone())).await);
        assert_eq!(end.status, Some(RunStatus::Failed), "{end:?}");
        let message = end.message.unwrap_or_default();
        assert!(message.contains(expected), "{expected}: {message}");
    }
}

/// A tap that crashes fails the run (to be retried) with the end of its stderr, and the
/// checkpoint it made before crashing stands.
#[tokio::test]
async fn a_crashing_tap_fails_the_run_with_its_stderr_and_keeps_its_last_state() {
    let (catalog, _clock) = catalog();
    let tap = Tap::new(&*catalog, &["orders"], json!({})).await;
    tap.script(&[
        schema_message("orders", "integer"),
        record("orders", json!(1)),
        state(json!({"orders": {"v": 1}})),
        json!({"stderr": "CRITICAL the source went away"}),
        json!({"exit": 3}),
    ]);
    let end = only(reconcile(&reconciler(catalog.clone())).await);
    assert_eq!(end.status, Some(RunStatus::Failed), "{end:?}");
    let message = end.message.unwrap_or_default();
    assert!(
        message.contains("CRITICAL the source went away"),
        "{message}"
    );
    assert_eq!(
        cursor(&*catalog, "taps", "orders").await,
        Some(json!({"v": 1}))
    );
    assert_eq!(tap.records("orders").len(), 1);
}

/// Secrets come from the reconciler's environment by reference and are never stored; a
/// reference to a variable that is not set fails the run, naming it.
#[tokio::test]
async fn settings_can_come_from_the_environment() {
    // Only this test reads this variable.
    std::env::set_var("HAKIRI_TEST_SINGER_SECRET", "s3cret");
    let (catalog, _clock) = catalog();
    let tap = Tap::new(
        &*catalog,
        &["orders"],
        json!({"config_env": {"password": "HAKIRI_TEST_SINGER_SECRET"}}),
    )
    .await;
    tap.script(&[json!({"arg_file": {"arg": "--config", "to": tap.path("config.json")}})]);
    let end = only(reconcile(&reconciler(catalog.clone())).await);
    assert_eq!(end.status, Some(RunStatus::Succeeded), "{end:?}");
    assert_eq!(
        read_json(&tap.path("config.json"))["contents"],
        json!({"start_date": "2026-01-01", "password": "s3cret"})
    );
    let stored = catalog
        .get_pipeline(&PipelineId::new("taps").unwrap())
        .await
        .unwrap();
    assert!(!serde_json::to_string(&stored).unwrap().contains("s3cret"));

    let (other, _clock) = common::catalog();
    let _tap = Tap::new(
        &*other,
        &["orders"],
        json!({"config_env": {"password": "HAKIRI_TEST_SINGER_UNSET"}}),
    )
    .await;
    let end = only(reconcile(&reconciler(other.clone())).await);
    assert_eq!(end.status, Some(RunStatus::Failed), "{end:?}");
    assert!(end
        .message
        .unwrap_or_default()
        .contains("$HAKIRI_TEST_SINGER_UNSET, which is not set"));
}

/// A singer pipeline's cursors are the tap's bookmarks: a monotonic pipeline is refused.
#[tokio::test]
async fn a_monotonic_singer_pipeline_is_refused() {
    let (catalog, _clock) = catalog();
    pipeline(
        &*catalog,
        "taps",
        "singer",
        CursorKind::Monotonic,
        json!({"command": "tap-x", "output": "out"}),
    )
    .await;
    let end = only(reconcile(&reconciler(catalog.clone())).await);
    assert_eq!(end.status, Some(RunStatus::Failed));
    assert!(end
        .message
        .unwrap_or_default()
        .contains("cursor_kind = \"opaque\""));
}

/// A shutdown asks the tap to stop before it cancels the run: the tap gets SIGTERM, what it
/// prints on the way out — records and the final state covering them — is written and
/// checkpointed, and the run ends cancelled, to resume from there.
#[tokio::test]
async fn a_shutdown_lets_the_tap_record_its_final_state() {
    let (catalog, _clock) = catalog();
    // Every state checkpointed at once, so the test sees when the run is under way.
    let tap = Tap::new(&*catalog, &["orders"], json!({"checkpoint_interval_ms": 1})).await;
    tap.script(&stopped_by_a_shutdown());
    let reconciler = reconciler(catalog.clone());
    let runs = shut_down_after_a_checkpoint(&*catalog, &reconciler, "taps", "orders").await;
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].status, RunStatus::Cancelled, "{:?}", runs[0]);
    assert_eq!(tap.records("orders").len(), 2);
    assert_eq!(
        cursor(&*catalog, "taps", "orders").await,
        Some(json!({"v": 2}))
    );
}
