/*
 * store_webhooks.c - the webhook side of the outbox: reading the events
 * stream with the "webhooks" consumer group (store_read_events, which also
 * reclaims the events of dead consumers), fan-out of one event to one
 * delivery per endpoint queue (whq:<endpoint>, a zset by due time) in the
 * same script that acks the event, claiming, finishing and rescheduling
 * those deliveries, and the endpoint records themselves (wheps: create,
 * list, delete with their queues).
 *
 * It must never decide routing or retry times (webhook.c passes the
 * endpoints and next_ms) and never delete outbox entries: SSE readers
 * still read them (store_events.c trims).
 */
#include "store_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "util.h"

/* --- webhooks ------------------------------------------------------------ */

void
store_event_free(struct store_event *ev)
{
	if (!ev)
		return;
	free(ev->json);
	free(ev);
}

/*
 * st_collect_events - copy events out of stream entries; entries without
 * an "e" field (deleted, malformed) are acked and deleted.
 */
static int
st_collect_events(struct store *s, const redisReply *entries, int max,
    struct store_event **out, int *count)
{
	size_t i;

	for (i = 0; i < entries->elements && *count < max; i++) {
		const redisReply *id = NULL, *fields = NULL, *e;
		struct store_event *ev;
		int k = st_entry(entries->element[i], &id, &fields);

		if (k == 1)
			continue;
		if (k < 0 || id->len > ST_MAX_ENTRY_ID)
			return st_bad("events entry", entries->element[i]);
		e = st_entry_field(fields, "e");
		if (!e) {
			const char *argv[6] = { "EVAL",
			    "redis.call('XACK', KEYS[1], 'webhooks', ARGV[1]) "
			    "redis.call('XDEL', KEYS[1], ARGV[1]) return 0",
			    "1", ST_K_EVENTS, id->str, NULL };
			redisReply *r = NULL;
			int rc = st_simple(s, 5, argv, &r);

			if (rc)
				return rc;
			freeReplyObject(r);
			continue;
		}
		ev = calloc(1, sizeof(*ev));
		if (!ev)
			return STORE_ERR_NOMEM;
		memcpy(ev->entry_id, id->str, id->len);
		ev->entry_id[id->len] = '\0';
		ev->json = st_dup(e);
		if (!ev->json) {
			free(ev);
			return STORE_ERR_NOMEM;
		}
		out[(*count)++] = ev;
	}
	return 0;
}

int
store_read_events(struct store *s, const char *consumer, int max,
    int block_ms, int64_t min_idle_ms, struct store_event **out)
{
	static const char *const evkey[1] = { ST_K_EVENTS };
	const redisReply *entries = NULL;
	redisReply *r = NULL;
	int rc, count = 0;

	if (!s || !consumer || !*consumer || !out || max <= 0)
		return STORE_ERR_PROTO;
	if (max > ST_MAX_BATCH)
		max = ST_MAX_BATCH;
	rc = st_connect(s);
	if (rc)
		return rc;
	/* 1. our own pending entries (read before, not yet fanned out) */
	rc = st_xread(s, evkey, 1, ST_G_WEBHOOKS, consumer, max, 0, "0", &r, &entries);
	if (rc == 0 && entries)
		rc = st_collect_events(s, entries, max, out, &count);
	if (r)
		freeReplyObject(r);
	r = NULL;
	if (rc || count > 0)
		goto out;
	/* 2. entries of consumers that died */
	rc = st_xautoclaim(s, ST_K_EVENTS, ST_G_WEBHOOKS, consumer, min_idle_ms > 0 ? min_idle_ms : ST_EVENT_IDLE_MS, max,
	    s->event_cursor, sizeof(s->event_cursor), &r, &entries);
	if (rc == 0 && entries)
		rc = st_collect_events(s, entries, max, out, &count);
	if (r)
		freeReplyObject(r);
	r = NULL;
	if (rc || count > 0)
		goto out;
	/* 3. new ones, blocking */
	rc = st_xread(s, evkey, 1, ST_G_WEBHOOKS, consumer, max, block_ms, ">", &r, &entries);
	if (rc == 0 && entries)
		rc = st_collect_events(s, entries, max, out, &count);
	if (r)
		freeReplyObject(r);
out:
	if (rc) {
		while (count > 0)
			store_event_free(out[--count]);
		return rc;
	}
	return count;
}

#define ST_MAX_EP 64     /* endpoint id length */

