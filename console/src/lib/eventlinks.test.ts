import { describe, expect, it } from 'vitest';
import { EVENT_KINDS, eventTarget, streamPath } from './eventlinks';
import { events } from './protocol/examples';
import type { Event, EventKind } from './protocol/types';

const at = (kind: EventKind, pipeline = 'shop'): Event => ({
	seq: 1,
	at: '2027-01-15T08:00:00.000Z',
	actor: { kind: 'system' },
	pipeline,
	kind
});

describe('event links', () => {
	it('lead to the run, cursor or decision the event names', () => {
		expect(eventTarget('q', at({ type: 'run_begun', run: 'r-1', epoch: 2 }))).toEqual({
			href: '/projects/q/runs/r-1',
			label: 'run r-1'
		});
		expect(eventTarget('q', at({ type: 'run_finished', run: 'r-1', status: 'failed' }))?.href).toBe('/projects/q/runs/r-1');
		expect(eventTarget('q', at({ type: 'cursor_advanced', stream: 'a/b', version: 3 }, 'app log'))?.href).toBe(
			'/projects/q/pipelines/app%20log/cursors/a%2Fb'
		);
		expect(eventTarget('q', at({ type: 'cursor_reset', stream: 's', version: 1, reason: 'x' }))?.href).toBe(
			'/projects/q/pipelines/shop/cursors/s'
		);
		expect(eventTarget('q', at({ type: 'decision_recorded', decision: 2, stream: 's', verdict: 'held' }))).toEqual({
			href: '/projects/q/decisions/2',
			label: 'decision 2'
		});
		expect(eventTarget('q', at({ type: 'decision_resolved', decision: 2, verdict: 'accepted' }))?.href).toBe(
			'/projects/q/decisions/2'
		);
		expect(eventTarget('q', at({ type: 'pipeline_resumed' }))).toBeNull();
	});

	it('list every kind the protocol examples carry', () => {
		for (const event of events) {
			expect(EVENT_KINDS).toContain(event.kind.type);
		}
		expect(new Set(EVENT_KINDS).size).toBe(15);
	});
});

describe('the stream address', () => {
	it('narrows to one pipeline on the server and starts after an event or with a tail', () => {
		expect(streamPath('q', { tail: 100 })).toBe('/v1/projects/q/events?tail=100');
		expect(streamPath('my q', { after: 41 }, 'a&b')).toBe('/v1/projects/my%20q/events?pipeline=a%26b&after=41');
		expect(streamPath('q', { after: 0 }, '')).toBe('/v1/projects/q/events?after=0');
	});
});
