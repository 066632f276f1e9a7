//! A failure injected at any statement of an operation leaves nothing behind (embedded host).
//!
//! The store runs each operation inside the host's atomic unit; `FailAt` makes statement N fail.
//! For every N up to the operation's statement count, the database must be byte-for-byte the
//! same afterwards, and the operation must then succeed unhindered.

use std::collections::BTreeMap;

use hakiri_catalog_do::store::{self, Atomic, CursorMemo, Exec, FailAt};
use hakiri_catalog_do::{SqliteConfig, SqliteConnection};
use hakiri_core::{
    Actor, BeginRun, Column, ColumnType, ConnectorRef, CursorAdvance, CursorKind, CursorValue,
    FinishRun, HolderId, Lease, PipelineId, PipelineSpec, ProjectId, PutMode, Run, RunStatus,
    Schema, StreamName, StreamStats, Timestamp, Trigger,
};
use hakiri_protocol::{Request, Response};
use serde_json::json;

const NOW: Timestamp = Timestamp::from_millis(1_800_000_000_000);
fn run(conn: &mut SqliteConnection, request: Request) -> hakiri_core::Result<Response> {
    conn.with_immediate(|conn| {
        conn.atomic(move |conn| store::handle(conn, &mut CursorMemo::new(), request, NOW))
    })
}

/// Every row of every table the database has, as text, each table's rows sorted.
fn snapshot(conn: &mut SqliteConnection) -> BTreeMap<String, Vec<String>> {
    let tables = conn
        .query(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
            &[],
        )
        .expect("list tables");
    let tables: Vec<String> = tables
        .iter()
        .map(|row| row.text(0).expect("a table's name").to_owned())
        .collect();
    assert!(tables.len() >= 8, "the catalog's tables: {tables:?}");
    tables
        .into_iter()
        .map(|table| {
            let rows = conn
                .query(&format!("SELECT * FROM \"{table}\""), &[])
                .expect("read table");
            let mut rows: Vec<String> = rows.into_iter().map(|r| format!("{:?}", r.0)).collect();
            rows.sort();
            (table, rows)
        })
        .collect()
}

fn schema(extra: &[&str]) -> Schema {
    let mut columns = vec![Column::new("id", ColumnType::Integer, false)];
    columns.extend(
        extra
            .iter()
            .map(|c| Column::new(*c, ColumnType::String, true)),
    );
    Schema::new(columns, vec!["id".into()]).expect("valid schema")
}

/// A pipeline with a running run that has checkpointed and seen a schema.
fn running(conn: &mut SqliteConnection) -> (Lease, Run) {
    let pipeline = PipelineId::new("p").unwrap();
    let spec = PipelineSpec::new(
        pipeline.clone(),
        ConnectorRef::new("test").unwrap(),
        CursorKind::Monotonic,
    );
    run(
        conn,
        Request::PutPipeline {
            spec,
            mode: PutMode::Create,
            by: Actor::System,
        },
    )
    .unwrap();
    let Response::Lease(lease) = run(
        conn,
        Request::Acquire {
            pipeline,
            holder: HolderId::new("w").unwrap(),
            ttl_ms: 60_000,
        },
    )
    .unwrap() else {
        panic!("acquire answers a lease")
    };
    let Response::Run(r) = run(
        conn,
        Request::BeginRun {
            lease: lease.clone(),
            begin: BeginRun::new(Trigger::Manual),
        },
    )
    .unwrap() else {
        panic!("begin answers a run")
    };
    let stream = StreamName::new("a").unwrap();
    let advance = CursorAdvance::to(CursorValue::new(json!(5)).unwrap());
    run(
        conn,
        Request::Advance {
            lease: lease.clone(),
            run: r.id,
            stream: stream.clone(),
            advance,
        },
    )
    .unwrap();
    run(
        conn,
        Request::ObserveSchema {
            lease: lease.clone(),
            run: r.id,
            stream,
            schema: schema(&[]),
        },
    )
    .unwrap();
    (lease, r)
}

