/*
 * store.h - the only module that speaks Redis (hiredis). All durable state.
 *
 * One struct store is one Redis connection, owned by one thread. A call on
 * a broken connection first tries to reconnect; when Redis is unreachable
 * calls return STORE_ERR_UNAVAILABLE quickly (no crash, no retry loop here:
 * the caller decides). Every state change that must be atomic is one Lua
 * script (EVALSHA, reloaded on NOSCRIPT).
 *
 * Key layout (all keys share the hash tag {0}, so scripts stay legal on
 * Redis Cluster; more tags later means sharding), prefix "txm{0}:":
 *
 *   msg:<id>          hash  id created expires send_at from mail_from subject
 *                           metadata(JSON) tags(JSON) tenant n pending
 *                           prio ("high"|"normal"; absent: normal)
 *                           project (absent: "default", stored before projects)
 *                           r<i>:email r<i>:kind r<i>:status r<i>:attempts
 *                           r<i>:smtp(JSON|"") r<i>:dfr (1: deferred once) for recipient i in 0..n-1.
 *                           When pending reaches 0 the key (and its
 *                           timeline) expire after the retention period,
 *                           and the key is compacted (lib/content.lua): tl
 *                           (the timeline, entries joined by "\n") is
 *                           folded in, id mail_from expires tenant go.
 *                           (A message stored by an earlier release also
 *                           holds "mime"; it goes like msg:<id>:mime.)
 *   msg:<id>:mime     string  the built message (MIME), while a recipient can
 *                           still be attempted; deleted in the step that makes
 *                           the last one terminal, or expiring then after
 *                           TXMAIL_CONTENT_RETENTION (server/lua/lib/content.lua).
 *   msg:<id>:tl       list  a message stored by an earlier release: its event
 *                           timeline until it is finished (then folded into
 *                           the hash's tl, where new messages keep it from the
 *                           enqueue on, entries joined by "\n").
 *   idem:<key>        hash  h (request hash) r (response to replay); PEXPIRE
 *                           ttl; written by the enqueue script itself.
 *   abandoned:<id>    string  "1": an accept whose reply was lost, settled as
 *                           not stored (first message of its batch); the
 *                           enqueue script refuses to run for it. 24 h.
 *   ready             stream, group "workers": one entry {m=<id>, r=<i>}
 *                           per recipient delivery due now. An entry stays
 *                           pending until its outcome is recorded (XACK +
 *                           XDEL in the same script); entries of a dead
 *                           worker are taken over with XAUTOCLAIM after the
 *                           visibility timeout; live workers refresh theirs.
 *                           This is the normal lane of the project
 *                           "default" (and what an earlier release queued
 *                           for any project).
 *   ready:high        stream, group "workers": the same, for messages of
 *                           priority "high" (see store_fetch); an entry is
 *                           acked on its own stream.
 *   ready:p:<project>, ready:high:p:<project>
 *                     stream, group "workers": the same lanes of any other
 *                           project, so that one project's backlog does not
 *                           hold back another's (store_fetch takes a lane's
 *                           projects in turn).
 *   ready:projects, ready:high:projects
 *                     set   the projects that have (had) such a stream.
 *   due               zset  "<id>/<i>" scored by due time (ms): retries and
 *                           send_at. Promoted to the message's lane (prio)
 *                           by a script, in batches.
 *   events            stream, group "webhooks": the outbox, {e=<event JSON>,
 *                           p=<project>} (no p: "default"), appended by the
 *                           same script that records the outcome, so state
 *                           and event change together.
 *                           Fan-out only XACKs: entries stay for SSE readers
 *                           until store_trim_events (never unread ones).
 *   whq:<endpoint>    zset  that endpoint's webhook deliveries
 *                           "<evt_id>/<endpoint>" scored by due time;
 *                           claiming leases them (score moved to now+lease)
 *                           so a crashed dispatcher loses none.
 *   wh:<evt_id>/<ep>  hash  body attempts first
 *   whep:<id>         hash  url secret events(JSON array) created project
 *                           [description disabled disabled_reason disabled_at
 *                           secret_old old_until failing_since]
 *                           (absent: "default"); ids are global, each
 *                           endpoint gets only its project's events
 *   wheps             zset  endpoint ids scored by created (ms), all projects
 *   whlog:<endpoint>  stream its last STORE_WHLOG_MAX attempts (the
 *                           deliveries log), each with the event's body
 *   <pp>tpl:<name>    hash  json created updated
 *   <pp>tpls          zset  template names, all score 0 (lexical order)
 *   <pp>supp          hash  lower-cased email -> "<created_ms>:<reason>"
 *   <pp>suppidx       zset  the same emails, all score 0 (lexical order): the
 *                           list's pages; kept beside supp by its writers,
 *                           rebuilt by the page script when the sizes differ
 *                     <pp> is the project's prefix: "" for "default" (so data
 *                     written before projects is the default project's, no
 *                     migration), "prj:<project>:" for any other project
 *                     (st_project_prefix, lib/project.lua)
 *   key:<sha256 hex>  hash  name created last_used project scope allow
 *                           (allow: comma list of CIDR networks, "" for
 *                           none). A key written before projects has no
 *                           project/scope/allow: it reads as project = its
 *                           name, scope "full", no allowlist.
 *   keyname:<name>    string  the key's sha256 hex
 *   keys              set   key names
 *   shape:rate:<domain>  string  TXMAIL_DOMAIN_RATE: the domain's next free
 *                           sending slot (us, Redis clock), shared by every
 *                           worker; PX until it is in the past (store_shape_reserve).
 *   shape:susp        hash  destination -> "<until_ms> <backoff_ms>" (Redis
 *                           clock): suspended destinations, shared by every
 *                           worker; over ones dropped by the next call, at
 *                           most SHAPER_TABLE_MAX (store_shape_suspensions).
 *   rl:<project>      hash  token bucket: tokens ts; PEXPIRE when full again.
 *                           One per project (every key of it, and the
 *                           TXMAIL_API_KEYS keys in "default"); before
 *                           projects it was per key name, the same key for
 *                           a key whose project is its name.
 *
 * Recipient state machine:
 *   queued|scheduled --claim--> sending --record--> delivered | failed | expired
 *                                          \--record--> deferred --due--> queued
 *   (sending back to queued by reclaim after a worker death)
 *   sending --hand back (shutdown, no outcome)--> queued
 *   queued|scheduled|deferred --cancel--> canceled
 *   "suppressed" is recorded like "failed" (terminal, no SMTP).
 */
#ifndef SERVER_STORE_H
#define SERVER_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"

/*
 * Projects: every message, event, endpoint, template and suppression
 * belongs to one. A project name is [A-Za-z0-9_.-]{1,STORE_PROJECT_MAX};
 * NULL or "" given to a store call means STORE_PROJECT_DEFAULT, and data
 * stored before projects existed (no project field, the original keys)
 * belongs to STORE_PROJECT_DEFAULT.
 */
