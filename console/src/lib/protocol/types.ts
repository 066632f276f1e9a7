// The catalog's wire protocol as TypeScript types: `hakiri_protocol::{Request, Response, Reply}`,
// the `hakiri_core` types they carry, the event stream's `Event`, the plan and `whoami`.
//
// Written by hand to read well, and kept honest by `examples.ts`: values the Rust protocol
// produced, typed with these (`npm run check`). A Rust change regenerates the
// examples (protocol/tests/console_examples.rs) and fails the check until these types follow
// (ADR 0027). Integers are JavaScript numbers: the catalog keeps them below 2^53.

/** A time on the catalog's clock: RFC 3339 in UTC with milliseconds, e.g. `2027-01-15T08:00:00.000Z`. */
export type Timestamp = string;
/** A duration as humantime writes it: `30s`, `1h 30m`. */
export type HumanDuration = string;
export type PipelineId = string;
export type StreamName = string;
export type HolderId = string;
export type OperatorName = string;
export type ConnectorRef = string;
/** A run id (a UUID). */
export type RunId = string;
export type DecisionId = number;
export type Epoch = number;
export type Generation = number;
export type Limit = number;
/** A non-blank reason of at most 4096 bytes. */
export type Reason = string;
/** A cursor value: any JSON (`null` is the initial position). */
export type CursorValue = Json;
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

// ---- audit ------------------------------------------------------------------------------------

export type Actor =
	| { kind: 'holder'; name: HolderId }
	| { kind: 'operator'; name: OperatorName }
	| { kind: 'policy' }
	| { kind: 'system' };

export type EventKind =
	| { type: 'pipeline_created'; generation: Generation }
	| { type: 'pipeline_updated'; generation: Generation }
	| { type: 'pipeline_deleted' }
	| { type: 'pipeline_paused'; reason: Reason }
	| { type: 'pipeline_resumed' }
	| { type: 'run_requested'; trigger: Trigger }
	| { type: 'lease_acquired'; holder: HolderId; epoch: Epoch; forced: boolean }
	| { type: 'lease_released'; epoch: Epoch }
	| { type: 'run_begun'; run: RunId; epoch: Epoch }
	| { type: 'run_finished'; run: RunId; status: RunStatus }
	| { type: 'cursor_advanced'; stream: StreamName; version: number }
	| { type: 'cursor_reset'; stream: StreamName; version: number; reason: Reason }
	| { type: 'schema_version_added'; stream: StreamName; version: number }
	| { type: 'decision_recorded'; decision: DecisionId; stream: StreamName; verdict: Verdict }
	| { type: 'decision_resolved'; decision: DecisionId; verdict: Verdict };

/** One entry of the event log; `seq` is gap-free and the stream's `id:`. */
export interface Event {
	seq: number;
	at: Timestamp;
	actor: Actor;
	pipeline: PipelineId;
	kind: EventKind;
}

// ---- pipelines --------------------------------------------------------------------------------

export type CursorKind = 'monotonic' | 'opaque';
export type Schedule = 'manual' | { every: HumanDuration } | { cron: string };
export type PolicyAction = 'accept' | 'reject' | 'hold';

export interface SchemaPolicy {
	additive?: PolicyAction;
	widening?: PolicyAction;
	breaking?: PolicyAction;
}

export interface RetryPolicy {
	max_attempts?: number;
	initial_backoff?: HumanDuration;
	max_backoff?: HumanDuration;
	multiplier?: number;
}

export interface PipelineSpec {
	id: PipelineId;
	connector: ConnectorRef;
	config?: { [key: string]: Json };
	cursor_kind: CursorKind;
	schedule?: Schedule;
	enabled?: boolean;
	retry?: RetryPolicy;
	schema_policy?: SchemaPolicy;
}

export interface Pause {
	by: Actor;
	reason: Reason;
	since: Timestamp;
}

export interface RunRequest {
	trigger: Trigger;
	by: Actor;
	at: Timestamp;
}

