//! The store's paged reads stay O(page) however long the history grows (`docs/guarantees.md`,
//! “Fast”): each is
//! measured by SQLite's own count of virtual-machine steps for one page, with [`SMALL`] rows per
//! table and again after the database grew to [`LARGE`].
//!
//! The statements are the store's own (`mod.rs`), on the store's schema (every migration), so a
//! missing index, a sort of every match or a filter applied after the scan shows as steps growing
//! with the rows.

use hakiri_core::{DecisionId, DecisionQuery, Limit, PipelineId, RunQuery, RunStatus};
use rusqlite::{params_from_iter, Connection, StatementStatus};

use super::migrations::MIGRATIONS;
use super::{
    decisions_page, runs_page, SqlValue, CURSOR_HISTORY_PAGE, EVENTS_PAGE, HELD_DECISIONS,
    LAST_RUN, PIPELINE_EVENTS_BEFORE, PIPELINE_EVENTS_PAGE, STATUS_PAGE,
};

/// Rows per table before and after the database grows.
const SMALL: i64 = 2_000;
const LARGE: i64 = 200_000;

/// Rows a page returns (the default limit, plus the row that says there is more).
const PAGE: i64 = 101;

fn open() -> Connection {
    let conn = Connection::open_in_memory().unwrap();
    for migration in MIGRATIONS {
        for statement in migration.statements {
            conn.execute_batch(statement).unwrap();
        }
    }
    conn
}

/// A run id from a number: time-ordered text, as UUIDv7s are.
const RUN_ID: &str = "printf('01900000-0000-7000-8000-%012x', n)";

/// Numbers `from..=to`, for `INSERT … SELECT`.
fn numbers(from: i64, to: i64) -> String {
    format!("WITH RECURSIVE g(g) AS (SELECT {from} UNION ALL SELECT g + 1 FROM g WHERE g < {to}) ")
}

/// Rows `from..=to` of the event log and the pipelines (each with a schema decision, one in
/// twenty held). One event in ten of the first [`SMALL`] is pipeline `rare`'s, the rest `big`'s,
/// each of those a cursor write of its stream `s` carrying its history entry: only an index on
/// the pipeline finds the end of `rare`'s slice without reading the whole log after it.
fn append(conn: &Connection, from: i64, to: i64) {
    let (p_from, p_to) = (from / 10, to / 10 - 1);
    conn.execute_batch(&format!(
        "{events} INSERT INTO events (seq, at, actor, pipeline, kind, stream, version, history) \
           SELECT g, 0, '{{}}', p, '{{}}', iif(p = 'big', 's', NULL), iif(p = 'big', g, NULL), \
             iif(p = 'big', '{{}}', NULL) \
           FROM (SELECT g, CASE WHEN g <= {SMALL} AND g % 10 = 0 THEN 'rare' ELSE 'big' END AS p \
             FROM g);
         {pipelines} INSERT INTO pipelines (id, body, cursor_kind) \
           SELECT printf('p%08d', g), '{{}}', 'monotonic' FROM g;
         {decisions} INSERT INTO decisions (id, pipeline, stream, held, body) \
           SELECT g, printf('p%08d', g), 's', g % 20 = 0, '{{}}' FROM g;",
        events = numbers(from, to),
        pipelines = numbers(p_from, p_to),
        decisions = numbers(p_from, p_to),
    ))
    .unwrap();
}

/// The runs: [`SMALL`] spaced a thousand ids apart, a quarter of them failed runs of pipeline
/// `rare` — then `noise` more between them: one in ten a succeeded run of `rare`, one in ten a
/// failed run of `big`, the rest succeeded runs of `big`. Only an index on the pipeline finds a
/// page of `rare`'s runs, only one on the status a page of failed runs, and only one on both a
/// page of `rare`'s failed runs, without reading thousands of others.
fn runs(conn: &Connection, noise: i64) {
    let sql = if noise == 0 {
        format!(
            "{} INSERT INTO runs (id, pipeline, status, body) \
             SELECT {RUN_ID}, CASE WHEN g % 4 < 2 THEN 'rare' ELSE 'big' END, \
               CASE WHEN g % 2 = 0 THEN 'failed' ELSE 'succeeded' END, '{{}}' \
             FROM (SELECT g, g * 1000 AS n FROM g)",
            numbers(1, SMALL)
        )
    } else {
        format!(
            "{} INSERT INTO runs (id, pipeline, status, body) \
             SELECT {RUN_ID}, CASE WHEN g % 10 = 0 THEN 'rare' ELSE 'big' END, \
               CASE WHEN g % 10 = 1 THEN 'failed' ELSE 'succeeded' END, '{{}}' \
             FROM (SELECT g, (g % {SMALL} + 1) * 1000 + g / {SMALL} + 1 AS n FROM g)",
            numbers(0, noise - 1)
        )
    };
    conn.execute_batch(&sql).unwrap();
}

/// Thirty more decisions, none held, for each of the first two hundred pipelines.
fn decided_often(conn: &Connection) {
    conn.execute_batch(&format!(
        "{} INSERT INTO decisions (id, pipeline, stream, held, body) \
         SELECT {LARGE} + g, printf('p%08d', g / 30), 's', 0, '{{}}' FROM g",
        numbers(0, 200 * 30 - 1)
    ))
    .unwrap();
}

