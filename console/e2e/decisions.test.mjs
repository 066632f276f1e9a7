// The decisions, runs and event-log pages end to end, on `hakiri serve` over the quickstart's
// catalog after its first reconcile: `shop` is paused by its policy on decision 2 (column
// `amount` of stream `orders` retyped string → number, breaking). The tests run in order and
// share the catalog: the held decision is looked at (as admin and read-only) before it is
// accepted, and the runs made for paging exist before the log is filtered.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { ADMIN, PROJECT, READER, open, overflows, setUp, shot } from './harness.mjs';

let env;
let held;
before(async () => {
	env = await setUp();
	const page = await env.server.rpc({ op: 'list_decisions', query: { held_only: true, limit: 10 } });
	assert.equal(page.items.length, 1, 'the quickstart leaves one decision held');
	held = page.items[0];
});
after(async () => {
	await env?.close();
});

const timeout = { timeout: 15_000 };

test('the inbox lists the held breaking decision; its page shows the retyped column as breaking', async () => {
	const { page, problems } = await open(env.browser);
	await page.goto(env.server.console());
	await page.getByTestId('nav-held').filter({ hasText: '1' }).waitFor(timeout);
	await page.getByTestId('nav-decisions').click();
	const row = page.locator(`[data-testid="decision-row"][data-decision="${held.id}"]`);
	await row.waitFor(timeout);
	assert.equal(await page.getByTestId('decision-row').count(), 1);
	assert.equal(await row.getByTestId('class').innerText(), 'breaking');
	const text = await row.innerText();
	assert.match(text, /shop\s+orders\s+breaking\s+amount: string → number/);
	await shot(page, 'decisions-inbox');

	await row.getByTestId('decision-link').click();
	await page.getByTestId('diff-row').first().waitFor(timeout);
	assert.equal(new URL(page.url()).pathname, `/projects/${PROJECT}/decisions/${held.id}`);
	assert.equal(await page.getByTestId('decision-class').innerText(), 'breaking');
	assert.equal(await page.getByTestId('decision-verdict').innerText(), 'held');
	const rows = page.getByTestId('diff-row');
	assert.equal(await rows.count(), 1);
	assert.equal(await rows.first().getAttribute('data-change'), 'retyped');
	assert.equal(await rows.first().getAttribute('data-class'), 'breaking');
	assert.match(await rows.first().innerText(), /breaking\s+retyped\s+amount\s+string\s+number/);
	// The current version (2, which accepted the additive coupon) still has amount as a string.
	await page.getByTestId('current-schema').waitFor(timeout);
	assert.equal(await page.getByTestId('current-version').innerText(), 'Current: version 2');
	assert.match(await page.getByTestId('current-schema').innerText(), /amount\s+string/);
	assert.match(await page.getByTestId('current-schema').innerText(), /id \(key\)\s+integer/);
	assert.match(await page.getByTestId('proposed-schema').innerText(), /amount\s+number/);
	assert.equal(await page.getByTestId('decision-run').getAttribute('href'), `/projects/${PROJECT}/runs/${held.run}`);
	assert.equal(await page.getByTestId('accept').count(), 1, 'an admin may decide');
	await shot(page, 'decision-held');
	assert.deepEqual(problems, []);
	await page.close();
});

test('a read-only token sees the decision but no accept or reject', async () => {
	const { page, problems } = await open(env.browser);
	await page.goto(env.server.console(READER.token, `projects/${PROJECT}/decisions/${held.id}`));
	await page.getByTestId('diff-row').first().waitFor(timeout);
	await page.getByTestId('activity-row').first().waitFor(timeout);
	assert.equal(await page.getByTestId('decision-verdict').innerText(), 'held');
	assert.equal(await page.getByTestId('accept').count(), 0);
	assert.equal(await page.getByTestId('reject').count(), 0);
	assert.equal(await page.getByTestId('decide-reason').count(), 0);
	assert.deepEqual(problems, []);
	await page.close();
});

