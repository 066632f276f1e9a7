//! `hakiri-drill`: drives a catalog from a separate OS process, for the tests that need real
//! processes (several writers racing, a zombie paused past its lease, kill -9 at random moments,
//! a process stopped inside a transaction, one client of a concurrent history). Every command
//! takes a catalog URL, `sqlite://FILE` or `postgres://…`, so one drill serves every backend a
//! process can open.
//!
//! `Unavailable` is retried everywhere (with a short pause); any other error fails the process —
//! except in `history`, which records every answer and goes on.
//! Lines on stdout are flushed as they are printed: the tests read them while the drill runs.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use hakiri_catalog_do::store::Exec;
use hakiri_catalog_do::{SqliteCatalog, SqliteConfig, SqliteConnection};
use hakiri_catalog_postgres::{PostgresCatalog, PostgresConfig};
use hakiri_contract::history::{
    check_client, now_ns, run_client, Event as HistoryEvent, Sink, Workload,
};
use hakiri_core::{
    Actor, BeginRun, Catalog, CatalogExt, Column, ColumnType, ConnectorRef, CursorAdvance,
    CursorKind, CursorValue, Error, FinishRun, HolderId, Lease, OperatorName, PipelineId,
    PipelineSpec, ProjectId, Reason, Result, Schema, StreamName, StreamStats, Trigger,
};
use serde_json::json;

