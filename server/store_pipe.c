/*
 * store_pipe.c - group commit for the accept path: one Redis connection
 * shared by the HTTP threads, on which every enqueue waiting at a moment
 * goes out in one write, its replies read back in order.
 *
 * Why: each HTTP thread blocks in its enqueue until Redis has answered
 * (202 only when durable). With `appendfsync always` Redis fsyncs once per
 * event-loop turn for whatever its clients wrote in that turn; a thread
 * that sends alone makes one fsync its own. Here the threads queue their
 * formatted commands and one of them, the leader, sends all that are queued
 * (up to ST_PIPE_BATCH) with st_run and hands each its reply; those that
 * came meanwhile wait, and the first of them leads the next round trip.
 * No thread of its own and no eventfd: a request costs a mutex, and one
 * condition-variable wake-up when another thread carried it (the
 * leader/follower way of group commit), never a hop through a third
 * thread.
 *
 * Owns the shared connection (a struct store used only by the leader of the
 * moment, under the lead flag) and the queue. It never decides what a reply
 * means (st_enqueue does), never settles a lost reply (the caller does, on
 * its own connection: docs/store.md, "An enqueue whose reply is lost"), and
 * never sends a command whose caller has given up: a queued command past
 * its deadline (TXMAIL_REDIS_TIMEOUT after it was queued) is taken out
 * unsent, so its caller may answer "certainly not stored".
 *
 * Bounds: the queue holds at most one command per waiting thread (each
 * caller blocks on its own), at most ST_PIPE_QUEUE in all (more: refused
 * unsent); a round trip carries at most ST_PIPE_BATCH commands and
 * ST_PIPE_BATCH_BYTES (but always one, however large); a caller
 * waits at most its deadline while queued, then the command timeout of the
 * round trip it is in (the socket timeout), as with a connection of its
 * own.
 */
#include "store_internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "util.h"

#define ST_PIPE_BATCH 256    /* commands per round trip */
/* bytes per round trip (hiredis copies them into its output buffer); a larger command goes alone */
#define ST_PIPE_BATCH_BYTES ((size_t)4 * 1024 * 1024)
#define ST_PIPE_QUEUE 4096   /* commands waiting; more are refused unsent */

enum st_job_state {
	ST_JOB_QUEUED,   /* in the queue, not sent */
	ST_JOB_SENT,     /* taken by a leader: in a round trip */
	ST_JOB_DONE,     /* rc and reply set */
};

/* one caller's command, on its stack while it waits */
struct st_pipe_job {
	const struct st_cmd *cmd;
	redisReply *reply;
	int rc;
	int sent;                  /* it was (maybe) written to Redis */
	enum st_job_state state;
	int lead;                  /* told to lead the next round trip */
	int64_t deadline_ms;       /* monotonic: not sent after this */
	pthread_cond_t *cond;      /* its store's (struct store.pipe_cond): outlives the call */
	struct st_pipe_job *next;
};

struct store_pipe {
	pthread_mutex_t lock;
	struct store *conn;        /* the shared connection: the leader's alone */
	struct st_pipe_job *head, *tail;
	size_t nqueued;
	int leading;               /* someone leads (or was told to) */
	/* the leader's arrays, ST_PIPE_BATCH each, used under the lead */
	struct st_pipe_job **jobs;
	struct st_cmd *cmds;
	redisReply **rep;
	pthread_cond_t **wake;     /* the callers to wake once the lock is dropped (+1: the next leader) */
	/* counters, under lock: round trips made and commands written (for tests and logs) */
	uint64_t rounds, sent;
};

struct store_pipe *
store_pipe_open(const struct redis_addr *addr)
{
	struct store_pipe *p = calloc(1, sizeof(*p));

	if (p == NULL)
		return NULL;
	p->jobs = calloc(ST_PIPE_BATCH, sizeof(*p->jobs));
	p->cmds = calloc(ST_PIPE_BATCH, sizeof(*p->cmds));
	p->rep = calloc(ST_PIPE_BATCH, sizeof(*p->rep));
	p->wake = calloc(ST_PIPE_BATCH + 1, sizeof(*p->wake));
	p->conn = p->jobs && p->cmds && p->rep && p->wake ? store_open(addr) : NULL;
	if (p->conn == NULL || pthread_mutex_init(&p->lock, NULL) != 0) {
		store_close(p->conn);
		free(p->jobs);
		free(p->cmds);
		free(p->rep);
		free(p->wake);
		free(p);
		return NULL;
	}
	return p;
}

