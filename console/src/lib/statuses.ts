// Reading `pipeline_statuses`: every page of them (the overview), one pipeline's (its page), or
// only the catalog's clock (`as_of`, for pages that show times but no status).

import type { Client } from './api';
import type { PipelineId, PipelineStatus, StatusPage, Timestamp } from './protocol/types';

/** Reads the page of statuses after `after`, at most `limit` of them. */
export type ReadStatuses = (after: PipelineId | null, limit: number) => Promise<StatusPage>;

/** The statuses of `project` read through `client`. */
export function statusesOf(client: Client, project: string): ReadStatuses {
	return (after, limit) => client.call(project, { op: 'pipeline_statuses', after, limit });
}

const PAGE = 200;

/** Every pipeline's status, and the catalog's clock when the first page was read. */
export async function allStatuses(read: ReadStatuses): Promise<{ items: PipelineStatus[]; asOf: Timestamp }> {
	const items: PipelineStatus[] = [];
	let after: PipelineId | null = null;
	let asOf: Timestamp | null = null;
	do {
		const page = await read(after, PAGE);
		items.push(...page.items);
		asOf ??= page.as_of;
		after = page.next;
	} while (after !== null);
	return { items, asOf: asOf! };
}

/**
 * Pipeline `id`'s status (null: there is no such pipeline) and the catalog's clock. Statuses come
 * in pipeline order, so the pages stop at its id.
 */
export async function statusOf(
	read: ReadStatuses,
	id: PipelineId
): Promise<{ status: PipelineStatus | null; asOf: Timestamp }> {
	let after: PipelineId | null = null;
	for (;;) {
		const page = await read(after, PAGE);
		const found = page.items.find((s) => s.pipeline.spec.id === id);
		const passed = page.items.some((s) => s.pipeline.spec.id > id);
		if (found || passed || page.next === null) {
			return { status: found ?? null, asOf: page.as_of };
		}
		after = page.next;
	}
}

/** The catalog's clock now: the cheapest answer that carries it. */
export async function catalogClock(read: ReadStatuses): Promise<Timestamp> {
	return (await read(null, 1)).as_of;
}
