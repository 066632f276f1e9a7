import { describe, expect, it } from 'vitest';
import { logIn, logOut, startSession, type Browser } from './session';

function browser(hash: string): Browser & { urls: string[]; store: Map<string, string> } {
	const store = new Map<string, string>();
	const urls: string[] = [];
	return {
		location: { hash, pathname: '/projects/default/events', search: '?x=1' },
		history: { state: null, replaceState: (_d, _u, url) => urls.push(String(url)) },
		storage: {
			getItem: (k) => store.get(k) ?? null,
			setItem: (k, v) => void store.set(k, v),
			removeItem: (k) => void store.delete(k)
		},
		urls,
		store
	};
}

describe('session', () => {
	it('takes the token and project from the fragment and strips them from the address', () => {
		const b = browser('#token=abc123&project=shop');
		expect(startSession(b)).toEqual({ token: 'abc123', project: 'shop' });
		expect(b.urls).toEqual(['/projects/default/events?x=1']);
		expect(b.store.get('hakiri.token')).toBe('abc123');
	});

	it('keeps other fragment parts', () => {
		const b = browser('#token=abc&row=7');
		startSession(b);
		expect(b.urls).toEqual(['/projects/default/events?x=1#row=7']);
	});

	it('falls back to the stored token, and to nothing', () => {
		const b = browser('');
		expect(startSession(b)).toBeNull();
		expect(b.urls).toEqual([]);
		logIn(b, '  typed \n');
		expect(startSession(b)).toEqual({ token: 'typed', project: null });
		logOut(b);
		expect(startSession(b)).toBeNull();
	});
});
