//! `hakiri serve` end to end: the real binary on an embedded SQLite catalog, spoken to over real
//! HTTP on loopback — the token, the Host check, whoami, the plan, the live event stream (tail,
//! resume by `Last-Event-ID`, the pipeline filter, events written by another process while a
//! client watches), the request counters, and a clean stop on SIGTERM.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::serve::Served;
use hakiri_catalog_do::{SqliteCatalog, SqliteConfig};
use hakiri_core::{Actor, Catalog, CatalogExt, CursorKind, ProjectId};
use hakiri_test_kit::fixtures;
use serde_json::Value;

const PROJECT: &str = "shop";

/// A running `hakiri serve` and the directory of its catalogs.
struct Server {
    served: Served,
    port: u16,
    token: String,
    /// The console's URL, as printed.
    console: String,
    dir: tempfile::TempDir,
}

impl Server {
    /// Creates pipelines `orders` and `users` in a fresh catalog, then serves it.
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let catalog = open(dir.path());
        for id in ["orders", "users"] {
            catalog
                .create_pipeline(fixtures::spec(id, CursorKind::Monotonic), &Actor::System)
                .await
                .unwrap();
        }
        drop(catalog);
        Self::serve(dir, &["--listen", "127.0.0.1:0"])
    }

    /// Serves the catalogs in `dir` with `args`.
    fn serve(dir: tempfile::TempDir, args: &[&str]) -> Self {
        let mut command = common::hakiri(&common::sqlite_catalog(dir.path()), PROJECT);
        command.args(["--output", "json", "serve"]).args(args);
        let served = Served::start(&command, &[]);
        Server {
            port: served.port,
            token: served.token.clone(),
            console: served.console.clone(),
            served,
            dir,
        }
    }

    /// A GET of `path` with `headers`; the whole answer (the connection is closed after it).
    fn get(&self, path: &str, headers: &[(&str, &str)]) -> Answer {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut request = format!("GET {path} HTTP/1.1\r\nConnection: close\r\n");
        if !headers.iter().any(|(name, _)| *name == "Host") {
            request.push_str(&format!("Host: 127.0.0.1:{}\r\n", self.port));
        }
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes()).unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).unwrap();
        Answer::parse(&text)
    }

    /// A client of `project` on this server, with the launch token.
    fn remote(&self, project: &str) -> hakiri_protocol::HttpCatalog {
        hakiri_protocol::HttpCatalog::connect(
            &format!("http://127.0.0.1:{}", self.port),
            ProjectId::new(project).unwrap(),
            &self.token,
            hakiri_protocol::HttpConfig::default(),
        )
        .unwrap()
    }

    fn bearer(&self) -> String {
        format!("Bearer {}", self.token)
    }

    /// Opens an event stream at `path` and returns it once the headers are read.
    fn subscribe(&self, path: &str, headers: &[(&str, &str)]) -> Subscription {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut request = format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nAuthorization: {}\r\n",
            self.port,
            self.bearer()
        );
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes()).unwrap();
        let mut reader = BufReader::new(stream);
        let mut status = String::new();
        reader.read_line(&mut status).unwrap();
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
        loop {
            let mut header = String::new();
            reader.read_line(&mut header).unwrap();
            if header == "\r\n" {
                break;
            }
        }
        Subscription { reader }
    }

    /// Stops this server (SIGTERM, a clean exit) and keeps its catalogs' directory.
    fn stop_keeping_dir(self) -> tempfile::TempDir {
        self.served.stop();
        self.dir
    }

    /// Stops this server and serves the same catalogs again (a new port, a new token).
    fn restart(self) -> Self {
        Self::serve(self.stop_keeping_dir(), &["--listen", "127.0.0.1:0"])
    }

    /// Stops this server with SIGTERM and asserts a clean exit.
    fn terminate(self) {
        self.served.stop();
    }
}

fn open(dir: &Path) -> SqliteCatalog {
    std::fs::create_dir_all(dir.join(".hakiri")).unwrap();
    SqliteCatalog::open(
        dir.join(".hakiri").join(format!("{PROJECT}.db")),
        ProjectId::new(PROJECT).unwrap(),
        SqliteConfig::default(),
    )
    .unwrap()
}

