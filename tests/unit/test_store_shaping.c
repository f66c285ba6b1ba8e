/*
 * test_store_shaping.c - store_shaping.c against a real redis-server (one
 * per test, started as in test_store.c): the shared rate slots (two
 * handles booking from one bucket never overlap, an idle domain's key
 * expires), the shared suspensions (set, listed, cleared, over, capped)
 * and the saturated destinations (published, merged with what the
 * enqueue gave out, bounded).
 * Inspected with a separate hiredis connection.
 */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <fcntl.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "../../server/shaper.h"
#include "../../server/store.h"
#include "../../server/util.h"

#define REDIS_CHILD_DIR "/tmp/txm-test-shaping-XXXXXX"
#include "redis_child.h"

TestSuite(store_shaping, .init = setup, .fini = teardown);

/* --- helpers --------------------------------------------------------------- */

static int
cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return x < y ? -1 : x > y;
}

/* --- rate slots ------------------------------------------------------------ */

Test(store_shaping, reserve_blocks_follow_each_other)
{
	struct store_slot_req r = { "Slow.Test", 200000, 3, 0 };
	int64_t now = 0, first;
	long long ttl;

	cr_assert_eq(store_shape_reserve(st, &r, 1, &now), 0);
	cr_expect(now > 1600000000LL * 1000000, "got now %lld us, want Redis's clock in us", (long long)now);
	cr_expect_eq(r.start_us, now, "idle domain: got start %lld, want now %lld",
	    (long long)r.start_us, (long long)now);
	first = r.start_us;
	r.domain = "slow.test";   /* one bucket whatever the case */
	r.k = 2;
	cr_assert_eq(store_shape_reserve(st, &r, 1, &now), 0);
	cr_expect_eq(r.start_us, first + 3 * 200000, "got start %lld, want %lld (after the first block)",
	    (long long)r.start_us, (long long)(first + 3 * 200000));
	ttl = rint_cmd("PTTL %s", "txm{0}:shape:rate:slow.test");
	cr_expect(ttl > 1000 && ttl <= 1000 + 5 * 200 + 50, "got PTTL %lld, want the block's end + 1 s", ttl);
}

Test(store_shaping, reserve_many_domains_in_one_call)
{
	struct store_slot_req r[3] = {
		{ "a.test", 1000, 10, 0 }, { "b.test", 50000, 1, 0 }, { "a.test", 1000, 5, 0 },
	};
	int64_t now = 0;

	cr_assert_eq(store_shape_reserve(st, r, 3, &now), 0);
	cr_expect_eq(r[0].start_us, now, "a.test: got %lld, want now", (long long)r[0].start_us);
	cr_expect_eq(r[1].start_us, now, "b.test: got %lld, want now", (long long)r[1].start_us);
	cr_expect_eq(r[2].start_us, now + 10 * 1000, "a.test again: got %lld, want now + 10 ms",
	    (long long)(r[2].start_us - now));
}

Test(store_shaping, reserve_bad_arguments)
{
	struct store_slot_req r = { "a.test", 1000, 1, 0 };
	char longd[STORE_SHAPE_KEY_MAX + 2];
	int64_t now;

	memset(longd, 'a', sizeof(longd) - 1);
	longd[sizeof(longd) - 1] = '\0';
	cr_expect_eq(store_shape_reserve(st, &r, 0, &now), STORE_ERR_PROTO);
	r.k = 0;
	cr_expect_eq(store_shape_reserve(st, &r, 1, &now), STORE_ERR_PROTO);
	r.k = 1;
	r.interval_us = 0;
	cr_expect_eq(store_shape_reserve(st, &r, 1, &now), STORE_ERR_PROTO);
	r.interval_us = 1;
	r.domain = longd;
	cr_expect_eq(store_shape_reserve(st, &r, 1, &now), STORE_ERR_PROTO);
	r.domain = "";
	cr_expect_eq(store_shape_reserve(st, &r, 1, &now), STORE_ERR_PROTO);
}

