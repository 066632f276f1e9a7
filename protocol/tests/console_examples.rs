//! The operator console's protocol types cannot drift from these (ADR 0027): a scripted session
//! on the memory backend sends every [`Request`] through JSON and [`dispatch`], and records one
//! example of every request, of every [`Response`], of the errors, the events, the plan, a
//! `whoami` answer, an event stream's framing, and core's class of every kind of schema change.
//! They are written as TypeScript values typed with the console's hand-written types
//! (`console/src/lib/protocol/examples.ts`), so:
//!
//! - a Rust change to the wire or to the classes makes this test fail until the file is
//!   regenerated (`HAKIRI_BLESS=1 cargo test -p hakiri-protocol --test console_examples`), and
//! - the regenerated file makes the console's type check (`npm run check` in `console/`) fail
//!   until its types say the same, and its unit tests fail until its classes do.
//!
//! A new `Request` or `Response` variant does not compile here until it has a place in
//! [`request_index`] or [`response_index`], and then fails until the session sends it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use hakiri_catalog_memory::{MemoryCatalog, MemoryStore};
use hakiri_contract::{holder_id, operator, pid, reason, spec, stream, value};
use hakiri_core::archive::{ImportBatch, Record};
use hakiri_core::pipeline::{plan_put, PutPlan};
use hakiri_core::schema::{KeyChange, NullabilityChange, Retyped};
use hakiri_core::{
    BeginRun, Catalog, CatalogExt, Column, ColumnType, ConnectorConfig, CursorAdvance, CursorKind,
    CursorReset, Decide, DecisionQuery, Entity, Epoch, Error, FenceReason, FinishRun, Limit,
    ManualClock, Outcome, PauseChange, ProjectId, PutMode, ResetPermissions, ResetTarget,
    Resolution, Result, RunError, RunQuery, Schedule, Schema, SchemaDiff, StreamStats,
    StreamStatus, Timestamp, Trigger,
};
use hakiri_protocol::events::frame;
use hakiri_protocol::{
    decode_request, dispatch, encode, Backend, Grants, RemoteCatalog, Reply, Request, Response,
    Server, Transport,
};
use serde_json::{json, Value};

/// Where the examples live, from this crate.
const EXAMPLES: &str = "../console/src/lib/protocol/examples.ts";

/// Every request answered, in order, as JSON.
type Log = Arc<Mutex<Vec<(Value, Value)>>>;

/// A server in the same process that keeps every request and reply as JSON.
#[derive(Debug)]
struct Recording {
    catalog: MemoryCatalog,
    log: Log,
}

#[async_trait]
impl Transport for Recording {
    async fn call(&self, request: Request) -> Result<Response> {
        let body = encode(&request);
        let decoded = decode_request(&body).expect("a request decodes from its own JSON");
        let result = dispatch(&self.catalog, decoded).await;
        let reply = Reply::from(result.clone());
        self.log.lock().expect("not poisoned").push((
            serde_json::to_value(&request).expect("a request encodes"),
            serde_json::to_value(&reply).expect("a reply encodes"),
        ));
        result
    }
}

/// A distinct number for each request variant: adding one does not compile until it is listed.
fn request_index(request: &Request) -> usize {
    use Request::*;
    match request {
        PutPipeline { .. } => 0,
        GetPipeline { .. } => 1,
        ListPipelines { .. } => 2,
        SetPaused { .. } => 3,
        DeletePipeline { .. } => 4,
        RequestRun { .. } => 5,
        Acquire { .. } => 6,
        ForceAcquire { .. } => 7,
        Renew { .. } => 8,
        Release { .. } => 9,
        BeginRun { .. } => 10,
        Advance { .. } => 11,
        FinishRun { .. } => 12,
        GetRun { .. } => 13,
        ListRuns { .. } => 14,
        GetCursor { .. } => 15,
        ListCursors { .. } => 16,
        CursorHistory { .. } => 17,
        ResetCursor { .. } => 18,
        ObserveSchema { .. } => 19,
        GetSchema { .. } => 20,
        ListSchemaVersions { .. } => 21,
        ListDecisions { .. } => 22,
        Decide { .. } => 23,
        PipelineStatuses { .. } => 24,
        Events { .. } => 25,
        PipelineEvents { .. } => 26,
        ListStreams { .. } => 27,
        ArchiveHead => 28,
        Import { .. } => 29,
        PipelineEventsBefore { .. } => 30,
    }
}
const REQUESTS: usize = 31;

