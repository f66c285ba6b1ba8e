/*
 * dsn.c - RFC 3464 delivery status notification parser (see dsn.h).
 *
 * Owns the reading of multipart/report messages: header unfolding, the
 * Content-Type parameters it needs (report-type, boundary), the walk over
 * the top-level body parts, and the field groups of the delivery-status
 * part. It must never do I/O, log, allocate, or read past len: every
 * scan is bounded by the end pointer, and every copy by its buffer.
 */
#include "dsn.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "util.h"

#define DSN_BOUNDARY_MAX 200     /* RFC 2046: 70; some MUAs go beyond */
#define DSN_PARTS_MAX 64

struct dsn_cur {
	const char *p;
	const char *end;
};

/* One unfolded header field: name and value (truncated to their buffers). */
struct dsn_field {
	char name[64];
	char value[DSN_LINE_MAX];
};

static int
dsn_err(char *err, size_t errlen, int rc, const char *why)
{
	if (err && errlen)
		util_strlcpy(err, why, errlen);
	return rc;
}

/* dsn_line - the next line (without its LF / CRLF); 0 at the end. */
static int
dsn_line(struct dsn_cur *c, const char **line, size_t *len)
{
	const char *lf;
	size_t n;

	if (c->p >= c->end)
		return 0;
	lf = memchr(c->p, '\n', (size_t)(c->end - c->p));
	n = lf ? (size_t)(lf - c->p) : (size_t)(c->end - c->p);
	*line = c->p;
	*len = n;
	if (n > 0 && c->p[n - 1] == '\r')
		(*len)--;
	c->p = lf ? lf + 1 : c->end;
	return 1;
}

static int
dsn_blank(const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (s[i] != ' ' && s[i] != '\t')
			return 0;
	return 1;
}

/* dsn_append - add s[0..n) to buf (used so far *used), truncating at the cap. */
static void
dsn_append(char *buf, size_t cap, size_t *used, const char *s, size_t n)
{
	if (*used + 1 >= cap)
		return;
	if (n > cap - 1 - *used)
		n = cap - 1 - *used;
	memcpy(buf + *used, s, n);
	*used += n;
	buf[*used] = '\0';
}

/*
 * dsn_field_next - read one header field (with its continuation lines)
 * into f. 1: a field; 0: the header block ended (blank line consumed, or
 * the end). Lines that are not "name: value" are skipped.
 */
static int
dsn_field_next(struct dsn_cur *c, struct dsn_field *f)
{
	const char *line, *colon;
	size_t len, used, nl;

	for (;;) {
		if (!dsn_line(c, &line, &len) || dsn_blank(line, len))
			return 0;
		colon = memchr(line, ':', len);
		if (line[0] == ' ' || line[0] == '\t' || !colon || colon == line)
			continue;   /* stray continuation or garbage: tolerate */
		nl = (size_t)(colon - line);
		while (nl > 0 && (line[nl - 1] == ' ' || line[nl - 1] == '\t'))
			nl--;
		if (nl >= sizeof(f->name))
			nl = sizeof(f->name) - 1;
		memcpy(f->name, line, nl);
		f->name[nl] = '\0';
		f->value[0] = '\0';
		used = 0;
		dsn_append(f->value, sizeof(f->value), &used, colon + 1,
		    len - (size_t)(colon + 1 - line));
		break;
	}
	/* continuation lines: start with SP or HT */
	while (c->p < c->end && (c->p[0] == ' ' || c->p[0] == '\t')) {
		dsn_line(c, &line, &len);
		if (dsn_blank(line, len))
			continue;
		dsn_append(f->value, sizeof(f->value), &used, " ", 1);
		dsn_append(f->value, sizeof(f->value), &used, line, len);
	}
	return 1;
}

/* dsn_trim - strip leading/trailing blanks in place; returns the start. */
static char *
dsn_trim(char *s)
{
	size_t n;

	while (*s == ' ' || *s == '\t')
		s++;
	n = strlen(s);
	while (n > 0 && isspace((unsigned char)s[n - 1]))
		s[--n] = '\0';
	return s;
}

