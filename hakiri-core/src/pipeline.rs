//! Pipelines: the declared [`PipelineSpec`], its schedule and retry policy, and the stored
//! [`Pipeline`] record with its generation and pause state.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::audit::{Actor, EventKind, Reason};
use crate::cursor::CursorKind;
use crate::error::{Entity, Error, Result};
use crate::evolution::SchemaPolicy;
use crate::ids::{ConnectorRef, Generation, PipelineId};
use crate::lease::LeaseState;
use crate::run::Trigger;
use crate::time::{human_duration, Timestamp};

/// Largest connector config, serialised, in bytes.
pub const MAX_CONFIG_BYTES: usize = 256 * 1024;
/// Shortest interval schedule: anything faster is a busy loop, not a schedule.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// What a pipeline is: declared by operators (`hakiri.toml`), versioned by a [`Generation`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineSpec {
    /// The pipeline's id.
    pub id: PipelineId,
    /// Which connector runs it.
    pub connector: ConnectorRef,
    /// The connector's configuration (a JSON object, ≤ 256 KiB).
    #[serde(default)]
    pub config: ConnectorConfig,
    /// How the pipeline's cursors are ordered.
    pub cursor_kind: CursorKind,
    /// When it runs.
    #[serde(default)]
    pub schedule: Schedule,
    /// A disabled pipeline is never dispatched; its state is kept.
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,
    /// How failed runs are retried.
    #[serde(default)]
    pub retry: RetryPolicy,
    /// What to do with each class of schema change.
    #[serde(default)]
    pub schema_policy: SchemaPolicy,
}

fn enabled_by_default() -> bool {
    true
}

impl PipelineSpec {
    /// A manual, enabled pipeline with default retry and schema policies and an empty config.
    pub fn new(id: PipelineId, connector: ConnectorRef, cursor_kind: CursorKind) -> Self {
        Self {
            id,
            connector,
            config: ConnectorConfig::default(),
            cursor_kind,
            schedule: Schedule::Manual,
            enabled: true,
            retry: RetryPolicy::default(),
            schema_policy: SchemaPolicy::default(),
        }
    }

    /// Sets the schedule.
    #[must_use]
    pub fn with_schedule(mut self, schedule: Schedule) -> Self {
        self.schedule = schedule;
        self
    }

    /// Sets the connector config.
    #[must_use]
    pub fn with_config(mut self, config: ConnectorConfig) -> Self {
        self.config = config;
        self
    }

    /// Enables or disables the pipeline.
    #[must_use]
    pub fn with_enabled(mut self, enabled: bool) -> Self {
        self.enabled = enabled;
        self
    }

    /// Sets the retry policy.
    #[must_use]
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Sets the schema policy.
    #[must_use]
    pub fn with_schema_policy(mut self, policy: SchemaPolicy) -> Self {
        self.schema_policy = policy;
        self
    }
}

/// A connector's configuration: a JSON object of at most [`MAX_CONFIG_BYTES`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "serde_json::Value", into = "serde_json::Value")]
pub struct ConnectorConfig(serde_json::Map<String, serde_json::Value>);

impl ConnectorConfig {
    /// Validates `value`: it must be a JSON object no larger than [`MAX_CONFIG_BYTES`].
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] otherwise.
    pub fn new(value: serde_json::Value) -> Result<Self> {
        let serde_json::Value::Object(map) = value else {
            return Err(Error::invalid("connector config must be a JSON object"));
        };
        let size = crate::cursor::json_size(&serde_json::Value::Object(map.clone()));
        if size > MAX_CONFIG_BYTES {
            return Err(Error::invalid(format!(
                "connector config is {size} bytes; the limit is {MAX_CONFIG_BYTES}"
            )));
        }
        Ok(Self(map))
    }

    /// The config as a JSON object.
    pub fn as_map(&self) -> &serde_json::Map<String, serde_json::Value> {
        &self.0
    }
}

impl TryFrom<serde_json::Value> for ConnectorConfig {
    type Error = Error;
    fn try_from(value: serde_json::Value) -> Result<Self> {
        Self::new(value)
    }
}

