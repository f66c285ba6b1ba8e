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
#include "store_cluster.h"

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

/* st_id_parse - "ms-seq" (or "ms": seq 0, as XREAD reads it) into (ms, seq); -1 when malformed. */
static int
st_id_parse(const char *id, size_t len, uint64_t *ms, uint64_t *seq)
{
	const char *dash = memchr(id, '-', len);
	int64_t a, b;

	if (!dash) {
		if (st_parse_i64(id, len, &a) != 0 || a < 0)
			return -1;
		*ms = (uint64_t)a;
		*seq = 0;
		return 0;
	}
	if ( st_parse_i64(id, (size_t)(dash - id), &a) != 0 ||
	    st_parse_i64(dash + 1, len - (size_t)(dash - id) - 1, &b) != 0 || a < 0 || b < 0)
		return -1;
	*ms = (uint64_t)a;
	*seq = (uint64_t)b;
	return 0;
}

/*
 * Live events over several partitions (TXMAIL_PARTITIONS > 1): every
 * partition's outbox is read by one XREAD (atomic: one moment for all of
 * them) and merged by id. An SSE id must order all events and be unique,
 * so with P > 1 it is "<ms>-<seq x 64 + k>" for entry <ms>-<seq> of
 * partition k (ST_MAX_PARTS = 64); with one partition it is the stream id.
 * Two partitions' entries appended in the same millisecond get ids in
 * the order of their partitions, not of their appends, so an event is
 * handed out only once no entry below it can still appear: its
 * millisecond is before the server's TIME taken just before the XREAD
 * (later appends get at least that time) and, where a stream gave a full
 * COUNT, not past that stream's last entry. What is held back is read
 * again by the next call (at once: it is above the reader's cursor).
 */
#define ST_SSE_SCALE ((uint64_t)ST_MAX_PARTS)

struct st_sse_ev {
	struct store_event *ev;
	uint64_t ms, seq;   /* the merged id */
};

