//! Schema evolution: versions, the policy that judges a change, and the decisions it records.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::audit::{Actor, EventKind, Reason};
use crate::error::{Entity, Error, Result};
use crate::ids::{DecisionId, PipelineId, RunId, StreamName};
use crate::pipeline::{Pause, Pipeline};
use crate::schema::{diff, ChangeClass, Fingerprint, Schema, SchemaDiff};
use crate::time::Timestamp;

/// What a policy does with one class of change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyAction {
    /// Record a new schema version and carry on.
    Accept,
    /// Refuse the change; the run that saw it should fail.
    Reject,
    /// Hold the change for an operator and pause the pipeline.
    Hold,
}

/// A pipeline's schema policy: one action per [`ChangeClass`].
///
/// The default accepts additive and widening changes and holds breaking ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SchemaPolicy {
    /// For new optional columns.
    pub additive: PolicyAction,
    /// For relaxed types or nullability.
    pub widening: PolicyAction,
    /// For everything else.
    pub breaking: PolicyAction,
}

impl Default for SchemaPolicy {
    fn default() -> Self {
        Self {
            additive: PolicyAction::Accept,
            widening: PolicyAction::Accept,
            breaking: PolicyAction::Hold,
        }
    }
}

impl SchemaPolicy {
    /// Holds every change for review.
    pub const FROZEN: SchemaPolicy = SchemaPolicy {
        additive: PolicyAction::Hold,
        widening: PolicyAction::Hold,
        breaking: PolicyAction::Hold,
    };

    /// The verdict for a change of class `class`.
    pub fn verdict(&self, class: ChangeClass) -> Verdict {
        let action = match class {
            ChangeClass::Additive => self.additive,
            ChangeClass::Widening => self.widening,
            ChangeClass::Breaking => self.breaking,
        };
        match action {
            PolicyAction::Accept => Verdict::Accepted,
            PolicyAction::Reject => Verdict::Rejected,
            PolicyAction::Hold => Verdict::Held,
        }
    }
}

/// The state of an evolution decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The new schema is the stream's current version.
    Accepted,
    /// The change was refused; the current version stays.
    Rejected,
    /// Waiting for an operator; the pipeline is paused.
    Held,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Accepted => "accepted",
            Verdict::Rejected => "rejected",
            Verdict::Held => "held",
        })
    }
}

/// One version of a stream's schema; versions are append-only and numbered from 1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SchemaVersion {
    /// The pipeline.
    pub pipeline: PipelineId,
    /// The stream.
    pub stream: StreamName,
    /// 1, 2, 3…
    pub version: u32,
    /// The schema.
    pub schema: Schema,
    /// Its fingerprint.
    pub fingerprint: Fingerprint,
    /// The decision that accepted it (none for a stream's first version).
    pub decision: Option<DecisionId>,
    /// The run that observed it.
    pub run: Option<RunId>,
    /// When it was recorded.
    pub created_at: Timestamp,
}

/// A recorded judgement on a schema change, kept forever.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// Its id.
    pub id: DecisionId,
    /// The pipeline.
    pub pipeline: PipelineId,
    /// The stream.
    pub stream: StreamName,
    /// The run that observed the change.
    pub run: Option<RunId>,
    /// The version the change is relative to.
    pub from_version: u32,
    /// The version created when the change was accepted.
    pub to_version: Option<u32>,
    /// The observed schema.
    pub proposed: Schema,
    /// Its fingerprint.
    pub fingerprint: Fingerprint,
    /// What changed.
    pub diff: SchemaDiff,
    /// How disruptive it is.
    pub class: ChangeClass,
    /// The verdict; `Held` until an operator resolves it.
    pub verdict: Verdict,
    /// Who gave the current verdict ([`Actor::Policy`] or an operator).
    pub decided_by: Actor,
    /// Why.
    pub reason: Reason,
    /// When the change was observed.
    pub created_at: Timestamp,
    /// When the verdict became final (none while held).
    pub decided_at: Option<Timestamp>,
}

