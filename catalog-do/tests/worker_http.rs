//! The Worker's HTTP surface in a real workerd: authentication and scopes, `whoami`, operators
//! audited as their token's grant (ADR 0023), typed errors for bad input, durability across a
//! restart, and atomicity proven by injecting a failure at every statement of a run finish
//! (ADR 0008).

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::Duration;

use hakiri_contract::{holder_id, operator, pid, spec, stream, value};
use hakiri_core::{
    Actor, BeginRun, Catalog, CatalogExt, Column, ColumnType, Cursor, CursorHistoryEntry,
    CursorKind, Decision, DecisionQuery, Error, Event, EventKind, FinishRun, Lease, Limit,
    OperatorName, PauseChange, PipelineStatus, ProjectId, Reason, Run, RunStatus, Schema,
    SchemaVersion, StreamStats, Trigger,
};
use hakiri_protocol::{
    decode_reply, encode, Access, GrantInfo, HttpCatalog, HttpConfig, Reply, Request, Scope, WhoAmI,
};
use hakiri_test_kit::{fixtures, workerd};
use serde_json::json;
use workerd::{Workerd, WorkerdOptions};

const ADMIN: &str = "admin-token";
const WRITER_A: &str = "writer-token-a";
const READER_A: &str = "reader-token-a";
/// Granted by digest only: the secret holds its SHA-256, never the token.
const HASHED: &str = "hashed-token";
/// An admin grant without a name.
const UNNAMED: &str = "unnamed-token";

/// Grants: admin everywhere; a writer and a reader on `proj-a`; a hashed admin token on `proj-h`;
/// an unnamed admin token on `proj-u`.
fn grants() -> String {
    json!([
        {"name": "admin", "token": ADMIN, "projects": "*", "role": "admin"},
        {"name": "writer-a", "token": WRITER_A, "projects": ["proj-a"], "role": "write"},
        {"name": "reader-a", "token": READER_A, "projects": ["proj-a"], "role": "read"},
        {"name": "hashed", "sha256": sha256_hex(HASHED), "projects": ["proj-h"], "role": "admin"},
        {"token": UNNAMED, "projects": ["proj-u"], "role": "admin"},
    ])
    .to_string()
}

/// SHA-256 of `text` in hex, computed the way an operator would (`sha256sum`).
fn sha256_hex(text: &str) -> String {
    let output = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(text.as_bytes())?;
            child.wait_with_output()
        })
        .expect("run sha256sum");
    String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .next()
        .expect("a digest")
        .to_owned()
}

/// The workerd of this test binary (restart and hook tests start their own).
fn server() -> &'static Workerd {
    static SERVER: OnceLock<Workerd> = OnceLock::new();
    SERVER.get_or_init(|| {
        let persist = tempfile::tempdir().expect("a temporary directory").keep();
        let mut options = WorkerdOptions::new(grants(), persist);
        options.remove_persist_on_exit = true;
        Workerd::start(&options)
    })
}

fn project(name: &str) -> ProjectId {
    ProjectId::new(name).expect("valid project")
}

fn catalog(server: &Workerd, project_name: &str, token: &str) -> HttpCatalog {
    HttpCatalog::connect(
        &server.url(),
        project(project_name),
        token,
        HttpConfig::default(),
    )
    .expect("a client")
}

/// A raw answer: status, typed reply, and the statement count the object reports.
struct Answer {
    status: u16,
    reply: Reply,
    statements: Option<usize>,
}

