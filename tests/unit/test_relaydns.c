/*
 * test_relaydns.c - the relay host's addresses (server/relaydns.c): IP
 * literals need no lookup, "localhost" resolves through /etc/hosts, an
 * unresolvable name gives a reason, round-robin and "next address", and -
 * with a scripted resolver that blocks until the test releases it - that
 * relaydns_pick and relaydns_free never wait for a lookup, and that a good
 * list is served stale while refreshes fail.
 *
 * Every wait is a condition with a deadline. The fake resolver's state is
 * static (each Criterion test is its own process): a detached lookup
 * thread may still be inside it when a test returns.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "../../server/log.h"
#include "../../server/relaydns.h"

#define DEADLINE_MS 10000
#define FAST_MS 100   /* "never blocks": well under this */

static int64_t
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void
nap_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

static void
quiet(void)
{
	log_set_level(LOG_ERROR);
}

TestSuite(relaydns, .init = quiet);

/* --- a scripted resolver ------------------------------------------------------ */

struct fake {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int calls;                     /* lookups begun */
	int returned;                  /* lookups ended */
	int block_call;                /* this lookup (1-based) waits for `released`; 0: none */
	int released;
	const char *const *first;      /* call 1's answer; NULL: fails */
	const char *const *later;      /* calls 2.. ; NULL: fail */
	const char *fail_text;
};

static struct fake F = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0, 0, NULL, NULL, NULL };

static int
fake_resolve(const char *host, uint16_t port, char (*addrs)[RELAYDNS_ADDR_MAX], size_t max,
    size_t *n, char *why, size_t whylen, void *arg)
{
	struct fake *f = arg;
	const char *const *list;
	int call;

	(void)host;
	(void)port;
	pthread_mutex_lock(&f->mu);
	call = ++f->calls;
	pthread_cond_broadcast(&f->cv);
	while (call == f->block_call && !f->released)
		pthread_cond_wait(&f->cv, &f->mu);
	list = call == 1 ? f->first : f->later;
	*n = 0;
	for (size_t i = 0; list != NULL && list[i] != NULL && *n < max; i++)
		snprintf(addrs[(*n)++], RELAYDNS_ADDR_MAX, "%s", list[i]);
	if (list == NULL)
		snprintf(why, whylen, "%s", f->fail_text != NULL ? f->fail_text : "SERVFAIL (test)");
	f->returned++;
	pthread_cond_broadcast(&f->cv);
	pthread_mutex_unlock(&f->mu);
	return list != NULL ? 0 : -1;
}

/* Wait until the fake has begun `calls` lookups (and ended `returned`); fails the test on timeout. */
static void
fake_wait(int calls, int returned)
{
	int64_t end = now_us() + (int64_t)DEADLINE_MS * 1000;
	int ok;

	pthread_mutex_lock(&F.mu);
	while (!(ok = F.calls >= calls && F.returned >= returned) && now_us() < end) {
		pthread_mutex_unlock(&F.mu);
		nap_ms(1);
		pthread_mutex_lock(&F.mu);
	}
	pthread_mutex_unlock(&F.mu);
	cr_assert(ok, "fake resolver: got %d calls / %d returned, want >= %d / >= %d", F.calls,
	    F.returned, calls, returned);
}

static void
fake_release(void)
{
	pthread_mutex_lock(&F.mu);
	F.released = 1;
	pthread_cond_broadcast(&F.cv);
	pthread_mutex_unlock(&F.mu);
}

static struct relaydns *
new_fake(const char *host, int refresh_ms, int retry_ms)
{
	struct relaydns_config c;
	struct relaydns *r;
	char err[256] = "";

	memset(&c, 0, sizeof(c));
	c.refresh_ms = refresh_ms;
	c.retry_ms = retry_ms;
	c.resolve = fake_resolve;
	c.resolve_arg = &F;
	r = relaydns_new(host, 587, &c, err, sizeof(err));
	cr_assert_not_null(r, "relaydns_new(%s): %s", host, err);
	return r;
}

