//! The workload of a history and the client loop that runs one client of it.
//!
//! A [`Workload`] is one project with a few pipelines of numeric (monotonic) cursors on two
//! streams each, and K clients doing M ops, all drawn from one seed. A client ([`run_client`])
//! takes a pipeline's lease — by `acquire`, or by `force_acquire` as a takeover that fences the
//! holder — renews it now and then, begins a run, advances cursors with and without an expected
//! version, finishes with final cursors for both streams, releases sometimes, and reads cursors
//! and pipelines at any time. A client learns it was superseded only when a write is fenced, so the old holder writes
//! again after every takeover (a zombie); now and then it writes once more even after `Fenced`.
//!
//! Every value a history writes is unique (the client's number in the low bits of a value that
//! only grows per client) and larger than the value the client last saw, as the monotonic rule
//! wants: the checker finds a write in the cursor history by its value alone.
//!
//! The lease ttl is long (an hour): no lease expires within a history, so the checker never needs
//! to model expiry.

use std::collections::BTreeMap;
use std::time::Duration;

use hakiri_core::{
    Actor, BeginRun, Catalog, CatalogExt, ConnectorRef, Cursor, CursorAdvance, CursorKind,
    CursorValue, Error, FinishRun, HolderId, Lease, PipelineId, PipelineSpec, ProjectId, Reason,
    Result, RunId, StreamName, Trigger,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::event::{now_ns, ClientId, Event, Op, Outcome, Seen, Sink};

/// The most clients a workload may have: values carry the client's number below this stride.
pub const MAX_CLIENTS: u32 = 1024;
/// Refuses a client numbered [`MAX_CLIENTS`] or more: values carry the client's number below that
/// stride, so such a client would write another client's values. Clients started in place of
/// killed ones count on past `Workload::clients`, so the number is checked, not the workload.
///
/// # Errors
/// `InvalidInput`, naming the client.
pub fn check_client(client: ClientId) -> std::io::Result<()> {
    if client < MAX_CLIENTS {
        return Ok(());
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::InvalidInput,
        format!("client {client}: a history's clients are numbered below {MAX_CLIENTS}"),
    ))
}

/// The lease ttl of every history: far longer than any history runs.
pub const HISTORY_TTL: Duration = Duration::from_secs(3600);

/// What a history does: a project, its pipelines and streams, K clients × M ops, a seed.
#[derive(Debug, Clone, PartialEq)]
pub struct Workload {
    /// The project every client opens.
    pub project: ProjectId,
    /// Its pipelines (monotonic cursors).
    pub pipelines: Vec<PipelineId>,
    /// The streams of every pipeline (two: a finish writes both).
    pub streams: Vec<StreamName>,
    /// How many clients.
    pub clients: u32,
    /// How many ops each client makes.
    pub ops: u32,
    /// The seed every client's choices derive from.
    pub seed: u64,
}

impl Workload {
    /// Three pipelines (`p0`…), streams `a` and `b`, four clients of 40 ops each.
    pub fn new(project: ProjectId, seed: u64) -> Self {
        Self {
            project,
            pipelines: (0..3).map(|i| name(&format!("p{i}"))).collect(),
            streams: vec![stream("a"), stream("b")],
            clients: 4,
            ops: 40,
            seed,
        }
    }

    /// With `n` pipelines, `p0`…
    #[must_use]
    pub fn pipelines(mut self, n: usize) -> Self {
        self.pipelines = (0..n).map(|i| name(&format!("p{i}"))).collect();
        self
    }

    /// With `n` clients (at most [`MAX_CLIENTS`]; [`Workload::setup`] refuses more).
    #[must_use]
    pub fn clients(mut self, n: u32) -> Self {
        self.clients = n;
        self
    }

    /// With `n` ops per client.
    #[must_use]
    pub fn ops(mut self, n: u32) -> Self {
        self.ops = n;
        self
    }

