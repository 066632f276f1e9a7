//! The CLI's one error type: what went wrong, what to do next, and the exit code.
//!
//! Catalog errors get a hint naming the command that helps (the list command for a `NotFound`,
//! the holder and expiry for `Leased`…); commands may replace it with a hint that knows more.

use std::fmt;
use std::process::ExitCode;

use hakiri_core::{Entity, Error};
use serde::Serialize;

/// How a failure ends the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Kind {
    /// The operation failed: exit 1.
    Failed,
    /// Bad usage or invalid input; nothing was changed: exit 2.
    Invalid,
    /// The catalog could not be reached; a retry may succeed: exit 3.
    Unavailable,
}

/// A failure of a command, printed as `error: …` plus `hint: …` lines.
// Boxed: errors travel through every `Result` of the CLI, and the catalog's error alone is
// larger than the success values.
#[derive(Debug)]
pub(crate) struct CliError(Box<Inner>);

#[derive(Debug)]
struct Inner {
    kind: Kind,
    /// A short machine-readable code (`not_found`, `leased`, `manifest`…).
    code: &'static str,
    message: String,
    hints: Vec<String>,
    /// Lines shown under the message (a quoted line of a file with a caret under the problem).
    context: Option<String>,
    /// Where in a file the problem is.
    location: Option<Location>,
    /// The catalog's typed error, for `--output json`.
    detail: Option<Error>,
}

/// A position in an input file, 1-based.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Location {
    pub(crate) file: String,
    pub(crate) line: usize,
    pub(crate) column: usize,
}

impl CliError {
    /// An operation that failed.
    pub(crate) fn failed(code: &'static str, message: impl Into<String>) -> Self {
        Self(Box::new(Inner {
            kind: Kind::Failed,
            code,
            message: message.into(),
            hints: Vec::new(),
            context: None,
            location: None,
            detail: None,
        }))
    }

    /// Invalid input: nothing was changed.
    pub(crate) fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        let mut error = Self::failed(code, message);
        error.0.kind = Kind::Invalid;
        error
    }

    /// The catalog could not be reached: a retry may succeed.
    pub(crate) fn unavailable(code: &'static str, message: impl Into<String>) -> Self {
        let mut error = Self::failed(code, message);
        error.0.kind = Kind::Unavailable;
        error
    }

    /// Adds a line saying what to do next.
    #[must_use]
    pub(crate) fn hint(mut self, hint: impl Into<String>) -> Self {
        self.0.hints.push(hint.into());
        self
    }

    /// Adds lines to show under the message.
    #[must_use]
    pub(crate) fn context(mut self, context: impl Into<String>) -> Self {
        self.0.context = Some(context.into());
        self
    }

    /// Records where in a file the problem is.
    #[must_use]
    pub(crate) fn location(mut self, location: Location) -> Self {
        self.0.location = Some(location);
        self
    }

    /// Replaces the hints.
    #[must_use]
    pub(crate) fn replace_hint(mut self, hint: impl Into<String>) -> Self {
        self.0.hints = vec![hint.into()];
        self
    }

    /// The machine-readable code.
    pub(crate) fn code(&self) -> &'static str {
        self.0.code
    }

    /// The catalog's error this one reports, if it reports one.
    pub(crate) fn catalog_error(&self) -> Option<&Error> {
        self.0.detail.as_ref()
    }

    /// Replaces the message (to say what was being done when the catalog refused).
    #[must_use]
    pub(crate) fn with_message(mut self, message: impl Into<String>) -> Self {
        self.0.message = message.into();
        self
    }

    /// The process exit code.
    pub(crate) fn exit_code(&self) -> ExitCode {
        ExitCode::from(match self.0.kind {
            Kind::Failed => 1,
            Kind::Invalid => 2,
            Kind::Unavailable => 3,
        })
    }

    /// The error as text: `error: …` and one `hint: …` line per hint.
    pub(crate) fn render_text(&self) -> String {
        let mut out = format!("error: {}", self.0.message);
        if let Some(context) = &self.0.context {
            out.push('\n');
            out.push_str(context);
        }
        for hint in &self.0.hints {
            out.push_str("\nhint: ");
            out.push_str(hint);
        }
        out
    }

    /// The error as one JSON object.
    pub(crate) fn render_json(&self) -> String {
        #[derive(Serialize)]
        struct Body<'a> {
            code: &'static str,
            kind: Kind,
            message: &'a str,
            hints: &'a [String],
            #[serde(skip_serializing_if = "Option::is_none")]
            location: Option<&'a Location>,
            #[serde(skip_serializing_if = "Option::is_none")]
            catalog: Option<&'a Error>,
        }
        let body = Body {
            code: self.0.code,
            kind: self.0.kind,
            message: &self.0.message,
            hints: &self.0.hints,
            location: self.0.location.as_ref(),
            catalog: self.0.detail.as_ref(),
        };
        serde_json::json!({ "error": body }).to_string()
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.message)
    }
}

