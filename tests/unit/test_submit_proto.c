/*
 * test_submit_proto.c - the pure SMTP submission protocol module
 * (server/submit_proto.c), table-driven, no sockets: line splitting and
 * its caps, every verb, MAIL/RCPT paths and parameters (SIZE overflow,
 * source routes, SMTPUTF8), AUTH PLAIN with 1, 2 and 3 NULs, LOGIN
 * cancel, base64 padding, and the DATA reader with every SMTP smuggling
 * end-of-data variant fed whole, split at every offset and one byte at a
 * time. What must never happen: a message boundary anywhere but at
 * CRLF "." CRLF, output past the cap, a smuggled command read as one.
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <string.h>

#include "../../server/submit_proto.h"

/* --- lines --------------------------------------------------------------- */

Test(submit_proto, next_line_table)
{
	static const struct {
		const char *in;
		size_t cap;
		int want;
		size_t want_len;
	} t[] = {
		{ "NOOP\r\n", 0, 1, 4 },
		{ "NOOP\r\nQUIT\r\n", 0, 1, 4 },
		{ "\r\n", 0, 1, 0 },
		{ "NOOP", 0, 0, 0 },
		{ "NOOP\r", 0, 0, 0 },
		{ "NOOP\n", 0, SUBM_ERR_BARE_EOL, 0 },
		{ "NO\nOP\r\n", 0, SUBM_ERR_BARE_EOL, 0 },
		{ "NO\rOP\r\n", 0, SUBM_ERR_BARE_EOL, 0 },
		{ "NOOP\r\r\n", 0, SUBM_ERR_BARE_EOL, 0 },
		{ "abcdefgh\r\n", 10, 1, 8 },      /* exactly the cap incl. CRLF */
		{ "abcdefghi\r\n", 10, SUBM_ERR_LINE_TOO_LONG, 0 },
		{ "abcdefgh\r", 10, 0, 0 },       /* may still be complete */
		{ "abcdefghi", 10, SUBM_ERR_LINE_TOO_LONG, 0 },
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		size_t ll = 99, used = 99;
		int rc = subm_next_line(t[i].in, strlen(t[i].in), t[i].cap, &ll, &used);

		cr_expect_eq(rc, t[i].want, "next_line(%zu): got %d, want %d", i, rc, t[i].want);
		if (rc == 1) {
			cr_expect_eq(ll, t[i].want_len, "line %zu length: got %zu, want %zu", i, ll,
			    t[i].want_len);
			cr_expect_eq(used, ll + 2, "line %zu consumed: got %zu, want %zu", i, used, ll + 2);
		} else {
			cr_expect_eq(used, 0, "line %zu consumed on %d: got %zu, want 0", i, rc, used);
		}
	}
}

Test(submit_proto, next_line_default_and_max_caps)
{
	static char buf[SUBM_LINE_MAX + 8];
	size_t ll, used;

	memset(buf, 'a', sizeof(buf));
	/* default 1000 incl. CRLF: 998 octets fit, 999 do not */
	memcpy(buf + 998, "\r\n", 2);
	cr_expect_eq(subm_next_line(buf, 1000, 0, &ll, &used), 1, "998 + CRLF under the default cap");
	buf[998] = 'a';
	memcpy(buf + 999, "\r\n", 2);
	cr_expect_eq(subm_next_line(buf, 1001, 0, &ll, &used), SUBM_ERR_LINE_TOO_LONG,
	    "999 + CRLF under the default cap: want too long");
	cr_expect_eq(subm_next_line(buf, 1001, 4096, &ll, &used), 1, "999 + CRLF under 4096");
	/* a cap above SUBM_LINE_MAX is clamped */
	memset(buf, 'a', sizeof(buf));
	memcpy(buf + SUBM_LINE_MAX - 1, "\r\n", 2);
	cr_expect_eq(subm_next_line(buf, SUBM_LINE_MAX + 1, 100000, &ll, &used),
	    SUBM_ERR_LINE_TOO_LONG, "a line of SUBM_LINE_MAX + 1 under a cap of 100000");
}

/* --- commands ------------------------------------------------------------ */

struct parse_case {
	const char *line;
	int utf8;          /* opts.smtputf8 */
	uint64_t max;      /* opts.max_size */
	int want;
	enum subm_verb verb;
	const char *path;  /* when want == 0 and not NULL */
};

static void
run_parse(const struct parse_case *t, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct subm_opts o = { .smtputf8 = t[i].utf8, .max_size = t[i].max };
		struct subm_cmd c;
		int rc = subm_parse(t[i].line, strlen(t[i].line), &o, &c);

		cr_expect_eq(rc, t[i].want, "parse \"%s\": got %d, want %d", t[i].line, rc, t[i].want);
		cr_expect_eq(c.verb, t[i].verb, "parse \"%s\" verb: got %d, want %d", t[i].line,
		    c.verb, t[i].verb);
		if (rc == 0 && t[i].path != NULL)
			cr_expect_str_eq(c.path, t[i].path, "parse \"%s\" path: got \"%s\", want \"%s\"",
			    t[i].line, c.path, t[i].path);
	}
}

