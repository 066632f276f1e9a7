//! The embedded host: the store on a local SQLite file (the CLI's default catalog).
//!
//! One writer thread owns the write connection, mirroring the Durable Object's
//! one-request-at-a-time model. Writes that arrive while a commit is in flight queue up and are
//! **group-committed**: the thread opens one `BEGIN IMMEDIATE` transaction for the whole queue, so
//! they share one fsync, and each request stays all-or-nothing (see `Writer::commit`). A third
//! thread checkpoints the write-ahead log, off the writer's path (ADR 0039). Other processes on
//! the same file (an operator CLI beside a running reconciler) serialise on SQLite's write lock;
//! every read the store makes before a write happens inside that lock, so fencing is checked in
//! the same transaction as the write.
//!
//! Reads never take the write lock: a reader thread answers them on a second, read-only
//! connection, each in a deferred transaction (one consistent WAL snapshot), and opening a file
//! whose schema is current and whose project is bound only reads it. So a process stalled inside
//! a write transaction (stopped, paused by a debugger, its VM frozen) delays other processes'
//! *writes* by at most their busy timeout, after which they fail `Unavailable`, and never their
//! reads: an operator can always look at a stuck catalog (ADR 0015).

use std::cell::RefCell;
use std::fmt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use async_trait::async_trait;
use hakiri_core::{Clock, Error, ProjectId, Result, SystemClock, Timestamp};
use hakiri_protocol::{Access, RemoteCatalog, Request, Response, Transport};
use rusqlite::types::{ToSqlOutput, Value as SqliteValue, ValueRef};
use rusqlite::{Connection, OpenFlags, ToSql};
use tokio::sync::oneshot;

use crate::store::{self, Atomic, CursorMemo, Exec, Row, SqlValue};

/// How hard a commit tries to survive power loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// `synchronous=FULL`: a commit is on disk when it returns (the default).
    #[default]
    Full,
    /// `synchronous=NORMAL`: several times faster; a power loss (not a process crash) may undo
    /// the last commits, never corrupt the file.
    Normal,
}

/// Settings of the embedded catalog.
#[derive(Debug, Clone)]
pub struct SqliteConfig {
    durability: Durability,
    busy_timeout: Duration,
    max_batch: usize,
    clock: Arc<dyn Clock>,
}

impl Default for SqliteConfig {
    fn default() -> Self {
        Self {
            durability: Durability::Full,
            busy_timeout: Duration::from_secs(10),
            max_batch: 256,
            clock: Arc::new(SystemClock),
        }
    }
}

impl SqliteConfig {
    /// Sets the durability.
    ///
    /// # Warning
    /// [`Durability::Normal`] may lose acknowledged commits on power loss: a pipeline could then
    /// re-read data it already checkpointed.
    #[must_use]
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// How long to wait for another process's write lock before answering `Unavailable`.
    #[must_use]
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// The most requests committed together (at least 1).
    ///
    /// # Warning
    /// 1 disables group commit: every request pays a full fsync.
    #[must_use]
    pub fn max_batch(mut self, max_batch: usize) -> Self {
        self.max_batch = max_batch.max(1);
        self
    }

    /// The catalog's clock (inject a `ManualClock` in tests).
    #[must_use]
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }
}

/// The catalog of one project on a local SQLite file: the protocol's [`RemoteCatalog`] over a
/// channel to the file's writer and reader threads.
// A struct, not an alias of `RemoteCatalog<EmbeddedTransport>`: `open` is an inherent method,
// which Rust allows only on a type of this crate.
#[derive(Debug)]
pub struct SqliteCatalog(RemoteCatalog<EmbeddedTransport>);

