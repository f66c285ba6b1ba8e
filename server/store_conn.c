/*
 * store_conn.c - the store's connection and script machinery, and the
 * helpers every other store file builds on (store_internal.h): connect and
 * reconnect, AUTH, SELECT, SCRIPT LOAD of every script by SHA (the script
 * table: the only file that includes store_lua.h), consumer groups, the
 * argument vector, pipelined runs with the NOSCRIPT reload-and-retry, the
 * reply type checks, and the lifecycle calls of store.h (open, close, init,
 * ping, retention). One struct store is one connection owned by one thread
 * (hiredis 0.14, synchronous API). The concerns live in store_messages.c,
 * store_delivery.c, store_webhooks.c, store_events.c and store_admin.c.
 *
 * Connection policy: connect and set-up (AUTH when the URL has a password,
 * SELECT, SCRIPT LOAD, groups) with a 1 s timeout, commands time out after
 * TXMAIL_REDIS_TIMEOUT (redis_addr.timeout_ms, default 5 s; a blocking read
 * gets its block time on top of 5 s). Any I/O error frees the
 * context and the call returns STORE_ERR_UNAVAILABLE; the next call
 * reconnects, at most once per 200 ms, so an outage makes calls fail fast
 * instead of spinning or hanging. Each (re)connect loads the scripts and
 * creates the consumer groups. Outages are logged once, at the transition.
 * st_connect is the only place a connection is made: every handle, hence
 * every thread and CLI, authenticates the same way. A refused AUTH is an
 * outage too (STORE_ERR_UNAVAILABLE, so /readyz answers 503) logged as
 * msg="redis AUTH failed" error="AUTH failed: <server's error>"; the password is never logged,
 * not even inside a server reply.
 *
 * Sentinel (redis+sentinel://): st_connect asks the sentinels in turn (the
 * last that answered first; ST_SENTINEL_TIMEOUT_MS for the connect and
 * each command, AUTH with TXMAIL_REDIS_SENTINEL_PASSWORD when set) for the
 * primary of the master name, connects to it, AUTHs as for redis:// and
 * uses it only once ROLE says "master"; else the next sentinel. A
 * connection closed, or a READONLY or LOADING answer (st_failover_check),
 * drops the connection, so the next call asks the sentinels again, and so
 * does a +switch-master the sentinels announce (store_watch.c: it also
 * shuts down connections a command is waiting on). The primary in use is
 * logged (info, msg="redis primary") once per process when first found
 * and when it changes.
 *
 * It must never trust a reply's shape (every reply is type-checked; a wrong
 * shape is STORE_ERR_PROTO plus a log line), never abort on Redis trouble,
 * and never decide policy (retry times, webhook routing): callers do. It
 * knows no key of a concern beyond the ones the groups are created on.
 */
#include "store_internal.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "log.h"
#include "store_lua.h"
#include "store_cluster.h"
#include "store_sentinel.h"
#include "util.h"

static const char *const st_scripts[SC_COUNT] = {
	[SC_ENQUEUE] = store_lua_enqueue,
	[SC_CLAIM] = store_lua_claim,
	[SC_RECORD] = store_lua_record,
	[SC_PROMOTE] = store_lua_promote,
	[SC_WH_FANOUT] = store_lua_wh_fanout,
	[SC_WH_SETTLE] = store_lua_wh_settle,
	[SC_WH_CLAIM] = store_lua_wh_claim,
	[SC_WH_DONE] = store_lua_wh_done,
	[SC_WH_RETRY] = store_lua_wh_retry,
	[SC_VIEW] = store_lua_view,
	[SC_CANCEL] = store_lua_cancel,
	[SC_EP_CREATE] = store_lua_ep_create,
	[SC_EP_LIST] = store_lua_ep_list,
	[SC_EP_DELETE] = store_lua_ep_delete,
	[SC_EP_UPDATE] = store_lua_ep_update,
	[SC_EP_ROTATE] = store_lua_ep_rotate,
	[SC_EP_FAIL] = store_lua_ep_fail,
	[SC_WH_LOG] = store_lua_wh_log,
	[SC_WH_FIND] = store_lua_wh_find,
	[SC_WH_PRUNE] = store_lua_wh_prune,
	[SC_TRIM] = store_lua_trim,
	[SC_SEARCH] = store_lua_search,
	[SC_IX_SWEEP] = store_lua_ix_sweep,
	[SC_IX_BACKFILL] = store_lua_ix_backfill,
	[SC_TPL_PUT] = store_lua_tpl_put,
	[SC_TPL_DEL] = store_lua_tpl_del,
	[SC_TPL_LIST] = store_lua_tpl_list,
	[SC_SUPP_PAGE] = store_lua_supp_page,
	[SC_KEY_CREATE] = store_lua_key_create,
	[SC_KEY_REVOKE] = store_lua_key_revoke,
	[SC_KEY_LIST] = store_lua_key_list,
	[SC_AUTH] = store_lua_auth,
	[SC_RATELIMIT] = store_lua_ratelimit,
	[SC_BOUNCE] = store_lua_bounce,
	[SC_HAND_BACK] = store_lua_hand_back,
	[SC_ABANDON] = store_lua_abandon,
	[SC_SHAPE_RATE] = store_lua_shape_rate,
	[SC_SHAPE_SUSP] = store_lua_shape_susp,
	[SC_SAT] = store_lua_sat,
};

/* --- small helpers ------------------------------------------------------- */

int
st_args_init(struct st_args *a, size_t cap)
{
	memset(a, 0, sizeof(*a));
	if (cap == 0 || cap > 1000000)
		return STORE_ERR_NOMEM;
	a->v = calloc(cap, sizeof(*a->v));
	a->l = calloc(cap, sizeof(*a->l));
	if (!a->v || !a->l) {
		free(a->v);
		free(a->l);
		a->v = NULL;
		a->l = NULL;
		return STORE_ERR_NOMEM;
	}
	a->cap = (int)cap;
	return 0;
}

void
st_args_release(struct st_args *a)
{
	free(a->v);
	free(a->l);
	a->v = NULL;
	a->l = NULL;
}

static void
st_args_reset(struct st_args *a)
{
	a->n = 0;
	a->nnum = 0;
	a->err = 0;
	a->route = 0;
}

void
st_route(struct st_args *a, unsigned p)
{
	a->route = (int)(p < ST_MAX_PARTS ? p : 0) + 1;
}

redisReply *
st_reply_concat(redisReply **rep, size_t n)
{
	redisReply *out = NULL;
	size_t total = 0, k = 0, i;

	for (i = 0; i < n && !out; i++)
		if (rep[i] && rep[i]->type == REDIS_REPLY_ERROR) {
			out = rep[i];
			rep[i] = NULL;
		}
	for (i = 0; i < n && !out; i++)
		if (rep[i] && rep[i]->type == REDIS_REPLY_ARRAY)
			total += rep[i]->elements;
	if (!out)
		out = calloc(1, sizeof(*out));
	if (out && out->type != REDIS_REPLY_ERROR) {
		out->type = total ? REDIS_REPLY_ARRAY : REDIS_REPLY_NIL;
		out->element = total ? calloc(total, sizeof(*out->element)) : NULL;
		if (total && !out->element) {
			free(out);
			out = NULL;
		}
	}
	for (i = 0; i < n; i++) {
		if (!rep[i])
			continue;
		if (out && out->type == REDIS_REPLY_ARRAY && rep[i]->type == REDIS_REPLY_ARRAY) {
			for (size_t j = 0; j < rep[i]->elements; j++)
				out->element[k++] = rep[i]->element[j];
			rep[i]->elements = 0;   /* moved: only the vector is freed */
		}
		freeReplyObject(rep[i]);
		rep[i] = NULL;
	}
	if (out && out->type == REDIS_REPLY_ARRAY)
		out->elements = k;
	return out;
}

unsigned
st_part_slot(unsigned p)
{
	char tag[8];
	int n = snprintf(tag, sizeof(tag), "%u", p);

	return st_cluster_keyslot(tag, (size_t)n);
}

unsigned
st_args_slot(const struct st_args *a)
{
	if (a->route > 0)
		return st_part_slot((unsigned)a->route - 1);
	for (int i = 0; i < a->n; i++)
		if (a->l[i] > 4 && memcmp(a->v[i], "txm{", 4) == 0)
			return st_cluster_keyslot(a->v[i], a->l[i]);
	return st_part_slot(0);
}

void
st_add(struct st_args *a, const char *p, size_t len)
{
	if (a->n >= a->cap) {
		a->err = 1;
		return;
	}
	a->v[a->n] = p ? p : "";
	a->l[a->n] = p ? len : 0;
	a->n++;
}

void
st_adds(struct st_args *a, const char *p)
{
	st_add(a, p, p ? strlen(p) : 0);
}

/* st_udec - v in decimal at p (room for 20 digits); returns the digits written */
static size_t
st_udec(char *p, uint64_t v)
{
	char tmp[20];
	size_t n = 0, i;

	/* most are argument lengths and small numbers */
	if (v < 10) {
		p[0] = (char)('0' + v);
		return 1;
	}
	if (v < 100) {
		p[0] = (char)('0' + v / 10);
		p[1] = (char)('0' + v % 10);
		return 2;
	}
	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v != 0);
	for (i = 0; i < n; i++)
		p[i] = tmp[n - 1 - i];
	return n;
}

