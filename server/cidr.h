/*
 * cidr.h - IP networks (CIDR lists) and the client address behind trusted
 * proxies (X-Forwarded-For). Pure: no sockets, no logging, no allocation.
 *
 * Every address is held as 16 bytes: IPv6 as it is, IPv4 as the IPv4-mapped
 * IPv6 address ::ffff:a.b.c.d, so an IPv4 network also matches the mapped
 * peer address of a dual-stack socket; an IPv4 /n is a /96+n over those 16
 * bytes. A bare address is a /32 (IPv4) or /128 (IPv6). Networks with host
 * bits set ("10.1.2.3/8") are refused, not silently widened: an allowlist is
 * a security setting and a typo must not grant more than was written.
 *
 * Used by keys.c (a key's --allow-ip), config.c (TXMAIL_TRUSTED_PROXIES)
 * and http.c (the client address of a request). The parsers read untrusted
 * bytes (X-Forwarded-For): they are bounded, never read past len, and are
 * fuzzed by tests/fuzz/fuzz_cidr.c.
 */
#ifndef SERVER_CIDR_H
#define SERVER_CIDR_H

#include <stddef.h>
#include <sys/socket.h>

#define CIDR_ADDR_LEN 16
#define CIDR_LIST_MAX 32        /* networks in one list (an allowlist, the trusted proxies) */
#define CIDR_TEXT_MAX 44        /* "ffff:...:ffff/128" with NUL */
#define CIDR_LIST_TEXT_MAX (CIDR_LIST_MAX * CIDR_TEXT_MAX)
#define CIDR_XFF_MAX_VALUES 16  /* X-Forwarded-For header lines considered */

struct cidr {
	unsigned char addr[CIDR_ADDR_LEN];  /* the network, host bits zero */
	unsigned char bits;                 /* prefix length over the 16 bytes: 0..128 */
	unsigned char v4;                   /* written as IPv4: shown as IPv4 again */
};

struct cidr_list {
	struct cidr v[CIDR_LIST_MAX];
	size_t n;
};

enum {
	CIDR_OK = 0,
	CIDR_ERR_SYNTAX = -1,   /* not an address or network */
	CIDR_ERR_HOSTBITS = -2, /* a network with bits set after its prefix */
	CIDR_ERR_TOOMANY = -3,  /* more than CIDR_LIST_MAX networks */
};

/*
 * cidr_addr_parse - the IP address (s, len), IPv4 dotted quad or IPv6
 * (no zone, no brackets, no prefix), into out. CIDR_OK or CIDR_ERR_SYNTAX.
 */
int cidr_addr_parse(const char *s, size_t len, unsigned char out[CIDR_ADDR_LEN]);

/*
 * cidr_parse - "addr" or "addr/prefix" (s, len) into out. CIDR_OK,
 * CIDR_ERR_SYNTAX or CIDR_ERR_HOSTBITS.
 */
int cidr_parse(const char *s, size_t len, struct cidr *out);

/*
 * cidr_list_parse - a comma-separated list (s, len) of networks, spaces
 * and tabs around each allowed, into out (out->n 0 for an empty or blank
 * list). On error out->n is 0 and err names the bad entry. CIDR_OK,
 * CIDR_ERR_SYNTAX (also for an empty entry between commas),
 * CIDR_ERR_HOSTBITS, CIDR_ERR_TOOMANY.
 */
int cidr_list_parse(const char *s, size_t len, struct cidr_list *out, char *err, size_t errlen);

/* cidr_contains - 1 when addr is inside c, else 0. */
int cidr_contains(const struct cidr *c, const unsigned char addr[CIDR_ADDR_LEN]);

/* cidr_list_match - 1 when addr is inside any network of l (0 for an empty list). */
int cidr_list_match(const struct cidr_list *l, const unsigned char addr[CIDR_ADDR_LEN]);

/* cidr_format - c as text ("10.0.0.0/8", "2001:db8::/32", a bare address keeps its prefix). */
void cidr_format(const struct cidr *c, char *out, size_t outlen);

/* cidr_list_format - l as a comma list without spaces ("" when empty); cut at outlen. */
void cidr_list_format(const struct cidr_list *l, char *out, size_t outlen);

/* cidr_addr_format - addr as text (IPv4 for a mapped address), into out (>= 46 bytes). */
void cidr_addr_format(const unsigned char addr[CIDR_ADDR_LEN], char *out, size_t outlen);

/* cidr_from_sockaddr - an AF_INET or AF_INET6 address into out; CIDR_OK or CIDR_ERR_SYNTAX. */
int cidr_from_sockaddr(const struct sockaddr *sa, unsigned char out[CIDR_ADDR_LEN]);

/*
 * cidr_client - the address a request comes from. peer is the TCP peer;
 * when it is not inside trusted (or trusted is empty), it is the answer.
 * Else values[0..nvalues-1] are the X-Forwarded-For header lines in the
 * order received (as one comma list, first line first) and the answer is
 * the right-most entry that is not inside trusted, walking from the right;
 * when every entry is trusted, the left-most; when there is no entry at
 * all (no header, or only empty list elements), the peer (the proxy's own
 * request). Entries are bare IP addresses with optional spaces or tabs
 * around; empty list elements are skipped.
 * CIDR_OK with out set, or CIDR_ERR_SYNTAX when an entry reached in the
 * walk is not an IP address (or nvalues > CIDR_XFF_MAX_VALUES): the
 * client is then unknown, and the caller must not guess (http.c refuses
 * every key with an allowlist, and no other decision uses the address).
 */
int cidr_client(const unsigned char peer[CIDR_ADDR_LEN], const struct cidr_list *trusted,
    const char *const *values, size_t nvalues, unsigned char out[CIDR_ADDR_LEN]);

#endif