#define STORE_PROJECT_DEFAULT "default"
#define STORE_PROJECT_MAX 64

enum {
	STORE_OK = 0,
	STORE_ERR_UNAVAILABLE = -1,  /* cannot reach Redis / connection broke */
	STORE_ERR_NOT_FOUND = -2,
	STORE_ERR_CONFLICT = -3,
	STORE_ERR_PROTO = -4,        /* unexpected reply or script error (logged) */
	STORE_ERR_NOMEM = -5,
	STORE_ERR_SUPPRESSED = -6,   /* store_enqueue_checked: a recipient is on the
	                              * suppression list; nothing was stored */
	STORE_ERR_OUTCOME_UNKNOWN = -7,  /* enqueue: Redis did not answer and could not be
	                                  * asked whether the batch was stored */
	STORE_ERR_UNREPLICATED = -8, /* written on the primary, but fewer than
	                              * TXMAIL_REDIS_MIN_REPLICAS replicas confirmed
	                              * it in time (store_wait_replicas) */
};

struct store;

/*
 * store_wait_replicas - with TXMAIL_REDIS_MIN_REPLICAS = N > 0, make sure
 * what this handle's connection wrote, and everything the primary had
 * written before (another handle's writes included), is on N replicas:
 * one pipelined round trip of a tiny fence write and WAIT N (timeout
 * TXMAIL_REDIS_MIN_REPLICAS_TIMEOUT), on the connection that wrote or
 * read (never a new one: a WAIT on the next primary confirms nothing of
 * it). 0 at once with N = 0; STORE_ERR_UNREPLICATED when fewer confirm
 * in time or the connection is gone (the write stays on the primary: it
 * is not undone), STORE_ERR_UNAVAILABLE when the connection broke during
 * the WAIT. The fence is what makes a handle that only read (an
 * idempotent replay, an event read for a webhook) wait for the write it
 * is about to report: replication is in order, so the fence's offset
 * covers every earlier write.
 */
int store_wait_replicas(struct store *s);

/* store_strerror - a short constant name for STORE_OK or a STORE_ERR_* code (for logs). */
const char *store_strerror(int rc);

/*
 * store_open - a handle for one thread. Connects now; if Redis is down the
 * handle is still returned and later calls reconnect. NULL only on OOM.
 */
struct store *store_open(const struct redis_addr *addr);
void store_close(struct store *s);

/* store_init - create consumer groups (MKSTREAM) and load scripts. 0 or error. */
int store_init(struct store *s, char *err, size_t errlen);
/*
 * store_ping - 0 when Redis answers PING; with a redis+sentinel:// URL when
 * the node answers ROLE "master" (else the connection is dropped, so the
 * next call asks the sentinels again).
 */
int store_ping(struct store *s);
/* store_set_retention - seconds a finished message is kept (default 7 days). */
void store_set_retention(struct store *s, int64_t seconds);

/*
 * A delivery lane: which ready stream a message's recipients go through.
 * Zero is normal, so a zeroed struct and a message hash without prio
 * (stored before lanes existed) mean the normal lane.
 */
enum store_lane {
	STORE_LANE_NORMAL = 0,   /* ready */
	STORE_LANE_HIGH = 1,     /* ready:high, always read first */
};

/* --- accepting ---------------------------------------------------------- */

struct store_rcpt_in {
	const char *email;
	const char *kind;      /* "to", "cc" or "bcc" */
	/*
	 * Initial status: NULL means "queued" (or "scheduled" when send_at_ms
	 * is set). "suppressed": terminal at once, never queued; then
	 * event_json (the message.failed event, reason "suppressed") goes to
	 * the outbox and timeline_json to the timeline, in the same script.
	 */
	const char *status;
	const char *event_json;
	const char *timeline_json;
	/*
	 * The address as the suppression list keys it (lower-cased, the same
	 * string store_suppression_check would be given). Needed only by
	 * store_enqueue_checked; NULL elsewhere.
	 */
	const char *lower;
};

struct store_message_in {
	const char *id;
	int64_t created_ms;
	int64_t expires_ms;
	int64_t send_at_ms;     /* 0: deliver now (status queued), else scheduled */
	const char *from;       /* From as given by the caller */
	const char *mail_from;  /* envelope sender address */
	const char *subject;    /* "" when none */
	const char *mime;       /* built message */
	size_t mime_len;
	const char *metadata_json;  /* "{}" when none */
	const char *tags_json;      /* "[]" when none */
	const char *timeline_json;  /* the first timeline entry ("queued") */
	const char *tenant;         /* API key name (or "env:<hash prefix>"); "" when none */
	const char *project;        /* owner (NULL: "default"); one batch is one project, whose
	                             * suppression list store_enqueue_checked reads */
	enum store_lane lane;       /* priority; STORE_LANE_NORMAL when zeroed */
	const struct store_rcpt_in *rcpts;
	size_t nrcpts;
};

/* store_enqueue - store the message and queue (or schedule) each recipient, atomically (one script). */
int store_enqueue(struct store *s, const struct store_message_in *m);

/* Idempotency record for a send (scoped by the caller: key includes the project). */
struct store_idem {
	const char *key;          /* e.g. "<project>:<sha256 hex of Idempotency-Key>" */
	const char *request_hash; /* hex SHA-256 of the request body */
	const char *response;     /* the 202 body to replay */
	int64_t ttl_ms;           /* 24 h */
};

/*
 * store_enqueue_batch - n messages (n >= 1) in one script: all stored or
 * none. With idem (NULL for none): when the key already exists with the
 * same request_hash nothing is stored and *replay gets the first response
 * (malloc'd; caller frees); another request_hash -> STORE_ERR_CONFLICT.
 * Two racing calls with one key store exactly one batch.
 * Returns STORE_OK (then *replay is NULL unless replayed), or STORE_ERR_*.
 *
 * When Redis does not answer the script in time (or the connection
 * breaks), the outcome is settled before returning: on a new connection,
 * one script (abandon.lua) either finds msg:<first id> (the batch was
 * stored: STORE_OK) or writes abandoned:<first id>, which the enqueue
 * script checks first, so a copy of the call still on its way to Redis
 * can never store it later (STORE_ERR_UNAVAILABLE: certainly nothing
 * stored). When Redis cannot be reached for that either:
 * STORE_ERR_OUTCOME_UNKNOWN (stored or not; a retry with the same
 * idempotency key settles it). So STORE_ERR_UNAVAILABLE from an enqueue
 * always means nothing was stored. The settling costs at most one
 * reconnect (1 s per set-up command) plus one command timeout.
 */
