//! The Worker's side of authentication: the grants come from the `HAKIRI_TOKENS` secret and the
//! token from the `Authorization` header; the format, the roles and the constant-time check are
//! `hakiri_protocol::Grants`' (the README, "Tokens", documents the format).

use std::cell::RefCell;
use std::sync::Arc;

use hakiri_core::Error;
use hakiri_protocol::{Grants, ParsedGrants};
use worker::{Env, Headers};

use super::{failure, Failure};

/// The secret holding the grants.
pub(crate) const TOKENS: &str = "HAKIRI_TOKENS";

thread_local! {
    /// The grants of the secret's text, parsed once per isolate rather than on every request
    /// (about 60 µs of CPU each, ADR 0037's addendum); a rotated secret is parsed again.
    static PARSED: RefCell<ParsedGrants> = RefCell::default();
}

/// The grants in the `HAKIRI_TOKENS` secret (or plain variable).
///
/// A missing or malformed list is the operator's mistake: it fails every request closed (HTTP
/// 500), and its message never echoes the secret's content.
pub(crate) fn grants(env: &Env) -> Result<Arc<Grants>, Failure> {
    let text = env
        .secret(TOKENS)
        .or_else(|_| env.var(TOKENS))
        .map_err(|_| misconfigured(format!("the {TOKENS} secret is not set")))?
        .to_string();
    PARSED
        .with_borrow_mut(|parsed| parsed.parse(&text))
        .map_err(|e| misconfigured(format!("{TOKENS}: {e}")))
}

fn misconfigured(message: String) -> Failure {
    failure(
        500,
        Error::Backend(format!(
            "the catalog is misconfigured: {message}; see the README, \"Deploying the Cloudflare catalog\""
        )),
    )
}

/// The bearer token of a request, if it sends one.
pub(crate) fn bearer(headers: &Headers) -> Option<String> {
    let value = headers.get("authorization").ok().flatten();
    hakiri_protocol::bearer(value.as_deref()).map(str::to_owned)
}
