//! The Durable Object: one project's catalog on the object's SQLite storage.
//!
//! The runtime delivers one request at a time and the store makes no `await` between its
//! statements, so an operation never interleaves with another. Atomicity comes from
//! `ctx.storage.transactionSync` (ADR 0008): the DO rejects SQL `BEGIN`/`SAVEPOINT`, and a
//! finish (run, cursors, schema decisions, events) is many statements.
//!
//! The object's endpoints, behind the Worker (which authenticates): `/rpc` (one protocol
//! request), `/ping`, `/floor` (tests only: the benchmark's floor), `/plan` (the reconciler's plan
//! at the object's clock) and `/events` (the event log as Server-Sent Events, `feed.rs`).

// `#[durable_object]` generates the class's JavaScript bindings without docs.
#![allow(missing_docs)]

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use hakiri_core::{Error, ProjectId, Result, Timestamp};
use hakiri_protocol::{decode_request, Access, Reply};
use js_sys::{Function, Reflect};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use worker::{
    durable_object, DurableObject, Env, Request, Response, SqlStorage, SqlStorageValue, State,
};

use super::feed::Feeds;
use super::reply::{json, reply};
use super::{test_hooks, FAIL_AT_HEADER, PROJECT_HEADER, STATEMENTS_HEADER};
use crate::store::exec::params;
use crate::store::{self, Atomic, CursorMemo, Exec, FailAt, Row, SqlValue};

/// The largest integer a JavaScript number holds exactly (2^53 − 1).
const MAX_SAFE_INTEGER: i64 = (1 << 53) - 1;

/// The catalog of one project (the object `idFromName(project)` of namespace `HAKIRI_CATALOG`).
#[durable_object]
pub struct HakiriCatalog {
    sql: DoSql,
    env: Env,
    /// The outcome of the migrations run by the constructor; a failure is answered to every
    /// request (and the migrations retried) instead of panicking, which would kill the isolate.
    migrated: RefCell<Result<()>>,
    /// The project this object holds, recorded in its database by the first request.
    project: RefCell<Option<ProjectId>>,
    /// The open event streams, woken after every committed write.
    feeds: Feeds,
    /// Whether the benchmark floors' scratch tables exist (tests only).
    floor_table: Cell<bool>,
    /// The cursors this object last wrote or read, which its next checkpoints are planned from
    /// (ADR 0041), for as long as the object lives.
    memo: Rc<RefCell<CursorMemo>>,
}

impl DurableObject for HakiriCatalog {
    fn new(state: State, env: Env) -> Self {
        let storage = state.storage();
        let mut sql = DoSql {
            sql: storage.sql(),
            storage: AsRef::<JsValue>::as_ref(storage.as_raw()).clone(),
        };
        let migrated = store::migrate(&mut sql, now());
        Self {
            sql,
            env,
            migrated: RefCell::new(migrated),
            project: RefCell::new(None),
            feeds: Feeds::default(),
            floor_table: Cell::new(false),
            memo: Rc::default(),
        }
    }

    async fn fetch(&self, mut req: Request) -> worker::Result<Response> {
        let project = req.headers().get(PROJECT_HEADER).ok().flatten();
        match req.path().as_str() {
            // A round trip and nothing else: no storage, no migration check.
            "/ping" => return Response::ok("pong"),
            "/floor" if test_hooks(&self.env) => return self.floor(&mut req).await,
            "/plan" => {
                return match self.plan(project.as_deref()) {
                    Ok(plan) => json(&plan),
                    Err(e) => reply(&Reply::Err(e), None),
                }
            }
            "/events" => {
                return match self.ready(project.as_deref()) {
                    Ok(()) => self.feeds.open(&req, &self.sql, test_hooks(&self.env)),
                    Err(e) => reply(&Reply::Err(e), None),
                }
            }
            _ => {}
        }
        let body = req.bytes().await;
        let fail_at = test_hooks(&self.env)
            .then(|| req.headers().get(FAIL_AT_HEADER).ok().flatten())
            .flatten();
        let (result, statements) = match body {
            Ok(body) => self.serve(project.as_deref(), &body, fail_at.as_deref()),
            Err(e) => (
                Err(Error::invalid(format!("cannot read the request body: {e}"))),
                None,
            ),
        };
        let mut response = reply(&Reply::from(result), None)?;
        if let Some(n) = statements {
            response
                .headers_mut()
                .set(STATEMENTS_HEADER, &n.to_string())?;
        }
        Ok(response)
    }
}