#define RACE_CALLS 200
#define RACE_K 3
#define RACE_IV 100

struct racer {
	struct store *s;
	int64_t slots[RACE_CALLS * RACE_K];
	int fails;
};

static void *
race_main(void *arg)
{
	struct racer *rc = arg;

	for (int i = 0; i < RACE_CALLS; i++) {
		struct store_slot_req r = { "race.test", RACE_IV, RACE_K, 0 };
		int64_t now;

		if (store_shape_reserve(rc->s, &r, 1, &now) != 0) {
			rc->fails++;
			continue;
		}
		for (int j = 0; j < RACE_K; j++)
			rc->slots[i * RACE_K + j] = r.start_us + (int64_t)j * RACE_IV;
	}
	return NULL;
}

/* Two handles (two processes' worth) booking from one bucket at once: no two slots closer than the interval. */
Test(store_shaping, two_handles_never_overlap)
{
	static struct racer rc[2];
	static int64_t all[2 * RACE_CALLS * RACE_K];
	pthread_t t[2];
	size_t n = 0;

	memset(rc, 0, sizeof(rc));
	for (int i = 0; i < 2; i++) {
		rc[i].s = store_open(&rs_addr);
		cr_assert(rc[i].s);
	}
	for (int i = 0; i < 2; i++)
		cr_assert_eq(pthread_create(&t[i], NULL, race_main, &rc[i]), 0);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	for (int i = 0; i < 2; i++) {
		cr_expect_eq(rc[i].fails, 0, "handle %d: %d calls failed", i, rc[i].fails);
		memcpy(all + n, rc[i].slots, sizeof(rc[i].slots));
		n += RACE_CALLS * RACE_K;
		store_close(rc[i].s);
	}
	qsort(all, n, sizeof(all[0]), cmp_i64);
	for (size_t i = 1; i < n; i++)
		cr_assert(all[i] - all[i - 1] >= RACE_IV, "slots %zu and %zu are %lld us apart, want >= %d",
		    i - 1, i, (long long)(all[i] - all[i - 1]), RACE_IV);
}

Test(store_shaping, reserve_redis_down_is_unavailable)
{
	struct store_slot_req r = { "a.test", 1000, 1, 0 };
	int64_t now, t0;

	redis_kill();
	t0 = util_mono_ms();
	cr_expect_eq(store_shape_reserve(st, &r, 1, &now), STORE_ERR_UNAVAILABLE);
	cr_expect(util_mono_ms() - t0 < 3000, "took %lld ms, want a quick failure",
	    (long long)(util_mono_ms() - t0));
}

/* --- suspensions ------------------------------------------------------------- */

Test(store_shaping, suspensions_set_list_clear)
{
	struct store_susp_op ops[2] = { { "relay 127.0.0.1:25", 5000, 5000 }, { "slow.test", 60000, 60000 } };
	struct store_susp *l = NULL;
	size_t n = 0;
	int full = -1;

	cr_assert_eq(store_shape_suspensions(st, ops, 2, 100, &l, &n, &full), 0);
	cr_assert_eq(n, 2, "got %zu suspensions, want 2", n);
	cr_expect_eq(full, 0);
	for (size_t i = 0; i < n; i++) {
		int64_t want = strcmp(l[i].dest, "slow.test") == 0 ? 60000 : 5000;
		cr_expect(l[i].remaining_ms > want - 1000 && l[i].remaining_ms <= want,
		    "%s: got %lld ms left, want about %lld", l[i].dest, (long long)l[i].remaining_ms,
		    (long long)want);
		cr_expect_eq(l[i].backoff_ms, want, "%s: got backoff %lld, want %lld", l[i].dest,
		    (long long)l[i].backoff_ms, (long long)want);
	}
	free(l);
	/* another handle (another process) sees them with no change of its own */
	{
		struct store *o = store_open(&rs_addr);
		cr_assert(o);
		cr_assert_eq(store_shape_suspensions(o, NULL, 0, 100, &l, &n, &full), 0);
		cr_expect_eq(n, 2, "other handle: got %zu, want 2", n);
		free(l);
		store_close(o);
	}
	ops[0].remaining_ms = 0;   /* recovered */
	cr_assert_eq(store_shape_suspensions(st, ops, 1, 100, &l, &n, &full), 0);
	cr_assert_eq(n, 1, "after the clear: got %zu, want 1", n);
	cr_expect_str_eq(l[0].dest, "slow.test");
	free(l);
}

