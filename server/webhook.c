/*
 * webhook.c - the webhook dispatcher. With webhook_request.c (signing and
 * building one request; the two share webhook_internal.h) and
 * webhook_event.c (reading an event's id, type and log fields) it is the only
 * module that sends through libcurl.
 *
 * One thread with its own struct store reads the events outbox and fans
 * each event out to the endpoints whose filter wants its type and whose
 * project is the event's: "default" (TXMAIL_WEBHOOK_URL, every type, the
 * projects of TXMAIL_WEBHOOK_PROJECTS) and the endpoints created through
 * /v1/webhooks (each its own project's events only), whose list is re-read
 * before every fan-out and about once a second. An event is sent straight
 * from memory while it stays pending in the outbox's consumer group (its
 * lease, renewed every third of the visibility timeout), and acked once
 * every endpoint answered 2xx or holds the delivery in its queue: a failed
 * attempt is parked there with its retry time, and so is an event for an
 * endpoint that is failing or too far behind (wh_settle, one script per
 * batch). Each endpoint has its own due set in the store; the thread
 * claims due deliveries from it with a lease, round-robin over the
 * endpoints, at most TXMAIL_WEBHOOK_CONNECTIONS requests per endpoint
 * (direct and queued together) and 4 times that in all, so a dead or slow
 * endpoint only ever holds its own slots. Requests run
 * concurrently through one curl multi handle, signed per Standard Webhooks
 * with the endpoint's own secret (webhook_sign, wh_start_req: both in
 * webhook_request.c). Outcomes go back to the
 * store: 2xx is done, anything else is retried with webhook_backoff_ms
 * until webhook_max_age, then given up (logged); a delivery whose endpoint
 * was deleted is dropped. While Redis is unreachable, requests in flight
 * keep going and their outcomes wait in memory until Redis is back; the
 * lease brings a delivery back if this process dies first (at-least-once).
 *
 * Operating an endpoint (issue 17): every attempt goes to the endpoint's
 * deliveries log (wh_outcome_note, written once per flush); a failure
 * extends its run of failures in the store, which disables the endpoint
 * once the run has lasted TXMAIL_WEBHOOK_DISABLE_AFTER (not "default");
 * a disabled endpoint's events are parked in its queue, which is not
 * claimed, and what it kept past TXMAIL_WEBHOOK_MAX_AGE is given up
 * (wh_prune_disabled); re-enabling (the API) makes the rest due. During a
 * rotation's overlap a request carries the signatures of both secrets.
 *
 * Waking up: with nothing in flight the thread waits in the store's
 * blocking read of the outbox, which Redis ends as soon as any process
 * appends an event. With requests in flight it waits in curl's poll
 * instead; a producer in this process (the delivery recorder) ends that
 * wait with webhook_notify, and an event from another process is seen
 * within the poll's interval (WH_POLL_MS) unless a dispatcher there is idle
 * and takes it at once. Events just fanned out are claimed in the next
 * round without waiting in the poll.
 *
 * It must never log a webhook secret or a request body, never follow
 * redirects, never turn TLS verification off, never use a proxy other than
 * TXMAIL_WEBHOOK_PROXY (libcurl's http_proxy/HTTPS_PROXY/ALL_PROXY/NO_PROXY
 * environment variables are turned off on every request: the connect-time
 * address guard would judge the proxy's address, not the target's; and
 * config.c accepts a proxy only with the guard off, the proxy then being
 * the egress policy), and never block longer than ~200 ms without checking
 * the stop flag.
 */
#include "webhook_internal.h"

#include <curl/curl.h>
#include <math.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "health.h"
#include "log.h"
#include "metrics.h"
#include "netguard.h"
#include "store.h"
#include "util.h"

#define WH_EP_CONN_MAX 256         /* TXMAIL_WEBHOOK_CONNECTIONS' largest value */
#define WH_MAX_INFLIGHT_MIN 128    /* requests in flight, all endpoints: at least this, */
#define WH_MAX_INFLIGHT_MAX 1024   /* 4 x the per-endpoint cap, at most this */
#define WH_HOLD_MAX 4096           /* events held for sending at once */
#define WH_EP_WAIT_MAX 1024        /* per endpoint: direct deliveries waiting for a slot */
#define WH_STALL_MS 1000           /* an endpoint at its cap whose oldest request is older is behind */
#define WH_SETTLE_MAX 500          /* deliveries and acks per settle script */
#define WH_RECLAIM_MS 1000         /* take over a dead dispatcher's events this often */
#define WH_MAX_ENDPOINTS 500       /* endpoints from the store that get events */
#define WH_EP_REFRESH_MS 1000
#define WH_READ_MAX 100
#define WH_IDLE_BLOCK_MS 100       /* XREADGROUP block when idle */
#define WH_POLL_MS 50              /* curl poll while requests are in flight (TXMAIL_TEST_WEBHOOK_POLL) */
#define WH_REDIS_BACKOFF_MS 500
#define WH_EVENT_ID_MAX 64
#define WH_DEFAULT_EP "default"
#define WH_LOG_BATCH 200           /* attempts per deliveries-log script */
#define WH_PRUNE_MS 60000          /* a disabled endpoint's queue is trimmed to the retention this often */
#define WH_PRUNE_MAX 500           /* deliveries per prune call */

int64_t webhook_backoff_ms(double base_s, double max_s, int attempts)
{
	double d;
	int i;

	if (!(base_s > 0) || !(max_s > 0))
		return 0;
	if (attempts < 1)
		attempts = 1;
	d = base_s;
	for (i = 1; i < attempts && d < max_s; i++)
		d *= 2;
	if (d > max_s)
		d = max_s;
	if (d > 1e12)      /* ~31 years: keep the conversion defined */
		d = 1e12;
	return (int64_t)llround(d * 1000.0);
}

/* ---- endpoints, filters, event parsing (pure) ----------------------------- */

const char *const webhook_event_types[WEBHOOK_NTYPES] = {
	"message.delivered",
	"message.deferred",
	"message.failed",
	"message.bounced",      /* an asynchronous DSN after delivery (bounce.c) */
	"message.complained",   /* an ARF feedback report (bounce.c, arf.h) */
	"webhook.test",         /* POST /v1/webhooks/{id}/test */
};

int webhook_type_known(const char *type)
{
	size_t i;

	if (!type)
		return 0;
	for (i = 0; i < WEBHOOK_NTYPES; i++)
		if (strcmp(type, webhook_event_types[i]) == 0)
			return 1;
	return 0;
}

int webhook_projects_match(const char *list, const char *project)
{
	const char *p;
	size_t n;

	if (!list)
		return 0;
	if (strcmp(list, "*") == 0)
		return 1;
	if (!project || !*project)
		project = STORE_PROJECT_DEFAULT;
	n = strlen(project);
	for (p = list; *p; ) {
		size_t len = strcspn(p, ",");

		if (len == n && memcmp(p, project, n) == 0)
			return 1;
		p += len;
		if (*p == ',')
			p++;
	}
	return 0;
}

int webhook_filter_match(const char *const *events, size_t n, const char *type)
{
	size_t i;

	if (n == 0)
		return 1;
	if (!events || !type)
		return 0;
	for (i = 0; i < n; i++)
		if (events[i] && strcmp(events[i], type) == 0)
			return 1;
	return 0;
}

static int wh_valid_id(const char *id)
{
	size_t n = strlen(id), i;

	if (n == 0 || n >= WH_EVENT_ID_MAX)
		return 0;
	for (i = 0; i < n; i++) {
		char c = id[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || c == '_' || c == '-'))
			return 0;
	}
	return 1;
}

/* ---- the dispatcher --------------------------------------------------------- */

/* This process's running dispatchers, woken by webhook_notify. */
static pthread_mutex_t wh_live_mu = PTHREAD_MUTEX_INITIALIZER;
static struct webhook *wh_live;

