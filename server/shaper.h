/*
 * shaper.h - per-destination traffic shaping for the delivery workers:
 * messages per second per recipient domain, and backing off a destination
 * that keeps refusing connections.
 *
 * Two layers. The pure core (shaper_rates_*, shaper_state_*) takes "now"
 * as an argument, does no I/O, no logging, no locking, and is unit-tested
 * with an injected clock. The wrapper (struct shaper) adds a mutex, a
 * min-heap of held deliveries and one release thread; it never speaks SMTP
 * or Redis and never frees the items it holds.
 *
 * Semantics (documented in README "Shaping"):
 *  - Rate: TXMAIL_DOMAIN_RATE="gmail.com=20,outlook.com=10,*=0", messages
 *    per second keyed by the recipient's domain (exact, case-insensitive;
 *    "*" for every other domain; 0 or absent = unlimited), in relay and
 *    direct mode alike. A bucket of one token per domain: consecutive
 *    messages to a domain are spaced at least 1/rate seconds apart, in the
 *    order they arrived. A delivery over the rate is held in memory and
 *    released when its slot comes; held deliveries stay "in flight" for the
 *    worker, so its concurrency cap bounds them and fetching stops when it
 *    is reached (back-pressure).
 *  - Backoff: a destination (the domain in direct mode, the relay
 *    otherwise) that gives `fail_threshold` consecutive connection-level
 *    tempfails is suspended for backoff_base; while suspended, admitting a
 *    delivery to it answers SHAPER_SUSPENDED with the end of the
 *    suspension. When it ends, the destination is on probation: the next
 *    connection failure suspends it again at once for twice the previous
 *    backoff (capped at backoff_max). Any outcome showing the destination
 *    answered clears the count and the backoff.
 */
#ifndef SERVER_SHAPER_H
#define SERVER_SHAPER_H

#include <stddef.h>
#include <stdint.h>

#define SHAPER_KEY_MAX 255          /* longest domain / destination key */
#define SHAPER_RATES_MAX 1000       /* entries in TXMAIL_DOMAIN_RATE */
#define SHAPER_SPEC_MAX 65536       /* length of TXMAIL_DOMAIN_RATE */
#define SHAPER_TABLE_MAX 20000      /* keys tracked; idle ones are evicted first */

/* --- pure core ------------------------------------------------------------ */

struct shaper_rates;

/*
 * shaper_rates_parse - "domain=rate[,domain=rate...]" with "*" as the
 * default domain; rate is messages per second, a decimal >= 0 (0 =
 * unlimited). NULL or "" gives no limits. 0 and *out (caller frees with
 * shaper_rates_free), or -1 with a message naming TXMAIL_DOMAIN_RATE in err.
 */
int shaper_rates_parse(const char *spec, struct shaper_rates **out, char *err, size_t errlen);
void shaper_rates_free(struct shaper_rates *r);

/* shaper_rates_lookup - messages per second for domain; 0 = unlimited. r may be NULL. */
double shaper_rates_lookup(const struct shaper_rates *r, const char *domain);

/* shaper_rates_count - entries, "*" included. */
size_t shaper_rates_count(const struct shaper_rates *r);

struct shaper_params {
	int fail_threshold;        /* consecutive connection failures before suspending, >= 1 */
	int64_t backoff_base_ms;   /* first suspension */
	int64_t backoff_max_ms;    /* longest suspension, >= base */
	int rate_share;            /* the rates are split among this many shapers (delivery loops); 1 when 0 */
};

enum shaper_event {
	SHAPER_EV_NONE = 0,
	SHAPER_EV_SUSPENDED = 1,   /* report: the destination was just suspended */
	SHAPER_EV_RECOVERED = 2,   /* report: a suspended-before destination answered */
	SHAPER_EV_ENDED = 3,       /* check: a suspension has just run out (once per suspension) */
};

struct shaper_state;

