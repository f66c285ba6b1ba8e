/*
 * netguard.c - the webhook target address guard (see netguard.h).
 *
 * Owns address classification and the bounded name lookup used when a
 * webhook URL is registered. Must never open a connection, and never block
 * longer than the caller's bound: the lookup runs in a detached thread that
 * shares a reference-counted job with the caller, so an abandoned slow lookup
 * finishes and frees itself later.
 */
#include "netguard.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#define NETGUARD_HOST_MAX 256

static const char *ng_v4_class(uint32_t a)
{
	if ((a >> 24) == 0)
		return "unspecified";            /* 0.0.0.0/8 */
	if ((a >> 24) == 127)
		return "loopback";               /* 127/8 */
	if ((a >> 24) == 10 || (a >> 20) == 0xac1 || (a >> 16) == 0xc0a8)
		return "private";                /* 10/8, 172.16/12, 192.168/16 */
	if ((a >> 16) == 0xa9fe)
		return "link-local";             /* 169.254/16 */
	if ((a >> 22) == (100u << 2 | 1u))
		return "cgnat";                  /* 100.64/10 */
	if ((a >> 28) == 0xe)
		return "multicast";              /* 224/4 */
	if ((a >> 28) == 0xf)
		return "reserved";               /* 240/4, 255.255.255.255 */
	if ((a >> 8) == 0xc00000)
		return "reserved";               /* 192.0.0/24 IETF protocol assignments */
	return NULL;
}

static uint32_t ng_be32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static const char *ng_v6_class(const unsigned char *b)
{
	static const unsigned char zero[16];
	static const unsigned char mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
	static const unsigned char nat64[12] = { 0, 0x64, 0xff, 0x9b };

	if (memcmp(b, zero, 16) == 0)
		return "unspecified";            /* :: */
	if (memcmp(b, zero, 15) == 0 && b[15] == 1)
		return "loopback";               /* ::1 */
	if (memcmp(b, mapped, 12) == 0 || memcmp(b, nat64, 12) == 0 || memcmp(b, zero, 12) == 0)
		return ng_v4_class(ng_be32(b + 12));   /* carries an IPv4 address */
	if ((b[0] & 0xfe) == 0xfc)
		return "private";                /* fc00::/7 unique local */
	if (b[0] == 0xfe && (b[1] & 0xc0) == 0x80)
		return "link-local";             /* fe80::/10 */
	if (b[0] == 0xfe && (b[1] & 0xc0) == 0xc0)
		return "private";                /* fec0::/10 site-local (deprecated) */
	if (b[0] == 0xff)
		return "multicast";              /* ff00::/8 */
	return NULL;
}

const char *netguard_addr_class(const struct sockaddr *sa)
{
	if (sa == NULL)
		return "not an IP address";
	if (sa->sa_family == AF_INET) {
		struct sockaddr_in in;

		memcpy(&in, sa, sizeof(in));
		return ng_v4_class(ntohl(in.sin_addr.s_addr));
	}
	if (sa->sa_family == AF_INET6) {
		struct sockaddr_in6 in6;

		memcpy(&in6, sa, sizeof(in6));
		return ng_v6_class(in6.sin6_addr.s6_addr);
	}
	return "not an IP address";
}

int netguard_addr_allowed(const struct sockaddr *sa, int allow_private)
{
	if (sa == NULL || (sa->sa_family != AF_INET && sa->sa_family != AF_INET6))
		return 0;
	return allow_private || netguard_addr_class(sa) == NULL;
}

/* --- bounded lookup -------------------------------------------------------- */

struct ng_job {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int refs;               /* caller + thread; the last one frees */
	int done;
	int rc;                 /* getaddrinfo's */
	struct addrinfo *res;
	char host[NETGUARD_HOST_MAX];
};

static void ng_job_unref(struct ng_job *j)
{
	int last;

	pthread_mutex_lock(&j->mu);
	last = --j->refs == 0;
	pthread_mutex_unlock(&j->mu);
	if (!last)
		return;
	if (j->res)
		freeaddrinfo(j->res);
	pthread_cond_destroy(&j->cv);
	pthread_mutex_destroy(&j->mu);
	free(j);
}

static void *ng_resolve_thread(void *arg)
{
	struct ng_job *j = arg;
	struct addrinfo hints, *res = NULL;
	int rc;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	rc = getaddrinfo(j->host, NULL, &hints, &res);
	pthread_mutex_lock(&j->mu);
	j->rc = rc;
	j->res = rc == 0 ? res : NULL;
	j->done = 1;
	pthread_cond_signal(&j->cv);
	pthread_mutex_unlock(&j->mu);
	ng_job_unref(j);
	return NULL;
}

