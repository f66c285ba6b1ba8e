// devmail.mjs - drives the dashboard's dev-mode Mail tab (server/ui/mail.js)
// in Debian's headless chromium (playwright-core, executablePath
// /usr/bin/chromium: nothing downloaded). Run by
// tests/integration/test_dev_mail.py against a running `txmail run --dev`
// whose sink already captured the messages that test sent:
//
//   MAIL_URL=http://127.0.0.1:PORT MAIL_KEY=<key> MAIL_ARTIFACTS=<dir> \
//   MAIL_COUNT=<n captured> MAIL_HTML_SUBJECT=<subject of the HTML mail> \
//   MAIL_PIXEL=<url prefix nothing may fetch, comma-separated> node devmail.mjs
//
// Checks, in order: the Mail tab appears (dev mode), the list shows the
// captured messages newest first, and a message sent while the tab is open
// appears at the top without a reload; the search box narrows the list; the
// HTML mail opens in a sandboxed iframe (no allow-scripts, no
// allow-same-origin) whose text is there, whose script did not run, whose
// inline cid: image shows, and NOTHING it references (MAIL_PIXEL prefixes:
// remote images, styles, fonts, frames, a refresh) is requested; markup in a
// subject stays text; the Text and Raw tabs show the parts; an attachment
// downloads with its name and bytes. Console errors fail, except Chromium's
// reports of what the frame's CSP and sandbox refused (kept in the report
// as "blocked"). Screenshots go to MAIL_ARTIFACTS.
// Prints one JSON line (the report) and exits 0, or prints FAIL: and exits 1.
import { chromium } from 'playwright-core';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const base = process.env.MAIL_URL;
const key = process.env.MAIL_KEY;
const out = process.env.MAIL_ARTIFACTS;
const count = Number(process.env.MAIL_COUNT || 1);
const htmlSubject = process.env.MAIL_HTML_SUBJECT;
const forbidden = String(process.env.MAIL_PIXEL || '').split(',').filter(Boolean);
const T = Number(process.env.MAIL_TIMEOUT_MS || 10000);
const report = { screenshots: [], console: [], blocked: [], forbidden_requests: [] };

mkdirSync(out, { recursive: true });

class Fail extends Error {}
const fail = (msg) => { throw new Fail(msg); };
let step = 'start';
let page = null;

async function shot(name) {
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
	if (r.status !== 202)
		fail('POST /v1/messages: got ' + r.status + ' ' + (await r.text()));
	return (await r.json()).id;
}

const idKey = (id) => id.split('-').map(Number);
const newer = (a, b) => { const x = idKey(a), y = idKey(b); return x[0] !== y[0] ? x[0] > y[0] : x[1] > y[1]; };

