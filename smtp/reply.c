/*
 * reply.c - pure parser for SMTP server replies (see reply.h).
 *
 * Owns the reading of "ddd-text" / "ddd text" lines into one struct
 * smtp_reply: the code, the RFC 3463 enhanced status code, the joined text
 * and, for EHLO, the extension keywords. It is handed bytes and never reads
 * past them; it does no I/O, never allocates and keeps no state between
 * calls, so a caller may feed it a growing buffer one byte at a time.
 * It must never trust a length from the peer: every line and the line count
 * are capped (SMTP_REPLY_LINE_MAX, SMTP_REPLY_LINES_MAX).
 */
#include "reply.h"

#include <limits.h>
#include <string.h>

static int
is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static char
ascii_upper(char c)
{
	return (c >= 'a' && c <= 'z') ? (char)(c - 'a' + 'A') : c;
}

/* word_eq - does s[0..n) equal the upper-case keyword kw, ignoring case? */
static int
word_eq(const char *s, size_t n, const char *kw)
{
	size_t k = strlen(kw);

	if (n != k)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (ascii_upper(s[i]) != kw[i])
			return 0;
	return 1;
}

/*
 * enhanced_len - length of an RFC 3463 code "c.sss.ddd" at s[0..n) whose
 * class digit is `cls`, followed by a space or the end; 0 when absent.
 */
static size_t
enhanced_len(const char *s, size_t n, char cls)
{
	size_t i = 0, digits;

	if ((cls != '2' && cls != '4' && cls != '5') || n < 5 || s[0] != cls ||
	    s[1] != '.')
		return 0;
	i = 2;
	for (int part = 0; part < 2; part++) {
		digits = 0;
		while (i < n && is_digit(s[i]) && digits < 4) {
			i++;
			digits++;
		}
		if (digits < 1 || digits > 3)
			return 0;
		if (part == 0) {
			if (i >= n || s[i] != '.')
				return 0;
			i++;
		}
	}
	if (i < n && s[i] != ' ' && s[i] != '\t')
		return 0;
	return i;
}

/* text_append - join a line's text onto r->text with "\n", cut at the cap. */
static void
text_append(struct smtp_reply *r, size_t *tlen, const char *s, size_t n)
{
	size_t room;

	if (r->nlines > 1 && *tlen + 1 < sizeof r->text)
		r->text[(*tlen)++] = '\n';
	room = sizeof r->text - 1 - *tlen;
	if (n > room)
		n = room;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		/* control bytes would end up in logs and JSON; keep UTF-8 as is */
		r->text[*tlen + i] = (c < 0x20 && c != '\t') || c == 0x7f ? '?' : (char)c;
	}
	*tlen += n;
	r->text[*tlen] = '\0';
}

/* parse_size - decimal at s[0..n) saturating at ULONG_MAX; 0 if none. */
static unsigned long
parse_size(const char *s, size_t n)
{
	unsigned long v = 0;

	for (size_t i = 0; i < n && is_digit(s[i]); i++) {
		unsigned d = (unsigned)(s[i] - '0');
		if (v > (ULONG_MAX - d) / 10)
			return ULONG_MAX;
		v = v * 10 + d;
	}
	return v;
}

