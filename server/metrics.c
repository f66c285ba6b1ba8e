/*
 * metrics.c - process-local counters, histograms and the Prometheus text
 * exposition (GET /metrics).
 *
 * Owns the atomic counters declared in metrics.h. Counting is one or two
 * relaxed atomic adds (a new route pattern claims a slot once with a
 * compare and swap); histograms are sharded by thread (a few shards, each
 * on its own cache lines) so HTTP threads observing at once do not bounce
 * one line; nothing on the counting path allocates. The one lock on a
 * counting path is the destination table's, taken only for a destination
 * that has no slot yet (the top-N table: a destination takes one of
 * METRICS_TOP_DESTINATIONS slots for good once it has METRICS_DEST_PROMOTE
 * outcomes while a slot is free; until then, and for all others, it is
 * counted as "other", so every series only grows). metrics_render is pure
 * (snapshot + gauges in, text out) so tests feed it numbers. The handler
 * reads the queue gauges from Redis at scrape time through
 * store_queue_stats, and this process's figures from /proc. It must never
 * block a counting thread, print a label value a client chose, or fail a
 * scrape because Redis is down (the gauges are then left out and
 * txmail_redis_up is 0).
 */
#include "metrics.h"

#include <ctype.h>
#include <dirent.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "api.h"
#include "util.h"

#ifndef TXMAIL_VERSION
#define TXMAIL_VERSION "dev"
#endif

#define METRICS_MAX_OUT ((size_t)1024 * 1024)
#define METRICS_SHARDS 4
#define METRICS_MAX_COLLECTORS 64

/* finite bucket bounds in microseconds (Prometheus "le" is inclusive) */
static const uint64_t metrics_le_us[METRICS_NBUCKETS] = {
	5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000, 2500000, 5000000,
	10000000, 30000000, 60000000, 120000000, 300000000, 900000000, 3600000000u,
};

struct metrics_ahist {
	_Atomic uint64_t n[METRICS_NBUCKETS + 1];
	_Atomic uint64_t sum_us;
};

/* one shard of every histogram; a thread always uses the same shard */
struct metrics_shard {
	_Alignas(64) struct metrics_ahist accept[METRICS_ACCEPT_ROUTES];
	struct metrics_ahist latency[2];
	struct metrics_ahist smtp[METRICS_SMTP_COUNT];
	struct metrics_ahist webhook;
};

static _Atomic(const char *) metrics_routes[METRICS_MAX_ROUTES];
static _Atomic uint64_t metrics_http[METRICS_MAX_ROUTES][METRICS_NCLASSES];
static _Atomic uint64_t metrics_http_other[METRICS_NCLASSES];
static _Atomic uint64_t metrics_accepted;
static _Atomic uint64_t metrics_rcpt[METRICS_RCPT_COUNT][METRICS_REASON_COUNT];
static _Atomic uint64_t metrics_attempts[METRICS_ATTEMPT_COUNT];
static _Atomic uint64_t metrics_replies[METRICS_NREPLY];
static _Atomic uint64_t metrics_webhook[METRICS_WEBHOOK_COUNT];
static _Atomic uint64_t metrics_webhook_disabled_n;
static _Atomic uint64_t metrics_complaints[METRICS_COMPLAINT_COUNT];
static _Atomic uint64_t metrics_smtp[METRICS_SMTP_COUNT];
static _Atomic int64_t metrics_body_bytes;
static _Atomic int64_t metrics_pipe_waiting;
static _Atomic uint64_t metrics_parked_n;
static _Atomic uint64_t metrics_unrepl[METRICS_UNREPL_COUNT];
static _Atomic uint64_t metrics_subm[METRICS_SUBM_COUNT];
static _Atomic int64_t metrics_subm_open;
static _Atomic(const char *) metrics_accept_routes[METRICS_ACCEPT_ROUTES];
static struct metrics_shard metrics_shards[METRICS_SHARDS];
static _Atomic unsigned metrics_next_shard;
static _Thread_local unsigned metrics_my_shard;   /* 0: not assigned yet, else shard + 1 */

/* destinations: slots are written once (state 0 free -> 2 named) under dest_mu */
static char metrics_dest_name[METRICS_TOP_DESTINATIONS][METRICS_DEST_MAX + 1];
static _Atomic int metrics_dest_state[METRICS_TOP_DESTINATIONS];
static _Atomic uint64_t metrics_dest_n[METRICS_TOP_DESTINATIONS][METRICS_ATTEMPT_COUNT];
static _Atomic uint64_t metrics_dest_other[METRICS_ATTEMPT_COUNT];
static pthread_mutex_t metrics_dest_mu = PTHREAD_MUTEX_INITIALIZER;
static struct {
	char name[METRICS_DEST_MAX + 1];
	uint64_t n;
	uint64_t seen;           /* metrics_cand_tick when last counted */
} metrics_cand[METRICS_DEST_CANDIDATES];   /* under dest_mu; n 0 = free */
static uint64_t metrics_cand_tick;        /* under dest_mu */

static pthread_mutex_t metrics_coll_mu = PTHREAD_MUTEX_INITIALIZER;
static struct {
	metrics_collect_fn *fn;
	void *arg;
} metrics_coll[METRICS_MAX_COLLECTORS];

static const char *const metrics_rcpt_names[METRICS_RCPT_COUNT] = {
	"delivered", "deferred", "failed", "expired", "suppressed", "canceled",
};
/* the reason shown at 0 while a status has none yet, so each status has a series */
static const enum metrics_reason metrics_rcpt_default[METRICS_RCPT_COUNT] = {
	METRICS_REASON_OK, METRICS_REASON_REPLY_4XX, METRICS_REASON_REPLY_5XX,
	METRICS_REASON_REPLY_4XX, METRICS_REASON_SUPPRESSED, METRICS_REASON_CANCELED,
};
static const char *const metrics_reason_names[METRICS_REASON_COUNT] = {
	"ok", "suppressed", "canceled", "dns", "connect", "suspended", "timeout", "bounced", "4xx", "5xx",
	"4.0", "4.1", "4.2", "4.3", "4.4", "4.5", "4.6", "4.7",
	"5.0", "5.1", "5.2", "5.3", "5.4", "5.5", "5.6", "5.7",
	"other",
};
static const char *const metrics_reply_names[METRICS_NREPLY] = {
	"1xx", "2xx", "3xx", "4xx", "5xx",
	"2.0", "2.1", "2.2", "2.3", "2.4", "2.5", "2.6", "2.7",
	"4.0", "4.1", "4.2", "4.3", "4.4", "4.5", "4.6", "4.7",
	"5.0", "5.1", "5.2", "5.3", "5.4", "5.5", "5.6", "5.7",
};
static const char *const metrics_webhook_names[METRICS_WEBHOOK_COUNT] = {
	"success", "retry", "gave_up", "dropped",
};
static const char *const metrics_smtp_names[METRICS_SMTP_COUNT] = {
	"ok", "tempfail", "permfail",
};
static const char *const metrics_lane_names[2] = { "normal", "high" };

