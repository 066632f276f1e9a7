import { describe, expect, it } from 'vitest';
import { mergeNewestFirst } from './timeline';
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

describe('mergeNewestFirst', () => {
	it('keeps one of each, newest first', () => {
		const merged = mergeNewestFirst([event(5), event(3)], [event(6), event(5), event(1)]);
		expect(merged.map((e) => e.seq)).toEqual([6, 5, 3, 1]);
	});
});