void
st_rfield(char buf[ST_RFIELD_MAX], int idx, const char *name)
{
	char num[ST_I64_LEN];
	size_t n = st_i64(num, idx), len = strlen(name);

	buf[0] = 'r';
	memcpy(buf + 1, num, n);
	n++;
	buf[n++] = ':';
	if (n + len >= ST_RFIELD_MAX)
		len = ST_RFIELD_MAX - 1 - n;
	memcpy(buf + n, name, len);
	buf[n + len] = '\0';
}

size_t
st_i64(char buf[ST_I64_LEN], int64_t v)
{
	size_t len = 0;

	if (v < 0)
		buf[len++] = '-';
	len += st_udec(buf + len, v < 0 ? 0 - (uint64_t)v : (uint64_t)v);
	buf[len] = '\0';
	return len;
}

void
st_addi(struct st_args *a, int64_t v)
{
	size_t len;
	char *p;

	if (a->nnum >= ST_NUMS) {
		a->err = 1;
		return;
	}
	p = a->num[a->nnum];
	len = st_i64(p, v);
	st_add(a, p, len);
	a->nnum++;
}

void
st_eval(struct st_args *a, const struct store *s, enum st_script sc, int nkeys)
{
	st_adds(a, "EVALSHA");
	st_adds(a, s->sha[sc]);
	st_addi(a, nkeys);
}

/*
 * st_format_in - the wire command of a (RESP, the bytes redisFormatCommandArgv
 * makes) into *buf of *cap bytes, grown with realloc as needed; its length
 * in *len. Resets a for reuse. Written here rather than by hiredis: its
 * formatter runs sprintf once per argument, the largest cost of an accept
 * (a send is ~40 arguments).
 */
static int
st_format_in(struct st_args *a, char **buf, size_t *cap, size_t *len)
{
	size_t total = 1 + 20 + 2 + 1, off;
	char *p;
	int i;

	*len = 0;
	if (a->err || a->n < 0) {
		st_args_reset(a);
		return STORE_ERR_NOMEM;
	}
	for (i = 0; i < a->n; i++) {
		if (a->l[i] > SIZE_MAX / 2 - total - 32) {
			st_args_reset(a);
			return STORE_ERR_NOMEM;
		}
		total += 1 + 20 + 2 + a->l[i] + 2;
	}
	if (total > *cap) {
		p = realloc(*buf, total);
		if (!p) {
			st_args_reset(a);
			return STORE_ERR_NOMEM;
		}
		*buf = p;
		*cap = total;
	}
	p = *buf;
	p[0] = '*';
	off = 1 + st_udec(p + 1, (uint64_t)a->n);
	p[off++] = '\r';
	p[off++] = '\n';
	for (i = 0; i < a->n; i++) {
		p[off++] = '$';
		off += st_udec(p + off, (uint64_t)a->l[i]);
		p[off++] = '\r';
		p[off++] = '\n';
		if (a->l[i] > 0)
			memcpy(p + off, a->v[i], a->l[i]);
		off += a->l[i];
		p[off++] = '\r';
		p[off++] = '\n';
	}
	p[off] = '\0';
	st_args_reset(a);
	*len = off;
	return 0;
}

/* st_format - turn the vector into a wire command, one malloc that redisFreeCommand frees; resets a. */
int
st_format(struct st_args *a, struct st_cmd *cmd)
{
	size_t cap = 0;
	int rc;

	cmd->buf = NULL;
	cmd->len = 0;
	cmd->slot = st_args_slot(a);
	rc = st_format_in(a, &cmd->buf, &cap, &cmd->len);
	if (rc) {
		free(cmd->buf);
		cmd->buf = NULL;
	}
	return rc;
}

static void
st_cmds_free(struct st_cmd *cmds, size_t n)
{
	size_t i;

	if (!cmds)
		return;
	for (i = 0; i < n; i++)
		redisFreeCommand(cmds[i].buf);
	free(cmds);
}

static void
st_replies_free(redisReply **rep, size_t n)
{
	size_t i;

	if (!rep)
		return;
	for (i = 0; i < n; i++)
		if (rep[i])
			freeReplyObject(rep[i]);
	free(rep);
}

int
st_is_str(const redisReply *r)
{
	return r && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS) && r->str;
}

int
st_is_array(const redisReply *r, size_t min)
{
	return r && r->type == REDIS_REPLY_ARRAY && r->elements >= min &&
	    (r->elements == 0 || r->element);
}

int
st_is_error(const redisReply *r, const char *prefix)
{
	size_t n = strlen(prefix);

	return r && r->type == REDIS_REPLY_ERROR && r->str && r->len >= n &&
	    memcmp(r->str, prefix, n) == 0;
}

char *
st_dupn(const char *p, size_t len)
{
	char *d = malloc(len + 1);

	if (!d)
		return NULL;
	if (len)
		memcpy(d, p, len);
	d[len] = '\0';
	return d;
}

char *
st_dup(const redisReply *r)
{
	return st_dupn(r->str, r->len);
}

int
st_parse_i64(const char *p, size_t len, int64_t *out)
{
	char buf[32];
	char *end;
	long long v;

	if (len == 0 || len >= sizeof(buf))
		return -1;
	memcpy(buf, p, len);
	buf[len] = '\0';
	errno = 0;
	v = strtoll(buf, &end, 10);
	if (errno || *end != '\0')
		return -1;
	*out = (int64_t)v;
	return 0;
}

/* st_int - an integer reply, or a string holding a decimal integer. */
int
st_int(const redisReply *r, int64_t *out)
{
	if (!r)
		return -1;
	if (r->type == REDIS_REPLY_INTEGER) {
		*out = (int64_t)r->integer;
		return 0;
	}
	if (st_is_str(r))
		return st_parse_i64(r->str, r->len, out);
	return -1;
}

/* st_score - a zset score (may be printed as a float) in ms. */
int
st_score(const redisReply *r, int64_t *out)
{
	char buf[64];
	char *end;
	double d;

	if (r && r->type == REDIS_REPLY_INTEGER) {
		*out = (int64_t)r->integer;
		return 0;
	}
	if (!st_is_str(r) || r->len == 0 || r->len >= sizeof(buf))
		return -1;
	memcpy(buf, r->str, r->len);
	buf[r->len] = '\0';
	errno = 0;
	d = strtod(buf, &end);
	if (errno || *end != '\0' || d != d || d < 0 || d > 9.0e15)
		return -1;
	*out = (int64_t)d;
	return 0;
}

static const char *
st_type_name(const redisReply *r)
{
	if (!r)
		return "null";
	switch (r->type) {
	case REDIS_REPLY_STRING: return "string";
	case REDIS_REPLY_ARRAY: return "array";
	case REDIS_REPLY_INTEGER: return "integer";
	case REDIS_REPLY_NIL: return "nil";
	case REDIS_REPLY_STATUS: return "status";
	case REDIS_REPLY_ERROR: return "error";
	default: return "unknown";
	}
}

/* st_is_busy - 1 for an error that means "Redis cannot serve now" (see st_bad). */
static int
st_is_busy(const redisReply *r)
{
	/* MOVED and ASK: a Cluster slot elsewhere (now or for a migrating key): the command did not run */
	static const char *const busy[] = { "LOADING", "OOM", "READONLY", "MASTERDOWN",
		"BUSY", "TRYAGAIN", "CLUSTERDOWN", "MOVED", "ASK" };
	size_t i;

	for (i = 0; i < sizeof(busy) / sizeof(busy[0]); i++)
		if (st_is_error(r, busy[i]))
			return 1;
	return 0;
}

/*
 * st_bad - log an unexpected reply; returns STORE_ERR_PROTO, or
 * STORE_ERR_UNAVAILABLE for errors that mean "Redis cannot serve now"
 * (loading, out of memory, read-only replica, busy script).
 */
int
st_bad(const char *op, const redisReply *r)
{
	if (st_is_busy(r)) {
		log_debug("redis cannot serve", "op=%s error=%.200s", op, r->str);
		return STORE_ERR_UNAVAILABLE;
	}
	if (st_is_error(r, "NOAUTH"))
		log_error("redis AUTH required, TXMAIL_REDIS_URL has no password", "op=%s error=%.200s",
		    op, r->str);
	else if (r && r->type == REDIS_REPLY_ERROR && r->str)
		log_error("redis error", "op=%s error=%.200s", op, r->str);
	else
		log_error("unexpected redis reply", "op=%s type=%s", op, st_type_name(r));
	return STORE_ERR_PROTO;
}

int
st_key(char *buf, size_t len, const char *a, const char *b, const char *c)
{
	/* concatenated by hand, not snprintf: several keys per accept */
	size_t la = strlen(a), lb = strlen(b), lc = c ? strlen(c) : 0;

	if (len == 0)
		return -1;
	if (la + lb + lc >= len) {
		buf[0] = '\0';
		return -1;
	}
	memcpy(buf, a, la);
	memcpy(buf + la, b, lb);
	if (lc)
		memcpy(buf + la + lb, c, lc);
	buf[la + lb + lc] = '\0';
	return 0;
}

