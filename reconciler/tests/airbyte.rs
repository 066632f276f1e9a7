//! The `airbyte` connector, Hakiri as the loader, end to end through the `Reconciler` on the
//! memory backend, with the fake tap's Airbyte mode (`hakiri-fake-tap --airbyte`) playing the
//! source: what real sources do rarely (GLOBAL states, TRACE errors, a wrong `recordCount`,
//! CONTROL messages) made to happen on purpose.

mod common;

use common::singer::{read_json, FakeTap};
use common::*;
use hakiri_core::{CursorKind, RunStatus, StreamStatus};
use serde_json::{json, Value};

/// A discovered catalog offering `streams`, each keyed by an integer `id`, incremental on a
/// source-defined `id` cursor.
fn discovered(streams: &[&str]) -> Value {
    let streams: Vec<Value> = streams
        .iter()
        .map(|name| {
            json!({"name": name, "json_schema": {"type": "object", "properties": {
                       "id": {"type": "integer"}, "note": {"type": ["null", "string"]}}},
                   "supported_sync_modes": ["full_refresh", "incremental"],
                   "source_defined_cursor": true, "default_cursor_field": ["id"],
                   "source_defined_primary_key": [["id"]]})
        })
        .collect();
    json!({ "streams": streams })
}

fn record(stream: &str, id: i64) -> Value {
    json!({"json": {"type": "RECORD", "record": {"stream": stream, "data": {"id": id, "note": "n"}, "emitted_at": 1}}})
}

/// A STREAM state of `stream`, as the CDK prints it: `recordCount` counts the stream's records
/// since its previous state.
fn stream_state(stream: &str, state: Value, count: f64) -> Value {
    let mut body = stream_body(stream, state);
    body["sourceStats"] = json!({ "recordCount": count });
    json!({"json": {"type": "STATE", "state": body}})
}

/// What the cursor of a STREAM state holds: the state without its statistics.
fn stream_body(stream: &str, state: Value) -> Value {
    json!({"type": "STREAM", "stream": {"stream_descriptor": {"name": stream}, "stream_state": state}})
}

fn trace_error(failure_type: &str, message: &str) -> Value {
    json!({"json": {"type": "TRACE", "trace": {"type": "ERROR", "emitted_at": 1,
           "error": {"message": message, "failure_type": failure_type}}}})
}

/// A pipeline `sources` running the fake source over `streams`, writing into `out/`.
struct Source {
    fake: FakeTap,
    pipeline: hakiri_core::Pipeline,
}

impl Source {
    async fn new(catalog: &dyn hakiri_core::Catalog, streams: &[&str]) -> Self {
        Self::with(catalog, streams, 3_600_000).await
    }

    /// [`Source::new`], checkpointing at most every `checkpoint_interval_ms`.
    async fn with(
        catalog: &dyn hakiri_core::Catalog,
        streams: &[&str],
        checkpoint_interval_ms: u64,
    ) -> Self {
        let fake = FakeTap::new();
        let command = json!([
            env!("CARGO_BIN_EXE_hakiri-fake-tap"),
            "--airbyte",
            "--calls",
            fake.path("calls"),
            "--script",
            fake.path("script.json"),
            "--catalog-json",
            discovered(streams).to_string()
        ]);
        let config = json!({"command": command, "output": fake.path("out"),
                            "config": {"api_key": "k"}, "checkpoint_interval_ms": checkpoint_interval_ms});
        let pipeline = pipeline(catalog, "sources", "airbyte", CursorKind::Opaque, config).await;
        Self { fake, pipeline }
    }

    /// The commands the source ran for, in order (`check`, `discover`, `read`).
    fn calls(&self) -> Vec<String> {
        let calls = std::fs::read_to_string(self.fake.path("calls")).unwrap_or_default();
        calls.lines().map(str::to_owned).collect()
    }

    /// Gives the source new settings (its `config`): a new spec of the pipeline.
    async fn set_settings(&mut self, catalog: &dyn hakiri_core::Catalog, settings: Value) {
        let mut spec = self.pipeline.spec.clone();
        let mut config = spec.config.as_map().clone();
        config.insert("config".into(), settings);
        spec.config = hakiri_core::ConnectorConfig::new(config.into()).unwrap();
        let expected = self.pipeline.generation;
        self.pipeline = catalog
            .put_pipeline(
                spec,
                hakiri_core::PutMode::Update { expected },
                &hakiri_core::Actor::System,
            )
            .await
            .expect("a new spec");
    }

    fn ids(&self, stream: &str) -> Vec<i64> {
        output_records(&self.fake.path("out").join(stream))
            .iter()
            .map(|r| int(r, "id"))
            .collect()
    }
}

