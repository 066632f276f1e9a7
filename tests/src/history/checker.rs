//! The checker: is a history linearizable for cursor compare-and-set, and did leases never
//! overlap?
//!
//! Checking linearizability in general is NP-complete (a search over the orders of concurrent
//! operations). A cursor is a *traceable* object, though: every write gets a version, and the
//! catalog keeps the whole history of versions with the epoch and run that wrote each. Read after
//! the clients stop, that history *is* the order the catalog applied the writes in (the Elle
//! approach: the object's own versions witness the order), and with every value unique each
//! entry names the call that wrote it. What is left is to check the witness against the calls'
//! answers and their real-time order — a sort of the events and one pass over them, instead of
//! a search. ADR 0031 says why. (A few secondary checks — whether a refusal (`Fenced`, `Leased`)
//! was right, whether a read saw half a finish — scan the other calls per refusal or read:
//! quadratic, and still milliseconds at the size of a history.)
//!
//! # What is checked
//! - the events themselves: each client is sequential and only its last call may lack an answer
//!   (anything else means lines were lost on the way), every completion has its invoke, every
//!   value is written once;
//! - (a) no lost write: every acknowledged write is in the history, at the version and with the
//!   value it was acknowledged with;
//! - (b) no phantom or half-applied write: every entry comes from an invoked write of that epoch
//!   and run that did not fail definitely; versions run 1, 2, … without gaps; values grow;
//! - (c) real time: a write that completed before another was invoked has a smaller version; a
//!   read sees at least every version completed (written or read) before it was invoked, never a
//!   version whose write was invoked after the read completed, and the value of its version;
//! - (d) compare-and-set: one that took effect wrote exactly expected + 1; one refused with
//!   `Conflict` found the version other than expected at some instant of its interval, and the
//!   version it names as found is one that was current at some instant of that interval;
//! - (e) leases: epochs granted on a pipeline are unique, name the caller as holder and grow in
//!   real-time order; every cursor version of an epoch was written by its holder; a plain `acquire` is granted only after the previous epoch was released or
//!   taken over; no lease-checked write under epoch e succeeds when it was invoked after a grant of
//!   a higher epoch completed (fencing), and none is fenced before its epoch was superseded or
//!   released, nor as superseded by an epoch not above its own; an acquire refused with `Leased`
//!   names a live lease (its epoch's holder, neither released nor superseded before the acquire
//!   began); epochs never decrease along a cursor's versions;
//! - (f) atomic finish: a finish's final cursors are all in the history or none is, and no
//!   `list_cursors` saw one stream of a finish without the other; its run succeeded exactly when
//!   they are (no status without cursors, no cursors without status).
//!
//! - (g) reads of what no call changes: every `get_pipeline` finds its pipeline (the workload
//!   never deletes one), and all of a pipeline's answers give one generation (the workload never
//!   changes a spec).
//!
//! An invoke without a completion (its process was killed) and a completion with an error that
//! does not say the write was refused (`Unavailable`, `Backend`) are indeterminate: such a write
//! may or may not be in the history, is checked only if it is, and may have taken effect at any
//! time after its invoke (a server may commit after the client gave up waiting), so it orders
//! nothing that began after its completion.
//!

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use hakiri_core::{
    Actor, Catalog, CursorChange, CursorHistoryEntry, Epoch, Error, FenceReason, Limit, PipelineId,
    Result, RunId, RunQuery, RunStatus, StreamName,
};

use super::event::{ClientId, Event, Op, Outcome};
use super::workload::Workload;

/// The state the checker reads once the clients stopped: every cursor's whole history, and the
/// status of every run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FinalState {
    /// Per pipeline and stream, the cursor's history, oldest version first.
    pub histories: BTreeMap<PipelineId, BTreeMap<StreamName, Vec<CursorHistoryEntry>>>,
    /// Every run of the workload's pipelines, and its status.
    pub runs: BTreeMap<RunId, RunStatus>,
}

/// Reads the whole cursor history of every pipeline and stream of `workload`, and every run of
/// its pipelines.
///
/// # Errors
/// What the catalog answers.
pub async fn read_final_state(catalog: &dyn Catalog, workload: &Workload) -> Result<FinalState> {
    let mut state = FinalState::default();
    for pipeline in &workload.pipelines {
        let mut query = RunQuery::all().pipeline(pipeline.clone()).limit(Limit::MAX);
        loop {
            let page = catalog.list_runs(&query).await?;
            state
                .runs
                .extend(page.items.iter().map(|run| (run.id, run.status)));
            match page.next {
                Some(next) => query = query.before(next),
                None => break,
            }
        }
        for stream in &workload.streams {
            let mut entries = Vec::new();
            let mut before = None;
            loop {
                let page = catalog
                    .cursor_history(pipeline, stream, before, Limit::MAX)
                    .await?;
                entries.extend(page.items);
                match page.next {
                    Some(next) => before = Some(next),
                    None => break,
                }
            }
            entries.reverse();
            state
                .histories
                .entry(pipeline.clone())
                .or_default()
                .insert(stream.clone(), entries);
        }
    }
    Ok(state)
}

/// Which rule a violation breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Rule {
    /// The events themselves are inconsistent (a completion without invoke, a value written
    /// twice): the history cannot be checked.
    Malformed,
    /// (a) An acknowledged write is missing or differs.
    LostWrite,
    /// (b) An entry no call can explain, or from a call that failed.
    PhantomWrite,
    /// (c) Real-time order broken.
    RealTime,
    /// (d) Compare-and-set broken.
    CompareAndSet,
    /// (e) Leases overlapped or a stale epoch wrote.
    Lease,
    /// (f) Half a finish.
    Atomicity,
    /// (g) A read of what no call changes failed or changed.
    StableRead,
}

