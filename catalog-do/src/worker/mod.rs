//! The Cloudflare host: a Worker in front of one Durable Object per project.
//!
//! `POST /v1/projects/{project}/rpc` carries one JSON [`Request`](hakiri_protocol::Request) and
//! answers one JSON [`Reply`]. The Worker authenticates the bearer token against its grants
//! ([`Grants`](hakiri_protocol::Grants)), checks that it is scoped to the project with a role that
//! covers [`Request::access`](hakiri_protocol::Request::access), stamps a request that acts as an
//! operator with the grant's name ([`Request::stamped_by`](hakiri_protocol::Request::stamped_by),
//! ADR 0023), and forwards it to the object `idFromName(project)`, which runs it atomically on its
//! SQLite storage. Every answer, errors included, is a `Reply` with a matching HTTP status.
//!
//! `POST /v1/projects/{project}/ping` (any role of the project) makes a round trip to the
//! project's object without touching its storage: a health check, and the baseline the Worker
//! benchmark compares catalog operations with.
//!
//! `POST /v1/projects/{project}/floor` (tests only, a write grant) makes the same round trip and
//! one guarded `UPDATE` of a scratch row through the object's SQL API: the least a cursor advance
//! could write, the Worker benchmark's floor (ADR 0037).
//!
//! `GET /v1/projects/{project}/plan` (a read grant on the project) answers the reconciler's
//! dry-run plan at the object's clock, as [`Plan`](hakiri_core::plan::Plan) JSON: the body
//! `hakiri serve` answers on the same route, computed by the same `hakiri_core::plan`.
//!
//! `GET /v1/projects/{project}/events` (a read grant on the project) streams the event log as
//! Server-Sent Events from the project's object, with the query, start position and framing of
//! `hakiri_protocol::events` (`hakiri serve`'s too): `id: <seq>` and `data: <event JSON>` per
//! event; after `Last-Event-ID`, else `?after=N`, else the last `?tail=N`, else from the start;
//! `?pipeline=ID` for one pipeline's events; a keep-alive comment every 15 s; an `error` message
//! ending the stream on a catalog error. The object wakes its streams when a write commits; a
//! stream ends after 10 minutes and the client reconnects with `Last-Event-ID` (ADR 0025). Errors
//! before the stream starts are JSON `Reply`s, as everywhere.
//!
//! `/_app/*`: the console's files (the `ASSETS` binding, see `app_file`): a path that is no
//! file is 404, never the console's page.
//!
//! `GET /v1/whoami` answers the presented token's grants — name, role and projects — and the
//! server (backend `durable_object`) as a [`WhoAmI`](hakiri_protocol::WhoAmI) JSON object (errors
//! as a `Reply`, like every other route).
//!
//! # Layout
//! - this file: the Worker's `fetch`: routing, authentication, stamping, forwarding.
//! - `auth`: the grants from the `HAKIRI_TOKENS` secret and the token from the request.
//! - `object`: the `#[durable_object]` class and the store's `Exec`/`Atomic` over its SQL storage.
//! - `feed`: the object's event streams, woken by its commits.
//! - `reply`: `Reply` bodies and their HTTP statuses.
//!
//! # Configuration
//! - `HAKIRI_CATALOG`: the Durable Object namespace binding (class `HakiriCatalog`).
//! - `ASSETS`: the static assets binding (the console's build).
//! - `HAKIRI_TOKENS` (a secret): the grants, see `hakiri_protocol::Grants`.
//! - `HAKIRI_TEST_HOOKS` (tests only): `"1"` honours the `x-hakiri-fail-at` fault-injection header
//!   and the event streams' `x-hakiri-stream-lifetime-ms` and `x-hakiri-keep-alive-ms`, and opens
//!   the benchmark's `/floor` route. Never set it in production.

mod auth;
mod feed;
mod object;
mod reply;

use hakiri_core::{Error, ProjectId};
use worker::{event, Context, Env, Headers, Method, Request, RequestInit, Response};

