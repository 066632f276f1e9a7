//! The reads the reconciler and the CLI page through stay O(page) however long the history grows
//! (`docs/guarantees.md`, “Fast”): each is measured by the buffers its plan touches for one page,
//! with a project of
//! [`SMALL`] rows per table and again after it grew to [`LARGE`], on a real server.
//!
//! The statements are the catalog's own (`store/`), prepared and executed the way the catalog's
//! sessions run them (one generic plan per statement, `PostgresConfig`), so a missing index, a
//! sort of every row or a filter applied after the scan shows as buffers growing with the table
//! (and a sequential scan is refused outright).

use serde_json::Value;
use sqlx::{AssertSqlSafe, PgConnection};

use crate::store::{
    runs_page, CURSOR_HISTORY_PAGE, EVENTS_PAGE, PIPELINE_EVENTS_BEFORE, PIPELINE_EVENTS_PAGE,
    STATUS_PAGE,
};
use hakiri_test_kit::postgres;

/// Rows per table before and after the project grows.
const SMALL: i64 = 2_000;
const LARGE: i64 = 200_000;

/// The page the catalog asks for (its default limit, plus the row that says there is more).
const PAGE: i64 = 101;

/// One page read: a name, the catalog's statement, its parameters' types as the catalog binds
/// them, and its arguments as SQL literals.
struct Read {
    name: &'static str,
    sql: String,
    types: &'static str,
    args: String,
    /// Index lookups for each row of the page (beside the one range scan the page is): each
    /// costs a page more once its index is a level deeper.
    lookups: u64,
}

/// The first page of each read (newest first; the event log's tail), with `rows` rows per table.
fn reads(project: &str, rows: i64) -> Vec<Read> {
    let runs = |name, pipeline, status| Read {
        name,
        sql: runs_page(pipeline, status),
        types: "text, uuid, bigint, text, text",
        args: format!(
            "'{project}', 'ffffffff-ffff-7fff-bfff-ffffffffffff'::uuid, {PAGE}, 'rare', 'failed'"
        ),
        lookups: 0,
    };
    vec![
        runs("runs", false, false),
        runs("runs of a pipeline", true, false),
        runs("runs with a status", false, true),
        runs("runs of a pipeline with a status", true, true),
        Read {
            name: "cursor history",
            sql: CURSOR_HISTORY_PAGE.to_owned(),
            types: "text, text, text, bigint, bigint",
            args: format!("'{project}', 'big', 's', {}, {PAGE}", i64::MAX),
            lookups: 0,
        },
        Read {
            name: "events",
            sql: EVENTS_PAGE.to_owned(),
            types: "text, bigint, bigint",
            args: format!("'{project}', {}, {PAGE}", rows - 150),
            lookups: 0,
        },
        Read {
            name: "events of a pipeline (its slice's last 50)",
            sql: PIPELINE_EVENTS_PAGE.to_owned(),
            types: "text, text, bigint, bigint",
            args: format!("'{project}', 'rare', {}, {PAGE}", SMALL - 500),
            lookups: 0,
        },
        Read {
            name: "events of a pipeline, backwards from the log's end (its last page)",
            sql: PIPELINE_EVENTS_BEFORE.to_owned(),
            types: "text, text, bigint, bigint",
            args: format!("'{project}', 'rare', {rows}, {PAGE}"),
            lookups: 0,
        },
        Read {
            name: "events of a pipeline, backwards (a page of a long slice)",
            sql: PIPELINE_EVENTS_BEFORE.to_owned(),
            types: "text, text, bigint, bigint",
            args: format!("'{project}', 'big', {}, {PAGE}", rows - 150),
            lookups: 0,
        },
        Read {
            name: "reconciler snapshot",
            sql: STATUS_PAGE.as_str().to_owned(),
            types: "text, text, bigint",
            args: format!("'{project}', '', {PAGE}"),
            // Each pipeline's newest run and its held decisions.
            lookups: 2,
        },
    ]
}

