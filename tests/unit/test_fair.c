/*
 * test_fair.c - per-destination in-flight caps (server/fair.c) with an
 * injected clock: the cap, the FIFO line and its bounds, parking spaced
 * by the destination's pace, MX host set aliases, fail-open bounds.
 */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "../../server/fair.h"

static struct fair *
new_fair(int cap, int wait_cap, int wait_total)
{
	struct fair_params p = { cap, wait_cap, wait_total, 1000, 600000 };
	struct fair *f = fair_new(&p);

	cr_assert_not_null(f);
	return f;
}

Test(fair, cap_then_line_then_park)
{
	struct fair *f = new_fair(2, 2, 100);
	struct fair_dest *d[2], *x, *nd;
	int items[6];
	int64_t until;

	for (int i = 0; i < 2; i++) {
		cr_assert_eq(fair_admit(f, "Tarpit.test", &items[i], 1000, &d[i], &until), FAIR_GO,
		    "transaction %d within the cap of 2: want GO", i);
		cr_assert_not_null(d[i]);
	}
	cr_assert_eq(fair_inflight(f, "tarpit.TEST"), 2, "keys are case-insensitive");
	cr_assert_eq(fair_admit(f, "tarpit.test", &items[2], 1000, &x, &until), FAIR_WAIT);
	cr_assert_eq(fair_admit(f, "tarpit.test", &items[3], 1000, &x, &until), FAIR_WAIT);
	cr_assert_eq(fair_waiting(f), 2);
	cr_assert_eq(fair_admit(f, "tarpit.test", &items[4], 1000, &x, &until), FAIR_PARK,
	    "cap and line full: park");
	cr_assert_geq(until, 2000, "parked at least park_min (1 s) ahead, got %lld", (long long)until);
	/* another destination is not held back */
	cr_assert_eq(fair_admit(f, "healthy.test", &items[5], 1000, &x, &until), FAIR_GO);
	cr_assert_eq(fair_full(f), 1, "one destination at its cap");
	/* a slot frees: the first waiting item takes it, in order */
	cr_assert_eq(fair_done(f, d[0], 1000, 1500, &nd), &items[2]);
	cr_assert_eq(nd, d[0]);
	cr_assert_eq(fair_inflight(f, "tarpit.test"), 2, "the freed slot went to the waiting one");
	cr_assert_eq(fair_done(f, d[1], 1000, 1600, &nd), &items[3]);
	cr_assert_eq(fair_waiting(f), 0);
	cr_assert_null(fair_done(f, nd, 1600, 1700, &nd), "nothing waiting");
	cr_assert_eq(fair_inflight(f, "tarpit.test"), 1);
	cr_assert_null(fair_done(f, NULL, 0, 0, &nd), "an uncapped transaction: nothing");
	fair_free(f);
}

Test(fair, total_line_bounded)
{
	struct fair *f = new_fair(1, 10, 3);
	struct fair_dest *x;
	int64_t until;
	char dom[32];
	int n_wait = 0, n_park = 0, items[4];

	/* four destinations, each at its cap: only three items wait in all */
	for (int i = 0; i < 4; i++) {
		snprintf(dom, sizeof(dom), "d%d.test", i);
		cr_assert_eq(fair_admit(f, dom, NULL, 0, &x, &until), FAIR_GO);
		switch (fair_admit(f, dom, &items[i], 0, &x, &until)) {
		case FAIR_WAIT: n_wait++; break;
		case FAIR_PARK: n_park++; break;
		default: cr_assert_fail("over the cap: want WAIT or PARK");
		}
	}
	cr_assert_eq(n_wait, 3);
	cr_assert_eq(n_park, 1);
	cr_assert_eq(fair_waiting(f), 3);
	for (int i = 0; i < 3; i++) {
		void *it = fair_take_waiting(f);

		cr_assert(it == &items[0] || it == &items[1] || it == &items[2] || it == &items[3],
		    "take %d: got %p, not a waiting item", i, it);
	}
	cr_assert_null(fair_take_waiting(f));
	cr_assert_eq(fair_waiting(f), 0);
	fair_free(f);
}

