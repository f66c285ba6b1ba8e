/*
 * config.c - configuration from TXMAIL_* environment variables.
 *
 * Every variable is one row of config_vars (config_vars.c: name, kind,
 * default, range, unit, one line of meaning, field or parser): the one
 * table that drives parsing, `txmail config list` (and so the README's
 * table), `txmail config check` and the warning for unknown TXMAIL_*
 * names. This file is the machinery that walks it: the generic kinds
 * (numbers, sizes, booleans), loading, the cross checks, the report of
 * problems and the two subcommands. Loading parses every row even after
 * an error and collects each problem as one line. The URL and address
 * parsers are pure (strings in, structs out) and live in config_parse.c,
 * so they are unit-tested and fuzzed; only the loader (and config_secret)
 * reads the environment. Secrets are never printed: every view of them is
 * masked. Every secret-bearing variable goes through config_secret
 * (config_parse.c), so each also has a NAME_FILE form
 * (Docker/Kubernetes secrets); no error message ever carries a secret's text.
 */
#include "config.h"
#include "config_internal.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cpuquota.h"
#include "dkim_keys.h"
#include "log.h"
#include "netguard.h"
#include "util.h"

static const char *const source_names[] = { "default", "environment", "file", "dev" };
#define NSOURCES (sizeof(source_names) / sizeof(source_names[0]))

static int
cv_index(const char *name)
{
	for (size_t i = 0; i < config_nvars; i++)
		if (strcmp(config_vars[i].name, name) == 0)
			return (int)i;
	return -1;
}

enum config_source
config_source_of(const struct config *cfg, const char *name)
{
	int i = cv_index(name);

	return i < 0 ? CONFIG_SRC_DEFAULT : (enum config_source)cfg->source[i];
}

/* --- numbers ------------------------------------------------------------------ */

/* d as people write it: "86400", "0.25", "0.001" (no exponent). */
static void
fmt_num(double d, char *out, size_t outlen)
{
	size_t n;

	if (d == floor(d) && fabs(d) < 1e15) {
		snprintf(out, outlen, "%.0f", d);
		return;
	}
	snprintf(out, outlen, "%.6f", d);
	n = strlen(out);
	while (n > 0 && out[n - 1] == '0')
		out[--n] = '\0';
	if (n > 0 && out[n - 1] == '.')
		out[--n] = '\0';
}

/* "min..max unit", or "0 or 1" for a bool. */
/* size_text - a size as people write it and parse_size reads it: "10M", "1536", "0" */
static void
size_text(size_t n, char *out, size_t outlen)
{
	static const char units[] = "GMK";

	for (int i = 0; i < 3 && n != 0; i++) {
		size_t u = (size_t)1 << (10 * (3 - i));

		if (n % u == 0) {
			snprintf(out, outlen, "%zu%c", n / u, units[i]);
			return;
		}
	}
	snprintf(out, outlen, "%zu", n);
}

static void
range_text(const struct config_var *var, char *out, size_t outlen)
{
	char lo[40], hi[40];

	if (var->kind == CV_BOOL) {
		util_strlcpy(out, "0 or 1", outlen);
		return;
	}
	if (var->kind == CV_SIZE) {
		size_text((size_t)var->min, lo, sizeof(lo));
		size_text((size_t)var->max, hi, sizeof(hi));
	} else {
		fmt_num(var->min, lo, sizeof(lo));
		fmt_num(var->max, hi, sizeof(hi));
	}
	snprintf(out, outlen, "%s..%s%s%s", lo, hi, var->unit ? " " : "", var->unit ? var->unit : "");
}

static int
range_err(const struct config_var *var, const char *v, char *err, size_t errlen)
{
	char range[128];

	range_text(var, range, sizeof(range));
	return config_err(err, errlen, "%.32s is out of range (%s)", v, range);
}

/* A size: digits, then optionally K, M or G (1024-based; "KiB", "MB" ... accepted). */
static int
parse_size(const char *v, double *out)
{
	static const char *const suffixes[] = { "", "K", "M", "G" };
	unsigned long long n;
	char *e;

	if (!isdigit((unsigned char)v[0]))
		return -1;
	errno = 0;
	n = strtoull(v, &e, 10);
	if (errno != 0)
		return -1;
	for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
		size_t sl = strlen(suffixes[i]);

		if (strncasecmp(e, suffixes[i], sl) != 0)
			continue;
		if (e[sl] == '\0' || (i > 0 && (strcasecmp(e + sl, "B") == 0 || strcasecmp(e + sl, "iB") == 0))) {
			*out = (double)n * (double)(1ULL << (10 * i));
			return 0;
		}
	}
	return -1;
}