/// A run id from a number: time-ordered as UUIDv7s are.
const RUN_ID: &str = "('01900000-0000-7000-8000-' || lpad(to_hex(n), 12, '0'))::uuid";

/// Rows `from..=to` of the event log (`big`'s events carrying its cursor's history) and the
/// pipelines (each with a newest run and a schema decision, one in twenty held); then refreshes
/// the planner's statistics, as autovacuum would. One event in ten of the first [`SMALL`] is pipeline `rare`'s, the rest `big`'s: only an
/// index on the pipeline finds the end of `rare`'s slice without reading the log after it.
async fn append(conn: &mut PgConnection, project: &str, from: i64, to: i64) {
    let statements = [
        format!(
            "INSERT INTO events (project, seq, at, actor, pipeline, kind, stream, version, \
               history) \
             SELECT '{project}', g, 0, '{{}}', e.pipeline, '{{}}', \
               CASE e.pipeline WHEN 'big' THEN 's' END, g, \
               CASE e.pipeline WHEN 'big' THEN '{{}}'::json END \
             FROM generate_series({from}, {to}) g, LATERAL (SELECT \
               CASE WHEN g <= {SMALL} AND g % 10 = 0 THEN 'rare' ELSE 'big' END AS pipeline) e"
        ),
        format!(
            "INSERT INTO pipelines (project, id, body, generation, cursor_kind, last_run) \
             SELECT '{project}', 'p' || lpad(n::text, 8, '0'), '{{}}', 1, 'monotonic', {RUN_ID} \
             FROM generate_series({}, {}) n",
            from / 10,
            to / 10 - 1
        ),
        format!(
            "INSERT INTO decisions (project, id, pipeline, stream, held, body) \
             SELECT '{project}', g, 'p' || lpad(g::text, 8, '0'), 's', g % 20 = 0, '{{}}' \
             FROM generate_series({}, {}) g",
            from / 10,
            to / 10 - 1
        ),
        format!(
            "INSERT INTO pipelines (project, id, body, generation, cursor_kind) \
             VALUES ('{project}', 'big', '{{}}', 1, 'monotonic') ON CONFLICT DO NOTHING"
        ),
    ];
    execute(conn, statements).await;
}

/// The runs: [`SMALL`] spaced a thousand ids apart, a quarter of them failed runs of pipeline
/// `rare` — then `noise` more between them: one in ten a succeeded run of `rare`, one in ten a
/// failed run of `big`, the rest succeeded runs of `big`. Only an index on the pipeline finds a
/// page of `rare`'s runs, only one on the status a page of failed runs, and only one on both a
/// page of `rare`'s failed runs, without reading thousands of others.
async fn runs(conn: &mut PgConnection, project: &str, noise: i64) {
    let statement = if noise == 0 {
        format!(
            "INSERT INTO runs (project, id, pipeline, status, body) \
             SELECT '{project}', {RUN_ID}, \
               CASE WHEN g % 4 < 2 THEN 'rare' ELSE 'big' END, \
               CASE WHEN g % 2 = 0 THEN 'failed' ELSE 'succeeded' END, '{{}}' \
             FROM generate_series(1, {SMALL}) g, LATERAL (SELECT g * 1000 AS n) id"
        )
    } else {
        format!(
            "INSERT INTO runs (project, id, pipeline, status, body) \
             SELECT '{project}', {RUN_ID}, \
               CASE WHEN g % 10 = 0 THEN 'rare' ELSE 'big' END, \
               CASE WHEN g % 10 = 1 THEN 'failed' ELSE 'succeeded' END, '{{}}' \
             FROM generate_series(0, {noise} - 1) g, \
               LATERAL (SELECT (g % {SMALL} + 1) * 1000 + g / {SMALL} + 1 AS n) id"
        )
    };
    execute(conn, [statement]).await;
}

