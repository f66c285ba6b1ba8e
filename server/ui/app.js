/*
 * app.js - the txmail operator dashboard (index.html). Plain JS, no library.
 *
 * The key: typed into the form, or given as /#key=<key> (read, then removed
 * from the address bar; a fragment never reaches the server), kept in
 * sessionStorage (this tab only) and sent only as Authorization: Bearer.
 * Without a key nothing is fetched: no /v1 call, no /metrics scrape.
 *
 * What it shows, and where from:
 *  - rates and 15-minute charts: counters of GET /metrics, scraped every
 *    SCRAPE_MS; a rate is the difference of two scrapes (a counter that went
 *    down is a restarted process: its new value is the increase). /metrics
 *    is this process's counters for every project (it has no key).
 *  - queues per lane: the queue gauges of /metrics (Redis, all processes).
 *  - the live feed and the destinations table: GET /v1/events/stream (the
 *    key's project only), read with fetch() because EventSource cannot send
 *    an Authorization header; resumed with Last-Event-ID after a drop. The
 *    first connection asks for the last 15 minutes, so the destination table
 *    (per recipient domain: delivered / deferred now / failed, and the last
 *    error) starts from what the server retained.
 *  - webhook endpoints: GET /v1/webhooks (the key's project).
 *  - message lookup: GET /v1/messages/{id} (404 for another project's).
 *  - whose: GET /v1/whoami (the key's project, or every one for an admin
 *    key), asked first: a key it refuses opens nothing else.
 * Everything rendered from data goes through textContent, never innerHTML.
 *
 * The hook for the dev-mail viewer (/ui/mail.js, loaded only when
 * GET /dev/mail answers 200): window.txmail = { api(path, init) -> fetch
 * promise with the key's Authorization header, key() -> the key,
 * el(tag, cls, text) }, and <section id="mail"> receives a "txmail:show"
 * event each time its tab is opened.
 */
