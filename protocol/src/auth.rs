//! Who may send which request, and as whom it is audited: the grants file, its roles, the
//! constant-time token check, `whoami`, and stamping an operator request's actor from the grant.
//!
//! The grants are a JSON list (the Worker reads it from its `HAKIRI_TOKENS` secret):
//!
//! ```json
//! [
//!   {"name": "reconciler", "sha256": "<64 hex digits>", "projects": ["acme"], "role": "write"},
//!   {"name": "ops", "token": "<the token itself>", "projects": "*", "role": "admin"}
//! ]
//! ```
//!
//! Each grant names its token by SHA-256 digest (preferred: the file then holds no usable token)
//! or verbatim, the projects it covers (`"*"` for all), a role — `read`, `write` or `admin`,
//! ordered like [`Access`] — and a name, the operator its requests are audited as. A presented
//! token is hashed and compared with every grant's digest in constant time; a token may have
//! several grants (say, `write` on one project and `read` on another).
//!
//! A request that acts as an operator (it carries a `by`, [`Request::actor`]) is recorded under
//! the grant's name, whatever the client claims ([`Request::stamped_by`]); a grant without a name
//! cannot send one (ADR 0023).

use std::fmt;
use std::sync::Arc;

use hakiri_core::{Actor, Error, OperatorName, ProjectId, Result};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::wire::Request;

/// A role, and the access a request needs ([`Request::access`]): `Read < Write < Admin`, each
/// role allowing everything below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    /// Reads only.
    Read,
    /// Pipeline writes: leases, runs, checkpoints, schemas.
    Write,
    /// Operator actions: specs, pauses, deletes, forced leases, resets, decisions.
    Admin,
}

impl Access {
    /// The role's name in the grants file: `read`, `write` or `admin`.
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Read => "read",
            Access::Write => "write",
            Access::Admin => "admin",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        [Access::Read, Access::Write, Access::Admin]
            .into_iter()
            .find(|access| access.as_str() == text)
    }
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The projects a grant covers: all of them (`"*"` in the file), or a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every project.
    All,
    /// These projects only.
    Only(Vec<ProjectId>),
}

impl Scope {
    /// Whether `project` is covered.
    pub fn covers(&self, project: &ProjectId) -> bool {
        match self {
            Scope::All => true,
            Scope::Only(projects) => projects.contains(project),
        }
    }
}

/// As in the grants file: `"*"` or a list of project ids.
impl Serialize for Scope {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            Scope::All => serializer.serialize_str("*"),
            Scope::Only(projects) => projects.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for Scope {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        scope(&value).map_err(serde::de::Error::custom)
    }
}

/// The scope in `value`, or what is wrong with it.
fn scope(value: &Value) -> std::result::Result<Scope, String> {
    match value {
        Value::String(star) if star == "*" => Ok(Scope::All),
        Value::Array(items) => items
            .iter()
            .map(|item| match item {
                Value::String(id) => ProjectId::new(id.as_str()).map_err(|e| e.to_string()),
                _ => Err("a project id is a string".to_owned()),
            })
            .collect::<std::result::Result<Vec<_>, _>>()
            .map(Scope::Only),
        _ => Err("neither a list nor \"*\"".to_owned()),
    }
}

