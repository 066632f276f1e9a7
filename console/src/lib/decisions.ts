// The requests of the decision pages: finding one decision (the protocol has no get-by-id, so a
// one-item keyset page starting just before it), the inbox's pages, and an operator's verdict.

import type {
	Actor,
	Decision,
	DecisionId,
	DecisionQuery,
	Page,
	Request,
	WhoAmI
} from './protocol/types';

/** The largest reason the catalog takes, in UTF-8 bytes. */
export const MAX_REASON_BYTES = 4096;

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

/**
 * Who the console says an operator action is by: the name of the strongest grant covering
 * `project` (the server stamps the real grant anyway), else `console`.
 */
export function operator(whoami: WhoAmI | null, project: string): Extract<Actor, { kind: 'operator' }> {
	const rank = { read: 0, write: 1, admin: 2 };
	const grants = (whoami?.grants ?? [])
		.filter((g) => g.projects === '*' || g.projects.includes(project))
		.sort((a, b) => rank[b.role] - rank[a.role]);
	return { kind: 'operator', name: grants.find((g) => g.name)?.name ?? 'console' };
}

/** Why a reason cannot be sent, or null if it can. */
export function reasonProblem(reason: string): string | null {
	const text = reason.trim();
	if (text === '') {
		return 'say why: a reason is recorded with the verdict';
	}
	const bytes = new TextEncoder().encode(text).length;
	if (bytes > MAX_REASON_BYTES) {
		return `the reason is ${bytes} bytes; the catalog keeps at most ${MAX_REASON_BYTES}`;
	}
	return null;
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