/* Pick, asserting success and speed; returns the address in a static buffer. */
static const char *
pick_ok(struct relaydns *r)
{
	static char ip[RELAYDNS_ADDR_MAX];
	char why[256] = "";
	int64_t t0 = now_us();
	int rc = relaydns_pick(r, ip, sizeof(ip), why, sizeof(why));
	int64_t us = now_us() - t0;

	cr_assert_eq(rc, 0, "relaydns_pick: got -1 (%s), want an address", why);
	cr_assert_lt(us, FAST_MS * 1000, "relaydns_pick took %lld us, want < %d ms", (long long)us, FAST_MS);
	return ip;
}

/* Pick, asserting a fast failure; returns the reason in a static buffer. */
static const char *
pick_fails(struct relaydns *r)
{
	static char why[256];
	char ip[RELAYDNS_ADDR_MAX] = "";
	int64_t t0 = now_us();
	int rc;
	int64_t us;

	why[0] = '\0';
	rc = relaydns_pick(r, ip, sizeof(ip), why, sizeof(why));
	us = now_us() - t0;
	cr_assert_eq(rc, -1, "relaydns_pick: got %d (%s), want -1", rc, ip);
	cr_assert_neq(why[0], '\0', "relaydns_pick failed without a reason");
	cr_assert_lt(us, FAST_MS * 1000, "relaydns_pick took %lld us, want < %d ms", (long long)us, FAST_MS);
	return why;
}

/* --- IP literals ---------------------------------------------------------------- */

Test(relaydns, ip_literals_need_no_lookup)
{
	static const char *const lits[] = { "192.0.2.7", "127.0.0.1", "2001:db8::25", "::1" };

	for (size_t i = 0; i < sizeof(lits) / sizeof(lits[0]); i++) {
		struct relaydns *r = new_fake(lits[i], 0, 0);
		char next[RELAYDNS_ADDR_MAX];

		/* at once: no lookup has to run first */
		for (int k = 0; k < 3; k++) {
			const char *ip = pick_ok(r);

			cr_expect_str_eq(ip, lits[i], "%s pick %d: got %s, want the literal", lits[i], k, ip);
		}
		cr_expect_eq(relaydns_wait_first(r, 0), 0, "%s: wait_first: got -1, want 0", lits[i]);
		cr_expect_eq(relaydns_next(r, lits[i], next, sizeof(next)), -1,
		    "%s: next: got an address (%s), want -1 (the only one)", lits[i], next);
		relaydns_free(r);
	}
	cr_expect_eq(F.calls, 0, "resolver called %d times for IP literals, want 0", F.calls);
}

/* --- the real resolver ---------------------------------------------------------- */

Test(relaydns, localhost_resolves_and_round_robins)
{
	char err[256] = "", got[6][RELAYDNS_ADDR_MAX];
	struct relaydns *r = relaydns_new("localhost", 25, NULL, err, sizeof(err));
	int two = 0;

	cr_assert_not_null(r, "relaydns_new(localhost): %s", err);
	cr_assert_eq(relaydns_wait_first(r, DEADLINE_MS), 0, "localhost: no lookup ended in %d ms", DEADLINE_MS);
	/* /etc/hosts: 127.0.0.1 and/or ::1 */
	for (int k = 0; k < 6; k++) {
		snprintf(got[k], sizeof(got[k]), "%s", pick_ok(r));
		cr_assert(strcmp(got[k], "127.0.0.1") == 0 || strcmp(got[k], "::1") == 0,
		    "localhost pick %d: got %s, want 127.0.0.1 or ::1", k, got[k]);
		two |= strcmp(got[k], got[0]) != 0;
	}
	/* both listed: they alternate */
	for (int k = 1; two && k < 6; k++)
		cr_expect_str_neq(got[k], got[k - 1], "localhost picks %d and %d: got %s twice, want them "
		    "to alternate", k - 1, k, got[k]);
	relaydns_free(r);
}

