//! The Worker's read routes beside the protocol, in a real workerd: `GET …/plan` (the core
//! planner at the object's clock) and `GET …/events` (the event log as Server-Sent Events from
//! the project's Durable Object, woken by its commits; ADR 0025) — their grants, every start
//! position, the pipeline filter, live delivery, keep-alives and the lifetime cap, resume across
//! a workerd restart, and writers that no stalled reader holds back.

use std::sync::OnceLock;
use std::time::Duration;

use hakiri_contract::{operator, pid, reason, spec, stream};
use hakiri_core::plan::{self, Action, Plan, SkipReason};
use hakiri_core::{
    Catalog, CatalogExt, CursorKind, CursorValue, Error, Event, Limit, PauseChange, ProjectId,
};
use hakiri_protocol::{HttpCatalog, HttpConfig, Reply};
use hakiri_test_kit::{fixtures, workerd};
use serde_json::json;
use workerd::{Workerd, WorkerdOptions};

const ADMIN: &str = "admin-token";
const READER_A: &str = "reader-token-a";

/// How long a test waits for the next message of a stream before it calls the stream stuck: a
/// bound on liveness, not a performance check.
const PATIENCE: Duration = Duration::from_secs(30);

/// Grants: admin everywhere; a reader on `ev-auth-a` only.
fn grants() -> String {
    json!([
        {"name": "admin", "token": ADMIN, "projects": "*", "role": "admin"},
        {"name": "reader-a", "token": READER_A, "projects": ["ev-auth-a"], "role": "read"},
    ])
    .to_string()
}

/// The workerd of this test binary (with the test hooks); the restart test starts its own.
fn server() -> &'static Workerd {
    static SERVER: OnceLock<Workerd> = OnceLock::new();
    SERVER.get_or_init(|| {
        let persist = tempfile::tempdir().expect("a temporary directory").keep();
        let mut options = WorkerdOptions::new(grants(), persist);
        options.remove_persist_on_exit = true;
        Workerd::start(&options)
    })
}

fn catalog(server: &Workerd, project: &str) -> HttpCatalog {
    HttpCatalog::connect(
        &server.url(),
        ProjectId::new(project).expect("a valid project"),
        ADMIN,
        HttpConfig::default(),
    )
    .expect("a client")
}

async fn get(server: &Workerd, path: &str, token: Option<&str>) -> reqwest::Response {
    let mut request = reqwest::Client::new().get(format!("{}{path}", server.url()));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.expect("the worker answers")
}

/// The status and typed reply of an answer that is not a stream.
async fn refused(response: reqwest::Response) -> (u16, Error) {
    let status = response.status().as_u16();
    let bytes = response.bytes().await.expect("a body");
    match serde_json::from_slice::<Reply>(&bytes) {
        Ok(Reply::Err(error)) => (status, error),
        other => panic!(
            "HTTP {status}: not an error reply ({other:?}): {}",
            String::from_utf8_lossy(&bytes)
        ),
    }
}

/// One message of an event stream.
#[derive(Debug)]
enum Message {
    Event(Event),
    Comment(String),
    /// An `error` message's data, a `Reply::Err` (none of these tests provokes one; it must not
    /// pass as an event, and shows in the panic that says so).
    Error(#[allow(dead_code)] String),
}

/// An open event stream, read message by message.
struct Subscription {
    response: reqwest::Response,
    buffer: String,
}

impl Subscription {
    /// Opens `path` as `ADMIN` with `headers`; the answer must be a stream.
    async fn open(server: &Workerd, path: &str, headers: &[(&str, &str)]) -> Self {
        let mut request = reqwest::Client::new()
            .get(format!("{}{path}", server.url()))
            .bearer_auth(ADMIN);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.expect("the worker answers");
        let status = response.status().as_u16();
        if status != 200 {
            let body = response.text().await.unwrap_or_default();
            panic!("{path}: HTTP {status}: {body}");
        }
        assert_eq!(
            response
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some("text/event-stream"),
            "{path}"
        );
        Self {
            response,
            buffer: String::new(),
        }
    }

