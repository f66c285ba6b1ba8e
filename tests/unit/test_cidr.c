/*
 * test_cidr.c - server/cidr.c: addresses, networks and lists as text, the
 * membership test, and the client address behind trusted proxies
 * (X-Forwarded-For), table-driven. The HTTP path (the TCP peer, several
 * X-Forwarded-For lines) is tests/integration/test_key_scopes.py.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "../../server/cidr.h"

static void
addr(const char *s, unsigned char out[CIDR_ADDR_LEN])
{
	cr_assert_eq(cidr_addr_parse(s, strlen(s), out), CIDR_OK, "parse address %s", s);
}

Test(cidr, addresses)
{
	static const struct {
		const char *in;
		int want;
		const char *shown;
	} cases[] = {
		{ "127.0.0.1", CIDR_OK, "127.0.0.1" },
		{ "0.0.0.0", CIDR_OK, "0.0.0.0" },
		{ "255.255.255.255", CIDR_OK, "255.255.255.255" },
		{ "::1", CIDR_OK, "::1" },
		{ "2001:DB8::1", CIDR_OK, "2001:db8::1" },
		{ "::ffff:10.1.2.3", CIDR_OK, "10.1.2.3" },      /* mapped: the IPv4 address */
		{ "", CIDR_ERR_SYNTAX, NULL },
		{ "1.2.3", CIDR_ERR_SYNTAX, NULL },
		{ "1.2.3.4.5", CIDR_ERR_SYNTAX, NULL },
		{ "256.1.1.1", CIDR_ERR_SYNTAX, NULL },
		{ "01.2.3.4", CIDR_ERR_SYNTAX, NULL },           /* no octal guesses */
		{ "1.2.3.4 ", CIDR_ERR_SYNTAX, NULL },
		{ "[::1]", CIDR_ERR_SYNTAX, NULL },
		{ "fe80::1%eth0", CIDR_ERR_SYNTAX, NULL },
		{ "1.2.3.4:80", CIDR_ERR_SYNTAX, NULL },
		{ "unknown", CIDR_ERR_SYNTAX, NULL },
		{ ":::", CIDR_ERR_SYNTAX, NULL },
		{ "1:2:3:4:5:6:7:8:9", CIDR_ERR_SYNTAX, NULL },
		{ "0000:0000:0000:0000:0000:0000:0000:0000:0000:0000:0000", CIDR_ERR_SYNTAX, NULL },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		unsigned char a[CIDR_ADDR_LEN];
		char buf[64];
		int rc = cidr_addr_parse(cases[i].in, strlen(cases[i].in), a);

		cr_assert_eq(rc, cases[i].want, "address '%s': got %d, want %d", cases[i].in, rc, cases[i].want);
		if (rc == CIDR_OK) {
			cidr_addr_format(a, buf, sizeof(buf));
			cr_assert_str_eq(buf, cases[i].shown, "address '%s' shown: got %s, want %s",
			    cases[i].in, buf, cases[i].shown);
		}
	}
	/* len is respected: "10.0.0.1" inside a longer buffer */
	{
		unsigned char a[CIDR_ADDR_LEN];
		char buf[64];

		cr_assert_eq(cidr_addr_parse("10.0.0.1,junk", 8, a), CIDR_OK);
		cidr_addr_format(a, buf, sizeof(buf));
		cr_assert_str_eq(buf, "10.0.0.1");
	}
}