static void
metrics_add(_Atomic uint64_t *c, uint64_t n)
{
	atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

static uint64_t
metrics_load(_Atomic uint64_t *c)
{
	return atomic_load_explicit(c, memory_order_relaxed);
}

/* --- pure helpers ---------------------------------------------------------- */

double
metrics_bucket_le(size_t i)
{
	return i < METRICS_NBUCKETS ? (double)metrics_le_us[i] / 1e6 : 0.0;
}

size_t
metrics_bucket_index(uint64_t us)
{
	size_t i = 0;

	while (i < METRICS_NBUCKETS && us > metrics_le_us[i])
		i++;
	return i;
}

/* an enhanced status "C.S.D" whose class is code's and subject one digit 0-7: the subject, else -1 */
static int
metrics_enh_subject(int code, const char *enh)
{
	if (enh == NULL || enh[0] < '2' || enh[0] > '5' || enh[1] != '.' || enh[2] < '0' ||
	    enh[2] > '7' || enh[3] != '.' || enh[4] < '0' || enh[4] > '9')
		return -1;
	if (code != 0 && enh[0] - '0' != code / 100)
		return -1;
	return enh[2] - '0';
}

int
metrics_reply_class(int code, const char *enhanced)
{
	int subj;

	if (code < 100 || code > 599)
		return -1;
	subj = metrics_enh_subject(code, enhanced);
	if (subj >= 0 && code / 100 != 1 && code / 100 != 3)
		return METRICS_NCLASSES + (code / 100 == 2 ? 0 : code / 100 == 4 ? 1 : 2) * 8 + subj;
	return code / 100 - 1;
}

static int
metrics_stage_is(const char *stage, const char *const *names)
{
	for (; stage != NULL && *names != NULL; names++)
		if (strcmp(stage, *names) == 0)
			return 1;
	return 0;
}

enum metrics_reason
metrics_reason(const char *status, int code, const char *enhanced, const char *stage)
{
	static const char *const dns[] = { "dns", "route", NULL };
	static const char *const conn[] = { "connect", "banner", "tls", "starttls", NULL };
	static const char *const mid[] = { "ehlo", "auth", "mail", "rcpt", "data", "dot", NULL };
	int subj;

	if (status == NULL)
		return METRICS_REASON_OTHER;
	if (strcmp(status, "delivered") == 0)
		return METRICS_REASON_OK;
	if (strcmp(status, "suppressed") == 0)
		return METRICS_REASON_SUPPRESSED;
	if (strcmp(status, "canceled") == 0)
		return METRICS_REASON_CANCELED;
	if (stage != NULL && strcmp(stage, "suspended") == 0)
		return METRICS_REASON_SUSPENDED;
	if (code >= 400 && code <= 599) {
		subj = metrics_enh_subject(code, enhanced);
		if (subj >= 0)
			return (enum metrics_reason)((code / 100 == 4 ? METRICS_REASON_ENH_4 :
			    METRICS_REASON_ENH_5) + subj);
		return code / 100 == 4 ? METRICS_REASON_REPLY_4XX : METRICS_REASON_REPLY_5XX;
	}
	if (metrics_stage_is(stage, dns))
		return METRICS_REASON_DNS;
	if (metrics_stage_is(stage, conn))
		return METRICS_REASON_CONNECT;
	if (metrics_stage_is(stage, mid))
		return METRICS_REASON_TIMEOUT;
	return METRICS_REASON_OTHER;
}

const char *
metrics_reason_name(enum metrics_reason r)
{
	return (unsigned)r < METRICS_REASON_COUNT ? metrics_reason_names[r] : "other";
}

uint64_t
metrics_clock_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* --- counting -------------------------------------------------------------- */

static struct metrics_shard *
metrics_shard(void)
{
	if (metrics_my_shard == 0)
		metrics_my_shard = atomic_fetch_add_explicit(&metrics_next_shard, 1,
		    memory_order_relaxed) % METRICS_SHARDS + 1;
	return &metrics_shards[metrics_my_shard - 1];
}

static uint64_t
metrics_us(double seconds)
{
	if (!(seconds > 0))     /* negative, zero or NaN */
		return 0;
	if (seconds > 1e9)
		return (uint64_t)1e15;
	return (uint64_t)(seconds * 1e6 + 0.5);
}

static void
metrics_observe(struct metrics_ahist *h, uint64_t us)
{
	metrics_add(&h->n[metrics_bucket_index(us)], 1);
	metrics_add(&h->sum_us, us);
}

/* the slot of a static string in a CAS-claimed table; -1 when full */
static int
metrics_slot(_Atomic(const char *) *tab, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++) {
		const char *cur = atomic_load_explicit(&tab[i], memory_order_acquire);

		if (cur == NULL) {
			const char *expect = NULL;

			if (atomic_compare_exchange_strong_explicit(&tab[i], &expect, name,
			    memory_order_acq_rel, memory_order_acquire))
				cur = name;
			else
				cur = expect;   /* another thread took the slot */
		}
		if (cur == name || strcmp(cur, name) == 0)
			return (int)i;
	}
	return -1;
}

void
metrics_http_request(const char *route, int status)
{
	int cls, i;

	if (status < 100 || status > 599)
		return;
	cls = status / 100 - 1;
	if (route == NULL)
		route = "unmatched";
	i = metrics_slot(metrics_routes, METRICS_MAX_ROUTES, route);
	if (i >= 0)
		metrics_add(&metrics_http[i][cls], 1);
	else
		metrics_add(&metrics_http_other[cls], 1);
}

void
metrics_accept_duration(const char *route, double seconds)
{
	int i;

	if (route == NULL)
		return;
	i = metrics_slot(metrics_accept_routes, METRICS_ACCEPT_ROUTES, route);
	if (i >= 0)
		metrics_observe(&metrics_shard()->accept[i], metrics_us(seconds));
}

void
metrics_accept_route(const char *route)
{
	if (route != NULL)
		(void)metrics_slot(metrics_accept_routes, METRICS_ACCEPT_ROUTES, route);
}

void
metrics_messages_accepted(uint64_t n)
{
	metrics_add(&metrics_accepted, n);
}