Test(submit_proto, verbs)
{
	static const struct parse_case t[] = {
		{ "EHLO client.example", 0, 0, 0, SUBM_V_EHLO, NULL },
		{ "ehlo client.example", 0, 0, 0, SUBM_V_EHLO, NULL },
		{ "HELO client.example", 0, 0, 0, SUBM_V_HELO, NULL },
		{ "EHLO", 0, 0, SUBM_ERR_SYNTAX, SUBM_V_EHLO, NULL },
		{ "EHLO ", 0, 0, SUBM_ERR_SYNTAX, SUBM_V_EHLO, NULL },
		{ "DATA", 0, 0, 0, SUBM_V_DATA, NULL },
		{ "data", 0, 0, 0, SUBM_V_DATA, NULL },
		{ "DATA x", 0, 0, SUBM_ERR_SYNTAX, SUBM_V_DATA, NULL },
		{ "RSET", 0, 0, 0, SUBM_V_RSET, NULL },
		{ "NOOP", 0, 0, 0, SUBM_V_NOOP, NULL },
		{ "NOOP anything", 0, 0, 0, SUBM_V_NOOP, NULL },
		{ "QUIT", 0, 0, 0, SUBM_V_QUIT, NULL },
		{ "QUIT ", 0, 0, 0, SUBM_V_QUIT, NULL },
		{ "StartTLS", 0, 0, 0, SUBM_V_STARTTLS, NULL },
		{ "STARTTLS now", 0, 0, SUBM_ERR_SYNTAX, SUBM_V_STARTTLS, NULL },
		{ "VRFY user", 0, 0, 0, SUBM_V_VRFY, NULL },
		{ "VRFY", 0, 0, SUBM_ERR_SYNTAX, SUBM_V_VRFY, NULL },
		{ "HELP", 0, 0, 0, SUBM_V_HELP, NULL },
		{ "HELP MAIL", 0, 0, 0, SUBM_V_HELP, NULL },
		{ "", 0, 0, SUBM_ERR_UNKNOWN_CMD, SUBM_V_UNKNOWN, NULL },
		{ "XYZZY", 0, 0, SUBM_ERR_UNKNOWN_CMD, SUBM_V_UNKNOWN, NULL },
		{ "DAT", 0, 0, SUBM_ERR_UNKNOWN_CMD, SUBM_V_UNKNOWN, NULL },
		{ "DATAX", 0, 0, SUBM_ERR_UNKNOWN_CMD, SUBM_V_UNKNOWN, NULL },
		{ "BDAT 10 LAST", 0, 0, SUBM_ERR_UNKNOWN_CMD, SUBM_V_UNKNOWN, NULL },
		{ " NOOP", 0, 0, SUBM_ERR_UNKNOWN_CMD, SUBM_V_UNKNOWN, NULL },
		{ "NOOP a\tb", 0, 0, SUBM_ERR_SYNTAX, SUBM_V_NOOP, NULL },
		{ "NOOP \x7f", 0, 0, SUBM_ERR_SYNTAX, SUBM_V_NOOP, NULL },
	};

	run_parse(t, sizeof(t) / sizeof(t[0]));
}

Test(submit_proto, ehlo_arg_points_into_line)
{
	const char *l = "EHLO client.example  ";
	struct subm_cmd c;

	cr_assert_eq(subm_parse(l, strlen(l), NULL, &c), 0);
	cr_expect_eq(c.arg_len, strlen("client.example"), "arg_len: got %zu, want 14", c.arg_len);
	cr_expect_eq(strncmp(c.arg, "client.example", c.arg_len), 0, "arg: got \"%.*s\"",
	    (int)c.arg_len, c.arg);
}

Test(submit_proto, nul_in_line)
{
	static const char l[] = "MAIL FROM:<a@b.example>\0 SIZE=1";
	struct subm_cmd c;
	int rc = subm_parse(l, sizeof(l) - 1, NULL, &c);

	cr_expect_eq(rc, SUBM_ERR_SYNTAX, "a NUL in the line: got %d, want SYNTAX", rc);
}

