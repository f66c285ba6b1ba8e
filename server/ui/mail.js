/*
 * mail.js - the dev-mode captured-mail viewer: the dashboard's Mail tab.
 *
 * Loaded by app.js only when GET /dev/mail answers 200 (`txmail run --dev`
 * and a key of the dev project); uses its hook, window.txmail (api() adds
 * the key's Authorization header), and fills <section id="mail">.
 *
 * What it shows, all from the captured-mail API (api_devmail.c):
 *  - the list, newest first (GET /dev/mail), refreshed every POLL_MS while
 *    the tab is open, with a search box (?q=: from, to, subject) and
 *    "older" paging (?before=);
 *  - one message (GET /dev/mail/{id}): From, To, Cc, Subject, Date, then
 *    tabs HTML, Text, Raw, Headers, Attachments.
 * The HTML is rendered in an <iframe sandbox> (no allow-scripts, no
 * allow-same-origin: no script runs and the frame has an opaque origin)
 * through srcdoc, which starts with its own Content-Security-Policy
 * (FRAME_CSP: nothing may be fetched; images only as data: URIs) on top
 * of the page's, which the srcdoc document inherits: a tracking pixel or a
 * remote font in a captured mail is never requested. Inline images
 * (cid:) are fetched through the API and put in as data: URIs.
 * Attachments are downloaded with fetch (the key is a header, which a
 * plain link cannot send) and handed to the browser as a blob.
 * Everything else from a message is set with textContent, never as markup.
 */
