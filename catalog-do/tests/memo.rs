//! Checkpoints planned from the host's memo of cursors (ADR 0041), on the embedded host's store.
//!
//! A remembered stream's checkpoint is one guarded write and its event; the memo is only a hint,
//! so one that is stale — another writer moved the cursor, a unit that remembered rolled back,
//! the lease or the run changed — must never write what the stored state would refuse.

use hakiri_catalog_do::store::{self, CursorMemo, FailAt};
use hakiri_catalog_do::{SqliteConfig, SqliteConnection};
use hakiri_core::{
    Actor, BeginRun, ConnectorRef, Cursor, CursorAdvance, CursorKind, CursorValue, Error,
    FenceReason, FinishRun, HolderId, Lease, PipelineId, PipelineSpec, ProjectId, PutMode, Result,
    RunId, StreamName, Timestamp, Trigger,
};
use hakiri_protocol::{Request, Response};
use serde_json::json;

const NOW: Timestamp = Timestamp::from_millis(1_800_000_000_000);
const TTL_MS: u64 = 60_000;

/// The embedded writer's view: a connection and the memo it keeps beside it.
struct Host {
    conn: SqliteConnection,
    memo: CursorMemo,
    _dir: tempfile::TempDir,
}

impl Host {
    fn open() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = SqliteConfig::default();
        let mut conn = SqliteConnection::open(&dir.path().join("catalog.db"), &config).unwrap();
        conn.prepare(&ProjectId::new("memo").unwrap(), NOW).unwrap();
        Self {
            conn,
            memo: CursorMemo::new(),
            _dir: dir,
        }
    }

    /// Runs `request` at `now` in a transaction of its own, remembering; the answer and how many
    /// statements it ran.
    fn call_at(&mut self, request: Request, now: Timestamp) -> (Result<Response>, usize) {
        let memo = &mut self.memo;
        let mut statements = 0;
        let answer = self.conn.with_immediate(|c| {
            let mut counted = FailAt::new(c, usize::MAX);
            let answer = store::handle(&mut counted, memo, request, now);
            statements = counted.executed();
            answer
        });
        (answer, statements)
    }

    fn call(&mut self, request: Request) -> Result<Response> {
        self.call_at(request, NOW).0
    }

    /// Runs `request` as another writer would: committed, unseen by this host's memo.
    fn elsewhere(&mut self, request: Request) -> Result<Response> {
        self.conn
            .with_immediate(|c| store::handle(c, &mut CursorMemo::new(), request, NOW))
    }

    /// A running pipeline `p` (monotonic cursors) under holder `w`.
    fn running(&mut self) -> (Lease, RunId) {
        self.running_with(CursorKind::Monotonic)
    }

    /// A running pipeline `p` with cursors of `kind` under holder `w`.
    fn running_with(&mut self, kind: CursorKind) -> (Lease, RunId) {
        let pipeline = PipelineId::new("p").unwrap();
        let spec = PipelineSpec::new(pipeline.clone(), ConnectorRef::new("test").unwrap(), kind);
        let put = Request::PutPipeline {
            spec,
            mode: PutMode::Create,
            by: Actor::System,
        };
        self.call(put).unwrap();
        let acquire = Request::Acquire {
            pipeline,
            holder: HolderId::new("w").unwrap(),
            ttl_ms: TTL_MS,
        };
        let Ok(Response::Lease(lease)) = self.call(acquire) else {
            panic!("acquire answers a lease")
        };
        let run = self.begin(&lease);
        (lease, run)
    }

    fn begin(&mut self, lease: &Lease) -> RunId {
        let begin = Request::BeginRun {
            lease: lease.clone(),
            begin: BeginRun::new(Trigger::Manual),
        };
        let Ok(Response::Run(run)) = self.call(begin) else {
            panic!("begin answers a run")
        };
        run.id
    }

    /// The stream's stored value and version.
    fn stored(&mut self, lease: &Lease) -> (serde_json::Value, u64) {
        let cursor = self.cursor(lease);
        (cursor.value.as_json().clone(), cursor.version)
    }

    fn cursor(&mut self, lease: &Lease) -> Cursor {
        let get = Request::GetCursor {
            pipeline: lease.pipeline.clone(),
            stream: stream(),
        };
        let Ok(Response::MaybeCursor(Some(cursor))) = self.elsewhere(get) else {
            panic!("the stream has a cursor")
        };
        cursor
    }
}

fn stream() -> StreamName {
    StreamName::new("s").unwrap()
}

