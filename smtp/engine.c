/*
 * engine.c - the SMTP client engine: pools of sessions on one epoll.
 *
 * Owns the epoll set, the eventfd and mutex-protected submit queue used by
 * other threads, the per-target pools (at most max_conns_per_target
 * sessions, a FIFO of waiting jobs each), the timers (each session's
 * deadline; the epoll timeout is the nearest one) and the reporting of
 * outcomes: exactly one on_done per submitted job, always on the engine
 * thread. The protocol itself lives in session.c. Must never block except
 * in epoll_wait, never log secrets. One exception remains: a target
 * without connect_addr has its host resolved with getaddrinfo on this
 * thread (session.c). txmail's worker never submits one - MX hosts come
 * from server/route.c and the relay's addresses from server/relaydns.c,
 * both on their own threads - so that path is left to other callers (the
 * unit tests).
 *
 * A write to a socket whose peer has gone must not kill the process: the
 * plain path uses MSG_NOSIGNAL, and because OpenSSL writes with write(2),
 * smtp_engine_new sets SIGPIPE to SIG_IGN if it is still at SIG_DFL.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "engine.h"
#include "session.h"
#include "tls.h"

#define ENGINE_MAX_EVENTS 64

struct smtp_pool {
	struct smtp_pool *next;
	struct smtp_target target;      /* key: every field */
	struct smtp_session *sessions;
	int nsessions;
	struct smtp_job *qhead, *qtail; /* waiting jobs, FIFO */
	int dirty;                      /* needs a dispatch pass */
};

struct smtp_engine {
	struct smtp_engine_config cfg;
	struct smtp_session_env env;
	int epfd;
	int evfd;
	pthread_mutex_t mu;
	struct smtp_job *sub_head, *sub_tail;   /* under mu */
	int closing;                            /* under mu */
	int draining;                           /* under mu: smtp_engine_drain was called */
	atomic_int inflight;
	struct smtp_pool *pools;
};

/*
 * elog - an event of the engine itself: about session s (NULL: none) and
 * job (NULL: none), with an error text ("" for none).
 */
static void elog(struct smtp_engine *e, int level, const char *msg,
    const struct smtp_session *s, const struct smtp_job *job, const char *error)
{
	struct smtp_log_event ev;

	if (e->cfg.log == NULL)
		return;
	memset(&ev, 0, sizeof(ev));
	ev.level = level;
	ev.msg = msg;
	ev.job = job;
	ev.conn = s != NULL ? s->id : 0;
	ev.peer = s != NULL ? s->peer : "";
	if (error != NULL && error[0] != '\0') {
		ev.fields[0].key = "error";
		ev.fields[0].value = error;
		ev.nfields = 1;
	}
	e->cfg.log(&ev, e->cfg.arg);
}

void smtp_timeouts_default(struct smtp_timeouts *t)
{
	t->connect = 30;
	t->banner = 300;
	t->ehlo = 300;
	t->tls = 60;
	t->auth = 60;
	t->mail = 300;
	t->rcpt = 300;
	t->data = 120;
	t->block = 180;
	t->dot = 600;
	t->rset = 60;
	t->quit = 10;
	t->idle = 5;
}

struct smtp_engine *smtp_engine_new(const struct smtp_engine_config *cfg,
    char *err, size_t errlen)
{
	struct smtp_engine *e;
	struct epoll_event ev;
	struct sigaction sa;

	e = calloc(1, sizeof(*e));
	if (e == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	e->cfg = *cfg;
	e->epfd = -1;
	e->evfd = -1;
	if (e->cfg.max_conns_per_target <= 0)
		e->cfg.max_conns_per_target = 16;
	if (e->cfg.max_msgs_per_conn <= 0)
		e->cfg.max_msgs_per_conn = 100;
	if (e->cfg.helo_name[0] == '\0')
		snprintf(e->cfg.helo_name, sizeof(e->cfg.helo_name), "localhost");
	e->cfg.helo_name[sizeof(e->cfg.helo_name) - 1] = '\0';
	e->cfg.ca_file[sizeof(e->cfg.ca_file) - 1] = '\0';
	if (strpbrk(e->cfg.helo_name, "\r\n ") != NULL) {
		snprintf(err, errlen, "invalid helo name");
		goto fail;
	}
	pthread_mutex_init(&e->mu, NULL);
	atomic_init(&e->inflight, 0);

	e->env.cfg = &e->cfg;
	e->env.tls = smtp_tls_ctx_new(e->cfg.ca_file, err, errlen);
	if (e->env.tls == NULL)
		goto fail_mu;
	e->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (e->epfd < 0) {
		snprintf(err, errlen, "epoll_create1: %s", strerror(errno));
		goto fail_mu;
	}
	e->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (e->evfd < 0) {
		snprintf(err, errlen, "eventfd: %s", strerror(errno));
		goto fail_mu;
	}
	memset(&ev, 0, sizeof(ev));
	ev.events = EPOLLIN;
	ev.data.ptr = NULL;
	if (epoll_ctl(e->epfd, EPOLL_CTL_ADD, e->evfd, &ev) != 0) {
		snprintf(err, errlen, "epoll_ctl: %s", strerror(errno));
		goto fail_mu;
	}
	if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL) {
		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = SIG_IGN;
		sigemptyset(&sa.sa_mask);
		(void)sigaction(SIGPIPE, &sa, NULL);
	}
	return e;
fail_mu:
	pthread_mutex_destroy(&e->mu);
fail:
	if (e->evfd >= 0)
		close(e->evfd);
	if (e->epfd >= 0)
		close(e->epfd);
	smtp_tls_ctx_free(e->env.tls);
	free(e);
	return NULL;
}

