/*
 * api_messages.c - the /v1/messages resource: accept one send or a batch
 * (validate, render the template, build the MIME bytes once, store durably
 * under an optional Idempotency-Key with the suppression list checked in
 * the same script, answer 202), show a message with its recipients and
 * timeline, and cancel what is not yet delivered. An accept is one Redis
 * round trip; a second one only when a recipient turns out suppressed.
 *
 * Owns the JSON shapes of POST /v1/messages, POST /v1/messages/batch,
 * GET and DELETE /v1/messages/{id}, and the idempotency scope
 * ("<project>:<sha256 of the key>", request hash over method, path and
 * body: the keys of one project share their Idempotency-Keys).
 * When Redis did not answer the enqueue in time, the store settles whether
 * it was stored before this answers (store.h): 202 when it was, 503 only
 * when nothing was stored, 504 outcome_unknown when Redis could not be
 * asked; a batch is one script, so it has one outcome for all its messages.
 * It must never answer 202 before the enqueue succeeded, never touch
 * Redis for an id that cannot be one of ours, and never include
 * microhttpd.h (http.c does the wire; see api.h).
 */
#include <ctype.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "dkim_keys.h"
#include "hash.h"
#include "jsonw.h"
#include "log.h"
#include "metrics.h"
#include "store.h"
#include "template.h"
#include "util.h"
#include "validate.h"
#include "../smtp/mime.h"

#define MSG_ID_PREFIX "msg_"
#define MSG_ID_CHARS 26
#define MESSAGES_BATCH_MAX 500
#define MESSAGES_IDEM_TTL_MS ((int64_t)24 * 3600 * 1000)
#define MESSAGES_RENDER_MAX ((size_t)10 * 1024 * 1024)

/* --- pure helpers (declared in api.h, unit-tested) ------------------------ */

int
api_messages_idem_key_ok(const char *key)
{
	return validate_idem_key(key);
}

const char *
api_messages_summary(const char *const *statuses, size_t n)
{
	if (n == 0 || statuses[0] == NULL)
		return "queued";
	for (size_t i = 1; i < n; i++)
		if (statuses[i] == NULL || strcmp(statuses[i], statuses[0]) != 0)
			return "partial";
	return statuses[0];
}

int64_t
api_messages_expiry(int64_t now_ms, int64_t send_at_ms, int64_t ttl_ms, int64_t max_age_ms)
{
	int64_t base = send_at_ms > now_ms ? send_at_ms : now_ms;
	int64_t exp = base + max_age_ms;

	if (ttl_ms > 0 && now_ms + ttl_ms < exp)
		exp = now_ms + ttl_ms;
	return exp;
}

int64_t
api_messages_id_ms(const char *id, int64_t dflt)
{
	int64_t t;

	if (strncmp(id, MSG_ID_PREFIX, 4) != 0 || strlen(id) < 4 + MSG_ID_CHARS)
		return dflt;
	t = util_id_time_read(id + 4);
	return t > 0 ? t : dflt;
}

int
api_messages_new_id(unsigned part, char *id, size_t len)
{
	if (util_random_id(MSG_ID_PREFIX, id, len) != 0)
		return -1;
	if (part > 0)   /* the partition travels in the id: msg_<ulid>p<k> (store_id_partition) */
		snprintf(id + strlen(id), len - strlen(id), "p%u", part);
	return 0;
}

/* --- one message being prepared ------------------------------------------- */

struct messages_one {
	const cJSON *json;
	struct msg_request mr;
	char id[64];
	char msgid[400];
	char *subject;          /* rendered from the template, until moved into mr */
	char *text;
	char *html;
	char *mime;
	size_t mime_len;
	char *timeline;
	struct store_rcpt_in *rcpts;
	char **lower;           /* lower-cased recipient addresses */
	char **events;          /* per recipient; only for suppressed ones */
	char **tls;
	size_t nrcpts;
	const char *status;     /* message status answered */
	struct store_message_in in;
};

static void
messages_one_free(struct messages_one *m)
{
	for (size_t i = 0; i < m->nrcpts; i++) {
		if (m->lower != NULL)
			free(m->lower[i]);
		if (m->events != NULL)
			cJSON_free(m->events[i]);
		if (m->tls != NULL)
			cJSON_free(m->tls[i]);
	}
	free(m->lower);
	free(m->events);
	free(m->tls);
	free(m->rcpts);
	free(m->timeline);
	free(m->mime);
	free(m->subject);
	free(m->text);
	free(m->html);
	msg_request_free(&m->mr);
}

/*
 * The 202 body and the first timeline entry are written by hand (jsonw.h),
 * the bytes cJSON_PrintUnformatted would write for the same object:
 * building, printing and freeing a cJSON tree for them was ~10k
 * instructions of each accept.
 */

/* buf = a b c, cut to len like snprintf: for the Message-ID and Location of every accept */
static void
messages_cat3(char *buf, size_t len, const char *a, const char *b, const char *c)
{
	const char *parts[3] = { a, b, c };
	size_t off = 0;

	if (len == 0)
		return;
	for (size_t i = 0; i < 3; i++) {
		size_t n = strlen(parts[i]);

		if (n > len - 1 - off)
			n = len - 1 - off;
		memcpy(buf + off, parts[i], n);
		off += n;
	}
	buf[off] = '\0';
}

/* 1 when id matches ^msg_[0-9a-z]{26}(p[1-9][0-9]?)?$ (the partition: store_id_partition) */
static int
messages_id_ok(const char *id)
{
	size_t plen = sizeof(MSG_ID_PREFIX) - 1, n;

	if (id == NULL || strncmp(id, MSG_ID_PREFIX, plen) != 0)
		return 0;
	n = strlen(id);
	if (n != plen + MSG_ID_CHARS && (n < plen + MSG_ID_CHARS + 2 || n > plen + MSG_ID_CHARS + 3 ||
	    store_id_partition(id) == 0))
		return 0;
	for (size_t i = plen; i < plen + MSG_ID_CHARS; i++)
		if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'z')))
			return 0;
	return 1;
}

static void
messages_field(char *buf, size_t len, const char *prefix, const char *field)
{
	snprintf(buf, len, "%s%s", prefix != NULL ? prefix : "", field);
}