int
st_id_ok(const char *id)
{
	size_t n;

	if (!id)
		return 0;
	n = strlen(id);
	return n > 0 && n <= ST_MAX_ID && !strchr(id, '/');
}

unsigned
st_id_part(const char *id)
{
	static const size_t at = 4 + 26;   /* "msg_" and the ULID */
	unsigned v = 0;
	size_t n, i;

	if (!id || strncmp(id, "msg_", 4) != 0)
		return 0;
	n = strlen(id);
	if (n < at + 2 || n > at + 3 || id[at] != 'p' || id[at + 1] == '0')
		return 0;
	for (i = at + 1; i < n; i++) {
		if (id[i] < '0' || id[i] > '9')
			return 0;
		v = v * 10 + (unsigned)(id[i] - '0');
	}
	return v < ST_MAX_PARTS ? v : 0;
}

int
st_msg_key(const struct store *s, char *buf, size_t len, const char *id, const char *suffix)
{
	char base[ST_PK_MAX + 8];

	if (st_key(base, sizeof(base), st_pk(s, st_id_part(id), PK_PREFIX), "msg:", NULL))
		return -1;
	return st_key(buf, len, base, id, suffix);
}

int
st_field_is(const redisReply *f, const char *name)
{
	size_t n = strlen(name);

	return f->len == n && memcmp(f->str, name, n) == 0;
}

const char *
st_project_name(const char *project)
{
	return project && *project ? project : STORE_PROJECT_DEFAULT;
}

static int st_project_prefix_tag(char *buf, size_t len, const char *tag, const char *project);
static int st_stream_key_tag(char *buf, size_t len, const char *tag, enum store_lane lane,
    const char *project);

int
st_project_prefix(char *buf, size_t len, const char *project)
{
	return st_project_prefix_tag(buf, len, ST_PREFIX, project);
}

int
st_project_prefix_in(const struct store *s, unsigned p, char *buf, size_t len,
    const char *project)
{
	return st_project_prefix_tag(buf, len, st_pk(s, p, PK_PREFIX), project);
}

/* st_project_prefix_tag - st_project_prefix under the partition prefix tag ("txm{k}:"). */
static int
st_project_prefix_tag(char *buf, size_t len, const char *tag, const char *project)
{
	char pp[ST_PK_MAX + 8];
	size_t i, n;

	project = st_project_name(project);
	if (strcmp(project, STORE_PROJECT_DEFAULT) == 0)
		return st_key(buf, len, tag, "", NULL);
	n = strlen(project);
	if (n > STORE_PROJECT_MAX)
		return -1;
	for (i = 0; i < n; i++) {
		char c = project[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		    c == '_' || c == '.' || c == '-'))
			return -1;
	}
	if (st_key(pp, sizeof(pp), tag, "prj:", NULL))
		return -1;
	return st_key(buf, len, pp, project, ":");
}

int
st_stream_key_in(const struct store *s, unsigned p, char *buf, size_t len,
    enum store_lane lane, const char *project)
{
	return st_stream_key_tag(buf, len, st_pk(s, p, PK_PREFIX), lane, project);
}

/* st_stream_key_tag - the ready stream of (lane, project) under the partition prefix tag. */
static int
st_stream_key_tag(char *buf, size_t len, const char *tag, enum store_lane lane,
    const char *project)
{
	char pp[ST_KEY_MAX], base[ST_PK_MAX + 16];

	if (st_project_prefix(pp, sizeof(pp), project) ||   /* the name check */
	    st_key(base, sizeof(base), tag, lane == STORE_LANE_HIGH ? "ready:high" : "ready", NULL))
		return -1;
	project = st_project_name(project);
	if (strcmp(project, STORE_PROJECT_DEFAULT) == 0)
		return st_key(buf, len, base, "", NULL);
	return st_key(buf, len, base, ":p:", project);
}

/* --- connection ---------------------------------------------------------- */

static void
st_drop(struct store *s, const char *why)
{
	if (!s->down)
		log_warn("redis connection lost", "addr=%s error=%s", s->desc, why);
	s->down = 1;
	st_watch_set_conn(s, NULL, 0);
	/* One immediate reconnect is allowed; after that, the rate limit. */
	s->last_try_ms = 0;
}

int
st_set_timeout(struct store *s, int ms)
{
	struct timeval tv;

	if (!s->c || s->timeout_ms == ms)
		return 0;   /* a Cluster's connections keep the command timeout: its blocking reads are slices */
	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	if (redisSetTimeout(s->c, tv) != REDIS_OK) {
		st_drop(s, "setsockopt");
		return STORE_ERR_UNAVAILABLE;
	}
	s->timeout_ms = ms;
	return 0;
}

/*
 * st_failover_check - with a redis+sentinel:// URL, a READONLY (the node
 * was turned into a replica) or LOADING answer among rep[0..n) drops the
 * connection, so the next st_connect asks the sentinels for the primary
 * again. The replies stay the caller's (st_bad maps both to
 * STORE_ERR_UNAVAILABLE).
 */
static void
st_failover_check(struct store *s, redisReply *const *rep, size_t n)
{
	if (!s->addr.is_sentinel || !s->c)
		return;
	for (size_t i = 0; i < n; i++) {
		if (st_is_error(rep[i], "READONLY")) {
			st_drop(s, "READONLY: no longer the primary, asking the sentinels");
			return;
		}
		if (st_is_error(rep[i], "LOADING")) {
			st_drop(s, "LOADING: not serving, asking the sentinels");
			return;
		}
	}
}

/* st_simple - one command without NOSCRIPT handling; *out on success. */
int
st_simple(struct store *s, int argc, const char **argv, redisReply **out)
{
	void *r;

	*out = NULL;
	if (s->cl) {
		struct st_args a;
		struct st_cmd cmd;
		int rc = st_args_init(&a, (size_t)argc);

		for (int i = 0; i < argc && rc == 0; i++)
			st_adds(&a, argv[i]);
		if (rc == 0)
			rc = st_format(&a, &cmd);
		st_args_release(&a);
		if (rc == 0) {
			rc = st_run(s, &cmd, 1, out);
			redisFreeCommand(cmd.buf);
		}
		return rc;
	}
	if (!s->c)
		return STORE_ERR_UNAVAILABLE;
	r = redisCommandArgv(s->c, argc, argv, NULL);
	if (!r) {
		st_drop(s, s->c->errstr[0] ? s->c->errstr : "i/o error");
		return STORE_ERR_UNAVAILABLE;
	}
	*out = r;
	st_failover_check(s, out, 1);
	return 0;
}

static int
st_load_scripts(struct store *s)
{
	redisReply *r = NULL;
	int i, rc;

	for (i = 0; i < SC_COUNT; i++) {
		const char *argv[3] = { "SCRIPT", "LOAD", st_scripts[i] };

		rc = st_simple(s, 3, argv, &r);
		if (rc)
			return rc;
		if (!st_is_str(r) || r->len != 40) {
			rc = st_bad("script load", r);
			freeReplyObject(r);
			return rc;
		}
		memcpy(s->sha[i], r->str, 40);
		s->sha[i][40] = '\0';
		freeReplyObject(r);
	}
	return 0;
}

/* st_group_add - XGROUP CREATE key group 0 MKSTREAM into b (BUSYGROUP, it exists, is fine). */
static int
st_group_add(struct st_batch *b, const char *key, const char *group)
{
	st_adds(&b->a, "XGROUP");
	st_adds(&b->a, "CREATE");
	st_adds(&b->a, key);
	st_adds(&b->a, group);
	st_adds(&b->a, "0");
	st_adds(&b->a, "MKSTREAM");
	return st_batch_add(b);
}

int
st_create_groups(struct store *s)
{
	static const struct { enum st_pk k; const char *group; } keys[3] = {
		{ PK_READY, ST_G_WORKERS },
		{ PK_READY_HIGH, ST_G_WORKERS },
		{ PK_EVENTS, ST_G_WEBHOOKS },
	};
	struct st_batch b;
	size_t i, n = 3 * (size_t)s->nparts + s->nstreams;
	unsigned p;
	int rc;

	/* every partition's lanes and outbox, then the projects' ready streams known to
	 * this handle (created with their first entry): one round trip */
	memset(&b, 0, sizeof(b));
	rc = st_batch_init(&b, n, 6);
	for (p = 0; p < s->nparts && rc == 0; p++)
		for (i = 0; i < 3 && rc == 0; i++)
			rc = st_group_add(&b, st_pk(s, p, keys[i].k), keys[i].group);
	for (i = 0; i < s->nstreams && rc == 0; i++)
		rc = st_group_add(&b, s->streams[i].key, ST_G_WORKERS);
	if (rc == 0)
		rc = st_batch_run(s, &b);
	for (i = 0; i < b.n && rc == 0; i++) {
		const redisReply *r = b.rep[i];

		if (!(r && (r->type == REDIS_REPLY_STATUS || st_is_error(r, "BUSYGROUP"))))
			rc = st_bad("xgroup create", r);
	}
	st_batch_release(&b);
	return rc;
}