/// One broken rule, said in a sentence that names the calls and their times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The rule.
    pub rule: Rule,
    /// What happened.
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{:?}] {}", self.rule, self.message)
    }
}

/// What a check found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    /// Histories summed into this report.
    pub histories: usize,
    /// Calls invoked.
    pub operations: usize,
    /// Calls that succeeded.
    pub acknowledged: usize,
    /// Calls that failed definitely (nothing changed).
    pub failed: usize,
    /// Calls without an answer, or with one that says nothing (`Unavailable`).
    pub indeterminate: usize,
    /// Acknowledged writes missing from the cursor histories.
    pub lost_writes: usize,
    /// Histories that broke a rule.
    pub broken_histories: usize,
    /// Every broken rule.
    pub violations: Vec<Violation>,
    /// How many calls of each kind got each answer (`advance-cas conflict`…): what the
    /// histories exercised.
    pub tally: BTreeMap<String, u64>,
}

impl Report {
    /// Adds `other` (another history's report) to this one.
    pub fn merge(&mut self, other: Report) {
        self.histories += other.histories;
        self.operations += other.operations;
        self.acknowledged += other.acknowledged;
        self.failed += other.failed;
        self.indeterminate += other.indeterminate;
        self.lost_writes += other.lost_writes;
        self.broken_histories += other.broken_histories;
        self.violations.extend(other.violations);
        for (kind, n) in other.tally {
            *self.tally.entry(kind).or_default() += n;
        }
    }

    /// The line `scripts/soak` adds up: `soak: histories N operations N divergences N
    /// lost-writes N in T`, a divergence being a history that broke a rule.
    pub fn soak_line(&self, took: std::time::Duration) -> String {
        format!(
            "soak: histories {} operations {} divergences {} lost-writes {} in {took:.1?}",
            self.histories, self.operations, self.broken_histories, self.lost_writes
        )
    }

    /// Whether every rule held.
    pub fn is_ok(&self) -> bool {
        self.violations.is_empty()
    }

    /// How many calls of `op` got `outcome` (names as in [`Op::name`], [`Outcome::name`]).
    pub fn count(&self, op: &str, outcome: &str) -> u64 {
        self.tally
            .get(&format!("{op} {outcome}"))
            .copied()
            .unwrap_or(0)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} histories: {} operations, {} acknowledged, {} failed, {} indeterminate, \
             {} lost writes, {} violations",
            self.histories,
            self.operations,
            self.acknowledged,
            self.failed,
            self.indeterminate,
            self.lost_writes,
            self.violations.len()
        )?;
        let tally: Vec<String> = self.tally.iter().map(|(k, n)| format!("{k} {n}")).collect();
        writeln!(f, "  answers: {}", tally.join(", "))?;
        for violation in &self.violations {
            writeln!(f, "  {violation}")?;
        }
        Ok(())
    }
}

/// How a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Ok,
    Failed,
    Indeterminate,
}

/// One call: its invoke and, if it came, its completion.
struct Call<'a> {
    client: ClientId,
    op_id: u64,
    op: &'a Op,
    invoke: u64,
    complete: Option<(u64, &'a Outcome)>,
}

impl Call<'_> {
    fn status(&self) -> Status {
        match self.complete {
            Some((_, outcome)) if outcome.succeeded() => Status::Ok,
            Some((_, outcome)) if outcome.failed_definitely() => Status::Failed,
            _ => Status::Indeterminate,
        }
    }

    fn outcome(&self) -> Option<&Outcome> {
        self.complete.map(|(_, outcome)| outcome)
    }

    /// When the call is known to have taken effect or not: its completion, unless the answer
    /// says nothing (`Unavailable`), in which case the call may take effect any time after its
    /// invoke, as one never answered (a server may commit after the client gave up).
    fn completed_at(&self) -> Option<u64> {
        match self.status() {
            Status::Indeterminate => None,
            Status::Ok | Status::Failed => self.complete.map(|(at, _)| at),
        }
    }
}

/// Checks `events` (in any order; the events of several processes merged) against `state`.
pub fn check(events: &[Event], state: &FinalState) -> Report {
    let mut cx = Checker::new(events, state);
    cx.sequential_clients();
    cx.count();
    cx.locate_entries();
    cx.acknowledged_writes();
    cx.compare_and_set();
    cx.real_time();
    cx.leases();
    cx.atomic_finishes();
    cx.stable_reads();
    cx.report.broken_histories = usize::from(!cx.report.violations.is_empty());
    cx.report
}

/// The version each stream of a finish landed at.
type Versions<'a> = BTreeMap<&'a StreamName, u64>;

/// Where a write landed: (call index, stream) → version.
type Landed = HashMap<(usize, StreamName), u64>;

struct Checker<'a> {
    calls: Vec<Call<'a>>,
    state: &'a FinalState,
    /// The first event's time: messages give times relative to it.
    origin: u64,
    landed: Landed,
    /// (pipeline, stream, version) → the call that wrote it, where known.
    writer: HashMap<(PipelineId, StreamName, u64), usize>,
    report: Report,
}

