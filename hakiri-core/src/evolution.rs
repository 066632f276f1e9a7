//! Schema evolution: versions, the policy that judges a change, and the decisions it records.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::audit::{Actor, Reason};
use crate::error::{Entity, Error, Result};
use crate::ids::{DecisionId, PipelineId, RunId, StreamName};
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
