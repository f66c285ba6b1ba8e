/*
 * store_messages.c - a message's life outside delivery: accepting (one
 * enqueue script per message writes the message hash, its recipients, its
 * timeline, the idempotency key and the ready or due entries; the accept
 * pipe's sends are written together by store_enqueue_ops, each its own
 * call and outcome; store_enqueue_checked also has the script look up each
 * recipient in the suppression list and store nothing when one is listed;
 * an enqueue whose reply is lost is settled before returning, see
 * st_enqueue_settle),
 * reading (store_get_message: the view script, parsed into a
 * struct store_message_view), cancel and bounce (one script each, applied
 * only to recipients still in a state that allows it).
 *
 * It must never trust a caller's message blindly (ids, counts and statuses
 * are checked before anything is sent) and never decide what a bounce
 * means for policy: bounce.c classifies, this applies.
 */
#include "store_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "util.h"

/* --- accepting ----------------------------------------------------------- */

#define ST_MAX_MSGS 1000        /* messages per enqueue batch; the API allows 500 */
#define ST_IDEM_TTL_MS (24LL * 3600 * 1000)
#define ST_ABANDON_TTL_MS (24LL * 3600 * 1000)

/* st_rcpt_status_ok - NULL/"queued"/"scheduled" (the default) or "suppressed". */
static int
st_rcpt_status_ok(const char *st)
{
	return !st || strcmp(st, "queued") == 0 || strcmp(st, "scheduled") == 0 ||
	    strcmp(st, "suppressed") == 0;
}

static int
st_message_ok(const struct store_message_in *m)
{
	size_t i;

	if (!st_id_ok(m->id) || m->nrcpts == 0 || m->nrcpts > ST_MAX_RCPTS || !m->rcpts ||
	    (!m->mime && m->mime_len))
		return 0;
	for (i = 0; i < m->nrcpts; i++)
		if (!m->rcpts[i].email || !st_rcpt_status_ok(m->rcpts[i].status))
			return 0;
	return 1;
}

/* Numbers and keys of one message as strings (the argument vector only points). */
struct st_msg_nums {
	char created[ST_I64_LEN], expires[ST_I64_LEN], send_at[ST_I64_LEN], n[ST_I64_LEN];
	char pending[ST_I64_LEN], nh[ST_I64_LEN], nt[ST_I64_LEN], ne[ST_I64_LEN], nl[ST_I64_LEN];
	char kmsg[ST_KEY_MAX], ktl[ST_KEY_MAX], kmime[ST_KEY_MAX];
};

/* The recipient fields of the message hash, "r<i>:<name>" (enqueue.lua, get_message). */
static const char *const st_rcpt_fields[] = { "email", "kind", "status", "attempts", "smtp" };
#define ST_RCPT_FIELDS (sizeof(st_rcpt_fields) / sizeof(st_rcpt_fields[0]))

/* The strings of one recipient's arguments, made in C so the script concatenates nothing. */
struct st_rcpt_strs {
	char field[ST_RCPT_FIELDS][ST_RFIELD_MAX];   /* "r<i>:email", ... (st_rfield) */
	char idx[ST_I64_LEN];                      /* its ready entry's "r": i */
	char dnum[ST_I64_LEN];                     /* its domain's number in the call's domains (1-based) */
	char member[ST_MAX_ID + 2 + ST_I64_LEN];   /* its due member "<id>/<i>" (scheduled) */
};

/* st_rcpt_sup - 1 when the caller gives the recipient as suppressed (terminal at once). */
static int
st_rcpt_sup(const struct store_rcpt_in *x)
{
	return x->status && strcmp(x->status, "suppressed") == 0;
}

/* st_rcpt_strs_fill - the strings of recipient i of message id. */
static void
st_rcpt_strs_fill(struct st_rcpt_strs *r, const char *id, size_t i)
{
	size_t k, n = st_i64(r->idx, (int64_t)i), idl = strlen(id);

	for (k = 0; k < ST_RCPT_FIELDS; k++)
		st_rfield(r->field[k], (int)i, st_rcpt_fields[k]);
	memcpy(r->member, id, idl);   /* st_message_ok: idl <= ST_MAX_ID */
	r->member[idl] = '/';
	memcpy(r->member + idl + 1, r->idx, n + 1);
}

/* st_check_ok - every recipient that will be looked up has its lower-cased address. */
static int
st_check_ok(const struct store_message_in *m)
{
	size_t i;

	for (i = 0; i < m->nrcpts; i++) {
		const struct store_rcpt_in *x = &m->rcpts[i];

		if (!x->lower && !(x->status && strcmp(x->status, "suppressed") == 0))
			return 0;
	}
	return 1;
}

/*
 * st_enqueue_flags - the {4, "0110..."} reply, one flag per looked-up address
 * (nq: every recipient not given as suppressed, in order), into flags[] of
 * every recipient of the batch; 0 or -1 (wrong shape).
 */
static int
st_enqueue_flags(const redisReply *f, const struct store_message_in *m, size_t n, size_t nq,
    int *flags)
{
	size_t i, j, k = 0, q = 0;

	if (f->len != nq)
		return -1;
	for (i = 0; i < n; i++) {
		for (j = 0; j < m[i].nrcpts; j++, k++) {
			if (st_rcpt_sup(&m[i].rcpts[j]))
				continue;
			if (f->str[q] != '0' && f->str[q] != '1')
				return -1;
			flags[k] = f->str[q++] == '1';
		}
	}
	return 0;
}