static int
metrics_status_index(const char *status)
{
	if (status == NULL)
		return -1;
	for (int i = 0; i < METRICS_RCPT_COUNT; i++)
		if (strcmp(status, metrics_rcpt_names[i]) == 0)
			return i;
	return -1;
}

void
metrics_recipient(const char *status)
{
	int i = metrics_status_index(status);

	if (i >= 0)
		metrics_add(&metrics_rcpt[i][metrics_rcpt_default[i]], 1);
}

void
metrics_recipient_as(const char *status, enum metrics_reason r)
{
	int i = metrics_status_index(status);

	if (i >= 0 && (unsigned)r < METRICS_REASON_COUNT)
		metrics_add(&metrics_rcpt[i][r], 1);
}

/* a named slot holding dest, or -1; any thread */
static int
metrics_dest_find(const char *dest)
{
	for (int i = 0; i < METRICS_TOP_DESTINATIONS; i++) {
		if (atomic_load_explicit(&metrics_dest_state[i], memory_order_acquire) != 2)
			break;   /* slots fill in order */
		if (strcmp(metrics_dest_name[i], dest) == 0)
			return i;
	}
	return -1;
}

/*
 * metrics_dest_slot - dest's slot, taking a free one when dest has had
 * METRICS_DEST_PROMOTE outcomes, counted in a candidate table (when it is
 * full a new name replaces the least counted one, the least recently seen
 * of those, starting again at 1: a stream of one-off destinations cannot
 * take the slots, and evicts only one-offs before a destination seen
 * twice). -1: counted as "other".
 */
static int
metrics_dest_slot(const char *dest)
{
	size_t len = strlen(dest), c, min = 0;
	int i, free_slot = -1;

	if ((i = metrics_dest_find(dest)) >= 0)
		return i;
	if (len == 0 || len > METRICS_DEST_MAX)
		return -1;
	pthread_mutex_lock(&metrics_dest_mu);
	for (i = 0; i < METRICS_TOP_DESTINATIONS; i++) {
		if (atomic_load_explicit(&metrics_dest_state[i], memory_order_relaxed) != 2) {
			free_slot = i;
			break;
		}
		if (strcmp(metrics_dest_name[i], dest) == 0)
			goto out;   /* named meanwhile by another thread */
	}
	i = -1;
	if (free_slot < 0)
		goto out;   /* the table is full for good */
	for (c = 0; c < METRICS_DEST_CANDIDATES; c++) {
		if (metrics_cand[c].n != 0 && strcmp(metrics_cand[c].name, dest) == 0)
			break;
		if (metrics_cand[c].n < metrics_cand[min].n ||
		    (metrics_cand[c].n == metrics_cand[min].n && metrics_cand[c].seen < metrics_cand[min].seen))
			min = c;
	}
	if (c == METRICS_DEST_CANDIDATES) {
		c = min;
		memcpy(metrics_cand[c].name, dest, len + 1);
		metrics_cand[c].n = 0;
	}
	metrics_cand[c].n++;
	metrics_cand[c].seen = ++metrics_cand_tick;
	if (metrics_cand[c].n >= METRICS_DEST_PROMOTE) {
		memcpy(metrics_dest_name[free_slot], dest, len + 1);
		atomic_store_explicit(&metrics_dest_state[free_slot], 2, memory_order_release);
		metrics_cand[c].n = 0;
		metrics_cand[c].name[0] = '\0';
		i = free_slot;
	}
out:
	pthread_mutex_unlock(&metrics_dest_mu);
	return i;
}

void
metrics_delivery_outcome(const struct metrics_outcome *o)
{
	int st, slot;

	if (o == NULL || (st = metrics_status_index(o->status)) < 0 || st >= METRICS_ATTEMPT_COUNT)
		return;
	metrics_add(&metrics_attempts[st], 1);
	if (o->counted)
		metrics_add(&metrics_rcpt[st][metrics_reason(o->status, o->code, o->enhanced, o->stage)], 1);
	slot = -1;
	if (o->destination != NULL) {
		char low[METRICS_DEST_MAX + 2];
		size_t i = 0;

		/* one name per destination whatever the case the sender wrote */
		for (; o->destination[i] != '\0' && i < sizeof(low) - 1; i++)
			low[i] = (char)tolower((unsigned char)o->destination[i]);
		low[i] = '\0';
		slot = metrics_dest_slot(low);   /* too long (METRICS_DEST_MAX + 1): other */
	}
	if (slot >= 0)
		metrics_add(&metrics_dest_n[slot][st], 1);
	else
		metrics_add(&metrics_dest_other[st], 1);
	if (st == METRICS_RCPT_DELIVERED && o->counted && o->latency_ms >= 0)
		metrics_observe(&metrics_shard()->latency[o->lane == STORE_LANE_HIGH ? 1 : 0],
		    (uint64_t)o->latency_ms * 1000u);
}

void
metrics_smtp_reply(int code, const char *enhanced)
{
	int c = metrics_reply_class(code, enhanced);

	if (c >= 0)
		metrics_add(&metrics_replies[c], 1);
}

void
metrics_webhook_attempt(enum metrics_webhook result)
{
	if ((unsigned)result < METRICS_WEBHOOK_COUNT)
		metrics_add(&metrics_webhook[result], 1);
}

void
metrics_webhook_disabled(void)
{
	metrics_add(&metrics_webhook_disabled_n, 1);
}

/* the complaint kinds of RFC 5965 a report counts as (dsn_arf_is_complaint), "other" last */
static const char *const metrics_complaint_names[METRICS_COMPLAINT_COUNT] = {
	"abuse", "fraud", "virus", "other"
};

void
metrics_complaint(const char *feedback_type)
{
	size_t i = 0;

	while (i < METRICS_COMPLAINT_COUNT - 1 &&
	    (feedback_type == NULL || strcmp(feedback_type, metrics_complaint_names[i]) != 0))
		i++;
	metrics_add(&metrics_complaints[i], 1);
}

void
metrics_webhook_latency(double seconds)
{
	metrics_observe(&metrics_shard()->webhook, metrics_us(seconds));
}

void
metrics_smtp_transaction(int smtp_result)
{
	if (smtp_result >= 0 && smtp_result < METRICS_SMTP_COUNT)
		metrics_add(&metrics_smtp[smtp_result], 1);
}

void
metrics_smtp_duration(int smtp_result, double seconds)
{
	if (smtp_result >= 0 && smtp_result < METRICS_SMTP_COUNT)
		metrics_observe(&metrics_shard()->smtp[smtp_result], metrics_us(seconds));
}

void
metrics_http_body_bytes(int64_t delta)
{
	atomic_fetch_add_explicit(&metrics_body_bytes, delta, memory_order_relaxed);
}

