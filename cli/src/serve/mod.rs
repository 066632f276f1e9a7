//! `hakiri serve`: the catalog behind one HTTP server, on any backend the CLI opens.
//!
//! Routes:
//! - `GET /healthz` (no token): `ok`.
//! - `GET /metrics` (no token): the server's request counters, OpenMetrics text.
//! - `GET /v1/whoami`: the grants the bearer token carries (name, role, projects), the backend,
//!   and whether the server is read-only.
//! - `POST /v1/projects/{project}/rpc`: one protocol request, answered through the catalog as the
//!   Worker answers it (`hakiri_protocol::dispatch`): the token's grant must allow the request's
//!   access, an operator request is audited as the grant, the body must be JSON
//!   (`Content-Type: application/json`, which a cross-site form cannot send without a preflight)
//!   of at most 8 MiB, and the answer comes within the request time limit. With `--read-only`
//!   only reads are answered. A write to a project with no catalog yet creates it, and a read of
//!   one answers as an empty catalog without creating anything, as on the Worker.
//! - `GET /v1/projects/{project}/plan`: the reconciler's dry-run plan at the catalog's clock.
//! - `GET /v1/projects/{project}/events`: the event log as Server-Sent Events (`events.rs`).
//! - Every other path: the operator console, embedded at compile time (`console.rs`); public, as
//!   the page holds no secret and every call it makes needs the token.
//!
//! Every `/v1` request needs `Authorization: Bearer <token>`, checked against the grants — the
//! `--grants` file (the Worker's format and rules, `hakiri_protocol::auth`), or else one grant
//! made for this launch: its token printed at start, admin on every project, audited as the
//! operator who started the server. Without a grants file the server binds loopback only. It
//! answers only requests whose `Host` is one it serves under (a page on another site cannot
//! reach it through DNS rebinding). Errors are the protocol's `Reply::Err` bodies with the
//! statuses the Worker gives them. Why these rules: ADR 0024.

mod console;
mod events;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path as FilePath;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::header::{AUTHORIZATION, HOST, ORIGIN, WWW_AUTHENTICATE};
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use hakiri_catalog_memory::MemoryCatalog;
use hakiri_catalog_postgres::PgPool;
use hakiri_core::{Actor, Catalog, Error, ProjectId};
use hakiri_protocol::{self as protocol, bearer, Access, Backend, Grants, Reply, Server, WhoAmI};
use lru::LruCache;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::{Mutex, OnceCell};
use tokio_util::sync::CancellationToken;

use crate::cli::ServeArgs;
use crate::commands::Ctx;
use crate::error::{CliError, CliResult};
use crate::output;
use crate::postgres;
use crate::target::{self, CatalogUrl};

/// The largest request body: cursor values and schemas have their own, smaller limits in
/// `hakiri-core`; this bounds what is buffered before they are checked (the Worker's bound).
const MAX_BODY: usize = 8 * 1024 * 1024;
/// Connections of the one Postgres pool the server's projects share: as many as the clients of
/// `cli/benches/serve.rs` at once, well under a default server's 100.
const SERVE_CONNECTIONS: u32 = 16;

/// `hakiri serve`: binds, prints the URL and the token, serves until SIGINT/SIGTERM.
pub(crate) async fn run(ctx: &Ctx, args: &ServeArgs) -> CliResult {
    if !args.listen.ip().is_loopback() && args.grants.is_none() {
        return Err(CliError::invalid(
            "not_loopback",
            format!(
                "{} is not a loopback address: other machines could reach this server, so it needs the tokens it accepts",
                args.listen
            ),
        )
        .hint("pass --grants FILE (a JSON list of grants), or serve on 127.0.0.1 (the default)"));
    }
    let (grants, launch_token) = match &args.grants {
        Some(file) => (read_grants(file)?, None),
        None => {
            let token = new_token();
            (launch_grants(ctx, &token)?, Some(token))
        }
    };
    let listener = TcpListener::bind(args.listen).await.map_err(|e| {
        CliError::failed("listen", format!("cannot listen on {}: {e}", args.listen))
            .hint("choose a free address with --listen HOST:PORT (port 0 picks one)")
    })?;
    let addr = listener.local_addr().unwrap_or(args.listen);
    // Listening for signals before the URL is printed: whoever reads it may stop us at once.
    let stop = stop_on_signals()?;
    let app = App::new(ctx.url().clone(), addr, grants, args, stop.clone());
    let tokens = match &launch_token {
        Some(token) => format!("token: {token}"),
        None => "tokens: those of --grants".to_owned(),
    };
    let console = console_url(addr, launch_token.as_deref(), ctx.project().as_str());
    let console_note = if console::is_built() {
        format!("console: {console}")
    } else {
        "console: not built into this binary (scripts/build-console, then rebuild)".to_owned()
    };
    output::note(format!(
        "serving {} at http://{addr}/ (Ctrl-C to stop)\n{tokens}\n{console_note}",
        ctx.url()
    ));
    if ctx.json() {
        // One line, as soon as the server listens: what a script waits for.
        output::json_line(&serde_json::json!({
            "url": format!("http://{addr}/"),
            "token": launch_token,
            "console": console,
        }));
    }
    axum::serve(listener, router(app))
        .with_graceful_shutdown(stop.cancelled_owned())
        .await
        .map_err(|e| CliError::failed("serve", format!("the server stopped: {e}")))?;
    output::note("stopped");
    Ok(())
}

