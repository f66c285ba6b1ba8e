/*
 * store_cluster.c - the router of the Redis Cluster client
 * (store_cluster.h): the seeds of a redis+cluster:// URL, the slot map
 * (CLUSTER SLOTS, read by store_cluster_map.c), one connection per node
 * opened when a command first needs it (AUTH as store_conn.c does, then
 * the caller's prepare hook), and st_cluster_run, which sends a pipeline
 * of one slot's commands and follows MOVED and ASK.
 *
 * Policy, kept here and nowhere else: the map is asked for when there is
 * none, after a MOVED and after a node could not be reached, at most every
 * ST_CLUSTER_REFRESH_MS; a node that refused a connect is not dialled
 * again for ST_RECONNECT_MS; a MOVED updates its slot at once (so the
 * command goes to the right node even when no seed answers); one call
 * follows at most ST_CLUSTER_MAX_REDIRECTS rounds of redirections (the later
 * ones after a pause of a few ms: st_cluster_nap) and
 * retries at most once after a connection error. A map change is logged
 * once per process (info, msg="redis cluster map").
 *
 * It must never log a password (AUTH errors are withheld when they hold
 * it), never block beyond the timeouts (ST_CLUSTER_SEED_TIMEOUT_MS to ask
 * for the map, ST_CONNECT_TIMEOUT_MS to set up a node, the command timeout
 * after), and never decide what a reply means: the caller reads rep[].
 */
#include "store_internal.h"
#include "store_cluster.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "config.h"
#include "log.h"
#include "util.h"

struct st_cluster_link {
	redisContext *c;
	int64_t failed_ms;      /* monotonic time of the last failed connect; 0: none */
	int dirty;              /* sent commands since st_cluster_clean */
};

struct st_cluster {
	struct redis_addr addr;
	int (*prepare)(void *arg, redisContext *c);
	void *arg;
	int cmd_timeout_ms;
	struct st_cluster_map *map;
	struct st_cluster_link link[ST_CLUSTER_MAX_NODES];   /* by map->node index */
	int have_map;
	int lost_dirty;         /* a dirty connection closed since st_cluster_clean */
	int64_t refresh_ms;     /* monotonic time of the last ask for the map; 0: never */
	char why[256];
	struct st_cluster_stats stats;
};

static struct timeval
st_cluster_tv(int ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	return tv;
}

struct st_cluster *
st_cluster_open(const struct redis_addr *addr, int (*prepare)(void *arg, redisContext *c), void *arg)
{
	struct st_cluster *cl;

	if (addr == NULL || !addr->is_cluster || addr->nseeds == 0)
		return NULL;
	cl = calloc(1, sizeof(*cl));
	if (cl == NULL)
		return NULL;
	cl->map = malloc(sizeof(*cl->map));
	if (cl->map == NULL) {
		free(cl);
		return NULL;
	}
	st_cluster_map_clear(cl->map);
	cl->addr = *addr;
	cl->prepare = prepare;
	cl->arg = arg;
	cl->cmd_timeout_ms = addr->timeout_ms > 0 ? addr->timeout_ms : ST_CMD_TIMEOUT_MS;
	return cl;
}

static void
st_cluster_unlink(struct st_cluster *cl, size_t i)
{
	if (cl->link[i].c != NULL)
		redisFree(cl->link[i].c);
	cl->link[i].c = NULL;
	if (cl->link[i].dirty)
		cl->lost_dirty = 1;
	cl->link[i].dirty = 0;
}

void
st_cluster_close(struct st_cluster *cl)
{
	if (cl == NULL)
		return;
	for (size_t i = 0; i < ST_CLUSTER_MAX_NODES; i++)
		st_cluster_unlink(cl, i);
	explicit_bzero(cl->addr.pass, sizeof(cl->addr.pass));
	free(cl->map);
	free(cl);
}

const char *
st_cluster_why(const struct st_cluster *cl)
{
	return cl->why;
}

void
st_cluster_stats(const struct st_cluster *cl, struct st_cluster_stats *out)
{
	*out = cl->stats;
}

/*
 * st_cluster_auth - AUTH [user] pass on c when the URL has a password; 0
 * or -1 with why (the server's reply withheld when it holds the password).
 */
