/*
 * outcome_json.c - the JSON texts of one recorded delivery outcome (the
 * `smtp` field, the webhook event, the timeline entry), written straight
 * into a growing buffer.
 *
 * worker.c used to build three cJSON trees per outcome and print them:
 * with the frees, ~60,000 instructions a delivery (callgrind, bench.py),
 * most of it cJSON's printer. The texts are the same bytes: keys in the
 * same order, strings escaped as cJSON escapes them (", \, \b \f \n \r \t,
 * other bytes below 0x20 as \u00xx, everything else as it is), whole
 * numbers as %d. The message's stored metadata and tags are embedded as
 * cJSON reprints them; only the empty ones ({} and [], or none) skip the
 * parse. tests/unit/test_outcome_json.c compares the output with cJSON's.
 *
 * It must never log, do I/O or abort on input: out of memory is -1.
 */
#include "outcome_json.h"

#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

struct jw {
	char *p;
	size_t len, cap;
	int err;
};

static void
jw_reserve(struct jw *w, size_t add)
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

static void
jw_raw(struct jw *w, const char *s, size_t n)
{
	jw_reserve(w, n);
	if (w->err)
		return;
	memcpy(w->p + w->len, s, n);
	w->len += n;
}

static void
jw_lit(struct jw *w, const char *s)
{
	jw_raw(w, s, strlen(s));
}

/* s as a JSON string, escaped like cJSON's print_string_ptr */
static void
jw_str(struct jw *w, const char *s)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *u = (const unsigned char *)s;
	size_t n = strlen(s), i, len, extra = 0;
	char *o;

	for (i = 0; i < n && u[i] > 31 && u[i] != '"' && u[i] != '\\'; i++)
		;
	if (i == n) {   /* the usual case: nothing to escape, one copy */
		jw_reserve(w, n + 2);
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
	jw_reserve(w, n + extra + 2);
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

static void
jw_int(struct jw *w, int v)
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
	jw_raw(w, tmp + sizeof(tmp) - n, n);
}

/*
 * ,"key": before a value; the first field of an object has no comma. Keys
 * are this file's own literals (letters and '_'): nothing to escape.
 */
static void
jw_key(struct jw *w, const char *key, int *first)
{
	size_t n = strlen(key);

	jw_reserve(w, n + 4);
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

/* a string field, left out when v is NULL (cJSON_AddStringToObject adds nothing then) */
static void
jw_field_str(struct jw *w, const char *key, const char *v, int *first)
{
	if (v == NULL)
		return;
	jw_key(w, key, first);
	jw_str(w, v);
}

/* the smtp object ({"code":..,"enhanced":..,"response":..}) or null when no reply decided it */
static void
jw_smtp(struct jw *w, const struct smtp_outcome *o)
{
	int first = 1;

	if (o->code == 0) {
		jw_lit(w, "null");
		return;
	}
	jw_raw(w, "{", 1);
	jw_key(w, "code", &first);
	jw_int(w, o->code);
	jw_field_str(w, "enhanced", o->enhanced, &first);
	jw_field_str(w, "response", o->text, &first);
	jw_raw(w, "}", 1);
}

/*
 * stored JSON (metadata, tags) as cJSON_Parse + print gives it; unset, empty
 * or not JSON: empty (dflt, "{}" or "[]")
 */
static void
jw_stored(struct jw *w, const char *text, const char *dflt)
{
	cJSON *t;
	char *s;

	if (text == NULL || text[0] == '\0') {
		jw_lit(w, dflt);
		return;
	}
	if (strcmp(text, "{}") == 0 || strcmp(text, "[]") == 0) {
		jw_lit(w, text);   /* what the parse and print would give */
		return;
	}
	t = cJSON_Parse(text);
	if (t == NULL) {
		jw_lit(w, dflt);
		return;
	}
	s = cJSON_PrintUnformatted(t);
	cJSON_Delete(t);
	if (s == NULL) {
		w->err = 1;
		return;
	}
	jw_lit(w, s);
	cJSON_free(s);
}

/* the buffer as a C string, handed over (NULL on error, the buffer freed) */
static char *
jw_take(struct jw *w)
{
	jw_raw(w, "", 1);   /* room for the NUL, counted in len */
	if (w->err) {
		free(w->p);
		w->p = NULL;
		return NULL;
	}
	return w->p;
}

int
outcome_json_build(const struct outcome_json_in *in, struct outcome_json *r)
{
	struct jw w;
	int first;

	memset(r, 0, sizeof(*r));

	if (in->out->code != 0) {
		memset(&w, 0, sizeof(w));
		jw_smtp(&w, in->out);
		if ((r->smtp = jw_take(&w)) == NULL)
			goto fail;
	}

	memset(&w, 0, sizeof(w));
	first = 1;
	jw_raw(&w, "{", 1);
	jw_field_str(&w, "id", in->evt_id, &first);
	jw_field_str(&w, "type", in->type, &first);
	jw_field_str(&w, "created_at", in->at, &first);
	jw_key(&w, "data", &first);
	first = 1;
	jw_raw(&w, "{", 1);
	jw_field_str(&w, "message_id", in->msg_id, &first);
	jw_field_str(&w, "recipient", in->rcpt, &first);
	jw_field_str(&w, "status", in->status, &first);
	jw_key(&w, "attempt", &first);
	jw_int(&w, in->attempt);
	jw_field_str(&w, "reason", in->reason, &first);
	jw_key(&w, "smtp", &first);
	jw_smtp(&w, in->out);
	jw_key(&w, "metadata", &first);
	jw_stored(&w, in->metadata_json, "{}");
	jw_key(&w, "tags", &first);
	jw_stored(&w, in->tags_json, "[]");
	jw_raw(&w, "}}", 2);
	if ((r->event = jw_take(&w)) == NULL)
		goto fail;

	memset(&w, 0, sizeof(w));
	first = 1;
	jw_raw(&w, "{", 1);
	jw_field_str(&w, "type", in->status, &first);
	jw_field_str(&w, "at", in->at, &first);
	jw_field_str(&w, "recipient", in->rcpt, &first);
	jw_key(&w, "attempt", &first);
	jw_int(&w, in->attempt);
	jw_field_str(&w, "reason", in->reason, &first);
	jw_key(&w, "smtp", &first);
	jw_smtp(&w, in->out);
	if (in->out->code == 0 && in->out->text[0] != '\0')
		jw_field_str(&w, "detail", in->out->text, &first);
	jw_raw(&w, "}", 1);
	if ((r->timeline = jw_take(&w)) == NULL)
		goto fail;
	return 0;
fail:
	outcome_json_free(r);
	return -1;
}

void
outcome_json_free(struct outcome_json *r)
{
	free(r->smtp);
	free(r->event);
	free(r->timeline);
	r->smtp = r->event = r->timeline = NULL;
}
