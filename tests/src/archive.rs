//! Archives: a project exported and imported into an empty one arrives whole — same digest,
//! same state — and carries on as its source would; an import lands only in an empty project,
//! resumes where it stopped and refuses another archive (invariant 11 in `docs/guarantees.md`,
//! ADR 0033).
//!
//! [`fill`], [`long_history`], [`export_bytes`], [`import_bytes`], [`import_first`] and
//! [`contents`] are public: the round trips across backends, the tests at scale and the archive
//! benchmark (the CLI's) use them too.

use std::io::BufReader;
use std::time::Duration;

use hakiri_core::archive::{self, ArchiveReader, ImportBatch, ImportProgress, Record, Summary};
use hakiri_core::{
    BeginRun, Catalog, CatalogExt, Column, ColumnType, CursorAdvance, CursorKind, CursorReset,
    Decide, Error, EventKind, FinishRun, Generation, Lease, Limit, Outcome, PauseChange,
    PipelineStatus, PutMode, ResetPermissions, ResetTarget, Resolution, Run, RunError, Schema,
    StreamStats, Timestamp, Trigger,
};
use serde_json::json;

use crate::{holder_id, operator, pid, reason, spec, stream, value, Ctx};

fn schema(name_type: ColumnType) -> Schema {
    Schema::new(
        vec![
            Column::new("id", ColumnType::Integer, false),
            Column::new("name", name_type, true),
        ],
        vec!["id".to_owned()],
    )
    .expect("valid schema")
}

/// What [`fill`] leaves running: pipeline `b`'s live lease and its running run.
pub struct Running {
    /// The lease.
    pub lease: Lease,
    /// The run.
    pub run: Run,
}

