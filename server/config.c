/*
 * config.c - configuration from TXMAIL_* environment variables.
 *
 * The URL and address parsers are pure (strings in, structs out) so they
 * are unit-tested and fuzzed; config_load is the only function here that
 * reads the environment. Secrets are parsed here and never printed:
 * config_describe masks them. Every secret-bearing variable goes through
 * config_secret, so each also has a NAME_FILE form (Docker/Kubernetes
 * secrets); no error message ever carries a secret's text.
 */
#include "config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dkim_keys.h"
#include "log.h"
#include "netguard.h"
#include "shaper.h"
#include "util.h"

static int cfg_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int
cfg_err(char *err, size_t errlen, const char *fmt, ...)
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

static int
host_ok(const char *h, size_t len)
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
	    !host_ok(h, hl) || hl >= hostlen || parse_port(p, pl, port) != 0)
		return cfg_err(err, errlen, "invalid listen address \"%s\" (want host:port)", s);
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
		return cfg_err(err, errlen, "relay URL must start with smtp:// or smtps:// (got \"%.*s...\")",
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
			return cfg_err(err, errlen, "%s", "relay URL: bad user name");
		if (colon < at && pct_decode(colon + 1, (size_t)(at - colon - 1),
		    out->pass, sizeof(out->pass)) != 0)
			return cfg_err(err, errlen, "%s", "relay URL: bad password");
		p = at + 1;
	}
	if (split_hostport(p, (size_t)(hp - p), &h, &hl, &port, &pl) != 0 ||
	    !host_ok(h, hl) || hl >= sizeof(out->host))
		return cfg_err(err, errlen, "%s", "relay URL: bad host");
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
					return cfg_err(err, errlen, "%s", "relay URL: '?' before '@' "
					    "(percent-encode '?' in the user name or password as %3F)");
				return cfg_err(err, errlen, "relay URL: unknown option \"%.*s\" "
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
			return cfg_err(err, errlen, "%s", "relay URL: bad port");
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
		return cfg_err(err, errlen, "%s", "redis URL: credentials must be user:password@ "
		    "or :password@ (AUTH needs a password)");
	if (pct_decode(in, (size_t)(colon - in), out->user, sizeof(out->user)) != 0)
		return cfg_err(err, errlen, "%s", "redis URL: bad user name");
	if (pct_decode(colon + 1, len - (size_t)(colon - in) - 1, out->pass, sizeof(out->pass)) != 0 ||
	    out->pass[0] == '\0')
		return cfg_err(err, errlen, "%s", "redis URL: bad password");
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
		return cfg_err(err, errlen, "%s", "redis URL: bad db number");
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
			return cfg_err(err, errlen, "%s", "redis URL: unix:// needs an absolute path");
		if (slash[-1] != '@')
			return cfg_err(err, errlen, "%s", "redis URL: unix://[[user]:password@]/path: "
			    "percent-encode '/' in the user name or password as %2F");
		if (redis_userinfo(p, (size_t)(slash - p - 1), out, err, errlen) != 0)
			return -1;
		p = slash;
	}
	q = strchr(p, '?');
	pl = q != NULL ? (size_t)(q - p) : strlen(p);
	if (pl == 0 || pl >= sizeof(out->path))
		return cfg_err(err, errlen, "%s", "redis URL: unix:// needs an absolute path");
	memcpy(out->path, p, pl);
	out->path[pl] = '\0';
	out->is_unix = 1;
	if (q != NULL) {
		if (strncmp(q, "?db=", 4) != 0)
			return cfg_err(err, errlen, "%s", "redis URL: only ?db=N is understood");
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
	if (split_hostport(p, len, &h, &hl, &port, &pl) != 0 || !host_ok(h, hl) ||
	    hl >= sizeof(out->host))
		return cfg_err(err, errlen, "%s", "redis URL: bad host");
	memcpy(out->host, h, hl);
	out->host[hl] = '\0';
	out->port = 6379;
	if (port != NULL && (parse_port(port, pl, &out->port) != 0 || out->port == 0))
		return cfg_err(err, errlen, "%s", "redis URL: bad port");
	if (slash != NULL && slash[1] != '\0' && redis_db(slash + 1, &out->db, err, errlen) != 0)
		return -1;
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
	else if (strncmp(url, "rediss://", 9) == 0)
		return cfg_err(err, errlen, "%s", "redis URL: rediss:// (TLS) is not supported: this "
		    "build's hiredis has no TLS; use redis:// to a Redis on a private network");
	else {
		/* echo the scheme only (what ends at a ':'): the rest may hold a password */
		size_t n = strcspn(url, ":/@?");

		return cfg_err(err, errlen, "redis URL must be redis://[[user]:password@]host[:port][/db] "
		    "or unix://[[user]:password@]/path[?db=N] (got \"%.*s...\")",
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
	if (a->is_unix)
		snprintf(out, outlen, "unix://%s%s%s", cred, a->path, db);
	else
		snprintf(out, outlen, "redis://%s%s%s%s:%u%s", cred, v6 ? "[" : "", a->host,
		    v6 ? "]" : "", (unsigned)a->port, db);
}

#define SECRET_NAME_MAX 64        /* longest variable name config_secret takes */
#define SECRET_URL_MAX 4096        /* TXMAIL_RELAY, TXMAIL_REDIS_URL */
#define API_KEYS_SPEC_MAX 32768    /* TXMAIL_API_KEYS: 64 keys of 256 and separators */

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
			return cfg_err(err, errlen, "%s and %s are both set: use one", name, fname);
		if (vl >= outlen)
			return cfg_err(err, errlen, "%s: longer than %zu bytes", name, outlen - 1);
		memcpy(out, v, vl + 1);
		return 0;
	}
	if (path == NULL || *path == '\0')
		return 0;
	/* the longest value, its "\r\n", and one byte more to see that it is too long */
	cap = outlen + 2;
	if ((buf = malloc(cap)) == NULL)
		return cfg_err(err, errlen, "%s", "out of memory");
	/* O_NONBLOCK: a FIFO without a writer must not hang the start */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		cfg_err(err, errlen, "%s: cannot read %s: %s", fname, path, strerror(errno));
		goto out;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		cfg_err(err, errlen, "%s: %s is not a regular file", fname, path);
		goto out;
	}
	while (n < cap) {
		ssize_t r = read(fd, buf + n, cap - n);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			cfg_err(err, errlen, "%s: cannot read %s: %s", fname, path, strerror(errno));
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
		cfg_err(err, errlen, "%s: %s is larger than %zu bytes", fname, path, outlen - 1);
		goto out;
	}
	if (n == 0) {
		cfg_err(err, errlen, "%s: %s is empty", fname, path);
		goto out;
	}
	if (memchr(buf, '\0', n) != NULL) {
		cfg_err(err, errlen, "%s: %s holds a NUL byte", fname, path);
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

static int
env_seconds(const char *name, double def, double min, double *out, char *err, size_t errlen)
{
	const char *v = getenv(name);
	char *e;
	double d;

	*out = def;
	if (v == NULL || *v == '\0')
		return 0;
	errno = 0;
	d = strtod(v, &e);
	if (errno != 0 || e == v || *e != '\0' || !isfinite(d) || d < min || d > 1e9)
		return cfg_err(err, errlen, "%s: want a number of seconds", name);
	*out = d;
	return 0;
}

static int
env_int(const char *name, long def, long min, long max, long *out, char *err, size_t errlen)
{
	const char *v = getenv(name);
	char *e;
	long l;

	*out = def;
	if (v == NULL || *v == '\0')
		return 0;
	errno = 0;
	l = strtol(v, &e, 10);
	if (errno != 0 || e == v || *e != '\0' || l < min || l > max)
		return cfg_err(err, errlen, "%s: want a whole number in range", name);
	*out = l;
	return 0;
}

static int
env_str(const char *name, const char *def, char *out, size_t outlen, char *err, size_t errlen)
{
	const char *v = getenv(name);

	if (v == NULL || *v == '\0')
		v = def;
	if (strlen(v) >= outlen)
		return cfg_err(err, errlen, "%s: too long", name);
	util_strlcpy(out, v, outlen);
	return 0;
}

/* Split the comma-separated TXMAIL_API_KEYS value v into cfg->api_keys. */
static int
load_api_keys(struct config *cfg, const char *v, char *err, size_t errlen)
{
	while (*v != '\0') {
		const char *comma = strchr(v, ',');
		size_t len = comma != NULL ? (size_t)(comma - v) : strlen(v);
		while (len > 0 && isspace((unsigned char)*v)) {
			v++;
			len--;
		}
		while (len > 0 && isspace((unsigned char)v[len - 1]))
			len--;
		if (len > 0) {
			if (cfg->napi_keys == CONFIG_MAX_API_KEYS)
				return cfg_err(err, errlen, "%s: too many keys", "TXMAIL_API_KEYS");
			if (len > 256)
				return cfg_err(err, errlen, "%s: a key is longer than 256 characters", "TXMAIL_API_KEYS");
			cfg->api_keys[cfg->napi_keys] = strndup(v, len);
			if (cfg->api_keys[cfg->napi_keys] == NULL)
				return cfg_err(err, errlen, "%s", "out of memory");
			cfg->napi_keys++;
		}
		v += len;
		while (*v != '\0' && *v != ',')
			v++;
		if (*v == ',')
			v++;
	}
	return 0;
}

/*
 * The URL- and list-valued secrets: read through config_secret into a
 * buffer of their own, parsed, and the buffer wiped.
 */
static int
load_redis_url(struct config *cfg, char *err, size_t errlen)
{
	char url[SECRET_URL_MAX];
	int rc = config_secret("TXMAIL_REDIS_URL", url, sizeof(url), err, errlen);

	if (rc == 0 && url[0] != '\0') {
		rc = config_parse_redis(url, &cfg->redis, err, errlen);
		cfg->redis_set = rc == 0;
	}
	explicit_bzero(url, sizeof(url));
	return rc;
}

static int
load_relay(struct config *cfg, char *err, size_t errlen)
{
	char url[SECRET_URL_MAX], why[200];
	int rc = config_secret("TXMAIL_RELAY", url, sizeof(url), err, errlen);

	if (rc == 0 && url[0] != '\0') {
		rc = config_parse_relay(url, &cfg->relay, why, sizeof(why));
		if (rc != 0)
			cfg_err(err, errlen, "TXMAIL_RELAY: %s", why);
		cfg->relay_set = rc == 0;
	}
	explicit_bzero(url, sizeof(url));
	return rc;
}

static int
load_api_keys_var(struct config *cfg, char *err, size_t errlen)
{
	char *spec = malloc(API_KEYS_SPEC_MAX);
	int rc;

	if (spec == NULL)
		return cfg_err(err, errlen, "%s", "out of memory");
	rc = config_secret("TXMAIL_API_KEYS", spec, API_KEYS_SPEC_MAX, err, errlen);
	if (rc == 0)
		rc = load_api_keys(cfg, spec, err, errlen);
	explicit_bzero(spec, API_KEYS_SPEC_MAX);
	free(spec);
	return rc;
}

static const struct {
	const char *env;
	size_t off;
} timeout_vars[] = {
	{ "TXMAIL_SMTP_TIMEOUT_CONNECT", offsetof(struct smtp_timeouts, connect) },
	{ "TXMAIL_SMTP_TIMEOUT_BANNER", offsetof(struct smtp_timeouts, banner) },
	{ "TXMAIL_SMTP_TIMEOUT_EHLO", offsetof(struct smtp_timeouts, ehlo) },
	{ "TXMAIL_SMTP_TIMEOUT_TLS", offsetof(struct smtp_timeouts, tls) },
	{ "TXMAIL_SMTP_TIMEOUT_AUTH", offsetof(struct smtp_timeouts, auth) },
	{ "TXMAIL_SMTP_TIMEOUT_MAIL", offsetof(struct smtp_timeouts, mail) },
	{ "TXMAIL_SMTP_TIMEOUT_RCPT", offsetof(struct smtp_timeouts, rcpt) },
	{ "TXMAIL_SMTP_TIMEOUT_DATA", offsetof(struct smtp_timeouts, data) },
	{ "TXMAIL_SMTP_TIMEOUT_BLOCK", offsetof(struct smtp_timeouts, block) },
	{ "TXMAIL_SMTP_TIMEOUT_DOT", offsetof(struct smtp_timeouts, dot) },
	{ "TXMAIL_SMTP_TIMEOUT_RSET", offsetof(struct smtp_timeouts, rset) },
	{ "TXMAIL_SMTP_TIMEOUT_QUIT", offsetof(struct smtp_timeouts, quit) },
	{ "TXMAIL_SMTP_TIMEOUT_IDLE", offsetof(struct smtp_timeouts, idle) },
};

int
config_load(struct config *cfg, char *err, size_t errlen)
{
	const char *v;
	long l;
	char host[256];

	memset(cfg, 0, sizeof(*cfg));
	if (config_parse_listen((v = getenv("TXMAIL_LISTEN")) && *v ? v : "127.0.0.1:8080",
	    cfg->listen_host, sizeof(cfg->listen_host), &cfg->listen_port, err, errlen) != 0)
		return -1;
	if (load_redis_url(cfg, err, errlen) != 0)
		return -1;
	if (env_str("TXMAIL_DATA_DIR", "./var", cfg->data_dir, sizeof(cfg->data_dir), err, errlen) != 0)
		return -1;
	if (load_api_keys_var(cfg, err, errlen) != 0 || load_relay(cfg, err, errlen) != 0)
		return -1;
	if (env_str("TXMAIL_TLS_CA_FILE", "", cfg->tls_ca_file, sizeof(cfg->tls_ca_file), err, errlen) != 0)
		return -1;
	if (cfg->tls_ca_file[0] != '\0' && access(cfg->tls_ca_file, R_OK) != 0)
		return cfg_err(err, errlen, "TXMAIL_TLS_CA_FILE: cannot read %s", cfg->tls_ca_file);
	if (gethostname(host, sizeof(host)) != 0 || host[0] == '\0')
		util_strlcpy(host, "localhost", sizeof(host));
	host[sizeof(host) - 1] = '\0';
	if (env_str("TXMAIL_HELO_NAME", host, cfg->helo_name, sizeof(cfg->helo_name), err, errlen) != 0)
		return -1;
	if (!host_ok(cfg->helo_name, strlen(cfg->helo_name)))
		return cfg_err(err, errlen, "TXMAIL_HELO_NAME: \"%.64s\" is not a host name", cfg->helo_name);
	/* a webhook URL may carry credentials or a token in its path */
	if (config_secret("TXMAIL_WEBHOOK_URL", cfg->webhook_url, sizeof(cfg->webhook_url), err, errlen) != 0 ||
	    config_secret("TXMAIL_WEBHOOK_SECRET", cfg->webhook_secret, sizeof(cfg->webhook_secret), err, errlen) != 0)
		return -1;
	if (cfg->webhook_url[0] != '\0' && strncmp(cfg->webhook_url, "http://", 7) != 0 &&
	    strncmp(cfg->webhook_url, "https://", 8) != 0)
		return cfg_err(err, errlen, "%s: want an http:// or https:// URL", "TXMAIL_WEBHOOK_URL");
	if (cfg->webhook_url[0] != '\0' && cfg->webhook_secret[0] == '\0')
		return cfg_err(err, errlen, "%s: required when TXMAIL_WEBHOOK_URL is set", "TXMAIL_WEBHOOK_SECRET");
	if (env_int("TXMAIL_WEBHOOK_ALLOW_PRIVATE", 0, 0, 1, &l, err, errlen))
		return -1;
	cfg->webhook_allow_private = (int)l;
	if (cfg->webhook_url[0] != '\0') {
		/* refuse to start with a default endpoint we would never connect to */
		char why[512];

		if (netguard_url_check(cfg->webhook_url, cfg->webhook_allow_private,
		    NETGUARD_RESOLVE_MS, why, sizeof(why)) != 0)
			return cfg_err(err, errlen, "%s: %s", "TXMAIL_WEBHOOK_URL", why);
	}
	if (env_int("TXMAIL_HTTP_TIMEOUT", 30, 1, 86400, &l, err, errlen))
		return -1;
	cfg->http_timeout = (int)l;
	if (env_seconds("TXMAIL_HTTP_HEADER_TIMEOUT", 10, 0.1, &cfg->http_header_timeout, err, errlen))
		return -1;
	if (env_seconds("TXMAIL_RETRY_BASE", 60, 0.001, &cfg->retry_base, err, errlen) ||
	    env_seconds("TXMAIL_RETRY_MAX", 3600, 0.001, &cfg->retry_max, err, errlen) ||
	    env_seconds("TXMAIL_MAX_AGE", 86400, 1, &cfg->max_age, err, errlen) ||
	    env_seconds("TXMAIL_WEBHOOK_RETRY_BASE", 5, 0.001, &cfg->webhook_retry_base, err, errlen) ||
	    env_seconds("TXMAIL_WEBHOOK_RETRY_MAX", 3600, 0.001, &cfg->webhook_retry_max, err, errlen) ||
	    env_seconds("TXMAIL_WEBHOOK_MAX_AGE", 259200, 1, &cfg->webhook_max_age, err, errlen) ||
	    env_seconds("TXMAIL_WEBHOOK_TIMEOUT", 10, 0.1, &cfg->webhook_timeout, err, errlen) ||
	    env_seconds("TXMAIL_VISIBILITY_TIMEOUT", 30, 0.5, &cfg->visibility_timeout, err, errlen))
		return -1;
	if (cfg->retry_max < cfg->retry_base)
		cfg->retry_max = cfg->retry_base;
	if (cfg->webhook_retry_max < cfg->webhook_retry_base)
		cfg->webhook_retry_max = cfg->webhook_retry_base;
	if (env_int("TXMAIL_MAX_BODY", 10L << 20, 1024, 1L << 30, &l, err, errlen))
		return -1;
	cfg->max_body = (size_t)l;
	l = sysconf(_SC_NPROCESSORS_ONLN);
	if (env_int("TXMAIL_HTTP_THREADS", l > 0 ? (l < 64 ? l : 64) : 2, 1, 256, &l, err, errlen))
		return -1;
	cfg->http_threads = (int)l;
	if (env_int("TXMAIL_WORKERS", 1, 1, 64, &l, err, errlen))
		return -1;
	cfg->workers = (int)l;
	if (env_int("TXMAIL_WORKER_CONCURRENCY", 256, 1, 10000, &l, err, errlen))
		return -1;
	cfg->worker_concurrency = (int)l;
	if (env_int("TXMAIL_MAX_CONNS_PER_HOST", 32, 1, 1000, &l, err, errlen))
		return -1;
	cfg->max_conns_per_target = (int)l;
	if (env_int("TXMAIL_MAX_MSGS_PER_CONN", 1024, 1, 100000, &l, err, errlen))
		return -1;
	cfg->max_msgs_per_conn = (int)l;
	if ((v = getenv("TXMAIL_DOMAIN_RATE")) != NULL && *v != '\0') {
		struct shaper_rates *rates = NULL;
		if (shaper_rates_parse(v, &rates, err, errlen) != 0)
			return -1;   /* the message names TXMAIL_DOMAIN_RATE */
		shaper_rates_free(rates);
		if ((cfg->domain_rate = strdup(v)) == NULL)
			return cfg_err(err, errlen, "%s", "out of memory");
	}
	if (env_int("TXMAIL_DEST_FAIL_THRESHOLD", 5, 1, 1000000, &l, err, errlen) ||
	    env_seconds("TXMAIL_DEST_BACKOFF_BASE", 10, 0.01, &cfg->dest_backoff_base, err, errlen) ||
	    env_seconds("TXMAIL_DEST_BACKOFF_MAX", 600, 0.01, &cfg->dest_backoff_max, err, errlen))
		return -1;
	cfg->dest_fail_threshold = (int)l;
	if (cfg->dest_backoff_max < cfg->dest_backoff_base)
		cfg->dest_backoff_max = cfg->dest_backoff_base;
	smtp_timeouts_default(&cfg->smtp_timeouts);
	for (size_t i = 0; i < sizeof(timeout_vars) / sizeof(timeout_vars[0]); i++) {
		double *field = (double *)(void *)((char *)&cfg->smtp_timeouts + timeout_vars[i].off);
		if (env_seconds(timeout_vars[i].env, *field, 0.01, field, err, errlen))
			return -1;
	}
	cfg->log_level = LOG_INFO;
	if ((v = getenv("TXMAIL_LOG_LEVEL")) != NULL && *v != '\0') {
		int lv = log_level_parse(v);
		if (lv < 0)
			return cfg_err(err, errlen, "%s: want debug, info, warn or error", "TXMAIL_LOG_LEVEL");
		cfg->log_level = lv;
	}
	if (env_seconds("TXMAIL_RATE_LIMIT", 200, 0, &cfg->rate_limit, err, errlen) ||
	    env_seconds("TXMAIL_RATE_BURST", 400, 1, &cfg->rate_burst, err, errlen) ||
	    env_seconds("TXMAIL_EVENTS_RETENTION", 86400, 1, &cfg->events_retention, err, errlen))
		return -1;
	if (env_int("TXMAIL_MAX_ATTACHMENT_BYTES", 7L << 20, 0, 1L << 30, &l, err, errlen))
		return -1;
	cfg->max_attach = (size_t)l;
	if (env_str("TXMAIL_REDIS_SERVER", "redis-server", cfg->redis_server, sizeof(cfg->redis_server), err, errlen))
		return -1;
	{
		char why[512];
		if (dkim_keys_load(getenv("TXMAIL_DKIM_KEYS"), &cfg->dkim_keys, why, sizeof(why)) != 0)
			return cfg_err(err, errlen, "TXMAIL_DKIM_KEYS: %s", why);
	}
	if (env_str("TXMAIL_DNS_SERVER", "", cfg->dns_server, sizeof(cfg->dns_server), err, errlen))
		return -1;
	if (cfg->dns_server[0] != '\0') {
		char dh[64];
		uint16_t dp;
		struct in_addr ia;
		if (config_parse_listen(cfg->dns_server, dh, sizeof(dh), &dp, err, errlen) != 0 ||
		    inet_pton(AF_INET, dh, &ia) != 1)
			return cfg_err(err, errlen, "%s: want an IPv4 ip:port", "TXMAIL_DNS_SERVER");
	}
	if (env_int("TXMAIL_MX_PORT", 25, 1, 65535, &l, err, errlen))
		return -1;
	cfg->mx_port = (uint16_t)l;
	if (env_int("TXMAIL_MX_TLS_VERIFY", 0, 0, 1, &l, err, errlen))
		return -1;
	cfg->mx_tls_verify = (int)l;
	if (env_str("TXMAIL_BOUNCE_DOMAIN", "", cfg->bounce_domain, sizeof(cfg->bounce_domain), err, errlen) ||
	    config_secret("TXMAIL_BOUNCE_SECRET", cfg->bounce_secret, sizeof(cfg->bounce_secret), err, errlen))
		return -1;
	if (cfg->bounce_domain[0] != '\0' && (strchr(cfg->bounce_domain, '@') ||
	    strchr(cfg->bounce_domain, ' ') || strchr(cfg->bounce_domain, '<')))
		return cfg_err(err, errlen, "%s", "TXMAIL_BOUNCE_DOMAIN: want a domain name");
	if (cfg->bounce_domain[0] != '\0' && strlen(cfg->bounce_secret) < 16)
		return cfg_err(err, errlen, "%s", "TXMAIL_BOUNCE_SECRET: required with TXMAIL_BOUNCE_DOMAIN, "
		    "at least 16 characters (e.g. openssl rand -hex 32)");
	if ((v = getenv("TXMAIL_BOUNCE_LISTEN")) != NULL && *v != '\0') {
		char why[256];
		if (config_parse_listen(v, cfg->bounce_listen_host, sizeof(cfg->bounce_listen_host),
		    &cfg->bounce_listen_port, why, sizeof(why)) != 0)
			return cfg_err(err, errlen, "TXMAIL_BOUNCE_LISTEN: %s", why);
		if (cfg->bounce_domain[0] == '\0')
			return cfg_err(err, errlen, "%s", "TXMAIL_BOUNCE_LISTEN needs TXMAIL_BOUNCE_DOMAIN and TXMAIL_BOUNCE_SECRET");
		cfg->bounce_listen_set = 1;
	}
	return 0;
}

void
config_free(struct config *cfg)
{
	for (size_t i = 0; i < cfg->napi_keys; i++) {
		/* keys are secrets: clear before freeing */
		explicit_bzero(cfg->api_keys[i], strlen(cfg->api_keys[i]));
		free(cfg->api_keys[i]);
		cfg->api_keys[i] = NULL;
	}
	cfg->napi_keys = 0;
	explicit_bzero(cfg->relay.pass, sizeof(cfg->relay.pass));
	explicit_bzero(cfg->redis.pass, sizeof(cfg->redis.pass));
	explicit_bzero(cfg->webhook_url, sizeof(cfg->webhook_url));
	explicit_bzero(cfg->webhook_secret, sizeof(cfg->webhook_secret));
	explicit_bzero(cfg->bounce_secret, sizeof(cfg->bounce_secret));
	dkim_keys_free(cfg->dkim_keys);
	cfg->dkim_keys = NULL;
	free(cfg->domain_rate);
	cfg->domain_rate = NULL;
}

/* The relay as a URL with the password masked: "smtp://user:***@host:587". */
static void
relay_masked(const struct smtp_target *t, char *out, size_t outlen)
{
	int v6 = strchr(t->host, ':') != NULL;

	snprintf(out, outlen, "%s://%s%s%s%s%s%s:%u", t->tls == SMTP_TLS_IMPLICIT ? "smtps" : "smtp",
	    t->user, t->user[0] && t->pass[0] ? ":***" : "", t->user[0] ? "@" : "",
	    v6 ? "[" : "", t->host, v6 ? "]" : "", (unsigned)t->port);
}

void
config_describe(const struct config *cfg)
{
	static const char *const tls_names[] = { "none", "starttls", "required", "implicit" };
	char relay[sizeof(cfg->relay.user) + sizeof(cfg->relay.host) + 32];
	char redis[sizeof(cfg->redis.path) + sizeof(cfg->redis.user) + 32];

	if (cfg->redis_set)
		config_redis_masked(&cfg->redis, redis, sizeof(redis));
	else
		util_strlcpy(redis, "embedded", sizeof(redis));
	log_info("config", "listen=%s:%u redis=%s data_dir=%s api_keys=%zu helo=%s",
	    cfg->listen_host, cfg->listen_port, redis,
	    cfg->data_dir, cfg->napi_keys, cfg->helo_name);
	log_info("config", "http_timeout=%ds webhook_allow_private=%d", cfg->http_timeout,
	    cfg->webhook_allow_private);
	if (cfg->relay_set) {
		relay_masked(&cfg->relay, relay, sizeof(relay));
		log_info("config", "relay=%s tls=%s auth=%s verify=%s", relay,
		    tls_names[cfg->relay.tls & 3],
		    cfg->relay.user[0] ? "yes (password masked)" : "no",
		    cfg->relay.no_verify ? "OFF" : "on");
	} else
		log_info("config", "relay=none dns=%s mx_port=%u mx_tls=%s",
		    cfg->dns_server[0] ? cfg->dns_server : "system", cfg->mx_port,
		    cfg->mx_tls_verify ? "required+verified" : "opportunistic");
	log_info("config", "retry_base=%gs retry_max=%gs max_age=%gs visibility=%gs "
	    "webhook=%s webhook_retry_base=%gs", cfg->retry_base, cfg->retry_max,
	    cfg->max_age, cfg->visibility_timeout,
	    cfg->webhook_url[0] ? "set" : "none", cfg->webhook_retry_base);
	log_info("config", "dkim_keys=%zu", dkim_keys_count(cfg->dkim_keys));
	log_info("config", "max_conns_per_host=%d max_msgs_per_conn=%d domain_rate=%s "
	    "dest_fail_threshold=%d dest_backoff_base=%gs dest_backoff_max=%gs",
	    cfg->max_conns_per_target,
	    cfg->max_msgs_per_conn, cfg->domain_rate ? cfg->domain_rate : "none",
	    cfg->dest_fail_threshold, cfg->dest_backoff_base, cfg->dest_backoff_max);
	if (cfg->bounce_domain[0] != '\0')
		log_info("config", "bounce_domain=%s bounce_listen=%s:%u", cfg->bounce_domain,
		    cfg->bounce_listen_set ? cfg->bounce_listen_host : "off",
		    cfg->bounce_listen_set ? cfg->bounce_listen_port : 0);
}
