/*
 * validate_scan.c - the scans http.c runs on a request body around the
 * parse: the value count before cJSON sees it (validate_json_count), the
 * nesting depth (validate_json_depth) and \u0000 escapes with the path of
 * the first one (validate_json_nul). Pure: bytes in, a number or a field
 * path out.
 *
 * It must never allocate, do I/O or recurse without a limit: every scan is
 * one bounded pass, and a field path it names is cleaned before it is echoed.
 */
#include "validate.h"
#include "validate_internal.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

/* --- NUL escapes ---------------------------------------------------------- */

#define NUL_MAX_DEPTH 32
#define NUL_MAX_KEY 100

struct nul_level {
	int is_obj;
	size_t index;
	char key[NUL_MAX_KEY + 1];
};

static void
nul_path(const struct nul_level *lv, size_t depth, char *field, size_t fieldlen)
{
	size_t off = 0;

	field[0] = '\0';
	for (size_t d = 0; d < depth && d < NUL_MAX_DEPTH && off < fieldlen; d++) {
		int w;

		if (lv[d].is_obj)
			w = snprintf(field + off, fieldlen - off, "%s%s", off ? "." : "", lv[d].key);
		else
			w = snprintf(field + off, fieldlen - off, "[%zu]", lv[d].index);
		if (w < 0)
			break;
		off += (size_t)w;
	}
	validate_field_clean(field);
}

int
validate_json_nul(const char *json, size_t len, char *field, size_t fieldlen)
{
	struct nul_level lv[NUL_MAX_DEPTH];
	size_t depth = 0, i = 0;
	int expect_key = 0;

	if (fieldlen > 0)
		field[0] = '\0';
	/* every \u0000 escape holds these six bytes: most bodies need no walk at all */
	if (memmem(json, len, "\\u0000", 6) == NULL)
		return 0;
	while (i < len) {
		char c = json[i];

		if (c == '{' || c == '[') {
			if (depth < NUL_MAX_DEPTH) {
				lv[depth].is_obj = c == '{';
				lv[depth].index = 0;
				lv[depth].key[0] = '\0';
			}
			depth++;
			expect_key = c == '{';
			i++;
		} else if (c == '}' || c == ']') {
			if (depth > 0)
				depth--;
			expect_key = 0;
			i++;
		} else if (c == ',') {
			if (depth > 0 && depth <= NUL_MAX_DEPTH) {
				lv[depth - 1].index++;
				expect_key = lv[depth - 1].is_obj;
			}
			i++;
		} else if (c == ':') {
			expect_key = 0;
			i++;
		} else if (c == '"') {
			int is_key = expect_key && depth > 0 && depth <= NUL_MAX_DEPTH;
			size_t klen = 0;

			i++;
			while (i < len && json[i] != '"') {
				if (json[i] == '\\' && i + 1 < len) {
					if (json[i + 1] == 'u' && i + 5 < len &&
					    memcmp(json + i + 2, "0000", 4) == 0) {
						if (fieldlen > 0)
							nul_path(lv, is_key ? depth - 1 : depth, field, fieldlen);
						return 1;
					}
					if (is_key && klen + 2 <= NUL_MAX_KEY) {
						lv[depth - 1].key[klen++] = json[i];
						lv[depth - 1].key[klen++] = json[i + 1];
					}
					i += 2;
					continue;
				}
				if (is_key && klen < NUL_MAX_KEY)
					lv[depth - 1].key[klen++] = json[i];
				i++;
			}
			if (is_key)
				lv[depth - 1].key[klen] = '\0';
			i++;
		} else {
			i++;
		}
	}
	return 0;
}

/* --- value count ------------------------------------------------------------ */

/* a byte cJSON skips between tokens (it takes every byte up to space) */
static int
json_blank(unsigned char c)
{
	return c <= 0x20;
}

/* a byte of a number or literal: cJSON takes [0-9+-.eE], literals are letters */
static int
json_word(unsigned char c)
{
	return isalnum(c) || c == '+' || c == '-' || c == '.';
}

size_t
validate_json_count(const char *json, size_t len, size_t limit)
{
	size_t n = 0, i = 0;

	while (i < len && n <= limit) {
		unsigned char c = (unsigned char)json[i];

		if (c == '"') {
			/* a string is a value unless it is a member name (':' follows) */
			i++;
			while (i < len && json[i] != '"')
				i += json[i] == '\\' ? 2 : 1;
			i++;
			while (i < len && json_blank((unsigned char)json[i]))
				i++;
			if (i >= len || json[i] != ':')
				n++;
		} else if (c == '{' || c == '[') {
			n++;
			i++;
		} else if (c == '-' || isdigit(c) || c == 't' || c == 'f' || c == 'n') {
			n++;
			while (i < len && json_word((unsigned char)json[i]))
				i++;
		} else {
			i++;
		}
	}
	return n > limit ? limit + 1 : n;
}

int
validate_json_depth(const cJSON *node, int limit)
{
	int max = 0;

	if (node == NULL || !(cJSON_IsArray(node) || cJSON_IsObject(node)))
		return 0;
	if (limit <= 0)
		return 1;
	for (const cJSON *c = node->child; c != NULL; c = c->next) {
		int d = validate_json_depth(c, limit - 1);

		if (d > max)
			max = d;
		if (max >= limit)
			break;
	}
	return max + 1;
}
