/*
 * keys.c - API keys: the `txmail keys create|list|revoke` command and the
 * decision "which key is this bearer token, in which project and scope,
 * may it call from this address, and may it call now".
 *
 * Owns the key format ("txm_" + 40 base62 characters from getrandom), the
 * tenant names of TXMAIL_API_KEYS keys ("env:<12 hex>", project
 * "default"), the scope names and the order of the checks (env keys first,
 * in constant time; then the store, which also charges the project's rate
 * limit in the same round trip, except for a key with an allowlist: its
 * address is checked first, so a refused address charges nothing). It must
 * never store, log or print a key except the single time `keys create`
 * shows it, and never compare a secret with an early exit.
 */
#include "keys.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "log.h"
#include "util.h"

static const char keys_alphabet[] =
    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

int
keys_generate(char *buf, size_t len)
{
	const size_t plen = sizeof(KEYS_PREFIX) - 1;
	unsigned char rnd[64];
	size_t have = 0, used = sizeof(rnd);

	if (len < KEYS_TOKEN_LEN + 1)
		return -1;
	memcpy(buf, KEYS_PREFIX, plen);
	/* rejection sampling: bytes >= 248 (4 * 62) would bias the modulo */
	while (have < KEYS_RANDOM_CHARS) {
		if (used == sizeof(rnd)) {
			if (util_random_bytes(rnd, sizeof(rnd)) != 0)
				return -1;
			used = 0;
		}
		unsigned char b = rnd[used++];

		if (b >= 248)
			continue;
		buf[plen + have++] = keys_alphabet[b % 62];
	}
	buf[plen + have] = '\0';
	memset(rnd, 0, sizeof(rnd));
	return 0;
}

int
keys_valid_name(const char *name)
{
	size_t n = 0;

	if (name == NULL)
		return 0;
	for (; name[n] != '\0'; n++) {
		char c = name[n];

		if (n >= KEYS_NAME_MAX)
			return 0;
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		    c == '_' || c == '.' || c == '-'))
			return 0;
	}
	return n > 0;
}

int
keys_match_env(const struct config *cfg, const unsigned char digest[HASH_SHA256_LEN])
{
	unsigned char d[HASH_SHA256_LEN];
	int match = 0, failed = 0;

	for (size_t i = 0; i < cfg->napi_keys && i < CONFIG_MAX_API_KEYS; i++) {
		const char *k = cfg->api_keys[i];

		if (k == NULL || k[0] == '\0')
			continue;
		if (cfg->napi_key_digests == cfg->napi_keys) {
			match |= hash_ct_equal(cfg->api_key_digest[i], digest, sizeof(d));
			continue;
		}
		if (hash_sha256(k, strlen(k), d) != 0) {
			failed = 1;
			continue;
		}
		match |= hash_ct_equal(d, digest, sizeof(d));
	}
	if (match)
		return 1;
	return failed ? -1 : 0;
}

void
keys_env_tenant(const unsigned char digest[HASH_SHA256_LEN], char *out, size_t outlen)
{
	char hex[HASH_SHA256_LEN * 2 + 1];

	hash_hex(digest, HASH_SHA256_LEN, hex);
	snprintf(out, outlen, "env:%.12s", hex);
}

static double
keys_burst(const struct config *cfg)
{
	return cfg->rate_burst >= 1 ? cfg->rate_burst : 1;
}

/* keys_rate_set - who's charge from the bucket's answer (ms until full, rounded up to seconds). */
static void
keys_rate_set(const struct config *cfg, struct keys_rate *r, int64_t left, int64_t full_ms)
{
	double b = keys_burst(cfg);

	r->charged = 1;
	r->limit = b < (double)INT64_MAX ? (int64_t)b : INT64_MAX;
	r->remaining = left < 0 ? 0 : left > r->limit ? r->limit : left;
	r->reset_s = full_ms <= 0 ? 0 : (full_ms + 999) / 1000;
}

static const char *const keys_scope_names[] = {
	[KEYS_SCOPE_NONE] = "none",
	[KEYS_SCOPE_SEND] = "send",
	[KEYS_SCOPE_READ] = "read",
	[KEYS_SCOPE_FULL] = "full",
	[KEYS_SCOPE_ADMIN] = "admin",
};

