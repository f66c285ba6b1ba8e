/*
 * test_reply.c - table tests for the SMTP reply parser (smtp/reply.c).
 */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../smtp/reply.h"

struct reply_case {
	const char *name;
	const char *in;
	int want_rc;
	int code;
	const char *enhanced;
	const char *text;
	int nlines;
	size_t consumed;   /* 0: whole input */
};

static const struct reply_case reply_cases[] = {
	{ "single", "250 OK\r\n", 1, 250, "", "OK", 1, 0 },
	{ "greeting", "220 mx.example.com ESMTP ready\r\n", 1, 220, "",
	  "mx.example.com ESMTP ready", 1, 0 },
	{ "bare code", "250\r\n", 1, 250, "", "", 1, 0 },
	{ "code and space", "354 \r\n", 1, 354, "", "", 1, 0 },
	{ "bare LF", "250 OK\n", 1, 250, "", "OK", 1, 0 },
	{ "enhanced", "250 2.1.0 Sender OK\r\n", 1, 250, "2.1.0", "Sender OK", 1, 0 },
	{ "enhanced 5xx", "550 5.7.1 Relaying denied\r\n", 1, 550, "5.7.1",
	  "Relaying denied", 1, 0 },
	{ "enhanced 3-digit parts", "452 4.123.456 Busy\r\n", 1, 452, "4.123.456", "Busy", 1, 0 },
	{ "enhanced only", "250 2.0.0\r\n", 1, 250, "2.0.0", "", 1, 0 },
	{ "enhanced class mismatch", "250 5.1.1 odd\r\n", 1, 250, "", "5.1.1 odd", 1, 0 },
	{ "not enhanced: 4 digits", "250 2.1234.0 x\r\n", 1, 250, "", "2.1234.0 x", 1, 0 },
	{ "not enhanced: no space", "250 2.1.0abc\r\n", 1, 250, "", "2.1.0abc", 1, 0 },
	{ "not enhanced: version", "220 2.6 ready\r\n", 1, 220, "", "2.6 ready", 1, 0 },
	{ "3xx has no enhanced", "354 3.0.0 go\r\n", 1, 354, "", "3.0.0 go", 1, 0 },
	{ "multi-line", "250-first\r\n250-second\r\n250 last\r\n", 1, 250, "",
	  "first\nsecond\nlast", 3, 0 },
	{ "multi-line enhanced", "550-5.1.1 No such\r\n550-5.1.1 user\r\n550 5.1.1 here\r\n",
	  1, 550, "5.1.1", "No such\nuser\nhere", 3, 0 },
	{ "multi-line mixed endings", "250-a\n250-b\r\n250 c\n", 1, 250, "", "a\nb\nc", 3, 0 },
	{ "two replies: first only", "250 one\r\n250 two\r\n", 1, 250, "", "one", 1, 9 },
	{ "control bytes masked", "250 a\001b\r\n", 1, 250, "", "a?b", 1, 0 },
	{ "utf-8 kept", "250 ok \xc3\xa9t\xc3\xa9\r\n", 1, 250, "", "ok \xc3\xa9t\xc3\xa9", 1, 0 },
	/* incomplete */
	{ "empty", "", 0, 0, NULL, NULL, 0, 0 },
	{ "partial line", "250 O", 0, 0, NULL, NULL, 0, 0 },
	{ "no LF yet", "250 OK\r", 0, 0, NULL, NULL, 0, 0 },
	{ "continuation only", "250-a\r\n250-b\r\n", 0, 0, NULL, NULL, 0, 0 },
	{ "final partial", "250-a\r\n250 b", 0, 0, NULL, NULL, 0, 0 },
	/* malformed */
	{ "letters", "hello\r\n", SMTP_REPLY_ERR_SYNTAX, 0, NULL, NULL, 0, 0 },
	{ "short", "25\r\n", SMTP_REPLY_ERR_SYNTAX, 0, NULL, NULL, 0, 0 },
	{ "empty line", "\r\n", SMTP_REPLY_ERR_SYNTAX, 0, NULL, NULL, 0, 0 },
	{ "class 1", "150 x\r\n", SMTP_REPLY_ERR_SYNTAX, 0, NULL, NULL, 0, 0 },
	{ "class 6", "650 x\r\n", SMTP_REPLY_ERR_SYNTAX, 0, NULL, NULL, 0, 0 },
	{ "bad separator", "250_x\r\n", SMTP_REPLY_ERR_SYNTAX, 0, NULL, NULL, 0, 0 },
	{ "codes differ", "250-a\r\n251 b\r\n", SMTP_REPLY_ERR_SYNTAX, 0, NULL, NULL, 0, 0 },
	{ "garbage continuation", "250-a\r\nxyz\r\n", SMTP_REPLY_ERR_SYNTAX, 0, NULL, NULL, 0, 0 },
	{ "digit then letters", "2x0 x\r\n", SMTP_REPLY_ERR_SYNTAX, 0, NULL, NULL, 0, 0 },
};

