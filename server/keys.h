/*
 * keys.h - API keys: the `txmail keys create|list|revoke` command and the
 * authentication decision for a bearer token.
 *
 * A key is "txm_" + 40 base62 characters from the OS CSPRNG. Only its
 * SHA-256 (hex) is stored (store_key_create); the key itself is shown once.
 * Keys from TXMAIL_API_KEYS are compared by their SHA-256 digests in
 * constant time; their tenant is "env:<first 12 hex of the SHA-256>".
 */
#ifndef SERVER_KEYS_H
#define SERVER_KEYS_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "hash.h"
#include "store.h"

#define KEYS_PREFIX "txm_"
#define KEYS_RANDOM_CHARS 40
#define KEYS_TOKEN_LEN (sizeof(KEYS_PREFIX) - 1 + KEYS_RANDOM_CHARS)  /* 44 */
#define KEYS_NAME_MAX 64
#define KEYS_TENANT_MAX 72      /* a key name, or "env:" + 12 hex, with NUL */
#define KEYS_MAX_TOKEN 512      /* longer bearer tokens are rejected unhashed */

enum {
	KEYS_ERR_UNAUTHORIZED = -1, /* no such key */
	KEYS_ERR_UNAVAILABLE = -2,  /* Redis unreachable and the key is not an env key */
	KEYS_ERR_INTERNAL = -3,     /* OOM, hashing failure or an unexpected store reply */
};

/* keys_main - `txmail keys ...` (argv[0] = "keys"). Returns the exit status: 0, 1 (failed), 2 (usage). */
int keys_main(int argc, char **argv);

/* keys_generate - a new key into buf (>= KEYS_TOKEN_LEN + 1 bytes). 0, or -1 (CSPRNG failure, buf too small). */
int keys_generate(char *buf, size_t len);

/* keys_valid_name - 1 when name matches [A-Za-z0-9_.-]{1,64}, else 0. */
int keys_valid_name(const char *name);

/*
 * keys_match_env - 1 when digest is the SHA-256 of one of cfg->api_keys,
 * else 0 (-1 when hashing fails). Every configured key is hashed and
 * compared in constant time, with no early exit.
 */
int keys_match_env(const struct config *cfg, const unsigned char digest[HASH_SHA256_LEN]);

/* keys_env_tenant - "env:" + the first 12 hex digits of digest into out (>= 17 bytes). */
void keys_env_tenant(const unsigned char digest[HASH_SHA256_LEN], char *out, size_t outlen);

/*
 * keys_authenticate - who is (token, toklen)? 0 when it is a known key:
 * tenant (KEYS_TENANT_MAX bytes) is filled and one token of its rate limit
 * (cfg->rate_limit/s, burst cfg->rate_burst) is charged; *retry_after_ms
 * > 0 means the bucket is empty (the caller answers 429). An env key
 * authenticates even when Redis is down (s NULL or unreachable: the limiter
 * is skipped, fail open); a stored key then gives KEYS_ERR_UNAVAILABLE.
 * Errors: KEYS_ERR_UNAUTHORIZED, KEYS_ERR_UNAVAILABLE, KEYS_ERR_INTERNAL.
 */
int keys_authenticate(const struct config *cfg, struct store *s, const char *token,
    size_t toklen, int64_t now_ms, char *tenant, size_t tenantlen, int64_t *retry_after_ms);

#endif
