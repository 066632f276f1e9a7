//! The `tail` connector end to end: through the `Reconciler`, on the memory backend, with a
//! manual clock.

mod common;

use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use hakiri_core::{Catalog, ColumnType, CursorKind, PipelineId, RunStatus, StreamName};
use serde_json::{json, Value};

const HOUR: Duration = Duration::from_secs(3600);

fn config(dir: &Path, extra: Value) -> Value {
    let mut config = json!({
        "input": dir.join("events.log"),
        "output": dir.join("out"),
        "stream": "events",
    });
    if let (Some(base), Some(extra)) = (config.as_object_mut(), extra.as_object()) {
        base.extend(extra.clone());
    }
    config
}

fn append(path: &Path, text: &str) {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open");
    file.write_all(text.as_bytes()).expect("append");
}

fn output_lines(dir: &Path) -> Vec<String> {
    output_files(&dir.join("out/events"))
        .iter()
        .flat_map(|f| {
            std::fs::read_to_string(f)
                .expect("read")
                .lines()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect()
}

fn offset(cursor: Option<Value>) -> u64 {
    cursor
        .and_then(|c| c["offset"].as_u64())
        .expect("a resume token")
}

/// Complete lines are copied verbatim; a last line still being written waits for the next run,
/// which continues from the stored offset.
#[tokio::test]
async fn tail_reads_complete_lines_incrementally() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (catalog, clock) = catalog();
    pipeline(
        &*catalog,
        "app",
        "tail",
        CursorKind::Opaque,
        config(dir.path(), json!({})),
    )
    .await;
    let log = dir.path().join("events.log");
    append(&log, "alpha\nbeta\ngam");
    let reconciler = reconciler(catalog.clone());

    let first = only(reconcile(&reconciler).await);
    assert_eq!(first.status, Some(RunStatus::Succeeded), "{first:?}");
    assert_eq!(output_lines(dir.path()), ["alpha", "beta"]);
    assert_eq!(offset(cursor(&*catalog, "app", "events").await), 11);
    let out = output_files(&dir.path().join("out/events"));
    assert_eq!(
        out,
        [dir.path().join(format!("out/events/{}.log", first.run))]
    );
    let stats = run(&*catalog, &first).await.stats;
    let events = StreamName::new("events").unwrap();
    assert_eq!((stats[&events].records, stats[&events].bytes), (2, 11));
    let schema = catalog
        .get_schema(&PipelineId::new("app").unwrap(), &events, None)
        .await
        .expect("schema");
    assert_eq!(schema.schema.column("line").unwrap().ty, ColumnType::String);

    append(&log, "ma\ndelta\n");
    clock.advance(HOUR);
    let second = only(reconcile(&reconciler).await);
    assert_eq!(second.status, Some(RunStatus::Succeeded), "{second:?}");
    assert_eq!(
        output_lines(dir.path()),
        ["alpha", "beta", "gamma", "delta"]
    );
    assert_eq!(offset(cursor(&*catalog, "app", "events").await), 23);

    // Nothing new: the run succeeds and writes nothing.
    clock.advance(HOUR);
    let idle = only(reconcile(&reconciler).await);
    assert_eq!(idle.status, Some(RunStatus::Succeeded));
    assert_eq!(output_files(&dir.path().join("out/events")).len(), 2);
}

/// A file shorter than the stored offset was truncated: a permanent error, nothing read.
#[tokio::test]
async fn tail_truncated_file_fails_permanently() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (catalog, clock) = catalog();
    pipeline(
        &*catalog,
        "app",
        "tail",
        CursorKind::Opaque,
        config(dir.path(), json!({})),
    )
    .await;
    let log = dir.path().join("events.log");
    append(&log, "one\ntwo\nthree\n");
    let reconciler = reconciler(catalog.clone());
    reconcile(&reconciler).await;
    std::fs::write(&log, "x\n").expect("truncate");
    clock.advance(HOUR);
    let end = only(reconcile(&reconciler).await);
    let stored = run(&*catalog, &end).await;
    let error = stored.error.expect("error");
    assert_eq!((stored.status, error.retryable), (RunStatus::Failed, false));
    assert!(error.message.contains("truncated"), "{}", error.message);
    assert_eq!(offset(cursor(&*catalog, "app", "events").await), 14);
}

/// A file replaced by another at least as long is caught by the token's check of the bytes
/// before the offset, instead of reading the new file from the middle.
#[tokio::test]
async fn tail_replaced_file_fails_permanently() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (catalog, clock) = catalog();
    pipeline(
        &*catalog,
        "app",
        "tail",
        CursorKind::Opaque,
        config(dir.path(), json!({})),
    )
    .await;
    let log = dir.path().join("events.log");
    append(&log, "one\ntwo\n");
    let reconciler = reconciler(catalog.clone());
    reconcile(&reconciler).await;
    std::fs::write(&log, "uno\ndos\ntres\n").expect("replace");
    clock.advance(HOUR);
    let end = only(reconcile(&reconciler).await);
    let stored = run(&*catalog, &end).await;
    let error = stored.error.expect("error");
    assert_eq!((stored.status, error.retryable), (RunStatus::Failed, false));
    assert!(error.message.contains("replaced"), "{}", error.message);
    assert_eq!(output_lines(dir.path()), ["one", "two"]);
}