    /// The next message, or `None` when the stream has ended.
    async fn message(&mut self) -> Option<Message> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                return Some(parse(block.trim_end()));
            }
            let chunk = tokio::time::timeout(PATIENCE, self.response.chunk())
                .await
                .expect("the stream's next message within the test's patience")
                .expect("the stream reads");
            match chunk {
                Some(bytes) => self.buffer.push_str(std::str::from_utf8(&bytes).unwrap()),
                None => {
                    assert!(self.buffer.is_empty(), "a torn message: {:?}", self.buffer);
                    return None;
                }
            }
        }
    }

    /// The next `n` events (comments skipped).
    async fn events(&mut self, n: usize) -> Vec<Event> {
        let mut events = Vec::with_capacity(n);
        while events.len() < n {
            match self.message().await {
                Some(Message::Event(event)) => events.push(event),
                Some(Message::Comment(_)) => {}
                other => panic!("expected an event, got {other:?}"),
            }
        }
        events
    }

    /// The sequence numbers of the next `n` events.
    async fn seqs(&mut self, n: usize) -> Vec<u64> {
        self.events(n).await.iter().map(|e| e.seq).collect()
    }
}

/// One SSE message: `id` + `data` (an event), `event: error` + `data`, or a comment.
fn parse(block: &str) -> Message {
    if let Some(comment) = block.strip_prefix(':') {
        return Message::Comment(comment.trim().to_owned());
    }
    if let Some(data) = block.strip_prefix("event: error\ndata: ") {
        let reply: Reply = serde_json::from_str(data).expect("an error reply");
        return Message::Error(format!("{reply:?}"));
    }
    let (id, data) = block
        .strip_prefix("id: ")
        .and_then(|rest| rest.split_once("\ndata: "))
        .unwrap_or_else(|| panic!("not an event message: {block:?}"));
    let event: Event = serde_json::from_str(data).expect("an event as JSON");
    assert_eq!(id.parse::<u64>().ok(), Some(event.seq), "the id is the seq");
    Message::Event(event)
}

async fn create(catalog: &HttpCatalog, id: &str) {
    catalog
        .create_pipeline(spec(id, CursorKind::Monotonic), &operator())
        .await
        .unwrap_or_else(|e| panic!("create {id}: {e}"));
}

async fn pause(catalog: &HttpCatalog, id: &str, change: PauseChange) {
    catalog
        .set_paused(&pid(id), change, &operator())
        .await
        .unwrap_or_else(|e| panic!("pause or resume {id}: {e}"));
}

/// Every start position, the filter, and events arriving live after rpc writes.
#[tokio::test]
async fn events_arrive_live_from_every_start_position_and_through_the_filter() {
    let server = server();
    let catalog = catalog(server, "ev-live");
    create(&catalog, "a").await; // 1
    create(&catalog, "b").await; // 2
    let base = "/v1/projects/ev-live/events";
    // A stream also reads the log when its keep-alive timer fires; pushed back beyond the test's
    // patience, only the wake-up of a commit can bring the live events in time.
    let quiet = ("x-hakiri-keep-alive-ms", "600000");

    let mut all = Subscription::open(server, base, &[quiet]).await;
    assert_eq!(all.seqs(2).await, [1, 2], "the whole log");
    let mut tail = Subscription::open(server, &format!("{base}?tail=1"), &[quiet]).await;
    assert_eq!(tail.seqs(1).await, [2], "the last event");
    let mut only_a = Subscription::open(server, &format!("{base}?pipeline=a"), &[quiet]).await;
    assert_eq!(only_a.seqs(1).await, [1], "a's events");
    let mut after = Subscription::open(server, &format!("{base}?after=1"), &[quiet]).await;
    assert_eq!(after.seqs(1).await, [2], "after 1");
    // The header wins over the query: a reconnecting `EventSource` keeps its original URL.
    let mut resumed = Subscription::open(
        server,
        &format!("{base}?after=0"),
        &[("Last-Event-ID", "1")],
    )
    .await;
    assert_eq!(resumed.seqs(1).await, [2], "after Last-Event-ID");

    pause(&catalog, "a", PauseChange::Pause(reason("maintenance"))).await; // 3
    create(&catalog, "c").await; // 4
    pause(&catalog, "a", PauseChange::Resume).await; // 5

    for (name, sub) in [
        ("whole log", &mut all),
        ("tail", &mut tail),
        ("after", &mut after),
        ("resumed", &mut resumed),
    ] {
        assert_eq!(sub.seqs(3).await, [3, 4, 5], "{name}: live, in order");
    }
    let live_a = only_a.events(2).await;
    assert_eq!(
        live_a.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [3, 5],
        "only a's events, live"
    );
    assert!(live_a.iter().all(|e| e.pipeline == pid("a")));
    // The events are the log's, as the rpc reads it.
    assert_eq!(
        live_a,
        catalog
            .pipeline_events(&pid("a"), 1, Limit::MAX)
            .await
            .unwrap()
    );

    // A filtered tail starts where the core's search says it does.
    let from = catalog.tail_after(Some(&pid("a")), 2).await.unwrap();
    let expected = catalog.pipeline_events(&pid("a"), from, Limit::MAX).await;
    let mut tail_a = Subscription::open(server, &format!("{base}?tail=2&pipeline=a"), &[]).await;
    assert_eq!(tail_a.events(2).await, expected.unwrap());
}

