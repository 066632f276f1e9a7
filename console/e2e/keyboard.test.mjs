// The console by keyboard alone, and the README's screenshots, on `hakiri serve` over the
// quickstart's catalog after its first reconcile (`shop` held on a breaking decision, `app-log`
// idle). An operator signs in from the form, reaches `app-log` from the overview, pauses it with
// a reason and resumes it, with only Tab, Shift+Tab, Enter, Space and typing, and the focused
// element always shows a ring. The screenshots test runs first, on the untouched catalog:
// HAKIRI_DOCS_SCREENSHOTS=1 also writes them to docs/console/ (tracked files: a normal run
// leaves them alone).

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { ADMIN, PROJECT, open, overflows, results, root, setUp, shot } from './harness.mjs';

let env;
before(async () => {
	env = await setUp();
});
after(async () => {
	await env?.close();
});

const timeout = { timeout: 15_000 };

/**
 * A README screenshot: the window only (1280×800, a PNG of ~100 KB), as
 * test-results/docs-`name`.png, and as docs/console/`name`.png when HAKIRI_DOCS_SCREENSHOTS=1.
 */
async function docsShot(page, name) {
	const path = join(results, `docs-${name}.png`);
	await page.screenshot({ path, fullPage: false });
	if (process.env.HAKIRI_DOCS_SCREENSHOTS === '1') {
		const docs = join(root, 'docs', 'console');
		mkdirSync(docs, { recursive: true });
		copyFileSync(path, join(docs, `${name}.png`));
	}
}

test('the README screenshots: the held pipeline, its breaking diff, a cursor', async () => {
	const { page, problems } = await open(env.browser);
	await page.goto(env.server.console());
	const shop = page.locator('[data-testid="pipeline-row"][data-pipeline="shop"]');
	await shop.getByTestId('state').filter({ hasText: 'held (1)' }).waitFor(timeout);
	await page.getByTestId('nav-held').filter({ hasText: '1' }).waitFor(timeout);
	await docsShot(page, 'overview');

	const { items } = await env.server.rpc({ op: 'list_decisions', query: { held_only: true, limit: 10 } });
	assert.equal(items.length, 1, 'the quickstart leaves one decision held');
	await page.goto(`${env.server.url}projects/${PROJECT}/decisions/${items[0].id}`);
	await page.getByTestId('diff-row').first().waitFor(timeout);
	await page.getByTestId('current-schema').waitFor(timeout);
	assert.equal(await page.getByTestId('decision-class').innerText(), 'breaking');
	assert.equal(await page.getByTestId('decision-verdict').innerText(), 'held');
	await docsShot(page, 'decision');

	await page.goto(`${env.server.url}projects/${PROJECT}/pipelines/shop/cursors/orders`);
	await page.getByTestId('cursor-version').waitFor(timeout);
	assert.match(await page.getByTestId('cursor-value').innerText(), /\S/);
	await docsShot(page, 'cursor');
	assert.deepEqual(problems, []);
	await page.close();
});

/** What has the focus: its test id, tag, text, and whether a ring shows where it is. */
function focused(page) {
	return page.evaluate(() => {
		const el = document.activeElement;
		if (!el || el === document.body) {
			return { testid: null, tag: 'body', text: '', ring: false };
		}
		const style = getComputedStyle(el);
		const outline = style.outlineStyle !== 'none' && parseFloat(style.outlineWidth) > 0;
		const shadow = style.boxShadow !== 'none';
		return {
			testid: el.getAttribute('data-testid'),
			tag: el.tagName.toLowerCase(),
			text: (el.textContent ?? '').trim(),
			ring: outline || shadow,
			describe: `${el.tagName.toLowerCase()}[data-testid=${el.getAttribute('data-testid')}] "${(el.textContent ?? '').trim().slice(0, 40)}"`
		};
	});
}

/**
 * Presses `key` (Tab or Shift+Tab) until the focus is on an element `wanted` accepts, checking
 * on the way that every focused element shows its ring; fails after `max` presses.
 */
async function tabTo(page, wanted, { key = 'Tab', max = 40 } = {}) {
	const seen = [];
	for (let i = 0; i < max; i++) {
		await page.keyboard.press(key);
		const now = await focused(page);
		seen.push(now.describe ?? now.tag);
		if (now.tag !== 'body') {
			assert.ok(now.ring, `the focus on ${now.describe} shows no outline or box-shadow`);
		}
		if (wanted(now)) {
			return now;
		}
	}
	assert.fail(`${key} never reached the element wanted; it went through: ${seen.join(', ')}`);
}