static int
st_cluster_auth(const struct st_cluster *cl, redisContext *c, char *why, size_t whylen)
{
	const char *argv[3];
	redisReply *r;
	int argc = 0, rc = -1;

	if (cl->addr.pass[0] == '\0')
		return 0;
	argv[argc++] = "AUTH";
	if (cl->addr.user[0] != '\0')
		argv[argc++] = cl->addr.user;
	argv[argc++] = cl->addr.pass;
	r = redisCommandArgv(c, argc, argv, NULL);
	if (r == NULL) {
		snprintf(why, whylen, "AUTH: %.200s", c->errstr[0] ? c->errstr : "i/o error");
		return -1;
	}
	if (r->type == REDIS_REPLY_STATUS)
		rc = 0;
	else if (r->type == REDIS_REPLY_ERROR && r->str != NULL && strstr(r->str, cl->addr.pass) == NULL)
		snprintf(why, whylen, "AUTH failed: %.200s", r->str);
	else
		snprintf(why, whylen, "%s", "AUTH failed (the server's reply is withheld)");
	freeReplyObject(r);
	return rc;
}

/* st_cluster_dial - a connection to host:port, AUTHed, with ms for the connect and each command */
static redisContext *
st_cluster_dial(const struct st_cluster *cl, const char *host, uint16_t port, int ms, char *why,
    size_t whylen)
{
	redisContext *c = redisConnectWithTimeout(host, port, st_cluster_tv(ms));

	if (c == NULL || c->err) {
		snprintf(why, whylen, "%.60s:%u: %.150s", host, (unsigned)port, c ? c->errstr : "out of memory");
		goto fail;
	}
	(void)redisEnableKeepAlive(c);
	if (redisSetTimeout(c, st_cluster_tv(ms)) != REDIS_OK) {
		snprintf(why, whylen, "%.60s:%u: setsockopt", host, (unsigned)port);
		goto fail;
	}
	if (st_cluster_auth(cl, c, why, whylen) != 0)
		goto fail;
	return c;
fail:
	if (c != NULL)
		redisFree(c);
	return NULL;
}

/* The map this process last logged, so a change is logged once, not once per handle. */
static pthread_mutex_t st_cluster_seen_mu = PTHREAD_MUTEX_INITIALIZER;
static uint64_t st_cluster_seen;

static void
st_cluster_note(const struct st_cluster_map *m, const char *from)
{
	char desc[900];
	uint64_t h = st_cluster_map_describe(m, desc, sizeof(desc));
	int changed;

	pthread_mutex_lock(&st_cluster_seen_mu);
	changed = h != st_cluster_seen;
	st_cluster_seen = h;
	pthread_mutex_unlock(&st_cluster_seen_mu);
	if (changed)
		log_info("redis cluster map", "from=%s nodes=%zu slots=%s", from, m->nnodes, desc);
}

/* st_cluster_ask - CLUSTER SLOTS from host:port into *m; 0 or -1 with why */
static int
st_cluster_ask(const struct st_cluster *cl, const char *host, uint16_t port, struct st_cluster_map *m,
    char *why, size_t whylen)
{
	const char *argv[2] = { "CLUSTER", "SLOTS" };
	redisContext *c = st_cluster_dial(cl, host, port, ST_CLUSTER_SEED_TIMEOUT_MS, why, whylen);
	redisReply *r;
	char what[200];
	int rc = -1;

	if (c == NULL)
		return -1;
	r = redisCommandArgv(c, 2, argv, NULL);
	if (r == NULL) {
		snprintf(why, whylen, "%.60s:%u: %.150s", host, (unsigned)port,
		    c->errstr[0] ? c->errstr : "i/o error");
	} else if (st_cluster_map_parse(r, host, m, what, sizeof(what)) != 0) {
		snprintf(why, whylen, "%.60s:%u: %.150s", host, (unsigned)port, what);
	} else {
		rc = 0;
	}
	if (r != NULL)
		freeReplyObject(r);
	redisFree(c);
	return rc;
}