async fn post(
    server: &Workerd,
    path: &str,
    token: Option<&str>,
    body: Vec<u8>,
    headers: &[(&str, String)],
) -> Answer {
    let mut request = reqwest::Client::new()
        .post(format!("{}{path}", server.url()))
        .body(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let response = request.send().await.expect("the worker answers");
    let status = response.status().as_u16();
    let statements = response
        .headers()
        .get("x-hakiri-statements")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let bytes = response.bytes().await.expect("a body");
    let reply = serde_json::from_slice::<Reply>(&bytes).unwrap_or_else(|e| {
        panic!(
            "HTTP {status}: not a typed reply ({e}): {}",
            String::from_utf8_lossy(&bytes)
        )
    });
    Answer {
        status,
        reply,
        statements,
    }
}

async fn rpc(server: &Workerd, project: &str, token: Option<&str>, request: &Request) -> Answer {
    post(
        server,
        &format!("/v1/projects/{project}/rpc"),
        token,
        encode(request),
        &[],
    )
    .await
}

fn list_pipelines() -> Request {
    Request::ListPipelines {
        after: None,
        limit: Limit::DEFAULT,
    }
}

fn create(id: &str) -> Request {
    Request::PutPipeline {
        spec: spec(id, CursorKind::Monotonic),
        mode: hakiri_core::PutMode::Create,
        by: operator(),
    }
}

fn expect_err(answer: &Answer, status: u16) -> &Error {
    assert_eq!(answer.status, status, "status of {:?}", answer.reply);
    match &answer.reply {
        Reply::Err(e) => e,
        Reply::Ok(ok) => panic!("expected an error with HTTP {status}, got {ok:?}"),
    }
}

#[tokio::test]
async fn no_or_unknown_token_is_401() {
    let server = server();
    for token in [None, Some("not-a-known-token")] {
        let answer = rpc(server, "proj-a", token, &list_pipelines()).await;
        let error = expect_err(&answer, 401);
        assert!(matches!(error, Error::Unauthenticated(_)), "{error:?}");
    }
    // Through the client: a clear, typed error, not retried into a timeout.
    let error = catalog(server, "proj-a", "not-a-known-token")
        .list_pipelines(None, Limit::DEFAULT)
        .await
        .unwrap_err();
    assert!(matches!(&error, Error::Unauthenticated(_)), "{error:?}");
    // A scheme other than Bearer is no token at all.
    let answer = post(
        server,
        "/v1/projects/proj-a/rpc",
        None,
        encode(&list_pipelines()),
        &[("authorization", format!("Basic {ADMIN}"))],
    )
    .await;
    expect_err(&answer, 401);
}

#[tokio::test]
async fn token_of_another_project_is_403() {
    let server = server();
    let answer = rpc(server, "proj-b", Some(WRITER_A), &list_pipelines()).await;
    let error = expect_err(&answer, 403);
    assert!(
        matches!(error, Error::PermissionDenied(m) if m.contains("proj-b")),
        "{error:?}"
    );
    // The same token works on its own project.
    let answer = rpc(server, "proj-a", Some(WRITER_A), &list_pipelines()).await;
    assert_eq!(answer.status, 200, "{:?}", answer.reply);
}

#[tokio::test]
async fn roles_bound_what_a_token_may_do() {
    let server = server();
    let admin = catalog(server, "proj-a", ADMIN);
    if admin.get_pipeline(&pid("roles")).await.is_err() {
        admin
            .create_pipeline(spec("roles", CursorKind::Monotonic), &operator())
            .await
            .expect("create as admin");
    }
    // read < write: a reader can read but not take a lease.
    let reader = catalog(server, "proj-a", READER_A);
    reader
        .get_pipeline(&pid("roles"))
        .await
        .expect("a reader reads");
    let acquire = Request::Acquire {
        pipeline: pid("roles"),
        holder: holder_id("reader"),
        ttl_ms: 30_000,
    };
    let answer = rpc(server, "proj-a", Some(READER_A), &acquire).await;
    let error = expect_err(&answer, 403);
    assert!(
        matches!(error, Error::PermissionDenied(m) if m.contains("read role") && m.contains("needs write")),
        "{error:?}"
    );
    // write < admin: a writer can lease but not create pipelines.
    let answer = rpc(server, "proj-a", Some(WRITER_A), &create("by-writer")).await;
    expect_err(&answer, 403);
    let writer = catalog(server, "proj-a", WRITER_A);
    let lease = writer
        .acquire(&pid("roles"), &holder_id("writer"), Duration::from_secs(30))
        .await
        .expect("a writer leases");
    writer.release(&lease).await.expect("release");
    // Nothing the refused requests asked for happened.
    assert!(admin.get_pipeline(&pid("by-writer")).await.is_err());
}

#[tokio::test]
async fn a_token_granted_by_digest_works() {
    let server = server();
    let answer = rpc(server, "proj-h", Some(HASHED), &create("h")).await;
    assert_eq!(answer.status, 200, "{:?}", answer.reply);
    let answer = rpc(server, "proj-a", Some(HASHED), &list_pipelines()).await;
    expect_err(&answer, 403);
}

fn operator_named(name: &str) -> Actor {
    Actor::Operator(OperatorName::new(name).expect("a valid operator name"))
}

/// `GET /v1/whoami` names the token's grant, its role and projects; it needs a known token and
/// answers GET only.
#[tokio::test]
async fn whoami_reports_the_grant_of_the_token() {
    let server = server();
    let url = format!("{}/v1/whoami", server.url());
    let client = reqwest::Client::new();
    let whoami = |token: &'static str| {
        let request = client.get(&url).bearer_auth(token);
        async move {
            let response = request.send().await.expect("the worker answers");
            let status = response.status().as_u16();
            (status, response.bytes().await.expect("a body"))
        }
    };
    let (status, body) = whoami(WRITER_A).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let me: WhoAmI = serde_json::from_slice(&body).expect("a whoami answer");
    assert_eq!(
        me.grants,
        vec![GrantInfo {
            name: Some(OperatorName::new("writer-a").unwrap()),
            role: Access::Write,
            projects: Scope::Only(vec![project("proj-a")]),
        }]
    );
    let (status, body) = whoami(ADMIN).await;
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&body).unwrap(),
        json!({
            "grants": [{"name": "admin", "role": "admin", "projects": "*"}],
            "server": {"backend": "durable_object", "read_only": false}
        })
    );
    let (status, body) = whoami(UNNAMED).await;
    assert_eq!(status, 200);
    let me: WhoAmI = serde_json::from_slice(&body).unwrap();
    assert_eq!(me.grants[0].name, None);

    let (status, body) = whoami("not-a-known-token").await;
    assert_eq!(status, 401);
    assert!(matches!(
        decode_reply(&body),
        Err(Error::Unauthenticated(_))
    ));
    let anonymous = client.get(&url).send().await.expect("the worker answers");
    assert_eq!(anonymous.status().as_u16(), 401);
    let posted = client
        .post(&url)
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("the worker answers");
    assert_eq!(posted.status().as_u16(), 405);
}