export interface Pipeline {
	spec: PipelineSpec;
	generation: Generation;
	paused: Pause | null;
	created_at: Timestamp;
	updated_at: Timestamp;
	requested?: RunRequest | null;
}

export type PutMode = 'create' | { update: { expected: Generation } };
export type PauseChange = { pause: Reason } | 'resume';

// ---- leases and runs --------------------------------------------------------------------------

export interface Lease {
	pipeline: PipelineId;
	holder: HolderId;
	epoch: Epoch;
	expires_at: Timestamp;
}

/** A pipeline's lease as the status shows it: `holder` is null once released. */
export interface LeaseState {
	epoch: Epoch;
	holder: HolderId | null;
	expires_at: Timestamp;
}

export type Trigger = 'schedule' | 'retry' | 'manual' | 'backfill';
export type RunStatus = 'running' | 'succeeded' | 'failed' | 'cancelled' | 'abandoned';

/** Where a source said a stream got (an Airbyte source's `STREAM_STATUS`). */
export type StreamStatus = 'started' | 'running' | 'complete' | 'incomplete';

export interface StreamStats {
	records: number;
	bytes: number;
	/** Left out when the source reported nothing of the kind. */
	status?: StreamStatus;
	estimated_records?: number;
	estimated_bytes?: number;
}

export interface RunError {
	message: string;
	retryable: boolean;
}

export interface Run {
	id: RunId;
	pipeline: PipelineId;
	epoch: Epoch;
	holder: HolderId;
	trigger: Trigger;
	attempt: number;
	status: RunStatus;
	started_at: Timestamp;
	finished_at: Timestamp | null;
	stats: { [stream: StreamName]: StreamStats };
	error: RunError | null;
	cursors_at_start: { [stream: StreamName]: CursorValue };
	cursors_at_end: { [stream: StreamName]: CursorValue };
}

export interface BeginRun {
	trigger: Trigger;
	attempt: number;
}

export type Outcome =
	| { status: 'succeeded' }
	| { status: 'failed'; error: RunError }
	| { status: 'cancelled'; reason: Reason };

export interface FinishRun {
	outcome: Outcome;
	stats?: { [stream: StreamName]: StreamStats };
	cursors?: { [stream: StreamName]: CursorValue };
	schemas?: { [stream: StreamName]: Schema };
}

export interface RunQuery {
	pipeline: PipelineId | null;
	status: RunStatus | null;
	before: RunId | null;
	limit: Limit;
}

// ---- cursors ----------------------------------------------------------------------------------

export interface Cursor {
	pipeline: PipelineId;
	stream: StreamName;
	value: CursorValue;
	version: number;
	run: RunId | null;
	epoch: Epoch | null;
	updated_by: Actor;
	updated_at: Timestamp;
}

export interface CursorAdvance {
	value: CursorValue;
	expected_version: number | null;
}

export type CursorChange =
	| { change: 'checkpoint' }
	| { change: 'finish' }
	| { change: 'reset'; reason: Reason }
	| { change: 'rollback'; to_version: number; reason: Reason };

export interface CursorHistoryEntry {
	version: number;
	value: CursorValue;
	change: CursorChange;
	run: RunId | null;
	epoch: Epoch | null;
	by: Actor;
	at: Timestamp;
}

export type ResetTarget = { value: CursorValue } | { version: number } | 'initial';

export interface CursorReset {
	target: ResetTarget;
	expected_version: number | null;
	by: Actor;
	reason: Reason;
	allow?: { type_change?: boolean; create?: boolean };
}

// ---- schemas and decisions --------------------------------------------------------------------

export type ColumnType =
	| 'boolean'
	| 'integer'
	| 'decimal'
	| 'number'
	| 'string'
	| 'date'
	| 'time'
	| 'timestamp'
	| 'binary'
	| 'json';

export interface Column {
	name: string;
	type: ColumnType;
	nullable: boolean;
}

