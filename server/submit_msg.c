/*
 * submit_msg.c - the submitted message (submit_msg.h): header section
 * scan, field removal and addition, the X-Txmail-* send options, the To/Cc
 * addresses. Pure: no I/O, logging, clock or threads.
 *
 * The header section is the lines before the first empty line. A line
 * there that is neither a field ("name:" with a printable-ASCII name,
 * blanks allowed before the colon as in RFC 5322 obs-field) nor a
 * continuation of one ends the header section as Postfix does: that line
 * and all after it are the body, and an empty line is put before it so the
 * result is a valid message. A message without an empty line is all header
 * and gets an empty body. Unknown X-Txmail-* names are refused (like an
 * unknown field in an HTTP body) rather than dropped, so a misspelt option
 * is never lost without a word.
 */
#include "submit_msg.h"
#include "mailparse.h"
#include "validate.h"
#include "../smtp/mime.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

enum { SM_OK = 0, SM_INVALID = -1, SM_NOMEM = -2 };

enum sm_opt { SM_OPT_METADATA, SM_OPT_TAGS, SM_OPT_PRIORITY, SM_OPT_TTL, SM_OPT_IDEM, SM_NOPT };

static const char *const sm_opt_name[SM_NOPT] = {
	"X-Txmail-Metadata", "X-Txmail-Tags", "X-Txmail-Priority", "X-Txmail-TTL",
	"X-Txmail-Idempotency-Key",
};

/* One header field of the input: raw[start..end) with its continuation lines and final CRLF. */
struct sm_field {
	size_t start, end;
	size_t name_len;
	size_t value_off, value_end;   /* after the colon .. the last line's content end */
	int keep;
};

struct sm_scan {
	struct sm_field *f;
	size_t n, cap;
	size_t body;        /* where the body starts in raw */
};

