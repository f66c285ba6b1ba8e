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
	struct store_queue_stats q = { .ready = { 3, 1 }, .claimed = { 2, 0 }, .oldest_ms = { 1500, 0 },
		.due = 7, .events = 11 };
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
	snap.rcpt[METRICS_RCPT_DELIVERED][METRICS_REASON_OK] = 3;
	snap.rcpt[METRICS_RCPT_DEFERRED][METRICS_REASON_ENH_4 + 7] = 1;
	snap.rcpt[METRICS_RCPT_SUPPRESSED][METRICS_REASON_SUPPRESSED] = 6;
	snap.attempts[METRICS_RCPT_DEFERRED] = 4;
	snap.replies[metrics_reply_class(451, "4.7.1")] = 2;
	snap.ndest = 1;
	memcpy(snap.dest[0], "gmail.com", 10);
	snap.dest_n[0][METRICS_RCPT_DELIVERED] = 5;
	snap.dest_other[METRICS_RCPT_FAILED] = 1;
	q.nwh = 1;
	memcpy(q.wh[0].endpoint, "default", 8);
	q.wh[0].n = 9;
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
		"txmail_recipients_total{status=\"delivered\",reason=\"ok\"} 3",
		"txmail_recipients_total{status=\"deferred\",reason=\"4.7\"} 1",
		"txmail_recipients_total{status=\"deferred\",reason=\"4xx\"} 0",
		"txmail_recipients_total{status=\"failed\",reason=\"5xx\"} 0",
		"txmail_recipients_total{status=\"expired\",reason=\"4xx\"} 0",
		"txmail_recipients_total{status=\"suppressed\",reason=\"suppressed\"} 6",
		"txmail_recipients_total{status=\"canceled\",reason=\"canceled\"} 0",
		"txmail_delivery_attempts_total{result=\"deferred\"} 4",
		"txmail_smtp_replies_total{class=\"4.7\"} 2",
		"txmail_smtp_replies_total{class=\"2xx\"} 0",
		"txmail_destination_outcomes_total{destination=\"gmail.com\",result=\"delivered\"} 5",
		"txmail_destination_outcomes_total{destination=\"other\",result=\"failed\"} 1",
		"# TYPE txmail_delivery_latency_seconds histogram",
		"txmail_delivery_latency_seconds_bucket{priority=\"high\",le=\"+Inf\"} 0",
		"txmail_webhook_latency_seconds_count 0",
		"txmail_build_info{version=\"" TXMAIL_VERSION "\"} 1",
		"txmail_destinations_suspended 0",
		"txmail_webhook_attempts_total{result=\"success\"} 8",
		"txmail_webhook_attempts_total{result=\"retry\"} 2",
		"txmail_webhook_attempts_total{result=\"gave_up\"} 0",
		"txmail_smtp_transactions_total{result=\"tempfail\"} 12",
		"# TYPE txmail_http_body_bytes_in_flight gauge",
		"txmail_http_body_bytes_in_flight 4097",
		"# TYPE txmail_queue_ready gauge",
		"txmail_queue_ready{lane=\"normal\"} 3",
		"txmail_queue_ready{lane=\"high\"} 1",
		"txmail_queue_claimed{lane=\"normal\"} 2",
		"txmail_queue_claimed{lane=\"high\"} 0",
		"txmail_queue_oldest_age_seconds{lane=\"normal\"} 1.500",
		"txmail_webhook_backlog{endpoint=\"default\"} 9",
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
	cr_expect(!has_line(t, "txmail_smtp_replies_total{class=\"5.1\"} 0"), "got a zero enhanced class line");
	cr_expect(strstr(t, "txmail_webhook_backlog{endpoint=\"other\"}") == NULL, "got an other backlog, want none");
	cr_expect(strstr(t, "# TYPE txmail_queue_ready gauge") < strstr(t, "txmail_queue_ready{lane=\"normal\"} 3"),
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
	metrics_recipient("suppressed");
	metrics_recipient("canceled");
	metrics_recipient("canceled");
	metrics_recipient("nonsense");                /* ignored */
	metrics_recipient(NULL);
	metrics_recipient_as("failed", METRICS_REASON_BOUNCED);
	metrics_recipient_as("failed", METRICS_REASON_COUNT);   /* ignored */
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
	cr_expect_eq(snap.rcpt[METRICS_RCPT_SUPPRESSED][METRICS_REASON_SUPPRESSED], 1, "got suppressed %llu, want 1",
	    (unsigned long long)snap.rcpt[METRICS_RCPT_SUPPRESSED][METRICS_REASON_SUPPRESSED]);
	cr_expect_eq(snap.rcpt[METRICS_RCPT_CANCELED][METRICS_REASON_CANCELED], 2, "got canceled %llu, want 2",
	    (unsigned long long)snap.rcpt[METRICS_RCPT_CANCELED][METRICS_REASON_CANCELED]);
	cr_expect_eq(snap.rcpt[METRICS_RCPT_FAILED][METRICS_REASON_BOUNCED], 1, "got bounced %llu, want 1",
	    (unsigned long long)snap.rcpt[METRICS_RCPT_FAILED][METRICS_REASON_BOUNCED]);
	cr_expect_str_eq(metrics_reason_name(METRICS_REASON_BOUNCED), "bounced");
	cr_expect_str_eq(metrics_reason_name(METRICS_REASON_ENH_4 + 7), "4.7");
	cr_expect_str_eq(metrics_reason_name(METRICS_REASON_ENH_5), "5.0");
	cr_expect_str_eq(metrics_reason_name(METRICS_REASON_OTHER), "other");
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
		metrics_recipient("suppressed");
		metrics_accept_duration("/v1/messages", 0.003);
		metrics_webhook_latency(120.0);
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
	cr_expect_eq(snap.rcpt[METRICS_RCPT_SUPPRESSED][METRICS_REASON_SUPPRESSED], (uint64_t)THREADS * PER_THREAD,
	    "got %llu, want %d", (unsigned long long)snap.rcpt[METRICS_RCPT_SUPPRESSED][METRICS_REASON_SUPPRESSED],
	    THREADS * PER_THREAD);
	/* the histograms are sharded by thread: the snapshot sums the shards */
	cr_assert_eq(snap.naccept, 1, "got %zu accept routes, want 1", snap.naccept);
	cr_expect_eq(snap.accept[0].n[0], (uint64_t)THREADS * PER_THREAD, "got %llu in le=0.005, want %d",
	    (unsigned long long)snap.accept[0].n[0], THREADS * PER_THREAD);
	cr_expect_eq(snap.accept[0].sum_us, (uint64_t)THREADS * PER_THREAD * 3000, "got sum %llu us",
	    (unsigned long long)snap.accept[0].sum_us);
	cr_expect_eq(snap.webhook_latency.n[13], (uint64_t)THREADS * PER_THREAD, "got %llu in le=120, want %d",
	    (unsigned long long)snap.webhook_latency.n[13], THREADS * PER_THREAD);
}

