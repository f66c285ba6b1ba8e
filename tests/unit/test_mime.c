/*
 * test_mime.c - tests for the MIME builder and encoders (smtp/mime.c):
 * encoder vectors, RFC 2047 round trips through a small decoder here, line
 * limits, a golden message (tests/golden/basic_alternative.eml) and an
 * interoperability check through Python's `email` package
 * (tests/unit/mime_roundtrip.py, run with /usr/bin/python3). Attachments:
 * structure (mixed / alternative / related), RFC 2231 file names and bytes
 * checked through tests/unit/mime_parts.py, and a second golden message
 * (tests/golden/attachments_inline.eml).
 *
 * Run from the repository root. TXMAIL_UPDATE_GOLDEN=1 rewrites the golden
 * file instead of comparing (inspect the result before committing it).
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../smtp/mime.h"

#define GOLDEN_PATH "tests/golden/basic_alternative.eml"
#define ROUNDTRIP_PY "tests/unit/mime_roundtrip.py"
#define PARTS_PY "tests/unit/mime_parts.py"
#define GOLDEN_ATTACH_PATH "tests/golden/attachments_inline.eml"

static const char zh_subject[] = "验证码：您的登录验证码是 123456";

/* ---- helpers ---- */

/*
 * check_lines - every line ends in CRLF (no bare CR or LF anywhere) and is
 * at most max octets. Returns NULL or a static description of the problem.
 */
static const char *
check_lines(const char *s, size_t len, size_t max)
{
	static char why[128];
	size_t col = 0, line = 1;

	for (size_t i = 0; i < len; i++) {
		if (s[i] == '\r') {
			if (i + 1 >= len || s[i + 1] != '\n') {
				snprintf(why, sizeof why, "bare CR on line %zu", line);
				return why;
			}
			i++;
			col = 0;
			line++;
			continue;
		}
		if (s[i] == '\n') {
			snprintf(why, sizeof why, "bare LF on line %zu", line);
			return why;
		}
		if (++col > max) {
			snprintf(why, sizeof why, "line %zu longer than %zu", line, max);
			return why;
		}
	}
	if (col != 0) {
		snprintf(why, sizeof why, "last line %zu has no CRLF", line);
		return why;
	}
	return NULL;
}

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* qp_decode - minimal RFC 2045 decoder; returns malloc'd string or NULL if invalid. */
static char *
qp_decode(const char *s, size_t len)
{
	char *o = malloc(len + 1);
	size_t n = 0;

	cr_assert_not_null(o);
	for (size_t i = 0; i < len; i++) {
		if (s[i] != '=') {
			o[n++] = s[i];
			continue;
		}
		if (i + 2 < len && s[i + 1] == '\r' && s[i + 2] == '\n') {
			i += 2;
			continue;
		}
		if (i + 2 >= len || hexval(s[i + 1]) < 0 || hexval(s[i + 2]) < 0) {
			free(o);
			return NULL;
		}
		o[n++] = (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
		i += 2;
	}
	o[n] = '\0';
	return o;
}

static int
utf8_valid(const unsigned char *s, size_t n)
{
	size_t i = 0;

	while (i < n) {
		size_t want;
		if (s[i] < 0x80)
			want = 1;
		else if ((s[i] & 0xe0) == 0xc0)
			want = 2;
		else if ((s[i] & 0xf0) == 0xe0)
			want = 3;
		else if ((s[i] & 0xf8) == 0xf0)
			want = 4;
		else
			return 0;
		if (i + want > n)
			return 0;
		for (size_t k = 1; k < want; k++)
			if ((s[i + k] & 0xc0) != 0x80)
				return 0;
		i += want;
	}
	return 1;
}

/*
 * ew_decode - decode a header value made of RFC 2047 UTF-8 encoded words
 * (B or Q) separated by folding white space. Each word must be <= 75 chars
 * and decode to whole UTF-8 characters by itself. Returns malloc'd text, or
 * NULL (with *why set) when any of that does not hold.
 */
static char *
ew_decode(const char *s, const char **why)
{
	size_t len = strlen(s), n = 0, i = 0;
	char *o = malloc(len + 1);

	cr_assert_not_null(o);
	*why = NULL;
	while (i < len) {
		while (i < len && (s[i] == ' ' || s[i] == '\r' || s[i] == '\n'))
			i++;
		if (i == len)
			break;
		if (strncmp(s + i, "=?UTF-8?", 8) != 0 || i + 10 > len || s[i + 9] != '?') {
			*why = "not an encoded word";
			goto fail;
		}
		char kind = s[i + 8];
		const char *p = s + i + 10, *end = strstr(p, "?=");
		if (end == NULL) {
			*why = "unterminated encoded word";
			goto fail;
		}
		if ((size_t)(end + 2 - (s + i)) > 75) {
			*why = "encoded word longer than 75";
			goto fail;
		}
		size_t start = n;
		if (kind == 'B') {
			unsigned char *d;
			size_t dl;
			if (mime_base64_decode(p, (size_t)(end - p), &d, &dl) != 0) {
				*why = "bad base64 in word";
				goto fail;
			}
			memcpy(o + n, d, dl);
			n += dl;
			free(d);
		} else if (kind == 'Q') {
			for (const char *q = p; q < end; q++) {
				if (*q == '_') {
					o[n++] = ' ';
				} else if (*q == '=' && q + 2 < end &&
				    hexval(q[1]) >= 0 && hexval(q[2]) >= 0) {
					o[n++] = (char)(hexval(q[1]) * 16 + hexval(q[2]));
					q += 2;
				} else if (*q == '=' || *q == '?' || *q == ' ') {
					*why = "bad Q word";
					goto fail;
				} else {
					o[n++] = *q;
				}
			}
		} else {
			*why = "unknown encoding";
			goto fail;
		}
		if (!utf8_valid((const unsigned char *)o + start, n - start)) {
			*why = "word splits a UTF-8 character";
			goto fail;
		}
		i = (size_t)(end + 2 - s);
	}
	o[n] = '\0';
	return o;
fail:
	free(o);
	return NULL;
}

/* max_line - longest line (CRLF separated) of s, counting first_len on line 1. */
static size_t
max_line(const char *s, size_t first_len)
{
	size_t best = 0, col = first_len;

	for (; *s; s++) {
		if (*s == '\r' && s[1] == '\n') {
			best = col > best ? col : best;
			col = 0;
			s++;
			continue;
		}
		col++;
	}
	return col > best ? col : best;
}

static char *
unfold(const char *s)
{
	size_t n = 0;
	char *o = malloc(strlen(s) + 1);

	cr_assert_not_null(o);
	for (; *s; s++) {
		if (*s == '\r' && s[1] == '\n') {
			s++;
			continue;
		}
		o[n++] = *s;
	}
	o[n] = '\0';
	return o;
}

/* ---- base64 ---- */

Test(mime, base64_vectors)
{
	static const struct {
		const char *in, *want;
	} cases[] = {
		/* RFC 4648 section 10 */
		{ "", "" }, { "f", "Zg==" }, { "fo", "Zm8=" }, { "foo", "Zm9v" },
		{ "foob", "Zm9vYg==" }, { "fooba", "Zm9vYmE=" }, { "foobar", "Zm9vYmFy" },
		{ "\xff\xfe\x00", "//4A" },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		size_t inlen = strlen(cases[i].in) + (i == 7 ? 1 : 0), olen = 99;
		char *got = mime_base64(cases[i].in, inlen, 1, &olen);
		cr_assert_not_null(got);
		cr_expect_str_eq(got, cases[i].want, "base64(\"%s\"): got \"%s\", want \"%s\"",
		    cases[i].in, got, cases[i].want);
		cr_expect(olen == strlen(cases[i].want), "len got %zu, want %zu", olen,
		    strlen(cases[i].want));

		unsigned char *dec;
		size_t dlen;
		cr_expect(mime_base64_decode(got, olen, &dec, &dlen) == 0,
		    "decode(\"%s\") failed", got);
		cr_expect(dlen == inlen && memcmp(dec, cases[i].in, inlen) == 0,
		    "decode(\"%s\"): got %zu bytes, want %zu", got, dlen, inlen);
		free(dec);
		free(got);
	}
}

Test(mime, base64_wrap)
{
	unsigned char in[200];
	const struct {
		size_t n;
		int wrap;
		const char *why;
		size_t want_len;
	} cases[] = {
		{ 57, 1, "exactly one line", 76 },
		{ 58, 1, "one byte over", 76 + 2 + 4 },
		{ 114, 1, "two full lines", 76 + 2 + 76 },
		{ 200, 0, "no wrap", 268 },
	};
	for (size_t i = 0; i < sizeof in; i++)
		in[i] = (unsigned char)(i * 7);
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		size_t olen;
		char *got = mime_base64(in, cases[i].n, cases[i].wrap, &olen);
		cr_assert_not_null(got);
		cr_expect(olen == cases[i].want_len, "%s: len got %zu, want %zu",
		    cases[i].why, olen, cases[i].want_len);
		if (cases[i].wrap)
			cr_expect(max_line(got, 0) <= 76, "%s: line got %zu, want <= 76",
			    cases[i].why, max_line(got, 0));
		unsigned char *dec;
		size_t dlen;
		cr_expect(mime_base64_decode(got, olen, &dec, &dlen) == 0, "%s: decode failed",
		    cases[i].why);
		cr_expect(dlen == cases[i].n && memcmp(dec, in, dlen) == 0,
		    "%s: round trip got %zu bytes, want %zu", cases[i].why, dlen, cases[i].n);
		free(dec);
		free(got);
	}
}