/// Thirty more decisions, none held, for each of the first two hundred pipelines: only the partial
/// index on held decisions keeps the snapshot from reading them.
async fn decided_often(conn: &mut PgConnection, project: &str) {
    let statement = format!(
        "INSERT INTO decisions (project, id, pipeline, stream, held, body) \
         SELECT '{project}', {LARGE} + p * 30 + k, 'p' || lpad(p::text, 8, '0'), 's', false, '{{}}' \
         FROM generate_series(0, 199) p, generate_series(0, 29) k"
    );
    execute(conn, [statement]).await;
}

async fn execute(conn: &mut PgConnection, statements: impl IntoIterator<Item = String>) {
    for statement in statements
        .into_iter()
        .chain(["ANALYZE runs, events, pipelines, decisions".to_owned()])
    {
        sqlx::raw_sql(AssertSqlSafe(statement))
            .execute(&mut *conn)
            .await
            .unwrap();
    }
}

/// The shared buffers one execution of `read` touches, and its plan's node types.
async fn buffers(conn: &mut PgConnection, read: &Read) -> (u64, Vec<String>) {
    sqlx::raw_sql(AssertSqlSafe(format!(
        "PREPARE page ({}) AS {}",
        read.types, read.sql
    )))
    .execute(&mut *conn)
    .await
    .unwrap();
    let plan: Value = sqlx::query_scalar(AssertSqlSafe(format!(
        "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) EXECUTE page({})",
        read.args
    )))
    .fetch_one(&mut *conn)
    .await
    .unwrap();
    sqlx::raw_sql("DEALLOCATE page")
        .execute(&mut *conn)
        .await
        .unwrap();
    let top = &plan[0]["Plan"];
    let count = |key: &str| top[key].as_u64().unwrap_or(0);
    let mut nodes = Vec::new();
    node_types(top, &mut nodes);
    (
        count("Shared Hit Blocks") + count("Shared Read Blocks"),
        nodes,
    )
}

fn node_types(node: &Value, out: &mut Vec<String>) {
    if let Some(kind) = node["Node Type"].as_str() {
        let on = node["Relation Name"]
            .as_str()
            .or(node["Index Name"].as_str())
            .unwrap_or("");
        out.push(if on.is_empty() {
            kind.to_owned()
        } else {
            format!("{kind} on {on}")
        });
    }
    for child in node["Plans"].as_array().into_iter().flatten() {
        node_types(child, out);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_costs_the_same_with_a_hundred_times_the_rows() {
    let url = postgres::shared().url();
    let pool = crate::PostgresConfig::default()
        .max_connections(1)
        .connect(url)
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}. {}", postgres::HOW_TO_GET_ONE));
    let mut conn = pool.acquire().await.unwrap();
    let project = format!("scale-{}", uuid::Uuid::new_v4());

    append(&mut conn, &project, 1, SMALL).await;
    runs(&mut conn, &project, 0).await;
    let mut small = Vec::new();
    for read in reads(&project, SMALL) {
        small.push(buffers(&mut conn, &read).await);
    }
    append(&mut conn, &project, SMALL + 1, LARGE).await;
    runs(&mut conn, &project, LARGE - SMALL).await;
    decided_often(&mut conn, &project).await;
    let mut report = Vec::new();
    for (read, (before, _)) in reads(&project, LARGE).iter().zip(&small) {
        let (after, nodes) = buffers(&mut conn, read).await;
        report.push(format!(
            "{:<34} {before:>4} buffers at {SMALL} rows, {after:>4} at {LARGE}: {nodes:?}",
            read.name
        ));
        // O(page): an index one level deeper costs a buffer or two for each lookup, and rows
        // that no longer sit together on the heap cost up to one heap page each — nothing that
        // grows with the rows, which a hundred times more of would show.
        let bound = (before * 3 / 2).max(2 * PAGE as u64) + 10 + read.lookups * PAGE as u64;
        let flat = after <= bound;
        let scans_all = nodes.iter().any(|n| n.starts_with("Seq Scan"));
        assert!(
            flat && !scans_all,
            "{} is not O(page):\n{}",
            read.name,
            report.join("\n")
        );
    }
    println!("{}", report.join("\n"));
}
