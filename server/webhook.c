/*
 * webhook.c - the webhook dispatcher: the only file that speaks libcurl.
 *
 * One thread with its own struct store reads the events outbox, fans each
 * event out to the endpoints (for now only "default", from
 * TXMAIL_WEBHOOK_URL), claims due deliveries with a lease and POSTs them
 * concurrently through one curl multi handle, signed per Standard Webhooks
 * (webhook_sign). Outcomes go back to the store: 2xx is done, anything
 * else is retried with webhook_backoff_ms until webhook_max_age, then
 * given up (logged). While Redis is unreachable, requests in flight keep
 * going and their outcomes wait in memory until Redis is back; the lease
 * brings a delivery back if this process dies first (at-least-once).
 *
 * It must never log a webhook secret or a request body, never follow
 * redirects, never turn TLS verification off, and never block longer than
 * ~200 ms without checking the stop flag.
 */
#include "webhook.h"

#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "store.h"
#include "util.h"

#ifndef TXMAIL_VERSION
#define TXMAIL_VERSION "0.1.0"
#endif

#define WH_MAX_INFLIGHT 64
#define WH_READ_MAX 100
#define WH_IDLE_BLOCK_MS 100       /* XREADGROUP block when idle */
#define WH_POLL_MS 50              /* curl poll while requests are in flight */
#define WH_REDIS_BACKOFF_MS 500
#define WH_SECRET_MAX 1024         /* base64 chars after whsec_ */
#define WH_EVENT_ID_MAX 64
#define WH_DEFAULT_EP "default"

/* ---- signing ------------------------------------------------------------------ */

/* wh_b64_decode - standard base64 (padding optional) into out; length or -1. */
static int wh_b64_decode(const char *in, size_t inlen, unsigned char *out, size_t outcap)
{
	char padded[WH_SECRET_MAX + 4];
	unsigned char tmp[(WH_SECRET_MAX + 4) / 4 * 3];
	size_t plen, pad = 0, i;
	int n;

	if (inlen == 0 || inlen > WH_SECRET_MAX)
		return -1;
	for (i = 0; i < inlen; i++) {
		char ch = in[i];

		if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
		    (ch >= '0' && ch <= '9') || ch == '+' || ch == '/' ||
		    (ch == '=' && i >= inlen - 2)))
			return -1;
	}
	memcpy(padded, in, inlen);
	plen = inlen;
	while (plen % 4 != 0)
		padded[plen++] = '=';
	for (i = plen; i > 0 && padded[i - 1] == '='; i--)
		pad++;
	if (pad > 2)
		return -1;
	n = EVP_DecodeBlock(tmp, (const unsigned char *)padded, (int)plen);
	if (n < 0 || (size_t)n < pad)
		return -1;
	n -= (int)pad;
	if ((size_t)n > outcap)
		return -1;
	memcpy(out, tmp, (size_t)n);
	return n;
}

