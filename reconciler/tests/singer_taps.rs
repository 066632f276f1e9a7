//! The `singer` connector driving a real tap: `tap-jsonl` 0.3.1 from PyPI, with Hakiri as its
//! loader and piped into a real target, `target-jsonl` 0.1.4; both installed by
//! `scripts/singer-taps` (which `scripts/setup` runs) into cached virtual environments, run
//! through the `Reconciler` on the memory backend. Each test runs in both modes.
//!
//! The programs are found through `HAKIRI_TAP_JSONL` / `HAKIRI_TARGET_JSONL` or
//! `scripts/singer-taps --where <package>`; when one is not installed every test here fails,
//! saying how to install it.
//!
//! What tap-jsonl 0.3.1 really does, and these tests hold it to:
//! - Discovery samples every file matching `path` and infers each field's type; every run of the
//!   connector discovers first, so a new field or a retype shows up before the tap syncs.
//! - Its bookmark is one object per stream: `replication_key_value` (a file's mtime, to the
//!   second) and one `partitions` entry per file.
//! - Its own bookmarks never make it skip a file: it looks for `_sdc_last_modified` in each
//!   file's partition state, where the SDK keeps `replication_key_value` (a bookmark set by hand
//!   with that key does work). A second run therefore reads the new file *and* the old ones, so
//!   what Hakiri controls — which bookmark goes back to the tap — is checked by recording the
//!   `--state` file each run hands it (a shell wrapper around the real tap).
//! - Given a state that knows `k` files, it emits every record `k` times: the SDK takes the
//!   state's partitions as the stream's, and the tap reads all files for each partition.
//! - A field whose type differs between files gets the union of the types (`id` integer in one
//!   file, string in another: integer-or-string, JSON to Hakiri) — a widening change, not a
//!   breaking one.
//!
//! And target-jsonl 0.1.4: it appends each stream's records to `<destination_path>/<stream>.jsonl`
//! (with `do_timestamp_file: false`) and prints the last state it was given, once, at the end of
//! its input — and only if no record came after that state.

mod common;

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use common::*;
use hakiri_core::{
    Actor, Catalog, CatalogExt, ChangeClass, ColumnType, ConnectorConfig, ConnectorRef, CursorKind,
    CursorReset, CursorValue, Decision, DecisionQuery, HolderId, PipelineId, PipelineSpec,
    PolicyAction, Reason, ResetPermissions, ResetTarget, RunStatus, Schedule, SchemaPolicy,
    StreamName,
};
use serde_json::{json, Value};

const HOUR: Duration = Duration::from_secs(3600);
const DAY: u64 = 24 * 3600;
/// 2026-01-01T00:00:00Z: file mtimes are days after it.
const JAN_1: u64 = 1_767_225_600;

fn tap_jsonl() -> PathBuf {
    installed("singer-taps", "tap-jsonl", "HAKIRI_TAP_JSONL")
}

fn target_jsonl() -> PathBuf {
    installed("singer-taps", "target-jsonl", "HAKIRI_TARGET_JSONL")
}

/// Who loads the tap's records.
#[derive(Debug, Clone, Copy)]
enum Mode {
    /// Hakiri: `<dir>/out/orders/<run id>.jsonl`.
    Loader,
    /// target-jsonl: `<dir>/target/orders.jsonl`.
    Target,
}

/// Runs the real tap after copying the `--state` file of each sync (not of discovery) to
/// `<spy>/<n>.json` (`null` when there was none), `n` counting syncs from 0.
const SPY: &str = r#"state=null sync= prev=
for a; do
  if [ "$prev" = --state ]; then state=$(cat "$a"); fi
  if [ "$prev" = --catalog ]; then sync=1; fi
  prev=$a
done
if [ -n "$sync" ]; then printf '%s' "$state" > "$SPY_DIR/$(ls "$SPY_DIR" | wc -l).json"; fi
exec "$0" "$@""#;