test('accepting with a reason shows the verdict and the resume live, here and in an open log', async () => {
	// The log is open before the decision is taken: what it shows next arrives on the stream.
	const log = await open(env.browser);
	await log.page.goto(env.server.console(ADMIN.token, `projects/${PROJECT}/events`));
	await log.page.getByTestId('stream-state').filter({ hasText: 'live' }).waitFor(timeout);
	await log.page.evaluate(() => {
		window.notReloaded = true;
	});
	const logUrl = log.page.url();

	const { page, problems } = await open(env.browser);
	await page.goto(env.server.console(ADMIN.token, `projects/${PROJECT}/decisions/${held.id}`));
	await page.getByTestId('activity-state').filter({ hasText: 'live' }).waitFor(timeout);
	await page.evaluate(() => {
		window.notReloaded = true;
	});
	// A blank reason is refused before anything is sent.
	await page.getByTestId('accept').click();
	assert.equal(await page.getByTestId('decision-verdict').innerText(), 'held');
	await page.getByTestId('decide-reason').fill('amounts are <i>numbers</i> from now on');
	await page.getByTestId('accept').click();
	await page.getByTestId('decision-verdict').filter({ hasText: 'accepted' }).waitFor(timeout);
	assert.equal(await page.getByTestId('decision-reason').innerText(), 'amounts are <i>numbers</i> from now on');
	assert.match(await page.getByTestId('decision-by').innerText(), /^operator:alice, /);
	assert.equal(await page.getByTestId('accept').count(), 0, 'a decided decision offers no buttons');
	assert.equal(await page.getByTestId('current-version').innerText(), 'Current: version 3');
	const activity = (kind) => page.locator(`[data-testid="activity-row"][data-kind="${kind}"]`);
	await activity('decision_resolved').waitFor(timeout);
	await activity('pipeline_resumed').waitFor(timeout);
	assert.match(await activity('decision_resolved').innerText(), new RegExp(`decision ${held.id} resolved: accepted`));
	await page.getByTestId('nav-held').waitFor({ state: 'detached', ...timeout });
	assert.ok(await page.evaluate(() => window.notReloaded), 'the decision page was not reloaded');
	await shot(page, 'decision-accepted');

	const row = (kind) => log.page.locator(`[data-testid="event-row"][data-kind="${kind}"]`).filter({ hasText: 'shop' });
	await row('decision_resolved').waitFor(timeout);
	await row('pipeline_resumed').waitFor(timeout);
	assert.match(await row('decision_resolved').innerText(), /operator:alice/);
	assert.ok(await log.page.evaluate(() => window.notReloaded), 'the log was not reloaded');
	assert.equal(log.page.url(), logUrl);
	// Newest first: the resume follows the resolution.
	const seq = async (kind) => Number(await row(kind).getAttribute('data-seq'));
	assert.ok((await seq('pipeline_resumed')) > (await seq('decision_resolved')));
	await shot(log.page, 'events-after-accept');

	// The inbox is empty now, and says so; every decision shows the verdict and why.
	await page.getByTestId('nav-decisions').click();
	await page.getByTestId('inbox-empty').waitFor(timeout);
	assert.match(await page.getByTestId('inbox-empty').innerText(), /Nothing is held/);
	assert.equal(await page.getByTestId('nav-held').count(), 0);
	await page.getByTestId('decisions-scope').click();
	const decided = page.locator(`[data-testid="decision-row"][data-decision="${held.id}"]`);
	await decided.waitFor(timeout);
	assert.match(await decided.innerText(), /accepted\s+operator:alice\s+amounts are <i>numbers<\/i> from now on/);
	assert.equal(await page.getByTestId('decision-row').count(), 2);
	await shot(page, 'decisions-all');

	assert.deepEqual(problems, []);
	assert.deepEqual(log.problems, []);
	await page.close();
	await log.page.close();
});

/** One finished run of app-log, the way a worker makes it. */
async function appLogRun(status) {
	const lease = await env.server.rpc({ op: 'acquire', pipeline: 'app-log', holder: 'e2e-worker', ttl_ms: 60_000 });
	const run = await env.server.rpc({ op: 'begin_run', lease, begin: { trigger: 'manual', attempt: 1 } });
	const outcome =
		status === 'failed'
			? { status: 'failed', error: { message: 'disk full', retryable: true } }
			: { status: 'succeeded' };
	await env.server.rpc({ op: 'finish_run', lease, run: run.id, finish: { outcome } });
	await env.server.rpc({ op: 'release', lease });
	return run.id;
}

