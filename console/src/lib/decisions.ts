// The requests of the decision pages: finding one decision (the protocol has no get-by-id, so a
// one-item keyset page starting just before it), the inbox's pages, and an operator's verdict.

import type {
	Actor,
	Decision,
	DecisionId,
	DecisionQuery,
	Page,
	Request
} from './protocol/types';

/** A decision id from a URL segment: a positive integer, else null. */
export function parseDecisionId(text: string | undefined): DecisionId | null {
	if (!text || !/^[1-9]\d{0,15}$/.test(text)) {
		return null;
	}
	const id = Number(text);
	return Number.isSafeInteger(id) ? id : null;
}

/**
 * The page that starts with decision `id` if it exists: `after` is exclusive (hakiri-core's
 * `DecisionQuery`: ids greater than it, oldest first), so `id - 1` with a limit of one.
 */
export function findQuery(id: DecisionId): DecisionQuery {
	return { pipeline: null, held_only: false, after: id > 1 ? id - 1 : null, limit: 1 };
}

/** The decision `id` out of `findQuery(id)`'s page; null when the page starts with a later one. */
export function pick(page: Page<Decision, DecisionId>, id: DecisionId): Decision | null {
	return page.items.find((d) => d.id === id) ?? null;
}

/** A page of the inbox (held decisions) or, with `all`, of every decision; oldest first. */
export function inboxQuery(all: boolean, after: DecisionId | null, limit: number): DecisionQuery {
	return { pipeline: null, held_only: !all, after, limit };
}

/** The `decide` request resolving `decision`; the reason must have passed `reasonProblem`. */
export function decideRequest(
	decision: DecisionId,
	resolution: 'accept' | 'reject',
	by: Actor,
	reason: string
): Extract<Request, { op: 'decide' }> {
	return { op: 'decide', decision, decide: { resolution, by, reason: reason.trim() } };
}

/** The nav's count of a first inbox page: empty when nothing is held, `100+` when more are. */
export function heldText(page: Page<Decision, DecisionId>): string {
	if (page.items.length === 0) {
		return '';
	}
	return `${page.items.length}${page.next === null ? '' : '+'}`;
}
