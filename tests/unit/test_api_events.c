/*
 * test_api_events.c - the pure parts of the live event stream: SSE framing
 * and stream-id parsing. The hub and the HTTP streaming are tested end to
 * end against a running server (tests/integration).
 */
#include <criterion/criterion.h>

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "../../server/api_events.h"

Test(api_events_frame, table)
{
	static const struct {
		const char *id, *type, *data, *want;
	} cases[] = {
		{ "1-0", "message.delivered", "{\"a\":1}",
		  "id: 1-0\nevent: message.delivered\ndata: {\"a\":1}\n\n" },
		{ "1700000000000-12", "", "{}", "id: 1700000000000-12\ndata: {}\n\n" },
		{ "1-0", NULL, "x", "id: 1-0\ndata: x\n\n" },
		/* every line terminator starts a new data line; the client joins them with LF */
		{ "1-0", "t", "a\nb", "id: 1-0\nevent: t\ndata: a\ndata: b\n\n" },
		{ "1-0", "t", "a\r\nb", "id: 1-0\nevent: t\ndata: a\ndata: b\n\n" },
		{ "1-0", "t", "a\rb\n", "id: 1-0\nevent: t\ndata: a\ndata: b\ndata: \n\n" },
		{ "1-0", "t", "", "id: 1-0\nevent: t\ndata: \n\n" },
	};
	char out[256];
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int n = api_events_frame(cases[i].id, cases[i].type, cases[i].data,
		    strlen(cases[i].data), out, sizeof(out));

		cr_expect_eq(n, (int)strlen(cases[i].want), "case %zu length: got %d, want %zu", i, n,
		    strlen(cases[i].want));
		cr_expect_str_eq(out, cases[i].want, "case %zu: got [%s], want [%s]", i, out,
		    cases[i].want);
	}
}

Test(api_events_frame, measures_and_truncates_like_snprintf)
{
	static const char want[] = "id: 5-1\nevent: e\ndata: hello\n\n";
	char small[10];
	int n = api_events_frame("5-1", "e", "hello", 5, NULL, 0);

	cr_expect_eq(n, (int)strlen(want), "measure: got %d, want %zu", n, strlen(want));
	n = api_events_frame("5-1", "e", "hello", 5, small, sizeof(small));
	cr_expect_eq(n, (int)strlen(want), "truncated call length: got %d, want %zu", n, strlen(want));
	cr_expect_eq(strlen(small), sizeof(small) - 1, "truncated output: got %zu bytes, want %zu",
	    strlen(small), sizeof(small) - 1);
	cr_expect_eq(memcmp(small, want, sizeof(small) - 1), 0, "truncated output: got [%s]", small);
}

Test(api_events_frame, refuses_line_breaks_in_id_and_type)
{
	char out[64];

	cr_expect_eq(api_events_frame("1-0\n", "t", "x", 1, out, sizeof(out)), -1, "CR/LF in id: got ok, want -1");
	cr_expect_eq(api_events_frame("1-0", "t\r", "x", 1, out, sizeof(out)), -1, "CR in type: got ok, want -1");
	cr_expect_eq(api_events_frame(NULL, "t", "x", 1, out, sizeof(out)), -1, "NULL id: got ok, want -1");
}

Test(api_events_parse_id, table)
{
	static const struct {
		const char *s;
		int rc;
		uint64_t ms, seq;
	} cases[] = {
		{ "0-0", 0, 0, 0 },
		{ "1700000000000-3", 0, 1700000000000ULL, 3 },
		{ "18446744073709551615-18446744073709551615", 0, UINT64_MAX, UINT64_MAX },
		{ "18446744073709551616-0", -1, 0, 0 },   /* overflow */
		{ "1700000000000", -1, 0, 0 },            /* XREAD would accept it, we want the full id */
		{ "-1", -1, 0, 0 },
		{ "1-", -1, 0, 0 },
		{ "1--2", -1, 0, 0 },
		{ "1-2-3", -1, 0, 0 },
		{ "$", -1, 0, 0 },
		{ "", -1, 0, 0 },
		{ " 1-2", -1, 0, 0 },
		{ "1-2 ", -1, 0, 0 },
		{ "0x1-2", -1, 0, 0 },
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint64_t ms = 7, seq = 7;
		int rc = api_events_parse_id(cases[i].s, &ms, &seq);

		cr_expect_eq(rc, cases[i].rc, "parse_id(%s): got %d, want %d", cases[i].s, rc, cases[i].rc);
		if (rc == 0 && cases[i].rc == 0) {
			cr_expect_eq(ms, cases[i].ms, "parse_id(%s) ms: got %llu, want %llu", cases[i].s,
			    (unsigned long long)ms, (unsigned long long)cases[i].ms);
			cr_expect_eq(seq, cases[i].seq, "parse_id(%s) seq: got %llu, want %llu", cases[i].s,
			    (unsigned long long)seq, (unsigned long long)cases[i].seq);
		}
	}
	cr_expect_eq(api_events_parse_id(NULL, NULL, NULL), -1, "NULL: got ok, want -1");
}

Test(api_events_start_at, table)
{
	static const struct {
		int64_t open_ms;
		uint64_t last_ms, last_seq;
		int want_rc;
		uint64_t want_ms, want_seq;
	} cases[] = {
		/* the last event is older than the open: start at it */
		{ 5000, 4000, 7, 0, 4000, 7 },
		{ 5000, 4999, 3, 0, 4999, 3 },
		/* empty stream ("0-0") */
		{ 5000, 0, 0, 0, 0, 0 },
		/* no open time known: the last id */
		{ 0, 4000, 1, 0, 4000, 1 },
		/* events of the open's millisecond or later: from just before it */
		{ 5000, 5000, 0, 1, 4999, UINT64_MAX },
		{ 5000, 5400, 2, 1, 4999, UINT64_MAX },
		/* never more than the slack before the last id */
		{ 5000, 5000 + API_EVENTS_NOW_SLACK_MS + 10, 0, 1, 5010, UINT64_MAX },
		{ 1, 1, 0, 1, 0, UINT64_MAX },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint64_t ms = 12345, seq = 12345;
		int rc = api_events_start_at(cases[i].open_ms, cases[i].last_ms, cases[i].last_seq, &ms, &seq);

		cr_expect(rc == cases[i].want_rc && ms == cases[i].want_ms && seq == cases[i].want_seq,
		    "case %zu: got %d %llu-%llu, want %d %llu-%llu", i, rc, (unsigned long long)ms,
		    (unsigned long long)seq, cases[i].want_rc, (unsigned long long)cases[i].want_ms,
		    (unsigned long long)cases[i].want_seq);
	}
}
