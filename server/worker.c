/*
 * worker.c - one delivery loop: store -> smtp engine -> store.
 *
 * Three threads, each with its own Redis connection where it needs one:
 *   feeder    claims due recipients (store_fetch, store_reclaim for dead
 *             workers' entries), hands them to the engine (recipients of one
 *             message at one domain together, as one transaction with a
 *             result per recipient; with VERP such a transaction carries
 *             the message-level return path, a lone recipient its own
 *             recipient-level one), and refreshes the entries it holds
 *             (store_heartbeat) so that a slow but live delivery is never
 *             taken over;
 *   engine    runs smtp_engine_run: every SMTP session of this worker;
 *   route     (direct delivery, no TXMAIL_RELAY) resolver threads that
 *             turn a recipient's domain into MX addresses (server/route.c)
 *             and submit the job to the engine; a connect-stage tempfail
 *             (no connection, no banner, 421 greeting) moves on to the
 *             next address before any outcome is recorded;
 *   relaydns  (TXMAIL_RELAY with a host name) one lookup thread per
 *             process, shared by its loops (server/relaydns.c): each job
 *             gets one of the relay's addresses, round-robin, as its
 *             connect address, so the engine never resolves; not resolved
 *             yet is a "dns" tempfail without an attempt, and a
 *             connect-stage tempfail moves on to the relay's next address,
 *             through all of them, before it is recorded;
 *             either way each address has the whole connect timeout, and
 *             when none works the recorded text names each one and how it
 *             failed ("connect to relay: [::1]:25 refused; 10.0.0.5:25
 *             timed out after 30s");
 *   shaper    (server/shaper.c) a release thread for deliveries held by
 *             TXMAIL_DOMAIN_RATE and a sync thread (its own Redis
 *             connection, through store.h) sharing the rates and the
 *             suspensions with every other worker; dispatch asks it first,
 *             and a destination it has suspended is recorded deferred
 *             without an attempt;
 *   recorder  turns outcomes into state with the pure retry policy
 *             (retry_decide_hint: a 4xx reply naming a delay, "try again
 *             in 5 minutes", is not retried sooner) and records them, with their webhook events,
 *             in batched store_record calls, then tells this process's
 *             webhook dispatcher (webhook_notify), which may be waiting on
 *             requests in flight rather than on the outbox.
 * They share only the done queue and the in-flight registry below, under
 * one mutex. Nothing is acknowledged in Redis before its outcome is
 * recorded, so killing the process at any point loses nothing: unrecorded
 * entries stay pending and are reclaimed after the visibility timeout.
 * This file never speaks SMTP or Redis itself.
 */
#include "worker.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "../smtp/engine.h"
#include "../smtp/retry.h"
#include "../smtp/retry_hint.h"
#include "fair.h"
#include "health.h"
#include "log.h"
#include "metrics.h"
#include "outcome_json.h"
#include "relaydns.h"
#include "route.h"
#include "shaper.h"
#include "store.h"
#include "util.h"
#include "verp.h"
#include "webhook.h"

#define FETCH_BATCH 64
#define RECORD_BATCH 128
#define GROUP_MAX 50      /* recipients of one message per SMTP transaction */

struct job {
	struct smtp_job sj;
	struct store_delivery *d;
	struct smtp_outcome out;
	struct route_result *route;   /* direct delivery: addresses to try; NULL via relay */
	size_t next_addr;             /* route->addrs[next_addr] is tried next */
	char relay_first[RELAYDNS_ADDR_MAX];   /* relay: the address this attempt began with */
	size_t relay_tries;           /* relay: addresses tried in this attempt */
	char tried[sizeof(((struct smtp_outcome *)0)->text)];   /* how each address failed, "; " between */
	char verp[VERP_ADDR_MAX + 1]; /* TXMAIL_BOUNCE_DOMAIN: this transaction's return path */
	int64_t not_before_ms;        /* shaper: destination suspended; deferred until then, not attempted */
	struct fair_dest *fdest;      /* the destination slot this transaction holds (server/fair.h); NULL: none */
	int64_t fair_start_ms;        /* when it took the slot (monotonic) */
	int fair_waiting;             /* 1 while in its destination's line (fair.h) */
	uint64_t dispatch_us;         /* metrics_clock_us() at dispatch: the SMTP transaction's duration */
	int64_t start_ms;             /* wall clock at the attempt's start (first dispatch); 0: never began */
	int done;
	struct job *next_done;
	struct job *prev_fly, *next_fly;   /* in-flight registry */
	/*
	 * Several recipients of one message at one domain go in one transaction:
	 * the first job (the leader) carries the group to the engine with
	 * sj.rcpts (one entry per member, in grp_next order); the others only
	 * wait for their outcome. Every member is recorded on its own.
	 */
	struct job *grp_next;
	struct smtp_rcpt *rcpts;      /* leader of a group of 2 or more */
	int grp_own;                  /* members' outcomes already set from rcpts */
};

#define UNSAT_MAX 64   /* published domains with room again, cleared by the feeder's next turn */

struct worker {
	const struct config *cfg;
	int index;                 /* the loop's number: its threads are delivery.<index>.<thread> in health.h */
	char consumer[160];
	struct smtp_engine *engine;
	struct route *route;       /* NULL in relay mode */
	struct relaydns *rdns;     /* relay mode: the relay's addresses; NULL otherwise */
	int rdns_shared;           /* rdns is the process's shared one (relay_dns_get) */
	struct shaper *shaper;     /* domain rates, destination backoff (server/shaper.c) */
	struct fair *fair;         /* per-destination in-flight caps (server/fair.c), under mu */
	int dest_cap;              /* TXMAIL_DEST_MAX_INFLIGHT as applied */
	uint64_t parked_since_log; /* deliveries parked since the last "parked" line */
	uint64_t published_since_log; /* saturated domains published since (publish_saturated) */
	char unsat[UNSAT_MAX][STORE_SHAPE_KEY_MAX + 1]; /* published domains with room again, to clear */
	size_t nunsat;
	int64_t parked_log_ms;     /* when that line was last written (monotonic) */
	char relay_dest[300];      /* the relay as a shaper destination */
	struct retry_policy policy;
	pthread_t feeder_thr, engine_thr, recorder_thr;
	int started_feeder, started_engine, started_recorder;
	atomic_int stop_feed;      /* no more fetching: the stop has begun */
	atomic_int fed_out;        /* the feeder has stopped fetching and drained (feeder_drain) */
	atomic_int stop_hb;        /* the feeder stops heartbeating and returns */
	atomic_int stop_engine;    /* engine thread returns */
	atomic_int stop_record;    /* recorder drains and returns */

	pthread_mutex_t mu;
	pthread_cond_t cv;         /* done queue grew / in-flight shrank */
	struct job *done_head, *done_tail;
	struct job *fly;           /* every job fetched and not yet recorded */
	int nfly;
	int nwait;                 /* jobs of fly waiting in a destination's line (not using a slot) */
	int fair_closed;           /* feeder_drain: waiting jobs are not dispatched any more */
	int fair_busy;             /* waiting jobs given a slot and not yet through dispatch_one */
	struct worker_stop_stats stats;   /* since the stop began */
};

/* --- small helpers ------------------------------------------------------ */

/* the longest a Redis command may legitimately take (TXMAIL_REDIS_TIMEOUT) */
static int64_t
redis_wait_ms(const struct worker *w)
{
	return w->cfg->redis.timeout_ms > 0 ? w->cfg->redis.timeout_ms : 5000;
}

/* register thread `what` of w with health.h: a round may legitimately take wait_ms */
static struct health_loop *
loop_register(const struct worker *w, const char *what, int64_t wait_ms)
{
	char name[HEALTH_NAME_MAX];

	snprintf(name, sizeof(name), "delivery.%d.%s", w->index, what);
	return health_register(name, wait_ms);
}

static void
nap_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static void
fly_add(struct worker *w, struct job *j)
{
	j->prev_fly = NULL;
	j->next_fly = w->fly;
	if (w->fly != NULL)
		w->fly->prev_fly = j;
	w->fly = j;
	w->nfly++;
}

static void
fly_del(struct worker *w, struct job *j)
{
	if (j->prev_fly != NULL)
		j->prev_fly->next_fly = j->next_fly;
	else
		w->fly = j->next_fly;
	if (j->next_fly != NULL)
		j->next_fly->prev_fly = j->prev_fly;
	w->nfly--;
}

static void
job_free(struct job *j)
{
	if (j == NULL)
		return;
	store_delivery_free(j->d);
	free(j->route);
	free(j->rcpts);
	free(j);
}

static void dispatch_one(struct worker *w, struct job *j);

/*
 * Jobs given a destination slot by a finishing transaction, dispatched by
 * the outermost push_done on this thread (dispatching one can finish it at
 * once - expired, suspended - which would otherwise recurse).
 */
static _Thread_local struct job *fair_next_head;
static _Thread_local int fair_dispatching;

static const char *job_domain(const struct job *j);
static const char *fair_key(const struct worker *w, const struct job *j);

