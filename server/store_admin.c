/*
 * store_admin.c - the administrative data in Redis: templates (a hash of
 * stored JSON, put/get/delete/list), suppressions (a hash of address ->
 * reason and time), API keys (kept by the SHA-256 of a key, never the key)
 * and the token-bucket rate limits checked with them (store_auth,
 * store_rate_limit). Each write that must be atomic is one script (SC_TPL_*,
 * SC_KEY_*, SC_AUTH, SC_RATELIMIT). Templates and suppressions are per
 * project, under the project's key prefix (st_project_prefix); keys and
 * rate limits are global.
 *
 * It must never see a raw API key or decide a limit (callers pass rate and
 * burst), and never trust a reply's shape: list replies go through st_rows
 * and every field is type-checked.
 */
#include "store_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "util.h"

/* --- templates --------------------------------------------------------------- */

static int
st_name_ok(const char *name, size_t max)
{
	size_t n;

	if (!name)
		return 0;
	n = strlen(name);
	return n > 0 && n <= max;
}

/*
 * st_template_json - {"name":..,"created_at":..,"updated_at":.., <stored
 * members>}: the stored object with three members spliced in front.
 */
static char *
st_template_json(const char *name, size_t namelen, const char *json, size_t jsonlen,
    int64_t created, int64_t updated)
{
	char cat[40], uat[40], *buf;
	const char *body = json, *end = json + jsonlen;
	size_t i, len, pos = 0, cap;
	int empty;

	while (body < end && (*body == ' ' || *body == '\t' || *body == '\r' || *body == '\n'))
		body++;
	if (body >= end || *body != '{')
		return NULL;
	body++;
	empty = 1;
	for (i = 0; body + i < end; i++)
		if (!(body[i] == ' ' || body[i] == '\t' || body[i] == '\r' || body[i] == '\n')) {
			empty = body[i] == '}';
			break;
		}
	util_rfc3339(created, cat, sizeof(cat));
	util_rfc3339(updated, uat, sizeof(uat));
	len = (size_t)(end - body);
	cap = 80 + 6 * namelen + strlen(cat) + strlen(uat) + len + 2;
	buf = malloc(cap);
	if (!buf)
		return NULL;
	pos = (size_t)snprintf(buf, cap, "{\"name\":\"");
	for (i = 0; i < namelen; i++) {
		unsigned char c = (unsigned char)name[i];

		if (c == '"' || c == '\\') {
			buf[pos++] = '\\';
			buf[pos++] = (char)c;
		} else if (c < 0x20) {
			pos += (size_t)snprintf(buf + pos, cap - pos, "\\u%04x", c);
		} else {
			buf[pos++] = (char)c;
		}
	}
	pos += (size_t)snprintf(buf + pos, cap - pos, "\",\"created_at\":\"%s\",\"updated_at\":\"%s\"%s",
	    cat, uat, empty ? "" : ",");
	memcpy(buf + pos, body, len);
	buf[pos + len] = '\0';
	return buf;
}

/* st_tpl_keys - a project's tpl:<name> (name may be NULL: then only tpls) and tpls. */
static int
st_tpl_keys(const char *project, const char *name, char *kt, char *kts, size_t len)
{
	char pp[ST_KEY_MAX];

	if (st_project_prefix(pp, sizeof(pp), project) || st_key(kts, len, pp, "tpls", NULL))
		return -1;
	return name ? st_key(kt, len, pp, "tpl:", name) : 0;
}

int
store_template_put(struct store *s, const char *project, const char *name, const char *json,
    int64_t now_ms, int *created)
{
	char kt[ST_KEY_MAX], kts[ST_KEY_MAX];
	struct st_args a;
	long long v = 0;
	int rc;

	if (created)
		*created = 0;
	if (!s || !json || !st_name_ok(name, 100) ||
	    st_tpl_keys(project, name, kt, kts, sizeof(kt)))
		return STORE_ERR_PROTO;
	rc = st_eval_begin(s, &a, 10, SC_TPL_PUT, 2);
	if (rc)
		return rc;
	st_adds(&a, kt);
	st_adds(&a, kts);
	st_adds(&a, name);
	st_adds(&a, json);
	st_addi(&a, now_ms);
	rc = st_eval_int(s, &a, "template put", 0, &v);
	if (rc == 0 && created)
		*created = v == 1;
	return rc;
}