Test(store_shaping, suspensions_over_are_dropped)
{
	struct store_susp_op op = { "short.test", 50, 50 };
	struct store_susp *l = NULL;
	size_t n = 9;
	int full;

	cr_assert_eq(store_shape_suspensions(st, &op, 1, 100, &l, &n, &full), 0);
	cr_expect_eq(n, 1);
	free(l);
	usleep(120000);
	cr_assert_eq(store_shape_suspensions(st, NULL, 0, 100, &l, &n, &full), 0);
	cr_expect_eq(n, 0, "got %zu, want 0 once over", n);
	cr_expect_null(l);
	cr_expect_eq(rint_cmd("HLEN %s", "txm{0}:shape:susp"), 0, "the over one is still stored");
}

Test(store_shaping, suspensions_capped)
{
	struct store_susp_op ops[3] = { { "a.test", 10000, 10000 }, { "b.test", 10000, 10000 },
		{ "c.test", 10000, 10000 } };
	struct store_susp *l = NULL;
	size_t n;
	int full;

	cr_assert_eq(store_shape_suspensions(st, ops, 3, 2, &l, &n, &full), 0);
	cr_expect_eq(n, 2, "got %zu, want the cap 2", n);
	cr_expect_eq(full, 1);
	free(l);
	/* one already kept is still updated when full */
	ops[0].remaining_ms = 20000;
	cr_assert_eq(store_shape_suspensions(st, ops, 1, 2, &l, &n, &full), 0);
	cr_assert_eq(n, 2);
	for (size_t i = 0; i < n; i++)
		if (strcmp(l[i].dest, "a.test") == 0)
			cr_expect(l[i].remaining_ms > 15000, "a.test: got %lld ms, want the update",
			    (long long)l[i].remaining_ms);
	free(l);
	cr_expect_eq(rint_cmd("HLEN %s", "txm{0}:shape:susp"), 2);
}

/* --- saturated destinations (sat.lua, read by enqueue.lua) ---------------------- */

/* the field of domain in txm{0}:sat, "" when none */
static void
sat_field(const char *domain, char *out, size_t len)
{
	redisReply *r = redisCommand(rc_ctx, "HGET txm{0}:sat %s", domain);

	cr_assert(r);
	snprintf(out, len, "%s", r->type == REDIS_REPLY_STRING ? r->str : "");
	freeReplyObject(r);
}

