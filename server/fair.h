/*
 * fair.h - per-destination in-flight caps for one delivery loop's feeder
 * (TXMAIL_DEST_MAX_INFLIGHT): a destination that holds its connections
 * open (a tarpit, a provider answering slowly) never takes more than its
 * share of the loop's slots, so work for every other destination keeps
 * flowing.
 *
 * A destination is the MX host set of a recipient domain once a route has
 * been seen for it (fair_alias: gmail.com and googlemail.com share one),
 * the domain before that, or the relay. Each SMTP transaction holds one
 * slot of its destination from dispatch to its outcome. A transaction
 * over the cap waits in its destination's line (FIFO) and takes the next
 * slot that frees; when the line is full too, it is parked: handed back
 * to the store with a time to try again, spaced by how long the
 * destination takes per transaction, so a backlog of 10,000 recipients
 * for a tarpit is neither held in memory nor read again every second.
 *
 * Pure: "now" is an argument, no I/O, no logging, no locking (the worker
 * holds its mutex around every call). Memory is bounded: at most
 * wait_total items waiting and FAIR_DESTS_MAX destinations (idle ones are
 * dropped first); when the table is full a destination is not capped
 * (fail open).
 */
#ifndef SERVER_FAIR_H
#define SERVER_FAIR_H

#include <stddef.h>
#include <stdint.h>

#define FAIR_KEY_MAX 255       /* longest destination key (longer: truncated) */
#define FAIR_DESTS_MAX 20000   /* destinations tracked at once */
#define FAIR_ALIASES_MAX 10000 /* domain -> MX host set entries (ROUTE_CACHE_MAX) */

struct fair_params {
	int cap;                 /* transactions in flight per destination, >= 1 */
	int wait_cap;            /* waiting per destination; <= 0: cap */
	int wait_total;          /* waiting over all destinations; <= 0: 4 x cap */
	int64_t park_min_ms;     /* a parked delivery comes back no sooner; <= 0: 100 */
	int64_t park_max_ms;     /* nor later (conditions change; a longer line is spread over its second half); <= 0: 600000 */
};

enum fair_verdict {
	FAIR_GO = 0,     /* a slot is taken: send now, fair_done when it ends */
	FAIR_WAIT = 1,   /* queued: fair_done hands it back with a slot */
	FAIR_PARK = 2,   /* over the cap and the line is full: try again at *until_ms */
};

struct fair;
struct fair_dest;    /* a destination's entry, valid while it has slots taken or items waiting */

/* fair_new - NULL on out of memory. */
struct fair *fair_new(const struct fair_params *p);

/* fair_free - frees the table; waiting items are not freed (take them first). NULL is fine. */
void fair_free(struct fair *f);

/*
 * fair_alias - from now on deliveries for domain count against key (the
 * MX host set, see fair_mx_key). Transactions already admitted under the
 * domain, and its line, move there: the set never gets a cap's worth per
 * name it was reached by. The table is cleared when full.
 */
void fair_alias(struct fair *f, const char *domain, const char *key);

/*
 * fair_admit - may a transaction for domain (or destination key, in relay
 * mode) go now? GO: *dest is its slot's destination (NULL when the table
 * is full or out of memory: not capped), pass it to fair_done. WAIT: item
 * is kept and comes back from fair_done. PARK: nothing is kept; *until_ms
 * (> now_ms) is when to try it again.
 */
enum fair_verdict fair_admit(struct fair *f, const char *domain, void *item, int64_t now_ms,
    struct fair_dest **dest, int64_t *until_ms);

/*
 * fair_done - the transaction that took a slot of dest at started_ms has
 * its outcome. Returns the next item waiting for dest, which now holds
 * that slot (*next_dest = dest), or NULL. dest NULL: nothing (returns NULL).
 */
void *fair_done(struct fair *f, struct fair_dest *dest, int64_t started_ms, int64_t now_ms,
    struct fair_dest **next_dest);

/* fair_take_waiting - remove and return one waiting item (shutdown); NULL when none. */
void *fair_take_waiting(struct fair *f);

/* fair_waiting - items waiting now, over all destinations. */
size_t fair_waiting(const struct fair *f);

/* fair_full - destinations at their cap now (metrics). */
size_t fair_full(const struct fair *f);

/* A saturated destination as the store publishes it (store_saturate), monotonic ms. */
struct fair_sat {
	int64_t next_ms;   /* the next parked delivery comes back no sooner */
	int64_t step_ms;   /* and the ones after it this far apart */
	int64_t min_ms;    /* park_min_ms */
	int64_t max_ms;    /* park_max_ms */
};

/*
 * fair_saturated - should the destination domain counts against be
 * published as saturated (new mail for it then waits in due at its slots
 * instead of the ready stream, enqueue.lua)? 1 with *out filled when it is
 * at its cap with deliveries parked ahead of now_ms, has parked at least
 * twice its cap since it last had room (a backlog, not a burst) and it was
 * not said in the last every_ms; else 0.
 */
int fair_saturated(struct fair *f, const char *domain, int64_t now_ms, int64_t every_ms,
    struct fair_sat *out);

/*
 * fair_unsaturated - 1 (once) when the destination domain counts against
 * was published by fair_saturated and now has a free slot and nobody in
 * its line: new mail for it may go into the ready stream again, and when
 * it fills up again its parking starts afresh. Else 0.
 */
int fair_unsaturated(struct fair *f, const char *domain);

/* fair_park_after - slots up to next_ms (monotonic) were given out elsewhere: park after them. */
void fair_park_after(struct fair *f, const char *domain, int64_t next_ms);

/* fair_inflight - slots taken at the destination domain counts against (tests, logs). */
int fair_inflight(const struct fair *f, const char *domain);

/*
 * fair_mx_key - the destination key of an MX host set: "mx:" and the host
 * names, lowercased, sorted, without duplicates, "," between (truncated to
 * FAIR_KEY_MAX). names[i] may repeat and be in any order. Pure.
 */
void fair_mx_key(const char *const *names, size_t n, char *out, size_t outlen);

#endif