Test(mime, base64_decode_invalid)
{
	static const char *const bad[] = {
		"Zg=", "Zg", "Z===", "=Zg=", "Zg==Zg==", "Zm9v!", "Zh==", "Zm9=",
		"Zg= =", "Z",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		unsigned char *dec = NULL;
		size_t dlen = 0;
		int rc = mime_base64_decode(bad[i], strlen(bad[i]), &dec, &dlen);
		cr_expect(rc == -1, "decode(\"%s\"): got %d, want -1", bad[i], rc);
		if (rc == 0)
			free(dec);
	}
	/* CR/LF ignored */
	unsigned char *dec;
	size_t dlen;
	cr_assert(mime_base64_decode("Zm9v\r\nYmFy\n", 11, &dec, &dlen) == 0);
	cr_expect(dlen == 6 && memcmp(dec, "foobar", 6) == 0, "got %.*s, want foobar",
	    (int)dlen, dec);
	free(dec);
}

/* ---- quoted-printable ---- */

Test(mime, qp_vectors)
{
	char l76[80], l77[80], l100[110], w76[160], w100[160];

	memset(l76, 'a', 76);
	l76[76] = '\0';
	memset(l77, 'a', 77);
	l77[77] = '\0';
	memset(l100, 'b', 100);
	l100[100] = '\0';
	snprintf(w76, sizeof w76, "%.75s=\r\naa", l77);
	snprintf(w100, sizeof w100, "%.75s=\r\n%.25s", l100, l100);
	char e74[90], e74want[120];
	memset(e74, 'c', 74);
	memcpy(e74 + 74, "\xc3\xa9", 3);
	snprintf(e74want, sizeof e74want, "%.74s=\r\n=C3=A9", e74);

	const struct {
		const char *in, *want;
	} cases[] = {
		{ "", "" },
		{ "plain text", "plain text" },
		{ "a=b", "a=3Db" },
		{ "caf\xc3\xa9", "caf=C3=A9" },
		{ "line one\r\nline two\r\n", "line one\r\nline two\r\n" },
		{ "bare\nlf", "bare\r\nlf" },
		{ "trailing space \r\nx", "trailing space=20\r\nx" },
		{ "trailing tab\t", "trailing tab=09" },
		{ "inner  spaces ok", "inner  spaces ok" },
		{ "cr\ralone", "cr=0Dalone" },
		{ "nul\x01", "nul=01" },
		{ l76, l76 },             /* exactly 76: no soft break */
		{ l77, w76 },
		{ l100, w100 },
		{ e74, e74want },         /* escapes are never split */
		/* RFC 2045 6.7 rule 3 example shape: space before a soft break */
		{ "Now's the time for all folk to come to the aid of their country.",
		  "Now's the time for all folk to come to the aid of their country." },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		size_t olen;
		char *got = mime_qp(cases[i].in, strlen(cases[i].in), &olen);
		cr_assert_not_null(got);
		cr_expect_str_eq(got, cases[i].want, "qp case %zu: got \"%s\", want \"%s\"",
		    i, got, cases[i].want);
		cr_expect(olen == strlen(got), "qp case %zu: len got %zu, want %zu", i, olen,
		    strlen(got));
		free(got);
	}
}

Test(mime, qp_roundtrip)
{
	static const char *const inputs[] = {
		"Grüße aus Köln,\r\nich hoffe, es geht dir gut. = ist gleich.\r\n",
		"验证码：您的登录验证码是 123456\r\n",
		"tab\tand  spaces   \r\n \r\n\t\r\n",
		"a very long line that keeps going and going and going well past the "
		"seventy-six character limit of quoted-printable, with ümlauts ünd "
		"more ümlauts so that escapes land near the soft line break boundary",
	};
	for (size_t i = 0; i < sizeof inputs / sizeof inputs[0]; i++) {
		size_t olen;
		char *enc = mime_qp(inputs[i], strlen(inputs[i]), &olen);
		cr_assert_not_null(enc);
		size_t elen = strlen(enc);
		/* check_lines wants a final CRLF */
		char *withnl = malloc(elen + 3);
		cr_assert_not_null(withnl);
		memcpy(withnl, enc, elen);
		memcpy(withnl + elen, "\r\n", 3);
		const char *why = check_lines(withnl, elen + 2, 76);
		cr_expect(why == NULL, "qp input %zu: %s", i, why);
		for (size_t k = 0; k < elen; k++)
			cr_expect(enc[k] == '\r' || enc[k] == '\n' ||
			    (enc[k] >= 0x20 && enc[k] <= 0x7e) || enc[k] == '\t',
			    "qp input %zu: raw byte 0x%02x in output", i, (unsigned char)enc[k]);
		char *dec = qp_decode(enc, elen);
		cr_assert_not_null(dec, "qp input %zu: output does not decode", i);
		cr_expect_str_eq(dec, inputs[i], "qp input %zu: round trip got \"%s\", want \"%s\"",
		    i, dec, inputs[i]);
		free(dec);
		free(withnl);
		free(enc);
	}
}