int
keys_scope_parse(const char *s, enum keys_scope *out)
{
	for (int i = KEYS_SCOPE_SEND; i <= KEYS_SCOPE_ADMIN; i++) {
		if (s != NULL && strcmp(s, keys_scope_names[i]) == 0) {
			*out = (enum keys_scope)i;
			return 0;
		}
	}
	return -1;
}

const char *
keys_scope_name(enum keys_scope sc)
{
	if (sc < KEYS_SCOPE_NONE || sc > KEYS_SCOPE_ADMIN)
		return "none";
	return keys_scope_names[sc];
}

int
keys_scope_allows(enum keys_scope have, enum keys_scope need)
{
	switch (have) {
	case KEYS_SCOPE_ADMIN:
		return 1;
	case KEYS_SCOPE_FULL:
		return need != KEYS_SCOPE_ADMIN;
	case KEYS_SCOPE_SEND:
	case KEYS_SCOPE_READ:
		return need == have;
	case KEYS_SCOPE_NONE:
	default:
		return 0;
	}
}

/* keys_allowed_from - 1 when the stored allowlist allow ("" for none) admits client. */
static int
keys_allowed_from(const char *allow, const unsigned char *client)
{
	struct cidr_list l;

	if (allow[0] == '\0')
		return 1;
	/* an allowlist this release cannot read admits nobody */
	if (client == NULL || cidr_list_parse(allow, strlen(allow), &l, NULL, 0) != CIDR_OK || l.n == 0)
		return 0;
	return cidr_list_match(&l, client);
}

static int
keys_store_rc(int rc)
{
	switch (rc) {
	case STORE_ERR_NOT_FOUND:
		return KEYS_ERR_UNAUTHORIZED;
	case STORE_ERR_UNAVAILABLE:
		return KEYS_ERR_UNAVAILABLE;
	default:
		return KEYS_ERR_INTERNAL;
	}
}

int
keys_authenticate(const struct config *cfg, struct store *s, const char *token,
    size_t toklen, const unsigned char *client, int64_t now_ms, struct keys_identity *who,
    int64_t *retry_after_ms)
{
	unsigned char digest[HASH_SHA256_LEN];
	char hex[HASH_SHA256_HEX_LEN + 1];
	struct store_auth_result ar = { 0 };
	struct store_rate ra = { 0 };
	int rc, m;

	*retry_after_ms = 0;
	memset(who, 0, sizeof(*who));
	if (token == NULL || toklen == 0 || toklen > KEYS_MAX_TOKEN)
		return KEYS_ERR_UNAUTHORIZED;
	if (hash_sha256(token, toklen, digest) != 0)
		return KEYS_ERR_INTERNAL;

	m = keys_match_env(cfg, digest);
	if (m < 0)
		return KEYS_ERR_INTERNAL;
	if (m == 1) {
		keys_env_tenant(digest, who->tenant, sizeof(who->tenant));
		util_strlcpy(who->project, KEYS_PROJECT_DEFAULT, sizeof(who->project));
		who->scope = KEYS_SCOPE_FULL;
		if (cfg->rate_limit <= 0)
			return 0;
		if (s == NULL) {
			log_debug("rate limit skipped, no store handle", "tenant=%s", who->tenant);
			return 0;
		}
		rc = store_rate_limit(s, who->project, now_ms, cfg->rate_limit, keys_burst(cfg), &ra);
		if (rc != STORE_OK) {
			/* fail open for the limiter only: the key itself is valid */
			log_debug("rate limiter unavailable, request allowed", "tenant=%s error=%s",
			    who->tenant, store_strerror(rc));
			return 0;
		}
		*retry_after_ms = ra.retry_after_ms > 0 ? ra.retry_after_ms : 0;
		keys_rate_set(cfg, &who->rate, ra.tokens_left, ra.full_ms);
		return 0;
	}

	if (s == NULL)
		return KEYS_ERR_UNAVAILABLE;
	hash_hex(digest, sizeof(digest), hex);
	rc = store_auth(s, hex, now_ms, cfg->rate_limit, keys_burst(cfg), 0, &ar);
	if (rc != STORE_OK)
		return keys_store_rc(rc);
	if (!keys_allowed_from(ar.allow, client)) {
		rc = KEYS_ERR_FORBIDDEN;
		goto out;
	}
	if (!ar.charged) {
		/* allowed: now charge (a key revoked in between is simply gone) */
		store_auth_release(&ar);
		rc = store_auth(s, hex, now_ms, cfg->rate_limit, keys_burst(cfg), 1, &ar);
		if (rc != STORE_OK) {
			rc = keys_store_rc(rc);
			goto out;
		}
		if (!keys_allowed_from(ar.allow, client)) {
			rc = KEYS_ERR_FORBIDDEN;
			goto out;
		}
	}
	if (keys_scope_parse(ar.scope, &who->scope) != 0)
		who->scope = KEYS_SCOPE_NONE;
	if (!keys_valid_name(ar.project) ||
	    util_strlcpy(who->tenant, ar.name, sizeof(who->tenant)) >= sizeof(who->tenant) ||
	    util_strlcpy(who->project, ar.project, sizeof(who->project)) >= sizeof(who->project)) {
		rc = KEYS_ERR_INTERNAL;
		goto out;
	}
	*retry_after_ms = ar.retry_after_ms > 0 ? ar.retry_after_ms : 0;
	if (cfg->rate_limit > 0 && ar.charged)
		keys_rate_set(cfg, &who->rate, ar.tokens_left, ar.full_ms);
	rc = 0;
out:
	if (rc != 0)
		memset(who, 0, sizeof(*who));
	store_auth_release(&ar);
	return rc;
}

