// A pipeline spec's settings in words, for the overview and the pipeline page.

import type { PipelineSpec, Schedule } from './protocol/types';

/** `manual`, `every 5m` or `cron 0 * * * *` (no schedule is manual). */
export function scheduleText(schedule: Schedule | undefined): string {
	const s = schedule ?? 'manual';
	if (s === 'manual') {
		return 'manual';
	}
	return 'every' in s ? `every ${s.every}` : `cron ${s.cron}`;
}

/** The retry policy's settings that the spec sets, or `defaults`. */
export function retryText(spec: PipelineSpec): string {
	const r = spec.retry ?? {};
	const parts = [
		r.max_attempts !== undefined ? `${r.max_attempts} attempts` : null,
		r.initial_backoff ? `backoff ${r.initial_backoff}` : null,
		r.multiplier !== undefined ? `×${r.multiplier}` : null,
		r.max_backoff ? `up to ${r.max_backoff}` : null
	].filter((p) => p !== null);
	return parts.length > 0 ? parts.join(', ') : 'defaults';
}

/** What the schema policy does with each class of change (`default` where the spec is silent). */
export function policyText(spec: PipelineSpec): string {
	const p = spec.schema_policy ?? {};
	return `additive ${p.additive ?? 'default'} · widening ${p.widening ?? 'default'} · breaking ${p.breaking ?? 'default'}`;
}
