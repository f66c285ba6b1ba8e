/*
 * api_search.c - GET /v1/messages: a project's messages, newest first, in
 * pages (api_page.h), filtered by status, tag, recipient, from and the
 * creation time (store_message_search over the indexes the enqueue
 * writes). Each message is a summary: id, status, created_at, from,
 * subject, priority, send_at, tags, metadata and its recipients' email
 * and status; GET /v1/messages/{id} has the rest.
 *
 * A page can hold fewer messages than limit - even none - and still have
 * a next_cursor: each page looks at a bounded number of messages however
 * rare the matches (STORE_SEARCH_BUDGET), so it answers in bounded time.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "api_page.h"
#include "store.h"
#include "util.h"

#define SEARCH_KIND "messages"
#define SEARCH_FIELD_MAX 254
#define SEARCH_RCPTS_MAX 1000   /* the store keeps at most ST_MAX_RCPTS per message */

static const char *const search_statuses[] = { "queued", "scheduled", "sending", "deferred",
    "delivered", "failed", "expired", "suppressed", "canceled", "partial" };

/* search_id_ok - a message id: "msg_" and 26..30 of [0-9a-z] (the partition suffix p<k> included) */
static int
search_id_ok(const char *id)
{
	size_t n = strlen(id);

	if (n < 30 || n > 34 || strncmp(id, "msg_", 4) != 0)
		return 0;
	for (size_t i = 4; i < n; i++)
		if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'z')))
			return 0;
	return 1;
}

/*
 * search_text - query argument name, if given: 1..SEARCH_FIELD_MAX octets
 * without control characters, lower-cased when lower, into out. 0 (absent:
 * *out = NULL), or -1 with a 422.
 */
static int
search_text(const struct api_request *req, const char *name, int lower, int addr, char *buf,
    const char **out, struct api_response *resp)
{
	const char *v = api_request_query(req, name);
	size_t n;

	*out = NULL;
	if (v == NULL)
		return 0;
	n = strlen(v);
	if (n == 0 || n > SEARCH_FIELD_MAX) {
		api_error(resp, 422, "validation_error", "must be 1 to 254 characters", name);
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)v[i];

		if (c < 0x20 || c == 0x7f) {
			api_error(resp, 422, "validation_error", "must not hold control characters", name);
			return -1;
		}
		buf[i] = lower ? (char)tolower(c) : (char)c;
	}
	buf[n] = '\0';
	if (addr && (strchr(buf, '@') == NULL || strchr(buf, ' ') != NULL)) {
		api_error(resp, 422, "validation_error", "must be an email address", name);
		return -1;
	}
	*out = buf;
	return 0;
}

static int
search_time(const struct api_request *req, const char *name, int64_t *ms, struct api_response *resp)
{
	const char *v = api_request_query(req, name);

	*ms = 0;
	if (v == NULL)
		return 0;
	if (util_parse_rfc3339(v, ms) != 0 || *ms <= 0) {
		api_error(resp, 422, "validation_error",
		    "must be an RFC 3339 date-time, e.g. 2026-12-01T00:00:00Z", name);
		return -1;
	}
	return 0;
}