int store_enqueue_batch(struct store *s, const struct store_message_in *m, size_t n,
    const struct store_idem *idem, char **replay);

/*
 * store_enqueue_checked - store_enqueue_batch that, in the same script and
 * after the idempotency record was looked at (a replay or a conflict is
 * answered as there, never STORE_ERR_SUPPRESSED), looks up every
 * recipient not already given status "suppressed" (by its .lower, which
 * must be set) in the suppression list. When any is listed nothing is
 * stored and STORE_ERR_SUPPRESSED is returned with flags[k] = 1 for each
 * listed one, else 0; k counts the recipients of all messages in order
 * (flags holds the sum of nrcpts; its contents mean something only with
 * STORE_ERR_SUPPRESSED). The caller then marks those recipients
 * "suppressed" and calls store_enqueue_batch (one more round trip only
 * when someone is suppressed). Otherwise the same returns as
 * store_enqueue_batch; STORE_ERR_PROTO also when a .lower is missing.
 */
int store_enqueue_checked(struct store *s, const struct store_message_in *m, size_t n,
    const struct store_idem *idem, char **replay, int *flags);

/*
 * One enqueue of store_enqueue_ops: the arguments of store_enqueue_batch
 * (flags NULL) or store_enqueue_checked (flags set), and what that call
 * would return (rc, and replay: malloc'd, the caller frees it).
 */
struct store_enqueue_op {
	const struct store_message_in *m;
	size_t n;
	const struct store_idem *idem;
	int *flags;
	int rc;
	char *replay;
};

/*
 * store_enqueue_ops - n enqueues pipelined: written together, their
 * scripts run one after another in Redis, n replies read; each op's rc
 * and replay are what its own store_enqueue_batch or _checked call would
 * give (a lost reply is settled for each op, as there). One op's refusal
 * or invalid arguments never touch another. Every op is answered.
 */
void store_enqueue_ops(struct store *s, struct store_enqueue_op *const *ops, size_t n);

/* --- reading ------------------------------------------------------------ */

struct store_rcpt_view {
	char *email;
	char *kind;
	char *status;
	int attempts;
	char *smtp_json;        /* NULL when no reply yet */
	/* the receipt (record.lua, bounce.lua): -1 / 0 when not recorded */
	int64_t latency_ms;     /* acceptance -> the latest outcome; -1: none yet */
	int64_t delivered_ms;   /* when delivered; 0: never */
	int64_t next_attempt_ms;/* deferred: when the next attempt is due; 0: none */
};

struct store_message_view {
	char *id;
	char *from;
	char *subject;
	char *metadata_json;
	char *tags_json;
	int64_t created_ms;
	int64_t send_at_ms;
	enum store_lane lane;   /* normal when the hash has no prio */
	char *project;          /* owner; "default" when the hash has none */
	int content_stored;     /* 1 while the MIME is kept, 0 once deleted (TXMAIL_CONTENT_RETENTION) */
	struct store_rcpt_view *rcpts;
	size_t nrcpts;
	char **timeline_json;   /* JSON entries, oldest first */
	size_t ntimeline;
};

/* store_get_message - fills *v (caller frees with store_message_view_free); STORE_ERR_NOT_FOUND. */
int store_get_message(struct store *s, const char *id, struct store_message_view *v);
void store_message_view_free(struct store_message_view *v);

/*
 * Search (GET /v1/messages): one page of a project's messages, newest
 * first, over every partition, from the indexes the enqueue writes
 * (lib/msgix.lua). Filters (NULL or 0: none) combine; the most selective
 * index is walked (recipient, then a rare status - scheduled, deferred,
 * failed, expired, suppressed, canceled: every message that had it -,
 * then tag, then from, else every message) and the others checked per
 * message. Each partition looks at no more
 * than STORE_SEARCH_BUDGET ids per call, so a page may hold fewer than
 * limit messages - even none - and still have a next page: the caller
 * pages on until next is NULL.
 */
#define STORE_SEARCH_BUDGET 2000
struct store_search_q {
	const char *project;
	size_t limit;                /* 1..100 */
	const char *after;           /* an id: start below it; NULL from the newest */
	const char *status;          /* the message status (MessageStatus) */
	const char *tag;
	const char *rcpt;            /* lower-cased */
	const char *from;            /* lower-cased address */
	int64_t created_after_ms;    /* inclusive; 0: none */
	int64_t created_before_ms;   /* exclusive; 0: none */
};
struct store_search_item {
	char *id, *from, *subject, *tags_json, *metadata_json, *prio;
	int64_t created_ms, send_at_ms;
	size_t nrcpts;
	char **emails, **statuses;   /* nrcpts each */
};
struct store_search_res {
	struct store_search_item *items;
	size_t n;
	char next[64];               /* the id to go on below; "" when this was the last page */
};
int store_message_search(struct store *s, const struct store_search_q *q, struct store_search_res *r);
void store_search_res_free(struct store_search_res *r);

/*
 * store_sweep_index - one slice of every partition's search indexes swept
 * (ix_sweep.lua): up to STORE_SWEEP_SLICE entries of each project's two
 * sets looked at, those of messages gone removed (an id made before now_ms
 * - STORE_SWEEP_KEEP_MS without a lookup). The scheduler calls it every
 * minute. Returns how many went, or a STORE_ERR_*.
 */
#define STORE_SWEEP_SLICE 5000
#define STORE_SWEEP_KEEP_MS ((int64_t)45 * 86400 * 1000)   /* send_at 30 d + TXMAIL_MAX_AGE + 7 d retention, and then some */
int store_sweep_index(struct store *s, int64_t now_ms);

/*
 * store_backfill_index - one slice (a SCAN step of STORE_BACKFILL_SLICE)
 * of every partition's message hashes put in the search indexes
 * (ix_backfill.lua): the messages stored by a release without them. Once
 * a partition's scan has ended (remembered in its ix:backfill) it is not
 * scanned again. *seen: the messages this slice looked at. Returns 1 while
 * a partition's scan goes on, 0 once every one has ended, or a
 * STORE_ERR_*. The scheduler calls it each round until it returns 0.
 */
#define STORE_BACKFILL_SLICE 2000
int store_backfill_index(struct store *s, int64_t *seen);

/*
 * store_cancel - recipients still queued, scheduled or deferred become
 * "canceled" (terminal; in-flight "sending" ones finish normally), and
 * timeline_json is appended when any changed. *ncanceled = how many (0:
 * nothing left to cancel). STORE_ERR_NOT_FOUND when the message is unknown
 * or, with project not NULL, belongs to another project (checked in the same
 * script; project NULL: any project).
 */
int store_cancel(struct store *s, const char *id, const char *project,
    const char *timeline_json, int *ncanceled);

/* --- delivering --------------------------------------------------------- */

