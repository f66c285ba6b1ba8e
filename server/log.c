/*
 * log.c - logfmt or JSON lines on stderr, one write(2) each so threads
 * never interleave. Owns the process-wide log level and format, and the
 * quoting: every value is rendered from the caller's printf conversions
 * and then escaped here, so text from the network (SMTP replies, DSN
 * fields, addresses) cannot break a line or forge a key. Never formats
 * secrets: callers pass none.
 */
#include "log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define LOG_LINE_MAX 4096
#define LOG_VALUE_MAX 1024
#define LOG_TAIL 24   /* room kept for the truncation marker and the end */

static atomic_int log_threshold = LOG_INFO;
static atomic_int log_fmt = -1;   /* -1: not chosen yet, TXMAIL_LOG_FORMAT decides */

static const char *const log_names[] = { "debug", "info", "warn", "error" };

void
log_set_level(enum log_level level)
{
	atomic_store(&log_threshold, (int)level);
}

int
log_enabled(enum log_level level)
{
	return (int)level >= atomic_load(&log_threshold);
}

int
log_level_parse(const char *s)
{
	for (int i = 0; i < 4; i++)
		if (strcasecmp(s, log_names[i]) == 0)
			return i;
	if (strcasecmp(s, "warning") == 0)
		return LOG_WARN;
	return -1;
}

void
log_set_format(enum log_format format)
{
	atomic_store(&log_fmt, (int)format);
}

/*
 * current_format - the format in use. Until log_set_format is called, it is
 * read from TXMAIL_LOG_FORMAT on the first line, so the lines written before
 * the configuration is parsed are in the operator's format too (an unknown
 * value means logfmt here; config reports it).
 */
static enum log_format
current_format(void)
{
	int f = atomic_load(&log_fmt);

	if (f < 0) {
		const char *v = getenv("TXMAIL_LOG_FORMAT");
		int want = v != NULL ? log_format_parse(v) : -1;

		f = want < 0 ? LOG_FORMAT_LOGFMT : want;
		atomic_store(&log_fmt, f);
	}
	return (enum log_format)f;
}

int
log_format_parse(const char *s)
{
	if (strcasecmp(s, "logfmt") == 0 || strcasecmp(s, "text") == 0)
		return LOG_FORMAT_LOGFMT;
	if (strcasecmp(s, "json") == 0)
		return LOG_FORMAT_JSON;
	return -1;
}

/* --- one value from its conversions ------------------------------------------ */

/*
 * fmt_one - render the conversion at spec[0] == '%' (its length in *used)
 * into out, taking its argument from ap. Returns the number of bytes
 * written (0 on a conversion we do not know: nothing is consumed, which
 * the format attribute makes a compile-time error anyway).
 */