void
store_pipe_close(struct store_pipe *p)
{
	if (p == NULL)
		return;
	/* the users are gone (their threads stopped): nothing is queued */
	if (p->head != NULL || p->leading)
		log_error("store pipe closed while in use");
	/* how much the group commit grouped: commands / round_trips enqueues shared a round trip */
	if (p->sent > 0)
		log_info("enqueue pipe closed", "round_trips=%llu commands=%llu",
		    (unsigned long long)p->rounds, (unsigned long long)p->sent);
	store_close(p->conn);
	pthread_mutex_destroy(&p->lock);
	free(p->jobs);
	free(p->cmds);
	free(p->rep);
	free(p->wake);
	free(p);
}

void
store_use_pipe(struct store *s, struct store_pipe *p)
{
	pthread_condattr_t ca;

	if (s == NULL)
		return;
	if (p != NULL && !s->pipe_cond_ok) {
		/* CLOCK_MONOTONIC: a queued command's deadline is util_mono_ms time */
		if (pthread_condattr_init(&ca) != 0)
			return;
		(void)pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		s->pipe_cond_ok = pthread_cond_init(&s->pipe_cond, &ca) == 0;
		pthread_condattr_destroy(&ca);
		if (!s->pipe_cond_ok)
			return;   /* no pipe: its own connection, as before */
	}
	s->pipe = p;
}

void
store_pipe_counts(struct store_pipe *p, uint64_t *rounds, uint64_t *sent)
{
	pthread_mutex_lock(&p->lock);
	*rounds = p->rounds;
	*sent = p->sent;
	pthread_mutex_unlock(&p->lock);
}

/* st_pipe_unlink - take job out of the queue (it is in it). Under lock. */
static void
st_pipe_unlink(struct store_pipe *p, struct st_pipe_job *job)
{
	struct st_pipe_job **pp = &p->head, *prev = NULL;

	while (*pp != NULL && *pp != job) {
		prev = *pp;
		pp = &(*pp)->next;
	}
	if (*pp == NULL)
		return;
	*pp = job->next;
	if (p->tail == job)
		p->tail = prev;
	job->next = NULL;
	p->nqueued--;
}

/* st_pipe_finish - job is done with rc (and reply). Under lock; its caller is woken by the caller of this. */
static void
st_pipe_finish(struct st_pipe_job *job, int rc, redisReply *reply)
{
	job->rc = rc;
	job->reply = reply;
	job->state = ST_JOB_DONE;
}

/*
 * st_pipe_lead - one round trip for the queued commands (self's among
 * them), then the lead to the first one still queued. Called with the lock
 * held, returns without it: the callers are woken after it is dropped, so
 * none wakes only to wait for the lock (their condition variables belong
 * to their stores, which outlive any leader: struct store.pipe_cond).
 */