/*
 * st_enqueue_settle - the enqueue script of the batch whose first message
 * is id (key kmsg) was sent but not answered (timeout or a broken
 * connection; the connection is gone). It may have run, may still run
 * (queued in a stalled Redis or in a socket buffer), or never arrive. One
 * reconnect and abandon.lua decide it for good: msg:<id> exists (0: the
 * batch is stored, the caller answers as if the reply had come), or the
 * abandoned mark is set, which enqueue.lua checks first, so the late copy
 * stores nothing (STORE_ERR_UNAVAILABLE: certainly not stored). Scripts run
 * one at a time, so there is no order in between. Redis unreachable for
 * this too: STORE_ERR_OUTCOME_UNKNOWN. A mark is tiny and only written
 * after a lost reply; it expires after ST_ABANDON_TTL_MS.
 *
 * A deadline in ARGV (the script comparing Redis TIME) was the other way:
 * it needs no key, but trusts clocks - the Redis host's against this one's,
 * and not stepping back - which this does not.
 */
static int
st_enqueue_settle(struct store *s, const char *id, const char *kmsg, size_t n)
{
	char kab[ST_KEY_MAX];
	struct st_args a;
	long long v = -1;
	int64_t t0 = util_mono_ms();
	char took[32];
	int rc;

	if (st_key(kab, sizeof(kab), st_pk(s, st_id_part(id), PK_ABANDONED), id, NULL))
		return STORE_ERR_OUTCOME_UNKNOWN;
	rc = st_eval_begin(s, &a, 8, SC_ABANDON, 2);
	if (rc == 0) {
		st_adds(&a, kmsg);
		st_adds(&a, kab);
		st_addi(&a, ST_ABANDON_TTL_MS);
		rc = st_eval_int(s, &a, "abandon", 0, &v);
	}
	util_fmt_duration((double)(util_mono_ms() - t0) / 1000.0, took, sizeof(took));
	if (rc == 0 && v == 1) {
		log_info("enqueue reply lost, the batch is stored", "msg_id=%s messages=%zu took=%s",
		    id, n, took);
		return 0;
	}
	if (rc == 0 && v == 0) {
		log_info("enqueue reply lost, settled as not stored", "msg_id=%s messages=%zu took=%s",
		    id, n, took);
		return STORE_ERR_UNAVAILABLE;
	}
	if (rc == 0) {
		log_error("unexpected redis reply", "op=abandon value=%lld", v);
		rc = STORE_ERR_PROTO;
	}
	log_warn("enqueue outcome unknown, redis cannot be asked", "msg_id=%s messages=%zu took=%s error=%s",
	    id, n, took, store_strerror(rc));
	return STORE_ERR_OUTCOME_UNKNOWN;
}

/*
 * st_enqueue_msg_args - the arguments of message x (enqueue.lua: nh nt ne nl
 * mode id mime, the values of the hash's own fields, the recipients' fields
 * and values, the timeline, the outbox events, the ready or due arguments),
 * with its strings in u and rs (one per recipient).
 */
static void
st_enqueue_msg_args(struct st_args *a, const struct store_message_in *x, struct st_msg_nums *u,
    struct st_rcpt_strs *rs)
{
	int sched = x->send_at_ms > 0;
	const char *st0 = sched ? "scheduled" : "queued";
	size_t j, live = 0, nt = 0, ne = 0;
	int has_tl = x->timeline_json && *x->timeline_json;

	for (j = 0; j < x->nrcpts; j++) {
		const struct store_rcpt_in *r = &x->rcpts[j];

		if (!st_rcpt_sup(r)) {
			live++;
			continue;
		}
		nt += r->timeline_json && *r->timeline_json;
		ne += r->event_json && *r->event_json;
	}
	nt += has_tl;
	st_i64(u->pending, (int64_t)live);
	st_i64(u->nh, (int64_t)(2 * ST_RCPT_FIELDS * x->nrcpts));
	st_i64(u->nt, (int64_t)nt);
	st_i64(u->ne, (int64_t)ne);
	st_i64(u->nl, (int64_t)(2 * live));
	st_adds(a, u->nh);
	st_adds(a, u->nt);
	st_adds(a, u->ne);
	st_adds(a, u->nl);
	st_adds(a, sched ? "s" : x->lane == STORE_LANE_HIGH ? "h" : "n");
	st_adds(a, x->id);
	st_add(a, x->mime, x->mime_len);
	/* the values of the hash's own fields (the script names them), then 5 pairs per recipient */
	st_adds(a, u->created);
	st_adds(a, u->expires);
	st_adds(a, u->send_at);
	st_adds(a, x->from);
	st_adds(a, x->mail_from);
	st_adds(a, x->subject);
	st_adds(a, x->metadata_json ? x->metadata_json : "{}");
	st_adds(a, x->tags_json ? x->tags_json : "[]");
	st_adds(a, x->tenant);
	st_adds(a, u->n);
	st_adds(a, x->lane == STORE_LANE_HIGH ? "high" : "normal");
	st_adds(a, u->pending);
	for (j = 0; j < x->nrcpts; j++) {
		const struct store_rcpt_in *r = &x->rcpts[j];

		st_rcpt_strs_fill(&rs[j], x->id, j);
		st_adds(a, rs[j].field[0]);
		st_adds(a, r->email);
		st_adds(a, rs[j].field[1]);
		st_adds(a, r->kind ? r->kind : "to");
		st_adds(a, rs[j].field[2]);
		st_adds(a, st_rcpt_sup(r) ? "suppressed" : st0);
		st_adds(a, rs[j].field[3]);
		st_adds(a, "0");
		st_adds(a, rs[j].field[4]);
		st_adds(a, "");
	}
	/* the timeline: the message's entry first, then each suppressed recipient's */
	if (has_tl)
		st_adds(a, x->timeline_json);
	for (j = 0; j < x->nrcpts; j++)
		if (st_rcpt_sup(&x->rcpts[j]) && x->rcpts[j].timeline_json && *x->rcpts[j].timeline_json)
			st_adds(a, x->rcpts[j].timeline_json);
	for (j = 0; j < x->nrcpts; j++)
		if (st_rcpt_sup(&x->rcpts[j]) && x->rcpts[j].event_json && *x->rcpts[j].event_json)
			st_adds(a, x->rcpts[j].event_json);
	for (j = 0; j < x->nrcpts; j++) {
		if (st_rcpt_sup(&x->rcpts[j]))
			continue;
		if (sched) {
			st_adds(a, u->send_at);
			st_adds(a, rs[j].member);
		} else {
			st_adds(a, rs[j].idx);
			st_adds(a, rs[j].dnum);
		}
	}
}

