//! Hakiri's catalog on PostgreSQL ≥ 13 (Amazon RDS / Aurora PostgreSQL or any Postgres): the
//! [`Catalog`] port for several processes on several machines sharing one database.
//!
//! One database serves many projects: every row is keyed by project, and a [`PostgresCatalog`]
//! is bound to one. What makes writes single-writer here is the database: every lease-checked
//! write verifies the lease's epoch, holder and expiry — expiry judged by the **database's**
//! clock, never the caller's — in the same statement or transaction as the write; domain rules
//! come from `hakiri-core` (ADR 0001), and how they meet one round trip per cursor advance is
//! [ADR 0009](https://github.com/hakiri-dev/hakiri/blob/main/docs/adr/0009-postgres-round-trips.md).
//!
//! ```no_run
//! use hakiri_catalog_postgres::{migrate, PostgresCatalog, PostgresConfig};
//! use hakiri_core::{Catalog, ProjectId};
//!
//! # async fn demo() -> hakiri_core::Result<()> {
//! let url = "postgres://hakiri@db.internal:5432/hakiri?sslmode=verify-full&sslrootcert=/etc/ssl/rds-global-bundle.pem";
//! let pool = PostgresConfig::default().max_connections(16).connect(url).await?;
//! migrate(&pool).await?;
//! let catalog = PostgresCatalog::new(pool, ProjectId::new("acme")?);
//! assert_eq!(catalog.project().as_str(), "acme");
//! # Ok(()) }
//! ```
//!
//! # Connecting, and TLS for RDS
//! The URL is libpq's (`postgres://user:password@host:port/database?param=…`); the password may
//! also come from `PGPASSWORD`, and `options=-c%20search_path%3Dhakiri` puts the catalog's tables
//! in their own schema (recommended in a shared database: table names such as `runs` are plain).
//! TLS is rustls (no OpenSSL), chosen with `sslmode`:
//! - `disable` — never TLS (loopback only);
//! - `prefer` (default) / `require` — encrypted, but the server's certificate is **not**
//!   verified: no protection against a man in the middle;
//! - `verify-ca` — the certificate must chain to a trusted root;
//! - `verify-full` — and the host name must match it. **Use this for RDS**, with
//!   `sslrootcert=/path/to/global-bundle.pem` (the RDS CA bundle; rustls's built-in web roots do
//!   not include the RDS CAs). RDS enforces TLS when the parameter `rds.force_ssl` is 1
//!   (the default from PostgreSQL 15 on).
//!
//! # Migrations
//! [`migrate`] applies the crate's embedded migrations (`catalog-postgres/migrations/`, with
//! `sqlx::migrate!`) under an advisory lock, so several processes may call it at start-up. It
//! needs `CREATE` on the schema, not a superuser. Give Hakiri its own database or schema: sqlx
//! records versions in `_sqlx_migrations`, which another sqlx application in the same schema
//! would share.
//!
//! # Layout
//! - this file: [`PostgresConfig`] (pool and timeouts), [`migrate`], [`PostgresCatalog`] and its
//!   [`Catalog`] implementation, which forwards to the modules below.
//! - `error`: the one conversion from SQLSTATEs and driver errors to [`hakiri_core::Error`].
//! - `store`: the operations, one file per area (`pipelines`, `leases`, `runs`, `cursors`,
//!   `schemas`, `events`), each a transaction that locks the pipeline row (`FOR UPDATE`), reads
//!   what the core rule needs, asks it, and writes its outcome; `store/rows.rs` holds the row
//!   models the reads decode into.
//! - `store/advance.rs`: the hot path — a cursor checkpoint in one statement, planned by the core
//!   rule against a cache of the cursor that the statement verifies (compare-and-set on the
//!   version).
//! - `store/finish.rs`: a run's finish in one statement, planned against the same cache.
//!
//! The tests that drive this catalog from several OS processes live in `test-kit/tests/`, beside
//! the drill binary they start.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use hakiri_core::archive::{ArchiveHead, ImportBatch, ImportProgress};
use hakiri_core::{
    Actor, BeginRun, Catalog, Cursor, CursorAdvance, CursorHistoryEntry, CursorReset, Decide,
    Decision, DecisionId, DecisionQuery, Error, Event, FinishRun, Generation, HolderId, Lease,
    Limit, Observation, Page, PauseChange, Pipeline, PipelineId, PipelineSpec, ProjectId, PutMode,
    Reason, Result, Run, RunId, RunQuery, Schema, SchemaVersion, StatusPage, StreamName, Trigger,
};
use log::LevelFilter;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
pub use sqlx::PgPool;
use sqlx::{ConnectOptions, Connection};

