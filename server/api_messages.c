/*
 * api_messages.c - the /v1/messages resource: accept a send request
 * (validate, build the MIME bytes once, store durably, answer 202) and show
 * a message with its recipients and timeline.
 *
 * Owns the JSON shapes of POST /v1/messages and GET /v1/messages/{id}.
 * It must never answer 202 before store_enqueue succeeded, never touch
 * Redis for an id that cannot be one of ours, and never include
 * microhttpd.h (http.c does the wire; see api.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "log.h"
#include "store.h"
#include "util.h"
#include "validate.h"
#include "../smtp/mime.h"

#define MSG_ID_PREFIX "msg_"
#define MSG_ID_CHARS 26

/* 1 when id matches ^msg_[0-9a-z]{26}$ */
static int
messages_id_ok(const char *id)
{
	size_t plen = sizeof(MSG_ID_PREFIX) - 1;

	if (id == NULL || strncmp(id, MSG_ID_PREFIX, plen) != 0 ||
	    strlen(id) != plen + MSG_ID_CHARS)
		return 0;
	for (const char *p = id + plen; *p != '\0'; p++)
		if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z')))
			return 0;
	return 1;
}

static void
messages_add_rcpts(struct store_rcpt_in *r, size_t *n, const struct mime_addr *a,
    size_t na, const char *kind)
{
	for (size_t i = 0; i < na; i++) {
		r[*n].email = a[i].email;
		r[*n].kind = kind;
		(*n)++;
	}
}

void
api_messages_create(const struct api_request *req, struct api_response *resp)
{
	struct msg_request mr;
	struct validate_error verr;
	struct mime_message mm;
	struct store_message_in in;
	struct store_rcpt_in *rcpts = NULL;
	char id[64], msgid[400], at[40], timeline[96], location[128];
	char *mime = NULL;
	size_t mime_len = 0, nrcpts = 0, total;
	uint64_t seed = 0;
	const cJSON *from_node;
	cJSON *out = NULL, *arr;
	int rc;

	rc = validate_message(req->json, &mr, &verr);
	if (rc == -1) {
		api_error(resp, 422, "validation_error", verr.message, verr.field);
		goto out;
	}
	if (rc != 0) {
		api_error(resp, 500, "internal_error", "out of memory", NULL);
		goto out;
	}
	if (util_random_id(MSG_ID_PREFIX, id, sizeof(id)) != 0 ||
	    util_random_bytes(&seed, sizeof(seed)) != 0) {
		api_error(resp, 500, "internal_error", "cannot generate an id", NULL);
		goto out;
	}
	snprintf(msgid, sizeof(msgid), "<%s@%s>", id,
	    req->cfg->helo_name[0] != '\0' ? req->cfg->helo_name : "localhost");

	memset(&mm, 0, sizeof(mm));
	mm.from = mr.from;
	mm.to = mr.to;
	mm.nto = mr.nto;
	mm.cc = mr.cc;
	mm.ncc = mr.ncc;
	mm.reply_to = mr.reply_to;
	mm.nreply_to = mr.nreply_to;
	mm.subject = mr.subject;
	mm.text = mr.text;
	mm.html = mr.html;
	mm.headers = mr.headers;
	mm.nheaders = mr.nheaders;
	mm.date_s = req->now_ms / 1000;
	mm.message_id = msgid;
	mm.boundary_seed = seed;
	rc = mime_build(&mm, &mime, &mime_len);
	if (rc != 0) {
		log_error("api: mime_build failed rc=%d", rc);
		api_error(resp, 500, "internal_error", "cannot build the message", NULL);
		goto out;
	}

	total = mr.nto + mr.ncc + mr.nbcc;
	rcpts = calloc(total != 0 ? total : 1, sizeof(*rcpts));
	if (rcpts == NULL) {
		api_error(resp, 500, "internal_error", "out of memory", NULL);
		goto out;
	}
	messages_add_rcpts(rcpts, &nrcpts, mr.to, mr.nto, "to");
	messages_add_rcpts(rcpts, &nrcpts, mr.cc, mr.ncc, "cc");
	messages_add_rcpts(rcpts, &nrcpts, mr.bcc, mr.nbcc, "bcc");

	util_rfc3339(req->now_ms, at, sizeof(at));
	snprintf(timeline, sizeof(timeline), "{\"type\":\"queued\",\"at\":\"%s\"}", at);

	from_node = cJSON_GetObjectItemCaseSensitive(req->json, "from");
	memset(&in, 0, sizeof(in));
	in.id = id;
	in.created_ms = req->now_ms;
	in.expires_ms = req->now_ms + (int64_t)(req->cfg->max_age * 1000.0);
	in.send_at_ms = 0;
	in.from = cJSON_IsString(from_node) && from_node->valuestring != NULL ?
	    from_node->valuestring : mr.from.email;
	in.mail_from = mr.from.email;
	in.subject = mr.subject != NULL ? mr.subject : "";
	in.mime = mime;
	in.mime_len = mime_len;
	in.metadata_json = mr.metadata_json;
	in.tags_json = mr.tags_json;
	in.timeline_json = timeline;
	in.rcpts = rcpts;
	in.nrcpts = nrcpts;
	rc = store_enqueue(req->store, &in);
	if (rc != STORE_OK) {
		log_warn("api: enqueue failed rc=%d", rc);
		api_store_error(resp, rc == STORE_ERR_NOT_FOUND ? STORE_ERR_PROTO : rc);
		goto out;
	}

	out = cJSON_CreateObject();
	if (out == NULL ||
	    cJSON_AddStringToObject(out, "id", id) == NULL ||
	    cJSON_AddStringToObject(out, "status", "queued") == NULL ||
	    (arr = cJSON_AddArrayToObject(out, "recipients")) == NULL)
		goto oom;
	for (size_t i = 0; i < nrcpts; i++) {
		cJSON *r = cJSON_CreateObject();

		if (r == NULL)
			goto oom;
		if (!cJSON_AddItemToArray(arr, r)) {
			cJSON_Delete(r);
			goto oom;
		}
		if (cJSON_AddStringToObject(r, "email", rcpts[i].email) == NULL ||
		    cJSON_AddStringToObject(r, "status", "queued") == NULL)
			goto oom;
	}
	log_info("accepted msg_id=%s rcpts=%zu bytes=%zu", id, nrcpts, mime_len);
	snprintf(location, sizeof(location), "/v1/messages/%s", id);
	api_json(resp, 202, out);
	out = NULL;
	api_header(resp, "Location", location);
	goto out;
oom:
	/* stored, but we cannot say so: the client retries and may duplicate */
	log_error("api: out of memory answering for accepted msg_id=%s", id);
	api_error(resp, 500, "internal_error", "out of memory", NULL);
out:
	cJSON_Delete(out);
	free(rcpts);
	free(mime);
	msg_request_free(&mr);
}

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

