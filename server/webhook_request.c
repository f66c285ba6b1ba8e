/*
 * webhook_request.c - what one webhook POST is made of: the Standard
 * Webhooks signature (HMAC-SHA256 keyed with the endpoint's secret,
 * webhook_sign, and the per-endpoint keyed context wh_mac_new/wh_mac_sign),
 * new secrets, the URL check (libcurl's own parser), and the curl easy
 * handle of a delivery (wh_start_req: the webhook-* headers, the body as
 * the store wrote it, TLS verification, the proxy setting and the address
 * guard after DNS resolution, wh_opensocket). Easy handles are set up once
 * (wh_easy_new) and kept in the dispatcher's free list between requests
 * (wh_easy_put): only the URL, body, headers and the request's own
 * pointers change per request.
 *
 * Part of the webhook module (webhook.c drives it through
 * webhook_internal.h): it owns no state but the free handles; a request it builds is
 * handed to the dispatcher's multi handle and lists (w->inflight, or
 * w->finished as a retry when setup fails). It must never log a secret or
 * a request body, never follow redirects, never turn TLS verification off,
 * never use a proxy other than TXMAIL_WEBHOOK_PROXY, and never touch the
 * store or block: sending and outcomes are webhook.c's.
 */
#include "webhook_internal.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <inttypes.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "log.h"
#include "netguard.h"
#include "store.h"
#include "util.h"

#ifndef TXMAIL_VERSION
#error "TXMAIL_VERSION is the VERSION file, passed by the Makefile as -DTXMAIL_VERSION"
#endif

#define WH_SECRET_MAX 1024         /* base64 chars after whsec_ */

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

/*
 * wh_mac_new - an HMAC-SHA256 context keyed with secret (whsec_<base64>:
 * the decoded bytes; else the string itself), ready for updates; each
 * signature re-initialises it (wh_mac_sign), so the key is decoded and
 * the MAC set up once per endpoint, not once per request. NULL on a bad
 * secret or out of memory.
 */
EVP_MAC_CTX *wh_mac_new(const char *secret)
{
	unsigned char key[WH_SECRET_MAX];
	char params_digest[] = "SHA256";
	const unsigned char *k;
	size_t klen;
	EVP_MAC *m = NULL;
	EVP_MAC_CTX *ctx = NULL;
	OSSL_PARAM params[2];
	int n;

	if (!secret)
		return NULL;
	if (strncmp(secret, "whsec_", 6) == 0) {
		n = wh_b64_decode(secret + 6, strlen(secret + 6), key, sizeof(key));
		if (n <= 0)
			return NULL;
		k = key;
		klen = (size_t)n;
	} else {
		k = (const unsigned char *)secret;
		klen = strlen(secret);
		if (klen == 0 || klen > WH_SECRET_MAX)
			return NULL;
	}
	m = EVP_MAC_fetch(NULL, "HMAC", NULL);
	if (m)
		ctx = EVP_MAC_CTX_new(m);
	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, params_digest, 0);
	params[1] = OSSL_PARAM_construct_end();
	if (ctx && !EVP_MAC_init(ctx, k, klen, params)) {
		EVP_MAC_CTX_free(ctx);
		ctx = NULL;
	}
	EVP_MAC_free(m);
	OPENSSL_cleanse(key, sizeof(key));
	return ctx;
}

/*
 * wh_mac_sign - webhook_sign with a context from wh_mac_new, which is
 * re-initialised with the key it holds (EVP_MAC_init with no key resets
 * the HMAC to its keyed start) and used in place: no copy of the three
 * digest contexts per signature. The context is the caller's alone while
 * this runs.
 */
int wh_mac_sign(EVP_MAC_CTX *keyed, const char *msg_id, int64_t ts,
    const char *body, size_t body_len, char *out, size_t outlen)
{
	unsigned char mac[EVP_MAX_MD_SIZE];
	char tsbuf[32];
	size_t maclen = 0;
	int rc = -1, n;

	if (!keyed || !msg_id || (!body && body_len > 0) || !out)
		return -1;
	n = snprintf(tsbuf, sizeof(tsbuf), "%" PRId64, ts);
	if (n < 0 || (size_t)n >= sizeof(tsbuf))
		goto out;
	/* "v1," + base64 of 32 bytes (44) + NUL */
	if (outlen < 3 + 44 + 1)
		goto out;
	if (!EVP_MAC_init(keyed, NULL, 0, NULL) ||
	    !EVP_MAC_update(keyed, (const unsigned char *)msg_id, strlen(msg_id)) ||
	    !EVP_MAC_update(keyed, (const unsigned char *)".", 1) ||
	    !EVP_MAC_update(keyed, (const unsigned char *)tsbuf, (size_t)n) ||
	    !EVP_MAC_update(keyed, (const unsigned char *)".", 1) ||
	    (body_len > 0 && !EVP_MAC_update(keyed, (const unsigned char *)body, body_len)) ||
	    !EVP_MAC_final(keyed, mac, &maclen, sizeof(mac)) || maclen != 32)
		goto out;
	memcpy(out, "v1,", 3);
	n = EVP_EncodeBlock((unsigned char *)out + 3, mac, (int)maclen);
	if (n != 44)
		goto out;
	out[3 + n] = '\0';
	rc = 0;
out:
	OPENSSL_cleanse(mac, sizeof(mac));
	if (rc < 0 && out && outlen > 0)
		out[0] = '\0';
	return rc;
}