static pthread_once_t wh_curl_once = PTHREAD_ONCE_INIT;
static CURLcode wh_curl_rc = CURLE_OK;

static void wh_curl_init(void)
{
	wh_curl_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

int wh_curl_ready(void)
{
	pthread_once(&wh_curl_once, wh_curl_init);
	return wh_curl_rc == CURLE_OK ? 0 : -1;
}

static void wh_ep_release(struct wh_ep *ep)
{
	size_t i;

	free(ep->url);
	EVP_MAC_CTX_free(ep->mac);
	EVP_MAC_CTX_free(ep->mac_old);
	if (ep->secret) {
		OPENSSL_cleanse(ep->secret, strlen(ep->secret));
		free(ep->secret);
	}
	if (ep->secret_old) {
		OPENSSL_cleanse(ep->secret_old, strlen(ep->secret_old));
		free(ep->secret_old);
	}
	for (i = 0; i < ep->nevents; i++)
		free(ep->events[i]);
	free(ep->events);
	memset(ep, 0, sizeof(*ep));
}

static void wh_eps_free(struct wh_ep *eps, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		wh_ep_release(&eps[i]);
	free(eps);
}

/* wh_ep_set - fill ep with copies (mac left NULL: the caller keys it); 0 or -1 (OOM, ep released). */
static int wh_ep_set(struct wh_ep *ep, const char *id, const char *url, const char *secret,
    char *const *events, size_t nevents)
{
	size_t i;

	memset(ep, 0, sizeof(*ep));
	if (strlen(id) >= sizeof(ep->id))
		return -1;
	util_strlcpy(ep->id, id, sizeof(ep->id));
	ep->url = strdup(url ? url : "");
	ep->secret = strdup(secret ? secret : "");
	ep->enabled = 1;
	if (nevents > 0) {
		ep->events = calloc(nevents, sizeof(*ep->events));
		if (!ep->events)
			goto fail;
		for (i = 0; i < nevents; i++) {
			ep->events[i] = strdup(events[i] ? events[i] : "");
			if (!ep->events[i])
				goto fail;
			ep->nevents++;
		}
	}
	if (!ep->url || !ep->secret)
		goto fail;
	return 0;
fail:
	wh_ep_release(ep);
	return -1;
}

static struct wh_ep *wh_ep_find(struct webhook *w, const char *id)
{
	size_t i;

	for (i = 0; i < w->neps; i++)
		if (strcmp(w->eps[i].id, id) == 0)
			return &w->eps[i];
	return NULL;
}

static void wh_req_free(struct webhook *w, struct wh_req *r)
{
	if (!r)
		return;
	if (r->easy) {
		if (w && w->multi) {
			curl_multi_remove_handle(w->multi, r->easy);
			wh_easy_put(w, r->easy);
		} else {
			curl_easy_cleanup(r->easy);
		}
	}
	store_whd_free(r->d);
	free(r);
}

/* wh_store_error - note a store failure; returns 1 when Redis is unavailable. */
static int wh_store_error(struct webhook *w, const char *what, int rc)
{
	if (rc == STORE_ERR_UNAVAILABLE) {
		if (!w->redis_down_logged) {
			log_warn("redis unavailable for webhooks, backing off", "op=%s", what);
			w->redis_down_logged = 1;
		}
		w->redis_retry_at = util_mono_ms() + WH_REDIS_BACKOFF_MS;
		return 1;
	}
	log_warn("webhook store error", "op=%s rc=%d", what, rc);
	return 0;
}

static int wh_redis_ok(struct webhook *w)
{
	if (w->redis_retry_at == 0)
		return 1;
	return util_mono_ms() >= w->redis_retry_at;
}

static void wh_redis_back(struct webhook *w)
{
	if (w->redis_down_logged)
		log_info("redis available again for webhooks");
	w->redis_down_logged = 0;
	w->redis_retry_at = 0;
}

/*
 * wh_prune_disabled - about once a minute (twice per retention when that
 * is shorter, at most once a second): the deliveries a disabled
 * endpoint kept for longer than TXMAIL_WEBHOOK_MAX_AGE are given up
 * (counted as gave_up, logged), so a dead endpoint's queue stays bounded
 * by the retention.
 */
static void wh_prune_disabled(struct webhook *w)
{
	int64_t cutoff = util_now_ms() - (int64_t)(w->max_age * 1000.0);
	int64_t every = (int64_t)(w->max_age * 500.0);   /* half the retention, 1 s .. WH_PRUNE_MS */

	if (util_mono_ms() < w->prune_at)
		return;
	if (every > WH_PRUNE_MS)
		every = WH_PRUNE_MS;
	if (every < 1000)
		every = 1000;
	w->prune_at = util_mono_ms() + every;
	for (size_t i = 0; i < w->neps; i++) {
		int n;

		if (w->eps[i].enabled)
			continue;
		n = store_webhook_prune(w->st, w->eps[i].id, cutoff, WH_PRUNE_MAX);
		if (n < 0) {
			wh_store_error(w, "prune", n);
			return;
		}
		for (int k = 0; k < n; k++)
			metrics_webhook_attempt(METRICS_WEBHOOK_GAVE_UP);
		if (n > 0)
			log_warn("webhook deliveries of a disabled endpoint given up (older than "
			    "TXMAIL_WEBHOOK_MAX_AGE)", "endpoint=%s deliveries=%d", w->eps[i].id, n);
	}
}

/*
 * wh_refresh_eps - re-read the store's endpoints (keeping "default" first
 * and each endpoint's busy count). 0; -1 when the list could not be read
 * (the old one stays; a Redis outage is noted).
 */
static int wh_refresh_eps(struct webhook *w)
{
	struct store_endpoint *se = NULL;
	struct wh_ep *ne = NULL;
	size_t n = 0, i, k = 1;
	struct wh_req *r;
	int rc;

	w->eps_refresh_at = util_mono_ms() + WH_EP_REFRESH_MS;
	rc = store_endpoint_list(w->st, &se, &n);
	if (rc != STORE_OK) {
		if (rc == STORE_ERR_UNAVAILABLE) {
			wh_store_error(w, "endpoint_list", rc);
		} else if (util_mono_ms() >= w->eps_warn_at) {
			log_warn("cannot read webhook endpoints, using the last list", "rc=%d", rc);
			w->eps_warn_at = util_mono_ms() + 60000;
		}
		return -1;
	}
	wh_redis_back(w);
	if (n > WH_MAX_ENDPOINTS) {
		if (util_mono_ms() >= w->eps_warn_at) {
			log_warn("too many webhook endpoints, using the oldest", "count=%zu max=%d",
			    n, WH_MAX_ENDPOINTS);
			w->eps_warn_at = util_mono_ms() + 60000;
		}
	}
	ne = calloc(1 + (n < WH_MAX_ENDPOINTS ? n : WH_MAX_ENDPOINTS), sizeof(*ne));
	if (!ne)
		goto oom;
	/* "default" moves over as it is */
	ne[0] = w->eps[0];
	memset(&w->eps[0], 0, sizeof(w->eps[0]));
	for (i = 0; i < n && k <= WH_MAX_ENDPOINTS; i++) {
		const struct wh_ep *old;

		if (!se[i].id || !se[i].url || !se[i].secret || strcmp(se[i].id, WH_DEFAULT_EP) == 0 ||
		    strlen(se[i].id) >= WH_EP_ID_MAX)
			continue;
		if (wh_ep_set(&ne[k], se[i].id, se[i].url, se[i].secret, se[i].events,
		    se[i].nevents) != 0) {
			goto oom_ne;
		}
		util_strlcpy(ne[k].project, se[i].project ? se[i].project : STORE_PROJECT_DEFAULT,
		    sizeof(ne[k].project));
		old = wh_ep_find(w, se[i].id);
		/* the keyed MAC moves over while the secret is the same; else a new one
		 * (NULL for a bad secret: each request then fails its setup) */
		if (old && old->mac && strcmp(old->secret, ne[k].secret) == 0) {
			ne[k].mac = old->mac;
			w->eps[old - w->eps].mac = NULL;
		} else if (ne[k].secret[0]) {
			ne[k].mac = wh_mac_new(ne[k].secret);
		}
		ne[k].enabled = !se[i].disabled;
		ne[k].failing_since = se[i].failing_since_ms;
		ne[k].old_until_ms = se[i].old_until_ms;
		if (se[i].secret_old && se[i].secret_old[0] && se[i].old_until_ms > util_now_ms()) {
			ne[k].secret_old = strdup(se[i].secret_old);
			if (!ne[k].secret_old) {
				k++;
				goto oom_ne;
			}
			if (old && old->mac_old && old->secret_old &&
			    strcmp(old->secret_old, ne[k].secret_old) == 0) {
				ne[k].mac_old = old->mac_old;
				w->eps[old - w->eps].mac_old = NULL;
			} else {
				ne[k].mac_old = wh_mac_new(ne[k].secret_old);
			}
		}
		ne[k].next_due = old ? old->next_due : 0;
		ne[k].failing = old ? old->failing : 0;
		k++;
	}
	wh_eps_free(w->eps, w->neps);
	w->eps = ne;
	w->neps = k;
	for (i = 0; i < w->neps; i++) {
		w->eps[i].busy = 0;
		w->eps[i].nwait = 0;
	}
	for (r = w->wait_head; r; r = r->next) {
		struct wh_ep *ep = wh_ep_find(w, r->d->endpoint);

		if (ep)
			ep->nwait++;
	}
	for (r = w->inflight; r; r = r->next) {
		struct wh_ep *ep = wh_ep_find(w, r->d->endpoint);

		if (ep)
			ep->busy++;
	}
	for (r = w->finished; r; r = r->next) {
		struct wh_ep *ep = wh_ep_find(w, r->d->endpoint);

		if (ep)
			ep->busy++;
	}
	if (w->rr >= w->neps)
		w->rr = 0;
	store_endpoints_free(se, n);
	return 0;
oom_ne:
	/* put "default" back, drop the partial list */
	w->eps[0] = ne[0];
	memset(&ne[0], 0, sizeof(ne[0]));
	wh_eps_free(ne, k);
oom:
	log_warn("out of memory reading webhook endpoints");
	store_endpoints_free(se, n);
	return -1;
}

/* wh_release_busy - one request of d's endpoint is over (recorded or abandoned). */
void wh_release_busy(struct webhook *w, const struct store_whd *d)
{
	struct wh_ep *ep = wh_ep_find(w, d->endpoint);

	if (ep && ep->busy > 0)
		ep->busy--;
}

/* wh_ep_of - r's endpoint (eps[r->epi] when that is still it), or NULL when gone. */
static struct wh_ep *wh_ep_of(struct webhook *w, struct wh_req *r)
{
	size_t i;

	if (r->epi < w->neps && strcmp(w->eps[r->epi].id, r->d->endpoint) == 0)
		return &w->eps[r->epi];
	for (i = 0; i < w->neps; i++)
		if (strcmp(w->eps[i].id, r->d->endpoint) == 0) {
			r->epi = i;
			return &w->eps[i];
		}
	return NULL;
}

/* wh_park_add - queue d (taken) for its endpoint's due set at due_ms; 0, or -1 (out of memory, d freed). */
static int wh_park_add(struct webhook *w, struct store_whd *d, const char *project, int64_t due_ms)
{
	if (w->npark == w->cappark) {
		size_t cap = w->cappark ? w->cappark * 2 : 64;
		struct wh_park *np = realloc(w->park, cap * sizeof(*np));

		if (!np) {
			log_warn("out of memory parking a webhook delivery", "event_id=%s endpoint=%s",
			    d->event_id, d->endpoint);
			store_whd_free(d);
			return -1;
		}
		w->park = np;
		w->cappark = cap;
	}
	w->park[w->npark].d = d;
	util_strlcpy(w->park[w->npark].project, project, sizeof(w->park[w->npark].project));
	w->park[w->npark].due_ms = due_ms;
	w->npark++;
	return 0;
}

/* wh_ack_add - ack entry_id at the next settle; 0, or -1 (out of memory: it is reclaimed later). */
static int wh_ack_add(struct webhook *w, const char *entry_id)
{
	if (w->nack == w->capack) {
		size_t cap = w->capack ? w->capack * 2 : 128;
		char (*na)[48] = realloc(w->acks, cap * sizeof(*na));

		if (!na)
			return -1;
		w->acks = na;
		w->capack = cap;
	}
	util_strlcpy(w->acks[w->nack++], entry_id, sizeof(w->acks[0]));
	return 0;
}

/* wh_evt_release - drop ev from the held list and free it; acked at the next settle unless noack. */
static void wh_evt_release(struct webhook *w, struct wh_evt *ev)
{
	if (!ev->noack && wh_ack_add(w, ev->entry_id) != 0)
		log_warn("out of memory acking a webhook event, it comes back later", "entry=%s", ev->entry_id);
	if (ev->prev)
		ev->prev->next = ev->next;
	else if (w->held == ev)
		w->held = ev->next;
	if (ev->next)
		ev->next->prev = ev->prev;
	w->nheld--;
	free(ev);
}

/* wh_evt_unref - one direct delivery of ev is settled (answered or parked). */
void wh_evt_unref(struct webhook *w, struct wh_evt *ev)
{
	if (--ev->refs <= 0)
		wh_evt_release(w, ev);
}

/* wh_note_oldest - each endpoint's oldest request in flight, for wh_behind. */
static void wh_note_oldest(struct webhook *w)
{
	struct wh_req *r;
	size_t i;

	for (i = 0; i < w->neps; i++)
		w->eps[i].oldest_ms = 0;
	for (r = w->inflight; r; r = r->next) {
		struct wh_ep *ep = wh_ep_of(w, r);

		if (ep && (ep->oldest_ms == 0 || r->started_ms < ep->oldest_ms))
			ep->oldest_ms = r->started_ms;
	}
}

/*
 * wh_behind - ep's new events go to its queue, not to memory: it is
 * failing, or it has all its slots taken by requests of which the oldest
 * has waited more than WH_STALL_MS (a hanging receiver: its events must
 * not hold the outbox up for the others while the requests time out).
 */
static int wh_behind(const struct webhook *w, const struct wh_ep *ep)
{
	return !ep->enabled || ep->failing || (ep->busy >= w->ep_cap && ep->oldest_ms != 0 &&
	    util_mono_ms() - ep->oldest_ms > WH_STALL_MS);
}

/*
 * wh_settle - write the parked deliveries, then the acks, in scripts of
 * up to WH_SETTLE_MAX each; acks go only with (or after) the last parked
 * deliveries, so an event is never acked before its deliveries are kept.
 * 0, or -1 on a store error (what is left is tried again next time).
 */
static int wh_settle(struct webhook *w)
{
	struct store_whpark items[WH_SETTLE_MAX];
	const char *ids[WH_SETTLE_MAX];

	while (w->npark > 0 || w->nack > 0) {
		size_t np = w->npark < WH_SETTLE_MAX ? w->npark : WH_SETTLE_MAX;
		size_t na = np == w->npark ? (w->nack < WH_SETTLE_MAX ? w->nack : WH_SETTLE_MAX) : 0;
		int64_t now = util_now_ms();
		size_t i;
		int rc;

		for (i = 0; i < np; i++) {
			const struct wh_park *p = &w->park[i];

			items[i].member = p->d->member;
			items[i].body = p->d->body;
			items[i].project = p->project;
			items[i].attempts = p->d->attempts;
			items[i].first_ms = p->d->first_ms;
			items[i].due_ms = p->due_ms;
		}
		for (i = 0; i < na; i++)
			ids[i] = w->acks[i];
		rc = store_webhook_settle(w->st, items, np, ids, na);
		if (rc < 0) {
			if (wh_store_error(w, "settle", rc))
				return -1;
			/* not Redis being away: a bug; drop it rather than spin (the
			 * events not acked come back after the visibility timeout) */
			log_warn("webhook settle refused, dropping the batch", "deliveries=%zu acks=%zu", np, na);
		}
		wh_redis_back(w);
		for (i = 0; i < np; i++) {
			struct wh_ep *ep = wh_ep_find(w, w->park[i].d->endpoint);

			/* its queue has work from then on */
			if (rc >= 0 && ep && (ep->next_due == 0 || ep->next_due > w->park[i].due_ms))
				ep->next_due = w->park[i].due_ms <= now ? 0 : w->park[i].due_ms;
			store_whd_free(w->park[i].d);
		}
		if (w->npark > np)
			memmove(w->park, w->park + np, (w->npark - np) * sizeof(*w->park));
		w->npark -= np;
		if (w->nack > na)
			memmove(w->acks, w->acks + na, (w->nack - na) * sizeof(*w->acks));
		w->nack -= na;
	}
	return 0;
}

/* wh_logs_clear - drop the attempts not written yet. */
static void wh_logs_clear(struct webhook *w)
{
	while (w->nlogs > 0)
		free(w->logs[--w->nlogs].body);
}

/* wh_logs_flush - write the attempts noted to the endpoints' deliveries logs (best effort). */
static void wh_logs_flush(struct webhook *w)
{
	struct store_whlog items[WH_LOG_BATCH];
	size_t done = 0;

	while (done < w->nlogs) {
		size_t n = w->nlogs - done < WH_LOG_BATCH ? w->nlogs - done : WH_LOG_BATCH;
		int rc;

		for (size_t i = 0; i < n; i++) {
			struct wh_logent *e = &w->logs[done + i];

			memset(&items[i], 0, sizeof(items[i]));
			items[i].endpoint = e->endpoint;
			items[i].event_id = e->event_id;
			items[i].type = e->type;
			items[i].attempt = e->attempt;
			items[i].status = e->status;
			items[i].duration_ms = e->duration_ms;
			items[i].response = e->excerpt;
			items[i].error = e->error;
			items[i].next_ms = e->next_ms;
			items[i].at_ms = e->at_ms;
			items[i].body = e->body;
		}
		rc = store_webhook_log(w->st, items, n);
		if (rc != STORE_OK && util_mono_ms() >= w->log_warn_at) {
			log_warn("cannot write webhook deliveries log, dropping", "attempts=%zu rc=%d", n, rc);
			w->log_warn_at = util_mono_ms() + 60000;
		}
		done += n;
	}
	wh_logs_clear(w);
}

/*
 * wh_outcome_note - what the store keeps of r's attempt: an entry of its
 * endpoint's deliveries log (written at the end of the flush), and for a
 * failure its last failure and failure run, which disables the endpoint
 * once it has lasted TXMAIL_WEBHOOK_DISABLE_AFTER (logged at warn,
 * txmail_webhook_endpoints_disabled_total); for a success the end of the
 * run. Best effort: the delivery's own outcome is recorded either way.
 */
static void wh_outcome_note(struct webhook *w, struct wh_req *r)
{
	struct wh_ep *ep = wh_ep_find(w, r->d->endpoint);
	int64_t now = util_now_ms();

	if (!ep)
		return;   /* deleted meanwhile: nothing to keep */
	if (w->nlogs == w->caplogs) {
		size_t cap = w->caplogs ? w->caplogs * 2 : 64;
		struct wh_logent *nl = realloc(w->logs, cap * sizeof(*nl));

		if (nl) {
			w->logs = nl;
			w->caplogs = cap;
		}
	}
	if (w->nlogs < w->caplogs) {
		struct wh_logent *e = &w->logs[w->nlogs];

		memset(e, 0, sizeof(*e));
		util_strlcpy(e->endpoint, r->d->endpoint, sizeof(e->endpoint));
		util_strlcpy(e->event_id, r->d->event_id, sizeof(e->event_id));
		util_strlcpy(e->type, r->type, sizeof(e->type));
		e->attempt = r->attempts;
		e->status = r->status;
		e->duration_ms = r->duration_ms;
		e->at_ms = now;
		e->next_ms = r->outcome == WH_RETRY ? r->next_ms : 0;
		if (r->status == 0)
			util_strlcpy(e->error, r->fail, sizeof(e->error));
		webhook_answer_excerpt(r->head.buf, r->head.len, e->excerpt, sizeof(e->excerpt));
		e->body = strdup(r->d->body);
		if (e->body)
			w->nlogs++;
	}
	if (r->fail[0] != '\0') {
		char reason[320], since[40];
		int rc;

		if (ep->failing_since == 0)
			ep->failing_since = now;
		util_rfc3339(ep->failing_since, since, sizeof(since));
		snprintf(reason, sizeof(reason), "failing since %s for TXMAIL_WEBHOOK_DISABLE_AFTER (%.0f s); "
		    "last error: %.160s", since, w->disable_after, r->fail);
		rc = store_endpoint_failed(w->st, ep->id, now, r->fail,
		    strcmp(ep->id, WH_DEFAULT_EP) == 0 ? 0 : (int64_t)(w->disable_after * 1000.0), reason);
		if (rc == 1) {
			ep->enabled = 0;
			metrics_webhook_disabled();
			log_warn("webhook endpoint disabled after failing continuously", "endpoint=%s "
			    "failing_since=%s disable_after=%.0fs error=%s", ep->id, since, w->disable_after,
			    r->fail);
		}
	} else if (r->status >= 200 && r->status < 300 && ep->failing_since != 0) {
		if (store_endpoint_recovered(w->st, ep->id) == STORE_OK)
			ep->failing_since = 0;
	}
}

/* wh_flush - record finished outcomes; 0, or -1 when Redis went away (the rest stay queued). */
static int wh_flush(struct webhook *w)
{
	while (w->finished) {
		struct wh_req *r = w->finished;
		int rc = STORE_OK;

		if (r->evt) {
			/* sent straight from the outbox: only a retry is written (parked) */
			struct wh_evt *ev = r->evt;

			wh_outcome_note(w, r);
			wh_release_busy(w, r->d);
			if (r->outcome == WH_RETRY) {
				r->d->attempts = r->attempts;
				if (wh_park_add(w, r->d, ev->project, r->next_ms) != 0)
					ev->noack = 1;
				r->d = NULL;
			}
			w->finished = r->next;
			w->nfinished--;
			wh_req_free(w, r);
			wh_evt_unref(w, ev);
			continue;
		}
		if (r->outcome == WH_DONE)
			rc = store_webhook_done(w->st, r->d->member);
		else
			rc = store_webhook_retry(w->st, r->d->member, r->attempts, r->next_ms);
		if (rc != STORE_OK && wh_store_error(w, r->outcome == WH_DONE ? "done" : "retry", rc))
			return -1;
		wh_redis_back(w);
		if (rc == STORE_OK)
			wh_outcome_note(w, r);
		if (rc == STORE_OK && r->outcome == WH_RETRY) {
			struct wh_ep *ep = wh_ep_find(w, r->d->endpoint);

			if (ep && (ep->next_due == 0 || r->next_ms < ep->next_due))
				ep->next_due = r->next_ms;
		}
		wh_release_busy(w, r->d);
		w->finished = r->next;
		w->nfinished--;
		wh_req_free(w, r);
	}
	wh_logs_flush(w);
	return wh_settle(w);
}

static int wh_known(const struct wh_req *list, const char *member)
{
	for (; list; list = list->next)
		if (strcmp(list->d->member, member) == 0)
			return 1;
	return 0;
}

/* wh_complete - decide the outcome of a finished request and queue it for the store. */
static void wh_complete(struct webhook *w, struct wh_req *r, CURLcode cc)
{
	struct wh_req **pp;
	struct wh_ep *ep;
	long status = 0;
	int64_t now = util_now_ms();
	const char *err = NULL;

	for (pp = &w->inflight; *pp; pp = &(*pp)->next) {
		if (*pp == r) {
			*pp = r->next;
			w->ninflight--;
			break;
		}
	}
	if (cc == CURLE_OK)
		curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
	else
		err = r->guard_why[0] ? r->guard_why : r->errbuf[0] ? r->errbuf : curl_easy_strerror(cc);
	r->status = cc == CURLE_OK ? status : 0;
	r->duration_ms = util_mono_ms() - r->started_ms;
	curl_multi_remove_handle(w->multi, r->easy);
	wh_easy_put(w, r->easy);
	r->easy = NULL;
	if (err)
		util_strlcpy(r->fail, err, sizeof(r->fail));
	else if (status < 200 || status >= 300)
		snprintf(r->fail, sizeof(r->fail), "HTTP %ld", status);

	if (cc == CURLE_OK && status >= 200 && status < 300) {
		r->outcome = WH_DONE;
		metrics_webhook_attempt(METRICS_WEBHOOK_SUCCESS);
		metrics_webhook_latency((double)(now - (r->created_ms > 0 ? r->created_ms : r->d->first_ms)) / 1000.0);
		log_info("webhook delivered",
		    "event_id=%s endpoint=%s msg_id=%s rcpt=%s type=%s status=%ld attempt=%d",
		    r->d->event_id, r->d->endpoint, r->msg_id, r->rcpt, r->type, status, r->attempts);
		if ((ep = wh_ep_find(w, r->d->endpoint)) != NULL && ep->failing) {
			ep->failing = 0;
			log_warn("webhook endpoint recovered", "endpoint=%s", r->d->endpoint);
		}
	} else if (!wh_ep_find(w, r->d->endpoint)) {
		r->outcome = WH_DONE;
		metrics_webhook_attempt(METRICS_WEBHOOK_DROPPED);
		log_info("webhook endpoint deleted, dropping delivery",
		    "event_id=%s endpoint=%s msg_id=%s rcpt=%s type=%s attempt=%d",
		    r->d->event_id, r->d->endpoint, r->msg_id, r->rcpt, r->type, r->attempts);
	} else if ((double)(now - r->d->first_ms) > w->max_age * 1000.0) {
		r->outcome = WH_DONE;
		metrics_webhook_attempt(METRICS_WEBHOOK_GAVE_UP);
		if (err)
			log_warn("webhook given up",
			    "event_id=%s endpoint=%s msg_id=%s rcpt=%s type=%s error=%s attempt=%d",
			    r->d->event_id, r->d->endpoint, r->msg_id, r->rcpt, r->type, err, r->attempts);
		else
			log_warn("webhook given up",
			    "event_id=%s endpoint=%s msg_id=%s rcpt=%s type=%s status=%ld attempt=%d",
			    r->d->event_id, r->d->endpoint, r->msg_id, r->rcpt, r->type, status, r->attempts);
	} else {
		int64_t delay = webhook_backoff_ms(w->retry_base, w->retry_max, r->attempts);
		char retry_in[48];

		r->outcome = WH_RETRY;
		r->next_ms = now + delay;
		metrics_webhook_attempt(METRICS_WEBHOOK_RETRY);
		/* the first failure of a healthy endpoint is worth a warning (a
		 * certificate error, a dead receiver); the retries after it are not */
		if ((ep = wh_ep_find(w, r->d->endpoint)) != NULL && !ep->failing) {
			ep->failing = 1;
			if (err)
				log_warn("webhook endpoint failing, retrying with backoff",
				    "endpoint=%s event_id=%s msg_id=%s rcpt=%s type=%s error=%s",
				    r->d->endpoint, r->d->event_id, r->msg_id, r->rcpt, r->type, err);
			else
				log_warn("webhook endpoint failing, retrying with backoff",
				    "endpoint=%s event_id=%s msg_id=%s rcpt=%s type=%s status=%ld",
				    r->d->endpoint, r->d->event_id, r->msg_id, r->rcpt, r->type, status);
		}
		util_fmt_duration((double)delay / 1000.0, retry_in, sizeof(retry_in));
		if (err)
			log_info("webhook failed, will retry",
			    "event_id=%s endpoint=%s msg_id=%s rcpt=%s type=%s error=%s attempt=%d retry_in=%s",
			    r->d->event_id, r->d->endpoint, r->msg_id, r->rcpt, r->type, err, r->attempts,
			    retry_in);
		else
			log_info("webhook failed, will retry",
			    "event_id=%s endpoint=%s msg_id=%s rcpt=%s type=%s status=%ld attempt=%d retry_in=%s",
			    r->d->event_id, r->d->endpoint, r->msg_id, r->rcpt, r->type, status, r->attempts,
			    retry_in);
	}
	r->next = w->finished;
	w->finished = r;
	w->nfinished++;
}

/* wh_held_find - the held event of an outbox entry, or NULL. */
static struct wh_evt *wh_held_find(struct webhook *w, const char *entry_id)
{
	struct wh_evt *ev;

	for (ev = w->held; ev; ev = ev->next)
		if (strcmp(ev->entry_id, entry_id) == 0)
			return ev;
	return NULL;
}

/* wh_whd_new - a new delivery of event id to endpoint ep; NULL when out of memory. */
static struct store_whd *wh_whd_new(const char *id, const char *ep, const char *body, int64_t now)
{
	struct store_whd *d = calloc(1, sizeof(*d));
	size_t n;

	if (!d)
		return NULL;
	n = strlen(id) + 1 + strlen(ep) + 1;
	d->member = malloc(n);
	d->event_id = strdup(id);
	d->endpoint = strdup(ep);
	d->body = strdup(body);
	if (!d->member || !d->event_id || !d->endpoint || !d->body) {
		store_whd_free(d);
		return NULL;
	}
	snprintf(d->member, n, "%s/%s", id, ep);
	d->first_ms = now;
	return d;
}

/*
 * wh_take_event - route one outbox event: to each endpoint whose filter
 * wants its type and whose project is the event's, directly (a request
 * waiting for a slot, the entry held unacked meanwhile) while the endpoint
 * is healthy and not too far behind, else parked in the endpoint's queue.
 * An event with nothing sent directly is acked at the next settle. seen:
 * it may be one already held (read from the pending list, not as new).
 */
static void wh_take_event(struct webhook *w, const struct store_event *sev, int seen)
{
	char id[WH_EVENT_ID_MAX], type[64];
	int64_t now = util_now_ms();
	struct wh_evt *ev;
	size_t k;

	if (seen && wh_held_find(w, sev->entry_id))
		return;   /* already ours: the reclaim only took it back */
	ev = calloc(1, sizeof(*ev));
	if (!ev) {
		w->read_own = 1;   /* read again later */
		return;
	}
	util_strlcpy(ev->entry_id, sev->entry_id, sizeof(ev->entry_id));
	util_strlcpy(ev->project, sev->project, sizeof(ev->project));
	/* held from here on, so a delivery settled at once finds it */
	ev->next = w->held;
	if (w->held)
		w->held->prev = ev;
	w->held = ev;
	w->nheld++;
	ev->refs = 1;   /* ours while routing */
	if (webhook_event_field(sev->json, "id", id, sizeof(id)) < 0 || !wh_valid_id(id)) {
		log_warn("webhook event without a usable id", "entry=%s", sev->entry_id);
		snprintf(id, sizeof(id), "evt_%.40s", sev->entry_id);
	}
	if (webhook_event_field(sev->json, "type", type, sizeof(type)) < 0)
		type[0] = '\0';
	for (k = 0; k < w->neps; k++) {
		struct wh_ep *ep = &w->eps[k];
		struct store_whd *d;
		struct wh_req *r;

		if (!ep->url[0] ||
		    !webhook_filter_match((const char *const *)ep->events, ep->nevents, type))
			continue;
		/* an endpoint gets its own project's events only (the settle script checks again) */
		if (k == 0 ? !webhook_projects_match(w->default_projects, sev->project) :
		    strcmp(ep->project, sev->project) != 0)
			continue;
		d = wh_whd_new(id, ep->id, sev->json, now);
		if (!d) {
			ev->noack = 1;
			continue;
		}
		if (wh_behind(w, ep) || ep->nwait >= WH_EP_WAIT_MAX || w->nheld > WH_HOLD_MAX ||
		    !(r = calloc(1, sizeof(*r)))) {
			if (wh_park_add(w, d, sev->project, now) != 0)
				ev->noack = 1;
			continue;
		}
		r->d = d;
		r->evt = ev;
		r->epi = k;
		ev->refs++;
		ep->nwait++;
		if (w->wait_tail)
			w->wait_tail->next = r;
		else
			w->wait_head = r;
		w->wait_tail = r;
		w->nwait++;
	}
	wh_evt_unref(w, ev);
}

/*
 * wh_read_events - one batch from the outbox, each event routed by
 * wh_take_event (the endpoint list is re-read first, so an endpoint gets
 * every event emitted after it was created), then what was parked or is
 * done is settled. Count read, or -1 on Redis trouble (events not routed
 * stay pending and come back).
 */
/* wh_read_batch - one store_read_events_flags call, each event routed; count, or -1 (see below). */
static int wh_read_batch(struct webhook *w, int flags, int block_ms)
{
	struct store_event *evs[WH_READ_MAX];
	int n, i, rc = 0;

	n = store_read_events_flags(w->st, w->consumer, WH_READ_MAX, block_ms,
	    w->visibility_ms, flags, evs);
	if (n == STORE_ERR_UNREPLICATED) {
		/* read, but not yet on the replicas (logged by the store once): later, from our own */
		metrics_redis_unreplicated(METRICS_UNREPL_EVENTS);
		w->read_own = 1;
		w->redis_retry_at = util_mono_ms() + WH_REDIS_BACKOFF_MS;
		return -1;
	}
	if (n < 0) {
		wh_store_error(w, "read_events", n);
		return -1;
	}
	wh_redis_back(w);
	if (n > 0 && wh_refresh_eps(w) != 0 && !wh_redis_ok(w))
		rc = -1;    /* never fan out without the store's endpoints: read again later */
	for (i = 0; i < n; i++) {
		if (rc == 0)
			wh_take_event(w, evs[i], (flags & STORE_EVENTS_NO_NEW) != 0);
		store_event_free(evs[i]);
	}
	if (rc < 0) {
		w->read_own = 1;   /* they stay pending in the group: read again */
		return -1;
	}
	return n;
}

/*
 * wh_read_events - what was pending before (this consumer's own at start,
 * dead consumers' about once a second; those may be held already), then
 * one batch of new events, blocking up to block_ms when nothing came;
 * each routed by wh_take_event (the endpoint list is re-read first, so an
 * endpoint gets every event emitted after it was created), then what was
 * parked is settled. Count read, or -1 on Redis trouble (events not
 * routed stay pending and come back).
 */
static int wh_read_events(struct webhook *w, int block_ms)
{
	int flags = 0, n, total = 0;

	if (w->read_own)
		flags |= STORE_EVENTS_OWN;
	if (util_mono_ms() >= w->reclaim_at)
		flags |= STORE_EVENTS_RECLAIM;
	if (flags) {
		n = wh_read_batch(w, flags | STORE_EVENTS_NO_NEW, 0);
		if (n < 0)
			return -1;
		if (flags & STORE_EVENTS_OWN)
			w->read_own = 0;
		if (flags & STORE_EVENTS_RECLAIM)
			w->reclaim_at = util_mono_ms() + WH_RECLAIM_MS;
		if (n > 0)
			block_ms = 0;   /* work at hand: do not wait for new ones */
		total = n;
	}
	n = wh_read_batch(w, 0, block_ms);
	if (n < 0)
		return -1;
	total += n;
	if (w->npark > 0 && wh_settle(w) != 0)
		return -1;
	return total;
}

/*
 * wh_touch_held - renew the lease (the idle time in the group) of the
 * events held, every third of the visibility timeout, so another
 * dispatcher does not take over an event still being sent.
 */
static void wh_touch_held(struct webhook *w)
{
	const char *ids[WH_SETTLE_MAX];
	struct wh_evt *ev;
	int64_t period = w->visibility_ms / 3;
	size_t n = 0;
	int rc = 0;

	if (util_mono_ms() < w->touch_at)
		return;
	w->touch_at = util_mono_ms() + (period > 200 ? period : 200);
	for (ev = w->held; ev && rc == 0; ev = ev->next) {
		ids[n++] = ev->entry_id;
		if (n == WH_SETTLE_MAX || !ev->next) {
			rc = store_events_touch(w->st, w->consumer, ids, n);
			n = 0;
		}
	}
	if (rc != 0)
		wh_store_error(w, "touch", rc);
}

/* wh_drop - remove a delivery that can never be sent (it would come back after every lease). */
static void wh_drop(struct webhook *w, struct store_whd *d)
{
	int rc = store_webhook_done(w->st, d->member);

	if (rc != STORE_OK)
		wh_store_error(w, "done", rc);
	store_whd_free(d);
}

/*
 * wh_claim_ep - start due deliveries of one endpoint into up to max slots.
 * Returns how many were claimed, or -1 on a store error.
 */
static int wh_claim_ep(struct webhook *w, struct wh_ep *ep, int max)
{
	struct store_whd *ds[WH_EP_CONN_MAX];
	int64_t lease = (int64_t)(w->timeout * 1000.0) + 5000;
	int64_t nd;
	int n, i;

	if (max > WH_EP_CONN_MAX)
		max = WH_EP_CONN_MAX;
	n = store_webhook_claim(w->st, ep->id, util_now_ms(), lease, max, ds);
	if (n < 0) {
		wh_store_error(w, "claim", n);
		return -1;
	}
	wh_redis_back(w);
	for (i = 0; i < n; i++) {
		struct store_whd *d = ds[i];

		if (!d->member) {
			store_whd_free(d);
			continue;
		}
		if (wh_known(w->inflight, d->member) || wh_known(w->finished, d->member)) {
			store_whd_free(d);   /* already ours: the claim only renewed the lease */
			continue;
		}
		if (!d->body || !d->event_id || !d->endpoint || !wh_valid_id(d->event_id)) {
			log_warn("webhook delivery malformed, dropping", "member=%.80s", d->member);
			wh_drop(w, d);
			continue;
		}
		if (!ep->url[0] || strcmp(d->endpoint, ep->id) != 0) {
			log_warn("webhook endpoint not configured, dropping delivery",
			    "event_id=%s endpoint=%.64s", d->event_id, d->endpoint);
			wh_drop(w, d);
			continue;
		}
		ep->busy++;
		wh_start_req(w, ep, d, NULL);
	}
	if (n < max) {
		/* drained for now: learn when the next one is due */
		nd = store_webhook_next_due(w->st, ep->id);
		if (nd < 0) {
			wh_store_error(w, "next_due", (int)nd);
			ep->next_due = util_now_ms() + WH_IDLE_BLOCK_MS;
		} else {
			ep->next_due = nd == 0 ? INT64_MAX : nd;
		}
	}
	return n;
}

/*
 * wh_start_waiting - start the direct deliveries waiting for a slot, oldest
 * first, each endpoint up to its cap (less a quarter while its queue has
 * due work, so retries are not starved). One whose endpoint is gone is
 * dropped; one whose endpoint is behind (wh_behind) goes to its queue
 * instead (it then waits with the backoff there, and holds no outbox entry).
 */
static void wh_start_waiting(struct webhook *w)
{
	struct wh_req **pp = &w->wait_head, *prev = NULL;
	int64_t now = util_now_ms();

	wh_note_oldest(w);
	while (*pp && w->ninflight + w->nfinished < w->max_inflight) {
		struct wh_req *r = *pp;
		struct wh_ep *ep = wh_ep_of(w, r);
		struct wh_evt *ev = r->evt;
		struct store_whd *d = r->d;
		int room;

		if (ep && ep->url[0] && !wh_behind(w, ep)) {
			room = w->ep_cap - ep->busy;
			if (ep->next_due <= now)
				room -= w->ep_cap / 4;
			if (room <= 0) {
				prev = r;
				pp = &r->next;
				continue;
			}
		}
		/* off the list */
		*pp = r->next;
		if (w->wait_tail == r)
			w->wait_tail = prev;
		w->nwait--;
		r->d = NULL;
		r->evt = NULL;
		wh_req_free(w, r);
		if (ep && ep->nwait > 0)
			ep->nwait--;
		if (!ep) {
			metrics_webhook_attempt(METRICS_WEBHOOK_DROPPED);
			log_info("webhook endpoint deleted, dropping delivery", "event_id=%s endpoint=%s attempt=0",
			    d->event_id, d->endpoint);
			store_whd_free(d);
		} else if (!ep->url[0] || wh_behind(w, ep)) {
			if (wh_park_add(w, d, ev->project, now) != 0)
				ev->noack = 1;
		} else {
			ep->busy++;
			wh_start_req(w, ep, d, ev);
			continue;   /* the reference moved to the request */
		}
		wh_evt_unref(w, ev);
	}
}

/*
 * wh_claim - start the direct deliveries waiting, then fill free slots from
 * the queues, round-robin over the endpoints, each capped at ep_cap so a
 * slow or dead endpoint holds only its own slots. Returns the earliest wall
 * ms at which more work may be claimable (0: now, INT64_MAX: nothing known).
 */
static int64_t wh_claim(struct webhook *w)
{
	int64_t now = util_now_ms(), soonest = INT64_MAX;
	size_t j;

	if (w->neps == 0)
		return INT64_MAX;
	wh_start_waiting(w);
	for (j = 0; j < w->neps; j++) {
		struct wh_ep *ep = &w->eps[(w->rr + j) % w->neps];
		int global = w->max_inflight - w->ninflight - w->nfinished;
		int max = w->ep_cap - ep->busy;

		if (!wh_redis_ok(w))
			break;
		if (!ep->enabled)
			continue;   /* disabled: its queue is kept, not claimed */
		if (ep->next_due > now) {
			if (ep->next_due < soonest)
				soonest = ep->next_due;
			continue;
		}
		if (max <= 0 || global <= 0)
			continue;   /* at its cap (or all are busy): a completion frees a slot */
		if (max > global)
			max = global;
		if (wh_claim_ep(w, ep, max) < 0)
			break;
		if (ep->next_due <= now && ep->busy < w->ep_cap)
			soonest = 0;
		else if (ep->next_due < soonest)
			soonest = ep->next_due;
	}
	w->rr = (w->rr + 1) % w->neps;
	return soonest;
}

/*
 * wh_drive - let curl run for up to timeout_ms and collect completions;
 * once stopping, only when finishing is set (the last requests in flight).
 */
static void wh_drive(struct webhook *w, int timeout_ms, int finishing)
{
	int running = 0, left = 0;
	CURLMsg *msg;

	curl_multi_perform(w->multi, &running);
	if (!finishing && atomic_load(&w->stop))
		return;
	if (timeout_ms > 0)
		curl_multi_poll(w->multi, NULL, 0, timeout_ms, NULL);
	curl_multi_perform(w->multi, &running);
	while ((msg = curl_multi_info_read(w->multi, &left)) != NULL) {
		struct wh_req *r = NULL;

		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&r);
		if (r)
			wh_complete(w, r, msg->data.result);
	}
}

