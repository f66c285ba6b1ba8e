/*
 * fuzz_mime.c - libFuzzer target for the MIME builder and its encoders
 * (smtp/mime.c): what we build, a reader reads back identically.
 *
 * The input is cut into fields (subject, display name, text, html,
 * attachment file name, attachment bytes), each a 2-byte big-endian length
 * then that many bytes; the rest of the input is the attachment. Checked:
 * - mime_build: every line of the message is CRLF-terminated (no bare CR or
 *   LF) and at most 998 octets, the message is NUL-free, and the Subject
 *   header unfolds and decodes back to the subject;
 * - mime_base64 (wrapped and not) decodes with mime_base64_decode to the
 *   same bytes; wrapped lines are at most 76 characters;
 * - mime_qp decodes (decoder below) to the CRLF-normalised input, lines at
 *   most 76 characters;
 * - mime_encode_header: unfolded and RFC 2047-decoded (decoder below) it is
 *   the input, and no line goes over 998 octets.
 * The decoders here are deliberately independent of mime.c.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../smtp/mime.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_LINE_MAX 998

struct cursor {
	const uint8_t *p;
	size_t n;
};

/* take - the next length-prefixed field as a malloc'd C string, cut at a NUL */
static char *
take(struct cursor *c)
{
	size_t len = 0;
	char *s;

	if (c->n >= 2) {
		len = (size_t)c->p[0] << 8 | c->p[1];
		c->p += 2;
		c->n -= 2;
	} else {
		c->p += c->n;
		c->n = 0;
	}
	if (len > c->n)
		len = c->n;
	s = malloc(len + 1);
	if (s == NULL)
		abort();
	memcpy(s, c->p, len);
	s[len] = '\0';
	c->p += len;
	c->n -= len;
	return s;
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

/* lines_ok - CRLF line ends only, each line at most max octets (first line gets lead) */
static int
lines_ok(const char *s, size_t len, size_t max, size_t lead, int need_final_crlf)
{
	size_t col = lead;

	for (size_t i = 0; i < len; i++) {
		if (s[i] == '\r') {
			if (i + 1 >= len || s[i + 1] != '\n')
				return 0;
			i++;
			col = 0;
			continue;
		}
		if (s[i] == '\n' || s[i] == '\0')
			return 0;
		if (++col > max)
			return 0;
	}
	return !need_final_crlf || len == 0 || (len >= 2 && s[len - 2] == '\r' && s[len - 1] == '\n');
}

/* qp_decode - RFC 2045 6.7 decoder: "=\r\n" soft break, "=XX" an octet */
static char *
qp_decode(const char *s, size_t len, size_t *out_len)
{
	char *o = malloc(len + 1);
	size_t k = 0;

	if (o == NULL)
		abort();
	for (size_t i = 0; i < len; i++) {
		if (s[i] != '=') {
			o[k++] = s[i];
			continue;
		}
		if (i + 2 < len && s[i + 1] == '\r' && s[i + 2] == '\n') {
			i += 2;
			continue;
		}
		if (i + 2 >= len || hexval(s[i + 1]) < 0 || hexval(s[i + 2]) < 0)
			abort();   /* the encoder wrote a broken escape */
		o[k++] = (char)(hexval(s[i + 1]) << 4 | hexval(s[i + 2]));
		i += 2;
	}
	o[k] = '\0';
	*out_len = k;
	return o;
}

/*
 * header_decode - unfold (drop CRLF before a blank) and decode RFC 2047
 * words; blanks between adjacent encoded words are dropped (RFC 2047 6.2).
 * Text without "=?" is returned unfolded as is. NULL when malformed.
 */
static char *
header_decode(const char *s, size_t len, size_t *out_len)
{
	char *u = malloc(len + 1), *o = NULL;
	size_t ul = 0, k = 0, i = 0;

	if (u == NULL)
		abort();
	for (size_t j = 0; j < len; j++) {
		if (s[j] == '\r' && j + 2 < len && s[j + 1] == '\n' &&
		    (s[j + 2] == ' ' || s[j + 2] == '\t')) {
			j++;
			continue;
		}
		u[ul++] = s[j];
	}
	u[ul] = '\0';
	if (strstr(u, "=?") == NULL) {
		*out_len = ul;
		return u;
	}
	o = malloc(ul + 1);
	if (o == NULL)
		abort();
	while (i < ul) {
		const char *w, *e;
		int b;

		while (i < ul && (u[i] == ' ' || u[i] == '\t'))
			i++;
		if (i == ul)
			break;
		if (ul - i < 12 || (strncmp(u + i, "=?UTF-8?B?", 10) != 0 &&
		    strncmp(u + i, "=?UTF-8?Q?", 10) != 0))
			goto bad;
		b = u[i + 8] == 'B';
		w = u + i + 10;
		e = strstr(w, "?=");
		if (e == NULL)
			goto bad;
		if (b) {
			unsigned char *d = NULL;
			size_t dl = 0;

			if (mime_base64_decode(w, (size_t)(e - w), &d, &dl) != 0)
				goto bad;
			memcpy(o + k, d, dl);
			k += dl;
			free(d);
		} else {
			for (const char *p = w; p < e; p++) {
				if (*p == '_') {
					o[k++] = ' ';
				} else if (*p == '=') {
					if (e - p < 3 || hexval(p[1]) < 0 || hexval(p[2]) < 0)
						goto bad;
					o[k++] = (char)(hexval(p[1]) << 4 | hexval(p[2]));
					p += 2;
				} else if (*p == ' ' || *p == '?') {
					goto bad;
				} else {
					o[k++] = *p;
				}
			}
		}
		if ((size_t)(e - w) + 12 > 75)
			goto bad;   /* RFC 2047 2: an encoded word is at most 75 chars */
		i = (size_t)(e + 2 - u);
	}
	free(u);
	o[k] = '\0';
	*out_len = k;
	return o;
bad:
	free(u);
	free(o);
	return NULL;
}

static void
check_base64(const uint8_t *d, size_t n, int wrap)
{
	size_t el = 0, dl = 0;
	unsigned char *dec = NULL;
	char *enc = mime_base64(d, n, wrap, &el);

	if (enc == NULL)
		abort();
	if (strlen(enc) != el || !lines_ok(enc, el, wrap ? 76 : SIZE_MAX, 0, 0))
		abort();
	if (!wrap && memchr(enc, '\r', el) != NULL)
		abort();
	if (mime_base64_decode(enc, el, &dec, &dl) != 0)
		abort();
	if (dl != n || (n > 0 && memcmp(dec, d, n) != 0))
		abort();
	free(dec);
	free(enc);
}

/* crlf - the input with CR, LF and CRLF all made CRLF (what mime.c feeds mime_qp) */
static char *
crlf(const char *s, size_t n, size_t *out_len)
{
	char *o = malloc(2 * n + 1);
	size_t k = 0;

	if (o == NULL)
		abort();
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '\r' || s[i] == '\n') {
			if (s[i] == '\r' && i + 1 < n && s[i + 1] == '\n')
				i++;
			o[k++] = '\r';
			o[k++] = '\n';
		} else {
			o[k++] = s[i];
		}
	}
	o[k] = '\0';
	*out_len = k;
	return o;
}

