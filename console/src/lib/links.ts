// The console's addresses, in one place: every page links through these, so a route can move
// without a dead link anywhere. Every segment is encoded (ids are the catalog's, not the URL's).

const seg = encodeURIComponent;

function project(p: string): string {
	return `/projects/${seg(p)}`;
}

/** The pipelines overview; `state` filters it (`?state=held`). */
export function pipelines(p: string, state?: string): string {
	return `${project(p)}/pipelines${state ? `?state=${seg(state)}` : ''}`;
}

/** One pipeline: spec, actions, runs, timeline, cursors. */
export function pipeline(p: string, id: string): string {
	return `${project(p)}/pipelines/${seg(id)}`;
}

/** One cursor of a pipeline, with its history and the guarded rollback/reset. */
export function cursor(p: string, id: string, stream: string): string {
	return `${pipeline(p, id)}/cursors/${seg(stream)}`;
}

/** Every run, filtered by pipeline and status when given. */
export function runs(p: string, filter: { pipeline?: string; status?: string } = {}): string {
	const query = new URLSearchParams();
	if (filter.pipeline) query.set('pipeline', filter.pipeline);
	if (filter.status) query.set('status', filter.status);
	const text = query.toString();
	return `${project(p)}/runs${text ? `?${text}` : ''}`;
}

/** One run. */
export function run(p: string, id: string): string {
	return `${project(p)}/runs/${seg(id)}`;
}

/** The held-decisions inbox (`all` lists every decision, oldest first as the catalog pages them). */
export function decisions(p: string, all = false): string {
	return `${project(p)}/decisions${all ? '?all=1' : ''}`;
}

/** One schema decision: its diff, class and verdict. */
export function decision(p: string, id: number): string {
	return `${project(p)}/decisions/${id}`;
}

/** The live event log. */
export function events(p: string): string {
	return `${project(p)}/events`;
}