/// Fills a project with a bit of everything an archive carries: `a` with two ended runs, cursor
/// histories on two streams, a reset, schema versions and a decided decision; `b` with a run
/// request, a live lease and a running run; `c` updated, advanced, deleted (its events stay) and
/// created and advanced again; `d` paused by an operator.
pub async fn fill(catalog: &dyn Catalog, ttl: Duration) -> Running {
    let by = operator();
    let (s1, s2) = (stream("orders"), stream("refunds"));

    catalog
        .create_pipeline(spec("a", CursorKind::Monotonic), &by)
        .await
        .expect("create a");
    let lease = catalog
        .acquire(&pid("a"), &holder_id("worker-a"), ttl)
        .await
        .expect("acquire a");
    let run = catalog
        .begin_run(&lease, BeginRun::new(Trigger::Manual))
        .await
        .expect("begin a");
    for n in 1..=3 {
        catalog
            .advance_to(&lease, run.id, &s1, value(json!(n)))
            .await
            .expect("advance a");
    }
    catalog
        .advance_to(&lease, run.id, &s2, value(json!("2026-01-01")))
        .await
        .expect("advance a");
    catalog
        .observe_schema(&lease, run.id, &s1, schema(ColumnType::String))
        .await
        .expect("observe");
    let stats = StreamStats::new(42, 4200);
    catalog
        .finish_run(
            &lease,
            run.id,
            FinishRun::succeeded()
                .with_cursor(s1.clone(), value(json!(4)))
                .with_stats(s1.clone(), stats),
        )
        .await
        .expect("finish a");
    let run = catalog
        .begin_run(&lease, BeginRun::new(Trigger::Manual))
        .await
        .expect("begin a again");
    let held = catalog
        .observe_schema(&lease, run.id, &s1, schema(ColumnType::Integer))
        .await
        .expect("observe a breaking change")
        .decision
        .expect("a decision");
    let error = RunError::new("the schema changed", false);
    catalog
        .finish_run(&lease, run.id, FinishRun::new(Outcome::Failed { error }))
        .await
        .expect("fail a");
    let decide = Decide {
        resolution: Resolution::Accept,
        by: by.clone(),
        reason: reason("reviewed"),
    };
    catalog.decide(held.id, decide).await.expect("decide");
    let reset = CursorReset {
        target: ResetTarget::Version(2),
        expected_version: None,
        by: by.clone(),
        reason: reason("replay"),
        allow: ResetPermissions::default(),
    };
    catalog
        .reset_cursor(&lease, &s1, reset)
        .await
        .expect("reset");
    catalog.release(&lease).await.expect("release a");

    catalog
        .create_pipeline(spec("b", CursorKind::Opaque), &by)
        .await
        .expect("create b");
    catalog
        .request_run(&pid("b"), Trigger::Backfill, &by)
        .await
        .expect("request b");
    let lease = catalog
        .acquire(&pid("b"), &holder_id("worker-b"), ttl)
        .await
        .expect("acquire b");
    let run = catalog
        .begin_run(&lease, BeginRun::new(Trigger::Manual))
        .await
        .expect("begin b");
    catalog
        .advance_to(&lease, run.id, &s1, value(json!({"page": 3, "token": "x"})))
        .await
        .expect("advance b");

    let c = catalog
        .create_pipeline(spec("c", CursorKind::Monotonic), &by)
        .await
        .expect("create c");
    let mut changed = spec("c", CursorKind::Opaque);
    changed.enabled = false;
    let expected = c.generation;
    catalog
        .put_pipeline(changed, PutMode::Update { expected }, &by)
        .await
        .expect("update c");
    let c_lease = catalog
        .acquire(&pid("c"), &holder_id("worker-c"), ttl)
        .await
        .expect("acquire c");
    advanced(catalog, &c_lease, &[1, 2]).await;
    catalog.release(&c_lease).await.expect("release c");
    catalog
        .delete_pipeline(&pid("c"), Generation(2), &by)
        .await
        .expect("delete c");
    // Created again: its cursor's versions start over, and its history is its own.
    catalog
        .create_pipeline(spec("c", CursorKind::Monotonic), &by)
        .await
        .expect("create c again");
    let c_lease = catalog
        .acquire(&pid("c"), &holder_id("worker-c"), ttl)
        .await
        .expect("acquire c again");
    advanced(catalog, &c_lease, &[5, 6, 7]).await;
    catalog.release(&c_lease).await.expect("release c again");

    catalog
        .create_pipeline(spec("d", CursorKind::Monotonic), &by)
        .await
        .expect("create d");
    catalog
        .set_paused(&pid("d"), PauseChange::Pause(reason("maintenance")), &by)
        .await
        .expect("pause d");
    Running { lease, run }
}

/// A run of `lease`'s pipeline that advances stream `orders` through `values`, then succeeds.
async fn advanced(catalog: &dyn Catalog, lease: &Lease, values: &[i64]) {
    let run = catalog
        .begin_run(lease, BeginRun::new(Trigger::Manual))
        .await
        .expect("begin");
    for n in values {
        catalog
            .advance_to(lease, run.id, &stream("orders"), value(json!(n)))
            .await
            .expect("advance");
    }
    catalog
        .finish_run(lease, run.id, FinishRun::succeeded())
        .await
        .expect("finish");
}

/// An archive of `catalog`, and what it holds.
pub async fn export_bytes(catalog: &dyn Catalog) -> (Vec<u8>, Summary) {
    let mut bytes = Vec::new();
    let summary = archive::export(catalog, &mut bytes, Timestamp::from_millis(0), |_| {})
        .await
        .expect("export");
    (bytes, summary)
}

/// Imports `bytes` into `catalog`'s project, as `hakiri import` does: read and checked whole
/// first, then applied in batches.
///
/// # Errors
/// The import's.
pub async fn import_bytes(catalog: &dyn Catalog, bytes: &[u8]) -> hakiri_core::Result<Summary> {
    let summary = ArchiveReader::new(BufReader::new(bytes))?.summarize()?;
    let reader = ArchiveReader::new(BufReader::new(bytes))?;
    archive::import(catalog, reader, &summary, |_| {}).await?;
    Ok(summary)
}

