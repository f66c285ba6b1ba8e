/*
 * template.c - the pure template renderer (see template.h).
 *
 * Owns the placeholder syntax of stored templates: "{{name}}" (HTML-escaped
 * when asked), "{{{name}}}" (raw), blanks inside the braces, dotted names
 * walking nested objects. Everything else is copied byte for byte; a lone
 * "{" or "}" is literal text. It must never do I/O, log, read the clock or
 * grow its result past max_out: errors name the variable or the byte offset
 * of the placeholder that is wrong, so the API can answer with a clear 422.
 */
#include "template.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TEMPLATE_NAME_MAX 64

struct tbuf {
	char *p;
	size_t len, cap, max;
	int rc;      /* 0, TEMPLATE_ERR_NOMEM or TEMPLATE_ERR_TOOBIG */
};

static void
tb_put(struct tbuf *b, const char *s, size_t n)
{
	size_t need, cap;
	char *p;

	if (b->rc != 0 || n == 0)
		return;
	if (n > b->max - b->len) {
		b->rc = TEMPLATE_ERR_TOOBIG;
		return;
	}
	need = b->len + n + 1;
	if (need > b->cap) {
		cap = b->cap ? b->cap : 128;
		while (cap < need)
			cap = cap > SIZE_MAX / 2 ? need : cap * 2;
		p = realloc(b->p, cap);
		if (p == NULL) {
			b->rc = TEMPLATE_ERR_NOMEM;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void
tb_escaped(struct tbuf *b, const char *s, size_t n)
{
	size_t start = 0;

	for (size_t i = 0; i < n; i++) {
		const char *rep;

		switch (s[i]) {
		case '&': rep = "&amp;"; break;
		case '<': rep = "&lt;"; break;
		case '>': rep = "&gt;"; break;
		case '"': rep = "&quot;"; break;
		case '\'': rep = "&#39;"; break;
		default: continue;
		}
		tb_put(b, s + start, i - start);
		tb_put(b, rep, strlen(rep));
		start = i + 1;
	}
	tb_put(b, s + start, n - start);
}

static int
is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static int
is_name_char(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
	    (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-';
}

/* placeholder found in the source: name src[nb..ne), whole tag src[start..end) */
struct tag {
	size_t start, end, nb, ne;
	int raw;
};

static void
set_msg(char *name, size_t namelen, const char *what, size_t off)
{
	if (namelen > 0)
		snprintf(name, namelen, "%s %zu", what, off);
}

/*
 * next_tag - find the next "{{" at or after *pos. Returns 1 with *t filled,
 * 0 when there is none, TEMPLATE_ERR_SYNTAX (offset in name) when malformed.
 */
static int
next_tag(const char *src, size_t len, size_t pos, struct tag *t, char *name, size_t namelen)
{
	size_t i, open, nb, ne;
	int raw;

	for (i = pos; i + 1 < len; i++)
		if (src[i] == '{' && src[i + 1] == '{')
			break;
	if (i + 1 >= len)
		return 0;
	open = i;
	raw = i + 2 < len && src[i + 2] == '{';
	i += raw ? 3 : 2;
	while (i < len && is_blank(src[i]))
		i++;
	nb = i;
	while (i < len && is_name_char(src[i]))
		i++;
	ne = i;
	while (i < len && is_blank(src[i]))
		i++;
	if (ne == nb || ne - nb > TEMPLATE_NAME_MAX || src[nb] == '.' ||
	    src[ne - 1] == '.' || memmem(src + nb, ne - nb, "..", 2) != NULL)
		goto bad;
	if (len - i < (size_t)(raw ? 3 : 2) || memcmp(src + i, "}}}", raw ? 3 : 2) != 0)
		goto bad;
	i += raw ? 3 : 2;
	/* "{{name}}}" : a stray closing brace is a mistake, not text */
	if (!raw && i < len && src[i] == '}')
		goto bad;
	t->start = open;
	t->end = i;
	t->nb = nb;
	t->ne = ne;
	t->raw = raw;
	return 1;
bad:
	set_msg(name, namelen, "offset", open);
	return TEMPLATE_ERR_SYNTAX;
}

/* lookup - walk vars along the dotted name src[nb..ne); NULL when absent. */
static const cJSON *
lookup(const cJSON *vars, const char *s, size_t n)
{
	const cJSON *cur = vars;
	char seg[TEMPLATE_NAME_MAX + 1];
	size_t i = 0;

	while (i < n) {
		size_t j = i;

		while (j < n && s[j] != '.')
			j++;
		if (!cJSON_IsObject(cur))
			return NULL;
		memcpy(seg, s + i, j - i);
		seg[j - i] = '\0';
		cur = cJSON_GetObjectItemCaseSensitive(cur, seg);
		if (cur == NULL)
			return NULL;
		i = j + 1;
	}
	return cur;
}

/* format_number - integers without a fraction, others in the shortest exact form. */
static void
format_number(double v, char *buf, size_t len)
{
	if (v >= -9007199254740992.0 && v <= 9007199254740992.0 && v == (double)(long long)v) {
		snprintf(buf, len, "%lld", (long long)v);
		return;
	}
	for (int prec = 15; prec <= 17; prec++) {
		snprintf(buf, len, "%.*g", prec, v);
		if (strtod(buf, NULL) == v)
			return;
	}
}

static int
render(const char *src, size_t len, const cJSON *vars, int html_escape, int emit,
    size_t max_out, char **out, size_t *out_len, char *name, size_t namelen)
{
	struct tbuf b = { .max = max_out };
	size_t pos = 0;
	int rc;

	if (namelen > 0)
		name[0] = '\0';
	if (out != NULL)
		*out = NULL;
	if (out_len != NULL)
		*out_len = 0;
	if (src == NULL)
		len = 0;
	for (;;) {
		struct tag t;
		const cJSON *v;
		char num[40];
		const char *s = "";
		size_t n = 0;

		rc = next_tag(src, len, pos, &t, name, namelen);
		if (rc < 0)
			goto out;
		if (rc == 0) {
			if (emit)
				tb_put(&b, src + pos, len - pos);
			break;
		}
		if (emit)
			tb_put(&b, src + pos, t.start - pos);
		pos = t.end;
		if (!emit)
			continue;
		v = lookup(vars, src + t.nb, t.ne - t.nb);
		if (cJSON_IsString(v) && v->valuestring != NULL) {
			s = v->valuestring;
			n = strlen(s);
		} else if (cJSON_IsNumber(v)) {
			format_number(v->valuedouble, num, sizeof num);
			s = num;
			n = strlen(num);
		} else if (cJSON_IsBool(v)) {
			s = cJSON_IsTrue(v) ? "true" : "false";
			n = strlen(s);
		} else if (!cJSON_IsNull(v)) {
			/* absent, or an object/array that has no text form */
			if (namelen > 0)
				snprintf(name, namelen, "%.*s", (int)(t.ne - t.nb), src + t.nb);
			rc = TEMPLATE_ERR_MISSING;
			goto out;
		}
		if (html_escape && !t.raw)
			tb_escaped(&b, s, n);
		else
			tb_put(&b, s, n);
	}
	rc = 0;
	if (!emit)
		goto out;
	if (b.rc == 0 && b.p == NULL) {
		b.p = malloc(1);
		if (b.p == NULL)
			b.rc = TEMPLATE_ERR_NOMEM;
		else
			b.p[0] = '\0';
	}
	rc = b.rc;
	if (rc == 0) {
		*out = b.p;
		if (out_len != NULL)
			*out_len = b.len;
		b.p = NULL;
	}
out:
	free(b.p);
	return rc;
}

int
template_render(const char *src, size_t len, const cJSON *vars, int html_escape,
    size_t max_out, char **out, size_t *out_len, char *name, size_t namelen)
{
	return render(src, len, vars, html_escape, 1, max_out, out, out_len, name, namelen);
}

int
template_check(const char *src, size_t len, char *name, size_t namelen)
{
	return render(src, len, NULL, 0, 0, 0, NULL, NULL, name, namelen);
}