int webhook_sign(const char *secret, const char *msg_id, int64_t ts,
    const char *body, size_t body_len, char *out, size_t outlen)
{
	EVP_MAC_CTX *ctx;
	int rc;

	if (!secret || !msg_id || (!body && body_len > 0) || !out)
		return -1;
	ctx = wh_mac_new(secret);
	rc = ctx ? wh_mac_sign(ctx, msg_id, ts, body, body_len, out, outlen) : -1;
	EVP_MAC_CTX_free(ctx);
	if (rc < 0 && outlen > 0)
		out[0] = '\0';
	return rc;
}

/* ---- the request: its URL, secret, headers and curl handle ------------------ */

int webhook_url_check(const char *url, char *why, size_t whylen)
{
	const char *host, *p;
	size_t n, hostlen;
	CURLU *u = NULL;
	char *scheme = NULL, *chost = NULL;
	int rc = -1;

	if (!url || !*url) {
		snprintf(why, whylen, "url must not be empty");
		return -1;
	}
	n = strlen(url);
	if (n > WEBHOOK_URL_MAX) {
		snprintf(why, whylen, "url is longer than %d bytes", WEBHOOK_URL_MAX);
		return -1;
	}
	for (p = url; *p; p++) {
		if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f) {
			snprintf(why, whylen, "url must be printable ASCII without spaces "
			    "(percent-encode the rest)");
			return -1;
		}
	}
	if (strncasecmp(url, "http://", 7) == 0)
		host = url + 7;
	else if (strncasecmp(url, "https://", 8) == 0)
		host = url + 8;
	else {
		snprintf(why, whylen, "url must start with http:// or https://");
		return -1;
	}
	hostlen = strcspn(host, "/?#");
	if (hostlen == 0 || memchr(host, '@', hostlen) != NULL) {
		snprintf(why, whylen, hostlen == 0 ? "url has no host" :
		    "url must not carry credentials (use the signature to authenticate)");
		return -1;
	}
	/* the same parser that will send the request must accept it */
	u = curl_url();
	if (!u) {
		snprintf(why, whylen, "out of memory");
		return -1;
	}
	if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_HOST, &chost, 0) != CURLUE_OK || !chost[0] ||
	    (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0)) {
		snprintf(why, whylen, "url is not a valid http(s) URL");
		goto out;
	}
	rc = 0;
out:
	curl_free(scheme);
	curl_free(chost);
	curl_url_cleanup(u);
	return rc;
}

int webhook_new_secret(char *out, size_t outlen)
{
	unsigned char raw[24];
	int n;

	if (!out || outlen < WEBHOOK_SECRET_LEN + 1)
		return -1;
	if (util_random_bytes(raw, sizeof(raw)) != 0)
		return -1;
	memcpy(out, "whsec_", 6);
	n = EVP_EncodeBlock((unsigned char *)out + 6, raw, (int)sizeof(raw));
	OPENSSL_cleanse(raw, sizeof(raw));
	if (n != 32) {
		out[0] = '\0';
		return -1;
	}
	out[6 + n] = '\0';
	return 0;
}

static size_t wh_discard(char *ptr, size_t size, size_t nmemb, void *ud)
{
	(void)ptr;
	(void)ud;
	return size * nmemb;
}

/*
 * wh_opensocket - curl's socket opener: the address guard after DNS
 * resolution, for every address curl tries (so DNS rebinding cannot reach a
 * refused address). A refusal fails the attempt like a connection error.
 */