/* a row of the template list: name, stored JSON, created and updated (ms) */
struct st_tpl_row {
	char *name;
	size_t name_len;
	char *json;
	size_t json_len;
	int64_t created_ms, updated_ms;
};
static const struct st_col st_tpl_cols[] = {
	{ ST_COL_BYTES, 0, offsetof(struct st_tpl_row, name), offsetof(struct st_tpl_row, name_len),
	  0, NULL },
	{ ST_COL_BYTES, 0, offsetof(struct st_tpl_row, json), offsetof(struct st_tpl_row, json_len),
	  0, NULL },
	{ ST_COL_I64, 1, offsetof(struct st_tpl_row, created_ms), 0, 0, NULL },
	{ ST_COL_I64, 1, offsetof(struct st_tpl_row, updated_ms), 0, 0, NULL },
};
static const struct st_table st_tpl_table = {
	"template list", st_tpl_cols, sizeof(st_tpl_cols) / sizeof(st_tpl_cols[0]),
	sizeof(struct st_tpl_row), 0, ST_MAX_LIST,
};
/* store_template_get's HMGET json created updated: the same row without the name */
static const struct st_table st_tpl_get_table = {
	"template get", st_tpl_cols + 1, 3, sizeof(struct st_tpl_row), 0, 1,
};

int
store_template_get(struct store *s, const char *project, const char *name, char **json)
{
	char kt[ST_KEY_MAX], kts[ST_KEY_MAX];
	const char *argv[5] = { "HMGET", kt, "json", "created", "updated" };
	struct st_tpl_row row = { 0 };
	redisReply *r = NULL;
	int rc;

	if (json)
		*json = NULL;
	if (!s || !json)
		return STORE_ERR_PROTO;
	if (!st_name_ok(name, 100) || st_tpl_keys(project, name, kt, kts, sizeof(kt)))
		return STORE_ERR_NOT_FOUND;
	rc = st_connect(s);
	if (rc)
		return rc;
	rc = st_simple(s, 5, argv, &r);
	if (rc)
		return rc;
	if (!st_is_array(r, 3)) {
		rc = st_bad("template get", r);
		goto out;
	}
	if (r->element[0]->type == REDIS_REPLY_NIL) {
		rc = STORE_ERR_NOT_FOUND;
		goto out;
	}
	rc = st_row_read(&st_tpl_get_table, (const redisReply *const *)r->element, r->elements, &row);
	if (rc)
		goto out;
	*json = st_template_json(name, strlen(name), row.json, row.json_len, row.created_ms,
	    row.updated_ms);
	if (!*json)
		rc = st_bad("template json", r->element[0]);
out:
	st_row_clear(&st_tpl_get_table, &row);
	freeReplyObject(r);
	return rc;
}

int
store_template_delete(struct store *s, const char *project, const char *name)
{
	char kt[ST_KEY_MAX], kts[ST_KEY_MAX];
	struct st_args a;
	int rc;

	if (!s)
		return STORE_ERR_PROTO;
	if (!st_name_ok(name, 100) || st_tpl_keys(project, name, kt, kts, sizeof(kt)))
		return STORE_ERR_NOT_FOUND;
	rc = st_eval_begin(s, &a, 8, SC_TPL_DEL, 2);
	if (rc)
		return rc;
	st_adds(&a, kt);
	st_adds(&a, kts);
	st_adds(&a, name);
	return st_eval_int(s, &a, "template delete", STORE_ERR_NOT_FOUND, NULL);
}

/*
 * st_page_reply - a page script's {next, rows} answer: rows read by t into
 * rows, n, *next a copy of next (NULL when ""). 0 or STORE_ERR_*.
 */
static int
st_page_reply(const struct st_table *t, const redisReply *r, void **rows, size_t *n, char **next)
{
	const redisReply *nx;
	int rc;

	if (!st_is_array(r, 2) || r->elements != 2 || !r->element[0] || !r->element[1] ||
	    r->element[0]->type != REDIS_REPLY_STRING)
		return st_bad(t->what, r);
	nx = r->element[0];
	rc = st_rows_read(t, r->element[1], rows, n);
	if (rc)
		return rc;
	if (nx->len > 0) {
		*next = strndup(nx->str, nx->len);
		if (!*next) {
			st_rows_free(t, *rows, *n);
			*rows = NULL;
			*n = 0;
			return STORE_ERR_NOMEM;
		}
	}
	return 0;
}