impl<'a> Checker<'a> {
    fn new(events: &'a [Event], state: &'a FinalState) -> Self {
        let mut report = Report {
            histories: 1,
            ..Report::default()
        };
        let origin = events.iter().map(Event::at_ns).min().unwrap_or(0);
        let mut index: HashMap<(ClientId, u64), usize> = HashMap::new();
        let mut calls: Vec<Call<'a>> = Vec::new();
        let mut completions = Vec::new();
        for event in events {
            match event {
                Event::Invoke {
                    client,
                    op_id,
                    op,
                    at_ns,
                } => {
                    if index.insert((*client, *op_id), calls.len()).is_some() {
                        report.violations.push(Violation {
                            rule: Rule::Malformed,
                            message: format!("client {client} invoked op {op_id} twice"),
                        });
                        continue;
                    }
                    calls.push(Call {
                        client: *client,
                        op_id: *op_id,
                        op,
                        invoke: *at_ns,
                        complete: None,
                    });
                }
                Event::Complete {
                    client,
                    op_id,
                    outcome,
                    at_ns,
                } => completions.push((*client, *op_id, outcome, *at_ns)),
            }
        }
        for (client, op_id, outcome, at_ns) in completions {
            match index.get(&(client, op_id)) {
                Some(&i) if calls[i].complete.is_none() && calls[i].invoke <= at_ns => {
                    calls[i].complete = Some((at_ns, outcome));
                }
                _ => report.violations.push(Violation {
                    rule: Rule::Malformed,
                    message: format!(
                        "client {client} op {op_id} completed without a matching invoke before \
                         it"
                    ),
                }),
            }
        }
        Self {
            calls,
            state,
            origin,
            landed: HashMap::new(),
            writer: HashMap::new(),
            report,
        }
    }

    /// Each client is sequential: its op ids run 0, 1, … and each call ends before the next
    /// begins; only its last call may lack an answer (its process was killed). Anything else
    /// means lines were lost between the client and the checker.
    fn sequential_clients(&mut self) {
        let mut by_client: BTreeMap<ClientId, Vec<&Call<'_>>> = BTreeMap::new();
        for call in &self.calls {
            by_client.entry(call.client).or_default().push(call);
        }
        let mut flags = Vec::new();
        for (client, mut calls) in by_client {
            calls.sort_by_key(|c| c.op_id);
            for (n, pair) in calls.windows(2).enumerate() {
                let (call, next) = (pair[0], pair[1]);
                if n == 0 && call.op_id != 0 {
                    flags.push(format!(
                        "client {client}'s first recorded op is {}",
                        call.op_id
                    ));
                }
                if next.op_id != call.op_id + 1 {
                    flags.push(format!(
                        "client {client} has no op between {} and {}",
                        call.op_id, next.op_id
                    ));
                }
                match call.complete {
                    None => flags.push(format!(
                        "client {client}'s op {} has no answer, yet op {} follows it",
                        call.op_id, next.op_id
                    )),
                    Some((at, _)) if at > next.invoke => flags.push(format!(
                        "client {client}'s op {} began before op {} ended",
                        next.op_id, call.op_id
                    )),
                    Some(_) => {}
                }
            }
        }
        for message in flags {
            self.flag(Rule::Malformed, message);
        }
    }

    fn flag(&mut self, rule: Rule, message: String) {
        self.report.violations.push(Violation { rule, message });
    }

    /// A call in words: who, what, when.
    fn describe(&self, i: usize) -> String {
        let call = &self.calls[i];
        let ms = |at: u64| at.saturating_sub(self.origin) as f64 / 1e6;
        let what = match call.op {
            Op::Acquire { pipeline, holder } => format!("acquire {pipeline} as {holder}"),
            Op::ForceAcquire { pipeline, holder } => {
                format!("force_acquire {pipeline} as {holder}")
            }
            Op::Release { pipeline, epoch } => format!("release {pipeline} epoch {epoch}"),
            Op::Renew { pipeline, epoch } => format!("renew {pipeline} epoch {epoch}"),
            Op::BeginRun { pipeline, epoch } => format!("begin_run {pipeline} epoch {epoch}"),
            Op::Advance {
                pipeline,
                stream,
                epoch,
                value,
                expected_version,
                ..
            } => match expected_version {
                Some(v) => format!(
                    "advance {pipeline}/{stream} to {value} expecting version {v} under epoch \
                     {epoch}"
                ),
                None => format!("advance {pipeline}/{stream} to {value} under epoch {epoch}"),
            },
            Op::Finish {
                pipeline,
                epoch,
                cursors,
                ..
            } => {
                let cursors: Vec<String> =
                    cursors.iter().map(|(s, v)| format!("{s}={v}")).collect();
                format!(
                    "finish_run {pipeline} with {} under epoch {epoch}",
                    cursors.join(" ")
                )
            }
            Op::GetCursor { pipeline, stream } => format!("get_cursor {pipeline}/{stream}"),
            Op::ListCursors { pipeline } => format!("list_cursors {pipeline}"),
            Op::GetPipeline { pipeline } => format!("get_pipeline {pipeline}"),
        };
        let answer = match call.complete {
            Some((at, Outcome::Failed { error })) => {
                format!("failed at {:.3} ms: {error}", ms(at))
            }
            Some((at, outcome)) => format!("answered {outcome:?} at {:.3} ms", ms(at)),
            None => "never answered".to_owned(),
        };
        format!(
            "client {} op {} ({what}, invoked at {:.3} ms, {answer})",
            call.client,
            call.op_id,
            ms(call.invoke)
        )
    }

