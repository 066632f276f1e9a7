import { describe, expect, it } from 'vitest';
import { policyText, retryText, scheduleText } from './spec';
import type { PipelineSpec } from './protocol/types';

const spec: PipelineSpec = { id: 'shop', connector: 'jsonl', cursor_kind: 'monotonic' };

describe('a spec in words', () => {
	it('says the schedule, manual when there is none', () => {
		expect(scheduleText(undefined)).toBe('manual');
		expect(scheduleText('manual')).toBe('manual');
		expect(scheduleText({ every: '5m' })).toBe('every 5m');
		expect(scheduleText({ cron: '0 * * * *' })).toBe('cron 0 * * * *');
	});

	it('says only the retry settings the spec sets', () => {
		expect(retryText(spec)).toBe('defaults');
		expect(retryText({ ...spec, retry: { max_attempts: 3, multiplier: 2 } })).toBe('3 attempts, ×2');
		expect(
			retryText({ ...spec, retry: { max_attempts: 5, initial_backoff: '1s', multiplier: 1.5, max_backoff: '1m' } })
		).toBe('5 attempts, backoff 1s, ×1.5, up to 1m');
	});

	it('says the schema policy of every class of change', () => {
		expect(policyText(spec)).toBe('additive default · widening default · breaking default');
		expect(policyText({ ...spec, schema_policy: { breaking: 'hold' } })).toBe(
			'additive default · widening default · breaking hold'
		);
	});
});
