/*
 * submit_proto.c - the pure protocol half of SMTP submission: command
 * lines, MAIL/RCPT paths and parameters, AUTH data, the DATA reader.
 *
 * It owns the rules of what a submission client may send; the listener
 * (not built yet) owns sockets, TLS, timeouts, counts and the store. It
 * must never do I/O, log, sleep or allocate, and never treat anything but
 * CRLF "." CRLF as the end of a message. Addresses are checked by
 * validate_email, the same check the HTTP API applies, so a mailbox that
 * comes in over SMTP meets the same rules as one in a JSON body.
 */
#include "submit_proto.h"

#include "validate.h"

#include <limits.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

const char *
subm_reply(int err)
{
	switch (err) {
	case SUBM_OK: return "250 2.0.0 Ok";
	case SUBM_ERR_UNKNOWN_CMD: return "500 5.5.2 Error: command not recognized";
	case SUBM_ERR_SYNTAX: return "501 5.5.4 Syntax error in parameters or arguments";
	case SUBM_ERR_ADDR: return "553 5.1.3 Bad address syntax";
	case SUBM_ERR_PARAM: return "555 5.5.4 Unsupported MAIL or RCPT parameter";
	case SUBM_ERR_SIZE: return "552 5.3.4 Message size exceeds fixed limit";
	case SUBM_ERR_MECH: return "504 5.5.4 Unrecognized authentication mechanism";
	case SUBM_ERR_AUTH_CANCEL: return "501 5.0.0 Authentication cancelled";
	case SUBM_ERR_AUTH_DATA: return "501 5.5.2 Cannot decode authentication data";
	case SUBM_ERR_LINE_TOO_LONG: return "500 5.5.2 Error: line too long";
	case SUBM_ERR_BARE_EOL: return "500 5.5.2 Error: bare CR or LF in command line";
	case SUBM_ERR_DATA_BARE_EOL:
		return "550 5.6.11 Message refused: bare CR or LF (lines must end with CRLF)";
	case SUBM_ERR_UTF8: return "553 5.6.7 Non-ASCII address requires SMTPUTF8";
	default: return "451 4.3.0 Internal error";
	}
}

/* --- command lines -------------------------------------------------------- */

int
subm_next_line(const char *buf, size_t len, size_t cap, size_t *line_len, size_t *consumed)
{
	if (cap == 0)
		cap = SUBM_LINE_DEFAULT;
	if (cap > SUBM_LINE_MAX)
		cap = SUBM_LINE_MAX;
	if (cap < 2)
		cap = 2;
	*line_len = 0;
	*consumed = 0;
	for (size_t i = 0; i < len; i++) {
		if (buf[i] == '\n')
			return SUBM_ERR_BARE_EOL;
		if (buf[i] == '\r') {
			if (i + 1 == len)
				return 0;
			if (buf[i + 1] != '\n')
				return SUBM_ERR_BARE_EOL;
			*line_len = i;
			*consumed = i + 2;
			return 1;
		}
		if (i + 1 > cap - 2)
			return SUBM_ERR_LINE_TOO_LONG;
	}
	return 0;
}

static const struct {
	const char *name;
	enum subm_verb verb;
} subm_verbs[] = {
	{ "EHLO", SUBM_V_EHLO }, { "HELO", SUBM_V_HELO }, { "MAIL", SUBM_V_MAIL },
	{ "RCPT", SUBM_V_RCPT }, { "DATA", SUBM_V_DATA }, { "RSET", SUBM_V_RSET },
	{ "NOOP", SUBM_V_NOOP }, { "QUIT", SUBM_V_QUIT }, { "AUTH", SUBM_V_AUTH },
	{ "STARTTLS", SUBM_V_STARTTLS }, { "VRFY", SUBM_V_VRFY }, { "HELP", SUBM_V_HELP },
};

