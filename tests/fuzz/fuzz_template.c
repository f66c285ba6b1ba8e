/*
 * fuzz_template.c - libFuzzer target for template_render and template_check
 * (server/template.c).
 *
 * Input: a 2-byte big-endian length, then that many bytes of JSON for the
 * variables (used when it parses to an object), then the template source.
 * Renders twice (html_escape 0 and 1) under a small output cap so the
 * TOOBIG path is reached. Checked: the result is NUL-terminated at
 * *out_len and within max_out; errors name something (NUL-terminated
 * `name`); template_check and template_render agree on syntax; a source
 * without "{{" renders to itself; a raw render is never longer than an
 * escaped one. Never aborts except on a broken property.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "../../server/template.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_OUT_MAX 8192

static int
render(const char *src, size_t len, const cJSON *vars, int esc, size_t *olen, char **out)
{
	char name[96];
	int rc;

	memset(name, 'x', sizeof(name));
	*out = NULL;
	*olen = 0;
	rc = template_render(src, len, vars, esc, FUZZ_OUT_MAX, out, olen, name, sizeof(name));
	if (rc == 0) {
		if (*out == NULL || *olen > FUZZ_OUT_MAX || (*out)[*olen] != '\0')
			abort();
	} else {
		if (rc != TEMPLATE_ERR_MISSING && rc != TEMPLATE_ERR_SYNTAX &&
		    rc != TEMPLATE_ERR_NOMEM && rc != TEMPLATE_ERR_TOOBIG)
			abort();
		if (memchr(name, '\0', sizeof(name)) == NULL)
			abort();
		free(*out);
		*out = NULL;
	}
	return rc;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *json = NULL, *src = NULL, *raw = NULL, *esc = NULL;
	char name[96];
	cJSON *vars = NULL;
	size_t jlen = 0, slen, rlen = 0, elen = 0;
	int crc, rrc, erc;

	if (size > 64 * 1024)
		return 0;
	if (size >= 2) {
		jlen = (size_t)data[0] << 8 | data[1];
		data += 2;
		size -= 2;
	}
	if (jlen > size)
		jlen = size;
	json = malloc(jlen + 1);
	slen = size - jlen;
	src = malloc(slen + 1);   /* exact size: ASan sees reads past len */
	if (json == NULL || src == NULL)
		goto out;
	memcpy(json, data, jlen);
	json[jlen] = '\0';
	memcpy(src, data + jlen, slen);
	src[slen] = '\0';
	vars = cJSON_ParseWithLength(json, jlen);
	if (vars != NULL && !cJSON_IsObject(vars)) {
		cJSON_Delete(vars);
		vars = NULL;
	}

	crc = template_check(src, slen, name, sizeof(name));
	rrc = render(src, slen, vars, 0, &rlen, &raw);
	erc = render(src, slen, vars, 1, &elen, &esc);
	/* render stops at a missing variable, so it may not reach a later syntax error */
	if ((crc == 0 && rrc == TEMPLATE_ERR_SYNTAX) ||
	    (rrc != TEMPLATE_ERR_MISSING && (crc == TEMPLATE_ERR_SYNTAX) != (rrc == TEMPLATE_ERR_SYNTAX)))
		abort();   /* check and render disagree on syntax */
	if (crc != 0 && crc != TEMPLATE_ERR_SYNTAX)
		abort();
	if ((rrc == TEMPLATE_ERR_SYNTAX) != (erc == TEMPLATE_ERR_SYNTAX) ||
	    (rrc == TEMPLATE_ERR_MISSING) != (erc == TEMPLATE_ERR_MISSING))
		abort();
	if (rrc == 0 && erc == 0 && rlen > elen)
		abort();   /* escaping never shortens */
	if (rrc == 0 && memmem(src, slen, "{{", 2) == NULL &&
	    (rlen != slen || memcmp(raw, src, slen) != 0))
		abort();   /* plain text is copied byte for byte */
out:
	free(raw);
	free(esc);
	cJSON_Delete(vars);
	free(json);
	free(src);
	return 0;
}
