import { describe, expect, it } from 'vitest';
import { replies } from './protocol/examples';
import type { PipelineId, PipelineStatus, StatusPage } from './protocol/types';
import { allStatuses, catalogClock, statusOf, type ReadStatuses } from './statuses';

const reply = replies.find((r) => 'ok' in r && r.ok.type === 'statuses')!;
const example = ('ok' in reply && 'value' in reply.ok ? reply.ok.value : null) as StatusPage;

function status(id: PipelineId): PipelineStatus {
	const one = example.items[0]!;
	return { ...one, pipeline: { ...one.pipeline, spec: { ...one.pipeline.spec, id } } };
}

/** A catalog of pipelines `ids` (in order) whose clock moves a second per page read; what it was asked. */
function catalog(ids: PipelineId[], pageSize: number): { read: ReadStatuses; asked: [string | null, number][] } {
	const asked: [string | null, number][] = [];
	const read: ReadStatuses = async (after, limit) => {
		asked.push([after, limit]);
		const from = after === null ? 0 : ids.indexOf(after) + 1;
		const items = ids.slice(from, from + Math.min(limit, pageSize)).map(status);
		const last = items.at(-1)?.pipeline.spec.id;
		const next = last !== undefined && ids.indexOf(last) < ids.length - 1 ? last : null;
		return { items, next, as_of: `2027-01-15T08:00:0${asked.length}Z` };
	};
	return { read, asked };
}

describe('reading statuses', () => {
	it('reads every page, with the clock of the first', async () => {
		const { read, asked } = catalog(['a', 'b', 'c', 'd', 'e'], 2);
		const all = await allStatuses(read);
		expect(all.items.map((s) => s.pipeline.spec.id)).toEqual(['a', 'b', 'c', 'd', 'e']);
		expect(all.asOf).toBe('2027-01-15T08:00:01Z');
		expect(asked).toEqual([
			[null, 200],
			['b', 200],
			['d', 200]
		]);
	});

	it("stops at the page holding the pipeline, with that page's clock", async () => {
		const { read, asked } = catalog(['a', 'b', 'c', 'd', 'e'], 2);
		const found = await statusOf(read, 'c');
		expect(found.status?.pipeline.spec.id).toBe('c');
		expect(found.asOf).toBe('2027-01-15T08:00:02Z');
		expect(asked).toHaveLength(2);
	});

	it('says a pipeline is missing once the pages pass its id or end', async () => {
		const passed = catalog(['a', 'b', 'd', 'e'], 2);
		expect((await statusOf(passed.read, 'c')).status).toBeNull();
		expect(passed.asked).toHaveLength(2);
		const ended = catalog(['a', 'b'], 2);
		expect(await statusOf(ended.read, 'z')).toEqual({ status: null, asOf: '2027-01-15T08:00:01Z' });
	});

	it('reads the clock with a single status', async () => {
		const { read, asked } = catalog(['a', 'b'], 2);
		expect(await catalogClock(read)).toBe('2027-01-15T08:00:01Z');
		expect(asked).toEqual([[null, 1]]);
	});
});