impl Decision {
    /// Whether an operator still has to accept or reject it.
    pub fn is_pending(&self) -> bool {
        self.verdict == Verdict::Held
    }

    /// The record of a change judged by the pipeline's policy (from [`Evolution::Changed`]).
    ///
    /// Held decisions have no `decided_at` yet; `to_version` is set by the backend when it
    /// appends the accepted version.
    pub fn by_policy(
        id: DecisionId,
        proposal: Proposal<'_>,
        diff: SchemaDiff,
        class: ChangeClass,
        verdict: Verdict,
        now: Timestamp,
    ) -> Self {
        Self {
            id,
            pipeline: proposal.pipeline.clone(),
            stream: proposal.stream.clone(),
            run: proposal.run,
            from_version: proposal.from_version,
            to_version: None,
            fingerprint: proposal.schema.fingerprint(),
            proposed: proposal.schema.clone(),
            diff,
            class,
            verdict,
            decided_by: Actor::Policy,
            reason: policy_reason(class, verdict),
            created_at: now,
            decided_at: (verdict != Verdict::Held).then_some(now),
        }
    }
}

/// A schema observed on a stream that differs from its current version.
#[derive(Debug, Clone, Copy)]
pub struct Proposal<'a> {
    /// The pipeline.
    pub pipeline: &'a PipelineId,
    /// The stream.
    pub stream: &'a StreamName,
    /// The run that observed it.
    pub run: Option<RunId>,
    /// The stream's current version number.
    pub from_version: u32,
    /// The observed schema.
    pub schema: &'a Schema,
}

/// What observing a schema means, decided by [`plan_observation`].
#[derive(Debug, Clone, PartialEq)]
pub enum Evolution {
    /// Same fingerprint as the current version: nothing to record.
    Unchanged,
    /// The stream's first schema: record version 1, no decision.
    Initial,
    /// The same change is already held for review: nothing new to record.
    AlreadyHeld(DecisionId),
    /// A change: record a decision with this verdict (and a version if accepted).
    Changed {
        /// What changed.
        diff: SchemaDiff,
        /// Its class.
        class: ChangeClass,
        /// The policy's verdict.
        verdict: Verdict,
    },
}

/// The evolution rule: compare `observed` with the stream's current version and apply `policy`.
///
/// `held` lists the stream's pending decisions; re-observing a held schema records nothing new.
pub fn plan_observation(
    current: Option<&SchemaVersion>,
    held: &[&Decision],
    observed: &Schema,
    policy: &SchemaPolicy,
) -> Evolution {
    let Some(current) = current else {
        return Evolution::Initial;
    };
    let fingerprint = observed.fingerprint();
    if current.fingerprint == fingerprint {
        return Evolution::Unchanged;
    }
    if let Some(pending) = held.iter().find(|d| d.fingerprint == fingerprint) {
        return Evolution::AlreadyHeld(pending.id);
    }
    let diff = diff(&current.schema, observed);
    // Distinct fingerprints mean a non-empty diff, so there is always a class.
    let class = diff.classify().unwrap_or(ChangeClass::Breaking);
    Evolution::Changed {
        diff,
        class,
        verdict: policy.verdict(class),
    }
}

/// The reason text recorded for a policy's verdict.
pub fn policy_reason(class: ChangeClass, verdict: Verdict) -> Reason {
    let text = match verdict {
        Verdict::Accepted => format!("{class} change accepted by the pipeline's schema policy"),
        Verdict::Rejected => format!("{class} change rejected by the pipeline's schema policy"),
        Verdict::Held => format!("{class} change held for review by the pipeline's schema policy"),
    };
    Reason::trusted(text)
}

/// How an operator resolves a held decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resolution {
    /// Accept: the proposed schema becomes the current version; the pipeline resumes when no other
    /// decision is held.
    Accept,
    /// Reject: the current version stays; the pipeline resumes when no other decision is held.
    Reject,
}

