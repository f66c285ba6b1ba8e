/*
 * http_deadlines.c - the HTTP layer's clocks against clients that hold
 * connections: a deadline for each request's headers and for each body,
 * kept in three queues in deadline order, and the sweeper thread that
 * shuts down (shutdown(2)) the sockets past theirs, and those of bodies
 * whose client has hung up (hd_reap_gone).
 *
 * Part of the HTTP module (http.c drives it through http_internal.h): it
 * owns struct http_deadlines and the per-connection entries MHD hands back
 * as socket_context. It must never close a descriptor (MHD owns them; the
 * sweeper only shuts one down, under the lock, while its entry is linked),
 * never log per connection (at most one line a second says how many were
 * cut), and never call anything outside the HTTP module but log and util.
 */
#include "http_internal.h"

#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>

#include <microhttpd.h>

#include "config.h"
#include "log.h"
#include "util.h"

#define HTTP_SWEEP_BATCH 256        /* connections cut under one hold of the deadline lock */
#define HTTP_CUT_LOG_MS 1000        /* at most one "closed N connections" line a second */
#define HTTP_GONE_EVERY_MS 1000     /* bodies being received are checked for a hung-up client */
#define HTTP_GONE_BATCH 1024        /* at most this many a check (the oldest first) */

/*
 * MHD's connection timeout is an idle timeout: a client that trickles one
 * header byte a second is never idle and would keep its connection (and,
 * with enough of them, every connection) for ever. So each connection
 * gets a deadline for its request headers: TXMAIL_HTTP_HEADER_TIMEOUT
 * after it was accepted (queue FRESH), or, on a kept-alive connection,
 * TXMAIL_HTTP_TIMEOUT + TXMAIL_HTTP_HEADER_TIMEOUT after the previous
 * request ended (queue KEPT: the idle allowance MHD enforces, then the
 * header allowance), so keep-alive idling is judged by MHD alone. MHD
 * calls http_access once the headers are complete: that stops the clock.
 * A sweeper thread shuts down (shutdown(2): MHD owns the descriptor and
 * closes it) each socket past its deadline; MHD then sees the end of the
 * stream and releases the connection.
 *
 * Every deadline is "now + a per-queue constant", so appending keeps each
 * queue in deadline order: starting, stopping and re-arming the clock are
 * O(1) under one short lock, and the sweeper only looks at queue heads.
 * A descriptor is shut down only under that lock and only while its entry
 * is linked; MHD's CLOSED notification unlinks the entry (under the lock)
 * before MHD closes the descriptor, so a reused number is never touched.
 *
 * A request that takes a body gets a second clock when its headers are in
 * (queue BODY, TXMAIL_HTTP_BODY_TIMEOUT), stopped when the last body byte
 * arrived: MHD cannot queue an answer in the middle of a body, so a body
 * past its deadline is cut the same way (no answer; the access line says
 * end=body_timeout) and http_completed frees it.
 */

static void
hd_unlink(struct http_deadlines *d, struct http_conn *c)
{
	int q = c->queue;

	if (q < 0)
		return;
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		d->head[q] = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	else
		d->tail[q] = c->prev;
	c->prev = c->next = NULL;
	c->queue = -1;
}

/*
 * (re)start c's clock in queue q; the lock is held. A body arriving in an
 * empty BODY queue wakes the sweeper: asleep, it plans only for the
 * deadlines it saw (up to the header allowance, 10 s), and the hang-up
 * checks of hd_reap_gone must start within HTTP_GONE_EVERY_MS.
 */
static void
hd_arm(struct http_deadlines *d, struct http_conn *c, int q)
{
	hd_unlink(d, c);
	if (q == HTTP_Q_BODY && d->head[q] == NULL)
		pthread_cond_signal(&d->wake);
	c->deadline_ms = util_mono_ms() + d->after_ms[q];
	c->queue = q;
	c->hung_up = 0;
	c->prev = d->tail[q];
	c->next = NULL;
	if (d->tail[q] != NULL)
		d->tail[q]->next = c;
	else
		d->head[q] = c;
	d->tail[q] = c;
}

/* the tracking entry of conn, NULL when it has none (out of memory at accept) */
static struct http_conn *
hd_conn(struct MHD_Connection *conn)
{
	const union MHD_ConnectionInfo *info =
	    MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);

	return info != NULL ? info->socket_context : NULL;
}

