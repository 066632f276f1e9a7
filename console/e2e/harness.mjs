// What every end-to-end test of the console shares: the quickstart's catalog after its first
// reconcile, `hakiri serve` over it with an admin and a read-only token, a real headless Chromium
// (Debian's package, `scripts/browser`) driven by playwright-core, and screenshots.
//
//   scripts/build-console && cargo build -p hakiri-cli && (cd console && npm run test:e2e)
//
// HAKIRI_BIN points at another hakiri binary (default: target/debug/hakiri); HAKIRI_CHROMIUM at
// another browser. A missing binary, browser or console build fails the test, saying how to get
// it: nothing is skipped.

import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { cpSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
export const root = resolve(here, '..', '..');
export const results = resolve(here, '..', 'test-results');
export const bin = process.env.HAKIRI_BIN ?? join(root, 'target', 'debug', 'hakiri');
const browserPath =
	process.env.HAKIRI_CHROMIUM ??
	['/usr/bin/chromium', '/usr/bin/chromium-browser'].find((p) => existsSync(p));

/** The quickstart's project, and the operators of the test's grants. */
export const PROJECT = 'quickstart';
export const ADMIN = { name: 'alice', token: 'e2e-admin-token-0123456789abcdef' };
export const READER = { name: 'viewer', token: 'e2e-read-token-0123456789abcdef' };

function needBinary() {
	assert.ok(existsSync(bin), `no hakiri binary at ${bin}: cargo build -p hakiri-cli (or set HAKIRI_BIN)`);
}

/** Runs the hakiri CLI on `catalog` (as `alice`), failing with its output if it fails. */
export async function hakiri(catalog, args, cwd) {
	needBinary();
	try {
		const { stdout } = await promisify(execFile)(
			bin,
			['--catalog', catalog, '--project', PROJECT, '--as', ADMIN.name, ...args],
			{ cwd, env: { ...process.env, HAKIRI_TOKEN: '' }, maxBuffer: 16 << 20 }
		);
		return stdout;
	} catch (e) {
		assert.fail(`hakiri ${args.join(' ')} failed: ${e.stderr || e.message}`);
	}
}

/**
 * The quickstart's catalog after its first reconcile, as `scripts/quickstart` leaves it before the
 * operator decides: `shop` paused with a held breaking decision (a retyped column), `app-log` idle.
 */
export async function quickstartCatalog() {
	const dir = mkdtempSync(join(tmpdir(), 'hakiri-console-e2e-'));
	cpSync(join(root, 'examples', 'quickstart'), dir, { recursive: true });
	const catalog = `sqlite://${dir}/.hakiri/`;
	await hakiri(catalog, ['apply', '-f', 'hakiri.toml'], dir);
	await hakiri(catalog, ['reconcile', '--once'], dir);
	return { dir, catalog };
}

/**
 * `hakiri serve` over `catalog` on a free loopback port, with two grants: `alice` (admin) and
 * `viewer` (read). Returns `{ url, console, rpc, stop }`; `rpc(request, token?)` sends one
 * protocol request as alice (or `token`) and returns its value, failing on an error.
 */
export async function serve(catalog, dir) {
	needBinary();
	const grants = join(dir, 'grants.json');
	writeFileSync(
		grants,
		JSON.stringify([
			{ name: ADMIN.name, token: ADMIN.token, projects: '*', role: 'admin' },
			{ name: READER.name, token: READER.token, projects: [PROJECT], role: 'read' }
		])
	);
	const child = spawn(
		bin,
		['--catalog', catalog, '--project', PROJECT, '--output', 'json', 'serve', '--listen', '127.0.0.1:0', '--grants', grants],
		{ stdio: ['ignore', 'pipe', 'inherit'] }
	);
	const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
	const [line] = await Promise.race([
		lines.next().then((r) => [r.value]),
		new Promise((_, reject) => setTimeout(() => reject(new Error('hakiri serve did not start in 20 s')), 20_000))
	]);
	const started = JSON.parse(line);
	const index = await (await fetch(started.url)).text();
	assert.ok(
		!index.includes('scripts/build-console'),
		'this hakiri was compiled without the console: scripts/build-console, then cargo build -p hakiri-cli'
	);

	async function rpc(request, token = ADMIN.token) {
		const response = await fetch(`${started.url}v1/projects/${PROJECT}/rpc`, {
			method: 'POST',
			headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
			body: JSON.stringify(request)
		});
		const reply = await response.json();
		assert.ok('ok' in reply, `${request.op}: ${JSON.stringify(reply)}`);
		return reply.ok.value;
	}

	async function stop() {
		if (child.exitCode === null) {
			child.kill('SIGTERM');
			await new Promise((done) => child.once('exit', done));
		}
	}

	return {
		url: started.url,
		/** The console's address, signed in as `token` (alice by default). */
		console: (token = ADMIN.token, path = '') =>
			`${started.url}${path}#token=${encodeURIComponent(token)}&project=${PROJECT}`,
		rpc,
		stop
	};
}

/** A headless Chromium. */
export async function launch() {
	assert.ok(browserPath, 'no chromium: run scripts/browser (or set HAKIRI_CHROMIUM)');
	mkdirSync(results, { recursive: true });
	return chromium.launch({
		executablePath: browserPath,
		headless: true,
		args: [
			'--no-sandbox',
			'--disable-gpu',
			'--disable-dev-shm-usage',
			'--disable-background-networking',
			'--disable-component-update',
			'--disable-sync',
			'--no-first-run'
		]
	});
}

/**
 * A page that records every console error and failed script (a CSP violation is one) in
 * `problems`; 1280×800 unless `viewport` says otherwise.
 */
export async function open(browser, viewport = { width: 1280, height: 800 }) {
	const page = await browser.newPage({ viewport });
	const problems = [];
	page.on('console', (m) => m.type() === 'error' && problems.push(m.text()));
	page.on('pageerror', (e) => problems.push(String(e)));
	return { page, problems };
}

/** Saves a full-page screenshot as test-results/`name`.png. */
export async function shot(page, name) {
	await page.screenshot({ path: join(results, `${name}.png`), fullPage: true });
}

/** Whether the page is wider than its window (a layout that breaks on a narrow screen). */
export async function overflows(page) {
	return page.evaluate(() => document.documentElement.scrollWidth > window.innerWidth + 1);
}

/** The quickstart's catalog, served, and a browser: everything a test file needs, torn down by `close`. */
export async function setUp() {
	const { dir, catalog } = await quickstartCatalog();
	const server = await serve(catalog, dir);
	const browser = await launch();
	return {
		dir,
		catalog,
		server,
		browser,
		async close() {
			await browser.close();
			await server.stop();
			rmSync(dir, { recursive: true, force: true });
		}
	};
}
