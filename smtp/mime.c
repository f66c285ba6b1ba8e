/*
 * mime.c - RFC 5322 / MIME message builder and its encoders (see mime.h).
 *
 * Owns the bytes of every message txmail sends: header order and folding,
 * RFC 2047 encoded words, quoted-printable and base64 bodies, the
 * multipart tree (mixed { alternative { text, related { html, inline
 * parts } }, attachments }), its boundaries and RFC 2231 file names. Pure
 * and reproducible: no clock, no randomness, no I/O; the same input always
 * gives the same bytes (golden tests pin them). It must never emit a bare CR or LF, a line over 998
 * octets, or a boundary that occurs inside a part.
 */
#include "mime.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MIME_LINE_SOFT 78     /* preferred header line length */
#define MIME_WORD_MAX 75      /* RFC 2047 encoded-word cap */
#define MIME_WORD_MIN 24      /* narrowest word: payload 12 fits any character */
#define MIME_ATOM_MAX 900     /* longer unbreakable ASCII runs get encoded */
#define MIME_BODY_LINE 998    /* RFC 5322 2.1.1 */
#define MIME_QP_LINE 76
#define MIME_MAX_ATTACHMENTS 100

/* ---- growable output buffer; remembers out-of-memory, checked once ---- */

struct sbuf {
	char *p;
	size_t len, cap;
	int oom;
};

static void
sb_reserve(struct sbuf *b, size_t n)
{
	size_t need, cap;
	char *p;

	if (b->oom)
		return;
	if (n > SIZE_MAX - b->len - 1) {
		b->oom = 1;
		return;
	}
	need = b->len + n + 1;
	if (need <= b->cap)
		return;
	cap = b->cap ? b->cap : 256;
	while (cap < need)
		cap = cap > SIZE_MAX / 2 ? need : cap * 2;
	p = realloc(b->p, cap);
	if (p == NULL) {
		b->oom = 1;
		return;
	}
	b->p = p;
	b->cap = cap;
}

static void
sb_put(struct sbuf *b, const void *s, size_t n)
{
	sb_reserve(b, n);
	if (b->oom || n == 0)
		return;
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void
sb_puts(struct sbuf *b, const char *s)
{
	sb_put(b, s, strlen(s));
}

static void
sb_putc(struct sbuf *b, char c)
{
	sb_put(b, &c, 1);
}

/* sb_finish - hand the NUL-terminated buffer over, or NULL (and free) on OOM. */
static char *
sb_finish(struct sbuf *b, size_t *out_len)
{
	sb_reserve(b, 0);
	if (b->oom) {
		free(b->p);
		b->p = NULL;
		return NULL;
	}
	b->p[b->len] = '\0';
	if (out_len != NULL)
		*out_len = b->len;
	return b->p;
}

static const char hex_upper[] = "0123456789ABCDEF";

/* ---- base64 ---- */

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* b64_append - base64 of in[0..len); lines of 76 joined by CRLF when wrap. */
static void
b64_append(struct sbuf *b, const unsigned char *in, size_t len, int wrap)
{
	size_t col = 0;

	if (len > (SIZE_MAX / 4) - 2) {
		b->oom = 1;
		return;
	}
	sb_reserve(b, (len + 2) / 3 * 4 + (wrap ? (len / 57 + 1) * 2 : 0));
	for (size_t i = 0; i < len && !b->oom; i += 3) {
		unsigned v = (unsigned)in[i] << 16;
		char q[4];
		size_t rem = len - i;

		if (rem > 1)
			v |= (unsigned)in[i + 1] << 8;
		if (rem > 2)
			v |= in[i + 2];
		q[0] = b64_alphabet[(v >> 18) & 63];
		q[1] = b64_alphabet[(v >> 12) & 63];
		q[2] = rem > 1 ? b64_alphabet[(v >> 6) & 63] : '=';
		q[3] = rem > 2 ? b64_alphabet[v & 63] : '=';
		if (wrap && col == 76) {
			sb_put(b, "\r\n", 2);
			col = 0;
		}
		sb_put(b, q, 4);
		col += 4;
	}
}

char *
mime_base64(const void *in, size_t len, int wrap, size_t *out_len)
{
	struct sbuf b = { 0 };

	b64_append(&b, in, len, wrap);
	return sb_finish(&b, out_len);
}

static int
b64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

int
mime_base64_decode(const char *in, size_t len, unsigned char **out, size_t *out_len)
{
	unsigned char *o = NULL;
	size_t n = 0, pad = 0, q = 0;
	unsigned acc = 0;
	int rc = -1;

	o = malloc(len / 4 * 3 + 3);
	if (o == NULL)
		goto out;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)in[i];
		int v;

		if (c == '\r' || c == '\n')
			continue;
		if (c == '=') {
			/* padding: only in the last two places of a quantum */
			if (q < 2)
				goto out;
			pad++;
			q++;
			if (q == 4) {
				if (pad == 2 && (acc & 0xf) != 0)
					goto out;
				if (pad == 1 && (acc & 0x3) != 0)
					goto out;
				if (pad == 2) {
					o[n++] = (unsigned char)(acc >> 4);
				} else {
					o[n++] = (unsigned char)(acc >> 10);
					o[n++] = (unsigned char)(acc >> 2);
				}
				q = 0;
			}
			continue;
		}
		if (pad > 0)
			goto out;   /* data after padding */
		v = b64_value(c);
		if (v < 0)
			goto out;
		acc = (acc << 6) | (unsigned)v;
		if (++q == 4) {
			o[n++] = (unsigned char)(acc >> 16);
			o[n++] = (unsigned char)(acc >> 8);
			o[n++] = (unsigned char)acc;
			acc = 0;
			q = 0;
		}
	}
	if (q != 0)
		goto out;
	o[n] = '\0';
	*out = o;
	*out_len = n;
	o = NULL;
	rc = 0;