int
store_template_list(struct store *s, const char *project, const char *after, size_t limit,
    char ***jsons, size_t *n, char **next)
{
	char kts[ST_KEY_MAX], pp[ST_KEY_MAX];
	struct st_tpl_row *rows = NULL;
	struct st_args a;
	redisReply *r = NULL;
	void *p = NULL;
	char **v = NULL;
	size_t i, nrows = 0, cnt = 0;
	int rc;

	if (jsons)
		*jsons = NULL;
	if (n)
		*n = 0;
	if (next)
		*next = NULL;
	if (!s || !jsons || !n || !next || limit < 1 || limit > STORE_PAGE_MAX ||
	    (after && strlen(after) > ST_KEY_MAX) || st_project_prefix(pp, sizeof(pp), project) ||
	    st_key(kts, sizeof(kts), pp, "tpls", NULL))
		return STORE_ERR_PROTO;
	rc = st_eval_begin(s, &a, 9, SC_TPL_LIST, 1);
	if (rc)
		return rc;
	st_adds(&a, kts);
	st_adds(&a, pp);
	st_addi(&a, (int64_t)limit);
	st_adds(&a, after ? after : "");
	rc = st_do(s, &a, &r);
	if (rc == 0)
		rc = st_page_reply(&st_tpl_table, r, &p, &nrows, next);
	rows = p;
	if (rc || nrows == 0)
		goto out;
	v = calloc(nrows, sizeof(*v));
	if (!v) {
		rc = STORE_ERR_NOMEM;
		goto out;
	}
	for (i = 0; i < nrows; i++) {
		v[cnt] = st_template_json(rows[i].name, rows[i].name_len, rows[i].json,
		    rows[i].json_len, rows[i].created_ms, rows[i].updated_ms);
		if (!v[cnt]) {
			log_warn("malformed template skipped", "template=%.100s", rows[i].name);
			continue;
		}
		cnt++;
	}
	*jsons = v;
	*n = cnt;
out:
	if (rc) {
		free(*next);
		*next = NULL;
	}
	if (r)
		freeReplyObject(r);
	st_args_release(&a);
	st_rows_free(&st_tpl_table, rows, nrows);
	return rc;
}

/* --- suppressions ------------------------------------------------------------ */



static const struct st_col st_supp_cols[] = {
	{ ST_COL_STR, 0, offsetof(struct store_suppression, email), 0, 0, NULL },
	/* the value is "<created_ms>:<reason>" */
	{ ST_COL_STAMPED, 0, offsetof(struct store_suppression, reason),
	  offsetof(struct store_suppression, created_ms), 0, NULL },
};
static const struct st_table st_supp_table = {
	"suppression list", st_supp_cols, sizeof(st_supp_cols) / sizeof(st_supp_cols[0]),
	sizeof(struct store_suppression), 0, SIZE_MAX,  /* HGETALL: as many as there are */
};

void
store_suppressions_free(struct store_suppression *v, size_t n)
{
	st_rows_free(&st_supp_table, v, n);
}

/* st_supp_key - the suppression list of a project. */
static int
st_supp_key(char *buf, size_t len, const char *project)
{
	char pp[ST_KEY_MAX];

	return st_project_prefix(pp, sizeof(pp), project) || st_key(buf, len, pp, "supp", NULL) ?
	    -1 : 0;
}