/// Imports only the first `records` records of `bytes` (an archive of `exported`), as one
/// batch that is not the last: what an importer killed after its first batch leaves.
pub async fn import_first(
    catalog: &dyn Catalog,
    bytes: &[u8],
    exported: &Summary,
    records: usize,
) -> ImportProgress {
    let mut reader = ArchiveReader::new(BufReader::new(bytes)).expect("reader");
    let mut first = Vec::with_capacity(records);
    for _ in 0..records {
        first.push(reader.next_record().expect("record").expect("a record"));
    }
    let batch = ImportBatch {
        archive: exported.digest.clone(),
        counters: exported.counters,
        position: 0,
        records: first,
        last: false,
    };
    catalog.import(batch).await.expect("the first batch")
}

/// Fills a project with a pipeline `big` whose log holds `events` events, all but three of them
/// advances of one cursor, so that its history is as long: an archive's bulk.
pub async fn long_history(catalog: &dyn Catalog, events: u64) {
    catalog
        .create_pipeline(spec("big", CursorKind::Monotonic), &operator())
        .await
        .expect("create");
    let lease = catalog
        .acquire(&pid("big"), &holder_id("loader"), Duration::from_secs(3600))
        .await
        .expect("acquire");
    let run = catalog
        .begin_run(&lease, BeginRun::new(Trigger::Manual))
        .await
        .expect("begin");
    for n in 0..events.saturating_sub(3) {
        catalog
            .advance_to(&lease, run.id, &stream("events"), value(json!(n)))
            .await
            .expect("advance");
    }
}

/// Everything a project holds as the port reads it: its archive's records, then each pipeline's
/// status (lease, last run, held decisions) and cursors — what backends derive on import.
pub async fn contents(catalog: &dyn Catalog) -> (Vec<Record>, Vec<PipelineStatus>, Vec<String>) {
    let head = catalog.archive_head().await.expect("archive head");
    let mut records = Vec::new();
    archive::walk(catalog, &head, |record| {
        records.push(record);
        Ok(())
    })
    .await
    .expect("walk");
    let statuses = catalog.all_statuses().await.expect("statuses").items;
    let mut cursors = Vec::new();
    for status in &statuses {
        for cursor in catalog
            .list_cursors(status.pipeline.id())
            .await
            .expect("cursors")
        {
            cursors.push(serde_json::to_string(&cursor).expect("json"));
        }
    }
    (records, statuses, cursors)
}

/// A filled project, exported and imported into an empty one, arrives whole: the same digest,
/// the same records and the same derived state.
pub async fn archive_round_trip_keeps_everything(cx: &Ctx) {
    fill(&**cx, cx.ttl()).await;
    let (bytes, exported) = export_bytes(&**cx).await;
    assert!(
        exported.records > 30 && exported.events > 20,
        "{exported:?}"
    );
    let target = cx.other_project().await;
    let imported = import_bytes(&*target, &bytes).await.expect("import");
    assert_eq!(imported, exported);
    assert_eq!(archive::digest(&*target).await.expect("digest"), exported);
    assert_eq!(contents(&*target).await, contents(&**cx).await);
    let head = target.archive_head().await.expect("head");
    assert_eq!(head.importing, None, "a finished import leaves no marker");
    assert_eq!(head.counters, exported.counters);
}

