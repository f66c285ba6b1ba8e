/*
 * test_retry.c - table tests for the retry policy (smtp/retry.c).
 */
#include <criterion/criterion.h>
#include <stdint.h>

#include "../../smtp/retry.h"

Test(retry, delay_table)
{
	static const struct {
		double base, max;
		int attempts;
		int64_t want;
	} cases[] = {
		{ 60, 3600, 1, 60000 },
		{ 60, 3600, 2, 120000 },
		{ 60, 3600, 3, 240000 },
		{ 60, 3600, 6, 1920000 },
		{ 60, 3600, 7, 3600000 },       /* 3840 s capped */
		{ 60, 3600, 100, 3600000 },
		{ 60, 3600, INT32_MAX, 3600000 }, /* no overflow */
		{ 0.2, 1, 1, 200 },
		{ 0.2, 1, 2, 400 },
		{ 0.2, 1, 3, 800 },
		{ 0.2, 1, 4, 1000 },
		{ 0.25, 0.25, 5, 250 },
		{ 5, 1, 3, 5000 },              /* max < base: base wins */
		{ 1e300, 1e300, 70, (int64_t)100 * 365 * 24 * 3600 * 1000 },
		{ 60, 3600, 0, 60000 },         /* out-of-contract attempts: base */
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct retry_policy p = { cases[i].base, cases[i].max };
		int64_t got = retry_delay_ms(&p, cases[i].attempts);
		cr_expect(got == cases[i].want,
		    "case %zu (base %g max %g attempts %d): got %lld, want %lld",
		    i, cases[i].base, cases[i].max, cases[i].attempts,
		    (long long)got, (long long)cases[i].want);
	}
}

Test(retry, decide_table)
{
	static const struct {
		const char *name;
		enum smtp_result result;
		int attempts;
		int64_t now, expires;
		enum retry_verdict want;
		int64_t want_next;
	} cases[] = {
		{ "ok", SMTP_RESULT_OK, 1, 1000, 2000, RETRY_DELIVERED, 0 },
		{ "ok after expiry", SMTP_RESULT_OK, 9, 5000, 2000, RETRY_DELIVERED, 0 },
		{ "perm", SMTP_RESULT_PERMFAIL, 1, 1000, 1000000, RETRY_FAILED, 0 },
		{ "temp first", SMTP_RESULT_TEMPFAIL, 1, 1000, 1000000, RETRY_DEFERRED, 61000 },
		{ "temp third", SMTP_RESULT_TEMPFAIL, 3, 1000, 1000000, RETRY_DEFERRED, 241000 },
		{ "temp capped", SMTP_RESULT_TEMPFAIL, 50, 0, INT64_MAX, RETRY_DEFERRED, 3600000 },
		{ "temp just fits", SMTP_RESULT_TEMPFAIL, 1, 1000, 61001, RETRY_DEFERRED, 61000 },
		{ "temp lands on expiry", SMTP_RESULT_TEMPFAIL, 1, 1000, 61000, RETRY_EXPIRED, 0 },
		{ "temp past expiry", SMTP_RESULT_TEMPFAIL, 2, 1000, 50000, RETRY_EXPIRED, 0 },
		{ "temp already expired", SMTP_RESULT_TEMPFAIL, 1, 9000, 100, RETRY_EXPIRED, 0 },
		{ "temp now near INT64_MAX", SMTP_RESULT_TEMPFAIL, 1, INT64_MAX - 5, INT64_MAX, RETRY_EXPIRED, 0 },
	};
	struct retry_policy p = { 60, 3600 };

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct retry_decision d = retry_decide(&p, cases[i].result,
		    cases[i].attempts, cases[i].now, cases[i].expires);
		cr_expect(d.verdict == cases[i].want, "%s: verdict got %s, want %s",
		    cases[i].name, retry_verdict_name(d.verdict),
		    retry_verdict_name(cases[i].want));
		if (cases[i].want == RETRY_DEFERRED)
			cr_expect(d.next_ms == cases[i].want_next,
			    "%s: next_ms got %lld, want %lld", cases[i].name,
			    (long long)d.next_ms, (long long)cases[i].want_next);
	}
}

Test(retry, decide_fractional_base)
{
	struct retry_policy p = { 0.2, 2 };
	struct retry_decision d = retry_decide(&p, SMTP_RESULT_TEMPFAIL, 1, 10000, 20000);

	cr_expect(d.verdict == RETRY_DEFERRED, "verdict got %d, want deferred", d.verdict);
	cr_expect(d.next_ms == 10200, "next_ms got %lld, want 10200", (long long)d.next_ms);
}