/// A request that acts as an operator is audited as the token's grant, whatever operator (or
/// `system`) the client claims; a grant without a name may read and write but not act as one.
#[tokio::test]
async fn operators_are_audited_as_the_grant_of_their_token() {
    let server = server();
    let catalog = catalog(server, "proj-stamp", ADMIN);
    let pipeline = catalog
        .create_pipeline(spec("p", CursorKind::Monotonic), &operator_named("mallory"))
        .await
        .expect("create as admin");
    let pause = Reason::new("maintenance").unwrap();
    catalog
        .set_paused(&pid("p"), PauseChange::Pause(pause.clone()), &Actor::System)
        .await
        .expect("pause as admin");
    let events = catalog.events(0, Limit::MAX).await.unwrap();
    let admin = operator_named("admin");
    assert_eq!(
        events
            .iter()
            .map(|e| (e.actor.clone(), e.kind.clone()))
            .collect::<Vec<_>>(),
        vec![
            (
                admin.clone(),
                EventKind::PipelineCreated {
                    generation: pipeline.generation
                }
            ),
            (admin, EventKind::PipelinePaused { reason: pause }),
        ]
    );
    assert_eq!(
        catalog
            .get_pipeline(&pid("p"))
            .await
            .unwrap()
            .paused
            .map(|p| p.by),
        Some(operator_named("admin"))
    );

    // The unnamed grant: refused as an operator, nothing created; its reads and writes go through.
    let answer = rpc(server, "proj-u", Some(UNNAMED), &create("p")).await;
    let error = expect_err(&answer, 403);
    assert!(
        matches!(error, Error::PermissionDenied(m) if m.contains("no name")),
        "{error:?}"
    );
    let answer = rpc(server, "proj-u", Some(UNNAMED), &list_pipelines()).await;
    assert!(
        matches!(&answer.reply, Reply::Ok(hakiri_protocol::Response::Pipelines(page)) if page.items.is_empty()),
        "{:?}",
        answer.reply
    );
    let answer = rpc(server, "proj-u", Some(ADMIN), &create("w")).await;
    assert_eq!(answer.status, 200, "{:?}", answer.reply);
    let acquire = Request::Acquire {
        pipeline: pid("w"),
        holder: holder_id("unnamed-worker"),
        ttl_ms: 30_000,
    };
    let answer = rpc(server, "proj-u", Some(UNNAMED), &acquire).await;
    assert!(
        matches!(
            &answer.reply,
            Reply::Ok(hakiri_protocol::Response::Lease(_))
        ),
        "{:?}",
        answer.reply
    );
}

