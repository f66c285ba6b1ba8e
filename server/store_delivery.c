/*
 * store_delivery.c - the recipient state machine as the workers drive it:
 * fetch (XREADGROUP on both lanes, high first, plus one claim script call
 * for the whole batch; entries beyond max are carried to the next call),
 * reclaim (XAUTOCLAIM of dead workers' entries), heartbeat, hand back,
 * record (each outcome, its timeline entry and its outbox event in one
 * script call per batch of outcomes), promotion of due retries and
 * send_at messages to their lane (scheduling), and the queue gauges for
 * /metrics (store_queue_stats).
 *
 * It must never decide retry times or outcomes (worker.c does) and never
 * change a recipient's state outside a script: claim, record, hand back and
 * promote are each one script run, so a crash between commands leaves an
 * entry pending (reclaimed later), never half moved.
 */
#include "store_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "util.h"

/* --- delivering ---------------------------------------------------------- */

/* the claim script's answer for one recipient */
static const struct st_col st_delivery_cols[] = {
	{ ST_COL_STR, 0, offsetof(struct store_delivery, rcpt), 0, 0, NULL },
	{ ST_COL_STR, 0, offsetof(struct store_delivery, mail_from), 0, 0, NULL },
	{ ST_COL_BYTES, 0, offsetof(struct store_delivery, mime),
	  offsetof(struct store_delivery, mime_len), 0, NULL },
	{ ST_COL_STR, 0, offsetof(struct store_delivery, metadata_json), 0, 0, NULL },
	{ ST_COL_STR, 0, offsetof(struct store_delivery, tags_json), 0, 0, NULL },
	{ ST_COL_INT, 0, offsetof(struct store_delivery, attempts), 0, 0, NULL },
	{ ST_COL_I64, 0, offsetof(struct store_delivery, created_ms), 0, 0, NULL },
	{ ST_COL_I64, 0, offsetof(struct store_delivery, expires_ms), 0, 0, NULL },
};
static const struct st_table st_delivery_table = {
	"claim", st_delivery_cols, sizeof(st_delivery_cols) / sizeof(st_delivery_cols[0]),
	sizeof(struct store_delivery), 1, 1,
};

void
store_delivery_free(struct store_delivery *d)
{
	if (!d)
		return;
	st_row_clear(&st_delivery_table, d);
	free(d);
}

/* st_entry - a stream entry [id, [field, value, ...]]; 1: skip (nil). */
int
st_entry(const redisReply *e, const redisReply **id, const redisReply **fields)
{
	if (!e || e->type == REDIS_REPLY_NIL)
		return 1;
	if (!st_is_array(e, 2) || !st_is_str(e->element[0]))
		return -1;
	*id = e->element[0];
	*fields = e->element[1];
	if (!(*fields) || (*fields)->type == REDIS_REPLY_NIL)
		*fields = NULL;     /* deleted entry still pending */
	else if (!st_is_array(*fields, 0) || (*fields)->elements % 2 != 0)
		return -1;
	return 0;
}

const redisReply *
st_entry_field(const redisReply *fields, const char *name)
{
	size_t i;

	if (!fields)
		return NULL;
	for (i = 0; i + 1 < fields->elements; i += 2)
		if (st_is_str(fields->element[i]) && st_field_is(fields->element[i], name) &&
		    st_is_str(fields->element[i + 1]))
			return fields->element[i + 1];
	return NULL;
}

/* st_lane_key - the ready stream of a lane. */
static const char *
st_lane_key(enum store_lane lane)
{
	return lane == STORE_LANE_HIGH ? ST_K_READY_HIGH : ST_K_READY;
}

static int
st_delivery_from(const struct st_pend *p, const redisReply *r, struct store_delivery **out)
{
	struct store_delivery *d;
	int rc;

	*out = NULL;
	if (!st_is_array(r, st_delivery_table.ncols))
		return st_bad("claim", r);
	d = calloc(1, sizeof(*d));
	if (!d)
		return STORE_ERR_NOMEM;
	rc = st_row_read(&st_delivery_table, (const redisReply *const *)r->element, r->elements, d);
	if (rc) {
		store_delivery_free(d);
		return rc;
	}
	memcpy(d->entry_id, p->entry_id, sizeof(d->entry_id));
	d->lane = p->lane;
	memcpy(d->msg_id, p->msg_id, sizeof(d->msg_id));
	d->rcpt_idx = p->idx;
	*out = d;
	return 0;
}

/*
 * st_parse_entries - append the entries of one stream of an XREADGROUP or
 * XAUTOCLAIM reply, read from lane's stream, to pend[*n..cap). Nil
 * entries are skipped; malformed ones are kept with claim 0 (acked and
 * deleted by st_claim_pend).
 */
static int
st_parse_entries(const redisReply *entries, enum store_lane lane, struct st_pend *pend,
    size_t cap, size_t *n)
{
	size_t i;

	for (i = 0; i < entries->elements; i++) {
		const redisReply *id = NULL, *fields = NULL, *m, *r;
		struct st_pend *p;
		int64_t idx = -1;
		int e = st_entry(entries->element[i], &id, &fields);

		if (e == 1)
			continue;
		if (e < 0)
			return st_bad("stream entry", entries->element[i]);
		if (id->len > ST_MAX_ENTRY_ID)
			return st_bad("stream entry id", id);
		if (*n >= cap)
			return st_bad("stream entries beyond COUNT", entries);
		p = &pend[(*n)++];
		memset(p, 0, sizeof(*p));
		memcpy(p->entry_id, id->str, id->len);
		p->entry_id[id->len] = '\0';
		p->lane = lane;
		m = st_entry_field(fields, "m");
		r = st_entry_field(fields, "r");
		p->claim = m && r && m->len > 0 && m->len <= ST_MAX_ID &&
		    st_int(r, &idx) == 0 && idx >= 0 && idx < ST_MAX_RCPTS;
		if (p->claim) {
			memcpy(p->msg_id, m->str, m->len);
			p->msg_id[m->len] = '\0';
			p->idx = (int)idx;
		}
	}
	return 0;
}

/* st_lane_arg - the claim and record scripts' lane argument: "1" ready, "2" ready:high. */
static const char *
st_lane_arg(enum store_lane lane)
{
	return lane == STORE_LANE_HIGH ? "2" : "1";
}

