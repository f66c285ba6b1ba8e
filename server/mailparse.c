/*
 * mailparse.c - the MIME reader behind GET /dev/mail (see mailparse.h).
 *
 * Owns nothing but its stack: the parse walks header sections and
 * multipart bodies by offset (recursion at most MAILPARSE_MAX_DEPTH deep),
 * the decoders (base64, quoted-printable, RFC 2047 words, RFC 2231
 * parameters, Latin-1) write through struct mp_out, which never writes past
 * its capacity and only ever writes whole UTF-8 characters. It must never
 * allocate during the parse, trust a length in the input, or do I/O.
 */
#include "mailparse.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- output: whole characters, never past cap - 1, always NUL-terminable ---- */

struct mp_out {
	char *p;
	size_t cap;    /* bytes at p, the NUL included */
	size_t n;
	int full;      /* a character did not fit: nothing more is written */
};

static void
mp_put(struct mp_out *o, const void *s, size_t k)
{
	if (o->full || o->cap == 0 || k > o->cap - 1 - o->n) {
		o->full = 1;
		return;
	}
	memcpy(o->p + o->n, s, k);
	o->n += k;
}

static void
mp_end(struct mp_out *o)
{
	if (o->cap > 0)
		o->p[o->n] = '\0';
}

/* mp_utf8_len - length of the valid UTF-8 sequence at p[0..n) (no NUL), or 0. */
static size_t
mp_utf8_len(const unsigned char *p, size_t n)
{
	unsigned c = p[0];
	size_t k, i;
	uint32_t cp;

	if (c == 0)
		return 0;
	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf) {
		k = 2;
		cp = c & 0x1f;
	} else if (c >= 0xe0 && c <= 0xef) {
		k = 3;
		cp = c & 0x0f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		k = 4;
		cp = c & 0x07;
	} else {
		return 0;
	}
	if (n < k)
		return 0;
	for (i = 1; i < k; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (p[i] & 0x3f);
	}
	if ((k == 3 && cp < 0x800) || (k == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return k;
}

static void
mp_put_utf8(struct mp_out *o, const char *s, size_t n)
{
	static const char repl[] = "\xef\xbf\xbd";
	const unsigned char *u = (const unsigned char *)s;
	size_t i = 0;

	while (i < n && !o->full) {
		size_t k = mp_utf8_len(u + i, n - i);

		if (k == 0) {
			mp_put(o, repl, 3);
			i++;
		} else {
			mp_put(o, u + i, k);
			i += k;
		}
	}
}

static void
mp_put_latin1(struct mp_out *o, const char *s, size_t n)
{
	for (size_t i = 0; i < n && !o->full; i++) {
		unsigned char c = (unsigned char)s[i];
		unsigned char b[2];

		if (c == 0) {
			mp_put(o, "\xef\xbf\xbd", 3);
		} else if (c < 0x80) {
			mp_put(o, &c, 1);
		} else {
			b[0] = (unsigned char)(0xc0 | (c >> 6));
			b[1] = (unsigned char)(0x80 | (c & 0x3f));
			mp_put(o, b, 2);
		}
	}
}

static int
mp_is_latin1(const char *cs, size_t n)
{
	static const char *const names[] = { "iso-8859-1", "latin1", "iso8859-1", "windows-1252",
	    "cp1252", "iso_8859-1", "l1" };

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strlen(names[i]) == n && strncasecmp(cs, names[i], n) == 0)
			return 1;
	return 0;
}

static void
mp_put_charset(struct mp_out *o, const char *cs, size_t csn, const char *s, size_t n)
{
	if (mp_is_latin1(cs, csn))
		mp_put_latin1(o, s, n);
	else
		mp_put_utf8(o, s, n);
}

/* ---- decoders ---------------------------------------------------------------- */

