/*
 * store_internal.h - what the store files (server/store*.c) share behind
 * store.h: the key names, the script ids, struct store (one connection owned
 * by one thread), the argument vector, the pipelined batch and the reply
 * helpers. Included by server/store*.c only: the rest of the server reaches
 * Redis through store.h and never sees hiredis.
 *
 * Names: st_* is private to the store files (store.h's store_* is the public
 * interface). A helper here must stay policy-free: it type-checks replies,
 * builds commands and runs them; what a reply means is the caller's file.
 * The script texts (store_lua.h) are included by store_conn.c alone, which
 * holds the script table; everyone else names a script by its enum st_script.
 *
 * Which file owns what (docs/store.md, "Where each kind of change goes"):
 *   store_conn.c      connection, AUTH, script loading, the eval/reply helpers,
 *                     open/close/init/ping
 *   store_messages.c  accept (enqueue), read (get_message), cancel, bounce
 *   store_delivery.c  fetch, claim, reclaim, heartbeat, hand back, record,
 *                     promote (scheduling), queue stats
 *   store_webhooks.c  the events stream for webhooks, fan-out, endpoint queues,
 *                     endpoints
 *   store_events.c    live events (SSE) and event trimming
 *   store_admin.c     templates, suppressions, API keys and rate limits
 *   store_shaping.c   shared delivery shaping: domain rate slots, suspensions
 *   store_sentinel.c  Sentinel's pure half: the sentinels' order, the checks of
 *                     their answer and of ROLE (the asking is store_conn.c's)
 *   store_cluster_map.c, store_cluster.c  the Redis Cluster client
 *                     (store_cluster.h; the handle's router on redis+cluster://)
 */
#ifndef SERVER_STORE_INTERNAL_H
#define SERVER_STORE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

#include "store.h"

/*
 * Partitions (TXMAIL_PARTITIONS, docs/store.md "Partitions"): partition k's
 * keys carry the hash tag txm{k}. ST_PREFIX is partition 0's, which also
 * holds the project-wide data (API keys, templates, endpoints, the
 * suppression lists read by the API, shaping) and everything written
 * before partitions: with one partition the layout is the one before.
 * A message's partition is in its id (st_id_part); its keys, the ready
 * streams, due, events, sat and a copy of each suppression list are per
 * partition (s->pk[k]).
 */
#define ST_PREFIX "txm{0}:"
#define ST_MAX_PARTS 64          /* TXMAIL_PARTITIONS' top; ids name up to p63 */
#define ST_PK_MAX 48             /* a partition's fixed key names (longest: "txm{63}:ready:high:projects") */
enum st_pk {
	PK_PREFIX,               /* "txm{k}:" */
	PK_READY,
	PK_READY_HIGH,
	PK_READY_PROJECTS,
	PK_READY_HIGH_PROJECTS,
	PK_DUE,
	PK_SAT,
	PK_EVENTS,
	PK_SUPP,                 /* the project "default"'s suppressions (a copy in k > 0) */
	PK_ABANDONED,
	PK_SUPP_SYNCED,          /* k > 0: its copies of partition 0's suppression lists are made */
	PK_COUNT
};
/*
 * Partition k's keys (s->pk[k], "txm{k}:" + the name): "ready" (the normal
 * lane), "ready:high" (the high lane); a project P other than "default"
 * has its own ready stream per lane, "ready:p:" P and "ready:high:p:" P
 * (st_stream_key_in), and these sets name the projects that have (had)
 * one, per lane: "ready:projects", "ready:high:projects". Then "due",
 * "sat" (saturated destinations: domain -> "until next step max min
 * count", sat.lua), "events" (the outbox), "supp" (the project "default"'s
 * suppressions; a project P's: "prj:" P ":supp"), "abandoned:" + message
 * id (an accept settled as not stored), "msg:" + id (st_msg_key), "idem:"
 * + key. The rest is partition 0's alone:
 */
