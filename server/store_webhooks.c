/*
 * store_webhooks.c - the webhook side of the outbox: reading the events
 * stream with the "webhooks" consumer group (store_read_events, which also
 * reclaims the events of dead consumers), fan-out of one event to one
 * delivery per endpoint queue (whq:<endpoint>, a zset by due time) in the
 * same script that acks the event, claiming, finishing and rescheduling
 * those deliveries, and the endpoint records themselves (wheps: create,
 * list, delete with their queues), with what the dashboard shows of each:
 * its backlog (the size of its queue) and its last failed attempt (whfail,
 * a hash of endpoint id -> "<ms> <text>", written by the dispatcher).
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

void
st_event_project(struct store_event *ev, const redisReply *fields)
{
	const redisReply *p = st_entry_field(fields, "p");
	size_t n;

	if (!p || p->len == 0) {
		util_strlcpy(ev->project, STORE_PROJECT_DEFAULT, sizeof(ev->project));
		return;
	}
	n = p->len < sizeof(ev->project) - 1 ? p->len : sizeof(ev->project) - 1;
	memcpy(ev->project, p->str, n);
	ev->project[n] = '\0';
	if (p->len > n)
		ev->project[0] = '\0';   /* too long: no project has this name */
}

/*
 * An event's entry_id as the store hands it out: the stream entry id for
 * partition 0 (as before partitions), "<id>.<k>" for partition k's.
 * st_event_id - write that form; st_event_split - the partition and the
 * stream id (room ST_MAX_ENTRY_ID + 1) of one; -1 when malformed.
 */
static void
st_event_id(char *out, size_t len, const char *id, size_t idlen, unsigned part)
{
	if (part == 0)
		snprintf(out, len, "%.*s", (int)idlen, id);
	else
		snprintf(out, len, "%.*s.%u", (int)idlen, id, part);
}

static int
st_event_split(const char *entry_id, unsigned *part, char *id)
{
	const char *dot;
	size_t n;

	if (!entry_id)
		return -1;
	dot = strchr(entry_id, '.');
	n = dot ? (size_t)(dot - entry_id) : strlen(entry_id);
	if (n == 0 || n > ST_MAX_ENTRY_ID)
		return -1;
	*part = 0;
	if (dot) {
		unsigned v = 0;

		if (!dot[1] || dot[1] == '0' || strlen(dot + 1) > 2)
			return -1;
		for (const char *c = dot + 1; *c; c++) {
			if (*c < '0' || *c > '9')
				return -1;
			v = v * 10 + (unsigned)(*c - '0');
		}
		if (v >= ST_MAX_PARTS)
			return -1;
		*part = v;
	}
	memcpy(id, entry_id, n);
	id[n] = '\0';
	return 0;
}

/*
 * st_collect_events - copy events out of stream entries of partition
 * part's events stream; entries without an "e" field (deleted,
 * malformed) are acked and deleted.
 */
static int
st_collect_events(struct store *s, unsigned part, const redisReply *entries, int max,
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
			    "1", st_pk(s, part, PK_EVENTS), id->str, NULL };
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
		st_event_id(ev->entry_id, sizeof(ev->entry_id), id->str, id->len, part);
		st_event_project(ev, fields);
		ev->json = st_dup(e);
		if (!ev->json) {
			free(ev);
			return STORE_ERR_NOMEM;
		}
		out[(*count)++] = ev;
	}
	return 0;
}

/*
 * st_read_event_streams - one XREADGROUP over the partitions' events
 * streams (from "0": own pending; ">": new, blocking up to block_ms),
 * collected into out. What a group read hands out is this consumer's
 * until acked, so it must never give more than max: COUNT max / n over n
 * streams, n = min(P, max), a window that moves on each call when max < P.
 */
static int
st_read_event_streams(struct store *s, const char *consumer, int max, int block_ms,
    const char *from, struct store_event **out, int *count)
{
	const char *keys[ST_MAX_PARTS];
	const redisReply *entries[ST_MAX_PARTS];
	unsigned part[ST_MAX_PARTS], n = s->nparts < (unsigned)max ? s->nparts : (unsigned)max, k;
	redisReply *r = NULL;
	int rc;

	if (n == 0)
		return 0;
	for (k = 0; k < n; k++) {
		part[k] = (s->event_rr + k) % s->nparts;
		keys[k] = st_pk(s, part[k], PK_EVENTS);
	}
	s->event_rr = (s->event_rr + n) % s->nparts;
	rc = st_xread(s, keys, n, ST_G_WEBHOOKS, consumer, max / (int)n, block_ms, from, &r, entries);
	for (k = 0; k < n && rc == 0; k++)
		if (entries[k])
			rc = st_collect_events(s, part[k], entries[k], max, out, count);
	if (r)
		freeReplyObject(r);
	return rc;
}

int
store_read_events(struct store *s, const char *consumer, int max,
    int block_ms, int64_t min_idle_ms, struct store_event **out)
{
	return store_read_events_flags(s, consumer, max, block_ms, min_idle_ms,
	    STORE_EVENTS_OWN | STORE_EVENTS_RECLAIM, out);
}