/* st_whq_key - the due set of one endpoint. */
static int
st_whq_key(char *buf, size_t len, const char *endpoint)
{
	if (!endpoint || !*endpoint || strlen(endpoint) > ST_MAX_EP || strchr(endpoint, '/'))
		return -1;
	return st_key(buf, len, ST_K_WHQ, endpoint, NULL);
}

/* st_whq_of_member - the due set of "<evt_id>/<endpoint>". */
static int
st_whq_of_member(char *buf, size_t len, const char *member)
{
	const char *slash;

	if (!member || !*member || strlen(member) > 200)
		return -1;
	slash = strchr(member, '/');
	if (!slash || slash == member)
		return -1;
	return st_whq_key(buf, len, slash + 1);
}

int
store_webhook_fanout(struct store *s, const struct store_event *ev,
    const char *event_id, const char *const *endpoints, size_t nep, int64_t now_ms)
{
	char (*keys)[ST_KEY_MAX] = NULL;
	struct st_args a;
	size_t i;
	int rc;

	if (!s || !ev || !ev->json || !st_id_ok(event_id) || (nep && !endpoints) || nep > 1000)
		return STORE_ERR_PROTO;
	keys = calloc(nep ? nep : 1, sizeof(*keys));
	if (!keys)
		return STORE_ERR_NOMEM;
	for (i = 0; i < nep; i++)
		if (st_whq_key(keys[i], sizeof(keys[i]), endpoints[i])) {
			rc = STORE_ERR_PROTO;
			goto out;
		}
	rc = st_eval_begin(s, &a, 12 + 2 * nep, SC_WH_FANOUT, (int)(1 + nep));
	if (rc)
		goto out;
	st_adds(&a, ST_K_EVENTS);
	for (i = 0; i < nep; i++)
		st_adds(&a, keys[i]);
	st_adds(&a, ev->entry_id);
	st_adds(&a, event_id);
	st_addi(&a, now_ms);
	st_adds(&a, ST_PREFIX);
	st_adds(&a, ev->json);
	for (i = 0; i < nep; i++)
		st_adds(&a, endpoints[i]);
	rc = st_eval_int(s, &a, "webhook fanout", 0, NULL);
out:
	free(keys);
	return rc;
}

void
store_whd_free(struct store_whd *w)
{
	if (!w)
		return;
	free(w->member);
	free(w->event_id);
	free(w->endpoint);
	free(w->body);
	free(w);
}

static int
st_whd_from(const redisReply *const *el, struct store_whd **out)
{
	struct store_whd *w;
	const char *slash;
	int64_t att, first;
	size_t i;

	*out = NULL;
	for (i = 0; i < 4; i++)
		if (!st_is_str(el[i]))
			return st_bad("webhook claim", el[i]);
	if (st_int(el[2], &att) != 0 || st_int(el[3], &first) != 0 || att < 0 || att > INT32_MAX)
		return st_bad("webhook claim numbers", el[2]);
	slash = memchr(el[0]->str, '/', el[0]->len);
	if (!slash)
		return st_bad("webhook member", el[0]);
	w = calloc(1, sizeof(*w));
	if (!w)
		return STORE_ERR_NOMEM;
	w->member = st_dup(el[0]);
	w->event_id = st_dupn(el[0]->str, (size_t)(slash - el[0]->str));
	w->endpoint = st_dupn(slash + 1, el[0]->len - (size_t)(slash - el[0]->str) - 1);
	w->body = st_dup(el[1]);
	w->attempts = (int)att;
	w->first_ms = first;
	if (!w->member || !w->event_id || !w->endpoint || !w->body) {
		store_whd_free(w);
		return STORE_ERR_NOMEM;
	}
	*out = w;
	return 0;
}