Test(cidr, networks)
{
	static const struct {
		const char *in;
		int want;
		const char *shown;
	} cases[] = {
		{ "10.0.0.0/8", CIDR_OK, "10.0.0.0/8" },
		{ "127.0.0.1", CIDR_OK, "127.0.0.1/32" },
		{ "0.0.0.0/0", CIDR_OK, "0.0.0.0/0" },
		{ "::1", CIDR_OK, "::1/128" },
		{ "2001:db8::/32", CIDR_OK, "2001:db8::/32" },
		{ "::/0", CIDR_OK, "::/0" },
		{ "192.168.1.128/25", CIDR_OK, "192.168.1.128/25" },
		{ "10.1.2.3/8", CIDR_ERR_HOSTBITS, NULL },
		{ "2001:db8::1/32", CIDR_ERR_HOSTBITS, NULL },
		{ "10.0.0.0/33", CIDR_ERR_SYNTAX, NULL },
		{ "::/129", CIDR_ERR_SYNTAX, NULL },
		{ "10.0.0.0/", CIDR_ERR_SYNTAX, NULL },
		{ "10.0.0.0/08", CIDR_ERR_SYNTAX, NULL },
		{ "10.0.0.0/+8", CIDR_ERR_SYNTAX, NULL },
		{ "10.0.0.0/8/8", CIDR_ERR_SYNTAX, NULL },
		{ "10.0.0.0/1000", CIDR_ERR_SYNTAX, NULL },
		{ "/8", CIDR_ERR_SYNTAX, NULL },
		{ "", CIDR_ERR_SYNTAX, NULL },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct cidr c;
		char buf[64];
		int rc = cidr_parse(cases[i].in, strlen(cases[i].in), &c);

		cr_assert_eq(rc, cases[i].want, "network '%s': got %d, want %d", cases[i].in, rc, cases[i].want);
		if (rc == CIDR_OK) {
			cidr_format(&c, buf, sizeof(buf));
			cr_assert_str_eq(buf, cases[i].shown, "network '%s' shown: got %s, want %s",
			    cases[i].in, buf, cases[i].shown);
		}
	}
}

Test(cidr, contains)
{
	static const struct {
		const char *net, *addr;
		int want;
	} cases[] = {
		{ "10.0.0.0/8", "10.255.1.2", 1 },
		{ "10.0.0.0/8", "11.0.0.0", 0 },
		{ "10.0.0.0/8", "::ffff:10.0.0.1", 1 },     /* a dual-stack socket's mapped peer */
		{ "127.0.0.1", "127.0.0.1", 1 },
		{ "127.0.0.1", "127.0.0.2", 0 },
		{ "192.168.1.128/25", "192.168.1.200", 1 },
		{ "192.168.1.128/25", "192.168.1.127", 0 },
		{ "0.0.0.0/0", "8.8.8.8", 1 },
		{ "0.0.0.0/0", "::1", 0 },                   /* IPv4 networks hold IPv4 only */
		{ "::1", "::1", 1 },
		{ "::1", "127.0.0.1", 0 },
		{ "2001:db8::/32", "2001:db8:ffff::1", 1 },
		{ "2001:db8::/32", "2001:db9::1", 0 },
		{ "2001:db8::/31", "2001:db9::1", 1 },
		{ "::/0", "10.0.0.1", 1 },                   /* ::/0 is every address */
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct cidr c;
		unsigned char a[CIDR_ADDR_LEN];
		int got;

		cr_assert_eq(cidr_parse(cases[i].net, strlen(cases[i].net), &c), CIDR_OK, "%s", cases[i].net);
		addr(cases[i].addr, a);
		got = cidr_contains(&c, a);
		cr_assert_eq(got, cases[i].want, "%s in %s: got %d, want %d", cases[i].addr, cases[i].net,
		    got, cases[i].want);
	}
}