/// A malformed grants secret fails every request closed (HTTP 500, `Backend`), naming the grant
/// and field at fault and never the token.
#[tokio::test]
async fn a_malformed_grants_secret_fails_closed() {
    let persist = tempfile::tempdir().expect("a temporary directory");
    let secret = "s3cret-token-in-the-secret";
    let tokens =
        json!([{"name": "ops", "token": secret, "projects": "*", "role": "owner"}]).to_string();
    let mut options = WorkerdOptions::new(tokens, persist.path());
    options.test_hooks = false;
    let server = Workerd::start(&options);
    let answer = rpc(&server, "proj-a", Some(secret), &list_pipelines()).await;
    let error = expect_err(&answer, 500);
    assert!(
        matches!(error, Error::Backend(m) if m.contains("grant 1: role must be") && !m.contains(secret)),
        "{error:?}"
    );
    let whoami = reqwest::Client::new()
        .get(format!("{}/v1/whoami", server.url()))
        .bearer_auth(secret)
        .send()
        .await
        .expect("the worker answers");
    assert_eq!(whoami.status().as_u16(), 500);
}

#[tokio::test]
async fn malformed_input_gets_typed_invalid_argument() {
    let server = server();
    let bodies: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"not json".to_vec(),
        b"{\"op\":\"no_such_op\"}".to_vec(),
        b"{\"op\":\"get_pipeline\"}".to_vec(),
        b"{\"op\":\"get_pipeline\",\"pipeline\":\"-bad id-\"}".to_vec(),
        b"{\"op\":\"get_pipeline\",\"pipeline\":\"p\",\"extra\":1}".to_vec(),
        b"[1,2,3]".to_vec(),
        vec![0xff, 0xfe, 0x00, 0x80],
        br#"{"op":"events","after":-1,"limit":10}"#.to_vec(),
        br#"{"op":"events","after":0,"limit":0}"#.to_vec(),
        "{\"op\":\"get_pipeline\",\"pipeline\":\""
            .repeat(1000)
            .into_bytes(),
    ];
    for body in bodies {
        let answer = post(
            server,
            "/v1/projects/proj-m/rpc",
            Some(ADMIN),
            body.clone(),
            &[],
        )
        .await;
        let error = expect_err(&answer, 400);
        assert!(
            matches!(error, Error::InvalidArgument(_)),
            "{:?}: {error:?}",
            String::from_utf8_lossy(&body)
        );
    }
    // A declared oversized body is refused before it is sent (raw HTTP: a client library may
    // fail writing a body the worker never reads).
    let head = oversized_request_head(server);
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    assert!(head.contains("invalid_argument"), "{head}");
    // A bad project id in the path, an unknown route, a wrong method.
    let answer = rpc(server, "-bad-", Some(ADMIN), &list_pipelines()).await;
    expect_err(&answer, 400);
    let answer = post(server, "/v1/nothing", Some(ADMIN), Vec::new(), &[]).await;
    expect_err(&answer, 404);
    // The console's files, on a Worker deployed without them (this one has no `ASSETS` binding;
    // `console/e2e/worker.test.mjs` serves them as wrangler.toml deploys them).
    let response = reqwest::Client::new()
        .get(format!("{}/_app/immutable/entry/start.js", server.url()))
        .send()
        .await
        .expect("an answer");
    assert_eq!(response.status().as_u16(), 404);
    let bytes = response.bytes().await.expect("a body");
    assert!(
        matches!(decode_reply(&bytes), Err(Error::InvalidArgument(ref m)) if m.contains("ASSETS")),
        "{}",
        String::from_utf8_lossy(&bytes)
    );
    let response = reqwest::Client::new()
        .get(format!("{}/v1/projects/proj-m/rpc", server.url()))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("an answer");
    assert_eq!(response.status().as_u16(), 405);
    let bytes = response.bytes().await.expect("a body");
    assert!(matches!(
        decode_reply(&bytes),
        Err(Error::InvalidArgument(_))
    ));
    // The worker is still serving, and nothing was created.
    let answer = rpc(server, "proj-m", Some(ADMIN), &list_pipelines()).await;
    assert_eq!(answer.status, 200);
    assert!(
        matches!(&answer.reply, Reply::Ok(hakiri_protocol::Response::Pipelines(page)) if page.items.is_empty())
    );
}

