//! Decoding connector configs and resume tokens: `#[derive(Deserialize)]` types with
//! `#[serde(deny_unknown_fields)]`, read through [`serde_path_to_error`] so that an error names the
//! field at fault by its path (`target.pip_url`, `streams[1]`), and the field types shared by the
//! connectors, which validate as they decode.
//!
//! Rules that involve more than one field (`command` or `pip_url`, `output` or `target`) are a
//! small check after decoding, which reports through [`FieldError`] too.

use std::fmt;
use std::path::PathBuf;

use hakiri_core::StreamName;
use serde::de::{self, Deserialize, Deserializer, Unexpected, Visitor};

use super::stream_dir_name;
use crate::connector::ConnectorError;

/// A problem with one field of a config or a resume token: the field's path, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct FieldError {
    /// `target.config`, `streams[1]`, or an unknown field's own path; empty when the problem is
    /// the object's as a whole (a missing field, which serde's message names).
    path: String,
    problem: String,
}

impl FieldError {
    /// A problem with the field at `path` (see [`field`]), or with the whole object for `""`.
    pub(super) fn new(path: impl Into<String>, problem: impl fmt::Display) -> Self {
        Self {
            path: path.into(),
            problem: problem.to_string(),
        }
    }

    /// The run-failing error for this problem in `connector`'s config.
    pub(super) fn in_config(self, connector: &str) -> ConnectorError {
        ConnectorError::permanent(format!("{connector} config: {self}"))
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.problem)
        } else {
            write!(f, "{}: {}", self.path, self.problem)
        }
    }
}

/// The path of field `name` inside the object at `within` (`""` for the top level).
pub(super) fn field(within: &str, name: &str) -> String {
    if within.is_empty() {
        name.to_owned()
    } else {
        format!("{within}.{name}")
    }
}

/// Decodes `input` (a config's map or a JSON value) into `T`, naming the failing field's path.
pub(super) fn decode<'de, T, D>(input: D) -> Result<T, FieldError>
where
    T: Deserialize<'de>,
    D: Deserializer<'de, Error = serde_json::Error>,
{
    serde_path_to_error::deserialize(input).map_err(|e| {
        // The crate writes the empty path (the object itself) as ".".
        let path = Some(e.path().to_string()).filter(|p| p != ".");
        FieldError::new(path.unwrap_or_default(), e.into_inner())
    })
}

/// A string with more than whitespace in it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "String")]
pub(super) struct NonEmpty(pub(super) String);

impl TryFrom<String> for NonEmpty {
    type Error = &'static str;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        if value.trim().is_empty() {
            Err("must not be empty")
        } else {
            Ok(Self(value))
        }
    }
}

impl From<NonEmpty> for PathBuf {
    fn from(value: NonEmpty) -> Self {
        PathBuf::from(value.0)
    }
}

/// `deserialize_with` for a path that must not be empty.
pub(super) fn non_empty_path<'de, D: Deserializer<'de>>(input: D) -> Result<PathBuf, D::Error> {
    NonEmpty::deserialize(input).map(PathBuf::from)
}

/// An integer above zero (a count, a number of milliseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Positive(u64);

impl Positive {
    pub(super) fn get(self) -> u64 {
        self.0
    }
}

impl<'de> Deserialize<'de> for Positive {
    fn deserialize<D: Deserializer<'de>>(input: D) -> Result<Self, D::Error> {
        struct PositiveVisitor;

        impl Visitor<'_> for PositiveVisitor {
            type Value = Positive;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a positive integer")
            }

            fn visit_u64<E: de::Error>(self, value: u64) -> Result<Positive, E> {
                if value == 0 {
                    return Err(E::invalid_value(Unexpected::Unsigned(0), &self));
                }
                Ok(Positive(value))
            }

            fn visit_i64<E: de::Error>(self, value: i64) -> Result<Positive, E> {
                match u64::try_from(value) {
                    Ok(value) => self.visit_u64(value),
                    Err(_) => Err(E::invalid_value(Unexpected::Signed(value), &self)),
                }
            }
        }

        input.deserialize_u64(PositiveVisitor)
    }
}

/// `deserialize_with` for a stream name that is also one directory name.
pub(super) fn dir_stream<'de, D: Deserializer<'de>>(input: D) -> Result<StreamName, D::Error> {
    let name = String::deserialize(input)?;
    stream_dir_name(&name).map_err(de::Error::custom)
}

