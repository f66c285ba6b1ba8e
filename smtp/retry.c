/*
 * retry.c - the delivery retry policy (see retry.h).
 *
 * Owns the only answer to "what happens after this attempt": exponential
 * backoff from base to max, lengthened to the delay a reply named (the
 * hint, read by retry_hint.c), bounded by the recipient's expiry. Pure: no
 * clock, no I/O, no logging, no allocation. Must never overflow, whatever
 * the attempt count or times it is handed.
 */
#include "retry.h"

/* A delay is never longer than this (about 100 years), whatever the config says. */
#define RETRY_DELAY_CAP_MS ((int64_t)100 * 365 * 24 * 3600 * 1000)

/* seconds_to_ms - round s*1000 to the nearest ms, clamped to [1, cap]; NaN -> 1. */
static int64_t
seconds_to_ms(double s)
{
	double ms = s * 1000.0 + 0.5;

	if (!(ms >= 1.0))
		return 1;
	if (ms >= (double)RETRY_DELAY_CAP_MS)
		return RETRY_DELAY_CAP_MS;
	return (int64_t)ms;
}

int64_t
retry_delay_ms(const struct retry_policy *p, int attempts)
{
	int64_t base = seconds_to_ms(p->base_s);
	int64_t max = seconds_to_ms(p->max_s);
	int64_t delay = base;

	if (max < base)
		max = base;
	for (int i = 1; i < attempts; i++) {
		if (delay > max / 2)
			return max;
		delay *= 2;
	}
	return delay < max ? delay : max;
}

struct retry_decision
retry_decide(const struct retry_policy *p, enum smtp_result result,
    int attempts, int64_t now_ms, int64_t expires_ms)
{
	return retry_decide_hint(p, result, attempts, now_ms, expires_ms, 0);
}

struct retry_decision
retry_decide_hint(const struct retry_policy *p, enum smtp_result result,
    int attempts, int64_t now_ms, int64_t expires_ms, int64_t hint_ms)
{
	struct retry_decision d = { RETRY_DEFERRED, 0, 0 };
	int64_t delay;

	switch (result) {
	case SMTP_RESULT_OK:
		d.verdict = RETRY_DELIVERED;
		return d;
	case SMTP_RESULT_PERMFAIL:
		d.verdict = RETRY_FAILED;
		return d;
	case SMTP_RESULT_TEMPFAIL:
	default:
		break;
	}
	delay = retry_delay_ms(p, attempts < 1 ? 1 : attempts);
	if (hint_ms > delay) {
		delay = hint_ms < RETRY_DELAY_CAP_MS ? hint_ms : RETRY_DELAY_CAP_MS;
		d.hinted = 1;
	}
	if (now_ms > INT64_MAX - delay || now_ms + delay >= expires_ms) {
		d.verdict = RETRY_EXPIRED;
		d.hinted = 0;
		return d;
	}
	d.next_ms = now_ms + delay;
	return d;
}

enum smtp_result
retry_classify_code(int code)
{
	if (code >= 200 && code < 400)
		return SMTP_RESULT_OK;
	if (code >= 500 && code < 600)
		return SMTP_RESULT_PERMFAIL;
	return SMTP_RESULT_TEMPFAIL;
}

const char *
retry_verdict_name(enum retry_verdict v)
{
	switch (v) {
	case RETRY_DELIVERED:
		return "delivered";
	case RETRY_DEFERRED:
		return "deferred";
	case RETRY_FAILED:
		return "failed";
	case RETRY_EXPIRED:
		return "expired";
	}
	return "unknown";
}