/*
 * http_deadlines_mark - headers or body complete (q < 0: stop the clock), body due
 * (q = HTTP_Q_BODY) or request over (q = HTTP_Q_KEPT). Returns 1 when the
 * sweeper had cut this connection past a body deadline (and forgets it).
 */
int
http_deadlines_mark(struct http_server *h, struct MHD_Connection *conn, int q)
{
	struct http_conn *c = hd_conn(conn);
	int cut;

	if (c == NULL)
		return 0;
	pthread_mutex_lock(&h->hd.lock);
	if (q < 0)
		hd_unlink(&h->hd, c);
	else
		hd_arm(&h->hd, c, q);
	cut = c->body_cut;
	c->body_cut = 0;
	pthread_mutex_unlock(&h->hd.lock);
	return cut;
}

void
http_notify_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
    enum MHD_ConnectionNotificationCode toe)
{
	struct http_server *h = cls;
	struct http_conn *c = *socket_context;

	if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
		const union MHD_ConnectionInfo *info =
		    MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);

		if (info == NULL || (c = calloc(1, sizeof(*c))) == NULL)
			return;   /* untracked: MHD's idle timeout still applies */
		c->fd = info->connect_fd;
		c->queue = -1;
		pthread_mutex_lock(&h->hd.lock);
		hd_arm(&h->hd, c, HTTP_Q_FRESH);
		pthread_mutex_unlock(&h->hd.lock);
		*socket_context = c;
	} else if (toe == MHD_CONNECTION_NOTIFY_CLOSED && c != NULL) {
		pthread_mutex_lock(&h->hd.lock);
		hd_unlink(&h->hd, c);
		pthread_mutex_unlock(&h->hd.lock);
		free(c);
		*socket_context = NULL;
	}
}

/*
 * hd_reap_gone - the bodies being received whose client has hung up
 * (POLLRDHUP: its FIN is in; a body can never be completed after it) are
 * shut down like one past its deadline, so MHD ends them and
 * http_completed gives their budget back. libmicrohttpd 0.9.75 (epoll,
 * edge-triggered) can miss such a hang-up: its last read of the body was
 * short, so it waits for an edge that came before it; the connection then
 * sits in CLOSE-WAIT holding its reservation until the body deadline (seen
 * under load in test_http_body_bounds.py: one of four aborted uploads kept
 * its 3.25 MiB for more than 15 s). Only at the second check that sees
 * the hang-up (a second later): a client that sent its whole body and then
 * half-closed must not lose its request while MHD is still reading it.
 * The lock is held; returns how many.
 */
static size_t
hd_reap_gone(struct http_deadlines *d)
{
	struct pollfd pfd[HTTP_GONE_BATCH];
	struct http_conn *conn[HTTP_GONE_BATCH];
	size_t n = 0, gone = 0;

	for (struct http_conn *c = d->head[HTTP_Q_BODY]; c != NULL && n < HTTP_GONE_BATCH; c = c->next) {
		pfd[n].fd = c->fd;
		pfd[n].events = POLLRDHUP;
		pfd[n].revents = 0;
		conn[n++] = c;
	}
	if (n == 0 || poll(pfd, n, 0) <= 0)
		return 0;
	for (size_t i = 0; i < n; i++) {
		if ((pfd[i].revents & (POLLRDHUP | POLLHUP | POLLERR)) == 0)
			continue;
		if (!conn[i]->hung_up) {
			conn[i]->hung_up = 1;   /* MHD gets until the next check to notice it */
			continue;
		}
		hd_unlink(d, conn[i]);
		shutdown(conn[i]->fd, SHUT_RDWR);
		gone++;
	}
	return gone;
}

/* hd_log_cuts - the sweeper's report of what it cut (headers, bodies); the lock is not held */
static void
hd_log_cuts(const struct http_deadlines *d, size_t hdr, size_t body)
{
	char dur[32];

	if (hdr > 0)
		log_warn("slow request headers, connections closed", "count=%zu header_timeout=%s",
		    hdr, util_fmt_duration((double)d->after_ms[HTTP_Q_FRESH] / 1000.0, dur, sizeof(dur)));
	if (body > 0)
		log_warn("slow request bodies, connections closed", "count=%zu body_timeout=%s",
		    body, util_fmt_duration((double)d->after_ms[HTTP_Q_BODY] / 1000.0, dur, sizeof(dur)));
}

/*
 * hd_sweeper - shuts down the connections past their deadline, at most
 * HTTP_SWEEP_BATCH under one hold of the lock, and says how many it cut at
 * most once a second (an attack must not become a flood of log lines).
 */
