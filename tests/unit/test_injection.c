/*
 * test_injection.c - property tests: no header or SMTP command injection
 * through any field a caller controls.
 *
 * A deterministic PRNG (xorshift64*, fixed seed) builds 20,000 JSON send
 * bodies whose strings mix CR, LF, NUL (as \u0000), TAB, ':', "\r\nBcc: x@y",
 * "\r\n.\r\n", invalid UTF-8 and CJK into every caller field: from/to/cc/
 * bcc/reply_to (display names and addresses), subject, header names and
 * values, template variables rendered into the subject, attachment
 * filename/content_type/content_id, metadata and tags. Each body goes the
 * way server/api_messages.c takes it (validate_json_nul, cJSON_Parse,
 * validate_message_at, template_render + validate_rendered, mime_build).
 * Either it is refused (-1 with a field named) or the built message holds:
 *   - exactly the expected top-level header names (txmail's own plus the
 *     caller's headers, each once; no Bcc, nothing injected), after
 *     unfolding; part headers only Content-Type/-Transfer-Encoding/
 *     -Disposition/-ID;
 *   - no NUL, no bare CR or LF, no line over 998 octets;
 *   - a "." line in the body is only harmless because the session
 *     dot-stuffs (smtp/session.c; on the wire: test_engine.c
 *     Test(engine, dot_stuffing)); here the stuffed form is checked to hold
 *     no lone "." line and to unstuff back to the message;
 *   - every envelope address (from, to, cc, bcc) passes validate_email and
 *     holds no CR, LF, NUL, '<', '>' or space (MAIL FROM/RCPT TO injection).
 * Regression inputs found by the property run are kept as fixed cases.
 * The test does no I/O and never writes outside memory.
 */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cjson/cJSON.h>

#include "../../server/template.h"
#include "../../server/validate.h"
#include "../../smtp/mime.h"

#define INJ_SEED UINT64_C(0x74786d61696c0005)
#define INJ_CASES 20000
#define INJ_NOW_MS INT64_C(1795449480000)   /* 2026-11-23 */
#define INJ_MAX_ATTACH (1024 * 1024)

/* --- PRNG ----------------------------------------------------------------- */

static uint64_t inj_state;

static uint64_t
inj_next(void)
{
	uint64_t x = inj_state;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	inj_state = x;
	return x * UINT64_C(0x2545F4914F6CDD1D);
}

static size_t
inj_below(size_t n)
{
	return (size_t)(inj_next() % n);
}

/* --- growable byte buffer ------------------------------------------------- */

struct buf {
	char *p;
	size_t len, cap;
};

static void
buf_add(struct buf *b, const char *s, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 256;

		while (cap < b->len + n + 1)
			cap *= 2;
		b->p = realloc(b->p, cap);
		cr_assert_not_null(b->p, "out of memory");
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void
buf_puts(struct buf *b, const char *s)
{
	buf_add(b, s, strlen(s));
}

/* JSON string literal of s[0..n): NUL and controls as \u00XX, bytes >= 0x80 raw */
static void
buf_json_str(struct buf *b, const char *s, size_t n)
{
	buf_add(b, "\"", 1);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		char esc[8];

		if (c == '"' || c == '\\') {
			esc[0] = '\\';
			esc[1] = (char)c;
			buf_add(b, esc, 2);
		} else if (c < 0x20) {
			snprintf(esc, sizeof(esc), "\\u%04x", c);
			buf_add(b, esc, 6);
		} else {
			buf_add(b, (const char *)&c, 1);
		}
	}
	buf_add(b, "\"", 1);
}

/* --- hostile string generator --------------------------------------------- */

struct piece {
	const char *s;
	size_t n;
};

#define P(lit) { lit, sizeof(lit) - 1 }
static const struct piece pieces[] = {
	P("a"), P("Bob"), P("x y"), P(":"), P("\r"), P("\n"), P("\r\n"), P("\0"),
	P("\t"), P("\r\nBcc: x@y"), P("\r\n.\r\n"), P("\n.\n"), P("\xff"), P("\xc3\x28"),
	P("\xe4\xb8\xad\xe6\x96\x87"), P("\xe5\xbc\xa0\xe4\xb8\x89"), P("\xc3\xa9"),
	P("<"), P(">"), P("\""), P(" "), P("."), P("=?utf-8?b?QmNjOiB4QHk=?="), P("--"),
	P("\r\n\r\n"), P("Bcc: evil@x.example"), P("\r\nSubject: hi"), P(";"), P("@"),
	P("\\"), P("\x7f"), P("\x01"), P("\xed\xa0\x80"), P("\xf0\x9f\x98\x80"),
	P("\r\nContent-Type: text/html"), P("\r\n RCPT TO:<x@y>"), P(","), P("("), P(")"),
};
#undef P

