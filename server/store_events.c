/*
 * store_events.c - live events (SSE) over the outbox stream (events):
 * plain XREAD from an explicit id (store_events_since, store_events_last_id),
 * no consumer group and nothing acknowledged, and the trimming of old events
 * (store_trim_events, one script that never drops an entry the webhook group
 * has not read or acknowledged).
 *
 * It must never write events (the record and cancel scripts append them)
 * and never ack or claim: webhook fan-out (store_webhooks.c) owns the group.
 */
#include "store_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "util.h"

static int
st_stream_id_ok(const char *id)
{
	size_t i, n;

	if (!id)
		return 0;
	n = strlen(id);
	if (n == 1 && id[0] == '$')
		return 1;
	if (n == 0 || n > ST_MAX_ENTRY_ID)
		return 0;
	for (i = 0; i < n; i++)
		if (!((id[i] >= '0' && id[i] <= '9') || (id[i] == '-' && i > 0)))
			return 0;
	return 1;
}

int
store_events_since(struct store *s, const char *after, int max, int block_ms,
    struct store_event **out)
{
	struct st_args a;
	redisReply *r = NULL;
	const redisReply *entries;
	size_t i;
	int rc, count = 0;

	if (!s || !out || max <= 0 || !st_stream_id_ok(after))
		return STORE_ERR_PROTO;
	if (max > ST_MAX_BATCH)
		max = ST_MAX_BATCH;
	if (block_ms > 3600 * 1000)
		block_ms = 3600 * 1000;
	rc = st_connect(s);
	if (rc)
		return rc;
	rc = st_args_init(&a, 10);
	if (rc)
		return rc;
	st_adds(&a, "XREAD");
	st_adds(&a, "COUNT");
	st_addi(&a, max);
	if (block_ms > 0) {
		st_adds(&a, "BLOCK");
		st_addi(&a, block_ms);
	}
	st_adds(&a, "STREAMS");
	st_adds(&a, ST_K_EVENTS);
	st_adds(&a, after);
	rc = st_set_timeout(s, st_block_timeout(block_ms));
	if (rc)
		goto out;
	rc = st_do(s, &a, &r);
	if (s->c) {
		int t = st_set_timeout(s, s->cmd_timeout_ms);

		if (rc == 0)
			rc = t;
	}
	if (rc || r->type == REDIS_REPLY_NIL)
		goto out;
	if (!st_is_array(r, 1) || !st_is_array(r->element[0], 2) ||
	    !st_is_array(r->element[0]->element[1], 0)) {
		rc = st_bad("xread", r);
		goto out;
	}
	entries = r->element[0]->element[1];
	for (i = 0; i < entries->elements && count < max; i++) {
		const redisReply *id = NULL, *fields = NULL, *e;
		struct store_event *ev;
		int k = st_entry(entries->element[i], &id, &fields);

		if (k == 1)
			continue;
		if (k < 0 || id->len > ST_MAX_ENTRY_ID) {
			rc = st_bad("events entry", entries->element[i]);
			goto out;
		}
		e = st_entry_field(fields, "e");
		if (!e)
			continue;
		ev = calloc(1, sizeof(*ev));
		if (!ev) {
			rc = STORE_ERR_NOMEM;
			goto out;
		}
		memcpy(ev->entry_id, id->str, id->len);
		ev->entry_id[id->len] = '\0';
		st_event_project(ev, fields);
		ev->json = st_dup(e);
		if (!ev->json) {
			free(ev);
			rc = STORE_ERR_NOMEM;
			goto out;
		}
		out[count++] = ev;
	}
	/* as for webhooks (store_read_events_flags): only what the replicas have is streamed */
	if (count > 0)
		rc = store_wait_replicas(s);
out:
	if (rc)
		while (count > 0)
			store_event_free(out[--count]);
	if (r)
		freeReplyObject(r);
	st_args_release(&a);
	return rc ? rc : count;
}

int
store_trim_events(struct store *s, int64_t before_ms)
{
	struct st_args a;
	redisReply *r = NULL;
	int64_t v = 0;
	int rc;

	if (!s)
		return STORE_ERR_PROTO;
	if (before_ms <= 0)
		return 0;
	rc = st_eval_begin(s, &a, 6, SC_TRIM, 1);
	if (rc)
		return rc;
	st_adds(&a, ST_K_EVENTS);
	st_addi(&a, before_ms);
	rc = st_do(s, &a, &r);
	if (rc == 0 && (st_int(r, &v) != 0 || v < 0))
		rc = st_bad("trim events", r);
	if (r)
		freeReplyObject(r);
	st_args_release(&a);
	if (rc)
		return rc;
	return v > INT32_MAX ? INT32_MAX : (int)v;
}

int
store_events_last_id(struct store *s, char *buf, size_t len)
{
	const char *argv[6] = { "XREVRANGE", ST_K_EVENTS, "+", "-", "COUNT", "1" };
	redisReply *r = NULL;
	int rc;

	if (!s || !buf || len < 4)
		return STORE_ERR_PROTO;
	rc = st_connect(s);
	if (rc)
		return rc;
	rc = st_simple(s, 6, argv, &r);
	if (rc)
		return rc;
	if (!st_is_array(r, 0) || (r->elements > 0 &&
	    (!st_is_array(r->element[0], 1) || !st_is_str(r->element[0]->element[0]) ||
	    strlen(r->element[0]->element[0]->str) >= len))) {
		rc = st_bad("events last id", r);
	} else if (r->elements == 0) {
		snprintf(buf, len, "0-0");
	} else {
		snprintf(buf, len, "%s", r->element[0]->element[0]->str);
	}
	freeReplyObject(r);
	return rc;
}
