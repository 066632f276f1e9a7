//! The Postgres catalog against raw statements on the same server, measured in the same run.
//!
//! `cargo bench -p hakiri-catalog-postgres` starts a server the way the tests do
//! (`HAKIRI_TEST_POSTGRES_URL`, a container, or `initdb`), then prints, at 1 and 16 clients, the
//! median rate over interleaved rounds and the median of per-round ratios for
//! - cursor advance/s (`checkpoint`: lease, run, version and kind checked, cursor, history and
//!   event written — one statement);
//! - run finish/s (`finish_run` with two final cursors and stats — one transaction). A finish
//!   needs a running run, so each is preceded by an untimed `begin_run`, and each raw or floor
//!   finish by an untimed insert.
//!
//! Each is measured against a floor: raw statements writing, in one round trip and with nothing
//! checked, the rows the operation must write, with what they must hold (`FLOOR_SCHEMA`). An
//! advance changes its cursor and appends a history entry and an event (invariant 7 in
//! `docs/guarantees.md`). The goals are on hakiri/floor: advance
//! ≥ 0.95 with one client and ≥ 0.90 with 16, finish ≥ 0.90. Beside them, both against a raw
//! guarded single-row `UPDATE … WHERE id = $1 AND epoch = $2` (advance) or `BEGIN; INSERT; guarded
//! UPDATE; COMMIT` (finish): `floor/raw` is the best any catalog keeping that history could reach.
//! And against a *fenced floor*: the floor's statements written only while the client's lease
//! holds, checked under a lock on the pipeline's row as a single-writer catalog must check every
//! write. `hakiri/fenced floor` is what Hakiri costs beyond the fence.
//!
//! Both sides go through the same driver and pool against the same server; every client has its
//! own pipeline (its own row on the raw side). The disk switches between a fast and a slow mode,
//! so the sides alternate in small batches and the fsync latency is printed before and after.

// A benchmark binary, not an API.
#![allow(missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use hakiri_catalog_postgres::{PgPool, PostgresCatalog, PostgresConfig};
use hakiri_core::{
    BeginRun, Catalog, CatalogExt, CursorKind, CursorValue, FinishRun, Lease, ProjectId, RunId,
    StreamName, StreamStats, Trigger,
};
use hakiri_test_kit::bench::median;
use hakiri_test_kit::{disk, fixtures, postgres};
use serde_json::json;
use sqlx::Row;
use uuid::Uuid;

/// The floor's project: as long as the catalog's in this benchmark.
const FLOOR_PROJECT: &str = "bench-floor-project-0000000000";

/// Rounds: the full measurement under `cargo bench`; under `cargo test --all-targets` (which
/// runs bench targets without `--bench`) one round of small batches, a smoke run of the same code.
fn rounds() -> usize {
    if full() {
        12
    } else {
        1
    }
}

