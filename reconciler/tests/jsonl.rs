//! The `jsonl` connector end to end: through the `Reconciler`, on the memory backend, with a
//! manual clock.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use hakiri_core::{
    Catalog, ChangeClass, ColumnType, CursorKind, DecisionQuery, PipelineId, RunStatus, StreamName,
    Verdict,
};
use hakiri_reconciler::{Action, SkipReason};
use serde_json::{json, Value};

const HOUR: Duration = Duration::from_secs(3600);

fn config(dir: &Path, extra: Value) -> Value {
    let mut config = json!({
        "input": dir.join("in"),
        "output": dir.join("out"),
        "cursor_field": "seq",
    });
    if let (Some(base), Some(extra)) = (config.as_object_mut(), extra.as_object()) {
        base.extend(extra.clone());
    }
    config
}

fn orders(range: std::ops::RangeInclusive<i64>) -> Vec<Value> {
    range
        .map(|i| json!({"id": i, "seq": i, "amount": i * 10}))
        .collect()
}

fn ids(records: &[Value]) -> Vec<i64> {
    records.iter().map(|r| int(r, "id")).collect()
}

/// Files added between ticks are read incrementally: each run reads only what is new, writes it
/// to its own output file, checkpoints the largest cursor value and reports its statistics.
#[tokio::test]
async fn jsonl_reads_files_added_between_ticks_incrementally() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (catalog, clock) = catalog();
    pipeline(
        &*catalog,
        "orders",
        "jsonl",
        CursorKind::Monotonic,
        config(dir.path(), json!({})),
    )
    .await;
    write_jsonl(&dir.path().join("in/orders/001.jsonl"), &orders(1..=5));
    let reconciler = reconciler(catalog.clone());

    let first = only(reconcile(&reconciler).await);
    assert_eq!(first.status, Some(RunStatus::Succeeded), "{first:?}");
    let out = dir.path().join("out/orders");
    assert_eq!(
        output_files(&out),
        vec![out.join(format!("{}.jsonl", first.run))]
    );
    assert_eq!(ids(&output_records(&out)), (1..=5).collect::<Vec<_>>());
    assert_eq!(cursor(&*catalog, "orders", "orders").await, Some(json!(5)));
    let stats = run(&*catalog, &first).await.stats;
    assert_eq!(stats[&StreamName::new("orders").unwrap()].records, 5);
    let schema = catalog
        .get_schema(
            &PipelineId::new("orders").unwrap(),
            &StreamName::new("orders").unwrap(),
            None,
        )
        .await
        .expect("schema");
    assert_eq!(schema.version, 1);
    assert_eq!(schema.schema.key(), ["id".to_owned()]);
    assert_eq!(schema.schema.column("seq").unwrap().ty, ColumnType::Integer);

    // A new file is not read before the next scheduled time…
    write_jsonl(&dir.path().join("in/orders/002.jsonl"), &orders(6..=8));
    assert!(reconcile(&reconciler).await.is_empty());
    // …and then only it is read.
    clock.advance(HOUR);
    let second = only(reconcile(&reconciler).await);
    assert_eq!(second.status, Some(RunStatus::Succeeded), "{second:?}");
    let second_output = output_records(&out).split_off(5);
    assert_eq!(ids(&second_output), vec![6, 7, 8]);
    assert_eq!(output_files(&out).len(), 2);
    assert_eq!(cursor(&*catalog, "orders", "orders").await, Some(json!(8)));
    assert_eq!(
        run(&*catalog, &second).await.stats[&StreamName::new("orders").unwrap()].records,
        3
    );
}

