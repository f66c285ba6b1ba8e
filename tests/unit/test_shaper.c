/*
 * test_shaper.c - the pure shaping core with an injected clock: rate
 * parsing, one-token buckets, suspension thresholds, doubling backoff,
 * reset on success. Also the thread-safe wrapper's hold-and-release.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <string.h>
#include <time.h>

#include "../../server/config.h"
#include "../../server/shaper.h"
#include "../../server/util.h"

static struct shaper_state *
new_state(const char *spec, int thr, int64_t base, int64_t max)
{
	struct shaper_rates *r = NULL;
	struct shaper_params p = { thr, base, max, 1 };
	char err[256];

	cr_assert_eq(shaper_rates_parse(spec, &r, err, sizeof(err)), 0, "parse \"%s\": %s", spec, err);
	return shaper_state_new(&p, r);
}

Test(shaper, rates_parse_good)
{
	static const struct {
		const char *spec;
		const char *domain;
		double want;
		size_t count;
	} cases[] = {
		{ NULL, "gmail.com", 0, 0 },
		{ "", "gmail.com", 0, 0 },
		{ "gmail.com=20,outlook.com=10,*=0", "gmail.com", 20, 3 },
		{ "gmail.com=20,outlook.com=10,*=0", "OUTLOOK.com", 10, 3 },
		{ "gmail.com=20,outlook.com=10,*=0", "other.org", 0, 3 },
		{ "gmail.com=20,*=3", "other.org", 3, 2 },
		{ " gmail.com = 0.5 , ", "gmail.com", 0.5, 1 },
		{ "a.test=5", "sub.a.test", 0, 1 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct shaper_rates *r = NULL;
		char err[256] = "";
		double got;

		cr_assert_eq(shaper_rates_parse(cases[i].spec, &r, err, sizeof(err)), 0,
		    "case %zu: got error \"%s\", want success", i, err);
		got = shaper_rates_lookup(r, cases[i].domain);
		cr_expect(got == cases[i].want, "case %zu (%s): got %g, want %g", i,
		    cases[i].domain, got, cases[i].want);
		cr_expect_eq(shaper_rates_count(r), cases[i].count, "case %zu: got %zu entries, want %zu",
		    i, shaper_rates_count(r), cases[i].count);
		shaper_rates_free(r);
	}
}

Test(shaper, rates_parse_bad)
{
	static const char *const bad[] = {
		"gmail.com", "gmail.com=", "=5", "gmail.com=fast", "gmail.com=-1",
		"gmail.com=5x", "gm ail.com=5", "gmail.com=5,gmail.com=6", "*=1,*=2",
		"gmail.com=nan", "gmail.com=inf", "gmail.com=1e9", "a@b=1",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct shaper_rates *r = NULL;
		char err[256] = "";

		cr_expect_eq(shaper_rates_parse(bad[i], &r, err, sizeof(err)), -1,
		    "\"%s\": got success, want an error", bad[i]);
		cr_expect_null(r, "\"%s\": got rates on error", bad[i]);
		cr_expect(strstr(err, "TXMAIL_DOMAIN_RATE") != NULL,
		    "\"%s\": got error \"%s\", want it to name TXMAIL_DOMAIN_RATE", bad[i], err);
	}
}

Test(shaper, bucket_spacing)
{
	struct shaper_state *st = new_state("slow.test=5,*=0", 5, 10000, 600000);
	static const int64_t want[] = { 1000, 1200, 1400, 1600, 1800 };

	cr_assert_not_null(st);
	for (size_t i = 0; i < 5; i++) {
		int64_t got = shaper_state_reserve(st, "slow.test", 1000);
		cr_expect_eq(got, want[i], "slot %zu: got %lld, want %lld", i, (long long)got,
		    (long long)want[i]);
	}
	/* an unlimited domain is never delayed */
	for (int i = 0; i < 5; i++)
		cr_expect_eq(shaper_state_reserve(st, "fast.test", 1000), 1000,
		    "unlimited: got a delay, want none");
	/* idle for a while: no burst is saved up beyond one token */
	cr_expect_eq(shaper_state_reserve(st, "SLOW.test", 10000), 10000, "after idle: want now");
	cr_expect_eq(shaper_state_reserve(st, "slow.test", 10000), 10200, "second after idle: want +200");
	shaper_state_free(st);
	/* split among 2 delivery loops: each gets half the rate */
	{
		struct shaper_rates *r = NULL;
		struct shaper_params p = { 5, 10000, 600000, 2 };
		char err[256];
		cr_assert_eq(shaper_rates_parse("slow.test=5", &r, err, sizeof(err)), 0, "%s", err);
		st = shaper_state_new(&p, r);
		cr_expect_eq(shaper_state_reserve(st, "slow.test", 0), 0, "shared: first want now");
		cr_expect_eq(shaper_state_reserve(st, "slow.test", 0), 400, "shared: got %lld, want 400",
		    (long long)shaper_state_reserve(st, "x.test", 0));
	}
	/* fractional rates */
	shaper_state_free(st);
	st = new_state("half.test=0.5", 5, 10000, 600000);
	cr_expect_eq(shaper_state_reserve(st, "half.test", 0), 0, "first: want now");
	cr_expect_eq(shaper_state_reserve(st, "half.test", 100), 2000, "second: want 2000");
	shaper_state_free(st);
}

