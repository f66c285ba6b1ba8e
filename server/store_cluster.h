/*
 * store_cluster.h - a Redis Cluster client on hiredis 0.14, which has none:
 * the pure half (store_cluster_map.c: CRC16 key slots with hash tags, the
 * slot map read from a CLUSTER SLOTS reply, -MOVED/-ASK redirections) and
 * the router (store_cluster.c: the seeds, one connection per node opened
 * when first needed, the map loaded and refreshed, a pipeline of commands
 * of one slot run with its redirections and one retry after a failover).
 *
 * Included by the store's own files and their tests only; no hiredis here
 * (test_layering.py): the replies and contexts are forward declarations.
 * The router knows no key of the store and no script: what a reply means,
 * and what each new connection must load (SCRIPT LOAD), is the caller's.
 */
#ifndef SERVER_STORE_CLUSTER_H
#define SERVER_STORE_CLUSTER_H

#include <stddef.h>
#include <stdint.h>

struct redisReply;     /* hiredis's */
struct redisContext;
struct redis_addr;     /* config.h */
struct st_cmd;         /* store_internal.h: one formatted command */

#define ST_CLUSTER_SLOTS 16384
#define ST_CLUSTER_MAX_NODES 128         /* nodes one map may name (primaries and MOVED/ASK targets) */
#define ST_CLUSTER_HOST_MAX 256          /* a host with its NUL */
#define ST_CLUSTER_NO_NODE 0xffff        /* map->slot[s]: no primary serves s */
#define ST_CLUSTER_SEED_TIMEOUT_MS 500   /* connect to a node asked for the map, and CLUSTER SLOTS */
#define ST_CLUSTER_MAX_REDIRECTS 10      /* MOVED/ASK rounds one st_cluster_run follows */
#define ST_CLUSTER_BOUNCE_MS 64          /* the longest pause between two rounds of redirections */
#define ST_CLUSTER_REFRESH_MS 100        /* the map is asked for at most this often (unless none) */

#define ST_CLUSTER_BAD (-2)              /* a reply or text of the wrong shape */

/* --- pure (store_cluster_map.c) -------------------------------------------- */

/* st_cluster_crc16 - CRC16-XMODEM of p[0..len) (poly 0x1021, init 0), as Redis Cluster's. */
uint16_t st_cluster_crc16(const char *p, size_t len);

/*
 * st_cluster_keyslot - the slot of key[0..len): CRC16 of its hash tag (the
 * bytes between the first '{' and the first '}' after it, when not empty)
 * or of the whole key, & 16383.
 */
unsigned st_cluster_keyslot(const char *key, size_t len);

struct st_cluster_node {
	char host[ST_CLUSTER_HOST_MAX];
	uint16_t port;
};

struct st_cluster_map {
	uint16_t slot[ST_CLUSTER_SLOTS];   /* index into node[], or ST_CLUSTER_NO_NODE */
	struct st_cluster_node node[ST_CLUSTER_MAX_NODES];
	size_t nnodes;
};

/* st_cluster_map_clear - no node, every slot ST_CLUSTER_NO_NODE. */
void st_cluster_map_clear(struct st_cluster_map *m);

/*
 * st_cluster_map_node - the index of host:port in m, added when absent;
 * -1 when m is full or host is empty or too long.
 */
int st_cluster_map_node(struct st_cluster_map *m, const char *host, uint16_t port);

/*
 * st_cluster_map_parse - fill m (cleared first) from r, a CLUSTER SLOTS
 * reply: [[start, end, [host, port, id, ...], replicas...], ...]. Only the
 * primaries (each range's first node) go into the map. A host that is nil
 * or "" means the node that answered, asked_host (the spec's "unknown
 * endpoint": same host, the port given); "?" (no endpoint at all) leaves
 * that range unserved. 0; ST_CLUSTER_BAD with why (an error reply, a
 * range out of 0..16383 or overlapping another, a bad port, a host with
 * blanks or control characters, more than ST_CLUSTER_MAX_NODES nodes, no
 * slot served at all), then m is cleared.
 */
int st_cluster_map_parse(const struct redisReply *r, const char *asked_host,
    struct st_cluster_map *m, char *why, size_t whylen);

