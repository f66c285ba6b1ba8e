/*
 * webhook_request.c - what one webhook POST is made of: the Standard
 * Webhooks signature (HMAC-SHA256 keyed with the endpoint's secret,
 * webhook_sign, and the per-endpoint keyed context wh_mac_new/wh_mac_sign),
 * new secrets, the URL check (libcurl's own parser), and the curl easy
 * handle of a delivery (wh_start_req: the webhook-* headers, the body as
 * the store wrote it, TLS verification, the proxy setting and the address
 * guard after DNS resolution, wh_opensocket), and the same request sent at
 * once for the API (webhook_send_now: .../test and .../retry). Easy handles are set up once
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

/* wh_keep_head - curl's body writer: the first WEBHOOK_EXCERPT_MAX bytes into a wh_head, the rest dropped. */
static size_t wh_keep_head(char *ptr, size_t size, size_t nmemb, void *ud)
{
	struct wh_head *h = ud;
	size_t n = size * nmemb;

	if (h && h->len < sizeof(h->buf)) {
		size_t k = sizeof(h->buf) - h->len;

		if (k > n)
			k = n;
		memcpy(h->buf + h->len, ptr, k);
		h->len += k;
	}
	return n;
}

/* wh_utf8_len - the length of the valid UTF-8 sequence at s (n bytes left), or 0 when invalid. */
static size_t wh_utf8_len(const unsigned char *s, size_t n)
{
	size_t len, i;
	uint32_t cp;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf) {
		len = 2;
		cp = s[0] & 0x1f;
	} else if (s[0] >= 0xe0 && s[0] <= 0xef) {
		len = 3;
		cp = s[0] & 0x0f;
	} else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
		len = 4;
		cp = s[0] & 0x07;
	} else {
		return 0;
	}
	if (len > n)
		return 0;
	for (i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
	    (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
		return 0;
	if (len == 2 && cp < 0xa0)
		return 0x100;   /* a C1 control: the caller writes a space */
	return len;
}

void webhook_answer_excerpt(const char *in, size_t inlen, char *out, size_t outlen)
{
	const unsigned char *s = (const unsigned char *)in;
	size_t o = 0, i = 0, cap;

	if (!out || outlen == 0)
		return;
	cap = outlen - 1 < WEBHOOK_EXCERPT_MAX ? outlen - 1 : WEBHOOK_EXCERPT_MAX;
	while (in && i < inlen && o < cap) {
		size_t k = wh_utf8_len(s + i, inlen - i);

		if (k == 0) {
			out[o++] = '?';
			i++;
		} else if (k == 0x100) {
			out[o++] = ' ';
			i += 2;
		} else if (k == 1) {
			out[o++] = (s[i] < 0x20 || s[i] == 0x7f) ? ' ' : (char)s[i];
			i++;
		} else {
			if (o + k > cap)
				break;
			memcpy(out + o, s + i, k);
			o += k;
			i += k;
		}
	}
	out[o] = '\0';
}

int webhook_sig_join(const char *a, const char *b, char *out, size_t outlen)
{
	int n;

	if (!a || !out || outlen == 0)
		return -1;
	n = b && b[0] ? snprintf(out, outlen, "%s %s", a, b) : snprintf(out, outlen, "%s", a);
	if (n < 0 || (size_t)n >= outlen) {
		out[0] = '\0';
		return -1;
	}
	return 0;
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
static CURL *wh_easy_setup(double timeout, const char *proxy, const char *ca_file)
{
	long timeout_ms = (long)(timeout * 1000.0);
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
	curl_easy_setopt(e, CURLOPT_PROXY, proxy);
	curl_easy_setopt(e, CURLOPT_NOPROXY, "");
	if (ca_file[0]) {
		/* with the OpenSSL backend CAINFO and CAPATH are both used: keep the system directory */
		const curl_version_info_data *vi = curl_version_info(CURLVERSION_NOW);

		curl_easy_setopt(e, CURLOPT_CAINFO, ca_file);
		curl_easy_setopt(e, CURLOPT_CAPATH,
		    vi && vi->capath ? vi->capath : "/etc/ssl/certs");
	}
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, wh_keep_head);
	curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, wh_opensocket);
	return e;
}