void smtp_engine_wake(struct smtp_engine *e)
{
	uint64_t one = 1;
	ssize_t n;

	n = write(e->evfd, &one, sizeof(one));
	(void)n;   /* EAGAIN: the counter is already non-zero, the loop will wake */
}

int smtp_engine_submit(struct smtp_engine *e, struct smtp_job *job)
{
	int rc = 0;

	pthread_mutex_lock(&e->mu);
	if (e->closing || e->draining) {
		rc = -1;
		goto out;
	}
	job->next = NULL;
	if (e->sub_tail != NULL)
		e->sub_tail->next = job;
	else
		e->sub_head = job;
	e->sub_tail = job;
	atomic_fetch_add(&e->inflight, 1);
out:
	pthread_mutex_unlock(&e->mu);
	if (rc == 0)
		smtp_engine_wake(e);
	return rc;
}

int smtp_engine_inflight(const struct smtp_engine *e)
{
	return atomic_load(&((struct smtp_engine *)e)->inflight);
}

static void report(struct smtp_engine *e, struct smtp_job *job, const struct smtp_outcome *o)
{
	job->next = NULL;
	atomic_fetch_sub(&e->inflight, 1);
	e->cfg.on_done(job, o, e->cfg.arg);
}

static void report_shutdown(struct smtp_engine *e, struct smtp_job *job)
{
	struct smtp_outcome o;

	memset(&o, 0, sizeof(o));
	o.result = SMTP_RESULT_TEMPFAIL;
	snprintf(o.text, sizeof(o.text), "engine shut down before delivery started");
	o.stage = "shutdown";
	for (size_t i = 0; job->rcpts != NULL && i < job->nrcpts; i++)
		job->rcpts[i].out = o;   /* never started: every recipient shares it */
	report(e, job, &o);
}

static int target_eq(const struct smtp_target *a, const struct smtp_target *b)
{
	return a->port == b->port && a->tls == b->tls && a->no_verify == b->no_verify &&
	    strcmp(a->host, b->host) == 0 && strcmp(a->user, b->user) == 0 &&
	    strcmp(a->pass, b->pass) == 0 && strcmp(a->connect_addr, b->connect_addr) == 0;
}

static struct smtp_pool *pool_get(struct smtp_engine *e, const struct smtp_target *t)
{
	struct smtp_pool *p;

	for (p = e->pools; p != NULL; p = p->next)
		if (target_eq(&p->target, t))
			return p;
	p = calloc(1, sizeof(*p));
	if (p == NULL)
		abort();   /* out of memory */
	p->target = *t;
	p->target.host[sizeof(p->target.host) - 1] = '\0';
	p->target.user[sizeof(p->target.user) - 1] = '\0';
	p->target.pass[sizeof(p->target.pass) - 1] = '\0';
	p->target.connect_addr[sizeof(p->target.connect_addr) - 1] = '\0';
	p->next = e->pools;
	e->pools = p;
	return p;
}

static void pool_push_front(struct smtp_pool *p, struct smtp_job *job)
{
	job->next = p->qhead;
	p->qhead = job;
	if (p->qtail == NULL)
		p->qtail = job;
	p->dirty = 1;
}

static void pool_push_back(struct smtp_pool *p, struct smtp_job *job)
{
	job->next = NULL;
	if (p->qtail != NULL)
		p->qtail->next = job;
	else
		p->qhead = job;
	p->qtail = job;
	p->dirty = 1;
}

static struct smtp_job *pool_pop(struct smtp_pool *p)
{
	struct smtp_job *j = p->qhead;

	if (j != NULL) {
		p->qhead = j->next;
		if (p->qhead == NULL)
			p->qtail = NULL;
		j->next = NULL;
	}
	return j;
}