int
store_webhook_claim(struct store *s, const char *endpoint, int64_t now_ms, int64_t lease_ms,
    int max, struct store_whd **out)
{
	char kq[ST_KEY_MAX];
	struct st_args a;
	redisReply *r = NULL;
	size_t i;
	int rc, count = 0;

	if (!s || !out || max <= 0 || lease_ms < 0 || st_whq_key(kq, sizeof(kq), endpoint))
		return STORE_ERR_PROTO;
	if (max > ST_MAX_BATCH)
		max = ST_MAX_BATCH;
	rc = st_eval_begin(s, &a, 10, SC_WH_CLAIM, 1);
	if (rc)
		return rc;
	st_adds(&a, kq);
	st_addi(&a, now_ms);
	st_addi(&a, now_ms + lease_ms);
	st_addi(&a, max);
	st_adds(&a, ST_PREFIX);
	rc = st_do(s, &a, &r);
	if (rc)
		goto out;
	if (!st_is_array(r, 0) || r->elements % 4 != 0 || r->elements / 4 > (size_t)max) {
		rc = st_bad("webhook claim", r);
		goto out;
	}
	for (i = 0; i < r->elements; i += 4) {
		int e = st_whd_from((const redisReply *const *)&r->element[i], &out[count]);

		if (e == STORE_ERR_NOMEM) {
			rc = e;
			goto out;
		}
		if (e == 0)
			count++;   /* a malformed one stays leased and comes back */
	}
out:
	if (rc)
		while (count > 0)
			store_whd_free(out[--count]);
	if (r)
		freeReplyObject(r);
	st_args_release(&a);
	return rc ? rc : count;
}

int
store_webhook_done(struct store *s, const char *member)
{
	char kq[ST_KEY_MAX];
	struct st_args a;
	int rc;

	if (!s || st_whq_of_member(kq, sizeof(kq), member))
		return STORE_ERR_PROTO;
	rc = st_eval_begin(s, &a, 8, SC_WH_DONE, 1);
	if (rc)
		return rc;
	st_adds(&a, kq);
	st_adds(&a, member);
	st_adds(&a, ST_PREFIX);
	return st_eval_int(s, &a, "webhook done", 0, NULL);
}

int
store_webhook_retry(struct store *s, const char *member, int attempts, int64_t next_ms)
{
	char kq[ST_KEY_MAX];
	struct st_args a;
	int rc;

	if (!s || attempts < 0 || st_whq_of_member(kq, sizeof(kq), member))
		return STORE_ERR_PROTO;
	rc = st_eval_begin(s, &a, 10, SC_WH_RETRY, 1);
	if (rc)
		return rc;
	st_adds(&a, kq);
	st_adds(&a, member);
	st_addi(&a, attempts);
	st_addi(&a, next_ms);
	st_adds(&a, ST_PREFIX);
	return st_eval_int(s, &a, "webhook retry", STORE_ERR_NOT_FOUND, NULL);
}

int64_t
store_webhook_next_due(struct store *s, const char *endpoint)
{
	char kq[ST_KEY_MAX];
	const char *argv[5] = { "ZRANGE", kq, "0", "0", "WITHSCORES" };
	redisReply *r = NULL;
	int64_t v = 0;
	int rc;

	if (!s || st_whq_key(kq, sizeof(kq), endpoint))
		return STORE_ERR_PROTO;
	rc = st_connect(s);
	if (rc)
		return rc;
	rc = st_simple(s, 5, argv, &r);
	if (rc)
		return rc;
	if (!st_is_array(r, 0) || (r->elements != 0 && r->elements != 2) ||
	    (r->elements == 2 && st_score(r->element[1], &v) != 0))
		rc = st_bad("webhook next due", r);
	freeReplyObject(r);
	return rc ? rc : v;
}

/* --- webhook endpoints ---------------------------------------------------- */

#define ST_MAX_ENDPOINTS 1000

void
store_endpoints_free(struct store_endpoint *eps, size_t n)
{
	size_t i, j;

	if (!eps)
		return;
	for (i = 0; i < n; i++) {
		free(eps[i].id);
		free(eps[i].url);
		free(eps[i].secret);
		for (j = 0; eps[i].events && j < eps[i].nevents; j++)
			free(eps[i].events[j]);
		free(eps[i].events);
	}
	free(eps);
}

int
store_endpoint_create(struct store *s, const struct store_endpoint *ep)
{
	char kep[ST_KEY_MAX];
	struct st_args a;
	size_t i;
	int rc;

	if (!s || !ep || !ep->url || !ep->secret || (ep->nevents && !ep->events) ||
	    ep->nevents > 100 || !ep->id || strlen(ep->id) > ST_MAX_EP || !*ep->id ||
	    strchr(ep->id, '/') || strcmp(ep->id, "default") == 0 ||
	    st_key(kep, sizeof(kep), ST_PREFIX "whep:", ep->id, NULL))
		return STORE_ERR_PROTO;
	for (i = 0; i < ep->nevents; i++)
		if (!ep->events[i])
			return STORE_ERR_PROTO;
	rc = st_eval_begin(s, &a, 12 + ep->nevents, SC_EP_CREATE, 2);
	if (rc)
		return rc;
	st_adds(&a, kep);
	st_adds(&a, ST_K_WHEPS);
	st_adds(&a, ep->id);
	st_adds(&a, ep->url);
	st_adds(&a, ep->secret);
	st_addi(&a, ep->created_ms);
	for (i = 0; i < ep->nevents; i++)
		st_adds(&a, ep->events[i]);
	return st_eval_int(s, &a, "endpoint create", STORE_ERR_CONFLICT, NULL);
}