export interface Schema {
	columns: Column[];
	key: string[];
}

export interface SchemaDiff {
	added: Column[];
	removed: Column[];
	retyped: { column: string; from: ColumnType; to: ColumnType }[];
	nullability: { column: string; from: boolean; to: boolean }[];
	key: { from: string[]; to: string[] } | null;
}

export type ChangeClass = 'additive' | 'widening' | 'breaking';
export type Verdict = 'accepted' | 'rejected' | 'held';

export interface SchemaVersion {
	pipeline: PipelineId;
	stream: StreamName;
	version: number;
	schema: Schema;
	fingerprint: string;
	decision: DecisionId | null;
	run: RunId | null;
	created_at: Timestamp;
}

export interface Decision {
	id: DecisionId;
	pipeline: PipelineId;
	stream: StreamName;
	run: RunId | null;
	from_version: number;
	to_version: number | null;
	proposed: Schema;
	fingerprint: string;
	diff: SchemaDiff;
	class: ChangeClass;
	verdict: Verdict;
	decided_by: Actor;
	reason: Reason;
	created_at: Timestamp;
	decided_at: Timestamp | null;
}

export interface Observation {
	current: SchemaVersion;
	verdict: Verdict;
	decision: Decision | null;
}

export interface DecisionQuery {
	pipeline?: PipelineId | null;
	held_only?: boolean;
	after?: DecisionId | null;
	limit?: Limit;
}

export interface Decide {
	resolution: 'accept' | 'reject';
	by: Actor;
	reason: Reason;
}

// ---- status, pages, plan ----------------------------------------------------------------------

export interface Page<T, K> {
	items: T[];
	next: K | null;
}

export interface PipelineStatus {
	pipeline: Pipeline;
	lease: LeaseState | null;
	last_run: Run | null;
	held_decisions: DecisionId[];
}

export interface StatusPage {
	items: PipelineStatus[];
	next: PipelineId | null;
	/** The catalog's clock when the page was read: relative times are computed against it. */
	as_of: Timestamp;
}

export type WaitReason = { kind: 'schedule' } | { kind: 'backoff'; attempt: number };

export type SkipReason =
	| { kind: 'disabled' }
	| { kind: 'paused' }
	| { kind: 'held_decision'; decisions: DecisionId[] }
	| { kind: 'running'; run: RunId }
	| { kind: 'attempts_exhausted'; attempts: number }
	| { kind: 'manual' };

export type Action =
	| { action: 'dispatch'; trigger: Trigger; attempt: number }
	| { action: 'wait'; until: Timestamp; reason: WaitReason }
	| { action: 'skip'; reason: SkipReason }
	| { action: 'reap'; run: RunId };

/** `GET /v1/projects/{p}/plan`: what the reconciler would do now, at the catalog's clock. */
export interface Plan {
	as_of: Timestamp;
	items: { pipeline: PipelineId; connector: ConnectorRef; action: Action }[];
}

// ---- grants -----------------------------------------------------------------------------------

export type Role = 'read' | 'write' | 'admin';

/** Where a catalog server keeps the catalog. */
export type Backend = 'sqlite' | 'postgres' | 'memory' | 'durable_object' | 'remote';

/** `GET /v1/whoami`: every grant of the presented token, and the server that answered. */
export interface WhoAmI {
	grants: { name: OperatorName | null; role: Role; projects: '*' | string[] }[];
	/** `read_only`: every write is refused, whatever the grants say. */
	server: { backend: Backend; read_only: boolean };
}

// ---- requests and replies ---------------------------------------------------------------------

/** A project's counters: the last lease epoch and decision id handed out. */
export interface Counters {
	epoch: number;
	decision: number;
}

/** An import that has not finished: the archive's digest and the records applied. */
export interface ImportMarker {
	archive: string;
	applied: number;
}

