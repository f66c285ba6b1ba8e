/*
 * store_watch.c - Sentinel's +switch-master, heard as it happens: one
 * thread per process (while any redis+sentinel:// handle is open)
 * subscribed to +switch-master on one sentinel at a time, in the order
 * st_connect asks them. When the sentinels announce a new primary for our
 * master name, every handle still connected from before is told at once:
 * the generation (st_watch_gen) moves on, so an idle handle reconnects
 * before its next command instead of sending it to the old primary, and
 * the sockets of the handles connected before are shut down, so a command
 * already waiting on a frozen or cut-off primary fails now instead of
 * after TXMAIL_REDIS_TIMEOUT (a blocking read: its block time on top).
 * Without it a handle learns only when its connection closes, errors
 * (-READONLY, -LOADING) or times out.
 *
 * Handles (store_conn.c) register at store_open and leave at store_close,
 * and set their connection through st_watch_set_conn, under the one lock
 * this thread holds while it shuts sockets down: it never touches a
 * context that is being freed, and a shut-down socket stays the owner's to
 * free. The owner's next I/O on it fails as for a connection lost (the
 * accept's settle path included: store_messages.c).
 *
 * It must never block a handle's thread for long (the lock guards a list
 * and a pointer swap), log a password, or outlive the last handle (the
 * thread is woken through a pipe and joined at the last store_close).
 */
#include "store_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "store_sentinel.h"
#include "util.h"

#define SW_RETRY_MS 500      /* between sentinels that could not be subscribed to */
#define SW_READ_TIMEOUT_MS 2000   /* a message begun must be complete within this */

static pthread_mutex_t sw_life = PTHREAD_MUTEX_INITIALIZER;   /* add/remove, thread start and join */
static pthread_mutex_t sw_mu = PTHREAD_MUTEX_INITIALIZER;     /* the handles and their connections */
static struct store **sw_handles;
static size_t sw_n, sw_cap;
static struct redis_addr sw_addr;   /* the first handle's sentinels, master name and password */
static pthread_t sw_thread;
static int sw_running;
static int sw_wake[2] = { -1, -1 };
static atomic_int sw_stop;
static atomic_uint sw_gen;

unsigned
st_watch_gen(void)
{
	return atomic_load(&sw_gen);
}

void
st_watch_set_conn(struct store *s, redisContext *c, unsigned gen)
{
	redisContext *old;

	if (!s->addr.is_sentinel) {
		old = s->c;
		s->c = c;
	} else {
		pthread_mutex_lock(&sw_mu);
		old = s->c;
		s->c = c;
		s->watch_gen = gen;
		pthread_mutex_unlock(&sw_mu);
	}
	if (old && old != c)
		redisFree(old);
}

/* sw_switched - a new primary: a new generation, and every older connection shut down. */
static void
sw_switched(const char *from, const char *to)
{
	unsigned gen = atomic_fetch_add(&sw_gen, 1) + 1;
	size_t shut = 0;

	pthread_mutex_lock(&sw_mu);
	for (size_t i = 0; i < sw_n; i++) {
		struct store *h = sw_handles[i];

		if (h->c && h->watch_gen != gen && h->c->fd >= 0) {
			(void)shutdown(h->c->fd, SHUT_RDWR);
			shut++;
		}
	}
	pthread_mutex_unlock(&sw_mu);
	log_info("sentinel reports a failover, reconnecting", "master=%s from=%s to=%s connections=%zu",
	    sw_addr.master, from, to, shut);
}

/*
 * sw_subscribe - a connection to sentinel sn subscribed to +switch-master
 * (AUTH first with TXMAIL_REDIS_SENTINEL_PASSWORD), or NULL with why.
 */
static redisContext *
sw_subscribe(const struct redis_hostport *sn, char *why, size_t whylen)
{
	const char *sub[2] = { "SUBSCRIBE", "+switch-master" };
	redisContext *c = st_sentinel_open(&sw_addr, sn, why, whylen);
	redisReply *r = NULL;

	if (!c)
		return NULL;
	(void)redisEnableKeepAlive(c);
	r = redisCommandArgv(c, 2, sub, NULL);
	if (r && r->type == REDIS_REPLY_ARRAY) {
		freeReplyObject(r);
		return c;
	}
	snprintf(why, whylen, "SUBSCRIBE: %s", r ? "refused" : "i/o error");
	if (r)
		freeReplyObject(r);
	redisFree(c);
	return NULL;
}

/* sw_nap - wait ms or until woken to stop; 1 when stopping. */
static int
sw_nap(int ms)
{
	struct pollfd p = { .fd = sw_wake[0], .events = POLLIN };

	if (atomic_load(&sw_stop))
		return 1;
	(void)poll(&p, 1, ms);
	return atomic_load(&sw_stop);
}

/*
 * sw_listen - read c's messages until it fails or a stop: each one that
 * announces a new primary for our master name acts. 0 when stopping.
 */