static cJSON *
search_item_json(const struct store_search_item *it)
{
	cJSON *o = cJSON_CreateObject(), *rc;
	const char *st[SEARCH_RCPTS_MAX];
	char at[40];
	size_t n = it->nrcpts;

	if (o == NULL)
		return NULL;
	for (size_t i = 0; i < n && i < SEARCH_RCPTS_MAX; i++)
		st[i] = it->statuses[i][0] != '\0' ? it->statuses[i] : NULL;
	util_rfc3339(it->created_ms, at, sizeof(at));
	if (cJSON_AddStringToObject(o, "id", it->id) == NULL ||
	    cJSON_AddStringToObject(o, "status", api_messages_summary(st,
	        n < SEARCH_RCPTS_MAX ? n : SEARCH_RCPTS_MAX)) == NULL ||
	    cJSON_AddStringToObject(o, "created_at", at) == NULL ||
	    cJSON_AddStringToObject(o, "from", it->from) == NULL ||
	    cJSON_AddStringToObject(o, "subject", it->subject) == NULL ||
	    cJSON_AddStringToObject(o, "priority", strcmp(it->prio, "high") == 0 ? "high" : "normal") == NULL)
		goto fail;
	if (it->send_at_ms > 0) {
		util_rfc3339(it->send_at_ms, at, sizeof(at));
		if (cJSON_AddStringToObject(o, "send_at", at) == NULL)
			goto fail;
	}
	if (api_json_stored(o, "tags", it->tags_json, cJSON_CreateArray()) != 0 ||
	    api_json_stored(o, "metadata", it->metadata_json, cJSON_CreateObject()) != 0)
		goto fail;
	if ((rc = cJSON_AddArrayToObject(o, "recipients")) == NULL)
		goto fail;
	for (size_t i = 0; i < n; i++) {
		cJSON *r = cJSON_CreateObject();

		if (r == NULL || !cJSON_AddItemToArray(rc, r) ||
		    cJSON_AddStringToObject(r, "email", it->emails[i]) == NULL ||
		    cJSON_AddStringToObject(r, "status", it->statuses[i][0] != '\0' ?
		        it->statuses[i] : "queued") == NULL)
			goto fail;
	}
	return o;
fail:
	cJSON_Delete(o);
	return NULL;
}

void
api_messages_list(const struct api_request *req, struct api_response *resp)
{
	struct api_page pg;
	struct store_search_q q;
	struct store_search_res res;
	char tag[SEARCH_FIELD_MAX + 1], rcpt[SEARCH_FIELD_MAX + 1], from[SEARCH_FIELD_MAX + 1];
	char status[SEARCH_FIELD_MAX + 1];
	cJSON *out = NULL, *arr;
	int rc;

	memset(&q, 0, sizeof(q));
	if (api_page_parse(req, SEARCH_KIND, &pg, resp) != 0)
		return;
	if (pg.has_after && !search_id_ok(pg.after)) {
		api_error(resp, 422, "validation_error",
		    "not a cursor of this list (use the next_cursor of the page before)", "cursor");
		return;
	}
	if (search_text(req, "status", 0, 0, status, &q.status, resp) != 0 ||
	    search_text(req, "tag", 0, 0, tag, &q.tag, resp) != 0 ||
	    search_text(req, "recipient", 1, 1, rcpt, &q.rcpt, resp) != 0 ||
	    search_text(req, "from", 1, 1, from, &q.from, resp) != 0 ||
	    search_time(req, "created_after", &q.created_after_ms, resp) != 0 ||
	    search_time(req, "created_before", &q.created_before_ms, resp) != 0)
		return;
	if (q.status != NULL) {
		size_t i, n = sizeof(search_statuses) / sizeof(search_statuses[0]);

		for (i = 0; i < n && strcmp(q.status, search_statuses[i]) != 0; i++)
			;
		if (i == n) {
			api_error(resp, 422, "validation_error",
			    "must be one of queued, scheduled, sending, deferred, delivered, failed, expired, "
			    "suppressed, canceled, partial", "status");
			return;
		}
	}
	q.project = api_project(req);
	q.limit = pg.limit;
	q.after = pg.has_after ? pg.after : NULL;
	rc = store_message_search(req->store, &q, &res);
	if (rc != STORE_OK) {
		api_store_error(resp, rc);
		return;
	}
	out = cJSON_CreateObject();
	arr = out != NULL ? cJSON_AddArrayToObject(out, "data") : NULL;
	if (arr == NULL)
		goto oom;
	for (size_t i = 0; i < res.n; i++) {
		cJSON *o = search_item_json(&res.items[i]);

		if (o == NULL || !cJSON_AddItemToArray(arr, o)) {
			cJSON_Delete(o);
			goto oom;
		}
	}
	api_page_answer(resp, out, SEARCH_KIND, res.next[0] != '\0' ? res.next : NULL);
	store_search_res_free(&res);
	return;
oom:
	store_search_res_free(&res);
	cJSON_Delete(out);
	api_error(resp, 500, "internal_error", "out of memory", NULL);
}