/** What an export or an import of a project starts from. */
export interface ArchiveHead {
	counters: Counters;
	last_event: number;
	empty: boolean;
	importing: ImportMarker | null;
}

/** One line of an archive (`hakiri export`) between its header and its end. */
export type ArchiveRecord =
	| { type: 'pipeline'; pipeline: Pipeline; lease: LeaseState | null }
	| { type: 'run'; run: Run }
	| { type: 'cursor_version'; pipeline: PipelineId; stream: StreamName; entry: CursorHistoryEntry }
	| { type: 'schema_version'; version: SchemaVersion }
	| { type: 'decision'; decision: Decision }
	| { type: 'event'; event: Event };

/** A batch of an archive's records (`hakiri import`; admins only). */
export interface ImportBatch {
	archive: string;
	counters: Counters;
	position: number;
	records: ArchiveRecord[];
	last: boolean;
}

/** What an import has done after a batch. */
export interface ImportProgress {
	applied: number;
	done: boolean;
}

/** One catalog operation (`POST /v1/projects/{p}/rpc`), tagged by `op`. */
export type Request =
	| { op: 'put_pipeline'; spec: PipelineSpec; mode: PutMode; by: Actor }
	| { op: 'get_pipeline'; pipeline: PipelineId }
	| { op: 'list_pipelines'; after: PipelineId | null; limit: Limit }
	| { op: 'set_paused'; pipeline: PipelineId; change: PauseChange; by: Actor }
	| { op: 'delete_pipeline'; pipeline: PipelineId; expected: Generation; by: Actor }
	| { op: 'request_run'; pipeline: PipelineId; trigger: Trigger; by: Actor }
	| { op: 'acquire'; pipeline: PipelineId; holder: HolderId; ttl_ms: number }
	| {
			op: 'force_acquire';
			pipeline: PipelineId;
			holder: HolderId;
			ttl_ms: number;
			by: Actor;
			reason: Reason;
	  }
	| { op: 'renew'; lease: Lease; ttl_ms: number }
	| { op: 'release'; lease: Lease }
	| { op: 'begin_run'; lease: Lease; begin: BeginRun }
	| { op: 'advance'; lease: Lease; run: RunId; stream: StreamName; advance: CursorAdvance }
	| { op: 'finish_run'; lease: Lease; run: RunId; finish: FinishRun }
	| { op: 'get_run'; run: RunId }
	| { op: 'list_runs'; query: RunQuery }
	| { op: 'get_cursor'; pipeline: PipelineId; stream: StreamName }
	| { op: 'list_cursors'; pipeline: PipelineId }
	| {
			op: 'cursor_history';
			pipeline: PipelineId;
			stream: StreamName;
			before: number | null;
			limit: Limit;
	  }
	| { op: 'reset_cursor'; lease: Lease; stream: StreamName; reset: CursorReset }
	| { op: 'observe_schema'; lease: Lease; run: RunId; stream: StreamName; schema: Schema }
	| { op: 'get_schema'; pipeline: PipelineId; stream: StreamName; version: number | null }
	| { op: 'list_schema_versions'; pipeline: PipelineId; stream: StreamName }
	| { op: 'list_decisions'; query: DecisionQuery }
	| { op: 'decide'; decision: DecisionId; decide: Decide }
	| { op: 'pipeline_statuses'; after: PipelineId | null; limit: Limit }
	| { op: 'events'; after: number; limit: Limit }
	| { op: 'pipeline_events'; pipeline: PipelineId; after: number; limit: Limit }
	| { op: 'pipeline_events_before'; pipeline: PipelineId; before: number; limit: Limit }
	| { op: 'list_streams'; pipeline: PipelineId }
	| { op: 'archive_head' }
	| { op: 'import'; batch: ImportBatch };