/*
 * st_auth - first command on a new connection when the URL has a password:
 * "AUTH user pass" (Redis 6 ACL) or "AUTH pass". 0; STORE_ERR_UNAVAILABLE
 * on I/O trouble or a busy server; STORE_ERR_PROTO when refused (then
 * s->auth_failed is set, s->why says why, and the refusal is logged once
 * until an AUTH succeeds or the server cannot be reached at all).
 */
static int
st_auth(struct store *s)
{
	const char *argv[3];
	redisReply *r = NULL;
	int argc = 0, rc;

	if (s->addr.pass[0] == '\0')
		return 0;
	argv[argc++] = "AUTH";
	if (s->addr.user[0] != '\0')
		argv[argc++] = s->addr.user;
	argv[argc++] = s->addr.pass;
	rc = st_simple(s, argc, argv, &r);
	if (rc)
		return rc;
	if (r->type == REDIS_REPLY_STATUS) {
		freeReplyObject(r);
		return 0;
	}
	if (st_is_busy(r)) {
		freeReplyObject(r);
		return STORE_ERR_UNAVAILABLE;
	}
	/* "WRONGPASS ...", or "ERR ..." from a server without a password set. */
	snprintf(s->why, sizeof(s->why), "AUTH failed: %.200s",
	    r->type == REDIS_REPLY_ERROR && r->str ? r->str : "unexpected reply");
	if (strstr(s->why, s->addr.pass) != NULL)
		util_strlcpy(s->why, "AUTH failed (the server's reply is withheld: it holds the password)",
		    sizeof(s->why));
	if (!s->auth_failed)
		log_error("redis AUTH failed", "addr=%s user=%.64s error=%s", s->desc,
		    s->addr.user[0] ? s->addr.user : "default", s->why);
	s->auth_failed = 1;
	freeReplyObject(r);
	return STORE_ERR_PROTO;
}

/* st_prepare - after connecting: SELECT, scripts, groups. */
static int
st_prepare(struct store *s)
{
	redisReply *r = NULL;
	int rc;

	if (s->addr.db != 0) {
		char db[16];
		const char *argv[2] = { "SELECT", db };

		snprintf(db, sizeof(db), "%d", s->addr.db);
		rc = st_simple(s, 2, argv, &r);
		if (rc)
			return rc;
		if (r->type != REDIS_REPLY_STATUS) {
			rc = st_bad("select", r);
			freeReplyObject(r);
			return rc;
		}
		freeReplyObject(r);
	}
	rc = st_load_scripts(s);
	if (rc)
		return rc;
	return st_create_groups(s);
}

/*
 * st_peer_closed - between commands nothing is due from the server, so a
 * readable socket means it closed the connection (restart, idle timeout).
 * Checking costs one poll(2) and saves the caller a 503 on a connection
 * that died while this thread was idle.
 */
static int
st_peer_closed(struct store *s)
{
	struct pollfd pfd = { .fd = s->c->fd, .events = POLLIN | POLLRDHUP };

	return poll(&pfd, 1, 0) > 0;
}

/*
 * st_dial - connect s->c to host:port (a unix socket when the URL is
 * unix://) with the set-up timeout. 0; STORE_ERR_UNAVAILABLE with s->why
 * (s->c NULL when the connect itself failed).
 */
static int
st_dial(struct store *s, const char *host, uint16_t port)
{
	struct timeval tv = { ST_CONNECT_TIMEOUT_MS / 1000, (ST_CONNECT_TIMEOUT_MS % 1000) * 1000 };
	redisContext *c;

	if (s->addr.is_unix)
		c = redisConnectUnixWithTimeout(s->addr.path, tv);
	else
		c = redisConnectWithTimeout(host, port, tv);
	if (!c || c->err) {
		snprintf(s->why, sizeof(s->why), "%.200s", c ? c->errstr : "out of memory");
		if (c)
			redisFree(c);
		return STORE_ERR_UNAVAILABLE;
	}
	st_watch_set_conn(s, c, s->dial_gen);
	s->timeout_ms = -1;
	if (!s->addr.is_unix)
		(void)redisEnableKeepAlive(c);
	/* A frozen server accepts connections: keep the set-up short too. */
	if (st_set_timeout(s, ST_CONNECT_TIMEOUT_MS) != 0) {
		snprintf(s->why, sizeof(s->why), "%s", "setsockopt");
		return STORE_ERR_UNAVAILABLE;
	}
	s->why[0] = '\0';
	return 0;
}

/* st_close_quiet - free s->c without the "connection lost" transition (a set-up that failed) */
static void
st_close_quiet(struct store *s)
{
	st_watch_set_conn(s, NULL, 0);
}

redisContext *
st_sentinel_open(const struct redis_addr *a, const struct redis_hostport *sn, char *why, size_t whylen)
{
	struct timeval tv = { ST_SENTINEL_TIMEOUT_MS / 1000, (ST_SENTINEL_TIMEOUT_MS % 1000) * 1000 };
	redisContext *c = redisConnectWithTimeout(sn->host, sn->port, tv);
	redisReply *r = NULL;

	if (!c || c->err) {
		snprintf(why, whylen, "%.200s", c ? c->errstr : "out of memory");
		goto fail;
	}
	if (redisSetTimeout(c, tv) != REDIS_OK) {
		snprintf(why, whylen, "%s", "setsockopt");
		goto fail;
	}
	if (a->sentinel_pass[0] != '\0') {
		const char *auth[2] = { "AUTH", a->sentinel_pass };

		r = redisCommandArgv(c, 2, auth, NULL);
		if (!r) {
			snprintf(why, whylen, "AUTH: %.200s", c->errstr[0] ? c->errstr : "i/o error");
			goto fail;
		}
		if (r->type != REDIS_REPLY_STATUS) {
			/* the reply is withheld: a server may echo what it was sent */
			snprintf(why, whylen, "%s", "AUTH refused (TXMAIL_REDIS_SENTINEL_PASSWORD)");
			goto fail;
		}
		freeReplyObject(r);
	}
	return c;
fail:
	if (r)
		freeReplyObject(r);
	if (c)
		redisFree(c);
	return NULL;
}

/*
 * st_sentinel_ask - ask sentinel sn for the primary of s->addr.master
 * (st_sentinel_open, then SENTINEL get-master-addr-by-name). 0 and
 * host/port; STORE_ERR_UNAVAILABLE with why (never the password).
 */
static int
st_sentinel_ask(const struct store *s, const struct redis_hostport *sn, char *host, size_t hostlen,
    uint16_t *port, char *why, size_t whylen)
{
	const char *ask[3] = { "SENTINEL", "get-master-addr-by-name", s->addr.master };
	redisContext *c = st_sentinel_open(&s->addr, sn, why, whylen);
	redisReply *r = NULL;
	int rc = STORE_ERR_UNAVAILABLE;

	if (!c)
		goto out;
	r = redisCommandArgv(c, 3, ask, NULL);
	if (!r) {
		snprintf(why, whylen, "%.200s", c->errstr[0] ? c->errstr : "i/o error");
		goto out;
	}
	if (st_sentinel_master_addr(r, host, hostlen, port, why, whylen) == 0)
		rc = 0;
out:
	if (r)
		freeReplyObject(r);
	if (c)
		redisFree(c);
	return rc;
}

/* st_role_master - ROLE on s->c: 0 when it says "master"; STORE_ERR_UNAVAILABLE with s->why. */
static int
st_role_master(struct store *s)
{
	const char *argv[1] = { "ROLE" };
	redisReply *r = NULL;
	int rc = st_simple(s, 1, argv, &r), role;

	if (rc) {
		snprintf(s->why, sizeof(s->why), "%s", "ROLE: i/o error");
		return STORE_ERR_UNAVAILABLE;
	}
	role = st_sentinel_role(r);
	if (role != 1)
		snprintf(s->why, sizeof(s->why), "ROLE says %.40s, not master",
		    role == 0 ? r->element[0]->str : "something unexpected");
	freeReplyObject(r);
	return role == 1 ? 0 : STORE_ERR_UNAVAILABLE;
}

/* The primary this process last used, so "redis primary" is logged once per change, not per handle. */
static pthread_mutex_t st_primary_mu = PTHREAD_MUTEX_INITIALIZER;
static char st_primary_seen[sizeof(((struct store *)0)->desc)];

static void
st_primary_note(const struct store *s)
{
	pthread_mutex_lock(&st_primary_mu);
	if (strcmp(st_primary_seen, s->desc) != 0) {
		if (st_primary_seen[0] == '\0')
			log_info("redis primary", "addr=%s master=%s", s->desc, s->addr.master);
		else
			log_info("redis primary", "addr=%s master=%s previous=%s", s->desc, s->addr.master,
			    st_primary_seen);
		util_strlcpy(st_primary_seen, s->desc, sizeof(st_primary_seen));
	}
	pthread_mutex_unlock(&st_primary_mu);
}

/*
 * st_sentinel_connect - the sentinels in turn (the last that answered
 * first): the primary each names is connected to, authenticated as for
 * redis:// and asked ROLE; the first that says "master" is s->c and
 * s->desc. 0; STORE_ERR_UNAVAILABLE with s->why (the last failure) and
 * s->auth_failed set when a primary refused the URL's credentials.
 */
