import { describe, expect, it } from 'vitest';
import { forecast } from './runRequest';
import type { Action, PipelineStatus } from './protocol/types';

function status(change: (s: PipelineStatus) => void = () => {}): PipelineStatus {
	const s: PipelineStatus = {
		pipeline: {
			spec: { id: 'app-log', connector: 'jsonl', cursor_kind: 'monotonic', enabled: true },
			generation: 1,
			paused: null,
			created_at: '2027-01-15T08:00:00.000Z',
			updated_at: '2027-01-15T08:00:00.000Z',
			requested: null
		},
		lease: null,
		last_run: null,
		held_decisions: []
	};
	change(s);
	return s;
}

const wait: Action = { action: 'wait', until: '2027-01-15T09:00:00.000Z', reason: { kind: 'schedule' } };

describe('forecast', () => {
	it('an idle pipeline is dispatched on the next pass', () => {
		const f = forecast(status(), wait, 'manual');
		expect(f.outcome).toBe('next_pass');
		expect(f.text).toContain('The reconciler dispatches it on its next pass');
	});

	it('a running run queues it', () => {
		const action: Action = { action: 'skip', reason: { kind: 'running', run: 'r-1' } };
		const f = forecast(status(), action, 'manual');
		expect(f.outcome).toBe('queued');
		expect(f.text).toMatch(/^Queued after the current run \(r-1\)/);
	});

	it('a reap comes first', () => {
		const f = forecast(status(), { action: 'reap', run: 'r-2' }, 'manual');
		expect(f.outcome).toBe('queued');
		expect(f.text).toContain('reaps run r-2');
	});

	it('a paused pipeline records it but does not start it until resumed', () => {
		const paused = status((s) => {
			s.pipeline.paused = { by: { kind: 'operator', name: 'ana' }, reason: 'maintenance', since: s.pipeline.created_at };
		});
		const f = forecast(paused, { action: 'skip', reason: { kind: 'paused' } }, 'manual');
		expect(f.outcome).toBe('blocked');
		expect(f.text).toContain('will not start until the pipeline is resumed (paused by operator:ana: maintenance)');
	});

	it('held decisions block it until decided, before the pause they caused', () => {
		const held = status((s) => {
			s.held_decisions = [3];
			s.pipeline.paused = { by: { kind: 'policy' }, reason: 'held', since: s.pipeline.created_at };
		});
		const f = forecast(held, { action: 'skip', reason: { kind: 'held_decision', decisions: [3] } }, 'backfill');
		expect(f.outcome).toBe('blocked');
		expect(f.text).toContain('until the held schema decision #3 is decided');
		expect(f.text).toContain('A backfill run');
	});

	it('a disabled pipeline is refused; a pending request makes asking again a no-op', () => {
		expect(forecast(status((s) => (s.pipeline.spec.enabled = false)), undefined, 'manual').outcome).toBe('refused');
		const pending = status((s) => {
			s.pipeline.requested = { trigger: 'backfill', by: { kind: 'operator', name: 'ana' }, at: s.pipeline.created_at };
		});
		expect(forecast(pending, { action: 'dispatch', trigger: 'backfill', attempt: 1 }, 'manual').outcome).toBe('unchanged');
		const manual = status((s) => {
			s.pipeline.requested = { trigger: 'manual', by: { kind: 'operator', name: 'ana' }, at: s.pipeline.created_at };
		});
		const f = forecast(manual, { action: 'dispatch', trigger: 'manual', attempt: 1 }, 'backfill');
		expect(f.outcome).toBe('next_pass');
		expect(f.text).toContain('replaces the pending manual request');
	});

	it('without a plan, a running last run still queues it', () => {
		const running = status((s) => {
			s.last_run = {
				id: 'r-3', pipeline: 'app-log', epoch: 1, holder: 'w', trigger: 'schedule', attempt: 1,
				status: 'running', started_at: s.pipeline.created_at, finished_at: null, stats: {},
				error: null, cursors_at_start: {}, cursors_at_end: {}
			};
		});
		expect(forecast(running, undefined, 'manual').outcome).toBe('queued');
	});
});
