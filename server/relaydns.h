/*
 * relaydns.h - the addresses of the relay host (TXMAIL_RELAY), resolved off
 * the SMTP engine thread and kept fresh, so that a slow or dead DNS never
 * stalls the engine's epoll loop.
 *
 * One lookup thread per struct relaydns resolves the host with getaddrinfo
 * (AF_UNSPEC, SOCK_STREAM: /etc/hosts and container DNS - compose service
 * names - work) at once, then every RELAYDNS_REFRESH_MS; while it has never
 * succeeded, or after a failed lookup, every RELAYDNS_RETRY_MS. A failed
 * refresh keeps the last good list: once the relay has been resolved, a DNS
 * outage does not stop delivery to it (served stale until DNS answers
 * again). A numeric host (IPv4 or IPv6 literal) is its own address: no
 * thread, no lookup.
 *
 * The worker (server/worker.c) picks an address per job, round-robin, and
 * gives it to the engine as smtp_target.connect_addr; the target's host
 * stays the relay name, which TLS uses for SNI and the certificate check
 * (smtp/tls.c). The engine pools connections per target including
 * connect_addr, so a relay name with several addresses gets one pool per
 * address, and TXMAIL_MAX_CONNS_PER_HOST applies per address.
 *
 * Lifetime: relaydns_free never waits for a lookup. getaddrinfo cannot be
 * interrupted (with a dead resolver it takes timeout x attempts, 10 s and
 * more), so the thread is detached and shares a reference-counted state
 * with the owner; a lookup in flight at relaydns_free finishes in the
 * background, its answer is discarded, and the last of the two frees the
 * state. This file is the only place that resolves the relay host; it
 * never speaks SMTP.
 */
#ifndef SERVER_RELAYDNS_H
#define SERVER_RELAYDNS_H

#include <stddef.h>
#include <stdint.h>

#define RELAYDNS_REFRESH_MS 30000   /* re-resolve a good answer this often */
#define RELAYDNS_RETRY_MS 1000      /* ... and a failed or first lookup this often */
#define RELAYDNS_MAX_ADDRS 16       /* addresses kept per lookup */
#define RELAYDNS_ADDR_MAX 64        /* a numeric address with an IPv6 scope; = smtp_target.connect_addr */
#define RELAYDNS_HOST_MAX 256

struct relaydns_config {
	int refresh_ms;            /* 0: RELAYDNS_REFRESH_MS */
	int retry_ms;              /* 0: RELAYDNS_RETRY_MS */
	/*
	 * resolve - the lookup; NULL: getaddrinfo (the only choice outside
	 * tests). Called on the lookup thread, never with a lock held; may
	 * block. Fills addrs[0..*n) (at most max) with numeric addresses and
	 * returns 0, or returns -1 with a reason in why.
	 */
	int (*resolve)(const char *host, uint16_t port, char (*addrs)[RELAYDNS_ADDR_MAX],
	    size_t max, size_t *n, char *why, size_t whylen, void *arg);
	void *resolve_arg;
};

struct relaydns;

/*
 * relaydns_new - start resolving host (copied; brackets removed already,
 * at most RELAYDNS_HOST_MAX - 1 bytes) for connections to port. cfg may
 * be NULL (the defaults). NULL with err when host is empty or too long, or
 * on out of memory or no thread.
 */
struct relaydns *relaydns_new(const char *host, uint16_t port,
    const struct relaydns_config *cfg, char *err, size_t errlen);

/*
 * relaydns_pick - the next address, round-robin over the last good list,
 * into out_ip (a NUL-terminated numeric address; len >= RELAYDNS_ADDR_MAX).
 * Never blocks on DNS (one mutex, held briefly); any thread. 0, or -1 when
 * no lookup has ever succeeded, with why: the last lookup's error, or
 * "first lookup still running".
 */
int relaydns_pick(struct relaydns *r, char *out_ip, size_t len, char *why, size_t whylen);

/*
 * relaydns_next - another address to try after a connection to `after`
 * failed: the one following it in the list (any, when `after` is no longer
 * listed). 0, or -1 when the list has no address other than `after`.
 * Non-blocking, any thread.
 */
int relaydns_next(struct relaydns *r, const char *after, char *out_ip, size_t len);

/*
 * relaydns_wait_first - wait up to timeout_ms for the first lookup to end
 * (success or failure). 0 when it has ended, -1 on timeout. For a caller
 * that would rather not defer work just because it started first.
 */
int relaydns_wait_first(struct relaydns *r, int timeout_ms);

/* relaydns_free - stop refreshing and let go of r; returns at once (see above). NULL is fine. */
void relaydns_free(struct relaydns *r);

#endif