/* The recipient domains of an enqueue call (enqueue.lua's nd), lower-cased, in buf. */
struct st_domains {
	char *buf;                 /* every domain, NUL-terminated, one after the other */
	const char **d;            /* d[0..n) point into buf */
	size_t n;
};

#define ST_DOMAINS_DEDUP 32    /* a domain is looked for among the first 32 only (bounded work) */

/*
 * st_domains_make - the domains of m[0..n)'s live recipients that go to a
 * ready stream (not scheduled, not suppressed), each recipient's number
 * set in rs[].dnum. Repeats are found among the first ST_DOMAINS_DEDUP
 * distinct ones (a repeat past them is listed again: harmless). 0 or
 * STORE_ERR_NOMEM.
 */
static int
st_domains_make(struct st_domains *ds, const struct store_message_in *m, size_t n,
    struct st_rcpt_strs *rs)
{
	size_t i, j, k, off, total = 0, bytes = 0;
	char *p;

	for (i = 0; i < n; i++)
		for (j = 0; j < m[i].nrcpts; j++) {
			total++;
			bytes += strlen(m[i].rcpts[j].email) + 1;
		}
	ds->n = 0;
	ds->buf = malloc(bytes + 1);
	ds->d = malloc((total + 1) * sizeof(*ds->d));
	if (ds->buf == NULL || ds->d == NULL)
		return STORE_ERR_NOMEM;
	p = ds->buf;
	for (i = 0, off = 0; i < n; off += m[i].nrcpts, i++) {
		if (m[i].send_at_ms > 0)
			continue;
		for (j = 0; j < m[i].nrcpts; j++) {
			const struct store_rcpt_in *r = &m[i].rcpts[j];
			const char *e = r->lower != NULL ? r->lower : r->email, *at = strrchr(e, '@');
			char *dom = p;

			if (st_rcpt_sup(r))
				continue;
			for (at = at != NULL ? at + 1 : e; *at != '\0'; at++)
				*p++ = (*at >= 'A' && *at <= 'Z') ? (char)(*at - 'A' + 'a') : *at;
			*p++ = '\0';
			for (k = 0; k < ds->n && k < ST_DOMAINS_DEDUP; k++)
				if (strcmp(ds->d[k], dom) == 0)
					break;
			if (k < ds->n && k < ST_DOMAINS_DEDUP) {
				p = dom;   /* known: its copy is dropped */
			} else {
				k = ds->n;
				ds->d[ds->n++] = dom;
			}
			st_i64(rs[off + j].dnum, (int64_t)(k + 1));
		}
	}
	return 0;
}

/* What st_enq_build knows about an op that reading its reply needs. */
struct st_enq_aux {
	size_t total;              /* recipients of the batch */
	size_t nq;                 /* of them, looked up in the suppression list */
	char kmsg[ST_KEY_MAX];     /* msg:<first id>, for st_enqueue_settle */
	int sent;                  /* its command is in cmds[] */
};

/*
 * st_enq_build - check op and format its enqueue script call into cmd
 * (malloc'd; NULL on failure); nothing is sent. 0 or STORE_ERR_PROTO (an
 * invalid call: logged) / STORE_ERR_NOMEM.
 */
static int
st_enq_build(const struct store *s, const struct store_enqueue_op *op, struct st_enq_aux *x,
    struct st_cmd *cmd)
{
	struct st_args args, *a = &args;
	const struct store_message_in *m = op->m;
	const struct store_idem *idem = op->idem;
	const int *flags = op->flags;
	size_t n = op->n, i, j, nargs, off;
	struct st_msg_nums *nums = NULL;
	struct st_rcpt_strs *rstrs = NULL;
	char kidem[ST_KEY_MAX + 64], pp[ST_KEY_MAX], ksupp[ST_KEY_MAX], kab[ST_KEY_MAX];
	char nqs[ST_I64_LEN], nds[ST_I64_LEN];
	const char *project = st_project_name(m && n ? m[0].project : NULL);
	unsigned part = m && n ? st_id_part(m[0].id) : 0;
	struct st_domains doms = { 0 };
	int rc;