Test(shaper, shared_blocks_take_and_grant)
{
	/* 100/s: 10 ms apart, a full block is 200 ms = 20 slots */
	struct shaper_state *st = new_state("busy.test=100,slow.test=5", 5, 10000, 600000);
	int64_t at, iv;

	cr_assert_not_null(st);
	cr_expect_eq(shaper_state_take(st, "free.test", 1000, &at), 0, "unlimited: want a slot");
	cr_expect_eq(at, 1000, "unlimited: got %lld, want now", (long long)at);
	cr_expect_eq(shaper_state_take(st, "busy.test", 1000, &at), 1, "no block yet: want 1");
	cr_expect_eq(at, 1000, "no block yet: ask now, got %lld", (long long)at);
	/* block sizes: as many as wait, at most 200 ms worth */
	cr_expect_eq(shaper_state_block(st, "busy.test", 3, &iv), 3);
	cr_expect_eq(iv, 10000, "got interval %lld us, want 10000", (long long)iv);
	cr_expect_eq(shaper_state_block(st, "busy.test", 500, &iv), 20);
	cr_expect_eq(shaper_state_block(st, "slow.test", 30, &iv), 1, "5/s: one slot a block");
	cr_expect_eq(iv, 200000);
	cr_expect_eq(shaper_state_block(st, "free.test", 30, &iv), 0, "unlimited: no block");
	/* a granted block is taken slot by slot, the full rate (rate_share does not apply) */
	shaper_state_grant(st, "BUSY.test", 1005 * 1000, 3, 10000);
	for (int i = 0; i < 3; i++) {
		cr_expect_eq(shaper_state_take(st, "busy.test", 1000, &at), 0, "slot %d: want booked", i);
		cr_expect_eq(at, 1005 + 10 * i, "slot %d: got %lld, want %d", i, (long long)at, 1005 + 10 * i);
	}
	cr_expect_eq(shaper_state_take(st, "busy.test", 1000, &at), 1, "used up: want 1");
	cr_expect_eq(at, 1000, "3-slot block ends 1035, less than a full block ahead: ask now");
	/* slots gone by unused are skipped, never sent together */
	shaper_state_grant(st, "busy.test", 2000 * 1000, 20, 10000);
	cr_expect_eq(shaper_state_take(st, "busy.test", 2100, &at), 0);
	cr_expect_eq(at, 2100, "late: got %lld, want now", (long long)at);
	cr_expect_eq(shaper_state_take(st, "busy.test", 2100, &at), 0);
	cr_expect_eq(at, 2110, "late, next: got %lld, want 2110", (long long)at);
	/* a full block ahead: the next one is asked for no sooner than a block before it ends */
	shaper_state_grant(st, "busy.test", 5000 * 1000, 20, 10000);
	while (shaper_state_take(st, "busy.test", 3000, &at) == 0)
		;
	cr_expect_eq(at, 5000, "got %lld, want 5000 (block ends 5200, a block is 200 ms)", (long long)at);
	shaper_state_free(st);
}

