//! `hakiri serve` under load: 32 clients, each its own `HttpCatalog`, doing a writer's real work
//! for 30 s against one server — on a directory of SQLite files, then on Postgres (from
//! `hakiri_test_kit::postgres`) — and then every count checked exactly against what the catalog
//! and the server report.
//!
//! - 24 clients each own a pipeline: take its lease, begin a run, advance its cursor ten times
//!   with increasing values, finish the run, release; again until time is up.
//! - 8 clients compete, four to a pipeline: whoever gets the lease reads the cursor and advances
//!   it ten times from there; the others get `Leased` (a typed refusal, never another error) and
//!   try again a moment later.
//!
//! - One more client follows the event log as a dashboard would, checking it is gapless. (It also
//!   keeps the Postgres catalog's backlog of events to number small: numbering is done when the
//!   log is read, in one statement whose plan turns quadratic in the backlog — 8,000 unread
//!   events take over a minute to number — so an unread log fails its first read with a timeout.)
//!
//! Afterwards: each cursor's value and version, its `cursor_advanced` events, the runs begun and
//! finished (all succeeded, a shared pipeline's one after another) and the leases taken equal
//! what the clients counted; and the server's request counters show exactly the clients' calls
//! answered 200 and their refusals answered 409 — nothing retried, failed or lost.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::serve::Served;
use hakiri_core::{
    Actor, BeginRun, Catalog, CatalogExt, CursorKind, CursorValue, Error, EventKind, FinishRun,
    HolderId, Lease, Limit, PipelineId, RunQuery, RunStatus, StreamName, Trigger,
};
use hakiri_protocol::{HttpCatalog, HttpConfig};
use hakiri_test_kit::fixtures;

const CLIENTS: usize = 32;
/// Clients competing for one pipeline's lease, per shared pipeline.
const CONTENDERS: usize = 4;
/// Shared pipelines; the other clients own one each.
const SHARED: usize = 2;
const DURATION: Duration = Duration::from_secs(30);
const ADVANCES_PER_RUN: u64 = 10;
/// No lease expires during the test: every refusal is a live holder's.
const TTL: Duration = Duration::from_secs(600);

/// What one client did, counted as it went.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    /// Leases taken, runs begun and finished (one each per round).
    runs: u64,
    advances: u64,
    /// `Leased` answers to an acquire.
    refusals: u64,
    /// Calls answered 200.
    answered: u64,
}

/// `hakiri serve` on `catalog`, on a free loopback port.
fn serve(catalog: &str) -> Served {
    let mut command = common::hakiri(catalog, "load");
    command.args(["--output", "json", "serve", "--listen", "127.0.0.1:0"]);
    Served::start(&command, &[])
}

fn stream() -> StreamName {
    StreamName::new("s").expect("a valid stream")
}

fn pipeline(name: &str) -> PipelineId {
    PipelineId::new(name).expect("a valid pipeline id")
}

fn number(value: &CursorValue) -> u64 {
    value.as_json().as_u64().expect("a numeric cursor")
}

/// One round under `lease`: a run that advances the cursor from `from` ten times, finished and
/// released; counted in `tally`.
async fn round(catalog: &HttpCatalog, lease: &Lease, from: u64, tally: &mut Tally) {
    let (holder, pipeline, stream) = (&lease.holder, &lease.pipeline, stream());
    let run = catalog
        .begin_run(lease, BeginRun::new(Trigger::Manual))
        .await
        .unwrap_or_else(|e| panic!("{holder} beginning a run: {e:?}"));
    for step in 1..=ADVANCES_PER_RUN {
        let value = CursorValue::new(serde_json::json!(from + step)).expect("a value");
        catalog
            .advance_to(lease, run.id, &stream, value)
            .await
            .unwrap_or_else(|e| panic!("{holder} advancing {pipeline}: {e:?}"));
        tally.advances += 1;
    }
    catalog
        .finish_run(lease, run.id, FinishRun::succeeded())
        .await
        .unwrap_or_else(|e| panic!("{holder} finishing a run: {e:?}"));
    catalog
        .release(lease)
        .await
        .unwrap_or_else(|e| panic!("{holder} releasing {pipeline}: {e:?}"));
}

