/*
 * test_retry_hint.c - table tests for the retry-hint reader (smtp/retry_hint.c):
 * replies real servers send, those that name a delay and those that do not.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "../../smtp/retry_hint.h"

struct hint_case {
	const char *in;   /* reply text as the reply parser keeps it (codes stripped) or whole lines */
	int want;         /* seconds, 0: no hint */
};

static const struct hint_case positive[] = {
	/* greylisting and busy servers */
	{ "Greylisted, please try again in 300 seconds", 300 },
	{ "451 4.7.1 Greylisted, please try again in 300 seconds", 300 },
	{ "Try again in 5 minutes", 300 },
	{ "421 4.7.0 Try again in 5 minutes", 300 },
	{ "4.2.1 <a@example.com>: Recipient address rejected: please retry in 60 seconds", 60 },
	{ "452 4.3.1 Insufficient system storage, retry after 30s", 30 },
	{ "Retry-After: 120", 120 },
	{ "retry-after:120", 120 },
	{ "Retry-After: 2 minutes", 120 },
	{ "X-Retry-After: 45\n", 45 },
	{ "Greylisting in action, please come back in 00:04:57", 297 },
	{ "please come back in 1:00:00", 3600 },
	{ "Greylisted by Mimecast, try again in 5 minutes", 300 },
	{ "4.7.1 Greylisting in effect, please try again in 2 min.", 120 },
	{ "Temporary error, please try again in 10 mins", 600 },
	{ "too many connections from your IP, wait 30 sec", 30 },
	{ "rate limited, please wait for 2 hrs", 7200 },
	{ "please wait at least 90 seconds before retrying", 90 },
	{ "try again in about 10 minutes", 600 },
	{ "try again in approximately 1 hour", 3600 },
	{ "try again after 15 minutes", 900 },
	{ "come back after 20s", 20 },
	{ "retry again in 45 seconds", 45 },
	{ "try again in an hour", 3600 },
	{ "wait a minute", 60 },
	{ "try again in one second", 1 },
	{ "TRY AGAIN IN 2 MINUTES", 120 },
	{ "Try-Again-In 3s", 3 },
	{ "try again in 5m", 300 },
	{ "try again in 2h", 7200 },
	{ "try again in 1 hr", 3600 },
	{ "try again in 7 secs.", 7 },
	{ "retry in 1 s", 1 },
	/* multi-line: the phrase across lines, the hint on a later line */
	{ "Greylisted\nplease try again\nin 5 minutes", 300 },
	{ "Service temporarily unavailable\nTry again in 30 seconds", 30 },
	{ "4.7.0 deferred [TSS04]\nretry in 600s", 600 },
	/* the first complete hint wins; an incomplete one is skipped */
	{ "try again in a few minutes, or retry in 90 seconds", 90 },
	{ "try again in 4.7.1 - retry after 10 seconds", 10 },
	{ "try again in 1 minute, or 5 minutes at most", 60 },
	/* clamped */
	{ "try again in 48 hours", 86400 },
	{ "retry in 99999999999999999999999999 hours", 86400 },
	{ "come back in 999:00:00", 86400 },
};