Test(submit_proto, mail_rcpt_paths)
{
	static const struct parse_case t[] = {
		{ "MAIL FROM:<a@b.example>", 0, 0, 0, SUBM_V_MAIL, "a@b.example" },
		{ "mail from:<a@b.example>", 0, 0, 0, SUBM_V_MAIL, "a@b.example" },
		{ "MAIL FROM: <a@b.example>", 0, 0, 0, SUBM_V_MAIL, "a@b.example" },
		{ "MAIL FROM:<>", 0, 0, 0, SUBM_V_MAIL, "" },
		{ "RCPT TO:<>", 0, 0, SUBM_ERR_ADDR, SUBM_V_RCPT, NULL },
		{ "MAIL FROM:a@b.example", 0, 0, SUBM_ERR_SYNTAX, SUBM_V_MAIL, NULL },
		{ "MAIL FROM:<a@b.example", 0, 0, SUBM_ERR_SYNTAX, SUBM_V_MAIL, NULL },
		{ "MAIL TO:<a@b.example>", 0, 0, SUBM_ERR_SYNTAX, SUBM_V_MAIL, NULL },
		{ "MAIL", 0, 0, SUBM_ERR_SYNTAX, SUBM_V_MAIL, NULL },
		{ "MAIL FROM:<a@b.example>x", 0, 0, SUBM_ERR_SYNTAX, SUBM_V_MAIL, NULL },
		{ "RCPT TO:<c@d.example>", 0, 0, 0, SUBM_V_RCPT, "c@d.example" },
		{ "RCPT TO:c@d.example", 0, 0, SUBM_ERR_SYNTAX, SUBM_V_RCPT, NULL },
		{ "RCPT FROM:<c@d.example>", 0, 0, SUBM_ERR_SYNTAX, SUBM_V_RCPT, NULL },
		{ "RCPT TO:<postmaster>", 0, 0, SUBM_ERR_ADDR, SUBM_V_RCPT, NULL },
		{ "RCPT TO:<a b@d.example>", 0, 0, SUBM_ERR_ADDR, SUBM_V_RCPT, NULL },
		{ "RCPT TO:<\"a b\"@d.example>", 0, 0, SUBM_ERR_ADDR, SUBM_V_RCPT, NULL },
		{ "RCPT TO:<a..b@d.example>", 0, 0, SUBM_ERR_ADDR, SUBM_V_RCPT, NULL },
		{ "RCPT TO:<a@-d.example>", 0, 0, SUBM_ERR_ADDR, SUBM_V_RCPT, NULL },
		{ "RCPT TO:<a@[192.0.2.1]>", 0, 0, 0, SUBM_V_RCPT, "a@[192.0.2.1]" },
		/* source routes: accepted and stripped (RFC 5321 4.1.2, appendix C) */
		{ "RCPT TO:<@relay.example:c@d.example>", 0, 0, 0, SUBM_V_RCPT, "c@d.example" },
		{ "RCPT TO:<@a.example,@b.example:c@d.example>", 0, 0, 0, SUBM_V_RCPT, "c@d.example" },
		{ "MAIL FROM:<@a.example:c@d.example>", 0, 0, 0, SUBM_V_MAIL, "c@d.example" },
		{ "RCPT TO:<@:c@d.example>", 0, 0, SUBM_ERR_ADDR, SUBM_V_RCPT, NULL },
		{ "RCPT TO:<@a.example,:c@d.example>", 0, 0, SUBM_ERR_ADDR, SUBM_V_RCPT, NULL },
		{ "RCPT TO:<@a.example,b.example:c@d.example>", 0, 0, SUBM_ERR_ADDR, SUBM_V_RCPT, NULL },
		{ "RCPT TO:<@a.example>", 0, 0, SUBM_ERR_ADDR, SUBM_V_RCPT, NULL },
		{ "RCPT TO:<@a.example:>", 0, 0, SUBM_ERR_ADDR, SUBM_V_RCPT, NULL },
		/* UTF-8 only with SMTPUTF8 */
		{ "RCPT TO:<j\xc3\xb6rg@d.example>", 0, 0, SUBM_ERR_UTF8, SUBM_V_RCPT, NULL },
		{ "RCPT TO:<j\xc3\xb6rg@d.example>", 1, 0, 0, SUBM_V_RCPT, "j\xc3\xb6rg@d.example" },
		{ "RCPT TO:<j\xc3rg@d.example>", 1, 0, SUBM_ERR_ADDR, SUBM_V_RCPT, NULL },
		{ "RCPT TO:<a\xe2\x80\xae" "b@d.example>", 1, 0, SUBM_ERR_ADDR, SUBM_V_RCPT, NULL },
		{ "MAIL FROM:<j\xc3\xb6rg@d.example>", 0, 0, SUBM_ERR_UTF8, SUBM_V_MAIL, NULL },
		{ "MAIL FROM:<j\xc3\xb6rg@d.example> SMTPUTF8", 0, 0, 0, SUBM_V_MAIL,
		  "j\xc3\xb6rg@d.example" },
		/* RCPT takes no parameters */
		{ "RCPT TO:<c@d.example> NOTIFY=NEVER", 0, 0, SUBM_ERR_PARAM, SUBM_V_RCPT, NULL },
		{ "RCPT TO:<c@d.example> =x", 0, 0, SUBM_ERR_SYNTAX, SUBM_V_RCPT, NULL },
	};

	run_parse(t, sizeof(t) / sizeof(t[0]));
}

Test(submit_proto, path_length_caps)
{
	char local[80], line[600];
	struct subm_cmd c;
	int rc;

	/* local part 64 fits, 65 does not */
	memset(local, 'a', 65);
	local[64] = '\0';
	snprintf(line, sizeof(line), "RCPT TO:<%s@d.example>", local);
	rc = subm_parse(line, strlen(line), NULL, &c);
	cr_expect_eq(rc, 0, "local part of 64: got %d, want 0", rc);
	local[64] = 'a';
	local[65] = '\0';
	snprintf(line, sizeof(line), "RCPT TO:<%s@d.example>", local);
	rc = subm_parse(line, strlen(line), NULL, &c);
	cr_expect_eq(rc, SUBM_ERR_ADDR, "local part of 65: got %d, want ADDR", rc);

	/* whole mailbox 254 fits, 255 does not: a@ + labels */
	{
		char dom[300];
		size_t n = 0;
		static const size_t labels[] = { 63, 63, 63, 60 };   /* + 3 dots = 252 */

		for (size_t k = 0; k < 4; k++) {
			if (k > 0)
				dom[n++] = '.';
			memset(dom + n, 'd', labels[k]);
			n += labels[k];
		}
		dom[n] = '\0';
		snprintf(line, sizeof(line), "RCPT TO:<a@%s>", dom);
		rc = subm_parse(line, strlen(line), NULL, &c);
		cr_expect_eq(rc, 0, "a mailbox of %zu: got %d, want 0", n + 2, rc);
		cr_expect_eq(c.path_len, 254, "path_len: got %zu, want 254", c.path_len);
		snprintf(line, sizeof(line), "RCPT TO:<ab@%s>", dom);
		rc = subm_parse(line, strlen(line), NULL, &c);
		cr_expect_eq(rc, SUBM_ERR_ADDR, "a mailbox of 255: got %d, want ADDR", rc);
	}
}