/* ---- headers ---- */

Test(mime, encode_header_chinese_subject)
{
	size_t olen;
	char *enc = mime_encode_header(zh_subject, strlen("Subject: "), &olen);
	const char *why;

	cr_assert_not_null(enc);
	cr_expect(strncmp(enc, "=?UTF-8?B?", 10) == 0, "CJK subject: got \"%s\", want B words", enc);
	cr_expect(max_line(enc, 9) <= 78, "longest line got %zu, want <= 78", max_line(enc, 9));
	char *dec = ew_decode(enc, &why);
	cr_assert_not_null(dec, "decoding \"%s\": %s", enc, why);
	cr_expect_str_eq(dec, zh_subject, "round trip: got \"%s\", want \"%s\"", dec, zh_subject);
	free(dec);
	free(enc);
}

Test(mime, encode_header_table)
{
	static const char *const inputs[] = {
		"Café au lait",
		"Grüße — “quotes” and ümlauts in a subject long enough to need more than one encoded word for sure",
		"日本語のテキストはとても長い件名になることがあります。日本語のテキストはとても長い件名になることがあります。",
		"emoji 😀😃😄😁😆😅😂🤣🥲☺️😊😇🙂🙃😉😌😍🥰😘😗😙😚😋😛😝😜🤪🤨🧐🤓😎🥸🤩🥳",
		"looks like =?UTF-8?B?Zm9v?= an encoded word",
		"ctl\tis fine but \x01 is not",
	};
	for (size_t i = 0; i < sizeof inputs / sizeof inputs[0]; i++) {
		for (size_t first = 0; first <= 90; first++) {
			const char *why;
			char *enc = mime_encode_header(inputs[i], first, NULL);
			cr_assert_not_null(enc);
			size_t lim = first > 78 ? first : 78;
			cr_expect(max_line(enc, first) <= lim,
			    "input %zu first %zu: line got %zu, want <= %zu\n%s",
			    i, first, max_line(enc, first), lim, enc);
			char *dec = ew_decode(enc, &why);
			cr_expect_not_null(dec, "input %zu: decoding \"%s\": %s", i, enc, why);
			if (dec != NULL)
				cr_expect_str_eq(dec, inputs[i], "input %zu: got \"%s\", want \"%s\"",
				    i, dec, inputs[i]);
			free(dec);
			free(enc);
		}
	}
}

Test(mime, encode_header_ascii)
{
	static const char *const inputs[] = {
		"",
		"Your order has shipped",
		"A rather long ASCII subject line that will certainly need folding because it goes on and on and on past seventy-eight characters",
	};
	for (size_t i = 0; i < sizeof inputs / sizeof inputs[0]; i++) {
		char *enc = mime_encode_header(inputs[i], 9, NULL);
		cr_assert_not_null(enc);
		cr_expect(strstr(enc, "=?") == NULL, "ASCII input %zu got encoded: %s", i, enc);
		cr_expect(max_line(enc, 9) <= 78, "input %zu: line got %zu, want <= 78",
		    i, max_line(enc, 9));
		char *u = unfold(enc);
		cr_expect_str_eq(u, inputs[i], "input %zu: unfolded got \"%s\", want \"%s\"",
		    i, u, inputs[i]);
		free(u);
		free(enc);
	}
	/* an unbreakable 2000-char word cannot be folded: encoded instead */
	char *huge = malloc(2001);
	cr_assert_not_null(huge);
	memset(huge, 'x', 2000);
	huge[2000] = '\0';
	const char *why;
	char *enc = mime_encode_header(huge, 9, NULL);
	cr_assert_not_null(enc);
	cr_expect(max_line(enc, 9) <= 78, "huge word: line got %zu, want <= 78", max_line(enc, 9));
	char *dec = ew_decode(enc, &why);
	cr_expect_not_null(dec, "huge word: %s", why);
	if (dec)
		cr_expect(strcmp(dec, huge) == 0, "huge word: round trip differs");
	free(dec);
	free(enc);
	free(huge);

	/*
	 * found by tests/fuzz/fuzz_mime: an 846-char word after a 153-char
	 * header name went out plain on a 999-octet line; blanks count too
	 */
	static const struct { size_t word, blanks, col; } longs[] = {
		{ 846, 0, 153 }, { 900, 0, 202 }, { 10, 1500, 9 }, { 1, 950, 9 },
	};
	for (size_t i = 0; i < sizeof longs / sizeof longs[0]; i++) {
		size_t n = 2 + longs[i].blanks + longs[i].word;
		char *in = malloc(n + 1);
		cr_assert_not_null(in);
		memset(in, 'y', n);
		memset(in + 2, ' ', longs[i].blanks);
		in[n] = '\0';
		if (longs[i].blanks == 0)
			in[1] = 'y';
		enc = mime_encode_header(in, longs[i].col, NULL);
		cr_assert_not_null(enc);
		cr_expect(max_line(enc, longs[i].col) <= 998, "case %zu: line got %zu, want <= 998",
		    i, max_line(enc, longs[i].col));
		free(enc);
		free(in);
	}
}

Test(mime, format_addr_table)
{
	static const struct {
		const char *name, *email, *want;
	} cases[] = {
		{ NULL, "a@example.com", "a@example.com" },
		{ "", "a@example.com", "a@example.com" },
		{ "John Smith", "js@example.com", "John Smith <js@example.com>" },
		{ "Smith, John", "js@example.com", "\"Smith, John\" <js@example.com>" },
		{ "John Q. Public", "jq@example.com", "\"John Q. Public\" <jq@example.com>" },
		{ "say \"hi\" \\o/", "x@example.com", "\"say \\\"hi\\\" \\\\o/\" <x@example.com>" },
		{ "a;b", "x@example.com", "\"a;b\" <x@example.com>" },
		{ "(paren)", "x@example.com", "\"(paren)\" <x@example.com>" },
		{ "<angle>", "x@example.com", "\"<angle>\" <x@example.com>" },
		{ " padded", "x@example.com", "\" padded\" <x@example.com>" },
		{ "J\xc3\xb6rg", "j@example.com", "=?UTF-8?B?SsO2cmc=?= <j@example.com>" },
		{ "Zoë Anderson-Smith", "z@example.com", "=?UTF-8?Q?Zo=C3=AB_Anderson-Smith?= <z@example.com>" },
		{ "张三", "z@example.com", "=?UTF-8?B?5byg5LiJ?= <z@example.com>" },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct mime_addr a = { cases[i].name, cases[i].email };
		size_t olen;
		char *got = mime_format_addr(&a, &olen);
		cr_assert_not_null(got);
		cr_expect_str_eq(got, cases[i].want, "addr %zu: got '%s', want '%s'", i, got,
		    cases[i].want);
		cr_expect(olen == strlen(got), "addr %zu: len got %zu, want %zu", i, olen, strlen(got));
		free(got);
	}
}

