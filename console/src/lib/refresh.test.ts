import { afterEach, describe, expect, it, vi } from 'vitest';
import { refreshEvery } from './refresh';

afterEach(() => {
	vi.useRealTimers();
});

describe('a live page', () => {
	it('reloads every period and ticks every second, until stopped', () => {
		vi.useFakeTimers();
		const load = vi.fn();
		const tick = vi.fn();
		const stop = refreshEvery(5_000, load, tick);
		vi.advanceTimersByTime(10_500);
		expect(load).toHaveBeenCalledTimes(2);
		expect(tick).toHaveBeenCalledTimes(10);
		stop();
		vi.advanceTimersByTime(60_000);
		expect(load).toHaveBeenCalledTimes(2);
		expect(tick).toHaveBeenCalledTimes(10);
	});
});