static size_t
fmt_one(const char *spec, size_t *used, va_list *ap, char *out, size_t size, int *numeric)
{
	char cs[48];
	size_t i = 1, n = 0;
	int width = -1, prec = -1, star_w = 0, star_p = 0, r = 0;
	char len[3] = "";
	char conv;

	while (spec[i] != '\0' && strchr("-+ #0", spec[i]) != NULL)
		i++;
	if (spec[i] == '*') {
		star_w = 1;
		i++;
	} else
		while (spec[i] >= '0' && spec[i] <= '9')
			i++;
	if (spec[i] == '.') {
		i++;
		if (spec[i] == '*') {
			star_p = 1;
			i++;
		} else
			while (spec[i] >= '0' && spec[i] <= '9')
				i++;
	}
	while (spec[i] != '\0' && strchr("hlzjtL", spec[i]) != NULL && n < 2)
		len[n++] = spec[i++];
	len[n] = '\0';
	conv = spec[i];
	*used = conv == '\0' ? i : i + 1;
	if (conv == '%') {
		if (size > 1) {
			out[0] = '%';
			out[1] = '\0';
			return 1;
		}
		return 0;
	}
	if (i + 2 > sizeof(cs))
		return 0;
	memcpy(cs, spec, i + 1);
	cs[i + 1] = '\0';
	if (star_w)
		width = va_arg(*ap, int);
	if (star_p)
		prec = va_arg(*ap, int);
	/* the spec with '*' still in it takes width/precision as int arguments */
#define FMT_ARG(type) \
	do { \
		type v_ = va_arg(*ap, type); \
		if (star_w && star_p) r = snprintf(out, size, cs, width, prec, v_); \
		else if (star_w) r = snprintf(out, size, cs, width, v_); \
		else if (star_p) r = snprintf(out, size, cs, prec, v_); \
		else r = snprintf(out, size, cs, v_); \
	} while (0)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
	switch (conv) {
	case 'd': case 'i':
		*numeric = 1;
		if (strcmp(len, "ll") == 0) FMT_ARG(long long);
		else if (strcmp(len, "l") == 0) FMT_ARG(long);
		else if (strcmp(len, "z") == 0) FMT_ARG(ptrdiff_t);   /* %zd: signed size_t */
		else if (strcmp(len, "j") == 0) FMT_ARG(intmax_t);
		else if (strcmp(len, "t") == 0) FMT_ARG(ptrdiff_t);
		else FMT_ARG(int);
		break;
	case 'u': case 'x': case 'X': case 'o':
		*numeric = conv == 'u';
		if (strcmp(len, "ll") == 0) FMT_ARG(unsigned long long);
		else if (strcmp(len, "l") == 0) FMT_ARG(unsigned long);
		else if (strcmp(len, "z") == 0) FMT_ARG(size_t);
		else if (strcmp(len, "j") == 0) FMT_ARG(uintmax_t);
		else if (strcmp(len, "t") == 0) FMT_ARG(size_t);
		else FMT_ARG(unsigned int);
		break;
	case 'f': case 'F': case 'g': case 'G': case 'e': case 'E':
		if (strcmp(len, "L") == 0) FMT_ARG(long double);
		else FMT_ARG(double);
		break;
	case 'c':
		FMT_ARG(int);
		break;
	case 'p':
		FMT_ARG(void *);
		break;
	case 's': {
		const char *s = va_arg(*ap, const char *);

		if (s == NULL) {
			/* "(null)" rather than glibc's choice, with any precision */
			s = "(null)";
		}
		if (star_w && star_p) r = snprintf(out, size, cs, width, prec, s);
		else if (star_w) r = snprintf(out, size, cs, width, s);
		else if (star_p) r = snprintf(out, size, cs, prec, s);
		else r = snprintf(out, size, cs, s);
		break;
	}
	default:
		return 0;
	}
#pragma GCC diagnostic pop
#undef FMT_ARG
	if (r < 0)
		return 0;
	return (size_t)r < size ? (size_t)r : (size == 0 ? 0 : size - 1);
}

/*
 * render_value - the text of one field's value format [vf, vf+vn) with its
 * arguments. *numeric: the value is exactly one integer conversion.
 */
static size_t
render_value(const char *vf, size_t vn, va_list *ap, char *out, size_t size, int *numeric)
{
	size_t n = 0, convs = 0, lits = 0;
	int num = 0;

	out[0] = '\0';
	for (size_t i = 0; i < vn;) {
		if (vf[i] == '%') {
			size_t used = 1;
			int isnum = 0;

			n += fmt_one(vf + i, &used, ap, out + n, size - n, &isnum);
			if (vf[i + 1] != '%') {
				convs++;
				num = isnum;
			} else
				lits++;
			i += used;
		} else {
			if (n + 1 < size)
				out[n++] = vf[i];
			lits++;
			i++;
		}
	}
	out[n < size ? n : size - 1] = '\0';
	*numeric = convs == 1 && lits == 0 && num;
	return n;
}

/* --- escaping ------------------------------------------------------------------- */