Test(shaper, shared_suspensions_learned_and_lifted)
{
	struct shaper_state *st = new_state("", 2, 10000, 40000);
	enum shaper_event ev;
	int64_t until;
	int fails;
	uint64_t n;

	/* learned from the shared set: suspended here too, and on probation after */
	n = shaper_state_sync_begin(st);
	cr_expect_eq(shaper_state_learn(st, n, "far.test", 5000, 10000, 1000), 1, "want news");
	cr_expect_eq(shaper_state_learn(st, n, "far.test", 4000, 10000, 1000), 0, "again: no news");
	cr_expect_eq(shaper_state_sync_end(st, n, 1, 1000), 0);
	cr_expect_eq(shaper_state_check(st, "far.test", 2000, &ev), 6000, "got %lld, want 6000",
	    (long long)shaper_state_check(st, "far.test", 2000, &ev));
	cr_expect_eq(shaper_state_check(st, "far.test", 6000, &ev), 0);
	cr_expect_eq(ev, SHAPER_EV_ENDED, "the end is reported here too");
	ev = shaper_state_report(st, "far.test", 1, 6100, &until, &fails);
	cr_expect_eq(ev, SHAPER_EV_SUSPENDED, "probation: one failure suspends again");
	cr_expect_eq(until, 6100 + 20000, "got %lld, want twice the learned backoff", (long long)until);

	/* set here before an exchange and not listed by it: lifted elsewhere */
	for (int i = 0; i < 2; i++)
		ev = shaper_state_report(st, "near.test", 1, 10000, &until, &fails);
	cr_assert_eq(ev, SHAPER_EV_SUSPENDED);
	n = shaper_state_sync_begin(st);
	/* a suspension set during the exchange is not in its list: kept */
	for (int i = 0; i < 2; i++)
		ev = shaper_state_report(st, "new.test", 1, 10001, &until, &fails);
	cr_assert_eq(ev, SHAPER_EV_SUSPENDED);
	/* an incomplete list lifts nothing */
	cr_expect_eq(shaper_state_sync_end(st, n, 0, 10002), 0);
	cr_expect_neq(shaper_state_check(st, "near.test", 10002, &ev), 0, "incomplete: kept");
	n = shaper_state_sync_begin(st);
	shaper_state_learn(st, n, "new.test", 9000, 10000, 10002);
	cr_expect_eq(shaper_state_sync_end(st, n, 1, 10002), 2, "near.test and far.test lifted");
	cr_expect_eq(shaper_state_check(st, "near.test", 10002, &ev), 0, "near.test: want lifted");
	cr_expect_eq(shaper_state_check(st, "far.test", 10002, &ev), 0, "far.test: want lifted");
	cr_expect_neq(shaper_state_check(st, "new.test", 10002, &ev), 0, "new.test: listed, kept");
	/* lifted like a success: the count starts again */
	ev = shaper_state_report(st, "near.test", 1, 10003, &until, &fails);
	cr_expect_eq(ev, SHAPER_EV_NONE, "after the lift one failure is below the threshold");
	shaper_state_free(st);
}

