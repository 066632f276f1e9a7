//! Schema versions and evolution decisions: held → paused → decided (invariants 3, 5 and 7
//! in `docs/guarantees.md`).

use hakiri_core::schema::Retyped;
use hakiri_core::{
    Actor, BeginRun, CatalogExt, ChangeClass, Column, ColumnType, CursorKind, Decide, Decision,
    DecisionId, DecisionQuery, Entity, Error, EventKind, FinishRun, Lease, Limit, Observation,
    Outcome, PauseChange, PolicyAction, Resolution, Run, RunError, RunStatus, Schema, SchemaPolicy,
    Trigger, Verdict,
};
use serde_json::json;

use crate::{operator, pid, reason, spec, stream, value, Ctx};

fn schema_of(columns: &[(&str, ColumnType, bool)]) -> Schema {
    Schema::new(
        columns
            .iter()
            .map(|(name, ty, nullable)| Column::new(*name, *ty, *nullable))
            .collect(),
        vec!["id".to_owned()],
    )
    .expect("valid schema")
}

/// The first schema of a stream.
fn base() -> Schema {
    schema_of(&[
        ("id", ColumnType::Integer, false),
        ("name", ColumnType::String, true),
        ("amount", ColumnType::Integer, true),
    ])
}

/// `base` plus a nullable column `note`: additive.
fn additive() -> Schema {
    schema_of(&[
        ("id", ColumnType::Integer, false),
        ("name", ColumnType::String, true),
        ("amount", ColumnType::Integer, true),
        ("note", ColumnType::String, true),
    ])
}

/// `base` with `name` retyped from string to integer: breaking.
fn breaking() -> Schema {
    schema_of(&[
        ("id", ColumnType::Integer, false),
        ("name", ColumnType::Integer, true),
        ("amount", ColumnType::Integer, true),
    ])
}

/// `base` with `amount` relaxed from integer to number: widening.
fn widening() -> Schema {
    schema_of(&[
        ("id", ColumnType::Integer, false),
        ("name", ColumnType::String, true),
        ("amount", ColumnType::Number, true),
    ])
}

async fn observe(cx: &Ctx, lease: &Lease, run: &Run, s: &str, schema: Schema) -> Observation {
    cx.observe_schema(lease, run.id, &stream(s), schema)
        .await
        .expect("observe schema")
}

async fn event_count(cx: &Ctx) -> usize {
    cx.events(0, Limit::MAX).await.expect("events").len()
}

async fn all_decisions(cx: &Ctx) -> Vec<Decision> {
    let page = cx
        .list_decisions(&DecisionQuery {
            limit: Limit::MAX,
            ..DecisionQuery::default()
        })
        .await
        .expect("list decisions");
    assert_eq!(page.next, None);
    page.items
}

async fn versions(cx: &Ctx, s: &str) -> Vec<hakiri_core::SchemaVersion> {
    cx.list_schema_versions(&pid("p"), &stream(s))
        .await
        .expect("list schema versions")
}

fn decide(resolution: Resolution) -> Decide {
    Decide {
        resolution,
        by: operator(),
        reason: reason("reviewed with the data team"),
    }
}

/// Pipeline "p" running, with stream "s" at `base` (version 1) and the breaking change held.
async fn held(cx: &Ctx) -> (Lease, Run, Decision) {
    let (lease, run) = cx.running("p").await;
    observe(cx, &lease, &run, "s", base()).await;
    let observation = observe(cx, &lease, &run, "s", breaking()).await;
    let decision = observation.decision.expect("a held decision");
    assert_eq!(decision.verdict, Verdict::Held);
    (lease, run, decision)
}

/// Fails `run` as a connector does after a held or rejected schema.
async fn stop(cx: &Ctx, lease: &Lease, run: &Run) {
    let outcome = Outcome::Failed {
        error: RunError::new("schema change needs review", false),
    };
    cx.finish_run(lease, run.id, FinishRun::new(outcome))
        .await
        .expect("finish run");
}