/* st_cluster_install - m becomes the map; connections move with their nodes, the others close */
static void
st_cluster_install(struct st_cluster *cl, struct st_cluster_map *m)
{
	struct st_cluster_link link[ST_CLUSTER_MAX_NODES];

	memset(link, 0, sizeof(link));
	for (size_t i = 0; i < cl->map->nnodes; i++) {
		int k = -1;

		for (size_t j = 0; j < m->nnodes && k < 0; j++)
			if (m->node[j].port == cl->map->node[i].port &&
			    strcmp(m->node[j].host, cl->map->node[i].host) == 0)
				k = (int)j;
		if (k >= 0) {
			link[k] = cl->link[i];
			cl->link[i].c = NULL;
			cl->link[i].dirty = 0;
		}
		st_cluster_unlink(cl, i);
	}
	memcpy(cl->link, link, sizeof(link));
	memcpy(cl->map, m, sizeof(*m));
	cl->have_map = 1;
}

int
st_cluster_refresh(struct st_cluster *cl, int force)
{
	struct st_cluster_map *m;
	int64_t now = util_mono_ms();
	size_t n;

	if (!force && cl->refresh_ms && now - cl->refresh_ms < ST_CLUSTER_REFRESH_MS)
		return cl->have_map ? 0 : STORE_ERR_UNAVAILABLE;
	cl->refresh_ms = now;
	m = malloc(sizeof(*m));
	if (m == NULL)
		return STORE_ERR_NOMEM;
	/* the seeds first, then the nodes of the map in use (the seeds may all be gone) */
	n = cl->addr.nseeds + cl->map->nnodes;
	for (size_t i = 0; i < n; i++) {
		const char *host = i < cl->addr.nseeds ? cl->addr.seeds[i].host :
		    cl->map->node[i - cl->addr.nseeds].host;
		uint16_t port = i < cl->addr.nseeds ? cl->addr.seeds[i].port :
		    cl->map->node[i - cl->addr.nseeds].port;

		if (st_cluster_ask(cl, host, port, m, cl->why, sizeof(cl->why)) == 0) {
			char from[300];

			snprintf(from, sizeof(from), "%.255s:%u", host, (unsigned)port);
			st_cluster_install(cl, m);
			free(m);
			cl->stats.refreshes++;
			cl->why[0] = '\0';
			st_cluster_note(cl->map, from);
			return 0;
		}
	}
	free(m);
	return STORE_ERR_UNAVAILABLE;
}

/*
 * st_cluster_link_up - the connection to node i, dialled when there is
 * none (not within ST_RECONNECT_MS of a failed dial). 0 or
 * STORE_ERR_UNAVAILABLE with why.
 */
static int
st_cluster_link_up(struct st_cluster *cl, size_t i)
{
	struct st_cluster_link *l = &cl->link[i];
	const struct st_cluster_node *nd = &cl->map->node[i];
	int64_t now = util_mono_ms();
	redisContext *c;

	if (l->c != NULL) {
		/* nothing is due between commands: readable means closed (a node restarted, or killed) */
		struct pollfd pfd = { .fd = l->c->fd, .events = POLLIN | POLLRDHUP };

		if (poll(&pfd, 1, 0) <= 0)
			return 0;
		st_cluster_unlink(cl, i);
	}
	if (l->failed_ms && now - l->failed_ms < ST_RECONNECT_MS) {
		snprintf(cl->why, sizeof(cl->why), "%.60s:%u: down (a connect failed %lld ms ago)", nd->host,
		    (unsigned)nd->port, (long long)(now - l->failed_ms));
		return STORE_ERR_UNAVAILABLE;
	}
	c = st_cluster_dial(cl, nd->host, nd->port, ST_CONNECT_TIMEOUT_MS, cl->why, sizeof(cl->why));
	if (c != NULL && cl->prepare != NULL && cl->prepare(cl->arg, c) != 0) {
		snprintf(cl->why, sizeof(cl->why), "%.60s:%u: set-up failed", nd->host, (unsigned)nd->port);
		redisFree(c);
		c = NULL;
	}
	if (c != NULL && redisSetTimeout(c, st_cluster_tv(cl->cmd_timeout_ms)) != REDIS_OK) {
		redisFree(c);
		c = NULL;
	}
	if (c == NULL) {
		l->failed_ms = now;
		return STORE_ERR_UNAVAILABLE;
	}
	l->c = c;
	l->failed_ms = 0;
	cl->stats.connects++;
	return 0;
}