struct store_delivery {
	char entry_id[48];      /* ready-stream entry id */
	/* the stream entry_id belongs to: lane and the project whose stream it is
	 * ("default": the lane's original stream, which also holds what an
	 * earlier release queued for any project; not the message's project) */
	enum store_lane lane;
	char stream_project[STORE_PROJECT_MAX + 1];
	char msg_id[64];
	int rcpt_idx;
	char *rcpt;
	char *mail_from;
	char *mime;
	size_t mime_len;
	char *metadata_json;
	char *tags_json;
	int attempts;           /* including this attempt */
	int64_t created_ms;
	int64_t expires_ms;
	/* when the recipient became due for this attempt: its last deferral's
	 * due time (r<i>:due), else send_at, else created_ms */
	int64_t due_ms;
};

/* store_delivery_free - frees the contents and d itself. NULL is fine. */
void store_delivery_free(struct store_delivery *d);

/*
 * store_set_lane_weights - how store_fetch shares its slots between the lanes
 * when both have work (TXMAIL_LANE_WEIGHTS; each >= 1, 9:1 when never
 * set): smooth weighted round robin, kept on the handle across calls.
 */
void store_set_lane_weights(struct store *s, int high, int normal);

/*
 * store_fetch - XREADGROUP up to max new entries for `consumer`, and claim
 * each: status -> sending, attempts + 1. The lanes share max by their
 * weights (store_set_lane_weights): high:9,normal:1 gives normal one slot
 * in ten during a flood of high, and a lane with less work than its share
 * leaves the rest to the other (no credit banked). Within a lane, its
 * projects' streams are taken one entry each in turn (the stream list is
 * read from Redis at most once a second, so a project's very first entry
 * on a lane may wait that long). Entries already read (carried) come first
 * on their stream; then one non-blocking read of the lanes still short
 * (a second one only for streams that may have more); only when nothing
 * at all is at hand, one read of every stream blocking up to block_ms (so
 * neither lane starves the blocking wait and nothing already claimed
 * waits behind it). Entries read beyond the
 * shares are kept for the next call (store_hand_back_carried at shutdown).
 * Entries whose recipient is no longer deliverable (terminal, canceled) are
 * acknowledged and skipped. Writes malloc'd deliveries to out[0..ret).
 * Returns the count, or a STORE_ERR_*.
 */
/*
 * store_take_parked - how many entries store_fetch and store_reclaim parked
 * since the last call instead of claiming them: "queued" recipients of a
 * domain published as saturated (store_saturate), put in due at its next
 * slots by the claim script itself (no MIME read, no hand back). Resets it.
 */
uint64_t store_take_parked(struct store *s);

int store_fetch(struct store *s, const char *consumer, int max, int block_ms,
    struct store_delivery **out);

/*
 * store_reclaim - take over up to max entries pending longer than
 * min_idle_ms with another (dead) consumer (XAUTOCLAIM per stream, the
 * high lane's first, then the normal lane's for the rest; at most 32
 * streams a call, the next call going on), claimed as in store_fetch. Returns the count
 * or a STORE_ERR_*.
 */
int store_reclaim(struct store *s, const char *consumer, int64_t min_idle_ms,
    int max, struct store_delivery **out);

/*
 * store_heartbeat - reset the idle time of entries this consumer holds
 * (XCLAIM JUSTID, one per stream): entry_ids[i] is on the stream of lane
 * lanes[i], project projects[i] and partition parts[i] (the delivery's
 * lane, stream_project and store_id_partition(msg_id); lanes NULL: all
 * normal, projects NULL: all "default", parts NULL: all 0).
 * 0 or STORE_ERR_*.
 */
int store_heartbeat(struct store *s, const char *consumer, const char *const *entry_ids,
    const enum store_lane *lanes, const char *const *projects, const unsigned *parts, size_t n);

/*
 * store_id_partition - the partition a message id names (TXMAIL_PARTITIONS):
 * k for "msg_<26>p<k>", 0 for any other id (every id before partitions).
 */
unsigned store_id_partition(const char *msg_id);

struct store_result {
	const struct store_delivery *d;
	const char *status;       /* "delivered", "deferred", "failed", "expired", "suppressed" */
	int64_t next_ms;          /* deferred: when it is due again */
	int64_t now_ms;
	/* acceptance -> this outcome; stored as r<i>:lat (GET's latency_ms),
	 * with r<i>:dat = now_ms when delivered and r<i>:nxt = next_ms when
	 * deferred (removed by a later outcome) */
	int64_t latency_ms;
	const char *smtp_json;    /* {"code":..,"enhanced":..,"response":..} or NULL */
	const char *event_json;   /* outbox (webhook) event body, or NULL for none */
	const char *timeline_json;/* timeline entry for the message */
	/* non-NULL: add the recipient to the suppression list of the message's
	 * project with this reason (the worker decides: a 5.1.x permanent failure) */
	const char *suppress_reason;
	/* out, set by store_record: 1 when this result changed the recipient's
	 * state and is the first of its kind for it (a terminal state, or its
	 * first deferral), 0 when not (a later deferral, stale, already recorded) */
	int counted;
};

/*
 * store_record - for each result, atomically: recipient state, timeline,
 * outbox event, XACK + XDEL of the ready entry (on its lane, d->lane), and ZADD to due when
 * deferred (a first deferral also sets r<i>:dfr). One script call per
 * ST_SCRIPT_BATCH results (the calls pipelined). A result whose recipient
 * is not in "sending" any more is acknowledged without changes, so the
 * same results sent again change nothing. Sets each r[i].counted. 0 or
 * STORE_ERR_* (one result failing fails the call; the others may be
 * recorded, and nothing unrecorded was acknowledged: the entries come
 * back; send them again).
 */
int store_record(struct store *s, struct store_result *r, size_t n);

/* One delivery to give back without an outcome (store_hand_back). */
struct store_handback {
	const struct store_delivery *d;
	int counted;   /* 1: the attempt had begun (SMTP transaction cut): it stays counted */
};

/*
 * store_hand_back - shutdown: give deliveries this consumer claimed back
 * to their lane without an outcome, so that any worker fetches them at
 * once (not after the visibility timeout). For each one still pending
 * with consumer and still "sending" with its attempt number, atomically:
 * status "queued", attempts - 1 unless counted (an attempt that never
 * began is not counted), XACK + XDEL of its entry and a new entry at the
 * end of its lane. One that moved on meanwhile (recorded, canceled,
 * reclaimed by another worker) is left as it is. Pipelined. *back = how
 * many went back. 0 or STORE_ERR_* (then what did not go back stays
 * pending and is reclaimed after the visibility timeout, as if the worker
 * had died).
 */
int store_hand_back(struct store *s, const char *consumer, const struct store_handback *h,
    size_t n, size_t *back);