/// The object's clock: the catalog's authoritative time (invariant 9 in `docs/guarantees.md`).
fn now() -> Timestamp {
    // Whole milliseconds since the epoch, exact in an f64 for the next 285,000 years.
    Timestamp::from_millis(js_sys::Date::now() as i64)
}

/// A write to the benchmark's floor row: its new value if it is at `version`.
#[derive(serde::Deserialize)]
struct FloorWrite {
    value: serde_json::Value,
    version: i64,
    /// Write the rows an advance must write in the catalog's layout, in one atomic unit: the
    /// cursor, and the event carrying its history entry (ADR 0038), with the event log's indexes.
    #[serde(default)]
    layout: bool,
}

/// The benchmark floors' scratch tables: one row, and a cursor and event log laid out as the
/// catalog's (`store::migrations`), with the indexes its reads need.
const FLOOR_TABLES: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS bench_floor \
     (id INTEGER PRIMARY KEY, version INTEGER NOT NULL, value TEXT NOT NULL)",
    "INSERT OR IGNORE INTO bench_floor VALUES (1, 0, 'null')",
    "CREATE TABLE IF NOT EXISTS bench_cursors (pipeline TEXT, stream TEXT, \
     version INTEGER NOT NULL, value TEXT NOT NULL, updated_at INTEGER NOT NULL, \
     PRIMARY KEY (pipeline, stream)) WITHOUT ROWID",
    "INSERT OR IGNORE INTO bench_cursors VALUES ('p', 's', 0, 'null', 0)",
    "CREATE TABLE IF NOT EXISTS bench_events (seq INTEGER PRIMARY KEY, at INTEGER NOT NULL, \
     actor TEXT NOT NULL, pipeline TEXT NOT NULL, kind TEXT NOT NULL, stream TEXT, \
     version INTEGER, history TEXT)",
    "CREATE INDEX IF NOT EXISTS bench_events_by_pipeline ON bench_events (pipeline, seq)",
    "CREATE UNIQUE INDEX IF NOT EXISTS bench_events_history \
     ON bench_events (pipeline, stream, version) WHERE stream IS NOT NULL",
];

impl HakiriCatalog {
    /// The Worker benchmark's floor (tests only): one guarded `UPDATE` of a scratch row through
    /// the SQL API, the least a cursor advance could write, with no history, event, lease or run.
    /// With `layout`, the rows an advance writes in the catalog's layout instead ([`FloorWrite`]).
    /// 409 if the row is not at its version.
    async fn floor(&self, req: &mut Request) -> worker::Result<Response> {
        let write: FloorWrite = match serde_json::from_slice(&req.bytes().await?) {
            Ok(write) => write,
            Err(e) => return Response::error(format!("not a floor write: {e}"), 400),
        };
        if !self.floor_table.replace(true) {
            for statement in FLOOR_TABLES {
                self.sql.sql.exec(statement, None)?;
            }
        }
        let moved = if write.layout {
            self.layout_floor(&write)
                .map_err(|e| worker::Error::RustError(e.to_string()))?
        } else {
            let written = self
                .sql
                .clone()
                .write(
                    "UPDATE bench_floor SET version = version + 1, value = ?1 \
                     WHERE id = 1 AND version = ?2",
                    params![write.value.to_string(), write.version],
                )
                .map_err(|e| worker::Error::RustError(e.to_string()))?;
            written == 1
        };
        if moved {
            Response::ok((write.version + 1).to_string())
        } else {
            Response::error(
                format!("the floor row is not at version {}", write.version),
                409,
            )
        }
    }