/* utf8_len - length of the valid UTF-8 sequence at s (of n bytes), 0 if none */
static size_t
utf8_len(const unsigned char *s, size_t n)
{
	unsigned c = s[0];
	size_t len;
	unsigned cp;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf) { len = 2; cp = c & 0x1f; }
	else if (c >= 0xe0 && c <= 0xef) { len = 3; cp = c & 0x0f; }
	else if (c >= 0xf0 && c <= 0xf4) { len = 4; cp = c & 0x07; }
	else
		return 0;
	if (len > n)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

struct line {
	char *buf;
	size_t size;   /* usable bytes, LOG_TAIL already kept aside */
	size_t len;
	int full;
};

static void
put(struct line *l, const char *s, size_t n)
{
	if (l->full || l->len + n > l->size) {
		l->full = 1;
		return;
	}
	memcpy(l->buf + l->len, s, n);
	l->len += n;
}

static int
logfmt_needs_quotes(const char *s, size_t n)
{
	if (n == 0)
		return 1;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c <= ' ' || c == '"' || c == '=' || c == '\\' || c >= 0x7f)
			return 1;
	}
	return 0;
}

/* put_escaped - s as a quoted logfmt or JSON string, all or nothing */
static void
put_escaped(struct line *l, enum log_format f, const char *s, size_t n, int quote)
{
	char tmp[LOG_VALUE_MAX * 6 + 8];
	size_t t = 0;

	if (quote)
		tmp[t++] = '"';
	for (size_t i = 0; i < n;) {
		unsigned char c = (unsigned char)s[i];
		size_t u;

		if (c == '"' || c == '\\') {
			tmp[t++] = '\\';
			tmp[t++] = (char)c;
			i++;
		} else if (c == '\n' || c == '\r' || c == '\t') {
			tmp[t++] = '\\';
			tmp[t++] = c == '\n' ? 'n' : c == '\r' ? 'r' : 't';
			i++;
		} else if (c < 0x20 || c == 0x7f) {
			t += (size_t)snprintf(tmp + t, sizeof(tmp) - t,
			    f == LOG_FORMAT_JSON ? "\\u%04x" : "\\x%02x", c);
			i++;
		} else if (c < 0x80) {
			tmp[t++] = (char)c;
			i++;
		} else if ((u = utf8_len((const unsigned char *)s + i, n - i)) > 0) {
			memcpy(tmp + t, s + i, u);
			t += u;
			i += u;
		} else {
			/* not UTF-8: JSON gets U+FFFD, logfmt the byte's value */
			if (f == LOG_FORMAT_JSON)
				t += (size_t)snprintf(tmp + t, sizeof(tmp) - t, "\\ufffd");
			else
				t += (size_t)snprintf(tmp + t, sizeof(tmp) - t, "\\x%02x", c);
			i++;
		}
		if (t > sizeof(tmp) - 8)
			break;   /* cannot happen: values are cut at LOG_VALUE_MAX */
	}
	if (quote)
		tmp[t++] = '"';
	put(l, tmp, t);
}

static void
put_field(struct line *l, enum log_format f, const char *key, size_t kn, const char *v,
    size_t vn, int numeric, int always_quote)
{
	char k[64];
	size_t before = l->len;

	if (kn > sizeof(k) - 1)
		kn = sizeof(k) - 1;
	for (size_t i = 0; i < kn; i++) {
		char c = key[i];

		k[i] = ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.') ?
		    c : '_';
	}
	if (f == LOG_FORMAT_JSON) {
		put(l, ",\"", 2);
		put(l, k, kn);
		put(l, "\":", 2);
		while (numeric && vn > 0 && v[vn - 1] == ' ')
			vn--;
		while (numeric && vn > 0 && *v == ' ') {
			v++;
			vn--;
		}
		if (numeric && vn > 0)
			put(l, v, vn);
		else
			put_escaped(l, f, v, vn, 1);
	} else {
		put(l, " ", 1);
		put(l, k, kn);
		put(l, "=", 1);
		put_escaped(l, f, v, vn, always_quote || logfmt_needs_quotes(v, vn));
	}
	if (l->full)
		l->len = before;   /* a field is written whole or not at all */
}