/// The first schema observed on a stream becomes version 1, with no decision, verdict `Accepted`.
pub async fn schemas_first_schema_is_version_one(cx: &Ctx) {
    let (lease, run) = cx.running("p").await;
    let observation = observe(cx, &lease, &run, "s", base()).await;
    assert_eq!(observation.verdict, Verdict::Accepted);
    assert_eq!(observation.decision, None);
    let current = &observation.current;
    assert_eq!(current.pipeline, pid("p"));
    assert_eq!(current.stream, stream("s"));
    assert_eq!(current.version, 1);
    assert_eq!(current.schema, base());
    assert_eq!(current.fingerprint, base().fingerprint());
    assert_eq!(current.decision, None);
    assert_eq!(current.run, Some(run.id));
    assert_eq!(
        cx.get_schema(&pid("p"), &stream("s"), None).await.unwrap(),
        *current
    );
    assert_eq!(versions(cx, "s").await, std::slice::from_ref(current));
    assert!(all_decisions(cx).await.is_empty());
    assert!(cx.get_pipeline(&pid("p")).await.unwrap().paused.is_none());
}

/// Re-observing the current schema, even with its columns in another order, changes nothing.
pub async fn schemas_same_schema_changes_nothing(cx: &Ctx) {
    let (lease, run) = cx.running("p").await;
    let first = observe(cx, &lease, &run, "s", base()).await;
    let events = event_count(cx).await;
    let reordered = schema_of(&[
        ("amount", ColumnType::Integer, true),
        ("name", ColumnType::String, true),
        ("id", ColumnType::Integer, false),
    ]);
    for schema in [base(), reordered] {
        let again = observe(cx, &lease, &run, "s", schema).await;
        assert_eq!(again.verdict, Verdict::Accepted);
        assert_eq!(again.decision, None);
        assert_eq!(again.current, first.current);
    }
    assert_eq!(versions(cx, "s").await.len(), 1);
    assert!(all_decisions(cx).await.is_empty());
    assert_eq!(event_count(cx).await, events);
}

/// Under the default policy an additive change is accepted by the policy: the decision is
/// recorded with its diff and class, and the schema becomes version 2.
pub async fn schemas_additive_change_is_accepted_by_default(cx: &Ctx) {
    let (lease, run) = cx.running("p").await;
    observe(cx, &lease, &run, "s", base()).await;
    let observation = observe(cx, &lease, &run, "s", additive()).await;
    assert_eq!(observation.verdict, Verdict::Accepted);
    let decision = observation.decision.expect("a recorded decision");
    assert_eq!(decision.pipeline, pid("p"));
    assert_eq!(decision.stream, stream("s"));
    assert_eq!(decision.run, Some(run.id));
    assert_eq!(decision.verdict, Verdict::Accepted);
    assert_eq!(decision.class, ChangeClass::Additive);
    assert_eq!(
        decision.diff.added,
        [Column::new("note", ColumnType::String, true)]
    );
    assert!(decision.diff.removed.is_empty() && decision.diff.retyped.is_empty());
    assert_eq!(decision.decided_by, Actor::Policy);
    assert_eq!(decision.from_version, 1);
    assert_eq!(decision.to_version, Some(2));
    assert_eq!(decision.proposed, additive());
    assert_eq!(decision.fingerprint, additive().fingerprint());
    assert!(decision.decided_at.is_some(), "a policy verdict is final");
    assert_eq!(observation.current.version, 2);
    assert_eq!(observation.current.schema, additive());
    assert_eq!(observation.current.decision, Some(decision.id));
    let current = cx.get_schema(&pid("p"), &stream("s"), None).await.unwrap();
    assert_eq!(current, observation.current);
    assert_eq!(all_decisions(cx).await, [decision]);
    assert!(cx.get_pipeline(&pid("p")).await.unwrap().paused.is_none());
}

/// Under the default policy a widening change (integer → number) is accepted as class
/// `Widening`.
pub async fn schemas_widening_change_is_accepted_by_default(cx: &Ctx) {
    let (lease, run) = cx.running("p").await;
    observe(cx, &lease, &run, "s", base()).await;
    let observation = observe(cx, &lease, &run, "s", widening()).await;
    assert_eq!(observation.verdict, Verdict::Accepted);
    let decision = observation.decision.expect("a recorded decision");
    assert_eq!(decision.class, ChangeClass::Widening);
    assert_eq!(
        decision.diff.retyped,
        [Retyped {
            column: "amount".to_owned(),
            from: ColumnType::Integer,
            to: ColumnType::Number,
        }]
    );
    assert_eq!(observation.current.version, 2);
}