int
store_suppression_check(struct store *s, const char *project, const char *const *emails,
    size_t n, int *flags)
{
	char ks[ST_KEY_MAX];
	struct st_args a;
	redisReply *r = NULL;
	size_t i;
	int rc;

	if (!s || (n && (!emails || !flags)) || n > 100000 || st_supp_key(ks, sizeof(ks), project))
		return STORE_ERR_PROTO;
	for (i = 0; i < n; i++) {
		if (!emails[i])
			return STORE_ERR_PROTO;
		flags[i] = 0;
	}
	if (n == 0)
		return 0;
	rc = st_connect(s);
	if (rc)
		return rc;
	rc = st_args_init(&a, 2 + n);
	if (rc)
		return rc;
	st_adds(&a, "HMGET");
	st_adds(&a, ks);
	for (i = 0; i < n; i++)
		st_adds(&a, emails[i]);
	rc = st_do(s, &a, &r);
	if (rc == 0 && (!st_is_array(r, n) || r->elements != n))
		rc = st_bad("suppression check", r);
	for (i = 0; rc == 0 && i < n; i++)
		flags[i] = r->element[i] && r->element[i]->type != REDIS_REPLY_NIL;
	if (r)
		freeReplyObject(r);
	st_args_release(&a);
	return rc;
}

int
st_supp_write(struct store *s, int skip, const char *project, const char *email, const char *val,
    long long *first)
{
	struct st_batch b;
	char ks[ST_KEY_MAX], pp[ST_KEY_MAX];
	unsigned p;
	size_t i;
	int rc;

	if (first)
		*first = 0;
	memset(&b, 0, sizeof(b));
	rc = st_connect(s);
	if (rc == 0)
		rc = st_batch_init(&b, 2 * (size_t)s->nparts, 4);
	/* partition 0's list first (the one the API reads), then each copy; each with its index */
	for (p = 0; p < s->nparts && rc == 0; p++) {
		if ((int)p == skip)
			continue;
		if (st_project_prefix_in(s, p, pp, sizeof(pp), project) ||
		    st_key(ks, sizeof(ks), pp, "supp", NULL)) {
			rc = STORE_ERR_PROTO;
			break;
		}
		st_adds(&b.a, val ? "HSET" : "HDEL");
		st_adds(&b.a, ks);
		st_adds(&b.a, email);
		if (val)
			st_adds(&b.a, val);
		rc = st_batch_add(&b);
		if (rc == 0 && st_key(ks, sizeof(ks), pp, "suppidx", NULL))
			rc = STORE_ERR_PROTO;
		if (rc)
			break;
		st_adds(&b.a, val ? "ZADD" : "ZREM");
		st_adds(&b.a, ks);
		if (val)
			st_adds(&b.a, "0");
		st_adds(&b.a, email);
		rc = st_batch_add(&b);
	}
	if (rc == 0 && b.n > 0)
		rc = st_batch_run(s, &b);
	for (i = 0; i < b.n && rc == 0; i++) {
		if (!b.rep[i] || b.rep[i]->type != REDIS_REPLY_INTEGER)
			rc = st_bad(val ? "suppression add" : "suppression delete", b.rep[i]);
		else if (i == 0 && first)
			*first = b.rep[i]->integer;
	}
	st_batch_release(&b);
	return rc;
}

int
store_suppression_add(struct store *s, const char *project, const char *email,
    const char *reason, int64_t now_ms)
{
	char val[160], ks[ST_KEY_MAX];
	int len;

	if (!s || !st_name_ok(email, ST_MAX_EMAIL) || !st_name_ok(reason, 100) ||
	    st_supp_key(ks, sizeof(ks), project))
		return STORE_ERR_PROTO;
	len = snprintf(val, sizeof(val), "%" PRId64 ":%s", now_ms, reason);
	if (len < 0 || (size_t)len >= sizeof(val))
		return STORE_ERR_PROTO;
	return st_supp_write(s, -1, project, email, val, NULL);
}

int
store_suppression_delete(struct store *s, const char *project, const char *email)
{
	char ks[ST_KEY_MAX];
	long long n = 0;
	int rc;

	if (!s || st_supp_key(ks, sizeof(ks), project))
		return STORE_ERR_PROTO;
	if (!st_name_ok(email, ST_MAX_EMAIL))
		return STORE_ERR_NOT_FOUND;
	rc = st_supp_write(s, -1, project, email, NULL, &n);
	return rc == 0 && n == 0 ? STORE_ERR_NOT_FOUND : rc;
}