/// A client that owns `pipeline`: rounds of lease, run, ten increasing advances, finish, release.
async fn owner(catalog: HttpCatalog, pipeline: PipelineId, holder: HolderId) -> Tally {
    let deadline = Instant::now() + DURATION;
    let mut tally = Tally::default();
    while Instant::now() < deadline {
        let lease = catalog
            .acquire(&pipeline, &holder, TTL)
            .await
            .unwrap_or_else(|e| panic!("{holder} acquiring its own {pipeline}: {e:?}"));
        let from = tally.advances;
        round(&catalog, &lease, from, &mut tally).await;
        tally.runs += 1;
        tally.answered += 4 + ADVANCES_PER_RUN;
    }
    tally
}

/// A client competing for `pipeline`: with the lease, a round that advances the cursor ten times
/// from where it stands; without it, a `Leased` refusal counted and another try a moment later.
async fn contender(catalog: HttpCatalog, pipeline: PipelineId, holder: HolderId) -> Tally {
    let deadline = Instant::now() + DURATION;
    let mut tally = Tally::default();
    let stream = stream();
    while Instant::now() < deadline {
        let lease = match catalog.acquire(&pipeline, &holder, TTL).await {
            Ok(lease) => lease,
            Err(Error::Leased { .. }) => {
                tally.refusals += 1;
                tokio::time::sleep(Duration::from_millis(rand_millis())).await;
                continue;
            }
            Err(e) => panic!("{holder} acquiring the shared {pipeline}: {e:?}"),
        };
        let from = catalog
            .get_cursor(&pipeline, &stream)
            .await
            .unwrap_or_else(|e| panic!("{holder} reading the cursor: {e:?}"))
            .map_or(0, |c| number(&c.value));
        round(&catalog, &lease, from, &mut tally).await;
        tally.runs += 1;
        tally.answered += 5 + ADVANCES_PER_RUN;
    }
    tally
}