/* The strings of one entry in a claim call (the script concatenates nothing). */
struct st_claim_arg {
	char kmsg[ST_KEY_MAX];
	char kmime[ST_KEY_MAX];
	char fstatus[ST_RFIELD_MAX];
	char fattempts[ST_RFIELD_MAX];
	char femail[ST_RFIELD_MAX];
};

/*
 * st_claim_pend - claim the parsed entries, ST_SCRIPT_BATCH to a claim
 * script call (the calls pipelined), and write the deliverable ones to
 * out (room for np). A carried entry is claimed only while consumer
 * still holds it; a malformed one is dropped from the group. An entry
 * the script answers with an error, or every entry of a call that failed
 * as a whole, is left out: it stays pending and is reclaimed later.
 */
static int
st_claim_pend(struct store *s, const char *consumer, const struct st_pend *pend, size_t np,
    struct store_delivery **out)
{
	struct st_batch b;
	struct st_claim_arg *ca = NULL;
	size_t i, c, nc;
	int rc, count = 0;

	memset(&b, 0, sizeof(b));
	if (np == 0)
		return 0;
	nc = (np + ST_SCRIPT_BATCH - 1) / ST_SCRIPT_BATCH;
	ca = malloc(np * sizeof(*ca));
	rc = ca ? st_batch_init(&b, nc, 6 + 8 * ST_SCRIPT_BATCH) : STORE_ERR_NOMEM;
	if (rc)
		goto out;
	for (i = 0; i < np; i++) {
		const struct st_pend *p = &pend[i];

		if (!p->claim) {
			log_warn("malformed ready entry dropped", "entry=%s", p->entry_id);
			/* keys unused by the script, but in the slot of the others */
			util_strlcpy(ca[i].kmsg, st_lane_key(p->lane), sizeof(ca[i].kmsg));
			util_strlcpy(ca[i].kmime, st_lane_key(p->lane), sizeof(ca[i].kmime));
			ca[i].fstatus[0] = ca[i].fattempts[0] = ca[i].femail[0] = '\0';
			continue;
		}
		if (st_key(ca[i].kmsg, sizeof(ca[i].kmsg), ST_PREFIX "msg:", p->msg_id, NULL) ||
		    st_key(ca[i].kmime, sizeof(ca[i].kmime), ST_PREFIX "msg:", p->msg_id, ":mime")) {
			rc = STORE_ERR_PROTO;
			goto out;
		}
		st_rfield(ca[i].fstatus, p->idx, "status");
		st_rfield(ca[i].fattempts, p->idx, "attempts");
		st_rfield(ca[i].femail, p->idx, "email");
	}
	for (c = 0; c < nc; c++) {
		size_t lo = c * ST_SCRIPT_BATCH, hi = lo + ST_SCRIPT_BATCH < np ? lo + ST_SCRIPT_BATCH : np;

		st_eval(&b.a, s, SC_CLAIM, (int)(2 + 2 * (hi - lo)));
		st_adds(&b.a, ST_K_READY);
		st_adds(&b.a, ST_K_READY_HIGH);
		for (i = lo; i < hi; i++) {
			st_adds(&b.a, ca[i].kmsg);
			st_adds(&b.a, ca[i].kmime);
		}
		st_adds(&b.a, consumer);
		for (i = lo; i < hi; i++) {
			st_adds(&b.a, pend[i].entry_id);
			st_adds(&b.a, st_lane_arg(pend[i].lane));
			st_adds(&b.a, !pend[i].claim ? "2" : pend[i].carried ? "1" : "0");
			st_adds(&b.a, ca[i].fstatus);
			st_adds(&b.a, ca[i].fattempts);
			st_adds(&b.a, ca[i].femail);
		}
		rc = st_batch_add(&b);
		if (rc)
			goto out;
	}
	rc = st_batch_run(s, &b);
	if (rc)
		goto out;
	for (c = 0; c < b.n; c++) {
		size_t lo = c * ST_SCRIPT_BATCH, hi = lo + ST_SCRIPT_BATCH < np ? lo + ST_SCRIPT_BATCH : np;
		const redisReply *r = b.rep[c];

		if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != hi - lo) {
			(void)st_bad("claim", r);
			continue;   /* all of them stay pending; reclaimed later */
		}
		for (i = lo; i < hi; i++) {
			const redisReply *e = r->element[i - lo];
			int er;

			if (!pend[i].claim || !e || e->type == REDIS_REPLY_NIL)
				continue;   /* not deliverable: the script acked it */
			if (e->type == REDIS_REPLY_ERROR) {
				(void)st_bad("claim", e);
				continue;   /* stays pending; reclaimed later */
			}
			er = st_delivery_from(&pend[i], e, &out[count]);
			if (er == STORE_ERR_NOMEM) {
				rc = er;
				goto out;
			}
			if (er == 0)
				count++;
		}
	}
out:
	if (rc) {
		while (count > 0)
			store_delivery_free(out[--count]);
	}
	st_batch_release(&b);
	free(ca);
	return rc ? rc : count;
}

/* st_block_timeout - the socket timeout for a read blocking block_ms. */
int
st_block_timeout(int block_ms)
{
	if (block_ms <= 0)
		return ST_CMD_TIMEOUT_MS;
	if (block_ms > 3600 * 1000)
		block_ms = 3600 * 1000;
	return block_ms + ST_CMD_TIMEOUT_MS;
}

/*
 * st_xread - one XREADGROUP over nkeys (1 or 2) streams, COUNT max each;
 * entries[k] points into *reply (the entries array of keys[k]) or is NULL
 * when that stream gave nothing. Caller frees *reply.
 */