/// The console's address: with the launch token and the project in the fragment, which a browser
/// never sends to a server (nor into its logs); the console stores the token and strips it.
fn console_url(addr: SocketAddr, token: Option<&str>, project: &str) -> String {
    let project: String = url::form_urlencoded::byte_serialize(project.as_bytes()).collect();
    match token {
        Some(token) => format!("http://{addr}/#token={token}&project={project}"),
        None => format!("http://{addr}/#project={project}"),
    }
}

/// A fresh bearer token for this launch: 32 random bytes, hex.
fn new_token() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The one grant of a launch without a grants file: `token`, admin on every project, audited as
/// the operator who started the server.
fn launch_grants(ctx: &Ctx, token: &str) -> CliResult<Grants> {
    let Actor::Operator(name) = ctx.operator()? else {
        return Err(CliError::invalid(
            "no_operator",
            "the launch token is audited as an operator, and none is named",
        )
        .hint("pass --as NAME"));
    };
    let grant =
        serde_json::json!([{"name": name, "token": token, "projects": "*", "role": "admin"}]);
    Grants::parse(&grant.to_string())
        .map_err(|e| CliError::failed("grants", format!("the launch token's grant: {e}")))
}

/// The grants in `file`; a bad file is refused naming the grant and the field, never a token.
fn read_grants(file: &FilePath) -> CliResult<Grants> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| CliError::invalid("grants", format!("cannot read {}: {e}", file.display())))?;
    Grants::parse(&text).map_err(|e| {
        CliError::invalid("grants", format!("{}: {e}", file.display())).hint(
            "a JSON list of {\"name\", \"token\" or \"sha256\", \"projects\", \"role\"} grants",
        )
    })
}

/// A token that fires on SIGINT or SIGTERM; the handlers are in place when this returns.
fn stop_on_signals() -> CliResult<CancellationToken> {
    use tokio::signal::unix::{signal, SignalKind};
    let listen = |kind| {
        signal(kind).map_err(|e| CliError::failed("signals", format!("cannot watch signals: {e}")))
    };
    let (mut interrupt, mut terminate) = (
        listen(SignalKind::interrupt())?,
        listen(SignalKind::terminate())?,
    );
    let stop = CancellationToken::new();
    let fire = stop.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        fire.cancel();
    });
    Ok(stop)
}

/// What every request shares.
pub(crate) struct App {
    url: CatalogUrl,
    /// Catalogs open, by project: the ones used last, at most `--max-open-projects` of them
    /// (every one, on a memory URL). A closed one is opened again when asked for; a request
    /// still holding it finishes on it.
    catalogs: Mutex<LruCache<ProjectId, Arc<dyn Catalog>>>,
    /// How many catalogs are open.
    open_catalogs: Gauge,
    /// On a Postgres URL, the one pool every project's catalog uses (a pool per project would
    /// hold connections for every project ever served, until the server ran out of them).
    postgres: OnceCell<PgPool>,
    grants: Grants,
    /// `Host` values the server answers.
    hosts: Vec<String>,
    /// How often an event stream looks for new events when it has shown them all.
    poll: Duration,
    /// Fires when the server stops.
    stop: CancellationToken,
    /// Only reads are answered.
    read_only: bool,
    /// How long one protocol request may take.
    request_timeout: Duration,
    registry: Registry,
    requests: Family<RouteLabels, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: &'static str,
    status: u16,
}