/// What the event log showed its follower: events per pipeline and kind, and calls answered.
#[derive(Debug, Default)]
struct Followed {
    counts: HashMap<(PipelineId, &'static str), u64>,
    answered: u64,
}

/// Follows the project's event log as a dashboard would, every 100 ms until `done` and the log
/// is drained, checking that it is gapless, and counts what it shows.
async fn follower(catalog: HttpCatalog, done: Arc<AtomicBool>) -> Followed {
    let mut followed = Followed::default();
    let mut after = 0;
    loop {
        let finished = done.load(Ordering::Acquire);
        let page = catalog
            .events(after, Limit::MAX)
            .await
            .unwrap_or_else(|e| panic!("following the events after {after}: {e:?}"));
        followed.answered += 1;
        if page.is_empty() {
            if finished {
                return followed;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        for event in page {
            assert_eq!(event.seq, after + 1, "the event log is gapless");
            after = event.seq;
            let kind = match event.kind {
                EventKind::CursorAdvanced { .. } => "advanced",
                EventKind::LeaseAcquired { .. } => "acquired",
                EventKind::LeaseReleased { .. } => "released",
                EventKind::RunBegun { .. } => "begun",
                EventKind::RunFinished { .. } => "finished",
                _ => "other",
            };
            *followed.counts.entry((event.pipeline, kind)).or_default() += 1;
        }
    }
}

/// 1–5 ms, so that refused contenders do not retry in step.
fn rand_millis() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    1 + u64::from(nanos) % 5
}

/// The server's count of `/rpc` answers with `status` (`/metrics`).
fn rpc_answers(server: &Served, status: u16) -> u64 {
    let mut stream = TcpStream::connect(("127.0.0.1", server.port)).expect("connect");
    let request = format!(
        "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n",
        server.port
    );
    stream.write_all(request.as_bytes()).expect("send");
    let mut text = String::new();
    stream.read_to_string(&mut text).expect("read");
    let series = format!("hakiri_http_requests_total{{route=\"rpc\",status=\"{status}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(series.as_str()))
        .map_or(0, |n| n.trim().parse().expect("a count"))
}

/// Runs the load against a server on `catalog` and checks every count.
async fn under_load(catalog_url: &str) {
    let server = serve(catalog_url);
    let project = hakiri_contract::unique_project();
    let client = || {
        HttpCatalog::connect(
            &server.url,
            project.clone(),
            &server.token,
            HttpConfig::default(),
        )
        .expect("a client")
    };

    // Who does what: owners first, then the contenders, four to a shared pipeline.
    let owners = CLIENTS - SHARED * CONTENDERS;
    let roles: Vec<(PipelineId, HolderId, bool)> = (0..CLIENTS)
        .map(|i| {
            let holder = HolderId::new(format!("client-{i}")).expect("a valid holder");
            if i < owners {
                (pipeline(&format!("own-{i}")), holder, false)
            } else {
                let group = (i - owners) / CONTENDERS;
                (pipeline(&format!("shared-{group}")), holder, true)
            }
        })
        .collect();
    let setup = client();
    let mut pipelines: Vec<PipelineId> = roles.iter().map(|(p, _, _)| p.clone()).collect();
    pipelines.dedup();
    for id in &pipelines {
        setup
            .create_pipeline(
                fixtures::spec(id.as_str(), CursorKind::Monotonic),
                &Actor::System,
            )
            .await
            .expect("create pipeline");
    }

    let done = Arc::new(AtomicBool::new(false));
    let following = tokio::spawn(follower(client(), done.clone()));
    let started = Instant::now();
    let tasks: Vec<_> = roles
        .iter()
        .map(|(pipeline, holder, shared)| {
            let (catalog, pipeline, holder) = (client(), pipeline.clone(), holder.clone());
            if *shared {
                tokio::spawn(contender(catalog, pipeline, holder))
            } else {
                tokio::spawn(owner(catalog, pipeline, holder))
            }
        })
        .collect();
    let mut tallies: HashMap<PipelineId, Tally> = HashMap::new();
    let mut total = Tally::default();
    for ((pipeline, _, _), task) in roles.iter().zip(tasks) {
        let tally = task.await.expect("a client panicked");
        let sum = tallies.entry(pipeline.clone()).or_default();
        for (into, add) in [(sum, tally), (&mut total, tally)] {
            into.runs += add.runs;
            into.advances += add.advances;
            into.refusals += add.refusals;
            into.answered += add.answered;
        }
    }
    let elapsed = started.elapsed();
    done.store(true, Ordering::Release);
    let followed = following.await.expect("the follower panicked");

    // The server answered exactly the clients' calls (and the creates), nothing more or else.
    let answered_ok = rpc_answers(&server, 200);
    let answered_conflict = rpc_answers(&server, 409);
    eprintln!(
        "{CLIENTS} clients for {elapsed:?}: {} advances ({:.0}/s), {} runs, {} refusals",
        total.advances,
        total.advances as f64 / elapsed.as_secs_f64(),
        total.runs,
        total.refusals
    );
    assert_eq!(
        answered_ok,
        total.answered + followed.answered + pipelines.len() as u64,
        "calls answered 200"
    );
    assert_eq!(answered_conflict, total.refusals, "calls answered 409");

    // What the catalog holds is what the clients counted.
    let reader = client();
    let events = followed.counts;
    for (id, tally) in &tallies {
        assert!(tally.runs > 0, "{id} made no run in {DURATION:?}");
        let count = |kind| events.get(&(id.clone(), kind)).copied().unwrap_or(0);
        let cursor = reader
            .get_cursor(id, &stream())
            .await
            .expect("get cursor")
            .expect("a cursor");
        assert_eq!(number(&cursor.value), tally.advances, "{id}'s value");
        assert_eq!(cursor.version, tally.advances, "{id}'s version");
        assert_eq!(count("advanced"), tally.advances, "{id}'s advance events");
        for kind in ["acquired", "released", "begun", "finished"] {
            assert_eq!(count(kind), tally.runs, "{id}'s {kind} events");
        }
        let runs = reader
            .all_runs(&RunQuery::all().pipeline(id.clone()))
            .await
            .expect("runs");
        assert_eq!(runs.len() as u64, tally.runs, "{id}'s runs");
        assert!(runs.iter().all(|r| r.status == RunStatus::Succeeded));
        hakiri_contract::assert_serial_runs(id, &runs);
    }
    for group in 0..SHARED {
        let id = pipeline(&format!("shared-{group}"));
        assert!(tallies[&id].refusals > 0, "nobody waited for {id}'s lease");
    }
    drop((setup, reader));
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_on_sqlite_under_32_clients_loses_nothing() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    under_load(&common::sqlite_catalog(dir.path())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_on_postgres_under_32_clients_loses_nothing() {
    under_load(hakiri_test_kit::postgres::shared().url()).await;
}
