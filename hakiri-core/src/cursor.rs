//! Cursors: values, ordering rules, and the pure rules for advancing and resetting them.
//!
//! A monotonic cursor holds a JSON number or string and never moves backwards; an opaque one holds
//! any JSON and cannot be ordered, which is why the single-writer lease is its only protection
//! (ADR 0004).

use std::cmp::Ordering;
use std::fmt;
use std::io;

use serde::{Deserialize, Serialize};
use serde_json::{Number, Value};

use crate::audit::{Actor, EventKind, Reason};
use crate::error::{Entity, Error, Result};
use crate::ids::{Epoch, PipelineId, RunId, StreamName};
use crate::lease::Lease;
use crate::time::Timestamp;

/// Largest cursor value, serialised as JSON, in bytes.
pub const MAX_CURSOR_BYTES: usize = 64 * 1024;
/// Largest integer a monotonic cursor may hold exactly (2^53 − 1): beyond it, numbers are not
/// exact in JavaScript or in `f64` comparisons. Use a string for larger positions.
pub const MAX_SAFE_INTEGER: i64 = (1 << 53) - 1;

/// How a pipeline's cursors are ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CursorKind {
    /// A JSON number or string that only moves forwards.
    ///
    /// Strings compare bytewise, so timestamps must be fixed-width UTC RFC 3339
    /// (`2026-11-22T05:23:58.000Z`), never local times or variable precision.
    Monotonic,
    /// Any JSON (resume tokens, page tokens, LSNs); no ordering check is possible.
    Opaque,
}

/// Counts bytes written without keeping them.
struct ByteCounter(usize);

impl io::Write for ByteCounter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The size of `value` serialised as compact JSON, without allocating it.
pub fn json_size(value: &Value) -> usize {
    let mut counter = ByteCounter(0);
    // Writing a `Value` to an infallible writer cannot fail.
    let _ = serde_json::to_writer(&mut counter, value);
    counter.0
}

/// A cursor value: any JSON of at most [`MAX_CURSOR_BYTES`]. Kind rules are checked on write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Value", into = "Value")]
pub struct CursorValue(Value);

impl CursorValue {
    /// Validates the size of `value`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] above [`MAX_CURSOR_BYTES`].
    pub fn new(value: Value) -> Result<Self> {
        let size = json_size(&value);
        if size > MAX_CURSOR_BYTES {
            return Err(Error::invalid(format!(
                "cursor value is {size} bytes of JSON; the limit is {MAX_CURSOR_BYTES}"
            )));
        }
        Ok(Self(value))
    }

    /// The value a reset to the start writes: JSON `null`, meaning "from the beginning".
    pub fn initial() -> Self {
        Self(Value::Null)
    }

    /// Whether this is the initial (`null`) value.
    pub fn is_initial(&self) -> bool {
        self.0.is_null()
    }

    /// The JSON value.
    pub fn as_json(&self) -> &Value {
        &self.0
    }

    /// Takes the JSON value out.
    pub fn into_json(self) -> Value {
        self.0
    }
}

impl fmt::Display for CursorValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl TryFrom<Value> for CursorValue {
    type Error = Error;
    fn try_from(value: Value) -> Result<Self> {
        Self::new(value)
    }
}

impl From<CursorValue> for Value {
    fn from(v: CursorValue) -> Value {
        v.0
    }
}

/// A monotonic cursor position, validated and normalised so that ordering agrees with equality.
#[derive(Debug, Clone, PartialEq)]
pub enum Position {
    /// An integer in ±[`MAX_SAFE_INTEGER`].
    Integer(i64),
    /// A finite, non-integral float (integral floats become [`Position::Integer`]).
    Float(f64),
    /// Text, compared bytewise.
    Text(String),
}

impl Position {
    /// Validates a monotonic cursor value.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] unless `value` is a string, an integer within ±(2^53 − 1), or a
    /// finite float.
    pub fn from_json(value: &Value) -> Result<Self> {
        match value {
            Value::String(s) => Ok(Position::Text(s.clone())),
            Value::Number(n) => Self::from_number(n),
            other => Err(Error::invalid(format!(
                "a monotonic cursor must be a JSON number or string, not {}",
                json_type(other)
            ))),
        }
    }

