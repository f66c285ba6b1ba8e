/*
 * fuzz_config.c - libFuzzer target for the pure address parsers of
 * server/config.c: config_parse_relay, config_parse_redis and
 * config_parse_listen.
 *
 * The input, cut at its first NUL, goes to all three (and once more with
 * "smtp://", "smtps://", "redis://" or "unix://" put in front, so the
 * fuzzer reaches past the scheme check at once). Checked on success: every
 * string out is NUL-terminated in its array, the host is not empty and has
 * no blank, CR, LF or '/', the port is not 0; on failure the error text is
 * NUL-terminated and not empty. Relay URLs carry passwords: the error text
 * must never echo the password of a URL that had user:pass@.
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
		/* a password is never echoed: find one the way the parser would */
		const char *at = strrchr(s, '@'), *colon = strstr(s, "://");
		size_t scheme = strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+.-");
		if (colon != NULL && colon == s + scheme && at != NULL && at > colon) {
			const char *pw = memchr(colon + 3, ':', (size_t)(at - colon - 3));
			if (pw != NULL && at - pw > 8 && memchr(pw + 1, '?', (size_t)(at - pw - 1)) == NULL) {
				char pass[64];
				snprintf(pass, sizeof(pass), "%.*s", (int)(at - pw - 1), pw + 1);
				if (strlen(pass) > 8 && strstr(err, pass) != NULL)
					abort();
			}
		}
	}

	memset(err, 'x', sizeof(err));
	rc = config_parse_redis(s, &r, err, sizeof(err));
	check_err(rc, err, sizeof(err));
	if (rc == 0) {
		if (r.is_unix) {
			if (memchr(r.path, '\0', sizeof(r.path)) == NULL || r.path[0] != '/')
				abort();
		} else {
			check_host(r.host, sizeof(r.host));
			if (r.port == 0)
				abort();
		}
		if (r.db < 0)
			abort();
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
	static const char *const schemes[] = { "smtp://", "smtps://", "redis://", "unix://" };
	char *s, *p;
	size_t n;

	if (size > 8192)
		return 0;
	s = malloc(size + 1);
	p = malloc(size + 16);
	if (s == NULL || p == NULL)
		goto out;
	memcpy(s, data, size);
	s[size] = '\0';
	run(s);
	n = strlen(s);
	snprintf(p, size + 16, "%s%.*s", schemes[size % 4], (int)n, s);
	run(p);
out:
	free(s);
	free(p);
	return 0;
}