static int
st_sse_cmp(const void *a, const void *b)
{
	const struct st_sse_ev *x = a, *y = b;

	if (x->ms != y->ms)
		return x->ms < y->ms ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/*
 * st_sse_after - the stream id partition part reads after, for the merged
 * id (ms, seq): its entries (m, s) with (m, s x 64 + part) > (ms, seq).
 */
static void
st_sse_after(uint64_t ms, uint64_t seq, unsigned part, char *out, size_t len)
{
	if (seq >= part)
		snprintf(out, len, "%" PRIu64 "-%" PRIu64, ms, (seq - part) / ST_SSE_SCALE);
	else if (ms > 0)
		snprintf(out, len, "%" PRIu64 "-%" PRIu64, ms - 1, UINT64_MAX);
	else
		snprintf(out, len, "0-0");   /* (0, 0) of partition part > 0 is after (0, seq < part) */
}

/*
 * st_sse_read - store_events_since after its checks. With one partition
 * the ids are the stream's own and there is nothing to merge: no TIME, no
 * watermark, the reply as it comes.
 */
static int
st_sse_read(struct store *s, const char *after, int max, int block_ms, struct store_event **out)
{
	struct st_cmd cmds[2 * ST_MAX_PARTS];
	redisReply *rep[2 * ST_MAX_PARTS], *xr = NULL, *xrs[ST_MAX_PARTS];
	const int merged = s->nparts > 1;
	const uint64_t scale = merged ? ST_SSE_SCALE : 1;
	char from[ST_MAX_PARTS][48];
	struct st_sse_ev *v = NULL;
	struct st_args a;
	uint64_t ams = 0, aseq = 0, cut_ms, cut_seq = UINT64_MAX;
	int64_t t0 = 0;
	size_t i, j, nv = 0, cap = 0, ncmd = 0;
	int rc, count = 0, dollar = strcmp(after, "$") == 0;

	memset(cmds, 0, sizeof(cmds));
	memset(rep, 0, sizeof(rep));
	memset(xrs, 0, sizeof(xrs));
	if (merged && !dollar && st_id_parse(after, strlen(after), &ams, &aseq) != 0)
		return STORE_ERR_PROTO;
	for (unsigned p = 0; p < s->nparts; p++) {
		if (dollar || !merged)
			snprintf(from[p], sizeof(from[p]), "%s", after);
		else
			st_sse_after(ams, aseq, p, from[p], sizeof(from[p]));
	}
	rc = st_args_init(&a, 8 + 2 * (size_t)s->nparts);
	if (rc)
		return rc;
	if (s->cl) {
		/*
		 * A Cluster: per partition, TIME and an XREAD of its stream on its
		 * own primary (one round trip for all). The watermark is the
		 * earliest of those clocks: an entry appended later on any node gets
		 * at least that node's time.
		 */
		for (unsigned p = 0; p < s->nparts && rc == 0; p++) {
			if (merged) {
				st_adds(&a, "TIME");
				st_route(&a, p);
				rc = st_format(&a, &cmds[ncmd]);
				if (rc)
					break;
				ncmd++;
			}
			st_adds(&a, "XREAD");
			st_adds(&a, "COUNT");
			st_addi(&a, max);
			st_adds(&a, "STREAMS");
			st_adds(&a, st_pk(s, p, PK_EVENTS));
			st_adds(&a, from[p]);
			rc = st_format(&a, &cmds[ncmd]);
			if (rc == 0)
				ncmd++;
		}
		if (rc)
			goto out;
		rc = st_run(s, cmds, ncmd, rep);
	} else {
		if (merged) {
			st_adds(&a, "TIME");
			rc = st_format(&a, &cmds[ncmd++]);
			if (rc)
				goto out;
		}
		st_adds(&a, "XREAD");
		st_adds(&a, "COUNT");
		st_addi(&a, max);
		if (block_ms > 0) {
			st_adds(&a, "BLOCK");
			st_addi(&a, block_ms);
		}
		st_adds(&a, "STREAMS");
		for (unsigned p = 0; p < s->nparts; p++)
			st_adds(&a, st_pk(s, p, PK_EVENTS));
		for (unsigned p = 0; p < s->nparts; p++)
			st_adds(&a, from[p]);
		rc = st_format(&a, &cmds[ncmd]);
		if (rc)
			goto out;
		ncmd++;
		rc = st_set_timeout(s, st_block_timeout(block_ms));
		if (rc == 0)
			rc = st_run(s, cmds, ncmd, rep);
		if (s->c) {
			int t = st_set_timeout(s, s->cmd_timeout_ms);

			if (rc == 0)
				rc = t;
		}
	}
	if (rc)
		goto out;
	cut_ms = UINT64_MAX;
	if (merged) {
		int64_t sec, us;

		for (i = 0; i + 1 < ncmd; i += s->cl ? 2 : ncmd) {
			int64_t t;

			if (!st_is_array(rep[i], 2) || st_int(rep[i]->element[0], &sec) != 0 ||
			    st_int(rep[i]->element[1], &us) != 0 || sec <= 0) {
				rc = st_bad("time", rep[i]);
				goto out;
			}
			t = sec * 1000 + us / 1000;
			if (t0 == 0 || t < t0)
				t0 = t;
		}
		/* handed out: ids below (t0, 0), and not past a stream that gave a full COUNT */
		cut_ms = (uint64_t)t0 - 1;
	}
	if (s->cl) {
		size_t nx = 0;

		for (i = merged ? 1 : 0; i < ncmd; i += merged ? 2 : 1) {
			xrs[nx++] = rep[i];
			rep[i] = NULL;
		}
		xr = st_reply_concat(xrs, nx);
		if (!xr) {
			rc = STORE_ERR_NOMEM;
			goto out;
		}
	} else {
		xr = rep[ncmd - 1];
		rep[ncmd - 1] = NULL;
	}
	if (xr->type == REDIS_REPLY_NIL)
		goto out;
	if (!st_is_array(xr, 1) || xr->elements > s->nparts) {
		rc = st_bad("xread", xr);
		goto out;
	}
	for (j = 0; j < xr->elements; j++) {
		const redisReply *sr = xr->element[j], *entries;
		unsigned part = ST_MAX_PARTS;
		uint64_t lms = 0, lseq = 0;

		if (!st_is_array(sr, 2) || !st_is_str(sr->element[0]) || !st_is_array(sr->element[1], 0)) {
			rc = st_bad("xread", xr);
			goto out;
		}
		for (unsigned p = 0; p < s->nparts; p++)
			if (st_field_is(sr->element[0], st_pk(s, p, PK_EVENTS)))
				part = p;
		if (part == ST_MAX_PARTS) {
			rc = st_bad("xread stream", sr->element[0]);
			goto out;
		}
		entries = sr->element[1];
		for (i = 0; i < entries->elements; i++) {
			const redisReply *id = NULL, *fields = NULL, *e;
			struct store_event *ev;
			uint64_t ms, seq;
			int k = st_entry(entries->element[i], &id, &fields);

			if (k == 1)
				continue;
			if (k < 0 || id->len > ST_MAX_ENTRY_ID || st_id_parse(id->str, id->len, &ms, &seq) != 0 ||
			    seq > (UINT64_MAX - part) / scale) {
				rc = st_bad("events entry", entries->element[i]);
				goto out;
			}
			lms = ms;
			lseq = seq * scale + part;
			e = st_entry_field(fields, "e");
			if (!e)
				continue;
			if (nv == cap) {
				struct st_sse_ev *nvv;

				cap = cap ? 2 * cap : 64;
				nvv = realloc(v, cap * sizeof(*v));
				if (!nvv) {
					rc = STORE_ERR_NOMEM;
					goto out;
				}
				v = nvv;
			}
			ev = calloc(1, sizeof(*ev));
			if (!ev) {
				rc = STORE_ERR_NOMEM;
				goto out;
			}
			v[nv].ev = ev;
			v[nv].ms = ms;
			v[nv].seq = seq * scale + part;
			nv++;
			if (merged)
				snprintf(ev->entry_id, sizeof(ev->entry_id), "%" PRIu64 "-%" PRIu64, ms, v[nv - 1].seq);
			else
				memcpy(ev->entry_id, id->str, id->len + 1);   /* the stream's own */
			st_event_project(ev, fields);
			ev->json = st_dup(e);
			if (!ev->json) {
				rc = STORE_ERR_NOMEM;
				goto out;
			}
		}
		if (entries->elements >= (size_t)max && (lms < cut_ms || (lms == cut_ms && lseq < cut_seq))) {
			cut_ms = lms;
			cut_seq = lseq;
		}
	}
	if (nv > 1)
		qsort(v, nv, sizeof(*v), st_sse_cmp);
	for (i = 0; i < nv && count < max; i++) {
		if (v[i].ms > cut_ms || (v[i].ms == cut_ms && v[i].seq > cut_seq))
			break;
		out[count++] = v[i].ev;
		v[i].ev = NULL;
	}
	if (count > 0)
		rc = store_wait_replicas(s);
out:
	for (i = 0; i < nv; i++)
		store_event_free(v[i].ev);
	free(v);
	if (rc)
		while (count > 0)
			store_event_free(out[--count]);
	for (i = 0; i < ncmd; i++) {
		redisFreeCommand(cmds[i].buf);
		if (rep[i])
			freeReplyObject(rep[i]);
	}
	if (xr)
		freeReplyObject(xr);
	st_args_release(&a);
	return rc ? rc : count;
}

/*
 * st_sse_wait - on a Cluster, where one read cannot block on the outboxes
 * of several nodes: nothing to hand out, so block on one partition's (in
 * turn) for a slice of block_ms, then read them all again. What the wait
 * returns is not used: only a read of every partition has the watermark.
 */
static int
st_sse_wait(struct store *s, const char *after, int max, int block_ms, struct store_event **out)
{
	char from[48];
	struct st_args a;
	redisReply *r = NULL;
	unsigned p = s->block_rr++ % s->nparts;
	uint64_t ams = 0, aseq = 0;
	int rc = st_sse_read(s, after, max, 0, out);

	if (rc != 0 || block_ms <= 0)
		return rc;
	if (s->nparts > 1 && strcmp(after, "$") != 0) {
		if (st_id_parse(after, strlen(after), &ams, &aseq) != 0)
			return STORE_ERR_PROTO;
		st_sse_after(ams, aseq, p, from, sizeof(from));
	} else {
		snprintf(from, sizeof(from), "%s", after);
	}
	rc = st_args_init(&a, 8);
	if (rc)
		return rc;
	st_adds(&a, "XREAD");
	st_adds(&a, "COUNT");
	st_adds(&a, "1");
	st_adds(&a, "BLOCK");
	st_addi(&a, st_block_slice(s, s->nparts, block_ms));
	st_adds(&a, "STREAMS");
	st_adds(&a, st_pk(s, p, PK_EVENTS));
	st_adds(&a, from);
	rc = st_do(s, &a, &r);
	st_args_release(&a);
	if (r)
		freeReplyObject(r);
	if (rc)
		return rc;
	return st_sse_read(s, after, max, 0, out);
}

int
store_events_since(struct store *s, const char *after, int max, int block_ms,
    struct store_event **out)
{
	int rc;

	if (!s || !out || max <= 0 || !st_stream_id_ok(after))
		return STORE_ERR_PROTO;
	if (max > ST_MAX_BATCH)
		max = ST_MAX_BATCH;
	if (block_ms > 3600 * 1000)
		block_ms = 3600 * 1000;
	rc = st_connect(s);
	if (rc)
		return rc;
	if (s->cl)
		return st_sse_wait(s, after, max, block_ms, out);
	return st_sse_read(s, after, max, block_ms, out);
}

int
store_trim_events(struct store *s, int64_t before_ms)
{
	struct st_batch b;
	int64_t v = 0, total = 0;
	int rc;

	if (!s)
		return STORE_ERR_PROTO;
	if (before_ms <= 0)
		return 0;
	memset(&b, 0, sizeof(b));
	rc = st_connect(s);
	if (rc == 0)
		rc = st_batch_init(&b, s->nparts, 6);
	for (unsigned p = 0; p < s->nparts && rc == 0; p++) {
		st_eval(&b.a, s, SC_TRIM, 1);
		st_adds(&b.a, st_pk(s, p, PK_EVENTS));
		st_addi(&b.a, before_ms);
		rc = st_batch_add(&b);
	}
	if (rc == 0)
		rc = st_batch_run(s, &b);
	for (size_t i = 0; i < b.n && rc == 0; i++) {
		if (st_int(b.rep[i], &v) != 0 || v < 0)
			rc = st_bad("trim events", b.rep[i]);
		total += v;
	}
	st_batch_release(&b);
	if (rc)
		return rc;
	return total > INT32_MAX ? INT32_MAX : (int)total;
}

int
store_events_last_id(struct store *s, char *buf, size_t len)
{
	struct st_batch b;
	uint64_t best_ms = 0, best_seq = 0;
	int rc, any = 0;

	if (!s || !buf || len < 4)
		return STORE_ERR_PROTO;
	memset(&b, 0, sizeof(b));
	rc = st_connect(s);
	if (rc == 0)
		rc = st_batch_init(&b, s->nparts, 6);
	/* the newest entry of every partition's outbox; the largest id is where live events start */
	for (unsigned p = 0; p < s->nparts && rc == 0; p++) {
		st_adds(&b.a, "XREVRANGE");
		st_adds(&b.a, st_pk(s, p, PK_EVENTS));
		st_adds(&b.a, "+");
		st_adds(&b.a, "-");
		st_adds(&b.a, "COUNT");
		st_adds(&b.a, "1");
		rc = st_batch_add(&b);
	}
	if (rc == 0)
		rc = st_batch_run(s, &b);
	for (size_t i = 0; i < b.n && rc == 0; i++) {
		const redisReply *r = b.rep[i];
		uint64_t ms, seq;

		if (!st_is_array(r, 0) || (r->elements > 0 &&
		    (!st_is_array(r->element[0], 1) || !st_is_str(r->element[0]->element[0]) ||
		    strlen(r->element[0]->element[0]->str) >= len ||
		    st_id_parse(r->element[0]->element[0]->str, r->element[0]->element[0]->len, &ms,
		    &seq) != 0))) {
			rc = st_bad("events last id", r);
			break;
		}
		if (r->elements == 0)
			continue;
		if (s->nparts > 1)
			seq = seq * ST_SSE_SCALE + i;   /* the merged id (st_sse_read) */
		if (!any || ms > best_ms || (ms == best_ms && seq > best_seq)) {
			best_ms = ms;
			best_seq = seq;
			snprintf(buf, len, "%" PRIu64 "-%" PRIu64, ms, seq);
		}
		any = 1;
	}
	st_batch_release(&b);
	if (rc == 0 && !any)
		snprintf(buf, len, "0-0");
	return rc;
}