Test(submit_proto, mail_params)
{
	static const struct parse_case t[] = {
		{ "MAIL FROM:<a@b.example> SIZE=1000", 0, 0, 0, SUBM_V_MAIL, NULL },
		{ "MAIL FROM:<a@b.example> size=1000", 0, 1000, 0, SUBM_V_MAIL, NULL },
		{ "MAIL FROM:<a@b.example> SIZE=1001", 0, 1000, SUBM_ERR_SIZE, SUBM_V_MAIL, NULL },
		{ "MAIL FROM:<a@b.example> SIZE=18446744073709551615", 0, 0, 0, SUBM_V_MAIL, NULL },
		{ "MAIL FROM:<a@b.example> SIZE=18446744073709551616", 0, 0, SUBM_ERR_SIZE,
		  SUBM_V_MAIL, NULL },
		{ "MAIL FROM:<a@b.example> SIZE=99999999999999999999", 0, 0, SUBM_ERR_SIZE,
		  SUBM_V_MAIL, NULL },
		{ "MAIL FROM:<a@b.example> SIZE=000000000000000000000001", 0, 0, SUBM_ERR_SIZE,
		  SUBM_V_MAIL, NULL },
		{ "MAIL FROM:<a@b.example> SIZE=", 0, 0, SUBM_ERR_SYNTAX, SUBM_V_MAIL, NULL },
		{ "MAIL FROM:<a@b.example> SIZE", 0, 0, SUBM_ERR_SYNTAX, SUBM_V_MAIL, NULL },
		{ "MAIL FROM:<a@b.example> SIZE=-1", 0, 0, SUBM_ERR_SYNTAX, SUBM_V_MAIL, NULL },
		{ "MAIL FROM:<a@b.example> SIZE=1k", 0, 0, SUBM_ERR_SYNTAX, SUBM_V_MAIL, NULL },
		{ "MAIL FROM:<a@b.example> SIZE=1 SIZE=2", 0, 0, SUBM_ERR_SYNTAX, SUBM_V_MAIL, NULL },
		{ "MAIL FROM:<a@b.example> BODY=8BITMIME", 0, 0, 0, SUBM_V_MAIL, NULL },
		{ "MAIL FROM:<a@b.example> BODY=7bit", 0, 0, 0, SUBM_V_MAIL, NULL },
		{ "MAIL FROM:<a@b.example> BODY=BINARYMIME", 0, 0, SUBM_ERR_SYNTAX, SUBM_V_MAIL, NULL },
		{ "MAIL FROM:<a@b.example> BODY", 0, 0, SUBM_ERR_SYNTAX, SUBM_V_MAIL, NULL },
		{ "MAIL FROM:<a@b.example> SMTPUTF8", 0, 0, 0, SUBM_V_MAIL, NULL },
		{ "MAIL FROM:<a@b.example> SMTPUTF8=yes", 0, 0, SUBM_ERR_SYNTAX, SUBM_V_MAIL, NULL },
		{ "MAIL FROM:<a@b.example> AUTH=<>", 0, 0, 0, SUBM_V_MAIL, NULL },
		{ "MAIL FROM:<a@b.example> AUTH=a+40b.example", 0, 0, 0, SUBM_V_MAIL, NULL },
		{ "MAIL FROM:<a@b.example> AUTH", 0, 0, SUBM_ERR_SYNTAX, SUBM_V_MAIL, NULL },
		{ "MAIL FROM:<a@b.example> RET=HDRS", 0, 0, SUBM_ERR_PARAM, SUBM_V_MAIL, NULL },
		{ "MAIL FROM:<a@b.example> X-FOO", 0, 0, SUBM_ERR_PARAM, SUBM_V_MAIL, NULL },
		{ "MAIL FROM:<a@b.example> SIZE=1  BODY=8BITMIME   SMTPUTF8 ", 0, 0, 0, SUBM_V_MAIL,
		  NULL },
		{ "MAIL FROM:<> SIZE=10", 0, 0, 0, SUBM_V_MAIL, "" },
	};

	run_parse(t, sizeof(t) / sizeof(t[0]));
}

Test(submit_proto, mail_params_values)
{
	const char *l = "MAIL FROM:<a@b.example> SIZE=18446744073709551615 BODY=8BITMIME SMTPUTF8";
	struct subm_cmd c;

	cr_assert_eq(subm_parse(l, strlen(l), NULL, &c), 0);
	cr_expect(c.has_size && c.size == UINT64_MAX, "size: got %d/%llu, want UINT64_MAX",
	    c.has_size, (unsigned long long)c.size);
	cr_expect_eq(c.body, SUBM_BODY_8BITMIME, "body: got %d, want 8BITMIME", c.body);
	cr_expect_eq(c.smtputf8, 1, "smtputf8: got %d, want 1", c.smtputf8);
	cr_expect_eq(c.null_path, 0, "null_path: got %d, want 0", c.null_path);
	l = "MAIL FROM:<>";
	cr_assert_eq(subm_parse(l, strlen(l), NULL, &c), 0);
	cr_expect(c.null_path == 1 && c.path_len == 0, "<>: got null_path %d len %zu", c.null_path,
	    c.path_len);
}