test('runs filter by pipeline and status, page with Older without repeats, and a run shows its cursors', async () => {
	for (let i = 0; i < 25; i += 1) {
		await appLogRun(i === 7 ? 'failed' : 'succeeded');
	}
	const { page, problems } = await open(env.browser);
	await page.goto(env.server.console(ADMIN.token, `projects/${PROJECT}/runs`));
	await page.getByTestId('run-row').first().waitFor(timeout);
	assert.equal(await page.getByTestId('run-row').count(), 27, 'both pipelines, one page of 50');

	await page.getByTestId('filter-pipeline').fill('shop');
	await page.getByTestId('filter-pipeline').press('Enter');
	await page.waitForURL(/\/runs\?pipeline=shop$/);
	await page.waitForFunction(() =>
		[...document.querySelectorAll('[data-testid="run-row"]')].every((r) => r.dataset.pipeline === 'shop')
	);
	assert.equal(await page.getByTestId('run-row').count(), 1);
	const shopRun = page.getByTestId('run-row').first();
	assert.equal(await shopRun.getAttribute('data-status'), 'cancelled');
	assert.match(await shopRun.innerText(), /shop\s+cancelled\s+schedule\s+1\s+\d+\s+\S+/);
	assert.match(await shopRun.innerText(), /held \(decision 2\)/);
	await shot(page, 'runs-shop');

	await page.getByTestId('filter-clear').click();
	await page.getByTestId('filter-status').selectOption('failed');
	await page.waitForURL(/\/runs\?status=failed$/);
	await page.waitForFunction(() => {
		const rows = [...document.querySelectorAll('[data-testid="run-row"]')];
		return rows.length > 0 && rows.every((r) => r.dataset.status === 'failed');
	});
	assert.equal(await page.getByTestId('run-row').count(), 1);
	assert.match(await page.getByTestId('run-row').innerText(), /app-log\s+failed\s+manual.*disk full/s);

	// Pages of ten of app-log's 26 runs: 10, 10, 6, newest first, none twice.
	const all = await env.server.rpc({ op: 'list_runs', query: { pipeline: 'app-log', status: null, before: null, limit: 100 } });
	assert.equal(all.items.length, 26);
	await page.goto(`${env.server.url}projects/${PROJECT}/runs?pipeline=app-log&limit=10`);
	const seen = [];
	for (const size of [10, 10, 6]) {
		// The next page is there when its first row is none seen yet (comparing with the last row
		// seen let the previous page pass while the click's navigation was still loading).
		await page.waitForFunction(
			([n, shown]) => {
				const rows = [...document.querySelectorAll('[data-testid="run-row"]')];
				return rows.length === n && !shown.includes(rows[0].dataset.run);
			},
			[size, seen]
		);
		seen.push(...(await page.getByTestId('run-row').evaluateAll((rows) => rows.map((r) => r.dataset.run))));
		if (size === 10) {
			await page.getByTestId('older').click();
		}
	}
	assert.equal(await page.getByTestId('older').count(), 0, 'the last page has no Older');
	assert.deepEqual(seen, all.items.map((r) => r.id), 'every run once, newest first');
	await shot(page, 'runs-older');
	await page.getByTestId('newest').click();
	await page.waitForURL(/\/runs\?pipeline=app-log&limit=10$/);
	await page.waitForFunction((first) => document.querySelector('[data-testid="run-row"]')?.dataset.run === first, seen[0]);

	// The shop run: its cursors at start (none) and end, as JSON, linking to the cursor pages.
	await page.goto(`${env.server.url}projects/${PROJECT}/runs/${held.run}`);
	await page.getByTestId('cursor-row').first().waitFor(timeout);
	assert.equal(await page.getByTestId('run-status').innerText(), 'cancelled');
	assert.match(await page.getByTestId('run-error').innerText(), /breaking schema change on stream orders held \(decision 2\)/);
	const orders = page.locator('[data-testid="cursor-row"][data-stream="orders"]');
	assert.equal(await orders.getByTestId('cursor-start').innerText(), '—');
	assert.equal(await orders.getByTestId('cursor-end').innerText(), '"2026-01-02T10:00:00.000Z"');
	assert.equal(
		await page.locator('[data-testid="cursor-row"][data-stream="customers"]').getByTestId('cursor-end').innerText(),
		'"2026-01-01T08:10:00.000Z"'
	);
	assert.equal(await orders.getByTestId('cursor-link').getAttribute('href'), `/projects/${PROJECT}/pipelines/shop/cursors/orders`);
	assert.match(await page.locator('[data-testid="stat-row"][data-stream="orders"]').innerText(), /orders\s+7\s+817/);
	await shot(page, 'run');
	assert.deepEqual(problems, []);
	await page.close();
});

