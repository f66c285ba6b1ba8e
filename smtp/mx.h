/*
 * mx.h - where mail for a domain goes: MX, A and AAAA lookups (RFC 5321 5.1,
 * RFC 7505 null MX).
 *
 * Two layers. mx_parse is pure: it reads one DNS response held in a buffer
 * (name compression, bounds and pointer loops checked; a malformed packet
 * is an error, never a crash) and does no I/O. mx_resolve is the only code
 * in txmail that asks a DNS server: it blocks (res_nsend from libresolv),
 * so it must only run on a thread that may block (server/route.c), never on
 * the SMTP engine thread. Nothing here caches, logs or sleeps.
 */
#ifndef SMTP_MX_H
#define SMTP_MX_H

#include <stddef.h>
#include <stdint.h>

#define MX_NAME_MAX 256       /* a host name, without trailing dot, + NUL */
#define MX_ADDR_MAX 46        /* INET6_ADDRSTRLEN */
#define MX_MAX_RECORDS 16     /* MX records kept from one answer */
#define MX_MAX_ADDRS 8        /* addresses kept per name */

/* How a lookup ended: data for the router, not a program error. */
enum mx_status {
	MX_OK = 0,          /* hosts[] has at least one host with an address */
	MX_NXDOMAIN = 1,    /* the domain does not exist: permanent */
	MX_NULL = 2,        /* null MX "0 ." (RFC 7505): the domain takes no mail: permanent */
	MX_NOHOST = 3,      /* exists, but no MX and no A/AAAA: permanent */
	MX_TEMPFAIL = 4,    /* SERVFAIL, REFUSED, timeout, malformed answer, MX hosts without address */
};

#define MX_EMALFORMED (-1)   /* mx_parse: the packet is cut short or broken */

struct mx_record {
	uint16_t pref;
	char name[MX_NAME_MAX];   /* "" for the root (null MX) */
};

/* One response, parsed. Only the answer section is read. */
struct mx_parsed {
	int rcode;                /* 0 NOERROR, 2 SERVFAIL, 3 NXDOMAIN, ... */
	int truncated;            /* TC bit */
	uint16_t qtype;           /* type of the first question, 0 when none */
	uint32_t min_ttl;         /* smallest TTL of the records kept; 0 when none */
	size_t nmx;
	struct mx_record mx[MX_MAX_RECORDS];
	size_t naddr;             /* A and AAAA records, as text, in answer order */
	char addrs[MX_MAX_ADDRS][MX_ADDR_MAX];
};

/*
 * mx_parse - parse the DNS response buf[0..len). Returns 0, or MX_EMALFORMED
 * when the header, a question, a name or a record runs past the end, a
 * compression pointer loops or points forward, or an MX/A/AAAA record has a
 * bad length. MX records whose exchange is not a plain host name (letters,
 * digits, '-', '_') are skipped; extra records beyond the caps are ignored.
 */
int mx_parse(const unsigned char *buf, size_t len, struct mx_parsed *out);

/*
 * mx_classify - the status one parsed MX response gives on its own:
 * NXDOMAIN, MX_NULL when every MX record is the root, MX_OK when there is at
 * least one usable MX, MX_NOHOST when NOERROR without MX records (the
 * caller then tries A/AAAA), MX_TEMPFAIL for any other rcode.
 */
enum mx_status mx_classify(const struct mx_parsed *p);

struct mx_host {
	uint16_t pref;
	char name[MX_NAME_MAX];
	size_t naddr;                         /* 0: the name has no address */
	char addrs[MX_MAX_ADDRS][MX_ADDR_MAX];   /* IPv4 first, then IPv6 */
};

struct mx_answer {
	enum mx_status status;
	uint32_t ttl;                 /* smallest TTL seen over every query made */
	size_t nhosts;                /* hosts in preference order (ties in answer order) */
	struct mx_host hosts[MX_MAX_RECORDS];
	int implicit;                 /* 1: no MX; hosts[0] is the domain itself (RFC 5321 5.1) */
	char text[256];               /* why, when status is not MX_OK */
};

/*
 * mx_resolve - blocking lookup of where mail for `domain` goes: the MX
 * records and each exchange's A/AAAA; with no MX, the domain's own A/AAAA.
 * server: "ip:port" (IPv4) of the DNS server to ask, or NULL for the system
 * resolver (/etc/resolv.conf). timeout_s: per try (two tries per server).
 * Returns 0 with the result in *out (any status), or -1 for bad arguments
 * (bad server string, domain too long) with out->text set.
 */
int mx_resolve(const char *domain, const char *server, int timeout_s, struct mx_answer *out);

#endif
