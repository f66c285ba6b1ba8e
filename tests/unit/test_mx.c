/*
 * test_mx.c - the DNS answer parser (smtp/mx.c) and the host order
 * (server/route.c route_order), fed with packets built byte by byte here.
 */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "../../server/route.h"
#include "../../smtp/mx.h"

struct pkt {
	unsigned char b[1024];
	size_t n;
};

static void
put(struct pkt *p, const void *x, size_t n)
{
	cr_assert(p->n + n <= sizeof(p->b));
	memcpy(p->b + p->n, x, n);
	p->n += n;
}

static void
u8(struct pkt *p, unsigned v)
{
	unsigned char c = (unsigned char)v;
	put(p, &c, 1);
}

static void
u16(struct pkt *p, unsigned v)
{
	u8(p, v >> 8);
	u8(p, v & 0xFF);
}

static void
u32(struct pkt *p, uint32_t v)
{
	u16(p, v >> 16);
	u16(p, v & 0xFFFF);
}

/* "a.b" as labels, no terminator when ptr >= 0 (a pointer follows instead) */
static void
name(struct pkt *p, const char *s, int ptr)
{
	while (*s != '\0') {
		const char *dot = strchr(s, '.');
		size_t l = dot ? (size_t)(dot - s) : strlen(s);
		u8(p, (unsigned)l);
		put(p, s, l);
		s += l + (dot != NULL);
	}
	if (ptr >= 0)
		u16(p, 0xC000u | (unsigned)ptr);
	else
		u8(p, 0);
}

static void
header(struct pkt *p, unsigned rcode, unsigned an)
{
	p->n = 0;
	u16(p, 0x1234);
	u8(p, 0x81);          /* QR, RD */
	u8(p, 0x80 | rcode);  /* RA */
	u16(p, 1);
	u16(p, an);
	u16(p, 0);
	u16(p, 0);
	name(p, "example.test", -1);   /* question at offset 12 */
	u16(p, 15);
	u16(p, 1);
}

/* MX record, owner = pointer to the question name; exchange as labels + optional pointer */
static void
mx(struct pkt *p, uint32_t ttl, unsigned pref, const char *exch, int ptr)
{
	size_t len_at;

	u16(p, 0xC00C);
	u16(p, 15);
	u16(p, 1);
	u32(p, ttl);
	len_at = p->n;
	u16(p, 0);
	u16(p, pref);
	name(p, exch, ptr);
	p->b[len_at] = (unsigned char)((p->n - len_at - 2) >> 8);
	p->b[len_at + 1] = (unsigned char)((p->n - len_at - 2) & 0xFF);
}

static void
rec_a(struct pkt *p, uint32_t ttl, const unsigned char ip[4])
{
	u16(p, 0xC00C);
	u16(p, 1);
	u16(p, 1);
	u32(p, ttl);
	u16(p, 4);
	put(p, ip, 4);
}

Test(mx, several_mx_with_compression)
{
	struct pkt p;
	struct mx_parsed r;

	header(&p, 0, 3);
	mx(&p, 300, 20, "mx2", 12);        /* mx2.example.test via pointer */
	mx(&p, 60, 10, "mx1", 12);
	mx(&p, 900, 10, "", 12);           /* exchange = example.test itself */
	cr_assert_eq(mx_parse(p.b, p.n, &r), 0, "parse: got error, want 0");
	cr_expect_eq(r.rcode, 0);
	cr_expect_eq(r.qtype, 15, "qtype: got %u, want 15", r.qtype);
	cr_assert_eq(r.nmx, 3, "nmx: got %zu, want 3", r.nmx);
	cr_expect_str_eq(r.mx[0].name, "mx2.example.test");
	cr_expect_eq(r.mx[0].pref, 20);
	cr_expect_str_eq(r.mx[1].name, "mx1.example.test");
	cr_expect_str_eq(r.mx[2].name, "example.test");
	cr_expect_eq(r.min_ttl, 60, "min_ttl: got %u, want 60", r.min_ttl);
	cr_expect_eq(mx_classify(&r), MX_OK);
}