void
metrics_accept_waiting(int64_t delta)
{
	atomic_fetch_add_explicit(&metrics_pipe_waiting, delta, memory_order_relaxed);
}

void
metrics_parked(int64_t n)
{
	if (n > 0)
		atomic_fetch_add_explicit(&metrics_parked_n, (uint64_t)n, memory_order_relaxed);
}

void
metrics_submission(enum metrics_subm what)
{
	if ((unsigned)what < METRICS_SUBM_COUNT)
		atomic_fetch_add_explicit(&metrics_subm[what], 1, memory_order_relaxed);
}

void
metrics_submission_sessions(int64_t delta)
{
	atomic_fetch_add_explicit(&metrics_subm_open, delta, memory_order_relaxed);
}

void
metrics_redis_unreplicated(enum metrics_unrepl what)
{
	if ((unsigned)what < METRICS_UNREPL_COUNT)
		atomic_fetch_add_explicit(&metrics_unrepl[what], 1, memory_order_relaxed);
}

int
metrics_collector_add(metrics_collect_fn *fn, void *arg)
{
	int rc = -1;

	pthread_mutex_lock(&metrics_coll_mu);
	for (size_t i = 0; i < METRICS_MAX_COLLECTORS; i++)
		if (metrics_coll[i].fn == NULL) {
			metrics_coll[i].fn = fn;
			metrics_coll[i].arg = arg;
			rc = 0;
			break;
		}
	pthread_mutex_unlock(&metrics_coll_mu);
	return rc;
}

void
metrics_collector_del(metrics_collect_fn *fn, void *arg)
{
	pthread_mutex_lock(&metrics_coll_mu);
	for (size_t i = 0; i < METRICS_MAX_COLLECTORS; i++)
		if (metrics_coll[i].fn == fn && metrics_coll[i].arg == arg) {
			metrics_coll[i].fn = NULL;
			metrics_coll[i].arg = NULL;
		}
	pthread_mutex_unlock(&metrics_coll_mu);
}

/* --- reading ------------------------------------------------------------- */

/* the unsigned decimal at *p (spaces skipped), advancing *p; 0 when none */
static uint64_t
metrics_num(const char **p)
{
	uint64_t v = 0;

	while (**p == ' ')
		(*p)++;
	while (**p >= '0' && **p <= '9') {
		if (v < UINT64_MAX / 10)
			v = v * 10 + (uint64_t)(**p - '0');
		(*p)++;
	}
	return v;
}

/* the next space-separated field of *p, skipped */
static void
metrics_skip(const char **p)
{
	while (**p == ' ')
		(*p)++;
	while (**p != ' ' && **p != '\0')
		(*p)++;
}

/* boot time (btime in /proc/stat), for the process start time; 0 when unknown */
static uint64_t
metrics_btime(void)
{
	char line[256];
	uint64_t bt = 0;
	FILE *f = fopen("/proc/stat", "re");

	if (f == NULL)
		return 0;
	while (fgets(line, sizeof(line), f) != NULL)
		if (strncmp(line, "btime ", 6) == 0) {
			const char *p = line + 6;

			bt = metrics_num(&p);
			break;
		}
	fclose(f);
	return bt;
}

/* metrics_process_read - /proc/self/stat (fields 14, 15, 22, 23, 24), /proc/self/fd, RLIMIT_NOFILE */
static void
metrics_process_read(struct metrics_process *out)
{
	char buf[1024];
	const char *p;
	size_t n;
	long tck = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
	uint64_t ut, stt, start, vsize, rss;
	FILE *f = fopen("/proc/self/stat", "re");
	DIR *d;
	struct dirent *e;
	struct rlimit rl;

	memset(out, 0, sizeof(*out));
	if (f == NULL)
		return;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* the command name (field 2) may hold spaces and parentheses: start after the last ')' */
	if ((p = strrchr(buf, ')')) == NULL || tck <= 0 || page <= 0)
		return;
	p++;
	for (int i = 3; i < 14; i++)
		metrics_skip(&p);
	ut = metrics_num(&p);
	stt = metrics_num(&p);
	for (int i = 16; i < 22; i++)
		metrics_skip(&p);
	start = metrics_num(&p);
	vsize = metrics_num(&p);
	rss = metrics_num(&p);
	out->cpu_seconds = (double)(ut + stt) / (double)tck;
	out->start_seconds = (double)metrics_btime() + (double)start / (double)tck;
	out->vsize_bytes = (int64_t)vsize;
	out->rss_bytes = (int64_t)(rss * (uint64_t)page);
	if ((d = opendir("/proc/self/fd")) != NULL) {
		while ((e = readdir(d)) != NULL)
			if (e->d_name[0] != '.')
				out->open_fds++;
		closedir(d);
		out->open_fds--;   /* the directory's own */
	}
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
		out->max_fds = rl.rlim_cur == RLIM_INFINITY ? -1 : (int64_t)rl.rlim_cur;
	out->ok = 1;
}

static void
metrics_hist_read(struct metrics_hist *out, struct metrics_ahist *(*pick)(struct metrics_shard *, size_t),
    size_t idx)
{
	memset(out, 0, sizeof(*out));
	for (size_t s = 0; s < METRICS_SHARDS; s++) {
		struct metrics_ahist *h = pick(&metrics_shards[s], idx);

		for (size_t b = 0; b <= METRICS_NBUCKETS; b++)
			out->n[b] += metrics_load(&h->n[b]);
		out->sum_us += metrics_load(&h->sum_us);
	}
}

static struct metrics_ahist *pick_accept(struct metrics_shard *s, size_t i) { return &s->accept[i]; }
static struct metrics_ahist *pick_latency(struct metrics_shard *s, size_t i) { return &s->latency[i]; }
static struct metrics_ahist *pick_smtp(struct metrics_shard *s, size_t i) { return &s->smtp[i]; }
static struct metrics_ahist *pick_webhook(struct metrics_shard *s, size_t i) { (void)i; return &s->webhook; }

