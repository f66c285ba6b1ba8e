/*
 * metrics.h - process-local counters, histograms and their Prometheus text
 * exposition.
 *
 * Owns a fixed set of C11 atomic counters (HTTP requests by route pattern
 * and status class, messages accepted, recipients by state and reason,
 * delivery attempts, SMTP replies by class, outcomes per destination,
 * webhook attempts, SMTP transactions, request-body bytes in flight), the
 * latency histograms (accept, accepted -> delivered, SMTP transaction,
 * webhook), bumped from any thread without a lock, and the GET /metrics
 * handler that adds queue gauges read from Redis and this process's own
 * figures (CPU, RSS, fds) at scrape time. Counters are per process: with
 * the roles split over several processes each one counts only what it did
 * itself (a worker serves its own on its admin listener: http.c's admin
 * routes use the same handler; metrics_scrape is that handler's text for
 * any other listener). This module must never block a caller that counts, allocate
 * on the counting path, or let a label value a client chose reach the
 * output (routes are the static patterns, destinations a bounded table).
 *
 * The names, types and labels are listed in README "Metrics".
 */
#ifndef SERVER_METRICS_H
#define SERVER_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "store.h"

#define METRICS_MAX_ROUTES 48       /* distinct route patterns counted; more go to "other" */
#define METRICS_NCLASSES 5          /* 1xx..5xx */
#define METRICS_NBUCKETS 17         /* finite histogram bounds (metrics_bucket_le); +Inf is one more */
#define METRICS_ACCEPT_ROUTES 4     /* route patterns with an accept histogram; more are not timed */
#define METRICS_TOP_DESTINATIONS 20 /* destinations with a label of their own; the rest are "other" */
#define METRICS_DEST_MAX 255        /* longest destination name kept (longer: "other") */
#define METRICS_DEST_PROMOTE 3      /* outcomes a destination needs before it takes a free slot */
#define METRICS_DEST_CANDIDATES 128 /* destinations tracked while they wait for a slot */

/* a recipient state, the status label of txmail_recipients_total */
enum metrics_rcpt {
	METRICS_RCPT_DELIVERED = 0,
	METRICS_RCPT_DEFERRED,          /* counted once per recipient: its first deferral */
	METRICS_RCPT_FAILED,
	METRICS_RCPT_EXPIRED,
	METRICS_RCPT_SUPPRESSED,
	METRICS_RCPT_CANCELED,
	METRICS_RCPT_COUNT
};
#define METRICS_ATTEMPT_COUNT 4     /* delivery attempt results: delivered..expired above */

/* the reason label of txmail_recipients_total (metrics_reason picks one) */
enum metrics_reason {
	METRICS_REASON_OK = 0,          /* delivered */
	METRICS_REASON_SUPPRESSED,      /* on the suppression list at acceptance */
	METRICS_REASON_CANCELED,        /* canceled through the API */
	METRICS_REASON_DNS,             /* no route: DNS answered nothing usable (no reply) */
	METRICS_REASON_CONNECT,         /* no connection, no banner, TLS failed (no reply) */
	METRICS_REASON_SUSPENDED,       /* not attempted: the destination is suspended */
	METRICS_REASON_TIMEOUT,         /* the server stopped answering mid-transaction */
	METRICS_REASON_BOUNCED,         /* failed after delivery: an asynchronous bounce (DSN) */
	METRICS_REASON_REPLY_4XX,       /* a 4xx reply without an enhanced code */
	METRICS_REASON_REPLY_5XX,       /* a 5xx reply without an enhanced code */
	METRICS_REASON_ENH_4,           /* "4.0" .. "4.7": 8 values from here */
	METRICS_REASON_ENH_5 = METRICS_REASON_ENH_4 + 8,   /* "5.0" .. "5.7" */
	METRICS_REASON_OTHER = METRICS_REASON_ENH_5 + 8,
	METRICS_REASON_COUNT
};

/* the class label of txmail_smtp_replies_total: "2xx".."5xx" or an enhanced "X.Y" */
#define METRICS_NREPLY (METRICS_NCLASSES + 3 * 8)   /* 1xx..5xx, then 2.0-2.7, 4.0-4.7, 5.0-5.7 */