/// Each stream's state is its cursor (without the statistics) once the records before it are
/// on disk, a GLOBAL state is one cursor kept whole, and the next run's `--state` is the array
/// of the cursors' values; a `stream_state: null` resets the stream, which then drops out of it.
#[tokio::test]
async fn stream_states_and_a_global_state_become_cursors_and_the_next_state() {
    let (catalog, clock) = catalog();
    let source = Source::new(&*catalog, &["orders", "customers"]).await;
    let global = json!({"type": "GLOBAL", "global": {"shared_state": {"lsn": 9},
                        "stream_states": [{"stream_descriptor": {"name": "orders"}, "stream_state": {"id": 2}},
                                          {"stream_descriptor": {"name": "customers"}, "stream_state": {"id": 7}}]}});
    source.fake.script(&[
        json!({"arg_file": {"arg": "--state", "to": source.fake.path("state-1.json")}}),
        record("orders", 1),
        record("orders", 2),
        stream_state("orders", json!({"id": 2}), 2.0),
        record("customers", 7),
        stream_state("customers", json!({"id": 7}), 1.0),
        json!({"json": {"type": "STATE", "state": global.clone()}}),
    ]);
    let reconciler = reconciler(catalog.clone());
    let first = only(reconcile(&reconciler).await);
    assert_eq!(first.status, Some(RunStatus::Succeeded), "{first:?}");
    assert_eq!(source.ids("orders"), [1, 2]);
    assert_eq!(source.ids("customers"), [7]);
    let orders = stream_body("orders", json!({"id": 2}));
    let customers = stream_body("customers", json!({"id": 7}));
    assert_eq!(
        cursor(&*catalog, "sources", "orders").await,
        Some(orders.clone())
    );
    assert_eq!(
        cursor(&*catalog, "sources", "customers").await,
        Some(customers.clone())
    );
    assert_eq!(
        cursor(&*catalog, "sources", "_airbyte_global").await,
        Some(global.clone())
    );
    assert_eq!(
        read_json(&source.fake.path("state-1.json")),
        json!({"contents": null})
    );

    // The next run is given every cursor back; its source resets customers.
    source.fake.script(&[
        json!({"arg_file": {"arg": "--state", "to": source.fake.path("state-2.json")}}),
        json!({"json": {"type": "STATE", "state": stream_body("customers", Value::Null)}}),
    ]);
    clock.advance(std::time::Duration::from_secs(3600));
    let second = only(reconcile(&reconciler).await);
    assert_eq!(second.status, Some(RunStatus::Succeeded), "{second:?}");
    assert_eq!(
        read_json(&source.fake.path("state-2.json"))["contents"],
        json!([global, customers, orders]),
        "the cursors' values, in stream name order"
    );
    assert_eq!(
        cursor(&*catalog, "sources", "customers").await,
        Some(Value::Null),
        "reset to the initial value"
    );

    source
        .fake
        .script(&[json!({"arg_file": {"arg": "--state", "to": source.fake.path("state-3.json")}})]);
    clock.advance(std::time::Duration::from_secs(3600));
    let third = only(reconcile(&reconciler).await);
    assert_eq!(third.status, Some(RunStatus::Succeeded), "{third:?}");
    assert_eq!(
        read_json(&source.fake.path("state-3.json"))["contents"],
        json!([global, orders]),
        "the reset stream is left out"
    );
}

fn trace(kind: &str, body: Value) -> Value {
    json!({"json": {"type": "TRACE", "trace": {"type": kind, "emitted_at": 1,
           kind.to_lowercase(): body}}})
}

fn stream_status(stream: &str, status: &str) -> Value {
    trace(
        "STREAM_STATUS",
        json!({"stream_descriptor": {"name": stream}, "status": status}),
    )
}

/// What the source says of each stream (`STREAM_STATUS`, a STREAM `ESTIMATE`) is kept in the
/// run's statistics beside what Hakiri counted, the last word of each kind winning; a SYNC
/// estimate, a status Hakiri does not know and traces of streams it does not read are only
/// logged.
#[tokio::test]
async fn stream_statuses_and_estimates_end_in_the_run_statistics() {
    let (catalog, _clock) = catalog();
    let source = Source::new(&*catalog, &["orders", "customers"]).await;
    source.fake.script(&[
        trace(
            "ESTIMATE",
            json!({"name": "", "type": "SYNC", "row_estimate": 99}),
        ),
        stream_status("orders", "STARTED"),
        trace(
            "ESTIMATE",
            json!({"name": "orders", "type": "STREAM", "row_estimate": 10, "byte_estimate": 900}),
        ),
        stream_status("orders", "RUNNING"),
        record("orders", 1),
        record("orders", 2),
        trace(
            "ESTIMATE",
            json!({"name": "orders", "type": "STREAM", "row_estimate": 3}),
        ),
        stream_status("orders", "COMPLETE"),
        stream_status("customers", "STARTED"),
        stream_status("customers", "RATE_LIMITED"),
        record("customers", 7),
        stream_status("invoices", "COMPLETE"),
        trace("ESTIMATE", json!({"name": "invoices", "row_estimate": 5})),
    ]);
    let end = only(reconcile(&reconciler(catalog.clone())).await);
    assert_eq!(end.status, Some(RunStatus::Succeeded), "{end:?}");
    let stats = run(&*catalog, &end).await.stats;
    let orders = stats.get(&stream("orders")).expect("orders' statistics");
    assert_eq!(
        (
            orders.records,
            orders.status,
            orders.estimated_records,
            orders.estimated_bytes
        ),
        (2, Some(StreamStatus::Complete), Some(3), Some(900)),
        "the newest status and estimate; a count left out keeps the one before"
    );
    let customers = stats.get(&stream("customers")).expect("customers'");
    assert_eq!(
        (
            customers.records,
            customers.status,
            customers.estimated_records
        ),
        (1, Some(StreamStatus::Started), None)
    );
    assert_eq!(stats.len(), 2, "{stats:?}");
}

