/*
 * webhook.h - the webhook dispatcher, the only module that speaks libcurl.
 *
 * Reads the events outbox (store_read_events), fans each event out to the
 * endpoints that want it, and POSTs deliveries concurrently (curl multi),
 * signed per Standard Webhooks. Non-2xx or a timeout is retried with
 * exponential backoff (same webhook-id) until webhook_max_age.
 */
#ifndef SERVER_WEBHOOK_H
#define SERVER_WEBHOOK_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"

struct webhook;
struct webhook *webhook_start(const struct config *cfg, char *err, size_t errlen);

/* What webhook_stop did with the POSTs it had in flight. */
struct webhook_stop_stats {
	size_t finished;    /* answered (or failed) before the deadline; outcomes recorded */
	size_t abandoned;   /* still running at the deadline: sent again after their lease */
};

/*
 * webhook_stop - stop claiming and reading events, let the POSTs in flight
 * finish until util_mono_ms() deadline_ms, record their outcomes (when
 * Redis answers), then free w. Events not yet sent stay in Redis. *stats
 * (NULL: not wanted) says what happened.
 */
void webhook_stop(struct webhook *w, int64_t deadline_ms, struct webhook_stop_stats *stats);

/*
 * webhook_notify - an event was just appended to the outbox by this
 * process (any thread): a dispatcher of this process waiting in curl's
 * poll with requests in flight looks at the outbox at once instead of
 * after its poll interval. Cheap (a flag) when none is in the poll; a no-op
 * when no dispatcher runs. A dispatcher with nothing in flight is woken by
 * Redis itself (its blocking read), so events of other processes need no
 * notify.
 */
void webhook_notify(void);

/*
 * webhook_sign - Standard Webhooks signature: "v1,<base64(HMAC-SHA256(key,
 * id "." ts "." body))>" where key is the base64-decoded part after "whsec_"
 * (a secret without the prefix is used as raw bytes). 0, or -1 (bad secret,
 * small buffer).
 */
int webhook_sign(const char *secret, const char *msg_id, int64_t ts,
    const char *body, size_t body_len, char *out, size_t outlen);

/* webhook_backoff_ms - delay after `attempts` failures: base*2^(attempts-1) capped at max. */
int64_t webhook_backoff_ms(double base_s, double max_s, int attempts);

/* --- endpoints and filters (pure) ----------------------------------------- */

#define WEBHOOK_URL_MAX 2048
#define WEBHOOK_NTYPES 6
/* the event types an endpoint can subscribe to, in a fixed order (webhook.test: the test sends) */
extern const char *const webhook_event_types[WEBHOOK_NTYPES];

/* webhook_type_known - 1 when type is one of webhook_event_types. */
int webhook_type_known(const char *type);

/*
 * webhook_projects_match - 1 when project is in list: "*" (every project)
 * or comma-separated names (TXMAIL_WEBHOOK_PROJECTS, for the default
 * endpoint). NULL or "" project is "default".
 */
int webhook_projects_match(const char *list, const char *project);

/* webhook_filter_match - 1 when an endpoint with this filter (n 0 = every type) wants type. */
int webhook_filter_match(const char *const *events, size_t n, const char *type);

/*
 * webhook_url_check - 0 when url is an absolute http:// or https:// URL with
 * a host, at most WEBHOOK_URL_MAX bytes, printable ASCII without spaces;
 * else -1 with a reason in why.
 */
int webhook_url_check(const char *url, char *why, size_t whylen);

/*
 * webhook_event_field - the top-level string member `key` of an event JSON
 * object, copied into out when it is [A-Za-z0-9_.-]{1,outlen-1}. Scans
 * only (no allocation); escapes in the value are refused. 0 or -1.
 */
int webhook_event_field(const char *json, const char *key, char *out, size_t outlen);

/*
 * What an event is about, for log lines and the latency metric: the
 * top-level "type" and "created_at" and data.message_id, data.recipient
 * of an event JSON object. "" for a member that is absent or not a
 * string; a longer value is cut to the field (always NUL-terminated).
 */
struct webhook_about {
	char type[64];
	char created_at[40];
	char msg_id[96];
	char rcpt[320];
};

/*
 * webhook_event_about - fill *out from the event json in one scan, no
 * allocation (the dispatcher's per-request log fields, which a full JSON
 * parse per request made its most expensive step). String escapes are
 * decoded except \uXXXX, which stays as written. It stops once all four
 * are found; a malformed body leaves what was not found "".
 */
void webhook_event_about(const char *json, struct webhook_about *out);

/*
 * webhook_answer_excerpt - the first bytes of a receiver's answer as shown
 * in GET /v1/webhooks/{id}/deliveries: at most outlen - 1 bytes (and at most
 * WEBHOOK_EXCERPT_MAX) of in, valid UTF-8 only (an invalid byte becomes
 * '?', a sequence is never cut), every control character (C0, DEL, C1)
 * a space. Always NUL-terminated. Pure.
 */
#define WEBHOOK_EXCERPT_MAX 200
void webhook_answer_excerpt(const char *in, size_t inlen, char *out, size_t outlen);

/*
 * webhook_sig_join - the webhook-signature value for one or two signatures
 * ("v1,<a>" or "v1,<a> v1,<b>", Standard Webhooks: space-separated) into
 * out; b NULL or "" for one. 0, or -1 when out is too small. Pure.
 */
int webhook_sig_join(const char *a, const char *b, char *out, size_t outlen);

/*
 * One request sent at once, outside the dispatcher (POST
 * /v1/webhooks/{id}/test, .../deliveries/{event_id}/retry): what the
 * receiver answered. status 0 when there was no HTTP answer (error says
 * why: a connect error, a timeout, the address guard).
 */
struct webhook_send_result {
	long status;
	int64_t duration_ms;
	char error[160];                         /* "" on an HTTP answer */
	char excerpt[WEBHOOK_EXCERPT_MAX + 1];   /* webhook_answer_excerpt of the answer */
};

/*
 * webhook_send_now - POST body (event id event_id) to url, signed with
 * secret and, when old_secret is not NULL or "", also with it (a rotation's
 * overlap), with the dispatcher's options from cfg (timeout, TLS, proxy,
 * no redirects, the address guard of TXMAIL_WEBHOOK_ALLOW_PRIVATE).
 * Blocks up to TXMAIL_WEBHOOK_TIMEOUT, at most WEBHOOK_SEND_NOW_TIMEOUT_MAX
 * seconds. 0 with *res filled (whatever the receiver answered), or -1 (a
 * bad secret, out of memory: res->error says).
 */
#define WEBHOOK_SEND_NOW_TIMEOUT_MAX 10.0
int webhook_send_now(const struct config *cfg, const char *url, const char *secret,
    const char *old_secret, const char *event_id, const char *body,
    struct webhook_send_result *res);

/* webhook_new_secret - "whsec_" + base64 of 24 random bytes into out (>= 40 bytes). 0 or -1. */
#define WEBHOOK_SECRET_LEN 38
int webhook_new_secret(char *out, size_t outlen);

#endif
