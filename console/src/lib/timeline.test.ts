import { describe, expect, it } from 'vitest';
import { eventsBefore, mergeNewestFirst } from './timeline';
import type { Event } from './protocol/types';

function event(seq: number): Event {
	return {
		seq,
		at: '2027-01-15T08:00:00.000Z',
		actor: { kind: 'system' },
		pipeline: 'p',
		kind: { type: 'pipeline_resumed' }
	};
}

/** A pipeline whose events are `seqs` of a longer log; records each read. */
function log(seqs: number[]) {
	const reads: [number, number][] = [];
	const read = async (after: number, limit: number) => {
		reads.push([after, limit]);
		return seqs.filter((s) => s > after).slice(0, limit).map(event);
	};
	return { read, reads };
}

describe('eventsBefore', () => {
	it('pages backwards over a dense log', async () => {
		const { read } = log(Array.from({ length: 100 }, (_, i) => i + 1));
		const page = await eventsBefore(read, 51, 10);
		expect(page.map((e) => e.seq)).toEqual([50, 49, 48, 47, 46, 45, 44, 43, 42, 41]);
	});

	it('widens its window over a sparse log, and stops at the start', async () => {
		const { read, reads } = log([3, 500, 900, 1000]);
		const page = await eventsBefore(read, 1000, 3);
		expect(page.map((e) => e.seq)).toEqual([900, 500, 3]);
		expect(reads.length).toBeLessThan(8);
		expect((await eventsBefore(read, 3, 3)).map((e) => e.seq)).toEqual([]);
	});

	it('reads more than one page of a window when it must', async () => {
		const { read } = log(Array.from({ length: 100 }, (_, i) => i + 1));
		const page = await eventsBefore(read, 101, 30, 7);
		expect(page.map((e) => e.seq)).toEqual(Array.from({ length: 30 }, (_, i) => 100 - i));
	});
});

describe('mergeNewestFirst', () => {
	it('keeps one of each, newest first', () => {
		const merged = mergeNewestFirst([event(5), event(3)], [event(6), event(5), event(1)]);
		expect(merged.map((e) => e.seq)).toEqual([6, 5, 3, 1]);
	});
});