int
store_suppression_list(struct store *s, const char *project, const char *after,
    size_t limit, struct store_suppression **out, size_t *n, char **next)
{
	char ks[ST_KEY_MAX], ki[ST_KEY_MAX + 4];
	struct st_args a;
	redisReply *r = NULL;
	void *v = NULL;
	int rc;

	if (out)
		*out = NULL;
	if (n)
		*n = 0;
	if (next)
		*next = NULL;
	if (!s || !out || !n || !next || limit < 1 || limit > STORE_PAGE_MAX ||
	    (after && strlen(after) > ST_KEY_MAX) || st_supp_key(ks, sizeof(ks), project) ||
	    st_key(ki, sizeof(ki), ks, "idx", NULL))
		return STORE_ERR_PROTO;
	rc = st_eval_begin(s, &a, 8, SC_SUPP_PAGE, 2);
	if (rc)
		return rc;
	st_adds(&a, ks);
	st_adds(&a, ki);
	st_addi(&a, (int64_t)limit);
	st_adds(&a, after ? after : "");
	rc = st_do(s, &a, &r);
	if (rc == 0)
		rc = st_page_reply(&st_supp_table, r, &v, n, next);
	*out = v;
	if (r)
		freeReplyObject(r);
	st_args_release(&a);
	return rc;
}

/* --- API keys and rate limits ------------------------------------------------- */

#define ST_MAX_KEYNAME 100

static int
st_hex_ok(const char *h)
{
	size_t i, n;

	if (!h)
		return 0;
	n = strlen(h);
	if (n != 64)
		return 0;
	for (i = 0; i < n; i++)
		if (!((h[i] >= '0' && h[i] <= '9') || (h[i] >= 'a' && h[i] <= 'f')))
			return 0;
	return 1;
}

/* key_list.lua's rows: name hash created last_used project scope allow */
static const struct st_col st_key_cols[] = {
	{ ST_COL_STR, 0, offsetof(struct store_apikey, name), 0, 0, NULL },
	{ ST_COL_STR, 0, offsetof(struct store_apikey, hash_prefix), 0, 12, NULL },
	{ ST_COL_I64, 1, offsetof(struct store_apikey, created_ms), 0, 0, NULL },
	{ ST_COL_I64, 1, offsetof(struct store_apikey, last_used_ms), 0, 0, NULL },
	{ ST_COL_STR, 0, offsetof(struct store_apikey, project), 0, 0, NULL },
	{ ST_COL_STR, 0, offsetof(struct store_apikey, scope), 0, 0, NULL },
	{ ST_COL_STR, 0, offsetof(struct store_apikey, allow), 0, 0, NULL },
};
static const struct st_table st_key_table = {
	"key list", st_key_cols, sizeof(st_key_cols) / sizeof(st_key_cols[0]),
	sizeof(struct store_apikey), 0, ST_MAX_LIST,
};

void
store_apikeys_free(struct store_apikey *v, size_t n)
{
	st_rows_free(&st_key_table, v, n);
}

/* st_allow_ok - 1 when allow is a short string of what a CIDR list holds. */
static int
st_allow_ok(const char *allow)
{
	size_t n = 0;

	if (!allow)
		return 0;
	for (; allow[n]; n++) {
		char c = allow[n];

		if (n >= 4096 || !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
		    (c >= 'A' && c <= 'F') || c == ':' || c == '.' || c == '/' || c == ','))
			return 0;
	}
	return 1;
}

int
store_key_create(struct store *s, const struct store_key_attrs *k, const char *hash_hex,
    int64_t now_ms)
{
	char kk[ST_KEY_MAX], kn[ST_KEY_MAX];
	struct st_args a;
	int rc;

	if (!s || !k || !st_name_ok(k->name, ST_MAX_KEYNAME) ||
	    !st_name_ok(k->project, ST_MAX_KEYNAME) || !st_name_ok(k->scope, 16) ||
	    !st_allow_ok(k->allow) || !st_hex_ok(hash_hex) ||
	    st_key(kk, sizeof(kk), ST_PREFIX "key:", hash_hex, NULL) ||
	    st_key(kn, sizeof(kn), ST_PREFIX "keyname:", k->name, NULL))
		return STORE_ERR_PROTO;
	rc = st_eval_begin(s, &a, 13, SC_KEY_CREATE, 3);
	if (rc)
		return rc;
	st_adds(&a, kk);
	st_adds(&a, kn);
	st_adds(&a, ST_K_KEYS);
	st_adds(&a, k->name);
	st_adds(&a, hash_hex);
	st_addi(&a, now_ms);
	st_adds(&a, k->project);
	st_adds(&a, k->scope);
	st_adds(&a, k->allow);
	return st_eval_int(s, &a, "key create", STORE_ERR_CONFLICT, NULL);
}