Test(mime, date_table)
{
	static const struct {
		int64_t t;
		const char *want;
	} cases[] = {
		{ 0, "Thu, 01 Jan 1970 00:00:00 +0000" },
		{ 951782400, "Tue, 29 Feb 2000 00:00:00 +0000" },
		{ 1795449480, "Mon, 23 Nov 2026 15:58:00 +0000" },
		{ 1796083199, "Mon, 30 Nov 2026 23:59:59 +0000" },
		{ 253402300799, "Fri, 31 Dec 9999 23:59:59 +0000" },
		{ 4102444800, "Fri, 01 Jan 2100 00:00:00 +0000" },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char buf[64];
		mime_date(cases[i].t, buf, sizeof buf);
		cr_expect_str_eq(buf, cases[i].want, "date %lld: got \"%s\", want \"%s\"",
		    (long long)cases[i].t, buf, cases[i].want);
	}
}

/* ---- mime_build ---- */

static const struct mime_addr to_one[] = { { "Recipient", "rcpt@example.org" } };

static char *
build(const struct mime_message *m, size_t *len)
{
	char *out = NULL;
	int rc = mime_build(m, &out, len);

	cr_assert(rc == 0, "mime_build: got %d, want 0", rc);
	cr_assert_not_null(out);
	cr_assert(out[*len] == '\0', "output not NUL-terminated");
	cr_assert(strlen(out) == *len, "strlen got %zu, want %zu", strlen(out), *len);
	return out;
}

static struct mime_message
base_message(void)
{
	struct mime_message m;

	memset(&m, 0, sizeof m);
	m.from.name = "Sender";
	m.from.email = "sender@example.com";
	m.to = to_one;
	m.nto = 1;
	m.subject = "Hello";
	m.text = "Hello world\n";
	m.date_s = 1795449480;
	m.message_id = "<abc123@mail.example.com>";
	m.boundary_seed = 0x0123456789abcdefULL;
	return m;
}

Test(mime, build_invalid)
{
	static const struct mime_header bad_hdrs[] = { { "Subject", "again" } };
	static const struct mime_header crlf_hdrs[] = { { "X-Ok", "a\r\nBcc: x@y" } };
	static const struct mime_header colon_hdrs[] = { { "X:Bad", "v" } };
	for (int i = 0; i < 7; i++) {
		struct mime_message m = base_message();
		const char *what = "";
		switch (i) {
		case 0: m.from.email = NULL; what = "no from"; break;
		case 1: m.message_id = NULL; what = "no message id"; break;
		case 2: m.text = NULL; what = "no body"; break;
		case 3: m.headers = bad_hdrs; m.nheaders = 1; what = "reserved header"; break;
		case 4: m.headers = crlf_hdrs; m.nheaders = 1; what = "CRLF in value"; break;
		case 5: m.headers = colon_hdrs; m.nheaders = 1; what = "colon in name"; break;
		case 6: m.subject = "a\nb"; what = "LF in subject"; break;
		}
		char *out = (char *)1;
		size_t len;
		int rc = mime_build(&m, &out, &len);
		cr_expect(rc == MIME_ERR_INVALID, "%s: got %d, want %d", what, rc, MIME_ERR_INVALID);
		cr_expect(out == NULL, "%s: *out got %p, want NULL", what, (void *)out);
	}
}

static const char *
header_value(const char *msg, const char *name, char *buf, size_t bufsz)
{
	size_t nl = strlen(name);
	const char *p = msg;

	while (p && *p && !(p[0] == '\r' && p[1] == '\n')) {
		if (strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
			const char *e = strstr(p, "\r\n");
			snprintf(buf, bufsz, "%.*s", (int)(e - p - nl - 2), p + nl + 2);
			return buf;
		}
		p = strstr(p, "\r\n");
		if (p)
			p += 2;
	}
	return NULL;
}

Test(mime, build_encoding_choice)
{
	char longline[3001];
	memset(longline, 'x', 3000);
	longline[3000] = '\0';
	static const struct {
		const char *name, *text, *want_cte;
	} cases[] = {
		{ "ascii", "Hello,\nyour code is 1234.\n", "7bit" },
		{ "german", "Hallo Herr Müller,\nvielen Dank für Ihre Bestellung. Sie wird morgen versandt.\n", "quoted-printable" },
		{ "dense umlauts", "Grüße aus Köln, schöne Straße\n", "base64" },
		{ "chinese", "验证码：您的登录验证码是 123456。请勿将验证码告诉他人。如非本人操作，请忽略此邮件。\n", "base64" },
		{ "long ascii line", NULL, "quoted-printable" },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct mime_message m = base_message();
		m.text = cases[i].text ? cases[i].text : longline;
		size_t len;
		char *out = build(&m, &len);
		char v[128];
		const char *cte = header_value(out, "Content-Transfer-Encoding", v, sizeof v);
		cr_expect(cte != NULL && strcmp(cte, cases[i].want_cte) == 0,
		    "%s: CTE got %s, want %s", cases[i].name, cte ? cte : "(none)",
		    cases[i].want_cte);
		const char *why = check_lines(out, len, 998);
		cr_expect(why == NULL, "%s: %s", cases[i].name, why);
		free(out);
	}
}

Test(mime, build_header_order)
{
	static const struct mime_addr cc[] = { { NULL, "cc@example.org" } };
	static const struct mime_addr rt[] = { { NULL, "reply@example.com" } };
	static const struct mime_header hdrs[] = { { "X-Campaign", "welcome" } };
	static const char *const order[] = { "Date:", "From:", "To:", "Cc:", "Reply-To:",
		"Subject:", "Message-ID:", "MIME-Version:", "X-Campaign:", "Content-Type:",
		"Content-Transfer-Encoding:" };
	struct mime_message m = base_message();
	m.cc = cc;
	m.ncc = 1;
	m.reply_to = rt;
	m.nreply_to = 1;
	m.headers = hdrs;
	m.nheaders = 1;
	size_t len;
	char *out = build(&m, &len);
	const char *p = out;
	for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
		cr_expect(strncmp(p, order[i], strlen(order[i])) == 0,
		    "header %zu: got \"%.20s\", want \"%s\"", i, p, order[i]);
		p = strstr(p, "\r\n");
		cr_assert_not_null(p);
		p += 2;
	}
	cr_expect(strncmp(p, "\r\n", 2) == 0, "got \"%.20s\" after headers, want blank line", p);
	cr_expect(strstr(out, "\r\n\r\nHello world\r\n") != NULL, "7bit body missing:\n%s", out);
	free(out);
}

