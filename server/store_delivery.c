/*
 * store_delivery.c - the recipient state machine as the workers drive it:
 * the ready streams (one per lane and project, s->streams), fetch
 * (XREADGROUP of every stream of both lanes, shared by lane weight and,
 * within a lane, by project in turn, plus one claim script call for the
 * whole batch; entries beyond max are carried to the next call),
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
#include "store_cluster.h"

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
	{ ST_COL_I64, 0, offsetof(struct store_delivery, due_ms), 0, 0, NULL },
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

/* --- the ready streams ----------------------------------------------------- */

/* st_stream_add - append (partition, lane, project) unless known; 0, 1 when full or invalid, STORE_ERR_NOMEM. */
static int
st_stream_add(struct store *s, unsigned part, enum store_lane lane, const char *project,
    size_t plen)
{
	struct st_stream *st, *v;
	char name[STORE_PROJECT_MAX + 1];
	size_t i;

	if (plen == 0 || plen > STORE_PROJECT_MAX)
		return 1;
	memcpy(name, project, plen);
	name[plen] = '\0';
	for (i = 0; i < s->nstreams; i++)
		if (s->streams[i].part == part && s->streams[i].lane == lane &&
		    strcmp(s->streams[i].project, name) == 0)
			return 0;
	if (s->nstreams >= ST_MAX_STREAMS)
		return 1;
	v = realloc(s->streams, (s->nstreams + 1) * sizeof(*v));
	if (!v)
		return STORE_ERR_NOMEM;
	s->streams = v;
	st = &v[s->nstreams];
	memset(st, 0, sizeof(*st));
	st->part = part;
	st->lane = lane;
	util_strlcpy(st->project, name, sizeof(st->project));
	util_strlcpy(st->cursor, "0-0", sizeof(st->cursor));
	if (st_stream_key_in(s, part, st->key, sizeof(st->key), lane, name))
		return 1;   /* not a project name: not kept */
	s->nstreams++;
	return 0;
}

int
st_streams_refresh(struct store *s, int force)
{
	static const enum st_pk sets[2] = { PK_READY_PROJECTS, PK_READY_HIGH_PROJECTS };
	static const enum store_lane lanes[2] = { STORE_LANE_NORMAL, STORE_LANE_HIGH };
	struct st_batch b;
	int64_t now = util_mono_ms();
	size_t i, k;
	unsigned p;
	int rc = 0, full = 0;

	memset(&b, 0, sizeof(b));
	/* every partition's two default streams first, in partition order */
	for (p = 0; s->nstreams < 2 * (size_t)s->nparts && p < s->nparts && rc == 0; p++) {
		rc = st_stream_add(s, p, STORE_LANE_NORMAL, STORE_PROJECT_DEFAULT,
		    strlen(STORE_PROJECT_DEFAULT));
		if (rc == 0)
			rc = st_stream_add(s, p, STORE_LANE_HIGH, STORE_PROJECT_DEFAULT,
			    strlen(STORE_PROJECT_DEFAULT));
	}
	if (rc)
		return rc < 0 ? rc : STORE_ERR_PROTO;
	if (!force && s->streams_ms != 0 && now - s->streams_ms < ST_STREAMS_REFRESH_MS)
		return 0;
	s->streams_ms = now;    /* also when it fails: not again before the next period */
	rc = st_batch_init(&b, 2 * (size_t)s->nparts, 2);
	for (k = 0; k < 2 * (size_t)s->nparts && rc == 0; k++) {
		st_adds(&b.a, "SMEMBERS");
		st_adds(&b.a, st_pk(s, (unsigned)(k / 2), sets[k % 2]));
		rc = st_batch_add(&b);
	}
	if (rc == 0)
		rc = st_batch_run(s, &b);
	for (k = 0; k < b.n && rc == 0; k++) {
		const redisReply *r = b.rep[k];

		if (!r || r->type != REDIS_REPLY_ARRAY) {
			rc = st_bad("smembers", r);
			break;
		}
		for (i = 0; i < r->elements && rc == 0; i++) {
			const redisReply *e = r->element[i];

			if (!st_is_str(e) || (e->len == strlen(STORE_PROJECT_DEFAULT) &&
			    memcmp(e->str, STORE_PROJECT_DEFAULT, e->len) == 0))
				continue;
			rc = st_stream_add(s, (unsigned)(k / 2), lanes[k % 2], e->str, e->len);
			if (rc == 1) {
				full = 1;
				rc = 0;
			}
		}
	}
	if (full && !s->streams_warned) {
		s->streams_warned = 1;  /* once per handle: it is read again every second */
		log_warn("ready streams beyond the handle's table (or misnamed) are not read",
		    "max=%d", ST_MAX_STREAMS);
	}
	st_batch_release(&b);
	return rc;
}

/* A growing list of entries seen by fetch/reclaim. */
struct st_pendv {
	struct st_pend *v;
	size_t n;
	size_t cap;
};

static int
st_pendv_room(struct st_pendv *pv, size_t more)
{
	struct st_pend *v;
	size_t cap;

	if (pv->cap - pv->n >= more)
		return 0;
	if (more > ST_MAX_BATCH * 64 || pv->n > ST_MAX_BATCH * 64)
		return STORE_ERR_PROTO;
	cap = pv->cap ? pv->cap : 64;
	while (cap - pv->n < more)
		cap *= 2;
	v = realloc(pv->v, cap * sizeof(*v));
	if (!v)
		return STORE_ERR_NOMEM;
	pv->v = v;
	pv->cap = cap;
	return 0;
}

static int
st_delivery_from(const struct store *s, const struct st_pend *p, const redisReply *r,
    struct store_delivery **out)
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
	util_strlcpy(d->stream_project, s->streams[p->stream].project, sizeof(d->stream_project));
	memcpy(d->msg_id, p->msg_id, sizeof(d->msg_id));
	d->rcpt_idx = p->idx;
	*out = d;
	return 0;
}

/*
 * st_parse_entries - append the entries of one stream of an XREADGROUP or
 * XAUTOCLAIM reply, read from s->streams[stream], to pv. Nil entries are
 * skipped; malformed ones are kept with claim 0 (acked and deleted by
 * st_claim_pend). *got (when not NULL) counts the entries of the reply.
 */
static int
st_parse_entries(const struct store *s, const redisReply *entries, size_t stream,
    struct st_pendv *pv, size_t *got)
{
	size_t i;
	int rc;