/// Timestamps as cursors: fixed-width UTC RFC 3339 strings order bytewise and are typed as
/// timestamps; records at or before the cursor are skipped even when a file repeats them.
#[tokio::test]
async fn jsonl_timestamp_cursor_skips_records_already_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (catalog, clock) = catalog();
    let at = |i: i64| format!("2026-01-01T00:00:{i:02}.000Z");
    let config = config(dir.path(), json!({"cursor_field": "updated_at"}));
    pipeline(&*catalog, "events", "jsonl", CursorKind::Monotonic, config).await;
    let records = |r: std::ops::RangeInclusive<i64>| -> Vec<Value> {
        r.map(|i| json!({"id": i, "updated_at": at(i)})).collect()
    };
    write_jsonl(&dir.path().join("in/clicks/a.jsonl"), &records(1..=3));
    let reconciler = reconciler(catalog.clone());
    reconcile(&reconciler).await;
    assert_eq!(
        cursor(&*catalog, "events", "clicks").await,
        Some(json!(at(3)))
    );
    // A re-export overlapping what was read: only the new records are copied.
    write_jsonl(&dir.path().join("in/clicks/b.jsonl"), &records(2..=5));
    clock.advance(HOUR);
    reconcile(&reconciler).await;
    assert_eq!(
        ids(&output_records(&dir.path().join("out/clicks"))),
        vec![1, 2, 3, 4, 5]
    );
    let schema = catalog
        .get_schema(
            &PipelineId::new("events").unwrap(),
            &StreamName::new("clicks").unwrap(),
            None,
        )
        .await
        .expect("schema");
    assert_eq!(
        schema.schema.column("updated_at").unwrap().ty,
        ColumnType::Timestamp
    );
}

/// A file that adds a field is an additive change: accepted by the default policy, recorded as a
/// decision and a new schema version, and the run carries on.
#[tokio::test]
async fn jsonl_additive_change_is_accepted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (catalog, clock) = catalog();
    pipeline(
        &*catalog,
        "orders",
        "jsonl",
        CursorKind::Monotonic,
        config(dir.path(), json!({})),
    )
    .await;
    write_jsonl(&dir.path().join("in/orders/001.jsonl"), &orders(1..=2));
    let reconciler = reconciler(catalog.clone());
    reconcile(&reconciler).await;
    let with_note: Vec<Value> = (3..=4)
        .map(|i| json!({"id": i, "seq": i, "amount": i * 10, "note": "gift"}))
        .collect();
    write_jsonl(&dir.path().join("in/orders/002.jsonl"), &with_note);
    clock.advance(HOUR);
    let end = only(reconcile(&reconciler).await);
    assert_eq!(end.status, Some(RunStatus::Succeeded), "{end:?}");

    let (pipeline, stream) = (
        PipelineId::new("orders").unwrap(),
        StreamName::new("orders").unwrap(),
    );
    let versions = catalog
        .list_schema_versions(&pipeline, &stream)
        .await
        .expect("versions");
    assert_eq!(versions.len(), 2);
    let note = versions[1].schema.column("note").expect("note column");
    assert_eq!((note.ty, note.nullable), (ColumnType::String, true));
    let decisions = catalog
        .list_decisions(&DecisionQuery::default())
        .await
        .expect("decisions")
        .items;
    assert_eq!(decisions.len(), 1);
    assert_eq!(
        (decisions[0].class, decisions[0].verdict),
        (ChangeClass::Additive, Verdict::Accepted)
    );
    assert_eq!(
        ids(&output_records(&dir.path().join("out/orders"))),
        vec![1, 2, 3, 4]
    );
}