    fn from_number(n: &Number) -> Result<Self> {
        let out_of_range = || {
            Error::invalid(format!(
                "monotonic cursor {n} is outside ±{MAX_SAFE_INTEGER}; store large positions as strings"
            ))
        };
        if let Some(i) = n.as_i64() {
            return if i.abs() <= MAX_SAFE_INTEGER {
                Ok(Position::Integer(i))
            } else {
                Err(out_of_range())
            };
        }
        if n.is_u64() {
            return Err(out_of_range());
        }
        let f = n
            .as_f64()
            .filter(|f| f.is_finite())
            .ok_or_else(out_of_range)?;
        if f.abs() > MAX_SAFE_INTEGER as f64 {
            return Err(out_of_range());
        }
        if f.fract() == 0.0 {
            // Exact: |f| ≤ 2^53 − 1, so the cast loses nothing (and -0.0 becomes 0).
            #[allow(clippy::cast_possible_truncation)]
            return Ok(Position::Integer(f as i64));
        }
        Ok(Position::Float(f))
    }

    /// The normalised JSON form (integral floats written as integers).
    pub fn to_json(&self) -> Value {
        match self {
            Position::Integer(i) => Value::from(*i),
            Position::Float(f) => Number::from_f64(*f).map_or(Value::Null, Value::Number),
            Position::Text(s) => Value::String(s.clone()),
        }
    }

    /// Orders two positions of the same type.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when one is a number and the other a string: a monotonic cursor
    /// must keep its type (reset it to change type).
    pub fn compare(&self, other: &Position) -> Result<Ordering> {
        match (self, other) {
            (Position::Text(a), Position::Text(b)) => Ok(a.as_bytes().cmp(b.as_bytes())),
            (Position::Text(_), _) | (_, Position::Text(_)) => Err(Error::invalid(
                "a monotonic cursor cannot change between number and string; reset it instead",
            )),
            (Position::Integer(a), Position::Integer(b)) => Ok(a.cmp(b)),
            // Both sides are exact in f64 (integers are within ±2^53), so this is exact.
            #[allow(clippy::cast_precision_loss)]
            (a, b) => Ok(a.as_f64().total_cmp(&b.as_f64())),
        }
    }

    #[allow(clippy::cast_precision_loss)]
    fn as_f64(&self) -> f64 {
        match self {
            Position::Integer(i) => *i as f64,
            Position::Float(f) => *f,
            Position::Text(_) => f64::NAN,
        }
    }
}

/// A JSON value's kind as error messages name it ("a string", "an object" …).
pub fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A stream's current cursor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cursor {
    /// The pipeline.
    pub pipeline: PipelineId,
    /// The stream.
    pub stream: StreamName,
    /// The value.
    pub value: CursorValue,
    /// 1 for the first value, +1 on every change; the compare-and-set token.
    pub version: u64,
    /// The run that wrote it (none for an operator reset).
    pub run: Option<RunId>,
    /// The lease epoch that wrote it.
    pub epoch: Option<Epoch>,
    /// Who wrote it.
    pub updated_by: Actor,
    /// When.
    pub updated_at: Timestamp,
}

/// A checkpoint request: a new value, optionally guarded by the version the writer last saw.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CursorAdvance {
    /// The new value.
    pub value: CursorValue,
    /// Fail with `Conflict` unless the stored version is this (0: no cursor yet). `None`: only the
    /// lease guards the write.
    pub expected_version: Option<u64>,
}

impl CursorAdvance {
    /// An advance guarded by the lease only.
    pub fn to(value: CursorValue) -> Self {
        Self {
            value,
            expected_version: None,
        }
    }

    /// Also require the stored version to be `version`.
    #[must_use]
    pub fn expecting(mut self, version: u64) -> Self {
        self.expected_version = Some(version);
        self
    }
}

/// The outcome of [`plan_advance`].
#[derive(Debug, Clone, PartialEq)]
pub enum AdvancePlan {
    /// The value equals the stored one: an idempotent no-op, no new version.
    Unchanged,
    /// Write the stream's next version.
    Write(CursorWrite),
}

