//! Row models: what each read returns, as `sqlx::FromRow` structs whose JSON columns decode
//! through `#[sqlx(json)]`, and the conversions between the catalog's types and its columns.
//!
//! Reads decode documents straight from `json` columns. Writes bind them as JSON *text* cast in the
//! statement (`$n::json`), not as `sqlx::types::Json`, which sqlx sends as `jsonb`: `jsonb`
//! refuses `\u0000` inside strings, which a run's error message may hold.
//!
//! A cursor's value may be JSON `null` (the initial value), so it decodes as
//! `Option<Json<CursorValue>>`, where only SQL NULL is `None` — never through
//! `#[sqlx(json(nullable))]`, which reads a JSON `null` as `None` too.

use std::collections::BTreeMap;

use hakiri_core::{
    Actor, Cursor, CursorHistoryEntry, CursorKind, CursorValue, Epoch, Error, HolderId, LeaseState,
    Pipeline, PipelineId, Result, Run, RunId, StreamName, Timestamp,
};
use serde::Serialize;
use sqlx::types::Json;
use sqlx::FromRow;
use uuid::Uuid;

use crate::error::corrupt;

/// Encodes `value` as the JSON text a statement binds for a `json` column.
pub(crate) fn to_json<T: Serialize + ?Sized>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| Error::Backend(format!("cannot encode JSON: {e}")))
}

/// Epochs, versions and sequence numbers are kept below 2^53, so they fit a `bigint`.
pub(crate) fn to_i64(n: u64) -> Result<i64> {
    i64::try_from(n).map_err(|_| Error::invalid(format!("{n} is out of range")))
}

/// A stored `bigint` that must not be negative (`what` names it in the error).
pub(crate) fn to_u64(n: i64, what: &str) -> Result<u64> {
    u64::try_from(n).map_err(|_| corrupt(what, format!("negative value {n}")))
}

/// A stored epoch.
fn to_epoch(n: Option<i64>) -> Result<Option<Epoch>> {
    n.map(|e| to_u64(e, "epoch").map(Epoch)).transpose()
}

/// The `cursor_kind` column's text for `kind`.
pub(crate) fn kind_text(kind: CursorKind) -> &'static str {
    match kind {
        CursorKind::Monotonic => "monotonic",
        CursorKind::Opaque => "opaque",
    }
}

/// The cursor kind a `cursor_kind` column holds.
pub(crate) fn kind_from(text: &str) -> Result<CursorKind> {
    match text {
        "monotonic" => Ok(CursorKind::Monotonic),
        "opaque" => Ok(CursorKind::Opaque),
        other => Err(corrupt("cursor kind", other)),
    }
}

/// The lease columns of a pipeline's row; all NULL for a pipeline never leased (or no pipeline).
#[derive(Debug, FromRow)]
pub(crate) struct LeaseColumns {
    lease_epoch: Option<i64>,
    lease_holder: Option<String>,
    lease_expires_at: Option<i64>,
}

impl LeaseColumns {
    /// The lease they record, if the pipeline was ever leased.
    pub(crate) fn state(self) -> Result<Option<LeaseState>> {
        let Some(epoch) = self.lease_epoch else {
            return Ok(None);
        };
        Ok(Some(LeaseState {
            epoch: Epoch(to_u64(epoch, "lease epoch")?),
            holder: self.lease_holder.map(HolderId::new).transpose()?,
            expires_at: Timestamp::from_millis(self.lease_expires_at.unwrap_or(0)),
        }))
    }
}

/// A pipeline's row, decoded: its document and the hot columns the statements guard on.
pub(crate) struct PipelineRow {
    pub(crate) pipeline: Pipeline,
    pub(crate) kind: CursorKind,
    pub(crate) lease: Option<LeaseState>,
    pub(crate) running: Option<RunId>,
    pub(crate) last_run: Option<RunId>,
    /// How many cursors the pipeline has (ADR 0014: a finish compares it with those it read).
    pub(crate) cursor_count: i32,
}

