// What a "run now" or "backfill" request will do, said before it is sent: derived from the
// reconciler's current plan for the pipeline and the pipeline's state, in the planner's own order
// (hakiri-core's `plan::decide`: a running run, disabled, held, paused, then a pending request
// comes before retries and the schedule). The catalog and the planner decide; this only reads
// their answer back to the operator.

import { absolute, actorText } from './format';
import type { Action, PipelineStatus, Trigger } from './protocol/types';

/** A trigger an operator may request. */
export type RequestedTrigger = Extract<Trigger, 'manual' | 'backfill'>;

/** What sending `request_run` would lead to. */
export interface Forecast {
	/**
	 * - `refused`: the catalog refuses the request (a disabled pipeline);
	 * - `unchanged`: an equal or stronger request is already pending; asking again changes nothing;
	 * - `blocked`: recorded, but no run starts until an operator acts (resume, decide);
	 * - `queued`: recorded, and dispatched once the current run ends;
	 * - `next_pass`: recorded, and dispatched on the reconciler's next pass.
	 */
	outcome: 'refused' | 'unchanged' | 'blocked' | 'queued' | 'next_pass';
	text: string;
}

const BACKFILL_NOTE =
	' A backfill run is recorded as such and starts from the cursors as they stand: roll a cursor back first for it to read older data again.';

/**
 * What requesting a `trigger` run of the pipeline in `status` will do, given the plan's `action`
 * for it (undefined if the plan has not been read).
 */
export function forecast(
	status: PipelineStatus,
	action: Action | undefined,
	trigger: RequestedTrigger
): Forecast {
	const pipeline = status.pipeline;
	const note = trigger === 'backfill' ? BACKFILL_NOTE : '';
	if (pipeline.spec.enabled === false) {
		return {
			outcome: 'refused',
			text: `The catalog refuses it: ${pipeline.spec.id} is disabled; enable it in its spec first.`
		};
	}
	const pending = pipeline.requested;
	if (pending && (pending.trigger === trigger || pending.trigger === 'backfill')) {
		return {
			outcome: 'unchanged',
			text: `A ${pending.trigger} run is already requested (by ${actorText(pending.by)} at ${absolute(pending.at)}): asking again changes nothing.`
		};
	}
	const replaces =
		pending && trigger === 'backfill' ? ' It replaces the pending manual request.' : '';

	// The plan's action is the reconciler's own verdict; the state fills in when it is missing.
	const running =
		action?.action === 'skip' && action.reason.kind === 'running'
			? action.reason.run
			: status.last_run?.status === 'running' && action === undefined
				? status.last_run.id
				: null;
	if (running !== null) {
		return {
			outcome: 'queued',
			text: `Queued after the current run (${running}): the reconciler dispatches it once that run ends.${replaces}${note}`
		};
	}
	if (action?.action === 'reap') {
		return {
			outcome: 'queued',
			text: `The reconciler first reaps run ${action.run} (its holder's lease expired), then dispatches this one.${replaces}${note}`
		};
	}
	const held =
		action?.action === 'skip' && action.reason.kind === 'held_decision'
			? action.reason.decisions
			: status.held_decisions;
	if (held.length > 0) {
		return {
			outcome: 'blocked',
			text: `The run is requested but will not start until the held schema decision${held.length === 1 ? '' : 's'} ${held.map((d) => `#${d}`).join(', ')} ${held.length === 1 ? 'is' : 'are'} decided.${replaces}${note}`
		};
	}
	if (pipeline.paused || (action?.action === 'skip' && action.reason.kind === 'paused')) {
		const why = pipeline.paused ? ` (paused by ${actorText(pipeline.paused.by)}: ${pipeline.paused.reason})` : '';
		return {
			outcome: 'blocked',
			text: `The run is requested but will not start until the pipeline is resumed${why}.${replaces}${note}`
		};
	}
	return {
		outcome: 'next_pass',
		text: `The reconciler dispatches it on its next pass, before retries and the schedule.${replaces}${note}`
	};
}