Test(mime, build_long_lines_everywhere)
{
	/* many recipients with long names, long extra header, long ASCII html line */
	struct mime_addr to[40];
	char names[40][64];
	static const struct mime_header hdrs[] = {
		{ "X-Long", "word word word word word word word word word word word word word word word word word word word word word" },
		{ "X-Utf8", "Zürich – Genève – 東京 – 北京 – Zürich – Genève – 東京 – 北京 – Zürich – Genève" },
	};
	char *html = malloc(5001);
	cr_assert_not_null(html);
	memset(html, 'h', 5000);
	html[5000] = '\0';
	for (int i = 0; i < 40; i++) {
		snprintf(names[i], sizeof names[i], i % 2 ? "Person Number %d" : "Пользователь %d", i);
		to[i].name = names[i];
		to[i].email = "someone.with.a.long.address@subdomain.example.org";
	}
	struct mime_message m = base_message();
	m.to = to;
	m.nto = 40;
	m.headers = hdrs;
	m.nheaders = 2;
	m.html = html;
	m.subject = zh_subject;
	size_t len;
	char *out = build(&m, &len);
	const char *why = check_lines(out, len, 998);
	cr_expect(why == NULL, "%s", why);
	/* headers stay within 78 where possible */
	const char *end = strstr(out, "\r\n\r\n");
	cr_assert_not_null(end);
	char *hdr = strndup(out, (size_t)(end - out));
	cr_assert_not_null(hdr);
	cr_expect(max_line(hdr, 0) <= 78, "header line got %zu, want <= 78", max_line(hdr, 0));
	free(hdr);
	free(out);
	free(html);
}

Test(mime, build_boundary_avoids_content)
{
	struct mime_message m = base_message();
	m.text = "this text mentions =_txm_0123456789abcdef on purpose\n";
	m.html = "<p>hi</p>";
	size_t len;
	char *out = build(&m, &len);
	char v[256];
	const char *ct = header_value(out, "Content-Type", v, sizeof v);
	cr_assert_not_null(ct);
	cr_expect(strstr(out, "boundary=\"=_txm_0123456789abcdef\"") == NULL,
	    "boundary collides with text:\n%s", out);
	const char *b = strstr(out, "boundary=\"");
	cr_assert_not_null(b);
	char bnd[64];
	snprintf(bnd, sizeof bnd, "--%.22s", b + 10);
	/* the delimiter appears exactly 3 times (2 parts + close) */
	int count = 0;
	for (const char *p = out; (p = strstr(p, bnd)) != NULL; p++)
		count++;
	cr_expect(count == 3, "boundary %s occurs %d times, want 3", bnd, count);
	free(out);
}

/* ---- golden ---- */

static char *
golden_message(size_t *len)
{
	static const struct mime_addr to[] = {
		{ "Zhang San 张三", "zhang@example.cn" },
		{ "Doe, Jane", "jane@example.org" },
	};
	static const struct mime_addr cc[] = { { NULL, "audit@example.com" } };
	static const struct mime_addr rt[] = { { "Support", "support@example.com" } };
	static const struct mime_header hdrs[] = {
		{ "X-Campaign", "Spring sale — 春季" },
		{ "List-Unsubscribe", "<mailto:unsub@example.com>" },
	};
	struct mime_message m;

	memset(&m, 0, sizeof m);
	m.from.name = "Acme Billing";
	m.from.email = "billing@acme.example";
	m.to = to;
	m.nto = 2;
	m.cc = cc;
	m.ncc = 1;
	m.reply_to = rt;
	m.nreply_to = 1;
	m.subject = zh_subject;
	m.text = "您好，\n\n您的登录验证码是 123456，10 分钟内有效。\n\n— Acme\n";
	m.html = "<p>Hello,</p>\n<p>Your code is <b>123456</b>. Caf\xc3\xa9 = coffee.</p>\n";
	m.headers = hdrs;
	m.nheaders = 2;
	m.date_s = 1795449480;
	m.message_id = "<01jd0example@mail.acme.example>";
	m.boundary_seed = 0x5eedf00d12345678ULL;
	return build(&m, len);
}

Test(mime, golden_basic_alternative)
{
	size_t len;
	char *out = golden_message(&len);
	const char *upd = getenv("TXMAIL_UPDATE_GOLDEN");

	if (upd != NULL && strcmp(upd, "1") == 0) {
		FILE *f = fopen(GOLDEN_PATH, "wb");
		cr_assert_not_null(f, "cannot write %s (run from the repo root)", GOLDEN_PATH);
		cr_assert(fwrite(out, 1, len, f) == len);
		cr_assert(fclose(f) == 0);
		free(out);
		return;
	}
	FILE *f = fopen(GOLDEN_PATH, "rb");
	cr_assert_not_null(f, "cannot open %s (tests run from the repo root; "
	    "TXMAIL_UPDATE_GOLDEN=1 creates it)", GOLDEN_PATH);
	char *want = malloc(len + 65536);
	cr_assert_not_null(want);
	size_t wlen = fread(want, 1, len + 65536, f);
	fclose(f);

	size_t i = 0, line = 1, line_start = 0;
	while (i < len && i < wlen && out[i] == want[i]) {
		if (out[i] == '\n') {
			line++;
			line_start = i + 1;
		}
		i++;
	}
	if (i != len || i != wlen) {
		const char *actual = "/tmp/txmail_golden_actual.eml";
		FILE *a = fopen(actual, "wb");
		if (a != NULL) {
			fwrite(out, 1, len, a);
			fclose(a);
		}
		const char *ge = memchr(out + line_start, '\n', len - line_start);
		const char *we = memchr(want + line_start, '\n', wlen - line_start);
		int gl = ge ? (int)(ge - out - (long)line_start) : (int)(len - line_start);
		int wl = we ? (int)(we - want - (long)line_start) : (int)(wlen - line_start);
		cr_expect(0, "golden mismatch at byte %zu (line %zu); lengths got %zu, want %zu\n"
		    "  got  line: %.*s\n  want line: %.*s\n"
		    "  actual output written to %s; see: diff %s %s\n"
		    "  (if the change is intended: TXMAIL_UPDATE_GOLDEN=1 and inspect)",
		    i, line, len, wlen, gl, out + line_start, wl, want + line_start,
		    actual, GOLDEN_PATH, actual);
	}
	free(want);
	free(out);
}

/* ---- interoperability through Python's email package ---- */