/// The database clock beside a pipeline's row, as a locking read returns them
/// ([`LOCK_PIPELINE`](super::LOCK_PIPELINE)): every column but `now` is NULL when there is no
/// such pipeline.
#[derive(FromRow)]
pub(crate) struct LockedRow {
    /// The database clock, read after the lock was granted.
    pub(crate) now: i64,
    #[sqlx(json(nullable))]
    body: Option<Pipeline>,
    cursor_kind: Option<String>,
    #[sqlx(flatten)]
    lease: LeaseColumns,
    running_run: Option<Uuid>,
    last_run: Option<Uuid>,
    cursor_count: Option<i32>,
}

impl LockedRow {
    /// The clock's time.
    pub(crate) fn now(&self) -> Timestamp {
        Timestamp::from_millis(self.now)
    }

    /// The pipeline's row, if there is such a pipeline.
    pub(crate) fn pipeline(self) -> Result<Option<PipelineRow>> {
        let Some(pipeline) = self.body else {
            return Ok(None);
        };
        Ok(Some(PipelineRow {
            pipeline,
            kind: kind_from(self.cursor_kind.as_deref().unwrap_or_default())?,
            lease: self.lease.state()?,
            running: self.running_run.map(RunId::from_uuid),
            last_run: self.last_run.map(RunId::from_uuid),
            cursor_count: self.cursor_count.unwrap_or(0),
        }))
    }
}

/// A pipeline's cursors as `(stream, version, value)`, as `json_agg` returns them
/// ([`CURSORS_OF_PIPELINE`](super::runs::CURSORS_OF_PIPELINE)); NULL when it has none.
pub(crate) type CursorTriples = Vec<(StreamName, u64, CursorValue)>;

/// The values of `cursors`, by stream.
pub(crate) fn values(cursors: &CursorTriples) -> BTreeMap<StreamName, CursorValue> {
    cursors
        .iter()
        .map(|(s, _, v)| (s.clone(), v.clone()))
        .collect()
}

/// A cursor's columns, all NULL when the stream has none (the statements join them with `LEFT
/// JOIN cursors c`).
#[derive(Debug, FromRow)]
pub(crate) struct CursorColumns {
    version: Option<i64>,
    value: Option<Json<CursorValue>>,
    run: Option<Uuid>,
    epoch: Option<i64>,
    #[sqlx(json(nullable))]
    updated_by: Option<Actor>,
    updated_at: Option<i64>,
}

impl CursorColumns {
    /// The cursor of `stream` of `pipeline`, if there is one.
    pub(crate) fn cursor(
        self,
        pipeline: &PipelineId,
        stream: &StreamName,
    ) -> Result<Option<Cursor>> {
        let (Some(version), Some(value), Some(updated_by)) =
            (self.version, self.value, self.updated_by)
        else {
            return Ok(None);
        };
        Ok(Some(Cursor {
            pipeline: pipeline.clone(),
            stream: stream.clone(),
            value: value.0,
            version: to_u64(version, "cursor version")?,
            run: self.run.map(RunId::from_uuid),
            epoch: to_epoch(self.epoch)?,
            updated_by,
            updated_at: Timestamp::from_millis(self.updated_at.unwrap_or(0)),
        }))
    }
}

/// One row of `list_cursors`: a stream and its cursor; all NULL for a pipeline without cursors.
#[derive(FromRow)]
pub(crate) struct StreamCursorRow {
    pub(crate) stream: Option<String>,
    #[sqlx(flatten)]
    pub(crate) cursor: CursorColumns,
}

/// The pipeline's existence beside one of its cursors (`get_cursor`).
#[derive(FromRow)]
pub(crate) struct FoundCursorRow {
    /// Whether the pipeline exists.
    pub(crate) found: bool,
    #[sqlx(flatten)]
    pub(crate) cursor: CursorColumns,
}