/// An operator's resolution of a held decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decide {
    /// Accept or reject.
    pub resolution: Resolution,
    /// Who (recorded on the decision).
    pub by: Actor,
    /// Why (recorded on the decision).
    pub reason: Reason,
}

/// The resolution rule: only a held decision can be resolved (pending → decided, once).
///
/// Returns the decided record; the caller sets `to_version` when it appends the accepted version.
///
/// # Errors
/// `Conflict` if the decision is no longer held.
pub fn plan_decide(decision: &Decision, decide: &Decide, now: Timestamp) -> Result<Decision> {
    if !decision.is_pending() {
        return Err(Error::conflict(
            Entity::Decision {
                decision: decision.id,
            },
            Verdict::Held,
            decision.verdict,
        ));
    }
    Ok(Decision {
        verdict: match decide.resolution {
            Resolution::Accept => Verdict::Accepted,
            Resolution::Reject => Verdict::Rejected,
        },
        decided_by: decide.by.clone(),
        reason: decide.reason.clone(),
        decided_at: Some(now),
        ..decision.clone()
    })
}

/// A schema a run reports on one stream, with what the observation rule needs to know.
#[derive(Debug, Clone)]
pub struct Observed<'a> {
    /// The pipeline (its policy and pause state).
    pub pipeline: &'a Pipeline,
    /// The stream.
    pub stream: &'a StreamName,
    /// The run that observed it.
    pub run: Option<RunId>,
    /// Who reports it (the lease holder).
    pub observer: &'a Actor,
    /// The schema.
    pub schema: Schema,
    /// The catalog clock's time.
    pub now: Timestamp,
}

/// Everything a backend writes for one observed schema, decided by [`observe`] — in one atomic
/// step with whatever else the operation writes.
#[derive(Debug, Clone, PartialEq)]
pub struct ObservationWrite {
    /// The answer for the connector.
    pub observation: Observation,
    /// A version to append (the stream's first, or an accepted change).
    pub version: Option<SchemaVersion>,
    /// A decision to record (with `to_version` set when accepted).
    pub decision: Option<Decision>,
    /// A pause to put on the pipeline (a held change on an unpaused pipeline).
    pub pause: Option<Pause>,
    /// The events to append, in order.
    pub events: Vec<(Actor, EventKind)>,
}