/* render one template part; 0, or -1 with a 422/413/500 in resp */
static int
messages_render_part(const cJSON *tpl, const char *key, const cJSON *vars, int html,
    const char *prefix, char **out, struct api_response *resp)
{
	const cJSON *src = cJSON_GetObjectItemCaseSensitive(tpl, key);
	char name[96], field[192], msg[256];
	size_t olen = 0;
	int rc;

	*out = NULL;
	if (!cJSON_IsString(src) || src->valuestring == NULL)
		return 0;
	rc = template_render(src->valuestring, strlen(src->valuestring), vars, html,
	    MESSAGES_RENDER_MAX, out, &olen, name, sizeof(name));
	if (rc == 0)
		return 0;
	free(*out);
	*out = NULL;
	switch (rc) {
	case TEMPLATE_ERR_MISSING:
		snprintf(field, sizeof(field), "%svariables.%s", prefix != NULL ? prefix : "", name);
		snprintf(msg, sizeof(msg), "the template needs the variable \"%s\"", name);
		api_error(resp, 422, "validation_error", msg, field);
		break;
	case TEMPLATE_ERR_SYNTAX:
		messages_field(field, sizeof(field), prefix, "template");
		snprintf(msg, sizeof(msg), "the template's %s cannot be rendered (%s)", key, name);
		api_error(resp, 422, "validation_error", msg, field);
		break;
	case TEMPLATE_ERR_TOOBIG:
		snprintf(msg, sizeof(msg), "the rendered %s is larger than %zu bytes", key,
		    MESSAGES_RENDER_MAX);
		api_error(resp, 413, "payload_too_large", msg, NULL);
		break;
	default:
		api_error(resp, 500, "internal_error", "out of memory", NULL);
		break;
	}
	return -1;
}

/* subject, text, html from the stored template; 0 or -1 with resp filled */
static int
messages_apply_template(const struct api_request *req, struct messages_one *m,
    const char *prefix, struct api_response *resp)
{
	struct validate_error verr;
	char *json = NULL, field[192];
	cJSON *tpl = NULL;
	int rc, ret = -1;

	rc = store_template_get(req->store, api_project(req), m->mr.template_name, &json);
	if (rc == STORE_ERR_NOT_FOUND) {
		messages_field(field, sizeof(field), prefix, "template");
		api_error(resp, 422, "validation_error", "unknown template", field);
		goto out;
	}
	if (rc != STORE_OK) {
		api_store_error(resp, rc);
		goto out;
	}
	tpl = cJSON_Parse(json);
	if (tpl == NULL) {
		api_error(resp, 500, "internal_error", "stored template is damaged", NULL);
		goto out;
	}
	if (messages_render_part(tpl, "subject", m->mr.variables, 0, prefix, &m->subject, resp) != 0 ||
	    messages_render_part(tpl, "text", m->mr.variables, 0, prefix, &m->text, resp) != 0 ||
	    messages_render_part(tpl, "html", m->mr.variables, 1, prefix, &m->html, resp) != 0)
		goto out;
	/* the template replaces subject/text/html (validation refused them alongside) */
	free(m->mr.subject);
	free(m->mr.text);
	free(m->mr.html);
	m->mr.subject = m->subject;
	m->mr.text = m->text;
	m->mr.html = m->html;
	m->subject = m->text = m->html = NULL;
	if (validate_rendered(&m->mr, prefix, &verr) != 0) {
		api_error(resp, 422, "validation_error", verr.message, verr.field);
		goto out;
	}
	ret = 0;
out:
	cJSON_Delete(tpl);
	free(json);
	return ret;
}

static int
messages_add_rcpts(struct messages_one *m, const struct mime_addr *a, size_t na,
    const char *kind)
{
	for (size_t i = 0; i < na; i++) {
		size_t k = m->nrcpts;
		char *l = strdup(a[i].email);

		if (l == NULL)
			return -1;
		for (char *p = l; *p != '\0'; p++)
			*p = (char)tolower((unsigned char)*p);
		m->lower[k] = l;
		m->rcpts[k].email = a[i].email;
		m->rcpts[k].kind = kind;
		m->rcpts[k].lower = l;
		m->nrcpts++;
	}
	return 0;
}

/* messages_timeline - m->timeline: the first entry, {"type":"queued"|"scheduled","at":...[,"send_at":...]} as cJSON would print it. 0, or -1 (OOM). */
static int
messages_timeline(const struct api_request *req, struct messages_one *m)
{
	struct jsonw tl = { 0 };
	char at[40], sat[40];

	util_rfc3339(req->now_ms, at, sizeof(at));
	jsonw_lit(&tl, m->mr.send_at_ms > 0 ? "{\"type\":\"scheduled\",\"at\":" :
	    "{\"type\":\"queued\",\"at\":");
	jsonw_str(&tl, at);
	if (m->mr.send_at_ms > 0) {
		util_rfc3339(m->mr.send_at_ms, sat, sizeof(sat));
		jsonw_lit(&tl, ",\"send_at\":");
		jsonw_str(&tl, sat);
	}
	jsonw_raw(&tl, "}", 1);
	return (m->timeline = jsonw_take(&tl)) != NULL ? 0 : -1;
}

/*
 * messages_prepare - validate, render and build one message (everything but
 * the suppression check). 0, or -1 with the error response in resp.
 */
