// dashboard.mjs - drives the txmail dashboard in Debian's headless chromium
// (playwright-core, executablePath /usr/bin/chromium: nothing downloaded).
// Run by tests/integration/test_dashboard.py against a running
// `txmail run --dev`:
//
//   DASH_URL=http://127.0.0.1:PORT DASH_KEY=<key> DASH_ARTIFACTS=<dir> node dashboard.mjs
//
// Checks, in order: without a key the page shows the key form and makes no
// /v1, /metrics or /dev request; a wrong key is refused; /#key=<key> opens
// it, the fragment leaves the address bar and the key is in no URL; messages
// sent through the API (delivered, deferred and rejected ones, via the dev
// sink's defer+/reject+ local parts) show in the live feed, move the rates
// and fill the destination table (with the last error); a lookup by id shows
// the recipients and the timeline, markup in data stays text; "Forget key"
// clears it. Any console error or CSP violation fails (Chromium enforces the
// page's Content-Security-Policy). Screenshots go to DASH_ARTIFACTS.
// Prints one JSON line (the report) and exits 0, or prints FAIL: and exits 1.
import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

const base = process.env.DASH_URL;
const key = process.env.DASH_KEY;
const out = process.env.DASH_ARTIFACTS;
const T = Number(process.env.DASH_TIMEOUT_MS || 10000);   // one wait's deadline
const report = { screenshots: [], console: [], requests_without_key: [] };

mkdirSync(out, { recursive: true });

class Fail extends Error {}
const fail = (msg) => { throw new Fail(msg); };
let step = 'start';
let current = null;    // the page a failure screenshot is taken of

async function shot(page, name) {
	const path = join(out, name);
	await page.screenshot({ path, fullPage: true });
	report.screenshots.push(path);
}

async function send(msg) {
	const r = await fetch(base + '/v1/messages', {
		method: 'POST',
		headers: { Authorization: 'Bearer ' + key, 'Content-Type': 'application/json' },
		body: JSON.stringify(msg),
	});
	const body = await r.json();
	if (r.status !== 202)
		fail('POST /v1/messages: got ' + r.status + ' ' + JSON.stringify(body));
	return body.id;
}

async function text(page, sel) {
	return (await page.locator(sel).first().textContent()) || '';
}