	memset(&args, 0, sizeof(args));
	cmd->buf = NULL;
	x->total = x->nq = 0;
	if (!m || n == 0 || n > ST_MAX_MSGS) {
		log_error("enqueue called with invalid arguments");
		return STORE_ERR_PROTO;
	}
	if (idem && (!idem->key || !*idem->key || strlen(idem->key) > 200 || !idem->request_hash ||
	    !idem->response)) {
		log_error("enqueue called with an invalid idempotency record");
		return STORE_ERR_PROTO;
	}
	if (st_project_prefix_in(s, part, pp, sizeof(pp), project) ||
	    st_key(ksupp, sizeof(ksupp), pp, "supp", NULL)) {
		log_error("enqueue called with an invalid project");
		return STORE_ERR_PROTO;
	}
	nargs = 4 + 7 + 11;
	for (i = 0; i < n; i++) {
		/* one batch, one project: its suppression list is the one looked at */
		/* and one partition: one script on one slot */
		if (!st_message_ok(&m[i]) || (flags && !st_check_ok(&m[i])) ||
		    strcmp(st_project_name(m[i].project), project) != 0 || st_id_part(m[i].id) != part) {
			log_error("enqueue called with an invalid message", "msg_id=%.64s index=%zu",
			    m[i].id != NULL ? m[i].id : "", i);
			return STORE_ERR_PROTO;
		}
		/* 3 keys, 19 + 1 arguments, per recipient at most 10 hash, 1 lookup, 1 domain, 2 + 2 */
		nargs += 3 + 19 + 1 + 16 * m[i].nrcpts;
		x->total += m[i].nrcpts;
		for (j = 0; flags && j < m[i].nrcpts; j++)
			x->nq += !st_rcpt_sup(&m[i].rcpts[j]);
	}
	if (st_key(kidem, sizeof(kidem), st_pk(s, part, PK_PREFIX), "idem:", idem ? idem->key : "-") ||
	    st_key(kab, sizeof(kab), st_pk(s, part, PK_ABANDONED), m[0].id, NULL))
		return STORE_ERR_PROTO;
	nums = calloc(n, sizeof(*nums));
	rstrs = calloc(x->total, sizeof(*rstrs));
	if (!nums || !rstrs) {
		rc = STORE_ERR_NOMEM;
		goto out;
	}
	for (i = 0; i < n; i++) {
		struct st_msg_nums *u = &nums[i];

		if (st_msg_key(s, u->kmsg, sizeof(u->kmsg), m[i].id, NULL) ||
		    st_msg_key(s, u->ktl, sizeof(u->ktl), m[i].id, ":tl") ||
		    st_msg_key(s, u->kmime, sizeof(u->kmime), m[i].id, ":mime")) {
			rc = STORE_ERR_PROTO;
			goto out;
		}
		st_i64(u->created, m[i].created_ms);
		st_i64(u->expires, m[i].expires_ms);
		st_i64(u->send_at, m[i].send_at_ms > 0 ? m[i].send_at_ms : (int64_t)0);
		st_i64(u->n, (int64_t)m[i].nrcpts);
	}
	memcpy(x->kmsg, nums[0].kmsg, sizeof(x->kmsg));
	st_i64(nqs, (int64_t)x->nq);
	rc = st_domains_make(&doms, m, n, rstrs);
	if (rc)
		goto out;
	st_i64(nds, (int64_t)doms.n);
	rc = st_args_init(a, nargs);
	if (rc)
		goto out;
	st_eval(a, s, SC_ENQUEUE, (int)(8 + 3 * n));
	st_adds(a, st_pk(s, part, PK_READY));
	st_adds(a, st_pk(s, part, PK_DUE));
	st_adds(a, st_pk(s, part, PK_EVENTS));
	st_adds(a, kidem);
	st_adds(a, ksupp);
	st_adds(a, st_pk(s, part, PK_READY_HIGH));
	for (i = 0; i < n; i++)
		st_adds(a, nums[i].kmsg);
	for (i = 0; i < n; i++)
		st_adds(a, nums[i].ktl);
	for (i = 0; i < n; i++)
		st_adds(a, nums[i].kmime);
	st_adds(a, st_pk(s, part, PK_SAT));
	st_adds(a, kab);
	st_adds(a, idem ? "1" : "0");
	st_adds(a, idem ? idem->request_hash : "");
	st_adds(a, idem ? idem->response : "");
	st_addi(a, idem && idem->ttl_ms > 0 ? idem->ttl_ms : ST_IDEM_TTL_MS);
	st_addi(a, s->retention_ms);
	st_addi(a, (int64_t)n);
	st_adds(a, flags ? "1" : "0");
	st_adds(a, project);
	st_addi(a, st_content_keep_ms(s));
	st_adds(a, nqs);
	for (i = 0; flags && i < n; i++)
		for (j = 0; j < m[i].nrcpts; j++)
			if (!st_rcpt_sup(&m[i].rcpts[j]))
				st_adds(a, m[i].rcpts[j].lower);
	st_adds(a, nds);
	for (i = 0; i < doms.n; i++)
		st_adds(a, doms.d[i]);
	for (i = 0, off = 0; i < n; off += m[i].nrcpts, i++)
		st_enqueue_msg_args(a, &m[i], &nums[i], &rstrs[off]);
	rc = st_format(a, cmd);   /* the arguments point into this frame, nums, rstrs and doms */
out:
	st_args_release(a);
	free(doms.buf);
	free(doms.d);
	free(rstrs);
	free(nums);
	return rc;
}

