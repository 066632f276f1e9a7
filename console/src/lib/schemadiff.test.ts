import { describe, expect, it } from 'vitest';
import { classOf, diffRows, diffSummary, rowCells, rowText, widensTo } from './schemadiff';
import { classified, replies } from './protocol/examples';
import type { ColumnType, Decision, SchemaDiff } from './protocol/types';

const empty: SchemaDiff = { added: [], removed: [], retyped: [], nullability: [], key: null };
const TYPES: ColumnType[] = [
	'boolean',
	'integer',
	'decimal',
	'number',
	'string',
	'date',
	'time',
	'timestamp',
	'binary',
	'json'
];

describe('widening', () => {
	it('follows core: to JSON always, to string unless from JSON or binary, integer up, date up', () => {
		const widening = TYPES.flatMap((from) =>
			TYPES.filter((to) => widensTo(from, to)).map((to) => `${from}→${to}`)
		);
		expect(widening.sort()).toEqual(
			[
				...TYPES.filter((t) => t !== 'json').map((t) => `${t}→json`),
				...TYPES.filter((t) => !['json', 'binary', 'string'].includes(t)).map((t) => `${t}→string`),
				'integer→decimal',
				'integer→number',
				'date→timestamp'
			].sort()
		);
	});

	it('never widens a type to itself, and never narrows', () => {
		expect(TYPES.some((t) => widensTo(t, t))).toBe(false);
		expect(widensTo('number', 'integer')).toBe(false);
		expect(widensTo('string', 'number')).toBe(false);
		expect(widensTo('timestamp', 'date')).toBe(false);
	});
});

describe('diff rows', () => {
	it('class every kind of change as hakiri-core does (its classes, generated from Rust)', () => {
		expect(classified.length).toBe(96);
		for (const { diff, class: expected } of classified) {
			const rows = diffRows(diff);
			expect(rows.length, JSON.stringify(diff)).toBe(1);
			expect(rows[0]!.class, rowText(rows[0]!)).toBe(expected);
			expect(classOf(rows)).toBe(expected);
		}
	});

	it('classify each change with the rules of SchemaDiff::classify', () => {
		const rows = diffRows({
			added: [
				{ name: 'note', type: 'string', nullable: true },
				{ name: 'tax', type: 'decimal', nullable: false }
			],
			removed: [{ name: 'legacy', type: 'json', nullable: true }],
			retyped: [
				{ column: 'qty', from: 'integer', to: 'number' },
				{ column: 'amount', from: 'string', to: 'number' }
			],
			nullability: [
				{ column: 'email', from: false, to: true },
				{ column: 'phone', from: true, to: false }
			],
			key: { from: ['id'], to: ['id', 'region'] }
		});
		expect(rows.map((r) => [rowText(r), r.class])).toEqual([
			['note added (string, nullable)', 'additive'],
			['tax added (decimal, required)', 'breaking'],
			['legacy removed (was json, nullable)', 'breaking'],
			['qty: integer → number', 'widening'],
			['amount: string → number', 'breaking'],
			['email: required → nullable', 'widening'],
			['phone: nullable → required', 'breaking'],
			['key (id) → (id, region)', 'breaking']
		]);
		expect(rows.map(rowCells)).toEqual([
			{ column: 'note', from: '—', to: 'string, nullable' },
			{ column: 'tax', from: '—', to: 'decimal, required' },
			{ column: 'legacy', from: 'json, nullable', to: '—' },
			{ column: 'qty', from: 'integer', to: 'number' },
			{ column: 'amount', from: 'string', to: 'number' },
			{ column: 'email', from: 'required', to: 'nullable' },
			{ column: 'phone', from: 'nullable', to: 'required' },
			{ column: 'key', from: '(id)', to: '(id, region)' }
		]);
	});

	it('give the most severe class as the whole diff class, none for an empty diff', () => {
		expect(classOf(diffRows(empty))).toBeNull();
		const additive = { ...empty, added: [{ name: 'n', type: 'string' as const, nullable: true }] };
		expect(classOf(diffRows(additive))).toBe('additive');
		const widening = { ...additive, retyped: [{ column: 'q', from: 'date' as const, to: 'timestamp' as const }] };
		expect(classOf(diffRows(widening))).toBe('widening');
		expect(classOf(diffRows({ ...widening, key: { from: [], to: ['id'] } }))).toBe('breaking');
		expect(rowText(diffRows({ ...empty, key: { from: [], to: ['id'] } })[0]!)).toBe('key (none) → (id)');
	});

	it('agree with the class the server gave the protocol example', () => {
		const reply = replies.find((r) => 'ok' in r && r.ok.type === 'decisions')!;
		const decision = ('ok' in reply && 'value' in reply.ok ? reply.ok.value : null) as {
			items: Decision[];
		};
		const held = decision.items[0]!;
		expect(classOf(diffRows(held.diff))).toBe(held.class);
	});
});

describe('the one-line summary', () => {
	it('shows the first changes and counts the rest', () => {
		const diff: SchemaDiff = {
			...empty,
			added: [{ name: 'a', type: 'string', nullable: true }],
			retyped: [
				{ column: 'b', from: 'string', to: 'number' },
				{ column: 'c', from: 'integer', to: 'string' }
			]
		};
		expect(diffSummary(diff)).toBe('a added (string, nullable); b: string → number; 1 more change');
		expect(diffSummary(diff, 3)).toBe('a added (string, nullable); b: string → number; c: integer → string');
		expect(diffSummary(empty)).toBe('no change');
	});
});