/** The result of a request, tagged by `type`. */
export type Response =
	| { type: 'unit' }
	| { type: 'pipeline'; value: Pipeline }
	| { type: 'pipelines'; value: Page<Pipeline, PipelineId> }
	| { type: 'lease'; value: Lease }
	| { type: 'run'; value: Run }
	| { type: 'runs'; value: Page<Run, RunId> }
	| { type: 'cursor'; value: Cursor }
	| { type: 'maybe_cursor'; value: Cursor | null }
	| { type: 'cursors'; value: Cursor[] }
	| { type: 'cursor_history'; value: Page<CursorHistoryEntry, number> }
	| { type: 'observation'; value: Observation }
	| { type: 'schema_version'; value: SchemaVersion }
	| { type: 'schema_versions'; value: SchemaVersion[] }
	| { type: 'decisions'; value: Page<Decision, DecisionId> }
	| { type: 'decision'; value: Decision }
	| { type: 'statuses'; value: StatusPage }
	| { type: 'events'; value: Event[] }
	| { type: 'streams'; value: StreamName[] }
	| { type: 'archive_head'; value: ArchiveHead }
	| { type: 'import_progress'; value: ImportProgress };

/** What an entity-carrying error names. */
export type Entity =
	| { entity: 'pipeline'; pipeline: PipelineId }
	| { entity: 'run'; run: RunId }
	| { entity: 'cursor'; pipeline: PipelineId; stream: StreamName }
	| { entity: 'cursor_version'; pipeline: PipelineId; stream: StreamName; version: number }
	| { entity: 'schema'; pipeline: PipelineId; stream: StreamName; version: number | null }
	| { entity: 'decision'; decision: DecisionId };

export type FenceReason =
	| { reason: 'superseded'; current: Epoch }
	| { reason: 'expired'; at: Timestamp }
	| { reason: 'released' }
	| { reason: 'no_lease' };

/** A catalog error, tagged by `code`. */
export type CatalogError =
	| { code: 'not_found'; detail: Entity }
	| { code: 'already_exists'; detail: Entity }
	| { code: 'conflict'; detail: { entity: Entity; expected: string; actual: string } }
	| { code: 'fenced'; detail: { pipeline: PipelineId; epoch: Epoch; reason: FenceReason } }
	| {
			code: 'leased';
			detail: { pipeline: PipelineId; holder: HolderId; epoch: Epoch; expires_at: Timestamp };
	  }
	| {
			code: 'cursor_regression';
			detail: { pipeline: PipelineId; stream: StreamName; current: Json; proposed: Json };
	  }
	| { code: 'invalid_argument'; detail: string }
	| { code: 'failed_precondition'; detail: string }
	| { code: 'unauthenticated'; detail: string }
	| { code: 'permission_denied'; detail: string }
	| { code: 'unavailable'; detail: string }
	| { code: 'not_migrated'; detail: string }
	| { code: 'backend'; detail: string };

/** The body of every protocol answer. */
export type Reply = { ok: Response } | { err: CatalogError };

/** The response type each request is answered with. */
export interface ResponseOf {
	put_pipeline: 'pipeline';
	get_pipeline: 'pipeline';
	list_pipelines: 'pipelines';
	set_paused: 'pipeline';
	delete_pipeline: 'unit';
	request_run: 'pipeline';
	acquire: 'lease';
	force_acquire: 'lease';
	renew: 'lease';
	release: 'unit';
	begin_run: 'run';
	advance: 'cursor';
	finish_run: 'run';
	get_run: 'run';
	list_runs: 'runs';
	get_cursor: 'maybe_cursor';
	list_cursors: 'cursors';
	cursor_history: 'cursor_history';
	reset_cursor: 'cursor';
	observe_schema: 'observation';
	get_schema: 'schema_version';
	list_schema_versions: 'schema_versions';
	list_decisions: 'decisions';
	decide: 'decision';
	pipeline_statuses: 'statuses';
	events: 'events';
	pipeline_events: 'events';
	pipeline_events_before: 'events';
	list_streams: 'streams';
	archive_head: 'archive_head';
	import: 'import_progress';
}