impl App {
    fn new(
        url: CatalogUrl,
        addr: SocketAddr,
        grants: Grants,
        args: &ServeArgs,
        stop: CancellationToken,
    ) -> Arc<Self> {
        let port = addr.port();
        let mut hosts = vec![
            format!("127.0.0.1:{port}"),
            format!("localhost:{port}"),
            format!("[::1]:{port}"),
        ];
        hosts.extend(args.allow_host.iter().cloned());
        // A local file answers a read in microseconds; a server is not polled as often.
        let poll = match url {
            CatalogUrl::Postgres(_) | CatalogUrl::Http(_) => Duration::from_secs(1),
            _ => Duration::from_millis(200),
        };
        let mut registry = Registry::default();
        let requests = Family::<RouteLabels, Counter>::default();
        registry.register(
            "hakiri_http_requests",
            "HTTP requests answered, by route and status",
            requests.clone(),
        );
        let open_catalogs = Gauge::default();
        registry.register(
            "hakiri_open_catalogs",
            "Projects whose catalogs are open",
            open_catalogs.clone(),
        );
        // Closing a memory catalog would lose its data.
        let catalogs = match url {
            CatalogUrl::Memory => LruCache::unbounded(),
            _ => LruCache::new(args.max_open_projects),
        };
        Arc::new(Self {
            url,
            catalogs: Mutex::new(catalogs),
            open_catalogs,
            postgres: OnceCell::new(),
            grants,
            hosts,
            poll,
            stop,
            read_only: args.read_only,
            request_timeout: args.request_timeout,
            registry,
            requests,
        })
    }

    /// The catalog of `project`, opened on first use. A project with no catalog is refused.
    async fn catalog(&self, project: &str) -> Result<Arc<dyn Catalog>, ApiError> {
        let project = ProjectId::new(project)?;
        Ok(self.open(&project, target::Access::Existing).await?)
    }

    /// The catalog a protocol request with `access` on `project` is answered by: a write opens
    /// it, creating it if missing; a read of a project with no catalog yet is answered by an
    /// empty catalog and creates nothing. So a fresh project reads as empty, as it does on the
    /// Worker and on every backend (the contract suite's rule), and a typo leaves no file behind.
    async fn for_request(
        &self,
        project: &ProjectId,
        access: Access,
    ) -> Result<Arc<dyn Catalog>, ApiError> {
        if access != Access::Read {
            return Ok(self.open(project, target::Access::CreateIfMissing).await?);
        }
        match self.open(project, target::Access::Existing).await {
            Ok(catalog) => Ok(catalog),
            // Not cached: the project's first write opens the real one.
            Err(error) if error.code() == "no_catalog" => {
                Ok(Arc::new(MemoryCatalog::new(project.clone())))
            }
            Err(error) => Err(error.into()),
        }
    }

    /// The catalog of `project`, opened on first use with `access`.
    async fn open(
        &self,
        project: &ProjectId,
        access: target::Access,
    ) -> CliResult<Arc<dyn Catalog>> {
        let mut catalogs = self.catalogs.lock().await;
        if let Some(catalog) = catalogs.get(project) {
            return Ok(catalog.clone());
        }
        let opened = match &self.url {
            CatalogUrl::Postgres(raw) => {
                let pool = self
                    .postgres
                    .get_or_try_init(|| postgres::pool_of(raw, &self.url, SERVE_CONNECTIONS))
                    .await?;
                postgres::open_on(pool.clone(), &self.url, project, access).await?
            }
            _ => target::open(&self.url, project, None, access).await?,
        };
        catalogs.put(project.clone(), opened.catalog.clone());
        self.open_catalogs
            .set(i64::try_from(catalogs.len()).unwrap_or(i64::MAX));
        Ok(opened.catalog)
    }
}

/// The server's routes over `app`.
pub(crate) fn router(app: Arc<App>) -> Router {
    let projects = Router::new()
        .route("/v1/projects/{project}/rpc", post(rpc))
        .route("/v1/projects/{project}/plan", get(plan))
        .route("/v1/projects/{project}/events", get(events::stream))
        .route_layer(middleware::from_fn_with_state(app.clone(), authorize));
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .route("/v1/whoami", get(whoami))
        .merge(projects)
        .fallback(console::serve)
        .layer(middleware::from_fn_with_state(app.clone(), count))
        .layer(middleware::from_fn_with_state(
            app.clone(),
            refuse_cross_site,
        ))
        .layer(middleware::from_fn_with_state(app.clone(), check_host))
        .with_state(app)
}