/* --- the command ---------------------------------------------------------- */

static const char keys_usage[] =
    "usage: txmail keys <command>\n"
    "\n"
    "Manages the API keys accepted in 'Authorization: Bearer <key>' besides\n"
    "TXMAIL_API_KEYS. Only a key's SHA-256 hash is stored, in Redis.\n"
    "\n"
    "commands:\n"
    "  create --name NAME [--project P] [--scope S] [--allow-ip CIDR[,CIDR]]\n"
    "                       make a key and print it once (it cannot be shown again)\n"
    "  list                 every key: name, project, scope, created, last used,\n"
    "                       hash prefix, allowed addresses\n"
    "  revoke NAME          delete a key; requests using it get 401 from then on\n"
    "\n"
    "Redis is TXMAIL_REDIS_URL or, when that is unset, the embedded redis of a\n"
    "running 'txmail run' at $TXMAIL_DATA_DIR/redis/redis.sock.\n"
    "Run 'txmail keys <command> --help' for details.\n";

static const char keys_usage_create[] =
    "usage: txmail keys create --name NAME [--project PROJECT] [--scope SCOPE]\n"
    "                          [--allow-ip CIDR[,CIDR...]]\n"
    "\n"
    "Creates an API key named NAME ([A-Za-z0-9_.-], 1 to 64 characters) and\n"
    "prints it once on stdout; only its SHA-256 hash is stored, so it cannot\n"
    "be shown again.\n"
    "\n"
    "  --project PROJECT  the project whose data the key sees (same syntax as a\n"
    "                     name; default: NAME, so two keys made without --project\n"
    "                     are two projects). Keys of one project share its data,\n"
    "                     idempotency keys and rate limit (TXMAIL_RATE_LIMIT per\n"
    "                     second, burst TXMAIL_RATE_BURST). TXMAIL_API_KEYS keys\n"
    "                     are in the project \"default\".\n"
    "  --scope SCOPE      send  POST /v1/messages and /v1/messages/batch only\n"
    "                     read  GET routes only (the event stream included)\n"
    "                     full  everything in its project (the default)\n"
    "                     admin everything in every project\n"
    "  --allow-ip LIST    IPv4/IPv6 networks (a bare address is a /32 or /128) the\n"
    "                     key may be used from; from any other address it gets\n"
    "                     403. The address is the TCP peer, or behind a proxy in\n"
    "                     TXMAIL_TRUSTED_PROXIES the right-most untrusted entry\n"
    "                     of X-Forwarded-For.\n"
    "Exit status: 0 created, 1 the name exists or Redis failed, 2 usage.\n";

static const char keys_usage_list[] =
    "usage: txmail keys list\n"
    "\n"
    "Prints one line per key: NAME, PROJECT, SCOPE, CREATED, LAST USED (\"never\"\n"
    "when unused; refreshed at most once a minute), HASH PREFIX (the first 12\n"
    "hex digits of the key's SHA-256) and ALLOW IP (the networks it may be used\n"
    "from, \"any\" for no limit). Keys themselves are never stored or shown.\n";

