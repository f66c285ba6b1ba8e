/*
 * dkim_keys.c - TXMAIL_DKIM_KEYS: parse it, load the key files at start,
 * pick the signer for a From domain, and prepend the DKIM-Signature.
 *
 * Owns the mapping from From domain to struct dkim_signer (smtp/dkim.c
 * does the cryptography). It must never read a key file after start, log
 * key material, or sign with a key whose domain differs from the From
 * domain.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "dkim_keys.h"
#include "util.h"
#include "../smtp/dkim.h"

struct dkim_keys {
	struct dkim_signer **signers;
	size_t n;
};

static int keys_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int
keys_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err != NULL && errlen > 0) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return -1;
}

/* trim - copy s[0..n) without surrounding blanks into out; -1 when empty or too long. */
static int
trim(const char *s, size_t n, char *out, size_t outlen)
{
	while (n > 0 && (*s == ' ' || *s == '\t')) {
		s++;
		n--;
	}
	while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
		n--;
	if (n == 0 || n >= outlen)
		return -1;
	memcpy(out, s, n);
	out[n] = '\0';
	return 0;
}

int
dkim_keys_parse(const char *spec, struct dkim_keys_entry *out, size_t max,
    char *err, size_t errlen)
{
	const char *p = spec, *end, *c1, *c2;
	size_t n = 0, slen;

	if (spec == NULL)
		return 0;
	slen = strnlen(spec, DKIM_KEYS_SPEC_MAX + 1);
	if (slen > DKIM_KEYS_SPEC_MAX)
		return keys_err(err, errlen, "longer than 64 KiB");
	while (*p != '\0') {
		char item[64];

		end = strchr(p, ',');
		if (end == NULL)
			end = p + strlen(p);
		snprintf(item, sizeof(item), "%.*s", (int)(end - p < 40 ? end - p : 40), p);
		if (n >= max)
			return keys_err(err, errlen, "more than %d entries", DKIM_KEYS_MAX);
		c1 = memchr(p, ':', (size_t)(end - p));
		c2 = c1 != NULL ? memchr(c1 + 1, ':', (size_t)(end - c1 - 1)) : NULL;
		if (c1 == NULL || c2 == NULL)
			return keys_err(err, errlen, "\"%s\": want domain:selector:/path/key.pem", item);
		if (trim(p, (size_t)(c1 - p), out[n].domain, sizeof(out[n].domain)) != 0 ||
		    trim(c1 + 1, (size_t)(c2 - c1 - 1), out[n].selector, sizeof(out[n].selector)) != 0 ||
		    trim(c2 + 1, (size_t)(end - c2 - 1), out[n].path, sizeof(out[n].path)) != 0)
			return keys_err(err, errlen, "\"%s\": empty or too long domain, selector or path",
			    item);
		for (size_t i = 0; i < n; i++)
			if (strcasecmp(out[i].domain, out[n].domain) == 0)
				return keys_err(err, errlen, "domain %s is listed twice", out[n].domain);
		n++;
		p = *end == ',' ? end + 1 : end;
		if (*end == ',' && *p == '\0')
			return keys_err(err, errlen, "trailing comma");
	}
	return (int)n;
}

/* read_key - the whole file (at most DKIM_MAX_KEY_PEM bytes) into malloc'd *buf. */
static int
read_key(const char *path, char **buf, size_t *len, char *err, size_t errlen)
{
	struct stat st;
	char *b = NULL;
	size_t got = 0;
	ssize_t r;
	int fd, rc = -1;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return keys_err(err, errlen, "cannot read %s: %s", path, strerror(errno));
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size <= 0 ||
	    (size_t)st.st_size > DKIM_MAX_KEY_PEM) {
		keys_err(err, errlen, "%s: not a regular file of 1 byte to 64 KiB", path);
		goto out;
	}
	b = malloc((size_t)st.st_size + 1);
	if (b == NULL) {
		keys_err(err, errlen, "%s: out of memory", path);
		goto out;
	}
	while (got < (size_t)st.st_size) {
		r = read(fd, b + got, (size_t)st.st_size - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			keys_err(err, errlen, "cannot read %s: %s", path, r < 0 ? strerror(errno) : "short read");
			goto out;
		}
		got += (size_t)r;
	}
	b[got] = '\0';
	*buf = b;
	*len = got;
	b = NULL;
	rc = 0;
