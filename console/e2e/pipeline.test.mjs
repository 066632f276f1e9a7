// The pipeline detail page and the cursor page end to end, on `hakiri serve` over the quickstart's
// catalog after its first reconcile (`shop` held and paused, `app-log` idle; see harness.mjs for
// how to run). `env.server.rpc` acts as a run would: it takes and releases the writer lease.
// The tests share one catalog and run in order: each says what it leaves behind.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { ADMIN, PROJECT, READER, open, overflows, setUp, shot } from './harness.mjs';

let env;
before(async () => {
	env = await setUp();
});
after(async () => {
	await env?.close();
});

const SHOP = `projects/${PROJECT}/pipelines/shop`;
const ORDERS = `${SHOP}/cursors/orders`;
const by = { kind: 'operator', name: ADMIN.name };

/** A protocol request's raw reply (the harness's `rpc` fails on an error; this returns it). */
async function reply(request) {
	const response = await fetch(`${env.server.url}v1/projects/${PROJECT}/rpc`, {
		method: 'POST',
		headers: { authorization: `Bearer ${ADMIN.token}`, 'content-type': 'application/json' },
		body: JSON.stringify(request)
	});
	return response.json();
}

/**
 * The browser's problems but the one a refused lease makes: the catalog answers `leased` with
 * HTTP 409, which Chromium logs as a failed resource; the page shows it as a refusal.
 */
function unexpected(problems) {
	return problems.filter((p) => !/status of 409 \(Conflict\)/.test(p));
}

/** The cursor page of shop's `orders`, signed in as alice, once its version is shown. */
async function cursorPage() {
	const { page, problems } = await open(env.browser);
	await page.goto(env.server.console(ADMIN.token, ORDERS));
	await page.getByTestId('cursor-version').waitFor({ timeout: 15_000 });
	await page.getByTestId('reset-panel').waitFor({ timeout: 15_000 });
	return { page, problems };
}

