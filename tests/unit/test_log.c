/*
 * test_log.c - log_render, the line log_msg writes: logfmt and JSON,
 * quoting and escaping of values (spaces, quotes, backslashes, newlines,
 * control characters, invalid UTF-8), numbers against strings in JSON,
 * truncation that keeps the line well-formed, and hostile values that
 * must not forge a key or a line. Each logfmt line is read back with a
 * strict parser below, each JSON line with cJSON.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "../../server/log.h"

#define TS "2026-11-23T15:58:00.123Z"
#define MAXF 64

struct field {
	char key[64];
	char val[8192];
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

/*
 * lf_parse - a strict logfmt reader: key=value pairs separated by exactly
 * one space, keys [a-z0-9_.]+, values bare (no space, '"' or '=') or
 * quoted with the escapes log.c writes (\" \\ \n \r \t \xHH). Returns the
 * number of fields, -1 on anything else (with the offset in *bad).
 */
static int
lf_parse(const char *s, struct field *f, int maxf, size_t *bad)
{
	const char *p = s;
	int n = 0;

	while (*p != '\0') {
		size_t k = 0, v = 0;

		if (n > 0) {
			if (*p != ' ')
				goto fail;
			p++;
		}
		if (n >= maxf)
			goto fail;
		while ((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_' || *p == '.') {
			if (k + 1 >= sizeof(f[n].key))
				goto fail;
			f[n].key[k++] = *p++;
		}
		f[n].key[k] = '\0';
		if (k == 0 || *p != '=')
			goto fail;
		p++;
		if (*p == '"') {
			p++;
			while (*p != '"') {
				char c = *p;

				if (c == '\0' || (unsigned char)c < 0x20 || c == 0x7f)
					goto fail;
				if (c == '\\') {
					p++;
					switch (*p) {
					case '"': c = '"'; break;
					case '\\': c = '\\'; break;
					case 'n': c = '\n'; break;
					case 'r': c = '\r'; break;
					case 't': c = '\t'; break;
					case 'x': {
						int hi = hexval(p[1]), lo = hi >= 0 ? hexval(p[2]) : -1;

						if (lo < 0)
							goto fail;
						c = (char)(hi * 16 + lo);
						p += 2;
						break;
					}
					default:
						goto fail;
					}
				}
				if (v + 1 >= sizeof(f[n].val))
					goto fail;
				f[n].val[v++] = c;
				p++;
			}
			p++;
		} else {
			while (*p != '\0' && *p != ' ') {
				if ((unsigned char)*p < 0x20 || *p == '"' || *p == '=' || *p == 0x7f)
					goto fail;
				if (v + 1 >= sizeof(f[n].val))
					goto fail;
				f[n].val[v++] = *p++;
			}
			if (v == 0)
				goto fail;
		}
		f[n].val[v] = '\0';
		n++;
	}
	return n;
fail:
	*bad = (size_t)(p - s);
	return -1;
}

static struct field fs[MAXF];
const char *test_log_null;   /* a NULL %s argument the compiler cannot see */

/* lf_check - parse line strictly and compare its keys (and values where not NULL) */
static void
lf_check(const char *line, const char *const *keys, const char *const *vals, int nkeys)
{
	size_t bad = 0;
	int n = lf_parse(line, fs, MAXF, &bad);

	cr_assert(n >= 0, "logfmt %s: not well-formed at byte %zu", line, bad);
	cr_assert_eq(n, nkeys, "logfmt %s: got %d fields, want %d", line, n, nkeys);
	for (int i = 0; i < n; i++) {
		cr_assert_str_eq(fs[i].key, keys[i], "logfmt %s: field %d: got key %s, want %s", line, i,
		    fs[i].key, keys[i]);
		if (vals != NULL && vals[i] != NULL)
			cr_assert_str_eq(fs[i].val, vals[i], "logfmt %s: %s: got value %s, want %s", line,
			    keys[i], fs[i].val, vals[i]);
	}
}

/* js_parse - the line as a JSON object (caller frees), failing the test otherwise */
static cJSON *
js_parse(const char *line)
{
	cJSON *j = cJSON_Parse(line);

	cr_assert(j != NULL, "JSON %s: got a parse error, want an object", line);
	cr_assert(cJSON_IsObject(j), "JSON %s: got a non-object, want an object", line);
	return j;
}

static void
js_keys(const cJSON *j, const char *line, const char *const *keys, int nkeys)
{
	int i = 0;

	for (const cJSON *c = j->child; c != NULL; c = c->next, i++) {
		cr_assert(i < nkeys, "JSON %s: got more than %d keys", line, nkeys);
		cr_assert_str_eq(c->string, keys[i], "JSON %s: key %d: got %s, want %s", line, i,
		    c->string, keys[i]);
	}
	cr_assert_eq(i, nkeys, "JSON %s: got %d keys, want %d", line, i, nkeys);
}

static const char *
js_str(const cJSON *j, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);

	cr_assert(cJSON_IsString(v), "JSON: %s: got no string, want one", key);
	return v->valuestring;
}

