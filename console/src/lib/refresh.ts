// A live page reads itself again every few seconds and moves its relative times every second.

/** Calls `load` every `ms` and `tick` every second until the returned stop: an `$effect` returns it. */
export function refreshEvery(ms: number, load: () => void, tick: () => void): () => void {
	const reload = setInterval(load, ms);
	const second = setInterval(tick, 1_000);
	return () => {
		clearInterval(reload);
		clearInterval(second);
	};
}