enum metrics_webhook {
	METRICS_WEBHOOK_SUCCESS = 0,    /* 2xx */
	METRICS_WEBHOOK_RETRY,          /* failed, will be retried */
	METRICS_WEBHOOK_GAVE_UP,        /* failed past the webhook max age */
	METRICS_WEBHOOK_DROPPED,        /* endpoint deleted meanwhile */
	METRICS_WEBHOOK_COUNT
};

#define METRICS_COMPLAINT_COUNT 4   /* txmail_complaints_total: abuse, fraud, virus, other */

enum metrics_smtp {
	METRICS_SMTP_OK = 0,
	METRICS_SMTP_TEMPFAIL,
	METRICS_SMTP_PERMFAIL,
	METRICS_SMTP_COUNT
};

/* One histogram: per-bucket (not cumulative) counts, the last one +Inf, and the sum in microseconds. */
struct metrics_hist {
	uint64_t n[METRICS_NBUCKETS + 1];
	uint64_t sum_us;
};

/* This process's own figures, read at scrape time (ok 0: /proc unreadable, left out). */
struct metrics_process {
	int ok;
	double cpu_seconds;     /* user + system */
	double start_seconds;   /* since the epoch */
	int64_t rss_bytes;
	int64_t vsize_bytes;
	int64_t open_fds;
	int64_t max_fds;
};

/* A plain copy of every counter, for the formatter. */
/* what a short WAIT (store_wait_replicas) held back: txmail_redis_unreplicated_total{what} */
enum metrics_unrepl {
	METRICS_UNREPL_SEND,      /* a send answered 504 instead of 202 */
	METRICS_UNREPL_CHANGE,    /* another API change answered 504 */
	METRICS_UNREPL_EVENTS,    /* events held back from webhooks or the event stream */
	METRICS_UNREPL_COUNT
};

/* what SMTP submission saw: txmail_submission_events_total{event} */
enum metrics_subm {
	METRICS_SUBM_CONNECTION,        /* a session started */
	METRICS_SUBM_REFUSED,           /* a connection over TXMAIL_SUBMISSION_MAX_CLIENTS(_PER_IP) */
	METRICS_SUBM_TIMEOUT,           /* a session cut by a timeout */
	METRICS_SUBM_AUTH_OK,           /* AUTH accepted */
	METRICS_SUBM_AUTH_FAILED,       /* AUTH refused (535) */
	METRICS_SUBM_QUEUED,            /* a message answered 250 */
	METRICS_SUBM_REJECTED,          /* a message refused at the end of DATA (5xx) */
	METRICS_SUBM_DEFERRED,          /* a message answered 4xx at the end of DATA */
	METRICS_SUBM_COUNT
};