/// A cursor write decided by a rule ([`plan_advance`], [`plan_reset`], or a run's finish): the
/// stream's next value and version, and why. A backend applies it whole, in one atomic step: the
/// stream's cursor becomes [`CursorWrite::cursor`], [`CursorWrite::history_entry`] is appended to
/// its history, and [`CursorWrite::event`] to the audit log.
#[derive(Debug, Clone, PartialEq)]
pub struct CursorWrite {
    /// The stream.
    pub stream: StreamName,
    /// The value to store (normalised by the kind's rule).
    pub value: CursorValue,
    /// The new version: the stored one + 1.
    pub version: u64,
    /// Why: a checkpoint, a finish, an operator's reset or rollback.
    pub change: CursorChange,
}

/// Who writes cursors, when, under which run and lease epoch: the same for every cursor one
/// operation writes.
#[derive(Debug, Clone, PartialEq)]
pub struct WriteStamp {
    /// The run that writes (none for an operator's reset).
    pub run: Option<RunId>,
    /// The lease epoch it writes under.
    pub epoch: Option<Epoch>,
    /// Who.
    pub by: Actor,
    /// The catalog clock's time.
    pub at: Timestamp,
}

impl WriteStamp {
    /// A write by the lease's holder, for `run` (a checkpoint, a finish).
    pub fn holder(lease: &Lease, run: RunId, at: Timestamp) -> Self {
        Self {
            run: Some(run),
            epoch: Some(lease.epoch),
            by: Actor::Holder(lease.holder.clone()),
            at,
        }
    }

    /// A write by an operator, `by`, under `lease` but for no run (a reset, a rollback).
    pub fn operator(lease: &Lease, by: &Actor, at: Timestamp) -> Self {
        Self {
            run: None,
            epoch: Some(lease.epoch),
            by: by.clone(),
            at,
        }
    }
}

impl CursorWrite {
    /// The audit event recording this write.
    pub fn event(&self) -> EventKind {
        self.change.event(&self.stream, self.version)
    }

    /// The entry this write appends to the stream's history.
    pub fn history_entry(&self, stamp: &WriteStamp) -> CursorHistoryEntry {
        CursorHistoryEntry {
            version: self.version,
            value: self.value.clone(),
            change: self.change.clone(),
            run: stamp.run,
            epoch: stamp.epoch,
            by: stamp.by.clone(),
            at: stamp.at,
        }
    }

    /// The stream's cursor once written.
    pub fn cursor(&self, pipeline: &PipelineId, stamp: &WriteStamp) -> Cursor {
        Cursor {
            pipeline: pipeline.clone(),
            stream: self.stream.clone(),
            value: self.value.clone(),
            version: self.version,
            run: stamp.run,
            epoch: stamp.epoch,
            updated_by: stamp.by.clone(),
            updated_at: stamp.at,
        }
    }
}

/// The rule for advancing a cursor: compare-and-set on the version, then the kind's ordering rule.
///
/// `current` is the stored value and version, if any; `change` says why the write happens (a
/// checkpoint, a finish).
///
/// # Errors
/// `Conflict` on a version mismatch; `CursorRegression` for a monotonic cursor moving backwards;
/// `InvalidArgument` for a value the kind does not allow.
pub fn plan_advance(
    kind: CursorKind,
    pipeline: &PipelineId,
    stream: &StreamName,
    current: Option<(&CursorValue, u64)>,
    advance: &CursorAdvance,
    change: CursorChange,
) -> Result<AdvancePlan> {
    let current_version = current.map_or(0, |(_, v)| v);
    check_expected(pipeline, stream, advance.expected_version, current_version)?;
    let proposed = match kind {
        CursorKind::Opaque => advance.value.clone(),
        CursorKind::Monotonic => {
            let position = Position::from_json(advance.value.as_json())?;
            if let Some((stored, _)) = current.filter(|(v, _)| !v.is_initial()) {
                let stored_position = Position::from_json(stored.as_json())?;
                match position.compare(&stored_position)? {
                    Ordering::Less => {
                        return Err(Error::CursorRegression {
                            pipeline: pipeline.clone(),
                            stream: stream.clone(),
                            current: stored.as_json().clone(),
                            proposed: advance.value.as_json().clone(),
                        })
                    }
                    Ordering::Equal => return Ok(AdvancePlan::Unchanged),
                    Ordering::Greater => {}
                }
            }
            CursorValue(position.to_json())
        }
    };
    if current.is_some_and(|(stored, _)| *stored == proposed) {
        return Ok(AdvancePlan::Unchanged);
    }
    Ok(AdvancePlan::Write(CursorWrite {
        stream: stream.clone(),
        value: proposed,
        version: current_version + 1,
        change,
    }))
}

