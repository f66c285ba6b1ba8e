/*
 * shaper.c - per-destination shaping: domain rates (one-token buckets) and
 * suspension of destinations that keep refusing connections.
 *
 * Owns the key table, the held-delivery heap, the release thread and,
 * shared through Redis, the sync thread with its store handle, the
 * deliveries waiting for a block of slots and the suspension changes not
 * written yet. The core functions (shaper_rates_*, shaper_state_*,
 * shaper_conn_fail) are pure: the caller passes "now", nothing here
 * sleeps, logs or locks. The wrapper (shaper_new .. shaper_free) is the
 * only part that reads clocks, logs and runs threads. Never speaks SMTP,
 * reaches Redis only through store.h (store_shape_*), never holds its
 * mutex across a round trip, never frees an item it holds.
 */
#include "shaper.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "log.h"
#include "store.h"
#include "util.h"

/* --- rates ------------------------------------------------------------------ */

struct shaper_rate {
	char domain[SHAPER_KEY_MAX + 1];
	double per_s;
};

struct shaper_rates {
	size_t n;
	double def;               /* "*" */
	int has_def;
	struct shaper_rate *r;
};

static int
sh_err(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int
sh_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || errlen == 0)
		return -1;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -1;
}

static int
domain_ok(const char *d, size_t len)
{
	if (len == 0 || len > SHAPER_KEY_MAX)
		return 0;
	if (len == 1 && d[0] == '*')
		return 1;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)d[i];
		if (!(isalnum(c) || c == '.' || c == '-' || c == '_'))
			return 0;
	}
	return 1;
}

void
shaper_rates_free(struct shaper_rates *r)
{
	if (r == NULL)
		return;
	free(r->r);
	free(r);
}

int
shaper_rates_parse(const char *spec, struct shaper_rates **out, char *err, size_t errlen)
{
	struct shaper_rates *r = NULL;
	const char *p;
	size_t cap = 0;
	int rc = -1;

	*out = NULL;
	if ((r = calloc(1, sizeof(*r))) == NULL) {
		sh_err(err, errlen, "TXMAIL_DOMAIN_RATE: out of memory");
		goto out;
	}
	if (spec == NULL)
		spec = "";
	if (strlen(spec) > SHAPER_SPEC_MAX) {
		sh_err(err, errlen, "TXMAIL_DOMAIN_RATE: longer than %d characters", SHAPER_SPEC_MAX);
		goto out;
	}
	for (p = spec; *p != '\0';) {
		const char *comma = strchr(p, ',');
		size_t len = comma != NULL ? (size_t)(comma - p) : strlen(p);
		const char *eq, *d = p;
		size_t dl;
		char num[64], *e;
		double v;

		while (len > 0 && isspace((unsigned char)*d)) {
			d++;
			len--;
		}
		while (len > 0 && isspace((unsigned char)d[len - 1]))
			len--;
		p = comma != NULL ? comma + 1 : p + strlen(p);
		if (len == 0)
			continue;
		eq = memchr(d, '=', len);
		if (eq == NULL) {
			sh_err(err, errlen, "TXMAIL_DOMAIN_RATE: \"%.*s\" is not domain=rate",
			    (int)(len > 60 ? 60 : len), d);
			goto out;
		}
		dl = (size_t)(eq - d);
		while (dl > 0 && isspace((unsigned char)d[dl - 1]))
			dl--;
		if (!domain_ok(d, dl)) {
			sh_err(err, errlen, "TXMAIL_DOMAIN_RATE: bad domain \"%.*s\"",
			    (int)(dl > 60 ? 60 : dl), d);
			goto out;
		}
		{
			const char *vs = eq + 1;
			size_t vl = (size_t)((d + len) - (eq + 1));
			while (vl > 0 && isspace((unsigned char)*vs)) {
				vs++;
				vl--;
			}
			if (vl == 0 || vl >= sizeof(num)) {
				sh_err(err, errlen, "TXMAIL_DOMAIN_RATE: bad rate for \"%.*s\"",
				    (int)(dl > 60 ? 60 : dl), d);
				goto out;
			}
			memcpy(num, vs, vl);
			num[vl] = '\0';
		}
		errno = 0;
		v = strtod(num, &e);
		if (errno != 0 || e == num || *e != '\0' || !isfinite(v) || v < 0 || v > 1e6) {
			sh_err(err, errlen, "TXMAIL_DOMAIN_RATE: bad rate \"%s\" for \"%.*s\" "
			    "(want messages per second, 0..1000000)", num, (int)(dl > 60 ? 60 : dl), d);
			goto out;
		}
		if (dl == 1 && d[0] == '*') {
			if (r->has_def) {
				sh_err(err, errlen, "TXMAIL_DOMAIN_RATE: \"*\" given twice");
				goto out;
			}
			r->has_def = 1;
			r->def = v;
			continue;
		}
		for (size_t i = 0; i < r->n; i++) {
			if (strlen(r->r[i].domain) == dl && strncasecmp(r->r[i].domain, d, dl) == 0) {
				sh_err(err, errlen, "TXMAIL_DOMAIN_RATE: \"%.*s\" given twice",
				    (int)(dl > 60 ? 60 : dl), d);
				goto out;
			}
		}
		if (r->n == SHAPER_RATES_MAX) {
			sh_err(err, errlen, "TXMAIL_DOMAIN_RATE: more than %d entries", SHAPER_RATES_MAX);
			goto out;
		}
		if (r->n == cap) {
			size_t nc = cap == 0 ? 8 : cap * 2;
			struct shaper_rate *nr = realloc(r->r, nc * sizeof(*nr));
			if (nr == NULL) {
				sh_err(err, errlen, "TXMAIL_DOMAIN_RATE: out of memory");
				goto out;
			}
			r->r = nr;
			cap = nc;
		}
		memcpy(r->r[r->n].domain, d, dl);
		r->r[r->n].domain[dl] = '\0';
		r->r[r->n].per_s = v;
		r->n++;
	}
	*out = r;
	r = NULL;
	rc = 0;
out:
	shaper_rates_free(r);
	return rc;
}