/*
 * dsn_param - the value of parameter name in a Content-Type value ("type;
 * a=b; c=\"d\""), unquoted, into out. 1 found, 0 not.
 */
static int
dsn_param(const char *v, const char *name, char *out, size_t outlen)
{
	size_t nlen = strlen(name);
	const char *p = strchr(v, ';');

	while (p) {
		size_t o = 0;

		p++;
		while (*p == ' ' || *p == '\t')
			p++;
		if (strncasecmp(p, name, nlen) == 0) {
			const char *q = p + nlen;

			while (*q == ' ' || *q == '\t')
				q++;
			if (*q == '=') {
				q++;
				while (*q == ' ' || *q == '\t')
					q++;
				if (*q == '"') {
					for (q++; *q && *q != '"'; q++) {
						if (*q == '\\' && q[1])
							q++;
						if (o + 1 < outlen)
							out[o++] = *q;
					}
				} else {
					for (; *q && *q != ';' && *q != ' ' && *q != '\t'; q++)
						if (o + 1 < outlen)
							out[o++] = *q;
				}
				if (outlen)
					out[o] = '\0';
				return 1;
			}
		}
		/* skip to the next ';' outside quotes */
		{
			int quoted = 0;

			for (; *p; p++) {
				if (*p == '"')
					quoted = !quoted;
				else if (*p == '\\' && quoted && p[1])
					p++;
				else if (*p == ';' && !quoted)
					break;
			}
			p = *p == ';' ? p : NULL;
		}
	}
	return 0;
}

/* dsn_ctype_is - does Content-Type value v name type t ("multipart/report")? */
static int
dsn_ctype_is(const char *v, const char *t)
{
	size_t n = strlen(t);

	while (*v == ' ' || *v == '\t')
		v++;
	return strncasecmp(v, t, n) == 0 &&
	    (v[n] == '\0' || v[n] == ';' || v[n] == ' ' || v[n] == '\t');
}

/* dsn_typed - "type; value" -> value (trimmed, angle brackets removed) into out. */
static void
dsn_typed(const char *v, char *out, size_t outlen)
{
	char tmp[DSN_LINE_MAX], *s;
	const char *semi = strchr(v, ';');
	size_t n;

	util_strlcpy(tmp, semi ? semi + 1 : v, sizeof(tmp));
	s = dsn_trim(tmp);
	n = strlen(s);
	if (n >= 2 && s[0] == '<' && s[n - 1] == '>') {
		s[n - 1] = '\0';
		s++;
	}
	util_strlcpy(out, s, outlen);
}

/* dsn_digits - 1 to 3 digits at *p; advances. 0 when none or too many. */
static int
dsn_digits(const char **p)
{
	int n = 0;

	while (isdigit((unsigned char)**p) && n <= 3) {
		(*p)++;
		n++;
	}
	return n >= 1 && n <= 3;
}

/* dsn_status - a leading "c.sss.ddd" (RFC 3463, c in 2/4/5) into out, else "". */
static void
dsn_status(const char *v, char *out, size_t outlen)
{
	const char *s, *p;

	out[0] = '\0';
	while (*v == ' ' || *v == '\t')
		v++;
	s = p = v;
	if (*p != '2' && *p != '4' && *p != '5')
		return;
	p++;
	if (*p++ != '.' || !dsn_digits(&p) || *p++ != '.' || !dsn_digits(&p))
		return;
	if (*p != '\0' && *p != ' ' && *p != '\t' && *p != '(')
		return;
	if ((size_t)(p - s) >= outlen)
		return;
	memcpy(out, s, (size_t)(p - s));
	out[p - s] = '\0';
}

