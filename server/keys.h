/*
 * keys.h - API keys: the `txmail keys create|list|revoke` command and the
 * authentication decision for a bearer token: who is calling, in which
 * project, with which scope, and whether from an allowed address.
 *
 * A key is "txm_" + 40 base62 characters from the OS CSPRNG. Only its
 * SHA-256 (hex) is stored (store_key_create) with its name, project, scope
 * and allowlist; the key itself is shown once. Keys from TXMAIL_API_KEYS
 * are compared by their SHA-256 digests in constant time; their tenant is
 * "env:<first 12 hex of the SHA-256>", their project "default", their
 * scope full, and they have no allowlist.
 *
 * Scopes: send (POST /v1/messages and /v1/messages/batch), read (GETs,
 * the event stream included), full (everything in the key's project; the
 * default) and admin (every project). Which scope a route needs is a
 * column of http.c's route table; keys_scope_allows decides.
 */
#ifndef SERVER_KEYS_H
#define SERVER_KEYS_H

#include <stddef.h>
#include <stdint.h>

#include "cidr.h"
#include "config.h"
#include "hash.h"
#include "store.h"

#define KEYS_PREFIX "txm_"
#define KEYS_RANDOM_CHARS 40
#define KEYS_TOKEN_LEN (sizeof(KEYS_PREFIX) - 1 + KEYS_RANDOM_CHARS)  /* 44 */
#define KEYS_NAME_MAX 64
#define KEYS_TENANT_MAX 72      /* a key name, or "env:" + 12 hex, with NUL */
#define KEYS_MAX_TOKEN 512      /* longer bearer tokens are rejected unhashed */

#define KEYS_PROJECT_DEFAULT "default"   /* the project of TXMAIL_API_KEYS keys */

enum {
	KEYS_ERR_UNAUTHORIZED = -1, /* no such key */
	KEYS_ERR_UNAVAILABLE = -2,  /* Redis unreachable and the key is not an env key */
	KEYS_ERR_INTERNAL = -3,     /* OOM, hashing failure or an unexpected store reply */
	KEYS_ERR_FORBIDDEN = -4,    /* a key with an allowlist, from another (or an unknown) address */
};

/* A key's scope; KEYS_SCOPE_NONE (a stored value this release does not know) allows nothing. */
enum keys_scope {
	KEYS_SCOPE_NONE = 0,
	KEYS_SCOPE_SEND,
	KEYS_SCOPE_READ,
	KEYS_SCOPE_FULL,
	KEYS_SCOPE_ADMIN,
};

/*
 * What the request cost in its project's token bucket (the RateLimit-*
 * headers, draft-ietf-httpapi-ratelimit-headers): charged 0 when no bucket
 * was charged (TXMAIL_RATE_LIMIT=0, or an env key while Redis is down:
 * fail open), then the rest is 0.
 */
struct keys_rate {
	int charged;
	int64_t limit;      /* the bucket's size (TXMAIL_RATE_BURST, at least 1) */
	int64_t remaining;  /* whole tokens left after this request */
	int64_t reset_s;    /* seconds (rounded up) until the bucket is full again */
};

/* Who is calling: filled by keys_authenticate. */
struct keys_identity {
	char tenant[KEYS_TENANT_MAX];       /* the key's name, or "env:<12 hex>" */
	char project[KEYS_NAME_MAX + 1];    /* the key's project ("default" for env keys) */
	enum keys_scope scope;
	struct keys_rate rate;              /* this request's charge */
};

/* keys_scope_parse - "send", "read", "full" or "admin" into *out; 0, or -1 for anything else. */
int keys_scope_parse(const char *s, enum keys_scope *out);

/* keys_scope_name - "send", "read", "full", "admin" ("none" for KEYS_SCOPE_NONE). */
const char *keys_scope_name(enum keys_scope sc);

/*
 * keys_scope_allows - 1 when a key of scope have may call a route that
 * needs scope need: the same scope, full for send and read routes, admin
 * for every route. Else 0 (always 0 for have KEYS_SCOPE_NONE).
 */
int keys_scope_allows(enum keys_scope have, enum keys_scope need);

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
 * keys_authenticate - who is (token, toklen), calling from client (the
 * request's address, CIDR_ADDR_LEN bytes; NULL when it is unknown)? 0
 * when it is a known key allowed from client: who is filled and one token
 * of its project's rate limit (cfg->rate_limit/s, burst cfg->rate_burst)
 * is charged (who->rate says what is left); *retry_after_ms > 0 means the
 * bucket is empty (the caller answers 429). A key with an allowlist gives KEYS_ERR_FORBIDDEN from any
 * other address, and from an unknown one, before anything is charged. An
 * env key authenticates even when Redis is down (s NULL or unreachable: the
 * limiter is skipped, fail open); a stored key then gives
 * KEYS_ERR_UNAVAILABLE. Errors: KEYS_ERR_UNAUTHORIZED, KEYS_ERR_FORBIDDEN,
 * KEYS_ERR_UNAVAILABLE, KEYS_ERR_INTERNAL; on error who->tenant is "".
 */
int keys_authenticate(const struct config *cfg, struct store *s, const char *token,
    size_t toklen, const unsigned char *client, int64_t now_ms, struct keys_identity *who,
    int64_t *retry_after_ms);

#endif