#define ST_K_WHQ ST_PREFIX "whq:"      /* + endpoint id */
#define ST_K_WHEPS ST_PREFIX "wheps"
#define ST_K_KEYS ST_PREFIX "keys"
#define ST_K_SHAPE_RATE ST_PREFIX "shape:rate:"   /* + lower-cased domain */
#define ST_K_SHAPE_SUSP ST_PREFIX "shape:susp"
#define ST_K_FENCE ST_PREFIX "fence"   /* store_wait_replicas' write: "1", expiring */
#define ST_G_WORKERS "workers"
#define ST_G_WEBHOOKS "webhooks"

#define ST_CONNECT_TIMEOUT_MS 1000
#define ST_CMD_TIMEOUT_MS 5000    /* the default of TXMAIL_REDIS_TIMEOUT (struct store.cmd_timeout_ms) */
#define ST_RECONNECT_MS 200
#define ST_MAX_RCPTS 1000        /* per message; the API allows 50 */
#define ST_MAX_BATCH 1000        /* entries per fetch/reclaim/claim call */
/* entries (outcomes) per claim (record) script call: a call's fixed Lua
 * cost is paid once for all of them, while the cap keeps one call from
 * holding Redis for a whole fetch of ST_MAX_BATCH (other clients wait
 * for the end of a script, not only for the end of a pipeline) */
#define ST_SCRIPT_BATCH 64
#define ST_MAX_TIMELINE 5000     /* timeline entries returned by get_message */
#define ST_MAX_ID 63             /* message id length (msg_id[64]) */
#define ST_MAX_ENTRY_ID 47       /* stream entry id length (entry_id[48]) */
#define ST_MAX_STREAMS 1024      /* ready streams a handle knows, both lanes (s->streams) */
#define ST_READ_STREAMS 256      /* streams of one lane in one XREADGROUP (rotating beyond) */
#define ST_READ_AHEAD 4000       /* entries one read may give at most (COUNT x streams) */
#define ST_RECLAIM_STREAMS 32    /* streams one store_reclaim looks at (rotating beyond) */
#define ST_STREAMS_REFRESH_MS 1000   /* how often the project sets are read again */
#define ST_EVENT_IDLE_MS 60000   /* webhook events of dead consumers */
#define ST_KEY_MAX 160
#define ST_NUMS 16
#define ST_SCRATCH_KEEP ((size_t)64 * 1024)   /* st_do keeps a buffer this large */
#define ST_MAX_EMAIL 320         /* a suppressed address */
#define ST_MAX_LIST 100000       /* templates, suppressions, keys returned by a list */

enum st_script {
	SC_ENQUEUE,
	SC_CLAIM,
	SC_RECORD,
	SC_PROMOTE,
	SC_WH_FANOUT,
	SC_WH_SETTLE,
	SC_WH_CLAIM,
	SC_WH_DONE,
	SC_WH_RETRY,
	SC_VIEW,
	SC_CANCEL,
	SC_EP_CREATE,
	SC_EP_LIST,
	SC_EP_DELETE,
	SC_EP_UPDATE,
	SC_EP_ROTATE,
	SC_EP_FAIL,
	SC_WH_LOG,
	SC_WH_FIND,
	SC_WH_PRUNE,
	SC_TRIM,
	SC_SEARCH,
	SC_IX_SWEEP,
	SC_IX_BACKFILL,
	SC_TPL_PUT,
	SC_TPL_DEL,
	SC_TPL_LIST,
	SC_SUPP_PAGE,
	SC_KEY_CREATE,
	SC_KEY_REVOKE,
	SC_KEY_LIST,
	SC_AUTH,
	SC_RATELIMIT,
	SC_BOUNCE,
	SC_HAND_BACK,
	SC_ABANDON,
	SC_SHAPE_RATE,
	SC_SHAPE_SUSP,
	SC_SAT,
	SC_COUNT
};