Test(submit_proto, auth_command)
{
	static const struct {
		const char *line;
		int want;
		enum subm_mech mech;
		int has_initial;
		const char *initial;
	} t[] = {
		{ "AUTH PLAIN", 0, SUBM_MECH_PLAIN, 0, NULL },
		{ "auth plain AGEAYg==", 0, SUBM_MECH_PLAIN, 1, "AGEAYg==" },
		{ "AUTH PLAIN =", 0, SUBM_MECH_PLAIN, 1, "" },
		{ "AUTH LOGIN", 0, SUBM_MECH_LOGIN, 0, NULL },
		{ "AUTH LOGIN dXNlcg==", 0, SUBM_MECH_LOGIN, 1, "dXNlcg==" },
		{ "AUTH CRAM-MD5", SUBM_ERR_MECH, SUBM_MECH_NONE, 0, NULL },
		{ "AUTH XOAUTH2 abc=", SUBM_ERR_MECH, SUBM_MECH_NONE, 0, NULL },
		{ "AUTH", SUBM_ERR_SYNTAX, SUBM_MECH_NONE, 0, NULL },
		{ "AUTH PL*AIN", SUBM_ERR_SYNTAX, SUBM_MECH_NONE, 0, NULL },
		{ "AUTH PLAIN a b", SUBM_ERR_SYNTAX, SUBM_MECH_PLAIN, 1, NULL },
		{ "AUTH PLAIN a!b", SUBM_ERR_SYNTAX, SUBM_MECH_PLAIN, 1, NULL },
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		struct subm_cmd c;
		int rc = subm_parse(t[i].line, strlen(t[i].line), NULL, &c);

		cr_expect_eq(rc, t[i].want, "parse \"%s\": got %d, want %d", t[i].line, rc, t[i].want);
		cr_expect_eq(c.verb, SUBM_V_AUTH, "\"%s\": verb %d, want AUTH", t[i].line, c.verb);
		if (rc != 0)
			continue;
		cr_expect_eq(c.mech, t[i].mech, "\"%s\" mech: got %d, want %d", t[i].line, c.mech,
		    t[i].mech);
		cr_expect_eq(c.has_initial, t[i].has_initial, "\"%s\" has_initial: got %d",
		    t[i].line, c.has_initial);
		if (t[i].initial != NULL)
			cr_expect(c.initial_len == strlen(t[i].initial) &&
			    strncmp(c.initial, t[i].initial, c.initial_len) == 0,
			    "\"%s\" initial: got \"%.*s\", want \"%s\"", t[i].line, (int)c.initial_len,
			    c.initial, t[i].initial);
	}
}

Test(submit_proto, replies)
{
	static const struct {
		int err;
		const char *prefix;
	} t[] = {
		{ SUBM_ERR_UNKNOWN_CMD, "500 5.5.2 " }, { SUBM_ERR_SYNTAX, "501 5.5.4 " },
		{ SUBM_ERR_ADDR, "553 5.1.3 " }, { SUBM_ERR_PARAM, "555 5.5.4 " },
		{ SUBM_ERR_SIZE, "552 5.3.4 " }, { SUBM_ERR_MECH, "504 5.5.4 " },
		{ SUBM_ERR_AUTH_CANCEL, "501 5.0.0 " }, { SUBM_ERR_AUTH_DATA, "501 5.5.2 " },
		{ SUBM_ERR_LINE_TOO_LONG, "500 5.5.2 " }, { SUBM_ERR_BARE_EOL, "500 5.5.2 " },
		{ SUBM_ERR_DATA_BARE_EOL, "550 5.6.11 " }, { SUBM_ERR_UTF8, "553 5.6.7 " },
		{ -999, "451 4.3.0 " },
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		const char *r = subm_reply(t[i].err);

		cr_expect(strncmp(r, t[i].prefix, strlen(t[i].prefix)) == 0,
		    "reply(%d): got \"%s\", want \"%s...\"", t[i].err, r, t[i].prefix);
		cr_expect(strpbrk(r, "\r\n") == NULL, "reply(%d) holds CR or LF", t[i].err);
	}
}

/* --- AUTH data ------------------------------------------------------------ */

static void
b64(const char *in, size_t n, char *out, size_t cap)
{
	cr_assert_eq(subm_b64_encode(in, n, out, cap), 0, "encode %zu octets", n);
}

Test(submit_proto, plain_nuls)
{
	static const struct {
		const char *raw;
		size_t n;
		int want;
		const char *z, *c, *p;
	} t[] = {
		{ "\0user\0pass", 10, 0, "", "user", "pass" },
		{ "admin\0user\0pass", 15, 0, "admin", "user", "pass" },
		{ "user\0pass", 9, SUBM_ERR_AUTH_DATA, "", "", "" },        /* one NUL */
		{ "a\0user\0pass\0", 12, SUBM_ERR_AUTH_DATA, "", "", "" },  /* three NULs */
		{ "\0\0user\0pass", 11, SUBM_ERR_AUTH_DATA, "", "", "" },   /* three NULs */
		{ "userpass", 8, SUBM_ERR_AUTH_DATA, "", "", "" },          /* none */
		{ "\0\0pass", 6, SUBM_ERR_AUTH_DATA, "", "", "" },          /* empty authcid */
		{ "\0user\0", 6, SUBM_ERR_AUTH_DATA, "", "", "" },          /* empty passwd */
		{ "\0us\xffr\0pass", 10, 0, "", "us\xffr", "pass" },     /* octets, not UTF-8-checked */
		{ "\0j\xc3\xb6rg\0p\xc3\xa4ss", 12, 0, "", "j\xc3\xb6rg", "p\xc3\xa4ss" },
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		char enc[64], z[SUBM_SASL_FIELD_MAX + 1], c[SUBM_SASL_FIELD_MAX + 1],
		    p[SUBM_SASL_FIELD_MAX + 1];
		int rc;

		b64(t[i].raw, t[i].n, enc, sizeof(enc));
		memset(z, 'x', sizeof(z));
		memset(c, 'x', sizeof(c));
		memset(p, 'x', sizeof(p));
		rc = subm_auth_plain(enc, strlen(enc), z, c, p);
		cr_expect_eq(rc, t[i].want, "plain case %zu (%s): got %d, want %d", i, enc, rc,
		    t[i].want);
		cr_expect_str_eq(z, t[i].z, "case %zu authzid: got \"%s\", want \"%s\"", i, z, t[i].z);
		cr_expect_str_eq(c, t[i].c, "case %zu authcid: got \"%s\", want \"%s\"", i, c, t[i].c);
		cr_expect_str_eq(p, t[i].p, "case %zu passwd: got \"%s\", want \"%s\"", i, p, t[i].p);
	}
}