static int
parse_bool(const char *v, int *out)
{
	static const char *const yes[] = { "1", "true", "yes", "on" }, *const no[] = { "0", "false", "no", "off" };

	for (size_t i = 0; i < 4; i++) {
		if (strcasecmp(v, yes[i]) == 0) {
			*out = 1;
			return 0;
		}
		if (strcasecmp(v, no[i]) == 0) {
			*out = 0;
			return 0;
		}
	}
	return -1;
}

/* Parse v (not empty) for a generic kind and store it in cfg. 0, or -1 with err. */
static int
cv_store(struct config *cfg, const struct config_var *var, const char *v, char *err, size_t errlen)
{
	void *field = (char *)cfg + var->off;
	char *e;
	double d;
	int b;

	switch (var->kind) {
	case CV_STR:
		if (strlen(v) >= var->size)
			return config_err(err, errlen, "longer than %zu bytes", var->size - 1);
		util_strlcpy(field, v, var->size);
		return 0;
	case CV_BOOL:
		if (parse_bool(v, &b) != 0)
			return config_err(err, errlen, "\"%.32s\" is not 0 or 1", v);
		*(int *)field = b;
		return 0;
	case CV_INT:
	case CV_PORT: {
		long l;

		errno = 0;
		l = strtol(v, &e, 10);
		if (errno == ERANGE)
			return range_err(var, v, err, errlen);
		if (e == v || *e != '\0')
			return config_err(err, errlen, "\"%.32s\" is not a whole number%s%s", v,
			    var->unit ? " of " : "", var->unit ? var->unit : "");
		if ((double)l < var->min || (double)l > var->max)
			return range_err(var, v, err, errlen);
		if (var->kind == CV_PORT)
			*(uint16_t *)field = (uint16_t)l;
		else
			*(int *)field = (int)l;
		return 0;
	}
	case CV_SIZE:
		if (parse_size(v, &d) != 0)
			return config_err(err, errlen, "\"%.32s\" is not a size in bytes (e.g. 10485760 or 10M)", v);
		if (d < var->min || d > var->max)
			return range_err(var, v, err, errlen);
		*(size_t *)field = (size_t)d;
		return 0;
	case CV_SECONDS:
	case CV_NUM:
		errno = 0;
		d = strtod(v, &e);
		if (e == v || *e != '\0' || !isfinite(d))
			return config_err(err, errlen, "\"%.32s\" is not a number%s%s", v,
			    var->kind == CV_SECONDS ? " of seconds" : " of ", var->kind == CV_SECONDS ? "" : var->unit);
		if (errno == ERANGE || d < var->min || d > var->max)
			return range_err(var, v, err, errlen);
		*(double *)field = d;
		return 0;
	case CV_CUSTOM:
		break;
	}
	abort();   /* broken invariant: a custom variable without set */
}

/* The value of var in cfg, as it would be written in the environment; secrets masked. */
static void
cv_show(const struct config *cfg, const struct config_var *var, char *out, size_t outlen)
{
	const void *field = (const char *)cfg + var->off;

	if (var->show != NULL) {
		var->show(cfg, out, outlen);
		return;
	}
	switch (var->kind) {
	case CV_STR:
		util_strlcpy(out, field, outlen);
		return;
	case CV_INT:
	case CV_BOOL:
		snprintf(out, outlen, "%d", *(const int *)field);
		return;
	case CV_PORT:
		snprintf(out, outlen, "%u", (unsigned)*(const uint16_t *)field);
		return;
	case CV_SIZE:
		size_text(*(const size_t *)field, out, outlen);
		return;
	case CV_SECONDS:
	case CV_NUM:
		fmt_num(*(const double *)field, out, outlen);
		return;
	case CV_CUSTOM:
		break;
	}
	abort();   /* broken invariant: a custom variable without show */
}

/* --- problems ------------------------------------------------------------------ */