impl From<ConnectorConfig> for serde_json::Value {
    fn from(config: ConnectorConfig) -> Self {
        serde_json::Value::Object(config.0)
    }
}

/// When a pipeline runs on its own.
///
/// In TOML: `schedule = "manual"`, `schedule = { every = "15m" }` or
/// `schedule = { cron = "0 */5 * * * *" }`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Schedule {
    /// Only when an operator asks.
    #[default]
    Manual,
    /// Every fixed interval after the previous scheduled start (≥ 1 s).
    #[serde(rename = "every")]
    Interval(#[serde(with = "human_duration")] Duration),
    /// On a cron expression, in UTC.
    Cron(CronSchedule),
}

impl Schedule {
    /// Checks the interval bound. Cron expressions are checked when parsed.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an interval under [`MIN_INTERVAL`].
    pub fn validate(&self) -> Result<()> {
        match self {
            Schedule::Interval(every) if *every < MIN_INTERVAL => Err(Error::invalid(format!(
                "interval {} is shorter than the minimum of 1s",
                humantime::format_duration(*every)
            ))),
            _ => Ok(()),
        }
    }

    /// The first scheduled time strictly after `after`, or `None` for manual pipelines.
    pub fn next_after(&self, after: Timestamp) -> Option<Timestamp> {
        match self {
            Schedule::Manual => None,
            Schedule::Interval(every) => Some(after.plus(*every)),
            Schedule::Cron(cron) => cron.next_after(after),
        }
    }
}

/// A parsed cron expression (UTC).
///
/// Accepts the classic five fields (`min hour day month weekday`) and the six- or seven-field
/// form with seconds first (and a year last).
#[derive(Clone, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CronSchedule {
    text: String,
    // Shared: the parsed form is large and immutable, and specs are cloned often.
    schedule: Arc<cron::Schedule>,
}

impl CronSchedule {
    /// Parses `text`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming what is wrong with the expression.
    pub fn parse(text: &str) -> Result<Self> {
        let trimmed = text.trim();
        let fields = trimmed.split_whitespace().count();
        let full = match fields {
            5 => format!("0 {trimmed}"),
            6 | 7 => trimmed.to_owned(),
            // The parser would read the first word as seconds and complain about that.
            n => {
                return Err(Error::invalid(format!(
                    "cron expression {text:?} is invalid: it has {n} field(s). {CRON_FORMAT}"
                )))
            }
        };
        let schedule = cron::Schedule::from_str(&full).map_err(|e| {
            Error::invalid(format!(
                "cron expression {text:?} is invalid: {} {CRON_FORMAT}",
                cron_reason(&e.to_string())
            ))
        })?;
        Ok(Self {
            text: trimmed.to_owned(),
            schedule: Arc::new(schedule),
        })
    }

    /// The expression as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The first firing strictly after `after`.
    pub fn next_after(&self, after: Timestamp) -> Option<Timestamp> {
        self.schedule
            .after(&after.to_datetime())
            .next()
            .map(Timestamp::from_datetime)
    }
}

/// What a cron expression looks like, with examples: the last sentence of every error about one
/// (a program showing errors may present it as a hint).
pub const CRON_FORMAT: &str = "Write five fields, `minute hour day-of-month month day-of-week` (UTC), \
     or six with seconds first: \"*/15 * * * *\" is every 15 minutes, \"0 2 * * 1-5\" 02:00 on weekdays";

/// The reason in the cron parser's error. Its text is the expression (with the seconds field
/// this type adds), a line with a caret, then the reason; only the reason means something to
/// the person who wrote the expression.
fn cron_reason(error: &str) -> String {
    let reason = error
        .lines()
        .map(str::trim)
        .rfind(|line| !line.is_empty() && !line.chars().all(|c| c == '^'))
        .unwrap_or(error);
    if reason.is_empty() {
        "it is not a cron expression.".to_owned()
    } else if reason.ends_with('.') || reason.ends_with(".)") {
        reason.to_owned()
    } else {
        format!("{reason}.")
    }
}

