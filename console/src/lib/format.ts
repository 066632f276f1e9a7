// How the console writes times, actors, events, states and plans. Relative times are computed
// against the catalog's clock (`as_of` of the answer they came with), never the browser's: a
// laptop whose clock is off must not show a lease as expired that the catalog holds live.

import type {
	Action,
	Actor,
	CursorValue,
	EventKind,
	PipelineStatus,
	Timestamp
} from './protocol/types';

/** Milliseconds since the epoch of a catalog timestamp. */
export function millis(at: Timestamp): number {
	return Date.parse(at);
}

/**
 * The catalog's clock now, from the `as_of` of an answer read at `readAt` (browser milliseconds)
 * and the browser's `now`: the catalog's time plus what elapsed here since.
 */
export function catalogNow(asOf: Timestamp, readAt: number, now: number): number {
	return millis(asOf) + Math.max(0, now - readAt);
}

/** A duration, the two largest units: `42s`, `3m 5s`, `2h 10m`, `3d 4h`. */
export function duration(ms: number): string {
	const s = Math.floor(Math.abs(ms) / 1000);
	if (s < 60) {
		return `${s}s`;
	}
	const units: [number, string][] = [
		[86_400, 'd'],
		[3_600, 'h'],
		[60, 'm'],
		[1, 's']
	];
	const first = units.findIndex(([size]) => s >= size);
	const [big, bigUnit] = units[first]!;
	const [small, smallUnit] = units[first + 1]!;
	const rest = Math.floor((s % big) / small);
	return rest === 0 ? `${Math.floor(s / big)}${bigUnit}` : `${Math.floor(s / big)}${bigUnit} ${rest}${smallUnit}`;
}

/** `at` relative to the catalog's `now`: `5m ago`, `in 30s`, `now` (under a second). */
export function relative(at: Timestamp, now: number): string {
	const delta = millis(at) - now;
	if (Math.abs(delta) < 1000) {
		return 'now';
	}
	return delta > 0 ? `in ${duration(delta)}` : `${duration(delta)} ago`;
}

/** The absolute time in UTC, to the second: `2027-01-15 08:00:42 UTC`. */
export function absolute(at: Timestamp): string {
	const date = new Date(millis(at));
	if (Number.isNaN(date.getTime())) {
		return at;
	}
	return `${date.toISOString().slice(0, 19).replace('T', ' ')} UTC`;
}

/** An actor as the CLI writes it: `operator:ana`, `holder:worker-1`, `policy`, `system`. */
export function actorText(actor: Actor): string {
	return 'name' in actor ? `${actor.kind}:${actor.name}` : actor.kind;
}

/** A cursor value as compact JSON (`null` for the initial position). */
export function cursorText(value: CursorValue): string {
	return JSON.stringify(value);
}

/** One line saying what an event records. */
export function eventText(kind: EventKind): string {
	switch (kind.type) {
		case 'pipeline_created':
			return `created (generation ${kind.generation})`;
		case 'pipeline_updated':
			return `updated to generation ${kind.generation}`;
		case 'pipeline_deleted':
			return 'deleted';
		case 'pipeline_paused':
			return `paused: ${kind.reason}`;
		case 'pipeline_resumed':
			return 'resumed';
		case 'run_requested':
			return `${kind.trigger} run requested`;
		case 'lease_acquired':
			return `lease ${kind.forced ? 'taken by force' : 'acquired'} by ${kind.holder} (epoch ${kind.epoch})`;
		case 'lease_released':
			return `lease released (epoch ${kind.epoch})`;
		case 'run_begun':
			return `run ${kind.run} begun (epoch ${kind.epoch})`;
		case 'run_finished':
			return `run ${kind.run} ${kind.status}`;
		case 'cursor_advanced':
			return `cursor ${kind.stream} advanced to version ${kind.version}`;
		case 'cursor_reset':
			return `cursor ${kind.stream} reset to version ${kind.version}: ${kind.reason}`;
		case 'schema_version_added':
			return `schema ${kind.stream} version ${kind.version} added`;
		case 'decision_recorded':
			return `schema decision ${kind.decision} on ${kind.stream}: ${kind.verdict}`;
		case 'decision_resolved':
			return `schema decision ${kind.decision} resolved: ${kind.verdict}`;
	}
}

/** The state chip of a pipeline, most urgent first. */
export type PipelineState =
	| { state: 'held'; decisions: number }
	| { state: 'paused'; reason: string }
	| { state: 'running'; holder: string }
	| { state: 'stale'; holder: string }
	| { state: 'failing'; attempt: number }
	| { state: 'disabled' }
	| { state: 'idle' };

/** What a pipeline is doing at the catalog's `now`. */
export function pipelineState(status: PipelineStatus, now: number): PipelineState {
	if (status.held_decisions.length > 0) {
		return { state: 'held', decisions: status.held_decisions.length };
	}
	if (status.pipeline.paused) {
		return { state: 'paused', reason: status.pipeline.paused.reason };
	}
	const lease = status.lease;
	if (lease?.holder) {
		return millis(lease.expires_at) > now
			? { state: 'running', holder: lease.holder }
			: { state: 'stale', holder: lease.holder };
	}
	if (status.last_run?.status === 'failed') {
		return { state: 'failing', attempt: status.last_run.attempt };
	}
	if (status.pipeline.spec.enabled === false) {
		return { state: 'disabled' };
	}
	return { state: 'idle' };
}

/** The chip's text. */
export function stateText(state: PipelineState): string {
	switch (state.state) {
		case 'held':
			return `held (${state.decisions})`;
		case 'paused':
			return 'paused';
		case 'running':
			return `running (${state.holder})`;
		case 'stale':
			return `lease stale (${state.holder})`;
		case 'failing':
			return `failing (attempt ${state.attempt})`;
		default:
			return state.state;
	}
}

/** What the reconciler would do next, relative to the catalog's `now`. */
export function actionText(action: Action, now: number): string {
	switch (action.action) {
		case 'dispatch':
			return `due now (${action.trigger}${action.attempt > 1 ? `, attempt ${action.attempt}` : ''})`;
		case 'wait':
			return action.reason.kind === 'backoff'
				? `retry ${relative(action.until, now)} (attempt ${action.reason.attempt})`
				: `next ${relative(action.until, now)}`;
		case 'reap':
			return `reaps run ${action.run}`;
		case 'skip':
			switch (action.reason.kind) {
				case 'held_decision':
					return 'waits for a schema decision';
				case 'running':
					return 'running';
				case 'attempts_exhausted':
					return `gave up after ${action.reason.attempts} attempts`;
				case 'manual':
					return 'runs when asked';
				default:
					return action.reason.kind;
			}
	}
}