/// Both routes need a token with a grant on the project; a reader's is enough.
#[tokio::test]
async fn plan_and_events_need_a_read_grant_on_the_project() {
    let server = server();
    create(&catalog(server, "ev-auth-a"), "p").await;
    for route in ["plan", "events"] {
        let path = format!("/v1/projects/ev-auth-a/{route}");
        let (status, error) = refused(get(server, &path, None).await).await;
        assert_eq!(status, 401, "{route} without a token");
        assert!(matches!(error, Error::Unauthenticated(_)), "{error:?}");
        let (status, _) = refused(get(server, &path, Some("nope")).await).await;
        assert_eq!(status, 401, "{route} with an unknown token");

        let other = format!("/v1/projects/ev-auth-b/{route}");
        let (status, error) = refused(get(server, &other, Some(READER_A)).await).await;
        assert_eq!(status, 403, "{route} of another project");
        assert!(matches!(error, Error::PermissionDenied(_)), "{error:?}");

        let answer = get(server, &path, Some(READER_A)).await;
        assert_eq!(answer.status().as_u16(), 200, "{route} as a reader");

        let post = reqwest::Client::new()
            .post(format!("{}{path}", server.url()))
            .bearer_auth(READER_A)
            .send()
            .await
            .unwrap();
        assert_eq!(refused(post).await.0, 405, "{route} takes GET");
    }
    // A bad query or Last-Event-ID is refused before any stream starts.
    for (query, header) in [("?since=1", None), ("?tail=x", None), ("", Some("seven"))] {
        let mut request = reqwest::Client::new()
            .get(format!(
                "{}/v1/projects/ev-auth-a/events{query}",
                server.url()
            ))
            .bearer_auth(READER_A);
        if let Some(id) = header {
            request = request.header("Last-Event-ID", id);
        }
        let (status, error) = refused(request.send().await.unwrap()).await;
        assert_eq!(status, 400, "{query} {header:?}");
        assert!(matches!(error, Error::InvalidArgument(_)), "{error:?}");
    }
}

/// Read some events, restart workerd on the same data, write more, reconnect with
/// `Last-Event-ID`: exactly the rest, no gap and no repeat.
#[tokio::test]
async fn a_stream_resumes_across_a_workerd_restart_without_gaps_or_repeats() {
    let persist = tempfile::tempdir().expect("a temporary directory");
    let options = WorkerdOptions::new(grants(), persist.path());
    let path = "/v1/projects/ev-restart/events";
    // workerd stops once its open streams end, and a stream notices its client has gone when it
    // next writes: frequent keep-alives make that prompt.
    let prompt = ("x-hakiri-keep-alive-ms", "200");

    let first = Workerd::start(&options);
    let catalog_1 = catalog(&first, "ev-restart");
    create(&catalog_1, "a").await; // 1
    create(&catalog_1, "b").await; // 2
    let mut sub = Subscription::open(&first, path, &[prompt]).await;
    let mut seen = sub.events(2).await;
    create(&catalog_1, "c").await; // 3, while the stream is open
    seen.extend(sub.events(1).await);
    let last = seen.last().unwrap().seq;
    assert_eq!(last, 3);
    drop(sub);
    first.stop();

    let second = Workerd::start(&options);
    let catalog_2 = catalog(&second, "ev-restart");
    pause(&catalog_2, "a", PauseChange::Pause(reason("restarted"))).await; // 4
    create(&catalog_2, "d").await; // 5
    let last_id = last.to_string();
    let mut sub = Subscription::open(&second, path, &[("Last-Event-ID", &last_id), prompt]).await;
    seen.extend(sub.events(2).await);
    // Nothing is repeated or skipped after the rest either: the next is the next write.
    pause(&catalog_2, "a", PauseChange::Resume).await; // 6
    seen.extend(sub.events(1).await);
    assert_eq!(
        seen.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5, 6]
    );
    assert_eq!(seen, catalog_2.events(0, Limit::MAX).await.unwrap());
    drop(sub);
}