Test(submit_proto, plain_field_caps_cancel_and_garbage)
{
	char raw[800], enc[1200], z[256], c[256], p[256];
	size_t n;
	int rc;

	/* three fields of 255: the largest message */
	memset(raw, 'z', 255);
	raw[255] = '\0';
	memset(raw + 256, 'c', 255);
	raw[511] = '\0';
	memset(raw + 512, 'p', 255);
	n = 767;
	b64(raw, n, enc, sizeof(enc));
	rc = subm_auth_plain(enc, strlen(enc), z, c, p);
	cr_expect_eq(rc, 0, "three fields of 255: got %d, want 0", rc);
	cr_expect_eq(strlen(p), 255, "passwd length: got %zu, want 255", strlen(p));
	/* a password of 256 */
	memset(raw + 512, 'p', 256);
	b64(raw, 768, enc, sizeof(enc));
	rc = subm_auth_plain(enc, strlen(enc), z, c, p);
	cr_expect_eq(rc, SUBM_ERR_AUTH_DATA, "a passwd of 256: got %d, want AUTH_DATA", rc);

	rc = subm_auth_plain("*", 1, z, c, p);
	cr_expect_eq(rc, SUBM_ERR_AUTH_CANCEL, "\"*\": got %d, want AUTH_CANCEL", rc);
	rc = subm_auth_plain("", 0, z, c, p);
	cr_expect_eq(rc, SUBM_ERR_AUTH_DATA, "\"\": got %d, want AUTH_DATA", rc);
	rc = subm_auth_plain("AHVzZXIAcGFzcw", 14, z, c, p);  /* unpadded */
	cr_expect_eq(rc, SUBM_ERR_AUTH_DATA, "unpadded: got %d, want AUTH_DATA", rc);
	rc = subm_auth_plain("AHVzZXIAcGFzcw= ", 16, z, c, p);
	cr_expect_eq(rc, SUBM_ERR_AUTH_DATA, "a blank: got %d, want AUTH_DATA", rc);
	rc = subm_auth_plain("AHVzZXIAcGFzcw==", 16, z, c, p);
	cr_expect_eq(rc, 0, "padded: got %d, want 0", rc);
	cr_expect_str_eq(p, "pass", "padded passwd: got \"%s\"", p);
}

Test(submit_proto, b64_padding_and_login)
{
	static const struct {
		const char *in;
		int want;
		const char *out;
		size_t n;
	} t[] = {
		{ "", 0, "", 0 },
		{ "dXNlcg==", 0, "user", 4 },
		{ "dXNlcjE=", 0, "user1", 5 },
		{ "dXNlcjEy", 0, "user12", 6 },
		{ "AA==", 0, "\0", 1 },
		{ "AAA=", 0, "\0\0", 2 },
		{ "*", SUBM_ERR_AUTH_CANCEL, "", 0 },
		{ "dXNlcg=", SUBM_ERR_AUTH_DATA, "", 0 },
		{ "dXNlcg", SUBM_ERR_AUTH_DATA, "", 0 },
		{ "dX=lcg==", SUBM_ERR_AUTH_DATA, "", 0 },
		{ "dXNl\r\ncg==", SUBM_ERR_AUTH_DATA, "", 0 },
		{ "A===", SUBM_ERR_AUTH_DATA, "", 0 },
		{ "====", SUBM_ERR_AUTH_DATA, "", 0 },
		{ " dXNlcg=", SUBM_ERR_AUTH_DATA, "", 0 },
		{ "dXNl-g==", SUBM_ERR_AUTH_DATA, "", 0 },
		{ "**", SUBM_ERR_AUTH_DATA, "", 0 },
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		char out[64];
		size_t n = 99;
		int rc = subm_b64_decode(t[i].in, strlen(t[i].in), out, sizeof(out), &n);

		cr_expect_eq(rc, t[i].want, "decode \"%s\": got %d, want %d", t[i].in, rc, t[i].want);
		cr_expect_eq(n, t[i].n, "decode \"%s\" length: got %zu, want %zu", t[i].in, n, t[i].n);
		if (rc == 0)
			cr_expect(memcmp(out, t[i].out, n) == 0 && out[n] == '\0',
			    "decode \"%s\": wrong bytes", t[i].in);
	}
}

Test(submit_proto, b64_caps_and_prompts)
{
	char out[32];
	size_t n;
	int rc;

	cr_assert_eq(subm_b64_encode("Username:", 9, out, sizeof(out)), 0);
	cr_expect_str_eq(out, "VXNlcm5hbWU6", "Username: got \"%s\"", out);
	cr_assert_eq(subm_b64_encode("Password:", 9, out, sizeof(out)), 0);
	cr_expect_str_eq(out, "UGFzc3dvcmQ6", "Password: got \"%s\"", out);
	rc = subm_b64_encode("Username:", 9, out, 12);   /* no room for the NUL */
	cr_expect_eq(rc, SUBM_ERR_AUTH_DATA, "encode into 12: got %d, want AUTH_DATA", rc);
	rc = subm_b64_decode("dXNlcjEy", 8, out, 6, &n);   /* 6 + NUL needed */
	cr_expect_eq(rc, SUBM_ERR_AUTH_DATA, "decode into 6: got %d, want AUTH_DATA", rc);
	rc = subm_b64_decode("dXNlcjEy", 8, out, 7, &n);
	cr_expect_eq(rc, 0, "decode into 7: got %d, want 0", rc);
}

/* --- DATA ----------------------------------------------------------------- */

struct feed_result {
	int end;            /* SUBM_DATA_END seen */
	size_t consumed;    /* total consumed when it ended */
	int status;
	size_t len;
};