fn full() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// The floor's schema: the catalog's tables cut to the rows, columns and indexes an advance and a
/// finish must write — every row keyed by project (one database serves many projects), a cursor
/// with who wrote it, when, under which run and epoch, events with their time and actor, a cursor
/// write's event carrying its history entry (ADR 0038), a run, the pipeline's running run. The
/// runs keep the catalog's three listing indexes: each is what keeps one of `list_runs`' queries
/// O(page) (`src/pages_at_scale.rs`), and each is partial as the catalog's are (ADR 0043). Left
/// out, because a layout could do without them: the pipeline's document beside its lease, the
/// event log's numbering, the cursor count.
const FLOOR_SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS floor_pipelines (project text COLLATE \"C\", \
     id text COLLATE \"C\", running_run uuid, lease_epoch bigint, lease_holder text COLLATE \"C\", \
     lease_expires_at bigint, PRIMARY KEY (project, id)) WITH (fillfactor = 80)",
    "CREATE TABLE IF NOT EXISTS floor_runs (project text COLLATE \"C\", id uuid, \
     pipeline text COLLATE \"C\" NOT NULL, status text COLLATE \"C\" NOT NULL, body json NOT NULL, \
     PRIMARY KEY (project, id))",
    "CREATE INDEX IF NOT EXISTS floor_runs_by_pipeline ON floor_runs (project, pipeline, id) \
     WHERE status <> ''",
    "CREATE INDEX IF NOT EXISTS floor_runs_by_status ON floor_runs (project, status, id) \
     WHERE status <> ''",
    "CREATE INDEX IF NOT EXISTS floor_runs_by_pipeline_status ON floor_runs \
     (project, pipeline, status, id) WHERE status <> ''",
    "CREATE TABLE IF NOT EXISTS floor_cursors (project text COLLATE \"C\", \
     pipeline text COLLATE \"C\", stream text COLLATE \"C\", version bigint NOT NULL, \
     value json NOT NULL, run uuid, epoch bigint, updated_by json NOT NULL, \
     updated_at bigint NOT NULL, PRIMARY KEY (project, pipeline, stream)) \
     WITH (fillfactor = 70)",
    "CREATE TABLE IF NOT EXISTS floor_events (id bigint GENERATED ALWAYS AS IDENTITY, \
     project text COLLATE \"C\" NOT NULL, at bigint NOT NULL, actor json NOT NULL, \
     pipeline text COLLATE \"C\" NOT NULL, kind json NOT NULL, stream text COLLATE \"C\", \
     version bigint, history json)",
    "CREATE INDEX IF NOT EXISTS floor_events_by_id ON floor_events (project, id)",
    "CREATE UNIQUE INDEX IF NOT EXISTS floor_events_history ON floor_events \
     (project, pipeline, stream, version) WHERE stream IS NOT NULL",
];

/// A cursor history entry, an actor, an event's kind and a finished run as the catalog stores
/// them.
const HISTORY_BODY: &str = r#"{"at":"2025-11-22T08:26:40.000Z","version":1,"value":12345,"change":"checkpoint","run":"019aa7f2-3c1e-7000-8000-000000000001","epoch":1,"by":{"holder":"bench"}}"#;
const ACTOR: &str = r#"{"holder":"bench"}"#;
const KIND: &str = r#"{"type":"cursor_advanced","stream":"s","version":1}"#;
const RUN_BODY: &str = r#"{"finished_at":"2025-11-22T08:26:40.100Z","id":"019aa7f2-3c1e-7000-8000-000000000001","pipeline":"p0","epoch":1,"holder":"bench","trigger":"manual","attempt":1,"status":"succeeded","started_at":"2025-11-22T08:26:40.000Z","stats":{"s":{"records":100,"bytes":6400}},"error":null,"cursors_at_start":{"s":1,"t":1},"cursors_at_end":{"s":2,"t":2}}"#;

/// The database clock in milliseconds, which cursors and events are stamped with and a lease's
/// expiry is compared with: the catalog's own expression.
macro_rules! now_ms {
    () => {
        "floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint"
    };
}

/// The floor's statements take
///
/// | param | meaning |
/// |---|---|
/// | `$1` | project |
/// | `$2` | pipeline |
/// | `$3` | the cursors' new version, and value |
/// | `$4` | the history entry, as JSON text |
/// | `$5` | the events' kind, as JSON text |
/// | `$6` | the actor, as JSON text |
/// | `$7` | the run |
/// | `$8` | the run's document, as JSON text (begin and finish) |
///
/// The cursor writes of an advance (stream `s`) and a finish (`s` and `t`): the cursor, and its
/// event carrying the history entry.
macro_rules! cursor_writes {
    ($streams:literal, $from:literal) => {
        concat!(
            "w AS (UPDATE floor_cursors SET version = $3, value = $3::text::json, run = $7, \
             epoch = 7, updated_by = $6::json, updated_at = ",
            now_ms!(),
            " ",
            $from,
            " WHERE project = $1 AND pipeline = $2 AND stream IN ",
            $streams,
            " RETURNING stream, version, updated_at), \
             e AS (INSERT INTO floor_events (project, at, actor, pipeline, kind, stream, version, \
               history) \
             SELECT $1, w.updated_at, $6::json, $2, $5::json, w.stream, w.version, $4::json FROM w"
        )
    };
}

