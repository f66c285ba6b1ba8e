/*
 * fuzz_mx.c - libFuzzer target for mx_parse and mx_classify (smtp/mx.c),
 * the reader of DNS responses from the network.
 *
 * The input is one DNS response (copied into a buffer of exactly its size,
 * so ASan sees any read past the end). Checked: the result is 0 or
 * MX_EMALFORMED; on 0 the counts are within MX_MAX_RECORDS/MX_MAX_ADDRS,
 * every name and address is NUL-terminated in its array, MX names hold
 * only letters, digits, '-', '_' and '.', addresses parse back with
 * inet_pton; mx_classify gives one of the enum mx_status values.
 */
#include <arpa/inet.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../smtp/mx.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct mx_parsed p;
	unsigned char *buf;
	enum mx_status st;
	int rc;

	if (size > 65535)
		return 0;
	buf = malloc(size > 0 ? size : 1);
	if (buf == NULL)
		return 0;
	memcpy(buf, data, size);
	memset(&p, 0xA5, sizeof(p));
	rc = mx_parse(buf, size, &p);
	if (rc != 0) {
		if (rc != MX_EMALFORMED)
			abort();
		goto out;
	}
	if (p.nmx > MX_MAX_RECORDS || p.naddr > MX_MAX_ADDRS)
		abort();
	for (size_t i = 0; i < p.nmx; i++) {
		const char *n = p.mx[i].name;

		if (memchr(n, '\0', sizeof(p.mx[i].name)) == NULL)
			abort();
		for (; *n != '\0'; n++)
			if (!((*n >= 'a' && *n <= 'z') || (*n >= 'A' && *n <= 'Z') ||
			    (*n >= '0' && *n <= '9') || *n == '-' || *n == '_' || *n == '.'))
				abort();
	}
	for (size_t i = 0; i < p.naddr; i++) {
		unsigned char bin[16];

		if (memchr(p.addrs[i], '\0', MX_ADDR_MAX) == NULL)
			abort();
		if (inet_pton(AF_INET, p.addrs[i], bin) != 1 &&
		    inet_pton(AF_INET6, p.addrs[i], bin) != 1)
			abort();
	}
	st = mx_classify(&p);
	if (st != MX_OK && st != MX_NXDOMAIN && st != MX_NULL && st != MX_NOHOST &&
	    st != MX_TEMPFAIL)
		abort();
out:
	free(buf);
	return 0;
}