static int
st_endpoint_from(const redisReply *e, struct store_endpoint *ep)
{
	const redisReply *evs;
	size_t i;

	if (!st_is_array(e, 5))
		return st_bad("endpoint list entry", e);
	for (i = 0; i < 4; i++)
		if (!st_is_str(e->element[i]))
			return st_bad("endpoint list field", e->element[i]);
	evs = e->element[4];
	if (!st_is_array(evs, 0) || evs->elements > 100)
		return st_bad("endpoint events", evs);
	if (st_int(e->element[3], &ep->created_ms) != 0)
		ep->created_ms = 0;
	ep->id = st_dup(e->element[0]);
	ep->url = st_dup(e->element[1]);
	ep->secret = st_dup(e->element[2]);
	if (!ep->id || !ep->url || !ep->secret)
		return STORE_ERR_NOMEM;
	if (evs->elements == 0)
		return 0;
	ep->events = calloc(evs->elements, sizeof(*ep->events));
	if (!ep->events)
		return STORE_ERR_NOMEM;
	for (i = 0; i < evs->elements; i++) {
		if (!st_is_str(evs->element[i]))
			return st_bad("endpoint event", evs->element[i]);
		ep->events[i] = st_dup(evs->element[i]);
		if (!ep->events[i])
			return STORE_ERR_NOMEM;
		ep->nevents = i + 1;
	}
	return 0;
}

int
store_endpoint_list(struct store *s, struct store_endpoint **out, size_t *n)
{
	struct store_endpoint *eps = NULL;
	struct st_args a;
	redisReply *r = NULL;
	size_t i, cnt = 0;
	int rc;

	if (out)
		*out = NULL;
	if (n)
		*n = 0;
	if (!s || !out || !n)
		return STORE_ERR_PROTO;
	rc = st_eval_begin(s, &a, 8, SC_EP_LIST, 1);
	if (rc)
		return rc;
	st_adds(&a, ST_K_WHEPS);
	st_adds(&a, ST_PREFIX);
	st_addi(&a, ST_MAX_ENDPOINTS);
	rc = st_do(s, &a, &r);
	if (rc)
		goto out;
	if (!st_is_array(r, 0) || r->elements > ST_MAX_ENDPOINTS) {
		rc = st_bad("endpoint list", r);
		goto out;
	}
	if (r->elements) {
		eps = calloc(r->elements, sizeof(*eps));
		if (!eps) {
			rc = STORE_ERR_NOMEM;
			goto out;
		}
	}
	for (i = 0; i < r->elements; i++) {
		cnt = i + 1;
		rc = st_endpoint_from(r->element[i], &eps[i]);
		if (rc)
			goto out;
	}
	*out = eps;
	*n = cnt;
	eps = NULL;
out:
	store_endpoints_free(eps, cnt);
	if (r)
		freeReplyObject(r);
	st_args_release(&a);
	return rc;
}

int
store_endpoint_delete(struct store *s, const char *id)
{
	char kep[ST_KEY_MAX], kq[ST_KEY_MAX];
	struct st_args a;
	int rc;

	if (!s)
		return STORE_ERR_PROTO;
	if (st_whq_key(kq, sizeof(kq), id) || st_key(kep, sizeof(kep), ST_PREFIX "whep:", id, NULL))
		return STORE_ERR_NOT_FOUND;
	rc = st_eval_begin(s, &a, 10, SC_EP_DELETE, 3);
	if (rc)
		return rc;
	st_adds(&a, kep);
	st_adds(&a, ST_K_WHEPS);
	st_adds(&a, kq);
	st_adds(&a, id);
	st_adds(&a, ST_PREFIX);
	return st_eval_int(s, &a, "endpoint delete", STORE_ERR_NOT_FOUND, NULL);
}