/* One delivery to park (store_park). */
struct store_park {
	const struct store_delivery *d;
	int64_t until_ms;   /* wall clock, > 0: when it goes back to its lane */
};

/*
 * store_park - its destination is at its in-flight cap (server/fair.h):
 * give deliveries this consumer claimed back without an attempt, to come
 * back at until_ms. For each one still pending with consumer and still
 * "sending" with its attempt number, atomically: status "queued",
 * attempts - 1, XACK + XDEL of its entry and ZADD due (<msg_id>/<idx> at
 * until_ms), from where store_promote_due puts it back on its lane. One
 * that moved on meanwhile is left as it is. No event, no timeline entry.
 * Pipelined. *parked = how many were parked. 0 or STORE_ERR_* (what was
 * not parked stays pending and is reclaimed after the visibility timeout).
 */
int store_park(struct store *s, const char *consumer, const struct store_park *p, size_t n,
    size_t *parked);

/*
 * store_hand_back_carried - shutdown: the entries store_fetch read beyond
 * its max and kept for the next call (never claimed: attempts untouched)
 * go back to their lane the same way; the handle forgets them. *back =
 * how many went back. 0 or STORE_ERR_* (then they stay pending and are
 * reclaimed).
 */
int store_hand_back_carried(struct store *s, const char *consumer, size_t *back);

/* --- asynchronous bounces (DSNs) ------------------------------------------ */

struct store_bounce_in {
	const char *msg_id;
	int rcpt_idx;
	/*
	 * "failed": a recipient delivered, sending, deferred or queued
	 * becomes "failed" (its smtp set to smtp_json, event_json to the
	 * outbox, timeline_json to the timeline, pending and due kept
	 * consistent, and with suppress_reason the address suppressed in the
	 * message's project).
	 * "delayed": only timeline_json is appended.
	 * "complained": the status stays; timeline_json, event_json (the
	 * message.complained event) and the suppression, once per recipient
	 * (a second report changes nothing).
	 */
	const char *action;
	const char *smtp_json;       /* {"code":..,"enhanced":..,"response":..} or NULL */
	const char *event_json;      /* the message.failed (complained: message.complained) event, or NULL */
	/* "failed" of a recipient that was "delivered": this event instead
	 * (message.bounced), or NULL for event_json */
	const char *bounced_event_json;
	int64_t latency_ms;          /* "failed": the recipient's new r<i>:lat (acceptance -> now) */
	const char *timeline_json;
	const char *suppress_reason; /* NULL: no suppression */
	/* with suppress_reason: the recipient and the message's project (the view's), for the
	 * suppression list's copies in the other partitions */
	const char *email;
	const char *project;
	int64_t now_ms;
};

/*
 * store_bounce - apply one DSN to one recipient, atomically (one script).
 * *applied = 1 when something changed, 0 when the recipient was already
 * final in another way (failed, expired, suppressed, canceled, scheduled):
 * nothing changed. STORE_ERR_NOT_FOUND when the message (or that
 * recipient) does not exist any more.
 */
int store_bounce(struct store *s, const struct store_bounce_in *b, int *applied);

/* --- scheduling --------------------------------------------------------- */

/*
 * store_promote_due - move up to max members with score <= now_ms from due
 * to the ready stream of the message's lane (status queued; deferred,
 * scheduled and parked - queued - recipients). Returns how many moved, or STORE_ERR_*;
 * *next_ms = the earliest remaining score, 0 when due is empty.
 */
int store_promote_due(struct store *s, int64_t now_ms, int max, int64_t *next_ms);

/* --- webhooks ----------------------------------------------------------- */

struct store_event {
	char entry_id[48];
	char project[STORE_PROJECT_MAX + 1];  /* the entry's p field; "default" when none */
	char *json;
};
void store_event_free(struct store_event *ev);  /* contents and ev */

/*
 * store_read_events - events for the webhook group (own pending first, then
 * entries idle > min_idle_ms (the visibility timeout) of dead consumers, then new, blocking up to block_ms).
 * Returns the count written to out (malloc'd each) or STORE_ERR_*.
 */
int store_read_events(struct store *s, const char *consumer, int max,
    int block_ms, int64_t min_idle_ms, struct store_event **out);

/*
 * store_read_events_flags - store_read_events with a choice of steps:
 * STORE_EVENTS_OWN reads the consumer's own pending entries first,
 * STORE_EVENTS_RECLAIM then takes over entries idle > min_idle_ms; new
 * entries are read when those gave none. A dispatcher that keeps what it
 * read in memory until it acks it reads its own pending entries only once,
 * at start, and reclaims about once a second. STORE_EVENTS_NO_NEW skips
 * the new ones (so everything returned was pending before). Same returns.
 */
#define STORE_EVENTS_OWN 1
#define STORE_EVENTS_RECLAIM 2
#define STORE_EVENTS_NO_NEW 4
int store_read_events_flags(struct store *s, const char *consumer, int max,
    int block_ms, int64_t min_idle_ms, int flags, struct store_event **out);

/*
 * store_events_touch - reset the idle time of n outbox entries this
 * consumer holds (XCLAIM ... JUSTID), so they are not taken over while it
 * still works on them. 0 or STORE_ERR_*.
 */
int store_events_touch(struct store *s, const char *consumer, const char *const *entry_ids, size_t n);

/* one delivery for store_webhook_settle to put in its endpoint's due set */
struct store_whpark {
	const char *member;    /* "<evt_id>/<endpoint>" */
	const char *body;
	const char *project;   /* the event's; the endpoint must belong to it */
	int attempts;          /* attempts made */
	int64_t first_ms;      /* when the delivery was created (max age) */
	int64_t due_ms;        /* when it is due */
};

/*
 * store_webhook_settle - in one script: park nitems deliveries (each
 * created unless it exists, skipped for an endpoint that is gone or not the
 * item's project's), then XACK nack outbox entries. Deliveries created, or
 * STORE_ERR_*; nothing is written on an error. At most 1000 of each.
 */
int store_webhook_settle(struct store *s, const struct store_whpark *items, size_t nitems,
    const char *const *ack_ids, size_t nack);

/*
 * store_webhook_fanout - one delivery per endpoint id for this event,
 * due at now_ms, and XACK the event, atomically. nep may be 0 (just acks).
 */
int store_webhook_fanout(struct store *s, const struct store_event *ev,
    const char *event_id, const char *const *endpoints, size_t nep, int64_t now_ms);

struct store_whd {
	char *member;     /* "<evt_id>/<endpoint>" */
	char *event_id;
	char *endpoint;
	char *body;
	int attempts;     /* attempts made before this one */
	int64_t first_ms; /* when the delivery was created */
};
void store_whd_free(struct store_whd *w);   /* contents and w */