static void
esc_append(char *dst, size_t cap, const char *key, const char *v)
{
	size_t n = strlen(dst);

	n += (size_t)snprintf(dst + n, cap - n, "%s: ", key);
	for (; *v && n + 3 < cap; v++) {
		if (*v == '\\') {
			dst[n++] = '\\';
			dst[n++] = '\\';
		} else if (*v == '\n') {
			dst[n++] = '\\';
			dst[n++] = 'n';
		} else {
			dst[n++] = *v;
		}
	}
	dst[n++] = '\n';
	dst[n] = '\0';
}

static char *
run_script(const char *script, const char *msg, size_t len)
{
	char path[] = "/tmp/txmail_mime_XXXXXX";
	int fd = mkstemp(path);
	cr_assert(fd >= 0, "mkstemp failed");
	cr_assert(write(fd, msg, len) == (ssize_t)len);
	close(fd);

	char cmd[512];
	snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s %s", script, path);
	FILE *p = popen(cmd, "r");
	cr_assert_not_null(p, "popen failed");
	size_t cap = 1 << 20, n = 0;
	char *buf = malloc(cap);
	cr_assert_not_null(buf);
	size_t r;
	while ((r = fread(buf + n, 1, cap - 1 - n, p)) > 0)
		n += r;
	buf[n] = '\0';
	int st = pclose(p);
	unlink(path);
	cr_assert(st == 0, "python exited with status %d; output:\n%s", st, buf);
	return buf;
}

static char *
run_python(const char *msg, size_t len)
{
	return run_script(ROUNDTRIP_PY, msg, len);
}

static void
expect_python(const char *got, const char *want, const char *what)
{
	if (strcmp(got, want) == 0) {
		cr_expect(1);
		return;
	}
	/* point at the first differing line */
	const char *g = got, *w = want;
	while (*g && *g == *w) {
		g++;
		w++;
	}
	while (g > got && g[-1] != '\n') {
		g--;
		w--;
	}
	const char *ge = strchr(g, '\n'), *we = strchr(w, '\n');
	cr_expect(0, "%s: python sees a different message\n  got:  %.*s\n  want: %.*s",
	    what, ge ? (int)(ge - g) : (int)strlen(g), g,
	    we ? (int)(we - w) : (int)strlen(w), w);
}

Test(mime, python_interop_golden)
{
	size_t len;
	char *out = golden_message(&len);
	char *got = run_python(out, len);
	char want[8192] = "";

	esc_append(want, sizeof want, "subject", zh_subject);
	esc_append(want, sizeof want, "from_name", "Acme Billing");
	esc_append(want, sizeof want, "from_addr", "billing@acme.example");
	esc_append(want, sizeof want, "to",
	    "Zhang San 张三<zhang@example.cn>, Doe, Jane<jane@example.org>");
	esc_append(want, sizeof want, "cc", "<audit@example.com>");
	esc_append(want, sizeof want, "reply_to", "Support<support@example.com>");
	esc_append(want, sizeof want, "content_type", "multipart/alternative");
	esc_append(want, sizeof want, "text", "您好，\n\n您的登录验证码是 123456，10 分钟内有效。\n\n— Acme\n");
	esc_append(want, sizeof want, "html",
	    "<p>Hello,</p>\n<p>Your code is <b>123456</b>. Caf\xc3\xa9 = coffee.</p>\n");
	esc_append(want, sizeof want, "defects", "0");
	esc_append(want, sizeof want, "header X-Campaign", "Spring sale — 春季");
	expect_python(got, want, "golden message");
	free(got);
	free(out);
}

Test(mime, python_interop_table)
{
	static const struct {
		const char *name, *from_name, *subject, *text, *html, *want_text, *want_ct;
	} cases[] = {
		{ "ascii text only", "Plain Name", "Hi", "Hello\nworld\n", NULL, "Hello\nworld\n", "text/plain" },
		{ "quoted name", "Smith, \"JJ\" (Ops)", "Hi", "x", NULL, "x\n", "text/plain" },
		{ "cyrillic html only", "Иван Петров", "Привет, мир! Это длинная тема письма для проверки переноса строк",
		  NULL, "<p>Привет</p>", NULL, "text/html" },
		{ "emoji subject", "😀 Smiley", "Sale 🎉🎉🎉 today only — 50% off everything in the store, really",
		  "Grüße\r\nbare CR\rhere\n", NULL, "Grüße\nbare CR\nhere\n", "text/plain" },
		{ "long ascii line", "N", "Long", NULL, NULL, NULL, "text/plain" },
	};
	char *longtext = malloc(4002);
	cr_assert_not_null(longtext);
	memset(longtext, 'y', 4000);
	memcpy(longtext + 4000, "\n", 2);

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct mime_message m = base_message();
		m.from.name = cases[i].from_name;
		m.subject = cases[i].subject;
		m.text = cases[i].text;
		m.html = cases[i].html;
		const char *want_text = cases[i].want_text;
		if (i == 4) {
			m.text = longtext;
			want_text = longtext;
		}
		size_t len;
		char *out = build(&m, &len);
		const char *why = check_lines(out, len, 998);
		cr_expect(why == NULL, "%s: %s", cases[i].name, why);
		char *got = run_python(out, len);
		char *want = malloc(16384);
		cr_assert_not_null(want);
		want[0] = '\0';
		esc_append(want, 16384, "subject", cases[i].subject);
		esc_append(want, 16384, "from_name", cases[i].from_name);
		esc_append(want, 16384, "from_addr", "sender@example.com");
		esc_append(want, 16384, "to", "Recipient<rcpt@example.org>");
		esc_append(want, 16384, "cc", "");
		esc_append(want, 16384, "reply_to", "");
		esc_append(want, 16384, "content_type", cases[i].want_ct);
		esc_append(want, 16384, "text", want_text ? want_text : "");
		esc_append(want, 16384, "html", cases[i].html ? cases[i].html : "");
		esc_append(want, 16384, "defects", "0");
		expect_python(got, want, cases[i].name);
		free(want);
		free(got);
		free(out);
	}
	free(longtext);
}

/* ---- attachments ---- */

static const unsigned char png_bytes[] = {
	0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 0x0d, 'I', 'H', 'D', 'R',
	0, 0, 0, 1, 0, 0, 0, 1, 8, 6, 0, 0, 0, 0x1f, 0x15, 0xc4, 0x89, 0x00, 0xff, 0x80,
};
static const unsigned char pdf_bytes[] = "%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n%%EOF\n";

/* hex_of - lower-case hex of data (malloc'd). */
static char *
hex_of(const unsigned char *data, size_t len)
{
	char *h = malloc(len * 2 + 1);

	cr_assert_not_null(h);
	for (size_t i = 0; i < len; i++) {
		h[2 * i] = "0123456789abcdef"[data[i] >> 4];
		h[2 * i + 1] = "0123456789abcdef"[data[i] & 15];
	}
	h[len * 2] = '\0';
	return h;
}

