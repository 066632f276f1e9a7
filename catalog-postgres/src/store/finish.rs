//! A run's finish in one statement, planned against what this catalog remembers (ADR 0014).
//!
//! The catalog that began a run remembers the run's record and every cursor of its pipeline,
//! and updates them after each checkpoint ([`Known`](super::advance::Known)). A finish that
//! observes no schemas and writes no stream for the first time is planned against that memory
//! — `plan_advance` for each final cursor, the run record rewritten — and sent as one statement
//! that
//! 1. locks the pipeline's row, then every cursor row of the pipeline, then reads the database
//!    clock;
//! 2. writes the cursors, their history, the run, the pipeline's running run and the events only
//!    if the lease's epoch and holder are current, the lease unexpired by that clock, the run the
//!    pipeline's running run, the cursor kind the planned one, and the pipeline's cursors exactly
//!    the remembered streams at the remembered versions;
//! 3. returns the clock if it wrote, NULL if it did not.
//!
//! Every row the guard compares is read by a locking read, which sees the newest committed version
//! even when the statement's snapshot is older, so a guard that passes holds until the commit. A
//! cursor created after the snapshot is not in it, and no lock finds it; but every statement that
//! creates a cursor counts it on the pipeline's row (`cursor_count`), which the guard compares.
//! A finish that writes a stream's first cursor itself takes the transactional path, as does one
//! that writes more than [`NAMED_WRITES`] cursors.
//!
//! Anything else — no memory, a rule refusing, the statement writing nothing — falls back to the
//! transactional finish (`runs.rs`), which judges fresh state, so every error still comes from
//! `hakiri-core` judging what the database holds.

use std::collections::BTreeMap;
use std::sync::{LazyLock, OnceLock};

use hakiri_core::run::plan_finish;
use hakiri_core::{Actor, FinishRun, Lease, Result, Run, RunId, Timestamp};

use super::rows::{kind_text, to_i64, to_json, unstamped, without_field};
use super::{stamped, NOW_MS};
use crate::error::db;
use crate::PostgresCatalog;

/// The most cursor writes a one-statement finish names. A finish writing more streams takes the
/// transactional path, which has no such limit: each write is five parameters of the statement,
/// and each number of writes is a statement of its own on every connection.
const NAMED_WRITES: usize = 64;

/// The guarded finish for each number of cursor writes, made at its first use ([`finish_sql`]).
static FINISH: LazyLock<[OnceLock<String>; NAMED_WRITES + 1]> =
    LazyLock::new(|| std::array::from_fn(|_| OnceLock::new()));