/// A distinct number for each response variant: adding one does not compile until it is listed.
fn response_index(response: &Response) -> usize {
    use Response::*;
    match response {
        Unit => 0,
        Pipeline(_) => 1,
        Pipelines(_) => 2,
        Lease(_) => 3,
        Run(_) => 4,
        Runs(_) => 5,
        Cursor(_) => 6,
        MaybeCursor(_) => 7,
        Cursors(_) => 8,
        CursorHistory(_) => 9,
        Observation(_) => 10,
        SchemaVersion(_) => 11,
        SchemaVersions(_) => 12,
        Decisions(_) => 13,
        Decision(_) => 14,
        Statuses(_) => 15,
        Events(_) => 16,
        Streams(_) => 17,
        ArchiveHead(_) => 18,
        ImportProgress(_) => 19,
    }
}
const RESPONSES: usize = 20;

fn schema_of(columns: &[(&str, ColumnType, bool)]) -> Schema {
    Schema::new(
        columns
            .iter()
            .map(|(name, ty, nullable)| Column::new(*name, *ty, *nullable))
            .collect(),
        vec!["id".to_owned()],
    )
    .expect("a valid schema")
}

/// The session: every operation an operator console or a reconciler sends, on two pipelines.
async fn session(catalog: &dyn Catalog, clock: &ManualClock) {
    let ttl = Duration::from_secs(300);
    let orders = pid("orders");
    let s = stream("orders");
    let config = ConnectorConfig::new(json!({"table": "orders"})).expect("a valid config");
    let created = catalog
        .put_pipeline(
            spec("orders", CursorKind::Monotonic)
                .with_schedule(Schedule::Interval(Duration::from_secs(3600)))
                .with_config(config),
            PutMode::Create,
            &operator(),
        )
        .await
        .expect("create");
    catalog
        .put_pipeline(
            spec("orders", CursorKind::Monotonic)
                .with_schedule(Schedule::Interval(Duration::from_secs(1800))),
            PutMode::Update {
                expected: created.generation,
            },
            &operator(),
        )
        .await
        .expect("update");
    catalog
        .create_pipeline(spec("refunds", CursorKind::Opaque), &operator())
        .await
        .expect("create refunds");
    catalog.get_pipeline(&orders).await.expect("get");
    let _ = catalog.get_pipeline(&pid("missing")).await;
    catalog
        .list_pipelines(None, Limit::new(1).expect("limit"))
        .await
        .expect("list");

    // A first run: schema version 1, two checkpoints, success.
    let lease = catalog
        .acquire(&orders, &holder_id("worker-1"), ttl)
        .await
        .expect("acquire");
    let lease = catalog.renew(&lease, ttl).await.expect("renew");
    let run = catalog
        .begin_run(&lease, BeginRun::new(Trigger::Schedule))
        .await
        .expect("begin");
    let base = schema_of(&[
        ("id", ColumnType::Integer, false),
        ("name", ColumnType::String, true),
    ]);
    catalog
        .observe_schema(&lease, run.id, &s, base)
        .await
        .expect("observe");
    catalog
        .advance(&lease, run.id, &s, CursorAdvance::to(value(json!(10))))
        .await
        .expect("advance");
    catalog
        .advance(
            &lease,
            run.id,
            &s,
            CursorAdvance::to(value(json!(20))).expecting(1),
        )
        .await
        .expect("advance");
    let _ = catalog
        .advance(&lease, run.id, &s, CursorAdvance::to(value(json!(5))))
        .await;
    clock.advance(Duration::from_secs(42));
    catalog
        .finish_run(
            &lease,
            run.id,
            FinishRun::new(Outcome::Succeeded).with_stats(
                s.clone(),
                StreamStats {
                    status: Some(StreamStatus::Complete),
                    estimated_records: Some(150),
                    estimated_bytes: Some(5000),
                    ..StreamStats::new(120, 4096)
                },
            ),
        )
        .await
        .expect("finish");
    catalog.release(&lease).await.expect("release");
    let _ = catalog.renew(&lease, ttl).await;

    // A second run meets a breaking change: held, the pipeline paused by the policy.
    let lease = catalog
        .acquire(&orders, &holder_id("worker-2"), ttl)
        .await
        .expect("acquire");
    let run = catalog
        .begin_run(&lease, BeginRun::new(Trigger::Schedule))
        .await
        .expect("begin");
    let breaking = schema_of(&[
        ("id", ColumnType::Integer, false),
        ("name", ColumnType::Integer, true),
    ]);
    let held = catalog
        .observe_schema(&lease, run.id, &s, breaking)
        .await
        .expect("observe")
        .decision
        .expect("a held decision");
    catalog
        .finish_run(
            &lease,
            run.id,
            FinishRun::new(Outcome::Failed {
                error: RunError::new("schema change needs review", false),
            }),
        )
        .await
        .expect("finish");
    catalog.release(&lease).await.expect("release");
    catalog
        .pipeline_statuses(None, Limit::default())
        .await
        .expect("statuses");
    catalog
        .list_decisions(&DecisionQuery {
            held_only: true,
            ..DecisionQuery::default()
        })
        .await
        .expect("decisions");
    let _ = catalog
        .set_paused(&orders, PauseChange::Resume, &operator())
        .await;
    catalog
        .decide(
            held.id,
            Decide {
                resolution: Resolution::Accept,
                by: operator(),
                reason: reason("the name column became the customer number"),
            },
        )
        .await
        .expect("decide");

    // Reads of what happened.
    catalog.get_run(run.id).await.expect("get run");
    catalog
        .list_runs(&RunQuery::all().pipeline(orders.clone()))
        .await
        .expect("runs");
    catalog.get_cursor(&orders, &s).await.expect("cursor");
    catalog.list_cursors(&orders).await.expect("cursors");
    catalog
        .cursor_history(&orders, &s, None, Limit::default())
        .await
        .expect("history");
    catalog.get_schema(&orders, &s, None).await.expect("schema");
    catalog
        .list_schema_versions(&orders, &s)
        .await
        .expect("versions");

    // An operator's repairs.
    catalog
        .set_paused(
            &orders,
            PauseChange::Pause(reason("replaying last week")),
            &operator(),
        )
        .await
        .expect("pause");
    let lease = catalog
        .acquire(&orders, &holder_id("worker-3"), ttl)
        .await
        .expect("acquire");
    let _ = catalog.acquire(&orders, &holder_id("worker-4"), ttl).await;
    let forced = catalog
        .force_acquire(
            &orders,
            &holder_id("operator"),
            ttl,
            &operator(),
            &reason("worker-3 is stuck"),
        )
        .await
        .expect("force");
    let _ = catalog.release(&lease).await;
    catalog
        .reset_cursor(
            &forced,
            &s,
            CursorReset {
                target: ResetTarget::Version(1),
                expected_version: Some(2),
                by: operator(),
                reason: reason("replaying last week"),
                allow: ResetPermissions::default(),
            },
        )
        .await
        .expect("reset");
    catalog.release(&forced).await.expect("release");
    catalog
        .set_paused(&orders, PauseChange::Resume, &operator())
        .await
        .expect("resume");
    catalog
        .request_run(&orders, Trigger::Backfill, &operator())
        .await
        .expect("request");
    let refunds = catalog
        .get_pipeline(&pid("refunds"))
        .await
        .expect("refunds");
    catalog
        .delete_pipeline(&refunds.spec.id, refunds.generation, &operator())
        .await
        .expect("delete");
    catalog.events(0, Limit::MAX).await.expect("events");
    let events = catalog
        .pipeline_events(&orders, 0, Limit::new(2).expect("limit"))
        .await
        .expect("pipeline events");
    catalog
        .pipeline_events_before(&orders, events[1].seq, Limit::ONE)
        .await
        .expect("pipeline events before");
    catalog.list_streams(&orders).await.expect("streams");
}