static void session_unlink(struct smtp_pool *p, struct smtp_session *s)
{
	struct smtp_session **pp;

	for (pp = &p->sessions; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == s) {
			*pp = s->next;
			p->nsessions--;
			return;
		}
	}
}

/*
 * after - act on what a session recorded: report a finished job, give back
 * a job to requeue, free a closed session, keep epoll interest in step.
 */
static void after(struct smtp_engine *e, struct smtp_session *s)
{
	struct smtp_pool *p = s->pool;

	if (s->done_job != NULL) {
		struct smtp_job *j = s->done_job;
		struct smtp_outcome o = s->done;
		s->done_job = NULL;
		report(e, j, &o);
	}
	if (s->requeue_job != NULL) {
		pool_push_front(p, s->requeue_job);
		s->requeue_job = NULL;
	}
	if (s->state == SMTP_STATE_CLOSED) {
		if (s->ep_added && s->fd >= 0)
			(void)epoll_ctl(e->epfd, EPOLL_CTL_DEL, s->fd, NULL);
		session_unlink(p, s);
		smtp_session_free(s);   /* closes the fd: epoll forgets it */
		p->dirty = 1;
		return;
	}
	if (s->state == SMTP_STATE_IDLE && s->job == NULL) {
		if (s->msgs >= e->cfg.max_msgs_per_conn)
			smtp_session_quit(s);
		else
			p->dirty = 1;
	}
	{
		uint32_t want = smtp_session_events(s);
		struct epoll_event ev;

		/*
		 * A new socket (the next address of the target): closing the old
		 * one took it out of the epoll set, and the new one often has the
		 * same fd number, so the number alone does not tell.
		 */
		if (s->ep_added && (s->ep_fd != s->fd || s->ep_seq != s->fd_seq))
			s->ep_added = 0;
		if (!s->ep_added || want != s->ep_events) {
			memset(&ev, 0, sizeof(ev));
			ev.events = want;
			ev.data.ptr = s;
			int rc = epoll_ctl(e->epfd, s->ep_added ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, s->fd, &ev);
			if (rc != 0) {
				elog(e, 3, "epoll_ctl failed", s, s->job, strerror(errno));
				smtp_session_abort(s, "connect", "internal error: epoll_ctl failed");
				after(e, s);
				return;
			}
			s->ep_added = 1;
			s->ep_fd = s->fd;
			s->ep_seq = s->fd_seq;
			s->ep_events = want;
		}
	}
}

/* dispatch - hand waiting jobs to idle sessions, open sessions up to the cap. */
static void dispatch(struct smtp_engine *e, struct smtp_pool *p)
{
	p->dirty = 0;
	while (p->qhead != NULL) {
		struct smtp_session *s, *idle = NULL;
		struct smtp_job *j;

		for (s = p->sessions; s != NULL; s = s->next) {
			if (s->state == SMTP_STATE_IDLE && s->job == NULL &&
			    s->msgs < e->cfg.max_msgs_per_conn) {
				idle = s;
				break;
			}
		}
		if (idle != NULL) {
			j = pool_pop(p);
			smtp_session_start_job(idle, j);
			after(e, idle);
			continue;
		}
		if (p->nsessions >= e->cfg.max_conns_per_target)
			break;
		j = pool_pop(p);
		s = smtp_session_new(&e->env, &p->target, j);
		if (s == NULL) {
			pool_push_front(p, j);
			elog(e, 3, "out of memory for a session", NULL, j, "");
			break;
		}
		s->pool = p;
		s->next = p->sessions;
		p->sessions = s;
		p->nsessions++;
		after(e, s);
	}
}

static void dispatch_all(struct smtp_engine *e)
{
	struct smtp_pool *p, **pp;
	int again = 1;

	while (again) {
		again = 0;
		for (p = e->pools; p != NULL; p = p->next) {
			if (p->dirty) {
				dispatch(e, p);
				again |= p->dirty;
			}
		}
	}
	/* forget pools with nothing left */
	for (pp = &e->pools; (p = *pp) != NULL;) {
		if (p->sessions == NULL && p->qhead == NULL) {
			*pp = p->next;
			memset(p->target.pass, 0, sizeof(p->target.pass));
			free(p);
		} else {
			pp = &p->next;
		}
	}
}

static void take_submissions(struct smtp_engine *e)
{
	struct smtp_job *list, *j;
	uint64_t cnt;
	ssize_t n;

	n = read(e->evfd, &cnt, sizeof(cnt));
	(void)n;
	pthread_mutex_lock(&e->mu);
	list = e->sub_head;
	e->sub_head = e->sub_tail = NULL;
	pthread_mutex_unlock(&e->mu);
	while ((j = list) != NULL) {
		list = j->next;
		pool_push_back(pool_get(e, &j->target), j);
	}
}