/// The guarded finish of `writes` cursor writes (at most [`NAMED_WRITES`]).
///
/// `l` locks the pipeline's row, `c` every cursor row of the pipeline, and `ok` reads the
/// database clock after those locks and holds it when every guard holds: the locked cursors, in
/// stream order, compared as two arrays with the remembered ones. `w`, `r`, `u` and `e` then write
/// the cursors, the run, the pipeline's running run and the events, the cursor writes' with their
/// history entries (ADR 0038). Returns `finished_at`: the clock if it wrote, NULL if it did not.
///
/// The writes are rows of `VALUES` lists, each value a parameter of its own, as a statement
/// written for a fixed set of streams would name them: the server builds every plan node's state
/// on each call, and a `VALUES` list costs it less than taking arrays apart. Against one statement
/// for any number of writes, taking arrays, the server's execution beyond the fenced floor fell
/// from 0.11–0.12 ms to 0.07–0.10 ms (ADR 0040). Postgres inserts the events in the order of
/// their list: the cursor writes', in stream order, then the run's, as the transactional finish
/// appends them. A test holds it to that.
///
/// | param | meaning |
/// |---|---|
/// | `$1` | project |
/// | `$2` | pipeline |
/// | `$3` | the lease's epoch (guarded) |
/// | `$4` | the lease's holder (guarded) |
/// | `$5` | the run (guarded: the pipeline's running run) |
/// | `$6` | the cursor kind planned with (guarded) |
/// | `$7` | the remembered streams, in order (guarded: exactly the pipeline's cursors…) |
/// | `$8` | …at these versions |
/// | `$9` | the holder as actor, as JSON text |
/// | `$10` | the run's status |
/// | `$11` | its document without `finished_at`, as JSON text: the statement adds the clock's |
/// | `$12` | the run's event's kind, as JSON text |
/// | `$13 + 5i` | cursor write `i`'s stream (`i` from 0) |
/// | `$14 + 5i` | its new version |
/// | `$15 + 5i` | its value, as JSON text |
/// | `$16 + 5i` | its history entry without `at`, as JSON text: the statement adds the clock's |
/// | `$17 + 5i` | its event's kind, as JSON text |
fn finish_sql(writes: usize) -> &'static str {
    FINISH[writes].get_or_init(|| {
        let (mut cursors, mut events) = (Vec::new(), Vec::new());
        for i in 0..writes {
            // Write `i`'s parameters, in the order `finish_from_cache` binds them.
            let stream = 13 + 5 * i;
            let (version, value, entry, kind) = (stream + 1, stream + 2, stream + 3, stream + 4);
            cursors.push(format!(
                "(${stream}::text, ${version}::bigint, ${value}::text)"
            ));
            events.push(format!(
                "(${kind}::text, ${stream}::text, ${version}::bigint, ${entry}::text)"
            ));
        }
        events.push("($12::text, NULL::text, NULL::bigint, NULL::text)".to_owned());
        let w = if cursors.is_empty() {
            String::new()
        } else {
            format!(
                "w AS (UPDATE cursors SET version = t.version, value = t.value::json, run = $5, \
                   epoch = $3, updated_by = $9::json, updated_at = ok.now \
                   FROM ok, (VALUES {}) AS t(stream, version, value) \
                   WHERE cursors.project = $1 AND cursors.pipeline = $2 \
                   AND cursors.stream = t.stream), ",
                cursors.join(", ")
            )
        };
        format!(
            "WITH l AS MATERIALIZED (SELECT id, lease_epoch, lease_holder, lease_expires_at, \
               running_run, cursor_kind, cursor_count FROM pipelines \
               WHERE project = $1 AND id = $2 FOR UPDATE), \
             c AS MATERIALIZED (SELECT stream, version FROM cursors \
               WHERE project = $1 AND pipeline = (SELECT id FROM l) FOR UPDATE), \
             ok AS MATERIALIZED (SELECT now FROM (SELECT l.*, k.streams, k.versions, {NOW_MS} AS now \
                 FROM l, (SELECT coalesce(array_agg(stream ORDER BY stream), '{{}}') AS streams, \
                   coalesce(array_agg(version ORDER BY stream), '{{}}') AS versions FROM c) AS k \
                 OFFSET 0) AS p \
               WHERE lease_epoch = $3 AND lease_holder = $4 \
               AND lease_expires_at > now AND running_run = $5 AND cursor_kind = $6 \
               AND cursor_count = cardinality($7::text[]) \
               AND streams = $7::text[] AND versions = $8::bigint[]), \
             {w}\
             r AS (UPDATE runs SET status = $10, body = {run} \
               FROM ok WHERE runs.project = $1 AND runs.id = $5), \
             u AS (UPDATE pipelines SET running_run = NULL FROM ok \
               WHERE pipelines.project = $1 AND pipelines.id = $2), \
             e AS (INSERT INTO events (project, at, actor, pipeline, kind, stream, version, history) \
               SELECT $1, ok.now, $9::json, $2, t.kind::json, t.stream, t.version, {history} \
               FROM ok, (VALUES {events}) AS t(kind, stream, version, entry)) \
             SELECT (SELECT now FROM ok) AS finished_at",
            run = stamped("finished_at", "$11", "ok.now"),
            history = stamped("at", "t.entry", "ok.now"),
            events = events.join(", "),
        )
    })
}