static int
is_alnum(unsigned char c)
{
	return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

static int
is_b64(unsigned char c)
{
	return is_alnum(c) || c == '+' || c == '/';
}

/* prefix_is - [p, end) starts with word (case-insensitive). */
static int
prefix_is(const char *p, const char *end, const char *word)
{
	size_t n = strlen(word);

	return (size_t)(end - p) >= n && strncasecmp(p, word, n) == 0;
}

/* token_is - [p, p+n) is word (case-insensitive). */
static int
token_is(const char *p, size_t n, const char *word)
{
	return strlen(word) == n && strncasecmp(p, word, n) == 0;
}

/*
 * route_ok - a source route "@d1,@d2" (without the ':'): each hop '@' and a
 * non-empty domain of letters, digits, '-', '.', or an address literal.
 */
static int
route_ok(const char *p, const char *end)
{
	while (p < end) {
		const char *q = p + 1;

		if (*p != '@')
			return 0;
		while (q < end && *q != ',')
			q++;
		if (q == p + 1)
			return 0;
		for (const char *c = p + 1; c < q; c++)
			if (!is_alnum((unsigned char)*c) && strchr("-.[]:", *c) == NULL)
				return 0;
		p = q < end ? q + 1 : q;
		if (q < end && p == end)
			return 0;   /* a trailing comma */
	}
	return 1;
}

/*
 * parse_params - the ESMTP parameters of MAIL (is_mail) or RCPT in
 * [p, end), each " keyword[=value]".
 */
static int
parse_params(const char *p, const char *end, int is_mail, const struct subm_opts *opts,
    struct subm_cmd *out)
{
	int seen_auth = 0;

	while (p < end) {
		const char *k, *ke, *v = NULL, *ve = NULL;

		if (*p != ' ')
			return SUBM_ERR_SYNTAX;
		while (p < end && *p == ' ')
			p++;
		if (p == end)
			break;
		k = p;
		while (p < end && *p != ' ' && *p != '=')
			p++;
		ke = p;
		if (p < end && *p == '=') {
			v = ++p;
			while (p < end && *p != ' ')
				p++;
			ve = p;
			if (v == ve)
				return SUBM_ERR_SYNTAX;
			for (const char *c = v; c < ve; c++)
				if ((unsigned char)*c < 33 || (unsigned char)*c > 126 || *c == '=')
					return SUBM_ERR_SYNTAX;
		}
		if (k == ke || !is_alnum((unsigned char)*k))
			return SUBM_ERR_SYNTAX;
		for (const char *c = k; c < ke; c++)
			if (!is_alnum((unsigned char)*c) && *c != '-')
				return SUBM_ERR_SYNTAX;
		if (!is_mail)
			return SUBM_ERR_PARAM;
		if (token_is(k, (size_t)(ke - k), "SIZE")) {
			uint64_t n = 0;
			size_t digits = (size_t)(ve - v);

			if (v == NULL || out->has_size)
				return SUBM_ERR_SYNTAX;
			for (const char *c = v; c < ve; c++)
				if (*c < '0' || *c > '9')
					return SUBM_ERR_SYNTAX;
			if (digits > SUBM_SIZE_DIGITS)
				return SUBM_ERR_SIZE;
			for (const char *c = v; c < ve; c++) {
				uint64_t d = (uint64_t)(*c - '0');

				if (n > (UINT64_MAX - d) / 10)
					return SUBM_ERR_SIZE;
				n = n * 10 + d;
			}
			out->has_size = 1;
			out->size = n;
		} else if (token_is(k, (size_t)(ke - k), "BODY")) {
			if (v == NULL || out->body != SUBM_BODY_NONE)
				return SUBM_ERR_SYNTAX;
			if (token_is(v, (size_t)(ve - v), "7BIT"))
				out->body = SUBM_BODY_7BIT;
			else if (token_is(v, (size_t)(ve - v), "8BITMIME"))
				out->body = SUBM_BODY_8BITMIME;
			else
				return SUBM_ERR_SYNTAX;
		} else if (token_is(k, (size_t)(ke - k), "SMTPUTF8")) {
			if (v != NULL || out->smtputf8)
				return SUBM_ERR_SYNTAX;
			out->smtputf8 = 1;
		} else if (token_is(k, (size_t)(ke - k), "AUTH")) {
			if (v == NULL || seen_auth)
				return SUBM_ERR_SYNTAX;
			seen_auth = 1;   /* RFC 4954 5: accepted and ignored */
		} else {
			return SUBM_ERR_PARAM;
		}
	}
	if (out->has_size && opts != NULL && opts->max_size != 0 && out->size > opts->max_size)
		return SUBM_ERR_SIZE;
	return 0;
}

/* parse_path - "FROM:<path> params" / "TO:<path>" in [p, end) after the keyword's colon. */
static int
parse_path(const char *p, const char *end, int is_mail, const struct subm_opts *opts,
    struct subm_cmd *out)
{
	const char *a, *b, *colon;
	int rc, utf8;
	size_t n;

	while (p < end && *p == ' ')
		p++;
	if (p == end || *p != '<')
		return SUBM_ERR_SYNTAX;
	a = p + 1;
	b = memchr(a, '>', (size_t)(end - a));
	if (b == NULL)
		return SUBM_ERR_SYNTAX;
	rc = parse_params(b + 1, end, is_mail, opts, out);
	if (rc != 0)
		return rc;
	if (a == b) {
		if (!is_mail)
			return SUBM_ERR_ADDR;
		out->null_path = 1;
		return 0;
	}
	if (*a == '@') {
		colon = memchr(a, ':', (size_t)(b - a));
		if (colon == NULL || !route_ok(a, colon))
			return SUBM_ERR_ADDR;
		a = colon + 1;
	}
	n = (size_t)(b - a);
	if (n == 0 || n > SUBM_PATH_MAX)
		return SUBM_ERR_ADDR;
	utf8 = is_mail ? out->smtputf8 : (opts != NULL && opts->smtputf8);
	for (const char *c = a; c < b; c++) {
		unsigned char u = (unsigned char)*c;

		if (u <= ' ' || u == 0x7F || u == '<')
			return SUBM_ERR_ADDR;
		if (u >= 0x80 && !utf8)
			return SUBM_ERR_UTF8;
	}
	memcpy(out->path, a, n);
	out->path[n] = '\0';
	if (!validate_email(out->path)) {
		out->path[0] = '\0';
		return SUBM_ERR_ADDR;
	}
	out->path_len = n;
	return 0;
}

/* parse_auth - "mech [initial-response]" in [p, end). */
static int
parse_auth(const char *p, const char *end, struct subm_cmd *out)
{
	const char *m = p;

	while (p < end && *p != ' ')
		p++;
	if (p == m || p - m > 20)
		return SUBM_ERR_SYNTAX;
	for (const char *c = m; c < p; c++)
		if (!is_alnum((unsigned char)*c) && *c != '-' && *c != '_')
			return SUBM_ERR_SYNTAX;
	if (token_is(m, (size_t)(p - m), "PLAIN"))
		out->mech = SUBM_MECH_PLAIN;
	else if (token_is(m, (size_t)(p - m), "LOGIN"))
		out->mech = SUBM_MECH_LOGIN;
	else
		return SUBM_ERR_MECH;
	if (p == end)
		return 0;
	p++;
	if (p == end)
		return SUBM_ERR_SYNTAX;
	out->has_initial = 1;
	if (end - p == 1 && *p == '=') {
		out->initial = p;
		out->initial_len = 0;
		return 0;
	}
	for (const char *c = p; c < end; c++)
		if (!is_b64((unsigned char)*c) && *c != '=')
			return SUBM_ERR_SYNTAX;
	out->initial = p;
	out->initial_len = (size_t)(end - p);
	return 0;
}

int
subm_parse(const char *line, size_t len, const struct subm_opts *opts, struct subm_cmd *out)
{
	const char *end = line + len, *p = line, *arg;
	size_t vlen;

	memset(out, 0, sizeof(*out));
	while (p < end && *p != ' ')
		p++;
	vlen = (size_t)(p - line);
	for (size_t i = 0; i < sizeof(subm_verbs) / sizeof(subm_verbs[0]); i++)
		if (token_is(line, vlen, subm_verbs[i].name))
			out->verb = subm_verbs[i].verb;
	if (out->verb == SUBM_V_UNKNOWN)
		return SUBM_ERR_UNKNOWN_CMD;
	for (const char *c = line; c < end; c++)
		if ((unsigned char)*c < 0x20 || *c == 0x7F)
			return SUBM_ERR_SYNTAX;
	while (end > p && end[-1] == ' ')
		end--;   /* trailing blanks, which some clients send */
	arg = p < end ? p + 1 : end;
	switch (out->verb) {
	case SUBM_V_EHLO:
	case SUBM_V_HELO:
		if (arg == end || *arg == ' ')
			return SUBM_ERR_SYNTAX;
		break;
	case SUBM_V_DATA:
	case SUBM_V_RSET:
	case SUBM_V_QUIT:
	case SUBM_V_STARTTLS:
		return arg == end ? 0 : SUBM_ERR_SYNTAX;
	case SUBM_V_VRFY:
		if (arg == end)
			return SUBM_ERR_SYNTAX;
		break;
	case SUBM_V_NOOP:
	case SUBM_V_HELP:
		break;
	case SUBM_V_MAIL:
		if (!prefix_is(arg, end, "FROM:"))
			return SUBM_ERR_SYNTAX;
		return parse_path(arg + 5, end, 1, opts, out);
	case SUBM_V_RCPT:
		if (!prefix_is(arg, end, "TO:"))
			return SUBM_ERR_SYNTAX;
		return parse_path(arg + 3, end, 0, opts, out);
	case SUBM_V_AUTH:
		return parse_auth(arg, end, out);
	case SUBM_V_UNKNOWN:
		return SUBM_ERR_UNKNOWN_CMD;
	}
	if (arg < end) {
		out->arg = arg;
		out->arg_len = (size_t)(end - arg);
	}
	return 0;
}

/* --- AUTH ------------------------------------------------------------------ */

int
subm_b64_decode(const char *in, size_t inlen, char *out, size_t outcap, size_t *outlen)
{
	size_t pad = 0, need;
	int n;

	*outlen = 0;
	if (outcap > 0)
		out[0] = '\0';
	if (inlen == 1 && in[0] == '*')
		return SUBM_ERR_AUTH_CANCEL;
	if (inlen % 4 != 0 || inlen > (size_t)INT_MAX)
		return SUBM_ERR_AUTH_DATA;
	need = inlen / 4 * 3 + 1;
	if (outcap < need)
		return SUBM_ERR_AUTH_DATA;
	if (inlen == 0)
		return 0;
	if (in[inlen - 1] == '=')
		pad = in[inlen - 2] == '=' ? 2 : 1;
	for (size_t i = 0; i < inlen - pad; i++)
		if (!is_b64((unsigned char)in[i]))
			return SUBM_ERR_AUTH_DATA;
	/* EVP_DecodeBlock counts padding as zero octets: take them off */
	n = EVP_DecodeBlock((unsigned char *)out, (const unsigned char *)in, (int)inlen);
	if (n < 0 || (size_t)n != inlen / 4 * 3) {
		OPENSSL_cleanse(out, outcap);
		out[0] = '\0';
		return SUBM_ERR_AUTH_DATA;
	}
	*outlen = (size_t)n - pad;
	out[*outlen] = '\0';
	return 0;
}

int
subm_b64_encode(const char *in, size_t inlen, char *out, size_t outcap)
{
	size_t need;

	if (outcap > 0)
		out[0] = '\0';
	if (inlen > (size_t)INT_MAX / 2)
		return SUBM_ERR_AUTH_DATA;
	need = 4 * ((inlen + 2) / 3) + 1;
	if (outcap < need)
		return SUBM_ERR_AUTH_DATA;
	EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)in, (int)inlen);
	return 0;
}