struct metrics_snapshot {
	size_t nroutes;
	const char *route[METRICS_MAX_ROUTES];          /* static pattern strings */
	uint64_t http[METRICS_MAX_ROUTES][METRICS_NCLASSES];
	uint64_t http_other[METRICS_NCLASSES];          /* past METRICS_MAX_ROUTES */
	uint64_t accepted;
	uint64_t rcpt[METRICS_RCPT_COUNT][METRICS_REASON_COUNT];
	uint64_t attempts[METRICS_ATTEMPT_COUNT];       /* by enum metrics_rcpt, delivered..expired */
	uint64_t replies[METRICS_NREPLY];
	uint64_t webhook[METRICS_WEBHOOK_COUNT];
	uint64_t webhook_disabled;      /* endpoints disabled after failing continuously */
	uint64_t complaints[METRICS_COMPLAINT_COUNT];   /* abuse, fraud, virus, other */
	uint64_t smtp[METRICS_SMTP_COUNT];
	int64_t http_body_bytes;        /* a gauge: request body bytes reserved now */
	int64_t accept_waiting;         /* a gauge: sends on the accept pipe now (enqpipe.h) */
	size_t naccept;
	const char *accept_route[METRICS_ACCEPT_ROUTES];
	struct metrics_hist accept[METRICS_ACCEPT_ROUTES];
	struct metrics_hist latency[2];                 /* by enum store_lane */
	struct metrics_hist smtp_duration[METRICS_SMTP_COUNT];
	struct metrics_hist webhook_latency;
	size_t ndest;
	char dest[METRICS_TOP_DESTINATIONS][METRICS_DEST_MAX + 1];
	uint64_t dest_n[METRICS_TOP_DESTINATIONS][METRICS_ATTEMPT_COUNT];
	uint64_t dest_other[METRICS_ATTEMPT_COUNT];
	int64_t suspended;              /* a gauge: destinations suspended now (collectors) */
	int64_t dest_waiting;           /* a gauge: transactions waiting for a destination slot (fair.h) */
	int64_t dest_full;              /* a gauge: destinations at their in-flight cap, summed over loops */
	uint64_t parked;                /* deliveries parked because their destination was at its cap */
	uint64_t unreplicated[METRICS_UNREPL_COUNT];  /* WAITs that came up short, by enum metrics_unrepl */
	uint64_t subm[METRICS_SUBM_COUNT];            /* by enum metrics_subm */
	int64_t subm_sessions;                        /* a gauge: submission sessions open now */
	struct metrics_process proc;
};

/* --- counting (any thread; no lock, no allocation) ------------------------ */

/*
 * metrics_http_request - count one answered request. route must be a
 * string with static storage (the route table's pattern), or NULL for a
 * path no route matched ("unmatched"). Statuses outside 100..599 are ignored.
 */
void metrics_http_request(const char *route, int status);
/* metrics_accept_duration - one answered send request on route (static pattern), seconds from headers to answer. */
void metrics_accept_duration(const char *route, double seconds);
/* metrics_accept_route - give route (static pattern) its accept histogram now, before any observation. */
void metrics_accept_route(const char *route);
/* metrics_messages_accepted - n messages stored (202, not replays). */
void metrics_messages_accepted(uint64_t n);
/*
 * metrics_recipient - one recipient reached a state outside the delivery
 * loop ("suppressed" at acceptance, "canceled"); the reason is the state's
 * own. Unknown names are ignored.
 */
void metrics_recipient(const char *status);
/* metrics_recipient_as - one recipient reached status for reason r (the bounce role: "failed", BOUNCED). */
void metrics_recipient_as(const char *status, enum metrics_reason r);

/* One recorded outcome of a delivery attempt (worker.c's recorder, after store_record). */
struct metrics_outcome {
	const char *status;       /* "delivered", "deferred", "failed", "expired" */
	int counted;              /* 1: the recipient's state changed here (first deferral or terminal): count it */
	int code;                 /* the reply code that decided it, 0 for none */
	const char *enhanced;     /* "4.7.1" or "" */
	const char *stage;        /* smtp_outcome.stage; "suspended", "dns", "connect", ... */
	const char *destination;  /* the recipient's domain, or the relay: bounded by the top-N table */
	enum store_lane lane;
	int64_t latency_ms;       /* delivered: accepted -> now; < 0 when unknown */
};
/* metrics_delivery_outcome - count o: attempts, recipients (when counted), destination, latency. */
void metrics_delivery_outcome(const struct metrics_outcome *o);
/* metrics_smtp_reply - one SMTP reply that decided a transaction or refused a recipient; code 0 is ignored. */
void metrics_smtp_reply(int code, const char *enhanced);
/* metrics_webhook_attempt - one finished webhook request. */
void metrics_webhook_attempt(enum metrics_webhook result);
/* metrics_webhook_disabled - an endpoint was disabled after failing TXMAIL_WEBHOOK_DISABLE_AFTER. */
void metrics_webhook_disabled(void);

/* metrics_complaint - a feedback report applied (the bounce role); an unknown type counts as "other". */
void metrics_complaint(const char *feedback_type);
/* metrics_webhook_latency - a webhook answered 2xx, seconds after its event was recorded. */
void metrics_webhook_latency(double seconds);
/* metrics_smtp_transaction - one finished SMTP transaction by its smtp_result value (0 ok, 1 temp, 2 perm). */
void metrics_smtp_transaction(int smtp_result);
/* metrics_smtp_duration - how long that transaction took (submit -> outcome, every address tried), seconds. */
void metrics_smtp_duration(int smtp_result, double seconds);