/// A pipeline `files` running tap-jsonl over `<dir>/data/*.jsonl` as stream `orders`, its
/// records loaded as `mode` says.
struct Files {
    dir: tempfile::TempDir,
    mode: Mode,
    /// How many records [`Files::new_records`] has returned.
    seen: std::cell::Cell<usize>,
}

impl Files {
    async fn new(catalog: &dyn Catalog, policy: SchemaPolicy, mode: Mode) -> Self {
        let files = Self {
            dir: tempfile::tempdir().expect("tempdir"),
            mode,
            seen: std::cell::Cell::new(0),
        };
        let spy = files.dir.path().join("spy");
        std::fs::create_dir_all(&spy).expect("mkdir spy");
        let script = format!("SPY_DIR='{}'\n{SPY}", spy.display());
        let mut config = json!({
            "command": ["/bin/sh", "-c", script, tap_jsonl()],
            "config": {"path": format!("{}/data/*.jsonl", files.dir.path().display()),
                       "stream_name": "orders", "primary_keys": ["id"]},
            // Only the end of a run checkpoints: the number of cursor versions is then the
            // same however slowly the tap starts.
            "checkpoint_interval_ms": 3_600_000,
        });
        let (field, sink) = match mode {
            Mode::Loader => ("output", json!(files.dir.path().join("out"))),
            Mode::Target => {
                let destination = files.dir.path().join("target");
                std::fs::create_dir_all(&destination).expect("mkdir target");
                let settings = json!({"destination_path": destination, "do_timestamp_file": false});
                (
                    "target",
                    json!({"command": target_jsonl(), "config": settings}),
                )
            }
        };
        config[field] = sink;
        let spec = PipelineSpec::new(
            PipelineId::new("files").unwrap(),
            ConnectorRef::new("singer").unwrap(),
            CursorKind::Opaque,
        )
        .with_schedule(Schedule::Interval(HOUR))
        .with_config(ConnectorConfig::new(config).unwrap())
        .with_schema_policy(policy);
        catalog
            .create_pipeline(spec, &Actor::System)
            .await
            .expect("create pipeline");
        files
    }

    /// Writes `records` as `data/<name>`, last modified `days` after 2026-01-01.
    fn write(&self, name: &str, records: &[Value], days: u64) {
        let path = self.dir.path().join("data").join(name);
        write_jsonl(&path, records);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .and_then(|f| {
                f.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(JAN_1 + days * DAY))
            })
            .expect("set mtime");
    }

    /// Every record loaded so far, in order: the runs' files in run order (Hakiri as the
    /// loader), or the one file target-jsonl appends to.
    fn loaded(&self) -> Vec<Value> {
        let files = match self.mode {
            Mode::Loader => output_files(&self.dir.path().join("out/orders")),
            Mode::Target => vec![self.dir.path().join("target/orders.jsonl")],
        };
        files
            .iter()
            .filter(|file| file.exists())
            .flat_map(|file| {
                let text = std::fs::read_to_string(file).expect("read output");
                text.lines()
                    .map(|l| serde_json::from_str(l).expect("json"))
                    .collect::<Vec<Value>>()
            })
            .collect()
    }

    /// The records loaded since the last call, in order.
    fn new_records(&self) -> Vec<Value> {
        let loaded = self.loaded();
        let new = loaded[self.seen.get()..].to_vec();
        self.seen.set(loaded.len());
        new
    }

    /// The `id`s of the records loaded since the last call, in order.
    fn new_ids(&self) -> Vec<Value> {
        self.new_records().iter().map(|r| r["id"].clone()).collect()
    }

    /// The `--state` the tap got in sync number `n` (0-based); `null` when it got none.
    fn state_given(&self, n: usize) -> Value {
        let path = self.dir.path().join("spy").join(format!("{n}.json"));
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("sync {n} of the tap left no {}: {e}", path.display()));
        serde_json::from_str(&text).expect("state is JSON")
    }

    fn syncs(&self) -> usize {
        std::fs::read_dir(self.dir.path().join("spy"))
            .expect("spy dir")
            .count()
    }
}

/// Day `days` after 2026-01-01 as tap-jsonl writes a bookmark.
fn day(days: u64) -> String {
    format!("2026-01-{:02}T00:00:00+00:00", days + 1)
}

