//! The checker on hand-made histories: each rule flags a history that breaks it, and passes one
//! that keeps it. A checker that cannot fail proves nothing.

use std::collections::BTreeMap;

use hakiri_core::{
    Actor, CursorChange, CursorHistoryEntry, Entity, Epoch, Error, FenceReason, HolderId,
    PipelineId, RunId, RunStatus, StreamName, Timestamp,
};

use super::checker::{check, FinalState, Report, Rule};
use super::event::{Event, Op, Outcome, Seen};
use crate::{holder_id, pid, stream, value};

/// Builds a history: calls with invoke and completion times, and the final cursor histories.
struct History {
    events: Vec<Event>,
    state: FinalState,
    clock: u64,
    next_op: BTreeMap<u32, u64>,
}

fn run(n: u8) -> RunId {
    RunId::from_parts(Timestamp::from_millis(1_000), [n; 10])
}

fn p() -> PipelineId {
    pid("p0")
}

fn a() -> StreamName {
    stream("a")
}

fn b() -> StreamName {
    stream("b")
}

fn holder(client: u32) -> HolderId {
    holder_id(&format!("client-{client}"))
}

fn advance(s: StreamName, epoch: u64, run_n: u8, v: u64, expected: Option<u64>) -> Op {
    Op::Advance {
        pipeline: p(),
        stream: s,
        epoch: Epoch(epoch),
        run: run(run_n),
        value: v,
        expected_version: expected,
    }
}

fn acquire(client: u32) -> Op {
    Op::Acquire {
        pipeline: p(),
        holder: holder(client),
    }
}

fn force(client: u32) -> Op {
    Op::ForceAcquire {
        pipeline: p(),
        holder: holder(client),
    }
}

fn get_cursor(s: StreamName) -> Op {
    Op::GetCursor {
        pipeline: p(),
        stream: s,
    }
}

fn finish(epoch: u64, run_n: u8, va: u64, vb: u64) -> Op {
    Op::Finish {
        pipeline: p(),
        epoch: Epoch(epoch),
        run: run(run_n),
        cursors: vec![(a(), va), (b(), vb)],
    }
}

fn advanced(s: StreamName, version: u64, v: u64) -> Outcome {
    Outcome::Advanced {
        cursor: seen(s, version, v),
    }
}

fn seen(s: StreamName, version: u64, v: u64) -> Seen {
    Seen {
        stream: s,
        version,
        value: Some(v),
    }
}

fn read(cursors: Vec<Seen>) -> Outcome {
    Outcome::Read { cursors }
}

fn granted(epoch: u64, client: u32) -> Outcome {
    Outcome::Granted {
        epoch: Epoch(epoch),
        holder: holder(client),
    }
}

fn failed(error: Error) -> Outcome {
    Outcome::Failed { error }
}

fn fenced(epoch: u64) -> Outcome {
    failed(Error::Fenced {
        pipeline: p(),
        epoch: Epoch(epoch),
        reason: FenceReason::Superseded {
            current: Epoch(epoch + 1),
        },
    })
}

/// A `Conflict` on stream `a`, worded as core words it.
fn conflict(expected: u64, found: u64) -> Outcome {
    failed(Error::conflict(
        Entity::Cursor {
            pipeline: p(),
            stream: a(),
        },
        format!("version {expected}"),
        format!("version {found}"),
    ))
}

impl History {
    fn new() -> Self {
        Self {
            events: Vec::new(),
            state: FinalState::default(),
            clock: 1_000,
            next_op: BTreeMap::new(),
        }
    }

    /// Invokes `op` as `client` now; returns its op id.
    fn invoke(&mut self, client: u32, op: Op) -> u64 {
        self.clock += 10_000;
        let op_id = self.next_op.entry(client).or_default();
        let id = *op_id;
        *op_id += 1;
        self.events.push(Event::Invoke {
            client,
            op_id: id,
            op,
            at_ns: self.clock,
        });
        id
    }