    /// The layout floor: the cursor moved from `write.version` and its event appended, in one
    /// `transactionSync`, with values shaped like the catalog's; whether the cursor moved.
    fn layout_floor(&self, write: &FloorWrite) -> Result<bool> {
        let (value, version, at) = (
            write.value.to_string(),
            write.version + 1,
            now().as_millis(),
        );
        self.sql.clone().atomic(move |exec| {
            let moved = exec.write(
                "UPDATE bench_cursors SET version = ?, value = ?, updated_at = ? \
                 WHERE pipeline = 'p' AND stream = 's' AND version = ?",
                params![version, value.as_str(), at, version - 1],
            )?;
            if moved == 0 {
                return Ok(false);
            }
            let history = format!(
                r#"{{"version":{version},"value":{value},"change":"checkpoint","run":"019aa7f2-3c1e-7000-8000-000000000001","epoch":1,"by":{{"holder":"bench"}},"at":{at}}}"#
            );
            exec.execute(
                "INSERT INTO bench_events (at, actor, pipeline, kind, stream, version, history) \
                 VALUES (?, '{\"holder\":\"bench\"}', 'p', ?, 's', ?, ?)",
                params![
                    at,
                    format!(r#"{{"cursor_advanced":{{"stream":"s","version":{version}}}}}"#),
                    version,
                    history
                ],
            )?;
            Ok(true)
        })
    }

    /// The reconciler's plan at the object's clock, over one snapshot of the statuses.
    fn plan(&self, project: Option<&str>) -> Result<hakiri_core::plan::Plan> {
        self.ready(project)?;
        let now = now();
        self.sql.clone().atomic(move |exec| store::plan(exec, now))
    }

    /// Runs one request body; with a fault injected, also says how many statements ran. A write
    /// that commits wakes the event streams.
    fn serve(
        &self,
        project: Option<&str>,
        body: &[u8],
        fail_at: Option<&str>,
    ) -> (Result<hakiri_protocol::Response>, Option<usize>) {
        if let Err(e) = self.ready(project) {
            return (Err(e), None);
        }
        let request = match decode_request(body) {
            Ok(request) => request,
            Err(e) => return (Err(e), None),
        };
        let wrote = request.access() != Access::Read;
        let (result, statements) = self.run(request, fail_at);
        if wrote && result.is_ok() {
            self.feeds.wake();
        }
        (result, statements)
    }

    /// Runs one request in an atomic unit, failing at a statement if asked.
    fn run(
        &self,
        request: hakiri_protocol::Request,
        fail_at: Option<&str>,
    ) -> (Result<hakiri_protocol::Response>, Option<usize>) {
        let now = now();
        let mut sql = self.sql.clone();
        let memo = self.memo.clone();
        match fail_at {
            None => (
                sql.atomic(move |exec| store::handle(exec, &mut memo.borrow_mut(), request, now)),
                None,
            ),
            Some(n) => {
                let Ok(n) = n.trim().parse::<usize>() else {
                    return (
                        Err(Error::invalid(format!(
                            "{FAIL_AT_HEADER} must be a statement number, not {n:?}"
                        ))),
                        None,
                    );
                };
                let executed = Rc::new(RefCell::new(0));
                let count = executed.clone();
                let result = sql.atomic(move |exec| {
                    let mut failing = FailAt::new(exec, n);
                    let result = store::handle(&mut failing, &mut memo.borrow_mut(), request, now);
                    *count.borrow_mut() = failing.executed();
                    result
                });
                let executed = *executed.borrow();
                (result, Some(executed))
            }
        }
    }

    /// Migrations done and the project bound, or the reason the object cannot serve.
    fn ready(&self, project: Option<&str>) -> Result<()> {
        if self.migrated.borrow().is_err() {
            let retried = store::migrate(&mut self.sql.clone(), now());
            *self.migrated.borrow_mut() = retried;
        }
        self.migrated.borrow().clone()?;
        let project = ProjectId::new(project.unwrap_or_default()).map_err(|e| {
            Error::invalid(format!(
                "the catalog object needs its project in {PROJECT_HEADER}: {e}"
            ))
        })?;
        let mut bound = self.project.borrow_mut();
        match bound.as_ref() {
            Some(p) if *p == project => Ok(()),
            Some(p) => Err(Error::invalid(format!(
                "this catalog object holds project {p}, not {project}"
            ))),
            None => {
                let p = project.clone();
                self.sql
                    .clone()
                    .atomic(move |exec| store::bind_project(exec, &p))?;
                *bound = Some(project);
                Ok(())
            }
        }
    }
}

/// The object's SQL storage as the store's [`Exec`]; cheap to clone (two JS handles).
#[derive(Clone)]
pub(super) struct DoSql {
    sql: SqlStorage,
    /// `ctx.storage`, for `transactionSync`, which workers-rs does not wrap.
    storage: JsValue,
}

/// The one conversion of the runtime's errors into catalog errors.
fn convert(error: worker::Error) -> Error {
    Error::Backend(format!("durable object storage: {error}"))
}

fn js_message(value: &JsValue) -> String {
    value
        .dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.message()))
        .or_else(|| value.as_string())
        .unwrap_or_else(|| format!("{value:?}"))
}

