/*
 * test_submit_msg.c - the submitted message (server/submit_msg.c), pure,
 * table-driven: Bcc / Resent-Bcc / X-Txmail-* removed with their folded
 * lines and every other field kept byte for byte, Message-ID / Date /
 * From added only when missing, the body byte-identical, messages with no
 * header, no empty line or a non-field line, RFC 2047 From and Subject,
 * the X-Txmail-* options with the HTTP API's rules and limits, the
 * recipient kinds (display names, quoted commas, groups, comments,
 * routes), and every refusal with its reply.
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../server/submit_msg.h"

#define DATE_S 1796000000
#define DATE_TXT "Mon, 30 Nov 2026 00:53:20 +0000"
#define MID "<msg_01abc@mx.example>"

static const struct subm_msg_opts base_opts = { "sender@example.com", MID, DATE_S, 0 };

/* prep - subm_msg_prepare on the C string in with base_opts; the reply into reply. */
static int
prep(const char *in, struct subm_msg *m, char *reply, size_t rl)
{
	return subm_msg_prepare(in, strlen(in), &base_opts, m, reply, rl);
}

static void
expect_mime(const struct subm_msg *m, const char *want, const char *what)
{
	cr_expect_eq(m->mime_len, strlen(want), "%s: length got %zu, want %zu", what, m->mime_len,
	    strlen(want));
	cr_expect(m->mime != NULL && memcmp(m->mime, want, strlen(want)) == 0,
	    "%s: got\n%s\nwant\n%s", what, m->mime != NULL ? m->mime : "(null)", want);
}

/* --- removal and addition ---------------------------------------------------- */

Test(submit_msg, bcc_removed_with_folds_rest_byte_identical)
{
	const char *in =
	    "From: Alice <alice@example.com>\r\n"
	    "To: bob@example.org\r\n"
	    "Bcc: secret1@example.net,\r\n"
	    "  secret2@example.net\r\n"
	    "\tsecret3@example.net\r\n"
	    "Subject:  keep   these  blanks \r\n"
	    "BCC: shout@example.net\r\n"
	    "bcc:low@example.net\r\n"
	    "Bcc : obs@example.net\r\n"
	    "Resent-Bcc: resent@example.net\r\n"
	    "X-Mailer: test\r\n"
	    " folded x-mailer\r\n"
	    "Bcc-Like: not a bcc\r\n"
	    "Date: Tue, 1 Dec 2026 10:00:00 +0100\r\n"
	    "Message-ID: <own@example.com>\r\n"
	    "\r\n"
	    "Bcc: in the body stays\r\n"
	    "X-Txmail-Tags: body too\r\n"
	    "\r\n"
	    "last line without CRLF";
	const char *want =
	    "From: Alice <alice@example.com>\r\n"
	    "To: bob@example.org\r\n"
	    "Subject:  keep   these  blanks \r\n"
	    "X-Mailer: test\r\n"
	    " folded x-mailer\r\n"
	    "Bcc-Like: not a bcc\r\n"
	    "Date: Tue, 1 Dec 2026 10:00:00 +0100\r\n"
	    "Message-ID: <own@example.com>\r\n"
	    "\r\n"
	    "Bcc: in the body stays\r\n"
	    "X-Txmail-Tags: body too\r\n"
	    "\r\n"
	    "last line without CRLF";
	struct subm_msg m;
	char reply[256];
	int rc = prep(in, &m, reply, sizeof(reply));

	cr_assert_eq(rc, 0, "got %d (%s), want 0", rc, reply);
	expect_mime(&m, want, "bcc");
	cr_expect_eq(m.added_message_id, 0);
	cr_expect_eq(m.added_date, 0);
	cr_expect_eq(m.added_from, 0);
	cr_expect_str_eq(m.from, "Alice <alice@example.com>");
	cr_expect_str_eq(m.subject, "keep   these  blanks");
	cr_expect_eq(memcmp(m.mime + m.body_off, "Bcc: in the body", 16), 0);
	cr_expect_str_eq(m.metadata_json, "{}");
	cr_expect_str_eq(m.tags_json, "[]");
	cr_expect_eq(m.ttl_ms, 0);
	cr_expect_eq(m.priority_high, 0);
	cr_expect_str_eq(m.idem_key, "");
	subm_msg_free(&m);
}

