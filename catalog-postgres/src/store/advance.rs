//! The hot path: a cursor checkpoint in one round trip (ADR 0009).
//!
//! The rule (`hakiri_core::cursor::plan_advance`: expected version, monotonic order, equal
//! values, normalisation) needs the stored cursor. Reading it first would cost a second round
//! trip, and writing the rule in SQL would write it twice. Instead the catalog plans against the
//! cursor it last saw ([`Known`], filled when a run begins and after every write) and sends one
//! statement that
//! 1. share-locks the pipeline's row (an acquisition, release or finish waits for it, and it for
//!    them; a stream's first cursor locks it for update, as it counts the cursor there), then
//!    reads the database clock;
//! 2. writes the planned cursor, its history entry and its event only if the lease's epoch and
//!    holder are current, the lease unexpired by that clock, the run the pipeline's running run,
//!    the cursor kind the planned one, and the stored version the one the plan started from —
//!    the compare-and-set;
//! 3. returns the time it wrote at, or nothing.
//!
//! When nothing was written, or when the cached plan is not a write (an error or a no-op), the
//! state is read (one more statement) and the rules are asked again against it — `check_fence`,
//! `check_writable`, `plan_advance` — so every error comes from `hakiri-core` judging current
//! state, and a stale cache costs two more round trips (the read, and the write again), never a
//! wrong write.

use std::collections::HashMap;
use std::sync::LazyLock;

use hakiri_core::cursor::{plan_advance, AdvancePlan};
use hakiri_core::lease::check_fence;
use hakiri_core::{
    Cursor, CursorAdvance, CursorChange, CursorKind, CursorValue, CursorWrite, Entity, Error,
    Lease, PipelineId, Result, Run, RunId, StreamName, Timestamp, WriteStamp,
};

use super::cursors::CURSOR_COLUMNS;
use super::rows::{kind_text, to_i64, to_json, unstamped, State, StateRow};
use super::{stamped, NOW_MS};
use crate::error::db;
use crate::PostgresCatalog;

/// Attempts before a checkpoint gives up with a (retryable) `Conflict`: only writers sharing one
/// lease and racing on one stream without expected versions can use them up.
const ATTEMPTS: usize = 8;

/// Most pipelines whose cursors one catalog remembers; past it the cache starts over.
const CACHED_PIPELINES: usize = 4096;

/// The cursors of one pipeline as this catalog last saw them.
#[derive(Debug, Clone)]
pub(crate) struct Known {
    pub(crate) kind: CursorKind,
    pub(crate) cursors: HashMap<StreamName, (CursorValue, u64)>,
    /// Whether `cursors` holds every stream of the pipeline (a missing stream has no cursor).
    pub(crate) complete: bool,
    /// The run this catalog began on the pipeline, as it recorded it: a finish rewrites that
    /// record without reading it back (`finish.rs`).
    pub(crate) running: Option<Run>,
}

/// Reads the state ([`StateRow`]) without writing.
///
/// | param | meaning |
/// |---|---|
/// | `$1` | project |
/// | `$2` | pipeline |
/// | `$3` | stream |
static READ_STATE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH p AS MATERIALIZED (SELECT lease_epoch, lease_holder, lease_expires_at, running_run, \
           cursor_kind, {NOW_MS} AS now FROM pipelines WHERE project = $1 AND id = $2) \
         SELECT p.now, p.lease_epoch, p.lease_holder, p.lease_expires_at, p.running_run, \
           p.cursor_kind, {CURSOR_COLUMNS} FROM (VALUES (1)) AS one(x) LEFT JOIN p ON true \
         LEFT JOIN cursors c ON c.project = $1 AND c.pipeline = $2 AND c.stream = $3"
    )
});

/// A guarded checkpoint, around `write`, the common table expression `w` that writes the cursor
/// at `ok.now` and returns its `updated_at` (and any expression after it). `l` locks the
/// pipeline's row (`lock`); `p` adds the database clock — read after the lock, however long it
/// took; `ok` holds the clock when every lease and run condition holds; `e` appends the event of
/// what `w` wrote, which carries its history entry (ADR 0038). Returns `written_at` if it wrote,
/// no row if it did not. The state that refused it is then read by a statement of its own
/// ([`READ_STATE`]): a write has no use for it, and a smaller plan costs the server less to start
/// on every call (ADR 0009's addendum).
///
/// | param | meaning |
/// |---|---|
/// | `$1` | project |
/// | `$2` | pipeline |
/// | `$3` | the lease's epoch (guarded) |
/// | `$4` | the lease's holder (guarded) |
/// | `$5` | the run (guarded: the pipeline's running run) |
/// | `$6` | the cursor kind planned with (guarded) |
/// | `$7` | stream |
/// | `$8` | the new version |
/// | `$9` | the new value, as JSON text |
/// | `$10` | the holder as actor, as JSON text |
/// | `$11` | the history entry without `at`, as JSON text |
/// | `$12` | the event's kind, as JSON text |
fn checkpoint_statement(lock: &str, write: &str) -> String {
    format!(
        "WITH l AS MATERIALIZED (SELECT lease_epoch, lease_holder, lease_expires_at, \
           running_run, cursor_kind FROM pipelines WHERE project = $1 AND id = $2 {lock}), \
         p AS MATERIALIZED (SELECT l.*, {NOW_MS} AS now FROM l), \
         ok AS (SELECT now FROM p WHERE lease_epoch = $3 AND lease_holder = $4 \
           AND lease_expires_at > now AND running_run = $5 AND cursor_kind = $6), \
         {write}, \
         e AS (INSERT INTO events (project, at, actor, pipeline, kind, stream, version, history) \
           SELECT $1, w.updated_at, $10::json, $2, $12::json, $7, $8, {history} FROM w) \
         SELECT updated_at AS written_at FROM w",
        history = stamped("at", "$11", "w.updated_at"),
    )
}

