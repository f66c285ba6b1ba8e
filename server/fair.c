/*
 * fair.c - per-destination in-flight caps (see fair.h). Two chained hash
 * tables keyed by lowercased strings: destinations (slots taken, the line
 * of waiting items, the parking clock) and aliases (domain -> MX host
 * set). Pure and single-threaded; never logs, never frees an item.
 */
#include "fair.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define FAIR_BUCKETS 4096

struct fair_wait {
	void *item;
	struct fair_wait *next;
};

struct fair_dest {
	char key[FAIR_KEY_MAX + 1];
	struct fair_dest *next;       /* hash chain */
	int inflight;
	int nwait;
	struct fair_wait *head, *tail;
	int64_t mean_ms;              /* moving average of a transaction's duration; 0: none seen */
	int64_t busy_since_ms;        /* when the last slot was taken or freed */
	int64_t park_next_ms;         /* the next parked delivery comes back no sooner */
	int refs;                     /* transactions holding this entry as their slot (fair_done's dest) */
	int64_t pub_ms;               /* when fair_saturated last said to publish it; 0: never */
	int64_t nparked;              /* parked since it last had room (a free slot, nobody in line) */
	struct fair_dest *fwd;        /* a domain merged into its MX host set: its slots count there */
};

struct fair_alias {
	char domain[FAIR_KEY_MAX + 1];
	char key[FAIR_KEY_MAX + 1];
	struct fair_alias *next;
};

struct fair {
	struct fair_params p;
	struct fair_dest *dests[FAIR_BUCKETS];
	size_t ndests;
	struct fair_alias *aliases[FAIR_BUCKETS];
	size_t naliases;
	size_t nwait;
	uint32_t rnd;                 /* spreads deliveries parked beyond park_max (fair_park_at) */
};

static unsigned
fair_hash(const char *s)
{
	unsigned h = 2166136261u;

	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if (c >= 'A' && c <= 'Z')
			c = (unsigned char)(c - 'A' + 'a');
		h = (h ^ c) * 16777619u;
	}
	return h % FAIR_BUCKETS;
}

static void
fair_copy_lower(char *dst, const char *src, size_t len)
{
	size_t i;

	for (i = 0; i + 1 < len && src[i] != '\0'; i++)
		dst[i] = (src[i] >= 'A' && src[i] <= 'Z') ? (char)(src[i] - 'A' + 'a') : src[i];
	dst[i] = '\0';
}

struct fair *
fair_new(const struct fair_params *p)
{
	struct fair *f = calloc(1, sizeof(*f));

	if (f == NULL)
		return NULL;
	f->p = *p;
	if (f->p.cap < 1)
		f->p.cap = 1;
	if (f->p.wait_cap <= 0)
		f->p.wait_cap = f->p.cap;
	if (f->p.wait_total <= 0)
		f->p.wait_total = 4 * f->p.cap;
	if (f->p.park_min_ms <= 0)
		f->p.park_min_ms = 100;
	if (f->p.park_max_ms <= 0)
		f->p.park_max_ms = 600000;
	if (f->p.park_max_ms < f->p.park_min_ms)
		f->p.park_max_ms = f->p.park_min_ms;
	f->rnd = 2463534242u;
	return f;
}

static void
fair_aliases_clear(struct fair *f)
{
	for (size_t b = 0; b < FAIR_BUCKETS; b++) {
		struct fair_alias *a = f->aliases[b], *n;

		for (; a != NULL; a = n) {
			n = a->next;
			free(a);
		}
		f->aliases[b] = NULL;
	}
	f->naliases = 0;
}

void
fair_free(struct fair *f)
{
	if (f == NULL)
		return;
	for (size_t b = 0; b < FAIR_BUCKETS; b++) {
		struct fair_dest *d = f->dests[b], *n;

		for (; d != NULL; d = n) {
			struct fair_wait *w = d->head, *wn;

			for (; w != NULL; w = wn) {
				wn = w->next;
				free(w);
			}
			n = d->next;
			free(d);
		}
	}
	fair_aliases_clear(f);
	free(f);
}

static struct fair_dest *fair_find(const struct fair *f, const char *key);
static struct fair_dest *fair_get(struct fair *f, const char *key, int64_t now_ms);

/*
 * fair_merge - the domain's slots and line move to the destination key
 * names: transactions admitted under the domain before its route was known
 * count against its MX host set from now on (else the set would get a
 * second cap's worth). The domain's entry forwards there while any of
 * them holds it.
 */
