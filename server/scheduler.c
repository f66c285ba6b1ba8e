/*
 * scheduler.c - one thread that moves due work (retries, send_at) from the
 * due set to the ready stream of the message's lane, with its own store connection.
 *
 * Loop: promote batches of up to SCHEDULER_BATCH while full batches move, then
 * sleep until the earliest remaining due time, at most 1 s (work added
 * meanwhile is seen within a second), or until scheduler_stop. While Redis
 * is down it backs off 500 ms between attempts; the outage is logged once
 * by the store. It owns no state of its own in Redis and decides nothing
 * about retry timing: it only honours the scores others wrote. About once
 * a minute it also trims outbox events older than TXMAIL_EVENTS_RETENTION
 * (store_trim_events keeps those the webhook dispatcher has not read).
 * Until it is done it also puts a slice of the messages stored without
 * search indexes into them each round (sched_backfill).
 */
#include "scheduler.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "health.h"
#include "log.h"
#include "store.h"
#include "util.h"

#define SCHEDULER_BATCH 1000
#define SCHEDULER_MAX_SLEEP_MS 1000
#define SCHEDULER_BACKOFF_MS 500
#define SCHEDULER_MAX_ROUNDS 100     /* full batches in a row before sleeping once */
#define SCHEDULER_TRIM_MS 60000      /* outbox trimming period */

struct scheduler {
	pthread_t thread;
	int64_t cmd_ms;             /* TXMAIL_REDIS_TIMEOUT: a command's longest legitimate wait */
	pthread_mutex_t mu;
	pthread_cond_t cond;        /* CLOCK_MONOTONIC */
	int stop;
	struct store *st;
	int64_t events_retention_ms;    /* events older than this are trimmed */
	int64_t next_trim_ms;           /* monotonic */
	int backfilled;                 /* every partition's messages are in the search indexes */
	int64_t backfill_seen;          /* messages the backfill has looked at so far */
};

/* sched_wait - sleep up to ms or until stop; returns 1 when stopping. */
static int
sched_wait(struct scheduler *s, int64_t ms)
{
	struct timespec ts;
	int stop;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	if (ms < 0)
		ms = 0;
	ts.tv_sec += (time_t)(ms / 1000);
	ts.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&s->mu);
	while (!s->stop) {
		int rc = pthread_cond_timedwait(&s->cond, &s->mu, &ts);

		if (rc == ETIMEDOUT)
			break;
	}
	stop = s->stop;
	pthread_mutex_unlock(&s->mu);
	return stop;
}

static int
sched_stopping(struct scheduler *s)
{
	int stop;

	pthread_mutex_lock(&s->mu);
	stop = s->stop;
	pthread_mutex_unlock(&s->mu);
	return stop;
}

/*
 * sched_trim - about once a minute, drop outbox events older than the
 * retention (the store keeps those the webhook group has not read), and
 * sweep a slice of the search indexes.
 */
static void
sched_trim(struct scheduler *s)
{
	int64_t mono = util_mono_ms();
	int n;

	if (mono < s->next_trim_ms)
		return;
	s->next_trim_ms = mono + SCHEDULER_TRIM_MS;
	if (s->events_retention_ms > 0) {
		n = store_trim_events(s->st, util_now_ms() - s->events_retention_ms);
		if (n > 0)
			log_debug("events trimmed", "count=%d", n);
		else if (n < 0 && n != STORE_ERR_UNAVAILABLE)
			log_warn("events trim failed", "error=%s", store_strerror(n));
	}
	/* the search indexes: entries of messages that have expired since (store_sweep_index) */
	n = store_sweep_index(s->st, util_now_ms());
	if (n > 0)
		log_debug("search index swept", "removed=%d", n);
	else if (n < 0 && n != STORE_ERR_UNAVAILABLE)
		log_warn("search index sweep failed", "error=%s", store_strerror(n));
}

/*
 * sched_backfill - until it is done, one slice a round (STORE_BACKFILL_SLICE
 * keys a partition, about a second apart) of the messages a release
 * without search indexes stored, put in them (store_backfill_index)
 */
