/*
 * dashboard.c - GET /: a small self-contained HTML dashboard.
 *
 * Owns one static page (inline CSS and JS, no external assets) that polls
 * GET /metrics every 2 s and shows the counters and queue gauges. It must
 * never need an API key, touch Redis, or embed anything secret: the page is
 * public like /metrics, and /v1 calls still need a bearer key.
 */
#include "api.h"

#include <stdlib.h>
#include <string.h>

static const char dashboard_html[] =
"<!doctype html>\n"
"<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
"<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\n"
"<title>txmail dashboard</title>\n"
"<style>\n"
"body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222;background:#fafafa}\n"
"h1{font-size:1.4em;margin:0 0 .2em}h2{font-size:1.05em;margin:1.4em 0 .4em}\n"
".grid{display:flex;flex-wrap:wrap;gap:.6em}\n"
".card{background:#fff;border:1px solid #ddd;border-radius:6px;padding:.6em .9em;min-width:9em}\n"
".card b{display:block;font-size:1.6em;font-variant-numeric:tabular-nums}\n"
".card span{color:#666;font-size:.85em}\n"
"table{border-collapse:collapse;background:#fff}td,th{border:1px solid #ddd;padding:.25em .6em;text-align:right}\n"
"td:first-child,th:first-child{text-align:left;font-family:monospace}\n"
"#state{color:#666}.bad{color:#b00}.note{color:#555;margin-top:2em;font-size:.9em}\n"
"</style></head><body>\n"
"<h1>txmail</h1><div id=\"state\">loading /metrics&hellip;</div>\n"
"<h2>Queue (Redis, all processes)</h2><div class=\"grid\" id=\"queue\"></div>\n"
"<h2>Recipients (this process)</h2><div class=\"grid\" id=\"rcpt\"></div>\n"
"<h2>Messages, SMTP and webhooks (this process)</h2><div class=\"grid\" id=\"misc\"></div>\n"
"<h2>HTTP requests (this process)</h2>\n"
"<table><thead><tr><th>route</th><th>1xx</th><th>2xx</th><th>3xx</th><th>4xx</th><th>5xx</th></tr></thead>\n"
"<tbody id=\"http\"></tbody></table>\n"
"<p class=\"note\">Counters are per process and start at zero when it starts; queue gauges are read "
"from Redis at each scrape. This page and <a href=\"/metrics\">/metrics</a> need no key; every "
"<code>/v1</code> call needs <code>Authorization: Bearer &lt;key&gt;</code>.</p>\n"
"<script>\n"
"'use strict';\n"
"function parse(text){var out=[];text.split('\\n').forEach(function(l){\n"
" if(!l||l[0]==='#')return;var m=/^([a-zA-Z_:][a-zA-Z0-9_:]*)(\\{(.*)\\})? (\\S+)$/.exec(l);if(!m)return;\n"
" var labels={};if(m[3]){var re=/(\\w+)=\"((?:[^\"\\\\]|\\\\.)*)\"/g,x;while((x=re.exec(m[3]))!==null)labels[x[1]]=x[2];}\n"
" out.push({name:m[1],labels:labels,value:Number(m[4])});});return out;}\n"
"function card(parent,label,value){var d=document.createElement('div');d.className='card';\n"
" var b=document.createElement('b');b.textContent=value===undefined?'\\u2013':String(value);\n"
" var s=document.createElement('span');s.textContent=label;d.appendChild(b);d.appendChild(s);parent.appendChild(d);}\n"
"function get(ms,name,key,val){for(var i=0;i<ms.length;i++){var m=ms[i];\n"
" if(m.name===name&&(key===undefined||m.labels[key]===val))return m.value;}return undefined;}\n"
"function render(ms){var q=document.getElementById('queue'),r=document.getElementById('rcpt'),\n"
" o=document.getElementById('misc'),h=document.getElementById('http');\n"
" q.textContent='';r.textContent='';o.textContent='';h.textContent='';\n"
" [['ready','txmail_queue_ready'],['pending (claimed)','txmail_queue_pending'],['due (retry/scheduled)','txmail_queue_due'],\n"
"  ['events retained','txmail_events_retained']].forEach(function(p){card(q,p[0],get(ms,p[1]));});\n"
" ['delivered','deferred','failed','expired','suppressed'].forEach(function(s){card(r,s,get(ms,'txmail_recipients_total','status',s));});\n"
" card(o,'messages accepted',get(ms,'txmail_messages_accepted_total'));\n"
" ['ok','tempfail','permfail'].forEach(function(s){card(o,'smtp '+s,get(ms,'txmail_smtp_transactions_total','result',s));});\n"
" ['success','retry','gave_up','dropped'].forEach(function(s){card(o,'webhook '+s,get(ms,'txmail_webhook_attempts_total','result',s));});\n"
" var rows={};ms.forEach(function(m){if(m.name!=='txmail_http_requests_total')return;\n"
"  var k=m.labels.route;rows[k]=rows[k]||{};rows[k][m.labels.code_class]=m.value;});\n"
" Object.keys(rows).sort().forEach(function(k){var tr=document.createElement('tr');\n"
"  var td=document.createElement('td');td.textContent=k;tr.appendChild(td);\n"
"  ['1xx','2xx','3xx','4xx','5xx'].forEach(function(c){var t=document.createElement('td');t.textContent=rows[k][c]||0;tr.appendChild(t);});\n"
"  h.appendChild(tr);});\n"
" var st=document.getElementById('state');var up=get(ms,'txmail_redis_up');\n"
" st.className=up===1?'':'bad';st.textContent='updated '+new Date().toLocaleTimeString()+(up===1?' \\u2013 redis up':' \\u2013 redis unreachable');}\n"
"function tick(){fetch('/metrics',{cache:'no-store'}).then(function(r){if(!r.ok)throw new Error('HTTP '+r.status);return r.text();})\n"
" .then(function(t){render(parse(t));}).catch(function(e){var st=document.getElementById('state');st.className='bad';\n"
" st.textContent='cannot read /metrics: '+e.message;}).finally(function(){setTimeout(tick,2000);});}\n"
"tick();\n"
"</script></body></html>\n";

void
metrics_dashboard_get(const struct api_request *req, struct api_response *resp)
{
	char *body = malloc(sizeof(dashboard_html));

	(void)req;
	if (body == NULL) {
		api_error(resp, 500, "internal_error", "out of memory", NULL);
		return;
	}
	memcpy(body, dashboard_html, sizeof(dashboard_html));
	free(resp->body);
	resp->status = 200;
	resp->body = body;
	resp->body_len = sizeof(dashboard_html) - 1;
	api_header(resp, "Content-Type", "text/html; charset=utf-8");
	api_header(resp, "Cache-Control", "no-store");
}