/* feed s[0..n) to a fresh reader in pieces of step octets (0: split once at split). */
static struct feed_result
feed(const char *s, size_t n, size_t step, size_t split, char *out, size_t cap)
{
	struct subm_data d;
	struct feed_result r = { 0, 0, 0, 0 };
	size_t off = 0;

	subm_data_init(&d, out, cap);
	while (off < n && !r.end) {
		size_t k = step != 0 ? step : (off < split ? split - off : n - off);
		size_t used;
		int rc;

		if (k > n - off)
			k = n - off;
		rc = subm_data_feed(&d, s + off, k, &used);
		cr_assert(used <= k, "consumed %zu of %zu", used, k);
		off += used;
		if (rc == SUBM_DATA_END) {
			r.end = 1;
			r.consumed = off;
		} else {
			cr_assert_eq(rc, SUBM_DATA_MORE, "feed: got %d", rc);
			cr_assert_eq(used, k, "MORE but consumed %zu of %zu", used, k);
		}
	}
	r.status = subm_data_status(&d);
	r.len = subm_data_length(&d);
	return r;
}

Test(submit_proto, data_plain_and_unstuffing)
{
	static const struct {
		const char *in;
		const char *want;   /* the message */
		const char *rest;   /* what follows the end */
	} t[] = {
		{ ".\r\n", "", "" },
		{ "a\r\n.\r\n", "a\r\n", "" },
		{ "a\r\n.\r\nQUIT\r\n", "a\r\n", "QUIT\r\n" },
		{ "..\r\n.\r\n", ".\r\n", "" },
		{ "..a\r\n...\r\n.\r\n", ".a\r\n..\r\n", "" },
		{ "a.\r\n.b\r\n.\r\n", "a.\r\nb\r\n", "" },
		{ "\r\n\r\n.\r\n", "\r\n\r\n", "" },
		{ "Subject: x\r\n\r\nbody .\r\n.\r\nMAIL FROM:<a@b.example>\r\n",
		  "Subject: x\r\n\r\nbody .\r\n", "MAIL FROM:<a@b.example>\r\n" },
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		size_t n = strlen(t[i].in);

		for (size_t step = 0; step <= n; step++) {
			for (size_t split = 0; split <= (step == 0 ? n : 0); split++) {
				char out[128];
				struct feed_result r = feed(t[i].in, n, step, split, out, sizeof(out));

				cr_expect(r.end, "case %zu step %zu split %zu: no end", i, step, split);
				cr_expect_eq(r.status, 0, "case %zu step %zu split %zu: status %d", i, step,
				    split, r.status);
				cr_expect(r.len == strlen(t[i].want) && memcmp(out, t[i].want, r.len) == 0,
				    "case %zu step %zu split %zu: got \"%.*s\", want \"%s\"", i, step, split,
				    (int)r.len, out, t[i].want);
				cr_expect_eq(n - r.consumed, strlen(t[i].rest),
				    "case %zu step %zu split %zu: rest %zu, want %zu", i, step, split,
				    n - r.consumed, strlen(t[i].rest));
			}
		}
	}
}

/*
 * Each smuggling variant, with a smuggled transaction behind it and then
 * the real end: the reader must not end at the variant, must refuse the
 * message, and must end at the real CRLF.CRLF, whatever the chunking.
 */
Test(submit_proto, data_smuggling_variants)
{
	static const char *const variant[] = {
		"\n.\n", "\r.\r", "\n.\r\n", "\r\n.\n", "\r.\r\n", "\r\n.\r", "\n", "\r",
		"\n.\n\r\n", "\r\n.\r\r\n",
	};
	const char *smuggled = "MAIL FROM:<evil@attacker.example>\r\nRCPT TO:<x@victim.example>\r\n"
	    "DATA\r\nFrom: ceo@victim.example\r\n\r\nforged\r\n";
	const char *tail = "\r\n.\r\nQUIT\r\n";

	for (size_t v = 0; v < sizeof(variant) / sizeof(variant[0]); v++) {
		char in[512];
		int n = snprintf(in, sizeof(in), "Subject: hi\r\n\r\nbody%s%s%s", variant[v], smuggled,
		    tail);
		size_t want_consumed = (size_t)n - strlen("QUIT\r\n");

		cr_assert(n > 0 && (size_t)n < sizeof(in));
		for (size_t step = 0; step <= (size_t)n; step++) {
			for (size_t split = 0; split <= (step == 0 ? (size_t)n : 0); split++) {
				char out[512];
				struct feed_result r = feed(in, (size_t)n, step, split, out, sizeof(out));

				cr_expect(r.end, "variant %zu step %zu split %zu: no end", v, step, split);
				cr_expect_eq(r.consumed, want_consumed,
				    "variant %zu step %zu split %zu: ended after %zu, want %zu (the real end)",
				    v, step, split, r.consumed, want_consumed);
				cr_expect_eq(r.status, SUBM_ERR_DATA_BARE_EOL,
				    "variant %zu step %zu split %zu: status %d, want DATA_BARE_EOL", v, step,
				    split, r.status);
			}
		}
	}
}

/* The variant at the very start (right after the 354): still no boundary. */
Test(submit_proto, data_smuggling_at_start)
{
	static const char *const in[] = {
		"\n.\nX\r\n.\r\n", ".\nX\r\n.\r\n", ".\r.\r\n.\r\n", "\r.\r\n.\r\n", ".\rX\r\n.\r\n",
	};

	for (size_t i = 0; i < sizeof(in) / sizeof(in[0]); i++) {
		size_t n = strlen(in[i]);
		char out[64];
		struct feed_result r = feed(in[i], n, 1, 0, out, sizeof(out));

		cr_expect(r.end && r.consumed == n, "case %zu: end %d after %zu, want %zu", i, r.end,
		    r.consumed, n);
		cr_expect_eq(r.status, SUBM_ERR_DATA_BARE_EOL, "case %zu: status %d", i, r.status);
	}
}