test('the log narrows to one pipeline on the server, filters kinds, and links to a decision', async () => {
	const { page, problems } = await open(env.browser);
	await page.goto(env.server.console(ADMIN.token, `projects/${PROJECT}/events`));
	await page.getByTestId('stream-state').filter({ hasText: 'live' }).waitFor(timeout);
	await page.getByTestId('event-pipeline').fill('shop');
	await page.getByTestId('event-pipeline').press('Enter');
	await page.waitForURL(/\/events\?pipeline=shop$/);
	await page.locator('[data-testid="event-row"][data-kind="decision_recorded"]').first().waitFor(timeout);
	const pipelines = async () =>
		page.getByTestId('event-pipeline-link').evaluateAll((links) => [...new Set(links.map((a) => a.textContent))]);
	assert.deepEqual(await pipelines(), ['shop']);
	// Live, the stream itself carries only shop: app-log's change never arrives, shop's does.
	await env.server.rpc({ op: 'set_paused', pipeline: 'app-log', change: { pause: 'not shown' }, by: { kind: 'operator', name: ADMIN.name } });
	await env.server.rpc({ op: 'set_paused', pipeline: 'shop', change: { pause: 'shown' }, by: { kind: 'operator', name: ADMIN.name } });
	await page.locator('[data-testid="event-row"][data-kind="pipeline_paused"]').filter({ hasText: 'shown' }).waitFor(timeout);
	assert.deepEqual(await pipelines(), ['shop']);
	const count = await page.getByTestId('event-row').count();
	assert.equal(await page.getByTestId('event-count').innerText(), `${count} events`);

	await page.getByTestId('event-kind').selectOption('decision_recorded');
	await page.waitForFunction(() =>
		[...document.querySelectorAll('[data-testid="event-row"]')].every((r) => r.dataset.kind === 'decision_recorded')
	);
	assert.equal(await page.getByTestId('event-row').count(), 2, 'decisions 1 and 2');
	await shot(page, 'events-filtered');
	const link = page.locator('[data-testid="event-row"][data-kind="decision_recorded"]').filter({ hasText: `decision ${held.id} ` }).getByTestId('event-link');
	await link.click();
	await page.waitForURL(new RegExp(`/projects/${PROJECT}/decisions/${held.id}$`));
	await page.getByTestId('decision-class').filter({ hasText: 'breaking' }).waitFor(timeout);

	// Runs and cursors link from the log (a deep link to shop's, whose first run is past the
	// whole log's tail now), pipelines from every row.
	await page.goto(`${env.server.url}projects/${PROJECT}/events?pipeline=shop`);
	const begun = page.locator('[data-testid="event-row"][data-kind="run_begun"]').first();
	await begun.waitFor(timeout);
	assert.match(await begun.getByTestId('event-link').getAttribute('href'), new RegExp(`^/projects/${PROJECT}/runs/[0-9a-f-]{36}$`));
	const advanced = page.locator('[data-testid="event-row"][data-kind="cursor_advanced"]').first();
	assert.match(await advanced.getByTestId('event-link').getAttribute('href'), new RegExp(`^/projects/${PROJECT}/pipelines/shop/cursors/(orders|customers)$`));
	assert.equal(await advanced.getByTestId('event-pipeline-link').getAttribute('href'), `/projects/${PROJECT}/pipelines/shop`);
	assert.deepEqual(problems, []);
	await page.close();
});

