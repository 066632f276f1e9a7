//! Validated identifiers.
//!
//! Every identifier is a newtype that can only hold a valid value: constructors and
//! deserialisation both go through the same check, so a backend never sees a bad id.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::time::Timestamp;

/// Longest slug id (project, pipeline) in bytes.
pub const MAX_SLUG_LEN: usize = 128;
/// Longest free-form name (stream, holder, operator, column) in bytes.
pub const MAX_NAME_LEN: usize = 255;

/// A slug: ASCII letters, digits, `.`, `_`, `-`, starting with a letter or digit.
///
/// Slugs appear in URLs (`/v1/projects/{project}/…`) and file names, hence the narrow alphabet.
fn check_slug(what: &str, value: &str) -> Result<()> {
    let valid_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    match value.chars().next() {
        None => Err(Error::invalid(format!("{what} must not be empty"))),
        Some(_) if value.len() > MAX_SLUG_LEN => Err(Error::invalid(format!(
            "{what} is {} bytes long; the limit is {MAX_SLUG_LEN}",
            value.len()
        ))),
        Some(first) if !first.is_ascii_alphanumeric() => Err(Error::invalid(format!(
            "{what} {value:?} must start with an ASCII letter or digit"
        ))),
        Some(_) => match value.chars().find(|c| !valid_char(*c)) {
            Some(bad) => Err(Error::invalid(format!(
                "{what} {value:?} contains {bad:?}; use ASCII letters, digits, '.', '_' or '-'"
            ))),
            None => Ok(()),
        },
    }
}

/// A free-form name: printable text without control characters or surrounding whitespace.
pub(crate) fn check_name(what: &str, value: &str) -> Result<()> {
    if value.is_empty() {
        return Err(Error::invalid(format!("{what} must not be empty")));
    }
    if value.len() > MAX_NAME_LEN {
        return Err(Error::invalid(format!(
            "{what} is {} bytes long; the limit is {MAX_NAME_LEN}",
            value.len()
        )));
    }
    if value.chars().any(char::is_control) {
        return Err(Error::invalid(format!(
            "{what} {value:?} contains a control character"
        )));
    }
    if value.trim() != value {
        return Err(Error::invalid(format!(
            "{what} {value:?} has leading or trailing whitespace"
        )));
    }
    Ok(())
}

/// A connector reference: printable ASCII without spaces, e.g. `jsonl` or `singer:tap-github`.
fn check_connector(what: &str, value: &str) -> Result<()> {
    check_name(what, value)?;
    match value.chars().find(|c| !c.is_ascii_graphic()) {
        Some(bad) => Err(Error::invalid(format!(
            "{what} {value:?} contains {bad:?}; use printable ASCII without spaces"
        ))),
        None => Ok(()),
    }
}