static void *wh_thread(void *arg)
{
	struct webhook *w = arg;
	int64_t cmd_ms = w->redis.timeout_ms > 0 ? w->redis.timeout_ms : 5000;
	/*
	 * a round: a few Redis commands (refresh, flush, claim, a blocking read
	 * of WH_IDLE_BLOCK_MS), then curl's poll (poll_ms); each command within
	 * the timeout
	 */
	struct health_loop *hl = health_register("webhooks",
	    (w->poll_ms > WH_IDLE_BLOCK_MS ? w->poll_ms : WH_IDLE_BLOCK_MS) + 2 * cmd_ms);

	while (!atomic_load(&w->stop)) {
		int block = 0, poll_ms, fresh = 0;

		health_beat(hl);
		/* the read below sees every event notified until now */
		atomic_store(&w->notified, 0);

		if (wh_redis_ok(w) && util_mono_ms() >= w->eps_refresh_at) {
			if (wh_refresh_eps(w) == 0) {
				size_t k;

				/* another dispatcher may have queued work: look again */
				for (k = 0; k < w->neps; k++)
					w->eps[k].next_due = 0;
				wh_prune_disabled(w);
			}
		}
		if (wh_redis_ok(w)) {
			int64_t soonest = INT64_MAX;

			if (wh_flush(w) == 0 && wh_redis_ok(w))
				soonest = wh_claim(w);
			if (wh_redis_ok(w) && w->held)
				wh_touch_held(w);
			if (wh_redis_ok(w)) {
				if (w->ninflight == 0 && w->nfinished == 0 && w->nwait == 0) {
					int64_t now = util_now_ms();

					if (soonest == INT64_MAX || soonest - now >= WH_IDLE_BLOCK_MS)
						block = WH_IDLE_BLOCK_MS;
					else if (soonest > now + 10)
						block = (int)(soonest - now);
					else
						block = 10;   /* due now but not claimed: never spin */
				}
				/* enough waiting in memory: leave the rest in the outbox (a
				 * backlog there costs nothing; parking it would) */
				if (wh_redis_ok(w) && w->nwait < 4 * w->max_inflight &&
				    wh_read_events(w, block) > 0)
					fresh = 1;   /* routed, started next round: go round at once */
			}
		}
		if (atomic_load(&w->stop))
			break;
		if (!wh_redis_ok(w))
			poll_ms = (int)(w->redis_retry_at - util_mono_ms());
		else if (w->ninflight > 0 && !fresh)
			poll_ms = w->poll_ms;
		else
			poll_ms = 0;
		if (poll_ms > WH_REDIS_BACKOFF_MS && !wh_redis_ok(w))
			poll_ms = WH_REDIS_BACKOFF_MS;
		if (w->ninflight > 0 || poll_ms > 0) {
			/*
			 * webhook_notify sets notified, then wakes the poll if in_poll
			 * is set; here in_poll is set before notified is looked at, so
			 * an event recorded now either skips the poll or ends it.
			 */
			atomic_store(&w->in_poll, 1);
			if (atomic_exchange(&w->notified, 0) && wh_redis_ok(w))
				poll_ms = 0;
			wh_drive(w, poll_ms, 0);
			atomic_store(&w->in_poll, 0);
		}
	}
	health_unregister(hl);
	/* stopping: claim nothing new, let the requests in flight finish until the deadline */
	{
		int before = w->ninflight;

		while (w->ninflight > 0) {
			int64_t left = w->stop_deadline - util_mono_ms();

			if (left <= 0)
				break;
			wh_drive(w, left < WH_POLL_MS ? (int)left : WH_POLL_MS, 1);
		}
		w->stats.finished = (size_t)(before - w->ninflight);
		w->stats.abandoned = (size_t)w->ninflight;
	}
	/* record what we know if Redis is up; unfinished requests come back after their lease */
	if (w->finished && wh_redis_ok(w))
		wh_flush(w);
	return NULL;
}