static const struct hint_case negative[] = {
	{ "", 0 },
	{ "try again later", 0 },
	{ "421 4.7.0 Try again later, closing connection.", 0 },
	{ "4.7.28 [192.0.2.1 15] Our system has detected an unusual rate of unsolicited mail "
	  "originating from your IP address. To protect our users from spam, mail sent from "
	  "your IP address has been temporarily rate limited. Please try again later.", 0 },
	{ "4.7.500 Server busy. Please try again later from [203.0.113.7]. "
	  "(S77719) [BN8NAM12FT012.eop-nam12.prod.protection.outlook.com]", 0 },
	{ "4.7.0 [TSS04] Messages from 192.0.2.44 temporarily deferred due to unexpected "
	  "volume or user complaints - 4.16.55.1; see https://postmaster.yahooinc.com/error-codes", 0 },
	{ "4.7.1 Greylisted, see http://postgrey.schweikert.ch/help/example.com.html", 0 },
	{ "try again in 4.7.1", 0 },
	{ "retry in 10.0.0.1", 0 },
	{ "retry after 1.5 minutes", 0 },
	{ "retry after 1,5 minutes", 0 },
	{ "retry after 10:30 UTC", 0 },
	{ "wait 00:05:00", 0 },
	{ "come back in 0:4:57", 0 },
	{ "come back in 00:61:00", 0 },
	{ "come back in 00:04", 0 },
	{ "try again in 5", 0 },
	{ "retry after 120", 0 },
	{ "try again in 5 months", 0 },
	{ "try again in 5 ms", 0 },
	{ "try again in 5 days", 0 },
	{ "wait 5m30s", 0 },
	{ "try again in 0 seconds", 0 },
	{ "retrying in 5 minutes", 0 },
	{ "Timeout waiting for data, 30 seconds", 0 },
	{ "please await 5 minutes", 0 },
	{ "entry in 5 minutes", 0 },
	{ "tryagain in 5 minutes", 0 },
	{ "try again in5 minutes", 0 },
	{ "try again in", 0 },
	{ "try again in 5 mi", 0 },
	{ "try again in a few minutes", 0 },
	{ "wait a moment", 0 },
	{ "4.2.2 mailbox full, 2048 messages in 5 minutes", 0 },
	{ "452 4.5.3 Too many recipients (100 in 30 s)", 0 },
};

static void
run(const struct hint_case *cases, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		int got = retry_hint_parse(cases[i].in, strlen(cases[i].in));

		cr_expect(got == cases[i].want, "%s: got %d, want %d", cases[i].in, got, cases[i].want);
	}
}

Test(retry_hint, names_a_delay)
{
	run(positive, sizeof positive / sizeof positive[0]);
}

Test(retry_hint, names_none)
{
	run(negative, sizeof negative / sizeof negative[0]);
}

/* never reads past len: every prefix of a hint is parsed from a heap buffer of exactly that size */
Test(retry_hint, stops_at_len)
{
	static const char full[] = "please try again in 300 seconds";
	static const char *const complete[] = { "s", "sec", "second", "seconds" };
	const size_t head = strlen("please try again in 300 ");

	for (size_t k = 0; k <= sizeof(full) - 1; k++) {
		char *buf = malloc(k > 0 ? k : 1);
		int got, want = 0;

		cr_assert(buf != NULL);
		memcpy(buf, full, k);
		for (size_t u = 0; u < sizeof complete / sizeof complete[0]; u++)
			if (k == head + strlen(complete[u]))
				want = 300;
		got = retry_hint_parse(buf, k);
		cr_expect(got == want, "prefix %.*s: got %d, want %d", (int)k, full, got, want);
		free(buf);
	}
	cr_expect(retry_hint_parse(NULL, 0) == 0, "NULL: got %d, want 0", retry_hint_parse(NULL, 0));
}

/* NUL bytes are text like any other: a boundary, never the end */
Test(retry_hint, nul_bytes)
{
	static const char after[] = "busy\0try again in 5 minutes";
	static const char inside[] = "try again\0in 5 minutes";
	static const char unit[] = "try again in 5\0minutes";

	cr_expect(retry_hint_parse(after, sizeof(after) - 1) == 300, "after NUL: got %d, want 300",
	    retry_hint_parse(after, sizeof(after) - 1));
	cr_expect(retry_hint_parse(inside, sizeof(inside) - 1) == 0, "inside: got %d, want 0",
	    retry_hint_parse(inside, sizeof(inside) - 1));
	cr_expect(retry_hint_parse(unit, sizeof(unit) - 1) == 0, "before unit: got %d, want 0",
	    retry_hint_parse(unit, sizeof(unit) - 1));
}

/* high bytes (UTF-8, Latin-1) are boundaries, not letters */
Test(retry_hint, high_bytes)
{
	static const char s[] = "\xc3\xa9try again in 5 minutes\xff";

	cr_expect(retry_hint_parse(s, sizeof(s) - 1) == 300, "got %d, want 300",
	    retry_hint_parse(s, sizeof(s) - 1));
}