Test(store_shaping, saturate_publish_and_merge)
{
	int64_t now = util_now_ms();
	struct store_sat v = { "Tarpit.Test", now + 5000, now + 1000, 250, 600000, 100 };
	char got[160], want[160];
	redisReply *r;

	cr_assert_eq(store_saturate(st, &v, 1), 0);
	cr_expect_eq(v.next_ms, now + 1000, "nothing given out yet: got next %lld", (long long)v.next_ms);
	sat_field("tarpit.test", got, sizeof(got));
	snprintf(want, sizeof(want), "%lld %lld 250 600000 100 0", (long long)(now + 5000), (long long)(now + 1000));
	cr_expect_str_eq(got, want, "one field per domain, lower-cased");
	/* the enqueue gave out slots up to now + 9 s (and spread 3 past max): published again
	 * with an earlier next, the later one and the count are kept */
	snprintf(want, sizeof(want), "%lld %lld 250 600000 100 3", (long long)(now + 5000), (long long)(now + 9000));
	r = redisCommand(rc_ctx, "HSET txm{0}:sat tarpit.test %s", want);
	freeReplyObject(r);
	v.until_ms = now + 7000;
	v.next_ms = now + 2000;
	v.step_ms = 500;
	cr_assert_eq(store_saturate(st, &v, 1), 0);
	cr_expect_eq(v.next_ms, now + 9000, "got next %lld, want the enqueue's %lld", (long long)v.next_ms,
	    (long long)(now + 9000));
	sat_field("tarpit.test", got, sizeof(got));
	snprintf(want, sizeof(want), "%lld %lld 500 600000 100 3", (long long)(now + 7000), (long long)(now + 9000));
	cr_expect_str_eq(got, want);
	/* cleared (until = now, as a feeder does when the destination has room again): when it
	 * is published again its slots start from the given next, the count from 0 */
	v.until_ms = util_now_ms();
	cr_assert_eq(store_saturate(st, &v, 1), 0);
	usleep(2000);
	v.until_ms = now + 8000;
	v.next_ms = now + 1500;
	cr_assert_eq(store_saturate(st, &v, 1), 0);
	cr_expect_eq(v.next_ms, now + 1500, "after a clear: got next %lld, want the given one",
	    (long long)v.next_ms);
	sat_field("tarpit.test", got, sizeof(got));
	snprintf(want, sizeof(want), "%lld %lld 500 600000 100 0", (long long)(now + 8000), (long long)(now + 1500));
	cr_expect_str_eq(got, want);
	/* a clear of a domain never published writes nothing */
	{
		struct store_sat c = { "never.test", util_now_ms(), 1, 1, 1, 0 };

		cr_assert_eq(store_saturate(st, &c, 1), 0);
		cr_expect_eq(rint_cmd("HEXISTS txm{0}:sat %s", "never.test"), 0, "a clear added a field");
	}
	/* bad arguments: nothing sent */
	v.step_ms = 0;
	cr_expect_eq(store_saturate(st, &v, 1), STORE_ERR_PROTO);
	v.step_ms = 1;
	v.domain = "";
	cr_expect_eq(store_saturate(st, &v, 1), STORE_ERR_PROTO);
	cr_expect_eq(store_saturate(st, NULL, 1), STORE_ERR_PROTO);
	cr_expect_eq(rint_cmd("HLEN %s", "txm{0}:sat"), 1);
}

Test(store_shaping, saturate_bounded)
{
	int64_t now = util_now_ms();
	struct store_sat v = { "new.test", now + 5000, now + 1000, 250, 600000, 100 };
	char script[400];
	redisReply *r;

	/* full of fields whose time is long up: they go, the new one is kept */
	snprintf(script, sizeof(script), "for i = 1, %d do redis.call('HSET', KEYS[1], 'old' .. i .. '.test', "
	    "'1000 1000 1 600000 100 0') end return 1", STORE_SAT_MAX);
	r = redisCommand(rc_ctx, "EVAL %s 1 txm{0}:sat", script);
	cr_assert(r && r->type == REDIS_REPLY_INTEGER);
	freeReplyObject(r);
	cr_assert_eq(store_saturate(st, &v, 1), 0);
	cr_expect_eq(rint_cmd("HLEN %s", "txm{0}:sat"), 1, "the stale fields are dropped when full");
	/* full of live ones: a new domain is not added, a known one still is updated */
	snprintf(script, sizeof(script), "for i = 2, %d do redis.call('HSET', KEYS[1], 'live' .. i .. '.test', "
	    "'%lld 1000 1 600000 100 0') end return 1", STORE_SAT_MAX, (long long)(now + 60000));
	r = redisCommand(rc_ctx, "EVAL %s 1 txm{0}:sat", script);
	cr_assert(r && r->type == REDIS_REPLY_INTEGER);
	freeReplyObject(r);
	cr_assert_eq(rint_cmd("HLEN %s", "txm{0}:sat"), STORE_SAT_MAX);
	v.domain = "other.test";
	cr_assert_eq(store_saturate(st, &v, 1), 0);
	cr_expect_eq(rint_cmd("HEXISTS txm{0}:sat %s", "other.test"), 0, "added beyond STORE_SAT_MAX");
	v.domain = "new.test";
	v.step_ms = 999;
	cr_assert_eq(store_saturate(st, &v, 1), 0);
	{
		char got[160];

		sat_field("new.test", got, sizeof(got));
		cr_expect(strstr(got, " 999 ") != NULL, "a known domain is updated when full: got %s", got);
	}
	cr_expect_eq(rint_cmd("HLEN %s", "txm{0}:sat"), STORE_SAT_MAX);
}

