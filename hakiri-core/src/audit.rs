//! Who did what: [`Actor`], [`Reason`] and the append-only [`Event`] log.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::evolution::Verdict;
use crate::ids::{
    DecisionId, Epoch, Generation, HolderId, OperatorName, PipelineId, RunId, StreamName,
};
use crate::run::{RunStatus, Trigger};
use crate::time::Timestamp;

/// Longest [`Reason`], in bytes.
pub const MAX_REASON_LEN: usize = 4096;

/// Who made a change.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", content = "name", rename_all = "snake_case")]
pub enum Actor {
    /// The holder of a writer lease (a reconciler or connector run).
    Holder(HolderId),
    /// A named operator acting by hand (CLI, API).
    Operator(OperatorName),
    /// A pipeline's schema policy.
    Policy,
    /// The catalog itself (e.g. abandoning runs on a new epoch).
    System,
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Actor::Holder(h) => write!(f, "holder:{h}"),
            Actor::Operator(o) => write!(f, "operator:{o}"),
            Actor::Policy => f.write_str("policy"),
            Actor::System => f.write_str("system"),
        }
    }
}

/// Why something was done by hand: non-empty text of at most [`MAX_REASON_LEN`] bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Reason(String);

impl Reason {
    /// Validates `text`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if it is blank or too long.
    pub fn new(text: impl Into<String>) -> Result<Self> {
        let text = text.into();
        if text.trim().is_empty() {
            return Err(Error::invalid("a reason is required and must not be blank"));
        }
        if text.len() > MAX_REASON_LEN {
            return Err(Error::invalid(format!(
                "reason is {} bytes; the limit is {MAX_REASON_LEN}",
                text.len()
            )));
        }
        Ok(Self(text))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A reason from any text: cut at a character boundary to [`MAX_REASON_LEN`] bytes, and
    /// `"(no reason given)"` for blank text. For reasons that come from elsewhere (a connector's
    /// stop message) and must be recorded whatever they are.
    pub fn lossy(text: &str) -> Self {
        if text.trim().is_empty() {
            return Self("(no reason given)".to_owned());
        }
        let mut cut = text.len().min(MAX_REASON_LEN);
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        Self(text[..cut].to_owned())
    }

    /// For texts the crate writes itself, non-empty and short by construction.
    pub(crate) fn trusted(text: String) -> Self {
        debug_assert!(Self::new(text.clone()).is_ok());
        Self(text)
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Reason {
    type Error = Error;
    fn try_from(value: String) -> Result<Self> {
        Self::new(value)
    }
}

impl From<Reason> for String {
    fn from(r: Reason) -> String {
        r.0
    }
}

/// One entry of a project's event log: sequence numbers start at 1 and have no gaps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Position in the project's log.
    pub seq: u64,
    /// When (catalog clock).
    pub at: Timestamp,
    /// Who.
    pub actor: Actor,
    /// The pipeline concerned.
    pub pipeline: PipelineId,
    /// What happened.
    pub kind: EventKind,
}

/// What an [`Event`] records.
///
/// Lease renewals are not logged: they change no state anyone audits, and would flood the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum EventKind {
    /// A pipeline was created.
    PipelineCreated {
        /// Its generation (1).
        generation: Generation,
    },
    /// A pipeline's spec changed.
    PipelineUpdated {
        /// The new generation.
        generation: Generation,
    },
    /// A pipeline and its state were deleted.
    PipelineDeleted,
    /// A pipeline was paused.
    PipelinePaused {
        /// Why.
        reason: Reason,
    },
    /// A pipeline was resumed.
    PipelineResumed,
    /// An operator asked for a manual or backfill run.
    RunRequested {
        /// Which kind.
        trigger: Trigger,
    },
    /// A writer lease was taken.
    LeaseAcquired {
        /// By whom.
        holder: HolderId,
        /// The new epoch.
        epoch: Epoch,
        /// True when an operator took it over a live lease.
        forced: bool,
    },
    /// A writer lease was given up.
    LeaseReleased {
        /// The epoch released.
        epoch: Epoch,
    },
    /// A run began.
    RunBegun {
        /// The run.
        run: RunId,
        /// Its epoch.
        epoch: Epoch,
    },
    /// A run ended (including `Abandoned`).
    RunFinished {
        /// The run.
        run: RunId,
        /// How it ended.
        status: RunStatus,
    },
    /// A cursor got a new version by a checkpoint or a finish.
    CursorAdvanced {
        /// The stream.
        stream: StreamName,
        /// The new version.
        version: u64,
    },
    /// An operator reset or rolled back a cursor.
    CursorReset {
        /// The stream.
        stream: StreamName,
        /// The new version.
        version: u64,
        /// Why.
        reason: Reason,
    },
    /// A stream got a new schema version.
    SchemaVersionAdded {
        /// The stream.
        stream: StreamName,
        /// The new version number.
        version: u32,
    },
    /// A schema change was decided (by policy) or held for review.
    DecisionRecorded {
        /// The decision.
        decision: DecisionId,
        /// The stream.
        stream: StreamName,
        /// The verdict.
        verdict: Verdict,
    },
    /// An operator resolved a held decision.
    DecisionResolved {
        /// The decision.
        decision: DecisionId,
        /// The final verdict.
        verdict: Verdict,
    },
}

impl EventKind {
    /// The stream and version of the cursor write this event records, if it records one: every
    /// cursor write emits exactly one `CursorAdvanced` or `CursorReset` (invariant 7 in
    /// `docs/guarantees.md`).
    pub fn cursor_version(&self) -> Option<(&StreamName, u64)> {
        match self {
            EventKind::CursorAdvanced { stream, version }
            | EventKind::CursorReset {
                stream, version, ..
            } => Some((stream, *version)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_events_name_the_version_they_record() {
        let s = StreamName::new("s").unwrap();
        let advanced = EventKind::CursorAdvanced {
            stream: s.clone(),
            version: 3,
        };
        let reset = EventKind::CursorReset {
            stream: s.clone(),
            version: 4,
            reason: Reason::lossy("replay"),
        };
        assert_eq!(advanced.cursor_version(), Some((&s, 3)));
        assert_eq!(reset.cursor_version(), Some((&s, 4)));
        assert_eq!(EventKind::PipelineDeleted.cursor_version(), None);
    }

    #[test]
    fn reasons_must_be_present_and_bounded() {
        assert!(Reason::new("replaying last week").is_ok());
        assert!(Reason::new("   ").is_err());
        assert!(Reason::new("x".repeat(MAX_REASON_LEN + 1)).is_err());
        assert_eq!(Reason::lossy("  ").as_str(), "(no reason given)");
        let long = Reason::lossy(&"é".repeat(MAX_REASON_LEN));
        assert!(long.as_str().len() <= MAX_REASON_LEN && long.as_str().chars().all(|c| c == 'é'));
    }

    #[test]
    fn actors_display_with_their_kind() {
        let op = Actor::Operator(OperatorName::new("alice").unwrap());
        assert_eq!(op.to_string(), "operator:alice");
        let json = serde_json::to_value(&op).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"kind": "operator", "name": "alice"})
        );
        assert_eq!(serde_json::from_value::<Actor>(json).unwrap(), op);
    }
}