/* Parked deliveries come back spaced by the destination's pace, in order, within park_max. */
Test(fair, park_spaced_by_pace)
{
	struct fair *f = new_fair(4, 1, 1);
	struct fair_dest *d[4], *x, *nd;
	int64_t until, prev = 0, first = 0;

	for (int i = 0; i < 4; i++)
		cr_assert_eq(fair_admit(f, "slow.test", NULL, 0, &d[i], &until), FAIR_GO);
	/* each transaction takes 8 s: the destination moves 4 per 8 s, one every 2 s */
	for (int i = 0; i < 4; i++) {
		cr_assert_null(fair_done(f, d[i], 0, 8000, &nd));
		cr_assert_eq(fair_admit(f, "slow.test", NULL, 8000, &d[i], &until), FAIR_GO);
	}
	cr_assert_eq(fair_admit(f, "slow.test", NULL, 8000, &x, &until), FAIR_WAIT);
	for (int i = 0; i < 5; i++) {
		cr_assert_eq(fair_admit(f, "slow.test", NULL, 8000, &x, &until), FAIR_PARK);
		if (i == 0) {
			first = until;
			cr_assert_eq(until, 9000, "the first comes back after park_min, got %lld",
			    (long long)until);
		} else {
			cr_assert_eq(until - prev, 2000, "spaced 8 s / 4 slots = 2 s, got %lld",
			    (long long)(until - prev));
		}
		prev = until;
	}
	cr_assert_gt(prev, first);
	/* a tarpit: nothing finishes for 100 s, so the step grows with the time stuck */
	cr_assert_eq(fair_admit(f, "slow.test", NULL, 108000, &x, &until), FAIR_PARK);
	prev = until;
	cr_assert_eq(fair_admit(f, "slow.test", NULL, 108000, &x, &until), FAIR_PARK);
	cr_assert_eq(until - prev, 25000, "100 s stuck / 4 slots, got %lld", (long long)(until - prev));
	/* never beyond park_max (10 min) from now, and spread over its second half, not one burst */
	{
		int64_t lo = INT64_MAX, hi = 0;

		for (int i = 0; i < 1000; i++) {
			cr_assert_eq(fair_admit(f, "slow.test", NULL, 108000, &x, &until), FAIR_PARK);
			cr_assert_leq(until, 108000 + 600000, "got %lld", (long long)until);
			if (i >= 100) {
				cr_assert_geq(until, 108000 + 300000, "got %lld", (long long)until);
				lo = until < lo ? until : lo;
				hi = until > hi ? until : hi;
			}
		}
		cr_assert_geq(hi - lo, 200000, "900 beyond the horizon spread over %lld ms, want most of 300 s",
		    (long long)(hi - lo));
	}
	fair_free(f);
}