test('by keyboard alone: sign in, open app-log, pause it with a reason, resume it', async () => {
	const { page, problems } = await open(env.browser);
	await page.goto(`${env.server.url}projects/${PROJECT}/pipelines`);
	await page.getByTestId('token').waitFor(timeout);

	// Sign in: Tab to the token field, type, Enter submits the form.
	await tabTo(page, (f) => f.testid === 'token');
	await page.keyboard.type(ADMIN.token);
	await page.keyboard.press('Enter');
	const appLog = page.locator('[data-testid="pipeline-row"][data-pipeline="app-log"]');
	await appLog.getByTestId('state').filter({ hasText: 'idle' }).waitFor(timeout);
	await shot(page, 'keyboard-signed-in');

	// To app-log's link; one Tab too far and Shift+Tab back lands on it again.
	const isAppLog = (f) => f.testid === 'pipeline-link' && f.text === 'app-log';
	await tabTo(page, isAppLog);
	const past = await tabTo(page, (f) => !isAppLog(f), { max: 1 });
	assert.notEqual(past.tag, 'body');
	await tabTo(page, isAppLog, { key: 'Shift+Tab', max: 1 });
	await page.keyboard.press('Enter');
	await page.getByTestId('pipeline-id').filter({ hasText: 'app-log' }).waitFor(timeout);
	assert.equal(new URL(page.url()).pathname, `/projects/${PROJECT}/pipelines/app-log`);

	// Pause: Tab to the reason, type it, Enter submits; the focus moves to Resume.
	await tabTo(page, (f) => f.testid === 'pause-reason');
	await page.keyboard.type('rotating the log by keyboard');
	await page.keyboard.press('Enter');
	await page.getByTestId('paused-reason').filter({ hasText: 'rotating the log by keyboard' }).waitFor(timeout);
	assert.equal(await page.getByTestId('state').innerText(), 'paused');
	assert.match(await page.getByTestId('paused-reason').innerText(), new RegExp(`^paused by operator:${ADMIN.name} `));
	await page.waitForFunction(() => document.activeElement?.getAttribute('data-testid') === 'resume', null, timeout);
	const onResume = await focused(page);
	assert.ok(onResume.ring, 'the Resume button that took the focus shows its ring');
	await shot(page, 'keyboard-paused');

	// Resume with Space; the focus goes back to the pause reason.
	await page.keyboard.press('Space');
	await page.getByTestId('state').filter({ hasText: 'idle' }).waitFor(timeout);
	assert.equal(await page.getByTestId('paused-reason').count(), 0);
	await page.waitForFunction(() => document.activeElement?.getAttribute('data-testid') === 'pause-reason', null, timeout);
	assert.ok((await focused(page)).ring);

	// The catalog recorded both, by alice, with the reason as typed.
	const events = await env.server.rpc({ op: 'pipeline_events', pipeline: 'app-log', after: 0, limit: 100 });
	const last = events.slice(-2);
	assert.deepEqual(
		last.map((e) => [e.kind.type, e.kind.reason ?? null, e.actor.name]),
		[
			['pipeline_paused', 'rotating the log by keyboard', ADMIN.name],
			['pipeline_resumed', null, ADMIN.name]
		]
	);
	const pipeline = await env.server.rpc({ op: 'get_pipeline', pipeline: 'app-log' });
	assert.equal(pipeline.paused, null, 'app-log runs again');
	await shot(page, 'keyboard-resumed');
	assert.deepEqual(problems, []);
	await page.close();
});

test('by keyboard on a phone: the overview is reachable and the ring shows', async () => {
	const { page, problems } = await open(env.browser, { width: 390, height: 844 });
	await page.goto(env.server.console());
	await page.getByTestId('pipeline-row').first().waitFor(timeout);
	const f = await tabTo(page, (x) => x.testid === 'pipeline-link' && x.text === 'shop');
	assert.ok(f.ring);
	await page.keyboard.press('Enter');
	await page.getByTestId('pipeline-id').filter({ hasText: 'shop' }).waitFor(timeout);
	// shop is held: instead of Resume the page says deciding resumes it.
	await page.getByTestId('resume-held').waitFor(timeout);
	assert.equal(await page.getByTestId('resume').count(), 0);
	assert.ok(!(await overflows(page)), 'the pipeline page fits a phone');
	await shot(page, 'keyboard-phone-shop');
	assert.deepEqual(problems, []);
	await page.close();
});
