//! The operations a sequence is made of: [`Op`], what proptest generates and shrinks, over a small
//! universe (two pipelines, two holders, two streams, cursor values 0..4 and two strings), and
//! [`Call`], the concrete port call an op becomes once the leases and runs handed out so far and
//! the model's versions are known.
//!
//! Ops name leases and runs by how far back they were handed out (0: the newest), so that a
//! sequence stays meaningful while proptest shrinks it, and versions relative to the stored one
//! ([`Expect`]), so that stale and future versions are as likely as the right one.

use std::collections::BTreeMap;
use std::time::Duration;

use hakiri_core::{
    Actor, Column, ColumnType, CursorAdvance, CursorKind, CursorReset, CursorValue, FinishRun,
    Generation, HolderId, Lease, Outcome, PauseChange, PipelineId, PipelineSpec, PolicyAction,
    PutMode, ResetPermissions, ResetTarget, RunError, Schema, SchemaPolicy, StreamName, Trigger,
};
use proptest::prelude::*;
use serde_json::{json, Value};

use super::state::Model;
use crate::{holder_id, operator, pid, reason, spec, stream};

/// The pipelines a sequence works on.
pub const PIPELINES: [&str; 2] = ["p0", "p1"];
/// The lease holders.
pub const HOLDERS: [&str; 2] = ["h0", "h1"];
/// The streams.
pub const STREAMS: [&str; 2] = ["s0", "s1"];

/// A version a compare-and-set expects, relative to the stored one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// The stored version.
    Current,
    /// One below it (or, with none stored, one that was never there).
    Behind,
    /// One above it.
    Ahead,
}

impl Expect {
    fn resolve(self, current: u64) -> u64 {
        match self {
            Expect::Current => current,
            Expect::Behind => current.checked_sub(1).unwrap_or(current + 2),
            Expect::Ahead => current + 1,
        }
    }
}

/// A cursor value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Val {
    /// A small integer.
    Int(i64),
    /// A one-letter string (a type change for a numeric monotonic cursor).
    Text(&'static str),
    /// `null` (refused by monotonic cursors, any value for opaque ones).
    Null,
}

impl Val {
    fn json(self) -> Value {
        match self {
            Val::Int(i) => json!(i),
            Val::Text(s) => json!(s),
            Val::Null => Value::Null,
        }
    }

    fn cursor(self) -> CursorValue {
        CursorValue::new(self.json()).expect("small cursor values are valid")
    }
}

/// Where a reset takes a cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A value.
    Value(Val),
    /// `null`, from the start.
    Initial,
    /// An earlier version's value (a rollback); 0 and versions never written are refused.
    Version(u64),
}

/// The schemas a stream is seen with: three shapes whose changes cover every class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Shape {
    /// `id: integer, not null`.
    A,
    /// `A` and a nullable `name: string`: from `A`, an additive change.
    B,
    /// `id: integer, nullable`: from `A`, a widening change.
    C,
}

impl Shape {
    /// Every shape.
    pub const ALL: [Shape; 3] = [Shape::A, Shape::B, Shape::C];

    /// The schema of this shape.
    pub fn schema(self) -> Schema {
        let id = |nullable| Column::new("id", ColumnType::Integer, nullable);
        let columns = match self {
            Shape::A => vec![id(false)],
            Shape::B => vec![id(false), Column::new("name", ColumnType::String, true)],
            Shape::C => vec![id(true)],
        };
        Schema::new(columns, Vec::new()).expect("the shapes are valid schemas")
    }

    /// The shape `schema` has, if it is one of them.
    pub fn of(schema: &Schema) -> Option<Shape> {
        let fingerprint = schema.fingerprint();
        Shape::ALL
            .into_iter()
            .find(|s| s.schema().fingerprint() == fingerprint)
    }
}

/// The policy of a pipeline created `strict`: widening changes are held, breaking ones rejected
/// (the default policy accepts both additive and widening changes and holds breaking ones).
pub const STRICT: SchemaPolicy = SchemaPolicy {
    additive: PolicyAction::Accept,
    widening: PolicyAction::Hold,
    breaking: PolicyAction::Reject,
};