Test(retry, classify_table)
{
	static const struct {
		int code;
		enum smtp_result want;
	} cases[] = {
		{ 250, SMTP_RESULT_OK }, { 251, SMTP_RESULT_OK }, { 354, SMTP_RESULT_OK },
		{ 421, SMTP_RESULT_TEMPFAIL }, { 450, SMTP_RESULT_TEMPFAIL },
		{ 451, SMTP_RESULT_TEMPFAIL }, { 452, SMTP_RESULT_TEMPFAIL },
		{ 500, SMTP_RESULT_PERMFAIL }, { 550, SMTP_RESULT_PERMFAIL },
		{ 554, SMTP_RESULT_PERMFAIL }, { 599, SMTP_RESULT_PERMFAIL },
		{ 0, SMTP_RESULT_TEMPFAIL }, { 199, SMTP_RESULT_TEMPFAIL },
		{ 600, SMTP_RESULT_TEMPFAIL }, { -1, SMTP_RESULT_TEMPFAIL },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		enum smtp_result got = retry_classify_code(cases[i].code);
		cr_expect(got == cases[i].want, "code %d: got %d, want %d",
		    cases[i].code, got, cases[i].want);
	}
}

Test(retry, verdict_names)
{
	static const struct {
		enum retry_verdict v;
		const char *want;
	} cases[] = {
		{ RETRY_DELIVERED, "delivered" }, { RETRY_DEFERRED, "deferred" },
		{ RETRY_FAILED, "failed" }, { RETRY_EXPIRED, "expired" },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		cr_expect_str_eq(retry_verdict_name(cases[i].v), cases[i].want,
		    "verdict %d: got %s, want %s", cases[i].v,
		    retry_verdict_name(cases[i].v), cases[i].want);
}

Test(retry, decide_hint_table)
{
	static const struct {
		const char *name;
		enum smtp_result result;
		int attempts;
		int64_t now, expires, hint;
		enum retry_verdict want;
		int64_t want_next;
		int want_hinted;
	} cases[] = {
		{ "no hint", SMTP_RESULT_TEMPFAIL, 1, 1000, 1000000, 0, RETRY_DEFERRED, 61000, 0 },
		{ "negative hint", SMTP_RESULT_TEMPFAIL, 1, 1000, 1000000, -5, RETRY_DEFERRED, 61000, 0 },
		{ "hint shorter: policy", SMTP_RESULT_TEMPFAIL, 1, 1000, 1000000, 30000, RETRY_DEFERRED, 61000, 0 },
		{ "hint equal: policy", SMTP_RESULT_TEMPFAIL, 1, 1000, 1000000, 60000, RETRY_DEFERRED, 61000, 0 },
		{ "hint longer: hint", SMTP_RESULT_TEMPFAIL, 1, 1000, 1000000, 300000, RETRY_DEFERRED, 301000, 1 },
		{ "hint longer than max", SMTP_RESULT_TEMPFAIL, 1, 1000, INT64_MAX, 86400000, RETRY_DEFERRED, 86401000, 1 },
		{ "hint shorter than backoff", SMTP_RESULT_TEMPFAIL, 3, 1000, 1000000, 200000, RETRY_DEFERRED, 241000, 0 },
		{ "hint past expiry", SMTP_RESULT_TEMPFAIL, 1, 1000, 200000, 300000, RETRY_EXPIRED, 0, 0 },
		{ "hint lands on expiry", SMTP_RESULT_TEMPFAIL, 1, 1000, 301000, 300000, RETRY_EXPIRED, 0, 0 },
		{ "hint just fits", SMTP_RESULT_TEMPFAIL, 1, 1000, 301001, 300000, RETRY_DEFERRED, 301000, 1 },
		{ "hint INT64_MAX: capped", SMTP_RESULT_TEMPFAIL, 1, 1000, INT64_MAX, INT64_MAX, RETRY_DEFERRED,
		  1000 + (int64_t)100 * 365 * 24 * 3600 * 1000, 1 },
		{ "hint, now near INT64_MAX", SMTP_RESULT_TEMPFAIL, 1, INT64_MAX - 100000, INT64_MAX, 300000,
		  RETRY_EXPIRED, 0, 0 },
		{ "ok ignores hint", SMTP_RESULT_OK, 1, 1000, 1000000, 300000, RETRY_DELIVERED, 0, 0 },
		{ "perm ignores hint", SMTP_RESULT_PERMFAIL, 1, 1000, 1000000, 300000, RETRY_FAILED, 0, 0 },
	};
	struct retry_policy p = { 60, 3600 };

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct retry_decision d = retry_decide_hint(&p, cases[i].result, cases[i].attempts,
		    cases[i].now, cases[i].expires, cases[i].hint);

		cr_expect(d.verdict == cases[i].want, "%s: verdict got %s, want %s", cases[i].name,
		    retry_verdict_name(d.verdict), retry_verdict_name(cases[i].want));
		cr_expect(d.hinted == cases[i].want_hinted, "%s: hinted got %d, want %d",
		    cases[i].name, d.hinted, cases[i].want_hinted);
		if (cases[i].want == RETRY_DEFERRED)
			cr_expect(d.next_ms == cases[i].want_next, "%s: next_ms got %lld, want %lld",
			    cases[i].name, (long long)d.next_ms, (long long)cases[i].want_next);
	}
}