	if (got)
		*got = entries->elements;
	rc = st_pendv_room(pv, entries->elements);
	if (rc)
		return rc;
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
		p = &pv->v[pv->n++];
		memset(p, 0, sizeof(*p));
		memcpy(p->entry_id, id->str, id->len);
		p->entry_id[id->len] = '\0';
		p->lane = s->streams[stream].lane;
		p->stream = stream;
		m = st_entry_field(fields, "m");
		r = st_entry_field(fields, "r");
		p->claim = m && r && m->len > 0 && m->len <= ST_MAX_ID &&
		    st_int(r, &idx) == 0 && idx >= 0 && idx < ST_MAX_RCPTS;
		if (p->claim) {
			memcpy(p->msg_id, m->str, m->len);
			p->msg_id[m->len] = '\0';
			p->idx = (int)idx;
			/* a message's entries are in its own partition's streams, or malformed */
			p->claim = st_id_part(p->msg_id) == s->streams[stream].part;
		}
	}
	return 0;
}

/*
 * st_stream_slot - the 1-based position of key in keys[0..*n) (the
 * streams of one claim or record call), appended when new; its decimal
 * text to num.
 */
static void
st_stream_slot(const char **keys, size_t *n, const char *key, char num[ST_I64_LEN])
{
	size_t i;

	for (i = 0; i < *n; i++)
		if (strcmp(keys[i], key) == 0)
			break;
	if (i == *n)
		keys[(*n)++] = key;
	(void)st_i64(num, (int64_t)(i + 1));
}

/* The strings of one entry in a claim call (the script concatenates nothing). */
struct st_claim_arg {
	char kmsg[ST_KEY_MAX];
	char kmime[ST_KEY_MAX];
	char fstatus[ST_RFIELD_MAX];
	char fattempts[ST_RFIELD_MAX];
	char femail[ST_RFIELD_MAX];
	char slot[ST_I64_LEN];      /* its stream's place in the call's keys */
};

/*
 * st_part_chunks - the order in which entries go into script calls: by
 * partition (a call's keys are all in one partition: one slot), in their
 * own order within it; chunk[c] is where call c starts in ord, chunk[nc]
 * = n. part(i) is entry i's partition. Returns the number of calls, each
 * at most ST_SCRIPT_BATCH entries; ord and chunk have room for n and n + 1.
 */
static size_t
st_part_chunks(size_t n, unsigned (*part)(const void *, size_t), const void *ctx, size_t *ord,
    size_t *chunk)
{
	size_t i, k = 0, nc = 0, run = 0;
	uint64_t seen = 0;      /* ST_MAX_PARTS <= 64 */

	for (i = 0; i < n; i++)
		seen |= (uint64_t)1 << part(ctx, i);
	for (unsigned p = 0; p < ST_MAX_PARTS; p++) {
		if (!(seen & ((uint64_t)1 << p)))
			continue;
		run = 0;
		for (i = 0; i < n; i++) {
			if (part(ctx, i) != p)
				continue;
			if (run % ST_SCRIPT_BATCH == 0)
				chunk[nc++] = k;
			ord[k++] = i;
			run++;
		}
	}
	chunk[nc] = k;
	return nc;
}

struct st_pend_parts {
	const struct store *s;
	const struct st_pend *pend;
};

static unsigned
st_pend_part(const void *ctx, size_t i)
{
	const struct st_pend_parts *x = ctx;

	return x->s->streams[x->pend[i].stream].part;
}

/*
 * st_claim_pend - claim the parsed entries, ST_SCRIPT_BATCH of one
 * partition to a claim script call (the calls pipelined), and write the
 * deliverable ones to out (room for np), in pend's order. A carried entry
 * is claimed only while consumer still holds it; a malformed one is
 * dropped from the group. An entry the script answers with an error, or
 * every entry of a call that failed as a whole, is left out: it stays
 * pending and is reclaimed later.
 */
static int
st_claim_pend(struct store *s, const char *consumer, const struct st_pend *pend, size_t np,
    struct store_delivery **out)
{
	struct st_batch b;
	struct st_claim_arg *ca = NULL;
	struct store_delivery **got = NULL;
	const struct st_pend_parts px = { s, pend };
	const char *skeys[ST_SCRIPT_BATCH];
	char now[ST_I64_LEN];
	size_t i, c, nc, ns, *ord = NULL, *chunk = NULL;
	int rc, count = 0;