/* append 0..maxp random pieces, sometimes a long run of 'a' or of CJK */
static void
gen_hostile(struct buf *b, size_t maxp)
{
	size_t np = inj_below(maxp + 1);

	for (size_t i = 0; i < np; i++) {
		size_t r = inj_below(40);

		if (r == 0) {
			size_t run = 60 + inj_below(1100);

			for (size_t k = 0; k < run; k++)
				buf_add(b, "a", 1);
		} else if (r == 1) {
			size_t run = 20 + inj_below(400);

			for (size_t k = 0; k < run; k++)
				buf_add(b, "\xe4\xb8\xad", 3);
		} else {
			const struct piece *p = &pieces[inj_below(sizeof(pieces) / sizeof(pieces[0]))];

			buf_add(b, p->s, p->n);
		}
	}
}

/* per body: percent of fields made hostile (3, 10 or 35) */
static unsigned inj_hostile_pct;

static int
inj_hostile(void)
{
	return inj_below(100) < inj_hostile_pct;
}

/* a string: clean, or hostile (any bytes) in inj_hostile_pct percent */
static void
gen_text(struct buf *b, const char *clean)
{
	if (!inj_hostile())
		buf_puts(b, clean);
	else
		gen_hostile(b, 6);
}

/* an address string "Name <local@domain>" with hostile parts */
static void
gen_addr(struct buf *b, unsigned n)
{
	char local[32];

	snprintf(local, sizeof(local), "u%u", n);
	if (!inj_hostile()) {
		buf_puts(b, "Name <");
		buf_puts(b, local);
		buf_puts(b, "@example.com>");
		return;
	}
	switch (inj_below(6)) {
	case 0:   /* hostile display name, clean address */
		buf_add(b, "\"", inj_below(2));
		gen_hostile(b, 5);
		buf_puts(b, " <");
		buf_puts(b, local);
		buf_puts(b, "@example.com>");
		break;
	case 1:   /* unquoted hostile name */
		gen_hostile(b, 4);
		buf_puts(b, " <");
		buf_puts(b, local);
		buf_puts(b, "@example.com>");
		break;
	case 2:   /* hostile local part */
		buf_puts(b, local);
		gen_hostile(b, 2);
		buf_puts(b, "@example.com");
		break;
	case 3:   /* hostile domain */
		buf_puts(b, local);
		buf_puts(b, "@ex");
		gen_hostile(b, 2);
		buf_puts(b, ".com");
		break;
	case 4:   /* all hostile */
		gen_hostile(b, 6);
		break;
	default:  /* clean with a CJK name */
		buf_puts(b, "\xe5\xbc\xa0\xe4\xb8\x89 <");
		buf_puts(b, local);
		buf_puts(b, "@\xe4\xbe\x8b\xe5\xad\x90.example>");
		break;
	}
}

static void
gen_addr_json(struct buf *out, unsigned n)
{
	struct buf s = { 0 };

	buf_add(&s, "", 0);
	gen_addr(&s, n);
	buf_json_str(out, s.p, s.len);
	free(s.p);
}

static void
gen_text_json(struct buf *out, const char *clean)
{
	struct buf s = { 0 };

	buf_add(&s, "", 0);
	gen_text(&s, clean);
	buf_json_str(out, s.p, s.len);
	free(s.p);
}

static void
gen_list(struct buf *j, const char *key, size_t max, unsigned *n)
{
	size_t cnt = inj_below(max + 1);

	if (cnt == 0)
		return;
	buf_puts(j, ",\"");
	buf_puts(j, key);
	buf_puts(j, "\":[");
	for (size_t i = 0; i < cnt; i++) {
		if (i > 0)
			buf_puts(j, ",");
		gen_addr_json(j, (*n)++);
	}
	buf_puts(j, "]");
}