/// The floor of an advance, in one round trip: the cursor, and its event carrying its history
/// entry.
const FLOOR_ADVANCE: &str = concat!(
    "WITH ",
    cursor_writes!("('s')", ""),
    ") SELECT count(*) FROM w"
);

/// The untimed counterpart of `begin_run`: the run, the pipeline's running run, an event.
const FLOOR_BEGIN: &str = concat!(
    "WITH r AS (INSERT INTO floor_runs VALUES ($1, $7, $2, 'running', $8::json)), \
     p AS (UPDATE floor_pipelines SET running_run = $7 WHERE project = $1 AND id = $2), \
     e AS (INSERT INTO floor_events (project, at, actor, pipeline, kind) \
       VALUES ($1, ",
    now_ms!(),
    ", $6::json, $2, $5::json)) SELECT 1"
);

/// The rest of a finish after its cursor writes: the finish event, the run's status and
/// document, the pipeline's running run.
macro_rules! finish_writes {
    ($from:literal) => {
        concat!(
            " UNION ALL SELECT $1, ",
            now_ms!(),
            ", $6::json, $2, $5::json, NULL, NULL, NULL ",
            $from,
            "), \
             r AS (UPDATE floor_runs SET status = 'succeeded', body = $8::json ",
            $from,
            " WHERE project = $1 AND id = $7 RETURNING id), \
             p AS (UPDATE floor_pipelines SET running_run = NULL ",
            $from,
            " WHERE project = $1 AND id = $2) \
             SELECT count(*) FROM r"
        )
    };
}

/// The floor of a finish, in one round trip: two cursor writes (a cursor and an event carrying the
/// history entry each), the finish event, the run's status and document, the pipeline's running
/// run.
const FLOOR_FINISH: &str = concat!(
    "WITH ",
    cursor_writes!("('s', 't')", ""),
    finish_writes!("")
);

/// [`FLOOR_ADVANCE`] fenced: it writes only while the pipeline's lease is the client's (epoch,
/// holder, expiry by the database clock), read under a share lock on the pipeline's row so that
/// no new lease can commit between the check and the write — the check every write of a single
/// writer needs, and the least that makes it hold.
const FENCED_ADVANCE: &str = concat!(
    "WITH ok AS MATERIALIZED (SELECT 1 FROM floor_pipelines WHERE project = $1 AND id = $2 \
     AND lease_epoch = 7 AND lease_holder = 'bench' AND lease_expires_at > ",
    now_ms!(),
    " FOR SHARE), ",
    cursor_writes!("('s')", "FROM ok"),
    ") SELECT count(*) FROM w"
);

/// [`FLOOR_FINISH`] fenced: it writes only while the lease is the client's and the run its
/// pipeline's running run, with the pipeline's row and its cursors' rows locked first, as a
/// finish that writes several cursors at once must.
const FENCED_FINISH: &str = concat!(
    "WITH l AS MATERIALIZED (SELECT id FROM floor_pipelines WHERE project = $1 AND id = $2 \
     AND lease_epoch = 7 AND lease_holder = 'bench' AND running_run = $7 AND lease_expires_at > ",
    now_ms!(),
    " FOR UPDATE), \
     c AS MATERIALIZED (SELECT stream FROM floor_cursors WHERE project = $1 \
       AND pipeline = (SELECT id FROM l) FOR UPDATE), \
     ok AS MATERIALIZED (SELECT 1 FROM l, (SELECT count(*) FROM c) AS locked), ",
    cursor_writes!("('s', 't')", "FROM ok"),
    finish_writes!("FROM ok")
);

/// Operations per client per batch.
const BATCH: [(usize, usize); 2] = [(1, 150), (16, 25)];

/// Operations per client per batch for this run (see [`rounds`]).
fn batches() -> [(usize, usize); 2] {
    if full() {
        BATCH
    } else {
        BATCH.map(|(clients, _)| (clients, 4))
    }
}

/// One client of one measure: its pipeline (or raw row) and state.
struct Client {
    catalog: Arc<PostgresCatalog>,
    pool: PgPool,
    id: i32,
    lease: Lease,
    run: RunId,
    next: u64,
}