static CURL *wh_easy_new(const struct webhook *w)
{
	return wh_easy_setup(w->timeout, w->proxy, w->ca_file);
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
	curl_easy_setopt(e, CURLOPT_WRITEDATA, NULL);
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
		char sig2[64] = "", both[160];

		if (wh_mac_sign(ep->mac, d->event_id, now_s, d->body, blen, sig, sizeof(sig)) < 0)
			goto fail;
		/* a rotation's overlap: the previous secret signs too, until old_until_ms */
		if (ep->mac_old && util_now_ms() < ep->old_until_ms &&
		    wh_mac_sign(ep->mac_old, d->event_id, now_s, d->body, blen, sig2, sizeof(sig2)) < 0)
			sig2[0] = '\0';
		if (webhook_sig_join(sig, sig2, both, sizeof(both)) < 0)
			goto fail;
		snprintf(r->h_sig, sizeof(r->h_sig), "webhook-signature: %s", both);
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
	curl_easy_setopt(r->easy, CURLOPT_WRITEDATA, &r->head);
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

/* ---- one request at once, outside the dispatcher ------------------------------ */

int webhook_send_now(const struct config *cfg, const char *url, const char *secret,
    const char *old_secret, const char *event_id, const char *body,
    struct webhook_send_result *res)
{
	char sig[64], sig2[64] = "", both[160], h_id[96], h_ts[48], h_sig[192], ev_id[96], epname[8] = "";
	struct store_whd d;
	struct wh_req *r = NULL;
	struct curl_slist *hs = NULL, *t;
	int64_t now_s = util_now_ms() / 1000, t0;
	size_t blen = body ? strlen(body) : 0;
	CURL *e = NULL;
	CURLcode cc;
	int rc = -1;

	memset(res, 0, sizeof(*res));
	if (!cfg || !url || !event_id || !body || wh_curl_ready() != 0) {
		util_strlcpy(res->error, "cannot set up the request", sizeof(res->error));
		return -1;
	}
	if (secret && secret[0]) {
		if (webhook_sign(secret, event_id, now_s, body, blen, sig, sizeof(sig)) < 0 ||
		    (old_secret && old_secret[0] &&
		    webhook_sign(old_secret, event_id, now_s, body, blen, sig2, sizeof(sig2)) < 0) ||
		    webhook_sig_join(sig, sig2, both, sizeof(both)) < 0) {
			util_strlcpy(res->error, "the endpoint's secret cannot sign", sizeof(res->error));
			goto out;
		}
		snprintf(h_sig, sizeof(h_sig), "webhook-signature: %s", both);
	}
	snprintf(h_id, sizeof(h_id), "webhook-id: %s", event_id);
	snprintf(h_ts, sizeof(h_ts), "webhook-timestamp: %" PRId64, now_s);
	/* the address guard's callback wants a request: one of its own, never in a dispatcher */
	r = calloc(1, sizeof(*r));
	e = wh_easy_setup(cfg->webhook_timeout > 0 && cfg->webhook_timeout < WEBHOOK_SEND_NOW_TIMEOUT_MAX ?
	    cfg->webhook_timeout : WEBHOOK_SEND_NOW_TIMEOUT_MAX, cfg->webhook_proxy, cfg->tls_ca_file);
	if (!r || !e) {
		util_strlcpy(res->error, "out of memory", sizeof(res->error));
		goto out;
	}
	memset(&d, 0, sizeof(d));
	util_strlcpy(ev_id, event_id, sizeof(ev_id));
	d.event_id = ev_id;
	d.endpoint = epname;
	r->d = &d;
	r->allow_private = cfg->webhook_allow_private;
	util_strlcpy(r->type, "webhook.test", sizeof(r->type));
	const char *hv[] = { h_id, h_ts, secret && secret[0] ? h_sig : NULL,
	    "Content-Type: application/json", "User-Agent: txmail/" TXMAIL_VERSION, "Expect:" };
	for (size_t i = 0; i < sizeof(hv) / sizeof(hv[0]); i++) {
		if (!hv[i])
			continue;
		t = curl_slist_append(hs, hv[i]);
		if (!t) {
			util_strlcpy(res->error, "out of memory", sizeof(res->error));
			goto out;
		}
		hs = t;
	}
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)blen);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, hs);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->errbuf);
	curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, r);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, &r->head);
	t0 = util_mono_ms();
	cc = curl_easy_perform(e);
	res->duration_ms = util_mono_ms() - t0;
	if (cc == CURLE_OK) {
		curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &res->status);
		webhook_answer_excerpt(r->head.buf, r->head.len, res->excerpt, sizeof(res->excerpt));
	} else {
		util_strlcpy(res->error, r->guard_why[0] ? r->guard_why : r->errbuf[0] ? r->errbuf :
		    curl_easy_strerror(cc), sizeof(res->error));
	}
	rc = 0;
out:
	OPENSSL_cleanse(h_sig, sizeof(h_sig));
	curl_slist_free_all(hs);
	if (e)
		curl_easy_cleanup(e);
	free(r);
	return rc;
}
