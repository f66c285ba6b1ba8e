/*
 * webhook.h - the webhook dispatcher, the only module that speaks libcurl.
 *
 * Reads the events outbox (store_read_events), fans each event out to the
 * endpoints that want it, and POSTs deliveries concurrently (curl multi),
 * signed per Standard Webhooks. Non-2xx or a timeout is retried with
 * exponential backoff (same webhook-id) until webhook_max_age.
 */
#ifndef SERVER_WEBHOOK_H
#define SERVER_WEBHOOK_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"

struct webhook;
struct webhook *webhook_start(const struct config *cfg, char *err, size_t errlen);
void webhook_stop(struct webhook *w);

/*
 * webhook_sign - Standard Webhooks signature: "v1,<base64(HMAC-SHA256(key,
 * id "." ts "." body))>" where key is the base64-decoded part after "whsec_"
 * (a secret without the prefix is used as raw bytes). 0, or -1 (bad secret,
 * small buffer).
 */
int webhook_sign(const char *secret, const char *msg_id, int64_t ts,
    const char *body, size_t body_len, char *out, size_t outlen);

/* webhook_backoff_ms - delay after `attempts` failures: base*2^(attempts-1) capped at max. */
int64_t webhook_backoff_ms(double base_s, double max_s, int attempts);

#endif
