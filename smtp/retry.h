/*
 * retry.h - the delivery retry policy, as one pure function.
 *
 * Turns the outcome of one delivery attempt into what happens next:
 * delivered, deferred until a time, failed, or expired. No I/O, no clock:
 * the caller passes "now". Every retry decision in txmail is made here.
 */
#ifndef SMTP_RETRY_H
#define SMTP_RETRY_H

#include <stdint.h>

/* What one attempt produced: data, not a program error. */
enum smtp_result {
	SMTP_RESULT_OK = 0,        /* 2xx after end of data */
	SMTP_RESULT_TEMPFAIL = 1,  /* 4xx, dropped connection, timeout, TLS or DNS trouble */
	SMTP_RESULT_PERMFAIL = 2,  /* 5xx, or a permanent local refusal */
};

struct retry_policy {
	double base_s;   /* first delay (TXMAIL_RETRY_BASE), > 0 */
	double max_s;    /* largest delay (TXMAIL_RETRY_MAX), >= base_s */
};

enum retry_verdict {
	RETRY_DELIVERED = 0,
	RETRY_DEFERRED = 1,   /* try again at next_ms */
	RETRY_FAILED = 2,     /* permanent failure; reason "bounced" */
	RETRY_EXPIRED = 3,    /* temporary failure but no time left */
};

struct retry_decision {
	enum retry_verdict verdict;
	int64_t next_ms;      /* RETRY_DEFERRED: when to try again */
	int hinted;           /* RETRY_DEFERRED, 1: next_ms is the server's delay (hint_ms), longer than the policy's */
};

/*
 * retry_delay_ms - delay before attempt number attempts+1, after `attempts`
 * failed attempts (attempts >= 1): base * 2^(attempts-1), capped at max.
 */
int64_t retry_delay_ms(const struct retry_policy *p, int attempts);

/*
 * retry_decide - what follows `result` of attempt number `attempts` (>= 1),
 * made at now_ms, for a recipient that expires at expires_ms.
 * A tempfail whose next attempt would fall at or after expires_ms expires now.
 */
struct retry_decision retry_decide(const struct retry_policy *p,
    enum smtp_result result, int attempts, int64_t now_ms, int64_t expires_ms);

/*
 * retry_decide_hint - retry_decide, for a tempfail whose reply named a delay
 * of hint_ms (retry_hint_parse, in ms; <= 0: none): the next attempt is the
 * later of the policy's and the hint's, never earlier than the policy's
 * (a server asking for less does not make txmail retry faster), and it
 * expires as retry_decide does when that falls at or after expires_ms.
 * Other results ignore hint_ms. retry_decide is this with hint_ms 0.
 */
struct retry_decision retry_decide_hint(const struct retry_policy *p,
    enum smtp_result result, int attempts, int64_t now_ms, int64_t expires_ms,
    int64_t hint_ms);

/* retry_classify_code - result for an SMTP reply code (2xx/3xx ok, 4xx temp, 5xx perm, else temp). */
enum smtp_result retry_classify_code(int code);

/* retry_verdict_name - "delivered", "deferred", "failed", "expired". */
const char *retry_verdict_name(enum retry_verdict v);

#endif