static int
mp_hex(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

static int
mp_b64v(unsigned char c)
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

/* mp_b64 - lenient base64: other characters skipped, stops at '='; out holds n / 4 * 3 + 3. */
static size_t
mp_b64(const char *in, size_t n, char *out)
{
	uint32_t acc = 0;
	size_t o = 0, q = 0;

	for (size_t i = 0; i < n; i++) {
		int v = mp_b64v((unsigned char)in[i]);

		if (in[i] == '=')
			break;
		if (v < 0)
			continue;
		acc = (acc << 6) | (uint32_t)v;
		if (++q == 4) {
			out[o++] = (char)(acc >> 16);
			out[o++] = (char)(acc >> 8);
			out[o++] = (char)acc;
			acc = 0;
			q = 0;
		}
	}
	if (q == 2) {
		out[o++] = (char)(acc >> 4);
	} else if (q == 3) {
		out[o++] = (char)(acc >> 10);
		out[o++] = (char)(acc >> 2);
	}
	return o;
}

/* mp_qp - quoted-printable (header != 0: RFC 2047 Q, '_' is a space); out holds n. */
static size_t
mp_qp(const char *in, size_t n, char *out, int header)
{
	size_t o = 0, i = 0;

	while (i < n) {
		unsigned char c = (unsigned char)in[i];

		if (c == '=' && i + 2 < n && in[i + 1] == '\r' && in[i + 2] == '\n') {
			i += 3;   /* soft line break */
		} else if (c == '=' && i + 1 < n && in[i + 1] == '\n') {
			i += 2;
		} else if (c == '=' && i + 2 < n && mp_hex((unsigned char)in[i + 1]) >= 0 &&
		    mp_hex((unsigned char)in[i + 2]) >= 0) {
			out[o++] = (char)(mp_hex((unsigned char)in[i + 1]) * 16 +
			    mp_hex((unsigned char)in[i + 2]));
			i += 3;
		} else {
			out[o++] = header && c == '_' ? ' ' : (char)c;
			i++;
		}
	}
	return o;
}

/* ---- header values ------------------------------------------------------------- */

static int
mp_ws(char c)
{
	return c == ' ' || c == '\t';
}

/* mp_unfold - s[0..n) without CR and LF, leading and trailing blanks trimmed, cut at cap - 1. */
static size_t
mp_unfold(const char *s, size_t n, char *out, size_t cap)
{
	size_t o = 0, i = 0;

	while (i < n && (mp_ws(s[i]) || s[i] == '\r' || s[i] == '\n'))
		i++;
	for (; i < n && o + 1 < cap; i++)
		if (s[i] != '\r' && s[i] != '\n')
			out[o++] = s[i];
	while (o > 0 && mp_ws(out[o - 1]))
		o--;
	out[o] = '\0';
	return o;
}

/*
 * mp_word - an RFC 2047 encoded word "=?cs?E?text?=" at s[0..n): its end
 * (offset after "?="), or 0. cs (charset, language cut off), enc, text set.
 */
static size_t
mp_word(const char *s, size_t n, size_t *csn, char *enc, size_t *toff, size_t *tlen)
{
	size_t i = 2, c0;

	if (n < 8 || s[0] != '=' || s[1] != '?')
		return 0;
	c0 = i;
	while (i < n && s[i] != '?' && !mp_ws(s[i]))
		i++;
	if (i >= n || s[i] != '?' || i == c0 || i - c0 > 63)
		return 0;
	*csn = i - c0;
	for (size_t k = c0; k < i; k++)
		if (s[k] == '*') {   /* RFC 2231 language: "utf-8*en" */
			*csn = k - c0;
			break;
		}
	i++;
	if (i + 1 >= n || s[i + 1] != '?')
		return 0;
	*enc = s[i];
	if (*enc != 'B' && *enc != 'b' && *enc != 'Q' && *enc != 'q')
		return 0;
	i += 2;
	*toff = i;
	while (i + 1 < n && !(s[i] == '?' && s[i + 1] == '=')) {
		if (mp_ws(s[i]))
			return 0;
		i++;
	}
	if (i + 1 >= n)
		return 0;
	*tlen = i - *toff;
	return i + 2;
}

/* mp_2047 - s[0..n) (unfolded) with encoded words decoded, into o as UTF-8. */
__attribute__((noinline)) static void
mp_2047(struct mp_out *o, const char *s, size_t n)
{
	char tmp[MAILPARSE_VALUE_MAX];
	size_t i = 0, ws = 0, wsn = 0;
	int after_word = 0;

	while (i < n && !o->full) {
		size_t csn = 0, toff = 0, tlen = 0, end;
		char enc = 0;

		if (s[i] == '=' && (end = mp_word(s + i, n - i, &csn, &enc, &toff, &tlen)) != 0 &&
		    tlen < sizeof(tmp)) {
			size_t k;

			if (wsn > 0 && !after_word)
				mp_put_utf8(o, s + ws, wsn);   /* blanks between two words vanish */
			wsn = 0;
			if (enc == 'B' || enc == 'b')
				k = tlen / 4 * 3 + 3 <= sizeof(tmp) ? mp_b64(s + i + toff, tlen, tmp) : 0;
			else
				k = mp_qp(s + i + toff, tlen, tmp, 1);
			mp_put_charset(o, s + i + 2, csn, tmp, k);
			i += end;
			after_word = 1;
			continue;
		}
		if (mp_ws(s[i])) {
			ws = i;
			while (i < n && mp_ws(s[i]))
				i++;
			wsn = i - ws;
			continue;
		}
		if (wsn > 0)
			mp_put_utf8(o, s + ws, wsn);
		wsn = 0;
		after_word = 0;
		{
			size_t j = i + 1;

			while (j < n && !mp_ws(s[j]) && s[j] != '=')
				j++;
			mp_put_utf8(o, s + i, j - i);
			i = j;
		}
	}
	if (wsn > 0 && !after_word)
		mp_put_utf8(o, s + ws, wsn);
}

size_t
mailparse_header_text(const char *msg, struct mailparse_span v, char *out, size_t outlen)
{
	char unf[MAILPARSE_VALUE_MAX];
	struct mp_out o = { out, outlen, 0, 0 };
	size_t un = mp_unfold(msg + v.off, v.len, unf, sizeof(unf));

	mp_2047(&o, unf, un);
	while (o.n > 0 && mp_ws(out[o.n - 1]))
		o.n--;
	mp_end(&o);
	return o.n;
}

/*
 * mp_param - parameter `name` of an unfolded Content-Type/-Disposition
 * value v[0..n) into out as UTF-8 (RFC 2231 name*=cs'lang'%xx preferred,
 * then name="..." whose RFC 2047 words are decoded); 1 when found, else 0.
 */
__attribute__((noinline)) static int
mp_param(const char *v, size_t n, const char *name, char *out, size_t outlen)
{
	const char *semi = memchr(v, ';', n);
	size_t i = semi != NULL ? (size_t)(semi - v) : n, nl = strlen(name);
	int found = 0;

	out[0] = '\0';
	while (i < n) {
		size_t a0, a1, v0, v1;
		int quoted = 0, ext;
		char val[MAILPARSE_VALUE_MAX];
		size_t vn = 0;

		while (i < n && (mp_ws(v[i]) || v[i] == ';'))
			i++;
		a0 = i;
		while (i < n && v[i] != '=' && v[i] != ';')
			i++;
		a1 = i;
		while (a1 > a0 && mp_ws(v[a1 - 1]))
			a1--;
		if (i >= n || v[i] != '=')
			continue;
		i++;
		while (i < n && mp_ws(v[i]))
			i++;
		if (i < n && v[i] == '"') {
			quoted = 1;
			i++;
			while (i < n && v[i] != '"') {
				if (v[i] == '\\' && i + 1 < n)
					i++;
				if (vn + 1 < sizeof(val))
					val[vn++] = v[i];
				i++;
			}
			i++;
		} else {
			v0 = i;
			while (i < n && v[i] != ';' && !mp_ws(v[i]))
				i++;
			v1 = i;
			vn = v1 - v0 < sizeof(val) ? v1 - v0 : sizeof(val) - 1;
			memcpy(val, v + v0, vn);
		}
		ext = a1 - a0 == nl + 1 && v[a1 - 1] == '*';
		if (!(a1 - a0 == nl || ext) || strncasecmp(v + a0, name, nl) != 0)
			continue;
		if (ext) {
			/* charset'language'percent-encoded */
			const char *q1 = memchr(val, '\'', vn), *q2;
			char dec[MAILPARSE_VALUE_MAX];
			size_t dn = 0, k;
			struct mp_out o = { out, outlen, 0, 0 };

			if (q1 == NULL || (q2 = memchr(q1 + 1, '\'', vn - (size_t)(q1 + 1 - val))) == NULL)
				continue;
			for (k = (size_t)(q2 + 1 - val); k < vn; k++) {
				if (val[k] == '%' && k + 2 < vn && mp_hex((unsigned char)val[k + 1]) >= 0 &&
				    mp_hex((unsigned char)val[k + 2]) >= 0) {
					dec[dn++] = (char)(mp_hex((unsigned char)val[k + 1]) * 16 +
					    mp_hex((unsigned char)val[k + 2]));
					k += 2;
				} else {
					dec[dn++] = val[k];
				}
			}
			mp_put_charset(&o, val, (size_t)(q1 - val), dec, dn);
			mp_end(&o);
			return 1;   /* the extended form wins */
		}
		if (!found) {
			struct mp_out o = { out, outlen, 0, 0 };

			if (quoted)
				mp_2047(&o, val, vn);
			else
				mp_put_utf8(&o, val, vn);
			mp_end(&o);
			found = 1;
		}
	}
	return found;
}

/* ---- the structure ------------------------------------------------------------ */

/* mp_line - the line at pos: its content end (no CR LF) in *cend and the next line's start. */
static size_t
mp_line(const char *msg, size_t pos, size_t end, size_t *cend)
{
	const char *lf = memchr(msg + pos, '\n', end - pos);
	size_t e = lf != NULL ? (size_t)(lf - msg) : end;

	*cend = e > pos && msg[e - 1] == '\r' ? e - 1 : e;
	return lf != NULL ? e + 1 : end;
}

/*
 * mp_field - the header field at *pos (< end): 1 with name and value set
 * and *pos after it; 0 at the end of the header section, *pos then at
 * the body (after the empty line; at a line that is no field, that line).
 */
static int
mp_field(const char *msg, size_t *pos, size_t end, struct mailparse_header *h)
{
	size_t p = *pos, cend, next, i;

	while (p < end) {
		next = mp_line(msg, p, end, &cend);
		if (cend == p) {
			*pos = next;   /* the empty line */
			return 0;
		}
		if (mp_ws(msg[p])) {
			p = next;      /* a continuation without a field: skipped */
			continue;
		}
		for (i = p; i < cend && msg[i] != ':'; i++)
			if ((unsigned char)msg[i] <= ' ' || (unsigned char)msg[i] > '~')
				break;
		if (i == p || i >= cend || msg[i] != ':') {
			*pos = p;      /* not a field: the body starts here */
			return 0;
		}
		h->name.off = p;
		h->name.len = i - p;
		h->value.off = i + 1;
		while (next < end && mp_ws(msg[next])) {
			size_t c2, n2 = mp_line(msg, next, end, &c2);

			cend = c2;
			next = n2;
		}
		h->value.len = cend - (i + 1);
		*pos = next;
		return 1;
	}
	*pos = end;
	return 0;
}

static int
mp_name_is(const char *msg, const struct mailparse_header *h, const char *name)
{
	return h->name.len == strlen(name) && strncasecmp(msg + h->name.off, name, h->name.len) == 0;
}

static void mp_entity(const char *msg, size_t start, size_t end, int depth, int top,
    struct mailparse_msg *m);

/* mp_multipart - each body part between the "--boundary" lines of msg[start..end). */
static void
mp_multipart(const char *msg, size_t start, size_t end, const char *b, size_t bn, int depth,
    struct mailparse_msg *m)
{
	size_t pos = start, part = SIZE_MAX;

	while (pos < end) {
		size_t cend, next = mp_line(msg, pos, end, &cend);

		if (cend - pos >= bn + 2 && msg[pos] == '-' && msg[pos + 1] == '-' &&
		    memcmp(msg + pos + 2, b, bn) == 0) {
			size_t r = pos + 2 + bn;
			int close = cend - r >= 2 && msg[r] == '-' && msg[r + 1] == '-';

			while (!close && r < cend && mp_ws(msg[r]))
				r++;
			if (!close && r < cend) {
				pos = next;    /* "--boundary" followed by more: a longer boundary */
				continue;
			}

			if (part != SIZE_MAX) {
				size_t pe = pos;   /* the line break before the delimiter is the delimiter's */

				if (pe > part && msg[pe - 1] == '\n')
					pe--;
				if (pe > part && msg[pe - 1] == '\r')
					pe--;
				mp_entity(msg, part, pe, depth, 0, m);
			}
			if (close)
				return;
			part = next;
		}
		pos = next;
	}
	if (part != SIZE_MAX && part < end)
		mp_entity(msg, part, end, depth, 0, m);   /* no close delimiter: up to the end */
}

struct mp_fields {
	struct mailparse_span ct, cte, cd, cid;
	int have_ct, have_cd, have_cid;
};

/* mp_leaf - record the leaf whose Content-Type value is v[0..vn) (media type tn long). */
__attribute__((noinline)) static void
mp_leaf(const char *msg, size_t body, size_t end, const struct mp_fields *f, const char *v,
    size_t vn, size_t tn, struct mailparse_msg *m)
{
	char dv[MAILPARSE_VALUE_MAX], disp[32], e[64];
	struct mailparse_part *p;
	size_t en;

	if (m->nparts >= MAILPARSE_MAX_PARTS) {
		m->truncated = 1;
		return;
	}
	p = &m->parts[m->nparts];
	memset(p, 0, sizeof(*p));
	if (tn > 0 && tn < sizeof(p->type) && memchr(v, '/', tn) != NULL) {
		for (size_t i = 0; i < tn; i++) {
			char c = v[i];

			/* printable ASCII only, lower case: it becomes a Content-Type */
			if ((unsigned char)c < 0x21 || (unsigned char)c > 0x7e)
				c = '_';
			p->type[i] = (char)(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
		}
		p->type[tn] = '\0';
	} else {
		memcpy(p->type, "text/plain", sizeof("text/plain"));
	}
	if (mp_param(v, vn, "charset", p->charset, sizeof(p->charset)))
		for (size_t i = 0; p->charset[i] != '\0'; i++)
			if (p->charset[i] >= 'A' && p->charset[i] <= 'Z')
				p->charset[i] = (char)(p->charset[i] - 'A' + 'a');
	en = mp_unfold(msg + f->cte.off, f->cte.len, e, sizeof(e));
	if (en == 16 && strncasecmp(e, "quoted-printable", 16) == 0)
		p->cte = MAILPARSE_CTE_QP;
	else if (en == 6 && strncasecmp(e, "base64", 6) == 0)
		p->cte = MAILPARSE_CTE_BASE64;
	if (f->have_cd) {
		size_t dn = mp_unfold(msg + f->cd.off, f->cd.len, dv, sizeof(dv)), k;

		for (k = 0; k < dn && k + 1 < sizeof(disp) && dv[k] != ';' && !mp_ws(dv[k]); k++)
			disp[k] = dv[k];
		disp[k] = '\0';
		p->attachment = strcasecmp(disp, "attachment") == 0;
		mp_param(dv, dn, "filename", p->filename, sizeof(p->filename));
	}
	if (p->filename[0] == '\0')
		mp_param(v, vn, "name", p->filename, sizeof(p->filename));
	if (f->have_cid) {
		size_t cn = mp_unfold(msg + f->cid.off, f->cid.len, dv, sizeof(dv)), c0 = 0;
		struct mp_out o = { p->content_id, sizeof(p->content_id), 0, 0 };

		if (cn > 0 && dv[0] == '<')
			c0 = 1;
		if (cn > c0 && dv[cn - 1] == '>')
			cn--;
		mp_put_utf8(&o, dv + c0, cn - c0);
		mp_end(&o);
	}
	p->body.off = body;
	p->body.len = end - body;
	if (!p->attachment && p->filename[0] == '\0') {
		if (m->text < 0 && strcmp(p->type, "text/plain") == 0)
			m->text = (int)m->nparts;
		else if (m->html < 0 && strcmp(p->type, "text/html") == 0)
			m->html = (int)m->nparts;
	}
	m->nparts++;
}

/*
 * mp_entity - one entity (headers, then body) at msg[start..end): a
 * multipart is split (depth + 1), anything else is a leaf. top: the
 * message itself, whose fields are listed in m->headers.
 */
static void
mp_entity(const char *msg, size_t start, size_t end, int depth, int top, struct mailparse_msg *m)
{
	struct mailparse_header h;
	struct mp_fields f;
	char v[MAILPARSE_VALUE_MAX], bnd[256];
	size_t pos = start, vn, tn;

	memset(&f, 0, sizeof(f));
	while (mp_field(msg, &pos, end, &h)) {
		if (top) {
			if (m->nheaders < MAILPARSE_MAX_HEADERS)
				m->headers[m->nheaders++] = h;
			else
				m->truncated = 1;
		}
		if (mp_name_is(msg, &h, "content-type") && !f.have_ct) {
			f.ct = h.value;
			f.have_ct = 1;
		} else if (mp_name_is(msg, &h, "content-transfer-encoding")) {
			f.cte = h.value;
		} else if (mp_name_is(msg, &h, "content-disposition") && !f.have_cd) {
			f.cd = h.value;
			f.have_cd = 1;
		} else if (mp_name_is(msg, &h, "content-id") && !f.have_cid) {
			f.cid = h.value;
			f.have_cid = 1;
		}
	}
	vn = mp_unfold(msg + f.ct.off, f.ct.len, v, sizeof(v));
	for (tn = 0; tn < vn && v[tn] != ';' && !mp_ws(v[tn]); tn++)
		;
	if (tn > 10 && strncasecmp(v, "multipart/", 10) == 0 &&
	    mp_param(v, vn, "boundary", bnd, sizeof(bnd)) && bnd[0] != '\0') {
		if (depth >= MAILPARSE_MAX_DEPTH) {
			m->truncated = 1;
			return;
		}
		mp_multipart(msg, pos, end, bnd, strlen(bnd), depth + 1, m);
		return;
	}
	mp_leaf(msg, pos, end, &f, v, vn, tn, m);
}

void
mailparse_parse(const char *msg, size_t len, struct mailparse_msg *m)
{
	m->nheaders = 0;
	m->nparts = 0;
	m->text = -1;
	m->html = -1;
	m->truncated = 0;
	mp_entity(msg, 0, len, 0, 1, m);
}

int
mailparse_find(const struct mailparse_msg *m, const char *msg, const char *name)
{
	for (size_t i = 0; i < m->nheaders; i++)
		if (mp_name_is(msg, &m->headers[i], name))
			return (int)i;
	return -1;
}

/* mp_lf - drop each CR that comes before an LF, in place; the new length. */
static size_t
mp_lf(char *s, size_t n)
{
	size_t o = 0;

	for (size_t i = 0; i < n; i++)
		if (!(s[i] == '\r' && i + 1 < n && s[i + 1] == '\n'))
			s[o++] = s[i];
	return o;
}

int
mailparse_body(const char *msg, const struct mailparse_part *p, int text, char **out,
    size_t *outlen)
{
	const char *in = msg + p->body.off;
	size_t n = p->body.len, dn;
	char *dec, *u;
	struct mp_out o;

	*out = NULL;
	*outlen = 0;
	if (n > (SIZE_MAX - 4) / 3)
		return -1;
	dec = malloc(n + 4);
	if (dec == NULL)
		return -1;
	if (p->cte == MAILPARSE_CTE_BASE64)
		dn = mp_b64(in, n, dec);
	else if (p->cte == MAILPARSE_CTE_QP)
		dn = mp_qp(in, n, dec, 0);
	else {
		memcpy(dec, in, n);
		dn = n;
	}
	if (!text) {
		dec[dn] = '\0';
		*out = dec;
		*outlen = dn;
		return 0;
	}
	u = malloc(dn * 3 + 1);
	if (u == NULL) {
		free(dec);
		return -1;
	}
	o.p = u;
	o.cap = dn * 3 + 1;
	o.n = 0;
	o.full = 0;
	mp_put_charset(&o, p->charset, strlen(p->charset), dec, dn);
	free(dec);
	o.n = mp_lf(u, o.n);
	mp_end(&o);
	*out = u;
	*outlen = o.n;
	return 0;
}

char *
mailparse_utf8(const char *in, size_t n, size_t *outlen)
{
	struct mp_out o;
	char *u;

	if (n > (SIZE_MAX - 1) / 3)
		return NULL;
	u = malloc(n * 3 + 1);
	if (u == NULL)
		return NULL;
	o.p = u;
	o.cap = n * 3 + 1;
	o.n = 0;
	o.full = 0;
	mp_put_utf8(&o, in, n);
	mp_end(&o);
	if (outlen != NULL)
		*outlen = o.n;
	return u;
}