    /// This workload with its shape overridden by the environment, where set:
    /// `HAKIRI_HISTORY_CLIENTS`, `HAKIRI_HISTORY_OPS`, `HAKIRI_HISTORY_PIPELINES` (a soak with
    /// more contention: more clients on fewer pipelines).
    ///
    /// # Panics
    /// When one is set but not a number.
    #[must_use]
    pub fn from_env(self) -> Self {
        let clients = super::env_number("HAKIRI_HISTORY_CLIENTS", u64::from(self.clients));
        let ops = super::env_number("HAKIRI_HISTORY_OPS", u64::from(self.ops));
        let pipelines = super::env_number("HAKIRI_HISTORY_PIPELINES", self.pipelines.len() as u64);
        let fit = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
        self.clients(fit(clients))
            .ops(fit(ops))
            .pipelines(usize::try_from(pipelines).unwrap_or(usize::MAX))
    }

    /// Creates the workload's pipelines on `catalog` (one already there is kept), after checking
    /// the workload's shape.
    ///
    /// # Errors
    /// `InvalidArgument` for no pipeline, not two streams, or too many clients; what the
    /// catalog answers otherwise.
    pub async fn setup(&self, catalog: &dyn Catalog) -> Result<()> {
        self.validate()?;
        for pipeline in &self.pipelines {
            let spec = PipelineSpec::new(
                pipeline.clone(),
                ConnectorRef::new("history")?,
                CursorKind::Monotonic,
            );
            match catalog.create_pipeline(spec, &Actor::System).await {
                Ok(_) | Err(Error::AlreadyExists(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Checks the workload's shape.
    ///
    /// # Errors
    /// `InvalidArgument` for no pipeline, not two streams, or no or too many clients.
    pub fn validate(&self) -> Result<()> {
        if self.pipelines.is_empty() || self.streams.len() != 2 {
            return Err(Error::invalid(
                "a workload needs at least one pipeline and exactly two streams",
            ));
        }
        if self.clients == 0 || self.clients > MAX_CLIENTS {
            return Err(Error::invalid(format!(
                "a workload has 1..={MAX_CLIENTS} clients, not {}",
                self.clients
            )));
        }
        Ok(())
    }
}

fn name(id: &str) -> PipelineId {
    PipelineId::new(id).expect("generated pipeline ids are valid")
}

fn stream(id: &str) -> StreamName {
    StreamName::new(id).expect("generated stream names are valid")
}

/// Runs client `client` of `workload` on `catalog`, recording every call in `sink`: its invoke
/// before the call, its completion after. Never panics on a catalog error: it records it and goes
/// on.
///
/// # Errors
/// The sink's (a history with holes cannot be checked), or `InvalidInput` for a workload that
/// [`Workload::validate`] refuses.
pub async fn run_client(
    catalog: &dyn Catalog,
    workload: &Workload,
    client: ClientId,
    sink: &mut (dyn Sink + Send),
) -> std::io::Result<()> {
    workload
        .validate()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;
    check_client(client)?;
    let seed = workload
        .seed
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(u64::from(client));
    let mut c = Client {
        catalog,
        workload,
        id: client,
        sink,
        rng: StdRng::seed_from_u64(seed),
        next_op: 0,
        holder: HolderId::new(format!("client-{client}")).expect("generated holder ids are valid"),
        held: None,
        last_base: 0,
        known: BTreeMap::new(),
    };
    for _ in 0..workload.ops {
        c.step().await?;
        // Let the other clients in between calls, as network latency would: an in-memory
        // catalog answers without ever suspending.
        tokio::task::yield_now().await;
    }
    Ok(())
}

/// A lease a client believes it holds, and its run.
struct Held {
    lease: Lease,
    run: Option<RunId>,
}

/// One client's state: what it holds and the cursors it last saw.
struct Client<'a> {
    catalog: &'a dyn Catalog,
    workload: &'a Workload,
    id: ClientId,
    sink: &'a mut (dyn Sink + Send),
    rng: StdRng,
    next_op: u64,
    holder: HolderId,
    held: Option<Held>,
    /// The high part of the last value written: values only grow per client.
    last_base: u64,
    /// The last (version, value) seen of each cursor.
    known: BTreeMap<(PipelineId, StreamName), (u64, u64)>,
}

impl Client<'_> {
    /// Records an invoke and returns its op id.
    fn invoke(&mut self, op: Op) -> std::io::Result<u64> {
        let op_id = self.next_op;
        self.next_op += 1;
        self.sink.record(Event::Invoke {
            client: self.id,
            op_id,
            op,
            at_ns: now_ns(),
        })?;
        Ok(op_id)
    }

    /// Records the completion of `op_id`: `reply` of the value, or the error.
    fn complete<T>(
        &mut self,
        op_id: u64,
        result: &Result<T>,
        reply: impl FnOnce(&T) -> Outcome,
    ) -> std::io::Result<()> {
        let at_ns = now_ns();
        let outcome = match result {
            Ok(value) => reply(value),
            Err(error) => Outcome::Failed {
                error: error.clone(),
            },
        };
        self.sink.record(Event::Complete {
            client: self.id,
            op_id,
            outcome,
            at_ns,
        })
    }

    fn pick_pipeline(&mut self) -> PipelineId {
        let i = self.rng.random_range(0..self.workload.pipelines.len());
        self.workload.pipelines[i].clone()
    }

    fn pick_stream(&mut self) -> StreamName {
        let i = self.rng.random_range(0..self.workload.streams.len());
        self.workload.streams[i].clone()
    }

    /// A value no other write of the history uses, above `above`.
    fn fresh(&mut self, above: u64) -> u64 {
        let stride = u64::from(MAX_CLIENTS);
        let base = (above / stride).max(self.last_base) + 1 + self.rng.random_range(0..3);
        self.last_base = base;
        base * stride + u64::from(self.id)
    }

    fn known(&self, pipeline: &PipelineId, stream: &StreamName) -> (u64, u64) {
        self.known
            .get(&(pipeline.clone(), stream.clone()))
            .copied()
            .unwrap_or((0, 0))
    }

    fn saw(&mut self, pipeline: &PipelineId, seen: &Seen) {
        if let Some(value) = seen.value {
            self.known.insert(
                (pipeline.clone(), seen.stream.clone()),
                (seen.version, value),
            );
        }
    }

    /// One op (or a read and the write it prepares).
    async fn step(&mut self) -> std::io::Result<()> {
        if self.rng.random_ratio(1, 4) {
            return self.read().await;
        }
        match &self.held {
            None => self.take_lease().await,
            Some(Held { run: None, .. }) => match self.rng.random_range(0..10) {
                0 => self.release().await,
                1 => self.renew().await,
                _ => self.begin().await,
            },
            Some(Held { run: Some(_), .. }) => {
                if self.rng.random_ratio(1, 5) {
                    self.finish().await
                } else {
                    self.advance().await
                }
            }
        }
    }

    /// A read of a random pipeline: one cursor, all of them, or the pipeline.
    async fn read(&mut self) -> std::io::Result<()> {
        let pipeline = self.pick_pipeline();
        match self.rng.random_range(0..3) {
            0 => {
                let stream = self.pick_stream();
                self.get_cursor(&pipeline, &stream).await.map(drop)
            }
            1 => {
                let op = self.invoke(Op::ListCursors {
                    pipeline: pipeline.clone(),
                })?;
                let result = self.catalog.list_cursors(&pipeline).await;
                self.complete(op, &result, |cursors| Outcome::Read {
                    cursors: cursors.iter().map(seen).collect(),
                })?;
                for cursor in result.iter().flatten() {
                    self.saw(&pipeline, &seen(cursor));
                }
                Ok(())
            }
            _ => {
                let op = self.invoke(Op::GetPipeline {
                    pipeline: pipeline.clone(),
                })?;
                let result = self.catalog.get_pipeline(&pipeline).await;
                self.complete(op, &result, |p| Outcome::Pipeline {
                    generation: p.generation.get(),
                })
            }
        }
    }

    /// Reads one cursor; returns what it saw (version 0 and value 0 for none) if it answered.
    async fn get_cursor(
        &mut self,
        pipeline: &PipelineId,
        stream: &StreamName,
    ) -> std::io::Result<Option<(u64, u64)>> {
        let op = self.invoke(Op::GetCursor {
            pipeline: pipeline.clone(),
            stream: stream.clone(),
        })?;
        let result = self.catalog.get_cursor(pipeline, stream).await;
        self.complete(op, &result, |cursor| Outcome::Read {
            cursors: cursor.iter().map(seen).collect(),
        })?;
        Ok(match result {
            Ok(Some(cursor)) => {
                let seen = seen(&cursor);
                self.saw(pipeline, &seen);
                Some((seen.version, seen.value.unwrap_or(0)))
            }
            Ok(None) => Some((0, 0)),
            Err(_) => None,
        })
    }

    /// Takes a random pipeline's lease: a plain acquire, or a takeover one time in three.
    async fn take_lease(&mut self) -> std::io::Result<()> {
        let pipeline = self.pick_pipeline();
        let ttl = HISTORY_TTL;
        let result = if self.rng.random_ratio(1, 3) {
            let op = self.invoke(Op::ForceAcquire {
                pipeline: pipeline.clone(),
                holder: self.holder.clone(),
            })?;
            let by = Actor::System;
            let reason = Reason::new("history takeover").expect("a valid reason");
            let result = self
                .catalog
                .force_acquire(&pipeline, &self.holder, ttl, &by, &reason)
                .await;
            self.complete(op, &result, granted)?;
            result
        } else {
            let op = self.invoke(Op::Acquire {
                pipeline: pipeline.clone(),
                holder: self.holder.clone(),
            })?;
            let result = self.catalog.acquire(&pipeline, &self.holder, ttl).await;
            self.complete(op, &result, granted)?;
            result
        };
        if let Ok(lease) = result {
            self.held = Some(Held { lease, run: None });
        }
        Ok(())
    }

    /// Releases the held lease.
    async fn release(&mut self) -> std::io::Result<()> {
        let Some(held) = self.held.take() else {
            return Ok(());
        };
        let op = self.invoke(Op::Release {
            pipeline: held.lease.pipeline.clone(),
            epoch: held.lease.epoch,
        })?;
        let result = self.catalog.release(&held.lease).await;
        self.complete(op, &result, |()| Outcome::Done)
    }

    /// Renews the held lease (for the history's ttl again).
    async fn renew(&mut self) -> std::io::Result<()> {
        let Some(held) = self.held.take() else {
            return Ok(());
        };
        let op = self.invoke(Op::Renew {
            pipeline: held.lease.pipeline.clone(),
            epoch: held.lease.epoch,
        })?;
        let result = self.catalog.renew(&held.lease, HISTORY_TTL).await;
        self.complete(op, &result, |lease| Outcome::Renewed { epoch: lease.epoch })?;
        let held = match &result {
            Ok(lease) => Held {
                lease: lease.clone(),
                ..held
            },
            Err(_) => held,
        };
        self.after_write(held, &result, None);
        Ok(())
    }

    /// Begins a run under the held lease.
    async fn begin(&mut self) -> std::io::Result<()> {
        let Some(held) = self.held.take() else {
            return Ok(());
        };
        let op = self.invoke(Op::BeginRun {
            pipeline: held.lease.pipeline.clone(),
            epoch: held.lease.epoch,
        })?;
        let result = self
            .catalog
            .begin_run(&held.lease, BeginRun::new(Trigger::Manual))
            .await;
        self.complete(op, &result, |run| Outcome::Began { run: run.id })?;
        let run = result.as_ref().ok().map(|run| run.id);
        self.after_write(held, &result, run.map(Some));
        Ok(())
    }

    /// Advances one stream of the held run: a compare-and-set on the version just read, on the
    /// version last seen (perhaps stale: a `Conflict`), or no expected version at all.
    async fn advance(&mut self) -> std::io::Result<()> {
        let Some(Held {
            lease,
            run: Some(run),
        }) = self.held.as_ref().map(|h| Held {
            lease: h.lease.clone(),
            run: h.run,
        })
        else {
            return Ok(());
        };
        let pipeline = lease.pipeline.clone();
        let stream = self.pick_stream();
        let expected_version = match self.rng.random_range(0..4) {
            0 | 1 => match self.get_cursor(&pipeline, &stream).await? {
                Some((version, _)) => Some(version),
                None => return Ok(()),
            },
            2 => Some(self.known(&pipeline, &stream).0),
            _ => None,
        };
        let value = self.fresh(self.known(&pipeline, &stream).1);
        let op = self.invoke(Op::Advance {
            pipeline: pipeline.clone(),
            stream: stream.clone(),
            epoch: lease.epoch,
            run,
            value,
            expected_version,
        })?;
        let advance = CursorAdvance {
            value: CursorValue::new(serde_json::json!(value)).expect("a number is a valid value"),
            expected_version,
        };
        let result = self.catalog.advance(&lease, run, &stream, advance).await;
        self.complete(op, &result, |cursor| Outcome::Advanced {
            cursor: seen(cursor),
        })?;
        if let Ok(cursor) = &result {
            self.saw(&pipeline, &seen(cursor));
        }
        if let Some(held) = self.held.take() {
            self.after_write(held, &result, None);
        }
        Ok(())
    }

    /// Finishes the held run with a final cursor on every stream; releases the lease half the
    /// time after.
    async fn finish(&mut self) -> std::io::Result<()> {
        let Some(held) = self.held.take() else {
            return Ok(());
        };
        let Some(run) = held.run else {
            self.held = Some(held);
            return Ok(());
        };
        let pipeline = held.lease.pipeline.clone();
        let mut cursors = Vec::new();
        let mut finish = FinishRun::succeeded();
        for stream in self.workload.streams.clone() {
            let value = self.fresh(self.known(&pipeline, &stream).1);
            cursors.push((stream.clone(), value));
            finish = finish.with_cursor(
                stream,
                CursorValue::new(serde_json::json!(value)).expect("a number is a valid value"),
            );
        }
        let op = self.invoke(Op::Finish {
            pipeline: pipeline.clone(),
            epoch: held.lease.epoch,
            run,
            cursors: cursors.clone(),
        })?;
        let result = self.catalog.finish_run(&held.lease, run, finish).await;
        self.complete(op, &result, |_| Outcome::Done)?;
        if result.is_ok() {
            for (stream, value) in cursors {
                let version = self.known(&pipeline, &stream).0;
                self.known
                    .insert((pipeline.clone(), stream), (version, value));
            }
        }
        // The run is over whatever the answer: a failed finish leaves it to be abandoned.
        let held = Held { run: None, ..held };
        self.after_write(held, &result, Some(None));
        if self.held.is_some() && self.rng.random_bool(0.5) {
            self.release().await?;
        }
        Ok(())
    }

    /// Keeps or drops the lease after a lease-checked write: a fenced client usually stops (and
    /// sometimes writes once more, a zombie that has not noticed); `run` replaces the held run.
    fn after_write<T>(&mut self, mut held: Held, result: &Result<T>, run: Option<Option<RunId>>) {
        if let Some(run) = run {
            held.run = run;
        }
        match result {
            Err(Error::Fenced { .. }) if self.rng.random_ratio(2, 3) => {}
            // A begin refused because a run already runs (one whose finish was lost): give up.
            Err(Error::FailedPrecondition(_)) => {}
            _ => self.held = Some(held),
        }
    }
}

/// A granted lease as an outcome.
fn granted(lease: &Lease) -> Outcome {
    Outcome::Granted {
        epoch: lease.epoch,
        holder: lease.holder.clone(),
    }
}

/// A cursor as seen.
fn seen(cursor: &Cursor) -> Seen {
    Seen {
        stream: cursor.stream.clone(),
        version: cursor.version,
        value: cursor.value.as_json().as_u64(),
    }
}