/* metrics_http_body_bytes - the request-body bytes reserved (http.c's budget) grew or shrank by delta. */
void metrics_http_body_bytes(int64_t delta);

/* metrics_accept_waiting - sends waiting on the accept pipe grew or shrank by delta. */
void metrics_accept_waiting(int64_t delta);

/* metrics_parked - n deliveries were parked: their destination was at its in-flight cap (fair.h). */
void metrics_parked(int64_t n);

/* metrics_submission - one SMTP submission event; metrics_submission_sessions - sessions open += delta. */
void metrics_submission(enum metrics_subm what);
void metrics_submission_sessions(int64_t delta);
/* metrics_redis_unreplicated - a write of this kind was not confirmed by TXMAIL_REDIS_MIN_REPLICAS in time. */
void metrics_redis_unreplicated(enum metrics_unrepl what);

/*
 * Collectors: a module whose figures are state, not events (a worker's
 * suspended destinations), registers a function called at every snapshot
 * to add its share. The call happens under the collectors' lock, so
 * metrics_collector_del returns only once no call is running: after it,
 * arg may be freed. At most 64 collectors; add returns -1 when full.
 */
struct metrics_collect {
	int64_t suspended;        /* destinations suspended now */
	int64_t dest_waiting;     /* transactions waiting for a destination slot now */
	int64_t dest_full;        /* destinations at their in-flight cap now */
};
typedef void metrics_collect_fn(void *arg, struct metrics_collect *out);
int metrics_collector_add(metrics_collect_fn *fn, void *arg);
void metrics_collector_del(metrics_collect_fn *fn, void *arg);

/* metrics_clock_us - the monotonic clock in microseconds, for the callers' durations. */
uint64_t metrics_clock_us(void);

/* --- pure helpers (unit tested) ------------------------------------------- */

/* metrics_bucket_le - the upper bound of finite bucket i in seconds (0.005 .. 3600). */
double metrics_bucket_le(size_t i);
/* metrics_bucket_index - the bucket of an observation of us microseconds (METRICS_NBUCKETS: +Inf). */
size_t metrics_bucket_index(uint64_t us);
/* metrics_reason - the reason label for an outcome (status as in metrics_outcome). */
enum metrics_reason metrics_reason(const char *status, int code, const char *enhanced,
    const char *stage);
/* metrics_reason_name - the label text of r ("ok", "4.7", "connect", ...). */
const char *metrics_reason_name(enum metrics_reason r);
/* metrics_reply_class - the index into snapshot.replies for a reply, -1 for none/invalid. */
int metrics_reply_class(int code, const char *enhanced);

/* --- reading -------------------------------------------------------------- */

/* metrics_snapshot - copy the current counters, the collectors' figures and the process's own into out. */
void metrics_snapshot(struct metrics_snapshot *out);
/* metrics_reset - zero every counter and forget the routes and destinations (tests only; not thread-safe with counting). */
void metrics_reset(void);

/*
 * metrics_render - the Prometheus text exposition (version 0.0.4) of snap
 * and, when q is not NULL, the queue gauges; redis_up is txmail_redis_up.
 * Pure. Returns a malloc'd NUL-terminated string (caller frees), NULL on OOM.
 */
char *metrics_render(const struct metrics_snapshot *snap, const struct store_queue_stats *q,
    int redis_up);

/*
 * metrics_scrape - what GET /metrics answers, for any listener (the api's
 * port, a worker's admin port): a snapshot, the queue gauges read through
 * s (NULL or Redis down: left out, txmail_redis_up 0), rendered. Malloc'd
 * (caller frees), NULL on OOM.
 */
char *metrics_scrape(struct store *s);

/* The handlers of GET /metrics and GET / (dashboard.c) are declared in api.h. */

#endif