/// A breaking change is held: the decision is `Held`, the pipeline is paused by the policy, the
/// current version stays, and no new run can begin.
pub async fn schemas_breaking_change_is_held_and_pauses(cx: &Ctx) {
    let (lease, run) = cx.running("p").await;
    let first = observe(cx, &lease, &run, "s", base()).await;
    let observation = observe(cx, &lease, &run, "s", breaking()).await;
    assert_eq!(observation.verdict, Verdict::Held);
    assert_eq!(
        observation.current, first.current,
        "the current version stays"
    );
    let decision = observation.decision.expect("a held decision");
    assert_eq!(decision.verdict, Verdict::Held);
    assert_eq!(decision.class, ChangeClass::Breaking);
    assert_eq!(
        decision.diff.retyped,
        [Retyped {
            column: "name".to_owned(),
            from: ColumnType::String,
            to: ColumnType::Integer,
        }]
    );
    assert_eq!(decision.decided_by, Actor::Policy);
    assert_eq!(decision.from_version, 1);
    assert_eq!(decision.to_version, None);
    assert_eq!(decision.decided_at, None);
    assert!(decision.is_pending());

    let pipeline = cx.get_pipeline(&pid("p")).await.unwrap();
    let pause = pipeline
        .paused
        .expect("a held decision pauses the pipeline");
    assert_eq!(pause.by, Actor::Policy);
    assert_eq!(
        cx.get_schema(&pid("p"), &stream("s"), None)
            .await
            .unwrap()
            .version,
        1
    );
    assert_eq!(versions(cx, "s").await.len(), 1);
    assert_eq!(
        cx.held_decisions(&pid("p")).await.unwrap(),
        std::slice::from_ref(&decision)
    );
    let status = cx.all_statuses().await.unwrap();
    assert_eq!(status.items[0].held_decisions, [decision.id]);

    stop(cx, &lease, &run).await;
    let err = cx
        .begin_run(&lease, BeginRun::new(Trigger::Manual))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::FailedPrecondition(_)), "{err:?}");
}

/// Re-observing a held schema returns the same held decision and records nothing new.
pub async fn schemas_reobserving_held_schema_records_nothing(cx: &Ctx) {
    let (lease, run, decision) = held(cx).await;
    let events = event_count(cx).await;
    let again = observe(cx, &lease, &run, "s", breaking()).await;
    assert_eq!(again.verdict, Verdict::Held);
    assert_eq!(again.decision.map(|d| d.id), Some(decision.id));
    assert_eq!(again.current.version, 1);
    assert_eq!(all_decisions(cx).await, [decision]);
    assert_eq!(versions(cx, "s").await.len(), 1);
    assert_eq!(event_count(cx).await, events);
}

/// A pipeline paused by a held decision cannot be resumed by hand: `FailedPrecondition`.
pub async fn schemas_resume_while_held_is_refused(cx: &Ctx) {
    let (_lease, _run, decision) = held(cx).await;
    let before = cx.get_pipeline(&pid("p")).await.unwrap();
    let err = cx
        .set_paused(&pid("p"), PauseChange::Resume, &operator())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::FailedPrecondition(_)), "{err:?}");
    assert_eq!(cx.get_pipeline(&pid("p")).await.unwrap(), before);
    assert_eq!(cx.held_decisions(&pid("p")).await.unwrap(), [decision]);
}

