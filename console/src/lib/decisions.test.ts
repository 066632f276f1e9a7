import { describe, expect, it } from 'vitest';
import {
	decideRequest,
	heldText,
	findQuery,
	inboxQuery,
	parseDecisionId,
	pick
} from './decisions';
import type { Decision } from './protocol/types';

const decision = (id: number) => ({ id }) as Decision;

describe('finding one decision', () => {
	it('reads the page starting just before it (after is exclusive)', () => {
		expect(findQuery(7)).toEqual({ pipeline: null, held_only: false, after: 6, limit: 1 });
		expect(findQuery(1)).toEqual({ pipeline: null, held_only: false, after: null, limit: 1 });
	});

	it('takes the decision only when the page starts with it', () => {
		expect(pick({ items: [decision(7)], next: 7 }, 7)?.id).toBe(7);
		expect(pick({ items: [decision(8)], next: 8 }, 7)).toBeNull();
		expect(pick({ items: [], next: null }, 7)).toBeNull();
	});

	it('accepts only positive integer ids from the URL', () => {
		expect(parseDecisionId('12')).toBe(12);
		for (const bad of [undefined, '', '0', '-1', '1.5', '01', 'x', '1e3', '99999999999999999']) {
			expect(parseDecisionId(bad)).toBeNull();
		}
	});
});

describe('the inbox', () => {
	it('asks for held decisions, or every decision with all', () => {
		expect(inboxQuery(false, null, 50)).toEqual({ pipeline: null, held_only: true, after: null, limit: 50 });
		expect(inboxQuery(true, 4, 50)).toEqual({ pipeline: null, held_only: false, after: 4, limit: 50 });
	});
});

describe('deciding', () => {
	it('sends the resolution, the operator and the trimmed reason', () => {
		expect(decideRequest(2, 'accept', { kind: 'operator', name: 'alice' }, '  amounts are numbers now \n')).toEqual({
			op: 'decide',
			decision: 2,
			decide: {
				resolution: 'accept',
				by: { kind: 'operator', name: 'alice' },
				reason: 'amounts are numbers now'
			}
		});
	});
});

describe('the nav count', () => {
	it('is empty with nothing held, and says when there are more than a page', () => {
		expect(heldText({ items: [], next: null })).toBe('');
		expect(heldText({ items: [decision(1), decision(2)], next: null })).toBe('2');
		expect(heldText({ items: [decision(1)], next: 1 })).toBe('1+');
	});
});