out:
	free(o);
	return rc;
}

/* ---- quoted-printable ---- */

static int
qp_literal(unsigned char c)
{
	return (c >= 33 && c <= 126 && c != '=') || c == ' ' || c == '\t';
}

/* qp_line - encode one line (no line break inside) with soft breaks at 76. */
static void
qp_line(struct sbuf *b, const unsigned char *s, size_t n)
{
	size_t col = 0;

	for (size_t i = 0; i < n && !b->oom; i++) {
		unsigned char c = s[i];
		int last = i + 1 == n;
		size_t tl;
		char tok[3];

		if (qp_literal(c) && !(last && (c == ' ' || c == '\t'))) {
			tok[0] = (char)c;
			tl = 1;
		} else {
			tok[0] = '=';
			tok[1] = hex_upper[c >> 4];
			tok[2] = hex_upper[c & 15];
			tl = 3;
		}
		/* room for a trailing soft-break '=' unless this ends the line */
		if (col + tl > (last ? MIME_QP_LINE : MIME_QP_LINE - 1)) {
			sb_put(b, "=\r\n", 3);
			col = 0;
		}
		sb_put(b, tok, tl);
		col += tl;
	}
}

/* qp_append - CRLF or bare LF in the input are hard breaks (CRLF out). */
static void
qp_append(struct sbuf *b, const char *in, size_t len)
{
	size_t start = 0;

	for (size_t i = 0; i <= len && !b->oom; i++) {
		if (i < len && in[i] != '\n')
			continue;
		size_t end = i;
		if (i < len && end > start && in[end - 1] == '\r')
			end--;
		qp_line(b, (const unsigned char *)in + start, end - start);
		if (i < len)
			sb_put(b, "\r\n", 2);
		start = i + 1;
	}
}

char *
mime_qp(const char *in, size_t len, size_t *out_len)
{
	struct sbuf b = { 0 };

	qp_append(&b, in, len);
	return sb_finish(&b, out_len);
}

/* ---- UTF-8 and header text ---- */

/* utf8_len - bytes of the character at s[0..n): a valid sequence, else 1. */
static size_t
utf8_len(const unsigned char *s, size_t n)
{
	size_t want;

	if (s[0] < 0x80)
		return 1;
	else if ((s[0] & 0xe0) == 0xc0)
		want = 2;
	else if ((s[0] & 0xf0) == 0xe0)
		want = 3;
	else if ((s[0] & 0xf8) == 0xf0)
		want = 4;
	else
		return 1;
	if (want > n)
		return 1;
	for (size_t i = 1; i < want; i++)
		if ((s[i] & 0xc0) != 0x80)
			return 1;
	return want;
}

/* q_safe - may this byte stand for itself in a Q encoded word (RFC 2047 5(3))? */
static int
q_safe(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
	    (c >= '0' && c <= '9') || c == '!' || c == '*' || c == '+' ||
	    c == '-' || c == '/';
}

static size_t
q_cost(unsigned char c)
{
	return (q_safe(c) || c == ' ') ? 1 : 3;
}

/*
 * words_append - in[0..len) as UTF-8 encoded words (B or Q, whichever is
 * shorter overall), separated by a space or by CRLF SP so that lines stay
 * within 78 chars; *col is the current column and is kept up to date.
 */
