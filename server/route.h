/*
 * route.h - where a recipient's domain is delivered: resolver threads and a
 * TTL cache in front of smtp/mx.c, so the SMTP engine thread never waits on
 * DNS.
 *
 * A caller (the worker's feeder) asks with route_request; the answer comes
 * back once through on_result on a resolver thread (or on the caller's
 * thread from route_free, status ROUTE_SHUTDOWN). Answers are cached per
 * domain for their TTL (capped at a day; NXDOMAIN, null MX and "no host"
 * for 60 s, temporary failures for 5 s), at most ROUTE_CACHE_MAX domains.
 * Host order: preference order, equal preferences shuffled on every answer;
 * each host's IPv4 addresses before IPv6. This file never speaks SMTP.
 */
#ifndef SERVER_ROUTE_H
#define SERVER_ROUTE_H

#include <stddef.h>
#include <stdint.h>

#include "../smtp/mx.h"

#define ROUTE_CACHE_MAX 10000
#define ROUTE_MAX_ADDRS 16    /* addresses tried per delivery, over all hosts */

enum route_status {
	ROUTE_OK = 0,         /* addrs[] has naddr >= 1 addresses to try in order */
	ROUTE_PERMFAIL = 1,   /* NXDOMAIN, null MX, no host: fail the recipient now */
	ROUTE_TEMPFAIL = 2,   /* SERVFAIL, timeout: defer */
	ROUTE_SHUTDOWN = 3,   /* route_free ran before the answer: not attempted */
};

struct route_addr {
	uint16_t pref;
	int v6;
	char ip[MX_ADDR_MAX];      /* IP literal to connect to */
	char name[MX_NAME_MAX];    /* the MX host name it belongs to */
};

struct route_result {
	enum route_status status;
	char text[256];            /* why, when not ROUTE_OK */
	char enhanced[16];         /* ROUTE_PERMFAIL: "5.1.2" (no such domain/host) or "5.1.10" (null MX) */
	size_t naddr;
	struct route_addr addrs[ROUTE_MAX_ADDRS];
};

struct route_config {
	const char *dns_server;    /* "ip:port", or NULL/"" for the system resolver */
	int timeout_s;             /* per DNS try; 5 when 0 */
	int threads;               /* resolver threads; 2 when 0 */
	/* Called exactly once per accepted route_request; r is valid during the call only. */
	void (*on_result)(const struct route_result *r, void *udata, void *arg);
	void *arg;
};

struct route;

/* route_new - start the resolver threads. NULL with err on failure. */
struct route *route_new(const struct route_config *cfg, char *err, size_t errlen);

/*
 * route_request - ask where mail for domain goes (any thread; the domain is
 * copied). Returns 0, or -1 when the domain is too long or route_free has
 * begun (on_result is then not called).
 */
int route_request(struct route *r, const char *domain, void *udata);

/* route_free - stop the threads; requests not answered get ROUTE_SHUTDOWN. */
void route_free(struct route *r);

/*
 * route_order - pure: turn an MX answer into the addresses to try, in order
 * (preference order, IPv4 before IPv6 at one preference, each run of equal
 * (preference, family) shuffled with rnd, which is called with n >= 2 and
 * returns 0..n-1; NULL: no shuffle). Also maps the mx status and text.
 */
void route_order(const struct mx_answer *a, unsigned (*rnd)(unsigned n),
    struct route_result *out);

#endif
