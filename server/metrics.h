/*
 * metrics.h - process-local counters and their Prometheus text exposition.
 *
 * Owns a fixed set of C11 atomic counters (HTTP requests by route pattern
 * and status class, messages accepted, recipient outcomes, webhook
 * attempts, SMTP transactions, request-body bytes in flight), bumped from any thread without a lock, and
 * the GET /metrics handler that adds queue gauges read from Redis at scrape
 * time. Counters are per process: with the roles split over several
 * processes each one counts only what it did itself. This module must never
 * block a caller that counts, allocate on the counting path, or let a label
 * value a client chose reach the output (routes are the static patterns).
 */
#ifndef SERVER_METRICS_H
#define SERVER_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "store.h"

#define METRICS_MAX_ROUTES 48       /* distinct route patterns counted; more go to "other" */
#define METRICS_NCLASSES 5          /* 1xx..5xx */

enum metrics_rcpt {
	METRICS_RCPT_DELIVERED = 0,
	METRICS_RCPT_DEFERRED,
	METRICS_RCPT_FAILED,
	METRICS_RCPT_EXPIRED,
	METRICS_RCPT_SUPPRESSED,
	METRICS_RCPT_COUNT
};

enum metrics_webhook {
	METRICS_WEBHOOK_SUCCESS = 0,    /* 2xx */
	METRICS_WEBHOOK_RETRY,          /* failed, will be retried */
	METRICS_WEBHOOK_GAVE_UP,        /* failed past the webhook max age */
	METRICS_WEBHOOK_DROPPED,        /* endpoint deleted meanwhile */
	METRICS_WEBHOOK_COUNT
};

enum metrics_smtp {
	METRICS_SMTP_OK = 0,
	METRICS_SMTP_TEMPFAIL,
	METRICS_SMTP_PERMFAIL,
	METRICS_SMTP_COUNT
};

/* A plain copy of every counter, for the formatter. */
struct metrics_snapshot {
	size_t nroutes;
	const char *route[METRICS_MAX_ROUTES];          /* static pattern strings */
	uint64_t http[METRICS_MAX_ROUTES][METRICS_NCLASSES];
	uint64_t http_other[METRICS_NCLASSES];          /* past METRICS_MAX_ROUTES */
	uint64_t accepted;
	uint64_t rcpt[METRICS_RCPT_COUNT];
	uint64_t webhook[METRICS_WEBHOOK_COUNT];
	uint64_t smtp[METRICS_SMTP_COUNT];
	int64_t http_body_bytes;        /* a gauge: request body bytes reserved now */
};

/*
 * metrics_http_request - count one answered request. route must be a
 * string with static storage (the route table's pattern), or NULL for a
 * path no route matched ("unmatched"). Statuses outside 100..599 are ignored.
 */
void metrics_http_request(const char *route, int status);
/* metrics_messages_accepted - n messages stored (202, not replays). */
void metrics_messages_accepted(uint64_t n);
/* metrics_recipient - one recipient outcome by status name ("delivered", ...); unknown names are ignored. */
void metrics_recipient(const char *status);
/* metrics_webhook_attempt - one finished webhook request. */
void metrics_webhook_attempt(enum metrics_webhook result);
/* metrics_smtp_transaction - one finished SMTP transaction by its smtp_result value (0 ok, 1 temp, 2 perm). */
void metrics_smtp_transaction(int smtp_result);

/* metrics_http_body_bytes - the request-body bytes reserved (http.c's budget) grew or shrank by delta. */
void metrics_http_body_bytes(int64_t delta);

/* metrics_snapshot - copy the current counters into out (relaxed reads). */
void metrics_snapshot(struct metrics_snapshot *out);
/* metrics_reset - zero every counter and forget the routes (tests only; not thread-safe with counting). */
void metrics_reset(void);

/*
 * metrics_render - the Prometheus text exposition (version 0.0.4) of snap
 * and, when q is not NULL, the queue gauges; redis_up is txmail_redis_up.
 * Pure. Returns a malloc'd NUL-terminated string (caller frees), NULL on OOM.
 */
char *metrics_render(const struct metrics_snapshot *snap, const struct store_queue_stats *q,
    int redis_up);

/* The handlers of GET /metrics and GET / (dashboard.c) are declared in api.h. */

#endif
