/*
 * test_store_webhooks.c - the scripts behind operating a webhook endpoint
 * (issue 17) against a real redis-server: PATCH (ep_update, with the
 * replay and the retention on enable), rotate (ep_rotate), failure runs
 * and disabling (ep_fail), the deliveries log (wh_log, capped; listed
 * newest first with a cursor), finding an event to retry (wh_find) and a
 * disabled endpoint's retention (wh_prune). Each test starts its own
 * redis-server on a random loopback port (redis_child.h).
 */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "../../server/store.h"
#include "../../server/util.h"

#define REDIS_CHILD_DIR "/tmp/txm-test-store-wh-XXXXXX"
#include "redis_child.h"

TestSuite(store_webhooks, .init = setup, .fini = teardown);

/* find - endpoint id of the store's list (a copy of its fields in *out); 1 when found. */
static int
find(const char *id, struct store_endpoint **eps, size_t *n, struct store_endpoint **out)
{
	cr_assert_eq(store_endpoint_list(st, eps, n), 0);
	for (size_t i = 0; i < *n; i++)
		if (strcmp((*eps)[i].id, id) == 0) {
			*out = &(*eps)[i];
			return 1;
		}
	return 0;
}

static void
make_ep(const char *id, const char *project)
{
	struct store_endpoint ep = { .id = (char *)id, .url = (char *)"http://h/x",
		.secret = (char *)"whsec_AAAA", .created_ms = 1, .project = (char *)project,
		.description = (char *)"first" };

	cr_assert_eq(store_endpoint_create(st, &ep), 0);
}

static void
park(const char *evt, const char *ep, int64_t first_ms, int64_t due_ms)
{
	struct store_whpark p = { .member = NULL, .body = "{\"id\":\"x\",\"type\":\"message.delivered\"}",
		.project = "default", .attempts = 1, .first_ms = first_ms, .due_ms = due_ms };
	char member[128];

	snprintf(member, sizeof(member), "%s/%s", evt, ep);
	p.member = member;
	cr_assert_eq(store_webhook_settle(st, &p, 1, NULL, 0), 1, "park %s", member);
}

Test(store_webhooks, update_fields_and_project)
{
	struct store_endpoint *eps = NULL, *e = NULL;
	const char *evs[2] = { "message.failed", "webhook.test" };
	struct store_endpoint_patch p = { .url = "http://h/new", .description = "second", .set_events = 1,
		.events = evs, .nevents = 2, .enabled = -1, .now_ms = 100 };
	size_t n = 0;

	make_ep("wh_a", "default");
	cr_assert_eq(find("wh_a", &eps, &n, &e), 1);
	cr_expect_str_eq(e->description, "first");
	cr_expect_eq(e->disabled, 0);
	cr_expect_str_eq(e->secret_old, "");
	store_endpoints_free(eps, n);

	cr_expect_eq(store_endpoint_update(st, "wh_a", "other", &p), STORE_ERR_NOT_FOUND,
	    "another project's: want not found");
	cr_expect_eq(store_endpoint_update(st, "wh_none", NULL, &p), STORE_ERR_NOT_FOUND);
	cr_expect_eq(store_endpoint_update(st, "default", NULL, &p), STORE_ERR_NOT_FOUND);
	cr_assert_eq(store_endpoint_update(st, "wh_a", "default", &p), 0);
	cr_assert_eq(find("wh_a", &eps, &n, &e), 1);
	cr_expect_str_eq(e->url, "http://h/new");
	cr_expect_str_eq(e->description, "second");
	cr_assert_eq(e->nevents, 2);
	cr_expect_str_eq(e->events[1], "webhook.test");
	store_endpoints_free(eps, n);
}

Test(store_webhooks, disable_keeps_enable_replays_within_retention)
{
	struct store_endpoint *eps = NULL, *e = NULL;
	struct store_endpoint_patch off = { .enabled = 0, .reason = "by hand", .now_ms = 5000 };
	struct store_endpoint_patch on = { .enabled = 1, .now_ms = 9000, .keep_after_ms = 2000 };
	size_t n = 0;

	make_ep("wh_a", "default");
	cr_assert_eq(store_endpoint_update(st, "wh_a", NULL, &off), 0);
	cr_assert_eq(find("wh_a", &eps, &n, &e), 1);
	cr_expect_eq(e->disabled, 1);
	cr_expect_str_eq(e->disabled_reason, "by hand");
	cr_expect_eq(e->disabled_ms, 5000);
	store_endpoints_free(eps, n);

	park("evt_old", "wh_a", 1000, 1000);        /* older than keep_after: dropped at enable */
	park("evt_new", "wh_a", 3000, 3000);        /* kept: due at the enable */
	park("evt_retry", "wh_a", 4000, 99999999);  /* a retry far ahead: due at the enable too */
	cr_assert_eq(store_endpoint_update(st, "wh_a", NULL, &on), 0);
	cr_assert_eq(find("wh_a", &eps, &n, &e), 1);
	cr_expect_eq(e->disabled, 0);
	cr_expect_str_eq(e->disabled_reason, "");
	store_endpoints_free(eps, n);
	cr_expect_eq(rint_cmd("EXISTS %s", "txm{0}:wh:evt_old/wh_a"), 0, "old delivery: want dropped");
	cr_expect_eq(rint_cmd("ZCARD %s", "txm{0}:whq:wh_a"), 2);
	cr_expect_eq(store_webhook_next_due(st, "wh_a"), 9000, "replay: want every kept one due at 9000");
	{
		struct store_whd *w[4];
		int k = store_webhook_claim(st, "wh_a", 9000, 1000, 4, w);

		cr_expect_eq(k, 2, "claimable after the enable: got %d, want 2", k);
		for (int i = 0; i < k; i++)
			store_whd_free(w[i]);
	}
}

