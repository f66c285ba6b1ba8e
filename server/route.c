/*
 * route.c - resolver threads and the per-domain TTL cache (see route.h).
 *
 * Owns: the request queue, the resolver threads (the only threads in
 * txmail that block on DNS, through mx_resolve) and the cache (a bounded
 * hash of domain -> ordered addresses). Must never: call back with a lock
 * held, block the caller of route_request, or speak SMTP.
 */
#include "route.h"

#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

#define NBUCKETS 4096
#define TTL_MAX_S 86400
#define TTL_NEG_S 60
#define TTL_TEMP_S 5
#define MAX_THREADS 16

struct req {
	char domain[MX_NAME_MAX];
	void *udata;
	struct req *next;
};

struct centry {
	struct centry *next;
	char *domain;
	int64_t expires_ms;
	enum route_status status;
	char text[256];
	char enhanced[16];
	size_t naddr;
	struct route_addr addrs[];
};

struct route {
	struct route_config cfg;
	char dns_server[64];
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct req *head, *tail;
	int stopping;
	pthread_t thr[MAX_THREADS];
	int nthr;
	struct centry *buckets[NBUCKETS];
	size_t ncache;
};

static unsigned
rnd_pick(unsigned n)
{
	uint32_t x = 0;

	if (util_random_bytes(&x, sizeof(x)) != 0)
		x = (uint32_t)rand();
	return n > 0 ? x % n : 0;
}

static void
shuffle_runs(struct route_result *out, unsigned (*rnd)(unsigned n))
{
	size_t i = 0;

	if (rnd == NULL)
		return;
	while (i < out->naddr) {
		size_t j = i + 1;
		while (j < out->naddr && out->addrs[j].pref == out->addrs[i].pref &&
		    out->addrs[j].v6 == out->addrs[i].v6)
			j++;
		for (size_t k = j - 1; k > i; k--) {   /* Fisher-Yates over [i, j) */
			size_t m = i + rnd((unsigned)(k - i + 1));
			struct route_addr t = out->addrs[k];
			out->addrs[k] = out->addrs[m];
			out->addrs[m] = t;
		}
		i = j;
	}
}

void
route_order(const struct mx_answer *a, unsigned (*rnd)(unsigned n), struct route_result *out)
{
	memset(out, 0, sizeof(*out));
	switch (a->status) {
	case MX_OK:
		out->status = ROUTE_OK;
		break;
	case MX_NULL:
		out->status = ROUTE_PERMFAIL;
		util_strlcpy(out->enhanced, "5.1.10", sizeof(out->enhanced));   /* RFC 7505 4.2 */
		break;
	case MX_NXDOMAIN:
	case MX_NOHOST:
		out->status = ROUTE_PERMFAIL;
		util_strlcpy(out->enhanced, "5.1.2", sizeof(out->enhanced));
		break;
	case MX_TEMPFAIL:
	default:
		out->status = ROUTE_TEMPFAIL;
		break;
	}
	util_strlcpy(out->text, a->text, sizeof(out->text));
	if (out->status != ROUTE_OK)
		return;
	for (size_t h = 0; h < a->nhosts && h < MX_MAX_RECORDS; h++) {
		const struct mx_host *host = &a->hosts[h];
		for (size_t i = 0; i < host->naddr && i < MX_MAX_ADDRS; i++) {
			struct route_addr ra;
			size_t k;

			if (out->naddr == ROUTE_MAX_ADDRS)
				break;
			memset(&ra, 0, sizeof(ra));
			ra.pref = host->pref;
			ra.v6 = strchr(host->addrs[i], ':') != NULL;
			util_strlcpy(ra.ip, host->addrs[i], sizeof(ra.ip));
			util_strlcpy(ra.name, host->name, sizeof(ra.name));
			/* insertion keeps (pref, v6) order stable */
			k = out->naddr;
			while (k > 0 && (out->addrs[k - 1].pref > ra.pref ||
			    (out->addrs[k - 1].pref == ra.pref && out->addrs[k - 1].v6 > ra.v6))) {
				out->addrs[k] = out->addrs[k - 1];
				k--;
			}
			out->addrs[k] = ra;
			out->naddr++;
		}
	}
	if (out->naddr == 0) {
		out->status = ROUTE_TEMPFAIL;
		util_strlcpy(out->text, "no address to deliver to", sizeof(out->text));
		return;
	}
	shuffle_runs(out, rnd);
}