/// Statements slower than this are logged at `INFO` (with their text).
const SLOW_STATEMENT: Duration = Duration::from_secs(1);

mod error;
mod store;

#[cfg(test)]
mod pages_at_scale;

/// Connection-pool and timeout settings for [`PostgresConfig::connect`]. Plain data with
/// `#[must_use]` setters; the defaults suit a reconciler process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresConfig {
    max_connections: u32,
    min_connections: u32,
    acquire_timeout: Duration,
    idle_timeout: Option<Duration>,
    max_lifetime: Option<Duration>,
    statement_timeout: Option<Duration>,
    idle_in_transaction_timeout: Option<Duration>,
    lock_timeout: Option<Duration>,
    test_before_acquire: bool,
    application_name: String,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        Self {
            max_connections: 10,
            min_connections: 0,
            acquire_timeout: Duration::from_secs(5),
            idle_timeout: Some(Duration::from_secs(10 * 60)),
            max_lifetime: Some(Duration::from_secs(30 * 60)),
            statement_timeout: Some(Duration::from_secs(30)),
            idle_in_transaction_timeout: Some(Duration::from_secs(5)),
            lock_timeout: Some(Duration::from_secs(10)),
            test_before_acquire: false,
            application_name: "hakiri".to_owned(),
        }
    }
}

impl PostgresConfig {
    /// Most connections the pool opens (default 10).
    ///
    /// # Warning
    /// Every process opens up to this many: keep processes × connections under the server's
    /// `max_connections` (RDS derives it from the instance's memory), or connects will fail.
    #[must_use]
    pub fn max_connections(mut self, n: u32) -> Self {
        self.max_connections = n.max(1);
        self
    }

    /// Connections kept open even when idle (default 0).
    #[must_use]
    pub fn min_connections(mut self, n: u32) -> Self {
        self.min_connections = n;
        self
    }

    /// How long an operation waits for a free connection (including connecting) before failing
    /// with `Unavailable` (default 5 s).
    #[must_use]
    pub fn acquire_timeout(mut self, d: Duration) -> Self {
        self.acquire_timeout = d;
        self
    }

    /// Idle connections are closed after this (default 10 min; `None`: never).
    #[must_use]
    pub fn idle_timeout(mut self, d: Option<Duration>) -> Self {
        self.idle_timeout = d;
        self
    }

    /// Connections are replaced after this (default 30 min; `None`: never). Lets RDS fail-overs
    /// and credential rotations take effect on long-lived pools.
    #[must_use]
    pub fn max_lifetime(mut self, d: Option<Duration>) -> Self {
        self.max_lifetime = d;
        self
    }

    /// The server cancels a statement running longer than this (default 30 s; `None`: the
    /// server's setting). A cancelled statement is `Unavailable` and changes nothing.
    ///
    /// # Warning
    /// Too short, and operations on a loaded server fail spuriously; too long, and a stuck
    /// statement holds a pipeline's row lock (blocking its holder) that long.
    #[must_use]
    pub fn statement_timeout(mut self, d: Option<Duration>) -> Self {
        self.statement_timeout = d;
        self
    }