static void
words_append(struct sbuf *b, const char *in, size_t len, size_t *col)
{
	const unsigned char *s = (const unsigned char *)in;
	size_t qlen = 0, blen = (len + 2) / 3 * 4, i = 0;
	int use_b;

	for (size_t k = 0; k < len; k++)
		qlen += q_cost(s[k]);
	use_b = blen < qlen;

	for (int first = 1; i < len && !b->oom; first = 0) {
		size_t budget, payload, start = i, used = 0;

		if (first && *col + MIME_WORD_MIN <= MIME_LINE_SOFT) {
			budget = MIME_LINE_SOFT - *col;
		} else if (first) {
			/* a long header name: start the text on a continuation line */
			sb_put(b, "\r\n ", 3);
			*col = 1;
			budget = MIME_WORD_MAX;
		} else if (*col + 1 + MIME_WORD_MIN <= MIME_LINE_SOFT) {
			sb_putc(b, ' ');
			(*col)++;
			budget = MIME_LINE_SOFT - *col;
		} else {
			sb_put(b, "\r\n ", 3);
			*col = 1;
			budget = MIME_WORD_MAX;
		}
		if (budget > MIME_WORD_MAX)
			budget = MIME_WORD_MAX;
		payload = budget - 12;   /* "=?UTF-8?B?" + "?=" */
		if (use_b)
			payload = payload / 4 * 3;   /* in input bytes */
		while (i < len) {
			size_t cl = utf8_len(s + i, len - i), cost = 0;
			for (size_t k = 0; k < cl; k++)
				cost += use_b ? 1 : q_cost(s[i + k]);
			if (used + cost > payload && used > 0)
				break;
			used += cost;
			i += cl;
		}
		sb_puts(b, use_b ? "=?UTF-8?B?" : "=?UTF-8?Q?");
		if (use_b) {
			size_t before = b->len;
			b64_append(b, s + start, i - start, 0);
			*col += 12 + (b->oom ? 0 : b->len - before);
		} else {
			size_t w = 0;
			for (size_t k = start; k < i; k++) {
				unsigned char c = s[k];
				if (c == ' ') {
					sb_putc(b, '_');
					w++;
				} else if (q_safe(c)) {
					sb_putc(b, (char)c);
					w++;
				} else {
					char e[3] = { '=', hex_upper[c >> 4], hex_upper[c & 15] };
					sb_put(b, e, 3);
					w += 3;
				}
			}
			*col += 12 + w;
		}
		sb_put(b, "?=", 2);
	}
}

/*
 * plain_ok - may in[0..len) go out as plain ASCII header text starting at
 * column col: printable ASCII and blanks only, nothing that looks like an
 * encoded word, and no token too long to fold. A token is what fold_append
 * moves as one piece (leading blanks, then a word); the first one cannot
 * be folded away from col, so it counts from there.
 */
static int
plain_ok(const char *in, size_t len, size_t col)
{
	size_t run = col;
	int in_word = 0;

	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)in[i];
		if (c == ' ' || c == '\t') {
			if (in_word)
				run = 0;   /* a new token: fold_append may break before it */
			in_word = 0;
		} else {
			if (c < 0x21 || c > 0x7e)
				return 0;
			if (c == '=' && i + 1 < len && in[i + 1] == '?')
				return 0;
			in_word = 1;
		}
		if (++run > MIME_ATOM_MAX)
			return 0;
	}
	return 1;
}

/* fold_append - ASCII text, folded before blanks to keep lines near 78. */
static void
fold_append(struct sbuf *b, const char *in, size_t len, size_t *col)
{
	size_t i = 0;

	while (i < len && !b->oom) {
		size_t j = i;
		while (j < len && (in[j] == ' ' || in[j] == '\t'))
			j++;
		while (j < len && in[j] != ' ' && in[j] != '\t')
			j++;
		/* token in[i..j): leading blanks then a word; fold before it */
		if (i > 0 && *col + (j - i) > MIME_LINE_SOFT &&
		    (in[i] == ' ' || in[i] == '\t')) {
			sb_put(b, "\r\n", 2);
			*col = 0;
		}
		sb_put(b, in + i, j - i);
		*col += j - i;
		i = j;
	}
}

/* text_append - unstructured header text (Subject, extra headers). */
static void
text_append(struct sbuf *b, const char *in, size_t len, size_t *col)
{
	if (plain_ok(in, len, *col))
		fold_append(b, in, len, col);
	else
		words_append(b, in, len, col);
}

char *
mime_encode_header(const char *in, size_t first_len, size_t *out_len)
{
	struct sbuf b = { 0 };
	size_t col = first_len;

	sb_reserve(&b, 0);
	text_append(&b, in, strlen(in), &col);
	return sb_finish(&b, out_len);
}

static int
is_atext(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
	    (c >= '0' && c <= '9') || (c != 0 && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

/* phrase_append - a display name: atoms as is, else quoted, else encoded. */
static void
phrase_append(struct sbuf *b, const char *in, size_t len, size_t *col)
{
	int atoms = len > 0 && in[0] != ' ' && in[len - 1] != ' ';
	size_t qlen = len + 2;

	if (!plain_ok(in, len, *col)) {
		words_append(b, in, len, col);
		return;
	}
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)in[i];
		if (c == '"' || c == '\\')
			qlen++;
		if (c == ' ')
			atoms = atoms && in[i + 1] != ' ';
		else if (!is_atext(c))
			atoms = 0;
	}
	if (atoms) {
		fold_append(b, in, len, col);
		return;
	}
	if (qlen > MIME_ATOM_MAX) {
		words_append(b, in, len, col);
		return;
	}
	sb_putc(b, '"');
	(*col)++;
	for (size_t i = 0; i < len; i++) {
		if (in[i] == '"' || in[i] == '\\') {
			sb_putc(b, '\\');
			(*col)++;
		}
		sb_putc(b, in[i] == '\t' ? ' ' : in[i]);
		(*col)++;
	}
	sb_putc(b, '"');
	(*col)++;
}