double
shaper_rates_lookup(const struct shaper_rates *r, const char *domain)
{
	if (r == NULL || domain == NULL)
		return 0;
	for (size_t i = 0; i < r->n; i++)
		if (strcasecmp(r->r[i].domain, domain) == 0)
			return r->r[i].per_s;
	return r->has_def ? r->def : 0;
}

size_t
shaper_rates_count(const struct shaper_rates *r)
{
	return r == NULL ? 0 : r->n + (r->has_def ? 1 : 0);
}

/* --- key table ---------------------------------------------------------------- */

#define SH_NBUCKETS 4096

struct sh_entry {
	struct sh_entry *next;
	int64_t tat_us;          /* next free sending slot (rate), microseconds */
	int64_t blk_end_us;      /* shared: the end of the block of slots booked (tat_us is in it) */
	int fails;               /* consecutive connection failures */
	int64_t until_ms;        /* suspended until; 0 = not suspended */
	int64_t backoff_ms;      /* last suspension's length; 0 = never / cleared */
	int end_seen;            /* the end of the last suspension was reported */
	uint64_t susp_sync;      /* shared: the exchange current when the suspension was set */
	uint64_t seen_sync;      /* shared: the last exchange that listed it */
	char key[SHAPER_KEY_MAX + 1];
};

struct shaper_state {
	struct shaper_params p;
	struct shaper_rates *rates;
	uint64_t sync;           /* the last shared exchange begun */
	size_t n;
	struct sh_entry *b[SH_NBUCKETS];
};

static unsigned
sh_hash(const char *k)
{
	uint32_t h = 2166136261u;

	for (; *k != '\0'; k++) {
		h ^= (uint32_t)tolower((unsigned char)*k);
		h *= 16777619u;
	}
	return h % SH_NBUCKETS;
}

struct shaper_state *
shaper_state_new(const struct shaper_params *p, struct shaper_rates *rates)
{
	struct shaper_state *st = calloc(1, sizeof(*st));

	if (st == NULL) {
		shaper_rates_free(rates);
		return NULL;
	}
	st->p = *p;
	if (st->p.rate_share < 1)
		st->p.rate_share = 1;
	if (st->p.fail_threshold < 1)
		st->p.fail_threshold = 1;
	if (st->p.backoff_base_ms < 1)
		st->p.backoff_base_ms = 1;
	if (st->p.backoff_max_ms < st->p.backoff_base_ms)
		st->p.backoff_max_ms = st->p.backoff_base_ms;
	st->rates = rates;
	return st;
}

void
shaper_state_free(struct shaper_state *st)
{
	if (st == NULL)
		return;
	for (size_t i = 0; i < SH_NBUCKETS; i++) {
		struct sh_entry *e = st->b[i], *nx;
		for (; e != NULL; e = nx) {
			nx = e->next;
			free(e);
		}
	}
	shaper_rates_free(st->rates);
	free(st);
}

/* Drop entries that carry no state any more (slot in the past, no failures). */
static void
sh_evict_idle(struct shaper_state *st, int64_t now_ms)
{
	for (size_t i = 0; i < SH_NBUCKETS; i++) {
		struct sh_entry **pp = &st->b[i];
		while (*pp != NULL) {
			struct sh_entry *e = *pp;
			if (e->tat_us <= now_ms * 1000 && e->fails == 0 && e->until_ms == 0 &&
			    e->backoff_ms == 0) {
				*pp = e->next;
				free(e);
				st->n--;
			} else {
				pp = &e->next;
			}
		}
	}
}