Test(shaper, suspension_threshold_doubling_reset)
{
	struct shaper_state *st = new_state("", 3, 10000, 35000);
	enum shaper_event ev;
	int64_t until, now = 5000;
	int fails;

	cr_assert_not_null(st);
	/* below the threshold: nothing */
	for (int i = 0; i < 2; i++) {
		ev = shaper_state_report(st, "relay:mx:25", 1, now, &until, &fails);
		cr_expect_eq(ev, SHAPER_EV_NONE, "failure %d: got event %d, want none", i + 1, ev);
		cr_expect_eq(shaper_state_check(st, "relay:mx:25", now, &ev), 0, "not suspended yet");
	}
	ev = shaper_state_report(st, "relay:mx:25", 1, now, &until, &fails);
	cr_expect_eq(ev, SHAPER_EV_SUSPENDED, "3rd failure: got event %d, want suspended", ev);
	cr_expect_eq(until, 15000, "got until %lld, want 15000", (long long)until);
	cr_expect_eq(fails, 3, "got fails %d, want 3", fails);
	/* another destination is not affected */
	cr_expect_eq(shaper_state_check(st, "other.test", now, &ev), 0, "other destination suspended");
	/* during the suspension */
	cr_expect_eq(shaper_state_check(st, "relay:mx:25", 14999, &ev), 15000, "want suspended until 15000");
	cr_expect_eq(ev, SHAPER_EV_NONE, "no event during suspension");
	/* stragglers failing during the suspension do not extend it */
	ev = shaper_state_report(st, "relay:mx:25", 1, 9000, &until, &fails);
	cr_expect_eq(ev, SHAPER_EV_NONE, "straggler: got event %d, want none", ev);
	cr_expect_eq(shaper_state_check(st, "relay:mx:25", 14000, &ev), 15000, "straggler moved the end");
	/* over: reported once */
	cr_expect_eq(shaper_state_check(st, "relay:mx:25", 15000, &ev), 0, "want over at 15000");
	cr_expect_eq(ev, SHAPER_EV_ENDED, "got event %d, want ended", ev);
	cr_expect_eq(shaper_state_check(st, "relay:mx:25", 15001, &ev), 0, "want over");
	cr_expect_eq(ev, SHAPER_EV_NONE, "end reported twice");
	/* probation: one failure suspends again, twice as long; then capped */
	static const int64_t want_len[] = { 20000, 35000, 35000 };
	now = 15001;
	for (size_t i = 0; i < 3; i++) {
		ev = shaper_state_report(st, "relay:mx:25", 1, now, &until, &fails);
		cr_expect_eq(ev, SHAPER_EV_SUSPENDED, "probation %zu: got event %d, want suspended", i, ev);
		cr_expect_eq(until - now, want_len[i], "probation %zu: got %lld ms, want %lld", i,
		    (long long)(until - now), (long long)want_len[i]);
		now = until;
		cr_expect_eq(shaper_state_check(st, "relay:mx:25", now, &ev), 0, "want over");
	}
	/* one success clears everything */
	ev = shaper_state_report(st, "relay:mx:25", 0, now, &until, &fails);
	cr_expect_eq(ev, SHAPER_EV_RECOVERED, "success: got event %d, want recovered", ev);
	for (int i = 0; i < 2; i++) {
		ev = shaper_state_report(st, "relay:mx:25", 1, now, &until, &fails);
		cr_expect_eq(ev, SHAPER_EV_NONE, "after reset, failure %d: got event %d, want none", i + 1, ev);
	}
	/* a success in between resets the count */
	ev = shaper_state_report(st, "relay:mx:25", 0, now, &until, &fails);
	cr_expect_eq(ev, SHAPER_EV_NONE, "success without suspension: got event %d, want none", ev);
	for (int i = 0; i < 2; i++)
		shaper_state_report(st, "relay:mx:25", 1, now, &until, &fails);
	ev = shaper_state_report(st, "relay:mx:25", 1, now, &until, &fails);
	cr_expect_eq(ev, SHAPER_EV_SUSPENDED, "3 fresh failures: got event %d, want suspended", ev);
	cr_expect_eq(until - now, 10000, "back to the base backoff: got %lld", (long long)(until - now));
	shaper_state_free(st);
}