Test(mx, addresses)
{
	static const unsigned char ip[4] = { 192, 0, 2, 7 };
	struct pkt p;
	struct mx_parsed r;

	header(&p, 0, 2);
	rec_a(&p, 30, ip);
	u16(&p, 0xC00C);   /* AAAA 2001:db8::1 */
	u16(&p, 28);
	u16(&p, 1);
	u32(&p, 0x80000000u);   /* top bit set: TTL 0 (RFC 2181) */
	u16(&p, 16);
	{
		unsigned char v6[16] = { 0x20, 0x01, 0x0d, 0xb8, [15] = 1 };
		put(&p, v6, 16);
	}
	cr_assert_eq(mx_parse(p.b, p.n, &r), 0);
	cr_assert_eq(r.naddr, 2, "naddr: got %zu, want 2", r.naddr);
	cr_expect_str_eq(r.addrs[0], "192.0.2.7");
	cr_expect_str_eq(r.addrs[1], "2001:db8::1");
	cr_expect_eq(r.min_ttl, 0, "min_ttl: got %u, want 0", r.min_ttl);
	cr_expect_eq(mx_classify(&r), MX_NOHOST, "no MX records: want MX_NOHOST");
}

Test(mx, classify_table)
{
	static const struct {
		const char *what;
		unsigned rcode;
		int nullmx, real;
		enum mx_status want;
	} cases[] = {
		{ "nxdomain", 3, 0, 0, MX_NXDOMAIN },
		{ "servfail", 2, 0, 0, MX_TEMPFAIL },
		{ "refused", 5, 0, 0, MX_TEMPFAIL },
		{ "nodata", 0, 0, 0, MX_NOHOST },
		{ "null mx", 0, 1, 0, MX_NULL },
		{ "null mx among real ones", 0, 1, 1, MX_OK },
		{ "real", 0, 0, 1, MX_OK },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct pkt p;
		struct mx_parsed r;
		enum mx_status got;

		header(&p, cases[i].rcode, (unsigned)(cases[i].nullmx + cases[i].real));
		if (cases[i].nullmx)
			mx(&p, 100, 0, "", -1);    /* "0 ." */
		if (cases[i].real)
			mx(&p, 100, 5, "mx.example.test", -1);
		cr_assert_eq(mx_parse(p.b, p.n, &r), 0, "%s: parse failed", cases[i].what);
		got = mx_classify(&r);
		cr_expect_eq(got, cases[i].want, "%s: got %d, want %d", cases[i].what, got, cases[i].want);
	}
}

Test(mx, malformed_never_crash)
{
	struct pkt good, p;
	struct mx_parsed r;

	header(&good, 0, 2);
	mx(&good, 300, 10, "mx1", 12);
	mx(&good, 300, 20, "mx2.other.test", -1);
	/* every truncation of a good packet is an error, never a crash */
	for (size_t n = 0; n < good.n; n++) {
		int rc = mx_parse(good.b, n, &r);
		cr_expect_eq(rc, MX_EMALFORMED, "truncated to %zu of %zu: got %d, want MX_EMALFORMED", n, good.n, rc);
	}
	cr_expect_eq(mx_parse(good.b, good.n, &r), 0);

	/* pointer loop: the exchange points at itself */
	header(&p, 0, 1);
	u16(&p, 0xC00C); u16(&p, 15); u16(&p, 1); u32(&p, 1); u16(&p, 4); u16(&p, 10);
	u16(&p, 0xC000u | (unsigned)p.n);
	cr_expect_eq(mx_parse(p.b, p.n, &r), MX_EMALFORMED, "self pointer: want MX_EMALFORMED");

	/* forward pointer */
	header(&p, 0, 1);
	u16(&p, 0xC00C); u16(&p, 15); u16(&p, 1); u32(&p, 1); u16(&p, 4); u16(&p, 10);
	u16(&p, 0xC000u | (unsigned)(p.n + 2));
	cr_expect_eq(mx_parse(p.b, p.n, &r), MX_EMALFORMED, "forward pointer: want MX_EMALFORMED");

	/* A record with a bad length */
	header(&p, 0, 1);
	u16(&p, 0xC00C); u16(&p, 1); u16(&p, 1); u32(&p, 1); u16(&p, 3); u8(&p, 1); u8(&p, 2); u8(&p, 3);
	cr_expect_eq(mx_parse(p.b, p.n, &r), MX_EMALFORMED, "A rdlen 3: want MX_EMALFORMED");

	/* rdlength past the end */
	header(&p, 0, 1);
	u16(&p, 0xC00C); u16(&p, 15); u16(&p, 1); u32(&p, 1); u16(&p, 200); u16(&p, 10);
	cr_expect_eq(mx_parse(p.b, p.n, &r), MX_EMALFORMED, "rdlen past end: want MX_EMALFORMED");

	/* extended label type */
	header(&p, 0, 1);
	u8(&p, 0x41);
	cr_expect_eq(mx_parse(p.b, p.n, &r), MX_EMALFORMED, "label type 0x40: want MX_EMALFORMED");

	/* every single-byte corruption of the good packet: any result, no crash (ASan checks) */
	for (size_t i = 0; i < good.n; i++) {
		for (unsigned v = 0; v < 256; v += 17) {
			p = good;
			p.b[i] = (unsigned char)v;
			(void)mx_parse(p.b, p.n, &r);
		}
	}
	cr_expect_eq(mx_parse(NULL, 0, &r), MX_EMALFORMED);
}