void
metrics_snapshot(struct metrics_snapshot *out)
{
	struct metrics_collect col = { 0 };

	memset(out, 0, sizeof(*out));
	for (size_t i = 0; i < METRICS_MAX_ROUTES; i++) {
		const char *r = atomic_load_explicit(&metrics_routes[i], memory_order_acquire);

		if (r == NULL)
			break;
		out->route[i] = r;
		for (size_t c = 0; c < METRICS_NCLASSES; c++)
			out->http[i][c] = metrics_load(&metrics_http[i][c]);
		out->nroutes = i + 1;
	}
	for (size_t c = 0; c < METRICS_NCLASSES; c++)
		out->http_other[c] = metrics_load(&metrics_http_other[c]);
	out->accepted = metrics_load(&metrics_accepted);
	for (size_t i = 0; i < METRICS_RCPT_COUNT; i++)
		for (size_t r = 0; r < METRICS_REASON_COUNT; r++)
			out->rcpt[i][r] = metrics_load(&metrics_rcpt[i][r]);
	for (size_t i = 0; i < METRICS_ATTEMPT_COUNT; i++)
		out->attempts[i] = metrics_load(&metrics_attempts[i]);
	for (size_t i = 0; i < METRICS_NREPLY; i++)
		out->replies[i] = metrics_load(&metrics_replies[i]);
	for (size_t i = 0; i < METRICS_WEBHOOK_COUNT; i++)
		out->webhook[i] = metrics_load(&metrics_webhook[i]);
	out->webhook_disabled = metrics_load(&metrics_webhook_disabled_n);
	for (size_t i = 0; i < METRICS_COMPLAINT_COUNT; i++)
		out->complaints[i] = metrics_load(&metrics_complaints[i]);
	for (size_t i = 0; i < METRICS_SMTP_COUNT; i++)
		out->smtp[i] = metrics_load(&metrics_smtp[i]);
	out->http_body_bytes = atomic_load_explicit(&metrics_body_bytes, memory_order_relaxed);
	out->accept_waiting = atomic_load_explicit(&metrics_pipe_waiting, memory_order_relaxed);
	for (size_t i = 0; i < METRICS_ACCEPT_ROUTES; i++) {
		const char *r = atomic_load_explicit(&metrics_accept_routes[i], memory_order_acquire);

		if (r == NULL)
			break;
		out->accept_route[i] = r;
		metrics_hist_read(&out->accept[i], pick_accept, i);
		out->naccept = i + 1;
	}
	for (size_t i = 0; i < 2; i++)
		metrics_hist_read(&out->latency[i], pick_latency, i);
	for (size_t i = 0; i < METRICS_SMTP_COUNT; i++)
		metrics_hist_read(&out->smtp_duration[i], pick_smtp, i);
	metrics_hist_read(&out->webhook_latency, pick_webhook, 0);
	for (size_t i = 0; i < METRICS_TOP_DESTINATIONS; i++) {
		if (atomic_load_explicit(&metrics_dest_state[i], memory_order_acquire) != 2)
			break;
		util_strlcpy(out->dest[i], metrics_dest_name[i], sizeof(out->dest[i]));
		for (size_t r = 0; r < METRICS_ATTEMPT_COUNT; r++)
			out->dest_n[i][r] = metrics_load(&metrics_dest_n[i][r]);
		out->ndest = i + 1;
	}
	for (size_t r = 0; r < METRICS_ATTEMPT_COUNT; r++)
		out->dest_other[r] = metrics_load(&metrics_dest_other[r]);
	pthread_mutex_lock(&metrics_coll_mu);
	for (size_t i = 0; i < METRICS_MAX_COLLECTORS; i++)
		if (metrics_coll[i].fn != NULL)
			metrics_coll[i].fn(metrics_coll[i].arg, &col);
	pthread_mutex_unlock(&metrics_coll_mu);
	out->suspended = col.suspended;
	out->dest_waiting = col.dest_waiting;
	out->dest_full = col.dest_full;
	out->parked = atomic_load_explicit(&metrics_parked_n, memory_order_relaxed);
	for (size_t i = 0; i < METRICS_UNREPL_COUNT; i++)
		out->unreplicated[i] = atomic_load_explicit(&metrics_unrepl[i], memory_order_relaxed);
	for (size_t i = 0; i < METRICS_SUBM_COUNT; i++)
		out->subm[i] = atomic_load_explicit(&metrics_subm[i], memory_order_relaxed);
	out->subm_sessions = atomic_load_explicit(&metrics_subm_open, memory_order_relaxed);
	metrics_process_read(&out->proc);
}

void
metrics_reset(void)
{
	for (size_t i = 0; i < METRICS_MAX_ROUTES; i++) {
		atomic_store(&metrics_routes[i], NULL);
		for (size_t c = 0; c < METRICS_NCLASSES; c++)
			atomic_store(&metrics_http[i][c], 0);
	}
	for (size_t c = 0; c < METRICS_NCLASSES; c++)
		atomic_store(&metrics_http_other[c], 0);
	atomic_store(&metrics_accepted, 0);
	for (size_t i = 0; i < METRICS_RCPT_COUNT; i++)
		for (size_t r = 0; r < METRICS_REASON_COUNT; r++)
			atomic_store(&metrics_rcpt[i][r], 0);
	for (size_t i = 0; i < METRICS_ATTEMPT_COUNT; i++)
		atomic_store(&metrics_attempts[i], 0);
	for (size_t i = 0; i < METRICS_NREPLY; i++)
		atomic_store(&metrics_replies[i], 0);
	for (size_t i = 0; i < METRICS_WEBHOOK_COUNT; i++)
		atomic_store(&metrics_webhook[i], 0);
	atomic_store(&metrics_webhook_disabled_n, 0);
	for (size_t i = 0; i < METRICS_COMPLAINT_COUNT; i++)
		atomic_store(&metrics_complaints[i], 0);
	for (size_t i = 0; i < METRICS_SMTP_COUNT; i++)
		atomic_store(&metrics_smtp[i], 0);
	atomic_store(&metrics_body_bytes, 0);
	atomic_store(&metrics_parked_n, 0);
	for (size_t i = 0; i < METRICS_UNREPL_COUNT; i++)
		atomic_store(&metrics_unrepl[i], 0);
	for (size_t i = 0; i < METRICS_SUBM_COUNT; i++)
		atomic_store(&metrics_subm[i], 0);
	atomic_store(&metrics_subm_open, 0);
	for (size_t i = 0; i < METRICS_ACCEPT_ROUTES; i++)
		atomic_store(&metrics_accept_routes[i], NULL);
	memset(metrics_shards, 0, sizeof(metrics_shards));
	pthread_mutex_lock(&metrics_dest_mu);
	for (size_t i = 0; i < METRICS_TOP_DESTINATIONS; i++) {
		atomic_store(&metrics_dest_state[i], 0);
		metrics_dest_name[i][0] = '\0';
		for (size_t r = 0; r < METRICS_ATTEMPT_COUNT; r++)
			atomic_store(&metrics_dest_n[i][r], 0);
	}
	for (size_t r = 0; r < METRICS_ATTEMPT_COUNT; r++)
		atomic_store(&metrics_dest_other[r], 0);
	memset(metrics_cand, 0, sizeof(metrics_cand));
	metrics_cand_tick = 0;
	pthread_mutex_unlock(&metrics_dest_mu);
}