	memset(&b, 0, sizeof(b));
	if (np == 0)
		return 0;
	st_i64(now, util_now_ms());
	ca = malloc(np * sizeof(*ca));
	got = calloc(np, sizeof(*got));
	ord = malloc(np * sizeof(*ord));
	chunk = malloc((np + 1) * sizeof(*chunk));
	if (!ca || !got || !ord || !chunk) {
		rc = STORE_ERR_NOMEM;
		goto out;
	}
	nc = st_part_chunks(np, st_pend_part, &px, ord, chunk);
	rc = st_batch_init(&b, nc, 8 + 9 * ST_SCRIPT_BATCH);
	if (rc)
		goto out;
	for (i = 0; i < np; i++) {
		const struct st_pend *p = &pend[i];

		if (!p->claim) {
			log_warn("malformed ready entry dropped", "entry=%s", p->entry_id);
			/* keys unused by the script, but in the slot of the others */
			util_strlcpy(ca[i].kmsg, s->streams[p->stream].key, sizeof(ca[i].kmsg));
			util_strlcpy(ca[i].kmime, s->streams[p->stream].key, sizeof(ca[i].kmime));
			ca[i].fstatus[0] = ca[i].fattempts[0] = ca[i].femail[0] = '\0';
			continue;
		}
		if (st_msg_key(s, ca[i].kmsg, sizeof(ca[i].kmsg), p->msg_id, NULL) ||
		    st_msg_key(s, ca[i].kmime, sizeof(ca[i].kmime), p->msg_id, ":mime")) {
			rc = STORE_ERR_PROTO;
			goto out;
		}
		st_rfield(ca[i].fstatus, p->idx, "status");
		st_rfield(ca[i].fattempts, p->idx, "attempts");
		st_rfield(ca[i].femail, p->idx, "email");
	}
	for (c = 0; c < nc; c++) {
		size_t lo = chunk[c], hi = chunk[c + 1], k;
		unsigned part = st_pend_part(&px, ord[lo]);

		ns = 0;
		for (k = lo; k < hi; k++)
			st_stream_slot(skeys, &ns, s->streams[pend[ord[k]].stream].key, ca[ord[k]].slot);
		st_eval(&b.a, s, SC_CLAIM, (int)(2 * (hi - lo) + ns + 2));
		for (k = lo; k < hi; k++) {
			st_adds(&b.a, ca[ord[k]].kmsg);
			st_adds(&b.a, ca[ord[k]].kmime);
		}
		for (k = 0; k < ns; k++)
			st_adds(&b.a, skeys[k]);
		st_adds(&b.a, st_pk(s, part, PK_DUE));
		st_adds(&b.a, st_pk(s, part, PK_SAT));
		st_adds(&b.a, consumer);
		st_adds(&b.a, now);
		for (k = lo; k < hi; k++) {
			i = ord[k];
			st_adds(&b.a, pend[i].entry_id);
			st_adds(&b.a, ca[i].slot);
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
		size_t lo = chunk[c], hi = chunk[c + 1], k;
		const redisReply *r = b.rep[c];

		if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != hi - lo) {
			(void)st_bad("claim", r);
			continue;   /* all of them stay pending; reclaimed later */
		}
		for (k = lo; k < hi; k++) {
			const redisReply *e = r->element[k - lo];
			int er;

			i = ord[k];
			if (!pend[i].claim || !e || e->type == REDIS_REPLY_NIL)
				continue;   /* not deliverable: the script acked it */
			if (e->type == REDIS_REPLY_INTEGER) {
				s->claim_parked++;   /* its destination is saturated: waits in due */
				continue;
			}
			if (e->type == REDIS_REPLY_ERROR) {
				(void)st_bad("claim", e);
				continue;   /* stays pending; reclaimed later */
			}
			er = st_delivery_from(s, &pend[i], e, &got[i]);
			if (er == STORE_ERR_NOMEM) {
				rc = er;
				goto out;
			}
		}
	}
	for (i = 0; i < np; i++)    /* in pend's order: the round robin's */
		if (got[i]) {
			out[count++] = got[i];
			got[i] = NULL;
		}
out:
	if (rc) {
		while (count > 0)
			store_delivery_free(out[--count]);
	}
	for (i = 0; got && i < np; i++)
		store_delivery_free(got[i]);
	st_batch_release(&b);
	free(chunk);
	free(ord);
	free(got);
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

int
st_block_slice(const struct store *s, size_t nslots, int block_ms)
{
	int slice = nslots > 1 ? ST_CLUSTER_BLOCK_MS : s->cmd_timeout_ms / 2;

	if (slice < ST_CLUSTER_BLOCK_MS)
		slice = ST_CLUSTER_BLOCK_MS;
	return block_ms < slice ? block_ms : slice;
}

/* st_xread_build - XREADGROUP of the keys[k] whose slots[k] is slot (slots NULL: all) into a. */
static void
st_xread_build(struct st_args *a, const char *const *keys, const unsigned *slots, size_t nkeys,
    unsigned slot, const char *group, const char *consumer, int max, int block_ms, const char *from)
{
	size_t k;

	st_adds(a, "XREADGROUP");
	st_adds(a, "GROUP");
	st_adds(a, group);
	st_adds(a, consumer);
	st_adds(a, "COUNT");
	st_addi(a, max);
	if (block_ms > 0) {
		st_adds(a, "BLOCK");
		st_addi(a, block_ms > 3600 * 1000 ? 3600 * 1000 : block_ms);
	}
	st_adds(a, "STREAMS");
	for (k = 0; k < nkeys; k++)
		if (!slots || slots[k] == slot)
			st_adds(a, keys[k]);
	for (k = 0; k < nkeys; k++)
		if (!slots || slots[k] == slot)
			st_adds(a, from);
}

/*
 * st_xread_cluster - st_xread's read on a Cluster, where one command may
 * name keys of one slot only: one XREADGROUP per slot (partition), all in
 * one round trip, without blocking; when none gave anything and block_ms
 * > 0, one of them (in turn) blocks, for ST_CLUSTER_BLOCK_MS at most (the
 * caller reads again: an entry of another partition waits that long at
 * most). The replies read as one (st_reply_concat).
 */
static int
st_xread_cluster(struct store *s, const char *const *keys, size_t nkeys, const char *group,
    const char *consumer, int max, int block_ms, const char *from, redisReply **out)
{
	unsigned *slots = malloc(nkeys * sizeof(*slots)), *ds = malloc(nkeys * sizeof(*ds));
	struct st_cmd *cmds = calloc(nkeys, sizeof(*cmds));
	redisReply **rep = calloc(nkeys, sizeof(*rep));
	struct st_args a;
	size_t k, nds = 0, nup = 0;
	int rc;

	*out = NULL;
	memset(&a, 0, sizeof(a));
	rc = slots && ds && cmds && rep ? st_args_init(&a, 10 + 2 * nkeys) : STORE_ERR_NOMEM;
	for (k = 0; k < nkeys && rc == 0; k++) {
		size_t d = 0;

		slots[k] = st_cluster_keyslot(keys[k], strlen(keys[k]));
		while (d < nds && ds[d] != slots[k])
			d++;
		if (d == nds)
			ds[nds++] = slots[k];
	}
	for (k = 0; k < nds && rc == 0; k++) {
		st_xread_build(&a, keys, slots, nkeys, ds[k], group, consumer, max, 0, from);
		rc = st_format(&a, &cmds[k]);
	}
	/* a partition whose primary is down gives nothing: the others are read (entries a lost
	 * reply gave this consumer stay pending with it, and a reclaim takes them) */
	if (rc == 0)
		rc = st_run_partial(s, cmds, nds, rep);
	for (k = 0, nup = 0; k < nds && rc == 0; k++)
		if (rep[k])
			ds[nup++] = ds[k];   /* the slots that answered: the wait goes to one of them */
	if (rc == 0) {
		*out = st_reply_concat(rep, nds);
		rc = *out ? 0 : STORE_ERR_NOMEM;
	}
	if (rc == 0 && block_ms > 0 && (*out)->type == REDIS_REPLY_NIL) {
		/* nothing at hand: wait on one partition's streams, a slice, then the caller reads again */
		unsigned slot = ds[s->block_rr++ % nup];
		struct st_cmd one = { NULL, 0, 0 };

		st_xread_build(&a, keys, slots, nkeys, slot, group, consumer, max,
		    st_block_slice(s, nds, block_ms), from);
		rc = st_format(&a, &one);
		freeReplyObject(*out);
		*out = NULL;
		if (rc == 0)
			rc = st_run(s, &one, 1, out);
		redisFreeCommand(one.buf);
	}
	for (k = 0; cmds && k < nds; k++)
		redisFreeCommand(cmds[k].buf);
	st_args_release(&a);
	free(slots);
	free(ds);
	free(cmds);
	free(rep);
	return rc;
}

/*
 * st_xread - one XREADGROUP over nkeys (1 to 2 x ST_READ_STREAMS) streams,
 * COUNT max each (on a Cluster one per partition: st_xread_cluster);
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
	memset(&a, 0, sizeof(a));
	for (k = 0; k < nkeys; k++)
		entries[k] = NULL;
	if (nkeys < 1 || nkeys > 2 * ST_READ_STREAMS)
		return STORE_ERR_PROTO;
	if (s->cl) {
		rc = st_xread_cluster(s, keys, nkeys, group, consumer, max, block_ms, from, &r);
	} else {
		rc = st_args_init(&a, 10 + 2 * nkeys);
		if (rc)
			return rc;
		st_xread_build(&a, keys, NULL, nkeys, 0, group, consumer, max, block_ms, from);
		rc = st_set_timeout(s, st_block_timeout(block_ms));
		if (rc)
			goto out;
		rc = st_do(s, &a, &r);
		if (s->c) {
			int t = st_set_timeout(s, s->cmd_timeout_ms);

			if (rc == 0)
				rc = t;
		}
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
 * st_carry_take - move every carried entry (read by an earlier fetch
 * beyond what it handed out) to its lane's list, in order; cnt[stream]
 * counts them.
 */
static int
st_carry_take(struct store *s, struct st_pendv lp[2], size_t *cnt)
{
	size_t i, per[2] = { 0, 0 };
	int rc;

	for (i = 0; i < s->ncarry; i++)
		per[s->carry[i].lane]++;
	for (i = 0; i < 2; i++) {
		rc = st_pendv_room(&lp[i], per[i]);
		if (rc)
			return rc;
	}
	for (i = 0; i < s->ncarry; i++) {
		struct st_pendv *pv = &lp[s->carry[i].lane];

		pv->v[pv->n] = s->carry[i];
		pv->v[pv->n].carried = 1;
		pv->n++;
		cnt[s->carry[i].stream]++;
	}
	s->ncarry = 0;
	return 0;
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

/*
 * st_read_streams - one XREADGROUP (">", COUNT count each, blocking up to
 * block_ms when > 0) of the streams idx[0..nidx), their entries appended
 * to their lane's list; cnt[stream] += what each gave, got[k] = what
 * idx[k] gave (got may be NULL).
 */
static int
st_read_streams(struct store *s, const char *consumer, const size_t *idx, size_t nidx,
    size_t count, int block_ms, struct st_pendv lp[2], size_t *cnt, size_t *got)
{
	const char **keys = NULL;
	const redisReply **entries = NULL;
	redisReply *r = NULL;
	size_t k;
	int rc;

	if (got)
		memset(got, 0, nidx * sizeof(*got));
	if (nidx == 0)
		return 0;
	keys = malloc(nidx * sizeof(*keys));
	entries = malloc(nidx * sizeof(*entries));
	rc = keys && entries ? 0 : STORE_ERR_NOMEM;
	for (k = 0; rc == 0 && k < nidx; k++)
		keys[k] = s->streams[idx[k]].key;
	if (rc == 0)
		rc = st_xread(s, keys, nidx, ST_G_WORKERS, consumer, count > INT32_MAX ? INT32_MAX :
		    (int)count, block_ms, ">", &r, entries);
	for (k = 0; k < nidx && rc == 0; k++) {
		size_t g = 0;

		if (!entries[k])
			continue;
		rc = st_parse_entries(s, entries[k], idx[k], &lp[s->streams[idx[k]].lane], &g);
		cnt[idx[k]] += g;
		if (got)
			got[k] = g;
	}
	if (r)
		freeReplyObject(r);
	free(keys);
	free(entries);
	return rc;
}

/*
 * st_read_set - the streams of lane (both: lane < 0) for a read: from the
 * lane's window start, those with fewer than below carried (cnt), up to
 * ST_READ_STREAMS per lane; the window moves on past the last one taken.
 * Appends to idx[*n..) (room for 2 x ST_READ_STREAMS).
 */
static void
st_read_set(struct store *s, int lane, const size_t *cnt, size_t below, size_t *idx, size_t *n)
{
	for (int l = 0; l < 2; l++) {
		size_t i, taken = 0, last = s->read_from[l];

		if (lane >= 0 && l != lane)
			continue;
		for (i = 0; i < s->nstreams && taken < ST_READ_STREAMS; i++) {
			size_t k = (s->read_from[l] + i) % s->nstreams;

			if ((int)s->streams[k].lane != l || cnt[k] >= below)
				continue;
			idx[(*n)++] = k;
			taken++;
			last = k;
		}
		if (taken == ST_READ_STREAMS)
			s->read_from[l] = (last + 1) % s->nstreams;
	}
}

/* st_div_up - ceil(a / b), b > 0. */
static size_t
st_div_up(size_t a, size_t b)
{
	return (a + b - 1) / b;
}

/*
 * st_read_short - without waiting, read the lanes short of want entries:
 * COUNT per stream the lane's need over the streams that had entries last
 * time (so a lane with one busy project reads a whole batch from it, and
 * with n busy ones about need / n from each), the streams carrying that
 * many already left out, and the read-ahead bounded by ST_READ_AHEAD. A
 * lane with want carried reads only the streams it carries nothing of.
 * Streams that gave a full COUNT while their lane is still short are read
 * once more (only then a second round trip).
 */
static int
st_read_short(struct store *s, const char *consumer, size_t want, struct st_pendv lp[2],
    size_t *cnt)
{
	size_t idx[2 * ST_READ_STREAMS], got[2 * ST_READ_STREAMS], nidx = 0, count = 0;
	size_t per[2] = { 0, 0 }, k;
	int rc;

	for (int l = 0; l < 2; l++) {
		size_t na = s->nactive[l] > 0 ? s->nactive[l] : 1;

		/* a lane carrying enough still reads the streams it carries nothing
		 * of: a project that was idle is not kept behind the others' carry */
		per[l] = lp[l].n < want ? st_div_up(want - lp[l].n, na) : 1;
		st_read_set(s, l, cnt, per[l], idx, &nidx);
		if (per[l] > count)
			count = per[l];
	}
	if (nidx == 0)
		return 0;
	if (count * nidx > ST_READ_AHEAD)
		count = ST_READ_AHEAD / nidx > 0 ? ST_READ_AHEAD / nidx : 1;
	rc = st_read_streams(s, consumer, idx, nidx, count, 0, lp, cnt, got);
	if (rc)
		return rc;
	/* streams that may have more, of lanes still short */
	{
		size_t again[2 * ST_READ_STREAMS], na = 0, more = 0, nfull[2] = { 0, 0 };

		for (k = 0; k < nidx; k++) {
			enum store_lane l = s->streams[idx[k]].lane;

			if (got[k] == count && lp[l].n < want) {
				again[na++] = idx[k];
				nfull[l]++;
			}
		}
		for (int l = 0; l < 2; l++)
			if (nfull[l] > 0 && st_div_up(want - lp[l].n, nfull[l]) > more)
				more = st_div_up(want - lp[l].n, nfull[l]);
		if (na == 0)
			return 0;
		if (more * na > ST_READ_AHEAD)
			more = ST_READ_AHEAD / na > 0 ? ST_READ_AHEAD / na : 1;
		return st_read_streams(s, consumer, again, na, more, 0, lp, cnt, NULL);
	}
}

/* st_pend_order - qsort by the round robin order st_round_robin set. */
static int
st_pend_order(const void *a, const void *b)
{
	const struct st_pend *x = a, *y = b;

	return x->order < y->order ? -1 : x->order > y->order;
}

/*
 * st_round_robin - order lane's entries (carried first, each stream's in
 * stream order) so that its first take go one per stream in turn: the
 * first entry of every stream, then the second..., starting at the
 * stream after the one the last fetch ended with. Each stream keeps its
 * own order, so what is left is carried in order. Sets the lane's count
 * of streams with entries (cnt) for the next read's COUNT.
 */
static int
st_round_robin(struct store *s, enum store_lane lane, struct st_pendv *pv, size_t take,
    const size_t *cnt)
{
	size_t *ord, i, ns = s->nstreams, active = 0;

	for (i = 0; i < ns; i++)
		if (s->streams[i].lane == lane && cnt[i] > 0)
			active++;
	s->nactive[lane] = active;
	if (pv->n == 0)
		return 0;
	ord = calloc(ns, sizeof(*ord));
	if (!ord)
		return STORE_ERR_NOMEM;
	for (i = 0; i < pv->n; i++) {
		struct st_pend *p = &pv->v[i];

		p->order = (uint64_t)ord[p->stream]++ * ns + (p->stream + ns - s->rr[lane] % ns) % ns;
	}
	qsort(pv->v, pv->n, sizeof(*pv->v), st_pend_order);
	if (take > 0)
		s->rr[lane] = (pv->v[take - 1].stream + 1) % ns;
	free(ord);
	return 0;
}

int
store_fetch(struct store *s, const char *consumer, int max, int block_ms,
    struct store_delivery **out)
{
	struct st_pendv lp[2];
	struct st_pend *sel = NULL;
	size_t q[2], take[2], want, *cnt = NULL, n = 0;
	int rc;

	memset(lp, 0, sizeof(lp));
	if (!s || !consumer || !*consumer || !out || max <= 0)
		return STORE_ERR_PROTO;
	if (max > ST_MAX_BATCH)
		max = ST_MAX_BATCH;
	want = (size_t)max;
	rc = st_connect(s);
	if (rc)
		return rc;
	/* the project sets at most once a second; on trouble the streams known so far */
	if (st_streams_refresh(s, 0) != 0 && s->nstreams == 0)
		return STORE_ERR_PROTO;
	cnt = calloc(s->nstreams, sizeof(*cnt));
	if (!cnt)
		return STORE_ERR_NOMEM;
	/*
	 * Per lane: its carried entries, then what a read gives (each lane up
	 * to want, so a lane short of its share leaves it to the other). The
	 * lanes share the slots by weight (TXMAIL_LANE_WEIGHTS): high first
	 * but not forever; within a lane the projects' streams share its slots
	 * by round robin (st_round_robin).
	 */
	st_lane_quotas(s, want, q);
	rc = st_carry_take(s, lp, cnt);
	if (rc)
		goto out;
	/* 1. without waiting: the lanes short of want */
	rc = st_read_short(s, consumer, want, lp, cnt);
	if (rc && lp[0].n + lp[1].n == 0)
		goto out;
	rc = 0;     /* claim what is at hand; the rest stays pending */
	/* 2. nothing at hand: wait on every stream of both lanes */
	if (lp[0].n + lp[1].n == 0) {
		size_t idx[2 * ST_READ_STREAMS], nidx = 0, count;

		st_read_set(s, -1, cnt, 1, idx, &nidx);
		count = nidx > 0 && want * nidx > ST_READ_AHEAD ? ST_READ_AHEAD / nidx : want;
		rc = st_read_streams(s, consumer, idx, nidx, count > 0 ? count : 1, block_ms, lp, cnt,
		    NULL);
		if (rc && lp[0].n + lp[1].n == 0)
			goto out;
		rc = 0;
	}
	/* 3. the shares: a lane with fewer entries than its quota gives the rest to the other */
	take[0] = lp[0].n < q[0] ? lp[0].n : q[0];
	take[1] = lp[1].n < q[1] ? lp[1].n : q[1];
	if (take[0] < q[0] || take[1] < q[1]) {
		/* one lane ran dry: no credit is banked for later (no burst to catch up) */
		s->lane_credit[0] = s->lane_credit[1] = 0;
		for (int l = 0; l < 2; l++) {
			size_t more = want - take[0] - take[1], room = lp[l].n - take[l];

			take[l] += more < room ? more : room;
		}
	}
	/* 4. within each lane, round robin between its streams; the rest waits for the next call */
	for (int l = 0; l < 2 && rc == 0; l++)
		rc = st_round_robin(s, (enum store_lane)l, &lp[l], take[l], cnt);
	for (int l = 0; l < 2 && rc == 0; l++)
		rc = st_carry_keep(s, lp[l].v + take[l], lp[l].n - take[l]);
	n = take[0] + take[1];
	sel = rc == 0 && n > 0 ? malloc(n * sizeof(*sel)) : NULL;
	if (rc || n == 0)
		goto out;   /* entries not kept stay pending with this consumer: a reclaim takes them */
	if (!sel) {
		rc = STORE_ERR_NOMEM;
		goto out;
	}
	/* high first, then normal */
	if (take[STORE_LANE_HIGH] > 0)
		memcpy(sel, lp[STORE_LANE_HIGH].v, take[STORE_LANE_HIGH] * sizeof(*sel));
	if (take[STORE_LANE_NORMAL] > 0)
		memcpy(sel + take[STORE_LANE_HIGH], lp[STORE_LANE_NORMAL].v,
		    take[STORE_LANE_NORMAL] * sizeof(*sel));
	rc = st_claim_pend(s, consumer, sel, n, out);
out:
	free(sel);
	free(lp[0].v);
	free(lp[1].v);
	free(cnt);
	return rc;
}

int
store_reclaim(struct store *s, const char *consumer, int64_t min_idle_ms,
    int max, struct store_delivery **out)
{
	const redisReply *entries = NULL;
	struct st_pendv pv;
	redisReply *r = NULL;
	size_t k, seen = 0, last = 0;
	int rc = 0;

	memset(&pv, 0, sizeof(pv));
	if (!s || !consumer || !*consumer || !out || max <= 0)
		return STORE_ERR_PROTO;
	if (max > ST_MAX_BATCH)
		max = ST_MAX_BATCH;
	rc = st_connect(s);
	if (rc)
		return rc;
	if (st_streams_refresh(s, 0) != 0 && s->nstreams == 0)
		return STORE_ERR_PROTO;
	/*
	 * The high lane's streams first, then the normal lane's; each stream
	 * its own cursor; at most ST_RECLAIM_STREAMS a call (the next call
	 * goes on from there).
	 */
	for (int pass = 0; pass < 2; pass++) {
		enum store_lane lane = pass == 0 ? STORE_LANE_HIGH : STORE_LANE_NORMAL;

		for (k = 0; k < s->nstreams && seen < ST_RECLAIM_STREAMS && pv.n < (size_t)max &&
		    rc == 0; k++) {
			size_t i = (s->reclaim_at + k) % s->nstreams;
			struct st_stream *st = &s->streams[i];

			if (st->lane != lane)
				continue;
			seen++;
			last = i;
			rc = st_xautoclaim(s, st->key, ST_G_WORKERS, consumer, min_idle_ms,
			    (int)((size_t)max - pv.n), st->cursor, sizeof(st->cursor), &r, &entries);
			if (rc == 0 && entries)
				rc = st_parse_entries(s, entries, i, &pv, NULL);
			if (r)
				freeReplyObject(r);
			r = NULL;
		}
	}
	if (seen == ST_RECLAIM_STREAMS)
		s->reclaim_at = (last + 1) % s->nstreams;
	if (rc && pv.n > 0)
		rc = 0;     /* claim what is at hand */
	/*
	 * An entry this handle read ahead and still carries is ours already
	 * (idle only because it waited for a slot): the carry claims it; were
	 * it claimed here too, it would be sent twice.
	 */
	if (rc == 0 && s->ncarry > 0) {
		size_t kept = 0;

		for (size_t i = 0; i < pv.n; i++) {
			int carried = 0;

			for (size_t c = 0; c < s->ncarry && !carried; c++)
				carried = s->carry[c].stream == pv.v[i].stream &&
				    strcmp(s->carry[c].entry_id, pv.v[i].entry_id) == 0;
			if (!carried)
				pv.v[kept++] = pv.v[i];
		}
		pv.n = kept;
	}
	if (rc == 0)
		rc = st_claim_pend(s, consumer, pv.v, pv.n, out);
	free(pv.v);
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
store_heartbeat(struct store *s, const char *consumer, const char *const *entry_ids,
    const enum store_lane *lanes, const char *const *projects, const unsigned *parts, size_t n)
{
	char (*keys)[ST_KEY_MAX] = NULL;
	const char **sub = NULL;
	unsigned char *done = NULL;
	size_t i, j, m;
	int rc = 0;

	if (!s || !consumer || !*consumer || (n && !entry_ids) || n > 100000)
		return STORE_ERR_PROTO;
	if (n == 0)
		return 0;
	keys = malloc(n * sizeof(*keys));
	sub = malloc(n * sizeof(*sub));
	done = calloc(n, 1);
	if (!keys || !sub || !done) {
		rc = STORE_ERR_NOMEM;
		goto out;
	}
	for (i = 0; i < n; i++)
		if ((parts && parts[i] >= ST_MAX_PARTS) ||
		    st_stream_key_in(s, parts ? parts[i] : 0, keys[i], sizeof(keys[i]),
		    lanes ? lanes[i] : STORE_LANE_NORMAL, projects ? projects[i] : NULL)) {
			rc = STORE_ERR_PROTO;
			goto out;
		}
	/*
	 * One XCLAIM per stream: an id means something only on its own stream.
	 * A stream that cannot be reached (on a Cluster: its primary is down)
	 * does not keep the others' leases from being renewed; the first error
	 * is the answer.
	 */
	for (i = 0; i < n && (rc == 0 || rc == STORE_ERR_UNAVAILABLE); i++) {
		int r;

		if (done[i])
			continue;
		for (j = i, m = 0; j < n; j++)
			if (!done[j] && strcmp(keys[j], keys[i]) == 0) {
				sub[m++] = entry_ids[j];
				done[j] = 1;
			}
		r = st_xtouch(s, "xclaim", keys[i], ST_G_WORKERS, consumer, sub, NULL,
		    STORE_LANE_NORMAL, m);
		if (r && (rc == 0 || r != STORE_ERR_UNAVAILABLE))
			rc = r;
	}
out:
	free(keys);
	free(sub);
	free(done);
	return rc;
}

unsigned
store_id_partition(const char *msg_id)
{
	return st_id_part(msg_id);
}

/* One entry to hand back (st_hand_back). */
struct st_back {
	const char *entry_id;
	enum store_lane lane;
	const char *project;    /* with lane, the entry's stream */
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
	char kmsg[ST_KEY_MAX], kstream[ST_KEY_MAX];
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
		unsigned part = st_id_part(b[i].msg_id);

		if (!st_id_ok(b[i].msg_id) || st_msg_key(s, kmsg, sizeof(kmsg), b[i].msg_id, NULL) ||
		    st_stream_key_in(s, part, kstream, sizeof(kstream), b[i].lane, b[i].project)) {
			rc = STORE_ERR_PROTO;
			goto out;
		}
		st_eval(&bt.a, s, SC_HAND_BACK, 3);
		st_adds(&bt.a, kmsg);
		st_adds(&bt.a, kstream);
		st_adds(&bt.a, st_pk(s, part, PK_DUE));
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

/* st_back_of - b describes the claimed delivery d (its own stream and attempt); -1 for none. */
static int
st_back_of(struct st_back *b, const struct store_delivery *d)
{
	if (!d || d->attempts <= 0)
		return -1;
	b->entry_id = d->entry_id;
	b->lane = d->lane;
	b->project = d->stream_project;
	b->msg_id = d->msg_id;
	b->idx = d->rcpt_idx;
	b->attempt = d->attempts;
	return 0;
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
		if (st_back_of(&b[i], h[i].d) != 0) {
			free(b);
			return STORE_ERR_PROTO;
		}
		b[i].counted = h[i].counted;
	}
	rc = st_hand_back(s, consumer, b, n, back);
	free(b);
	return rc;
}

uint64_t
store_take_parked(struct store *s)
{
	uint64_t n;

	if (s == NULL)
		return 0;
	n = s->claim_parked;
	s->claim_parked = 0;
	return n;
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
		if (p[i].until_ms <= 0 || st_back_of(&b[i], p[i].d) != 0) {
			free(b);
			return STORE_ERR_PROTO;
		}
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
		b[n].project = s->streams[s->carry[i].stream].project;
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
	char latency[ST_I64_LEN];
	char now[ST_I64_LEN];
	char fstatus[ST_RFIELD_MAX];
	char fattempts[ST_RFIELD_MAX];
	char fsmtp[ST_RFIELD_MAX];
	char fdfr[ST_RFIELD_MAX];
	char kstream[ST_KEY_MAX];   /* the entry's stream */
	char slot[ST_I64_LEN];      /* its place in the call's keys */
	char *supp_email;    /* suppress_reason set: the recipient, lower-cased */
	char *supp_value;    /* and "<now_ms>:<reason>" */
};

/* st_record_arg_fill - ra for res (validated by store_record); 0 or STORE_ERR_*. */
static int
st_record_arg_fill(const struct store *s, struct st_record_arg *ra, const struct store_result *res)
{
	const struct store_delivery *d = res->d;
	size_t ml = strlen(d->msg_id), i, rl;
	char num[ST_I64_LEN];

	if (st_msg_key(s, ra->kmsg, sizeof(ra->kmsg), d->msg_id, NULL) ||
	    st_msg_key(s, ra->ktl, sizeof(ra->ktl), d->msg_id, ":tl") ||
	    ml + 1 + ST_I64_LEN > sizeof(ra->member) ||
	    st_stream_key_in(s, st_id_part(d->msg_id), ra->kstream, sizeof(ra->kstream), d->lane,
	    d->stream_project))
		return STORE_ERR_PROTO;
	memcpy(ra->member, d->msg_id, ml);
	ra->member[ml] = '/';
	i = st_i64(num, d->rcpt_idx);
	memcpy(ra->member + ml + 1, num, i + 1);
	(void)st_i64(ra->next, res->next_ms > 0 ? res->next_ms : res->now_ms);
	(void)st_i64(ra->attempt, d->attempts);
	(void)st_i64(ra->latency, res->latency_ms > 0 ? res->latency_ms : 0);
	(void)st_i64(ra->now, res->now_ms);
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

static unsigned
st_result_part(const void *ctx, size_t i)
{
	const struct store_result *res = ctx;

	return st_id_part(res[i].d->msg_id);
}

int
store_record(struct store *s, struct store_result *res, size_t n)
{
	struct st_batch b;
	struct st_record_arg *ra = NULL;
	const char *skeys[ST_SCRIPT_BATCH];
	size_t i, c, nc, ns, k, *ord = NULL, *chunk = NULL;
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
	ra = calloc(n, sizeof(*ra));
	ord = malloc(n * sizeof(*ord));
	chunk = malloc((n + 1) * sizeof(*chunk));
	if (!ra || !ord || !chunk) {
		rc = STORE_ERR_NOMEM;
		goto out;
	}
	/* one call per ST_SCRIPT_BATCH outcomes of one partition */
	nc = st_part_chunks(n, st_result_part, res, ord, chunk);
	rc = st_batch_init(&b, nc, 9 + 20 * ST_SCRIPT_BATCH);
	for (i = 0; rc == 0 && i < n; i++)
		rc = st_record_arg_fill(s, &ra[i], &res[i]);
	if (rc)
		goto out;
	for (c = 0; c < nc; c++) {
		size_t lo = chunk[c], hi = chunk[c + 1];
		unsigned part = st_result_part(res, ord[lo]);

		ns = 0;
		for (k = lo; k < hi; k++)
			st_stream_slot(skeys, &ns, ra[ord[k]].kstream, ra[ord[k]].slot);
		st_eval(&b.a, s, SC_RECORD, (int)(3 + 2 * (hi - lo) + ns));
		st_adds(&b.a, st_pk(s, part, PK_DUE));
		st_adds(&b.a, st_pk(s, part, PK_EVENTS));
		st_adds(&b.a, st_pk(s, part, PK_SUPP));
		for (k = lo; k < hi; k++) {
			st_adds(&b.a, ra[ord[k]].kmsg);
			st_adds(&b.a, ra[ord[k]].ktl);
		}
		for (k = 0; k < ns; k++)
			st_adds(&b.a, skeys[k]);
		st_addi(&b.a, s->retention_ms);
		st_adds(&b.a, st_pk(s, part, PK_PREFIX));
		st_addi(&b.a, st_content_keep_ms(s));
		for (k = lo; k < hi; k++) {
			const struct st_record_arg *x = &ra[ord[k]];

			i = ord[k];

			st_adds(&b.a, res[i].d->entry_id);
			st_adds(&b.a, x->slot);
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
			st_adds(&b.a, x->latency);
			st_adds(&b.a, x->now);
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
		size_t lo = chunk[c], hi = chunk[c + 1];
		const redisReply *r = b.rep[c];

		if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != hi - lo) {
			rc = st_bad("record", r);
			continue;
		}
		for (k = lo; k < hi; k++) {
			i = ord[k];
			if (st_int(r->element[k - lo], &v) != 0) {
				rc = st_bad("record", r->element[k - lo]);
				continue;
			}
			/* 2: a first deferral; 1: a terminal state (or a later deferral) */
			res[i].counted = v == 2 || (v == 1 && strcmp(res[i].status, "deferred") != 0);
			if (v < 0)
				log_info("stale outcome ignored", "msg_id=%s rcpt_idx=%d rcpt=%s attempt=%d",
				    res[i].d->msg_id, res[i].d->rcpt_idx, res[i].d->rcpt, res[i].d->attempts);
			/* the script suppressed it in its partition's copy: the others too */
			if (v >= 1 && ra[i].supp_email && s->nparts > 1)
				st_supp_spread(s, st_id_part(res[i].d->msg_id), res[i].d->stream_project,
				    ra[i].supp_email, res[i].suppress_reason, res[i].now_ms);
		}
	}
out:
	st_batch_release(&b);
	free(chunk);
	free(ord);
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
	struct st_batch b;
	int64_t moved = 0, nx = 0, total = 0, first = 0;
	size_t i;
	unsigned p;
	int rc;

	if (next_ms)
		*next_ms = 0;
	if (!s || max <= 0)
		return STORE_ERR_PROTO;
	if (max > 100000)
		max = 100000;
	memset(&b, 0, sizeof(b));
	rc = st_connect(s);
	if (rc)
		return rc;
	/* every partition's due, max each, one round trip */
	rc = st_batch_init(&b, s->nparts, 12);
	for (p = 0; p < s->nparts && rc == 0; p++) {
		st_eval(&b.a, s, SC_PROMOTE, 5);
		st_adds(&b.a, st_pk(s, p, PK_DUE));
		st_adds(&b.a, st_pk(s, p, PK_READY));
		st_adds(&b.a, st_pk(s, p, PK_READY_HIGH));
		st_adds(&b.a, st_pk(s, p, PK_READY_PROJECTS));
		st_adds(&b.a, st_pk(s, p, PK_READY_HIGH_PROJECTS));
		st_addi(&b.a, now_ms);
		st_addi(&b.a, max);
		st_adds(&b.a, st_pk(s, p, PK_PREFIX));
		rc = st_batch_add(&b);
	}
	/* a partition whose primary is down is promoted again soon, the others now */
	if (rc == 0)
		rc = st_run_partial(s, b.cmds, b.n, b.rep);
	for (i = 0; i < b.n && rc == 0; i++) {
		const redisReply *r = b.rep[i];

		if (!r) {
			if (first == 0 || now_ms + ST_RECONNECT_MS < first)
				first = now_ms + ST_RECONNECT_MS;
			continue;
		}
		if (!st_is_array(r, 2) || st_int(r->element[0], &moved) != 0 ||
		    st_score(r->element[1], &nx) != 0 || moved < 0 || moved > max) {
			rc = st_bad("promote", r);
			break;
		}
		total += moved;
		if (nx > 0 && (first == 0 || nx < first))
			first = nx;
	}
	st_batch_release(&b);
	if (rc)
		return rc;
	if (next_ms)
		*next_ms = first;
	return total > INT32_MAX ? INT32_MAX : (int)total;
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
	/* the fixed commands, ZCARD due and XLEN events of each partition, then XLEN,
	 * XPENDING, XRANGE - + COUNT 1 of each ready stream */
	enum { Q_TIME = 0, Q_EPS = 1, Q_PARTS = 2 };
	struct st_batch b;
	int64_t len[2] = { 0, 0 }, first[2] = { 0, 0 }, now = 0;
	size_t i, q_n;
	unsigned p;
	int rc;

	memset(&b, 0, sizeof(b));
	if (!s || !out)
		return STORE_ERR_PROTO;
	memset(out, 0, sizeof(*out));
	rc = st_connect(s);
	if (rc)
		return rc;
	if (st_streams_refresh(s, 0) != 0 && s->nstreams == 0)
		return STORE_ERR_PROTO;
	q_n = Q_PARTS + 2 * (size_t)s->nparts;
	rc = st_batch_init(&b, q_n + 3 * s->nstreams, 6);
	if (rc)
		goto out;
	st_adds(&b.a, "TIME");
	rc = st_batch_add(&b);
	st_adds(&b.a, "ZRANGE");
	st_adds(&b.a, ST_K_WHEPS);
	st_adds(&b.a, "0");
	st_adds(&b.a, "999");
	rc = rc ? rc : st_batch_add(&b);
	for (p = 0; p < s->nparts && rc == 0; p++) {
		st_adds(&b.a, "ZCARD");
		st_adds(&b.a, st_pk(s, p, PK_DUE));
		rc = st_batch_add(&b);
		st_adds(&b.a, "XLEN");
		st_adds(&b.a, st_pk(s, p, PK_EVENTS));
		rc = rc ? rc : st_batch_add(&b);
	}
	for (i = 0; i < s->nstreams && rc == 0; i++) {
		const char *key = s->streams[i].key;

		st_adds(&b.a, "XLEN");
		st_adds(&b.a, key);
		rc = st_batch_add(&b);
		st_adds(&b.a, "XPENDING");
		st_adds(&b.a, key);
		st_adds(&b.a, ST_G_WORKERS);
		rc = rc ? rc : st_batch_add(&b);
		st_adds(&b.a, "XRANGE");
		st_adds(&b.a, key);
		st_adds(&b.a, "-");
		st_adds(&b.a, "+");
		st_adds(&b.a, "COUNT");
		st_adds(&b.a, "1");
		rc = rc ? rc : st_batch_add(&b);
	}
	if (rc == 0)
		rc = st_batch_run(s, &b);
	if (rc)
		goto out;
	for (i = Q_PARTS; i < q_n; i++) {
		const redisReply *r = b.rep[i];

		if (!r || r->type != REDIS_REPLY_INTEGER || r->integer < 0) {
			rc = st_bad("queue stats", r);
			goto out;
		}
		*((i - Q_PARTS) % 2 == 0 ? &out->due : &out->events) += r->integer;
	}
	if (st_time_ms(b.rep[Q_TIME], &now) != 0) {
		rc = st_bad("queue stats: time", b.rep[Q_TIME]);
		goto out;
	}
	/* per lane: the sums over its streams, the oldest entry of any */
	for (i = 0; i < s->nstreams; i++) {
		const redisReply *xl = b.rep[q_n + 3 * i], *xp = b.rep[q_n + 3 * i + 1];
		enum store_lane l = s->streams[i].lane;
		int64_t f = 0;

		if (!xl || xl->type != REDIS_REPLY_INTEGER || xl->integer < 0) {
			rc = st_bad("queue stats", xl);
			goto out;
		}
		len[l] += xl->integer;
		/* XPENDING summary: [count, min id, max id, consumers]; no group yet: nothing pending */
		if (st_is_array(xp, 1))
			xp = xp->element[0];
		if (!st_is_error(xp, "NOGROUP")) {
			if (!xp || xp->type != REDIS_REPLY_INTEGER || xp->integer < 0) {
				rc = st_bad("queue stats", b.rep[q_n + 3 * i + 1]);
				goto out;
			}
			out->claimed[l] += xp->integer;
		}
		if (st_stream_first_ms(b.rep[q_n + 3 * i + 2], &f) != 0) {
			rc = st_bad("queue stats: oldest", b.rep[q_n + 3 * i + 2]);
			goto out;
		}
		if (f > 0 && (first[l] == 0 || f < first[l]))
			first[l] = f;
	}
	for (i = 0; i < 2; i++) {
		/* claimed and recorded entries are deleted (XACK + XDEL): the rest wait for a worker */
		out->ready[i] = len[i] > out->claimed[i] ? len[i] - out->claimed[i] : 0;
		out->oldest_ms[i] = first[i] > 0 && now > first[i] ? now - first[i] : 0;
	}
	rc = st_wh_backlogs(s, b.rep[Q_EPS], out);
out:
	st_batch_release(&b);
	return rc;
}