/* --- the plain shapes ------------------------------------------------------- */

Test(log, logfmt_shape)
{
	char buf[4096];
	size_t n = log_render(buf, sizeof(buf), LOG_FORMAT_LOGFMT, TS, LOG_INFO, "accepted",
	    " msg_id=%s rcpts=%zu bytes=%d", "msg_01", (size_t)3, 512);
	const char *want = "ts=" TS " level=info msg=\"accepted\" msg_id=msg_01 rcpts=3 bytes=512";

	cr_assert_str_eq(buf, want, "got %s, want %s", buf, want);
	cr_assert_eq(n, strlen(want), "length: got %zu, want %zu", n, strlen(want));
}

Test(log, json_shape)
{
	char buf[4096];
	const char *want = "{\"ts\":\"" TS "\",\"level\":\"warn\",\"msg\":\"enqueue failed\","
	    "\"msg_id\":\"msg_01\",\"rcpts\":3,\"error\":\"unavailable\"}";

	log_render(buf, sizeof(buf), LOG_FORMAT_JSON, TS, LOG_WARN, "enqueue failed",
	    " msg_id=%s rcpts=%zu error=%s", "msg_01", (size_t)3, "unavailable");
	cr_assert_str_eq(buf, want, "got %s, want %s", buf, want);
}

Test(log, no_fields_and_levels)
{
	static const struct { enum log_level lv; const char *name; } lv[] = {
		{ LOG_DEBUG, "debug" }, { LOG_INFO, "info" }, { LOG_WARN, "warn" }, { LOG_ERROR, "error" },
	};
	char buf[256], want[256];

	for (size_t i = 0; i < sizeof(lv) / sizeof(lv[0]); i++) {
		log_render(buf, sizeof(buf), LOG_FORMAT_LOGFMT, TS, lv[i].lv, "embedded redis stopped", " ");
		snprintf(want, sizeof(want), "ts=%s level=%s msg=\"embedded redis stopped\"", TS, lv[i].name);
		cr_assert_str_eq(buf, want, "got %s, want %s", buf, want);
	}
}

/* --- escaping ------------------------------------------------------------------ */

Test(log, logfmt_escapes_values)
{
	static const struct { const char *in, *want_text; } cases[] = {
		{ "plain", "v=plain" },
		{ "two words", "v=\"two words\"" },
		{ "", "v=\"\"" },
		{ "say \"hi\"", "v=\"say \\\"hi\\\"\"" },
		{ "back\\slash", "v=\"back\\\\slash\"" },
		{ "a=b", "v=\"a=b\"" },
		{ "line\nnext\r\tx", "v=\"line\\nnext\\r\\tx\"" },
		{ "bell\x01" "del\x7f", "v=\"bell\\x01del\\x7f\"" },
		{ "bad\xff\xc3(", "v=\"bad\\xff\\xc3(\"" },
		{ "caf\xc3\xa9", "v=\"caf\xc3\xa9\"" },
	};
	char buf[512];
	const char *keys[] = { "ts", "level", "msg", "v" };

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *vals[] = { TS, "info", "m", cases[i].in };
		const char *tail;

		log_render(buf, sizeof(buf), LOG_FORMAT_LOGFMT, TS, LOG_INFO, "m", " v=%s", cases[i].in);
		tail = strstr(buf, " v=");
		cr_assert(tail != NULL, "got %s, want a v field", buf);
		cr_assert_str_eq(tail + 1, cases[i].want_text, "got %s, want %s", tail + 1,
		    cases[i].want_text);
		cr_assert(strchr(buf, '\n') == NULL && strchr(buf, '\r') == NULL,
		    "got a raw line break in %s", buf);
		/* invalid UTF-8 reads back as its bytes; the rest exactly */
		lf_check(buf, keys, vals, 4);
	}
}