static const char keys_usage_revoke[] =
    "usage: txmail keys revoke NAME\n"
    "\n"
    "Deletes the key NAME; from then on requests with it get 401.\n"
    "Exit status: 0 revoked, 1 no such key or Redis failed, 2 usage.\n";

static int
keys_is_help(const char *a)
{
	return strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0;
}

/*
 * keys_open - a store on TXMAIL_REDIS_URL, or on the embedded redis of a
 * running `txmail run`; NULL after printing why.
 */
static struct store *
keys_open(const char *cmd)
{
	struct config cfg;
	struct redis_addr addr;
	struct store *s = NULL;
	char err[256];
	const char *desc = NULL;
	char where[PATH_MAX + 16];

	memset(&cfg, 0, sizeof(cfg));
	if (config_load(&cfg, err, sizeof(err)) != 0) {
		fprintf(stderr, "txmail keys %s: %s\n", cmd, err);
		goto out;
	}
	log_set_level(getenv("TXMAIL_LOG_LEVEL") != NULL ? (enum log_level)cfg.log_level : LOG_ERROR);
	if (cfg.redis_set) {
		addr = cfg.redis;
		desc = "TXMAIL_REDIS_URL";
	} else {
		struct stat st;
		int n;

		memset(&addr, 0, sizeof(addr));
		addr.is_unix = 1;
		n = snprintf(addr.path, sizeof(addr.path), "%s/redis/redis.sock", cfg.data_dir);
		if (n < 0 || (size_t)n >= sizeof(addr.path) || stat(addr.path, &st) != 0 ||
		    !S_ISSOCK(st.st_mode)) {
			fprintf(stderr, "txmail keys %s: API keys are stored in Redis: set "
			    "TXMAIL_REDIS_URL (no embedded redis socket at %s)\n", cmd, addr.path);
			goto out;
		}
		fprintf(stderr, "txmail keys: TXMAIL_REDIS_URL is unset; using the embedded redis at %s\n",
		    addr.path);
		desc = "the embedded redis";
	}
	if (addr.is_unix)
		snprintf(where, sizeof(where), "unix:%s", addr.path);
	else if (addr.is_sentinel)
		snprintf(where, sizeof(where), "the primary of %s by sentinel %s:%u", addr.master,
		    addr.sentinels[0].host, (unsigned)addr.sentinels[0].port);
	else
		snprintf(where, sizeof(where), "%s:%u", addr.host, (unsigned)addr.port);
	s = store_open(&addr);
	if (s == NULL) {
		fprintf(stderr, "txmail keys %s: out of memory\n", cmd);
		goto out;
	}
	if (store_ping(s) != 0) {
		fprintf(stderr, "txmail keys %s: cannot reach %s (%s)\n", cmd, desc, where);
		store_close(s);
		s = NULL;
	}
out:
	config_free(&cfg);
	return s;
}

