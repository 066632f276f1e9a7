// The console on the Worker: the same build served as Workers Static Assets next to the API,
// exactly as catalog-do/wrangler.toml deploys it, under `wrangler dev --local` (workerd, offline).
// A smoke test: the page loads, lists the pipelines, follows the event log live, names the
// backend, and a deep link gets the page. Screenshots go to console/test-results/worker-*.png.
//
// Needs the Worker build (scripts/build-worker, run here) and the pinned wrangler
// (scripts/setup); a missing tool fails the test, saying how to get it.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ADMIN, launch, open, root, shot } from './harness.mjs';

const PROJECT = 'smoke';
const operator = { kind: 'operator', name: ADMIN.name };

let wrangler;
let url;
let browser;
let state;

/** Runs a script of the repository, failing with its output. */
async function script(name, ...args) {
	try {
		const { stdout } = await promisify(execFile)(join(root, 'scripts', name), args, {
			maxBuffer: 16 << 20
		});
		return stdout.trim();
	} catch (e) {
		assert.fail(`scripts/${name} ${args.join(' ')} failed (run scripts/setup): ${e.stderr || e.message}`);
	}
}

/** A free loopback port. */
async function freePort() {
	const server = createServer();
	await new Promise((done) => server.listen(0, '127.0.0.1', done));
	const { port } = server.address();
	await new Promise((done) => server.close(done));
	return port;
}

async function rpc(request) {
	const response = await fetch(`${url}v1/projects/${PROJECT}/rpc`, {
		method: 'POST',
		headers: { authorization: `Bearer ${ADMIN.token}`, 'content-type': 'application/json' },
		body: JSON.stringify(request)
	});
	const reply = await response.json();
	assert.ok('ok' in reply, `${request.op}: ${JSON.stringify(reply)}`);
	return reply.ok.value;
}

before(async () => {
	await script('build-worker');
	const node = await script('worker-tools', '--where', 'node');
	const wranglerJs = await script('worker-tools', '--where', 'wrangler');
	state = mkdtempSync(join(tmpdir(), 'hakiri-console-worker-'));
	const port = await freePort();
	url = `http://127.0.0.1:${port}/`;
	const grants = JSON.stringify([{ name: ADMIN.name, token: ADMIN.token, projects: '*', role: 'admin' }]);
	// wrangler under a shell that stops it when this process's pipe closes, however it ends.
	wrangler = spawn(
		'sh',
		[
			'-c',
			// (An asynchronous list's stdin is /dev/null: the pipe is read through a copy.)
			'exec 3<&0; "$@" </dev/null & pid=$!; (read _ <&3; kill $pid 2>/dev/null) & wait $pid',
			'wrangler',
			node,
			wranglerJs,
			'dev',
			'--local',
			'--ip', '127.0.0.1',
			'--port', String(port),
			'--persist-to', state,
			'--var', `HAKIRI_TOKENS:${grants}`,
			'--log-level', 'warn',
			'--show-interactive-dev-session=false'
		],
		{
			cwd: join(root, 'catalog-do'),
			env: { ...process.env, WRANGLER_SEND_METRICS: 'false', CI: 'true' },
			stdio: ['pipe', 'pipe', 'pipe']
		}
	);
	// Its output only matters when it fails to start (offline, it warns about `Request.cf`).
	let output = '';
	const keep = (chunk) => (output = (output + chunk).slice(-4_000));
	wrangler.stdout.on('data', keep);
	wrangler.stderr.on('data', keep);
	const deadline = Date.now() + 60_000;
	for (;;) {
		const answer = await fetch(url).catch(() => null);
		if (answer?.ok) {
			break;
		}
		assert.ok(wrangler.exitCode === null, `wrangler dev exited with ${wrangler.exitCode}:\n${output}`);
		assert.ok(Date.now() < deadline, `wrangler dev did not answer at ${url} within 60 s:\n${output}`);
		await new Promise((done) => setTimeout(done, 250));
	}
	for (const id of ['orders', 'users']) {
		await rpc({
			op: 'put_pipeline',
			spec: { id, connector: 'jsonl', cursor_kind: 'monotonic', schedule: { every: '1h' } },
			mode: 'create',
			by: operator
		});
	}
	browser = await launch();
});