static curl_socket_t wh_opensocket(void *clientp, curlsocktype purpose, struct curl_sockaddr *a)
{
	struct wh_req *r = clientp;
	const char *cls;
	char ip[INET6_ADDRSTRLEN] = "?";
	unsigned port = 0;

	(void)purpose;
	if (netguard_addr_allowed(&a->addr, r->allow_private))
		return socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
	cls = netguard_addr_class(&a->addr);
	if (a->family == AF_INET) {
		struct sockaddr_in in;

		memcpy(&in, &a->addr, sizeof(in));
		inet_ntop(AF_INET, &in.sin_addr, ip, sizeof(ip));
		port = ntohs(in.sin_port);
	} else if (a->family == AF_INET6) {
		struct sockaddr_in6 in6;

		memcpy(&in6, &a->addr, sizeof(in6));
		inet_ntop(AF_INET6, &in6.sin6_addr, ip, sizeof(ip));
		port = ntohs(in6.sin6_port);
	}
	snprintf(r->guard_why, sizeof(r->guard_why), "refused to connect to %s (%s address; "
	    "TXMAIL_WEBHOOK_ALLOW_PRIVATE=1 allows it)", ip, cls ? cls : "refused");
	log_warn("webhook target address refused",
	    "event_id=%s endpoint=%s msg_id=%s rcpt=%s type=%s address=%s port=%u class=%s",
	    r->d->event_id, r->d->endpoint, r->msg_id, r->rcpt, r->type, ip, port, cls ? cls : "refused");
	return CURL_SOCKET_BAD;
}

/*
 * wh_req_about - type, message id and recipient of r's event, for its log
 * lines, and its created_at for the latency metric (anything missing
 * stays "", 0).
 */
static void wh_req_about(struct wh_req *r)
{
	struct webhook_about a;

	webhook_event_about(r->d->body, &a);
	util_strlcpy(r->type, a.type, sizeof(r->type));
	util_strlcpy(r->msg_id, a.msg_id, sizeof(r->msg_id));
	util_strlcpy(r->rcpt, a.rcpt, sizeof(r->rcpt));
	if (!a.created_at[0] || util_parse_rfc3339(a.created_at, &r->created_ms) != 0)
		r->created_ms = 0;
}

/* ---- curl easy handles, reused ----------------------------------------------- */

/*
 * wh_easy_new - an easy handle with everything that is the same for every
 * request of this dispatcher: protocols, timeout, no redirects, TLS
 * verification, the proxy setting, the CA file, the body discarded, and
 * the address guard at every new connection. NULL when out of memory.
 */
static CURL *wh_easy_new(const struct webhook *w)
{
	long timeout_ms = (long)(w->timeout * 1000.0);
	CURL *e = curl_easy_init();

	if (!e)
		return NULL;
	if (timeout_ms <= 0)
		timeout_ms = 10000;
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout_ms);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
	/* "" disables libcurl's http_proxy/HTTPS_PROXY/ALL_PROXY: else the guard
	 * would judge the proxy's address while the proxy reaches the target;
	 * NOPROXY "" makes NO_PROXY unable to route around TXMAIL_WEBHOOK_PROXY */
	curl_easy_setopt(e, CURLOPT_PROXY, w->proxy);
	curl_easy_setopt(e, CURLOPT_NOPROXY, "");
	if (w->ca_file[0]) {
		/* with the OpenSSL backend CAINFO and CAPATH are both used: keep the system directory */
		const curl_version_info_data *vi = curl_version_info(CURLVERSION_NOW);

		curl_easy_setopt(e, CURLOPT_CAINFO, w->ca_file);
		curl_easy_setopt(e, CURLOPT_CAPATH,
		    vi && vi->capath ? vi->capath : "/etc/ssl/certs");
	}
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, wh_discard);
	curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, wh_opensocket);
	return e;
}

/*
 * wh_easy_put - e (out of the multi) is free again: kept for the next
 * request, up to max_inflight handles, with its pointers into the request
 * that used it cleared; beyond that, cleaned up. The connection it used
 * stays in the multi's cache either way.
 */
void wh_easy_put(struct webhook *w, CURL *e)
{
	if (!e)
		return;
	if (w->neasy >= (size_t)w->max_inflight) {
		curl_easy_cleanup(e);
		return;
	}
	if (w->neasy == w->capeasy) {
		size_t cap = w->capeasy ? w->capeasy * 2 : 16;
		CURL **ne = realloc(w->easy_free, cap * sizeof(*ne));

		if (!ne) {
			curl_easy_cleanup(e);
			return;
		}
		w->easy_free = ne;
		w->capeasy = cap;
	}
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, NULL);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, NULL);
	curl_easy_setopt(e, CURLOPT_PRIVATE, NULL);
	curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, NULL);
	w->easy_free[w->neasy++] = e;
}

