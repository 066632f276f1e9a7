//! The Cloudflare host: a Worker in front of one Durable Object per project.
//!
//! `POST /v1/projects/{project}/rpc` carries one JSON [`Request`](crate::protocol::Request) and
//! answers one JSON [`Reply`]. The Worker authenticates the bearer token, checks that it is scoped
//! to the project with a role that covers [`Request::access`](crate::protocol::Request::access),
//! and forwards the request to the object `idFromName(project)`, which runs it atomically on its
//! SQLite storage. Every answer, errors included, is a `Reply` with a matching HTTP status.
//!
//! `POST /v1/projects/{project}/ping` (any role of the project) makes a round trip to the
//! project's object without touching its storage: a health check, and the baseline the Worker
//! benchmark compares catalog operations with.
//!
//! # Layout
//! - this file: the Worker's `fetch`: routing, authentication, forwarding.
//! - `auth`: the token list (`HAKIRI_TOKENS`) and its constant-time check.
//! - `object`: the `#[durable_object]` class and the store's `Exec`/`Atomic` over its SQL storage.
//! - `reply`: `Reply` bodies and their HTTP statuses.
//!
//! # Configuration
//! - `HAKIRI_CATALOG`: the Durable Object namespace binding (class `HakiriCatalog`).
//! - `HAKIRI_TOKENS` (a secret): the token list, see `auth`.
//! - `HAKIRI_TEST_HOOKS` (tests only): `"1"` honours the `x-hakiri-fail-at` fault-injection header.
//!   Never set it in production.

mod auth;
mod object;
mod reply;

use hakiri_core::{Error, ProjectId};
use worker::{event, Context, Env, Headers, Method, Request, RequestInit, Response};

use crate::protocol::{self, Reply};
use reply::reply;

pub use object::HakiriCatalog;

/// The Durable Object namespace binding.
const NAMESPACE: &str = "HAKIRI_CATALOG";
/// The variable that enables the test-only hooks.
const TEST_HOOKS: &str = "HAKIRI_TEST_HOOKS";
/// Fault injection (tests only): the request fails at this statement (1-based) and rolls back.
const FAIL_AT_HEADER: &str = "x-hakiri-fail-at";
/// How many statements a request ran, as the object reports it (with the test hooks on).
const STATEMENTS_HEADER: &str = "x-hakiri-statements";
/// The project, from the Worker to its object: the object learns its name from the first request.
const PROJECT_HEADER: &str = "x-hakiri-project";
/// The largest request body accepted. Cursor values and schemas have their own, smaller limits
/// in `hakiri-core`; this only bounds what is buffered before they are checked.
const MAX_BODY: usize = 8 * 1024 * 1024;

/// Whether the test-only hooks are on in `env`.
fn test_hooks(env: &Env) -> bool {
    env.var(TEST_HOOKS).is_ok_and(|v| v.to_string() == "1")
}

#[event(fetch)]
async fn fetch(req: Request, env: Env, _ctx: Context) -> worker::Result<Response> {
    match route(req, &env).await {
        Ok(response) => Ok(response),
        Err(failure) => reply(&Reply::Err(failure.error), failure.status),
    }
}

/// An answer that is not the object's: the error and the status it travels with.
struct Failure {
    error: Error,
    status: Option<u16>,
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        Self {
            error,
            status: None,
        }
    }
}

fn failure(status: u16, error: Error) -> Failure {
    Failure {
        error,
        status: Some(status),
    }
}

/// What a path asks for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    /// A catalog request.
    Rpc,
    /// A round trip to the object, nothing else.
    Ping,
}

/// The project and endpoint of `/v1/projects/{project}/{rpc|ping}`, or why the path is not that.
fn rpc_project(path: &str) -> Result<(ProjectId, Endpoint), Failure> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match segments.as_slice() {
        ["v1", "projects", project, "rpc"] => Ok((ProjectId::new(*project)?, Endpoint::Rpc)),
        ["v1", "projects", project, "ping"] => Ok((ProjectId::new(*project)?, Endpoint::Ping)),
        _ => Err(failure(
            404,
            Error::invalid(format!(
                "no route {path:?}; the catalog answers POST /v1/projects/{{project}}/rpc"
            )),
        )),
    }
}

async fn route(mut req: Request, env: &Env) -> Result<Response, Failure> {
    let path = req.path();
    let (project, endpoint) = rpc_project(&path)?;
    if req.method() != Method::Post {
        return Err(failure(
            405,
            Error::invalid(format!(
                "{} is not allowed on {path}; send POST",
                req.method()
            )),
        ));
    }

    let tokens = auth::Tokens::from_env(env)?;
    let bearer = auth::bearer(req.headers());
    let grant = tokens.check(bearer.as_deref(), &project)?;
    if endpoint == Endpoint::Ping {
        return forward(env, &project, &req, Endpoint::Ping, Vec::new()).await;
    }

    let too_large = |len: usize| {
        failure(
            413,
            Error::invalid(format!(
                "the request body is {len} bytes; the limit is {MAX_BODY}"
            )),
        )
    };
    // Refuse a declared oversized body before buffering it; a body without a length is checked
    // once read.
    let declared = req
        .headers()
        .get("content-length")
        .ok()
        .flatten()
        .and_then(|v| v.trim().parse::<usize>().ok());
    if let Some(len) = declared.filter(|len| *len > MAX_BODY) {
        return Err(too_large(len));
    }
    let body = req
        .bytes()
        .await
        .map_err(|e| Error::invalid(format!("cannot read the request body: {e}")))?;
    if body.len() > MAX_BODY {
        return Err(too_large(body.len()));
    }
    let request = protocol::decode_request(&body)?;
    grant.allows(request.access())?;

    forward(env, &project, &req, Endpoint::Rpc, body).await
}

/// Sends the (validated) body to the project's object and passes its answer through.
async fn forward(
    env: &Env,
    project: &ProjectId,
    req: &Request,
    endpoint: Endpoint,
    body: Vec<u8>,
) -> Result<Response, Failure> {
    let unavailable = |e: worker::Error| {
        Failure::from(Error::Unavailable(format!(
            "the catalog object of project {project} cannot be reached: {e}"
        )))
    };
    let headers = Headers::new();
    headers
        .set(PROJECT_HEADER, project.as_str())
        .map_err(unavailable)?;
    if test_hooks(env) {
        if let Ok(Some(fail_at)) = req.headers().get(FAIL_AT_HEADER) {
            headers.set(FAIL_AT_HEADER, &fail_at).map_err(unavailable)?;
        }
    }
    let mut init = RequestInit::new();
    init.with_method(Method::Post)
        .with_headers(headers)
        .with_body(Some(js_sys::Uint8Array::from(body.as_slice()).into()));
    let url = match endpoint {
        Endpoint::Rpc => "https://catalog.internal/rpc",
        Endpoint::Ping => "https://catalog.internal/ping",
    };
    let inner = Request::new_with_init(url, &init).map_err(unavailable)?;
    let stub = env
        .durable_object(NAMESPACE)
        .and_then(|ns| ns.id_from_name(project.as_str())?.get_stub())
        .map_err(|e| {
            Failure::from(Error::Backend(format!(
                "the {NAMESPACE} Durable Object binding is not usable: {e}"
            )))
        })?;
    stub.fetch_with_request(inner).await.map_err(unavailable)
}