    fn count(&mut self) {
        for call in &self.calls {
            self.report.operations += 1;
            match call.status() {
                Status::Ok => self.report.acknowledged += 1,
                Status::Failed => self.report.failed += 1,
                Status::Indeterminate => self.report.indeterminate += 1,
            }
            let outcome = call.outcome().map_or("unanswered", Outcome::name);
            *self
                .report
                .tally
                .entry(format!("{} {outcome}", call.op.name()))
                .or_default() += 1;
        }
    }

    /// (b): every history entry comes from a call that may have written it, in an unbroken run
    /// of versions with growing values and epochs.
    fn locate_entries(&mut self) {
        let mut by_value: HashMap<(&PipelineId, &StreamName, u64), usize> = HashMap::new();
        let mut twice = Vec::new();
        for (i, call) in self.calls.iter().enumerate() {
            let written: Vec<(&StreamName, u64)> = match call.op {
                Op::Advance { stream, value, .. } => vec![(stream, *value)],
                Op::Finish { cursors, .. } => cursors.iter().map(|(s, v)| (s, *v)).collect(),
                _ => continue,
            };
            for (stream, value) in written {
                if by_value
                    .insert((call.op.pipeline(), stream, value), i)
                    .is_some()
                {
                    twice.push(format!(
                        "value {value} of {}/{stream} is written by two calls: the checker \
                         needs unique values",
                        call.op.pipeline()
                    ));
                }
            }
        }
        for message in twice {
            self.flag(Rule::Malformed, message);
        }
        let mut found = Vec::new();
        let mut flags = Vec::new();
        for (pipeline, streams) in &self.state.histories {
            for (stream, entries) in streams {
                let mut previous: Option<&CursorHistoryEntry> = None;
                for (n, entry) in entries.iter().enumerate() {
                    let at = format!("version {} of {pipeline}/{stream}", entry.version);
                    if entry.version != n as u64 + 1 {
                        flags.push((
                            Rule::PhantomWrite,
                            format!(
                                "{at} is the history's entry number {}: versions must run 1, \
                                 2, … without gaps",
                                n + 1
                            ),
                        ));
                    }
                    if let Some(previous) = previous {
                        if entry.epoch < previous.epoch {
                            flags.push((
                                Rule::Lease,
                                format!(
                                    "{at} was written under epoch {:?} after version {} under \
                                     epoch {:?}: a stale epoch wrote after a newer one",
                                    entry.epoch, previous.version, previous.epoch
                                ),
                            ));
                        }
                        let grew = match (
                            entry.value.as_json().as_u64(),
                            previous.value.as_json().as_u64(),
                        ) {
                            (Some(now), Some(before)) => now > before,
                            _ => true,
                        };
                        if !grew {
                            flags.push((
                                Rule::PhantomWrite,
                                format!(
                                    "{at} holds {} after {}: a monotonic cursor went back",
                                    entry.value.as_json(),
                                    previous.value.as_json()
                                ),
                            ));
                        }
                    }
                    previous = Some(entry);
                    let call = entry
                        .value
                        .as_json()
                        .as_u64()
                        .and_then(|v| by_value.get(&(pipeline, stream, v)).copied());
                    let Some(i) = call else {
                        flags.push((
                            Rule::PhantomWrite,
                            format!(
                                "{at} holds {} which no call of the history wrote",
                                entry.value.as_json()
                            ),
                        ));
                        continue;
                    };
                    found.push((i, pipeline, stream, entry.version));
                    let call = &self.calls[i];
                    let (epoch, run, finish) = match call.op {
                        Op::Advance { epoch, run, .. } => (*epoch, *run, false),
                        Op::Finish { epoch, run, .. } => (*epoch, *run, true),
                        _ => unreachable!("only writes are indexed by value"),
                    };
                    if call.status() == Status::Failed {
                        flags.push((
                            Rule::PhantomWrite,
                            format!(
                                "{at} was written by a call that failed: {}",
                                self.describe(i)
                            ),
                        ));
                    }
                    let change_fits = matches!(
                        (&entry.change, finish),
                        (CursorChange::Checkpoint, false) | (CursorChange::Finish, true)
                    );
                    if entry.epoch != Some(epoch) || entry.run != Some(run) || !change_fits {
                        flags.push((
                            Rule::PhantomWrite,
                            format!(
                                "{at} carries epoch {:?}, run {:?} and change {:?}, not those \
                                 of the call that wrote its value: {}",
                                entry.epoch,
                                entry.run,
                                entry.change,
                                self.describe(i)
                            ),
                        ));
                    }
                }
            }
        }
        for (rule, message) in flags {
            self.flag(rule, message);
        }
        for (i, pipeline, stream, version) in found {
            if self.landed.insert((i, stream.clone()), version).is_some() {
                let message = format!(
                    "the value of {} is in the history of {pipeline}/{stream} twice",
                    self.describe(i)
                );
                self.flag(Rule::PhantomWrite, message);
            }
            self.writer
                .insert((pipeline.clone(), stream.clone(), version), i);
        }
    }