    /// Completes `client`'s op `op_id` now.
    fn complete(&mut self, client: u32, op_id: u64, outcome: Outcome) {
        self.clock += 10_000;
        self.events.push(Event::Complete {
            client,
            op_id,
            outcome,
            at_ns: self.clock,
        });
    }

    /// A call that begins after every earlier one ended.
    fn call(&mut self, client: u32, op: Op, outcome: Outcome) -> &mut Self {
        let id = self.invoke(client, op);
        self.complete(client, id, outcome);
        self
    }

    /// Appends version `version` of `s` to the final state.
    fn entry(&mut self, s: StreamName, version: u64, v: u64, epoch: u64, run_n: u8) -> &mut Self {
        self.entry_of(s, version, v, epoch, run_n, CursorChange::Checkpoint)
    }

    fn finish_entry(
        &mut self,
        s: StreamName,
        version: u64,
        v: u64,
        epoch: u64,
        run_n: u8,
    ) -> &mut Self {
        self.entry_of(s, version, v, epoch, run_n, CursorChange::Finish)
    }

    fn entry_of(
        &mut self,
        s: StreamName,
        version: u64,
        v: u64,
        epoch: u64,
        run_n: u8,
        change: CursorChange,
    ) -> &mut Self {
        self.state
            .histories
            .entry(p())
            .or_default()
            .entry(s)
            .or_default()
            .push(CursorHistoryEntry {
                version,
                value: value(serde_json::json!(v)),
                change,
                run: Some(run(run_n)),
                epoch: Some(Epoch(epoch)),
                // The tests grant epoch n to client n - 1.
                by: Actor::Holder(holder(epoch.saturating_sub(1) as u32)),
                at: Timestamp::from_millis(1_000),
            });
        self
    }

    /// Sets run `run_n`'s status in the final state.
    fn run_status(&mut self, run_n: u8, status: RunStatus) -> &mut Self {
        self.state.runs.insert(run(run_n), status);
        self
    }

    /// Checks the history. A run with a finish entry whose status the test did not set
    /// succeeded, as the finish said.
    fn check(&self) -> Report {
        let mut state = self.state.clone();
        let finished: Vec<RunId> = state
            .histories
            .values()
            .flat_map(BTreeMap::values)
            .flatten()
            .filter(|entry| entry.change == CursorChange::Finish)
            .filter_map(|entry| entry.run)
            .collect();
        for run in finished {
            state.runs.entry(run).or_insert(RunStatus::Succeeded);
        }
        // Every stream of the pipeline has a history, empty if never written.
        for s in [a(), b()] {
            state
                .histories
                .entry(p())
                .or_default()
                .entry(s)
                .or_default();
        }
        check(&self.events, &state)
    }
}

/// A history that keeps every rule: acquire, begin, a compare-and-set, a read, a finish of both
/// streams, a read of all cursors, a release, and another client's acquire after it.
fn good() -> History {
    let mut h = History::new();
    h.call(0, acquire(0), granted(1, 0))
        .call(
            0,
            Op::BeginRun {
                pipeline: p(),
                epoch: Epoch(1),
            },
            Outcome::Began { run: run(1) },
        )
        .call(0, advance(a(), 1, 1, 1024, Some(0)), advanced(a(), 1, 1024))
        .call(1, get_cursor(a()), read(vec![seen(a(), 1, 1024)]))
        .call(0, finish(1, 1, 2048, 3072), Outcome::Done)
        .call(
            1,
            Op::ListCursors { pipeline: p() },
            read(vec![seen(a(), 2, 2048), seen(b(), 1, 3072)]),
        )
        .call(
            0,
            Op::Release {
                pipeline: p(),
                epoch: Epoch(1),
            },
            Outcome::Done,
        )
        .call(1, acquire(1), granted(2, 1));
    h.entry(a(), 1, 1024, 1, 1)
        .finish_entry(a(), 2, 2048, 1, 1)
        .finish_entry(b(), 1, 3072, 1, 1);
    h
}

