// The typed client of the HTTP protocol: the only way the console talks to a catalog server
// (`hakiri serve` or the Worker). Every call carries `Authorization: Bearer`; every answer is a
// `Reply`, whose error is thrown as an `ApiError` carrying the catalog's error as is.

import type {
	CatalogError,
	Plan,
	Reply,
	Request,
	Response,
	ResponseOf,
	Role,
	WhoAmI
} from './protocol/types';

/** The value a response of type `T` carries (`undefined` for `unit`). */
export type ValueOf<T extends Response['type']> =
	Extract<Response, { type: T }> extends { value: infer V } ? V : undefined;

/** What a request of op `O` is answered with. */
export type AnswerOf<O extends Request['op']> = ValueOf<ResponseOf[O]>;

/** A refused or failed call: the catalog's error, and the HTTP status (0: no answer at all). */
export class ApiError extends Error {
	readonly status: number;
	readonly error: CatalogError;

	constructor(status: number, error: CatalogError) {
		super(describeError(error));
		this.name = 'ApiError';
		this.status = status;
		this.error = error;
	}

	/** Whether the token is missing, wrong or not allowed: asking again will not help. */
	get isAuth(): boolean {
		return this.error.code === 'unauthenticated' || this.error.code === 'permission_denied';
	}
}

/** One line saying what went wrong, for a banner. */
export function describeError(error: CatalogError): string {
	switch (error.code) {
		case 'not_found':
			return `${entityText(error.detail)} not found`;
		case 'already_exists':
			return `${entityText(error.detail)} already exists`;
		case 'conflict':
			return `${entityText(error.detail.entity)} changed (expected ${error.detail.expected}, found ${error.detail.actual}): reload and try again`;
		case 'fenced':
			return `the lease of ${error.detail.pipeline} (epoch ${error.detail.epoch}) is no longer valid`;
		case 'leased':
			return `${error.detail.pipeline} is leased by ${error.detail.holder} until ${error.detail.expires_at}`;
		case 'cursor_regression':
			return `cursor ${error.detail.pipeline}/${error.detail.stream} would go back`;
		default:
			return `${error.code.replaceAll('_', ' ')}: ${error.detail}`;
	}
}

function entityText(entity: import('./protocol/types').Entity): string {
	switch (entity.entity) {
		case 'pipeline':
			return `pipeline ${entity.pipeline}`;
		case 'run':
			return `run ${entity.run}`;
		case 'cursor':
			return `cursor ${entity.pipeline}/${entity.stream}`;
		case 'cursor_version':
			return `version ${entity.version} of cursor ${entity.pipeline}/${entity.stream}`;
		case 'schema':
			return entity.version === null
				? `schema of ${entity.pipeline}/${entity.stream}`
				: `schema version ${entity.version} of ${entity.pipeline}/${entity.stream}`;
		case 'decision':
			return `decision ${entity.decision}`;
	}
}

/** The response type each op is answered with, at run time (the type `ResponseOf` at compile time). */
const RESPONSE_OF: ResponseOf = {
	put_pipeline: 'pipeline',
	get_pipeline: 'pipeline',
	list_pipelines: 'pipelines',
	set_paused: 'pipeline',
	delete_pipeline: 'unit',
	request_run: 'pipeline',
	acquire: 'lease',
	force_acquire: 'lease',
	renew: 'lease',
	release: 'unit',
	begin_run: 'run',
	advance: 'cursor',
	finish_run: 'run',
	get_run: 'run',
	list_runs: 'runs',
	get_cursor: 'maybe_cursor',
	list_cursors: 'cursors',
	cursor_history: 'cursor_history',
	reset_cursor: 'cursor',
	observe_schema: 'observation',
	get_schema: 'schema_version',
	list_schema_versions: 'schema_versions',
	list_decisions: 'decisions',
	decide: 'decision',
	pipeline_statuses: 'statuses',
	events: 'events',
	pipeline_events: 'events',
	pipeline_events_before: 'events',
	list_streams: 'streams',
	archive_head: 'archive_head',
	import: 'import_progress'
};