/* shaper_state_new - takes ownership of rates (may be NULL). NULL on OOM (rates freed). */
struct shaper_state *shaper_state_new(const struct shaper_params *p, struct shaper_rates *rates);
void shaper_state_free(struct shaper_state *st);

/*
 * shaper_state_reserve - the time (>= now_ms) at which the next message to
 * domain may be sent, and book that slot. now_ms when the domain is
 * unlimited, or when the key table is full (fail open).
 */
int64_t shaper_state_reserve(struct shaper_state *st, const char *domain, int64_t now_ms);

/*
 * shaper_state_check - 0 when dest may be tried now, else the time its
 * suspension ends. *ev is SHAPER_EV_ENDED the first time a check finds a
 * suspension over, else SHAPER_EV_NONE.
 */
int64_t shaper_state_check(struct shaper_state *st, const char *dest, int64_t now_ms,
    enum shaper_event *ev);

/*
 * shaper_state_report - an outcome for dest: conn_fail 1 for a
 * connection-level tempfail, 0 when the destination answered. Returns the
 * event; with SHAPER_EV_SUSPENDED, *until_ms is the end of the suspension
 * and *fails the consecutive failures that caused it.
 */
enum shaper_event shaper_state_report(struct shaper_state *st, const char *dest, int conn_fail,
    int64_t now_ms, int64_t *until_ms, int *fails);

/* shaper_state_suspended - destinations suspended at now_ms (the suspension not over yet). */
size_t shaper_state_suspended(const struct shaper_state *st, int64_t now_ms);

/*
 * shaper_conn_fail - 1 when an outcome is a connection-level tempfail:
 * result tempfail at stage "connect", "banner" or "tls" with no reply code
 * or 421. Pure.
 */
int shaper_conn_fail(int tempfail, const char *stage, int code);

/* --- thread-safe wrapper --------------------------------------------------- */

struct shaper_config {
	const char *domain_rate;   /* TXMAIL_DOMAIN_RATE, may be NULL */
	struct shaper_params params;
	/*
	 * Called on the release thread for a held item whose slot has come:
	 * until_ms is 0 to send it now, or the end (wall clock, ms) of its
	 * destination's suspension; shutdown 1 from shaper_free (not sent).
	 */
	void (*on_release)(void *item, int64_t until_ms, int shutdown, void *arg);
	void *arg;
};

enum shaper_verdict {
	SHAPER_SEND = 0,        /* send now */
	SHAPER_HELD = 1,        /* held: on_release is called for it later, exactly once */
	SHAPER_SUSPENDED = 2,   /* destination suspended until *until_ms (wall clock) */
};

struct shaper;

/* shaper_new - parse the rates and start the release thread. NULL with err. */
struct shaper *shaper_new(const struct shaper_config *c, char *err, size_t errlen);

/*
 * shaper_admit - may a delivery to a recipient of domain, through
 * destination dest, go now? With SHAPER_HELD the shaper keeps item (not
 * owned) until on_release. Any thread.
 */
enum shaper_verdict shaper_admit(struct shaper *s, const char *domain, const char *dest,
    void *item, int64_t *until_ms);

/* shaper_report - the outcome of an attempt through dest (see shaper_conn_fail). Any thread. */
void shaper_report(struct shaper *s, const char *dest, int conn_fail);

/* shaper_suspended - destinations suspended now (metrics). Any thread. */
size_t shaper_suspended(struct shaper *s);

/* shaper_held - deliveries held now. */
size_t shaper_held(struct shaper *s);

/*
 * shaper_stop - stop the release thread and hand every held item back with
 * on_release(.., 1, ..), on the caller's thread. shaper_report still works
 * afterwards; nothing may be admitted any more. Idempotent.
 */
void shaper_stop(struct shaper *s);

/* shaper_free - shaper_stop, then free. NULL is fine. */
void shaper_free(struct shaper *s);

#endif
