/*
 * config_internal.h - what config.c and config_parse.c share: the error
 * formatter, the host name check and the sizes of secret-bearing values.
 * Included by server/config*.c only; everyone else uses config.h.
 */
#ifndef SERVER_CONFIG_INTERNAL_H
#define SERVER_CONFIG_INTERNAL_H

#include <stddef.h>

#define SECRET_URL_MAX 4096        /* TXMAIL_RELAY, TXMAIL_REDIS_URL */
#define API_KEYS_SPEC_MAX 32768    /* TXMAIL_API_KEYS: 64 keys of 256 and separators */

/* config_err - format the message into err (errlen bytes); always returns -1. */
int config_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* config_host_ok - 1 when h[0..len) is 1..253 bytes of [A-Za-z0-9.:_-]. */
int config_host_ok(const char *h, size_t len);

#endif