/// Why a grants file was refused. Messages name the grant (counting from 1) and the field, never
/// a token or digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GrantsError {
    /// Not JSON; the position only, since the text may hold tokens.
    #[error("the grants are not valid JSON (error at line {line}, column {column})")]
    NotJson {
        /// Line of the first error, from 1.
        line: usize,
        /// Column of the first error, from 1.
        column: usize,
    },
    /// JSON, but not a list.
    #[error("the grants must be a JSON list of grants")]
    NotAList,
    /// A grant that is not a JSON object.
    #[error("grant {grant} is not a JSON object")]
    NotAnObject {
        /// Which grant, counting from 1.
        grant: usize,
    },
    /// A field the format does not have (a misspelling would otherwise pass silently).
    #[error(
        "grant {grant} has an unknown field {field:?}; the fields are name, token, sha256, projects and role"
    )]
    UnknownField {
        /// Which grant, counting from 1.
        grant: usize,
        /// The field's name (cut to 40 characters).
        field: String,
    },
    /// A required field is missing.
    #[error("grant {grant} has no {field:?}")]
    MissingField {
        /// Which grant, counting from 1.
        grant: usize,
        /// `projects` or `role`.
        field: &'static str,
    },
    /// Neither or both of `token` and `sha256`.
    #[error("grant {grant} needs exactly one of \"token\" and \"sha256\"")]
    TokenOrDigest {
        /// Which grant, counting from 1.
        grant: usize,
    },
    /// A `token` that is not a non-empty string.
    #[error("grant {grant}: token must be a non-empty string")]
    BadToken {
        /// Which grant, counting from 1.
        grant: usize,
    },
    /// A `sha256` that is not 64 hexadecimal digits.
    #[error("grant {grant}: sha256 must be 64 hexadecimal digits")]
    BadDigest {
        /// Which grant, counting from 1.
        grant: usize,
    },
    /// `projects` is not `"*"` or a list of valid project ids.
    #[error("grant {grant}: projects must be a list of project ids or \"*\": {problem}")]
    BadProjects {
        /// Which grant, counting from 1.
        grant: usize,
        /// What is wrong.
        problem: String,
    },
    /// `role` is not `read`, `write` or `admin`.
    #[error("grant {grant}: role must be \"read\", \"write\" or \"admin\"")]
    BadRole {
        /// Which grant, counting from 1.
        grant: usize,
    },
    /// `name` is not a valid operator name.
    #[error("grant {grant}: name must be an operator name: {problem}")]
    BadName {
        /// Which grant, counting from 1.
        grant: usize,
        /// What is wrong.
        problem: String,
    },
}

/// One grant of the file: a token (by its digest), the projects it covers, its role and name.
#[derive(Clone)]
pub struct Grant {
    name: Option<OperatorName>,
    digest: [u8; 32],
    scope: Scope,
    role: Access,
}

impl fmt::Debug for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the digest: for a verbatim token it is the token's, and a log is no place for it.
        f.debug_struct("Grant")
            .field("name", &self.name)
            .field("scope", &self.scope)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

impl Grant {
    /// The operator its requests are audited as, if the grant has a name.
    pub fn name(&self) -> Option<&OperatorName> {
        self.name.as_ref()
    }

    /// Its role.
    pub fn role(&self) -> Access {
        self.role
    }

    /// The projects it covers.
    pub fn scope(&self) -> &Scope {
        &self.scope
    }

    /// Whether the role covers `access`.
    ///
    /// # Errors
    /// [`Error::PermissionDenied`] naming the role and the access needed.
    pub fn allows(&self, access: Access) -> Result<()> {
        if self.role >= access {
            return Ok(());
        }
        let who = self
            .name
            .as_ref()
            .map_or_else(String::new, |n| format!(" ({n})"));
        Err(Error::PermissionDenied(format!(
            "the token{who} has the {} role; this request needs {access}",
            self.role
        )))
    }

    /// The actor a request sent with this grant's token is audited as: the operator named by the
    /// grant.
    ///
    /// # Errors
    /// [`Error::PermissionDenied`] for a grant without a name: nobody could tell afterwards who
    /// acted.
    pub fn actor(&self) -> Result<Actor> {
        self.name.clone().map(Actor::Operator).ok_or_else(|| {
            Error::PermissionDenied(
                "this token's grant has no name, and a request that acts as an operator is audited \
                 under its grant's name: give the grant a \"name\" in the grants"
                    .into(),
            )
        })
    }

    /// What `whoami` reports of it.
    pub fn info(&self) -> GrantInfo {
        GrantInfo {
            name: self.name.clone(),
            role: self.role,
            projects: self.scope.clone(),
        }
    }
}

