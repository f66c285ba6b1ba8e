/*
 * test_metrics.c - metrics.c: the exposition formatter (pure: snapshot in,
 * exact lines out), label escaping, and the counters behind metrics_snapshot.
 */
#include <criterion/criterion.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../server/metrics.h"

static int
has_line(const char *text, const char *line)
{
	size_t n = strlen(line);

	for (const char *p = text; p != NULL && *p != '\0';) {
		const char *e = strchr(p, '\n');
		size_t len = e != NULL ? (size_t)(e - p) : strlen(p);

		if (len == n && memcmp(p, line, n) == 0)
			return 1;
		p = e != NULL ? e + 1 : NULL;
	}
	return 0;
}

Test(metrics, render_exact_lines)
{
	static const char *const routes[] = { "/v1/messages", "/healthz" };
	struct metrics_snapshot snap;
	struct store_queue_stats q = { .ready = 3, .pending = 2, .due = 7, .events = 11 };
	char *t;

	memset(&snap, 0, sizeof(snap));
	snap.nroutes = 2;
	snap.route[0] = routes[0];
	snap.route[1] = routes[1];
	snap.http[0][1] = 5;    /* 2xx */
	snap.http[0][3] = 2;    /* 4xx */
	snap.http[1][1] = 9;
	snap.http_other[4] = 1;
	snap.accepted = 4;
	snap.rcpt[METRICS_RCPT_DELIVERED] = 3;
	snap.rcpt[METRICS_RCPT_DEFERRED] = 1;
	snap.rcpt[METRICS_RCPT_SUPPRESSED] = 6;
	snap.webhook[METRICS_WEBHOOK_SUCCESS] = 8;
	snap.webhook[METRICS_WEBHOOK_RETRY] = 2;
	snap.smtp[METRICS_SMTP_TEMPFAIL] = 12;
	snap.http_body_bytes = 4097;
	t = metrics_render(&snap, &q, 1);
	cr_assert_not_null(t);
	static const char *const want[] = {
		"# HELP txmail_up 1 while this txmail process serves HTTP.",
		"# TYPE txmail_up gauge",
		"txmail_up 1",
		"txmail_redis_up 1",
		"# TYPE txmail_http_requests_total counter",
		"txmail_http_requests_total{route=\"/v1/messages\",code_class=\"2xx\"} 5",
		"txmail_http_requests_total{route=\"/v1/messages\",code_class=\"4xx\"} 2",
		"txmail_http_requests_total{route=\"/healthz\",code_class=\"2xx\"} 9",
		"txmail_http_requests_total{route=\"other\",code_class=\"5xx\"} 1",
		"# TYPE txmail_messages_accepted_total counter",
		"txmail_messages_accepted_total 4",
		"txmail_recipients_total{status=\"delivered\"} 3",
		"txmail_recipients_total{status=\"deferred\"} 1",
		"txmail_recipients_total{status=\"failed\"} 0",
		"txmail_recipients_total{status=\"expired\"} 0",
		"txmail_recipients_total{status=\"suppressed\"} 6",
		"txmail_webhook_attempts_total{result=\"success\"} 8",
		"txmail_webhook_attempts_total{result=\"retry\"} 2",
		"txmail_webhook_attempts_total{result=\"gave_up\"} 0",
		"txmail_smtp_transactions_total{result=\"tempfail\"} 12",
		"# TYPE txmail_http_body_bytes_in_flight gauge",
		"txmail_http_body_bytes_in_flight 4097",
		"# TYPE txmail_queue_ready gauge",
		"txmail_queue_ready 3",
		"txmail_queue_pending 2",
		"txmail_queue_due 7",
		"txmail_events_retained 11",
	};
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
		cr_expect(has_line(t, want[i]), "got no line %s in:\n%s", want[i], t);
	/* zero HTTP classes are left out, and the text ends with a newline */
	cr_expect(!has_line(t, "txmail_http_requests_total{route=\"/healthz\",code_class=\"5xx\"} 0"),
	    "got a zero http line, want none");
	cr_expect(t[strlen(t) - 1] == '\n', "got no final newline");
	/* every sample's metric has a TYPE line before it */
	cr_expect(strstr(t, "# TYPE txmail_queue_ready gauge") < strstr(t, "txmail_queue_ready 3"),
	    "got TYPE after the sample");
	free(t);
}

Test(metrics, render_redis_down_leaves_gauges_out)
{
	struct metrics_snapshot snap;
	char *t;

	memset(&snap, 0, sizeof(snap));
	t = metrics_render(&snap, NULL, 0);
	cr_assert_not_null(t);
	cr_expect(has_line(t, "txmail_redis_up 0"), "got no txmail_redis_up 0 in:\n%s", t);
	cr_expect(has_line(t, "txmail_up 1"), "got no txmail_up 1");
	cr_expect(strstr(t, "txmail_queue_ready") == NULL, "got a queue gauge, want none:\n%s", t);
	cr_expect(has_line(t, "txmail_messages_accepted_total 0"), "got no zero accepted counter");
	free(t);
}

Test(metrics, render_escapes_label_values)
{
	static const char route[] = "/a\"b\\c\nd";
	struct metrics_snapshot snap;
	char *t;

	memset(&snap, 0, sizeof(snap));
	snap.nroutes = 1;
	snap.route[0] = route;
	snap.http[0][0] = 1;
	t = metrics_render(&snap, NULL, 0);
	cr_assert_not_null(t);
	cr_expect(has_line(t, "txmail_http_requests_total{route=\"/a\\\"b\\\\c\\nd\",code_class=\"1xx\"} 1"),
	    "got no escaped line in:\n%s", t);
	free(t);
}