/// The observation rule, whole: compares `observed` with the stream's `current` version and its
/// `held` decisions, applies the pipeline's policy, and says what to write. `next_decision` is
/// called only when a decision is recorded.
///
/// # Errors
/// Whatever `next_decision` returns.
pub fn observe(
    observed: Observed<'_>,
    current: Option<SchemaVersion>,
    held: Vec<Decision>,
    next_decision: impl FnOnce() -> Result<DecisionId>,
) -> Result<ObservationWrite> {
    let Observed {
        pipeline,
        stream,
        run,
        observer,
        schema,
        now,
    } = observed;
    let held_refs: Vec<&Decision> = held.iter().collect();
    let evolution = plan_observation(
        current.as_ref(),
        &held_refs,
        &schema,
        &pipeline.spec.schema_policy,
    );
    let unchanged = |current: SchemaVersion, verdict, decision| ObservationWrite {
        observation: Observation {
            verdict,
            current,
            decision,
        },
        version: None,
        decision: None,
        pause: None,
        events: Vec::new(),
    };
    let new_version = |number: u32, schema: Schema, decision: Option<DecisionId>| SchemaVersion {
        pipeline: pipeline.id().clone(),
        stream: stream.clone(),
        version: number,
        fingerprint: schema.fingerprint(),
        schema,
        decision,
        run,
        created_at: now,
    };
    let added = |version: &SchemaVersion, by: &Actor| {
        let kind = EventKind::SchemaVersionAdded {
            stream: stream.clone(),
            version: version.version,
        };
        (by.clone(), kind)
    };
    match (evolution, current) {
        (Evolution::Initial, _) => {
            let version = new_version(1, schema, None);
            Ok(ObservationWrite {
                observation: Observation {
                    verdict: Verdict::Accepted,
                    current: version.clone(),
                    decision: None,
                },
                events: vec![added(&version, observer)],
                version: Some(version),
                decision: None,
                pause: None,
            })
        }
        (Evolution::Unchanged, Some(current)) => Ok(unchanged(current, Verdict::Accepted, None)),
        (Evolution::AlreadyHeld(id), Some(current)) => {
            let decision = held.into_iter().find(|d| d.id == id);
            Ok(unchanged(current, Verdict::Held, decision))
        }
        (
            Evolution::Changed {
                diff,
                class,
                verdict,
            },
            Some(current),
        ) => {
            let id = next_decision()?;
            let proposal = Proposal {
                pipeline: pipeline.id(),
                stream,
                run,
                from_version: current.version,
                schema: &schema,
            };
            let mut decision = Decision::by_policy(id, proposal, diff, class, verdict, now);
            let mut events = vec![(
                Actor::Policy,
                EventKind::DecisionRecorded {
                    decision: id,
                    stream: stream.clone(),
                    verdict,
                },
            )];
            let (version, pause) = match verdict {
                Verdict::Accepted => {
                    let version = new_version(current.version + 1, schema, Some(id));
                    decision.to_version = Some(version.version);
                    events.push(added(&version, &Actor::Policy));
                    (Some(version), None)
                }
                Verdict::Held => {
                    let pause = crate::pipeline::hold_pause(pipeline, &decision, now);
                    if let Some(pause) = &pause {
                        events.push((
                            Actor::Policy,
                            EventKind::PipelinePaused {
                                reason: pause.reason.clone(),
                            },
                        ));
                    }
                    (None, pause)
                }
                Verdict::Rejected => (None, None),
            };
            Ok(ObservationWrite {
                observation: Observation {
                    verdict,
                    current: version.clone().unwrap_or(current),
                    decision: Some(decision.clone()),
                },
                version,
                decision: Some(decision),
                pause,
                events,
            })
        }
        // A change needs a current version; `plan_observation` never says otherwise.
        (_, None) => Err(Error::Backend(
            "a changed schema has no current version".into(),
        )),
    }
}

/// Everything a backend writes to resolve a held decision, decided by [`resolve`].
#[derive(Debug, Clone, PartialEq)]
pub struct ResolutionWrite {
    /// The decided record (with `to_version` set when accepted).
    pub decision: Decision,
    /// The version to append when accepted.
    pub version: Option<SchemaVersion>,
    /// Whether to lift the pipeline's pause (the policy's, once nothing else is held).
    pub resume: bool,
    /// The events to append, in order.
    pub events: Vec<(Actor, EventKind)>,
}

/// The resolution rule, whole: pending → decided once; accepting appends the proposed schema
/// after the stream's `current_version` (0 if none); the policy's pause is lifted when
/// `other_held` (the pipeline's held decisions besides this one) is zero.
///
/// # Errors
/// `Conflict` if the decision is no longer held.
pub fn resolve(
    decision: &Decision,
    decide: &Decide,
    pipeline: &Pipeline,
    current_version: u32,
    other_held: usize,
    now: Timestamp,
) -> Result<ResolutionWrite> {
    let mut decided = plan_decide(decision, decide, now)?;
    let mut events = Vec::new();
    let version = (decided.verdict == Verdict::Accepted).then(|| {
        let version = SchemaVersion {
            pipeline: decided.pipeline.clone(),
            stream: decided.stream.clone(),
            version: current_version + 1,
            fingerprint: decided.fingerprint.clone(),
            schema: decided.proposed.clone(),
            decision: Some(decided.id),
            run: decided.run,
            created_at: now,
        };
        decided.to_version = Some(version.version);
        events.push((
            decide.by.clone(),
            EventKind::SchemaVersionAdded {
                stream: decided.stream.clone(),
                version: version.version,
            },
        ));
        version
    });
    events.push((
        decide.by.clone(),
        EventKind::DecisionResolved {
            decision: decided.id,
            verdict: decided.verdict,
        },
    ));
    let resume = crate::pipeline::lifts_pause(pipeline, other_held);
    if resume {
        events.push((decide.by.clone(), EventKind::PipelineResumed));
    }
    Ok(ResolutionWrite {
        decision: decided,
        version,
        resume,
        events,
    })
}