Test(log, json_escapes_values)
{
	static const struct { const char *in, *want_json, *want_value; } cases[] = {
		{ "two words", "\"two words\"", "two words" },
		{ "say \"hi\"", "\"say \\\"hi\\\"\"", "say \"hi\"" },
		{ "back\\slash", "\"back\\\\slash\"", "back\\slash" },
		{ "line\nnext\r\tx", "\"line\\nnext\\r\\tx\"", "line\nnext\r\tx" },
		{ "bell\x01" "del\x7f", "\"bell\\u0001del\\u007f\"", "bell\x01" "del\x7f" },
		{ "bad\xff" "x", "\"bad\\ufffdx\"", "bad\xef\xbf\xbdx" },
		{ "caf\xc3\xa9", "\"caf\xc3\xa9\"", "caf\xc3\xa9" },
		{ "\xed\xa0\x80", "\"\\ufffd\\ufffd\\ufffd\"", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd" },
	};
	const char *keys[] = { "ts", "level", "msg", "v" };
	char buf[512], want[256];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		cJSON *j;

		log_render(buf, sizeof(buf), LOG_FORMAT_JSON, TS, LOG_INFO, "m", " v=%s", cases[i].in);
		snprintf(want, sizeof(want), ",\"v\":%s}", cases[i].want_json);
		cr_assert(strstr(buf, want) != NULL, "got %s, want it to end %s", buf, want);
		j = js_parse(buf);
		js_keys(j, buf, keys, 4);
		cr_assert_str_eq(js_str(j, "v"), cases[i].want_value, "case %zu: got %s, want %s", i,
		    js_str(j, "v"), cases[i].want_value);
		cJSON_Delete(j);
	}
}

/* the message itself is quoted and escaped like a value */
Test(log, msg_is_quoted)
{
	char buf[256];
	const char *want = "ts=" TS " level=info msg=\"a \\\"quoted\\\"\\nmsg\"";

	log_render(buf, sizeof(buf), LOG_FORMAT_LOGFMT, TS, LOG_INFO, "a \"quoted\"\nmsg", " ");
	cr_assert_str_eq(buf, want, "got %s, want %s", buf, want);
}

/* --- numbers and strings in JSON ----------------------------------------------- */

Test(log, json_numbers_and_strings)
{
	static const char *keys[] = { "ts", "level", "msg", "i", "neg", "z", "u", "ll", "s42",
	    "secs", "f", "hex", "addr", "null" };
	char buf[1024];
	cJSON *j;
	const cJSON *v;

	log_render(buf, sizeof(buf), LOG_FORMAT_JSON, TS, LOG_INFO, "m",
	    " i=%d neg=%d z=%zu u=%u ll=%lld s42=%s secs=%ds f=%.1f hex=%x addr=%s:%u null=%s",
	    7, -12, (size_t)4096, 3u, -9000000000LL, "42", 86400, 1.5, 255u, "127.0.0.1", 25u,
	    test_log_null);
	j = js_parse(buf);
	js_keys(j, buf, keys, (int)(sizeof(keys) / sizeof(keys[0])));
	static const struct { const char *key; double num; } nums[] = {
		{ "i", 7 }, { "neg", -12 }, { "z", 4096 }, { "u", 3 }, { "ll", -9000000000.0 },
	};
	for (size_t i = 0; i < sizeof(nums) / sizeof(nums[0]); i++) {
		v = cJSON_GetObjectItemCaseSensitive(j, nums[i].key);
		cr_assert(cJSON_IsNumber(v), "%s in %s: got a non-number, want a number", nums[i].key, buf);
		cr_assert(v->valuedouble == nums[i].num, "%s: got %g, want %g", nums[i].key,
		    v->valuedouble, nums[i].num);
	}
	static const struct { const char *key, *want; } strs[] = {
		{ "s42", "42" }, { "secs", "86400s" }, { "f", "1.5" }, { "hex", "ff" },
		{ "addr", "127.0.0.1:25" }, { "null", "(null)" },
	};
	for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++)
		cr_assert_str_eq(js_str(j, strs[i].key), strs[i].want, "%s: got %s, want the string %s",
		    strs[i].key, js_str(j, strs[i].key), strs[i].want);
	cJSON_Delete(j);
}