/* --- cache (caller holds mu) ---------------------------------------------- */

static size_t
bucket_of(const char *d)
{
	uint32_t h = 2166136261u;   /* FNV-1a */

	for (; *d != '\0'; d++) {
		h ^= (unsigned char)*d;
		h *= 16777619u;
	}
	return h % NBUCKETS;
}

static void
cache_evict(struct route *r, int64_t now, int all)
{
	for (size_t b = 0; b < NBUCKETS; b++) {
		struct centry **pp = &r->buckets[b];
		while (*pp != NULL) {
			struct centry *e = *pp;
			if (all || e->expires_ms <= now) {
				*pp = e->next;
				free(e->domain);
				free(e);
				r->ncache--;
			} else {
				pp = &e->next;
			}
		}
	}
}

static int
cache_get(struct route *r, const char *domain, int64_t now, struct route_result *out)
{
	struct centry **pp = &r->buckets[bucket_of(domain)];

	for (; *pp != NULL; pp = &(*pp)->next) {
		struct centry *e = *pp;
		if (strcmp(e->domain, domain) != 0)
			continue;
		if (e->expires_ms <= now) {
			*pp = e->next;
			free(e->domain);
			free(e);
			r->ncache--;
			return -1;
		}
		memset(out, 0, sizeof(*out));
		out->status = e->status;
		util_strlcpy(out->text, e->text, sizeof(out->text));
		util_strlcpy(out->enhanced, e->enhanced, sizeof(out->enhanced));
		out->naddr = e->naddr;
		memcpy(out->addrs, e->addrs, e->naddr * sizeof(e->addrs[0]));
		return 0;
	}
	return -1;
}

static void
cache_put(struct route *r, const char *domain, int64_t now, uint32_t ttl_s,
    const struct route_result *res)
{
	size_t b = bucket_of(domain);
	struct centry *e;

	if (res->status == ROUTE_SHUTDOWN)
		return;
	if (res->status == ROUTE_PERMFAIL)
		ttl_s = TTL_NEG_S;
	else if (res->status == ROUTE_TEMPFAIL)
		ttl_s = TTL_TEMP_S;
	else if (ttl_s > TTL_MAX_S)
		ttl_s = TTL_MAX_S;
	if (ttl_s == 0)
		return;
	for (struct centry **pp = &r->buckets[b]; *pp != NULL; pp = &(*pp)->next) {
		if (strcmp((*pp)->domain, domain) == 0) {   /* a concurrent lookup won */
			struct centry *old = *pp;
			*pp = old->next;
			free(old->domain);
			free(old);
			r->ncache--;
			break;
		}
	}
	if (r->ncache >= ROUTE_CACHE_MAX) {
		cache_evict(r, now, 0);
		if (r->ncache >= ROUTE_CACHE_MAX)
			cache_evict(r, now, 1);
	}
	e = calloc(1, sizeof(*e) + res->naddr * sizeof(e->addrs[0]));
	if (e == NULL || (e->domain = strdup(domain)) == NULL) {
		free(e);
		return;   /* not cached: only slower */
	}
	e->expires_ms = now + (int64_t)ttl_s * 1000;
	e->status = res->status;
	util_strlcpy(e->text, res->text, sizeof(e->text));
	util_strlcpy(e->enhanced, res->enhanced, sizeof(e->enhanced));
	e->naddr = res->naddr;
	memcpy(e->addrs, res->addrs, res->naddr * sizeof(e->addrs[0]));
	e->next = r->buckets[b];
	r->buckets[b] = e;
	r->ncache++;
}

/* --- threads ---------------------------------------------------------------- */