Test(submit_proto, data_no_end_without_crlf_dot_crlf)
{
	static const char *const in[] = {
		"a\r\n.", "a\r\n.\r", "a\n.\n", "a\r.\r", "a\r\n.\n", "a\n.\r\n", "a\r\n..\r\n",
		"a\r\n. \r\n",
	};

	for (size_t i = 0; i < sizeof(in) / sizeof(in[0]); i++) {
		char out[64];
		struct feed_result r = feed(in[i], strlen(in[i]), 1, 0, out, sizeof(out));

		cr_expect(!r.end, "\"%zu\": ended, want no end", i);
	}
}

Test(submit_proto, data_cap)
{
	char out[10];
	struct feed_result r;
	const char *in = "1234\r\n56\r\n.\r\n";   /* message is 10 octets */

	r = feed(in, strlen(in), 1, 0, out, 10);
	cr_expect(r.end && r.status == 0 && r.len == 10, "cap 10: end %d status %d len %zu",
	    r.end, r.status, r.len);
	r = feed(in, strlen(in), 1, 0, out, 8);
	cr_expect(r.end, "cap 8: no end");
	cr_expect_eq(r.status, SUBM_ERR_SIZE, "cap 8: status %d, want SIZE", r.status);
	cr_expect(r.len <= 8, "cap 8: wrote %zu", r.len);
	cr_expect_eq(r.consumed, strlen(in), "cap 8: read %zu, want %zu (to the end)", r.consumed,
	    strlen(in));
	r = feed(in, strlen(in), 0, 0, out, 0);
	cr_expect(r.end && r.status == SUBM_ERR_SIZE && r.len == 0, "cap 0: end %d status %d",
	    r.end, r.status);
	/* the first error wins: a bare LF then too big */
	r = feed("a\nbcdefghijk\r\n.\r\n", 17, 0, 0, out, 4);
	cr_expect_eq(r.status, SUBM_ERR_DATA_BARE_EOL, "bare LF then too big: got %d", r.status);
}

Test(submit_proto, data_after_end)
{
	struct subm_data d;
	char out[16];
	size_t used;

	subm_data_init(&d, out, sizeof(out));
	cr_assert_eq(subm_data_feed(&d, "x\r\n.\r\n", 6, &used), SUBM_DATA_END);
	cr_expect_eq(used, 6, "consumed %zu, want 6", used);
	cr_expect_eq(subm_data_feed(&d, "more\r\n", 6, &used), SUBM_DATA_END, "after the end");
	cr_expect_eq(used, 0, "consumed after the end: %zu, want 0", used);
}

/*
 * A whole pipelined session in one buffer, split by subm_next_line, parsed
 * by subm_parse and read by the DATA reader, as the listener will: the
 * smuggled MAIL/RCPT/DATA behind "\n.\n" must come out as message data,
 * and the commands after the real end as commands.
 */
Test(submit_proto, pipelined_session)
{
	static const char in[] =
	    "EHLO client.example\r\n"
	    "AUTH PLAIN AHR4bWFpbAB0eG1fa2V5\r\n"
	    "MAIL FROM:<a@b.example> SIZE=60 BODY=8BITMIME\r\n"
	    "RCPT TO:<c@d.example>\r\n"
	    "DATA\r\n"
	    "Subject: hi\r\n\r\nbody\n.\nMAIL FROM:<evil@x.example>\r\nRCPT TO:<v@y.example>\r\n"
	    "DATA\r\nforged\r\n.\r\n"
	    "RSET\r\n"
	    "QUIT\r\n";
	static const enum subm_verb want[] = { SUBM_V_EHLO, SUBM_V_AUTH, SUBM_V_MAIL, SUBM_V_RCPT,
	    SUBM_V_DATA, SUBM_V_RSET, SUBM_V_QUIT };
	struct subm_opts o = { 0, 1000 };
	size_t off = 0, n = sizeof(in) - 1, k = 0;

	while (off < n) {
		size_t ll, used;
		struct subm_cmd c;
		int rc = subm_next_line(in + off, n - off, 2048, &ll, &used);

		cr_assert_eq(rc, 1, "line at %zu: got %d, want a line", off, rc);
		rc = subm_parse(in + off, ll, &o, &c);
		cr_assert_eq(rc, 0, "parse \"%.*s\": got %d", (int)ll, in + off, rc);
		cr_assert(k < sizeof(want) / sizeof(want[0]), "more commands than sent: \"%.*s\"",
		    (int)ll, in + off);
		cr_expect_eq(c.verb, want[k], "command %zu: got verb %d, want %d", k, c.verb, want[k]);
		k++;
		off += used;
		if (c.verb == SUBM_V_AUTH) {
			char z[256], id[256], pw[256];

			rc = subm_auth_plain(c.initial, c.initial_len, z, id, pw);
			cr_expect(rc == 0 && strcmp(id, "txmail") == 0 && strcmp(pw, "txm_key") == 0,
			    "PLAIN: got %d \"%s\" \"%s\"", rc, id, pw);
		}
		if (c.verb == SUBM_V_DATA) {
			struct subm_data d;
			char msg[256];

			subm_data_init(&d, msg, sizeof(msg));
			rc = subm_data_feed(&d, in + off, n - off, &used);
			cr_assert_eq(rc, SUBM_DATA_END, "DATA: no end");
			cr_expect_eq(subm_data_status(&d), SUBM_ERR_DATA_BARE_EOL, "DATA status: got %d",
			    subm_data_status(&d));
			off += used;
			cr_expect(strncmp(in + off, "RSET\r\n", 6) == 0, "after DATA: got \"%.10s\"",
			    in + off);
		}
	}
	cr_expect_eq(k, sizeof(want) / sizeof(want[0]), "commands: got %zu, want %zu", k,
	    sizeof(want) / sizeof(want[0]));
}