    /// (a): every acknowledged write is in the history as acknowledged.
    fn acknowledged_writes(&mut self) {
        let mut flags = Vec::new();
        let mut lost = 0;
        for (i, call) in self.calls.iter().enumerate() {
            if call.status() != Status::Ok {
                continue;
            }
            match (call.op, call.outcome()) {
                (Op::Advance { stream, value, .. }, Some(Outcome::Advanced { cursor })) => {
                    match self.landed.get(&(i, stream.clone())) {
                        None => {
                            lost += 1;
                            flags.push(format!(
                                "an acknowledged write is not in the history: {}",
                                self.describe(i)
                            ));
                        }
                        Some(&version)
                            if version != cursor.version || cursor.value != Some(*value) =>
                        {
                            flags.push(format!(
                                "acknowledged as version {} holding {:?}, in the history as \
                                 version {version} holding {value}: {}",
                                cursor.version,
                                cursor.value,
                                self.describe(i)
                            ));
                        }
                        Some(_) => {}
                    }
                }
                (Op::Finish { cursors, .. }, _) => {
                    for (stream, value) in cursors {
                        if !self.landed.contains_key(&(i, stream.clone())) {
                            lost += 1;
                            flags.push(format!(
                                "the final cursor {stream}={value} of an acknowledged finish is \
                                 not in the history: {}",
                                self.describe(i)
                            ));
                        }
                    }
                }
                _ => {}
            }
        }
        self.report.lost_writes += lost;
        for message in flags {
            self.flag(Rule::LostWrite, message);
        }
    }

    /// (g): every `get_pipeline` found its pipeline, and each pipeline's answers agree on its
    /// generation.
    fn stable_reads(&mut self) {
        let mut flags = Vec::new();
        let mut first: HashMap<&PipelineId, (u64, usize)> = HashMap::new();
        for (i, call) in self.calls.iter().enumerate() {
            let Op::GetPipeline { pipeline } = call.op else {
                continue;
            };
            match (call.status(), call.outcome()) {
                (Status::Ok, Some(Outcome::Pipeline { generation })) => {
                    let (seen, by) = *first.entry(pipeline).or_insert((*generation, i));
                    if seen != *generation {
                        flags.push(format!(
                            "generation {generation}, where {} saw {seen} and no call changes \
                             the pipeline: {}",
                            self.describe(by),
                            self.describe(i)
                        ));
                    }
                }
                (Status::Failed, Some(outcome)) => flags.push(format!(
                    "refused ({outcome:?}), yet no call deletes the pipeline: {}",
                    self.describe(i)
                )),
                _ => {}
            }
        }
        for message in flags {
            self.flag(Rule::StableRead, message);
        }
    }

    /// (d): a compare-and-set that took effect wrote expected + 1; one refused with `Conflict`
    /// was refused when the version was not the expected one, and names a version that was
    /// current at some instant of the call.
    fn compare_and_set(&mut self) {
        let mut flags = Vec::new();
        for (i, call) in self.calls.iter().enumerate() {
            let Op::Advance {
                pipeline,
                stream,
                expected_version: Some(expected),
                ..
            } = call.op
            else {
                continue;
            };
            let expected = *expected;
            if let Some(&version) = self.landed.get(&(i, stream.clone())) {
                if version != expected + 1 {
                    flags.push(format!(
                        "a compare-and-set took effect as version {version}: {}",
                        self.describe(i)
                    ));
                }
            }
            let Some((
                completed,
                Outcome::Failed {
                    error: Error::Conflict { actual, .. },
                },
            )) = call.complete
            else {
                continue;
            };
            let at = |version: u64| {
                self.writer
                    .get(&(pipeline.clone(), stream.clone(), version))
                    .map(|&w| &self.calls[w])
            };
            if let Some(problem) = found_version(actual, expected, call.invoke, completed, at) {
                flags.push(format!(
                    "refused with Conflict, {problem}: {}",
                    self.describe(i)
                ));
            }
            // The version was `expected` throughout the call if the write of `expected` completed
            // before the call began and the write of the next version began after it ended.
            let reached_before = expected == 0
                || at(expected)
                    .and_then(Call::completed_at)
                    .is_some_and(|done| done < call.invoke);
            let history_len = self
                .state
                .histories
                .get(pipeline)
                .and_then(|s| s.get(stream))
                .map_or(0, |e| e.len() as u64);
            let left_after = if expected + 1 > history_len {
                expected <= history_len
            } else {
                at(expected + 1).is_some_and(|next| next.invoke > completed)
            };
            if reached_before && left_after {
                flags.push(format!(
                    "refused with Conflict, yet version {expected} was current throughout the \
                     call: {}",
                    self.describe(i)
                ));
            }
        }
        for message in flags {
            self.flag(Rule::CompareAndSet, message);
        }
    }

    /// The versions a call read or wrote, per stream (0: the stream has no cursor yet).
    fn versions(&self, i: usize) -> Vec<(StreamName, u64, Option<u64>)> {
        let call = &self.calls[i];
        match (call.op, call.outcome()) {
            (Op::GetCursor { stream, .. }, Some(Outcome::Read { cursors })) => {
                match cursors.first() {
                    Some(seen) => vec![(seen.stream.clone(), seen.version, seen.value)],
                    None => vec![(stream.clone(), 0, None)],
                }
            }
            (Op::ListCursors { pipeline }, Some(Outcome::Read { cursors })) => {
                let streams = self.state.histories.get(pipeline);
                let mut out: Vec<_> = cursors
                    .iter()
                    .map(|s| (s.stream.clone(), s.version, s.value))
                    .collect();
                for stream in streams.into_iter().flat_map(|s| s.keys()) {
                    if !cursors.iter().any(|s| s.stream == *stream) {
                        out.push((stream.clone(), 0, None));
                    }
                }
                out
            }
            (Op::Advance { stream, .. }, _) => self.landed_versions(i, [stream]),
            (Op::Finish { cursors, .. }, _) => {
                self.landed_versions(i, cursors.iter().map(|(s, _)| s))
            }
            _ => Vec::new(),
        }
    }