/* --- two shapers (two processes' worth) on one Redis ---------------------------- */

struct rel {
	pthread_mutex_t mu;
	int n, shut;
	int64_t at_us[64];
};

static int64_t
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void
on_rel(void *item, int64_t until_ms, int shutdown, void *arg)
{
	struct rel *r = arg;

	(void)item;
	(void)until_ms;
	pthread_mutex_lock(&r->mu);
	if (shutdown)
		r->shut++;
	else if (r->n < 64)
		r->at_us[r->n++] = now_us();
	pthread_mutex_unlock(&r->mu);
}

static int
rel_count(struct rel *r)
{
	int n;

	pthread_mutex_lock(&r->mu);
	n = r->n;
	pthread_mutex_unlock(&r->mu);
	return n;
}

Test(store_shaping, two_shapers_share_one_rate)
{
	static struct rel r = { .mu = PTHREAD_MUTEX_INITIALIZER };
	struct shaper_config c = { "q.test=50", { 5, 10000, 600000, 1 }, on_rel, &r, &rs_addr };
	struct shaper *s[2];
	char err[256];
	int tags[2][10];
	int64_t until, all[20];
	double el;

	for (int k = 0; k < 2; k++) {
		s[k] = shaper_new(&c, err, sizeof(err));
		cr_assert_not_null(s[k], "shaper_new: %s", err);
	}
	for (int i = 0; i < 10; i++)
		for (int k = 0; k < 2; k++) {
			enum shaper_verdict v = shaper_admit(s[k], "q.test", "q.test", &tags[k][i], &until);
			cr_expect_eq(v, SHAPER_HELD, "shaper %d item %d: got %d, want held (a block first)", k, i,
			    (int)v);
		}
	for (int i = 0; i < 1000 && rel_count(&r) < 20; i++)
		usleep(5000);
	cr_assert_eq(rel_count(&r), 20, "got %d released, want 20", rel_count(&r));
	memcpy(all, r.at_us, sizeof(all));
	qsort(all, 20, sizeof(all[0]), cmp_i64);
	el = (double)(all[19] - all[0]) / 1e6;
	/* one bucket for both: 19 gaps of 20 ms (each alone would take 9 gaps) */
	cr_expect(el >= 0.34, "20 releases over %.3fs, want >= 0.34s (50/s shared by both)", el);
	/* a suspension found by one is read by the other within about a second */
	for (int i = 0; i < 5; i++)
		shaper_report(s[0], "dead.test", 1);
	{
		int64_t deadline = util_mono_ms() + 3000;
		enum shaper_verdict v = SHAPER_SEND;

		while (util_mono_ms() < deadline &&
		    (v = shaper_admit(s[1], "free.test", "dead.test", &tags[1][0], &until)) != SHAPER_SUSPENDED)
			usleep(20000);
		cr_expect_eq(v, SHAPER_SUSPENDED, "the other shaper never learned the suspension");
		cr_expect_eq(shaper_suspended(s[1]), 1);
	}
	/* and lifted for both when one sees it answer */
	shaper_report(s[0], "dead.test", 0);
	{
		int64_t deadline = util_mono_ms() + 3000;

		while (util_mono_ms() < deadline && shaper_suspended(s[1]) != 0)
			usleep(20000);
		cr_expect_eq(shaper_suspended(s[1]), 0, "the other shaper kept a lifted suspension");
	}
	for (int k = 0; k < 2; k++)
		shaper_free(s[k]);
	cr_expect_eq(r.shut, 0);
}