/// The imported project carries on as its source: a live lease of the source still writes, ids
/// and epochs continue from the source's counters, a fenced lease stays fenced, and the event
/// log continues without a gap.
pub async fn archive_imported_project_carries_on_as_its_source(cx: &Ctx) {
    let running = fill(&**cx, cx.ttl()).await;
    let (bytes, _) = export_bytes(&**cx).await;
    let target = cx.other_project().await;
    import_bytes(&*target, &bytes).await.expect("import");

    for catalog in [&**cx, &*target] {
        let cursor = catalog
            .advance(
                &running.lease,
                running.run.id,
                &stream("orders"),
                CursorAdvance {
                    value: value(json!({"page": 4})),
                    expected_version: Some(1),
                },
            )
            .await
            .expect("the source's lease writes on both");
        assert_eq!(cursor.version, 2);
        let finished = catalog
            .finish_run(&running.lease, running.run.id, FinishRun::succeeded())
            .await
            .expect("finish b");
        assert_eq!(finished.id, running.run.id);
    }

    let mut answers = Vec::new();
    for catalog in [&**cx, &*target] {
        let lease = catalog
            .acquire(&pid("a"), &holder_id("worker-z"), cx.ttl())
            .await
            .expect("acquire a");
        let run = catalog
            .begin_run(&lease, BeginRun::new(Trigger::Manual))
            .await
            .expect("begin a");
        let held = catalog
            .observe_schema(
                &lease,
                run.id,
                &stream("refunds"),
                schema(ColumnType::String),
            )
            .await
            .expect("observe");
        let changed = catalog
            .observe_schema(
                &lease,
                run.id,
                &stream("refunds"),
                schema(ColumnType::Integer),
            )
            .await
            .expect("observe a change")
            .decision
            .expect("a decision");
        let events = catalog.events(0, Limit::MAX).await.expect("events");
        let last = events.last().expect("events").clone();
        answers.push((
            lease.epoch,
            held.current.version,
            changed.id,
            last.seq,
            last.kind,
        ));
    }
    assert_eq!(answers[0], answers[1]);
    assert!(
        answers[0].0.get() > running.lease.epoch.get(),
        "{answers:?}"
    );

    let zombie = Lease {
        pipeline: pid("a"),
        ..running.lease.clone()
    };
    let fenced = target.renew(&zombie, cx.ttl()).await.unwrap_err();
    assert!(matches!(fenced, Error::Fenced { .. }), "{fenced}");
}

/// An archive lands only in an empty project: one with pipelines, or with only the events of a
/// deleted one, refuses it and keeps what it had.
pub async fn archive_import_refuses_a_project_that_is_not_empty(cx: &Ctx) {
    fill(&**cx, cx.ttl()).await;
    let (bytes, _) = export_bytes(&**cx).await;
    let before = contents(&**cx).await;
    let error = import_bytes(&**cx, &bytes).await.unwrap_err();
    assert!(matches!(error, Error::FailedPrecondition(_)), "{error}");
    assert!(error.to_string().contains("empty project"), "{error}");
    assert_eq!(contents(&**cx).await, before);

    let deleted = cx.other_project().await;
    let p = deleted
        .create_pipeline(spec("gone", CursorKind::Monotonic), &operator())
        .await
        .expect("create");
    deleted
        .delete_pipeline(p.id(), p.generation, &operator())
        .await
        .expect("delete");
    let error = import_bytes(&*deleted, &bytes).await.unwrap_err();
    assert!(error.to_string().contains("empty project"), "{error}");
}

/// An interrupted import leaves a marker: importing the same archive again finishes it, another
/// archive is refused, and the half-imported project cannot be exported.
pub async fn archive_interrupted_import_resumes_and_refuses_another_archive(cx: &Ctx) {
    fill(&**cx, cx.ttl()).await;
    let (bytes, exported) = export_bytes(&**cx).await;
    let target = cx.other_project().await;
    let progress = import_first(&*target, &bytes, &exported, 7).await;
    assert_eq!((progress.applied, progress.done), (7, false));
    let head = target.archive_head().await.expect("head");
    assert_eq!(head.importing.map(|m| m.applied), Some(7));

    let error = archive::digest(&*target).await.unwrap_err();
    assert!(error.to_string().contains("being imported"), "{error}");

    let other = cx.other_project().await;
    other
        .create_pipeline(spec("z", CursorKind::Monotonic), &operator())
        .await
        .expect("create");
    let (other_bytes, _) = export_bytes(&*other).await;
    let error = import_bytes(&*target, &other_bytes).await.unwrap_err();
    assert!(error.to_string().contains("another archive"), "{error}");

    let resumed = import_bytes(&*target, &bytes).await.expect("resume");
    assert_eq!(resumed, exported);
    assert_eq!(archive::digest(&*target).await.expect("digest"), exported);
    assert_eq!(contents(&*target).await, contents(&**cx).await);
}