static void
fair_merge(struct fair *f, const char *dom, const char *key)
{
	char k[FAIR_KEY_MAX + 1];
	struct fair_dest *d = fair_find(f, dom), *m;

	if (d == NULL || d->fwd != NULL || (d->inflight == 0 && d->nwait == 0))
		return;
	fair_copy_lower(k, key, sizeof(k));
	if (strcmp(d->key, k) == 0 || (m = fair_get(f, k, d->busy_since_ms)) == NULL)
		return;
	m->inflight += d->inflight;
	d->inflight = 0;
	if (d->head != NULL) {
		if (m->tail != NULL)
			m->tail->next = d->head;
		else
			m->head = d->head;
		m->tail = d->tail;
		m->nwait += d->nwait;
		d->head = d->tail = NULL;
		d->nwait = 0;
	}
	if (d->park_next_ms > m->park_next_ms)
		m->park_next_ms = d->park_next_ms;
	/* the pace learned under the domain (a set made here has seen nothing yet) */
	if (d->busy_since_ms > m->busy_since_ms)
		m->busy_since_ms = d->busy_since_ms;
	if (m->mean_ms == 0)
		m->mean_ms = d->mean_ms;
	if (d->refs > 0)
		d->fwd = m;
}

void
fair_alias(struct fair *f, const char *domain, const char *key)
{
	char dom[FAIR_KEY_MAX + 1];
	unsigned h;
	struct fair_alias *a;

	if (f == NULL || domain == NULL || key == NULL || *domain == '\0' || *key == '\0')
		return;
	fair_copy_lower(dom, domain, sizeof(dom));
	h = fair_hash(dom);
	fair_merge(f, dom, key);
	for (a = f->aliases[h]; a != NULL; a = a->next) {
		if (strcmp(a->domain, dom) == 0) {
			fair_copy_lower(a->key, key, sizeof(a->key));
			return;
		}
	}
	if (f->naliases >= FAIR_ALIASES_MAX)
		fair_aliases_clear(f);
	if ((a = calloc(1, sizeof(*a))) == NULL)
		return;
	memcpy(a->domain, dom, sizeof(a->domain));
	fair_copy_lower(a->key, key, sizeof(a->key));
	a->next = f->aliases[h];
	f->aliases[h] = a;
	f->naliases++;
}

/* The destination key domain counts against, written to key (lowercase). */
static void
fair_key_of(const struct fair *f, const char *domain, char *key, size_t len)
{
	char dom[FAIR_KEY_MAX + 1];

	fair_copy_lower(dom, domain, sizeof(dom));
	for (const struct fair_alias *a = f->aliases[fair_hash(dom)]; a != NULL; a = a->next) {
		if (strcmp(a->domain, dom) == 0) {
			memcpy(key, a->key, len < sizeof(a->key) ? len : sizeof(a->key));
			key[len - 1] = '\0';
			return;
		}
	}
	memcpy(key, dom, len < sizeof(dom) ? len : sizeof(dom));
	key[len - 1] = '\0';
}

static struct fair_dest *
fair_find(const struct fair *f, const char *key)
{
	for (struct fair_dest *d = f->dests[fair_hash(key)]; d != NULL; d = d->next)
		if (strcmp(d->key, key) == 0)
			return d;
	return NULL;
}

/* Drop destinations with nothing taken, nothing waiting and no parking clock running. */
static void
fair_evict_idle(struct fair *f, int64_t now_ms)
{
	for (size_t b = 0; b < FAIR_BUCKETS; b++) {
		struct fair_dest **pp = &f->dests[b];

		while (*pp != NULL) {
			struct fair_dest *d = *pp;

			if (d->inflight == 0 && d->nwait == 0 && d->refs == 0 && d->park_next_ms <= now_ms) {
				*pp = d->next;
				free(d);
				f->ndests--;
			} else {
				pp = &d->next;
			}
		}
	}
}

static struct fair_dest *
fair_get(struct fair *f, const char *key, int64_t now_ms)
{
	struct fair_dest *d = fair_find(f, key);
	unsigned h;

	if (d != NULL)
		return d;
	if (f->ndests >= FAIR_DESTS_MAX)
		fair_evict_idle(f, now_ms);
	if (f->ndests >= FAIR_DESTS_MAX || (d = calloc(1, sizeof(*d))) == NULL)
		return NULL;
	fair_copy_lower(d->key, key, sizeof(d->key));
	d->busy_since_ms = now_ms;
	h = fair_hash(d->key);
	d->next = f->dests[h];
	f->dests[h] = d;
	f->ndests++;
	return d;
}

/*
 * When a parked delivery of d should come back: the line ahead of it
 * (what is in flight and waiting, and what was parked before it) moves at
 * cap transactions per "how long one takes" - the moving average, or, while
 * nothing has finished for longer than that (a tarpit), the time since a
 * slot last changed hands.
 */
/*
 * fair_step - how far apart d's parked deliveries come back: its time per
 * transaction (the moving average, or how long its slots have been taken
 * when longer) over the cap.
 */