static int
messages_prepare(const struct api_request *req, const cJSON *json, const char *prefix,
    unsigned part, struct messages_one *m, struct api_response *resp)
{
	struct validate_error verr;
	struct mime_message mm;
	int64_t max_age_ms = (int64_t)(req->cfg->max_age * 1000.0);
	uint64_t seed = 0;
	size_t total;
	char field[192];
	const cJSON *from_node;
	int rc;

	m->json = json;
	rc = validate_message_at(json, req->now_ms, req->cfg->max_attach, prefix, &m->mr, &verr);
	if (rc == -1) {
		api_error(resp, 422, "validation_error", verr.message, verr.field);
		return -1;
	}
	if (rc == -3) {
		api_error(resp, 413, "payload_too_large",
		    verr.message[0] != '\0' ? verr.message : "attachments exceed the size limit",
		    verr.field);
		return -1;
	}
	if (rc != 0) {
		api_error(resp, 500, "internal_error", "out of memory", NULL);
		return -1;
	}
	if (m->mr.send_at_ms <= req->now_ms)
		m->mr.send_at_ms = 0;   /* a past send_at means now */
	if (m->mr.template_name != NULL && messages_apply_template(req, m, prefix, resp) != 0)
		return -1;

	memset(&m->in, 0, sizeof(m->in));
	m->in.expires_ms = api_messages_expiry(req->now_ms, m->mr.send_at_ms, m->mr.ttl_ms,
	    max_age_ms);
	if (m->mr.send_at_ms > 0 && m->in.expires_ms <= m->mr.send_at_ms) {
		messages_field(field, sizeof(field), prefix, "ttl");
		api_error(resp, 422, "validation_error",
		    "the message would expire before send_at", field);
		return -1;
	}

	if (api_messages_new_id(part, m->id, sizeof(m->id)) != 0 ||
	    util_random_bytes(&seed, sizeof(seed)) != 0) {
		api_error(resp, 500, "internal_error", "cannot generate an id", NULL);
		return -1;
	}
	messages_cat3(m->msgid, sizeof(m->msgid), "<", m->id, "@");
	messages_cat3(m->msgid + strlen(m->msgid), sizeof(m->msgid) - strlen(m->msgid),
	    req->cfg->helo_name[0] != '\0' ? req->cfg->helo_name : "localhost", ">", "");

	memset(&mm, 0, sizeof(mm));
	mm.from = m->mr.from;
	mm.to = m->mr.to;
	mm.nto = m->mr.nto;
	mm.cc = m->mr.cc;
	mm.ncc = m->mr.ncc;
	mm.reply_to = m->mr.reply_to;
	mm.nreply_to = m->mr.nreply_to;
	mm.subject = m->mr.subject;
	mm.text = m->mr.text;
	mm.html = m->mr.html;
	mm.headers = m->mr.headers;
	mm.nheaders = m->mr.nheaders;
	mm.attachments = m->mr.attachments;
	mm.nattachments = m->mr.nattachments;
	mm.date_s = (m->mr.send_at_ms > 0 ? m->mr.send_at_ms : req->now_ms) / 1000;
	mm.message_id = m->msgid;
	mm.boundary_seed = seed;
	rc = mime_build(&mm, &m->mime, &m->mime_len);
	if (rc != 0) {
		log_error("message not built", "msg_id=%s request_id=%s error=%d", m->id,
		    req->request_id, rc);
		api_error(resp, 500, "internal_error", "cannot build the message", NULL);
		return -1;
	}
	/* DKIM: signed once, here, with the key for the From domain (if any) */
	if (dkim_keys_sign_message(req->cfg->dkim_keys, m->mr.from.email, req->now_ms / 1000,
	    &m->mime, &m->mime_len) != 0) {
		log_error("DKIM signing failed", "msg_id=%s request_id=%s", m->id, req->request_id);
		api_error(resp, 500, "internal_error", "cannot sign the message", NULL);
		return -1;
	}

	total = m->mr.nto + m->mr.ncc + m->mr.nbcc;
	m->rcpts = calloc(total != 0 ? total : 1, sizeof(*m->rcpts));
	m->lower = calloc(total != 0 ? total : 1, sizeof(*m->lower));
	m->events = calloc(total != 0 ? total : 1, sizeof(*m->events));
	m->tls = calloc(total != 0 ? total : 1, sizeof(*m->tls));
	if (m->rcpts == NULL || m->lower == NULL || m->events == NULL || m->tls == NULL ||
	    messages_add_rcpts(m, m->mr.to, m->mr.nto, "to") != 0 ||
	    messages_add_rcpts(m, m->mr.cc, m->mr.ncc, "cc") != 0 ||
	    messages_add_rcpts(m, m->mr.bcc, m->mr.nbcc, "bcc") != 0)
		goto oom;

	if (messages_timeline(req, m) != 0)
		goto oom;

	from_node = cJSON_GetObjectItemCaseSensitive(json, "from");
	m->in.id = m->id;
	m->in.created_ms = api_messages_id_ms(m->id, req->now_ms);   /* the id's own time: search ranges */
	m->in.send_at_ms = m->mr.send_at_ms;
	m->in.from = cJSON_IsString(from_node) && from_node->valuestring != NULL ?
	    from_node->valuestring : m->mr.from.email;
	m->in.mail_from = m->mr.from.email;
	m->in.subject = mm.subject != NULL ? mm.subject : "";
	m->in.mime = m->mime;
	m->in.mime_len = m->mime_len;
	m->in.metadata_json = m->mr.metadata_json != NULL ? m->mr.metadata_json : "{}";
	m->in.tags_json = m->mr.tags_json != NULL ? m->mr.tags_json : "[]";
	m->in.timeline_json = m->timeline;
	m->in.tenant = req->tenant != NULL ? req->tenant : "";
	m->in.project = api_project(req);
	m->in.lane = m->mr.priority_high ? STORE_LANE_HIGH : STORE_LANE_NORMAL;
	m->in.rcpts = m->rcpts;
	m->in.nrcpts = m->nrcpts;
	return 0;
oom:
	api_error(resp, 500, "internal_error", "out of memory", NULL);
	return -1;
}