/* --- hostile values ------------------------------------------------------------ */

Test(log, hostile_value_cannot_forge_a_key_or_a_line)
{
	static const char *const evil[] = {
		"x level=error msg=forged",
		"x\" level=\"error",
		"x\nts=2026-01-01T00:00:00Z level=error msg=\"forged\"",
		"x\\\" admin=true",
		"\"}, \"level\":\"error",
		"x\r\n{\"level\":\"error\"}",
		"\\",
		"\xff\" k=v",
	};
	const char *keys[] = { "ts", "level", "msg", "rcpt", "status" };
	char buf[1024];

	for (size_t i = 0; i < sizeof(evil) / sizeof(evil[0]); i++) {
		const char *vals[] = { TS, "info", "delivered", NULL, "250" };
		cJSON *j;

		if (strchr(evil[i], '\xff') == NULL)
			vals[3] = evil[i];
		log_render(buf, sizeof(buf), LOG_FORMAT_LOGFMT, TS, LOG_INFO, "delivered",
		    " rcpt=%s status=%d", evil[i], 250);
		cr_assert(strchr(buf, '\n') == NULL, "logfmt: got a line break in %s", buf);
		lf_check(buf, keys, vals, 5);

		log_render(buf, sizeof(buf), LOG_FORMAT_JSON, TS, LOG_INFO, "delivered",
		    " rcpt=%s status=%d", evil[i], 250);
		cr_assert(strchr(buf, '\n') == NULL, "JSON: got a line break in %s", buf);
		j = js_parse(buf);
		js_keys(j, buf, keys, 5);
		cr_assert_str_eq(js_str(j, "level"), "info", "got level %s, want info", js_str(j, "level"));
		if (vals[3] != NULL)
			cr_assert_str_eq(js_str(j, "rcpt"), evil[i], "got rcpt %s, want %s", js_str(j, "rcpt"),
			    evil[i]);
		cJSON_Delete(j);
	}
}

/* --- truncation ----------------------------------------------------------------- */

/* many fields past the 4 KiB line: whole fields only, then truncated=true */
Test(log, truncation_keeps_the_line_well_formed)
{
	static char big[1100];
	char buf[4096];
	size_t bad = 0, n;
	int nf;
	cJSON *j;

	memset(big, 'a', sizeof(big) - 1);
	for (int f = 0; f < 2; f++) {
		enum log_format fmt = f ? LOG_FORMAT_JSON : LOG_FORMAT_LOGFMT;

		n = log_render(buf, sizeof(buf), fmt, TS, LOG_INFO, "m",
		    " a=%s b=%s c=%s d=%s e=%s last=%d", big, big, big, big, big, 1);
		cr_assert_eq(n, strlen(buf), "length: got %zu, want %zu", n, strlen(buf));
		cr_assert_lt(n, sizeof(buf), "got %zu bytes, want fewer than %zu", n, sizeof(buf));
		if (fmt == LOG_FORMAT_LOGFMT) {
			const char *end = " truncated=true";

			cr_assert(n > strlen(end) && strcmp(buf + n - strlen(end), end) == 0,
			    "got ...%s, want the line to end with%s", buf + (n > 40 ? n - 40 : 0), end);
			nf = lf_parse(buf, fs, MAXF, &bad);
			cr_assert(nf >= 0, "truncated logfmt not well-formed at byte %zu", bad);
			/* each value was cut at 1 KiB, and only whole fields were kept */
			for (int i = 3; i < nf - 1; i++)
				cr_assert_eq(strlen(fs[i].val), 1024, "%s: got %zu bytes, want 1024", fs[i].key,
				    strlen(fs[i].val));
			cr_assert_str_eq(fs[nf - 1].key, "truncated", "got last key %s, want truncated",
			    fs[nf - 1].key);
		} else {
			const cJSON *t;

			j = js_parse(buf);
			t = cJSON_GetObjectItemCaseSensitive(j, "truncated");
			cr_assert(cJSON_IsTrue(t), "JSON: got no \"truncated\":true in ...%s",
			    buf + (n > 40 ? n - 40 : 0));
			cr_assert(cJSON_GetObjectItemCaseSensitive(j, "last") == NULL,
			    "JSON: got the field past the cut");
			cJSON_Delete(j);
		}
	}
}