/// What [`observe_schema`](crate::Catalog::observe_schema) tells the connector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    /// `Accepted`: carry on with the observed schema. `Rejected` or `Held`: stop the run.
    pub verdict: Verdict,
    /// The stream's current version after the observation.
    pub current: SchemaVersion,
    /// The decision recorded (or already held) for this change, if it was a change.
    pub decision: Option<Decision>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{Column, ColumnType};

    fn version(schema: Schema) -> SchemaVersion {
        SchemaVersion {
            pipeline: PipelineId::new("p").unwrap(),
            stream: StreamName::new("s").unwrap(),
            version: 1,
            fingerprint: schema.fingerprint(),
            schema,
            decision: None,
            run: None,
            created_at: Timestamp::EPOCH,
        }
    }

    fn schema(columns: &[(&str, ColumnType, bool)]) -> Schema {
        Schema::new(
            columns
                .iter()
                .map(|(n, t, null)| Column::new(*n, *t, *null))
                .collect(),
            vec![],
        )
        .unwrap()
    }

    #[test]
    fn default_policy_accepts_additive_and_holds_breaking() {
        let base = schema(&[("id", ColumnType::Integer, false)]);
        let current = version(base.clone());
        let policy = SchemaPolicy::default();
        assert_eq!(
            plan_observation(None, &[], &base, &policy),
            Evolution::Initial
        );
        assert_eq!(
            plan_observation(Some(&current), &[], &base, &policy),
            Evolution::Unchanged
        );
        let added = schema(&[
            ("id", ColumnType::Integer, false),
            ("n", ColumnType::String, true),
        ]);
        assert!(matches!(
            plan_observation(Some(&current), &[], &added, &policy),
            Evolution::Changed {
                class: ChangeClass::Additive,
                verdict: Verdict::Accepted,
                ..
            }
        ));
        let retyped = schema(&[("id", ColumnType::Boolean, false)]);
        assert!(matches!(
            plan_observation(Some(&current), &[], &retyped, &policy),
            Evolution::Changed {
                class: ChangeClass::Breaking,
                verdict: Verdict::Held,
                ..
            }
        ));
        assert_eq!(
            SchemaPolicy::FROZEN.verdict(ChangeClass::Additive),
            Verdict::Held
        );
    }

    #[test]
    fn a_decision_is_decided_once() {
        let proposed = schema(&[("id", ColumnType::Boolean, false)]);
        let held = Decision {
            id: DecisionId(1),
            pipeline: PipelineId::new("p").unwrap(),
            stream: StreamName::new("s").unwrap(),
            run: None,
            from_version: 1,
            to_version: None,
            fingerprint: proposed.fingerprint(),
            proposed,
            diff: SchemaDiff::default(),
            class: ChangeClass::Breaking,
            verdict: Verdict::Held,
            decided_by: Actor::Policy,
            reason: policy_reason(ChangeClass::Breaking, Verdict::Held),
            created_at: Timestamp::EPOCH,
            decided_at: None,
        };
        let decide = Decide {
            resolution: Resolution::Accept,
            by: Actor::System,
            reason: Reason::new("ok").unwrap(),
        };
        let decided = plan_decide(&held, &decide, Timestamp::from_millis(5)).unwrap();
        assert_eq!(decided.verdict, Verdict::Accepted);
        assert_eq!(decided.decided_at, Some(Timestamp::from_millis(5)));
        assert!(matches!(
            plan_decide(&decided, &decide, Timestamp::EPOCH),
            Err(Error::Conflict { .. })
        ));
    }
}