int
st_xread(struct store *s, const char *const *keys, size_t nkeys, const char *group,
    const char *consumer, int max, int block_ms, const char *from, redisReply **reply,
    const redisReply **entries)
{
	struct st_args a;
	redisReply *r = NULL;
	size_t i, k;
	int rc;

	*reply = NULL;
	for (k = 0; k < nkeys; k++)
		entries[k] = NULL;
	if (nkeys < 1 || nkeys > 2)
		return STORE_ERR_PROTO;
	rc = st_args_init(&a, 16);
	if (rc)
		return rc;
	st_adds(&a, "XREADGROUP");
	st_adds(&a, "GROUP");
	st_adds(&a, group);
	st_adds(&a, consumer);
	st_adds(&a, "COUNT");
	st_addi(&a, max);
	if (block_ms > 0) {
		st_adds(&a, "BLOCK");
		st_addi(&a, block_ms > 3600 * 1000 ? 3600 * 1000 : block_ms);
	}
	st_adds(&a, "STREAMS");
	for (k = 0; k < nkeys; k++)
		st_adds(&a, keys[k]);
	for (k = 0; k < nkeys; k++)
		st_adds(&a, from);
	rc = st_set_timeout(s, st_block_timeout(block_ms));
	if (rc)
		goto out;
	rc = st_do(s, &a, &r);
	if (s->c) {
		int t = st_set_timeout(s, s->cmd_timeout_ms);

		if (rc == 0)
			rc = t;
	}
	if (rc)
		goto out;
	if (r->type == REDIS_REPLY_NIL)
		goto out;
	if (st_is_error(r, "NOGROUP")) {
		(void)st_bad("xreadgroup", r);
		rc = st_create_groups(s);
		if (rc == 0)
			rc = STORE_ERR_PROTO;
		goto out;
	}
	if (!st_is_array(r, 1) || r->elements > nkeys) {
		rc = st_bad("xreadgroup", r);
		goto out;
	}
	/* [[key, entries], ...]: streams without entries may be left out */
	for (i = 0; i < r->elements; i++) {
		const redisReply *st = r->element[i];

		if (!st_is_array(st, 2) || !st_is_str(st->element[0]) ||
		    !st_is_array(st->element[1], 0)) {
			rc = st_bad("xreadgroup", r);
			goto out;
		}
		for (k = 0; k < nkeys; k++)
			if (st_field_is(st->element[0], keys[k]))
				break;
		if (k == nkeys || entries[k]) {
			rc = st_bad("xreadgroup stream", st->element[0]);
			goto out;
		}
		entries[k] = st->element[1];
	}
out:
	if (rc && r) {
		freeReplyObject(r);
		r = NULL;
		for (k = 0; k < nkeys; k++)
			entries[k] = NULL;
	}
	*reply = r;
	st_args_release(&a);
	return rc;
}

/*
 * st_xautoclaim - XAUTOCLAIM from *cursor; updates it. *entries points
 * into *reply. Redis 7 answers [cursor, entries, deleted]; 6.2 has no
 * third element and may put nil in entries. Caller frees *reply.
 */
int
st_xautoclaim(struct store *s, const char *key, const char *group, const char *consumer,
    int64_t min_idle_ms, int max, char *cursor, size_t cursorlen,
    redisReply **reply, const redisReply **entries)
{
	struct st_args a;
	redisReply *r = NULL;
	int rc;

	*reply = NULL;
	*entries = NULL;
	rc = st_args_init(&a, 10);
	if (rc)
		return rc;
	st_adds(&a, "XAUTOCLAIM");
	st_adds(&a, key);
	st_adds(&a, group);
	st_adds(&a, consumer);
	st_addi(&a, min_idle_ms < 0 ? 0 : min_idle_ms);
	st_adds(&a, cursor);
	st_adds(&a, "COUNT");
	st_addi(&a, max);
	rc = st_do(s, &a, &r);
	if (rc)
		goto out;
	if (st_is_error(r, "NOGROUP")) {
		(void)st_bad("xautoclaim", r);
		rc = st_create_groups(s);
		if (rc == 0)
			rc = STORE_ERR_PROTO;
		goto out;
	}
	if (!st_is_array(r, 2) || !st_is_str(r->element[0]) || r->element[0]->len >= cursorlen ||
	    !st_is_array(r->element[1], 0)) {
		rc = st_bad("xautoclaim", r);
		goto out;
	}
	memcpy(cursor, r->element[0]->str, r->element[0]->len);
	cursor[r->element[0]->len] = '\0';
	*entries = r->element[1];
out:
	if (rc && r) {
		freeReplyObject(r);
		r = NULL;
		*entries = NULL;
	}
	*reply = r;
	st_args_release(&a);
	return rc;
}

/*
 * st_carry_take - move up to want carried entries of lane (read by an
 * earlier fetch beyond what it handed out) to pend[*n..), in order.
 */
static void
st_carry_take(struct store *s, enum store_lane lane, struct st_pend *pend, size_t *n, size_t want)
{
	size_t i, k = 0, took = 0;

	for (i = 0; i < s->ncarry; i++) {
		if (took < want && s->carry[i].lane == lane) {
			pend[*n] = s->carry[i];
			pend[*n].carried = 1;
			(*n)++;
			took++;
		} else {
			s->carry[k++] = s->carry[i];
		}
	}
	s->ncarry = k;
}

/* st_carry_keep - keep pend[0..n) for the next fetch; 0 or STORE_ERR_NOMEM. */
static int
st_carry_keep(struct store *s, const struct st_pend *pend, size_t n)
{
	struct st_pend *c;

	if (n == 0)
		return 0;
	c = realloc(s->carry, (s->ncarry + n) * sizeof(*c));
	if (!c)
		return STORE_ERR_NOMEM;
	memcpy(c + s->ncarry, pend, n * sizeof(*c));
	s->carry = c;
	s->ncarry += n;
	return 0;
}

void
store_set_lane_weights(struct store *s, int high, int normal)
{
	if (!s)
		return;
	s->lane_w[STORE_LANE_HIGH] = high >= 1 ? high : 1;
	s->lane_w[STORE_LANE_NORMAL] = normal >= 1 ? normal : 1;
	s->lane_credit[0] = s->lane_credit[1] = 0;
}

/*
 * st_lane_quotas - how many of want slots each lane gets, by smooth
 * weighted round robin on the handle's credits (kept across calls, so a
 * fetch of one slot at a time still alternates 9:1).
 */
static void
st_lane_quotas(struct store *s, size_t want, size_t q[2])
{
	int64_t w[2], total;

	w[STORE_LANE_HIGH] = s->lane_w[STORE_LANE_HIGH] > 0 ? s->lane_w[STORE_LANE_HIGH] : 9;
	w[STORE_LANE_NORMAL] = s->lane_w[STORE_LANE_NORMAL] > 0 ? s->lane_w[STORE_LANE_NORMAL] : 1;
	total = w[0] + w[1];
	q[0] = q[1] = 0;
	for (size_t i = 0; i < want; i++) {
		int pick;

		s->lane_credit[0] += w[0];
		s->lane_credit[1] += w[1];
		pick = s->lane_credit[STORE_LANE_HIGH] >= s->lane_credit[STORE_LANE_NORMAL] ?
		    STORE_LANE_HIGH : STORE_LANE_NORMAL;
		s->lane_credit[pick] -= total;
		q[pick]++;
	}
}