/* parts_want - what mime_parts.py prints; order[] lists the attachments in walk order. */
static char *
parts_want(const char *structure, const struct mime_attachment *a, size_t n,
    const int *order)
{
	size_t cap = 1 << 20, len = 0;
	char *w = malloc(cap);

	cr_assert_not_null(w);
	len += (size_t)snprintf(w + len, cap - len, "structure: %s\n", structure);
	for (size_t k = 0; k < n; k++) {
		const struct mime_attachment *x = &a[order[k]];
		char *hex = hex_of(x->data, x->len);
		char cid[160] = "";

		if (x->content_id != NULL)
			snprintf(cid, sizeof cid, "<%s>", x->content_id);
		len += (size_t)snprintf(w + len, cap - len, "part: %s|%s|%s|%s|%s\n",
		    x->content_type != NULL ? x->content_type : "application/octet-stream",
		    x->content_id != NULL ? "inline" : "attachment",
		    x->filename, cid, hex);
		free(hex);
	}
	snprintf(w + len, cap - len, "defects: 0\n");
	return w;
}

/* boundaries_distinct - every boundary="..." value differs from the others. */
static int
boundaries_distinct(const char *s, int *count)
{
	char seen[8][64];
	int n = 0;

	for (const char *p = strstr(s, "boundary=\""); p != NULL; p = strstr(p + 1, "boundary=\"")) {
		const char *b = p + 10, *e = strchr(b, '"');

		if (e == NULL || e - b >= 64 || n >= 8)
			return 0;
		memcpy(seen[n], b, (size_t)(e - b));
		seen[n][e - b] = '\0';
		for (int k = 0; k < n; k++)
			if (strcmp(seen[k], seen[n]) == 0)
				return 0;
		n++;
	}
	*count = n;
	return 1;
}

Test(mime, attachments_structure_table)
{
	static const struct mime_attachment pdf = { "报告 2026.pdf", "application/pdf",
		pdf_bytes, sizeof pdf_bytes - 1, NULL };
	static const struct mime_attachment png = { "logo.png", "image/png",
		png_bytes, sizeof png_bytes, "logo@acme" };
	static const struct mime_attachment raw = { "data.bin", NULL,
		png_bytes, 7, NULL };
	const struct mime_attachment list_all[] = { pdf, png };
	const struct mime_attachment list_png[] = { png };
	const struct mime_attachment list_two[] = { raw, pdf };
	static const int ord01[] = { 0, 1, 0 }, ord10[] = { 1, 0, 0 }, ord0[] = { 0, 0 };
	const struct {
		const char *name, *text, *html;
		const struct mime_attachment *a;
		size_t n;
		const int *order;       /* attachments in walk order, then a 0 */
		const char *structure;
		int boundaries;
	} cases[] = {
		{ "text + attachment", "Hi\n", NULL, &pdf, 1, ord0,
		  "multipart/mixed(text/plain,application/pdf)", 1 },
		{ "html + inline", NULL, "<img src=\"cid:logo@acme\">", list_png, 1, ord0,
		  "multipart/related(text/html,image/png)", 1 },
		{ "alternative + inline + attachment", "Hi\n", "<img src=\"cid:logo@acme\">", list_all, 2, ord10,
		  "multipart/mixed(multipart/alternative(text/plain,multipart/related(text/html,image/png)),application/pdf)", 3 },
		{ "alternative + attachments", "Hi\n", "<p>Hi</p>", list_two, 2, ord01,
		  "multipart/mixed(multipart/alternative(text/plain,text/html),application/octet-stream,application/pdf)", 2 },
		{ "inline without html goes to mixed", "Hi\n", NULL, list_png, 1, ord0,
		  "multipart/mixed(text/plain,image/png)", 1 },
	};

	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct mime_message m = base_message();
		size_t len;
		char *out, *got, *want;
		const char *why;
		int nb = -1;

		m.text = cases[i].text;
		m.html = cases[i].html;
		m.attachments = cases[i].a;
		m.nattachments = cases[i].n;
		out = build(&m, &len);
		why = check_lines(out, len, 998);
		cr_expect(why == NULL, "%s: %s", cases[i].name, why);
		cr_expect(boundaries_distinct(out, &nb), "%s: boundaries repeat", cases[i].name);
		cr_expect(nb == cases[i].boundaries, "%s: got %d boundaries, want %d",
		    cases[i].name, nb, cases[i].boundaries);
		got = run_script(PARTS_PY, out, len);
		want = parts_want(cases[i].structure, cases[i].a, cases[i].n, cases[i].order);
		expect_python(got, want, cases[i].name);
		/* the same input gives the same bytes */
		{
			size_t len2;
			char *again = build(&m, &len2);
			cr_expect(len2 == len && memcmp(again, out, len) == 0,
			    "%s: output not reproducible", cases[i].name);
			free(again);
		}
		free(want);
		free(got);
		free(out);
	}
}

Test(mime, attachment_filenames_table)
{
	static const char *const names[] = {
		"报告 2026.pdf",
		"report.pdf",
		"with \"quotes\" and spaces; a=b.txt",
		"Ünïcödé-naïve café.txt",
		/* long non-ASCII: RFC 2231 continuations */
		"年度财务报告与审计说明以及附录和补充材料清单年度财务报告与审计说明以及附录和补充材料清单年度财务报告.pdf",
		/* long ASCII: quoted continuations */
		"a-very-long-file-name-that-goes-on-and-on-well-past-the-seventy-eight-column-soft-limit-of-header-lines-and-further-still-to-be-sure.tar.gz",
		"emoji 😀🎉 party.png",
		"%percent*star'apos.txt",
	};
	unsigned char data[3000];

	for (size_t k = 0; k < sizeof data; k++)
		data[k] = (unsigned char)((k * 131u + 7u) ^ (k >> 3));
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
		struct mime_attachment a = { names[i], "application/octet-stream",
			data, i * 397 % sizeof data, NULL };
		static const int ord[] = { 0, 0 };
		struct mime_message m = base_message();
		size_t len;
		char *out, *got, *want;
		const char *why;

		m.attachments = &a;
		m.nattachments = 1;
		out = build(&m, &len);
		/* every line, header or base64, stays within 78 here */
		why = check_lines(out, len, 78);
		cr_expect(why == NULL, "%s: %s", names[i], why);
		got = run_script(PARTS_PY, out, len);
		want = parts_want("multipart/mixed(text/plain,application/octet-stream)", &a, 1, ord);
		expect_python(got, want, names[i]);
		free(want);
		free(got);
		free(out);
	}
}

Test(mime, attachment_rfc2231_form)
{
	struct mime_attachment a = { "报告 2026.pdf", "application/pdf", pdf_bytes, 4, NULL };
	struct mime_message m = base_message();
	size_t len;
	char *out;

	m.attachments = &a;
	m.nattachments = 1;
	out = build(&m, &len);
	cr_expect(strstr(out, "Content-Disposition: attachment;\r\n filename*=utf-8''"
	    "%E6%8A%A5%E5%91%8A%202026.pdf\r\n") != NULL,
	    "got no RFC 2231 filename in:\n%s", out);
	cr_expect(strstr(out, "Content-Type: application/pdf;\r\n name*=utf-8''"
	    "%E6%8A%A5%E5%91%8A%202026.pdf\r\n") != NULL,
	    "got no RFC 2231 name in:\n%s", out);
	free(out);
	a.filename = "plain.pdf";
	out = build(&m, &len);
	cr_expect(strstr(out, "Content-Disposition: attachment;\r\n filename=\"plain.pdf\"\r\n") != NULL,
	    "got no quoted filename in:\n%s", out);
	free(out);
}