fn check_expected(
    pipeline: &PipelineId,
    stream: &StreamName,
    expected: Option<u64>,
    current: u64,
) -> Result<()> {
    match expected {
        Some(expected) if expected != current => Err(Error::conflict(
            Entity::Cursor {
                pipeline: pipeline.clone(),
                stream: stream.clone(),
            },
            format!("version {expected}"),
            format!("version {current}"),
        )),
        _ => Ok(()),
    }
}

/// How a cursor history entry came to be.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum CursorChange {
    /// A mid-run checkpoint.
    Checkpoint,
    /// A run's final cursor, written by its finish.
    Finish,
    /// An operator set a new value.
    Reset {
        /// Why.
        reason: Reason,
    },
    /// An operator went back to an earlier version's value.
    Rollback {
        /// The version whose value was restored.
        to_version: u64,
        /// Why.
        reason: Reason,
    },
}

impl CursorChange {
    /// The audit event recording this change as version `version` of `stream`'s cursor.
    pub fn event(&self, stream: &StreamName, version: u64) -> EventKind {
        match self {
            CursorChange::Reset { reason } | CursorChange::Rollback { reason, .. } => {
                EventKind::CursorReset {
                    stream: stream.clone(),
                    version,
                    reason: reason.clone(),
                }
            }
            CursorChange::Checkpoint | CursorChange::Finish => EventKind::CursorAdvanced {
                stream: stream.clone(),
                version,
            },
        }
    }
}

/// One version in a cursor's append-only history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CursorHistoryEntry {
    /// The version this entry created.
    pub version: u64,
    /// The value it set.
    pub value: CursorValue,
    /// How.
    pub change: CursorChange,
    /// The run that wrote it, if any.
    pub run: Option<RunId>,
    /// The lease epoch it was written under.
    pub epoch: Option<Epoch>,
    /// Who.
    pub by: Actor,
    /// When.
    pub at: Timestamp,
}

impl CursorHistoryEntry {
    /// The cursor this version made: what the stream's cursor is while it is the newest.
    pub fn cursor(&self, pipeline: &PipelineId, stream: &StreamName) -> Cursor {
        Cursor {
            pipeline: pipeline.clone(),
            stream: stream.clone(),
            value: self.value.clone(),
            version: self.version,
            run: self.run,
            epoch: self.epoch,
            updated_by: self.by.clone(),
            updated_at: self.at,
        }
    }
}

/// Where an operator reset takes a cursor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResetTarget {
    /// A new value (may be lower than the current one, even for monotonic cursors).
    Value(CursorValue),
    /// The value an earlier version had (a rollback).
    Version(u64),
    /// Back to the start (`null`): the next run reads from the beginning.
    Initial,
}

/// What an operator's reset may do that a plain one refuses. Everything is refused by default:
/// each is something an operator does on purpose, rarely, and a slip of the keyboard otherwise.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
// Absent fields are `false`: a payload from before a permission existed asks for none.
#[serde(default)]
pub struct ResetPermissions {
    /// Let a monotonic cursor switch between number and string. Without it the reset is
    /// `InvalidArgument`: the connector still checkpoints the old type, and every later advance
    /// would be refused, failing each run until someone resets the cursor again.
    pub type_change: bool,
    /// Let a reset to a value create the cursor of a stream that has none. Without it the reset
    /// is `NotFound`: a mistyped stream name would otherwise become a cursor nobody reads.
    pub create: bool,
}

/// An operator's reset or rollback of one cursor. Always audited.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CursorReset {
    /// Where to take the cursor.
    pub target: ResetTarget,
    /// Fail with `Conflict` unless the stored version is this.
    pub expected_version: Option<u64>,
    /// Who asks (recorded in history and events).
    pub by: Actor,
    /// Why (recorded in history and events).
    pub reason: Reason,
    /// What the operator explicitly allows beyond a plain reset.
    // Defaulted so that requests serialised before it existed (the Durable Object protocol)
    // still decode, asking for no permission.
    #[serde(default)]
    pub allow: ResetPermissions,
}