Test(metrics, counters_and_snapshot)
{
	struct metrics_snapshot snap;
	static const struct { int status; int cls; } cases[] = {
		{ 200, 1 }, { 202, 1 }, { 404, 3 }, { 503, 4 }, { 101, 0 },
	};

	metrics_reset();
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		metrics_http_request("/v1/messages", cases[i].status);
	metrics_http_request(NULL, 404);
	metrics_http_request("/v1/messages", 99);     /* ignored */
	metrics_http_request("/v1/messages", 600);    /* ignored */
	metrics_messages_accepted(3);
	metrics_recipient("delivered");
	metrics_recipient("deferred");
	metrics_recipient("deferred");
	metrics_recipient("nonsense");                /* ignored */
	metrics_recipient(NULL);
	metrics_webhook_attempt(METRICS_WEBHOOK_GAVE_UP);
	metrics_smtp_transaction(2);
	metrics_smtp_transaction(7);                  /* ignored */
	metrics_snapshot(&snap);
	cr_assert_eq(snap.nroutes, 2, "got %zu routes, want 2", snap.nroutes);
	cr_expect_str_eq(snap.route[0], "/v1/messages");
	cr_expect_str_eq(snap.route[1], "unmatched");
	cr_expect_eq(snap.http[0][1], 2, "got %llu 2xx, want 2", (unsigned long long)snap.http[0][1]);
	cr_expect_eq(snap.http[0][0], 1, "got %llu 1xx, want 1", (unsigned long long)snap.http[0][0]);
	cr_expect_eq(snap.http[0][3], 1, "got %llu 4xx, want 1", (unsigned long long)snap.http[0][3]);
	cr_expect_eq(snap.http[0][4], 1, "got %llu 5xx, want 1", (unsigned long long)snap.http[0][4]);
	cr_expect_eq(snap.http[1][3], 1, "got %llu unmatched 4xx, want 1", (unsigned long long)snap.http[1][3]);
	cr_expect_eq(snap.accepted, 3, "got %llu accepted, want 3", (unsigned long long)snap.accepted);
	cr_expect_eq(snap.rcpt[METRICS_RCPT_DELIVERED], 1, "got delivered %llu, want 1",
	    (unsigned long long)snap.rcpt[METRICS_RCPT_DELIVERED]);
	cr_expect_eq(snap.rcpt[METRICS_RCPT_DEFERRED], 2, "got deferred %llu, want 2",
	    (unsigned long long)snap.rcpt[METRICS_RCPT_DEFERRED]);
	cr_expect_eq(snap.webhook[METRICS_WEBHOOK_GAVE_UP], 1, "got gave_up %llu, want 1",
	    (unsigned long long)snap.webhook[METRICS_WEBHOOK_GAVE_UP]);
	cr_expect_eq(snap.smtp[METRICS_SMTP_PERMFAIL], 1, "got permfail %llu, want 1",
	    (unsigned long long)snap.smtp[METRICS_SMTP_PERMFAIL]);
}

Test(metrics, route_slots_overflow_to_other)
{
	static char names[METRICS_MAX_ROUTES + 3][16];
	struct metrics_snapshot snap;

	metrics_reset();
	for (size_t i = 0; i < METRICS_MAX_ROUTES + 3; i++) {
		snprintf(names[i], sizeof(names[i]), "/r%zu", i);
		metrics_http_request(names[i], 200);
	}
	metrics_snapshot(&snap);
	cr_expect_eq(snap.nroutes, METRICS_MAX_ROUTES, "got %zu routes, want %d", snap.nroutes,
	    METRICS_MAX_ROUTES);
	cr_expect_eq(snap.http_other[1], 3, "got %llu other, want 3", (unsigned long long)snap.http_other[1]);
}

#define THREADS 4
#define PER_THREAD 20000

static void *
bump(void *arg)
{
	(void)arg;
	for (int i = 0; i < PER_THREAD; i++) {
		metrics_http_request("/v1/messages", 202);
		metrics_recipient("delivered");
	}
	return NULL;
}

Test(metrics, concurrent_counting_loses_nothing)
{
	pthread_t th[THREADS];
	struct metrics_snapshot snap;

	metrics_reset();
	for (int i = 0; i < THREADS; i++)
		cr_assert_eq(pthread_create(&th[i], NULL, bump, NULL), 0);
	for (int i = 0; i < THREADS; i++)
		pthread_join(th[i], NULL);
	metrics_snapshot(&snap);
	cr_assert_eq(snap.nroutes, 1, "got %zu routes, want 1", snap.nroutes);
	cr_expect_eq(snap.http[0][1], (uint64_t)THREADS * PER_THREAD, "got %llu, want %d",
	    (unsigned long long)snap.http[0][1], THREADS * PER_THREAD);
	cr_expect_eq(snap.rcpt[METRICS_RCPT_DELIVERED], (uint64_t)THREADS * PER_THREAD, "got %llu, want %d",
	    (unsigned long long)snap.rcpt[METRICS_RCPT_DELIVERED], THREADS * PER_THREAD);
}