static void sm_reply(char *reply, size_t replylen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
sm_reply(char *reply, size_t replylen, const char *fmt, ...)
{
	va_list ap;

	if (reply == NULL || replylen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(reply, replylen, fmt, ap);
	va_end(ap);
}

static int
sm_ws(char c)
{
	return c == ' ' || c == '\t';
}

static char
sm_lower(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

/* sm_eq - raw s[0..n) equals the lower-case name, ASCII case-insensitively. */
static int
sm_eq(const char *s, size_t n, const char *name)
{
	size_t k = strlen(name);

	if (n != k)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (sm_lower(s[i]) != name[i])
			return 0;
	return 1;
}

static int
sm_caseeq(const char *a, const char *b)
{
	for (; *a != '\0' && *b != '\0'; a++, b++)
		if (sm_lower(*a) != sm_lower(*b))
			return 0;
	return *a == *b;
}

/* sm_line - the line at pos: *cend its content end (before CRLF), returns the next line's start. */
static size_t
sm_line(const char *raw, size_t len, size_t pos, size_t *cend)
{
	const char *lf = memchr(raw + pos, '\n', len - pos);

	if (lf == NULL) {
		*cend = len;
		return len;
	}
	*cend = (size_t)(lf - raw) - 1;   /* no bare LF: a CR precedes it */
	return (size_t)(lf - raw) + 1;
}

/* sm_bare_eol - 1 when raw holds a CR not before LF or an LF not after CR. */
static int
sm_bare_eol(const char *raw, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (raw[i] == '\r' && (i + 1 >= len || raw[i + 1] != '\n'))
			return 1;
		if (raw[i] == '\n' && (i == 0 || raw[i - 1] != '\r'))
			return 1;
	}
	return 0;
}

static int
sm_push_field(struct sm_scan *s, const struct sm_field *f)
{
	if (s->n == s->cap) {
		size_t nc = s->cap != 0 ? s->cap * 2 : 32;
		struct sm_field *p;

		if (nc > SIZE_MAX / sizeof(*p))
			return SM_NOMEM;
		p = realloc(s->f, nc * sizeof(*p));
		if (p == NULL)
			return SM_NOMEM;
		s->f = p;
		s->cap = nc;
	}
	s->f[s->n++] = *f;
	return SM_OK;
}

/* sm_scan_header - split raw into fields and find the body (see the file comment). */
static int
sm_scan_header(const char *raw, size_t len, struct sm_scan *s)
{
	size_t p = 0;

	while (p < len) {
		struct sm_field f = { 0 };
		size_t cend, next = sm_line(raw, len, p, &cend), i = p, j;

		if (cend == p) {               /* the empty line */
			s->body = next;
			return SM_OK;
		}
		if (sm_ws(raw[p]))             /* a continuation of nothing */
			break;
		while (i < cend && (unsigned char)raw[i] > ' ' && (unsigned char)raw[i] <= '~' && raw[i] != ':')
			i++;
		j = i;
		while (j < cend && sm_ws(raw[j]))
			j++;
		if (i == p || j >= cend || raw[j] != ':')
			break;                     /* not a field: the body starts here */
		f.start = p;
		f.name_len = i - p;
		f.value_off = j + 1;
		f.value_end = cend;
		f.keep = 1;
		while (next < len) {
			size_t c2, n2 = sm_line(raw, len, next, &c2);

			if (c2 == next || !sm_ws(raw[next]))
				break;
			f.value_end = c2;
			next = n2;
		}
		f.end = next;
		if (sm_push_field(s, &f) != SM_OK)
			return SM_NOMEM;
		p = next;
	}
	s->body = p;
	return SM_OK;
}

/* sm_unfold - malloc'd raw[off..end) without CR and LF, blanks trimmed; *n its length. */
static char *
sm_unfold(const char *raw, size_t off, size_t end, size_t *n)
{
	char *v = malloc(end - off + 1);
	size_t o = 0;

	if (v == NULL)
		return NULL;
	while (off < end && (sm_ws(raw[off]) || raw[off] == '\r' || raw[off] == '\n'))
		off++;
	for (; off < end; off++)
		if (raw[off] != '\r' && raw[off] != '\n')
			v[o++] = raw[off];
	while (o > 0 && sm_ws(v[o - 1]))
		o--;
	v[o] = '\0';
	*n = o;
	return v;
}

/* sm_decoded - malloc'd UTF-8 text of the field value (unfolded, RFC 2047 decoded). */
static char *
sm_decoded(const char *raw, const struct sm_field *f)
{
	/* each octet of the (at most MAILPARSE_VALUE_MAX) unfolded value gives at most 3 of UTF-8 */
	size_t cap = (size_t)MAILPARSE_VALUE_MAX * 3 + 1, n;
	struct mailparse_span v = { f->value_off, f->value_end - f->value_off };
	char *buf = malloc(cap), *out;

	if (buf == NULL)
		return NULL;
	n = mailparse_header_text(raw, v, buf, cap);
	out = realloc(buf, n + 1);
	return out != NULL ? out : buf;
}

/* --- To / Cc addresses ------------------------------------------------------------ */

static int
sm_add_addr(struct subm_msg *m, const char *a, size_t n, int cc)
{
	char **pa;
	unsigned char *pc;
	char *e;
	size_t k;

	if (n == 0 || memchr(a, '@', n) == NULL || m->n_hdr_addr >= SUBM_MSG_HDR_ADDRS)
		return SM_OK;
	k = m->n_hdr_addr + 1;
	pa = realloc(m->hdr_addr, k * sizeof(*pa));
	if (pa == NULL)
		return SM_NOMEM;
	m->hdr_addr = pa;
	pc = realloc(m->hdr_cc, k);
	if (pc == NULL)
		return SM_NOMEM;
	m->hdr_cc = pc;
	e = malloc(n + 1);
	if (e == NULL)
		return SM_NOMEM;
	for (size_t i = 0; i < n; i++)
		e[i] = sm_lower(a[i]);
	e[n] = '\0';
	m->hdr_addr[m->n_hdr_addr] = e;
	m->hdr_cc[m->n_hdr_addr] = (unsigned char)(cc != 0);
	m->n_hdr_addr++;
	return SM_OK;
}

/*
 * sm_addr_list - the addresses of an RFC 5322 address-list s[0..n)
 * (unfolded): "a@b", "Name <a@b>", "\"Q, N\" <a@b>", groups "g: a@b, c@d;",
 * comments anywhere, an obs-route "<@r1,@r2:a@b>". Each mailbox is the
 * angle address when there is one, else its text without blanks and
 * comments; one without '@' is skipped. Linear in n.
 */
static int
sm_addr_list(struct subm_msg *m, const char *s, size_t n, int cc)
{
	char *plain = malloc(n + 1), *angle = malloc(n + 1);
	size_t np = 0, na = 0, i = 0;
	int in_angle = 0, have_angle = 0, rc = SM_OK;

	if (plain == NULL || angle == NULL) {
		rc = SM_NOMEM;
		goto out;
	}
	while (i <= n && rc == SM_OK) {
		char c = i < n ? s[i] : ',';

		if (c == '(') {                          /* a comment, nested, with quoted pairs */
			int depth = 0;

			for (; i < n; i++) {
				if (s[i] == '\\' && i + 1 < n) {
					i++;
					continue;
				}
				if (s[i] == '(')
					depth++;
				else if (s[i] == ')' && --depth == 0)
					break;
			}
			if (i < n)
				i++;                         /* after the ')'; at n: unterminated */
			continue;
		}
		if (c == '"') {                          /* a quoted string: kept as written */
			char *dst = in_angle ? angle : plain;
			size_t *dn = in_angle ? &na : &np;

			dst[(*dn)++] = s[i++];
			while (i < n && s[i] != '"') {
				if (s[i] == '\\' && i + 1 < n)
					dst[(*dn)++] = s[i++];
				dst[(*dn)++] = s[i++];
			}
			if (i < n)
				dst[(*dn)++] = s[i++];
			continue;
		}
		if (in_angle) {
			if (c == '>')
				in_angle = 0;
			else if (c == ',' && i == n)
				in_angle = 0;                /* unterminated at the end */
			else if (!sm_ws(c))
				angle[na++] = c;
			if (i < n || in_angle) {
				i++;
				continue;
			}
		}
		if (c == '<') {
			in_angle = have_angle = 1;
			na = 0;
		} else if (c == ',' || c == ';' || c == ':') {
			if (c != ':') {
				const char *a = have_angle ? angle : plain;
				size_t an = have_angle ? na : np;

				if (have_angle && an > 0 && a[0] == '@') {   /* obs-route */
					const char *colon = memchr(a, ':', an);

					an = colon != NULL ? an - (size_t)(colon + 1 - a) : 0;
					a = colon != NULL ? colon + 1 : a;
				}
				rc = sm_add_addr(m, a, an, cc);
			}
			np = na = 0;                         /* ':' ends a group's name */
			have_angle = 0;
		} else if (!sm_ws(c)) {
			plain[np++] = c;
		}
		i++;
	}
out:
	free(plain);
	free(angle);
	return rc;
}

/* --- the X-Txmail-* options --------------------------------------------------------- */

/* sm_json - parse v[0..n) (NUL-terminated) within the depth cap; NULL with why set. */
static cJSON *
sm_json(const char *v, size_t n, const char **why)
{
	char field[64];
	cJSON *j;

	j = cJSON_ParseWithOpts(v, NULL, 1);
	if (j == NULL) {
		*why = "is not valid JSON";
		return NULL;
	}
	if (validate_json_depth(j, SUBM_MSG_JSON_DEPTH + 1) > SUBM_MSG_JSON_DEPTH) {
		cJSON_Delete(j);
		*why = "nests too deep";
		return NULL;
	}
	if (validate_json_nul(v, n, field, sizeof(field)) != 0) {
		cJSON_Delete(j);
		*why = "must not hold a \\u0000 escape";
		return NULL;
	}
	return j;
}

/* sm_tags_list - "a, b ,c" as a JSON array of the trimmed items (empty ones kept: refused later). */
static cJSON *
sm_tags_list(const char *v, size_t n)
{
	cJSON *arr = cJSON_CreateArray();
	size_t i = 0;

	if (arr == NULL)
		return NULL;
	for (;;) {
		const char *comma = memchr(v + i, ',', n - i);
		size_t e = comma != NULL ? (size_t)(comma - v) : n, a = i, b = e;
		char *item;
		cJSON *s;

		while (a < b && sm_ws(v[a]))
			a++;
		while (b > a && sm_ws(v[b - 1]))
			b--;
		item = malloc(b - a + 1);
		if (item == NULL)
			goto fail;
		memcpy(item, v + a, b - a);
		item[b - a] = '\0';
		s = cJSON_CreateString(item);
		free(item);
		if (s == NULL || !cJSON_AddItemToArray(arr, s)) {
			cJSON_Delete(s);
			goto fail;
		}
		if (comma == NULL)
			break;
		i = e + 1;
	}
	return arr;
fail:
	cJSON_Delete(arr);
	return NULL;
}

/* sm_ttl - "60" as a JSON number; anything else as a string (validate_options refuses it). */
static cJSON *
sm_ttl(const char *v, size_t n)
{
	size_t i = 0;

	while (i < n && v[i] >= '0' && v[i] <= '9')
		i++;
	if (n == 0 || i != n)
		return cJSON_CreateString(v);
	if (n > 15)
		return cJSON_CreateNumber(1e15);   /* out of range either way */
	return cJSON_CreateNumber((double)strtoll(v, NULL, 10));
}

static const char *
sm_field_header(const char *field)
{
	if (strncmp(field, "metadata", 8) == 0)
		return sm_opt_name[SM_OPT_METADATA];
	if (strncmp(field, "tags", 4) == 0)
		return sm_opt_name[SM_OPT_TAGS];
	if (strncmp(field, "ttl", 3) == 0)
		return sm_opt_name[SM_OPT_TTL];
	return sm_opt_name[SM_OPT_PRIORITY];
}

/* sm_options - the X-Txmail-* values (NULL: absent) into m, with the HTTP rules. */
static int
sm_options(char *const val[SM_NOPT], const size_t vlen[SM_NOPT], struct subm_msg *m, char *reply,
    size_t replylen)
{
	cJSON *node[SM_NOPT] = { 0 };
	struct msg_request req;
	struct validate_error err = { { 0 }, { 0 } };
	const char *why = NULL;
	int rc = SM_NOMEM, bad = -1;

	memset(&req, 0, sizeof(req));
	if (val[SM_OPT_METADATA] != NULL) {
		node[SM_OPT_METADATA] = sm_json(val[SM_OPT_METADATA], vlen[SM_OPT_METADATA], &why);
		if (node[SM_OPT_METADATA] == NULL) {
			bad = SM_OPT_METADATA;
			goto out;
		}
	}
	if (val[SM_OPT_TAGS] != NULL) {
		if (val[SM_OPT_TAGS][0] == '[') {
			node[SM_OPT_TAGS] = sm_json(val[SM_OPT_TAGS], vlen[SM_OPT_TAGS], &why);
			if (node[SM_OPT_TAGS] == NULL) {
				bad = SM_OPT_TAGS;
				goto out;
			}
		} else if ((node[SM_OPT_TAGS] = sm_tags_list(val[SM_OPT_TAGS], vlen[SM_OPT_TAGS])) == NULL) {
			goto out;
		}
	}
	if (val[SM_OPT_TTL] != NULL && (node[SM_OPT_TTL] = sm_ttl(val[SM_OPT_TTL], vlen[SM_OPT_TTL])) == NULL)
		goto out;
	if (val[SM_OPT_PRIORITY] != NULL &&
	    (node[SM_OPT_PRIORITY] = cJSON_CreateString(val[SM_OPT_PRIORITY])) == NULL)
		goto out;
	rc = validate_options(node[SM_OPT_METADATA], node[SM_OPT_TAGS], node[SM_OPT_TTL],
	    node[SM_OPT_PRIORITY], &req, &err);
	if (rc == -1) {
		const char *h = sm_field_header(err.field);

		if (strchr(err.field, '[') != NULL)
			sm_reply(reply, replylen, "554 5.6.0 %s: %s %s", h, err.field, err.message);
		else
			sm_reply(reply, replylen, "554 5.6.0 %s: %s", h, err.message);
		rc = SM_INVALID;
		goto out;
	}
	if (rc != 0) {
		rc = SM_NOMEM;
		goto out;
	}
	m->metadata_json = req.metadata_json;
	m->tags_json = req.tags_json;
	req.metadata_json = req.tags_json = NULL;
	m->ttl_ms = req.ttl_ms;
	m->priority_high = req.priority_high;
	if (val[SM_OPT_IDEM] != NULL) {
		if (!validate_idem_key(val[SM_OPT_IDEM])) {
			sm_reply(reply, replylen, "554 5.6.0 %s: must be 1 to %d printable ASCII characters",
			    sm_opt_name[SM_OPT_IDEM], VALIDATE_MAX_IDEM_KEY);
			rc = SM_INVALID;
			goto out;
		}
		snprintf(m->idem_key, sizeof(m->idem_key), "%s", val[SM_OPT_IDEM]);
	}
	rc = SM_OK;
out:
	if (bad >= 0) {
		sm_reply(reply, replylen, "554 5.6.0 %s: %s", sm_opt_name[bad], why);
		rc = SM_INVALID;
	}
	for (int k = 0; k < SM_NOPT; k++)
		cJSON_Delete(node[k]);
	msg_request_free(&req);
	return rc;
}

/* sm_opt_index - which X-Txmail-* field name[0..n) is (name starts "x-txmail-"), or -1. */
static int
sm_opt_index(const char *name, size_t n)
{
	for (int k = 0; k < SM_NOPT; k++) {
		size_t i = 0;

		if (n != strlen(sm_opt_name[k]))
			continue;
		while (i < n && sm_lower(name[i]) == sm_lower(sm_opt_name[k][i]))
			i++;
		if (i == n)
			return k;
	}
	return -1;
}

/* --- the message ------------------------------------------------------------------- */

static void
sm_put(char *dst, size_t *w, const char *p, size_t n)
{
	memcpy(dst + *w, p, n);
	*w += n;
}

static void
sm_field_put(char *dst, size_t *w, const char *name, const char *value)
{
	sm_put(dst, w, name, strlen(name));
	sm_put(dst, w, value, strlen(value));
	sm_put(dst, w, "\r\n", 2);
}

static int
sm_has_eol(const char *s)
{
	return strpbrk(s, "\r\n") != NULL;
}

int
subm_msg_prepare(const char *raw, size_t len, const struct subm_msg_opts *o, struct subm_msg *out,
    char *reply, size_t replylen)
{
	struct sm_scan sc = { NULL, 0, 0, 0 };
	char *val[SM_NOPT] = { 0 };
	size_t vlen[SM_NOPT] = { 0 };
	char date[64] = "";
	const char *mail_from = o != NULL && o->mail_from != NULL ? o->mail_from : "";
	const char *mid = o != NULL && o->message_id != NULL ? o->message_id : "";
	int has_mid = 0, has_date = 0, rc = SM_NOMEM;
	size_t total, w;
	int open_end;

	memset(out, 0, sizeof(*out));
	if (reply != NULL && replylen > 0)
		reply[0] = '\0';
	if (raw == NULL)
		len = 0;
	if (sm_has_eol(mail_from) || sm_has_eol(mid)) {
		sm_reply(reply, replylen, "451 4.3.0 Internal error (a CR or LF in an envelope value)");
		rc = SM_INVALID;
		goto out;
	}
	if (sm_bare_eol(raw, len)) {
		sm_reply(reply, replylen, "550 5.6.11 Bare CR or LF in the message");
		rc = SM_INVALID;
		goto out;
	}
	if (sm_scan_header(raw, len, &sc) != SM_OK)
		goto out;

	for (size_t i = 0; i < sc.n; i++) {
		struct sm_field *f = &sc.f[i];
		const char *name = raw + f->start;
		size_t nl = f->name_len;

		if (sm_eq(name, nl, "bcc") || sm_eq(name, nl, "resent-bcc")) {
			f->keep = 0;
		} else if (nl >= 9 && sm_eq(name, 9, "x-txmail-")) {
			int k = sm_opt_index(name, nl);

			f->keep = 0;
			if (k < 0) {
				sm_reply(reply, replylen, "554 5.6.0 %.*s: unknown field (X-Txmail-Metadata, "
				    "-Tags, -Priority, -TTL, -Idempotency-Key)", (int)(nl > 76 ? 76 : nl), name);
				rc = SM_INVALID;
				goto out;
			}
			if (val[k] != NULL) {
				sm_reply(reply, replylen, "554 5.6.0 %s: given more than once", sm_opt_name[k]);
				rc = SM_INVALID;
				goto out;
			}
			val[k] = sm_unfold(raw, f->value_off, f->value_end, &vlen[k]);
			if (val[k] == NULL)
				goto out;
			/* mailers encode values with '{' or '"' (nodemailer: =?UTF-8?Q?=7B=22...?=) */
			if (strstr(val[k], "=?") != NULL &&
			    f->value_end - f->value_off <= (size_t)MAILPARSE_VALUE_MAX) {
				char *d = sm_decoded(raw, f);

				if (d == NULL)
					goto out;
				free(val[k]);
				val[k] = d;
				vlen[k] = strlen(d);
			}
			if (vlen[k] > SUBM_MSG_OPT_MAX || memchr(val[k], '\0', vlen[k]) != NULL) {
				sm_reply(reply, replylen, "554 5.6.0 %s: %s", sm_opt_name[k],
				    vlen[k] > SUBM_MSG_OPT_MAX ? "is too long (max 8192 octets)" : "holds a NUL");
				rc = SM_INVALID;
				goto out;
			}
		} else if (sm_eq(name, nl, "message-id")) {
			has_mid = 1;
		} else if (sm_eq(name, nl, "date")) {
			has_date = 1;
		} else if (sm_eq(name, nl, "from") || sm_eq(name, nl, "subject")) {
			char **dst = sm_eq(name, nl, "from") ? &out->from : &out->subject;

			if (*dst == NULL && (*dst = sm_decoded(raw, f)) == NULL)
				goto out;
		} else if (sm_eq(name, nl, "to") || sm_eq(name, nl, "cc")) {
			size_t un;
			char *u = sm_unfold(raw, f->value_off, f->value_end, &un);
			int r;

			if (u == NULL)
				goto out;
			r = sm_addr_list(out, u, un, sm_eq(name, nl, "cc"));
			free(u);
			if (r != SM_OK)
				goto out;
		}
	}
	/* the input ends inside a kept field's line: that line gets its CRLF */
	open_end = sc.n > 0 && sc.body == len && sc.f[sc.n - 1].end == len && sc.f[sc.n - 1].keep &&
	    raw[len - 1] != '\n';
	rc = sm_options(val, vlen, out, reply, replylen);
	if (rc != SM_OK)
		goto out;
	rc = SM_NOMEM;

	out->added_message_id = !has_mid && mid[0] != '\0';
	out->added_date = !has_date;
	out->added_from = out->from == NULL && mail_from[0] != '\0';
	if (out->added_date)
		mime_date(o != NULL ? o->date_s : 0, date, sizeof(date));
	if (out->from == NULL && (out->from = strdup(mail_from)) == NULL)
		goto out;
	if (out->subject == NULL && (out->subject = strdup("")) == NULL)
		goto out;

	/* the size: added fields, kept fields (a CRLF added to a last line without one), CRLF, body */
	total = 2 + (len - sc.body);
	if (out->added_message_id)
		total += strlen("Message-ID: \r\n") + strlen(mid);
	if (out->added_date)
		total += strlen("Date: \r\n") + strlen(date);
	if (out->added_from)
		total += strlen("From: \r\n") + strlen(mail_from);
	for (size_t i = 0; i < sc.n; i++)
		if (sc.f[i].keep)
			total += sc.f[i].end - sc.f[i].start;
	if (open_end)
		total += 2;
	if (o != NULL && o->max_len != 0 && total > o->max_len) {
		sm_reply(reply, replylen, "552 5.3.4 Message size exceeds fixed maximum message size");
		rc = SM_INVALID;
		goto out;
	}
	out->mime = malloc(total + 1);
	if (out->mime == NULL)
		goto out;
	w = 0;
	if (out->added_message_id)
		sm_field_put(out->mime, &w, "Message-ID: ", mid);
	if (out->added_date)
		sm_field_put(out->mime, &w, "Date: ", date);
	if (out->added_from)
		sm_field_put(out->mime, &w, "From: ", mail_from);
	for (size_t i = 0; i < sc.n; i++)
		if (sc.f[i].keep)
			sm_put(out->mime, &w, raw + sc.f[i].start, sc.f[i].end - sc.f[i].start);
	if (open_end)
		sm_put(out->mime, &w, "\r\n", 2);
	sm_put(out->mime, &w, "\r\n", 2);
	out->body_off = w;
	sm_put(out->mime, &w, raw + sc.body, len - sc.body);
	if (w != total)
		abort();   /* broken invariant: the size computed above */
	out->mime[w] = '\0';
	out->mime_len = w;
	rc = SM_OK;
out:
	if (rc == SM_NOMEM)
		sm_reply(reply, replylen, "451 4.3.0 Out of memory");
	for (int k = 0; k < SM_NOPT; k++)
		free(val[k]);
	free(sc.f);
	return rc;
}

const char *
subm_msg_rcpt_kind(const struct subm_msg *m, const char *addr)
{
	int cc = 0;

	if (m == NULL || addr == NULL)
		return "bcc";
	for (size_t i = 0; i < m->n_hdr_addr; i++)
		if (sm_caseeq(m->hdr_addr[i], addr)) {
			if (!m->hdr_cc[i])
				return "to";
			cc = 1;
		}
	return cc ? "cc" : "bcc";
}

void
subm_msg_free(struct subm_msg *m)
{
	if (m == NULL)
		return;
	free(m->mime);
	free(m->from);
	free(m->subject);
	free(m->metadata_json);
	free(m->tags_json);
	for (size_t i = 0; i < m->n_hdr_addr; i++)
		free(m->hdr_addr[i]);
	free(m->hdr_addr);
	free(m->hdr_cc);
	memset(m, 0, sizeof(*m));
}