/* the message.failed event and timeline entry of a suppressed recipient (worker.c's shape) */
static int
messages_suppressed(const struct api_request *req, struct messages_one *m, size_t i)
{
	char evt_id[48], at[40];
	cJSON *ev = NULL, *tl = NULL, *data, *meta, *tags;
	int rc = -1;

	if (util_random_id("evt_", evt_id, sizeof(evt_id)) != 0)
		return -1;
	util_rfc3339(req->now_ms, at, sizeof(at));
	ev = cJSON_CreateObject();
	if (ev == NULL ||
	    cJSON_AddStringToObject(ev, "id", evt_id) == NULL ||
	    cJSON_AddStringToObject(ev, "type", "message.failed") == NULL ||
	    cJSON_AddStringToObject(ev, "created_at", at) == NULL ||
	    (data = cJSON_AddObjectToObject(ev, "data")) == NULL ||
	    cJSON_AddStringToObject(data, "message_id", m->id) == NULL ||
	    cJSON_AddStringToObject(data, "recipient", m->rcpts[i].email) == NULL ||
	    cJSON_AddStringToObject(data, "status", "suppressed") == NULL ||
	    cJSON_AddNumberToObject(data, "attempt", 0) == NULL ||
	    cJSON_AddStringToObject(data, "reason", "suppressed") == NULL ||
	    cJSON_AddNullToObject(data, "smtp") == NULL)
		goto out;
	meta = cJSON_Parse(m->in.metadata_json);
	if (meta == NULL)
		meta = cJSON_CreateObject();
	if (meta == NULL || !cJSON_AddItemToObject(data, "metadata", meta)) {
		cJSON_Delete(meta);
		goto out;
	}
	tags = cJSON_Parse(m->in.tags_json);
	if (tags == NULL)
		tags = cJSON_CreateArray();
	if (tags == NULL || !cJSON_AddItemToObject(data, "tags", tags)) {
		cJSON_Delete(tags);
		goto out;
	}
	/* the receipt's measures: refused at acceptance, no wait */
	if (cJSON_AddNumberToObject(data, "latency_ms", 0) == NULL ||
	    cJSON_AddNumberToObject(data, "queued_ms", 0) == NULL)
		goto out;
	tl = cJSON_CreateObject();
	if (tl == NULL ||
	    cJSON_AddStringToObject(tl, "type", "suppressed") == NULL ||
	    cJSON_AddStringToObject(tl, "at", at) == NULL ||
	    cJSON_AddStringToObject(tl, "recipient", m->rcpts[i].email) == NULL ||
	    cJSON_AddNumberToObject(tl, "attempt", 0) == NULL ||
	    cJSON_AddStringToObject(tl, "reason", "suppressed") == NULL ||
	    cJSON_AddNullToObject(tl, "smtp") == NULL ||
	    cJSON_AddStringToObject(tl, "detail", "the address is on the suppression list") == NULL)
		goto out;
	m->events[i] = cJSON_PrintUnformatted(ev);
	m->tls[i] = cJSON_PrintUnformatted(tl);
	if (m->events[i] == NULL || m->tls[i] == NULL)
		goto out;
	m->rcpts[i].status = "suppressed";
	m->rcpts[i].event_json = m->events[i];
	m->rcpts[i].timeline_json = m->tls[i];
	rc = 0;
out:
	cJSON_Delete(ev);
	cJSON_Delete(tl);
	return rc;
}

/*
 * messages_mark - flags (one per recipient of every message, in order;
 * NULL for none) as store_enqueue_checked gives them: flagged recipients
 * get their terminal status and event. Also sets each message's answered
 * status. 0, or -1 (out of memory).
 */
static int
messages_mark(const struct api_request *req, struct messages_one *ms, size_t n,
    const int *flags)
{
	const char **st = NULL;
	size_t max = 1, k = 0;
	int ret = -1;

	for (size_t i = 0; i < n; i++)
		if (ms[i].nrcpts > max)
			max = ms[i].nrcpts;
	st = calloc(max, sizeof(*st));
	if (st == NULL)
		return -1;
	for (size_t i = 0; i < n; i++) {
		struct messages_one *m = &ms[i];

		for (size_t j = 0; j < m->nrcpts; j++) {
			if (flags != NULL && flags[k++] && messages_suppressed(req, m, j) != 0)
				goto out;
			st[j] = m->rcpts[j].status != NULL ? m->rcpts[j].status :
			    m->mr.send_at_ms > 0 ? "scheduled" : "queued";
		}
		m->status = api_messages_summary(st, m->nrcpts);
	}
	ret = 0;
out:
	free(st);
	return ret;
}

char *
api_messages_quote(const char *s)
{
	struct jsonw b = { 0 };

	jsonw_str(&b, s);
	return jsonw_take(&b);
}

/* {"id","status","recipients":[{"email","status"}]} for one prepared message */
static void
messages_accepted_json(struct jsonw *b, const struct messages_one *m)
{
	jsonw_lit(b, "{\"id\":");
	jsonw_str(b, m->id);
	jsonw_lit(b, ",\"status\":");
	jsonw_str(b, m->status);
	jsonw_lit(b, ",\"recipients\":[");
	for (size_t i = 0; i < m->nrcpts; i++) {
		const char *st = m->rcpts[i].status != NULL ? m->rcpts[i].status :
		    m->mr.send_at_ms > 0 ? "scheduled" : "queued";

		jsonw_lit(b, i == 0 ? "{\"email\":" : ",{\"email\":");
		jsonw_str(b, m->rcpts[i].email);
		jsonw_lit(b, ",\"status\":");
		jsonw_str(b, st);
		jsonw_raw(b, "}", 1);
	}
	jsonw_lit(b, "]}");
}

/*
 * messages_idem - the Idempotency-Key of the request, if any, into idem
 * (key and request hash in the caller's buffers). 0 (then *use says
 * whether a key was given) or -1 with a 422 in resp.
 */
static int
messages_idem(const struct api_request *req, struct store_idem *idem, char *key,
    size_t keylen, char *hash, int *use, struct api_response *resp)
{
	const char *hk = api_request_header(req, "Idempotency-Key");
	char khex[HASH_SHA256_HEX_LEN + 1], bhex[HASH_SHA256_HEX_LEN + 1], what[1200];
	int n;

	*use = 0;
	if (hk == NULL)
		return 0;
	if (!api_messages_idem_key_ok(hk)) {
		api_error(resp, 422, "validation_error",
		    "Idempotency-Key must be 1 to 255 printable ASCII characters", "Idempotency-Key");
		return -1;
	}
	if (hash_sha256_hex(hk, strlen(hk), khex) != 0 ||
	    hash_sha256_hex(req->body, req->body_len, bhex) != 0)
		goto fail;
	/* by project: before projects it was the key name (the same text for a key whose
	 * project is its name; env keys' "env:<hash>:..." records just expire, 24 h) */
	snprintf(key, keylen, "%s:%s", req->project != NULL && req->project[0] != '\0' ?
	    req->project : "-", khex);
	/* the request: method, path and the body's digest, NUL-separated */
	n = snprintf(what, sizeof(what), "%s%c%s%c%s", req->method, 0, req->path, 0, bhex);
	if (n < 0 || (size_t)n >= sizeof(what) || hash_sha256_hex(what, (size_t)n, hash) != 0)
		goto fail;
	memset(idem, 0, sizeof(*idem));
	idem->key = key;
	idem->request_hash = hash;
	idem->ttl_ms = MESSAGES_IDEM_TTL_MS;
	*use = 1;
	return 0;
fail:
	api_error(resp, 500, "internal_error", "cannot hash the request", NULL);
	return -1;
}