/// How far the clock moves, relative to the lease ttl.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Half a ttl: a lease taken now is still live.
    Half,
    /// Exactly a ttl: a lease taken at the start of the wait has just expired.
    Ttl,
    /// A ttl and a millisecond.
    PastTtl,
}

/// A lease: the `back`-th newest handed out for pipeline `pipeline` (0: its newest), or for any
/// pipeline while that one has none.
///
/// Counting per pipeline keeps a shrunk sequence minimal: removing a step on one pipeline does not
/// change which lease a later step on the other one picks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pick {
    /// Index in [`PIPELINES`].
    pub pipeline: usize,
    /// How far back from the pipeline's newest.
    pub back: usize,
}

/// A run to write to: the `back`-th newest begun on the lease's pipeline, or (`other`) on the
/// other pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunPick {
    /// Whether it is the other pipeline's run.
    pub other: bool,
    /// How far back from the newest.
    pub back: usize,
}

/// One step of a sequence. Indices pick from [`PIPELINES`], [`HOLDERS`], [`STREAMS`]; leases and
/// runs are picked per pipeline ([`Pick`], [`RunPick`]); a decision counts back from the newest.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Op {
    Create {
        pipeline: usize,
        opaque: bool,
        strict: bool,
    },
    Update {
        pipeline: usize,
        enabled: bool,
        expect: Expect,
    },
    Pause {
        pipeline: usize,
    },
    Resume {
        pipeline: usize,
    },
    Delete {
        pipeline: usize,
        expect: Expect,
    },
    Acquire {
        pipeline: usize,
        holder: usize,
    },
    ForceAcquire {
        pipeline: usize,
        holder: usize,
    },
    Renew {
        lease: Pick,
    },
    Release {
        lease: Pick,
    },
    Begin {
        lease: Pick,
        trigger: Trigger,
    },
    Request {
        pipeline: usize,
        backfill: bool,
    },
    Advance {
        lease: Pick,
        run: RunPick,
        stream: usize,
        value: Val,
        expect: Option<Expect>,
    },
    Finish {
        lease: Pick,
        run: RunPick,
        failed: bool,
        cursors: Vec<(usize, Val)>,
        schemas: Vec<(usize, Shape)>,
    },
    Observe {
        lease: Pick,
        run: RunPick,
        stream: usize,
        shape: Shape,
    },
    Decide {
        decision: usize,
        accept: bool,
    },
    Reset {
        lease: Pick,
        stream: usize,
        target: Target,
        expect: Option<Expect>,
        create: bool,
        type_change: bool,
    },
    Wait(Wait),
}

/// A concrete port call.
#[derive(Debug, Clone)]
#[allow(missing_docs)]
pub enum Call {
    Put {
        spec: PipelineSpec,
        mode: PutMode,
    },
    SetPaused {
        pipeline: PipelineId,
        change: PauseChange,
    },
    Delete {
        pipeline: PipelineId,
        expected: Generation,
    },
    Acquire {
        pipeline: PipelineId,
        holder: HolderId,
        force: bool,
    },
    Renew {
        lease: Lease,
    },
    Release {
        lease: Lease,
    },
    Begin {
        lease: Lease,
        trigger: Trigger,
    },
    Request {
        pipeline: PipelineId,
        trigger: Trigger,
    },
    Advance {
        lease: Lease,
        /// The run's handle: its index among the runs begun.
        run: usize,
        stream: StreamName,
        advance: CursorAdvance,
    },
    Finish {
        lease: Lease,
        /// The run's handle.
        run: usize,
        finish: FinishRun,
        /// The shapes of `finish.schemas`.
        shapes: BTreeMap<StreamName, Shape>,
    },
    Observe {
        lease: Lease,
        /// The run's handle.
        run: usize,
        stream: StreamName,
        shape: Shape,
    },
    Decide {
        /// The decision's handle: its index among the decisions recorded.
        decision: usize,
        accept: bool,
    },
    Reset {
        lease: Lease,
        stream: StreamName,
        reset: CursorReset,
    },
    Wait(Duration),
}

/// The operator the sequences act as.
pub fn actor() -> Actor {
    operator()
}

/// Picks the `back`-th newest of `len` items.
fn pick(len: usize, back: usize) -> Option<usize> {
    (len > 0).then(|| len - 1 - back % len)
}