const browser = await chromium.launch({
	executablePath: '/usr/bin/chromium',
	headless: true,
	args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run',
		'--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
let rc = 0;
try {
	const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 }, acceptDownloads: true });
	// Chromium reports some loads its CSP then refuses (CSS backgrounds, fonts) as requests
	// too: what counts is a request that got an answer, or failed for any other reason
	// (the servers behind MAIL_PIXEL are checked by the caller as well)
	const isForbidden = (r) => forbidden.some((f) => r.url().startsWith(f));
	ctx.on('requestfinished', (r) => {
		if (isForbidden(r))
			report.forbidden_requests.push(r.url());
	});
	ctx.on('requestfailed', (r) => {
		if (!isForbidden(r))
			return;
		const why = (r.failure() && r.failure().errorText) || '';
		if (/^csp$|BLOCKED_BY_CSP|BLOCKED_BY_CLIENT|BLOCKED_BY_RESPONSE/.test(why))
			report.blocked.push('request refused: ' + r.url() + ' (' + why + ')');
		else
			report.forbidden_requests.push(r.url() + ' (' + why + ')');
	});
	page = await ctx.newPage();
	page.on('console', (m) => {
		if (m.type() !== 'error' && m.type() !== 'warning')
			return;
		const text = m.text();
		// what the frame's CSP and sandbox refused: expected, kept as evidence
		if (/Content Security Policy|sandboxed|Blocked script execution|Blocked form submission|Refused to/.test(text)) {
			report.blocked.push(text.slice(0, 300));
			return;
		}
		if (m.type() === 'error')
			report.console.push(text + ' (' + ((m.location() && m.location().url) || '') + ')');
	});
	page.on('pageerror', (e) => report.console.push('page error: ' + e.message));

	step = 'the Mail tab appears in dev mode';
	await page.goto(base + '/#key=' + encodeURIComponent(key));
	await page.locator('#app').waitFor({ state: 'visible', timeout: T });
	await page.locator('#tab-mail').waitFor({ state: 'visible', timeout: T });
	await page.locator('#tab-mail').click();
	await page.locator('#mail').waitFor({ state: 'visible', timeout: T });

	step = 'the list, newest first';
	const rows = page.locator('#mail-list li[data-id]');
	await rows.nth(count - 1).waitFor({ timeout: T });
	let ids = await rows.evaluateAll((ls) => ls.map((l) => l.dataset.id));
	for (let i = 1; i < ids.length; i++)
		if (!newer(ids[i - 1], ids[i]))
			fail('list not newest first: ' + ids.join(', '));
	report.list = await rows.evaluateAll((ls) => ls.map((l) => l.textContent));

	step = 'live: a message sent while the tab is open comes to the top';
	const liveSubject = 'live ' + Date.now();
	await send({ from: 'live@example.com', to: 'watcher@example.com', subject: liveSubject, text: 'arrived live' });
	await page.locator('#mail-list li[data-id]').first().filter({ hasText: liveSubject }).waitFor({ timeout: T });
	ids = await rows.evaluateAll((ls) => ls.map((l) => l.dataset.id));
	if (ids.length !== count + 1)
		fail('after the live message: got ' + ids.length + ' rows, want ' + (count + 1));
	await shot('list.png');

	step = 'markup in a subject stays text';
	if (await page.locator('#mail-list #pwn-subject').count())
		fail('a subject was rendered as markup');

	step = 'search';
	await page.fill('#mail-q', 'tracking');
	await page.locator('#mail-search button[type=submit]').click();
	await page.waitForFunction(() => {
		const ls = [...document.querySelectorAll('#mail-list li[data-id]')];
		return ls.length === 1;
	}, null, { timeout: T });
	report.search = await rows.evaluateAll((ls) => ls.map((l) => l.textContent));
	if (!report.search[0].includes(htmlSubject))
		fail('search "tracking": got ' + JSON.stringify(report.search));
	await page.fill('#mail-q', '');
	await page.locator('#mail-search button[type=submit]').click();
	await rows.nth(count).waitFor({ timeout: T });

	step = 'the HTML mail in a sandboxed frame';
	await page.locator('#mail-list li[data-id]', { hasText: htmlSubject }).click();
	const frameEl = page.locator('#mail-frame');
	await frameEl.waitFor({ timeout: T });
	const sandbox = await frameEl.getAttribute('sandbox');
	if (sandbox !== '')
		fail('the frame has sandbox=' + JSON.stringify(sandbox) + ', want "" (nothing allowed)');
	const frame = page.frameLocator('#mail-frame');
	await frame.locator('h1', { hasText: 'Your order' }).waitFor({ timeout: T });
	await page.waitForFunction(() => {
		const f = document.getElementById('mail-frame');
		return f && f.srcdoc.indexOf('data:image/png;base64,') >= 0;
	}, null, { timeout: T });
	await page.waitForTimeout(700);   // whatever the frame would fetch, it would have asked for by now
	report.frame_text = (await frame.locator('body').textContent()).slice(0, 200);
	report.inline_image_loaded = await frame.locator('img#logo').evaluate((i) => i.complete && i.naturalWidth > 0);
	if (!report.inline_image_loaded)
		fail('the inline cid: image did not show');
	if (await page.evaluate(() => window.pwned || (window.top && window.top.pwned)))
		fail('a script of the mail ran');
	if (await frame.locator('#ran').count())
		fail('a script of the mail ran inside the frame');
	await shot('html.png');

	step = 'the text part';
	await page.locator('#mail-tabs button[data-mail-tab=text]').click();
	await page.locator('#mail-text', { hasText: 'plain part of the order' }).waitFor({ timeout: T });
	await shot('text.png');

	step = 'the raw source';
	await page.locator('#mail-tabs button[data-mail-tab=raw]').click();
	await page.locator('#mail-raw', { hasText: 'Content-Type: multipart/' }).waitFor({ timeout: T });
	report.raw_head = (await page.locator('#mail-raw').textContent()).slice(0, 120);
	await shot('raw.png');

	step = 'an attachment downloads';
	await page.locator('#mail-tabs button[data-mail-tab=attachments]').click();
	const att = page.locator('#mail-attachments li', { hasText: 'report.txt' });
	await att.waitFor({ timeout: T });
	await shot('attachments.png');
	const [dl] = await Promise.all([page.waitForEvent('download', { timeout: T }), att.locator('button').click()]);
	report.download = { name: dl.suggestedFilename() };
	const got = readFileSync(await dl.path(), 'utf8');
	report.download.body = got;
	if (dl.suggestedFilename() !== 'report.txt' || got !== 'attached report\n')
		fail('download: got ' + JSON.stringify(report.download));

	step = 'nothing the mail references was requested';
	if (report.forbidden_requests.length)
		fail('the browser requested ' + report.forbidden_requests.join(', '));
	step = 'no console errors';
	if (report.console.length)
		fail('console errors: ' + report.console.join(' | '));
	console.log(JSON.stringify(report));
} catch (e) {
	rc = 1;
	console.log('FAIL: [' + step + '] ' + (e instanceof Fail ? e.message : e.message.split('\n')[0]));
	if (!(e instanceof Fail))
		console.log(e.stack);
	if (page)
		await shot('failure.png').catch(() => {});
	console.log(JSON.stringify(report));
} finally {
	await browser.close();
}
process.exit(rc);