Test(fair, saturated_published_after_a_backlog)
{
	struct fair *f = new_fair(4, 1, 1);
	struct fair_dest *x;
	struct fair_sat fs;
	int64_t until = 0, prev;

	for (int i = 0; i < 4; i++)
		cr_assert_eq(fair_admit(f, "new.test", NULL, 0, &x, &until), FAIR_GO);
	cr_assert_eq(fair_admit(f, "new.test", NULL, 0, &x, &until), FAIR_WAIT);
	cr_assert_eq(fair_saturated(f, "new.test", 5, 1000, &fs), 0, "nothing parked yet: not published");
	/* a burst parks a few: not published (its new mail would wait in due for nothing) */
	for (int i = 0; i < 7; i++)
		cr_assert_eq(fair_admit(f, "new.test", NULL, 400, &x, &until), FAIR_PARK);
	cr_assert_eq(fair_saturated(f, "new.test", 400, 1000, &fs), 0, "7 parked, cap 4: a burst");
	/* twice its cap parked since it last had room: a backlog, published with its next slot */
	prev = until;
	cr_assert_eq(fair_admit(f, "new.test", NULL, 400, &x, &until), FAIR_PARK);
	cr_assert_eq(until - prev, 100, "400 ms stuck / 4 slots, got %lld", (long long)(until - prev));
	cr_assert_eq(fair_saturated(f, "NEW.test", 400, 1000, &fs), 1);
	cr_assert_eq(fs.next_ms, until + 100, "next %lld, want %lld", (long long)fs.next_ms,
	    (long long)(until + 100));
	cr_assert_eq(fs.step_ms, 100);
	cr_assert_eq(fs.min_ms, 1000);
	cr_assert_eq(fs.max_ms, 600000);
	cr_assert_eq(fair_saturated(f, "new.test", 900, 1000, &fs), 0, "said 500 ms ago");
	/* slots given out elsewhere (enqueue.lua, claim.lua): the next parking goes after them */
	prev = until + 10000;
	fair_park_after(f, "new.test", prev);
	fair_park_after(f, "new.test", prev - 5000);   /* never moved back */
	cr_assert_eq(fair_admit(f, "new.test", NULL, 401, &x, &until), FAIR_PARK);
	cr_assert_eq(until, prev, "after the slots given out elsewhere: got %lld, want %lld",
	    (long long)until, (long long)prev);
	cr_assert_eq(fair_saturated(f, "new.test", 1400, 1000, &fs), 1, "a second later: said again");
	cr_assert_eq(fair_saturated(f, "other.test", 1400, 1000, &fs), 0, "an unknown destination");
	cr_assert_eq(fair_unsaturated(f, "new.test"), 0, "at its cap");
	fair_free(f);

	/* room again only once a slot is free and nobody is in the line */
	{
		struct fair_dest *d0 = NULL, *nd;
		void *item;

		f = new_fair(2, 1, 1);   /* a destination of 2 slots and a line of 1 */
		cr_assert_eq(fair_admit(f, "r.test", NULL, 0, &d0, &until), FAIR_GO);
		cr_assert_eq(fair_admit(f, "r.test", NULL, 0, &x, &until), FAIR_GO);
		cr_assert_eq(fair_admit(f, "r.test", (void *)&fs, 0, &nd, &until), FAIR_WAIT);
		for (int i = 0; i < 4; i++)
			cr_assert_eq(fair_admit(f, "r.test", NULL, 0, &nd, &until), FAIR_PARK);
		cr_assert_eq(fair_saturated(f, "r.test", 10, 1000, &fs), 1);
		item = fair_done(f, d0, 0, 20, &nd);
		cr_assert_eq(item, (void *)&fs, "the one in line takes the slot");
		cr_assert_eq(fair_unsaturated(f, "r.test"), 0, "its slots are full again");
		cr_assert_null(fair_done(f, nd, 20, 30, &nd));
		cr_assert_eq(fair_unsaturated(f, "r.test"), 1, "a free slot, nobody in line");
		cr_assert_eq(fair_unsaturated(f, "r.test"), 0, "said once");
		cr_assert_eq(fair_saturated(f, "r.test", 40, 1000, &fs), 0, "not at its cap");
		/* full again: parking starts afresh, not after the old line, and a burst is not published */
		cr_assert_eq(fair_admit(f, "r.test", NULL, 40, &nd, &until), FAIR_GO);
		cr_assert_eq(fair_admit(f, "r.test", NULL, 40, &nd, &until), FAIR_WAIT);
		cr_assert_eq(fair_admit(f, "r.test", NULL, 40, &nd, &until), FAIR_PARK);
		cr_assert_eq(until, 40 + 1000, "parked after park_min from now: got %lld", (long long)until);
		cr_assert_eq(fair_saturated(f, "r.test", 40, 1000, &fs), 0, "one parked since it had room");
		while (fair_take_waiting(f) != NULL)
			;
	}
	fair_free(f);
}

Test(fair, mx_alias_shares_slots)
{
	static const char *const names[] = { "MX2.Google.test", "mx1.google.test", "mx2.google.test" };
	char key[FAIR_KEY_MAX + 1];
	struct fair *f = new_fair(1, 1, 10);
	struct fair_dest *x;
	int64_t until;

	fair_mx_key(names, 3, key, sizeof(key));
	cr_assert_str_eq(key, "mx:mx1.google.test,mx2.google.test");
	fair_alias(f, "gmail.test", key);
	fair_alias(f, "GoogleMail.test", key);
	cr_assert_eq(fair_admit(f, "gmail.test", NULL, 0, &x, &until), FAIR_GO);
	cr_assert_eq(fair_inflight(f, "googlemail.test"), 1, "one MX host set, one set of slots");
	cr_assert_eq(fair_admit(f, "googlemail.test", NULL, 0, &x, &until), FAIR_WAIT);
	cr_assert_eq(fair_admit(f, "other.test", NULL, 0, &x, &until), FAIR_GO);
	fair_free(f);
}

/*
 * Transactions admitted under the domain before its route was known count
 * against the MX host set once it is: the set never gets two caps' worth
 * (16 connections at a tarpit with a cap of 8, before).
 */