/* The entry for key, created when create; NULL when absent, too long, or the table is full. */
static struct sh_entry *
sh_get(struct shaper_state *st, const char *key, int create, int64_t now_ms)
{
	unsigned h;
	struct sh_entry *e;
	size_t kl = strlen(key);

	if (kl == 0 || kl > SHAPER_KEY_MAX)
		return NULL;
	h = sh_hash(key);
	for (e = st->b[h]; e != NULL; e = e->next)
		if (strcasecmp(e->key, key) == 0)
			return e;
	if (!create)
		return NULL;
	if (st->n >= SHAPER_TABLE_MAX) {
		sh_evict_idle(st, now_ms);
		if (st->n >= SHAPER_TABLE_MAX)
			return NULL;
	}
	if ((e = calloc(1, sizeof(*e))) == NULL)
		return NULL;
	memcpy(e->key, key, kl + 1);
	e->end_seen = 1;
	e->next = st->b[h];
	st->b[h] = e;
	st->n++;
	return e;
}

int64_t
shaper_state_reserve(struct shaper_state *st, const char *domain, int64_t now_ms)
{
	double rate = shaper_rates_lookup(st->rates, domain);
	struct sh_entry *e;
	int64_t now_us = now_ms * 1000, t_us, step_us;

	if (rate <= 0)
		return now_ms;
	rate /= st->p.rate_share;
	if ((e = sh_get(st, domain, 1, now_ms)) == NULL)
		return now_ms;
	step_us = (int64_t)(1e6 / rate);
	if (step_us < 1)
		step_us = 1;
	t_us = e->tat_us > now_us ? e->tat_us : now_us;
	e->tat_us = t_us + step_us;
	return (t_us + 999) / 1000;
}

/* A domain's rate and its spacing in us; 0 when unlimited. */
static double
sh_step(const struct shaper_state *st, const char *domain, int64_t *step_us)
{
	double rate = shaper_rates_lookup(st->rates, domain);

	*step_us = 0;
	if (rate <= 0)
		return 0;
	*step_us = (int64_t)(1e6 / rate);
	if (*step_us < 1)
		*step_us = 1;
	return rate;
}

/* The slots of a full block of domain (the rate's SHAPER_BLOCK_MS worth, 1..SHAPER_BLOCK_MAX). */
static int
sh_block_max(double rate)
{
	double k = rate * SHAPER_BLOCK_MS / 1000.0;

	return k < 1 ? 1 : k > SHAPER_BLOCK_MAX ? SHAPER_BLOCK_MAX : (int)k;
}

int
shaper_state_take(struct shaper_state *st, const char *domain, int64_t now_ms, int64_t *at_ms)
{
	int64_t step_us, now_us = now_ms * 1000, t_us, span_us;
	double rate = sh_step(st, domain, &step_us);
	struct sh_entry *e;

	*at_ms = now_ms;
	if (rate <= 0 || (e = sh_get(st, domain, 1, now_ms)) == NULL)
		return 0;
	t_us = e->tat_us > now_us ? e->tat_us : now_us;
	if (t_us < e->blk_end_us) {
		e->tat_us = t_us + step_us;
		*at_ms = (t_us + 999) / 1000;
		return 0;
	}
	/* used up: the next block no earlier than one full block before this one ends */
	span_us = (int64_t)sh_block_max(rate) * step_us;
	if (e->blk_end_us - span_us > now_us)
		*at_ms = (e->blk_end_us - span_us + 999) / 1000;
	return 1;
}

int
shaper_state_block(const struct shaper_state *st, const char *domain, size_t demand,
    int64_t *interval_us)
{
	double rate = sh_step(st, domain, interval_us);
	int kmax;

	if (rate <= 0)
		return 0;
	kmax = sh_block_max(rate);
	if (demand < 1)
		return 1;
	return demand < (size_t)kmax ? (int)demand : kmax;
}

void
shaper_state_grant(struct shaper_state *st, const char *domain, int64_t start_us, int k,
    int64_t interval_us)
{
	struct sh_entry *e = sh_get(st, domain, 1, start_us / 1000);

	if (e == NULL || k < 1 || interval_us < 1)
		return;
	e->tat_us = start_us;
	e->blk_end_us = start_us + (int64_t)k * interval_us;
}

uint64_t
shaper_state_sync_begin(struct shaper_state *st)
{
	return ++st->sync;
}

int
shaper_state_learn(struct shaper_state *st, uint64_t sync, const char *dest,
    int64_t remaining_ms, int64_t backoff_ms, int64_t now_ms)
{
	struct sh_entry *e;
	int news;

	if (remaining_ms <= 0 || (e = sh_get(st, dest, 1, now_ms)) == NULL)
		return 0;
	news = e->until_ms == 0 || now_ms >= e->until_ms;
	if (news || now_ms + remaining_ms > e->until_ms)
		e->until_ms = now_ms + remaining_ms;
	if (backoff_ms > st->p.backoff_max_ms)
		backoff_ms = st->p.backoff_max_ms;
	if (backoff_ms > e->backoff_ms)
		e->backoff_ms = backoff_ms;   /* on probation when it ends, as where it was found */
	if (news) {
		e->end_seen = 0;
		e->susp_sync = sync;
	}
	e->seen_sync = sync;
	return news;
}

