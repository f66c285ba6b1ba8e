/*
 * hash.c - SHA-256 (OpenSSL EVP) and constant-time comparison.
 *
 * Owns nothing but these pure helpers. It must never log, keep state
 * between calls, or compare secrets with an early exit.
 */
#include "hash.h"

#include <openssl/evp.h>

int
hash_sha256(const void *data, size_t len, unsigned char out[HASH_SHA256_LEN])
{
	unsigned int n = 0;

	if (EVP_Digest(data, len, out, &n, EVP_sha256(), NULL) != 1 || n != HASH_SHA256_LEN)
		return -1;
	return 0;
}

void
hash_hex(const unsigned char *data, size_t len, char *out)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < len; i++) {
		out[2 * i] = digits[data[i] >> 4];
		out[2 * i + 1] = digits[data[i] & 0x0f];
	}
	out[2 * len] = '\0';
}

int
hash_sha256_hex(const void *data, size_t len, char out[HASH_SHA256_HEX_LEN + 1])
{
	unsigned char d[HASH_SHA256_LEN];

	if (hash_sha256(data, len, d) != 0) {
		out[0] = '\0';
		return -1;
	}
	hash_hex(d, sizeof(d), out);
	return 0;
}

int
hash_ct_equal(const void *a, const void *b, size_t len)
{
	const volatile unsigned char *x = a, *y = b;
	unsigned char diff = 0;

	for (size_t i = 0; i < len; i++)
		diff |= (unsigned char)(x[i] ^ y[i]);
	return diff == 0;
}
