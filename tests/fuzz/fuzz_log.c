/*
 * fuzz_log.c - libFuzzer target for log_render (server/log.c), the one
 * place where text from the network (SMTP replies, DSN fields, addresses,
 * request ids) is turned into a log line.
 *
 * Input: one byte choosing the line buffer's size (64 bytes and up; small
 * sizes exercise truncation), then the message and two values separated by NUL bytes.
 * Checks, for both formats: the line is NUL-terminated at the returned
 * length, holds no control byte (so no forged line), and parses strictly:
 * JSON with cJSON as one object whose ts/level/msg are right and whose
 * values are what was given (invalid UTF-8 aside); logfmt with a strict
 * tokenizer here (key=value, bare or quoted with \" \\ \n \r \t \xHH),
 * whose unescaped values are the given bytes exactly. A field is either
 * there whole or, after the first missing one, the line says
 * truncated=true. Never aborts on hostile input; only a broken contract.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "../../server/log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_LOG_IN_MAX 4096

struct kv {
	char key[64];
	char val[4096];
	size_t vlen;
};

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* parse_logfmt - strict; returns the number of fields (ts first), -1 on a syntax error */
static int
parse_logfmt(const char *s, size_t n, struct kv *kv, int max)
{
	size_t i = 0;
	int k = 0;

	while (i < n) {
		size_t kl = 0;

		if (k >= max)
			return -1;
		if (k > 0) {
			if (s[i] != ' ')
				return -1;
			i++;
		}
		while (i < n && ((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') ||
		    s[i] == '_' || s[i] == '.')) {
			if (kl + 1 >= sizeof(kv[k].key))
				return -1;
			kv[k].key[kl++] = s[i++];
		}
		kv[k].key[kl] = '\0';
		if (kl == 0 || i >= n || s[i] != '=')
			return -1;
		i++;
		kv[k].vlen = 0;
		if (i < n && s[i] == '"') {
			i++;
			for (;;) {
				char c;

				if (i >= n)
					return -1;
				c = s[i++];
				if (c == '"')
					break;
				if (c == '\\') {
					if (i >= n)
						return -1;
					c = s[i++];
					if (c == 'n') c = '\n';
					else if (c == 'r') c = '\r';
					else if (c == 't') c = '\t';
					else if (c == 'x') {
						int h, l;

						if (i + 2 > n || (h = hexval(s[i])) < 0 || (l = hexval(s[i + 1])) < 0)
							return -1;
						c = (char)(h * 16 + l);
						i += 2;
					} else if (c != '"' && c != '\\')
						return -1;
				}
				if (kv[k].vlen >= sizeof(kv[k].val))
					return -1;
				kv[k].val[kv[k].vlen++] = c;
			}
		} else {
			while (i < n && s[i] != ' ') {
				unsigned char c = (unsigned char)s[i];

				if (c == '"' || c == '=' || c == '\\' || c < 0x21 || c >= 0x7f)
					return -1;
				if (kv[k].vlen >= sizeof(kv[k].val))
					return -1;
				kv[k].val[kv[k].vlen++] = s[i++];
			}
			if (kv[k].vlen == 0)
				return -1;   /* empty values are quoted */
		}
		k++;
	}
	return k;
}

/* valid_utf8 - log.c keeps valid UTF-8 as it is and replaces the rest */
static int
valid_utf8(const char *s, size_t n)
{
	for (size_t i = 0; i < n;) {
		unsigned char c = (unsigned char)s[i];
		size_t len = c < 0x80 ? 1 : c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3 :
		    c >= 0xf0 && c <= 0xf4 ? 4 : 0;
		unsigned cp = len == 1 ? c : len == 2 ? (c & 0x1fu) : len == 3 ? (c & 0x0fu) : (c & 0x07u);

		if (len == 0 || i + len > n)
			return 0;
		for (size_t j = 1; j < len; j++) {
			if (((unsigned char)s[i + j] & 0xc0) != 0x80)
				return 0;
			cp = (cp << 6) | ((unsigned char)s[i + j] & 0x3fu);
		}
		if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
		    (cp >= 0xd800 && cp <= 0xdfff))
			return 0;
		i += len;
	}
	return 1;
}

static void
check_common(const char *line, size_t n, size_t size)
{
	if (n >= size || line[n] != '\0' || strlen(line) != n)
		abort();
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)line[i] < 0x20 || line[i] == 0x7f)
			abort();
}