Test(mx, bad_exchange_skipped)
{
	struct pkt p;
	struct mx_parsed r;

	header(&p, 0, 2);
	mx(&p, 100, 10, "bad host", -1);   /* space: not a host name */
	mx(&p, 100, 20, "ok.example.test", -1);
	cr_assert_eq(mx_parse(p.b, p.n, &r), 0);
	cr_assert_eq(r.nmx, 1, "nmx: got %zu, want 1", r.nmx);
	cr_expect_str_eq(r.mx[0].name, "ok.example.test");
}

static unsigned
rnd_last(unsigned n)
{
	return n - 1;   /* deterministic: Fisher-Yates with k swaps with itself */
}

static unsigned
rnd_first(unsigned n)
{
	(void)n;
	return 0;
}

Test(route, order_and_shuffle)
{
	struct mx_answer a;
	struct route_result r;

	memset(&a, 0, sizeof(a));
	a.status = MX_OK;
	a.nhosts = 3;
	a.hosts[0].pref = 10;
	snprintf(a.hosts[0].name, sizeof(a.hosts[0].name), "%s", "a.test");
	a.hosts[0].naddr = 2;
	snprintf(a.hosts[0].addrs[0], sizeof(a.hosts[0].addrs[0]), "%s", "2001:db8::a");
	snprintf(a.hosts[0].addrs[1], sizeof(a.hosts[0].addrs[1]), "%s", "192.0.2.1");
	a.hosts[1].pref = 10;
	snprintf(a.hosts[1].name, sizeof(a.hosts[1].name), "%s", "b.test");
	a.hosts[1].naddr = 1;
	snprintf(a.hosts[1].addrs[0], sizeof(a.hosts[1].addrs[0]), "%s", "192.0.2.2");
	a.hosts[2].pref = 5;
	snprintf(a.hosts[2].name, sizeof(a.hosts[2].name), "%s", "c.test");
	a.hosts[2].naddr = 1;
	snprintf(a.hosts[2].addrs[0], sizeof(a.hosts[2].addrs[0]), "%s", "192.0.2.3");

	route_order(&a, NULL, &r);
	cr_assert_eq(r.status, ROUTE_OK);
	cr_assert_eq(r.naddr, 4, "naddr: got %zu, want 4", r.naddr);
	{
		static const char *const want[] = { "192.0.2.3", "192.0.2.1", "192.0.2.2", "2001:db8::a" };
		for (size_t i = 0; i < 4; i++)
			cr_expect_str_eq(r.addrs[i].ip, want[i], "addr %zu: got %s, want %s", i, r.addrs[i].ip, want[i]);
	}
	route_order(&a, rnd_first, &r);
	/* the pref-10 IPv4 run [1,2] is swapped; the others stay */
	cr_expect_str_eq(r.addrs[0].ip, "192.0.2.3");
	cr_expect_str_eq(r.addrs[1].ip, "192.0.2.2", "got %s, want 192.0.2.2", r.addrs[1].ip);
	cr_expect_str_eq(r.addrs[2].ip, "192.0.2.1");
	cr_expect_str_eq(r.addrs[3].ip, "2001:db8::a");
	route_order(&a, rnd_last, &r);
	cr_expect_str_eq(r.addrs[1].ip, "192.0.2.1", "got %s, want 192.0.2.1", r.addrs[1].ip);
}

Test(route, status_table)
{
	static const struct {
		enum mx_status in;
		enum route_status want;
		const char *enhanced;
	} cases[] = {
		{ MX_NXDOMAIN, ROUTE_PERMFAIL, "5.1.2" },
		{ MX_NOHOST, ROUTE_PERMFAIL, "5.1.2" },
		{ MX_NULL, ROUTE_PERMFAIL, "5.1.10" },
		{ MX_TEMPFAIL, ROUTE_TEMPFAIL, "" },
		{ MX_OK, ROUTE_TEMPFAIL, "" },   /* OK without any address: defer */
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct mx_answer a;
		struct route_result r;

		memset(&a, 0, sizeof(a));
		a.status = cases[i].in;
		route_order(&a, NULL, &r);
		cr_expect_eq(r.status, cases[i].want, "case %zu: got %d, want %d", i, r.status, cases[i].want);
		cr_expect_str_eq(r.enhanced, cases[i].enhanced, "case %zu: got %s, want %s", i,
		    r.enhanced, cases[i].enhanced);
	}
}
