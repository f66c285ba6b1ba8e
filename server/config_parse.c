/*
 * config_parse.c - the pure parsers of configuration values: listen
 * addresses (host:port), the relay URL (smtp:// and smtps://, with
 * credentials), the Redis URL (redis://, unix:// and redis+sentinel://,
 * with an optional ACL user, password and db) and its masked view, and
 * config_secret, the one reader of secret-bearing variables and their
 * NAME_FILE forms (Docker and Kubernetes secrets). Strings in, structs out, so they are unit-tested
 * (tests/unit/test_config.c) and fuzzed (tests/fuzz/fuzz_config.c).
 *
 * It must never print or log a secret (errors name the variable, never
 * its text) and never read the environment except in config_secret; the
 * variable table, loading and `txmail config` are config.c's.
 */
#include "config.h"
#include "config_internal.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "netguard.h"
#include "util.h"

int
config_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -1;
}

static int
hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Percent-decode in[0..len) into out (size outlen). 0, or -1 on bad escape / too long / NUL. */
static int
pct_decode(const char *in, size_t len, char *out, size_t outlen)
{
	size_t o = 0;

	for (size_t i = 0; i < len; i++) {
		int c = (unsigned char)in[i];
		if (c == '%') {
			int hi, lo;
			if (i + 2 >= len)
				return -1;
			hi = hexval((unsigned char)in[i + 1]);
			lo = hexval((unsigned char)in[i + 2]);
			if (hi < 0 || lo < 0)
				return -1;
			c = hi * 16 + lo;
			i += 2;
		}
		if (c == 0 || o + 1 >= outlen)
			return -1;
		out[o++] = (char)c;
	}
	out[o] = '\0';
	return 0;
}

static int
parse_port(const char *s, size_t len, uint16_t *port)
{
	unsigned long v = 0;

	if (len == 0 || len > 5)
		return -1;
	for (size_t i = 0; i < len; i++) {
		if (!isdigit((unsigned char)s[i]))
			return -1;
		v = v * 10 + (unsigned long)(s[i] - '0');
	}
	if (v > 65535)
		return -1;
	*port = (uint16_t)v;
	return 0;
}

/* Split "host:port" / "[v6]:port" / "host" into parts. port_len 0 when absent. */
static int
split_hostport(const char *s, size_t len, const char **host, size_t *hlen,
    const char **port, size_t *plen)
{
	const char *colon;

	*port = NULL;
	*plen = 0;
	if (len > 0 && s[0] == '[') {
		const char *rb = memchr(s, ']', len);
		if (rb == NULL)
			return -1;
		*host = s + 1;
		*hlen = (size_t)(rb - s - 1);
		if ((size_t)(rb - s) + 1 < len) {
			if (rb[1] != ':')
				return -1;
			*port = rb + 2;
			*plen = len - (size_t)(rb - s) - 2;
		}
		return *hlen > 0 ? 0 : -1;
	}
	colon = memrchr(s, ':', len);
	*host = s;
	if (colon != NULL) {
		if (memchr(s, ':', (size_t)(colon - s)) != NULL)
			return -1;   /* bare IPv6 without brackets */
		*hlen = (size_t)(colon - s);
		*port = colon + 1;
		*plen = len - (size_t)(colon - s) - 1;
	} else {
		*hlen = len;
	}
	return 0;
}

int
config_host_ok(const char *h, size_t len)
{
	if (len == 0 || len > 253)
		return 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)h[i];
		if (!(isalnum(c) || c == '.' || c == '-' || c == ':' || c == '_'))
			return 0;
	}
	return 1;
}

int
config_parse_listen(const char *s, char *host, size_t hostlen, uint16_t *port,
    char *err, size_t errlen)
{
	const char *h, *p;
	size_t hl, pl;

	if (split_hostport(s, strlen(s), &h, &hl, &p, &pl) != 0 || p == NULL ||
	    !config_host_ok(h, hl) || hl >= hostlen || parse_port(p, pl, port) != 0)
		return config_err(err, errlen, "invalid listen address \"%s\" (want host:port)", s);
	memcpy(host, h, hl);
	host[hl] = '\0';
	return 0;
}

