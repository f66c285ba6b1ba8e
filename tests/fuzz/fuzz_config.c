/*
 * fuzz_config.c - libFuzzer target for the pure address parsers of
 * server/config.c: config_parse_relay, config_parse_redis and
 * config_parse_listen.
 *
 * The input, cut at its first NUL, goes to all three (and once more with
 * "smtp://", "smtps://", "redis://", "unix://", "redis+sentinel://" or
 * "redis+cluster://" put in front, so the fuzzer reaches past the scheme
 * check at once). Checked on success: every string out is NUL-terminated
 * in its array, the host (each sentinel's and seed node's too) is not empty and has no blank, CR, LF or '/', the
 * port is not 0; on failure the error text is
 * NUL-terminated and not empty. Relay and Redis URLs carry passwords: the
 * error text must never echo the password of a URL that had user:pass@
 * (and a Redis URL's parsed password is NUL-terminated and wiped on error).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../server/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_host(const char *h, size_t cap)
{
	if (memchr(h, '\0', cap) == NULL || h[0] == '\0')
		abort();
	for (const char *p = h; *p != '\0'; p++)
		if (*p == ' ' || *p == '\r' || *p == '\n' || *p == '/' || *p == '@')
			abort();
}

static void
check_err(int rc, const char *err, size_t cap)
{
	if (rc != 0 && rc != -1)
		abort();
	if (rc == -1 && (memchr(err, '\0', cap) == NULL || err[0] == '\0'))
		abort();
}

static int
parse_relay(const char *url, char *err, size_t errlen)
{
	struct smtp_target t;

	return config_parse_relay(url, &t, err, errlen);
}

static int
parse_redis(const char *url, char *err, size_t errlen)
{
	struct redis_addr r;

	return config_parse_redis(url, &r, err, errlen);
}

/*
 * abort if err (parse's error for s) echoes the password of s, found the
 * way the parsers find it: from the first ':' after "scheme://" to the
 * last '@'. relay: a '?' in it ends the URL for the relay parser, so such
 * inputs are skipped. A password that happens to spell part of a fixed
 * message is no echo: only one seen again, case-swapped, in the error for
 * s with that password's letters case-swapped counts (swapping keeps every
 * separator and every %XX escape as it was).
 */
static void
check_no_password(const char *s, const char *err, int relay,
    int (*parse)(const char *, char *, size_t))
{
	const char *at = strrchr(s, '@'), *colon = strstr(s, "://"), *pw;
	size_t scheme = strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+.-");
	char pass[64], err2[256], *s2;
	size_t off, n, i;
	int letters = 0;

	if (colon == NULL || colon != s + scheme || at == NULL || at < colon + 3)
		return;
	pw = memchr(colon + 3, ':', (size_t)(at - colon - 3));
	if (pw == NULL || at - pw <= 8)
		return;
	if (relay && memchr(pw + 1, '?', (size_t)(at - pw - 1)) != NULL)
		return;
	snprintf(pass, sizeof(pass), "%.*s", (int)(at - pw - 1), pw + 1);
	n = strlen(pass);
	if (n <= 8 || strstr(err, pass) == NULL)
		return;
	if ((s2 = strdup(s)) == NULL)
		abort();
	off = (size_t)(pw + 1 - s);
	for (i = 0; i < n; i++) {
		char c = s2[off + i];

		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) {
			s2[off + i] = (char)(c ^ 0x20);
			pass[i] = s2[off + i];
			letters = 1;
		}
	}
	memset(err2, 'x', sizeof(err2));
	if (letters && parse(s2, err2, sizeof(err2)) != 0 && strstr(err2, pass) != NULL)
		abort();
	free(s2);
}

static void
run(const char *s)
{
	struct smtp_target t;
	struct redis_addr r;
	char err[256], host[64];
	uint16_t port = 0;
	int rc;

	memset(err, 'x', sizeof(err));
	rc = config_parse_relay(s, &t, err, sizeof(err));
	check_err(rc, err, sizeof(err));
	if (rc == 0) {
		check_host(t.host, sizeof(t.host));
		if (t.port == 0 || memchr(t.user, '\0', sizeof(t.user)) == NULL ||
		    memchr(t.pass, '\0', sizeof(t.pass)) == NULL)
			abort();
		if (t.tls != SMTP_TLS_NONE && t.tls != SMTP_TLS_STARTTLS &&
		    t.tls != SMTP_TLS_REQUIRED && t.tls != SMTP_TLS_IMPLICIT)
			abort();
	} else {
		check_no_password(s, err, 1, parse_relay);
	}

	memset(err, 'x', sizeof(err));
	rc = config_parse_redis(s, &r, err, sizeof(err));
	check_err(rc, err, sizeof(err));
	if (rc == 0) {
		if (r.is_unix) {
			if (memchr(r.path, '\0', sizeof(r.path)) == NULL || r.path[0] != '/')
				abort();
		} else if (r.is_sentinel) {
			if (r.nsentinels == 0 || r.nsentinels > REDIS_MAX_SENTINELS || r.master[0] == '\0' ||
			    memchr(r.master, '\0', sizeof(r.master)) == NULL || r.sentinel_pass[0] != '\0')
				abort();
			for (size_t i = 0; i < r.nsentinels; i++) {
				check_host(r.sentinels[i].host, sizeof(r.sentinels[i].host));
				if (r.sentinels[i].port == 0)
					abort();
			}
		} else if (r.is_cluster) {
			if (r.nseeds == 0 || r.nseeds > REDIS_MAX_SEEDS || r.db != 0 || r.is_sentinel)
				abort();
			for (size_t i = 0; i < r.nseeds; i++) {
				check_host(r.seeds[i].host, sizeof(r.seeds[i].host));
				if (r.seeds[i].port == 0)
					abort();
			}
		} else {
			check_host(r.host, sizeof(r.host));
			if (r.port == 0)
				abort();
		}
		if (r.db < 0 || memchr(r.user, '\0', sizeof(r.user)) == NULL ||
		    memchr(r.pass, '\0', sizeof(r.pass)) == NULL || (r.user[0] != '\0' && r.pass[0] == '\0'))
			abort();
	} else {
		if (r.user[0] != '\0' || r.pass[0] != '\0')
			abort();
		check_no_password(s, err, 0, parse_redis);
	}

	memset(err, 'x', sizeof(err));
	memset(host, 'x', sizeof(host));
	rc = config_parse_listen(s, host, sizeof(host), &port, err, sizeof(err));
	check_err(rc, err, sizeof(err));
	if (rc == 0)
		check_host(host, sizeof(host));
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const schemes[] = { "smtp://", "smtps://", "redis://", "unix://",
		"redis+sentinel://", "redis+cluster://" };
	char *s, *p;
	size_t n;

	if (size > 8192)
		return 0;
	s = malloc(size + 1);
	p = malloc(size + 24);
	if (s == NULL || p == NULL)
		goto out;
	memcpy(s, data, size);
	s[size] = '\0';
	run(s);
	n = strlen(s);
	snprintf(p, size + 24, "%s%.*s", schemes[size % (sizeof(schemes) / sizeof(schemes[0]))], (int)n, s);
	run(p);
out:
	free(s);
	free(p);
	return 0;
}