/* one random send body as JSON text */
static void
gen_body(struct buf *j)
{
	static const unsigned pct[] = { 3, 10, 35 };
	unsigned n = 0;

	inj_hostile_pct = pct[inj_below(3)];
	buf_puts(j, "{\"from\":");
	gen_addr_json(j, n++);
	buf_puts(j, ",\"to\":[");
	gen_addr_json(j, n++);
	buf_puts(j, "]");
	gen_list(j, "to", 0, &n);
	gen_list(j, "cc", 2, &n);
	gen_list(j, "bcc", 2, &n);
	gen_list(j, "reply_to", 2, &n);
	if (inj_below(4) == 0) {
		buf_puts(j, ",\"template\":\"t1\",\"variables\":{\"name\":");
		gen_text_json(j, "Ann");
		buf_puts(j, ",\"x\":");
		gen_text_json(j, "X");
		buf_puts(j, "}");
	} else {
		if (inj_below(4) != 0) {
			buf_puts(j, ",\"subject\":");
			gen_text_json(j, "Your receipt");
		}
		buf_puts(j, ",\"text\":");
		gen_text_json(j, "Hello\r\n.\r\nbye");
		if (inj_below(2) == 0) {
			buf_puts(j, ",\"html\":");
			gen_text_json(j, "<p>Hi</p>");
		}
	}
	if (inj_below(2) == 0) {
		size_t nh = 1 + inj_below(3);

		buf_puts(j, ",\"headers\":{");
		for (size_t i = 0; i < nh; i++) {
			char clean[32];

			snprintf(clean, sizeof(clean), "X-Custom-%zu", i);
			if (i > 0)
				buf_puts(j, ",");
			gen_text_json(j, clean);
			buf_puts(j, ":");
			gen_text_json(j, "value");
		}
		buf_puts(j, "}");
	}
	if (inj_below(3) == 0) {
		buf_puts(j, ",\"metadata\":{\"k\":");
		gen_text_json(j, "v");
		buf_puts(j, ",");
		gen_text_json(j, "key2");
		buf_puts(j, ":");
		gen_text_json(j, "v2");
		buf_puts(j, "},\"tags\":[");
		gen_text_json(j, "tag");
		buf_puts(j, "]");
	}
	if (inj_below(3) == 0) {
		size_t na = 1 + inj_below(2);

		buf_puts(j, ",\"attachments\":[");
		for (size_t i = 0; i < na; i++) {
			if (i > 0)
				buf_puts(j, ",");
			buf_puts(j, "{\"filename\":");
			gen_text_json(j, "report.pdf");
			buf_puts(j, ",\"content\":\"SGVsbG8sIHdvcmxkIQ==\"");
			if (inj_below(2) == 0) {
				buf_puts(j, ",\"content_type\":");
				gen_text_json(j, "application/pdf");
			}
			if (inj_below(3) == 0) {
				buf_puts(j, ",\"content_id\":");
				gen_text_json(j, "logo@acme.example");
			}
			buf_puts(j, "}");
		}
		buf_puts(j, "]");
	}
	buf_puts(j, "}");
}

/* --- checks on the built message ------------------------------------------ */

struct hdr_names {
	char name[24][80];
	size_t n;
};

static int
envelope_ok(const char *e)
{
	if (e == NULL || validate_email(e) != 1)
		return 0;
	for (const char *p = e; *p != '\0'; p++)
		if (*p == '\r' || *p == '\n' || *p == '<' || *p == '>' || *p == ' ')
			return 0;
	return 1;
}

/* line [s, s+len) as a header line: name into out (lower case); 0 or -1 */
static int
header_name_of(const char *s, size_t len, char *out, size_t outlen)
{
	size_t i = 0;

	while (i < len && s[i] != ':') {
		unsigned char c = (unsigned char)s[i];

		if (c < 33 || c > 126 || i + 1 >= outlen)
			return -1;
		out[i] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
		i++;
	}
	if (i == 0 || i == len)
		return -1;
	out[i] = '\0';
	return 0;
}

/* boundary="..." in an unfolded header value; adds to the known list */
static void
boundary_of(const char *v, size_t len, char bounds[][80], size_t *nb)
{
	static const char key[] = "boundary=\"";
	const char *p = memmem(v, len, key, sizeof(key) - 1);
	const char *e;

	if (p == NULL || *nb >= 8)
		return;
	p += sizeof(key) - 1;
	e = memchr(p, '"', len - (size_t)(p - v));
	if (e == NULL || (size_t)(e - p) >= 80)
		return;
	memcpy(bounds[*nb], p, (size_t)(e - p));
	bounds[*nb][e - p] = '\0';
	(*nb)++;
}

static const char *const part_names[] = {
	"content-type", "content-transfer-encoding", "content-disposition", "content-id",
};

#define CHECK(cond, ...) do { \
	if (!(cond)) { \
		snprintf(why, whylen, __VA_ARGS__); \
		rc = -1; \
		goto out; \
	} \
} while (0)

/*
 * check_built - the properties of one built message. want/nwant: the
 * expected top-level names (lower case) each exactly once; optional ones may
 * be there at most once. 0, or -1 with why filled.
 */
