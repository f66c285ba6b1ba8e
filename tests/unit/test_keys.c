/*
 * test_keys.c - the pure parts of API keys: key format, SHA-256 against
 * known vectors, constant-time comparison, names, env-key matching and the
 * authentication decision without Redis. The CLI and the store-backed path
 * are covered by tests/integration/test_keys_cli.py.
 */
#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <stdlib.h>
#include <string.h>

#include "../../server/config.h"
#include "../../server/hash.h"
#include "../../server/keys.h"

static int
is_base62(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

Test(keys, generate_format_and_uniqueness)
{
	char a[KEYS_TOKEN_LEN + 1], b[KEYS_TOKEN_LEN + 1];

	cr_assert_eq(keys_generate(a, sizeof(a)), 0);
	cr_assert_eq(keys_generate(b, sizeof(b)), 0);
	cr_assert_eq(strlen(a), 44, "got length %zu, want 44", strlen(a));
	cr_assert_eq(strncmp(a, "txm_", 4), 0, "got %.4s, want prefix txm_", a);
	for (size_t i = 4; i < strlen(a); i++)
		cr_assert(is_base62(a[i]), "got char %#x at %zu, want base62", (unsigned)(unsigned char)a[i], i);
	cr_assert_str_neq(a, b, "two generated keys are equal: %s", a);
	cr_assert_eq(keys_generate(a, KEYS_TOKEN_LEN), -1, "got success with a short buffer, want -1");
}

Test(keys, generate_uses_whole_alphabet)
{
	int seen[256] = { 0 };
	char k[KEYS_TOKEN_LEN + 1];
	int distinct = 0;

	for (int i = 0; i < 200; i++) {
		cr_assert_eq(keys_generate(k, sizeof(k)), 0);
		for (size_t j = 4; j < KEYS_TOKEN_LEN; j++)
			seen[(unsigned char)k[j]] = 1;
	}
	for (int c = 0; c < 256; c++)
		distinct += seen[c];
	cr_assert_eq(distinct, 62, "got %d distinct characters in 8000 draws, want 62", distinct);
}

static const struct {
	const char *in;
	const char *hex;
} sha_vectors[] = {
	{ "", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" },
	{ "abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" },
	{ "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
	  "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1" },
};

Test(hash, sha256_known_vectors)
{
	for (size_t i = 0; i < sizeof(sha_vectors) / sizeof(sha_vectors[0]); i++) {
		char hex[HASH_SHA256_HEX_LEN + 1];

		cr_assert_eq(hash_sha256_hex(sha_vectors[i].in, strlen(sha_vectors[i].in), hex), 0);
		cr_assert_str_eq(hex, sha_vectors[i].hex, "sha256(%s): got %s, want %s",
		    sha_vectors[i].in, hex, sha_vectors[i].hex);
	}
}

Test(hash, ct_equal)
{
	static const struct {
		const char *a, *b;
		size_t len;
		int want;
	} cases[] = {
		{ "", "", 0, 1 },
		{ "abcdef", "abcdef", 6, 1 },
		{ "abcdef", "abcdeg", 6, 0 },
		{ "Abcdef", "abcdef", 6, 0 },
		{ "abc\0ef", "abc\0ef", 6, 1 },
		{ "abc\0ef", "abc\0eX", 6, 0 },
		{ "abcdef", "abcXYZ", 3, 1 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int got = hash_ct_equal(cases[i].a, cases[i].b, cases[i].len);

		cr_assert_eq(got, cases[i].want, "case %zu: got %d, want %d", i, got, cases[i].want);
	}
}

Test(keys, valid_name)
{
	static const struct {
		const char *name;
		int want;
	} cases[] = {
		{ "ci", 1 }, { "a", 1 }, { "prod-billing_v2.1", 1 },
		{ "0123456789012345678901234567890123456789012345678901234567890123", 1 },
		{ "01234567890123456789012345678901234567890123456789012345678901234", 0 },
		{ "", 0 }, { "has space", 0 }, { "env:abc", 0 }, { "a/b", 0 }, { "ünï", 0 },
		{ "x\n", 0 },
	};

	cr_assert_eq(keys_valid_name(NULL), 0, "got 1 for NULL, want 0");
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int got = keys_valid_name(cases[i].name);

		cr_assert_eq(got, cases[i].want, "name '%s': got %d, want %d", cases[i].name, got,
		    cases[i].want);
	}
}

static struct config
env_config(const char *const *keys, size_t n)
{
	struct config cfg;

	memset(&cfg, 0, sizeof(cfg));
	for (size_t i = 0; i < n; i++)
		cfg.api_keys[i] = strdup(keys[i]);
	cfg.napi_keys = n;
	return cfg;
}

static void
env_config_free(struct config *cfg)
{
	for (size_t i = 0; i < cfg->napi_keys; i++)
		free(cfg->api_keys[i]);
}

Test(keys, match_env_and_tenant)
{
	static const char *const keys[] = { "first-key", "", "second-key" };
	struct config cfg = env_config(keys, 3);
	unsigned char d[HASH_SHA256_LEN];
	char tenant[KEYS_TENANT_MAX];
	static const struct {
		const char *token;
		int want;
	} cases[] = {
		{ "first-key", 1 }, { "second-key", 1 }, { "", 0 }, { "first-ke", 0 },
		{ "first-key ", 0 }, { "third-key", 0 }, { "FIRST-KEY", 0 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		cr_assert_eq(hash_sha256(cases[i].token, strlen(cases[i].token), d), 0);
		int got = keys_match_env(&cfg, d);

		cr_assert_eq(got, cases[i].want, "token '%s': got %d, want %d", cases[i].token, got,
		    cases[i].want);
	}
	/* sha256("abc") = ba7816bf8f01... */
	cr_assert_eq(hash_sha256("abc", 3, d), 0);
	keys_env_tenant(d, tenant, sizeof(tenant));
	cr_assert_str_eq(tenant, "env:ba7816bf8f01", "got %s, want env:ba7816bf8f01", tenant);
	env_config_free(&cfg);
}

Test(keys, authenticate_without_store)
{
	static const char *const keys[] = { "abc" };
	struct config cfg = env_config(keys, 1);
	struct keys_identity who;
	unsigned char lo[CIDR_ADDR_LEN];
	int64_t ra = -1;
	int rc;

	cfg.rate_limit = 50;
	cfg.rate_burst = 100;
	cr_assert_eq(cidr_addr_parse("127.0.0.1", 9, lo), CIDR_OK);
	/* an env key authenticates even with no Redis (limiter fails open), from anywhere */
	rc = keys_authenticate(&cfg, NULL, "abc", 3, lo, 1000, &who, &ra);
	cr_assert_eq(rc, 0, "env key: got %d, want 0", rc);
	cr_assert_str_eq(who.tenant, "env:ba7816bf8f01", "got tenant %s, want env:ba7816bf8f01", who.tenant);
	cr_assert_str_eq(who.project, "default", "got project %s, want default", who.project);
	cr_assert_eq(who.scope, KEYS_SCOPE_FULL, "got scope %d, want full", who.scope);
	cr_assert_eq(ra, 0, "got retry_after %lld, want 0", (long long)ra);
	rc = keys_authenticate(&cfg, NULL, "abc", 3, NULL, 1000, &who, &ra);
	cr_assert_eq(rc, 0, "env key, unknown address: got %d, want 0", rc);
	/* any other token needs the store: unavailable, not unauthorized */
	rc = keys_authenticate(&cfg, NULL, "abd", 3, lo, 1000, &who, &ra);
	cr_assert_eq(rc, KEYS_ERR_UNAVAILABLE, "unknown key, no store: got %d, want %d", rc,
	    KEYS_ERR_UNAVAILABLE);
	cr_assert_str_eq(who.tenant, "", "got tenant '%s', want empty", who.tenant);
	/* empty and oversized tokens are rejected before hashing */
	rc = keys_authenticate(&cfg, NULL, "", 0, lo, 1000, &who, &ra);
	cr_assert_eq(rc, KEYS_ERR_UNAUTHORIZED, "empty token: got %d, want %d", rc, KEYS_ERR_UNAUTHORIZED);
	{
		char big[KEYS_MAX_TOKEN + 2];

		memset(big, 'a', sizeof(big) - 1);
		big[sizeof(big) - 1] = '\0';
		rc = keys_authenticate(&cfg, NULL, big, strlen(big), lo, 1000, &who, &ra);
		cr_assert_eq(rc, KEYS_ERR_UNAUTHORIZED, "oversized token: got %d, want %d", rc,
		    KEYS_ERR_UNAUTHORIZED);
	}
	env_config_free(&cfg);
}

Test(keys, scopes)
{
	static const struct {
		enum keys_scope have, need;
		int want;
	} cases[] = {
		{ KEYS_SCOPE_SEND, KEYS_SCOPE_SEND, 1 },
		{ KEYS_SCOPE_SEND, KEYS_SCOPE_READ, 0 },
		{ KEYS_SCOPE_SEND, KEYS_SCOPE_FULL, 0 },
		{ KEYS_SCOPE_READ, KEYS_SCOPE_READ, 1 },
		{ KEYS_SCOPE_READ, KEYS_SCOPE_SEND, 0 },
		{ KEYS_SCOPE_READ, KEYS_SCOPE_FULL, 0 },
		{ KEYS_SCOPE_FULL, KEYS_SCOPE_SEND, 1 },
		{ KEYS_SCOPE_FULL, KEYS_SCOPE_READ, 1 },
		{ KEYS_SCOPE_FULL, KEYS_SCOPE_FULL, 1 },
		{ KEYS_SCOPE_FULL, KEYS_SCOPE_ADMIN, 0 },
		{ KEYS_SCOPE_ADMIN, KEYS_SCOPE_ADMIN, 1 },
		{ KEYS_SCOPE_ADMIN, KEYS_SCOPE_FULL, 1 },
		{ KEYS_SCOPE_ADMIN, KEYS_SCOPE_SEND, 1 },
		{ KEYS_SCOPE_NONE, KEYS_SCOPE_SEND, 0 },
		{ KEYS_SCOPE_NONE, KEYS_SCOPE_READ, 0 },
	};
	static const char *const names[] = { "send", "read", "full", "admin" };
	enum keys_scope sc;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int got = keys_scope_allows(cases[i].have, cases[i].need);

		cr_assert_eq(got, cases[i].want, "scope %s on a %s route: got %d, want %d",
		    keys_scope_name(cases[i].have), keys_scope_name(cases[i].need), got, cases[i].want);
	}
	for (size_t i = 0; i < 4; i++) {
		cr_assert_eq(keys_scope_parse(names[i], &sc), 0, "parse %s", names[i]);
		cr_assert_str_eq(keys_scope_name(sc), names[i]);
	}
	cr_assert_eq(keys_scope_parse("Full", &sc), -1);
	cr_assert_eq(keys_scope_parse("none", &sc), -1, "none is not a scope one can give");
	cr_assert_eq(keys_scope_parse("", &sc), -1);
}

static void
quiet(void)
{
	cr_redirect_stdout();
	cr_redirect_stderr();
}

/* usage errors and --help never touch Redis */
Test(keys, main_usage_statuses, .init = quiet)
{
	static const struct {
		int argc;
		const char *argv[4];
		int want;
	} cases[] = {
		{ 1, { "keys" }, 2 },
		{ 2, { "keys", "--help" }, 0 },
		{ 2, { "keys", "bogus" }, 2 },
		{ 3, { "keys", "create", "--help" }, 0 },
		{ 2, { "keys", "create" }, 2 },
		{ 3, { "keys", "create", "--name" }, 2 },
		{ 4, { "keys", "create", "--name", "bad name" }, 2 },
		{ 3, { "keys", "list", "--help" }, 0 },
		{ 3, { "keys", "list", "extra" }, 2 },
		{ 3, { "keys", "revoke", "--help" }, 0 },
		{ 2, { "keys", "revoke" }, 2 },
		{ 4, { "keys", "revoke", "a", "b" }, 2 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int got = keys_main(cases[i].argc, (char **)cases[i].argv);

		cr_assert_eq(got, cases[i].want, "case %zu (%s %s): got %d, want %d", i,
		    cases[i].argv[1] ? cases[i].argv[1] : "", cases[i].argc > 2 ? cases[i].argv[2] : "",
		    got, cases[i].want);
	}
}
