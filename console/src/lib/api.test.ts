import { describe, expect, it } from 'vitest';
import { allows, ApiError, Client, describeError, roleOn } from './api';
import { replies, whoami } from './protocol/examples';

/** A fetch answering `status` with `body`, recording what it was asked. */
function server(status: number, body: unknown) {
	const calls: { url: string; init: RequestInit }[] = [];
	const fetch = async (url: RequestInfo | URL, init?: RequestInit) => {
		calls.push({ url: String(url), init: init ?? {} });
		const text = typeof body === 'string' ? body : JSON.stringify(body);
		return new Response(text, { status, headers: { 'content-type': 'application/json' } });
	};
	return { calls, fetch: fetch as typeof globalThis.fetch };
}

const statuses = replies.find((r) => 'ok' in r && r.ok.type === 'statuses')!;

describe('Client.call', () => {
	it('posts the request as JSON with the bearer token and returns the value', async () => {
		const { calls, fetch } = server(200, statuses);
		const client = new Client({ token: 't0k', base: 'http://127.0.0.1:7464/', fetch });
		const page = await client.call('my project', {
			op: 'pipeline_statuses',
			after: null,
			limit: 100
		});
		expect(page.items.map((s) => s.pipeline.spec.id)).toEqual(['orders', 'refunds']);
		expect(calls).toHaveLength(1);
		const [call] = calls;
		expect(call!.url).toBe('http://127.0.0.1:7464/v1/projects/my%20project/rpc');
		expect(call!.init.method).toBe('POST');
		expect(call!.init.credentials).toBe('omit');
		const headers = call!.init.headers as Record<string, string>;
		expect(headers.authorization).toBe('Bearer t0k');
		expect(headers['content-type']).toBe('application/json');
		expect(JSON.parse(String(call!.init.body))).toEqual({
			op: 'pipeline_statuses',
			after: null,
			limit: 100
		});
	});

	it('answers unit with undefined', async () => {
		const { fetch } = server(200, { ok: { type: 'unit' } });
		const client = new Client({ token: 't', fetch });
		const lease = { pipeline: 'p', holder: 'h', epoch: 1, expires_at: '2027-01-15T08:00:00.000Z' };
		await expect(client.call('p', { op: 'release', lease })).resolves.toBeUndefined();
	});

	it('throws the catalog error of an error reply with its status', async () => {
		const { fetch } = server(404, {
			err: { code: 'not_found', detail: { entity: 'pipeline', pipeline: 'missing' } }
		});
		const client = new Client({ token: 't', fetch });
		const error = await client
			.call('p', { op: 'get_pipeline', pipeline: 'missing' })
			.catch((e: unknown) => e);
		expect(error).toBeInstanceOf(ApiError);
		expect((error as ApiError).status).toBe(404);
		expect((error as ApiError).error.code).toBe('not_found');
		expect((error as ApiError).message).toBe('pipeline missing not found');
	});

	it('refuses an answer of the wrong type', async () => {
		const { fetch } = server(200, statuses);
		const client = new Client({ token: 't', fetch });
		const error = await client.call('p', { op: 'get_pipeline', pipeline: 'orders' }).catch((e) => e);
		expect((error as ApiError).error).toEqual({
			code: 'backend',
			detail: 'the server answered get_pipeline with statuses, not pipeline'
		});
	});

	it('describes an answer that is not the protocol, and no answer at all', async () => {
		const proxy = server(502, '<html>Bad gateway</html>');
		const error = await new Client({ token: 't', fetch: proxy.fetch }).whoami().catch((e) => e);
		expect((error as ApiError).status).toBe(502);
		expect((error as ApiError).error.code).toBe('unavailable');
		const down = (async () => {
			throw new TypeError('Failed to fetch');
		}) as typeof fetch;
		const lost = await new Client({ token: 't', fetch: down }).plan('p').catch((e) => e);
		expect((lost as ApiError).status).toBe(0);
		expect((lost as ApiError).error.code).toBe('unavailable');
	});

	it('reads whoami and the plan with GET', async () => {
		const { calls, fetch } = server(200, whoami);
		const client = new Client({ token: 't', fetch });
		expect(await client.whoami()).toEqual(whoami);
		await client.plan('default');
		expect(calls.map((c) => [c.init.method, c.url])).toEqual([
			['GET', '/v1/whoami'],
			['GET', '/v1/projects/default/plan']
		]);
	});
});

describe('errors', () => {
	it('describes every error the examples hold in one line', () => {
		for (const reply of replies) {
			if ('err' in reply) {
				const text = describeError(reply.err);
				expect(text).not.toContain('[object');
				expect(text).not.toContain('\n');
			}
		}
	});

	it('tells auth failures apart', () => {
		expect(new ApiError(401, { code: 'unauthenticated', detail: 'x' }).isAuth).toBe(true);
		expect(new ApiError(503, { code: 'unavailable', detail: 'x' }).isAuth).toBe(false);
	});
});

describe('roles', () => {
	it('takes the strongest grant that covers the project', () => {
		expect(roleOn(whoami, 'examples')).toBe('admin');
		expect(roleOn(whoami, 'other')).toBe('admin');
		const reader = {
			grants: [{ name: 'r', role: 'read' as const, projects: ['a'] }],
			server: whoami.server
		};
		expect(roleOn(reader, 'a')).toBe('read');
		expect(roleOn(reader, 'b')).toBeNull();
	});

	it('acts as a reader at most on a read-only server', () => {
		const readOnly = { ...whoami, server: { ...whoami.server, read_only: true } };
		expect(roleOn(readOnly, 'examples')).toBe('read');
		expect(roleOn({ ...readOnly, grants: [] }, 'examples')).toBeNull();
	});

	it('orders admin over write over read', () => {
		expect(allows('admin', 'write')).toBe(true);
		expect(allows('write', 'admin')).toBe(false);
		expect(allows('read', 'read')).toBe(true);
		expect(allows(null, 'read')).toBe(false);
	});
});
