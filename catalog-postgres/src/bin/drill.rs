//! `hakiri-postgres-drill`: drives the Postgres catalog from a separate OS process (its own pool,
//! its own connections), for the tests that need real processes.
//!
//! ```text
//! hakiri-postgres-drill race <url> <project> <holder> <seconds> <pipelines>
//!     Until <seconds> have passed: take the lease of one of <pipelines> pipelines (waiting while
//!     another process holds it), begin a run, add 1 to its cursor with compare-and-set on the
//!     version read, finish, release. A `Conflict` there would be a second writer: it fails.
//!     Prints `rounds <n>` at the end.
//! hakiri-postgres-drill zombie <url> <project> <pipeline> <ttl-ms>
//!     Takes the lease of <pipeline> (opaque cursors), begins a run and checkpoints
//!     {"writer":"zombie","n":i} for i = 1, 2, … printing `ack <i>` after each, until a write is
//!     refused: prints `fenced <i>` and exits 0 if it was `Fenced`, fails otherwise.
//! hakiri-postgres-drill take-over <url> <project> <pipeline>
//!     Acquires <pipeline> (its lease must have expired), begins a run, checkpoints
//!     {"writer":"successor"}, finishes and prints `took <epoch>`.
//! ```
//!
//! `Unavailable` is retried everywhere (with a short pause); any other error fails the process.

use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use hakiri_catalog_postgres::{PostgresCatalog, PostgresConfig};
use hakiri_core::{
    Actor, BeginRun, Catalog, CatalogExt, ConnectorRef, CursorAdvance, CursorKind, CursorValue,
    Error, FinishRun, HolderId, Lease, PipelineId, PipelineSpec, ProjectId, Result, StreamName,
    Trigger,
};
use serde_json::json;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cannot start a runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let outcome = match args.as_slice() {
        ["race", url, project, holder, seconds, pipelines] => {
            match (seconds.parse(), pipelines.parse()) {
                (Ok(seconds), Ok(pipelines)) => runtime.block_on(race(
                    url,
                    project,
                    holder,
                    Duration::from_secs(seconds),
                    pipelines,
                )),
                _ => Err(Error::invalid("seconds and pipelines must be numbers")),
            }
        }
        ["zombie", url, project, pipeline, ttl_ms] => match ttl_ms.parse() {
            Ok(ttl) => runtime.block_on(zombie(url, project, pipeline, Duration::from_millis(ttl))),
            Err(_) => Err(Error::invalid("ttl-ms must be a number")),
        },
        ["take-over", url, project, pipeline] => {
            runtime.block_on(take_over(url, project, pipeline))
        }
        _ => Err(Error::invalid(
            "usage: hakiri-postgres-drill race <url> <project> <holder> <seconds> <pipelines> \
             | zombie <url> <project> <pipeline> <ttl-ms> | take-over <url> <project> <pipeline>",
        )),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hakiri-postgres-drill: {e}");
            ExitCode::FAILURE
        }
    }
}

fn say(line: &str) -> Result<()> {
    let mut stdout = std::io::stdout();
    writeln!(stdout, "{line}")
        .and_then(|()| stdout.flush())
        .map_err(|e| Error::Backend(format!("stdout: {e}")))
}

async fn open(url: &str, project: &str) -> Result<PostgresCatalog> {
    let pool = PostgresConfig::default()
        .max_connections(4)
        .connect(url)
        .await?;
    Ok(PostgresCatalog::new(pool, ProjectId::new(project)?))
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

async fn ensure_pipeline(
    catalog: &PostgresCatalog,
    id: &PipelineId,
    kind: CursorKind,
) -> Result<()> {
    let spec = PipelineSpec::new(id.clone(), ConnectorRef::new("drill")?, kind);
    match retrying(|| catalog.create_pipeline(spec.clone(), &Actor::System)).await {
        Ok(_) | Err(Error::AlreadyExists(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

async fn race(
    url: &str,
    project: &str,
    holder: &str,
    duration: Duration,
    pipelines: usize,
) -> Result<()> {
    let catalog = open(url, project).await?;
    let ids: Vec<PipelineId> = (0..pipelines.max(1))
        .map(|i| PipelineId::new(format!("p{i}")))
        .collect::<Result<_>>()?;
    for id in &ids {
        ensure_pipeline(&catalog, id, CursorKind::Monotonic).await?;
    }
    let holder = HolderId::new(holder)?;
    let stream = StreamName::new("count")?;
    let ttl = Duration::from_secs(10);
    let deadline = Instant::now() + duration;
    let mut rounds = 0u64;
    let mut next = holder.as_str().bytes().map(usize::from).sum::<usize>();
    while Instant::now() < deadline {
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
        one_round(&catalog, &lease, &stream).await?;
        rounds += 1;
    }
    say(&format!("rounds {rounds}"))
}

async fn one_round(catalog: &PostgresCatalog, lease: &Lease, stream: &StreamName) -> Result<()> {
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
    ensure_pipeline(&catalog, &pipeline, CursorKind::Opaque).await?;
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