impl PartialEq for CronSchedule {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl fmt::Debug for CronSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CronSchedule({:?})", self.text)
    }
}

impl TryFrom<String> for CronSchedule {
    type Error = Error;
    fn try_from(value: String) -> Result<Self> {
        Self::parse(&value)
    }
}

impl From<CronSchedule> for String {
    fn from(c: CronSchedule) -> String {
        c.text
    }
}

/// How failed runs are retried: exponential backoff with jitter, up to `max_attempts`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RetryPolicyFields", into = "RetryPolicyFields")]
pub struct RetryPolicy {
    max_attempts: u32,
    initial_backoff: Duration,
    max_backoff: Duration,
    multiplier: f64,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RetryPolicyFields {
    #[serde(default = "default_max_attempts")]
    max_attempts: u32,
    #[serde(default = "default_initial_backoff", with = "human_duration")]
    initial_backoff: Duration,
    #[serde(default = "default_max_backoff", with = "human_duration")]
    max_backoff: Duration,
    #[serde(default = "default_multiplier")]
    multiplier: f64,
}

fn default_max_attempts() -> u32 {
    3
}
fn default_initial_backoff() -> Duration {
    Duration::from_secs(30)
}
fn default_max_backoff() -> Duration {
    Duration::from_secs(30 * 60)
}
fn default_multiplier() -> f64 {
    2.0
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: default_max_attempts(),
            initial_backoff: default_initial_backoff(),
            max_backoff: default_max_backoff(),
            multiplier: default_multiplier(),
        }
    }
}

impl RetryPolicy {
    /// Largest number of attempts a policy may allow.
    pub const MAX_ATTEMPTS: u32 = 100;

    /// Validates and builds a policy.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] unless `1 ≤ max_attempts ≤ 100`, `initial_backoff ≤ max_backoff`
    /// and `1 ≤ multiplier ≤ 10`.
    pub fn new(
        max_attempts: u32,
        initial_backoff: Duration,
        max_backoff: Duration,
        multiplier: f64,
    ) -> Result<Self> {
        if !(1..=Self::MAX_ATTEMPTS).contains(&max_attempts) {
            return Err(Error::invalid(format!(
                "retry.max_attempts is {max_attempts}; it must be between 1 and {}",
                Self::MAX_ATTEMPTS
            )));
        }
        if initial_backoff > max_backoff {
            return Err(Error::invalid(
                "retry.initial_backoff must not exceed retry.max_backoff",
            ));
        }
        if !(1.0..=10.0).contains(&multiplier) {
            return Err(Error::invalid(format!(
                "retry.multiplier is {multiplier}; it must be between 1 and 10"
            )));
        }
        Ok(Self {
            max_attempts,
            initial_backoff,
            max_backoff,
            multiplier,
        })
    }

    /// How many attempts a trigger gets in all (the first run included).
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// The delay before attempt `attempt + 1`, after attempt `attempt` (≥ 1) failed.
    ///
    /// `jitter` in `[0, 1)` spreads retries over `[delay / 2, delay)`; pass a value derived from
    /// stable inputs (pipeline and run ids) to keep planning deterministic.
    pub fn backoff(&self, attempt: u32, jitter: f64) -> Duration {
        let exponent = i32::try_from(attempt.saturating_sub(1)).unwrap_or(i32::MAX);
        let initial = self.initial_backoff.as_secs_f64();
        let max = self.max_backoff.as_secs_f64();
        let delay = (initial * self.multiplier.powi(exponent)).min(max);
        let jitter = if jitter.is_finite() {
            jitter.clamp(0.0, 1.0)
        } else {
            0.0
        };
        Duration::from_secs_f64(delay * (0.5 + 0.5 * jitter))
    }
}

impl TryFrom<RetryPolicyFields> for RetryPolicy {
    type Error = Error;
    fn try_from(f: RetryPolicyFields) -> Result<Self> {
        Self::new(
            f.max_attempts,
            f.initial_backoff,
            f.max_backoff,
            f.multiplier,
        )
    }
}