/// An identifier is text checked once and shared after: a clone (every event, cursor and history
/// entry carries its pipeline's and stream's) counts a reference instead of copying the text.
macro_rules! string_id {
    ($(#[$meta:meta])* $name:ident, $what:literal, $check:path) => {
        $(#[$meta])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(Arc<str>);

        impl $name {
            /// Validates `value` and wraps it.
            ///
            /// # Errors
            /// [`Error::InvalidArgument`] when the value breaks the rules above.
            pub fn new(value: impl Into<String>) -> Result<Self> {
                let value = value.into();
                $check($what, &value)?;
                Ok(Self(value.into()))
            }

            /// The identifier as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }

        impl FromStr for $name {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self> {
                Self::new(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = Error;
            fn try_from(value: String) -> Result<Self> {
                Self::new(value)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = Error;
            fn try_from(value: &str) -> Result<Self> {
                Self::new(value)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0.as_ref().to_owned()
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

string_id!(
    /// The scope of one catalog: a slug (ASCII letters, digits, `.`, `_`, `-`; ≤ 128 bytes).
    ProjectId,
    "project id",
    check_slug
);
string_id!(
    /// A pipeline's id within its project: a slug like [`ProjectId`].
    PipelineId,
    "pipeline id",
    check_slug
);
string_id!(
    /// A stream (table, endpoint) within a pipeline: printable text, ≤ 255 bytes.
    StreamName,
    "stream name",
    check_name
);
string_id!(
    /// Who holds a writer lease (a reconciler process, an operator session): printable text.
    ///
    /// Make it unique per process (host, pid, a random suffix): a restarted process that reuses a
    /// holder id does not inherit the old process's lease.
    HolderId,
    "holder id",
    check_name
);
string_id!(
    /// A named human or tool that changed something by hand: printable text.
    OperatorName,
    "operator name",
    check_name
);
string_id!(
    /// Which connector a pipeline runs: printable ASCII without spaces, e.g. `jsonl`,
    /// `singer:tap-github`.
    ConnectorRef,
    "connector",
    check_connector
);

/// A run's id: a UUIDv7, so ids sort by start time.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RunId(Uuid);

impl RunId {
    /// Builds a version-7 id from the catalog clock's `now` and 10 bytes that make it unique.
    ///
    /// Backends choose the bytes: random ones where several writers share a catalog, a counter
    /// where one lock orders every begin (which also keeps ids of one millisecond in order).
    pub fn from_parts(now: Timestamp, entropy: [u8; 10]) -> Self {
        let millis = u64::try_from(now.as_millis()).unwrap_or(0);
        Self(uuid::Builder::from_unix_timestamp_millis(millis, &entropy).into_uuid())
    }

    /// The id of a run begun at `now` after `last`, the previous run's id: from the clock and
    /// `entropy` ([`RunId::from_parts`]), and always above `last` — even within one millisecond,
    /// or when the clock went back — so runs sort in begin order. This is the one rule every
    /// backend orders run ids by.
    pub fn next(now: Timestamp, last: Option<RunId>, entropy: [u8; 10]) -> Self {
        let id = Self::from_parts(now, entropy);
        let Some(last) = last.filter(|last| id <= *last) else {
            return id;
        };
        let bumped = Uuid::from_u128(last.0.as_u128().wrapping_add(1));
        if bumped.get_version_num() == 7 && bumped.get_variant() == uuid::Variant::RFC4122 {
            return Self(bumped);
        }
        // The last millisecond's ids are used up: move on to the next one.
        let mut millis = [0u8; 8];
        millis[2..].copy_from_slice(&last.0.as_bytes()[..6]);
        let next = i64::try_from(u64::from_be_bytes(millis)).unwrap_or(i64::MAX - 1) + 1;
        Self::from_parts(Timestamp::from_millis(next), entropy)
    }

    /// Wraps an existing UUID.
    pub fn from_uuid(uuid: Uuid) -> Self {
        Self(uuid)
    }

    /// The underlying UUID.
    pub fn as_uuid(&self) -> &Uuid {
        &self.0
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl fmt::Debug for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RunId({})", self.0.hyphenated())
    }
}

impl FromStr for RunId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Uuid::parse_str(s)
            .map(Self)
            .map_err(|e| Error::invalid(format!("run id {s:?} is not a UUID: {e}")))
    }
}

impl TryFrom<String> for RunId {
    type Error = Error;
    fn try_from(value: String) -> Result<Self> {
        value.parse()
    }
}

impl From<RunId> for String {
    fn from(id: RunId) -> String {
        id.to_string()
    }
}

macro_rules! counter {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub u64);

        impl $name {
            /// The raw number.
            pub fn get(self) -> u64 {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }
    };
}

counter!(
    /// A fencing token: strictly increases on every successful lease acquisition.
    ///
    /// Kept below 2^53 so that it survives JavaScript numbers (Durable Object storage).
    Epoch
);
counter!(
    /// A pipeline spec's version: 1 on creation, +1 on every change.
    Generation
);
counter!(
    /// An evolution decision's id, unique within a project.
    DecisionId
);

impl Generation {
    /// The generation of a freshly created pipeline.
    pub const FIRST: Generation = Generation(1);

    /// The next generation.
    #[must_use]
    pub fn next(self) -> Generation {
        Generation(self.0 + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_stay_above_the_previous_run_whatever_the_clock_does() {
        let now = Timestamp::from_millis(1_800_000_000_000);
        let first = RunId::next(now, None, [7; 10]);
        assert_eq!(first, RunId::from_parts(now, [7; 10]));
        let mut last = first;
        // Within one millisecond, with the same entropy (a counter that did not move).
        for _ in 0..100 {
            let next = RunId::next(now, Some(last), [7; 10]);
            assert!(next > last);
            assert_eq!(next.as_uuid().get_version_num(), 7);
            last = next;
        }
        // A clock that went back.
        let earlier = RunId::next(
            Timestamp::from_millis(now.as_millis() - 5_000),
            Some(last),
            [0; 10],
        );
        assert!(earlier > last);
        // A millisecond whose ids are used up moves to the next one.
        let full = RunId::from_parts(now, [0xff; 10]);
        let after = RunId::next(now, Some(full), [0; 10]);
        assert!(after > full);
        assert_eq!(after.as_uuid().get_version_num(), 7);
        let later = RunId::next(
            Timestamp::from_millis(now.as_millis() + 1),
            Some(last),
            [1; 10],
        );
        assert!(later > last);
    }

    #[test]
    fn slugs_accept_the_documented_alphabet() {
        for ok in ["a", "orders", "Orders-2024_v1.2", "0day"] {
            assert!(PipelineId::new(ok).is_ok(), "{ok}");
        }
        let long = "a".repeat(MAX_SLUG_LEN + 1);
        for bad in [
            "",
            "-lead",
            ".hidden",
            "with space",
            "slash/y",
            "ü",
            long.as_str(),
        ] {
            let err = PipelineId::new(bad).unwrap_err();
            assert!(matches!(err, Error::InvalidArgument(_)), "{bad}: {err}");
        }
    }

    #[test]
    fn names_reject_control_characters_and_padding() {
        assert!(StreamName::new("public.users").is_ok());
        assert!(StreamName::new("Käufe 2024").is_ok());
        for bad in ["", " users", "users ", "a\nb", "tab\there"] {
            assert!(StreamName::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ids_deserialise_through_validation() {
        let err = serde_json::from_str::<ProjectId>("\"bad id\"").unwrap_err();
        assert!(err.to_string().contains("project id"), "{err}");
        let ok: ProjectId = serde_json::from_str("\"acme\"").unwrap();
        assert_eq!(ok.as_str(), "acme");
    }

    #[test]
    fn run_ids_sort_by_time_then_entropy() {
        let t = Timestamp::from_millis(1_700_000_000_000);
        let a = RunId::from_parts(t, [0; 10]);
        let b = RunId::from_parts(t, [0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        let c = RunId::from_parts(Timestamp::from_millis(1_700_000_000_001), [0; 10]);
        assert!(a < b && b < c);
        assert_eq!(a.to_string().parse::<RunId>().unwrap(), a);
        assert!("not-a-uuid".parse::<RunId>().is_err());
    }
}