/* addr_append - "name <email>" or "email", folding before "<" if needed. */
static void
addr_append(struct sbuf *b, const struct mime_addr *a, size_t *col)
{
	size_t elen = strlen(a->email);

	if (a->name == NULL || a->name[0] == '\0') {
		sb_put(b, a->email, elen);
		*col += elen;
		return;
	}
	phrase_append(b, a->name, strlen(a->name), col);
	if (*col + elen + 3 > MIME_LINE_SOFT) {
		sb_put(b, "\r\n", 2);
		*col = 0;
	}
	sb_put(b, " <", 2);
	sb_put(b, a->email, elen);
	sb_putc(b, '>');
	*col += elen + 3;
}

char *
mime_format_addr(const struct mime_addr *a, size_t *out_len)
{
	struct sbuf b = { 0 };
	size_t col = 0;

	addr_append(&b, a, &col);
	return sb_finish(&b, out_len);
}

/* ---- date ---- */

void
mime_date(int64_t unix_s, char *buf, size_t len)
{
	static const char days[7][4] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
	static const char months[12][4] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
	    "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	time_t t = (time_t)unix_s;
	struct tm tm;

	if (len == 0)
		return;
	if (gmtime_r(&t, &tm) == NULL || tm.tm_wday < 0 || tm.tm_wday > 6 ||
	    tm.tm_mon < 0 || tm.tm_mon > 11) {
		buf[0] = '\0';
		return;
	}
	if (len < sizeof("Mon, 02 Jan 2006 15:04:05 +0000") || tm.tm_year + 1900 < 0 ||
	    tm.tm_year + 1900 > 9999) {
		snprintf(buf, len, "%s, %02d %s %04d %02d:%02d:%02d +0000", days[tm.tm_wday],
		    tm.tm_mday, months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour,
		    tm.tm_min, tm.tm_sec);
		return;
	}
	/* the same text by hand: once per message built, and snprintf is most of its cost */
	{
		int y = tm.tm_year + 1900;
		char *p = buf;

		memcpy(p, days[tm.tm_wday], 3);
		p[3] = ',';
		p[4] = ' ';
		p[5] = (char)('0' + tm.tm_mday / 10);
		p[6] = (char)('0' + tm.tm_mday % 10);
		p[7] = ' ';
		memcpy(p + 8, months[tm.tm_mon], 3);
		p[11] = ' ';
		p[12] = (char)('0' + y / 1000);
		p[13] = (char)('0' + y / 100 % 10);
		p[14] = (char)('0' + y / 10 % 10);
		p[15] = (char)('0' + y % 10);
		p[16] = ' ';
		p[17] = (char)('0' + tm.tm_hour / 10);
		p[18] = (char)('0' + tm.tm_hour % 10);
		p[19] = ':';
		p[20] = (char)('0' + tm.tm_min / 10);
		p[21] = (char)('0' + tm.tm_min % 10);
		p[22] = ':';
		p[23] = (char)('0' + tm.tm_sec / 10);
		p[24] = (char)('0' + tm.tm_sec % 10);
		memcpy(p + 25, " +0000", 7);
	}
}

/* ---- bodies ---- */

/* crlf_normalize - copy of in[0..len) with CRLF, bare CR and bare LF as CRLF. */
static char *
crlf_normalize(const char *in, size_t len, size_t *out_len)
{
	struct sbuf b = { 0 };

	if (len > SIZE_MAX / 2 - 1)
		return NULL;
	sb_reserve(&b, len + len / 16 + 2);
	for (size_t i = 0; i < len && !b.oom; i++) {
		size_t j = i;
		while (j < len && in[j] != '\r' && in[j] != '\n')
			j++;
		sb_put(&b, in + i, j - i);
		if (j == len)
			break;
		sb_put(&b, "\r\n", 2);
		if (in[j] == '\r' && j + 1 < len && in[j + 1] == '\n')
			j++;
		i = j;
	}
	return sb_finish(&b, out_len);
}

/* is_7bit - ASCII without NUL, every line (CRLF-normalised) within 998. */
static int
is_7bit(const char *s, size_t len)
{
	size_t col = 0;

	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == 0 || c > 0x7f)
			return 0;
		if (c == '\r' || c == '\n') {
			col = 0;
			continue;
		}
		if (++col > MIME_BODY_LINE)
			return 0;
	}
	return 1;
}

static int
ends_crlf(const char *s, size_t len)
{
	return len >= 2 && s[len - 2] == '\r' && s[len - 1] == '\n';
}

struct part {
	const char *ctype;    /* "text/plain; charset=utf-8" */
	const char *cte;      /* "7bit", "quoted-printable", "base64" */
	char *body;           /* encoded, CRLF line ends; malloc'd */
	size_t len;
};