/* messages_body - the 202 body (also the one stored for replay); free it. NULL: OOM. */
static char *
messages_body(const struct messages_one *ms, size_t n, int single)
{
	struct jsonw b = { 0 };

	if (single) {
		messages_accepted_json(&b, &ms[0]);
	} else {
		jsonw_lit(&b, "{\"data\":[");
		for (size_t i = 0; i < n; i++) {
			if (i > 0)
				jsonw_raw(&b, ",", 1);
			messages_accepted_json(&b, &ms[i]);
		}
		jsonw_lit(&b, "]}");
	}
	return jsonw_take(&b);
}

/*
 * The accept of a send in two halves: messages_accept builds the answer
 * body and the enqueue (store_enqueue_checked's arguments) and either runs
 * it at once or, when the caller can wait (req->can_defer), hands it back
 * as resp->deferred for the accept pipe; messages_accept_finish reads its
 * outcome and answers. Both halves share one struct messages_accept,
 * which owns the messages.
 */
struct messages_accept {
	struct api_deferred d;          /* first: the state is found from d */
	struct messages_one *ms;        /* n of them, owned */
	size_t n;
	int single;
	struct store_message_in *ins;
	struct store_idem idem;
	int use_idem;
	char key[320], hash[65];
	char *body;
	int *flags;
};

static void
messages_accept_free(struct messages_accept *st)
{
	for (size_t i = 0; i < st->n; i++)
		messages_one_free(&st->ms[i]);
	free(st->ms);
	free(st->ins);
	free(st->flags);
	free(st->body);
	free(st->d.op.replay);
	free(st);
}

static void
messages_accept_discard(struct api_deferred *d)
{
	messages_accept_free((struct messages_accept *)(void *)d);
}

static void messages_accept_finish(struct api_deferred *d, const struct api_request *req,
    struct api_response *resp);

/* messages_accept_run - run st's enqueue: deferred to the accept pipe when req->can_defer, else here; then finish. */
static void
messages_accept_run(struct messages_accept *st, const struct api_request *req,
    struct api_response *resp)
{
	struct store_enqueue_op *op = &st->d.op;

	if (req->can_defer) {
		resp->deferred = &st->d;
		return;
	}
	store_enqueue_ops(req->store, &op, 1);
	messages_accept_finish(&st->d, req, resp);
}

/*
 * messages_accept_finish - answer from the enqueue's outcome (d->op):
 * only when a recipient is suppressed, mark it, rebuild the body and
 * store with store_enqueue_batch (a second round trip: deferred again
 * when req->can_defer, then finish runs once more). 202, or the error.
 * Frees d, unless deferred again.
 */
static void
messages_accept_finish(struct api_deferred *d, const struct api_request *req,
    struct api_response *resp)
{
	struct messages_accept *st = (struct messages_accept *)(void *)d;
	struct messages_one *ms = st->ms;
	size_t n = st->n;
	int single = st->single, rc = d->op.rc;
	char *replay = d->op.replay;
	char location[128];

	d->op.replay = NULL;
	if (rc == STORE_ERR_SUPPRESSED && d->op.flags != NULL) {
		/* ins[i].rcpts are ms[i].rcpts: marking them changes what is stored */
		if (messages_mark(req, ms, n, st->flags) != 0)
			goto oom;
		free(st->body);
		st->body = messages_body(ms, n, single);
		if (st->body == NULL)
			goto oom;
		st->idem.response = st->body;
		d->op.flags = NULL;   /* now store_enqueue_batch: stored as marked, never "suppressed" */
		messages_accept_run(st, req, resp);   /* the second round trip, then finish again */
		return;
	}
	if (rc == STORE_ERR_CONFLICT && st->use_idem) {
		api_error(resp, 409, "idempotency_conflict",
		    "this Idempotency-Key was used with a different request", "Idempotency-Key");
		goto out;
	}
	if (rc != STORE_OK) {
		log_warn("enqueue failed", "msg_id=%s messages=%zu request_id=%s error=%s", ms[0].id, n,
		    req->request_id, store_strerror(rc));
		if (rc == STORE_ERR_UNREPLICATED) {
			metrics_redis_unreplicated(METRICS_UNREPL_SEND);
			api_error(resp, 504, "outcome_unknown", single ?
			    "the message is stored, but fewer Redis replicas than TXMAIL_REDIS_MIN_REPLICAS "
			    "confirmed it in time: a failover now could lose it, so it is not reported "
			    "accepted. Retry with the same Idempotency-Key (a retry without one may send it twice)" :
			    "the batch is stored, but fewer Redis replicas than TXMAIL_REDIS_MIN_REPLICAS "
			    "confirmed it in time: a failover now could lose it, so it is not reported "
			    "accepted. Retry with the same Idempotency-Key (a retry without one may send them twice)",
			    NULL);
			api_header(resp, "Retry-After", "1");
		} else if (rc == STORE_ERR_OUTCOME_UNKNOWN) {
			api_error(resp, 504, "outcome_unknown", single ?
			    "storage did not confirm in time whether the message was accepted, and cannot "
			    "be asked now: it may or may not be sent. Retry with the same Idempotency-Key "
			    "(a retry without one may send it twice)" :
			    "storage did not confirm in time whether the batch was accepted, and cannot "
			    "be asked now: all of its messages may or may not be sent. Retry with the same "
			    "Idempotency-Key (a retry without one may send them twice)", NULL);
			api_header(resp, "Retry-After", "1");
		} else {
			api_store_error(resp, rc);
		}
		goto out;
	}

	if (replay != NULL) {
		cJSON *r = single ? cJSON_Parse(replay) : NULL;
		const cJSON *rid = r != NULL ? cJSON_GetObjectItemCaseSensitive(r, "id") : NULL;

		free(resp->body);
		resp->status = 202;
		resp->body = replay;
		resp->body_len = strlen(replay);
		replay = NULL;
		api_header(resp, "Idempotent-Replayed", "true");
		if (cJSON_IsString(rid) && messages_id_ok(rid->valuestring)) {
			snprintf(location, sizeof(location), "/v1/messages/%s", rid->valuestring);
			api_header(resp, "Location", location);
		}
		log_info(single ? "idempotent send replayed" : "idempotent batch replayed",
		    "msg_id=%s request_id=%s", cJSON_IsString(rid) ? rid->valuestring : "",
		    req->request_id);
		cJSON_Delete(r);   /* after the log line: rid points into r */
		goto out;
	}