/// An empty project takes an archive of one pipeline (`hakiri import`).
async fn archive_session(catalog: &dyn Catalog) {
    let head = catalog.archive_head().await.expect("archive head");
    let PutPlan::Create(archived) = plan_put(
        None,
        spec("archived", CursorKind::Opaque),
        PutMode::Create,
        Timestamp::from_millis(0),
    )
    .expect("a valid spec") else {
        panic!("a new pipeline is created")
    };
    let batch = ImportBatch {
        archive: "sha256:0000000000000000000000000000000000000000000000000000000000000000".into(),
        counters: head.counters,
        position: 0,
        records: vec![Record::Pipeline {
            pipeline: archived,
            lease: None,
        }],
        last: true,
    };
    catalog.import(batch).await.expect("import");
}

/// Errors the session does not meet, one of each code a console shows.
fn more_errors() -> Vec<Error> {
    vec![
        Error::AlreadyExists(Entity::Pipeline {
            pipeline: pid("orders"),
        }),
        Error::Conflict {
            entity: Entity::CursorVersion {
                pipeline: pid("orders"),
                stream: stream("orders"),
                version: 3,
            },
            expected: "version 2".into(),
            actual: "version 3".into(),
        },
        Error::Fenced {
            pipeline: pid("orders"),
            epoch: Epoch(3),
            reason: FenceReason::Superseded { current: Epoch(4) },
        },
        Error::Fenced {
            pipeline: pid("orders"),
            epoch: Epoch(3),
            reason: FenceReason::Expired {
                at: Timestamp::from_millis(1_800_000_030_000),
            },
        },
        Error::Fenced {
            pipeline: pid("orders"),
            epoch: Epoch(3),
            reason: FenceReason::NoLease,
        },
        Error::NotFound(Entity::Schema {
            pipeline: pid("orders"),
            stream: stream("orders"),
            version: Some(7),
        }),
        Error::NotFound(Entity::Decision {
            decision: hakiri_core::DecisionId(9),
        }),
        Error::invalid("limit must be between 1 and 1000"),
        Error::FailedPrecondition("decisions are held".into()),
        Error::Unauthenticated("no bearer token".into()),
        Error::PermissionDenied("the token reads only".into()),
        Error::Unavailable("the catalog did not answer".into()),
        Error::NotMigrated("the catalog's schema is older than this binary".into()),
        Error::Backend("disk full".into()),
    ]
}