/* st_enq_reply - what the enqueue script's reply r means for op (op->replay set on a replay). */
static int
st_enq_reply(struct store_enqueue_op *op, const struct st_enq_aux *x, const redisReply *r)
{
	const struct store_message_in *m = op->m;
	int64_t v;
	int rc = 0;

	if (!st_is_array(r, 2) || st_int(r->element[0], &v) != 0 || !st_is_str(r->element[1]))
		return st_bad("enqueue", r);
	switch (v) {
	case 1:
		break;
	case 2:
		op->replay = st_dup(r->element[1]);
		if (!op->replay)
			rc = STORE_ERR_NOMEM;
		break;
	case 0:
		{
			long long at = strtoll(r->element[1]->str, NULL, 10);

			log_warn("enqueue refused, message id exists", "msg_id=%.64s index=%lld",
			    at >= 0 && (size_t)at < op->n ? m[at].id : "", at);
		}
		rc = STORE_ERR_CONFLICT;
		break;
	case 3:
		rc = STORE_ERR_CONFLICT;
		break;
	case 5:
		/* only a late copy of a settled call meets its mark; never a live one */
		log_error("enqueue refused, the message id was abandoned", "msg_id=%.64s", m[0].id);
		rc = STORE_ERR_UNAVAILABLE;
		break;
	case 4:
		if (!op->flags || st_enqueue_flags(r->element[1], m, op->n, x->nq, op->flags) != 0) {
			rc = st_bad("enqueue suppressed", r);
			if (op->flags)
				memset(op->flags, 0, x->total * sizeof(*op->flags));
			break;
		}
		rc = STORE_ERR_SUPPRESSED;
		break;
	default:
		rc = st_bad("enqueue result", r);
	}
	return rc;
}

/*
 * st_enqueue_replicated - with TXMAIL_REDIS_MIN_REPLICAS, the ops about to
 * be answered 202 (stored, or replayed: the first answer's write may still
 * be on the primary alone) wait for the replicas; when they do not confirm,
 * STORE_ERR_UNREPLICATED: stored on the primary, but a failover now could
 * undo it, so the client is not told it is accepted (504, retry with the
 * same Idempotency-Key).
 */
static void
st_enqueue_replicated(struct store *s, struct store_enqueue_op *const *ops, size_t n)
{
	unsigned char parts[ST_MAX_PARTS];
	size_t i, ok = 0;

	memset(parts, 0, sizeof(parts));
	for (i = 0; i < n; i++)
		if (ops[i]->rc == 0) {
			ok++;
			parts[st_id_part(ops[i]->m[0].id) % ST_MAX_PARTS] = 1;
		}
	/* the messages' partitions (on a Cluster: their nodes); st_wait_parts logs the first
	 * shortfall, the caller each request */
	if (ok == 0 || st_wait_parts(s, parts) == 0)
		return;
	for (i = 0; i < n; i++) {
		if (ops[i]->rc != 0)
			continue;
		ops[i]->rc = STORE_ERR_UNREPLICATED;
		free(ops[i]->replay);
		ops[i]->replay = NULL;
	}
}

void
store_enqueue_ops(struct store *s, struct store_enqueue_op *const *ops, size_t n)
{
	struct st_enq_aux *aux = NULL;
	struct st_cmd *cmds = NULL;
	redisReply **rep = NULL;
	size_t i, j, k = 0;
	int rc, sent = 0;

	for (i = 0; i < n; i++) {
		ops[i]->rc = STORE_ERR_NOMEM;
		ops[i]->replay = NULL;
	}
	if (!s) {
		for (i = 0; i < n; i++)
			ops[i]->rc = STORE_ERR_PROTO;
		return;
	}
	aux = calloc(n, sizeof(*aux));
	cmds = calloc(n, sizeof(*cmds));
	rep = calloc(n, sizeof(*rep));
	if (!aux || !cmds || !rep)
		goto out;
	for (i = 0; i < n; i++) {
		struct store_enqueue_op *op = ops[i];

		rc = st_enq_build(s, op, &aux[i], &cmds[k]);
		if (op->flags && aux[i].total > 0)
			memset(op->flags, 0, aux[i].total * sizeof(*op->flags));
		op->rc = rc;
		if (rc == 0) {
			aux[i].sent = 1;
			k++;
		}
	}
	if (k == 0)
		goto out;
	/*
	 * Up to the write a failure means nothing was sent (st_connect fails
	 * fast): certainly not stored. After it, a run that failed (no reply,
	 * or the NOSCRIPT reload failing after some of the batch had run)
	 * leaves each op's outcome open: settle each. A reply refusing a
	 * script (BUSY, LOADING, ...: st_bad) means it did not run.
	 */
	rc = st_connect(s);
	if (rc == 0) {
		sent = 1;
		rc = st_run(s, cmds, k, rep);
	}
	for (i = 0, j = 0; i < n; i++) {
		struct store_enqueue_op *op = ops[i];

		if (!aux[i].sent)
			continue;
		if (rc != 0 && sent)
			op->rc = st_enqueue_settle(s, op->m[0].id, aux[i].kmsg, op->n);
		else
			op->rc = rc ? rc : st_enq_reply(op, &aux[i], rep[j]);
		j++;
	}
	st_enqueue_replicated(s, ops, n);
out:
	for (i = 0; rep && i < k; i++)
		if (rep[i])
			freeReplyObject(rep[i]);
	for (i = 0; cmds && i < k; i++)
		redisFreeCommand(cmds[i].buf);
	free(rep);
	free(cmds);
	free(aux);
}

/* st_enqueue_one - one op of store_enqueue_ops: store_enqueue_batch (flags NULL) or _checked. */
static int
st_enqueue_one(struct store *s, const struct store_message_in *m, size_t n,
    const struct store_idem *idem, char **replay, int *flags)
{
	struct store_enqueue_op op = { .m = m, .n = n, .idem = idem, .flags = flags };
	struct store_enqueue_op *p = &op;

	if (replay)
		*replay = NULL;
	if (idem && !replay) {
		log_error("enqueue called with invalid arguments");
		return STORE_ERR_PROTO;
	}
	store_enqueue_ops(s, &p, 1);
	if (replay)
		*replay = op.replay;
	else
		free(op.replay);
	return op.rc;
}