static int
st_sentinel_connect(struct store *s)
{
	size_t order[REDIS_MAX_SENTINELS], n = s->addr.nsentinels;
	char failed[300] = "";   /* a primary that could not be reached this round: not dialled twice */
	int refused = 0;

	st_sentinel_order(s->sentinel_first, n, order);
	for (size_t k = 0; k < n; k++) {
		const struct redis_hostport *sn = &s->addr.sentinels[order[k]];
		char host[256], why[240];
		uint16_t port = 0;

		if (st_sentinel_ask(s, sn, host, sizeof(host), &port, why, sizeof(why)) != 0) {
			snprintf(s->why, sizeof(s->why), "sentinel %.60s:%u: %.150s", sn->host,
			    (unsigned)sn->port, why);
			continue;
		}
		snprintf(s->desc, sizeof(s->desc), "%.255s:%u", host, (unsigned)port);
		if (strcmp(failed, s->desc) == 0)
			continue;
		if (st_dial(s, host, port) != 0) {
			st_close_quiet(s);
			util_strlcpy(failed, s->desc, sizeof(failed));
			snprintf(why, sizeof(why), "%.200s", s->why);
			snprintf(s->why, sizeof(s->why), "primary %.60s:%u (from sentinel %.60s:%u): %.80s",
			    host, (unsigned)port, sn->host, (unsigned)sn->port, why);
			continue;
		}
		if (st_auth(s) != 0) {
			refused |= s->auth_failed;
			st_close_quiet(s);
			continue;
		}
		if (st_role_master(s) != 0) {
			st_close_quiet(s);
			snprintf(why, sizeof(why), "%.200s", s->why);
			snprintf(s->why, sizeof(s->why), "primary %.60s:%u (from sentinel %.60s:%u): %.80s",
			    host, (unsigned)port, sn->host, (unsigned)sn->port, why);
			continue;
		}
		s->auth_failed = 0;
		s->sentinel_first = order[k];
		st_primary_note(s);
		return 0;
	}
	s->auth_failed = refused;
	return STORE_ERR_UNAVAILABLE;
}

/* st_cl_down - a Cluster call failed: why, logged once per outage. */
static void
st_cl_down(struct store *s)
{
	util_strlcpy(s->why, st_cluster_why(s->cl), sizeof(s->why));
	s->auth_failed = strstr(s->why, "AUTH failed") != NULL;
	if (!s->down)
		log_warn("redis unavailable", "cluster=%s error=%s", s->desc, s->why[0] ? s->why : "unavailable");
	s->down = 1;
}

static void
st_cl_up(struct store *s)
{
	if (s->down)
		log_info("redis connected", "cluster=%s", s->desc);
	s->down = 0;
	s->auth_failed = 0;
}

/*
 * st_cl_prepare - store_cluster.c's hook on each new node connection: the
 * scripts, pipelined (a script's sha is the SHA-1 of its text, the same on
 * every node). 0 or -1.
 */
static int
st_cl_prepare(void *arg, redisContext *c)
{
	struct store *s = arg;
	int i, rc = 0;

	for (i = 0; i < SC_COUNT; i++) {
		const char *argv[3] = { "SCRIPT", "LOAD", st_scripts[i] };

		if (redisAppendCommandArgv(c, 3, argv, NULL) != REDIS_OK)
			return -1;
	}
	for (i = 0; i < SC_COUNT; i++) {
		void *v = NULL;
		redisReply *r;

		if (redisGetReply(c, &v) != REDIS_OK || !v)
			return -1;
		r = v;
		if (!st_is_str(r) || r->len != 40) {
			(void)st_bad("script load", r);
			rc = -1;
		} else {
			memcpy(s->sha[i], r->str, 40);
			s->sha[i][40] = '\0';
		}
		freeReplyObject(r);
	}
	return rc;
}

/*
 * st_cl_ready - redis+cluster://: the map, partition 0's primary (whose
 * connection's set-up gives the scripts' shas) and every partition's
 * groups, once per handle; later calls route each command themselves
 * (store_cluster.c follows failovers and migrations). 0 or
 * STORE_ERR_UNAVAILABLE.
 */
static int
st_cl_ready(struct store *s)
{
	int64_t now;
	int rc;

	if (s->cl_ready)
		return 0;
	now = util_mono_ms();
	if (s->last_try_ms && now - s->last_try_ms < ST_RECONNECT_MS)
		return STORE_ERR_UNAVAILABLE;
	s->last_try_ms = now;
	rc = st_cluster_reprepare(s->cl, st_part_slot(0));
	if (rc) {
		st_cl_down(s);
		return STORE_ERR_UNAVAILABLE;
	}
	rc = st_create_groups(s);
	if (rc)
		return STORE_ERR_UNAVAILABLE;
	s->cl_ready = 1;
	st_cl_up(s);
	return 0;
}

/*
 * st_run_cluster - st_run on a Cluster: each command to its slot's
 * primary, every node's pipeline in one round trip (st_cluster_run_many);
 * commands answered NOSCRIPT go again once after their node reloaded.
 */
static int
st_run_cluster(struct store *s, const struct st_cmd *cmds, size_t n, redisReply **rep, int flags)
{
	struct st_cmd *sub = NULL;
	redisReply **srep = NULL;
	size_t *at = NULL, k = 0, missing = 0;
	int rc = st_cluster_run_many(s->cl, cmds, n, rep, flags);

	if (rc) {
		st_cl_down(s);
		return rc;
	}
	for (size_t i = 0; i < n; i++) {
		k += st_is_error(rep[i], "NOSCRIPT");
		missing += rep[i] == NULL;
	}
	if (k == 0) {
		if (missing)
			st_cl_down(s);   /* ST_CLUSTER_PARTIAL: a node is down, the others answered */
		else
			st_cl_up(s);
		return 0;
	}
	log_info("redis scripts missing, reloading", "cluster=%s", s->desc);
	sub = malloc(k * sizeof(*sub));
	srep = malloc(k * sizeof(*srep));
	at = malloc(k * sizeof(*at));
	rc = sub && srep && at ? 0 : STORE_ERR_NOMEM;
	k = 0;
	for (size_t i = 0; i < n && rc == 0; i++) {
		if (!st_is_error(rep[i], "NOSCRIPT"))
			continue;
		/* once per slot: the node of a slot loads them for every slot it serves */
		int seen = 0;

		for (size_t j = 0; j < k; j++)
			seen |= sub[j].slot == cmds[i].slot;
		if (!seen)
			rc = st_cluster_reprepare(s->cl, cmds[i].slot);
		sub[k] = cmds[i];
		at[k++] = i;
	}
	if (rc == 0)
		rc = st_cluster_run_many(s->cl, sub, k, srep, flags);
	for (size_t j = 0; j < k && rc == 0; j++) {
		freeReplyObject(rep[at[j]]);
		rep[at[j]] = srep[j];
	}
	if (rc) {
		for (size_t i = 0; i < n; i++)
			if (rep[i]) {
				freeReplyObject(rep[i]);
				rep[i] = NULL;
			}
		st_cl_down(s);
	} else {
		st_cl_up(s);
	}
	free(sub);
	free(srep);
	free(at);
	return rc;
}

/* st_connect - ensure a connection; fails fast while Redis is down. */
int
st_connect(struct store *s)
{
	int64_t now;
	int rc;

	if (s->cl)
		return st_cl_ready(s);
	if (s->c && s->addr.is_sentinel && s->watch_gen != st_watch_gen()) {
		/* a failover was announced since this connection was made (store_watch.c) */
		log_debug("redis primary changed, reconnecting", "addr=%s", s->desc);
		st_close_quiet(s);
		s->last_try_ms = 0;
	} else if (s->c && st_peer_closed(s)) {
		st_drop(s, "closed by the server while idle");
	} else if (s->c) {
		return 0;
	}
	now = util_mono_ms();
	if (s->last_try_ms && now - s->last_try_ms < ST_RECONNECT_MS)
		return STORE_ERR_UNAVAILABLE;
	s->last_try_ms = now;
	s->dial_gen = st_watch_gen();   /* before the sentinels are asked: a switch meanwhile shows */
	if (s->addr.is_sentinel) {
		if (st_sentinel_connect(s) != 0) {
			if (!s->down && !s->auth_failed)
				log_warn("redis unavailable", "master=%s error=%s", s->addr.master, s->why);
			s->down = 1;
			return STORE_ERR_UNAVAILABLE;
		}
	} else {
		rc = st_dial(s, s->addr.host, s->addr.port);
		if (rc && !s->c) {
			if (!s->down)
				log_warn("redis unavailable", "addr=%s error=%s", s->desc, s->why);
			s->auth_failed = 0;
			s->down = 1;
			return STORE_ERR_UNAVAILABLE;
		}
		if (rc)
			goto fail;
		rc = st_auth(s);
		if (rc)
			goto fail;
	}
	s->auth_failed = 0;
	rc = st_prepare(s);
	if (rc)
		goto fail;
	rc = st_set_timeout(s, s->cmd_timeout_ms);
	if (rc)
		goto fail;
	if (s->down)
		log_info("redis connected", "addr=%s", s->desc);
	s->down = 0;
	s->last_try_ms = now;
	return 0;
fail:
	/* A refused AUTH, a LOADING or other error while preparing: unavailable. */
	if (s->c) {
		if (!s->down && !s->auth_failed)
			log_warn("redis not ready", "addr=%s", s->desc);
		s->down = 1;
		st_watch_set_conn(s, NULL, 0);
	}
	s->last_try_ms = now;
	return STORE_ERR_UNAVAILABLE;
}