/// Asserts `report` broke `rule` (and prints it, so a failing test shows the sentence).
fn assert_flags(report: &Report, rule: Rule) {
    assert!(
        report.violations.iter().any(|v| v.rule == rule),
        "expected a {rule:?} violation:\n{report}"
    );
}

fn assert_ok(report: &Report) {
    assert!(report.is_ok(), "expected no violation:\n{report}");
}

#[test]
fn a_good_history_passes_and_is_counted() {
    let report = good().check();
    assert_ok(&report);
    assert_eq!(report.operations, 8);
    assert_eq!(report.acknowledged, 8);
    assert_eq!(report.count("advance-cas", "ok"), 1);
}

#[test]
fn events_survive_json_lines() {
    let h = good();
    let text: String = h
        .events
        .iter()
        .map(|e| serde_json::to_string(e).unwrap() + "\n")
        .collect();
    // A process killed while printing tears its last line: it is dropped.
    let torn = format!("{text}{{\"event\":\"invo");
    assert_eq!(super::event::parse_lines(&torn).unwrap(), h.events);
    assert!(super::event::parse_lines("not json\n").is_err());
}

#[test]
fn a_completion_without_invoke_is_malformed() {
    let mut h = good();
    h.complete(7, 0, Outcome::Done);
    assert_flags(&h.check(), Rule::Malformed);
}

#[test]
fn a_client_with_a_lost_line_is_malformed() {
    // The completion of client 0's begin_run was lost; its later calls were recorded.
    let mut h = good();
    h.events.remove(3);
    assert_flags(&h.check(), Rule::Malformed);
    // Only the last call of a client may lack its answer.
    let mut h = good();
    h.invoke(0, advance(a(), 1, 1, 4096, None));
    assert!(!h
        .check()
        .violations
        .iter()
        .any(|v| v.rule == Rule::Malformed));
}

#[test]
fn an_acknowledged_write_missing_is_lost() {
    let mut h = good();
    // The finish's cursor of b never made it.
    h.state.histories.get_mut(&p()).unwrap().remove(&b());
    let report = h.check();
    assert_flags(&report, Rule::LostWrite);
    assert_eq!(report.lost_writes, 1);
}

#[test]
fn an_acknowledged_write_at_another_version_is_flagged() {
    let mut h = good();
    if let Some(Event::Complete { outcome, .. }) = h.events.get_mut(5) {
        *outcome = advanced(a(), 7, 1024);
    }
    assert_flags(&h.check(), Rule::LostWrite);
}

#[test]
fn an_entry_no_call_wrote_is_a_phantom() {
    let mut h = good();
    h.entry(a(), 3, 9999, 1, 1);
    assert_flags(&h.check(), Rule::PhantomWrite);
}

#[test]
fn a_definitely_failed_write_in_the_history_is_a_phantom() {
    let mut h = good();
    h.call(
        1,
        advance(a(), 2, 2, 4096, None),
        failed(Error::precondition("the run ended")),
    );
    h.entry(a(), 3, 4096, 2, 2);
    assert_flags(&h.check(), Rule::PhantomWrite);
    // The same write unanswered (its process killed) may well have landed.
    let mut h = good();
    h.invoke(1, advance(a(), 2, 2, 4096, None));
    h.entry(a(), 3, 4096, 2, 2);
    assert_ok(&h.check());
}

#[test]
fn a_gap_in_versions_is_flagged() {
    let mut h = good();
    h.call(1, advance(a(), 2, 2, 4096, None), advanced(a(), 4, 4096));
    h.entry(a(), 4, 4096, 2, 2);
    assert_flags(&h.check(), Rule::PhantomWrite);
}

#[test]
fn an_entry_of_another_epoch_or_run_than_its_call_is_flagged() {
    let mut h = good();
    h.call(1, advance(a(), 2, 2, 4096, None), advanced(a(), 3, 4096));
    h.entry(a(), 3, 4096, 1, 2);
    assert_flags(&h.check(), Rule::PhantomWrite);
}