size_t
shaper_state_sync_end(struct shaper_state *st, uint64_t sync, int complete, int64_t now_ms)
{
	size_t n = 0;

	if (!complete)
		return 0;
	for (size_t i = 0; i < SH_NBUCKETS; i++)
		for (struct sh_entry *e = st->b[i]; e != NULL; e = e->next) {
			/* about to end anyway: the shared set may have dropped it a moment early */
			if (e->until_ms == 0 || e->until_ms - now_ms <= SHAPER_LIFT_SLACK_MS ||
			    e->susp_sync >= sync || e->seen_sync == sync)
				continue;
			e->fails = 0;
			e->until_ms = 0;
			e->backoff_ms = 0;
			e->end_seen = 1;
			n++;
		}
	return n;
}

int64_t
shaper_state_check(struct shaper_state *st, const char *dest, int64_t now_ms,
    enum shaper_event *ev)
{
	struct sh_entry *e = sh_get(st, dest, 0, now_ms);

	*ev = SHAPER_EV_NONE;
	if (e == NULL || e->until_ms == 0)
		return 0;
	if (now_ms < e->until_ms)
		return e->until_ms;
	e->until_ms = 0;   /* over: on probation until the next outcome */
	if (!e->end_seen) {
		e->end_seen = 1;
		*ev = SHAPER_EV_ENDED;
	}
	return 0;
}

size_t
shaper_state_suspended(const struct shaper_state *st, int64_t now_ms)
{
	size_t n = 0;

	for (size_t i = 0; i < SH_NBUCKETS; i++)
		for (const struct sh_entry *e = st->b[i]; e != NULL; e = e->next)
			n += e->until_ms != 0 && now_ms < e->until_ms;
	return n;
}

enum shaper_event
shaper_state_report(struct shaper_state *st, const char *dest, int conn_fail,
    int64_t now_ms, int64_t *until_ms, int *fails)
{
	struct sh_entry *e = sh_get(st, dest, conn_fail, now_ms);
	enum shaper_event ev = SHAPER_EV_NONE;

	*until_ms = 0;
	*fails = 0;
	if (e == NULL)
		return SHAPER_EV_NONE;
	if (!conn_fail) {
		if (e->backoff_ms > 0)
			ev = SHAPER_EV_RECOVERED;
		e->fails = 0;
		e->until_ms = 0;
		e->backoff_ms = 0;
		e->end_seen = 1;
		return ev;
	}
	if (e->fails < 1000000)
		e->fails++;
	if (e->until_ms != 0 && now_ms < e->until_ms)
		return SHAPER_EV_NONE;   /* a straggler sent before the suspension began */
	if (e->backoff_ms > 0) {
		/* on probation after a suspension: the first failure suspends again, twice as long */
		e->backoff_ms = e->backoff_ms > st->p.backoff_max_ms / 2 ? st->p.backoff_max_ms :
		    e->backoff_ms * 2;
	} else if (e->fails >= st->p.fail_threshold) {
		e->backoff_ms = st->p.backoff_base_ms;
	} else {
		return SHAPER_EV_NONE;
	}
	e->until_ms = now_ms + e->backoff_ms;
	e->end_seen = 0;
	e->susp_sync = st->sync;
	*until_ms = e->until_ms;
	*fails = e->fails;
	return SHAPER_EV_SUSPENDED;
}

int
shaper_conn_fail(int tempfail, const char *stage, int code)
{
	return tempfail && stage != NULL &&
	    (strcmp(stage, "connect") == 0 || strcmp(stage, "banner") == 0 ||
	    strcmp(stage, "tls") == 0) && (code == 0 || code == 421);
}

/* --- wrapper: held deliveries and the release thread --------------------------- */

struct sh_held {
	int64_t at_ms;      /* monotonic */
	uint64_t seq;       /* FIFO among equal times */
	void *item;
	char dest[SHAPER_KEY_MAX + 1];
};

/* shared: a delivery waiting for its domain's next block of slots */
struct sh_wait {
	void *item;
	char domain[SHAPER_KEY_MAX + 1];
	char dest[SHAPER_KEY_MAX + 1];
};

/* shared: a suspension change not written to Redis yet */
struct sh_op {
	char dest[SHAPER_KEY_MAX + 1];
	int64_t until_ms;       /* monotonic; 0: cleared (the destination answered) */
	int64_t backoff_ms;
};

#define SH_SYNC_MS 1000     /* the shared suspensions are read at least this often */
#define SH_COALESCE_MS 1    /* a block request waits this long for the rest of a fetch */

struct shaper {
	pthread_mutex_t mu;
	pthread_cond_t cv;          /* release thread; CLOCK_MONOTONIC */
	pthread_t thr;
	int started, stop;
	struct shaper_state *st;
	struct sh_held *heap;
	size_t nheap, capheap;
	uint64_t seq;
	void (*on_release)(void *item, int64_t until_ms, int shutdown, void *arg);
	void *arg;
	/* shared through Redis (redis != NULL) */
	const struct redis_addr *redis;
	pthread_t sync_thr;
	int sync_started;
	pthread_cond_t scv;         /* sync thread: deliveries wait, a change to write; CLOCK_MONOTONIC */
	int down;                   /* Redis did not answer: shaping alone until it does (logged once) */
	struct sh_wait *wait;       /* FIFO */
	size_t nwait, capwait;
	struct sh_op *ops;          /* FIFO, at most STORE_SHAPE_OPS_MAX */
	size_t nops;
	int64_t next_sync_ms;       /* monotonic: the next read of the shared suspensions */
};

