// A pipeline's timeline is its events newest first. The live end comes from the event stream
// (`?pipeline=…&tail=N`); older pages from `pipeline_events_before`, which reads the pipeline's
// slice of the log backwards through its index, a page at a time.

import type { Event } from './protocol/types';

/** `incoming` merged into `shown` (newest first), without repeats. */
export function mergeNewestFirst(shown: Event[], incoming: Event[]): Event[] {
	const seen = new Set(shown.map((e) => e.seq));
	const fresh = incoming.filter((e) => !seen.has(e.seq));
	if (fresh.length === 0) {
		return shown;
	}
	return [...shown, ...fresh].sort((a, b) => b.seq - a.seq);
}