static void wh_free(struct webhook *w)
{
	if (!w)
		return;
	while (w->inflight) {
		struct wh_req *r = w->inflight;

		w->inflight = r->next;
		wh_req_free(w, r);
	}
	while (w->finished) {
		struct wh_req *r = w->finished;

		w->finished = r->next;
		wh_req_free(w, r);
	}
	while (w->wait_head) {
		struct wh_req *r = w->wait_head;

		w->wait_head = r->next;
		wh_req_free(w, r);
	}
	/* events held but not acked come back to a dispatcher after the visibility timeout */
	while (w->held) {
		struct wh_evt *ev = w->held;

		w->held = ev->next;
		free(ev);
	}
	while (w->npark > 0)
		store_whd_free(w->park[--w->npark].d);
	wh_logs_clear(w);
	free(w->logs);
	free(w->park);
	free(w->acks);
	wh_easy_free_all(w);
	if (w->multi)
		curl_multi_cleanup(w->multi);
	store_close(w->st);
	wh_eps_free(w->eps, w->neps);
	free(w->ca_file);
	if (w->proxy)
		OPENSSL_cleanse(w->proxy, strlen(w->proxy));   /* may hold credentials */
	free(w->proxy);
	free(w->default_projects);
	free(w);
}

struct webhook *webhook_start(const struct config *cfg, char *err, size_t errlen)
{
	struct webhook *w = NULL;
	char host[64] = "";
	char probe[64];
	int rc;