Test(fair, alias_merges_earlier_slots)
{
	struct fair *f = new_fair(2, 2, 10);
	struct fair_dest *d[2], *x, *nd;
	int items[3];
	int64_t until, prev, t = 5000000;   /* a monotonic clock long after boot */

	cr_assert_eq(fair_admit(f, "tarpit.test", &items[0], t, &d[0], &until), FAIR_GO);
	cr_assert_eq(fair_admit(f, "tarpit.test", &items[1], t, &d[1], &until), FAIR_GO);
	cr_assert_eq(fair_admit(f, "tarpit.test", &items[2], t, &x, &until), FAIR_WAIT);
	fair_alias(f, "tarpit.test", "mx:mx.tarpit.test");
	cr_assert_eq(fair_inflight(f, "tarpit.test"), 2, "the two earlier slots count against the MX set");
	cr_assert_eq(fair_admit(f, "tarpit.test", NULL, t, &x, &until), FAIR_WAIT,
	    "at the cap under the MX key too: the line (moved there), not a new slot");
	cr_assert_eq(fair_waiting(f), 2);
	/* the set has the domain's pace: parked deliveries come back after park_min, spaced by
	 * what is known (nothing finished for 10 ms), not as if stuck since the clock began */
	cr_assert_eq(fair_admit(f, "tarpit.test", NULL, t + 10, &x, &until), FAIR_PARK);
	cr_assert_eq(until, t + 10 + 1000, "parked in %lld ms, want park_min (1000)", (long long)(until - t - 10));
	prev = until;
	cr_assert_eq(fair_admit(f, "tarpit.test", NULL, t + 10, &x, &until), FAIR_PARK);
	cr_assert_leq(until - prev, 10, "the next one %lld ms later, want <= 10 / 2 slots", (long long)(until - prev));
	/* an earlier transaction ends: its slot (counted at the MX set) goes to the first in line */
	cr_assert_eq(fair_done(f, d[0], t, t + 20, &nd), &items[2]);
	cr_assert_eq(fair_inflight(f, "tarpit.test"), 2);
	cr_assert_null(fair_done(f, d[1], t, t + 20, &x), "the next in line is the NULL item");
	cr_assert_not_null(x, "it took the slot");
	cr_assert_eq(fair_inflight(f, "tarpit.test"), 2);
	cr_assert_null(fair_done(f, nd, t + 20, t + 30, &nd));
	cr_assert_null(fair_done(f, x, t + 20, t + 30, &nd));
	cr_assert_eq(fair_inflight(f, "tarpit.test"), 0);
	cr_assert_eq(fair_admit(f, "other.test", NULL, t, &x, &until), FAIR_GO);
	fair_free(f);
}

Test(fair, mx_key_bounded)
{
	char big[400][8];
	const char *names[400];
	char key[FAIR_KEY_MAX + 1], small[8];

	for (int i = 0; i < 400; i++) {
		snprintf(big[i], sizeof(big[i]), "h%03d.t", i);
		names[i] = big[i];
	}
	fair_mx_key(names, 400, key, sizeof(key));
	cr_assert_leq(strlen(key), FAIR_KEY_MAX);
	cr_assert(strncmp(key, "mx:h000.t,h001.t", 16) == 0, "got %s", key);
	fair_mx_key(names, 3, small, sizeof(small));
	cr_assert_leq(strlen(small), sizeof(small) - 1);
	fair_mx_key(names, 0, key, sizeof(key));
	cr_assert_str_eq(key, "");
}

/* The destination table is bounded; idle destinations make room, busy ones fail open. */
Test(fair, table_bounded)
{
	struct fair *f = new_fair(1, 1, 1);
	struct fair_dest *x, *d0 = NULL, *nd;
	int64_t until;
	char dom[32];

	for (int i = 0; i < FAIR_DESTS_MAX; i++) {
		snprintf(dom, sizeof(dom), "d%d.test", i);
		cr_assert_eq(fair_admit(f, dom, NULL, 0, &x, &until), FAIR_GO);
		cr_assert_not_null(x);
		if (i == 0)
			d0 = x;
	}
	/* full of busy destinations: a new one is not capped (GO, no slot) */
	cr_assert_eq(fair_admit(f, "new.test", NULL, 0, &x, &until), FAIR_GO);
	cr_assert_null(x, "table full: not capped");
	cr_assert_eq(fair_admit(f, "new.test", NULL, 0, &x, &until), FAIR_GO);
	/* one frees: it is evicted when room is needed, and the new one is capped */
	cr_assert_null(fair_done(f, d0, 0, 10, &nd));
	cr_assert_eq(fair_admit(f, "new2.test", NULL, 20, &x, &until), FAIR_GO);
	cr_assert_not_null(x, "an idle destination made room");
	cr_assert_eq(fair_inflight(f, "d0.test"), 0, "d0 evicted");
	cr_assert_eq(fair_inflight(f, "d1.test"), 1, "busy ones kept");
	cr_assert_eq(fair_admit(f, "new2.test", NULL, 20, &x, &until), FAIR_WAIT);
	fair_free(f);
}
