// The console end to end, in a real headless Chromium (Debian's package, `scripts/browser`) driven
// by playwright-core: `hakiri serve` on a fresh SQLite catalog seeded through the protocol, the
// pipelines overview showing a held decision, the event log following a write live, who am I.
// Screenshots go to console/test-results/.
//
//   scripts/build-console && cargo build -p hakiri-cli && (cd console && npm run test:e2e)
//
// HAKIRI_BIN points at another hakiri binary (default: target/debug/hakiri); HAKIRI_CHROMIUM at
// another browser. A missing binary, browser or console build fails the test, saying so.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '..', '..');
const results = resolve(here, '..', 'test-results');
const bin = process.env.HAKIRI_BIN ?? join(root, 'target', 'debug', 'hakiri');
const browserPath =
	process.env.HAKIRI_CHROMIUM ??
	['/usr/bin/chromium', '/usr/bin/chromium-browser'].find((p) => existsSync(p));
const PROJECT = 'e2e';
const operator = { kind: 'operator', name: 'e2e' };

let server;
let started;
let browser;
let dir;

/** One protocol request to the server. */
async function rpc(request) {
	const response = await fetch(`${started.url}v1/projects/${PROJECT}/rpc`, {
		method: 'POST',
		headers: { authorization: `Bearer ${started.token}`, 'content-type': 'application/json' },
		body: JSON.stringify(request)
	});
	const reply = await response.json();
	assert.ok('ok' in reply, `${request.op}: ${JSON.stringify(reply)}`);
	return reply.ok.value;
}

const schema = (nameType) => ({
	columns: [
		{ name: 'id', type: 'integer', nullable: false },
		{ name: 'name', type: nameType, nullable: true }
	],
	key: ['id']
});

/** Two pipelines; `orders` ran once and holds a breaking schema change for review. */
async function seed() {
	for (const id of ['orders', 'users']) {
		await rpc({
			op: 'put_pipeline',
			spec: { id, connector: 'test', cursor_kind: 'monotonic', schedule: { every: '1h' } },
			mode: 'create',
			by: operator
		});
	}
	const lease = await rpc({ op: 'acquire', pipeline: 'orders', holder: 'worker-1', ttl_ms: 60_000 });
	const run = await rpc({ op: 'begin_run', lease, begin: { trigger: 'manual', attempt: 1 } });
	const observe = (type) =>
		rpc({ op: 'observe_schema', lease, run: run.id, stream: 'orders', schema: schema(type) });
	await observe('string');
	await rpc({
		op: 'advance',
		lease,
		run: run.id,
		stream: 'orders',
		advance: { value: 42, expected_version: null }
	});
	const held = await observe('integer');
	assert.equal(held.verdict, 'held');
	await rpc({
		op: 'finish_run',
		lease,
		run: run.id,
		finish: { outcome: { status: 'failed', error: { message: 'schema change needs review', retryable: false } } }
	});
	await rpc({ op: 'release', lease });
}

before(async () => {
	assert.ok(existsSync(bin), `no hakiri binary at ${bin}: cargo build -p hakiri-cli (or set HAKIRI_BIN)`);
	assert.ok(browserPath, 'no chromium: run scripts/browser (or set HAKIRI_CHROMIUM)');
	mkdirSync(results, { recursive: true });
	dir = mkdtempSync(join(tmpdir(), 'hakiri-console-e2e-'));
	server = spawn(
		bin,
		['--catalog', `sqlite://${dir}/`, '--project', PROJECT, '--as', 'e2e', '--output', 'json', 'serve', '--listen', '127.0.0.1:0'],
		{ stdio: ['ignore', 'pipe', 'inherit'] }
	);
	const [line] = await Promise.race([
		createInterface({ input: server.stdout })[Symbol.asyncIterator]().next().then((r) => [r.value]),
		new Promise((_, reject) => setTimeout(() => reject(new Error('hakiri serve did not start')), 20_000))
	]);
	started = JSON.parse(line);
	await seed();
	const index = await (await fetch(started.url)).text();
	assert.ok(
		!index.includes('scripts/build-console'),
		'this hakiri was compiled without the console: scripts/build-console, then cargo build -p hakiri-cli'
	);
	browser = await chromium.launch({
		executablePath: browserPath,
		headless: true,
		args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run']
	});
});

