/*
 * mx.c - MX, A and AAAA lookups: a pure DNS response parser and one blocking
 * resolver function over libresolv (res_nmkquery + res_nsend).
 *
 * Owns: reading DNS packets (every offset is checked against the length;
 * compression pointers must point backwards and are followed a bounded
 * number of times) and the RFC 5321 5.1 / RFC 7505 routing rules: MX in
 * preference order, no MX -> the domain's own address, null MX -> no mail.
 * Must never: cache, log, sleep, or be called on the SMTP engine thread
 * (mx_resolve blocks for up to a few timeouts).
 */
#include "mx.h"

#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <errno.h>
#include <netinet/in.h>
#include <resolv.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DNS_HDR 12
#define MAX_JUMPS 64
#define T_A_ 1
#define T_MX_ 15
#define T_AAAA_ 28
#define C_IN_ 1

static uint16_t
rd16(const unsigned char *p)
{
	return (uint16_t)((p[0] << 8) | p[1]);
}

static uint32_t
rd32(const unsigned char *p)
{
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static int
host_char(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	    c == '-' || c == '_';
}

/*
 * Read the (possibly compressed) name at off. Writes it, dot-separated and
 * without the trailing dot, into out (may be NULL). *next is the offset just
 * past the name where it starts. Returns 0, -1 malformed, -2 well-formed but
 * not a plain host name.
 */
static int
read_name(const unsigned char *buf, size_t len, size_t off, char *out, size_t outlen,
    size_t *next)
{
	size_t pos = off, o = 0, total = 0;
	int jumped = 0, jumps = 0, bad = 0;

	for (;;) {
		unsigned char c;

		if (pos >= len)
			return -1;
		c = buf[pos];
		if ((c & 0xC0) == 0xC0) {
			size_t ptr;

			if (pos + 1 >= len)
				return -1;
			ptr = ((size_t)(c & 0x3F) << 8) | buf[pos + 1];
			if (ptr >= pos || ++jumps > MAX_JUMPS)
				return -1;   /* forward pointer or loop */
			if (!jumped)
				*next = pos + 2;
			jumped = 1;
			pos = ptr;
			continue;
		}
		if ((c & 0xC0) != 0)
			return -1;   /* extended label types are not used */
		if (c == 0) {
			if (!jumped)
				*next = pos + 1;
			break;
		}
		if (pos + 1 + c > len)
			return -1;
		total += (size_t)c + 1;
		if (total > 255)
			return -1;
		if (out != NULL && o + (o > 0) + c + 1 > outlen)
			return -1;
		if (out != NULL && o > 0)
			out[o++] = '.';
		for (size_t i = 0; i < c; i++) {
			unsigned char ch = buf[pos + 1 + i];
			if (!host_char(ch))
				bad = 1;
			if (out != NULL)
				out[o++] = (char)ch;
		}
		pos += 1 + (size_t)c;
	}
	if (out != NULL)
		out[o] = '\0';
	return bad ? -2 : 0;
}

int
mx_parse(const unsigned char *buf, size_t len, struct mx_parsed *out)
{
	size_t pos, qd, an;
	uint32_t min_ttl = UINT32_MAX;

	memset(out, 0, sizeof(*out));
	if (buf == NULL || len < DNS_HDR)
		return MX_EMALFORMED;
	out->truncated = (buf[2] & 0x02) != 0;
	out->rcode = buf[3] & 0x0F;
	qd = rd16(buf + 4);
	an = rd16(buf + 6);
	pos = DNS_HDR;
	for (size_t i = 0; i < qd; i++) {
		size_t next = 0;

		if (read_name(buf, len, pos, NULL, 0, &next) == -1 || next + 4 > len)
			return MX_EMALFORMED;
		if (i == 0)
			out->qtype = rd16(buf + next);
		pos = next + 4;
	}
	for (size_t i = 0; i < an; i++) {
		size_t next = 0, rdata, rdlen;
		uint16_t type, cls;
		uint32_t ttl;

		if (read_name(buf, len, pos, NULL, 0, &next) == -1 || next + 10 > len)
			return MX_EMALFORMED;
		type = rd16(buf + next);
		cls = rd16(buf + next + 2);
		ttl = rd32(buf + next + 4);
		if (ttl > 0x7FFFFFFFu)
			ttl = 0;   /* RFC 2181 8 */
		rdlen = rd16(buf + next + 8);
		rdata = next + 10;
		if (rdata + rdlen > len)
			return MX_EMALFORMED;
		pos = rdata + rdlen;
		if (cls != C_IN_)
			continue;
		if (type == T_MX_) {
			struct mx_record rec;
			size_t nend = 0;
			int rc;

			if (rdlen < 3)
				return MX_EMALFORMED;
			rec.pref = rd16(buf + rdata);
			rc = read_name(buf, len, rdata + 2, rec.name, sizeof(rec.name), &nend);
			if (rc == -1 || nend > rdata + rdlen)
				return MX_EMALFORMED;
			if (rc == -2 || out->nmx == MX_MAX_RECORDS)
				continue;
			out->mx[out->nmx++] = rec;
		} else if (type == T_A_ || type == T_AAAA_) {
			if (rdlen != (type == T_A_ ? 4u : 16u))
				return MX_EMALFORMED;
			if (out->naddr == MX_MAX_ADDRS)
				continue;
			if (inet_ntop(type == T_A_ ? AF_INET : AF_INET6, buf + rdata,
			    out->addrs[out->naddr], MX_ADDR_MAX) == NULL)
				return MX_EMALFORMED;
			out->naddr++;
		} else {
			continue;   /* CNAME and others: not kept */
		}
		if (ttl < min_ttl)
			min_ttl = ttl;
	}
	out->min_ttl = min_ttl == UINT32_MAX ? 0 : min_ttl;
	return 0;
}

enum mx_status
mx_classify(const struct mx_parsed *p)
{
	size_t usable = 0;

	if (p->rcode == 3)
		return MX_NXDOMAIN;
	if (p->rcode != 0)
		return MX_TEMPFAIL;
	for (size_t i = 0; i < p->nmx; i++)
		if (p->mx[i].name[0] != '\0')
			usable++;
	if (usable > 0)
		return MX_OK;
	if (p->nmx > 0)
		return MX_NULL;
	return MX_NOHOST;
}

/* --- the blocking part ------------------------------------------------- */

#define ANSWER_MAX 65536

struct lookup {
	struct __res_state st;
	unsigned char *ans;
	uint32_t ttl;
};

static void
ttl_min(struct lookup *lk, const struct mx_parsed *p)
{
	if ((p->nmx > 0 || p->naddr > 0) && p->min_ttl < lk->ttl)
		lk->ttl = p->min_ttl;
}

/* One query; 0 with *p filled, -1 when no usable answer came (timeout, network, malformed). */
static int
query(struct lookup *lk, const char *name, int type, struct mx_parsed *p)
{
	unsigned char q[NS_PACKETSZ];
	int qlen, alen;

	qlen = res_nmkquery(&lk->st, ns_o_query, name, C_IN_, type, NULL, 0, NULL, q, sizeof(q));
	if (qlen <= 0)
		return -1;
	alen = res_nsend(&lk->st, q, qlen, lk->ans, ANSWER_MAX);
	if (alen <= 0 || alen > ANSWER_MAX)
		return -1;
	if (mx_parse(lk->ans, (size_t)alen, p) != 0)
		return -1;
	ttl_min(lk, p);
	return 0;
}

/*
 * Fill h->addrs with name's A then AAAA addresses. Returns 0 when both
 * queries were answered (NOERROR or NXDOMAIN), -1 when one failed.
 */
static int
resolve_addrs(struct lookup *lk, const char *name, struct mx_host *h)
{
	static const int types[2] = { T_A_, T_AAAA_ };
	struct mx_parsed *p = malloc(sizeof(*p));
	int rc = 0;

	if (p == NULL)
		return -1;
	h->naddr = 0;
	for (size_t t = 0; t < 2; t++) {
		if (query(lk, name, types[t], p) != 0 || (p->rcode != 0 && p->rcode != 3)) {
			rc = -1;
			continue;
		}
		for (size_t i = 0; i < p->naddr && h->naddr < MX_MAX_ADDRS; i++) {
			int v6 = strchr(p->addrs[i], ':') != NULL;
			if (v6 != (types[t] == T_AAAA_))
				continue;   /* an A answer holds A records only */
			memcpy(h->addrs[h->naddr++], p->addrs[i], MX_ADDR_MAX);
		}
	}
	free(p);
	return rc;
}

static int
parse_server(const char *s, struct sockaddr_in *sa)
{
	const char *colon = strrchr(s, ':');
	char ip[INET_ADDRSTRLEN];
	char *e;
	long port;

	if (colon == NULL || (size_t)(colon - s) >= sizeof(ip) || colon == s)
		return -1;
	memcpy(ip, s, (size_t)(colon - s));
	ip[colon - s] = '\0';
	errno = 0;
	port = strtol(colon + 1, &e, 10);
	if (errno != 0 || e == colon + 1 || *e != '\0' || port < 1 || port > 65535)
		return -1;
	memset(sa, 0, sizeof(*sa));
	sa->sin_family = AF_INET;
	sa->sin_port = htons((uint16_t)port);
	return inet_pton(AF_INET, ip, &sa->sin_addr) == 1 ? 0 : -1;
}

static void
answer_status(struct mx_answer *out, enum mx_status st, const char *text)
{
	out->status = st;
	snprintf(out->text, sizeof(out->text), "%s", text);
}

int
mx_resolve(const char *domain, const char *server, int timeout_s, struct mx_answer *out)
{
	struct lookup *lk = NULL;
	struct mx_parsed *p = NULL;
	char name[MX_NAME_MAX];
	size_t dlen;
	int rc = -1, failed = 0;

	memset(out, 0, sizeof(*out));
	out->status = MX_TEMPFAIL;
	dlen = domain != NULL ? strlen(domain) : 0;
	if (dlen > 0 && domain[dlen - 1] == '.')
		dlen--;
	if (dlen == 0 || dlen >= sizeof(name) - 2) {
		snprintf(out->text, sizeof(out->text), "bad domain name");
		goto out;
	}
	memcpy(name, domain, dlen);
	name[dlen] = '\0';
	lk = calloc(1, sizeof(*lk));
	p = malloc(sizeof(*p));
	if (lk == NULL || p == NULL || (lk->ans = malloc(ANSWER_MAX)) == NULL) {
		snprintf(out->text, sizeof(out->text), "out of memory");
		goto out;
	}
	lk->ttl = UINT32_MAX;
	if (res_ninit(&lk->st) != 0) {
		snprintf(out->text, sizeof(out->text), "cannot initialise the resolver");
		rc = 0;
		goto out;
	}
	if (server != NULL && server[0] != '\0') {
		struct sockaddr_in sa;
		if (parse_server(server, &sa) != 0) {
			snprintf(out->text, sizeof(out->text), "bad DNS server \"%.64s\" (want ip:port)", server);
			res_nclose(&lk->st);
			goto out;
		}
		lk->st.nscount = 1;
		lk->st.nsaddr_list[0] = sa;
	}
	lk->st.retrans = timeout_s > 0 ? timeout_s : 5;
	lk->st.retry = 2;
	rc = 0;

	if (query(lk, name, T_MX_, p) != 0) {
		answer_status(out, MX_TEMPFAIL, "DNS lookup of the domain's MX records timed out or failed");
		goto done;
	}
	switch (mx_classify(p)) {
	case MX_NXDOMAIN:
		answer_status(out, MX_NXDOMAIN, "domain does not exist (NXDOMAIN)");
		goto done;
	case MX_NULL:
		answer_status(out, MX_NULL, "domain does not accept mail (null MX, RFC 7505)");
		goto done;
	case MX_TEMPFAIL:
		snprintf(out->text, sizeof(out->text), "DNS server answered rcode %d to the MX query",
		    p->rcode);
		out->status = MX_TEMPFAIL;
		goto done;
	case MX_OK: {
		struct mx_parsed *mxs = p;
		size_t with_addr = 0;

		/* stable sort by preference (RFC 5321 5.1); at most MX_MAX_RECORDS */
		for (size_t i = 1; i < mxs->nmx; i++) {
			struct mx_record r = mxs->mx[i];
			size_t k = i;
			while (k > 0 && mxs->mx[k - 1].pref > r.pref) {
				mxs->mx[k] = mxs->mx[k - 1];
				k--;
			}
			mxs->mx[k] = r;
		}
		p = malloc(sizeof(*p));   /* mxs keeps the records; p is reused for address queries */
		if (p == NULL) {
			p = mxs;
			answer_status(out, MX_TEMPFAIL, "out of memory");
			goto done;
		}
		for (size_t i = 0; i < mxs->nmx; i++) {
			struct mx_host *h = &out->hosts[out->nhosts];
			if (mxs->mx[i].name[0] == '\0')
				continue;   /* a stray "." among real MX records */
			h->pref = mxs->mx[i].pref;
			memcpy(h->name, mxs->mx[i].name, sizeof(h->name));
			if (resolve_addrs(lk, h->name, h) != 0)
				failed = 1;
			out->nhosts++;
			if (h->naddr > 0)
				with_addr++;
		}
		free(mxs);
		if (with_addr == 0)
			answer_status(out, MX_TEMPFAIL, failed ?
			    "DNS lookup of the MX hosts' addresses timed out or failed" :
			    "no MX host of the domain has an address");
		else
			out->status = MX_OK;
		goto done;
	}
	case MX_NOHOST:
		break;
	}
	/* No MX: the domain itself is the host (RFC 5321 5.1). */
	out->implicit = 1;
	out->nhosts = 1;
	memcpy(out->hosts[0].name, name, dlen + 1);
	failed = resolve_addrs(lk, name, &out->hosts[0]) != 0;
	if (out->hosts[0].naddr > 0)
		out->status = MX_OK;
	else if (failed)
		answer_status(out, MX_TEMPFAIL, "DNS lookup of the domain's A/AAAA records timed out or failed");
	else
		answer_status(out, MX_NOHOST, "domain has no MX and no A/AAAA record");
done:
	out->ttl = lk->ttl == UINT32_MAX ? 0 : lk->ttl;
	res_nclose(&lk->st);
out:
	if (lk != NULL)
		free(lk->ans);
	free(lk);
	free(p);
	return rc;
}