    /// The server ends a session that sits idle inside a transaction longer than this (default
    /// 5 s; `None`: the server's setting), rolling the transaction back and releasing its locks.
    ///
    /// A catalog transaction never waits on its client for more than a round trip, so only a
    /// stalled process (stopped, paused by a debugger, its VM frozen) reaches this; without it,
    /// such a process keeps its pipeline's row locked — no takeover, pause or reset — until it
    /// resumes (ADR 0015). Keep it well below the lease ttl (the reconciler's default is 30 s).
    ///
    /// # Warning
    /// Longer, and a stalled holder blocks its pipeline that long; shorter than a slow network's
    /// round trip, and healthy transactions are ended (they fail `Unavailable` and change nothing).
    #[must_use]
    pub fn idle_in_transaction_timeout(mut self, d: Option<Duration>) -> Self {
        self.idle_in_transaction_timeout = d;
        self
    }

    /// A statement gives up waiting for a row lock after this (default 10 s; `None`: the server's
    /// setting), failing `Unavailable` and changing nothing.
    ///
    /// No catalog transaction can hold a lock idle for longer than the idle-in-transaction
    /// timeout, so a longer wait means a stuck statement, for which waiting on is pointless; the
    /// caller retries instead of hanging until the statement timeout (ADR 0015).
    ///
    /// # Warning
    /// Keep it above [`idle_in_transaction_timeout`](Self::idle_in_transaction_timeout), or a
    /// takeover behind a stalled holder fails before the server ends that holder's session.
    #[must_use]
    pub fn lock_timeout(mut self, d: Option<Duration>) -> Self {
        self.lock_timeout = d;
        self
    }

    /// Ping every connection before each use (default off).
    ///
    /// # Warning
    /// It costs a round trip per operation — a cursor advance would take two. Off, a connection
    /// broken by a server restart fails its next operation with `Unavailable` (retryable) and is
    /// discarded.
    #[must_use]
    pub fn test_before_acquire(mut self, on: bool) -> Self {
        self.test_before_acquire = on;
        self
    }

    /// The `application_name` the server shows in `pg_stat_activity` (default `hakiri`).
    #[must_use]
    pub fn application_name(mut self, name: impl Into<String>) -> Self {
        self.application_name = name.into();
        self
    }

    /// Parses `url` and applies these settings to it.
    ///
    /// Statements are logged at `TRACE` and those slower than a second at `INFO` (the driver's
    /// defaults, `DEBUG` and `WARN`, put whole statements in a program's warnings).
    ///
    /// # Errors
    /// `InvalidArgument` for a malformed URL.
    pub fn connect_options(&self, url: &str) -> Result<PgConnectOptions> {
        let mut options = PgConnectOptions::from_str(url)
            .map_err(|e| Error::invalid(format!("postgres URL is not valid: {e}")))?
            .application_name(&self.application_name)
            .log_statements(LevelFilter::Trace)
            .log_slow_statements(LevelFilter::Info, SLOW_STATEMENT);
        // The catalog's statements look rows up by key prefixes, so one generic plan per prepared
        // statement serves every call; without this the server re-plans a statement on every call
        // while it judges custom plans cheaper, which costs more than executing it.
        // That plan is made from the statistics of its first call, perhaps taken while a table
        // held one row, when a sequential scan looks cheapest; it would then read the whole table
        // on every call as the table grows. Every statement has an index to use (ADR 0043).
        options = options.options([
            ("plan_cache_mode", "force_generic_plan"),
            ("enable_seqscan", "off"),
        ]);
        let timeouts = [
            ("statement_timeout", self.statement_timeout),
            (
                "idle_in_transaction_session_timeout",
                self.idle_in_transaction_timeout,
            ),
            ("lock_timeout", self.lock_timeout),
        ];
        for (setting, timeout) in timeouts {
            if let Some(timeout) = timeout {
                options = options.options([(setting, timeout.as_millis().to_string())]);
            }
        }
        Ok(options)
    }

    /// The pool settings.
    pub fn pool_options(&self) -> PgPoolOptions {
        PgPoolOptions::new()
            .max_connections(self.max_connections)
            .min_connections(self.min_connections)
            .acquire_timeout(self.acquire_timeout)
            .idle_timeout(self.idle_timeout)
            .max_lifetime(self.max_lifetime)
            .test_before_acquire(self.test_before_acquire)
    }

