import { describe, expect, it } from 'vitest';
import {
	PAGE_SIZE,
	cursorPairs,
	filterQuery,
	mergeRuns,
	runFilter,
	runMillis,
	runsHref,
	runsQuery,
	sourceSaid
} from './runs';
import { replies } from './protocol/examples';
import type { Run } from './protocol/types';

const reply = replies.find((r) => 'ok' in r && r.ok.type === 'runs')!;
const runs = ('ok' in reply && 'value' in reply.ok ? reply.ok.value : null) as { items: Run[] };
const [failed, succeeded] = runs.items;

describe('the filter in the URL', () => {
	it('reads pipeline, status, position and page size', () => {
		const filter = runFilter(new URLSearchParams('pipeline=shop&status=failed&before=r-9&limit=5'));
		expect(filter).toEqual({ pipeline: 'shop', status: 'failed', before: 'r-9', limit: 5 });
		expect(runsQuery(filter)).toEqual({ pipeline: 'shop', status: 'failed', before: 'r-9', limit: 5 });
	});

	it('ignores what it cannot use instead of sending it', () => {
		expect(runFilter(new URLSearchParams('pipeline=%20&status=exploded&limit=0'))).toEqual({
			pipeline: null,
			status: null,
			before: null,
			limit: PAGE_SIZE
		});
		expect(runFilter(new URLSearchParams('limit=1001')).limit).toBe(PAGE_SIZE);
		expect(runFilter(new URLSearchParams('limit=2.5')).limit).toBe(PAGE_SIZE);
	});

	it('writes back only what differs from the defaults, encoded', () => {
		const filter = runFilter(new URLSearchParams('pipeline=a%26b&limit=50'));
		expect(filterQuery(filter)).toBe('pipeline=a%26b');
		expect(runsHref('my proj', { ...filter, status: 'running', before: 'r-1', limit: 10 })).toBe(
			'/projects/my%20proj/runs?pipeline=a%26b&status=running&limit=10&before=r-1'
		);
		expect(runsHref('p', runFilter(new URLSearchParams()))).toBe('/projects/p/runs');
	});
});

describe('a run', () => {
	it('took from start to finish, or has run until the catalog clock now', () => {
		expect(runMillis(succeeded!, 0)).toBe(42_000);
		const running: Run = { ...succeeded!, status: 'running', finished_at: null };
		expect(runMillis(running, Date.parse('2027-01-15T08:01:00.000Z'))).toBe(60_000);
	});

	it('pairs its cursors at start and end by stream, as JSON text', () => {
		expect(cursorPairs(failed!)).toEqual([{ stream: 'orders', start: '20', end: '20' }]);
		expect(cursorPairs(succeeded!)).toEqual([{ stream: 'orders', start: null, end: '20' }]);
		const mixed: Run = {
			...succeeded!,
			cursors_at_start: { b: { offset: 3 }, a: null },
			cursors_at_end: { b: { offset: 9 } }
		};
		expect(cursorPairs(mixed)).toEqual([
			{ stream: 'a', start: 'null', end: null },
			{ stream: 'b', start: '{"offset":3}', end: '{"offset":9}' }
		]);
	});
});

describe("what a stream's source said", () => {
	it('lists the status and estimates it gave, and nothing when it gave none', () => {
		expect(sourceSaid(succeeded!.stats.orders!)).toBe('complete, ~150 records, ~5000 bytes');
		expect(sourceSaid({ records: 1, bytes: 2 })).toBeNull();
		expect(sourceSaid({ records: 0, bytes: 0, estimated_bytes: 7 })).toBe('~7 bytes');
	});
});

describe('recent runs and older pages', () => {
	it('merges newest first, the newer copy of a run winning', () => {
		const a = { ...failed!, id: '0190-a' };
		const b = { ...failed!, id: '0190-b' };
		const c = { ...succeeded!, id: '0190-c' };
		const finished = { ...b, status: 'succeeded' as const };
		expect(mergeRuns([c, finished], [b, a]).map((r) => [r.id, r.status])).toEqual([
			['0190-c', 'succeeded'],
			['0190-b', 'succeeded'],
			['0190-a', failed!.status]
		]);
		expect(mergeRuns([], [])).toEqual([]);
	});
});
