// A pipeline's timeline is its events newest first. The live end comes from the event stream
// (`?pipeline=…&tail=N`); older pages from `pipeline_events`, which reads forward only (`after`).
// `eventsBefore` pages backwards over it: it reads a window of sequence numbers just below the
// oldest event shown, widening it until it holds a page (a pipeline's events are a sparse part of
// the project's log), so each page costs a few reads of at most `limit` events.

import type { Event } from './protocol/types';

/** Reads the pipeline's events after `after`, oldest first, at most `limit`. */
export type ReadAfter = (after: number, limit: number) => Promise<Event[]>;

/** The `count` newest events with `seq < before`, newest first. */
export async function eventsBefore(
	read: ReadAfter,
	before: number,
	count: number,
	limit = 200
): Promise<Event[]> {
	if (before <= 1 || count <= 0) {
		return [];
	}
	let width = Math.max(count, 1) * 4;
	for (;;) {
		// Sequence numbers start at 1: after 0 is the whole log.
		const from = Math.max(0, before - 1 - width);
		const found: Event[] = [];
		let after = from;
		for (;;) {
			const page = await read(after, limit);
			const inside = page.filter((e) => e.seq < before);
			found.push(...inside);
			if (page.length < limit || inside.length < page.length) {
				break;
			}
			after = page[page.length - 1]!.seq;
		}
		if (found.length >= count || from === 0) {
			return found.slice(-count).reverse();
		}
		width *= 4;
	}
}

/** `incoming` merged into `shown` (newest first), without repeats. */
export function mergeNewestFirst(shown: Event[], incoming: Event[]): Event[] {
	const seen = new Set(shown.map((e) => e.seq));
	const fresh = incoming.filter((e) => !seen.has(e.seq));
	if (fresh.length === 0) {
		return shown;
	}
	return [...shown, ...fresh].sort((a, b) => b.seq - a.seq);
}