    /// Opens a pool on `url`, connecting once first so that a wrong URL fails here, with what
    /// is wrong: within the acquire timeout, the server named and the cause given.
    ///
    /// # Errors
    /// `InvalidArgument` for a malformed URL or a database the server does not have;
    /// `Unauthenticated` when the server refuses the role or its password; `Unavailable` when the
    /// server cannot be reached (refused, no such host, no answer within the acquire timeout).
    pub async fn connect(&self, url: &str) -> Result<PgPool> {
        let options = self.connect_options(url)?;
        let server = match options.get_socket() {
            Some(socket) => format!("{} (socket)", socket.display()),
            None => format!("{}:{}", options.get_host(), options.get_port()),
        };
        // One connection of our own: a pool that cannot connect retries until its acquire
        // timeout and then says only "pool timed out", whatever the cause.
        let first = tokio::time::timeout(self.acquire_timeout, options.connect())
            .await
            .map_err(|_| {
                Error::Unavailable(format!(
                    "cannot connect to postgres at {server}: no answer within {:?}",
                    self.acquire_timeout
                ))
            })?
            .map_err(|e| error::connect(e, &server))?;
        // The pool opens its own connections as they are needed.
        let _ = first.close().await;
        Ok(self.pool_options().connect_lazy_with(options))
    }
}

/// Brings the database to this build's schema (the crate's embedded migrations), under an
/// advisory lock: safe to call from every process at start-up.
///
/// # Errors
/// `Unavailable` if the server cannot be reached; `Backend` if a migration fails or the database
/// was migrated by a newer build.
pub async fn migrate(pool: &PgPool) -> Result<()> {
    let mut conn = pool.acquire().await.map_err(error::db)?;
    // A migration may rewrite whole tables, which a sequential scan does best.
    sqlx::query("SET enable_seqscan = on")
        .execute(&mut *conn)
        .await
        .map_err(error::db)?;
    let mut outcome = sqlx::migrate!("./migrations").run(&mut *conn).await;
    if outcome.is_ok() {
        // Back to the session's own setting, before the pool hands the connection out again.
        outcome = sqlx::query("RESET enable_seqscan")
            .execute(&mut *conn)
            .await
            .map(drop)
            .map_err(sqlx::migrate::MigrateError::Execute);
    }
    if outcome.is_err() {
        // A failed migration returns without releasing its session's advisory lock: closing
        // the connection releases it, where returning it to the pool would keep every later
        // migration waiting.
        let _ = conn.close().await;
    }
    outcome.map_err(|e| match e {
        sqlx::migrate::MigrateError::Execute(e) => error::db(e),
        other => Error::Backend(format!("catalog migration failed: {other}")),
    })
}

/// Registers `project` in the database (creating a pipeline registers its project too), so that
/// [`projects`] lists it before it has a pipeline. Registering twice changes nothing.
///
/// # Errors
/// `Unavailable` if the server cannot be reached; `NotMigrated` if the database is not migrated.
pub async fn register_project(pool: &PgPool, project: &ProjectId) -> Result<()> {
    sqlx::query("INSERT INTO projects (project) VALUES ($1) ON CONFLICT (project) DO NOTHING")
        .bind(project.as_str())
        .execute(pool)
        .await
        .map_err(error::db)?;
    Ok(())
}

/// The projects the database holds — every project registered or with a pipeline ever created —
/// in byte order. A CLI refuses a project missing from it instead of showing an empty catalog.
///
/// # Errors
/// `Unavailable` if the server cannot be reached; `NotMigrated` if the database is not migrated.
pub async fn projects(pool: &PgPool) -> Result<Vec<ProjectId>> {
    let names: Vec<String> = sqlx::query_scalar("SELECT project FROM projects ORDER BY project")
        .fetch_all(pool)
        .await
        .map_err(error::db)?;
    names.into_iter().map(ProjectId::new).collect()
}

