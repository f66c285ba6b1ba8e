/*
 * fuzz_etag.c - libFuzzer target for etag_none_match and etag_make
 * (server/etag.c).
 *
 * The input, cut to fit, is an If-None-Match value tested against the tag
 * of the input's bytes: the answer must be 0 or 1; the tag itself and W/ +
 * the tag must match; and a list of entity tags that matched keeps
 * matching with ", " + the tag appended.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../server/etag.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char tag[ETAG_LEN + 1], inm[ETAG_HEADER_MAX + 1], two[2 * ETAG_LEN + 8];
	size_t n = size < ETAG_HEADER_MAX - ETAG_LEN - 4 ? size : ETAG_HEADER_MAX - ETAG_LEN - 4;
	int m;

	if (etag_make((const char *)data, size, tag, sizeof(tag)) != 0)
		abort();
	memcpy(inm, data, n);
	inm[n] = '\0';
	m = etag_none_match(inm, tag);
	if (m != 0 && m != 1)
		abort();
	if (etag_none_match(tag, tag) != 1)
		abort();
	memcpy(two, "W/", 2);
	memcpy(two + 2, tag, ETAG_LEN + 1);
	if (etag_none_match(two, tag) != 1)
		abort();
	if (m == 1 && strcmp(inm, "*") != 0 && strspn(inm, " \t*") != strlen(inm)) {
		size_t l = strlen(inm);

		memcpy(inm + l, ", ", 2);
		memcpy(inm + l + 2, tag, ETAG_LEN + 1);
		if (etag_none_match(inm, tag) != 1)
			abort();
	}
	return 0;
}