struct store {
	struct redis_addr addr;
	unsigned nparts;            /* addr.partitions, 1..ST_MAX_PARTS */
	char pk[ST_MAX_PARTS][PK_COUNT][ST_PK_MAX];   /* each partition's fixed key names */
	char desc[300];             /* host:port or socket path (a sentinel URL: the primary's), for logs */
	redisContext *c;
	int timeout_ms;             /* current socket timeout of c */
	int cmd_timeout_ms;         /* a command's timeout (addr.timeout_ms, else ST_CMD_TIMEOUT_MS) */
	int64_t last_try_ms;        /* monotonic time of the last connect attempt */
	int down;                   /* an outage was logged; cleared on connect */
	int auth_failed;            /* the last connect attempt was refused AUTH */
	int wait_short;             /* the last WAIT came up short (logged once, until one succeeds) */
	/* redis+sentinel:// (store_watch.c): set under its lock, with c */
	unsigned watch_gen;         /* st_watch_gen() when c was connected */
	unsigned dial_gen;          /* st_watch_gen() when the connect under way began */
	int watched;                /* registered with st_watch_add */
	size_t sentinel_first;      /* redis+sentinel://: the sentinel to ask first (the last that answered) */
	char why[256];              /* why the last connect attempt failed, for store_init */
	int64_t retention_ms;       /* a finished message's summary and timeline stay this long */
	char sha[SC_COUNT][41];
	char event_cursor[ST_MAX_PARTS][48];   /* XAUTOCLAIM cursor of each partition's events stream */
	unsigned event_rr;          /* the partition the next events read starts at (max < P) */
	/*
	 * The ready streams this handle reads (store_fetch): [0] the normal
	 * lane's, [1] the high lane's (the project "default"'s, which also
	 * hold entries an earlier release wrote for any project), then one
	 * per (lane, project) named by the project sets, appended as they
	 * appear (never removed: an index stays valid for st_pend.stream).
	 */
	struct st_stream *streams;
	size_t nstreams;
	int64_t streams_ms;         /* monotonic time the sets were last read; 0: never */
	int streams_warned;         /* "not read" logged (a set names more than ST_MAX_STREAMS) */
	size_t read_from[2];        /* per lane: where the next read's window starts */
	size_t rr[2];               /* per lane: the stream the next round robin starts at */
	size_t nactive[2];          /* per lane: streams that had entries at the last fetch */
	size_t reclaim_at;          /* the stream the next store_reclaim starts at */
	/* entries read by store_fetch beyond its max, claimed by the next call */
	struct st_pend *carry;
	size_t ncarry;
	uint64_t claim_parked;      /* entries claim.lua parked (saturated destination), for store_take_parked */
	/* store_fetch's lane shares (TXMAIL_LANE_WEIGHTS): weights and smooth round robin credits */
	int lane_w[2];
	int64_t lane_credit[2];
	/* st_do's formatted command, kept for the next one when at most ST_SCRATCH_KEEP */
	char *scratch;
	size_t scratch_cap;
	/*
	 * redis+cluster:// (store_cluster.c): the router, one connection per
	 * node; c stays NULL. Every command goes to its key's slot (st_cmd.slot).
	 */
	struct st_cluster *cl;
	int cl_ready;               /* the scripts' shas are known and the groups created */
	unsigned block_rr;          /* the partition the next blocking read waits on */
};

/* A formatted command, kept so it can be sent again after NOSCRIPT. */
struct st_cmd {
	char *buf;
	size_t len;
	unsigned slot;      /* the Cluster slot it goes to (st_format: st_args_slot) */
};

/* Argument vector under construction; numbers live in num[]. */
struct st_args {
	const char **v;
	size_t *l;
	int n;
	int cap;
	char num[ST_NUMS][24];
	int nnum;
	int err;
	int route;      /* st_route: 1 + the partition a command without a key goes to; 0: from its key */
};

