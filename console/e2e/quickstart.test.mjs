// `scripts/quickstart --console` end to end, as a newcomer runs it: it builds the console and the
// CLI, runs the quickstart to its first reconcile and serves the catalog; the console URL it
// prints opens on the overview with `shop` held; SIGINT stops the server and removes the work
// directory. HAKIRI_QUICKSTART_LISTEN=127.0.0.1:0 puts it on a free port. It builds the console
// and the CLI like any run of the script (a minute when nothing changed).

import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { launch, open, root, shot } from './harness.mjs';

let script;
let browser;
after(async () => {
	await browser?.close();
	if (script && script.exitCode === null && script.signalCode === null) {
		script.kill('SIGTERM');
	}
});

/** Waits until `output()` matches `pattern`, failing after `ms` with what was printed. */
async function printed(output, pattern, ms) {
	const until = Date.now() + ms;
	while (Date.now() < until) {
		const match = output().match(pattern);
		if (match) {
			return match;
		}
		if (script.exitCode !== null) {
			assert.fail(`scripts/quickstart exited (${script.exitCode}) early:\n${output()}`);
		}
		await new Promise((done) => setTimeout(done, 200));
	}
	assert.fail(`scripts/quickstart printed no ${pattern} in ${ms / 1000} s:\n${output()}`);
}

test('scripts/quickstart --console serves the held quickstart catalog until SIGINT, then cleans up', async () => {
	let out = '';
	script = spawn(join(root, 'scripts', 'quickstart'), ['--console'], {
		cwd: root,
		env: { ...process.env, HAKIRI_QUICKSTART_LISTEN: '127.0.0.1:0', HAKIRI_QUICKSTART_KEEP: '', NO_COLOR: '1' },
		stdio: ['ignore', 'pipe', 'pipe']
	});
	script.stdout.on('data', (d) => (out += d));
	script.stderr.on('data', (d) => (out += d));
	const exited = new Promise((done) => script.once('exit', (code, signal) => done({ code, signal })));

	const [, work] = await printed(() => out, /^work directory: (\S+)$/m, 600_000);
	const [, url] = await printed(() => out, /^console: (http:\/\/127\.0\.0\.1:\d+\/#token=[0-9a-f]+&project=quickstart)$/m, 120_000);
	assert.ok(existsSync(work), `the work directory ${work} exists while serving`);
	assert.match(out, /accept it with a reason/, 'it says what to try');

	browser = await launch();
	const { page, problems } = await open(browser);
	await page.goto(url);
	const shop = page.locator('[data-testid="pipeline-row"][data-pipeline="shop"]');
	await shop.getByTestId('state').filter({ hasText: 'held (1)' }).waitFor({ timeout: 15_000 });
	const appLog = page.locator('[data-testid="pipeline-row"][data-pipeline="app-log"]');
	assert.equal(await appLog.getByTestId('state').innerText(), 'idle');
	assert.match(await page.locator('.who').innerText(), /project quickstart · admin/);
	await shot(page, 'quickstart-console');
	assert.deepEqual(problems, []);
	await page.close();

	script.kill('SIGINT');
	const { code, signal } = await exited;
	assert.equal(signal, null, 'the script exits through its trap, not killed by the signal');
	assert.equal(code, 130, `exit status after SIGINT:\n${out}`);
	assert.ok(!existsSync(work), `the work directory ${work} is removed`);
	const base = new URL(url).origin;
	await assert.rejects(fetch(`${base}/healthz`), 'the server is stopped with the script');
});