static size_t
render(char *buf, size_t size, enum log_format f, const char *ts, enum log_level level,
    const char *msg, const char *fmt, va_list *ap)
{
	struct line l = { buf, size > LOG_TAIL ? size - LOG_TAIL : 0, 0, 0 };
	const char *lv = log_names[level > 3 ? 1 : level];
	char val[LOG_VALUE_MAX + 1];
	int truncated;

	if (size <= LOG_TAIL) {
		if (size > 0)
			buf[0] = '\0';
		return 0;
	}
	if (f == LOG_FORMAT_JSON) {
		put(&l, "{\"ts\":\"", 7);
		put(&l, ts, strlen(ts));
		put(&l, "\",\"level\":\"", 11);
		put(&l, lv, strlen(lv));
		put(&l, "\"", 1);
		put_field(&l, f, "msg", 3, msg, strnlen(msg, LOG_VALUE_MAX), 0, 1);
	} else {
		put(&l, "ts=", 3);
		put(&l, ts, strlen(ts));
		put(&l, " level=", 7);
		put(&l, lv, strlen(lv));
		put_field(&l, f, "msg", 3, msg, strnlen(msg, LOG_VALUE_MAX), 0, 1);
	}
	for (const char *p = fmt; *p != '\0' && !l.full;) {
		const char *tok, *eq;
		size_t tn, vn;
		int numeric = 0;

		while (*p == ' ')
			p++;
		if (*p == '\0')
			break;
		tok = p;
		while (*p != '\0' && *p != ' ')
			p++;
		tn = (size_t)(p - tok);
		eq = memchr(tok, '=', tn);
		if (eq == NULL) {
			/* not key=value: the token's text under "field" */
			vn = render_value(tok, tn, ap, val, sizeof(val), &numeric);
			put_field(&l, f, "field", 5, val, vn < sizeof(val) ? vn : sizeof(val) - 1, 0, 0);
			continue;
		}
		vn = render_value(eq + 1, (size_t)(tok + tn - eq - 1), ap, val, sizeof(val), &numeric);
		if (vn >= sizeof(val))
			vn = sizeof(val) - 1;   /* cut at LOG_VALUE_MAX */
		put_field(&l, f, tok, (size_t)(eq - tok), val, vn, numeric, 0);
	}
	/* the kept-aside tail always fits the marker and the end */
	truncated = l.full;
	l.size = size - 1;
	l.full = 0;
	if (truncated) {
		if (f == LOG_FORMAT_JSON)
			put(&l, ",\"truncated\":true", 17);
		else
			put(&l, " truncated=true", 15);
	}
	if (f == LOG_FORMAT_JSON)
		put(&l, "}", 1);
	buf[l.len] = '\0';
	return l.len;
}

size_t
log_render(char *buf, size_t size, enum log_format format, const char *ts,
    enum log_level level, const char *msg, const char *fmt, ...)
{
	va_list ap;
	size_t n;

	va_start(ap, fmt);
	n = render(buf, size, format, ts, level, msg, fmt, &ap);
	va_end(ap);
	return n;
}

void
log_msg(enum log_level level, const char *msg, const char *fmt, ...)
{
	char line[LOG_LINE_MAX];
	char ts[40];
	struct timespec now;
	struct tm tm;
	size_t n;
	va_list ap;

	if ((int)level < atomic_load(&log_threshold))
		return;
	clock_gettime(CLOCK_REALTIME, &now);
	gmtime_r(&now.tv_sec, &tm);
	n = strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(ts + n, sizeof(ts) - n, ".%03ldZ", now.tv_nsec / 1000000);
	va_start(ap, fmt);
	n = render(line, sizeof(line) - 1, current_format(), ts, level,
	    msg, fmt, &ap);
	va_end(ap);
	line[n++] = '\n';
	(void)!write(STDERR_FILENO, line, n);
}