/// Accepting a held decision records the operator and reason, appends the proposed schema as a
/// new version and resumes the pipeline.
pub async fn schemas_decide_accept_appends_version_and_resumes(cx: &Ctx) {
    let (lease, run, held) = held(cx).await;
    stop(cx, &lease, &run).await;
    let decided = cx
        .decide(held.id, decide(Resolution::Accept))
        .await
        .unwrap();
    assert_eq!(decided.id, held.id);
    assert_eq!(decided.verdict, Verdict::Accepted);
    assert_eq!(decided.decided_by, operator());
    assert_eq!(decided.reason, reason("reviewed with the data team"));
    assert_eq!(decided.to_version, Some(2));
    assert!(decided.decided_at.is_some());
    assert_eq!(decided.from_version, held.from_version);
    assert_eq!(decided.proposed, held.proposed);
    assert_eq!(decided.diff, held.diff);
    assert_eq!(decided.created_at, held.created_at);

    let current = cx.get_schema(&pid("p"), &stream("s"), None).await.unwrap();
    assert_eq!(current.version, 2);
    assert_eq!(current.schema, breaking());
    assert_eq!(current.decision, Some(held.id));
    assert_eq!(all_decisions(cx).await, [decided]);
    assert!(cx.get_pipeline(&pid("p")).await.unwrap().paused.is_none());
    assert!(cx.held_decisions(&pid("p")).await.unwrap().is_empty());
    let events = cx.events(0, Limit::MAX).await.unwrap();
    assert!(events.iter().any(|e| e.actor == operator()
        && e.kind
            == EventKind::DecisionResolved {
                decision: held.id,
                verdict: Verdict::Accepted
            }));
    cx.begin_run(&lease, BeginRun::new(Trigger::Manual))
        .await
        .expect("the resumed pipeline runs again");
}

/// Rejecting a held decision keeps the current version and resumes the pipeline.
pub async fn schemas_decide_reject_keeps_version_and_resumes(cx: &Ctx) {
    let (lease, run, held) = held(cx).await;
    stop(cx, &lease, &run).await;
    let decided = cx
        .decide(held.id, decide(Resolution::Reject))
        .await
        .unwrap();
    assert_eq!(decided.verdict, Verdict::Rejected);
    assert_eq!(decided.decided_by, operator());
    assert_eq!(decided.reason, reason("reviewed with the data team"));
    assert_eq!(decided.to_version, None);
    assert!(decided.decided_at.is_some());
    let current = cx.get_schema(&pid("p"), &stream("s"), None).await.unwrap();
    assert_eq!(current.version, 1);
    assert_eq!(current.schema, base());
    assert_eq!(versions(cx, "s").await.len(), 1);
    assert_eq!(all_decisions(cx).await, [decided]);
    assert!(cx.get_pipeline(&pid("p")).await.unwrap().paused.is_none());
    cx.begin_run(&lease, BeginRun::new(Trigger::Manual))
        .await
        .expect("the resumed pipeline runs again");
}

/// A decision is decided once: deciding it again is a `Conflict` and changes nothing.
pub async fn schemas_deciding_twice_conflicts(cx: &Ctx) {
    let (_lease, _run, held) = held(cx).await;
    let decided = cx
        .decide(held.id, decide(Resolution::Accept))
        .await
        .unwrap();
    let events = event_count(cx).await;
    for resolution in [Resolution::Reject, Resolution::Accept] {
        let err = cx.decide(held.id, decide(resolution)).await.unwrap_err();
        match &err {
            Error::Conflict { entity, .. } => {
                assert_eq!(*entity, Entity::Decision { decision: held.id });
            }
            other => panic!("expected Conflict, got {other:?}"),
        }
    }
    assert_eq!(all_decisions(cx).await, [decided]);
    assert_eq!(versions(cx, "s").await.len(), 2);
    assert_eq!(event_count(cx).await, events);
}

/// Deciding a decision that does not exist is `NotFound`.
pub async fn schemas_decide_missing_is_not_found(cx: &Ctx) {
    cx.pipeline("p").await;
    let missing = DecisionId(987_654);
    let err = cx
        .decide(missing, decide(Resolution::Accept))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::NotFound(Entity::Decision { decision }) if decision == missing),
        "{err:?}"
    );
}