#[test]
fn a_write_ordered_before_one_that_completed_earlier_breaks_real_time() {
    let mut h = History::new();
    h.call(0, advance(a(), 1, 1, 1024, None), Outcome::Done);
    h.call(1, advance(a(), 1, 1, 2049, None), Outcome::Done);
    // The later write got the lower version.
    h.entry(a(), 1, 2049, 1, 1).entry(a(), 2, 1024, 1, 1);
    assert_flags(&h.check(), Rule::RealTime);
    // Concurrent writes may land in either order.
    let mut h = History::new();
    let first = h.invoke(0, advance(a(), 1, 1, 1024, None));
    let second = h.invoke(1, advance(a(), 1, 1, 2049, None));
    h.complete(1, second, advanced(a(), 1, 2049));
    h.complete(0, first, advanced(a(), 2, 1024));
    h.entry(a(), 1, 2049, 1, 1).entry(a(), 2, 1024, 1, 1);
    let report = h.check();
    // Values went back (both writers of one epoch), but real time holds.
    assert!(
        !report.violations.iter().any(|v| v.rule == Rule::RealTime),
        "{report}"
    );
}

#[test]
fn a_stale_read_breaks_real_time() {
    let mut h = good();
    h.call(1, get_cursor(a()), read(vec![seen(a(), 1, 1024)]));
    assert_flags(&h.check(), Rule::RealTime);
}

#[test]
fn reads_never_go_back() {
    let mut h = History::new();
    // A write that never answered, seen by one read, then not by the next.
    h.invoke(0, advance(a(), 1, 1, 1024, None));
    h.call(1, get_cursor(a()), read(vec![seen(a(), 1, 1024)]));
    h.call(2, get_cursor(a()), read(Vec::new()));
    h.entry(a(), 1, 1024, 1, 1);
    assert_flags(&h.check(), Rule::RealTime);
}

#[test]
fn a_write_answered_unavailable_may_land_after_its_answer() {
    let unavailable = failed(Error::Unavailable("connection reset".into()));
    let mut h = History::new();
    h.call(0, advance(a(), 1, 1, 1024, None), unavailable.clone());
    // A read after the answer misses it; the server committed it later.
    h.call(1, get_cursor(a()), read(Vec::new()));
    h.entry(a(), 1, 1024, 1, 1);
    assert_ok(&h.check());
    // Acknowledged, the same order is a stale read.
    let mut h = History::new();
    h.call(0, advance(a(), 1, 1, 1024, None), advanced(a(), 1, 1024));
    h.call(1, get_cursor(a()), read(Vec::new()));
    h.entry(a(), 1, 1024, 1, 1);
    assert_flags(&h.check(), Rule::RealTime);
}

#[test]
fn a_read_of_a_value_the_version_does_not_hold_is_flagged() {
    let mut h = good();
    h.call(1, get_cursor(b()), read(vec![seen(b(), 1, 3073)]));
    assert_flags(&h.check(), Rule::RealTime);
}

#[test]
fn a_read_of_a_write_not_yet_invoked_is_flagged() {
    let mut h = History::new();
    h.call(1, get_cursor(a()), read(vec![seen(a(), 1, 1024)]));
    h.call(0, advance(a(), 1, 1, 1024, None), advanced(a(), 1, 1024));
    h.entry(a(), 1, 1024, 1, 1);
    assert_flags(&h.check(), Rule::RealTime);
}

#[test]
fn a_compare_and_set_lands_at_expected_plus_one() {
    let mut h = good();
    h.call(1, advance(a(), 2, 2, 4096, Some(0)), advanced(a(), 3, 4096));
    h.entry(a(), 3, 4096, 2, 2);
    assert_flags(&h.check(), Rule::CompareAndSet);
}