/* dsn_diag - "smtp; 550 5.1.1 text" -> text (whitespace collapsed) and the code. */
static void
dsn_diag(const char *v, struct dsn_rcpt *r)
{
	const char *semi = strchr(v, ';'), *p = semi ? semi + 1 : v;
	size_t o = 0;
	int sp = 0;

	while (*p == ' ' || *p == '\t')
		p++;
	for (; *p && o + 1 < sizeof(r->diagnostic); p++) {
		if (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n') {
			sp = 1;
			continue;
		}
		if (sp && o > 0)
			r->diagnostic[o++] = ' ';
		sp = 0;
		if (o + 1 < sizeof(r->diagnostic))
			r->diagnostic[o++] = (unsigned char)*p < 0x20 ? '?' : *p;
	}
	r->diagnostic[o] = '\0';
	r->diag_code = 0;
	if (r->diagnostic[0] >= '2' && r->diagnostic[0] <= '5' &&
	    isdigit((unsigned char)r->diagnostic[1]) && isdigit((unsigned char)r->diagnostic[2]) &&
	    (r->diagnostic[3] == '\0' || r->diagnostic[3] == ' ' || r->diagnostic[3] == '-'))
		r->diag_code = (r->diagnostic[0] - '0') * 100 + (r->diagnostic[1] - '0') * 10 +
		    (r->diagnostic[2] - '0');
}

/* dsn_groups - parse the delivery-status body [c->p, c->end). */
static void
dsn_groups(struct dsn_cur *c, struct dsn *out)
{
	struct dsn_field f;
	int first = 1;

	while (c->p < c->end) {
		struct dsn_rcpt r;
		int any = 0, is_rcpt = 0;
		char reporting[sizeof(out->reporting_mta)] = "";

		memset(&r, 0, sizeof(r));
		/* skip blank lines between groups */
		while (c->p < c->end) {
			struct dsn_cur peek = *c;
			const char *line;
			size_t len;

			dsn_line(&peek, &line, &len);
			if (!dsn_blank(line, len))
				break;
			*c = peek;
		}
		while (dsn_field_next(c, &f)) {
			char *v = dsn_trim(f.value);

			any = 1;
			if (strcasecmp(f.name, "Final-Recipient") == 0) {
				dsn_typed(v, r.final_recipient, sizeof(r.final_recipient));
				is_rcpt = 1;
			} else if (strcasecmp(f.name, "Original-Recipient") == 0) {
				dsn_typed(v, r.original_recipient, sizeof(r.original_recipient));
			} else if (strcasecmp(f.name, "Action") == 0) {
				size_t i;

				for (i = 0; v[i] && !isspace((unsigned char)v[i]) && v[i] != '(' &&
				    i + 1 < sizeof(r.action); i++)
					r.action[i] = (char)tolower((unsigned char)v[i]);
				r.action[i] = '\0';
				is_rcpt = 1;
			} else if (strcasecmp(f.name, "Status") == 0) {
				dsn_status(v, r.status, sizeof(r.status));
			} else if (strcasecmp(f.name, "Diagnostic-Code") == 0) {
				dsn_diag(v, &r);
			} else if (strcasecmp(f.name, "Reporting-MTA") == 0) {
				dsn_typed(v, reporting, sizeof(reporting));
			}
		}
		if (!any)
			continue;
		if (first && reporting[0])
			util_strlcpy(out->reporting_mta, reporting, sizeof(out->reporting_mta));
		first = 0;
		if (!is_rcpt)
			continue;
		out->nrcpts_total++;
		if (out->nrcpts < DSN_RCPT_MAX)
			out->rcpts[out->nrcpts++] = r;
	}
}

/* dsn_delim - 1: boundary line, 2: closing boundary line, 0: neither. */
static int
dsn_delim(const char *line, size_t len, const char *b, size_t blen)
{
	if (len < blen + 2 || line[0] != '-' || line[1] != '-' || memcmp(line + 2, b, blen) != 0)
		return 0;
	line += blen + 2;
	len -= blen + 2;
	if (len >= 2 && line[0] == '-' && line[1] == '-')
		return dsn_blank(line + 2, len - 2) ? 2 : 0;
	return dsn_blank(line, len) ? 1 : 0;
}

/*
 * dsn_report_open - start c on msg (len bytes; have_out: the caller has
 * somewhere to put the result), read the top-level header of a
 * multipart/report whose report-type is rtype into its boundary (room
 * DSN_BOUNDARY_MAX + 1) and skip the preamble. DSN_OK with *d = 1 (a part
 * follows) or 2 (the closing delimiter came first) or 0 (no delimiter at
 * all); else DSN_ERR_*.
 */
