/*
 * metrics.c - process-local counters and the Prometheus text exposition
 * (GET /metrics).
 *
 * Owns the atomic counters declared in metrics.h. Counting is one relaxed
 * atomic add (a new route pattern claims a slot once with a compare and
 * swap); nothing on the counting path locks or allocates. metrics_render is
 * pure (snapshot + gauges in, text out) so tests feed it numbers. The
 * handler reads the queue gauges from Redis at scrape time through
 * store_queue_stats. It must never block a counting thread, print a label
 * value a client chose, or fail a scrape because Redis is down (the gauges
 * are then left out and txmail_redis_up is 0).
 */
#include "metrics.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"

#define METRICS_MAX_OUT ((size_t)1024 * 1024)

static _Atomic(const char *) metrics_routes[METRICS_MAX_ROUTES];
static _Atomic uint64_t metrics_http[METRICS_MAX_ROUTES][METRICS_NCLASSES];
static _Atomic uint64_t metrics_http_other[METRICS_NCLASSES];
static _Atomic uint64_t metrics_accepted;
static _Atomic uint64_t metrics_rcpt[METRICS_RCPT_COUNT];
static _Atomic uint64_t metrics_webhook[METRICS_WEBHOOK_COUNT];
static _Atomic uint64_t metrics_smtp[METRICS_SMTP_COUNT];
static _Atomic int64_t metrics_body_bytes;

static const char *const metrics_rcpt_names[METRICS_RCPT_COUNT] = {
	"delivered", "deferred", "failed", "expired", "suppressed",
};
static const char *const metrics_webhook_names[METRICS_WEBHOOK_COUNT] = {
	"success", "retry", "gave_up", "dropped",
};
static const char *const metrics_smtp_names[METRICS_SMTP_COUNT] = {
	"ok", "tempfail", "permfail",
};

