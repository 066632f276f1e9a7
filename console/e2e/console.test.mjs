// The console's foundation end to end: on `hakiri serve` over the quickstart's catalog after its
// first reconcile, the overview shows the held pipeline, the event log follows a write live, a
// deep link loads, who am I shows the grant and the backend, and a visitor without a token is
// asked for one. Screenshots go to console/test-results/ (see harness.mjs for how to run).

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { ADMIN, PROJECT, open, setUp, shot } from './harness.mjs';

let env;
before(async () => {
	env = await setUp();
});
after(async () => {
	await env?.close();
});

test('the overview shows the held decision; the log follows a write live', async () => {
	const { page, problems } = await open(env.browser);
	await page.goto(env.server.console());
	const shop = page.locator('[data-testid="pipeline-row"][data-pipeline="shop"]');
	await shop.getByTestId('state').filter({ hasText: 'held (1)' }).waitFor({ timeout: 15_000 });
	assert.match(await shop.innerText(), /jsonl/);
	assert.ok(!page.url().includes('token='), `the token stays in the address bar: ${page.url()}`);
	assert.equal(new URL(page.url()).pathname, `/projects/${PROJECT}/pipelines`);
	await shot(page, 'pipelines');

	await page.getByTestId('nav-events').click();
	await page.getByTestId('stream-state').filter({ hasText: 'live' }).waitFor({ timeout: 15_000 });
	const rows = page.getByTestId('event-row');
	await page.waitForFunction(() => document.querySelectorAll('[data-testid="event-row"]').length >= 10);
	const before = await rows.count();
	await env.server.rpc({
		op: 'set_paused',
		pipeline: 'app-log',
		change: { pause: 'maintenance <b>window</b>' },
		by: { kind: 'operator', name: ADMIN.name }
	});
	const paused = page.locator('[data-testid="event-row"][data-kind="pipeline_paused"]').filter({ hasText: 'app-log' });
	await paused.first().waitFor({ timeout: 15_000 });
	assert.equal(await rows.count(), before + 1, 'the new event arrived without a reload');
	// Operator text is text: the markup shows as typed, no element is made of it.
	assert.match(await paused.first().innerText(), /maintenance <b>window<\/b>/);
	assert.equal(await page.locator('[data-testid="events"] b').count(), 0);
	await shot(page, 'events');

	assert.deepEqual(problems, []);
	await page.close();
});

test('a deep link loads after the token is kept; who am I shows the grant and the backend', async () => {
	const { page, problems } = await open(env.browser);
	await page.goto(env.server.console());
	await page.getByTestId('pipelines').waitFor();
	await page.goto(`${env.server.url}whoami`);
	await page.getByTestId('role').filter({ hasText: 'admin' }).waitFor({ timeout: 15_000 });
	assert.match(await page.getByTestId('grants').innerText(), /alice\s+admin\s+every project/);
	assert.equal(await page.getByTestId('backend').innerText(), 'SQLite files on the server’s machine');
	await shot(page, 'whoami');
	assert.deepEqual(problems, []);
	await page.close();
});

test('without a token the console asks for one', async () => {
	const { page } = await open(env.browser);
	await page.goto(`${env.server.url}projects/${PROJECT}/events`);
	await page.getByTestId('token').waitFor();
	await page.getByTestId('token').fill(ADMIN.token);
	await page.getByRole('button', { name: 'Sign in' }).click();
	await page.getByTestId('event-count').filter({ hasText: /[1-9]\d* events/ }).waitFor({ timeout: 15_000 });
	await page.close();
});