impl From<RetryPolicy> for RetryPolicyFields {
    fn from(p: RetryPolicy) -> Self {
        Self {
            max_attempts: p.max_attempts,
            initial_backoff: p.initial_backoff,
            max_backoff: p.max_backoff,
            multiplier: p.multiplier,
        }
    }
}

/// Why and by whom a pipeline is paused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pause {
    /// Who paused it ([`Actor::Policy`] when a schema decision was held).
    pub by: Actor,
    /// Why.
    pub reason: Reason,
    /// Since when.
    pub since: Timestamp,
}

/// A pipeline as stored: its spec plus catalog-managed state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pipeline {
    /// The declared spec.
    pub spec: PipelineSpec,
    /// 1 on creation, +1 on every change of the spec.
    pub generation: Generation,
    /// Set while the pipeline is paused (by an operator or by a held schema decision).
    pub paused: Option<Pause>,
    /// When it was created.
    pub created_at: Timestamp,
    /// When its spec or pause state last changed.
    pub updated_at: Timestamp,
    /// An operator's request for a manual or backfill run, until a run of that kind begins.
    #[serde(default)]
    pub requested: Option<RunRequest>,
}

/// An operator's request that a pipeline run now, outside its schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRequest {
    /// `Manual` or `Backfill`.
    pub trigger: Trigger,
    /// Who asked.
    pub by: Actor,
    /// When.
    pub at: Timestamp,
}

impl RunRequest {
    /// Whether a run begun with `trigger` does what was asked, and so consumes the request: a
    /// backfill run answers any request (it runs now, from the start); a manual run only a manual
    /// one, so that a pending backfill is not lost to it; a scheduled run none.
    pub fn satisfied_by(&self, trigger: Trigger) -> bool {
        match trigger {
            Trigger::Backfill => true,
            Trigger::Manual => self.trigger == Trigger::Manual,
            Trigger::Schedule | Trigger::Retry => false,
        }
    }
}

/// The rule for requesting a run: only `Manual` or `Backfill`, only on an enabled pipeline; a
/// backfill request replaces a manual one. Returns the new request, or `None` if nothing changes.
///
/// # Errors
/// `InvalidArgument` for another trigger; `FailedPrecondition` for a disabled pipeline.
pub fn plan_request(
    pipeline: &Pipeline,
    trigger: Trigger,
    by: &Actor,
    now: Timestamp,
) -> Result<Option<RunRequest>> {
    if !trigger.is_requested() {
        return Err(Error::invalid(format!(
            "an operator can request a manual or backfill run, not {trigger:?}"
        )));
    }
    if !pipeline.spec.enabled {
        return Err(Error::precondition(format!(
            "pipeline {} is disabled; enable it in its spec first",
            pipeline.spec.id
        )));
    }
    match &pipeline.requested {
        Some(current) if current.trigger == trigger || current.trigger == Trigger::Backfill => {
            Ok(None)
        }
        _ => Ok(Some(RunRequest {
            trigger,
            by: by.clone(),
            at: now,
        })),
    }
}

impl Pipeline {
    /// The pipeline's id.
    pub fn id(&self) -> &PipelineId {
        &self.spec.id
    }
}

/// How [`put_pipeline`](crate::Catalog::put_pipeline) treats an existing pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PutMode {
    /// Create; fail with `AlreadyExists` if the id is taken.
    Create,
    /// Replace the spec if the stored generation is `expected`; fail with `Conflict` otherwise.
    Update {
        /// The generation the caller read.
        expected: Generation,
    },
}

/// What a put does, decided by [`plan_put`].
#[derive(Debug, Clone, PartialEq)]
pub enum PutPlan {
    /// Insert this new pipeline.
    Create(Pipeline),
    /// Replace the stored pipeline (whose generation was the expected one) with this one.
    Update(Pipeline),
    /// The spec is identical: nothing to write, generation unchanged.
    Unchanged(Pipeline),
}