Test(cidr, lists)
{
	static const struct {
		const char *in;
		int want;
		size_t n;
		const char *shown;
	} cases[] = {
		{ "", CIDR_OK, 0, "" },
		{ "  ", CIDR_OK, 0, "" },
		{ "10.0.0.0/8", CIDR_OK, 1, "10.0.0.0/8" },
		{ "10.0.0.0/8, ::1 ,\t192.168.0.1", CIDR_OK, 3, "10.0.0.0/8,::1/128,192.168.0.1/32" },
		{ "10.0.0.0/8,", CIDR_ERR_SYNTAX, 0, NULL },
		{ ",10.0.0.0/8", CIDR_ERR_SYNTAX, 0, NULL },
		{ "10.0.0.0/8,,::1", CIDR_ERR_SYNTAX, 0, NULL },
		{ "10.0.0.0/8,nope", CIDR_ERR_SYNTAX, 0, NULL },
		{ "10.0.0.1/8", CIDR_ERR_HOSTBITS, 0, NULL },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct cidr_list l;
		char err[160], buf[CIDR_LIST_TEXT_MAX];
		int rc = cidr_list_parse(cases[i].in, strlen(cases[i].in), &l, err, sizeof(err));

		cr_assert_eq(rc, cases[i].want, "list '%s': got %d, want %d (%s)", cases[i].in, rc,
		    cases[i].want, err);
		cr_assert_eq(l.n, cases[i].n, "list '%s': got %zu networks, want %zu", cases[i].in, l.n,
		    cases[i].n);
		if (rc == CIDR_OK) {
			cidr_list_format(&l, buf, sizeof(buf));
			cr_assert_str_eq(buf, cases[i].shown, "list '%s': got %s, want %s", cases[i].in, buf,
			    cases[i].shown);
		} else {
			cr_assert_neq(err[0], '\0', "list '%s': no error text", cases[i].in);
		}
	}
	/* too many */
	{
		char big[CIDR_LIST_MAX * 12 + 16];
		size_t used = 0;
		struct cidr_list l;
		char err[160];

		for (int i = 0; i <= CIDR_LIST_MAX; i++)
			used += (size_t)snprintf(big + used, sizeof(big) - used, "%s10.0.%d.1", i ? "," : "", i);
		cr_assert_eq(cidr_list_parse(big, used, &l, err, sizeof(err)), CIDR_ERR_TOOMANY);
		cr_assert_eq(l.n, 0);
	}
	/* match */
	{
		struct cidr_list l;
		unsigned char a[CIDR_ADDR_LEN];

		cr_assert_eq(cidr_list_parse("10.0.0.0/8,::1", 14, &l, NULL, 0), CIDR_OK);
		addr("10.9.9.9", a);
		cr_assert_eq(cidr_list_match(&l, a), 1);
		addr("::1", a);
		cr_assert_eq(cidr_list_match(&l, a), 1);
		addr("127.0.0.1", a);
		cr_assert_eq(cidr_list_match(&l, a), 0);
		l.n = 0;
		addr("10.9.9.9", a);
		cr_assert_eq(cidr_list_match(&l, a), 0, "an empty list matches nothing");
	}
}

