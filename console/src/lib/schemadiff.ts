// A schema change as the decision page shows it: one row per change, each with its own class,
// by the rules of hakiri-core's `SchemaDiff::classify` (hakiri-core/src/schema.rs). The decision's
// overall class is the server's; these per-row classes say which change made it so. They cannot
// drift from core's: the unit tests check them against every kind of change as core classes it
// (`classified` in protocol/examples.ts, generated from Rust; ADR 0027).

import type { ChangeClass, ColumnType, SchemaDiff } from './protocol/types';

/** Severity order, as core's `ChangeClass` derives `Ord`. */
const RANK: Record<ChangeClass, number> = { additive: 0, widening: 1, breaking: 2 };

/**
 * Whether every value of `from` is also a value of `to` (core's `ColumnType::widens_to`):
 * anything to JSON; anything but JSON and binary to string; integer to decimal or number; date to
 * timestamp. A type never widens to itself.
 */
export function widensTo(from: ColumnType, to: ColumnType): boolean {
	if (from === to) {
		return false;
	}
	if (to === 'json') {
		return true;
	}
	if (from === 'json' || from === 'binary') {
		return false;
	}
	if (to === 'string') {
		return true;
	}
	if (from === 'integer') {
		return to === 'decimal' || to === 'number';
	}
	return from === 'date' && to === 'timestamp';
}

/** One change of a diff. */
export type DiffRow =
	| { change: 'added'; column: string; type: ColumnType; nullable: boolean; class: ChangeClass }
	| { change: 'removed'; column: string; type: ColumnType; nullable: boolean; class: ChangeClass }
	| { change: 'retyped'; column: string; from: ColumnType; to: ColumnType; class: ChangeClass }
	| { change: 'nullability'; column: string; from: boolean; to: boolean; class: ChangeClass }
	| { change: 'key'; from: string[]; to: string[]; class: ChangeClass };

/** Every change of `diff`, in core's order (added, removed, retyped, nullability, key). */
export function diffRows(diff: SchemaDiff): DiffRow[] {
	return [
		...diff.added.map((c): DiffRow => ({
			change: 'added',
			column: c.name,
			type: c.type,
			nullable: c.nullable,
			// Rows already loaded have no value for a required column.
			class: c.nullable ? 'additive' : 'breaking'
		})),
		...diff.removed.map((c): DiffRow => ({
			change: 'removed',
			column: c.name,
			type: c.type,
			nullable: c.nullable,
			class: 'breaking'
		})),
		...diff.retyped.map((r): DiffRow => ({
			change: 'retyped',
			column: r.column,
			from: r.from,
			to: r.to,
			class: widensTo(r.from, r.to) ? 'widening' : 'breaking'
		})),
		...diff.nullability.map((n): DiffRow => ({
			change: 'nullability',
			column: n.column,
			from: n.from,
			to: n.to,
			class: n.to ? 'widening' : 'breaking'
		})),
		...(diff.key ? [{ change: 'key', from: diff.key.from, to: diff.key.to, class: 'breaking' } as DiffRow] : [])
	];
}

/** The most severe class of `rows`; null when nothing changed. */
export function classOf(rows: DiffRow[]): ChangeClass | null {
	return rows.reduce<ChangeClass | null>(
		(worst, row) => (worst === null || RANK[row.class] > RANK[worst] ? row.class : worst),
		null
	);
}

function nullText(nullable: boolean): string {
	return nullable ? 'nullable' : 'required';
}

function keyText(key: string[]): string {
	return key.length === 0 ? '(none)' : `(${key.join(', ')})`;
}

/** What one row changes, in words: `amount: string → number`. */
export function rowText(row: DiffRow): string {
	switch (row.change) {
		case 'added':
			return `${row.column} added (${row.type}, ${nullText(row.nullable)})`;
		case 'removed':
			return `${row.column} removed (was ${row.type}, ${nullText(row.nullable)})`;
		case 'retyped':
			return `${row.column}: ${row.from} → ${row.to}`;
		case 'nullability':
			return `${row.column}: ${nullText(row.from)} → ${nullText(row.to)}`;
		case 'key':
			return `key ${keyText(row.from)} → ${keyText(row.to)}`;
	}
}

/** The whole diff in one line for a list: the first changes, then how many more. */
export function diffSummary(diff: SchemaDiff, most = 2): string {
	const rows = diffRows(diff);
	if (rows.length === 0) {
		return 'no change';
	}
	const shown = rows.slice(0, most).map(rowText).join('; ');
	const rest = rows.length - most;
	return rest > 0 ? `${shown}; ${rest} more change${rest === 1 ? '' : 's'}` : shown;
}

/** A row as the diff table's cells: the column (or `key`), what it was, what it becomes. */
export function rowCells(row: DiffRow): { column: string; from: string; to: string } {
	switch (row.change) {
		case 'added':
			return { column: row.column, from: '—', to: `${row.type}, ${nullText(row.nullable)}` };
		case 'removed':
			return { column: row.column, from: `${row.type}, ${nullText(row.nullable)}`, to: '—' };
		case 'retyped':
			return { column: row.column, from: row.from, to: row.to };
		case 'nullability':
			return { column: row.column, from: nullText(row.from), to: nullText(row.to) };
		case 'key':
			return { column: 'key', from: keyText(row.from), to: keyText(row.to) };
	}
}
