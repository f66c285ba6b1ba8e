/*
 * webhook_internal.h - what the files of the webhook module (webhook.c and
 * webhook_*.c) share: the dispatcher's types (struct webhook, its
 * endpoints, held events and requests) and the calls between webhook.c
 * (the thread, the queues, the outcomes) and webhook_request.c (signing
 * and building a request). Included by server/webhook*.c only; everyone
 * else uses webhook.h. Like them, it may include curl/curl.h.
 */
#ifndef SERVER_WEBHOOK_INTERNAL_H
#define SERVER_WEBHOOK_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <curl/curl.h>
#include <openssl/evp.h>

#include "store.h"
#include "webhook.h"

#define WH_EP_ID_MAX 65

#define WH_FIXED_HEADERS 3

enum wh_outcome { WH_PENDING = 0, WH_DONE, WH_RETRY };

/*
 * One endpoint as the dispatcher knows it. "default" (TXMAIL_WEBHOOK_URL)
 * is always entry 0, with url "" when unset: its leftover deliveries are
 * then claimed and dropped.
 */
struct wh_ep {
	char id[WH_EP_ID_MAX];
	char *url;
	char *secret;          /* "" when unsigned */
	EVP_MAC_CTX *mac;      /* keyed with secret (wh_mac_new); NULL when unsigned or the secret is bad */
	char *secret_old;      /* a rotation's previous secret, "" when none */
	EVP_MAC_CTX *mac_old;  /* keyed with secret_old; signs too until old_until_ms */
	int64_t old_until_ms;  /* wall ms */
	int enabled;           /* 0: disabled (its events are parked, its queue not claimed) */
	int64_t failing_since; /* wall ms of the first failure of the current run; 0: none */
	char **events;         /* filter; nevents 0 = every type */
	size_t nevents;
	char project[STORE_PROJECT_MAX + 1];  /* whose events it gets; unused for "default" */
	int busy;              /* requests running or awaiting their store record */
	int nwait;             /* direct deliveries waiting for a slot */
	int64_t oldest_ms;     /* monotonic start of its oldest request in flight; 0: none */
	int64_t next_due;      /* wall ms when a claim may find work; 0 = look now */
	int failing;           /* last attempt failed: logged once at warn, then info */
};

/*
 * An outbox entry this dispatcher read and sends directly: it stays
 * pending in the "webhooks" group (its lease, renewed by
 * store_events_touch) until each of its deliveries was either answered
 * 2xx or parked in its endpoint's queue; then it is acked.
 */
struct wh_evt {
	char entry_id[48];
	char project[STORE_PROJECT_MAX + 1];
	int refs;              /* direct deliveries not settled yet */
	int noack;             /* out of memory on the way: never ack, let it be reclaimed */
	struct wh_evt *prev, *next;
};

/* a delivery for its endpoint's queue, until store_webhook_settle has it */
struct wh_park {
	struct store_whd *d;   /* attempts: made so far */
	char project[STORE_PROJECT_MAX + 1];
	int64_t due_ms;
};

/* the first bytes of a receiver's answer (wh_keep_head), for the deliveries log */
struct wh_head {
	char buf[WEBHOOK_EXCERPT_MAX];
	size_t len;
};

/* one attempt for the endpoint's deliveries log (store_webhook_log) */
struct wh_logent {
	char endpoint[WH_EP_ID_MAX];
	char event_id[64];
	char type[64];
	int attempt;
	long status;
	int64_t duration_ms;
	int64_t at_ms;
	int64_t next_ms;       /* 0: no retry */
	char error[160];
	char excerpt[WEBHOOK_EXCERPT_MAX + 1];
	char *body;            /* owned */
};

struct wh_req {
	struct store_whd *d;
	struct wh_evt *evt;    /* sent directly from the outbox; NULL: claimed from a queue */
	size_t epi;            /* index of its endpoint in eps when last looked up (a hint) */
	CURL *easy;            /* from w->easy_free or new; back there when done (wh_easy_put) */
	/* the webhook-* headers, linked in front of w->hfixed (curl only reads them) */
	struct curl_slist hnode[3];
	char h_id[96];
	char h_ts[48];
	char h_sig[192];      /* one or two signatures (a rotation's overlap) */
	struct wh_head head;   /* the answer's first bytes */
	long status;           /* the HTTP status, 0 when none */
	int64_t duration_ms;   /* from the start to the answer or the error */
	char errbuf[CURL_ERROR_SIZE];
	char guard_why[160];   /* set when the address guard refused the connection */
	int allow_private;     /* TXMAIL_WEBHOOK_ALLOW_PRIVATE */
	enum wh_outcome outcome;
	int attempts;          /* attempts made, including this one */
	int64_t next_ms;       /* WH_RETRY: when */
	char fail[160];        /* a failed attempt: "HTTP 500" or the error, for the dashboard; else "" */
	/* what the event is about, for log lines (wh_req_about); "" when absent */
	char type[64];
	char msg_id[96];
	char rcpt[320];
	int64_t created_ms;    /* the event's created_at (recorded), 0 when absent: latency metric */
	int64_t started_ms;    /* monotonic, when the request was handed to curl */
	struct wh_req *next;
};