int
store_read_events_flags(struct store *s, const char *consumer, int max,
    int block_ms, int64_t min_idle_ms, int flags, struct store_event **out)
{
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
	if (flags & STORE_EVENTS_OWN) {
		rc = st_read_event_streams(s, consumer, max, 0, "0", out, &count);
		if (rc || count > 0)
			goto out;
	}
	/* 2. entries of consumers that died, each partition's from its cursor */
	if (flags & STORE_EVENTS_RECLAIM) {
		for (unsigned p = 0; p < s->nparts && rc == 0 && count < max; p++) {
			rc = st_xautoclaim(s, st_pk(s, p, PK_EVENTS), ST_G_WEBHOOKS, consumer,
			    min_idle_ms > 0 ? min_idle_ms : ST_EVENT_IDLE_MS, max - count,
			    s->event_cursor[p], sizeof(s->event_cursor[p]), &r, &entries);
			if (rc == 0 && entries)
				rc = st_collect_events(s, p, entries, max, out, &count);
			if (r)
				freeReplyObject(r);
			r = NULL;
		}
		if (rc || count > 0)
			goto out;
	}
	/* 3. new ones, blocking */
	if (flags & STORE_EVENTS_NO_NEW)
		goto out;
	rc = st_read_event_streams(s, consumer, max, block_ms, ">", out, &count);
out:
	/* an event goes out only once the replicas have it: a failover must not undo a receipt */
	if (rc == 0 && count > 0)
		rc = store_wait_replicas(s);
	if (rc) {
		while (count > 0)
			store_event_free(out[--count]);
		return rc;
	}
	return count;
}

#define ST_MAX_EP 64     /* endpoint id length */
#define ST_K_WHFAIL ST_PREFIX "whfail"   /* hash: endpoint id -> "<ms> <text>" */
#define ST_FAIL_TEXT_MAX 200

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
	char (*keys)[ST_KEY_MAX] = NULL, eid[ST_MAX_ENTRY_ID + 1];
	struct st_args a;
	unsigned part;
	size_t i;
	int rc, split;

	if (!s || !ev || !ev->json || !st_id_ok(event_id) || (nep && !endpoints) || nep > 1000 ||
	    st_event_split(ev->entry_id, &part, eid) != 0)
		return STORE_ERR_PROTO;
	keys = calloc(nep ? nep : 1, sizeof(*keys));
	if (!keys)
		return STORE_ERR_NOMEM;
	for (i = 0; i < nep; i++)
		if (st_whq_key(keys[i], sizeof(keys[i]), endpoints[i])) {
			rc = STORE_ERR_PROTO;
			goto out;
		}
	/*
	 * The deliveries are partition 0's keys, the event partition part's. On
	 * a Cluster one script cannot hold both (two slots): the deliveries
	 * first, then the ack on the event's own node, so an event is never
	 * acked before its deliveries exist (a crash between: read again, it
	 * creates none twice).
	 */
	split = s->cl && part != 0;
	rc = st_eval_begin(s, &a, 13 + 2 * nep, SC_WH_FANOUT, (int)(1 + nep));
	if (rc)
		goto out;
	st_adds(&a, st_pk(s, split ? 0 : part, PK_EVENTS));
	for (i = 0; i < nep; i++)
		st_adds(&a, keys[i]);
	st_adds(&a, split ? "" : eid);
	st_adds(&a, event_id);
	st_addi(&a, now_ms);
	st_adds(&a, ST_PREFIX);
	st_adds(&a, ev->json);
	st_adds(&a, st_project_name(ev->project));
	for (i = 0; i < nep; i++)
		st_adds(&a, endpoints[i]);
	rc = st_eval_int(s, &a, "webhook fanout", 0, NULL);
	if (rc == 0 && split) {
		const char *ack[4] = { "XACK", st_pk(s, part, PK_EVENTS), ST_G_WEBHOOKS, eid };
		redisReply *r = NULL;

		rc = st_simple(s, 4, ack, &r);
		if (rc == 0 && r->type != REDIS_REPLY_INTEGER)
			rc = st_bad("webhook fanout ack", r);
		if (r)
			freeReplyObject(r);
	}
out:
	free(keys);
	return rc;
}

/*
 * st_split_acks - entry ids (the store's form, st_event_id) as stream ids
 * into ids[] (room n), grouped by partition: part[i] is ids[i]'s. 0 or -1.
 */
static int
st_split_acks(const char *const *entry_ids, size_t n, char (*ids)[ST_MAX_ENTRY_ID + 1],
    unsigned *part)
{
	for (size_t i = 0; i < n; i++)
		if (st_event_split(entry_ids[i], &part[i], ids[i]) != 0)
			return -1;
	return 0;
}