/*
 * st_run - send n commands pipelined and read n replies into rep[] (each
 * freed by the caller). Commands answered NOSCRIPT are sent again once
 * after reloading the scripts. On I/O error every reply is freed.
 */
int
st_run(struct store *s, const struct st_cmd *cmds, size_t n, redisReply **rep)
{
	size_t i, nos = 0;
	void *r;
	int rc = 0;

	for (i = 0; i < n; i++)
		rep[i] = NULL;
	if (s->cl)
		return st_run_cluster(s, cmds, n, rep, 0);
	if (!s->c)
		return STORE_ERR_UNAVAILABLE;
	for (i = 0; i < n; i++)
		if (redisAppendFormattedCommand(s->c, cmds[i].buf, cmds[i].len) != REDIS_OK) {
			st_drop(s, "out of memory");
			rc = STORE_ERR_NOMEM;
			goto out;
		}
	for (i = 0; i < n; i++) {
		r = NULL;
		if (redisGetReply(s->c, &r) != REDIS_OK || !r) {
			st_drop(s, s->c->errstr[0] ? s->c->errstr : "i/o error");
			rc = STORE_ERR_UNAVAILABLE;
			goto out;
		}
		rep[i] = r;
		if (st_is_error(rep[i], "NOSCRIPT"))
			nos++;
	}
	if (nos == 0)
		goto out;
	log_info("redis scripts missing, reloading");
	rc = st_load_scripts(s);
	if (rc)
		goto out;
	for (i = 0; i < n; i++)
		if (st_is_error(rep[i], "NOSCRIPT") &&
		    redisAppendFormattedCommand(s->c, cmds[i].buf, cmds[i].len) != REDIS_OK) {
			st_drop(s, "out of memory");
			rc = STORE_ERR_NOMEM;
			goto out;
		}
	for (i = 0; i < n; i++) {
		if (!st_is_error(rep[i], "NOSCRIPT"))
			continue;
		freeReplyObject(rep[i]);
		rep[i] = NULL;
		r = NULL;
		if (redisGetReply(s->c, &r) != REDIS_OK || !r) {
			st_drop(s, s->c && s->c->errstr[0] ? s->c->errstr : "i/o error");
			rc = STORE_ERR_UNAVAILABLE;
			goto out;
		}
		rep[i] = r;
	}
out:
	if (rc) {
		for (i = 0; i < n; i++)
			if (rep[i]) {
				freeReplyObject(rep[i]);
				rep[i] = NULL;
			}
	} else {
		st_failover_check(s, rep, n);
	}
	return rc;
}

int
st_run_partial(struct store *s, const struct st_cmd *cmds, size_t n, redisReply **rep)
{
	if (!s->cl)
		return st_run(s, cmds, n, rep);
	for (size_t i = 0; i < n; i++)
		rep[i] = NULL;
	return st_run_cluster(s, cmds, n, rep, ST_CLUSTER_PARTIAL);
}

void
st_batch_release(struct st_batch *b)
{
	st_replies_free(b->rep, b->n);
	st_cmds_free(b->cmds, b->n);
	st_args_release(&b->a);
	memset(b, 0, sizeof(*b));
}

/*
 * st_batch_init - room for max commands of up to cap arguments each (max
 * > 0). 0 or STORE_ERR_NOMEM; b can be released either way.
 */
int
st_batch_init(struct st_batch *b, size_t max, size_t cap)
{
	int rc;

	memset(b, 0, sizeof(*b));
	b->cmds = calloc(max, sizeof(*b->cmds));
	b->rep = calloc(max, sizeof(*b->rep));
	rc = st_args_init(&b->a, cap);
	if (!b->cmds || !b->rep || rc)
		return STORE_ERR_NOMEM;
	return 0;
}

/* st_batch_add - format the command built in b->a as the next one (the caller keeps n < max). */
int
st_batch_add(struct st_batch *b)
{
	int rc = st_format(&b->a, &b->cmds[b->n]);

	if (rc == 0)
		b->n++;
	return rc;
}

/* st_batch_run - send the n commands pipelined, replies to b->rep (see st_run). */
int
st_batch_run(struct store *s, struct st_batch *b)
{
	return st_run(s, b->cmds, b->n, b->rep);
}

/* st_do - connect, format and run the command in a; frees nothing of a. */
int
st_do(struct store *s, struct st_args *a, redisReply **out)
{
	struct st_cmd cmd;
	int rc;

	*out = NULL;
	/* in the handle's buffer, not a malloc per command: one command per accept */
	cmd.slot = st_args_slot(a);
	rc = st_format_in(a, &s->scratch, &s->scratch_cap, &cmd.len);
	if (rc)
		return rc;
	cmd.buf = s->scratch;
	rc = st_run(s, &cmd, 1, out);
	if (s->scratch_cap > ST_SCRATCH_KEEP) {
		/* a large message's command: not kept for the life of the thread */
		free(s->scratch);
		s->scratch = NULL;
		s->scratch_cap = 0;
	}
	return rc;
}

/*
 * st_eval_begin - connect, size a for cap arguments and start an EVALSHA
 * of script sc with nkeys keys; the caller adds the keys and arguments.
 * On failure a holds no memory.
 */
int
st_eval_begin(struct store *s, struct st_args *a, size_t cap, enum st_script sc, int nkeys)
{
	int rc;

	rc = st_connect(s);
	if (rc)
		return rc;
	rc = st_args_init(a, cap);
	if (rc)
		return rc;
	st_eval(a, s, sc, nkeys);
	return 0;
}

/*
 * st_eval_int - run the script call built in a, which must answer an
 * integer (else st_bad(what)), and release a. The integer goes to *out
 * when out is not NULL; an answer of 0 returns zero_rc (0: no error).
 */
int
st_eval_int(struct store *s, struct st_args *a, const char *what, int zero_rc,
    long long *out)
{
	redisReply *r = NULL;
	int rc;

	rc = st_do(s, a, &r);
	if (rc == 0) {
		if (r->type != REDIS_REPLY_INTEGER) {
			rc = st_bad(what, r);
		} else {
			if (out)
				*out = r->integer;
			if (r->integer == 0)
				rc = zero_rc;
		}
	}
	if (r)
		freeReplyObject(r);
	st_args_release(a);
	return rc;
}

/* --- reply tables -------------------------------------------------------- */

#define ST_FIELD(row, off, type) ((type *)(void *)((char *)(row) + (off)))

/* st_col_str - a malloc'd copy of at most maxlen bytes (all when 0) of string reply e */
static char *
st_col_str(const redisReply *e, size_t maxlen)
{
	return st_dupn(e->str, maxlen && e->len > maxlen ? maxlen : e->len);
}

static int
st_col_strv(const struct st_table *t, const struct st_col *c, const redisReply *e, void *row)
{
	char **v;
	size_t i;

	if (!st_is_array(e, 0) || (c->maxlen && e->elements > c->maxlen))
		return st_bad(t->what, e);
	if (e->elements == 0)
		return 0;
	v = calloc(e->elements, sizeof(*v));
	if (!v)
		return STORE_ERR_NOMEM;
	*ST_FIELD(row, c->off, char **) = v;
	for (i = 0; i < e->elements; i++) {
		if (!st_is_str(e->element[i]))
			return st_bad(t->what, e->element[i]);
		v[i] = st_dup(e->element[i]);
		if (!v[i])
			return STORE_ERR_NOMEM;
		*ST_FIELD(row, c->off2, size_t) = i + 1;
	}
	return 0;
}

static int
st_col_read(const struct st_table *t, const struct st_col *c, const redisReply *e, void *row)
{
	const char *colon;
	int64_t v = 0;
	char *p;

	switch (c->kind) {
	case ST_COL_STR:
	case ST_COL_BYTES:
	case ST_COL_STAMPED:
		if (!st_is_str(e))
			return c->optional ? 0 : st_bad(t->what, e);
		colon = c->kind == ST_COL_STAMPED ? memchr(e->str, ':', e->len) : NULL;
		if (colon && st_parse_i64(e->str, (size_t)(colon - e->str), &v) == 0) {
			*ST_FIELD(row, c->off2, int64_t) = v;
			p = st_dupn(colon + 1, e->len - (size_t)(colon - e->str) - 1);
		} else {
			p = st_col_str(e, c->kind == ST_COL_STR ? c->maxlen : 0);
		}
		if (!p)
			return STORE_ERR_NOMEM;
		free(*ST_FIELD(row, c->off, char *));
		*ST_FIELD(row, c->off, char *) = p;
		if (c->kind == ST_COL_BYTES)
			*ST_FIELD(row, c->off2, size_t) = e->len;
		return 0;
	case ST_COL_I64:
	case ST_COL_INT:
		if (st_int(e, &v) != 0 || (c->kind == ST_COL_INT && (v < 0 || v > INT32_MAX)))
			return c->optional ? 0 : st_bad(t->what, e);
		if (c->kind == ST_COL_INT)
			*ST_FIELD(row, c->off, int) = (int)v;
		else
			*ST_FIELD(row, c->off, int64_t) = v;
		return 0;
	case ST_COL_STRV:
		return st_col_strv(t, c, e, row);
	}
	return STORE_ERR_PROTO;
}