/// The catalog of one project in a Postgres database.
///
/// Cheap to clone through `Arc`; holds a pool handle. Several catalogs (in this and other
/// processes) may serve the same project at once.
#[derive(Debug)]
pub struct PostgresCatalog {
    pool: PgPool,
    project: ProjectId,
    // A cache of the cursors this catalog last saw, by pipeline: a checkpoint plans against it
    // and its statement compares the version, so a stale entry costs a retry, never a wrong write
    // (ADR 0009). A std mutex: it is never held across an await.
    cursors: Mutex<HashMap<PipelineId, store::advance::Known>>,
}

impl PostgresCatalog {
    /// The catalog of `project` on `pool`. The database must be migrated ([`migrate`]).
    pub fn new(pool: PgPool, project: ProjectId) -> Self {
        Self {
            pool,
            project,
            cursors: Mutex::new(HashMap::new()),
        }
    }

    /// The pool this catalog uses.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

#[async_trait]
impl Catalog for PostgresCatalog {
    fn project(&self) -> &ProjectId {
        &self.project
    }

    async fn put_pipeline(
        &self,
        spec: PipelineSpec,
        mode: PutMode,
        by: &Actor,
    ) -> Result<Pipeline> {
        self.op_put_pipeline(spec, mode, by).await
    }

    async fn get_pipeline(&self, pipeline: &PipelineId) -> Result<Pipeline> {
        self.op_get_pipeline(pipeline).await
    }

    async fn list_pipelines(
        &self,
        after: Option<&PipelineId>,
        limit: Limit,
    ) -> Result<Page<Pipeline, PipelineId>> {
        self.op_list_pipelines(after, limit).await
    }

    async fn set_paused(
        &self,
        pipeline: &PipelineId,
        change: PauseChange,
        by: &Actor,
    ) -> Result<Pipeline> {
        self.op_set_paused(pipeline, &change, by).await
    }

    async fn delete_pipeline(
        &self,
        pipeline: &PipelineId,
        expected: Generation,
        by: &Actor,
    ) -> Result<()> {
        self.op_delete_pipeline(pipeline, expected, by).await
    }

    async fn request_run(
        &self,
        pipeline: &PipelineId,
        trigger: Trigger,
        by: &Actor,
    ) -> Result<Pipeline> {
        self.op_request_run(pipeline, trigger, by).await
    }

    async fn acquire(
        &self,
        pipeline: &PipelineId,
        holder: &HolderId,
        ttl: Duration,
    ) -> Result<Lease> {
        self.op_acquire(pipeline, holder, ttl, None).await
    }

    async fn force_acquire(
        &self,
        pipeline: &PipelineId,
        holder: &HolderId,
        ttl: Duration,
        by: &Actor,
        reason: &Reason,
    ) -> Result<Lease> {
        self.op_acquire(pipeline, holder, ttl, Some((by, reason)))
            .await
    }

    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<Lease> {
        self.op_renew(lease, ttl).await
    }

    async fn release(&self, lease: &Lease) -> Result<()> {
        self.op_release(lease).await
    }

    async fn begin_run(&self, lease: &Lease, begin: BeginRun) -> Result<Run> {
        self.op_begin_run(lease, begin).await
    }

    async fn advance(
        &self,
        lease: &Lease,
        run: RunId,
        stream: &StreamName,
        advance: CursorAdvance,
    ) -> Result<Cursor> {
        self.op_advance(lease, run, stream, &advance).await
    }

    async fn finish_run(&self, lease: &Lease, run: RunId, finish: FinishRun) -> Result<Run> {
        self.op_finish_run(lease, run, finish).await
    }

    async fn get_run(&self, run: RunId) -> Result<Run> {
        self.op_get_run(run).await
    }

    async fn list_runs(&self, query: &RunQuery) -> Result<Page<Run, RunId>> {
        self.op_list_runs(query).await
    }

    async fn get_cursor(
        &self,
        pipeline: &PipelineId,
        stream: &StreamName,
    ) -> Result<Option<Cursor>> {
        self.op_get_cursor(pipeline, stream).await
    }

    async fn list_cursors(&self, pipeline: &PipelineId) -> Result<Vec<Cursor>> {
        self.op_list_cursors(pipeline).await
    }