static int
held_before(const struct sh_held *a, const struct sh_held *b)
{
	return a->at_ms < b->at_ms || (a->at_ms == b->at_ms && a->seq < b->seq);
}

static void
heap_swap(struct sh_held *a, struct sh_held *b)
{
	struct sh_held t = *a;

	*a = *b;
	*b = t;
}

static int
heap_push(struct shaper *s, const struct sh_held *h)
{
	size_t i;

	if (s->nheap == s->capheap) {
		size_t nc = s->capheap == 0 ? 64 : s->capheap * 2;
		struct sh_held *nh = realloc(s->heap, nc * sizeof(*nh));
		if (nh == NULL)
			return -1;
		s->heap = nh;
		s->capheap = nc;
	}
	i = s->nheap++;
	s->heap[i] = *h;
	while (i > 0 && held_before(&s->heap[i], &s->heap[(i - 1) / 2])) {
		heap_swap(&s->heap[i], &s->heap[(i - 1) / 2]);
		i = (i - 1) / 2;
	}
	return 0;
}

static void
heap_pop(struct shaper *s, struct sh_held *out)
{
	size_t i = 0;

	*out = s->heap[0];
	s->heap[0] = s->heap[--s->nheap];
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;
		if (l < s->nheap && held_before(&s->heap[l], &s->heap[m]))
			m = l;
		if (r < s->nheap && held_before(&s->heap[r], &s->heap[m]))
			m = r;
		if (m == i)
			break;
		heap_swap(&s->heap[i], &s->heap[m]);
		i = m;
	}
}

static int64_t
mono_to_wall(int64_t mono_ms)
{
	return util_now_ms() + (mono_ms - util_mono_ms());
}

static int64_t
mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Wait on cv (CLOCK_MONOTONIC) for at most wait_ms; s->mu held. */
static void
cond_wait_ms(struct shaper *s, pthread_cond_t *cv, int64_t wait_ms)
{
	struct timespec ts;

	if (wait_ms < 0)
		wait_ms = 0;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += (time_t)(wait_ms / 1000);
	ts.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_cond_timedwait(cv, &s->mu, &ts);
}

/* Suspension check with its log line; s->mu held. Returns the end (monotonic) or 0. */
static int64_t
check_locked(struct shaper *s, const char *dest, int64_t now)
{
	enum shaper_event ev;
	int64_t until = shaper_state_check(s->st, dest, now, &ev);

	if (ev == SHAPER_EV_ENDED)
		log_info("destination suspension over, trying it again", "destination=%s", dest);
	return until;
}

#define RELEASE_BATCH 64

static void *
release_main(void *arg)
{
	struct shaper *s = arg;
	struct sh_held due[RELEASE_BATCH];
	int64_t until[RELEASE_BATCH];

	pthread_mutex_lock(&s->mu);
	while (!s->stop) {
		int64_t now = util_mono_ms();
		size_t n = 0;

		if (s->nheap == 0) {
			pthread_cond_wait(&s->cv, &s->mu);
			continue;
		}
		if (s->heap[0].at_ms > now) {
			cond_wait_ms(s, &s->cv, s->heap[0].at_ms - now);
			continue;
		}
		while (n < RELEASE_BATCH && s->nheap > 0 && s->heap[0].at_ms <= now) {
			heap_pop(s, &due[n]);
			until[n] = check_locked(s, due[n].dest, now);
			if (until[n] != 0)
				until[n] = mono_to_wall(until[n]);
			n++;
		}
		pthread_mutex_unlock(&s->mu);
		for (size_t i = 0; i < n; i++)
			s->on_release(due[i].item, until[i], 0, s->arg);
		pthread_mutex_lock(&s->mu);
	}
	pthread_mutex_unlock(&s->mu);
	return NULL;
}

/* --- wrapper: sharing through Redis (the sync thread) ------------------------- */

/* Hold item at at_ms (monotonic) for the release thread; -1 on OOM. s->mu held. */
static int
hold_locked(struct shaper *s, void *item, const char *dest, int64_t at_ms)
{
	struct sh_held h;

	memset(&h, 0, sizeof(h));
	h.at_ms = at_ms;
	h.seq = s->seq++;
	h.item = item;
	util_strlcpy(h.dest, dest, sizeof(h.dest));
	if (heap_push(s, &h) != 0)
		return -1;
	pthread_cond_signal(&s->cv);
	return 0;
}

/* Queue item until its domain gets a block; -1 on OOM. s->mu held. */
static int
wait_locked(struct shaper *s, void *item, const char *domain, const char *dest)
{
	struct sh_wait *w;

	if (s->nwait == s->capwait) {
		size_t nc = s->capwait == 0 ? 64 : s->capwait * 2;
		struct sh_wait *nw = realloc(s->wait, nc * sizeof(*nw));
		if (nw == NULL)
			return -1;
		s->wait = nw;
		s->capwait = nc;
	}
	w = &s->wait[s->nwait++];
	w->item = item;
	util_strlcpy(w->domain, domain, sizeof(w->domain));
	util_strlcpy(w->dest, dest, sizeof(w->dest));
	pthread_cond_signal(&s->scv);
	return 0;
}

