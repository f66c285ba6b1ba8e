/*
 * test_mailparse.c - the captured-mail MIME reader (server/mailparse.c):
 * header fields and RFC 2047 words, multipart trees (alternative inside
 * mixed inside related), transfer encodings, charsets, RFC 2231 file names,
 * broken input (no headers, no boundary, no close delimiter, LF-only lines,
 * invalid UTF-8, NULs), the nesting and part caps; and the id check of
 * GET /dev/mail/{id} (api_devmail_id_ok).
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../server/api.h"
#include "../../server/mailparse.h"

static struct mailparse_msg *
parse(const char *msg)
{
	struct mailparse_msg *m = malloc(sizeof(*m));

	cr_assert_not_null(m);
	mailparse_parse(msg, strlen(msg), m);
	return m;
}

static char *
body(const char *msg, const struct mailparse_msg *m, int idx, int text)
{
	char *out = NULL;
	size_t n = 0;

	cr_assert(idx >= 0 && (size_t)idx < m->nparts, "part %d of %zu", idx, m->nparts);
	cr_assert_eq(mailparse_body(msg, &m->parts[idx], text, &out, &n), 0);
	cr_assert_eq(strlen(out), n, "body has a NUL: got strlen %zu, want %zu", strlen(out), n);
	return out;
}

static void
hdr(const char *msg, const struct mailparse_msg *m, const char *name, const char *want)
{
	char out[512];
	int i = mailparse_find(m, msg, name);

	cr_assert(i >= 0, "no %s field", name);
	mailparse_header_text(msg, m->headers[i].value, out, sizeof(out));
	cr_assert_str_eq(out, want, "%s: got \"%s\", want \"%s\"", name, out, want);
}

Test(mailparse, plain_message)
{
	const char *msg = "From: A <a@example.com>\r\nTo: b@example.com\r\nSubject: hi\r\n"
	    "  there\r\n\r\nbody line\r\n";
	struct mailparse_msg *m = parse(msg);
	char *t;

	cr_assert_eq(m->nheaders, 3, "got %zu fields, want 3", m->nheaders);
	hdr(msg, m, "subject", "hi  there");
	hdr(msg, m, "FROM", "A <a@example.com>");
	cr_assert_eq(m->nparts, 1);
	cr_assert_eq(m->text, 0);
	cr_assert_eq(m->html, -1);
	t = body(msg, m, 0, 1);
	cr_assert_str_eq(t, "body line\n", "got \"%s\"", t);
	free(t);
	free(m);
}

Test(mailparse, encoded_words)
{
	static const struct {
		const char *in, *want;
	} cases[] = {
		{ "=?UTF-8?B?R3LDvMOfZSDinJM=?=", "Gr\xc3\xbc\xc3\x9f" "e \xe2\x9c\x93" },
		{ "=?utf-8?q?caf=C3=A9_au_lait?=", "caf\xc3\xa9 au lait" },
		{ "=?ISO-8859-1?Q?M=E4rz?= 2026", "M\xc3\xa4rz 2026" },
		{ "=?UTF-8?B?YQ==?= =?UTF-8?B?Yg==?=", "ab" },     /* blanks between words vanish */
		{ "x =?UTF-8?B?YQ==?= y", "x a y" },
		{ "=?UTF-8*en?Q?hi?=", "hi" },
		{ "=?UTF-8?X?bad?=", "=?UTF-8?X?bad?=" },           /* not a word: as is */
		{ "=?UTF-8?B?", "=?UTF-8?B?" },
		{ "=?UTF-8?Q?=FF?=", "\xef\xbf\xbd" },               /* invalid UTF-8 -> U+FFFD */
		{ "plain \xff text", "plain \xef\xbf\xbd text" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char msg[512], out[256];
		struct mailparse_msg *m;

		snprintf(msg, sizeof(msg), "Subject: %s\r\n\r\nx", cases[i].in);
		m = parse(msg);
		cr_assert_eq(m->nheaders, 1);
		mailparse_header_text(msg, m->headers[0].value, out, sizeof(out));
		cr_assert_str_eq(out, cases[i].want, "%s: got \"%s\", want \"%s\"", cases[i].in, out,
		    cases[i].want);
		free(m);
	}
}

Test(mailparse, header_text_cut_at_a_character)
{
	const char *msg = "Subject: \xc3\xa4\xc3\xa4\xc3\xa4\r\n\r\n";
	struct mailparse_msg *m = parse(msg);
	char out[6];
	size_t n = mailparse_header_text(msg, m->headers[0].value, out, sizeof(out));

	cr_assert_eq(n, 4, "got %zu octets, want 4 (two whole characters)", n);
	cr_assert_str_eq(out, "\xc3\xa4\xc3\xa4");
	free(m);
}