/* wh_easy_free_all - clean up the free handles (the dispatcher is going). */
void wh_easy_free_all(struct webhook *w)
{
	while (w->neasy > 0)
		curl_easy_cleanup(w->easy_free[--w->neasy]);
	free(w->easy_free);
	w->easy_free = NULL;
	w->capeasy = 0;
}

/*
 * wh_fixed_headers - the headers every request carries, linked once into
 * w->hfixed (curl only reads the list; each request puts its webhook-*
 * headers in front, in nodes of its own).
 */
static struct curl_slist *wh_fixed_headers(struct webhook *w)
{
	static const char *const fixed[WH_FIXED_HEADERS] = {
		"Content-Type: application/json",
		"User-Agent: txmail/" TXMAIL_VERSION,
		"Expect:",
	};
	size_t i;

	if (!w->hfixed[0].data) {
		for (i = 0; i < WH_FIXED_HEADERS; i++) {
			w->hfixed[i].data = (char *)fixed[i];
			w->hfixed[i].next = i + 1 < WH_FIXED_HEADERS ? &w->hfixed[i + 1] : NULL;
		}
	}
	return &w->hfixed[0];
}

/* wh_start_req - POST one delivery to ep; takes d (and a reference on evt). 0, or -1 (outcome queued as retry). */
int wh_start_req(struct webhook *w, const struct wh_ep *ep, struct store_whd *d,
    struct wh_evt *evt)
{
	struct wh_req *r = calloc(1, sizeof(*r));
	char sig[64];
	int64_t now_s = util_now_ms() / 1000;
	size_t blen, nh = 0;
	int n;

	if (!r) {
		wh_release_busy(w, d);
		store_whd_free(d);
		if (evt) {
			evt->noack = 1;   /* comes back after the visibility timeout */
			wh_evt_unref(w, evt);
		}
		return -1;
	}
	r->d = d;
	r->evt = evt;
	r->epi = (size_t)(ep - w->eps);
	r->attempts = d->attempts + 1;
	wh_req_about(r);
	blen = strlen(d->body);
	/* the webhook-* headers in r's own nodes, in front of the fixed ones */
	n = snprintf(r->h_id, sizeof(r->h_id), "webhook-id: %s", d->event_id);
	if (n < 0 || (size_t)n >= sizeof(r->h_id))
		goto fail;
	snprintf(r->h_ts, sizeof(r->h_ts), "webhook-timestamp: %" PRId64, now_s);
	r->hnode[nh++].data = r->h_id;
	r->hnode[nh++].data = r->h_ts;
	if (ep->secret[0]) {
		if (wh_mac_sign(ep->mac, d->event_id, now_s, d->body, blen, sig, sizeof(sig)) < 0)
			goto fail;
		snprintf(r->h_sig, sizeof(r->h_sig), "webhook-signature: %s", sig);
		r->hnode[nh++].data = r->h_sig;
	}
	for (size_t i = 0; i < nh; i++)
		r->hnode[i].next = i + 1 < nh ? &r->hnode[i + 1] : wh_fixed_headers(w);
	r->easy = w->neasy > 0 ? w->easy_free[--w->neasy] : wh_easy_new(w);
	if (!r->easy)
		goto fail;
	curl_easy_setopt(r->easy, CURLOPT_URL, ep->url);
	curl_easy_setopt(r->easy, CURLOPT_POSTFIELDS, d->body);
	curl_easy_setopt(r->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)blen);
	curl_easy_setopt(r->easy, CURLOPT_HTTPHEADER, &r->hnode[0]);
	curl_easy_setopt(r->easy, CURLOPT_ERRORBUFFER, r->errbuf);
	curl_easy_setopt(r->easy, CURLOPT_PRIVATE, r);
	r->allow_private = w->allow_private;
	curl_easy_setopt(r->easy, CURLOPT_OPENSOCKETDATA, r);
	if (curl_multi_add_handle(w->multi, r->easy) != CURLM_OK)
		goto fail;
	r->started_ms = util_mono_ms();
	r->next = w->inflight;
	w->inflight = r;
	w->ninflight++;
	return 0;
fail:
	log_warn("webhook request setup failed", "event_id=%s endpoint=%s msg_id=%s rcpt=%s type=%s",
	    d->event_id, d->endpoint, r->msg_id, r->rcpt, r->type);
	wh_easy_put(w, r->easy);
	r->easy = NULL;
	/* count it as a failed attempt so it is retried later, not spun on */
	r->outcome = WH_RETRY;
	util_strlcpy(r->fail, "request setup failed", sizeof(r->fail));
	r->next_ms = util_now_ms() + webhook_backoff_ms(w->retry_base, w->retry_max, r->attempts);
	r->next = w->finished;
	w->finished = r;
	w->nfinished++;
	return -1;
}