/// The rule for a reset: compare-and-set, the kind's value rule, what the operator must allow
/// explicitly, and the write to apply.
///
/// `current` is the stored cursor and version; `old_value` is the value of the target version when
/// the target is [`ResetTarget::Version`] (looked up by the backend, `None` if it does not exist).
///
/// Callers may also run it before taking anything (a lease) to refuse a bad request early; the
/// backend runs it again inside its atomic write, and that verdict is the one that counts.
///
/// # Errors
/// - `Conflict` when `expected_version` is not the stored version;
/// - `InvalidArgument` for a value the kind does not allow, or for a monotonic cursor switching
///   between number and string without [`ResetPermissions::type_change`];
/// - `NotFound` for a missing version, for a reset to [`ResetTarget::Initial`] of a cursor that
///   does not exist, and for a reset to a value of a cursor that does not exist without
///   [`ResetPermissions::create`].
pub fn plan_reset(
    kind: CursorKind,
    pipeline: &PipelineId,
    stream: &StreamName,
    current: Option<(&CursorValue, u64)>,
    old_value: Option<&CursorValue>,
    reset: &CursorReset,
) -> Result<CursorWrite> {
    let current_version = current.map_or(0, |(_, v)| v);
    check_expected(pipeline, stream, reset.expected_version, current_version)?;
    let reason = reset.reason.clone();
    let missing_cursor = || {
        Error::NotFound(Entity::Cursor {
            pipeline: pipeline.clone(),
            stream: stream.clone(),
        })
    };
    let (value, change) = match &reset.target {
        ResetTarget::Value(value) => {
            let value = match kind {
                CursorKind::Opaque => value.clone(),
                CursorKind::Monotonic => {
                    CursorValue(Position::from_json(value.as_json())?.to_json())
                }
            };
            if current.is_none() && !reset.allow.create {
                return Err(missing_cursor());
            }
            (value, CursorChange::Reset { reason })
        }
        ResetTarget::Initial if current.is_none() => return Err(missing_cursor()),
        ResetTarget::Initial => (CursorValue::initial(), CursorChange::Reset { reason }),
        ResetTarget::Version(version) => match old_value {
            Some(value) if *version >= 1 && *version <= current_version => (
                value.clone(),
                CursorChange::Rollback {
                    to_version: *version,
                    reason,
                },
            ),
            _ => {
                return Err(Error::NotFound(Entity::CursorVersion {
                    pipeline: pipeline.clone(),
                    stream: stream.clone(),
                    version: *version,
                }))
            }
        },
    };
    match current {
        Some((from, _)) if !reset.allow.type_change && changes_type(kind, Some(from), &value) => {
            let (from_type, to_type) = (json_type(from.as_json()), json_type(value.as_json()));
            Err(Error::invalid(format!(
                "cursor {pipeline}/{stream} is monotonic and holds {from_type} ({from}); a reset \
                 to {to_type} ({value}) would refuse every later checkpoint of {from_type}, \
                 failing each run; allow the type change explicitly if the source's cursor \
                 really changed type"
            )))
        }
        _ => Ok(CursorWrite {
            stream: stream.clone(),
            value,
            version: current_version + 1,
            change,
        }),
    }
}