/* a value that grows when escaped past the line is dropped whole, not cut mid-escape */
Test(log, truncation_never_cuts_an_escape)
{
	static char ctl[1025], quotes[1025];
	char buf[4096];
	size_t bad = 0;
	int nf;
	cJSON *j;

	memset(ctl, 0x01, sizeof(ctl) - 1);      /* \u0001: six bytes each in JSON */
	memset(quotes, '"', sizeof(quotes) - 1);  /* \": two bytes each */
	log_render(buf, sizeof(buf), LOG_FORMAT_JSON, TS, LOG_INFO, "m", " msg_id=%s v=%s", "msg_1", ctl);
	j = js_parse(buf);
	cr_assert_str_eq(js_str(j, "msg_id"), "msg_1", "got msg_id %s, want msg_1", js_str(j, "msg_id"));
	cr_assert(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "truncated")),
	    "got no truncated=true in %.80s...", buf);
	cJSON_Delete(j);

	log_render(buf, sizeof(buf), LOG_FORMAT_LOGFMT, TS, LOG_INFO, "m",
	    " q1=%s q2=%s q3=%s", quotes, quotes, quotes);
	nf = lf_parse(buf, fs, MAXF, &bad);
	cr_assert(nf >= 0, "logfmt with escaped quotes not well-formed at byte %zu", bad);
	cr_assert_str_eq(fs[nf - 1].key, "truncated", "got last key %s, want truncated", fs[nf - 1].key);
}

/* a small buffer still gives a well-formed line */
Test(log, small_buffer)
{
	char buf[80];
	size_t bad = 0;
	cJSON *j;

	log_render(buf, sizeof(buf), LOG_FORMAT_LOGFMT, TS, LOG_INFO, "accepted",
	    " msg_id=%s rcpt=%s", "msg_0123456789", "someone.with.a.long.address@example.com");
	cr_assert_lt(strlen(buf), sizeof(buf), "got %zu bytes, want < %zu", strlen(buf), sizeof(buf));
	cr_assert(lf_parse(buf, fs, MAXF, &bad) >= 0, "got %s, not well-formed at byte %zu", buf, bad);
	cr_assert(strstr(buf, " truncated=true") != NULL, "got %s, want truncated=true", buf);

	log_render(buf, sizeof(buf), LOG_FORMAT_JSON, TS, LOG_INFO, "accepted",
	    " msg_id=%s rcpt=%s", "msg_0123456789", "someone.with.a.long.address@example.com");
	j = js_parse(buf);
	cJSON_Delete(j);
}

/* --- parsing the settings ---------------------------------------------------- */

Test(log, parse_level_and_format)
{
	cr_assert_eq(log_level_parse("debug"), LOG_DEBUG);
	cr_assert_eq(log_level_parse("INFO"), LOG_INFO);
	cr_assert_eq(log_level_parse("warning"), LOG_WARN);
	cr_assert_eq(log_level_parse("error"), LOG_ERROR);
	cr_assert_eq(log_level_parse("loud"), -1, "got %d, want -1", log_level_parse("loud"));
	cr_assert_eq(log_format_parse("json"), LOG_FORMAT_JSON);
	cr_assert_eq(log_format_parse("logfmt"), LOG_FORMAT_LOGFMT);
	cr_assert_eq(log_format_parse("xml"), -1, "got %d, want -1", log_format_parse("xml"));
}