static void rep_add(struct config_report *rep, enum config_severity sev, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
rep_add(struct config_report *rep, enum config_severity sev, const char *fmt, ...)
{
	va_list ap;

	if (sev == CONFIG_ERROR)
		rep->nerrors++;
	else
		rep->nwarnings++;
	if (rep->n == CONFIG_MAX_PROBLEMS) {
		rep->dropped++;
		return;
	}
	rep->p[rep->n].severity = sev;
	va_start(ap, fmt);
	vsnprintf(rep->p[rep->n].text, sizeof(rep->p[rep->n].text), fmt, ap);
	va_end(ap);
	rep->n++;
}

/* --- unknown variables ---------------------------------------------------------- */

#define NAME_CMP_MAX 64

/*
 * Optimal string alignment distance (Damerau-Levenshtein with adjacent
 * transpositions), case-insensitive; a, b at most NAME_CMP_MAX chars.
 */
static size_t
osa_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	size_t d[NAME_CMP_MAX + 1][NAME_CMP_MAX + 1];

	if (la > NAME_CMP_MAX || lb > NAME_CMP_MAX)
		return SIZE_MAX;
	for (size_t i = 0; i <= la; i++)
		d[i][0] = i;
	for (size_t j = 0; j <= lb; j++)
		d[0][j] = j;
	for (size_t i = 1; i <= la; i++) {
		for (size_t j = 1; j <= lb; j++) {
			int ca = toupper((unsigned char)a[i - 1]), cb = toupper((unsigned char)b[j - 1]);
			size_t cost = ca != cb, best = d[i - 1][j] + 1;

			if (d[i][j - 1] + 1 < best)
				best = d[i][j - 1] + 1;
			if (d[i - 1][j - 1] + cost < best)
				best = d[i - 1][j - 1] + cost;
			if (i > 1 && j > 1 && ca == toupper((unsigned char)b[j - 2]) &&
			    toupper((unsigned char)a[i - 2]) == cb && d[i - 2][j - 2] + 1 < best)
				best = d[i - 2][j - 2] + 1;
			d[i][j] = best;
		}
	}
	return d[la][lb];
}

/*
 * Names the server never reads but a shell that starts it may hold: the
 * README's client examples take the API's address and key from these.
 */
static const char *const client_names[] = { "TXMAIL_URL", "TXMAIL_KEY" };

/* Known: a table name, NAME_FILE of a secret one, or a client-side name. */
static int
name_known(const char *name)
{
	size_t nl = strlen(name);

	for (size_t i = 0; i < sizeof(client_names) / sizeof(client_names[0]); i++)
		if (strcmp(name, client_names[i]) == 0)
			return 1;

	for (size_t i = 0; i < config_nvars; i++) {
		const char *k = config_vars[i].name;
		size_t kl = strlen(k);

		if (strcmp(name, k) == 0)
			return 1;
		if ((config_vars[i].flags & CV_SECRET) && nl == kl + 5 && strncmp(name, k, kl) == 0 &&
		    strcmp(name + kl, "_FILE") == 0)
			return 1;
	}
	return 0;
}

/*
 * The known name closest to `name` (both past "TXMAIL_"), or NULL when
 * none is within a fifth of its length (at least 1 edit) - close enough
 * to be a typo, not a different word. *file is set when the match is the
 * NAME_FILE form of a secret.
 */
static const char *
name_suggest(const char *name, int *file)
{
	const char *best = NULL, *s = name + 7;
	size_t bestd = SIZE_MAX, limit = strlen(s) / 5;
	char buf[NAME_CMP_MAX + 8];

	if (limit < 1)
		limit = 1;
	*file = 0;
	for (size_t i = 0; i < config_nvars; i++) {
		for (int f = 0; f < 2; f++) {
			size_t d;

			if (f == 1 && !(config_vars[i].flags & CV_SECRET))
				continue;
			snprintf(buf, sizeof(buf), "%s%s", config_vars[i].name + 7, f ? "_FILE" : "");
			d = osa_distance(s, buf);
			if (d < bestd) {
				bestd = d;
				best = config_vars[i].name;
				*file = f;
			}
		}
	}
	return bestd <= limit ? best : NULL;
}

extern char **environ;

void
config_unknown_vars(struct config_report *rep)
{
	for (char **e = environ; e != NULL && *e != NULL; e++) {
		const char *eq = strchr(*e, '=');
		size_t nl = eq != NULL ? (size_t)(eq - *e) : strlen(*e);
		char name[NAME_CMP_MAX + 1], base[NAME_CMP_MAX + 1];
		const char *sugg;
		int file;

		if (strncmp(*e, "TXMAIL_", 7) != 0)
			continue;
		/* printable names only: the text goes to logs */
		if (nl > NAME_CMP_MAX)
			nl = NAME_CMP_MAX;
		for (size_t i = 0; i < nl; i++) {
			unsigned char c = (unsigned char)(*e)[i];
			name[i] = isalnum(c) || c == '_' ? (char)c : '?';
		}
		name[nl] = '\0';
		if (name_known(name))
			continue;
		if (nl > 12 && strcmp(name + nl - 5, "_FILE") == 0) {
			snprintf(base, sizeof(base), "%.*s", (int)(nl - 5), name);
			if (cv_index(base) >= 0) {
				rep_add(rep, CONFIG_WARNING, "%s: unknown variable, ignored: only secrets have "
				    "a _FILE form, %s does not", name, base);
				continue;
			}
		}
		sugg = name_suggest(name, &file);
		if (sugg != NULL)
			rep_add(rep, CONFIG_WARNING, "%s: unknown variable, ignored; did you mean %s%s?",
			    name, sugg, file ? "_FILE" : "");
		else
			rep_add(rep, CONFIG_WARNING, "%s: unknown variable, ignored "
			    "('txmail config list' lists the known ones)", name);
	}
}