/* part_encode - pick the transfer encoding and encode text into p. 0 or MIME_ERR_NOMEM. */
static int
part_encode(struct part *p, const char *ctype, const char *text)
{
	char *norm = NULL, *qp = NULL, *b64 = NULL;
	size_t nlen = 0, qlen = 0, blen = 0;
	struct sbuf b = { 0 };
	int rc = MIME_ERR_NOMEM;

	p->ctype = ctype;
	norm = crlf_normalize(text, strlen(text), &nlen);
	if (norm == NULL)
		goto out;
	if (is_7bit(norm, nlen)) {
		p->cte = "7bit";
		sb_put(&b, norm, nlen);
	} else {
		qp = mime_qp(norm, nlen, &qlen);
		b64 = mime_base64(norm, nlen, 1, &blen);
		if (qp == NULL || b64 == NULL)
			goto out;
		if (blen < qlen) {
			p->cte = "base64";
			sb_put(&b, b64, blen);
		} else {
			p->cte = "quoted-printable";
			sb_put(&b, qp, qlen);
		}
	}
	p->body = sb_finish(&b, &p->len);
	if (p->body == NULL)
		goto out;
	rc = 0;
out:
	free(norm);
	free(qp);
	free(b64);
	return rc;
}

static uint64_t
splitmix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

static int
contains(const char *hay, size_t hlen, const char *needle, size_t nlen)
{
	return memmem(hay, hlen, needle, nlen) != NULL;
}

/* make_boundary - "=_txm_" + 16 hex from the seed, remixed until unused. */
static void
make_boundary(char out[32], uint64_t seed, const struct part *const *parts, size_t nparts)
{
	uint64_t v = seed;

	for (int tries = 0; tries < 64; tries++) {
		int used = 0;
		memcpy(out, "=_txm_", 6);
		for (int i = 0; i < 16; i++)
			out[6 + i] = "0123456789abcdef"[(v >> (60 - 4 * i)) & 15];
		out[22] = '\0';
		for (size_t k = 0; k < nparts; k++)
			used |= contains(parts[k]->body, parts[k]->len, out, 22);
		if (!used)
			return;
		v = splitmix64(v);
	}
}

/* ---- headers ---- */

static int
ascii_casecmp(const char *a, const char *b)
{
	for (;; a++, b++) {
		char x = (*a >= 'A' && *a <= 'Z') ? (char)(*a + 32) : *a;
		char y = (*b >= 'A' && *b <= 'Z') ? (char)(*b + 32) : *b;
		if (x != y || x == '\0')
			return x - y;
	}
}

/* header_name_ok - printable ASCII, no ':', bounded, not one we write ourselves. */
static int
header_name_ok(const char *n)
{
	static const char *const reserved[] = { "Date", "From", "To", "Cc", "Bcc",
	    "Reply-To", "Subject", "Message-ID", "MIME-Version", "Content-Type",
	    "Content-Transfer-Encoding" };
	size_t len = n != NULL ? strlen(n) : 0;

	if (len == 0 || len > 200)
		return 0;
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)n[i] < 0x21 || (unsigned char)n[i] > 0x7e || n[i] == ':')
			return 0;
	for (size_t i = 0; i < sizeof reserved / sizeof reserved[0]; i++)
		if (ascii_casecmp(n, reserved[i]) == 0)
			return 0;
	return 1;
}

/* token_ok - no CR/LF/blank, bounded length (addresses, Message-ID). */
static int
token_ok(const char *s, size_t max)
{
	size_t len = s != NULL ? strlen(s) : 0;

	if (len == 0 || len > max)
		return 0;
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)s[i] <= 0x20 || s[i] == 0x7f)
			return 0;
	return 1;
}

static int
addr_ok(const struct mime_addr *a)
{
	return token_ok(a->email, 512) && (a->name == NULL || strlen(a->name) <= 4096);
}

static int
value_ok(const char *v)
{
	return v != NULL && strchr(v, '\r') == NULL && strchr(v, '\n') == NULL;
}

static void
addr_list_header(struct sbuf *b, const char *name, const struct mime_addr *list,
    size_t n)
{
	size_t col = strlen(name) + 2;

	sb_puts(b, name);
	sb_put(b, ": ", 2);
	for (size_t i = 0; i < n; i++) {
		if (i > 0) {
			/* a short address fits after ", "; else start a new line */
			size_t want = strlen(list[i].email) +
			    (list[i].name != NULL ? strlen(list[i].name) + 3 : 0);
			if (col + 2 + want > MIME_LINE_SOFT) {
				sb_put(b, ",\r\n ", 4);
				col = 1;
			} else {
				sb_put(b, ", ", 2);
				col += 2;
			}
		}
		addr_append(b, &list[i], &col);
	}
	sb_put(b, "\r\n", 2);
}