Test(store_webhooks, rotate)
{
	struct store_endpoint *eps = NULL, *e = NULL;
	size_t n = 0;

	make_ep("wh_a", "p1");
	cr_expect_eq(store_endpoint_rotate(st, "wh_a", "p2", "whsec_BBBB", 10), STORE_ERR_NOT_FOUND);
	cr_assert_eq(store_endpoint_rotate(st, "wh_a", "p1", "whsec_BBBB", 7000), 0);
	cr_assert_eq(find("wh_a", &eps, &n, &e), 1);
	cr_expect_str_eq(e->secret, "whsec_BBBB");
	cr_expect_str_eq(e->secret_old, "whsec_AAAA");
	cr_expect_eq(e->old_until_ms, 7000);
	store_endpoints_free(eps, n);
	/* no overlap: the previous one goes at once */
	cr_assert_eq(store_endpoint_rotate(st, "wh_a", NULL, "whsec_CCCC", 0), 0);
	cr_assert_eq(find("wh_a", &eps, &n, &e), 1);
	cr_expect_str_eq(e->secret, "whsec_CCCC");
	cr_expect_str_eq(e->secret_old, "");
	cr_expect_eq(e->old_until_ms, 0);
	store_endpoints_free(eps, n);
}

Test(store_webhooks, failure_run_disables_once)
{
	struct store_endpoint *eps = NULL, *e = NULL;
	size_t n = 0;

	make_ep("wh_a", "default");
	cr_expect_eq(store_endpoint_failed(st, "wh_a", 1000, "HTTP 500", 5000, "r"), 0);
	cr_expect_eq(store_endpoint_failed(st, "wh_a", 3000, "HTTP 500", 5000, "r"), 0);
	cr_assert_eq(find("wh_a", &eps, &n, &e), 1);
	cr_expect_eq(e->failing_since_ms, 1000, "the run starts at its first failure");
	cr_expect_eq(e->disabled, 0);
	store_endpoints_free(eps, n);
	/* a success ends the run: the next failure starts a new one */
	cr_assert_eq(store_endpoint_recovered(st, "wh_a"), 0);
	cr_expect_eq(store_endpoint_failed(st, "wh_a", 5500, "HTTP 502", 5000, "r"), 0,
	    "5.5 s after the first failure but 0 s into the new run: not disabled");
	cr_expect_eq(store_endpoint_failed(st, "wh_a", 10500, "HTTP 502", 5000, "failing; HTTP 502"), 1,
	    "5 s into the run: want disabled now");
	cr_expect_eq(store_endpoint_failed(st, "wh_a", 11000, "HTTP 502", 5000, "r"), 0, "only once");
	cr_assert_eq(find("wh_a", &eps, &n, &e), 1);
	cr_expect_eq(e->disabled, 1);
	cr_expect_str_eq(e->disabled_reason, "failing; HTTP 502");
	cr_expect_eq(e->disabled_ms, 10500);
	store_endpoints_free(eps, n);
	/* 0: never disabled; "default" has no record and is never disabled (nor created) */
	make_ep("wh_b", "default");
	cr_expect_eq(store_endpoint_failed(st, "wh_b", 1, "x", 0, "r"), 0);
	cr_expect_eq(store_endpoint_failed(st, "wh_b", 999999999, "x", 0, "r"), 0);
	cr_expect_eq(store_endpoint_failed(st, "default", 1, "x", 1, "r"), 0);
	cr_expect_eq(store_endpoint_failed(st, "default", 999999, "x", 1, "r"), 0);
	cr_expect_eq(rint_cmd("EXISTS %s", "txm{0}:whep:default"), 0);
	{
		int64_t backlog, fail_ms;
		char fail[64];

		cr_assert_eq(store_endpoint_health(st, "default", &backlog, &fail_ms, fail, sizeof(fail)), 0);
		cr_expect_eq(fail_ms, 999999);
		cr_expect_str_eq(fail, "x");
	}
}