/// One grant as `GET /v1/whoami` reports it: name, role and projects, never the token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantInfo {
    /// The operator the grant's requests are audited as, if it has a name.
    pub name: Option<OperatorName>,
    /// Its role.
    pub role: Access,
    /// The projects it covers: `"*"` or a list.
    pub projects: Scope,
}

/// The answer of `GET /v1/whoami`: every grant of the presented token, in the file's order (one,
/// unless the token was granted different roles on different projects), and what serves them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WhoAmI {
    /// The token's grants.
    pub grants: Vec<GrantInfo>,
    /// The server that answered.
    pub server: Server,
}

/// What a catalog server says of itself in `GET /v1/whoami`, so an operator (and the console)
/// knows where the catalog lives and whether writes are answered at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Server {
    /// Where the catalog is kept.
    pub backend: Backend,
    /// Every write is refused (`hakiri serve --read-only`), whatever the grants say.
    pub read_only: bool,
}

/// Where a catalog server keeps the catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// SQLite files on the server's machine (`hakiri serve` over `sqlite://`).
    Sqlite,
    /// PostgreSQL (`hakiri serve` over `postgres://`).
    Postgres,
    /// Memory, gone when the server stops (`hakiri serve` over `memory://`).
    Memory,
    /// A Cloudflare Durable Object per project (the Worker).
    DurableObject,
    /// Another catalog server (`hakiri serve` over `http(s)://`).
    Remote,
}

/// The grants of a deployment, parsed from the grants file.
#[derive(Debug, Clone)]
pub struct Grants(Vec<Grant>);

const FIELDS: [&str; 5] = ["name", "token", "sha256", "projects", "role"];

fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

fn hex_digest(text: &str) -> Option<[u8; 32]> {
    let text = text.as_bytes();
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(text.chunks_exact(2)) {
        let hi = char::from(pair[0]).to_digit(16)?;
        let lo = char::from(pair[1]).to_digit(16)?;
        *byte = u8::try_from(hi * 16 + lo).ok()?;
    }
    Some(out)
}

fn grant(grant: usize, value: &Value) -> std::result::Result<Grant, GrantsError> {
    let object: &Map<String, Value> = value
        .as_object()
        .ok_or(GrantsError::NotAnObject { grant })?;
    if let Some(field) = object.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(GrantsError::UnknownField {
            grant,
            field: field.chars().take(40).collect(),
        });
    }
    let digest = match (object.get("token"), object.get("sha256")) {
        (Some(token), None) => match token.as_str() {
            Some(token) if !token.is_empty() => sha256(token.as_bytes()),
            _ => return Err(GrantsError::BadToken { grant }),
        },
        (None, Some(hex)) => hex
            .as_str()
            .and_then(hex_digest)
            .ok_or(GrantsError::BadDigest { grant })?,
        _ => return Err(GrantsError::TokenOrDigest { grant }),
    };
    let projects = object.get("projects").ok_or(GrantsError::MissingField {
        grant,
        field: "projects",
    })?;
    let scope = scope(projects).map_err(|problem| GrantsError::BadProjects { grant, problem })?;
    let role = object.get("role").ok_or(GrantsError::MissingField {
        grant,
        field: "role",
    })?;
    let role = role
        .as_str()
        .and_then(Access::parse)
        .ok_or(GrantsError::BadRole { grant })?;
    let name = match object.get("name") {
        None | Some(Value::Null) => None,
        Some(Value::String(name)) => {
            Some(
                OperatorName::new(name.as_str()).map_err(|e| GrantsError::BadName {
                    grant,
                    problem: e.to_string(),
                })?,
            )
        }
        Some(_) => {
            return Err(GrantsError::BadName {
                grant,
                problem: "not a string".into(),
            })
        }
    };
    Ok(Grant {
        name,
        digest,
        scope,
        role,
    })
}