static void
text_header(struct sbuf *b, const char *name, const char *value)
{
	size_t col = strlen(name) + 2;

	sb_puts(b, name);
	sb_put(b, ": ", 2);
	text_append(b, value, strlen(value), &col);
	sb_put(b, "\r\n", 2);
}

static void
part_headers(struct sbuf *b, const struct part *p)
{
	sb_puts(b, "Content-Type: ");
	sb_puts(b, p->ctype);
	sb_puts(b, "\r\nContent-Transfer-Encoding: ");
	sb_puts(b, p->cte);
	sb_put(b, "\r\n", 2);
}

/* ---- entities: a part's header block, blank line and body ---- */

/* entity_finish - move the buffer into e (body/len); 0 or MIME_ERR_NOMEM. */
static int
entity_finish(struct part *e, struct sbuf *b)
{
	e->body = sb_finish(b, &e->len);
	b->p = NULL;
	return e->body != NULL ? 0 : MIME_ERR_NOMEM;
}

/* leaf_entity - a text part with its headers. */
static int
leaf_entity(struct part *e, const struct part *p)
{
	struct sbuf b = { 0 };

	part_headers(&b, p);
	sb_put(&b, "\r\n", 2);
	sb_put(&b, p->body, p->len);
	return entity_finish(e, &b);
}

/*
 * multipart_entity - "multipart/<sub>" around kids; the boundary comes from
 * seed and is checked against the kids' bytes, nested boundaries included,
 * so levels never share one. Ends with the close delimiter, no CRLF.
 */
static int
multipart_entity(struct part *e, const char *sub, uint64_t seed,
    const struct part *const *kids, size_t n)
{
	struct sbuf b = { 0 };
	char boundary[32];

	make_boundary(boundary, seed, kids, n);
	sb_puts(&b, "Content-Type: multipart/");
	sb_puts(&b, sub);
	if (strcmp(sub, "related") == 0)
		sb_puts(&b, ";\r\n type=\"text/html\"");   /* RFC 2387 3.1 */
	sb_puts(&b, ";\r\n boundary=\"");
	sb_puts(&b, boundary);
	sb_puts(&b, "\"\r\n\r\n");
	for (size_t i = 0; i < n; i++) {
		sb_puts(&b, "--");
		sb_puts(&b, boundary);
		sb_put(&b, "\r\n", 2);
		sb_put(&b, kids[i]->body, kids[i]->len);
		/* this CRLF belongs to the delimiter (RFC 2046 5.1.1) */
		sb_put(&b, "\r\n", 2);
	}
	sb_puts(&b, "--");
	sb_puts(&b, boundary);
	sb_puts(&b, "--");
	return entity_finish(e, &b);
}

/* RFC 2231 attribute-char: a CHAR that is no blank, CTL, '*', ''', '%' or tspecial */
static int
attr_char(unsigned char c)
{
	return c > 0x20 && c < 0x7f && strchr("*'%()<>@,;:\\\"/[]?=", c) == NULL;
}

/* quoted_ok - ASCII printable and blank only: fits a quoted-string. */
static int
quoted_ok(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
			return 0;
	return 1;
}

/*
 * param_append - ";" CRLF SP then pname=value. ASCII: quoted, split into
 * RFC 2231 continuations pname*0="..." when a line would pass 78. Other
 * text: RFC 2231 pname*=utf-8''%XX..., continued as pname*0*=utf-8''...,
 * pname*1*=... without splitting a character.
 */
static void
param_append(struct sbuf *b, const char *pname, const char *value)
{
	const unsigned char *v = (const unsigned char *)value;
	size_t len = strlen(value), plen = strlen(pname), whole = 0;
	int ascii = quoted_ok(value);

	/* length of the single-line form */
	for (size_t i = 0; i < len; i++) {
		if (ascii)
			whole += (v[i] == '"' || v[i] == '\\') ? 2 : 1;
		else
			whole += attr_char(v[i]) ? 1 : 3;
	}
	whole += plen + (ascii ? 3 : 10);   /* name="" or name*=utf-8'' */
	sb_put(b, ";\r\n ", 4);
	if (1 + whole + 1 <= MIME_LINE_SOFT) {
		sb_puts(b, pname);
		if (ascii) {
			sb_put(b, "=\"", 2);
			for (size_t i = 0; i < len; i++) {
				if (v[i] == '"' || v[i] == '\\')
					sb_putc(b, '\\');
				sb_putc(b, (char)v[i]);
			}
			sb_putc(b, '"');
		} else {
			sb_puts(b, "*=utf-8''");
			for (size_t i = 0; i < len; i++) {
				if (attr_char(v[i])) {
					sb_putc(b, (char)v[i]);
				} else {
					char e[3] = { '%', hex_upper[v[i] >> 4], hex_upper[v[i] & 15] };
					sb_put(b, e, 3);
				}
			}
		}
		return;
	}
	for (size_t i = 0, seg = 0; i < len && !b->oom; seg++) {
		char head[96];
		size_t col, budget;

		if (seg > 0)
			sb_put(b, ";\r\n ", 4);
		snprintf(head, sizeof head, "%s*%zu%s", pname, seg,
		    ascii ? "=\"" : (seg == 0 ? "*=utf-8''" : "*="));
		sb_puts(b, head);
		col = 1 + strlen(head);
		/* room for the closing quote and the ';' that may follow */
		budget = MIME_LINE_SOFT > col + 2 ? MIME_LINE_SOFT - col - 2 : 8;
		if (budget < 12)
			budget = 12;
		for (size_t used = 0; i < len;) {
			size_t cl = ascii ? 1 : utf8_len(v + i, len - i), cost = 0;

			for (size_t k = 0; k < cl; k++) {
				if (ascii)
					cost += (v[i + k] == '"' || v[i + k] == '\\') ? 2 : 1;
				else
					cost += attr_char(v[i + k]) ? 1 : 3;
			}
			if (used + cost > budget && used > 0)
				break;
			for (size_t k = 0; k < cl; k++) {
				unsigned char c = v[i + k];

				if (ascii) {
					if (c == '"' || c == '\\')
						sb_putc(b, '\\');
					sb_putc(b, (char)c);
				} else if (attr_char(c)) {
					sb_putc(b, (char)c);
				} else {
					char e[3] = { '%', hex_upper[c >> 4], hex_upper[c & 15] };
					sb_put(b, e, 3);
				}
			}
			used += cost;
			i += cl;
		}
		if (ascii)
			sb_putc(b, '"');
	}
}