impl From<Error> for CliError {
    fn from(error: Error) -> Self {
        let (kind, code) = match &error {
            Error::NotFound(_) => (Kind::Invalid, "not_found"),
            Error::AlreadyExists(_) => (Kind::Failed, "already_exists"),
            Error::Conflict { .. } => (Kind::Failed, "conflict"),
            Error::Fenced { .. } => (Kind::Failed, "fenced"),
            Error::Leased { .. } => (Kind::Failed, "leased"),
            Error::CursorRegression { .. } => (Kind::Failed, "cursor_regression"),
            Error::InvalidArgument(_) => (Kind::Invalid, "invalid_argument"),
            Error::FailedPrecondition(_) => (Kind::Failed, "failed_precondition"),
            Error::Unavailable(_) => (Kind::Unavailable, "unavailable"),
            // The credentials given (a token, a URL's user and password) are bad input.
            Error::Unauthenticated(_) => (Kind::Invalid, "unauthenticated"),
            Error::PermissionDenied(_) => (Kind::Failed, "permission_denied"),
            Error::NotMigrated(_) => (Kind::Failed, "not_migrated"),
            _ => (Kind::Failed, "backend"),
        };
        Self(Box::new(Inner {
            kind,
            code,
            message: error.to_string(),
            hints: default_hint(&error).into_iter().collect(),
            context: None,
            location: None,
            detail: Some(error),
        }))
    }
}

/// What to do next after a catalog error, when the command has nothing more specific to say.
fn default_hint(error: &Error) -> Option<String> {
    Some(match error {
        Error::NotFound(entity) => match entity {
            Entity::Pipeline { .. } => "list the project's pipelines with `hakiri pipelines list` (and check --project)".to_owned(),
            Entity::Run { .. } => "list runs with `hakiri runs list`".to_owned(),
            Entity::Cursor { pipeline, .. } => {
                format!("list the pipeline's cursors with `hakiri cursors list {pipeline}`")
            }
            Entity::CursorVersion { pipeline, stream, .. } => format!(
                "list the cursor's versions with `hakiri cursors history {pipeline} {stream}`"
            ),
            Entity::Schema { pipeline, stream, .. } => format!(
                "list the stream's versions with `hakiri schemas versions {pipeline} {stream}`; its streams are in `hakiri cursors list {pipeline}`"
            ),
            Entity::Decision { .. } => "list decisions with `hakiri decisions list`".to_owned(),
            _ => return None,
        },
        Error::Leased {
            pipeline,
            holder,
            expires_at,
            ..
        } => format!(
            "{holder} holds {pipeline} until {expires_at} unless it renews; wait for its run to end (`hakiri runs list --pipeline {pipeline} --status running`)"
        ),
        Error::Fenced { .. } => {
            "another holder took the pipeline's lease meanwhile; nothing was written — re-read the state and run the command again".to_owned()
        }
        Error::Conflict { .. } => {
            "someone changed it since it was read; nothing was written — run the command again".to_owned()
        }
        Error::CursorRegression { pipeline, stream, .. } => format!(
            "to move a monotonic cursor back, use `hakiri cursors reset {pipeline} {stream} --value … --reason …`"
        ),
        Error::Unavailable(_) => {
            "check that the catalog (--catalog / HAKIRI_CATALOG) is reachable, then retry".to_owned()
        }
        Error::Unauthenticated(_) => {
            "check the credentials: --token (or HAKIRI_TOKEN) for a Worker, the user and password in a postgres:// URL".to_owned()
        }
        Error::NotMigrated(_) => {
            "run `hakiri migrate` once against this catalog to create its tables".to_owned()
        }
        Error::Backend(_) => {
            "the catalog failed in a way a retry will not fix; run with -v for details".to_owned()
        }
        _ => return None,
    })
}

/// `Result` with a [`CliError`].
pub(crate) type CliResult<T = ()> = Result<T, CliError>;

#[cfg(test)]
mod tests {
    use hakiri_core::{Epoch, HolderId, PipelineId, Timestamp};

    use super::*;

    #[test]
    fn catalog_errors_carry_a_hint_and_an_exit_code() {
        let pipeline = PipelineId::new("orders").unwrap();
        let leased = CliError::from(Error::Leased {
            pipeline: pipeline.clone(),
            holder: HolderId::new("hakiri@box:1").unwrap(),
            epoch: Epoch(3),
            expires_at: Timestamp::from_millis(0),
        });
        let text = leased.render_text();
        assert!(
            text.starts_with("error: pipeline orders is leased by hakiri@box:1"),
            "{text}"
        );
        assert!(
            text.contains("hint: hakiri@box:1 holds orders until 1970-01-01T00:00:00.000Z"),
            "{text}"
        );
        assert_eq!(leased.exit_code(), ExitCode::from(1));

        let missing = CliError::from(Error::pipeline_not_found(&pipeline));
        assert!(missing.render_text().contains("hakiri pipelines list"));
        assert_eq!(missing.exit_code(), ExitCode::from(2));
        let json: serde_json::Value = serde_json::from_str(&missing.render_json()).unwrap();
        assert_eq!(json["error"]["code"], "not_found");
        assert_eq!(json["error"]["catalog"]["code"], "not_found");

        let down = CliError::from(Error::Unavailable("refused".into()));
        assert_eq!(down.exit_code(), ExitCode::from(3));
    }
}