Test(submit_msg, added_only_when_missing)
{
	static const struct {
		const char *in, *want;
		int mid, date, from;
	} t[] = {
		{ "Subject: x\r\n\r\nbody\r\n",
		  "Message-ID: " MID "\r\nDate: " DATE_TXT "\r\nFrom: sender@example.com\r\n"
		  "Subject: x\r\n\r\nbody\r\n", 1, 1, 1 },
		{ "message-id: <a@b>\r\nSubject: x\r\n\r\nbody\r\n",
		  "Date: " DATE_TXT "\r\nFrom: sender@example.com\r\n"
		  "message-id: <a@b>\r\nSubject: x\r\n\r\nbody\r\n", 0, 1, 1 },
		{ "DATE: whatever\r\nFROM: x@y.z\r\n\r\nbody\r\n",
		  "Message-ID: " MID "\r\nDATE: whatever\r\nFROM: x@y.z\r\n\r\nbody\r\n", 1, 0, 0 },
		/* no header at all */
		{ "\r\nonly body\r\n",
		  "Message-ID: " MID "\r\nDate: " DATE_TXT "\r\nFrom: sender@example.com\r\n"
		  "\r\nonly body\r\n", 1, 1, 1 },
		/* empty message */
		{ "",
		  "Message-ID: " MID "\r\nDate: " DATE_TXT "\r\nFrom: sender@example.com\r\n\r\n", 1, 1, 1 },
		/* all header, no empty line: an empty body */
		{ "Subject: s\r\nTo: a@b.c\r\n",
		  "Message-ID: " MID "\r\nDate: " DATE_TXT "\r\nFrom: sender@example.com\r\n"
		  "Subject: s\r\nTo: a@b.c\r\n\r\n", 1, 1, 1 },
		/* all header, the last line without CRLF: it gets one */
		{ "Subject: s\r\nTo: a@b.c",
		  "Message-ID: " MID "\r\nDate: " DATE_TXT "\r\nFrom: sender@example.com\r\n"
		  "Subject: s\r\nTo: a@b.c\r\n\r\n", 1, 1, 1 },
		/* ... and when that line is a removed Bcc */
		{ "Subject: s\r\nBcc: a@b.c",
		  "Message-ID: " MID "\r\nDate: " DATE_TXT "\r\nFrom: sender@example.com\r\n"
		  "Subject: s\r\n\r\n", 1, 1, 1 },
		/* a line that is not a field ends the header: the body starts there, after an empty line */
		{ "Subject: s\r\nthis is no field\r\nBcc: stays in the body\r\n",
		  "Message-ID: " MID "\r\nDate: " DATE_TXT "\r\nFrom: sender@example.com\r\n"
		  "Subject: s\r\n\r\nthis is no field\r\nBcc: stays in the body\r\n", 1, 1, 1 },
		{ "Subject: s\r\nX-8bit-n\xc3\xa4me: v\r\n\r\nb",
		  "Message-ID: " MID "\r\nDate: " DATE_TXT "\r\nFrom: sender@example.com\r\n"
		  "Subject: s\r\n\r\nX-8bit-n\xc3\xa4me: v\r\n\r\nb", 1, 1, 1 },
		{ ": no name\r\n\r\nb",
		  "Message-ID: " MID "\r\nDate: " DATE_TXT "\r\nFrom: sender@example.com\r\n"
		  "\r\n: no name\r\n\r\nb", 1, 1, 1 },
		/* a continuation of nothing on the first line */
		{ " folded: nothing\r\nSubject: s\r\n\r\nb",
		  "Message-ID: " MID "\r\nDate: " DATE_TXT "\r\nFrom: sender@example.com\r\n"
		  "\r\n folded: nothing\r\nSubject: s\r\n\r\nb", 1, 1, 1 },
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		struct subm_msg m;
		char reply[256] = "", what[32];
		int rc = prep(t[i].in, &m, reply, sizeof(reply));

		snprintf(what, sizeof(what), "case %zu", i);
		cr_expect_eq(rc, 0, "%s: got %d (%s), want 0", what, rc, reply);
		if (rc == 0) {
			expect_mime(&m, t[i].want, what);
			cr_expect_eq(m.added_message_id, t[i].mid, "%s: added_message_id got %d", what,
			    m.added_message_id);
			cr_expect_eq(m.added_date, t[i].date, "%s: added_date got %d", what, m.added_date);
			cr_expect_eq(m.added_from, t[i].from, "%s: added_from got %d", what, m.added_from);
			if (t[i].from)
				cr_expect_str_eq(m.from, "sender@example.com", "%s", what);
		}
		subm_msg_free(&m);
	}
}

Test(submit_msg, no_message_id_or_sender_given)
{
	struct subm_msg_opts o = { NULL, NULL, 0, 0 };
	struct subm_msg m;
	char reply[128];
	const char *in = "Subject: x\r\n\r\nb";
	int rc = subm_msg_prepare(in, strlen(in), &o, &m, reply, sizeof(reply));

	cr_assert_eq(rc, 0);
	expect_mime(&m, "Date: Thu, 01 Jan 1970 00:00:00 +0000\r\nSubject: x\r\n\r\nb", "none given");
	cr_expect_eq(m.added_message_id, 0);
	cr_expect_eq(m.added_from, 0);
	cr_expect_str_eq(m.from, "");
	subm_msg_free(&m);
}

