//! `hakiri-sqlite-drill`: drives the embedded catalog from a separate OS process, for the tests
//! that need real processes (crash recovery under SIGKILL, several processes on one file).
//!
//! ```text
//! hakiri-sqlite-drill crash-loop <db> <project>
//!     Takes over pipeline "p" and loops begin → checkpoints → finish until killed, printing
//!     `finished <run> <cursor a> <cursor b>` after each acknowledged finish.
//! hakiri-sqlite-drill race <db> <project> <holder> <rounds> <pipelines>
//!     <rounds> times: take a lease on one of <pipelines> pipelines (waiting while others hold
//!     it), begin, add 1 to its cursor with compare-and-set, finish, release.
//! hakiri-sqlite-drill hold <write|read> <db>
//!     Opens a transaction on the file — a write transaction holding SQLite's write lock, or a
//!     read transaction holding a snapshot — prints `holding`, and never ends it: what a process
//!     stopped inside a transaction looks like to the others (the stall tests then SIGSTOP it).
//! ```

#[cfg(not(target_arch = "wasm32"))]
fn main() -> std::process::ExitCode {
    native::main()
}

#[cfg(target_arch = "wasm32")]
fn main() {}

#[cfg(not(target_arch = "wasm32"))]
mod native {
    use std::io::Write;
    use std::process::ExitCode;
    use std::time::Duration;

    use hakiri_catalog_do::store::Exec;
    use hakiri_catalog_do::{SqliteCatalog, SqliteConfig, SqliteConnection};
    use hakiri_core::{
        Actor, BeginRun, Catalog, CatalogExt, Column, ColumnType, ConnectorRef, CursorAdvance,
        CursorKind, CursorValue, Error, FinishRun, HolderId, OperatorName, PipelineId,
        PipelineSpec, ProjectId, Reason, Result, Schema, StreamName, StreamStats, Trigger,
    };
    use serde_json::json;

