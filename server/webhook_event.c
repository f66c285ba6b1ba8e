/*
 * webhook_event.c - reading an outbox event's JSON without parsing it:
 * one member for routing (webhook_event_field: the event id and type the
 * dispatcher and the SSE hub route by) and what it is about for log lines
 * (webhook_event_about). Pure scans, no allocation, bounded by the string;
 * the input is what the store wrote, but both are fuzzed as if hostile
 * (tests/fuzz/fuzz_webhook_event.c).
 *
 * It must never read past the terminating NUL or write past an out buffer.
 */
#include <string.h>

#include "webhook.h"

int webhook_event_field(const char *json, const char *key, char *out, size_t outlen)
{
	const char *p = json;
	size_t klen;
	int depth = 0;

	if (!json || !key || !out || outlen < 2)
		return -1;
	klen = strlen(key);
	while (*p) {
		if (*p == '{' || *p == '[') {
			depth++;
			p++;
		} else if (*p == '}' || *p == ']') {
			depth--;
			p++;
		} else if (*p == '"') {
			const char *s = ++p;
			size_t len;

			while (*p && *p != '"') {
				if (*p == '\\' && p[1])
					p++;
				p++;
			}
			if (!*p)
				return -1;
			len = (size_t)(p - s);
			p++;
			if (depth != 1 || len != klen || memcmp(s, key, klen) != 0)
				continue;
			while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
				p++;
			if (*p != ':')
				continue;   /* the key's name was a value, not a key */
			p++;
			while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
				p++;
			if (*p != '"')
				return -1;
			s = ++p;
			while ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
			    (*p >= '0' && *p <= '9') || *p == '_' || *p == '-' || *p == '.')
				p++;
			len = (size_t)(p - s);
			if (*p != '"' || len == 0 || len >= outlen)
				return -1;
			memcpy(out, s, len);
			out[len] = '\0';
			return 0;
		} else {
			p++;
		}
	}
	return -1;
}

/* ---- what an event is about (for log lines) ------------------------------- */

/*
 * wh_json_string - p is just past a string's opening quote: the string is
 * copied into out (outlen > 0; NULL: skipped), cut to fit, with its escapes
 * decoded except \uXXXX; returns just past the closing quote, or NULL when
 * it does not end.
 */
static const char *wh_json_string(const char *p, char *out, size_t outlen)
{
	size_t n = 0;

	for (; *p && *p != '"'; p++) {
		char c = *p;

		if (c == '\\' && p[1]) {
			c = *++p;
			switch (c) {
			case 'n': c = '\n'; break;
			case 't': c = '\t'; break;
			case 'r': c = '\r'; break;
			case 'b': c = '\b'; break;
			case 'f': c = '\f'; break;
			case 'u':
				if (out && n + 1 < outlen)
					out[n++] = '\\';
				break;
			default: break;   /* \" \\ \/ stand for themselves */
			}
		}
		if (out && n + 1 < outlen)
			out[n++] = c;
	}
	if (out)
		out[*p == '"' ? n : 0] = '\0';   /* a string that does not end is not taken */
	return *p == '"' ? p + 1 : NULL;
}

static const char *wh_json_ws(const char *p)
{
	while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
		p++;
	return p;
}

void webhook_event_about(const char *json, struct webhook_about *out)
{
	const char *p = json;
	int depth = 0, data_depth = 0, found = 0;

	memset(out, 0, sizeof(*out));
	if (!json)
		return;
	while (*p && found < 4) {
		if (*p == '{' || *p == '[') {
			depth++;
			p++;
		} else if (*p == '}' || *p == ']') {
			if (depth-- == data_depth)
				data_depth = 0;   /* left "data" */
			p++;
		} else if (*p == '"') {
			char key[16];
			char *dst = NULL;
			size_t cap = 0;
			const char *v;

			if (!(p = wh_json_string(p + 1, key, sizeof(key))))
				return;
			v = wh_json_ws(p);
			if (*v != ':')
				continue;   /* a value, not a key */
			v = wh_json_ws(v + 1);
			if (depth == 1 && strcmp(key, "data") == 0 && *v == '{') {
				data_depth = 2;
			} else if (depth == 1 && strcmp(key, "type") == 0) {
				dst = out->type;
				cap = sizeof(out->type);
			} else if (depth == 1 && strcmp(key, "created_at") == 0) {
				dst = out->created_at;
				cap = sizeof(out->created_at);
			} else if (depth == 2 && data_depth == 2 && strcmp(key, "message_id") == 0) {
				dst = out->msg_id;
				cap = sizeof(out->msg_id);
			} else if (depth == 2 && data_depth == 2 && strcmp(key, "recipient") == 0) {
				dst = out->rcpt;
				cap = sizeof(out->rcpt);
			}
			p = v;
			if (dst && *v == '"') {
				if (!(p = wh_json_string(v + 1, dst, cap)))
					return;
				found++;
			}
		} else {
			p++;
		}
	}
}