/// The first cursor of a stream ([`checkpoint_statement`]'s parameters): inserted only if none
/// exists (the primary key decides), and counted on the pipeline's row (`cursor_count`, ADR
/// 0014) — so the row is locked for update, not shared.
static WRITE_FIRST: LazyLock<String> = LazyLock::new(|| {
    checkpoint_statement(
        "FOR NO KEY UPDATE",
        "w AS (INSERT INTO cursors (project, pipeline, stream, version, value, run, epoch, \
           updated_by, updated_at) \
           SELECT $1, $2, $7, $8, $9::json, $5, $3, $10::json, ok.now FROM ok \
           ON CONFLICT (project, pipeline, stream) DO NOTHING RETURNING updated_at), \
         n AS (UPDATE pipelines SET cursor_count = cursor_count + 1 FROM w \
           WHERE project = $1 AND id = $2)",
    )
});

/// A later version ([`checkpoint_statement`]'s parameters): written only if the stored version
/// is the one before (`$8 - 1`).
static WRITE_NEXT: LazyLock<String> = LazyLock::new(|| {
    checkpoint_statement(
        "FOR SHARE",
        "w AS (UPDATE cursors SET version = $8, value = $9::json, run = $5, epoch = $3, \
           updated_by = $10::json, updated_at = ok.now FROM ok \
           WHERE project = $1 AND pipeline = $2 AND stream = $7 AND version = $8 - 1 \
           RETURNING updated_at)",
    )
});

impl PostgresCatalog {
    /// Remembers every cursor of a pipeline, read or written in full (a run's begin or finish),
    /// and the run it began, if any.
    pub(crate) fn remember_all(
        &self,
        pipeline: &PipelineId,
        kind: CursorKind,
        cursors: impl IntoIterator<Item = (StreamName, (CursorValue, u64))>,
        running: Option<Run>,
    ) {
        let known = Known {
            kind,
            cursors: cursors.into_iter().collect(),
            complete: true,
            running,
        };
        if let Ok(mut cache) = self.cursors.lock() {
            if cache.len() >= CACHED_PIPELINES && !cache.contains_key(pipeline) {
                cache.clear();
            }
            cache.insert(pipeline.clone(), known);
        }
    }

    fn remember(
        &self,
        pipeline: &PipelineId,
        kind: CursorKind,
        stream: &StreamName,
        cursor: Option<(CursorValue, u64)>,
    ) {
        if let Ok(mut cache) = self.cursors.lock() {
            if cache.len() >= CACHED_PIPELINES && !cache.contains_key(pipeline) {
                cache.clear();
            }
            let known = cache.entry(pipeline.clone()).or_insert_with(|| Known {
                kind,
                cursors: HashMap::new(),
                complete: false,
                running: None,
            });
            if known.kind != kind {
                *known = Known {
                    kind,
                    cursors: HashMap::new(),
                    complete: false,
                    running: None,
                };
            }
            match cursor {
                Some(c) => {
                    known.cursors.insert(stream.clone(), c);
                }
                None => {
                    known.cursors.remove(stream);
                }
            }
        }
    }

    /// What the cache knows of `pipeline`, if it knows every cursor and `run` is the run this
    /// catalog began there.
    pub(crate) fn recall_running(&self, pipeline: &PipelineId, run: RunId) -> Option<Known> {
        let cache = self.cursors.lock().ok()?;
        let known = cache.get(pipeline)?;
        let began_here = known.running.as_ref().is_some_and(|r| r.id == run);
        (known.complete && began_here).then(|| known.clone())
    }