Test(submit_msg, body_byte_identical_8bit)
{
	char in[4096], want_body[4096];
	size_t n = 0, bn;
	struct subm_msg m;
	char reply[128];

	n += (size_t)snprintf(in + n, sizeof(in) - n, "Subject: =?UTF-8?B?5rWL6K+V6YKu5Lu2?=\r\n"
	    "X-Txmail-Priority: high\r\nBcc: x@y.z\r\n\r\n");
	bn = 0;
	for (int c = 0; c < 256; c++) {
		if (c == '\r' || c == '\n')
			continue;
		want_body[bn++] = (char)c;
		if (c % 64 == 63) {
			want_body[bn++] = '\r';
			want_body[bn++] = '\n';
		}
	}
	memcpy(want_body + bn, "\r\n.\r\n..\r\n", 9);
	bn += 9;
	memcpy(in + n, want_body, bn);
	n += bn;
	cr_assert_eq(subm_msg_prepare(in, n, &base_opts, &m, reply, sizeof(reply)), 0, "%s", reply);
	cr_expect_eq(m.mime_len - m.body_off, bn, "body length: got %zu, want %zu", m.mime_len - m.body_off, bn);
	cr_expect_eq(memcmp(m.mime + m.body_off, want_body, bn), 0, "body differs");
	cr_expect_eq(memcmp(m.mime + m.mime_len - bn, in + n - bn, bn), 0, "not the input's suffix");
	cr_expect_str_eq(m.subject, "\xe6\xb5\x8b\xe8\xaf\x95\xe9\x82\xae\xe4\xbb\xb6");
	cr_expect_eq(m.priority_high, 1);
	cr_expect(strstr(m.mime, "Bcc") == NULL && strstr(m.mime, "X-Txmail") == NULL);
	subm_msg_free(&m);
}

/* --- From and Subject ------------------------------------------------------------- */

Test(submit_msg, from_subject_decoded)
{
	static const struct {
		const char *in, *from, *subject;
	} t[] = {
		{ "Subject: =?UTF-8?B?5rWL6K+V6YKu5Lu2?=\r\n\r\n", "sender@example.com",
		  "\xe6\xb5\x8b\xe8\xaf\x95\xe9\x82\xae\xe4\xbb\xb6" },
		/* two encoded words folded: the blanks between them vanish */
		{ "Subject: =?utf-8?B?5rWL6K+V?=\r\n =?UTF-8?B?6YKu5Lu2?=\r\n\r\n", "sender@example.com",
		  "\xe6\xb5\x8b\xe8\xaf\x95\xe9\x82\xae\xe4\xbb\xb6" },
		{ "Subject: Hello\r\n  world\r\n\r\n", "sender@example.com", "Hello  world" },
		{ "Subject: =?ISO-8859-1?Q?Caf=E9?= ok\r\n\r\n", "sender@example.com", "Caf\xc3\xa9 ok" },
		/* raw UTF-8 (SMTPUTF8) as written */
		{ "Subject: caf\xc3\xa9\r\n\r\n", "sender@example.com", "caf\xc3\xa9" },
		{ "From: =?UTF-8?B?5byg5LiJ?= <zhang@example.cn>\r\nSubject: a\r\nSubject: b\r\n\r\n",
		  "\xe5\xbc\xa0\xe4\xb8\x89 <zhang@example.cn>", "a" },
		{ "To: x@y.z\r\n\r\n", "sender@example.com", "" },
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		struct subm_msg m;
		char reply[256] = "";
		int rc = prep(t[i].in, &m, reply, sizeof(reply));

		cr_expect_eq(rc, 0, "case %zu: got %d (%s)", i, rc, reply);
		if (rc == 0) {
			cr_expect_str_eq(m.from, t[i].from, "case %zu: from got \"%s\", want \"%s\"", i, m.from,
			    t[i].from);
			cr_expect_str_eq(m.subject, t[i].subject, "case %zu: subject got \"%s\", want \"%s\"", i,
			    m.subject, t[i].subject);
		}
		subm_msg_free(&m);
	}
}

/* --- X-Txmail-* --------------------------------------------------------------------- */