/* --- loading ---------------------------------------------------------------------- */

/* Fields whose defaults are not a table value. */
static void
config_defaults(struct config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	smtp_timeouts_default(&cfg->smtp_timeouts);
}

/*
 * Apply one variable: its value from the environment (or its file), else
 * (dev) its dev default, else its default. bad[i] is set on an error.
 */
static void
load_var(struct config *cfg, size_t i, struct config_report *rep, unsigned char *bad, int dev)
{
	const struct config_var *var = &config_vars[i];
	char err[CONFIG_PROBLEM_MAX - 80] = "";
	char *buf = NULL;
	const char *v = NULL;
	int rc;

	cfg->source[i] = CONFIG_SRC_DEFAULT;
	if (var->flags & CV_SECRET) {
		const char *ev = getenv(var->name);

		if ((buf = malloc(var->size)) == NULL) {
			rep_add(rep, CONFIG_ERROR, "%s: out of memory", var->name);
			bad[i] = 1;
			return;
		}
		if (config_secret(var->name, buf, var->size, err, sizeof(err)) != 0) {
			rep_add(rep, CONFIG_ERROR, "%s", err);   /* it names the variable */
			bad[i] = 1;
			goto out;
		}
		if (buf[0] != '\0') {
			v = buf;
			cfg->source[i] = ev != NULL && *ev != '\0' ? CONFIG_SRC_ENV : CONFIG_SRC_FILE;
		}
	} else {
		v = getenv(var->name);
		if (v != NULL && *v != '\0')
			cfg->source[i] = CONFIG_SRC_ENV;
		else
			v = NULL;
	}
	if (v == NULL && dev && var->dev_def != NULL) {
		v = var->dev_def;
		cfg->source[i] = CONFIG_SRC_DEV;
	}
	if (v == NULL && (var->flags & CV_DYNAMIC)) {
		rc = var->set(cfg, NULL, err, sizeof(err));
	} else {
		if (v == NULL)
			v = var->def;
		if (v == NULL)
			goto out;   /* the field keeps config_defaults' value */
		if (var->kind == CV_CUSTOM)
			rc = var->set(cfg, v, err, sizeof(err));
		else if (*v == '\0')
			rc = 0;     /* "" default: the zeroed field */
		else if ((rc = cv_store(cfg, var, v, err, sizeof(err))) == 0 && var->set != NULL)
			rc = var->set(cfg, v, err, sizeof(err));
	}
	if (rc != 0) {
		size_t nl = strlen(var->name);

		bad[i] = 1;
		if (strncmp(err, var->name, nl) == 0 && (err[nl] == ':' || err[nl] == ' '))
			rep_add(rep, CONFIG_ERROR, "%s", err);
		else
			rep_add(rep, CONFIG_ERROR, "%s: %s", var->name, err);
	}
out:
	if (buf != NULL) {
		explicit_bzero(buf, var->size);
		free(buf);
	}
}

/* The pairs where one value bounds another: the larger one is raised, and said so. */
static const struct {
	const char *base, *max;
	size_t base_off, max_off;
} config_bounds[] = {
	{ "TXMAIL_RETRY_BASE", "TXMAIL_RETRY_MAX",
	  offsetof(struct config, retry_base), offsetof(struct config, retry_max) },
	{ "TXMAIL_WEBHOOK_RETRY_BASE", "TXMAIL_WEBHOOK_RETRY_MAX",
	  offsetof(struct config, webhook_retry_base), offsetof(struct config, webhook_retry_max) },
	{ "TXMAIL_DEST_BACKOFF_BASE", "TXMAIL_DEST_BACKOFF_MAX",
	  offsetof(struct config, dest_backoff_base), offsetof(struct config, dest_backoff_max) },
};

static int
is_bad(const unsigned char *bad, const char *name)
{
	int i = cv_index(name);

	return i < 0 || bad[i];
}