/// A batch with a record whose key is taken, or whose pipeline is missing, is refused whole: the
/// project stays empty and no import is marked.
pub async fn archive_refused_batch_changes_nothing(cx: &Ctx) {
    fill(&**cx, cx.ttl()).await;
    let (bytes, exported) = export_bytes(&**cx).await;
    let mut reader = ArchiveReader::new(BufReader::new(&bytes[..])).expect("reader");
    let first = reader.next_record().expect("record").expect("a pipeline");
    let run = reader.next_record().expect("record").expect("a run");
    let target = cx.other_project().await;
    for records in [vec![first.clone(), first], vec![run]] {
        let batch = ImportBatch {
            archive: exported.digest.clone(),
            counters: exported.counters,
            position: 0,
            records,
            last: false,
        };
        let error = target.import(batch).await.unwrap_err();
        assert!(
            matches!(error, Error::AlreadyExists(_) | Error::NotFound(_)),
            "{error}"
        );
        let head = target.archive_head().await.expect("head");
        assert!(head.empty && head.importing.is_none(), "{head:?}");
        assert_eq!(head.counters, Default::default());
    }
}

/// An archive that lists a cursor version but not the event recording it is refused whole, on
/// its last batch: every backend refuses the archives a backend keeping each version in its event
/// (ADR 0038) cannot hold.
pub async fn archive_version_without_its_event_is_refused(cx: &Ctx) {
    fill(&**cx, cx.ttl()).await;
    let (bytes, exported) = export_bytes(&**cx).await;
    let mut reader = ArchiveReader::new(BufReader::new(&bytes[..])).expect("reader");
    let mut records = Vec::new();
    while let Some(record) = reader.next_record().expect("record") {
        records.push(record);
    }
    // The newest cursor event loses its cursor: it now records that the pipeline resumed.
    let event = records
        .iter_mut()
        .rev()
        .find_map(|r| match r {
            Record::Event { event } if event.kind.cursor_version().is_some() => Some(event),
            _ => None,
        })
        .expect("a cursor event");
    let (stream, version) = event.kind.cursor_version().expect("a cursor");
    let named = format!("version {version} of pipeline {}", event.pipeline);
    let stream = format!("stream {stream}");
    event.kind = EventKind::PipelineResumed;

    let target = cx.other_project().await;
    let batch = ImportBatch {
        archive: exported.digest.clone(),
        counters: exported.counters,
        position: 0,
        records,
        last: true,
    };
    let error = target.import(batch).await.unwrap_err();
    assert!(matches!(error, Error::InvalidArgument(_)), "{error}");
    let message = error.to_string();
    assert!(
        message.contains(&named) && message.contains(&stream),
        "{message}"
    );
    let head = target.archive_head().await.expect("head");
    assert!(head.empty && head.importing.is_none(), "{head:?}");
}

#[doc(hidden)]
#[macro_export]
macro_rules! __contract_archive {
    ($harness:expr) => {
        $crate::__contract_checks!($harness; archive:
            archive_round_trip_keeps_everything,
            archive_imported_project_carries_on_as_its_source,
            archive_import_refuses_a_project_that_is_not_empty,
            archive_interrupted_import_resumes_and_refuses_another_archive,
            archive_refused_batch_changes_nothing,
            archive_version_without_its_event_is_refused,
        );
    };
}