Test(submit_msg, options_mapped_and_removed)
{
	const char *in =
	    "X-Txmail-Metadata: {\"order\": 42,\r\n"
	    "   \"user\": \"u-1\"}\r\n"
	    "From: a@example.com\r\n"
	    "x-txmail-tags:  a, b ,c \r\n"
	    "X-TXMAIL-PRIORITY: high\r\n"
	    "X-Txmail-TTL: 3600\r\n"
	    "X-Txmail-Idempotency-Key: order-42 retry\r\n"
	    "Subject: s\r\n"
	    "\r\n"
	    "X-Txmail-TTL: 1\r\n";
	const char *want =
	    "Message-ID: " MID "\r\nDate: " DATE_TXT "\r\n"
	    "From: a@example.com\r\n"
	    "Subject: s\r\n"
	    "\r\n"
	    "X-Txmail-TTL: 1\r\n";
	struct subm_msg m;
	char reply[256] = "";
	int rc = prep(in, &m, reply, sizeof(reply));

	cr_assert_eq(rc, 0, "got %d (%s)", rc, reply);
	expect_mime(&m, want, "options");
	cr_expect_str_eq(m.metadata_json, "{\"order\":42,\"user\":\"u-1\"}");
	cr_expect_str_eq(m.tags_json, "[\"a\",\"b\",\"c\"]");
	cr_expect_eq(m.priority_high, 1);
	cr_expect_eq(m.ttl_ms, 3600000, "ttl got %lld", (long long)m.ttl_ms);
	cr_expect_str_eq(m.idem_key, "order-42 retry");
	subm_msg_free(&m);
}

Test(submit_msg, options_values)
{
	static const struct {
		const char *in, *tags, *meta;
		int64_t ttl;
		int high;
	} t[] = {
		{ "X-Txmail-Tags: [\"a\", \"b c\"]\r\n\r\n", "[\"a\",\"b c\"]", "{}", 0, 0 },
		{ "X-Txmail-Tags: one\r\n\r\n", "[\"one\"]", "{}", 0, 0 },
		{ "X-Txmail-Tags: []\r\n\r\n", "[]", "{}", 0, 0 },
		{ "X-Txmail-Tags: caf\xc3\xa9\r\n\r\n", "[\"caf\xc3\xa9\"]", "{}", 0, 0 },
		{ "X-Txmail-Metadata: {}\r\n\r\n", "[]", "{}", 0, 0 },
		{ "X-Txmail-Metadata: {\"a\":{\"b\":[1,2,null]}}\r\n\r\n", "[]", "{\"a\":{\"b\":[1,2,null]}}", 0, 0 },
		{ "X-Txmail-Metadata: null\r\n\r\n", "[]", "{}", 0, 0 },   /* as "metadata": null */
		/* RFC 2047 encoded, as nodemailer sends a value with '{' or '"' */
		{ "X-Txmail-Metadata: =?UTF-8?Q?=7B=22via=22=3A=22node=22=7D?=\r\n\r\n", "[]",
		  "{\"via\":\"node\"}", 0, 0 },
		{ "X-Txmail-Tags: =?UTF-8?B?WyJhIiwiYiJd?=\r\n\r\n", "[\"a\",\"b\"]", "{}", 0, 0 },
		{ "X-Txmail-Priority: normal\r\n\r\n", "[]", "{}", 0, 0 },
		{ "X-Txmail-TTL: 1\r\n\r\n", "[]", "{}", 1000, 0 },
		{ "X-Txmail-TTL: 2592000\r\n\r\n", "[]", "{}", (int64_t)2592000 * 1000, 0 },
		{ "X-Txmail-TTL:\t 60 \t\r\n\r\n", "[]", "{}", 60000, 0 },
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		struct subm_msg m;
		char reply[256] = "";
		int rc = prep(t[i].in, &m, reply, sizeof(reply));

		cr_expect_eq(rc, 0, "case %zu: got %d (%s)", i, rc, reply);
		if (rc == 0) {
			cr_expect_str_eq(m.tags_json, t[i].tags, "case %zu: tags got %s, want %s", i, m.tags_json,
			    t[i].tags);
			cr_expect_str_eq(m.metadata_json, t[i].meta, "case %zu: metadata got %s, want %s", i,
			    m.metadata_json, t[i].meta);
			cr_expect_eq(m.ttl_ms, t[i].ttl, "case %zu: ttl got %lld", i, (long long)m.ttl_ms);
			cr_expect_eq(m.priority_high, t[i].high, "case %zu: priority got %d", i, m.priority_high);
			cr_expect(strstr(m.mime, "X-Txmail") == NULL, "case %zu: X-Txmail left in", i);
		}
		subm_msg_free(&m);
	}
}

/* --- refusals ---------------------------------------------------------------------- */

static char *
repeat(const char *head, char c, size_t n, const char *tail)
{
	size_t hl = strlen(head), tl = strlen(tail);
	char *s = malloc(hl + n + tl + 1);

	cr_assert(s != NULL);
	memcpy(s, head, hl);
	memset(s + hl, c, n);
	memcpy(s + hl + n, tail, tl + 1);
	return s;
}