/// A file that changes a field's type is a breaking change: held, the run stops before writing
/// any record of that file, the pipeline pauses; once an operator accepts, the next reconcile
/// resumes from the last checkpoint and reads the rest, each record once.
#[tokio::test]
async fn jsonl_breaking_change_is_held_until_accepted_then_resumes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (catalog, clock) = catalog();
    pipeline(
        &*catalog,
        "users",
        "jsonl",
        CursorKind::Monotonic,
        config(dir.path(), json!({})),
    )
    .await;
    let user = |i: i64, active: Value| json!({"id": i, "seq": i, "active": active});
    write_jsonl(
        &dir.path().join("in/users/001.jsonl"),
        &[user(1, json!(true)), user(2, json!(false))],
    );
    let reconciler = reconciler(catalog.clone());
    reconcile(&reconciler).await;
    // The source switches a flag from booleans to 0/1.
    write_jsonl(
        &dir.path().join("in/users/002.jsonl"),
        &[user(3, json!(1)), user(4, json!(0))],
    );
    write_jsonl(&dir.path().join("in/users/003.jsonl"), &[user(5, json!(1))]);
    clock.advance(HOUR);

    let held = only(reconcile(&reconciler).await);
    assert_eq!(held.status, Some(RunStatus::Cancelled), "{held:?}");
    assert!(
        held.message.as_deref().unwrap_or("").contains("held"),
        "{held:?}"
    );
    let out = dir.path().join("out/users");
    assert_eq!(
        ids(&output_records(&out)),
        vec![1, 2],
        "nothing of the held file is written"
    );
    assert_eq!(cursor(&*catalog, "users", "users").await, Some(json!(2)));
    let id = PipelineId::new("users").unwrap();
    assert!(catalog
        .get_pipeline(&id)
        .await
        .expect("pipeline")
        .paused
        .is_some());
    let plan = reconciler.plan().await.expect("plan");
    let Action::Skip {
        reason: SkipReason::HeldDecision { decisions },
    } = &plan.items[0].action
    else {
        panic!("expected a held skip, got {plan:?}");
    };
    // Paused: later ticks do nothing.
    clock.advance(HOUR);
    assert!(reconcile(&reconciler).await.is_empty());

    let decision = catalog
        .decide(decisions[0], accept())
        .await
        .expect("accept");
    assert_eq!(decision.class, ChangeClass::Breaking);
    let resumed = only(reconcile(&reconciler).await);
    assert_eq!(resumed.status, Some(RunStatus::Succeeded), "{resumed:?}");
    assert_eq!(ids(&output_records(&out)), vec![1, 2, 3, 4, 5]);
    assert_eq!(cursor(&*catalog, "users", "users").await, Some(json!(5)));
    let current = catalog
        .get_schema(&id, &StreamName::new("users").unwrap(), None)
        .await
        .expect("schema");
    assert_eq!(
        current.schema.column("active").unwrap().ty,
        ColumnType::Integer
    );
}

/// Cancelled mid-run (as a shutdown would) right after a checkpoint, then run again by a new
/// reconciler: every record arrives, none at or before the last checkpoint twice, and a
/// checkpoint never splits records with equal cursor values (the rest of a tie would be skipped).
#[tokio::test]
async fn jsonl_cancelled_run_resumes_from_its_last_checkpoint() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (inner, _clock) = catalog();
    let faulty = Faulty::new(inner.clone());
    let catalog: Arc<dyn Catalog> = Arc::new(faulty.clone());
    let config = config(dir.path(), json!({"checkpoint_every": 4}));
    pipeline(&*catalog, "orders", "jsonl", CursorKind::Monotonic, config).await;
    // Three records per cursor value.
    let inputs: Vec<Value> = (1..=50)
        .map(|i| json!({"id": i, "seq": (i + 2) / 3}))
        .collect();
    write_jsonl(&dir.path().join("in/orders/001.jsonl"), &inputs);

    let first = Arc::new(reconciler(catalog.clone()));
    let handle = Arc::downgrade(&first);
    faulty.arm(
        2,
        Fault::After(Box::new(move || {
            if let Some(r) = handle.upgrade() {
                r.cancel_runs();
            }
        })),
    );
    let stopped = only(reconcile(&first).await);
    assert!(faulty.fired());
    assert_eq!(stopped.status, Some(RunStatus::Cancelled), "{stopped:?}");
    let at_kill = cursor(&*catalog, "orders", "orders")
        .await
        .and_then(|v| v.as_i64());
    // Checkpoints fall where the cursor increases after at least 4 records: after seq 2 (ids
    // 1-6) and seq 4 (ids 7-12).
    assert_eq!(at_kill, Some(4));

    let second = reconciler(catalog.clone());
    let resumed = only(reconcile(&second).await);
    assert_eq!(resumed.status, Some(RunStatus::Succeeded), "{resumed:?}");
    let outputs = ids(&output_records(&dir.path().join("out/orders")));
    let duplicated = assert_at_least_once_bounded(&ids(&inputs), &outputs, 12);
    // Cancellation is checked before every write, so a cancelled run stops at its checkpoint.
    assert_eq!(duplicated, 0);
    assert_eq!(cursor(&*catalog, "orders", "orders").await, Some(json!(17)));
}

