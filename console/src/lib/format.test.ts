import { describe, expect, it } from 'vitest';
import {
	absolute,
	actionText,
	actorText,
	catalogNow,
	cursorText,
	duration,
	eventText,
	millis,
	pipelineState,
	relative,
	stateText
} from './format';
import { events, plan, replies } from './protocol/examples';
import type { StatusPage } from './protocol/types';

const page = replies.find((r) => 'ok' in r && r.ok.type === 'statuses')!;
const statuses = ('ok' in page && 'value' in page.ok ? page.ok.value : null) as StatusPage;
const asOf = millis(statuses.as_of);

describe('times', () => {
	it('writes durations in their two largest units', () => {
		expect(duration(0)).toBe('0s');
		expect(duration(42_900)).toBe('42s');
		expect(duration(185_000)).toBe('3m 5s');
		expect(duration(3_600_000)).toBe('1h');
		expect(duration(7_800_000)).toBe('2h 10m');
		expect(duration(-90_000)).toBe('1m 30s');
		expect(duration(3 * 86_400_000 + 4 * 3_600_000 + 59_000)).toBe('3d 4h');
	});

	it('is relative to the catalog clock, not the browser clock', () => {
		expect(relative('2027-01-15T08:00:00.000Z', asOf)).toBe('42s ago');
		expect(relative('2027-01-15T08:05:42.000Z', asOf)).toBe('in 5m');
		expect(relative(statuses.as_of, asOf + 400)).toBe('now');
	});

	it('moves the catalog clock on by what elapsed here since the answer', () => {
		expect(catalogNow(statuses.as_of, 1_000, 6_000)).toBe(asOf + 5_000);
		// A browser clock that went backwards does not take the catalog's back.
		expect(catalogNow(statuses.as_of, 6_000, 1_000)).toBe(asOf);
	});

	it('writes absolute times in UTC', () => {
		expect(absolute(statuses.as_of)).toBe('2027-01-15 08:00:42 UTC');
		expect(absolute('not a time')).toBe('not a time');
	});
});

describe('text', () => {
	it('writes actors as the CLI does', () => {
		expect(actorText({ kind: 'operator', name: 'ana' })).toBe('operator:ana');
		expect(actorText({ kind: 'holder', name: 'worker-1' })).toBe('holder:worker-1');
		expect(actorText({ kind: 'policy' })).toBe('policy');
	});

	it('writes every event kind of the examples in one line', () => {
		const lines = events.map((e) => eventText(e.kind));
		expect(new Set(events.map((e) => e.kind.type)).size).toBe(15);
		for (const line of lines) {
			expect(line).not.toMatch(/undefined|\[object|\n/);
		}
		expect(lines[21]).toBe('lease taken by force by operator (epoch 4)');
	});

	it('writes cursor values as compact JSON', () => {
		expect(cursorText(null)).toBe('null');
		expect(cursorText({ at: '2027-01-01', id: 3 })).toBe('{"at":"2027-01-01","id":3}');
	});
});

describe('states', () => {
	it('puts a held decision first', () => {
		const [orders, refunds] = statuses.items;
		expect(stateText(pipelineState(orders!, asOf))).toBe('held (1)');
		expect(stateText(pipelineState(refunds!, asOf))).toBe('idle');
	});

	it('tells a live lease from a stale one by the catalog clock', () => {
		const orders = statuses.items[0]!;
		const running = {
			...orders,
			held_decisions: [],
			pipeline: { ...orders.pipeline, paused: null },
			lease: { epoch: 3, holder: 'worker-3', expires_at: '2027-01-15T08:05:42.000Z' }
		};
		expect(stateText(pipelineState(running, asOf))).toBe('running (worker-3)');
		expect(stateText(pipelineState(running, asOf + 301_000))).toBe('lease stale (worker-3)');
		const released = { ...running, lease: { ...running.lease, holder: null } };
		expect(stateText(pipelineState(released, asOf))).toBe('failing (attempt 1)');
	});

	it('says what the plan does next', () => {
		expect(actionText(plan.items[0]!.action, asOf)).toBe('due now (backfill)');
		const wait = {
			action: 'wait' as const,
			until: '2027-01-15T08:30:42.000Z',
			reason: { kind: 'schedule' as const }
		};
		expect(actionText(wait, asOf)).toBe('next in 30m');
		expect(actionText({ action: 'skip', reason: { kind: 'held_decision', decisions: [1] } }, asOf)).toBe(
			'waits for a schema decision'
		);
	});
});