static void
metrics_add(_Atomic uint64_t *c, uint64_t n)
{
	atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

static uint64_t
metrics_load(_Atomic uint64_t *c)
{
	return atomic_load_explicit(c, memory_order_relaxed);
}

void
metrics_http_request(const char *route, int status)
{
	int cls;

	if (status < 100 || status > 599)
		return;
	cls = status / 100 - 1;
	if (route == NULL)
		route = "unmatched";
	for (size_t i = 0; i < METRICS_MAX_ROUTES; i++) {
		const char *cur = atomic_load_explicit(&metrics_routes[i], memory_order_acquire);

		if (cur == NULL) {
			const char *expect = NULL;

			if (atomic_compare_exchange_strong_explicit(&metrics_routes[i], &expect, route,
			    memory_order_acq_rel, memory_order_acquire))
				cur = route;
			else
				cur = expect;   /* another thread took the slot */
		}
		if (cur == route || strcmp(cur, route) == 0) {
			metrics_add(&metrics_http[i][cls], 1);
			return;
		}
	}
	metrics_add(&metrics_http_other[cls], 1);
}

void
metrics_messages_accepted(uint64_t n)
{
	metrics_add(&metrics_accepted, n);
}

void
metrics_recipient(const char *status)
{
	if (status == NULL)
		return;
	for (size_t i = 0; i < METRICS_RCPT_COUNT; i++)
		if (strcmp(status, metrics_rcpt_names[i]) == 0) {
			metrics_add(&metrics_rcpt[i], 1);
			return;
		}
}

void
metrics_webhook_attempt(enum metrics_webhook result)
{
	if ((unsigned)result < METRICS_WEBHOOK_COUNT)
		metrics_add(&metrics_webhook[result], 1);
}

void
metrics_smtp_transaction(int smtp_result)
{
	if (smtp_result >= 0 && smtp_result < METRICS_SMTP_COUNT)
		metrics_add(&metrics_smtp[smtp_result], 1);
}

void
metrics_http_body_bytes(int64_t delta)
{
	atomic_fetch_add_explicit(&metrics_body_bytes, delta, memory_order_relaxed);
}

void
metrics_snapshot(struct metrics_snapshot *out)
{
	memset(out, 0, sizeof(*out));
	for (size_t i = 0; i < METRICS_MAX_ROUTES; i++) {
		const char *r = atomic_load_explicit(&metrics_routes[i], memory_order_acquire);

		if (r == NULL)
			break;
		out->route[i] = r;
		for (size_t c = 0; c < METRICS_NCLASSES; c++)
			out->http[i][c] = metrics_load(&metrics_http[i][c]);
		out->nroutes = i + 1;
	}
	for (size_t c = 0; c < METRICS_NCLASSES; c++)
		out->http_other[c] = metrics_load(&metrics_http_other[c]);
	out->accepted = metrics_load(&metrics_accepted);
	for (size_t i = 0; i < METRICS_RCPT_COUNT; i++)
		out->rcpt[i] = metrics_load(&metrics_rcpt[i]);
	for (size_t i = 0; i < METRICS_WEBHOOK_COUNT; i++)
		out->webhook[i] = metrics_load(&metrics_webhook[i]);
	for (size_t i = 0; i < METRICS_SMTP_COUNT; i++)
		out->smtp[i] = metrics_load(&metrics_smtp[i]);
	out->http_body_bytes = atomic_load_explicit(&metrics_body_bytes, memory_order_relaxed);
}

void
metrics_reset(void)
{
	for (size_t i = 0; i < METRICS_MAX_ROUTES; i++) {
		atomic_store(&metrics_routes[i], NULL);
		for (size_t c = 0; c < METRICS_NCLASSES; c++)
			atomic_store(&metrics_http[i][c], 0);
	}
	for (size_t c = 0; c < METRICS_NCLASSES; c++)
		atomic_store(&metrics_http_other[c], 0);
	atomic_store(&metrics_accepted, 0);
	for (size_t i = 0; i < METRICS_RCPT_COUNT; i++)
		atomic_store(&metrics_rcpt[i], 0);
	for (size_t i = 0; i < METRICS_WEBHOOK_COUNT; i++)
		atomic_store(&metrics_webhook[i], 0);
	for (size_t i = 0; i < METRICS_SMTP_COUNT; i++)
		atomic_store(&metrics_smtp[i], 0);
	atomic_store(&metrics_body_bytes, 0);
}

/* --- exposition ---------------------------------------------------------- */

struct metrics_buf {
	char *p;
	size_t len;
	size_t cap;
	int err;
};

static void metrics_printf(struct metrics_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
metrics_printf(struct metrics_buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (b->err)
		return;
	for (;;) {
		size_t room = b->cap - b->len;

		va_start(ap, fmt);
		n = vsnprintf(b->p + b->len, room, fmt, ap);
		va_end(ap);
		if (n < 0) {
			b->err = 1;
			return;
		}
		if ((size_t)n < room) {
			b->len += (size_t)n;
			return;
		}
		if (b->cap >= METRICS_MAX_OUT) {
			b->err = 1;
			return;
		}
		size_t ncap = b->cap * 2;
		char *np;

		while (ncap - b->len <= (size_t)n)
			ncap *= 2;
		if (ncap > METRICS_MAX_OUT)
			ncap = METRICS_MAX_OUT;
		np = realloc(b->p, ncap);
		if (np == NULL) {
			b->err = 1;
			return;
		}
		b->p = np;
		b->cap = ncap;
	}
}

static void
metrics_head(struct metrics_buf *b, const char *name, const char *type, const char *help)
{
	metrics_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* a label value, escaped per the exposition format (\\, \", \n) */
static void
metrics_label(struct metrics_buf *b, const char *v)
{
	for (; *v != '\0'; v++) {
		if (*v == '\\')
			metrics_printf(b, "\\\\");
		else if (*v == '"')
			metrics_printf(b, "\\\"");
		else if (*v == '\n')
			metrics_printf(b, "\\n");
		else
			metrics_printf(b, "%c", *v);
	}
}

static void
metrics_http_line(struct metrics_buf *b, const char *route, size_t cls, uint64_t v)
{
	metrics_printf(b, "txmail_http_requests_total{route=\"");
	metrics_label(b, route);
	metrics_printf(b, "\",code_class=\"%zuxx\"} %" PRIu64 "\n", cls + 1, v);
}

char *
metrics_render(const struct metrics_snapshot *snap, const struct store_queue_stats *q,
    int redis_up)
{
	struct metrics_buf b = { .cap = 4096 };

	b.p = malloc(b.cap);
	if (b.p == NULL)
		return NULL;
	b.p[0] = '\0';

	metrics_head(&b, "txmail_up", "gauge", "1 while this txmail process serves HTTP.");
	metrics_printf(&b, "txmail_up 1\n");
	metrics_head(&b, "txmail_redis_up", "gauge",
	    "1 when this process could read the queue gauges from Redis at scrape time.");
	metrics_printf(&b, "txmail_redis_up %d\n", redis_up ? 1 : 0);

	metrics_head(&b, "txmail_http_requests_total", "counter",
	    "HTTP requests answered by this process, by route pattern and status class.");
	for (size_t i = 0; i < snap->nroutes && i < METRICS_MAX_ROUTES; i++)
		for (size_t c = 0; c < METRICS_NCLASSES; c++)
			if (snap->http[i][c] != 0 && snap->route[i] != NULL)
				metrics_http_line(&b, snap->route[i], c, snap->http[i][c]);
	for (size_t c = 0; c < METRICS_NCLASSES; c++)
		if (snap->http_other[c] != 0)
			metrics_http_line(&b, "other", c, snap->http_other[c]);

	metrics_head(&b, "txmail_messages_accepted_total", "counter",
	    "Messages accepted (202, stored) by this process; idempotent replays excluded.");
	metrics_printf(&b, "txmail_messages_accepted_total %" PRIu64 "\n", snap->accepted);

	metrics_head(&b, "txmail_recipients_total", "counter",
	    "Recipient outcomes recorded by this process (suppressed: at acceptance).");
	for (size_t i = 0; i < METRICS_RCPT_COUNT; i++)
		metrics_printf(&b, "txmail_recipients_total{status=\"%s\"} %" PRIu64 "\n",
		    metrics_rcpt_names[i], snap->rcpt[i]);

	metrics_head(&b, "txmail_smtp_transactions_total", "counter",
	    "SMTP transactions finished by this process's workers, by result.");
	for (size_t i = 0; i < METRICS_SMTP_COUNT; i++)
		metrics_printf(&b, "txmail_smtp_transactions_total{result=\"%s\"} %" PRIu64 "\n",
		    metrics_smtp_names[i], snap->smtp[i]);

	metrics_head(&b, "txmail_webhook_attempts_total", "counter",
	    "Webhook requests finished by this process's dispatcher, by result.");
	for (size_t i = 0; i < METRICS_WEBHOOK_COUNT; i++)
		metrics_printf(&b, "txmail_webhook_attempts_total{result=\"%s\"} %" PRIu64 "\n",
		    metrics_webhook_names[i], snap->webhook[i]);

	metrics_head(&b, "txmail_http_body_bytes_in_flight", "gauge",
	    "Bytes reserved by the request bodies this process is receiving (at most TXMAIL_HTTP_BODY_BUDGET).");
	metrics_printf(&b, "txmail_http_body_bytes_in_flight %" PRId64 "\n", snap->http_body_bytes);

	if (q != NULL) {
		metrics_head(&b, "txmail_queue_ready", "gauge",
		    "Recipient deliveries due now (both priority lanes' ready streams, Redis; all processes).");
		metrics_printf(&b, "txmail_queue_ready %" PRId64 "\n", q->ready);
		metrics_head(&b, "txmail_queue_pending", "gauge",
		    "Deliveries claimed by a worker and not yet recorded (Redis; all processes).");
		metrics_printf(&b, "txmail_queue_pending %" PRId64 "\n", q->pending);
		metrics_head(&b, "txmail_queue_due", "gauge",
		    "Retries and scheduled sends waiting for their time (Redis; all processes).");
		metrics_printf(&b, "txmail_queue_due %" PRId64 "\n", q->due);
		metrics_head(&b, "txmail_events_retained", "gauge",
		    "Outbox events retained for webhooks and SSE replay (Redis; all processes).");
		metrics_printf(&b, "txmail_events_retained %" PRId64 "\n", q->events);
	}
	if (b.err) {
		free(b.p);
		return NULL;
	}
	return b.p;
}

/* --- handler ------------------------------------------------------------- */

void
metrics_http_get(const struct api_request *req, struct api_response *resp)
{
	struct metrics_snapshot *snap = malloc(sizeof(*snap));
	struct store_queue_stats q;
	int up = 0;
	char *text = NULL;

	if (snap == NULL)
		goto oom;
	metrics_snapshot(snap);
	if (req->store != NULL && store_queue_stats(req->store, &q) == 0)
		up = 1;
	text = metrics_render(snap, up ? &q : NULL, up);
	free(snap);
	if (text == NULL)
		goto oom;
	free(resp->body);
	resp->status = 200;
	resp->body = text;
	resp->body_len = strlen(text);
	api_header(resp, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
	api_header(resp, "Cache-Control", "no-store");
	return;
oom:
	api_error(resp, 500, "internal_error", "out of memory", NULL);
}