/// A TRACE ERROR becomes the run's error once the source exits: a `config_error` is permanent,
/// any other failure transient; a state printed before it still counts.
#[tokio::test]
async fn a_trace_error_fails_the_run_permanently_only_for_a_config_error() {
    for (failure_type, retryable) in [
        ("config_error", false),
        ("transient_error", true),
        ("system_error", true),
    ] {
        let (catalog, _clock) = catalog();
        let source = Source::new(&*catalog, &["orders"]).await;
        source.fake.script(&[
            record("orders", 1),
            stream_state("orders", json!({"id": 1}), 1.0),
            trace_error(failure_type, "the API key was refused"),
            json!({"exit": 1}),
        ]);
        let end = only(reconcile(&reconciler(catalog.clone())).await);
        assert_eq!(end.status, Some(RunStatus::Failed), "{end:?}");
        let error = run(&*catalog, &end).await.error.expect("an error");
        assert!(
            error.message.contains("the API key was refused"),
            "{}",
            error.message
        );
        assert_eq!(error.retryable, retryable, "{failure_type}");
        assert_eq!(
            cursor(&*catalog, "sources", "orders").await,
            Some(stream_body("orders", json!({"id": 1})))
        );
    }
}

/// A state whose `recordCount` differs from what Hakiri read fails the run permanently and is
/// not recorded; the state before it stands.
#[tokio::test]
async fn a_record_count_mismatch_fails_the_run_and_its_state_is_not_recorded() {
    let (catalog, _clock) = catalog();
    let source = Source::new(&*catalog, &["orders"]).await;
    source.fake.script(&[
        record("orders", 1),
        stream_state("orders", json!({"id": 1}), 1.0),
        record("orders", 2),
        stream_state("orders", json!({"id": 3}), 2.0),
        record("orders", 3),
    ]);
    let end = only(reconcile(&reconciler(catalog.clone())).await);
    assert_eq!(end.status, Some(RunStatus::Failed), "{end:?}");
    let error = run(&*catalog, &end).await.error.expect("an error");
    assert!(!error.retryable);
    assert!(
        error
            .message
            .contains("says it sent 2 records since its previous state, but Hakiri read 1"),
        "{}",
        error.message
    );
    assert_eq!(
        cursor(&*catalog, "sources", "orders").await,
        Some(stream_body("orders", json!({"id": 1})))
    );
    assert_eq!(
        source.ids("orders"),
        [1, 2],
        "nothing after the mismatch is written"
    );
}

/// A CONTROL message (the source rotated its own config) fails the run permanently, saying
/// Hakiri cannot store it; a LEGACY state is refused the same way.
#[tokio::test]
async fn a_control_message_or_a_legacy_state_fails_the_run_permanently() {
    let control = json!({"json": {"type": "CONTROL", "control": {"type": "CONNECTOR_CONFIG", "emitted_at": 1,
                         "connectorConfig": {"config": {"api_key": "rotated"}}}}});
    let legacy =
        json!({"json": {"type": "STATE", "state": {"type": "LEGACY", "data": {"orders": 1}}}});
    for (step, expected) in [
        (
            control,
            "CONTROL CONNECTOR_CONFIG message (line 3): it changed its own config",
        ),
        (legacy, "a LEGACY state"),
    ] {
        let (catalog, _clock) = catalog();
        let source = Source::new(&*catalog, &["orders"]).await;
        source.fake.script(&[
            record("orders", 1),
            stream_state("orders", json!({"id": 1}), 1.0),
            step,
            record("orders", 2),
        ]);
        let end = only(reconcile(&reconciler(catalog.clone())).await);
        assert_eq!(end.status, Some(RunStatus::Failed), "{end:?}");
        let error = run(&*catalog, &end).await.error.expect("an error");
        assert!(!error.retryable, "{}", error.message);
        assert!(
            error.message.contains(expected),
            "{expected}: {}",
            error.message
        );
        assert_eq!(
            cursor(&*catalog, "sources", "orders").await,
            Some(stream_body("orders", json!({"id": 1})))
        );
        assert_eq!(source.ids("orders"), [1]);
    }
}