static void *
hd_sweeper(void *arg)
{
	struct http_server *h = arg;
	struct http_deadlines *d = &h->hd;
	size_t cut = 0, cut_body = 0;
	int64_t logged = 0, gone_at = 0;

	pthread_mutex_lock(&d->lock);
	while (!d->stop) {
		int64_t now = util_mono_ms();
		int64_t next = now + d->after_ms[HTTP_Q_FRESH];
		size_t batch = 0;
		struct timespec ts;

		if (d->head[HTTP_Q_BODY] != NULL && now >= gone_at) {
			(void)hd_reap_gone(d);   /* no log line: a client going away is not news */
			gone_at = now + HTTP_GONE_EVERY_MS;
		}

		for (int q = 0; q < HTTP_NQ; q++) {
			struct http_conn *c;

			if (now + d->after_ms[q] < next)
				next = now + d->after_ms[q];
			while ((c = d->head[q]) != NULL && c->deadline_ms <= now && batch < HTTP_SWEEP_BATCH) {
				hd_unlink(d, c);
				shutdown(c->fd, SHUT_RDWR);
				c->body_cut = q == HTTP_Q_BODY;
				if (q == HTTP_Q_BODY)
					cut_body++;
				else
					cut++;
				batch++;
			}
			if (c != NULL && c->deadline_ms < next)
				next = c->deadline_ms;
		}
		if (batch == HTTP_SWEEP_BATCH || (cut + cut_body > 0 && now - logged >= HTTP_CUT_LOG_MS)) {
			pthread_mutex_unlock(&d->lock);   /* let MHD's threads in between batches */
			if (cut + cut_body > 0 && now - logged >= HTTP_CUT_LOG_MS) {
				hd_log_cuts(d, cut, cut_body);
				cut = cut_body = 0;
				logged = now;
			}
			pthread_mutex_lock(&d->lock);
			continue;
		}
		if (cut + cut_body > 0 && logged + HTTP_CUT_LOG_MS < next)
			next = logged + HTTP_CUT_LOG_MS;
		if (d->head[HTTP_Q_BODY] != NULL && gone_at < next)
			next = gone_at;
		ts.tv_sec = (time_t)(next / 1000);
		ts.tv_nsec = (long)(next % 1000) * 1000000L;
		pthread_cond_timedwait(&d->wake, &d->lock, &ts);
	}
	pthread_mutex_unlock(&d->lock);
	return NULL;
}

/* http_deadlines_start - the lock, the queues and the sweeper; 0 or -1 with err. */
int
http_deadlines_start(struct http_server *h, char *err, size_t errlen)
{
	struct http_deadlines *d = &h->hd;
	pthread_condattr_t ca;
	double hdr = h->cfg->http_header_timeout > 0 ? h->cfg->http_header_timeout :
	    HTTP_HEADER_TIMEOUT_S;
	int idle = h->cfg->http_timeout > 0 ? h->cfg->http_timeout : HTTP_CONNECTION_TIMEOUT_S;
	double body = h->cfg->http_body_timeout > 0 ? h->cfg->http_body_timeout : HTTP_BODY_TIMEOUT_S;

	d->after_ms[HTTP_Q_FRESH] = (int64_t)(hdr * 1000.0);
	d->after_ms[HTTP_Q_KEPT] = (int64_t)idle * 1000 + d->after_ms[HTTP_Q_FRESH];
	d->after_ms[HTTP_Q_BODY] = (int64_t)(body * 1000.0);
	if (d->after_ms[HTTP_Q_FRESH] < 1)
		d->after_ms[HTTP_Q_FRESH] = 1;
	if (d->after_ms[HTTP_Q_BODY] < 1)
		d->after_ms[HTTP_Q_BODY] = 1;
	pthread_mutex_init(&d->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&d->wake, &ca);
	pthread_condattr_destroy(&ca);
	if (pthread_create(&d->thread, NULL, hd_sweeper, h) != 0) {
		snprintf(err, errlen, "cannot start the HTTP header-deadline thread");
		return -1;
	}
	d->running = 1;
	return 0;
}

/* http_deadlines_stop - ends the sweeper; the queues are empty once MHD has stopped */
void
http_deadlines_stop(struct http_server *h)
{
	struct http_deadlines *d = &h->hd;

	if (!d->running)
		return;
	pthread_mutex_lock(&d->lock);
	d->stop = 1;
	pthread_cond_signal(&d->wake);
	pthread_mutex_unlock(&d->lock);
	pthread_join(d->thread, NULL);
	d->running = 0;
}