Test(submit_msg, refusals)
{
	static const struct {
		const char *in, *reply;
	} t[] = {
		{ "X-Txmail-Tags: a\r\nx-txmail-tags: b\r\n\r\n", "554 5.6.0 X-Txmail-Tags: given more than once" },
		{ "X-Txmail-TTL: 1\r\nX-Txmail-TTL: 1\r\n\r\n", "554 5.6.0 X-Txmail-TTL: given more than once" },
		{ "X-Txmail-Foo: 1\r\n\r\n", "554 5.6.0 X-Txmail-Foo: unknown field" },
		{ "X-Txmail-: 1\r\n\r\n", "554 5.6.0 X-Txmail-: unknown field" },
		{ "X-Txmail-Metadata: not json\r\n\r\n", "554 5.6.0 X-Txmail-Metadata: is not valid JSON" },
		{ "X-Txmail-Metadata: {\"a\":1} x\r\n\r\n", "554 5.6.0 X-Txmail-Metadata: is not valid JSON" },
		{ "X-Txmail-Metadata: [1]\r\n\r\n", "554 5.6.0 X-Txmail-Metadata: must be an object" },
		{ "X-Txmail-Metadata: \"s\"\r\n\r\n", "554 5.6.0 X-Txmail-Metadata: must be an object" },
		{ "X-Txmail-Metadata:\r\n\r\n", "554 5.6.0 X-Txmail-Metadata: is not valid JSON" },
		{ "X-Txmail-Metadata: {\"a\":\"\\u0000\"}\r\n\r\n",
		  "554 5.6.0 X-Txmail-Metadata: must not hold a \\u0000 escape" },
		{ "X-Txmail-Tags: a,,b\r\n\r\n", "554 5.6.0 X-Txmail-Tags: tags[1] must not be empty" },
		{ "X-Txmail-Tags: a,\r\n\r\n", "554 5.6.0 X-Txmail-Tags: tags[1] must not be empty" },
		{ "X-Txmail-Tags:\r\n\r\n", "554 5.6.0 X-Txmail-Tags: tags[0] must not be empty" },
		{ "X-Txmail-Tags: [1]\r\n\r\n", "554 5.6.0 X-Txmail-Tags: tags[0] must be a string" },
		{ "X-Txmail-Tags: [\"a\"\r\n\r\n", "554 5.6.0 X-Txmail-Tags: is not valid JSON" },
		{ "X-Txmail-Tags: a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q,r,s,t,u\r\n\r\n",
		  "554 5.6.0 X-Txmail-Tags: has too many tags (max 20)" },
		{ "X-Txmail-TTL: 0\r\n\r\n", "554 5.6.0 X-Txmail-TTL: must be an integer number of seconds from 1 to 2592000" },
		{ "X-Txmail-TTL: 2592001\r\n\r\n", "554 5.6.0 X-Txmail-TTL: must be an integer number of seconds from 1" },
		{ "X-Txmail-TTL: 99999999999999999999\r\n\r\n", "554 5.6.0 X-Txmail-TTL: must be an integer number of seconds from 1" },
		{ "X-Txmail-TTL: 1.5\r\n\r\n", "554 5.6.0 X-Txmail-TTL: must be an integer number of seconds" },
		{ "X-Txmail-TTL: -5\r\n\r\n", "554 5.6.0 X-Txmail-TTL: must be an integer number of seconds" },
		{ "X-Txmail-TTL: 1h\r\n\r\n", "554 5.6.0 X-Txmail-TTL: must be an integer number of seconds" },
		{ "X-Txmail-TTL:\r\n\r\n", "554 5.6.0 X-Txmail-TTL: must be an integer number of seconds" },
		{ "X-Txmail-Priority: urgent\r\n\r\n", "554 5.6.0 X-Txmail-Priority: must be \"high\" or \"normal\"" },
		{ "X-Txmail-Priority: High\r\n\r\n", "554 5.6.0 X-Txmail-Priority: must be \"high\" or \"normal\"" },
		{ "X-Txmail-Idempotency-Key:\r\n\r\n",
		  "554 5.6.0 X-Txmail-Idempotency-Key: must be 1 to 255 printable ASCII characters" },
		{ "X-Txmail-Idempotency-Key: a\tb\r\n\r\n",
		  "554 5.6.0 X-Txmail-Idempotency-Key: must be 1 to 255 printable ASCII characters" },
		{ "X-Txmail-Idempotency-Key: caf\xc3\xa9\r\n\r\n",
		  "554 5.6.0 X-Txmail-Idempotency-Key: must be 1 to 255 printable ASCII characters" },
		{ "Subject: a\nb\r\n\r\n", "550 5.6.11 " },
		{ "Subject: a\rb\r\n\r\n", "550 5.6.11 " },
		{ "Subject: a\r\n\r\nbody\r", "550 5.6.11 " },
		{ "\nSubject: a\r\n\r\n", "550 5.6.11 " },
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		struct subm_msg m;
		char reply[256] = "";
		int rc = prep(t[i].in, &m, reply, sizeof(reply));

		cr_expect_eq(rc, -1, "case %zu: got %d, want -1", i, rc);
		cr_expect(strncmp(reply, t[i].reply, strlen(t[i].reply)) == 0,
		    "case %zu: reply got \"%s\", want \"%s...\"", i, reply, t[i].reply);
		cr_expect(strpbrk(reply, "\r\n") == NULL, "case %zu: CR/LF in the reply", i);
		subm_msg_free(&m);
	}
}