#define SUBM_PLAIN_MAX (3 * SUBM_SASL_FIELD_MAX + 2)           /* decoded */
#define SUBM_PLAIN_B64_MAX (4 * ((SUBM_PLAIN_MAX + 2) / 3))    /* encoded */

/* plain_field - copy [p, p+n) into dst when it is 1..max octets (or empty when may_empty). */
static int
plain_field(const char *p, size_t n, int may_empty, char *dst)
{
	if ((n == 0 && !may_empty) || n > SUBM_SASL_FIELD_MAX)
		return -1;
	memcpy(dst, p, n);
	dst[n] = '\0';
	return 0;
}

int
subm_auth_plain(const char *b64, size_t len, char *authzid, char *authcid, char *passwd)
{
	char dec[SUBM_PLAIN_B64_MAX / 4 * 3 + 1];
	const char *n1, *n2;
	size_t n = 0;
	int rc;

	authzid[0] = authcid[0] = passwd[0] = '\0';
	if (len == 1 && b64[0] == '*')
		return SUBM_ERR_AUTH_CANCEL;
	if (len > SUBM_PLAIN_B64_MAX)
		return SUBM_ERR_AUTH_DATA;
	rc = subm_b64_decode(b64, len, dec, sizeof(dec), &n);
	if (rc != 0)
		goto out;
	rc = SUBM_ERR_AUTH_DATA;
	n1 = memchr(dec, '\0', n);
	if (n1 == NULL)
		goto out;
	n2 = memchr(n1 + 1, '\0', n - (size_t)(n1 + 1 - dec));
	if (n2 == NULL || memchr(n2 + 1, '\0', n - (size_t)(n2 + 1 - dec)) != NULL)
		goto out;
	if (plain_field(dec, (size_t)(n1 - dec), 1, authzid) != 0 ||
	    plain_field(n1 + 1, (size_t)(n2 - n1 - 1), 0, authcid) != 0 ||
	    plain_field(n2 + 1, n - (size_t)(n2 + 1 - dec), 0, passwd) != 0)
		goto out;
	rc = 0;
out:
	OPENSSL_cleanse(dec, sizeof(dec));
	if (rc != 0) {
		OPENSSL_cleanse(authzid, SUBM_SASL_FIELD_MAX + 1);
		OPENSSL_cleanse(authcid, SUBM_SASL_FIELD_MAX + 1);
		OPENSSL_cleanse(passwd, SUBM_SASL_FIELD_MAX + 1);
		authzid[0] = authcid[0] = passwd[0] = '\0';
	}
	return rc;
}