static int64_t
fair_step(const struct fair *f, const struct fair_dest *d, int64_t now_ms)
{
	int64_t per = d->mean_ms, stuck = now_ms - d->busy_since_ms, step;

	if (stuck > per)
		per = stuck;
	step = per / f->p.cap;
	return step < 1 ? 1 : step;
}

/* fair_park_at - when the next delivery parked for d comes back (moves d's parking clock on) */
static int64_t
fair_park_at(struct fair *f, struct fair_dest *d, int64_t now_ms)
{
	int64_t step = fair_step(f, d, now_ms), at;

	at = now_ms + f->p.park_min_ms;
	if (d->park_next_ms > at)
		at = d->park_next_ms;
	d->park_next_ms = at + step;
	if (at > now_ms + f->p.park_max_ms) {
		/*
		 * The line reaches past the horizon: anywhere in its second half
		 * (xorshift), so that a backlog parked in one read-through does
		 * not come back in one burst every park_max, holding up the mail
		 * behind it while it is read through again.
		 */
		int64_t half = f->p.park_max_ms / 2;

		f->rnd ^= f->rnd << 13;
		f->rnd ^= f->rnd >> 17;
		f->rnd ^= f->rnd << 5;
		at = now_ms + f->p.park_max_ms - (half > 0 ? (int64_t)(f->rnd % (uint64_t)half) : 0);
		d->park_next_ms = now_ms + f->p.park_max_ms;
	}
	return at;
}

enum fair_verdict
fair_admit(struct fair *f, const char *domain, void *item, int64_t now_ms,
    struct fair_dest **dest, int64_t *until_ms)
{
	char key[FAIR_KEY_MAX + 1];
	struct fair_dest *d;
	struct fair_wait *w;

	*dest = NULL;
	*until_ms = 0;
	if (f == NULL || domain == NULL)
		return FAIR_GO;
	fair_key_of(f, domain, key, sizeof(key));
	if ((d = fair_get(f, key, now_ms)) == NULL)
		return FAIR_GO;    /* not capped: fail open */
	if (d->fwd != NULL) {
		/* merged into its MX host set (its alias since forgotten): count there while held */
		if (d->refs > 0)
			d = d->fwd;
		else
			d->fwd = NULL;
	}
	if (d->inflight < f->p.cap && d->nwait == 0) {
		d->inflight++;
		d->refs++;
		d->busy_since_ms = now_ms;
		*dest = d;
		return FAIR_GO;
	}
	if (d->nwait < f->p.wait_cap && f->nwait < (size_t)f->p.wait_total &&
	    (w = malloc(sizeof(*w))) != NULL) {
		w->item = item;
		w->next = NULL;
		if (d->tail != NULL)
			d->tail->next = w;
		else
			d->head = w;
		d->tail = w;
		d->nwait++;
		f->nwait++;
		return FAIR_WAIT;
	}
	*until_ms = fair_park_at(f, d, now_ms);
	d->nparked++;
	return FAIR_PARK;
}

/* fair_pop - the first item of d's line, removed; NULL when the line is empty. */
static void *
fair_pop(struct fair *f, struct fair_dest *d)
{
	struct fair_wait *w = d->head;
	void *item;

	if (w == NULL)
		return NULL;
	d->head = w->next;
	if (d->head == NULL)
		d->tail = NULL;
	d->nwait--;
	f->nwait--;
	item = w->item;
	free(w);
	return item;
}

void *
fair_done(struct fair *f, struct fair_dest *d, int64_t started_ms, int64_t now_ms,
    struct fair_dest **next_dest)
{
	void *item;
	int64_t took = now_ms - started_ms;

	*next_dest = NULL;
	if (f == NULL || d == NULL)
		return NULL;
	if (d->refs > 0)
		d->refs--;
	if (d->fwd != NULL) {
		struct fair_dest *m = d->fwd;

		if (d->refs == 0)
			d->fwd = NULL;
		d = m;
	}
	if (took < 0)
		took = 0;
	/* a moving average over about 8 transactions */
	d->mean_ms = d->mean_ms == 0 ? took : d->mean_ms + (took - d->mean_ms) / 8;
	d->busy_since_ms = now_ms;
	if (d->inflight > 0)
		d->inflight--;
	if (d->head == NULL) {
		d->nparked = 0;   /* room again: a burst is over */
		return NULL;
	}
	item = fair_pop(f, d);
	d->inflight++;
	d->refs++;
	*next_dest = d;
	return item;
}

