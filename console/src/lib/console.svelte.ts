// The console's shared state: the session (token and client), the token's grants, the project
// looked at. One instance for the app, made by the root layout.

import { ApiError, Client, roleOn } from './api';
import type { Role, WhoAmI } from './protocol/types';
import { logIn, logOut, rememberProject, startSession, type Browser } from './session';

function browser(): Browser {
	return { location: window.location, history: window.history, storage: window.sessionStorage };
}

class ConsoleState {
	client = $state<Client | null>(null);
	whoami = $state<WhoAmI | null>(null);
	/** The project the URL fragment or the last visit named; `default` is the CLI's default. */
	project = $state('default');
	error = $state<string | null>(null);

	/** The strongest role the token has on the current project. */
	role: Role | null = $derived(this.whoami ? roleOn(this.whoami, this.project) : null);

	/** Reads the token from the URL fragment or the tab's storage, then the grants. */
	start(): void {
		const session = startSession(browser());
		if (session?.project) {
			this.project = session.project;
		}
		if (session) {
			this.#use(session.token);
		}
	}

	logIn(token: string): void {
		this.#use(logIn(browser(), token).token);
	}

	logOut(): void {
		logOut(browser());
		this.client = null;
		this.whoami = null;
	}

	setProject(project: string): void {
		this.project = project;
		rememberProject(browser(), project);
	}

	#use(token: string): void {
		const client = new Client({ token });
		this.client = client;
		this.error = null;
		client.whoami().then(
			(whoami) => {
				this.whoami = whoami;
				const only = whoami.grants.flatMap((g) => (g.projects === '*' ? [] : g.projects));
				if (!whoami.grants.some((g) => g.projects === '*') && only.length > 0 && !only.includes(this.project)) {
					this.project = only[0]!;
				}
			},
			(e: unknown) => {
				this.error = e instanceof Error ? e.message : String(e);
				if (e instanceof ApiError && e.isAuth) {
					this.logOut();
				}
			}
		);
	}
}

export const app = new ConsoleState();