static void
check_case(const struct reply_case *c)
{
	struct smtp_reply r;
	size_t consumed = 12345;
	size_t len = strlen(c->in);
	int rc = smtp_reply_parse(c->in, len, &r, &consumed);

	cr_expect(rc == c->want_rc, "%s: rc got %d, want %d", c->name, rc, c->want_rc);
	if (rc != 1 || c->want_rc != 1) {
		if (c->want_rc != 1)
			cr_expect(consumed == 12345, "%s: consumed written (%zu) on rc %d",
			    c->name, consumed, rc);
		return;
	}
	size_t want_consumed = c->consumed ? c->consumed : len;
	cr_expect(consumed == want_consumed, "%s: consumed got %zu, want %zu",
	    c->name, consumed, want_consumed);
	cr_expect(r.code == c->code, "%s: code got %d, want %d", c->name, r.code, c->code);
	cr_expect_str_eq(r.enhanced, c->enhanced, "%s: enhanced got \"%s\", want \"%s\"",
	    c->name, r.enhanced, c->enhanced);
	cr_expect_str_eq(r.text, c->text, "%s: text got \"%s\", want \"%s\"",
	    c->name, r.text, c->text);
	cr_expect(r.nlines == c->nlines, "%s: nlines got %d, want %d", c->name,
	    r.nlines, c->nlines);
}

Test(reply, table)
{
	for (size_t i = 0; i < sizeof reply_cases / sizeof reply_cases[0]; i++)
		check_case(&reply_cases[i]);
}

/*
 * Every case fed through a heap buffer of exactly its length (ASan catches
 * any read past len), one prefix at a time: prefixes of a complete reply
 * must give 0 or the same final answer, never a different one.
 */
Test(reply, byte_by_byte)
{
	for (size_t i = 0; i < sizeof reply_cases / sizeof reply_cases[0]; i++) {
		const struct reply_case *c = &reply_cases[i];
		size_t len = strlen(c->in);
		size_t want_at = c->consumed ? c->consumed : len;

		for (size_t k = 0; k <= len; k++) {
			char *b = malloc(k ? k : 1);
			struct smtp_reply r;
			size_t consumed = 0;
			int rc;

			cr_assert_not_null(b);
			memcpy(b, c->in, k);
			rc = smtp_reply_parse(b, k, &r, &consumed);
			free(b);
			if (c->want_rc == 1) {
				int want = k < want_at ? 0 : 1;
				cr_expect(rc == want, "%s: prefix %zu: rc got %d, want %d",
				    c->name, k, rc, want);
				if (rc == 1)
					cr_expect(consumed == want_at,
					    "%s: prefix %zu: consumed got %zu, want %zu",
					    c->name, k, consumed, want_at);
			} else {
				cr_expect(rc == 0 || rc == c->want_rc,
				    "%s: prefix %zu: rc got %d, want 0 or %d",
				    c->name, k, rc, c->want_rc);
			}
		}
	}
}