static void
sched_backfill(struct scheduler *s)
{
	int64_t seen = 0;
	int rc;

	if (s->backfilled)
		return;
	rc = store_backfill_index(s->st, &seen);
	if (rc < 0) {
		if (rc != STORE_ERR_UNAVAILABLE)
			log_warn("search index backfill failed", "error=%s", store_strerror(rc));
		return;
	}
	s->backfill_seen += seen;
	if (rc == 0) {
		s->backfilled = 1;
		if (s->backfill_seen > 0)
			log_info("search index backfilled", "messages=%" PRId64, s->backfill_seen);
	}
}

static void *
sched_main(void *arg)
{
	struct scheduler *s = arg;
	char err[256];
	int inited = 0;
	/* a round: a promote (or the set-up) within the command timeout, a sleep of at most 1 s */
	struct health_loop *hl = health_register("scheduler", SCHEDULER_MAX_SLEEP_MS + s->cmd_ms);

	while (!sched_stopping(s)) {
		int64_t next = 0, now = 0, sleep_ms;
		int n = 0, rounds = 0, rc = 0;

		health_beat(hl);

		if (!inited) {
			rc = store_init(s->st, err, sizeof(err));
			if (rc == 0)
				inited = 1;
		}
		while (rc == 0 && rounds < SCHEDULER_MAX_ROUNDS) {
			now = util_now_ms();
			n = store_promote_due(s->st, now, SCHEDULER_BATCH, &next);
			if (n < 0) {
				rc = n;
				break;
			}
			if (n > 0)
				log_debug("due work promoted", "count=%d", n);
			health_beat(hl);
			rounds++;
			if (n < SCHEDULER_BATCH)
				break;
		}
		if (rc) {
			if (sched_wait(s, SCHEDULER_BACKOFF_MS))
				break;
			continue;
		}
		sched_trim(s);
		sched_backfill(s);
		now = util_now_ms();
		sleep_ms = SCHEDULER_MAX_SLEEP_MS;
		if (next > 0 && next - now < sleep_ms)
			sleep_ms = next - now;
		if (n >= SCHEDULER_BATCH)
			sleep_ms = 0;
		if (sched_wait(s, sleep_ms))
			break;
	}
	health_unregister(hl);
	return NULL;
}

struct scheduler *
scheduler_start(const struct config *cfg, char *err, size_t errlen)
{
	struct scheduler *s = NULL;
	pthread_condattr_t ca;
	int have_mu = 0, have_cond = 0;

	if (err && errlen)
		err[0] = '\0';
	if (!cfg) {
		if (err && errlen)
			snprintf(err, errlen, "scheduler: no configuration");
		return NULL;
	}
	s = calloc(1, sizeof(*s));
	if (!s)
		goto fail;
	if (pthread_mutex_init(&s->mu, NULL) != 0)
		goto fail;
	have_mu = 1;
	if (pthread_condattr_init(&ca) != 0)
		goto fail;
	if (pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) != 0 ||
	    pthread_cond_init(&s->cond, &ca) != 0) {
		pthread_condattr_destroy(&ca);
		goto fail;
	}
	pthread_condattr_destroy(&ca);
	have_cond = 1;
	if (cfg->events_retention > 0 && cfg->events_retention < 10.0 * 365 * 24 * 3600)
		s->events_retention_ms = (int64_t)(cfg->events_retention * 1000.0);
	s->next_trim_ms = 0;    /* first trim right after start */
	s->cmd_ms = cfg->redis.timeout_ms > 0 ? cfg->redis.timeout_ms : 5000;
	s->st = store_open(&cfg->redis);
	if (!s->st)
		goto fail;
	if (pthread_create(&s->thread, NULL, sched_main, s) != 0)
		goto fail;
	return s;
fail:
	if (err && errlen)
		snprintf(err, errlen, "scheduler: cannot start (out of resources)");
	if (s) {
		store_close(s->st);
		if (have_cond)
			pthread_cond_destroy(&s->cond);
		if (have_mu)
			pthread_mutex_destroy(&s->mu);
		free(s);
	}
	return NULL;
}

void
scheduler_stop(struct scheduler *s)
{
	if (!s)
		return;
	pthread_mutex_lock(&s->mu);
	s->stop = 1;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->mu);
	pthread_join(s->thread, NULL);
	store_close(s->st);
	pthread_cond_destroy(&s->cond);
	pthread_mutex_destroy(&s->mu);
	free(s);
}