static int
check_built(const char *m, size_t len, const char *const *want, size_t nwant,
    char *why, size_t whylen)
{
	static const char *const optional[] = { "content-transfer-encoding" };
	char bounds[8][80];
	size_t nb = 0, nlines = 0;
	const char *p = m, *end = m + len;
	int in_hdr = 1, top = 1;
	struct hdr_names seen = { .n = 0 };
	int rc = 0;
	struct buf unf = { 0 };

	CHECK(memchr(m, '\0', len) == NULL, "NUL in the message");
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t l;

		CHECK(nl != NULL, "last line has no CRLF");
		CHECK(nl > p && nl[-1] == '\r', "bare LF at offset %td", nl - m);
		l = (size_t)(nl - 1 - p);
		CHECK(memchr(p, '\r', l) == NULL, "bare CR in line %zu", nlines);
		CHECK(l <= 998, "line %zu is %zu octets, want <= 998", nlines, l);
		nlines++;

		if (in_hdr) {
			if (l == 0 || (p[0] != ' ' && p[0] != '\t')) {
				/* a header ends: look at the unfolded previous one */
				if (unf.len > 0) {
					char name[80];

					CHECK(header_name_of(unf.p, unf.len, name, sizeof(name)) == 0,
					    "not a header line: \"%.80s\"", unf.p);
					if (strcmp(name, "content-type") == 0)
						boundary_of(unf.p, unf.len, bounds, &nb);
					if (top) {
						CHECK(seen.n < 64, "too many headers");
						memcpy(seen.name[seen.n++], name, sizeof(name));
					} else {
						int ok = 0;

						for (size_t k = 0; k < 4; k++)
							ok |= strcmp(name, part_names[k]) == 0;
						CHECK(ok, "part header \"%s\", want only Content-*", name);
					}
					unf.len = 0;
				}
				if (l == 0) {
					in_hdr = 0;
					top = 0;
				} else {
					buf_add(&unf, p, l);
				}
			} else {
				buf_add(&unf, p, l);   /* folded continuation */
			}
		} else {
			/* a body line: a boundary starts a part header block */
			for (size_t k = 0; k < nb; k++) {
				size_t bl = strlen(bounds[k]);

				if (l == bl + 2 && p[0] == '-' && p[1] == '-' &&
				    memcmp(p + 2, bounds[k], bl) == 0) {
					in_hdr = 1;
					unf.len = 0;
				}
			}
		}
		p = nl + 1;
	}
	CHECK(!top, "no empty line after the header block");

	/* top-level names: each wanted one exactly once, optional <= 1, nothing else */
	for (size_t i = 0; i < seen.n; i++) {
		size_t cnt = 0;
		int known = 0;

		for (size_t k = 0; k < seen.n; k++)
			cnt += strcmp(seen.name[i], seen.name[k]) == 0;
		CHECK(cnt == 1, "header \"%s\" appears %zu times, want 1", seen.name[i], cnt);
		for (size_t k = 0; k < nwant; k++)
			known |= strcasecmp(seen.name[i], want[k]) == 0;
		for (size_t k = 0; k < sizeof(optional) / sizeof(optional[0]); k++)
			known |= strcmp(seen.name[i], optional[k]) == 0;
		CHECK(known, "unexpected top-level header \"%s\"", seen.name[i]);
	}
	for (size_t k = 0; k < nwant; k++) {
		int found = 0;

		for (size_t i = 0; i < seen.n; i++)
			found |= strcasecmp(seen.name[i], want[k]) == 0;
		CHECK(found, "header \"%s\" missing", want[k]);
	}
out:
	free(unf.p);
	return rc;
}

#undef CHECK

/*
 * The session's transparency (RFC 5321 4.5.2) as smtp/session.c applies it:
 * a '.' at the start of a line is doubled. The stuffed stream must hold no
 * lone "." line and unstuff to the original.
 */
static void
check_dot_stuffing(unsigned cs, const char *m, size_t len)
{
	struct buf st = { 0 };
	int bol = 1;

	buf_add(&st, "", 0);
	for (size_t i = 0; i < len; i++) {
		if (bol && m[i] == '.')
			buf_add(&st, ".", 1);
		buf_add(&st, m + i, 1);
		bol = m[i] == '\n';
	}
	cr_assert(st.len < 3 || memcmp(st.p, ".\r\n", 3) != 0, "case %u: lone dot first", cs);
	cr_assert_null(memmem(st.p, st.len, "\r\n.\r\n", 5),
	    "case %u: a lone \".\" line survives dot-stuffing", cs);
	/* unstuff */
	{
		size_t o = 0;

		bol = 1;
		for (size_t i = 0; i < st.len; i++) {
			if (bol && st.p[i] == '.')
				i++;
			cr_assert(i < st.len, "case %u: stuffing ends in a dot", cs);
			cr_assert_eq(st.p[i], m[o], "case %u: unstuffed byte %zu differs", cs, o);
			o++;
			bol = st.p[i] == '\n';
		}
		cr_assert_eq(o, len, "case %u: unstuffed %zu bytes, want %zu", cs, o, len);
	}
	free(st.p);
}

