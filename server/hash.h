/*
 * hash.h - SHA-256 digests and constant-time comparison, for secrets that
 * are stored or compared only as hashes (API keys, idempotency keys).
 *
 * Pure: no I/O, no allocation visible to the caller, no logging.
 */
#ifndef SERVER_HASH_H
#define SERVER_HASH_H

#include <stddef.h>

#define HASH_SHA256_LEN 32
#define HASH_SHA256_HEX_LEN 64   /* without the NUL */

/* hash_sha256 - out = SHA-256(data, len). 0, or -1 when OpenSSL fails (OOM). */
int hash_sha256(const void *data, size_t len, unsigned char out[HASH_SHA256_LEN]);

/* hash_sha256_hex - out = lower-case hex SHA-256, NUL-terminated. 0, or -1 (out = ""). */
int hash_sha256_hex(const void *data, size_t len, char out[HASH_SHA256_HEX_LEN + 1]);

/* hash_hex - lower-case hex of (data, len) into out (2*len+1 bytes). */
void hash_hex(const unsigned char *data, size_t len, char *out);

/*
 * hash_ct_equal - 1 when a and b (both len bytes) are equal, else 0. Its
 * running time depends only on len, never on where the bytes differ.
 */
int hash_ct_equal(const void *a, const void *b, size_t len);

#endif