	/* one line per message, so each can be followed by its msg_id */
	for (size_t i = 0; i < n; i++)
		log_info("accepted", "msg_id=%s rcpts=%zu bytes=%zu status=%s batch=%s request_id=%s",
		    ms[i].id, ms[i].nrcpts, ms[i].mime_len, ms[i].status, single ? "false" : "true",
		    req->request_id);
	metrics_messages_accepted(n);
	for (size_t i = 0; i < n; i++)
		for (size_t k = 0; k < ms[i].nrcpts; k++)
			if (ms[i].rcpts[k].status != NULL && strcmp(ms[i].rcpts[k].status, "suppressed") == 0)
				metrics_recipient("suppressed");
	free(resp->body);
	resp->status = 202;
	resp->body = st->body;
	resp->body_len = strlen(st->body);
	st->body = NULL;
	if (single) {
		messages_cat3(location, sizeof(location), "/v1/messages/", ms[0].id, "");
		api_header(resp, "Location", location);
	}
	goto out;
oom:
	api_error(resp, 500, "internal_error", "out of memory", NULL);
out:
	free(replay);
	messages_accept_free(st);
}

/*
 * messages_accept - the common tail of both sends (ms: n messages, owned
 * from here on): the answer body, then one store_enqueue_checked under
 * the Idempotency-Key, which also checks the suppression list; run here,
 * or deferred (resp->deferred) when req->can_defer.
 * single: answer the one message's object (with Location) instead of {"data"}.
 */
static void
messages_accept(const struct api_request *req, struct messages_one *ms, size_t n, int single,
    struct api_response *resp)
{
	struct messages_accept *st = calloc(1, sizeof(*st));
	struct store_enqueue_op *op;
	size_t nrcpts = 0;

	if (st == NULL) {
		for (size_t i = 0; i < n; i++)
			messages_one_free(&ms[i]);
		free(ms);
		goto oom;
	}
	st->ms = ms;
	st->n = n;
	st->single = single;
	st->d.finish = messages_accept_finish;
	st->d.discard = messages_accept_discard;
	if (messages_idem(req, &st->idem, st->key, sizeof(st->key), st->hash, &st->use_idem,
	    resp) != 0) {
		messages_accept_free(st);
		return;
	}
	st->ins = calloc(n, sizeof(*st->ins));
	if (st->ins == NULL)
		goto oom_free;
	for (size_t i = 0; i < n; i++) {
		st->ins[i] = ms[i].in;
		nrcpts += ms[i].nrcpts;
	}
	st->flags = calloc(nrcpts != 0 ? nrcpts : 1, sizeof(*st->flags));
	if (st->flags == NULL || messages_mark(req, ms, n, NULL) != 0)
		goto oom_free;
	st->body = messages_body(ms, n, single);
	if (st->body == NULL)
		goto oom_free;
	st->idem.response = st->body;
	op = &st->d.op;
	op->m = st->ins;
	op->n = n;
	op->idem = st->use_idem ? &st->idem : NULL;
	op->flags = st->flags;
	messages_accept_run(st, req, resp);
	return;
oom_free:
	messages_accept_free(st);
oom:
	api_error(resp, 500, "internal_error", "out of memory", NULL);
}

/*
 * messages_partition - the partition of a request's messages
 * (TXMAIL_PARTITIONS): from its Idempotency-Key when it has one, so that a
 * retry meets the first answer (the idempotency record is in the same
 * partition), else in turn. A batch is one enqueue script: one partition.
 */
unsigned
api_messages_partition(const struct config *cfg, const char *project, const char *idem_key)
{
	static atomic_uint turn;
	unsigned n = cfg->redis.partitions > 1 ? (unsigned)cfg->redis.partitions : 1;
	const char *prj = project != NULL && project[0] != '\0' ? project : "-";
	uint32_t h = 2166136261u;   /* FNV-1a over project ":" key */

	if (n <= 1)
		return 0;
	if (idem_key == NULL)
		return atomic_fetch_add_explicit(&turn, 1, memory_order_relaxed) % n;
	for (const char *p = prj; *p != '\0'; p++)
		h = (h ^ (unsigned char)*p) * 16777619u;
	h = (h ^ (unsigned char)':') * 16777619u;
	for (const char *p = idem_key; *p != '\0'; p++)
		h = (h ^ (unsigned char)*p) * 16777619u;
	return h % n;
}

static unsigned
messages_partition(const struct api_request *req)
{
	return api_messages_partition(req->cfg, req->project,
	    api_request_header(req, "Idempotency-Key"));
}

void
api_messages_create(const struct api_request *req, struct api_response *resp)
{
	struct messages_one *m = calloc(1, sizeof(*m));

	if (m == NULL) {
		api_error(resp, 500, "internal_error", "out of memory", NULL);
		return;
	}
	if (messages_prepare(req, req->json, NULL, messages_partition(req), m, resp) != 0) {
		messages_one_free(m);
		free(m);
		return;
	}
	messages_accept(req, m, 1, 1, resp);
}