/* st_read_lanes - a non-blocking (or blocking) read of one or both lanes into the per-lane lists. */
static int
st_read_lanes(struct store *s, const char *consumer, size_t count_high, size_t count_normal,
    int block_ms, struct st_pend *lp[2], size_t ln[2], size_t cap)
{
	static const char *const keys[2] = { ST_K_READY_HIGH, ST_K_READY };
	static const enum store_lane lanes[2] = { STORE_LANE_HIGH, STORE_LANE_NORMAL };
	const redisReply *entries[2] = { NULL, NULL };
	redisReply *r = NULL;
	size_t count = count_high > count_normal ? count_high : count_normal;
	int rc;

	if (count_high > 0 && count_normal > 0)
		rc = st_xread(s, keys, 2, ST_G_WORKERS, consumer, (int)count, block_ms, ">", &r, entries);
	else if (count_high > 0)
		rc = st_xread(s, keys, 1, ST_G_WORKERS, consumer, (int)count_high, block_ms, ">", &r, entries);
	else
		rc = st_xread(s, keys + 1, 1, ST_G_WORKERS, consumer, (int)count_normal, block_ms, ">", &r,
		    entries + 1);
	for (int k = 0; k < 2 && rc == 0; k++)
		if (entries[k])
			rc = st_parse_entries(entries[k], lanes[k], lp[lanes[k]], cap, &ln[lanes[k]]);
	if (r)
		freeReplyObject(r);
	return rc;
}

int
store_fetch(struct store *s, const char *consumer, int max, int block_ms,
    struct store_delivery **out)
{
	struct st_pend *pend = NULL, *lp[2];
	size_t ln[2] = { 0, 0 }, q[2], take[2], want, cap, n = 0;
	int rc;

	if (!s || !consumer || !*consumer || !out || max <= 0)
		return STORE_ERR_PROTO;
	if (max > ST_MAX_BATCH)
		max = ST_MAX_BATCH;
	want = (size_t)max;
	rc = st_connect(s);
	if (rc)
		return rc;
	/*
	 * Per lane: its carried entries (up to want), then what a read gives
	 * (up to want; a read of both lanes has one COUNT, so one lane may
	 * give more than it needs: carried). 2 x want per lane and want for
	 * the claim; st_parse_entries writes every entry it hands out, so not
	 * calloc. The lanes share the slots by weight (TXMAIL_LANE_WEIGHTS):
	 * high first but not forever.
	 */
	cap = 2 * want;
	pend = malloc(5 * want * sizeof(*pend));
	if (!pend)
		return STORE_ERR_NOMEM;
	lp[STORE_LANE_HIGH] = pend;
	lp[STORE_LANE_NORMAL] = pend + cap;
	st_lane_quotas(s, want, q);
	for (int l = 0; l < 2; l++)
		st_carry_take(s, (enum store_lane)l, lp[l], &ln[l], want);
	/* 1. without waiting: each lane up to want (a lane short of its share leaves it to the other) */
	if (ln[STORE_LANE_HIGH] < want || ln[STORE_LANE_NORMAL] < want) {
		rc = st_read_lanes(s, consumer, want - ln[STORE_LANE_HIGH], want - ln[STORE_LANE_NORMAL],
		    0, lp, ln, cap);
		if (rc && ln[0] + ln[1] == 0)
			goto out;
		rc = 0;     /* claim what is at hand; the rest stays pending */
	}
	/* 2. nothing at hand: wait on both lanes */
	if (ln[0] + ln[1] == 0) {
		rc = st_read_lanes(s, consumer, want, want, block_ms, lp, ln, cap);
		if (rc && ln[0] + ln[1] == 0)
			goto out;
		rc = 0;
	}
	/* 3. the shares: a lane with fewer entries than its quota gives the rest to the other */
	take[0] = ln[0] < q[0] ? ln[0] : q[0];
	take[1] = ln[1] < q[1] ? ln[1] : q[1];
	if (take[0] < q[0] || take[1] < q[1]) {
		/* one lane ran dry: no credit is banked for later (no burst to catch up) */
		s->lane_credit[0] = s->lane_credit[1] = 0;
		for (int l = 0; l < 2; l++) {
			size_t more = want - take[0] - take[1], room = ln[l] - take[l];

			take[l] += more < room ? more : room;
		}
	}
	/* the rest waits for the next call, at the head of its lane */
	for (int l = 0; l < 2 && rc == 0; l++)
		rc = st_carry_keep(s, lp[l] + take[l], ln[l] - take[l]);
	if (rc)
		goto out;
	/* high first, then normal, in stream order */
	memcpy(pend + 2 * cap, lp[STORE_LANE_HIGH], take[STORE_LANE_HIGH] * sizeof(*pend));
	memcpy(pend + 2 * cap + take[STORE_LANE_HIGH], lp[STORE_LANE_NORMAL],
	    take[STORE_LANE_NORMAL] * sizeof(*pend));
	n = take[0] + take[1];
	rc = st_claim_pend(s, consumer, pend + 2 * cap, n, out);
out:
	free(pend);
	return rc;
}

int
store_reclaim(struct store *s, const char *consumer, int64_t min_idle_ms,
    int max, struct store_delivery **out)
{
	static const struct {
		const char *key;
		enum store_lane lane;
	} lanes[2] = {
		{ ST_K_READY_HIGH, STORE_LANE_HIGH },
		{ ST_K_READY, STORE_LANE_NORMAL },
	};
	const redisReply *entries = NULL;
	struct st_pend *pend = NULL;
	redisReply *r = NULL;
	size_t n = 0, k;
	int rc = 0;

	if (!s || !consumer || !*consumer || !out || max <= 0)
		return STORE_ERR_PROTO;
	if (max > ST_MAX_BATCH)
		max = ST_MAX_BATCH;
	rc = st_connect(s);
	if (rc)
		return rc;
	pend = calloc((size_t)max, sizeof(*pend));
	if (!pend)
		return STORE_ERR_NOMEM;
	for (k = 0; k < 2 && n < (size_t)max && rc == 0; k++) {
		char *cursor = lanes[k].lane == STORE_LANE_HIGH ? s->work_cursor_high : s->work_cursor;

		rc = st_xautoclaim(s, lanes[k].key, ST_G_WORKERS, consumer, min_idle_ms,
		    (int)((size_t)max - n), cursor, sizeof(s->work_cursor), &r, &entries);
		if (rc == 0 && entries)
			rc = st_parse_entries(entries, lanes[k].lane, pend, (size_t)max, &n);
		if (r)
			freeReplyObject(r);
		r = NULL;
	}
	if (rc && n > 0)
		rc = 0;     /* claim what is at hand */
	/*
	 * An entry this handle read ahead and still carries is ours already
	 * (idle only because it waited for a slot): the carry claims it; were
	 * it claimed here too, it would be sent twice.
	 */
	if (rc == 0 && s->ncarry > 0) {
		size_t kept = 0;

		for (size_t i = 0; i < n; i++) {
			int carried = 0;

			for (size_t c = 0; c < s->ncarry && !carried; c++)
				carried = s->carry[c].lane == pend[i].lane &&
				    strcmp(s->carry[c].entry_id, pend[i].entry_id) == 0;
			if (!carried)
				pend[kept++] = pend[i];
		}
		n = kept;
	}
	if (rc == 0)
		rc = st_claim_pend(s, consumer, pend, n, out);
	free(pend);
	return rc;
}