/*
 * st_cluster_map_describe - m as "host:port=0-5460,6000 host:port=..." for
 * the log (nodes in index order, ranges ascending, unserved slots counted
 * as "unserved=N"), cut at len - 1 bytes with "..." at the end when it
 * does not fit. Returns a hash (FNV-1a 64) of the whole text, cut or not:
 * two maps with the same hash route alike (with near certainty).
 */
uint64_t st_cluster_map_describe(const struct st_cluster_map *m, char *buf, size_t len);

enum st_cluster_redirect_kind {
	ST_CLUSTER_NOT_REDIRECT = 0,   /* any other error text */
	ST_CLUSTER_MOVED = 1,          /* the slot is served by host:port now: update the map */
	ST_CLUSTER_ASK = 2,            /* this once, ASKING then the command at host:port */
};

struct st_cluster_redirect {
	enum st_cluster_redirect_kind kind;
	unsigned slot;
	char host[ST_CLUSTER_HOST_MAX];
	uint16_t port;
};

/*
 * st_cluster_redirect_parse - err[0..len), an error reply's text with or
 * without its leading '-': "MOVED <slot> <host>:<port>" or "ASK <slot>
 * <host>:<port>" (the port after the last ':', so an IPv6 host may come
 * bare, as Redis writes it, or in brackets; an empty host is asked_host,
 * the node that answered). The kind (out filled for MOVED and ASK),
 * ST_CLUSTER_NOT_REDIRECT for other errors, ST_CLUSTER_BAD for a MOVED or
 * ASK that does not parse (a slot over 16383, a port 0 or over 65535).
 */
int st_cluster_redirect_parse(const char *err, size_t len, const char *asked_host,
    struct st_cluster_redirect *out);

/* --- the router (store_cluster.c) ------------------------------------------ */

struct st_cluster;

/*
 * st_cluster_open - a router over addr's seeds (a redis+cluster:// URL:
 * addr->is_cluster), with addr's credentials and command timeout. prepare
 * (may be NULL) is called on every new node connection after AUTH, with
 * the set-up timeout (the store loads its scripts there): 0, or nonzero to
 * drop the connection (the call that needed it gets STORE_ERR_UNAVAILABLE).
 * Connects to nothing yet. NULL on OOM or when addr is not a cluster
 * address. Owned by one thread, like struct store.
 */
struct st_cluster *st_cluster_open(const struct redis_addr *addr,
    int (*prepare)(void *arg, struct redisContext *c), void *arg);

/* st_cluster_close - close every connection and free cl (NULL is fine); the password is wiped. */
void st_cluster_close(struct st_cluster *cl);

/*
 * st_cluster_refresh - ask the seeds in URL order, then the nodes of the
 * current map, for CLUSTER SLOTS (ST_CLUSTER_SEED_TIMEOUT_MS each) and use
 * the first good answer; connections to nodes the new map does not name
 * are closed. A change is logged once per process ("redis cluster map").
 * Unless force, nothing is asked within ST_CLUSTER_REFRESH_MS of the last
 * time (0: the map stands). 0, or STORE_ERR_UNAVAILABLE when none
 * answered (the map in use stays) with why in st_cluster_why.
 */
int st_cluster_refresh(struct st_cluster *cl, int force);

/*
 * st_cluster_route - the connection to the primary of key[0..len)'s slot
 * (the map loaded first if there is none; connected, AUTHed and prepared
 * when new). *c stays cl's. 0, or STORE_ERR_UNAVAILABLE.
 */
int st_cluster_route(struct st_cluster *cl, const char *key, size_t len, struct redisContext **c);

#define ST_CLUSTER_IDEMPOTENT 1   /* st_cluster_run: commands may be sent twice (see there) */