fn finish_request(lease: &Lease, run: &Run) -> Request {
    let a = StreamName::new("a").unwrap();
    let b = StreamName::new("b").unwrap();
    let finish = FinishRun::succeeded()
        .with_cursor(a.clone(), CursorValue::new(json!(9)).unwrap())
        .with_cursor(b.clone(), CursorValue::new(json!("x")).unwrap())
        .with_stats(a.clone(), StreamStats::new(3, 30))
        // One accepted additive change and one breaking change held for review.
        .with_schema(a, schema(&["note"]))
        .with_schema(b.clone(), schema(&[]));
    Request::FinishRun {
        lease: lease.clone(),
        run: run.id,
        finish,
    }
}

#[test]
fn a_failure_anywhere_in_a_finish_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let mut conn =
        SqliteConnection::open(&dir.path().join("c.db"), &SqliteConfig::default()).unwrap();
    conn.with_immediate(|c| {
        store::migrate_in_place(c, NOW)?;
        store::bind_project(c, &ProjectId::new("atomicity").unwrap())
    })
    .unwrap();
    let (lease, begun) = running(&mut conn);
    let before = snapshot(&mut conn);
    let mut failures = 0;
    for fail_at in 1.. {
        let request = finish_request(&lease, &begun);
        let outcome = conn.with_immediate(|c| {
            c.atomic(move |c| {
                let mut failing = FailAt::new(c, fail_at);
                store::handle(&mut failing, &mut CursorMemo::new(), request, NOW)
            })
        });
        match outcome {
            Err(e) => {
                assert!(
                    e.to_string().contains("injected failure"),
                    "statement {fail_at}: {e}"
                );
                assert_eq!(
                    snapshot(&mut conn),
                    before,
                    "a failure at statement {fail_at} left something behind"
                );
                failures += 1;
            }
            Ok(Response::Run(finished)) => {
                assert_eq!(finished.status, RunStatus::Succeeded);
                break;
            }
            Ok(other) => panic!("unexpected answer {other:?}"),
        }
        assert!(fail_at < 1000, "the finish never succeeded");
    }
    assert!(
        failures >= 10,
        "a finish with two cursors and two schemas runs many statements; saw {failures}"
    );
    // The finish that got through wrote everything at once.
    let after = snapshot(&mut conn);
    assert_ne!(after, before);
    let Response::Run(stored) = run(&mut conn, Request::GetRun { run: begun.id }).unwrap() else {
        panic!("get_run answers a run")
    };
    assert_eq!(stored.status, RunStatus::Succeeded);
    assert_eq!(stored.cursors_at_end.len(), 2);
    assert_eq!(
        after["decisions"].len(),
        1,
        "the additive change on a is a recorded decision"
    );
    assert_eq!(
        after["schema_versions"].len(),
        3,
        "a: versions 1 and 2, b: version 1"
    );
}

#[test]
fn a_finish_with_a_regressing_cursor_is_refused_whole() {
    let dir = tempfile::tempdir().unwrap();
    let mut conn =
        SqliteConnection::open(&dir.path().join("c.db"), &SqliteConfig::default()).unwrap();
    conn.with_immediate(|c| {
        store::migrate_in_place(c, NOW)?;
        store::bind_project(c, &ProjectId::new("atomicity").unwrap())
    })
    .unwrap();
    let (lease, begun) = running(&mut conn);
    let z = StreamName::new("z").unwrap();
    let advance = CursorAdvance::to(CursorValue::new(json!(5)).unwrap());
    run(
        &mut conn,
        Request::Advance {
            lease: lease.clone(),
            run: begun.id,
            stream: z.clone(),
            advance,
        },
    )
    .unwrap();
    let before = snapshot(&mut conn);
    // Streams are applied in name order: "a" is written before "z" is found to regress.
    let finish = FinishRun::succeeded()
        .with_cursor(
            StreamName::new("a").unwrap(),
            CursorValue::new(json!(9)).unwrap(),
        )
        .with_cursor(z, CursorValue::new(json!(1)).unwrap())
        .with_schema(StreamName::new("b").unwrap(), schema(&[]));
    let err = run(
        &mut conn,
        Request::FinishRun {
            lease,
            run: begun.id,
            finish,
        },
    )
    .unwrap_err();
    assert!(
        matches!(err, hakiri_core::Error::CursorRegression { .. }),
        "{err:?}"
    );
    assert_eq!(snapshot(&mut conn), before);
}