static void
check_qp(const char *s, size_t n)
{
	size_t nl = 0, ql = 0, dl = 0;
	char *norm = crlf(s, n, &nl);
	char *qp = mime_qp(norm, nl, &ql);
	char *dec;

	if (qp == NULL)
		abort();
	if (strlen(qp) != ql || !lines_ok(qp, ql, 76, 0, 0))
		abort();
	for (size_t i = 0; i < ql; i++) {
		unsigned char c = (unsigned char)qp[i];
		if (c > 0x7e || (c < 0x20 && c != '\r' && c != '\n' && c != '\t'))
			abort();   /* qp output is 7-bit printable */
		if ((c == ' ' || c == '\t') && (i + 1 == ql || qp[i + 1] == '\r'))
			abort();   /* RFC 2045 6.7(3): no trailing blanks */
	}
	dec = qp_decode(qp, ql, &dl);
	if (dl != nl || memcmp(dec, norm, nl) != 0)
		abort();
	free(dec);
	free(qp);
	free(norm);
}

static void
check_header(const char *s, size_t first_len)
{
	size_t el = 0, dl = 0, n = strlen(s);
	char *enc = mime_encode_header(s, first_len, &el);
	char *dec;

	if (enc == NULL)
		abort();
	if (strlen(enc) != el || !lines_ok(enc, el, FUZZ_LINE_MAX, first_len, 0))
		abort();
	dec = header_decode(enc, el, &dl);
	if (dec == NULL || dl != n || memcmp(dec, s, n) != 0)
		abort();
	free(dec);
	free(enc);
}

