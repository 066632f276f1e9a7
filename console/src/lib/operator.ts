// What every operator action carries besides its target: who it is by, and why.

import { roleOn } from './api';
import type { Actor, WhoAmI } from './protocol/types';

/** The largest reason the catalog takes, in UTF-8 bytes. */
export const MAX_REASON_BYTES = 4096;

/** The length of `text` in UTF-8 bytes, as the catalog counts it. */
export function utf8Length(text: string): number {
	return new TextEncoder().encode(text).length;
}

/**
 * Who the console says an action on `project` is by: the name of the grant that gives the
 * token its role there (the server stamps the real grant anyway), else `console`.
 */
export function operatorOn(
	whoami: WhoAmI | null,
	project: string
): Extract<Actor, { kind: 'operator' }> {
	// The grants' own role: a read-only server lowers what the token may do, not who it is.
	const grants = whoami && { ...whoami, server: { ...whoami.server, read_only: false } };
	const role = grants ? roleOn(grants, project) : null;
	const grant = whoami?.grants.find(
		(g) => g.role === role && g.name && (g.projects === '*' || g.projects.includes(project))
	);
	return { kind: 'operator', name: grant?.name ?? 'console' };
}

/** Why `reason` cannot be sent, or null if it can (non-blank, at most 4096 bytes). */
export function reasonProblem(reason: string): string | null {
	const text = reason.trim();
	if (text === '') {
		return 'say why: the reason is recorded with the change';
	}
	const bytes = utf8Length(text);
	if (bytes > MAX_REASON_BYTES) {
		return `the reason is ${bytes} bytes; the catalog keeps at most ${MAX_REASON_BYTES}`;
	}
	return null;
}