/* --- exposition ---------------------------------------------------------- */

struct metrics_buf {
	char *p;
	size_t len;
	size_t cap;
	int err;
};

static void metrics_printf(struct metrics_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
metrics_printf(struct metrics_buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (b->err)
		return;
	for (;;) {
		size_t room = b->cap - b->len;

		va_start(ap, fmt);
		n = vsnprintf(b->p + b->len, room, fmt, ap);
		va_end(ap);
		if (n < 0) {
			b->err = 1;
			return;
		}
		if ((size_t)n < room) {
			b->len += (size_t)n;
			return;
		}
		if (b->cap >= METRICS_MAX_OUT) {
			b->err = 1;
			return;
		}
		size_t ncap = b->cap * 2;
		char *np;

		while (ncap - b->len <= (size_t)n)
			ncap *= 2;
		if (ncap > METRICS_MAX_OUT)
			ncap = METRICS_MAX_OUT;
		np = realloc(b->p, ncap);
		if (np == NULL) {
			b->err = 1;
			return;
		}
		b->p = np;
		b->cap = ncap;
	}
}

static void
metrics_head(struct metrics_buf *b, const char *name, const char *type, const char *help)
{
	metrics_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* a label value, escaped per the exposition format (\\, \", \n) */
static void
metrics_label(struct metrics_buf *b, const char *v)
{
	for (; *v != '\0'; v++) {
		if (*v == '\\')
			metrics_printf(b, "\\\\");
		else if (*v == '"')
			metrics_printf(b, "\\\"");
		else if (*v == '\n')
			metrics_printf(b, "\\n");
		else
			metrics_printf(b, "%c", *v);
	}
}

static void
metrics_http_line(struct metrics_buf *b, const char *route, size_t cls, uint64_t v)
{
	metrics_printf(b, "txmail_http_requests_total{route=\"");
	metrics_label(b, route);
	metrics_printf(b, "\",code_class=\"%zuxx\"} %" PRIu64 "\n", cls + 1, v);
}

/*
 * metrics_hist_lines - the _bucket (cumulative), _sum and _count lines of
 * one histogram; lname/lval its one label (lval escaped).
 */
static void
metrics_hist_lines(struct metrics_buf *b, const char *name, const char *lname, const char *lval,
    const struct metrics_hist *h)
{
	uint64_t cum = 0;

	for (size_t i = 0; i <= METRICS_NBUCKETS; i++) {
		cum += h->n[i];
		metrics_printf(b, "%s_bucket{", name);
		if (lname != NULL) {
			metrics_printf(b, "%s=\"", lname);
			metrics_label(b, lval);
			metrics_printf(b, "\",");
		}
		if (i < METRICS_NBUCKETS)
			metrics_printf(b, "le=\"%g\"} %" PRIu64 "\n", metrics_bucket_le(i), cum);
		else
			metrics_printf(b, "le=\"+Inf\"} %" PRIu64 "\n", cum);
	}
	for (int k = 0; k < 2; k++) {
		metrics_printf(b, "%s_%s", name, k == 0 ? "sum" : "count");
		if (lname != NULL) {
			metrics_printf(b, "{%s=\"", lname);
			metrics_label(b, lval);
			metrics_printf(b, "\"}");
		}
		if (k == 0)
			metrics_printf(b, " %" PRIu64 ".%06" PRIu64 "\n", h->sum_us / 1000000u,
			    h->sum_us % 1000000u);
		else
			metrics_printf(b, " %" PRIu64 "\n", cum);
	}
}

static void
metrics_render_counters(struct metrics_buf *b, const struct metrics_snapshot *snap)
{
	metrics_head(b, "txmail_http_requests_total", "counter",
	    "HTTP requests answered by this process, by route pattern and status class.");
	for (size_t i = 0; i < snap->nroutes && i < METRICS_MAX_ROUTES; i++)
		for (size_t c = 0; c < METRICS_NCLASSES; c++)
			if (snap->http[i][c] != 0 && snap->route[i] != NULL)
				metrics_http_line(b, snap->route[i], c, snap->http[i][c]);
	for (size_t c = 0; c < METRICS_NCLASSES; c++)
		if (snap->http_other[c] != 0)
			metrics_http_line(b, "other", c, snap->http_other[c]);

	metrics_head(b, "txmail_messages_accepted_total", "counter",
	    "Messages accepted (202, stored) by this process; idempotent replays excluded.");
	metrics_printf(b, "txmail_messages_accepted_total %" PRIu64 "\n", snap->accepted);

	metrics_head(b, "txmail_recipients_total", "counter",
	    "Recipients that reached a state, each once per state (deferred: its first deferral), "
	    "by status and reason; suppressed and canceled are counted by the api, the rest by workers.");
	for (size_t i = 0; i < METRICS_RCPT_COUNT; i++) {
		int any = 0;

		for (size_t r = 0; r < METRICS_REASON_COUNT; r++)
			if (snap->rcpt[i][r] != 0 || (r == (size_t)metrics_rcpt_default[i])) {
				any = 1;
				metrics_printf(b, "txmail_recipients_total{status=\"%s\",reason=\"%s\"} %" PRIu64 "\n",
				    metrics_rcpt_names[i], metrics_reason_names[r], snap->rcpt[i][r]);
			}
		(void)any;
	}

	metrics_head(b, "txmail_delivery_attempts_total", "counter",
	    "Delivery attempts recorded by this process's workers, by outcome (a recipient deferred "
	    "three times counts three deferred attempts).");
	for (size_t i = 0; i < METRICS_ATTEMPT_COUNT; i++)
		metrics_printf(b, "txmail_delivery_attempts_total{result=\"%s\"} %" PRIu64 "\n",
		    metrics_rcpt_names[i], snap->attempts[i]);

	metrics_head(b, "txmail_smtp_replies_total", "counter",
	    "SMTP replies that decided a transaction or refused a recipient, by class: the enhanced "
	    "status class (\"4.7\") when the reply has one, else the basic class (\"4xx\").");
	for (size_t i = 0; i < METRICS_NREPLY; i++)
		if (snap->replies[i] != 0 || i == 1 || i == 3 || i == 4)
			metrics_printf(b, "txmail_smtp_replies_total{class=\"%s\"} %" PRIu64 "\n",
			    metrics_reply_names[i], snap->replies[i]);

	metrics_head(b, "txmail_destination_outcomes_total", "counter",
	    "Delivery attempts by destination (the recipient's domain, or the relay) and outcome; "
	    "the first 20 destinations seen at least 3 times have a label, the rest are \"other\".");
	for (size_t i = 0; i < snap->ndest && i < METRICS_TOP_DESTINATIONS; i++)
		for (size_t r = 0; r < METRICS_ATTEMPT_COUNT; r++) {
			metrics_printf(b, "txmail_destination_outcomes_total{destination=\"");
			metrics_label(b, snap->dest[i]);
			metrics_printf(b, "\",result=\"%s\"} %" PRIu64 "\n", metrics_rcpt_names[r],
			    snap->dest_n[i][r]);
		}
	for (size_t r = 0; r < METRICS_ATTEMPT_COUNT; r++)
		metrics_printf(b, "txmail_destination_outcomes_total{destination=\"other\",result=\"%s\"} %"
		    PRIu64 "\n", metrics_rcpt_names[r], snap->dest_other[r]);

	metrics_head(b, "txmail_smtp_transactions_total", "counter",
	    "SMTP transactions finished by this process's workers, by result.");
	for (size_t i = 0; i < METRICS_SMTP_COUNT; i++)
		metrics_printf(b, "txmail_smtp_transactions_total{result=\"%s\"} %" PRIu64 "\n",
		    metrics_smtp_names[i], snap->smtp[i]);

	metrics_head(b, "txmail_webhook_attempts_total", "counter",
	    "Webhook requests finished by this process's dispatcher, by result.");
	for (size_t i = 0; i < METRICS_WEBHOOK_COUNT; i++)
		metrics_printf(b, "txmail_webhook_attempts_total{result=\"%s\"} %" PRIu64 "\n",
		    metrics_webhook_names[i], snap->webhook[i]);

	metrics_head(b, "txmail_webhook_endpoints_disabled_total", "counter",
	    "Webhook endpoints this process's dispatcher disabled after failing for TXMAIL_WEBHOOK_DISABLE_AFTER.");
	metrics_printf(b, "txmail_webhook_endpoints_disabled_total %" PRIu64 "\n", snap->webhook_disabled);

	metrics_head(b, "txmail_complaints_total", "counter",
	    "Feedback reports (RFC 5965) this process's bounce listener applied, once per recipient, by feedback type.");
	for (size_t i = 0; i < METRICS_COMPLAINT_COUNT; i++)
		metrics_printf(b, "txmail_complaints_total{feedback_type=\"%s\"} %" PRIu64 "\n",
		    metrics_complaint_names[i], snap->complaints[i]);
}

static void
metrics_render_histograms(struct metrics_buf *b, const struct metrics_snapshot *snap)
{
	metrics_head(b, "txmail_accept_duration_seconds", "histogram",
	    "Time to answer a send request, from its headers to the answer, by route pattern.");
	for (size_t i = 0; i < snap->naccept && i < METRICS_ACCEPT_ROUTES; i++)
		if (snap->accept_route[i] != NULL)
			metrics_hist_lines(b, "txmail_accept_duration_seconds", "route", snap->accept_route[i],
			    &snap->accept[i]);
	metrics_head(b, "txmail_delivery_latency_seconds", "histogram",
	    "Time from acceptance to delivery of each delivered recipient, by priority lane "
	    "(a send_at message includes its wait).");
	for (size_t i = 0; i < 2; i++)
		metrics_hist_lines(b, "txmail_delivery_latency_seconds", "priority", metrics_lane_names[i],
		    &snap->latency[i]);
	metrics_head(b, "txmail_smtp_transaction_duration_seconds", "histogram",
	    "Time from dispatch to the outcome of each SMTP transaction (every address tried, the MX "
	    "lookup included), by result.");
	for (size_t i = 0; i < METRICS_SMTP_COUNT; i++)
		metrics_hist_lines(b, "txmail_smtp_transaction_duration_seconds", "result",
		    metrics_smtp_names[i], &snap->smtp_duration[i]);
	metrics_head(b, "txmail_webhook_latency_seconds", "histogram",
	    "Time from an event being recorded to the 2xx of a webhook endpoint for it.");
	metrics_hist_lines(b, "txmail_webhook_latency_seconds", NULL, NULL, &snap->webhook_latency);
}

static void
metrics_render_process(struct metrics_buf *b, const struct metrics_snapshot *snap)
{
	const struct metrics_process *p = &snap->proc;

	metrics_head(b, "txmail_build_info", "gauge", "1, labelled with this binary's version.");
	metrics_printf(b, "txmail_build_info{version=\"");
	metrics_label(b, TXMAIL_VERSION);
	metrics_printf(b, "\"} 1\n");
	metrics_head(b, "txmail_destinations_suspended", "gauge",
	    "Destinations this process's delivery loops have suspended now, their own and those "
	    "learned from other processes (summed over loops).");
	metrics_printf(b, "txmail_destinations_suspended %" PRId64 "\n", snap->suspended);
	metrics_head(b, "txmail_destinations_at_cap", "gauge",
	    "Destinations holding TXMAIL_DEST_MAX_INFLIGHT transactions now (summed over loops).");
	metrics_printf(b, "txmail_destinations_at_cap %" PRId64 "\n", snap->dest_full);
	metrics_head(b, "txmail_destination_waiting", "gauge",
	    "Transactions waiting for a slot of their destination now (summed over loops).");
	metrics_printf(b, "txmail_destination_waiting %" PRId64 "\n", snap->dest_waiting);
	metrics_head(b, "txmail_deliveries_parked_total", "counter",
	    "Deliveries handed back to be tried later because their destination was at its cap.");
	metrics_printf(b, "txmail_deliveries_parked_total %" PRIu64 "\n", snap->parked);
	{
		static const char *const what[METRICS_UNREPL_COUNT] = { "send", "change", "events" };

		metrics_head(b, "txmail_redis_unreplicated_total", "counter",
		    "Writes not confirmed by TXMAIL_REDIS_MIN_REPLICAS replicas in time: sends and other "
		    "changes answered 504 outcome_unknown, event reads held back from webhooks and streams.");
		for (size_t i = 0; i < METRICS_UNREPL_COUNT; i++)
			metrics_printf(b, "txmail_redis_unreplicated_total{what=\"%s\"} %" PRIu64 "\n",
			    what[i], snap->unreplicated[i]);
	}
	{
		static const char *const ev[METRICS_SUBM_COUNT] = { "connection", "refused", "timeout",
		    "auth_ok", "auth_failed", "queued", "rejected", "deferred" };

		metrics_head(b, "txmail_submission_events_total", "counter",
		    "SMTP submission: connections (started, refused over the caps, cut by a timeout), AUTH "
		    "(accepted, refused) and messages at the end of DATA (queued 250, rejected 5xx, deferred 4xx).");
		for (size_t i = 0; i < METRICS_SUBM_COUNT; i++)
			metrics_printf(b, "txmail_submission_events_total{event=\"%s\"} %" PRIu64 "\n", ev[i],
			    snap->subm[i]);
		metrics_head(b, "txmail_submission_sessions", "gauge", "SMTP submission sessions open now.");
		metrics_printf(b, "txmail_submission_sessions %" PRId64 "\n", snap->subm_sessions);
	}
	if (!p->ok)
		return;
	metrics_head(b, "process_cpu_seconds_total", "counter", "User and system CPU time spent, in seconds.");
	metrics_printf(b, "process_cpu_seconds_total %.2f\n", p->cpu_seconds);
	metrics_head(b, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
	metrics_printf(b, "process_resident_memory_bytes %" PRId64 "\n", p->rss_bytes);
	metrics_head(b, "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.");
	metrics_printf(b, "process_virtual_memory_bytes %" PRId64 "\n", p->vsize_bytes);
	metrics_head(b, "process_open_fds", "gauge", "Open file descriptors.");
	metrics_printf(b, "process_open_fds %" PRId64 "\n", p->open_fds);
	if (p->max_fds >= 0) {
		metrics_head(b, "process_max_fds", "gauge", "The limit of open file descriptors.");
		metrics_printf(b, "process_max_fds %" PRId64 "\n", p->max_fds);
	}
	metrics_head(b, "process_start_time_seconds", "gauge", "Start time of the process since the epoch, in seconds.");
	metrics_printf(b, "process_start_time_seconds %.2f\n", p->start_seconds);
}

static void
metrics_render_queue(struct metrics_buf *b, const struct store_queue_stats *q)
{
	metrics_head(b, "txmail_queue_ready", "gauge",
	    "Recipient deliveries due now that no worker has claimed yet, by lane (Redis; all processes).");
	for (size_t i = 0; i < 2; i++)
		metrics_printf(b, "txmail_queue_ready{lane=\"%s\"} %" PRId64 "\n", metrics_lane_names[i],
		    q->ready[i]);
	metrics_head(b, "txmail_queue_claimed", "gauge",
	    "Deliveries claimed by a worker and not yet recorded, by lane (Redis; all processes).");
	for (size_t i = 0; i < 2; i++)
		metrics_printf(b, "txmail_queue_claimed{lane=\"%s\"} %" PRId64 "\n", metrics_lane_names[i],
		    q->claimed[i]);
	metrics_head(b, "txmail_queue_oldest_age_seconds", "gauge",
	    "Age of the oldest delivery in the lane's ready stream, claimed or not; 0 when empty "
	    "(a retry's age counts from when it became due again).");
	for (size_t i = 0; i < 2; i++)
		metrics_printf(b, "txmail_queue_oldest_age_seconds{lane=\"%s\"} %" PRId64 ".%03" PRId64 "\n",
		    metrics_lane_names[i], q->oldest_ms[i] / 1000, q->oldest_ms[i] % 1000);
	metrics_head(b, "txmail_queue_due", "gauge",
	    "Retries and scheduled sends waiting for their time (Redis; all processes).");
	metrics_printf(b, "txmail_queue_due %" PRId64 "\n", q->due);
	metrics_head(b, "txmail_events_retained", "gauge",
	    "Outbox events retained for webhooks and SSE replay (Redis; all processes).");
	metrics_printf(b, "txmail_events_retained %" PRId64 "\n", q->events);
	metrics_head(b, "txmail_webhook_backlog", "gauge",
	    "Webhook deliveries waiting per endpoint (the 20 largest, the rest as \"other\"; Redis).");
	for (size_t i = 0; i < q->nwh && i < STORE_WH_BACKLOG_TOP; i++) {
		metrics_printf(b, "txmail_webhook_backlog{endpoint=\"");
		metrics_label(b, q->wh[i].endpoint);
		metrics_printf(b, "\"} %" PRId64 "\n", q->wh[i].n);
	}
	if (q->wh_has_other)
		metrics_printf(b, "txmail_webhook_backlog{endpoint=\"other\"} %" PRId64 "\n", q->wh_other);
}

char *
metrics_render(const struct metrics_snapshot *snap, const struct store_queue_stats *q,
    int redis_up)
{
	struct metrics_buf b = { .cap = 16384 };

	b.p = malloc(b.cap);
	if (b.p == NULL)
		return NULL;
	b.p[0] = '\0';

	metrics_head(&b, "txmail_up", "gauge", "1 while this txmail process serves HTTP.");
	metrics_printf(&b, "txmail_up 1\n");
	metrics_head(&b, "txmail_redis_up", "gauge",
	    "1 when this process could read the queue gauges from Redis at scrape time.");
	metrics_printf(&b, "txmail_redis_up %d\n", redis_up ? 1 : 0);
	metrics_render_counters(&b, snap);
	metrics_render_histograms(&b, snap);
	metrics_head(&b, "txmail_http_body_bytes_in_flight", "gauge",
	    "Bytes reserved by the request bodies this process is receiving (at most TXMAIL_HTTP_BODY_BUDGET).");
	metrics_printf(&b, "txmail_http_body_bytes_in_flight %" PRId64 "\n", snap->http_body_bytes);
	metrics_head(&b, "txmail_accept_waiting", "gauge",
	    "Sends of this process waiting for Redis to store them (on the accept pipe, their connections parked).");
	metrics_printf(&b, "txmail_accept_waiting %" PRId64 "\n", snap->accept_waiting);
	metrics_render_process(&b, snap);
	if (q != NULL)
		metrics_render_queue(&b, q);
	if (b.err) {
		free(b.p);
		return NULL;
	}
	return b.p;
}

/* --- handler ------------------------------------------------------------- */

char *
metrics_scrape(struct store *s)
{
	struct metrics_snapshot *snap = malloc(sizeof(*snap));
	struct store_queue_stats *q = malloc(sizeof(*q));
	int up = 0;
	char *text = NULL;

	if (snap == NULL || q == NULL)
		goto out;
	metrics_snapshot(snap);
	if (s != NULL && store_queue_stats(s, q) == 0)
		up = 1;
	text = metrics_render(snap, up ? q : NULL, up);
out:
	free(snap);
	free(q);
	return text;
}

void
metrics_http_get(const struct api_request *req, struct api_response *resp)
{
	char *text = metrics_scrape(req->store);

	if (text == NULL) {
		api_error(resp, 500, "internal_error", "out of memory", NULL);
		return;
	}
	free(resp->body);
	resp->status = 200;
	resp->body = text;
	resp->body_len = strlen(text);
	api_header(resp, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
	api_header(resp, "Cache-Control", "no-store");
}