static int
dsn_report_open(struct dsn_cur *c, const char *msg, size_t len, int have_out, const char *rtype_want,
    char *boundary, size_t *blen, int *d, char *err, size_t errlen)
{
	struct dsn_field f;
	char ctype[DSN_LINE_MAX] = "", rtype[64];
	const char *line;
	size_t ll;
	int have_ct = 0;

	if (!msg || !have_out)
		return dsn_err(err, errlen, DSN_ERR_NOT_REPORT, "no message");
	if (len > DSN_MSG_MAX)
		return dsn_err(err, errlen, DSN_ERR_TOO_BIG, "message too big");
	c->p = msg;
	c->end = msg + len;
	while (dsn_field_next(c, &f)) {
		if (strcasecmp(f.name, "Content-Type") == 0 && !have_ct) {
			util_strlcpy(ctype, f.value, sizeof(ctype));
			have_ct = 1;
		}
	}
	if (!dsn_ctype_is(ctype, "multipart/report"))
		return dsn_err(err, errlen, DSN_ERR_NOT_REPORT, "not multipart/report");
	if (!dsn_param(ctype, "report-type", rtype, sizeof(rtype)) ||
	    strcasecmp(rtype, rtype_want) != 0)
		return dsn_err(err, errlen, DSN_ERR_NOT_REPORT,
		    strcmp(rtype_want, "feedback-report") == 0 ? "report-type is not feedback-report" :
		    "report-type is not delivery-status");
	if (!dsn_param(ctype, "boundary", boundary, DSN_BOUNDARY_MAX + 1) || !boundary[0])
		return dsn_err(err, errlen, DSN_ERR_MALFORMED, "multipart/report without a boundary");
	*blen = strlen(boundary);
	if (*blen > 200)
		return dsn_err(err, errlen, DSN_ERR_MALFORMED, "boundary too long");
	/* preamble: up to the first delimiter */
	while ((*d = 0, dsn_line(c, &line, &ll)) && (*d = dsn_delim(line, ll, boundary, *blen)) == 0)
		;
	return DSN_OK;
}

/*
 * dsn_part_next - the part after a delimiter line: its Content-Type and
 * Content-Transfer-Encoding (trimmed) and its body [body->p, body->end);
 * *d becomes what ended it (1 another part, 2 the closing delimiter, 0 the
 * end of the message).
 */
static void
dsn_part_next(struct dsn_cur *c, const char *boundary, size_t blen, int *d, char *pct,
    size_t pctlen, char *cte, size_t ctelen, struct dsn_cur *body)
{
	struct dsn_field f;
	const char *line;
	size_t ll;

	pct[0] = cte[0] = '\0';
	while (dsn_field_next(c, &f)) {
		if (strcasecmp(f.name, "Content-Type") == 0)
			util_strlcpy(pct, dsn_trim(f.value), pctlen);
		else if (strcasecmp(f.name, "Content-Transfer-Encoding") == 0)
			util_strlcpy(cte, dsn_trim(f.value), ctelen);
	}
	body->p = c->p;
	body->end = c->p;
	*d = 0;
	for (;;) {
		const char *at = c->p;

		if (!dsn_line(c, &line, &ll)) {
			body->end = c->end;
			break;
		}
		if ((*d = dsn_delim(line, ll, boundary, blen)) != 0) {
			body->end = at;
			break;
		}
	}
}

/* dsn_cte_plain - no Content-Transfer-Encoding, or one that needs no decoding */
static int
dsn_cte_plain(const char *cte)
{
	return !cte[0] || strcasecmp(cte, "7bit") == 0 || strcasecmp(cte, "8bit") == 0 ||
	    strcasecmp(cte, "binary") == 0;
}