int
st_xtouch(struct store *s, const char *what, const char *key, const char *group,
    const char *consumer, const char *const *ids, const enum store_lane *lanes,
    enum store_lane lane, size_t n)
{
	struct st_args a;
	redisReply *r = NULL;
	size_t i, cnt = 0;
	int rc;

	for (i = 0; i < n; i++)
		if ((lanes ? lanes[i] : STORE_LANE_NORMAL) == lane)
			cnt++;
	if (cnt == 0)
		return 0;
	rc = st_connect(s);
	if (rc)
		return rc;
	rc = st_args_init(&a, 6 + cnt);
	if (rc)
		return rc;
	st_adds(&a, "XCLAIM");
	st_adds(&a, key);
	st_adds(&a, group);
	st_adds(&a, consumer);
	st_adds(&a, "0");
	for (i = 0; i < n; i++)
		if ((lanes ? lanes[i] : STORE_LANE_NORMAL) == lane)
			st_adds(&a, ids[i]);
	st_adds(&a, "JUSTID");
	rc = st_do(s, &a, &r);
	if (rc == 0 && !st_is_array(r, 0))
		rc = st_bad(what, r);
	if (r)
		freeReplyObject(r);
	st_args_release(&a);
	return rc;
}

int
store_heartbeat(struct store *s, const char *consumer,
    const char *const *entry_ids, const enum store_lane *lanes, size_t n)
{
	int rc;

	if (!s || !consumer || !*consumer || (n && !entry_ids) || n > 100000)
		return STORE_ERR_PROTO;
	/* one XCLAIM per lane: an id means something only on its own stream */
	rc = st_xtouch(s, "xclaim", st_lane_key(STORE_LANE_HIGH), ST_G_WORKERS, consumer,
	    entry_ids, lanes, STORE_LANE_HIGH, n);
	if (rc == 0)
		rc = st_xtouch(s, "xclaim", st_lane_key(STORE_LANE_NORMAL), ST_G_WORKERS, consumer,
		    entry_ids, lanes, STORE_LANE_NORMAL, n);
	return rc;
}

/* One entry to hand back (st_hand_back). */
struct st_back {
	const char *entry_id;
	enum store_lane lane;
	const char *msg_id;
	int idx;
	int attempt;     /* 0: never claimed */
	int counted;
	int64_t until_ms;   /* > 0: parked in due until then instead of back on its lane */
};

/*
 * st_hand_back - run the hand_back script for b[0..n) (pipelined); adds
 * the ones that went back to *back. 0 or STORE_ERR_*.
 */
static int
st_hand_back(struct store *s, const char *consumer, const struct st_back *b, size_t n,
    size_t *back)
{
	struct st_batch bt;
	char kmsg[ST_KEY_MAX];
	size_t i;
	int64_t v;
	int rc;

	if (n == 0)
		return 0;
	rc = st_connect(s);
	if (rc)
		return rc;
	rc = st_batch_init(&bt, n, 14);
	if (rc)
		goto out;
	for (i = 0; i < n; i++) {
		if (!st_id_ok(b[i].msg_id) ||
		    st_key(kmsg, sizeof(kmsg), ST_PREFIX "msg:", b[i].msg_id, NULL)) {
			rc = STORE_ERR_PROTO;
			goto out;
		}
		st_eval(&bt.a, s, SC_HAND_BACK, 3);
		st_adds(&bt.a, kmsg);
		st_adds(&bt.a, st_lane_key(b[i].lane));
		st_adds(&bt.a, ST_K_DUE);
		st_adds(&bt.a, b[i].entry_id);
		st_addi(&bt.a, b[i].idx);
		st_addi(&bt.a, b[i].attempt);
		st_adds(&bt.a, b[i].counted ? "1" : "0");
		st_adds(&bt.a, consumer);
		st_adds(&bt.a, b[i].msg_id);
		st_addi(&bt.a, b[i].until_ms > 0 ? b[i].until_ms : 0);
		rc = st_batch_add(&bt);
		if (rc)
			goto out;
	}
	rc = st_batch_run(s, &bt);
	if (rc)
		goto out;
	for (i = 0; i < bt.n; i++) {
		if (st_int(bt.rep[i], &v) != 0)
			rc = st_bad("hand_back", bt.rep[i]);
		else if (v == 1)
			(*back)++;
	}
out:
	st_batch_release(&bt);
	return rc;
}

int
store_hand_back(struct store *s, const char *consumer, const struct store_handback *h,
    size_t n, size_t *back)
{
	struct st_back *b;
	int rc;

	if (!s || !consumer || !*consumer || (n && !h) || !back || n > 100000)
		return STORE_ERR_PROTO;
	*back = 0;
	if (n == 0)
		return 0;
	b = calloc(n, sizeof(*b));
	if (!b)
		return STORE_ERR_NOMEM;
	for (size_t i = 0; i < n; i++) {
		if (!h[i].d || h[i].d->attempts <= 0) {
			free(b);
			return STORE_ERR_PROTO;
		}
		b[i].entry_id = h[i].d->entry_id;
		b[i].lane = h[i].d->lane;
		b[i].msg_id = h[i].d->msg_id;
		b[i].idx = h[i].d->rcpt_idx;
		b[i].attempt = h[i].d->attempts;
		b[i].counted = h[i].counted;
	}
	rc = st_hand_back(s, consumer, b, n, back);
	free(b);
	return rc;
}

