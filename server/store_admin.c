/*
 * store_admin.c - the administrative data in Redis: templates (a hash of
 * stored JSON, put/get/delete/list), suppressions (a hash of address ->
 * reason and time), API keys (kept by the SHA-256 of a key, never the key)
 * and the token-bucket rate limits checked with them (store_auth,
 * store_rate_limit). Each write that must be atomic is one script (SC_TPL_*,
 * SC_KEY_*, SC_AUTH, SC_RATELIMIT).
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
st_template_json(const char *name, size_t namelen, const redisReply *json, int64_t created,
    int64_t updated)
{
	char cat[40], uat[40], *buf;
	const char *body = json->str, *end = json->str + json->len;
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

int
store_template_put(struct store *s, const char *name, const char *json, int64_t now_ms,
    int *created)
{
	char kt[ST_KEY_MAX];
	struct st_args a;
	long long v = 0;
	int rc;

	if (created)
		*created = 0;
	if (!s || !json || !st_name_ok(name, 100) ||
	    st_key(kt, sizeof(kt), ST_PREFIX "tpl:", name, NULL))
		return STORE_ERR_PROTO;
	rc = st_eval_begin(s, &a, 10, SC_TPL_PUT, 2);
	if (rc)
		return rc;
	st_adds(&a, kt);
	st_adds(&a, ST_K_TPLS);
	st_adds(&a, name);
	st_adds(&a, json);
	st_addi(&a, now_ms);
	rc = st_eval_int(s, &a, "template put", 0, &v);
	if (rc == 0 && created)
		*created = v == 1;
	return rc;
}

int
store_template_get(struct store *s, const char *name, char **json)
{
	char kt[ST_KEY_MAX];
	const char *argv[5] = { "HMGET", kt, "json", "created", "updated" };
	redisReply *r = NULL;
	int64_t c = 0, u = 0;
	int rc;

	if (json)
		*json = NULL;
	if (!s || !json)
		return STORE_ERR_PROTO;
	if (!st_name_ok(name, 100) || st_key(kt, sizeof(kt), ST_PREFIX "tpl:", name, NULL))
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
	if (!st_is_str(r->element[0])) {
		rc = st_bad("template get json", r->element[0]);
		goto out;
	}
	(void)st_int(r->element[1], &c);
	(void)st_int(r->element[2], &u);
	*json = st_template_json(name, strlen(name), r->element[0], c, u);
	if (!*json)
		rc = st_bad("template json", r->element[0]);
out:
	freeReplyObject(r);
	return rc;
}

int
store_template_delete(struct store *s, const char *name)
{
	char kt[ST_KEY_MAX];
	struct st_args a;
	int rc;

	if (!s)
		return STORE_ERR_PROTO;
	if (!st_name_ok(name, 100) || st_key(kt, sizeof(kt), ST_PREFIX "tpl:", name, NULL))
		return STORE_ERR_NOT_FOUND;
	rc = st_eval_begin(s, &a, 8, SC_TPL_DEL, 2);
	if (rc)
		return rc;
	st_adds(&a, kt);
	st_adds(&a, ST_K_TPLS);
	st_adds(&a, name);
	return st_eval_int(s, &a, "template delete", STORE_ERR_NOT_FOUND, NULL);
}

/*
 * st_rows - check that r is an array of rows of `width` elements and
 * return one zeroed element of `elsize` bytes per row (NULL when there are
 * none). *rc is 0, or a STORE_ERR_* code naming `what`.
 */
static void *
st_rows(const redisReply *r, size_t width, size_t elsize, const char *what, int *rc)
{
	void *v = NULL;

	*rc = 0;
	if (!st_is_array(r, 0) || r->elements % width != 0)
		*rc = st_bad(what, r);
	else if (r->elements && (v = calloc(r->elements / width, elsize)) == NULL)
		*rc = STORE_ERR_NOMEM;
	return v;
}