void
api_messages_get(const struct api_request *req, struct api_response *resp)
{
	struct store_message_view v;
	cJSON *out = NULL, *rcpts, *events;
	char at[40];
	int rc;

	memset(&v, 0, sizeof(v));
	if (!messages_id_ok(req->param)) {
		api_error(resp, 404, "not_found", "no such message", NULL);
		return;
	}
	rc = store_get_message(req->store, req->param, &v);
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
	if (cJSON_AddStringToObject(out, "id", v.id != NULL ? v.id : req->param) == NULL ||
	    cJSON_AddStringToObject(out, "status", messages_status(&v)) == NULL ||
	    cJSON_AddStringToObject(out, "created_at", at) == NULL ||
	    cJSON_AddStringToObject(out, "from", v.from != NULL ? v.from : "") == NULL ||
	    cJSON_AddStringToObject(out, "subject", v.subject != NULL ? v.subject : "") == NULL)
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
		    cJSON_AddStringToObject(r, "status", rv->status != NULL ? rv->status : "queued") == NULL ||
		    cJSON_AddNumberToObject(r, "attempts", rv->attempts) == NULL)
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
	{
		cJSON *meta = messages_parse_or(v.metadata_json, cJSON_CreateObject());
		cJSON *tags = messages_parse_or(v.tags_json, cJSON_CreateArray());

		if (meta == NULL || !cJSON_AddItemToObject(out, "metadata", meta)) {
			cJSON_Delete(meta);
			cJSON_Delete(tags);
			goto oom;
		}
		if (tags == NULL || !cJSON_AddItemToObject(out, "tags", tags)) {
			cJSON_Delete(tags);
			goto oom;
		}
	}
	api_json(resp, 200, out);
	out = NULL;
	goto out;
oom:
	api_error(resp, 500, "internal_error", "out of memory", NULL);
out:
	cJSON_Delete(out);
	store_message_view_free(&v);
}