/*
 * Queue a finished job for the recorder (any thread), with the members of
 * its group: they share its outcome unless each already has its own. Its
 * destination slot goes to the next job waiting for it, dispatched here.
 */
static void
push_done(struct worker *w, struct job *j)
{
	struct job *next = NULL;

	pthread_mutex_lock(&w->mu);
	if (j->fdest != NULL) {
		struct fair_dest *nd = NULL;

		/* once feeder_drain has begun, the line stays as it is: it takes it */
		next = w->fair_closed ? NULL :
		    fair_done(w->fair, j->fdest, j->fair_start_ms, util_mono_ms(), &nd);
		j->fdest = NULL;
		if (next == NULL && w->nunsat < UNSAT_MAX && fair_unsaturated(w->fair, fair_key(w, j)))
			util_strlcpy(w->unsat[w->nunsat++], job_domain(j), sizeof(w->unsat[0]));
		if (next != NULL) {
			next->fdest = nd;
			next->fair_start_ms = util_mono_ms();
			next->fair_waiting = 0;
			w->nwait--;
			w->fair_busy++;
		}
	}
	for (struct job *m = j; m != NULL; m = m->grp_next) {
		if (m != j && !j->grp_own) {
			m->out = j->out;
			m->not_before_ms = j->not_before_ms;
		}
		m->done = 1;
		m->next_done = NULL;
		if (w->done_tail != NULL)
			w->done_tail->next_done = m;
		else
			w->done_head = m;
		w->done_tail = m;
	}
	pthread_cond_broadcast(&w->cv);
	pthread_mutex_unlock(&w->mu);
	if (next == NULL)
		return;
	next->next_done = fair_next_head;
	fair_next_head = next;
	if (fair_dispatching)
		return;
	fair_dispatching = 1;
	while ((next = fair_next_head) != NULL) {
		fair_next_head = next->next_done;
		next->next_done = NULL;
		dispatch_one(w, next);
		pthread_mutex_lock(&w->mu);
		w->fair_busy--;
		pthread_cond_broadcast(&w->cv);
		pthread_mutex_unlock(&w->mu);
	}
	fair_dispatching = 0;
}

/*
 * stopped_stage - what a stop did to a delivery, from its outcome's stage:
 * 1 "shutdown" (its SMTP transaction never began: handed back with the
 * attempt uncounted), 2 "cut" (stopped during the transaction: handed
 * back, the attempt counted), 0 anything else (a real outcome).
 */
static int
stopped_stage(const char *stage)
{
	if (stage == NULL)
		return 0;
	if (strcmp(stage, "shutdown") == 0)
		return 1;
	return strcmp(stage, "cut") == 0 ? 2 : 0;
}

static void
set_outcome(struct smtp_outcome *o, enum smtp_result r, const char *stage, const char *text)
{
	memset(o, 0, sizeof(*o));
	o->result = r;
	o->stage = stage;
	util_strlcpy(o->text, text, sizeof(o->text));
}

/*
 * tried_add - add one address's connect-stage failure text to buf ("; "
 * between), without repeating a "connect to NAME: " the list already
 * starts with: "connect to localhost: [::1]:25 refused; 127.0.0.1:25 refused".
 */
static void
tried_add(char *buf, size_t len, const char *text)
{
	size_t used = strlen(buf);
	const char *colon;

	if (used == 0) {
		util_strlcpy(buf, text, len);
		return;
	}
	if (strncmp(text, "connect to ", 11) == 0 && (colon = strstr(text, ": ")) != NULL &&
	    strncmp(buf, text, (size_t)(colon + 2 - text)) == 0)
		text = colon + 2;
	if (used + 3 < len) {
		memcpy(buf + used, "; ", 2);
		util_strlcpy(buf + used + 2, text, len - used - 2);
	}
}

/* --- relay addresses (server/relaydns.c) ---------------------------------- */

/*
 * One relaydns per process, shared by its loops (they all have the
 * process's config); a loop whose relay differs gets its own.
 */
static pthread_mutex_t relay_dns_mu = PTHREAD_MUTEX_INITIALIZER;
static struct relaydns *relay_dns;        /* under relay_dns_mu */
static char relay_dns_host[RELAYDNS_HOST_MAX];
static uint16_t relay_dns_port;
static int relay_dns_refs;

/* The relay's addresses for a loop; NULL with err. *shared says which to put back. */
static struct relaydns *
relay_dns_get(const struct smtp_target *t, int *shared, char *err, size_t errlen)
{
	struct relaydns *r;

	*shared = 0;
	pthread_mutex_lock(&relay_dns_mu);
	if (relay_dns != NULL && relay_dns_port == t->port && strcmp(relay_dns_host, t->host) == 0) {
		r = relay_dns;
		relay_dns_refs++;
		*shared = 1;
	} else if ((r = relaydns_new(t->host, t->port, NULL, err, errlen)) != NULL && relay_dns == NULL) {
		relay_dns = r;
		util_strlcpy(relay_dns_host, t->host, sizeof(relay_dns_host));
		relay_dns_port = t->port;
		relay_dns_refs = 1;
		*shared = 1;
	}
	pthread_mutex_unlock(&relay_dns_mu);
	return r;
}

static void
relay_dns_put(struct relaydns *r, int shared)
{
	if (r == NULL || !shared) {
		relaydns_free(r);
		return;
	}
	pthread_mutex_lock(&relay_dns_mu);
	if (--relay_dns_refs == 0) {
		relaydns_free(relay_dns);   /* returns at once, even mid-lookup */
		relay_dns = NULL;
	}
	pthread_mutex_unlock(&relay_dns_mu);
}

/* --- direct delivery ---------------------------------------------------- */

/*
 * Submit j to the next address of its route (any thread). MX hosts get
 * opportunistic STARTTLS without certificate verification (most MX
 * certificates do not match the MX name; Postfix's "may" level), or, with
 * TXMAIL_MX_TLS_VERIFY=1, required STARTTLS verified against the MX name.
 */
static void
submit_next(struct worker *w, struct job *j)
{
	const struct route_addr *a = &j->route->addrs[j->next_addr++];
	struct smtp_target *t = &j->sj.target;

	memset(t, 0, sizeof(*t));
	/* connect to the address the resolver found; the MX name is for SNI and SSL_set1_host */
	util_strlcpy(t->connect_addr, a->ip, sizeof(t->connect_addr));
	util_strlcpy(t->host, a->name[0] != '\0' ? a->name : a->ip, sizeof(t->host));
	if (w->cfg->mx_tls_verify) {
		t->tls = SMTP_TLS_REQUIRED;
	} else {
		t->tls = SMTP_TLS_STARTTLS;
		t->no_verify = 1;
	}
	t->port = w->cfg->mx_port;
	log_debug("sending via MX", "msg_id=%s rcpt=%s worker=%s mx=%s addr=%s port=%u",
	    j->d->msg_id, j->d->rcpt, w->consumer, a->name, a->ip, t->port);
	if (smtp_engine_submit(w->engine, &j->sj) != 0) {
		set_outcome(&j->out, SMTP_RESULT_TEMPFAIL, "shutdown", "worker shutting down");
		push_done(w, j);
	}
}

static const char *job_domain(const struct job *j);

/* Resolver thread: the route of j's domain is known. */
static void
on_route(const struct route_result *r, void *udata, void *arg)
{
	struct worker *w = arg;
	struct job *j = udata;

	switch (r->status) {
	case ROUTE_OK: {
		/* later deliveries to this domain count against its MX host set (fair.h) */
		const char *names[ROUTE_MAX_ADDRS];
		char key[FAIR_KEY_MAX + 1];

		for (size_t i = 0; i < r->naddr && i < ROUTE_MAX_ADDRS; i++)
			names[i] = r->addrs[i].name[0] != '\0' ? r->addrs[i].name : r->addrs[i].ip;
		fair_mx_key(names, r->naddr < ROUTE_MAX_ADDRS ? r->naddr : ROUTE_MAX_ADDRS, key, sizeof(key));
		pthread_mutex_lock(&w->mu);
		fair_alias(w->fair, job_domain(j), key);
		pthread_mutex_unlock(&w->mu);
	}
		j->route = malloc(sizeof(*j->route));
		if (j->route == NULL) {
			set_outcome(&j->out, SMTP_RESULT_TEMPFAIL, "route", "out of memory");
			push_done(w, j);
			return;
		}
		*j->route = *r;
		j->next_addr = 0;
		j->tried[0] = '\0';
		submit_next(w, j);
		return;
	case ROUTE_PERMFAIL:
		set_outcome(&j->out, SMTP_RESULT_PERMFAIL, "route", r->text);
		util_strlcpy(j->out.enhanced, r->enhanced, sizeof(j->out.enhanced));
		break;
	case ROUTE_SHUTDOWN:
		set_outcome(&j->out, SMTP_RESULT_TEMPFAIL, "shutdown", r->text);
		break;
	case ROUTE_TEMPFAIL:
	default:
		set_outcome(&j->out, SMTP_RESULT_TEMPFAIL, "dns", r->text);
		break;
	}
	push_done(w, j);
}