Test(reply, ehlo_extensions)
{
	static const struct {
		const char *name;
		const char *in;
		unsigned ext;
		unsigned long size;
	} cases[] = {
		{ "postfix",
		  "250-mx.example.com\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n"
		  "250-VRFY\r\n250-ETRN\r\n250-STARTTLS\r\n250-ENHANCEDSTATUSCODES\r\n"
		  "250-8BITMIME\r\n250-DSN\r\n250 SMTPUTF8\r\n",
		  SMTP_EXT_PIPELINING | SMTP_EXT_SIZE | SMTP_EXT_STARTTLS |
		  SMTP_EXT_ENHANCEDSTATUSCODES | SMTP_EXT_8BITMIME | SMTP_EXT_SMTPUTF8,
		  10240000 },
		{ "auth new form", "250-host\r\n250 AUTH PLAIN LOGIN CRAM-MD5\r\n",
		  SMTP_EXT_AUTH_PLAIN | SMTP_EXT_AUTH_LOGIN, 0 },
		{ "auth old form", "250-host\r\n250 AUTH=PLAIN LOGIN\r\n",
		  SMTP_EXT_AUTH_PLAIN | SMTP_EXT_AUTH_LOGIN, 0 },
		{ "auth old form login only", "250-host\r\n250 AUTH=LOGIN\r\n",
		  SMTP_EXT_AUTH_LOGIN, 0 },
		{ "auth other only", "250-host\r\n250 AUTH CRAM-MD5 XOAUTH2\r\n", 0, 0 },
		{ "lower case", "250-host\r\n250-starttls\r\n250-auth plain\r\n250 size 42\r\n",
		  SMTP_EXT_STARTTLS | SMTP_EXT_AUTH_PLAIN | SMTP_EXT_SIZE, 42 },
		{ "size without number", "250-host\r\n250 SIZE\r\n", SMTP_EXT_SIZE, 0 },
		{ "size saturates", "250-host\r\n250 SIZE 99999999999999999999999999\r\n",
		  SMTP_EXT_SIZE, (unsigned long)-1 },
		{ "not a prefix match", "250-host\r\n250-STARTTLSX\r\n250 PIPELININGS\r\n", 0, 0 },
		{ "greeting line ignored", "250 STARTTLS\r\n", 0, 0 },
		{ "bare LF", "250-host\n250-STARTTLS\n250 8BITMIME\n",
		  SMTP_EXT_STARTTLS | SMTP_EXT_8BITMIME, 0 },
		{ "not 250", "550-host\r\n550 STARTTLS\r\n", 0, 0 },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct smtp_reply r;
		size_t consumed;
		int rc = smtp_reply_parse(cases[i].in, strlen(cases[i].in), &r, &consumed);

		cr_expect(rc == 1, "%s: rc got %d, want 1", cases[i].name, rc);
		if (rc != 1)
			continue;
		cr_expect(r.ext == cases[i].ext, "%s: ext got 0x%x, want 0x%x",
		    cases[i].name, r.ext, cases[i].ext);
		cr_expect(r.size_limit == cases[i].size, "%s: size got %lu, want %lu",
		    cases[i].name, r.size_limit, cases[i].size);
	}
}