impl SqliteCatalog {
    /// Opens (creating if needed) the catalog database at `path` for `project`, migrating it to
    /// the current schema, and starts its writer thread.
    ///
    /// # Errors
    /// `Unavailable` if the file cannot be opened or locked in time; `InvalidArgument` if the file
    /// holds another project.
    pub fn open(path: impl AsRef<Path>, project: ProjectId, config: SqliteConfig) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let mut conn = SqliteConnection::open(&path, &config)?;
        conn.prepare(&project, config.clock.now())?;
        let reader = Reader {
            conn: SqliteConnection::open_reader(&path, &config)?,
            clock: config.clock.clone(),
        };
        // The checkpointer's connection checkpoints; the writer only when the log is long (ADR 0039).
        conn.conn
            .execute_batch(&format!(
                "PRAGMA wal_autocheckpoint = {WRITER_CHECKPOINT_PAGES};"
            ))
            .map_err(convert)?;
        let checkpointer = Checkpointer {
            conn: SqliteConnection::open(&path, &config)?,
        };
        let (ticks, tick) = mpsc::sync_channel(1);
        thread::Builder::new()
            .name(format!("hakiri-sqlite-checkpoint-{project}"))
            .spawn(move || checkpointer.run(tick))
            .map_err(|e| Error::Unavailable(format!("cannot start a catalog thread: {e}")))?;
        let writer = Writer {
            conn,
            clock: config.clock.clone(),
            max_batch: config.max_batch,
            ticks,
        };
        let transport = EmbeddedTransport {
            path,
            writer: spawn(format!("hakiri-sqlite-{project}"), move |jobs| {
                writer.run(jobs);
            })?,
            reader: spawn(format!("hakiri-sqlite-read-{project}"), move |jobs| {
                reader.run(jobs);
            })?,
        };
        Ok(Self(RemoteCatalog::new(project, transport)))
    }

    /// The transport: the database file and its threads.
    pub fn transport(&self) -> &EmbeddedTransport {
        self.0.transport()
    }
}

// Every method passes through to the protocol client over the embedded transport.
hakiri_core::forward_catalog!([] SqliteCatalog, |self| &self.0);

/// Starts a thread that serves the jobs sent to the returned sender until every sender is gone.
fn spawn(
    name: String,
    serve: impl FnOnce(mpsc::Receiver<Job>) + Send + 'static,
) -> Result<mpsc::Sender<Job>> {
    let (sender, receiver) = mpsc::channel::<Job>();
    thread::Builder::new()
        .name(name)
        .spawn(move || serve(receiver))
        .map_err(|e| Error::Unavailable(format!("cannot start a catalog thread: {e}")))?;
    Ok(sender)
}

/// Hands writes to the writer thread and reads to the reader thread of one database file.
pub struct EmbeddedTransport {
    path: PathBuf,
    writer: mpsc::Sender<Job>,
    reader: mpsc::Sender<Job>,
}

impl fmt::Debug for EmbeddedTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmbeddedTransport")
            .field("path", &self.path)
            .finish()
    }
}