/// Whether setting a `kind` cursor that holds `current` to `next` switches it between number and
/// string: for a monotonic cursor, a change [`plan_reset`] makes only when explicitly allowed.
/// `null` (the initial value) has no type: anything may follow it, and it may follow anything.
pub fn changes_type(kind: CursorKind, current: Option<&CursorValue>, next: &CursorValue) -> bool {
    kind == CursorKind::Monotonic
        && !next.is_initial()
        && current.is_some_and(|current| {
            !current.is_initial() && json_type(current.as_json()) != json_type(next.as_json())
        })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn ids() -> (PipelineId, StreamName) {
        (PipelineId::new("p").unwrap(), StreamName::new("s").unwrap())
    }

    fn value(v: Value) -> CursorValue {
        CursorValue::new(v).unwrap()
    }

    fn advance(
        kind: CursorKind,
        current: Option<(Value, u64)>,
        next: Value,
    ) -> Result<AdvancePlan> {
        let (p, s) = ids();
        let current = current.map(|(v, n)| (value(v), n));
        plan_advance(
            kind,
            &p,
            &s,
            current.as_ref().map(|(v, n)| (v, *n)),
            &CursorAdvance::to(value(next)),
            CursorChange::Checkpoint,
        )
    }

    #[test]
    fn monotonic_advances_forwards_only() {
        let k = CursorKind::Monotonic;
        assert_eq!(
            advance(k, None, json!(5)).unwrap(),
            AdvancePlan::Write(CursorWrite {
                stream: ids().1,
                value: value(json!(5)),
                version: 1,
                change: CursorChange::Checkpoint,
            })
        );
        assert!(matches!(
            advance(k, Some((json!(5), 1)), json!(6)),
            Ok(AdvancePlan::Write(CursorWrite { version: 2, .. }))
        ));
        assert_eq!(
            advance(k, Some((json!(5), 1)), json!(5.0)).unwrap(),
            AdvancePlan::Unchanged
        );
        assert!(matches!(
            advance(k, Some((json!(5), 1)), json!(4.5)),
            Err(Error::CursorRegression { .. })
        ));
        assert!(matches!(
            advance(k, Some((json!("b"), 1)), json!("a")),
            Err(Error::CursorRegression { .. })
        ));
        assert!(matches!(
            advance(k, Some((json!("b"), 1)), json!(3)),
            Err(Error::InvalidArgument(_))
        ));
        assert!(matches!(
            advance(k, None, json!({"a": 1})),
            Err(Error::InvalidArgument(_))
        ));
        assert!(matches!(
            advance(k, None, json!(1u64 << 60)),
            Err(Error::InvalidArgument(_))
        ));
        // After a reset to the start, anything goes.
        assert!(matches!(
            advance(k, Some((Value::Null, 3)), json!(1)),
            Ok(AdvancePlan::Write(CursorWrite { version: 4, .. }))
        ));
    }

    #[test]
    fn opaque_accepts_any_change_and_skips_equal_values() {
        let k = CursorKind::Opaque;
        assert!(matches!(
            advance(k, Some((json!({"t": 9}), 1)), json!({"t": 1})),
            Ok(AdvancePlan::Write(CursorWrite { version: 2, .. }))
        ));
        assert_eq!(
            advance(k, Some((json!([1]), 4)), json!([1])).unwrap(),
            AdvancePlan::Unchanged
        );
    }

    #[test]
    fn advance_checks_expected_version() {
        let (p, s) = ids();
        let stored = value(json!(1));
        let a = CursorAdvance::to(value(json!(2))).expecting(3);
        let err = plan_advance(
            CursorKind::Monotonic,
            &p,
            &s,
            Some((&stored, 2)),
            &a,
            CursorChange::Checkpoint,
        )
        .unwrap_err();
        assert!(err.is_retryable(), "{err}");
        let a = CursorAdvance::to(value(json!(2))).expecting(0);
        assert!(plan_advance(
            CursorKind::Monotonic,
            &p,
            &s,
            None,
            &a,
            CursorChange::Checkpoint
        )
        .is_ok());
    }

    #[test]
    fn cursor_values_are_size_limited() {
        assert!(CursorValue::new(json!("x".repeat(MAX_CURSOR_BYTES))).is_err());
        assert!(CursorValue::new(json!("x".repeat(MAX_CURSOR_BYTES - 2))).is_ok());
    }

    #[test]
    fn reset_rolls_back_to_existing_versions_only() {
        let (p, s) = ids();
        let stored = value(json!(9));
        let reset = |target| CursorReset {
            target,
            expected_version: None,
            by: Actor::System,
            reason: Reason::new("replay").unwrap(),
            allow: ResetPermissions::default(),
        };
        let old = value(json!(3));
        let CursorWrite {
            value: v, change, ..
        } = plan_reset(
            CursorKind::Monotonic,
            &p,
            &s,
            Some((&stored, 4)),
            Some(&old),
            &reset(ResetTarget::Version(2)),
        )
        .unwrap();
        assert_eq!(v, old);
        assert!(matches!(
            change,
            CursorChange::Rollback { to_version: 2, .. }
        ));
        let missing = plan_reset(
            CursorKind::Monotonic,
            &p,
            &s,
            Some((&stored, 4)),
            None,
            &reset(ResetTarget::Version(7)),
        );
        assert!(matches!(
            missing,
            Err(Error::NotFound(Entity::CursorVersion { version: 7, .. }))
        ));
        let CursorWrite { value: v, .. } = plan_reset(
            CursorKind::Monotonic,
            &p,
            &s,
            Some((&stored, 4)),
            None,
            &reset(ResetTarget::Value(value(json!(1)))),
        )
        .unwrap();
        assert_eq!(v, value(json!(1)));
        let bad = plan_reset(
            CursorKind::Monotonic,
            &p,
            &s,
            None,
            None,
            &reset(ResetTarget::Value(value(json!([1])))),
        );
        assert!(matches!(bad, Err(Error::InvalidArgument(_))));
    }

    fn reset_of(target: ResetTarget, allow: ResetPermissions) -> CursorReset {
        CursorReset {
            target,
            expected_version: None,
            by: Actor::System,
            reason: Reason::new("replay").unwrap(),
            allow,
        }
    }

    #[test]
    fn reset_keeps_a_monotonic_cursors_type_unless_allowed() {
        let (p, s) = ids();
        let number = value(json!(9));
        let to_text = ResetTarget::Value(value(json!("9")));
        let refused = plan_reset(
            CursorKind::Monotonic,
            &p,
            &s,
            Some((&number, 2)),
            None,
            &reset_of(to_text.clone(), ResetPermissions::default()),
        );
        match refused {
            Err(Error::InvalidArgument(message)) => assert!(
                message.contains("holds a number (9)") && message.contains("a string (\"9\")"),
                "{message}"
            ),
            other => panic!("expected InvalidArgument, got {other:?}"),
        }
        let allowed = ResetPermissions {
            type_change: true,
            ..ResetPermissions::default()
        };
        let CursorWrite { value: v, .. } = plan_reset(
            CursorKind::Monotonic,
            &p,
            &s,
            Some((&number, 2)),
            None,
            &reset_of(to_text, allowed),
        )
        .unwrap();
        assert_eq!(v, value(json!("9")));
        // A rollback to a version of the other type is the same change.
        let text = value(json!("b"));
        let rollback = plan_reset(
            CursorKind::Monotonic,
            &p,
            &s,
            Some((&text, 3)),
            Some(&number),
            &reset_of(ResetTarget::Version(1), ResetPermissions::default()),
        );
        assert!(
            matches!(rollback, Err(Error::InvalidArgument(_))),
            "{rollback:?}"
        );
        // Integers and floats are both numbers; `null` has no type, either way.
        for (from, to) in [
            (json!(9), json!(2.5)),
            (Value::Null, json!("a")),
            (json!("a"), Value::Null),
        ] {
            let stored = value(from);
            let target = if to.is_null() {
                ResetTarget::Initial
            } else {
                ResetTarget::Value(value(to))
            };
            assert!(plan_reset(
                CursorKind::Monotonic,
                &p,
                &s,
                Some((&stored, 1)),
                None,
                &reset_of(target, ResetPermissions::default()),
            )
            .is_ok());
        }
        // Opaque cursors have no type to keep.
        assert!(plan_reset(
            CursorKind::Opaque,
            &p,
            &s,
            Some((&number, 1)),
            None,
            &reset_of(
                ResetTarget::Value(value(json!({"t": 1}))),
                ResetPermissions::default()
            ),
        )
        .is_ok());
    }

    #[test]
    fn reset_creates_a_cursor_only_when_allowed() {
        let (p, s) = ids();
        let target = ResetTarget::Value(value(json!(5)));
        let refused = plan_reset(
            CursorKind::Monotonic,
            &p,
            &s,
            None,
            None,
            &reset_of(target.clone(), ResetPermissions::default()),
        );
        assert!(
            matches!(refused, Err(Error::NotFound(Entity::Cursor { .. }))),
            "{refused:?}"
        );
        let create = ResetPermissions {
            create: true,
            ..ResetPermissions::default()
        };
        let CursorWrite { value: v, .. } = plan_reset(
            CursorKind::Monotonic,
            &p,
            &s,
            None,
            None,
            &reset_of(target, create),
        )
        .unwrap();
        assert_eq!(v, value(json!(5)));
    }

    #[test]
    fn reset_payloads_without_permissions_still_decode() {
        let old = json!({
            "target": {"value": 5},
            "expected_version": null,
            "by": {"kind": "system"},
            "reason": "replay",
        });
        let reset: CursorReset = serde_json::from_value(old).unwrap();
        assert_eq!(reset.allow, ResetPermissions::default());
    }
}
