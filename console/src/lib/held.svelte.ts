// The held-decision count in the nav: read by the layout on every navigation, and again by a page
// that has just resolved a decision, so the count follows without one.

import type { Client } from './api';
import { heldText, inboxQuery } from './decisions';

/** One page of the inbox is all the count reads. */
const PAGE = 100;

class HeldCount {
	/** `''` when nothing is held (or unknown), else the count. */
	text = $state('');
	#asked = 0;

	async refresh(client: Client, project: string): Promise<void> {
		// Only the newest answer counts: an older one may arrive last.
		const ask = ++this.#asked;
		try {
			const page = await client.call(project, { op: 'list_decisions', query: inboxQuery(false, null, PAGE) });
			if (ask === this.#asked) this.text = heldText(page);
		} catch {
			if (ask === this.#asked) this.text = '';
		}
	}

	clear(): void {
		this.#asked += 1;
		this.text = '';
	}
}

export const held = new HeldCount();