/// Refuses a request whose `Host` is not one this server answers under.
async fn check_host(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let host = request
        .headers()
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    if app.hosts.iter().any(|allowed| allowed == host) {
        next.run(request).await
    } else {
        ApiError::with_status(
            StatusCode::MISDIRECTED_REQUEST,
            Error::PermissionDenied(format!(
                "this server does not answer for host {host:?}; add it with --allow-host"
            )),
        )
        .into_response()
    }
}

/// Refuses a request a browser sends for a page of another site: one marked
/// `Sec-Fetch-Site: cross-site`, or whose `Origin` is not one of the hosts this server answers
/// under. Such a page could not read the answer, but a write needs no answer to do harm.
async fn refuse_cross_site(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    if is_console_read(&request) {
        // A link from another site to a console page is an ordinary navigation; the page is
        // public and every call it makes is checked here like any other.
        return next.run(request).await;
    }
    let headers = request.headers();
    let origin = headers.get(ORIGIN).map(|o| o.to_str().unwrap_or("?"));
    let foreign = origin.filter(|origin| {
        let authority = origin.split_once("://").map_or(*origin, |(_, rest)| rest);
        !app.hosts.iter().any(|host| host == authority)
    });
    let cross_site = headers
        .get("sec-fetch-site")
        .is_some_and(|site| site == "cross-site");
    if foreign.is_none() && !cross_site {
        return next.run(request).await;
    }
    let from = foreign.map_or_else(|| "another site".to_owned(), |o| format!("{o:?}"));
    ApiError::from(Error::PermissionDenied(format!(
        "a page of {from} cannot use this server; serve the page from a host the server answers under (--allow-host)"
    )))
    .into_response()
}

/// Whether `request` reads the console (a GET or HEAD outside `/v1`).
fn is_console_read(request: &Request) -> bool {
    let path = request.uri().path();
    (request.method() == Method::GET || request.method() == Method::HEAD)
        && path != "/v1"
        && !path.starts_with("/v1/")
}

/// Counts every answer by route and status, for `/metrics`.
async fn count(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let route = route_name(request.uri().path());
    let response = next.run(request).await;
    app.requests
        .get_or_create(&RouteLabels {
            route,
            status: response.status().as_u16(),
        })
        .inc();
    response
}

/// A bounded set of route names for the request counter.
fn route_name(path: &str) -> &'static str {
    match path {
        "/healthz" => "healthz",
        "/metrics" => "metrics",
        "/v1/whoami" => "whoami",
        p if p.starts_with("/v1/projects/") && p.ends_with("/rpc") => "rpc",
        p if p.starts_with("/v1/projects/") && p.ends_with("/plan") => "plan",
        p if p.starts_with("/v1/projects/") && p.ends_with("/events") => "events",
        p if p.starts_with("/v1/") || p == "/v1" => "other",
        _ => "console",
    }
}

/// The bearer token of `headers`, if any.
fn token(headers: &HeaderMap) -> Option<&str> {
    bearer(headers.get(AUTHORIZATION).and_then(|h| h.to_str().ok()))
}

/// Lets a request on a project through if its token has a grant on the project that reads.
async fn authorize(
    State(app): State<Arc<App>>,
    Path(project): Path<HashMap<String, String>>,
    request: Request,
    next: Next,
) -> Response {
    let checked = ProjectId::new(project.get("project").map_or("", String::as_str))
        .and_then(|project| {
            app.grants
                .check(token(request.headers()), &project)
                .cloned()
        })
        .and_then(|grant| grant.allows(Access::Read));
    match checked {
        Ok(()) => next.run(request).await,
        Err(error) => ApiError::from(error).into_response(),
    }
}

/// `GET /v1/whoami`: every grant of the presented token (name, role, projects).
async fn whoami(State(app): State<Arc<App>>, headers: HeaderMap) -> Result<Json<WhoAmI>, ApiError> {
    let backend = match app.url {
        CatalogUrl::SqliteDir(_) | CatalogUrl::SqliteFile(_) => Backend::Sqlite,
        CatalogUrl::Postgres(_) => Backend::Postgres,
        CatalogUrl::Memory => Backend::Memory,
        CatalogUrl::Http(_) => Backend::Remote,
    };
    let server = Server {
        backend,
        read_only: app.read_only,
    };
    Ok(Json(app.grants.whoami(token(&headers), server)?))
}