/* st_cluster_owner - the node index serving slot (the map read first when there is none), or -1 */
static int
st_cluster_owner(struct st_cluster *cl, unsigned slot)
{
	if (!cl->have_map && st_cluster_refresh(cl, 0) != 0)
		return -1;
	if (cl->map->slot[slot] == ST_CLUSTER_NO_NODE) {
		/* a map read while the slot had no primary (a failover): ask again, rate-limited */
		if (st_cluster_refresh(cl, 0) != 0 || cl->map->slot[slot] == ST_CLUSTER_NO_NODE) {
			if (cl->why[0] == '\0')
				snprintf(cl->why, sizeof(cl->why), "slot %u is served by no primary", slot);
			return -1;
		}
	}
	return cl->map->slot[slot];
}

int
st_cluster_route(struct st_cluster *cl, const char *key, size_t len, redisContext **c)
{
	int node = st_cluster_owner(cl, st_cluster_keyslot(key, len));

	*c = NULL;
	if (node < 0 || st_cluster_link_up(cl, (size_t)node) != 0)
		return STORE_ERR_UNAVAILABLE;
	*c = cl->link[node].c;
	return 0;
}

/* st_cluster_replies_drop - a failed call leaves no reply: every rep[i] freed and NULL */
static void
st_cluster_replies_drop(redisReply **rep, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (rep[i] != NULL) {
			freeReplyObject(rep[i]);
			rep[i] = NULL;
		}
}

/* What st_cluster_run still has to do for one command. */
enum st_cluster_todo {
	ST_CL_DONE = 0,
	ST_CL_SEND,        /* to the slot's primary */
	ST_CL_ASK,         /* ASKING, then to the ASK node */
	ST_CL_ASKED,       /* sent there once: a second ASK is the reply */
};

/*
 * st_cluster_send - one round to node: the commands whose todo is want
 * (ST_CL_SEND or ST_CL_ASK, each after an ASKING), pipelined, their
 * replies into rep[]. 0; 1 when nothing could be sent (no connection);
 * -1 when the connection broke after sending (the replies read so far
 * kept, the others NULL and their commands still to do).
 */
static int
st_cluster_send(struct st_cluster *cl, size_t node, enum st_cluster_todo want, const struct st_cmd *cmds,
    size_t n, redisReply **rep, unsigned char *todo)
{
	static const char asking[] = "*1\r\n$6\r\nASKING\r\n";
	redisContext *c;
	void *r;

	if (st_cluster_link_up(cl, node) != 0)
		return 1;
	c = cl->link[node].c;
	cl->link[node].dirty = 1;
	for (size_t i = 0; i < n; i++) {
		if (todo[i] != want)
			continue;
		if ((want == ST_CL_ASK && redisAppendFormattedCommand(c, asking, sizeof(asking) - 1) != REDIS_OK) ||
		    redisAppendFormattedCommand(c, cmds[i].buf, cmds[i].len) != REDIS_OK)
			goto broken;
	}
	for (size_t i = 0; i < n; i++) {
		if (todo[i] != want)
			continue;
		if (want == ST_CL_ASK) {
			r = NULL;
			if (redisGetReply(c, &r) != REDIS_OK || r == NULL)
				goto broken;
			freeReplyObject(r);   /* +OK; an error here shows in the command's own reply */
		}
		r = NULL;
		if (redisGetReply(c, &r) != REDIS_OK || r == NULL)
			goto broken;
		rep[i] = r;
		todo[i] = want == ST_CL_ASK ? ST_CL_ASKED : ST_CL_DONE;
	}
	return 0;
broken:
	snprintf(cl->why, sizeof(cl->why), "%.60s:%u: %.150s", cl->map->node[node].host,
	    (unsigned)cl->map->node[node].port, c->errstr[0] ? c->errstr : "i/o error");
	st_cluster_unlink(cl, node);
	return -1;
}

/*
 * st_cluster_follow - look at the replies of the round for redirections:
 * a MOVED sets its slot in the map (refreshed next round) and sends the
 * command again, an ASK sends it to the named node once. Returns how many
 * commands go again; *moved is set when a MOVED was seen. An ASK node
 * (one per slot) is written to *ask (by name: a refresh renumbers nodes).
 */