/// One entry of a cursor's history, as its event keeps it (ADR 0038); NULL on the row that says
/// the pipeline exists but has no entry in the page
/// ([`CURSOR_HISTORY_PAGE`](super::cursors::CURSOR_HISTORY_PAGE)).
#[derive(FromRow)]
pub(crate) struct HistoryRow {
    #[sqlx(json(nullable))]
    history: Option<CursorHistoryEntry>,
}

impl HistoryRow {
    /// The entry, if the row holds one.
    pub(crate) fn entry(self) -> Option<CursorHistoryEntry> {
        self.history
    }
}

/// The JSON text of `value`, an object, without its top-level `field`, which a statement puts
/// back from the database clock ([`stamped`](super::stamped)). Every document stamped so has
/// other fields, so the text is never `{}`.
pub(crate) fn without_field<T: Serialize + ?Sized>(value: &T, field: &str) -> Result<String> {
    let encoded = serde_json::to_value(value)
        .map_err(|e| Error::Backend(format!("cannot encode JSON: {e}")))?;
    let serde_json::Value::Object(mut fields) = encoded else {
        return Err(Error::Backend(format!(
            "a document stamped with `{field}` must encode as a JSON object"
        )));
    };
    fields.remove(field);
    to_json(&fields)
}

/// A cursor history entry as JSON text without its `at`, which the statement stamps from the
/// database clock ([`stamped`](super::stamped)). `at` is the entry's last member, so this is the
/// entry's own encoding cut before it: a checkpoint, on its hot path, builds no intermediate
/// document, as [`without_field`] does.
pub(crate) fn unstamped(entry: &CursorHistoryEntry) -> Result<String> {
    let mut text = to_json(entry)?;
    // A quote inside a string is escaped, so `,"at":"` only begins a member; members named `at`
    // of the value or the actor come before the entry's own, which is last.
    let cut = text.rfind(",\"at\":\"").ok_or_else(|| {
        Error::Backend("a cursor history entry must encode with `at` as its last member".into())
    })?;
    text.truncate(cut);
    text.push('}');
    Ok(text)
}

/// What a reset reads: the stream's cursor, and the value of the version it goes back to.
#[derive(FromRow)]
pub(crate) struct ResetRow {
    version: Option<i64>,
    value: Option<Json<CursorValue>>,
    /// The target version's history entry, if the reset names one that exists.
    #[sqlx(json(nullable))]
    old: Option<CursorHistoryEntry>,
}

impl ResetRow {
    /// The stream's current value and version, if it has a cursor.
    pub(crate) fn current(&self) -> Result<Option<(CursorValue, u64)>> {
        match (self.version, &self.value) {
            (Some(version), Some(value)) => {
                Ok(Some((value.0.clone(), to_u64(version, "cursor version")?)))
            }
            _ => Ok(None),
        }
    }

    /// The value the target version had, if the reset names one that exists.
    pub(crate) fn old_value(&self) -> Option<&CursorValue> {
        self.old.as_ref().map(|entry| &entry.value)
    }
}

/// What the transactional finish reads in one statement: the lock, the run's record and the
/// pipeline's cursors ([`READ_FOR_FINISH`](super::runs::READ_FOR_FINISH)).
#[derive(FromRow)]
pub(crate) struct FinishReadRow {
    #[sqlx(flatten)]
    pub(crate) locked: LockedRow,
    #[sqlx(json(nullable))]
    pub(crate) run_body: Option<Run>,
    #[sqlx(json(nullable))]
    pub(crate) cursors: Option<CursorTriples>,
}

/// One row of the reconciler snapshot; all NULL but `now` when the page is empty
/// ([`STATUS_PAGE`](super::events::STATUS_PAGE)).
#[derive(FromRow)]
pub(crate) struct StatusRow {
    pub(crate) now: i64,
    #[sqlx(json(nullable))]
    pub(crate) body: Option<Pipeline>,
    #[sqlx(flatten)]
    pub(crate) lease: LeaseColumns,
    #[sqlx(json(nullable))]
    pub(crate) last_run: Option<Run>,
    pub(crate) held: Vec<i64>,
}