/*
 * store_webhook_claim - up to max due deliveries of one endpoint (each
 * endpoint has its own due set, so a dead endpoint never delays another),
 * leased until now+lease_ms. Count or STORE_ERR_*.
 */
int store_webhook_claim(struct store *s, const char *endpoint, int64_t now_ms,
    int64_t lease_ms, int max, struct store_whd **out);
/* store_webhook_done - delivered (or given up): remove it. */
int store_webhook_done(struct store *s, const char *member);
/* store_webhook_retry - record a failed attempt and reschedule at next_ms. */
int store_webhook_retry(struct store *s, const char *member, int attempts, int64_t next_ms);
/* store_webhook_next_due - earliest due score of an endpoint's deliveries in ms, 0 when none; <0 error. */
int64_t store_webhook_next_due(struct store *s, const char *endpoint);

/* --- webhook endpoints ---------------------------------------------------- */

struct store_endpoint {
	char *id;           /* "wh_<26>" */
	char *url;
	char *secret;       /* "whsec_<base64>" */
	char **events;      /* event types wanted ("message.delivered", ...); nevents 0 = all */
	size_t nevents;
	int64_t created_ms;
	char *project;      /* owner: gets only this project's events (create: NULL = "default";
	                     * list: "default" for an endpoint stored before projects) */
	/* list only (create: description only; NULL there is none) */
	char *description;      /* "" when none */
	int disabled;           /* 1: its events are kept in its queue, not sent */
	char *disabled_reason;  /* "" when enabled */
	int64_t disabled_ms;
	char *secret_old;       /* a rotation's previous secret, "" when none */
	int64_t old_until_ms;   /* secret_old signs too until then (wall ms) */
	int64_t failing_since_ms;  /* first failure of its current run of failures; 0: none */
};

/* What PATCH /v1/webhooks/{id} changes (store_endpoint_update). */
struct store_endpoint_patch {
	const char *url;            /* NULL: unchanged */
	const char *description;    /* NULL: unchanged */
	int set_events;             /* 1: events/nevents replace the filter (0 entries: every type) */
	const char *const *events;
	size_t nevents;
	int enabled;                /* -1 unchanged, 0 disable (with reason), 1 enable (replay) */
	const char *reason;         /* enabled 0: why (shown as disabled_reason) */
	int64_t now_ms;
	int64_t keep_after_ms;      /* enabled 1: queued deliveries first recorded before this are dropped */
};

/*
 * store_endpoint_update - apply p to endpoint id (owned by project; NULL:
 * any). Enabling a disabled endpoint makes every delivery kept in its
 * queue due now (the replay). STORE_OK, STORE_ERR_NOT_FOUND (none, or
 * another project's), or another STORE_ERR_*.
 */
int store_endpoint_update(struct store *s, const char *id, const char *project,
    const struct store_endpoint_patch *p);

/*
 * store_endpoint_rotate - secret becomes endpoint id's signing secret; the
 * one before signs too until old_until_ms (0: not at all). STORE_OK,
 * STORE_ERR_NOT_FOUND, or another STORE_ERR_*.
 */
int store_endpoint_rotate(struct store *s, const char *id, const char *project, const char *secret,
    int64_t old_until_ms);

/*
 * store_endpoint_failed - an attempt to endpoint failed at now_ms with
 * text: its last failure, the start of its failure run, and when that run
 * has lasted disable_after_ms (> 0) it is disabled with reason. 1 when this
 * call disabled it, 0 when not, or a STORE_ERR_* (< 0).
 */
int store_endpoint_failed(struct store *s, const char *endpoint, int64_t now_ms, const char *text,
    int64_t disable_after_ms, const char *reason);

/* store_endpoint_recovered - endpoint answered 2xx: its failure run is over. STORE_OK or STORE_ERR_*. */
int store_endpoint_recovered(struct store *s, const char *endpoint);

/*
 * One attempt in an endpoint's deliveries log (a stream capped at
 * STORE_WHLOG_MAX entries per endpoint, newest first when listed).
 */
#define STORE_WHLOG_MAX 1000
struct store_whlog {
	char *entry;            /* the log's entry id (the list's cursor); NULL when writing */
	char *endpoint;
	char *event_id;
	char *type;
	int attempt;            /* 1 for the first */
	int64_t status;         /* HTTP status, 0 when there was no answer */
	int64_t duration_ms;
	char *response;         /* the answer's first bytes (webhook_answer_excerpt) */
	char *error;            /* "" on an HTTP answer */
	int64_t next_ms;        /* the retry's due time, 0: none */
	int64_t at_ms;
	char *body;             /* writing only: the event sent (kept for .../retry) */
};

/* store_webhook_log - append n attempts to their endpoints' logs (one script). STORE_OK or STORE_ERR_*. */
int store_webhook_log(struct store *s, const struct store_whlog *items, size_t n);

/*
 * store_webhook_log_list - up to limit attempts of endpoint, newest first,
 * after entry id after (NULL: from the newest). *out (free with
 * store_whlogs_free) holds *n rows, without body. STORE_OK or STORE_ERR_*.
 */
int store_webhook_log_list(struct store *s, const char *endpoint, const char *after, size_t limit,
    struct store_whlog **out, size_t *n);
void store_whlogs_free(struct store_whlog *rows, size_t n);

/*
 * store_webhook_find - the body of event_id for endpoint (its queued
 * delivery's, else the newest logged attempt's) into *body (malloc'd),
 * *attempts the newest logged attempt number, *queued 1 when a delivery
 * for it is queued. STORE_OK, STORE_ERR_NOT_FOUND, or another STORE_ERR_*.
 */
int store_webhook_find(struct store *s, const char *endpoint, const char *event_id, char **body,
    int *attempts, int *queued);

/*
 * store_webhook_prune - drop up to max deliveries of endpoint's queue due
 * and first recorded before cutoff_ms (a disabled endpoint's events past
 * the retention). How many (>= 0), or a STORE_ERR_*.
 */
int store_webhook_prune(struct store *s, const char *endpoint, int64_t cutoff_ms, int max);

/* store_endpoint_create - store a new endpoint (id, url, secret, events given). */
int store_endpoint_create(struct store *s, const struct store_endpoint *ep);
/* store_endpoint_list - every endpoint of every project, oldest first; free with store_endpoints_free. */
int store_endpoint_list(struct store *s, struct store_endpoint **out, size_t *n);
/*
 * store_endpoint_health - an endpoint's backlog (deliveries queued for it,
 * due or waiting for a retry) and its last failed attempt (*fail_ms 0 and
 * fail "" when none was recorded). 0 or STORE_ERR_*.
 */
int store_endpoint_health(struct store *s, const char *id, int64_t *backlog, int64_t *fail_ms,
    char *fail, size_t faillen);
