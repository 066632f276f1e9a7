import { describe, expect, it } from 'vitest';
import { Client } from './api';
import {
	consoleHolder,
	parseCursorValue,
	resetCursor,
	type ResetRequest
} from './cursorReset';
import type { CatalogError, Cursor, Lease, Request, Response } from './protocol/types';

const lease: Lease = {
	pipeline: 'shop',
	holder: 'console-alice',
	epoch: 7,
	expires_at: '2027-01-15T08:00:30.000Z'
};

function cursor(version: number, value: Cursor['value'] = 5): Cursor {
	return {
		pipeline: 'shop',
		stream: 'orders',
		value,
		version,
		run: null,
		epoch: null,
		updated_by: { kind: 'operator', name: 'alice' },
		updated_at: '2027-01-15T08:00:00.000Z'
	};
}

type Answer = Response | { err: CatalogError };

/**
 * A fake catalog server: `answers` says what each op is answered with (a function of the
 * request); every request sent is recorded, in order.
 */
function catalog(answers: Partial<Record<Request['op'], (r: Request) => Answer>>) {
	const sent: Request[] = [];
	const fetch = async (_url: RequestInfo | URL, init?: RequestInit) => {
		const request = JSON.parse(String(init?.body)) as Request;
		sent.push(request);
		const answer = answers[request.op];
		if (!answer) {
			throw new Error(`unexpected ${request.op}`);
		}
		const reply = answer(request);
		const body = 'err' in reply ? reply : { ok: reply };
		return new Response(JSON.stringify(body), {
			status: 200,
			headers: { 'content-type': 'application/json' }
		});
	};
	return { sent, client: new Client({ token: 't', fetch: fetch as typeof globalThis.fetch }) };
}

const request: ResetRequest = {
	project: 'quickstart',
	pipeline: 'shop',
	stream: 'orders',
	target: { version: 1 },
	expectedVersion: 3,
	reason: '  re-read yesterday  ',
	operator: 'alice'
};

const at3 = () => ({ type: 'maybe_cursor', value: cursor(3) }) as Response;
const granted = () => ({ type: 'lease', value: lease }) as Response;
const released = () => ({ type: 'unit' }) as Response;
const leased = (): Answer => ({
	err: {
		code: 'leased',
		detail: { pipeline: 'shop', holder: 'worker-1', epoch: 4, expires_at: '2027-01-15T08:02:00.000Z' }
	}
});