    /// The plan for `advance` against the cached cursor of `stream`, and the kind it used, if the
    /// cache knows them: planned under the cache's lock, so the cursor is not copied out.
    fn plan_from_cache(
        &self,
        lease: &Lease,
        stream: &StreamName,
        advance: &CursorAdvance,
    ) -> Option<(CursorKind, Result<AdvancePlan>)> {
        let cache = self.cursors.lock().ok()?;
        let known = cache.get(&lease.pipeline)?;
        let current = match known.cursors.get(stream) {
            Some((value, version)) => Some((value, *version)),
            None if known.complete => None,
            None => return None,
        };
        let plan = plan_advance(
            known.kind,
            &lease.pipeline,
            stream,
            current,
            advance,
            CursorChange::Checkpoint,
        );
        Some((known.kind, plan))
    }

    async fn read_state(&self, lease: &Lease, stream: &StreamName) -> Result<State> {
        let row: StateRow = sqlx::query_as(READ_STATE.as_str())
            .bind(self.project_str())
            .bind(lease.pipeline.as_str())
            .bind(stream.as_str())
            .fetch_one(self.pool())
            .await
            .map_err(db)?;
        row.state(&lease.pipeline, stream)
    }

    /// Sends the guarded write; `Ok(Ok(cursor))` if it wrote, `Ok(Err(state))` with the state
    /// read after it if it did not.
    async fn write(
        &self,
        lease: &Lease,
        run: RunId,
        kind: CursorKind,
        write: &CursorWrite,
    ) -> Result<std::result::Result<Cursor, State>> {
        // The statement stamps the write with the database clock.
        let mut stamp = WriteStamp::holder(lease, run, Timestamp::EPOCH);
        let sql = if write.version == 1 {
            &WRITE_FIRST
        } else {
            &WRITE_NEXT
        };
        let written_at: Option<i64> = sqlx::query_scalar(sql.as_str())
            .bind(self.project_str())
            .bind(lease.pipeline.as_str())
            .bind(to_i64(lease.epoch.get())?)
            .bind(lease.holder.as_str())
            .bind(*run.as_uuid())
            .bind(kind_text(kind))
            .bind(write.stream.as_str())
            .bind(to_i64(write.version)?)
            .bind(to_json(&write.value)?)
            .bind(to_json(&stamp.by)?)
            .bind(unstamped(&write.history_entry(&stamp))?)
            .bind(to_json(&write.event())?)
            .fetch_optional(self.pool())
            .await
            .map_err(db)?;
        match written_at {
            Some(at) => {
                stamp.at = Timestamp::from_millis(at);
                Ok(Ok(write.cursor(&lease.pipeline, &stamp)))
            }
            None => Ok(Err(self.read_state(lease, &write.stream).await?)),
        }
    }

    /// A cursor checkpoint in one round trip when the cache plans it right
    /// ([`Catalog::advance`](hakiri_core::Catalog::advance)).
    pub(crate) async fn op_advance(
        &self,
        lease: &Lease,
        run: RunId,
        stream: &StreamName,
        advance: &CursorAdvance,
    ) -> Result<Cursor> {
        let mut planned = self.plan_from_cache(lease, stream, advance);
        for _ in 0..ATTEMPTS {
            let state = match planned {
                Some((kind, Ok(AdvancePlan::Write(write)))) => {
                    match self.write(lease, run, kind, &write).await? {
                        Ok(cursor) => {
                            let written = Some((write.value, write.version));
                            self.remember(&lease.pipeline, kind, stream, written);
                            return Ok(cursor);
                        }
                        Err(state) => state,
                    }
                }
                // A refusal or a no-op planned from the cache is only believed once confirmed
                // against the database.
                _ => self.read_state(lease, stream).await?,
            };
            // Judge against what the database holds now.
            if let Err(e) = check_fence(state.lease.as_ref(), lease, state.now) {
                self.forget(&lease.pipeline);
                return Err(e);
            }
            if state.running != Some(run) {
                return Err(self.run_error(lease, run).await);
            }
            let kind = state
                .kind
                .ok_or_else(|| Error::pipeline_not_found(&lease.pipeline))?;
            let current = state.cursor.as_ref().map(|c| (&c.value, c.version));
            match plan_advance(
                kind,
                &lease.pipeline,
                stream,
                current,
                advance,
                CursorChange::Checkpoint,
            )? {
                AdvancePlan::Unchanged => {
                    return state
                        .cursor
                        .ok_or_else(|| Error::Backend("an unchanged cursor must exist".into()))
                }
                // Written on the next attempt, as planned from what the database holds.
                AdvancePlan::Write(write) => {
                    let seen = state.cursor.map(|c| (c.value, c.version));
                    self.remember(&lease.pipeline, kind, stream, seen);
                    planned = Some((kind, Ok(AdvancePlan::Write(write))));
                }
            }
        }
        Err(Error::conflict(
            Entity::Cursor {
                pipeline: lease.pipeline.clone(),
                stream: stream.clone(),
            },
            "a stable version",
            "versions changing under concurrent writers of the same lease",
        ))
    }
}