static void *
resolver_main(void *arg)
{
	struct route *r = arg;
	struct route_result *res = malloc(sizeof(*res));
	struct mx_answer *ans = malloc(sizeof(*ans));

	for (;;) {
		struct req *q;
		int hit;

		pthread_mutex_lock(&r->mu);
		while (r->head == NULL && !r->stopping)
			pthread_cond_wait(&r->cv, &r->mu);
		if (r->head == NULL) {
			pthread_mutex_unlock(&r->mu);
			break;
		}
		q = r->head;
		r->head = q->next;
		if (r->head == NULL)
			r->tail = NULL;
		hit = res != NULL && cache_get(r, q->domain, util_mono_ms(), res) == 0;
		pthread_mutex_unlock(&r->mu);

		if (res == NULL || ans == NULL) {
			struct route_result tmp;
			memset(&tmp, 0, sizeof(tmp));
			tmp.status = ROUTE_TEMPFAIL;
			util_strlcpy(tmp.text, "out of memory resolving the domain", sizeof(tmp.text));
			r->cfg.on_result(&tmp, q->udata, r->cfg.arg);
			free(q);
			continue;
		}
		if (hit) {
			shuffle_runs(res, rnd_pick);
		} else {
			mx_resolve(q->domain, r->dns_server[0] ? r->dns_server : NULL,
			    r->cfg.timeout_s > 0 ? r->cfg.timeout_s : 5, ans);
			route_order(ans, NULL, res);
			pthread_mutex_lock(&r->mu);
			cache_put(r, q->domain, util_mono_ms(), ans->ttl, res);
			pthread_mutex_unlock(&r->mu);
			shuffle_runs(res, rnd_pick);
		}
		r->cfg.on_result(res, q->udata, r->cfg.arg);
		free(q);
	}
	free(res);
	free(ans);
	return NULL;
}

struct route *
route_new(const struct route_config *cfg, char *err, size_t errlen)
{
	struct route *r = calloc(1, sizeof(*r));
	int n = cfg->threads > 0 ? cfg->threads : 2;

	if (r == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	if (n > MAX_THREADS)
		n = MAX_THREADS;
	r->cfg = *cfg;
	if (cfg->dns_server != NULL &&
	    util_strlcpy(r->dns_server, cfg->dns_server, sizeof(r->dns_server)) >= sizeof(r->dns_server)) {
		snprintf(err, errlen, "DNS server address too long");
		free(r);
		return NULL;
	}
	r->cfg.dns_server = NULL;
	pthread_mutex_init(&r->mu, NULL);
	pthread_cond_init(&r->cv, NULL);
	for (int i = 0; i < n; i++) {
		if (pthread_create(&r->thr[i], NULL, resolver_main, r) != 0) {
			snprintf(err, errlen, "cannot start resolver threads");
			route_free(r);
			return NULL;
		}
		r->nthr++;
	}
	return r;
}

int
route_request(struct route *r, const char *domain, void *udata)
{
	struct req *q;
	size_t n = strlen(domain);
	int rc = -1;

	if (n == 0 || n >= MX_NAME_MAX || (q = calloc(1, sizeof(*q))) == NULL)
		return -1;
	for (size_t i = 0; i < n; i++)
		q->domain[i] = (char)tolower((unsigned char)domain[i]);
	q->udata = udata;
	pthread_mutex_lock(&r->mu);
	if (!r->stopping) {
		if (r->tail != NULL)
			r->tail->next = q;
		else
			r->head = q;
		r->tail = q;
		pthread_cond_signal(&r->cv);
		rc = 0;
	}
	pthread_mutex_unlock(&r->mu);
	if (rc != 0)
		free(q);
	return rc;
}

void
route_free(struct route *r)
{
	struct req *pending;
	struct route_result sd;

	if (r == NULL)
		return;
	pthread_mutex_lock(&r->mu);
	r->stopping = 1;
	pending = r->head;
	r->head = r->tail = NULL;
	pthread_cond_broadcast(&r->cv);
	pthread_mutex_unlock(&r->mu);
	memset(&sd, 0, sizeof(sd));
	sd.status = ROUTE_SHUTDOWN;
	util_strlcpy(sd.text, "shutting down before the domain was resolved", sizeof(sd.text));
	while (pending != NULL) {
		struct req *q = pending;
		pending = q->next;
		r->cfg.on_result(&sd, q->udata, r->cfg.arg);
		free(q);
	}
	for (int i = 0; i < r->nthr; i++)
		pthread_join(r->thr[i], NULL);
	cache_evict(r, 0, 1);
	pthread_cond_destroy(&r->cv);
	pthread_mutex_destroy(&r->mu);
	free(r);
}