/// The bookmark a tap-jsonl state holds for the file named `name`.
fn partition(bookmark: &Value, name: &str) -> Value {
    bookmark["partitions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| {
            p["context"]["_sdc_filename"]
                .as_str()
                .is_some_and(|f| f.ends_with(&format!("/{name}")))
        })
        .map(|p| p["replication_key_value"].clone())
        .unwrap_or_else(|| panic!("no partition for {name} in {bookmark}"))
}

fn orders() -> StreamName {
    StreamName::new("orders").unwrap()
}

async fn reset(catalog: &dyn Catalog, target: ResetTarget) {
    let pipeline = PipelineId::new("files").unwrap();
    let lease = catalog
        .acquire(&pipeline, &HolderId::new("op").unwrap(), HOUR)
        .await
        .unwrap();
    let reset = CursorReset {
        target,
        expected_version: None,
        by: Actor::System,
        reason: Reason::new("re-read orders").unwrap(),
        allow: ResetPermissions::default(),
    };
    catalog
        .reset_cursor(&lease, &orders(), reset)
        .await
        .unwrap();
    catalog.release(&lease).await.unwrap();
}

/// The first run writes the file's records and checkpoints the tap's bookmark object; each
/// later run hands the tap the bookmark of the stream's cursor — the latest, none after a
/// reset, version 1's after a rollback — and the bookmark moves to a new file's mtime.
async fn bookmarks_go_back_to_the_real_tap_and_follow_resets_and_rollbacks(mode: Mode) {
    let (catalog, clock) = catalog();
    let files = Files::new(&*catalog, SchemaPolicy::default(), mode).await;
    let reconciler = reconciler(catalog.clone());
    files.write(
        "orders-001.jsonl",
        &[json!({"id": 1, "note": "a"}), json!({"id": 2, "note": "b"})],
        0,
    );

    let first = only(reconcile(&reconciler).await);
    assert_eq!(first.status, Some(RunStatus::Succeeded), "{first:?}");
    assert_eq!(files.new_ids(), [json!(1), json!(2)]);
    assert_eq!(files.state_given(0), Value::Null);
    let v1 = cursor(&*catalog, "files", "orders").await.expect("cursor");
    assert_eq!(v1["replication_key"], "_sdc_last_modified", "{v1}");
    assert_eq!(v1["replication_key_value"], day(0), "{v1}");
    assert_eq!(v1["partitions"].as_array().map(Vec::len), Some(1), "{v1}");
    assert_eq!(checkpoints(&*catalog, "files", "orders").await, 1);
    assert_eq!(run(&*catalog, &first).await.stats[&orders()].records, 2);

    // A new file, modified a day later: the tap gets run 1's bookmark and reads the new file.
    // tap-jsonl 0.3.1 re-reads the old file too (see the module doc).
    files.write("orders-002.jsonl", &[json!({"id": 3, "note": "c"})], 1);
    clock.advance(HOUR);
    let second = only(reconcile(&reconciler).await);
    assert_eq!(second.status, Some(RunStatus::Succeeded), "{second:?}");
    assert_eq!(files.state_given(1), json!({"bookmarks": {"orders": v1}}));
    assert_eq!(files.new_ids(), [json!(1), json!(2), json!(3)]);
    // The new file's partition holds its mtime. (tap-jsonl also moves the old file's partition
    // to it, and keeps the stream-level value it was given.)
    let v2 = cursor(&*catalog, "files", "orders").await.expect("cursor");
    assert_eq!(partition(&v2, "orders-002.jsonl"), day(1), "{v2}");

    // A reset of the stream: the next run gives the tap no state at all, as on a first run.
    reset(&*catalog, ResetTarget::Initial).await;
    clock.advance(HOUR);
    let third = only(reconcile(&reconciler).await);
    assert_eq!(third.status, Some(RunStatus::Succeeded), "{third:?}");
    assert_eq!(files.state_given(2), Value::Null);
    assert_eq!(files.new_ids(), [json!(1), json!(2), json!(3)]);

    // A rollback to version 1: the next run resumes from run 1's bookmark.
    reset(&*catalog, ResetTarget::Version(1)).await;
    assert_eq!(cursor(&*catalog, "files", "orders").await, Some(v1.clone()));
    clock.advance(HOUR);
    let fourth = only(reconcile(&reconciler).await);
    assert_eq!(fourth.status, Some(RunStatus::Succeeded), "{fourth:?}");
    assert_eq!(files.state_given(3), json!({"bookmarks": {"orders": v1}}));
    let v5 = cursor(&*catalog, "files", "orders").await.expect("cursor");
    assert_eq!(partition(&v5, "orders-002.jsonl"), day(1), "{v5}");
}