/* --- DATA ------------------------------------------------------------------ */

enum {
	SUBM_D_BOL = 0,   /* at the start of a line (after CRLF, or the 354) */
	SUBM_D_MID,       /* inside a line */
	SUBM_D_CR,        /* inside a line, a CR held back */
	SUBM_D_DOT,       /* a '.' at the start of a line, held back */
	SUBM_D_DOT_CR,    /* '.' CR at the start of a line */
};

void
subm_data_init(struct subm_data *d, char *out, size_t cap)
{
	memset(d, 0, sizeof(*d));
	d->out = out;
	d->cap = cap;
	d->state = SUBM_D_BOL;
}

void
subm_data_buffer(struct subm_data *d, char *out, size_t cap)
{
	d->out = out;
	d->cap = cap;
}

static void
data_fail(struct subm_data *d, int err)
{
	if (d->err == 0)
		d->err = err;
}

static void
data_put(struct subm_data *d, char c)
{
	if (d->err != 0)
		return;
	if (d->len >= d->cap) {
		d->err = SUBM_ERR_SIZE;
		return;
	}
	d->out[d->len++] = c;
}

/* data_mid - byte c inside a line. */
static void
data_mid(struct subm_data *d, char c)
{
	if (c == '\r') {
		d->state = SUBM_D_CR;
		return;
	}
	if (c == '\n')
		data_fail(d, SUBM_ERR_DATA_BARE_EOL);
	else
		data_put(d, c);
	d->state = SUBM_D_MID;
}