    pub(crate) fn main() -> ExitCode {
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
        let outcome = match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
            ["crash-loop", db, project] => runtime.block_on(crash_loop(db, project)),
            ["race", db, project, holder, rounds, pipelines] => {
                match (rounds.parse(), pipelines.parse()) {
                    (Ok(rounds), Ok(pipelines)) => runtime.block_on(race(db, project, holder, rounds, pipelines)),
                    _ => Err(Error::invalid("rounds and pipelines must be numbers")),
                }
            }
            ["hold", kind @ ("write" | "read"), db] => hold(kind, db),
            _ => Err(Error::invalid(
                "usage: hakiri-sqlite-drill crash-loop <db> <project> | race <db> <project> <holder> <rounds> <pipelines> | hold <write|read> <db>",
            )),
        };
        match outcome {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("hakiri-sqlite-drill: {e}");
                ExitCode::FAILURE
            }
        }
    }

    fn open(db: &str, project: &str) -> Result<SqliteCatalog> {
        SqliteCatalog::open(db, ProjectId::new(project)?, SqliteConfig::default())
    }

    async fn ensure_pipeline(catalog: &SqliteCatalog, id: &PipelineId) -> Result<()> {
        let spec = PipelineSpec::new(
            id.clone(),
            ConnectorRef::new("drill")?,
            CursorKind::Monotonic,
        );
        match catalog.create_pipeline(spec, &Actor::System).await {
            Ok(_) | Err(Error::AlreadyExists(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The schema a finish reports: one more nullable column per run (an additive change, so
    /// every finish records a decision and a version), up to 500 columns (then the schema stays the same).
    fn schema_for(run_number: u64) -> Result<Schema> {
        let mut list = vec![Column::new("id", ColumnType::Integer, false)];
        list.extend(
            (0..run_number.min(500))
                .map(|i| Column::new(format!("c{i}"), ColumnType::String, true)),
        );
        Schema::new(list, vec!["id".into()])
    }

    async fn crash_loop(db: &str, project: &str) -> Result<()> {
        let catalog = open(db, project)?;
        let pipeline = PipelineId::new("p")?;
        ensure_pipeline(&catalog, &pipeline).await?;
        // The previous process was killed holding the lease: take it over, as an operator would.
        let holder = HolderId::new(format!("drill-{}", std::process::id()))?;
        let operator = Actor::Operator(OperatorName::new("crash-test")?);
        let ttl = Duration::from_secs(600);
        let lease = catalog
            .force_acquire(
                &pipeline,
                &holder,
                ttl,
                &operator,
                &Reason::new("previous drill process was killed")?,
            )
            .await?;
        let (a, b) = (StreamName::new("a")?, StreamName::new("b")?);
        let mut stdout = std::io::stdout();
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
            let next_columns = match catalog.get_schema(&pipeline, &a, None).await {
                Ok(current) => current.schema.columns().len() as u64,
                Err(Error::NotFound(_)) => 0,
                Err(e) => return Err(e),
            };
            let finish = FinishRun::succeeded()
                .with_cursor(a.clone(), CursorValue::new(json!(end_a))?)
                .with_cursor(b.clone(), CursorValue::new(json!(end_b))?)
                .with_stats(
                    a.clone(),
                    StreamStats {
                        records: 4,
                        bytes: 64,
                    },
                )
                .with_schema(a.clone(), schema_for(next_columns)?);
            let done = catalog.finish_run(&lease, run.id, finish).await?;
            // Printed only after the finish is acknowledged (committed with FULL durability).
            writeln!(stdout, "finished {} {end_a} {end_b}", done.id)
                .map_err(|e| Error::Backend(e.to_string()))?;
            stdout.flush().map_err(|e| Error::Backend(e.to_string()))?;
        }
    }

    async fn race(
        db: &str,
        project: &str,
        holder: &str,
        rounds: u64,
        pipelines: u64,
    ) -> Result<()> {
        let catalog = open(db, project)?;
        let ids: Vec<PipelineId> = (0..pipelines)
            .map(|i| PipelineId::new(format!("p{i}")))
            .collect::<Result<_>>()?;
        for id in &ids {
            ensure_pipeline(&catalog, id).await?;
        }
        let holder = HolderId::new(holder)?;
        let stream = StreamName::new("count")?;
        for round in 0..rounds {
            let pipeline = &ids[usize::try_from(round % pipelines).unwrap_or(0)];
            let lease = loop {
                match catalog
                    .acquire(pipeline, &holder, Duration::from_secs(30))
                    .await
                {
                    Ok(lease) => break lease,
                    Err(Error::Leased { .. } | Error::Unavailable(_)) => {
                        tokio::time::sleep(Duration::from_millis(1)).await
                    }
                    Err(e) => return Err(e),
                }
            };
            let run = catalog
                .begin_run(&lease, BeginRun::new(Trigger::Manual))
                .await?;
            let current = catalog.get_cursor(pipeline, &stream).await?;
            let (count, version) = current.map_or((0, 0), |c| {
                (c.value.as_json().as_u64().unwrap_or(0), c.version)
            });
            let advance = CursorAdvance::to(CursorValue::new(json!(count + 1))?).expecting(version);
            catalog.advance(&lease, run.id, &stream, advance).await?;
            catalog
                .finish_run(&lease, run.id, FinishRun::succeeded())
                .await?;
            catalog.release(&lease).await?;
        }
        Ok(())
    }

    fn hold(kind: &str, db: &str) -> Result<()> {
        let mut conn = SqliteConnection::open(std::path::Path::new(db), &SqliteConfig::default())?;
        let hold = |conn: &mut SqliteConnection| -> Result<()> {
            if kind == "write" {
                // A write, as a lease renewal or a checkpoint would make.
                conn.execute("UPDATE pipelines SET body = body", &[])?;
            } else {
                conn.query("SELECT count(*) FROM events", &[])?;
            }
            println!("holding");
            std::io::stdout()
                .flush()
                .map_err(|e| Error::Backend(e.to_string()))?;
            loop {
                std::thread::park();
            }
        };
        if kind == "write" {
            conn.with_immediate(hold)
        } else {
            conn.with_deferred(hold)
        }
    }
}