/// tap-jsonl does skip a file it has read when the file's partition state holds
/// `_sdc_last_modified` — which its own bookmarks never do. An operator who sets the stream's
/// cursor to such a bookmark gets what an incremental run should be: the next run reads only the
/// new file, and the tap keeps that key in the bookmark it prints, so the cursor carries it on.
async fn a_bookmark_set_by_hand_in_the_form_the_tap_reads_makes_the_next_run_read_only_new_files(
    mode: Mode,
) {
    let (catalog, clock) = catalog();
    let files = Files::new(&*catalog, SchemaPolicy::default(), mode).await;
    let reconciler = reconciler(catalog.clone());
    files.write(
        "orders-001.jsonl",
        &[json!({"id": 1, "note": "a"}), json!({"id": 2, "note": "b"})],
        0,
    );
    let first = only(reconcile(&reconciler).await);
    assert_eq!(first.status, Some(RunStatus::Succeeded), "{first:?}");
    assert_eq!(files.new_ids(), [json!(1), json!(2)]);

    let read = format!("{}/data/orders-001.jsonl", files.dir.path().display());
    let bookmark = json!({"partitions": [{"context": {"_sdc_filename": read, "_sdc_stream": "orders"},
                                          "_sdc_last_modified": day(0)}]});
    reset(
        &*catalog,
        ResetTarget::Value(CursorValue::new(bookmark.clone()).unwrap()),
    )
    .await;
    files.write("orders-002.jsonl", &[json!({"id": 3, "note": "c"})], 1);
    clock.advance(HOUR);
    let second = only(reconcile(&reconciler).await);
    assert_eq!(second.status, Some(RunStatus::Succeeded), "{second:?}");
    assert_eq!(
        files.state_given(1),
        json!({"bookmarks": {"orders": bookmark}})
    );
    assert_eq!(files.new_ids(), [json!(3)]);
    let after = cursor(&*catalog, "files", "orders").await.expect("cursor");
    assert_eq!(
        after["partitions"][0]["_sdc_last_modified"],
        day(0),
        "{after}"
    );
    assert_eq!(partition(&after, "orders-002.jsonl"), day(1), "{after}");
}