Test(mime, attachment_base64_lines)
{
	static unsigned char big[100000];
	struct mime_attachment a = { "big.bin", NULL, big, sizeof big, NULL };
	struct mime_message m = base_message();
	size_t len, n76 = 0;
	char *out, *body;

	for (size_t k = 0; k < sizeof big; k++)
		big[k] = (unsigned char)(k * 2654435761u >> 13);
	m.attachments = &a;
	m.nattachments = 1;
	out = build(&m, &len);
	cr_expect(check_lines(out, len, 78) == NULL, "got %s, want lines within 78",
	    check_lines(out, len, 78));
	body = strstr(out, "Content-Disposition: attachment;");
	cr_assert_not_null(body);
	body = strstr(body, "\r\n\r\n");
	cr_assert_not_null(body);
	for (char *p = body + 4; *p != '\0' && *p != '-';) {
		char *e = strstr(p, "\r\n");
		cr_assert_not_null(e);
		if (e - p == 76)
			n76++;
		else
			cr_expect(e - p < 76 && e[2] == '-', "got a base64 line of %d, want 76",
			    (int)(e - p));
		p = e + 2;
	}
	cr_expect(n76 == sizeof big / 57, "got %zu full lines, want %zu", n76, sizeof big / 57);
	free(out);
}

Test(mime, attachment_invalid)
{
	static const struct mime_attachment bad[] = {
		{ "a\r\nBcc: x@y.z.txt", NULL, pdf_bytes, 3, NULL },
		{ "", NULL, pdf_bytes, 3, NULL },
		{ NULL, NULL, pdf_bytes, 3, NULL },
		{ "a.txt", "text/plain\r\nBcc: x@y.z", pdf_bytes, 3, NULL },
		{ "a.txt", "text/plain; charset=utf-8", pdf_bytes, 3, NULL },
		{ "a.txt", "textplain", pdf_bytes, 3, NULL },
		{ "a.txt", NULL, pdf_bytes, 3, "x>\r\nBcc: y" },
		{ "a.txt", NULL, pdf_bytes, 3, "" },
		{ "a.txt", NULL, NULL, 3, NULL },
	};

	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		struct mime_message m = base_message();
		char *out = NULL;
		size_t len = 0;
		int rc;

		m.attachments = &bad[i];
		m.nattachments = 1;
		rc = mime_build(&m, &out, &len);
		cr_expect(rc == MIME_ERR_INVALID, "case %zu: got %d, want MIME_ERR_INVALID", i, rc);
		cr_expect_null(out, "case %zu: output on error", i);
		free(out);
	}
}

static char *
golden_attach_message(size_t *len)
{
	static const struct mime_attachment att[] = {
		{ "报告 2026.pdf", "application/pdf", pdf_bytes, sizeof pdf_bytes - 1, NULL },
		{ "logo.png", "image/png", png_bytes, sizeof png_bytes, "logo@acme.example" },
	};
	static const struct mime_addr to[] = { { "Zhang San 张三", "zhang@example.cn" } };
	struct mime_message m;

	memset(&m, 0, sizeof m);
	m.from.name = "Acme Billing";
	m.from.email = "billing@acme.example";
	m.to = to;
	m.nto = 1;
	m.subject = "您的账单 — invoice 2026-11";
	m.text = "Your invoice is attached.\n";
	m.html = "<p><img src=\"cid:logo@acme.example\" alt=\"Acme\"></p>\n<p>Your invoice is attached.</p>\n";
	m.attachments = att;
	m.nattachments = 2;
	m.date_s = 1795449480;
	m.message_id = "<01jd0attach@mail.acme.example>";
	m.boundary_seed = 0x5eedf00d12345678ULL;
	return build(&m, len);
}

Test(mime, golden_attachments_inline)
{
	size_t len, wlen;
	char *out = golden_attach_message(&len);
	const char *upd = getenv("TXMAIL_UPDATE_GOLDEN");
	FILE *f;
	char *want;

	if (upd != NULL && strcmp(upd, "1") == 0) {
		f = fopen(GOLDEN_ATTACH_PATH, "wb");
		cr_assert_not_null(f, "cannot write %s (run from the repo root)", GOLDEN_ATTACH_PATH);
		cr_assert(fwrite(out, 1, len, f) == len);
		cr_assert(fclose(f) == 0);
		free(out);
		return;
	}
	f = fopen(GOLDEN_ATTACH_PATH, "rb");
	cr_assert_not_null(f, "cannot open %s (tests run from the repo root; "
	    "TXMAIL_UPDATE_GOLDEN=1 creates it)", GOLDEN_ATTACH_PATH);
	want = malloc(len + 65536);
	cr_assert_not_null(want);
	wlen = fread(want, 1, len + 65536, f);
	fclose(f);
	if (wlen != len || memcmp(want, out, len) != 0) {
		size_t i = 0;
		while (i < len && i < wlen && out[i] == want[i])
			i++;
		f = fopen("/tmp/txmail_golden_attach_actual.eml", "wb");
		if (f != NULL) {
			fwrite(out, 1, len, f);
			fclose(f);
		}
		cr_expect(0, "golden mismatch at byte %zu; lengths got %zu, want %zu; "
		    "see: diff %s /tmp/txmail_golden_attach_actual.eml", i, len, wlen,
		    GOLDEN_ATTACH_PATH);
	}
	free(want);
	free(out);
}

Test(mime, python_interop_golden_attachments)
{
	static const struct mime_attachment att[] = {
		{ "logo.png", "image/png", png_bytes, sizeof png_bytes, "logo@acme.example" },
		{ "报告 2026.pdf", "application/pdf", pdf_bytes, sizeof pdf_bytes - 1, NULL },
	};
	static const int ord[] = { 0, 1, 0 };
	size_t len;
	char *out = golden_attach_message(&len);
	char *got = run_script(PARTS_PY, out, len);
	char *want = parts_want("multipart/mixed(multipart/alternative(text/plain,"
	    "multipart/related(text/html,image/png)),application/pdf)", att, 2, ord);

	expect_python(got, want, "golden attachments");
	cr_expect(check_lines(out, len, 998) == NULL, "got %s", check_lines(out, len, 998));
	free(want);
	free(got);
	got = run_python(out, len);
	cr_expect(strstr(got, "subject: 您的账单 — invoice 2026-11\n") != NULL, "got %s", got);
	cr_expect(strstr(got, "defects: 0\n") != NULL, "got %s", got);
	free(got);
	free(out);
}
