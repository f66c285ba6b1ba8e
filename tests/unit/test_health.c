/*
 * test_health.c - the loops' heartbeats: bounds (the least one, 3 x the
 * legitimate wait), a stalled loop named in the reason, several joined, a
 * beat or an unregister ending the stall, a full table.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "../../server/health.h"
#include "../../server/util.h"

Test(health, bound_is_the_floor_or_three_waits)
{
	struct health_loop *fast, *slow;
	int64_t t0;
	char why[512];
	int n;

	health_configure(10000, NULL);
	t0 = util_mono_ms();
	fast = health_register("t1.fast", 1000);      /* bound: the floor, 10 s */
	slow = health_register("t1.slow", 6000);      /* bound: 3 x 6 s = 18 s */
	cr_assert(fast != NULL && slow != NULL);
	n = health_check(t0 + 9000, why, sizeof(why));
	cr_assert_eq(n, 0, "at 9 s: got %d stalled (%s), want 0", n, why);
	n = health_check(t0 + 12000, why, sizeof(why));
	cr_assert_eq(n, 1, "at 12 s: got %d stalled, want 1 (%s)", n, why);
	cr_assert(strstr(why, "loop t1.fast has not run for") != NULL && strstr(why, "(bound 10s)") != NULL,
	    "got why %s, want t1.fast named with its bound", why);
	cr_assert(strstr(why, "t1.slow") == NULL, "got why %s, want t1.slow not named", why);
	n = health_check(t0 + 20000, why, sizeof(why));
	cr_assert_eq(n, 2, "at 20 s: got %d stalled, want 2 (%s)", n, why);
	cr_assert(strstr(why, "t1.fast") != NULL && strstr(why, "; loop t1.slow") != NULL,
	    "got why %s, want both named, joined by ; ", why);
	health_beat(fast);
	health_beat(slow);
	n = health_check(util_mono_ms() + 5000, why, sizeof(why));
	cr_assert_eq(n, 0, "after beats: got %d stalled (%s), want 0", n, why);
	cr_assert_str_eq(why, "", "got why %s, want empty", why);
	health_unregister(fast);
	health_unregister(slow);
	cr_assert_eq(health_loops(), 0, "got %d loops after unregistering, want 0", health_loops());
	n = health_check(t0 + 100000, why, sizeof(why));
	cr_assert_eq(n, 0, "unregistered loops: got %d stalled, want 0", n);
}

Test(health, full_table_and_null)
{
	static struct health_loop *l[HEALTH_MAX_LOOPS];
	char name[32];

	health_configure(10000, "");
	for (int i = 0; i < HEALTH_MAX_LOOPS; i++) {
		snprintf(name, sizeof(name), "t2.%d", i);
		l[i] = health_register(name, 10);
		cr_assert(l[i] != NULL, "slot %d: got NULL", i);
	}
	cr_assert_null(health_register("t2.one_too_many", 10), "got a slot past HEALTH_MAX_LOOPS");
	health_beat(NULL);
	health_unregister(NULL);
	for (int i = 0; i < HEALTH_MAX_LOOPS; i++)
		health_unregister(l[i]);
	cr_assert_eq(health_loops(), 0);
}

Test(health, long_name_cut_and_why_cut)
{
	struct health_loop *l;
	char why[24];
	int n;

	health_configure(1000, NULL);
	l = health_register("a-loop-name-much-longer-than-forty-seven-characters-in-all", 0);
	cr_assert(l != NULL);
	n = health_check(util_mono_ms() + 5000, why, sizeof(why));
	cr_assert_eq(n, 1, "got %d stalled, want 1", n);
	cr_assert_eq(strlen(why), sizeof(why) - 1, "got why %s (%zu), want it cut to the buffer", why,
	    strlen(why));
	health_unregister(l);
}