impl PutPlan {
    /// The pipeline as it is after the put.
    pub fn pipeline(&self) -> &Pipeline {
        match self {
            PutPlan::Create(p) | PutPlan::Update(p) | PutPlan::Unchanged(p) => p,
        }
    }
}

/// The rule for a put: creation, compare-and-set on the generation, and no-op detection.
///
/// # Errors
/// `AlreadyExists` / `NotFound` / `Conflict` per [`PutMode`]; `InvalidArgument` for a bad schedule.
pub fn plan_put(
    existing: Option<&Pipeline>,
    spec: PipelineSpec,
    mode: PutMode,
    now: Timestamp,
) -> Result<PutPlan> {
    spec.schedule.validate()?;
    let entity = || Entity::Pipeline {
        pipeline: spec.id.clone(),
    };
    match (mode, existing) {
        (PutMode::Create, Some(_)) => Err(Error::AlreadyExists(entity())),
        (PutMode::Create, None) => Ok(PutPlan::Create(Pipeline {
            spec,
            generation: Generation::FIRST,
            paused: None,
            created_at: now,
            updated_at: now,
            requested: None,
        })),
        (PutMode::Update { .. }, None) => Err(Error::NotFound(entity())),
        (PutMode::Update { expected }, Some(current)) if current.generation != expected => {
            Err(Error::conflict(
                entity(),
                format!("generation {expected}"),
                format!("generation {}", current.generation),
            ))
        }
        (PutMode::Update { .. }, Some(current)) if current.spec == spec => {
            Ok(PutPlan::Unchanged(current.clone()))
        }
        (PutMode::Update { .. }, Some(current)) => Ok(PutPlan::Update(Pipeline {
            spec,
            generation: current.generation.next(),
            paused: current.paused.clone(),
            created_at: current.created_at,
            updated_at: now,
            requested: current.requested.clone(),
        })),
    }
}

/// The rule for a delete: compare-and-set on the generation, and never under a live lease.
///
/// # Errors
/// `Conflict` on a generation mismatch; `Leased` while someone holds a live lease.
pub fn check_delete(
    current: &Pipeline,
    expected: Generation,
    lease: Option<&LeaseState>,
    now: Timestamp,
) -> Result<()> {
    if current.generation != expected {
        return Err(Error::conflict(
            Entity::Pipeline {
                pipeline: current.spec.id.clone(),
            },
            format!("generation {expected}"),
            format!("generation {}", current.generation),
        ));
    }
    match lease {
        Some(lease) => lease.ensure_free(&current.spec.id, now),
        None => Ok(()),
    }
}

/// A pause or resume request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PauseChange {
    /// Pause with a reason.
    Pause(Reason),
    /// Resume.
    Resume,
}

/// The rule for pausing and resuming; returns the new pause state, or `None` if nothing changes.
///
/// # Errors
/// `FailedPrecondition` when resuming while schema decisions are still held: accept or reject
/// them first.
pub fn plan_pause(
    current: &Pipeline,
    change: &PauseChange,
    by: &Actor,
    pending_decisions: usize,
    now: Timestamp,
) -> Result<Option<Option<Pause>>> {
    match (change, &current.paused) {
        (PauseChange::Pause(_), Some(_)) => Ok(None),
        (PauseChange::Pause(reason), None) => Ok(Some(Some(Pause {
            by: by.clone(),
            reason: reason.clone(),
            since: now,
        }))),
        (PauseChange::Resume, None) => Ok(None),
        (PauseChange::Resume, Some(_)) if pending_decisions > 0 => Err(Error::precondition(format!(
            "pipeline {} has {pending_decisions} held schema decision(s); accept or reject them to resume it",
            current.spec.id
        ))),
        (PauseChange::Resume, Some(_)) => Ok(Some(None)),
    }
}

/// The audit event for a pipeline's new pause state, as [`plan_pause`] planned it.
pub fn pause_event(paused: Option<&Pause>) -> EventKind {
    match paused {
        Some(pause) => EventKind::PipelinePaused {
            reason: pause.reason.clone(),
        },
        None => EventKind::PipelineResumed,
    }
}