test('the state filter shows only the held pipeline; its name opens the detail page', async () => {
	const { page, problems } = await open(env.browser);
	await page.goto(env.server.console());
	await page.getByTestId('filter-held').waitFor({ timeout: 15_000 });
	await page.getByTestId('filter-held').click();
	await page.waitForURL((url) => url.searchParams.get('state') === 'held');
	const rows = page.getByTestId('pipeline-row');
	await page.waitForFunction(() => document.querySelectorAll('[data-testid="pipeline-row"]').length === 1);
	assert.equal(await rows.getAttribute('data-pipeline'), 'shop');
	// The filter is in the address: a reload keeps it.
	await page.reload();
	await page.waitForFunction(() => document.querySelectorAll('[data-testid="pipeline-row"]').length === 1);
	assert.equal(await rows.first().getAttribute('data-pipeline'), 'shop');
	await page.getByTestId('filter-all').click();
	await page.waitForFunction(() => document.querySelectorAll('[data-testid="pipeline-row"]').length === 2);

	await rows.filter({ hasText: 'shop' }).getByTestId('pipeline-link').click();
	await page.waitForURL((url) => url.pathname === `/${SHOP}`);
	await page.getByTestId('state').filter({ hasText: 'held (1)' }).waitFor({ timeout: 15_000 });
	const decision = page.getByTestId('decision-link');
	assert.match(await decision.innerText(), /decision #\d+/);
	assert.match(await decision.getAttribute('href'), new RegExp(`^/projects/${PROJECT}/decisions/\\d+$`));
	assert.match(await page.getByTestId('paused-reason').innerText(), /held for review/);
	// The catalog refuses to resume a held pipeline: the page offers the decision instead.
	await page.getByTestId('resume-held').waitFor({ timeout: 15_000 });
	assert.equal(await page.getByTestId('resume').count(), 0);
	await page.getByTestId('run-row').first().waitFor();
	assert.match(await page.getByTestId('run-row').first().getAttribute('data-run'), /^[0-9a-f-]{36}$/);
	assert.equal(
		await page.getByTestId('all-runs').getAttribute('href'),
		`/projects/${PROJECT}/runs?pipeline=shop`
	);
	assert.equal(await page.getByTestId('cursor-row').count(), 2);
	assert.match(await page.getByTestId('spec').innerText(), /jsonl[\s\S]*every 1h/);
	await page.getByTestId('timeline-state').filter({ hasText: 'live' }).waitFor({ timeout: 15_000 });
	await page.locator('[data-testid="timeline-event"][data-kind="decision_recorded"]').first().waitFor();
	await shot(page, 'pipeline-shop');
	assert.deepEqual(problems, []);
	await page.close();
});

test('app-log: pause with a reason, resume, and request a run saying what will happen', async () => {
	const { page, problems } = await open(env.browser);
	await page.goto(env.server.console(ADMIN.token, `projects/${PROJECT}/pipelines/app-log`));
	await page.getByTestId('pause').waitFor({ timeout: 15_000 });
	assert.ok(await page.getByTestId('pause').isDisabled(), 'no pause without a reason');
	await page.getByTestId('pause-reason').fill('disk swap <i>tonight</i>');
	await page.getByTestId('pause').click();
	await page.getByTestId('state').filter({ hasText: 'paused' }).waitFor({ timeout: 15_000 });
	assert.match(await page.getByTestId('paused-reason').innerText(), /operator:alice.*disk swap <i>tonight<\/i>/s);
	assert.equal(await page.locator('[data-testid="paused-reason"] i').count(), 0, 'the reason is text');
	// The timeline follows: the pause arrives through the event stream.
	await page
		.locator('[data-testid="timeline-event"][data-kind="pipeline_paused"]')
		.filter({ hasText: 'disk swap' })
		.waitFor({ timeout: 15_000 });

	// While paused, a run request is recorded but does not start.
	await page.getByTestId('run-manual').click();
	assert.match(await page.getByTestId('forecast').innerText(), /will not start until the pipeline is resumed/);
	await page.getByTestId('run-cancel').click();

	await page.getByTestId('resume').click();
	await page.getByTestId('pause').waitFor({ timeout: 15_000 });
	assert.doesNotMatch(await page.getByTestId('state').innerText(), /paused/);

	await page.getByTestId('run-manual').click();
	const forecast = page.getByTestId('forecast');
	assert.match(await forecast.innerText(), /The reconciler dispatches it on its next pass/);
	await page.getByTestId('run-confirm').click();
	await page.getByTestId('run-sent').waitFor({ timeout: 15_000 });
	await page.getByTestId('requested').filter({ hasText: 'manual run requested by operator:alice' }).waitFor();
	assert.match(await page.getByTestId('run-sent').innerText(), /Requested a manual run\. The reconciler dispatches it.*plan now says: due now \(manual\)/s);
	assert.match(await page.getByTestId('plan-action').innerText(), /due now \(manual\)/);
	const stored = await env.server.rpc({ op: 'get_pipeline', pipeline: 'app-log' });
	assert.equal(stored.requested.trigger, 'manual');
	assert.equal(stored.paused, null);
	await shot(page, 'pipeline-app-log');
	assert.deepEqual(problems, []);
	await page.close();
});

test('a cursor rollback is refused while a run holds the lease, and works after', async () => {
	const lease = await env.server.rpc({ op: 'acquire', pipeline: 'shop', holder: 'worker-1', ttl_ms: 120_000 });
	const { page, problems } = await cursorPage();
	const before = Number(await page.getByTestId('cursor-version').innerText());
	await page.locator('[data-testid="history-row"][data-version="1"] [data-testid="rollback-to"]').click();
	assert.match(await page.getByTestId('reset-target').innerText(), /roll back to version 1/);
	assert.ok(await page.getByTestId('reset-submit').isDisabled(), 'no change without a reason');
	await page.getByTestId('reset-reason').fill('re-read orders from the 1st');
	await page.getByTestId('reset-submit').click();
	const refused = page.getByTestId('reset-refused');
	await refused.waitFor({ timeout: 15_000 });
	assert.equal(await page.getByTestId('lease-holder').innerText(), 'worker-1');
	assert.match(await refused.innerText(), new RegExp(`worker-1 holds the writer lease of shop \\(epoch ${lease.epoch}\\) until`));
	assert.match(await refused.innerText(), /Nothing was changed/);
	await shot(page, 'cursor-refused');
	assert.equal(Number(await page.getByTestId('cursor-version').innerText()), before);
	const held = await env.server.rpc({ op: 'get_cursor', pipeline: 'shop', stream: 'orders' });
	assert.equal(held.version, before, 'the refusal wrote nothing');

	await env.server.rpc({ op: 'release', lease });
	await page.getByTestId('reset-submit').click();
	await page.getByTestId('reset-done').waitFor({ timeout: 15_000 });
	assert.match(await page.getByTestId('reset-done').innerText(), new RegExp(`version ${before + 1}`));
	await page.getByTestId('cursor-version').filter({ hasText: String(before + 1) }).waitFor();
	const rollback = page.locator(`[data-testid="history-row"][data-version="${before + 1}"]`);
	assert.equal(await rollback.getAttribute('data-change'), 'rollback');
	assert.match(await rollback.innerText(), /rollback to version 1[\s\S]*re-read orders from the 1st[\s\S]*operator:alice/);
	const after = await env.server.rpc({ op: 'get_cursor', pipeline: 'shop', stream: 'orders' });
	assert.equal(after.value, '2026-01-01T11:00:00.000Z');
	// The console's lease was released: a worker can take it at once.
	const next = await env.server.rpc({ op: 'acquire', pipeline: 'shop', holder: 'worker-1', ttl_ms: 1_000 });
	await env.server.rpc({ op: 'release', lease: next });
	await shot(page, 'cursor-rollback');
	assert.deepEqual(unexpected(problems), []);
	await page.close();
});

test('forcing takes the lease only after the pipeline id is typed, and fences the run', async () => {
	const lease = await env.server.rpc({ op: 'acquire', pipeline: 'shop', holder: 'worker-2', ttl_ms: 120_000 });
	const { page, problems } = await cursorPage();
	await page.getByTestId('reset-initial').click();
	await page.getByTestId('reset-reason').fill('start shop over');
	await page.getByTestId('reset-submit').click();
	await page.getByTestId('reset-refused').waitFor({ timeout: 15_000 });
	assert.match(await page.getByTestId('reset-refused').innerText(), /this fences the running run/);
	const force = page.getByTestId('force-submit');
	assert.ok(await force.isDisabled());
	await page.getByTestId('force-confirm').fill('sho');
	assert.ok(await force.isDisabled(), 'a partial id does not confirm');
	await page.getByTestId('force-confirm').fill('shop');
	assert.ok(await force.isEnabled());
	await force.click();
	await page.getByTestId('reset-done').waitFor({ timeout: 15_000 });
	assert.match(await page.getByTestId('reset-done').innerText(), /the previous lease holder was fenced/);
	await page.locator('[data-testid="history-row"][data-change="reset"]').first().waitFor();
	assert.equal((await env.server.rpc({ op: 'get_cursor', pipeline: 'shop', stream: 'orders' })).value, null);
	// The worker's lease is fenced: its next write is refused.
	const renewed = await reply({ op: 'renew', lease, ttl_ms: 60_000 });
	assert.equal(renewed.err?.code, 'fenced', JSON.stringify(renewed));
	const events = await env.server.rpc({ op: 'pipeline_events', pipeline: 'shop', after: 0, limit: 1000 });
	const forced = events.filter((e) => e.kind.type === 'lease_acquired' && e.kind.forced);
	assert.deepEqual(
		forced.map((e) => [e.kind.holder, e.actor]),
		[['console-alice', by]]
	);
	assert.deepEqual(unexpected(problems), []);
	await page.close();
});

test('a cursor changed behind the page is refused with "reload"', async () => {
	const { page, problems } = await cursorPage();
	const shown = Number(await page.getByTestId('cursor-version').innerText());
	const lease = await env.server.rpc({ op: 'acquire', pipeline: 'shop', holder: 'worker-3', ttl_ms: 10_000 });
	await env.server.rpc({
		op: 'reset_cursor',
		lease,
		stream: 'orders',
		reset: { target: { version: 1 }, expected_version: null, by, reason: 'behind its back' }
	});
	await env.server.rpc({ op: 'release', lease });

	await page.getByTestId('reset-value').click();
	await page.getByTestId('reset-json').fill('2026-01-05');
	assert.match(await page.getByTestId('json-problem').innerText(), /not JSON/);
	assert.ok(await page.getByTestId('reset-submit').isDisabled());
	await page.getByTestId('reset-json').fill('"2026-01-05T00:00:00.000Z"');
	await page.getByTestId('reset-reason').fill('skip to the 5th');
	await page.getByTestId('reset-submit').click();
	const stale = page.getByTestId('reset-stale');
	await stale.waitFor({ timeout: 15_000 });
	assert.match(await stale.innerText(), /reload/);
	assert.match(await stale.innerText(), new RegExp(`now version ${shown + 1}, not ${shown}`));
	assert.equal((await env.server.rpc({ op: 'get_cursor', pipeline: 'shop', stream: 'orders' })).version, shown + 1);
	await page.getByTestId('reload').click();
	await page.getByTestId('cursor-version').filter({ hasText: String(shown + 1) }).waitFor({ timeout: 15_000 });
	assert.deepEqual(problems, []);
	await page.close();
});

test('a read-only token sees the data and no action', async () => {
	const actions = ['actions', 'pause', 'resume', 'resume-held', 'run-manual', 'run-backfill', 'reset-panel', 'reset-initial', 'reset-value', 'rollback-to', 'reset-submit'];
	const { page, problems } = await open(env.browser);
	await page.goto(env.server.console(READER.token, SHOP));
	await page.locator('header .who').filter({ hasText: 'read' }).waitFor({ timeout: 15_000 });
	await page.getByTestId('cursor-row').first().waitFor({ timeout: 15_000 });
	await page.getByTestId('decision-link').waitFor();
	await page.getByTestId('run-row').first().waitFor();
	for (const id of actions) {
		assert.equal(await page.getByTestId(id).count(), 0, `${id} on the detail page`);
	}
	await page.locator('[data-testid="cursor-row"][data-stream="orders"] a').click();
	await page.getByTestId('cursor-version').waitFor({ timeout: 15_000 });
	await page.getByTestId('history-row').first().waitFor();
	for (const id of actions) {
		assert.equal(await page.getByTestId(id).count(), 0, `${id} on the cursor page`);
	}
	assert.deepEqual(problems, []);
	await page.close();
});

test('the detail page fits a phone', async () => {
	const { page, problems } = await open(env.browser, { width: 390, height: 844 });
	await page.goto(env.server.console(ADMIN.token, SHOP));
	await page.getByTestId('cursor-row').first().waitFor({ timeout: 15_000 });
	await page.getByTestId('run-row').first().waitFor();
	await page.locator('[data-testid="timeline-event"]').first().waitFor({ timeout: 15_000 });
	// By now shop has more events than the live tail's page: older ones come on demand, down to
	// its creation.
	const created = page.locator('[data-testid="timeline-event"][data-kind="pipeline_created"]');
	assert.equal(await created.count(), 0);
	await page.getByTestId('older-events').click();
	await created.waitFor({ timeout: 15_000 });
	const seqs = await page.getByTestId('timeline-event').evaluateAll((els) => els.map((e) => Number(e.dataset.seq)));
	assert.deepEqual(seqs, [...seqs].sort((a, b) => b - a), 'newest first');
	assert.equal(new Set(seqs).size, seqs.length, 'no event twice');
	await page.getByTestId('run-backfill').click();
	await page.getByTestId('forecast').waitFor();
	assert.equal(await overflows(page), false, 'the page is wider than a 390 px screen');
	await shot(page, 'pipeline-shop-narrow');
	await page.goto(env.server.console(ADMIN.token, ORDERS));
	await page.getByTestId('history-row').first().waitFor({ timeout: 15_000 });
	assert.equal(await overflows(page), false, 'the cursor page is wider than a 390 px screen');
	assert.deepEqual(problems, []);
	await page.close();
});