/* render the stored-template stand-in into r, as messages_apply_template does */
static int
apply_template(struct msg_request *r, struct validate_error *err)
{
	static const char *const src[3] = {
		"Hello {{name}} {{{x}}}", "Dear {{name}}, {{{x}}}", "<p>{{name}} {{{x}}}</p>",
	};
	char *outs[3] = { NULL, NULL, NULL };
	char name[96];
	int rc = -1;

	for (int k = 0; k < 3; k++) {
		size_t olen;

		if (template_render(src[k], strlen(src[k]), r->variables, k == 2, 64 * 1024,
		    &outs[k], &olen, name, sizeof(name)) != 0) {
			snprintf(err->field, sizeof(err->field), "variables.%s", name);
			goto out;
		}
	}
	free(r->subject);
	free(r->text);
	free(r->html);
	r->subject = outs[0];
	r->text = outs[1];
	r->html = outs[2];
	outs[0] = outs[1] = outs[2] = NULL;
	rc = validate_rendered(r, "", err);
out:
	for (int k = 0; k < 3; k++)
		free(outs[k]);
	return rc;
}

struct run_stats {
	unsigned accepted, refused, dots;
};

/*
 * run_one - the API path for one JSON text. Returns 1 accepted (and all
 * properties checked), 0 refused with the field named in rfield.
 */
static int
run_one(unsigned cs, const char *json, size_t jlen, struct run_stats *st,
    char *rfield, size_t rfieldlen)
{
	struct validate_error err;
	struct msg_request r;
	struct mime_message mm;
	char *out = NULL;
	size_t out_len = 0;
	const char *want[16];
	size_t nwant = 0;
	cJSON *body;
	int rc;

	rfield[0] = '\0';
	if (validate_json_nul(json, jlen, rfield, rfieldlen)) {
		st->refused++;
		return 0;
	}
	body = cJSON_ParseWithLength(json, jlen);
	cr_assert_not_null(body, "case %u: generator made invalid JSON: %s", cs, json);
	rc = validate_message_at(body, INJ_NOW_MS, INJ_MAX_ATTACH, "", &r, &err);
	cJSON_Delete(body);
	cr_assert(rc == 0 || rc == -1, "case %u: validate_message_at returned %d", cs, rc);
	if (rc == -1) {
		cr_assert(err.field[0] != '\0' || strstr(err.message, "object") != NULL,
		    "case %u: refusal names no field (%s)", cs, err.message);
		snprintf(rfield, rfieldlen, "%s", err.field);
		msg_request_free(&r);
		st->refused++;
		return 0;
	}
	if (r.template_name != NULL && apply_template(&r, &err) != 0) {
		cr_assert(err.field[0] != '\0', "case %u: template refusal names no field", cs);
		snprintf(rfield, rfieldlen, "%s", err.field);
		msg_request_free(&r);
		st->refused++;
		return 0;
	}

	/* the envelope: MAIL FROM and every RCPT TO */
	cr_assert(envelope_ok(r.from.email), "case %u: from \"%s\" unsafe in MAIL FROM", cs,
	    r.from.email);
	for (size_t i = 0; i < r.nto; i++)
		cr_assert(envelope_ok(r.to[i].email), "case %u: to[%zu] unsafe", cs, i);
	for (size_t i = 0; i < r.ncc; i++)
		cr_assert(envelope_ok(r.cc[i].email), "case %u: cc[%zu] unsafe", cs, i);
	for (size_t i = 0; i < r.nbcc; i++)
		cr_assert(envelope_ok(r.bcc[i].email), "case %u: bcc[%zu] unsafe", cs, i);
	for (size_t i = 0; i < r.nreply_to; i++)
		cr_assert(envelope_ok(r.reply_to[i].email), "case %u: reply_to[%zu] unsafe", cs, i);

	memset(&mm, 0, sizeof(mm));
	mm.from = r.from;
	mm.to = r.to;
	mm.nto = r.nto;
	mm.cc = r.cc;
	mm.ncc = r.ncc;
	mm.reply_to = r.reply_to;
	mm.nreply_to = r.nreply_to;
	mm.subject = r.subject;
	mm.text = r.text;
	mm.html = r.html;
	mm.headers = r.headers;
	mm.nheaders = r.nheaders;
	mm.attachments = r.attachments;
	mm.nattachments = r.nattachments;
	mm.date_s = INJ_NOW_MS / 1000;
	mm.message_id = "<01injection@test.example>";
	mm.boundary_seed = UINT64_C(0x9e3779b97f4a7c15) * (cs + 1);
	rc = mime_build(&mm, &out, &out_len);
	cr_assert_eq(rc, 0, "case %u: mime_build returned %d for an accepted request", cs, rc);

	want[nwant++] = "date";
	want[nwant++] = "from";
	want[nwant++] = "message-id";
	want[nwant++] = "mime-version";
	want[nwant++] = "content-type";
	if (r.nto > 0)
		want[nwant++] = "to";
	if (r.ncc > 0)
		want[nwant++] = "cc";
	if (r.nreply_to > 0)
		want[nwant++] = "reply-to";
	if (r.subject != NULL && r.subject[0] != '\0')   /* mime_build omits an empty one */
		want[nwant++] = "subject";
	{
		const char *all[16 + 50];
		size_t nall = 0;

		for (size_t i = 0; i < nwant; i++)
			all[nall++] = want[i];
		for (size_t i = 0; i < r.nheaders && nall < sizeof(all) / sizeof(all[0]); i++)
			all[nall++] = r.headers[i].name;
		char why[256];

		cr_assert_eq(check_built(out, out_len, all, nall, why, sizeof(why)), 0,
		    "case %u: %s", cs, why);
	}
	if (memmem(out, out_len, "\r\n.\r\n", 5) != NULL)
		st->dots++;
	check_dot_stuffing(cs, out, out_len);
	free(out);
	msg_request_free(&r);
	st->accepted++;
	return 1;
}