Test(submit_msg, refusals_at_the_caps)
{
	struct subm_msg m;
	char reply[256];
	char *s;
	int rc;

	/* metadata: 4096 octets of compact JSON pass, 4097 do not ({"k":"..."} is 8 + n) */
	s = repeat("X-Txmail-Metadata: {\"k\": \"", 'x', 4088, "\"}\r\n\r\n");
	rc = prep(s, &m, reply, sizeof(reply));
	cr_expect_eq(rc, 0, "4096-octet metadata: got %d (%s)", rc, reply);
	cr_expect_eq(m.metadata_json != NULL ? strlen(m.metadata_json) : 0, 4096);
	subm_msg_free(&m);
	free(s);
	s = repeat("X-Txmail-Metadata: {\"k\": \"", 'x', 4089, "\"}\r\n\r\n");
	rc = prep(s, &m, reply, sizeof(reply));
	cr_expect_eq(rc, -1);
	cr_expect_str_eq(reply, "554 5.6.0 X-Txmail-Metadata: must be at most 4096 octets as compact JSON");
	subm_msg_free(&m);
	free(s);
	/* a value over SUBM_MSG_OPT_MAX unfolded */
	s = repeat("X-Txmail-Metadata: {\"k\": \"", ' ', SUBM_MSG_OPT_MAX, "\"}\r\n\r\n");
	rc = prep(s, &m, reply, sizeof(reply));
	cr_expect_eq(rc, -1);
	cr_expect_str_eq(reply, "554 5.6.0 X-Txmail-Metadata: is too long (max 8192 octets)");
	subm_msg_free(&m);
	free(s);
	/* nesting */
	s = repeat("X-Txmail-Metadata: {\"a\":", '[', SUBM_MSG_JSON_DEPTH, "\r\n\r\n");
	rc = prep(s, &m, reply, sizeof(reply));
	cr_expect_eq(rc, -1);
	subm_msg_free(&m);
	free(s);
	{
		char in[512];
		int n = snprintf(in, sizeof(in), "X-Txmail-Metadata: {\"a\":");

		for (int d = 0; d < SUBM_MSG_JSON_DEPTH - 1; d++)
			in[n++] = '[';
		for (int d = 0; d < SUBM_MSG_JSON_DEPTH - 1; d++)
			in[n++] = ']';
		snprintf(in + n, sizeof(in) - (size_t)n, "}\r\n\r\n");
		rc = prep(in, &m, reply, sizeof(reply));
		cr_expect_eq(rc, 0, "depth %d: got %d (%s)", SUBM_MSG_JSON_DEPTH, rc, reply);
		subm_msg_free(&m);
		in[n - 1] = '\0';
		snprintf(in + 19, sizeof(in) - 19, "{\"a\":");
		n = 24;
		for (int d = 0; d < SUBM_MSG_JSON_DEPTH; d++)
			in[n++] = '[';
		for (int d = 0; d < SUBM_MSG_JSON_DEPTH; d++)
			in[n++] = ']';
		snprintf(in + n, sizeof(in) - (size_t)n, "}\r\n\r\n");
		rc = prep(in, &m, reply, sizeof(reply));
		cr_expect_eq(rc, -1, "depth %d: got %d", SUBM_MSG_JSON_DEPTH + 1, rc);
		cr_expect_str_eq(reply, "554 5.6.0 X-Txmail-Metadata: nests too deep");
		subm_msg_free(&m);
	}
	/* a tag of 64 characters passes, 65 do not */
	s = repeat("X-Txmail-Tags: ok, ", 't', 64, "\r\n\r\n");
	rc = prep(s, &m, reply, sizeof(reply));
	cr_expect_eq(rc, 0, "64-char tag: got %d (%s)", rc, reply);
	subm_msg_free(&m);
	free(s);
	s = repeat("X-Txmail-Tags: ok, ", 't', 65, "\r\n\r\n");
	rc = prep(s, &m, reply, sizeof(reply));
	cr_expect_eq(rc, -1);
	cr_expect_str_eq(reply, "554 5.6.0 X-Txmail-Tags: tags[1] must be at most 64 characters");
	subm_msg_free(&m);
	free(s);
	/* idempotency key: 255 pass, 256 do not */
	s = repeat("X-Txmail-Idempotency-Key: ", 'k', 255, "\r\n\r\n");
	rc = prep(s, &m, reply, sizeof(reply));
	cr_expect_eq(rc, 0, "255-char key: got %d (%s)", rc, reply);
	cr_expect_eq(strlen(m.idem_key), 255);
	subm_msg_free(&m);
	free(s);
	s = repeat("X-Txmail-Idempotency-Key: ", 'k', 256, "\r\n\r\n");
	rc = prep(s, &m, reply, sizeof(reply));
	cr_expect_eq(rc, -1);
	subm_msg_free(&m);
	free(s);
}