const browser = await chromium.launch({
	executablePath: '/usr/bin/chromium',
	headless: true,
	args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run',
		'--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
let rc = 0;
try {
	const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 } });
	const requests = [];
	ctx.on('request', (r) => requests.push(r.url()));
	// console errors per page; allowed: the dev-mail probe's 404 (no viewer in
	// this build) and, on the wrong-key page only, the 401 it provokes
	function watch(page, label, allow) {
		page.on('console', (m) => {
			if (m.type() !== 'error')
				return;
			const where = (m.location() && m.location().url) || '';
			if (allow && allow(m.text(), where))
				return;
			report.console.push(label + ': ' + m.text() + (where ? ' (' + where + ')' : ''));
		});
		page.on('pageerror', (e) => report.console.push(label + ': page error: ' + e.message));
	}
	const probe404 = (t, where) => /status of 404/.test(t) && /\/dev\/mail$/.test(where);

	// 1. no key: the form, and not one request for data
	step = 'no key: the form, and not one request for data';
	const p1 = await ctx.newPage();
	watch(p1, 'no key', probe404);
	current = p1;
	await p1.goto(base + '/');
	await p1.locator('#login').waitFor({ state: 'visible', timeout: T });
	await p1.waitForTimeout(1000);   // the page would scrape at once; give it the chance
	if (await p1.locator('#app').isVisible())
		fail('the dashboard is visible without a key');
	report.requests_without_key = requests.slice();
	const leaked = requests.filter((u) => /\/(v1|metrics|dev)(\/|$|\?)/.test(new URL(u).pathname + '/'));
	if (leaked.length)
		fail('without a key the page requested ' + leaked.join(', '));
	await shot(p1, 'login.png');

	// 2. a wrong key is refused (401), and the form says so
	step = 'a wrong key is refused (401), and the form says so';
	await p1.fill('#key', 'txm_wrong_key');
	const p1err = report.console.length, p1req = requests.length;
	await p1.locator('#login button[type=submit]').click();
	await p1.locator('#login-error').filter({ hasText: '401' }).waitFor({ timeout: T });
	const wrongKeyCalls = requests.slice(p1req).filter((u) => /\/(v1|metrics|dev)\b/.test(new URL(u).pathname));
	if (wrongKeyCalls.some((u) => new URL(u).pathname !== '/v1/whoami'))
		fail('a refused key still opened ' + wrongKeyCalls.join(', '));
	report.console.splice(p1err).filter((l) => !/status of 401/.test(l)).forEach((l) => report.console.push(l));
	await p1.close();

	// 3. the key in the fragment
	step = 'the key in the fragment';
	const p = await ctx.newPage();
	watch(p, 'dashboard', probe404);
	current = p;
	const before = requests.length;
	// the first event stream ends at once after one id: the page must
	// reconnect, resuming with Last-Event-ID (fetch, as EventSource cannot
	// send the Authorization header)
	const resumeId = String(Date.now() - 60000) + '-7';
	const streamIds = [];
	await p.route('**/v1/events/stream', (route) => {
		streamIds.push(route.request().headers()['last-event-id'] || '');
		if (streamIds.length === 1)
			return route.fulfill({ status: 200, contentType: 'text/event-stream',
				body: ': txmail event stream\n\nid: ' + resumeId + '\n\n' });
		return route.continue();
	});
	await p.goto(base + '/#key=' + encodeURIComponent(key));
	await p.locator('#app').waitFor({ state: 'visible', timeout: T });
	const who = await text(p, '#who');
	if (!/^project default \u00b7 key /.test(who))
		fail('header: got ' + JSON.stringify(who) + ', want the key\'s project (default) and name');
	report.who = who;
	if (p.url().includes('key='))
		fail('the key stayed in the address bar: ' + p.url());
	if (!(await p.evaluate(() => sessionStorage.getItem('txmail.key'))))
		fail('the key is not in sessionStorage');
	for (const end = Date.now() + T; streamIds.length < 2;) {
		if (Date.now() > end)
			fail('the page did not reconnect the event stream (requests: ' + JSON.stringify(streamIds) + ')');
		await p.waitForTimeout(50);
	}
	await p.waitForFunction(() => document.getElementById('feed-state').textContent === 'live', null, { timeout: T });
	const first = /^(\d+)-0$/.exec(streamIds[0]);
	if (!first || Math.abs(Number(first[1]) - (Date.now() - 15 * 60 * 1000)) > 60000)
		fail('first stream: got Last-Event-ID ' + JSON.stringify(streamIds[0]) + ', want 15 minutes ago');
	if (streamIds[1] !== resumeId)
		fail('reconnect: got Last-Event-ID ' + JSON.stringify(streamIds[1]) + ', want ' + resumeId);
	report.stream_last_event_ids = streamIds.slice();
	await p.locator('#queues tr').first().waitFor({ timeout: T });

	// 4. send: delivered, deferred (defer+), rejected (reject+), markup in the subject
	step = 'send: delivered, deferred (defer+), rejected (reject+), markup in the subject';
	const ids = [];
	for (let i = 0; i < 4; i++)
		ids.push(await send({ from: 'dash@example.com', to: 'user' + i + '@example.com', subject: 'dash ' + i, text: 'hi' }));
	ids.push(await send({ from: 'dash@example.com', to: 'ok@example.org', subject: 'org', text: 'hi' }));
	ids.push(await send({ from: 'dash@example.com', to: 'defer+later@slow.example', subject: 'slow', text: 'hi' }));
	ids.push(await send({ from: 'dash@example.com', to: 'reject+no@fail.example', subject: 'fail', text: 'hi' }));
	const xss = await send({ from: 'dash@example.com', to: 'x@example.com',
		subject: '<img src=x id=pwn onerror="window.pwned=1">"\'&', text: 'hi' });
	ids.push(xss);
	report.message_ids = ids;

	// the feed gets the events, the rates move, the destinations fill
	await p.locator('#tabs button[data-tab=messages]').click();
	await p.locator('#feed li', { hasText: 'message.delivered' }).nth(5).waitFor({ timeout: T });
	await p.locator('#feed li', { hasText: 'message.deferred' }).first().waitFor({ timeout: T });
	await p.locator('#feed li', { hasText: 'message.failed' }).first().waitFor({ timeout: T });
	report.feed_lines = await p.locator('#feed li').count();
	await p.locator('#tabs button[data-tab=overview]').click();
	const rateCard = (label) => p.locator('.card', { hasText: label }).locator('b');
	await p.waitForFunction(() => {
		const c = [...document.querySelectorAll('.card')].find((e) => e.textContent.includes('accepted / s'));
		return c && Number(c.querySelector('b').textContent) > 0;
	}, null, { timeout: T });
	await p.waitForFunction(() => {
		const c = [...document.querySelectorAll('.card')].find((e) => e.textContent.includes('delivered / s'));
		return c && Number(c.querySelector('b').textContent) > 0;
	}, null, { timeout: T });
	report.rates = {};
	for (const l of ['accepted / s', 'delivered / s', 'failed / s'])
		report.rates[l] = await rateCard(l).textContent();
	const destRow = (d) => p.locator('#destinations tr', { hasText: d });
	await destRow('example.com').waitFor({ timeout: T });
	await destRow('fail.example').waitFor({ timeout: T });
	await destRow('slow.example').waitFor({ timeout: T });
	report.destinations = await p.locator('#destinations tr').evaluateAll((rows) =>
		rows.map((r) => [...r.children].map((td) => td.textContent)));
	const fails = report.destinations.find((r) => r[0] === 'fail.example');
	if (!fails || fails[3] !== '1' || !/5\d\d/.test(fails[4]))
		fail('fail.example row: got ' + JSON.stringify(fails) + ', want 1 failed with a 5xx last error');
	const com = report.destinations.find((r) => r[0] === 'example.com');
	if (!com || Number(com[1]) < 5)
		fail('example.com row: got ' + JSON.stringify(com) + ', want at least 5 delivered');
	// the dead endpoint: a backlog and its last failure; the live one: none
	await p.locator('#webhooks tr', { hasText: process.env.DASH_HOOK_DEAD }).filter({ hasText: '\u2013 ' })
		.waitFor({ timeout: T });
	report.webhooks = await p.locator('#webhooks tr').evaluateAll((rows) =>
		rows.map((r) => [...r.children].map((td) => td.textContent)));
	const dead = report.webhooks.find((r) => r[0] === process.env.DASH_HOOK_DEAD);
	const live = report.webhooks.find((r) => r[0] === process.env.DASH_HOOK_OK);
	if (!dead || !(Number(dead[2]) >= 1) || !/refused|connect/i.test(dead[3]))
		fail('dead webhook row: got ' + JSON.stringify(dead) + ', want a backlog and a connect error');
	if (!live || live[3] !== '')
		fail('live webhook row: got ' + JSON.stringify(live) + ', want no failure');
	await p.waitForTimeout(2100);    // one more scrape: the charts show the burst and after
	await shot(p, 'overview.png');

	// 5. look a message up: recipients and timeline; the subject's markup is text
	step = "look a message up: recipients and timeline; the subject's markup is text";
	await p.locator('#tabs button[data-tab=messages]').click();
	await p.fill('#msgid', ids[6]);
	await p.locator('#search button').click();
	await p.locator('#timeline tbody tr', { hasText: 'failed' }).first().waitFor({ timeout: T });
	report.lookup = {
		recipients: await p.locator('#recipients tbody tr').evaluateAll((rows) => rows.map((r) => r.textContent)),
		timeline: await p.locator('#timeline tbody tr').evaluateAll((rows) => rows.map((r) => r.textContent)),
	};
	if (!report.lookup.recipients.some((r) => r.includes('reject+no@fail.example') && r.includes('failed')))
		fail('lookup: got recipients ' + JSON.stringify(report.lookup.recipients));
	await shot(p, 'message.png');
	await p.fill('#msgid', xss);
	await p.locator('#search button').click();
	await p.locator('#message dd', { hasText: '<img src=x' }).waitFor({ timeout: T });
	if (await p.locator('#pwn').count() || await p.evaluate(() => window.pwned))
		fail('the subject was rendered as markup');
	await p.fill('#msgid', 'msg_doesnotexist');
	await p.locator('#search button').click();
	await p.locator('#message .bad', { hasText: 'no message' }).waitFor({ timeout: T });
	report.console = report.console.filter((l) => !/status of 404/.test(l) || !/v1\/messages\/msg_doesnotexist/.test(l));

	// the key was never in a URL
	const withKey = requests.slice(before).filter((u) => u.includes(key));
	if (withKey.length)
		fail('the key appeared in a request URL: ' + withKey.join(', '));

	// 6. forget the key: back to the form, nothing kept
	step = 'forget the key: back to the form, nothing kept';
	await p.locator('#forget').click();
	await p.locator('#login').waitFor({ state: 'visible', timeout: T });
	if (await p.evaluate(() => sessionStorage.getItem('txmail.key')))
		fail('the key is still in sessionStorage after "Forget key"');

	if (report.console.length)
		fail('console errors: ' + report.console.join(' | '));
	console.log(JSON.stringify(report));
} catch (e) {
	rc = 1;
	console.log('FAIL: [' + step + '] ' + (e instanceof Fail ? e.message : e.message.split('\n')[0]));
	if (!(e instanceof Fail))
		console.log(e.stack);
	if (current)
		await shot(current, 'failure.png').catch(() => {});
	console.log(JSON.stringify(report));
} finally {
	await browser.close();
}
process.exit(rc);