/*
 * st_batch - commands built one at a time in a, formatted into cmds[] and
 * sent pipelined by st_batch_run, their replies in rep[] (in order).
 */
struct st_batch {
	struct st_cmd *cmds;
	redisReply **rep;
	size_t n;            /* commands formatted so far */
	struct st_args a;    /* the one being built */
};

/* One ready stream: a lane's, of one project. */
struct st_stream {
	unsigned part;
	enum store_lane lane;
	char project[STORE_PROJECT_MAX + 1];
	char key[ST_KEY_MAX];
	char cursor[48];            /* XAUTOCLAIM cursor */
};

/* An entry seen by fetch/reclaim, before its claim. */
struct st_pend {
	char entry_id[48];
	char msg_id[64];
	int idx;
	enum store_lane lane;
	size_t stream;   /* s->streams[stream], whose lane is lane */
	int claim;       /* 1: claim it, 0: just ack+del (malformed) */
	int carried;     /* kept by an earlier fetch: claim only if still ours */
	uint64_t order;  /* store_fetch's round robin place */
};

/* --- in store_conn.c: arguments, replies, connection, running ------------ */

/* st_args_init - room for cap arguments (0 < cap <= 1e6); 0 or STORE_ERR_NOMEM (a empty). */
int st_args_init(struct st_args *a, size_t cap);

/* st_args_release - free the vector (not the strings it points to); a may be zeroed or released. */
void st_args_release(struct st_args *a);

/* st_add - append p[0..len) (NULL: empty); a full vector sets a->err, reported by st_format. */
void st_add(struct st_args *a, const char *p, size_t len);

/* st_adds - append a C string (NULL: empty). */
void st_adds(struct st_args *a, const char *p);

/* st_addi - append a decimal integer, kept in a->num (at most ST_NUMS per vector). */
void st_addi(struct st_args *a, int64_t v);

/* st_eval - start "EVALSHA <sha of sc> <nkeys>" in a; keys and arguments follow. */
void st_eval(struct st_args *a, const struct store *s, enum st_script sc, int nkeys);

/* st_format - turn the vector into a wire command (its slot: st_args_slot); resets a for reuse. */
int st_format(struct st_args *a, struct st_cmd *cmd);

/*
 * st_route - the command being built in a has no key (WAIT, PING, TIME,
 * SCRIPT): on a Cluster it goes to partition p's primary.
 */
void st_route(struct st_args *a, unsigned p);

/*
 * st_args_slot - the Cluster slot of the command in a: the st_route'd
 * partition's, else that of its first argument starting with "txm{" (every
 * key of the store; in every command the store sends its keys come before
 * any argument a client chose), else partition 0's.
 */
unsigned st_args_slot(const struct st_args *a);

/*
 * st_reply_concat - one reply of the n array replies rep[] (consumed: each
 * freed or moved, set NULL): the first error among them as it is, else an
 * array of all their elements in order (nil replies give none), nil when
 * there are none. NULL when out of memory (rep[] freed all the same). A
 * Cluster's multi-key read, one command per slot, read as one.
 */
redisReply *st_reply_concat(redisReply **rep, size_t n);

/* st_part_slot - partition p's slot (that of "txm{p}"). */
unsigned st_part_slot(unsigned p);

/* A blocking read's wait on a Cluster with several partitions: one partition's streams, this long at most. */
#define ST_CLUSTER_BLOCK_MS 100

/*
 * st_block_slice - how long a Cluster read blocks on one of nslots slots
 * (partitions) for a caller that would wait block_ms (> 0): at most
 * ST_CLUSTER_BLOCK_MS with several, half the command timeout (but not less)
 * with one - the connection keeps the command timeout.
 */
int st_block_slice(const struct store *s, size_t nslots, int block_ms);

/* st_is_str - 1 for a string or status reply with a body. */
int st_is_str(const redisReply *r);

/* st_is_array - 1 for an array reply of at least min elements. */
int st_is_array(const redisReply *r, size_t min);