int
store_enqueue_batch(struct store *s, const struct store_message_in *m, size_t n,
    const struct store_idem *idem, char **replay)
{
	return st_enqueue_one(s, m, n, idem, replay, NULL);
}

int
store_enqueue_checked(struct store *s, const struct store_message_in *m, size_t n,
    const struct store_idem *idem, char **replay, int *flags)
{
	if (!flags) {
		if (replay)
			*replay = NULL;
		log_error("enqueue called with invalid arguments");
		return STORE_ERR_PROTO;
	}
	return st_enqueue_one(s, m, n, idem, replay, flags);
}

int
store_enqueue(struct store *s, const struct store_message_in *m)
{
	return store_enqueue_batch(s, m, 1, NULL, NULL);
}

/* --- reading ------------------------------------------------------------- */


/* a message hash's own fields (HGETALL); the rest are "r<i>:<name>" and prio */
static const struct st_col st_view_cols[] = {
	{ ST_COL_STR, 1, offsetof(struct store_message_view, id), 0, 0, "id" },
	{ ST_COL_STR, 1, offsetof(struct store_message_view, from), 0, 0, "from" },
	{ ST_COL_STR, 1, offsetof(struct store_message_view, subject), 0, 0, "subject" },
	{ ST_COL_STR, 1, offsetof(struct store_message_view, metadata_json), 0, 0, "metadata" },
	{ ST_COL_STR, 1, offsetof(struct store_message_view, tags_json), 0, 0, "tags" },
	{ ST_COL_I64, 1, offsetof(struct store_message_view, created_ms), 0, 0, "created" },
	{ ST_COL_I64, 1, offsetof(struct store_message_view, send_at_ms), 0, 0, "send_at" },
	{ ST_COL_STR, 1, offsetof(struct store_message_view, project), 0, STORE_PROJECT_MAX, "project" },
	{ ST_COL_INT, 1, offsetof(struct store_message_view, content_stored), 0, 0, "content" },
};
static const struct st_table st_view_table = {
	"get_message: field", st_view_cols, sizeof(st_view_cols) / sizeof(st_view_cols[0]),
	sizeof(struct store_message_view), 0, 1,
};

/* a recipient's fields "r<i>:<name>" (smtp stays NULL while empty) */
static const struct st_col st_rcpt_view_cols[] = {
	{ ST_COL_STR, 1, offsetof(struct store_rcpt_view, email), 0, 0, "email" },
	{ ST_COL_STR, 1, offsetof(struct store_rcpt_view, kind), 0, 0, "kind" },
	{ ST_COL_STR, 1, offsetof(struct store_rcpt_view, status), 0, 0, "status" },
	{ ST_COL_STR, 1, offsetof(struct store_rcpt_view, smtp_json), 0, 0, "smtp" },
	{ ST_COL_INT, 1, offsetof(struct store_rcpt_view, attempts), 0, 0, "attempts" },
	{ ST_COL_I64, 1, offsetof(struct store_rcpt_view, latency_ms), 0, 0, "lat" },
	{ ST_COL_I64, 1, offsetof(struct store_rcpt_view, delivered_ms), 0, 0, "dat" },
	{ ST_COL_I64, 1, offsetof(struct store_rcpt_view, next_attempt_ms), 0, 0, "nxt" },
};
static const struct st_table st_rcpt_view_table = {
	"get_message: recipient", st_rcpt_view_cols,
	sizeof(st_rcpt_view_cols) / sizeof(st_rcpt_view_cols[0]),
	sizeof(struct store_rcpt_view), 0, 1,
};

/* the timeline (LRANGE): one column of JSON strings */
static const struct st_col st_tl_cols[] = {
	{ ST_COL_STRV, 0, offsetof(struct store_message_view, timeline_json),
	  offsetof(struct store_message_view, ntimeline), ST_MAX_TIMELINE, NULL },
};
static const struct st_table st_tl_table = {
	"get_message: timeline", st_tl_cols, 1, sizeof(struct store_message_view), 0, 1,
};

void
store_message_view_free(struct store_message_view *v)
{
	size_t i;

	if (!v)
		return;
	st_row_clear(&st_view_table, v);
	for (i = 0; v->rcpts && i < v->nrcpts; i++)
		st_row_clear(&st_rcpt_view_table, &v->rcpts[i]);
	free(v->rcpts);
	st_row_clear(&st_tl_table, v);
	memset(v, 0, sizeof(*v));
}

/* st_view_rcpt_field - "r<i>:<name>" into the recipient array. */
static int
st_view_rcpt_field(struct store_message_view *v, const redisReply *f, const redisReply *val)
{
	const char *p = f->str + 1, *end = f->str + f->len, *colon;
	int64_t idx;

	colon = memchr(p, ':', (size_t)(end - p));
	if (!colon || st_parse_i64(p, (size_t)(colon - p), &idx) != 0 || idx < 0 ||
	    (uint64_t)idx >= v->nrcpts)
		return 0;   /* not ours: ignore */
	if (val->len == 0 && (size_t)(end - colon - 1) == 4 && memcmp(colon + 1, "smtp", 4) == 0)
		return 0;
	return st_field_read(&st_rcpt_view_table, colon + 1, (size_t)(end - colon - 1), val,
	    &v->rcpts[idx]);
}

static int
st_fill_missing(char **p, const char *dflt)
{
	if (*p)
		return 0;
	*p = st_dupn(dflt, strlen(dflt));
	return *p ? 0 : STORE_ERR_NOMEM;
}

/*
 * st_view_tl_folded - a finished message's timeline, folded into the hash's
 * "tl" field by lib/content.lua (entries joined by "\n"), into
 * v->timeline_json: at most ST_MAX_TIMELINE entries, empty ones skipped.
 */