/* Checks that involve more than one variable, on the ones that parsed. */
static void
cross_checks(struct config *cfg, struct config_report *rep, const unsigned char *bad)
{
	for (size_t i = 0; i < sizeof(config_bounds) / sizeof(config_bounds[0]); i++) {
		double *base = (double *)(void *)((char *)cfg + config_bounds[i].base_off);
		double *max = (double *)(void *)((char *)cfg + config_bounds[i].max_off);
		char b[40], m[40];

		if (is_bad(bad, config_bounds[i].base) || is_bad(bad, config_bounds[i].max) || *max >= *base)
			continue;
		/* a dev default gives way to the value that was set, without a warning */
		if (config_source_of(cfg, config_bounds[i].base) == CONFIG_SRC_DEV) {
			*base = *max;
			continue;
		}
		if (config_source_of(cfg, config_bounds[i].max) == CONFIG_SRC_DEV) {
			*max = *base;
			continue;
		}
		fmt_num(*base, b, sizeof(b));
		fmt_num(*max, m, sizeof(m));
		rep_add(rep, CONFIG_WARNING, "%s: %s is below %s (%s): using %s for both",
		    config_bounds[i].max, m, config_bounds[i].base, b, b);
		*max = *base;
	}
	if (!is_bad(bad, "TXMAIL_HTTP_BODY_BUDGET") && !is_bad(bad, "TXMAIL_MAX_BODY") &&
	    cfg->http_body_budget < cfg->max_body) {
		/* the default gives way to a larger TXMAIL_MAX_BODY; a budget that was set must be right */
		if (config_source_of(cfg, "TXMAIL_HTTP_BODY_BUDGET") == CONFIG_SRC_DEFAULT)
			cfg->http_body_budget = cfg->max_body;
		else
			rep_add(rep, CONFIG_ERROR, "%s: below TXMAIL_MAX_BODY (%zu bytes): a body of the largest "
			    "size could never be received", "TXMAIL_HTTP_BODY_BUDGET", cfg->max_body);
	}
	if (!is_bad(bad, "TXMAIL_MAX_AGE") && !is_bad(bad, "TXMAIL_RETRY_BASE") &&
	    cfg->max_age <= cfg->retry_base)
		rep_add(rep, CONFIG_WARNING, "%s: not above TXMAIL_RETRY_BASE: a temporary failure is never retried",
		    "TXMAIL_MAX_AGE");
	if (!is_bad(bad, "TXMAIL_WEBHOOK_URL") && !is_bad(bad, "TXMAIL_WEBHOOK_SECRET") &&
	    cfg->webhook_url[0] != '\0' && cfg->webhook_secret[0] == '\0')
		rep_add(rep, CONFIG_ERROR, "%s: required when TXMAIL_WEBHOOK_URL is set", "TXMAIL_WEBHOOK_SECRET");
	if (!is_bad(bad, "TXMAIL_WEBHOOK_URL") && !is_bad(bad, "TXMAIL_WEBHOOK_ALLOW_PRIVATE") &&
	    cfg->webhook_url[0] != '\0') {
		/* refuse to start with a default endpoint we would never connect to */
		char why[256];

		if (netguard_url_check(cfg->webhook_url, cfg->webhook_allow_private,
		    NETGUARD_RESOLVE_MS, why, sizeof(why)) != 0)
			rep_add(rep, CONFIG_ERROR, "%s: %s", "TXMAIL_WEBHOOK_URL", why);
	}
	if (!is_bad(bad, "TXMAIL_WEBHOOK_PROXY") && !is_bad(bad, "TXMAIL_WEBHOOK_ALLOW_PRIVATE") &&
	    cfg->webhook_proxy[0] != '\0' && !cfg->webhook_allow_private)
		rep_add(rep, CONFIG_ERROR, "%s", "TXMAIL_WEBHOOK_PROXY: refused while the webhook address guard "
		    "is on: through a proxy txmail connects only to the proxy, which resolves and reaches the "
		    "target itself, so the guard cannot judge the target; make the proxy enforce the egress "
		    "policy and set TXMAIL_WEBHOOK_ALLOW_PRIVATE=1");
	if (!is_bad(bad, "TXMAIL_BOUNCE_DOMAIN") && !is_bad(bad, "TXMAIL_BOUNCE_SECRET") &&
	    cfg->bounce_domain[0] != '\0' && strlen(cfg->bounce_secret) < 16)
		rep_add(rep, CONFIG_ERROR, "%s", "TXMAIL_BOUNCE_SECRET: required with TXMAIL_BOUNCE_DOMAIN, "
		    "at least 16 characters (e.g. openssl rand -hex 32)");
	if (!is_bad(bad, "TXMAIL_REDIS_MIN_REPLICAS") && !is_bad(bad, "TXMAIL_REDIS_URL") &&
	    cfg->redis_min_replicas > 0 && !cfg->redis_set)
		rep_add(rep, CONFIG_ERROR, "%s", "TXMAIL_REDIS_MIN_REPLICAS: needs TXMAIL_REDIS_URL: the "
		    "embedded redis-server of `txmail run` has no replicas, so every send would answer 504");
	if (!is_bad(bad, "TXMAIL_BOUNCE_LISTEN") && !is_bad(bad, "TXMAIL_BOUNCE_DOMAIN") &&
	    cfg->bounce_listen_set && cfg->bounce_domain[0] == '\0')
		rep_add(rep, CONFIG_ERROR, "%s", "TXMAIL_BOUNCE_LISTEN needs TXMAIL_BOUNCE_DOMAIN and TXMAIL_BOUNCE_SECRET");
	if (!is_bad(bad, "TXMAIL_SUBMISSION_LISTEN") && !is_bad(bad, "TXMAIL_SUBMISSIONS_LISTEN") &&
	    (cfg->submission_listen_set || cfg->submissions_listen_set) &&
	    (cfg->submission_tls_cert[0] == '\0' || cfg->submission_tls_key[0] == '\0'))
		rep_add(rep, CONFIG_ERROR, "%s", "TXMAIL_SUBMISSION_LISTEN and TXMAIL_SUBMISSIONS_LISTEN need "
		    "TXMAIL_SUBMISSION_TLS_CERT and TXMAIL_SUBMISSION_TLS_KEY: AUTH carries an API key, so "
		    "submission is never offered without TLS");
	if ((cfg->submission_listen_set || cfg->submissions_listen_set) &&
	    cfg->submission_tls_cert[0] != '\0' && access(cfg->submission_tls_cert, R_OK) != 0)
		rep_add(rep, CONFIG_ERROR, "TXMAIL_SUBMISSION_TLS_CERT: cannot read %s: %s",
		    cfg->submission_tls_cert, strerror(errno));
	if ((cfg->submission_listen_set || cfg->submissions_listen_set) &&
	    cfg->submission_tls_key[0] != '\0' && access(cfg->submission_tls_key, R_OK) != 0)
		rep_add(rep, CONFIG_ERROR, "TXMAIL_SUBMISSION_TLS_KEY: cannot read %s: %s",
		    cfg->submission_tls_key, strerror(errno));
	if (!is_bad(bad, "TXMAIL_SUBMISSION_LISTEN") && !is_bad(bad, "TXMAIL_SUBMISSIONS_LISTEN") &&
	    cfg->submission_listen_set && cfg->submissions_listen_set &&
	    cfg->submission_listen_port != 0 && cfg->submission_listen_port == cfg->submissions_listen_port &&
	    strcmp(cfg->submission_listen_host, cfg->submissions_listen_host) == 0)
		rep_add(rep, CONFIG_ERROR, "%s", "TXMAIL_SUBMISSIONS_LISTEN: the same address as "
		    "TXMAIL_SUBMISSION_LISTEN");
}