/* st_is_error - 1 for an error reply starting with prefix (e.g. "NOGROUP"). */
int st_is_error(const redisReply *r, const char *prefix);

/* st_dupn - a NUL-terminated malloc copy of p[0..len), or NULL. */
char *st_dupn(const char *p, size_t len);

/* st_dup - a malloc copy of a string reply (st_is_str checked by the caller), or NULL. */
char *st_dup(const redisReply *r);

/* st_parse_i64 - parse a whole decimal integer of len bytes; 0 or -1. */
int st_parse_i64(const char *p, size_t len, int64_t *out);

/* st_int - an integer reply, or a string holding a decimal integer. */
int st_int(const redisReply *r, int64_t *out);

/* st_score - a zset score (may be printed as a float) in ms. */
int st_score(const redisReply *r, int64_t *out);

/*
 * st_bad - log an unexpected reply; returns STORE_ERR_PROTO, or
 * STORE_ERR_UNAVAILABLE for errors that mean "Redis cannot serve now"
 * (loading, out of memory, read-only replica, busy script).
 */
int st_bad(const char *op, const redisReply *r);

/*
 * st_i64 - v in decimal into buf (NUL-terminated); returns its length.
 * By hand, not snprintf: several numbers go into every accept's command.
 */
#define ST_I64_LEN 24
size_t st_i64(char buf[ST_I64_LEN], int64_t v);

/*
 * st_rfield - buf = "r<idx>:<name>", a recipient's field in the message
 * hash (idx < ST_MAX_RCPTS, so it always fits ST_RFIELD_MAX; a longer
 * name is cut). Built in C for the scripts, which concatenate nothing.
 */
#define ST_RFIELD_MAX 24
void st_rfield(char buf[ST_RFIELD_MAX], int idx, const char *name);
/* st_key - buf = a b c (c may be NULL); 0, or -1 when it does not fit in len. */
int st_key(char *buf, size_t len, const char *a, const char *b, const char *c);

/* st_set_timeout - socket timeout of the connection to ms; 0 or STORE_ERR_UNAVAILABLE (dropped). */
int st_set_timeout(struct store *s, int ms);

/* st_simple - one command without NOSCRIPT handling; *out on success. */
int st_simple(struct store *s, int argc, const char **argv, redisReply **out);

/* st_create_groups - create the consumer groups (BUSYGROUP is fine); 0 or STORE_ERR_*. */
int st_create_groups(struct store *s);

/* st_connect - ensure a connection; fails fast while Redis is down. */
int st_connect(struct store *s);

/*
 * st_run - send n commands pipelined and read n replies into rep[] (each
 * freed by the caller). Commands answered NOSCRIPT are sent again once
 * after reloading the scripts. On I/O error every reply is freed.
 */
int st_run(struct store *s, const struct st_cmd *cmds, size_t n, redisReply **rep);

/*
 * st_run_partial - st_run for a read or step of every partition: on a
 * Cluster a command whose node is down (or lost with its connection)
 * leaves its reply NULL, and the call fails only when all did, so the
 * partitions of the other primaries go on during a failover; elsewhere
 * st_run.
 */
int st_run_partial(struct store *s, const struct st_cmd *cmds, size_t n, redisReply **rep);

/* st_batch_release - free commands, replies and the vector; b is zeroed. */
void st_batch_release(struct st_batch *b);

/*
 * st_batch_init - room for max commands of up to cap arguments each (max >
 * 0). 0 or STORE_ERR_NOMEM; b can be released either way.
 */
int st_batch_init(struct st_batch *b, size_t max, size_t cap);

/* st_batch_add - format the command built in b->a as the next one (the caller keeps n < max). */
int st_batch_add(struct st_batch *b);

/* st_batch_run - send the n commands pipelined, replies to b->rep (see st_run). */
int st_batch_run(struct store *s, struct st_batch *b);