    /// The versions write `i` landed at, of the `streams` it wrote.
    fn landed_versions<'s>(
        &self,
        i: usize,
        streams: impl IntoIterator<Item = &'s StreamName>,
    ) -> Vec<(StreamName, u64, Option<u64>)> {
        streams
            .into_iter()
            .filter_map(|s| {
                self.landed
                    .get(&(i, s.clone()))
                    .map(|&v| (s.clone(), v, None))
            })
            .collect()
    }

    /// Every invoke and completion as (time, is a completion, call), in time order. At one
    /// instant invokes come first: calls that touch are concurrent, not ordered.
    fn timeline(&self) -> Vec<(u64, bool, usize)> {
        let mut points: Vec<(u64, bool, usize)> = Vec::new();
        for (i, call) in self.calls.iter().enumerate() {
            points.push((call.invoke, false, i));
            if let Some(at) = call.completed_at() {
                points.push((at, true, i));
            }
        }
        points.sort();
        points
    }

    /// (c): one pass over the events in time order. The floor of a cursor is the highest
    /// version that a call which has completed wrote or read; every call invoked later must see
    /// at least it (a read) or write above it (a write).
    fn real_time(&mut self) {
        let points = self.timeline();
        let mut floor: HashMap<(PipelineId, StreamName), (u64, usize)> = HashMap::new();
        let mut flags = Vec::new();
        for (_, completes, i) in points {
            let pipeline = self.calls[i].op.pipeline().clone();
            let is_write = matches!(self.calls[i].op, Op::Advance { .. } | Op::Finish { .. });
            for (stream, version, value) in self.versions(i) {
                let key = (pipeline.clone(), stream.clone());
                if completes {
                    let slot = floor.entry(key).or_insert((0, i));
                    if version > slot.0 {
                        *slot = (version, i);
                    }
                    continue;
                }
                let Some(&(low, by)) = floor.get(&key) else {
                    continue;
                };
                let broken = if is_write {
                    version <= low
                } else {
                    version < low
                };
                if broken && low > 0 {
                    let what = if is_write { "wrote" } else { "read" };
                    flags.push(format!(
                        "{} {what} version {version} of {pipeline}/{stream}, though version \
                         {low} was complete before it began: {}",
                        self.describe(i),
                        self.describe(by)
                    ));
                }
                // A read's own checks, done once (at its invoke).
                if is_write {
                    continue;
                }
                if version == 0 {
                    continue;
                }
                let entry = self
                    .state
                    .histories
                    .get(&pipeline)
                    .and_then(|s| s.get(&stream))
                    .and_then(|e| e.get(version as usize - 1));
                match entry {
                    None => flags.push(format!(
                        "{} read version {version} of {pipeline}/{stream}, which the history \
                         does not hold",
                        self.describe(i)
                    )),
                    Some(entry) if entry.value.as_json().as_u64() != value => {
                        flags.push(format!(
                            "{} read {value:?} at version {version} of {pipeline}/{stream}, \
                             which holds {}",
                            self.describe(i),
                            entry.value.as_json()
                        ));
                    }
                    Some(_) => {}
                }
                if let (Some(&w), Some(done)) = (
                    self.writer
                        .get(&(pipeline.clone(), stream.clone(), version)),
                    self.calls[i].completed_at(),
                ) {
                    if self.calls[w].invoke > done {
                        flags.push(format!(
                            "{} read version {version} of {pipeline}/{stream} before its write \
                             began: {}",
                            self.describe(i),
                            self.describe(w)
                        ));
                    }
                }
            }
        }
        for message in flags {
            self.flag(Rule::RealTime, message);
        }
    }

    /// (e): epochs are unique, grow in real time and fence older ones; a plain acquire follows
    /// a release or a takeover.
    fn leases(&mut self) {
        let mut flags = Vec::new();
        // Grants per pipeline: epoch → the call that got it.
        let mut granted: HashMap<&PipelineId, BTreeMap<Epoch, usize>> = HashMap::new();
        for (i, call) in self.calls.iter().enumerate() {
            let (Op::Acquire { pipeline, holder } | Op::ForceAcquire { pipeline, holder }) =
                call.op
            else {
                continue;
            };
            let Some(Outcome::Granted { epoch, holder: got }) = call.outcome() else {
                continue;
            };
            if got != holder {
                flags.push(format!(
                    "epoch {epoch} was granted to {got}, not the caller: {}",
                    self.describe(i)
                ));
            }
            if let Some(other) = granted.entry(pipeline).or_default().insert(*epoch, i) {
                flags.push(format!(
                    "epoch {epoch} of {pipeline} was granted twice: {} and {}",
                    self.describe(other),
                    self.describe(i)
                ));
            }
        }
        // Each epoch has one holder: whoever wrote under it is the one it was granted to.
        for (pipeline, streams) in &self.state.histories {
            for (stream, entries) in streams {
                for entry in entries {
                    let Some(&i) = entry
                        .epoch
                        .and_then(|e| granted.get(pipeline).and_then(|g| g.get(&e)))
                    else {
                        continue;
                    };
                    let Some(Outcome::Granted { epoch, holder }) = self.calls[i].outcome() else {
                        continue;
                    };
                    if entry.by != Actor::Holder(holder.clone()) {
                        flags.push(format!(
                            "version {} of {pipeline}/{stream} was written by {:?} under epoch \
                             {epoch}, which was granted to {holder}: {}",
                            entry.version,
                            entry.by,
                            self.describe(i)
                        ));
                    }
                }
            }
        }
        // One pass in time order: the highest epoch a completed grant gave out, per pipeline.
        let points = self.timeline();
        let mut high: HashMap<&PipelineId, (Epoch, usize)> = HashMap::new();
        for (_, completes, i) in points {
            let call = &self.calls[i];
            let pipeline = call.op.pipeline();
            if completes {
                if let Some(Outcome::Granted { epoch, .. }) = call.outcome() {
                    let slot = high.entry(pipeline).or_insert((*epoch, i));
                    if *epoch > slot.0 {
                        *slot = (*epoch, i);
                    }
                }
                continue;
            }
            let Some(&(top, by)) = high.get(pipeline) else {
                continue;
            };
            if let Some(Outcome::Granted { epoch, .. }) = call.outcome() {
                if *epoch <= top {
                    flags.push(format!(
                        "{} was granted epoch {epoch}, though epoch {top} was granted before it \
                         began: {}",
                        self.describe(i),
                        self.describe(by)
                    ));
                }
            }
            let Some(epoch) = call.op.lease_epoch() else {
                continue;
            };
            let took_effect = match call.op {
                Op::Advance { stream, .. } => self.landed.contains_key(&(i, stream.clone())),
                Op::Finish { cursors, .. } => cursors
                    .iter()
                    .any(|(s, _)| self.landed.contains_key(&(i, s.clone()))),
                _ => call.status() == Status::Ok,
            } || call.status() == Status::Ok;
            if took_effect && epoch < top {
                flags.push(format!(
                    "a write under epoch {epoch} took effect though epoch {top} was granted \
                     before it began (not fenced): {} after {}",
                    self.describe(i),
                    self.describe(by)
                ));
            }
        }
        // A renewal keeps the lease's epoch.
        for (i, call) in self.calls.iter().enumerate() {
            if let (Op::Renew { epoch, .. }, Some(Outcome::Renewed { epoch: got })) =
                (call.op, call.outcome())
            {
                if got != epoch {
                    flags.push(format!(
                        "a renewal of epoch {epoch} answered epoch {got}: {}",
                        self.describe(i)
                    ));
                }
            }
        }
        // A write is fenced only once its epoch ended: a higher grant (or one whose answer was
        // lost) or a release of it began before the write's answer.
        for (i, call) in self.calls.iter().enumerate() {
            let (
                Some(epoch),
                Some(Outcome::Failed {
                    error: Error::Fenced { reason, .. },
                }),
            ) = (call.op.lease_epoch(), call.outcome())
            else {
                continue;
            };
            if let FenceReason::Superseded { current } = reason {
                if *current <= epoch {
                    flags.push(format!(
                        "fenced as superseded by epoch {current}, not above its own: {}",
                        self.describe(i)
                    ));
                }
            }
            let Some(done) = call.completed_at() else {
                continue;
            };
            let pipeline = call.op.pipeline();
            let ended = self.calls.iter().any(|other| {
                other.invoke < done
                    && other.op.pipeline() == pipeline
                    && match (other.op, other.outcome()) {
                        (
                            Op::Acquire { .. } | Op::ForceAcquire { .. },
                            Some(Outcome::Granted { epoch: e, .. }),
                        ) => *e > epoch,
                        (Op::Acquire { .. } | Op::ForceAcquire { .. }, _) => {
                            other.status() == Status::Indeterminate
                        }
                        (Op::Release { epoch: e, .. }, _) => {
                            *e == epoch && other.status() != Status::Failed
                        }
                        _ => false,
                    }
            });
            if !ended {
                flags.push(format!(
                    "fenced though epoch {epoch} was neither superseded nor released before its \
                     answer: {}",
                    self.describe(i)
                ));
            }
        }
        // An acquire refused with `Leased` names a live lease: its epoch granted to that holder,
        // not released and not superseded before the acquire began.
        for (i, call) in self.calls.iter().enumerate() {
            let (
                Op::Acquire { pipeline, .. },
                Some(Outcome::Failed {
                    error: Error::Leased { holder, epoch, .. },
                }),
            ) = (call.op, call.outcome())
            else {
                continue;
            };
            let grant = granted.get(pipeline).and_then(|g| g.get(epoch));
            let wrong_holder = grant.and_then(|&g| match self.calls[g].outcome() {
                Some(Outcome::Granted { holder: got, .. }) if got != holder => Some(g),
                _ => None,
            });
            let over = self.calls.iter().position(|other| {
                other.op.pipeline() == pipeline
                    && other.completed_at().is_some_and(|t| t < call.invoke)
                    && match (other.op, other.outcome()) {
                        (Op::Release { epoch: e, .. }, Some(Outcome::Done)) => e == epoch,
                        (_, Some(Outcome::Granted { epoch: e, .. })) => e > epoch,
                        _ => false,
                    }
            });
            if let Some(g) = wrong_holder {
                flags.push(format!(
                    "refused as leased by {holder} under epoch {epoch}, which was granted to \
                     another: {} (the grant: {})",
                    self.describe(i),
                    self.describe(g)
                ));
            }
            if let Some(o) = over {
                flags.push(format!(
                    "refused as leased under epoch {epoch}, which had ended before: {} (ended \
                     by {})",
                    self.describe(i),
                    self.describe(o)
                ));
            }
        }
        // A plain acquire succeeds only once the epoch before it is released or taken over.
        for (pipeline, grants) in &granted {
            let mut previous: Option<(Epoch, usize)> = None;
            for (&epoch, &i) in grants {
                let call = &self.calls[i];
                let Some(done) = call.completed_at() else {
                    continue;
                };
                if let (Op::Acquire { .. }, Some((before, j))) = (call.op, previous) {
                    let released = self.calls.iter().any(|r| {
                        matches!(r.op, Op::Release { pipeline: p, epoch: e } if p == *pipeline && *e == before)
                            && r.status() != Status::Failed
                            && r.invoke < done
                    });
                    // A grant whose answer was lost may sit between the two (a takeover).
                    let unknown_grant = self.calls.iter().any(|g| {
                        matches!(g.op, Op::Acquire { pipeline: p, .. } | Op::ForceAcquire { pipeline: p, .. } if p == *pipeline)
                            && g.status() == Status::Indeterminate
                            && g.invoke < done
                    });
                    if !released && !unknown_grant {
                        flags.push(format!(
                            "{} was granted epoch {epoch} while epoch {before} was live (never \
                             released, not taken over): {}",
                            self.describe(i),
                            self.describe(j)
                        ));
                    }
                }
                previous = Some((epoch, i));
            }
        }
        for message in flags {
            self.flag(Rule::Lease, message);
        }
    }

    /// (f): a finish lands whole or not at all, and no read of every cursor sees half of it.
    fn atomic_finishes(&mut self) {
        let mut flags = Vec::new();
        // Per pipeline, the versions each landed finish wrote, per stream.
        let mut finishes: HashMap<&PipelineId, Vec<(usize, Versions<'_>)>> = HashMap::new();
        for (i, call) in self.calls.iter().enumerate() {
            let Op::Finish {
                pipeline, cursors, ..
            } = call.op
            else {
                continue;
            };
            let landed: BTreeMap<&StreamName, u64> = cursors
                .iter()
                .filter_map(|(s, _)| self.landed.get(&(i, s.clone())).map(|&v| (s, v)))
                .collect();
            if !landed.is_empty() && landed.len() != cursors.len() {
                flags.push(format!(
                    "only {} of the {} final cursors of a finish are in the history: {}",
                    landed.len(),
                    cursors.len(),
                    self.describe(i)
                ));
            }
            if landed.len() == cursors.len() && !landed.is_empty() {
                finishes.entry(pipeline).or_default().push((i, landed));
            }
        }
        for (r, call) in self.calls.iter().enumerate() {
            let (Op::ListCursors { pipeline }, Some(Outcome::Read { .. })) =
                (call.op, call.outcome())
            else {
                continue;
            };
            let seen: BTreeMap<StreamName, u64> = self
                .versions(r)
                .into_iter()
                .map(|(s, v, _)| (s, v))
                .collect();
            for (f, versions) in finishes.get(pipeline).into_iter().flatten() {
                let included: Vec<bool> = versions
                    .iter()
                    .map(|(s, v)| seen.get(*s).copied().unwrap_or(0) >= *v)
                    .collect();
                if included.iter().any(|&x| x) && !included.iter().all(|&x| x) {
                    flags.push(format!(
                        "{} saw some final cursors of a finish and not the others: {}",
                        self.describe(r),
                        self.describe(*f)
                    ));
                }
            }
        }
        flags.extend(self.finished_runs());
        for message in flags {
            self.flag(Rule::Atomicity, message);
        }
    }

    /// (f) across the run record: a run succeeded exactly when a finish of it landed its final
    /// cursors (a finish that wrote the cursors and not the status, or the status and not the
    /// cursors, is half-applied).
    fn finished_runs(&self) -> Vec<String> {
        let mut flags = Vec::new();
        let mut landed: HashMap<RunId, usize> = HashMap::new();
        for (i, call) in self.calls.iter().enumerate() {
            if let Op::Finish { run, cursors, .. } = call.op {
                if !cursors.is_empty()
                    && cursors
                        .iter()
                        .all(|(s, _)| self.landed.contains_key(&(i, s.clone())))
                {
                    landed.insert(*run, i);
                }
            }
        }
        for (run, &i) in &landed {
            match self.state.runs.get(run) {
                Some(RunStatus::Succeeded) => {}
                status => flags.push(format!(
                    "the final cursors of a finish are in the history, but its run is {}: {}",
                    status.map_or("missing".to_owned(), |s| format!("{s:?}")),
                    self.describe(i)
                )),
            }
        }
        for (run, status) in &self.state.runs {
            if *status == RunStatus::Succeeded && !landed.contains_key(run) {
                flags.push(format!(
                    "run {run} succeeded, but no finish of it left its final cursors in the history"
                ));
            }
        }
        flags
    }
}