Test(shaper, suspended_count_for_metrics)
{
	struct shaper_state *st = new_state("", 1, 10000, 35000);
	enum shaper_event ev;
	int64_t until;
	int fails;

	cr_assert_not_null(st);
	cr_expect_eq(shaper_state_suspended(st, 0), 0, "got suspended before any failure");
	shaper_state_report(st, "a.test", 1, 1000, &until, &fails);     /* until 11000 */
	shaper_state_report(st, "b.test", 1, 5000, &until, &fails);     /* until 15000 */
	shaper_state_report(st, "c.test", 0, 5000, &until, &fails);     /* answered: not suspended */
	cr_expect_eq(shaper_state_suspended(st, 6000), 2, "got %zu suspended, want 2",
	    shaper_state_suspended(st, 6000));
	/* a suspension that ran out is not counted, checked or not */
	cr_expect_eq(shaper_state_suspended(st, 12000), 1, "got %zu suspended at 12000, want 1",
	    shaper_state_suspended(st, 12000));
	cr_expect_eq(shaper_state_check(st, "a.test", 12000, &ev), 0, "a.test still suspended");
	cr_expect_eq(shaper_state_suspended(st, 16000), 0, "got %zu suspended at 16000, want 0",
	    shaper_state_suspended(st, 16000));
	shaper_state_free(st);
}