impl PostgresCatalog {
    /// The finish in one statement, from this catalog's memory of the run and its cursors.
    /// `None` when the memory cannot plan it or the database disagreed (then nothing is written).
    pub(crate) async fn finish_from_cache(
        &self,
        lease: &Lease,
        run: RunId,
        finish: &FinishRun,
    ) -> Result<Option<Run>> {
        if !finish.schemas.is_empty() {
            return Ok(None);
        }
        let Some(known) = self.recall_running(&lease.pipeline, run) else {
            return Ok(None);
        };
        let Some(record) = known.running else {
            return Ok(None);
        };
        let mut cursors = known.cursors;
        if finish
            .cursors
            .keys()
            .any(|stream| !cursors.contains_key(stream))
        {
            // A stream's first cursor: the transactional path counts it.
            return Ok(None);
        }

        // The statement writes the database clock's time in place of this one.
        let provisional = record.started_at;
        let current: BTreeMap<_, _> = cursors.clone().into_iter().collect();
        // What the guard compares: the pipeline's cursors as remembered, in stream order (the
        // server's `C` collation orders text by its bytes, as `StreamName` does).
        let (mut streams, mut versions) = (Vec::new(), Vec::new());
        for (stream, (_, version)) in &current {
            streams.push(stream.as_str().to_owned());
            versions.push(to_i64(*version)?);
        }
        let plan = plan_finish(
            record,
            lease,
            known.kind,
            &current,
            finish.clone(),
            provisional,
        );
        // A refusal is only believed once judged against the database.
        let Ok(write) = plan else {
            return Ok(None);
        };
        if write.cursors.len() > NAMED_WRITES {
            return Ok(None);
        }
        for w in &write.cursors {
            cursors.insert(w.stream.clone(), (w.value.clone(), w.version));
        }
        let (writes, mut record) = (write.cursors, write.run);
        let document = without_field(&record, "finished_at")?;
        let mut query = sqlx::query_scalar(finish_sql(writes.len()))
            .bind(self.project_str())
            .bind(lease.pipeline.as_str())
            .bind(to_i64(lease.epoch.get())?)
            .bind(lease.holder.as_str())
            .bind(*run.as_uuid())
            .bind(kind_text(known.kind))
            .bind(streams)
            .bind(versions)
            .bind(to_json(&Actor::Holder(lease.holder.clone()))?)
            .bind(record.status.to_string())
            .bind(document)
            .bind(to_json(&write.event.1)?);
        for w in &writes {
            query = query
                .bind(w.stream.as_str().to_owned())
                .bind(to_i64(w.version)?)
                .bind(to_json(&w.value)?)
                .bind(unstamped(&w.history_entry(&write.stamp))?)
                .bind(to_json(&w.event())?);
        }
        let finished_at: Option<i64> = query.fetch_one(self.pool()).await.map_err(db)?;
        let Some(at) = finished_at else {
            // The lease, the run or the cursors are not what this catalog remembered.
            self.forget(&lease.pipeline);
            return Ok(None);
        };
        record.finished_at = Some(Timestamp::from_millis(at));
        self.remember_all(&lease.pipeline, known.kind, cursors, None);
        Ok(Some(record))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hakiri_core::{
        Epoch, Error, HolderId, PipelineId, RunError, RunStatus, StreamName, StreamStats, Trigger,
    };
    use serde_json::json;

    /// A run whose stats and cursors use `finished_at` as a stream name, with a value that looks
    /// like a time: only the top-level field may be taken out.
    fn run() -> Run {
        let stream = StreamName::new("finished_at").unwrap();
        let value = hakiri_core::CursorValue::new(json!(1_763_800_000_000_i64)).unwrap();
        Run {
            id: RunId::from_parts(Timestamp::from_millis(1_763_800_000_000), [1; 10]),
            pipeline: PipelineId::new("p").unwrap(),
            epoch: Epoch(3),
            holder: HolderId::new("h").unwrap(),
            trigger: Trigger::Manual,
            attempt: 1,
            status: RunStatus::Failed,
            started_at: Timestamp::from_millis(1_763_800_000_000),
            finished_at: None,
            stats: [(stream.clone(), StreamStats::new(1, 2))].into(),
            error: Some(RunError::new("\"finished_at\":1,\u{0}", true)),
            cursors_at_start: [(stream.clone(), value.clone())].into(),
            cursors_at_end: [(stream, value)].into(),
        }
    }

    #[test]
    fn the_body_completed_with_a_time_in_front_reads_back_as_the_run() {
        let run = run();
        let sent = without_field(&run, "finished_at").unwrap();
        assert!(!sent.contains("\"finished_at\":null"), "{sent}");
        // What the statement does (the server side is checked by
        // `a_remembered_run_finishes_in_one_statement_exactly_as_stored`): the time first, then
        // the text sent after its opening brace.
        let at = Timestamp::from_millis(1_763_800_000_123);
        let stored = format!(
            "{{\"finished_at\":\"2025-11-22T08:26:40.123Z\",{}",
            &sent[1..]
        );
        let read: Run = serde_json::from_str(&stored).unwrap();
        let mut expected = run;
        expected.finished_at = Some(at);
        assert_eq!(read, expected);
    }

    /// Behaviour against a real server (see `hakiri_test_kit::postgres` for where it comes from):
    /// the one-statement finish is taken when it can be, writes what the transactional one would,
    /// and writes nothing when the database disagrees with the memory.
    mod on_a_server {
        use std::sync::Arc;
        use std::time::Duration;

        use hakiri_core::{
            BeginRun, Catalog, CatalogExt, CursorChange, CursorKind, CursorValue, EventKind,
            HolderId, Limit, Outcome, PipelineId, ProjectId, Reason, RunStatus, StreamName,
        };

        use super::*;
        use hakiri_test_kit::{fixtures, postgres};

        const TTL: Duration = Duration::from_secs(60);

        /// Two catalogs of a fresh project (two processes, say), a pipeline of it, and a run that
        /// the first catalog began under a lease both may use.
        async fn setup(
            name: &str,
        ) -> (
            Arc<PostgresCatalog>,
            Arc<PostgresCatalog>,
            PipelineId,
            Lease,
            Run,
        ) {
            let url = postgres::shared().url();
            let pool = crate::PostgresConfig::default()
                .max_connections(6)
                .connect(url)
                .await
                .unwrap_or_else(|e| panic!("connect to {url}: {e}. {}", postgres::HOW_TO_GET_ONE));
            let project =
                ProjectId::new(format!("finish-{name}-{}", uuid::Uuid::new_v4())).unwrap();
            let a = Arc::new(PostgresCatalog::new(pool.clone(), project.clone()));
            let b = Arc::new(PostgresCatalog::new(pool, project));
            let spec = fixtures::spec("p", CursorKind::Monotonic);
            let (lease, run) = fixtures::begun(a.as_ref(), spec, "h", TTL).await;
            (a, b, lease.pipeline.clone(), lease, run)
        }

        /// Asserts that the one-statement finish declines `finish` and changes nothing.
        async fn declines(a: &PostgresCatalog, lease: &Lease, run: RunId, finish: &FinishRun) {
            let before = (
                a.get_run(run).await.unwrap(),
                a.list_cursors(&lease.pipeline).await.unwrap(),
            );
            assert!(a
                .finish_from_cache(lease, run, finish)
                .await
                .unwrap()
                .is_none());
            let after = (
                a.get_run(run).await.unwrap(),
                a.list_cursors(&lease.pipeline).await.unwrap(),
            );
            assert_eq!(before, after);
        }

        fn value(n: u64) -> CursorValue {
            CursorValue::new(json!(n)).unwrap()
        }

        fn s() -> StreamName {
            StreamName::new("s").unwrap()
        }

        #[tokio::test]
        async fn a_remembered_run_finishes_in_one_statement_exactly_as_stored() {
            let (a, _, pipeline, lease, run) = setup("stored").await;
            a.advance_to(&lease, run.id, &s(), value(1)).await.unwrap();
            a.advance_to(&lease, run.id, &s(), value(2)).await.unwrap();
            let finish = FinishRun::new(Outcome::Failed {
                error: RunError::new(
                    "quote \" backslash \\ nul \u{0} and ü — \"finished_at\":1",
                    true,
                ),
            })
            .with_cursor(s(), value(5))
            .with_stats(s(), StreamStats::new(3, 30));

            let done = a
                .finish_from_cache(&lease, run.id, &finish)
                .await
                .unwrap()
                .expect("a run this catalog began, with known cursors, finishes in one statement");

            assert_eq!(done.status, RunStatus::Failed);
            assert!(done.finished_at.is_some_and(|at| at >= run.started_at));
            assert_eq!(done.cursors_at_end, [(s(), value(5))].into());
            assert_eq!(a.get_run(run.id).await.unwrap(), done);
            let cursor = a.get_cursor(&pipeline, &s()).await.unwrap().unwrap();
            assert_eq!((cursor.value, cursor.version), (value(5), 3));
            let history = a
                .cursor_history(&pipeline, &s(), None, Limit::DEFAULT)
                .await
                .unwrap();
            let newest = &history.items[0];
            assert_eq!((newest.version, &newest.change), (3, &CursorChange::Finish));
            assert_eq!(newest.at, done.finished_at.unwrap());
            let events = a.events(0, Limit::DEFAULT).await.unwrap();
            let kinds: Vec<_> = events
                .iter()
                .rev()
                .take(2)
                .map(|e| e.kind.clone())
                .collect();
            assert_eq!(
                kinds,
                [
                    EventKind::RunFinished {
                        run: run.id,
                        status: RunStatus::Failed
                    },
                    EventKind::CursorAdvanced {
                        stream: s(),
                        version: 3
                    },
                ]
            );
            // The pipeline is free for the next run.
            a.begin_run(&lease, BeginRun::new(Trigger::Manual))
                .await
                .unwrap();
        }

        #[tokio::test]
        async fn a_run_over_many_streams_finishes_in_one_statement_whatever_their_order() {
            // The catalog remembers a pipeline's cursors in a hash map: the guard must not depend
            // on the order they come out in, or most multi-stream finishes would fall back.
            let (a, _, pipeline, lease, run) = setup("streams").await;
            // Names whose byte order differs from a dictionary's: the guard compares them in the
            // order of the cursors' `C` collation.
            let streams: Vec<StreamName> = [
                "orders", "Orders", "Käufe", "kaufe", "éclair", "zebra", "Zebra", "_x",
            ]
            .into_iter()
            .map(|name| StreamName::new(name).unwrap())
            .collect();
            for (i, stream) in streams.iter().enumerate() {
                a.advance_to(&lease, run.id, stream, value(i as u64))
                    .await
                    .unwrap();
            }
            let finish = streams
                .iter()
                .fold(FinishRun::new(Outcome::Succeeded), |finish, stream| {
                    finish.with_cursor(stream.clone(), value(100))
                });

            let done = a
                .finish_from_cache(&lease, run.id, &finish)
                .await
                .unwrap()
                .expect("eight remembered streams finish in one statement");

            assert_eq!(done.status, RunStatus::Succeeded);
            assert_eq!(done.cursors_at_end.len(), streams.len());
            for stream in &streams {
                let cursor = a.get_cursor(&pipeline, stream).await.unwrap().unwrap();
                assert_eq!((cursor.value, cursor.version), (value(100), 2));
            }
            // The events in the transactional finish's order: the cursor writes', in stream order,
            // then the run's.
            let mut sorted = streams.clone();
            sorted.sort();
            let mut expected: Vec<EventKind> = sorted
                .into_iter()
                .map(|stream| EventKind::CursorAdvanced { stream, version: 2 })
                .collect();
            expected.push(EventKind::RunFinished {
                run: run.id,
                status: RunStatus::Succeeded,
            });
            let events = a.events(0, Limit::DEFAULT).await.unwrap();
            let newest: Vec<_> = events[events.len() - expected.len()..]
                .iter()
                .map(|e| e.kind.clone())
                .collect();
            assert_eq!(newest, expected);
        }

        #[tokio::test]
        async fn a_finish_writing_no_cursor_is_one_statement_too() {
            let (a, _, _, lease, run) = setup("none").await;
            a.advance_to(&lease, run.id, &s(), value(1)).await.unwrap();

            let done = a
                .finish_from_cache(&lease, run.id, &FinishRun::succeeded())
                .await
                .unwrap()
                .expect("a finish without final cursors needs no cursor write");

            assert_eq!(done.cursors_at_end, [(s(), value(1))].into());
            assert_eq!(a.get_run(run.id).await.unwrap(), done);
        }

        #[tokio::test]
        async fn more_streams_than_one_statement_names_are_left_to_the_transactional_finish() {
            let (a, _, pipeline, lease, run) = setup("wide").await;
            let streams: Vec<StreamName> = (0..=NAMED_WRITES)
                .map(|i| StreamName::new(format!("s{i:03}")).unwrap())
                .collect();
            for stream in &streams {
                a.advance_to(&lease, run.id, stream, value(1))
                    .await
                    .unwrap();
            }
            let finish = streams
                .iter()
                .fold(FinishRun::succeeded(), |finish, stream| {
                    finish.with_cursor(stream.clone(), value(2))
                });

            declines(&a, &lease, run.id, &finish).await;
            let done = a.finish_run(&lease, run.id, finish).await.unwrap();
            assert_eq!(done.cursors_at_end.len(), NAMED_WRITES + 1);
            for stream in &streams {
                let cursor = a.get_cursor(&pipeline, stream).await.unwrap().unwrap();
                assert_eq!(cursor.value, value(2));
            }
        }

        #[tokio::test]
        async fn cursors_moved_elsewhere_make_it_write_nothing_and_the_finish_still_lands() {
            let (a, b, pipeline, lease, run) = setup("stale").await;
            a.advance_to(&lease, run.id, &s(), value(1)).await.unwrap();
            // Another catalog sharing the lease moves the cursor: `a`'s memory is stale.
            b.advance_to(&lease, run.id, &s(), value(4)).await.unwrap();
            let finish = FinishRun::succeeded().with_cursor(s(), value(6));

            declines(&a, &lease, run.id, &finish).await;
            let cursor = a.get_cursor(&pipeline, &s()).await.unwrap().unwrap();
            assert_eq!((cursor.value, cursor.version), (value(4), 2));

            let done = a.finish_run(&lease, run.id, finish).await.unwrap();
            assert_eq!(done.status, RunStatus::Succeeded);
            let cursor = a.get_cursor(&pipeline, &s()).await.unwrap().unwrap();
            assert_eq!((cursor.value, cursor.version), (value(6), 3));
        }

        #[tokio::test]
        async fn a_fenced_lease_makes_it_write_nothing_and_the_finish_is_refused() {
            let (a, b, pipeline, lease, run) = setup("fenced").await;
            a.advance_to(&lease, run.id, &s(), value(1)).await.unwrap();
            b.force_acquire(
                &pipeline,
                &HolderId::new("other").unwrap(),
                TTL,
                &Actor::System,
                &Reason::new("take over").unwrap(),
            )
            .await
            .unwrap();
            let finish = FinishRun::succeeded().with_cursor(s(), value(2));

            declines(&a, &lease, run.id, &finish).await;
            let error = a.finish_run(&lease, run.id, finish).await.unwrap_err();
            assert!(matches!(error, Error::Fenced { .. }), "{error:?}");
            assert_eq!(
                a.get_run(run.id).await.unwrap().status,
                RunStatus::Abandoned
            );
            assert_eq!(
                a.get_cursor(&pipeline, &s()).await.unwrap().unwrap().value,
                value(1)
            );
        }

        #[tokio::test]
        async fn a_stream_begun_elsewhere_is_in_the_finished_run() {
            let (a, b, _, lease, run) = setup("stream").await;
            a.advance_to(&lease, run.id, &s(), value(1)).await.unwrap();
            let t = StreamName::new("t").unwrap();
            b.advance_to(&lease, run.id, &t, value(7)).await.unwrap();
            let finish = FinishRun::succeeded().with_cursor(s(), value(2));

            declines(&a, &lease, run.id, &finish).await;
            let done = a.finish_run(&lease, run.id, finish).await.unwrap();
            assert_eq!(done.cursors_at_end, [(s(), value(2)), (t, value(7))].into());
            assert_eq!(a.get_run(run.id).await.unwrap(), done);
        }

        /// Waits until a statement containing `sql` waits for a lock.
        async fn waiting_for_a_lock(a: &PostgresCatalog, sql: &str) {
            for _ in 0..200 {
                let waiting: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM pg_stat_activity \
                     WHERE wait_event_type = 'Lock' AND strpos(query, $1) > 0",
                )
                .bind(sql)
                .fetch_one(a.pool())
                .await
                .unwrap();
                if waiting > 0 {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            panic!("no statement containing {sql:?} waited for a lock within 10 s");
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_cursor_created_while_the_finish_waits_is_in_the_finished_run() {
            let (a, b, pipeline, lease, run) = setup("created").await;
            a.advance_to(&lease, run.id, &s(), value(1)).await.unwrap();
            // Hold the pipeline's row, as an operator's transaction might, so that what follows
            // queues behind it in order: another catalog creating stream `t`, then the finish —
            // whose statement takes its snapshot before `t` exists.
            let mut holder = a.pool().begin().await.unwrap();
            sqlx::query("SELECT 1 FROM pipelines WHERE project = $1 AND id = $2 FOR UPDATE")
                .bind(a.project.as_str())
                .bind(pipeline.as_str())
                .execute(&mut *holder)
                .await
                .unwrap();
            let t = StreamName::new("t").unwrap();
            let creating = tokio::spawn({
                let (b, lease, t) = (b.clone(), lease.clone(), t.clone());
                async move { b.advance_to(&lease, run.id, &t, value(7)).await }
            });
            waiting_for_a_lock(&a, "DO NOTHING RETURNING updated_at").await;
            let finishing = tokio::spawn({
                let (a, lease) = (a.clone(), lease.clone());
                let finish = FinishRun::succeeded().with_cursor(s(), value(2));
                async move { a.finish_run(&lease, run.id, finish).await }
            });
            waiting_for_a_lock(&a, "cursor_kind, cursor_count FROM pipelines").await;
            holder.commit().await.unwrap();

            creating.await.unwrap().unwrap();
            let done = finishing.await.unwrap().unwrap();
            assert_eq!(done.cursors_at_end, [(s(), value(2)), (t, value(7))].into());
            assert_eq!(a.get_run(run.id).await.unwrap(), done);
        }

        #[tokio::test]
        async fn a_run_finished_elsewhere_is_not_finished_again() {
            let (a, b, _, lease, first) = setup("twice").await;
            // Another catalog sharing the lease finishes that run and begins the next one.
            b.finish_run(&lease, first.id, FinishRun::succeeded())
                .await
                .unwrap();
            let next = b
                .begin_run(&lease, BeginRun::new(Trigger::Manual))
                .await
                .unwrap();
            let cancel = FinishRun::new(Outcome::Cancelled {
                reason: Reason::new("stop").unwrap(),
            });

            declines(&a, &lease, first.id, &cancel).await;
            assert!(a.finish_run(&lease, first.id, cancel).await.is_err());
            assert_eq!(
                a.get_run(first.id).await.unwrap().status,
                RunStatus::Succeeded
            );
            assert_eq!(a.get_run(next.id).await.unwrap().status, RunStatus::Running);
            let error = a
                .begin_run(&lease, BeginRun::new(Trigger::Manual))
                .await
                .unwrap_err();
            assert!(matches!(error, Error::FailedPrecondition(_)), "{error:?}");
        }

        #[tokio::test]
        async fn an_expired_lease_makes_it_write_nothing_and_the_finish_is_refused() {
            let (a, ..) = setup("expired").await;
            // A second pipeline, under a lease that expires while its run is running.
            let spec = fixtures::spec("q", CursorKind::Monotonic);
            let (lease, run) =
                fixtures::begun(a.as_ref(), spec, "h", Duration::from_millis(800)).await;
            a.advance_to(&lease, run.id, &s(), value(1)).await.unwrap();
            tokio::time::sleep(Duration::from_millis(1000)).await;
            let finish = FinishRun::succeeded().with_cursor(s(), value(2));

            declines(&a, &lease, run.id, &finish).await;
            let error = a.finish_run(&lease, run.id, finish).await.unwrap_err();
            assert!(matches!(error, Error::Fenced { .. }), "{error:?}");
        }

        #[tokio::test]
        async fn a_first_cursor_or_a_refusal_is_left_to_the_transactional_finish() {
            let (a, _, pipeline, lease, run) = setup("first").await;
            a.advance_to(&lease, run.id, &s(), value(5)).await.unwrap();
            let first = FinishRun::succeeded().with_cursor(StreamName::new("t").unwrap(), value(1));
            let regress = FinishRun::succeeded().with_cursor(s(), value(4));

            declines(&a, &lease, run.id, &first).await;
            declines(&a, &lease, run.id, &regress).await;
            let error = a.finish_run(&lease, run.id, regress).await.unwrap_err();
            assert!(matches!(error, Error::CursorRegression { .. }), "{error:?}");
            let done = a.finish_run(&lease, run.id, first).await.unwrap();
            assert_eq!(done.cursors_at_end.len(), 2);
            assert_eq!(a.list_cursors(&pipeline).await.unwrap().len(), 2);
        }
    }
}