/* A failure to reach a host at all: worth trying the next MX before recording. */
static int
connect_stage_tempfail(const struct smtp_outcome *o)
{
	return o->result == SMTP_RESULT_TEMPFAIL && o->stage != NULL &&
	    (strcmp(o->stage, "connect") == 0 || strcmp(o->stage, "banner") == 0) &&
	    (o->code == 0 || o->code == 421);
}

/* --- shaping (server/shaper.c) ------------------------------------------- */

static const char *
job_domain(const struct job *j)
{
	const char *at = strrchr(j->d->rcpt, '@');

	return at != NULL ? at + 1 : "";
}

/* What a failure counts against: the domain in direct delivery, else the relay. */
static const char *
job_dest(const struct worker *w, const struct job *j)
{
	return w->cfg->relay_set ? w->relay_dest : job_domain(j);
}

/* Not attempted: recorded deferred with the next try when the suspension ends. */
static void
defer_suspended(struct worker *w, struct job *j, int64_t until_ms)
{
	set_outcome(&j->out, SMTP_RESULT_TEMPFAIL, "suspended",
	    "not attempted: destination suspended after repeated connection failures");
	j->not_before_ms = until_ms;
	push_done(w, j);
}

static void dispatch_send(struct worker *w, struct job *j);

/* 0: send j now; 1: the shaper holds it (rate) or its destination is suspended. */
static int
shape(struct worker *w, struct job *j)
{
	int64_t until;

	switch (shaper_admit(w->shaper, job_domain(j), job_dest(w, j), j, &until)) {
	case SHAPER_HELD:
		return 1;
	case SHAPER_SUSPENDED:
		defer_suspended(w, j, until);
		return 1;
	case SHAPER_SEND:
	default:
		return 0;
	}
}

/* Shaper thread: a held job's slot has come. */
static void
on_shaper_release(void *item, int64_t until_ms, int shutdown, void *arg)
{
	struct worker *w = arg;
	struct job *j = item;

	if (shutdown) {
		set_outcome(&j->out, SMTP_RESULT_TEMPFAIL, "shutdown", "worker shutting down");
		push_done(w, j);
	} else if (until_ms != 0) {
		defer_suspended(w, j, until_ms);
	} else {
		dispatch_send(w, j);
	}
}

/* --- engine thread ---------------------------------------------------- */

static void
on_engine_done(struct smtp_job *sj, const struct smtp_outcome *o, void *arg)
{
	struct worker *w = arg;
	struct job *j = sj->udata;

	j->out = *o;
	if (connect_stage_tempfail(o)) {
		/* this address did not take it: the next one, before recording anything */
		tried_add(j->tried, sizeof(j->tried), o->text);
		if (j->route != NULL && j->next_addr < j->route->naddr) {
			log_info("MX host unreachable, trying the next",
			    "msg_id=%s rcpt=%s worker=%s mx=%s addr=%s port=%u stage=%s error=%.200s",
			    j->d->msg_id, j->d->rcpt, w->consumer, sj->target.host, sj->target.connect_addr,
			    sj->target.port, o->stage, o->text);
			submit_next(w, j);   /* on shutdown it records "shutdown": left pending */
			return;
		}
		char next[RELAYDNS_ADDR_MAX];
		if (j->route == NULL && w->rdns != NULL && j->relay_tries < RELAYDNS_MAX_ADDRS &&
		    relaydns_next(w->rdns, sj->target.connect_addr, next, sizeof(next)) == 0 &&
		    strcmp(next, j->relay_first) != 0) {
			log_info("relay address unreachable, trying the next",
			    "msg_id=%s rcpt=%s worker=%s relay=%s addr=%s port=%u stage=%s error=%.200s next=%s",
			    j->d->msg_id, j->d->rcpt, w->consumer, sj->target.host, sj->target.connect_addr,
			    sj->target.port, o->stage, o->text, next);
			j->relay_tries++;
			util_strlcpy(j->sj.target.connect_addr, next, sizeof(j->sj.target.connect_addr));
			if (smtp_engine_submit(w->engine, &j->sj) != 0) {
				set_outcome(&j->out, SMTP_RESULT_TEMPFAIL, "shutdown", "worker shutting down");
				push_done(w, j);
			}
			return;
		}
		/* none left: the text names every address tried */
		util_strlcpy(j->out.text, j->tried, sizeof(j->out.text));
	}
	if (stopped_stage(o->stage) == 0) {
		metrics_smtp_transaction((int)o->result);
		metrics_smtp_duration((int)o->result, (double)(metrics_clock_us() - j->dispatch_us) / 1e6);
		metrics_smtp_reply(o->code, o->enhanced);
		shaper_report(w->shaper, job_dest(w, j),
		    shaper_conn_fail(o->result == SMTP_RESULT_TEMPFAIL, o->stage, o->code));
	}
	if (j->sj.nrcpts > 0) {
		/* a group: each member's own result (accepted, refused at RCPT, ...) */
		size_t k = 0;

		for (struct job *m = j; m != NULL && k < j->sj.nrcpts; m = m->grp_next) {
			m->out = j->sj.rcpts[k++].out;
			if (m->out.stage != NULL && strcmp(m->out.stage, "rcpt") == 0 && m->out.code != o->code)
				metrics_smtp_reply(m->out.code, m->out.enhanced);   /* its own refusal */
			if (connect_stage_tempfail(o) && connect_stage_tempfail(&m->out))
				util_strlcpy(m->out.text, j->out.text, sizeof(m->out.text));
		}
		j->grp_own = 1;
	}
	push_done(w, j);
}

/* fmt_add - append s to the format being built (it always fits: see on_engine_log) */
static void
fmt_add(char *fmt, size_t size, size_t *len, const char *s)
{
	*len += util_strlcpy(fmt + *len, s, size - *len);
	if (*len >= size)
		*len = size - 1;
}

static int
log_key_ok(const char *k)
{
	size_t i = 0;

	for (; k[i] != '\0' && i < 32; i++)
		if (!((k[i] >= 'a' && k[i] <= 'z') || (k[i] >= '0' && k[i] <= '9') || k[i] == '_'))
			return 0;
	return i > 0 && k[i] == '\0';
}

/*
 * on_engine_log - an engine event as one log line (engine thread): the job
 * it is about gives msg_id, and the recipient unless the event names one
 * (a transaction of several recipients: rcpts=n). The engine's fields are
 * data, so the format is put together here from their keys (checked to be
 * [a-z0-9_], so the format holds no conversion but ours); every value goes
 * through a %s and is quoted by log.c. The reply code is the one integer.
 */
static void
on_engine_log(const struct smtp_log_event *ev, void *arg)
{
	enum { NV = 4 + SMTP_LOG_FIELDS_MAX };   /* msg_id, rcpt, conn, peer, fields */
	_Static_assert(NV == 10, "the log_msg calls below pass v[0..9]");
	const struct job *j = ev->job != NULL ? ev->job->udata : NULL;
	enum log_level lv = ev->level <= 0 ? LOG_DEBUG : ev->level == 1 ? LOG_INFO :
	    ev->level == 2 ? LOG_WARN : LOG_ERROR;
	const char *v[NV];
	char fmt[64 + SMTP_LOG_FIELDS_MAX * 40], conn[24], nrcpt[24];
	size_t fl = 0, nv = 0, nfixed;

	(void)arg;
	if (!log_enabled(lv))
		return;   /* the engine's debug lines: not worth building when not written */
	fmt[0] = '\0';
	if (j != NULL) {
		fmt_add(fmt, sizeof(fmt), &fl, " msg_id=%s");
		v[nv++] = j->d->msg_id;
		if (ev->rcpt == NULL && ev->job->nrcpts > 1) {
			snprintf(nrcpt, sizeof(nrcpt), "%zu", ev->job->nrcpts);
			fmt_add(fmt, sizeof(fmt), &fl, " rcpts=%s");
			v[nv++] = nrcpt;
		} else {
			fmt_add(fmt, sizeof(fmt), &fl, " rcpt=%s");
			v[nv++] = ev->rcpt != NULL ? ev->rcpt : j->d->rcpt;
		}
	}
	if (ev->conn != 0) {
		snprintf(conn, sizeof(conn), "%llu", ev->conn);
		fmt_add(fmt, sizeof(fmt), &fl, " conn=%s peer=%s");
		v[nv++] = conn;
		v[nv++] = ev->peer;
	}
	nfixed = nv;
	if (ev->code > 0 && ev->conn != 0)
		fmt_add(fmt, sizeof(fmt), &fl, " code=%d");
	for (size_t i = 0; i < ev->nfields && i < SMTP_LOG_FIELDS_MAX; i++) {
		if (!log_key_ok(ev->fields[i].key) || ev->fields[i].value == NULL)
			continue;
		fmt_add(fmt, sizeof(fmt), &fl, " ");
		fmt_add(fmt, sizeof(fmt), &fl, ev->fields[i].key);
		fmt_add(fmt, sizeof(fmt), &fl, "=%s");
		v[nv++] = ev->fields[i].value;
	}
	while (nv < NV)
		v[nv++] = "";   /* not in the format: never read */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
	if (ev->code > 0 && ev->conn != 0 && nfixed == 2)
		log_msg(lv, ev->msg, fmt, v[0], v[1], ev->code, v[2], v[3], v[4], v[5], v[6], v[7],
		    v[8], v[9]);
	else if (ev->code > 0 && ev->conn != 0)
		log_msg(lv, ev->msg, fmt, v[0], v[1], v[2], v[3], ev->code, v[4], v[5], v[6], v[7],
		    v[8], v[9]);
	else
		log_msg(lv, ev->msg, fmt, v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9]);