'use strict';
(function () {
	var t = window.txmail;
	var section = document.getElementById('mail');
	var POLL_MS = 2000;
	var PAGE = 50;
	var INLINE_MAX = 1024 * 1024;   /* a cid: image bigger than this stays a broken image */
	var FRAME_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; font-src data:; " +
		"form-action 'none'; base-uri 'none'";

	if (!t || !section)
		return;
	var el = t.el;
	var state = { q: '', items: [], next: null, top: null, total: 0, open: null, tab: 'html', timer: null };

	var css = document.createElement('link');
	css.rel = 'stylesheet';
	css.href = '/ui/mail.css';
	document.head.appendChild(css);

	function clear(e) { while (e.firstChild) e.removeChild(e.firstChild); }

	function size(n) {
		if (n < 1024)
			return n + ' B';
		if (n < 1024 * 1024)
			return (n / 1024).toFixed(1) + ' KiB';
		return (n / 1024 / 1024).toFixed(1) + ' MiB';
	}

	function when(iso) {
		var d = new Date(iso);
		return isNaN(d.getTime()) ? iso : d.toLocaleString();
	}

	/* --- the layout -------------------------------------------------------- */

	var bar = el('form', 'mail-bar');
	bar.id = 'mail-search';
	var q = el('input');
	q.id = 'mail-q';
	q.type = 'search';
	q.placeholder = 'search from, to, subject';
	q.setAttribute('aria-label', 'search captured mail');
	q.autocomplete = 'off';
	q.spellcheck = false;
	var go = el('button', '', 'Search');
	go.type = 'submit';
	var count = el('span', 'muted');
	count.id = 'mail-count';
	var del = el('button', '', 'Delete all');
	del.type = 'button';
	del.id = 'mail-delete';
	bar.appendChild(q);
	bar.appendChild(go);
	bar.appendChild(count);
	bar.appendChild(el('span', 'grow'));
	bar.appendChild(del);

	var split = el('div', 'mail-split');
	var listBox = el('div', 'mail-listbox');
	var list = el('ul', 'mail-list');
	list.id = 'mail-list';
	var more = el('button', 'mail-more', 'Older');
	more.type = 'button';
	more.hidden = true;
	listBox.appendChild(list);
	listBox.appendChild(more);
	var view = el('div', 'mail-view');
	view.id = 'mail-view';
	view.appendChild(el('p', 'empty', 'Pick a message.'));
	split.appendChild(listBox);
	split.appendChild(view);

	section.appendChild(el('h2', '', 'Captured mail'));
	var note = el('p', 'muted', 'What the dev SMTP sink received (txmail run --dev), newest first. ' +
		'HTML is shown in a sandboxed frame that runs no script and loads nothing from the network.');
	section.appendChild(note);
	section.appendChild(bar);
	section.appendChild(split);

	/* --- the list ---------------------------------------------------------- */

	function query(before) {
		var p = ['limit=' + PAGE];
		if (state.q)
			p.push('q=' + encodeURIComponent(state.q));
		if (before)
			p.push('before=' + encodeURIComponent(before));
		return '/dev/mail?' + p.join('&');
	}

	function item(m) {
		var li = el('li');
		li.dataset.id = m.id;
		if (state.open === m.id)
			li.className = 'open';
		var top = el('div', 'mail-line');
		top.appendChild(el('b', 'mail-subject', m.subject || '(no subject)'));
		top.appendChild(el('span', 'mail-time muted', when(m.time)));
		li.appendChild(top);
		var who = el('div', 'mail-who muted');
		who.appendChild(el('span', 'mail-from', m.from));
		who.appendChild(el('span', '', ' \u2192 '));
		who.appendChild(el('span', 'mail-to', m.to));
		who.appendChild(el('span', 'mail-size', ' \u00b7 ' + size(m.size)));
		li.appendChild(who);
		li.tabIndex = 0;
		li.addEventListener('click', function () { openMail(m.id); });
		li.addEventListener('keydown', function (e) {
			if (e.key === 'Enter')
				openMail(m.id);
		});
		return li;
	}

	function renderList() {
		clear(list);
		state.items.forEach(function (m) { list.appendChild(item(m)); });
		if (!state.items.length)
			list.appendChild(el('li', 'empty', state.q ? 'Nothing matches.' : 'No mail captured yet.'));
		more.hidden = !state.next;
		count.textContent = state.total + ' captured' + (state.q ? ', ' + state.items.length +
			(state.next ? '+' : '') + ' matching' : '');
	}

	function load() {
		return t.api(query(null), { cache: 'no-store' }).then(function (r) {
			if (r.status !== 200)
				throw new Error('GET /dev/mail: ' + r.status);
			return r.json();
		}).then(function (j) {
			var top = j.data.length ? j.data[0].id : null;
			/* the first page again: keep older pages already shown when nothing new came in */
			if (top === state.top && j.total === state.total && state.items.length >= j.data.length)
				return;
			state.items = j.data;
			state.next = j.next_before;
			state.top = top;
			state.total = j.total;
			renderList();
		}).catch(function (e) { count.textContent = e.message; });
	}

	more.addEventListener('click', function () {
		if (!state.next)
			return;
		t.api(query(state.next), { cache: 'no-store' }).then(function (r) { return r.json(); }).then(function (j) {
			state.items = state.items.concat(j.data);
			state.next = j.next_before;
			renderList();
		}).catch(function (e) { count.textContent = e.message; });
	});

	bar.addEventListener('submit', function (e) {
		e.preventDefault();
		state.q = q.value.trim();
		state.top = null;
		state.items = [];
		load();
	});

	del.addEventListener('click', function () {
		if (!window.confirm('Delete every captured message?'))
			return;
		t.api('/dev/mail', { method: 'DELETE' }).then(function () {
			state.open = null;
			state.top = null;
			state.items = [];
			clear(view);
			view.appendChild(el('p', 'empty', 'Pick a message.'));
			load();
		});
	});

	/* --- one message ------------------------------------------------------- */

	function field(dl, name, value) {
		if (!value)
			return;
		dl.appendChild(el('dt', '', name));
		dl.appendChild(el('dd', '', value));
	}

	/* blobToData - a data: URI of blob (FileReader), as a promise */
	function blobToData(blob) {
		return new Promise(function (ok, no) {
			var fr = new FileReader();
			fr.onload = function () { ok(fr.result); };
			fr.onerror = function () { no(fr.error); };
			fr.readAsDataURL(blob);
		});
	}

	/* inline - html with each cid:<content id> of an inline image replaced by a data: URI */
	function inline(m) {
		var html = m.html || '';
		var jobs = m.attachments.filter(function (a) {
			return a.content_id && /^image\//.test(a.type) && a.size <= INLINE_MAX &&
				html.indexOf('cid:' + a.content_id) >= 0;
		}).map(function (a) {
			return t.api('/dev/mail/' + m.id + '/attachments/' + a.index).then(function (r) {
				return r.status === 200 ? r.blob() : null;
			}).then(function (b) {
				return b ? blobToData(new Blob([b], { type: a.type })) : null;
			}).then(function (uri) {
				if (uri && /^data:image\/[a-z0-9.+-]+;base64,[A-Za-z0-9+/=]*$/.test(uri))
					html = html.split('cid:' + a.content_id).join(uri);
			}).catch(function () { /* stays a broken image */ });
		});
		return Promise.all(jobs).then(function () { return html; });
	}

	function htmlPanel(m) {
		var box = el('div', 'mail-panel');
		if (m.html === null) {
			box.appendChild(el('p', 'empty', 'This message has no HTML part.'));
			return box;
		}
		var f = document.createElement('iframe');
		f.id = 'mail-frame';
		f.setAttribute('sandbox', '');            /* no scripts, opaque origin, no forms, no popups */
		f.setAttribute('referrerpolicy', 'no-referrer');
		f.setAttribute('title', 'HTML part');
		box.appendChild(f);
		inline(m).then(function (html) {
			f.srcdoc = '<!doctype html><meta http-equiv="Content-Security-Policy" content="' +
				FRAME_CSP + '"><meta name="referrer" content="no-referrer">' + html;
		});
		return box;
	}

	function pre(text, id) {
		var box = el('div', 'mail-panel');
		var p = el('pre', 'mail-pre', text);
		p.id = id;
		box.appendChild(p);
		return box;
	}

	function headersPanel(m) {
		var box = el('div', 'mail-panel');
		var tb = el('tbody');
		m.headers.forEach(function (h) {
			var tr = el('tr');
			tr.appendChild(el('td', 'text mono', h.name));
			tr.appendChild(el('td', 'text', h.value));
			tb.appendChild(tr);
		});
		var table = el('table', 'mail-headers');
		table.appendChild(tb);
		box.appendChild(table);
		return box;
	}

	function download(m, a, button) {
		button.disabled = true;
		t.api('/dev/mail/' + m.id + '/attachments/' + a.index).then(function (r) {
			if (r.status !== 200)
				throw new Error(String(r.status));
			return r.blob();
		}).then(function (b) {
			var u = URL.createObjectURL(b);
			var link = el('a');
			link.href = u;
			link.download = a.name;
			document.body.appendChild(link);
			link.click();
			link.remove();
			setTimeout(function () { URL.revokeObjectURL(u); }, 60000);
		}).catch(function (e) { button.textContent = 'failed: ' + e.message; })
			.then(function () { button.disabled = false; });
	}

	function attachmentsPanel(m) {
		var box = el('div', 'mail-panel');
		if (!m.attachments.length) {
			box.appendChild(el('p', 'empty', 'No attachments.'));
			return box;
		}
		var ul = el('ul', 'mail-attachments');
		ul.id = 'mail-attachments';
		m.attachments.forEach(function (a) {
			var li = el('li');
			li.appendChild(el('span', 'mail-att-name', a.name));
			li.appendChild(el('span', 'muted', ' ' + a.type + ' \u00b7 ' + size(a.size) +
				(a.content_id ? ' \u00b7 inline (cid:' + a.content_id + ')' : '') + ' '));
			var b = el('button', '', 'Download');
			b.type = 'button';
			b.addEventListener('click', function () { download(m, a, b); });
			li.appendChild(b);
			ul.appendChild(li);
		});
		box.appendChild(ul);
		return box;
	}

	var TABS = [
		['html', 'HTML', htmlPanel],
		['text', 'Text', function (m) {
			return m.text === null ? (function () {
				var b = el('div', 'mail-panel');
				b.appendChild(el('p', 'empty', 'This message has no plain-text part.'));
				return b;
			})() : pre(m.text, 'mail-text');
		}],
		['raw', 'Raw', function (m) { return pre(m.raw, 'mail-raw'); }],
		['headers', 'Headers', headersPanel],
		['attachments', 'Attachments', attachmentsPanel],
	];

	function renderMail(m) {
		clear(view);
		var dl = el('dl', 'mail-fields');
		field(dl, 'From', m.from);
		field(dl, 'To', m.to);
		field(dl, 'Cc', m.cc);
		field(dl, 'Subject', m.subject || '(no subject)');
		field(dl, 'Date', m.date);
		field(dl, 'Captured', when(m.time) + ' \u00b7 ' + size(m.size) + ' \u00b7 ' + m.id);
		view.appendChild(dl);
		if (m.truncated)
			view.appendChild(el('p', 'warn', 'Only part of this message is shown (it is larger than ' +
				'the viewer reads, or has too many parts).'));
		var tabs = el('nav', 'mail-tabs');
		tabs.id = 'mail-tabs';
		var holder = el('div');
		var tab = state.tab;
		if (tab === 'html' && m.html === null)
			tab = 'text';
		TABS.forEach(function (d) {
			var b = el('button', '', d[1] + (d[0] === 'attachments' ? ' (' + m.attachments.length + ')' : ''));
			b.type = 'button';
			b.dataset.mailTab = d[0];
			b.setAttribute('aria-selected', d[0] === tab ? 'true' : 'false');
			b.addEventListener('click', function () {
				state.tab = d[0];
				Array.prototype.forEach.call(tabs.children, function (x) {
					x.setAttribute('aria-selected', x === b ? 'true' : 'false');
				});
				clear(holder);
				holder.appendChild(d[2](m));
			});
			tabs.appendChild(b);
			if (d[0] === tab)
				holder.appendChild(d[2](m));
		});
		view.appendChild(tabs);
		view.appendChild(holder);
	}

	function openMail(id) {
		state.open = id;
		Array.prototype.forEach.call(list.children, function (li) {
			li.className = li.dataset.id === id ? 'open' : '';
		});
		t.api('/dev/mail/' + encodeURIComponent(id), { cache: 'no-store' }).then(function (r) {
			if (r.status !== 200)
				throw new Error(r.status === 404 ? 'this message is gone' : 'GET /dev/mail/' + id + ': ' + r.status);
			return r.json();
		}).then(function (m) {
			if (state.open === id)
				renderMail(m);
		}).catch(function (e) {
			clear(view);
			view.appendChild(el('p', 'bad', e.message));
		});
	}

	/* --- live: poll while the tab is open ------------------------------------ */

	section.addEventListener('txmail:show', function () {
		load();
		if (state.timer === null)
			state.timer = setInterval(function () {
				if (section.hidden || !t.key()) {
					clearInterval(state.timer);
					state.timer = null;
					return;
				}
				load();
			}, POLL_MS);
	});
	if (!section.hidden)
		section.dispatchEvent(new CustomEvent('txmail:show'));
})();