/// Streams whose readers stop reading hold back no writer (every write succeeds, within the
/// client's usual time limit) and no other reader; read later, they still miss nothing.
#[tokio::test]
async fn readers_that_stop_reading_block_no_writer() {
    let server = server();
    let catalog = catalog(server, "ev-stall");
    let path = "/v1/projects/ev-stall/events";
    let mut stalled = Subscription::open(server, path, &[]).await;
    let _also_stalled = Subscription::open(server, &format!("{path}?pipeline=busy"), &[]).await;

    let (lease, run) = fixtures::begun(
        &catalog,
        fixtures::spec("busy", CursorKind::Opaque),
        "w",
        Duration::from_secs(300),
    )
    .await; // 1..=3
            // Megabytes of events, far beyond what the connections between them buffer.
    let padding = "x".repeat(4_000);
    let writes = 1_000u64;
    for i in 1..=writes {
        let value = CursorValue::new(json!({"n": i, "pad": padding})).unwrap();
        catalog
            .advance_to(&lease, run.id, &stream("s"), value)
            .await
            .unwrap_or_else(|e| panic!("write {i} while readers stall: {e}"));
    }
    let newest = 3 + writes;

    // Another reader gets the newest event at once.
    let mut fresh = Subscription::open(server, &format!("{path}?tail=1"), &[]).await;
    assert_eq!(fresh.seqs(1).await, [newest]);
    // The stalled reader, reading again, gets every event in order.
    let seqs = stalled.seqs(usize::try_from(newest).unwrap()).await;
    assert_eq!(seqs, (1..=newest).collect::<Vec<_>>());
}

/// An idle stream sends keep-alive comments and ends at its lifetime (shortened by the test
/// hooks); the client reconnects with `Last-Event-ID` and misses nothing.
#[tokio::test]
async fn a_stream_keeps_alive_and_ends_at_its_lifetime_and_the_client_resumes() {
    let server = server();
    let catalog = catalog(server, "ev-lifetime");
    create(&catalog, "a").await; // 1
    let path = "/v1/projects/ev-lifetime/events";
    let short = [
        ("x-hakiri-stream-lifetime-ms", "2000"),
        ("x-hakiri-keep-alive-ms", "200"),
    ];
    let mut sub = Subscription::open(server, path, &short).await;
    assert_eq!(sub.seqs(1).await, [1]);
    let mut comments = 0;
    loop {
        match sub.message().await {
            Some(Message::Comment(text)) => {
                assert_eq!(text, "keep-alive");
                comments += 1;
            }
            None => break,
            other => panic!("only keep-alives while idle, got {other:?}"),
        }
    }
    assert!(comments >= 1, "an idle stream keeps alive");

    create(&catalog, "b").await; // 2
    let mut again = Subscription::open(server, path, &[("Last-Event-ID", "1")]).await;
    assert_eq!(again.seqs(1).await, [2]);
}

/// The plan route answers the core planner over the object's state at its clock.
#[tokio::test]
async fn the_plan_is_the_core_planner_over_the_same_state() {
    let server = server();
    let catalog = catalog(server, "ev-plan");
    create(&catalog, "idle").await;
    create(&catalog, "paused").await;
    pause(&catalog, "paused", PauseChange::Pause(reason("hold"))).await;
    let (_lease, run) = fixtures::begun(
        &catalog,
        fixtures::spec("running", CursorKind::Monotonic),
        "w",
        Duration::from_secs(300),
    )
    .await;

    let answer = get(server, "/v1/projects/ev-plan/plan", Some(ADMIN)).await;
    assert_eq!(answer.status().as_u16(), 200);
    let body = answer.bytes().await.expect("a body");
    let served: Plan = serde_json::from_slice(&body).expect("a plan");
    let statuses = catalog.all_statuses().await.unwrap();
    assert_eq!(served, plan::plan(&statuses.items, served.as_of));

    let action = |id: &str| {
        served
            .items
            .iter()
            .find(|item| item.pipeline == pid(id))
            .map(|item| item.action.clone())
    };
    assert_eq!(
        action("idle"),
        Some(Action::Skip {
            reason: SkipReason::Manual
        })
    );
    assert_eq!(
        action("paused"),
        Some(Action::Skip {
            reason: SkipReason::Paused
        })
    );
    assert_eq!(
        action("running"),
        Some(Action::Skip {
            reason: SkipReason::Running { run: run.id }
        })
    );
}