int
dsn_parse(const char *msg, size_t len, struct dsn *out, char *err, size_t errlen)
{
	struct dsn_cur c;
	char boundary[DSN_BOUNDARY_MAX + 1];
	size_t blen = 0;
	int parts = 0, found = 0, d = 0, rc;

	if (out)
		memset(out, 0, sizeof(*out));
	rc = dsn_report_open(&c, msg, len, out != NULL, "delivery-status", boundary, &blen, &d, err, errlen);
	if (rc != DSN_OK)
		return rc;
	while (d == 1 && parts < DSN_PARTS_MAX) {
		struct dsn_cur body;
		char pct[DSN_LINE_MAX], cte[64];
		int is_ds;

		parts++;
		dsn_part_next(&c, boundary, blen, &d, pct, sizeof(pct), cte, sizeof(cte), &body);
		is_ds = dsn_ctype_is(pct, "message/delivery-status") ||
		    dsn_ctype_is(pct, "message/global-delivery-status");
		if (is_ds && !found) {
			if (!dsn_cte_plain(cte))
				return dsn_err(err, errlen, DSN_ERR_MALFORMED,
				    "delivery-status part has an unsupported transfer encoding");
			found = 1;
			dsn_groups(&body, out);
		}
	}
	if (!found)
		return dsn_err(err, errlen, DSN_ERR_MALFORMED, "no message/delivery-status part");
	if (out->nrcpts == 0)
		return dsn_err(err, errlen, DSN_ERR_MALFORMED, "no per-recipient fields");
	return DSN_OK;
}

/* dsn_addr_of - the address in a header value ("Name <a@b>", "<a@b>", "a@b"; first of a list) */
static void
dsn_addr_of(const char *v, char *out, size_t outlen)
{
	const char *lt = strchr(v, '<'), *s, *e;
	size_t n;

	out[0] = '\0';
	if (lt) {
		s = lt + 1;
		e = strchr(s, '>');
		if (!e)
			return;
	} else {
		s = v;
		while (*s == ' ' || *s == '\t')
			s++;
		e = s;
		while (*e && *e != ',' && *e != ' ' && *e != '\t' && *e != ';')
			e++;
	}
	n = (size_t)(e - s);
	if (n == 0 || n >= outlen || !memchr(s, '@', n))
		return;
	memcpy(out, s, n);
	out[n] = '\0';
}

/* dsn_word - the first token of v (up to blank, ';' or '('), lower-cased, into out */
static void
dsn_word(const char *v, char *out, size_t outlen)
{
	size_t i = 0;

	while (*v == ' ' || *v == '\t')
		v++;
	for (; v[i] && v[i] != ' ' && v[i] != '\t' && v[i] != ';' && v[i] != '(' && i + 1 < outlen; i++)
		out[i] = (char)tolower((unsigned char)v[i]);
	out[i] = '\0';
}

/* dsn_printable - copy v into out, control bytes as '?' */
static void
dsn_printable(const char *v, char *out, size_t outlen)
{
	size_t i;

	util_strlcpy(out, v, outlen);
	for (i = 0; out[i]; i++)
		if ((unsigned char)out[i] < 0x20 || out[i] == 0x7f)
			out[i] = '?';
}

/* dsn_arf_fields - the message/feedback-report part's fields */
static void
dsn_arf_fields(struct dsn_cur *c, struct dsn_arf *out)
{
	struct dsn_field f;

	while (c->p < c->end) {
		int any = 0;

		while (dsn_field_next(c, &f)) {
			char *v = dsn_trim(f.value);

			any = 1;
			if (strcasecmp(f.name, "Feedback-Type") == 0 && !out->feedback_type[0])
				dsn_word(v, out->feedback_type, sizeof(out->feedback_type));
			else if (strcasecmp(f.name, "User-Agent") == 0 && !out->user_agent[0])
				dsn_printable(v, out->user_agent, sizeof(out->user_agent));
			else if (strcasecmp(f.name, "Original-Mail-From") == 0 && !out->original_mail_from[0])
				dsn_addr_of(v, out->original_mail_from, sizeof(out->original_mail_from));
			else if (strcasecmp(f.name, "Original-Rcpt-To") == 0 && !out->original_rcpt_to[0])
				dsn_addr_of(v, out->original_rcpt_to, sizeof(out->original_rcpt_to));
			else if (strcasecmp(f.name, "Source-IP") == 0 && !out->source_ip[0])
				dsn_word(v, out->source_ip, sizeof(out->source_ip));
			else if (strcasecmp(f.name, "Reported-Domain") == 0 && !out->reported_domain[0])
				dsn_word(v, out->reported_domain, sizeof(out->reported_domain));
			else if (strcasecmp(f.name, "Arrival-Date") == 0 && !out->arrival_date[0])
				dsn_printable(v, out->arrival_date, sizeof(out->arrival_date));
		}
		if (!any)
			break;   /* a blank line: the fields are one block */
	}
}

