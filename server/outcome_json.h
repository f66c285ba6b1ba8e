/*
 * outcome_json.h - the JSON texts of one recorded delivery outcome: the
 * recipient's `smtp` field, the webhook event and the timeline entry that
 * store_record writes (worker.c builds them after each attempt).
 *
 * Written directly into one buffer each, byte for byte what cJSON's
 * unformatted printer gives for the same objects (same key order, same
 * escapes), without building a cJSON tree per outcome.
 */
#ifndef SERVER_OUTCOME_JSON_H
#define SERVER_OUTCOME_JSON_H

#include "../smtp/engine.h"

/* What one outcome's texts are made of; NULL strings are left out, as cJSON does. */
struct outcome_json_in {
	const char *evt_id;          /* "evt_..." */
	const char *type;            /* "message.delivered", "message.deferred", "message.failed" */
	const char *at;              /* RFC 3339 time of the record */
	const char *msg_id;
	const char *rcpt;
	const char *status;          /* "delivered", "deferred", "failed", "expired" */
	const char *reason;          /* "bounced", "expired" or NULL */
	int attempt;
	const struct smtp_outcome *out;
	const char *metadata_json;   /* as stored; NULL: {} (not JSON: {}) */
	const char *tags_json;       /* as stored; NULL: [] (not JSON: []) */
	/* the receipt's measures (event data only): latency_ms acceptance ->
	 * this outcome, queued_ms due -> the attempt's start (both >= 0, the
	 * caller clamps); delivered_at on message.delivered, next_attempt_at on
	 * message.deferred (RFC 3339; NULL: left out) */
	long long latency_ms;
	long long queued_ms;
	const char *delivered_at;
	const char *next_attempt_at;
};

/* The three texts, malloc'd (free each with free()); smtp is NULL when out->code is 0. */
struct outcome_json {
	char *smtp;
	char *event;
	char *timeline;
};

/*
 * outcome_json_build - fill r from in. 0, or -1 when out of memory (r is
 * then cleared and holds nothing to free).
 */
int outcome_json_build(const struct outcome_json_in *in, struct outcome_json *r);

/*
 * outcome_json_times - a receipt's two measures, in ms: *latency_ms =
 * now - created (acceptance -> this outcome), *queued_ms = start - due
 * (the wait before the attempt: due is when the recipient became due,
 * accepted, send_at or a retry's due time, 0: created; start is when the
 * attempt began, 0: never, now). Clamped so that latency >= queued >= 0
 * (clocks of several hosts may disagree by a little).
 */
void outcome_json_times(long long created_ms, long long due_ms, long long start_ms,
    long long now_ms, long long *latency_ms, long long *queued_ms);

/* outcome_json_free - free the three texts; r may be zeroed or already freed. */
void outcome_json_free(struct outcome_json *r);

#endif