/*
 * ng_resolve_refused - 1 when host resolves within timeout_ms and every
 * address is refused (class of the first in *cls), 0 otherwise.
 */
static int ng_resolve_refused(const char *host, int timeout_ms, const char **cls)
{
	struct ng_job *j = calloc(1, sizeof(*j));
	pthread_condattr_t ca;
	pthread_attr_t ta;
	pthread_t t;
	struct timespec dl;
	const struct addrinfo *ai;
	int refused = 0, n = 0, started;

	if (j == NULL)
		return 0;
	if ((size_t)snprintf(j->host, sizeof(j->host), "%s", host) >= sizeof(j->host)) {
		free(j);
		return 0;
	}
	pthread_mutex_init(&j->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&j->cv, &ca);
	pthread_condattr_destroy(&ca);
	j->refs = 2;
	pthread_attr_init(&ta);
	pthread_attr_setdetachstate(&ta, PTHREAD_CREATE_DETACHED);
	started = pthread_create(&t, &ta, ng_resolve_thread, j) == 0;
	pthread_attr_destroy(&ta);
	if (!started) {
		j->refs = 1;
		goto out;
	}
	clock_gettime(CLOCK_MONOTONIC, &dl);
	dl.tv_sec += timeout_ms / 1000;
	dl.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (dl.tv_nsec >= 1000000000L) {
		dl.tv_sec++;
		dl.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&j->mu);
	while (!j->done)
		if (pthread_cond_timedwait(&j->cv, &j->mu, &dl) == ETIMEDOUT)
			break;
	if (j->done && j->rc == 0) {
		refused = 1;
		for (ai = j->res; ai != NULL; ai = ai->ai_next) {
			const char *c = netguard_addr_class(ai->ai_addr);

			n++;
			if (c == NULL) {
				refused = 0;
				break;
			}
			if (n == 1)
				*cls = c;
		}
		if (n == 0)
			refused = 0;
	}
	pthread_mutex_unlock(&j->mu);
out:
	ng_job_unref(j);
	return refused;
}

int netguard_url_check(const char *url, int allow_private, int timeout_ms,
    char *why, size_t whylen)
{
	CURLU *u = NULL;
	char *chost = NULL;
	char host[NETGUARD_HOST_MAX];
	const char *cls = NULL;
	size_t n;
	union {
		struct sockaddr sa;
		struct sockaddr_in in;
		struct sockaddr_in6 in6;
	} a;
	int rc = 0;

	if (allow_private)
		return 0;
	if (url == NULL || (u = curl_url()) == NULL ||
	    curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_HOST, &chost, 0) != CURLUE_OK || chost == NULL) {
		snprintf(why, whylen, "url is not a valid http(s) URL");
		rc = -1;
		goto out;
	}
	n = strlen(chost);
	if (n >= 2 && chost[0] == '[' && chost[n - 1] == ']') {
		chost[n - 1] = '\0';
		snprintf(host, sizeof(host), "%s", chost + 1);
	} else if ((size_t)snprintf(host, sizeof(host), "%s", chost) >= sizeof(host)) {
		snprintf(why, whylen, "url host is too long");
		rc = -1;
		goto out;
	}
	{
		/* "%25" zone ids on IPv6 literals: judge the address */
		char *pct = strchr(host, '%');

		if (pct != NULL)
			*pct = '\0';
	}
	memset(&a, 0, sizeof(a));
	if (inet_pton(AF_INET, host, &a.in.sin_addr) == 1) {
		a.in.sin_family = AF_INET;
		cls = netguard_addr_class(&a.sa);
	} else if (inet_pton(AF_INET6, host, &a.in6.sin6_addr) == 1) {
		a.in6.sin6_family = AF_INET6;
		cls = netguard_addr_class(&a.sa);
	} else {
		if (!ng_resolve_refused(host, timeout_ms > 0 ? timeout_ms : NETGUARD_RESOLVE_MS, &cls))
			cls = NULL;
		if (cls != NULL) {
			snprintf(why, whylen, "url host %s resolves only to %s addresses; webhook "
			    "targets must be public (TXMAIL_WEBHOOK_ALLOW_PRIVATE=1 allows it)", host, cls);
			rc = -1;
			goto out;
		}
	}
	if (cls != NULL) {
		snprintf(why, whylen, "url host %s is a %s address; webhook targets must be "
		    "public (TXMAIL_WEBHOOK_ALLOW_PRIVATE=1 allows it)", host, cls);
		rc = -1;
	}
out:
	curl_free(chost);
	curl_url_cleanup(u);
	return rc;
}
