/*
 * fuzz_cidr.c - libFuzzer target for server/cidr.c: CIDR lists and the
 * client address behind trusted proxies (X-Forwarded-For, untrusted bytes).
 *
 * The input is cut at '\n' into lines. The first line is parsed as a CIDR
 * list (the trusted proxies; when it does not parse, "127.0.0.1/32,::1"
 * is used); each further line (at most CIDR_XFF_MAX_VALUES + 1) is one
 * X-Forwarded-For header line, walked by cidr_client with the peer
 * 127.0.0.1. Every line is also parsed as an address, a network and a list.
 * Invariants: what parses prints as text that parses back to the same
 * bytes (a list to the same networks), a parsed network has no host bits,
 * and cidr_client either fails with CIDR_ERR_SYNTAX or names an address
 * that prints and parses back to itself.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../server/cidr.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_addr(const unsigned char a[CIDR_ADDR_LEN])
{
	char buf[64];
	unsigned char b[CIDR_ADDR_LEN];

	cidr_addr_format(a, buf, sizeof(buf));
	if (cidr_addr_parse(buf, strlen(buf), b) != CIDR_OK || memcmp(a, b, CIDR_ADDR_LEN) != 0)
		abort();    /* what we print, we read back */
}

static void
check_line(const char *s, size_t len)
{
	unsigned char a[CIDR_ADDR_LEN];
	struct cidr c, c2;
	struct cidr_list l, l2;
	char buf[CIDR_LIST_TEXT_MAX], err[160];

	if (cidr_addr_parse(s, len, a) == CIDR_OK)
		check_addr(a);
	if (cidr_parse(s, len, &c) == CIDR_OK) {
		if (c.bits > 128 || !cidr_contains(&c, c.addr))
			abort();
		cidr_format(&c, buf, sizeof(buf));
		if (cidr_parse(buf, strlen(buf), &c2) != CIDR_OK || c2.bits != c.bits ||
		    memcmp(c2.addr, c.addr, CIDR_ADDR_LEN) != 0)
			abort();
	}
	if (cidr_list_parse(s, len, &l, err, sizeof(err)) == CIDR_OK) {
		if (l.n > CIDR_LIST_MAX)
			abort();
		cidr_list_format(&l, buf, sizeof(buf));
		if (cidr_list_parse(buf, strlen(buf), &l2, NULL, 0) != CIDR_OK || l2.n != l.n)
			abort();
		for (size_t i = 0; i < l.n; i++)
			if (l2.v[i].bits != l.v[i].bits || memcmp(l2.v[i].addr, l.v[i].addr, CIDR_ADDR_LEN) != 0)
				abort();
	} else if (l.n != 0) {
		abort();
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s, *lines[CIDR_XFF_MAX_VALUES + 2];
	size_t nlines = 0;
	struct cidr_list trusted;
	unsigned char peer[CIDR_ADDR_LEN], out[CIDR_ADDR_LEN];
	int rc;

	if (size > 8192)
		return 0;
	s = malloc(size + 1);
	if (s == NULL)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	/* lines; a NUL inside ends that line early, as a C string header value would */
	for (char *p = s; nlines < sizeof(lines) / sizeof(lines[0]);) {
		char *nl = memchr(p, '\n', size - (size_t)(p - s));

		lines[nlines++] = p;
		if (nl == NULL)
			break;
		*nl = '\0';
		p = nl + 1;
	}
	for (size_t i = 0; i < nlines; i++)
		check_line(lines[i], strlen(lines[i]));
	if (cidr_list_parse(lines[0], strlen(lines[0]), &trusted, NULL, 0) != CIDR_OK || trusted.n == 0)
		cidr_list_parse("127.0.0.1/32,::1", 16, &trusted, NULL, 0);
	cidr_addr_parse("127.0.0.1", 9, peer);
	memset(out, 0, sizeof(out));
	rc = cidr_client(peer, &trusted, (const char *const *)(lines + 1), nlines - 1, out);
	if (rc == CIDR_OK)
		check_addr(out);
	else if (rc != CIDR_ERR_SYNTAX)
		abort();
	free(s);
	return 0;
}