impl Grants {
    /// Parses a grants file (see the module docs).
    ///
    /// # Errors
    /// [`GrantsError`] naming the first grant and field that is wrong; never echoing a token.
    pub fn parse(text: &str) -> std::result::Result<Self, GrantsError> {
        let value: Value = serde_json::from_str(text).map_err(|e| GrantsError::NotJson {
            // Position only: serde's message could quote part of a token.
            line: e.line(),
            column: e.column(),
        })?;
        let Value::Array(items) = value else {
            return Err(GrantsError::NotAList);
        };
        items
            .iter()
            .enumerate()
            .map(|(i, item)| grant(i + 1, item))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map(Self)
    }

    /// The grants whose token is `token`, every grant compared in constant time (no early exit).
    fn of(&self, token: Option<&str>) -> Result<Vec<&Grant>> {
        let token = token.ok_or_else(|| {
            Error::Unauthenticated(
                "send the catalog token as `Authorization: Bearer <token>`".into(),
            )
        })?;
        let presented = sha256(token.as_bytes());
        let mut matching = Vec::new();
        for grant in &self.0 {
            if bool::from(grant.digest.ct_eq(&presented)) {
                matching.push(grant);
            }
        }
        if matching.is_empty() {
            return Err(Error::Unauthenticated(
                "the bearer token is not known to this catalog".into(),
            ));
        }
        Ok(matching)
    }

    /// The grant `token` acts with in `project`: of its grants that cover the project, the one
    /// with the highest role (the first of those in the file's order).
    ///
    /// # Errors
    /// [`Error::Unauthenticated`] without a token or with an unknown one;
    /// [`Error::PermissionDenied`] when none of the token's grants covers `project`.
    pub fn check(&self, token: Option<&str>, project: &ProjectId) -> Result<&Grant> {
        let mut best: Option<&Grant> = None;
        for grant in self.of(token)? {
            if grant.scope.covers(project) && best.is_none_or(|b| grant.role > b.role) {
                best = Some(grant);
            }
        }
        best.ok_or_else(|| {
            Error::PermissionDenied(format!("the token is not scoped to project {project}"))
        })
    }

    /// Every grant of `token`, as `GET /v1/whoami` on `server` answers.
    ///
    /// # Errors
    /// [`Error::Unauthenticated`] without a token or with an unknown one.
    pub fn whoami(&self, token: Option<&str>, server: Server) -> Result<WhoAmI> {
        Ok(WhoAmI {
            grants: self.of(token)?.into_iter().map(Grant::info).collect(),
            server,
        })
    }
}

