/*
 * cidr.c - IP networks and the client address behind trusted proxies (see
 * cidr.h for the representation and the rules).
 *
 * Owns the text forms: what counts as an address, a network and a list,
 * and how X-Forwarded-For is walked. It must never read past a given
 * length (header values are untrusted bytes), allocate, or do I/O; the
 * only libc parser it trusts is inet_pton, on a bounded NUL-terminated copy.
 */
#include "cidr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "util.h"

#define CIDR_ADDR_TEXT_MAX 45   /* the longest IPv6 text, "ffff:...:255.255.255.255" */

static const unsigned char cidr_v4_mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

static int
cidr_is_ows(char c)
{
	return c == ' ' || c == '\t';
}

/* cidr_trim - (s, len) without leading and trailing spaces and tabs. */
static void
cidr_trim(const char **s, size_t *len)
{
	while (*len > 0 && cidr_is_ows(**s)) {
		(*s)++;
		(*len)--;
	}
	while (*len > 0 && cidr_is_ows((*s)[*len - 1]))
		(*len)--;
}

/* cidr_addr_parse2 - as cidr_addr_parse, and *v4 = 1 when written as IPv4. */
static int
cidr_addr_parse2(const char *s, size_t len, unsigned char out[CIDR_ADDR_LEN], int *v4)
{
	char buf[CIDR_ADDR_TEXT_MAX + 1];
	struct in_addr a4;
	struct in6_addr a6;

	if (s == NULL || len == 0 || len > CIDR_ADDR_TEXT_MAX)
		return CIDR_ERR_SYNTAX;
	for (size_t i = 0; i < len; i++) {
		char c = s[i];

		/* only what an address can hold: no zone (%), no NUL, no brackets */
		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') ||
		    c == ':' || c == '.'))
			return CIDR_ERR_SYNTAX;
	}
	memcpy(buf, s, len);
	buf[len] = '\0';
	if (inet_pton(AF_INET, buf, &a4) == 1) {
		memcpy(out, cidr_v4_mapped, sizeof(cidr_v4_mapped));
		memcpy(out + 12, &a4.s_addr, 4);
		*v4 = 1;
		return CIDR_OK;
	}
	if (inet_pton(AF_INET6, buf, &a6) == 1) {
		memcpy(out, a6.s6_addr, CIDR_ADDR_LEN);
		*v4 = 0;
		return CIDR_OK;
	}
	return CIDR_ERR_SYNTAX;
}

int
cidr_addr_parse(const char *s, size_t len, unsigned char out[CIDR_ADDR_LEN])
{
	int v4;

	return cidr_addr_parse2(s, len, out, &v4);
}

/* cidr_mask_ok - 1 when addr has no bit set past bits. */
static int
cidr_mask_ok(const unsigned char addr[CIDR_ADDR_LEN], unsigned bits)
{
	for (unsigned i = 0; i < CIDR_ADDR_LEN; i++) {
		unsigned keep = bits >= 8 * (i + 1) ? 8 : (bits > 8 * i ? bits - 8 * i : 0);
		unsigned char mask = (unsigned char)(keep == 8 ? 0xff : (0xff << (8 - keep)) & 0xff);

		if ((addr[i] & (unsigned char)~mask) != 0)
			return 0;
	}
	return 1;
}

int
cidr_parse(const char *s, size_t len, struct cidr *out)
{
	const char *slash;
	unsigned bits = 0, max;
	size_t alen, plen;
	int v4 = 0, rc;

	memset(out, 0, sizeof(*out));
	if (s == NULL || len == 0)
		return CIDR_ERR_SYNTAX;
	slash = memchr(s, '/', len);
	alen = slash != NULL ? (size_t)(slash - s) : len;
	rc = cidr_addr_parse2(s, alen, out->addr, &v4);
	if (rc != CIDR_OK)
		return rc;
	max = v4 ? 32 : 128;
	if (slash == NULL) {
		bits = max;
	} else {
		const char *p = slash + 1;

		plen = len - alen - 1;
		/* 1 to 3 digits, no sign, no leading zero but "0" itself */
		if (plen == 0 || plen > 3 || (plen > 1 && p[0] == '0'))
			return CIDR_ERR_SYNTAX;
		for (size_t i = 0; i < plen; i++) {
			if (p[i] < '0' || p[i] > '9')
				return CIDR_ERR_SYNTAX;
			bits = bits * 10 + (unsigned)(p[i] - '0');
		}
		if (bits > max)
			return CIDR_ERR_SYNTAX;
	}
	if (v4)
		bits += 96;
	if (!cidr_mask_ok(out->addr, bits))
		return CIDR_ERR_HOSTBITS;
	out->bits = (unsigned char)bits;
	out->v4 = (unsigned char)v4;
	return CIDR_OK;
}

int
cidr_list_parse(const char *s, size_t len, struct cidr_list *out, char *err, size_t errlen)
{
	const char *p = s, *end = s + len;
	int rc = CIDR_OK;

	out->n = 0;
	if (err != NULL && errlen > 0)
		err[0] = '\0';
	if (s == NULL)
		return CIDR_OK;
	{
		const char *t = s;
		size_t tl = len;

		cidr_trim(&t, &tl);
		if (tl == 0)
			return CIDR_OK;
	}
	while (p <= end) {
		const char *comma = memchr(p, ',', (size_t)(end - p));
		const char *e = comma != NULL ? comma : end;
		const char *item = p;
		size_t ilen = (size_t)(e - p);

		cidr_trim(&item, &ilen);
		if (out->n == CIDR_LIST_MAX) {
			rc = CIDR_ERR_TOOMANY;
			if (err != NULL)
				snprintf(err, errlen, "more than %d networks", CIDR_LIST_MAX);
			goto out;
		}
		rc = ilen == 0 ? CIDR_ERR_SYNTAX : cidr_parse(item, ilen, &out->v[out->n]);
		if (rc != CIDR_OK) {
			if (err != NULL)
				snprintf(err, errlen, ilen == 0 ? "an empty entry in the list" :
				    rc == CIDR_ERR_HOSTBITS ? "'%.*s': bits are set after the prefix length "
				    "(write the network address)" : "'%.*s' is not an IP address or CIDR network",
				    (int)(ilen > 64 ? 64 : ilen), item);
			goto out;
		}
		out->n++;
		if (comma == NULL)
			break;
		p = comma + 1;
	}
out:
	if (rc != CIDR_OK)
		out->n = 0;
	return rc;
}