/// `deserialize_with` for an optional list of stream names that are also directory names
/// (with `#[serde(default)]`: a function given here is not called for a missing field).
pub(super) fn dir_streams<'de, D: Deserializer<'de>>(
    input: D,
) -> Result<Option<Vec<StreamName>>, D::Error> {
    /// One name of the list, validated where it sits so the error's path has its index.
    struct DirStream(StreamName);

    impl<'de> Deserialize<'de> for DirStream {
        fn deserialize<D: Deserializer<'de>>(input: D) -> Result<Self, D::Error> {
            dir_stream(input).map(DirStream)
        }
    }

    let names = Option::<Vec<DirStream>>::deserialize(input)?;
    Ok(names.map(|names| names.into_iter().map(|name| name.0).collect()))
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Sample {
        #[serde(deserialize_with = "non_empty_path")]
        path: PathBuf,
        every: Option<Positive>,
        #[serde(default, deserialize_with = "dir_streams")]
        streams: Option<Vec<StreamName>>,
        inner: Option<Inner>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        #[serde(deserialize_with = "dir_stream")]
        stream: StreamName,
    }

    fn sample(value: Value) -> Result<Sample, String> {
        decode(&value).map_err(|e| e.to_string())
    }

    #[test]
    fn good_values_decode() {
        let s = sample(json!({"path": "a/b", "every": 5, "streams": ["x", "y"]})).unwrap();
        assert_eq!(s.path, PathBuf::from("a/b"));
        assert_eq!(s.every, Some(Positive(5)));
        assert_eq!(s.streams.unwrap()[1].as_str(), "y");
        // Null is the same as absent for an optional field.
        let s = sample(json!({"path": "p", "every": null, "streams": null})).unwrap();
        assert!(s.every.is_none() && s.streams.is_none() && s.inner.is_none());
        let s = sample(json!({"path": "p", "inner": {"stream": "s"}})).unwrap();
        assert_eq!(s.inner.unwrap().stream.as_str(), "s");
    }

    #[test]
    fn each_refusal_names_the_field_by_its_path() {
        for (value, expected) in [
            (json!({}), "missing field `path`"),
            (
                json!({"path": "p", "evry": 1}),
                "evry: unknown field `evry`, expected one of `path`, `every`, `streams`, `inner`",
            ),
            (json!({"path": " "}), "path: must not be empty"),
            (
                json!({"path": 3}),
                "path: invalid type: integer `3`, expected a string",
            ),
            (
                json!({"path": "p", "every": 0}),
                "every: invalid value: integer `0`, expected a positive integer",
            ),
            (
                json!({"path": "p", "every": -2}),
                "every: invalid value: integer `-2`, expected a positive integer",
            ),
            (
                json!({"path": "p", "every": 1.5}),
                "every: invalid type: floating point `1.5`, expected a positive integer",
            ),
            (
                json!({"path": "p", "every": "5"}),
                "every: invalid type: string \"5\", expected a positive integer",
            ),
            (
                json!({"path": "p", "streams": "x"}),
                "streams: invalid type: string \"x\", expected a sequence",
            ),
            (
                json!({"path": "p", "streams": ["x", "../etc"]}),
                "streams[1]: names stream \"../etc\", which is not a single directory name",
            ),
            (
                json!({"path": "p", "streams": [""]}),
                "streams[0]: names a bad stream",
            ),
            (
                json!({"path": "p", "inner": {"stream": "."}}),
                "inner.stream: names stream \".\", which is not a single directory name",
            ),
            (
                json!({"path": "p", "inner": {"stream": "s", "extra": 1}}),
                "inner.extra: unknown field `extra`, expected `stream`",
            ),
        ] {
            let error = sample(value.clone()).unwrap_err();
            assert!(error.starts_with(expected), "{value}: {error}");
        }
    }

    #[test]
    fn errors_name_the_connector_then_the_path() {
        let error = FieldError::new(field("target", "pip_url"), "must not be empty");
        assert_eq!(
            error.in_config("singer").to_string(),
            "singer config: target.pip_url: must not be empty"
        );
        assert_eq!(
            FieldError::new(field("", "output"), "x").to_string(),
            "output: x"
        );
        assert_eq!(FieldError::new("", "missing").to_string(), "missing");
    }
}