int
store_park(struct store *s, const char *consumer, const struct store_park *p, size_t n,
    size_t *parked)
{
	struct st_back *b;
	int rc;

	if (!s || !consumer || !*consumer || (n && !p) || !parked || n > 100000)
		return STORE_ERR_PROTO;
	*parked = 0;
	if (n == 0)
		return 0;
	b = calloc(n, sizeof(*b));
	if (!b)
		return STORE_ERR_NOMEM;
	for (size_t i = 0; i < n; i++) {
		if (!p[i].d || p[i].d->attempts <= 0 || p[i].until_ms <= 0) {
			free(b);
			return STORE_ERR_PROTO;
		}
		b[i].entry_id = p[i].d->entry_id;
		b[i].lane = p[i].d->lane;
		b[i].msg_id = p[i].d->msg_id;
		b[i].idx = p[i].d->rcpt_idx;
		b[i].attempt = p[i].d->attempts;
		b[i].until_ms = p[i].until_ms;
	}
	rc = st_hand_back(s, consumer, b, n, parked);
	free(b);
	return rc;
}

int
store_hand_back_carried(struct store *s, const char *consumer, size_t *back)
{
	struct st_back *b;
	size_t n = 0;
	int rc;

	if (!s || !consumer || !*consumer || !back)
		return STORE_ERR_PROTO;
	*back = 0;
	if (s->ncarry == 0)
		return 0;
	b = calloc(s->ncarry, sizeof(*b));
	if (!b)
		return STORE_ERR_NOMEM;
	/* malformed entries (claim 0) stay pending: a reclaim acknowledges them */
	for (size_t i = 0; i < s->ncarry; i++) {
		if (!s->carry[i].claim)
			continue;
		b[n].entry_id = s->carry[i].entry_id;
		b[n].lane = s->carry[i].lane;
		b[n].msg_id = s->carry[i].msg_id;
		b[n].idx = s->carry[i].idx;
		n++;
	}
	rc = st_hand_back(s, consumer, b, n, back);
	free(b);
	if (rc == 0)
		s->ncarry = 0;
	return rc;
}

static int
st_status_known(const char *st, int *terminal)
{
	if (!st)
		return 0;
	*terminal = strcmp(st, "deferred") != 0;
	return strcmp(st, "delivered") == 0 || strcmp(st, "deferred") == 0 ||
	    strcmp(st, "failed") == 0 || strcmp(st, "expired") == 0 ||
	    strcmp(st, "suppressed") == 0;
}

/* The strings of one outcome in a record call (the script concatenates nothing). */
struct st_record_arg {
	char kmsg[ST_KEY_MAX];
	char ktl[ST_KEY_MAX];
	char member[ST_KEY_MAX];
	char next[ST_I64_LEN];
	char attempt[ST_I64_LEN];
	char fstatus[ST_RFIELD_MAX];
	char fattempts[ST_RFIELD_MAX];
	char fsmtp[ST_RFIELD_MAX];
	char fdfr[ST_RFIELD_MAX];
	char *supp_email;    /* suppress_reason set: the recipient, lower-cased */
	char *supp_value;    /* and "<now_ms>:<reason>" */
};

/* st_record_arg_fill - ra for res (validated by store_record); 0 or STORE_ERR_*. */
static int
st_record_arg_fill(struct st_record_arg *ra, const struct store_result *res)
{
	const struct store_delivery *d = res->d;
	size_t ml = strlen(d->msg_id), i, rl;
	char num[ST_I64_LEN];

	if (st_key(ra->kmsg, sizeof(ra->kmsg), ST_PREFIX "msg:", d->msg_id, NULL) ||
	    st_key(ra->ktl, sizeof(ra->ktl), ST_PREFIX "msg:", d->msg_id, ":tl") ||
	    ml + 1 + ST_I64_LEN > sizeof(ra->member))
		return STORE_ERR_PROTO;
	memcpy(ra->member, d->msg_id, ml);
	ra->member[ml] = '/';
	i = st_i64(num, d->rcpt_idx);
	memcpy(ra->member + ml + 1, num, i + 1);
	(void)st_i64(ra->next, res->next_ms > 0 ? res->next_ms : res->now_ms);
	(void)st_i64(ra->attempt, d->attempts);
	st_rfield(ra->fstatus, d->rcpt_idx, "status");
	st_rfield(ra->fattempts, d->rcpt_idx, "attempts");
	st_rfield(ra->fsmtp, d->rcpt_idx, "smtp");
	st_rfield(ra->fdfr, d->rcpt_idx, "dfr");
	if (!res->suppress_reason || !*res->suppress_reason || !d->rcpt || !*d->rcpt)
		return 0;
	/* the address as claimed (the hash's r<i>:email), lower-cased as
	 * string.lower does: ASCII only */
	ra->supp_email = st_dupn(d->rcpt, strlen(d->rcpt));
	rl = strlen(res->suppress_reason);
	ra->supp_value = rl < SIZE_MAX - ST_I64_LEN - 2 ? malloc(ST_I64_LEN + 1 + rl + 1) : NULL;
	if (!ra->supp_email || !ra->supp_value)
		return STORE_ERR_NOMEM;
	for (i = 0; ra->supp_email[i]; i++)
		if (ra->supp_email[i] >= 'A' && ra->supp_email[i] <= 'Z')
			ra->supp_email[i] = (char)(ra->supp_email[i] - 'A' + 'a');
	i = st_i64(num, res->now_ms);
	memcpy(ra->supp_value, num, i);
	ra->supp_value[i] = ':';
	memcpy(ra->supp_value + i + 1, res->suppress_reason, rl + 1);
	return 0;
}