out:
	if (b != NULL) {
		OPENSSL_cleanse(b, (size_t)st.st_size);
		free(b);
	}
	close(fd);
	return rc;
}

int
dkim_keys_load(const char *spec, struct dkim_keys **out, char *err, size_t errlen)
{
	struct dkim_keys_entry *e = NULL;
	struct dkim_keys *k = NULL;
	char why[256], *pem = NULL;
	size_t pem_len = 0;
	int n, rc = -1;

	*out = NULL;
	if (spec == NULL || *spec == '\0')
		return 0;
	e = calloc(DKIM_KEYS_MAX, sizeof(*e));
	k = calloc(1, sizeof(*k));
	if (e == NULL || k == NULL) {
		keys_err(err, errlen, "out of memory");
		goto out;
	}
	n = dkim_keys_parse(spec, e, DKIM_KEYS_MAX, err, errlen);
	if (n < 0)
		goto out;
	k->signers = calloc((size_t)n + 1, sizeof(*k->signers));
	if (k->signers == NULL) {
		keys_err(err, errlen, "out of memory");
		goto out;
	}
	for (int i = 0; i < n; i++) {
		if (read_key(e[i].path, &pem, &pem_len, err, errlen) != 0)
			goto out;
		k->signers[k->n] = dkim_signer_new(e[i].domain, e[i].selector, pem, pem_len,
		    why, sizeof(why));
		OPENSSL_cleanse(pem, pem_len);
		free(pem);
		pem = NULL;
		if (k->signers[k->n] == NULL) {
			keys_err(err, errlen, "%s: %s", e[i].path, why);
			goto out;
		}
		k->n++;
	}
	*out = k;
	k = NULL;
	rc = 0;
out:
	free(e);
	dkim_keys_free(k);
	return rc;
}

void
dkim_keys_free(struct dkim_keys *k)
{
	if (k == NULL)
		return;
	for (size_t i = 0; i < k->n; i++)
		dkim_signer_free(k->signers[i]);
	free(k->signers);
	free(k);
}

size_t
dkim_keys_count(const struct dkim_keys *k)
{
	return k != NULL ? k->n : 0;
}

const struct dkim_signer *
dkim_keys_find(const struct dkim_keys *k, const char *from_email)
{
	const char *at;

	if (k == NULL || from_email == NULL || (at = strrchr(from_email, '@')) == NULL)
		return NULL;
	for (size_t i = 0; i < k->n; i++)
		if (strcasecmp(dkim_signer_domain(k->signers[i]), at + 1) == 0)
			return k->signers[i];
	return NULL;
}

int
dkim_keys_sign_message(const struct dkim_keys *k, const char *from_email,
    int64_t now_s, char **msg, size_t *len)
{
	const struct dkim_signer *s = dkim_keys_find(k, from_email);
	char *hdr = NULL, *nm = NULL;
	size_t hlen;
	int rc = -1;

	if (s == NULL)
		return 0;
	if (dkim_sign(s, *msg, *len, now_s, &hdr) != 0)
		goto out;
	hlen = strlen(hdr);
	if (*len > SIZE_MAX - hlen - 1)
		goto out;
	nm = malloc(hlen + *len + 1);
	if (nm == NULL)
		goto out;
	memcpy(nm, hdr, hlen);
	memcpy(nm + hlen, *msg, *len);
	nm[hlen + *len] = '\0';
	free(*msg);
	*msg = nm;
	*len += hlen;
	rc = 0;
out:
	free(hdr);
	return rc;
}
