/*
 * jsonw.c - JSON written by hand into a growing buffer (see jsonw.h): the
 * escaping of cJSON's printer, one reserve per value, no tree.
 *
 * It must never log, do I/O or abort on input: out of memory is err, and
 * jsonw_take's NULL.
 */
#include "jsonw.h"

#include <stdlib.h>
#include <string.h>

static void
jsonw_reserve(struct jsonw *w, size_t add)
{
	size_t cap;
	char *p;

	if (w->err || w->cap - w->len > add)
		return;
	cap = w->cap != 0 ? w->cap : 1024;   /* an event is ~500 bytes: usually one malloc */
	while (cap - w->len <= add) {
		if (cap > ((size_t)-1) / 2) {
			w->err = 1;
			return;
		}
		cap *= 2;
	}
	p = realloc(w->p, cap);
	if (p == NULL) {
		w->err = 1;
		return;
	}
	w->p = p;
	w->cap = cap;
}

void
jsonw_raw(struct jsonw *w, const char *s, size_t n)
{
	jsonw_reserve(w, n);
	if (w->err)
		return;
	memcpy(w->p + w->len, s, n);
	w->len += n;
}

void
jsonw_lit(struct jsonw *w, const char *s)
{
	jsonw_raw(w, s, strlen(s));
}

/* s as a JSON string, escaped like cJSON's print_string_ptr */
void
jsonw_str(struct jsonw *w, const char *s)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *u = (const unsigned char *)s;
	size_t n = strlen(s), i, len, extra = 0;
	char *o;

	for (i = 0; i < n && u[i] > 31 && u[i] != '"' && u[i] != '\\'; i++)
		;
	if (i == n) {   /* the usual case: nothing to escape, one copy */
		jsonw_reserve(w, n + 2);
		if (w->err)
			return;
		w->p[w->len++] = '"';
		memcpy(w->p + w->len, s, n);
		w->len += n;
		w->p[w->len++] = '"';
		return;
	}
	for (i = 0; i < n; i++)   /* what the escapes add: 1 for \" \\ \b \f \n \r \t, 5 for \u00xx */
		if (u[i] < 32 || u[i] == '"' || u[i] == '\\')
			extra += u[i] == '"' || u[i] == '\\' || u[i] == '\b' || u[i] == '\f' ||
			    u[i] == '\n' || u[i] == '\r' || u[i] == '\t' ? 1 : 5;
	jsonw_reserve(w, n + extra + 2);
	if (w->err)
		return;
	o = w->p;
	len = w->len;   /* in a local: the byte stores below may alias w->len */
	o[len++] = '"';
	for (i = 0; i < n; i++) {
		unsigned char c = u[i];

		if (c > 31 && c != '"' && c != '\\') {
			o[len++] = (char)c;
			continue;
		}
		o[len++] = '\\';
		switch (c) {
		case '\\': o[len++] = '\\'; break;
		case '"': o[len++] = '"'; break;
		case '\b': o[len++] = 'b'; break;
		case '\f': o[len++] = 'f'; break;
		case '\n': o[len++] = 'n'; break;
		case '\r': o[len++] = 'r'; break;
		case '\t': o[len++] = 't'; break;
		default:
			o[len++] = 'u';
			o[len++] = '0';
			o[len++] = '0';
			o[len++] = hex[c >> 4];
			o[len++] = hex[c & 15];
			break;
		}
	}
	o[len++] = '"';
	w->len = len;
}

void
jsonw_int(struct jsonw *w, int v)
{
	char tmp[12];
	size_t n = 0;
	unsigned int u = v < 0 ? 0u - (unsigned int)v : (unsigned int)v;

	do {
		tmp[sizeof(tmp) - 1 - n++] = (char)('0' + u % 10);
		u /= 10;
	} while (u != 0);
	if (v < 0)
		tmp[sizeof(tmp) - 1 - n++] = '-';
	jsonw_raw(w, tmp + sizeof(tmp) - n, n);
}

void
jsonw_i64(struct jsonw *w, long long v)
{
	char tmp[24];
	size_t n = 0;
	unsigned long long u = v < 0 ? 0ull - (unsigned long long)v : (unsigned long long)v;

	do {
		tmp[sizeof(tmp) - 1 - n++] = (char)('0' + u % 10);
		u /= 10;
	} while (u != 0);
	if (v < 0)
		tmp[sizeof(tmp) - 1 - n++] = '-';
	jsonw_raw(w, tmp + sizeof(tmp) - n, n);
}

/*
 * ,"key": before a value; the first field of an object has no comma. Keys
 * are this file's own literals (letters and '_'): nothing to escape.
 */
void
jsonw_key(struct jsonw *w, const char *key, int *first)
{
	size_t n = strlen(key);

	jsonw_reserve(w, n + 4);
	if (w->err)
		return;
	if (!*first)
		w->p[w->len++] = ',';
	*first = 0;
	w->p[w->len++] = '"';
	memcpy(w->p + w->len, key, n);
	w->len += n;
	w->p[w->len++] = '"';
	w->p[w->len++] = ':';
}

/* the buffer as a C string, handed over (NULL on error, the buffer freed) */
char *
jsonw_take(struct jsonw *w)
{
	jsonw_raw(w, "", 1);   /* room for the NUL, counted in len */
	if (w->err) {
		free(w->p);
		w->p = NULL;
		return NULL;
	}
	return w->p;
}