export interface ClientOptions {
	/** The bearer token. */
	token: string;
	/** The server's origin; empty (the default) for the console's own. */
	base?: string;
	/** `fetch`, for tests. */
	fetch?: typeof fetch;
}

export class Client {
	readonly token: string;
	readonly #base: string;
	readonly #fetch: typeof fetch;

	constructor(options: ClientOptions) {
		this.token = options.token;
		this.#base = (options.base ?? '').replace(/\/+$/, '');
		this.#fetch = options.fetch ?? ((input, init) => fetch(input, init));
	}

	/** The URL of `path` (which starts with `/v1/`) on the server. */
	url(path: string): string {
		return `${this.#base}${path}`;
	}

	/** The headers of every call: the token, and no cookies or referrer to leak. */
	headers(extra: Record<string, string> = {}): Record<string, string> {
		return { authorization: `Bearer ${this.token}`, ...extra };
	}

	/** `GET /v1/whoami`: the token's grants. */
	whoami(): Promise<WhoAmI> {
		return this.#get<WhoAmI>('/v1/whoami');
	}

	/** `GET /v1/projects/{project}/plan`: what the reconciler would do now. */
	plan(project: string): Promise<Plan> {
		return this.#get<Plan>(`/v1/projects/${encodeURIComponent(project)}/plan`);
	}

	/** One protocol request, answered with the value its op's response carries. */
	async call<R extends Request>(project: string, request: R): Promise<AnswerOf<R['op']>> {
		const reply = await this.#send<Reply>(`/v1/projects/${encodeURIComponent(project)}/rpc`, {
			method: 'POST',
			headers: this.headers({ 'content-type': 'application/json' }),
			body: JSON.stringify(request)
		});
		if ('err' in reply) {
			throw new ApiError(200, reply.err);
		}
		const expected = RESPONSE_OF[request.op];
		if (reply.ok.type !== expected) {
			throw new ApiError(200, {
				code: 'backend',
				detail: `the server answered ${request.op} with ${reply.ok.type}, not ${expected}`
			});
		}
		return ('value' in reply.ok ? reply.ok.value : undefined) as AnswerOf<R['op']>;
	}

	async #get<T>(path: string): Promise<T> {
		return this.#send<T>(path, { method: 'GET', headers: this.headers() });
	}

	/** Sends a call and decodes its JSON answer; an error status's body is the catalog's error. */
	async #send<T>(path: string, init: RequestInit): Promise<T> {
		let response: globalThis.Response;
		try {
			response = await this.#fetch(this.url(path), {
				...init,
				credentials: 'omit',
				referrerPolicy: 'no-referrer',
				cache: 'no-store'
			});
		} catch (e) {
			throw new ApiError(0, { code: 'unavailable', detail: `the server did not answer: ${e}` });
		}
		const text = await response.text();
		let body: unknown;
		try {
			body = JSON.parse(text);
		} catch {
			throw new ApiError(response.status, {
				code: response.ok ? 'backend' : 'unavailable',
				detail: `HTTP ${response.status}: ${text.slice(0, 200) || response.statusText}`
			});
		}
		if (!response.ok) {
			const err = (body as { err?: CatalogError }).err;
			throw new ApiError(
				response.status,
				err ?? { code: 'backend', detail: `HTTP ${response.status}` }
			);
		}
		return body as T;
	}
}

const RANK: Record<Role, number> = { read: 0, write: 1, admin: 2 };

/**
 * The role the token acts with on `project`: the strongest its grants give there, and no more
 * than `read` on a read-only server (which refuses every write); null if no grant covers it.
 */
export function roleOn(whoami: WhoAmI, project: string): Role | null {
	let best: Role | null = null;
	for (const grant of whoami.grants) {
		const covers = grant.projects === '*' || grant.projects.includes(project);
		if (covers && (best === null || RANK[grant.role] > RANK[best])) {
			best = grant.role;
		}
	}
	return best !== null && whoami.server.read_only ? 'read' : best;
}

/** Whether `role` may do what needs `needed`: admin ⊃ write ⊃ read. */
export function allows(role: Role | null, needed: Role): boolean {
	return role !== null && RANK[role] >= RANK[needed];
}