int
store_key_list(struct store *s, struct store_apikey **out, size_t *n)
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
	rc = st_eval_begin(s, &a, 6, SC_KEY_LIST, 1);
	if (rc)
		return rc;
	st_adds(&a, ST_K_KEYS);
	st_adds(&a, ST_PREFIX);
	rc = st_eval_rows(s, &a, &st_key_table, &v, n);
	*out = v;
	return rc;
}

int
store_key_revoke(struct store *s, const char *name)
{
	char kn[ST_KEY_MAX];
	struct st_args a;
	int rc;

	if (!s)
		return STORE_ERR_PROTO;
	if (!st_name_ok(name, ST_MAX_KEYNAME) ||
	    st_key(kn, sizeof(kn), ST_PREFIX "keyname:", name, NULL))
		return STORE_ERR_NOT_FOUND;
	rc = st_eval_begin(s, &a, 8, SC_KEY_REVOKE, 2);
	if (rc)
		return rc;
	st_adds(&a, kn);
	st_adds(&a, ST_K_KEYS);
	st_adds(&a, name);
	st_adds(&a, ST_PREFIX);
	return st_eval_int(s, &a, "key revoke", STORE_ERR_NOT_FOUND, NULL);
}

/* st_rate_args - rate and burst as decimal strings for the bucket. */
static int
st_rate_args(double rate, double burst, char *rs, char *bs, size_t len)
{
	int a, b;

	if (!(rate == rate) || !(burst == burst) || rate > 1e9 || burst > 1e9)
		return -1;
	a = snprintf(rs, len, "%.9g", rate > 0 ? rate : 0.0);
	b = snprintf(bs, len, "%.9g", burst > 1 ? burst : 1.0);
	return (a < 0 || (size_t)a >= len || b < 0 || (size_t)b >= len) ? -1 : 0;
}

/* the auth script's answer for a known key: [name, project, scope, allow, retry_after_ms, tokens_left, full_ms] */
static const struct st_col st_auth_cols[] = {
	{ ST_COL_STR, 0, offsetof(struct store_auth_result, name), 0, 0, NULL },
	{ ST_COL_STR, 0, offsetof(struct store_auth_result, project), 0, 0, NULL },
	{ ST_COL_STR, 0, offsetof(struct store_auth_result, scope), 0, 0, NULL },
	{ ST_COL_STR, 0, offsetof(struct store_auth_result, allow), 0, 0, NULL },
	{ ST_COL_I64, 0, offsetof(struct store_auth_result, retry_after_ms), 0, 0, NULL },
	{ ST_COL_I64, 0, offsetof(struct store_auth_result, tokens_left), 0, 0, NULL },
	{ ST_COL_I64, 0, offsetof(struct store_auth_result, full_ms), 0, 0, NULL },
};
static const struct st_table st_auth_table = {
	"auth", st_auth_cols, sizeof(st_auth_cols) / sizeof(st_auth_cols[0]),
	sizeof(struct store_auth_result), 1, 1,
};

void
store_auth_release(struct store_auth_result *r)
{
	if (!r)
		return;
	st_row_clear(&st_auth_table, r);
	memset(r, 0, sizeof(*r));
}