static void
check_json(const char *line, size_t n, const char *msg, const char *a, const char *b)
{
	cJSON *o = cJSON_ParseWithLength(line, n);
	const cJSON *f;
	int truncated;

	if (o == NULL || !cJSON_IsObject(o))
		abort();
	f = cJSON_GetObjectItemCaseSensitive(o, "ts");
	if (!cJSON_IsString(f) || strcmp(f->valuestring, "T") != 0)
		abort();
	f = cJSON_GetObjectItemCaseSensitive(o, "level");
	if (!cJSON_IsString(f) || strcmp(f->valuestring, "warn") != 0)
		abort();
	truncated = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "truncated"));
	f = cJSON_GetObjectItemCaseSensitive(o, "msg");
	if (f == NULL) {
		if (!truncated)
			abort();
		goto out;
	}
	if (!cJSON_IsString(f) || (strlen(msg) <= 1024 && valid_utf8(msg, strlen(msg)) &&
	    strcmp(f->valuestring, msg) != 0))
		abort();
	f = cJSON_GetObjectItemCaseSensitive(o, "a");
	if (f == NULL) {
		if (!truncated)
			abort();
		goto out;
	}
	if (!cJSON_IsString(f) || (strlen(a) <= 1024 && valid_utf8(a, strlen(a)) &&
	    strcmp(f->valuestring, a) != 0))
		abort();
	f = cJSON_GetObjectItemCaseSensitive(o, "n");
	if (f == NULL) {
		if (!truncated)
			abort();
		goto out;
	}
	if (!cJSON_IsNumber(f) || f->valueint != -42)
		abort();
	f = cJSON_GetObjectItemCaseSensitive(o, "b");
	if (f == NULL ? !truncated : !cJSON_IsString(f))
		abort();
	if (f != NULL && strlen(b) <= 1024 && valid_utf8(b, strlen(b)) && strcmp(f->valuestring, b) != 0)
		abort();
out:
	cJSON_Delete(o);
}

static void
check_logfmt(const char *line, size_t n, const char *msg, const char *a, const char *b)
{
	static struct kv kv[8];
	static const char *const keys[] = { "ts", "level", "msg", "a", "n", "b" };
	const char *want[6];
	int k = parse_logfmt(line, n, kv, 8);
	int truncated;

	if (k < 0)
		abort();
	truncated = k > 0 && strcmp(kv[k - 1].key, "truncated") == 0;
	if (truncated && (kv[k - 1].vlen != 4 || memcmp(kv[k - 1].val, "true", 4) != 0))
		abort();
	if (truncated)
		k--;
	if (k < 2 || (!truncated && k != 6) || k > 6)
		abort();
	want[0] = "T";
	want[1] = "warn";
	want[2] = msg;
	want[3] = a;
	want[4] = "-42";
	want[5] = b;
	for (int i = 0; i < k; i++) {
		size_t wl = strlen(want[i]);

		if (strcmp(kv[i].key, keys[i]) != 0)
			abort();
		/* \xHH restores every byte: values up to the cut are exact */
		if (wl <= 1024 && (kv[i].vlen != wl || memcmp(kv[i].val, want[i], wl) != 0))
			abort();
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char in[FUZZ_LOG_IN_MAX + 1];
	static char line[4096];
	const char *msg, *a, *b;
	size_t bufsize, n, p;

	if (size < 1 || size > FUZZ_LOG_IN_MAX)
		return 0;
	bufsize = data[0] < 128 ? 64 + (size_t)data[0] * 8 : sizeof(line);   /* 64..1080, or 4 KiB */
	memcpy(in, data + 1, size - 1);
	in[size - 1] = '\0';
	msg = in;
	p = strlen(msg);
	a = p < size - 1 ? in + p + 1 : "";
	p = (size_t)(a - in) + strlen(a);
	b = *a != '\0' && p < size - 1 ? in + p + 1 : "";

	n = log_render(line, bufsize, LOG_FORMAT_JSON, "T", LOG_WARN, msg, " a=%s n=%d b=%s",
	    a, -42, b);
	check_common(line, n, bufsize);
	check_json(line, n, msg, a, b);
	n = log_render(line, bufsize, LOG_FORMAT_LOGFMT, "T", LOG_WARN, msg, " a=%s n=%d b=%s",
	    a, -42, b);
	check_common(line, n, bufsize);
	check_logfmt(line, n, msg, a, b);
	return 0;
}