/* store_webhook_note_failure - record endpoint's latest failed attempt ("HTTP 500", a curl error). */
int store_webhook_note_failure(struct store *s, const char *endpoint, int64_t at_ms, const char *text);
/*
 * store_endpoint_delete - remove it and its queued deliveries;
 * STORE_ERR_NOT_FOUND when absent or, with project not NULL, another
 * project's (checked in the same script; NULL: any project).
 */
int store_endpoint_delete(struct store *s, const char *id, const char *project);
void store_endpoints_free(struct store_endpoint *eps, size_t n);

/* --- live events (SSE) ------------------------------------------------------ */

/*
 * store_events_since - up to max outbox events with stream id greater than
 * `after` ("0" = oldest retained, "$" = only new ones), blocking up to
 * block_ms when there are none. Plain XREAD: no consumer group, nothing
 * acknowledged. Events are retained (not deleted at fan-out) and trimmed by
 * store_trim_events. Count or STORE_ERR_*; entry_id is the SSE event id.
 */
int store_events_since(struct store *s, const char *after, int max, int block_ms,
    struct store_event **out);
/*
 * store_events_last_id - the id of the newest outbox event ("0-0" when
 * none) into buf, so a live reader can continue from an explicit id
 * instead of "$" (which would skip events appended between two reads).
 */
int store_events_last_id(struct store *s, char *buf, size_t len);
/*
 * store_trim_events - drop outbox events older than before_ms, but never
 * one the webhook group has not yet read or acknowledged. Returns how many.
 */
int store_trim_events(struct store *s, int64_t before_ms);

/* --- templates (each project has its own; project NULL: "default") ------------ */

/* store_template_put - store {"subject","text","html"} JSON under name; *created 1 when new. */
int store_template_put(struct store *s, const char *project, const char *name, const char *json,
    int64_t now_ms, int *created);
/* store_template_get - malloc'd JSON in *json (with "name","created_at","updated_at" added); STORE_ERR_NOT_FOUND. */
int store_template_get(struct store *s, const char *project, const char *name, char **json);
/* store_template_delete - STORE_ERR_NOT_FOUND when absent. */
int store_template_delete(struct store *s, const char *project, const char *name);
/*
 * Lists are read a page at a time (api_page.h): the items after the key
 * after (NULL or "": from the first), at most limit (1..STORE_PAGE_MAX), in
 * the list's order; *next is a malloc'd copy of the page's last key when
 * more follow, else NULL (free it).
 */
#define STORE_PAGE_MAX 1000

/*
 * store_template_list - a page of the project's templates' JSON, by name
 * (bytewise); one round trip. Free each, the array and *next.
 */
int store_template_list(struct store *s, const char *project, const char *after, size_t limit,
    char ***jsons, size_t *n, char **next);

/* --- suppressions ------------------------------------------------------------ */

struct store_suppression {
	char *email;        /* lower-cased */
	char *reason;       /* "bounced", "manual", ... */
	int64_t created_ms;
};

/*
 * Each project has its own list (project NULL: "default"). The record and
 * bounce scripts suppress into the list of the message's project.
 */
/* store_suppression_check - flags[i] = 1 when emails[i] (lower-cased by the caller) is suppressed. One round trip. */
int store_suppression_check(struct store *s, const char *project, const char *const *emails,
    size_t n, int *flags);
/* store_suppression_add - add or refresh an address. */
int store_suppression_add(struct store *s, const char *project, const char *email,
    const char *reason, int64_t now_ms);
/* store_suppression_delete - STORE_ERR_NOT_FOUND when absent. */
int store_suppression_delete(struct store *s, const char *project, const char *email);
/*
 * store_suppression_list - a page of the project's suppressions (partition
 * 0's list, which every partition's copy equals), by address (bytewise);
 * one round trip (the first on a list without its index builds it: O(n)).
 * Free with store_suppressions_free, and *next.
 */
int store_suppression_list(struct store *s, const char *project, const char *after,
    size_t limit, struct store_suppression **out, size_t *n, char **next);
void store_suppressions_free(struct store_suppression *v, size_t n);

/* --- API keys and rate limits ------------------------------------------------- */

struct store_apikey {
	char *name;
	char *hash_prefix;  /* first 12 hex chars of the SHA-256, for display */
	char *project;      /* the name, for a key written before projects */
	char *scope;        /* "send", "read", "full" or "admin" as stored ("full" before scopes) */
	char *allow;        /* comma list of CIDR networks, "" for none */
	int64_t created_ms;
	int64_t last_used_ms;   /* 0 = never */
};

/* What store_key_create stores besides the hash; every field a valid name/scope/list. */
struct store_key_attrs {
	const char *name;
	const char *project;    /* [A-Za-z0-9_.-]{1,64} */
	const char *scope;      /* "send", "read", "full" or "admin" (checked by the caller) */
	const char *allow;      /* normalized comma list of CIDR networks, "" for none */
};

/* store_key_create - store a key by the hex SHA-256 of its secret; STORE_ERR_CONFLICT when the name exists. */
int store_key_create(struct store *s, const struct store_key_attrs *k, const char *hash_hex,
    int64_t now_ms);
/* store_key_list - every key (never the secret: it is not stored); free with store_apikeys_free. */
int store_key_list(struct store *s, struct store_apikey **out, size_t *n);
/* store_key_revoke - delete the key by name; STORE_ERR_NOT_FOUND. */
int store_key_revoke(struct store *s, const char *name);
void store_apikeys_free(struct store_apikey *v, size_t n);

/* store_auth's answer: malloc'd strings, freed with store_auth_release. */
struct store_auth_result {
	char *name;         /* the key's name (the tenant) */
	char *project;      /* its project (the name for a key written before projects) */
	char *scope;        /* as stored ("full" for a key written before scopes) */
	char *allow;        /* comma list of CIDR networks, "" for none */
	int charged;        /* 1: last_used and the bucket were charged, the numbers below are valid */
	int64_t retry_after_ms;
	int64_t tokens_left;    /* whole tokens left in the bucket after this charge */
	int64_t full_ms;        /* ms until the bucket is full again */
};

/*
 * store_auth - one round trip: find the key whose SHA-256 hex is hash_hex;
 * STORE_ERR_NOT_FOUND when none. Else out is filled and, when charge is 1
 * or the key has no allowlist, last_used is refreshed (at most once a
 * minute) and the project's token bucket rl:<project> (rate tokens/s,
 * burst) is charged one token (out->charged 1): out->retry_after_ms > 0
 * when it is empty (then the request must get 429). With charge 0 a key
 * with an allowlist is only read (out->charged 0): the caller checks the
 * address and then calls again with charge 1. rate <= 0: no limit.
 */
int store_auth(struct store *s, const char *hash_hex, int64_t now_ms, double rate,
    double burst, int charge, struct store_auth_result *out);