impl EmbeddedTransport {
    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[async_trait]
impl Transport for EmbeddedTransport {
    async fn call(&self, request: Request) -> Result<Response> {
        let (reply, answer) = oneshot::channel();
        let gone = || Error::Unavailable("the catalog's thread has stopped".into());
        let thread = if request.access() == Access::Read {
            &self.reader
        } else {
            &self.writer
        };
        thread.send(Job { request, reply }).map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

struct Job {
    request: Request,
    reply: oneshot::Sender<Result<Response>>,
}

/// The thread that answers reads, each in a deferred transaction of its own: a consistent
/// snapshot that never waits for a writer (WAL).
struct Reader {
    conn: SqliteConnection,
    clock: Arc<dyn Clock>,
}

impl Reader {
    fn run(mut self, jobs: mpsc::Receiver<Job>) {
        // Ends when every sender is gone, closing the connection.
        while let Ok(job) = jobs.recv() {
            let (request, now) = (job.request.clone(), self.clock.now());
            let result = self
                .conn
                .with_deferred(|conn| store::handle(conn, &mut CursorMemo::new(), request, now));
            answer(job, result);
        }
    }
}

/// The thread that owns the write connection.
struct Writer {
    conn: SqliteConnection,
    clock: Arc<dyn Clock>,
    max_batch: usize,
    /// Tells the checkpointer that a commit added to the log.
    ticks: mpsc::SyncSender<()>,
}

impl Writer {
    fn run(mut self, jobs: mpsc::Receiver<Job>) {
        // What this connection wrote, for the next checkpoints (ADR 0041). Shared with the
        // `'static` units of an isolated batch, on this thread only.
        let memo = Rc::new(RefCell::new(CursorMemo::new()));
        // Ends when every sender is gone, closing the connection.
        while let Ok(first) = jobs.recv() {
            let mut batch = vec![first];
            while batch.len() < self.max_batch {
                match jobs.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            self.commit(batch, &memo);
            // Full: a checkpoint is already due, and it will see this commit too.
            let _ = self.ticks.try_send(());
        }
    }

    /// Runs a batch in one transaction and answers each request.
    ///
    /// Requests run back to back without savepoints (a savepoint makes SQLite journal every page
    /// it touches, which costs more than the request). If one fails, the transaction rolls back:
    /// that request's error is final — it saw exactly the state the requests before it produced,
    /// and they run again the same way, at the same `now` — and the rest of the batch runs again
    /// with a savepoint per request, so further failures cost nothing extra.
    fn commit(&mut self, batch: Vec<Job>, memo: &Rc<RefCell<CursorMemo>>) {
        let mut pending: Vec<(Job, Timestamp)> = batch
            .into_iter()
            .map(|job| (job, self.clock.now()))
            .collect();
        let mut isolate = false;
        loop {
            let attempt = self.conn.with_immediate(|conn| {
                let mut results = Vec::with_capacity(pending.len());
                for (index, (job, now)) in pending.iter().enumerate() {
                    let (request, now) = (job.request.clone(), *now);
                    let result = if isolate {
                        let memo = memo.clone();
                        conn.atomic(move |conn| {
                            store::handle(conn, &mut memo.borrow_mut(), request, now)
                        })
                    } else {
                        store::handle(conn, &mut memo.borrow_mut(), request, now)
                    };
                    match result {
                        Err(error) if !isolate => {
                            return Err(Failure::Request {
                                index,
                                error: Box::new(error),
                            })
                        }
                        result => results.push(result),
                    }
                }
                Ok(results)
            });
            match attempt {
                Ok(results) => {
                    for ((job, _), result) in pending.into_iter().zip(results) {
                        answer(job, result);
                    }
                    return;
                }
                Err(Failure::Request { index, error }) => {
                    answer(pending.remove(index).0, Err(*error));
                    isolate = true;
                }
                Err(Failure::Host(error)) => {
                    // Nothing of the batch is on disk: every request in it failed.
                    tracing::warn!(%error, "catalog batch did not commit");
                    for (job, _) in pending {
                        answer(job, Err(error.clone()));
                    }
                    return;
                }
            }
        }
    }
}

/// How long the write-ahead log may grow (pages) before the writer checkpoints it itself: under
/// continuous writes a checkpoint beside the writer never catches the log's end, and only a
/// checkpoint by the writer, between its transactions, lets the log start over.
const WRITER_CHECKPOINT_PAGES: u32 = 10_000;

/// How long the checkpointer rests after a checkpoint: commits meanwhile wait for the next one.
const CHECKPOINT_REST: Duration = Duration::from_millis(10);

/// The thread that copies the write-ahead log into the database file (ADR 0039). SQLite would do
/// it inside a commit every 1,000 pages, copying them and syncing the file while the writer and
/// everything queued behind it waits. Here it happens beside the writer, on a connection of its
/// own: a `PASSIVE` checkpoint, which never blocks the writer or a reader, at most every
/// [`CHECKPOINT_REST`] while commits come.
struct Checkpointer {
    conn: SqliteConnection,
}

impl Checkpointer {
    /// Checkpoints after the writer's commits; ends when the writer is gone.
    fn run(self, ticks: mpsc::Receiver<()>) {
        while ticks.recv().is_ok() {
            if let Err(error) = self
                .conn
                .conn
                .execute_batch("PRAGMA wal_checkpoint(PASSIVE);")
            {
                // The log keeps everything meanwhile; it only grows until a checkpoint succeeds.
                tracing::warn!(%error, "catalog checkpoint failed");
            }
            thread::sleep(CHECKPOINT_REST);
        }
    }
}

/// Why a batch did not commit.
enum Failure {
    /// Request `index` failed; the others may succeed without it.
    Request { index: usize, error: Box<Error> },
    /// The database failed (busy, I/O): the whole batch failed.
    Host(Error),
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        Failure::Host(error)
    }
}

fn answer(job: Job, result: Result<Response>) {
    // The caller may have gone away (cancelled); its request's outcome stands regardless.
    let _ = job.reply.send(result);
}

/// A rusqlite connection as the store's [`Exec`] and [`Atomic`]: what the writer thread owns.
///
/// Most callers want [`SqliteCatalog`]; this is for tools and tests that drive the store
/// directly (fault injection, inspection).
pub struct SqliteConnection {
    conn: Connection,
}

impl SqliteConnection {
    /// Opens `path` with the config's pragmas (WAL, durability, busy timeout). Does not migrate.
    ///
    /// # Errors
    /// `Unavailable` if the file cannot be opened.
    pub fn open(path: &Path, config: &SqliteConfig) -> Result<Self> {
        let conn = connect(path, config, OpenFlags::default())?;
        let synchronous = match config.durability {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
        };
        let pragmas = format!(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = {synchronous}; PRAGMA foreign_keys = OFF;"
        );
        // Switching a new file to WAL takes an exclusive lock and SQLite answers "locked" at once,
        // without its busy handler, while another process opens the same file: retry within the
        // busy timeout, as the busy handler would.
        let started = std::time::Instant::now();
        loop {
            match conn.execute_batch(&pragmas) {
                Ok(()) => return Ok(Self { conn }),
                Err(e) if is_busy(&e) && started.elapsed() < config.busy_timeout => {
                    thread::sleep(Duration::from_millis(5));
                }
                Err(e) => return Err(convert(e)),
            }
        }
    }

    /// Opens `path` for reading only (`PRAGMA query_only`: a statement that would write fails
    /// instead of taking the write lock). The file must exist: open the writer first.
    ///
    /// # Errors
    /// `Unavailable` if the file cannot be opened.
    pub fn open_reader(path: &Path, config: &SqliteConfig) -> Result<Self> {
        // Without SQLITE_OPEN_CREATE: a reader never creates the file.
        let flags = OpenFlags::default() - OpenFlags::SQLITE_OPEN_CREATE;
        let conn = connect(path, config, flags)?;
        conn.execute_batch("PRAGMA query_only = ON;")
            .map_err(convert)?;
        Ok(Self { conn })
    }

    /// Brings the file to the current schema and binds it to `project`, taking the write lock
    /// only when there is something to write: opening a current, bound file only reads it, so it
    /// never waits for another process's write transaction.
    ///
    /// # Errors
    /// `InvalidArgument` if the file holds another project; the database's error otherwise.
    pub fn prepare(&mut self, project: &ProjectId, now: Timestamp) -> Result<()> {
        if self.with_deferred(|conn| store::is_prepared(conn, project))? {
            return Ok(());
        }
        self.with_immediate(|conn| {
            store::migrate_in_place(conn, now)?;
            store::bind_project(conn, project)
        })
    }

    /// Runs `unit` in a `BEGIN IMMEDIATE` transaction: the write lock is taken before the first
    /// read, so no other process can change what the unit reads before it commits.
    ///
    /// # Errors
    /// The unit's error, or the commit's.
    pub fn with_immediate<T, E: From<Error>>(
        &mut self,
        unit: impl FnOnce(&mut Self) -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E> {
        self.transaction("BEGIN IMMEDIATE", unit)
    }

    /// Runs `unit` in a deferred transaction: its reads see one snapshot and, in WAL mode, never
    /// wait for a writer. A unit that writes takes the write lock at its first write.
    ///
    /// # Errors
    /// The unit's error, or the commit's.
    pub fn with_deferred<T, E: From<Error>>(
        &mut self,
        unit: impl FnOnce(&mut Self) -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E> {
        self.transaction("BEGIN DEFERRED", unit)
    }

    fn transaction<T, E: From<Error>>(
        &mut self,
        begin: &str,
        unit: impl FnOnce(&mut Self) -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E> {
        self.control(begin)?;
        match unit(self) {
            Ok(value) => match self.control("COMMIT") {
                Ok(()) => Ok(value),
                Err(e) => {
                    let _ = self.control("ROLLBACK");
                    Err(e.into())
                }
            },
            Err(e) => {
                let _ = self.control("ROLLBACK");
                Err(e)
            }
        }
    }

    /// Runs a transaction-control statement, prepared once and cached like every other.
    fn control(&mut self, sql: &str) -> Result<()> {
        self.conn
            .prepare_cached(sql)
            .and_then(|mut statement| statement.execute([]))
            .map(drop)
            .map_err(convert)
    }
}

impl Exec for SqliteConnection {
    fn query(&mut self, sql: &str, params: &[SqlValue]) -> Result<Vec<Row>> {
        let mut statement = self.conn.prepare_cached(sql).map_err(convert)?;
        let columns = statement.column_count();
        let mut rows = statement
            .query(rusqlite::params_from_iter(params.iter()))
            .map_err(convert)?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(convert)? {
            let mut values = Vec::with_capacity(columns);
            for i in 0..columns {
                values.push(match row.get_ref(i).map_err(convert)? {
                    ValueRef::Null => SqlValue::Null,
                    ValueRef::Integer(v) => SqlValue::Integer(v),
                    ValueRef::Real(v) => SqlValue::Real(v),
                    ValueRef::Text(v) => SqlValue::Text(String::from_utf8_lossy(v).into_owned()),
                    ValueRef::Blob(_) => {
                        return Err(Error::Backend("unexpected BLOB column".into()))
                    }
                });
            }
            out.push(Row(values));
        }
        Ok(out)
    }

    fn execute(&mut self, sql: &str, params: &[SqlValue]) -> Result<()> {
        self.write(sql, params).map(drop)
    }

    fn write(&mut self, sql: &str, params: &[SqlValue]) -> Result<u64> {
        let mut statement = self.conn.prepare_cached(sql).map_err(convert)?;
        statement
            .execute(rusqlite::params_from_iter(params.iter()))
            .map(|n| n as u64)
            .map_err(convert)
    }
}

impl Atomic for SqliteConnection {
    /// A savepoint: inside the writer's transaction it isolates one request of a group commit;
    /// outside one it is a transaction of its own.
    fn atomic<T: 'static>(
        &mut self,
        unit: impl FnOnce(&mut Self) -> Result<T> + 'static,
    ) -> Result<T> {
        self.control("SAVEPOINT hakiri_unit")?;
        match unit(self) {
            Ok(value) => {
                self.control("RELEASE hakiri_unit")?;
                Ok(value)
            }
            Err(e) => {
                self.control("ROLLBACK TO hakiri_unit")?;
                self.control("RELEASE hakiri_unit")?;
                Err(e)
            }
        }
    }
}

impl ToSql for SqlValue {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            SqlValue::Null => ToSqlOutput::Owned(SqliteValue::Null),
            SqlValue::Integer(v) => ToSqlOutput::Owned(SqliteValue::Integer(*v)),
            SqlValue::Real(v) => ToSqlOutput::Owned(SqliteValue::Real(*v)),
            SqlValue::Text(v) => ToSqlOutput::Borrowed(ValueRef::Text(v.as_bytes())),
        })
    }
}

/// A connection to `path` with the config's busy timeout and a statement cache.
fn connect(path: &Path, config: &SqliteConfig, flags: OpenFlags) -> Result<Connection> {
    let conn = Connection::open_with_flags(path, flags).map_err(|e| {
        Error::Unavailable(format!(
            "cannot open the catalog database {}: {e}",
            path.display()
        ))
    })?;
    conn.busy_timeout(config.busy_timeout).map_err(convert)?;
    conn.set_prepared_statement_cache_capacity(128);
    Ok(conn)
}

/// Whether another connection holds a lock this one needs.
fn is_busy(error: &rusqlite::Error) -> bool {
    matches!(
        error,
        rusqlite::Error::SqliteFailure(e, _)
            if matches!(e.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

/// The one conversion of rusqlite errors into catalog errors.
fn convert(error: rusqlite::Error) -> Error {
    use rusqlite::ErrorCode;
    match &error {
        rusqlite::Error::SqliteFailure(e, _)
            if matches!(e.code, ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) =>
        {
            Error::Unavailable(format!(
                "the catalog database is busy (another process holds its lock): {error}"
            ))
        }
        rusqlite::Error::SqliteFailure(e, _)
            if matches!(
                e.code,
                ErrorCode::CannotOpen | ErrorCode::SystemIoFailure | ErrorCode::DiskFull
            ) =>
        {
            Error::Unavailable(format!("the catalog database cannot be written: {error}"))
        }
        _ => Error::Backend(format!("sqlite: {error}")),
    }
}