/* --- histograms -------------------------------------------------------- */

Test(metrics, bucket_bounds_and_index)
{
	static const struct { uint64_t us; size_t want; } cases[] = {
		{ 0, 0 }, { 5000, 0 }, { 5001, 1 }, { 10000, 1 }, { 999999, 7 }, { 1000000, 7 },
		{ 1000001, 8 }, { 60000000, 12 }, { 3600000000u, 16 }, { 3600000001u, 17 },
		{ UINT64_MAX, METRICS_NBUCKETS },
	};
	double prev = 0;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t got = metrics_bucket_index(cases[i].us);

		cr_expect_eq(got, cases[i].want, "bucket of %llu us: got %zu, want %zu",
		    (unsigned long long)cases[i].us, got, cases[i].want);
	}
	for (size_t i = 0; i < METRICS_NBUCKETS; i++) {
		cr_expect(metrics_bucket_le(i) > prev, "bound %zu: got %g after %g, want increasing", i,
		    metrics_bucket_le(i), prev);
		prev = metrics_bucket_le(i);
	}
	cr_expect(metrics_bucket_le(0) == 0.005 && metrics_bucket_le(METRICS_NBUCKETS - 1) == 3600.0,
	    "got bounds %g..%g, want 0.005..3600", metrics_bucket_le(0), metrics_bucket_le(METRICS_NBUCKETS - 1));
}

Test(metrics, histogram_lines_are_cumulative)
{
	struct metrics_snapshot snap;
	char *t;

	metrics_reset();
	metrics_webhook_latency(0.004);    /* le 0.005 */
	metrics_webhook_latency(0.2);      /* le 0.25 */
	metrics_webhook_latency(0.25);     /* le 0.25: bounds are inclusive */
	metrics_webhook_latency(7200);     /* +Inf */
	metrics_webhook_latency(-1);       /* a clock step: counted as 0 */
	metrics_snapshot(&snap);
	t = metrics_render(&snap, NULL, 0);
	cr_assert_not_null(t);
	static const char *const want[] = {
		"# TYPE txmail_webhook_latency_seconds histogram",
		"txmail_webhook_latency_seconds_bucket{le=\"0.005\"} 2",
		"txmail_webhook_latency_seconds_bucket{le=\"0.1\"} 2",
		"txmail_webhook_latency_seconds_bucket{le=\"0.25\"} 4",
		"txmail_webhook_latency_seconds_bucket{le=\"3600\"} 4",
		"txmail_webhook_latency_seconds_bucket{le=\"+Inf\"} 5",
		"txmail_webhook_latency_seconds_sum 7200.454000",
		"txmail_webhook_latency_seconds_count 5",
		"txmail_smtp_transaction_duration_seconds_count{result=\"ok\"} 0",
	};
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
		cr_expect(has_line(t, want[i]), "got no line %s in:\n%s", want[i], t);
	free(t);
}