/* A suspension change for Redis (dropped when STORE_SHAPE_OPS_MAX wait already). s->mu held. */
static void
op_locked(struct shaper *s, const char *dest, int64_t until_ms, int64_t backoff_ms)
{
	struct sh_op *o;

	if (s->redis == NULL || s->ops == NULL || s->nops >= STORE_SHAPE_OPS_MAX)
		return;
	o = &s->ops[s->nops++];
	util_strlcpy(o->dest, dest, sizeof(o->dest));
	o->until_ms = until_ms;
	o->backoff_ms = backoff_ms;
	pthread_cond_signal(&s->scv);
}

/*
 * Give every waiting delivery whose domain's block has a slot its slot, in
 * order; the others stay. A delivery with no memory to hold it is sent now
 * (never lost, as in shaper_admit). s->mu held; nothing is called back.
 */
static void
assign_locked(struct shaper *s, int64_t now)
{
	size_t keep = 0;

	for (size_t i = 0; i < s->nwait; i++) {
		struct sh_wait *w = &s->wait[i];
		int64_t at;

		if (s->down)
			at = shaper_state_reserve(s->st, w->domain, now);
		else if (shaper_state_take(s->st, w->domain, now, &at) != 0) {
			s->wait[keep++] = *w;
			continue;
		}
		if (hold_locked(s, w->item, w->dest, at) != 0 &&
		    hold_locked(s, w->item, w->dest, now) != 0)
			s->wait[keep++] = *w;   /* no memory at all: try again next round */
	}
	s->nwait = keep;
}

/* Redis did not answer: shape alone from now on, logged once. s->mu held. */
static void
go_down_locked(struct shaper *s, int rc, int64_t now)
{
	if (!s->down)
		log_warn("shared shaping unavailable, each delivery loop shapes alone until redis answers",
		    "error=%s", store_strerror(rc));
	s->down = 1;
	s->next_sync_ms = now + SH_SYNC_MS;   /* the next suspension read is the probe */
	assign_locked(s, now);
}

struct sh_round {
	struct store_slot_req req[STORE_SHAPE_BATCH_MAX];
	char dom[STORE_SHAPE_BATCH_MAX][SHAPER_KEY_MAX + 1];
	size_t demand[STORE_SHAPE_BATCH_MAX];
	size_t nreq;
	struct store_susp_op ops[STORE_SHAPE_OPS_MAX];
	char opdest[STORE_SHAPE_OPS_MAX][SHAPER_KEY_MAX + 1];
	size_t nops, nsnap;
};

/*
 * The domains that need a block now (all of them in one call) and when
 * the next one will; s->mu held. Returns the time to look again.
 */
static int64_t
plan_rates_locked(struct shaper *s, struct sh_round *r, int64_t now)
{
	int64_t wake = now + SH_SYNC_MS;

	r->nreq = 0;
	if (s->down)
		return wake;
	for (size_t i = 0; i < s->nwait; i++) {
		size_t d;
		int64_t at;

		for (d = 0; d < r->nreq; d++)
			if (strcasecmp(r->dom[d], s->wait[i].domain) == 0)
				break;
		if (d < r->nreq) {
			r->demand[d]++;
			continue;
		}
		if (shaper_state_take(s->st, s->wait[i].domain, now, &at) == 0) {
			/* a slot came free (assign_locked missed it): next round */
			wake = now;
			continue;
		}
		if (at > now) {
			if (at < wake)
				wake = at;
			continue;
		}
		if (r->nreq == STORE_SHAPE_BATCH_MAX) {
			wake = now;
			continue;
		}
		util_strlcpy(r->dom[r->nreq], s->wait[i].domain, sizeof(r->dom[0]));
		r->demand[r->nreq] = 1;
		r->nreq++;
	}
	for (size_t d = 0; d < r->nreq; d++) {
		r->req[d].domain = r->dom[d];
		r->req[d].k = shaper_state_block(s->st, r->dom[d], r->demand[d], &r->req[d].interval_us);
		if (r->req[d].k < 1)
			r->req[d].k = 1;
		if (r->req[d].interval_us < 1)
			r->req[d].interval_us = 1;
	}
	return wake;
}

/* The suspension changes to write (a snapshot: those made during the call stay queued). */
static void
plan_ops_locked(struct shaper *s, struct sh_round *r, int64_t now)
{
	r->nops = 0;
	r->nsnap = s->nops;
	for (size_t i = 0; i < s->nops; i++) {
		const struct sh_op *o = &s->ops[i];
		struct store_susp_op *so = &r->ops[r->nops];

		if (o->until_ms != 0 && o->until_ms <= now)
			continue;   /* over already */
		util_strlcpy(r->opdest[r->nops], o->dest, sizeof(r->opdest[0]));
		so->dest = r->opdest[r->nops];
		so->remaining_ms = o->until_ms == 0 ? 0 : o->until_ms - now;
		so->backoff_ms = o->backoff_ms;
		r->nops++;
	}
}