/// What is wrong with the version a `Conflict` says it found (`actual`, as core words it:
/// `version N`), refusing a call that expected `expected` over `[invoke, completed]`; `None`
/// if that version was current at some instant of the call. `at` gives the call that wrote a
/// version.
fn found_version<'c>(
    actual: &str,
    expected: u64,
    invoke: u64,
    completed: u64,
    at: impl Fn(u64) -> Option<&'c Call<'c>>,
) -> Option<String> {
    let Some(found) = actual
        .strip_prefix("version ")
        .and_then(|n| n.parse::<u64>().ok())
    else {
        return Some(format!("naming no version as found ({actual:?})"));
    };
    if found == expected {
        return Some(format!("yet it found the expected version {found}"));
    }
    // Reached before the call ended: a write takes effect after its invoke, never before.
    let reached = found == 0 || at(found).is_some_and(|w| w.invoke < completed);
    if !reached {
        return Some(format!(
            "naming version {found}, which no write made before the call ended"
        ));
    }
    // Still current when the call began: the next version's write had not completed.
    let next_done = at(found + 1).and_then(Call::completed_at);
    if next_done.is_some_and(|done| done < invoke) {
        return Some(format!(
            "naming version {found}, which a later write had replaced before the call began"
        ));
    }
    None
}