/// The token of an `Authorization` header value, if it is `Bearer <token>` (any case of
/// `Bearer`); another scheme, or no token, is no token.
pub fn bearer(authorization: Option<&str>) -> Option<&str> {
    let (scheme, token) = authorization?.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

impl Request {
    /// The request as `grant` may send it: a request that acts as an operator
    /// ([`Request::actor`]) is audited as the grant's operator ([`Grant::actor`]), whatever it
    /// claimed — another operator, a holder, `policy` or `system` alike; any other request is
    /// unchanged.
    ///
    /// # Errors
    /// [`Error::PermissionDenied`] for an operator request and a grant without a name.
    pub fn stamped_by(mut self, grant: &Grant) -> Result<Self> {
        if let Some(by) = self.actor_mut() {
            *by = grant.actor()?;
        }
        Ok(self)
    }
}

/// The grants parsed from the text a host read last, for a host that reads its grants on every
/// request (the Worker, from its secret): the same text is parsed once — a JSON document and a
/// SHA-256 per plain token — and a changed text is parsed again.
#[derive(Debug, Default)]
pub struct ParsedGrants {
    last: Option<(String, Arc<Grants>)>,
}

impl ParsedGrants {
    /// The grants in `text`, parsed now unless `text` is the text parsed last.
    ///
    /// # Errors
    /// As [`Grants::parse`]; a malformed text is never kept, so it fails every time it is read.
    pub fn parse(&mut self, text: &str) -> std::result::Result<Arc<Grants>, GrantsError> {
        if let Some((seen, grants)) = &self.last {
            if seen == text {
                return Ok(grants.clone());
            }
        }
        let grants = Arc::new(Grants::parse(text)?);
        self.last = Some((text.to_owned(), grants.clone()));
        Ok(grants)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use hakiri_core::{
        ConnectorRef, CursorKind, CursorReset, Decide, DecisionId, Epoch, Generation, HolderId,
        Lease, Limit, PauseChange, PipelineId, PipelineSpec, PutMode, Reason, ResetTarget,
        Resolution, StreamName, Timestamp, Trigger,
    };
    use serde_json::json;

    use super::*;

    const ADMIN: &str = "admin-token";
    const SERVER: Server = Server {
        backend: Backend::Postgres,
        read_only: true,
    };
    const WRITER: &str = "writer-token";
    const HASHED: &str = "hashed-token";

    fn project(name: &str) -> ProjectId {
        ProjectId::new(name).unwrap()
    }

    fn hex(bytes: [u8; 32]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn grants() -> Grants {
        Grants::parse(
            &json!([
                {"name": "ops", "token": ADMIN, "projects": "*", "role": "admin"},
                {"name": "reconciler", "token": WRITER, "projects": ["acme"], "role": "write"},
                {"name": "reconciler", "token": WRITER, "projects": ["beta"], "role": "read"},
                {"sha256": hex(sha256(HASHED.as_bytes())), "projects": ["acme"], "role": "admin"},
            ])
            .to_string(),
        )
        .unwrap()
    }

    fn parse_err(value: Value) -> GrantsError {
        Grants::parse(&value.to_string()).unwrap_err()
    }

    #[test]
    fn roles_are_ordered_and_each_allows_what_is_below() {
        assert!(Access::Read < Access::Write && Access::Write < Access::Admin);
        let grants = grants();
        let writer = grants.check(Some(WRITER), &project("acme")).unwrap();
        assert_eq!(writer.role(), Access::Write);
        writer.allows(Access::Read).unwrap();
        writer.allows(Access::Write).unwrap();
        let error = writer.allows(Access::Admin).unwrap_err();
        assert!(
            matches!(&error, Error::PermissionDenied(m) if m.contains("(reconciler) has the write role") && m.contains("needs admin")),
            "{error}"
        );
        let reader = grants.check(Some(WRITER), &project("beta")).unwrap();
        assert_eq!(reader.role(), Access::Read);
        assert!(reader.allows(Access::Write).is_err());
    }

    #[test]
    fn unknown_or_missing_tokens_are_unauthenticated() {
        let grants = grants();
        for token in [None, Some("not-a-token"), Some("admin-token ")] {
            let error = grants.check(token, &project("acme")).unwrap_err();
            assert!(
                matches!(error, Error::Unauthenticated(_)),
                "{token:?}: {error}"
            );
            let error = grants.whoami(token, SERVER).unwrap_err();
            assert!(
                matches!(error, Error::Unauthenticated(_)),
                "{token:?}: {error}"
            );
        }
    }

    #[test]
    fn a_project_outside_the_scope_is_denied() {
        let error = grants().check(Some(WRITER), &project("gamma")).unwrap_err();
        assert!(
            matches!(&error, Error::PermissionDenied(m) if m.contains("gamma")),
            "{error}"
        );
        // "*" covers any project.
        let ops = grants()
            .check(Some(ADMIN), &project("gamma"))
            .unwrap()
            .clone();
        assert_eq!(ops.scope(), &Scope::All);
    }

    #[test]
    fn digests_and_verbatim_tokens_both_match_and_only_their_token() {
        let grants = grants();
        let hashed = grants.check(Some(HASHED), &project("acme")).unwrap();
        assert_eq!((hashed.role(), hashed.name()), (Access::Admin, None));
        // The digest itself is not a token.
        let digest = hex(sha256(HASHED.as_bytes()));
        assert!(grants.check(Some(&digest), &project("acme")).is_err());
        // Upper-case hex digits are digests too.
        let upper = Grants::parse(
            &json!([{"sha256": digest.to_uppercase(), "projects": "*", "role": "read"}])
                .to_string(),
        )
        .unwrap();
        assert!(upper.check(Some(HASHED), &project("x")).is_ok());
    }

    #[test]
    fn whoami_lists_every_grant_of_the_token_never_the_token() {
        let grants = grants();
        let me = grants.whoami(Some(WRITER), SERVER).unwrap();
        assert_eq!(
            me.grants,
            vec![
                GrantInfo {
                    name: Some(OperatorName::new("reconciler").unwrap()),
                    role: Access::Write,
                    projects: Scope::Only(vec![project("acme")]),
                },
                GrantInfo {
                    name: Some(OperatorName::new("reconciler").unwrap()),
                    role: Access::Read,
                    projects: Scope::Only(vec![project("beta")]),
                },
            ]
        );
        let ops = serde_json::to_value(grants.whoami(Some(ADMIN), SERVER).unwrap()).unwrap();
        assert_eq!(
            ops,
            json!({
                "grants": [{"name": "ops", "role": "admin", "projects": "*"}],
                "server": {"backend": "postgres", "read_only": true}
            })
        );
        let back: WhoAmI = serde_json::from_value(ops).unwrap();
        assert_eq!(back, grants.whoami(Some(ADMIN), SERVER).unwrap());
        assert!(!format!("{grants:?}").contains(ADMIN));
    }

    #[test]
    fn a_token_with_several_grants_acts_with_the_highest_covering_role() {
        let grants = Grants::parse(
            &json!([
                {"name": "low", "token": "t", "projects": "*", "role": "read"},
                {"name": "high", "token": "t", "projects": ["acme"], "role": "admin"},
            ])
            .to_string(),
        )
        .unwrap();
        let grant = grants.check(Some("t"), &project("acme")).unwrap();
        assert_eq!(grant.name().map(OperatorName::as_str), Some("high"));
        let grant = grants.check(Some("t"), &project("other")).unwrap();
        assert_eq!(grant.role(), Access::Read);
    }

    #[test]
    fn malformed_grants_are_typed_errors_that_never_echo_a_token() {
        let secret = "s3cret-token-value";
        let text = format!(r#"[{{"token": "{secret}", "projects": "*", "role": "admin""#);
        let error = Grants::parse(&text).unwrap_err();
        assert!(
            matches!(error, GrantsError::NotJson { line: 1, .. }),
            "{error}"
        );
        assert!(!error.to_string().contains(secret));
        assert_eq!(
            Grants::parse(r#"{"grants": []}"#).unwrap_err(),
            GrantsError::NotAList
        );
        let cases = [
            (json!(["x"]), GrantsError::NotAnObject { grant: 1 }),
            (
                json!([{"token": "a", "projects": "*", "role": "read", "roles": "admin"}]),
                GrantsError::UnknownField {
                    grant: 1,
                    field: "roles".into(),
                },
            ),
            (
                json!([{"token": "a", "projects": "*", "role": "read"}, {"token": "b", "role": "read"}]),
                GrantsError::MissingField {
                    grant: 2,
                    field: "projects",
                },
            ),
            (
                json!([{"token": "a", "projects": "*"}]),
                GrantsError::MissingField {
                    grant: 1,
                    field: "role",
                },
            ),
            (
                json!([{"projects": "*", "role": "read"}]),
                GrantsError::TokenOrDigest { grant: 1 },
            ),
            (
                json!([{"token": "a", "sha256": hex([0; 32]), "projects": "*", "role": "read"}]),
                GrantsError::TokenOrDigest { grant: 1 },
            ),
            (
                json!([{"token": "", "projects": "*", "role": "read"}]),
                GrantsError::BadToken { grant: 1 },
            ),
            (
                json!([{"token": 7, "projects": "*", "role": "read"}]),
                GrantsError::BadToken { grant: 1 },
            ),
            (
                json!([{"sha256": "abc", "projects": "*", "role": "read"}]),
                GrantsError::BadDigest { grant: 1 },
            ),
            (
                json!([{"sha256": "g".repeat(64), "projects": "*", "role": "read"}]),
                GrantsError::BadDigest { grant: 1 },
            ),
            (
                json!([{"token": "a", "projects": "all", "role": "read"}]),
                GrantsError::BadProjects {
                    grant: 1,
                    problem: "neither a list nor \"*\"".into(),
                },
            ),
            (
                json!([{"token": "a", "projects": "*", "role": "owner"}]),
                GrantsError::BadRole { grant: 1 },
            ),
            (
                json!([{"name": 3, "token": "a", "projects": "*", "role": "read"}]),
                GrantsError::BadName {
                    grant: 1,
                    problem: "not a string".into(),
                },
            ),
        ];
        for (value, expected) in cases {
            assert_eq!(parse_err(value.clone()), expected, "{value}");
        }
        assert!(matches!(
            parse_err(json!([{"token": "a", "projects": ["-bad-"], "role": "read"}])),
            GrantsError::BadProjects { grant: 1, .. }
        ));
        assert!(matches!(
            parse_err(json!([{"name": " padded", "token": "a", "projects": "*", "role": "read"}])),
            GrantsError::BadName { grant: 1, .. }
        ));
        // An empty list is valid: it lets nobody in.
        let none = Grants::parse("[]").unwrap();
        assert!(none.check(Some("a"), &project("acme")).is_err());
    }

    #[test]
    fn bearer_takes_only_a_bearer_token() {
        assert_eq!(bearer(Some("Bearer abc")), Some("abc"));
        assert_eq!(bearer(Some("bearer   abc  ")), Some("abc"));
        assert_eq!(bearer(Some("Basic abc")), None);
        assert_eq!(bearer(Some("Bearer ")), None);
        assert_eq!(bearer(Some("abc")), None);
        assert_eq!(bearer(None), None);
    }

    fn lease() -> Lease {
        Lease {
            pipeline: PipelineId::new("p").unwrap(),
            holder: HolderId::new("worker-1").unwrap(),
            epoch: Epoch(1),
            expires_at: Timestamp::from_millis(1),
        }
    }

    fn reason() -> Reason {
        Reason::new("because").unwrap()
    }

    /// One request of every kind that carries an actor, each claiming `by`.
    fn operator_requests(by: &Actor) -> Vec<Request> {
        let pipeline = PipelineId::new("p").unwrap();
        let spec = PipelineSpec::new(
            pipeline.clone(),
            ConnectorRef::new("jsonl").unwrap(),
            CursorKind::Monotonic,
        );
        vec![
            Request::PutPipeline {
                spec,
                mode: PutMode::Create,
                by: by.clone(),
            },
            Request::SetPaused {
                pipeline: pipeline.clone(),
                change: PauseChange::Pause(reason()),
                by: by.clone(),
            },
            Request::DeletePipeline {
                pipeline: pipeline.clone(),
                expected: Generation(1),
                by: by.clone(),
            },
            Request::RequestRun {
                pipeline: pipeline.clone(),
                trigger: Trigger::Manual,
                by: by.clone(),
            },
            Request::ForceAcquire {
                pipeline,
                holder: HolderId::new("op").unwrap(),
                ttl_ms: 1000,
                by: by.clone(),
                reason: reason(),
            },
            Request::ResetCursor {
                lease: lease(),
                stream: StreamName::new("s").unwrap(),
                reset: CursorReset {
                    target: ResetTarget::Initial,
                    expected_version: None,
                    by: by.clone(),
                    reason: reason(),
                    allow: Default::default(),
                },
            },
            Request::Decide {
                decision: DecisionId(1),
                decide: Decide {
                    resolution: Resolution::Accept,
                    by: by.clone(),
                    reason: reason(),
                },
            },
        ]
    }

    #[test]
    fn operator_requests_are_stamped_with_the_grants_name_whatever_they_claim() {
        let grants = grants();
        let ops = grants.check(Some(ADMIN), &project("acme")).unwrap();
        let stamped = Actor::Operator(OperatorName::new("ops").unwrap());
        let claims = [
            Actor::Operator(OperatorName::new("mallory").unwrap()),
            Actor::System,
            Actor::Policy,
            Actor::Holder(HolderId::new("worker-1").unwrap()),
        ];
        for claim in claims {
            for request in operator_requests(&claim) {
                assert_eq!(request.access(), Access::Admin, "{request:?}");
                assert_eq!(request.actor(), Some(&claim));
                let out = request.clone().stamped_by(ops).unwrap();
                assert_eq!(out.actor(), Some(&stamped), "{request:?}");
                // Nothing but the actor changes.
                let mut expected = request;
                *expected.actor_mut().unwrap() = stamped.clone();
                assert_eq!(out, expected);
            }
        }
    }

    #[test]
    fn a_grant_without_a_name_cannot_act_as_an_operator_but_may_do_the_rest() {
        let grants = grants();
        let unnamed = grants.check(Some(HASHED), &project("acme")).unwrap();
        for request in operator_requests(&Actor::System) {
            let error = request.stamped_by(unnamed).unwrap_err();
            assert!(
                matches!(&error, Error::PermissionDenied(m) if m.contains("no name")),
                "{error}"
            );
        }
        let read = Request::ListPipelines {
            after: None,
            limit: Limit::DEFAULT,
        };
        assert_eq!(read.clone().stamped_by(unnamed).unwrap(), read);
        let renew = Request::Renew {
            lease: lease(),
            ttl_ms: ttl(),
        };
        assert_eq!(renew.actor(), None);
        assert_eq!(renew.clone().stamped_by(unnamed).unwrap(), renew);
    }

    /// Moving a project writes it whole: only an admin may import; reading its archive head and
    /// streams is a read.
    #[test]
    fn an_import_needs_the_admin_role() {
        let grants = grants();
        let writer = grants.check(Some(WRITER), &project("acme")).unwrap();
        let import = Request::Import {
            batch: hakiri_core::archive::ImportBatch {
                archive: "sha256:00".into(),
                counters: Default::default(),
                position: 0,
                records: Vec::new(),
                last: true,
            },
        };
        assert_eq!(import.access(), Access::Admin);
        let error = writer.allows(import.access()).unwrap_err();
        assert!(matches!(error, Error::PermissionDenied(_)), "{error}");
        assert_eq!(Request::ArchiveHead.access(), Access::Read);
        let streams = Request::ListStreams {
            pipeline: PipelineId::new("orders").unwrap(),
        };
        assert_eq!(streams.access(), Access::Read);
    }

    fn ttl() -> u64 {
        crate::wire::ttl_ms(Duration::from_secs(30))
    }

    #[test]
    fn parsed_grants_are_parsed_again_only_when_their_text_changes() {
        let mut parsed = ParsedGrants::default();
        let one = json!([{"name": "ops", "token": ADMIN, "projects": "*", "role": "admin"}]);
        let first = parsed.parse(&one.to_string()).unwrap();
        let again = parsed.parse(&one.to_string()).unwrap();
        assert!(Arc::ptr_eq(&first, &again), "the same text is parsed once");

        // A rotated secret: the old token stops working at once, the new one works.
        let two = json!([{"name": "ops", "token": WRITER, "projects": "*", "role": "admin"}]);
        let rotated = parsed.parse(&two.to_string()).unwrap();
        assert!(!Arc::ptr_eq(&first, &rotated));
        assert!(rotated.check(Some(ADMIN), &project("acme")).is_err());
        assert!(rotated.check(Some(WRITER), &project("acme")).is_ok());

        // A malformed text fails every time and is not kept.
        for _ in 0..2 {
            assert!(matches!(
                parsed.parse("[{"),
                Err(GrantsError::NotJson { .. })
            ));
        }
        let back = parsed.parse(&two.to_string()).unwrap();
        assert!(back.check(Some(WRITER), &project("acme")).is_ok());
    }
}