int
store_events_touch(struct store *s, const char *consumer, const char *const *entry_ids, size_t n)
{
	char (*ids)[ST_MAX_ENTRY_ID + 1] = NULL;
	const char **sub = NULL;
	unsigned *part = NULL;
	int rc = 0;

	if (!s || !consumer || !*consumer || (n && !entry_ids) || n > ST_MAX_BATCH)
		return STORE_ERR_PROTO;
	if (n == 0)
		return 0;
	ids = malloc(n * sizeof(*ids));
	sub = malloc(n * sizeof(*sub));
	part = malloc(n * sizeof(*part));
	if (!ids || !sub || !part)
		rc = STORE_ERR_NOMEM;
	else if (st_split_acks(entry_ids, n, ids, part) != 0)
		rc = STORE_ERR_PROTO;
	/* one XCLAIM per partition's stream */
	for (unsigned p = 0; p < s->nparts && rc == 0; p++) {
		size_t m = 0;

		for (size_t i = 0; i < n; i++)
			if (part[i] == p)
				sub[m++] = ids[i];
		rc = st_xtouch(s, "events touch", st_pk(s, p, PK_EVENTS), ST_G_WEBHOOKS, consumer, sub,
		    NULL, STORE_LANE_NORMAL, m);
	}
	free(ids);
	free(sub);
	free(part);
	return rc;
}