static int
st_view_tl_folded(const redisReply *val, struct store_message_view *v)
{
	const char *p = val->str, *end = val->str + val->len;
	size_t cap = 1, k = 0;

	for (const char *q = p; q < end; q++)
		cap += *q == '\n';
	if (cap > ST_MAX_TIMELINE)
		cap = ST_MAX_TIMELINE;
	v->timeline_json = calloc(cap, sizeof(*v->timeline_json));
	if (!v->timeline_json)
		return STORE_ERR_NOMEM;
	while (p < end && k < cap) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t len = (size_t)((nl ? nl : end) - p);

		if (len > 0) {
			v->timeline_json[k] = st_dupn(p, len);
			if (!v->timeline_json[k])
				return STORE_ERR_NOMEM;
			v->ntimeline = ++k;
		}
		p += len + 1;
	}
	return 0;
}

static int
st_build_view(const redisReply *h, const redisReply *tl, const char *id,
    struct store_message_view *v)
{
	const redisReply *folded = NULL;
	size_t i;
	int64_t n = -1;
	int rc = 0;

	/* First pass: the recipient count. */
	for (i = 0; i + 1 < h->elements; i += 2)
		if (st_is_str(h->element[i]) && st_field_is(h->element[i], "n")) {
			if (st_int(h->element[i + 1], &n) != 0)
				n = -1;
		}
	if (n < 0 || n > ST_MAX_RCPTS)
		return st_bad("get_message: bad n", h);
	v->nrcpts = (size_t)n;
	if (n > 0) {
		v->rcpts = calloc((size_t)n, sizeof(*v->rcpts));
		if (!v->rcpts)
			return STORE_ERR_NOMEM;
		for (i = 0; i < (size_t)n; i++)
			v->rcpts[i].latency_ms = -1;
	}
	for (i = 0; i + 1 < h->elements && rc == 0; i += 2) {
		const redisReply *f = h->element[i], *val = h->element[i + 1];

		if (!st_is_str(f) || !st_is_str(val))
			return st_bad("get_message: field", f);
		if (f->len > 1 && f->str[0] == 'r' && f->str[1] >= '0' && f->str[1] <= '9')
			rc = st_view_rcpt_field(v, f, val);
		else if (st_field_is(f, "prio"))
			v->lane = st_field_is(val, "high") ? STORE_LANE_HIGH : STORE_LANE_NORMAL;
		else if (st_field_is(f, "tl"))
			folded = val;
		else
			rc = st_field_read(&st_view_table, f->str, f->len, val, v);
	}
	if (rc)
		return rc;
	/* a finished message's hash no longer holds its id: the key names it */
	if (st_fill_missing(&v->id, id) || st_fill_missing(&v->from, "") ||
	    st_fill_missing(&v->subject, "") || st_fill_missing(&v->metadata_json, "{}") ||
	    st_fill_missing(&v->tags_json, "[]") ||
	    st_fill_missing(&v->project, STORE_PROJECT_DEFAULT))
		return STORE_ERR_NOMEM;
	for (i = 0; i < v->nrcpts; i++)
		if (st_fill_missing(&v->rcpts[i].email, "") ||
		    st_fill_missing(&v->rcpts[i].kind, "to") ||
		    st_fill_missing(&v->rcpts[i].status, "queued"))
			return STORE_ERR_NOMEM;
	/* folded when the message finished; a message finished by an earlier release keeps the list */
	if (folded && folded->len > 0)
		return st_view_tl_folded(folded, v);
	return st_row_read(&st_tl_table, &tl, 1, v);
}

int
store_get_message(struct store *s, const char *id, struct store_message_view *v)
{
	struct st_cmd cmds[2] = { { NULL, 0, 0 }, { NULL, 0, 0 } };
	redisReply *rep[2] = { NULL, NULL };
	char kmsg[ST_KEY_MAX], ktl[ST_KEY_MAX];
	struct st_args a;
	int rc;

	if (!v)
		return STORE_ERR_PROTO;
	memset(v, 0, sizeof(*v));
	if (!s || !st_id_ok(id))
		return STORE_ERR_NOT_FOUND;
	if (st_msg_key(s, kmsg, sizeof(kmsg), id, NULL) || st_msg_key(s, ktl, sizeof(ktl), id, ":tl"))
		return STORE_ERR_NOT_FOUND;
	rc = st_eval_begin(s, &a, 8, SC_VIEW, 1);
	if (rc)
		return rc;
	st_adds(&a, kmsg);
	rc = st_format(&a, &cmds[0]);
	if (rc)
		goto out;
	st_adds(&a, "LRANGE");
	st_adds(&a, ktl);
	st_addi(&a, 0);
	st_addi(&a, ST_MAX_TIMELINE - 1);
	rc = st_format(&a, &cmds[1]);
	if (rc)
		goto out;
	rc = st_run(s, cmds, 2, rep);
	if (rc)
		goto out;
	if (!st_is_array(rep[0], 0) || rep[0]->elements % 2 != 0) {
		rc = st_bad("view", rep[0]);
		goto out;
	}
	if (!st_is_array(rep[1], 0)) {
		rc = st_bad("lrange", rep[1]);
		goto out;
	}
	if (rep[0]->elements == 0) {
		rc = STORE_ERR_NOT_FOUND;
		goto out;
	}
	rc = st_build_view(rep[0], rep[1], id, v);
out:
	if (rc)
		store_message_view_free(v);
	redisFreeCommand(cmds[0].buf);
	redisFreeCommand(cmds[1].buf);
	if (rep[0])
		freeReplyObject(rep[0]);
	if (rep[1])
		freeReplyObject(rep[1]);
	st_args_release(&a);
	return rc;
}