/// `POST /v1/projects/{project}/rpc`: one protocol request.
async fn rpc(
    State(app): State<Arc<App>>,
    Path(project): Path<String>,
    request: Request,
) -> Response {
    let answer = async {
        let (parts, body) = request.into_parts();
        let headers = parts.headers;
        let body = read_body(&headers, body).await?;
        let json = headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.split(';')
                    .next()
                    .is_some_and(|t| t.trim() == "application/json")
            });
        if !json {
            return Err(ApiError::with_status(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                Error::invalid("a protocol request is JSON: send Content-Type: application/json"),
            ));
        }
        let request = protocol::decode_request(&body)?;
        let id = ProjectId::new(project.as_str())?;
        let grant = app.grants.check(token(&headers), &id)?;
        let access = request.access();
        grant.allows(access)?;
        if app.read_only && access != Access::Read {
            return Err(Error::PermissionDenied(
                "this server is read-only (hakiri serve --read-only)".into(),
            )
            .into());
        }
        let request = request.stamped_by(grant)?;
        let catalog = app.for_request(&id, access).await?;
        match tokio::time::timeout(
            app.request_timeout,
            protocol::dispatch(catalog.as_ref(), request),
        )
        .await
        {
            Ok(response) => Ok(response?),
            Err(_) => Err(ApiError::with_status(
                StatusCode::GATEWAY_TIMEOUT,
                Error::Unavailable(format!(
                    "the catalog did not answer within {:?}; the request may or may not have been applied",
                    app.request_timeout
                )),
            )),
        }
    };
    match answer.await {
        Ok(response) => Json(Reply::Ok(response)).into_response(),
        Err(error) => error.into_response(),
    }
}

/// A request body of at most [`MAX_BODY`] bytes; a larger one is refused 413 as soon as its
/// `Content-Length` says so, without reading it.
async fn read_body(headers: &HeaderMap, body: axum::body::Body) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::with_status(
            StatusCode::PAYLOAD_TOO_LARGE,
            Error::invalid(format!(
                "a protocol request is at most {} MiB",
                MAX_BODY >> 20
            )),
        )
    };
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > MAX_BODY as u64) {
        return Err(too_large());
    }
    axum::body::to_bytes(body, MAX_BODY).await.map_err(|e| {
        if std::error::Error::source(&e).is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
        {
            too_large()
        } else {
            Error::invalid(format!("the request body cannot be read: {e}")).into()
        }
    })
}

async fn plan(
    State(app): State<Arc<App>>,
    Path(project): Path<String>,
) -> Result<Json<hakiri_core::plan::Plan>, ApiError> {
    let catalog = app.catalog(&project).await?;
    Ok(Json(hakiri_core::plan::current(catalog.as_ref()).await?))
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    let mut body = String::new();
    // Writing to a `String` cannot fail.
    let _ = encode(&mut body, &app.registry);
    (
        [(CONTENT_TYPE, hakiri_reconciler::metrics::CONTENT_TYPE)],
        body,
    )
        .into_response()
}

/// A catalog error as an HTTP answer: the protocol's `Reply::Err` body with the status the Worker
/// gives it, unless the server says otherwise.
#[derive(Debug)]
pub(crate) struct ApiError(Box<(Error, Option<StatusCode>)>);

impl ApiError {
    fn with_status(status: StatusCode, error: Error) -> Self {
        Self(Box::new((error, Some(status))))
    }
}

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        Self(Box::new((error, None)))
    }
}

impl From<CliError> for ApiError {
    fn from(error: CliError) -> Self {
        match error.catalog_error() {
            Some(catalog) => catalog.clone().into(),
            // A project with no catalog here: nothing to show, and nothing is created.
            None if error.code() == "no_catalog" => {
                Self::with_status(StatusCode::NOT_FOUND, Error::invalid(error.render_text()))
            }
            None => Error::Backend(error.render_text()).into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (error, status) = *self.0;
        let status = status.unwrap_or_else(|| {
            StatusCode::from_u16(protocol::status_of(&error))
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
        });
        let mut response = (status, Json(Reply::Err(error))).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer realm=\"hakiri\""),
            );
        }
        response
    }
}