Test(relaydns, unresolvable_name_fails_with_a_reason)
{
	char err[256] = "";
	struct relaydns *r = relaydns_new("no-such-host.invalid", 25, NULL, err, sizeof(err));
	const char *why;
	char next[RELAYDNS_ADDR_MAX];

	cr_assert_not_null(r, "relaydns_new: %s", err);
	/* before, during and after the first lookup: a fast -1 with a reason */
	pick_fails(r);
	cr_assert_eq(relaydns_wait_first(r, DEADLINE_MS), 0, ".invalid: no lookup ended in %d ms", DEADLINE_MS);
	why = pick_fails(r);
	cr_expect(strstr(why, "first lookup") == NULL, "after the lookup: got %s, want the resolver's error", why);
	cr_expect_eq(relaydns_next(r, "127.0.0.1", next, sizeof(next)), -1, "next with no list: got %s", next);
	relaydns_free(r);
}

Test(relaydns, bad_arguments)
{
	char err[256] = "", longname[RELAYDNS_HOST_MAX + 10];

	memset(longname, 'a', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	cr_expect_null(relaydns_new("", 25, NULL, err, sizeof(err)), "empty host accepted");
	cr_expect_neq(err[0], '\0', "empty host: no error text");
	cr_expect_null(relaydns_new(longname, 25, NULL, err, sizeof(err)), "overlong host accepted");
	relaydns_free(NULL);
}

/* --- scripted: never blocking, stale, refresh ----------------------------------- */

Test(relaydns, pick_does_not_wait_for_a_stuck_first_lookup)
{
	static const char *const good[] = { "192.0.2.1", NULL };
	struct relaydns *r;
	const char *why;
	int64_t t0, us;

	F.block_call = 1;
	F.first = good;
	r = new_fake("relay.test", 60000, 60000);
	fake_wait(1, 0);   /* the lookup thread is inside the resolver, held */
	why = pick_fails(r);
	cr_expect(strstr(why, "first lookup still running") != NULL,
	    "stuck first lookup: got reason %s, want \"first lookup still running\"", why);
	t0 = now_us();
	cr_expect_eq(relaydns_wait_first(r, 50), -1, "wait_first: got 0 while the lookup is stuck");
	us = now_us() - t0;
	cr_expect(us >= 40000 && us < 2000000, "wait_first(50 ms) took %lld us", (long long)us);
	fake_release();
	cr_assert_eq(relaydns_wait_first(r, DEADLINE_MS), 0, "wait_first: got -1 after the release");
	{
		const char *ip = pick_ok(r);

		cr_expect_str_eq(ip, "192.0.2.1", "after the release: got %s", ip);
	}
	relaydns_free(r);
}

Test(relaydns, free_does_not_wait_for_a_stuck_lookup)
{
	static const char *const good[] = { "192.0.2.1", NULL };
	struct relaydns *r;
	int64_t t0, us;

	F.block_call = 1;
	F.first = good;
	r = new_fake("relay.test", 60000, 60000);
	fake_wait(1, 0);
	t0 = now_us();
	relaydns_free(r);
	us = now_us() - t0;
	cr_expect_lt(us, FAST_MS * 1000, "relaydns_free took %lld us with a stuck lookup, want < %d ms",
	    (long long)us, FAST_MS);
	/* the lookup ends later; the detached thread discards it and frees the state (ASan: no leak) */
	fake_release();
	fake_wait(1, 1);
	cr_expect_eq(F.calls, 1, "lookups after relaydns_free: got %d calls, want 1", F.calls);
}

Test(relaydns, free_wakes_an_idle_thread_at_once)
{
	static const char *const good[] = { "192.0.2.1", NULL };
	struct relaydns *r;
	int64_t t0, us;

	F.first = good;
	r = new_fake("relay.test", 60000, 60000);
	cr_assert_eq(relaydns_wait_first(r, DEADLINE_MS), 0, "first lookup did not end");
	t0 = now_us();
	relaydns_free(r);   /* the thread is in its 60 s wait */
	us = now_us() - t0;
	cr_expect_lt(us, FAST_MS * 1000, "relaydns_free took %lld us, want < %d ms", (long long)us, FAST_MS);
}

Test(relaydns, stale_list_served_while_refreshes_fail)
{
	static const char *const good[] = { "192.0.2.1", "2001:db8::1", NULL };
	struct relaydns *r;
	char a[RELAYDNS_ADDR_MAX], b[RELAYDNS_ADDR_MAX];

	F.first = good;
	F.later = NULL;   /* every refresh fails */
	F.fail_text = "SERVFAIL (test)";
	r = new_fake("relay.test", 5, 5);
	fake_wait(4, 4);   /* one success, then at least three failed refreshes */
	snprintf(a, sizeof(a), "%s", pick_ok(r));
	snprintf(b, sizeof(b), "%s", pick_ok(r));
	cr_expect(strcmp(a, b) != 0 && (strcmp(a, good[0]) == 0 || strcmp(a, good[1]) == 0) &&
	    (strcmp(b, good[0]) == 0 || strcmp(b, good[1]) == 0),
	    "stale picks: got %s then %s, want %s and %s in turn", a, b, good[0], good[1]);

	/* a refresh stuck in the resolver does not hold pick up either */
	pthread_mutex_lock(&F.mu);
	F.block_call = F.calls + 1;
	pthread_mutex_unlock(&F.mu);
	fake_wait(F.block_call, 0);
	pick_ok(r);
	relaydns_free(r);
	fake_release();
	fake_wait(F.block_call, F.block_call);
}

Test(relaydns, never_resolved_reason_is_the_resolvers)
{
	struct relaydns *r;
	const char *why;

	F.first = NULL;
	F.later = NULL;
	F.fail_text = "Name or service not known (test)";
	r = new_fake("relay.test", 5, 5);
	cr_assert_eq(relaydns_wait_first(r, DEADLINE_MS), 0, "first lookup did not end");
	why = pick_fails(r);
	cr_expect(strstr(why, "Name or service not known (test)") != NULL, "got reason %s", why);
	fake_wait(3, 3);   /* retried at retry_ms */
	relaydns_free(r);
}

Test(relaydns, refresh_replaces_the_list)
{
	static const char *const one[] = { "192.0.2.1", NULL };
	static const char *const two[] = { "192.0.2.2", NULL };
	struct relaydns *r;
	int64_t end = now_us() + (int64_t)DEADLINE_MS * 1000;
	int moved = 0;

	F.first = one;
	F.later = two;
	r = new_fake("relay.test", 5, 5);
	cr_assert_eq(relaydns_wait_first(r, DEADLINE_MS), 0, "first lookup did not end");
	while (!moved && now_us() < end) {
		moved = strcmp(pick_ok(r), "192.0.2.2") == 0;
		if (!moved)
			nap_ms(1);
	}
	cr_expect(moved, "the refreshed address 192.0.2.2 was never picked");
	relaydns_free(r);
}

Test(relaydns, round_robin_and_next)
{
	static const char *const three[] = { "192.0.2.1", "192.0.2.2", "2001:db8::3", NULL };
	struct relaydns *r;
	char got[3][RELAYDNS_ADDR_MAX], next[RELAYDNS_ADDR_MAX];

	F.first = three;
	F.later = three;
	r = new_fake("relay.test", 60000, 60000);
	cr_assert_eq(relaydns_wait_first(r, DEADLINE_MS), 0, "first lookup did not end");
	for (int k = 0; k < 3; k++)
		snprintf(got[k], sizeof(got[k]), "%s", pick_ok(r));
	for (int k = 0; k < 6; k++) {
		const char *ip = pick_ok(r);

		cr_expect_str_eq(ip, got[k % 3], "pick %d: got %s, want %s (a cycle of 3)", k + 3, ip, got[k % 3]);
	}
	cr_expect(strcmp(got[0], got[1]) != 0 && strcmp(got[1], got[2]) != 0 && strcmp(got[0], got[2]) != 0,
	    "one cycle: got %s %s %s, want three different addresses", got[0], got[1], got[2]);

	static const struct { const char *after, *want; } cases[] = {
		{ "192.0.2.1", "192.0.2.2" },
		{ "192.0.2.2", "2001:db8::3" },
		{ "2001:db8::3", "192.0.2.1" },
		{ "198.51.100.9", "192.0.2.1" },   /* not listed (refreshed since): any */
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		next[0] = '\0';
		cr_expect_eq(relaydns_next(r, cases[i].after, next, sizeof(next)), 0, "next(%s): got -1",
		    cases[i].after);
		cr_expect_str_eq(next, cases[i].want, "next(%s): got %s, want %s", cases[i].after, next,
		    cases[i].want);
	}
	relaydns_free(r);
}