int
config_parse_relay(const char *url, struct smtp_target *out, char *err, size_t errlen)
{
	const char *p, *end, *at, *hp, *query;
	const char *h, *port;
	size_t hl, pl, len = strlen(url);
	int implicit;

	memset(out, 0, sizeof(*out));
	if (strncasecmp(url, "smtp://", 7) == 0) {
		implicit = 0;
		p = url + 7;
	} else if (strncasecmp(url, "smtps://", 8) == 0) {
		implicit = 1;
		p = url + 8;
	} else {
		/* echo the scheme only: the rest may hold a password */
		return config_err(err, errlen, "relay URL must start with smtp:// or smtps:// (got \"%.*s...\")",
		    (int)(strcspn(url, ":/@?") > 16 ? 16 : strcspn(url, ":/@?")), url);
	}
	end = url + len;
	query = strchr(p, '?');
	hp = query != NULL ? query : end;
	if (hp > p && hp[-1] == '/')
		hp--;
	at = NULL;
	for (const char *q = p; q < hp; q++)
		if (*q == '@')
			at = q;
	if (at != NULL) {
		const char *colon = memchr(p, ':', (size_t)(at - p));
		if (colon == NULL)
			colon = at;
		if (pct_decode(p, (size_t)(colon - p), out->user, sizeof(out->user)) != 0 ||
		    out->user[0] == '\0')
			return config_err(err, errlen, "%s", "relay URL: bad user name");
		if (colon < at && pct_decode(colon + 1, (size_t)(at - colon - 1),
		    out->pass, sizeof(out->pass)) != 0)
			return config_err(err, errlen, "%s", "relay URL: bad password");
		p = at + 1;
	}
	if (split_hostport(p, (size_t)(hp - p), &h, &hl, &port, &pl) != 0 ||
	    !config_host_ok(h, hl) || hl >= sizeof(out->host))
		return config_err(err, errlen, "%s", "relay URL: bad host");
	memcpy(out->host, h, hl);
	out->host[hl] = '\0';
	out->tls = implicit ? SMTP_TLS_IMPLICIT : SMTP_TLS_STARTTLS;
	/*
	 * With credentials and no tls= option, STARTTLS is required: an
	 * opportunistic default would hand the password to anyone who strips
	 * STARTTLS from the EHLO reply. tls=starttls or tls=none say otherwise
	 * explicitly.
	 */
	if (!implicit && out->user[0] != '\0' &&
	    (query == NULL || strstr(query, "tls=") == NULL))
		out->tls = SMTP_TLS_REQUIRED;
	if (query != NULL) {
		const char *q = query + 1;
		while (*q != '\0') {
			const char *amp = strchr(q, '&');
			size_t kl = amp != NULL ? (size_t)(amp - q) : strlen(q);
			if (kl == 8 && strncmp(q, "tls=none", 8) == 0 && !implicit)
				out->tls = SMTP_TLS_NONE;
			else if (kl == 12 && strncmp(q, "tls=starttls", 12) == 0 && !implicit)
				out->tls = SMTP_TLS_STARTTLS;
			else if (kl == 12 && strncmp(q, "tls=required", 12) == 0 && !implicit)
				out->tls = SMTP_TLS_REQUIRED;
			else if (kl == 8 && strncmp(q, "verify=0", 8) == 0)
				out->no_verify = 1;
			else if (kl == 8 && strncmp(q, "verify=1", 8) == 0)
				out->no_verify = 0;
			else {
				/*
				 * Echo the key only. An '@' after the '?' means the
				 * password held an unencoded '?': echo nothing of it.
				 */
				size_t kn = strspn(q, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_");

				if (strchr(query, '@') != NULL)
					return config_err(err, errlen, "%s", "relay URL: '?' before '@' "
					    "(percent-encode '?' in the user name or password as %3F)");
				return config_err(err, errlen, "relay URL: unknown option \"%.*s\" "
				    "(want tls=none|starttls|required, verify=0|1)",
				    (int)(kn > 16 ? 16 : kn), q);
			}
			q += kl;
			if (*q == '&')
				q++;
		}
	}
	if (port != NULL) {
		if (parse_port(port, pl, &out->port) != 0 || out->port == 0)
			return config_err(err, errlen, "%s", "relay URL: bad port");
	} else {
		out->port = implicit ? 465 : out->tls == SMTP_TLS_REQUIRED ? 587 : 25;
	}
	return 0;
}

/* "[user]:password" of a Redis URL, in[0..len), percent-decoded into out. */
static int
redis_userinfo(const char *in, size_t len, struct redis_addr *out, char *err, size_t errlen)
{
	const char *colon = memchr(in, ':', len);

	if (colon == NULL)
		return config_err(err, errlen, "%s", "redis URL: credentials must be user:password@ "
		    "or :password@ (AUTH needs a password)");
	if (pct_decode(in, (size_t)(colon - in), out->user, sizeof(out->user)) != 0)
		return config_err(err, errlen, "%s", "redis URL: bad user name");
	if (pct_decode(colon + 1, len - (size_t)(colon - in) - 1, out->pass, sizeof(out->pass)) != 0 ||
	    out->pass[0] == '\0')
		return config_err(err, errlen, "%s", "redis URL: bad password");
	return 0;
}

static int
redis_db(const char *s, int *db, char *err, size_t errlen)
{
	char *e;
	long v;

	errno = 0;
	v = strtol(s, &e, 10);
	if (errno != 0 || *e != '\0' || e == s || v < 0 || v > 1000000)
		return config_err(err, errlen, "%s", "redis URL: bad db number");
	*db = (int)v;
	return 0;
}

/*
 * unix://[userinfo@]/path[?db=N]: the credentials end at the first '/'
 * (as in any URL), so the path may hold an '@'.
 */
static int
redis_parse_unix(const char *p, struct redis_addr *out, char *err, size_t errlen)
{
	const char *q;
	size_t pl;

	if (*p != '/') {
		const char *slash = strchr(p, '/');

		if (slash == NULL || memchr(p, '@', (size_t)(slash - p)) == NULL)
			return config_err(err, errlen, "%s", "redis URL: unix:// needs an absolute path");
		if (slash[-1] != '@')
			return config_err(err, errlen, "%s", "redis URL: unix://[[user]:password@]/path: "
			    "percent-encode '/' in the user name or password as %2F");
		if (redis_userinfo(p, (size_t)(slash - p - 1), out, err, errlen) != 0)
			return -1;
		p = slash;
	}
	q = strchr(p, '?');
	pl = q != NULL ? (size_t)(q - p) : strlen(p);
	if (pl == 0 || pl >= sizeof(out->path))
		return config_err(err, errlen, "%s", "redis URL: unix:// needs an absolute path");
	memcpy(out->path, p, pl);
	out->path[pl] = '\0';
	out->is_unix = 1;
	if (q != NULL) {
		if (strncmp(q, "?db=", 4) != 0)
			return config_err(err, errlen, "%s", "redis URL: only ?db=N is understood");
		if (redis_db(q + 4, &out->db, err, errlen) != 0)
			return -1;
	}
	return 0;
}

/*
 * redis://[userinfo@]host[:port][/db]: nothing after the host may hold an
 * '@', so the last one ends the credentials and a password may hold any
 * character unencoded but NUL.
 */
static int
redis_parse_tcp(const char *p, struct redis_addr *out, char *err, size_t errlen)
{
	const char *at = strrchr(p, '@'), *slash, *h, *port;
	size_t hl, pl, len;

	if (at != NULL) {
		if (redis_userinfo(p, (size_t)(at - p), out, err, errlen) != 0)
			return -1;
		p = at + 1;
	}
	slash = strchr(p, '/');
	len = slash != NULL ? (size_t)(slash - p) : strlen(p);
	if (split_hostport(p, len, &h, &hl, &port, &pl) != 0 || !config_host_ok(h, hl) ||
	    hl >= sizeof(out->host))
		return config_err(err, errlen, "%s", "redis URL: bad host");
	memcpy(out->host, h, hl);
	out->host[hl] = '\0';
	out->port = 6379;
	if (port != NULL && (parse_port(port, pl, &out->port) != 0 || out->port == 0))
		return config_err(err, errlen, "%s", "redis URL: bad port");
	if (slash != NULL && slash[1] != '\0' && redis_db(slash + 1, &out->db, err, errlen) != 0)
		return -1;
	return 0;
}

/* 1 when m[0..len) is a usable Sentinel master name: 1..127 of [A-Za-z0-9._-] */
static int
redis_master_ok(const char *m, size_t len)
{
	if (len == 0 || len >= REDIS_MASTER_NAME_MAX)
		return 0;
	for (size_t i = 0; i < len; i++)
		if (!isalnum((unsigned char)m[i]) && m[i] != '.' && m[i] != '_' && m[i] != '-')
			return 0;
	return 1;
}

/*
 * redis_hosts - the list p[0..len) of host[:port] separated by ',' into
 * list[0..max), *n of them, each without a port getting def_port. what
 * ("sentinel", "cluster node") names a host in errors.
 */
static int
redis_hosts(const char *p, size_t len, struct redis_hostport *list, size_t max, size_t *n,
    uint16_t def_port, const char *what, char *err, size_t errlen)
{
	const char *end = p + len;

	*n = 0;
	for (const char *h = p; h <= end; ) {
		const char *comma = memchr(h, ',', (size_t)(end - h));
		const char *hh, *port;
		size_t hlen = comma != NULL ? (size_t)(comma - h) : (size_t)(end - h), hl, pl;
		struct redis_hostport *sn;

		if (hlen == 0)
			return config_err(err, errlen, "redis URL: empty %s host", what);
		if (*n == max)
			return config_err(err, errlen, "redis URL: more than %zu %ss", max, what);
		sn = &list[*n];
		if (split_hostport(h, hlen, &hh, &hl, &port, &pl) != 0 || !config_host_ok(hh, hl) ||
		    hl >= sizeof(sn->host))
			return config_err(err, errlen, "redis URL: bad %s host (%s %zu)", what, what, *n + 1);
		memcpy(sn->host, hh, hl);
		sn->host[hl] = '\0';
		sn->port = def_port;
		if (port != NULL && (parse_port(port, pl, &sn->port) != 0 || sn->port == 0))
			return config_err(err, errlen, "redis URL: bad %s port (%s %zu)", what, what, *n + 1);
		(*n)++;
		if (comma == NULL)
			break;
		h = comma + 1;
	}
	return 0;
}

/*
 * redis+sentinel://[userinfo@]host[:port][,host[:port]...]/master[/db]:
 * as redis://, the last '@' ends the credentials (no sentinel host nor
 * master name holds one). The credentials are the data node's.
 */
static int
redis_parse_sentinel(const char *p, struct redis_addr *out, char *err, size_t errlen)
{
	const char *at = strrchr(p, '@'), *slash, *m, *mslash;
	size_t ml;

	if (at != NULL) {
		if (redis_userinfo(p, (size_t)(at - p), out, err, errlen) != 0)
			return -1;
		p = at + 1;
	}
	slash = strchr(p, '/');
	if (slash == NULL)
		return config_err(err, errlen, "%s", "redis URL: redis+sentinel:// needs "
		    "/<master-name> after the sentinels (host:port[,host:port...]/mymaster)");
	if (redis_hosts(p, (size_t)(slash - p), out->sentinels, REDIS_MAX_SENTINELS, &out->nsentinels,
	    26379, "sentinel", err, errlen) != 0)
		return -1;
	m = slash + 1;
	mslash = strchr(m, '/');
	ml = mslash != NULL ? (size_t)(mslash - m) : strlen(m);
	if (ml == 0)
		return config_err(err, errlen, "%s", "redis URL: redis+sentinel:// needs "
		    "/<master-name> after the sentinels (host:port[,host:port...]/mymaster)");
	if (!redis_master_ok(m, ml))
		return config_err(err, errlen, "redis URL: bad master name (1 to %d of "
		    "A-Z a-z 0-9 . _ -)", REDIS_MASTER_NAME_MAX - 1);
	memcpy(out->master, m, ml);
	out->master[ml] = '\0';
	if (mslash != NULL && redis_db(mslash + 1, &out->db, err, errlen) != 0)
		return -1;
	out->is_sentinel = 1;
	return 0;
}

/*
 * redis+cluster://[userinfo@]host[:port][,host[:port]...][/]: seed nodes,
 * any of which can answer CLUSTER SLOTS; the credentials are every node's.
 * No db: a cluster has only db 0 (SELECT is refused there), so a /db is
 * an error rather than silently ignored.
 */
static int
redis_parse_cluster(const char *p, struct redis_addr *out, char *err, size_t errlen)
{
	const char *at = strrchr(p, '@'), *slash;

	if (at != NULL) {
		if (redis_userinfo(p, (size_t)(at - p), out, err, errlen) != 0)
			return -1;
		p = at + 1;
	}
	slash = strchr(p, '/');
	if (slash != NULL && slash[1] != '\0')
		return config_err(err, errlen, "%s", "redis URL: redis+cluster:// takes no /db "
		    "(Redis Cluster has only db 0)");
	if (redis_hosts(p, slash != NULL ? (size_t)(slash - p) : strlen(p), out->seeds,
	    REDIS_MAX_SEEDS, &out->nseeds, 6379, "cluster node", err, errlen) != 0)
		return -1;
	out->is_cluster = 1;
	return 0;
}

int
config_parse_redis(const char *url, struct redis_addr *out, char *err, size_t errlen)
{
	int rc;

	memset(out, 0, sizeof(*out));
	if (strncmp(url, "unix://", 7) == 0)
		rc = redis_parse_unix(url + 7, out, err, errlen);
	else if (strncmp(url, "redis://", 8) == 0)
		rc = redis_parse_tcp(url + 8, out, err, errlen);
	else if (strncmp(url, "redis+sentinel://", 17) == 0)
		rc = redis_parse_sentinel(url + 17, out, err, errlen);
	else if (strncmp(url, "redis+cluster://", 16) == 0)
		rc = redis_parse_cluster(url + 16, out, err, errlen);
	else if (strncmp(url, "rediss://", 9) == 0)
		return config_err(err, errlen, "%s", "redis URL: rediss:// (TLS) is not supported: this "
		    "build's hiredis has no TLS; use redis:// to a Redis on a private network");
	else {
		/* echo the scheme only (what ends at a ':'): the rest may hold a password */
		size_t n = strcspn(url, ":/@?");

		return config_err(err, errlen, "redis URL must be redis://[[user]:password@]host[:port][/db], "
		    "unix://[[user]:password@]/path[?db=N] or redis+sentinel://[[user]:password@]"
		    "host[:port][,host[:port]...]/<master-name>[/db] or redis+cluster://"
		    "[[user]:password@]host[:port][,host[:port]...] (got \"%.*s...\")",
		    url[n] != ':' ? 0 : n > 16 ? 16 : (int)n, url);
	}
	if (rc != 0)
		explicit_bzero(out, sizeof(*out));
	return rc;
}

void
config_redis_masked(const struct redis_addr *a, char *out, size_t outlen)
{
	char cred[sizeof(a->user) + 8] = "", db[24] = "";
	int v6 = strchr(a->host, ':') != NULL;

	if (a->pass[0] != '\0')
		snprintf(cred, sizeof(cred), "%s:***@", a->user);
	if (a->db != 0)
		snprintf(db, sizeof(db), a->is_unix ? "?db=%d" : "/%d", a->db);
	if (a->is_unix) {
		snprintf(out, outlen, "unix://%s%s%s", cred, a->path, db);
	} else if (a->is_sentinel || a->is_cluster) {
		const struct redis_hostport *list = a->is_sentinel ? a->sentinels : a->seeds;
		size_t nlist = a->is_sentinel ? a->nsentinels : a->nseeds;
		int w = snprintf(out, outlen, "%s://%s", a->is_sentinel ? "redis+sentinel" : "redis+cluster",
		    cred);
		size_t n = w > 0 ? (size_t)w : 0;

		for (size_t i = 0; i < nlist && n < outlen; i++) {
			const struct redis_hostport *sn = &list[i];
			int s6 = strchr(sn->host, ':') != NULL;

			w = snprintf(out + n, outlen - n, "%s%s%s%s:%u", i ? "," : "", s6 ? "[" : "",
			    sn->host, s6 ? "]" : "", (unsigned)sn->port);
			n += w > 0 ? (size_t)w : 0;
		}
		if (n < outlen && a->is_sentinel)
			snprintf(out + n, outlen - n, "/%s%s", a->master, db);
	} else
		snprintf(out, outlen, "redis://%s%s%s%s:%u%s", cred, v6 ? "[" : "", a->host,
		    v6 ? "]" : "", (unsigned)a->port, db);
}

#define SECRET_NAME_MAX 64        /* longest variable name config_secret takes */

int
config_secret(const char *name, char *out, size_t outlen, char *err, size_t errlen)
{
	char fname[SECRET_NAME_MAX + sizeof("_FILE")];
	const char *v, *path;
	char *buf = NULL;
	size_t cap, n = 0;
	struct stat st;
	int fd = -1, rc = -1;

	if (outlen == 0 || strlen(name) > SECRET_NAME_MAX)
		abort();   /* broken invariant: callers pass constant names and real buffers */
	snprintf(fname, sizeof(fname), "%s_FILE", name);
	out[0] = '\0';
	v = getenv(name);
	path = getenv(fname);
	if (v != NULL && *v != '\0') {
		size_t vl = strlen(v);

		if (path != NULL && *path != '\0')
			return config_err(err, errlen, "%s and %s are both set: use one", name, fname);
		if (vl >= outlen)
			return config_err(err, errlen, "%s: longer than %zu bytes", name, outlen - 1);
		memcpy(out, v, vl + 1);
		return 0;
	}
	if (path == NULL || *path == '\0')
		return 0;
	/* the longest value, its "\r\n", and one byte more to see that it is too long */
	cap = outlen + 2;
	if ((buf = malloc(cap)) == NULL)
		return config_err(err, errlen, "%s", "out of memory");
	/* O_NONBLOCK: a FIFO without a writer must not hang the start */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		config_err(err, errlen, "%s: cannot read %s: %s", fname, path, strerror(errno));
		goto out;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		config_err(err, errlen, "%s: %s is not a regular file", fname, path);
		goto out;
	}
	while (n < cap) {
		ssize_t r = read(fd, buf + n, cap - n);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			config_err(err, errlen, "%s: cannot read %s: %s", fname, path, strerror(errno));
			goto out;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	if (n > 0 && buf[n - 1] == '\n') {
		n--;
		if (n > 0 && buf[n - 1] == '\r')
			n--;
	}
	if (n >= outlen) {
		config_err(err, errlen, "%s: %s is larger than %zu bytes", fname, path, outlen - 1);
		goto out;
	}
	if (n == 0) {
		config_err(err, errlen, "%s: %s is empty", fname, path);
		goto out;
	}
	if (memchr(buf, '\0', n) != NULL) {
		config_err(err, errlen, "%s: %s holds a NUL byte", fname, path);
		goto out;
	}
	memcpy(out, buf, n);
	out[n] = '\0';
	rc = 0;
out:
	if (fd >= 0)
		close(fd);
	explicit_bzero(buf, cap);
	free(buf);
	return rc;
}