use hakiri_protocol::events::LAST_EVENT_ID;
use hakiri_protocol::{decode_request, encode, Access, Backend, Reply, Server};
use reply::{json, reply};

pub use object::HakiriCatalog;

/// The Durable Object namespace binding.
const NAMESPACE: &str = "HAKIRI_CATALOG";
/// The static assets binding: the console's build.
const ASSETS: &str = "ASSETS";
/// Where the console's build keeps its scripts, styles and data: files only, never a page.
const APP_FILES: &str = "/_app/";
/// The variable that enables the test-only hooks.
const TEST_HOOKS: &str = "HAKIRI_TEST_HOOKS";
/// Fault injection (tests only): the request fails at this statement (1-based) and rolls back.
const FAIL_AT_HEADER: &str = "x-hakiri-fail-at";
/// An event stream's lifetime in milliseconds (tests only).
const LIFETIME_HEADER: &str = "x-hakiri-stream-lifetime-ms";
/// An event stream's keep-alive interval in milliseconds (tests only).
const KEEP_ALIVE_HEADER: &str = "x-hakiri-keep-alive-ms";
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

/// A file of the console's build, fetched through the static assets binding; 404 if there is none.
///
/// `wrangler.toml` runs the Worker first for `/_app/*`. The assets answer a path that is no file
/// with the console's page, 200: with a `run_worker_first` array, the single-page fallback
/// applies to every request, not only to navigations. No file under `/_app/` is a page, so there
/// the page means a missing file. A tab holding a page from before a deploy then gets a 404 for a
/// removed chunk, as on `hakiri serve`, instead of the page as a script.
async fn app_file(req: Request, env: &Env, path: &str) -> Result<Response, Failure> {
    let no_file = |why: &str| failure(404, Error::invalid(format!("no file {path}{why}")));
    let assets = env.assets(ASSETS).map_err(|_| {
        no_file(&format!(
            ": this Worker has no console (no {ASSETS} binding)"
        ))
    })?;
    let answer = assets.fetch_request(req).await.map_err(|e| {
        Failure::from(Error::Unavailable(format!(
            "the console's files did not answer: {e}"
        )))
    })?;
    let page = answer
        .headers()
        .get("content-type")
        .ok()
        .flatten()
        .is_some_and(|kind| kind.starts_with("text/html"));
    if page {
        return Err(no_file(""));
    }
    Ok(answer)
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
enum Endpoint {
    /// One of a project's endpoints on its object.
    Project(ProjectId, Target),
    /// The token's grants.
    WhoAmI,
}

/// The endpoint of a path, or why the path names none.
fn endpoint(path: &str) -> Result<Endpoint, Failure> {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let target = match segments.as_slice() {
        ["v1", "whoami"] => return Ok(Endpoint::WhoAmI),
        ["v1", "projects", _, "rpc"] => Target::Rpc,
        ["v1", "projects", _, "ping"] => Target::Ping,
        ["v1", "projects", _, "floor"] => Target::Floor,
        ["v1", "projects", _, "plan"] => Target::Plan,
        ["v1", "projects", _, "events"] => Target::Events,
        _ => {
            return Err(failure(
                404,
                Error::invalid(format!(
                    "no route {path:?}; the catalog answers POST /v1/projects/{{project}}/rpc"
                )),
            ))
        }
    };
    Ok(Endpoint::Project(ProjectId::new(segments[2])?, target))
}

/// 405 unless the request's method is `method`.
fn only(req: &Request, method: Method, path: &str) -> Result<(), Failure> {
    if req.method() == method {
        return Ok(());
    }
    Err(failure(
        405,
        Error::invalid(format!(
            "{} is not allowed on {path}; send {method}",
            req.method()
        )),
    ))
}

async fn route(mut req: Request, env: &Env) -> Result<Response, Failure> {
    let path = req.path();
    if path.starts_with(APP_FILES) {
        return app_file(req, env, &path).await;
    }
    let (project, target) = match endpoint(&path)? {
        Endpoint::WhoAmI => {
            only(&req, Method::Get, &path)?;
            let grants = auth::grants(env)?;
            let server = Server {
                backend: Backend::DurableObject,
                read_only: false,
            };
            let me = grants.whoami(auth::bearer(req.headers()).as_deref(), server)?;
            return json(&me)
                .map_err(|e| Failure::from(Error::Backend(format!("cannot answer whoami: {e}"))));
        }
        Endpoint::Project(project, target) => (project, target),
    };
    only(&req, target.method(), &path)?;

    let grants = auth::grants(env)?;
    let bearer = auth::bearer(req.headers());
    let grant = grants.check(bearer.as_deref(), &project)?;
    match target {
        // Any role of the project.
        Target::Ping => return forward(env, &project, &req, target, Vec::new()).await,
        Target::Plan | Target::Events => {
            grant.allows(Access::Read)?;
            // An event stream is the object's response, passed through as it streams.
            return forward(env, &project, &req, target, Vec::new()).await;
        }
        Target::Floor => {
            if !test_hooks(env) {
                return Err(failure(
                    404,
                    Error::invalid(format!("no route {path:?} (a benchmark route, off here)")),
                ));
            }
            grant.allows(Access::Write)?;
            let body = req
                .bytes()
                .await
                .map_err(|e| Error::invalid(format!("cannot read the request body: {e}")))?;
            return forward(env, &project, &req, target, body).await;
        }
        Target::Rpc => {}
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
    let request = decode_request(&body)?;
    grant.allows(request.access())?;
    // The operator is the token's grant, not the client's claim (ADR 0023). Only operator
    // requests are encoded again; the hot path (advance, finish) forwards the body as it came.
    let body = if request.actor().is_some() {
        encode(&request.stamped_by(grant)?)
    } else {
        body
    };

    forward(env, &project, &req, Target::Rpc, body).await
}

/// Which of the object's endpoints a request goes to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Target {
    Rpc,
    Ping,
    /// The benchmark's floor (tests only).
    Floor,
    Plan,
    Events,
}

impl Target {
    /// The method the route takes, from the client and on to the object.
    fn method(self) -> Method {
        match self {
            Target::Rpc | Target::Ping | Target::Floor => Method::Post,
            Target::Plan | Target::Events => Method::Get,
        }
    }

    /// The object's URL for it; an event stream keeps the client's query.
    fn url(self, req: &Request) -> String {
        match self {
            Target::Rpc => "https://catalog.internal/rpc".to_owned(),
            Target::Ping => "https://catalog.internal/ping".to_owned(),
            Target::Floor => "https://catalog.internal/floor".to_owned(),
            Target::Plan => "https://catalog.internal/plan".to_owned(),
            Target::Events => {
                let query = req
                    .url()
                    .ok()
                    .and_then(|url| url.query().map(str::to_owned));
                match query {
                    Some(query) => format!("https://catalog.internal/events?{query}"),
                    None => "https://catalog.internal/events".to_owned(),
                }
            }
        }
    }

    /// The client's headers the object reads.
    fn passes(self, hooks: bool) -> &'static [&'static str] {
        match (self, hooks) {
            (Target::Rpc, true) => &[FAIL_AT_HEADER],
            (Target::Events, false) => &[LAST_EVENT_ID],
            (Target::Events, true) => &[LAST_EVENT_ID, LIFETIME_HEADER, KEEP_ALIVE_HEADER],
            _ => &[],
        }
    }
}

/// Sends the (validated) request to the project's object and passes its answer through.
async fn forward(
    env: &Env,
    project: &ProjectId,
    req: &Request,
    target: Target,
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
    for name in target.passes(test_hooks(env)) {
        if let Ok(Some(value)) = req.headers().get(name) {
            headers.set(name, &value).map_err(unavailable)?;
        }
    }
    let mut init = RequestInit::new();
    init.with_method(target.method()).with_headers(headers);
    if target.method() == Method::Post {
        init.with_body(Some(js_sys::Uint8Array::from(body.as_slice()).into()));
    }
    let inner = Request::new_with_init(&target.url(req), &init).map_err(unavailable)?;
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