/// A crash between writing records and checkpointing them (the checkpoint never reaches the
/// catalog): the retry reads them again — duplicates only past the last checkpoint, nothing lost,
/// and equal cursor values are never split by a checkpoint.
#[tokio::test]
async fn jsonl_crash_before_a_checkpoint_duplicates_only_past_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (inner, clock) = catalog();
    let faulty = Faulty::new(inner.clone());
    let catalog: Arc<dyn Catalog> = Arc::new(faulty.clone());
    let config = config(dir.path(), json!({"checkpoint_every": 4}));
    pipeline(&*catalog, "orders", "jsonl", CursorKind::Monotonic, config).await;
    // Three records per cursor value, so a checkpoint every 4 records would split ties.
    let record = |i: i64| json!({"id": i, "seq": (i + 2) / 3});
    let file1: Vec<Value> = (1..=30).map(record).collect();
    let file2: Vec<Value> = (31..=60).map(record).collect();
    write_jsonl(&dir.path().join("in/orders/001.jsonl"), &file1);
    write_jsonl(&dir.path().join("in/orders/002.jsonl"), &file2);
    let reconciler = reconciler(catalog.clone());
    faulty.arm(8, Fault::Lose);

    let crashed = only(reconcile(&reconciler).await);
    assert!(faulty.fired());
    assert_eq!(crashed.status, Some(RunStatus::Failed), "{crashed:?}");
    let at_crash = cursor(&*catalog, "orders", "orders")
        .await
        .and_then(|v| v.as_i64())
        .expect("cursor");
    // The retry waits for its backoff, then reads from the last checkpoint.
    clock.advance(Duration::from_secs(60));
    let retried = only(reconcile(&reconciler).await);
    assert_eq!(retried.status, Some(RunStatus::Succeeded), "{retried:?}");
    assert_eq!(run(&*catalog, &retried).await.attempt, 2);

    let outputs: Vec<Value> = output_records(&dir.path().join("out/orders"));
    let by_seq: Vec<i64> = outputs.iter().map(|r| int(r, "seq")).collect();
    let inputs: Vec<Value> = file1.iter().chain(&file2).cloned().collect();
    // Keys are ids; the checkpoint is a seq value, so compare through each record's seq.
    let last_id_at_checkpoint = inputs
        .iter()
        .filter(|r| int(r, "seq") <= at_crash)
        .map(|r| int(r, "id"))
        .max()
        .expect("some records were checkpointed");
    let duplicated =
        assert_at_least_once_bounded(&ids(&inputs), &ids(&outputs), last_id_at_checkpoint);
    assert!(
        duplicated > 0,
        "the lost checkpoint's records are read again"
    );
    assert!(by_seq.iter().all(|s| (1..=20).contains(s)));
    assert_eq!(cursor(&*catalog, "orders", "orders").await, Some(json!(20)));
}

