/*
 * config_internal.h - what config.c, config_vars.c and config_parse.c
 * share: the variable table's row type and the table itself, the error
 * formatter, the host name check and the sizes of secret-bearing values.
 * Included by server/config*.c only; everyone else uses config.h.
 */
#ifndef SERVER_CONFIG_INTERNAL_H
#define SERVER_CONFIG_INTERNAL_H

#include <stddef.h>

struct config;
struct smtp_target;

#define SECRET_URL_MAX 4096        /* TXMAIL_RELAY, TXMAIL_REDIS_URL */
#define API_KEYS_SPEC_MAX 32768    /* TXMAIL_API_KEYS: 64 keys of 256 and separators */

/* config_err - format the message into err (errlen bytes); always returns -1. */
int config_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* config_host_ok - 1 when h[0..len) is 1..253 bytes of [A-Za-z0-9.:_-]. */
int config_host_ok(const char *h, size_t len);

/* --- the variable table (config_vars.c) ---------------------------------------- */

enum cv_kind {
	CV_STR,       /* char[size] at off */
	CV_INT,       /* int at off: a whole number in min..max */
	CV_PORT,      /* uint16_t at off: a whole number in min..max */
	CV_SECONDS,   /* double at off: seconds, fractions allowed */
	CV_NUM,       /* double at off, in `unit` */
	CV_SIZE,      /* size_t at off: bytes, or a number with K, M or G (1024-based) */
	CV_BOOL,      /* int at off: 0 or 1 (also true/false, yes/no, on/off) */
	CV_CUSTOM,    /* parsed by set, shown by show */
};

#define CV_SECRET 1u    /* has a NAME_FILE form (config_secret); shown masked, never echoed */
#define CV_DYNAMIC 2u   /* unset: set(cfg, NULL) computes the default; def is text only */
#define CV_CPUS 4u      /* CV_DYNAMIC from the CPU quota: config check says where it came from */

/*
 * One variable. Unset (or empty), the value is def, parsed like any other
 * ("" = off/none); def NULL: the field keeps the value config_defaults
 * gave it (the SMTP timeouts, whose defaults the engine owns). For a
 * generic kind, set (if any) validates after the value is stored; for
 * CV_CUSTOM it parses the value ("" = unset). Both write their error text
 * without the variable's name; the loader puts it in front.
 */
struct config_var {
	const char *name;
	enum cv_kind kind;
	unsigned flags;
	const char *def;
	const char *note;     /* shown with the default, or alone when def is "" or dynamic */
	const char *dev_def;  /* `run --dev`'s default when the variable is unset (CONFIG_SRC_DEV), or NULL */
	double min, max;
	const char *unit;     /* "seconds", "requests per second", "bytes", ...; NULL: none */
	const char *help;     /* one line; `code` in backticks (dropped in plain text) */
	size_t off, size;     /* the field; CV_STR and secrets: the value's buffer size */
	int (*set)(struct config *cfg, const char *v, char *err, size_t errlen);
	void (*show)(const struct config *cfg, char *out, size_t outlen);
};

/* The table, one row per TXMAIL_* variable, in `config list` order; its length. */
extern const struct config_var config_vars[];
extern const size_t config_nvars;

/* config_relay_masked - the relay as a URL with the password masked into out. */
void config_relay_masked(const struct smtp_target *t, char *out, size_t outlen);

#endif