/// Replaces every UUID (run ids, made at random) by a counter, in order of appearance, so that
/// the file is the same on every run.
fn stable_uuids(text: &str) -> String {
    let is_uuid = |s: &[u8]| {
        s.len() == 36
            && s.iter().enumerate().all(|(i, c)| match i {
                8 | 13 | 18 | 23 => *c == b'-',
                _ => c.is_ascii_hexdigit(),
            })
    };
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let (bytes, mut out, mut i) = (text.as_bytes(), String::new(), 0);
    while i < bytes.len() {
        if i + 36 <= bytes.len() && is_uuid(&bytes[i..i + 36]) {
            let next = seen.len() + 1;
            let n = *seen.entry(text[i..i + 36].to_owned()).or_insert(next);
            out.push_str(&format!("00000000-0000-7000-8000-{n:012}"));
            i += 36;
        } else {
            let c = text[i..].chars().next().expect("in bounds");
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

fn pretty(value: &impl serde::Serialize) -> String {
    serde_json::to_string_pretty(value).expect("encodes")
}

#[tokio::test]
async fn the_console_examples_are_those_of_the_rust_protocol() {
    let clock = ManualClock::new(Timestamp::from_millis(1_800_000_000_000));
    let store = MemoryStore::new(Arc::new(clock.clone()));
    let project = ProjectId::new("examples").expect("a valid project");
    let log: Log = Arc::default();
    let catalog = RemoteCatalog::new(
        project.clone(),
        Recording {
            catalog: store.catalog(project.clone()),
            log: log.clone(),
        },
    );
    session(&catalog, &clock).await;
    let plan = hakiri_core::plan::current(&catalog).await.expect("a plan");
    let events = catalog.events(0, Limit::MAX).await.expect("events");
    let moved = ProjectId::new("examples-moved").expect("a valid project");
    let recording = Recording {
        catalog: store.catalog(moved.clone()),
        log: log.clone(),
    };
    archive_session(&RemoteCatalog::new(moved, recording)).await;
    let log = log.lock().expect("not poisoned").clone();

    // One request per op, one reply per response type, every error met: the first of each.
    let (mut requests, mut replies) = (BTreeMap::new(), Vec::new());
    let (mut ops, mut types, mut codes) = (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
    for (request, reply) in &log {
        let decoded: Request = serde_json::from_value(request.clone()).expect("a request");
        ops.insert(request_index(&decoded));
        requests
            .entry(request["op"].as_str().expect("an op").to_owned())
            .or_insert_with(|| request.clone());
        match serde_json::from_value::<Reply>(reply.clone()).expect("a reply") {
            Reply::Ok(response) if types.insert(response_index(&response)) => {
                replies.push(reply.clone());
            }
            Reply::Err(_) if codes.insert(reply["err"]["code"].clone().to_string()) => {
                replies.push(reply.clone());
            }
            _ => {}
        }
    }
    let missing: Vec<usize> = (0..REQUESTS).filter(|i| !ops.contains(i)).collect();
    assert!(missing.is_empty(), "requests never sent: {missing:?}");
    let missing: Vec<usize> = (0..RESPONSES).filter(|i| !types.contains(i)).collect();
    assert!(missing.is_empty(), "responses never answered: {missing:?}");
    replies.extend(
        more_errors()
            .into_iter()
            .map(|e| serde_json::to_value(Reply::Err(e)).expect("encodes")),
    );
    let kinds: BTreeSet<String> = events
        .iter()
        .map(|e| {
            serde_json::to_value(&e.kind).expect("encodes")["type"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    // Every kind of event there is (`EventKind` cannot be matched exhaustively from here).
    assert_eq!(kinds.len(), 15, "event kinds met: {kinds:?}");

    let grants = Grants::parse(
        r#"[{"name": "ana", "token": "secret-1", "projects": "*", "role": "admin"},
            {"name": "ana", "token": "secret-1", "projects": ["examples"], "role": "read"}]"#,
    )
    .expect("grants");
    let server = Server {
        backend: Backend::Sqlite,
        read_only: false,
    };
    let whoami = grants.whoami(Some("secret-1"), server).expect("whoami");
    let stream: String = events.iter().take(4).map(frame).collect();

    let classified = classified_changes();

    let requests: Vec<&Value> = requests.values().collect();
    let text = format!(
        "// Generated by protocol/tests/console_examples.rs; do not edit. Regenerate with\n\
         //   HAKIRI_BLESS=1 cargo test -p hakiri-protocol --test console_examples\n\
         // then `npm run check` in console/ checks the types below against these (ADR 0027).\n\
         import type {{ ChangeClass, Event, Plan, Reply, Request, SchemaDiff, WhoAmI }} from './types';\n\n\
         export const requests: Request[] = {};\n\n\
         export const replies: Reply[] = {};\n\n\
         export const events: Event[] = {};\n\n\
         export const plan: Plan = {};\n\n\
         export const whoami: WhoAmI = {};\n\n\
         /** The first events as an event stream frames them (`GET …/events`). */\n\
         export const eventStream = {};\n\n\
         /** Diffs of one change each, with the class hakiri-core gives them (`SchemaDiff::classify`). */\n\
         export const classified: {{ diff: SchemaDiff; class: ChangeClass }}[] = {};\n",
        pretty(&requests),
        pretty(&replies),
        pretty(&events),
        pretty(&plan),
        pretty(&whoami),
        pretty(&stream),
        pretty(&classified),
    );
    let text = stable_uuids(&text);
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(EXAMPLES);
    if std::env::var_os("HAKIRI_BLESS").is_some() {
        std::fs::write(&path, &text).expect("write the examples");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == text,
        "{} is not what the protocol sends now: regenerate it with\n  \
         HAKIRI_BLESS=1 cargo test -p hakiri-protocol --test console_examples\n\
         and update console/src/lib/protocol/types.ts until `npm run check` passes in console/",
        path.display()
    );
}

/// Every kind of one-change diff — each column type retyped to each other, a column added
/// (nullable or required) or removed, nullability either way, a key change — with core's class,
/// so the console's per-change classes (`console/src/lib/schemadiff.ts`) are held to core's.
fn classified_changes() -> Vec<Value> {
    let types: Vec<ColumnType> = [
        "boolean",
        "integer",
        "decimal",
        "number",
        "string",
        "date",
        "time",
        "timestamp",
        "binary",
        "json",
    ]
    .iter()
    .map(|t| serde_json::from_value(json!(t)).expect("a column type"))
    .collect();
    let column = |nullable| Column {
        name: "c".to_owned(),
        ty: ColumnType::Integer,
        nullable,
    };
    let mut diffs = vec![
        SchemaDiff {
            added: vec![column(true)],
            ..SchemaDiff::default()
        },
        SchemaDiff {
            added: vec![column(false)],
            ..SchemaDiff::default()
        },
        SchemaDiff {
            removed: vec![column(true)],
            ..SchemaDiff::default()
        },
        SchemaDiff {
            key: Some(KeyChange {
                from: vec!["id".to_owned()],
                to: vec!["id".to_owned(), "c".to_owned()],
            }),
            ..SchemaDiff::default()
        },
    ];
    for to in [true, false] {
        diffs.push(SchemaDiff {
            nullability: vec![NullabilityChange {
                column: "c".to_owned(),
                from: !to,
                to,
            }],
            ..SchemaDiff::default()
        });
    }
    for &from in &types {
        for &to in types.iter().filter(|&&to| to != from) {
            diffs.push(SchemaDiff {
                retyped: vec![Retyped {
                    column: "c".to_owned(),
                    from,
                    to,
                }],
                ..SchemaDiff::default()
            });
        }
    }
    diffs
        .into_iter()
        .map(|diff| json!({"class": diff.classify().expect("one change"), "diff": diff}))
        .collect()
}
