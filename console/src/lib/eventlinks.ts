// Where an event of the log leads: the page of the run, cursor or decision it names, and the
// address of the event stream itself, narrowed to one pipeline on the server.

import * as links from './links';
import type { Event, EventKind } from './protocol/types';

/** Every kind of event, for the log's kind filter. */
export const EVENT_KINDS: EventKind['type'][] = [
	'pipeline_created',
	'pipeline_updated',
	'pipeline_deleted',
	'pipeline_paused',
	'pipeline_resumed',
	'run_requested',
	'lease_acquired',
	'lease_released',
	'run_begun',
	'run_finished',
	'cursor_advanced',
	'cursor_reset',
	'schema_version_added',
	'decision_recorded',
	'decision_resolved'
];

/** A link from an event to the thing it names. */
export interface EventTarget {
	href: string;
	/** What the link reads. */
	label: string;
}

/** The run, cursor or decision `event` names, if any (its pipeline links on its own). */
export function eventTarget(project: string, event: Event): EventTarget | null {
	const kind = event.kind;
	switch (kind.type) {
		case 'run_begun':
		case 'run_finished':
			return { href: links.run(project, kind.run), label: `run ${kind.run}` };
		case 'cursor_advanced':
		case 'cursor_reset':
			return { href: links.cursor(project, event.pipeline, kind.stream), label: `cursor ${kind.stream}` };
		case 'decision_recorded':
		case 'decision_resolved':
			return { href: links.decision(project, kind.decision), label: `decision ${kind.decision}` };
		default:
			return null;
	}
}

/** Where a stream of the log starts: after an event, or with the last `tail` events. */
export type StreamStart = { after: number } | { tail: number };

/** The path of the event stream (`/v1/…`), one pipeline's only when `pipeline` is given. */
export function streamPath(project: string, start: StreamStart, pipeline?: string | null): string {
	const query = new URLSearchParams();
	if (pipeline) query.set('pipeline', pipeline);
	if ('after' in start) {
		query.set('after', String(start.after));
	} else {
		query.set('tail', String(start.tail));
	}
	return `/v1/projects/${encodeURIComponent(project)}/events?${query}`;
}
