import { describe, expect, it } from 'vitest';
import { operatorOn, reasonProblem } from './operator';
import { whoami } from './protocol/examples';

describe('operatorOn', () => {
	const server = { backend: 'sqlite' as const, read_only: false };

	it('names the grant that gives the strongest role on the project', () => {
		const two = {
			grants: [
				{ name: 'viewer', role: 'read' as const, projects: ['quickstart'] },
				{ name: 'alice', role: 'admin' as const, projects: '*' as const }
			],
			server
		};
		expect(operatorOn(two, 'quickstart')).toEqual({ kind: 'operator', name: 'alice' });
		expect(operatorOn(whoami, 'anything')).toEqual({ kind: 'operator', name: 'ana' });
		// On a read-only server the grant still names who is looking.
		expect(operatorOn({ ...two, server: { ...server, read_only: true } }, 'quickstart').name).toBe('alice');
	});

	it('is `console` without a named grant', () => {
		expect(operatorOn(null, 'p').name).toBe('console');
		expect(operatorOn({ grants: [{ name: null, role: 'admin', projects: '*' }], server }, 'p').name).toBe(
			'console'
		);
		expect(operatorOn({ grants: [{ name: 'x', role: 'admin', projects: ['a'] }], server }, 'b').name).toBe(
			'console'
		);
	});
});

describe('reasonProblem', () => {
	it('wants a non-blank reason of at most 4096 bytes', () => {
		expect(reasonProblem('')).toMatch(/say why/);
		expect(reasonProblem('   ')).toMatch(/say why/);
		expect(reasonProblem('why')).toBeNull();
		expect(reasonProblem('é'.repeat(2049))).toMatch(/4098 bytes/);
		expect(reasonProblem('é'.repeat(2048))).toBeNull();
	});
});