int
st_row_read(const struct st_table *t, const redisReply *const *el, size_t nel, void *row)
{
	size_t i;
	int rc;

	if (nel < t->ncols)
		return st_bad(t->what, NULL);
	for (i = 0; i < t->ncols; i++) {
		rc = st_col_read(t, &t->cols[i], el[i], row);
		if (rc)
			return rc;
	}
	return 0;
}

int
st_field_read(const struct st_table *t, const char *f, size_t len, const redisReply *val,
    void *row)
{
	size_t i;

	for (i = 0; i < t->ncols; i++) {
		const char *name = t->cols[i].name;

		if (name && strlen(name) == len && memcmp(name, f, len) == 0)
			return st_col_read(t, &t->cols[i], val, row);
	}
	return 0;
}

void
st_row_clear(const struct st_table *t, void *row)
{
	const struct st_col *c;
	char **v;
	size_t i, k, n;

	for (i = 0; i < t->ncols; i++) {
		c = &t->cols[i];
		if (c->kind == ST_COL_STRV) {
			v = *ST_FIELD(row, c->off, char **);
			n = *ST_FIELD(row, c->off2, size_t);
			for (k = 0; v && k < n; k++)
				free(v[k]);
			free(v);
			*ST_FIELD(row, c->off, char **) = NULL;
			*ST_FIELD(row, c->off2, size_t) = 0;
		} else if (c->kind != ST_COL_I64 && c->kind != ST_COL_INT) {
			free(*ST_FIELD(row, c->off, char *));
			*ST_FIELD(row, c->off, char *) = NULL;
		}
	}
}

void
st_rows_free(const struct st_table *t, void *rows, size_t n)
{
	size_t i;

	for (i = 0; rows && i < n; i++)
		st_row_clear(t, (char *)rows + i * t->elsize);
	free(rows);
}

int
st_rows_read(const struct st_table *t, const redisReply *r, void **rows, size_t *n)
{
	const redisReply *e;
	size_t i, cnt;
	void *v;
	int rc = 0;

	*rows = NULL;
	*n = 0;
	if (!st_is_array(r, 0) || t->ncols == 0 || (!t->nested && r->elements % t->ncols != 0))
		return st_bad(t->what, r);
	cnt = t->nested ? r->elements : r->elements / t->ncols;
	if (cnt > t->max)
		return st_bad(t->what, r);
	if (cnt == 0)
		return 0;
	v = calloc(cnt, t->elsize);
	if (!v)
		return STORE_ERR_NOMEM;
	for (i = 0; rc == 0 && i < cnt; i++) {
		e = t->nested ? r->element[i] : NULL;
		if (t->nested && !st_is_array(e, t->ncols))
			rc = st_bad(t->what, e);
		else if (t->nested)
			rc = st_row_read(t, (const redisReply *const *)e->element, e->elements,
			    (char *)v + i * t->elsize);
		else
			rc = st_row_read(t, (const redisReply *const *)r->element + i * t->ncols,
			    t->ncols, (char *)v + i * t->elsize);
	}
	if (rc) {
		st_rows_free(t, v, cnt);
		return rc;
	}
	*rows = v;
	*n = cnt;
	return 0;
}

int
st_eval_rows(struct store *s, struct st_args *a, const struct st_table *t, void **rows,
    size_t *n)
{
	redisReply *r = NULL;
	int rc;

	rc = st_do(s, a, &r);
	if (rc == 0)
		rc = st_rows_read(t, r, rows, n);
	if (r)
		freeReplyObject(r);
	st_args_release(a);
	return rc;
}

/* --- lifecycle ----------------------------------------------------------- */

const char *
store_strerror(int rc)
{
	switch (rc) {
	case STORE_OK: return "ok";
	case STORE_ERR_UNAVAILABLE: return "unavailable";
	case STORE_ERR_NOT_FOUND: return "not_found";
	case STORE_ERR_CONFLICT: return "conflict";
	case STORE_ERR_PROTO: return "protocol";
	case STORE_ERR_NOMEM: return "out_of_memory";
	case STORE_ERR_SUPPRESSED: return "suppressed";
	case STORE_ERR_OUTCOME_UNKNOWN: return "outcome_unknown";
	case STORE_ERR_UNREPLICATED: return "unreplicated";
	default: return "unknown";
	}
}

/* st_pk_fill - every partition's fixed key names (ids may name any partition, not only nparts). */
static void
st_pk_fill(struct store *s)
{
	static const char *const names[PK_COUNT] = {
		[PK_PREFIX] = "", [PK_READY] = "ready", [PK_READY_HIGH] = "ready:high",
		[PK_READY_PROJECTS] = "ready:projects", [PK_READY_HIGH_PROJECTS] = "ready:high:projects",
		[PK_DUE] = "due", [PK_SAT] = "sat", [PK_EVENTS] = "events", [PK_SUPP] = "supp",
		[PK_ABANDONED] = "abandoned:", [PK_SUPP_SYNCED] = "supp:synced",
	};

	for (unsigned p = 0; p < ST_MAX_PARTS; p++)
		for (int k = 0; k < PK_COUNT; k++)
			snprintf(s->pk[p][k], sizeof(s->pk[p][k]), "txm{%u}:%s", p, names[k]);
}

struct store *
store_open(const struct redis_addr *addr)
{
	struct store *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	if (addr) {
		s->addr = *addr;
	} else {
		util_strlcpy(s->addr.host, "127.0.0.1", sizeof(s->addr.host));
		s->addr.port = 6379;
	}
	s->addr.path[sizeof(s->addr.path) - 1] = '\0';
	s->addr.host[sizeof(s->addr.host) - 1] = '\0';
	if (s->addr.is_unix)
		snprintf(s->desc, sizeof(s->desc), "unix:%.280s", s->addr.path);
	else if (s->addr.is_sentinel)
		snprintf(s->desc, sizeof(s->desc), "sentinel-master:%.127s", s->addr.master);
	else if (s->addr.is_cluster)
		snprintf(s->desc, sizeof(s->desc), "%.255s:%u", s->addr.seeds[0].host, (unsigned)s->addr.seeds[0].port);
	else
		snprintf(s->desc, sizeof(s->desc), "%.255s:%u", s->addr.host, (unsigned)s->addr.port);
	s->nparts = s->addr.partitions >= 1 && s->addr.partitions <= ST_MAX_PARTS ?
	    (unsigned)s->addr.partitions : 1;
	st_pk_fill(s);
	s->retention_ms = 7LL * 24 * 3600 * 1000;
	s->timeout_ms = -1;
	s->cmd_timeout_ms = s->addr.timeout_ms > 0 ? s->addr.timeout_ms : ST_CMD_TIMEOUT_MS;
	for (unsigned p = 0; p < ST_MAX_PARTS; p++)
		util_strlcpy(s->event_cursor[p], "0-0", sizeof(s->event_cursor[p]));
	if (s->addr.is_cluster) {
		s->cl = st_cluster_open(&s->addr, st_cl_prepare, s);
		if (!s->cl) {
			free(s);
			return NULL;
		}
	}
	st_watch_add(s);        /* redis+sentinel:// only: told of failovers as they happen */
	(void)st_connect(s);
	return s;
}

void
store_close(struct store *s)
{
	if (!s)
		return;
	st_watch_remove(s);     /* first: the watcher must not see the connection go */
	st_watch_set_conn(s, NULL, 0);
	st_cluster_close(s->cl);
	explicit_bzero(s->addr.pass, sizeof(s->addr.pass));
	explicit_bzero(s->addr.sentinel_pass, sizeof(s->addr.sentinel_pass));
	free(s->carry);
	free(s->streams);
	free(s->scratch);
	free(s);
}

int
store_init(struct store *s, char *err, size_t errlen)
{
	int rc;

	if (err && errlen)
		err[0] = '\0';
	if (!s)
		return STORE_ERR_PROTO;
	if (s->c)
		rc = st_prepare(s);
	else
		rc = st_connect(s);
	if (rc == 0 && s->nparts > 1)
		rc = st_supp_sync(s);
	if (rc && err && errlen)
		snprintf(err, errlen, "redis at %s: %s", s->desc, s->why[0] ? s->why :
		    rc == STORE_ERR_UNAVAILABLE ? "unavailable" : "unexpected reply");
	/* Wrong credentials are no outage to wait out: the caller may stop. */
	if (rc && s->auth_failed)
		rc = STORE_ERR_PROTO;
	return rc;
}