fn advance(lease: &Lease, run: RunId, to: impl Into<serde_json::Value>) -> Request {
    Request::Advance {
        lease: lease.clone(),
        run,
        stream: stream(),
        advance: CursorAdvance::to(CursorValue::new(to.into()).unwrap()),
    }
}

fn written(answer: Result<Response>) -> Cursor {
    match answer {
        Ok(Response::Cursor(cursor)) => cursor,
        other => panic!("expected a cursor, got {other:?}"),
    }
}

/// Why `answer` was fenced; a panic if it was not.
fn fenced(answer: Result<Response>) -> FenceReason {
    match answer {
        Err(Error::Fenced { reason, .. }) => reason,
        other => panic!("expected fenced, got {other:?}"),
    }
}

fn regression_from(answer: Result<Response>, current: i64) {
    match answer {
        Err(Error::CursorRegression { current: c, .. }) => assert_eq!(c, json!(current)),
        other => panic!("expected a regression from {current}, got {other:?}"),
    }
}

#[test]
fn a_remembered_checkpoint_is_one_guarded_write_and_its_event() {
    let mut host = Host::open();
    let (lease, run) = host.running();

    let (first, statements) = host.call_at(advance(&lease, run, 1), NOW);
    assert_eq!(written(first).version, 1);
    assert_eq!(
        statements, 3,
        "the stream's first checkpoint reads, writes, appends"
    );

    for to in 2..=5 {
        let (next, statements) = host.call_at(advance(&lease, run, to), NOW);
        let cursor = written(next);
        assert_eq!(
            (cursor.value.as_json(), cursor.version),
            (&json!(to), to as u64)
        );
        assert_eq!(statements, 2, "a remembered checkpoint writes and appends");
    }
    assert_eq!(host.cursor(&lease).value.as_json(), &json!(5));

    // The same position again changes nothing: one read confirms it, lease and run included.
    let (same, statements) = host.call_at(advance(&lease, run, 5), NOW);
    let same = written(same);
    assert_eq!((same.value.as_json(), same.version), (&json!(5), 5));
    assert_eq!(statements, 1, "an unchanged checkpoint reads once");

    // Every write is in the history, each version once.
    let history = Request::CursorHistory {
        pipeline: lease.pipeline.clone(),
        stream: stream(),
        before: None,
        limit: hakiri_core::Limit::MAX,
    };
    let Ok(Response::CursorHistory(page)) = host.elsewhere(history) else {
        panic!("history answers a page")
    };
    let versions: Vec<u64> = page.items.iter().map(|e| e.version).collect();
    assert_eq!(versions, [5, 4, 3, 2, 1]);

    // A finish's cursors are remembered for the next run's checkpoints.
    let finish = Request::FinishRun {
        lease: lease.clone(),
        run,
        finish: FinishRun::succeeded().with_cursor(stream(), CursorValue::new(json!(9)).unwrap()),
    };
    host.call(finish).unwrap();
    let next_run = host.begin(&lease);
    let (next, statements) = host.call_at(advance(&lease, next_run, 10), NOW);
    assert_eq!(written(next).version, 7);
    assert_eq!(statements, 2);
}

#[test]
fn a_cursor_moved_by_another_writer_is_judged_as_stored() {
    let mut host = Host::open();
    let (lease, run) = host.running();
    written(host.call(advance(&lease, run, 10)));
    // Another writer of the same lease moves the cursor; this host's memo still says 10.
    written(host.elsewhere(advance(&lease, run, 20)));

    regression_from(host.call(advance(&lease, run, 15)), 20);
    assert_eq!(host.stored(&lease), (json!(20), 2));

    // The refusal's read refreshed the memo: the next checkpoint is remembered again.
    let (next, statements) = host.call_at(advance(&lease, run, 25), NOW);
    assert_eq!(written(next).version, 3);
    assert_eq!(statements, 2);
}

#[test]
fn a_value_stored_again_is_told_apart_by_its_version() {
    let mut host = Host::open();
    let (lease, run) = host.running_with(CursorKind::Opaque);
    written(host.call(advance(&lease, run, "a")));
    // Another writer moves the opaque cursor away and back: version 3 holds the remembered text.
    written(host.elsewhere(advance(&lease, run, "b")));
    written(host.elsewhere(advance(&lease, run, "a")));

    let cursor = written(host.call(advance(&lease, run, "c")));
    assert_eq!((cursor.value.as_json(), cursor.version), (&json!("c"), 4));
    assert_eq!(host.cursor(&lease).version, 4);
}