int
store_auth(struct store *s, const char *hash_hex, int64_t now_ms, double rate,
    double burst, int charge, struct store_auth_result *out)
{
	char kk[ST_KEY_MAX], rs[32], bs[32];
	struct st_args a;
	redisReply *r = NULL;
	int rc;

	if (out)
		memset(out, 0, sizeof(*out));
	if (!s || !out || st_rate_args(rate, burst, rs, bs, sizeof(rs)))
		return STORE_ERR_PROTO;
	if (!st_hex_ok(hash_hex) || st_key(kk, sizeof(kk), ST_PREFIX "key:", hash_hex, NULL))
		return STORE_ERR_NOT_FOUND;
	rc = st_eval_begin(s, &a, 11, SC_AUTH, 1);
	if (rc)
		return rc;
	st_adds(&a, kk);
	st_addi(&a, now_ms);
	st_adds(&a, rs);
	st_adds(&a, bs);
	st_adds(&a, ST_PREFIX);
	st_adds(&a, charge ? "1" : "0");
	rc = st_do(s, &a, &r);
	if (rc)
		goto out;
	if (r->type == REDIS_REPLY_NIL) {
		rc = STORE_ERR_NOT_FOUND;
		goto out;
	}
	if (!st_is_array(r, st_auth_table.ncols)) {
		rc = st_bad("auth", r);
		goto out;
	}
	rc = st_row_read(&st_auth_table, (const redisReply *const *)r->element, r->elements, out);
	/* retry -1: a key with an allowlist, read and not charged (charge 0) */
	if (rc == 0 && (out->retry_after_ms < -1 || (charge && out->retry_after_ms < 0)))
		rc = st_bad("auth", r);
	if (rc) {
		store_auth_release(out);
		goto out;
	}
	out->charged = out->retry_after_ms >= 0;
	if (out->retry_after_ms < 0)
		out->retry_after_ms = 0;
	if (out->tokens_left < 0 || out->full_ms < 0) {
		rc = st_bad("auth", r);
		store_auth_release(out);
	}
out:
	if (r)
		freeReplyObject(r);
	st_args_release(&a);
	return rc;
}

int
store_rate_limit(struct store *s, const char *project, int64_t now_ms, double rate,
    double burst, struct store_rate *out)
{
	char kr[ST_KEY_MAX], rs[32], bs[32];
	struct st_args a;
	redisReply *r = NULL;
	int64_t v[3] = { 0, 0, 0 };
	int rc;

	if (out)
		memset(out, 0, sizeof(*out));
	if (!s || !out || !st_name_ok(project, ST_MAX_KEYNAME) ||
	    st_rate_args(rate, burst, rs, bs, sizeof(rs)) ||
	    st_key(kr, sizeof(kr), ST_PREFIX "rl:", project, NULL))
		return STORE_ERR_PROTO;
	if (rate <= 0)
		return 0;
	rc = st_eval_begin(s, &a, 8, SC_RATELIMIT, 1);
	if (rc)
		return rc;
	st_adds(&a, kr);
	st_addi(&a, now_ms);
	st_adds(&a, rs);
	st_adds(&a, bs);
	rc = st_do(s, &a, &r);
	/* {retry_after_ms, tokens_left, full_ms}, none negative */
	if (rc == 0 && !st_is_array(r, 3))
		rc = st_bad("rate limit", r);
	for (size_t i = 0; rc == 0 && i < 3; i++)
		if (r->elements != 3 || st_int(r->element[i], &v[i]) != 0 || v[i] < 0)
			rc = st_bad("rate limit", r);
	if (rc == 0) {
		out->retry_after_ms = v[0];
		out->tokens_left = v[1];
		out->full_ms = v[2];
	}
	if (r)
		freeReplyObject(r);
	st_args_release(&a);
	return rc;
}

/*
 * st_supp_copy - copy the hash src (a partition 0 suppression list) into
 * the same name in partition k, HSCAN 1,000 fields at a time.
 */
static int
st_supp_copy(struct store *s, unsigned k, const char *src)
{
	char dst[ST_KEY_MAX], cursor[32] = "0";
	struct st_args a;
	redisReply *r = NULL, *w = NULL;
	int rc = 0;

	if (strncmp(src, ST_PREFIX, strlen(ST_PREFIX)) != 0 ||
	    st_key(dst, sizeof(dst), st_pk(s, k, PK_PREFIX), src + strlen(ST_PREFIX), NULL))
		return STORE_ERR_PROTO;
	memset(&a, 0, sizeof(a));
	do {
		const char *argv[6] = { "HSCAN", src, cursor, "COUNT", "1000", NULL };
		const redisReply *f;

		rc = st_simple(s, 5, argv, &r);
		if (rc)
			break;
		if (!st_is_array(r, 2) || !st_is_str(r->element[0]) || r->element[0]->len >= sizeof(cursor) ||
		    !st_is_array(r->element[1], 0) || r->element[1]->elements % 2 != 0) {
			rc = st_bad("hscan", r);
			break;
		}
		memcpy(cursor, r->element[0]->str, r->element[0]->len + 1);
		f = r->element[1];
		if (f->elements > 0) {
			rc = st_args_init(&a, 2 + f->elements);
			if (rc)
				break;
			st_adds(&a, "HSET");
			st_adds(&a, dst);
			for (size_t i = 0; i < f->elements; i++)
				st_add(&a, f->element[i]->str, f->element[i]->len);
			rc = st_do(s, &a, &w);
			if (rc == 0 && w->type != REDIS_REPLY_INTEGER)
				rc = st_bad("suppression copy", w);
			st_args_release(&a);
			if (w)
				freeReplyObject(w);
			w = NULL;
		}
		freeReplyObject(r);
		r = NULL;
	} while (rc == 0 && strcmp(cursor, "0") != 0);
	if (r)
		freeReplyObject(r);
	return rc;
}