/* st_do - connect, format and run the command in a; frees nothing of a. */
int st_do(struct store *s, struct st_args *a, redisReply **out);

/*
 * st_eval_begin - connect, size a for cap arguments and start an EVALSHA
 * of script sc with nkeys keys; the caller adds the keys and arguments. On
 * failure a holds no memory.
 */
int st_eval_begin(struct store *s, struct st_args *a, size_t cap, enum st_script sc, int nkeys);

/*
 * st_eval_int - run the script call built in a, which must answer an
 * integer (else st_bad(what)), and release a. The integer goes to *out
 * when out is not NULL; an answer of 0 returns zero_rc (0: no error).
 */
int st_eval_int(struct store *s, struct st_args *a, const char *what, int zero_rc,
    long long *out);

/*
 * --- reply tables ----------------------------------------------------------
 * A reply row (an array reply, or ncols consecutive elements of one) is read
 * into a C struct by a table of columns: what each element must be and where
 * it goes. One reader serves every list the store returns (keys, templates,
 * suppressions, endpoints, webhook and delivery claims): a new field in a
 * row is a new column, never a new parser.
 */
enum st_col_kind {
	ST_COL_STR,     /* string: malloc'd char * at off (at most maxlen bytes when maxlen) */
	ST_COL_BYTES,   /* the same, with its length (size_t) at off2 */
	ST_COL_I64,     /* integer, or a string holding one: int64_t at off */
	ST_COL_INT,     /* the same in 0..INT32_MAX: int at off */
	ST_COL_STRV,    /* array of at most maxlen strings: char ** at off, size_t count at off2 */
	ST_COL_STAMPED, /* "<ms>:<text>" or plain "<text>": char * text at off, int64_t ms at off2 */
};

struct st_col {
	enum st_col_kind kind;
	int optional;       /* nil, missing or malformed leaves NULL / 0 instead of failing the row */
	size_t off, off2;   /* offsetof() the value, and of its length, count or stamp */
	size_t maxlen;
	const char *name;   /* st_field_read: the hash field this column reads (else unused) */
};

struct st_table {
	const char *what;           /* names the reply in st_bad's log line */
	const struct st_col *cols;
	size_t ncols;
	size_t elsize;              /* sizeof the struct one row fills */
	int nested;                 /* 1: each row is an array reply; 0: runs of ncols elements */
	size_t max;                 /* a list of more rows is malformed */
};

/*
 * st_row_read - fill the zeroed struct row from el[0..nel) (nel >= ncols) by
 * t's columns. 0, or st_bad(t->what)/STORE_ERR_NOMEM; on failure row may
 * hold part of its allocations: st_row_clear frees them.
 */
int st_row_read(const struct st_table *t, const redisReply *const *el, size_t nel, void *row);

/* st_row_clear - free what t's columns allocated in row (not row itself). */
void st_row_clear(const struct st_table *t, void *row);

/*
 * st_rows_read - the list reply r as a calloc'd array of *n structs (NULL
 * when empty). 0, or an error with nothing left allocated.
 */
int st_rows_read(const struct st_table *t, const redisReply *r, void **rows, size_t *n);

/* st_rows_free - st_row_clear every row, then free the array. */
void st_rows_free(const struct st_table *t, void *rows, size_t n);

/*
 * st_field_read - a hash field (HGETALL-style: name f of len bytes, value
 * val) into row by the column of that name; 0 when no column has it. A
 * string column replaces what it held.
 */
int st_field_read(const struct st_table *t, const char *f, size_t len, const redisReply *val,
    void *row);

/*
 * st_eval_rows - run the script call built in a (st_eval_begin), read its
 * answer with st_rows_read and release a. 0 or STORE_ERR_*.
 */
int st_eval_rows(struct store *s, struct st_args *a, const struct st_table *t, void **rows,
    size_t *n);

/* st_id_ok - 1 for a usable message id: 1..ST_MAX_ID bytes, no "/". */
int st_id_ok(const char *id);