/// A field that appears in a new file is a new, additive schema version and the run goes on; a
/// field whose type changes (`id` integer → string) is held at discovery: the run ends cancelled
/// naming the decision, the pipeline pauses, the tap never syncs, nothing is written and the
/// cursor stays. Once the change is accepted the next run syncs and writes the rest.
async fn the_real_tap_adds_a_column_then_a_retype_is_held_until_accepted(mode: Mode) {
    let (catalog, clock) = catalog();
    // tap-jsonl types a field by the union of what every file holds, so `id` becoming a string
    // in one file makes it JSON (integer or string): a widening change, which the default
    // policy accepts. This pipeline reviews widening changes, as one would a key's type.
    let policy = SchemaPolicy {
        widening: PolicyAction::Hold,
        ..SchemaPolicy::default()
    };
    let files = Files::new(&*catalog, policy, mode).await;
    let reconciler = reconciler(catalog.clone());
    let pipeline = PipelineId::new("files").unwrap();
    files.write("orders-001.jsonl", &[json!({"id": 1, "note": "a"})], 0);
    let first = only(reconcile(&reconciler).await);
    assert_eq!(first.status, Some(RunStatus::Succeeded), "{first:?}");
    assert_eq!(files.new_ids(), [json!(1)]);

    files.write(
        "orders-002.jsonl",
        &[json!({"id": 2, "note": "b", "coupon": "SAVE5"})],
        1,
    );
    clock.advance(HOUR);
    let added = only(reconcile(&reconciler).await);
    assert_eq!(added.status, Some(RunStatus::Succeeded), "{added:?}");
    let versions = catalog
        .list_schema_versions(&pipeline, &orders())
        .await
        .unwrap();
    assert_eq!(versions.len(), 2, "{versions:?}");
    assert_eq!(
        versions[1].schema.column("coupon").map(|c| c.ty),
        Some(ColumnType::String)
    );
    // The new field reaches the records: the run's catalog comes from this run's discovery.
    let written = files.new_records();
    assert_eq!(written.len(), 2, "{written:?}");
    assert_eq!(written[1]["coupon"], "SAVE5", "{written:?}");
    assert_eq!(written[1]["id"], 2, "{written:?}");
    let before = catalog
        .get_cursor(&pipeline, &orders())
        .await
        .unwrap()
        .expect("cursor");

    files.write("orders-003.jsonl", &[json!({"id": "C-3", "note": "c"})], 2);
    clock.advance(HOUR);
    let held = only(reconcile(&reconciler).await);
    assert_eq!(held.status, Some(RunStatus::Cancelled), "{held:?}");
    let message = held.message.clone().unwrap_or_default();
    assert!(message.contains("held (decision"), "{message}");
    assert!(catalog
        .get_pipeline(&pipeline)
        .await
        .unwrap()
        .paused
        .is_some());
    assert_eq!(files.syncs(), 2, "the tap synced after the held schema");
    assert_eq!(
        files.new_records(),
        [] as [Value; 0],
        "the held run loaded records"
    );
    let after = catalog
        .get_cursor(&pipeline, &orders())
        .await
        .unwrap()
        .expect("cursor");
    assert_eq!(after.version, before.version);
    clock.advance(HOUR);
    assert!(reconcile(&reconciler).await.is_empty(), "paused");

    let pending: Vec<_> = catalog
        .list_decisions(&DecisionQuery::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(Decision::is_pending)
        .collect();
    assert_eq!(pending.len(), 1, "{pending:?}");
    assert_eq!(pending[0].class, ChangeClass::Widening);
    catalog.decide(pending[0].id, accept()).await.unwrap();
    let resumed = only(reconcile(&reconciler).await);
    assert_eq!(resumed.status, Some(RunStatus::Succeeded), "{resumed:?}");
    // Every file is read once per file the given state knows: twice here (see the module doc).
    let once = [json!(1), json!(2), json!("C-3")];
    assert_eq!(files.new_ids(), [once.clone(), once].concat());
    assert_eq!(
        files.state_given(2),
        json!({"bookmarks": {"orders": before.value.into_json()}})
    );
    let last = cursor(&*catalog, "files", "orders").await.expect("cursor");
    assert_eq!(partition(&last, "orders-003.jsonl"), day(2), "{last}");
    let current = catalog
        .get_schema(&pipeline, &orders(), None)
        .await
        .unwrap();
    assert_eq!(
        current.schema.column("id").map(|c| c.ty),
        Some(ColumnType::Json)
    );
}

/// Each test above, in both modes.
macro_rules! in_both_modes {
    ($($test:ident),* $(,)?) => {
        mod loader {
            $(#[tokio::test]
            async fn $test() {
                super::$test(super::Mode::Loader).await
            })*
        }
        mod target {
            $(#[tokio::test]
            async fn $test() {
                super::$test(super::Mode::Target).await
            })*
        }
    };
}

in_both_modes!(
    bookmarks_go_back_to_the_real_tap_and_follow_resets_and_rollbacks,
    a_bookmark_set_by_hand_in_the_form_the_tap_reads_makes_the_next_run_read_only_new_files,
    the_real_tap_adds_a_column_then_a_retype_is_held_until_accepted,
);