static void *
sync_main(void *arg)
{
	struct shaper *s = arg;
	struct store *store = store_open(s->redis);
	struct sh_round *r = calloc(1, sizeof(*r));

	pthread_mutex_lock(&s->mu);
	if (store == NULL || r == NULL) {
		log_error("out of memory", "what=shared shaping");
		s->down = 1;
		assign_locked(s, util_mono_ms());
		/* shaper_admit shapes alone from now on; nothing is ever sent to this thread again */
		while (!s->stop)
			pthread_cond_wait(&s->scv, &s->mu);
		goto out;
	}
	while (!s->stop) {
		int64_t now = util_mono_ms(), wake, t0, t1, t2, rnow = 0;
		int due, rrc = 0, src = 0, full = 0;
		uint64_t sync = 0;
		struct store_susp *list = NULL;
		size_t nl = 0;

		assign_locked(s, now);
		wake = plan_rates_locked(s, r, now);
		/* a change is written at once, but with Redis down only at the probe, once a second */
		due = now >= s->next_sync_ms || (s->nops > 0 && !s->down);
		if (r->nreq == 0 && !due) {
			if (wake > s->next_sync_ms)
				wake = s->next_sync_ms;
			cond_wait_ms(s, &s->scv, wake - now);
			continue;
		}
		if (r->nreq > 0 && SH_COALESCE_MS > 0) {
			/* the rest of this fetch is being admitted: one round trip for all its domains */
			cond_wait_ms(s, &s->scv, SH_COALESCE_MS);
			if (s->stop)
				break;
			now = util_mono_ms();
			assign_locked(s, now);
			(void)plan_rates_locked(s, r, now);
		}
		if (due) {
			plan_ops_locked(s, r, now);
			sync = shaper_state_sync_begin(s->st);
		}
		pthread_mutex_unlock(&s->mu);
		t0 = mono_us();
		if (r->nreq > 0)
			rrc = store_shape_reserve(store, r->req, r->nreq, &rnow);
		t1 = mono_us();
		if (due)
			src = store_shape_suspensions(store, r->ops, r->nops, SHAPER_TABLE_MAX, &list, &nl, &full);
		t2 = mono_us();
		pthread_mutex_lock(&s->mu);
		now = util_mono_ms();
		if (r->nreq > 0 && rrc == 0) {
			/* Redis's clock onto ours: the call's midpoint is Redis's now */
			int64_t mid = t0 + (t1 - t0) / 2;
			for (size_t d = 0; d < r->nreq; d++)
				shaper_state_grant(s->st, r->dom[d], mid + (r->req[d].start_us - rnow),
				    r->req[d].k, r->req[d].interval_us);
		}
		if (due && src == 0) {
			int64_t mid_ms = (t1 + (t2 - t1) / 2) / 1000;
			size_t lifted;

			if (s->down)
				log_info("shared shaping available again");
			s->down = 0;
			memmove(s->ops, s->ops + r->nsnap, (s->nops - r->nsnap) * sizeof(*s->ops));
			s->nops -= r->nsnap;
			for (size_t i = 0; i < nl; i++)
				if (shaper_state_learn(s->st, sync, list[i].dest, list[i].remaining_ms,
				    list[i].backoff_ms, mid_ms))
					log_info("destination suspended by another delivery loop, deferring here too",
					    "destination=%s remaining_ms=%lld", list[i].dest,
					    (long long)list[i].remaining_ms);
			lifted = shaper_state_sync_end(s->st, sync, !full, now);
			if (lifted > 0)
				log_info("destination answers again elsewhere, suspension lifted",
				    "destinations=%zu", lifted);
			s->next_sync_ms = now + SH_SYNC_MS;
		} else if (due) {
			s->next_sync_ms = now + SH_SYNC_MS;
		}
		free(list);
		if ((r->nreq > 0 && rrc != 0) || (due && src != 0))
			go_down_locked(s, rrc != 0 ? rrc : src, now);
	}
out:
	pthread_mutex_unlock(&s->mu);
	free(r);
	store_close(store);
	return NULL;
}