int
store_template_list(struct store *s, char ***jsons, size_t *n)
{
	struct st_args a;
	redisReply *r = NULL;
	char **v = NULL;
	size_t i, cnt = 0;
	int rc;

	if (jsons)
		*jsons = NULL;
	if (n)
		*n = 0;
	if (!s || !jsons || !n)
		return STORE_ERR_PROTO;
	rc = st_eval_begin(s, &a, 8, SC_TPL_LIST, 1);
	if (rc)
		return rc;
	st_adds(&a, ST_K_TPLS);
	st_adds(&a, ST_PREFIX);
	st_addi(&a, ST_MAX_LIST);
	rc = st_do(s, &a, &r);
	if (rc)
		goto out;
	v = st_rows(r, 4, sizeof(*v), "template list", &rc);
	if (rc)
		goto out;
	for (i = 0; i < r->elements; i += 4) {
		int64_t c = 0, u = 0;

		if (!st_is_str(r->element[i]) || !st_is_str(r->element[i + 1])) {
			rc = st_bad("template list entry", r->element[i]);
			goto out;
		}
		(void)st_int(r->element[i + 2], &c);
		(void)st_int(r->element[i + 3], &u);
		v[cnt] = st_template_json(r->element[i]->str, r->element[i]->len, r->element[i + 1], c, u);
		if (!v[cnt]) {
			log_warn("malformed template skipped", "template=%.100s", r->element[i]->str);
			continue;
		}
		cnt++;
	}
	*jsons = v;
	*n = cnt;
	v = NULL;
out:
	if (v) {
		for (i = 0; i < cnt; i++)
			free(v[i]);
		free(v);
	}
	if (r)
		freeReplyObject(r);
	st_args_release(&a);
	return rc;
}

/* --- suppressions ------------------------------------------------------------ */

#define ST_MAX_EMAIL 320

void
store_suppressions_free(struct store_suppression *v, size_t n)
{
	size_t i;

	if (!v)
		return;
	for (i = 0; i < n; i++) {
		free(v[i].email);
		free(v[i].reason);
	}
	free(v);
}

