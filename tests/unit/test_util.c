/* test_util.c - ids and RFC 3339 times. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "../../server/util.h"

Test(util, random_id_shape_and_order)
{
	char a[64], b[64];

	cr_assert_eq(util_random_id("msg_", a, sizeof(a)), 0);
	cr_assert_eq(strlen(a), 30, "got length %zu, want 30 (%s)", strlen(a), a);
	cr_assert_eq(strncmp(a, "msg_", 4), 0);
	for (size_t i = 4; i < strlen(a); i++)
		cr_assert(strchr("0123456789abcdefghjkmnpqrstvwxyz", a[i]) != NULL,
		    "bad char %c in %s", a[i], a);
	cr_assert_eq(util_random_id("msg_", b, sizeof(b)), 0);
	cr_assert_str_neq(a, b);
	/* the first 10 chars encode the time: ids made later never sort before */
	cr_assert(strncmp(a + 4, b + 4, 10) <= 0, "got %s before %s", b, a);
	cr_assert_eq(util_random_id("msg_", a, 30), -1, "a too small buffer must fail");
}

Test(util, rfc3339_round_trip)
{
	static const struct { const char *in; int64_t ms; } cases[] = {
		{ "2026-11-23T15:58:00Z", 1795449480000LL },
		{ "2026-11-23T15:58:00.123Z", 1795449480123LL },
		{ "2026-11-23T16:58:00+01:00", 1795449480000LL },
		{ "2026-11-23T10:28:00-05:30", 1795449480000LL },
	};
	char buf[40];
	int64_t ms;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		cr_assert_eq(util_parse_rfc3339(cases[i].in, &ms), 0, "%s did not parse", cases[i].in);
		cr_assert_eq(ms, cases[i].ms, "%s: got %lld, want %lld", cases[i].in,
		    (long long)ms, (long long)cases[i].ms);
	}
	util_rfc3339(1795449480123LL, buf, sizeof(buf));
	cr_assert_str_eq(buf, "2026-11-23T15:58:00.123Z");
	cr_assert_neq(util_parse_rfc3339("2026-13-01T00:00:00Z", &ms), 0);
	cr_assert_neq(util_parse_rfc3339("2026-11-23 15:58", &ms), 0);
	cr_assert_neq(util_parse_rfc3339("2026-11-23T15:58:00", &ms), 0);
	cr_assert_neq(util_parse_rfc3339("", &ms), 0);
}

/* util_rfc3339 writes its digits by hand: the same text as strftime, over many dates */
Test(util, rfc3339_matches_strftime)
{
	char got[40], want[40], tmp[32];

	for (int64_t ms = 0; ms < 4102444800000LL; ms += 86399999LL * 17 + 7) {
		time_t s = (time_t)(ms / 1000);
		struct tm tm;

		gmtime_r(&s, &tm);
		strftime(tmp, sizeof(tmp), "%Y-%m-%dT%H:%M:%S", &tm);
		snprintf(want, sizeof(want), "%s.%03dZ", tmp, (int)(ms % 1000));
		util_rfc3339(ms, got, sizeof(got));
		cr_assert_str_eq(got, want, "%lld: got %s, want %s", (long long)ms, got, want);
	}
	util_rfc3339(1795449480123LL, got, 10);
	cr_assert_str_eq(got, "2026-11-2", "a short buffer gets the text cut, NUL-terminated");
}

Test(util, fmt_duration)
{
	static const struct { double secs; const char *want; } cases[] = {
		{ 86400, "86400s" },
		{ 1.5, "1.5s" },
		{ 0.25, "0.25s" },
		{ 0, "0s" },
		{ 0.0004, "0.0004s" },
		{ 0.000412, "0.000412s" },
		{ 0.0000004, "0s" },
		{ -0.0000001, "0s" },
		{ 0.001, "0.001s" },
		{ 2.0000006, "2.000001s" },
		{ 25, "25s" },
		{ 1e9, "1000000000s" },
		{ -3, "-3s" },
	};
	char buf[32];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *got = util_fmt_duration(cases[i].secs, buf, sizeof(buf));

		cr_assert_eq(got, buf);
		cr_assert_str_eq(buf, cases[i].want, "%g: got %s, want %s", cases[i].secs, buf,
		    cases[i].want);
	}
	util_fmt_duration(86400, buf, 4);
	cr_assert_str_eq(buf, "864", "a short buffer: got %s, want 864", buf);
}