int
store_record(struct store *s, struct store_result *res, size_t n)
{
	struct st_batch b;
	struct st_record_arg *ra = NULL;
	size_t i, c, nc;
	int rc, terminal;
	int64_t v;

	memset(&b, 0, sizeof(b));
	if (!s || (n && !res) || n > 100000)
		return STORE_ERR_PROTO;
	if (n == 0)
		return 0;
	for (i = 0; i < n; i++)
		if (!res[i].d || !st_status_known(res[i].status, &terminal) ||
		    !st_id_ok(res[i].d->msg_id)) {
			log_error("outcome record called with an invalid result", "msg_id=%.64s index=%zu",
			    res[i].d != NULL ? res[i].d->msg_id : "", i);
			return STORE_ERR_PROTO;
		}
	for (i = 0; i < n; i++)
		res[i].counted = 0;
	rc = st_connect(s);
	if (rc)
		return rc;
	nc = (n + ST_SCRIPT_BATCH - 1) / ST_SCRIPT_BATCH;
	ra = calloc(n, sizeof(*ra));
	rc = ra ? st_batch_init(&b, nc, 11 + 17 * ST_SCRIPT_BATCH) : STORE_ERR_NOMEM;
	for (i = 0; rc == 0 && i < n; i++)
		rc = st_record_arg_fill(&ra[i], &res[i]);
	if (rc)
		goto out;
	for (c = 0; c < nc; c++) {
		size_t lo = c * ST_SCRIPT_BATCH, hi = lo + ST_SCRIPT_BATCH < n ? lo + ST_SCRIPT_BATCH : n;

		st_eval(&b.a, s, SC_RECORD, (int)(5 + 2 * (hi - lo)));
		st_adds(&b.a, ST_K_READY);
		st_adds(&b.a, ST_K_READY_HIGH);
		st_adds(&b.a, ST_K_DUE);
		st_adds(&b.a, ST_K_EVENTS);
		st_adds(&b.a, ST_K_SUPP);
		for (i = lo; i < hi; i++) {
			st_adds(&b.a, ra[i].kmsg);
			st_adds(&b.a, ra[i].ktl);
		}
		st_addi(&b.a, s->retention_ms);
		st_adds(&b.a, ST_PREFIX);
		st_addi(&b.a, st_content_keep_ms(s));
		for (i = lo; i < hi; i++) {
			const struct st_record_arg *x = &ra[i];

			st_adds(&b.a, res[i].d->entry_id);
			st_adds(&b.a, st_lane_arg(res[i].d->lane));
			st_adds(&b.a, res[i].status);
			st_adds(&b.a, x->next);
			st_adds(&b.a, res[i].smtp_json);
			st_adds(&b.a, res[i].event_json);
			st_adds(&b.a, res[i].timeline_json);
			st_adds(&b.a, x->attempt);
			st_adds(&b.a, x->member);
			st_adds(&b.a, x->supp_email);
			st_adds(&b.a, x->supp_value);
			st_adds(&b.a, x->fstatus);
			st_adds(&b.a, x->fattempts);
			st_adds(&b.a, x->fsmtp);
			st_adds(&b.a, x->fdfr);
		}
		rc = st_batch_add(&b);
		if (rc)
			goto out;
	}
	rc = st_batch_run(s, &b);
	if (rc)
		goto out;
	/* An outcome answered with an error (or every one of a call that
	 * failed as a whole) makes the call fail: the caller sends the batch
	 * again (worker.c), and what was recorded answers 0 then: nothing is
	 * written twice. */
	for (c = 0; c < b.n; c++) {
		size_t lo = c * ST_SCRIPT_BATCH, hi = lo + ST_SCRIPT_BATCH < n ? lo + ST_SCRIPT_BATCH : n;
		const redisReply *r = b.rep[c];

		if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != hi - lo) {
			rc = st_bad("record", r);
			continue;
		}
		for (i = lo; i < hi; i++) {
			if (st_int(r->element[i - lo], &v) != 0) {
				rc = st_bad("record", r->element[i - lo]);
				continue;
			}
			/* 2: a first deferral; 1: a terminal state (or a later deferral) */
			res[i].counted = v == 2 || (v == 1 && strcmp(res[i].status, "deferred") != 0);
			if (v < 0)
				log_info("stale outcome ignored", "msg_id=%s rcpt_idx=%d rcpt=%s attempt=%d",
				    res[i].d->msg_id, res[i].d->rcpt_idx, res[i].d->rcpt, res[i].d->attempts);
		}
	}
out:
	st_batch_release(&b);
	for (i = 0; ra && i < n; i++) {
		free(ra[i].supp_email);
		free(ra[i].supp_value);
	}
	free(ra);
	return rc;
}

/* --- scheduling ---------------------------------------------------------- */

int
store_promote_due(struct store *s, int64_t now_ms, int max, int64_t *next_ms)
{
	struct st_args a;
	redisReply *r = NULL;
	int64_t moved = 0, nx = 0;
	int rc;

	if (next_ms)
		*next_ms = 0;
	if (!s || max <= 0)
		return STORE_ERR_PROTO;
	if (max > 100000)
		max = 100000;
	rc = st_eval_begin(s, &a, 10, SC_PROMOTE, 3);
	if (rc)
		return rc;
	st_adds(&a, ST_K_DUE);
	st_adds(&a, ST_K_READY);
	st_adds(&a, ST_K_READY_HIGH);
	st_addi(&a, now_ms);
	st_addi(&a, max);
	st_adds(&a, ST_PREFIX);
	rc = st_do(s, &a, &r);
	if (rc)
		goto out;
	if (!st_is_array(r, 2) || st_int(r->element[0], &moved) != 0 ||
	    st_score(r->element[1], &nx) != 0 || moved < 0 || moved > max) {
		rc = st_bad("promote", r);
		goto out;
	}
	if (next_ms)
		*next_ms = nx;
	rc = (int)moved;
out:
	if (r)
		freeReplyObject(r);
	st_args_release(&a);
	return rc;
}

/* --- metrics ------------------------------------------------------------- */

/* st_stream_first_ms - the ms part of the first entry id of an XRANGE .. COUNT 1 reply; 0 when empty. */
static int
st_stream_first_ms(const redisReply *r, int64_t *ms)
{
	const redisReply *id, *fields;
	const char *dash;

	*ms = 0;
	if (!r || r->type != REDIS_REPLY_ARRAY)
		return -1;
	if (r->elements == 0)
		return 0;
	if (st_entry(r->element[0], &id, &fields) != 0)
		return -1;
	dash = memchr(id->str, '-', id->len);
	return dash != NULL && st_parse_i64(id->str, (size_t)(dash - id->str), ms) == 0 ? 0 : -1;
}

/* st_time_ms - the reply of TIME ([seconds, microseconds]) in ms. */
static int
st_time_ms(const redisReply *r, int64_t *ms)
{
	int64_t sec, us;

	if (!st_is_array(r, 2) || st_int(r->element[0], &sec) != 0 || st_int(r->element[1], &us) != 0)
		return -1;
	*ms = sec * 1000 + us / 1000;
	return 0;
}

/*
 * st_wh_backlogs - ZCARD of every endpoint's due set (and default's), the
 * largest STORE_WH_BACKLOG_TOP kept by name, the rest summed.
 */