impl Client {
    async fn new(catalog: Arc<PostgresCatalog>, pool: PgPool, id: i32, name: &str) -> Self {
        let spec = fixtures::spec(name, CursorKind::Monotonic);
        let (lease, run) = fixtures::begun(
            catalog.as_ref(),
            spec,
            "bench",
            Duration::from_secs(24 * 3600),
        )
        .await;
        let run = run.id;
        sqlx::query("INSERT INTO bench_raw (id, epoch, v) VALUES ($1, 7, 0)")
            .bind(id)
            .execute(&pool)
            .await
            .unwrap();
        sqlx::query(
            "WITH p AS (INSERT INTO floor_pipelines VALUES ($1, $2, NULL, 7, 'bench', 9e15)) \
             INSERT INTO floor_cursors VALUES ($1, $2, 's', 0, '0', NULL, NULL, '{}', 0), \
               ($1, $2, 't', 0, '0', NULL, NULL, '{}', 0)",
        )
        .bind(FLOOR_PROJECT)
        .bind(format!("p{id}"))
        .execute(&pool)
        .await
        .unwrap();
        Self {
            catalog,
            pool,
            id,
            lease,
            run,
            next: 0,
        }
    }

    /// A floor statement with its parameters, for version `v` of the cursors and `run`.
    fn floor(
        &self,
        sql: &'static str,
        v: u64,
        run: Uuid,
    ) -> sqlx::query::Query<'static, sqlx::Postgres, sqlx::postgres::PgArguments> {
        sqlx::query(sql)
            .bind(FLOOR_PROJECT)
            .bind(format!("p{}", self.id))
            .bind(i64::try_from(v).unwrap())
            .bind(HISTORY_BODY)
            .bind(KIND)
            .bind(ACTOR)
            .bind(run)
            .bind(RUN_BODY)
    }

    /// `n` operations of `what`; returns the time spent in the timed part.
    async fn work(&mut self, what: Measure, n: usize) -> Duration {
        let stream = StreamName::new("s").unwrap();
        let mut timed = Duration::ZERO;
        for _ in 0..n {
            self.next += 1;
            let v = self.next;
            match what {
                Measure::Advance => {
                    let t = Instant::now();
                    self.catalog
                        .advance_to(
                            &self.lease,
                            self.run,
                            &stream,
                            CursorValue::new(json!(v)).unwrap(),
                        )
                        .await
                        .unwrap();
                    timed += t.elapsed();
                }
                Measure::RawAdvance => {
                    let t = Instant::now();
                    let done =
                        sqlx::query("UPDATE bench_raw SET v = $3 WHERE id = $1 AND epoch = $2")
                            .bind(self.id)
                            .bind(7i64)
                            .bind(i64::try_from(v).unwrap())
                            .execute(&self.pool)
                            .await
                            .unwrap();
                    assert_eq!(done.rows_affected(), 1);
                    timed += t.elapsed();
                }
                Measure::FloorAdvance | Measure::FencedAdvance => {
                    let sql = if what == Measure::FloorAdvance {
                        FLOOR_ADVANCE
                    } else {
                        FENCED_ADVANCE
                    };
                    let t = Instant::now();
                    let written: i64 = self
                        .floor(
                            sql,
                            v,
                            Uuid::from_u64_pair(self.id.unsigned_abs().into(), 0),
                        )
                        .fetch_one(&self.pool)
                        .await
                        .unwrap()
                        .get(0);
                    assert_eq!(written, 1);
                    timed += t.elapsed();
                }
                Measure::FloorFinish | Measure::FencedFinish => {
                    let sql = if what == Measure::FloorFinish {
                        FLOOR_FINISH
                    } else {
                        FENCED_FINISH
                    };
                    let run = Uuid::from_u64_pair(self.id.unsigned_abs().into(), v);
                    // The counterpart of the untimed begin_run.
                    self.floor(FLOOR_BEGIN, v, run)
                        .execute(&self.pool)
                        .await
                        .unwrap();
                    let t = Instant::now();
                    let written: i64 = self
                        .floor(sql, v, run)
                        .fetch_one(&self.pool)
                        .await
                        .unwrap()
                        .get(0);
                    assert_eq!(written, 1);
                    timed += t.elapsed();
                }
                Measure::Finish => {
                    let finish = FinishRun::succeeded()
                        .with_cursor(stream.clone(), CursorValue::new(json!(v)).unwrap())
                        .with_cursor(
                            StreamName::new("t").unwrap(),
                            CursorValue::new(json!(v)).unwrap(),
                        )
                        .with_stats(stream.clone(), StreamStats::new(v, v * 64));
                    let t = Instant::now();
                    self.catalog
                        .finish_run(&self.lease, self.run, finish)
                        .await
                        .unwrap();
                    timed += t.elapsed();
                    self.run = self
                        .catalog
                        .begin_run(&self.lease, BeginRun::new(Trigger::Manual))
                        .await
                        .unwrap()
                        .id;
                }
                Measure::RawFinish => {
                    let t = Instant::now();
                    let mut tx = self.pool.begin().await.unwrap();
                    sqlx::query(
                        "INSERT INTO bench_raw_log (client, v, body) VALUES ($1, $2, $3::json)",
                    )
                    .bind(self.id)
                    .bind(i64::try_from(v).unwrap())
                    .bind("{\"status\":\"succeeded\"}")
                    .execute(&mut *tx)
                    .await
                    .unwrap();
                    let done =
                        sqlx::query("UPDATE bench_raw SET v = $3 WHERE id = $1 AND epoch = $2")
                            .bind(self.id)
                            .bind(7i64)
                            .bind(i64::try_from(v).unwrap())
                            .execute(&mut *tx)
                            .await
                            .unwrap();
                    assert_eq!(done.rows_affected(), 1);
                    tx.commit().await.unwrap();
                    timed += t.elapsed();
                    // The counterpart of the untimed begin_run: one autocommitted insert.
                    sqlx::query(
                        "INSERT INTO bench_raw_log (client, v, body) VALUES ($1, $2, $3::json)",
                    )
                    .bind(self.id)
                    .bind(0i64)
                    .bind("{\"status\":\"running\"}")
                    .execute(&self.pool)
                    .await
                    .unwrap();
                }
            }
        }
        timed
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Measure {
    Advance,
    RawAdvance,
    FloorAdvance,
    FencedAdvance,
    Finish,
    RawFinish,
    FloorFinish,
    FencedFinish,
}

/// Runs `n` operations on every client at once; returns operations per second (the sum over
/// clients of each one's rate over its timed part).
async fn batch(clients: &mut Vec<Client>, what: Measure, n: usize) -> f64 {
    let handles: Vec<_> = clients
        .drain(..)
        .map(|mut c| {
            tokio::spawn(async move {
                let timed = c.work(what, n).await;
                (c, timed)
            })
        })
        .collect();
    let mut rate = 0.0;
    for handle in handles {
        let (client, timed) = handle.await.unwrap();
        rate += n as f64 / timed.as_secs_f64();
        clients.push(client);
    }
    rate
}

/// The measures of one operation: Hakiri's, the raw baseline, the floor and the fenced floor.
#[derive(Debug, Clone, Copy)]
struct Sides {
    ours: Measure,
    raw: Measure,
    floor: Measure,
    fenced: Measure,
}

const ADVANCE: Sides = Sides {
    ours: Measure::Advance,
    raw: Measure::RawAdvance,
    floor: Measure::FloorAdvance,
    fenced: Measure::FencedAdvance,
};

const FINISH: Sides = Sides {
    ours: Measure::Finish,
    raw: Measure::RawFinish,
    floor: Measure::FloorFinish,
    fenced: Measure::FencedFinish,
};

/// hakiri/floor goals: advance ≥ 0.95 for one client and ≥ 0.90 for 16, finish ≥ 0.90.
fn goal(sides: &Sides, clients: usize) -> f64 {
    match (sides.ours, clients) {
        (Measure::Advance, 1) => 0.95,
        _ => 0.90,
    }
}

async fn measure(pool: &PgPool, clients_n: usize, per_client: usize, sides: Sides, label: &str) {
    let project = ProjectId::new(format!(
        "bench-{}-{clients_n}-{}",
        label.replace(' ', "-"),
        std::process::id()
    ))
    .unwrap();
    let catalog = Arc::new(PostgresCatalog::new(pool.clone(), project));
    sqlx::query("TRUNCATE bench_raw, floor_pipelines, floor_cursors, floor_events, floor_runs")
        .execute(pool)
        .await
        .unwrap();
    let mut clients = Vec::new();
    for i in 0..clients_n {
        let id = i32::try_from(i).unwrap();
        clients.push(Client::new(catalog.clone(), pool.clone(), id, &format!("p{i}")).await);
    }
    let order = [sides.ours, sides.raw, sides.floor, sides.fenced];
    // Warm up every side (connections, prepared statements, caches).
    for what in order {
        batch(&mut clients, what, per_client / 2 + 1).await;
    }
    let (mut hakiri, mut base, mut floor) = (Vec::new(), Vec::new(), Vec::new());
    let (mut ratios, mut floor_ratios, mut of_floor) = (Vec::new(), Vec::new(), Vec::new());
    let mut of_fenced = Vec::new();
    let rounds = rounds();
    for round in 0..rounds {
        // Each round starts with a different side, so none always follows another.
        let mut rates = [0.0; 4];
        for k in 0..4 {
            let side = (round + k) % 4;
            rates[side] = batch(&mut clients, order[side], per_client).await;
        }
        let [h, r, f, fenced] = rates;
        hakiri.push(h);
        base.push(r);
        floor.push(f);
        ratios.push(h / r);
        floor_ratios.push(f / r);
        of_floor.push(h / f);
        of_fenced.push(h / fenced);
    }
    let (of_floor, goal) = (median(of_floor), goal(&sides, clients_n));
    let met = if of_floor >= goal { "met" } else { "NOT met" };
    println!(
        "{label:<16} {clients_n:>2} clients: hakiri {:>6.0}/s  floor {:>6.0}/s  raw {:>6.0}/s  \
         hakiri/floor {of_floor:.2} (goal ≥ {goal:.2}: {met})  hakiri/raw {:.2}x  floor/raw {:.2}x  \
         hakiri/fenced floor {:.2}",
        median(hakiri),
        median(floor),
        median(base),
        median(ratios),
        median(floor_ratios),
        median(of_fenced)
    );
}

fn main() {
    let probe = tempfile::tempdir().expect("a directory for the fdatasync probe");
    let before = disk::fdatasync_time(probe.path());
    let server = postgres::Server::start();
    postgres::migrate(server.url()).expect("migrate");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let pool = PostgresConfig::default()
            .max_connections(20)
            .connect(server.url())
            .await
            .expect("connect");
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS bench_raw (id int PRIMARY KEY, epoch bigint NOT NULL, \
             v bigint NOT NULL) WITH (fillfactor = 70)",
        )
        .execute(&pool)
        .await
        .unwrap();
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS bench_raw_log (id bigint GENERATED ALWAYS AS IDENTITY \
             PRIMARY KEY, client int NOT NULL, v bigint NOT NULL, body json NOT NULL)",
        )
        .execute(&pool)
        .await
        .unwrap();
        for statement in FLOOR_SCHEMA {
            sqlx::query(*statement).execute(&pool).await.unwrap();
        }
        println!("Postgres catalog vs the floor and raw statements, same server, same driver");
        println!(
            "floor: raw statements writing the rows the operation must write, with what they must \
             hold (cursor, history, events, run; keyed by project), one round trip, nothing checked"
        );
        println!(
            "fenced floor: the floor, written only while the client's lease holds, under a lock \
             on the pipeline's row"
        );
        for (clients, per_client) in batches() {
            measure(&pool, clients, per_client, ADVANCE, "cursor advance").await;
        }
        for (clients, per_client) in batches() {
            measure(&pool, clients, per_client, FINISH, "run finish").await;
        }
        pool.close().await;
    });
    let after = disk::fdatasync_time(probe.path());
    println!(
        "fsync (8 KiB write + fdatasync): {before:.2?} ({}) before, {after:.2?} ({}) after",
        disk::mode(before),
        disk::mode(after)
    );
    drop(server);
}