void
api_messages_batch(const struct api_request *req, struct api_response *resp)
{
	const cJSON *list = cJSON_GetObjectItemCaseSensitive(req->json, "messages");
	struct messages_one *ms = NULL;
	size_t n = 0;
	char field[64], prefix[48];

	for (const cJSON *c = req->json != NULL ? req->json->child : NULL; c != NULL; c = c->next)
		if (c->string == NULL || strcmp(c->string, "messages") != 0) {
			api_error(resp, 422, "validation_error", "unknown field",
			    c->string != NULL ? c->string : "");
			return;
		}
	if (!cJSON_IsArray(list)) {
		api_error(resp, 422, "validation_error", "must be an array of messages", "messages");
		return;
	}
	n = (size_t)cJSON_GetArraySize(list);
	if (n == 0 || n > MESSAGES_BATCH_MAX) {
		api_error(resp, 422, "validation_error",
		    "must hold 1 to 500 messages", "messages");
		return;
	}
	ms = calloc(n, sizeof(*ms));
	if (ms == NULL) {
		api_error(resp, 500, "internal_error", "out of memory", NULL);
		return;
	}
	{
		size_t i = 0;
		unsigned part = messages_partition(req);

		for (const cJSON *c = list->child; c != NULL && i < n; c = c->next, i++) {
			snprintf(prefix, sizeof(prefix), "messages[%zu].", i);
			if (!cJSON_IsObject(c)) {
				snprintf(field, sizeof(field), "messages[%zu]", i);
				api_error(resp, 422, "validation_error", "must be an object", field);
				goto fail;
			}
			if (messages_prepare(req, c, prefix, part, &ms[i], resp) != 0)
				goto fail;
		}
	}
	messages_accept(req, ms, n, 0, resp);   /* owns ms from here */
	return;
fail:
	for (size_t i = 0; i < n; i++)
		messages_one_free(&ms[i]);
	free(ms);
}

/*
 * api_messages_submit - a message submitted over SMTP (submission.c): the
 * same accept as POST /v1/messages from DKIM signing on (the message is
 * the client's, made ready by subm_msg_prepare; no validation of fields,
 * no template). req is the session's (method "SMTP", body what the
 * Idempotency-Key's request hash covers: the envelope and the Subject).
 * Answers as POST /v1/messages would: 202 with the body, or the error.
 */
void
api_messages_submit(const struct api_request *req, struct api_submitted *sm,
    struct api_response *resp)
{
	struct messages_one *m = calloc(1, sizeof(*m));
	int64_t max_age_ms = (int64_t)(req->cfg->max_age * 1000.0);

	if (m == NULL) {
		free(sm->mime);
		sm->mime = NULL;
		api_error(resp, 500, "internal_error", "out of memory", NULL);
		return;
	}
	m->mime = sm->mime;
	m->mime_len = sm->mime_len;
	sm->mime = NULL;
	util_strlcpy(m->id, sm->id, sizeof(m->id));
	m->mr.priority_high = sm->priority_high;
	if (dkim_keys_sign_message(req->cfg->dkim_keys, sm->from_email, req->now_ms / 1000,
	    &m->mime, &m->mime_len) != 0) {
		log_error("DKIM signing failed", "msg_id=%s request_id=%s", m->id, req->request_id);
		api_error(resp, 500, "internal_error", "cannot sign the message", NULL);
		goto fail;
	}
	m->rcpts = calloc(sm->nrcpts != 0 ? sm->nrcpts : 1, sizeof(*m->rcpts));
	m->lower = calloc(sm->nrcpts != 0 ? sm->nrcpts : 1, sizeof(*m->lower));
	m->events = calloc(sm->nrcpts != 0 ? sm->nrcpts : 1, sizeof(*m->events));
	m->tls = calloc(sm->nrcpts != 0 ? sm->nrcpts : 1, sizeof(*m->tls));
	if (m->rcpts == NULL || m->lower == NULL || m->events == NULL || m->tls == NULL)
		goto oom;
	for (size_t i = 0; i < sm->nrcpts; i++) {
		char *l = strdup(sm->rcpts[i]);

		if (l == NULL)
			goto oom;
		for (char *p = l; *p != '\0'; p++)
			*p = (char)tolower((unsigned char)*p);
		m->lower[i] = l;
		m->rcpts[i].email = sm->rcpts[i];
		m->rcpts[i].kind = sm->kinds[i];
		m->rcpts[i].lower = l;
		m->nrcpts++;
	}
	if (messages_timeline(req, m) != 0)
		goto oom;
	m->in.id = m->id;
	m->in.created_ms = api_messages_id_ms(m->id, req->now_ms);   /* the id's own time: search ranges */
	m->in.expires_ms = api_messages_expiry(req->now_ms, 0, sm->ttl_ms, max_age_ms);
	m->in.from = sm->from != NULL && sm->from[0] != '\0' ? sm->from : sm->mail_from;
	m->in.mail_from = sm->mail_from;
	m->in.subject = sm->subject != NULL ? sm->subject : "";
	m->in.mime = m->mime;
	m->in.mime_len = m->mime_len;
	m->in.metadata_json = sm->metadata_json != NULL ? sm->metadata_json : "{}";
	m->in.tags_json = sm->tags_json != NULL ? sm->tags_json : "[]";
	m->in.timeline_json = m->timeline;
	m->in.tenant = req->tenant != NULL ? req->tenant : "";
	m->in.project = api_project(req);
	m->in.lane = sm->priority_high ? STORE_LANE_HIGH : STORE_LANE_NORMAL;
	m->in.rcpts = m->rcpts;
	m->in.nrcpts = m->nrcpts;
	messages_accept(req, m, 1, 1, resp);   /* owns m from here */
	return;
oom:
	api_error(resp, 500, "internal_error", "out of memory", NULL);
fail:
	messages_one_free(m);
	free(m);
}

/* --- reading and canceling --------------------------------------------------- */

/* parse stored JSON or fall back to `dflt` (a fresh node of the expected kind) */
static cJSON *
messages_parse_or(const char *json, cJSON *dflt)
{
	cJSON *j = json != NULL && json[0] != '\0' ? cJSON_Parse(json) : NULL;

	if (j == NULL)
		return dflt;
	cJSON_Delete(dflt);
	return j;
}

static const char *
messages_status(const struct store_message_view *v)
{
	if (v->nrcpts == 0)
		return "queued";
	for (size_t i = 1; i < v->nrcpts; i++) {
		const char *a = v->rcpts[0].status, *b = v->rcpts[i].status;

		if (a == NULL || b == NULL || strcmp(a, b) != 0)
			return "partial";
	}
	return v->rcpts[0].status != NULL ? v->rcpts[0].status : "queued";
}

/*
 * messages_receipt - a recipient's receipt fields on r: latency_ms
 * (acceptance -> its latest outcome, null before one), delivered_at and
 * next_attempt_at (RFC 3339; null when not delivered / not deferred).
 * 0, or -1 out of memory.
 */