/// A policy that rejects breaking changes records a `Rejected` decision by the policy and does
/// not pause the pipeline.
pub async fn schemas_reject_policy_rejects_without_pausing(cx: &Ctx) {
    let policy = SchemaPolicy {
        breaking: PolicyAction::Reject,
        ..SchemaPolicy::default()
    };
    cx.create_pipeline(
        spec("p", CursorKind::Monotonic).with_schema_policy(policy),
        &operator(),
    )
    .await
    .unwrap();
    let lease = cx.lease("p", "worker-1").await;
    let run = cx
        .begin_run(&lease, BeginRun::new(Trigger::Manual))
        .await
        .unwrap();
    let first = observe(cx, &lease, &run, "s", base()).await;
    let observation = observe(cx, &lease, &run, "s", breaking()).await;
    assert_eq!(observation.verdict, Verdict::Rejected);
    assert_eq!(observation.current, first.current);
    let decision = observation.decision.expect("a recorded decision");
    assert_eq!(decision.verdict, Verdict::Rejected);
    assert_eq!(decision.class, ChangeClass::Breaking);
    assert_eq!(decision.decided_by, Actor::Policy);
    assert_eq!(decision.to_version, None);
    assert!(decision.decided_at.is_some());
    assert!(cx.get_pipeline(&pid("p")).await.unwrap().paused.is_none());
    assert!(cx.held_decisions(&pid("p")).await.unwrap().is_empty());
    assert_eq!(versions(cx, "s").await.len(), 1);
    // Additive changes still follow the default.
    let added = observe(cx, &lease, &run, "s", additive()).await;
    assert_eq!(added.verdict, Verdict::Accepted);
}

/// `get_schema` reads any version (or the current one); `list_schema_versions` lists them oldest
/// first; a version that does not exist is `NotFound`.
pub async fn schemas_versions_are_readable_oldest_first(cx: &Ctx) {
    let (lease, run) = cx.running("p").await;
    let third = schema_of(&[
        ("id", ColumnType::Integer, false),
        ("name", ColumnType::String, true),
        ("amount", ColumnType::Integer, true),
        ("note", ColumnType::String, true),
        ("extra", ColumnType::Json, true),
    ]);
    let schemas = [base(), additive(), third];
    let mut decisions = vec![None];
    for schema in &schemas {
        let observation = observe(cx, &lease, &run, "s", schema.clone()).await;
        if let Some(d) = observation.decision {
            decisions.push(Some(d.id));
        }
    }
    let listed = versions(cx, "s").await;
    assert_eq!(listed.len(), 3);
    for (i, (schema, decision)) in schemas.iter().zip(&decisions).enumerate() {
        let n = u32::try_from(i).unwrap() + 1;
        let version = cx
            .get_schema(&pid("p"), &stream("s"), Some(n))
            .await
            .unwrap();
        assert_eq!(version.version, n);
        assert_eq!(version.schema, *schema);
        assert_eq!(version.fingerprint, schema.fingerprint());
        assert_eq!(version.decision, *decision);
        assert_eq!(listed[i], version, "oldest first");
    }
    assert_eq!(
        cx.get_schema(&pid("p"), &stream("s"), None).await.unwrap(),
        listed[2]
    );
    for missing in [0, 4] {
        let err = cx
            .get_schema(&pid("p"), &stream("s"), Some(missing))
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::NotFound(Entity::Schema { version: Some(v), .. }) if v == missing),
            "{err:?}"
        );
    }
}

/// A stream with no schema yet is `NotFound` for `get_schema` and an empty list for
/// `list_schema_versions`; a missing pipeline is `NotFound` for both.
pub async fn schemas_unknown_stream_is_not_found(cx: &Ctx) {
    let (lease, run) = cx.running("p").await;
    observe(cx, &lease, &run, "s", base()).await;
    let err = cx
        .get_schema(&pid("p"), &stream("other"), None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::NotFound(Entity::Schema { .. })),
        "{err:?}"
    );
    assert!(versions(cx, "other").await.is_empty());
    let err = cx
        .get_schema(&pid("ghost"), &stream("s"), None)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "{err:?}");
    let err = cx
        .list_schema_versions(&pid("ghost"), &stream("s"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::NotFound(Entity::Pipeline { .. })),
        "{err:?}"
    );
}

