/*
 * relaydns.c - the relay host's addresses, resolved and refreshed on one
 * detached lookup thread (see relaydns.h).
 *
 * Owns: the last good address list, the round-robin cursor, the lookup
 * thread and its schedule. Must never: resolve on the caller's thread
 * (relaydns_pick and relaydns_next only copy under the mutex), call the
 * resolver or log with the mutex held, drop a good list because a refresh
 * failed, or speak SMTP.
 */
#include "relaydns.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "log.h"
#include "util.h"

struct relaydns {
	char host[RELAYDNS_HOST_MAX];
	uint16_t port;
	int refresh_ms, retry_ms;
	int (*resolve)(const char *host, uint16_t port, char (*addrs)[RELAYDNS_ADDR_MAX],
	    size_t max, size_t *n, char *why, size_t whylen, void *arg);
	void *resolve_arg;

	pthread_mutex_t mu;
	pthread_cond_t wake;       /* CLOCK_MONOTONIC; relaydns_free stops the thread's wait */
	pthread_cond_t first;      /* CLOCK_MONOTONIC; the first lookup has ended */
	int refs;                  /* the owner, and the lookup thread while it runs */
	int stopping;              /* relaydns_free has run */
	int looked_up;             /* some lookup has ended */
	int failing;               /* the last lookup failed (err says why) */
	char err[256];
	size_t naddr;              /* the last good list; 0 until a lookup succeeds */
	char addrs[RELAYDNS_MAX_ADDRS][RELAYDNS_ADDR_MAX];
	size_t rr;                 /* relaydns_pick's next index */
};

/* --- the default lookup: getaddrinfo ---------------------------------------- */

static int
listed(char (*addrs)[RELAYDNS_ADDR_MAX], size_t n, const char *ip)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(addrs[i], ip) == 0)
			return 1;
	return 0;
}