/// An HTTP answer: status, headers (lowercase names) and body (chunked bodies decoded).
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn parse(text: &str) -> Self {
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((text, ""));
        let mut lines = head.lines();
        let status = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("not an HTTP answer: {text:?}"));
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let chunked = headers
            .iter()
            .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
        let body = if chunked {
            dechunk(body)
        } else {
            body.to_owned()
        };
        Answer {
            status,
            headers,
            body,
        }
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

/// An open event stream.
struct Subscription {
    reader: BufReader<TcpStream>,
}

impl Subscription {
    /// The next `n` events' sequence numbers and pipelines (keep-alive comments skipped).
    fn next(&mut self, n: usize) -> Vec<(u64, String)> {
        let mut events = Vec::new();
        let mut id = None;
        while events.len() < n {
            let mut line = String::new();
            let read = self
                .reader
                .read_line(&mut line)
                .expect("the next event in time");
            assert!(read > 0, "the stream ended");
            // Chunk sizes and blank lines between messages carry nothing here.
            if let Some(value) = line.trim_end().strip_prefix("id: ") {
                id = value.parse().ok();
            } else if let Some(data) = line.trim_end().strip_prefix("data: ") {
                let event: Value = serde_json::from_str(data).unwrap();
                let seq = id.take().expect("an id before the data");
                assert_eq!(event["seq"], seq, "the id is the event's number");
                events.push((seq, event["pipeline"].as_str().unwrap().to_owned()));
            }
        }
        events
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_needs_its_token_and_a_host_it_answers_for() {
    let server = Server::start().await;
    let health = server.get("/healthz", &[]);
    assert_eq!((health.status, health.body.as_str()), (200, "ok\n"));

    let none = server.get("/v1/whoami", &[]);
    assert_eq!(none.status, 401);
    assert_eq!(
        none.header("www-authenticate"),
        Some("Bearer realm=\"hakiri\"")
    );
    assert_eq!(
        none.json()["err"]["code"],
        "unauthenticated",
        "{}",
        none.body
    );
    let wrong = server.get("/v1/whoami", &[("Authorization", "Bearer nope")]);
    assert_eq!(wrong.status, 401);

    let bearer = server.bearer();
    let me = server.get("/v1/whoami", &[("Authorization", &bearer)]);
    assert_eq!(me.status, 200, "{}", me.body);
    // The launch token acts as the operator who started the server.
    assert_eq!(
        me.json()["grants"],
        serde_json::json!([{"name": "tester", "role": "admin", "projects": "*"}])
    );
    assert_eq!(
        me.json()["server"],
        serde_json::json!({"backend": "sqlite", "read_only": false})
    );

    // DNS rebinding: a page on evil.example resolving to 127.0.0.1 sends its own Host.
    let forged = server.get(
        "/v1/whoami",
        &[("Authorization", &bearer), ("Host", "evil.example:80")],
    );
    assert_eq!(forged.status, 421, "{}", forged.body);

    let metrics = server.get("/metrics", &[]);
    assert!(
        metrics
            .body
            .contains("hakiri_http_requests_total{route=\"whoami\",status=\"401\"} 2"),
        "{}",
        metrics.body
    );
    server.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_answers_the_plan_and_refuses_a_project_without_a_catalog() {
    let server = Server::start().await;
    let bearer = server.bearer();
    let plan = server.get("/v1/projects/shop/plan", &[("Authorization", &bearer)]);
    assert_eq!(plan.status, 200, "{}", plan.body);
    let plan = plan.json();
    let items = plan["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["pipeline"], "orders");
    assert_eq!(items[0]["action"]["action"], "skip");
    assert_eq!(items[0]["action"]["reason"]["kind"], "manual");
    assert!(plan["as_of"].is_string());

    let typo = server.get("/v1/projects/shpo/plan", &[("Authorization", &bearer)]);
    assert_eq!(typo.status, 404, "{}", typo.body);
    assert!(typo.body.contains("shpo"), "{}", typo.body);
    assert!(
        !server.dir.path().join(".hakiri/shpo.db").exists(),
        "no catalog is created for a typo"
    );
    server.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_stream_live_from_a_tail_resume_after_an_id_and_filter_by_pipeline() {
    let server = Server::start().await;
    // Two pipelines created: events 1 and 2.
    let mut everything = server.subscribe("/v1/projects/shop/events", &[]);
    assert_eq!(
        everything.next(2),
        [(1, "orders".to_owned()), (2, "users".to_owned())]
    );
    let mut tail = server.subscribe("/v1/projects/shop/events?tail=1", &[]);
    assert_eq!(tail.next(1), [(2, "users".to_owned())]);
    let mut orders = server.subscribe("/v1/projects/shop/events?pipeline=orders", &[]);
    assert_eq!(orders.next(1), [(1, "orders".to_owned())]);

    // Another process writes while the clients watch: each sees what it asked for, in order.
    let catalog = open(server.dir.path());
    let ttl = Duration::from_secs(60);
    let holder = hakiri_core::HolderId::new("w").unwrap();
    let users = hakiri_core::PipelineId::new("users").unwrap();
    let orders_id = hakiri_core::PipelineId::new("orders").unwrap();
    catalog.acquire(&users, &holder, ttl).await.unwrap(); // 3
    catalog.acquire(&orders_id, &holder, ttl).await.unwrap(); // 4
    assert_eq!(
        everything.next(2),
        [(3, "users".to_owned()), (4, "orders".to_owned())]
    );
    assert_eq!(
        tail.next(2),
        [(3, "users".to_owned()), (4, "orders".to_owned())]
    );
    assert_eq!(orders.next(1), [(4, "orders".to_owned())]);

    // A client that lost its connection resumes after the last id it saw, gap- and repeat-free.
    let mut resumed = server.subscribe("/v1/projects/shop/events", &[("Last-Event-ID", "2")]);
    assert_eq!(
        resumed.next(2),
        [(3, "users".to_owned()), (4, "orders".to_owned())]
    );
    let mut after = server.subscribe("/v1/projects/shop/events?after=3", &[]);
    assert_eq!(after.next(1), [(4, "orders".to_owned())]);

    // Across a restart of the server (its streams end with it): resuming misses nothing.
    let server = server.restart();
    catalog
        .create_pipeline(
            fixtures::spec("refunds", CursorKind::Monotonic),
            &Actor::System,
        )
        .await
        .unwrap(); // 5
    let mut resumed = server.subscribe("/v1/projects/shop/events", &[("Last-Event-ID", "4")]);
    assert_eq!(resumed.next(1), [(5, "refunds".to_owned())]);
    server.terminate();
}

#[test]
fn serve_refuses_an_address_other_machines_can_reach() {
    let dir = tempfile::tempdir().unwrap();
    let out = common::hakiri(&common::sqlite_catalog(dir.path()), PROJECT)
        .args(["serve", "--listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("loopback"), "{stderr}");
    assert!(stderr.contains("--grants"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_that_stops_reading_holds_back_no_writer_and_no_other_reader() {
    let server = Server::start().await;
    // Subscribed, then never read again: the server's socket buffers fill up.
    let _stalled = server.subscribe("/v1/projects/shop/events", &[]);
    let catalog = open(server.dir.path());
    let ttl = Duration::from_secs(60);
    let (lease, run) = fixtures::begun(
        &catalog,
        fixtures::spec("busy", CursorKind::Opaque),
        "w",
        ttl,
    )
    .await;
    let stream = hakiri_core::StreamName::new("s").unwrap();
    // Some megabytes of events, far beyond what the sockets between them buffer.
    let padding = "x".repeat(2_000);
    for i in 1..=2_000u64 {
        let value =
            hakiri_core::CursorValue::new(serde_json::json!({"n": i, "pad": padding})).unwrap();
        catalog
            .advance_to(&lease, run.id, &stream, value)
            .await
            .unwrap();
    }
    // Another client still gets the newest events at once.
    let mut fresh = server.subscribe("/v1/projects/shop/events?tail=1", &[]);
    let newest = fresh.next(1);
    assert_eq!(newest[0].1, "busy");
    assert_eq!(
        newest[0].0,
        2 + 3 + 2_000,
        "two creates, create/acquire/begin, the checkpoints"
    );
    server.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grants_file_scopes_tokens_to_projects_and_roles_and_allows_other_interfaces() {
    let dir = Server::start().await.stop_keeping_dir();
    let grants = dir.path().join("grants.json");
    std::fs::write(
        &grants,
        r#"[{"name": "dashboards", "token": "read-shop", "projects": ["shop"], "role": "read"},
            {"name": "elsewhere", "token": "admin-other", "projects": ["other"], "role": "admin"}]"#,
    )
    .unwrap();
    let grants = grants.to_str().unwrap().to_owned();
    let server = Server::serve(dir, &["--listen", "0.0.0.0:0", "--grants", &grants]);
    assert_eq!(server.token, "", "no launch token with a grants file");

    let read = [("Authorization", "Bearer read-shop")];
    let plan = server.get("/v1/projects/shop/plan", &read);
    assert_eq!(plan.status, 200, "{}", plan.body);
    let me = server.get("/v1/whoami", &read);
    assert_eq!(
        me.json()["grants"],
        serde_json::json!([{"name": "dashboards", "role": "read", "projects": ["shop"]}])
    );
    let other = server.get(
        "/v1/projects/shop/plan",
        &[("Authorization", "Bearer admin-other")],
    );
    assert_eq!(other.status, 403, "{}", other.body);
    let unknown = server.get(
        "/v1/projects/shop/plan",
        &[("Authorization", "Bearer nope")],
    );
    assert_eq!(unknown.status, 401, "{}", unknown.body);
    // A read grant cannot write, whatever the request claims.
    let pause = pause_orders();
    let write = raw(
        server.port,
        &format!(
            "POST /v1/projects/shop/rpc HTTP/1.1\r\nAuthorization: Bearer read-shop\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
            pause.len()
        ),
        pause.as_bytes(),
    );
    assert_eq!(write.status, 403, "{}", write.body);
    assert!(write.body.contains("permission_denied"), "{}", write.body);
    server.terminate();
}

#[test]
fn a_bad_grants_file_is_refused_naming_the_grant_and_never_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let grants = dir.path().join("grants.json");
    std::fs::write(
        &grants,
        r#"[{"name": "x", "token": "s3cret-token", "projects": "*", "rol": "read"}]"#,
    )
    .unwrap();
    let out = common::hakiri(&common::sqlite_catalog(dir.path()), PROJECT)
        .args(["serve", "--listen", "127.0.0.1:0", "--grants"])
        .arg(&grants)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("grant 1"), "{stderr}");
    assert!(stderr.contains("rol"), "{stderr}");
    assert!(!stderr.contains("s3cret-token"), "{stderr}");
}

/// Found by the soak: a server that had opened some 4,000 projects' files could open no more
/// (`unable to open database file`: every catalog kept its files and writer thread). Only the
/// projects used last stay open; the others are closed and opened again when asked for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_of_many_projects_keeps_only_the_last_used_open() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::serve(
        dir,
        &["--listen", "127.0.0.1:0", "--max-open-projects", "3"],
    );
    let projects: Vec<String> = (0..8).map(|i| format!("p{i}")).collect();
    for project in &projects {
        server
            .remote(project)
            .create_pipeline(fixtures::spec("web", CursorKind::Monotonic), &Actor::System)
            .await
            .unwrap();
    }
    let metrics = server.get("/metrics", &[]);
    assert!(
        metrics.body.contains("hakiri_open_catalogs 3\n"),
        "{}",
        metrics.body
    );
    // Every project, closed or not, answers with what it holds, and takes writes again.
    let web = hakiri_core::PipelineId::new("web").unwrap();
    for project in &projects {
        let catalog = server.remote(project);
        let pipeline = catalog.get_pipeline(&web).await.unwrap();
        catalog
            .set_paused(
                &web,
                hakiri_core::PauseChange::Pause(
                    hakiri_core::Reason::new("closed and opened again").unwrap(),
                ),
                &Actor::System,
            )
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "pause {project}'s pipeline (generation {}): {e}",
                    pipeline.generation
                )
            });
    }
    let metrics = server.get("/metrics", &[]);
    assert!(
        metrics.body.contains("hakiri_open_catalogs 3\n"),
        "{}",
        metrics.body
    );
    server.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_protocol_over_serve_is_the_catalog_as_the_worker_serves_it() {
    let server = Server::start().await;
    let base = format!("http://127.0.0.1:{}", server.port);
    let shop = server.remote(PROJECT);
    // A writer's whole round: create (claiming to be someone else), lease, run, advance, finish.
    let claimed = Actor::Operator(hakiri_core::OperatorName::new("mallory").unwrap());
    shop.create_pipeline(fixtures::spec("web", CursorKind::Monotonic), &claimed)
        .await
        .unwrap();
    let holder = hakiri_core::HolderId::new("w").unwrap();
    let web = hakiri_core::PipelineId::new("web").unwrap();
    let lease = shop
        .acquire(&web, &holder, Duration::from_secs(60))
        .await
        .unwrap();
    let run = shop
        .begin_run(
            &lease,
            hakiri_core::BeginRun::new(hakiri_core::Trigger::Manual),
        )
        .await
        .unwrap();
    let stream = hakiri_core::StreamName::new("s").unwrap();
    shop.advance_to(
        &lease,
        run.id,
        &stream,
        hakiri_core::CursorValue::new(serde_json::json!(42)).unwrap(),
    )
    .await
    .unwrap();
    shop.finish_run(&lease, run.id, hakiri_core::FinishRun::succeeded())
        .await
        .unwrap();
    // The file holds it, and the audit log names the token's operator, not the claim.
    let local = open(server.dir.path());
    let cursor = local.get_cursor(&web, &stream).await.unwrap().unwrap();
    assert_eq!(cursor.value.as_json(), &serde_json::json!(42));
    let created = local
        .pipeline_events(&web, 0, hakiri_core::Limit::MAX)
        .await
        .unwrap();
    assert_eq!(
        created[0].actor,
        Actor::Operator(hakiri_core::OperatorName::new("tester").unwrap())
    );
    // Typed errors cross the wire: while `w` holds the lease, another holder gets `Leased`.
    let other = hakiri_core::HolderId::new("other").unwrap();
    let refused = shop
        .acquire(&web, &other, Duration::from_secs(60))
        .await
        .unwrap_err();
    assert!(
        matches!(refused, hakiri_core::Error::Leased { .. }),
        "{refused:?}"
    );
    shop.release(&lease).await.unwrap();

    // A write to a new project creates its catalog; a read of an unknown one answers as an empty
    // catalog (as on the Worker) and creates nothing.
    server
        .remote("fresh")
        .create_pipeline(fixtures::spec("p", CursorKind::Opaque), &Actor::System)
        .await
        .unwrap();
    assert!(server.dir.path().join(".hakiri/fresh.db").exists());
    let nothing = server.remote("nothing");
    let listed = nothing
        .list_pipelines(None, hakiri_core::Limit::MAX)
        .await
        .unwrap();
    assert!(listed.items.is_empty(), "{listed:?}");
    let missing = nothing.get_pipeline(&web).await.unwrap_err();
    assert!(
        matches!(missing, hakiri_core::Error::NotFound(_)),
        "{missing:?}"
    );
    assert!(!server.dir.path().join(".hakiri/nothing.db").exists());

    // The CLI's http:// catalog URL works against it.
    let out = common::hakiri(&base, PROJECT)
        .args([
            "--token",
            &server.token,
            "--output",
            "json",
            "pipelines",
            "list",
        ])
        .output()
        .unwrap();
    let text = common::stdout_of_success(out, &["pipelines", "list"], "");
    assert!(text.contains("\"web\""), "{text}");
    server.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpc_needs_json_and_a_read_only_server_answers_reads_only() {
    let dir = Server::start().await.stop_keeping_dir();
    let server = Server::serve(dir, &["--listen", "127.0.0.1:0", "--read-only"]);
    let bearer = server.bearer();
    let me = server.get("/v1/whoami", &[("Authorization", &bearer)]);
    assert_eq!(me.json()["server"]["read_only"], true, "{}", me.body);
    let post = |content_type: &str, body: &str| {
        let mut stream = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
        let request = format!(
            "POST /v1/projects/shop/rpc HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nAuthorization: {bearer}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            server.port,
            body.len()
        );
        stream.write_all(request.as_bytes()).unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).unwrap();
        Answer::parse(&text)
    };
    let list = serde_json::to_string(&hakiri_protocol::Request::ListPipelines {
        after: None,
        limit: hakiri_core::Limit::MAX,
    })
    .unwrap();
    let form = post("application/x-www-form-urlencoded", &list);
    assert_eq!(form.status, 415, "{}", form.body);
    let read = post("application/json", &list);
    assert_eq!(read.status, 200, "{}", read.body);
    match hakiri_protocol::decode_reply(read.body.as_bytes()).unwrap() {
        hakiri_protocol::Response::Pipelines(page) => assert_eq!(page.items.len(), 2),
        other => panic!("{other:?}"),
    }
    let pause = serde_json::to_string(&hakiri_protocol::Request::SetPaused {
        pipeline: hakiri_core::PipelineId::new("orders").unwrap(),
        change: hakiri_core::PauseChange::Pause(hakiri_core::Reason::new("x").unwrap()),
        by: Actor::System,
    })
    .unwrap();
    let write = post("application/json", &pause);
    assert_eq!(write.status, 403, "{}", write.body);
    assert!(write.body.contains("read-only"), "{}", write.body);
    server.terminate();
}

/// A port free on loopback at the time of asking.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `hakiri events --follow` on a catalog server is pushed the events (it polls only every hour
/// here, so what arrives came through the server's event stream), and it rides out a restart of
/// the server: what was written while the server was away arrives after it is back, nothing is
/// missed and nothing repeats.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_follow_on_a_server_is_pushed_and_rides_out_a_restart() {
    let dir = Server::start().await.stop_keeping_dir();
    let grants = dir.path().join("grants.json");
    std::fs::write(
        &grants,
        r#"[{"name": "watcher", "token": "watch-shop", "projects": ["shop"], "role": "read"}]"#,
    )
    .unwrap();
    let grants = grants.to_str().unwrap().to_owned();
    let listen = format!("127.0.0.1:{}", free_port());
    let args = ["--listen", listen.as_str(), "--grants", grants.as_str()];
    let server = Server::serve(dir, &args);

    let mut follower = common::hakiri(&format!("http://{listen}"), PROJECT)
        .env("HAKIRI_TOKEN", "watch-shop")
        .args(["--output", "json", "events", "--follow", "--poll", "1h"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start hakiri events --follow");
    let (lines, seen) = std::sync::mpsc::channel();
    let stdout = BufReader::new(follower.stdout.take().unwrap());
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            let event: Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("not an event ({e}): {line}"));
            let _ = lines.send((
                event["seq"].as_u64().unwrap(),
                event["pipeline"].as_str().unwrap().to_owned(),
            ));
        }
    });
    let next = |n: usize| -> Vec<(u64, String)> {
        (0..n)
            .map(|_| {
                seen.recv_timeout(Duration::from_secs(20))
                    .expect("the next event within 20 s")
            })
            .collect()
    };
    // The last events, then what happens as it happens.
    assert_eq!(next(2), [(1, "orders".to_owned()), (2, "users".to_owned())]);
    let catalog = open(server.dir.path());
    let holder = hakiri_core::HolderId::new("w").unwrap();
    let users = hakiri_core::PipelineId::new("users").unwrap();
    catalog
        .acquire(&users, &holder, Duration::from_secs(60))
        .await
        .unwrap(); // 3
    assert_eq!(next(1), [(3, "users".to_owned())]);

    // The server goes away; an event is written meanwhile; the server comes back on its port.
    let dir = server.stop_keeping_dir();
    catalog
        .create_pipeline(
            fixtures::spec("refunds", CursorKind::Monotonic),
            &Actor::System,
        )
        .await
        .unwrap(); // 4
    let server = Server::serve(dir, &args);
    catalog
        .create_pipeline(
            fixtures::spec("returns", CursorKind::Monotonic),
            &Actor::System,
        )
        .await
        .unwrap(); // 5
    assert_eq!(
        next(2),
        [(4, "refunds".to_owned()), (5, "returns".to_owned())]
    );
    assert!(
        seen.recv_timeout(Duration::from_millis(500)).is_err(),
        "nothing repeated"
    );

    let status = Command::new("kill")
        .args(["-INT", &follower.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = follower.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "events --follow ended with {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    server.terminate();
}

/// One raw request (`head` without the Host line and the blank line; `body` sent as is) to the
/// server on `port`; the whole answer.
fn raw(port: u16, head: &str, body: &[u8]) -> Answer {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let request = format!("{head}Host: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    Answer::parse(&text)
}

/// A protocol write: pausing pipeline `orders`.
fn pause_orders() -> String {
    serde_json::to_string(&hakiri_protocol::Request::SetPaused {
        pipeline: hakiri_core::PipelineId::new("orders").unwrap(),
        change: hakiri_core::PauseChange::Pause(hakiri_core::Reason::new("x").unwrap()),
        by: Actor::System,
    })
    .unwrap()
}

/// A page of another site cannot make the browser write through the server, whatever the
/// request looks like otherwise; the server's own pages can.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_a_browser_sends_for_another_site_are_refused() {
    let server = Server::start().await;
    let pause = pause_orders();
    let post = |extra: &str| {
        raw(
            server.port,
            &format!(
                "POST /v1/projects/shop/rpc HTTP/1.1\r\nAuthorization: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{extra}",
                server.bearer(),
                pause.len()
            ),
            pause.as_bytes(),
        )
    };
    for foreign in [
        "Origin: https://evil.example\r\n",
        "Origin: null\r\n",
        "Origin: http://127.0.0.1:1\r\n",
        "Sec-Fetch-Site: cross-site\r\n",
    ] {
        let answer = post(foreign);
        assert_eq!(answer.status, 403, "{foreign}: {}", answer.body);
        assert!(answer.body.contains("another site") || answer.body.contains("a page of"));
    }
    let events = server.get(
        "/v1/projects/shop/events",
        &[
            ("Authorization", &server.bearer()),
            ("Origin", "https://evil.example"),
        ],
    );
    assert_eq!(events.status, 403, "{}", events.body);
    // Nothing was paused by any of them.
    let orders = open(server.dir.path())
        .get_pipeline(&hakiri_core::PipelineId::new("orders").unwrap())
        .await
        .unwrap();
    assert!(orders.paused.is_none(), "{orders:?}");

    let own = format!(
        "Origin: http://127.0.0.1:{}\r\nSec-Fetch-Site: same-origin\r\n",
        server.port
    );
    let answer = post(&own);
    assert_eq!(answer.status, 200, "{}", answer.body);
    server.terminate();
}

/// A body over the limit is refused before it is read, with the protocol's typed error; a
/// request the catalog cannot answer in time is answered 504 saying it may have been applied,
/// and the server goes on answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_and_slow_requests_are_answered_within_bounds() {
    let dir = Server::start().await.stop_keeping_dir();
    let server = Server::serve(
        dir,
        &["--listen", "127.0.0.1:0", "--request-timeout", "300ms"],
    );
    let head = |length: usize| {
        format!(
            "POST /v1/projects/shop/rpc HTTP/1.1\r\nAuthorization: {}\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n",
            server.bearer()
        )
    };
    let huge = raw(server.port, &head(9 * 1024 * 1024), b"");
    assert_eq!(huge.status, 413, "{}", huge.body);
    match hakiri_protocol::decode_reply(huge.body.as_bytes()) {
        Err(hakiri_core::Error::InvalidArgument(message)) => {
            assert!(message.contains("8 MiB"), "{message}");
        }
        other => panic!("{other:?}"),
    }

    // Another process holds the catalog's write lock: the write waits past the time limit.
    let file = server
        .dir
        .path()
        .join(".hakiri")
        .join(format!("{PROJECT}.db"));
    let blocker = rusqlite::Connection::open(&file).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    let pause = pause_orders();
    let slow = raw(server.port, &head(pause.len()), pause.as_bytes());
    assert_eq!(slow.status, 504, "{}", slow.body);
    match hakiri_protocol::decode_reply(slow.body.as_bytes()) {
        Err(hakiri_core::Error::Unavailable(message)) => {
            assert!(
                message.contains("may or may not have been applied"),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }
    blocker.execute_batch("ROLLBACK").unwrap();
    drop(blocker);
    // The server is not wedged: a read is answered.
    let plan = server.get(
        "/v1/projects/shop/plan",
        &[("Authorization", &server.bearer())],
    );
    assert_eq!(plan.status, 200, "{}", plan.body);
    server.terminate();
}

/// The console is served at `/` without a token: a deep link answers the same page (the
/// single-page app routes on the client), a file of the build its content type, hashed files a
/// year-long cache; a missing file under `/_app/` and any unknown `/v1` path are 404, never the
/// page. Without a console build the page says how to build it. The launch prints the console's
/// URL with the token in the fragment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_is_served_at_the_root_with_a_fallback_for_its_pages() {
    let server = Server::start().await;
    assert_eq!(
        server.console,
        format!(
            "http://127.0.0.1:{}/#token={}&project={PROJECT}",
            server.port, server.token
        )
    );
    let root = server.get("/", &[]);
    assert_eq!(root.status, 200, "{}", root.body);
    assert_eq!(
        root.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(root.header("cache-control"), Some("no-cache"));
    assert!(root
        .header("content-security-policy")
        .is_some_and(|p| p.contains("frame-ancestors 'none'")));
    // A link from another site to a page is an ordinary navigation.
    let deep = server.get(
        "/projects/shop/pipelines",
        &[("Sec-Fetch-Site", "cross-site")],
    );
    assert_eq!(deep.status, 200);
    assert_eq!(deep.body, root.body, "a deep link answers the same page");

    if root.body.contains("scripts/build-console") {
        // This binary was compiled without a console build: the placeholder says how to build it.
        assert!(
            root.body.contains("The console is not built"),
            "{}",
            root.body
        );
    } else {
        let asset = root
            .body
            .split('"')
            .find(|s| s.starts_with("/_app/immutable/") && s.ends_with(".js"))
            .unwrap_or_else(|| panic!("no script in the page: {}", root.body));
        let script = server.get(asset, &[]);
        assert_eq!(script.status, 200, "{asset}");
        assert_eq!(
            script.header("content-type"),
            Some("text/javascript; charset=utf-8")
        );
        assert_eq!(
            script.header("cache-control"),
            Some("public, max-age=31536000, immutable")
        );
        let etag = script.header("etag").expect("an ETag").to_owned();
        let again = server.get(asset, &[("If-None-Match", &etag)]);
        assert_eq!(again.status, 304);
        assert!(
            root.body.contains("content-security-policy"),
            "the page's own policy"
        );
        // The Worker's header rules are in the build, not served as a file.
        let rules = server.get("/_headers", &[]);
        assert_eq!(rules.body, root.body, "/_headers is a page path here");
    }
    let missing = server.get("/_app/immutable/chunks/gone.js", &[]);
    assert_eq!(missing.status, 404);
    assert_ne!(
        missing.header("content-type"),
        Some("text/html; charset=utf-8")
    );

    // The API is as it was: its paths never answer the page, and still need the token.
    let unknown = server.get("/v1/nope", &[("Authorization", &server.bearer())]);
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.json()["err"]["code"], "invalid_argument");
    let plan = server.get("/v1/projects/shop/plan", &[]);
    assert_eq!(plan.status, 401);
    let cross = server.get(
        "/v1/whoami",
        &[
            ("Authorization", &server.bearer()),
            ("Sec-Fetch-Site", "cross-site"),
        ],
    );
    assert_eq!(cross.status, 403, "{}", cross.body);
    // A write is not a page.
    let post = raw(
        server.port,
        "POST /projects/shop/pipelines HTTP/1.1\r\nContent-Length: 0\r\n",
        b"",
    );
    assert_eq!(post.status, 405);
    server.terminate();
}