Test(reply, caps)
{
	size_t big = SMTP_REPLY_LINE_MAX + 16;
	char *b = malloc(big + 8);
	struct smtp_reply r;
	size_t consumed;
	int rc;

	cr_assert_not_null(b);
	/* a line at the cap is fine */
	memcpy(b, "250 ", 4);
	memset(b + 4, 'a', SMTP_REPLY_LINE_MAX - 4);
	memcpy(b + SMTP_REPLY_LINE_MAX, "\r\n", 2);
	rc = smtp_reply_parse(b, SMTP_REPLY_LINE_MAX + 2, &r, &consumed);
	cr_expect(rc == 1, "line at cap: rc got %d, want 1", rc);
	cr_expect(strlen(r.text) == SMTP_REPLY_TEXT_MAX - 1,
	    "text cut: got %zu chars, want %d", strlen(r.text), SMTP_REPLY_TEXT_MAX - 1);

	/* one over the cap, with and without its line end yet */
	memset(b + 4, 'a', big - 4);
	rc = smtp_reply_parse(b, SMTP_REPLY_LINE_MAX + 1, &r, &consumed);
	cr_expect(rc == 0, "below cap without LF: rc got %d, want 0", rc);
	rc = smtp_reply_parse(b, big, &r, &consumed);
	cr_expect(rc == SMTP_REPLY_ERR_TOOLONG, "no LF past cap: rc got %d, want %d",
	    rc, SMTP_REPLY_ERR_TOOLONG);
	memcpy(b + SMTP_REPLY_LINE_MAX + 1, "\r\n", 2);
	rc = smtp_reply_parse(b, SMTP_REPLY_LINE_MAX + 3, &r, &consumed);
	cr_expect(rc == SMTP_REPLY_ERR_TOOLONG, "line over cap: rc got %d, want %d",
	    rc, SMTP_REPLY_ERR_TOOLONG);
	free(b);

	/* line count cap */
	size_t n = (SMTP_REPLY_LINES_MAX + 1) * 8 + 8;
	char *m = malloc(n);
	size_t off = 0;
	cr_assert_not_null(m);
	for (int i = 0; i < SMTP_REPLY_LINES_MAX; i++) {
		memcpy(m + off, "250-ab\r\n", 8);
		off += 8;
	}
	memcpy(m + off, "250 ab\r\n", 8);
	off += 8;
	rc = smtp_reply_parse(m, off, &r, &consumed);
	cr_expect(rc == SMTP_REPLY_ERR_TOOLONG, "too many lines: rc got %d, want %d",
	    rc, SMTP_REPLY_ERR_TOOLONG);
	/* exactly the cap is fine */
	rc = smtp_reply_parse(m + 8, off - 8, &r, &consumed);
	cr_expect(rc == 1, "lines at cap: rc got %d, want 1", rc);
	cr_expect(r.nlines == SMTP_REPLY_LINES_MAX, "nlines got %d, want %d",
	    r.nlines, SMTP_REPLY_LINES_MAX);
	free(m);
}

Test(reply, class)
{
	static const struct {
		int code, want;
	} cases[] = {
		{ 220, 2 }, { 250, 2 }, { 354, 3 }, { 421, 4 }, { 554, 5 },
		{ 599, 5 }, { 199, 0 }, { 600, 0 }, { 0, 0 },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct smtp_reply r;
		memset(&r, 0, sizeof r);
		r.code = cases[i].code;
		cr_expect(smtp_reply_class(&r) == cases[i].want, "code %d: got %d, want %d",
		    cases[i].code, smtp_reply_class(&r), cases[i].want);
	}
}

/* Pseudo-random byte soup from SMTP-ish pieces: the parser answers within
 * its contract and, under ASan, never reads past len. */
Test(reply, random_inputs)
{
	static const char *const pieces[] = {
		"250", "250-", "250 ", "550 5.1.1 ", "2.0.0", "\r\n", "\n", "\r",
		"AUTH=PLAIN", "SIZE 1", "x", "", "4", "-", " ", "\0",
	};
	uint64_t seed = 0x9e3779b97f4a7c15ULL;

	for (int iter = 0; iter < 20000; iter++) {
		char tmp[256];
		size_t n = 0;
		int k;

		seed ^= seed << 13;
		seed ^= seed >> 7;
		seed ^= seed << 17;
		k = (int)(seed % 12);
		for (int j = 0; j < k; j++) {
			const char *p = pieces[(seed >> (4 * j)) % 16];
			size_t pl = p[0] == '\0' && (seed >> j & 1) ? 1 : strlen(p);
			if (n + pl > sizeof tmp)
				break;
			memcpy(tmp + n, p, pl);
			n += pl;
		}
		char *b = malloc(n ? n : 1);
		cr_assert_not_null(b);
		memcpy(b, tmp, n);
		struct smtp_reply r;
		size_t consumed = 0;
		int rc = smtp_reply_parse(b, n, &r, &consumed);
		cr_expect(rc >= SMTP_REPLY_ERR_TOOLONG && rc <= 1, "iter %d: rc got %d", iter, rc);
		if (rc == 1) {
			cr_expect(consumed > 0 && consumed <= n, "iter %d: consumed got %zu, len %zu",
			    iter, consumed, n);
			cr_expect(r.code >= 200 && r.code <= 599, "iter %d: code got %d", iter, r.code);
			cr_expect(strlen(r.text) < sizeof r.text, "iter %d: text not terminated", iter);
		}
		free(b);
	}
}