static void
keys_time(int64_t ms, char *buf, size_t len)
{
	struct tm tm;
	time_t t = (time_t)(ms / 1000);

	if (ms <= 0 || gmtime_r(&t, &tm) == NULL || strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		util_strlcpy(buf, "never", len);
}

static const char *
keys_store_strerror(int rc)
{
	switch (rc) {
	case STORE_ERR_UNAVAILABLE:
		return "Redis is unavailable";
	case STORE_ERR_NOMEM:
		return "out of memory";
	default:
		return "unexpected reply from Redis";
	}
}

/* keys_opt - "--opt VALUE" or "--opt=VALUE" at argv[*i]: 1 with *val set, 0 when not this option. */
static int
keys_opt(int argc, char **argv, int *i, const char *opt, const char **val)
{
	size_t n = strlen(opt);

	if (strcmp(argv[*i], opt) == 0 && *i + 1 < argc) {
		*val = argv[++*i];
		return 1;
	}
	if (strncmp(argv[*i], opt, n) == 0 && argv[*i][n] == '=') {
		*val = argv[*i] + n + 1;
		return 1;
	}
	return 0;
}

static int
keys_create(int argc, char **argv)
{
	const char *name = NULL, *project = NULL, *scope = "full", *allow = NULL;
	char key[KEYS_TOKEN_LEN + 1], hex[HASH_SHA256_HEX_LEN + 1];
	char allow_norm[CIDR_LIST_TEXT_MAX], err[160];
	struct cidr_list cl;
	struct store_key_attrs attrs;
	enum keys_scope sc;
	struct store *s = NULL;
	int status = 1, rc;

	memset(key, 0, sizeof(key));
	for (int i = 1; i < argc; i++) {
		if (keys_is_help(argv[i])) {
			fputs(keys_usage_create, stdout);
			return 0;
		}
		if (!keys_opt(argc, argv, &i, "--name", &name) &&
		    !keys_opt(argc, argv, &i, "--project", &project) &&
		    !keys_opt(argc, argv, &i, "--scope", &scope) &&
		    !keys_opt(argc, argv, &i, "--allow-ip", &allow)) {
			fprintf(stderr, "txmail keys create: unexpected argument '%s'\n\n%s", argv[i],
			    keys_usage_create);
			return 2;
		}
	}
	if (name == NULL) {
		fprintf(stderr, "txmail keys create: --name NAME is required\n\n%s", keys_usage_create);
		return 2;
	}
	if (!keys_valid_name(name)) {
		fprintf(stderr, "txmail keys create: invalid name: use 1 to 64 of A-Z a-z 0-9 _ . -\n");
		return 2;
	}
	if (project == NULL)
		project = name;
	if (!keys_valid_name(project)) {
		fprintf(stderr, "txmail keys create: invalid project: use 1 to 64 of A-Z a-z 0-9 _ . -\n");
		return 2;
	}
	if (keys_scope_parse(scope, &sc) != 0) {
		fprintf(stderr, "txmail keys create: invalid scope '%.32s': use send, read, full or admin\n",
		    scope);
		return 2;
	}
	allow_norm[0] = '\0';
	if (allow != NULL) {
		rc = cidr_list_parse(allow, strlen(allow), &cl, err, sizeof(err));
		if (rc == CIDR_OK && cl.n == 0) {
			rc = CIDR_ERR_SYNTAX;
			util_strlcpy(err, "the list is empty (leave --allow-ip out for any address)",
			    sizeof(err));
		}
		if (rc != CIDR_OK) {
			fprintf(stderr, "txmail keys create: invalid --allow-ip: %s\n", err);
			return 2;
		}
		cidr_list_format(&cl, allow_norm, sizeof(allow_norm));
	}
	if ((s = keys_open("create")) == NULL)
		goto out;
	if (keys_generate(key, sizeof(key)) != 0 || hash_sha256_hex(key, strlen(key), hex) != 0) {
		fprintf(stderr, "txmail keys create: cannot generate a key (random source failed)\n");
		goto out;
	}
	attrs = (struct store_key_attrs){ .name = name, .project = project,
	    .scope = keys_scope_name(sc), .allow = allow_norm };
	rc = store_key_create(s, &attrs, hex, util_now_ms());
	if (rc == STORE_ERR_CONFLICT) {
		fprintf(stderr, "txmail keys create: a key named '%s' already exists "
		    "(revoke it first, or pick another name)\n", name);
		goto out;
	}
	if (rc != STORE_OK) {
		fprintf(stderr, "txmail keys create: %s\n", keys_store_strerror(rc));
		goto out;
	}
	printf("%s\n", key);
	fflush(stdout);
	fprintf(stderr, "Created API key '%s' (project '%s', scope %s, from %s). Copy it now: it "
	    "cannot be shown again (only its SHA-256 hash is stored).\n", name, project,
	    keys_scope_name(sc), allow_norm[0] != '\0' ? allow_norm : "any address");
	status = 0;
out:
	memset(key, 0, sizeof(key));
	store_close(s);
	return status;
}

static int
keys_cmp_name(const void *a, const void *b)
{
	const struct store_apikey *x = a, *y = b;

	return strcmp(x->name != NULL ? x->name : "", y->name != NULL ? y->name : "");
}

static int
keys_list(int argc, char **argv)
{
	struct store_apikey *v = NULL;
	struct store *s = NULL;
	size_t n = 0;
	int width = 4, pwidth = 7, status = 1, rc;

	for (int i = 1; i < argc; i++) {
		if (keys_is_help(argv[i])) {
			fputs(keys_usage_list, stdout);
			return 0;
		}
		fprintf(stderr, "txmail keys list: unexpected argument '%s'\n\n%s", argv[i],
		    keys_usage_list);
		return 2;
	}
	if ((s = keys_open("list")) == NULL)
		goto out;
	rc = store_key_list(s, &v, &n);
	if (rc != STORE_OK) {
		fprintf(stderr, "txmail keys list: %s\n", keys_store_strerror(rc));
		goto out;
	}
	if (n == 0) {
		printf("no API keys (create one with: txmail keys create --name NAME)\n");
		status = 0;
		goto out;
	}
	qsort(v, n, sizeof(*v), keys_cmp_name);
	for (size_t i = 0; i < n; i++) {
		size_t l = v[i].name != NULL ? strlen(v[i].name) : 0;
		size_t lp = v[i].project != NULL ? strlen(v[i].project) : 0;

		if (l > (size_t)width)
			width = l > KEYS_NAME_MAX ? KEYS_NAME_MAX : (int)l;
		if (lp > (size_t)pwidth)
			pwidth = lp > KEYS_NAME_MAX ? KEYS_NAME_MAX : (int)lp;
	}
	printf("%-*s  %-*s  %-5s  %-20s  %-20s  %-12s  %s\n", width, "NAME", pwidth, "PROJECT",
	    "SCOPE", "CREATED", "LAST USED", "HASH PREFIX", "ALLOW IP");
	for (size_t i = 0; i < n; i++) {
		char created[32], used[32];

		keys_time(v[i].created_ms, created, sizeof(created));
		keys_time(v[i].last_used_ms, used, sizeof(used));
		printf("%-*.*s  %-*.*s  %-5.5s  %-20s  %-20s  %-12.12s  %s\n", width, KEYS_NAME_MAX,
		    v[i].name != NULL ? v[i].name : "?", pwidth, KEYS_NAME_MAX,
		    v[i].project != NULL ? v[i].project : "?",
		    v[i].scope != NULL ? v[i].scope : "?", created, used,
		    v[i].hash_prefix != NULL ? v[i].hash_prefix : "?",
		    v[i].allow != NULL && v[i].allow[0] != '\0' ? v[i].allow : "any");
	}
	status = 0;
out:
	if (v != NULL)
		store_apikeys_free(v, n);
	store_close(s);
	return status;
}

static int
keys_revoke(int argc, char **argv)
{
	const char *name = NULL;
	struct store *s = NULL;
	int status = 1, rc;

	for (int i = 1; i < argc; i++) {
		if (keys_is_help(argv[i])) {
			fputs(keys_usage_revoke, stdout);
			return 0;
		}
		if (name != NULL || argv[i][0] == '-') {
			fprintf(stderr, "txmail keys revoke: unexpected argument '%s'\n\n%s", argv[i],
			    keys_usage_revoke);
			return 2;
		}
		name = argv[i];
	}
	if (name == NULL) {
		fprintf(stderr, "txmail keys revoke: NAME is required\n\n%s", keys_usage_revoke);
		return 2;
	}
	if (!keys_valid_name(name)) {
		fprintf(stderr, "txmail keys revoke: no API key named '%.64s' (invalid name)\n", name);
		return 1;
	}
	if ((s = keys_open("revoke")) == NULL)
		goto out;
	rc = store_key_revoke(s, name);
	if (rc == STORE_ERR_NOT_FOUND) {
		fprintf(stderr, "txmail keys revoke: no API key named '%s'\n", name);
		goto out;
	}
	if (rc != STORE_OK) {
		fprintf(stderr, "txmail keys revoke: %s\n", keys_store_strerror(rc));
		goto out;
	}
	printf("revoked API key '%s'\n", name);
	status = 0;
out:
	store_close(s);
	return status;
}

int
keys_main(int argc, char **argv)
{
	const char *cmd = argc > 1 ? argv[1] : NULL;

	if (cmd == NULL) {
		fputs(keys_usage, stderr);
		return 2;
	}
	if (keys_is_help(cmd) || strcmp(cmd, "help") == 0) {
		fputs(keys_usage, stdout);
		return 0;
	}
	if (strcmp(cmd, "create") == 0)
		return keys_create(argc - 1, argv + 1);
	if (strcmp(cmd, "list") == 0)
		return keys_list(argc - 1, argv + 1);
	if (strcmp(cmd, "revoke") == 0)
		return keys_revoke(argc - 1, argv + 1);
	fprintf(stderr, "txmail keys: unknown command '%s'\n\n%s", cmd, keys_usage);
	return 2;
}