static int
st_wh_backlogs(struct store *s, const redisReply *eps, struct store_queue_stats *out)
{
	struct st_batch b;
	char key[ST_KEY_MAX];
	size_t n = 1, i;
	int rc;

	if (st_is_array(eps, 0))
		n += eps->elements > STORE_WH_ENDPOINTS_MAX ? STORE_WH_ENDPOINTS_MAX : eps->elements;
	rc = st_batch_init(&b, n, 2);
	if (rc)
		goto out;
	for (i = 0; i < n; i++) {
		const char *ep = "default";
		char name[40];

		if (i > 0) {
			const redisReply *e = eps->element[i - 1];

			if (!st_is_str(e) || e->len >= sizeof(name)) {
				rc = st_bad("queue stats: endpoint", e);
				goto out;
			}
			memcpy(name, e->str, e->len);
			name[e->len] = '\0';
			ep = name;
		}
		if (st_key(key, sizeof(key), ST_K_WHQ, ep, NULL)) {
			rc = STORE_ERR_PROTO;
			goto out;
		}
		st_adds(&b.a, "ZCARD");
		st_adds(&b.a, key);
		rc = st_batch_add(&b);
		if (rc)
			goto out;
	}
	rc = st_batch_run(s, &b);
	if (rc)
		goto out;
	for (i = 0; i < b.n; i++) {
		int64_t v;
		size_t at;

		if (st_int(b.rep[i], &v) != 0 || v < 0) {
			rc = st_bad("queue stats: backlog", b.rep[i]);
			goto out;
		}
		if (i > 0 && v == 0)
			continue;   /* an endpoint with nothing waiting: no series of its own */
		/* insertion into the top list, largest first; the one pushed out goes to other */
		at = out->nwh;
		while (at > 0 && out->wh[at - 1].n < v)
			at--;
		if (at >= STORE_WH_BACKLOG_TOP) {
			out->wh_other += v;
			out->wh_has_other = 1;
			continue;
		}
		if (out->nwh == STORE_WH_BACKLOG_TOP) {
			out->wh_other += out->wh[STORE_WH_BACKLOG_TOP - 1].n;
			out->wh_has_other = 1;
			out->nwh--;
		}
		memmove(&out->wh[at + 1], &out->wh[at], (out->nwh - at) * sizeof(out->wh[0]));
		util_strlcpy(out->wh[at].endpoint, i == 0 ? "default" : eps->element[i - 1]->str,
		    sizeof(out->wh[at].endpoint));
		out->wh[at].n = v;
		out->nwh++;
	}
out:
	st_batch_release(&b);
	return rc;
}

int
store_queue_stats(struct store *s, struct store_queue_stats *out)
{
	enum { Q_LEN = 0, Q_PEND = 2, Q_DUE = 4, Q_EVENTS = 5, Q_FIRST = 6, Q_TIME = 8, Q_EPS = 9, Q_N = 10 };
	static const char *const argv[Q_N][6] = {
		{ "XLEN", ST_K_READY, NULL },
		{ "XLEN", ST_K_READY_HIGH, NULL },
		{ "XPENDING", ST_K_READY, ST_G_WORKERS, NULL },
		{ "XPENDING", ST_K_READY_HIGH, ST_G_WORKERS, NULL },
		{ "ZCARD", ST_K_DUE, NULL },
		{ "XLEN", ST_K_EVENTS, NULL },
		{ "XRANGE", ST_K_READY, "-", "+", "COUNT", "1" },
		{ "XRANGE", ST_K_READY_HIGH, "-", "+", "COUNT", "1" },
		{ "TIME", NULL },
		{ "ZRANGE", ST_K_WHEPS, "0", "999", NULL },
	};
	static const int argc[Q_N] = { 2, 2, 3, 3, 2, 2, 6, 6, 1, 4 };
	struct st_cmd cmds[Q_N];
	redisReply *rep[Q_N];
	int64_t len[2] = { 0, 0 }, first[2] = { 0, 0 }, now = 0;
	size_t i;
	int rc;

	if (!s || !out)
		return STORE_ERR_PROTO;
	memset(out, 0, sizeof(*out));
	memset(cmds, 0, sizeof(cmds));
	memset(rep, 0, sizeof(rep));
	rc = st_connect(s);
	if (rc)
		return rc;
	for (i = 0; i < Q_N; i++) {
		int n = redisFormatCommandArgv(&cmds[i].buf, argc[i], (const char **)argv[i], NULL);

		if (n < 0 || !cmds[i].buf) {
			rc = STORE_ERR_NOMEM;
			goto out;
		}
		cmds[i].len = (size_t)n;
	}
	rc = st_run(s, cmds, Q_N, rep);
	if (rc)
		goto out;
	for (i = 0; i < Q_EVENTS + 1; i++) {
		const redisReply *r = rep[i];
		int xpending = i == Q_PEND || i == Q_PEND + 1;
		int64_t *dst;

		/* XPENDING summary: [count, min id, max id, consumers] */
		if (xpending && st_is_array(r, 1))
			r = r->element[0];
		if (xpending && st_is_error(r, "NOGROUP"))
			continue;   /* no worker group yet: nothing pending */
		if (!r || r->type != REDIS_REPLY_INTEGER || r->integer < 0) {
			rc = st_bad("queue stats", rep[i]);
			goto out;
		}
		dst = i < Q_PEND ? &len[i] : xpending ? &out->claimed[i - Q_PEND] :
		    i == Q_DUE ? &out->due : &out->events;
		*dst = r->integer;
	}
	if (st_stream_first_ms(rep[Q_FIRST], &first[0]) != 0 ||
	    st_stream_first_ms(rep[Q_FIRST + 1], &first[1]) != 0 || st_time_ms(rep[Q_TIME], &now) != 0) {
		rc = st_bad("queue stats: oldest", rep[Q_TIME]);
		goto out;
	}
	for (i = 0; i < 2; i++) {
		/* claimed and recorded entries are deleted (XACK + XDEL): the rest wait for a worker */
		out->ready[i] = len[i] > out->claimed[i] ? len[i] - out->claimed[i] : 0;
		out->oldest_ms[i] = first[i] > 0 && now > first[i] ? now - first[i] : 0;
	}
	rc = st_wh_backlogs(s, rep[Q_EPS], out);
out:
	for (i = 0; i < Q_N; i++) {
		if (rep[i])
			freeReplyObject(rep[i]);
		redisFreeCommand(cmds[i].buf);
	}
	return rc;
}