#[test]
fn a_conflict_while_the_expected_version_was_current_is_flagged() {
    let mut h = good();
    // Version 2 (the finish) completed long before; nothing wrote version 3.
    h.call(1, advance(a(), 2, 2, 4096, Some(2)), conflict(2, 1));
    assert_flags(&h.check(), Rule::CompareAndSet);
    // A conflict against a write racing it is fine.
    let mut h = History::new();
    h.call(0, advance(a(), 1, 1, 1024, None), advanced(a(), 1, 1024));
    let cas = h.invoke(1, advance(a(), 1, 1, 2049, Some(1)));
    h.call(0, advance(a(), 1, 1, 3072, None), advanced(a(), 2, 3072));
    h.complete(1, cas, conflict(1, 2));
    h.entry(a(), 1, 1024, 1, 1).entry(a(), 2, 3072, 1, 1);
    assert_ok(&h.check());
    // So is one expecting a stale version.
    let mut h = good();
    h.call(1, advance(a(), 2, 2, 4096, Some(1)), conflict(1, 2));
    assert_ok(&h.check());
}

#[test]
fn a_conflict_names_a_version_current_during_the_call() {
    // In `good`, stream `a` is at version 2 (the finish) from long before these calls on.
    let refused = |found: u64| {
        let mut h = good();
        h.call(1, advance(a(), 2, 2, 4096, Some(1)), conflict(1, found));
        h.check()
    };
    assert_ok(&refused(2));
    for (found, why) in [
        (3, "which no write made before the call ended"),
        (1, "found the expected version 1"),
        (0, "which a later write had replaced before the call began"),
    ] {
        let report = refused(found);
        assert!(
            report
                .violations
                .iter()
                .any(|v| v.rule == Rule::CompareAndSet && v.message.contains(why)),
            "found version {found}: expected a violation saying {why:?}:\n{report}"
        );
    }
    // A version written while the call ran may be the one it found.
    let mut h = History::new();
    h.call(0, advance(a(), 1, 1, 1024, None), advanced(a(), 1, 1024));
    let cas = h.invoke(1, advance(a(), 1, 1, 2049, Some(0)));
    h.call(0, advance(a(), 1, 1, 3072, None), advanced(a(), 2, 3072));
    h.complete(1, cas, conflict(0, 2));
    h.entry(a(), 1, 1024, 1, 1).entry(a(), 2, 3072, 1, 1);
    assert_ok(&h.check());
    // A refusal must say what it found.
    let mut h = good();
    let vague = failed(Error::Conflict {
        entity: Entity::Cursor {
            pipeline: p(),
            stream: a(),
        },
        expected: "version 1".into(),
        actual: "something else".into(),
    });
    h.call(1, advance(a(), 2, 2, 4096, Some(1)), vague);
    assert_flags(&h.check(), Rule::CompareAndSet);
}

#[test]
fn an_epoch_granted_twice_is_flagged() {
    let mut h = good();
    h.call(2, force(2), granted(2, 2));
    assert_flags(&h.check(), Rule::Lease);
}

#[test]
fn epochs_grow_in_real_time_order() {
    let mut h = good();
    h.call(2, force(2), granted(0, 2));
    assert_flags(&h.check(), Rule::Lease);
}

#[test]
fn a_lease_granted_to_someone_else_is_flagged() {
    let mut h = good();
    h.call(2, force(2), granted(3, 1));
    assert_flags(&h.check(), Rule::Lease);
}

#[test]
fn a_version_written_by_another_than_its_epochs_holder_is_flagged() {
    let mut h = good();
    let entries = h
        .state
        .histories
        .get_mut(&p())
        .unwrap()
        .get_mut(&a())
        .unwrap();
    entries[0].by = Actor::Holder(holder(1));
    assert_flags(&h.check(), Rule::Lease);
}

#[test]
fn an_acquire_while_the_lease_is_live_is_flagged() {
    let mut h = good();
    h.call(2, acquire(2), granted(3, 2));
    assert_flags(&h.check(), Rule::Lease);
    // A takeover may.
    let mut h = good();
    h.call(2, force(2), granted(3, 2));
    assert_ok(&h.check());
}