after(async () => {
	await browser?.close();
	if (wrangler && wrangler.exitCode === null) {
		wrangler.stdin.end();
		await new Promise((done) => wrangler.once('exit', done));
	}
	if (state) {
		rmSync(state, { recursive: true, force: true });
	}
});

test('the Worker serves the console: pipelines, the live log, the backend, a deep link', async () => {
	const { page, problems } = await open(browser);
	await page.goto(`${url}#token=${ADMIN.token}&project=${PROJECT}`);
	await page.locator('[data-testid="pipeline-row"][data-pipeline="orders"]').waitFor({ timeout: 20_000 });
	assert.equal(await page.getByTestId('pipeline-row').count(), 2);
	assert.equal(new URL(page.url()).pathname, `/projects/${PROJECT}/pipelines`);
	await shot(page, 'worker-pipelines');

	await page.getByTestId('nav-events').click();
	await page.getByTestId('stream-state').filter({ hasText: 'live' }).waitFor({ timeout: 20_000 });
	await page.locator('[data-testid="event-row"][data-kind="pipeline_created"]').nth(1).waitFor();
	await rpc({ op: 'set_paused', pipeline: 'users', change: { pause: 'smoke <i>test</i>' }, by: operator });
	const paused = page.locator('[data-testid="event-row"][data-kind="pipeline_paused"]');
	await paused.first().waitFor({ timeout: 20_000 });
	assert.match(await paused.first().innerText(), /smoke <i>test<\/i>/);
	await shot(page, 'worker-events');

	// A deep link is answered with the page (the assets' single-page fallback), which routes.
	await page.goto(`${url}whoami`);
	await page.getByTestId('backend').waitFor({ timeout: 20_000 });
	assert.equal(await page.getByTestId('backend').innerText(), 'a Cloudflare Durable Object per project');
	await shot(page, 'worker-whoami');
	assert.deepEqual(problems, []);
	await page.close();
});

test('the API stays behind the token and the console carries the same headers as on hakiri serve', async () => {
	const whoami = await fetch(`${url}v1/whoami`);
	assert.equal(whoami.status, 401);
	const page = await fetch(url);
	assert.equal(page.headers.get('content-security-policy'), "frame-ancestors 'none'; object-src 'none'; base-uri 'none'");
	assert.equal(page.headers.get('x-content-type-options'), 'nosniff');
	assert.match(await page.text(), /http-equiv="content-security-policy"/);
});

test('a file under /_app/ is served with its headers, and a missing one is 404, not the page', async () => {
	// The console's scripts, as a browser asks for them: with their type and the year's cache.
	const index = await (await fetch(url)).text();
	const start = index.match(/\/_app\/immutable\/[^"]+\.js/)?.[0];
	assert.ok(start, `the page names no script under /_app/immutable/: ${index.slice(0, 400)}`);
	const asScript = { headers: { 'sec-fetch-mode': 'cors', 'sec-fetch-dest': 'script' } };
	const file = await fetch(`${url}${start.slice(1)}`, asScript);
	assert.equal(file.status, 200);
	assert.match(file.headers.get('content-type') ?? '', /javascript/);
	assert.equal(file.headers.get('cache-control'), 'public, max-age=31536000, immutable');
	assert.equal(file.headers.get('x-content-type-options'), 'nosniff');
	// A tab holding a page from before a deploy asks for chunks the deploy removed: it must see a
	// 404, not the page as JavaScript.
	const missing = await fetch(`${url}_app/immutable/chunks/removed-by-a-deploy.js`, asScript);
	assert.equal(missing.status, 404);
	assert.doesNotMatch(missing.headers.get('content-type') ?? '', /text\/html/);
	// A page path that is no file still gets the page (the single-page fallback).
	const page = await fetch(`${url}projects/${PROJECT}/pipelines`, {
		headers: { 'sec-fetch-mode': 'navigate', 'sec-fetch-dest': 'document' }
	});
	assert.equal(page.status, 200);
	assert.match(await page.text(), /http-equiv="content-security-policy"/);
});