static int
sw_listen(redisContext *c)
{
	for (;;) {
		struct pollfd p[2] = { { .fd = c->fd, .events = POLLIN }, { .fd = sw_wake[0], .events = POLLIN } };
		void *v = NULL;

		if (poll(p, 2, -1) < 0 && errno != EINTR)
			return -1;
		if (atomic_load(&sw_stop))
			return 0;
		if (!(p[0].revents & (POLLIN | POLLHUP | POLLERR)))
			continue;
		if (redisBufferRead(c) != REDIS_OK)
			return -1;
		/* every complete message now buffered; a partial one waits for the next poll */
		while (redisReaderGetReply(c->reader, &v) == REDIS_OK && v != NULL) {
			char from[300], to[300];
			int k = st_sentinel_switch(v, sw_addr.master, from, sizeof(from), to, sizeof(to));

			if (k == 1)
				sw_switched(from, to);
			else if (k == ST_SENTINEL_BAD)
				log_warn("sentinel sent a +switch-master message of an unknown shape");
			freeReplyObject(v);
			v = NULL;
		}
		if (c->reader->err)
			return -1;
	}
}

static void *
sw_main(void *arg)
{
	size_t n = sw_addr.nsentinels, first = 0;
	int warned = 0;

	(void)arg;
	while (!atomic_load(&sw_stop)) {
		size_t order[REDIS_MAX_SENTINELS];
		redisContext *c = NULL;
		char why[256] = "";

		st_sentinel_order(first, n, order);
		for (size_t k = 0; k < n && c == NULL && !atomic_load(&sw_stop); k++) {
			c = sw_subscribe(&sw_addr.sentinels[order[k]], why, sizeof(why));
			if (c)
				first = order[k];
		}
		if (c == NULL) {
			if (!warned++)
				log_warn("cannot subscribe to any sentinel for failovers, retrying",
				    "master=%s error=%s", sw_addr.master, why);
			(void)sw_nap(SW_RETRY_MS);
			continue;
		}
		if (warned)
			log_info("subscribed to a sentinel for failovers again", "master=%s sentinel=%s:%u",
			    sw_addr.master, sw_addr.sentinels[first].host, (unsigned)sw_addr.sentinels[first].port);
		warned = 0;
		{
			struct timeval tv = { SW_READ_TIMEOUT_MS / 1000, (SW_READ_TIMEOUT_MS % 1000) * 1000 };

			(void)redisSetTimeout(c, tv);
		}
		if (sw_listen(c) != 0 && !atomic_load(&sw_stop))
			first = (first + 1) % n;   /* that sentinel went away: the next one first */
		redisFree(c);
		if (!atomic_load(&sw_stop))
			(void)sw_nap(50);
	}
	return NULL;
}

void
st_watch_add(struct store *s)
{
	if (!s->addr.is_sentinel)
		return;
	pthread_mutex_lock(&sw_life);
	pthread_mutex_lock(&sw_mu);
	if (sw_n == sw_cap) {
		size_t cap = sw_cap ? sw_cap * 2 : 16;
		struct store **nh = realloc(sw_handles, cap * sizeof(*nh));

		if (nh == NULL) {
			/* not watched: it still learns of a failover by its connection failing */
			pthread_mutex_unlock(&sw_mu);
			pthread_mutex_unlock(&sw_life);
			log_warn("out of memory: a redis handle is not told of failovers at once");
			return;
		}
		sw_handles = nh;
		sw_cap = cap;
	}
	sw_handles[sw_n++] = s;
	s->watched = 1;
	pthread_mutex_unlock(&sw_mu);
	if (!sw_running) {
		sw_addr = s->addr;
		atomic_store(&sw_stop, 0);
		if (pipe2(sw_wake, O_CLOEXEC | O_NONBLOCK) != 0) {
			log_warn("cannot watch the sentinels for failovers", "error=%s", strerror(errno));
		} else if (pthread_create(&sw_thread, NULL, sw_main, NULL) != 0) {
			log_warn("cannot watch the sentinels for failovers", "error=%s", "thread");
			close(sw_wake[0]);
			close(sw_wake[1]);
			sw_wake[0] = sw_wake[1] = -1;
		} else {
			sw_running = 1;
		}
	}
	pthread_mutex_unlock(&sw_life);
}

void
st_watch_remove(struct store *s)
{
	int join = 0;

	if (!s->watched)
		return;
	pthread_mutex_lock(&sw_life);
	pthread_mutex_lock(&sw_mu);
	for (size_t i = 0; i < sw_n; i++)
		if (sw_handles[i] == s) {
			sw_handles[i] = sw_handles[--sw_n];
			break;
		}
	s->watched = 0;
	if (sw_n == 0) {
		free(sw_handles);
		sw_handles = NULL;
		sw_cap = 0;
		join = sw_running;
	}
	pthread_mutex_unlock(&sw_mu);
	if (join) {
		atomic_store(&sw_stop, 1);
		if (write(sw_wake[1], "x", 1) < 0) {
			/* full or closed: the stop flag is read at the next wake-up anyway */
		}
		pthread_join(sw_thread, NULL);
		close(sw_wake[0]);
		close(sw_wake[1]);
		sw_wake[0] = sw_wake[1] = -1;
		explicit_bzero(sw_addr.sentinel_pass, sizeof(sw_addr.sentinel_pass));
		explicit_bzero(sw_addr.pass, sizeof(sw_addr.pass));
		sw_running = 0;
	}
	pthread_mutex_unlock(&sw_life);
}