Test(shaper, conn_fail_classification)
{
	static const struct {
		int tempfail;
		const char *stage;
		int code;
		int want;
	} cases[] = {
		{ 1, "connect", 0, 1 }, { 1, "banner", 421, 1 }, { 1, "tls", 0, 1 },
		{ 1, "banner", 450, 0 }, { 1, "rcpt", 0, 0 }, { 1, "ehlo", 421, 0 },
		{ 0, "connect", 0, 0 }, { 1, NULL, 0, 0 }, { 1, "shutdown", 0, 0 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int got = shaper_conn_fail(cases[i].tempfail, cases[i].stage, cases[i].code);
		cr_expect_eq(got, cases[i].want, "case %zu (%s %d): got %d, want %d", i,
		    cases[i].stage ? cases[i].stage : "NULL", cases[i].code, got, cases[i].want);
	}
}

/* --- the wrapper ----------------------------------------------------------- */

struct rel {
	pthread_mutex_t mu;
	int n, shut;
	void *items[16];
};

static void
on_rel(void *item, int64_t until_ms, int shutdown, void *arg)
{
	struct rel *r = arg;

	(void)until_ms;
	pthread_mutex_lock(&r->mu);
	if (shutdown)
		r->shut++;
	else if (r->n < 16)
		r->items[r->n++] = item;
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

Test(shaper, wrapper_holds_and_releases_in_order)
{
	struct rel r = { .mu = PTHREAD_MUTEX_INITIALIZER };
	struct shaper_config c = { "q.test=50,r.test=1", { 5, 10000, 600000, 1 }, on_rel, &r, NULL };
	char err[256];
	struct shaper *s = shaper_new(&c, err, sizeof(err));
	int tags[4];
	int64_t until;
	struct timespec t0, t1, nap = { 0, 5000000 };

	cr_assert_not_null(s, "shaper_new: %s", err);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	cr_expect_eq(shaper_admit(s, "q.test", "q.test", &tags[0], &until), SHAPER_SEND, "first: want send");
	for (int i = 1; i < 4; i++)
		cr_expect_eq(shaper_admit(s, "q.test", "q.test", &tags[i], &until), SHAPER_HELD,
		    "%d: want held", i);
	cr_expect_eq(shaper_admit(s, "z.test", "z.test", &tags[0], &until), SHAPER_SEND, "other domain: want send");
	for (int i = 0; i < 400 && rel_count(&r) < 3; i++)
		nanosleep(&nap, NULL);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	cr_assert_eq(rel_count(&r), 3, "got %d released, want 3", rel_count(&r));
	for (int i = 0; i < 3; i++)
		cr_expect_eq(r.items[i], &tags[i + 1], "release %d out of order", i);
	{
		double el = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
		cr_expect(el >= 0.055, "released after %.3fs, want >= 0.06s (3 slots of 20 ms)", el);
	}
	/* suspension through the wrapper; held items are handed back on free */
	for (int i = 0; i < 5; i++)
		shaper_report(s, "dead.test", 1);
	cr_expect_eq(shaper_admit(s, "dead.test", "dead.test", &tags[0], &until), SHAPER_SUSPENDED,
	    "want suspended");
	cr_expect(until > 0, "got until %lld, want a wall-clock time", (long long)until);
	cr_expect_eq(shaper_admit(s, "r.test", "r.test", &tags[0], &until), SHAPER_SEND, "want send");
	cr_expect_eq(shaper_admit(s, "r.test", "r.test", &tags[1], &until), SHAPER_HELD, "want held");
	cr_expect_eq(shaper_admit(s, "r.test", "r.test", &tags[2], &until), SHAPER_HELD, "want held");
	shaper_free(s);
	cr_expect_eq(r.shut, 2, "got %d handed back on free, want 2", r.shut);
}

/* Shared, but Redis is unreachable: nothing waits for it; each shaper spaces its own deliveries. */
Test(shaper, wrapper_shared_fails_open_without_redis)
{
	struct rel r = { .mu = PTHREAD_MUTEX_INITIALIZER };
	static struct redis_addr ra;   /* static: PATH_MAX inside */
	struct shaper_config c = { "q.test=50", { 5, 10000, 600000, 1 }, on_rel, &r, &ra };
	char err[256];
	struct shaper *s;
	int tags[4];
	int64_t until;
	struct timespec t0, t1, nap = { 0, 5000000 };

	memset(&ra, 0, sizeof(ra));
	util_strlcpy(ra.host, "127.0.0.1", sizeof(ra.host));
	ra.port = 1;   /* nothing listens there: refused at once */
	ra.timeout_ms = 500;
	s = shaper_new(&c, err, sizeof(err));
	cr_assert_not_null(s, "shaper_new: %s", err);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int i = 0; i < 4; i++) {
		enum shaper_verdict v = shaper_admit(s, "q.test", "q.test", &tags[i], &until);
		cr_expect(v == SHAPER_HELD || v == SHAPER_SEND, "%d: got %d, want held or send", i, (int)v);
		if (v == SHAPER_SEND) {
			pthread_mutex_lock(&r.mu);
			r.items[r.n++] = &tags[i];
			pthread_mutex_unlock(&r.mu);
		}
	}
	for (int i = 0; i < 600 && rel_count(&r) < 4; i++)
		nanosleep(&nap, NULL);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	cr_assert_eq(rel_count(&r), 4, "got %d released, want all 4 (not stuck waiting for redis)", rel_count(&r));
	for (int i = 0; i < 4; i++)
		cr_expect_eq(r.items[i], &tags[i], "release %d out of order", i);
	{
		double el = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
		cr_expect(el >= 0.055, "released after %.3fs, want >= 0.06s (still shaped, locally)", el);
	}
	/* suspensions still work alone */
	for (int i = 0; i < 5; i++)
		shaper_report(s, "dead.test", 1);
	cr_expect_eq(shaper_admit(s, "dead.test", "dead.test", &tags[0], &until), SHAPER_SUSPENDED);
	/* the change waiting for Redis is tried once a second, not in a loop */
	{
		struct timespec c0, c1, idle = { 0, 300000000 };
		double cpu;

		clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c0);
		nanosleep(&idle, NULL);
		clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c1);
		cpu = (double)(c1.tv_sec - c0.tv_sec) + (double)(c1.tv_nsec - c0.tv_nsec) / 1e9;
		cr_expect(cpu < 0.1, "%.3fs of CPU in 0.3s idle, want the sync thread asleep", cpu);
	}
	shaper_free(s);
	cr_expect_eq(r.shut, 0);
}