void *
fair_take_waiting(struct fair *f)
{
	if (f == NULL || f->nwait == 0)
		return NULL;
	for (size_t b = 0; b < FAIR_BUCKETS; b++) {
		for (struct fair_dest *d = f->dests[b]; d != NULL; d = d->next)
			if (d->head != NULL)
				return fair_pop(f, d);
	}
	return NULL;
}

size_t
fair_waiting(const struct fair *f)
{
	return f != NULL ? f->nwait : 0;
}

size_t
fair_full(const struct fair *f)
{
	size_t n = 0;

	if (f == NULL)
		return 0;
	for (size_t b = 0; b < FAIR_BUCKETS; b++)
		for (const struct fair_dest *d = f->dests[b]; d != NULL; d = d->next)
			n += d->inflight >= f->p.cap;
	return n;
}

/* fair_live - the entry domain counts against now (following a merge while it is held); NULL: none */
static struct fair_dest *
fair_live(const struct fair *f, const char *domain)
{
	char key[FAIR_KEY_MAX + 1];
	struct fair_dest *d;

	fair_key_of(f, domain, key, sizeof(key));
	d = fair_find(f, key);
	if (d != NULL && d->fwd != NULL && d->refs > 0)
		d = d->fwd;
	return d;
}

/*
 * A destination is published once it has parked this many times its cap
 * since it last had room: a backlog (a tarpit's, a bulk import's), not a
 * burst of new mail that fills a fresh destination's slots for a moment
 * (whose new mail would otherwise wait in due for its slots).
 */
#define FAIR_SAT_PARKED 2

int
fair_saturated(struct fair *f, const char *domain, int64_t now_ms, int64_t every_ms,
    struct fair_sat *out)
{
	struct fair_dest *d;

	if (f == NULL || domain == NULL || out == NULL || (d = fair_live(f, domain)) == NULL)
		return 0;
	if (d->inflight < f->p.cap || d->park_next_ms <= now_ms || d->nparked < FAIR_SAT_PARKED * f->p.cap)
		return 0;   /* not at its cap, nothing parked ahead, or only a burst: nothing to say */
	if (d->pub_ms != 0 && now_ms - d->pub_ms < every_ms)
		return 0;
	d->pub_ms = now_ms;
	out->next_ms = d->park_next_ms;
	out->step_ms = fair_step(f, d, now_ms);
	out->min_ms = f->p.park_min_ms;
	out->max_ms = f->p.park_max_ms;
	return 1;
}

int
fair_unsaturated(struct fair *f, const char *domain)
{
	struct fair_dest *d;

	if (f == NULL || domain == NULL || (d = fair_live(f, domain)) == NULL || d->pub_ms == 0 ||
	    d->inflight >= f->p.cap || d->nwait > 0)
		return 0;
	d->pub_ms = 0;
	d->nparked = 0;
	d->park_next_ms = 0;   /* when it fills up again, its parking starts from then */
	return 1;
}

void
fair_park_after(struct fair *f, const char *domain, int64_t next_ms)
{
	struct fair_dest *d;

	if (f != NULL && domain != NULL && (d = fair_live(f, domain)) != NULL && next_ms > d->park_next_ms)
		d->park_next_ms = next_ms;
}

int
fair_inflight(const struct fair *f, const char *domain)
{
	char key[FAIR_KEY_MAX + 1];
	const struct fair_dest *d;

	if (f == NULL || domain == NULL)
		return 0;
	fair_key_of(f, domain, key, sizeof(key));
	d = fair_find(f, key);
	return d != NULL ? d->inflight : 0;
}

static int
fair_cmp(const void *a, const void *b)
{
	return strcasecmp(*(const char *const *)a, *(const char *const *)b);
}

void
fair_mx_key(const char *const *names, size_t n, char *out, size_t outlen)
{
	const char *sorted[64];
	size_t k = 0, used;

	if (outlen == 0)
		return;
	if (n > 64)
		n = 64;
	for (size_t i = 0; i < n; i++)
		if (names[i] != NULL && names[i][0] != '\0')
			sorted[k++] = names[i];
	qsort(sorted, k, sizeof(sorted[0]), fair_cmp);
	used = 0;
	out[0] = '\0';
	for (size_t i = 0; i < k; i++) {
		const char *s = sorted[i];
		const char *lead = i == 0 ? "mx:" : ",";
		size_t ll = strlen(lead);

		if (i > 0 && strcasecmp(s, sorted[i - 1]) == 0)
			continue;
		if (used + ll >= outlen || used + ll >= FAIR_KEY_MAX)
			break;
		memcpy(out + used, lead, ll);
		used += ll;
		for (; *s != '\0' && used + 1 < outlen && used < FAIR_KEY_MAX; s++)
			out[used++] = (*s >= 'A' && *s <= 'Z') ? (char)(*s - 'A' + 'a') : *s;
		out[used] = '\0';
	}
}