fn to_js(value: &SqlValue) -> SqlStorageValue {
    match value {
        SqlValue::Null => SqlStorageValue::Null,
        SqlValue::Integer(v) if (-MAX_SAFE_INTEGER..=MAX_SAFE_INTEGER).contains(v) => {
            SqlStorageValue::Integer(*v)
        }
        // Beyond 2^53 a JavaScript number would round it, and the DO refuses BigInt bindings.
        // As decimal text it stays exact where SQLite applies numeric affinity: compared with,
        // or stored in, an INTEGER column — the only places the store binds such values (the
        // open upper bound of a history page). Reading one back fails loudly in `from_js`.
        SqlValue::Integer(v) => SqlStorageValue::String(v.to_string()),
        SqlValue::Real(v) => SqlStorageValue::Float(*v),
        SqlValue::Text(v) => SqlStorageValue::String(v.clone()),
    }
}

fn from_js(value: SqlStorageValue) -> Result<SqlValue> {
    Ok(match value {
        SqlStorageValue::Null => SqlValue::Null,
        SqlStorageValue::Integer(v) => SqlValue::Integer(v),
        SqlStorageValue::Boolean(v) => SqlValue::Integer(i64::from(v)),
        // Numbers arrive as JavaScript numbers: an integral one within 2^53 comes back as an
        // integer (workers-rs returns it as `Integer`); anything else stays REAL, so an INTEGER
        // column beyond 2^53 fails `Row::int` instead of being read rounded.
        SqlStorageValue::Float(v) => SqlValue::Real(v),
        SqlStorageValue::String(v) => SqlValue::Text(v),
        SqlStorageValue::Blob(_) => {
            return Err(Error::Backend(
                "unexpected BLOB column in the catalog".into(),
            ))
        }
    })
}

impl DoSql {
    /// One `sql.exec` call with `params` bound.
    fn exec(&self, sql: &str, params: &[SqlValue]) -> Result<worker::SqlCursor> {
        let bindings = params.iter().map(to_js).collect::<Vec<_>>();
        self.sql.exec(sql, bindings).map_err(convert)
    }
}

impl Exec for DoSql {
    fn write(&mut self, sql: &str, params: &[SqlValue]) -> Result<u64> {
        Ok(self.exec(sql, params)?.rows_written() as u64)
    }

    fn query(&mut self, sql: &str, params: &[SqlValue]) -> Result<Vec<Row>> {
        let cursor = self.exec(sql, params)?;
        cursor
            .raw()
            .map(|row| {
                let row = row.map_err(convert)?;
                Ok(Row(row
                    .into_iter()
                    .map(from_js)
                    .collect::<Result<Vec<_>>>()?))
            })
            .collect()
    }
}

impl Atomic for DoSql {
    /// `ctx.storage.transactionSync(unit)`: the unit's statements commit together when it
    /// returns; when it throws — here, when it returns an error — they all roll back.
    fn atomic<T: 'static>(
        &mut self,
        unit: impl FnOnce(&mut Self) -> Result<T> + 'static,
    ) -> Result<T> {
        let outcome: Rc<RefCell<Option<Result<T>>>> = Rc::new(RefCell::new(None));
        let slot = outcome.clone();
        let mut exec = self.clone();
        let callback = Closure::once(move || -> std::result::Result<JsValue, JsValue> {
            let result = unit(&mut exec);
            let failed = result.is_err();
            *slot.borrow_mut() = Some(result);
            if failed {
                // Throwing is how the callback asks for a rollback; the error itself travels
                // in `outcome`, typed.
                Err(JsValue::from_str("hakiri: the unit failed; rolling back"))
            } else {
                Ok(JsValue::UNDEFINED)
            }
        });
        let transaction_sync = Reflect::get(&self.storage, &JsValue::from_str("transactionSync"))
            .ok()
            .and_then(|f| f.dyn_into::<Function>().ok())
            .ok_or_else(|| {
                Error::Backend(
                    "this runtime has no storage.transactionSync (a SQLite-backed Durable Object is required: new_sqlite_classes)".into(),
                )
            })?;
        let called = transaction_sync.call1(&self.storage, callback.as_ref().unchecked_ref());
        drop(callback);
        let outcome = outcome.borrow_mut().take();
        match (called, outcome) {
            (Ok(_), Some(result)) => result,
            // The unit failed and everything it wrote is rolled back.
            (Err(_), Some(Err(e))) => Err(e),
            (Err(e), Some(Ok(_))) => Err(Error::Unavailable(format!(
                "the durable object could not commit: {}",
                js_message(&e)
            ))),
            (Err(e), None) => Err(Error::Backend(format!(
                "storage.transactionSync failed before running the unit: {}",
                js_message(&e)
            ))),
            (Ok(_), None) => Err(Error::Backend(
                "storage.transactionSync returned without running the unit".into(),
            )),
        }
    }
}