/// Sends only the head of a request declaring a 9 MiB body and returns the answer.
fn oversized_request_head(server: &Workerd) -> String {
    use std::io::{Read, Write};
    let mut stream =
        std::net::TcpStream::connect(("127.0.0.1", server.port())).expect("connect to workerd");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("a read timeout");
    let head = format!(
        "POST /v1/projects/proj-m/rpc HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {ADMIN}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        9 * 1024 * 1024
    );
    stream.write_all(head.as_bytes()).expect("send the head");
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn store_errors_round_trip_typed_with_matching_status() {
    let server = server();
    let catalog = catalog(server, "proj-errors", ADMIN);
    catalog
        .create_pipeline(spec("p", CursorKind::Monotonic), &operator())
        .await
        .unwrap();
    let old = catalog
        .acquire(&pid("p"), &holder_id("a"), Duration::from_secs(30))
        .await
        .unwrap();
    catalog.release(&old).await.unwrap();
    let _new = catalog
        .acquire(&pid("p"), &holder_id("b"), Duration::from_secs(30))
        .await
        .unwrap();
    // A zombie's write: `Fenced` in the store is `Fenced` here, with HTTP 409.
    let begin = Request::BeginRun {
        lease: old.clone(),
        begin: BeginRun::new(Trigger::Manual),
    };
    let answer = rpc(server, "proj-errors", Some(ADMIN), &begin).await;
    assert!(matches!(expect_err(&answer, 409), Error::Fenced { epoch, .. } if *epoch == old.epoch));
    let error = catalog
        .begin_run(&old, BeginRun::new(Trigger::Manual))
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Fenced { .. }), "{error:?}");
    // Someone else's live lease: `Leased`, 409; a missing pipeline: `NotFound`, 404.
    let answer = rpc(
        server,
        "proj-errors",
        Some(ADMIN),
        &Request::Acquire {
            pipeline: pid("p"),
            holder: holder_id("c"),
            ttl_ms: 30_000,
        },
    )
    .await;
    assert!(matches!(expect_err(&answer, 409), Error::Leased { .. }));
    let answer = rpc(
        server,
        "proj-errors",
        Some(ADMIN),
        &Request::GetPipeline {
            pipeline: pid("missing"),
        },
    )
    .await;
    assert!(matches!(expect_err(&answer, 404), Error::NotFound(_)));
}

#[tokio::test]
async fn data_survives_a_workerd_restart() {
    let persist = tempfile::tempdir().expect("a temporary directory");
    let options = WorkerdOptions::new(grants(), persist.path());
    let first = Workerd::start(&options);
    let catalog_1 = catalog(&first, "proj-durable", ADMIN);
    catalog_1
        .create_pipeline(spec("p", CursorKind::Monotonic), &operator())
        .await
        .unwrap();
    let lease = catalog_1
        .acquire(&pid("p"), &holder_id("w"), Duration::from_secs(60))
        .await
        .unwrap();
    let run = catalog_1
        .begin_run(&lease, BeginRun::new(Trigger::Manual))
        .await
        .unwrap();
    catalog_1
        .advance_to(&lease, run.id, &stream("s"), value(json!(41)))
        .await
        .unwrap();
    catalog_1
        .finish_run(
            &lease,
            run.id,
            FinishRun::succeeded().with_cursor(stream("s"), value(json!(42))),
        )
        .await
        .unwrap();
    let events_before = catalog_1.events(0, Limit::MAX).await.unwrap();
    first.stop();

    let second = Workerd::start(&options);
    let catalog_2 = catalog(&second, "proj-durable", ADMIN);
    let cursor = catalog_2
        .get_cursor(&pid("p"), &stream("s"))
        .await
        .unwrap()
        .expect("the cursor survived");
    assert_eq!((cursor.value, cursor.version), (value(json!(42)), 2));
    assert_eq!(
        catalog_2.get_run(run.id).await.unwrap().status,
        RunStatus::Succeeded
    );
    assert_eq!(
        catalog_2.events(0, Limit::MAX).await.unwrap(),
        events_before
    );
    // The lease survived too: it still fences and still writes.
    assert!(matches!(
        catalog_2
            .acquire(&pid("p"), &holder_id("other"), Duration::from_secs(5))
            .await,
        Err(Error::Leased { .. })
    ));
    catalog_2.release(&lease).await.unwrap();
}

