import { describe, expect, it } from 'vitest';
import { follow, SseParser, type SseMessage } from './sse';
import { eventStream, events } from './protocol/examples';
import type { ApiError } from './api';
import type { Event } from './protocol/types';

function parseAll(chunks: string[]): SseMessage[] {
	const parser = new SseParser();
	return chunks.flatMap((chunk) => parser.push(chunk));
}

describe('SseParser', () => {
	it("reads the Rust server's framing of events", () => {
		const messages = parseAll([eventStream]);
		expect(messages.map((m) => m.lastEventId)).toEqual(['1', '2', '3', '4']);
		expect(messages.map((m) => JSON.parse(m.data))).toEqual(events.slice(0, 4));
		expect(messages.every((m) => m.event === 'message')).toBe(true);
	});

	it('gives the same messages however the stream is split', () => {
		const whole = parseAll([eventStream]);
		for (let at = 0; at <= eventStream.length; at += 7) {
			expect(parseAll([eventStream.slice(0, at), eventStream.slice(at)])).toEqual(whole);
		}
		expect(parseAll([...eventStream])).toEqual(whole);
	});

	it('accepts CRLF and CR line endings, even a CRLF split between chunks', () => {
		const lf = 'id: 7\ndata: {"a":1}\n\n';
		const expected = parseAll([lf]);
		expect(parseAll([lf.replaceAll('\n', '\r\n')])).toEqual(expected);
		expect(parseAll([lf.replaceAll('\n', '\r')])).toEqual(expected);
		expect(parseAll(['id: 7\r', '\ndata: {"a":1}\r', '\n\r', '\n'])).toEqual(expected);
	});

	it('skips comments, joins data lines, names events and strips a BOM', () => {
		const messages = parseAll([
			'\uFEFF: keep-alive\n\n',
			'event: error\ndata: line one\ndata:line two\n\n',
			'data\n\n',
			'retry: 10\nunknown: x\n\n'
		]);
		expect(messages).toEqual([
			{ event: 'error', data: 'line one\nline two', lastEventId: '' },
			{ event: 'message', data: '', lastEventId: '' }
		]);
	});

	it('keeps the last id across messages and ignores an id with NUL', () => {
		const messages = parseAll(['id: 5\ndata: a\n\ndata: b\n\nid: 6\u0000\ndata: c\n\n']);
		expect(messages.map((m) => m.lastEventId)).toEqual(['5', '5', '5']);
	});

	it('dispatches nothing for a message cut off before its blank line', () => {
		expect(parseAll(['id: 1\ndata: {"seq":1}\n'])).toEqual([]);
	});
});

/** A server that answers each connection with the next of `answers`. */
function streams(answers: (() => Response)[]) {
	const seen: Record<string, string>[] = [];
	const fetch = (async (_url: RequestInfo | URL, init?: RequestInit) => {
		seen.push({ ...(init?.headers as Record<string, string>) });
		const answer = answers.shift();
		if (!answer) {
			throw new Error('no more answers');
		}
		return answer();
	}) as typeof globalThis.fetch;
	return { seen, fetch };
}

function sse(text: string): () => Response {
	return () =>
		new Response(text, { status: 200, headers: { 'content-type': 'text/event-stream' } });
}

describe('follow', () => {
	it('resumes with Last-Event-ID after the stream ends, missing nothing', async () => {
		const controller = new AbortController();
		const frames = eventStream.split('\n\n').filter(Boolean).map((f) => `${f}\n\n`);
		const server = streams([
			sse(frames.slice(0, 2).join('')),
			sse(`: keep-alive\n\n${frames.slice(2).join('')}`)
		]);
		const got: Event[] = [];
		const errors: ApiError[] = [];
		await follow({
			url: '/v1/projects/p/events?tail=50',
			token: 't',
			fetch: server.fetch,
			onEvent: (event) => {
				got.push(event);
				if (got.length === 4) {
					controller.abort();
				}
			},
			onError: (e) => errors.push(e),
			signal: controller.signal,
			sleep: async () => {}
		});
		expect(got.map((e) => e.seq)).toEqual([1, 2, 3, 4]);
		expect(server.seen.map((h) => h['last-event-id'])).toEqual([undefined, '2']);
		expect(server.seen.every((h) => h.authorization === 'Bearer t')).toBe(true);
		expect(errors).toEqual([]);
	});

	it('reports a stream error and reconnects; stops on a refused token', async () => {
		const server = streams([
			sse(
				'id: 1\ndata: ' +
					JSON.stringify(events[0]) +
					'\n\nevent: error\ndata: {"err":{"code":"unavailable","detail":"gone"}}\n\n'
			),
			() =>
				new Response('{"err":{"code":"unauthenticated","detail":"bad token"}}', { status: 401 })
		]);
		const errors: [string, number, boolean][] = [];
		const delays: number[] = [];
		await follow({
			url: '/events',
			token: 't',
			fetch: server.fetch,
			onEvent: () => {},
			onError: (e, fatal) => errors.push([e.error.code, e.status, fatal]),
			sleep: async (ms) => {
				delays.push(ms);
			},
			delayMs: 100
		});
		expect(errors).toEqual([
			['unavailable', 200, false],
			['unauthenticated', 401, true]
		]);
		expect(server.seen[1]!['last-event-id']).toBe('1');
		expect(delays).toEqual([100]);
	});

	it('backs off while the server cannot be reached', async () => {
		const controller = new AbortController();
		const delays: number[] = [];
		const down = (async () => {
			throw new TypeError('Failed to fetch');
		}) as typeof fetch;
		await follow({
			url: '/events',
			token: 't',
			fetch: down,
			onEvent: () => {},
			signal: controller.signal,
			delayMs: 100,
			maxDelayMs: 500,
			sleep: async (ms) => {
				delays.push(ms);
				if (delays.length === 5) {
					controller.abort();
				}
			}
		});
		expect(delays).toEqual([100, 200, 400, 500, 500]);
	});
});