int
store_webhook_settle(struct store *s, const struct store_whpark *items, size_t nitems,
    const char *const *ack_ids, size_t nack)
{
	char (*keys)[ST_KEY_MAX] = NULL;
	char (*nums)[3][24] = NULL;
	char (*ids)[ST_MAX_ENTRY_ID + 1] = NULL;
	unsigned *part = NULL;
	long long created = 0;
	struct st_args a;
	size_t i;
	int rc = 0;

	if (!s || (nitems && !items) || (nack && !ack_ids) || nitems > ST_MAX_BATCH || nack > ST_MAX_BATCH)
		return STORE_ERR_PROTO;
	if (nitems == 0 && nack == 0)
		return 0;
	keys = calloc(nitems ? nitems : 1, sizeof(*keys));
	nums = calloc(nitems ? nitems : 1, sizeof(*nums));
	if (!keys || !nums) {
		rc = STORE_ERR_NOMEM;
		goto out;
	}
	for (i = 0; i < nitems; i++) {
		const struct store_whpark *p = &items[i];

		if (!p->body || !p->project || p->attempts < 0 ||
		    st_whq_of_member(keys[i], sizeof(keys[i]), p->member)) {
			rc = STORE_ERR_PROTO;
			goto out;
		}
		snprintf(nums[i][0], sizeof(nums[i][0]), "%d", p->attempts);
		snprintf(nums[i][1], sizeof(nums[i][1]), "%" PRId64, p->first_ms);
		snprintf(nums[i][2], sizeof(nums[i][2]), "%" PRId64, p->due_ms);
	}
	for (i = 0; i < nack; i++)
		if (!ack_ids[i] || !*ack_ids[i] || strlen(ack_ids[i]) > ST_MAX_ENTRY_ID + 3) {
			rc = STORE_ERR_PROTO;
			goto out;
		}
	ids = malloc((nack ? nack : 1) * sizeof(*ids));
	part = malloc((nack ? nack : 1) * sizeof(*part));
	if (!ids || !part) {
		rc = STORE_ERR_NOMEM;
		goto out;
	}
	if (st_split_acks(ack_ids, nack, ids, part) != 0) {
		rc = STORE_ERR_PROTO;
		goto out;
	}
	/*
	 * One call per partition with entries to ack (a call's events stream is
	 * its partition's), the items with partition 0's, whose keys they are
	 * (one slot on a Cluster) and which goes first: they are parked no later
	 * than any of their events is acked. A failure after the first leaves
	 * the later partitions' entries pending: read again, they park nothing
	 * twice (wh:<member> is created only unless it exists).
	 */
	for (unsigned p = 0; p < s->nparts && rc == 0; p++) {
		size_t na = 0, ni = p == 0 ? nitems : 0;
		long long made = 0;

		for (i = 0; i < nack; i++)
			na += part[i] == p;
		if (na == 0 && ni == 0)
			continue;
		rc = st_eval_begin(s, &a, 6 + 8 * ni + na, SC_WH_SETTLE, (int)(1 + ni));
		if (rc)
			break;
		st_adds(&a, st_pk(s, p, PK_EVENTS));
		for (i = 0; i < ni; i++)
			st_adds(&a, keys[i]);
		st_adds(&a, ST_PREFIX);
		st_addi(&a, (int64_t)ni);
		for (i = 0; i < ni; i++) {
			const struct store_whpark *it = &items[i];
			const char *slash = strchr(it->member, '/');

			st_adds(&a, it->member);
			st_adds(&a, slash + 1);
			st_adds(&a, st_project_name(it->project));
			st_adds(&a, it->body);
			st_adds(&a, nums[i][0]);
			st_adds(&a, nums[i][1]);
			st_adds(&a, nums[i][2]);
		}
		for (i = 0; i < nack; i++)
			if (part[i] == p)
				st_adds(&a, ids[i]);
		rc = st_eval_int(s, &a, "webhook settle", 0, &made);
		created += made;
	}
out:
	free(keys);
	free(nums);
	free(ids);
	free(part);
	return rc ? rc : (int)created;
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

/* a claimed delivery: member "<evt_id>/<endpoint>", body, attempts, first_ms */
static const struct st_col st_whd_cols[] = {
	{ ST_COL_STR, 0, offsetof(struct store_whd, member), 0, 0, NULL },
	{ ST_COL_STR, 0, offsetof(struct store_whd, body), 0, 0, NULL },
	{ ST_COL_INT, 0, offsetof(struct store_whd, attempts), 0, 0, NULL },
	{ ST_COL_I64, 0, offsetof(struct store_whd, first_ms), 0, 0, NULL },
};
static const struct st_table st_whd_table = {
	"webhook claim", st_whd_cols, sizeof(st_whd_cols) / sizeof(st_whd_cols[0]),
	sizeof(struct store_whd), 0, ST_MAX_BATCH,
};

static int
st_whd_from(const redisReply *const *el, struct store_whd **out)
{
	struct store_whd *w;
	const char *slash;
	int rc;

	*out = NULL;
	w = calloc(1, sizeof(*w));
	if (!w)
		return STORE_ERR_NOMEM;
	rc = st_row_read(&st_whd_table, el, st_whd_table.ncols, w);
	if (rc == 0 && (slash = strchr(w->member, '/')) == NULL)
		rc = st_bad("webhook member", el[0]);
	if (rc == 0) {
		w->event_id = st_dupn(w->member, (size_t)(slash - w->member));
		w->endpoint = st_dupn(slash + 1, strlen(slash + 1));
		if (!w->event_id || !w->endpoint)
			rc = STORE_ERR_NOMEM;
	}
	if (rc) {
		store_whd_free(w);
		return rc;
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
	if (!st_is_array(r, 0) || r->elements % st_whd_table.ncols != 0 ||
	    r->elements / st_whd_table.ncols > (size_t)max) {
		rc = st_bad("webhook claim", r);
		goto out;
	}
	for (i = 0; i < r->elements; i += st_whd_table.ncols) {
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

static void st_endpoint_forget_failure(struct store *s, const char *id);

#define ST_MAX_ENDPOINTS 1000

/* a row of the endpoint list: [id, url, secret, created_ms, [event, ...], project, description,
 * disabled, disabled_reason, disabled_at, secret_old, old_until, failing_since] */
static const struct st_col st_ep_cols[] = {
	{ ST_COL_STR, 0, offsetof(struct store_endpoint, id), 0, 0, NULL },
	{ ST_COL_STR, 0, offsetof(struct store_endpoint, url), 0, 0, NULL },
	{ ST_COL_STR, 0, offsetof(struct store_endpoint, secret), 0, 0, NULL },
	{ ST_COL_I64, 1, offsetof(struct store_endpoint, created_ms), 0, 0, NULL },
	{ ST_COL_STRV, 0, offsetof(struct store_endpoint, events),
	  offsetof(struct store_endpoint, nevents), 100, NULL },
	{ ST_COL_STR, 0, offsetof(struct store_endpoint, project), 0, STORE_PROJECT_MAX, NULL },
	{ ST_COL_STR, 1, offsetof(struct store_endpoint, description), 0, 0, NULL },
	{ ST_COL_INT, 1, offsetof(struct store_endpoint, disabled), 0, 0, NULL },
	{ ST_COL_STR, 1, offsetof(struct store_endpoint, disabled_reason), 0, 0, NULL },
	{ ST_COL_I64, 1, offsetof(struct store_endpoint, disabled_ms), 0, 0, NULL },
	{ ST_COL_STR, 1, offsetof(struct store_endpoint, secret_old), 0, 0, NULL },
	{ ST_COL_I64, 1, offsetof(struct store_endpoint, old_until_ms), 0, 0, NULL },
	{ ST_COL_I64, 1, offsetof(struct store_endpoint, failing_since_ms), 0, 0, NULL },
};
static const struct st_table st_ep_table = {
	"endpoint list", st_ep_cols, sizeof(st_ep_cols) / sizeof(st_ep_cols[0]),
	sizeof(struct store_endpoint), 1, ST_MAX_ENDPOINTS,
};

void
store_endpoints_free(struct store_endpoint *eps, size_t n)
{
	st_rows_free(&st_ep_table, eps, n);
}

int
store_endpoint_create(struct store *s, const struct store_endpoint *ep)
{
	char kep[ST_KEY_MAX], pp[ST_KEY_MAX];
	struct st_args a;
	size_t i;
	int rc;

	if (!s || !ep || st_project_prefix(pp, sizeof(pp), ep->project) || !ep->url ||
	    !ep->secret || (ep->nevents && !ep->events) || ep->nevents > 100 || !ep->id ||
	    strlen(ep->id) > ST_MAX_EP || !*ep->id || strchr(ep->id, '/') || strcmp(ep->id, "default") == 0 ||
	    st_key(kep, sizeof(kep), ST_PREFIX "whep:", ep->id, NULL))
		return STORE_ERR_PROTO;
	for (i = 0; i < ep->nevents; i++)
		if (!ep->events[i])
			return STORE_ERR_PROTO;
	rc = st_eval_begin(s, &a, 14 + ep->nevents, SC_EP_CREATE, 2);
	if (rc)
		return rc;
	st_adds(&a, kep);
	st_adds(&a, ST_K_WHEPS);
	st_adds(&a, ep->id);
	st_adds(&a, ep->url);
	st_adds(&a, ep->secret);
	st_addi(&a, ep->created_ms);
	st_adds(&a, st_project_name(ep->project));
	st_adds(&a, ep->description ? ep->description : "");
	for (i = 0; i < ep->nevents; i++)
		st_adds(&a, ep->events[i]);
	return st_eval_int(s, &a, "endpoint create", STORE_ERR_CONFLICT, NULL);
}

int
store_endpoint_list(struct store *s, struct store_endpoint **out, size_t *n)
{
	struct st_args a;
	void *v = NULL;
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
	rc = st_eval_rows(s, &a, &st_ep_table, &v, n);
	*out = v;
	return rc;
}

int
store_endpoint_delete(struct store *s, const char *id, const char *project)
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
	st_adds(&a, project ? st_project_name(project) : "");
	rc = st_eval_int(s, &a, "endpoint delete", STORE_ERR_NOT_FOUND, NULL);
	if (rc == STORE_OK)
		st_endpoint_forget_failure(s, id);
	return rc;
}

/* --- operating an endpoint: PATCH, rotate, failure runs, the deliveries log -- */

#define ST_K_WHLOG ST_PREFIX "whlog:"   /* stream per endpoint: its attempts, capped */

int
store_endpoint_update(struct store *s, const char *id, const char *project,
    const struct store_endpoint_patch *p)
{
	char kep[ST_KEY_MAX], kq[ST_KEY_MAX];
	struct st_args a;
	size_t i;
	int rc;

	if (!s || !p || (p->set_events && p->nevents && !p->events) || p->nevents > 100)
		return STORE_ERR_PROTO;
	if (st_whq_key(kq, sizeof(kq), id) || st_key(kep, sizeof(kep), ST_PREFIX "whep:", id, NULL) ||
	    strcmp(id, "default") == 0)
		return STORE_ERR_NOT_FOUND;
	rc = st_eval_begin(s, &a, 16 + p->nevents, SC_EP_UPDATE, 2);
	if (rc)
		return rc;
	st_adds(&a, kep);
	st_adds(&a, kq);
	st_adds(&a, ST_PREFIX);
	st_adds(&a, project ? st_project_name(project) : "");
	st_adds(&a, p->url ? "1" : "0");
	st_adds(&a, p->url ? p->url : "");
	st_adds(&a, p->description ? "1" : "0");
	st_adds(&a, p->description ? p->description : "");
	st_adds(&a, p->enabled < 0 ? "-1" : p->enabled ? "1" : "0");
	st_adds(&a, p->reason ? p->reason : "");
	st_addi(&a, p->now_ms);
	st_addi(&a, p->keep_after_ms);
	st_adds(&a, p->set_events ? "1" : "0");
	for (i = 0; p->set_events && i < p->nevents; i++)
		st_adds(&a, p->events[i]);
	return st_eval_int(s, &a, "endpoint update", STORE_ERR_NOT_FOUND, NULL);
}

int
store_endpoint_rotate(struct store *s, const char *id, const char *project, const char *secret,
    int64_t old_until_ms)
{
	char kep[ST_KEY_MAX], kq[ST_KEY_MAX];
	struct st_args a;
	int rc;

	if (!s || !secret || !*secret || old_until_ms < 0)
		return STORE_ERR_PROTO;
	if (st_whq_key(kq, sizeof(kq), id) || st_key(kep, sizeof(kep), ST_PREFIX "whep:", id, NULL) ||
	    strcmp(id, "default") == 0)
		return STORE_ERR_NOT_FOUND;
	rc = st_eval_begin(s, &a, 8, SC_EP_ROTATE, 1);
	if (rc)
		return rc;
	st_adds(&a, kep);
	st_adds(&a, project ? st_project_name(project) : "");
	st_adds(&a, secret);
	st_addi(&a, old_until_ms);
	return st_eval_int(s, &a, "endpoint rotate", STORE_ERR_NOT_FOUND, NULL);
}

int
store_endpoint_failed(struct store *s, const char *endpoint, int64_t now_ms, const char *text,
    int64_t disable_after_ms, const char *reason)
{
	char kep[ST_KEY_MAX], kq[ST_KEY_MAX], t[ST_FAIL_TEXT_MAX + 1];
	struct st_args a;
	long long v = 0;
	int rc;

	if (!s || now_ms < 0 || st_whq_key(kq, sizeof(kq), endpoint) ||
	    st_key(kep, sizeof(kep), ST_PREFIX "whep:", endpoint, NULL))
		return STORE_ERR_PROTO;
	util_strlcpy(t, text ? text : "", sizeof(t));
	rc = st_eval_begin(s, &a, 12, SC_EP_FAIL, 2);
	if (rc)
		return rc;
	st_adds(&a, ST_K_WHFAIL);
	st_adds(&a, kep);
	st_adds(&a, endpoint);
	st_adds(&a, t);
	st_addi(&a, now_ms);
	st_addi(&a, disable_after_ms > 0 ? disable_after_ms : 0);
	st_adds(&a, reason ? reason : "");
	rc = st_eval_int(s, &a, "endpoint failed", 0, &v);
	return rc ? rc : v == 2;
}

int
store_endpoint_recovered(struct store *s, const char *endpoint)
{
	char kep[ST_KEY_MAX];
	const char *argv[3] = { "HDEL", kep, "failing_since" };
	redisReply *r = NULL;
	int rc;

	if (!s || st_key(kep, sizeof(kep), ST_PREFIX "whep:", endpoint, NULL))
		return STORE_ERR_PROTO;
	rc = st_connect(s);
	if (rc)
		return rc;
	rc = st_simple(s, 3, argv, &r);
	if (rc)
		return rc;
	if (r->type != REDIS_REPLY_INTEGER)
		rc = st_bad("endpoint recovered", r);
	freeReplyObject(r);
	return rc;
}

int
store_webhook_log(struct store *s, const struct store_whlog *items, size_t n)
{
	char (*keys)[ST_KEY_MAX] = NULL;
	char (*nums)[5][24] = NULL;
	struct st_args a;
	size_t i;
	int rc;

	if (!s || (n && !items) || n > ST_MAX_BATCH)
		return STORE_ERR_PROTO;
	if (n == 0)
		return STORE_OK;
	keys = calloc(n, sizeof(*keys));
	nums = calloc(n, sizeof(*nums));
	if (!keys || !nums) {
		rc = STORE_ERR_NOMEM;
		goto out;
	}
	for (i = 0; i < n; i++) {
		const struct store_whlog *it = &items[i];

		if (!it->endpoint || !it->event_id || st_whq_key(keys[i], sizeof(keys[i]), it->endpoint) ||
		    st_key(keys[i], sizeof(keys[i]), ST_K_WHLOG, it->endpoint, NULL)) {
			rc = STORE_ERR_PROTO;
			goto out;
		}
		snprintf(nums[i][0], sizeof(nums[i][0]), "%d", it->attempt);
		snprintf(nums[i][1], sizeof(nums[i][1]), "%" PRId64, it->status);
		snprintf(nums[i][2], sizeof(nums[i][2]), "%" PRId64, it->duration_ms);
		snprintf(nums[i][3], sizeof(nums[i][3]), "%" PRId64, it->next_ms);
		snprintf(nums[i][4], sizeof(nums[i][4]), "%" PRId64, it->at_ms);
	}
	rc = st_eval_begin(s, &a, 6 + 12 * n, SC_WH_LOG, (int)n);
	if (rc)
		goto out;
	for (i = 0; i < n; i++)
		st_adds(&a, keys[i]);
	st_adds(&a, ST_PREFIX);
	st_addi(&a, STORE_WHLOG_MAX);
	for (i = 0; i < n; i++) {
		const struct store_whlog *it = &items[i];

		st_adds(&a, it->endpoint);
		st_adds(&a, it->event_id);
		st_adds(&a, it->type ? it->type : "");
		st_adds(&a, nums[i][0]);
		st_adds(&a, nums[i][1]);
		st_adds(&a, nums[i][2]);
		st_adds(&a, it->response ? it->response : "");
		st_adds(&a, it->error ? it->error : "");
		st_adds(&a, nums[i][3]);
		st_adds(&a, nums[i][4]);
		st_adds(&a, it->body ? it->body : "");
	}
	rc = st_eval_int(s, &a, "webhook log", 0, NULL);
out:
	free(keys);
	free(nums);
	return rc;
}

void
store_whlogs_free(struct store_whlog *rows, size_t n)
{
	for (size_t i = 0; rows && i < n; i++) {
		free(rows[i].entry);
		free(rows[i].endpoint);
		free(rows[i].event_id);
		free(rows[i].type);
		free(rows[i].response);
		free(rows[i].error);
		free(rows[i].body);
	}
	free(rows);
}

/* st_field_i64 - a decimal stream field as int64 (0 when absent or malformed). */
static int64_t
st_field_i64(const redisReply *fields, const char *name)
{
	const redisReply *v = st_entry_field(fields, name);
	char buf[24];
	char *end;
	long long x;

	if (!v || v->len == 0 || v->len >= sizeof(buf))
		return 0;
	memcpy(buf, v->str, v->len);
	buf[v->len] = '\0';
	errno = 0;
	x = strtoll(buf, &end, 10);
	return errno || *end ? 0 : (int64_t)x;
}

/* st_field_dup - a stream field as a malloc'd string ("" when absent); NULL on OOM. */
static char *
st_field_dup(const redisReply *fields, const char *name)
{
	const redisReply *v = st_entry_field(fields, name);

	return v ? st_dupn(v->str, v->len) : strdup("");
}

int
store_webhook_log_list(struct store *s, const char *endpoint, const char *after, size_t limit,
    struct store_whlog **out, size_t *n)
{
	char key[ST_KEY_MAX], kq[ST_KEY_MAX], from[ST_MAX_ENTRY_ID + 2], count[24];
	const char *argv[6] = { "XREVRANGE", key, from, "-", "COUNT", count };
	struct store_whlog *rows = NULL;
	redisReply *r = NULL;
	size_t i, k = 0;
	int rc;

	if (out)
		*out = NULL;
	if (n)
		*n = 0;
	if (!s || !out || !n || limit == 0 || limit > STORE_WHLOG_MAX ||
	    st_whq_key(kq, sizeof(kq), endpoint) || st_key(key, sizeof(key), ST_K_WHLOG, endpoint, NULL))
		return STORE_ERR_PROTO;
	if (after && (strlen(after) > ST_MAX_ENTRY_ID || strspn(after, "0123456789-") != strlen(after) ||
	    !*after))
		return STORE_ERR_PROTO;
	snprintf(from, sizeof(from), "%s%s", after ? "(" : "+", after ? after : "");
	snprintf(count, sizeof(count), "%zu", limit);
	rc = st_connect(s);
	if (rc)
		return rc;
	rc = st_simple(s, 6, argv, &r);
	if (rc)
		return rc;
	if (!st_is_array(r, 0) || r->elements > limit) {
		rc = st_bad("webhook log", r);
		goto out;
	}
	rows = calloc(r->elements ? r->elements : 1, sizeof(*rows));
	if (!rows) {
		rc = STORE_ERR_NOMEM;
		goto out;
	}
	for (i = 0; i < r->elements; i++) {
		const redisReply *id = NULL, *fields = NULL;
		struct store_whlog *w = &rows[k];
		int e = st_entry(r->element[i], &id, &fields);

		if (e == 1)
			continue;
		if (e < 0) {
			rc = st_bad("webhook log entry", r->element[i]);
			goto out;
		}
		w->entry = st_dupn(id->str, id->len);
		w->endpoint = strdup(endpoint);
		w->event_id = st_field_dup(fields, "e");
		w->type = st_field_dup(fields, "t");
		w->response = st_field_dup(fields, "r");
		w->error = st_field_dup(fields, "x");
		k++;
		if (!w->entry || !w->endpoint || !w->event_id || !w->type || !w->response || !w->error) {
			rc = STORE_ERR_NOMEM;
			goto out;
		}
		w->attempt = (int)st_field_i64(fields, "a");
		w->status = st_field_i64(fields, "s");
		w->duration_ms = st_field_i64(fields, "d");
		w->next_ms = st_field_i64(fields, "n");
		w->at_ms = st_field_i64(fields, "at");
	}
out:
	freeReplyObject(r);
	if (rc || k == 0) {
		store_whlogs_free(rows, k);
		return rc;
	}
	*out = rows;
	*n = k;
	return STORE_OK;
}

int
store_webhook_find(struct store *s, const char *endpoint, const char *event_id, char **body,
    int *attempts, int *queued)
{
	char key[ST_KEY_MAX], kq[ST_KEY_MAX], member[256];
	struct st_args a;
	redisReply *r = NULL;
	int rc;

	if (!s || !body || !attempts || !queued || !event_id || !*event_id || strchr(event_id, '/') ||
	    st_whq_key(kq, sizeof(kq), endpoint) || st_key(key, sizeof(key), ST_K_WHLOG, endpoint, NULL))
		return STORE_ERR_PROTO;
	*body = NULL;
	*attempts = 0;
	*queued = 0;
	if ((size_t)snprintf(member, sizeof(member), "%s/%s", event_id, endpoint) >= sizeof(member))
		return STORE_ERR_NOT_FOUND;
	rc = st_eval_begin(s, &a, 8, SC_WH_FIND, 1);
	if (rc)
		return rc;
	st_adds(&a, key);
	st_adds(&a, ST_PREFIX);
	st_adds(&a, member);
	st_adds(&a, event_id);
	rc = st_do(s, &a, &r);
	if (rc)
		goto out;
	if (!st_is_array(r, 0) || (r->elements != 0 && r->elements != 3)) {
		rc = st_bad("webhook find", r);
		goto out;
	}
	if (r->elements == 0) {
		rc = STORE_ERR_NOT_FOUND;
		goto out;
	}
	if (r->element[0]->type != REDIS_REPLY_STRING || r->element[1]->type != REDIS_REPLY_INTEGER ||
	    r->element[2]->type != REDIS_REPLY_INTEGER) {
		rc = st_bad("webhook find", r);
		goto out;
	}
	*body = st_dup(r->element[0]);
	if (!*body) {
		rc = STORE_ERR_NOMEM;
		goto out;
	}
	*attempts = (int)r->element[1]->integer;
	*queued = r->element[2]->integer != 0;
out:
	if (r)
		freeReplyObject(r);
	st_args_release(&a);
	return rc;
}

int
store_webhook_prune(struct store *s, const char *endpoint, int64_t cutoff_ms, int max)
{
	char kq[ST_KEY_MAX];
	struct st_args a;
	long long n = 0;
	int rc;

	if (!s || max <= 0 || st_whq_key(kq, sizeof(kq), endpoint))
		return STORE_ERR_PROTO;
	rc = st_eval_begin(s, &a, 8, SC_WH_PRUNE, 1);
	if (rc)
		return rc;
	st_adds(&a, kq);
	st_adds(&a, ST_PREFIX);
	st_addi(&a, cutoff_ms);
	st_addi(&a, max);
	rc = st_eval_int(s, &a, "webhook prune", 0, &n);
	return rc ? rc : (int)n;
}

/* --- endpoint health (the dashboard's backlog and last failure) ------------ */


int
store_webhook_note_failure(struct store *s, const char *endpoint, int64_t at_ms, const char *text)
{
	char val[ST_FAIL_TEXT_MAX + 32], kq[ST_KEY_MAX];
	const char *argv[4] = { "HSET", ST_K_WHFAIL, endpoint, val };
	redisReply *r = NULL;
	int rc;

	if (!s || st_whq_key(kq, sizeof(kq), endpoint) || at_ms < 0)
		return STORE_ERR_PROTO;
	snprintf(val, sizeof(val), "%" PRId64 " %.*s", at_ms, ST_FAIL_TEXT_MAX, text ? text : "");
	rc = st_connect(s);
	if (rc)
		return rc;
	rc = st_simple(s, 4, argv, &r);
	if (rc)
		return rc;
	if (r->type != REDIS_REPLY_INTEGER)
		rc = st_bad("webhook note failure", r);
	freeReplyObject(r);
	return rc;
}

int
store_endpoint_health(struct store *s, const char *id, int64_t *backlog, int64_t *fail_ms,
    char *fail, size_t faillen)
{
	char kq[ST_KEY_MAX];
	const char *zc[2] = { "ZCARD", kq };
	const char *hg[3] = { "HGET", ST_K_WHFAIL, id };
	redisReply *r = NULL;
	int rc;

	if (!s || !backlog || !fail_ms || !fail || faillen == 0 || st_whq_key(kq, sizeof(kq), id))
		return STORE_ERR_PROTO;
	*backlog = 0;
	*fail_ms = 0;
	fail[0] = '\0';
	rc = st_connect(s);
	if (rc)
		return rc;
	rc = st_simple(s, 2, zc, &r);
	if (rc)
		return rc;
	if (r->type != REDIS_REPLY_INTEGER) {
		rc = st_bad("endpoint backlog", r);
		freeReplyObject(r);
		return rc;
	}
	*backlog = r->integer;
	freeReplyObject(r);
	rc = st_simple(s, 3, hg, &r);
	if (rc)
		return rc;
	if (r->type == REDIS_REPLY_STRING) {
		/* "<ms> <text>"; anything else is ignored (no failure shown) */
		const char *sp = memchr(r->str, ' ', r->len);
		int64_t ms = 0;
		size_t i, n;

		for (i = 0; sp && r->str + i < sp && r->str[i] >= '0' && r->str[i] <= '9' && ms < INT64_MAX / 10 - 10; i++)
			ms = ms * 10 + (r->str[i] - '0');
		if (sp && i > 0 && r->str + i == sp) {
			n = r->len - (size_t)(sp + 1 - r->str);
			if (n >= faillen)
				n = faillen - 1;
			memcpy(fail, sp + 1, n);
			fail[n] = '\0';
			*fail_ms = ms;
		}
	} else if (r->type != REDIS_REPLY_NIL) {
		rc = st_bad("endpoint last failure", r);
	}
	freeReplyObject(r);
	return rc;
}

/* store_endpoint_forget_failure - after a delete: its last failure goes too (best effort). */
static void
st_endpoint_forget_failure(struct store *s, const char *id)
{
	char key[ST_KEY_MAX];
	const char *argv[3] = { "HDEL", ST_K_WHFAIL, id };
	const char *del[2] = { "DEL", key };
	redisReply *r = NULL;

	if (st_simple(s, 3, argv, &r) == 0)
		freeReplyObject(r);
	r = NULL;
	if (st_key(key, sizeof(key), ST_PREFIX "whlog:", id, NULL) == 0 && st_simple(s, 2, del, &r) == 0)
		freeReplyObject(r);
}