/// `list_decisions` lists oldest first, filters by pipeline and `held_only`, and pages by id.
pub async fn schemas_list_decisions_filters_and_pages(cx: &Ctx) {
    let (p_lease, p_run) = cx.running("p").await;
    for s in ["a", "b", "c"] {
        observe(cx, &p_lease, &p_run, s, base()).await;
    }
    let d1 = observe(cx, &p_lease, &p_run, "a", additive())
        .await
        .decision
        .unwrap();
    let d2 = observe(cx, &p_lease, &p_run, "c", widening())
        .await
        .decision
        .unwrap();
    let d3 = observe(cx, &p_lease, &p_run, "b", breaking())
        .await
        .decision
        .unwrap();
    cx.pipeline("q").await;
    let q_lease = cx.lease("q", "worker-2").await;
    let q_run = cx
        .begin_run(&q_lease, BeginRun::new(Trigger::Manual))
        .await
        .unwrap();
    observe(cx, &q_lease, &q_run, "a", base()).await;
    let d4 = observe(cx, &q_lease, &q_run, "a", breaking())
        .await
        .decision
        .unwrap();
    assert!(d1.id < d2.id && d2.id < d3.id && d3.id < d4.id);

    let list = |pipeline: Option<&str>, held_only, after, limit| {
        let query = DecisionQuery {
            pipeline: pipeline.map(pid),
            held_only,
            after,
            limit,
        };
        async move { cx.list_decisions(&query).await.unwrap() }
    };
    let ids = |items: &[Decision]| items.iter().map(|d| d.id).collect::<Vec<_>>();

    let all = list(None, false, None, Limit::MAX).await;
    assert_eq!(ids(&all.items), [d1.id, d2.id, d3.id, d4.id]);
    assert_eq!(all.next, None);
    let p = list(Some("p"), false, None, Limit::MAX).await;
    assert_eq!(ids(&p.items), [d1.id, d2.id, d3.id]);
    let held = list(None, true, None, Limit::MAX).await;
    assert_eq!(ids(&held.items), [d3.id, d4.id]);
    let p_held = list(Some("p"), true, None, Limit::MAX).await;
    assert_eq!(ids(&p_held.items), [d3.id]);
    let q = list(Some("q"), false, None, Limit::MAX).await;
    assert_eq!(q.items, std::slice::from_ref(&d4));

    let two = Limit::new(2).unwrap();
    let first = list(None, false, None, two).await;
    assert_eq!(ids(&first.items), [d1.id, d2.id]);
    assert_eq!(first.next, Some(d2.id));
    let second = list(None, false, first.next, two).await;
    assert_eq!(ids(&second.items), [d3.id, d4.id]);
    assert_eq!(second.next, None);

    let one = Limit::new(1).unwrap();
    let first = list(None, true, None, one).await;
    assert_eq!(ids(&first.items), [d3.id]);
    assert_eq!(first.next, Some(d3.id));
    let second = list(None, true, first.next, one).await;
    assert_eq!(ids(&second.items), [d4.id]);
    assert_eq!(second.next, None);
}