	pthread_once(&wh_curl_once, wh_curl_init);
	if (wh_curl_rc != CURLE_OK) {
		snprintf(err, errlen, "webhook: curl_global_init: %s", curl_easy_strerror(wh_curl_rc));
		return NULL;
	}
	if (cfg->webhook_proxy[0] && !cfg->webhook_allow_private) {
		/* config.c refuses it too: the guard cannot judge what a proxy connects to */
		snprintf(err, errlen, "webhook: TXMAIL_WEBHOOK_PROXY needs TXMAIL_WEBHOOK_ALLOW_PRIVATE=1");
		return NULL;
	}
	if (cfg->webhook_url[0] && cfg->webhook_secret[0] &&
	    webhook_sign(cfg->webhook_secret, "msg_probe", 0, "", 0, probe, sizeof(probe)) < 0) {
		snprintf(err, errlen, "webhook: TXMAIL_WEBHOOK_SECRET is not a valid whsec_<base64> secret");
		return NULL;
	}
	w = calloc(1, sizeof(*w));
	if (!w) {
		snprintf(err, errlen, "webhook: out of memory");
		return NULL;
	}
	w->redis = cfg->redis;
	w->ca_file = strdup(cfg->tls_ca_file);
	w->proxy = strdup(cfg->webhook_proxy);
	w->default_projects = strdup(cfg->webhook_projects[0] ? cfg->webhook_projects :
	    STORE_PROJECT_DEFAULT);
	w->eps = calloc(1, sizeof(*w->eps));
	if (!w->ca_file || !w->proxy || !w->default_projects || !w->eps ||
	    wh_ep_set(&w->eps[0], WH_DEFAULT_EP, cfg->webhook_url, cfg->webhook_secret, NULL, 0) != 0) {
		snprintf(err, errlen, "webhook: out of memory");
		goto fail;
	}
	if (w->eps[0].secret[0] && !(w->eps[0].mac = wh_mac_new(w->eps[0].secret))) {
		snprintf(err, errlen, "webhook: cannot set up the signing key");
		goto fail;
	}
	w->neps = 1;
	w->retry_base = cfg->webhook_retry_base;
	w->retry_max = cfg->webhook_retry_max;
	w->max_age = cfg->webhook_max_age;
	w->disable_after = cfg->webhook_disable_after;
	w->timeout = cfg->webhook_timeout > 0 ? cfg->webhook_timeout : 10;
	w->ep_cap = cfg->webhook_connections > 0 ? cfg->webhook_connections : 128;
	if (w->ep_cap > WH_EP_CONN_MAX)
		w->ep_cap = WH_EP_CONN_MAX;
	w->max_inflight = 4 * w->ep_cap;
	if (w->max_inflight < WH_MAX_INFLIGHT_MIN)
		w->max_inflight = WH_MAX_INFLIGHT_MIN;
	if (w->max_inflight > WH_MAX_INFLIGHT_MAX)
		w->max_inflight = WH_MAX_INFLIGHT_MAX;
	w->read_own = 1;
	w->allow_private = cfg->webhook_allow_private;
	w->visibility_ms = (int64_t)(cfg->visibility_timeout * 1000);
	if (gethostname(host, sizeof(host)) < 0 || !host[0])
		util_strlcpy(host, "localhost", sizeof(host));
	host[sizeof(host) - 1] = '\0';
	snprintf(w->consumer, sizeof(w->consumer), "wh-%s-%ld", host, (long)getpid());
	w->st = store_open(&w->redis);
	if (!w->st) {
		snprintf(err, errlen, "webhook: out of memory");
		goto fail;
	}
	w->multi = curl_multi_init();
	if (!w->multi) {
		snprintf(err, errlen, "webhook: curl_multi_init failed");
		goto fail;
	}
	curl_multi_setopt(w->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)w->max_inflight);
	/* keep every connection open between requests (keep-alive): the cache would otherwise be
	 * 4 x the handles added, which drops connections when the load dips */
	curl_multi_setopt(w->multi, CURLMOPT_MAXCONNECTS, (long)w->max_inflight);
	atomic_init(&w->stop, 0);
	atomic_init(&w->notified, 0);
	atomic_init(&w->in_poll, 0);
	w->poll_ms = cfg->test_webhook_poll > 0 ? (int)(cfg->test_webhook_poll * 1000.0) : WH_POLL_MS;
	if (w->poll_ms < 1)
		w->poll_ms = 1;
	wh_refresh_eps(w);   /* a failure is retried before the first fan-out */
	rc = pthread_create(&w->thr, NULL, wh_thread, w);
	if (rc != 0) {
		snprintf(err, errlen, "webhook: cannot start thread: %s", strerror(rc));
		goto fail;
	}
	pthread_mutex_lock(&wh_live_mu);
	w->next_live = wh_live;
	wh_live = w;
	pthread_mutex_unlock(&wh_live_mu);
	log_info("webhook dispatcher started", "consumer=%s default_endpoint=%s signed=%s endpoints=%zu",
	    w->consumer, w->eps[0].url[0] ? "yes" : "no", w->eps[0].secret[0] ? "yes" : "no",
	    w->neps - 1);
	return w;