test('rejecting by keyboard keeps the current version and resumes; each change has its own class', async () => {
	// app-log (paused by an operator above) resumed, then a run reports its stream with a column
	// added (additive) and one retyped (breaking): the policy holds it and pauses the pipeline.
	const by = { kind: 'operator', name: ADMIN.name };
	await env.server.rpc({ op: 'set_paused', pipeline: 'app-log', change: 'resume', by });
	const lease = await env.server.rpc({ op: 'acquire', pipeline: 'app-log', holder: 'e2e-worker', ttl_ms: 60_000 });
	const run = await env.server.rpc({ op: 'begin_run', lease, begin: { trigger: 'manual', attempt: 1 } });
	const schema = {
		columns: [
			{ name: 'line', type: 'integer', nullable: false },
			{ name: 'level', type: 'string', nullable: true }
		],
		key: []
	};
	const observed = await env.server.rpc({ op: 'observe_schema', lease, run: run.id, stream: 'app', schema });
	assert.equal(observed.verdict, 'held');
	const id = observed.decision.id;
	await env.server.rpc({
		op: 'finish_run',
		lease,
		run: run.id,
		finish: { outcome: { status: 'cancelled', reason: 'schema held' } }
	});
	await env.server.rpc({ op: 'release', lease });

	const { page, problems } = await open(env.browser);
	await page.goto(env.server.console(ADMIN.token, `projects/${PROJECT}/decisions/${id}`));
	await page.getByTestId('activity-state').filter({ hasText: 'live' }).waitFor(timeout);
	const rows = await page.getByTestId('diff-row').evaluateAll((trs) =>
		trs.map((tr) => [tr.dataset.change, tr.dataset.class, tr.innerText.replace(/\s+/g, ' ').trim()])
	);
	assert.deepEqual(rows, [
		['added', 'additive', 'additive added level — string, nullable'],
		['retyped', 'breaking', 'breaking retyped line string integer']
	]);
	assert.equal(await page.getByTestId('decision-class').innerText(), 'breaking');

	await page.getByTestId('decide-reason').focus();
	await page.keyboard.type('log lines stay text');
	await page.keyboard.press('Tab');
	await page.keyboard.press('Tab');
	assert.equal(await page.evaluate(() => document.activeElement?.dataset.testid), 'reject');
	await page.keyboard.press('Enter');
	await page.getByTestId('decision-verdict').filter({ hasText: 'rejected' }).waitFor(timeout);
	assert.equal(await page.getByTestId('decision-reason').innerText(), 'log lines stay text');
	assert.equal(await page.getByTestId('current-version').innerText(), 'Current: version 1');
	assert.match(await page.getByTestId('current-schema').innerText(), /line\s+string/);
	// The resume the rejection caused arrives live (an earlier resume may be in the tail too).
	const log = await env.server.rpc({ op: 'pipeline_events', pipeline: 'app-log', after: 0, limit: 1000 });
	const resumed = log.findLast((e) => e.kind.type === 'pipeline_resumed');
	assert.ok(resumed && resumed.seq > log.find((e) => e.kind.type === 'decision_resolved' && e.kind.decision === id).seq);
	await page.locator(`[data-testid="activity-row"][data-kind="pipeline_resumed"][data-seq="${resumed.seq}"]`).waitFor(timeout);
	assert.equal(await page.getByTestId('reject').count(), 0);
	await shot(page, 'decision-rejected');
	assert.deepEqual(problems, []);
	await page.close();
});

test('the decision and runs pages fit a phone', async () => {
	const { page, problems } = await open(env.browser, { width: 390, height: 844 });
	await page.goto(env.server.console(ADMIN.token, `projects/${PROJECT}/decisions/${held.id}`));
	await page.getByTestId('diff-row').first().waitFor(timeout);
	await page.getByTestId('activity-row').first().waitFor(timeout);
	assert.ok(!(await overflows(page)), 'the decision page is no wider than the phone');
	await shot(page, 'decision-phone');
	await page.getByTestId('nav-runs').click();
	await page.getByTestId('run-row').first().waitFor(timeout);
	assert.ok(!(await overflows(page)), 'the runs page is no wider than the phone');
	await shot(page, 'runs-phone');
	assert.deepEqual(problems, []);
	await page.close();
});