'use strict';
(function () {
	var KEY_STORE = 'txmail.key';
	var SCRAPE_MS = 2000;
	var WINDOW_MS = 15 * 60 * 1000;
	var FEED_MAX = 200;          /* feed lines kept in the page */
	var RCPT_MAX = 50000;        /* recipients tracked for the destination table */

	var key = null;
	var timers = [];
	var streamAbort = null;
	var samples = [];            /* [{t, m: parsed metrics}] within WINDOW_MS */
	var rcpts = new Map();       /* message_id + ' ' + recipient -> {dest, status} */
	var dests = new Map();       /* domain -> {delivered, deferred, failed, err, errAt} */
	var mailLoaded = false;

	function $(id) { return document.getElementById(id); }

	function el(tag, cls, text) {
		var e = document.createElement(tag);
		if (cls)
			e.className = cls;
		if (text !== undefined && text !== null)
			e.textContent = String(text);
		return e;
	}

	function clear(e) { while (e.firstChild) e.removeChild(e.firstChild); }

	function row(tbody, cells) {
		var tr = el('tr');
		cells.forEach(function (c) {
			var td = el('td', c && c.cls, c && typeof c === 'object' ? c.text : c);
			tr.appendChild(td);
		});
		tbody.appendChild(tr);
		return tr;
	}

	function emptyRow(tbody, ncols, text) {
		var tr = el('tr'), td = el('td', 'empty', text);
		td.colSpan = ncols;
		tr.appendChild(td);
		tbody.appendChild(tr);
	}

	function setState(text, cls) {
		var s = $('state');
		s.textContent = text;
		s.className = cls || 'muted';
	}

	/* --- the key --------------------------------------------------------- */

	function keyFromFragment() {
		var h = location.hash;
		if (h.length < 2)
			return;
		var params = new URLSearchParams(h.slice(1));
		var k = params.get('key');
		if (k === null)
			return;
		history.replaceState(null, '', location.pathname + location.search);
		if (k.trim() !== '')
			sessionStorage.setItem(KEY_STORE, k.trim());
	}

	function api(path, init) {
		init = init || {};
		var headers = new Headers(init.headers || {});
		if (!key)
			return Promise.reject(new Error('no API key'));
		headers.set('Authorization', 'Bearer ' + key);
		init.headers = headers;
		return fetch(path, init).then(function (r) {
			if (r.status === 401) {
				forget('the server refused this key (401)');
				throw new Error('key refused');
			}
			return r;
		});
	}

	function showLogin(message) {
		$('app').hidden = true;
		$('forget').hidden = true;
		$('login').hidden = false;
		$('login-error').textContent = message || '';
		setState('');
		$('key').focus();
	}

	function forget(message) {
		key = null;
		sessionStorage.removeItem(KEY_STORE);
		timers.forEach(function (t) { clearInterval(t); clearTimeout(t); });
		timers = [];
		if (streamAbort)
			streamAbort.abort();
		streamAbort = null;
		$('who').textContent = '';
		showLogin(message);
	}

	/* --- /metrics -------------------------------------------------------- */

	/* parse - Prometheus text into [{name, labels, value}]; lines it cannot read are skipped. */
	function parse(text) {
		var out = [];
		text.split('\n').forEach(function (l) {
			if (!l || l[0] === '#')
				return;
			var m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)/.exec(l);
			if (!m)
				return;
			var labels = {};
			if (m[3]) {
				var re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g, x;
				while ((x = re.exec(m[3])) !== null)
					labels[x[1]] = x[2].replace(/\\n/g, '\n').replace(/\\(.)/g, '$1');
			}
			var v = Number(m[4]);
			if (!isNaN(v))
				out.push({ name: m[1], labels: labels, value: v });
		});
		return out;
	}

	/* sum - the sum of the series called name whose labels match want; undefined when none. */
	function sum(ms, name, want) {
		var s, found = false;
		for (var i = 0; i < ms.length; i++) {
			var m = ms[i];
			if (m.name !== name)
				continue;
			var ok = true;
			for (var k in want) {
				var w = want[k];
				if (Array.isArray(w) ? w.indexOf(m.labels[k]) < 0 : m.labels[k] !== w) {
					ok = false;
					break;
				}
			}
			if (!ok)
				continue;
			s = (found ? s : 0) + m.value;
			found = true;
		}
		return found ? s : undefined;
	}

	var RATES = [
		{ label: 'accepted / s', f: function (ms) { return sum(ms, 'txmail_messages_accepted_total', {}); } },
		{ label: 'delivered / s', f: function (ms) { return sum(ms, 'txmail_recipients_total', { status: 'delivered' }); } },
		{ label: 'deferred / s', f: function (ms) {
			/* deferred attempts (a recipient deferred twice counts twice) */
			var v = sum(ms, 'txmail_delivery_attempts_total', { result: 'deferred' });
			return v !== undefined ? v : sum(ms, 'txmail_recipients_total', { status: 'deferred' });
		} },
		{ label: 'failed / s', f: function (ms) { return sum(ms, 'txmail_recipients_total', { status: ['failed', 'expired'] }); } },
		{ label: 'webhooks ok / s', f: function (ms) { return sum(ms, 'txmail_webhook_attempts_total', { result: 'success' }); } },
		{ label: 'HTTP req / s', f: function (ms) { return sum(ms, 'txmail_http_requests_total', {}); } },
	];

	/* rateSeries - [{t, v}] of the i-th rate over the samples kept. */
	function rateSeries(i) {
		var out = [];
		for (var j = 1; j < samples.length; j++) {
			var a = RATES[i].f(samples[j - 1].m), b = RATES[i].f(samples[j].m);
			var dt = (samples[j].t - samples[j - 1].t) / 1000;
			if (a === undefined || b === undefined || dt <= 0)
				continue;
			out.push({ t: samples[j].t, v: (b >= a ? b - a : b) / dt });
		}
		return out;
	}

	function fmt(v) {
		if (v === undefined || v === null)
			return '\u2013';
		if (v >= 100)
			return v.toFixed(0);
		if (v >= 10)
			return v.toFixed(1);
		return v.toFixed(2);
	}

	function draw(canvas, series, now) {
		var dpr = window.devicePixelRatio || 1;
		var w = canvas.clientWidth || 180, h = canvas.clientHeight || 36;
		canvas.width = Math.round(w * dpr);
		canvas.height = Math.round(h * dpr);
		var g = canvas.getContext('2d');
		g.scale(dpr, dpr);
		g.clearRect(0, 0, w, h);
		g.strokeStyle = '#d9dde3';
		g.beginPath();
		g.moveTo(0, h - 0.5);
		g.lineTo(w, h - 0.5);
		g.stroke();
		g.fillStyle = '#9aa1ab';
		g.font = '9px system-ui, sans-serif';
		g.fillText('\u221215 min', 0, 9);
		if (series.length < 1)
			return;
		var max = 0;
		series.forEach(function (p) { if (p.v > max) max = p.v; });
		if (max <= 0)
			max = 1;
		/* one bar per scrape interval (at least 2 px, so a burst of a few
		 * seconds stays visible in 15 minutes), and a line over the tops */
		var xs = function (t) { return w - (now - t) / WINDOW_MS * w; };
		g.fillStyle = 'rgba(29,79,145,0.35)';
		series.forEach(function (p, k) {
			var x1 = xs(p.t), x0 = k > 0 ? xs(series[k - 1].t) : x1 - 2;
			if (x1 - x0 < 2)
				x0 = x1 - 2;
			var bh = p.v / max * (h - 12);
			g.fillRect(x0, h - 1 - bh, x1 - x0, bh);
		});
		g.strokeStyle = '#1d4f91';
		g.lineWidth = 1.2;
		g.beginPath();
		series.forEach(function (p, k) {
			var y = h - 1 - p.v / max * (h - 12);
			if (k === 0)
				g.moveTo(xs(p.t) - 2, y);
			g.lineTo(xs(p.t), y);
		});
		g.stroke();
	}

	function buildRates() {
		var grid = $('rates');
		clear(grid);
		RATES.forEach(function (r, i) {
			var d = el('div', 'card'), b = el('b', null, '\u2013'), s = el('span', null, r.label);
			var c = el('canvas'), peak = el('i', 'peak', '');
			c.setAttribute('aria-label', r.label + ', last 15 minutes');
			d.dataset.rate = String(i);
			d.appendChild(b);
			d.appendChild(s);
			d.appendChild(peak);
			d.appendChild(c);
			grid.appendChild(d);
			r.card = d;
		});
	}

	function renderRates(now) {
		RATES.forEach(function (r, i) {
			var series = rateSeries(i);
			r.card.querySelector('b').textContent = series.length ? fmt(series[series.length - 1].v) : '\u2013';
			var peak = 0;
			series.forEach(function (p) { if (p.v > peak) peak = p.v; });
			r.card.title = 'peak ' + fmt(peak) + ' / s in the last 15 minutes';
			r.card.querySelector('i').textContent = series.length ? 'peak ' + fmt(peak) : '';
			draw(r.card.querySelector('canvas'), series, now);
		});
	}

	/*
	 * queues - a row per lane (label lane, or priority) with ready, claimed
	 * and the oldest entry's age, then the total row with due (retries and
	 * scheduled sends, which have no lane until they are due). Older
	 * servers have no lane label and txmail_queue_pending for claimed.
	 */
	function renderQueues(ms) {
		var lanes = new Map(), total = {};
		function put(names, col) {
			var name = names.find(function (n) { return ms.some(function (m) { return m.name === n; }); });
			ms.forEach(function (m) {
				if (m.name !== name)
					return;
				var lane = m.labels.lane || m.labels.priority;
				if (col === 'age')
					total.age = Math.max(total.age || 0, m.value);
				else
					total[col] = (total[col] || 0) + m.value;
				if (!lane)
					return;
				var r = lanes.get(lane) || {};
				r[col] = (r[col] || 0) + m.value;
				lanes.set(lane, r);
			});
		}
		put(['txmail_queue_ready'], 'ready');
		put(['txmail_queue_claimed', 'txmail_queue_pending'], 'claimed');
		put(['txmail_queue_due'], 'due');
		put(['txmail_queue_oldest_age_seconds'], 'age');
		var tb = $('queues');
		clear(tb);
		if (total.ready === undefined && total.due === undefined) {
			emptyRow(tb, 5, 'no queue gauges in /metrics (Redis unreachable?)');
			return;
		}
		Array.from(lanes.keys()).sort().forEach(function (lane) {
			var r = lanes.get(lane);
			row(tb, [lane, fmt0(r.ready), fmt0(r.claimed), r.due === undefined ? '' : fmt0(r.due), age(r.age)]);
		});
		var tr = row(tb, ['all lanes', fmt0(total.ready), fmt0(total.claimed), fmt0(total.due), age(total.age)]);
		tr.className = 'total';
	}

	function age(v) {
		if (v === undefined)
			return '\u2013';
		if (v < 120)
			return v.toFixed(v < 10 ? 1 : 0) + ' s';
		if (v < 7200)
			return (v / 60).toFixed(0) + ' min';
		return (v / 3600).toFixed(1) + ' h';
	}

	function fmt0(v) { return v === undefined ? '\u2013' : String(v); }

	function scrape() {
		fetch('/metrics', { cache: 'no-store' }).then(function (r) {
			if (!r.ok)
				throw new Error('HTTP ' + r.status);
			return r.text();
		}).then(function (text) {
			if (!key)
				return;
			var now = Date.now(), ms = parse(text);
			samples.push({ t: now, m: ms });
			while (samples.length > 2 && now - samples[0].t > WINDOW_MS)
				samples.shift();
			renderRates(now);
			renderQueues(ms);
			var up = sum(ms, 'txmail_redis_up', {});
			setState('updated ' + new Date(now).toLocaleTimeString() +
				(up === 0 ? ' \u2013 Redis unreachable' : ''), up === 0 ? 'bad' : 'muted');
		}).catch(function (e) {
			setState('cannot read /metrics: ' + e.message, 'bad');
		});
	}

	/* --- events: the feed and the destinations ---------------------------- */

	function domainOf(addr) {
		var at = String(addr || '').lastIndexOf('@');
		return at < 0 ? '(none)' : addr.slice(at + 1).toLowerCase();
	}

	function errorText(d) {
		if (d.smtp && typeof d.smtp === 'object')
			return [d.smtp.code, d.smtp.enhanced, d.smtp.response].filter(function (x) {
				return x !== undefined && x !== null && x !== '';
			}).join(' ');
		return d.reason || d.status || '';
	}

	function account(ev) {
		var d = ev.data || {};
		var dest = domainOf(d.recipient);
		var k = d.message_id + ' ' + d.recipient;
		var prev = rcpts.get(k);
		var st = d.status === 'delivered' ? 'delivered' : d.status === 'deferred' ? 'deferred' : 'failed';
		var r = dests.get(dest) || { delivered: 0, deferred: 0, failed: 0, err: '', errAt: '' };
		if (prev)
			r[prev.status] = Math.max(0, r[prev.status] - 1);
		else if (rcpts.size >= RCPT_MAX)
			rcpts.delete(rcpts.keys().next().value);
		r[st]++;
		rcpts.set(k, { status: st });
		if (st !== 'delivered') {
			r.err = errorText(d);
			r.errAt = ev.created_at || '';
		}
		dests.set(dest, r);
	}

	function renderDests() {
		var tb = $('destinations');
		clear(tb);
		if (dests.size === 0) {
			emptyRow(tb, 5, 'no delivery events in the last 15 minutes');
			return;
		}
		Array.from(dests.keys()).sort().forEach(function (name) {
			var r = dests.get(name);
			var tr = row(tb, [name, r.delivered, r.deferred, r.failed,
				{ cls: 'text', text: r.err ? r.err : '' }]);
			if (r.errAt)
				tr.lastChild.title = r.errAt;
		});
	}

	function feedLine(type, ev) {
		var ol = $('feed');
		var d = ev.data || {};
		var li = el('li');
		li.appendChild(el('span', 't', (ev.created_at || '').replace('T', ' ').replace(/\..*$/, '')));
		li.appendChild(el('span', type === 'message.delivered' ? 'ok' : (type === 'message.failed' || type === 'message.bounced' || type === 'message.complained') ? 'bad' : 'warn', type));
		li.appendChild(document.createTextNode(' ' + (d.recipient || '') + ' '));
		var id = el('a', 'mono', d.message_id || '');
		id.href = '#';
		id.addEventListener('click', function (e) {
			e.preventDefault();
			$('msgid').value = d.message_id || '';
			lookup(d.message_id || '');
		});
		li.appendChild(id);
		var extra = errorText(d);
		if (type !== 'message.delivered' && extra)
			li.appendChild(document.createTextNode(' \u2013 ' + extra));
		li.title = li.textContent;
		ol.insertBefore(li, ol.firstChild);
		while (ol.childNodes.length > FEED_MAX)
			ol.removeChild(ol.lastChild);
	}

	var lastEventId = null;
	var destsDirty = false;

	function handleFrame(frame) {
		var id = null, type = 'message', data = [];
		frame.split('\n').forEach(function (l) {
			if (l === '' || l[0] === ':')
				return;
			var c = l.indexOf(':');
			var f = c < 0 ? l : l.slice(0, c), v = c < 0 ? '' : l.slice(c + 1);
			if (v[0] === ' ')
				v = v.slice(1);
			if (f === 'id')
				id = v;
			else if (f === 'event')
				type = v;
			else if (f === 'data')
				data.push(v);
		});
		if (id !== null)
			lastEventId = id;
		if (data.length === 0)
			return;
		var ev;
		try {
			ev = JSON.parse(data.join('\n'));
		} catch (e) {
			return;
		}
		account(ev);
		destsDirty = true;
		feedLine(type, ev);
	}

	function stream(backoff) {
		if (!key)
			return;
		var ctl = new AbortController();
		streamAbort = ctl;
		var headers = { Accept: 'text/event-stream' };
		/* the first connection replays the last 15 minutes; later ones resume */
		headers['Last-Event-ID'] = lastEventId || String(Date.now() - WINDOW_MS) + '-0';
		$('feed-state').textContent = 'connecting\u2026';
		api('/v1/events/stream', { headers: headers, signal: ctl.signal, cache: 'no-store' }).then(function (r) {
			if (r.status === 429 || r.status === 503) {
				var after = Number(r.headers.get('Retry-After')) || 5;
				throw Object.assign(new Error('HTTP ' + r.status), { wait: after * 1000 });
			}
			if (!r.ok || !r.body)
				throw new Error('HTTP ' + r.status);
			$('feed-state').textContent = 'live';
			$('feed-state').className = 'ok';
			backoff = 1000;
			var reader = r.body.getReader(), dec = new TextDecoder(), buf = '';
			function pump() {
				return reader.read().then(function (x) {
					if (x.done)
						throw new Error('stream ended');
					buf += dec.decode(x.value, { stream: true }).replace(/\r\n?/g, '\n');
					var i;
					while ((i = buf.indexOf('\n\n')) >= 0) {
						handleFrame(buf.slice(0, i));
						buf = buf.slice(i + 2);
					}
					return pump();
				});
			}
			return pump();
		}).catch(function (e) {
			if (ctl.signal.aborted || !key)
				return;
			var wait = e.wait || backoff;
			$('feed-state').textContent = 'disconnected (' + e.message + '), retrying in ' + Math.round(wait / 1000) + ' s';
			$('feed-state').className = 'bad';
			timers.push(setTimeout(function () { stream(Math.min(backoff * 2, 15000)); }, wait));
		});
	}

	/* --- webhooks -------------------------------------------------------- */

	function renderWebhooks() {
		api('/v1/webhooks', { cache: 'no-store' }).then(function (r) {
			if (!r.ok)
				throw new Error('HTTP ' + r.status);
			return r.json();
		}).then(function (body) {
			var tb = $('webhooks');
			clear(tb);
			var list = (body && body.data) || [];
			if (list.length === 0) {
				emptyRow(tb, 4, 'no webhook endpoints in this project');
				return;
			}
			list.forEach(function (w) {
				var lf = w.last_failure;
				var lfText = lf ? String(lf.at || '').replace('T', ' ').replace(/\.\d+Z$/, 'Z') + ' \u2013 ' + (lf.error || '') : '';
				row(tb, [{ cls: 'text', text: w.url }, { cls: 'text', text: (w.events || []).join(', ') },
					w.backlog === undefined ? '\u2013' : w.backlog, { cls: 'text', text: lfText }]);
			});
		}).catch(function (e) {
			var tb = $('webhooks');
			clear(tb);
			emptyRow(tb, 4, 'cannot list webhooks: ' + e.message);
		});
	}

	/* --- message lookup -------------------------------------------------- */

	function smtpText(s) {
		if (!s)
			return '';
		return [s.code, s.enhanced, s.response].filter(function (x) {
			return x !== undefined && x !== null && x !== '';
		}).join(' ');
	}

	function lookup(id) {
		var box = $('message');
		clear(box);
		id = String(id || '').trim();
		if (!id)
			return;
		box.appendChild(el('p', 'muted', 'looking up ' + id + '\u2026'));
		api('/v1/messages/' + encodeURIComponent(id), { cache: 'no-store' }).then(function (r) {
			if (r.status === 404)
				throw new Error('no message ' + id + ' in this project');
			if (!r.ok)
				throw new Error('HTTP ' + r.status);
			return r.json();
		}).then(function (m) {
			clear(box);
			var dl = el('dl');
			[['id', m.id], ['status', m.status], ['created', m.created_at], ['from', m.from],
				['subject', m.subject], ['priority', m.priority], ['template', m.template],
				['tags', (m.tags || []).join(', ')]].forEach(function (p) {
				if (p[1] === undefined || p[1] === '')
					return;
				dl.appendChild(el('dt', null, p[0]));
				dl.appendChild(el('dd', null, p[1]));
			});
			box.appendChild(dl);
			box.appendChild(el('h3', null, 'Recipients'));
			var t = el('table'), th = el('thead'), tb = el('tbody');
			var hr = el('tr');
			['recipient', 'kind', 'status', 'attempts', 'last reply'].forEach(function (h) { hr.appendChild(el('th', null, h)); });
			th.appendChild(hr);
			t.appendChild(th);
			t.appendChild(tb);
			t.id = 'recipients';
			(m.recipients || []).forEach(function (rc) {
				row(tb, [rc.email, rc.kind || '', rc.status, rc.attempts, { cls: 'text', text: smtpText(rc.smtp) }]);
			});
			box.appendChild(t);
			box.appendChild(el('h3', null, 'Timeline'));
			var t2 = el('table'), th2 = el('thead'), tb2 = el('tbody');
			var hr2 = el('tr');
			['at', 'event', 'recipient', 'attempt', 'detail'].forEach(function (h) { hr2.appendChild(el('th', null, h)); });
			th2.appendChild(hr2);
			t2.appendChild(th2);
			t2.appendChild(tb2);
			t2.id = 'timeline';
			(m.events || []).forEach(function (ev) {
				row(tb2, [ev.at, ev.type, ev.recipient || '', ev.attempt === undefined ? '' : ev.attempt,
					{ cls: 'text', text: [smtpText(ev.smtp), ev.detail, ev.reason].filter(Boolean).join(' \u2013 ') }]);
			});
			box.appendChild(t2);
		}).catch(function (e) {
			clear(box);
			box.appendChild(el('p', 'bad', e.message));
		});
	}

	/* --- tabs and the dev-mail hook ---------------------------------------- */

	function showTab(name) {
		Array.prototype.forEach.call(document.querySelectorAll('#tabs button'), function (b) {
			var on = b.dataset.tab === name;
			b.setAttribute('aria-selected', on ? 'true' : 'false');
			var s = $(b.dataset.tab);
			if (s)
				s.hidden = !on;
		});
		var s = $(name);
		if (s)
			s.dispatchEvent(new CustomEvent('txmail:show'));
	}

	function probeMail() {
		api('/dev/mail', { cache: 'no-store' }).then(function (r) {
			if (r.status !== 200 || mailLoaded)
				return;
			mailLoaded = true;
			$('tab-mail').hidden = false;
			var sc = document.createElement('script');
			sc.src = '/ui/mail.js';
			document.head.appendChild(sc);
		}).catch(function () { /* not in dev mode, or no such route */ });
	}

	/* --- start ------------------------------------------------------------ */

	/* start - check the key (GET /v1/whoami: 401 unknown, 403 may not read), then everything */
	function start() {
		setState('checking the key\u2026');
		api('/v1/whoami', { cache: 'no-store' }).then(function (r) {
			if (r.status === 403)
				throw new Error('this key may not read (a send key?): the dashboard needs a read, full or admin key');
			if (!r.ok)
				throw new Error('GET /v1/whoami: HTTP ' + r.status);
			return r.json();
		}).then(function (who) {
			if (!key)
				return;
			$('who').textContent = (who.all_projects ? 'every project (admin key)' : 'project ' + who.project) +
				' \u00b7 key ' + who.key;
			run();
		}).catch(function (e) {
			if (key)
				forget(e.message);
		});
	}

	function run() {
		$('login').hidden = true;
		$('app').hidden = false;
		$('forget').hidden = false;
		setState('loading\u2026');
		buildRates();
		renderDests();
		scrape();
		timers.push(setInterval(scrape, SCRAPE_MS));
		/* the tables fed by events are redrawn at most once a second; the
		 * webhook list is re-read every 10 s, and 1 s after events arrive
		 * (they are what fills the endpoints' backlogs) */
		var hooksAt = Date.now();
		renderWebhooks();
		timers.push(setInterval(function () {
			var now = Date.now();
			if (destsDirty) {
				destsDirty = false;
				renderDests();
				if (now - hooksAt > 2000) {
					hooksAt = now;
					renderWebhooks();
				}
			}
			if (now - hooksAt > 10000) {
				hooksAt = now;
				renderWebhooks();
			}
		}, 1000));
		stream(1000);
		probeMail();
	}

	window.txmail = {
		api: api,
		key: function () { return key; },
		el: el,
	};

	document.addEventListener('DOMContentLoaded', function () {
		keyFromFragment();
		$('login').addEventListener('submit', function (e) {
			e.preventDefault();
			var k = $('key').value.trim();
			if (!k)
				return;
			$('key').value = '';
			sessionStorage.setItem(KEY_STORE, k);
			key = k;
			start();
		});
		$('forget').addEventListener('click', function () { forget(''); });
		$('search').addEventListener('submit', function (e) {
			e.preventDefault();
			lookup($('msgid').value);
		});
		Array.prototype.forEach.call(document.querySelectorAll('#tabs button'), function (b) {
			b.addEventListener('click', function () { showTab(b.dataset.tab); });
		});
		key = sessionStorage.getItem(KEY_STORE);
		if (key)
			start();
		else
			showLogin('');
	});
})();