#[test]
fn a_write_under_a_superseded_epoch_must_be_fenced() {
    let taken_over = || {
        let mut h = good();
        h.call(2, force(2), granted(3, 2));
        h
    };
    // The zombie of epoch 1 writes after the takeover completed, and it lands.
    let mut h = taken_over();
    h.call(0, advance(a(), 1, 1, 4096, None), advanced(a(), 3, 4096));
    h.entry(a(), 3, 4096, 1, 1);
    assert_flags(&h.check(), Rule::Lease);
    // An unacknowledged one that lands is no better.
    let mut h = taken_over();
    h.invoke(0, advance(a(), 1, 1, 4096, None));
    h.entry(a(), 3, 4096, 1, 1);
    assert_flags(&h.check(), Rule::Lease);
    // Fenced, it is fine.
    let mut h = taken_over();
    h.call(0, advance(a(), 1, 1, 4096, None), fenced(1));
    assert_ok(&h.check());
}

#[test]
fn a_write_fenced_while_its_epoch_was_current_is_flagged() {
    let mut h = good();
    // Epoch 2 is client 1's, and nobody took it over.
    h.call(1, advance(a(), 2, 2, 4096, None), fenced(2));
    assert_flags(&h.check(), Rule::Lease);
    // Released first, it is fenced rightly.
    let mut h = good();
    h.call(
        1,
        Op::Release {
            pipeline: p(),
            epoch: Epoch(2),
        },
        Outcome::Done,
    );
    h.call(1, advance(a(), 2, 2, 4096, None), fenced(2));
    assert_ok(&h.check());
}

#[test]
fn a_write_fenced_by_a_lower_epoch_is_flagged() {
    let mut h = good();
    h.call(2, force(2), granted(3, 2));
    let lower = failed(Error::Fenced {
        pipeline: p(),
        epoch: Epoch(2),
        reason: FenceReason::Superseded { current: Epoch(1) },
    });
    h.call(1, advance(a(), 2, 2, 4096, None), lower);
    assert_flags(&h.check(), Rule::Lease);
}

fn leased(epoch: u64, client: u32) -> Outcome {
    failed(Error::Leased {
        pipeline: p(),
        holder: holder(client),
        epoch: Epoch(epoch),
        expires_at: Timestamp::from_millis(2_000),
    })
}

#[test]
fn an_acquire_refused_names_a_live_lease() {
    // Epoch 2 is client 1's and live.
    let mut h = good();
    h.call(2, acquire(2), leased(2, 1));
    assert_ok(&h.check());
    // Not its holder.
    let mut h = good();
    h.call(2, acquire(2), leased(2, 0));
    assert_flags(&h.check(), Rule::Lease);
    // Released before.
    let mut h = good();
    h.call(2, acquire(2), leased(1, 0));
    assert_flags(&h.check(), Rule::Lease);
}

#[test]
fn a_renewal_keeps_its_epoch_and_is_fenced_after_a_takeover() {
    let renew = |epoch| Op::Renew {
        pipeline: p(),
        epoch: Epoch(epoch),
    };
    let mut h = good();
    h.call(1, renew(2), Outcome::Renewed { epoch: Epoch(2) });
    assert_ok(&h.check());
    let mut h = good();
    h.call(1, renew(2), Outcome::Renewed { epoch: Epoch(5) });
    assert_flags(&h.check(), Rule::Lease);
    // Client 0's epoch 1 was released and superseded: renewing it must fail.
    let mut h = good();
    h.call(0, renew(1), Outcome::Renewed { epoch: Epoch(1) });
    assert_flags(&h.check(), Rule::Lease);
}

#[test]
fn epochs_never_decrease_along_versions() {
    let mut h = History::new();
    let first = h.invoke(1, advance(a(), 2, 2, 1024, None));
    let second = h.invoke(1, advance(a(), 1, 1, 2048, None));
    h.complete(0, first, advanced(a(), 1, 1024));
    h.complete(1, second, advanced(a(), 2, 2048));
    h.entry(a(), 1, 1024, 2, 2).entry(a(), 2, 2048, 1, 1);
    assert_flags(&h.check(), Rule::Lease);
}