/// SQLite's virtual-machine steps for running `sql` to its end.
fn steps(conn: &Connection, sql: &str, args: &[SqlValue]) -> i64 {
    let mut statement = conn.prepare(sql).unwrap();
    let mut rows = statement.query(params_from_iter(args.iter())).unwrap();
    while rows.next().unwrap().is_some() {}
    drop(rows);
    i64::from(statement.get_status(StatementStatus::VmStep))
}

/// Each read's steps for its first page (the event log's tail), with `rows` rows per table.
fn measure(conn: &Connection, rows: i64) -> Vec<(&'static str, i64)> {
    let rare = PipelineId::new("rare").unwrap();
    let runs = |pipeline: Option<&PipelineId>, status: Option<RunStatus>| {
        let (sql, args) = runs_page(&RunQuery {
            pipeline: pipeline.cloned(),
            status,
            ..RunQuery::all()
        });
        steps(conn, &sql, &args)
    };
    let decisions = |held_only: bool| {
        let (sql, args) = decisions_page(&DecisionQuery {
            pipeline: Some(PipelineId::new("p00000001").unwrap()),
            held_only,
            after: None::<DecisionId>,
            limit: Limit::DEFAULT,
        });
        steps(conn, &sql, &args)
    };
    // The snapshot's page of pipelines, then each one's newest run and held decisions.
    let snapshot = {
        let page = steps(
            conn,
            STATUS_PAGE,
            &[SqlValue::from(""), SqlValue::Integer(PAGE)],
        );
        let ids: Vec<String> = conn
            .prepare("SELECT id FROM pipelines ORDER BY id LIMIT ?1")
            .unwrap()
            .query_map([PAGE], |row| row.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        page + ids
            .iter()
            .map(|id| {
                let id = [SqlValue::from(id.as_str())];
                steps(conn, LAST_RUN, &id) + steps(conn, HELD_DECISIONS, &id)
            })
            .sum::<i64>()
    };
    vec![
        ("runs", runs(None, None)),
        ("runs of a pipeline", runs(Some(&rare), None)),
        ("runs with a status", runs(None, Some(RunStatus::Failed))),
        (
            "runs of a pipeline with a status",
            runs(Some(&rare), Some(RunStatus::Failed)),
        ),
        (
            "cursor history",
            steps(
                conn,
                CURSOR_HISTORY_PAGE,
                &[
                    SqlValue::from("big"),
                    SqlValue::from("s"),
                    SqlValue::Integer(i64::MAX),
                    SqlValue::Integer(PAGE),
                ],
            ),
        ),
        (
            "events",
            steps(
                conn,
                EVENTS_PAGE,
                &[SqlValue::Integer(rows - 150), SqlValue::Integer(PAGE)],
            ),
        ),
        (
            "events of a pipeline (its slice's last 50)",
            steps(
                conn,
                PIPELINE_EVENTS_PAGE,
                &[
                    SqlValue::from("rare"),
                    SqlValue::Integer(SMALL - 500),
                    SqlValue::Integer(PAGE),
                ],
            ),
        ),
        (
            "events of a pipeline, backwards from the log's end (its last page)",
            steps(
                conn,
                PIPELINE_EVENTS_BEFORE,
                &[
                    SqlValue::from("rare"),
                    SqlValue::Integer(rows),
                    SqlValue::Integer(PAGE),
                ],
            ),
        ),
        (
            "events of a pipeline, backwards (a page of a long slice)",
            steps(
                conn,
                PIPELINE_EVENTS_BEFORE,
                &[
                    SqlValue::from("big"),
                    SqlValue::Integer(rows - 150),
                    SqlValue::Integer(PAGE),
                ],
            ),
        ),
        ("decisions of a pipeline", decisions(false)),
        ("held decisions of a pipeline", decisions(true)),
        ("reconciler snapshot", snapshot),
    ]
}

#[test]
fn a_page_costs_the_same_with_a_hundred_times_the_rows() {
    let conn = open();
    append(&conn, 1, SMALL);
    runs(&conn, 0);
    let small = measure(&conn, SMALL);
    append(&conn, SMALL + 1, LARGE);
    runs(&conn, LARGE - SMALL);
    decided_often(&conn);
    let large = measure(&conn, LARGE);

    let report: Vec<String> = small
        .iter()
        .zip(&large)
        .map(|((name, before), (_, after))| {
            format!("{name:<34} {before:>6} steps at {SMALL} rows, {after:>6} at {LARGE}")
        })
        .collect();
    println!("{}", report.join("\n"));
    for ((name, before), (_, after)) in small.iter().zip(&large) {
        // O(page): a deeper b-tree costs a few steps per row, nothing that grows with the rows,
        // which a hundred times more of would show.
        let bound = (before * 3 / 2).max(20 * PAGE) + 100;
        assert!(
            *after <= bound,
            "{name} is not O(page):\n{}",
            report.join("\n")
        );
    }
}