/// Cancelled mid-run right after a checkpoint, then resumed by a new reconciler: every line
/// arrives and none before the last checkpoint twice.
#[tokio::test]
async fn tail_cancelled_run_resumes_from_its_last_checkpoint() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (inner, _clock) = catalog();
    let faulty = Faulty::new(inner.clone());
    let catalog: Arc<dyn Catalog> = Arc::new(faulty.clone());
    let config = config(dir.path(), json!({"checkpoint_every": 7}));
    pipeline(&*catalog, "app", "tail", CursorKind::Opaque, config).await;
    let inputs: Vec<i64> = (1..=40).collect();
    let text: String = inputs.iter().map(|i| format!("{i}\n")).collect();
    append(&dir.path().join("events.log"), &text);

    let first = Arc::new(reconciler(catalog.clone()));
    let handle = Arc::downgrade(&first);
    faulty.arm(
        3,
        Fault::After(Box::new(move || {
            if let Some(r) = handle.upgrade() {
                r.cancel_runs();
            }
        })),
    );
    let stopped = only(reconcile(&first).await);
    assert!(faulty.fired());
    assert_eq!(stopped.status, Some(RunStatus::Cancelled), "{stopped:?}");
    let at_kill = offset(cursor(&*catalog, "app", "events").await);
    let lines_at_kill = text[..usize::try_from(at_kill).unwrap()].lines().count();
    assert_eq!(lines_at_kill, 21, "three checkpoints of seven lines");

    let resumed = only(reconcile(&reconciler(catalog.clone())).await);
    assert_eq!(resumed.status, Some(RunStatus::Succeeded), "{resumed:?}");
    let outputs: Vec<i64> = output_lines(dir.path())
        .iter()
        .map(|l| l.parse().unwrap())
        .collect();
    assert_at_least_once_bounded(&inputs, &outputs, 21);
    assert_eq!(
        offset(cursor(&*catalog, "app", "events").await),
        text.len() as u64
    );
}

/// A crash between writing lines and checkpointing their offset: the retry copies them again —
/// duplicates only past the last checkpoint, nothing lost.
#[tokio::test]
async fn tail_crash_before_a_checkpoint_duplicates_only_past_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (inner, clock) = catalog();
    let faulty = Faulty::new(inner.clone());
    let catalog: Arc<dyn Catalog> = Arc::new(faulty.clone());
    let config = config(dir.path(), json!({"checkpoint_every": 10}));
    pipeline(&*catalog, "app", "tail", CursorKind::Opaque, config).await;
    let inputs: Vec<i64> = (1..=45).collect();
    let text: String = inputs.iter().map(|i| format!("{i}\n")).collect();
    append(&dir.path().join("events.log"), &text);
    let reconciler = reconciler(catalog.clone());
    faulty.arm(3, Fault::Lose);

    let crashed = only(reconcile(&reconciler).await);
    assert_eq!(crashed.status, Some(RunStatus::Failed), "{crashed:?}");
    let at_crash = offset(cursor(&*catalog, "app", "events").await);
    let lines_at_crash = text[..usize::try_from(at_crash).unwrap()].lines().count();
    assert_eq!(lines_at_crash, 20);
    clock.advance(Duration::from_secs(60));
    let retried = only(reconcile(&reconciler).await);
    assert_eq!(retried.status, Some(RunStatus::Succeeded), "{retried:?}");

    let outputs: Vec<i64> = output_lines(dir.path())
        .iter()
        .map(|l| l.parse().unwrap())
        .collect();
    let duplicated = assert_at_least_once_bounded(&inputs, &outputs, 20);
    assert_eq!(
        duplicated, 10,
        "the ten lines of the lost checkpoint are copied again"
    );
}

/// Bad configs and a monotonic cursor kind fail permanently with a message naming the problem.
#[tokio::test]
async fn tail_bad_config_fails_permanently_naming_the_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (catalog, _clock) = catalog();
    let cases = [
        (
            "no-stream",
            CursorKind::Opaque,
            json!({"input": "f", "output": "o"}),
            "tail config: missing field `stream`",
        ),
        (
            "bad-stream",
            CursorKind::Opaque,
            json!({"input": "f", "output": "o", "stream": "a/b"}),
            "tail config: stream: names stream \"a/b\"",
        ),
        (
            "bad-input",
            CursorKind::Opaque,
            json!({"input": 7, "output": "o", "stream": "s"}),
            "tail config: input: invalid type: integer `7`, expected a string",
        ),
        (
            "missing-file",
            CursorKind::Opaque,
            json!({"input": dir.path().join("nope.log"), "output": "o", "stream": "s"}),
            "nope.log",
        ),
        (
            "monotonic",
            CursorKind::Monotonic,
            json!({"input": "f", "output": "o", "stream": "s"}),
            "cursor_kind = \"opaque\"",
        ),
    ];
    for (id, kind, config, _) in &cases {
        pipeline(&*catalog, id, "tail", *kind, config.clone()).await;
    }
    let ends = reconcile(&reconciler(catalog.clone())).await;
    assert_eq!(ends.len(), cases.len());
    for (id, _, _, expected) in cases {
        let end = ends
            .iter()
            .find(|e| e.pipeline.as_str() == id)
            .expect("ran");
        let stored = run(&*catalog, end).await;
        let error = stored.error.expect("error");
        assert_eq!(
            (stored.status, error.retryable),
            (RunStatus::Failed, false),
            "{id}"
        );
        assert!(
            error.message.contains(expected),
            "{id}: {:?} lacks {expected:?}",
            error.message
        );
    }
}