static int64_t nearest_deadline(struct smtp_engine *e)
{
	int64_t best = 0;
	struct smtp_pool *p;
	struct smtp_session *s;

	for (p = e->pools; p != NULL; p = p->next)
		for (s = p->sessions; s != NULL; s = s->next)
			if (s->deadline_ms != 0 && (best == 0 || s->deadline_ms < best))
				best = s->deadline_ms;
	return best;
}

static void run_timers(struct smtp_engine *e)
{
	int64_t now = smtp_now_ms();
	struct smtp_pool *p;
	struct smtp_session *s, *next;

	for (p = e->pools; p != NULL; p = p->next) {
		for (s = p->sessions; s != NULL; s = next) {
			next = s->next;   /* after() may free s; it never frees others */
			if (s->deadline_ms != 0 && s->deadline_ms <= now) {
				smtp_session_on_timeout(s);
				after(e, s);
			}
		}
	}
}

/*
 * drain_now - while draining: jobs not started (waiting in a pool, or on a
 * session that has not sent MAIL yet) are reported "shutdown" and idle
 * sessions quit, so only transactions already begun go on.
 */
static void drain_now(struct smtp_engine *e)
{
	struct smtp_pool *p;
	struct smtp_session *s, *next;
	struct smtp_job *j;
	int draining;

	pthread_mutex_lock(&e->mu);
	draining = e->draining;
	pthread_mutex_unlock(&e->mu);
	if (!draining)
		return;
	for (p = e->pools; p != NULL; p = p->next) {
		while ((j = pool_pop(p)) != NULL)
			report_shutdown(e, j);
		for (s = p->sessions; s != NULL; s = next) {
			next = s->next;   /* after() may free s; it never frees others */
			if (s->job != NULL && !smtp_session_in_transaction(s)) {
				smtp_session_abort(s, "shutdown", "engine shut down before delivery started");
				after(e, s);
			} else if (s->job == NULL && s->state == SMTP_STATE_IDLE) {
				smtp_session_quit(s);
				after(e, s);
			}
		}
		while ((j = pool_pop(p)) != NULL)   /* given back by a session just now */
			report_shutdown(e, j);
		p->dirty = 0;
	}
}

void smtp_engine_drain(struct smtp_engine *e)
{
	pthread_mutex_lock(&e->mu);
	e->draining = 1;
	pthread_mutex_unlock(&e->mu);
	smtp_engine_wake(e);
}

int smtp_engine_run(struct smtp_engine *e, int timeout_ms)
{
	struct epoll_event evs[ENGINE_MAX_EVENTS];
	int64_t dl = nearest_deadline(e);
	int n, i, wait = timeout_ms;

	if (dl != 0) {
		int64_t d = dl - smtp_now_ms();
		if (d < 0)
			d = 0;
		if (wait < 0 || d < wait)
			wait = (int)(d > 1000000 ? 1000000 : d);
	}
	n = epoll_wait(e->epfd, evs, ENGINE_MAX_EVENTS, wait);
	if (n < 0) {
		if (errno == EINTR)
			return 0;
		elog(e, 3, "epoll_wait failed", NULL, NULL, strerror(errno));
		return -1;
	}
	for (i = 0; i < n; i++) {
		struct smtp_session *s = evs[i].data.ptr;

		if (s == NULL) {
			take_submissions(e);
			continue;
		}
		smtp_session_on_events(s, evs[i].events);
		after(e, s);
	}
	run_timers(e);
	drain_now(e);
	dispatch_all(e);
	return 0;
}

void smtp_engine_free(struct smtp_engine *e)
{
	struct smtp_pool *p;
	struct smtp_job *j;

	if (e == NULL)
		return;
	pthread_mutex_lock(&e->mu);
	e->closing = 1;
	pthread_mutex_unlock(&e->mu);
	take_submissions(e);
	while ((p = e->pools) != NULL) {
		struct smtp_session *s;

		while ((s = p->sessions) != NULL) {
			if (smtp_session_in_transaction(s))
				smtp_session_abort(s, "cut", "engine shut down during the transaction");
			else
				smtp_session_abort(s, "shutdown", "engine shut down before delivery started");
			if (s->done_job != NULL) {
				report(e, s->done_job, &s->done);
				s->done_job = NULL;
			}
			if (s->requeue_job != NULL) {
				report_shutdown(e, s->requeue_job);
				s->requeue_job = NULL;
			}
			p->sessions = s->next;
			smtp_session_free(s);
		}
		while ((j = pool_pop(p)) != NULL)
			report_shutdown(e, j);
		e->pools = p->next;
		memset(p->target.pass, 0, sizeof(p->target.pass));
		free(p);
	}
	close(e->evfd);
	close(e->epfd);
	smtp_tls_ctx_free(e->env.tls);
	pthread_mutex_destroy(&e->mu);
	free(e);
}