#[tokio::test]
async fn fault_injection_needs_the_test_hooks() {
    let persist = tempfile::tempdir().expect("a temporary directory");
    let mut options = WorkerdOptions::new(grants(), persist.path());
    options.test_hooks = false;
    let server = Workerd::start(&options);
    let answer = post(
        &server,
        "/v1/projects/proj-hooks/rpc",
        Some(ADMIN),
        encode(&create("p")),
        &[("x-hakiri-fail-at", "1".to_owned())],
    )
    .await;
    assert_eq!(
        answer.status, 200,
        "the header is ignored: {:?}",
        answer.reply
    );
    assert_eq!(answer.statements, None);
    // The benchmark's floor is off too.
    let floor = reqwest::Client::new()
        .post(format!("{}/v1/projects/proj-hooks/floor", server.url()))
        .bearer_auth(ADMIN)
        .body(r#"{"value": 1, "version": 0}"#)
        .send()
        .await
        .expect("the worker answers");
    assert_eq!(floor.status().as_u16(), 404);
}

/// The Worker benchmark's floor (test hooks on) is one guarded write: it moves its row from the
/// version it is told to the next and refuses any other, and needs a write grant. Its layout
/// floor guards its cursor the same way.
#[tokio::test]
async fn the_benchmark_floor_is_a_guarded_write() {
    let server = server();
    let url = format!("{}/v1/projects/proj-a/floor", server.url());
    let client = reqwest::Client::new();
    let write = |token: &'static str, version: u64| {
        client
            .post(&url)
            .bearer_auth(token)
            .body(json!({"value": {"at": version + 1}, "version": version}).to_string())
            .send()
    };
    let first = write(WRITER_A, 0).await.expect("the worker answers");
    assert_eq!(first.status().as_u16(), 200);
    assert_eq!(first.text().await.unwrap(), "1");
    let stale = write(WRITER_A, 0).await.expect("the worker answers");
    assert_eq!(stale.status().as_u16(), 409, "the row is at version 1 now");
    let second = write(WRITER_A, 1).await.expect("the worker answers");
    assert_eq!(second.text().await.unwrap(), "2");
    let reader = write(READER_A, 2).await.expect("the worker answers");
    assert_eq!(reader.status().as_u16(), 403);

    // The layout floor keeps its own cursor, guarded the same way.
    let layout = |version: u64| {
        client
            .post(&url)
            .bearer_auth(WRITER_A)
            .body(json!({"value": version + 1, "version": version, "layout": true}).to_string())
            .send()
    };
    for version in 0..3 {
        let moved = layout(version).await.expect("the worker answers");
        assert_eq!(moved.status().as_u16(), 200);
        assert_eq!(moved.text().await.unwrap(), (version + 1).to_string());
    }
    let stale = layout(1).await.expect("the worker answers");
    assert_eq!(
        stale.status().as_u16(),
        409,
        "the layout cursor is at version 3"
    );
}

fn columns(cols: &[(&str, ColumnType, bool)]) -> Schema {
    Schema::new(
        cols.iter()
            .map(|(n, t, nullable)| Column::new(*n, *t, *nullable))
            .collect(),
        vec!["id".to_owned()],
    )
    .expect("valid schema")
}

fn base() -> Schema {
    columns(&[
        ("id", ColumnType::Integer, false),
        ("name", ColumnType::String, true),
    ])
}

fn additive() -> Schema {
    columns(&[
        ("id", ColumnType::Integer, false),
        ("name", ColumnType::String, true),
        ("note", ColumnType::String, true),
    ])
}

fn breaking() -> Schema {
    columns(&[
        ("id", ColumnType::Integer, false),
        ("name", ColumnType::Integer, true),
    ])
}