static const char tree[] =
    "From: shop@example.com\r\n"
    "Subject: order\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: multipart/mixed; boundary=\"mix\"\r\n"
    "\r\n"
    "preamble\r\n"
    "--mix\r\n"
    "Content-Type: multipart/related;\r\n boundary=rel\r\n"
    "\r\n"
    "--rel\r\n"
    "Content-Type: multipart/alternative; boundary=\"alt\"\r\n"
    "\r\n"
    "--alt\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n"
    "Content-Transfer-Encoding: quoted-printable\r\n"
    "\r\n"
    "Gr=C3=BC=C3=9Fe, a long line=\r\n"
    " continued\r\n"
    "--alt\r\n"
    "Content-Type: text/html; charset=\"ISO-8859-1\"\r\n"
    "Content-Transfer-Encoding: base64\r\n"
    "\r\n"
    "PHA+TeRyejwvcD4=\r\n"
    "--alt--\r\n"
    "--rel\r\n"
    "Content-Type: image/png\r\n"
    "Content-ID: <logo@x>\r\n"
    "Content-Disposition: inline; filename=logo.png\r\n"
    "Content-Transfer-Encoding: base64\r\n"
    "\r\n"
    "iVBO\r\nRw==\r\n"
    "--rel--\r\n"
    "--mix\r\n"
    "Content-Type: application/pdf; name=\"wrong.pdf\"\r\n"
    "Content-Disposition: attachment; filename=\"=?UTF-8?Q?fallback.pdf?=\";\r\n"
    " filename*=UTF-8''Rechnung%20M%C3%A4rz.pdf\r\n"
    "Content-Transfer-Encoding: base64\r\n"
    "\r\n"
    "JVBERi0=\r\n"
    "--mix\r\n"
    "Content-Type: text/plain\r\n"
    "Content-Disposition: attachment; filename=\"notes.txt\"\r\n"
    "\r\n"
    "a note\r\n"
    "--mix--\r\n"
    "epilogue\r\n";

Test(mailparse, multipart_tree)
{
	struct mailparse_msg *m = parse(tree);
	char *t;

	cr_assert_eq(m->truncated, 0);
	cr_assert_eq(m->nheaders, 4, "got %zu top-level fields, want 4 (not the parts')", m->nheaders);
	cr_assert_eq(m->nparts, 5, "got %zu leaves, want 5", m->nparts);
	cr_assert_eq(m->text, 0, "text part: got %d, want 0", m->text);
	cr_assert_eq(m->html, 1, "html part: got %d, want 1", m->html);
	t = body(tree, m, 0, 1);
	cr_assert_str_eq(t, "Gr\xc3\xbc\xc3\x9f" "e, a long line continued", "text: got \"%s\"", t);
	free(t);
	t = body(tree, m, 1, 1);
	cr_assert_str_eq(t, "<p>M\xc3\xa4rz</p>", "html (Latin-1 -> UTF-8): got \"%s\"", t);
	free(t);
	cr_assert_str_eq(m->parts[2].type, "image/png");
	cr_assert_str_eq(m->parts[2].content_id, "logo@x");
	cr_assert_str_eq(m->parts[2].filename, "logo.png");
	cr_assert_eq(m->parts[2].attachment, 0);
	t = body(tree, m, 2, 0);
	cr_assert_eq(memcmp(t, "\x89PNG", 4), 0, "png bytes");
	free(t);
	cr_assert_str_eq(m->parts[3].filename, "Rechnung M\xc3\xa4rz.pdf", "RFC 2231 name: got \"%s\"",
	    m->parts[3].filename);
	cr_assert_eq(m->parts[3].attachment, 1);
	t = body(tree, m, 3, 0);
	cr_assert_str_eq(t, "%PDF-");
	free(t);
	cr_assert_str_eq(m->parts[4].filename, "notes.txt");
	cr_assert_str_eq(m->parts[4].type, "text/plain");
	free(m);
}

Test(mailparse, lf_only_and_prefix_boundaries)
{
	const char *msg = "Content-Type: multipart/alternative; boundary=b\n\n"
	    "--b\nContent-Type: text/plain\n\none\n--bb\nnot a delimiter\n"
	    "--b\nContent-Type: text/html\n\n<i>two</i>\n--b--\n";
	struct mailparse_msg *m = parse(msg);
	char *t;

	cr_assert_eq(m->nparts, 2, "got %zu parts, want 2", m->nparts);
	t = body(msg, m, m->text, 1);
	cr_assert_str_eq(t, "one\n--bb\nnot a delimiter", "got \"%s\"", t);
	free(t);
	t = body(msg, m, m->html, 1);
	cr_assert_str_eq(t, "<i>two</i>", "got \"%s\"", t);
	free(t);
	free(m);
}

