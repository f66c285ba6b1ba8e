/* test_api_messages.c - pure helpers of api_messages.c: status summary, Idempotency-Key, expiry, JSON quoting. */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "../../server/api.h"

Test(api_messages, summary)
{
	static const struct {
		const char *st[4];
		size_t n;
		const char *want;
	} cases[] = {
		{ { NULL }, 0, "queued" },
		{ { "queued" }, 1, "queued" },
		{ { "scheduled", "scheduled" }, 2, "scheduled" },
		{ { "suppressed", "suppressed", "suppressed" }, 3, "suppressed" },
		{ { "canceled", "delivered" }, 2, "partial" },
		{ { "queued", "suppressed" }, 2, "partial" },
		{ { "delivered", "delivered", "failed", "delivered" }, 4, "partial" },
		{ { "canceled", NULL }, 2, "partial" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *got = api_messages_summary(cases[i].st, cases[i].n);

		cr_assert_str_eq(got, cases[i].want, "case %zu: got %s, want %s", i, got,
		    cases[i].want);
	}
}

Test(api_messages, idem_key_syntax)
{
	static char long_ok[256], long_bad[257];
	static const struct {
		const char *key;
		int want;
	} cases[] = {
		{ "a", 1 },
		{ "order-42/confirm", 1 },
		{ "with space ok", 1 },
		{ "~!@#$%^&*()", 1 },
		{ "", 0 },
		{ "tab\there", 0 },
		{ "new\nline", 0 },
		{ "caf\xc3\xa9", 0 },
		{ "del\x7f", 0 },
		{ NULL, 0 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int got = api_messages_idem_key_ok(cases[i].key);

		cr_assert_eq(got, cases[i].want, "case %zu (%s): got %d, want %d", i,
		    cases[i].key != NULL ? cases[i].key : "NULL", got, cases[i].want);
	}
	memset(long_ok, 'k', 255);
	memset(long_bad, 'k', 256);
	cr_assert_eq(api_messages_idem_key_ok(long_ok), 1, "255 chars: got 0, want 1");
	cr_assert_eq(api_messages_idem_key_ok(long_bad), 0, "256 chars: got 1, want 0");
}

Test(api_messages, expiry)
{
	static const int64_t now = 1795449480000LL, day = 86400000LL;
	static const struct {
		int64_t send_at, ttl, want;
	} cases[] = {
		{ 0, 0, now + day },                      /* max age from acceptance */
		{ 0, 600000, now + 600000 },              /* ttl shorter than max age */
		{ 0, 2 * day, now + day },                /* ttl longer: max age wins */
		{ now + 3 * day, 0, now + 4 * day },      /* scheduled: max age from send_at */
		{ now + 3600000, 600000, now + 600000 },  /* ttl counts from acceptance (caller refuses) */
		{ now + 60000, 600000, now + 600000 },
		{ now - 5000, 0, now + day },             /* past send_at: now */
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int64_t got = api_messages_expiry(now, cases[i].send_at, cases[i].ttl, day);

		cr_assert_eq(got, cases[i].want, "case %zu: got %lld, want %lld", i,
		    (long long)got, (long long)cases[i].want);
	}
}

/* the hand-written 202 body quotes strings exactly as cJSON prints them */
Test(api_messages, quote_matches_cjson)
{
	static const char *const cases[] = {
		"", "msg_01abc", "user@example.com", "a\"b\\c", "tab\tnl\ncr\rbs\bff\f",
		"\x01\x1f\x7f", "caf\xc3\xa9 \xe2\x80\xa8 \xf0\x9f\x98\x80", "</script>",
	};
	char all[32];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		cJSON *s = cJSON_CreateString(cases[i]);
		char *want = cJSON_PrintUnformatted(s), *got = api_messages_quote(cases[i]);

		cr_assert_not_null(want);
		cr_assert_not_null(got);
		cr_assert_str_eq(got, want, "case %zu: got %s, want %s", i, got, want);
		free(got);
		cJSON_free(want);
		cJSON_Delete(s);
	}
	/* every byte from 1 to 31 */
	for (int c = 1; c < 32; c++)
		all[c - 1] = (char)c;
	all[31] = '\0';
	{
		cJSON *s = cJSON_CreateString(all);
		char *want = cJSON_PrintUnformatted(s), *got = api_messages_quote(all);

		cr_assert_str_eq(got, want, "got %s, want %s", got, want);
		free(got);
		cJSON_free(want);
		cJSON_Delete(s);
	}
}

Test(api_messages, id_ms)
{
	/* util_random_id's time characters, read back */
	cr_assert_eq(api_messages_id_ms("msg_01m96kg57pj9nbk3z4gdf7bkvv", -1), 1796591850742LL);
	cr_assert_eq(api_messages_id_ms("msg_01m96kg57pj9nbk3z4gdf7bkvvp3", -1), 1796591850742LL);
	cr_assert_eq(api_messages_id_ms("msg_0000000000000000000000000", -1), -1);   /* time 0 */
	cr_assert_eq(api_messages_id_ms("msg_01m96kg5", -1), -1);                    /* too short */
	cr_assert_eq(api_messages_id_ms("evt_01m96kg57pj9nbk3z4gdf7bkvv", -1), -1);
	cr_assert_eq(api_messages_id_ms("msg_01m96kgU7pj9nbk3z4gdf7bkvv", -1), -1);  /* not the alphabet */
}