int
subm_data_feed(struct subm_data *d, const char *buf, size_t len, size_t *consumed)
{
	size_t i;

	*consumed = 0;
	if (d->done)
		return SUBM_DATA_END;
	for (i = 0; i < len; i++) {
		char c = buf[i];

		if (d->seen < UINT64_MAX)
			d->seen++;
		switch (d->state) {
		case SUBM_D_BOL:
			if (c == '.')
				d->state = SUBM_D_DOT;
			else
				data_mid(d, c);
			break;
		case SUBM_D_MID:
			data_mid(d, c);
			break;
		case SUBM_D_CR:
			if (c == '\n') {
				data_put(d, '\r');
				data_put(d, '\n');
				d->state = SUBM_D_BOL;
			} else {
				data_fail(d, SUBM_ERR_DATA_BARE_EOL);   /* the held CR was bare */
				data_mid(d, c);
			}
			break;
		case SUBM_D_DOT:
			if (c == '\r')
				d->state = SUBM_D_DOT_CR;
			else
				data_mid(d, c);   /* the stuffed dot is dropped; "\r\n.\n" fails here */
			break;
		case SUBM_D_DOT_CR:
			if (c == '\n') {
				d->done = 1;
				*consumed = i + 1;
				return SUBM_DATA_END;
			}
			data_fail(d, SUBM_ERR_DATA_BARE_EOL);   /* "\r\n.\r" then not LF */
			data_mid(d, c);
			break;
		default:
			data_fail(d, SUBM_ERR_DATA_BARE_EOL);
			break;
		}
	}
	*consumed = len;
	return SUBM_DATA_MORE;
}

int
subm_data_status(const struct subm_data *d)
{
	return d->err;
}

size_t
subm_data_length(const struct subm_data *d)
{
	return d->len;
}