int
cidr_contains(const struct cidr *c, const unsigned char addr[CIDR_ADDR_LEN])
{
	unsigned full = c->bits / 8, rest = c->bits % 8;

	if (c->bits > 128)
		return 0;
	if (memcmp(c->addr, addr, full) != 0)
		return 0;
	if (rest == 0)
		return 1;
	{
		unsigned char mask = (unsigned char)((0xff << (8 - rest)) & 0xff);

		return (c->addr[full] & mask) == (addr[full] & mask);
	}
}

int
cidr_list_match(const struct cidr_list *l, const unsigned char addr[CIDR_ADDR_LEN])
{
	for (size_t i = 0; i < l->n && i < CIDR_LIST_MAX; i++)
		if (cidr_contains(&l->v[i], addr))
			return 1;
	return 0;
}

void
cidr_addr_format(const unsigned char addr[CIDR_ADDR_LEN], char *out, size_t outlen)
{
	char buf[INET6_ADDRSTRLEN];
	const char *r;

	if (memcmp(addr, cidr_v4_mapped, sizeof(cidr_v4_mapped)) == 0)
		r = inet_ntop(AF_INET, addr + 12, buf, sizeof(buf));
	else
		r = inet_ntop(AF_INET6, addr, buf, sizeof(buf));
	util_strlcpy(out, r != NULL ? r : "?", outlen);
}

void
cidr_format(const struct cidr *c, char *out, size_t outlen)
{
	char a[INET6_ADDRSTRLEN];
	int v4 = c->v4 && c->bits >= 96 && memcmp(c->addr, cidr_v4_mapped, sizeof(cidr_v4_mapped)) == 0;

	if ((v4 ? inet_ntop(AF_INET, c->addr + 12, a, sizeof(a)) :
	    inet_ntop(AF_INET6, c->addr, a, sizeof(a))) == NULL)
		util_strlcpy(a, "?", sizeof(a));
	snprintf(out, outlen, "%s/%u", a, v4 ? (unsigned)c->bits - 96 : (unsigned)c->bits);
}

void
cidr_list_format(const struct cidr_list *l, char *out, size_t outlen)
{
	size_t used = 0;

	if (outlen == 0)
		return;
	out[0] = '\0';
	for (size_t i = 0; i < l->n && i < CIDR_LIST_MAX; i++) {
		char one[CIDR_TEXT_MAX + 2];
		int n;

		cidr_format(&l->v[i], one, sizeof(one));
		n = snprintf(out + used, outlen - used, "%s%s", i > 0 ? "," : "", one);
		if (n < 0 || (size_t)n >= outlen - used) {
			out[used] = '\0';   /* cut at a whole entry */
			return;
		}
		used += (size_t)n;
	}
}

int
cidr_from_sockaddr(const struct sockaddr *sa, unsigned char out[CIDR_ADDR_LEN])
{
	if (sa == NULL)
		return CIDR_ERR_SYNTAX;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;

		memcpy(out, cidr_v4_mapped, sizeof(cidr_v4_mapped));
		memcpy(out + 12, &in->sin_addr.s_addr, 4);
		return CIDR_OK;
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)sa;

		memcpy(out, in6->sin6_addr.s6_addr, CIDR_ADDR_LEN);
		return CIDR_OK;
	}
	return CIDR_ERR_SYNTAX;
}

int
cidr_client(const unsigned char peer[CIDR_ADDR_LEN], const struct cidr_list *trusted,
    const char *const *values, size_t nvalues, unsigned char out[CIDR_ADDR_LEN])
{
	unsigned char a[CIDR_ADDR_LEN], left[CIDR_ADDR_LEN];
	int have_left = 0;

	if (trusted == NULL || trusted->n == 0 || !cidr_list_match(trusted, peer)) {
		memcpy(out, peer, CIDR_ADDR_LEN);
		return CIDR_OK;
	}
	if (nvalues > CIDR_XFF_MAX_VALUES)
		return CIDR_ERR_SYNTAX;
	for (size_t vi = nvalues; vi-- > 0;) {
		const char *v = values[vi];
		size_t end;

		if (v == NULL)
			continue;
		end = strlen(v);
		/* entries of this line, right to left: (start, end) between commas */
		for (;;) {
			size_t start = end;
			const char *item;
			size_t ilen;

			while (start > 0 && v[start - 1] != ',')
				start--;
			item = v + start;
			ilen = end - start;
			cidr_trim(&item, &ilen);
			if (ilen != 0) {
				if (cidr_addr_parse(item, ilen, a) != CIDR_OK)
					return CIDR_ERR_SYNTAX;
				if (!cidr_list_match(trusted, a)) {
					memcpy(out, a, CIDR_ADDR_LEN);
					return CIDR_OK;
				}
				memcpy(left, a, CIDR_ADDR_LEN);
				have_left = 1;
			}
			if (start == 0)
				break;
			end = start - 1;    /* before the comma */
		}
	}
	memcpy(out, have_left ? left : peer, CIDR_ADDR_LEN);
	return CIDR_OK;
}