/// Everything a finish can touch, as the catalog reports it.
#[derive(Debug, PartialEq)]
struct Snapshot {
    run: Run,
    statuses: Vec<PipelineStatus>,
    cursors: Vec<Cursor>,
    histories: BTreeMap<String, Vec<CursorHistoryEntry>>,
    schemas: BTreeMap<String, Vec<SchemaVersion>>,
    decisions: Vec<Decision>,
    events: Vec<Event>,
}

const STREAMS: [&str; 3] = ["s", "t", "u"];

async fn snapshot(catalog: &HttpCatalog, run: &Run) -> Snapshot {
    let p = pid("p");
    let mut histories = BTreeMap::new();
    let mut schemas = BTreeMap::new();
    for s in STREAMS {
        let page = catalog
            .cursor_history(&p, &stream(s), None, Limit::MAX)
            .await
            .unwrap();
        histories.insert(s.to_owned(), page.items);
        schemas.insert(
            s.to_owned(),
            catalog.list_schema_versions(&p, &stream(s)).await.unwrap(),
        );
    }
    Snapshot {
        run: catalog.get_run(run.id).await.unwrap(),
        statuses: catalog.all_statuses().await.unwrap().items,
        cursors: catalog.list_cursors(&p).await.unwrap(),
        histories,
        schemas,
        decisions: catalog
            .list_decisions(&DecisionQuery {
                limit: Limit::MAX,
                ..DecisionQuery::default()
            })
            .await
            .unwrap()
            .items,
        events: catalog.events(0, Limit::MAX).await.unwrap(),
    }
}

/// A running pipeline with cursors on `s` and `t` and schemas observed on `s` and `u`.
async fn running(catalog: &HttpCatalog) -> (Lease, Run) {
    let spec = spec("p", CursorKind::Monotonic);
    let (lease, run) = fixtures::begun(catalog, spec, "w", Duration::from_secs(120)).await;
    for (s, v) in [("s", 10), ("t", 3)] {
        catalog
            .advance_to(&lease, run.id, &stream(s), value(json!(v)))
            .await
            .unwrap();
    }
    for s in ["s", "u"] {
        catalog
            .observe_schema(&lease, run.id, &stream(s), base())
            .await
            .unwrap();
    }
    (lease, run)
}

/// Fails the finish at statement 1, 2, 3, … until it has no statement left to fail: each failure
/// leaves run, lease, cursors, histories, schemas, decisions and events exactly as they were,
/// and the same finish then succeeds with all of its effects.
#[tokio::test]
async fn a_failure_at_any_statement_of_a_finish_leaves_nothing_behind() {
    let server = server();
    let catalog = catalog(server, "proj-atomic", ADMIN);
    let (lease, run) = running(&catalog).await;
    let finish = FinishRun::succeeded()
        .with_cursor(stream("s"), value(json!(20)))
        .with_cursor(stream("t"), value(json!(7)))
        .with_stats(stream("s"), StreamStats::new(10, 100))
        // Accepted (additive), first version (new stream), held (breaking → pauses).
        .with_schema(stream("s"), additive())
        .with_schema(stream("t"), base())
        .with_schema(stream("u"), breaking());
    let request = Request::FinishRun {
        lease: lease.clone(),
        run: run.id,
        finish,
    };
    let before = snapshot(&catalog, &run).await;

    let mut fail_at = 1;
    let statements = loop {
        assert!(fail_at < 1000, "the finish never stopped failing");
        let answer = post(
            server,
            "/v1/projects/proj-atomic/rpc",
            Some(ADMIN),
            encode(&request),
            &[("x-hakiri-fail-at", fail_at.to_string())],
        )
        .await;
        let executed = answer
            .statements
            .expect("the object reports its statement count");
        match &answer.reply {
            Reply::Err(Error::Unavailable(m)) if m.contains("injected failure") => {
                assert_eq!(answer.status, 503);
                assert_eq!(executed, fail_at);
                assert_eq!(
                    snapshot(&catalog, &run).await,
                    before,
                    "a failure at statement {fail_at} left something behind"
                );
            }
            Reply::Ok(_) => {
                assert!(executed < fail_at, "the finish ran {executed} statements");
                break executed;
            }
            Reply::Err(other) => panic!("statement {fail_at}: unexpected {other:?}"),
        }
        fail_at += 1;
    };
    eprintln!("the finish ran {statements} statements; each one failed once, leaving nothing");
    assert!(
        statements >= 10,
        "a finish with cursors, stats and schemas runs many statements, not {statements}"
    );

    // The finish landed whole.
    let after = snapshot(&catalog, &run).await;
    assert_eq!(after.run.status, RunStatus::Succeeded);
    let cursor = |name: &str| {
        after
            .cursors
            .iter()
            .find(|c| c.stream == stream(name))
            .map(|c| c.value.clone())
    };
    assert_eq!(cursor("s"), Some(value(json!(20))));
    assert_eq!(cursor("t"), Some(value(json!(7))));
    assert_eq!(after.schemas["s"].len(), 2);
    assert_eq!(after.schemas["t"].len(), 1);
    assert_eq!(after.decisions.len(), 2, "{:?}", after.decisions);
    assert!(after.events.len() > before.events.len());
    let status = &after.statuses[0];
    assert_eq!(
        status.held_decisions.len(),
        1,
        "the breaking change is held"
    );
}