    async fn cursor_history(
        &self,
        pipeline: &PipelineId,
        stream: &StreamName,
        before: Option<u64>,
        limit: Limit,
    ) -> Result<Page<CursorHistoryEntry, u64>> {
        self.op_cursor_history(pipeline, stream, before, limit)
            .await
    }

    async fn reset_cursor(
        &self,
        lease: &Lease,
        stream: &StreamName,
        reset: CursorReset,
    ) -> Result<Cursor> {
        self.op_reset_cursor(lease, stream, &reset).await
    }

    async fn observe_schema(
        &self,
        lease: &Lease,
        run: RunId,
        stream: &StreamName,
        schema: Schema,
    ) -> Result<Observation> {
        self.op_observe_schema(lease, run, stream, schema).await
    }

    async fn get_schema(
        &self,
        pipeline: &PipelineId,
        stream: &StreamName,
        version: Option<u32>,
    ) -> Result<SchemaVersion> {
        self.op_get_schema(pipeline, stream, version).await
    }

    async fn list_schema_versions(
        &self,
        pipeline: &PipelineId,
        stream: &StreamName,
    ) -> Result<Vec<SchemaVersion>> {
        self.op_list_schema_versions(pipeline, stream).await
    }

    async fn list_decisions(&self, query: &DecisionQuery) -> Result<Page<Decision, DecisionId>> {
        self.op_list_decisions(query).await
    }

    async fn decide(&self, decision: DecisionId, decide: Decide) -> Result<Decision> {
        self.op_decide(decision, &decide).await
    }

    async fn pipeline_statuses(
        &self,
        after: Option<&PipelineId>,
        limit: Limit,
    ) -> Result<StatusPage> {
        self.op_pipeline_statuses(after, limit).await
    }

    async fn events(&self, after: u64, limit: Limit) -> Result<Vec<Event>> {
        self.op_events(after, limit).await
    }

    async fn pipeline_events(
        &self,
        pipeline: &PipelineId,
        after: u64,
        limit: Limit,
    ) -> Result<Vec<Event>> {
        self.op_pipeline_events(pipeline, after, limit).await
    }

    async fn pipeline_events_before(
        &self,
        pipeline: &PipelineId,
        before: u64,
        limit: Limit,
    ) -> Result<Vec<Event>> {
        self.op_pipeline_events_before(pipeline, before, limit)
            .await
    }

    async fn list_streams(&self, pipeline: &PipelineId) -> Result<Vec<StreamName>> {
        self.op_list_streams(pipeline).await
    }

    async fn archive_head(&self) -> Result<ArchiveHead> {
        self.op_archive_head().await
    }

    async fn import(&self, batch: ImportBatch) -> Result<ImportProgress> {
        self.op_import(batch).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A loopback port where nothing listens.
    fn closed_port() -> u16 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    }

    #[tokio::test]
    async fn connect_names_the_server_and_the_cause_when_refused() {
        let port = closed_port();
        let url = format!("postgres://hakiri@127.0.0.1:{port}/hakiri?sslmode=disable");
        let error = PostgresConfig::default().connect(&url).await.unwrap_err();
        assert!(
            matches!(&error, Error::Unavailable(m)
                if m.contains(&format!("postgres at 127.0.0.1:{port}: connection refused"))),
            "{error}"
        );
    }

    #[tokio::test]
    async fn connect_to_a_server_that_never_answers_names_it_within_the_acquire_timeout() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        // Holds every connection open without a byte of answer.
        std::thread::spawn(move || listener.incoming().collect::<Vec<_>>());
        let url = format!("postgres://hakiri@127.0.0.1:{port}/hakiri?sslmode=disable");
        let error = PostgresConfig::default()
            .acquire_timeout(Duration::from_millis(300))
            .connect(&url)
            .await
            .unwrap_err();
        assert!(
            matches!(&error, Error::Unavailable(m)
                if m.contains(&format!("postgres at 127.0.0.1:{port}: no answer within 300ms"))),
            "{error}"
        );
    }
}