impl Op {
    /// The op's name, for the tally of outcomes.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Create { .. } => "create",
            Op::Update { .. } => "update",
            Op::Pause { .. } => "pause",
            Op::Resume { .. } => "resume",
            Op::Delete { .. } => "delete",
            Op::Acquire { .. } => "acquire",
            Op::ForceAcquire { .. } => "force_acquire",
            Op::Renew { .. } => "renew",
            Op::Release { .. } => "release",
            Op::Begin { .. } => "begin",
            Op::Request { .. } => "request",
            Op::Advance { .. } => "advance",
            Op::Finish { .. } => "finish",
            Op::Reset { .. } => "reset",
            Op::Observe { .. } => "observe",
            Op::Decide { .. } => "decide",
            Op::Wait(_) => "wait",
        }
    }

    /// The call this op makes, given the leases handed out so far and the model's state; `None`
    /// when it needs a lease or a run and there is none yet.
    pub fn call(&self, model: &Model, leases: &[Lease]) -> Option<Call> {
        // A pipeline never leased yet lends the other's leases, so that fewer steps are
        // skipped (a step on the other pipeline then changes what it picks, only until then).
        let lease = |p: Pick| {
            let id = pid(PIPELINES[p.pipeline]);
            let mut of: Vec<&Lease> = leases.iter().filter(|l| l.pipeline == id).collect();
            if of.is_empty() {
                of = leases.iter().collect();
            }
            pick(of.len(), p.back).map(|i| of[i].clone())
        };
        let run = |lease: &Lease, r: RunPick| {
            let mine = PIPELINES
                .iter()
                .position(|p| pid(p) == lease.pipeline)
                .unwrap_or(0);
            let pipeline = if r.other {
                (mine + 1) % PIPELINES.len()
            } else {
                mine
            };
            let of = model.runs_of(&pid(PIPELINES[pipeline]));
            pick(of.len(), r.back).map(|i| of[i])
        };
        let call = match *self {
            Op::Create {
                pipeline,
                opaque,
                strict,
            } => {
                let kind = if opaque {
                    CursorKind::Opaque
                } else {
                    CursorKind::Monotonic
                };
                let mut spec = spec(PIPELINES[pipeline], kind);
                if strict {
                    spec = spec.with_schema_policy(STRICT);
                }
                Call::Put {
                    spec,
                    mode: PutMode::Create,
                }
            }
            Op::Update {
                pipeline,
                enabled,
                expect,
            } => {
                let id = pid(PIPELINES[pipeline]);
                let stored = model
                    .spec(&id)
                    .cloned()
                    .unwrap_or_else(|| spec(PIPELINES[pipeline], CursorKind::Monotonic));
                let expected = Generation(expect.resolve(model.generation(&id)));
                Call::Put {
                    spec: stored.with_enabled(enabled),
                    mode: PutMode::Update { expected },
                }
            }
            Op::Pause { pipeline } => Call::SetPaused {
                pipeline: pid(PIPELINES[pipeline]),
                change: PauseChange::Pause(reason("model")),
            },
            Op::Resume { pipeline } => Call::SetPaused {
                pipeline: pid(PIPELINES[pipeline]),
                change: PauseChange::Resume,
            },
            Op::Delete { pipeline, expect } => {
                let id = pid(PIPELINES[pipeline]);
                let expected = Generation(expect.resolve(model.generation(&id)));
                Call::Delete {
                    pipeline: id,
                    expected,
                }
            }
            Op::Acquire { pipeline, holder } | Op::ForceAcquire { pipeline, holder } => {
                Call::Acquire {
                    pipeline: pid(PIPELINES[pipeline]),
                    holder: holder_id(HOLDERS[holder]),
                    force: matches!(self, Op::ForceAcquire { .. }),
                }
            }
            Op::Renew { lease: l } => Call::Renew { lease: lease(l)? },
            Op::Release { lease: l } => Call::Release { lease: lease(l)? },
            Op::Begin { lease: l, trigger } => Call::Begin {
                lease: lease(l)?,
                trigger,
            },
            Op::Request { pipeline, backfill } => Call::Request {
                pipeline: pid(PIPELINES[pipeline]),
                trigger: if backfill {
                    Trigger::Backfill
                } else {
                    Trigger::Manual
                },
            },
            Op::Advance {
                lease: l,
                run: r,
                stream: s,
                value,
                expect,
            } => {
                let lease = lease(l)?;
                let stream = stream(STREAMS[s]);
                let mut advance = CursorAdvance::to(value.cursor());
                if let Some(expect) = expect {
                    advance = advance
                        .expecting(expect.resolve(model.cursor_version(&lease.pipeline, &stream)));
                }
                Call::Advance {
                    run: run(&lease, r)?,
                    lease,
                    stream,
                    advance,
                }
            }
            Op::Finish {
                lease: l,
                run: r,
                failed,
                ref cursors,
                ref schemas,
            } => {
                let outcome = if failed {
                    Outcome::Failed {
                        error: RunError::new("model", true),
                    }
                } else {
                    Outcome::Succeeded
                };
                let cursors: BTreeMap<StreamName, CursorValue> = cursors
                    .iter()
                    .map(|(s, v)| (stream(STREAMS[*s]), v.cursor()))
                    .collect();
                let shapes: BTreeMap<StreamName, Shape> = schemas
                    .iter()
                    .map(|(s, shape)| (stream(STREAMS[*s]), *shape))
                    .collect();
                let lease = lease(l)?;
                Call::Finish {
                    run: run(&lease, r)?,
                    lease,
                    finish: FinishRun {
                        cursors,
                        schemas: shapes
                            .iter()
                            .map(|(s, shape)| (s.clone(), shape.schema()))
                            .collect(),
                        ..FinishRun::new(outcome)
                    },
                    shapes,
                }
            }
            Op::Observe {
                lease: l,
                run: r,
                stream: s,
                shape,
            } => {
                let lease = lease(l)?;
                Call::Observe {
                    run: run(&lease, r)?,
                    lease,
                    stream: stream(STREAMS[s]),
                    shape,
                }
            }
            Op::Decide { decision, accept } => Call::Decide {
                decision: pick(model.decision_count(), decision)?,
                accept,
            },
            Op::Reset {
                lease: l,
                stream: s,
                target,
                expect,
                create,
                type_change,
            } => {
                let lease = lease(l)?;
                let stream = stream(STREAMS[s]);
                let expected_version =
                    expect.map(|e| e.resolve(model.cursor_version(&lease.pipeline, &stream)));
                let target = match target {
                    Target::Value(v) => ResetTarget::Value(v.cursor()),
                    Target::Initial => ResetTarget::Initial,
                    Target::Version(n) => ResetTarget::Version(n),
                };
                Call::Reset {
                    lease,
                    stream,
                    reset: CursorReset {
                        target,
                        expected_version,
                        by: actor(),
                        reason: reason("model"),
                        allow: ResetPermissions {
                            type_change,
                            create,
                        },
                    },
                }
            }
            Op::Wait(wait) => {
                let ttl = model.ttl();
                Call::Wait(match wait {
                    Wait::Half => ttl / 2,
                    Wait::Ttl => ttl,
                    Wait::PastTtl => ttl + Duration::from_millis(1),
                })
            }
        };
        Some(call)
    }
}