/// The pause a held schema decision puts on its pipeline; `None` if the pipeline is already paused
/// (the existing pause, and its reason, stand).
pub fn hold_pause(
    pipeline: &Pipeline,
    decision: &crate::Decision,
    now: Timestamp,
) -> Option<Pause> {
    if pipeline.paused.is_some() {
        return None;
    }
    Some(Pause {
        by: Actor::Policy,
        reason: Reason::trusted(format!(
            "schema change on stream {} held for review (decision {})",
            decision.stream, decision.id
        )),
        since: now,
    })
}

/// Whether resolving a decision lifts the pipeline's pause: only a pause the policy made, and only
/// once no decision of the pipeline is held. An operator's pause stays until an operator resumes.
pub fn lifts_pause(pipeline: &Pipeline, still_held: usize) -> bool {
    still_held == 0
        && pipeline
            .paused
            .as_ref()
            .is_some_and(|p| p.by == Actor::Policy)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> PipelineSpec {
        PipelineSpec::new(
            PipelineId::new("orders").unwrap(),
            ConnectorRef::new("jsonl").unwrap(),
            CursorKind::Monotonic,
        )
    }

    #[test]
    fn a_run_begins_only_on_a_pipeline_neither_paused_nor_running() {
        let now = Timestamp::from_millis(0);
        let PutPlan::Create(mut pipeline) = plan_put(None, spec(), PutMode::Create, now).unwrap()
        else {
            panic!("a new pipeline is created");
        };
        let running = crate::ids::RunId::from_parts(now, [7; 10]);
        assert!(crate::run::check_begin(&pipeline, None).is_ok());
        let busy = crate::run::check_begin(&pipeline, Some(running)).unwrap_err();
        assert!(
            busy.to_string().contains("already has a running run"),
            "{busy}"
        );

        let reason = Reason::new("maintenance").unwrap();
        let paused = plan_pause(
            &pipeline,
            &PauseChange::Pause(reason.clone()),
            &Actor::System,
            0,
            now,
        )
        .unwrap()
        .expect("pausing a running pipeline changes it");
        assert_eq!(
            pause_event(paused.as_ref()),
            EventKind::PipelinePaused {
                reason: reason.clone()
            }
        );
        assert_eq!(pause_event(None), EventKind::PipelineResumed);
        pipeline.paused = paused;
        let error = crate::run::check_begin(&pipeline, None).unwrap_err();
        assert!(matches!(error, Error::FailedPrecondition(_)), "{error}");
        assert!(
            error.to_string().contains("is paused (maintenance)"),
            "{error}"
        );
    }

    #[test]
    fn cron_accepts_five_and_six_fields_and_rejects_garbage() {
        let five = CronSchedule::parse("*/5 * * * *").unwrap();
        let t = Timestamp::from_millis(0);
        assert_eq!(
            five.next_after(t),
            Some(Timestamp::from_millis(5 * 60 * 1000))
        );
        let six = CronSchedule::parse("30 0 * * * *").unwrap();
        assert_eq!(six.next_after(t), Some(Timestamp::from_millis(30 * 1000)));
        let err = CronSchedule::parse("61 * * * *").unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
        assert!(CronSchedule::parse("every tuesday").is_err());
    }

    #[test]
    fn a_bad_cron_says_why_and_shows_a_valid_one() {
        for (text, reason) in [
            (
                "61 * * * *",
                "Minutes must be less than 59. ('61' specified.)",
            ),
            ("* * * * bogus", "'bogus' is not a valid day of the week."),
            ("every tuesday", "it has 2 field(s)."),
        ] {
            let message = CronSchedule::parse(text).unwrap_err().to_string();
            assert!(
                message.starts_with(&format!(
                    "invalid argument: cron expression {text:?} is invalid: {reason} Write five fields"
                )),
                "{message}"
            );
            assert!(
                message.contains("\"*/15 * * * *\" is every 15 minutes"),
                "{message}"
            );
            // Not the parser's rendering of the expression it was given (with a seconds field).
            assert!(
                !message.contains('\n') && !message.contains('^'),
                "{message}"
            );
        }
    }

    #[test]
    fn schedule_toml_shapes_deserialise() {
        let s: Schedule = serde_json::from_str("\"manual\"").unwrap();
        assert_eq!(s, Schedule::Manual);
        let s: Schedule = serde_json::from_str(r#"{"every":"15m"}"#).unwrap();
        assert_eq!(s, Schedule::Interval(Duration::from_secs(900)));
        let s: Schedule = serde_json::from_str(r#"{"cron":"0 * * * *"}"#).unwrap();
        assert!(matches!(s, Schedule::Cron(_)));
        assert!(serde_json::from_str::<Schedule>(r#"{"every":"soon"}"#).is_err());
        assert!(Schedule::Interval(Duration::from_millis(10))
            .validate()
            .is_err());
    }

    #[test]
    fn retry_policy_validates_and_backs_off_exponentially() {
        let p = RetryPolicy::new(5, Duration::from_secs(10), Duration::from_secs(60), 2.0).unwrap();
        assert_eq!(p.backoff(1, 1.0), Duration::from_secs(10));
        assert_eq!(p.backoff(2, 1.0), Duration::from_secs(20));
        assert_eq!(p.backoff(3, 0.0), Duration::from_secs(20));
        assert_eq!(p.backoff(10, 1.0), Duration::from_secs(60));
        assert!(RetryPolicy::new(0, Duration::ZERO, Duration::ZERO, 2.0).is_err());
        assert!(RetryPolicy::new(3, Duration::from_secs(9), Duration::from_secs(1), 2.0).is_err());
        assert!(RetryPolicy::new(3, Duration::ZERO, Duration::ZERO, f64::NAN).is_err());
        let bad = serde_json::from_str::<RetryPolicy>(r#"{"max_attempts":0}"#).unwrap_err();
        assert!(bad.to_string().contains("max_attempts"), "{bad}");
    }

    #[test]
    fn config_must_be_a_small_object() {
        assert!(ConnectorConfig::new(serde_json::json!({"path": "data"})).is_ok());
        assert!(ConnectorConfig::new(serde_json::json!([1])).is_err());
        let huge = "x".repeat(MAX_CONFIG_BYTES);
        assert!(ConnectorConfig::new(serde_json::json!({ "x": huge })).is_err());
    }

    #[test]
    fn put_is_compare_and_set_on_generation() {
        let now = Timestamp::from_millis(1);
        let created = plan_put(None, spec(), PutMode::Create, now).unwrap();
        let p = created.pipeline().clone();
        assert_eq!(p.generation, Generation(1));
        assert!(matches!(
            plan_put(Some(&p), spec(), PutMode::Create, now),
            Err(Error::AlreadyExists(_))
        ));
        let same = plan_put(
            Some(&p),
            spec(),
            PutMode::Update {
                expected: Generation(1),
            },
            now,
        );
        assert!(matches!(same, Ok(PutPlan::Unchanged(_))));
        let changed = spec().with_enabled(false);
        let stale = plan_put(
            Some(&p),
            changed.clone(),
            PutMode::Update {
                expected: Generation(7),
            },
            now,
        );
        assert!(matches!(stale, Err(Error::Conflict { .. })));
        let updated = plan_put(
            Some(&p),
            changed,
            PutMode::Update {
                expected: Generation(1),
            },
            now,
        )
        .unwrap();
        assert_eq!(updated.pipeline().generation, Generation(2));
    }

    #[test]
    fn spec_rejects_unknown_fields() {
        let err = serde_json::from_value::<PipelineSpec>(serde_json::json!({
            "id": "a", "connector": "jsonl", "cursor_kind": "monotonic", "shedule": "manual"
        }))
        .unwrap_err();
        assert!(err.to_string().contains("shedule"), "{err}");
    }
}