/// One numbered event ([`EVENTS_PAGE`](super::events::EVENTS_PAGE)).
#[derive(FromRow)]
pub(crate) struct EventRow {
    pub(crate) seq: i64,
    pub(crate) at: i64,
    #[sqlx(json)]
    pub(crate) actor: Actor,
    #[sqlx(try_from = "String")]
    pub(crate) pipeline: PipelineId,
    #[sqlx(json)]
    pub(crate) kind: hakiri_core::EventKind,
}

/// A pipeline's lease, running run and cursor kind beside one of its cursors, as a checkpoint
/// judges them ([`advance`](super::advance)): all NULL but the cursor's columns when there is no
/// pipeline.
#[derive(FromRow)]
pub(crate) struct StateRow {
    now: Option<i64>,
    #[sqlx(flatten)]
    lease: LeaseColumns,
    running_run: Option<Uuid>,
    cursor_kind: Option<String>,
    #[sqlx(flatten)]
    cursor: CursorColumns,
}

/// [`StateRow`], decoded.
pub(crate) struct State {
    pub(crate) now: Timestamp,
    pub(crate) lease: Option<LeaseState>,
    pub(crate) running: Option<RunId>,
    pub(crate) kind: Option<CursorKind>,
    pub(crate) cursor: Option<Cursor>,
}

impl StateRow {
    /// The state, for the cursor of `stream` of `pipeline`.
    pub(crate) fn state(self, pipeline: &PipelineId, stream: &StreamName) -> Result<State> {
        Ok(State {
            now: Timestamp::from_millis(self.now.unwrap_or(0)),
            lease: self.lease.state()?,
            running: self.running_run.map(RunId::from_uuid),
            kind: self.cursor_kind.as_deref().map(kind_from).transpose()?,
            cursor: self.cursor.cursor(pipeline, stream)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hakiri_core::{CursorChange, Reason};

    /// `unstamped` encodes the document `without_field` does, the order of members aside, even
    /// with members named `at` in the value and the actor.
    #[test]
    fn unstamped_entries_lose_only_their_own_at() {
        let value = |v| CursorValue::new(v).unwrap();
        let holder = |h: &str| Actor::Holder(HolderId::new(h).unwrap());
        let entries = [
            (
                value(serde_json::json!(7)),
                holder("h"),
                CursorChange::Checkpoint,
            ),
            (
                value(serde_json::json!({"a": 1, "at": "2025-01-01T00:00:00.000Z"})),
                holder(r#"x,"at":"y"#),
                CursorChange::Reset {
                    reason: Reason::new(r#"},"at":"z"}"#).unwrap(),
                },
            ),
        ];
        for (value, by, change) in entries {
            let entry = CursorHistoryEntry {
                version: 3,
                value,
                change,
                run: Some(RunId::from_uuid(Uuid::from_u64_pair(1, 2))),
                epoch: Some(Epoch(4)),
                by,
                at: Timestamp::from_millis(1_700_000_000_123),
            };
            let ours: serde_json::Value =
                serde_json::from_str(&unstamped(&entry).unwrap()).unwrap();
            let theirs: serde_json::Value =
                serde_json::from_str(&without_field(&entry, "at").unwrap()).unwrap();
            assert_eq!(ours, theirs);
            assert!(
                ours.get("at").is_none() && ours.get("version").is_some(),
                "{ours}"
            );
        }
    }

    #[test]
    fn cursor_kinds_round_trip() {
        for kind in [CursorKind::Monotonic, CursorKind::Opaque] {
            assert_eq!(kind_from(kind_text(kind)).unwrap(), kind);
        }
        assert!(kind_from("sideways").is_err());
    }
}