/* --- the tests ------------------------------------------------------------ */

/* the checker itself must see what it looks for (else the property run proves nothing) */
#define HDRS "Date: x\r\nFrom: a@b.example\r\nTo: c@d.example\r\nMessage-ID: <i@h>\r\n" \
	"MIME-Version: 1.0\r\n"
static const struct {
	const char *msg;
	const char *want;   /* NULL: passes; else a substring of the reason */
} checker_cases[] = {
	{ HDRS "Content-Type: text/plain\r\n\r\nhi\r\n", NULL },
	{ HDRS "Content-Type: text/plain;\r\n\tcharset=utf-8\r\n\r\nhi\r\n", NULL },
	{ HDRS "Bcc: x@y\r\nContent-Type: text/plain\r\n\r\nhi\r\n", "unexpected top-level header \"bcc\"" },
	{ HDRS "Content-Type: text/plain\r\nTo: x@y\r\n\r\nhi\r\n", "\"to\" appears 2 times" },
	{ HDRS "\r\nhi\r\n", "\"content-type\" missing" },
	{ HDRS "Content-Type: text/plain\nBcc: x@y\r\n\r\nhi\r\n", "bare LF" },
	{ HDRS "Content-Type: text/plain\rBcc: x@y\r\n\r\nhi\r\n", "bare CR" },
	{ HDRS "Content-Type: text/plain\r\nnot a header\r\n\r\nhi\r\n", "not a header line" },
	{ HDRS "Content-Type: text/plain\r\n\r\nhi", "no CRLF" },
	{ HDRS "Content-Type: multipart/mixed; boundary=\"BB\"\r\n\r\n--BB\r\n"
	  "Content-Type: text/plain\r\nBcc: x@y\r\n\r\nhi\r\n--BB--\r\n", "part header \"bcc\"" },
	{ HDRS "Content-Type: multipart/mixed; boundary=\"BB\"\r\n\r\n--BB\r\n"
	  "Content-Type: text/plain\r\nContent-ID: <x>\r\n\r\nhi\r\n--BB--\r\n", NULL },
	{ HDRS "Content-Type: text/plain\r\n", "no empty line" },
};
#undef HDRS

Test(injection, checker_catches_bad_messages)
{
	static const char *const want[] = { "date", "from", "to", "message-id", "mime-version",
	                                    "content-type" };
	char why[256];

	for (size_t i = 0; i < sizeof(checker_cases) / sizeof(checker_cases[0]); i++) {
		const char *m = checker_cases[i].msg;
		int rc;

		why[0] = '\0';
		rc = check_built(m, strlen(m), want, 6, why, sizeof(why));
		if (checker_cases[i].want == NULL) {
			cr_assert_eq(rc, 0, "checker case %zu: got refusal \"%s\", want pass", i, why);
		} else {
			cr_assert_eq(rc, -1, "checker case %zu: got pass, want \"%s\"", i,
			    checker_cases[i].want);
			cr_assert_not_null(strstr(why, checker_cases[i].want),
			    "checker case %zu: got \"%s\", want \"%s\"", i, why, checker_cases[i].want);
		}
	}
	/* a long line */
	{
		struct buf b = { 0 };

		buf_puts(&b, "Date: x\r\nFrom: a@b.example\r\nTo: c@d.example\r\n"
		    "Message-ID: <i@h>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\n");
		for (int k = 0; k < 999; k++)
			buf_add(&b, "a", 1);
		buf_puts(&b, "\r\n");
		cr_assert_eq(check_built(b.p, b.len, want, 6, why, sizeof(why)), -1,
		    "999-octet line: got pass, want refusal");
		cr_assert_not_null(strstr(why, "999 octets"), "got \"%s\", want a line length", why);
		free(b.p);
	}
}

