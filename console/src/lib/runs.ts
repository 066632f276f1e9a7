// The runs pages' logic: the filters and keyset position kept in the URL's query, the `list_runs`
// request they make, a run's duration, and its cursors at start and end side by side.

import { cursorText, millis } from './format';
import * as links from './links';
import type { Run, RunId, RunQuery, RunStatus, StreamStats } from './protocol/types';

export const RUN_STATUSES: RunStatus[] = ['running', 'succeeded', 'failed', 'cancelled', 'abandoned'];

/** Runs per page unless the URL says otherwise (`?limit=`), and the most a page may ask for. */
export const PAGE_SIZE = 50;
const MAX_PAGE = 1000;

/** What the runs page shows, as its URL says. */
export interface RunFilter {
	pipeline: string | null;
	status: RunStatus | null;
	/** Runs older than this one (the previous page's `next`); null for the newest. */
	before: RunId | null;
	limit: number;
}

/** The filter in `query`; unknown statuses and bad limits are ignored rather than refused. */
export function runFilter(query: URLSearchParams): RunFilter {
	const status = query.get('status');
	const limit = Number(query.get('limit'));
	return {
		pipeline: query.get('pipeline')?.trim() || null,
		status: RUN_STATUSES.includes(status as RunStatus) ? (status as RunStatus) : null,
		before: query.get('before') || null,
		limit: Number.isInteger(limit) && limit >= 1 && limit <= MAX_PAGE ? limit : PAGE_SIZE
	};
}

/** The query string of `filter` (without `?`), leaving defaults out. */
export function filterQuery(filter: RunFilter): string {
	const query = new URLSearchParams();
	if (filter.pipeline) query.set('pipeline', filter.pipeline);
	if (filter.status) query.set('status', filter.status);
	if (filter.limit !== PAGE_SIZE) query.set('limit', String(filter.limit));
	if (filter.before) query.set('before', filter.before);
	return query.toString();
}

/** The `list_runs` query of `filter`: newest first, older than `before`. */
export function runsQuery(filter: RunFilter): RunQuery {
	return {
		pipeline: filter.pipeline,
		status: filter.status,
		before: filter.before,
		limit: filter.limit
	};
}

/** How long the run took, or has been running at the catalog's `now`. */
export function runMillis(run: Run, now: number): number {
	const end = run.finished_at ? millis(run.finished_at) : now;
	return Math.max(0, end - millis(run.started_at));
}

/** One stream's cursor at the run's start and end (null: the run did not record one). */
export interface CursorPair {
	stream: string;
	start: string | null;
	end: string | null;
}

/** The cursors of every stream the run started or ended with, in stream order. */
export function cursorPairs(run: Run): CursorPair[] {
	const streams = [...new Set([...Object.keys(run.cursors_at_start), ...Object.keys(run.cursors_at_end)])];
	return streams.sort().map((stream) => ({
		stream,
		start: stream in run.cursors_at_start ? cursorText(run.cursors_at_start[stream]!) : null,
		end: stream in run.cursors_at_end ? cursorText(run.cursors_at_end[stream]!) : null
	}));
}

/** What a stream's source said of it (status, estimates), as `complete, ~150 records`, or null
 *  when it said nothing (sources other than Airbyte's never do). */
export function sourceSaid(stats: StreamStats): string | null {
	const said = [
		stats.status,
		stats.estimated_records === undefined ? undefined : `~${stats.estimated_records} records`,
		stats.estimated_bytes === undefined ? undefined : `~${stats.estimated_bytes} bytes`
	].filter((part) => part !== undefined);
	return said.length ? said.join(', ') : null;
}

/** The runs page's address showing `filter`. */
export function runsHref(project: string, filter: RunFilter): string {
	const query = filterQuery(filter);
	return `${links.runs(project)}${query ? `?${query}` : ''}`;
}

/** `newer` and `older` runs as one list without repeats, newest first (a newer copy wins). */
export function mergeRuns(newer: Run[], older: Run[]): Run[] {
	const byId = new Map<string, Run>();
	for (const run of [...older, ...newer]) {
		byId.set(run.id, run);
	}
	// Run ids are UUIDv7: they sort by start time.
	return [...byId.values()].sort((a, b) => (a.id < b.id ? 1 : -1));
}