/* dsn_arf_original - the reported message's (or its headers') To and Message-ID */
static void
dsn_arf_original(struct dsn_cur *c, struct dsn_arf *out)
{
	struct dsn_field f;

	while (dsn_field_next(c, &f)) {
		char *v = dsn_trim(f.value);

		if (strcasecmp(f.name, "To") == 0 && !out->original_to[0])
			dsn_addr_of(v, out->original_to, sizeof(out->original_to));
		else if (strcasecmp(f.name, "Message-ID") == 0 && !out->original_message_id[0])
			dsn_printable(v, out->original_message_id, sizeof(out->original_message_id));
	}
}

int
dsn_arf_parse(const char *msg, size_t len, struct dsn_arf *out, char *err, size_t errlen)
{
	struct dsn_cur c;
	char boundary[DSN_BOUNDARY_MAX + 1];
	size_t blen = 0;
	int parts = 0, found = 0, d = 0, rc;

	if (out)
		memset(out, 0, sizeof(*out));
	rc = dsn_report_open(&c, msg, len, out != NULL, "feedback-report", boundary, &blen, &d, err, errlen);
	if (rc != DSN_OK)
		return rc;
	while (d == 1 && parts < DSN_PARTS_MAX) {
		struct dsn_cur body;
		char pct[DSN_LINE_MAX], cte[64];

		parts++;
		dsn_part_next(&c, boundary, blen, &d, pct, sizeof(pct), cte, sizeof(cte), &body);
		if (dsn_ctype_is(pct, "message/feedback-report") && !found) {
			if (!dsn_cte_plain(cte))
				return dsn_err(err, errlen, DSN_ERR_MALFORMED,
				    "feedback-report part has an unsupported transfer encoding");
			found = 1;
			dsn_arf_fields(&body, out);
		} else if ((dsn_ctype_is(pct, "message/rfc822") ||
		    dsn_ctype_is(pct, "text/rfc822-headers") ||
		    dsn_ctype_is(pct, "message/global") ||
		    dsn_ctype_is(pct, "message/global-headers")) && !out->has_original &&
		    dsn_cte_plain(cte)) {
			out->has_original = 1;
			dsn_arf_original(&body, out);
		}
	}
	if (!found)
		return dsn_err(err, errlen, DSN_ERR_MALFORMED, "no message/feedback-report part");
	if (!out->feedback_type[0])
		return dsn_err(err, errlen, DSN_ERR_MALFORMED, "feedback report without Feedback-Type");
	return DSN_OK;
}

int
dsn_arf_is_complaint(const char *feedback_type)
{
	static const char *const kinds[] = { "abuse", "fraud", "virus", "other" };
	size_t i;

	if (!feedback_type)
		return 0;
	for (i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
		if (strcmp(feedback_type, kinds[i]) == 0)
			return 1;
	return 0;
}

const char *
dsn_bounce_type(const char *status)
{
	if (status && status[0] == '4')
		return "soft";
	if (status && strcmp(status, "5.2.2") == 0)
		return "soft";   /* mailbox full: it may take mail again later */
	return "hard";
}

int
dsn_bounce_suppresses(const char *status)
{
	if (!status || status[0] != '5' || strcmp(dsn_bounce_type(status), "hard") != 0)
		return 0;
	return strncmp(status, "5.7.", 4) != 0;   /* a policy rejection says nothing of the address */
}