Test(submit_msg, max_len_after_the_added_fields)
{
	const char *in = "Subject: x\r\n\r\nbody\r\n";
	const char *want = "Message-ID: " MID "\r\nDate: " DATE_TXT "\r\nFrom: sender@example.com\r\n"
	    "Subject: x\r\n\r\nbody\r\n";
	struct subm_msg_opts o = base_opts;
	struct subm_msg m;
	char reply[256] = "";
	int rc;

	o.max_len = strlen(want);
	rc = subm_msg_prepare(in, strlen(in), &o, &m, reply, sizeof(reply));
	cr_expect_eq(rc, 0, "at the cap: got %d (%s)", rc, reply);
	subm_msg_free(&m);
	o.max_len = strlen(want) - 1;
	rc = subm_msg_prepare(in, strlen(in), &o, &m, reply, sizeof(reply));
	cr_expect_eq(rc, -1, "one over: got %d", rc);
	cr_expect(strncmp(reply, "552 5.3.4 ", 10) == 0, "reply got \"%s\"", reply);
	cr_expect_null(m.mime);
	subm_msg_free(&m);
}

Test(submit_msg, envelope_values_with_eol_refused)
{
	struct subm_msg_opts o = { "a@b.c\r\nBcc: x@y.z", MID, DATE_S, 0 };
	struct subm_msg m;
	char reply[256] = "";
	int rc = subm_msg_prepare("\r\n", 2, &o, &m, reply, sizeof(reply));

	cr_expect_eq(rc, -1);
	cr_expect(strncmp(reply, "451 4.3.0 ", 10) == 0, "reply got \"%s\"", reply);
	subm_msg_free(&m);
	o.mail_from = "a@b.c";
	o.message_id = "<x@y>\nX: y";
	rc = subm_msg_prepare("\r\n", 2, &o, &m, reply, sizeof(reply));
	cr_expect_eq(rc, -1);
	subm_msg_free(&m);
}

Test(submit_msg, many_fields)
{
	size_t nf = 20000, n = 0;
	char *in = malloc(nf * 16 + 16);
	struct subm_msg m;
	char reply[128];
	size_t bcc = 0;

	cr_assert(in != NULL);
	for (size_t i = 0; i < nf; i++)
		n += (size_t)sprintf(in + n, i % 2 ? "Bcc: b%05zu@x\r\n" : "X-H: a%05zu@x\r\n", i);
	memcpy(in + n, "\r\nb", 3);
	n += 3;
	cr_assert_eq(subm_msg_prepare(in, n, &base_opts, &m, reply, sizeof(reply)), 0);
	for (const char *p = m.mime; (p = strstr(p, "Bcc:")) != NULL; p++)
		bcc++;
	cr_expect_eq(bcc, 0);
	cr_expect_eq(m.mime_len, strlen("Message-ID: " MID "\r\nDate: " DATE_TXT "\r\nFrom: sender@example.com\r\n") +
	    nf / 2 * 15 + 3);
	subm_msg_free(&m);
	free(in);
}

/* --- recipient kinds ------------------------------------------------------------- */