/* --- reasons and reply classes ------------------------------------------ */

Test(metrics, reasons)
{
	static const struct {
		const char *status; int code; const char *enh; const char *stage; const char *want;
	} cases[] = {
		{ "delivered", 250, "2.0.0", "dot", "ok" },
		{ "deferred", 451, "4.7.1", "rcpt", "4.7" },
		{ "deferred", 451, "", "rcpt", "4xx" },
		{ "deferred", 451, "5.7.1", "rcpt", "4xx" },     /* class disagrees with the code */
		{ "deferred", 451, "4.9.1", "rcpt", "4xx" },     /* no such subject */
		{ "failed", 550, "5.1.1", "rcpt", "5.1" },
		{ "failed", 554, "", "data", "5xx" },
		{ "expired", 421, "4.4.2", "banner", "4.4" },
		{ "deferred", 0, "", "connect", "connect" },
		{ "deferred", 0, "", "tls", "connect" },
		{ "deferred", 0, "", "dns", "dns" },
		{ "failed", 0, "", "route", "dns" },
		{ "deferred", 0, "", "suspended", "suspended" },
		{ "deferred", 0, "", "data", "timeout" },
		{ "deferred", 0, "", "queue", "other" },
		{ "deferred", 0, "", NULL, "other" },
		{ "suppressed", 0, "", NULL, "suppressed" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *got = metrics_reason_name(metrics_reason(cases[i].status, cases[i].code,
		    cases[i].enh, cases[i].stage));

		cr_expect_str_eq(got, cases[i].want, "case %zu (%s %d %s %s): got %s, want %s", i,
		    cases[i].status, cases[i].code, cases[i].enh, cases[i].stage ? cases[i].stage : "NULL",
		    got, cases[i].want);
	}
}

Test(metrics, reply_classes)
{
	static const struct { int code; const char *enh; int want; } cases[] = {
		{ 250, "2.0.0", METRICS_NCLASSES + 0 },
		{ 250, "", 1 },
		{ 250, NULL, 1 },
		{ 451, "4.3.0", METRICS_NCLASSES + 8 + 3 },
		{ 550, "5.7.1", METRICS_NCLASSES + 16 + 7 },
		{ 550, "5.1", 4 },          /* not C.S.D */
		{ 354, "", 2 },
		{ 0, "5.1.1", -1 },
		{ 600, "", -1 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int got = metrics_reply_class(cases[i].code, cases[i].enh);

		cr_expect_eq(got, cases[i].want, "%d %s: got %d, want %d", cases[i].code,
		    cases[i].enh ? cases[i].enh : "NULL", got, cases[i].want);
	}
}

/* --- outcomes and the top-N destination table ------------------------------ */

static void
outcome(const char *status, int counted, const char *dest, int code, const char *enh)
{
	struct metrics_outcome o = {
		.status = status, .counted = counted, .code = code, .enhanced = enh, .stage = "rcpt",
		.destination = dest, .lane = STORE_LANE_HIGH, .latency_ms = 2000,
	};

	metrics_delivery_outcome(&o);
}

Test(metrics, outcomes_count_recipients_once_and_attempts_each)
{
	struct metrics_snapshot snap;

	metrics_reset();
	outcome("deferred", 1, "example.com", 451, "4.3.0");   /* its first deferral */
	outcome("deferred", 0, "example.com", 451, "4.3.0");   /* the second: an attempt only */
	outcome("delivered", 1, "example.com", 250, "2.0.0");
	outcome("delivered", 0, "example.com", 250, "2.0.0");  /* recorded before: no latency either */
	outcome("bogus", 1, "example.com", 250, "");           /* ignored */
	metrics_snapshot(&snap);
	cr_expect_eq(snap.rcpt[METRICS_RCPT_DEFERRED][METRICS_REASON_ENH_4 + 3], 1, "got deferred %llu, want 1",
	    (unsigned long long)snap.rcpt[METRICS_RCPT_DEFERRED][METRICS_REASON_ENH_4 + 3]);
	cr_expect_eq(snap.attempts[METRICS_RCPT_DEFERRED], 2, "got deferred attempts %llu, want 2",
	    (unsigned long long)snap.attempts[METRICS_RCPT_DEFERRED]);
	cr_expect_eq(snap.rcpt[METRICS_RCPT_DELIVERED][METRICS_REASON_OK], 1, "got delivered %llu, want 1",
	    (unsigned long long)snap.rcpt[METRICS_RCPT_DELIVERED][METRICS_REASON_OK]);
	cr_expect_eq(snap.latency[1].n[metrics_bucket_index(2000000)], 1, "got no high-lane latency at 2 s");
	cr_expect_eq(snap.latency[0].n[metrics_bucket_index(2000000)], 0, "got a normal-lane latency");
	/* the destination took a slot at its METRICS_DEST_PROMOTE-th outcome */
	cr_assert_eq(snap.ndest, 1, "got %zu destinations, want 1", snap.ndest);
	cr_expect_str_eq(snap.dest[0], "example.com");
	cr_expect_eq(snap.dest_other[METRICS_RCPT_DEFERRED], 2, "got other deferred %llu, want 2",
	    (unsigned long long)snap.dest_other[METRICS_RCPT_DEFERRED]);
	cr_expect_eq(snap.dest_n[0][METRICS_RCPT_DELIVERED], 2, "got example.com delivered %llu, want 2",
	    (unsigned long long)snap.dest_n[0][METRICS_RCPT_DELIVERED]);
}

Test(metrics, top_destinations_are_bounded)
{
	struct metrics_snapshot snap;
	char name[64];
	uint64_t total = 0;

	metrics_reset();
	/* 1000 one-off destinations never take a slot */
	for (int i = 0; i < 1000; i++) {
		snprintf(name, sizeof(name), "once%d.example", i);
		outcome("delivered", 1, name, 250, "");
	}
	metrics_snapshot(&snap);
	cr_expect_eq(snap.ndest, 0, "got %zu destinations from one-offs, want 0", snap.ndest);
	/* 30 frequent ones (mixed case): the first 20 get a slot, the rest stay "other" */
	for (int round = 0; round < 5; round++)
		for (int i = 0; i < 30; i++) {
			snprintf(name, sizeof(name), round % 2 ? "Busy%d.Example" : "busy%d.example", i);
			outcome("deferred", 0, name, 451, "");
		}
	metrics_snapshot(&snap);
	cr_assert_eq(snap.ndest, METRICS_TOP_DESTINATIONS, "got %zu destinations, want %d", snap.ndest,
	    METRICS_TOP_DESTINATIONS);
	for (size_t i = 0; i < snap.ndest; i++) {
		cr_expect(strncmp(snap.dest[i], "busy", 4) == 0, "got slot %zu = %s, want a busy one", i, snap.dest[i]);
		total += snap.dest_n[i][METRICS_RCPT_DEFERRED];
	}
	total += snap.dest_other[METRICS_RCPT_DEFERRED];
	cr_expect_eq(total, 150, "got %llu deferred attempts over all destinations, want 150",
	    (unsigned long long)total);
	cr_expect_eq(snap.dest_other[METRICS_RCPT_DELIVERED], 1000, "got other delivered %llu, want 1000",
	    (unsigned long long)snap.dest_other[METRICS_RCPT_DELIVERED]);
	/* one too long for a label is "other" */
	{
		char longname[METRICS_DEST_MAX + 10];

		memset(longname, 'x', sizeof(longname) - 1);
		longname[sizeof(longname) - 1] = '\0';
		for (int i = 0; i < 5; i++)
			outcome("failed", 1, longname, 550, "");
	}
	metrics_snapshot(&snap);
	cr_expect_eq(snap.dest_other[METRICS_RCPT_FAILED], 5, "got other failed %llu, want 5",
	    (unsigned long long)snap.dest_other[METRICS_RCPT_FAILED]);
}

/* --- collectors and process figures -------------------------------------- */

static void
collect3(void *arg, struct metrics_collect *out)
{
	out->suspended += *(int *)arg;
}

Test(metrics, collectors_and_process)
{
	struct metrics_snapshot snap;
	int a = 3, b = 4;

	metrics_reset();
	cr_assert_eq(metrics_collector_add(collect3, &a), 0);
	cr_assert_eq(metrics_collector_add(collect3, &b), 0);
	metrics_snapshot(&snap);
	cr_expect_eq(snap.suspended, 7, "got suspended %lld, want 7", (long long)snap.suspended);
	metrics_collector_del(collect3, &a);
	metrics_snapshot(&snap);
	cr_expect_eq(snap.suspended, 4, "got suspended %lld, want 4", (long long)snap.suspended);
	metrics_collector_del(collect3, &b);
	metrics_snapshot(&snap);
	cr_expect_eq(snap.suspended, 0, "got suspended %lld, want 0", (long long)snap.suspended);
	cr_assert(snap.proc.ok, "got no process figures");
	cr_expect(snap.proc.rss_bytes > 1 << 20, "got rss %lld", (long long)snap.proc.rss_bytes);
	cr_expect(snap.proc.open_fds >= 3, "got open fds %lld", (long long)snap.proc.open_fds);
	cr_expect(snap.proc.start_seconds > 1.6e9, "got start %f", snap.proc.start_seconds);
}