fn expect() -> impl Strategy<Value = Expect> {
    prop_oneof![
        3 => Just(Expect::Current),
        1 => Just(Expect::Behind),
        1 => Just(Expect::Ahead),
    ]
}

fn val() -> impl Strategy<Value = Val> {
    prop_oneof![
        8 => (0i64..5).prop_map(Val::Int),
        1 => prop::sample::select(vec!["a", "b"]).prop_map(Val::Text),
        1 => Just(Val::Null),
    ]
}

/// Mostly the newest lease or run, sometimes an older one (a stale epoch, an ended run).
fn back() -> impl Strategy<Value = usize> {
    prop_oneof![4 => Just(0usize), 1 => 1usize..4]
}

fn lease() -> impl Strategy<Value = Pick> {
    (0..PIPELINES.len(), back()).prop_map(|(pipeline, back)| Pick { pipeline, back })
}

/// Mostly a run of the lease's pipeline.
fn run() -> impl Strategy<Value = RunPick> {
    (prop::bool::weighted(0.1), back()).prop_map(|(other, back)| RunPick { other, back })
}

/// One op, weighted towards the interesting ones: checkpoints with conflicting versions, stale
/// epochs after a force or an expiry, finishing twice, the clock moving past the ttl. Clock ops
/// only on a manual clock (`manual_clock`); on a real one, waiting out a ttl is too slow.
pub fn op(manual_clock: bool) -> BoxedStrategy<Op> {
    let pipeline = || 0..PIPELINES.len();
    let holder = || 0..HOLDERS.len();
    let stream = || 0..STREAMS.len();
    let ops = prop_oneof![
        2 => create(),
        1 => (pipeline(), any::<bool>(), expect())
            .prop_map(|(pipeline, enabled, expect)| Op::Update { pipeline, enabled, expect }),
        1 => pipeline().prop_map(|pipeline| Op::Pause { pipeline }),
        1 => pipeline().prop_map(|pipeline| Op::Resume { pipeline }),
        1 => (pipeline(), expect()).prop_map(|(pipeline, expect)| Op::Delete { pipeline, expect }),
        4 => (pipeline(), holder()).prop_map(|(pipeline, holder)| Op::Acquire { pipeline, holder }),
        2 => (pipeline(), holder())
            .prop_map(|(pipeline, holder)| Op::ForceAcquire { pipeline, holder }),
        2 => lease().prop_map(|lease| Op::Renew { lease }),
        2 => lease().prop_map(|lease| Op::Release { lease }),
        4 => (
            lease(),
            prop::sample::select(vec![Trigger::Schedule, Trigger::Manual, Trigger::Backfill]),
        )
            .prop_map(|(lease, trigger)| Op::Begin { lease, trigger }),
        2 => (pipeline(), any::<bool>())
            .prop_map(|(pipeline, backfill)| Op::Request { pipeline, backfill }),
        8 => (lease(), run(), stream(), val(), prop::option::weighted(0.6, expect())).prop_map(
            |(lease, run, stream, value, expect)| Op::Advance { lease, run, stream, value, expect }
        ),
        4 => (
            lease(),
            run(),
            any::<bool>(),
            prop::collection::vec((stream(), val()), 0..3),
            prop::collection::vec((stream(), shape()), 0..2),
        )
            .prop_map(|(lease, run, failed, cursors, schemas)| Op::Finish {
                lease,
                run,
                failed,
                cursors,
                schemas,
            }),
        4 => (lease(), run(), stream(), shape())
            .prop_map(|(lease, run, stream, shape)| Op::Observe { lease, run, stream, shape }),
        2 => (back(), any::<bool>()).prop_map(|(decision, accept)| Op::Decide { decision, accept }),
        3 => (
            lease(),
            stream(),
            prop_oneof![
                3 => val().prop_map(Target::Value),
                1 => Just(Target::Initial),
                2 => (0u64..5).prop_map(Target::Version),
            ],
            prop::option::weighted(0.5, expect()),
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(|(lease, stream, target, expect, create, type_change)| Op::Reset {
                lease,
                stream,
                target,
                expect,
                create,
                type_change,
            }),
    ];
    if manual_clock {
        let wait =
            prop_oneof![Just(Wait::Half), Just(Wait::Ttl), Just(Wait::PastTtl),].prop_map(Op::Wait);
        prop_oneof![20 => ops, 1 => wait].boxed()
    } else {
        ops.boxed()
    }
}

fn shape() -> impl Strategy<Value = Shape> {
    prop::sample::select(Shape::ALL.to_vec())
}

fn create() -> impl Strategy<Value = Op> {
    (0..PIPELINES.len(), prop::bool::weighted(0.3), any::<bool>()).prop_map(
        |(pipeline, opaque, strict)| Op::Create {
            pipeline,
            opaque,
            strict,
        },
    )
}

/// A sequence: one or two pipelines created, then up to `max_len` ops. Without the creations
/// first, most ops of a short sequence would only meet `NotFound`.
pub fn sequence(manual_clock: bool, max_len: usize) -> impl Strategy<Value = Vec<Op>> {
    (
        prop::collection::vec(create(), 1..=2),
        prop::collection::vec(op(manual_clock), 1..=max_len),
    )
        .prop_map(|(mut creations, ops)| {
            creations.extend(ops);
            creations
        })
}