Test(submit_msg, rcpt_kinds)
{
	const char *in =
	    "From: Me <me@example.com>\r\n"
	    "To: plain@example.com, Bob Smith <Bob@Example.ORG>,\r\n"
	    "  \"Smith, Jane\" <jane@example.org>, (comment, with comma) commented@example.org (trailing)\r\n"
	    "To: team: g1@example.com, G2 <g2@example.com>;, after@example.com\r\n"
	    "Cc: =?UTF-8?B?5byg5LiJ?= <zhang@example.cn>, <@relay1,@relay2:routed@example.net>,\r\n"
	    " undisclosed-recipients:;, \"quoted<>,name\" <q@example.com>, both@example.com\r\n"
	    "To: both@example.com\r\n"
	    "Cc: unterminated <u@example.com\r\n"
	    "Bcc: hidden@example.com\r\n"
	    "Reply-To: reply@example.com\r\n"
	    "\r\n"
	    "To: body@example.com\r\n";
	static const struct {
		const char *addr, *kind;
	} t[] = {
		{ "plain@example.com", "to" },
		{ "PLAIN@EXAMPLE.COM", "to" },
		{ "bob@example.org", "to" },
		{ "jane@example.org", "to" },
		{ "commented@example.org", "to" },
		{ "g1@example.com", "to" },
		{ "g2@example.com", "to" },
		{ "after@example.com", "to" },
		{ "zhang@example.cn", "cc" },
		{ "routed@example.net", "cc" },
		{ "q@example.com", "cc" },
		{ "both@example.com", "to" },
		{ "u@example.com", "cc" },
		{ "hidden@example.com", "bcc" },
		{ "reply@example.com", "bcc" },
		{ "body@example.com", "bcc" },
		{ "me@example.com", "bcc" },
		{ "team", "bcc" },
		{ "smith", "bcc" },
		{ "", "bcc" },
	};
	struct subm_msg m;
	char reply[256] = "";
	int rc = prep(in, &m, reply, sizeof(reply));

	cr_assert_eq(rc, 0, "got %d (%s)", rc, reply);
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		const char *k = subm_msg_rcpt_kind(&m, t[i].addr);

		cr_expect_str_eq(k, t[i].kind, "%s: got %s, want %s", t[i].addr, k, t[i].kind);
	}
	cr_expect_str_eq(subm_msg_rcpt_kind(&m, NULL), "bcc");
	cr_expect_str_eq(subm_msg_rcpt_kind(NULL, "a@b"), "bcc");
	subm_msg_free(&m);
}

Test(submit_msg, rcpt_kinds_capped)
{
	size_t n = 0, na = SUBM_MSG_HDR_ADDRS + 10;
	char *in = malloc(na * 16 + 64);
	struct subm_msg m;
	char reply[128];

	cr_assert(in != NULL);
	n += (size_t)sprintf(in, "To: ");
	for (size_t i = 0; i < na; i++)
		n += (size_t)sprintf(in + n, "a%05zu@x.y,", i);
	n += (size_t)sprintf(in + n, "\r\n\r\n");
	cr_assert_eq(subm_msg_prepare(in, n, &base_opts, &m, reply, sizeof(reply)), 0);
	cr_expect_eq(m.n_hdr_addr, SUBM_MSG_HDR_ADDRS);
	cr_expect_str_eq(subm_msg_rcpt_kind(&m, "a00000@x.y"), "to");
	cr_expect_str_eq(subm_msg_rcpt_kind(&m, "a00999@x.y"), "to");
	cr_expect_str_eq(subm_msg_rcpt_kind(&m, "a01000@x.y"), "bcc");
	subm_msg_free(&m);
	free(in);
}

Test(submit_msg, rcpt_kinds_malformed_lists)
{
	static const struct {
		const char *in, *addr, *kind;
	} t[] = {
		/* an unterminated comment ending in a backslash: the address before it still counts */
		{ "To: x@y.z (unterminated \\\r\n\r\n", "x@y.z", "to" },
		{ "To: x@y.z (a (nested) comment) , w@y.z\r\n\r\n", "w@y.z", "to" },
		{ "To: J\xc3\xb6rg M\xc3\xbcller <jm@example.de>\r\n\r\n", "jm@example.de", "to" },
		{ "To: \"unterminated <q@x.y>\r\n\r\n", "q@x.y", "bcc" },
		{ "Cc: a(comment)@b.c\r\n\r\n", "a@b.c", "cc" },
		{ "Cc: <>, <@only.route:>\r\n\r\n", "@only.route:", "bcc" },
		{ "To:\r\n\r\n", "a@b.c", "bcc" },
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		struct subm_msg m;
		char reply[256] = "";
		int rc = prep(t[i].in, &m, reply, sizeof(reply));

		cr_expect_eq(rc, 0, "case %zu: got %d (%s)", i, rc, reply);
		if (rc == 0) {
			const char *k = subm_msg_rcpt_kind(&m, t[i].addr);

			cr_expect_str_eq(k, t[i].kind, "case %zu (%s): got %s, want %s", i, t[i].addr, k, t[i].kind);
		}
		subm_msg_free(&m);
	}
}