struct webhook {
	/* copied from the config: the thread never touches cfg */
	struct redis_addr redis;
	char *ca_file;         /* "" when the system store only */
	char *proxy;           /* TXMAIL_WEBHOOK_PROXY; "": none, whatever the environment says */
	double retry_base, retry_max, max_age, timeout;
	int allow_private;         /* TXMAIL_WEBHOOK_ALLOW_PRIVATE */
	int64_t visibility_ms;     /* a dead dispatcher's events are taken over after this */
	char consumer[128];

	struct store *st;
	CURLM *multi;
	pthread_t thr;
	atomic_int stop;
	int64_t stop_deadline;     /* util_mono_ms: requests in flight may finish until then */
	struct webhook_stop_stats stats;

	struct wh_ep *eps;         /* eps[0] is "default" */
	char *default_projects;    /* TXMAIL_WEBHOOK_PROJECTS: whose events "default" gets */
	size_t neps;
	size_t rr;                 /* round-robin start for claims */
	int64_t eps_refresh_at;    /* monotonic ms of the next periodic refresh */
	int64_t eps_warn_at;       /* monotonic ms: rate limit for refresh warnings */

	struct wh_req *inflight;   /* requests curl is running */
	int ninflight;
	struct wh_req *finished;   /* outcomes not yet recorded in the store */
	int nfinished;
	struct wh_req *wait_head, *wait_tail;   /* direct deliveries waiting for a slot, oldest first */
	int nwait;
	struct wh_evt *held;       /* outbox entries being sent directly */
	size_t nheld;
	struct wh_park *park;      /* deliveries for the queues, written by wh_settle */
	size_t npark, cappark;
	char (*acks)[48];          /* outbox entries to ack, written by wh_settle */
	size_t nack, capack;
	int ep_cap;                /* TXMAIL_WEBHOOK_CONNECTIONS: requests in flight per endpoint */
	int max_inflight;          /* all endpoints */
	int read_own;              /* next read starts with this consumer's own pending entries */
	int64_t reclaim_at;        /* monotonic ms of the next XAUTOCLAIM */
	int64_t touch_at;          /* monotonic ms of the next lease renewal of held entries */
	int64_t redis_retry_at;    /* monotonic ms; 0 = Redis believed up */
	int redis_down_logged;     /* "redis unavailable" was logged: "available again" follows */

	CURL **easy_free;          /* easy handles set up and free for the next request */
	size_t neasy, capeasy;
	struct curl_slist hfixed[WH_FIXED_HEADERS];  /* the headers of every request (wh_fixed_headers) */

	int poll_ms;               /* curl poll while requests are in flight: WH_POLL_MS */
	atomic_int notified;       /* webhook_notify: an event may be waiting in the outbox */
	atomic_int in_poll;        /* the thread is in, or about to enter, curl's poll */
	struct webhook *next_live; /* the process's running dispatchers (wh_live) */
	double disable_after;      /* TXMAIL_WEBHOOK_DISABLE_AFTER (s); 0: never */
	struct wh_logent *logs;    /* attempts for the deliveries logs, written at the next flush */
	size_t nlogs, caplogs;
	int64_t log_warn_at;       /* monotonic ms: rate limit for log-write warnings */
	int64_t prune_at;          /* monotonic ms of the next wh_prune_disabled */
};

/*
 * wh_mac_new - an HMAC-SHA256 context keyed with secret (whsec_<base64>:
 * the decoded bytes; else the string itself); the caller frees it with
 * EVP_MAC_CTX_free. NULL on a bad secret or out of memory.
 */
EVP_MAC_CTX *wh_mac_new(const char *secret);

/*
 * wh_mac_sign - webhook_sign with a context from wh_mac_new, re-initialised
 * and used in place (one thread at a time: the dispatcher's).
 */
int wh_mac_sign(EVP_MAC_CTX *keyed, const char *msg_id, int64_t ts,
    const char *body, size_t body_len, char *out, size_t outlen);

/*
 * wh_start_req - POST one delivery to ep; takes d (and a reference on
 * evt). 0, or -1 (outcome queued as retry, or d dropped out of memory).
 */
int wh_start_req(struct webhook *w, const struct wh_ep *ep, struct store_whd *d,
    struct wh_evt *evt);

/* wh_easy_put - a handle out of the multi, kept for reuse (or cleaned up beyond max_inflight). */
void wh_easy_put(struct webhook *w, CURL *e);

/* wh_curl_ready - curl_global_init once per process; 0 or -1. */
int wh_curl_ready(void);

/* wh_easy_free_all - clean up the handles kept for reuse. */
void wh_easy_free_all(struct webhook *w);

/* wh_release_busy - one request of d's endpoint is over (recorded or abandoned). */
void wh_release_busy(struct webhook *w, const struct store_whd *d);

/* wh_evt_unref - one direct delivery of ev is settled (answered or parked). */
void wh_evt_unref(struct webhook *w, struct wh_evt *ev);

#endif