/*
 * st_id_part - the partition a message id names: "msg_" + 26 characters +
 * "p<k>" (k 1..ST_MAX_PARTS - 1, no leading zero) is partition k; any other
 * id (every id before partitions) is partition 0.
 */
unsigned st_id_part(const char *id);

/* st_pk - partition p's fixed key k (p < ST_MAX_PARTS). */
#define st_pk(s, p, k) ((const char *)(s)->pk[(p)][(k)])

/* st_msg_key - buf = "txm{p}:msg:<id><suffix>" (suffix may be NULL), p from the id; 0 or -1. */
int st_msg_key(const struct store *s, char *buf, size_t len, const char *id, const char *suffix);

/* st_field_is - 1 when the string reply f is exactly name. */
int st_field_is(const redisReply *f, const char *name);

/*
 * st_project_prefix - the key prefix of a project's own data (templates,
 * suppressions): ST_PREFIX for "default" (NULL and "" mean "default": data
 * written before projects keeps its keys), else ST_PREFIX "prj:<project>:".
 * -1 when project is not [A-Za-z0-9_.-]{1,STORE_PROJECT_MAX} or buf is short.
 * lib/project.lua is the same rule for the scripts.
 */
int st_project_prefix(char *buf, size_t len, const char *project);

/* st_project_prefix_in - st_project_prefix in partition p ("txm{p}:..."). */
int st_project_prefix_in(const struct store *s, unsigned p, char *buf, size_t len,
    const char *project);

/*
 * st_content_keep_ms - how long a finished message's content stays
 * (addr.content_keep_ms, TXMAIL_CONTENT_RETENTION; 0 = deleted at once),
 * never longer than the message itself (retention_ms). The content_ms
 * argument of every script that can finish a message (lib/content.lua).
 */
int64_t st_content_keep_ms(const struct store *s);

/* st_project_name - project, or "default" for NULL and "" (data from before projects). */
const char *st_project_name(const char *project);

/*
 * st_stream_key_in - partition p's ready stream of (lane, project): "ready"
 * or "ready:high" for "default" (NULL, ""), else that ":p:" project.
 * 0, or -1 when project is not a valid name or buf is short.
 */
int st_stream_key_in(const struct store *s, unsigned p, char *buf, size_t len,
    enum store_lane lane, const char *project);

/*
 * st_wait_parts - store_wait_replicas for writes to the partitions only[]
 * marks (only[p] != 0, p < nparts; NULL: every node the handle sent to):
 * on a Cluster the fence and WAIT go to those partitions' nodes alone, so
 * an accept waits for the replicas of the message's partition, not of
 * partition 0's key check. Elsewhere the same as store_wait_replicas.
 */
int st_wait_parts(struct store *s, const unsigned char *only);

/* --- in store_admin.c: the suppression lists' copies ------------------------ */

/*
 * st_supp_write - set (val "<ms>:<reason>") or delete (val NULL) email in
 * project's suppression list in every partition but skip (-1: all), one
 * pipelined round trip, partition 0's first; *first (may be NULL) = the
 * integer its command answered. 0 or STORE_ERR_*.
 */
int st_supp_write(struct store *s, int skip, const char *project, const char *email,
    const char *val, long long *first);

/*
 * st_supp_spread - a suppression a script wrote into partition part's
 * copy (record, bounce), written to every other partition's (email
 * lower-cased here as the scripts do; value "<now_ms>:<reason>"). A
 * failure is logged, not returned: the outcome is recorded already.
 */
void st_supp_spread(struct store *s, unsigned part, const char *project, const char *email,
    const char *reason, int64_t now_ms);

/*
 * st_supp_sync - once per partition k > 0 (its PK_SUPP_SYNCED mark): copy
 * every suppression list of partition 0 into k (TXMAIL_PARTITIONS raised:
 * the new partitions' enqueues must see the lists). 0 or STORE_ERR_*.
 */
