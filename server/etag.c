/*
 * etag.c - strong entity tags over a body and If-None-Match (see etag.h).
 * Pure: it must never allocate or do I/O.
 */
#include "etag.h"

#include <string.h>

#include "hash.h"

int
etag_make(const char *body, size_t len, char *out, size_t outlen)
{
	unsigned char d[HASH_SHA256_LEN];
	char hex[HASH_SHA256_LEN * 2 + 1];

	if (out == NULL || outlen < ETAG_LEN + 1 || (body == NULL && len != 0))
		return -1;
	if (hash_sha256(body != NULL ? body : "", len, d) != 0)
		return -1;
	hash_hex(d, sizeof(d), hex);
	out[0] = '"';
	memcpy(out + 1, hex, ETAG_HEX);
	out[ETAG_HEX + 1] = '"';
	out[ETAG_HEX + 2] = '\0';
	return 0;
}

static int
etag_ows(char c)
{
	return c == ' ' || c == '\t';
}

int
etag_none_match(const char *inm, const char *etag)
{
	size_t n, elen, i = 0;
	int hit = 0;

	if (inm == NULL || etag == NULL)
		return 0;
	n = strnlen(inm, ETAG_HEADER_MAX + 1);
	if (n > ETAG_HEADER_MAX)
		return 0;
	elen = strlen(etag);
	while (i < n && etag_ows(inm[i]))
		i++;
	if (i < n && inm[i] == '*') {
		for (i++; i < n && etag_ows(inm[i]); i++)
			;
		return i == n;
	}
	/* 1#entity-tag: [W/] DQUOTE *etagc DQUOTE, separated by OWS "," OWS (empty elements allowed) */
	while (i < n) {
		size_t start;

		if (inm[i] == ',' || etag_ows(inm[i])) {
			i++;
			continue;
		}
		if (inm[i] == 'W' && i + 1 < n && inm[i + 1] == '/')
			i += 2;
		if (i >= n || inm[i] != '"')
			return 0;
		start = i++;
		while (i < n && inm[i] != '"')
			i++;
		if (i >= n)
			return 0;
		i++;    /* past the closing quote */
		hit |= i - start == elen && memcmp(inm + start, etag, elen) == 0;
		while (i < n && etag_ows(inm[i]))
			i++;
		if (i < n && inm[i] != ',')
			return 0;
	}
	return hit;
}