#[test]
fn a_cursor_kind_changed_since_is_the_one_applied() {
    let mut host = Host::open();
    let (lease, run) = host.running_with(CursorKind::Opaque);
    written(host.call(advance(&lease, run, "b")));
    // The operator makes the pipeline's cursors monotonic.
    let get = Request::GetPipeline {
        pipeline: lease.pipeline.clone(),
    };
    let Ok(Response::Pipeline(pipeline)) = host.call(get) else {
        panic!("the pipeline exists")
    };
    let mut spec = pipeline.spec.clone();
    spec.cursor_kind = CursorKind::Monotonic;
    let update = Request::PutPipeline {
        spec,
        mode: PutMode::Update {
            expected: pipeline.generation,
        },
        by: Actor::System,
    };
    host.call(update).unwrap();

    // Planned as opaque, "a" would replace "b"; as monotonic it regresses.
    match host.call(advance(&lease, run, "a")) {
        Err(Error::CursorRegression { current, .. }) => assert_eq!(current, json!("b")),
        other => panic!("expected a regression from \"b\", got {other:?}"),
    }
}

#[test]
fn a_remembered_write_that_rolled_back_is_not_trusted() {
    let mut host = Host::open();
    let (lease, run) = host.running();
    written(host.call(advance(&lease, run, 5)));

    // The memo learns version 2 = 10 from a unit that then rolls back (as a group commit does
    // when a later request of its batch fails).
    let memo = &mut host.memo;
    let rolled_back: Result<()> = host.conn.with_immediate(|c| {
        written(store::handle(c, memo, advance(&lease, run, 10), NOW));
        Err(Error::Unavailable(
            "the unit fails after the checkpoint".into(),
        ))
    });
    assert!(rolled_back.is_err());
    // Version 2 is committed with another value.
    written(host.elsewhere(advance(&lease, run, 20)));

    // Planned from the memo, 15 would follow 10 at version 2; the stored version 2 is 20.
    regression_from(host.call(advance(&lease, run, 15)), 20);
    assert_eq!(host.stored(&lease), (json!(20), 2));
}

#[test]
fn a_remembered_checkpoint_is_fenced_and_refused_like_any_other() {
    let mut host = Host::open();
    let (lease, run) = host.running();
    written(host.call(advance(&lease, run, 1)));

    // A lease of the current epoch forged for another holder.
    let forged = Lease {
        holder: HolderId::new("mallory").unwrap(),
        ..lease.clone()
    };
    let reason = fenced(host.call(advance(&forged, run, 2)));
    assert!(matches!(reason, FenceReason::Superseded { .. }), "{reason}");

    // A lease of the holder forged with another epoch.
    let forged = Lease {
        epoch: hakiri_core::Epoch(lease.epoch.get() + 1),
        ..lease.clone()
    };
    let reason = fenced(host.call(advance(&forged, run, 2)));
    assert!(matches!(reason, FenceReason::Superseded { .. }), "{reason}");

    // The lease expired.
    let expired = Timestamp::from_millis(NOW.as_millis() + TTL_MS as i64);
    let reason = fenced(host.call_at(advance(&lease, run, 2), expired).0);
    assert!(matches!(reason, FenceReason::Expired { .. }), "{reason}");

    // The run ended and another began.
    let finish = Request::FinishRun {
        lease: lease.clone(),
        run,
        finish: FinishRun::succeeded(),
    };
    host.call(finish).unwrap();
    let next_run = host.begin(&lease);
    match host.call(advance(&lease, run, 3)) {
        Err(Error::FailedPrecondition(message)) => assert!(message.contains("ended")),
        other => panic!("expected the ended run refused, got {other:?}"),
    }

    // Another holder took the pipeline over after the lease expired.
    let later = Timestamp::from_millis(expired.as_millis() + 1);
    let acquire = Request::Acquire {
        pipeline: lease.pipeline.clone(),
        holder: HolderId::new("other").unwrap(),
        ttl_ms: TTL_MS,
    };
    let Ok(Response::Lease(taken)) = host.call_at(acquire, later).0 else {
        panic!("the expired lease is taken over")
    };
    let reason = fenced(host.call_at(advance(&lease, next_run, 4), later).0);
    let superseded = FenceReason::Superseded {
        current: taken.epoch,
    };
    assert_eq!(reason, superseded);

    assert_eq!(host.stored(&lease), (json!(1), 1));
}