int
config_load_report(struct config *cfg, struct config_report *rep)
{
	return config_load_report_dev(cfg, rep, 0);
}

int
config_load_report_dev(struct config *cfg, struct config_report *rep, int dev)
{
	unsigned char bad[CONFIG_MAX_VARS];

	memset(rep, 0, sizeof(*rep));
	memset(bad, 0, sizeof(bad));
	config_defaults(cfg);
	for (size_t i = 0; i < config_nvars; i++)
		load_var(cfg, i, rep, bad, dev);
	cross_checks(cfg, rep, bad);
	config_unknown_vars(rep);
	return rep->nerrors == 0 ? 0 : -1;
}

int
config_load(struct config *cfg, char *err, size_t errlen)
{
	struct config_report *rep = malloc(sizeof(*rep));
	size_t o = 0;
	int rc;

	if (rep == NULL) {
		config_defaults(cfg);
		return config_err(err, errlen, "%s", "out of memory");
	}
	rc = config_load_report(cfg, rep);
	if (errlen > 0)
		err[0] = '\0';
	for (size_t i = 0; i < rep->n; i++) {
		if (rep->p[i].severity == CONFIG_WARNING) {
			log_warn("configuration warning", "problem=%s", rep->p[i].text);
			continue;
		}
		if (o < errlen) {
			int w = snprintf(err + o, errlen - o, "%s%s", o > 0 ? "; " : "", rep->p[i].text);
			o = w < 0 ? errlen : o + (size_t)w;
		}
	}
	free(rep);
	return rc;
}