static int
gai_resolve(const char *host, uint16_t port, char (*addrs)[RELAYDNS_ADDR_MAX], size_t max,
    size_t *n, char *why, size_t whylen, void *arg)
{
	struct addrinfo hints, *res = NULL;
	char serv[8];
	int rc;

	(void)arg;
	*n = 0;
	snprintf(serv, sizeof(serv), "%u", (unsigned)port);
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = port != 0 ? AI_NUMERICSERV : 0;
	rc = getaddrinfo(host, port != 0 ? serv : NULL, &hints, &res);
	if (rc != 0) {
		snprintf(why, whylen, "%s", rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
		return -1;
	}
	for (const struct addrinfo *ai = res; ai != NULL && *n < max; ai = ai->ai_next) {
		char ip[RELAYDNS_ADDR_MAX];

		if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
			continue;
		if (getnameinfo(ai->ai_addr, ai->ai_addrlen, ip, sizeof(ip), NULL, 0, NI_NUMERICHOST) != 0)
			continue;
		if (!listed(addrs, *n, ip))
			util_strlcpy(addrs[(*n)++], ip, RELAYDNS_ADDR_MAX);
	}
	freeaddrinfo(res);
	if (*n == 0) {
		snprintf(why, whylen, "no IPv4 or IPv6 address");
		return -1;
	}
	return 0;
}

/* --- state --------------------------------------------------------------------- */

static void
destroy(struct relaydns *r)
{
	pthread_cond_destroy(&r->first);
	pthread_cond_destroy(&r->wake);
	pthread_mutex_destroy(&r->mu);
	free(r);
}

/* Drop one reference (caller holds mu, which this releases); the last frees r. */
static void
unref_unlock(struct relaydns *r)
{
	int last = --r->refs == 0;

	pthread_mutex_unlock(&r->mu);
	if (last)
		destroy(r);
}

static void
deadline_in(struct timespec *ts, int ms)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

/* "a, b, c" into out (truncated if need be). */
static void
join_addrs(char (*addrs)[RELAYDNS_ADDR_MAX], size_t n, char *out, size_t outlen)
{
	size_t used = 0;

	out[0] = '\0';
	for (size_t i = 0; i < n && used + 1 < outlen; i++) {
		int k = snprintf(out + used, outlen - used, "%s%s", i > 0 ? "," : "", addrs[i]);

		if (k < 0)
			break;
		used += (size_t)k;
	}
}

/* What a lookup has to say, logged by lookup_main once mu is released. */
struct relaydns_note {
	enum { NOTE_NONE, NOTE_RESOLVED, NOTE_FAILED_KEEPING, NOTE_FAILED } kind;
	char list[RELAYDNS_MAX_ADDRS * (RELAYDNS_ADDR_MAX + 2)];   /* NOTE_RESOLVED */
	char why[256];                                             /* NOTE_FAILED* */
	size_t naddr;                                              /* NOTE_FAILED_KEEPING */
};

/*
 * Take one lookup's result (caller holds mu) and say in *note what to log,
 * if anything: only changes are logged (new addresses, the first failure
 * of a run or a new reason, the end of a run).
 */
static void
apply(struct relaydns *r, int rc, char (*addrs)[RELAYDNS_ADDR_MAX], size_t n,
    const char *why, struct relaydns_note *note)
{
	note->kind = NOTE_NONE;
	if (!r->looked_up) {
		r->looked_up = 1;
		pthread_cond_broadcast(&r->first);
	}
	if (rc == 0) {
		int changed = n != r->naddr, was_failing = r->failing;

		for (size_t i = 0; i < n && !changed; i++)
			changed = strcmp(addrs[i], r->addrs[i]) != 0;
		memcpy(r->addrs, addrs, n * sizeof(addrs[0]));
		r->naddr = n;
		r->failing = 0;
		r->err[0] = '\0';
		if (changed || was_failing) {
			join_addrs(r->addrs, r->naddr, note->list, sizeof(note->list));
			note->kind = NOTE_RESOLVED;
		}
		return;
	}
	if (!r->failing || strcmp(r->err, why) != 0) {
		note->kind = r->naddr > 0 ? NOTE_FAILED_KEEPING : NOTE_FAILED;
		note->naddr = r->naddr;
		util_strlcpy(note->why, why, sizeof(note->why));
	}
	r->failing = 1;
	util_strlcpy(r->err, why, sizeof(r->err));
}

/* note_log - the line for a note (mu not held: logging may block) */
static void
note_log(const struct relaydns *r, const struct relaydns_note *note)
{
	char every[48];

	switch (note->kind) {
	case NOTE_RESOLVED:
		log_info("relay host resolved", "host=%s addrs=%s", r->host, note->list);
		break;
	case NOTE_FAILED_KEEPING:
		log_warn("relay host lookup failed, using the addresses resolved before",
		    "host=%s error=%s addrs=%zu", r->host, note->why, note->naddr);
		break;
	case NOTE_FAILED:
		util_fmt_duration(r->retry_ms / 1000.0, every, sizeof(every));
		log_warn("relay host lookup failed, deliveries through it deferred until it resolves",
		    "host=%s error=%s retry_every=%s", r->host, note->why, every);
		break;
	case NOTE_NONE:
	default:
		break;
	}
}

static void *
lookup_main(void *arg)
{
	struct relaydns *r = arg;
	char addrs[RELAYDNS_MAX_ADDRS][RELAYDNS_ADDR_MAX];
	char why[256];
	struct relaydns_note note;

	pthread_mutex_lock(&r->mu);
	while (!r->stopping) {
		struct timespec dl;
		size_t n = 0;
		int rc;

		pthread_mutex_unlock(&r->mu);
		why[0] = '\0';
		rc = r->resolve(r->host, r->port, addrs, RELAYDNS_MAX_ADDRS, &n, why, sizeof(why),
		    r->resolve_arg);
		why[sizeof(why) - 1] = '\0';
		if (rc == 0 && (n == 0 || n > RELAYDNS_MAX_ADDRS)) {
			rc = -1;
			snprintf(why, sizeof(why), "no address");
		}
		for (size_t i = 0; rc == 0 && i < n; i++)
			addrs[i][RELAYDNS_ADDR_MAX - 1] = '\0';
		if (rc != 0 && why[0] == '\0')
			snprintf(why, sizeof(why), "lookup failed");
		pthread_mutex_lock(&r->mu);
		if (r->stopping)
			break;   /* freed while we looked: the answer is of no use */
		apply(r, rc, addrs, n, why, &note);
		deadline_in(&dl, r->failing ? r->retry_ms : r->refresh_ms);
		if (note.kind != NOTE_NONE) {
			pthread_mutex_unlock(&r->mu);
			note_log(r, &note);
			pthread_mutex_lock(&r->mu);
		}
		while (!r->stopping)
			if (pthread_cond_timedwait(&r->wake, &r->mu, &dl) == ETIMEDOUT)
				break;
	}
	unref_unlock(r);
	return NULL;
}

/* --- API ------------------------------------------------------------------------ */

static int
is_ip_literal(const char *host)
{
	unsigned char buf[sizeof(struct in6_addr)];

	return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

static int
cond_init_mono(pthread_cond_t *c)
{
	pthread_condattr_t ca;
	int rc;

	if (pthread_condattr_init(&ca) != 0)
		return -1;
	rc = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) == 0 && pthread_cond_init(c, &ca) == 0 ? 0 : -1;
	pthread_condattr_destroy(&ca);
	return rc;
}

struct relaydns *
relaydns_new(const char *host, uint16_t port, const struct relaydns_config *cfg,
    char *err, size_t errlen)
{
	struct relaydns *r;
	pthread_attr_t ta;
	pthread_t t;
	int started;

	if (host == NULL || host[0] == '\0' || strlen(host) >= RELAYDNS_HOST_MAX) {
		snprintf(err, errlen, "relay host name is empty or too long");
		return NULL;
	}
	if ((r = calloc(1, sizeof(*r))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	util_strlcpy(r->host, host, sizeof(r->host));
	r->port = port;
	r->refresh_ms = cfg != NULL && cfg->refresh_ms > 0 ? cfg->refresh_ms : RELAYDNS_REFRESH_MS;
	r->retry_ms = cfg != NULL && cfg->retry_ms > 0 ? cfg->retry_ms : RELAYDNS_RETRY_MS;
	r->resolve = cfg != NULL && cfg->resolve != NULL ? cfg->resolve : gai_resolve;
	r->resolve_arg = cfg != NULL ? cfg->resolve_arg : NULL;
	if (pthread_mutex_init(&r->mu, NULL) != 0) {
		free(r);
		snprintf(err, errlen, "cannot create a mutex");
		return NULL;
	}
	if (cond_init_mono(&r->wake) != 0) {
		pthread_mutex_destroy(&r->mu);
		free(r);
		snprintf(err, errlen, "cannot create a condition variable");
		return NULL;
	}
	if (cond_init_mono(&r->first) != 0) {
		pthread_cond_destroy(&r->wake);
		pthread_mutex_destroy(&r->mu);
		free(r);
		snprintf(err, errlen, "cannot create a condition variable");
		return NULL;
	}
	if (is_ip_literal(host)) {
		/* its own address: nothing to look up, ever */
		util_strlcpy(r->addrs[0], host, sizeof(r->addrs[0]));
		r->naddr = 1;
		r->looked_up = 1;
		r->refs = 1;
		return r;
	}
	r->refs = 2;
	if (pthread_attr_init(&ta) != 0) {
		destroy(r);
		snprintf(err, errlen, "cannot start the relay lookup thread");
		return NULL;
	}
	pthread_attr_setdetachstate(&ta, PTHREAD_CREATE_DETACHED);
	started = pthread_create(&t, &ta, lookup_main, r) == 0;
	pthread_attr_destroy(&ta);
	if (!started) {
		destroy(r);
		snprintf(err, errlen, "cannot start the relay lookup thread");
		return NULL;
	}
	return r;
}

int
relaydns_pick(struct relaydns *r, char *out_ip, size_t len, char *why, size_t whylen)
{
	int rc = -1;

	pthread_mutex_lock(&r->mu);
	if (r->naddr == 0) {
		snprintf(why, whylen, "%s", r->looked_up ? r->err : "first lookup still running");
	} else {
		size_t i = r->rr % r->naddr;

		r->rr = (i + 1) % r->naddr;
		if (util_strlcpy(out_ip, r->addrs[i], len) < len)
			rc = 0;
		else
			snprintf(why, whylen, "address buffer too small");
	}
	pthread_mutex_unlock(&r->mu);
	return rc;
}

int
relaydns_next(struct relaydns *r, const char *after, char *out_ip, size_t len)
{
	int rc = -1;

	pthread_mutex_lock(&r->mu);
	for (size_t i = 0; i < r->naddr; i++) {
		if (strcmp(r->addrs[i], after) != 0)
			continue;
		if (r->naddr > 1 && util_strlcpy(out_ip, r->addrs[(i + 1) % r->naddr], len) < len)
			rc = 0;
		goto out;
	}
	/* refreshed since: any address of the new list is another one */
	if (r->naddr > 0 && util_strlcpy(out_ip, r->addrs[0], len) < len)
		rc = 0;
out:
	pthread_mutex_unlock(&r->mu);
	return rc;
}

int
relaydns_wait_first(struct relaydns *r, int timeout_ms)
{
	struct timespec dl;
	int done;

	deadline_in(&dl, timeout_ms > 0 ? timeout_ms : 0);
	pthread_mutex_lock(&r->mu);
	while (!r->looked_up)
		if (pthread_cond_timedwait(&r->first, &r->mu, &dl) == ETIMEDOUT)
			break;
	done = r->looked_up;
	pthread_mutex_unlock(&r->mu);
	return done ? 0 : -1;
}

void
relaydns_free(struct relaydns *r)
{
	if (r == NULL)
		return;
	pthread_mutex_lock(&r->mu);
	r->stopping = 1;
	pthread_cond_broadcast(&r->wake);
	unref_unlock(r);
}