/* ctype_ok - "type/subtype" of RFC 2045 token characters, bounded. */
static int
ctype_ok(const char *s)
{
	size_t len = strlen(s), slash = 0;

	if (len < 3 || len > 255)
		return 0;
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '/') {
			if (slash++ > 0 || i == 0 || i + 1 == len)
				return 0;
		} else if (!attr_char((unsigned char)s[i]) && s[i] != '*' && s[i] != '\'' &&
		    s[i] != '%') {
			return 0;
		}
	}
	return slash == 1;
}

static int
content_id_ok(const char *s)
{
	size_t len = strlen(s);

	if (len == 0 || len > 900)
		return 0;
	for (size_t i = 0; i < len; i++)
		if (!attr_char((unsigned char)s[i]) && s[i] != '%' && s[i] != '@' && s[i] != '\'')
			return 0;
	return 1;
}

static int
attachment_ok(const struct mime_attachment *a)
{
	size_t flen = a->filename != NULL ? strlen(a->filename) : 0;

	if (flen == 0 || flen > 4096 || !value_ok(a->filename))
		return 0;
	for (size_t i = 0; i < flen; i++)
		if ((unsigned char)a->filename[i] < 0x20 || a->filename[i] == 0x7f)
			return 0;
	if (a->content_type != NULL && !ctype_ok(a->content_type))
		return 0;
	if (a->content_id != NULL && !content_id_ok(a->content_id))
		return 0;
	return a->data != NULL || a->len == 0;
}

/* attach_entity - base64 part with name, disposition and Content-ID. */
static int
attach_entity(struct part *e, const struct mime_attachment *a, int is_inline)
{
	struct sbuf b = { 0 };

	sb_puts(&b, "Content-Type: ");
	sb_puts(&b, a->content_type != NULL ? a->content_type : "application/octet-stream");
	param_append(&b, "name", a->filename);
	sb_puts(&b, "\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: ");
	sb_puts(&b, is_inline ? "inline" : "attachment");
	param_append(&b, "filename", a->filename);
	sb_put(&b, "\r\n", 2);
	if (a->content_id != NULL) {
		sb_puts(&b, "Content-ID: <");
		sb_puts(&b, a->content_id);
		sb_puts(&b, ">\r\n");
	}
	sb_put(&b, "\r\n", 2);
	b64_append(&b, a->data != NULL ? a->data : (const unsigned char *)"", a->len, 1);
	return entity_finish(e, &b);
}