/* st_supp_lists - the names of partition 0's suppression lists (SCAN); *n of them in *out. */
static int
st_supp_lists(struct store *s, char ***out, size_t *n)
{
	char cursor[32] = "0", **v = NULL;
	size_t cnt = 0;
	redisReply *r = NULL;
	int rc = 0;

	*out = NULL;
	*n = 0;
	v = malloc(sizeof(*v));
	if (!v || !(v[0] = strdup(ST_PREFIX "supp"))) {
		free(v);
		return STORE_ERR_NOMEM;
	}
	cnt = 1;
	do {
		const char *argv[6] = { "SCAN", cursor, "MATCH", ST_PREFIX "prj:*:supp", "COUNT", "1000" };
		const redisReply *ks;

		rc = st_simple(s, 6, argv, &r);
		if (rc)
			break;
		if (!st_is_array(r, 2) || !st_is_str(r->element[0]) || r->element[0]->len >= sizeof(cursor) ||
		    !st_is_array(r->element[1], 0)) {
			rc = st_bad("scan", r);
			break;
		}
		memcpy(cursor, r->element[0]->str, r->element[0]->len + 1);
		ks = r->element[1];
		for (size_t i = 0; i < ks->elements && rc == 0; i++) {
			char **nv;

			if (!st_is_str(ks->element[i]) || ks->element[i]->len >= ST_KEY_MAX - 8)
				continue;
			nv = realloc(v, (cnt + 1) * sizeof(*v));
			if (!nv || !(nv[cnt] = st_dup(ks->element[i]))) {
				if (nv)
					v = nv;
				rc = STORE_ERR_NOMEM;
				break;
			}
			v = nv;
			cnt++;
		}
		freeReplyObject(r);
		r = NULL;
	} while (rc == 0 && strcmp(cursor, "0") != 0);
	if (r)
		freeReplyObject(r);
	if (rc) {
		while (cnt > 0)
			free(v[--cnt]);
		free(v);
		return rc;
	}
	*out = v;
	*n = cnt;
	return 0;
}

int
st_supp_sync(struct store *s)
{
	char **lists = NULL;
	size_t nl = 0, i;
	redisReply *r = NULL;
	int rc = 0;

	for (unsigned k = 1; k < s->nparts && rc == 0; k++) {
		const char *ex[2] = { "EXISTS", st_pk(s, k, PK_SUPP_SYNCED) };
		const char *set[3] = { "SET", st_pk(s, k, PK_SUPP_SYNCED), "1" };

		rc = st_simple(s, 2, ex, &r);
		if (rc)
			break;
		if (r->type != REDIS_REPLY_INTEGER) {
			rc = st_bad("exists", r);
			break;
		}
		if (r->integer == 0) {
			if (!lists)
				rc = st_supp_lists(s, &lists, &nl);
			for (i = 0; i < nl && rc == 0; i++)
				rc = st_supp_copy(s, k, lists[i]);
			if (rc == 0) {
				freeReplyObject(r);
				r = NULL;
				rc = st_simple(s, 3, set, &r);
				if (rc == 0 && r->type != REDIS_REPLY_STATUS)
					rc = st_bad("set", r);
			}
			if (rc == 0)
				log_info("suppression lists copied into a new partition", "partition=%u lists=%zu",
				    k, nl);
		}
		if (r)
			freeReplyObject(r);
		r = NULL;
	}
	for (i = 0; i < nl; i++)
		free(lists[i]);
	free(lists);
	return rc;
}
