/*
 * shaper.h - per-destination traffic shaping for the delivery workers:
 * messages per second per recipient domain, and backing off a destination
 * that keeps refusing connections.
 *
 * Two layers. The pure core (shaper_rates_*, shaper_state_*) takes "now"
 * as an argument, does no I/O, no logging, no locking, and is unit-tested
 * with an injected clock. The wrapper (struct shaper) adds a mutex, a
 * min-heap of held deliveries, one release thread and, when given Redis,
 * one sync thread that shares the rates and suspensions with every other
 * shaper through the store (store_shape_*, server/store_shaping.c); it
 * never speaks SMTP or Redis itself and never frees the items it holds.
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
 *  - Shared (shaper_config.redis set): the bucket is in Redis, one for
 *    every process. The sync thread books a block of slots for a domain
 *    (up to SHAPER_BLOCK_MS worth at the rate, as many as are waiting, at
 *    most SHAPER_BLOCK_MAX; all domains that need one in one round trip)
 *    and the deliveries take the block's slots in order; a block is asked
 *    for at most one block ahead of time. Slots of a block nobody used are
 *    lost (under the rate, never over). Suspensions are written to Redis
 *    at once and every shaper reads the set at least once a second, so a
 *    destination suspended by one process is suspended in all of them
 *    within about a second, and lifted in all when one sees it answer.
 *    Redis unreachable: each loop shapes alone (its rate_share of the
 *    rate, its own suspensions) until Redis answers again; logged once.
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

struct redis_addr;

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
	int rate_share;            /* local buckets: the rates are split among this many shapers (delivery loops); 1 when 0 */
};

#define SHAPER_BLOCK_MS 200       /* a shared block covers about this long at the domain's rate */
#define SHAPER_BLOCK_MAX 1000     /* slots in one shared block */

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

/*
 * --- shared buckets: the slots come in blocks booked elsewhere (the sync
 * thread, store_shape_reserve); the full rate applies, not rate_share.
 *
 * shaper_state_take - the next slot of domain's block, booked: 0 with
 * *at_ms (>= now_ms; now_ms when unlimited or the key table is full).
 * 1 when the block is used up: nothing booked, and *at_ms is the earliest
 * time a new block may be asked for (never more than one block ahead).
 */
int shaper_state_take(struct shaper_state *st, const char *domain, int64_t now_ms, int64_t *at_ms);

/*
 * shaper_state_block - the slots to ask for domain when demand deliveries
 * wait: min(demand, the rate's SHAPER_BLOCK_MS worth, SHAPER_BLOCK_MAX),
 * at least 1, with *interval_us the full rate's spacing. 0 when unlimited.
 */
int shaper_state_block(const struct shaper_state *st, const char *domain, size_t demand,
    int64_t *interval_us);

/*
 * shaper_state_grant - domain's block is now k slots interval_us apart
 * from start_us (this clock, microseconds); what was left of the last one
 * is dropped. Nothing when the key table is full.
 */
void shaper_state_grant(struct shaper_state *st, const char *domain, int64_t start_us, int k,
    int64_t interval_us);

/*
 * --- shared suspensions: an exchange with the shared set (the sync
 * thread, store_shape_suspensions) is begin, learn for each suspension
 * listed, end.
 *
 * shaper_state_sync_begin - the exchange's number; suspensions set from
 * here on were not in what it wrote and are left alone by its end.
 */
uint64_t shaper_state_sync_begin(struct shaper_state *st);

/*
 * shaper_state_learn - dest is suspended for remaining_ms more, a
 * suspension of backoff_ms (its probation doubles that), as the shared set
 * says. 1 when it was not suspended here before (news), else 0.
 */
int shaper_state_learn(struct shaper_state *st, uint64_t sync, const char *dest,
    int64_t remaining_ms, int64_t backoff_ms, int64_t now_ms);

/*
 * shaper_state_sync_end - complete 1 (the list was whole): a suspension
 * running here for more than SHAPER_LIFT_SLACK_MS, set before the exchange
 * began and not listed, was lifted by another shaper that saw the
 * destination answer: cleared like a report of success (one about to end
 * is left to end: the clocks mapped onto each other differ a little).
 * Returns how many were cleared (0 when !complete).
 */
#define SHAPER_LIFT_SLACK_MS 500
size_t shaper_state_sync_end(struct shaper_state *st, uint64_t sync, int complete, int64_t now_ms);

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
	/*
	 * Redis to share the rates and suspensions through (read by the sync
	 * thread, which opens its own store handle; must outlive the shaper).
	 * NULL: this shaper alone (rate_share of each rate).
	 */
	const struct redis_addr *redis;
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

/* shaper_held - deliveries held now (waiting for a slot or for a block of them). */
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
