/*
 * fuzz_verp.c - libFuzzer target for verp_parse and verp_make
 * (server/verp.c).
 *
 * The input, cut at its first NUL, is parsed as a bounce address for the
 * domain "bounce.example.com"; on VERP_OK the id must be a NUL-terminated
 * token without '.' or '@' and idx must be in 0..99999 or VERP_IDX_MESSAGE
 * (a message-level token). The input is also used as a message id (and
 * its first byte as an index, an odd byte meaning message level) for
 * verp_make: a made address must parse back to the same id and index,
 * upper-cased must still parse, and with one MAC character changed must
 * give VERP_ERR_MAC.
 */
#include <ctype.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../server/verp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char fuzz_secret[] = "fuzzing-secret-0123456789";
static const char fuzz_domain[] = "bounce.example.com";

static int
parse(const char *addr, char *id, size_t idlen, int *idx)
{
	int rc;

	memset(id, 'x', idlen);
	*idx = -7;
	rc = verp_parse(fuzz_secret, sizeof(fuzz_secret) - 1, fuzz_domain, addr, id, idlen, idx);
	if (rc == VERP_OK) {
		if (memchr(id, '\0', idlen) == NULL || id[0] == '\0' ||
		    strchr(id, '.') != NULL || strchr(id, '@') != NULL ||
		    ((*idx < 0 || *idx >= 100000) && *idx != VERP_IDX_MESSAGE))
			abort();
	} else if (rc != VERP_ERR_NOT_OURS && rc != VERP_ERR_SYNTAX && rc != VERP_ERR_MAC &&
	    rc != VERP_ERR_ARG && rc != VERP_ERR_CRYPTO) {
		abort();
	}
	return rc;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s, addr[VERP_ADDR_MAX + 1], id[VERP_ID_MAX + 1];
	int idx, made_idx, rc, lower = 1;
	size_t n;

	if (size > 4096)
		return 0;
	s = malloc(size + 1);
	if (s == NULL)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	n = strlen(s);
	parse(s, id, sizeof(id), &idx);
	parse(s, id, 8, &idx);   /* a short id buffer must be respected */

	made_idx = size > 0 ? (data[0] % 2 == 1 ? VERP_IDX_MESSAGE : data[0] * 389) : 0;
	rc = verp_make(fuzz_secret, sizeof(fuzz_secret) - 1, fuzz_domain, s, made_idx,
	    addr, sizeof(addr));
	for (size_t i = 0; i < n; i++)
		if (isupper((unsigned char)s[i]))
			lower = 0;
	if (rc == VERP_OK && lower) {
		char *mac;

		if (parse(addr, id, sizeof(id), &idx) != VERP_OK || strcmp(id, s) != 0 ||
		    idx != made_idx)
			abort();   /* what we make, we read back */
		for (char *p = addr; *p != '\0'; p++)
			*p = (char)toupper((unsigned char)*p);
		if (parse(addr, id, sizeof(id), &idx) != VERP_OK || idx != made_idx)
			abort();   /* case-insensitive */
		mac = strchr(addr, '@') - 1;
		*mac = *mac == '0' ? '1' : '0';
		if (parse(addr, id, sizeof(id), &idx) != VERP_ERR_MAC)
			abort();   /* a changed MAC is refused */
	} else if (rc != VERP_OK && rc != VERP_ERR_ARG && rc != VERP_ERR_SPACE) {
		abort();
	}
	free(s);
	return 0;
}