/// A file whose records are not in cursor order is checkpointed only at its end (a checkpoint in
/// the middle could skip a smaller value further down after a crash); an ordered one every
/// `checkpoint_every` records.
#[tokio::test]
async fn jsonl_checkpoints_inside_a_file_only_when_it_is_in_cursor_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (catalog, _clock) = catalog();
    let config = config(dir.path(), json!({"checkpoint_every": 5}));
    pipeline(&*catalog, "p", "jsonl", CursorKind::Monotonic, config).await;
    let mut shuffled = orders(1..=20);
    shuffled.swap(0, 19);
    write_jsonl(&dir.path().join("in/shuffled/001.jsonl"), &shuffled);
    write_jsonl(&dir.path().join("in/sorted/001.jsonl"), &orders(1..=20));
    let end = only(reconcile(&reconciler(catalog.clone())).await);
    assert_eq!(end.status, Some(RunStatus::Succeeded), "{end:?}");
    assert_eq!(checkpoints(&*catalog, "p", "shuffled").await, 1);
    assert_eq!(checkpoints(&*catalog, "p", "sorted").await, 4);
    assert_eq!(cursor(&*catalog, "p", "shuffled").await, Some(json!(20)));
}

/// Bad configs fail the run permanently (no retry) with a message naming the field.
#[tokio::test]
async fn jsonl_bad_config_fails_permanently_naming_the_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (catalog, _clock) = catalog();
    let cases = [
        (
            "no-input",
            json!({"output": "o", "cursor_field": "seq"}),
            "jsonl config: missing field `input`",
        ),
        (
            "no-cursor",
            json!({"input": "i", "output": "o"}),
            "jsonl config: missing field `cursor_field`",
        ),
        (
            "bad-streams",
            json!({"input": "i", "output": "o", "cursor_field": "seq", "streams": "orders"}),
            "jsonl config: streams: invalid type: string \"orders\", expected a sequence",
        ),
        (
            "bad-stream-name",
            json!({"input": "i", "output": "o", "cursor_field": "seq", "streams": ["../etc"]}),
            "jsonl config: streams[0]: names stream \"../etc\"",
        ),
        (
            "bad-every",
            json!({"input": "i", "output": "o", "cursor_field": "seq", "checkpoint_every": 0}),
            "jsonl config: checkpoint_every: invalid value: integer `0`, expected a positive integer",
        ),
        (
            "typo",
            json!({"input": "i", "output": "o", "cursor_field": "seq", "chekpoint_every": 5}),
            "jsonl config: chekpoint_every: unknown field `chekpoint_every`",
        ),
        (
            "no-dir",
            json!({"input": dir.path().join("missing"), "output": "o", "cursor_field": "seq"}),
            "missing",
        ),
        (
            "same-dir",
            json!({"input": "d", "output": "d", "cursor_field": "seq"}),
            "jsonl config: output: must not be the input directory",
        ),
    ];
    for (id, config, _) in &cases {
        pipeline(
            &*catalog,
            id,
            "jsonl",
            CursorKind::Monotonic,
            config.clone(),
        )
        .await;
    }
    let ends = reconcile(&reconciler(catalog.clone())).await;
    assert_eq!(ends.len(), cases.len());
    for (id, _, expected) in cases {
        let end = ends
            .iter()
            .find(|e| e.pipeline.as_str() == id)
            .expect("ran");
        let stored = run(&*catalog, end).await;
        assert_eq!(stored.status, RunStatus::Failed, "{id}");
        let error = stored.error.expect("error");
        assert!(!error.retryable, "{id}: {}", error.message);
        assert!(
            error.message.contains(expected),
            "{id}: {:?} lacks {expected:?}",
            error.message
        );
    }
}