/* ehlo_line - record the EHLO keyword (and its parameters) of one line. */
static void
ehlo_line(struct smtp_reply *r, const char *s, size_t n)
{
	size_t i = 0, kw_end;

	while (i < n && (s[i] == ' ' || s[i] == '\t'))
		i++;
	kw_end = i;
	while (kw_end < n && s[kw_end] != ' ' && s[kw_end] != '\t' && s[kw_end] != '=')
		kw_end++;

	if (word_eq(s + i, kw_end - i, "STARTTLS"))
		r->ext |= SMTP_EXT_STARTTLS;
	else if (word_eq(s + i, kw_end - i, "PIPELINING"))
		r->ext |= SMTP_EXT_PIPELINING;
	else if (word_eq(s + i, kw_end - i, "8BITMIME"))
		r->ext |= SMTP_EXT_8BITMIME;
	else if (word_eq(s + i, kw_end - i, "SMTPUTF8"))
		r->ext |= SMTP_EXT_SMTPUTF8;
	else if (word_eq(s + i, kw_end - i, "ENHANCEDSTATUSCODES"))
		r->ext |= SMTP_EXT_ENHANCEDSTATUSCODES;
	else if (word_eq(s + i, kw_end - i, "SIZE")) {
		size_t p = kw_end;
		while (p < n && (s[p] == ' ' || s[p] == '\t'))
			p++;
		r->ext |= SMTP_EXT_SIZE;
		r->size_limit = parse_size(s + p, n - p);
	} else if (word_eq(s + i, kw_end - i, "AUTH")) {
		/* "AUTH PLAIN LOGIN" or the pre-RFC 4954 "AUTH=PLAIN LOGIN" */
		size_t p = kw_end;
		while (p < n) {
			size_t w;
			while (p < n && (s[p] == ' ' || s[p] == '\t' || s[p] == '='))
				p++;
			w = p;
			while (w < n && s[w] != ' ' && s[w] != '\t')
				w++;
			if (word_eq(s + p, w - p, "PLAIN"))
				r->ext |= SMTP_EXT_AUTH_PLAIN;
			else if (word_eq(s + p, w - p, "LOGIN"))
				r->ext |= SMTP_EXT_AUTH_LOGIN;
			p = w;
		}
	}
}

int
smtp_reply_parse(const char *buf, size_t len, struct smtp_reply *out,
    size_t *consumed)
{
	struct smtp_reply r;
	size_t pos = 0, tlen = 0;

	memset(&r, 0, sizeof r);
	for (;;) {
		size_t avail = len - pos, scan, end, n, el;
		const char *line = buf + pos, *nl, *text;
		int code;
		char sep;

		scan = avail < SMTP_REPLY_LINE_MAX + 2 ? avail : SMTP_REPLY_LINE_MAX + 2;
		nl = memchr(line, '\n', scan);
		if (nl == NULL)
			return avail >= SMTP_REPLY_LINE_MAX + 2 ? SMTP_REPLY_ERR_TOOLONG : 0;
		end = (size_t)(nl - line);
		n = (end > 0 && line[end - 1] == '\r') ? end - 1 : end;
		if (n > SMTP_REPLY_LINE_MAX)
			return SMTP_REPLY_ERR_TOOLONG;
		if (n < 3 || line[0] < '2' || line[0] > '5' || !is_digit(line[1]) ||
		    !is_digit(line[2]))
			return SMTP_REPLY_ERR_SYNTAX;
		code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
		sep = n > 3 ? line[3] : ' ';
		if (sep != ' ' && sep != '-')
			return SMTP_REPLY_ERR_SYNTAX;
		if (r.nlines == 0)
			r.code = code;
		else if (code != r.code)
			return SMTP_REPLY_ERR_SYNTAX;
		if (++r.nlines > SMTP_REPLY_LINES_MAX)
			return SMTP_REPLY_ERR_TOOLONG;

		text = n > 4 ? line + 4 : line + n;
		n = n > 4 ? n - 4 : 0;
		el = enhanced_len(text, n, line[0]);
		if (el > 0) {
			if (r.enhanced[0] == '\0' && el < sizeof r.enhanced) {
				memcpy(r.enhanced, text, el);
				r.enhanced[el] = '\0';
			}
			text += el;
			n -= el;
			while (n > 0 && (*text == ' ' || *text == '\t')) {
				text++;
				n--;
			}
		}
		text_append(&r, &tlen, text, n);
		/* the first EHLO line is the server's greeting, not a keyword */
		if (r.code == 250 && r.nlines > 1)
			ehlo_line(&r, text, n);

		pos += end + 1;
		if (sep == ' ')
			break;
	}
	*out = r;
	*consumed = pos;
	return 1;
}

int
smtp_reply_class(const struct smtp_reply *r)
{
	if (r->code < 200 || r->code > 599)
		return 0;
	return r->code / 100;
}