Test(mailparse, broken_input_never_fails)
{
	static const char *const msgs[] = {
		"",
		"no headers at all, just text",
		"\r\n\r\nbody after an empty header section",
		"Subject: only headers, no body",
		"Content-Type: multipart/mixed\r\n\r\n--x\r\nno boundary parameter\r\n",
		"Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\nContent-Type: text/plain\r\n\r\nno close",
		"Content-Type: multipart/mixed; boundary=\"\"\r\n\r\n--\r\n",
		"Content-Type: ; ; =; a=\"unterminated\r\n\r\nx",
		"Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!===",
		"Content-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n=\r=4=ZZ=",
		" leading continuation\r\nSubject: x\r\n\r\n",
		"Content-Disposition: attachment; filename*=utf-8'only-one-quote\r\n\r\nx",
	};

	for (size_t i = 0; i < sizeof(msgs) / sizeof(msgs[0]); i++) {
		struct mailparse_msg *m = parse(msgs[i]);

		for (size_t k = 0; k < m->nparts; k++) {
			char *t = body(msgs[i], m, (int)k, 1);

			free(t);
		}
		free(m);
	}
}

Test(mailparse, no_headers_is_one_text_part)
{
	const char *msg = "just text\r\n";
	struct mailparse_msg *m = parse(msg);
	char *t;

	cr_assert_eq(m->nheaders, 0);
	cr_assert_eq(m->nparts, 1);
	cr_assert_eq(m->text, 0);
	t = body(msg, m, 0, 1);
	cr_assert_str_eq(t, "just text\n");
	free(t);
	free(m);
}

Test(mailparse, nesting_and_part_caps)
{
	size_t cap = 64 * 1024, n = 0;
	char *msg = malloc(cap);
	struct mailparse_msg *m;
	int i;

	cr_assert_not_null(msg);
	/* 20 levels of multipart: only MAILPARSE_MAX_DEPTH are entered */
	for (i = 0; i < 20; i++)
		n += (size_t)snprintf(msg + n, cap - n,
		    "Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n", i, i);
	n += (size_t)snprintf(msg + n, cap - n, "Content-Type: text/plain\r\n\r\ndeep\r\n");
	m = malloc(sizeof(*m));
	cr_assert_not_null(m);
	mailparse_parse(msg, n, m);
	cr_assert_eq(m->truncated, 1, "20 levels: want truncated");
	cr_assert_eq(m->nparts, 0, "got %zu parts, want 0 (the leaf is too deep)", m->nparts);
	/* 100 parts: MAILPARSE_MAX_PARTS are listed */
	n = (size_t)snprintf(msg, cap, "Content-Type: multipart/mixed; boundary=z\r\n\r\n");
	for (i = 0; i < 100; i++)
		n += (size_t)snprintf(msg + n, cap - n, "--z\r\nContent-Type: text/plain\r\n\r\n%d\r\n", i);
	mailparse_parse(msg, n, m);
	cr_assert_eq(m->nparts, MAILPARSE_MAX_PARTS, "got %zu parts, want %d", m->nparts,
	    MAILPARSE_MAX_PARTS);
	cr_assert_eq(m->truncated, 1);
	free(m);
	free(msg);
}

Test(mailparse, utf8_copy)
{
	static const char in[] = "ok \xc3\xa4 \xed\xa0\x80 \xc0\xaf \xf4\x90\x80\x80 \x00 end";
	size_t n = 0;
	char *u = mailparse_utf8(in, sizeof(in) - 1, &n);
	const char *want = "ok \xc3\xa4 \xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd \xef\xbf\xbd\xef\xbf\xbd "
	    "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd \xef\xbf\xbd end";

	cr_assert_not_null(u);
	cr_assert_str_eq(u, want, "got \"%s\"", u);
	cr_assert_eq(n, strlen(want));
	free(u);
}

Test(mailparse, devmail_ids)
{
	static const struct {
		const char *id;
		int ok;
	} cases[] = {
		{ "1796172114891-1", 1 }, { "0-0", 1 }, { "1-18446744073709551615", 0 },
		{ "1-1844674407370955161", 1 }, { "01-1", 0 }, { "1-01", 0 }, { "-1", 0 }, { "1-", 0 },
		{ "1", 0 }, { "1-2-3", 0 }, { "..", 0 }, { "../1-1", 0 }, { "1-1.eml", 0 },
		{ "1-1/", 0 }, { "1 -1", 0 }, { "", 0 }, { "+1-1", 0 }, { "1-1\n", 0 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		cr_assert_eq(api_devmail_id_ok(cases[i].id), cases[i].ok, "\"%s\": got %d, want %d",
		    cases[i].id, !cases[i].ok, cases[i].ok);
}
