/*
 * store_shaping.c - delivery shaping shared by every worker process:
 * TXMAIL_DOMAIN_RATE sending slots booked in blocks (shape_rate.lua) and
 * the suspended destinations (shape_susp.lua), each one script call; and
 * the destinations a feeder found at their in-flight cap (sat.lua), which
 * enqueue.lua reads.
 *
 * Owns the keys shape:rate:<domain>, shape:susp and sat. Decides nothing: how
 * many slots to ask for, when to ask and what a suspension is belongs to
 * server/shaper.c, which calls this from its own thread with its own
 * handle. Never waits longer than the handle's command timeout, never
 * retries (the shaper falls back to local shaping on an error).
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "store_internal.h"
#include "util.h"

static int
shape_key_ok(const char *k)
{
	size_t n = k != NULL ? strlen(k) : 0;

	return n >= 1 && n <= STORE_SHAPE_KEY_MAX;
}

int
store_shape_reserve(struct store *s, struct store_slot_req *r, size_t n, int64_t *now_us)
{
	struct st_args a;
	redisReply *rep = NULL;
	char (*keys)[sizeof(ST_K_SHAPE_RATE) + STORE_SHAPE_KEY_MAX] = NULL;
	char (*nums)[ST_I64_LEN] = NULL;
	int64_t now = 0;
	int rc;

	memset(&a, 0, sizeof(a));
	if (s == NULL || r == NULL || now_us == NULL || n == 0 || n > STORE_SHAPE_BATCH_MAX)
		return STORE_ERR_PROTO;
	for (size_t i = 0; i < n; i++)
		if (!shape_key_ok(r[i].domain) || r[i].interval_us < 1 || r[i].k < 1 ||
		    r[i].k > STORE_SHAPE_SLOTS_MAX)
			return STORE_ERR_PROTO;
	keys = calloc(n, sizeof(*keys));
	nums = calloc(2 * n, sizeof(*nums));
	if (keys == NULL || nums == NULL) {
		rc = STORE_ERR_NOMEM;
		goto out;
	}
	rc = st_eval_begin(s, &a, 3 + 3 * n, SC_SHAPE_RATE, (int)n);
	if (rc)
		goto out;
	for (size_t i = 0; i < n; i++) {
		size_t pl = sizeof(ST_K_SHAPE_RATE) - 1, dl = strlen(r[i].domain);

		memcpy(keys[i], ST_K_SHAPE_RATE, pl);
		for (size_t c = 0; c < dl; c++)
			keys[i][pl + c] = (char)tolower((unsigned char)r[i].domain[c]);
		st_add(&a, keys[i], pl + dl);
	}
	for (size_t i = 0; i < n; i++) {
		size_t l1 = st_i64(nums[2 * i], r[i].k), l2 = st_i64(nums[2 * i + 1], r[i].interval_us);

		st_add(&a, nums[2 * i], l1);
		st_add(&a, nums[2 * i + 1], l2);
	}
	rc = st_do(s, &a, &rep);
	if (rc)
		goto out;
	if (!st_is_array(rep, n + 1) || rep->elements != n + 1 || st_int(rep->element[0], &now) != 0) {
		rc = st_bad("shape rate", rep);
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		int64_t v;

		if (st_int(rep->element[i + 1], &v) != 0) {
			rc = st_bad("shape rate", rep);
			goto out;
		}
	}
	for (size_t i = 0; i < n; i++)
		(void)st_int(rep->element[i + 1], &r[i].start_us);
	*now_us = now;
out:
	if (rep)
		freeReplyObject(rep);
	st_args_release(&a);
	free(keys);
	free(nums);
	return rc;
}

int
store_shape_suspensions(struct store *s, const struct store_susp_op *ops, size_t nops,
    size_t cap, struct store_susp **out, size_t *nout, int *full)
{
	struct st_args a;
	redisReply *rep = NULL;
	char (*nums)[ST_I64_LEN] = NULL;
	char capn[ST_I64_LEN];
	struct store_susp *list = NULL;
	size_t nl = 0, m;
	int64_t v;
	int rc;

	memset(&a, 0, sizeof(a));
	if (out != NULL)
		*out = NULL;
	if (nout != NULL)
		*nout = 0;
	if (full != NULL)
		*full = 0;
	if (s == NULL || out == NULL || nout == NULL || full == NULL || cap == 0 ||
	    nops > STORE_SHAPE_OPS_MAX || (nops > 0 && ops == NULL))
		return STORE_ERR_PROTO;
	for (size_t i = 0; i < nops; i++)
		if (!shape_key_ok(ops[i].dest) || ops[i].remaining_ms < 0 || ops[i].backoff_ms < 0)
			return STORE_ERR_PROTO;
	if (nops > 0 && (nums = calloc(2 * nops, sizeof(*nums))) == NULL)
		return STORE_ERR_NOMEM;
	rc = st_eval_begin(s, &a, 5 + 3 * nops, SC_SHAPE_SUSP, 1);
	if (rc)
		goto out;
	st_adds(&a, ST_K_SHAPE_SUSP);
	st_add(&a, capn, st_i64(capn, (int64_t)cap));
	for (size_t i = 0; i < nops; i++) {
		st_adds(&a, ops[i].dest);
		st_add(&a, nums[2 * i], st_i64(nums[2 * i], ops[i].remaining_ms));
		st_add(&a, nums[2 * i + 1], st_i64(nums[2 * i + 1], ops[i].backoff_ms));
	}
	rc = st_do(s, &a, &rep);
	if (rc)
		goto out;
	if (!st_is_array(rep, 2) || (rep->elements - 2) % 3 != 0 ||
	    st_int(rep->element[1], &v) != 0) {
		rc = st_bad("shape suspensions", rep);
		goto out;
	}
	*full = v != 0;
	m = (rep->elements - 2) / 3;
	if (m > cap) {
		m = cap;
		*full = 1;
	}
	if (m > 0 && (list = calloc(m, sizeof(*list))) == NULL) {
		rc = STORE_ERR_NOMEM;
		goto out;
	}
	for (size_t i = 0; i < m; i++) {
		const redisReply *d = rep->element[2 + 3 * i];
		struct store_susp *e = &list[nl];

		if (!st_is_str(d) || d->len > STORE_SHAPE_KEY_MAX ||
		    st_int(rep->element[3 + 3 * i], &e->remaining_ms) != 0 ||
		    st_int(rep->element[4 + 3 * i], &e->backoff_ms) != 0) {
			rc = st_bad("shape suspensions", rep);
			goto out;
		}
		if (e->remaining_ms <= 0)
			continue;
		memcpy(e->dest, d->str, d->len);
		e->dest[d->len] = '\0';
		nl++;
	}
	if (nl > 0) {
		*out = list;
		*nout = nl;
		list = NULL;
	}
out:
	if (rep)
		freeReplyObject(rep);
	st_args_release(&a);
	free(list);
	free(nums);
	return rc;
}

int
store_saturate(struct store *s, struct store_sat *v, size_t n)
{
	struct st_batch b;
	const redisReply *rep = NULL;
	char (*doms)[STORE_SHAPE_KEY_MAX + 1] = NULL;
	char (*nums)[ST_I64_LEN] = NULL;
	char capn[ST_I64_LEN], nown[ST_I64_LEN];
	int rc;

	memset(&b, 0, sizeof(b));
	if (s == NULL || v == NULL || n == 0 || n > STORE_SHAPE_BATCH_MAX)
		return STORE_ERR_PROTO;
	for (size_t i = 0; i < n; i++)
		if (!shape_key_ok(v[i].domain) || v[i].until_ms <= 0 || v[i].next_ms <= 0 ||
		    v[i].step_ms < 1 || v[i].max_ms < 1 || v[i].min_ms < 0)
			return STORE_ERR_PROTO;
	doms = calloc(n, sizeof(*doms));
	nums = calloc(5 * n, sizeof(*nums));
	if (doms == NULL || nums == NULL) {
		rc = STORE_ERR_NOMEM;
		goto out;
	}
	/*
	 * The same marks in every partition's sat (each partition's enqueue
	 * reads its own): one call per partition, pipelined; a domain's next
	 * slot is the latest any of them gave out.
	 */
	rc = st_connect(s);
	if (rc == 0)
		rc = st_batch_init(&b, s->nparts, 6 + 6 * n);
	if (rc)
		goto out;
	for (size_t i = 0; i < n; i++) {
		size_t dl = strlen(v[i].domain);

		for (size_t c = 0; c < dl; c++)
			doms[i][c] = (char)tolower((unsigned char)v[i].domain[c]);
		doms[i][dl] = '\0';
	}
	(void)st_i64(capn, STORE_SAT_MAX);
	(void)st_i64(nown, util_now_ms());
	for (unsigned p = 0; p < s->nparts && rc == 0; p++) {
		st_eval(&b.a, s, SC_SAT, 1);
		st_adds(&b.a, st_pk(s, p, PK_SAT));
		st_adds(&b.a, capn);
		st_adds(&b.a, nown);
		for (size_t i = 0; i < n; i++) {
			const int64_t x[5] = { v[i].until_ms, v[i].next_ms, v[i].step_ms, v[i].max_ms,
			    v[i].min_ms };

			st_adds(&b.a, doms[i]);
			for (size_t k = 0; k < 5; k++)
				st_add(&b.a, nums[5 * i + k], st_i64(nums[5 * i + k], x[k]));
		}
		rc = st_batch_add(&b);
	}
	if (rc == 0)
		rc = st_batch_run(s, &b);
	for (size_t k = 0; k < b.n && rc == 0; k++) {
		rep = b.rep[k];
		if (!st_is_array(rep, n) || rep->elements != n) {
			rc = st_bad("saturate", rep);
			break;
		}
		for (size_t i = 0; i < n && rc == 0; i++) {
			int64_t nx;

			if (st_int(rep->element[i], &nx) != 0 || nx <= 0)
				rc = st_bad("saturate", rep);
		}
	}
	rep = NULL;     /* b's */
	for (size_t k = 0; k < b.n && rc == 0; k++)
		for (size_t i = 0; i < n; i++) {
			int64_t nx = 0;

			(void)st_int(b.rep[k]->element[i], &nx);
			if (k == 0 || nx > v[i].next_ms)
				v[i].next_ms = nx;
		}
out:
	st_batch_release(&b);
	free(doms);
	free(nums);
	return rc;
}