/* check_subject - the Subject field of the built message decodes to subj */
static void
check_subject(const char *msg, size_t len, const char *subj)
{
	const char *hdr_end = strstr(msg, "\r\n\r\n"), *p, *e;
	char *dec;
	size_t dl = 0;

	if (hdr_end == NULL)
		abort();
	p = strstr(msg, "\r\nSubject: ");
	if (subj[0] == '\0') {
		if (p != NULL && p < hdr_end)
			abort();
		return;
	}
	if (p == NULL || p > hdr_end)
		abort();
	p += 11;
	e = p;
	while (e < msg + len) {
		e = strstr(e, "\r\n");
		if (e == NULL)
			abort();
		if (e[2] != ' ' && e[2] != '\t')
			break;
		e += 2;
	}
	dec = header_decode(p, (size_t)(e - p), &dl);
	if (dec == NULL || dl != strlen(subj) || memcmp(dec, subj, dl) != 0)
		abort();
	free(dec);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct cursor c = { data, size };
	char *subject, *name, *text, *html, *fname, *msg = NULL;
	const uint8_t *att;
	size_t att_len, msg_len = 0;
	struct mime_addr to;
	struct mime_attachment a;
	struct mime_message m;
	int rc;

	if (size > 64 * 1024)
		return 0;
	subject = take(&c);
	name = take(&c);
	text = take(&c);
	html = take(&c);
	fname = take(&c);
	att = c.p;
	att_len = c.n;

	check_base64(att, att_len, 1);
	check_base64(att, att_len, 0);
	check_qp(text, strlen(text));
	check_qp((const char *)att, att_len);
	check_header(subject, 9);
	check_header(subject, size % 200);
	check_header(name, 6);

	memset(&m, 0, sizeof(m));
	memset(&a, 0, sizeof(a));
	m.from.name = name;
	m.from.email = "sender@example.com";
	to.name = name[0] != '\0' ? name : NULL;
	to.email = "rcpt@example.org";
	m.to = &to;
	m.nto = 1;
	m.subject = subject;
	m.text = text;
	m.html = html;
	m.date_s = 1767225600;
	m.message_id = "<fuzz.1@txmail.test>";
	m.boundary_seed = size;
	a.filename = fname;
	a.data = att;
	a.len = att_len;
	if (fname[0] != '\0') {
		m.attachments = &a;
		m.nattachments = 1;
	}
	rc = mime_build(&m, &msg, &msg_len);
	if (rc == 0) {
		if (msg == NULL || strlen(msg) != msg_len)
			abort();
		if (!lines_ok(msg, msg_len, FUZZ_LINE_MAX, 0, 1))
			abort();
		check_subject(msg, msg_len, subject);
	} else if (rc != MIME_ERR_INVALID) {
		abort();
	} else if ((text[0] != '\0' || html[0] != '\0') && strchr(subject, '\r') == NULL &&
	    strchr(subject, '\n') == NULL && fname[0] == '\0' && strlen(name) <= 4096) {
		abort();   /* a valid message was refused */
	}
	free(msg);
	free(subject);
	free(name);
	free(text);
	free(html);
	free(fname);
	return 0;
}