Test(injection, random_send_bodies)
{
	struct run_stats st = { 0, 0, 0 };

	inj_state = INJ_SEED;
	for (unsigned cs = 0; cs < INJ_CASES; cs++) {
		struct buf j = { 0 };

		gen_body(&j);
		char field[128];

		run_one(cs, j.p, j.len, &st, field, sizeof(field));
		free(j.p);
	}
	cr_log_info("injection: %u accepted, %u refused, %u with a \".\" line", st.accepted,
	    st.refused, st.dots);
	/* the run must exercise both sides, or it proves nothing */
	cr_assert(st.accepted >= INJ_CASES / 20, "accepted %u, want >= %u", st.accepted,
	    INJ_CASES / 20);
	cr_assert(st.refused >= INJ_CASES / 20, "refused %u, want >= %u", st.refused,
	    INJ_CASES / 20);
	cr_assert(st.dots > 0, "no accepted message had a \".\" line; the dot check is idle");
}

/* accepted addresses never carry what would break MAIL FROM:<..>/RCPT TO:<..> */
Test(injection, random_envelope_addresses)
{
	unsigned accepted = 0;

	inj_state = INJ_SEED ^ UINT64_C(0x5a5a);
	for (unsigned cs = 0; cs < INJ_CASES; cs++) {
		struct buf b = { 0 };
		char why[160];
		char *name = NULL, *email = NULL;

		buf_add(&b, "", 0);
		inj_hostile_pct = 90;
		gen_addr(&b, cs);
		/* validate_email sees the C string (a NUL cuts it, as cJSON would) */
		if (validate_email(b.p)) {
			cr_assert(envelope_ok(b.p), "case %u: validate_email accepted \"%s\"", cs, b.p);
			accepted++;
		}
		if (validate_address(b.p, &name, &email, why, sizeof(why)) == 0) {
			cr_assert(envelope_ok(email), "case %u: validate_address gave email \"%s\"", cs,
			    email);
			if (name != NULL)
				for (const char *p = name; *p != '\0'; p++)
					cr_assert(*p != '\r' && *p != '\n',
					    "case %u: display name holds CR/LF", cs);
		}
		free(name);
		free(email);
		free(b.p);
	}
	cr_assert(accepted > 0, "no address accepted; the generator is broken");
}

/*
 * Fixed cases: known injection attempts, each refused naming its field or
 * accepted (want "") and then held to every property above.
 */