int webhook_sign(const char *secret, const char *msg_id, int64_t ts,
    const char *body, size_t body_len, char *out, size_t outlen)
{
	unsigned char key[WH_SECRET_MAX], mac[EVP_MAX_MD_SIZE];
	char tsbuf[32], params_digest[] = "SHA256";
	const unsigned char *k;
	size_t klen, maclen = 0;
	EVP_MAC *m = NULL;
	EVP_MAC_CTX *ctx = NULL;
	OSSL_PARAM params[2];
	int rc = -1, n;

	if (!secret || !msg_id || (!body && body_len > 0) || !out)
		return -1;
	if (strncmp(secret, "whsec_", 6) == 0) {
		n = wh_b64_decode(secret + 6, strlen(secret + 6), key, sizeof(key));
		if (n <= 0)
			return -1;
		k = key;
		klen = (size_t)n;
	} else {
		k = (const unsigned char *)secret;
		klen = strlen(secret);
		if (klen == 0 || klen > WH_SECRET_MAX)
			return -1;
	}
	n = snprintf(tsbuf, sizeof(tsbuf), "%" PRId64, ts);
	if (n < 0 || (size_t)n >= sizeof(tsbuf))
		goto out;
	/* "v1," + base64 of 32 bytes (44) + NUL */
	if (outlen < 3 + 44 + 1)
		goto out;
	m = EVP_MAC_fetch(NULL, "HMAC", NULL);
	if (!m)
		goto out;
	ctx = EVP_MAC_CTX_new(m);
	if (!ctx)
		goto out;
	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, params_digest, 0);
	params[1] = OSSL_PARAM_construct_end();
	if (!EVP_MAC_init(ctx, k, klen, params) ||
	    !EVP_MAC_update(ctx, (const unsigned char *)msg_id, strlen(msg_id)) ||
	    !EVP_MAC_update(ctx, (const unsigned char *)".", 1) ||
	    !EVP_MAC_update(ctx, (const unsigned char *)tsbuf, (size_t)n) ||
	    !EVP_MAC_update(ctx, (const unsigned char *)".", 1) ||
	    (body_len > 0 && !EVP_MAC_update(ctx, (const unsigned char *)body, body_len)) ||
	    !EVP_MAC_final(ctx, mac, &maclen, sizeof(mac)) || maclen != 32)
		goto out;
	memcpy(out, "v1,", 3);
	n = EVP_EncodeBlock((unsigned char *)out + 3, mac, (int)maclen);
	if (n != 44)
		goto out;
	out[3 + n] = '\0';
	rc = 0;
out:
	EVP_MAC_CTX_free(ctx);
	EVP_MAC_free(m);
	OPENSSL_cleanse(key, sizeof(key));
	if (rc < 0 && out && outlen > 0)
		out[0] = '\0';
	return rc;
}

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

/* ---- event parsing ------------------------------------------------------------ */

/*
 * wh_event_id - the top-level "id" string of an event JSON object, copied
 * into out when it is [A-Za-z0-9_-]{1,63}. 0 or -1. Only scans: strings and
 * nesting are skipped, escapes in the id are refused.
 */
static int wh_event_id(const char *json, char *out, size_t outlen)
{
	const char *p = json;
	int depth = 0;

	if (!json)
		return -1;
	while (*p) {
		if (*p == '{' || *p == '[') {
			depth++;
			p++;
		} else if (*p == '}' || *p == ']') {
			depth--;
			p++;
		} else if (*p == '"') {
			const char *s = ++p;
			size_t len;

			while (*p && *p != '"') {
				if (*p == '\\' && p[1])
					p++;
				p++;
			}
			if (!*p)
				return -1;
			len = (size_t)(p - s);
			p++;
			if (depth != 1 || len != 2 || memcmp(s, "id", 2) != 0)
				continue;
			while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
				p++;
			if (*p != ':')
				continue;   /* "id" was a value, not a key */
			p++;
			while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
				p++;
			if (*p != '"')
				return -1;
			s = ++p;
			while ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
			    (*p >= '0' && *p <= '9') || *p == '_' || *p == '-')
				p++;
			len = (size_t)(p - s);
			if (*p != '"' || len == 0 || len >= outlen || len >= WH_EVENT_ID_MAX)
				return -1;
			memcpy(out, s, len);
			out[len] = '\0';
			return 0;
		} else {
			p++;
		}
	}
	return -1;
}

/* ---- the dispatcher --------------------------------------------------------- */

enum wh_outcome { WH_PENDING = 0, WH_DONE, WH_RETRY };

struct wh_req {
	struct store_whd *d;
	CURL *easy;
	struct curl_slist *hdrs;
	char errbuf[CURL_ERROR_SIZE];
	enum wh_outcome outcome;
	int attempts;          /* attempts made, including this one */
	int64_t next_ms;       /* WH_RETRY: when */
	struct wh_req *next;
};