/// A record that does not fit the discovered schema fails the run; a failed `check` on the
/// first run fails it before anything is discovered or read.
#[tokio::test]
async fn a_misfit_record_or_a_failed_check_fails_the_run() {
    let (catalog, _clock) = catalog();
    let source = Source::new(&*catalog, &["orders"]).await;
    source.fake.script(&[
        record("orders", 1),
        json!({"json": {"type": "RECORD", "record": {"stream": "orders", "data": {"id": "C-2"}, "emitted_at": 1}}}),
    ]);
    let end = only(reconcile(&reconciler(catalog.clone())).await);
    assert_eq!(end.status, Some(RunStatus::Failed), "{end:?}");
    let message = end.message.unwrap_or_default();
    assert!(
        message.contains("\"id\" is a string (\"C-2\")"),
        "{message}"
    );
    assert_eq!(source.ids("orders"), [1]);

    let (catalog, _clock) = common::catalog();
    let fake = FakeTap::new();
    let failed = json!({"type": "CONNECTION_STATUS", "connectionStatus": {"status": "FAILED", "message": "bad key"}});
    let command = json!([
        env!("CARGO_BIN_EXE_hakiri-fake-tap"),
        "--airbyte",
        "--check-json",
        failed.to_string(),
        "--script",
        fake.path("script.json")
    ]);
    fake.script(&[json!({"print": "read ran"})]);
    pipeline(
        &*catalog,
        "sources",
        "airbyte",
        CursorKind::Opaque,
        json!({"command": command, "output": fake.path("out")}),
    )
    .await;
    let end = only(reconcile(&reconciler(catalog.clone())).await);
    assert_eq!(end.status, Some(RunStatus::Failed), "{end:?}");
    let error = run(&*catalog, &end).await.error.expect("an error");
    assert!(!error.retryable);
    assert!(
        error
            .message
            .contains("cannot connect with this config: bad key"),
        "{}",
        error.message
    );
}

/// `check` proves a config before it is used: on the pipeline's first run and the first after
/// its config changed, not on the runs in between.
#[tokio::test]
async fn check_runs_before_the_first_run_of_each_config() {
    let (catalog, clock) = catalog();
    let mut source = Source::new(&*catalog, &["orders"]).await;
    source.fake.script(&[
        record("orders", 1),
        stream_state("orders", json!({"id": 1}), 1.0),
    ]);
    let reconciler = reconciler(catalog.clone());
    let run_once = async |source: &Source, what: &str| {
        let before = source.calls().len();
        clock.advance(std::time::Duration::from_secs(3600));
        let end = only(reconcile(&reconciler).await);
        assert_eq!(end.status, Some(RunStatus::Succeeded), "{what}: {end:?}");
        source.calls().split_off(before)
    };
    assert_eq!(
        run_once(&source, "first").await,
        ["check", "discover", "read"]
    );
    assert_eq!(run_once(&source, "same config").await, ["discover", "read"]);
    source
        .set_settings(&*catalog, json!({"api_key": "k2"}))
        .await;
    assert_eq!(
        run_once(&source, "new config").await,
        ["check", "discover", "read"]
    );
    assert_eq!(run_once(&source, "proven").await, ["discover", "read"]);
}

/// A shutdown asks the source to stop before it cancels the run: a CDK source has no SIGTERM
/// handler and dies of the signal, its states printed before it stand, and the run ends
/// cancelled, to resume from there.
#[tokio::test]
async fn a_shutdown_stops_a_source_that_dies_of_sigterm_keeping_its_states() {
    let (catalog, _clock) = catalog();
    // Every state checkpointed at once, so the test sees when the run is under way.
    let source = Source::with(&*catalog, &["orders"], 1).await;
    source.fake.script(&[
        record("orders", 1),
        stream_state("orders", json!({"id": 1}), 1.0),
        json!({"sleep_ms": 60000}),
        record("orders", 2),
    ]);
    let reconciler = reconciler(catalog.clone());
    let started = std::time::Instant::now();
    let runs = shut_down_after_a_checkpoint(&*catalog, &reconciler, "sources", "orders").await;
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "the source was stopped, not waited for"
    );
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0].status, RunStatus::Cancelled, "{runs:?}");
    assert_eq!(
        cursor(&*catalog, "sources", "orders").await,
        Some(stream_body("orders", json!({"id": 1})))
    );
    assert_eq!(source.ids("orders"), [1]);
}