/* cidr_client with trusted = 127.0.0.1/32, 10.0.0.0/8 */
Test(cidr, client_behind_proxies)
{
	static const struct {
		const char *peer;
		const char *xff[3];     /* header lines, NULL-terminated */
		int want;
		const char *client;
	} cases[] = {
		/* an untrusted peer: X-Forwarded-For is ignored entirely */
		{ "192.0.2.1", { "10.0.0.5", NULL }, CIDR_OK, "192.0.2.1" },
		{ "192.0.2.1", { "garbage", NULL }, CIDR_OK, "192.0.2.1" },
		/* a trusted peer: the right-most untrusted entry */
		{ "127.0.0.1", { "203.0.113.7", NULL }, CIDR_OK, "203.0.113.7" },
		{ "127.0.0.1", { "198.51.100.1, 203.0.113.7", NULL }, CIDR_OK, "203.0.113.7" },
		{ "127.0.0.1", { "198.51.100.1, 203.0.113.7, 10.1.1.1", NULL }, CIDR_OK, "203.0.113.7" },
		/* a spoofed left part never wins over what the proxy appended */
		{ "127.0.0.1", { "10.0.0.1, 203.0.113.7", NULL }, CIDR_OK, "203.0.113.7" },
		/* every entry trusted: the left-most */
		{ "127.0.0.1", { "10.0.0.9, 10.0.0.8", NULL }, CIDR_OK, "10.0.0.9" },
		/* no header, or only empty elements: the proxy itself */
		{ "127.0.0.1", { NULL }, CIDR_OK, "127.0.0.1" },
		{ "127.0.0.1", { " , ,", NULL }, CIDR_OK, "127.0.0.1" },
		{ "127.0.0.1", { "", NULL }, CIDR_OK, "127.0.0.1" },
		/* several lines are one list, first line first */
		{ "127.0.0.1", { "198.51.100.1", "203.0.113.7", NULL }, CIDR_OK, "203.0.113.7" },
		{ "127.0.0.1", { "198.51.100.1", "10.2.2.2", NULL }, CIDR_OK, "198.51.100.1" },
		{ "127.0.0.1", { "198.51.100.1,", ",10.2.2.2", NULL }, CIDR_OK, "198.51.100.1" },
		/* IPv6 entries, OWS */
		{ "127.0.0.1", { "\t2001:db8::1 ", NULL }, CIDR_OK, "2001:db8::1" },
		{ "::ffff:127.0.0.1", { "203.0.113.9", NULL }, CIDR_OK, "203.0.113.9" },
		/* malformed where the walk reaches it: unknown */
		{ "127.0.0.1", { "not-an-ip", NULL }, CIDR_ERR_SYNTAX, NULL },
		{ "127.0.0.1", { "203.0.113.7:443", NULL }, CIDR_ERR_SYNTAX, NULL },
		{ "127.0.0.1", { "[2001:db8::1]", NULL }, CIDR_ERR_SYNTAX, NULL },
		{ "127.0.0.1", { "unknown, 10.0.0.3", NULL }, CIDR_ERR_SYNTAX, NULL },
		{ "127.0.0.1", { "1.2.3.4 5.6.7.8", NULL }, CIDR_ERR_SYNTAX, NULL },
		/* malformed left of the answer is never read */
		{ "127.0.0.1", { "junk, 203.0.113.7", NULL }, CIDR_OK, "203.0.113.7" },
	};
	struct cidr_list trusted;

	cr_assert_eq(cidr_list_parse("127.0.0.1/32,10.0.0.0/8", 23, &trusted, NULL, 0), CIDR_OK);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		unsigned char peer[CIDR_ADDR_LEN], out[CIDR_ADDR_LEN];
		size_t n = 0;
		char buf[64];
		int rc;

		addr(cases[i].peer, peer);
		while (n < 3 && cases[i].xff[n] != NULL)
			n++;
		memset(out, 0xee, sizeof(out));
		rc = cidr_client(peer, &trusted, cases[i].xff, n, out);
		cr_assert_eq(rc, cases[i].want, "case %zu (peer %s, xff '%s'): got %d, want %d", i,
		    cases[i].peer, cases[i].xff[0] != NULL ? cases[i].xff[0] : "(none)", rc, cases[i].want);
		if (rc == CIDR_OK) {
			cidr_addr_format(out, buf, sizeof(buf));
			cr_assert_str_eq(buf, cases[i].client, "case %zu (peer %s, xff '%s'): got %s, want %s",
			    i, cases[i].peer, cases[i].xff[0] != NULL ? cases[i].xff[0] : "(none)", buf,
			    cases[i].client);
		}
	}
	/* with no trusted proxies the peer is the client, whatever the header says */
	{
		struct cidr_list none = { .n = 0 };
		unsigned char peer[CIDR_ADDR_LEN], out[CIDR_ADDR_LEN];
		const char *xff[] = { "203.0.113.7" };
		char buf[64];

		addr("127.0.0.1", peer);
		cr_assert_eq(cidr_client(peer, &none, xff, 1, out), CIDR_OK);
		cidr_addr_format(out, buf, sizeof(buf));
		cr_assert_str_eq(buf, "127.0.0.1");
	}
	/* more header lines than considered: unknown */
	{
		const char *many[CIDR_XFF_MAX_VALUES + 1];
		unsigned char peer[CIDR_ADDR_LEN], out[CIDR_ADDR_LEN];

		for (size_t i = 0; i < CIDR_XFF_MAX_VALUES + 1; i++)
			many[i] = "203.0.113.7";
		addr("127.0.0.1", peer);
		cr_assert_eq(cidr_client(peer, &trusted, many, CIDR_XFF_MAX_VALUES + 1, out), CIDR_ERR_SYNTAX);
	}
}