#[test]
fn half_a_finish_is_flagged() {
    let mut h = good();
    // A finish that never answered left only its cursor of a.
    h.invoke(1, finish(2, 2, 4096, 5120));
    h.finish_entry(a(), 3, 4096, 2, 2);
    assert_flags(&h.check(), Rule::Atomicity);
    // Whole, it is fine.
    h.finish_entry(b(), 2, 5120, 2, 2);
    assert_ok(&h.check());
}

#[test]
fn a_run_succeeds_exactly_when_its_finish_landed() {
    // The final cursors landed, the run did not end: half a finish across the run record.
    let mut h = good();
    h.invoke(1, finish(2, 2, 4096, 5120));
    h.finish_entry(a(), 3, 4096, 2, 2)
        .finish_entry(b(), 2, 5120, 2, 2)
        .run_status(2, RunStatus::Running);
    assert_flags(&h.check(), Rule::Atomicity);
    // The run succeeded, and no cursor of its finish is there: the other half.
    let mut h = good();
    h.invoke(1, finish(2, 2, 4096, 5120));
    h.run_status(2, RunStatus::Succeeded);
    assert_flags(&h.check(), Rule::Atomicity);
    // Neither half: a finish that never took effect, its run abandoned by a takeover.
    let mut h = good();
    h.invoke(1, finish(2, 2, 4096, 5120));
    h.run_status(2, RunStatus::Abandoned);
    assert_ok(&h.check());
}

#[test]
fn a_read_of_half_a_finish_is_flagged() {
    let mut h = good();
    let finish_id = h.invoke(1, finish(2, 2, 4096, 5120));
    h.call(
        2,
        Op::ListCursors { pipeline: p() },
        read(vec![seen(a(), 3, 4096), seen(b(), 1, 3072)]),
    );
    h.complete(1, finish_id, Outcome::Done);
    h.finish_entry(a(), 3, 4096, 2, 2)
        .finish_entry(b(), 2, 5120, 2, 2);
    assert_flags(&h.check(), Rule::Atomicity);
}

#[test]
fn a_client_numbered_past_the_stride_is_refused() {
    assert!(super::check_client(super::MAX_CLIENTS - 1).is_ok());
    for client in [super::MAX_CLIENTS, u32::MAX] {
        let refused = super::check_client(client).expect_err("refused");
        assert_eq!(refused.kind(), std::io::ErrorKind::InvalidInput);
        assert!(
            refused.to_string().contains(&client.to_string()),
            "{refused}"
        );
    }
}

#[test]
fn a_workload_without_pipelines_or_with_too_many_clients_is_refused() {
    let project = hakiri_core::ProjectId::new("shape").unwrap();
    let ok = super::Workload::new(project, 1);
    assert!(ok.validate().is_ok());
    for bad in [
        ok.clone().pipelines(0),
        ok.clone().clients(0),
        ok.clone().clients(super::MAX_CLIENTS + 1),
    ] {
        assert!(
            matches!(bad.validate(), Err(Error::InvalidArgument(_))),
            "{bad:?}"
        );
    }
}

#[test]
fn a_pipeline_read_finds_the_pipeline_at_one_generation() {
    let get = || Op::GetPipeline { pipeline: p() };
    let at = |generation: u64| Outcome::Pipeline { generation };
    let mut h = good();
    h.call(1, get(), at(1)).call(0, get(), at(1));
    // An answer that does not say what the catalog did proves nothing either way.
    h.call(1, get(), failed(Error::Unavailable("timed out".into())));
    assert_ok(&h.check());

    let mut h = good();
    h.call(1, get(), at(1)).call(0, get(), at(2));
    assert_flags(&h.check(), Rule::StableRead);

    let mut h = good();
    h.call(
        1,
        get(),
        failed(Error::NotFound(Entity::Pipeline { pipeline: p() })),
    );
    assert_flags(&h.check(), Rule::StableRead);
}