Test(store_webhooks, log_capped_newest_first_paged_and_found)
{
	struct store_whlog *rows = NULL;
	size_t n = 0, total = 0;
	char after[64] = "";
	int attempts = 0, queued = 0;
	char *body = NULL;

	make_ep("wh_a", "default");
	for (int i = 0; i < STORE_WHLOG_MAX + 5; i++) {
		char ev[32], b[64];
		struct store_whlog lg = { .endpoint = (char *)"wh_a", .event_id = ev, .type = (char *)"message.delivered",
			.attempt = 1, .status = i % 2 ? 500 : 200, .duration_ms = i, .response = (char *)"ok",
			.error = (char *)"", .next_ms = i % 2 ? 77 : 0, .at_ms = 1000 + i, .body = b };

		snprintf(ev, sizeof(ev), "evt_%04d", i);
		snprintf(b, sizeof(b), "{\"id\":\"evt_%04d\"}", i);
		cr_assert_eq(store_webhook_log(st, &lg, 1), 0);
	}
	cr_expect_eq(rint_cmd("XLEN %s", "txm{0}:whlog:wh_a"), STORE_WHLOG_MAX, "want the log capped");
	/* an endpoint that does not exist gets no log */
	{
		struct store_whlog lg = { .endpoint = (char *)"wh_gone", .event_id = (char *)"evt_x", .at_ms = 1 };

		cr_assert_eq(store_webhook_log(st, &lg, 1), 0);
		cr_expect_eq(rint_cmd("EXISTS %s", "txm{0}:whlog:wh_gone"), 0);
	}
	for (;;) {
		cr_assert_eq(store_webhook_log_list(st, "wh_a", after[0] ? after : NULL, 300, &rows, &n), 0);
		if (n == 0)
			break;
		if (total == 0) {
			cr_expect_str_eq(rows[0].event_id, "evt_1004", "newest first: got %s", rows[0].event_id);
			cr_expect_eq(rows[0].status, 200);
			cr_expect_eq(rows[0].next_ms, 0);
			cr_expect_eq(rows[1].status, 500);
			cr_expect_eq(rows[1].next_ms, 77);
			cr_expect_eq(rows[0].at_ms, 2004);
			cr_expect_eq(rows[0].body, NULL, "a listing carries no body");
		}
		total += n;
		util_strlcpy(after, rows[n - 1].entry, sizeof(after));
		store_whlogs_free(rows, n);
		rows = NULL;
	}
	cr_expect_eq(total, STORE_WHLOG_MAX, "paged through %zu, want %d", total, STORE_WHLOG_MAX);
	cr_expect_eq(store_webhook_log_list(st, "wh_a", "not-an-id!", 10, &rows, &n), STORE_ERR_PROTO);

	cr_assert_eq(store_webhook_find(st, "wh_a", "evt_0500", &body, &attempts, &queued), 0);
	cr_expect_str_eq(body, "{\"id\":\"evt_0500\"}");
	cr_expect_eq(attempts, 1);
	cr_expect_eq(queued, 0);
	free(body);
	cr_expect_eq(store_webhook_find(st, "wh_a", "evt_0001", &body, &attempts, &queued), STORE_ERR_NOT_FOUND,
	    "trimmed off the log: want not found");
	/* a queued delivery's body wins, and says it is queued */
	park("evt_q", "wh_a", 1, 1);
	cr_assert_eq(store_webhook_find(st, "wh_a", "evt_q", &body, &attempts, &queued), 0);
	cr_expect_eq(queued, 1);
	cr_expect_eq(attempts, 0);
	free(body);
	/* delete drops the log */
	cr_assert_eq(store_endpoint_delete(st, "wh_a", NULL), 0);
	cr_expect_eq(rint_cmd("EXISTS %s", "txm{0}:whlog:wh_a"), 0);
}

Test(store_webhooks, prune_past_retention)
{
	make_ep("wh_a", "default");
	park("evt_1", "wh_a", 1000, 1000);
	park("evt_2", "wh_a", 1500, 1500);
	park("evt_3", "wh_a", 5000, 5000);
	park("evt_4", "wh_a", 1000, 9000);   /* due later than the cutoff: left to the enable's check */
	cr_expect_eq(store_webhook_prune(st, "wh_a", 2000, 1), 1, "max 1: want 1 dropped");
	cr_expect_eq(store_webhook_prune(st, "wh_a", 2000, 500), 1);
	cr_expect_eq(store_webhook_prune(st, "wh_a", 2000, 500), 0);
	cr_expect_eq(rint_cmd("ZCARD %s", "txm{0}:whq:wh_a"), 2);
	cr_expect_eq(rint_cmd("EXISTS %s", "txm{0}:wh:evt_1/wh_a"), 0);
	cr_expect_eq(rint_cmd("EXISTS %s", "txm{0}:wh:evt_3/wh_a"), 1);
}