describe('resetCursor', () => {
	it('acquires, resets with expected_version and the reason, then releases', async () => {
		const { sent, client } = catalog({
			get_cursor: at3,
			acquire: granted,
			reset_cursor: () => ({ type: 'cursor', value: cursor(4, 1) }),
			release: released
		});
		const outcome = await resetCursor(client, request);
		expect(outcome).toMatchObject({ ok: true, forced: false, releaseError: null });
		expect(outcome.ok && outcome.cursor.version).toBe(4);
		expect(sent.map((r) => r.op)).toEqual(['get_cursor', 'acquire', 'reset_cursor', 'release']);
		expect(sent[1]).toMatchObject({ op: 'acquire', pipeline: 'shop', holder: 'console-alice' });
		expect(sent[2]).toEqual({
			op: 'reset_cursor',
			lease,
			stream: 'orders',
			reset: {
				target: { version: 1 },
				expected_version: 3,
				by: { kind: 'operator', name: 'alice' },
				reason: 're-read yesterday'
			}
		});
		expect(sent[3]).toEqual({ op: 'release', lease });
	});

	it('releases the lease when the reset fails, and says what failed', async () => {
		const { sent, client } = catalog({
			get_cursor: at3,
			acquire: granted,
			reset_cursor: () => ({
				err: { code: 'not_found', detail: { entity: 'cursor_version', pipeline: 'shop', stream: 'orders', version: 1 } }
			}),
			release: released
		});
		const outcome = await resetCursor(client, request);
		expect(outcome).toMatchObject({ ok: false, kind: 'error' });
		expect(!outcome.ok && outcome.message).toContain('version 1 of cursor shop/orders not found');
		expect(sent.map((r) => r.op)).toEqual(['get_cursor', 'acquire', 'reset_cursor', 'release']);
		expect(sent[3]).toEqual({ op: 'release', lease });
	});

	it('maps a conflict from the reset to stale ("reload"), and still releases', async () => {
		const { sent, client } = catalog({
			get_cursor: at3,
			acquire: granted,
			reset_cursor: () => ({
				err: {
					code: 'conflict',
					detail: { entity: { entity: 'cursor', pipeline: 'shop', stream: 'orders' }, expected: '3', actual: '4' }
				}
			}),
			release: released
		});
		const outcome = await resetCursor(client, request);
		expect(outcome).toMatchObject({ ok: false, kind: 'stale' });
		expect(!outcome.ok && outcome.message).toContain('reload');
		expect(sent.at(-1)).toEqual({ op: 'release', lease });
	});

	it('refuses a leased pipeline without force: no reset is sent, nothing to release', async () => {
		const { sent, client } = catalog({ get_cursor: at3, acquire: leased });
		const outcome = await resetCursor(client, request);
		expect(outcome).toMatchObject({
			ok: false,
			kind: 'leased',
			holder: 'worker-1',
			epoch: 4,
			expiresAt: '2027-01-15T08:02:00.000Z'
		});
		expect(!outcome.ok && outcome.message).toContain('worker-1');
		expect(sent.map((r) => r.op)).toEqual(['get_cursor', 'acquire']);
	});

	it('with force, takes the lease by force_acquire with the reason, then resets and releases', async () => {
		const { sent, client } = catalog({
			get_cursor: at3,
			force_acquire: granted,
			reset_cursor: () => ({ type: 'cursor', value: cursor(4, 1) }),
			release: released
		});
		const outcome = await resetCursor(client, { ...request, force: true });
		expect(outcome).toMatchObject({ ok: true, forced: true });
		expect(sent.map((r) => r.op)).toEqual(['get_cursor', 'force_acquire', 'reset_cursor', 'release']);
		expect(sent[1]).toEqual({
			op: 'force_acquire',
			pipeline: 'shop',
			holder: 'console-alice',
			ttl_ms: 30_000,
			by: { kind: 'operator', name: 'alice' },
			reason: 're-read yesterday'
		});
	});

	it('refuses a cursor that moved since the page read it before taking any lease', async () => {
		const { sent, client } = catalog({ get_cursor: () => ({ type: 'maybe_cursor', value: cursor(5) }) });
		const outcome = await resetCursor(client, request);
		expect(outcome).toMatchObject({ ok: false, kind: 'stale' });
		expect(!outcome.ok && outcome.message).toMatch(/now version 5, not 3.*reload/);
		expect(sent.map((r) => r.op)).toEqual(['get_cursor']);
	});

	it('refuses a blank reason without sending anything', async () => {
		const { sent, client } = catalog({});
		const outcome = await resetCursor(client, { ...request, reason: ' \n ' });
		expect(outcome).toMatchObject({ ok: false, kind: 'invalid' });
		expect(sent).toEqual([]);
	});

	it('reports a failed release after a success without hiding the success', async () => {
		const { client } = catalog({
			get_cursor: at3,
			acquire: granted,
			reset_cursor: () => ({ type: 'cursor', value: cursor(4, 1) }),
			release: () => ({ err: { code: 'unavailable', detail: 'down' } })
		});
		const outcome = await resetCursor(client, request);
		expect(outcome.ok).toBe(true);
		expect(outcome.ok && outcome.releaseError).toContain('expires by itself');
	});
});

describe('inputs', () => {
	it('validates a typed cursor value as JSON', () => {
		expect(parseCursorValue('42')).toEqual({ ok: true, value: 42 });
		expect(parseCursorValue('{"a": "2027-01-01"}')).toEqual({ ok: true, value: { a: '2027-01-01' } });
		expect(parseCursorValue('null')).toEqual({ ok: true, value: null });
		expect(parseCursorValue('2027-01-01').ok).toBe(false);
		expect(parseCursorValue('  ').ok).toBe(false);
	});

	it('names the holder after the operator', () => {
		expect(consoleHolder('alice')).toBe('console-alice');
		expect(consoleHolder(' bob ')).toBe('console-bob');
		const long = consoleHolder('é'.repeat(127));
		expect(new TextEncoder().encode(long).length).toBeLessThanOrEqual(255);
		expect(long.startsWith('console-éé')).toBe(true);
	});
});
