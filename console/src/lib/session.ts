// Where the console's token and project come from: the URL fragment `#token=…&project=…` (what
// `hakiri serve` prints; a fragment is never sent to a server nor logged), else what this tab
// stored before, else a login form. The token lives in `sessionStorage`, gone with the tab; the
// fragment is removed from the address bar and history as soon as it is read.

export interface Session {
	token: string;
	/** The project the URL named, if it named one. */
	project: string | null;
}

const TOKEN_KEY = 'hakiri.token';
const PROJECT_KEY = 'hakiri.project';

/** The parts of `window` this needs, so tests can pass fakes. */
export interface Browser {
	location: { hash: string; pathname: string; search: string };
	history: { replaceState(data: unknown, unused: string, url?: string): void; state: unknown };
	storage: Pick<Storage, 'getItem' | 'setItem' | 'removeItem'>;
}

/** Takes the token from the fragment (storing it and stripping the fragment) or from storage. */
export function startSession(browser: Browser): Session | null {
	const hash = browser.location.hash.replace(/^#/, '');
	const fragment = new URLSearchParams(hash);
	const token = fragment.get('token');
	const project = fragment.get('project');
	if (token !== null || project !== null) {
		const rest = new URLSearchParams(hash);
		rest.delete('token');
		rest.delete('project');
		const left = rest.toString();
		browser.history.replaceState(
			browser.history.state,
			'',
			`${browser.location.pathname}${browser.location.search}${left ? `#${left}` : ''}`
		);
	}
	if (token) {
		browser.storage.setItem(TOKEN_KEY, token);
	}
	if (project) {
		browser.storage.setItem(PROJECT_KEY, project);
	}
	const stored = browser.storage.getItem(TOKEN_KEY);
	return stored ? { token: stored, project: browser.storage.getItem(PROJECT_KEY) } : null;
}

/** Stores a token typed into the login form. */
export function logIn(browser: Browser, token: string): Session {
	browser.storage.setItem(TOKEN_KEY, token.trim());
	return { token: token.trim(), project: browser.storage.getItem(PROJECT_KEY) };
}

/** Forgets the token. */
export function logOut(browser: Browser): void {
	browser.storage.removeItem(TOKEN_KEY);
}

/** Remembers the project last looked at. */
export function rememberProject(browser: Browser, project: string): void {
	browser.storage.setItem(PROJECT_KEY, project);
}