struct shaper *
shaper_new(const struct shaper_config *c, char *err, size_t errlen)
{
	struct shaper *s = NULL;
	struct shaper_rates *rates = NULL;
	pthread_condattr_t ca;

	if (shaper_rates_parse(c->domain_rate, &rates, err, errlen) != 0)
		return NULL;
	if ((s = calloc(1, sizeof(*s))) == NULL)
		goto oom;
	if ((s->st = shaper_state_new(&c->params, rates)) == NULL) {
		rates = NULL;
		goto oom;
	}
	rates = NULL;
	s->on_release = c->on_release;
	s->arg = c->arg;
	s->redis = c->redis;
	pthread_mutex_init(&s->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&s->cv, &ca);
	pthread_cond_init(&s->scv, &ca);
	pthread_condattr_destroy(&ca);
	if (s->redis != NULL && (s->ops = calloc(STORE_SHAPE_OPS_MAX, sizeof(*s->ops))) == NULL) {
		sh_err(err, errlen, "shaper: out of memory");
		shaper_free(s);
		return NULL;
	}
	if (pthread_create(&s->thr, NULL, release_main, s) != 0) {
		sh_err(err, errlen, "shaper: cannot start its thread");
		shaper_free(s);
		return NULL;
	}
	s->started = 1;
	if (s->redis != NULL) {
		if (pthread_create(&s->sync_thr, NULL, sync_main, s) != 0) {
			sh_err(err, errlen, "shaper: cannot start its sync thread");
			shaper_free(s);
			return NULL;
		}
		s->sync_started = 1;
	}
	return s;
oom:
	shaper_rates_free(rates);
	free(s);
	sh_err(err, errlen, "shaper: out of memory");
	return NULL;
}

enum shaper_verdict
shaper_admit(struct shaper *s, const char *domain, const char *dest, void *item,
    int64_t *until_ms)
{
	int64_t now = util_mono_ms(), until, at;
	enum shaper_verdict v = SHAPER_SEND;

	*until_ms = 0;
	pthread_mutex_lock(&s->mu);
	until = check_locked(s, dest, now);
	if (until != 0) {
		*until_ms = mono_to_wall(until);
		v = SHAPER_SUSPENDED;
		goto out;
	}
	if (s->stop)
		goto out;
	if (s->redis != NULL && !s->down) {
		if (shaper_state_take(s->st, domain, now, &at) != 0) {
			/* the block is used up: wait for the sync thread's next one */
			if (wait_locked(s, item, domain, dest) == 0)
				v = SHAPER_HELD;
			goto out;
		}
	} else {
		at = shaper_state_reserve(s->st, domain, now);
	}
	if (at > now && hold_locked(s, item, dest, at) == 0)
		v = SHAPER_HELD;
	/* out of memory: send now rather than lose it */
out:
	pthread_mutex_unlock(&s->mu);
	return v;
}

void
shaper_report(struct shaper *s, const char *dest, int conn_fail)
{
	int64_t until;
	int fails;
	enum shaper_event ev;

	pthread_mutex_lock(&s->mu);
	ev = shaper_state_report(s->st, dest, conn_fail, util_mono_ms(), &until, &fails);
	if (ev == SHAPER_EV_SUSPENDED)
		op_locked(s, dest, until, until - util_mono_ms());
	else if (ev == SHAPER_EV_RECOVERED)
		op_locked(s, dest, 0, 0);
	pthread_mutex_unlock(&s->mu);
	if (ev == SHAPER_EV_SUSPENDED) {
		char dur[32];

		/* whole seconds, rounded up: "suspended for 0s" would read as not at all */
		log_warn("suspending destination, deliveries deferred",
		    "destination=%s suspended_for=%s connection_failures=%d", dest,
		    util_fmt_duration((double)((until - util_mono_ms() + 999) / 1000), dur, sizeof(dur)),
		    fails);
	} else if (ev == SHAPER_EV_RECOVERED)
		log_info("destination answers again, backoff cleared", "destination=%s", dest);
}

size_t
shaper_suspended(struct shaper *s)
{
	size_t n;

	pthread_mutex_lock(&s->mu);
	n = shaper_state_suspended(s->st, util_mono_ms());
	pthread_mutex_unlock(&s->mu);
	return n;
}

size_t
shaper_held(struct shaper *s)
{
	size_t n;

	pthread_mutex_lock(&s->mu);
	n = s->nheap + s->nwait;
	pthread_mutex_unlock(&s->mu);
	return n;
}

void
shaper_stop(struct shaper *s)
{
	struct sh_held h;

	if (s == NULL)
		return;
	pthread_mutex_lock(&s->mu);
	s->stop = 1;
	pthread_cond_broadcast(&s->cv);
	pthread_cond_broadcast(&s->scv);
	pthread_mutex_unlock(&s->mu);
	if (s->started) {
		pthread_join(s->thr, NULL);
		s->started = 0;
	}
	if (s->sync_started) {
		pthread_join(s->sync_thr, NULL);   /* at most one round trip (the command timeout) */
		s->sync_started = 0;
	}
	/* The threads are gone and nothing admits any more: callbacks run unlocked. */
	while (s->nheap > 0) {
		heap_pop(s, &h);
		s->on_release(h.item, 0, 1, s->arg);
	}
	for (size_t i = 0; i < s->nwait; i++)
		s->on_release(s->wait[i].item, 0, 1, s->arg);
	s->nwait = 0;
}

void
shaper_free(struct shaper *s)
{
	if (s == NULL)
		return;
	shaper_stop(s);
	free(s->heap);
	free(s->wait);
	free(s->ops);
	shaper_state_free(s->st);
	pthread_cond_destroy(&s->scv);
	pthread_cond_destroy(&s->cv);
	pthread_mutex_destroy(&s->mu);
	free(s);
}