static size_t
st_cluster_follow(struct st_cluster *cl, const char *asked_host, redisReply **rep, unsigned char *todo,
    size_t n, int last, int *moved, struct st_cluster_node *ask)
{
	struct st_cluster_redirect rd;
	size_t again = 0;
	int kind, idx;

	for (size_t i = 0; i < n; i++) {
		if (rep[i] == NULL || rep[i]->type != REDIS_REPLY_ERROR || rep[i]->str == NULL || last)
			continue;
		kind = st_cluster_redirect_parse(rep[i]->str, rep[i]->len, asked_host, &rd);
		if (kind != ST_CLUSTER_MOVED && !(kind == ST_CLUSTER_ASK && todo[i] != ST_CL_ASKED))
			continue;
		idx = st_cluster_map_node(cl->map, rd.host, rd.port);
		if (idx < 0)
			continue;   /* the map is full: the redirection is the reply */
		if (kind == ST_CLUSTER_MOVED) {
			cl->map->slot[rd.slot] = (uint16_t)idx;
			cl->stats.moved++;
			*moved = 1;
			todo[i] = ST_CL_SEND;
		} else {
			cl->stats.ask++;
			*ask = cl->map->node[idx];
			todo[i] = ST_CL_ASK;
		}
		freeReplyObject(rep[i]);
		rep[i] = NULL;
		again++;
	}
	return again;
}

/*
 * st_cluster_nap - the pause before redirection round `round` (>= 2): 2, 4,
 * 8, 16 ms, then ST_CLUSTER_BOUNCE_MS. A slot answered MOVED by each of two
 * nodes in turn (one has SETSLOT NODE, the other not yet) settles in that
 * time; without it the rounds run out in a millisecond.
 */
