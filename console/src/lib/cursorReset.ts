// The console's guarded cursor rollback/reset, as `hakiri cursors reset|rollback` does it: the
// write needs the pipeline's writer lease, so the console takes one of its own (a short ttl bounds
// what a closed tab can block), resets with the version the page showed as `expected_version`
// (compare-and-set), and releases the lease whatever happened.
//
// - The cursor is read first: if it moved since the page read it, nothing is taken (stale).
// - While a run holds the lease, `acquire` is refused with `leased`: that refusal is returned as
//   is (who, epoch, until when) and nothing is written. `force` takes the lease with
//   `force_acquire` and the operator's reason instead, which fences the running run.
// - A `conflict` from the reset itself (the cursor moved between the read and the write) is
//   stale too: the operator reloads and decides again.

import { ApiError, type Client } from './api';
import type {
	Cursor,
	CursorValue,
	Epoch,
	HolderId,
	Json,
	Lease,
	ResetTarget,
	Timestamp
} from './protocol/types';
import { reasonProblem, utf8Length } from './operator';

/** How long the console's lease lasts: the reset is one write. */
export const CONSOLE_LEASE_MS = 30_000;

export interface ResetRequest {
	project: string;
	pipeline: string;
	stream: string;
	target: ResetTarget;
	/** The version the page showed: the reset is refused if the cursor is elsewhere. */
	expectedVersion: number;
	reason: string;
	/** The operator's name (the grant's); the holder is `console-<name>`. */
	operator: string;
	/** Take the lease from a running run (fencing it). */
	force?: boolean;
	ttlMs?: number;
}

export type ResetOutcome =
	| { ok: true; cursor: Cursor; forced: boolean; lease: Lease; releaseError: string | null }
	| { ok: false; kind: 'invalid'; message: string }
	| {
			ok: false;
			kind: 'leased';
			holder: HolderId;
			epoch: Epoch;
			expiresAt: Timestamp;
			message: string;
	  }
	| { ok: false; kind: 'stale'; message: string }
	| { ok: false; kind: 'error'; message: string; error: unknown; forced: boolean };

/** The lease holder the console acts as: `console-<operator>` (a HolderId: printable, trimmed, ≤ 255 bytes). */
export function consoleHolder(operator: string): HolderId {
	let holder = `console-${operator.trim().replace(/\p{Cc}/gu, '') || 'operator'}`;
	while (utf8Length(holder) > 255) {
		holder = [...holder].slice(0, -1).join('').trimEnd();
	}
	return holder;
}

/** A cursor value typed by the operator, as JSON: the value, or why it is not one. */
export function parseCursorValue(text: string): { ok: true; value: CursorValue } | { ok: false; message: string } {
	if (text.trim() === '') {
		return { ok: false, message: 'type a JSON value (a number, "a string", an object…)' };
	}
	try {
		return { ok: true, value: JSON.parse(text) as Json };
	} catch (e) {
		return { ok: false, message: `not JSON: ${e instanceof Error ? e.message : String(e)}` };
	}
}

/** What the target does, in words: `roll back to version 3`, `reset to the initial position`. */
export function targetText(target: ResetTarget): string {
	if (target === 'initial') {
		return 'reset to the initial position';
	}
	return 'version' in target
		? `roll back to version ${target.version}`
		: `set to ${JSON.stringify(target.value)}`;
}

const STALE = (found: string) =>
	`the cursor moved since this page read it (${found}): nothing was changed; reload and decide again`;

/** Acquire (or force) → reset → release, always releasing a lease it took. */
export async function resetCursor(client: Client, request: ResetRequest): Promise<ResetOutcome> {
	const { project, pipeline, stream, target, expectedVersion } = request;
	const problem = reasonProblem(request.reason);
	if (problem) {
		return { ok: false, kind: 'invalid', message: problem };
	}
	const reason = request.reason.trim();
	const by = { kind: 'operator' as const, name: request.operator };
	const holder = consoleHolder(request.operator);
	const ttl_ms = request.ttlMs ?? CONSOLE_LEASE_MS;
	const forced = request.force === true;

	// Refused here, nothing is taken: taking a lease is itself a change (an epoch, events, and
	// with force a fenced run).
	try {
		const current = await client.call(project, { op: 'get_cursor', pipeline, stream });
		if (current === null || current.version !== expectedVersion) {
			return {
				ok: false,
				kind: 'stale',
				message: STALE(current === null ? 'it has no cursor now' : `now version ${current.version}, not ${expectedVersion}`)
			};
		}
	} catch (error) {
		return { ok: false, kind: 'error', message: messageOf(error), error, forced: false };
	}

	let lease: Lease;
	try {
		lease = forced
			? await client.call(project, { op: 'force_acquire', pipeline, holder, ttl_ms, by, reason })
			: await client.call(project, { op: 'acquire', pipeline, holder, ttl_ms });
	} catch (error) {
		if (error instanceof ApiError && error.error.code === 'leased') {
			const { holder: owner, epoch, expires_at } = error.error.detail;
			return {
				ok: false,
				kind: 'leased',
				holder: owner,
				epoch,
				expiresAt: expires_at,
				message: `refused: ${owner} holds the writer lease of ${pipeline} (epoch ${epoch}) until ${expires_at}, so a run may be writing this cursor; nothing was changed`
			};
		}
		return { ok: false, kind: 'error', message: messageOf(error), error, forced: false };
	}

	let outcome: ResetOutcome;
	try {
		const cursor = await client.call(project, {
			op: 'reset_cursor',
			lease,
			stream,
			reset: { target, expected_version: expectedVersion, by, reason }
		});
		outcome = { ok: true, cursor, forced, lease, releaseError: null };
	} catch (error) {
		if (error instanceof ApiError && error.error.code === 'conflict') {
			outcome = {
				ok: false,
				kind: 'stale',
				message: STALE(`expected ${error.error.detail.expected}, found ${error.error.detail.actual}`) +
					(forced ? '. The lease was taken by force: its previous holder was fenced' : '')
			};
		} else {
			outcome = { ok: false, kind: 'error', message: messageOf(error), error, forced };
		}
	}
	// Release whatever happened: the lease exists only for this write.
	try {
		await client.call(project, { op: 'release', lease });
	} catch (error) {
		const note = `could not release the console's lease (${messageOf(error)}); it expires by itself at ${lease.expires_at}`;
		if (outcome.ok) {
			outcome.releaseError = note;
		} else {
			outcome.message += `; ${note}`;
		}
	}
	return outcome;
}

function messageOf(error: unknown): string {
	return error instanceof Error ? error.message : String(error);
}