/*
 * st_cluster_run - send cmds[0..n) (every key in slot) pipelined to the
 * slot's primary and read their replies into rep[] (each the caller's to
 * free). A MOVED answer updates the slot in the map, refreshes the map and
 * sends that command again to the new owner; an ASK answer sends ASKING
 * then the command to the named node, once per command; at most
 * ST_CLUSTER_MAX_REDIRECTS rounds, then the last redirection is the reply;
 * from the third round on each waits 2, 4, 8, 16, then ST_CLUSTER_BOUNCE_MS
 * ms first (414 ms in all at most) (nodes that bounce a slot between them - a migration's SETSLOT
 * NODE reached one but not yet the other - agree within milliseconds).
 * A node that cannot be reached (nothing sent) makes the map be asked
 * again and the commands go once more if it names another node now (after
 * a failover: the promoted replica). A connection lost after sending is retried the
 * same way only with ST_CLUSTER_IDEMPOTENT in flags (a command may have
 * run: only the caller knows whether a second run is harmless); else the
 * map is refreshed for the next call and this one fails. 0, or
 * STORE_ERR_UNAVAILABLE / STORE_ERR_NOMEM with every rep[i] NULL.
 */
int st_cluster_run(struct st_cluster *cl, unsigned slot, const struct st_cmd *cmds, size_t n,
    struct redisReply **rep, int flags);

#define ST_CLUSTER_NO_DIAL 2       /* st_cluster_run_many: only connections open now, no redirection followed */
#define ST_CLUSTER_PARTIAL 4       /* st_cluster_run_many: a command that failed leaves its reply NULL */

/*
 * st_cluster_run_many - cmds[0..n) of any slots (cmds[i].slot): each
 * node's commands pipelined to it, every node's pipeline written before
 * any reply is read (one round trip for all nodes), replies into rep[] in
 * cmds' order. A command that could not be sent, or was answered MOVED or
 * ASK, goes again through st_cluster_run with the others of its slot (in
 * their order); one lost after sending fails the call unless flags has
 * ST_CLUSTER_IDEMPOTENT. With ST_CLUSTER_NO_DIAL a node without an open
 * connection fails the call and redirections are replies (a WAIT must go
 * to the connection that wrote). 0, or STORE_ERR_* with every rep[i] NULL.
 * With ST_CLUSTER_PARTIAL (reads of every partition, while one primary is
 * down) the commands that failed have a NULL reply and the call fails only
 * when all did.
 */
int st_cluster_run_many(struct st_cluster *cl, const struct st_cmd *cmds, size_t n,
    struct redisReply **rep, int flags);

/*
 * st_cluster_reprepare - run the prepare hook again on the connection to
 * slot's primary (connected when there is none: then the hook ran
 * already): scripts a node lost (NOSCRIPT) are loaded again. 0 or
 * STORE_ERR_UNAVAILABLE.
 */
int st_cluster_reprepare(struct st_cluster *cl, unsigned slot);

/* st_cluster_set_timeout - every connection's command timeout, open ones and new (ms > 0). */
void st_cluster_set_timeout(struct st_cluster *cl, int ms);

/*
 * Writes to confirm (TXMAIL_REDIS_MIN_REPLICAS): a connection that sent
 * anything since st_cluster_clean is dirty. st_cluster_dirty_slots - of
 * slots[0..n), one per node with an open connection (a dirty one, with
 * need_dirty), into out (room n); returns how many, or -1 without
 * need_dirty when a slot's node has no open connection (what was sent to
 * it went over a connection that is gone). st_cluster_lost_dirty - 1 when a dirty connection
 * was closed since st_cluster_clean (what it sent cannot be confirmed).
 * st_cluster_clean - nothing dirty, nothing lost.
 */
long st_cluster_dirty_slots(const struct st_cluster *cl, const unsigned *slots, size_t n,
    unsigned *out, int need_dirty);
int st_cluster_lost_dirty(const struct st_cluster *cl);
void st_cluster_clean(struct st_cluster *cl);

/* st_cluster_why - why the last call failed ("" when none did), never holding a password. */
const char *st_cluster_why(const struct st_cluster *cl);

/* Counters since open, for tests and metrics. */
struct st_cluster_stats {
	uint64_t moved, ask;        /* redirections followed */
	uint64_t refreshes;         /* maps read (CLUSTER SLOTS answered) */
	uint64_t retries;           /* runs sent once more after a connection error */
	uint64_t connects;          /* node connections opened */
};

void st_cluster_stats(const struct st_cluster *cl, struct st_cluster_stats *out);

#endif