static const struct {
	const char *json;
	const char *field;
} fixed_cases[] = {
	{ "{\"from\":\"a@example.com\",\"to\":[\"b@example.com\"],\"subject\":\"hi\\r\\nBcc: x@y\",\"text\":\"t\"}", "subject" },
	{ "{\"from\":\"a@example.com\",\"to\":[\"b@example.com\"],\"text\":\"t\",\"headers\":{\"X-A\":\"v\\r\\nBcc: x@y\"}}", "headers.X-A" },
	{ "{\"from\":\"a@example.com\",\"to\":[\"b@example.com\"],\"text\":\"t\",\"headers\":{\"X-A\\r\\nBcc\":\"x@y\"}}", "headers.X-A??Bcc" },
	{ "{\"from\":\"a@example.com\",\"to\":[\"b@example.com\"],\"text\":\"t\",\"headers\":{\"bcc\":\"x@y\"}}", "headers.bcc" },
	{ "{\"from\":\"Evil\\r\\nBcc: x@y <a@example.com>\",\"to\":[\"b@example.com\"],\"text\":\"t\"}", "from" },
	{ "{\"from\":\"a@example.com\\r\\nRCPT TO:<x@y>\",\"to\":[\"b@example.com\"],\"text\":\"t\"}", "from" },
	{ "{\"from\":\"a@example.com\",\"to\":[\"b@example.com>\\r\\nRCPT TO:<x@y\"],\"text\":\"t\"}", "to[0]" },
	{ "{\"from\":\"a@example.com\",\"to\":[\"b@exa\\u0000mple.com\"],\"text\":\"t\"}", "to[0]" },
	{ "{\"from\":\"a@example.com\",\"to\":[\"b@example.com\"],\"text\":\"a\\r\\n.\\r\\nMAIL FROM:<x@y>\\r\\n\"}", "" },
	{ "{\"from\":\"a@example.com\",\"to\":[\"b@example.com\"],\"text\":\"t\",\"attachments\":[{\"filename\":\"a\\r\\nBcc: x@y\",\"content\":\"SGk=\"}]}", "attachments[0].filename" },
	{ "{\"from\":\"a@example.com\",\"to\":[\"b@example.com\"],\"text\":\"t\",\"attachments\":[{\"filename\":\"a.pdf\",\"content\":\"SGk=\",\"content_type\":\"text/plain\\r\\nBcc: x@y\"}]}", "attachments[0].content_type" },
	{ "{\"from\":\"a@example.com\",\"to\":[\"b@example.com\"],\"html\":\"<p>x</p>\",\"attachments\":[{\"filename\":\"l.png\",\"content\":\"SGk=\",\"content_id\":\"x>\\r\\nBcc: <y\"}]}", "attachments[0].content_id" },
	{ "{\"from\":\"a@example.com\",\"to\":[\"b@example.com\"],\"template\":\"t1\",\"variables\":{\"name\":\"x\\r\\nBcc: x@y\",\"x\":\"y\"}}", "subject" },
	{ "{\"from\":\"\\\"\\u4e2d\\u6587: \\\" <a@example.com>\",\"to\":[\"\\\"=?utf-8?b?QmNjOiB4QHk=?=\\\" <b@example.com>\"],\"subject\":\"\\u4e2d\\u6587\\t:\",\"text\":\"t\"}", "" },
	{ "{\"from\":\"a@example.com\",\"to\":[\"b@example.com\"],\"text\":\"t\",\"metadata\":{\"k\\r\\nBcc\":\"x\\r\\n\"}}", "" },
	{ "{\"from\":\"a@example.com\",\"to\":[\"b@example.com\"],\"text\":\"t\",\"tags\":[\"a\\r\\nb\"]}", "tags[0]" },
	{ "{\"from\":\"a@example.com\",\"to\":[\"b@example.com\"],\"text\":\"t\",\"attachments\":[{\"filename\":\"a\\\"; x=\\\"y.pdf\",\"content\":\"SGk=\"}]}", "" },
};

Test(injection, fixed_cases)
{
	struct run_stats st = { 0, 0, 0 };

	for (size_t i = 0; i < sizeof(fixed_cases) / sizeof(fixed_cases[0]); i++) {
		char field[128];
		int got = run_one(100000u + (unsigned)i, fixed_cases[i].json,
		    strlen(fixed_cases[i].json), &st, field, sizeof(field));

		if (fixed_cases[i].field[0] == '\0')
			cr_assert_eq(got, 1, "fixed case %zu: got refusal at \"%s\", want accepted", i,
			    field);
		else
			cr_assert(got == 0 && strcmp(field, fixed_cases[i].field) == 0,
			    "fixed case %zu: got %s \"%s\", want refusal at \"%s\"", i,
			    got ? "accepted" : "refusal at", field, fixed_cases[i].field);
	}
}

/*
 * Longest accepted values: a 76-octet header name with a 998-octet value
 * without a space (only folding or encoding keeps it under 998), the same
 * in the subject, and a display name of CJK; each accepted and held to
 * every property, or refused naming the field.
 */
Test(injection, longest_values)
{
	static const char *const unit[] = { "a", "\xe4\xb8\xad", "a\t" };
	struct run_stats st = { 0, 0, 0 };
	unsigned cs = 200000;

	for (size_t u = 0; u < 3; u++) {
		size_t ul = strlen(unit[u]);
		struct buf v = { 0 }, j = { 0 };
		char name[80], field[128];

		buf_add(&v, "", 0);
		while (v.len + ul <= 998)
			buf_add(&v, unit[u], ul);
		memset(name, 'X', 76);
		name[76] = '\0';
		buf_puts(&j, "{\"from\":");
		{
			struct buf a = { 0 };

			buf_add(&a, v.p, v.len > 900 ? 900 : v.len);
			buf_puts(&a, " <a@example.com>");
			buf_json_str(&j, a.p, a.len);
			free(a.p);
		}
		buf_puts(&j, ",\"to\":[\"b@example.com\"],\"text\":\"t\",\"subject\":");
		buf_json_str(&j, v.p, v.len);
		buf_puts(&j, ",\"headers\":{");
		buf_json_str(&j, name, 76);
		buf_puts(&j, ":");
		buf_json_str(&j, v.p, v.len);
		buf_puts(&j, "}}");
		if (run_one(cs++, j.p, j.len, &st, field, sizeof(field)) == 0)
			cr_assert(field[0] != '\0', "unit %zu: refused without a field", u);
		free(v.p);
		free(j.p);
	}
	cr_log_info("longest_values: %u accepted, %u refused", st.accepted, st.refused);
}