#[derive(Parser)]
#[command(
    name = "hakiri-drill",
    about = "Drives a Hakiri catalog from a separate process, for tests"
)]
struct Drill {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Take the lease of one of PIPELINES pipelines (waiting while another process holds it),
    /// begin a run, add 1 to its cursor "count" with compare-and-set on the version read, finish,
    /// release; again, for ROUNDS rounds or SECONDS seconds. A `Conflict` would be a second
    /// writer: it fails the process. Prints `rounds <n>` at the end.
    Race {
        catalog: String,
        project: String,
        holder: String,
        #[arg(long, default_value_t = 1)]
        pipelines: usize,
        #[arg(long, conflicts_with = "seconds", required_unless_present = "seconds")]
        rounds: Option<u64>,
        #[arg(long)]
        seconds: Option<u64>,
    },
    /// Take the lease of PIPELINE (opaque cursors) for TTL_MS, begin a run and checkpoint
    /// {"writer":"zombie","n":i} for i = 1, 2, …, printing `holding <epoch> <run>` first and
    /// `ack <i>` after each, until a write is refused: prints `fenced <i> <reason>` and exits 0 if
    /// it was `Fenced`, fails otherwise.
    Zombie {
        catalog: String,
        project: String,
        pipeline: String,
        #[arg(long)]
        ttl_ms: u64,
    },
    /// Acquire PIPELINE (its lease must have expired), begin a run, checkpoint
    /// {"writer":"successor"}, finish and print `took <epoch>`.
    TakeOver {
        catalog: String,
        project: String,
        pipeline: String,
    },
    /// Take over pipeline "p" as an operator (the previous drill was killed holding it), then loop
    /// begin → three checkpoints of "a" → a finish with cursors "a" and "b", stats and one more
    /// schema column, printing `finished <run> <a> <b>` after each acknowledged finish, until
    /// killed.
    CrashLoop { catalog: String, project: String },
    /// Run client CLIENT of a concurrent history (`hakiri_contract::history`): the workload of
    /// SEED with CLIENTS clients of OPS calls on PIPELINES pipelines, whose pipelines exist
    /// already. Prints every event as one JSON line, flushed: an invoke before each call, its
    /// completion after. Catalog errors are recorded, never fatal.
    History {
        catalog: String,
        project: String,
        #[arg(long)]
        client: u32,
        #[arg(long)]
        clients: u32,
        #[arg(long)]
        ops: u32,
        #[arg(long)]
        seed: u64,
        #[arg(long)]
        pipelines: usize,
        /// Wait until CLOCK_MONOTONIC reaches this many nanoseconds before the first call, so
        /// that processes started one after another begin together.
        #[arg(long, default_value_t = 0)]
        start_at_ns: u64,
    },
    /// Open a transaction on a SQLite catalog FILE — a write transaction holding SQLite's write
    /// lock, or a read transaction holding a snapshot — print `holding` and never end it: what a
    /// process stopped inside a transaction looks like to the others.
    Hold { kind: HoldKind, file: PathBuf },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum HoldKind {
    Write,
    Read,
}

fn main() -> ExitCode {
    let drill = Drill::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("hakiri-drill: cannot start a runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = match drill.command {
        Command::Race {
            catalog,
            project,
            holder,
            pipelines,
            rounds,
            seconds,
        } => {
            let until = match (rounds, seconds) {
                (Some(rounds), _) => Until::Rounds(rounds),
                (None, seconds) => Until::Deadline(
                    Instant::now() + Duration::from_secs(seconds.unwrap_or_default()),
                ),
            };
            runtime.block_on(race(&catalog, &project, &holder, pipelines, until))
        }
        Command::Zombie {
            catalog,
            project,
            pipeline,
            ttl_ms,
        } => runtime.block_on(zombie(
            &catalog,
            &project,
            &pipeline,
            Duration::from_millis(ttl_ms),
        )),
        Command::TakeOver {
            catalog,
            project,
            pipeline,
        } => runtime.block_on(take_over(&catalog, &project, &pipeline)),
        Command::CrashLoop { catalog, project } => runtime.block_on(crash_loop(&catalog, &project)),
        Command::History {
            catalog,
            project,
            client,
            clients,
            ops,
            seed,
            pipelines,
            start_at_ns,
        } => ProjectId::new(project).and_then(|project| {
            let workload = Workload::new(project, seed)
                .pipelines(pipelines)
                .clients(clients)
                .ops(ops);
            runtime.block_on(history(&catalog, &workload, client, start_at_ns))
        }),
        Command::Hold { kind, file } => hold(kind, &file),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hakiri-drill: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Opens the catalog at `url` for `project`.
async fn open(url: &str, project: &str) -> Result<Box<dyn Catalog>> {
    let project = ProjectId::new(project)?;
    if let Some(file) = url.strip_prefix("sqlite://") {
        let catalog = SqliteCatalog::open(Path::new(file), project, SqliteConfig::default())?;
        return Ok(Box::new(catalog));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let pool = PostgresConfig::default()
            .max_connections(4)
            .connect(url)
            .await?;
        return Ok(Box::new(PostgresCatalog::new(pool, project)));
    }
    Err(Error::invalid(format!(
        "catalog URL {url:?}: the drill opens sqlite://FILE or postgres://…"
    )))
}

/// Prints `line` and flushes it at once.
fn say(line: &str) -> Result<()> {
    let mut stdout = std::io::stdout();
    writeln!(stdout, "{line}")
        .and_then(|()| stdout.flush())
        .map_err(|e| Error::Backend(format!("stdout: {e}")))
}

/// Calls `op` until it gives anything but `Unavailable`.
async fn retrying<T, F, Fut>(mut op: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    loop {
        match op().await {
            Err(Error::Unavailable(_)) => tokio::time::sleep(Duration::from_millis(20)).await,
            other => return other,
        }
    }
}

/// Creates pipeline `id` unless another process already did.
async fn ensure_pipeline(catalog: &dyn Catalog, id: &PipelineId, kind: CursorKind) -> Result<()> {
    let spec = PipelineSpec::new(id.clone(), ConnectorRef::new("drill")?, kind);
    match retrying(|| catalog.create_pipeline(spec.clone(), &Actor::System)).await {
        Ok(_) | Err(Error::AlreadyExists(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

/// When a race ends.
#[derive(Clone, Copy)]
enum Until {
    Rounds(u64),
    Deadline(Instant),
}

impl Until {
    fn reached(self, rounds: u64) -> bool {
        match self {
            Until::Rounds(limit) => rounds >= limit,
            Until::Deadline(deadline) => Instant::now() >= deadline,
        }
    }
}

async fn race(
    url: &str,
    project: &str,
    holder: &str,
    pipelines: usize,
    until: Until,
) -> Result<()> {
    let catalog = open(url, project).await?;
    let ids: Vec<PipelineId> = (0..pipelines.max(1))
        .map(|i| PipelineId::new(format!("p{i}")))
        .collect::<Result<_>>()?;
    for id in &ids {
        ensure_pipeline(catalog.as_ref(), id, CursorKind::Monotonic).await?;
    }
    let holder = HolderId::new(holder)?;
    let stream = StreamName::new("count")?;
    let ttl = Duration::from_secs(10);
    let mut rounds = 0u64;
    // Each process starts on a different pipeline.
    let mut next = holder.as_str().bytes().map(usize::from).sum::<usize>();
    while !until.reached(rounds) {
        next += 1;
        let pipeline = &ids[next % ids.len()];
        let lease = loop {
            match catalog.acquire(pipeline, &holder, ttl).await {
                Ok(lease) => break lease,
                Err(Error::Leased { .. } | Error::Unavailable(_)) => {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Err(e) => return Err(e),
            }
        };
        increment(catalog.as_ref(), &lease, &stream).await?;
        rounds += 1;
    }
    say(&format!("rounds {rounds}"))
}

/// One round of a race: begin, compare-and-set `stream` to one more, finish, release.
async fn increment(catalog: &dyn Catalog, lease: &Lease, stream: &StreamName) -> Result<()> {
    let run = retrying(|| catalog.begin_run(lease, BeginRun::new(Trigger::Manual))).await?;
    let current = retrying(|| catalog.get_cursor(&lease.pipeline, stream)).await?;
    let (count, version) = current.map_or((0, 0), |c| {
        (c.value.as_json().as_u64().unwrap_or(0), c.version)
    });
    let advance = CursorAdvance::to(CursorValue::new(json!(count + 1))?).expecting(version);
    retrying(|| catalog.advance(lease, run.id, stream, advance.clone())).await?;
    retrying(|| catalog.finish_run(lease, run.id, FinishRun::succeeded())).await?;
    retrying(|| catalog.release(lease)).await
}

async fn zombie(url: &str, project: &str, pipeline: &str, ttl: Duration) -> Result<()> {
    let catalog = open(url, project).await?;
    let pipeline = PipelineId::new(pipeline)?;
    ensure_pipeline(catalog.as_ref(), &pipeline, CursorKind::Opaque).await?;
    let holder = HolderId::new(format!("zombie-{}", std::process::id()))?;
    let lease = retrying(|| catalog.acquire(&pipeline, &holder, ttl)).await?;
    let run = retrying(|| catalog.begin_run(&lease, BeginRun::new(Trigger::Manual))).await?;
    say(&format!("holding {} {}", lease.epoch, run.id))?;
    let stream = StreamName::new("s")?;
    for i in 1u64.. {
        let value = CursorValue::new(json!({"writer": "zombie", "n": i}))?;
        match retrying(|| catalog.advance_to(&lease, run.id, &stream, value.clone())).await {
            Ok(_) => say(&format!("ack {i}"))?,
            Err(Error::Fenced { reason, .. }) => return say(&format!("fenced {i} {reason}")),
            Err(e) => return Err(e),
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

async fn take_over(url: &str, project: &str, pipeline: &str) -> Result<()> {
    let catalog = open(url, project).await?;
    let pipeline = PipelineId::new(pipeline)?;
    let holder = HolderId::new(format!("successor-{}", std::process::id()))?;
    let lease = retrying(|| catalog.acquire(&pipeline, &holder, Duration::from_secs(30))).await?;
    let run = retrying(|| catalog.begin_run(&lease, BeginRun::new(Trigger::Retry))).await?;
    let stream = StreamName::new("s")?;
    let value = CursorValue::new(json!({"writer": "successor"}))?;
    retrying(|| catalog.advance_to(&lease, run.id, &stream, value.clone())).await?;
    retrying(|| catalog.finish_run(&lease, run.id, FinishRun::succeeded())).await?;
    say(&format!("took {}", lease.epoch))
}

/// Prints each event as a JSON line, flushed at once: a kill loses no recorded event.
struct Lines(std::io::Stdout);

impl Sink for Lines {
    fn record(&mut self, event: HistoryEvent) -> std::io::Result<()> {
        let line = serde_json::to_string(&event)?;
        let mut out = self.0.lock();
        writeln!(out, "{line}")?;
        out.flush()
    }
}

async fn history(url: &str, workload: &Workload, client: u32, start_at_ns: u64) -> Result<()> {
    workload.validate()?;
    check_client(client).map_err(|e| Error::invalid(e.to_string()))?;
    let catalog = open(url, workload.project.as_str()).await?;
    let wait = start_at_ns.saturating_sub(now_ns());
    tokio::time::sleep(Duration::from_nanos(wait)).await;
    run_client(
        catalog.as_ref(),
        workload,
        client,
        &mut Lines(std::io::stdout()),
    )
    .await
    .map_err(|e| Error::Backend(format!("stdout: {e}")))
}

/// The schema a crash-loop finish reports: one more nullable column per run (an additive change,
/// so every finish records a decision and a version), up to 500 columns.
fn schema_for(run_number: u64) -> Result<Schema> {
    let mut columns = vec![Column::new("id", ColumnType::Integer, false)];
    columns.extend(
        (0..run_number.min(500)).map(|i| Column::new(format!("c{i}"), ColumnType::String, true)),
    );
    Schema::new(columns, vec!["id".into()])
}

async fn crash_loop(url: &str, project: &str) -> Result<()> {
    let catalog = open(url, project).await?;
    let pipeline = PipelineId::new("p")?;
    ensure_pipeline(catalog.as_ref(), &pipeline, CursorKind::Monotonic).await?;
    // The previous process was killed holding the lease: take it over, as an operator would.
    let holder = HolderId::new(format!("drill-{}", std::process::id()))?;
    let operator = Actor::Operator(OperatorName::new("crash-test")?);
    let reason = Reason::new("previous drill process was killed")?;
    let ttl = Duration::from_secs(600);
    let lease = catalog
        .force_acquire(&pipeline, &holder, ttl, &operator, &reason)
        .await?;
    let (a, b) = (StreamName::new("a")?, StreamName::new("b")?);
    loop {
        let run = catalog
            .begin_run(&lease, BeginRun::new(Trigger::Schedule))
            .await?;
        let start = catalog
            .get_cursor(&pipeline, &a)
            .await?
            .map_or(0, |c| c.value.as_json().as_u64().unwrap_or(0));
        for step in 1..=3 {
            catalog
                .advance_to(&lease, run.id, &a, CursorValue::new(json!(start + step))?)
                .await?;
        }
        let (end_a, end_b) = (start + 4, start * 2 + 1);
        let columns = match catalog.get_schema(&pipeline, &a, None).await {
            Ok(current) => current.schema.columns().len() as u64,
            Err(Error::NotFound(_)) => 0,
            Err(e) => return Err(e),
        };
        let stats = StreamStats::new(4, 64);
        let finish = FinishRun::succeeded()
            .with_cursor(a.clone(), CursorValue::new(json!(end_a))?)
            .with_cursor(b.clone(), CursorValue::new(json!(end_b))?)
            .with_stats(a.clone(), stats)
            .with_schema(a.clone(), schema_for(columns)?);
        let done = catalog.finish_run(&lease, run.id, finish).await?;
        // Printed only once the finish is acknowledged (committed durably).
        say(&format!("finished {} {end_a} {end_b}", done.id))?;
    }
}

fn hold(kind: HoldKind, file: &Path) -> Result<()> {
    let mut conn = SqliteConnection::open(file, &SqliteConfig::default())?;
    let hold = |conn: &mut SqliteConnection| -> Result<()> {
        match kind {
            // A write, as a lease renewal or a checkpoint would make.
            HoldKind::Write => conn.execute("UPDATE pipelines SET body = body", &[])?,
            HoldKind::Read => conn.query("SELECT count(*) FROM events", &[]).map(drop)?,
        }
        say("holding")?;
        loop {
            std::thread::park();
        }
    };
    match kind {
        HoldKind::Write => conn.with_immediate(hold),
        HoldKind::Read => conn.with_deferred(hold),
    }
}