after(async () => {
	await browser?.close();
	if (server && server.exitCode === null) {
		server.kill('SIGTERM');
		await new Promise((done) => server.once('exit', done));
	}
	if (dir) {
		rmSync(dir, { recursive: true, force: true });
	}
});

/** A page that records every console error and failed script (a CSP violation is one). */
async function open() {
	const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
	const problems = [];
	page.on('console', (m) => m.type() === 'error' && problems.push(m.text()));
	page.on('pageerror', (e) => problems.push(String(e)));
	return { page, problems };
}

test('the overview shows the held decision; the log follows a write live', async () => {
	const { page, problems } = await open();
	await page.goto(started.console);
	const orders = page.locator('[data-testid="pipeline-row"][data-pipeline="orders"]');
	await orders.getByTestId('state').filter({ hasText: 'held (1)' }).waitFor({ timeout: 15_000 });
	assert.match(await orders.innerText(), /failed · manual/);
	assert.match(await orders.innerText(), /schema change needs review/);
	assert.ok(!page.url().includes('token='), `the token stays in the address bar: ${page.url()}`);
	assert.equal(new URL(page.url()).pathname, `/projects/${PROJECT}/pipelines`);
	await page.screenshot({ path: join(results, 'pipelines.png'), fullPage: true });

	await page.getByTestId('nav-events').click();
	await page.getByTestId('stream-state').filter({ hasText: 'live' }).waitFor({ timeout: 15_000 });
	const rows = page.getByTestId('event-row');
	await page.waitForFunction(() => document.querySelectorAll('[data-testid="event-row"]').length >= 10);
	const before = await rows.count();
	await rpc({ op: 'set_paused', pipeline: 'users', change: { pause: 'maintenance <b>window</b>' }, by: operator });
	const paused = page.locator('[data-testid="event-row"][data-kind="pipeline_paused"]').filter({ hasText: 'users' });
	await paused.first().waitFor({ timeout: 15_000 });
	assert.equal(await rows.count(), before + 1, 'the new event arrived without a reload');
	// Operator text is text: the markup shows as typed, no element is made of it.
	assert.match(await paused.first().innerText(), /maintenance <b>window<\/b>/);
	assert.equal(await page.locator('[data-testid="events"] b').count(), 0);
	await page.screenshot({ path: join(results, 'events.png'), fullPage: true });

	assert.deepEqual(problems, []);
	await page.close();
});

test('a deep link loads after the token is kept; who am I shows the grant', async () => {
	const { page, problems } = await open();
	await page.goto(started.console);
	await page.getByTestId('pipelines').waitFor();
	await page.goto(`${started.url}whoami`);
	await page.getByTestId('role').filter({ hasText: 'admin' }).waitFor({ timeout: 15_000 });
	assert.match(await page.getByTestId('grants').innerText(), /e2e\s+admin\s+every project/);
	await page.screenshot({ path: join(results, 'whoami.png'), fullPage: true });
	assert.deepEqual(problems, []);
	await page.close();
});

test('without a token the console asks for one', async () => {
	const { page } = await open();
	await page.goto(`${started.url}projects/${PROJECT}/events`);
	await page.getByTestId('token').waitFor();
	await page.getByTestId('token').fill(started.token);
	await page.getByRole('button', { name: 'Sign in' }).click();
	await page.getByTestId('event-count').filter({ hasText: /[1-9]\d* events/ }).waitFor({ timeout: 15_000 });
	await page.close();
});