/* st_wait_note - log a WAIT that came up short (once), or writes confirmed again. */
static int
st_wait_note(struct store *s, int64_t got, int wait_ms)
{
	if (got < s->addr.min_replicas) {
		if (s->wait_short < INT_MAX && !s->wait_short++)
			log_warn("redis replicas did not confirm a write in time: answering 504 "
			    "outcome_unknown, holding webhooks", "redis=%s replicas=%" PRId64 " want=%d timeout_ms=%d",
			    s->desc, got, s->addr.min_replicas, wait_ms);
		return STORE_ERR_UNREPLICATED;
	}
	if (s->wait_short) {
		log_info("redis replicas confirm writes again", "redis=%s replicas=%" PRId64 " short=%d",
		    s->desc, got, s->wait_short);
		s->wait_short = 0;
	}
	return 0;
}

/*
 * st_cl_wait - store_wait_replicas on a Cluster: the fence and WAIT on
 * every node this handle sent anything to since its last confirmed WAIT
 * (only NULL) or on the nodes of the partitions only[] names, each on the
 * connection that sent (ST_CLUSTER_NO_DIAL), all nodes in one round trip;
 * the fewest replicas any node confirmed is the answer. A connection that
 * sent and was closed since: nothing it sent can be confirmed.
 */
static int
st_cl_wait(struct store *s, const char *want, const char *ms, int wait_ms, const unsigned char *only)
{
	unsigned slots[ST_MAX_PARTS], which[ST_MAX_PARTS];
	struct st_cmd cmds[2 * ST_MAX_PARTS];
	redisReply *rep[2 * ST_MAX_PARTS] = { NULL };
	struct st_args a;
	size_t n = 0, ns = 0;
	long k;
	int64_t got = INT64_MAX;
	int rc, moved = 0;

	if (!only && st_cluster_lost_dirty(s->cl)) {
		st_cluster_clean(s->cl);
		return st_wait_note(s, 0, wait_ms);
	}
	for (unsigned p = 0; p < s->nparts; p++)
		if (!only || only[p])
			slots[ns++] = st_part_slot(p);
	k = st_cluster_dirty_slots(s->cl, slots, ns, which, !only);
	if (k < 0)
		return st_wait_note(s, 0, wait_ms);   /* the connection that wrote is gone */
	if (k == 0)
		return 0;
	rc = st_args_init(&a, 6);
	for (long j = 0; j < k && rc == 0; j++) {
		unsigned p = 0;
		char fence[ST_PK_MAX + 8];

		while (st_part_slot(p) != which[j])
			p++;
		snprintf(fence, sizeof(fence), "%sfence", st_pk(s, p, PK_PREFIX));
		st_adds(&a, "SET");
		st_adds(&a, fence);
		st_adds(&a, "1");
		st_adds(&a, "PX");
		st_adds(&a, "60000");
		rc = st_format(&a, &cmds[n]);
		if (rc)
			break;
		n++;
		st_adds(&a, "WAIT");
		st_adds(&a, want);
		st_adds(&a, ms);
		st_route(&a, p);
		rc = st_format(&a, &cmds[n]);
		if (rc)
			break;
		n++;
	}
	st_args_release(&a);
	if (rc == 0) {
		st_cluster_set_timeout(s->cl, wait_ms + s->cmd_timeout_ms);
		rc = st_cluster_run_many(s->cl, cmds, n, rep, ST_CLUSTER_NO_DIAL);
		st_cluster_set_timeout(s->cl, s->cmd_timeout_ms);
	}
	for (size_t j = 0; j + 1 < n && rc == 0; j += 2) {
		int64_t v;

		if (rep[j]->type == REDIS_REPLY_ERROR) {
			/* the fence did not go where the writes went: that node no longer serves the
			 * slot (MOVED: a failover or handover); not confirmed, and the map is read
			 * again, which closes the connection to a node that is no primary now */
			got = 0;
			moved = 1;
		}
		else if (st_int(rep[j + 1], &v) != 0)
			rc = st_bad("wait", rep[j + 1]);
		else if (v < got)
			got = v;
	}
	for (size_t j = 0; j < n; j++) {
		redisFreeCommand(cmds[j].buf);
		if (rep[j])
			freeReplyObject(rep[j]);
	}
	if (moved)
		(void)st_cluster_refresh(s->cl, 0);
	if (rc == STORE_ERR_UNAVAILABLE)
		return STORE_ERR_UNREPLICATED;   /* the connection that wrote is gone */
	if (rc)
		return rc;
	rc = st_wait_note(s, got, wait_ms);
	if (rc == 0 && !only)
		st_cluster_clean(s->cl);
	return rc;
}

int
store_wait_replicas(struct store *s)
{
	return st_wait_parts(s, NULL);
}

int
st_wait_parts(struct store *s, const unsigned char *only)
{
	char want[16], ms[16];
	const char *fence[5] = { "SET", ST_K_FENCE, "1", "PX", "60000" };
	const char *wait[3] = { "WAIT", want, ms };
	redisReply *r[2] = { NULL, NULL };
	int wait_ms, rc = 0;
	int64_t got;

	if (!s)
		return STORE_ERR_PROTO;
	if (s->addr.min_replicas <= 0)
		return 0;
	wait_ms = s->addr.wait_ms > 0 ? s->addr.wait_ms : 1000;
	snprintf(want, sizeof(want), "%d", s->addr.min_replicas);
	snprintf(ms, sizeof(ms), "%d", wait_ms);
	if (s->cl)
		return st_cl_wait(s, want, ms, wait_ms, only);
	/*
	 * Never a reconnect here: the write to confirm is on the node this
	 * connection reached, and a WAIT on a new one (the next primary after a
	 * failover) would confirm nothing of it. Gone: it cannot be confirmed.
	 */
	if (!s->c)
		return STORE_ERR_UNREPLICATED;
	/* WAIT blocks for up to wait_ms: the socket gets that on top of a command's time */
	rc = st_set_timeout(s, wait_ms + s->cmd_timeout_ms);
	if (rc)
		return rc;
	if (redisAppendCommandArgv(s->c, 5, fence, NULL) != REDIS_OK ||
	    redisAppendCommandArgv(s->c, 3, wait, NULL) != REDIS_OK) {
		st_drop(s, "out of memory");
		return STORE_ERR_NOMEM;
	}
	for (int i = 0; i < 2; i++) {
		void *v = NULL;

		if (redisGetReply(s->c, &v) != REDIS_OK || !v) {
			st_drop(s, s->c->errstr[0] ? s->c->errstr : "i/o error");
			rc = STORE_ERR_UNAVAILABLE;
			goto out;
		}
		r[i] = v;
	}
	st_failover_check(s, r, 2);
	if (r[0]->type == REDIS_REPLY_ERROR) {
		rc = st_bad("wait fence", r[0]);
		goto out;
	}
	if (st_int(r[1], &got) != 0) {
		rc = st_bad("wait", r[1]);
		goto out;
	}
	rc = st_wait_note(s, got, wait_ms);
out:
	for (int i = 0; i < 2; i++)
		if (r[i])
			freeReplyObject(r[i]);
	if (s->c) {
		int t = st_set_timeout(s, s->cmd_timeout_ms);

		if (t && !rc)
			rc = t;
	}
	return rc;
}

/* st_cl_ping - store_ping on a Cluster: every partition's primary answers PONG (one round trip). */
static int
st_cl_ping(struct store *s)
{
	struct st_cmd cmds[ST_MAX_PARTS];
	redisReply *rep[ST_MAX_PARTS] = { NULL };
	struct st_args a;
	unsigned n = 0;
	int rc = st_args_init(&a, 1);

	for (unsigned p = 0; p < s->nparts && rc == 0; p++) {
		st_adds(&a, "PING");
		st_route(&a, p);
		rc = st_format(&a, &cmds[n]);
		if (rc == 0)
			n++;
	}
	st_args_release(&a);
	if (rc == 0)
		rc = st_run(s, cmds, n, rep);
	for (unsigned i = 0; i < n; i++) {
		if (rc == 0 && (!st_is_str(rep[i]) || strcmp(rep[i]->str, "PONG") != 0))
			rc = st_bad("ping", rep[i]);
		redisFreeCommand(cmds[i].buf);
		if (rep[i])
			freeReplyObject(rep[i]);
	}
	return rc;
}

int
store_ping(struct store *s)
{
	const char *argv[1] = { "PING" };
	redisReply *r = NULL;
	int rc;

	if (!s)
		return STORE_ERR_PROTO;
	rc = st_connect(s);
	if (rc)
		return rc;
	if (s->cl)
		return st_cl_ping(s);
	/* with Sentinel, "reachable" means the primary: a node demoted under us answers PING too */
	if (s->addr.is_sentinel) {
		rc = st_role_master(s);
		if (rc && s->c)
			st_drop(s, s->why);
		return rc;
	}
	rc = st_simple(s, 1, argv, &r);
	if (rc)
		return rc;
	if (!st_is_str(r) || strcmp(r->str, "PONG") != 0)
		rc = st_bad("ping", r);
	freeReplyObject(r);
	return rc;
}

int64_t
st_content_keep_ms(const struct store *s)
{
	int64_t keep = s->addr.content_keep_ms;

	if (keep <= 0)
		return 0;
	return keep < s->retention_ms ? keep : s->retention_ms;
}

void
store_set_retention(struct store *s, int64_t seconds)
{
	if (!s || seconds <= 0 || seconds > 10LL * 365 * 24 * 3600)
		return;
	s->retention_ms = seconds * 1000;
}