/* --- config list / config check ---------------------------------------------------- */

/* The default of var as config list shows it (markdown: values in backticks). */
static void
default_text(const struct config_var *var, int markdown, char *out, size_t outlen)
{
	const char *q = markdown ? "`" : "";
	char val[256];

	if (var->def == NULL && !(var->flags & CV_DYNAMIC)) {
		struct config d;

		config_defaults(&d);
		cv_show(&d, var, val, sizeof(val));
	} else {
		util_strlcpy(val, var->def != NULL ? var->def : "", sizeof(val));
	}
	if (val[0] == '\0')
		util_strlcpy(out, var->note != NULL ? var->note : "unset", outlen);
	else if (var->note != NULL)
		snprintf(out, outlen, "%s%s%s (%s)", q, val, q, var->note);
	else
		snprintf(out, outlen, "%s%s%s", q, val, q);
	if (var->dev_def != NULL) {
		size_t n = strlen(out);
		int paren = n > 0 && out[n - 1] == ')';

		if (paren)
			out[--n] = '\0';
		snprintf(out + n, outlen - n, "%s%s%s%s in %s--dev%s)", paren ? "; " : " (",
		    q, var->dev_def, q, q, q);
	}
}

/* The meaning of var: its help, then unit and range for numbers. */
static void
meaning_text(const struct config_var *var, char *out, size_t outlen)
{
	char range[128];

	switch (var->kind) {
	case CV_INT:
	case CV_PORT:
	case CV_SECONDS:
	case CV_NUM:
	case CV_SIZE:
		range_text(var, range, sizeof(range));
		snprintf(out, outlen, "%s (%s)", var->help, range);
		break;
	default:
		util_strlcpy(out, var->help, outlen);
		break;
	}
	if (var->flags & CV_SECRET) {
		size_t n = strlen(out);
		snprintf(out + n, outlen - n, "; secret: also `%s_FILE`", var->name);
	}
}

/* s to out: markdown escapes '|'; plain text drops the backticks. */
static void
put_text(FILE *out, const char *s, int markdown)
{
	for (; *s != '\0'; s++) {
		if (markdown && *s == '|')
			fputs("\\|", out);
		else if (!markdown && *s == '`')
			continue;
		else
			fputc(*s, out);
	}
}

void
config_list(FILE *out, int markdown)
{
	char meaning[1536], def[512];

	if (markdown)
		fputs("| variable | meaning | default |\n|---|---|---|\n", out);
	for (size_t i = 0; i < config_nvars; i++) {
		const struct config_var *var = &config_vars[i];

		meaning_text(var, meaning, sizeof(meaning));
		default_text(var, markdown, def, sizeof(def));
		if (markdown) {
			fprintf(out, "| `%s` | ", var->name);
			put_text(out, meaning, 1);
			fputs(" | ", out);
			put_text(out, def, 1);
			fputs(" |\n", out);
		} else {
			fprintf(out, "%s\n    ", var->name);
			put_text(out, meaning, 0);
			fputs("\n    default: ", out);
			put_text(out, def, 0);
			fputs("\n", out);
		}
	}
}

