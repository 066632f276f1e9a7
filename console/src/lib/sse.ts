// The event stream reader: Server-Sent Events read with `fetch()` streaming, because
// `EventSource` cannot send an `Authorization` header. The parser follows the HTML standard's
// event-stream interpretation (any line ending, comments, `id`, `event`, multi-line `data`, a BOM,
// chunks split anywhere); the follower reconnects with `Last-Event-ID`, which misses nothing:
// the log's `seq` is gap-free and never pruned.

import type { CatalogError, Event } from './protocol/types';
import { ApiError } from './api';

/** One dispatched message. */
export interface SseMessage {
	/** `message` unless the stream named it (`event: error`). */
	event: string;
	data: string;
	/** The last event id seen so far in the stream (carried across messages, as the standard says). */
	lastEventId: string;
}

/** An incremental event-stream parser: feed it text as it arrives, in chunks of any size. */
export class SseParser {
	#buffer = '';
	#started = false;
	#event = '';
	#data: string[] = [];
	#hasData = false;
	#lastEventId = '';
	/** A CR ended the previous chunk: an LF starting this one belongs to it. */
	#pendingCr = false;

	get lastEventId(): string {
		return this.#lastEventId;
	}

	/** The messages completed by `chunk`. */
	push(chunk: string): SseMessage[] {
		let text = chunk;
		if (this.#pendingCr && text.startsWith('\n')) {
			text = text.slice(1);
		}
		this.#pendingCr = false;
		if (!this.#started && text.length > 0) {
			this.#started = true;
			if (text.startsWith('\uFEFF')) {
				text = text.slice(1);
			}
		}
		this.#buffer += text;
		const messages: SseMessage[] = [];
		for (;;) {
			const end = this.#buffer.search(/[\r\n]/);
			if (end < 0) {
				break;
			}
			const line = this.#buffer.slice(0, end);
			let next = end + 1;
			if (this.#buffer[end] === '\r') {
				if (next === this.#buffer.length) {
					// The LF of a CRLF may be in the next chunk.
					this.#pendingCr = true;
				} else if (this.#buffer[next] === '\n') {
					next += 1;
				}
			}
			this.#buffer = this.#buffer.slice(next);
			const message = this.#line(line);
			if (message) {
				messages.push(message);
			}
		}
		return messages;
	}

	#line(line: string): SseMessage | null {
		if (line === '') {
			const message = this.#hasData
				? {
						event: this.#event || 'message',
						data: this.#data.join('\n'),
						lastEventId: this.#lastEventId
					}
				: null;
			this.#event = '';
			this.#data = [];
			this.#hasData = false;
			return message;
		}
		if (line.startsWith(':')) {
			return null; // A comment: the keep-alive.
		}
		const colon = line.indexOf(':');
		const field = colon < 0 ? line : line.slice(0, colon);
		let value = colon < 0 ? '' : line.slice(colon + 1);
		if (value.startsWith(' ')) {
			value = value.slice(1);
		}
		switch (field) {
			case 'event':
				this.#event = value;
				break;
			case 'data':
				this.#data.push(value);
				this.#hasData = true;
				break;
			case 'id':
				if (!value.includes('\0')) {
					this.#lastEventId = value;
				}
				break;
			default:
			// `retry` and unknown fields: the follower has its own reconnection delays.
		}
		return null;
	}
}

export interface FollowOptions {
	/** The stream's URL, with its query (`?tail=50`, `?pipeline=…`). */
	url: string;
	token: string;
	/** Resume after this event (`Last-Event-ID`). */
	lastEventId?: string;
	onEvent: (event: Event) => void;
	/** A stream error, a refused request, or a lost connection; `fatal` when following stopped. */
	onError?: (error: ApiError, fatal: boolean) => void;
	/** Connected (true) or waiting to reconnect (false). */
	onState?: (connected: boolean) => void;
	signal?: AbortSignal;
	fetch?: typeof fetch;
	/** The first reconnection delay, doubled up to `maxDelayMs`. */
	delayMs?: number;
	maxDelayMs?: number;
	/** Waits; for tests. */
	sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
}

/** Statuses after which reconnecting cannot help: a bad token, no grant, no such project. */
const FATAL = new Set([400, 401, 403, 404, 421]);

/**
 * Follows the event log until `signal` aborts or the server refuses for good, reconnecting with
 * `Last-Event-ID` after a dropped connection or a stream error. Resolves when it stops.
 */
export async function follow(options: FollowOptions): Promise<void> {
	const doFetch = options.fetch ?? ((input, init) => fetch(input, init));
	const sleep = options.sleep ?? defaultSleep;
	const maxDelay = options.maxDelayMs ?? 30_000;
	const firstDelay = options.delayMs ?? 500;
	let delay = firstDelay;
	let lastEventId = options.lastEventId ?? '';
	while (!options.signal?.aborted) {
		const headers: Record<string, string> = {
			authorization: `Bearer ${options.token}`,
			accept: 'text/event-stream'
		};
		if (lastEventId !== '') {
			headers['last-event-id'] = lastEventId;
		}
		try {
			const response = await doFetch(options.url, {
				headers,
				signal: options.signal,
				credentials: 'omit',
				referrerPolicy: 'no-referrer',
				cache: 'no-store'
			});
			if (!response.ok || !response.body) {
				const error = await refusal(response);
				const fatal = FATAL.has(response.status);
				options.onError?.(error, fatal);
				if (fatal) {
					return;
				}
			} else {
				options.onState?.(true);
				const parser = new SseParser();
				const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
				for (;;) {
					const { done, value } = await reader.read();
					if (done) {
						break;
					}
					for (const message of parser.push(value)) {
						if (message.event === 'error') {
							options.onError?.(new ApiError(200, streamError(message.data)), false);
							continue;
						}
						if (message.event !== 'message') {
							continue;
						}
						const event = JSON.parse(message.data) as Event;
						lastEventId = message.lastEventId || String(event.seq);
						delay = firstDelay;
						options.onEvent(event);
					}
				}
			}
		} catch (e) {
			if (options.signal?.aborted) {
				return;
			}
			options.onError?.(
				new ApiError(0, { code: 'unavailable', detail: `the event stream broke: ${e}` }),
				false
			);
		}
		options.onState?.(false);
		if (options.signal?.aborted) {
			return;
		}
		await sleep(delay, options.signal);
		delay = Math.min(delay * 2, maxDelay);
	}
}

async function refusal(response: globalThis.Response): Promise<ApiError> {
	const text = await response.text().catch(() => '');
	try {
		const err = (JSON.parse(text) as { err?: CatalogError }).err;
		if (err) {
			return new ApiError(response.status, err);
		}
	} catch {
		// Not a protocol answer (a proxy's page): described below.
	}
	return new ApiError(response.status, {
		code: 'unavailable',
		detail: `HTTP ${response.status} ${text.slice(0, 200)}`.trim()
	});
}

function streamError(data: string): CatalogError {
	try {
		const err = (JSON.parse(data) as { err?: CatalogError }).err;
		if (err) {
			return err;
		}
	} catch {
		// Described below.
	}
	return { code: 'backend', detail: data };
}

function defaultSleep(ms: number, signal?: AbortSignal): Promise<void> {
	return new Promise((resolve) => {
		const timer = setTimeout(resolve, ms);
		signal?.addEventListener(
			'abort',
			() => {
				clearTimeout(timer);
				resolve();
			},
			{ once: true }
		);
	});
}