#pragma GCC diagnostic pop
}

static void *
engine_main(void *arg)
{
	struct worker *w = arg;
	/* a round: up to 200 ms of poll, then the callbacks (no Redis, no DNS) */
	struct health_loop *hl = loop_register(w, "engine", 1000);

	while (!atomic_load(&w->stop_engine)) {
		health_beat(hl);
		if (smtp_engine_run(w->engine, 200) != 0) {
			log_error("smtp engine loop failed", "worker=%s", w->consumer);
			nap_ms(100);
		}
	}
	health_unregister(hl);
	return NULL;
}

/* --- feeder thread ------------------------------------------------------ */

/* A job for d, in the in-flight registry; NULL (d freed, left pending) on out of memory. */
static struct job *
job_new(struct worker *w, struct store_delivery *d)
{
	struct job *j = calloc(1, sizeof(*j));

	if (j == NULL) {
		/* Not acknowledged: the entry comes back after the visibility timeout. */
		log_error("out of memory, delivery left for later", "msg_id=%s rcpt=%s", d->msg_id, d->rcpt);
		store_delivery_free(d);
		return NULL;
	}
	j->d = d;
	pthread_mutex_lock(&w->mu);
	fly_add(w, j);
	pthread_mutex_unlock(&w->mu);
	return j;
}

/* Send j (the leader of its group, if any): expiry, envelope, shaping, route. */
static void
dispatch_one(struct worker *w, struct job *j)
{
	const struct store_delivery *d = j->d;
	int64_t now = util_now_ms();

	if (now >= d->expires_ms) {
		set_outcome(&j->out, SMTP_RESULT_TEMPFAIL, "queue", "expired before delivery");
		push_done(w, j);
		return;
	}
	if (d->mime_len == 0) {
		/*
		 * The content goes only when no recipient can be attempted again
		 * (lib/content.lua), so a deliverable one without it is a broken
		 * store: say so, fail the recipient, never send an empty message.
		 */
		log_error("message content missing from the store, not sent", "msg_id=%s rcpt=%s attempt=%d",
		    d->msg_id, d->rcpt, d->attempts);
		set_outcome(&j->out, SMTP_RESULT_PERMFAIL, "queue", "message content missing from the store");
		push_done(w, j);
		return;
	}
	j->sj.mail_from = d->mail_from;
	if (w->cfg->bounce_domain[0] != '\0') {
		/*
		 * VERP: DSNs come back to bounces+<token>@domain (server/bounce.c).
		 * One recipient: its own token. A group: the message-level token,
		 * and the DSN's Final-Recipient says which member it is about.
		 */
		if (verp_make(w->cfg->bounce_secret, strlen(w->cfg->bounce_secret), w->cfg->bounce_domain,
		    d->msg_id, j->sj.nrcpts > 1 ? VERP_IDX_MESSAGE : d->rcpt_idx,
		    j->verp, sizeof(j->verp)) == VERP_OK)
			j->sj.mail_from = j->verp;
		else
			log_warn("no VERP return path, using the sender", "msg_id=%s rcpt=%s from=%s",
			    d->msg_id, d->rcpt, d->mail_from);
	}
	j->sj.rcpt = d->rcpt;
	j->sj.data = d->mime;
	j->sj.data_len = d->mime_len;
	j->sj.udata = j;
	if (shape(w, j) == 0)
		dispatch_send(w, j);
}

static const char *
rcpt_domain(const struct store_delivery *d)
{
	const char *at = strrchr(d->rcpt, '@');

	return at != NULL ? at + 1 : "";
}

/*
 * Can b ride in a's transaction? Same message (same id, sender and MIME
 * bytes), same recipient domain, neither expired. With VERP the group
 * gets the message-level return path (dispatch_one).
 */
static int
same_txn(const struct store_delivery *a, const struct store_delivery *b, int64_t now)
{
	return now < a->expires_ms && now < b->expires_ms &&
	    rcpt_domain(a)[0] != '\0' && strcasecmp(rcpt_domain(a), rcpt_domain(b)) == 0 &&
	    strcmp(a->msg_id, b->msg_id) == 0 && strcmp(a->mail_from, b->mail_from) == 0 &&
	    a->mime_len == b->mime_len && memcmp(a->mime, b->mime, a->mime_len) == 0;
}

/* What a transaction's slot counts against: the relay, or the domain (its MX host set once known). */
static const char *
fair_key(const struct worker *w, const struct job *j)
{
	return w->cfg->relay_set ? w->relay_dest : job_domain(j);
}

/* log_parked - at most every 10 s, how many deliveries were parked; w->mu is held */
static void
log_parked(struct worker *w, int64_t mono)
{
	if (w->parked_since_log > 0 && mono - w->parked_log_ms >= 10000) {
		log_info("destinations at their in-flight cap: deliveries parked, to be tried later",
		    "worker=%s parked=%llu published=%llu cap=%d waiting=%d", w->consumer,
		    (unsigned long long)w->parked_since_log, (unsigned long long)w->published_since_log,
		    w->dest_cap, w->nwait);
		w->parked_since_log = 0;
		w->published_since_log = 0;
		w->parked_log_ms = mono;
	}
}

#define SAT_EVERY_MS 1000        /* a saturated destination is published at most once a second */
#define SAT_HOLD_MIN_MS 5000     /* and new mail for it waits in due for this long after */
#define SAT_HOLD_MAX_MS 60000    /* (twice its step, within these) */

/*
 * publish_saturated - the domains of parked[0..n) whose destination is at
 * its cap with deliveries parked ahead (fair_saturated) go to the store's
 * sat (store_saturate): new mail for them then waits in due at their next
 * slots instead of going into the ready stream, where the mail of every
 * other destination would wait behind it while this feeder reads it only
 * to park it. The slots enqueue gave out come back: parking goes on after
 * them. Best effort: on an error the new mail goes into the stream and is
 * parked when read, as before.
 */
static void
publish_saturated(struct worker *w, struct store *st, struct job **parked, size_t n)
{
	struct store_sat v[FETCH_BATCH];
	const char *key[FETCH_BATCH];
	size_t nv = 0;
	int64_t mono = util_mono_ms(), off = util_now_ms() - mono;

	pthread_mutex_lock(&w->mu);
	for (size_t i = 0; i < n && nv < FETCH_BATCH; i++) {
		struct fair_sat fs;
		const char *dom = job_domain(parked[i]);
		size_t k;

		for (k = 0; k < nv; k++)
			if (strcasecmp(v[k].domain, dom) == 0)
				break;
		if (k < nv || dom[0] == '\0' || strlen(dom) > STORE_SHAPE_KEY_MAX ||
		    !fair_saturated(w->fair, fair_key(w, parked[i]), mono, SAT_EVERY_MS, &fs))
			continue;
		v[nv].domain = dom;
		v[nv].next_ms = fs.next_ms + off;
		v[nv].step_ms = fs.step_ms;
		v[nv].until_ms = mono + off + (2 * fs.step_ms < SAT_HOLD_MIN_MS ? SAT_HOLD_MIN_MS :
		    2 * fs.step_ms > SAT_HOLD_MAX_MS ? SAT_HOLD_MAX_MS : 2 * fs.step_ms);
		v[nv].max_ms = fs.max_ms;
		v[nv].min_ms = fs.min_ms;
		key[nv] = fair_key(w, parked[i]);
		nv++;
	}
	pthread_mutex_unlock(&w->mu);
	if (nv == 0)
		return;
	if (store_saturate(st, v, nv) != STORE_OK) {
		log_debug("cannot publish destinations at their in-flight cap", "worker=%s domains=%zu",
		    w->consumer, nv);
		return;
	}
	pthread_mutex_lock(&w->mu);
	for (size_t k = 0; k < nv; k++)
		fair_park_after(w->fair, key[k], v[k].next_ms - off);
	w->published_since_log += nv;
	pthread_mutex_unlock(&w->mu);
}

/*
 * clear_unsaturated - the published domains whose destination has room
 * again (push_done, fair_unsaturated) are cleared in the store's sat (their
 * until set to now): new mail for them goes into the ready stream again.
 * Best effort: on an error the field runs out by itself (its until).
 */