fail:
	wh_free(w);
	return NULL;
}

void webhook_stop(struct webhook *w, int64_t deadline_ms, struct webhook_stop_stats *stats)
{
	if (!w)
		return;
	pthread_mutex_lock(&wh_live_mu);
	for (struct webhook **pp = &wh_live; *pp != NULL; pp = &(*pp)->next_live) {
		if (*pp == w) {
			*pp = w->next_live;
			break;
		}
	}
	pthread_mutex_unlock(&wh_live_mu);
	w->stop_deadline = deadline_ms;
	atomic_store(&w->stop, 1);
	curl_multi_wakeup(w->multi);
	pthread_join(w->thr, NULL);
	if (w->stats.finished > 0 || w->stats.abandoned > 0)
		log_info("webhook dispatcher stopped", "finished=%zu abandoned=%zu",
		    w->stats.finished, w->stats.abandoned);
	if (stats)
		*stats = w->stats;
	wh_free(w);
}

void webhook_notify(void)
{
	pthread_mutex_lock(&wh_live_mu);
	for (struct webhook *w = wh_live; w != NULL; w = w->next_live) {
		atomic_store(&w->notified, 1);
		if (atomic_load(&w->in_poll))
			curl_multi_wakeup(w->multi);   /* latched: a poll about to begin returns at once */
	}
	pthread_mutex_unlock(&wh_live_mu);
}