/// Malformed input fails the run permanently, naming the file and line, before anything of that
/// file is written.
#[tokio::test]
async fn jsonl_malformed_input_fails_naming_file_and_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (catalog, _clock) = catalog();
    let cases: [(&str, &str, &str); 4] = [
        (
            "bad-json",
            "{\"id\":1,\"seq\":1}\n\n{\"id\":2,\"seq\":2\n",
            "001.jsonl:3: not valid JSON",
        ),
        (
            "not-object",
            "{\"id\":1,\"seq\":1}\n[1,2]\n",
            "001.jsonl:2: expected a JSON object",
        ),
        (
            "no-cursor",
            "{\"id\":1,\"seq\":1}\n{\"id\":2}\n",
            "001.jsonl:2: the cursor field \"seq\" is missing",
        ),
        (
            "mixed-cursor",
            "{\"id\":1,\"seq\":1}\n{\"id\":2,\"seq\":\"2\"}\n",
            "001.jsonl:2: cursor field",
        ),
    ];
    for (id, text, _) in cases {
        let root = dir.path().join(id);
        std::fs::create_dir_all(root.join("in/s")).expect("mkdir");
        std::fs::write(root.join("in/s/001.jsonl"), text).expect("write");
        pipeline(
            &*catalog,
            id,
            "jsonl",
            CursorKind::Monotonic,
            config(&root, json!({})),
        )
        .await;
    }
    let ends = reconcile(&reconciler(catalog.clone())).await;
    for (id, _, expected) in cases {
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
        assert!(
            output_files(&dir.path().join(id).join("out/s")).is_empty(),
            "{id} wrote output"
        );
    }
}

/// The jsonl connector's cursor is ordered: an opaque pipeline is refused with a clear error.
#[tokio::test]
async fn jsonl_refuses_an_opaque_cursor_kind() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (catalog, _clock) = catalog();
    pipeline(
        &*catalog,
        "p",
        "jsonl",
        CursorKind::Opaque,
        config(dir.path(), json!({})),
    )
    .await;
    let end = only(reconcile(&reconciler(catalog.clone())).await);
    assert_eq!(end.status, Some(RunStatus::Failed));
    assert!(end
        .message
        .unwrap_or_default()
        .contains("cursor_kind = \"monotonic\""));
}

/// A file without line breaks fails once a line passes 16 MiB, instead of exhausting memory.
#[tokio::test]
async fn jsonl_overlong_line_fails_permanently() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (catalog, _clock) = catalog();
    pipeline(
        &*catalog,
        "p",
        "jsonl",
        CursorKind::Monotonic,
        config(dir.path(), json!({})),
    )
    .await;
    std::fs::create_dir_all(dir.path().join("in/s")).expect("mkdir");
    let blob = "x".repeat(17 << 20);
    let text = format!("{{\"seq\": 1}}\n{{\"seq\": 2, \"blob\": \"{blob}\"}}\n");
    std::fs::write(dir.path().join("in/s/001.jsonl"), text).expect("write");
    let end = only(reconcile(&reconciler(catalog.clone())).await);
    let error = run(&*catalog, &end).await.error.expect("error");
    assert!(!error.retryable);
    assert!(
        error
            .message
            .contains("001.jsonl:2: the line is longer than 16 MiB"),
        "{}",
        error.message
    );
}

/// Files read before are not read again once a later file starts at or before the cursor, so a
/// run's cost does not grow with the stream's history (a corrupted old file proves it is skipped).
#[tokio::test]
async fn jsonl_does_not_reread_history() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (catalog, clock) = catalog();
    pipeline(
        &*catalog,
        "orders",
        "jsonl",
        CursorKind::Monotonic,
        config(dir.path(), json!({})),
    )
    .await;
    let reconciler = reconciler(catalog.clone());
    for (n, range) in [(1, 1..=3), (2, 4..=6), (3, 7..=9)] {
        write_jsonl(
            &dir.path().join(format!("in/orders/00{n}.jsonl")),
            &orders(range),
        );
        let end = only(reconcile(&reconciler).await);
        assert_eq!(end.status, Some(RunStatus::Succeeded), "{end:?}");
        clock.advance(HOUR);
        if n == 2 {
            std::fs::write(dir.path().join("in/orders/001.jsonl"), "not json\n").expect("corrupt");
        }
    }
    assert_eq!(
        ids(&output_records(&dir.path().join("out/orders"))),
        (1..=9).collect::<Vec<_>>()
    );
}