static void
st_pipe_lead(struct store_pipe *p, struct st_pipe_job *self)
{
	int64_t now = util_mono_ms();
	size_t n = 0, nwake = 0, i, bytes = 0;
	int rc, ran;

	self->lead = 0;
	while (p->head != NULL && n < ST_PIPE_BATCH) {
		struct st_pipe_job *job = p->head;

		if (n > 0 && bytes + job->cmd->len > ST_PIPE_BATCH_BYTES)
			break;   /* the next round trip's */

		st_pipe_unlink(p, job);
		if (now > job->deadline_ms) {
			/* its caller's time is up: not sent, so certainly not stored */
			st_pipe_finish(job, STORE_ERR_UNAVAILABLE, NULL);
			if (job != self)
				p->wake[nwake++] = job->cond;
			continue;
		}
		job->state = ST_JOB_SENT;
		p->jobs[n] = job;
		p->cmds[n] = *job->cmd;
		bytes += job->cmd->len;
		n++;
	}
	pthread_mutex_unlock(&p->lock);
	for (i = 0; i < nwake; i++)
		pthread_cond_signal(p->wake[i]);
	nwake = 0;

	/* a failed connect wrote nothing; once st_run began, any command may have reached Redis */
	rc = n > 0 ? st_connect(p->conn) : 0;
	ran = rc == 0 && n > 0;
	if (ran)
		rc = st_run(p->conn, p->cmds, n, p->rep);
	else
		for (i = 0; i < n; i++)
			p->rep[i] = NULL;

	pthread_mutex_lock(&p->lock);
	if (ran) {
		p->rounds++;
		p->sent += n;
	}
	for (i = 0; i < n; i++) {
		struct st_pipe_job *job = p->jobs[i];

		/* NOMEM: st_run dropped the connection before writing (hiredis writes in GetReply) */
		job->sent = ran && rc != STORE_ERR_NOMEM;
		st_pipe_finish(job, rc, p->rep[i]);
		p->rep[i] = NULL;
		if (job != self)
			p->wake[nwake++] = job->cond;
	}
	if (p->head != NULL) {
		p->head->lead = 1;
		p->wake[nwake++] = p->head->cond;
	} else {
		p->leading = 0;
	}
	pthread_mutex_unlock(&p->lock);
	for (i = 0; i < nwake; i++)
		pthread_cond_signal(p->wake[i]);
}

/* st_abs_time - the monotonic deadline ms as a timespec for pthread_cond_timedwait. */
static void
st_abs_time(int64_t ms, struct timespec *ts)
{
	ts->tv_sec = (time_t)(ms / 1000);
	ts->tv_nsec = (long)(ms % 1000) * 1000000L;
}

int
st_do_shared(struct store *s, struct st_args *a, redisReply **out, int *sent)
{
	struct store_pipe *p = s->pipe;
	struct st_pipe_job job;
	struct st_cmd cmd;
	struct timespec ts;
	int rc;

	*out = NULL;
	*sent = 0;
	if (p == NULL) {
		*sent = 1;
		return st_do(s, a, out);
	}
	rc = st_format_in(a, &s->scratch, &s->scratch_cap, &cmd.len);
	if (rc)
		return rc;
	cmd.buf = s->scratch;
	memset(&job, 0, sizeof(job));
	job.cmd = &cmd;
	job.cond = &s->pipe_cond;
	job.deadline_ms = util_mono_ms() + s->cmd_timeout_ms;
	st_abs_time(job.deadline_ms, &ts);

	pthread_mutex_lock(&p->lock);
	if (p->nqueued >= ST_PIPE_QUEUE) {
		pthread_mutex_unlock(&p->lock);
		rc = STORE_ERR_UNAVAILABLE;   /* not sent */
		goto out;
	}
	if (p->tail != NULL)
		p->tail->next = &job;
	else
		p->head = &job;
	p->tail = &job;
	p->nqueued++;
	if (!p->leading) {
		p->leading = 1;
		job.lead = 1;
	}
	for (;;) {
		if (job.state == ST_JOB_DONE)
			break;
		if (job.lead) {
			st_pipe_lead(p, &job);   /* returns unlocked */
			pthread_mutex_lock(&p->lock);
			continue;
		}
		if (job.state == ST_JOB_SENT) {
			/* in a round trip: its socket timeout bounds the wait */
			pthread_cond_wait(job.cond, &p->lock);
		} else if (pthread_cond_timedwait(job.cond, &p->lock, &ts) == ETIMEDOUT &&
		    job.state == ST_JOB_QUEUED && !job.lead) {
			/* still queued at the deadline (a stalled round trip ahead): leave unsent */
			st_pipe_unlink(p, &job);
			st_pipe_finish(&job, STORE_ERR_UNAVAILABLE, NULL);
		}
	}
	pthread_mutex_unlock(&p->lock);
	rc = job.rc;
	*out = job.reply;
	*sent = job.sent;
out:
	if (s->scratch_cap > ST_SCRATCH_KEEP) {
		/* a large message's command: not kept for the life of the thread */
		free(s->scratch);
		s->scratch = NULL;
		s->scratch_cap = 0;
	}
	return rc;
}