static int
messages_receipt(cJSON *r, const struct store_rcpt_view *rv)
{
	int deferred = rv->status != NULL && strcmp(rv->status, "deferred") == 0;
	long long lat = rv->latency_ms;

	if (lat < 0 && rv->status != NULL && strcmp(rv->status, "suppressed") == 0)
		lat = 0;   /* refused at acceptance, as its event says */
	if ((lat >= 0 ? cJSON_AddNumberToObject(r, "latency_ms", (double)lat) :
	    cJSON_AddNullToObject(r, "latency_ms")) == NULL)
		return -1;
	if (api_json_time(r, "delivered_at", rv->delivered_ms) != 0 ||
	    api_json_time(r, "next_attempt_at", deferred ? rv->next_attempt_ms : 0) != 0)
		return -1;
	return 0;
}

/* answer the message view of id with http status `status` */
static void
messages_show(const struct api_request *req, const char *id, int status,
    struct api_response *resp)
{
	struct store_message_view v;
	cJSON *out = NULL, *rcpts, *events;
	char at[40];
	int rc;

	memset(&v, 0, sizeof(v));
	rc = store_get_message(req->store, id, &v);
	if (rc == STORE_OK && !api_project_sees(req, v.project))
		rc = STORE_ERR_NOT_FOUND;   /* another project's: answered as missing */
	if (rc == STORE_ERR_NOT_FOUND) {
		api_error(resp, 404, "not_found", "no such message", NULL);
		goto out;
	}
	if (rc != STORE_OK) {
		api_store_error(resp, rc);
		goto out;
	}
	out = cJSON_CreateObject();
	if (out == NULL)
		goto oom;
	util_rfc3339(v.created_ms, at, sizeof(at));
	if (cJSON_AddStringToObject(out, "id", v.id != NULL ? v.id : id) == NULL ||
	    cJSON_AddStringToObject(out, "status", messages_status(&v)) == NULL ||
	    cJSON_AddStringToObject(out, "created_at", at) == NULL ||
	    cJSON_AddStringToObject(out, "from", v.from != NULL ? v.from : "") == NULL ||
	    cJSON_AddStringToObject(out, "subject", v.subject != NULL ? v.subject : "") == NULL ||
	    cJSON_AddStringToObject(out, "priority",
	    v.lane == STORE_LANE_HIGH ? "high" : "normal") == NULL ||
	    cJSON_AddStringToObject(out, "content", v.content_stored ? "stored" : "deleted") == NULL)
		goto oom;
	if (v.send_at_ms > 0) {
		util_rfc3339(v.send_at_ms, at, sizeof(at));
		if (cJSON_AddStringToObject(out, "send_at", at) == NULL)
			goto oom;
	}
	rcpts = cJSON_AddArrayToObject(out, "recipients");
	if (rcpts == NULL)
		goto oom;
	for (size_t i = 0; i < v.nrcpts; i++) {
		const struct store_rcpt_view *rv = &v.rcpts[i];
		cJSON *r = cJSON_CreateObject(), *smtp;

		if (r == NULL)
			goto oom;
		if (!cJSON_AddItemToArray(rcpts, r)) {
			cJSON_Delete(r);
			goto oom;
		}
		if (cJSON_AddStringToObject(r, "email", rv->email != NULL ? rv->email : "") == NULL ||
		    cJSON_AddStringToObject(r, "kind", rv->kind != NULL ? rv->kind : "to") == NULL ||
		    cJSON_AddStringToObject(r, "status", rv->status != NULL ? rv->status : "queued") == NULL ||
		    cJSON_AddNumberToObject(r, "attempts", rv->attempts) == NULL)
			goto oom;
		if (messages_receipt(r, rv) != 0)
			goto oom;
		smtp = messages_parse_or(rv->smtp_json, cJSON_CreateNull());
		if (smtp == NULL)
			goto oom;
		if (!cJSON_AddItemToObject(r, "smtp", smtp)) {
			cJSON_Delete(smtp);
			goto oom;
		}
	}
	events = cJSON_AddArrayToObject(out, "events");
	if (events == NULL)
		goto oom;
	for (size_t i = 0; i < v.ntimeline; i++) {
		cJSON *e = v.timeline_json[i] != NULL ? cJSON_Parse(v.timeline_json[i]) : NULL;

		if (e == NULL)
			continue;  /* a damaged entry is left out, not fatal */
		if (!cJSON_AddItemToArray(events, e)) {
			cJSON_Delete(e);
			goto oom;
		}
	}
	if (api_json_stored(out, "metadata", v.metadata_json, cJSON_CreateObject()) != 0 ||
	    api_json_stored(out, "tags", v.tags_json, cJSON_CreateArray()) != 0)
		goto oom;
	api_json(resp, status, out);
	out = NULL;
	goto out;
oom:
	api_error(resp, 500, "internal_error", "out of memory", NULL);
out:
	cJSON_Delete(out);
	store_message_view_free(&v);
}

void
api_messages_get(const struct api_request *req, struct api_response *resp)
{
	if (!messages_id_ok(req->param)) {
		api_error(resp, 404, "not_found", "no such message", NULL);
		return;
	}
	messages_show(req, req->param, 200, resp);
}

void
api_messages_cancel(const struct api_request *req, struct api_response *resp)
{
	char at[40], tl[96];
	int n = 0, rc;

	if (!messages_id_ok(req->param)) {
		api_error(resp, 404, "not_found", "no such message", NULL);
		return;
	}
	util_rfc3339(req->now_ms, at, sizeof(at));
	snprintf(tl, sizeof(tl), "{\"type\":\"canceled\",\"at\":\"%s\"}", at);
	rc = store_cancel(req->store, req->param, req->all_projects ? NULL : api_project(req), tl,
	    &n);
	if (rc == STORE_ERR_NOT_FOUND) {
		api_error(resp, 404, "not_found", "no such message", NULL);
		return;
	}
	if (rc != STORE_OK) {
		api_store_error(resp, rc);
		return;
	}
	if (n == 0) {
		api_error(resp, 409, "conflict", "nothing left to cancel: every recipient "
		    "is delivered, failed, canceled or in flight", NULL);
		return;
	}
	log_info("canceled", "msg_id=%s rcpts=%d request_id=%s", req->param, n, req->request_id);
	for (int i = 0; i < n; i++)
		metrics_recipient("canceled");
	messages_show(req, req->param, 200, resp);
}
