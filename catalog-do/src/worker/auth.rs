//! Bearer tokens, from the `HAKIRI_TOKENS` secret: a JSON list of grants.
//!
//! ```json
//! [
//!   {"name": "reconciler", "sha256": "<64 hex digits>", "projects": ["acme"], "role": "write"},
//!   {"name": "ops", "token": "<the token itself>", "projects": "*", "role": "admin"}
//! ]
//! ```
//!
//! Each grant names its token by SHA-256 digest (preferred: the secret then holds no usable
//! token) or verbatim, the projects it covers (`"*"` for all), and a role — `read`, `write` or
//! `admin` — ordered like [`Access`]. A presented token is hashed and compared with every grant's
//! digest in constant time; a token may have several grants.

use hakiri_core::{Error, ProjectId};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use worker::{Env, Headers};

use super::{failure, Failure};
use crate::protocol::Access;

/// The secret holding the grants.
pub(crate) const TOKENS: &str = "HAKIRI_TOKENS";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGrant {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    sha256: Option<String>,
    projects: RawScope,
    role: Access,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawScope {
    List(Vec<String>),
    Wildcard(String),
}

enum Scope {
    All,
    Only(Vec<String>),
}

struct Grant {
    name: Option<String>,
    digest: [u8; 32],
    scope: Scope,
    role: Access,
}

/// The grants of the deployment.
pub(crate) struct Tokens(Vec<Grant>);

/// What an authenticated token may do in the requested project.
pub(crate) struct Allowed {
    role: Access,
    name: Option<String>,
}

fn misconfigured(message: String) -> Failure {
    failure(
        500,
        Error::Backend(format!(
            "the catalog is misconfigured: {message}; see the README, \"Deploying the Cloudflare catalog\""
        )),
    )
}

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

impl Tokens {
    /// The grants in the `HAKIRI_TOKENS` secret (or plain variable).
    ///
    /// A missing or malformed list is the operator's mistake: it fails every request closed, and
    /// its message never echoes the secret's content.
    pub(crate) fn from_env(env: &Env) -> Result<Self, Failure> {
        let text = env
            .secret(TOKENS)
            .or_else(|_| env.var(TOKENS))
            .map_err(|_| misconfigured(format!("the {TOKENS} secret is not set")))?
            .to_string();
        Self::parse(&text)
    }

    fn parse(text: &str) -> Result<Self, Failure> {
        let raw: Vec<RawGrant> = serde_json::from_str(text).map_err(|e| {
            // Position only: serde's message could quote part of a token.
            misconfigured(format!(
                "{TOKENS} is not a JSON list of grants (error at line {}, column {})",
                e.line(),
                e.column()
            ))
        })?;
        let grants = raw
            .into_iter()
            .enumerate()
            .map(|(i, g)| {
                let digest = match (&g.token, &g.sha256) {
                    (Some(token), None) if !token.is_empty() => sha256(token.as_bytes()),
                    (None, Some(hex)) => hex_digest(hex).ok_or_else(|| {
                        misconfigured(format!(
                            "grant {i} of {TOKENS}: sha256 must be 64 hexadecimal digits"
                        ))
                    })?,
                    _ => {
                        return Err(misconfigured(format!(
                            "grant {i} of {TOKENS} needs exactly one of \"token\" and \"sha256\""
                        )))
                    }
                };
                let scope = match g.projects {
                    RawScope::Wildcard(star) if star == "*" => Scope::All,
                    RawScope::Wildcard(_) => {
                        return Err(misconfigured(format!(
                            "grant {i} of {TOKENS}: projects is a list of project ids or \"*\""
                        )))
                    }
                    RawScope::List(projects) => Scope::Only(projects),
                };
                Ok(Grant {
                    name: g.name,
                    digest,
                    scope,
                    role: g.role,
                })
            })
            .collect::<Result<Vec<_>, Failure>>()?;
        Ok(Self(grants))
    }

    /// What `token` may do in `project`: 401 without a token or with an unknown one, 403 when no
    /// grant of the token covers the project.
    pub(crate) fn check(
        &self,
        token: Option<&str>,
        project: &ProjectId,
    ) -> Result<Allowed, Failure> {
        let token = token.ok_or_else(|| {
            failure(
                401,
                Error::Unauthenticated(
                    "send the catalog token as `Authorization: Bearer <token>`".into(),
                ),
            )
        })?;
        let presented = sha256(token.as_bytes());
        // Every grant is compared (no early exit), each comparison in constant time.
        let mut known = false;
        let mut best: Option<&Grant> = None;
        for grant in &self.0 {
            let matches = bool::from(grant.digest.ct_eq(&presented));
            known |= matches;
            let covers = match &grant.scope {
                Scope::All => true,
                Scope::Only(projects) => projects.iter().any(|p| p == project.as_str()),
            };
            if matches && covers && best.is_none_or(|b| grant.role > b.role) {
                best = Some(grant);
            }
        }
        match best {
            Some(grant) => Ok(Allowed {
                role: grant.role,
                name: grant.name.clone(),
            }),
            None if known => Err(failure(
                403,
                Error::PermissionDenied(format!("the token is not scoped to project {project}")),
            )),
            None => Err(failure(
                401,
                Error::Unauthenticated("the bearer token is not known to this catalog".into()),
            )),
        }
    }
}

impl Allowed {
    /// Whether the grant's role covers `access`: 403 if not.
    pub(crate) fn allows(&self, access: Access) -> Result<(), Failure> {
        if self.role >= access {
            return Ok(());
        }
        let who = self
            .name
            .as_deref()
            .map_or_else(String::new, |n| format!(" ({n})"));
        Err(failure(
            403,
            Error::PermissionDenied(format!(
                "the token{who} has the {} role; this request needs {}",
                role_name(self.role),
                role_name(access)
            )),
        ))
    }
}

fn role_name(access: Access) -> &'static str {
    match access {
        Access::Read => "read",
        Access::Write => "write",
        Access::Admin => "admin",
    }
}

/// The bearer token of a request, if it sends one.
pub(crate) fn bearer(headers: &Headers) -> Option<String> {
    let value = headers.get("authorization").ok().flatten()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| token.to_owned())
}