static void
st_cluster_nap(int round)
{
	long ms = round - 2 < 4 ? 2L << (round - 2) : ST_CLUSTER_BOUNCE_MS;
	struct timespec ts = { 0, (ms < ST_CLUSTER_BOUNCE_MS ? ms : ST_CLUSTER_BOUNCE_MS) * 1000000L };

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

int
st_cluster_run(struct st_cluster *cl, unsigned slot, const struct st_cmd *cmds, size_t n,
    redisReply **rep, int flags)
{
	unsigned char *todo;
	struct st_cluster_node ask = { "", 0 };
	int retried = 0, rc = 0, node;
	char asked[ST_CLUSTER_HOST_MAX];

	for (size_t i = 0; i < n; i++)
		rep[i] = NULL;
	if (n == 0)
		return 0;
	if (slot >= ST_CLUSTER_SLOTS)
		return STORE_ERR_PROTO;
	todo = malloc(n);
	if (todo == NULL)
		return STORE_ERR_NOMEM;
	memset(todo, ST_CL_SEND, n);
	for (int round = 0; ; round++) {
		int moved = 0, sent = 0;
		enum st_cluster_todo want = ST_CL_SEND;

		if (round >= 2)
			st_cluster_nap(round);

		node = st_cluster_owner(cl, slot);
		if (node < 0) {
			rc = STORE_ERR_UNAVAILABLE;
			goto out;
		}
		for (size_t i = 0; i < n && want == ST_CL_SEND; i++)
			if (todo[i] == ST_CL_ASK)
				want = ST_CL_ASK;
		if (want == ST_CL_ASK && (node = st_cluster_map_node(cl->map, ask.host, ask.port)) < 0) {
			rc = STORE_ERR_UNAVAILABLE;   /* the map filled up since the ASK */
			goto out;
		}
		util_strlcpy(asked, cl->map->node[node].host, sizeof(asked));
		sent = st_cluster_send(cl, (size_t)node, want, cmds, n, rep, todo);
		if (sent != 0) {
			struct st_cluster_node was = cl->map->node[node];
			char why[sizeof(cl->why)];
			int same;

			/* unreachable, or lost with commands in flight: the map may name a promoted replica */
			memcpy(why, cl->why, sizeof(why));
			(void)st_cluster_refresh(cl, 0);
			memcpy(cl->why, why, sizeof(why));   /* the node's failure, not the refresh's */
			node = want == ST_CL_SEND ? st_cluster_owner(cl, slot) : -1;
			same = node >= 0 && cl->map->node[node].port == was.port &&
			    strcmp(cl->map->node[node].host, was.host) == 0;
			/* a node that just refused a connect is not dialled again (ST_RECONNECT_MS) */
			if (retried || (sent > 0 && same) || (sent < 0 && !(flags & ST_CLUSTER_IDEMPOTENT))) {
				rc = STORE_ERR_UNAVAILABLE;
				goto out;
			}
			retried = 1;
			cl->stats.retries++;
			continue;
		}
		if (st_cluster_follow(cl, asked, rep, todo, n, round >= ST_CLUSTER_MAX_REDIRECTS, &moved,
		    &ask) == 0) {
			/* an ASK round may leave commands the primary still has to answer */
			int left = 0;

			for (size_t i = 0; i < n; i++)
				left |= todo[i] == ST_CL_SEND || todo[i] == ST_CL_ASK;
			if (!left)
				goto out;
		}
		if (moved)
			(void)st_cluster_refresh(cl, 0);
	}
out:
	if (rc != 0)
		st_cluster_replies_drop(rep, n);
	free(todo);
	return rc;
}

/* What st_cluster_run_many knows of one command. */
enum st_many_state {
	ST_MANY_LEFT = 0,   /* not sent (no owner, no connection): goes through st_cluster_run */
	ST_MANY_SENT,       /* written to its node, reply not read yet */
	ST_MANY_LOST,       /* written, the connection broke before its reply */
	ST_MANY_DONE,       /* its reply is in rep[] */
};

/* st_cluster_flush - write all of c's output buffer; 0 or -1 (the connection is broken) */
static int
st_cluster_flush(redisContext *c)
{
	int done = 0;

	while (!done)
		if (redisBufferWrite(c, &done) != REDIS_OK)
			return -1;
	return 0;
}

/* st_cluster_live - 1 when node i has a connection that is still open (nothing is due on it) */
static int
st_cluster_live(struct st_cluster *cl, size_t i)
{
	struct pollfd pfd;

	if (cl->link[i].c == NULL)
		return 0;
	pfd.fd = cl->link[i].c->fd;
	pfd.events = POLLIN | POLLRDHUP;
	if (poll(&pfd, 1, 0) <= 0)
		return 1;
	st_cluster_unlink(cl, i);
	return 0;
}

/*
 * st_cluster_rerun - the commands marked again[i] through st_cluster_run,
 * one call per slot with that slot's commands in their order; their
 * replies into rep[]. 0 or STORE_ERR_*.
 */
static int
st_cluster_rerun(struct st_cluster *cl, const struct st_cmd *cmds, size_t n, redisReply **rep,
    unsigned char *again, int flags)
{
	struct st_cmd *sub = malloc(n * sizeof(*sub));
	redisReply **srep = malloc(n * sizeof(*srep));
	size_t *at = malloc(n * sizeof(*at));
	int rc = 0;

	if (sub == NULL || srep == NULL || at == NULL)
		rc = STORE_ERR_NOMEM;
	for (size_t i = 0; i < n && rc == 0; i++) {
		size_t k = 0;

		if (!again[i])
			continue;
		for (size_t j = i; j < n; j++)
			if (again[j] && cmds[j].slot == cmds[i].slot) {
				sub[k] = cmds[j];
				at[k++] = j;
				again[j] = 0;
			}
		rc = st_cluster_run(cl, cmds[i].slot, sub, k, srep, flags & ST_CLUSTER_IDEMPOTENT);
		for (size_t j = 0; j < k && rc == 0; j++)
			rep[at[j]] = srep[j];
		if (rc == STORE_ERR_UNAVAILABLE && (flags & ST_CLUSTER_PARTIAL))
			rc = 0;   /* that slot's replies stay NULL */
	}
	free(sub);
	free(srep);
	free(at);
	return rc;
}

int
st_cluster_run_many(struct st_cluster *cl, const struct st_cmd *cmds, size_t n, redisReply **rep,
    int flags)
{
	unsigned char *state, *again, sent[ST_CLUSTER_MAX_NODES];
	int *node, rc = 0, lost = 0, moved = 0;
	size_t nagain = 0;

	for (size_t i = 0; i < n; i++)
		rep[i] = NULL;
	if (n == 0)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (cmds[i].slot >= ST_CLUSTER_SLOTS)
			return STORE_ERR_PROTO;
	if (!(flags & ST_CLUSTER_NO_DIAL)) {
		size_t i = 1;

		while (i < n && cmds[i].slot == cmds[0].slot)
			i++;
		if (i == n)   /* one slot: the plain run */
			return st_cluster_run(cl, cmds[0].slot, cmds, n, rep, flags);
	}
	state = calloc(n, 1);
	again = calloc(n, 1);
	node = malloc(n * sizeof(*node));
	if (state == NULL || again == NULL || node == NULL) {
		rc = STORE_ERR_NOMEM;
		goto out;
	}
	memset(sent, 0, sizeof(sent));
	for (size_t i = 0; i < n; i++)
		node[i] = (flags & ST_CLUSTER_NO_DIAL) && cl->have_map &&
		    cl->map->slot[cmds[i].slot] != ST_CLUSTER_NO_NODE ? cl->map->slot[cmds[i].slot] :
		    (flags & ST_CLUSTER_NO_DIAL) ? -1 : st_cluster_owner(cl, cmds[i].slot);
	/* 1. every node's commands appended, then every node's buffer written */
	for (size_t i = 0; i < n; i++) {
		size_t d;
		int up;

		if (node[i] < 0 || sent[node[i]])
			continue;
		d = (size_t)node[i];
		up = flags & ST_CLUSTER_NO_DIAL ? st_cluster_live(cl, d) : st_cluster_link_up(cl, d) == 0;
		if (!up)
			continue;
		sent[d] = 1;
		cl->link[d].dirty = 1;
		for (size_t j = i; j < n; j++)
			if (node[j] == (int)d) {
				if (redisAppendFormattedCommand(cl->link[d].c, cmds[j].buf, cmds[j].len) != REDIS_OK) {
					rc = STORE_ERR_NOMEM;
					goto out;
				}
				state[j] = ST_MANY_SENT;
			}
	}
	for (size_t d = 0; d < ST_CLUSTER_MAX_NODES; d++)
		if (sent[d] && st_cluster_flush(cl->link[d].c) != 0) {
			snprintf(cl->why, sizeof(cl->why), "%.60s:%u: %.150s", cl->map->node[d].host,
			    (unsigned)cl->map->node[d].port, cl->link[d].c->errstr[0] ? cl->link[d].c->errstr : "i/o error");
			st_cluster_unlink(cl, d);
			sent[d] = 0;
			for (size_t j = 0; j < n; j++)
				if (node[j] == (int)d)
					state[j] = ST_MANY_LOST;   /* part of it may have gone out */
		}
	/* 2. the replies, node by node, each in its commands' order */
	for (size_t i = 0; i < n; i++) {
		void *r = NULL;
		size_t d;

		if (state[i] != ST_MANY_SENT)
			continue;
		d = (size_t)node[i];
		if (!sent[d]) {
			state[i] = ST_MANY_LOST;
			continue;
		}
		if (redisGetReply(cl->link[d].c, &r) != REDIS_OK || r == NULL) {
			snprintf(cl->why, sizeof(cl->why), "%.60s:%u: %.150s", cl->map->node[d].host,
			    (unsigned)cl->map->node[d].port, cl->link[d].c->errstr[0] ? cl->link[d].c->errstr : "i/o error");
			st_cluster_unlink(cl, d);
			sent[d] = 0;
			state[i] = ST_MANY_LOST;
			continue;
		}
		rep[i] = r;
		state[i] = ST_MANY_DONE;
	}
	/* 3. what is left: not sent, lost, or redirected */
	for (size_t i = 0; i < n; i++) {
		struct st_cluster_redirect rd;

		if (state[i] == ST_MANY_LOST)
			lost = 1;
		if (state[i] == ST_MANY_DONE && rep[i]->type == REDIS_REPLY_ERROR && rep[i]->str != NULL &&
		    !(flags & ST_CLUSTER_NO_DIAL) &&
		    st_cluster_redirect_parse(rep[i]->str, rep[i]->len, cl->map->node[node[i]].host, &rd) > 0) {
			if (rd.kind == ST_CLUSTER_MOVED) {
				int idx = st_cluster_map_node(cl->map, rd.host, rd.port);

				if (idx >= 0) {
					cl->map->slot[rd.slot] = (uint16_t)idx;
					cl->stats.moved++;
				}
				moved = 1;
			}
			freeReplyObject(rep[i]);
			rep[i] = NULL;
			state[i] = ST_MANY_LEFT;
		}
		if (state[i] == ST_MANY_LEFT || (state[i] == ST_MANY_LOST && (flags & ST_CLUSTER_IDEMPOTENT))) {
			again[i] = 1;
			nagain++;
		}
	}
	if (lost && !(flags & (ST_CLUSTER_IDEMPOTENT | ST_CLUSTER_PARTIAL))) {
		(void)st_cluster_refresh(cl, 0);   /* the node may be gone: the next call asks */
		rc = STORE_ERR_UNAVAILABLE;
		goto out;
	}
	if (nagain > 0 && (flags & ST_CLUSTER_NO_DIAL)) {
		if (cl->why[0] == '\0')
			snprintf(cl->why, sizeof(cl->why), "%s", "no open connection to the node");
		rc = STORE_ERR_UNAVAILABLE;
		goto out;
	}
	/*
	 * A MOVED means the map changed (a failover, a handover, a reshard):
	 * read it again, so the other slots that node served before go where
	 * they are now too (rate-limited), then the rest.
	 */
	if (moved)
		(void)st_cluster_refresh(cl, 0);
	if (nagain > 0)
		rc = st_cluster_rerun(cl, cmds, n, rep, again, flags);
	if (rc == 0 && (flags & ST_CLUSTER_PARTIAL)) {
		size_t got = 0;

		for (size_t i = 0; i < n; i++)
			got += rep[i] != NULL;
		if (lost)
			(void)st_cluster_refresh(cl, 0);
		if (got == 0)
			rc = STORE_ERR_UNAVAILABLE;
	}
out:
	if (rc != 0)
		st_cluster_replies_drop(rep, n);
	free(state);
	free(again);
	free(node);
	return rc;
}

int
st_cluster_reprepare(struct st_cluster *cl, unsigned slot)
{
	int node;

	if (slot >= ST_CLUSTER_SLOTS)
		return STORE_ERR_PROTO;
	node = st_cluster_owner(cl, slot);
	if (node < 0)
		return STORE_ERR_UNAVAILABLE;
	if (cl->link[node].c == NULL || !st_cluster_live(cl, (size_t)node))
		return st_cluster_link_up(cl, (size_t)node);   /* a new connection is prepared */
	if (cl->prepare != NULL && cl->prepare(cl->arg, cl->link[node].c) != 0) {
		snprintf(cl->why, sizeof(cl->why), "%.60s:%u: set-up failed", cl->map->node[node].host,
		    (unsigned)cl->map->node[node].port);
		st_cluster_unlink(cl, (size_t)node);
		return STORE_ERR_UNAVAILABLE;
	}
	return 0;
}

void
st_cluster_set_timeout(struct st_cluster *cl, int ms)
{
	if (ms <= 0 || ms == cl->cmd_timeout_ms)
		return;
	cl->cmd_timeout_ms = ms;
	for (size_t i = 0; i < ST_CLUSTER_MAX_NODES; i++)
		if (cl->link[i].c != NULL && redisSetTimeout(cl->link[i].c, st_cluster_tv(ms)) != REDIS_OK)
			st_cluster_unlink(cl, i);
}

long
st_cluster_dirty_slots(const struct st_cluster *cl, const unsigned *slots, size_t n, unsigned *out,
    int need_dirty)
{
	unsigned char seen[ST_CLUSTER_MAX_NODES];
	long k = 0;

	if (!cl->have_map)
		return need_dirty ? 0 : -1;
	memset(seen, 0, sizeof(seen));
	for (size_t i = 0; i < n; i++) {
		uint16_t d = slots[i] < ST_CLUSTER_SLOTS ? cl->map->slot[slots[i]] : ST_CLUSTER_NO_NODE;

		if (!need_dirty && (d == ST_CLUSTER_NO_NODE || cl->link[d].c == NULL))
			return -1;
		if (d == ST_CLUSTER_NO_NODE || seen[d] || cl->link[d].c == NULL || (need_dirty && !cl->link[d].dirty))
			continue;
		seen[d] = 1;
		out[k++] = slots[i];
	}
	return k;
}

int
st_cluster_lost_dirty(const struct st_cluster *cl)
{
	return cl->lost_dirty;
}

void
st_cluster_clean(struct st_cluster *cl)
{
	for (size_t i = 0; i < ST_CLUSTER_MAX_NODES; i++)
		cl->link[i].dirty = 0;
	cl->lost_dirty = 0;
}