int
store_cancel(struct store *s, const char *id, const char *project,
    const char *timeline_json, int *ncanceled)
{
	char kmsg[ST_KEY_MAX], ktl[ST_KEY_MAX];
	struct st_args a;
	redisReply *r = NULL;
	int64_t v;
	int rc;

	if (ncanceled)
		*ncanceled = 0;
	if (!s)
		return STORE_ERR_PROTO;
	if (!st_id_ok(id) || st_msg_key(s, kmsg, sizeof(kmsg), id, NULL) ||
	    st_msg_key(s, ktl, sizeof(ktl), id, ":tl"))
		return STORE_ERR_NOT_FOUND;
	rc = st_eval_begin(s, &a, 12, SC_CANCEL, 3);
	if (rc)
		return rc;
	st_adds(&a, kmsg);
	st_adds(&a, ktl);
	st_adds(&a, st_pk(s, st_id_part(id), PK_DUE));
	st_adds(&a, id);
	st_adds(&a, timeline_json);
	st_addi(&a, s->retention_ms);
	st_adds(&a, project ? st_project_name(project) : "");
	st_addi(&a, st_content_keep_ms(s));
	rc = st_do(s, &a, &r);
	if (rc)
		goto out;
	if (st_int(r, &v) != 0 || v > ST_MAX_RCPTS) {
		rc = st_bad("cancel", r);
		goto out;
	}
	if (v < 0)
		rc = STORE_ERR_NOT_FOUND;
	else if (ncanceled)
		*ncanceled = (int)v;
out:
	if (r)
		freeReplyObject(r);
	st_args_release(&a);
	return rc;
}

int
store_bounce(struct store *s, const struct store_bounce_in *b, int *applied)
{
	char kmsg[ST_KEY_MAX], ktl[ST_KEY_MAX], member[ST_KEY_MAX];
	struct st_args a;
	redisReply *r = NULL;
	int64_t v;
	unsigned part;
	int rc, n;

	if (applied)
		*applied = 0;
	if (!s || !b || !b->action || b->rcpt_idx < 0 || b->rcpt_idx >= ST_MAX_RCPTS ||
	    (strcmp(b->action, "failed") != 0 && strcmp(b->action, "delayed") != 0 &&
	    strcmp(b->action, "complained") != 0))
		return STORE_ERR_PROTO;
	n = snprintf(member, sizeof(member), "%s/%d", b->msg_id ? b->msg_id : "", b->rcpt_idx);
	if (!st_id_ok(b->msg_id) || n < 0 || (size_t)n >= sizeof(member) ||
	    st_msg_key(s, kmsg, sizeof(kmsg), b->msg_id, NULL) ||
	    st_msg_key(s, ktl, sizeof(ktl), b->msg_id, ":tl"))
		return STORE_ERR_NOT_FOUND;
	part = st_id_part(b->msg_id);
	rc = st_eval_begin(s, &a, 22, SC_BOUNCE, 5);
	if (rc)
		return rc;
	st_adds(&a, kmsg);
	st_adds(&a, ktl);
	st_adds(&a, st_pk(s, part, PK_DUE));
	st_adds(&a, st_pk(s, part, PK_EVENTS));
	st_adds(&a, st_pk(s, part, PK_SUPP));
	st_addi(&a, b->rcpt_idx);
	st_adds(&a, b->action);
	st_adds(&a, b->smtp_json ? b->smtp_json : "");
	st_adds(&a, b->event_json ? b->event_json : "");
	st_adds(&a, b->timeline_json ? b->timeline_json : "");
	st_addi(&a, s->retention_ms);
	st_adds(&a, member);
	st_adds(&a, b->suppress_reason ? b->suppress_reason : "");
	st_addi(&a, b->now_ms);
	st_adds(&a, st_pk(s, part, PK_PREFIX));
	st_addi(&a, st_content_keep_ms(s));
	st_adds(&a, b->bounced_event_json ? b->bounced_event_json : "");
	st_addi(&a, b->latency_ms > 0 ? b->latency_ms : 0);
	rc = st_do(s, &a, &r);
	if (rc)
		goto out;
	if (st_int(r, &v) != 0 || v < -1 || v > 1) {
		rc = st_bad("bounce", r);
		goto out;
	}
	if (v < 0)
		rc = STORE_ERR_NOT_FOUND;
	else if (applied)
		*applied = (int)v;
	if (rc == 0 && v == 1 && b->suppress_reason && *b->suppress_reason && s->nparts > 1)
		st_supp_spread(s, part, b->project, b->email, b->suppress_reason, b->now_ms);
out:
	if (r)
		freeReplyObject(r);
	st_args_release(&a);
	return rc;
}

void
st_supp_spread(struct store *s, unsigned part, const char *project, const char *email,
    const char *reason, int64_t now_ms)
{
	char lower[ST_MAX_EMAIL + 1], val[160];
	size_t i, n;
	int rc;

	if (!email || (n = strlen(email)) > ST_MAX_EMAIL)
		return;
	for (i = 0; i < n; i++)
		lower[i] = (char)((email[i] >= 'A' && email[i] <= 'Z') ? email[i] + 32 : email[i]);
	lower[n] = '\0';
	snprintf(val, sizeof(val), "%" PRId64 ":%.100s", now_ms, reason);
	rc = st_supp_write(s, (int)part, st_project_name(project), lower, val, NULL);
	if (rc)
		log_warn("suppression not copied to every partition", "project=%s partition=%u error=%s",
		    st_project_name(project), part, store_strerror(rc));
}