struct webhook {
	/* copied from the config: the thread never touches cfg */
	struct redis_addr redis;
	char *url;             /* "" when no default endpoint */
	char *secret;          /* "" when unsigned */
	char *ca_file;         /* "" when the system store only */
	double retry_base, retry_max, max_age, timeout;
	int64_t visibility_ms;     /* a dead dispatcher's events are taken over after this */
	char consumer[128];

	struct store *st;
	CURLM *multi;
	pthread_t thr;
	atomic_int stop;

	struct wh_req *inflight;   /* requests curl is running */
	int ninflight;
	struct wh_req *finished;   /* outcomes not yet recorded in the store */
	int nfinished;
	int64_t redis_retry_at;    /* monotonic ms; 0 = Redis believed up */
};

static pthread_once_t wh_curl_once = PTHREAD_ONCE_INIT;
static CURLcode wh_curl_rc = CURLE_OK;

static void wh_curl_init(void)
{
	wh_curl_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static size_t wh_discard(char *ptr, size_t size, size_t nmemb, void *ud)
{
	(void)ptr;
	(void)ud;
	return size * nmemb;
}

static void wh_req_free(struct webhook *w, struct wh_req *r)
{
	if (!r)
		return;
	if (r->easy) {
		if (w && w->multi)
			curl_multi_remove_handle(w->multi, r->easy);
		curl_easy_cleanup(r->easy);
	}
	curl_slist_free_all(r->hdrs);
	store_whd_free(r->d);
	free(r);
}

/* wh_store_error - note a store failure; returns 1 when Redis is unavailable. */
static int wh_store_error(struct webhook *w, const char *what, int rc)
{
	if (rc == STORE_ERR_UNAVAILABLE) {
		if (w->redis_retry_at == 0)
			log_warn("msg=\"webhook dispatcher: redis unavailable, backing off\" op=%s", what);
		w->redis_retry_at = util_mono_ms() + WH_REDIS_BACKOFF_MS;
		return 1;
	}
	log_warn("msg=\"webhook dispatcher: store error\" op=%s rc=%d", what, rc);
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
	if (w->redis_retry_at != 0) {
		log_info("msg=\"webhook dispatcher: redis available again\"");
		w->redis_retry_at = 0;
	}
}

/* wh_flush - record finished outcomes; 0, or -1 when Redis went away (the rest stay queued). */
static int wh_flush(struct webhook *w)
{
	while (w->finished) {
		struct wh_req *r = w->finished;
		int rc;

		if (r->outcome == WH_DONE)
			rc = store_webhook_done(w->st, r->d->member);
		else
			rc = store_webhook_retry(w->st, r->d->member, r->attempts, r->next_ms);
		if (rc != STORE_OK && wh_store_error(w, r->outcome == WH_DONE ? "done" : "retry", rc))
			return -1;
		wh_redis_back(w);
		w->finished = r->next;
		w->nfinished--;
		wh_req_free(w, r);
	}
	return 0;
}

static int wh_known(const struct wh_req *list, const char *member)
{
	for (; list; list = list->next)
		if (strcmp(list->d->member, member) == 0)
			return 1;
	return 0;
}

/* wh_start_req - POST one delivery; takes d. 0, or -1 (d freed, outcome queued as retry). */
static int wh_start_req(struct webhook *w, struct store_whd *d)
{
	struct wh_req *r = calloc(1, sizeof(*r));
	char hdr[256], sig[64];
	int64_t now_s = util_now_ms() / 1000;
	long timeout_ms = (long)(w->timeout * 1000.0);
	struct curl_slist *nh;
	const char *const fixed[] = {
		"Content-Type: application/json",
		"User-Agent: txmail/" TXMAIL_VERSION,
		"Expect:",
	};
	size_t i;

	if (!r) {
		store_whd_free(d);
		return -1;
	}
	r->d = d;
	r->attempts = d->attempts + 1;
	for (i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++) {
		nh = curl_slist_append(r->hdrs, fixed[i]);
		if (!nh)
			goto fail;
		r->hdrs = nh;
	}
	snprintf(hdr, sizeof(hdr), "webhook-id: %s", d->event_id);
	if (!(nh = curl_slist_append(r->hdrs, hdr)))
		goto fail;
	r->hdrs = nh;
	snprintf(hdr, sizeof(hdr), "webhook-timestamp: %" PRId64, now_s);
	if (!(nh = curl_slist_append(r->hdrs, hdr)))
		goto fail;
	r->hdrs = nh;
	if (w->secret[0]) {
		if (webhook_sign(w->secret, d->event_id, now_s, d->body, strlen(d->body),
		    sig, sizeof(sig)) < 0)
			goto fail;
		snprintf(hdr, sizeof(hdr), "webhook-signature: %s", sig);
		if (!(nh = curl_slist_append(r->hdrs, hdr)))
			goto fail;
		r->hdrs = nh;
	}
	r->easy = curl_easy_init();
	if (!r->easy)
		goto fail;
	if (timeout_ms <= 0)
		timeout_ms = 10000;
	curl_easy_setopt(r->easy, CURLOPT_URL, w->url);
	curl_easy_setopt(r->easy, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(r->easy, CURLOPT_POSTFIELDS, d->body);
	curl_easy_setopt(r->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(d->body));
	curl_easy_setopt(r->easy, CURLOPT_HTTPHEADER, r->hdrs);
	curl_easy_setopt(r->easy, CURLOPT_TIMEOUT_MS, timeout_ms);
	curl_easy_setopt(r->easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(r->easy, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(r->easy, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(r->easy, CURLOPT_SSL_VERIFYHOST, 2L);
	if (w->ca_file[0]) {
		/* with the OpenSSL backend CAINFO and CAPATH are both used: keep the system directory */
		const curl_version_info_data *vi = curl_version_info(CURLVERSION_NOW);

		curl_easy_setopt(r->easy, CURLOPT_CAINFO, w->ca_file);
		curl_easy_setopt(r->easy, CURLOPT_CAPATH,
		    vi && vi->capath ? vi->capath : "/etc/ssl/certs");
	}
	curl_easy_setopt(r->easy, CURLOPT_WRITEFUNCTION, wh_discard);
	curl_easy_setopt(r->easy, CURLOPT_ERRORBUFFER, r->errbuf);
	curl_easy_setopt(r->easy, CURLOPT_PRIVATE, r);
	if (curl_multi_add_handle(w->multi, r->easy) != CURLM_OK)
		goto fail;
	r->next = w->inflight;
	w->inflight = r;
	w->ninflight++;
	return 0;
fail:
	log_warn("msg=\"webhook request setup failed\" event_id=%s endpoint=%s", d->event_id,
	    d->endpoint);
	curl_easy_cleanup(r->easy);
	r->easy = NULL;
	curl_slist_free_all(r->hdrs);
	r->hdrs = NULL;
	/* count it as a failed attempt so it is retried later, not spun on */
	r->outcome = WH_RETRY;
	r->next_ms = util_now_ms() + webhook_backoff_ms(w->retry_base, w->retry_max, r->attempts);
	r->next = w->finished;
	w->finished = r;
	w->nfinished++;
	return -1;
}

/* wh_complete - decide the outcome of a finished request and queue it for the store. */
static void wh_complete(struct webhook *w, struct wh_req *r, CURLcode cc)
{
	struct wh_req **pp;
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
		err = r->errbuf[0] ? r->errbuf : curl_easy_strerror(cc);
	curl_multi_remove_handle(w->multi, r->easy);
	curl_easy_cleanup(r->easy);
	r->easy = NULL;
	curl_slist_free_all(r->hdrs);
	r->hdrs = NULL;

	if (cc == CURLE_OK && status >= 200 && status < 300) {
		r->outcome = WH_DONE;
		log_info("msg=\"webhook delivered\" event_id=%s endpoint=%s status=%ld attempt=%d",
		    r->d->event_id, r->d->endpoint, status, r->attempts);
	} else if ((double)(now - r->d->first_ms) > w->max_age * 1000.0) {
		r->outcome = WH_DONE;
		if (err)
			log_warn("msg=\"webhook given up\" event_id=%s endpoint=%s error=\"%s\" attempt=%d",
			    r->d->event_id, r->d->endpoint, err, r->attempts);
		else
			log_warn("msg=\"webhook given up\" event_id=%s endpoint=%s status=%ld attempt=%d",
			    r->d->event_id, r->d->endpoint, status, r->attempts);
	} else {
		int64_t delay = webhook_backoff_ms(w->retry_base, w->retry_max, r->attempts);

		r->outcome = WH_RETRY;
		r->next_ms = now + delay;
		if (err)
			log_info("msg=\"webhook failed, will retry\" event_id=%s endpoint=%s error=\"%s\" "
			    "attempt=%d retry_in_ms=%" PRId64, r->d->event_id, r->d->endpoint, err,
			    r->attempts, delay);
		else
			log_info("msg=\"webhook failed, will retry\" event_id=%s endpoint=%s status=%ld "
			    "attempt=%d retry_in_ms=%" PRId64, r->d->event_id, r->d->endpoint, status,
			    r->attempts, delay);
	}
	r->next = w->finished;
	w->finished = r;
	w->nfinished++;
}

/* wh_read_events - one batch from the outbox, fanned out; count handled, or -1 on Redis trouble. */
static int wh_read_events(struct webhook *w, int block_ms)
{
	struct store_event *evs[WH_READ_MAX];
	const char *const eps[] = { WH_DEFAULT_EP };
	size_t nep = w->url[0] ? 1 : 0;
	int n, i, rc = 0;

	n = store_read_events(w->st, w->consumer, WH_READ_MAX, block_ms,
	    w->visibility_ms, evs);
	if (n < 0) {
		wh_store_error(w, "read_events", n);
		return -1;
	}
	wh_redis_back(w);
	for (i = 0; i < n; i++) {
		char id[WH_EVENT_ID_MAX];
		int frc;

		if (rc < 0) {
			store_event_free(evs[i]);
			continue;   /* stays pending in the group: read again later */
		}
		if (wh_event_id(evs[i]->json, id, sizeof(id)) < 0) {
			log_warn("msg=\"webhook event without a usable id\" entry=%s", evs[i]->entry_id);
			snprintf(id, sizeof(id), "evt_%.40s", evs[i]->entry_id);
		}
		frc = store_webhook_fanout(w->st, evs[i], id, eps, nep, util_now_ms());
		if (frc != STORE_OK && wh_store_error(w, "fanout", frc))
			rc = -1;
		store_event_free(evs[i]);
	}
	return rc < 0 ? -1 : n;
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

/* wh_drop - remove a delivery that can never be sent (it would come back after every lease). */
static void wh_drop(struct webhook *w, struct store_whd *d)
{
	int rc = store_webhook_done(w->st, d->member);

	if (rc != STORE_OK)
		wh_store_error(w, "done", rc);
	store_whd_free(d);
}

/* wh_claim - start due deliveries into the free slots; 1 when the slots were filled. */
static int wh_claim(struct webhook *w)
{
	struct store_whd *ds[WH_MAX_INFLIGHT];
	int max = WH_MAX_INFLIGHT - w->ninflight - w->nfinished;
	int64_t lease = (int64_t)(w->timeout * 1000.0) + 5000;
	int n, i;

	if (max <= 0)
		return 1;
	n = store_webhook_claim(w->st, "default", util_now_ms(), lease, max, ds);
	if (n < 0) {
		wh_store_error(w, "claim", n);
		return 0;
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
			log_warn("msg=\"webhook delivery malformed, dropping\" member=%.80s", d->member);
			wh_drop(w, d);
			continue;
		}
		if (!w->url[0] || strcmp(d->endpoint, WH_DEFAULT_EP) != 0) {
			log_warn("msg=\"webhook endpoint not configured, dropping delivery\" "
			    "event_id=%s endpoint=%.64s", d->event_id, d->endpoint);
			wh_drop(w, d);
			continue;
		}
		wh_start_req(w, d);
	}
	return n == max;
}

/* wh_drive - let curl run for up to timeout_ms and collect completions. */
static void wh_drive(struct webhook *w, int timeout_ms)
{
	int running = 0, left = 0;
	CURLMsg *msg;

	curl_multi_perform(w->multi, &running);
	if (atomic_load(&w->stop))
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

	while (!atomic_load(&w->stop)) {
		int full = 0, block = 0, poll_ms;

		if (wh_redis_ok(w)) {
			if (wh_flush(w) == 0 && wh_redis_ok(w))
				full = wh_claim(w);
			if (wh_redis_ok(w)) {
				if (w->ninflight == 0 && w->nfinished == 0 && !full) {
					int64_t nd = store_webhook_next_due(w->st, "default");
					int64_t now = util_now_ms();

					if (nd < 0)
						wh_store_error(w, "next_due", (int)nd);
					else if (nd == 0 || nd - now >= WH_IDLE_BLOCK_MS)
						block = WH_IDLE_BLOCK_MS;
					else if (nd > now + 10)
						block = (int)(nd - now);
					else
						block = 10;   /* due now but not claimed: never spin */
				}
				if (wh_redis_ok(w) && wh_read_events(w, block) > 0)
					block = 0;   /* more may be waiting: go round at once */
			}
		}
		if (atomic_load(&w->stop))
			break;
		if (!wh_redis_ok(w))
			poll_ms = (int)(w->redis_retry_at - util_mono_ms());
		else if (w->ninflight > 0)
			poll_ms = WH_POLL_MS;
		else
			poll_ms = 0;
		if (poll_ms > WH_REDIS_BACKOFF_MS)
			poll_ms = WH_REDIS_BACKOFF_MS;
		if (w->ninflight > 0 || poll_ms > 0)
			wh_drive(w, poll_ms);
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
	if (w->multi)
		curl_multi_cleanup(w->multi);
	store_close(w->st);
	free(w->url);
	if (w->secret) {
		OPENSSL_cleanse(w->secret, strlen(w->secret));
		free(w->secret);
	}
	free(w->ca_file);
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
	w->url = strdup(cfg->webhook_url);
	w->secret = strdup(cfg->webhook_secret);
	w->ca_file = strdup(cfg->tls_ca_file);
	if (!w->url || !w->secret || !w->ca_file) {
		snprintf(err, errlen, "webhook: out of memory");
		goto fail;
	}
	w->retry_base = cfg->webhook_retry_base;
	w->retry_max = cfg->webhook_retry_max;
	w->max_age = cfg->webhook_max_age;
	w->timeout = cfg->webhook_timeout > 0 ? cfg->webhook_timeout : 10;
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
	curl_multi_setopt(w->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)WH_MAX_INFLIGHT);
	atomic_init(&w->stop, 0);
	rc = pthread_create(&w->thr, NULL, wh_thread, w);
	if (rc != 0) {
		snprintf(err, errlen, "webhook: cannot start thread: %s", strerror(rc));
		goto fail;
	}
	if (!w->url[0])
		log_info("msg=\"webhook dispatcher started without an endpoint: events are acknowledged and dropped\"");
	else
		log_info("msg=\"webhook dispatcher started\" consumer=%s signed=%s", w->consumer,
		    w->secret[0] ? "yes" : "no");
	return w;
fail:
	wh_free(w);
	return NULL;
}

void webhook_stop(struct webhook *w)
{
	if (!w)
		return;
	atomic_store(&w->stop, 1);
	curl_multi_wakeup(w->multi);
	pthread_join(w->thr, NULL);
	wh_free(w);
}