int st_supp_sync(struct store *s);

/* --- in store_delivery.c: the ready streams -------------------------------- */

/*
 * st_streams_refresh - make sure s->streams holds the two default streams
 * and, at most every ST_STREAMS_REFRESH_MS (force: now), the projects of
 * the sets. 0 or STORE_ERR_* (what was known stays usable).
 */
int st_streams_refresh(struct store *s, int force);

/* --- in store_delivery.c: stream reading, also used by store_webhooks.c and
 * store_events.c ------------------------------------------------------------ */

/* st_entry - a stream entry [id, [field, value, ...]]; 1: skip (nil). */
int st_entry(const redisReply *e, const redisReply **id, const redisReply **fields);

/* st_entry_field - the string value of field name in an entry's [field, value, ...], or NULL. */
const redisReply *st_entry_field(const redisReply *fields, const char *name);

/* --- in store_webhooks.c: also used by store_events.c --------------------- */



/*
 * st_event_project - ev->project from an outbox entry's fields: its "p"
 * (an event appended before projects has none: "default"; one too long is
 * cut, so it matches no project).
 */
void st_event_project(struct store_event *ev, const redisReply *fields);

/* st_block_timeout - the socket timeout for a read blocking block_ms. */
int st_block_timeout(int block_ms);

/*
 * st_xread - one XREADGROUP over nkeys (1 to 2 x ST_READ_STREAMS) streams, COUNT max each;
 * entries[k] points into *reply (the entries array of keys[k]) or is NULL
 * when that stream gave nothing. Caller frees *reply.
 */
int st_xread(struct store *s, const char *const *keys, size_t nkeys, const char *group,
    const char *consumer, int max, int block_ms, const char *from, redisReply **reply,
    const redisReply **entries);

/*
 * st_xtouch - renew the lease of entries consumer holds on stream key
 * (XCLAIM key group consumer 0 <ids> JUSTID: the idle time back to 0, the
 * owner unchanged). With lanes, only the ids whose lane is lane (NULL:
 * all count as STORE_LANE_NORMAL); none: nothing sent, 0. what names the
 * command in an error.
 */
int st_xtouch(struct store *s, const char *what, const char *key, const char *group,
    const char *consumer, const char *const *ids, const enum store_lane *lanes,
    enum store_lane lane, size_t n);

/*
 * st_xautoclaim - XAUTOCLAIM from *cursor; updates it. *entries points
 * into *reply. Redis 7 answers [cursor, entries, deleted]; 6.2 has no
 * third element and may put nil in entries. Caller frees *reply.
 */
int st_xautoclaim(struct store *s, const char *key, const char *group, const char *consumer,
    int64_t min_idle_ms, int max, char *cursor, size_t cursorlen,
    redisReply **reply, const redisReply **entries);

/*
 * --- store_watch.c: +switch-master ---------------------------------------
 * st_watch_add / st_watch_remove - register a redis+sentinel:// handle
 * (store_open) / unregister it (store_close, before its connection is
 * freed); the first starts the subscriber thread, the last stops it. No-ops
 * for other handles. st_watch_gen - moves on with each failover announced.
 * st_watch_set_conn - the only way a handle's connection is set or cleared
 * (the old one, if another, is freed): under the watcher's lock for a
 * Sentinel handle, with the generation it was connected in.
 */
void st_watch_add(struct store *s);
void st_watch_remove(struct store *s);
unsigned st_watch_gen(void);
void st_watch_set_conn(struct store *s, redisContext *c, unsigned gen);

/*
 * st_sentinel_open - a connection to sentinel sn (store_conn.c), with
 * ST_SENTINEL_TIMEOUT_MS for the connect and each command, authenticated
 * with a->sentinel_pass when set; NULL with why (never the password).
 */
redisContext *st_sentinel_open(const struct redis_addr *a, const struct redis_hostport *sn,
    char *why, size_t whylen);

#endif