/// The object remembers the cursors it wrote across requests (ADR 0041): a checkpoint of a stream
/// it wrote is one guarded write and its event, and a failure at either leaves the cursor and its
/// history as they were.
#[tokio::test]
async fn the_object_plans_a_checkpoint_from_the_cursor_it_wrote() {
    let server = server();
    let catalog = catalog(server, "proj-memo", ADMIN);
    let (lease, run) = running(&catalog).await;
    let to = |v: i64| Request::Advance {
        lease: lease.clone(),
        run: run.id,
        stream: stream("s"),
        advance: hakiri_core::CursorAdvance::to(value(json!(v))),
    };
    let advance = |request: &Request, fail_at: usize| {
        let (body, fail_at) = (encode(request), fail_at.to_string());
        async move {
            let headers = [("x-hakiri-fail-at", fail_at)];
            post(
                server,
                "/v1/projects/proj-memo/rpc",
                Some(ADMIN),
                body,
                &headers,
            )
            .await
        }
    };
    let stored = || async {
        let cursor = catalog.get_cursor(&lease.pipeline, &stream("s")).await;
        let cursor = cursor.unwrap().expect("the stream has a cursor");
        (cursor.value, cursor.version)
    };
    let before = stored().await;
    assert_eq!(before, (value(json!(10)), 1));

    for fail_at in [1, 2] {
        let answer = advance(&to(11), fail_at).await;
        match &answer.reply {
            Reply::Err(Error::Unavailable(m)) if m.contains("injected failure") => {}
            other => panic!("statement {fail_at}: expected the injected failure, got {other:?}"),
        }
        assert_eq!(stored().await, before, "statement {fail_at} left something");
    }
    let answer = advance(&to(11), 1000).await;
    assert!(matches!(answer.reply, Reply::Ok(_)), "{:?}", answer.reply);
    assert_eq!(answer.statements, Some(2), "a remembered checkpoint");
    assert_eq!(stored().await, (value(json!(11)), 2));
    let history = catalog
        .cursor_history(&lease.pipeline, &stream("s"), None, Limit::MAX)
        .await
        .unwrap();
    let versions: Vec<u64> = history.items.iter().map(|e| e.version).collect();
    assert_eq!(versions, [2, 1]);
}

/// `ping` reaches the project's object and back, and is authenticated like everything else.
#[tokio::test]
async fn ping_is_an_authenticated_round_trip() {
    let server = server();
    let url = format!("{}/v1/projects/proj-a/ping", server.url());
    let client = reqwest::Client::new();
    let answer = client
        .post(&url)
        .bearer_auth(WRITER_A)
        .send()
        .await
        .expect("the worker answers");
    assert_eq!(answer.status().as_u16(), 200);
    assert_eq!(answer.text().await.unwrap(), "pong");
    let refused = client.post(&url).send().await.expect("the worker answers");
    assert_eq!(refused.status().as_u16(), 401);
    let other = format!("{}/v1/projects/proj-b/ping", server.url());
    let refused = client
        .post(&other)
        .bearer_auth(WRITER_A)
        .send()
        .await
        .expect("the worker answers");
    assert_eq!(refused.status().as_u16(), 403);
}