int
store_suppression_check(struct store *s, const char *const *emails, size_t n, int *flags)
{
	struct st_args a;
	redisReply *r = NULL;
	size_t i;
	int rc;

	if (!s || (n && (!emails || !flags)) || n > 100000)
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
	st_adds(&a, ST_K_SUPP);
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
store_suppression_add(struct store *s, const char *email, const char *reason, int64_t now_ms)
{
	char val[160];
	const char *argv[4] = { "HSET", ST_K_SUPP, email, val };
	redisReply *r = NULL;
	int rc, len;

	if (!s || !st_name_ok(email, ST_MAX_EMAIL) || !st_name_ok(reason, 100))
		return STORE_ERR_PROTO;
	len = snprintf(val, sizeof(val), "%" PRId64 ":%s", now_ms, reason);
	if (len < 0 || (size_t)len >= sizeof(val))
		return STORE_ERR_PROTO;
	rc = st_connect(s);
	if (rc)
		return rc;
	rc = st_simple(s, 4, argv, &r);
	if (rc)
		return rc;
	if (r->type != REDIS_REPLY_INTEGER)
		rc = st_bad("suppression add", r);
	freeReplyObject(r);
	return rc;
}

int
store_suppression_delete(struct store *s, const char *email)
{
	const char *argv[3] = { "HDEL", ST_K_SUPP, email };
	redisReply *r = NULL;
	int rc;

	if (!s)
		return STORE_ERR_PROTO;
	if (!st_name_ok(email, ST_MAX_EMAIL))
		return STORE_ERR_NOT_FOUND;
	rc = st_connect(s);
	if (rc)
		return rc;
	rc = st_simple(s, 3, argv, &r);
	if (rc)
		return rc;
	if (r->type != REDIS_REPLY_INTEGER)
		rc = st_bad("suppression delete", r);
	else if (r->integer == 0)
		rc = STORE_ERR_NOT_FOUND;
	freeReplyObject(r);
	return rc;
}

static int
st_supp_cmp(const void *a, const void *b)
{
	const struct store_suppression *x = a, *y = b;

	return strcmp(x->email, y->email);
}

/* st_supp_from - a field "email" and value "<created_ms>:<reason>". */
static int
st_supp_from(const redisReply *f, const redisReply *val, struct store_suppression *o)
{
	const char *colon;

	if (!st_is_str(f) || !st_is_str(val))
		return st_bad("suppression entry", f);
	colon = memchr(val->str, ':', val->len);
	o->email = st_dup(f);
	if (colon && st_parse_i64(val->str, (size_t)(colon - val->str), &o->created_ms) == 0)
		o->reason = st_dupn(colon + 1, val->len - (size_t)(colon - val->str) - 1);
	else
		o->reason = st_dup(val);
	if (!o->email || !o->reason)
		return STORE_ERR_NOMEM;
	return 0;
}

int
store_suppression_list(struct store *s, struct store_suppression **out, size_t *n)
{
	const char *argv[2] = { "HGETALL", ST_K_SUPP };
	struct store_suppression *v = NULL;
	redisReply *r = NULL;
	size_t i, cnt = 0;
	int rc;

	if (out)
		*out = NULL;
	if (n)
		*n = 0;
	if (!s || !out || !n)
		return STORE_ERR_PROTO;
	rc = st_connect(s);
	if (rc)
		return rc;
	rc = st_simple(s, 2, argv, &r);
	if (rc)
		return rc;
	v = st_rows(r, 2, sizeof(*v), "suppression list", &rc);
	if (rc)
		goto out;
	for (i = 0; i < r->elements; i += 2) {
		cnt++;
		rc = st_supp_from(r->element[i], r->element[i + 1], &v[cnt - 1]);
		if (rc)
			goto out;
	}
	if (cnt > 1)
		qsort(v, cnt, sizeof(*v), st_supp_cmp);
	*out = v;
	*n = cnt;
	v = NULL;
out:
	store_suppressions_free(v, cnt);
	freeReplyObject(r);
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

void
store_apikeys_free(struct store_apikey *v, size_t n)
{
	size_t i;

	if (!v)
		return;
	for (i = 0; i < n; i++) {
		free(v[i].name);
		free(v[i].hash_prefix);
	}
	free(v);
}

int
store_key_create(struct store *s, const char *name, const char *hash_hex, int64_t now_ms)
{
	char kk[ST_KEY_MAX], kn[ST_KEY_MAX];
	struct st_args a;
	int rc;

	if (!s || !st_name_ok(name, ST_MAX_KEYNAME) || !st_hex_ok(hash_hex) ||
	    st_key(kk, sizeof(kk), ST_PREFIX "key:", hash_hex, NULL) ||
	    st_key(kn, sizeof(kn), ST_PREFIX "keyname:", name, NULL))
		return STORE_ERR_PROTO;
	rc = st_eval_begin(s, &a, 10, SC_KEY_CREATE, 3);
	if (rc)
		return rc;
	st_adds(&a, kk);
	st_adds(&a, kn);
	st_adds(&a, ST_K_KEYS);
	st_adds(&a, name);
	st_adds(&a, hash_hex);
	st_addi(&a, now_ms);
	return st_eval_int(s, &a, "key create", STORE_ERR_CONFLICT, NULL);
}

int
store_key_list(struct store *s, struct store_apikey **out, size_t *n)
{
	struct store_apikey *v = NULL;
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
	rc = st_eval_begin(s, &a, 6, SC_KEY_LIST, 1);
	if (rc)
		return rc;
	st_adds(&a, ST_K_KEYS);
	st_adds(&a, ST_PREFIX);
	rc = st_do(s, &a, &r);
	if (rc)
		goto out;
	v = st_rows(r, 4, sizeof(*v), "key list", &rc);
	if (rc)
		goto out;
	for (i = 0; i < r->elements; i += 4) {
		struct store_apikey *k = &v[cnt];

		if (!st_is_str(r->element[i]) || !st_is_str(r->element[i + 1])) {
			rc = st_bad("key list entry", r->element[i]);
			goto out;
		}
		cnt++;
		k->name = st_dup(r->element[i]);
		k->hash_prefix = st_dupn(r->element[i + 1]->str,
		    r->element[i + 1]->len < 12 ? r->element[i + 1]->len : 12);
		if (!k->name || !k->hash_prefix) {
			rc = STORE_ERR_NOMEM;
			goto out;
		}
		if (st_int(r->element[i + 2], &k->created_ms) != 0)
			k->created_ms = 0;
		if (st_int(r->element[i + 3], &k->last_used_ms) != 0)
			k->last_used_ms = 0;
	}
	*out = v;
	*n = cnt;
	v = NULL;
out:
	store_apikeys_free(v, cnt);
	if (r)
		freeReplyObject(r);
	st_args_release(&a);
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

int
store_auth(struct store *s, const char *hash_hex, int64_t now_ms, double rate,
    double burst, char **tenant, int64_t *retry_after_ms)
{
	char kk[ST_KEY_MAX], rs[32], bs[32];
	struct st_args a;
	redisReply *r = NULL;
	int64_t retry = 0;
	int rc;

	if (tenant)
		*tenant = NULL;
	if (retry_after_ms)
		*retry_after_ms = 0;
	if (!s || !tenant || !retry_after_ms || st_rate_args(rate, burst, rs, bs, sizeof(rs)))
		return STORE_ERR_PROTO;
	if (!st_hex_ok(hash_hex) || st_key(kk, sizeof(kk), ST_PREFIX "key:", hash_hex, NULL))
		return STORE_ERR_NOT_FOUND;
	rc = st_eval_begin(s, &a, 10, SC_AUTH, 1);
	if (rc)
		return rc;
	st_adds(&a, kk);
	st_addi(&a, now_ms);
	st_adds(&a, rs);
	st_adds(&a, bs);
	st_adds(&a, ST_PREFIX);
	rc = st_do(s, &a, &r);
	if (rc)
		goto out;
	if (r->type == REDIS_REPLY_NIL) {
		rc = STORE_ERR_NOT_FOUND;
		goto out;
	}
	if (!st_is_array(r, 2) || !st_is_str(r->element[0]) || st_int(r->element[1], &retry) != 0 ||
	    retry < 0) {
		rc = st_bad("auth", r);
		goto out;
	}
	*tenant = st_dup(r->element[0]);
	if (!*tenant) {
		rc = STORE_ERR_NOMEM;
		goto out;
	}
	*retry_after_ms = retry;
out:
	if (r)
		freeReplyObject(r);
	st_args_release(&a);
	return rc;
}

int
store_rate_limit(struct store *s, const char *tenant, int64_t now_ms, double rate,
    double burst, int64_t *retry_after_ms)
{
	char kr[ST_KEY_MAX], rs[32], bs[32];
	struct st_args a;
	redisReply *r = NULL;
	int64_t retry = 0;
	int rc;

	if (retry_after_ms)
		*retry_after_ms = 0;
	if (!s || !retry_after_ms || !st_name_ok(tenant, ST_MAX_KEYNAME) ||
	    st_rate_args(rate, burst, rs, bs, sizeof(rs)) ||
	    st_key(kr, sizeof(kr), ST_PREFIX "rl:", tenant, NULL))
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
	if (rc == 0 && (st_int(r, &retry) != 0 || retry < 0))
		rc = st_bad("rate limit", r);
	if (rc == 0)
		*retry_after_ms = retry;
	if (r)
		freeReplyObject(r);
	st_args_release(&a);
	return rc;
}
