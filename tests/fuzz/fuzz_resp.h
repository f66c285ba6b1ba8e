/*
 * fuzz_resp.h - shared by the fuzz targets that parse RESP with hiredis's
 * reader (fuzz_sentinel.c, fuzz_store_cluster.c).
 *
 * fuzz_resp_arrays_small - 0 when an array header "*N" in s announces more
 * than 65536 elements: hiredis 0.14's reader callocs N pointers before it
 * reads one, which the fuzzer reports as out of memory (hiredis's trait,
 * not the parser under test; no reply a server sends us is that wide).
 */
#ifndef TESTS_FUZZ_FUZZ_RESP_H
#define TESTS_FUZZ_FUZZ_RESP_H

#include <stddef.h>

static inline int
fuzz_resp_arrays_small(const char *s, size_t size)
{
	for (size_t i = 0; i < size; i++) {
		unsigned long n = 0;

		if (s[i] != '*')
			continue;
		for (size_t k = i + 1; k < size && s[k] >= '0' && s[k] <= '9'; k++)
			if ((n = n * 10 + (unsigned long)(s[k] - '0')) > 65536)
				return 0;
	}
	return 1;
}

#endif