int
config_check(FILE *out, FILE *errout, int dev)
{
	struct config_report *rep = malloc(sizeof(*rep));
	struct config *cfg = malloc(sizeof(*cfg));
	char val[4096];
	int rc = 1;

	if (rep == NULL || cfg == NULL) {
		fputs("txmail config check: out of memory\n", errout);
		free(rep);
		free(cfg);
		return 1;
	}
	rc = config_load_report_dev(cfg, rep, dev) == 0 ? 0 : 1;
	for (size_t i = 0; i < config_nvars; i++) {
		const struct config_var *var = &config_vars[i];
		int invalid = 0;

		for (size_t j = 0; j < rep->n && !invalid; j++) {
			size_t nl = strlen(var->name);
			const char *t = rep->p[j].text;

			invalid = rep->p[j].severity == CONFIG_ERROR && strncmp(t, var->name, nl) == 0 &&
			    (t[nl] == ':' || (t[nl] == '_' && strncmp(t + nl, "_FILE", 5) == 0) ||
			    (t[nl] == ' ' && strncmp(t + nl, " and ", 5) == 0));
		}
		if (invalid)
			util_strlcpy(val, "(invalid)", sizeof(val));
		else
			cv_show(cfg, var, val, sizeof(val));
		fprintf(out, "%-11s %s=%s", source_names[cfg->source[i] % NSOURCES], var->name, val);
		/* a default from the CPU quota: where it came from, as a comment */
		if ((var->flags & CV_CPUS) && cfg->source[i] == CONFIG_SRC_DEFAULT && cfg->cpu_basis[0] != '\0')
			fprintf(out, "  # %s", cfg->cpu_basis);
		fputc('\n', out);
	}
	for (size_t j = 0; j < rep->n; j++)
		fprintf(errout, "%s: %s\n", rep->p[j].severity == CONFIG_ERROR ? "error" : "warning",
		    rep->p[j].text);
	if (rep->dropped > 0)
		fprintf(errout, "error: %zu more problems not shown\n", rep->dropped);
	fprintf(errout, "config check: %zu error%s, %zu warning%s\n", rep->nerrors,
	    rep->nerrors == 1 ? "" : "s", rep->nwarnings, rep->nwarnings == 1 ? "" : "s");
	config_free(cfg);
	free(cfg);
	free(rep);
	return rc;
}

void
config_free(struct config *cfg)
{
	for (size_t i = 0; i < cfg->napi_keys; i++) {
		/* keys are secrets: clear before freeing */
		explicit_bzero(cfg->api_keys[i], strlen(cfg->api_keys[i]));
		free(cfg->api_keys[i]);
		cfg->api_keys[i] = NULL;
	}
	cfg->napi_keys = 0;
	explicit_bzero(cfg->api_key_digest, sizeof(cfg->api_key_digest));
	cfg->napi_key_digests = 0;
	explicit_bzero(cfg->relay.pass, sizeof(cfg->relay.pass));
	explicit_bzero(cfg->redis.pass, sizeof(cfg->redis.pass));
	explicit_bzero(cfg->redis.sentinel_pass, sizeof(cfg->redis.sentinel_pass));
	explicit_bzero(cfg->webhook_url, sizeof(cfg->webhook_url));
	explicit_bzero(cfg->webhook_secret, sizeof(cfg->webhook_secret));
	explicit_bzero(cfg->webhook_proxy, sizeof(cfg->webhook_proxy));
	explicit_bzero(cfg->bounce_secret, sizeof(cfg->bounce_secret));
	dkim_keys_free(cfg->dkim_keys);
	cfg->dkim_keys = NULL;
	free(cfg->domain_rate);
	cfg->domain_rate = NULL;
}


void
config_describe(const struct config *cfg)
{
	static const char *const tls_names[] = { "none", "starttls", "required", "implicit" };
	char redis[sizeof(cfg->redis.path) + sizeof(cfg->redis.user) + 32];
	char relay[sizeof(cfg->relay.user) + sizeof(cfg->relay.host) + 64];
	char val[4096];

	if (cfg->redis_set)
		config_redis_masked(&cfg->redis, redis, sizeof(redis));
	else
		util_strlcpy(redis, "embedded", sizeof(redis));
	if (cfg->relay_set)
		config_relay_masked(&cfg->relay, relay, sizeof(relay));
	else
		util_strlcpy(relay, "none", sizeof(relay));
	log_info("config", "listen=%s:%u redis=%s relay=%s relay_tls=%s relay_verify=%s api_keys=%zu "
	    "webhook=%s workers=%d dkim_keys=%zu", cfg->listen_host, (unsigned)cfg->listen_port, redis,
	    relay, cfg->relay_set ? tls_names[cfg->relay.tls & 3] : "none",
	    cfg->relay_set && cfg->relay.no_verify ? "off" : "on", cfg->napi_keys,
	    cfg->webhook_url[0] ? "set" : "none", cfg->workers, dkim_keys_count(cfg->dkim_keys));
	if (cfg->cpu_basis[0] != '\0')
		log_info("cpu quota", "cpus=%d http_threads=%d workers=%d basis=%s", cfg->cpu_count,
		    cfg->http_threads, cfg->workers, cfg->cpu_basis);
	for (size_t i = 0; i < config_nvars; i++) {
		const struct config_var *var = &config_vars[i];
		enum config_source src = (enum config_source)(cfg->source[i] % NSOURCES);

		cv_show(cfg, var, val, sizeof(val));
		log_msg(src == CONFIG_SRC_DEFAULT ? LOG_DEBUG : LOG_INFO, "config setting",
		    " name=%s value=%s source=%s",
		    var->name, val, source_names[src]);
	}
}