void store_auth_release(struct store_auth_result *r);
/* store_rate_limit's answer, the same three numbers as store_auth's */
struct store_rate {
	int64_t retry_after_ms; /* 0: a token was taken; else the ms until one is there (429) */
	int64_t tokens_left;    /* whole tokens left after this request */
	int64_t full_ms;        /* ms until the bucket is full again */
};
/*
 * store_rate_limit - the same token bucket for a project that has no stored
 * key in hand (env keys: "default"), one round trip. rate <= 0: no limit,
 * no round trip, *out all 0.
 */
int store_rate_limit(struct store *s, const char *project, int64_t now_ms, double rate,
    double burst, struct store_rate *out);

/* --- shared shaping (store_shaping.c) ------------------------------------------
 * TXMAIL_DOMAIN_RATE slots and destination suspensions kept in Redis, so
 * that every worker process shapes as one (server/shaper.c decides what to
 * ask; this only books and lists). Times are Redis's clock (TIME in the
 * scripts): each reply carries Redis's now, and the caller maps what it
 * got onto its own clock, so workers whose clocks disagree still agree.
 */

#define STORE_SHAPE_KEY_MAX 255      /* a domain or destination, in bytes */
#define STORE_SHAPE_BATCH_MAX 256    /* domains per store_shape_reserve */
#define STORE_SHAPE_SLOTS_MAX 100000 /* slots per domain per call */
#define STORE_SHAPE_OPS_MAX 256      /* changes per store_shape_suspensions (and queued per shaper) */

struct store_slot_req {
	const char *domain;     /* 1..STORE_SHAPE_KEY_MAX bytes; case does not matter */
	int64_t interval_us;    /* between two slots, >= 1 */
	int k;                  /* slots wanted, 1..STORE_SHAPE_SLOTS_MAX */
	int64_t start_us;       /* out: the first of the k slots (Redis clock, us) */
};

/*
 * store_shape_reserve - book r[i].k consecutive sending slots for each of
 * r[0..n) (0 < n <= STORE_SHAPE_BATCH_MAX) in one script call
 * (shape_rate.lua): slot j of r[i] is r[i].start_us + j * interval_us,
 * and no other call ever gets an overlapping slot of that domain
 * (shape:rate:<domain> holds the next free one). *now_us is Redis's clock
 * when the script ran. 0, STORE_ERR_PROTO (bad arguments or reply),
 * STORE_ERR_UNAVAILABLE, STORE_ERR_NOMEM; on error nothing in r is set.
 */
int store_shape_reserve(struct store *s, struct store_slot_req *r, size_t n, int64_t *now_us);

/* A change to the shared suspensions: remaining_ms > 0 suspends dest that long, 0 clears it. */
struct store_susp_op {
	const char *dest;       /* 1..STORE_SHAPE_KEY_MAX bytes, as the shapers name it */
	int64_t remaining_ms;
	int64_t backoff_ms;     /* the length of this suspension (the next one doubles it) */
};

/* A suspension running now. */
struct store_susp {
	char dest[STORE_SHAPE_KEY_MAX + 1];
	int64_t remaining_ms;   /* > 0 */
	int64_t backoff_ms;
};

/*
 * store_shape_suspensions - one script call (shape_susp.lua): apply
 * ops[0..nops) (nops <= STORE_SHAPE_OPS_MAX) to the shared set
 * (shape:susp), drop what is over, and list every suspension still
 * running into *out (malloc'd, *nout of them, at most cap; caller frees;
 * NULL when none). A new destination is not added when cap are already
 * kept; *full is then 1 (also when the set is at cap). 0 or STORE_ERR_*
 * (then *out is NULL and nothing is to be freed).
 */
int store_shape_suspensions(struct store *s, const struct store_susp_op *ops, size_t nops,
    size_t cap, struct store_susp **out, size_t *nout, int *full);

/* A destination at its in-flight cap, published for new mail (store_saturate). */
struct store_sat {
	const char *domain;     /* a recipient domain, 1..STORE_SHAPE_KEY_MAX bytes; case does not matter */
	int64_t until_ms;       /* wall clock: new mail for it waits in due until then */
	int64_t next_ms;        /* wall clock: its next slot; out: the later of it and the stored one */
	int64_t step_ms;        /* between two slots, >= 1 */
	int64_t max_ms;         /* no slot further than this from the accept (spread over its second half) */
	int64_t min_ms;         /* nor sooner */
};

#define STORE_SAT_MAX 10000   /* domains kept in sat (the feeder's table holds 20,000 destinations) */

/*
 * store_saturate - one script call (sat.lua): publish v[0..n) (n <=
 * STORE_SHAPE_BATCH_MAX) in sat, where enqueue.lua finds them: a new
 * recipient of such a domain waits in due at the domain's next slot
 * instead of going into the ready stream (where every delivery behind it
 * would wait while a feeder reads it, only to park it). v[i].next_ms comes
 * back as the slot after those enqueue and claim have given out while the
 * field was live (until after now); until_ms = now clears a domain. At most
 * STORE_SAT_MAX domains are kept (a new one is not added beyond them). 0 or
 * STORE_ERR_* (then v is unchanged).
 */
int store_saturate(struct store *s, struct store_sat *v, size_t n);

/* --- metrics ------------------------------------------------------------------ */

#define STORE_WH_BACKLOG_TOP 20     /* endpoints with a backlog gauge of their own; the rest summed */
#define STORE_WH_ENDPOINTS_MAX 1000  /* endpoints looked at per scrape */

struct store_queue_stats {
	/* by enum store_lane */
	int64_t ready[2];       /* due now and not claimed by any worker (stream length - claimed) */
	int64_t claimed[2];     /* XPENDING workers: claimed by a worker, not yet recorded */
	int64_t oldest_ms[2];   /* age of the lane's oldest entry, claimed or not (Redis clock); 0 when empty */
	int64_t due;            /* ZCARD due: retries and scheduled sends waiting for their time */
	int64_t events;         /* XLEN events: outbox events retained (SSE replay, webhook fan-out) */
	/* webhook deliveries waiting per endpoint (ZCARD whq:<id>), largest first */
	size_t nwh;
	struct {
		char endpoint[40];  /* "wh_<26>" or "default" (TXMAIL_WEBHOOK_URL) */
		int64_t n;
	} wh[STORE_WH_BACKLOG_TOP];
	int64_t wh_other;       /* the endpoints past the top ones, summed */
	int wh_has_other;       /* there were more endpoints than STORE_WH_BACKLOG_TOP */
};
/*
 * store_queue_stats - the queue gauges: one pipelined round trip for the
 * lanes, due, events, the Redis clock and the endpoint list, a second for
 * the endpoints' backlogs; 0 or STORE_ERR_*.
 */
int store_queue_stats(struct store *s, struct store_queue_stats *out);

#endif