/// A finish carrying schemas records their versions and decisions in the same all-or-nothing step
/// as the finish: a failing cursor in the finish records none of them.
pub async fn schemas_finish_run_records_decisions_atomically(cx: &Ctx) {
    let (lease, run) = cx.running("p").await;
    observe(cx, &lease, &run, "s", base()).await;
    cx.advance_to(&lease, run.id, &stream("s"), value(json!(10)))
        .await
        .unwrap();
    let events = event_count(cx).await;

    let failing = FinishRun::succeeded()
        .with_schema(stream("s"), additive())
        .with_schema(stream("t"), base())
        .with_cursor(stream("s"), value(json!(5)));
    let err = cx.finish_run(&lease, run.id, failing).await.unwrap_err();
    assert!(matches!(err, Error::CursorRegression { .. }), "{err:?}");
    assert_eq!(cx.get_run(run.id).await.unwrap().status, RunStatus::Running);
    assert!(all_decisions(cx).await.is_empty());
    assert_eq!(versions(cx, "s").await.len(), 1);
    assert!(versions(cx, "t").await.is_empty());
    assert_eq!(event_count(cx).await, events);

    let finish = FinishRun::succeeded()
        .with_schema(stream("s"), additive())
        .with_schema(stream("t"), base())
        .with_cursor(stream("s"), value(json!(20)));
    let finished = cx.finish_run(&lease, run.id, finish).await.unwrap();
    assert_eq!(finished.status, RunStatus::Succeeded);
    let decisions = all_decisions(cx).await;
    assert_eq!(decisions.len(), 1);
    let decision = &decisions[0];
    assert_eq!(decision.stream, stream("s"));
    assert_eq!(decision.run, Some(run.id));
    assert_eq!(decision.verdict, Verdict::Accepted);
    assert_eq!(decision.class, ChangeClass::Additive);
    let s = cx.get_schema(&pid("p"), &stream("s"), None).await.unwrap();
    assert_eq!((s.version, s.schema), (2, additive()));
    let t = cx.get_schema(&pid("p"), &stream("t"), None).await.unwrap();
    assert_eq!((t.version, t.schema, t.decision), (1, base(), None));
    let cursor = cx
        .get_cursor(&pid("p"), &stream("s"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cursor.value, value(json!(20)));
    let new_events = cx.events(events as u64, Limit::MAX).await.unwrap();
    assert!(new_events
        .iter()
        .any(|e| matches!(e.kind, EventKind::RunFinished { run: r, status: RunStatus::Succeeded } if r == run.id)));
    assert!(new_events.iter().any(|e| matches!(
        e.kind,
        EventKind::DecisionRecorded { decision: d, verdict: Verdict::Accepted, .. } if d == decision.id
    )));
}

/// Schema versions and decisions are append-only: later observations and resolutions leave
/// earlier versions and decided decisions exactly as they were.
pub async fn schemas_history_is_append_only(cx: &Ctx) {
    let (lease, run) = cx.running("p").await;
    observe(cx, &lease, &run, "s", base()).await;
    observe(cx, &lease, &run, "s", additive()).await;
    let held = observe(cx, &lease, &run, "s", breaking())
        .await
        .decision
        .unwrap();
    let versions_before = versions(cx, "s").await;
    let decisions_before = all_decisions(cx).await;
    assert_eq!(versions_before.len(), 2);
    assert_eq!(decisions_before.len(), 2);

    stop(cx, &lease, &run).await;
    let decided = cx
        .decide(held.id, decide(Resolution::Accept))
        .await
        .unwrap();
    let run = cx
        .begin_run(&lease, BeginRun::new(Trigger::Manual))
        .await
        .unwrap();
    let current = cx.get_schema(&pid("p"), &stream("s"), None).await.unwrap();
    let mut next_columns = current.schema.columns().to_vec();
    next_columns.push(Column::new("later", ColumnType::Boolean, true));
    let next = Schema::new(next_columns, vec!["id".to_owned()]).unwrap();
    observe(cx, &lease, &run, "s", next).await;

    let versions_after = versions(cx, "s").await;
    assert_eq!(versions_after.len(), 4);
    assert_eq!(versions_after[..2], versions_before[..]);
    let decisions_after = all_decisions(cx).await;
    assert_eq!(decisions_after.len(), 3);
    assert_eq!(
        decisions_after[0], decisions_before[0],
        "a decided decision never changes"
    );
    assert_eq!(
        decisions_after[1], decided,
        "resolution is the only change, made once"
    );
    let d = &decisions_after[1];
    let h = &decisions_before[1];
    assert_eq!(
        (
            d.id,
            d.from_version,
            &d.proposed,
            &d.diff,
            d.class,
            d.created_at
        ),
        (
            h.id,
            h.from_version,
            &h.proposed,
            &h.diff,
            h.class,
            h.created_at
        )
    );
}

#[doc(hidden)]
#[macro_export]
macro_rules! __contract_schemas {
    ($harness:expr) => {
        $crate::__contract_checks!($harness; schemas:
            schemas_first_schema_is_version_one,
            schemas_same_schema_changes_nothing,
            schemas_additive_change_is_accepted_by_default,
            schemas_widening_change_is_accepted_by_default,
            schemas_breaking_change_is_held_and_pauses,
            schemas_reobserving_held_schema_records_nothing,
            schemas_resume_while_held_is_refused,
            schemas_decide_accept_appends_version_and_resumes,
            schemas_decide_reject_keeps_version_and_resumes,
            schemas_deciding_twice_conflicts,
            schemas_decide_missing_is_not_found,
            schemas_reject_policy_rejects_without_pausing,
            schemas_versions_are_readable_oldest_first,
            schemas_unknown_stream_is_not_found,
            schemas_list_decisions_filters_and_pages,
            schemas_finish_run_records_decisions_atomically,
            schemas_history_is_append_only,
        );
    };
}
