/*
 * hash.c - SHA-256 (OpenSSL EVP) and constant-time comparison.
 *
 * Owns nothing but these pure helpers and one SHA-256 implementation
 * fetched from OpenSSL once (EVP_sha256() looks it up in the provider on
 * every digest: more than half the cost of hashing a short key; a fetched
 * EVP_MD is immutable and shared by all threads). It must never log, keep
 * other state between calls, or compare secrets with an early exit.
 */
#include "hash.h"

#include <pthread.h>

#include <openssl/evp.h>

static pthread_once_t hash_once = PTHREAD_ONCE_INIT;
static EVP_MD *hash_md;     /* NULL if the fetch failed: EVP_sha256() then */

static void
hash_fetch(void)
{
	hash_md = EVP_MD_fetch(NULL, "SHA256", NULL);
}

int
hash_sha256(const void *data, size_t len, unsigned char out[HASH_SHA256_LEN])
{
	unsigned int n = 0;

	(void)pthread_once(&hash_once, hash_fetch);
	if (EVP_Digest(data, len, out, &n, hash_md != NULL ? hash_md : EVP_sha256(), NULL) != 1 ||
	    n != HASH_SHA256_LEN)
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