int
mime_build(const struct mime_message *m, char **out, size_t *out_len)
{
	struct part parts[2];
	struct part *ents = NULL;   /* text, html, related, alternative, mixed, attachments... */
	const struct part **kids = NULL;
	const struct part *body = NULL;
	size_t nparts = 0, ninline = 0, nents;
	struct sbuf b = { 0 };
	char date[64];
	int has_text, has_html, rc = MIME_ERR_INVALID;

	memset(parts, 0, sizeof parts);
	*out = NULL;
	has_text = m->text != NULL && m->text[0] != '\0';
	has_html = m->html != NULL && m->html[0] != '\0';
	if (m->from.email == NULL || !addr_ok(&m->from) ||
	    !token_ok(m->message_id, 900) || (!has_text && !has_html))
		goto out;
	if ((m->nto > 0 && m->to == NULL) || (m->ncc > 0 && m->cc == NULL) ||
	    (m->nreply_to > 0 && m->reply_to == NULL) ||
	    (m->nheaders > 0 && m->headers == NULL) ||
	    (m->nattachments > 0 && m->attachments == NULL) ||
	    m->nattachments > MIME_MAX_ATTACHMENTS)
		goto out;
	for (size_t i = 0; i < m->nto; i++)
		if (!addr_ok(&m->to[i]))
			goto out;
	for (size_t i = 0; i < m->ncc; i++)
		if (!addr_ok(&m->cc[i]))
			goto out;
	for (size_t i = 0; i < m->nreply_to; i++)
		if (!addr_ok(&m->reply_to[i]))
			goto out;
	for (size_t i = 0; i < m->nheaders; i++)
		if (!header_name_ok(m->headers[i].name) || !value_ok(m->headers[i].value))
			goto out;
	for (size_t i = 0; i < m->nattachments; i++) {
		if (!attachment_ok(&m->attachments[i]))
			goto out;
		if (m->attachments[i].content_id != NULL)
			ninline++;
	}
	if (!has_html)
		ninline = 0;   /* no html to refer to them: plain parts of the mixed */
	if (m->subject != NULL && !value_ok(m->subject))
		goto out;
	mime_date(m->date_s, date, sizeof date);
	if (date[0] == '\0')
		goto out;

	rc = MIME_ERR_NOMEM;
	nents = 5 + m->nattachments;
	ents = calloc(nents, sizeof(*ents));
	kids = calloc(nents, sizeof(*kids));
	if (ents == NULL || kids == NULL)
		goto out;
	if (has_text) {
		if (part_encode(&parts[nparts], "text/plain; charset=utf-8", m->text) != 0 ||
		    leaf_entity(&ents[0], &parts[nparts]) != 0)
			goto out;
		nparts++;
	}
	if (has_html) {
		if (part_encode(&parts[nparts], "text/html; charset=utf-8", m->html) != 0 ||
		    leaf_entity(&ents[1], &parts[nparts]) != 0)
			goto out;
		nparts++;
	}
	for (size_t i = 0; i < m->nattachments; i++) {
		const struct mime_attachment *a = &m->attachments[i];

		if (attach_entity(&ents[5 + i], a, a->content_id != NULL) != 0)
			goto out;
	}
	/* html, or multipart/related { html, inline parts } */
	body = has_html ? &ents[1] : NULL;
	if (ninline > 0) {
		size_t n = 0;

		kids[n++] = &ents[1];
		for (size_t i = 0; i < m->nattachments; i++)
			if (m->attachments[i].content_id != NULL)
				kids[n++] = &ents[5 + i];
		if (multipart_entity(&ents[2], "related", splitmix64(m->boundary_seed ^ 0x72),
		    kids, n) != 0)
			goto out;
		body = &ents[2];
	}
	if (has_text && has_html) {
		kids[0] = &ents[0];
		kids[1] = body;
		if (multipart_entity(&ents[3], "alternative", m->boundary_seed, kids, 2) != 0)
			goto out;
		body = &ents[3];
	} else if (has_text) {
		body = &ents[0];
	}
	if (m->nattachments > ninline) {
		size_t n = 0;

		kids[n++] = body;
		for (size_t i = 0; i < m->nattachments; i++)
			if (ninline == 0 || m->attachments[i].content_id == NULL)
				kids[n++] = &ents[5 + i];
		if (multipart_entity(&ents[4], "mixed", splitmix64(m->boundary_seed ^ 0x6d),
		    kids, n) != 0)
			goto out;
		body = &ents[4];
	}

	sb_puts(&b, "Date: ");
	sb_puts(&b, date);
	sb_put(&b, "\r\n", 2);
	addr_list_header(&b, "From", &m->from, 1);
	if (m->nto > 0)
		addr_list_header(&b, "To", m->to, m->nto);
	if (m->ncc > 0)
		addr_list_header(&b, "Cc", m->cc, m->ncc);
	if (m->nreply_to > 0)
		addr_list_header(&b, "Reply-To", m->reply_to, m->nreply_to);
	if (m->subject != NULL && m->subject[0] != '\0')
		text_header(&b, "Subject", m->subject);
	sb_puts(&b, "Message-ID: ");
	sb_puts(&b, m->message_id);
	sb_puts(&b, "\r\nMIME-Version: 1.0\r\n");
	for (size_t i = 0; i < m->nheaders; i++)
		text_header(&b, m->headers[i].name, m->headers[i].value);
	sb_put(&b, body->body, body->len);
	if (!ends_crlf(body->body, body->len))
		sb_put(&b, "\r\n", 2);
	*out = sb_finish(&b, out_len);
	b.p = NULL;
	if (*out == NULL)
		goto out;
	rc = 0;
out:
	free(b.p);
	for (size_t i = 0; i < 2; i++)
		free(parts[i].body);
	if (ents != NULL)
		for (size_t i = 0; i < 5 + m->nattachments; i++)
			free(ents[i].body);
	free(ents);
	free(kids);
	return rc;
}