static void
clear_unsaturated(struct worker *w, struct store *st)
{
	char dom[UNSAT_MAX][STORE_SHAPE_KEY_MAX + 1];
	struct store_sat v[UNSAT_MAX];
	size_t n;
	int64_t now = util_now_ms();

	pthread_mutex_lock(&w->mu);
	n = w->nunsat;
	memcpy(dom, w->unsat, n * sizeof(dom[0]));
	w->nunsat = 0;
	pthread_mutex_unlock(&w->mu);
	for (size_t i = 0; i < n; i++)
		v[i] = (struct store_sat){ dom[i], now, 1, 1, 1, 0 };
	if (n > 0 && store_saturate(st, v, n) != STORE_OK)
		log_debug("cannot clear destinations with room again", "worker=%s domains=%zu", w->consumer, n);
}

/*
 * park - give parked[0..n) (leaders, with their groups) back to the store
 * to be tried at until[i]; they leave the in-flight registry. When the
 * store cannot take them they stay pending and are reclaimed after the
 * visibility timeout (as if this worker had died).
 */
static void
park(struct worker *w, struct store *st, struct job **parked, const int64_t *until, size_t n)
{
	struct store_park p[FETCH_BATCH];
	size_t np = 0, done = 0;
	int64_t mono = util_mono_ms();

	publish_saturated(w, st, parked, n);

	for (size_t i = 0; i < n; i++)
		for (struct job *m = parked[i]; m != NULL && np < FETCH_BATCH; m = m->grp_next) {
			p[np].d = m->d;
			p[np].until_ms = until[i];
			np++;
		}
	if (np > 0 && store_park(st, w->consumer, p, np, &done) != STORE_OK)
		log_warn("cannot park deliveries over their destination's cap, left for the visibility timeout",
		    "worker=%s deliveries=%zu", w->consumer, np);
	metrics_parked((int64_t)done);
	pthread_mutex_lock(&w->mu);
	for (size_t i = 0; i < n; i++) {
		struct job *m = parked[i], *nx;

		for (; m != NULL; m = nx) {
			nx = m->grp_next;
			fly_del(w, m);
			job_free(m);
		}
	}
	w->parked_since_log += done;
	log_parked(w, mono);
	pthread_cond_broadcast(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

/*
 * admit - the destination's in-flight cap (fair.h): 0 dispatch j now (its
 * slot taken), 1 it waits in its destination's line, 2 park it at *until.
 */
static int
admit(struct worker *w, struct job *j, int64_t *until)
{
	struct fair_dest *fd = NULL;
	enum fair_verdict v;
	int64_t mono = util_mono_ms();

	if (util_now_ms() >= j->d->expires_ms)
		return 0;   /* dispatch_one records it expired: no slot, never parked past its end */
	pthread_mutex_lock(&w->mu);
	v = fair_admit(w->fair, fair_key(w, j), j, mono, &fd, until);
	if (v == FAIR_GO) {
		j->fdest = fd;
		j->fair_start_ms = mono;
	} else if (v == FAIR_WAIT) {
		j->fair_waiting = 1;
		w->nwait++;
	}
	pthread_mutex_unlock(&w->mu);
	if (v == FAIR_PARK) {
		/* monotonic to wall clock; never past the message's expiry (it then fails as expired) */
		log_debug("destination at its in-flight cap, delivery parked", "msg_id=%s rcpt=%s dest=%s in_s=%lld",
		    j->d->msg_id, j->d->rcpt, fair_key(w, j), (long long)((*until - mono) / 1000));
		*until = util_now_ms() + (*until - mono);
		if (*until > j->d->expires_ms)
			*until = j->d->expires_ms;
	}
	return v == FAIR_GO ? 0 : v == FAIR_WAIT ? 1 : 2;
}

/* Hand ds[0..n) to delivery: one job per delivery, grouped per transaction. */
static void
feed(struct worker *w, struct store *st, struct store_delivery **ds, int n)
{
	char used[FETCH_BATCH] = { 0 };
	struct job *parked[FETCH_BATCH];
	int64_t until[FETCH_BATCH];
	size_t nparked = 0;
	int64_t now = util_now_ms();
	uint64_t in_claim = store_take_parked(st);

	if (in_claim > 0) {
		/* parked by the claim script itself (a published destination): counted as parked */
		metrics_parked((int64_t)in_claim);
		pthread_mutex_lock(&w->mu);
		w->parked_since_log += in_claim;
		log_parked(w, util_mono_ms());
		pthread_mutex_unlock(&w->mu);
	}

	for (int i = 0; i < n && i < FETCH_BATCH; i++) {
		struct job *lead, *tail, *j;
		size_t m = 1, k = 0;

		if (used[i])
			continue;
		used[i] = 1;
		if ((lead = tail = job_new(w, ds[i])) == NULL)
			continue;
		for (int x = i + 1; x < n && x < FETCH_BATCH && m < GROUP_MAX; x++) {
			if (used[x] || !same_txn(ds[i], ds[x], now))
				continue;
			used[x] = 1;
			if ((j = job_new(w, ds[x])) == NULL)
				continue;
			tail->grp_next = j;
			tail = j;
			m++;
		}
		if (m > 1 && (lead->rcpts = calloc(m, sizeof(*lead->rcpts))) == NULL) {
			/* no memory for the group: one transaction each */
			for (j = lead; j != NULL; j = tail) {
				tail = j->grp_next;
				j->grp_next = NULL;
				switch (admit(w, j, &until[nparked])) {
				case 0: dispatch_one(w, j); break;
				case 2: parked[nparked++] = j; break;
				default: break;
				}
			}
			continue;
		}
		if (m > 1) {
			for (j = lead; j != NULL; j = j->grp_next)
				lead->rcpts[k++].addr = j->d->rcpt;
			lead->sj.rcpts = lead->rcpts;
			lead->sj.nrcpts = m;
			log_debug("recipients grouped in one transaction", "msg_id=%s rcpts=%zu domain=%s worker=%s",
			    lead->d->msg_id, m, rcpt_domain(lead->d), w->consumer);
		}
		switch (admit(w, lead, &until[nparked])) {
		case 0: dispatch_one(w, lead); break;
		case 2: parked[nparked++] = lead; break;
		default: break;   /* waits: push_done of a transaction to its destination dispatches it */
		}
	}
	if (nparked > 0)
		park(w, st, parked, until, nparked);
}

/* Hand j to the resolver (direct delivery) or the engine (relay); any thread. */
static void
dispatch_send(struct worker *w, struct job *j)
{
	const struct store_delivery *d = j->d;

	j->dispatch_us = metrics_clock_us();
	if (j->start_ms == 0) {
		int64_t t = util_now_ms();

		for (struct job *x = j; x != NULL; x = x->grp_next)
			if (x->start_ms == 0)
				x->start_ms = t;   /* a group's members begin with their leader */
	}

	if (!w->cfg->relay_set) {
		const char *at = strrchr(d->rcpt, '@');

		if (at == NULL || at[1] == '\0') {
			set_outcome(&j->out, SMTP_RESULT_PERMFAIL, "route", "recipient has no domain");
			push_done(w, j);
		} else if (route_request(w->route, at + 1, j) != 0) {
			set_outcome(&j->out, SMTP_RESULT_TEMPFAIL, "shutdown", "worker shutting down");
			push_done(w, j);
		}
		return;
	}
	j->sj.target = w->cfg->relay;
	{
		/* the host stays the relay name, for SNI and the certificate check */
		char ip[RELAYDNS_ADDR_MAX], why[256], text[600];

		if (relaydns_pick(w->rdns, ip, sizeof(ip), why, sizeof(why)) != 0) {
			/* never the engine's business: it would block on the lookup */
			snprintf(text, sizeof(text), "relay host %s: not resolved yet (%s)",
			    j->sj.target.host, why);
			set_outcome(&j->out, SMTP_RESULT_TEMPFAIL, "dns", text);
			push_done(w, j);
			return;
		}
		util_strlcpy(j->sj.target.connect_addr, ip, sizeof(j->sj.target.connect_addr));
		util_strlcpy(j->relay_first, ip, sizeof(j->relay_first));
		j->relay_tries = 1;
		j->tried[0] = '\0';
	}
	log_debug("sending via relay", "msg_id=%s rcpt=%s attempt=%d worker=%s addr=%s port=%u",
	    d->msg_id, d->rcpt, d->attempts, w->consumer, j->sj.target.connect_addr, j->sj.target.port);
	if (smtp_engine_submit(w->engine, &j->sj) != 0) {
		set_outcome(&j->out, SMTP_RESULT_TEMPFAIL, "shutdown", "worker shutting down");
		push_done(w, j);
	}
}

static void
heartbeat(struct worker *w, struct store *st)
{
	const char **ids = NULL, **projects = NULL;
	enum store_lane *lanes = NULL;
	unsigned *parts = NULL;
	size_t n = 0;

	pthread_mutex_lock(&w->mu);
	if (w->nfly > 0 && (ids = calloc((size_t)w->nfly, sizeof(*ids))) != NULL &&
	    (projects = calloc((size_t)w->nfly, sizeof(*projects))) != NULL &&
	    (lanes = calloc((size_t)w->nfly, sizeof(*lanes))) != NULL &&
	    (parts = calloc((size_t)w->nfly, sizeof(*parts))) != NULL) {
		/* Copies: the strings live in deliveries the recorder may free. */
		for (struct job *j = w->fly; j != NULL; j = j->next_fly) {
			if ((ids[n] = strdup(j->d->entry_id)) == NULL)
				continue;
			if ((projects[n] = strdup(j->d->stream_project)) == NULL) {
				free((void *)ids[n]);
				continue;
			}
			parts[n] = store_id_partition(j->d->msg_id);
			lanes[n++] = j->d->lane;
		}
	}
	pthread_mutex_unlock(&w->mu);
	if (n > 0 && store_heartbeat(st, w->consumer, ids, lanes, projects, parts, n) != STORE_OK)
		log_debug("heartbeat failed", "worker=%s", w->consumer);
	for (size_t i = 0; i < n; i++) {
		free((void *)ids[i]);
		free((void *)projects[i]);
	}
	free(ids);
	free(projects);
	free(lanes);
	free(parts);
}

/*
 * feeder_drain - the stop has begun and nothing more is fetched: entries
 * read but not claimed go back (st: NULL when the store was never
 * reached), held and unresolved jobs come back as "shutdown", and the
 * engine gives back every job whose transaction has not begun. The
 * recorder hands those back to the queue.
 */
static void
feeder_drain(struct worker *w, struct store *st)
{
	size_t back = 0;
	struct job *waiting = NULL, *j;

	/*
	 * Jobs waiting for a destination slot never began: "shutdown", handed
	 * back uncounted. A finishing transaction stops giving its slot away
	 * first, and the ones it gave are let through dispatch_one before the
	 * shaper and the resolver go.
	 */
	pthread_mutex_lock(&w->mu);
	w->fair_closed = 1;
	while ((j = fair_take_waiting(w->fair)) != NULL) {
		j->fair_waiting = 0;
		w->nwait--;
		j->next_done = waiting;
		waiting = j;
	}
	while (w->fair_busy > 0)
		pthread_cond_wait(&w->cv, &w->mu);
	pthread_mutex_unlock(&w->mu);
	while ((j = waiting) != NULL) {
		waiting = j->next_done;
		set_outcome(&j->out, SMTP_RESULT_TEMPFAIL, "shutdown", "worker shutting down");
		push_done(w, j);
	}

	if (st != NULL && store_hand_back_carried(st, w->consumer, &back) != STORE_OK)
		/* they are reclaimed after the visibility timeout */
		log_warn("cannot hand back entries read ahead", "worker=%s", w->consumer);
	if (back > 0) {
		pthread_mutex_lock(&w->mu);
		w->stats.not_started += back;
		pthread_mutex_unlock(&w->mu);
	}
	shaper_stop(w->shaper);
	route_free(w->route);   /* unanswered lookups come back as "shutdown" */
	w->route = NULL;
	if (w->engine != NULL)
		smtp_engine_drain(w->engine);
	atomic_store(&w->fed_out, 1);
}

static void *
feeder_main(void *arg)
{
	struct worker *w = arg;
	struct store *st = store_open(&w->cfg->redis);
	struct store_delivery *out[FETCH_BATCH];
	int64_t vis_ms = (int64_t)(w->cfg->visibility_timeout * 1000);
	int64_t last_reclaim = 0, last_hb = util_mono_ms();
	int block_ms = (int)(vis_ms / 4 < 500 ? vis_ms / 4 : 500);
	int inited = 0, down = 0;
	char err[256];
	/* a round: a blocking fetch (block_ms + the command timeout), a reclaim, a heartbeat */
	struct health_loop *hl = loop_register(w, "feeder", block_ms + redis_wait_ms(w));

	if (st == NULL) {
		log_error("out of memory", "worker=%s", w->consumer);
		feeder_drain(w, NULL);
		health_unregister(hl);
		return NULL;
	}
	store_set_lane_weights(st, w->cfg->lane_weight_high, w->cfg->lane_weight_normal);
	/*
	 * Relay mode: give the relay's first lookup a moment (bounded, still
	 * stoppable), so that work waiting at start is not deferred only
	 * because it came first.
	 */
	for (int64_t until = util_mono_ms() + 5000; w->rdns != NULL &&
	    !atomic_load(&w->stop_feed) && util_mono_ms() < until;) {
		health_beat(hl);
		if (relaydns_wait_first(w->rdns, 100) == 0)
			break;
	}
	while (!atomic_load(&w->stop_feed)) {
		int room, n;
		int64_t mono = util_mono_ms();

		health_beat(hl);

		if (!inited) {
			if (store_init(st, err, sizeof(err)) != STORE_OK) {
				if (!down++)
					log_warn("store not ready", "worker=%s error=%s", w->consumer, err);
				nap_ms(500);
				continue;
			}
			inited = 1;
		}
		if (mono - last_hb >= vis_ms / 3) {
			heartbeat(w, st);
			last_hb = mono;
		}
		pthread_mutex_lock(&w->mu);
		room = w->cfg->worker_concurrency - (w->nfly - w->nwait);
		if (room <= 0) {
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_nsec += 100 * 1000000L;
			if (ts.tv_nsec >= 1000000000L) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000L;
			}
			pthread_cond_timedwait(&w->cv, &w->mu, &ts);
			pthread_mutex_unlock(&w->mu);
			continue;
		}
		pthread_mutex_unlock(&w->mu);
		if (room > FETCH_BATCH)
			room = FETCH_BATCH;

		if (mono - last_reclaim >= 1000) {
			last_reclaim = mono;
			n = store_reclaim(st, w->consumer, vis_ms, room, out);
			if (n > 0) {
				log_info("took over deliveries from a stopped worker", "worker=%s deliveries=%d",
				    w->consumer, n);
				feed(w, st, out, n);
				continue;
			}
		}
		clear_unsaturated(w, st);
		n = store_fetch(st, w->consumer, room, block_ms, out);
		if (n < 0) {
			if (!down++)
				log_warn("cannot fetch work, retrying (redis unavailable?)", "worker=%s",
				    w->consumer);
			nap_ms(500);
			continue;
		}
		if (down) {
			log_info("store reachable again", "worker=%s", w->consumer);
			down = 0;
		}
		feed(w, st, out, n);
	}
	health_unregister(hl);   /* stopping: /readyz is 503 (draining) from here on anyway */
	feeder_drain(w, inited ? st : NULL);
	/* the transactions still in flight keep their entries until worker_stop has waited */
	while (!atomic_load(&w->stop_hb)) {
		if (util_mono_ms() - last_hb >= vis_ms / 3) {
			heartbeat(w, st);
			last_hb = util_mono_ms();
		}
		nap_ms(50);
	}
	store_close(st);
	return NULL;
}

/* --- recorder thread ------------------------------------------------------ */

/*
 * build_rec - the texts store_record writes for one outcome (the smtp
 * field, the event, the timeline entry: outcome_json.c); 0 or -1 (out of
 * memory, nothing to free).
 */
static int
build_rec(const struct job *j, const char *status, const char *reason, int64_t now,
    int64_t next_ms, struct outcome_json *r)
{
	const struct store_delivery *d = j->d;
	char evt_id[48], at[40], next_at[40];
	struct outcome_json_in in;

	memset(r, 0, sizeof(*r));
	memset(&in, 0, sizeof(in));
	util_rfc3339(now, at, sizeof(at));
	if (util_random_id("evt_", evt_id, sizeof(evt_id)) != 0)
		return -1;
	in.evt_id = evt_id;
	in.type = strcmp(status, "delivered") == 0 ? "message.delivered" :
	    strcmp(status, "deferred") == 0 ? "message.deferred" : "message.failed";
	in.at = at;
	in.msg_id = d->msg_id;
	in.rcpt = d->rcpt;
	in.status = status;
	in.reason = reason;
	in.attempt = d->attempts;
	in.out = &j->out;
	in.metadata_json = d->metadata_json;
	in.tags_json = d->tags_json;
	outcome_json_times(d->created_ms, d->due_ms, j->start_ms, now, &in.latency_ms, &in.queued_ms);
	if (strcmp(status, "delivered") == 0)
		in.delivered_at = at;
	else if (strcmp(status, "deferred") == 0) {
		util_rfc3339(next_ms, next_at, sizeof(next_at));
		in.next_attempt_at = next_at;
	}
	return outcome_json_build(&in, r);
}

/*
 * log_outcome - the line for one recorded outcome: msg is the status
 * ("delivered", "deferred", "failed", "expired"); a deferral says when the
 * next attempt is due, as a duration ("300s"), and retry_hint=honoured when
 * that is the delay the server's reply named, longer than the policy's.
 */
static void
log_outcome(const struct job *j, const char *status, const struct retry_decision *dec, int64_t now)
{
	const struct store_delivery *d = j->d;
	const char *stage = j->out.stage != NULL ? j->out.stage : "";
	char retry[48];

	if (!log_enabled(LOG_INFO))
		return;
	if (dec->verdict == RETRY_DEFERRED) {
		util_fmt_duration((double)(dec->next_ms > now ? dec->next_ms - now : 0) / 1000.0, retry,
		    sizeof(retry));
		if (dec->hinted)
			log_info(status, "msg_id=%s rcpt=%s attempt=%d stage=%s code=%d enhanced=%s reply=%.200s "
			    "retry_in=%s retry_hint=honoured", d->msg_id, d->rcpt, d->attempts, stage, j->out.code,
			    j->out.enhanced, j->out.text, retry);
		else
			log_info(status, "msg_id=%s rcpt=%s attempt=%d stage=%s code=%d enhanced=%s reply=%.200s retry_in=%s",
			    d->msg_id, d->rcpt, d->attempts, stage, j->out.code, j->out.enhanced, j->out.text, retry);
	} else {
		log_info(status, "msg_id=%s rcpt=%s attempt=%d stage=%s code=%d enhanced=%s reply=%.200s",
		    d->msg_id, d->rcpt, d->attempts, stage, j->out.code, j->out.enhanced, j->out.text);
	}
}

/* reply_hint_ms - the delay a server's 4xx reply names ("try again in 5 minutes"), 0 if none. */
static int64_t
reply_hint_ms(const struct smtp_outcome *o)
{
	if (o->code < 400 || o->code > 499)
		return 0;   /* no reply (our own text), or not a tempfail reply */
	return (int64_t)retry_hint_parse(o->text, strnlen(o->text, sizeof(o->text))) * 1000;
}

/* count_outcome - the metrics of one recorded outcome (metrics.h). */
static void
count_outcome(const struct worker *w, const struct job *j, const struct store_result *r, int64_t now)
{
	struct metrics_outcome mo;

	memset(&mo, 0, sizeof(mo));
	mo.status = r->status;
	mo.counted = r->counted;
	mo.code = j->out.code;
	mo.enhanced = j->out.enhanced;
	mo.stage = j->out.stage;
	mo.destination = job_dest(w, j);
	mo.lane = j->d->lane;
	mo.latency_ms = j->d->created_ms > 0 && now >= j->d->created_ms ? now - j->d->created_ms : -1;
	metrics_delivery_outcome(&mo);
}

/* Record a batch; returns 0 when recorded, -1 to try again later. */
static int
record_batch(struct worker *w, struct store *st, struct job **jobs, size_t n)
{
	struct store_result res[RECORD_BATCH];
	struct outcome_json recs[RECORD_BATCH];
	struct store_handback hb[RECORD_BATCH];
	struct job *rjob[RECORD_BATCH];
	int64_t now = util_now_ms();
	size_t k = 0, nhb = 0, ncut = 0, back = 0;
	int rc;

	for (size_t i = 0; i < n; i++) {
		struct job *j = jobs[i];
		struct retry_decision dec;
		const char *status, *reason = NULL;
		int stopped = stopped_stage(j->out.stage);

		if (stopped != 0) {
			/* stopped, no outcome: back to the queue (counted only if the transaction began) */
			hb[nhb].d = j->d;
			hb[nhb++].counted = stopped == 2;
			ncut += stopped == 2;
			continue;
		}
		dec = retry_decide_hint(&w->policy, j->out.result, j->d->attempts, now, j->d->expires_ms,
		    reply_hint_ms(&j->out));
		if (j->not_before_ms > 0 && dec.verdict == RETRY_DEFERRED) {
			/* destination suspended (shaper): due again when the suspension ends */
			dec.next_ms = j->not_before_ms > now ? j->not_before_ms : now;
			if (dec.next_ms >= j->d->expires_ms)
				dec.verdict = RETRY_EXPIRED;
		}
		status = retry_verdict_name(dec.verdict);
		if (dec.verdict == RETRY_FAILED)
			reason = "bounced";
		else if (dec.verdict == RETRY_EXPIRED)
			reason = "expired";
		if (build_rec(j, status, reason, now, dec.next_ms, &recs[k]) != 0) {
			for (size_t x = 0; x < k; x++)
				outcome_json_free(&recs[x]);
			return -1;
		}
		memset(&res[k], 0, sizeof(res[k]));
		rjob[k] = j;
		res[k].d = j->d;
		res[k].status = status;
		res[k].next_ms = dec.next_ms;
		res[k].now_ms = now;
		{
			long long lat, queued;

			outcome_json_times(j->d->created_ms, j->d->due_ms, j->start_ms, now, &lat, &queued);
			res[k].latency_ms = lat;   /* GET's recipients[i].latency_ms */
		}
		res[k].smtp_json = recs[k].smtp;
		res[k].event_json = recs[k].event;
		res[k].timeline_json = recs[k].timeline;
		/* A 5.1.x bounce (bad mailbox, bad domain) will bounce again: stop sending to it. */
		if (dec.verdict == RETRY_FAILED && strncmp(j->out.enhanced, "5.1.", 4) == 0)
			res[k].suppress_reason = "bounced";
		log_outcome(j, status, &dec, now);
		k++;
	}
	rc = k > 0 ? store_record(st, res, k) : STORE_OK;
	if (rc == STORE_OK && k > 0)
		webhook_notify();   /* each record added an event: this process's dispatcher looks now */
	for (size_t x = 0; rc == STORE_OK && x < k; x++)
		count_outcome(w, rjob[x], &res[x], now);
	for (size_t x = 0; x < k; x++)
		outcome_json_free(&recs[x]);
	/* after the records: a retry of the batch finds them recorded and changes nothing */
	if (rc == STORE_OK && nhb > 0)
		rc = store_hand_back(st, w->consumer, hb, nhb, &back);
	if (rc != STORE_OK)
		return -1;
	for (size_t x = 0; x < nhb; x++)
		/* stage cut: during the SMTP transaction, it may be delivered twice;
		 * not_started: the attempt is not counted */
		log_info("handed back", "msg_id=%s rcpt=%s attempts=%d stage=%s worker=%s",
		    hb[x].d->msg_id, hb[x].d->rcpt,
		    hb[x].counted ? hb[x].d->attempts : hb[x].d->attempts - 1,
		    hb[x].counted ? "cut" : "not_started", w->consumer);
	pthread_mutex_lock(&w->mu);
	if (atomic_load(&w->stop_feed))
		w->stats.finished += k;
	w->stats.not_started += nhb - ncut;
	w->stats.cut += ncut;
	pthread_mutex_unlock(&w->mu);
	return 0;
}

static void *
recorder_main(void *arg)
{
	struct worker *w = arg;
	struct store *st = store_open(&w->cfg->redis);
	struct job *batch[RECORD_BATCH];
	int down = 0;
	/* a round: one batched store_record (the command timeout); idle, it wakes each second */
	struct health_loop *hl = loop_register(w, "recorder", redis_wait_ms(w));

	if (st == NULL) {
		log_error("out of memory", "worker=%s", w->consumer);
		health_unregister(hl);
		return NULL;
	}
	for (;;) {
		size_t n = 0;

		health_beat(hl);
		pthread_mutex_lock(&w->mu);
		if (w->done_head == NULL && !atomic_load(&w->stop_record)) {
			struct timespec ts;

			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_sec += 1;
			pthread_cond_timedwait(&w->cv, &w->mu, &ts);
			if (w->done_head == NULL && !atomic_load(&w->stop_record)) {
				pthread_mutex_unlock(&w->mu);
				continue;   /* idle: beat again */
			}
		}
		if (w->done_head == NULL) {
			pthread_mutex_unlock(&w->mu);
			break;
		}
		for (struct job *j = w->done_head; j != NULL && n < RECORD_BATCH; j = j->next_done)
			batch[n++] = j;
		pthread_mutex_unlock(&w->mu);

		if (record_batch(w, st, batch, n) != 0) {
			if (!down++)
				log_warn("cannot record outcomes, retrying (redis unavailable?)",
				    "worker=%s held=%zu", w->consumer, n);
			if (atomic_load(&w->stop_record) > 1) {
				/* hard stop: leave them pending; they are redelivered later */
				pthread_mutex_lock(&w->mu);
				w->stats.left_pending += n;
				for (size_t i = 0; i < n; i++) {
					w->done_head = batch[i]->next_done;
					fly_del(w, batch[i]);
					job_free(batch[i]);
				}
				if (w->done_head == NULL)
					w->done_tail = NULL;
				pthread_mutex_unlock(&w->mu);
				continue;
			}
			nap_ms(250);
			continue;
		}
		if (down) {
			log_info("recording outcomes again", "worker=%s", w->consumer);
			down = 0;
		}
		pthread_mutex_lock(&w->mu);
		for (size_t i = 0; i < n; i++) {
			w->done_head = batch[i]->next_done;
			fly_del(w, batch[i]);
			job_free(batch[i]);
		}
		if (w->done_head == NULL)
			w->done_tail = NULL;
		pthread_cond_broadcast(&w->cv);
		pthread_mutex_unlock(&w->mu);
	}
	health_unregister(hl);
	store_close(st);
	return NULL;
}

/* --- lifecycle ------------------------------------------------------------ */

/* metrics collector: this loop's suspended destinations */
static void
worker_collect(void *arg, struct metrics_collect *out)
{
	struct worker *w = arg;

	out->suspended += (int64_t)shaper_suspended(w->shaper);
	pthread_mutex_lock(&w->mu);
	out->dest_waiting += w->nwait;
	out->dest_full += (int64_t)fair_full(w->fair);
	pthread_mutex_unlock(&w->mu);
}

struct worker *
worker_start(const struct config *cfg, int index, char *err, size_t errlen)
{
	struct worker *w = calloc(1, sizeof(*w));
	struct smtp_engine_config ec;
	char host[64], rnd[8];

	if (w == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	w->cfg = cfg;
	w->index = index;
	w->policy.base_s = cfg->retry_base;
	w->policy.max_s = cfg->retry_max;
	if (gethostname(host, sizeof(host)) != 0)
		util_strlcpy(host, "host", sizeof(host));
	host[sizeof(host) - 1] = '\0';
	util_random_bytes(rnd, sizeof(rnd));
	snprintf(w->consumer, sizeof(w->consumer), "%s-%d-%d-%02x%02x%02x", host, (int)getpid(),
	    index, (unsigned char)rnd[0], (unsigned char)rnd[1], (unsigned char)rnd[2]);
	pthread_mutex_init(&w->mu, NULL);
	pthread_cond_init(&w->cv, NULL);

	memset(&ec, 0, sizeof(ec));
	util_strlcpy(ec.helo_name, cfg->helo_name, sizeof(ec.helo_name));
	util_strlcpy(ec.ca_file, cfg->tls_ca_file, sizeof(ec.ca_file));
	ec.timeouts = cfg->smtp_timeouts;
	ec.max_conns_per_target = cfg->max_conns_per_target;
	ec.max_msgs_per_conn = cfg->max_msgs_per_conn;
	ec.on_done = on_engine_done;
	ec.log = on_engine_log;
	ec.arg = w;
	w->engine = smtp_engine_new(&ec, err, errlen);
	if (w->engine == NULL)
		goto fail;
	{
		struct shaper_config sc;

		memset(&sc, 0, sizeof(sc));
		sc.domain_rate = cfg->domain_rate;
		sc.params.fail_threshold = cfg->dest_fail_threshold > 0 ? cfg->dest_fail_threshold : 5;
		sc.params.backoff_base_ms = cfg->dest_backoff_base > 0 ? (int64_t)(cfg->dest_backoff_base * 1000) : 10000;
		sc.params.backoff_max_ms = cfg->dest_backoff_max > 0 ? (int64_t)(cfg->dest_backoff_max * 1000) : 600000;
		sc.params.rate_share = cfg->workers > 0 ? cfg->workers : 1;
		sc.on_release = on_shaper_release;
		sc.arg = w;
		sc.redis = &cfg->redis;   /* the rates and suspensions are shared by every worker */
		if ((w->shaper = shaper_new(&sc, err, errlen)) == NULL)
			goto fail;
		(void)metrics_collector_add(worker_collect, w);   /* full (64 loops): not counted */
		snprintf(w->relay_dest, sizeof(w->relay_dest), "relay %s:%u", cfg->relay.host, cfg->relay.port);
	}
	{
		/*
		 * Per-destination caps: by default a quarter of the slots per MX
		 * host set; through a relay, the relay is the only destination,
		 * so all of them unless TXMAIL_DEST_MAX_INFLIGHT says otherwise.
		 * At most as many again wait per destination, and the loop's
		 * slots in all.
		 */
		struct fair_params fp;

		memset(&fp, 0, sizeof(fp));
		w->dest_cap = cfg->dest_max_inflight > 0 ? cfg->dest_max_inflight :
		    cfg->relay_set ? cfg->worker_concurrency : cfg->worker_concurrency / 4;
		if (w->dest_cap < 1)
			w->dest_cap = 1;
		if (w->dest_cap > cfg->worker_concurrency)
			w->dest_cap = cfg->worker_concurrency;
		fp.cap = w->dest_cap;
		fp.wait_cap = w->dest_cap;
		fp.wait_total = cfg->worker_concurrency;
		if ((w->fair = fair_new(&fp)) == NULL) {
			snprintf(err, errlen, "out of memory");
			goto fail;
		}
	}
	if (cfg->relay_set &&
	    (w->rdns = relay_dns_get(&cfg->relay, &w->rdns_shared, err, errlen)) == NULL)
		goto fail;
	if (!cfg->relay_set) {
		struct route_config rc;

		memset(&rc, 0, sizeof(rc));
		rc.dns_server = cfg->dns_server;
		rc.timeout_s = 5;
		rc.threads = 2;
		rc.on_result = on_route;
		rc.arg = w;
		if ((w->route = route_new(&rc, err, errlen)) == NULL)
			goto fail;
	}
	if (pthread_create(&w->engine_thr, NULL, engine_main, w) != 0)
		goto fail_thr;
	w->started_engine = 1;
	if (pthread_create(&w->recorder_thr, NULL, recorder_main, w) != 0)
		goto fail_thr;
	w->started_recorder = 1;
	if (pthread_create(&w->feeder_thr, NULL, feeder_main, w) != 0)
		goto fail_thr;
	w->started_feeder = 1;
	log_info("worker started", "worker=%s concurrency=%d dest_max_inflight=%d lanes=high:%d,normal:%d",
	    w->consumer, cfg->worker_concurrency, w->dest_cap, cfg->lane_weight_high,
	    cfg->lane_weight_normal);
	return w;
fail_thr:
	snprintf(err, errlen, "cannot start worker threads");
fail:
	worker_stop(w, util_mono_ms(), NULL);
	return NULL;
}

void
worker_drain(struct worker *w)
{
	if (w == NULL)
		return;
	atomic_store(&w->stop_feed, 1);
	pthread_mutex_lock(&w->mu);
	pthread_cond_broadcast(&w->cv);   /* a feeder waiting for room */
	pthread_mutex_unlock(&w->mu);
}

void
worker_stop(struct worker *w, int64_t deadline_ms, struct worker_stop_stats *stats)
{
	size_t left = 0;

	if (w == NULL)
		return;
	worker_drain(w);
	/*
	 * Let the transactions in flight finish and be recorded, and the rest
	 * be handed back, within the grace period. The feeder keeps
	 * heartbeating meanwhile, so no other worker takes them over.
	 */
	for (;;) {
		int n;

		pthread_mutex_lock(&w->mu);
		n = w->nfly;
		pthread_mutex_unlock(&w->mu);
		if ((n == 0 && (atomic_load(&w->fed_out) || !w->started_feeder)) ||
		    util_mono_ms() >= deadline_ms)
			break;
		nap_ms(20);
	}
	atomic_store(&w->stop_hb, 1);
	if (w->started_feeder)
		pthread_join(w->feeder_thr, NULL);
	/* idempotent: already done by the feeder unless it never ran */
	shaper_stop(w->shaper);
	route_free(w->route);
	w->route = NULL;
	atomic_store(&w->stop_engine, 1);
	if (w->engine != NULL)
		smtp_engine_wake(w->engine);
	if (w->started_engine)
		pthread_join(w->engine_thr, NULL);
	if (w->engine != NULL)
		smtp_engine_free(w->engine);   /* transactions still running: outcome "cut" */
	metrics_collector_del(worker_collect, w);   /* no scrape reads the shaper after this */
	shaper_free(w->shaper);   /* after the engine: on_engine_done reports to it */
	fair_free(w->fair);       /* its line is empty: feeder_drain took it */
	relay_dns_put(w->rdns, w->rdns_shared);   /* after the engine and the shaper: both pick */
	w->rdns = NULL;
	pthread_mutex_lock(&w->mu);
	atomic_store(&w->stop_record, 2);
	pthread_cond_broadcast(&w->cv);
	pthread_mutex_unlock(&w->mu);
	if (w->started_recorder)
		pthread_join(w->recorder_thr, NULL);
	/* Whatever is left was never recorded: it stays pending in Redis and is reclaimed. */
	while (w->fly != NULL) {
		struct job *j = w->fly;
		fly_del(w, j);
		job_free(j);
		left++;
	}
	w->stats.left_pending += left;
	if (w->started_feeder)
		log_info("worker stopped",
		    "worker=%s finished=%zu handed_back=%zu not_started=%zu cut=%zu left_pending=%zu",
		    w->consumer, w->stats.finished,
		    w->stats.not_started + w->stats.cut, w->stats.not_started, w->stats.cut,
		    w->stats.left_pending);
	if (stats != NULL) {
		stats->finished += w->stats.finished;
		stats->not_started += w->stats.not_started;
		stats->cut += w->stats.cut;
		stats->left_pending += w->stats.left_pending;
	}
	pthread_cond_destroy(&w->cv);
	pthread_mutex_destroy(&w->mu);
	free(w);
}
